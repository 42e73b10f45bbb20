//! Prometheus text for an SFU node: its counters (from `NodeStats`) and the process's
//! CPU time and memory, read from /proc. Served by `chorus-sfu --metrics` and, in the
//! embedded default, by signaling's `/metrics`.

use std::fmt::Write;

use chorus_proto::sfu::NodeStatsResponse;

/// The node's counters in Prometheus text format.
pub fn node_metrics(stats: &NodeStatsResponse) -> String {
    let mut out = String::new();
    let node = &stats.node_id;
    let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
        let _ = write!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name}{{node=\"{node}\"}} {value}\n"
        );
    };
    metric(
        "chorus_sfu_rooms",
        "gauge",
        "Rooms on this SFU node.",
        u64::from(stats.rooms),
    );
    metric(
        "chorus_sfu_participants",
        "gauge",
        "Participants on this SFU node.",
        u64::from(stats.participants),
    );
    metric(
        "chorus_sfu_packets_in_total",
        "counter",
        "Datagrams received on the media sockets.",
        stats.packets_in,
    );
    metric(
        "chorus_sfu_packets_out_total",
        "counter",
        "Datagrams sent on the media sockets.",
        stats.packets_out,
    );
    metric(
        "chorus_sfu_bytes_in_total",
        "counter",
        "Bytes received on the media sockets.",
        stats.bytes_in,
    );
    metric(
        "chorus_sfu_bytes_out_total",
        "counter",
        "Bytes sent on the media sockets.",
        stats.bytes_out,
    );
    metric(
        "chorus_sfu_packets_forwarded_total",
        "counter",
        "Audio packets written to a subscriber (one per subscriber per packet).",
        stats.packets_forwarded,
    );
    metric(
        "chorus_sfu_packets_relayed_out_total",
        "counter",
        "Frames of this node's speakers relayed to the other nodes of rooms spanning nodes.",
        stats.packets_relayed_out,
    );
    metric(
        "chorus_sfu_packets_relayed_in_total",
        "counter",
        "Frames relayed here by the other nodes of rooms spanning nodes.",
        stats.packets_relayed_in,
    );
    out.push_str(
        "# HELP chorus_sfu_packets_dropped_total Packets not forwarded, by reason.\n\
         # TYPE chorus_sfu_packets_dropped_total counter\n",
    );
    let mut reasons: Vec<_> = stats.packets_dropped_by_reason.iter().collect();
    reasons.sort();
    for (reason, n) in reasons {
        let _ = writeln!(
            out,
            "chorus_sfu_packets_dropped_total{{node=\"{node}\",reason=\"{reason}\"}} {n}"
        );
    }
    out
}

/// This process's CPU seconds and resident memory (Linux /proc; nothing elsewhere).
pub fn process_metrics() -> String {
    let mut out = String::new();
    if let Some(cpu) = cpu_seconds() {
        let _ = write!(
            out,
            "# HELP process_cpu_seconds_total User and system CPU time of this process.\n\
             # TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total {cpu:.3}\n"
        );
    }
    if let Some(rss) = resident_bytes() {
        let _ = write!(
            out,
            "# HELP process_resident_memory_bytes Resident memory of this process.\n\
             # TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes {rss}\n"
        );
    }
    out
}

pub(crate) fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after ')'.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / clock_ticks_per_second())
}

fn clock_ticks_per_second() -> f64 {
    // USER_HZ is 100 on every Linux architecture Chorus runs on.
    100.0
}

fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_reasons() {
        let mut stats = NodeStatsResponse {
            node_id: "n_test".into(),
            packets_forwarded: 42,
            ..Default::default()
        };
        stats.packets_dropped_by_reason.insert("muted".into(), 3);
        let text = node_metrics(&stats);
        assert!(
            text.contains("chorus_sfu_packets_forwarded_total{node=\"n_test\"} 42\n"),
            "{text}"
        );
        assert!(
            text.contains("chorus_sfu_packets_dropped_total{node=\"n_test\",reason=\"muted\"} 3\n"),
            "{text}"
        );
        let process = process_metrics();
        assert!(process.contains("process_cpu_seconds_total "), "{process}");
        assert!(
            process.contains("process_resident_memory_bytes "),
            "{process}"
        );
    }
}
