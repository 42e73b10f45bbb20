//! `chorus-sfu`: run one SFU node. Signaling drives it over gRPC; browsers send media to
//! its UDP socket(s). Every flag has an environment override (see `--help`).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use chorus_proto::NodeId;
use chorus_proto::token::public_key_from_hex;
use chorus_sfu::{SfuConfig, start};
use clap::Parser;

/// Chorus SFU node: terminates ICE/DTLS-SRTP from browsers and forwards Opus between the
/// members of voice rooms. Signaling admits participants over gRPC (SfuControl).
///
/// Logs go to stderr and follow RUST_LOG (default: info).
#[derive(Parser, Debug)]
#[command(name = "chorus-sfu", version, about, long_about)]
struct Args {
    /// Serve Prometheus metrics at http://ADDR/metrics (keep it private).
    #[arg(long, env = "CHORUS_SFU_METRICS")]
    metrics: Option<SocketAddr>,

    /// gRPC listen address for signaling (port 0 picks one).
    #[arg(long, env = "CHORUS_SFU_GRPC", default_value = "127.0.0.1:7881")]
    grpc: SocketAddr,

    /// Media (UDP) listen address. With 0.0.0.0, one socket is bound per announced IP.
    #[arg(long, env = "CHORUS_SFU_UDP", default_value = "0.0.0.0:7882")]
    udp: SocketAddr,

    /// IP to announce as ICE host candidate; repeat or comma-separate for several.
    /// Default: the listen IP, or 127.0.0.1 plus the host's primary IP.
    #[arg(
        long = "public-ip",
        env = "CHORUS_SFU_PUBLIC_IP",
        value_delimiter = ','
    )]
    public_ips: Vec<IpAddr>,

    /// Ed25519 public key that verifies room tokens, as hex (what
    /// `chorus_proto::token::public_key_hex` prints).
    #[arg(
        long,
        env = "CHORUS_SFU_TOKEN_PUBLIC_KEY",
        conflicts_with = "token_public_key_file"
    )]
    token_public_key: Option<String>,

    /// File holding the token public key as hex.
    #[arg(long, env = "CHORUS_SFU_TOKEN_PUBLIC_KEY_FILE")]
    token_public_key_file: Option<PathBuf>,

    /// This node's id (default: random).
    #[arg(long, env = "CHORUS_SFU_NODE_ID")]
    node_id: Option<String>,

    /// Audio slots per participant: how many speakers each one hears at once.
    #[arg(long, env = "CHORUS_SFU_AUDIO_SLOTS", default_value_t = chorus_sfu::DEFAULT_AUDIO_SLOTS)]
    audio_slots: usize,

    /// Seconds an admitted participant may take to connect its media.
    #[arg(long, env = "CHORUS_SFU_CONNECT_TIMEOUT", default_value_t = 15)]
    connect_timeout_secs: u64,

    /// Most participants on this node (0: no limit). In a fleet, a room that outgrows
    /// a full node continues on another, which gets the room's speakers relayed.
    #[arg(long, env = "CHORUS_SFU_MAX_PARTICIPANTS", default_value_t = 0)]
    max_participants: usize,

    /// Join a fleet: register this node in Redis (with a heartbeat) so that signaling
    /// nodes find it and place rooms on it by load.
    #[arg(long, env = "CHORUS_REDIS_URL")]
    redis: Option<String>,

    /// Where signaling reaches this node's gRPC, e.g. http://10.0.0.5:7881 (needed with
    /// --redis when --grpc listens on a wildcard address).
    #[arg(long, env = "CHORUS_SFU_ADVERTISE_GRPC")]
    advertise_grpc: Option<String>,

    /// A region label, shown with the node's load.
    #[arg(long, env = "CHORUS_SFU_REGION")]
    region: Option<String>,

    /// Start drained: take no new rooms (existing ones go on). SIGUSR1 drains a running
    /// node.
    #[arg(long, env = "CHORUS_SFU_DRAIN")]
    drain: bool,

    /// On SIGTERM or Ctrl-C, seconds to wait for participants to leave (signaling moves
    /// them) before the node stops anyway. Keep systemd's TimeoutStopSec above it.
    #[arg(long, env = "CHORUS_SFU_DRAIN_TIMEOUT", default_value_t = 20)]
    drain_timeout_secs: u64,
}

fn config(args: Args) -> Result<SfuConfig, String> {
    let hex = match (args.token_public_key, args.token_public_key_file) {
        (Some(hex), _) => hex,
        (None, Some(path)) => std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
        (None, None) => {
            return Err("a token public key is required: --token-public-key HEX, \
                        --token-public-key-file PATH or CHORUS_SFU_TOKEN_PUBLIC_KEY"
                .into());
        }
    };
    let key = public_key_from_hex(&hex).map_err(|e| format!("token public key: {e}"))?;
    let mut config = SfuConfig::new(key);
    if let Some(id) = args.node_id {
        config.node_id = NodeId::parse(id).map_err(|e| format!("node id: {e}"))?;
    }
    config.grpc_listen = args.grpc;
    config.udp_listen = args.udp;
    config.public_ips = args.public_ips;
    config.audio_slots = args.audio_slots;
    config.connect_timeout = Duration::from_secs(args.connect_timeout_secs);
    config.max_participants = args.max_participants;
    if let Some(redis_url) = args.redis.filter(|u| !u.trim().is_empty()) {
        config.fleet = Some(chorus_sfu::FleetConfig {
            redis_url,
            advertise_grpc: args.advertise_grpc,
            region: args.region,
            drain: args.drain,
        });
    }
    Ok(config)
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let metrics = args.metrics;
    let drain = Duration::from_secs(args.drain_timeout_secs);
    let config = match config(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("chorus-sfu: {e}");
            return ExitCode::from(2);
        }
    };
    let node = config.node_id.clone();
    let handle = match start(config).await {
        Ok(h) => h,
        Err(e) => {
            eprintln!("chorus-sfu: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("chorus-sfu {node}");
    println!("grpc {}", handle.grpc_addr());
    if let Some(addr) = metrics {
        match serve_metrics(addr, handle.stats()).await {
            Ok(bound) => println!("metrics http://{bound}/metrics"),
            Err(e) => {
                eprintln!("chorus-sfu: cannot serve metrics on {addr}: {e}");
                handle.shutdown().await;
                return ExitCode::FAILURE;
            }
        }
    }
    for addr in handle.udp_addrs() {
        println!("udp {addr}");
    }
    let signal = wait_for_stop(&handle).await;
    tracing::info!(
        signal,
        drain_secs = drain.as_secs(),
        "draining, then shutting down"
    );
    drain_participants(&handle.stats(), drain).await;
    handle.shutdown().await;
    ExitCode::SUCCESS
}

/// Until SIGTERM (systemd, Kubernetes) or SIGINT, which it names; SIGUSR1 meanwhile
/// drains the node (no new rooms).
async fn wait_for_stop(handle: &chorus_sfu::SfuHandle) -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int), Ok(mut usr1)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::user_defined1()),
    ) else {
        let _ = tokio::signal::ctrl_c().await;
        return "SIGINT";
    };
    loop {
        tokio::select! {
            _ = term.recv() => return "SIGTERM",
            _ = int.recv() => return "SIGINT",
            _ = usr1.recv() => handle.drain(),
        }
    }
}

/// Let the node empty (participants leave as signaling moves them) for up to `within`.
async fn drain_participants(stats: &chorus_sfu::NodeStats, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        match stats.get().await {
            Some(stats) if stats.participants == 0 => return,
            Some(stats) => tracing::info!(participants = stats.participants, "draining"),
            None => return,
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tracing::warn!("drain deadline passed; stopping with participants still connected");
}

/// `GET /metrics`: the node's counters (the same `NodeStats` its control port reports,
/// read in-process) and this process's CPU and memory.
async fn serve_metrics(
    addr: SocketAddr,
    stats: chorus_sfu::NodeStats,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let stats = stats.clone();
            async move {
                let mut text = chorus_sfu::prometheus::process_metrics();
                match stats.get().await {
                    Some(stats) => text.push_str(&chorus_sfu::prometheus::node_metrics(&stats)),
                    None => tracing::warn!("node stats unavailable: the node is stopping"),
                }
                text
            }
        }),
    );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics server stopped");
        }
    });
    Ok(bound)
}
