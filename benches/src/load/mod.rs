//! `chorus-load`: synthetic voice-room peers on str0m that join through the real signaling
//! (Chorus' WebSocket protocol, or Janus' VideoRoom over its HTTP API) and the real SFU
//! with ICE, DTLS and SRTP, publish Opus tones and measure what listeners receive.
//!
//! Frugal by construction: every peer is one sans-IO `Rtc` plus its own UDP socket (the
//! SFU tells participants apart by 5-tuple), and a few media threads carry all of them,
//! each polling its sockets with epoll. Signaling runs on the caller's tokio runtime.
//! [`run`] is the whole scenario: rooms, joins, a measured window, a [`Report`].

mod chorus;
mod janus;
mod media;
mod peer;
mod progress;
mod report;
mod sfu_stats;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

pub use report::{
    Distribution, HearingReport, LossReport, Report, Scenario, SfuReport, StatsSource,
};
pub use sfu_stats::{SfuSample, parse_prometheus};

use crate::tone::DEFAULT_CANDIDATES;
use media::{MediaCommand, MediaThreads};
use peer::{PeerSetup, Role};
use progress::Progress;

/// Most peers one run may create (all rooms together).
pub const MAX_PEERS: usize = 10_000;
/// Longest measured window.
pub const MAX_DURATION: Duration = Duration::from_secs(3_600);
/// Audio slots (receive-only m-lines) every peer asks for, as the web client does.
pub const AUDIO_SLOTS: usize = 3;
/// Time to wait, after the last join, for every listener's first audio.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(20);
/// Joins in flight at once.
const MAX_JOINS_IN_FLIGHT: usize = 64;

/// Which server the peers join.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// Chorus: `url` is the signaling server's HTTP base (`http://127.0.0.1:7880/`).
    Chorus,
    /// Janus VideoRoom: `url` is the HTTP API base (`http://127.0.0.1:8088/janus`).
    Janus,
}

/// A load scenario.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Which server.
    pub target: Target,
    /// Chorus: signaling HTTP base. Janus: HTTP API base (`.../janus`).
    pub url: String,
    /// Rooms.
    pub rooms: usize,
    /// Speakers per room (they publish a tone each and receive the others).
    pub speakers: usize,
    /// Listeners per room (they only receive).
    pub listeners: usize,
    /// Length of the measured window, after everyone joined and a warm-up.
    pub duration: Duration,
    /// Warm-up between "everyone hears audio" and the window.
    pub warmup: Duration,
    /// Joins started per second.
    pub join_rate: f64,
    /// Media threads carrying the peers.
    pub threads: usize,
    /// Listeners per room that decode everything they receive (Opus) to tell which tones
    /// they hear; the others check sequence, loss and jitter only.
    pub decode_listeners: usize,
    /// Prometheus endpoint of the SFU (`http://127.0.0.1:PORT/metrics`).
    pub sfu_metrics: Option<String>,
    /// Process id of the SFU, read from `/proc` when no metrics endpoint answers.
    pub sfu_pid: Option<u32>,
    /// Print a progress bar on stderr.
    pub progress: bool,
    /// Address the peers' UDP sockets bind (loopback).
    pub bind_ip: Ipv4Addr,
    /// Chorus: the server API key that creates the rooms (`<data dir>/api-key.json`).
    pub api_key: Option<chorus_proto::api_key::ApiKey>,
}

impl Default for LoadConfig {
    fn default() -> Self {
        Self {
            target: Target::Chorus,
            url: "http://127.0.0.1:7880/".into(),
            rooms: 1,
            speakers: 3,
            listeners: 20,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(2),
            join_rate: 100.0,
            threads: 1,
            decode_listeners: 10,
            sfu_metrics: None,
            sfu_pid: None,
            progress: false,
            bind_ip: Ipv4Addr::LOCALHOST,
            api_key: None,
        }
    }
}

/// Why a load run could not be carried out. (A run that completes with losses or failed
/// joins is not an error: the [`Report`] says so.)
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The scenario is out of bounds or inconsistent.
    #[error("invalid scenario: {0}")]
    Config(String),
    /// The server is not on this machine: the tool only drives loopback servers.
    #[error("chorus-load only drives servers on loopback, not {0}")]
    NotLoopback(String),
    /// A room could not be created.
    #[error("could not create room: {0}")]
    CreateRoom(String),
    /// No speaker could join: nothing to measure.
    #[error("no speaker could join; first error: {0}")]
    NoSpeakers(String),
    /// Opus could not be set up.
    #[error("opus: {0}")]
    Opus(#[from] opus::Error),
    /// A socket or thread could not be set up.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// A media thread died.
    #[error("a media thread stopped: {0}")]
    MediaThread(String),
}

impl LoadConfig {
    /// Check bounds and that the server is on loopback.
    pub fn validate(&self) -> Result<(), LoadError> {
        let per_room = self.speakers + self.listeners;
        let total = self.rooms.saturating_mul(per_room);
        if self.rooms == 0 || self.speakers == 0 {
            return Err(LoadError::Config(
                "at least one room with one speaker is needed".into(),
            ));
        }
        if total > MAX_PEERS {
            return Err(LoadError::Config(format!(
                "{total} peers asked for, at most {MAX_PEERS}"
            )));
        }
        if self.duration.is_zero() || self.duration > MAX_DURATION {
            return Err(LoadError::Config(format!(
                "duration must be between 1 s and {} s",
                MAX_DURATION.as_secs()
            )));
        }
        if !(self.join_rate.is_finite() && self.join_rate > 0.0 && self.join_rate <= 10_000.0) {
            return Err(LoadError::Config(
                "join rate must be between 0 and 10000 per second".into(),
            ));
        }
        if self.threads == 0 || self.threads > 64 {
            return Err(LoadError::Config("threads must be 1..=64".into()));
        }
        if !self.bind_ip.is_loopback() {
            return Err(LoadError::NotLoopback(self.bind_ip.to_string()));
        }
        check_loopback(&self.url)?;
        if let Some(m) = &self.sfu_metrics {
            check_loopback(m)?;
        }
        Ok(())
    }

    fn peers(&self) -> usize {
        self.rooms * (self.speakers + self.listeners)
    }
}

/// `http://host:port/...` must name a loopback host.
fn check_loopback(url: &str) -> Result<(), LoadError> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| LoadError::Config(format!("not a plain http:// URL: {url}")))?;
    let host_port = rest.split('/').next().unwrap_or_default();
    let host = match host_port.rsplit_once(':') {
        Some((h, _)) => h,
        None => host_port,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ok = host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if ok {
        Ok(())
    } else {
        Err(LoadError::NotLoopback(url.to_owned()))
    }
}

/// The tone (Hz) of speaker `s` of room `r`: distinct within a room, and across rooms as
/// long as there are candidates left.
pub fn tone_of(room: usize, speaker: usize, speakers_per_room: usize) -> f32 {
    DEFAULT_CANDIDATES[(room * speakers_per_room + speaker) % DEFAULT_CANDIDATES.len()]
}

/// Everything a join needs to know about its room.
#[derive(Debug, Clone)]
pub(crate) struct RoomHandle {
    pub index: usize,
    /// Chorus room id, or Janus room number as text.
    pub id: String,
    /// Janus: publisher ids of the room's speakers (filled as speakers join).
    pub feeds: Arc<std::sync::Mutex<Vec<u64>>>,
}

/// Run a whole scenario and report. Call it on a tokio runtime (signaling I/O runs on it);
/// the media threads are its own.
pub async fn run(config: LoadConfig) -> Result<Report, LoadError> {
    config.validate()?;
    peer::install_crypto_provider();
    let started = Instant::now();
    let progress = Progress::new(config.progress, config.peers());
    let sampler = sfu_stats::Sampler::new(config.sfu_metrics.clone(), config.sfu_pid);
    let baseline = sampler.sample().await;

    // Rooms.
    let mut rooms = Vec::new();
    for index in 0..config.rooms {
        let id = match config.target {
            Target::Chorus => {
                chorus::create_room(&config.url, config.api_key.as_ref(), index, &config).await?
            }
            Target::Janus => janus::create_room(&config.url, index, &config).await?,
        };
        rooms.push(RoomHandle {
            index,
            id,
            feeds: Arc::default(),
        });
    }

    let threads = MediaThreads::start(config.threads, progress.counters())?;
    let cert = peer::shared_certificate();
    progress.phase("joining");

    // Speakers first (so listeners have audio to wait for), then listeners, room by room
    // interleaved so that every room fills at the same pace.
    let mut plan: Vec<(usize, Role)> = Vec::new();
    for s in 0..config.speakers {
        for r in 0..config.rooms {
            plan.push((
                r,
                Role::Speaker {
                    tone: tone_of(r, s, config.speakers),
                    index: s,
                },
            ));
        }
    }
    let speaker_count = plan.len();
    for l in 0..config.listeners {
        for r in 0..config.rooms {
            plan.push((
                r,
                Role::Listener {
                    decode: l < config.decode_listeners,
                },
            ));
        }
    }

    let mut joins = Joins {
        config: &config,
        rooms: &rooms,
        cert: &cert,
        threads: &threads,
        progress: &progress,
        next_peer: 0,
        joined: 0,
        failures: Vec::new(),
        sessions: Vec::new(),
        next_start: Instant::now(),
    };
    let listeners_plan = plan.split_off(speaker_count);
    // Speakers first, all of them in, so listeners have audio (and Janus feed ids).
    joins.run(plan).await;
    if joins.joined == 0 {
        threads.stop_all();
        let first = joins.failures.first().cloned().unwrap_or_default();
        return Err(LoadError::NoSpeakers(first));
    }
    // Listeners after the speakers' media is up: Janus refuses subscriptions to feeds
    // whose PeerConnection is not up yet, and first-audio times should not include it.
    let speakers_joined = joins.joined as u64;
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    while progress.counters().connected.load(Ordering::Relaxed) < speakers_joined
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    joins.run(listeners_plan).await;
    let Joins {
        joined,
        failures,
        sessions,
        ..
    } = joins;
    let joins_done = Instant::now();

    // Wait until listeners hear audio (or time is up), then warm up, then measure.
    progress.phase("connecting");
    let settle_deadline = Instant::now() + SETTLE_TIMEOUT;
    let listeners_joined = joined.saturating_sub(speaker_count.min(joined));
    while Instant::now() < settle_deadline {
        let heard = progress.counters().first_audio.load(Ordering::Relaxed) as usize;
        if heard >= listeners_joined {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    progress.phase("warm-up");
    tokio::time::sleep(config.warmup).await;

    progress.phase("measuring");
    threads.broadcast(|| MediaCommand::StartWindow);
    let before = sampler.sample().await;
    let window_start = Instant::now();
    let own_before = sfu_stats::own_cpu_seconds();
    progress.window(config.duration);
    tokio::time::sleep(config.duration).await;
    let after = sampler.sample().await;
    let own_after = sfu_stats::own_cpu_seconds();
    threads.broadcast(|| MediaCommand::EndWindow);
    let window = window_start.elapsed();

    progress.phase("collecting");
    let results = tokio::task::spawn_blocking(move || threads.finish())
        .await
        .map_err(|e| LoadError::MediaThread(e.to_string()))??;
    for s in sessions {
        s.close().await;
    }
    progress.done().await;

    Ok(report::build(report::Inputs {
        config: &config,
        peers: results,
        failures,
        joined,
        join_phase: joins_done.duration_since(started),
        window,
        baseline,
        before,
        after,
        own_cpu: own_after.zip(own_before).map(|(a, b)| a - b),
    }))
}

/// Joins paced at the configured rate, at most [`MAX_JOINS_IN_FLIGHT`] at once.
struct Joins<'a> {
    config: &'a LoadConfig,
    rooms: &'a [RoomHandle],
    cert: &'a peer::Certificate,
    threads: &'a MediaThreads,
    progress: &'a Progress,
    next_peer: usize,
    joined: usize,
    failures: Vec<String>,
    sessions: Vec<SessionGuard>,
    next_start: Instant,
}

impl Joins<'_> {
    async fn run(&mut self, plan: Vec<(usize, Role)>) {
        let interval = Duration::from_secs_f64(1.0 / self.config.join_rate);
        let mut in_flight = tokio::task::JoinSet::new();
        let mut plan = plan.into_iter();
        let mut more = true;
        loop {
            if more && in_flight.len() < MAX_JOINS_IN_FLIGHT {
                let now = Instant::now();
                if now < self.next_start {
                    // Collect finished joins while waiting for the next start.
                    tokio::select! {
                        _ = tokio::time::sleep(self.next_start - now) => {}
                        Some(done) = in_flight.join_next() => {
                            self.finished(done);
                            continue;
                        }
                    }
                }
                self.next_start = self.next_start.max(Instant::now() - interval) + interval;
                match plan.next() {
                    Some((room, role)) => {
                        let req = JoinRequest {
                            peer: self.next_peer,
                            room: self.rooms[room].clone(),
                            role,
                            bind_ip: self.config.bind_ip,
                            url: self.config.url.clone(),
                            cert: self.cert.clone(),
                        };
                        self.next_peer += 1;
                        let target = self.config.target;
                        in_flight.spawn(async move {
                            match target {
                                Target::Chorus => chorus::join(req).await,
                                Target::Janus => janus::join(req).await,
                            }
                        });
                    }
                    None => more = false,
                }
                continue;
            }
            match in_flight.join_next().await {
                Some(done) => self.finished(done),
                None => return,
            }
        }
    }

    fn finished(&mut self, done: Result<JoinResult, tokio::task::JoinError>) {
        let outcome = match done {
            Ok(Ok((setup, guard))) => match self.threads.add(setup) {
                Ok(()) => {
                    self.joined += 1;
                    self.progress.joined();
                    self.sessions.push(guard);
                    return;
                }
                Err(e) => e.to_string(),
            },
            Ok(Err(e)) => e,
            Err(e) => format!("join task: {e}"),
        };
        self.progress.failed();
        if self.failures.len() < 1_000 {
            self.failures.push(outcome);
        }
    }
}

/// What a join task gets.
pub(crate) struct JoinRequest {
    pub peer: usize,
    pub room: RoomHandle,
    pub role: Role,
    pub bind_ip: Ipv4Addr,
    pub url: String,
    pub cert: peer::Certificate,
}

/// Keeps a signaling session open for the run (Chorus: the WebSocket; Janus: nothing to
/// hold, sessions do not time out in our configuration) and closes it at the end.
pub(crate) enum SessionGuard {
    Chorus(chorus::Held),
    Janus(janus::Held),
}

impl SessionGuard {
    async fn close(self) {
        match self {
            SessionGuard::Chorus(h) => h.close().await,
            SessionGuard::Janus(h) => h.close().await,
        }
    }
}

pub(crate) type JoinResult = Result<(PeerSetup, SessionGuard), String>;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn only_loopback_servers() {
        assert!(check_loopback("http://127.0.0.1:7880/").is_ok());
        assert!(check_loopback("http://localhost:8088/janus").is_ok());
        assert!(check_loopback("http://[::1]:80/").is_ok());
        assert!(check_loopback("http://10.0.0.1:7880/").is_err());
        assert!(check_loopback("http://example.com/").is_err());
    }

    #[test]
    fn bounds_are_checked() {
        let mut c = LoadConfig::default();
        assert!(c.validate().is_ok());
        c.listeners = MAX_PEERS;
        assert!(c.validate().is_err());
        c.listeners = 1;
        c.duration = Duration::ZERO;
        assert!(c.validate().is_err());
    }

    #[test]
    fn tones_differ_within_a_room() {
        let t: Vec<f32> = (0..5).map(|s| tone_of(0, s, 5)).collect();
        for (i, a) in t.iter().enumerate() {
            for b in &t[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }
}
