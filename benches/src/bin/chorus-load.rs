//! `chorus-load`: drive a Chorus (or Janus) server on loopback with synthetic voice-room
//! peers and report join-to-first-audio, loss, jitter, who heard whom, and the server's
//! CPU per forwarded packet and memory per participant. See `benches/README.md`.

use std::process::ExitCode;
use std::time::Duration;

use chorus_bench::load::{LoadConfig, Target, run};
use clap::{Parser, ValueEnum};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum TargetArg {
    Chorus,
    Janus,
}

/// Synthetic voice-room peers (str0m: real ICE, DTLS, SRTP, Opus) against a server on
/// this machine.
#[derive(Debug, Parser)]
#[command(name = "chorus-load", version)]
struct Args {
    /// Chorus: the signaling server's address. Janus: its HTTP API (`http://127.0.0.1:8088/janus`).
    #[arg(long, default_value = "http://127.0.0.1:7880/")]
    url: String,
    /// Which server.
    #[arg(long, value_enum, default_value = "chorus")]
    target: TargetArg,
    /// Rooms.
    #[arg(long, default_value_t = 1)]
    rooms: usize,
    /// Speakers per room (each publishes its own tone).
    #[arg(long, default_value_t = 3)]
    speakers: usize,
    /// Listeners per room.
    #[arg(long, default_value_t = 20)]
    listeners: usize,
    /// Measured window, seconds (after every listener hears audio and a warm-up).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Warm-up before the window, seconds.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Joins started per second.
    #[arg(long, default_value_t = 100.0)]
    join_rate: f64,
    /// Media threads carrying the peers.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Listeners per room that decode their audio to check which tones they hear.
    #[arg(long, default_value_t = 10)]
    decode: usize,
    /// The SFU's Prometheus endpoint, read before and after the window.
    #[arg(long)]
    sfu_metrics: Option<String>,
    /// The server's process id, read from /proc when no metrics endpoint answers.
    #[arg(long)]
    sfu_pid: Option<u32>,
    /// Chorus: the server API key file that lets the tool create rooms
    /// (`<data dir>/api-key.json` of the server; see docs/api.md).
    #[arg(long, default_value = "chorus-data/api-key.json")]
    api_key_file: std::path::PathBuf,
    /// Print the report as JSON on stdout (the summary still goes to stderr).
    #[arg(long)]
    json: bool,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

fn main() -> ExitCode {
    tracing_subscriber_init();
    let args = Args::parse();
    if !(args.duration.is_finite()
        && args.duration > 0.0
        && args.warmup.is_finite()
        && args.warmup >= 0.0)
    {
        eprintln!("chorus-load: --duration must be positive and --warmup not negative");
        return ExitCode::from(2);
    }
    let api_key = match args.target {
        TargetArg::Janus => None,
        TargetArg::Chorus => match std::fs::read(&args.api_key_file)
            .map_err(|e| e.to_string())
            .and_then(|bytes| serde_json::from_slice(&bytes).map_err(|e| e.to_string()))
        {
            Ok(key) => Some(key),
            Err(e) => {
                eprintln!(
                    "chorus-load: cannot read the server API key {}: {e}",
                    args.api_key_file.display()
                );
                return ExitCode::from(2);
            }
        },
    };
    let config = LoadConfig {
        api_key,
        target: match args.target {
            TargetArg::Chorus => Target::Chorus,
            TargetArg::Janus => Target::Janus,
        },
        url: args.url,
        rooms: args.rooms,
        speakers: args.speakers,
        listeners: args.listeners,
        duration: Duration::from_secs_f64(args.duration.min(1e6)),
        warmup: Duration::from_secs_f64(args.warmup.min(1e6)),
        join_rate: args.join_rate,
        threads: args.threads,
        decode_listeners: args.decode,
        sfu_metrics: args.sfu_metrics,
        sfu_pid: args.sfu_pid,
        progress: !args.quiet,
        ..LoadConfig::default()
    };
    // Signaling needs little: one worker leaves the cores to the media threads and the server.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("chorus-load: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(report) => {
            eprintln!("{report}");
            if args.json {
                match serde_json::to_string_pretty(&report) {
                    Ok(json) => println!("{json}"),
                    Err(e) => {
                        eprintln!("chorus-load: cannot write JSON: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            }
            if report.clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            }
        }
        Err(e) => {
            eprintln!("chorus-load: {e}");
            ExitCode::FAILURE
        }
    }
}

fn tracing_subscriber_init() {
    // Warnings only, on stderr; RUST_LOG overrides. No dependency on a subscriber crate:
    // the tool's own output is the report.
}
