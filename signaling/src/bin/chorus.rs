//! `chorus`: the whole of Chorus on one machine, nothing to configure.
//!
//! Signaling and an in-process SFU (spoken to over real gRPC on loopback), no Redis.
//! Prints the address to open.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;

use chorus_signaling::cli::{ServeArgs, init_logs, stop_signal};
use clap::Parser;

/// Run Chorus on one machine: signaling, web client and SFU in one process.
#[derive(Debug, Parser)]
#[command(version, long_about = None)]
struct Args {
    #[command(flatten)]
    serve: ServeArgs,
    /// UDP port for media (0 picks a free one).
    #[arg(long, env = "CHORUS_UDP_PORT", default_value_t = 7882)]
    udp_port: u16,
    /// Address that browsers reach the media port at, when it is not this host's own
    /// (behind NAT, in the cloud). Repeat for several.
    #[arg(long = "public-ip", env = "CHORUS_PUBLIC_IP", value_delimiter = ',')]
    public_ips: Vec<IpAddr>,
}

#[tokio::main]
async fn main() -> ExitCode {
    init_logs("info,str0m=warn");
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chorus: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    if args.serve.redis.is_some() {
        return Err(
            "`chorus` is Chorus on one machine and needs no Redis; for a fleet run \
                    `chorus-signaling --redis URL` and `chorus-sfu --redis URL` (deploy/README.md)"
                .into(),
        );
    }
    let data_dir = &args.serve.data_dir;
    std::fs::create_dir_all(data_dir)
        .map_err(|e| format!("cannot create the data folder {}: {e}", data_dir.display()))?;
    let tokens = chorus_signaling::load_or_create_token_key(&data_dir.join("token-key.pem"))?;

    let mut sfu_config = chorus_sfu::SfuConfig::new(tokens.public_key().to_vec());
    sfu_config.grpc_listen = SocketAddr::from(([127, 0, 0, 1], 0));
    sfu_config.udp_listen = SocketAddr::new(args.serve.listen.ip(), args.udp_port);
    sfu_config.public_ips = args.public_ips.clone();
    let sfu = chorus_sfu::start(sfu_config).await?;

    let mut config = args.serve.config(format!("http://{}", sfu.grpc_addr()))?;
    config.media_outlives_stop = false;
    let signaling = chorus_signaling::start(config, tokens).await?;

    let media: Vec<String> = sfu.udp_addrs().iter().map(ToString::to_string).collect();
    println!("Chorus is running: open {}", signaling.url());
    println!("  media (UDP): {}", media.join(", "));
    if signaling.url().starts_with("https") {
        println!(
            "  the certificate is self-signed unless you gave --tls-cert: browsers will ask you to accept it once"
        );
    }
    // Where the server API key is, without printing the secret.
    println!(
        "  server API key: {} (see docs/api.md)",
        data_dir.join("api-key.json").display()
    );
    println!("  stop with Ctrl-C");

    let signal = stop_signal().await;
    // stdout may be gone by now (a closed pipe): nothing may panic on the way out.
    let say = |line: &str| {
        use std::io::Write;
        let _ = writeln!(std::io::stdout(), "{line}");
    };
    say(&format!(
        "stopping ({signal}): telling clients the server is restarting"
    ));
    // Sessions first: each takes its participant off the SFU, so the SFU stops empty.
    signaling.shutdown().await;
    sfu.shutdown().await;
    say("stopped");
    Ok(())
}
