//! The fleet's room bus on Redis.
//!
//! - Events: `PUBLISH chorus:room-events:{room}`; every node pattern-subscribes to all
//!   rooms and hands on what concerns its own sessions (a node without sessions in a
//!   room drops its events at once). One subscription per node keeps reconnection
//!   trivial; per-room subscriptions are the refinement for very large fleets.
//! - Presences: a hash per room (`chorus:presences:{room}`), plus a set per node of the
//!   presences it holds, so that the presences of a node that died are found at once.
//! - Liveness: each node refreshes `chorus:signaling:{node}` with a TTL; a node whose key
//!   expired is dead, and its presences are claimed (HDEL decides who) and cleared by
//!   whichever live node sweeps first.
//!
//! Pub/sub is at-most-once: events published while a node's subscription is down are
//! lost to it. When it comes back, the node is told ([`Inbound::Resubscribed`]) so that
//! it re-reads what it shows its sessions.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chorus_proto::fleet::{self, PresenceRecord, SignalingNodeRecord, keys, unix_ms};
use chorus_proto::{NodeId, ParticipantId, RoomId};
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::{BusError, Envelope, Orphan, RoomBus};
use crate::redis_client::Redis;

/// What the bus hands to the node's rooms.
#[derive(Debug)]
pub enum Inbound {
    /// An event from another node.
    Event(Envelope),
    /// The subscription came back after a gap: events may have been missed.
    Resubscribed,
    /// This node's heartbeat is back after its record expired (it was cut off from
    /// Redis): other nodes may have cleared its presences meanwhile.
    Returned,
}

/// What the heartbeat knows of this node's own standing, for the sweep.
#[derive(Default)]
struct Standing {
    /// The last heartbeat failed: this node's view of the others is not to be trusted.
    failing: AtomicBool,
    /// No sweeping before this (Unix ms): after its own outage, a node gives the others
    /// a TTL to refresh their heartbeats (they may have been cut off just as long: a
    /// Redis restart) before it takes an expired key for a dead node.
    hold_sweep_until_ms: AtomicU64,
}

impl Standing {
    fn may_sweep(&self) -> bool {
        !self.failing.load(Ordering::Relaxed)
            && unix_ms() >= self.hold_sweep_until_ms.load(Ordering::Relaxed)
    }
}

/// The room bus of a fleet node.
pub struct RedisBus {
    node: NodeId,
    redis: Redis,
    standing: Arc<Standing>,
}

fn unavailable(e: redis::RedisError) -> BusError {
    BusError(e.to_string())
}

impl RedisBus {
    /// Join the fleet as `node`: start the heartbeat and the subscription, whose events
    /// arrive on `inbound`. Both run until the process ends.
    pub fn start(
        redis: Redis,
        node: NodeId,
        url: Option<String>,
        inbound: mpsc::UnboundedSender<Inbound>,
    ) -> Self {
        let standing = Arc::new(Standing::default());
        tokio::spawn(heartbeat(
            redis.clone(),
            node.clone(),
            url,
            standing.clone(),
            inbound.clone(),
        ));
        tokio::spawn(subscribe(redis.clone(), node.clone(), inbound));
        Self {
            node,
            redis,
            standing,
        }
    }
}

/// Refresh this node's record every [`fleet::HEARTBEAT_MS`]. After an outage longer than
/// the record's TTL, the rooms are told ([`Inbound::Returned`]) one beat later (so that a
/// sweep another node had begun is finished), and sweeping waits a TTL.
async fn heartbeat(
    redis: Redis,
    node: NodeId,
    url: Option<String>,
    standing: Arc<Standing>,
    inbound: mpsc::UnboundedSender<Inbound>,
) {
    let beat = Duration::from_millis(fleet::HEARTBEAT_MS);
    let ttl = Duration::from_millis(fleet::NODE_TTL_MS);
    let mut tick = tokio::time::interval(beat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    let mut written: Option<Instant> = None;
    let mut returned_at: Option<Instant> = None;
    loop {
        tick.tick().await;
        if returned_at.is_some_and(|at| at.elapsed() >= beat) {
            returned_at = None;
            if inbound.send(Inbound::Returned).is_err() {
                return;
            }
        }
        let record = SignalingNodeRecord {
            id: node.clone(),
            url: url.clone(),
            updated_ms: unix_ms(),
        };
        let Ok(json) = serde_json::to_string(&record) else {
            continue;
        };
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(keys::signaling_node(&node))
            .arg(json)
            .arg("PX")
            .arg(fleet::NODE_TTL_MS)
            .ignore()
            .sadd(keys::signaling_nodes(), node.as_str())
            .ignore();
        match redis.pipe::<()>(&pipe).await {
            Ok(()) => {
                let lapsed = written.is_some_and(|at| at.elapsed() >= ttl);
                if lapsed {
                    tracing::warn!(node = %node, "heartbeat back after this node's record expired; checking which sessions the fleet cleared");
                    standing
                        .hold_sweep_until_ms
                        .store(unix_ms() + fleet::NODE_TTL_MS, Ordering::Relaxed);
                    returned_at = Some(Instant::now());
                } else if failing {
                    tracing::info!(node = %node, "heartbeat restored");
                }
                failing = false;
                standing.failing.store(false, Ordering::Relaxed);
                written = Some(Instant::now());
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(node = %node, error = %e, "heartbeat failed; retrying");
                }
                failing = true;
                standing.failing.store(true, Ordering::Relaxed);
            }
        }
    }
}

/// Follow every room's events, reconnecting with back-off.
async fn subscribe(redis: Redis, node: NodeId, inbound: mpsc::UnboundedSender<Inbound>) {
    let pattern = keys::room_channel_pattern();
    let mut delay = Duration::from_millis(100);
    let mut first = true;
    loop {
        let pubsub = match redis.pubsub().await {
            Ok(mut pubsub) => match pubsub.psubscribe(&pattern).await {
                Ok(()) => Some(pubsub),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot subscribe to room events");
                    None
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "cannot connect for room events");
                None
            }
        };
        if let Some(pubsub) = pubsub {
            delay = Duration::from_millis(100);
            if !first && inbound.send(Inbound::Resubscribed).is_err() {
                return;
            }
            first = false;
            let mut messages = pubsub.into_on_message();
            while let Some(message) = messages.next().await {
                let envelope = match serde_json::from_slice::<Envelope>(message.get_payload_bytes())
                {
                    Ok(envelope) => envelope,
                    Err(e) => {
                        tracing::warn!(channel = message.get_channel_name(), error = %e, "unreadable room event; dropped");
                        continue;
                    }
                };
                if envelope.origin == node {
                    continue; // applied when published
                }
                if inbound.send(Inbound::Event(envelope)).is_err() {
                    return; // the rooms are gone: the node is stopping
                }
            }
            tracing::warn!("room event subscription ended; reconnecting");
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

#[async_trait::async_trait]
impl RoomBus for RedisBus {
    fn node(&self) -> &NodeId {
        &self.node
    }

    fn is_shared(&self) -> bool {
        true
    }

    async fn publish(&self, envelope: &Envelope) -> Result<(), BusError> {
        let json = serde_json::to_string(envelope).map_err(|e| BusError(e.to_string()))?;
        self.redis
            .query::<i64>(
                redis::cmd("PUBLISH")
                    .arg(keys::room_channel(&envelope.room))
                    .arg(json),
            )
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    async fn put_presence(
        &self,
        room: &RoomId,
        participant: &ParticipantId,
        record: &PresenceRecord,
    ) -> Result<(), BusError> {
        let json = serde_json::to_string(record).map_err(|e| BusError(e.to_string()))?;
        let mut pipe = redis::pipe();
        pipe.atomic()
            .hset(keys::presences(room), participant.as_str(), json)
            .ignore()
            .sadd(
                keys::node_presences(&self.node),
                keys::presence_member(room, participant),
            )
            .ignore();
        self.redis.pipe::<()>(&pipe).await.map_err(unavailable)
    }

    async fn remove_presence(
        &self,
        room: &RoomId,
        participant: &ParticipantId,
    ) -> Result<bool, BusError> {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .hdel(keys::presences(room), participant.as_str())
            .srem(
                keys::node_presences(&self.node),
                keys::presence_member(room, participant),
            )
            .ignore();
        let (removed,): (i64,) = self.redis.pipe(&pipe).await.map_err(unavailable)?;
        Ok(removed == 1)
    }

    async fn presences(
        &self,
        room: &RoomId,
    ) -> Result<Vec<(ParticipantId, PresenceRecord)>, BusError> {
        let all: Vec<(String, String)> = self
            .redis
            .query(redis::cmd("HGETALL").arg(keys::presences(room)))
            .await
            .map_err(unavailable)?;
        Ok(all
            .into_iter()
            .filter_map(|(id, json)| {
                let id = ParticipantId::parse(id).ok()?;
                let record = serde_json::from_str::<PresenceRecord>(&json).ok()?;
                Some((id, record))
            })
            .collect())
    }

    async fn take_over(
        &self,
        room: &RoomId,
        participant: &ParticipantId,
    ) -> Result<Option<PresenceRecord>, BusError> {
        let json: Option<String> = self
            .redis
            .query(
                redis::cmd("HGET")
                    .arg(keys::presences(room))
                    .arg(participant.as_str()),
            )
            .await
            .map_err(unavailable)?;
        let Some(record) = json.and_then(|j| serde_json::from_str::<PresenceRecord>(&j).ok())
        else {
            return Ok(None);
        };
        if record.node == self.node {
            return Ok(None);
        }
        let alive: bool = self
            .redis
            .query(redis::cmd("EXISTS").arg(keys::signaling_node(&record.node)))
            .await
            .map_err(unavailable)?;
        if alive {
            return Ok(None);
        }
        let mut pipe = redis::pipe();
        pipe.atomic()
            .hdel(keys::presences(room), participant.as_str())
            .srem(
                keys::node_presences(&record.node),
                keys::presence_member(room, participant),
            )
            .ignore();
        // HDEL's answer decides who has it, as in the sweep: one taker, once.
        let (removed,): (i64,) = self.redis.pipe(&pipe).await.map_err(unavailable)?;
        Ok((removed == 1).then_some(record))
    }

    async fn claim_orphans(&self) -> Result<Vec<Orphan>, BusError> {
        if !self.standing.may_sweep() {
            return Ok(Vec::new());
        }
        let nodes: Vec<String> = self
            .redis
            .query(redis::cmd("SMEMBERS").arg(keys::signaling_nodes()))
            .await
            .map_err(unavailable)?;
        let mut orphans = Vec::new();
        for node in nodes.into_iter().filter_map(|n| NodeId::parse(n).ok()) {
            if node == self.node {
                continue;
            }
            let alive: bool = self
                .redis
                .query(redis::cmd("EXISTS").arg(keys::signaling_node(&node)))
                .await
                .map_err(unavailable)?;
            if alive {
                continue;
            }
            let members: Vec<String> = self
                .redis
                .query(redis::cmd("SMEMBERS").arg(keys::node_presences(&node)))
                .await
                .map_err(unavailable)?;
            for member in members {
                let Some((room, participant)) = member.split_once('/') else {
                    continue;
                };
                let (Ok(room), Ok(participant)) =
                    (RoomId::parse(room), ParticipantId::parse(participant))
                else {
                    continue;
                };
                let mut pipe = redis::pipe();
                pipe.atomic()
                    .hget(keys::presences(&room), participant.as_str())
                    .hdel(keys::presences(&room), participant.as_str())
                    .srem(keys::node_presences(&node), &member)
                    .ignore();
                let (json, removed): (Option<String>, i64) =
                    self.redis.pipe(&pipe).await.map_err(unavailable)?;
                // HDEL's answer decides who cleans up: one node, once.
                if removed != 1 {
                    continue;
                }
                let Some(record) = json.and_then(|j| serde_json::from_str(&j).ok()) else {
                    continue;
                };
                orphans.push(Orphan {
                    room,
                    participant,
                    record,
                });
            }
            let mut pipe = redis::pipe();
            pipe.srem(keys::signaling_nodes(), node.as_str()).ignore();
            let _ = self.redis.pipe::<()>(&pipe).await;
            tracing::info!(node = %node, "a signaling node is gone; its presences were cleared");
        }
        Ok(orphans)
    }
}
