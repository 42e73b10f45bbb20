//! Smoke run of `chorus-load` against the real `chorus` binary: 1 room, 2 speakers, 20
//! listeners, 10 s window. Every listener must join, connect, receive both speakers'
//! streams without a gap for the whole window, and — decoding the Opus it receives — hear
//! both speakers' tones and no other.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use chorus_bench::load::{LoadConfig, Target, run};

const SPEAKERS: usize = 2;
const LISTENERS: usize = 20;
const WINDOW: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_listeners_hear_both_speakers_without_loss() {
    let server = common::ChorusServer::spawn();
    let config = LoadConfig {
        target: Target::Chorus,
        url: server.url.clone(),
        rooms: 1,
        speakers: SPEAKERS,
        listeners: LISTENERS,
        duration: WINDOW,
        warmup: Duration::from_secs(1),
        join_rate: 50.0,
        threads: 1,
        decode_listeners: LISTENERS,
        api_key: Some(server.api_key()),
        ..LoadConfig::default()
    };
    let report = tokio::time::timeout(Duration::from_secs(120), run(config))
        .await
        .expect("the load run is bounded in time")
        .unwrap_or_else(|e| panic!("load run failed: {e}\nserver log:\n{}", server.log()));
    println!("{report}");
    let context = || format!("{report}\nserver log (tail):\n{}", tail(&server.log(), 40));

    assert_eq!(report.join_failures, 0, "joins failed:\n{}", context());
    assert_eq!(report.joined, SPEAKERS + LISTENERS, "{}", context());
    assert_eq!(report.connected, SPEAKERS + LISTENERS, "{}", context());
    assert_eq!(report.listeners_hearing_audio, LISTENERS, "{}", context());
    assert_eq!(report.loss.lost, 0, "loss:\n{}", context());
    assert_eq!(report.loss.silent_listeners, 0, "{}", context());
    // Two speakers, so two of three slots carry 50 frames/s each to every listener.
    let expected = (LISTENERS * SPEAKERS) as f64 * 50.0 * report.window_s;
    assert!(
        report.loss.received as f64 >= 0.95 * expected,
        "listeners received {} frames, expected about {expected:.0}:\n{}",
        report.loss.received,
        context()
    );
    assert_eq!(
        report.hearing.decoding_listeners,
        LISTENERS,
        "{}",
        context()
    );
    assert_eq!(
        report.hearing.heard_right,
        LISTENERS,
        "not every listener heard both tones:\n{}",
        context()
    );
    assert!(report.clean(), "{}", context());
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
