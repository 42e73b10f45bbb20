//! One SFU node, named by `--sfu` (or the in-process one of `chorus`): every room is on
//! it.

use std::collections::HashMap;
use std::sync::Mutex;

use chorus_proto::fleet::{SfuNodeRecord, unix_ms};
use chorus_proto::{NodeId, RoomId};

use super::{NodeRouter, RouteError};
use crate::sfu_client::SfuClient;

/// The router of a single-SFU deployment.
pub struct LocalRouter {
    node: SfuNodeRecord,
    /// Rooms this node placed (for the API's per-node room counts).
    rooms: Mutex<HashMap<RoomId, ()>>,
}

impl LocalRouter {
    /// The router of the SFU at `client`, whose id is `id` (from its `NodeStats`).
    pub fn new(client: &SfuClient, id: NodeId) -> Self {
        let node = SfuNodeRecord {
            id,
            grpc_url: client.url().to_owned(),
            media: Vec::new(),
            region: None,
            rooms: 0,
            participants: 0,
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
