//! `chorus-signaling`: a signaling node on its own, driving a separate SFU over gRPC.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use chorus_signaling::{SignalingConfig, TlsMode};
use clap::{Parser, Subcommand};

/// Chorus signaling: web client, client sessions, rooms, room tokens.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Address for the web page and WebSocket.
    #[arg(long, env = "CHORUS_LISTEN", default_value = "127.0.0.1:7880")]
    listen: SocketAddr,
    /// gRPC address of the SFU node.
    #[arg(long, env = "CHORUS_SFU", default_value = "http://127.0.0.1:7881")]
    sfu: String,
    /// Ed25519 private key (PKCS#8 PEM) that signs room tokens; made if missing.
    /// Give the SFU its public key (`chorus-signaling public-key`).
    #[arg(
        long,
        env = "CHORUS_TOKEN_KEY",
        default_value = "chorus-data/token-key.pem"
    )]
    token_key: PathBuf,
    /// TLS certificate chain (PEM).
    #[arg(long, env = "CHORUS_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, env = "CHORUS_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Folder for durable data.
    #[arg(long, env = "CHORUS_DATA_DIR", default_value = "chorus-data")]
    data_dir: PathBuf,
    /// Folder holding the web client.
    #[arg(long, env = "CHORUS_WEB_DIR", default_value_os_t = chorus_signaling::default_web_dir())]
    web_dir: PathBuf,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the public key of the token key (hex), for the SFU's --token-public-key.
    PublicKey,
}

#[tokio::main]
async fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chorus-signaling: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let tokens = chorus_signaling::load_or_create_token_key(&args.token_key)?;
    if let Some(Command::PublicKey) = args.command {
        println!(
            "{}",
            chorus_proto::token::public_key_hex(tokens.public_key())
        );
        return Ok(());
    }
    let mut config = SignalingConfig::new(args.sfu);
    config.listen = args.listen;
    config.tls = TlsMode::choose(args.listen, args.tls_cert, args.tls_key);
    config.data_dir = args.data_dir;
    config.web_dir = args.web_dir;
    let signaling = chorus_signaling::start(config, tokens).await?;
    println!("Chorus signaling is running: open {}", signaling.url());
    let _ = tokio::signal::ctrl_c().await;
    signaling.shutdown().await;
    Ok(())
}
