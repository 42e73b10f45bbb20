//! Many nodes on one Redis, as real processes on loopback: 2 × `chorus-sfu` and
//! 2 × `chorus-signaling` on a `redis-server` of the test's own. Decoding `webrtc` peers
//! check who hears whom; the server API (signed with one key for the whole fleet) checks
//! what is stored.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod fleet_support;
mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chorus_bench::webrtc_peer::WebrtcPeer;
use chorus_proto::signal::{ClientMessage, LeftReason};
use fleet_support::Fleet;
use serde_json::json;
use support::{Api, close_all, hears, join_connected, peer_config, wait_info};

const STEP: Duration = Duration::from_secs(20);

fn fail(fleet: &Fleet, message: String) -> ! {
    panic!("{message}\n--- logs (tails) ---\n{}", fleet.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_on_two_signaling_nodes_share_a_room_and_hear_each_other() {
    let fleet = Fleet::start(2, 2);
    let mut peers = Vec::new();
    let outcome = share_a_room(&fleet, &mut peers).await;
    close_all(&mut peers).await;
    if let Err(message) = outcome {
        fail(&fleet, message);
    }
}

async fn share_a_room(fleet: &Fleet, peers: &mut Vec<WebrtcPeer>) -> Result<(), String> {
    let (a, b) = (&fleet.nodes[0], &fleet.nodes[1]);
    let api_a = Api::new(&a.url, a.api_key());
    let api_b = Api::new(&b.url, a.api_key());
    let created = api_a
        .create_room(
            json!({"name": "Across", "owner_name": "Host", "capacity": 10,
                            "seats": 3, "seat_mode": "moderated"}),
        )
        .await;
    let room = created.room.id.clone();
    // The owner speaks through node A; Lea (a listener at first) is on node B.
    peers.push(
        join_connected(
            peer_config(
                &a.ws_url,
                &room,
                "Host",
                Some(330.0),
                Some(&created.owner_token),
            ),
            STEP,
        )
        .await?,
    );
    peers.push(
        join_connected(
            peer_config(&b.ws_url, &room, "Lea", Some(440.0), None),
            STEP,
        )
        .await?,
    );
    let (host, lea) = (peers[0].id().clone(), peers[1].id().clone());
    // Each sees the other, although their sessions are on different nodes.
    wait_info(
        &peers[0],
        &lea,
        "Host (node A) sees Lea (node B)",
        STEP,
        |p| p.connected,
    )
    .await?;
    wait_info(
        &peers[1],
        &host,
        "Lea (node B) sees Host (node A)",
        STEP,
        |p| p.connected,
    )
    .await?;
    hears(&peers[1], 330.0, 10, STEP)
        .await
        .map_err(|e| format!("Lea on node B hears the owner on node A: {e}"))?;
    // Both nodes list the same members (one store).
    let members_b = api_b
        .wait_members(&room, "owner + Lea", STEP, |m| m.len() == 2)
        .await?;
    // Seated over node B's API while her session is on node B and the owner's on A.
    let lea_user = peers[1].user().to_string();
    let (status, body) = api_a
        .call(
            "PATCH",
            &format!("/api/v1/rooms/{room}/members/{lea_user}"),
            Some(json!({"seated": true})),
        )
        .await;
    if status != 200 {
        return Err(format!(
            "PATCH seated via node A: {status} {body}; members {members_b:?}"
        ));
    }
    wait_info(&peers[0], &lea, "Host sees Lea seated", STEP, |p| p.speaker).await?;
    hears(&peers[0], 440.0, 5, Duration::from_secs(5))
        .await
        .map_err(|e| format!("Host on node A hears Lea, seated, on node B: {e}"))?;
    // The room's media is on one SFU node, named in the API of both signaling nodes.
    let (_, view_a) = api_a.room(&room).await;
    let (_, view_b) = api_b.room(&room).await;
    if view_a["node"].is_null() || view_a["node"] != view_b["node"] {
        return Err(format!(
            "the room's node: A says {}, B says {}",
            view_a["node"], view_b["node"]
        ));
    }
    // Leaving on node B is seen on node A.
    peers[1]
        .leave()
        .await
        .map_err(|e| format!("Lea leaves: {e}"))?;
    peers[0]
        .wait_for_departure(&lea, STEP)
        .await
        .map_err(|e| format!("Host (node A) sees Lea (node B) leave: {e}"))?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_are_spread_over_both_sfu_nodes() {
    let fleet = Fleet::start(2, 2);
    let mut peers = Vec::new();
    let outcome = spread(&fleet, &mut peers).await;
    close_all(&mut peers).await;
    if let Err(message) = outcome {
        fail(&fleet, message);
    }
}

async fn spread(fleet: &Fleet, peers: &mut Vec<WebrtcPeer>) -> Result<(), String> {
    let api = Api::new(&fleet.nodes[0].url, fleet.nodes[0].api_key());
    let mut rooms = Vec::new();
    for i in 0..10 {
        let created = api
            .create_room(json!({"name": format!("Room {i}"), "owner_name": "Host"}))
            .await;
        rooms.push(created.room.id.clone());
    }
    // One listener in each, joining through alternate signaling nodes.
    for (i, room) in rooms.iter().enumerate() {
        let node = &fleet.nodes[i % 2];
        peers.push(
            join_connected(
                peer_config(&node.ws_url, room, &format!("L{i}"), None, None),
                STEP,
            )
            .await?,
        );
    }
    let mut per_node: HashMap<String, usize> = HashMap::new();
    for room in &rooms {
        let (_, view) = api.room(room).await;
        let node = view["node"].as_str().unwrap_or("none").to_owned();
        *per_node.entry(node).or_default() += 1;
    }
    let counts: Vec<usize> = fleet
        .sfus
        .iter()
        .map(|s| per_node.get(&s.id).copied().unwrap_or(0))
        .collect();
    eprintln!("rooms per SFU node: {per_node:?}");
    // Placed one after another, by load: spread over both (a heartbeat arriving between
    // two placements may tip one room either way, so within one of an even split).
    if counts.iter().sum::<usize>() != 10 || counts.iter().any(|&n| !(4..=6).contains(&n)) {
        return Err(format!(
            "10 rooms placed as {per_node:?}, not spread over both nodes"
        ));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_is_exact_with_joins_split_over_two_nodes() {
    let fleet = Fleet::start(1, 2);
    let mut peers = Vec::new();
    let outcome = capacity(&fleet, &mut peers).await;
    close_all(&mut peers).await;
    if let Err(message) = outcome {
        fail(&fleet, message);
    }
}

async fn capacity(fleet: &Fleet, peers: &mut Vec<WebrtcPeer>) -> Result<(), String> {
    let api = Api::new(&fleet.nodes[0].url, fleet.nodes[0].api_key());
    // The owner is a member: 5 free places for 16 joiners racing over both nodes.
    let created = api
        .create_room(json!({"name": "Small", "owner_name": "Host", "capacity": 6}))
        .await;
    let room = created.room.id.clone();
    let joins: Vec<_> = (0..16)
        .map(|i| {
            let ws = fleet.nodes[i % 2].ws_url.clone();
            let room = room.clone();
            tokio::spawn(async move {
                WebrtcPeer::join(peer_config(&ws, &room, &format!("J{i}"), None, None)).await
            })
        })
        .collect();
    let mut refused = 0;
    for join in joins {
        match join.await.map_err(|e| e.to_string())? {
            Ok(peer) => peers.push(peer),
            // Refused for the right reason, in words — not a time-out or a broken join.
            Err(e) if e.to_string().contains("full") => refused += 1,
            Err(e) => return Err(format!("a join failed for another reason: {e}")),
        }
    }
    // Held places never count for more than half the capacity: more than 5 may have got
    // in, and whoever connects first becomes a member; the others are told the room
    // filled up meanwhile.
    let mut members_in = 0;
    for peer in peers.iter() {
        let me = peer.id().clone();
        let confirmed = peer
            .wait_for("connected as a member, or left room_full", STEP, |v| {
                if v.left == Some(LeftReason::RoomFull) {
                    return Some(false);
                }
                v.participants
                    .get(&me)
                    .is_some_and(|p| p.connected)
                    .then_some(true)
            })
            .await
            .map_err(|e| e.to_string())?;
        match confirmed {
            true => members_in += 1,
            false => refused += 1,
        }
    }
    if members_in != 5 || refused != 11 {
        return Err(format!(
            "{members_in} became members and {refused} were refused; 5 and 11 expected"
        ));
    }
    let members = api
        .wait_members(&room, "owner + 5 members", STEP, |m| m.len() == 6)
        .await?;
    if members.len() != 6 {
        return Err(format!("members: {members:?}"));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_signaling_nodes_clients_resume_elsewhere_and_leave_no_ghosts() {
    let mut fleet = Fleet::start(1, 2);
    let mut peers = Vec::new();
    let outcome = signaling_killed(&mut fleet, &mut peers).await;
    close_all(&mut peers).await;
    if let Err(message) = outcome {
        fail(&fleet, message);
    }
}

/// Node B dies mid-call. Moved's client takes its session to node A by its sealed
/// state: same participant, still seated, its audio never paused, and Stay (on A) sees
/// nobody leave. Ghost, also on B, never comes back: once the resume grace is over the
/// fleet clears it (no ghost) and its place is given back.
async fn signaling_killed(fleet: &mut Fleet, peers: &mut Vec<WebrtcPeer>) -> Result<(), String> {
    let api = Api::new(&fleet.nodes[0].url, fleet.nodes[0].api_key());
    let created = api
        .create_room(json!({"name": "Kill", "owner_name": "Host", "seat_mode": "open"}))
        .await;
    let room = created.room.id.clone();
    let (a_ws, b_ws) = (fleet.nodes[0].ws_url.clone(), fleet.nodes[1].ws_url.clone());
    peers.push(join_connected(peer_config(&a_ws, &room, "Stay", None, None), STEP).await?);
    peers.push(join_connected(peer_config(&b_ws, &room, "Moved", Some(550.0), None), STEP).await?);
    peers.push(join_connected(peer_config(&b_ws, &room, "Ghost", None, None), STEP).await?);
    let (moved, ghost) = (peers[1].id().clone(), peers[2].id().clone());
    peers[1]
        .send(&ClientMessage::RequestSeat)
        .map_err(|e| e.to_string())?;
    wait_info(&peers[0], &moved, "Stay sees Moved seated", STEP, |p| {
        p.speaker
    })
    .await?;
    wait_info(&peers[0], &ghost, "Stay sees Ghost connected", STEP, |p| {
        p.connected
    })
    .await?;
    hears(&peers[0], 550.0, 5, STEP).await?;
    peers[1]
        .wait_for("Moved's sealed state", STEP, |v| {
            v.sealed.as_ref().map(|_| ())
        })
        .await
        .map_err(|e| format!("Moved holds no sealed state: {e}"))?;
    tokio::time::sleep(Duration::from_secs(1)).await;

    let killed = Instant::now();
    fleet.nodes[1].kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    peers[1]
        .resume(&a_ws)
        .await
        .map_err(|e| format!("Moved could not resume on node A: {e}"))?;
    let resumed = killed.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (from, until) = (killed - Duration::from_millis(500), Instant::now());
    let missed = support::missing_frames(&peers[0], 1, from, until);
    let (gap, at) = support::longest_gap(&peers[0], from, until);
    eprintln!(
        "node B killed: Moved resumed on A after {resumed:?}; Stay missed {missed} frames; \
         longest pause in arrivals {gap:?} ({at:?} after kill − 500 ms)"
    );
    // 100 ms of audio at most (late packets on a busy machine are not missed ones), and
    // no stall.
    if missed > 5 || gap > Duration::from_secs(1) {
        return Err(format!(
            "Stay's audio from Moved broke while Moved moved nodes: {missed} frames missed, a pause of {gap:?}"
        ));
    }
    let me = peers[1].view().participants.get(&moved).cloned();
    if !me.as_ref().is_some_and(|p| p.speaker) {
        return Err(format!("Moved resumed as {me:?}, not seated"));
    }
    // Ghost never resumes: cleared after the grace (5 s in tests), told as disconnected.
    let departure = peers[0]
        .wait_for_departure(&ghost, STEP)
        .await
        .map_err(|e| format!("Stay never saw Ghost, on the dead node, leave: {e}"))?;
    eprintln!("ghost cleared {:?} after the kill", killed.elapsed());
    if departure != LeftReason::Disconnected {
        return Err(format!("Ghost left as {departure:?}, not disconnected"));
    }
    let departures = peers[0].view().departures;
    if departures.iter().any(|(who, _)| who == &moved) {
        return Err(format!("Stay saw Moved leave: {departures:?}"));
    }
    let (_, view) = api.room(&room).await;
    if view["present"] != 2 {
        return Err(format!(
            "presences after the sweep (Stay and Moved): {view}"
        ));
    }
    // Moved, now on A, is whole: it leaves, and Stay sees that.
    peers[1]
        .leave()
        .await
        .map_err(|e| format!("Moved's leave: {e}"))?;
    peers[0]
        .wait_for_departure(&moved, STEP)
        .await
        .map_err(|e| format!("Stay never saw Moved leave from node A: {e}"))?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_sfu_node_moves_its_rooms_and_audio_comes_back() {
    let mut fleet = Fleet::start(2, 1);
    let mut peers = Vec::new();
    let outcome = sfu_killed(&mut fleet, &mut peers).await;
    close_all(&mut peers).await;
    if let Err(message) = outcome {
        fail(&fleet, message);
    }
}

async fn sfu_killed(fleet: &mut Fleet, peers: &mut Vec<WebrtcPeer>) -> Result<(), String> {
    let node = &fleet.nodes[0];
    let api = Api::new(&node.url, node.api_key());
    let created = api
        .create_room(json!({"name": "Failover", "owner_name": "Host", "seat_mode": "open"}))
        .await;
    let room = created.room.id.clone();
    let ws = node.ws_url.clone();
    peers.push(join_connected(peer_config(&ws, &room, "Ear", None, None), STEP).await?);
    peers.push(join_connected(peer_config(&ws, &room, "Voice", Some(440.0), None), STEP).await?);
    let voice = peers[1].id().clone();
    peers[1]
        .send(&ClientMessage::RequestSeat)
        .map_err(|e| e.to_string())?;
    wait_info(&peers[0], &voice, "Voice seated", STEP, |p| p.speaker).await?;
    hears(&peers[0], 440.0, 5, STEP).await?;
    let (_, view) = api.room(&room).await;
    let first = view["node"].as_str().unwrap_or_default().to_owned();
    let Some(dead) = fleet.sfus.iter_mut().find(|s| s.id == first) else {
        return Err(format!("the room is on no known node: {view}"));
    };
    let killed = Instant::now();
    dead.kill();
    // Each session is told to reconnect its media; it lands on the live node.
    let told = fleet_support::rejoin_after_media_loss(peers, &ws, &room, killed, STEP).await?;
    hears(&peers[0], 440.0, 5, STEP)
        .await
        .map_err(|e| format!("after the SFU kill: {e}"))?;
    let back = killed.elapsed();
    let (_, view) = api.room(&room).await;
    let now_on = view["node"].as_str().unwrap_or_default().to_owned();
    eprintln!(
        "SFU {first} killed: sessions told after {told:?}, audio back on {now_on} after {back:?}"
    );
    if now_on == first || now_on.is_empty() {
        return Err(format!(
            "the room is still on the dead node {first}: {view}"
        ));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_sfu_node_takes_no_new_rooms() {
    let fleet = Fleet::start(2, 1);
    let mut peers = Vec::new();
    let outcome = drained(&fleet, &mut peers).await;
    close_all(&mut peers).await;
    if let Err(message) = outcome {
        fail(&fleet, message);
    }
}

async fn drained(fleet: &Fleet, peers: &mut Vec<WebrtcPeer>) -> Result<(), String> {
    let node = &fleet.nodes[0];
    let api = Api::new(&node.url, node.api_key());
    fleet.sfus[0].drain();
    // The drain shows in the node's next heartbeat (within a second or two).
    let deadline = Instant::now() + STEP;
    loop {
        let metrics = support::metrics(&node.url).await;
        if metrics.contains(&format!(
            "chorus_fleet_sfu_draining{{node=\"{}\"}} 1",
            fleet.sfus[0].id
        )) {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("the drain never showed in /metrics:\n{metrics}"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for i in 0..4 {
        let created = api
            .create_room(json!({"name": format!("After drain {i}"), "owner_name": "Host"}))
            .await;
        let room = created.room.id.clone();
        peers.push(join_connected(peer_config(&node.ws_url, &room, "L", None, None), STEP).await?);
        let (_, view) = api.room(&room).await;
        if view["node"] != fleet.sfus[1].id.as_str() {
            return Err(format!(
                "a new room went to {} while {} drains",
                view["node"], fleet.sfus[0].id
            ));
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_redis_is_down_joins_fail_in_words_and_the_fleet_recovers() {
    let mut fleet = Fleet::start(1, 1);
    let mut peers = Vec::new();
    let outcome = redis_restart(&mut fleet, &mut peers).await;
    close_all(&mut peers).await;
    if let Err(message) = outcome {
        fail(&fleet, message);
    }
}

async fn redis_restart(fleet: &mut Fleet, peers: &mut Vec<WebrtcPeer>) -> Result<(), String> {
    let (url, ws) = (fleet.nodes[0].url.clone(), fleet.nodes[0].ws_url.clone());
    let api = Api::new(&url, fleet.nodes[0].api_key());
    let created = api
        .create_room(json!({"name": "Outage", "owner_name": "Host"}))
        .await;
    let room = created.room.id.clone();
    peers.push(join_connected(peer_config(&ws, &room, "Before", None, None), STEP).await?);
    fleet.redis.kill();
    // A join now is refused in words, and nothing is half-written.
    match WebrtcPeer::join(peer_config(&ws, &room, "During", None, None)).await {
        Ok(mut peer) => {
            peer.close().await;
            return Err("a join succeeded while Redis was down".into());
        }
        Err(e) => {
            let text = e.to_string();
            if !text.contains("temporarily unavailable") {
                return Err(format!("the refusal while Redis is down says: {text}"));
            }
        }
    }
    fleet.redis.restart().map_err(|e| e.to_string())?;
    // The nodes reconnect by themselves (heartbeats come back within their TTL).
    let deadline = Instant::now() + STEP;
    loop {
        match WebrtcPeer::join(peer_config(&ws, &room, "After", None, None)).await {
            Ok(peer) => {
                peers.push(peer);
                break;
            }
            Err(e) if Instant::now() > deadline => {
                return Err(format!("no join after Redis came back: {e}"));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    }
    support::wait_self_connected(&peers[1], "After", STEP).await?;
    let members = api
        .wait_members(&room, "owner, Before and After", STEP, |m| m.len() == 3)
        .await?;
    if members.iter().any(|m| m["name"] == "During") {
        return Err(format!(
            "the refused join left a member behind: {members:?}"
        ));
    }
    Ok(())
}
