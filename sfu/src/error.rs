//! The one error type of the SFU. Every refusal a caller (signaling, an operator starting
//! the binary) can meet is a variant here, with words meant to be shown to a person.

use chorus_proto::token::TokenError;

/// Everything that can go wrong in the SFU, from start-up to one admission.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SfuError {
    /// The configuration cannot work (bad key, no address to announce, ...).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A socket could not be bound or used.
    #[error("network error: {0}")]
    Io(#[from] std::io::Error),
    /// The room token was refused (forged, expired, malformed, too large).
    #[error("{0}")]
    Token(#[from] TokenError),
    /// The participant was removed (or left) earlier: its token is not accepted again.
    #[error(
        "participant {participant} already left room {room}; this room token is no longer accepted"
    )]
    Revoked {
        /// The room of the token.
        room: String,
        /// The participant of the token.
        participant: String,
    },
    /// The participant is already in the room on this node.
    #[error("participant {participant} is already in room {room}")]
    AlreadyAdmitted {
        /// The room of the token.
        room: String,
        /// The participant of the token.
        participant: String,
    },
    /// The SDP offer is unusable: too large, not SDP, or not the shape Chorus needs.
    #[error("bad SDP offer: {0}")]
    BadOffer(String),
    /// The node holds as many participants as it is allowed to (`--max-participants`).
    #[error("this media server is full ({max} participants); the room continues on another")]
    NodeFull {
        /// The node's limit.
        max: usize,
    },
    /// No such participant (or room) on this node.
    #[error("{0} not found on this node")]
    NotFound(String),
    /// A request field is not valid (e.g. an id with forbidden characters).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The WebRTC stack failed in a way that is not the client's fault.
    #[error("media engine error: {0}")]
    Media(String),
    /// The engine loop has stopped (the node is shutting down).
    #[error("the SFU is shutting down")]
    ShuttingDown,
}
