//! What the server under test spent: read from its Prometheus `/metrics` (process CPU
//! seconds, RSS, participants, forwarded packets, drops) or, when that does not answer,
//! from `/proc/<pid>` (utime + stime, VmRSS) of a process id we were given.

use std::collections::HashMap;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::rest;

/// Where a figure came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatsSource {
    /// The SFU's Prometheus endpoint.
    Prometheus,
    /// `/proc/<pid>` of the server process.
    Proc,
    /// The load peers' own counts (forwarded = frames the peers received).
    Peers,
    /// Nothing available.
    None,
}

/// One reading of the server's counters.
#[derive(Debug, Clone, Serialize)]
pub struct SfuSample {
    #[serde(skip)]
    pub at: Option<Instant>,
    pub source: StatsSource,
    pub cpu_seconds: Option<f64>,
    pub rss_bytes: Option<f64>,
    pub participants: Option<f64>,
    pub rooms: Option<f64>,
    pub packets_in: Option<f64>,
    pub packets_out: Option<f64>,
    pub bytes_in: Option<f64>,
    pub bytes_out: Option<f64>,
    pub forwarded: Option<f64>,
    pub dropped: HashMap<String, f64>,
}

impl SfuSample {
    fn empty(source: StatsSource) -> Self {
        Self {
            at: Some(Instant::now()),
            source,
            cpu_seconds: None,
            rss_bytes: None,
            participants: None,
            rooms: None,
            packets_in: None,
            packets_out: None,
            bytes_in: None,
            bytes_out: None,
            forwarded: None,
            dropped: HashMap::new(),
        }
    }
}

/// Samples with the first source that answers.
pub struct Sampler {
    metrics_url: Option<String>,
    pid: Option<u32>,
}

impl Sampler {
    pub fn new(metrics_url: Option<String>, pid: Option<u32>) -> Self {
        Self { metrics_url, pid }
    }

    pub async fn sample(&self) -> SfuSample {
        if let Some(url) = &self.metrics_url {
            match fetch_metrics(url).await {
                Ok(text) => {
                    let mut s = from_prometheus(&parse_prometheus(&text));
                    // CPU and RSS from /proc too if the endpoint lacks them.
                    if let Some(pid) = self.pid {
                        let p = from_proc(pid);
                        s.cpu_seconds = s.cpu_seconds.or(p.cpu_seconds);
                        s.rss_bytes = s.rss_bytes.or(p.rss_bytes);
                    }
                    return s;
                }
                Err(e) => tracing::warn!(%url, error = %e, "SFU metrics unavailable"),
            }
        }
        match self.pid {
            Some(pid) => from_proc(pid),
            None => SfuSample::empty(StatsSource::None),
        }
    }
}

async fn fetch_metrics(url: &str) -> Result<String, String> {
    let rest_of = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("not http://: {url}"))?;
    let (host, path) = match rest_of.find('/') {
        Some(i) => (&rest_of[..i], &rest_of[i..]),
        None => (rest_of, "/metrics"),
    };
    let (status, body) = rest::request(&format!("http://{host}"), "GET", path, None)
        .await
        .map_err(|e| e.to_string())?;
    if status != 200 {
        return Err(format!("HTTP {status}"));
    }
    Ok(body)
}

/// Prometheus text format → `name{labels}` (labels as written) → value. Comments and
/// unreadable lines are skipped.
pub fn parse_prometheus(text: &str) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // The value follows the name (and its labels, which may hold spaces in quotes).
        let split_at = match line.rfind('}') {
            Some(i) => i + 1,
            None => line.find(char::is_whitespace).unwrap_or(line.len()),
        };
        let (key, rest) = line.split_at(split_at);
        let Some(value) = rest.split_whitespace().next().and_then(|v| v.parse().ok()) else {
            continue;
        };
        out.insert(key.trim().to_owned(), value);
    }
    out
}

fn from_prometheus(m: &HashMap<String, f64>) -> SfuSample {
    let mut s = SfuSample::empty(StatsSource::Prometheus);
    let get = |name: &str| -> Option<f64> {
        // Sum over label sets, so `name` and `name{node="a"}` both work.
        let mut found = None;
        for (k, v) in m {
            if k == name || (k.starts_with(name) && k[name.len()..].starts_with('{')) {
                *found.get_or_insert(0.0) += v;
            }
        }
        found
    };
    s.cpu_seconds = get("process_cpu_seconds_total");
    s.rss_bytes = get("process_resident_memory_bytes");
    s.participants = get("chorus_sfu_participants");
    s.rooms = get("chorus_sfu_rooms");
    s.packets_in = get("chorus_sfu_packets_in_total");
    s.packets_out = get("chorus_sfu_packets_out_total");
    s.bytes_in = get("chorus_sfu_bytes_in_total");
    s.bytes_out = get("chorus_sfu_bytes_out_total");
    s.forwarded = get("chorus_sfu_packets_forwarded_total");
    for (k, v) in m {
        if let Some(labels) = k.strip_prefix("chorus_sfu_packets_dropped_total{") {
            let reason = labels
                .split("reason=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap_or("unknown");
            *s.dropped.entry(reason.to_owned()).or_default() += v;
        }
    }
    s
}

/// utime + stime (clock ticks) and VmRSS of `pid`, all its threads together.
fn from_proc(pid: u32) -> SfuSample {
    let mut s = SfuSample::empty(StatsSource::Proc);
    s.cpu_seconds = proc_cpu_seconds(&format!("/proc/{pid}/stat"));
    s.rss_bytes = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        })
        .map(|kib| kib * 1024.0);
    s
}

/// Clock ticks per second of `/proc/*/stat` (USER_HZ): 100 on every Linux this runs on.
const USER_HZ: f64 = 100.0;

fn proc_cpu_seconds(path: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name may hold spaces: fields count from after its closing parenthesis.
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After ")": state is field 3 of the man page, utime 14 and stime 15.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / USER_HZ)
}

/// CPU seconds this load process has used.
pub fn own_cpu_seconds() -> Option<f64> {
    proc_cpu_seconds("/proc/self/stat")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn prometheus_text_is_read() {
        let text = "# HELP process_cpu_seconds_total CPU\n\
            # TYPE process_cpu_seconds_total counter\n\
            process_cpu_seconds_total 12.5\n\
            process_resident_memory_bytes 1.5e7\n\
            chorus_sfu_participants 3\n\
            chorus_sfu_packets_forwarded_total 1000\n\
            chorus_sfu_packets_dropped_total{reason=\"no_free_slot\"} 7\n\
            chorus_sfu_packets_dropped_total{reason=\"malformed\"} 2\n";
        let s = from_prometheus(&parse_prometheus(text));
        assert_eq!(s.cpu_seconds, Some(12.5));
        assert_eq!(s.rss_bytes, Some(1.5e7));
        assert_eq!(s.participants, Some(3.0));
        assert_eq!(s.forwarded, Some(1000.0));
        assert_eq!(s.dropped["no_free_slot"], 7.0);
        assert_eq!(s.dropped["malformed"], 2.0);
    }

    #[test]
    fn own_process_is_readable() {
        assert!(own_cpu_seconds().is_some());
        let s = from_proc(std::process::id());
        assert!(s.rss_bytes.unwrap() > 0.0);
    }
}
