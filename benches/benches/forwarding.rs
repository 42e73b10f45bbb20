//! The engine's forwarding path in memory: one publisher → N subscribers (N = 1, 10, 100),
//! SRTP included. Clients are str0m `Rtc`s on a simulated clock (as in `sfu/tests`); only
//! the engine's work is timed — decrypting the published packet, choosing slots, writing
//! and encrypting one packet per subscriber, and handling the subscribers' RTCP feedback
//! (receiver reports, TWCC) that comes back. Throughput is in forwarded packets, so
//! criterion's time per element is the engine's cost per forwarded packet.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chorus_proto::token::{Grants, ISSUER, RoomClaims};
use chorus_proto::{ParticipantId, RoomId};
use chorus_sfu::{Engine, EngineConfig, EngineEvent, Output};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use str0m::change::SdpAnswer;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Input, Rtc};

const SFU_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 3478);
const FRAME: Duration = Duration::from_millis(20);
/// Frames (of simulated time) after which a measurement moves to a fresh room.
const FRESH_ROOM_AFTER: u64 = 50_000;
/// A typical 20 ms Opus voice frame.
const PAYLOAD: [u8; 80] = [0x5a; 80];

struct Client {
    addr: SocketAddr,
    rtc: Rtc,
    send_mid: Mid,
    deadline: Instant,
}

struct Room {
    now: Instant,
    engine: Engine,
    publisher: Client,
    subscribers: Vec<Client>,
    frames: u64,
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
    fn new(subscribers: usize) -> Self {
        let now = Instant::now();
        let engine = Engine::new(
            EngineConfig {
                local_addrs: vec![SFU_ADDR],
                audio_slots: 3,
                connect_timeout: Duration::from_secs(30),
            },
            now,
        )
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
            to_engine: Vec::new(),
            from_engine: Vec::new(),
        };
        let id = RoomId::random();
        room.publisher = room.join(&id, Grants::SPEAKER, 0);
        for i in 0..subscribers {
            let c = room.join(&id, Grants::LISTENER, i + 1);
            room.subscribers.push(c);
        }
        room.connect(subscribers + 1);
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
        let answer = self
            .engine
            .admit(claims(room, grants), &offer.to_sdp_string(), self.now)
            .unwrap();
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
            self.engine.handle_timeout(now);
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
        loop {
            match self.engine.poll_output() {
                Output::Transmit(t) => self.from_engine.push((t.destination, t.bytes)),
                Output::Event(EngineEvent::Connected { .. }) => *connected += 1,
                Output::Event(_) => {}
                Output::Timeout(_) => break,
            }
        }
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
            self.engine.handle_receive(now, source, SFU_ADDR, &bytes);
        }
        moved
    }

    /// One 20 ms frame through the engine; returns the time spent inside the engine.
    fn frame(&mut self) -> Duration {
        self.now += FRAME;
        let now = self.now;
        let n = self.frames;
        self.frames += 1;
        // The publisher's packet (not timed).
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
        for c in &mut self.subscribers {
            if c.deadline <= now {
                let _ = c.rtc.handle_input(Input::Timeout(now));
            }
        }
        // Subscribers' feedback from the previous frame, then the new packet: engine time.
        let mut spent = Duration::ZERO;
        let start = Instant::now();
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
        spent += start.elapsed();
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
}

fn forwarding(c: &mut Criterion) {
    chorus_sfu::install_crypto_provider();
    let mut group = c.benchmark_group("forward_one_publisher");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(5));
    for n in [1usize, 10, 100] {
        let mut room = Room::new(n);
        // Warm the slots and buffers up.
        for _ in 0..100 {
            room.frame();
        }
        let before = room.engine.stats().metrics.packets_forwarded;
        room.frame();
        let per_frame = room.engine.stats().metrics.packets_forwarded - before;
        assert_eq!(per_frame, n as u64, "every subscriber gets the frame");
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("subscribers", n), &n, |b, _| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    // Simulated time runs 20 ms per iteration: keep each room's life
                    // within ~15 simulated minutes (set-up is not timed).
                    if room.frames >= FRESH_ROOM_AFTER {
                        room = Room::new(n);
                        for _ in 0..100 {
                            room.frame();
                        }
                    }
                    spent += room.frame();
                }
                spent
            });
        });
        // Still forwarding to everyone after all those simulated hours?
        let before = room.engine.stats().metrics.packets_forwarded;
        room.frame();
        let after = room.engine.stats().metrics.packets_forwarded - before;
        assert_eq!(after, n as u64, "forwarding stopped during the measurement");
    }
    group.finish();
}

criterion_group!(benches, forwarding);
criterion_main!(benches);
