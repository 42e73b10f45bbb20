//! Command-line pieces both signaling binaries share (`chorus` and `chorus-signaling`):
//! the serving flags, each with an environment override, and log set-up.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::{ConnectionLimits, SignalingConfig, TlsMode, default_web_dir};

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
    /// Serve plain HTTP on any address: for a node behind a proxy that terminates TLS,
    /// on a private network the proxy alone reaches.
    #[arg(long, env = "CHORUS_PLAIN_HTTP", conflicts_with = "tls_cert")]
    pub plain_http: bool,
    /// Folder for durable data: rooms, the room-token key, the server API key, the
    /// self-signed certificate.
    #[arg(long, env = "CHORUS_DATA_DIR", default_value = "chorus-data")]
    pub data_dir: PathBuf,
    /// Seconds a new room waits for its creator's media before it is rolled back.
    #[arg(long, env = "CHORUS_PENDING_TIMEOUT_SECS", default_value_t = 20)]
    pub pending_timeout_secs: u64,
    /// After a restart, seconds a member's seat, raised hand or held place waits for
    /// them to come back before it is given up (a room still pending when the server
    /// stopped is rolled back after --pending-timeout-secs).
    #[arg(long, env = "CHORUS_REJOIN_GRACE_SECS", default_value_t = 60)]
    pub rejoin_grace_secs: u64,
    /// Seconds a participant whose connection broke, or whose audio a media server
    /// still carries after a restart, waits for its session to resume (same seat, its
    /// audio never stopped) before it counts as gone.
    #[arg(long, env = "CHORUS_RESUME_GRACE_SECS", default_value_t = 30)]
    pub resume_grace_secs: u64,
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
    /// Milliseconds a client may take to send a request's headers.
    #[arg(long, env = "CHORUS_HEADER_TIMEOUT_MS", default_value_t = 10_000)]
    pub header_timeout_ms: u64,
    /// Milliseconds a client may take to send a request's body.
    #[arg(long, env = "CHORUS_BODY_TIMEOUT_MS", default_value_t = 10_000)]
    pub body_timeout_ms: u64,
    /// Milliseconds a WebSocket may take to say hello after it opens.
    #[arg(long, env = "CHORUS_HELLO_TIMEOUT_MS", default_value_t = 10_000)]
    pub hello_timeout_ms: u64,
    /// Milliseconds of quiet after which the server pings a session.
    #[arg(long, env = "CHORUS_PING_INTERVAL_MS", default_value_t = 20_000)]
    pub ping_interval_ms: u64,
    /// Milliseconds a session has to answer a ping before it is closed.
    #[arg(long, env = "CHORUS_PONG_TIMEOUT_MS", default_value_t = 20_000)]
    pub pong_timeout_ms: u64,
    /// Open connections one IP address may hold.
    #[arg(long, env = "CHORUS_MAX_CONNECTIONS_PER_IP", default_value_t = 128)]
    pub max_connections_per_ip: usize,
    /// A reverse proxy in front of this node (an address or a network, e.g. 10.0.0.0/8;
    /// repeat, or separate with commas): its `X-Forwarded-For` names the client, whose
    /// address per-address limits count. Without it the header is ignored.
    #[arg(
        long = "trusted-proxy",
        env = "CHORUS_TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    pub trusted_proxies: Vec<String>,
    /// A STUN server for the browsers of 1:1 calls, e.g. `stun:stun.example.org:3478`
    /// (repeat, or separate with commas).
    #[arg(long = "stun-url", env = "CHORUS_STUN_URLS", value_delimiter = ',')]
    pub stun_urls: Vec<String>,
    /// A TURN server for the browsers of 1:1 calls, e.g.
    /// `turn:turn.example.org:3478?transport=udp` (repeat, or separate with commas).
    #[arg(long = "turn-url", env = "CHORUS_TURN_URLS", value_delimiter = ',')]
    pub turn_urls: Vec<String>,
    /// The secret shared with the TURN server (coturn's `static-auth-secret`): calls
    /// get TURN credentials valid for an hour.
    #[arg(long, env = "CHORUS_TURN_SECRET", hide_env_values = true)]
    pub turn_secret: Option<String>,
    /// Seconds a call rings before it ends unanswered (`no_answer`).
    #[arg(long, env = "CHORUS_CALL_RING_SECS", default_value_t = chorus_proto::people::RING_SECS)]
    pub call_ring_secs: u64,
    /// Frames a session may send per second on average.
    #[arg(long, env = "CHORUS_WS_RATE", default_value_t = 20)]
    pub ws_rate: u32,
    /// Frames a session may send at once.
    #[arg(long, env = "CHORUS_WS_BURST", default_value_t = 100)]
    pub ws_burst: u32,
    /// Seconds sessions get, on SIGTERM or Ctrl-C, to be told the server is restarting.
    #[arg(long, env = "CHORUS_DRAIN_TIMEOUT_SECS", default_value_t = 10)]
    pub drain_timeout_secs: u64,
    /// Folder of this node's attachment store (default: `attachments` in the data folder).
    #[arg(long, env = "CHORUS_ATTACHMENT_DIR")]
    pub attachment_dir: Option<PathBuf>,
    /// The central attachment store of a cluster, behind each node's own:
    /// `s3://bucket[/prefix]` (credentials from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
    /// AWS_REGION) or `file:///folder` every node mounts. Without it a node's own folder
    /// is all there is.
    #[arg(long, env = "CHORUS_ATTACHMENT_STORE")]
    pub attachment_store: Option<String>,
    /// The S3 endpoint of a store other than AWS S3 (MinIO, Ceph, ...), e.g.
    /// `http://10.0.0.5:9000`.
    #[arg(long, env = "CHORUS_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// With a central store, the most megabytes a node keeps as its local copy (least
    /// recently used first out).
    #[arg(long, env = "CHORUS_ATTACHMENT_CACHE_MB", default_value_t = 10_000)]
    pub attachment_cache_mb: u64,
    /// The largest file a chat takes, in megabytes.
    #[arg(long, env = "CHORUS_ATTACHMENT_MAX_MB", default_value_t = 100)]
    pub attachment_max_mb: u64,
    /// File types a chat takes: `image/*`, `application/pdf`, ... (repeat, or separate
    /// with commas); `*` for all.
    #[arg(
        long = "attachment-type",
        env = "CHORUS_ATTACHMENT_TYPES",
        value_delimiter = ',',
        default_value = "*"
    )]
    pub attachment_types: Vec<String>,
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
        config.tls = match self.plain_http {
            true => TlsMode::Off,
            false => TlsMode::choose(self.listen, self.tls_cert.clone(), self.tls_key.clone()),
        };
        config.data_dir = self.data_dir.clone();
        config.trusted_proxies = crate::client_addr::TrustedProxies::parse(&self.trusted_proxies)?;
        config.web_dir = self.web_dir.clone();
        config.timeouts.pending = Duration::from_secs(self.pending_timeout_secs.max(1));
        config.timeouts.rejoin_grace = Duration::from_secs(self.rejoin_grace_secs);
        config.timeouts.resume_grace = Duration::from_secs(self.resume_grace_secs.max(1));
        let ms = |n: u64| Duration::from_millis(n.max(1));
        config.limits = ConnectionLimits {
            header_timeout: ms(self.header_timeout_ms),
            body_timeout: ms(self.body_timeout_ms),
            hello_timeout: ms(self.hello_timeout_ms),
            ping_interval: ms(self.ping_interval_ms),
            pong_timeout: ms(self.pong_timeout_ms),
            max_connections_per_ip: self.max_connections_per_ip.max(1),
            frames_per_sec: self.ws_rate.max(1),
            frame_burst: self.ws_burst.max(1),
        };
        config.drain_timeout = Duration::from_secs(self.drain_timeout_secs);
        for url in self.stun_urls.iter().chain(&self.turn_urls) {
            let scheme = url.split(':').next().unwrap_or_default();
            let expected = match self.stun_urls.contains(url) {
                true => &["stun", "stuns"][..],
                false => &["turn", "turns"][..],
            };
            if !expected.contains(&scheme) {
                return Err(format!(
                    "{url}: an ICE server URL starts with {}:",
                    expected.join(": or ")
                ));
            }
        }
        config.ring_timeout = Duration::from_secs(self.call_ring_secs.max(1));
        // MB as people (and the error words, `human_bytes`) count them.
        let mb = 1_000_000;
        let attachments = &mut config.attachments;
        attachments.dir = self.attachment_dir.clone();
        attachments.central = self
            .attachment_store
            .clone()
            .filter(|s| !s.trim().is_empty());
        attachments.s3_endpoint = self.s3_endpoint.clone().filter(|s| !s.trim().is_empty());
        attachments.cache_bytes = self.attachment_cache_mb.max(1).saturating_mul(mb);
        attachments.max_bytes = self.attachment_max_mb.max(1).saturating_mul(mb);
        attachments.types = self
            .attachment_types
            .iter()
            .map(|t| t.trim().to_ascii_lowercase())
            .filter(|t| !t.is_empty())
            .collect();
        config.ice = crate::calls::ice::IceConfig {
            stun: self.stun_urls.clone(),
            turn: self.turn_urls.clone(),
            turn_secret: self.turn_secret.clone().filter(|s| !s.is_empty()),
        };
        Ok(config)
    }
}

/// Wait for SIGTERM (what systemd, Docker and Kubernetes send) or SIGINT (Ctrl-C); the
/// signal's name. If the handlers cannot be installed, the process waits forever rather
/// than stopping at once.
pub async fn stop_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).ok();
    let mut int = signal(SignalKind::interrupt()).ok();
    let term = async {
        match term.as_mut() {
            Some(s) => s.recv().await,
            None => std::future::pending().await,
        }
    };
    let int = async {
        match int.as_mut() {
            Some(s) => s.recv().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = term => "SIGTERM",
        _ = int => "SIGINT",
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
