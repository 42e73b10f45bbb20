//! People and calls across signaling nodes: where each account's devices are connected,
//! who is in a call, and the frames that cross from one node to another.
//!
//! A call lives on one node, the caller's (its `CallService` holds it while it rings and
//! runs); the callee's devices may be on any node. [`PeopleFleet`] is how that node
//! reaches them and how they reach it:
//! - **Devices**: each node records its accounts' sessions in a hash per user (device id →
//!   node); a device on another node is addressed through that node.
//! - **Frames**: [`PeopleEvent::Deliver`] carries a protocol frame to one device on its
//!   node; [`PeopleEvent::Request`] carries a device's request about a call (accept,
//!   signal, hang up, ...) to the call's node, which answers errors back the same way;
//!   [`PeopleEvent::DeviceGone`] tells the call's node that a device of the call closed.
//! - **One call at a time**: a user's call is a key set only if absent (`SET NX`) with a
//!   TTL the call's node refreshes, so busy holds across nodes and a node that dies
//!   frees its users within a minute.
//! - **Presence**: a change is computed over every node's devices and published to all
//!   nodes, each telling its own followers.
//!
//! [`LocalFleet`] is the embedded default's: one node, nothing to share.

mod redis;

use chorus_proto::people::{IceCandidate, Presence, SessionDescription};
use chorus_proto::signal::ServerMessage;
use chorus_proto::{CallId, NodeId, UserId};
use serde::{Deserialize, Serialize};

pub use self::redis::RedisFleet;
use super::directory::DeviceId;
use crate::rooms::bus::BusError;

/// How long a user's call claim lives without a refresh from the call's node.
pub const CALL_CLAIM_TTL_MS: u64 = 60_000;

/// A device as the fleet records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRecord {
    /// The signaling node its session is on.
    pub node: NodeId,
    /// Whether it rings when its user is called.
    pub takes_calls: bool,
}

/// What a device on another node asks of a call; the call's node carries it out as if
/// the device were its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CallRequest {
    /// `accept_call`.
    Accept,
    /// `decline_call`.
    Decline,
    /// `hang_up`.
    HangUp,
    /// `call_signal`.
    Signal {
        /// An offer or answer.
        description: Option<SessionDescription>,
        /// A trickled candidate.
        candidate: Option<IceCandidate>,
    },
    /// `call_connected`.
    Connected,
    /// `relay_call`.
    Relay,
    /// `grow_call`.
    Grow,
}

/// A frame between signaling nodes about people and calls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PeopleEvent {
    /// For one device of the receiving node: send it this frame.
    Deliver {
        /// The device.
        device: DeviceId,
        /// The frame.
        message: ServerMessage,
    },
    /// For the call's node: a request of a device on the sending node.
    Request {
        /// The call.
        call: CallId,
        /// The device asking.
        device: DeviceId,
        /// Its account.
        user: UserId,
        /// What it asks.
        request: CallRequest,
    },
    /// For the call's node: this device (of the sending node) closed.
    DeviceGone {
        /// The device.
        device: DeviceId,
    },
    /// For every node: a user's presence is now this.
    Presence {
        /// The user.
        user: UserId,
        /// Online, in a call or offline, over all nodes.
        presence: Presence,
    },
}

/// A [`PeopleEvent`] as it travels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeopleEnvelope {
    /// The node that sent it.
    pub origin: NodeId,
    /// What it says.
    pub event: PeopleEvent,
}

/// How a node reaches the accounts and calls of the other nodes.
#[async_trait::async_trait]
pub trait PeopleFleet: Send + Sync + 'static {
    /// Whether other nodes exist at all (false: every call and device is local).
    fn is_shared(&self) -> bool;
    /// A session of `user` is connected on this node.
    async fn device_up(
        &self,
        user: &UserId,
        device: DeviceId,
        takes_calls: bool,
    ) -> Result<(), BusError>;
    /// That session is gone.
    async fn device_down(&self, user: &UserId, device: DeviceId) -> Result<(), BusError>;
    /// The devices of `user` on other live nodes.
    async fn devices_elsewhere(
        &self,
        user: &UserId,
    ) -> Result<Vec<(DeviceId, DeviceRecord)>, BusError>;
    /// `user` is in `call` (of this node) from now on, unless in another call already on
    /// any node (false).
    async fn claim_call(&self, user: &UserId, call: &CallId) -> Result<bool, BusError>;
    /// `user`'s `call` was answered (presence: in a call).
    async fn call_answered(&self, user: &UserId, call: &CallId) -> Result<(), BusError>;
    /// `user` is no longer in `call` (if that is still the call it is in).
    async fn release_call(&self, user: &UserId, call: &CallId) -> Result<(), BusError>;
    /// Whether `user` is in an answered call on any node.
    async fn in_answered_call(&self, user: &UserId) -> Result<bool, BusError>;
    /// Keep these claims of this node's calls alive another [`CALL_CLAIM_TTL_MS`].
    async fn refresh_calls(&self, claims: &[(UserId, CallId)]) -> Result<(), BusError>;
    /// Send `event` to `node`, after whatever was sent before (in order, not awaited).
    fn send(&self, node: &NodeId, event: PeopleEvent);
    /// Tell every node `user`'s presence.
    fn announce_presence(&self, user: &UserId, presence: Presence);
}

/// The people of a node alone.
pub struct LocalFleet;

#[async_trait::async_trait]
impl PeopleFleet for LocalFleet {
    fn is_shared(&self) -> bool {
        false
    }

    async fn device_up(&self, _: &UserId, _: DeviceId, _: bool) -> Result<(), BusError> {
        Ok(())
    }

    async fn device_down(&self, _: &UserId, _: DeviceId) -> Result<(), BusError> {
        Ok(())
    }

    async fn devices_elsewhere(
        &self,
        _: &UserId,
    ) -> Result<Vec<(DeviceId, DeviceRecord)>, BusError> {
        Ok(Vec::new())
    }

    async fn claim_call(&self, _: &UserId, _: &CallId) -> Result<bool, BusError> {
        Ok(true) // the node's own table of calls decides
    }

    async fn call_answered(&self, _: &UserId, _: &CallId) -> Result<(), BusError> {
        Ok(())
    }

    async fn release_call(&self, _: &UserId, _: &CallId) -> Result<(), BusError> {
        Ok(())
    }

    async fn in_answered_call(&self, _: &UserId) -> Result<bool, BusError> {
        Ok(false)
    }

    async fn refresh_calls(&self, _: &[(UserId, CallId)]) -> Result<(), BusError> {
        Ok(())
    }

    fn send(&self, _: &NodeId, _: PeopleEvent) {}

    fn announce_presence(&self, _: &UserId, _: Presence) {}
}
