//! Which SFU node a room's media lives on: the live nodes and their load, placement of a
//! new room on the least-loaded one, and a client per node to drive it.
//!
//! [`NodeRouter`] has two implementations, chosen once at start-up: [`LocalRouter`] (one
//! SFU, given by `--sfu`; the embedded default) and [`RedisRouter`] (`--redis`: SFU nodes
//! register themselves with a heartbeat, bindings room → node are shared by every
//! signaling node).

mod local;
mod redis;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chorus_proto::fleet::SfuNodeRecord;
use chorus_proto::{NodeId, RoomId};

pub use self::local::LocalRouter;
pub use self::redis::RedisRouter;
use crate::sfu::{Sfu, SfuConnector};

/// Why a room could not be routed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RouteError {
    /// No SFU node is alive (or every one is draining).
    #[error("no media server is available right now; try again in a moment")]
    NoNode,
    /// The registry (Redis) cannot be reached.
    #[error("the node registry is temporarily unavailable: {0}")]
    Unavailable(String),
    /// A registry record is unreadable.
    #[error("a node record is unreadable: {0}")]
    Corrupt(String),
}

/// Where rooms' media lives.
#[async_trait::async_trait]
pub trait NodeRouter: Send + Sync + 'static {
    /// The node a room's media is on: its binding while that node is alive, otherwise a
    /// new placement on the least-loaded live node that is not draining, recorded so
    /// that every signaling node agrees.
    async fn node_for_room(&self, room: &RoomId) -> Result<SfuNodeRecord, RouteError>;
    /// The node a room is bound to now, alive or not; no placement.
    async fn bound_node(&self, room: &RoomId) -> Result<Option<NodeId>, RouteError>;
    /// Forget a room's binding (the room closed), if it is still bound to `node`.
    async fn unbind(&self, room: &RoomId, node: &NodeId) -> Result<(), RouteError>;
    /// The node a new participant of `room` goes on: the room's own node while it takes
    /// more participants, else another live node the room already spans, else the
    /// least-loaded other node, which the room then spans. `full` lists nodes that
    /// just refused for being full (their heartbeat may not say so yet).
    async fn node_for_participant(
        &self,
        room: &RoomId,
        full: &[NodeId],
    ) -> Result<Placement, RouteError>;
    /// Every live node a room's media is on, its own node first.
    async fn room_nodes(&self, room: &RoomId) -> Result<Vec<SfuNodeRecord>, RouteError>;
    /// Every live SFU node with its load.
    async fn nodes(&self) -> Result<Vec<SfuNodeRecord>, RouteError>;
    /// How many rooms each node holds, by binding (for placement and the API).
    async fn rooms_per_node(&self) -> Result<HashMap<NodeId, u64>, RouteError>;
}

/// Where a participant's media goes.
#[derive(Debug, Clone)]
pub struct Placement {
    /// The node.
    pub node: SfuNodeRecord,
    /// The room did not span this node before: its nodes' relays must be updated.
    pub new_in_room: bool,
}

/// The least-loaded node that takes new rooms: by participants and forwarding load, with
/// rooms already bound to it (whose people may not have arrived yet) counted too, so
/// that a burst of new rooms spreads instead of piling onto one node until the next
/// heartbeat.
pub fn place<'a>(
    nodes: &'a [SfuNodeRecord],
    rooms: &HashMap<NodeId, u64>,
) -> Option<&'a SfuNodeRecord> {
    let score = |n: &SfuNodeRecord| {
        let bound = rooms.get(&n.id).copied().unwrap_or(0);
        // A room is expected to hold a few people: weigh bindings like participants.
        n.load() + 4.0 * bound as f64
    };
    nodes.iter().filter(|n| !n.draining).min_by(|a, b| {
        score(a)
            .partial_cmp(&score(b))
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| a.id.as_str().cmp(b.id.as_str()))
    })
}

/// One handle per SFU node, made on first use by the connector chosen at start-up.
pub struct SfuPool {
    connector: Arc<dyn SfuConnector>,
    clients: Mutex<HashMap<NodeId, (String, Sfu)>>,
}

impl SfuPool {
    /// A pool whose handles `connector` makes.
    pub fn new(connector: Arc<dyn SfuConnector>) -> Self {
        Self {
            connector,
            clients: Mutex::default(),
        }
    }

    /// The handle of `node` (made, or remade if the node moved to another address).
    pub fn client(&self, node: &SfuNodeRecord) -> Result<Sfu, RouteError> {
        let mut clients = self
            .clients
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((_, client)) = clients
            .get(&node.id)
            .filter(|(url, _)| *url == node.grpc_url)
        {
            return Ok(client.clone());
        }
        let client = self.connector.connect(node)?;
        clients.insert(node.id.clone(), (node.grpc_url.clone(), client.clone()));
        Ok(client)
    }

    /// Forget a node's handle (it is gone).
    pub fn forget(&self, node: &NodeId) {
        self.clients
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(node);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, participants: u32, draining: bool) -> SfuNodeRecord {
        SfuNodeRecord {
            id: NodeId::parse(id).unwrap_or_else(|_| NodeId::random()),
            grpc_url: format!("http://{id}"),
            media: vec![],
            region: None,
            rooms: 0,
            participants,
            max_participants: 0,
            forwarded_per_sec: 0.0,
            cpu_cores: 0.0,
            draining,
            updated_ms: 0,
        }
    }

    #[test]
    fn places_on_the_least_loaded_node_that_is_not_draining() {
        let nodes = vec![
            node("a", 10, false),
            node("b", 3, true),
            node("c", 5, false),
        ];
        let chosen = place(&nodes, &HashMap::new()).map(|n| n.id.as_str().to_owned());
        assert_eq!(chosen.as_deref(), Some("c"));
        assert!(place(&[node("d", 0, true)], &HashMap::new()).is_none());
    }

    #[test]
    fn bound_rooms_spread_a_burst_of_new_rooms() {
        let nodes = vec![node("a", 0, false), node("b", 0, false)];
        let mut rooms = HashMap::new();
        let mut placed = Vec::new();
        for _ in 0..6 {
            let n = place(&nodes, &rooms).map(|n| n.id.clone());
            let Some(n) = n else { panic!("no node") };
            *rooms.entry(n.clone()).or_insert(0) += 1;
            placed.push(n);
        }
        assert_eq!(rooms.values().copied().collect::<Vec<_>>(), vec![3, 3]);
    }
}
