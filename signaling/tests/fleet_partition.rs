//! Nodes cut off, not killed: a node runs on a host of its own (a network namespace with
//! a veth link, `fleet_support::netns`), and the test takes its link down while it keeps
//! running, then brings it back. Decoding `webrtc` peers check who hears whom, Redis
//! itself what the fleet records.
//!
//! - An SFU node cut off loses its rooms to another node; when it comes back it holds
//!   none of them, claims none, and the room goes on where the fleet moved it.
//! - A signaling node cut off has its presences cleared by the others; when it comes
//!   back, the sessions the fleet cleared are told so (and join again), none of them
//!   returns to the room as a ghost, and it clears nobody else's.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod fleet_support;
mod support;

use std::time::{Duration, Instant};

use chorus_bench::webrtc_peer::{PeerConfig, WebrtcPeer};
use chorus_proto::fleet::{SfuNodeRecord, keys};
use chorus_proto::sfu::ParticipantsRequest;
use chorus_proto::signal::{ClientMessage, LeftReason};
use chorus_proto::{NodeId, RoomId};
use fleet_support::netns::TestNet;
use fleet_support::{RedisServer, SfuNode, SignalingNode, TokenKey};
use serde_json::json;
use support::{Api, close_all, hears, join_connected, peer_config, wait_info};

const STEP: Duration = Duration::from_secs(20);

async fn redis_conn(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("connect to the test's Redis")
}

/// An SFU node's record, if it is registered now.
async fn sfu_record(
    conn: &mut redis::aio::MultiplexedConnection,
    id: &str,
) -> Option<SfuNodeRecord> {
    let node = NodeId::parse(id).unwrap();
    let json: Option<String> = redis::cmd("GET")
        .arg(keys::sfu_node(&node))
        .query_async(conn)
        .await
        .ok()?;
    json.and_then(|j| serde_json::from_str(&j).ok())
}

async fn room_node(api: &Api, room: &RoomId) -> String {
    let (_, view) = api.room(room).await;
    view["node"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sfu_node_cut_off_gives_up_its_rooms_and_does_not_fight_the_node_that_took_them() {
    let net = TestNet::create().unwrap_or_else(|e| panic!("{e}"));
    let redis = RedisServer::start_on(&[net.host_ip]).expect("redis-server");
    let key = TokenKey::make();
    let cut_off = SfuNode::start_in(
        &net,
        &key,
        "sfu-cut",
        &["--redis", &redis.url_on(net.host_ip)],
    );
    let node = SignalingNode::start(&redis.url(), &key, "sig-a", None);
    let mut other: Option<SfuNode> = None;
    let mut peers = Vec::new();
    let outcome = sfu_cut_off(&net, &redis, &key, &cut_off, &node, &mut other, &mut peers).await;
    close_all(&mut peers).await;
    if let Err(message) = outcome {
        let other_log = other.as_ref().map(SfuNode::log).unwrap_or_default();
        panic!(
            "{message}\n==== sfu-cut ====\n{}\n==== sfu-b ====\n{other_log}\n==== sig-a ====\n{}",
            cut_off.log(),
            node.log()
        );
    }
}

async fn sfu_cut_off(
    net: &TestNet,
    redis: &RedisServer,
    key: &TokenKey,
    cut_off: &SfuNode,
    node: &SignalingNode,
    other: &mut Option<SfuNode>,
    peers: &mut Vec<WebrtcPeer>,
) -> Result<(), String> {
    let api = Api::new(&node.url, node.api_key());
    let created = api
        .create_room(json!({"name": "Cut off", "owner_name": "Host", "seat_mode": "open"}))
        .await;
    let room = created.room.id.clone();
    let ws = node.ws_url.clone();
    // The peers send media from this host's end of the link, to reach the node there.
    for (name, tone) in [("Ear", None), ("Voice", Some(440.0))] {
        let config = PeerConfig {
            media_ip: net.host_ip,
            ..peer_config(&ws, &room, name, tone, None)
        };
        peers.push(join_connected(config, STEP).await?);
    }
    let voice = peers[1].id().clone();
    peers[1]
        .send(&ClientMessage::RequestSeat)
        .map_err(|e| e.to_string())?;
    wait_info(&peers[0], &voice, "Voice seated", STEP, |p| p.speaker).await?;
    hears(&peers[0], 440.0, 5, STEP).await?;
    let first = room_node(&api, &room).await;
    if first != cut_off.id {
        return Err(format!(
            "the room should be on {} (the only node), not {first:?}",
            cut_off.id
        ));
    }
    // A second node, on this host, to take the room over.
    *other = Some(SfuNode::start(&redis.url(), key, "sfu-b"));

    let cut = Instant::now();
    net.cut();
    let told = fleet_support::rejoin_after_media_loss(peers, &ws, &room, cut, STEP)
        .await
        .map_err(|e| format!("after the cut: {e}"))?;
    let voice = peers[1].id().clone();
    hears(&peers[0], 440.0, 5, STEP)
        .await
        .map_err(|e| format!("after the cut: {e}"))?;
    let moved = room_node(&api, &room).await;
    if moved != "sfu-b" {
        return Err(format!(
            "the room should have moved to sfu-b, it is on {moved:?}"
        ));
    }
    let back = cut.elapsed();

    // The link comes back with the cut-off node still running.
    net.heal();
    let healed = Instant::now();
    let mut conn = redis_conn(&redis.url()).await;
    let record = loop {
        if let Some(record) = sfu_record(&mut conn, &cut_off.id).await {
            break record;
        }
        if healed.elapsed() > STEP {
            return Err(
                "the cut-off SFU node never registered again after the link came back".into(),
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let rejoined = healed.elapsed();
    // Its first record after the outage already claims nothing of what it lost.
    if record.participants != 0 || record.rooms != 0 {
        return Err(format!(
            "back in the fleet still counting {} rooms, {} participants it no longer serves",
            record.rooms, record.participants
        ));
    }
    let mut control = key.control(&cut_off.grpc).await?;
    let left_there = control
        .participants(ParticipantsRequest {})
        .await
        .map_err(|e| format!("Participants at the cut-off node: {e}"))?
        .into_inner()
        .participants;
    if !left_there.is_empty() {
        return Err(format!("the cut-off node still holds {left_there:?}"));
    }
    let bound_there: bool = redis::cmd("SISMEMBER")
        .arg(keys::sfu_node_rooms(&NodeId::parse(&cut_off.id).unwrap()))
        .arg(room.as_str())
        .query_async(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    if bound_there {
        return Err("the room is still counted as bound to the cut-off node".into());
    }
    // The fleet goes on as it was: same node, both present, the voice heard.
    let departures_before = peers[0].view().departures.len();
    hears(&peers[0], 440.0, 20, STEP)
        .await
        .map_err(|e| format!("after the cut-off node came back: {e}"))?;
    let now_on = room_node(&api, &room).await;
    if now_on != "sfu-b" {
        return Err(format!(
            "the room moved again, to {now_on:?}, when the cut-off node came back"
        ));
    }
    let view = peers[0].view();
    if !view.participants.contains_key(&voice) || view.departures.len() != departures_before {
        return Err(format!(
            "the room changed when the cut-off node came back: participants {:?}, departures {:?}",
            view.participants.keys().collect::<Vec<_>>(),
            view.departures
        ));
    }
    eprintln!(
        "SFU cut off: sessions told after {told:?}, audio back on sfu-b after {back:?}; \
         the node registered again {rejoined:?} after the link came back, claiming nothing"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signaling_node_cut_off_ends_the_sessions_the_fleet_cleared_and_brings_back_no_ghost() {
    let net = TestNet::create().unwrap_or_else(|e| panic!("{e}"));
    let redis = RedisServer::start_on(&[net.host_ip]).expect("redis-server");
    let key = TokenKey::make();
    // The SFU listens on this host's end of the link: both signaling nodes reach its
    // gRPC, the peers (on this host) its media, and it stays reachable from here while
    // the link is down.
    let host = net.host_ip.to_string();
    let sfu = SfuNode::start_on(&host, &key, "sfu-a", &["--redis", &redis.url()]);
    let near = SignalingNode::start(&redis.url(), &key, "sig-a", None);
    let far = SignalingNode::start_in(
        &net,
        &redis.url_on(net.host_ip),
        &key,
        "sig-cut",
        &near.data_dir,
    );
    let mut peers = Vec::new();
    let outcome = signaling_cut_off(&net, &redis, &near, &far, &mut peers).await;
    close_all(&mut peers).await;
    if let Err(message) = outcome {
        panic!(
            "{message}\n==== sfu-a ====\n{}\n==== sig-a ====\n{}\n==== sig-cut ====\n{}",
            sfu.log(),
            near.log(),
            far.log()
        );
    }
}

async fn signaling_cut_off(
    net: &TestNet,
    redis: &RedisServer,
    near: &SignalingNode,
    far: &SignalingNode,
    peers: &mut Vec<WebrtcPeer>,
) -> Result<(), String> {
    let api = Api::new(&near.url, near.api_key());
    let created = api
        .create_room(json!({"name": "Cut off", "owner_name": "Host", "seat_mode": "open"}))
        .await;
    let room = created.room.id.clone();
    peers.push(join_connected(peer_config(&near.ws_url, &room, "Near", None, None), STEP).await?);
    peers.push(
        join_connected(
            peer_config(&far.ws_url, &room, "Far", Some(550.0), None),
            STEP,
        )
        .await?,
    );
    let (near_id, far_id) = (peers[0].id().clone(), peers[1].id().clone());
    peers[1]
        .send(&ClientMessage::RequestSeat)
        .map_err(|e| e.to_string())?;
    wait_info(
        &peers[0],
        &far_id,
        "Far seated, seen from the other node",
        STEP,
        |p| p.speaker,
    )
    .await?;
    hears(&peers[0], 550.0, 5, STEP).await?;

    let cut = Instant::now();
    net.cut();
    // The fleet clears the presences of the node it lost: the room is told.
    peers[0]
        .wait_for("Far's departure", STEP, |v| {
            v.departures
                .iter()
                .any(|(who, _)| who == &far_id)
                .then_some(())
        })
        .await
        .map_err(|e| format!("the cut-off node's presence was never cleared: {e}"))?;
    let cleared = cut.elapsed();

    net.heal();
    let healed = Instant::now();
    // Its session learns that it is out of the room (and a real client joins again).
    let reason = peers[1]
        .wait_for("Far told it left", STEP, |v| v.left)
        .await
        .map_err(|e| format!("the session the fleet cleared was never told: {e}"))?;
    // Not `removed` (nobody removed it) nor anything a client gives up on: it was the
    // server that lost the fleet, and the client joins again.
    if reason != LeftReason::ServerRestarting {
        return Err(format!(
            "Far was told it left with {reason:?}, not `server_restarting`"
        ));
    }
    let told = healed.elapsed();
    // For a while after: no ghost of Far in the room, nobody else cleared.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let view = peers[0].view();
    if view.participants.contains_key(&far_id) {
        return Err("Far came back into the room as a ghost after its node returned".into());
    }
    if view.left.is_some() || !view.participants.contains_key(&near_id) {
        return Err(format!(
            "Near was taken out when the cut-off node returned: left {:?}",
            view.left
        ));
    }
    let mut conn = redis_conn(&redis.url()).await;
    let present: Vec<String> = redis::cmd("HKEYS")
        .arg(keys::presences(&room))
        .query_async(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    if present != vec![near_id.to_string()] {
        return Err(format!(
            "the room's presences should be Near's alone, they are {present:?}"
        ));
    }
    eprintln!(
        "signaling cut off: its presence cleared after {cleared:?}; back, its session was told \
         ({reason:?}) after {told:?}; no ghost, nobody else cleared"
    );
    Ok(())
}
