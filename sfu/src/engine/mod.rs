//! The sans-IO core: rooms, participants (one str0m `Rtc` each, ICE-lite), forwarding and
//! speaker levels. Datagrams and instants go in; transmits, events and the next deadline
//! come out of [`Engine::poll_output`]. No sockets, threads or tokio in here, so tests
//! drive it on a simulated clock and the I/O shell stays thin.

pub mod relay;
mod slots;
mod stun;
mod timers;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chorus_proto::token::{Grants, RoomClaims};
use chorus_proto::{ParticipantId, RoomId};
use str0m::change::SdpOffer;
use str0m::ice::IceCreds;
use str0m::media::{Direction, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{Extension, ExtensionMap, ExtensionValues, RtpPacket, RtpWrite};
use str0m::{Candidate, Event, IceConnectionState, Input, Rtc, RtcConfig};

use crate::auth::Revocations;
use crate::error::SfuError;
use crate::metrics::{DropReason, Metrics};
use slots::{Slot, SlotChoice, choose_slot};
use timers::Timers;

/// Largest SDP offer accepted (a browser's audio offer is 2–6 KiB).
pub const MAX_OFFER_BYTES: usize = 64 * 1024;
/// Cadence of housekeeping: timeouts, lost connections and speaking levels.
const TICK: Duration = Duration::from_millis(250);
/// ICE reported disconnected and not back within this long: the connection is lost.
const ICE_GRACE: Duration = Duration::from_secs(3);
/// Nothing at all received (browsers send consent checks every few seconds and RTCP
/// reports more often) for this long: the connection is lost. Faster than waiting for
/// the ICE-lite agent, which gives up only after 15 s without a binding request.
const SILENCE_TIMEOUT: Duration = Duration::from_secs(8);
/// A speaker relayed from another node and not heard for this long is forgotten (its
/// slots freed). Opus with DTX still sends a frame every 400 ms.
const RELAY_IDLE: Duration = Duration::from_secs(2);
/// A level older than this is not "speaking now".
const LEVEL_FRESH: Duration = Duration::from_millis(300);
/// Loudness counted as audible in speaking events: −50 dBov.
const AUDIBLE: f32 = 0.003_16;
/// Weight of a new frame's level in the per-speaker moving average (20 ms frames:
/// a time constant of ≈ 60 ms, quick enough for indicators, smooth enough for slots).
const LEVEL_SMOOTHING: f32 = 0.3;
/// Audio frames kept per outgoing stream for retransmission. Audio is rarely NACKed and
/// each `Rtc` is per listener: a small buffer keeps the working set small.
const SEND_BUFFER_AUDIO: usize = 16;

/// One audio packet from a publisher, on its way to the room. The engine runs str0m in RTP
/// mode: nothing is depacketised or packetised again, and the payload is one shared
/// allocation for every subscriber's copy.
struct Incoming {
    /// The media line it came on (looked up from its SSRC).
    mid: Option<Mid>,
    pt: Pt,
    /// Extended RTP timestamp and its clock rate.
    time: u64,
    rate: u32,
    marker: bool,
    audio_level: Option<i8>,
    voice_activity: Option<bool>,
    payload: Arc<[u8]>,
}

/// What the engine needs to know about its node.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The media socket addresses, announced as ICE host candidates. A datagram's
    /// `destination` must be one of these.
    pub local_addrs: Vec<SocketAddr>,
    /// Most audio slots used per participant.
    pub audio_slots: usize,
    /// Admitted but not connected after this long: removed.
    pub connect_timeout: Duration,
    /// Most participants on this node (0: no limit). A room bigger than that goes on
    /// in another node, which the room's speakers are relayed to.
    pub max_participants: usize,
}

/// Why a participant left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeaveReason {
    /// Removed on request.
    Removed,
    /// ICE/DTLS failed or went silent.
    ConnectionLost,
    /// Its room was closed.
    RoomClosed,
    /// Never connected within the connect timeout.
    ConnectTimeout,
}

/// Something signaling should hear about.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum EngineEvent {
    /// ICE and DTLS are up: media flows.
    Connected {
        /// The room.
        room: RoomId,
        /// Who connected.
        participant: ParticipantId,
    },
    /// A participant is gone from this node.
    Left {
        /// The room.
        room: RoomId,
        /// Who left.
        participant: ParticipantId,
        /// Why.
        reason: LeaveReason,
    },
    /// Who is audible in a room now, loudness 0..1.
    Speaking {
        /// The room.
        room: RoomId,
        /// Audible participants and their loudness.
        levels: Vec<(ParticipantId, f32)>,
    },
}

/// A datagram to send.
#[derive(Debug)]
pub struct Transmit {
    /// Local socket address to send from (one of [`EngineConfig::local_addrs`]).
    pub source: SocketAddr,
    /// Where to.
    pub destination: SocketAddr,
    /// The datagram.
    pub bytes: Vec<u8>,
}

/// What [`Engine::poll_output`] yields; drain until `Timeout`.
#[derive(Debug)]
pub enum Output {
    /// Send this datagram.
    Transmit(Transmit),
    /// Tell signaling.
    Event(EngineEvent),
    /// Call [`Engine::handle_timeout`] at this instant (or on the next datagram).
    Timeout(Instant),
}

/// One participant as [`Engine::participants`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParticipantState {
    /// Its room.
    pub room: RoomId,
    /// The participant.
    pub participant: ParticipantId,
    /// ICE and DTLS completed.
    pub connected: bool,
}

/// What closing a room ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClosedRoom {
    /// Participants disconnected.
    pub participants: u32,
    /// Datagram bytes from and to the room's participants over its life (STUN, DTLS,
    /// SRTP, SRTCP), those who left before included.
    pub bytes: u64,
}

/// Load and counters.
#[derive(Debug, Clone, Copy, Default)]
pub struct EngineStats {
    /// Rooms with at least one participant.
    pub rooms: usize,
    /// Participants admitted and not yet gone.
    pub participants: usize,
    /// Packet counters.
    pub metrics: Metrics,
}

struct Participant {
    room_key: u64,
    room: RoomId,
    id: ParticipantId,
    grants: Grants,
    muted: bool,
    token_exp: u64,
    /// Boxed: an `Rtc` is several KiB, and inline in the participants map every empty
    /// bucket of the table (up to half of them after it grows) would cost as much.
    rtc: Box<Rtc>,
    ufrag: String,
    /// Remote addresses routed to this participant (to clean the map on removal).
    sources: Vec<SocketAddr>,
    /// The media line it sends its microphone on, and the payload types agreed on it.
    publish_mid: Option<Mid>,
    publish_pts: Vec<Pt>,
    slots: Vec<Slot>,
    admitted_at: Instant,
    connected: bool,
    ice_down_since: Option<Instant>,
    last_rx: Instant,
    /// The `Rtc`'s own deadline (its last `Output::Timeout`).
    next_timeout: Instant,
    /// Its live entry in the engine's [`Timers`].
    armed: Option<Instant>,
    /// Smoothed loudness 0..1 and when it was last updated.
    level: f32,
    level_at: Option<Instant>,
    /// The `Rtc` returned an error: remove at the next tick.
    failed: bool,
    /// Datagrams from and to it, in bytes (STUN, DTLS, SRTP, SRTCP).
    bytes: u64,
}

struct Room {
    id: RoomId,
    members: Vec<u64>,
    /// Bytes of the members that left (see [`Participant::bytes`]).
    bytes_of_gone: u64,
}

/// Most emptied rooms whose byte count is kept for a [`Engine::close_room`] to come.
const EMPTIED_KEPT: usize = 4096;

/// Byte counts of rooms whose last member left, until the room is closed or comes back
/// (the oldest forgotten beyond [`EMPTIED_KEPT`]).
#[derive(Default)]
struct Emptied {
    /// Bytes, and the turn the room was kept at.
    bytes: HashMap<RoomId, (u64, u64)>,
    /// Rooms in the order kept, with their turn (an entry taken or kept again since is
    /// stale, and skipped when its turn comes).
    order: VecDeque<(RoomId, u64)>,
    turn: u64,
}

impl Emptied {
    fn keep(&mut self, room: RoomId, bytes: u64) {
        self.turn += 1;
        self.bytes.insert(room.clone(), (bytes, self.turn));
        self.order.push_back((room, self.turn));
        while self.order.len() > EMPTIED_KEPT {
            if let Some((old, turn)) = self.order.pop_front()
                && self.bytes.get(&old).is_some_and(|(_, t)| *t == turn)
            {
                self.bytes.remove(&old);
            }
        }
    }

    fn take(&mut self, room: &RoomId) -> u64 {
        self.bytes.remove(room).map_or(0, |(bytes, _)| bytes)
    }
}

/// The SFU's state machine. See the module docs for the contract.
pub struct Engine {
    config: EngineConfig,
    rtc_config: RtcConfig,
    next_key: u64,
    participants: HashMap<u64, Participant>,
    by_pair: HashMap<(RoomId, ParticipantId), u64>,
    rooms: HashMap<u64, Room>,
    room_keys: HashMap<RoomId, u64>,
    by_source: HashMap<SocketAddr, u64>,
    by_ufrag: HashMap<String, u64>,
    revoked: Revocations,
    emptied: Emptied,
    outputs: VecDeque<Output>,
    /// Frames received and not yet forwarded; kept to reuse its allocation.
    media: Vec<(u64, Incoming)>,
    timers: Timers,
    /// Timer entries due now; kept to reuse its allocation.
    due: Vec<(Instant, u64)>,
    next_tick: Instant,
    metrics: Metrics,
    /// Rooms that span nodes, and the speakers other nodes relay here.
    relays: relay::Relays,
}

/// Install str0m's crypto provider (aws-lc-rs) for the process. Idempotent.
pub fn install_crypto_provider() {
    str0m::crypto::from_feature_flags().install_process_default();
}

impl Engine {
    /// A new engine. Generates the node's DTLS certificate once: every participant's
    /// `Rtc` shares it, which saves ≈ 2 ms of CPU per admission.
    pub fn new(config: EngineConfig, now: Instant) -> Result<Self, SfuError> {
        install_crypto_provider();
        if config.local_addrs.is_empty() {
            return Err(SfuError::Config("no media address to announce".into()));
        }
        let cert = str0m::crypto::from_feature_flags()
            .dtls_provider
            .generate_certificate()
            .ok_or_else(|| SfuError::Media("could not generate a DTLS certificate".into()))?;
        let rtc_config = Rtc::builder()
            .set_ice_lite(true)
            .clear_codecs()
            .enable_opus(true, false)
            .set_dtls_cert(cert)
            .set_send_buffer_audio(SEND_BUFFER_AUDIO)
            // RTP mode: forward packets as they came (new SSRC, sequence numbers and
            // timestamps per slot), without str0m's depacketiser and packetiser. In the
            // in-memory bench (benches/callgrind.sh) this saves 21 % of the instructions per
            // forwarded packet: 18.2k → 14.3k at 100 listeners.
            .set_rtp_mode(true);
        Ok(Self {
            config,
            rtc_config,
            next_key: 1,
            participants: HashMap::new(),
            by_pair: HashMap::new(),
            rooms: HashMap::new(),
            room_keys: HashMap::new(),
            by_source: HashMap::new(),
            by_ufrag: HashMap::new(),
            revoked: Revocations::default(),
            emptied: Emptied::default(),
            outputs: VecDeque::new(),
            media: Vec::new(),
            timers: Timers::default(),
            due: Vec::new(),
            next_tick: now + TICK,
            metrics: Metrics::default(),
            relays: relay::Relays::default(),
        })
    }

    /// Admit the participant of verified `claims` with its SDP offer; returns the answer.
    ///
    /// The offer's first audio m-line that we can receive is the participant's microphone;
    /// the following receive-only audio m-lines are its audio slots.
    pub fn admit(
        &mut self,
        claims: RoomClaims,
        offer_sdp: &str,
        now: Instant,
    ) -> Result<String, SfuError> {
        if offer_sdp.len() > MAX_OFFER_BYTES {
            return Err(SfuError::BadOffer(format!(
                "the offer is {} bytes, more than the {MAX_OFFER_BYTES} allowed",
                offer_sdp.len()
            )));
        }
        let max = self.config.max_participants;
        if max > 0 && self.participants.len() >= max {
            return Err(SfuError::NodeFull { max });
        }
        if self.revoked.is_revoked(&claims.room, &claims.sub) {
            return Err(SfuError::Revoked {
                room: claims.room.to_string(),
                participant: claims.sub.to_string(),
            });
        }
        let pair = (claims.room.clone(), claims.sub.clone());
        if self.by_pair.contains_key(&pair) {
            return Err(SfuError::AlreadyAdmitted {
                room: claims.room.to_string(),
                participant: claims.sub.to_string(),
            });
        }
        let offer = SdpOffer::from_sdp_string(offer_sdp)
            .map_err(|e| SfuError::BadOffer(format!("not a valid SDP offer: {e}")))?;

        let creds = IceCreds::new();
        if self.by_ufrag.contains_key(&creds.ufrag) {
            // 16 random characters: practically never; the caller may simply retry.
            return Err(SfuError::Media("ICE credential collision, retry".into()));
        }
        let ufrag = creds.ufrag.clone();
        let mut rtc_config = self.rtc_config.clone();
        if !claims.grants.publish {
            // A listener sends no media: bandwidth estimation for its uplink is of no use,
            // and without transport-cc its client sends no TWCC feedback (≈ 17 datagrams
            // per second) for every packet we forward to it. PERFORMANCE.md: ≈ 0.45 µs
            // per forwarded packet. A listener promoted later still publishes fine.
            let map = without_transport_cc(rtc_config.extension_map());
            rtc_config = rtc_config.set_extension_map(map);
        }
        let mut rtc = Box::new(rtc_config.set_local_ice_credentials(creds).build(now));
        for addr in &self.config.local_addrs {
            let candidate = Candidate::host(*addr, "udp")
                .map_err(|e| SfuError::Config(format!("cannot announce {addr}: {e}")))?;
            rtc.add_local_candidate(candidate);
        }
        let answer = rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| SfuError::BadOffer(e.to_string()))?;

        // Which media line is which: the audio m-lines in offer order (read from the
        // SDP text: str0m's `Media` has no order), with the direction seen from our side.
        let mut publish_mid = None;
        let mut slot_mids = Vec::new();
        for mid in audio_mids(offer_sdp) {
            let Some(media) = rtc.media(mid) else {
                continue;
            };
            match media.direction() {
                Direction::RecvOnly | Direction::SendRecv
                    if publish_mid.is_none() && slot_mids.is_empty() =>
                {
                    publish_mid = Some(mid)
                }
                Direction::SendOnly => slot_mids.push(mid),
                _ => {}
            }
        }
        let mut early = Vec::new();
        let next_timeout = loop {
            match rtc.poll_output() {
                Ok(str0m::Output::Timeout(t)) => break t,
                Ok(str0m::Output::Transmit(t)) => early.push(t),
                Ok(str0m::Output::Event(_)) => {}
                Err(e) => return Err(SfuError::BadOffer(e.to_string())),
            }
        };
        if publish_mid.is_none() && slot_mids.is_empty() {
            return Err(SfuError::BadOffer(
                "the offer holds no audio m-line (one to send, then receive-only slots)".into(),
            ));
        }
        slot_mids.truncate(self.config.audio_slots);
        // Only Opus is enabled, so a media line's agreed payload types are Opus's.
        let publish_pts = publish_mid
            .and_then(|mid| rtc.media(mid))
            .map(|m| m.remote_pts().to_vec())
            .unwrap_or_default();
        let mut slots = Vec::with_capacity(slot_mids.len());
        for mid in slot_mids {
            let Some(pt) = rtc.media(mid).and_then(|m| m.remote_pts().first().copied()) else {
                continue;
            };
            // Start each slot's numbering from its SSRC (chosen at random by str0m), kept
            // below 2^15 so the rollover counter starts at 0 with room to spare.
            let first_seq = rtc
                .direct_api()
                .stream_tx_by_mid(mid, None)
                .map_or(0, |tx| (*tx.ssrc() & 0x7fff) as u16);
            slots.push(Slot::new(mid, pt, first_seq, now));
        }

        let key = self.next_key;
        self.next_key += 1;
        let room_key = match self.room_keys.get(&claims.room) {
            Some(k) => *k,
            None => {
                let k = key; // participant and room keys share one counter: never equal twice
                self.room_keys.insert(claims.room.clone(), k);
                self.rooms.insert(
                    k,
                    Room {
                        id: claims.room.clone(),
                        members: Vec::new(),
                        bytes_of_gone: self.emptied.take(&claims.room),
                    },
                );
                k
            }
        };
        if let Some(room) = self.rooms.get_mut(&room_key) {
            room.members.push(key);
        }
        for t in early {
            self.push_transmit(t);
        }
        self.by_pair.insert(pair, key);
        self.by_ufrag.insert(ufrag.clone(), key);
        let mut armed = None;
        self.timers.arm(key, next_timeout, &mut armed);
        self.participants.insert(
            key,
            Participant {
                room_key,
                room: claims.room,
                id: claims.sub,
                grants: claims.grants,
                muted: false,
                token_exp: claims.exp,
                rtc,
                ufrag,
                sources: Vec::new(),
                publish_mid,
                publish_pts,
                slots,
                admitted_at: now,
                connected: false,
                ice_down_since: None,
                last_rx: now,
                next_timeout,
                armed,
                level: 0.0,
                level_at: None,
                failed: false,
                bytes: 0,
            },
        );
        Ok(answer.to_sdp_string())
    }

    /// A datagram arrived on the media socket `destination` from `source`.
    pub fn handle_receive(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        bytes: &[u8],
    ) {
        self.metrics.packets_in += 1;
        self.metrics.bytes_in += bytes.len() as u64;

        if bytes.first() == Some(&relay::MAGIC) && self.relays.is_peer(&source) {
            self.receive_relayed(now, source, bytes);
            return;
        }

        // STUN (first byte 0..=3) may come from a new address, or from a reused one:
        // route it by our ufrag. Everything else goes by the source address map, which
        // is filled only after str0m verified a STUN check's integrity.
        let by_ufrag = if bytes.first().is_some_and(|b| *b < 4) {
            stun::local_ufrag(bytes).and_then(|u| self.by_ufrag.get(u).copied())
        } else {
            None
        };
        let Some(key) = by_ufrag.or_else(|| self.by_source.get(&source).copied()) else {
            self.metrics.drop_packet(DropReason::UnknownSource);
            return;
        };
        let Ok(receive) = Receive::new(Protocol::Udp, source, destination, bytes) else {
            self.metrics.drop_packet(DropReason::Malformed);
            return;
        };
        let input = Input::Receive(now, receive);
        let Some(p) = self.participants.get_mut(&key) else {
            self.metrics.drop_packet(DropReason::UnknownSource);
            return;
        };
        if !p.rtc.accepts(&input) {
            self.metrics.drop_packet(DropReason::UnknownSource);
            return;
        }
        if !p.sources.contains(&source) {
            p.sources.push(source);
            if let Some(old) = self.by_source.insert(source, key)
                && old != key
                && let Some(o) = self.participants.get_mut(&old)
            {
                o.sources.retain(|s| *s != source);
            }
        }
        let Some(p) = self.participants.get_mut(&key) else {
            return;
        };
        p.last_rx = now;
        p.bytes += bytes.len() as u64;
        if let Err(e) = p.rtc.handle_input(input) {
            // A packet that fails SRTP or parsing is the client's problem, not a reason
            // to drop the participant.
            tracing::debug!(participant = %p.id, error = %e, "datagram refused");
            self.metrics.drop_packet(DropReason::Malformed);
        }
        drain(
            key,
            p,
            now,
            &mut self.outputs,
            &mut self.media,
            &mut self.timers,
            &mut self.metrics,
        );
        self.forward_pending(now);
    }

    /// Time has come (see [`Output::Timeout`]); safe to call early.
    pub fn handle_timeout(&mut self, now: Instant) {
        let Engine {
            participants,
            outputs,
            media,
            timers,
            due,
            metrics,
            ..
        } = self;
        // Take what is due first: an `Rtc` that reports a deadline of "now" again is
        // served on the next call, not in a loop here.
        timers.pop_due(now, due);
        for (at, key) in due.drain(..) {
            let Some(p) = participants.get_mut(&key) else {
                continue; // removed
            };
            if p.armed != Some(at) {
                continue; // superseded by an earlier entry, already served
            }
            p.armed = None;
            if p.next_timeout <= now {
                if let Err(e) = p.rtc.handle_input(Input::Timeout(now)) {
                    tracing::debug!(participant = %p.id, error = %e, "rtc failed");
                    p.failed = true;
                }
                drain(key, p, now, outputs, media, timers, metrics);
            } else {
                timers.arm(key, p.next_timeout, &mut p.armed);
            }
        }
        self.forward_pending(now);
        if now >= self.next_tick {
            self.next_tick = now + TICK;
            self.housekeeping(now);
        }
    }

    /// Next thing to do: a transmit, an event, or the deadline to call `handle_timeout`.
    pub fn poll_output(&mut self) -> Output {
        if let Some(o) = self.outputs.pop_front() {
            return o;
        }
        let t = self
            .timers
            .next()
            .map_or(self.next_tick, |t| t.min(self.next_tick));
        Output::Timeout(t)
    }

    /// Change what a participant may do; applies from the next packet.
    pub fn update_grants(
        &mut self,
        room: &RoomId,
        participant: &ParticipantId,
        grants: Grants,
        muted: bool,
    ) -> Result<(), SfuError> {
        let key = self.key_of(room, participant)?;
        let Some(p) = self.participants.get_mut(&key) else {
            return Err(SfuError::NotFound(format!("participant {participant}")));
        };
        p.grants = grants;
        p.muted = muted;
        if !grants.publish || muted {
            // Free its slots at once rather than after the idle timeout.
            p.level = 0.0;
            p.level_at = None;
            let room_key = p.room_key;
            self.release_slots_of(room_key, key);
        }
        Ok(())
    }

    /// Disconnect a participant (reason `Removed`). False if it is not here.
    pub fn remove(&mut self, room: &RoomId, participant: &ParticipantId, now: Instant) -> bool {
        match self.key_of(room, participant) {
            Ok(key) => {
                self.remove_key(key, LeaveReason::Removed, now);
                true
            }
            Err(_) => false,
        }
    }

    /// Disconnect everyone in a room: how many, and the bytes the room's media took over
    /// its life (also of those who left before).
    pub fn close_room(&mut self, room: &RoomId, now: Instant) -> ClosedRoom {
        self.relays.close(room);
        let members = self
            .room_keys
            .get(room)
            .and_then(|k| self.rooms.get(k))
            .map(|r| r.members.clone())
            .unwrap_or_default();
        for key in &members {
            self.remove_key(*key, LeaveReason::RoomClosed, now);
        }
        ClosedRoom {
            participants: u32::try_from(members.len()).unwrap_or(u32::MAX),
            bytes: self.emptied.take(room),
        }
    }

    /// Load and counters.
    pub fn stats(&self) -> EngineStats {
        EngineStats {
            rooms: self.rooms.len(),
            participants: self.participants.len(),
            metrics: self.metrics,
        }
    }

    /// Every participant and whether its media is connected: the snapshot a watcher of
    /// the events diffs against after it (re)subscribes.
    pub fn participants(&self) -> Vec<ParticipantState> {
        self.participants
            .values()
            .map(|p| ParticipantState {
                room: p.room.clone(),
                participant: p.id.clone(),
                connected: p.connected,
            })
            .collect()
    }

    /// The I/O shell could not send a datagram.
    pub fn record_send_failure(&mut self) {
        self.metrics.drop_packet(DropReason::SendFailed);
    }

    /// The local addresses (ICE host candidates) of this engine.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.config.local_addrs
    }

    fn key_of(&self, room: &RoomId, participant: &ParticipantId) -> Result<u64, SfuError> {
        self.by_pair
            .get(&(room.clone(), participant.clone()))
            .copied()
            .ok_or_else(|| SfuError::NotFound(format!("participant {participant} in room {room}")))
    }

    fn push_transmit(&mut self, t: str0m::net::Transmit) {
        push_transmit(&mut self.outputs, &mut self.metrics, t);
    }

    fn forward_pending(&mut self, now: Instant) {
        while !self.media.is_empty() {
            let mut batch = std::mem::take(&mut self.media);
            for (key, data) in batch.drain(..) {
                self.forward(key, &data, now);
            }
            if self.media.is_empty() {
                self.media = batch; // keep the allocation
            }
        }
    }

    /// One received frame of `key`: check grants on this very packet, update its level,
    /// write it into a slot of every subscriber of the room.
    fn forward(&mut self, key: u64, data: &Incoming, now: Instant) {
        let Some(p) = self.participants.get_mut(&key) else {
            return;
        };
        if data.mid.is_none() || p.publish_mid != data.mid {
            self.metrics.drop_packet(DropReason::WrongMediaLine);
            return;
        }
        if !p.publish_pts.contains(&data.pt) {
            self.metrics.drop_packet(DropReason::CodecMismatch);
            return;
        }
        if !p.grants.publish {
            self.metrics.drop_packet(DropReason::NotPublisher);
            return;
        }
        if p.muted {
            self.metrics.drop_packet(DropReason::Muted);
            return;
        }
        let level = data.audio_level.map(dbov_to_loudness).unwrap_or(0.0);
        p.level = match p.level_at {
            Some(_) => p.level + LEVEL_SMOOTHING * (level - p.level),
            None => level,
        };
        p.level_at = Some(now);
        let speaker_level = p.level;
        let room_key = p.room_key;
        if !self.relays.is_empty() {
            let speaker = p.id.clone();
            self.relay_out(room_key, &speaker, data);
        }
        self.fan_out(key, room_key, speaker_level, data, now);
    }

    /// Write a speaker's frame into a slot of every subscriber of the room on this node.
    fn fan_out(
        &mut self,
        key: u64,
        room_key: u64,
        speaker_level: f32,
        data: &Incoming,
        now: Instant,
    ) {
        // Take the member list out so subscribers can be borrowed mutably; put it back.
        let Some(members) = self
            .rooms
            .get_mut(&room_key)
            .map(|r| std::mem::take(&mut r.members))
        else {
            return;
        };
        let rate = data.rate;
        let in_ts = data.time;
        for &s_key in &members {
            if s_key == key {
                continue;
            }
            let Some(s) = self.participants.get_mut(&s_key) else {
                continue;
            };
            if !s.grants.subscribe || !s.connected || s.slots.is_empty() {
                continue;
            }
            let index = match choose_slot(&mut s.slots, key, speaker_level, now) {
                SlotChoice::Use(i) => i,
                SlotChoice::Drop => {
                    self.metrics.drop_packet(DropReason::NoFreeSlot);
                    continue;
                }
            };
            let Some(slot) = s.slots.get_mut(index) else {
                continue;
            };
            let mut api = s.rtc.direct_api();
            let Some(tx) = api.stream_tx_by_mid(slot.mid, None) else {
                continue;
            };
            let out_ts = slot.map_timestamp(in_ts, rate, now, speaker_level);
            let ext_vals = ExtensionValues {
                audio_level: data.audio_level,
                voice_activity: data.voice_activity,
                ..Default::default()
            };
            // Not nackable: nobody NACKs Opus here, so str0m keeps no resend copy.
            tx.write_rtp(
                RtpWrite::new(
                    slot.pt,
                    slot.take_seq(),
                    // RTP timestamps are 32 bits on the wire; the slot keeps them extended.
                    out_ts as u32,
                    now,
                    Arc::clone(&data.payload),
                )
                .marker(data.marker)
                .ext_vals(ext_vals),
            );
            self.metrics.packets_forwarded += 1;
            // str0m releases written packets in its timeout handling. Do it now, while
            // this subscriber's `Rtc` is in cache, rather than visiting every subscriber
            // again from the timer (and a millisecond later).
            if let Err(e) = s.rtc.handle_input(Input::Timeout(now)) {
                tracing::debug!(participant = %s.id, error = %e, "rtc failed");
                s.failed = true;
            }
            drain(
                s_key,
                s,
                now,
                &mut self.outputs,
                &mut self.media,
                &mut self.timers,
                &mut self.metrics,
            );
        }
        if let Some(room) = self.rooms.get_mut(&room_key) {
            room.members = members;
        }
    }

    /// One copy of a local speaker's frame to each other node of a room that spans
    /// nodes.
    fn relay_out(&mut self, room_key: u64, speaker: &ParticipantId, data: &Incoming) {
        let Some(room) = self.rooms.get(&room_key) else {
            return;
        };
        let peers = self.relays.peers(&room.id);
        let Some(&source) = self.config.local_addrs.first() else {
            return;
        };
        if peers.is_empty() {
            return;
        }
        let frame = relay::Frame {
            room: room.id.as_str(),
            participant: speaker.as_str(),
            pt: *data.pt,
            time: data.time,
            rate: data.rate,
            marker: data.marker,
            audio_level: data.audio_level,
            voice_activity: data.voice_activity,
            payload: &data.payload,
        };
        let Some(bytes) = frame.encode() else {
            return;
        };
        for &destination in peers {
            self.metrics.packets_relayed_out += 1;
            self.metrics.packets_out += 1;
            self.metrics.bytes_out += bytes.len() as u64;
            self.outputs.push_back(Output::Transmit(Transmit {
                source,
                destination,
                bytes: bytes.clone(),
            }));
        }
    }

    /// A frame another node of the room relays: played to this node's subscribers like
    /// a local speaker's, never relayed again.
    fn receive_relayed(&mut self, now: Instant, source: SocketAddr, bytes: &[u8]) {
        let Some(frame) = relay::decode(bytes) else {
            self.metrics.drop_packet(DropReason::Malformed);
            return;
        };
        let (Ok(room), Ok(id)) = (
            RoomId::parse(frame.room),
            ParticipantId::parse(frame.participant),
        ) else {
            self.metrics.drop_packet(DropReason::Malformed);
            return;
        };
        if !self.relays.accepts(&source, &room) {
            self.metrics.drop_packet(DropReason::UnknownSource);
            return;
        }
        // Nobody of the room on this node (yet, or any more): nothing to play.
        let Some(&room_key) = self.room_keys.get(&room) else {
            return;
        };
        self.metrics.packets_relayed_in += 1;
        let pair = (room, id);
        let key = match self.relays.by_pair.get(&pair) {
            Some(&key) => key,
            None => {
                let key = self.next_key;
                self.next_key += 1;
                self.relays.by_pair.insert(pair.clone(), key);
                self.relays.speakers.insert(
                    key,
                    relay::RelayedSpeaker {
                        room_key,
                        room: pair.0,
                        id: pair.1,
                        from: source,
                        level: 0.0,
                        level_at: None,
                        last_rx: now,
                    },
                );
                key
            }
        };
        let Some(speaker) = self.relays.speakers.get_mut(&key) else {
            return;
        };
        let level = frame.audio_level.map(dbov_to_loudness).unwrap_or(0.0);
        speaker.level = match speaker.level_at {
            Some(_) => speaker.level + LEVEL_SMOOTHING * (level - speaker.level),
            None => level,
        };
        speaker.level_at = Some(now);
        speaker.last_rx = now;
        speaker.room_key = room_key;
        speaker.from = source;
        let speaker_level = speaker.level;
        let data = Incoming {
            mid: None,
            pt: Pt::from(frame.pt),
            time: frame.time,
            rate: frame.rate,
            marker: frame.marker,
            audio_level: frame.audio_level,
            voice_activity: frame.voice_activity,
            payload: Arc::from(frame.payload),
        };
        self.fan_out(key, room_key, speaker_level, &data, now);
    }

    /// The other nodes of a room that spans nodes (empty: it no longer does). Speakers
    /// relayed from a node that is no longer a peer are forgotten.
    pub fn set_relays(&mut self, room: &RoomId, peers: Vec<SocketAddr>) -> Result<(), SfuError> {
        if peers.len() > relay::MAX_PEERS {
            return Err(SfuError::InvalidArgument(format!(
                "at most {} relay peers per room",
                relay::MAX_PEERS
            )));
        }
        if let Some(own) = peers.iter().find(|p| self.config.local_addrs.contains(p)) {
            return Err(SfuError::InvalidArgument(format!(
                "{own} is this node's own media address, not a peer"
            )));
        }
        tracing::info!(room = %room, ?peers, "relay peers");
        for (key, room_key) in self.relays.set(room, peers) {
            self.release_slots_of(room_key, key);
        }
        Ok(())
    }

    fn release_slots_of(&mut self, room_key: u64, speaker: u64) {
        let Some(room) = self.rooms.get(&room_key) else {
            return;
        };
        for key in &room.members {
            if let Some(s) = self.participants.get_mut(key) {
                for slot in s
                    .slots
                    .iter_mut()
                    .filter(|slot| slot.speaker == Some(speaker))
                {
                    slot.release();
                }
            }
        }
    }

    fn housekeeping(&mut self, now: Instant) {
        self.revoked.expire(now);
        let connect_timeout = self.config.connect_timeout;
        let gone: Vec<(u64, LeaveReason)> = self
            .participants
            .iter()
            .filter_map(|(key, p)| {
                let reason = if p.failed || !p.rtc.is_alive() {
                    LeaveReason::ConnectionLost
                } else if !p.connected {
                    if now.saturating_duration_since(p.admitted_at) < connect_timeout {
                        return None;
                    }
                    LeaveReason::ConnectTimeout
                } else if p
                    .ice_down_since
                    .is_some_and(|t| now.saturating_duration_since(t) >= ICE_GRACE)
                    || now.saturating_duration_since(p.last_rx) >= SILENCE_TIMEOUT
                {
                    LeaveReason::ConnectionLost
                } else {
                    return None;
                };
                Some((*key, reason))
            })
            .collect();
        for (key, reason) in gone {
            self.remove_key(key, reason, now);
        }
        let idle: Vec<u64> = self
            .relays
            .speakers
            .iter()
            .filter(|(_, s)| now.saturating_duration_since(s.last_rx) >= RELAY_IDLE)
            .map(|(k, _)| *k)
            .collect();
        for key in idle {
            if let Some((key, room_key)) = self.relays.forget(key) {
                self.release_slots_of(room_key, key);
            }
        }

        for room in self.rooms.values() {
            let levels: Vec<(ParticipantId, f32)> = room
                .members
                .iter()
                .filter_map(|k| self.participants.get(k))
                .filter(|p| p.grants.publish && !p.muted)
                .filter(|p| {
                    p.level_at
                        .is_some_and(|t| now.saturating_duration_since(t) <= LEVEL_FRESH)
                })
                .filter(|p| p.level >= AUDIBLE)
                .map(|p| (p.id.clone(), p.level.clamp(0.0, 1.0)))
                .collect();
            if !levels.is_empty() {
                self.outputs.push_back(Output::Event(EngineEvent::Speaking {
                    room: room.id.clone(),
                    levels,
                }));
            }
        }
    }

    fn remove_key(&mut self, key: u64, reason: LeaveReason, now: Instant) {
        let Some(mut p) = self.participants.remove(&key) else {
            return;
        };
        // Say goodbye (DTLS close_notify, RTCP BYE) so the browser learns at once.
        if p.rtc.close().is_ok() {
            let mut ignored = Vec::new();
            drain(
                key,
                &mut p,
                now,
                &mut self.outputs,
                &mut ignored,
                &mut self.timers,
                &mut self.metrics,
            );
        }
        for s in &p.sources {
            if self.by_source.get(s) == Some(&key) {
                self.by_source.remove(s);
            }
        }
        self.by_ufrag.remove(&p.ufrag);
        self.by_pair.remove(&(p.room.clone(), p.id.clone()));
        self.release_slots_of(p.room_key, key);
        if let Some(room) = self.rooms.get_mut(&p.room_key) {
            room.members.retain(|k| *k != key);
            room.bytes_of_gone += p.bytes;
            if room.members.is_empty() {
                let bytes = room.bytes_of_gone;
                self.rooms.remove(&p.room_key);
                self.room_keys.remove(&p.room);
                self.emptied.keep(p.room.clone(), bytes);
            }
        }
        tracing::info!(room = %p.room, participant = %p.id, ?reason, "participant left");
        self.revoked
            .revoke(p.room.clone(), p.id.clone(), p.token_exp, now);
        self.outputs.push_back(Output::Event(EngineEvent::Left {
            room: p.room,
            participant: p.id,
            reason,
        }));
    }
}

/// The mids of the audio m-lines of an SDP text, in order.
fn audio_mids(sdp: &str) -> impl Iterator<Item = Mid> + '_ {
    sdp.split("\nm=")
        .skip(1)
        .filter(|section| section.starts_with("audio "))
        .filter_map(|section| {
            section
                .lines()
                .find_map(|l| l.trim_end().strip_prefix("a=mid:"))
                .map(Mid::from)
        })
}

/// `map` without the transport-wide sequence number (TWCC) extension.
fn without_transport_cc(map: &ExtensionMap) -> ExtensionMap {
    let mut out = ExtensionMap::empty();
    for (id, ext) in map.iter() {
        if *ext != Extension::TransportSequenceNumber {
            out.set(id, ext.clone());
        }
    }
    out
}

/// Loudness 0..1 from an RFC 6464 level (str0m gives −dBov, 0 = loudest, −127 = silence).
fn dbov_to_loudness(level: i8) -> f32 {
    10f32.powf(f32::from(level.min(0)) / 20.0).clamp(0.0, 1.0)
}

fn incoming(mid: Option<Mid>, packet: RtpPacket) -> Incoming {
    Incoming {
        mid,
        pt: packet.header.payload_type,
        time: packet.time.numer(),
        rate: packet.time.denom(),
        marker: packet.header.marker,
        audio_level: packet.header.ext_vals.audio_level,
        voice_activity: packet.header.ext_vals.voice_activity,
        payload: packet.payload,
    }
}

fn push_transmit(outputs: &mut VecDeque<Output>, metrics: &mut Metrics, t: str0m::net::Transmit) {
    metrics.packets_out += 1;
    metrics.bytes_out += t.contents.len() as u64;
    outputs.push_back(Output::Transmit(Transmit {
        source: t.source,
        destination: t.destination,
        bytes: t.contents.into(),
    }));
}

/// Poll one participant's `Rtc` until it gives its next deadline: transmits go out,
/// received frames are queued for forwarding, state changes become events, and the
/// deadline is armed in `timers`.
fn drain(
    key: u64,
    p: &mut Participant,
    now: Instant,
    outputs: &mut VecDeque<Output>,
    media: &mut Vec<(u64, Incoming)>,
    timers: &mut Timers,
    metrics: &mut Metrics,
) {
    p.next_timeout = poll_rtc(key, p, now, outputs, media, metrics);
    timers.arm(key, p.next_timeout, &mut p.armed);
}

/// The polling loop of [`drain`]; returns the `Rtc`'s next deadline.
fn poll_rtc(
    key: u64,
    p: &mut Participant,
    now: Instant,
    outputs: &mut VecDeque<Output>,
    media: &mut Vec<(u64, Incoming)>,
    metrics: &mut Metrics,
) -> Instant {
    // What it sends is counted once per poll, not per datagram, on the forwarding path.
    let mut sent = 0u64;
    let next = loop {
        if !p.rtc.is_alive() {
            // Removed at the next tick; nothing to wait for until then.
            break now + TICK;
        }
        match p.rtc.poll_output() {
            Ok(str0m::Output::Timeout(t)) => break t,
            Ok(str0m::Output::Transmit(t)) => {
                sent += t.contents.len() as u64;
                push_transmit(outputs, metrics, t);
            }
            Ok(str0m::Output::Event(e)) => match e {
                Event::Connected if !p.connected => {
                    p.connected = true;
                    tracing::info!(room = %p.room, participant = %p.id, "participant connected");
                    outputs.push_back(Output::Event(EngineEvent::Connected {
                        room: p.room.clone(),
                        participant: p.id.clone(),
                    }));
                }
                Event::IceConnectionStateChange(state) => match state {
                    IceConnectionState::Disconnected => {
                        p.ice_down_since.get_or_insert(now);
                    }
                    IceConnectionState::Connected | IceConnectionState::Completed => {
                        p.ice_down_since = None;
                    }
                    _ => {}
                },
                Event::RtpPacket(packet) => {
                    let mid = p
                        .rtc
                        .direct_api()
                        .stream_rx(&packet.header.ssrc)
                        .map(|rx| rx.mid());
                    media.push((key, incoming(mid, packet)));
                }
                _ => {}
            },
            Err(e) => {
                tracing::debug!(participant = %p.id, error = %e, "rtc failed");
                p.failed = true;
                break now + TICK;
            }
        }
    };
    p.bytes += sent;
    next
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An emptied room's count is kept until it is taken, once; beyond the bound the
    /// oldest go, and a room kept again since is not lost with its earlier turn.
    #[test]
    fn emptied_rooms_are_kept_bounded() {
        let mut emptied = Emptied::default();
        let first = RoomId::random();
        emptied.keep(first.clone(), 10);
        assert_eq!(emptied.take(&first), 10);
        assert_eq!(emptied.take(&first), 0, "taken once");
        emptied.keep(first.clone(), 20); // emptied again: a second turn in the order
        for _ in 0..EMPTIED_KEPT - 1 {
            emptied.keep(RoomId::random(), 1);
        }
        assert_eq!(emptied.bytes.len(), EMPTIED_KEPT);
        assert_eq!(
            emptied.take(&first),
            20,
            "its stale first turn took nothing"
        );
        let newest = RoomId::random();
        for _ in 0..EMPTIED_KEPT {
            emptied.keep(RoomId::random(), 1);
        }
        emptied.keep(newest.clone(), 5);
        assert!(emptied.bytes.len() <= EMPTIED_KEPT);
        assert!(emptied.order.len() <= EMPTIED_KEPT);
        assert_eq!(emptied.take(&newest), 5);
    }
}
