//! One synthetic peer: a str0m `Rtc` (full ICE, DTLS, SRTP) on its own UDP socket. Speakers
//! write a 20 ms Opus frame of their tone every 20 ms; everyone checks what it receives —
//! sequence continuity, loss, jitter, time to first audio — and decoding peers tell which
//! tones they hear. Driven by a media thread ([`super::media`]); no I/O in here but the
//! socket sends.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::media::{Direction, Frequency, MediaData, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};

use crate::tone::{DEFAULT_CANDIDATES, FRAME_SAMPLES, ToneEncoder, ToneListener};

/// Opus frame cadence.
pub const FRAME: Duration = Duration::from_millis(20);
/// RFC 6464 level the speakers announce (−dBov): the tone's level, loud enough for any
/// SFU's speaker detection.
const SPEAKER_LEVEL: i8 = -14;
/// A tone counts as heard by a listener after this many 100 ms windows.
pub const HEARD_WINDOWS: u64 = 3;

/// What a peer is in its room.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Role {
    /// Publishes `tone` (Hz); `index` is its rank among the room's speakers.
    Speaker { tone: f32, index: usize },
    /// Only receives; `decode` = decode everything to tell which tones it hears.
    Listener { decode: bool },
}

/// The client side's `Rtc` settings, shared by every peer: one DTLS certificate for all
/// (generating one costs ≈ 2 ms of CPU per peer otherwise).
pub type Certificate = RtcConfig;

/// Install str0m's crypto provider (aws-lc-rs) for the process. Idempotent.
pub fn install_crypto_provider() {
    str0m::crypto::from_feature_flags().install_process_default();
}

/// The shared client configuration (see [`Certificate`]).
pub fn shared_certificate() -> Certificate {
    let builder = Rtc::builder().clear_codecs().enable_opus(true, false);
    match str0m::crypto::from_feature_flags()
        .dtls_provider
        .generate_certificate()
    {
        Some(cert) => builder.set_dtls_cert(cert),
        None => builder,
    }
}

/// A peer between signaling and the media thread: its `Rtc` holds the remote description.
pub struct PeerSetup {
    pub room: usize,
    pub role: Role,
    pub rtc: Rtc,
    pub socket: std::net::UdpSocket,
    pub local: SocketAddr,
    /// The m-line it sends on (speakers).
    pub send_mid: Option<Mid>,
    /// When its WebSocket (or first HTTP request) opened.
    pub opened_at: Instant,
}

/// A fresh `Rtc` on its own socket, before the offer/answer.
pub struct Unjoined {
    pub rtc: Rtc,
    pub socket: std::net::UdpSocket,
    pub local: SocketAddr,
}

impl Unjoined {
    pub fn new(config: &Certificate, ip: Ipv4Addr) -> Result<Self, String> {
        let socket = std::net::UdpSocket::bind((ip, 0)).map_err(|e| format!("bind UDP: {e}"))?;
        let local = socket
            .local_addr()
            .map_err(|e| format!("UDP local address: {e}"))?;
        let mut rtc = config.clone().build(Instant::now());
        let candidate = Candidate::host(local, "udp").map_err(|e| format!("candidate: {e}"))?;
        rtc.add_local_candidate(candidate);
        Ok(Self { rtc, socket, local })
    }

    /// A browser-shaped offer: one send audio m-line, then `slots` receive-only ones.
    pub fn offer(&mut self, slots: usize) -> Result<(String, SdpPendingOffer, Mid), String> {
        let mut api = self.rtc.sdp_api();
        let send = api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
        for _ in 0..slots {
            api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
        }
        let (offer, pending) = api
            .apply()
            .ok_or_else(|| "str0m produced no offer".to_owned())?;
        Ok((offer.to_sdp_string(), pending, send))
    }

    /// An offer with only the send line (Janus publishers).
    pub fn send_offer(&mut self) -> Result<(String, SdpPendingOffer, Mid), String> {
        self.offer(0)
    }

    pub fn accept_answer(&mut self, pending: SdpPendingOffer, sdp: &str) -> Result<(), String> {
        let answer =
            SdpAnswer::from_sdp_string(sdp).map_err(|e| format!("unreadable SDP answer: {e}"))?;
        self.rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .map_err(|e| format!("SDP answer refused: {e}"))
    }

    /// Answer a server's offer (Janus subscribers).
    pub fn accept_offer(&mut self, sdp: &str) -> Result<String, String> {
        let offer =
            SdpOffer::from_sdp_string(sdp).map_err(|e| format!("unreadable SDP offer: {e}"))?;
        let answer = self
            .rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| format!("SDP offer refused: {e}"))?;
        Ok(answer.to_sdp_string())
    }
}

/// Per received stream (one per receive m-line).
#[derive(Debug, Default, Clone)]
pub struct StreamStats {
    last_seq: Option<u64>,
    /// Transit of the previous packet and RFC 3550 jitter, in RTP units (48 kHz).
    last_transit: Option<f64>,
    jitter: f64,
}

/// Counters a peer keeps; reset when the window opens.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counters {
    /// Audio frames received.
    pub received: u64,
    /// Sequence numbers skipped (lost, or never sent).
    pub lost: u64,
    /// Frames older than one already seen.
    pub late: u64,
    /// Frames sent (speakers).
    pub sent: u64,
}

/// What a peer reports at the end.
#[derive(Debug, Clone)]
pub struct PeerResult {
    pub room: usize,
    pub role: Role,
    pub opened_at: Instant,
    pub connected_at: Option<Instant>,
    pub first_audio_at: Option<Instant>,
    /// Over the measured window.
    pub window: Counters,
    /// Largest per-stream jitter, ms.
    pub jitter_ms: f64,
    /// Decoding peers: windows in which each candidate tone was heard.
    pub heard: Option<Vec<(f32, u64)>>,
    pub decode_errors: u64,
    pub error: Option<String>,
}

pub struct Peer {
    pub room: usize,
    pub role: Role,
    pub rtc: Rtc,
    pub socket: mio::net::UdpSocket,
    pub local: SocketAddr,
    send_mid: Option<Mid>,
    encoder: Option<ToneEncoder>,
    pub next_frame: Option<Instant>,
    frames: u64,
    pub deadline: Instant,
    opened_at: Instant,
    connected_at: Option<Instant>,
    first_audio_at: Option<Instant>,
    streams: HashMap<Mid, StreamStats>,
    decoders: Option<HashMap<Mid, ToneListener>>,
    decode_errors: u64,
    pub window: Counters,
    pub in_window: bool,
    error: Option<String>,
}

/// What handling some input produced, for the thread's shared counters.
#[derive(Debug, Default, Clone, Copy)]
pub struct Progressed {
    pub frames: u64,
    pub first_audio: bool,
    pub connected: bool,
}

impl Peer {
    pub fn new(setup: PeerSetup) -> Result<Self, String> {
        let encoder = match setup.role {
            Role::Speaker { tone, .. } => {
                Some(ToneEncoder::new(Some(tone)).map_err(|e| format!("opus encoder: {e}"))?)
            }
            Role::Listener { .. } => None,
        };
        let decode = match setup.role {
            Role::Listener { decode } => decode,
            Role::Speaker { .. } => false,
        };
        setup
            .socket
            .set_nonblocking(true)
            .map_err(|e| format!("non-blocking socket: {e}"))?;
        Ok(Self {
            room: setup.room,
            role: setup.role,
            rtc: setup.rtc,
            socket: mio::net::UdpSocket::from_std(setup.socket),
            local: setup.local,
            send_mid: setup.send_mid,
            encoder,
            next_frame: None,
            frames: 0,
            deadline: Instant::now(),
            opened_at: setup.opened_at,
            connected_at: None,
            first_audio_at: None,
            streams: HashMap::new(),
            decoders: decode.then(HashMap::new),
            decode_errors: 0,
            window: Counters::default(),
            in_window: false,
            error: None,
        })
    }

    pub fn alive(&self) -> bool {
        self.error.is_none() && self.rtc.is_alive()
    }

    /// One datagram arrived.
    pub fn receive(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) -> Progressed {
        if !self.alive() {
            return Progressed::default();
        }
        let Ok(receive) = Receive::new(Protocol::Udp, from, self.local, bytes) else {
            return Progressed::default();
        };
        if let Err(e) = self.rtc.handle_input(Input::Receive(now, receive)) {
            // A refused datagram is counted by the server side; keep going.
            tracing::debug!(error = %e, "datagram refused");
        }
        self.drain(now)
    }

    /// Time passed: fire str0m timeouts and write a frame if one is due.
    pub fn tick(&mut self, now: Instant) -> Progressed {
        if !self.alive() {
            self.deadline = now + Duration::from_secs(3_600);
            return Progressed::default();
        }
        let mut p = Progressed::default();
        if self.deadline <= now {
            if let Err(e) = self.rtc.handle_input(Input::Timeout(now)) {
                self.error = Some(format!("rtc: {e}"));
                return p;
            }
            p = self.drain(now);
        }
        if self.next_frame.is_some_and(|t| t <= now) {
            self.write_frame(now);
            let q = self.drain(now);
            p.frames += q.frames;
            p.first_audio |= q.first_audio;
        }
        p
    }

    /// The next instant this peer needs the thread's attention.
    pub fn wake_at(&self) -> Instant {
        match self.next_frame {
            Some(t) => t.min(self.deadline),
            None => self.deadline,
        }
    }

    fn write_frame(&mut self, now: Instant) {
        let (Some(mid), Some(encoder), Some(due)) =
            (self.send_mid, self.encoder.as_mut(), self.next_frame)
        else {
            return;
        };
        // Keep a steady 20 ms grid; if the thread fell far behind, skip rather than burst.
        let mut next = due + FRAME;
        if next + 5 * FRAME < now {
            next = now + FRAME;
        }
        self.next_frame = Some(next);
        let payload = match encoder.next_frame() {
            Ok(p) => p,
            Err(e) => {
                self.error = Some(format!("opus encode: {e}"));
                return;
            }
        };
        let n = self.frames;
        self.frames += 1;
        let Some(writer) = self.rtc.writer(mid) else {
            return;
        };
        let Some(pt) = writer.payload_params().next().map(|p| p.pt()) else {
            return;
        };
        let time = MediaTime::new(n * FRAME_SAMPLES as u64, Frequency::FORTY_EIGHT_KHZ);
        match writer
            .audio_level(SPEAKER_LEVEL, true)
            .write(pt, now, time, payload)
        {
            Ok(()) => {
                if self.in_window {
                    self.window.sent += 1;
                }
            }
            Err(e) => self.error = Some(format!("write audio: {e}")),
        }
    }

    /// Poll the `Rtc` until its next deadline: send datagrams, account for media.
    fn drain(&mut self, now: Instant) -> Progressed {
        let mut p = Progressed::default();
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    self.deadline = t;
                    return p;
                }
                Ok(Output::Transmit(t)) => match self.socket.send_to(&t.contents, t.destination) {
                    Ok(_) => {}
                    // A full socket buffer drops the datagram, as the network would.
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(e) => tracing::debug!(error = %e, "send failed"),
                },
                Ok(Output::Event(e)) => match e {
                    Event::Connected if self.connected_at.is_none() => {
                        self.connected_at = Some(now);
                        p.connected = true;
                        if self.send_mid.is_some() && self.encoder.is_some() {
                            self.next_frame = Some(now);
                        }
                    }
                    Event::MediaData(data) => {
                        p.frames += 1;
                        if self.first_audio_at.is_none()
                            && matches!(self.role, Role::Listener { .. })
                        {
                            p.first_audio = true;
                        }
                        self.media(now, &data);
                    }
                    _ => {}
                },
                Err(e) => {
                    self.error = Some(format!("rtc: {e}"));
                    self.deadline = now + Duration::from_secs(3_600);
                    return p;
                }
            }
        }
    }

    fn media(&mut self, now: Instant, data: &MediaData) {
        if self.first_audio_at.is_none() {
            self.first_audio_at = Some(data.network_time.min(now));
        }
        let stream = self.streams.entry(data.mid).or_default();
        let start = **data.seq_range.start();
        let end = **data.seq_range.end();
        let mut c = Counters {
            received: 1,
            ..Counters::default()
        };
        match stream.last_seq {
            Some(last) if end <= last => c.late = 1,
            Some(last) => {
                c.lost = start.saturating_sub(last + 1);
                stream.last_seq = Some(end);
            }
            None => stream.last_seq = Some(end),
        }
        // RFC 3550 interarrival jitter, in RTP units; arrival from the monotonic clock.
        if c.late == 0 {
            let arrival = data
                .network_time
                .duration_since(self.opened_at)
                .as_secs_f64()
                * f64::from(crate::tone::SAMPLE_RATE);
            let transit = arrival - data.time.numer() as f64;
            if let Some(prev) = stream.last_transit {
                let d = (transit - prev).abs();
                // A slot switching speakers re-bases timestamps: ignore absurd jumps.
                if d < f64::from(crate::tone::SAMPLE_RATE) {
                    stream.jitter += (d - stream.jitter) / 16.0;
                }
            }
            stream.last_transit = Some(transit);
        }
        if self.in_window {
            add(&mut self.window, c);
        }
        if let Some(decoders) = &mut self.decoders {
            let decoder = match decoders.entry(data.mid) {
                std::collections::hash_map::Entry::Occupied(o) => Some(o.into_mut()),
                std::collections::hash_map::Entry::Vacant(v) => {
                    ToneListener::new(&DEFAULT_CANDIDATES)
                        .ok()
                        .map(|l| v.insert(l))
                }
            };
            match decoder.map(|d| d.push_packet(&data.data)) {
                Some(Ok(_)) => {}
                _ => self.decode_errors += 1,
            }
        }
    }

    pub fn result(&self) -> PeerResult {
        let heard = self.decoders.as_ref().map(|decoders| {
            DEFAULT_CANDIDATES
                .iter()
                .enumerate()
                .map(|(i, hz)| {
                    let windows = decoders
                        .values()
                        .map(|d| d.heard().get(i).copied().unwrap_or(0))
                        .sum();
                    (*hz, windows)
                })
                .collect()
        });
        let jitter = self.streams.values().map(|s| s.jitter).fold(0.0, f64::max);
        PeerResult {
            room: self.room,
            role: self.role,
            opened_at: self.opened_at,
            connected_at: self.connected_at,
            first_audio_at: self.first_audio_at,
            window: self.window,
            jitter_ms: jitter / f64::from(crate::tone::SAMPLE_RATE) * 1_000.0,
            heard,
            decode_errors: self.decode_errors,
            error: self.error.clone(),
        }
    }

    /// Say goodbye (DTLS close) so the server frees the participant at once.
    pub fn close(&mut self) {
        if self.rtc.close().is_err() {
            return;
        }
        while let Ok(Output::Transmit(t)) = self.rtc.poll_output() {
            let _ = self.socket.send_to(&t.contents, t.destination);
        }
    }
}

fn add(to: &mut Counters, c: Counters) {
    to.received += c.received;
    to.lost += c.lost;
    to.late += c.late;
}
