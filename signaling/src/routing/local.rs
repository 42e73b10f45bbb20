//! One SFU node, named by `--sfu` (or the in-process one of `chorus`): every room is on
//! it.

use std::collections::HashMap;
use std::sync::Mutex;

use chorus_proto::fleet::{SfuNodeRecord, unix_ms};
use chorus_proto::{NodeId, RoomId};

use super::{NodeRouter, Placement, RouteError};

/// The router of a single-SFU deployment.
pub struct LocalRouter {
    node: SfuNodeRecord,
    /// Rooms this node placed (for the API's per-node room counts).
    rooms: Mutex<HashMap<RoomId, ()>>,
}

impl LocalRouter {
    /// The router of the SFU at `grpc_url`, whose id is `id` (from its `NodeStats`).
    pub fn new(grpc_url: &str, id: NodeId) -> Self {
        let node = SfuNodeRecord {
            id,
            grpc_url: grpc_url.to_owned(),
            media: Vec::new(),
            region: None,
            rooms: 0,
            participants: 0,
            max_participants: 0,
            forwarded_per_sec: 0.0,
            cpu_cores: 0.0,
            draining: false,
            updated_ms: unix_ms(),
        };
        Self {
            node,
            rooms: Mutex::default(),
        }
    }

    fn rooms(&self) -> std::sync::MutexGuard<'_, HashMap<RoomId, ()>> {
        self.rooms
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait::async_trait]
impl NodeRouter for LocalRouter {
    async fn node_for_room(&self, room: &RoomId) -> Result<SfuNodeRecord, RouteError> {
        self.rooms().insert(room.clone(), ());
        Ok(self.node.clone())
    }

    async fn node_for_participant(
        &self,
        room: &RoomId,
        _full: &[NodeId],
    ) -> Result<Placement, RouteError> {
        // One node: a room cannot outgrow it (a full node refuses the admission).
        Ok(Placement {
            node: self.node_for_room(room).await?,
            new_in_room: false,
        })
    }

    async fn room_nodes(&self, _room: &RoomId) -> Result<Vec<SfuNodeRecord>, RouteError> {
        Ok(vec![self.node.clone()])
    }

    async fn bound_node(&self, _room: &RoomId) -> Result<Option<NodeId>, RouteError> {
        Ok(Some(self.node.id.clone()))
    }

    async fn unbind(&self, room: &RoomId, _node: &NodeId) -> Result<(), RouteError> {
        self.rooms().remove(room);
        Ok(())
    }

    async fn nodes(&self) -> Result<Vec<SfuNodeRecord>, RouteError> {
        // No I/O: with one node there is nothing to choose, and the event follower asks
        // for the list every second. Its load is in `/metrics` (the node's own counters).
        Ok(vec![self.node.clone()])
    }

    async fn rooms_per_node(&self) -> Result<HashMap<NodeId, u64>, RouteError> {
        let count = u64::try_from(self.rooms().len()).unwrap_or(u64::MAX);
        Ok(HashMap::from([(self.node.id.clone(), count)]))
    }
}
