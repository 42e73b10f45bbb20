//! Command-line pieces both signaling binaries share (`chorus` and `chorus-signaling`):
//! the serving flags, each with an environment override, and log set-up.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::{SignalingConfig, TlsMode, default_web_dir};

// How signaling serves browsers. (A plain comment: a doc comment here would become the
// description of every binary that flattens these flags.)
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address for the web page and WebSocket. A non-loopback address serves HTTPS
    /// (browsers allow the microphone on a LAN address only over HTTPS).
    #[arg(long, env = "CHORUS_LISTEN", default_value = "127.0.0.1:7880")]
    pub listen: SocketAddr,
    /// TLS certificate chain (PEM). Without it a non-loopback listener gets a
    /// self-signed certificate, kept in the data folder.
    #[arg(long, env = "CHORUS_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, env = "CHORUS_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Folder for durable data: rooms, the room-token key, the server API key, the
    /// self-signed certificate.
    #[arg(long, env = "CHORUS_DATA_DIR", default_value = "chorus-data")]
    pub data_dir: PathBuf,
    /// Seconds a new room waits for its creator's media before it is rolled back.
    #[arg(long, env = "CHORUS_PENDING_TIMEOUT_SECS", default_value_t = 20)]
    pub pending_timeout_secs: u64,
    /// Folder holding the web client.
    #[arg(long, env = "CHORUS_WEB_DIR", default_value_os_t = default_web_dir())]
    pub web_dir: PathBuf,
    /// Redis of a fleet (`redis://[:password@]host:6379/0`, `rediss://` for TLS): rooms,
    /// SFU nodes and presences are shared by every node on it. Without it: the embedded
    /// store on disk and one SFU.
    #[arg(long, env = "CHORUS_REDIS_URL")]
    pub redis: Option<String>,
    /// This signaling node's id in the fleet (default: random).
    #[arg(long, env = "CHORUS_NODE_ID")]
    pub node_id: Option<String>,
}

impl ServeArgs {
    /// The signaling configuration these flags describe, driving the SFU at `sfu_url`.
    pub fn config(&self, sfu_url: String) -> Result<SignalingConfig, String> {
        let mut config = SignalingConfig::new(sfu_url);
        config.redis_url = self.redis.clone().filter(|u| !u.trim().is_empty());
        config.node_id = match &self.node_id {
            Some(id) => Some(
                chorus_proto::NodeId::parse(id.clone()).map_err(|e| format!("--node-id: {e}"))?,
            ),
            None => None,
        };
        config.listen = self.listen;
        config.tls = TlsMode::choose(self.listen, self.tls_cert.clone(), self.tls_key.clone());
        config.data_dir = self.data_dir.clone();
        config.web_dir = self.web_dir.clone();
        config.timeouts.pending = Duration::from_secs(self.pending_timeout_secs.max(1));
        Ok(config)
    }
}

/// Logs to stderr, filtered by RUST_LOG or else `default_filter`.
pub fn init_logs(default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
