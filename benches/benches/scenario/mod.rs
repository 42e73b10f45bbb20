//! The in-memory forwarding scenario shared by the criterion bench (`forwarding.rs`) and
//! the instruction counter (`examples/forward_instructions.rs`): one engine, one publisher,
//! N subscribers, all str0m clients on a simulated clock. Only [`Room::engine_step`] is the
//! engine's work; everything else plays the clients.
//!
//! [`Mode`] adds the relay of a room spanning nodes: the same engine also relaying its
//! publisher to a peer node, or an engine whose speaker is on another node and reaches its
//! subscribers as relay datagrams (made here as the other node makes them).
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::cell::Cell;
use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chorus_proto::token::{Grants, ISSUER, RoomClaims};
use chorus_proto::{ParticipantId, RoomId};
use chorus_sfu::{Engine, EngineConfig, EngineEvent, Output};
use str0m::change::SdpAnswer;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Input, Rtc};

const SFU_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 3478);
/// The other node of a spanning room.
const PEER_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), 3478);

/// Where the room's speaker is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// On this node, and the room is on this node only.
    Local,
    /// On this node, and the room spans one more node: each frame is also relayed there.
    RelayOut,
    /// On another node, which relays its frames here.
    RelayIn,
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "local" => Ok(Mode::Local),
            "relay-out" => Ok(Mode::RelayOut),
            "relay-in" => Ok(Mode::RelayIn),
            _ => Err(format!("mode '{s}': local, relay-out or relay-in")),
        }
    }
}
const FRAME: Duration = Duration::from_millis(20);
/// Frames (of simulated time) after which a measurement moves to a fresh room.
pub const FRESH_ROOM_AFTER: u64 = 50_000;
/// A typical 20 ms Opus voice frame.
const PAYLOAD: [u8; 80] = [0x5a; 80];

thread_local! {
    /// True while the engine runs (inside [`in_engine`]): `examples/engine_heap.rs` charges
    /// allocations made then to the engine.
    pub static IN_ENGINE: Cell<bool> = const { Cell::new(false) };
}

/// Run `f` as engine work (see [`IN_ENGINE`]).
fn in_engine<R>(f: impl FnOnce() -> R) -> R {
    IN_ENGINE.with(|c| c.set(true));
    let r = f();
    IN_ENGINE.with(|c| c.set(false));
    r
}

pub struct Client {
    addr: SocketAddr,
    rtc: Rtc,
    send_mid: Mid,
    deadline: Instant,
}

pub struct Room {
    now: Instant,
    pub engine: Engine,
    publisher: Client,
    subscribers: Vec<Client>,
    pub frames: u64,
    mode: Mode,
    room: RoomId,
    /// Frames from now on go through [`Room::counted_engine_step`].
    pub counted: bool,
    /// Datagrams in flight, reused.
    to_engine: Vec<(SocketAddr, Vec<u8>)>,
    from_engine: Vec<(SocketAddr, Vec<u8>)>,
}

fn claims(room: &RoomId, grants: Grants) -> RoomClaims {
    let iat = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    RoomClaims {
        sub: ParticipantId::random(),
        room: room.clone(),
        name: "bench".into(),
        grants,
        iat,
        // Simulated time runs far ahead of the wall clock (20 ms per iteration, millions of
        // iterations): a token must outlive it.
        exp: iat + 100 * 365 * 24 * 3_600,
        iss: ISSUER.into(),
    }
}

impl Room {
    pub fn new(subscribers: usize) -> Self {
        Self::with_mode(subscribers, Mode::Local)
    }

    pub fn with_mode(subscribers: usize, mode: Mode) -> Self {
        let now = Instant::now();
        let engine = in_engine(|| {
            Engine::new(
                EngineConfig {
                    local_addrs: vec![SFU_ADDR],
                    audio_slots: 3,
                    connect_timeout: Duration::from_secs(30),
                    max_participants: 0,
                },
                now,
            )
        })
        .unwrap();
        let mut room = Room {
            now,
            engine,
            publisher: Client {
                addr: SFU_ADDR,
                rtc: Rtc::new(now),
                send_mid: Mid::from("x"),
                deadline: now,
            },
            subscribers: Vec::new(),
            frames: 0,
            mode,
            room: RoomId::random(),
            counted: false,
            to_engine: Vec::new(),
            from_engine: Vec::new(),
        };
        let id = room.room.clone();
        if mode != Mode::RelayIn {
            room.publisher = room.join(&id, Grants::SPEAKER, 0);
        }
        for i in 0..subscribers {
            let c = room.join(&id, Grants::LISTENER, i + 1);
            room.subscribers.push(c);
        }
        if mode != Mode::Local {
            room.engine.set_relays(&id, vec![PEER_ADDR]).unwrap();
        }
        room.connect(subscribers + usize::from(mode != Mode::RelayIn));
        room
    }

    fn join(&mut self, room: &RoomId, grants: Grants, index: usize) -> Client {
        let addr = SocketAddr::from((
            Ipv4Addr::new(10, 1, (index / 250) as u8, (index % 250) as u8 + 1),
            5000,
        ));
        let mut rtc = Rtc::builder().build(self.now);
        rtc.add_local_candidate(Candidate::host(addr, "udp").unwrap());
        let mut api = rtc.sdp_api();
        let send_mid = api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
        for _ in 0..3 {
            api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
        }
        let (offer, pending) = api.apply().unwrap();
        let claims = claims(room, grants);
        let offer = offer.to_sdp_string();
        let engine = &mut self.engine;
        let answer = in_engine(|| engine.admit(claims, &offer, self.now)).unwrap();
        rtc.sdp_api()
            .accept_answer(pending, SdpAnswer::from_sdp_string(&answer).unwrap())
            .unwrap();
        Client {
            addr,
            rtc,
            send_mid,
            deadline: self.now,
        }
    }

    /// Shuttle datagrams on simulated time until every participant is connected.
    fn connect(&mut self, participants: usize) {
        let mut connected = 0;
        for _ in 0..5_000 {
            self.now += Duration::from_millis(5);
            let now = self.now;
            let engine = &mut self.engine;
            in_engine(|| engine.handle_timeout(now));
            for c in std::iter::once(&mut self.publisher).chain(self.subscribers.iter_mut()) {
                if c.deadline <= now {
                    c.rtc.handle_input(Input::Timeout(now)).unwrap();
                }
            }
            loop {
                let moved = self.exchange(&mut connected);
                if !moved {
                    break;
                }
            }
            if connected >= participants {
                return;
            }
        }
        panic!("only {connected} of {participants} participants connected");
    }

    /// One round of datagrams both ways; true if anything moved.
    fn exchange(&mut self, connected: &mut usize) -> bool {
        let now = self.now;
        let mut moved = false;
        let (engine, from_engine) = (&mut self.engine, &mut self.from_engine);
        in_engine(|| {
            loop {
                match engine.poll_output() {
                    Output::Transmit(t) => from_engine.push((t.destination, t.bytes)),
                    Output::Event(EngineEvent::Connected { .. }) => *connected += 1,
                    Output::Event(_) => {}
                    Output::Timeout(_) => break,
                }
            }
        });
        for (dest, bytes) in self.from_engine.drain(..) {
            moved = true;
            let c = if dest == self.publisher.addr {
                &mut self.publisher
            } else {
                match self.subscribers.iter_mut().find(|c| c.addr == dest) {
                    Some(c) => c,
                    None => continue,
                }
            };
            let r = Receive::new(Protocol::Udp, SFU_ADDR, c.addr, &bytes).unwrap();
            let _ = c.rtc.handle_input(Input::Receive(now, r));
        }
        for c in std::iter::once(&mut self.publisher).chain(self.subscribers.iter_mut()) {
            loop {
                match c.rtc.poll_output().unwrap() {
                    str0m::Output::Transmit(t) => {
                        self.to_engine.push((t.source, t.contents.into()));
                    }
                    str0m::Output::Timeout(t) => {
                        c.deadline = t;
                        break;
                    }
                    str0m::Output::Event(_) => {}
                }
            }
        }
        for (source, bytes) in self.to_engine.drain(..) {
            moved = true;
            let engine = &mut self.engine;
            in_engine(|| engine.handle_receive(now, source, SFU_ADDR, &bytes));
        }
        moved
    }

    /// The publisher's packet of frame `n`, on its way to the engine.
    fn publisher_frame(&mut self, now: Instant, n: u64) {
        let p = &mut self.publisher;
        if p.deadline <= now {
            p.rtc.handle_input(Input::Timeout(now)).unwrap();
        }
        let writer = p.rtc.writer(p.send_mid).unwrap();
        let pt = writer.payload_params().next().unwrap().pt();
        writer
            .audio_level(-20, true)
            .write(
                pt,
                now,
                MediaTime::new(n * 960, Frequency::FORTY_EIGHT_KHZ),
                PAYLOAD.to_vec(),
            )
            .unwrap();
        loop {
            match p.rtc.poll_output().unwrap() {
                str0m::Output::Transmit(t) => self.to_engine.push((t.source, t.contents.into())),
                str0m::Output::Timeout(t) => {
                    p.deadline = t;
                    break;
                }
                str0m::Output::Event(_) => {}
            }
        }
    }

    /// One 20 ms frame through the engine; returns the time spent inside the engine.
    pub fn frame(&mut self) -> Duration {
        self.now += FRAME;
        let now = self.now;
        let n = self.frames;
        self.frames += 1;
        if self.mode == Mode::RelayIn {
            // The other node's relay datagram of its speaker's frame (not timed).
            let room = self.room.to_string();
            let frame = chorus_sfu::RelayFrame {
                room: &room,
                participant: "p_origin",
                pt: 111,
                time: n * 960,
                rate: 48_000,
                marker: false,
                audio_level: Some(-20),
                voice_activity: Some(true),
                payload: &PAYLOAD,
            };
            self.to_engine.push((PEER_ADDR, frame.encode().unwrap()));
        } else {
            self.publisher_frame(now, n);
        }
        for c in &mut self.subscribers {
            if c.deadline <= now {
                let _ = c.rtc.handle_input(Input::Timeout(now));
            }
        }
        // Subscribers' feedback from the previous frame, then the new packet: engine time.
        let start = Instant::now();
        if self.counted {
            self.counted_engine_step(now);
        } else {
            self.engine_step(now);
        }
        let spent = start.elapsed();
        // Deliver (not timed); collect the subscribers' RTCP for the next round.
        let mut i = 0;
        for (dest, bytes) in self.from_engine.drain(..) {
            if dest == self.publisher.addr {
                // STUN answers keep the publisher's ICE consent alive.
                let p = &mut self.publisher;
                let r = Receive::new(Protocol::Udp, SFU_ADDR, p.addr, &bytes).unwrap();
                let _ = p.rtc.handle_input(Input::Receive(now, r));
                continue;
            }
            // Transmits come in member order: a moving cursor finds the client at once.
            let len = self.subscribers.len();
            let mut found = None;
            for k in 0..len {
                let j = (i + k) % len;
                if self.subscribers[j].addr == dest {
                    found = Some(j);
                    break;
                }
            }
            let Some(j) = found else { continue };
            i = j;
            let c = &mut self.subscribers[j];
            let r = Receive::new(Protocol::Udp, SFU_ADDR, c.addr, &bytes).unwrap();
            let _ = c.rtc.handle_input(Input::Receive(now, r));
        }
        for c in &mut self.subscribers {
            loop {
                match c.rtc.poll_output() {
                    Ok(str0m::Output::Transmit(t)) => {
                        self.to_engine.push((t.source, t.contents.into()));
                    }
                    Ok(str0m::Output::Timeout(t)) => {
                        c.deadline = t;
                        break;
                    }
                    Ok(str0m::Output::Event(e)) => {
                        black_box(e);
                    }
                    Err(_) => break,
                }
            }
        }
        spent
    }

    /// [`Room::engine_step`] of the frames to count: callgrind collects only inside this
    /// function (`--toggle-collect=*counted_engine_step*`), so set-up and warm-up stay out.
    #[inline(never)]
    fn counted_engine_step(&mut self, now: Instant) {
        self.engine_step(now);
    }

    /// The engine's share of one frame: its timeout, the datagrams that came in (the
    /// subscribers' feedback, then the publisher's packet) and draining what it sends.
    #[inline(never)]
    pub fn engine_step(&mut self, now: Instant) {
        IN_ENGINE.with(|c| c.set(true));
        self.engine.handle_timeout(now);
        for (source, bytes) in self.to_engine.drain(..) {
            self.engine.handle_receive(now, source, SFU_ADDR, &bytes);
        }
        loop {
            match self.engine.poll_output() {
                Output::Transmit(t) => self.from_engine.push((t.destination, t.bytes)),
                Output::Event(e) => {
                    black_box(e);
                }
                Output::Timeout(_) => break,
            }
        }
        IN_ENGINE.with(|c| c.set(false));
    }
}
