//! The fleet's router: SFU nodes register themselves in Redis (`chorus-sfu --redis`,
//! refreshed every second with a TTL), and a room's binding to a node is one key every
//! signaling node reads. A binding changes only by compare-and-set: placement sets it
//! if absent, failover replaces it only if it still names the dead node, so two
//! signaling nodes placing one room at once always agree on the winner.

use std::collections::HashMap;

use chorus_proto::fleet::{SfuNodeRecord, keys};
use chorus_proto::{NodeId, RoomId};
use redis::Script;

use super::{NodeRouter, Placement, RouteError, place};
use crate::redis_client::Redis;

/// The router of a fleet.
pub struct RedisRouter {
    redis: Redis,
    /// KEYS: binding, new node's room set, old node's room set. ARGV: expected old node
    /// ('' for none), new node, room. Returns 1 when the binding was written.
    bind: Script,
    /// KEYS: binding, node's room set, the room's span. ARGV: node, room.
    unbind: Script,
}

fn unavailable(e: redis::RedisError) -> RouteError {
    RouteError::Unavailable(e.to_string())
}

impl RedisRouter {
    /// A router on `redis`.
    pub fn new(redis: Redis) -> Self {
        Self {
            redis,
            bind: Script::new(
                r"
                local current = redis.call('GET', KEYS[1])
                if (not current and ARGV[1] == '') or current == ARGV[1] then
                    redis.call('SET', KEYS[1], ARGV[2])
                    redis.call('SADD', KEYS[2], ARGV[3])
                    if current then redis.call('SREM', KEYS[3], ARGV[3]) end
                    return 1
                end
                return 0",
            ),
            unbind: Script::new(
                r"
                if redis.call('GET', KEYS[1]) == ARGV[1] then
                    redis.call('DEL', KEYS[1])
                    redis.call('DEL', KEYS[3])
                end
                redis.call('SREM', KEYS[2], ARGV[2])
                return 1",
            ),
        }
    }

    async fn binding(&self, room: &RoomId) -> Result<Option<NodeId>, RouteError> {
        let id: Option<String> = self
            .redis
            .query(redis::cmd("GET").arg(keys::room_node(room)))
            .await
            .map_err(unavailable)?;
        Ok(id.and_then(|id| NodeId::parse(id).ok()))
    }

    /// The other nodes a room spans.
    async fn span(&self, room: &RoomId) -> Result<Vec<NodeId>, RouteError> {
        let ids: Vec<String> = self
            .redis
            .query(redis::cmd("SMEMBERS").arg(keys::room_span(room)))
            .await
            .map_err(unavailable)?;
        Ok(ids
            .into_iter()
            .filter_map(|id| NodeId::parse(id).ok())
            .collect())
    }

    /// Write `room → new` if the binding is still `expected`. True when written.
    async fn compare_and_bind(
        &self,
        room: &RoomId,
        expected: Option<&NodeId>,
        new: &NodeId,
    ) -> Result<bool, RouteError> {
        let old_set = expected.map_or_else(|| keys::sfu_node_rooms(new), keys::sfu_node_rooms);
        let mut call = self.bind.key(keys::room_node(room));
        call.key(keys::sfu_node_rooms(new))
            .key(old_set)
            .arg(expected.map_or("", NodeId::as_str))
            .arg(new.as_str())
            .arg(room.as_str());
        let mut conn = self.redis.conn();
        let written: i64 = self
            .redis
            .timed(call.invoke_async(&mut conn))
            .await
            .map_err(unavailable)?;
        Ok(written == 1)
    }
}

#[async_trait::async_trait]
impl NodeRouter for RedisRouter {
    async fn node_for_room(&self, room: &RoomId) -> Result<SfuNodeRecord, RouteError> {
        // Three rounds are enough: each lost race means someone else bound the room to a
        // live node, which the next round finds.
        for _ in 0..3 {
            let nodes = self.nodes().await?;
            let bound = self.binding(room).await?;
            if let Some(node) = bound
                .as_ref()
                .and_then(|id| nodes.iter().find(|n| &n.id == id))
            {
                return Ok(node.clone());
            }
            let rooms = self.rooms_per_node().await?;
            let Some(chosen) = place(&nodes, &rooms) else {
                return Err(RouteError::NoNode);
            };
            if self
                .compare_and_bind(room, bound.as_ref(), &chosen.id)
                .await?
            {
                match &bound {
                    Some(dead) => {
                        tracing::warn!(room = %room, from = %dead, to = %chosen.id, "room moved off a node that is gone");
                    }
                    None => tracing::info!(room = %room, node = %chosen.id, "room placed"),
                }
                return Ok(chosen.clone());
            }
        }
        Err(RouteError::Unavailable(
            "the room's placement kept changing; try again".into(),
        ))
    }

    async fn node_for_participant(
        &self,
        room: &RoomId,
        full: &[NodeId],
    ) -> Result<Placement, RouteError> {
        let home = self.node_for_room(room).await?;
        let takes = |n: &SfuNodeRecord| !n.is_full() && !full.contains(&n.id);
        if takes(&home) {
            return Ok(Placement {
                node: home,
                new_in_room: false,
            });
        }
        let nodes = self.nodes().await?;
        let span = self.span(room).await?;
        if let Some(node) = nodes
            .iter()
            .filter(|n| span.contains(&n.id) && n.id != home.id && takes(n))
            .min_by(|a, b| a.load().total_cmp(&b.load()))
        {
            return Ok(Placement {
                node: node.clone(),
                new_in_room: false,
            });
        }
        let others: Vec<SfuNodeRecord> = nodes
            .into_iter()
            .filter(|n| n.id != home.id && !span.contains(&n.id) && takes(n))
            .collect();
        let rooms = self.rooms_per_node().await?;
        let Some(chosen) = place(&others, &rooms) else {
            return Err(RouteError::NoNode);
        };
        let added: i64 = self
            .redis
            .query(
                redis::cmd("SADD")
                    .arg(keys::room_span(room))
                    .arg(chosen.id.as_str()),
            )
            .await
            .map_err(unavailable)?;
        tracing::info!(room = %room, home = %home.id, node = %chosen.id, "room spans another node (its node is full)");
        Ok(Placement {
            node: chosen.clone(),
            new_in_room: added == 1,
        })
    }

    async fn room_nodes(&self, room: &RoomId) -> Result<Vec<SfuNodeRecord>, RouteError> {
        let Some(home) = self.binding(room).await? else {
            return Ok(Vec::new());
        };
        let span = self.span(room).await?;
        let mut nodes = self.nodes().await?;
        nodes.retain(|n| n.id == home || span.contains(&n.id));
        nodes.sort_by_key(|n| n.id != home);
        Ok(nodes)
    }

    async fn bound_node(&self, room: &RoomId) -> Result<Option<NodeId>, RouteError> {
        self.binding(room).await
    }

    async fn unbind(&self, room: &RoomId, node: &NodeId) -> Result<(), RouteError> {
        let mut call = self.unbind.key(keys::room_node(room));
        call.key(keys::sfu_node_rooms(node))
            .key(keys::room_span(room))
            .arg(node.as_str())
            .arg(room.as_str());
        let mut conn = self.redis.conn();
        let _: i64 = self
            .redis
            .timed(call.invoke_async(&mut conn))
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn nodes(&self) -> Result<Vec<SfuNodeRecord>, RouteError> {
        let ids: Vec<String> = self
            .redis
            .query(redis::cmd("SMEMBERS").arg(keys::sfu_nodes()))
            .await
            .map_err(unavailable)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<NodeId> = ids
            .into_iter()
            .filter_map(|id| NodeId::parse(id).ok())
            .collect();
        let mut get = redis::cmd("MGET");
        for id in &ids {
            get.arg(keys::sfu_node(id));
        }
        let records: Vec<Option<String>> = self.redis.query(&get).await.map_err(unavailable)?;
        let mut live = Vec::new();
        for (id, record) in ids.iter().zip(records) {
            match record.map(|r| serde_json::from_str::<SfuNodeRecord>(&r)) {
                Some(Ok(node)) => live.push(node),
                Some(Err(e)) => {
                    tracing::warn!(node = %id, error = %e, "unreadable SFU node record; skipped");
                }
                None => {
                    // Its heartbeat expired: the node is gone. Prune it (and its room
                    // counter; the bindings themselves move when their rooms are next used).
                    let mut pipe = redis::pipe();
                    pipe.srem(keys::sfu_nodes(), id.as_str()).ignore();
                    let _ = self.redis.pipe::<()>(&pipe).await;
                }
            }
        }
        Ok(live)
    }

    async fn rooms_per_node(&self) -> Result<HashMap<NodeId, u64>, RouteError> {
        let nodes: Vec<String> = self
            .redis
            .query(redis::cmd("SMEMBERS").arg(keys::sfu_nodes()))
            .await
            .map_err(unavailable)?;
        let mut pipe = redis::pipe();
        let mut ids = Vec::new();
        for id in nodes {
            let Ok(node) = NodeId::parse(id) else {
                continue;
            };
            pipe.scard(keys::sfu_node_rooms(&node));
            ids.push(node);
        }
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let counts: Vec<u64> = self.redis.pipe(&pipe).await.map_err(unavailable)?;
        Ok(ids.into_iter().zip(counts).collect())
    }
}
