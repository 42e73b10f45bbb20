//! `chorus-signaling`: a signaling node on its own, driving a separate SFU over gRPC.

use std::path::PathBuf;
use std::process::ExitCode;

use chorus_signaling::cli::{ServeArgs, init_logs, stop_signal};
use clap::{Parser, Subcommand};

/// Chorus signaling: web client, client sessions, rooms, room tokens.
#[derive(Debug, Parser)]
#[command(version, long_about = None)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
    /// gRPC address of the SFU node (without --redis; with it, SFU nodes are found in
    /// Redis, where they register themselves).
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
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the public key of the token key (hex), for the SFU's --token-public-key.
    PublicKey,
}

#[tokio::main]
async fn main() -> ExitCode {
    init_logs("info");
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
    let config = args.serve.config(args.sfu)?;
    let signaling = chorus_signaling::start(config, tokens).await?;
    println!("Chorus signaling is running: open {}", signaling.url());
    let signal = stop_signal().await;
    // stdout may be gone by now (a closed pipe): nothing may panic on the way out.
    let say = |line: &str| {
        use std::io::Write;
        let _ = writeln!(std::io::stdout(), "{line}");
    };
    say(&format!(
        "stopping ({signal}): telling clients the server is restarting"
    ));
    signaling.shutdown().await;
    say("stopped");
    Ok(())
}
