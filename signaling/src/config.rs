//! Signaling configuration: one struct with defaults, filled by the binaries from flags
//! and environment variables.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::auth::api_key::ApiKey;
use crate::rooms::service::RoomTimeouts;

/// How the HTTP listener is secured. Browsers allow the microphone only in a secure
/// context: plain HTTP is fine on loopback, a phone on the LAN needs HTTPS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain HTTP.
    Off,
    /// HTTPS with the given PEM certificate chain and private key.
    Files {
        /// Certificate chain (PEM).
        cert: PathBuf,
        /// Private key (PEM).
        key: PathBuf,
    },
    /// HTTPS with a self-signed certificate kept in the data directory (made on first use).
    SelfSigned,
}

impl TlsMode {
    /// The default for a listen address: given files win; otherwise loopback gets plain
    /// HTTP and any other address a self-signed certificate.
    pub fn choose(listen: SocketAddr, cert: Option<PathBuf>, key: Option<PathBuf>) -> Self {
        match (cert, key) {
            (Some(cert), Some(key)) => TlsMode::Files { cert, key },
            _ if listen.ip().is_loopback() => TlsMode::Off,
            _ => TlsMode::SelfSigned,
        }
    }
}

/// Everything signaling needs to run.
#[derive(Debug, Clone)]
pub struct SignalingConfig {
    /// HTTP(S) and WebSocket listen address; port 0 picks one.
    pub listen: SocketAddr,
    /// HTTPS or not.
    pub tls: TlsMode,
    /// gRPC address of the SFU node, e.g. `http://127.0.0.1:7881` (ignored with
    /// `redis_url`: SFU nodes register themselves there).
    pub sfu_url: String,
    /// Redis of the fleet (`--redis`): shared store, node router and room bus. `None`:
    /// the embedded store and the one SFU at `sfu_url`.
    pub redis_url: Option<String>,
    /// This signaling node's id (random when not given).
    pub node_id: Option<chorus_proto::NodeId>,
    /// Folder holding the web client (index.html, src/, style.css).
    pub web_dir: PathBuf,
    /// Folder for durable data (and the self-signed certificate).
    pub data_dir: PathBuf,
    /// The server API's key; made and kept in the data folder when not given.
    pub api_key: Option<ApiKey>,
    /// The SFU goes on when this process stops (a separate `chorus-sfu`): a clean stop
    /// then leaves the media where it is for the sessions to resume on the next node.
    /// False in the all-in-one `chorus`, whose SFU stops with it.
    pub media_outlives_stop: bool,
    /// Bounds of a room's lifecycle (pending creation, held places, token lifetime).
    pub timeouts: RoomTimeouts,
    /// Bounds of each client connection (timeouts, rates, connections per address).
    pub limits: ConnectionLimits,
    /// On shutdown, how long sessions get to say goodbye before the process stops.
    pub drain_timeout: Duration,
    /// Reverse proxies whose `X-Forwarded-For` names the client (`--trusted-proxy`).
    pub trusted_proxies: crate::client_addr::TrustedProxies,
    /// STUN/TURN servers handed to the browsers of a call.
    pub ice: crate::calls::ice::IceConfig,
    /// How long a call rings before it ends unanswered.
    pub ring_timeout: Duration,
    /// Where the files posted in group chats are kept, and their limits.
    pub attachments: crate::attachments::AttachmentConfig,
}

/// How long a client connection may take over each step, how fast a session may send,
/// and how many connections one address may hold. A client that breaks one is told so
/// (an HTTP status, or a WebSocket close code with a reason) and loses only its own
/// connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// A request's headers must have arrived within this (slowloris).
    pub header_timeout: Duration,
    /// A request's body must have arrived within this.
    pub body_timeout: Duration,
    /// A WebSocket must say `hello` within this after it opens.
    pub hello_timeout: Duration,
    /// A session quiet this long is sent a WebSocket ping...
    pub ping_interval: Duration,
    /// ...and closed (`close::NOT_READING`) when nothing answers within this.
    pub pong_timeout: Duration,
    /// Open connections from one IP address (HTTP and WebSocket together).
    pub max_connections_per_ip: usize,
    /// Frames a session may send per second, on average...
    pub frames_per_sec: u32,
    /// ...and at once; frames beyond are answered `error/rate_limited`.
    pub frame_burst: u32,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            hello_timeout: Duration::from_secs(10),
            // The web client sends a `ping` frame every 25 s: a live page is never quiet
            // for 20 + 20 s.
            ping_interval: Duration::from_secs(20),
            pong_timeout: Duration::from_secs(20),
            max_connections_per_ip: 128,
            frames_per_sec: 20,
            frame_burst: 100,
        }
    }
}

impl SignalingConfig {
    /// Defaults for everything but the SFU address.
    pub fn new(sfu_url: impl Into<String>) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7880)),
            tls: TlsMode::Off,
            sfu_url: sfu_url.into(),
            redis_url: None,
            node_id: None,
            web_dir: default_web_dir(),
            data_dir: PathBuf::from("chorus-data"),
            api_key: None,
            media_outlives_stop: true,
            timeouts: RoomTimeouts::default(),
            limits: ConnectionLimits::default(),
            drain_timeout: Duration::from_secs(10),
            trusted_proxies: crate::client_addr::TrustedProxies::default(),
            ice: crate::calls::ice::IceConfig::default(),
            ring_timeout: Duration::from_secs(chorus_proto::people::RING_SECS),
            attachments: crate::attachments::AttachmentConfig::new(),
        }
    }
}

/// The web client beside the workspace this binary was built from; overridden with
/// `--web-dir` when the binary is installed elsewhere.
pub fn default_web_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../web-client"))
}
