//! `chorus`: the whole of Chorus on one machine, nothing to configure.
//!
//! Signaling and an in-process SFU (spoken to over real gRPC on loopback), no Redis.
//! Prints the address to open.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use chorus_signaling::{SignalingConfig, TlsMode};
use clap::Parser;

/// Run Chorus on one machine: signaling, web client and SFU in one process.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Args {
    /// Address for the web page and WebSocket. A non-loopback address serves HTTPS
    /// (browsers allow the microphone on a LAN address only over HTTPS).
    #[arg(long, env = "CHORUS_LISTEN", default_value = "127.0.0.1:7880")]
    listen: SocketAddr,
    /// UDP port for media (0 picks a free one).
    #[arg(long, env = "CHORUS_UDP_PORT", default_value_t = 7882)]
    udp_port: u16,
    /// Address that browsers reach the media port at, when it is not this host's own
    /// (behind NAT, in the cloud). Repeat for several.
    #[arg(long = "public-ip", env = "CHORUS_PUBLIC_IP", value_delimiter = ',')]
    public_ips: Vec<IpAddr>,
    /// TLS certificate chain (PEM). Without it a non-loopback listener gets a
    /// self-signed certificate, kept in the data folder.
    #[arg(long, env = "CHORUS_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, env = "CHORUS_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Folder for durable data: the room-token key, the self-signed certificate.
    #[arg(long, env = "CHORUS_DATA_DIR", default_value = "chorus-data")]
    data_dir: PathBuf,
    /// Seconds a new room waits for its creator's media before it is rolled back.
    #[arg(long, env = "CHORUS_PENDING_TIMEOUT_SECS", default_value_t = 20)]
    pending_timeout_secs: u64,
    /// Folder holding the web client.
    #[arg(long, env = "CHORUS_WEB_DIR", default_value_os_t = chorus_signaling::default_web_dir())]
    web_dir: PathBuf,
}

#[tokio::main]
async fn main() -> ExitCode {
    init_logs();
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chorus: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    std::fs::create_dir_all(&args.data_dir).map_err(|e| {
        format!(
            "cannot create the data folder {}: {e}",
            args.data_dir.display()
        )
    })?;
    let tokens = chorus_signaling::load_or_create_token_key(&args.data_dir.join("token-key.pem"))?;

    let mut sfu_config = chorus_sfu::SfuConfig::new(tokens.public_key().to_vec());
    sfu_config.grpc_listen = SocketAddr::from(([127, 0, 0, 1], 0));
    sfu_config.udp_listen = SocketAddr::new(args.listen.ip(), args.udp_port);
    sfu_config.public_ips = args.public_ips.clone();
    let sfu = chorus_sfu::start(sfu_config).await?;

    let mut config = SignalingConfig::new(format!("http://{}", sfu.grpc_addr()));
    config.listen = args.listen;
    config.tls = TlsMode::choose(args.listen, args.tls_cert, args.tls_key);
    let data_dir = args.data_dir.clone();
    config.data_dir = args.data_dir;
    config.web_dir = args.web_dir;
    config.timeouts.pending = std::time::Duration::from_secs(args.pending_timeout_secs.max(1));
    let signaling = chorus_signaling::start(config, tokens).await?;

    let media: Vec<String> = sfu.udp_addrs().iter().map(ToString::to_string).collect();
    println!("Chorus is running: open {}", signaling.url());
    println!("  media (UDP): {}", media.join(", "));
    if signaling.url().starts_with("https") {
        println!(
            "  the certificate is self-signed unless you gave --tls-cert: browsers will ask you to accept it once"
        );
    }
    println!("  server API key: {}", config_key_hint(&data_dir));
    println!("  stop with Ctrl-C");

    let _ = tokio::signal::ctrl_c().await;
    println!("stopping");
    signaling.shutdown().await;
    sfu.shutdown().await;
    Ok(())
}

/// Where the server API key is, without printing the secret.
fn config_key_hint(data_dir: &std::path::Path) -> String {
    format!(
        "{} (see docs/api.md)",
        data_dir.join("api-key.json").display()
    )
}

fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,str0m=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
