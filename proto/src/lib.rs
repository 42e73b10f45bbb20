//! Chorus wire contracts, in one place.
//!
//! - [`sfu`]: the `SfuControl` gRPC service that signaling uses to drive SFU nodes.
//! - [`signal`]: the JSON messages between a browser and signaling (see `docs/protocol.md`).
//! - [`token`]: the Ed25519-signed room token that signaling mints and the SFU verifies.
//! - [`api_key`]: signing and checking server-API requests (`docs/api.md`).
//! - [`people`]: accounts, presence and 1:1 calls as clients see them.
//! - [`session`]: the call state a client holds, sealed by the server (resume).
//! - [`ids`]: newtype ids shared by all of the above.
//! - [`fleet`]: Redis key names and the node records a fleet shares.

pub mod api_key;
pub mod attachments;
pub mod chat;
pub mod fleet;
pub mod hex;
pub mod ids;
pub mod people;
pub mod session;
pub mod signal;
pub mod token;

/// Generated `SfuControl` client, server and messages (package `chorus.sfu.v1`).
#[allow(clippy::all, missing_docs)]
pub mod sfu {
    tonic::include_proto!("chorus.sfu.v1");
}

pub use ids::{CallId, GroupId, IdError, NodeId, ParticipantId, RoomId, SessionId, UserId};
