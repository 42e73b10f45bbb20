//! Test harness: one `Engine` and in-memory str0m client `Rtc`s acting as browsers, all
//! on a simulated clock. `Sim::run_for` shuttles datagrams between them (zero latency),
//! fires timeouts, and makes "talking" clients send a 20 ms Opus frame every 20 ms.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chorus_proto::token::{Grants, ISSUER, RoomClaims};
use chorus_proto::{ParticipantId, RoomId};
use chorus_sfu::{Engine, EngineConfig, EngineEvent, Output};
use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Rtc};

pub const SFU_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 3478);
pub const FRAME: Duration = Duration::from_millis(20);

/// A frame received by a client.
#[derive(Debug, Clone)]
pub struct Received {
    pub mid: Mid,
    pub rtp_time: u64,
    pub payload: Vec<u8>,
    pub audio_level: Option<i8>,
}

impl Received {
    /// The client index written into the first payload byte by `payload_for`.
    pub fn sender(&self) -> usize {
        usize::from(self.payload[0])
    }
}

/// Payload of frame `n` from client `index`: recognisable, so that tests can check the
/// sender and that the bytes arrived intact.
pub fn payload_for(index: usize, n: u32) -> Vec<u8> {
    let mut p = vec![index as u8];
    p.extend_from_slice(&n.to_be_bytes());
    p.extend((0..60u8).map(|i| i.wrapping_mul(7).wrapping_add(index as u8)));
    p
}

pub struct Client {
    pub index: usize,
    pub addr: SocketAddr,
    pub rtc: Rtc,
    pub room: RoomId,
    pub id: ParticipantId,
    pub token_exp: u64,
    pub send_mid: Mid,
    pub slot_mids: Vec<Mid>,
    pub pending: Option<SdpPendingOffer>,
    pub deadline: Instant,
    /// Sending a frame every 20 ms with this RFC 6464 level (−dBov), if Some.
    pub talking: Option<i8>,
    pub frames_sent: u32,
    pub next_frame: Instant,
    /// Stopped responding: neither sends nor receives.
    pub offline: bool,
    pub connected: bool,
    pub received: Vec<Received>,
}

pub struct Sim {
    pub now: Instant,
    pub engine: Engine,
    pub engine_deadline: Instant,
    pub clients: Vec<Client>,
    pub events: Vec<EngineEvent>,
}

pub fn claims(room: &RoomId, id: &ParticipantId, grants: Grants) -> RoomClaims {
    let iat = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    RoomClaims {
        sub: id.clone(),
        room: room.clone(),
        name: "Test".into(),
        grants,
        iat,
        exp: iat + 600,
        iss: ISSUER.into(),
    }
}

impl Sim {
    pub fn new() -> Self {
        Self::with_config(|_| {})
    }

    pub fn with_config(adjust: impl FnOnce(&mut EngineConfig)) -> Self {
        let now = Instant::now();
        let mut config = EngineConfig {
            local_addrs: vec![SFU_ADDR],
            audio_slots: 3,
            connect_timeout: Duration::from_secs(15),
            max_participants: 0,
        };
        adjust(&mut config);
        let engine = Engine::new(config, now).unwrap();
        Sim {
            now,
            engine,
            engine_deadline: now,
            clients: Vec::new(),
            events: Vec::new(),
        }
    }

    /// A browser-shaped offer: one send-only audio line, then `slots` receive-only lines.
    pub fn offer(
        &mut self,
        slots: usize,
    ) -> (Rtc, String, SdpPendingOffer, Mid, Vec<Mid>, SocketAddr) {
        let index = self.clients.len();
        let addr = SocketAddr::from((Ipv4Addr::new(10, 0, 1, index as u8 + 1), 5000));
        let mut rtc = Rtc::builder().build(self.now);
        rtc.add_local_candidate(Candidate::host(addr, "udp").unwrap());
        let mut api = rtc.sdp_api();
        let send_mid = api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
        let slot_mids = (0..slots)
            .map(|_| api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None))
            .collect();
        let (offer, pending) = api.apply().unwrap();
        (
            rtc,
            offer.to_sdp_string(),
            pending,
            send_mid,
            slot_mids,
            addr,
        )
    }

    /// Join a new client into `room` with `grants`; returns its index.
    pub fn join(&mut self, room: &RoomId, grants: Grants) -> usize {
        let id = ParticipantId::random();
        self.join_with(claims(room, &id, grants), 3).unwrap()
    }

    pub fn join_with(
        &mut self,
        claims: chorus_proto::token::RoomClaims,
        slots: usize,
    ) -> Result<usize, chorus_sfu::SfuError> {
        let (mut rtc, offer, pending, send_mid, slot_mids, addr) = self.offer(slots);
        let room = claims.room.clone();
        let id = claims.sub.clone();
        let exp = claims.exp;
        let answer = self.engine.admit(claims, &offer, self.now)?;
        let answer = SdpAnswer::from_sdp_string(&answer).unwrap();
        rtc.sdp_api().accept_answer(pending, answer).unwrap();
        let index = self.clients.len();
        self.clients.push(Client {
            index,
            addr,
            rtc,
            room,
            id,
            token_exp: exp,
            send_mid,
            slot_mids,
            pending: None,
            deadline: self.now,
            talking: None,
            frames_sent: 0,
            next_frame: self.now,
            offline: false,
            connected: false,
            received: Vec::new(),
        });
        Ok(index)
    }

    /// Exchange datagrams until nobody has anything to send at the current instant.
    fn settle(&mut self) {
        for _ in 0..10_000 {
            let mut moved = false;
            // Engine → clients.
            loop {
                match self.engine.poll_output() {
                    Output::Transmit(t) => {
                        moved = true;
                        if let Some(c) = self
                            .clients
                            .iter_mut()
                            .find(|c| c.addr == t.destination && !c.offline)
                        {
                            let input = Input::Receive(
                                self.now,
                                Receive::new(Protocol::Udp, t.source, t.destination, &t.bytes)
                                    .unwrap(),
                            );
                            // A closed client rtc may refuse input; that's fine.
                            let _ = c.rtc.handle_input(input);
                        }
                    }
                    Output::Event(e) => self.events.push(e),
                    Output::Timeout(t) => {
                        self.engine_deadline = t;
                        break;
                    }
                }
            }
            // Clients → engine.
            for i in 0..self.clients.len() {
                loop {
                    let c = &mut self.clients[i];
                    if c.offline {
                        break;
                    }
                    match c.rtc.poll_output() {
                        Ok(str0m::Output::Transmit(t)) => {
                            moved = true;
                            let bytes: Vec<u8> = t.contents.into();
                            self.engine
                                .handle_receive(self.now, t.source, t.destination, &bytes);
                        }
                        Ok(str0m::Output::Event(e)) => match e {
                            Event::Connected => c.connected = true,
                            Event::MediaData(d) => c.received.push(Received {
                                mid: d.mid,
                                rtp_time: d.time.numer(),
                                payload: d.data.to_vec(),
                                audio_level: d.ext_vals.audio_level,
                            }),
                            _ => {}
                        },
                        Ok(str0m::Output::Timeout(t)) => {
                            c.deadline = t;
                            break;
                        }
                        Err(_) => {
                            c.deadline = self.now + Duration::from_secs(3600);
                            break;
                        }
                    }
                }
            }
            if !moved {
                return;
            }
        }
        panic!("datagram ping-pong did not settle");
    }

    fn send_frames(&mut self) {
        let now = self.now;
        for c in &mut self.clients {
            let Some(level) = c.talking else { continue };
            if c.offline || !c.connected || c.next_frame > now {
                continue;
            }
            c.next_frame = now + FRAME;
            let n = c.frames_sent;
            c.frames_sent += 1;
            let payload = payload_for(c.index, n);
            let Some(writer) = c.rtc.writer(c.send_mid) else {
                continue;
            };
            let pt = writer.payload_params().next().unwrap().pt();
            writer
                .audio_level(level, true)
                .write(
                    pt,
                    now,
                    MediaTime::new(u64::from(n) * 960, Frequency::FORTY_EIGHT_KHZ),
                    payload,
                )
                .unwrap();
        }
    }

    /// Advance simulated time by `d`, doing everything that falls due.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            self.send_frames();
            self.settle();
            if self.now >= end {
                return;
            }
            let mut next = self.engine_deadline.min(end);
            for c in &self.clients {
                if c.offline {
                    continue;
                }
                next = next.min(c.deadline);
                if c.talking.is_some() && c.connected {
                    next = next.min(c.next_frame);
                }
            }
            // Never stand still: at least 1 ms per step.
            self.now = next.max(self.now + Duration::from_millis(1)).min(end);
            self.engine.handle_timeout(self.now);
            let now = self.now;
            for c in self.clients.iter_mut().filter(|c| !c.offline) {
                if c.deadline <= now {
                    let _ = c.rtc.handle_input(Input::Timeout(now));
                }
            }
        }
    }

    /// Run until every client is connected (fails after 5 simulated seconds).
    pub fn connect_all(&mut self) {
        for _ in 0..500 {
            if self.clients.iter().all(|c| c.connected || c.offline)
                && self.connected_events() >= self.clients.iter().filter(|c| !c.offline).count()
            {
                return;
            }
            self.run_for(Duration::from_millis(10));
        }
        panic!("clients did not connect");
    }

    pub fn connected_events(&self) -> usize {
        self.events
            .iter()
            .filter(|e| matches!(e, EngineEvent::Connected { .. }))
            .count()
    }

    pub fn left_events(&self) -> Vec<(ParticipantId, chorus_sfu::LeaveReason)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                EngineEvent::Left {
                    participant,
                    reason,
                    ..
                } => Some((participant.clone(), *reason)),
                _ => None,
            })
            .collect()
    }

    /// Senders heard by client `i` (from payloads), sorted, unique.
    pub fn heard_from(&self, i: usize) -> Vec<usize> {
        let mut v: Vec<usize> = self.clients[i]
            .received
            .iter()
            .map(|r| r.sender())
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    pub fn clear_received(&mut self) {
        for c in &mut self.clients {
            c.received.clear();
        }
    }
}
