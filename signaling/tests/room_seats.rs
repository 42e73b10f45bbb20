//! Seats under a race: 20 listeners (connected `webrtc` peers, confirmed members) of an
//! open-seat room with 3 free mic seats all send `request_seat` at the same instant.
//! Exactly 3 become speakers, the 17 others have their hands raised; every participant
//! sees the same, and so does the server API.
//!
//! Counting: the room is created over the server API; its absent owner holds the first
//! seat, so "3 free seats" is `seats: 4`, and the API lists 4 seated members afterwards.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod support;

use std::time::{Duration, Instant};

use chorus_bench::webrtc_peer::{PeerConfig, WebrtcPeer};
use chorus_proto::signal::ClientMessage;
use common::ChorusServer;
use serde_json::json;
use support::{Api, close_all, join_connected};

const LISTENERS: usize = 20;
const FREE_SEATS: usize = 3;
const STEP: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_listeners_three_free_seats() {
    let started = Instant::now();
    let server = ChorusServer::spawn();
    let api = Api::of(&server);
    let created = api
        .create_room(
            json!({"name": "Seats", "owner_name": "Host", "capacity": 30,
                            "seats": FREE_SEATS + 1, "seat_mode": "open"}),
        )
        .await;
    let mut peers = Vec::new();
    let outcome = scenario(&server, &api, &created.room.id, &mut peers, started).await;
    close_all(&mut peers).await;
    if let Err(message) = outcome {
        let log = server.log();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        panic!(
            "{message}\n--- server log (tail) ---\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    eprintln!("done after {:?}", started.elapsed());
}

async fn scenario(
    server: &ChorusServer,
    api: &Api,
    room: &chorus_proto::RoomId,
    peers: &mut Vec<WebrtcPeer>,
    started: Instant,
) -> Result<(), String> {
    for i in 0..LISTENERS {
        let config = PeerConfig::new(&server.ws_url, room.clone(), format!("Listener {i}"));
        peers.push(join_connected(config, STEP).await?);
    }
    api.wait_members(room, "owner + 20 confirmed members", STEP, |m| {
        m.len() == LISTENERS + 1
    })
    .await?;
    for (i, peer) in peers.iter().enumerate() {
        let me = peer.id();
        let info = support::info_of(peer, me).ok_or(format!("Listener {i} does not see itself"))?;
        if info.speaker || info.hand_raised {
            return Err(format!(
                "Listener {i} starts as {info:?}, not a plain listener"
            ));
        }
    }
    eprintln!("{LISTENERS} listeners in after {:?}", started.elapsed());

    // The race: 20 requests leave together.
    for peer in peers.iter() {
        peer.send(&ClientMessage::RequestSeat)
            .map_err(|e| format!("request_seat could not be sent: {e}"))?;
    }

    // Each is told its own outcome: a seat, or a raised hand.
    let mut seated = Vec::new();
    let mut raised = Vec::new();
    for (i, peer) in peers.iter().enumerate() {
        let info = match support::wait_info(peer, peer.id(), "own seat or raised hand", STEP, |p| {
            p.speaker || p.hand_raised
        })
        .await
        {
            Ok(info) => info,
            Err(e) => {
                let members = api.members(room).await;
                let stored = support::member(&members, peer.user().as_str()).cloned();
                let seen_by_0 = support::info_of(&peers[0], peer.id());
                return Err(format!(
                    "Listener {i}: {e}\nthe server API has it as {stored:?}\nListener 0 sees it as {seen_by_0:?}"
                ));
            }
        };
        if info.speaker && info.hand_raised {
            return Err(format!(
                "Listener {i} is both seated and has a hand raised: {info:?}"
            ));
        }
        if info.speaker {
            seated.push(i)
        } else {
            raised.push(i)
        }
    }
    // Let any late (wrong) update arrive before counting again.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let now_seated: Vec<usize> = peers
        .iter()
        .enumerate()
        .filter(|(_, p)| support::info_of(p, p.id()).is_some_and(|i| i.speaker))
        .map(|(i, _)| i)
        .collect();
    if seated.len() != FREE_SEATS || raised.len() != LISTENERS - FREE_SEATS || now_seated != seated
    {
        return Err(format!(
            "{} took a seat ({seated:?}, a second later {now_seated:?}) and {} raised a hand; expected exactly {FREE_SEATS} and {}",
            seated.len(),
            raised.len(),
            LISTENERS - FREE_SEATS
        ));
    }
    for (i, peer) in peers.iter().enumerate() {
        let errors = peer.view().errors;
        if !errors.is_empty() {
            return Err(format!("Listener {i} got errors: {errors:?}"));
        }
        // Everyone sees the same stage: the same 3 speakers, the same 17 hands.
        let view = peer.view();
        for (j, other) in peers.iter().enumerate() {
            let info = view
                .participants
                .get(other.id())
                .ok_or(format!("Listener {i} does not see Listener {j}"))?;
            let expected_seat = seated.contains(&j);
            if info.speaker != expected_seat || info.hand_raised == expected_seat {
                return Err(format!(
                    "Listener {i} sees Listener {j} as speaker={} hand_raised={}, but {j} {}",
                    info.speaker,
                    info.hand_raised,
                    if expected_seat {
                        "holds a seat"
                    } else {
                        "has a hand raised"
                    }
                ));
            }
        }
    }

    // The store agrees: owner + 3 seated, 17 hands raised.
    let members = api.members(room).await;
    let seated_users: Vec<&str> = members
        .iter()
        .filter(|m| m["seated"] == true)
        .filter_map(|m| m["user"].as_str())
        .collect();
    let hands = members.iter().filter(|m| m["hand_raised"] == true).count();
    let expected_users: Vec<String> = seated
        .iter()
        .map(|i| peers[*i].user().to_string())
        .collect();
    if seated_users.len() != FREE_SEATS + 1
        || hands != LISTENERS - FREE_SEATS
        || !expected_users
            .iter()
            .all(|u| seated_users.contains(&u.as_str()))
    {
        return Err(format!(
            "the server API shows seated {seated_users:?} and {hands} hands; expected the owner + {expected_users:?} and {} hands",
            LISTENERS - FREE_SEATS
        ));
    }

    // A speaker leaves the seat: it is free again, and a listener asking again takes it.
    let leaver = seated[0];
    peers[leaver]
        .send(&ClientMessage::LeaveSeat)
        .map_err(|e| e.to_string())?;
    support::wait_info(&peers[leaver], peers[leaver].id(), "seat left", STEP, |p| {
        !p.speaker
    })
    .await?;
    let next = raised[0];
    peers[next]
        .send(&ClientMessage::RequestSeat)
        .map_err(|e| e.to_string())?;
    support::wait_info(
        &peers[next],
        peers[next].id(),
        "the freed seat taken",
        STEP,
        |p| p.speaker && !p.hand_raised,
    )
    .await
    .map_err(|e| format!("after a speaker left its seat, a listener asking again: {e}"))?;
    eprintln!("seats checked after {:?}", started.elapsed());
    Ok(())
}

/// A client that asks for a seat the moment it is told it is connected must get it: being
/// told `connected` means being a member (the web client and `interop_webrtc` do this).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asking_for_a_seat_as_soon_as_connected_works() {
    const PEERS: usize = 12;
    let server = ChorusServer::spawn();
    let api = Api::of(&server);
    let created = api
        .create_room(
            json!({"name": "Eager", "owner_name": "Host", "capacity": 20,
                            "seats": PEERS + 1, "seat_mode": "open"}),
        )
        .await;
    let room = created.room.id.clone();
    let mut peers = Vec::new();
    let mut problems = Vec::new();
    for i in 0..PEERS {
        let config = PeerConfig::new(&server.ws_url, room.clone(), format!("Eager {i}"));
        match WebrtcPeer::join(config).await {
            Ok(peer) => peers.push(peer),
            Err(e) => problems.push(format!("Eager {i} could not join: {e}")),
        }
    }
    // Each asks the instant its own participant_updated says connected.
    let asks = peers.iter().enumerate().map(|(i, peer)| async move {
        let me = peer.id().clone();
        peer.wait_for("own connected", STEP, |v| {
            v.participants.get(&me).is_some_and(|p| p.connected).then_some(())
        })
        .await
        .map_err(|e| format!("Eager {i} never told it is connected: {e}"))?;
        peer.send(&ClientMessage::RequestSeat).map_err(|e| e.to_string())?;
        let outcome = peer
            .wait_for("seat or error", STEP, |v| {
                if v.participants.get(&me).is_some_and(|p| p.speaker) {
                    Some(Ok(()))
                } else {
                    v.errors.first().map(|e| Err(e.clone()))
                }
            })
            .await
            .map_err(|e| format!("Eager {i}: {e}"))?;
        outcome.map_err(|(code, message)| {
            format!("Eager {i} asked for a seat right after being told it is connected and got {code:?}: {message}")
        })
    });
    for result in futures_util::future::join_all(asks).await {
        if let Err(e) = result {
            problems.push(e);
        }
    }
    close_all(&mut peers).await;
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
