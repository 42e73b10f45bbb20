//! Capacity under a race: 50 clients, each with a real WebRTC offer, send `join` to a room
//! with 10 free places at the same instant. Exactly 10 become members (those whose media
//! connects first: held places never count for more than half the capacity); the 40
//! others are told in words that the room is full, at the join or once their media
//! connected; the group chat ends up with exactly 10 new members, and a latecomer is
//! still refused.
//!
//! Counting: the room is created over the server API, whose owner is an absent member
//! holding a place. "A room with 10 free places" is therefore created with capacity 11
//! (owner + 10); after the race the server API lists 11 members: the owner and 10 joiners.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chorus_bench::webrtc_peer::{MediaConfig, MediaPeer};
use chorus_proto::signal::{ClientMessage, ErrorCode, LeftReason, ServerMessage};
use common::ChorusServer;
use serde_json::json;
use support::{Api, RawClient};

const CLIENTS: usize = 50;
const FREE_PLACES: usize = 10;

enum Outcome {
    Joined {
        you: chorus_proto::ParticipantId,
        answer: String,
    },
    Refused(ErrorCode, String),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_join_ten_places_at_once() {
    let started = Instant::now();
    let server = ChorusServer::spawn();
    let api = Api::of(&server);
    let created = api
        .create_room(json!({"name": "Race", "owner_name": "Host",
                            "capacity": FREE_PLACES + 1, "seats": 3, "seat_mode": "open"}))
        .await;
    let room = created.room.id.clone();

    // Everything that is slow first: 50 peer connections with complete offers, 50 sessions.
    let mut medias = Vec::new();
    let mut offers = Vec::new();
    for _ in 0..CLIENTS {
        let mut media = MediaPeer::new(&MediaConfig::default())
            .await
            .expect("a peer connection");
        offers.push(
            media
                .create_offer(Duration::from_secs(20))
                .await
                .expect("an offer"),
        );
        medias.push(media);
    }
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        clients.push(RawClient::hello(&server.ws_url, &format!("Racer {i}"), None).await);
    }
    eprintln!(
        "{CLIENTS} offers and sessions ready after {:?}",
        started.elapsed()
    );

    // The race: every `join` leaves once all tasks stand at the barrier.
    let barrier = Arc::new(tokio::sync::Barrier::new(CLIENTS));
    let mut tasks = Vec::new();
    for (mut client, offer) in clients.into_iter().zip(offers) {
        let (barrier, room) = (Arc::clone(&barrier), room.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            client
                .send(&ClientMessage::Join {
                    room,
                    offer,
                    listener: false,
                })
                .await;
            let outcome = client
                .expect("joined or error", Duration::from_secs(30), |m| match m {
                    ServerMessage::Joined { you, answer, .. } => Some(Outcome::Joined {
                        you: you.clone(),
                        answer: answer.clone(),
                    }),
                    ServerMessage::Error { code, message } => {
                        Some(Outcome::Refused(*code, message.clone()))
                    }
                    _ => None,
                })
                .await;
            (client, outcome)
        }));
    }
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap());
    }
    eprintln!("all {CLIENTS} answered after {:?}", started.elapsed());

    let outcome = check(&api, &server, &room, &mut medias, results).await;
    for media in &mut medias {
        media.close().await;
    }
    if let Err(message) = outcome {
        panic!(
            "{message}\n--- server log (tail) ---\n{}",
            tail(&server.log(), 40)
        );
    }
    eprintln!("done after {:?}", started.elapsed());
}

async fn check(
    api: &Api,
    server: &ChorusServer,
    room: &chorus_proto::RoomId,
    medias: &mut [MediaPeer],
    results: Vec<(RawClient, Result<Outcome, String>)>,
) -> Result<(), String> {
    let mut joined = Vec::new();
    let mut full = 0;
    let mut problems = Vec::new();
    for (i, (client, outcome)) in results.into_iter().enumerate() {
        match outcome {
            Ok(Outcome::Joined { you, answer }) => joined.push((i, client, you, answer)),
            Ok(Outcome::Refused(ErrorCode::RoomFull, message)) => {
                if !message.contains("full") {
                    problems.push(format!(
                        "client {i} was refused with room_full but the words do not say so: {message:?}"
                    ));
                }
                full += 1;
                client.close().await;
            }
            Ok(Outcome::Refused(code, message)) => {
                problems.push(format!(
                    "client {i} got {code:?} ({message}) instead of joined or room_full"
                ));
                client.close().await;
            }
            Err(e) => problems.push(format!("client {i}: {e}")),
        }
    }
    if joined.len() < FREE_PLACES || !problems.is_empty() {
        return Err(format!(
            "{} joined and {full} were told the room is full; at least {FREE_PLACES} should have joined.\n{}",
            joined.len(),
            problems.join("\n")
        ));
    }

    // Every join that got in connects its media. Held places never count for more than
    // half the capacity, so more than 10 may have got in: whoever connects first is a
    // member, and the others are told the room filled up meanwhile.
    for (i, _, _, answer) in &joined {
        medias[*i]
            .apply_answer(answer.clone())
            .await
            .map_err(|e| format!("client {i} could not apply the SFU's answer: {e}"))?;
    }
    let mut winners = Vec::new();
    for (i, mut client, you, answer) in joined {
        medias[i]
            .wait_connected(Duration::from_secs(20))
            .await
            .map_err(|e| format!("client {i}'s media did not connect: {e}"))?;
        let me = you.clone();
        let confirmed = client
            .expect(
                "own participant_updated connected, or left room_full",
                Duration::from_secs(20),
                |m| match m {
                    ServerMessage::ParticipantUpdated { participant } => {
                        (participant.id == me && participant.connected).then_some(Ok(true))
                    }
                    ServerMessage::Left {
                        reason: LeftReason::RoomFull,
                    } => Some(Ok(false)),
                    ServerMessage::Error { code, .. } if *code == ErrorCode::RoomFull => None,
                    ServerMessage::Error { code, message } => Some(Err(format!(
                        "client {i} got an error after joining: {code:?} {message}"
                    ))),
                    ServerMessage::Left { reason } => Some(Err(format!(
                        "client {i} was put out after joining: {reason:?}"
                    ))),
                    _ => None,
                },
            )
            .await
            .map_err(|e| format!("client {i}: {e}"))??;
        if confirmed {
            winners.push((i, client, you, answer));
        } else {
            let told = client.seen.iter().any(|m| {
                matches!(m, ServerMessage::Error { code: ErrorCode::RoomFull, message } if message.contains("full"))
            });
            if !told {
                return Err(format!(
                    "client {i} was put out as the room filled up without being told in words"
                ));
            }
            full += 1;
            client.close().await;
        }
    }
    if winners.len() != FREE_PLACES || full != CLIENTS - FREE_PLACES {
        return Err(format!(
            "{} became members and {full} were told the room is full; expected {FREE_PLACES} and {}",
            winners.len(),
            CLIENTS - FREE_PLACES
        ));
    }

    // After all settle: owner + 10 members in the store, 10 present.
    let members = api
        .wait_members(
            room,
            "owner + 10 confirmed members",
            Duration::from_secs(15),
            |m| m.len() == FREE_PLACES + 1,
        )
        .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (_, view) = api.room(room).await;
    let count = view["members"].as_array().map_or(0, Vec::len);
    if count != FREE_PLACES + 1 || view["present"] != FREE_PLACES {
        return Err(format!(
            "after the race the room has {count} members (expected {} = owner + {FREE_PLACES}) and {} present (expected {FREE_PLACES}): {view}",
            FREE_PLACES + 1,
            view["present"]
        ));
    }
    let owners = members.iter().filter(|m| m["role"] == "owner").count();
    if owners != 1 {
        return Err(format!("{owners} owners among the members: {members:?}"));
    }
    let (status, public) =
        chorus_bench::rest::request(&server.url, "GET", &format!("/api/rooms/{room}"), None)
            .await
            .map_err(|e| e.to_string())?;
    let public: serde_json::Value = serde_json::from_str(&public).unwrap_or_default();
    if status != 200
        || public["members"] != FREE_PLACES + 1
        || public["participants"] != FREE_PLACES
    {
        return Err(format!(
            "the public room lookup disagrees: {status} {public}"
        ));
    }

    // Still full: a latecomer is refused in words, and nothing changes.
    let mut late = RawClient::hello(&server.ws_url, "Late", None).await;
    let (mut media, offer) = support::new_offer().await?;
    media.close().await;
    late.send(&ClientMessage::Join {
        room: room.clone(),
        offer,
        listener: false,
    })
    .await;
    let (code, message) = late.expect_error("room_full for a latecomer").await?;
    if code != ErrorCode::RoomFull {
        return Err(format!(
            "a latecomer got {code:?} ({message}), not room_full"
        ));
    }
    let after = api.members(room).await.len();
    if after != FREE_PLACES + 1 {
        return Err(format!(
            "the refused latecomer changed the member count to {after}"
        ));
    }
    for (_, client, _, _) in winners {
        client.close().await;
    }
    late.close().await;
    Ok(())
}

fn tail(log: &str, lines: usize) -> String {
    let all: Vec<&str> = log.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A full room frees a place when a member gives up membership (`leave_group`), unlike a
/// plain `leave`, after which the member keeps its place (it is its group chat).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaving_the_group_frees_a_place_for_someone_else() {
    let server = ChorusServer::spawn();
    let api = Api::of(&server);
    // Owner + 1 place.
    let created = api
        .create_room(json!({"name": "Tight", "owner_name": "Host", "capacity": 2, "seats": 1}))
        .await;
    let room = created.room.id.clone();
    let step = Duration::from_secs(15);
    let mut peers = Vec::new();
    let outcome = async {
        let config = |name: &str, token: Option<&str>| {
            support::peer_config(&server.ws_url, &room, name, None, token)
        };
        peers.push(support::join_connected(config("Ada", None), step).await?);
        let ada_token = peers[0].user_token().to_owned();
        // Ada leaves the room but stays a member: Ben finds it full.
        peers[0]
            .send(&ClientMessage::Leave)
            .map_err(|e| e.to_string())?;
        api.wait_members(&room, "Ada to stay a member", step, |m| m.len() == 2)
            .await?;
        let mut ben = RawClient::hello(&server.ws_url, "Ben", None).await;
        let mut media = MediaPeer::new(&MediaConfig::default())
            .await
            .map_err(|e| e.to_string())?;
        let offer = media.create_offer(step).await.map_err(|e| e.to_string())?;
        media.close().await;
        ben.send(&ClientMessage::Join {
            room: room.clone(),
            offer,
            listener: false,
        })
        .await;
        let (code, words) = ben.expect_error("room_full while Ada is a member").await?;
        if code != ErrorCode::RoomFull {
            return Err(format!("expected room_full, got {code:?}: {words}"));
        }
        ben.close().await;
        // Ada comes back as herself (a member: no new place needed) and gives the place up.
        support::close_all(&mut peers).await;
        peers.clear();
        peers.push(support::join_connected(config("Ada", Some(&ada_token)), step).await?);
        peers[0]
            .send(&ClientMessage::LeaveGroup)
            .map_err(|e| e.to_string())?;
        api.wait_members(&room, "Ada to be gone", step, |m| m.len() == 1)
            .await?;
        // Now Ben gets in.
        peers.push(support::join_connected(config("Ben", None), step).await?);
        Ok::<(), String>(())
    }
    .await;
    support::close_all(&mut peers).await;
    if let Err(e) = outcome {
        panic!("{e}\n--- server log (tail) ---\n{}", server.log());
    }
}

/// Guests that join and never connect their media (a client that re-joins whenever its
/// held place expires) cannot hold a room full: one address holds at most 3 places at
/// once, and held places never count for more than half the capacity — real members
/// still get in. The ghosts come through a trusted proxy (`X-Forwarded-For`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_that_never_connect_cannot_hold_a_room_full() {
    let server = ChorusServer::spawn_with(&["--trusted-proxy", "127.0.0.1"]);
    let mut medias = Vec::new();
    let mut clients = Vec::new();
    let mut peers = Vec::new();
    let outcome = ghosts_and_members(&server, &mut medias, &mut clients, &mut peers).await;
    for media in &mut medias {
        media.close().await;
    }
    for client in clients {
        client.close().await;
    }
    support::close_all(&mut peers).await;
    if let Err(message) = outcome {
        panic!(
            "{message}\n--- server log (tail) ---\n{}",
            tail(&server.log(), 40)
        );
    }
}

async fn ghosts_and_members(
    server: &ChorusServer,
    medias: &mut Vec<MediaPeer>,
    clients: &mut Vec<RawClient>,
    peers: &mut Vec<chorus_bench::webrtc_peer::WebrtcPeer>,
) -> Result<(), String> {
    let api = Api::of(server);
    // The owner (an absent member) and 5 free places.
    let created = api
        .create_room(json!({"name": "Ghosts", "owner_name": "Host",
                            "capacity": 6, "seats": 3, "seat_mode": "open"}))
        .await;
    let room = created.room.id.clone();
    let addresses = [
        "203.0.113.7",
        "203.0.113.7",
        "203.0.113.7",
        "203.0.113.7",
        "203.0.113.8",
        "203.0.113.9",
    ];
    let mut answers = Vec::new();
    for (i, addr) in addresses.iter().enumerate() {
        let (media, offer) = support::new_offer().await?;
        medias.push(media);
        let mut client =
            RawClient::hello_from(&server.ws_url, &format!("Ghost {i}"), None, Some(addr)).await;
        client.send_join(&room, offer).await;
        // The answer is never applied: this media never connects.
        let answer = client
            .expect("joined or error", Duration::from_secs(20), |m| match m {
                ServerMessage::Joined { .. } => Some(Ok(())),
                ServerMessage::Error { code, message } => Some(Err((*code, message.clone()))),
                _ => None,
            })
            .await?;
        answers.push(answer);
        clients.push(client);
    }
    let held = answers.iter().filter(|a| a.is_ok()).count();
    match &answers[3] {
        Err((ErrorCode::RateLimited, message)) if message.contains("your network") => {}
        other => {
            return Err(format!(
                "a 4th join in flight from one address should be refused as rate_limited in words, got {other:?}"
            ));
        }
    }
    if held != 5 {
        return Err(format!(
            "5 ghosts should hold places, {held} do: {answers:?}"
        ));
    }
    // Five places held, by joins that will never connect: real members still get two
    // of the five (holds count for at most half of 6), and connect.
    for name in ["Real 1", "Real 2"] {
        let config = support::peer_config(&server.ws_url, &room, name, None, None);
        peers.push(support::join_connected(config, Duration::from_secs(20)).await?);
    }
    let config = support::peer_config(&server.ws_url, &room, "Real 3", None, None);
    match chorus_bench::webrtc_peer::WebrtcPeer::join(config).await {
        Err(chorus_bench::webrtc_peer::PeerError::Server {
            code: ErrorCode::RoomFull,
            ..
        }) => {}
        Ok(mut peer) => {
            peer.close().await;
            return Err("a third real member got in: 3 members and 3 counted holds are 6".into());
        }
        Err(e) => return Err(format!("Real 3 should be refused as room_full: {e}")),
    }
    let members = api.members(&room).await.len();
    if members != 3 {
        return Err(format!(
            "the owner and two real members should be members, there are {members}"
        ));
    }
    Ok(())
}
