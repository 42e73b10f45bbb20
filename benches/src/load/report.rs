//! The outcome of a run: join-to-first-audio, loss and jitter, who heard which tones, and
//! the server's CPU per forwarded packet and memory per participant. Serialisable (the
//! `--json` output, read back by `chorus-load-compare`) and printable for humans.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::peer::{HEARD_WINDOWS, PeerResult, Role};
use super::sfu_stats::SfuSample;
pub use super::sfu_stats::StatsSource;
use super::{AUDIO_SLOTS, LoadConfig, Target, tone_of};

/// The scenario as run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Scenario {
    pub rooms: usize,
    pub speakers: usize,
    pub listeners: usize,
    pub duration_s: f64,
    pub join_rate: f64,
    pub threads: usize,
}

/// Percentiles of a set of durations, in milliseconds, with the sorted samples (for CDFs).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Distribution {
    pub count: usize,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    pub samples: Vec<f64>,
}

impl Distribution {
    pub fn from_ms(mut samples: Vec<f64>) -> Self {
        samples.retain(|v| v.is_finite());
        samples.sort_by(f64::total_cmp);
        // Nearest-rank percentiles.
        let at = |q: f64| -> f64 {
            if samples.is_empty() {
                return 0.0;
            }
            let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
            samples[rank - 1]
        };
        Self {
            count: samples.len(),
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            max: samples.last().copied().unwrap_or(0.0),
            samples,
        }
    }
}

/// What listeners received during the window.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LossReport {
    /// Audio frames received by listeners.
    pub received: u64,
    /// Sequence numbers skipped.
    pub lost: u64,
    /// Frames that arrived after a later one.
    pub late: u64,
    /// lost / (received + lost).
    pub loss_ratio: f64,
    /// Listeners that received nothing in the window.
    pub silent_listeners: usize,
    /// Frames per listener per second (3 slots × 50 = 150 when the room has 3+ speakers).
    pub frames_per_listener_per_s: f64,
    /// RFC 3550 jitter, mean over listeners of their worst stream, ms.
    pub jitter_ms_mean: f64,
    /// Worst stream of any listener, ms.
    pub jitter_ms_max: f64,
}

/// Who heard what, among listeners that decode.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HearingReport {
    /// Listeners that decoded their audio.
    pub decoding_listeners: usize,
    /// Of those, how many heard as many of their room's tones as they have slots (or all
    /// of them when there are fewer speakers) and no foreign tone.
    pub heard_right: usize,
    /// Heard a tone of no speaker of their room.
    pub heard_foreign: usize,
    /// Missed tones they should have heard.
    pub heard_too_few: usize,
    /// Opus packets that would not decode.
    pub decode_errors: u64,
    /// A few listeners' findings, for the reader.
    pub examples: Vec<String>,
}

/// The server's cost.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SfuReport {
    /// Where CPU and memory came from.
    pub source: StatsSource,
    /// Where the forwarded count came from.
    pub forwarded_source: StatsSource,
    /// Server CPU seconds during the window.
    pub cpu_seconds: Option<f64>,
    /// Packets forwarded during the window.
    pub forwarded_packets: f64,
    /// Forwarded packets per second.
    pub forwarded_per_s: f64,
    /// The headline: server CPU microseconds per forwarded packet.
    pub cpu_us_per_forwarded_packet: Option<f64>,
    /// Server CPU utilisation during the window (1.0 = one core).
    pub cpu_cores: Option<f64>,
    /// Resident memory at the end of the window.
    pub rss_bytes: Option<f64>,
    /// (RSS at the end − RSS before the run) / participants.
    pub rss_per_participant_bytes: Option<f64>,
    /// Participants the server reported (Prometheus only).
    pub participants: Option<f64>,
    /// Drops during the window by reason (Prometheus only).
    pub dropped: BTreeMap<String, f64>,
}

/// Everything a run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub target: String,
    pub scenario: Scenario,
    /// Peers planned, joined (signaling done), connected (DTLS up).
    pub peers: usize,
    pub joined: usize,
    pub connected: usize,
    pub join_failures: usize,
    /// The first few reasons joins failed.
    pub failure_examples: Vec<String>,
    /// Peers whose WebRTC stack failed during the run, and the first few reasons.
    pub peer_errors: usize,
    pub peer_error_examples: Vec<String>,
    /// Listeners that received any audio.
    pub listeners: usize,
    pub listeners_hearing_audio: usize,
    pub join_phase_s: f64,
    pub window_s: f64,
    /// WebSocket (or first HTTP request) opened → first audio frame of the room, listeners.
    pub join_to_first_audio_ms: Distribution,
    /// Signaling opened → DTLS connected, all peers.
    pub connect_ms: Distribution,
    pub loss: LossReport,
    pub hearing: HearingReport,
    pub sfu: SfuReport,
    /// CPU seconds the load tool itself used during the window.
    pub load_cpu_seconds: Option<f64>,
}

impl Report {
    /// Everyone joined and connected, no loss, every decoding listener heard right.
    pub fn clean(&self) -> bool {
        self.join_failures == 0
            && self.peer_errors == 0
            && self.connected == self.joined
            && self.listeners_hearing_audio == self.listeners
            && self.loss.lost == 0
            && self.loss.silent_listeners == 0
            && self.hearing.heard_right == self.hearing.decoding_listeners
    }
}

pub(crate) struct Inputs<'a> {
    pub config: &'a LoadConfig,
    pub peers: Vec<PeerResult>,
    pub failures: Vec<String>,
    pub joined: usize,
    pub join_phase: Duration,
    pub window: Duration,
    pub baseline: SfuSample,
    pub before: SfuSample,
    pub after: SfuSample,
    pub own_cpu: Option<f64>,
}

pub(crate) fn build(i: Inputs<'_>) -> Report {
    let c = i.config;
    let window_s = i.window.as_secs_f64();
    let listeners: Vec<&PeerResult> = i
        .peers
        .iter()
        .filter(|p| matches!(p.role, Role::Listener { .. }))
        .collect();

    let first_audio = Distribution::from_ms(
        listeners
            .iter()
            .filter_map(|p| p.first_audio_at.map(|t| ms(t.duration_since(p.opened_at))))
            .collect(),
    );
    let connect = Distribution::from_ms(
        i.peers
            .iter()
            .filter_map(|p| p.connected_at.map(|t| ms(t.duration_since(p.opened_at))))
            .collect(),
    );

    let mut loss = LossReport::default();
    let mut jitters = Vec::new();
    for p in &listeners {
        loss.received += p.window.received;
        loss.lost += p.window.lost;
        loss.late += p.window.late;
        if p.window.received == 0 {
            loss.silent_listeners += 1;
        }
        jitters.push(p.jitter_ms);
    }
    let sent = loss.received + loss.lost;
    loss.loss_ratio = if sent == 0 {
        0.0
    } else {
        loss.lost as f64 / sent as f64
    };
    if !listeners.is_empty() && window_s > 0.0 {
        loss.frames_per_listener_per_s = loss.received as f64 / listeners.len() as f64 / window_s;
    }
    if !jitters.is_empty() {
        loss.jitter_ms_mean = jitters.iter().sum::<f64>() / jitters.len() as f64;
        loss.jitter_ms_max = jitters.iter().copied().fold(0.0, f64::max);
    }

    // Tones each room's joined speakers publish.
    let mut room_tones: BTreeMap<usize, BTreeSet<u32>> = BTreeMap::new();
    for p in &i.peers {
        if let Role::Speaker { index, .. } = p.role {
            room_tones
                .entry(p.room)
                .or_default()
                .insert(tone_of(p.room, index, c.speakers) as u32);
        }
    }
    let mut hearing = HearingReport::default();
    for p in &listeners {
        let Some(heard) = &p.heard else { continue };
        hearing.decoding_listeners += 1;
        hearing.decode_errors += p.decode_errors;
        let mine = room_tones.get(&p.room).cloned().unwrap_or_default();
        let heard: BTreeSet<u32> = heard
            .iter()
            .filter(|(_, windows)| *windows >= HEARD_WINDOWS)
            .map(|(hz, _)| *hz as u32)
            .collect();
        let foreign = heard.difference(&mine).count();
        let expected = mine.len().min(AUDIO_SLOTS);
        let right = heard.intersection(&mine).count();
        if foreign > 0 {
            hearing.heard_foreign += 1;
        }
        if right < expected {
            hearing.heard_too_few += 1;
        }
        if foreign == 0 && right >= expected {
            hearing.heard_right += 1;
        }
        if hearing.examples.len() < 5
            || ((foreign > 0 || right < expected) && hearing.examples.len() < 10)
        {
            hearing.examples.push(format!(
                "room {} listener heard {:?} Hz; the room's speakers are {:?} Hz",
                p.room, heard, mine
            ));
        }
    }

    // The server's cost over the window.
    let delta = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| a - b);
    let peers_forwarded: u64 = i.peers.iter().map(|p| p.window.received).sum();
    let (forwarded, forwarded_source) = match delta(i.after.forwarded, i.before.forwarded) {
        Some(f) => (f, StatsSource::Prometheus),
        None => (peers_forwarded as f64, StatsSource::Peers),
    };
    let cpu = delta(i.after.cpu_seconds, i.before.cpu_seconds);
    let participants = i.joined.max(1) as f64;
    let mut dropped = BTreeMap::new();
    for (reason, v) in &i.after.dropped {
        let d = v - i.before.dropped.get(reason).copied().unwrap_or(0.0);
        dropped.insert(reason.clone(), d);
    }
    let sfu = SfuReport {
        source: i.after.source,
        forwarded_source,
        cpu_seconds: cpu,
        forwarded_packets: forwarded,
        forwarded_per_s: if window_s > 0.0 {
            forwarded / window_s
        } else {
            0.0
        },
        cpu_us_per_forwarded_packet: cpu.filter(|_| forwarded > 0.0).map(|s| s * 1e6 / forwarded),
        cpu_cores: cpu.map(|s| s / window_s.max(1e-9)),
        rss_bytes: i.after.rss_bytes,
        rss_per_participant_bytes: delta(i.after.rss_bytes, i.baseline.rss_bytes)
            .map(|d| d / participants),
        participants: i.after.participants,
        dropped,
    };

    let connected = i.peers.iter().filter(|p| p.connected_at.is_some()).count();
    Report {
        target: match c.target {
            Target::Chorus => "chorus".into(),
            Target::Janus => "janus".into(),
        },
        scenario: Scenario {
            rooms: c.rooms,
            speakers: c.speakers,
            listeners: c.listeners,
            duration_s: c.duration.as_secs_f64(),
            join_rate: c.join_rate,
            threads: c.threads,
        },
        peers: c.peers(),
        joined: i.joined,
        connected,
        join_failures: i.failures.len(),
        failure_examples: i.failures.iter().take(5).cloned().collect(),
        peer_errors: i.peers.iter().filter(|p| p.error.is_some()).count(),
        peer_error_examples: i
            .peers
            .iter()
            .filter_map(|p| p.error.clone())
            .take(5)
            .collect(),
        listeners: listeners.len(),
        listeners_hearing_audio: listeners
            .iter()
            .filter(|p| p.first_audio_at.is_some())
            .count(),
        join_phase_s: i.join_phase.as_secs_f64(),
        window_s,
        join_to_first_audio_ms: first_audio,
        connect_ms: connect,
        loss,
        hearing,
        sfu,
        load_cpu_seconds: i.own_cpu,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

fn opt(v: Option<f64>, unit: &str, digits: usize) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v:.digits$}{unit}"),
        _ => "n/a".into(),
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.scenario;
        writeln!(
            f,
            "chorus-load against {}: {} room(s) × ({} speakers + {} listeners), {:.0} s window",
            self.target, s.rooms, s.speakers, s.listeners, self.window_s
        )?;
        writeln!(
            f,
            "  peers      {} planned, {} joined ({} failed), {} connected; joins took {:.1} s",
            self.peers, self.joined, self.join_failures, self.connected, self.join_phase_s
        )?;
        for e in &self.failure_examples {
            writeln!(f, "             failure: {e}")?;
        }
        if self.peer_errors > 0 {
            writeln!(
                f,
                "  errors     {} peers failed during the run",
                self.peer_errors
            )?;
            for e in &self.peer_error_examples {
                writeln!(f, "             {e}")?;
            }
        }
        let d = &self.join_to_first_audio_ms;
        writeln!(
            f,
            "  first audio {}/{} listeners; join→first audio p50 {:.0} ms, p90 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
            self.listeners_hearing_audio, self.listeners, d.p50, d.p90, d.p99, d.max
        )?;
        let l = &self.loss;
        writeln!(
            f,
            "  received   {} frames ({:.1}/listener/s), lost {} ({:.4} %), late {}, silent listeners {}",
            l.received,
            l.frames_per_listener_per_s,
            l.lost,
            l.loss_ratio * 100.0,
            l.late,
            l.silent_listeners
        )?;
        writeln!(
            f,
            "  jitter     mean {:.2} ms, worst {:.2} ms",
            l.jitter_ms_mean, l.jitter_ms_max
        )?;
        let h = &self.hearing;
        writeln!(
            f,
            "  hearing    {}/{} decoding listeners heard their room's speakers ({} foreign tone, {} too few, {} decode errors)",
            h.heard_right, h.decoding_listeners, h.heard_foreign, h.heard_too_few, h.decode_errors
        )?;
        for e in h.examples.iter().take(3) {
            writeln!(f, "             {e}")?;
        }
        let x = &self.sfu;
        writeln!(
            f,
            "  server     CPU {} per forwarded packet ({} cores), {:.0} packets/s forwarded [CPU/RSS from {:?}, forwarded from {:?}]",
            opt(x.cpu_us_per_forwarded_packet, " µs", 2),
            opt(x.cpu_cores, "", 2),
            x.forwarded_per_s,
            x.source,
            x.forwarded_source
        )?;
        writeln!(
            f,
            "             RSS {} total, {} per participant",
            opt(x.rss_bytes.map(|b| b / 1_048_576.0), " MiB", 1),
            opt(x.rss_per_participant_bytes.map(|b| b / 1024.0), " KiB", 0)
        )?;
        if !x.dropped.is_empty() {
            writeln!(f, "             drops in window: {:?}", x.dropped)?;
        }
        writeln!(
            f,
            "  load tool  {} CPU in the window",
            opt(
                self.load_cpu_seconds.map(|c| c / self.window_s.max(1e-9)),
                " cores",
                2
            )
        )?;
        write!(
            f,
            "  verdict    {}",
            if self.clean() { "clean" } else { "NOT clean" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let d = Distribution::from_ms((1..=100).map(f64::from).collect());
        assert_eq!(d.p50, 50.0);
        assert_eq!(d.p99, 99.0);
        assert_eq!(d.max, 100.0);
        assert_eq!(Distribution::from_ms(vec![]).count, 0);
    }
}
