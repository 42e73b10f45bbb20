//! The node-to-node relay of a room bigger than one node (as Jitsi's Octo): every node
//! of such a room sends one copy of each packet its own speakers publish to each other
//! node of the room, and plays the speakers relayed to it to its own listeners through
//! the same slots as local ones. So a speaker costs one stream per node, never one per
//! listener, and a relayed packet is never relayed again (no loops in a full mesh).
//!
//! A relay datagram travels between the nodes' media sockets. Its first byte,
//! [`MAGIC`], is outside every range of RFC 7983's demultiplexing (STUN 0–3, DTLS 20–63,
//! RTP/RTCP 128–191), and it is taken only from a peer that signaling named for the
//! room. It carries no encryption of its own: nodes relay over the fleet's private
//! network, as they reach Redis and each other's gRPC.
//!
//! Layout (version 1), all integers big-endian:
//!
//! | bytes | field |
//! |---|---|
//! | 1 | magic `0xFA` |
//! | 1 | version `1` |
//! | 1 | flags: bit 0 marker, bit 1 audio level present, bit 2 voice activity present, bit 3 voice activity |
//! | 1 | audio level (dBov, when present) |
//! | 1 | RTP payload type at the origin |
//! | 1 | room id length R |
//! | 1 | participant id length P |
//! | R | room id (UTF-8) |
//! | P | participant id (UTF-8) |
//! | 8 | extended RTP timestamp |
//! | 4 | RTP clock rate |
//! | … | payload (one Opus frame) |

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Instant;

use chorus_proto::{ParticipantId, RoomId};

/// The first byte of a relay datagram.
pub const MAGIC: u8 = 0xFA;
const VERSION: u8 = 1;
const FIXED: usize = 7;
const TAIL: usize = 12;
/// Most peer nodes of one room.
pub const MAX_PEERS: usize = 64;

/// One relayed frame, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame<'a> {
    /// The room (its id).
    pub room: &'a str,
    /// The speaker (its participant id), on the sending node.
    pub participant: &'a str,
    /// The RTP payload type at the origin (diagnostics; listeners get their own).
    pub pt: u8,
    /// Extended RTP timestamp.
    pub time: u64,
    /// RTP clock rate of `time`.
    pub rate: u32,
    /// RTP marker bit.
    pub marker: bool,
    /// RFC 6464 audio level (dBov), when the speaker sent one.
    pub audio_level: Option<i8>,
    /// RFC 6464 voice activity flag, when sent.
    pub voice_activity: Option<bool>,
    /// The payload (one Opus frame).
    pub payload: &'a [u8],
}

impl Frame<'_> {
    /// The datagram of this frame; `None` if an id is longer than 255 bytes.
    pub fn encode(&self) -> Option<Vec<u8>> {
        let r = u8::try_from(self.room.len()).ok()?;
        let p = u8::try_from(self.participant.len()).ok()?;
        let mut out = Vec::with_capacity(
            FIXED + self.room.len() + self.participant.len() + TAIL + self.payload.len(),
        );
        let mut flags = 0u8;
        if self.marker {
            flags |= 1;
        }
        if self.audio_level.is_some() {
            flags |= 2;
        }
        if let Some(vad) = self.voice_activity {
            flags |= 4;
            if vad {
                flags |= 8;
            }
        }
        out.extend_from_slice(&[
            MAGIC,
            VERSION,
            flags,
            self.audio_level.unwrap_or(0).to_be_bytes()[0],
            self.pt,
            r,
            p,
        ]);
        out.extend_from_slice(self.room.as_bytes());
        out.extend_from_slice(self.participant.as_bytes());
        out.extend_from_slice(&self.time.to_be_bytes());
        out.extend_from_slice(&self.rate.to_be_bytes());
        out.extend_from_slice(self.payload);
        Some(out)
    }
}

/// Decode a relay datagram; `None` if it is not a well-formed one.
pub fn decode(bytes: &[u8]) -> Option<Frame<'_>> {
    let head = bytes.get(..FIXED)?;
    if head[0] != MAGIC || head[1] != VERSION {
        return None;
    }
    let flags = head[2];
    let (r, p) = (usize::from(head[5]), usize::from(head[6]));
    let room = std::str::from_utf8(bytes.get(FIXED..FIXED + r)?).ok()?;
    let participant = std::str::from_utf8(bytes.get(FIXED + r..FIXED + r + p)?).ok()?;
    let at = FIXED + r + p;
    let time = u64::from_be_bytes(bytes.get(at..at + 8)?.try_into().ok()?);
    let rate = u32::from_be_bytes(bytes.get(at + 8..at + 12)?.try_into().ok()?);
    if rate == 0 {
        return None;
    }
    Some(Frame {
        room,
        participant,
        pt: head[4],
        time,
        rate,
        marker: flags & 1 != 0,
        audio_level: (flags & 2 != 0).then_some(i8::from_be_bytes([head[3]])),
        voice_activity: (flags & 4 != 0).then_some(flags & 8 != 0),
        payload: bytes.get(at + TAIL..)?,
    })
}

/// A speaker of another node, as this node plays it.
pub struct RelayedSpeaker {
    pub room_key: u64,
    pub room: RoomId,
    pub id: ParticipantId,
    /// The node it comes from.
    pub from: SocketAddr,
    pub level: f32,
    pub level_at: Option<Instant>,
    pub last_rx: Instant,
}

/// Which rooms span nodes, and the speakers relayed to this node.
#[derive(Default)]
pub struct Relays {
    /// The other nodes of each spanning room.
    peers: HashMap<RoomId, Vec<SocketAddr>>,
    /// Rooms each peer may relay into.
    from: HashMap<SocketAddr, HashSet<RoomId>>,
    /// Relayed speakers by key (keys shared with participants).
    pub speakers: HashMap<u64, RelayedSpeaker>,
    pub by_pair: HashMap<(RoomId, ParticipantId), u64>,
}

impl Relays {
    /// No room spans nodes (the common case: forwarding skips the relay entirely).
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// The other nodes of `room`.
    pub fn peers(&self, room: &RoomId) -> &[SocketAddr] {
        self.peers.get(room).map_or(&[], Vec::as_slice)
    }

    /// Whether `source` may relay into `room`.
    pub fn accepts(&self, source: &SocketAddr, room: &RoomId) -> bool {
        self.from
            .get(source)
            .is_some_and(|rooms| rooms.contains(room))
    }

    /// Whether any room takes relays from `source`.
    pub fn is_peer(&self, source: &SocketAddr) -> bool {
        self.from.contains_key(source)
    }

    /// Set the peers of `room`; returns the keys of relayed speakers that are no longer
    /// allowed (their slots are to be freed).
    pub fn set(&mut self, room: &RoomId, peers: Vec<SocketAddr>) -> Vec<(u64, u64)> {
        if let Some(old) = self.peers.remove(room) {
            for addr in old {
                if let Some(rooms) = self.from.get_mut(&addr) {
                    rooms.remove(room);
                    if rooms.is_empty() {
                        self.from.remove(&addr);
                    }
                }
            }
        }
        for addr in &peers {
            self.from.entry(*addr).or_default().insert(room.clone());
        }
        if !peers.is_empty() {
            self.peers.insert(room.clone(), peers);
        }
        let stale: Vec<u64> = self
            .speakers
            .iter()
            .filter(|(_, s)| &s.room == room && !self.accepts(&s.from, room))
            .map(|(k, _)| *k)
            .collect();
        stale.into_iter().filter_map(|k| self.forget(k)).collect()
    }

    /// Forget a relayed speaker; (its key, its room key).
    pub fn forget(&mut self, key: u64) -> Option<(u64, u64)> {
        let s = self.speakers.remove(&key)?;
        self.by_pair.remove(&(s.room, s.id));
        Some((key, s.room_key))
    }

    /// Forget everything about a room that closed here; the speakers' keys.
    pub fn close(&mut self, room: &RoomId) -> Vec<(u64, u64)> {
        let mut gone = self.set(room, Vec::new());
        let keys: Vec<u64> = self
            .speakers
            .iter()
            .filter(|(_, s)| &s.room == room)
            .map(|(k, _)| *k)
            .collect();
        gone.extend(keys.into_iter().filter_map(|k| self.forget(k)));
        gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame() -> Frame<'static> {
        Frame {
            room: "room-1",
            participant: "p-9",
            pt: 111,
            time: 0x1_0000_0010,
            rate: 48_000,
            marker: true,
            audio_level: Some(-30),
            voice_activity: Some(true),
            payload: &[1, 2, 3, 4],
        }
    }

    #[test]
    fn a_frame_survives_the_wire() {
        let bytes = frame().encode().unwrap();
        assert_eq!(bytes[0], MAGIC);
        assert_eq!(decode(&bytes), Some(frame()));
        let quiet = Frame {
            audio_level: None,
            voice_activity: None,
            marker: false,
            ..frame()
        };
        assert_eq!(decode(&quiet.encode().unwrap()), Some(quiet));
    }

    #[test]
    fn every_truncation_or_corruption_is_refused_not_a_panic() {
        let bytes = frame().encode().unwrap();
        let header = FIXED + "room-1".len() + "p-9".len() + TAIL;
        for len in 0..header {
            assert_eq!(decode(&bytes[..len]), None, "length {len}");
        }
        for i in 0..bytes.len() {
            for v in [0u8, 0xFF, 0x80] {
                let mut b = bytes.clone();
                b[i] = v;
                let _ = decode(&b);
            }
        }
        let mut wrong = bytes.clone();
        wrong[1] = 2;
        assert_eq!(decode(&wrong), None, "unknown version");
    }

    #[test]
    fn peers_are_per_room_and_replaced_whole() {
        let mut relays = Relays::default();
        let (a, b): (SocketAddr, SocketAddr) = (
            "10.0.0.1:5000".parse().unwrap(),
            "10.0.0.2:5000".parse().unwrap(),
        );
        let (r1, r2) = (RoomId::parse("r1").unwrap(), RoomId::parse("r2").unwrap());
        relays.set(&r1, vec![a, b]);
        relays.set(&r2, vec![a]);
        assert!(relays.accepts(&b, &r1) && !relays.accepts(&b, &r2));
        relays.set(&r1, vec![a]);
        assert!(!relays.is_peer(&b));
        assert!(relays.accepts(&a, &r2));
        relays.close(&r2);
        relays.close(&r1);
        assert!(relays.is_empty() && !relays.is_peer(&a));
    }
}
