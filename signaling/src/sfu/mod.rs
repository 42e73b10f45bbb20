//! How room logic drives an SFU node: the [`SfuControl`] trait, its gRPC implementation
//! ([`grpc::GrpcSfu`], one per node, made by [`GrpcConnector`]) and, for room tests, an
//! in-process fake (`fake::FakeSfu`) that answers offers and reports media connected or
//! gone when a test says so.
//!
//! Errors are already in the user's words ([`Failure`]): the room service passes them
//! on or logs them.

pub mod grpc;

#[cfg(test)]
pub mod fake;

use std::pin::Pin;
use std::sync::Arc;

use chorus_proto::fleet::SfuNodeRecord;
use chorus_proto::sfu::{NodeStatsResponse, ParticipantState, RoomEvent};
use chorus_proto::signal::ErrorCode;
use chorus_proto::token::Grants;
use chorus_proto::{ParticipantId, RoomId};
use futures_util::Stream;

use crate::routing::RouteError;

/// An error for the user: a code and words.
pub type Failure = (ErrorCode, String);

/// A node's room events, until the node hangs up (`None`) or the stream fails.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<RoomEvent, Failure>> + Send>>;

/// Another SFU node of a room that spans nodes: where it takes the room's relayed
/// speakers, and where its own come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayPeer {
    /// The peer's media address (`ip:port`), which its relay datagrams come from too.
    pub addr: String,
}

/// What room logic asks of one SFU node.
#[async_trait::async_trait]
pub trait SfuControl: Send + Sync + 'static {
    /// Where the node is (for logs).
    fn url(&self) -> &str;
    /// Admit a participant: the SFU checks the token and answers the offer.
    async fn admit(&self, room_token: String, sdp_offer: String) -> Result<String, Failure>;
    /// Change a participant's grants and server-side mute; effective on the next packet.
    async fn update_grants(
        &self,
        room: &RoomId,
        participant: &ParticipantId,
        grants: Grants,
        muted: bool,
    ) -> Result<(), Failure>;
    /// Disconnect a participant from its room; `false` if it was not there.
    async fn remove(&self, room: &RoomId, participant: &ParticipantId) -> Result<bool, Failure>;
    /// Disconnect everyone in a room; the bytes its media took on that node over the
    /// room's life (from and to its participants).
    async fn close_room(&self, room: &RoomId) -> Result<u64, Failure>;
    /// The other nodes of a room that spans nodes (empty: it no longer does). The node
    /// sends its own speakers to each and plays theirs to its listeners.
    async fn set_relays(&self, room: &RoomId, peers: &[RelayPeer]) -> Result<(), Failure>;
    /// The node's counters.
    async fn node_stats(&self) -> Result<NodeStatsResponse, Failure>;
    /// Every participant on the node and whether its media is connected.
    async fn participants(&self) -> Result<Vec<ParticipantState>, Failure>;
    /// Every room event of the node from now on.
    async fn events(&self) -> Result<EventStream, Failure>;
}

/// A handle on one SFU node. Cheap to clone.
pub type Sfu = Arc<dyn SfuControl>;

/// Makes the handle of an SFU node from its record.
pub trait SfuConnector: Send + Sync + 'static {
    /// The handle of `node` (it connects on first use).
    fn connect(&self, node: &SfuNodeRecord) -> Result<Sfu, RouteError>;
}

/// SFU nodes over gRPC, at their records' `grpc_url`, every call with a control token.
pub struct GrpcConnector(pub grpc::ControlTokens);

impl SfuConnector for GrpcConnector {
    fn connect(&self, node: &SfuNodeRecord) -> Result<Sfu, RouteError> {
        grpc::GrpcSfu::connect_lazy(&node.grpc_url, self.0.clone())
            .map(|sfu| Arc::new(sfu) as Sfu)
            .map_err(|e| RouteError::Corrupt(format!("node {}: {e}", node.id)))
    }
}
