//! The fleet's people on Redis (keys in `chorus_proto::fleet::keys`):
//! - `user-devices:{user}` (HASH device → [`DeviceRecord`]) and `node-devices:{node}`
//!   (SET, what this node wrote, cleared when it starts again under the same id);
//! - `user-call:{user}` (STRING `ringing:<call>` or `answered:<call>`, `SET NX`, TTL
//!   refreshed by the call's node);
//! - `people-events:{node}` (PUB/SUB, frames for one node) and `people-presence`
//!   (PUB/SUB, presence for every node).
//!
//! Frames are published by one task in the order they were sent, so that a call's offer
//! reaches the other side before its candidates. Pub/sub is at-most-once: a frame sent
//! while the receiving node's subscription is down is lost (the clients' own timers end
//! a call that stops hearing from the other side).

use std::collections::HashMap;

use chorus_proto::fleet::keys;
use chorus_proto::people::Presence;
use chorus_proto::{CallId, NodeId, UserId};
use futures_util::StreamExt;
use redis::Script;
use tokio::sync::mpsc;

use super::{CALL_CLAIM_TTL_MS, DeviceRecord, PeopleEnvelope, PeopleEvent, PeopleFleet};
use crate::people::directory::DeviceId;
use crate::redis_client::Redis;
use crate::rooms::bus::BusError;

fn unavailable(e: ::redis::RedisError) -> BusError {
    BusError(e.to_string())
}

/// The people of a fleet node.
pub struct RedisFleet {
    node: NodeId,
    redis: Redis,
    /// (channel, payload) to publish, in order.
    outgoing: mpsc::UnboundedSender<(String, String)>,
    /// `answered:<call>` if the claim is still `ringing:<call>`.
    answered: Script,
    /// Delete the claim if it is still for the call.
    release: Script,
    /// Extend the claim if it is still for the call.
    refresh: Script,
}

impl RedisFleet {
    /// Join the fleet's people as `node`: clear what an earlier run under this id left,
    /// then follow the frames for this node (handed to `inbound`) until the process ends.
    pub async fn start(
        redis: Redis,
        node: NodeId,
        inbound: mpsc::UnboundedSender<PeopleEnvelope>,
    ) -> Self {
        clear_earlier_run(&redis, &node).await;
        let (outgoing, queue) = mpsc::unbounded_channel();
        tokio::spawn(publish_in_order(redis.clone(), queue));
        tokio::spawn(subscribe(redis.clone(), node.clone(), inbound));
        let same_call = "local v = redis.call('GET', KEYS[1]) \
             if v == 'ringing:' .. ARGV[1] or v == 'answered:' .. ARGV[1] then";
        Self {
            node,
            redis,
            outgoing,
            answered: Script::new(
                "if redis.call('GET', KEYS[1]) == 'ringing:' .. ARGV[1] then \
                 return redis.call('SET', KEYS[1], 'answered:' .. ARGV[1], 'PX', ARGV[2]) end \
                 return 0",
            ),
            release: Script::new(&format!(
                "{same_call} return redis.call('DEL', KEYS[1]) end return 0"
            )),
            refresh: Script::new(&format!(
                "{same_call} return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0"
            )),
        }
    }

    fn queue(&self, channel: String, envelope: &PeopleEnvelope) {
        match serde_json::to_string(envelope) {
            Ok(json) => {
                let _ = self.outgoing.send((channel, json));
            }
            Err(e) => tracing::warn!(error = %e, "a people frame could not be written; dropped"),
        }
    }

    async fn run_script(
        &self,
        script: &Script,
        key: String,
        args: &[&str],
    ) -> Result<(), BusError> {
        let mut invocation = script.key(key);
        for arg in args {
            invocation.arg(*arg);
        }
        let mut conn = self.redis.conn();
        self.redis
            .timed(invocation.invoke_async::<::redis::Value>(&mut conn))
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

/// The devices this node recorded in an earlier run (it crashed, or was cut off and
/// restarted under the same id) are gone: take them out.
async fn clear_earlier_run(redis: &Redis, node: &NodeId) {
    let left: Result<Vec<String>, _> = redis
        .query(::redis::cmd("SMEMBERS").arg(keys::node_devices(node)))
        .await;
    let Ok(left) = left else {
        return;
    };
    let mut pipe = ::redis::pipe();
    for entry in &left {
        if let Some((user, device)) = entry.split_once(' ')
            && let Ok(user) = UserId::parse(user)
        {
            pipe.hdel(keys::user_devices(&user), device).ignore();
        }
    }
    pipe.del(keys::node_devices(node)).ignore();
    if let Err(e) = redis.pipe::<()>(&pipe).await {
        tracing::warn!(error = %e, "could not clear the devices of this node's earlier run");
    }
}

async fn publish_in_order(redis: Redis, mut queue: mpsc::UnboundedReceiver<(String, String)>) {
    while let Some((channel, payload)) = queue.recv().await {
        let published: Result<i64, _> = redis
            .query(::redis::cmd("PUBLISH").arg(&channel).arg(&payload))
            .await;
        if let Err(e) = published {
            tracing::warn!(%channel, error = %e, "a people frame to another node was lost");
        }
    }
}

async fn subscribe(redis: Redis, node: NodeId, inbound: mpsc::UnboundedSender<PeopleEnvelope>) {
    let channels = [keys::people_channel(&node), keys::presence_channel()];
    let mut delay = std::time::Duration::from_millis(100);
    loop {
        let subscribed = match redis.pubsub().await {
            Ok(mut pubsub) => match pubsub.subscribe(&channels).await {
                Ok(()) => Some(pubsub),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot subscribe to people events");
                    None
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "cannot connect for people events");
                None
            }
        };
        if let Some(pubsub) = subscribed {
            delay = std::time::Duration::from_millis(100);
            let mut messages = pubsub.into_on_message();
            while let Some(message) = messages.next().await {
                let envelope: PeopleEnvelope =
                    match serde_json::from_slice(message.get_payload_bytes()) {
                        Ok(envelope) => envelope,
                        Err(e) => {
                            tracing::warn!(error = %e, "unreadable people event; dropped");
                            continue;
                        }
                    };
                if envelope.origin == node && matches!(envelope.event, PeopleEvent::Presence { .. })
                {
                    continue; // told here when announced
                }
                if inbound.send(envelope).is_err() {
                    return; // the node is stopping
                }
            }
            tracing::warn!("people event subscription ended; reconnecting");
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(std::time::Duration::from_secs(2));
    }
}

#[async_trait::async_trait]
impl PeopleFleet for RedisFleet {
    fn is_shared(&self) -> bool {
        true
    }

    async fn device_up(
        &self,
        user: &UserId,
        device: DeviceId,
        takes_calls: bool,
    ) -> Result<(), BusError> {
        let record = DeviceRecord {
            node: self.node.clone(),
            takes_calls,
        };
        let json = serde_json::to_string(&record).map_err(|e| BusError(e.to_string()))?;
        let mut pipe = ::redis::pipe();
        pipe.hset(keys::user_devices(user), device.to_string(), json)
            .ignore()
            .sadd(keys::node_devices(&self.node), format!("{user} {device}"))
            .ignore();
        self.redis.pipe::<()>(&pipe).await.map_err(unavailable)
    }

    async fn device_down(&self, user: &UserId, device: DeviceId) -> Result<(), BusError> {
        let mut pipe = ::redis::pipe();
        pipe.hdel(keys::user_devices(user), device.to_string())
            .ignore()
            .srem(keys::node_devices(&self.node), format!("{user} {device}"))
            .ignore();
        self.redis.pipe::<()>(&pipe).await.map_err(unavailable)
    }

    async fn devices_elsewhere(
        &self,
        user: &UserId,
    ) -> Result<Vec<(DeviceId, DeviceRecord)>, BusError> {
        let all: HashMap<String, String> = self
            .redis
            .query(::redis::cmd("HGETALL").arg(keys::user_devices(user)))
            .await
            .map_err(unavailable)?;
        let mut found = Vec::new();
        let mut alive: HashMap<NodeId, bool> = HashMap::new();
        let mut stale = Vec::new();
        for (device, json) in all {
            let (Ok(id), Ok(record)) = (
                device.parse::<DeviceId>(),
                serde_json::from_str::<DeviceRecord>(&json),
            ) else {
                stale.push(device);
                continue;
            };
            if record.node == self.node {
                continue;
            }
            let live = match alive.get(&record.node) {
                Some(live) => *live,
                None => {
                    let live: bool = self
                        .redis
                        .query(::redis::cmd("EXISTS").arg(keys::signaling_node(&record.node)))
                        .await
                        .map_err(unavailable)?;
                    alive.insert(record.node.clone(), live);
                    live
                }
            };
            if live {
                found.push((id, record));
            } else {
                stale.push(device);
            }
        }
        if !stale.is_empty() {
            // Devices of dead nodes, or unreadable: whoever sees them takes them out.
            let _ = self
                .redis
                .query::<i64>(
                    ::redis::cmd("HDEL")
                        .arg(keys::user_devices(user))
                        .arg(&stale),
                )
                .await;
        }
        found.sort_by_key(|(id, _)| *id);
        Ok(found)
    }

    async fn claim_call(&self, user: &UserId, call: &CallId) -> Result<bool, BusError> {
        let set: Option<String> = self
            .redis
            .query(
                ::redis::cmd("SET")
                    .arg(keys::user_call(user))
                    .arg(format!("ringing:{call}"))
                    .arg("NX")
                    .arg("PX")
                    .arg(CALL_CLAIM_TTL_MS),
            )
            .await
            .map_err(unavailable)?;
        Ok(set.is_some())
    }

    async fn call_answered(&self, user: &UserId, call: &CallId) -> Result<(), BusError> {
        let ttl = CALL_CLAIM_TTL_MS.to_string();
        self.run_script(
            &self.answered,
            keys::user_call(user),
            &[call.as_str(), &ttl],
        )
        .await
    }

    async fn release_call(&self, user: &UserId, call: &CallId) -> Result<(), BusError> {
        self.run_script(&self.release, keys::user_call(user), &[call.as_str()])
            .await
    }

    async fn in_answered_call(&self, user: &UserId) -> Result<bool, BusError> {
        let value: Option<String> = self
            .redis
            .query(::redis::cmd("GET").arg(keys::user_call(user)))
            .await
            .map_err(unavailable)?;
        Ok(value.is_some_and(|v| v.starts_with("answered:")))
    }

    async fn refresh_calls(&self, claims: &[(UserId, CallId)]) -> Result<(), BusError> {
        let ttl = CALL_CLAIM_TTL_MS.to_string();
        for (user, call) in claims {
            self.run_script(&self.refresh, keys::user_call(user), &[call.as_str(), &ttl])
                .await?;
        }
        Ok(())
    }

    fn send(&self, node: &NodeId, event: PeopleEvent) {
        let envelope = PeopleEnvelope {
            origin: self.node.clone(),
            event,
        };
        self.queue(keys::people_channel(node), &envelope);
    }

    fn announce_presence(&self, user: &UserId, presence: Presence) {
        let envelope = PeopleEnvelope {
            origin: self.node.clone(),
            event: PeopleEvent::Presence {
                user: user.clone(),
                presence,
            },
        };
        self.queue(keys::presence_channel(), &envelope);
    }
}
