//! Configuration of one SFU node: where it listens, what it announces, which key signs
//! room tokens, and the few knobs of room behaviour.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use chorus_proto::NodeId;

/// How many audio slots a listener gets unless configured otherwise.
pub const DEFAULT_AUDIO_SLOTS: usize = 3;
/// How long an admitted participant may take to connect its media.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Everything [`crate::start`] needs.
#[derive(Debug, Clone)]
pub struct SfuConfig {
    /// This node's id, reported in `NodeStats`.
    pub node_id: NodeId,
    /// gRPC listen address; port 0 picks a free port.
    pub grpc_listen: SocketAddr,
    /// Media (UDP) listen address; port 0 picks a free port; `0.0.0.0` is allowed and
    /// then one socket is bound per announced local address.
    pub udp_listen: SocketAddr,
    /// Addresses to announce as ICE host candidates. Empty: derived from `udp_listen`
    /// (127.0.0.1 plus the host's primary address when it is unspecified).
    pub public_ips: Vec<IpAddr>,
    /// Raw 32-byte Ed25519 public key that verifies room tokens.
    pub token_public_key: Vec<u8>,
    /// Most audio slots used per participant (its offer may ask for fewer).
    pub audio_slots: usize,
    /// Admitted but not connected after this long: removed with `CONNECT_TIMEOUT`.
    pub connect_timeout: Duration,
    /// Most participants on this node; 0: no limit.
    pub max_participants: usize,
    /// Membership of a fleet (`--redis`); `None`: a node driven by one signaling.
    pub fleet: Option<crate::fleet::FleetConfig>,
}

impl SfuConfig {
    /// Defaults: random node id, gRPC on 127.0.0.1 (any port), media on 0.0.0.0 (any
    /// port), derived host candidates, 3 audio slots, 15 s connect timeout.
    pub fn new(token_public_key: Vec<u8>) -> Self {
        Self {
            node_id: NodeId::random(),
            grpc_listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            udp_listen: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
            public_ips: Vec::new(),
            token_public_key,
            audio_slots: DEFAULT_AUDIO_SLOTS,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            max_participants: 0,
            fleet: None,
        }
    }
}
