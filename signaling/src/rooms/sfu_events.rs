//! The SFU nodes' event streams, applied to the rooms: media connected, participant gone,
//! who is speaking. Every signaling node follows every live SFU node (each acts only on
//! its own sessions), discovering nodes through the router.
//!
//! Lifecycle events must never be lost: after every (re)subscription the follower asks
//! the node for its participants and diffs them against this node's presences there — a
//! presence connected at the SFU is confirmed, one the SFU no longer has is gone. (A
//! stream that lagged is ended by the SFU, so a gap always leads here.) Speaking levels
//! may be dropped. When a node is gone for good, its sessions are told to reconnect
//! their media, which moves to another node.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chorus_proto::fleet::SfuNodeRecord;
use chorus_proto::sfu::room_event::Kind;
use chorus_proto::sfu::{LeaveReason, RoomEvent};
use chorus_proto::signal::{LeftReason, SpeakerLevel};
use chorus_proto::{NodeId, ParticipantId, RoomId};
use futures_util::StreamExt;
use tokio::sync::{oneshot, watch};

use crate::rooms::service::RoomService;
use crate::sfu::Sfu;

/// How often the list of SFU nodes is read to find new ones.
const DISCOVERY_EVERY: Duration = Duration::from_secs(1);

/// The nodes followed, each with whether the last listing had its record (a follower
/// whose node's record expired stops waiting on its stream: a cut-off node's TCP stream
/// neither ends nor errors).
type Followed = Arc<Mutex<HashMap<NodeId, watch::Sender<bool>>>>;

/// Follow the events of every SFU node for as long as the process lives. `subscribed`
/// fires once the first subscription stands, so that no event of an early join is
/// missed (the embedded default waits for it).
pub fn spawn(rooms: Arc<RoomService>, subscribed: oneshot::Sender<()>) {
    tokio::spawn(async move {
        let followed: Followed = Arc::default();
        let mut subscribed = Some(subscribed);
        let mut tick = tokio::time::interval(DISCOVERY_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let nodes = match rooms.router().nodes().await {
                Ok(nodes) => nodes,
                Err(e) => {
                    tracing::debug!(error = %e, "cannot list SFU nodes");
                    continue;
                }
            };
            let mut map = followed.lock().unwrap_or_else(|p| p.into_inner());
            for (id, listed) in map.iter() {
                listed.send_replace(nodes.iter().any(|n| &n.id == id));
            }
            for node in nodes {
                if map.contains_key(&node.id) {
                    continue;
                }
                let (listed, watch) = watch::channel(true);
                map.insert(node.id.clone(), listed);
                tokio::spawn(follow(
                    rooms.clone(),
                    node,
                    watch,
                    followed.clone(),
                    subscribed.take(),
                ));
            }
        }
    });
}

/// Follow one SFU node until it is gone.
async fn follow(
    rooms: Arc<RoomService>,
    node: SfuNodeRecord,
    mut listed: watch::Receiver<bool>,
    followed: Followed,
    mut subscribed: Option<oneshot::Sender<()>>,
) {
    let id = node.id.clone();
    let mut node = node;
    loop {
        match rooms.sfu_client(&node) {
            Ok(sfu) => match sfu.events().await {
                Ok(mut stream) => {
                    if let Some(tx) = subscribed.take() {
                        let _ = tx.send(());
                    }
                    tracing::info!(sfu = %id, url = sfu.url(), "following SFU events");
                    resync(&rooms, &sfu, &id).await;
                    // A node cut off (its link down, not dead) leaves a TCP stream that
                    // neither ends nor errors: its record's expiry ends the follow.
                    loop {
                        tokio::select! {
                            next = stream.next() => match next {
                                Some(Ok(event)) => apply(&rooms, &id, event).await,
                                None => break,
                                Some(Err((_, message))) => {
                                    tracing::warn!(sfu = %id, %message, "SFU event stream ended");
                                    break;
                                }
                            },
                            () = unlisted(&mut listed) => {
                                tracing::warn!(sfu = %id, "SFU node's record expired; no longer following its events");
                                break;
                            }
                        }
                    }
                }
                Err((_, message)) => {
                    tracing::debug!(sfu = %id, %message, "cannot follow SFU events");
                }
            },
            Err((_, message)) => tracing::warn!(sfu = %id, %message, "no client for SFU node"),
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        // Still alive (a restart, a hiccup)? Follow again, at its current address.
        match rooms.router().nodes().await {
            Ok(nodes) => match nodes.into_iter().find(|n| n.id == id) {
                Some(current) => node = current,
                None => {
                    tracing::warn!(sfu = %id, "SFU node is gone");
                    followed
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&id);
                    rooms.sfu_node_lost(&id).await;
                    return;
                }
            },
            Err(e) => tracing::debug!(error = %e, "cannot check SFU nodes"),
        }
    }
}

/// Resolves once the node's record is missing from a listing (never, if the listings
/// stop: the follow then ends only with its stream).
async fn unlisted(listed: &mut watch::Receiver<bool>) {
    while *listed.borrow_and_update() {
        if listed.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Diff this node's presences on `sfu` against what the SFU has: confirm the connected,
/// clear the gone. Only presences admitted before the snapshot was asked for are judged
/// (a later admit may not be in it yet).
async fn resync(rooms: &RoomService, sfu: &Sfu, node: &NodeId) {
    let asked = Instant::now();
    let snapshot = match sfu.participants().await {
        Ok(list) => list,
        Err((_, message)) => {
            tracing::warn!(sfu = %node, %message, "cannot re-sync with SFU participants");
            return;
        }
    };
    let at_sfu: HashMap<(String, String), bool> = snapshot
        .into_iter()
        .map(|p| ((p.room_id, p.participant_id), p.connected))
        .collect();
    // Media no presence here knows: a session of the node before this one (restarted or
    // crashed), which may resume and adopt it.
    let mut unknown = Vec::new();
    for ((room, id), connected) in &at_sfu {
        if let (true, Ok(room), Ok(id)) = (
            *connected,
            RoomId::parse(room.as_str()),
            ParticipantId::parse(id.as_str()),
        ) && !rooms.registry.contains(&room, &id)
        {
            unknown.push((room, id));
        }
    }
    rooms.found_orphans(node, unknown).await;
    for (room, id, connected, admitted) in rooms.presences_on(node) {
        if admitted > asked {
            continue;
        }
        match at_sfu.get(&(room.to_string(), id.to_string())) {
            Some(true) if !connected => {
                tracing::info!(room = %room, participant = %id, "re-sync: connected while we were away");
                rooms.on_connected(&room, &id).await;
            }
            Some(_) => {}
            None => {
                tracing::info!(room = %room, participant = %id, "re-sync: gone from the SFU while we were away");
                rooms.on_left(&room, &id, LeftReason::ConnectionLost).await;
            }
        }
    }
}

/// Whether a lifecycle event of `sfu` concerns the participant's media as it is now: a
/// participant that moved to another node (its old node lost, then back) must not be
/// taken out by what the old node says of the connection it no longer uses.
fn from_its_node(rooms: &RoomService, room: &RoomId, id: &ParticipantId, sfu: &NodeId) -> bool {
    let current = rooms.registry.sfu_of(room, id);
    if current.as_ref() == Some(sfu) {
        return true;
    }
    if current.is_some() {
        tracing::info!(room = %room, participant = %id, sfu = %sfu, "event from a node the participant has left; ignored");
    }
    false
}

async fn apply(rooms: &RoomService, sfu: &NodeId, event: RoomEvent) {
    let Ok(room) = RoomId::parse(event.room_id) else {
        return;
    };
    match event.kind {
        Some(Kind::Connected(c)) => {
            if let Ok(p) = ParticipantId::parse(c.participant_id)
                && from_its_node(rooms, &room, &p, sfu)
            {
                rooms.on_connected(&room, &p).await;
            }
        }
        Some(Kind::Left(left)) => {
            let reason = match LeaveReason::try_from(left.reason) {
                Ok(LeaveReason::Removed) => LeftReason::Removed,
                Ok(LeaveReason::RoomClosed) => LeftReason::RoomClosed,
                _ => LeftReason::ConnectionLost,
            };
            if let Ok(p) = ParticipantId::parse(left.participant_id) {
                if from_its_node(rooms, &room, &p, sfu) {
                    match reason {
                        LeftReason::Removed => rooms.on_removed_elsewhere(&room, &p).await,
                        reason => rooms.on_left(&room, &p, reason).await,
                    }
                } else {
                    rooms.orphan_left(&room, &p).await;
                }
            }
        }
        Some(Kind::Speaking(speaking)) => {
            let levels = speaking
                .levels
                .into_iter()
                .filter_map(|l| {
                    let participant = ParticipantId::parse(l.participant_id).ok()?;
                    Some(SpeakerLevel {
                        participant,
                        level: l.level.clamp(0.0, 1.0),
                    })
                })
                .collect();
            rooms.registry.speaking(&room, sfu, levels);
        }
        None => {}
    }
}
