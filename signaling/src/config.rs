//! Signaling configuration: one struct with defaults, filled by the binaries from flags
//! and environment variables.

use std::net::SocketAddr;
use std::path::PathBuf;

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
    /// Bounds of a room's lifecycle (pending creation, held places, token lifetime).
    pub timeouts: RoomTimeouts,
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
            timeouts: RoomTimeouts::default(),
        }
    }
}

/// The web client beside the workspace this binary was built from; overridden with
/// `--web-dir` when the binary is installed elsewhere.
pub fn default_web_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../web-client"))
}
