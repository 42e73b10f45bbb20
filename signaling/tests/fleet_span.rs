//! A room bigger than one SFU node: with two nodes that take two participants each, a
//! room's third participant is placed on the other node, which gets the room's speakers
//! over the node-to-node relay (one stream per speaker per node). Decoding `webrtc`
//! peers check that a listener on the second node hears a speaker on the first, and the
//! other way round once it holds a seat; the nodes' own counters show the relay.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod fleet_support;
mod support;

use std::time::{Duration, Instant};

use chorus_bench::webrtc_peer::WebrtcPeer;
use chorus_proto::sfu::{NodeStatsRequest, NodeStatsResponse};
use fleet_support::Fleet;
use serde_json::json;
use support::{Api, close_all, hears, join_connected, peer_config, wait_info};

const STEP: Duration = Duration::from_secs(20);

async fn stats(fleet: &Fleet, grpc: &str) -> Result<NodeStatsResponse, String> {
    let mut client = fleet.key.control(grpc).await?;
    client
        .node_stats(NodeStatsRequest {})
        .await
        .map(|r| r.into_inner())
        .map_err(|e| format!("NodeStats {grpc}: {e}"))
}

/// Print how much later the frames `local` heard reached `relayed` (payloads heard once
/// by each, matched by their bytes): the relay's delay on this machine. A measurement for
/// the record, not a check (wall-clock figures belong to benchmarks).
fn relay_delay(local: &WebrtcPeer, relayed: &WebrtcPeer) {
    use std::collections::HashMap;
    let once = |arrivals: Vec<(u64, Instant)>| {
        let mut seen: HashMap<u64, (Instant, u32)> = HashMap::new();
        for (hash, at) in arrivals {
            seen.entry(hash).or_insert((at, 0)).1 += 1;
        }
        seen.into_iter()
            .filter(|(_, (_, n))| *n == 1)
            .map(|(h, (at, _))| (h, at))
            .collect::<HashMap<_, _>>()
    };
    let (here, there) = (once(local.arrivals()), once(relayed.arrivals()));
    let mut delays_us: Vec<i64> = there
        .iter()
        .filter_map(|(h, at)| {
            let base = here.get(h)?;
            Some(match at.checked_duration_since(*base) {
                Some(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
                None => -i64::try_from(base.duration_since(*at).as_micros()).unwrap_or(i64::MAX),
            })
        })
        .collect();
    delays_us.sort_unstable();
    if delays_us.is_empty() {
        eprintln!("relay delay: no frame heard by both listeners could be matched");
        return;
    }
    let at = |q: f64| delays_us[((delays_us.len() - 1) as f64 * q).round() as usize];
    eprintln!(
        "relay delay over {} frames (relayed listener minus local listener): p50 {} µs, p90 {} µs, p99 {} µs, min {} µs",
        delays_us.len(),
        at(0.5),
        at(0.9),
        at(0.99),
        delays_us[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_spanning_two_sfu_nodes_is_heard_across_the_relay() {
    let fleet = Fleet::start_with(2, 1, &["--max-participants", "2"]);
    let mut peers = Vec::new();
    let outcome = spanning(&fleet, &mut peers).await;
    close_all(&mut peers).await;
    if let Err(message) = outcome {
        panic!("{message}\n--- logs (tails) ---\n{}", fleet.logs());
    }
}

async fn spanning(fleet: &Fleet, peers: &mut Vec<WebrtcPeer>) -> Result<(), String> {
    let node = &fleet.nodes[0];
    let api = Api::new(&node.url, node.api_key());
    let created = api
        .create_room(json!({"name": "Big", "owner_name": "Host", "capacity": 10,
                            "seats": 3, "seat_mode": "moderated"}))
        .await;
    let room = created.room.id.clone();
    let join = |name: &'static str, hz: f32, token: Option<String>| {
        let config = peer_config(&node.ws_url, &room, name, Some(hz), token.as_deref());
        join_connected(config, STEP)
    };
    peers.push(join("Host", 330.0, Some(created.owner_token.clone())).await?);
    peers.push(join("Lea", 440.0, None).await?);
    // The room's node now holds two: the third goes to the other node.
    peers.push(join("Max", 550.0, None).await?);
    let (_, view) = api.room(&room).await;
    let home = view["node"].as_str().unwrap_or_default().to_owned();
    let (home_sfu, other_sfu) = match fleet.sfus.iter().position(|s| s.id == home) {
        Some(0) => (&fleet.sfus[0], &fleet.sfus[1]),
        Some(_) => (&fleet.sfus[1], &fleet.sfus[0]),
        None => return Err(format!("the room's node is {view}")),
    };
    let (at_home, at_other) = (
        stats(fleet, &home_sfu.grpc).await?,
        stats(fleet, &other_sfu.grpc).await?,
    );
    if (at_home.participants, at_other.participants) != (2, 1) {
        return Err(format!(
            "participants per node: {} on the room's node, {} on the other; want 2 and 1",
            at_home.participants, at_other.participants
        ));
    }
    let took = hears(&peers[2], 330.0, 10, STEP)
        .await
        .map_err(|e| format!("Max, on the other node, hears the owner: {e}"))?;
    eprintln!("relayed audio heard {took:?} after Max connected");
    hears(&peers[1], 330.0, 5, STEP)
        .await
        .map_err(|e| format!("Lea, on the room's node, hears the owner: {e}"))?;
    // What the relay adds: the same frames of the owner, heard by Lea (its own node) and
    // by Max (relayed to the other node), arrive in one process, on one clock.
    hears(&peers[2], 330.0, 30, STEP).await?;
    relay_delay(&peers[1], &peers[2]);
    // Max takes a seat: heard by the owner on the room's node, relayed the other way.
    let max = peers[2].id().clone();
    let max_user = peers[2].user().to_string();
    let (status, body) = api
        .call(
            "PATCH",
            &format!("/api/v1/rooms/{room}/members/{max_user}"),
            Some(json!({"seated": true})),
        )
        .await;
    if status != 200 {
        return Err(format!("PATCH seated: {status} {body}"));
    }
    wait_info(&peers[0], &max, "Host sees Max seated", STEP, |p| p.speaker).await?;
    hears(&peers[0], 550.0, 5, STEP)
        .await
        .map_err(|e| format!("the owner hears Max, seated on the other node: {e}"))?;
    // One stream per speaker per node: the room's node sent one relayed frame per frame
    // of its speaker, not one per listener of the other node. (The receiving side is
    // read first: frames keep flowing between the two reads.)
    let at_other = stats(fleet, &other_sfu.grpc).await?;
    let at_home = stats(fleet, &home_sfu.grpc).await?;
    eprintln!(
        "relay: room's node out {} in {}; other node out {} in {}",
        at_home.packets_relayed_out,
        at_home.packets_relayed_in,
        at_other.packets_relayed_out,
        at_other.packets_relayed_in
    );
    if at_home.packets_relayed_out == 0 || at_other.packets_relayed_in == 0 {
        return Err("no relayed frames counted from the room's node".into());
    }
    if at_other.packets_relayed_out == 0 || at_home.packets_relayed_in == 0 {
        return Err("no relayed frames counted back from the other node".into());
    }
    if at_other.packets_relayed_in > at_home.packets_relayed_out {
        return Err(format!(
            "the other node took in {} relayed frames, more than the {} sent",
            at_other.packets_relayed_in, at_home.packets_relayed_out
        ));
    }
    // Ending the room clears it on both nodes.
    let (status, body) = api
        .call("DELETE", &format!("/api/v1/rooms/{room}"), None)
        .await;
    if !(200..300).contains(&status) {
        return Err(format!("DELETE room: {status} {body}"));
    }
    let deadline = Instant::now() + STEP;
    loop {
        let (h, o) = (
            stats(fleet, &home_sfu.grpc).await?,
            stats(fleet, &other_sfu.grpc).await?,
        );
        if h.participants == 0 && o.participants == 0 {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "after the room ended: {} on the room's node, {} on the other",
                h.participants, o.participants
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}
