//! Membership of a fleet (`--redis`): the node writes its record — where its gRPC is,
//! its load, whether it drains — to Redis every second with a TTL, so signaling nodes
//! find it, place rooms on it by load, and stop using it within seconds of its death.
//! Key names and the record are shared with signaling in `chorus_proto::fleet`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chorus_proto::NodeId;
use chorus_proto::fleet::{self, SfuNodeRecord, keys, unix_ms};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::{mpsc, oneshot};

use crate::error::SfuError;
use crate::net::Command;

/// How this node joins a fleet.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// Redis URL (`redis://`, `rediss://`; a password in the URL works).
    pub redis_url: String,
    /// Where signaling reaches this node's gRPC (`http://host:port`). `None`: the gRPC
    /// listen address, which must then not be a wildcard.
    pub advertise_grpc: Option<String>,
    /// A region label for placement.
    pub region: Option<String>,
    /// Start drained: take no new rooms.
    pub drain: bool,
}

/// The running registration: drain it, or stop it (the record is deleted at once so
/// that no new room is placed on a node that is going away).
pub(crate) struct Registration {
    draining: Arc<AtomicBool>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Registration {
    pub fn drain(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), &mut self.task).await;
    }
}

/// Connect to Redis and start refreshing this node's record.
pub(crate) async fn register(
    config: &FleetConfig,
    node: NodeId,
    grpc_url: String,
    media: Vec<String>,
    max_participants: u32,
    commands: mpsc::Sender<Command>,
) -> Result<Registration, SfuError> {
    let unreachable =
        |e: redis::RedisError| SfuError::Config(format!("Redis cannot be reached: {e}"));
    let client = redis::Client::open(config.redis_url.as_str()).map_err(unreachable)?;
    let manager = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(2)))
        .set_max_delay(Duration::from_secs(2));
    let conn = ConnectionManager::new_with_config(client, manager)
        .await
        .map_err(unreachable)?;
    let draining = Arc::new(AtomicBool::new(config.drain));
    let (stop, stopped) = oneshot::channel();
    let record = SfuNodeRecord {
        id: node,
        grpc_url,
        media,
        region: config.region.clone(),
        rooms: 0,
        participants: 0,
        max_participants,
        forwarded_per_sec: 0.0,
        cpu_cores: 0.0,
        draining: config.drain,
        updated_ms: unix_ms(),
    };
    let task = tokio::spawn(heartbeat(conn, record, commands, draining.clone(), stopped));
    Ok(Registration {
        draining,
        stop: Some(stop),
        task,
    })
}

async fn heartbeat(
    mut conn: ConnectionManager,
    mut record: SfuNodeRecord,
    commands: mpsc::Sender<Command>,
    draining: Arc<AtomicBool>,
    mut stopped: oneshot::Receiver<()>,
) {
    let key = keys::sfu_node(&record.id);
    let mut tick = tokio::time::interval(Duration::from_millis(fleet::HEARTBEAT_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last: Option<(Instant, u64, f64)> = None;
    let mut failing = false;
    // When the record was last written: older than its TTL, it has expired, and the
    // fleet may have moved this node's rooms elsewhere meanwhile.
    let mut written = Instant::now();
    let ttl = Duration::from_millis(fleet::NODE_TTL_MS);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = &mut stopped => break,
        }
        if written.elapsed() >= ttl {
            match step_back(&mut conn, &record.id, &commands).await {
                Ok(0) => {
                    tracing::info!(node = %record.id, "back in the fleet; every room here is still bound here")
                }
                Ok(closed) => {
                    tracing::warn!(node = %record.id, closed, "back after the fleet lost sight of this node; rooms now served elsewhere were closed here");
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(node = %record.id, error = %e, "fleet unreachable; retrying");
                        failing = true;
                    }
                    continue; // not back yet: nothing is registered before that check
                }
            }
        }
        let (reply, stats) = oneshot::channel();
        if commands.send(Command::Stats { reply }).await.is_err() {
            break; // the media loop stopped
        }
        let Ok(stats) = stats.await else { break };
        let now = Instant::now();
        let cpu = crate::prometheus::cpu_seconds().unwrap_or(0.0);
        let forwarded = stats.metrics.packets_forwarded;
        if let Some((at, before, cpu_before)) = last {
            let secs = now.duration_since(at).as_secs_f64().max(1e-3);
            record.forwarded_per_sec = forwarded.saturating_sub(before) as f64 / secs;
            record.cpu_cores = ((cpu - cpu_before) / secs).max(0.0);
        }
        last = Some((now, forwarded, cpu));
        record.rooms = u32::try_from(stats.rooms).unwrap_or(u32::MAX);
        record.participants = u32::try_from(stats.participants).unwrap_or(u32::MAX);
        record.draining = draining.load(Ordering::Relaxed);
        record.updated_ms = unix_ms();
        let Ok(json) = serde_json::to_string(&record) else {
            continue;
        };
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(&key)
            .arg(json)
            .arg("PX")
            .arg(fleet::NODE_TTL_MS)
            .ignore()
            .sadd(keys::sfu_nodes(), record.id.as_str())
            .ignore();
        match pipe.query_async::<()>(&mut conn).await {
            Ok(()) if failing => {
                tracing::info!(node = %record.id, "fleet heartbeat restored");
                failing = false;
                written = Instant::now();
            }
            Ok(()) => written = Instant::now(),
            Err(e) if !failing => {
                tracing::warn!(node = %record.id, error = %e, "fleet heartbeat failed; retrying");
                failing = true;
            }
            Err(_) => {}
        }
    }
    // Leaving: no new room may be placed here from now on.
    let mut pipe = redis::pipe();
    pipe.del(&key)
        .ignore()
        .srem(keys::sfu_nodes(), record.id.as_str())
        .ignore();
    let _ = pipe.query_async::<()>(&mut conn).await;
    tracing::info!(node = %record.id, "left the fleet");
}

/// A node whose record expired (cut off from Redis, not dead) steps back before it
/// registers again: each room it still holds is looked up, and a room now bound to
/// another node (or closed) without this node in its span is closed here, so that the
/// node neither serves stale participants nor counts them as load. Bindings are never
/// written here: the fleet's placement decided, and this node abides by it. Answers
/// how many rooms were closed.
async fn step_back(
    conn: &mut ConnectionManager,
    node: &NodeId,
    commands: &mpsc::Sender<Command>,
) -> Result<usize, redis::RedisError> {
    // Reachable at all? (Nothing is closed on a guess.)
    redis::cmd("PING").query_async::<()>(conn).await?;
    let (reply, participants) = oneshot::channel();
    if commands
        .send(Command::Participants { reply })
        .await
        .is_err()
    {
        return Ok(0);
    }
    let mut rooms: Vec<chorus_proto::RoomId> = participants
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|p| p.room)
        .collect();
    rooms.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
    rooms.dedup();
    let mut closed = 0;
    for room in rooms {
        let mut pipe = redis::pipe();
        pipe.get(keys::room_node(&room))
            .sismember(keys::room_span(&room), node.as_str());
        let (bound, spanned): (Option<String>, bool) = pipe.query_async(conn).await?;
        if bound.as_deref() == Some(node.as_str()) || spanned {
            continue;
        }
        tracing::warn!(room = %room, node = %node, now_on = bound.as_deref().unwrap_or("no node"), "room moved while this node was cut off; closing it here");
        let (reply, done) = oneshot::channel();
        if commands
            .send(Command::CloseRoom { room, reply })
            .await
            .is_ok()
        {
            let _ = done.await;
            closed += 1;
        }
    }
    Ok(closed)
}
