//! Rollback of a room whose creator never connects media: the creator sends
//! `create_room` with a real offer from a peer connection that is closed at once, so no
//! ICE/DTLS ever reaches the SFU. With `--pending-timeout-secs 3` the creator is told
//! (`error/media_unavailable`, then `left/room_closed`) and nothing is left behind: the
//! public lookup says 404, the server API lists no rooms. While pending, the link does
//! not work. A creator who leaves before connecting rolls the room back at once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod support;

use std::time::{Duration, Instant};

use chorus_bench::webrtc_peer::{MediaConfig, MediaPeer};
use chorus_proto::RoomId;
use chorus_proto::signal::{
    ClientMessage, ErrorCode, LeftReason, RoomState, SeatMode, ServerMessage,
};
use common::ChorusServer;
use support::{Api, RawClient};

const PENDING_SECS: u64 = 3;

/// A complete offer from a peer connection that no longer exists.
async fn dead_offer() -> String {
    let mut media = MediaPeer::new(&MediaConfig::default())
        .await
        .expect("a peer connection");
    let offer = media
        .create_offer(Duration::from_secs(20))
        .await
        .expect("an offer");
    media.close().await;
    offer
}

/// `create_room` with `offer`; the `joined` room (pending).
async fn create(client: &mut RawClient, offer: String) -> RoomId {
    client
        .send(&ClientMessage::CreateRoom {
            name: "Never".into(),
            capacity: Some(10),
            seats: Some(3),
            seat_mode: SeatMode::Moderated,
            entry: Default::default(),
            offer,
        })
        .await;
    let room = client
        .expect("joined", Duration::from_secs(15), |m| match m {
            ServerMessage::Joined { room, .. } => Some(room.clone()),
            ServerMessage::Error { code, message } => {
                panic!("create_room was refused: {code:?} {message}")
            }
            _ => None,
        })
        .await
        .unwrap();
    assert_eq!(
        room.state,
        RoomState::Pending,
        "a new room starts pending: {room:?}"
    );
    room.id
}

/// Nothing of `room` is left: public lookup 404, server API 404, no rooms listed.
/// Waits up to 2 s for the lookup to say 404 (the record is deleted right after the
/// creator is told), and says how long that took.
async fn assert_gone(server: &ChorusServer, room: &RoomId) {
    let api = Api::of(server);
    let since = Instant::now();
    loop {
        let (status, body) =
            chorus_bench::rest::request(&server.url, "GET", &format!("/api/rooms/{room}"), None)
                .await
                .unwrap();
        if status == 404 {
            break;
        }
        // A bound for "never", not a speed check (how fast is printed below).
        assert!(
            since.elapsed() < Duration::from_secs(10),
            "the rolled-back room is still there 10 s after its creator was told: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "room lookup 404 {:?} after the creator was told",
        since.elapsed()
    );
    let (status, body) =
        chorus_bench::rest::request(&server.url, "GET", &format!("/api/rooms/{room}"), None)
            .await
            .unwrap();
    assert_eq!(
        status, 404,
        "the rolled-back room's page lookup must be 404, got: {body}"
    );
    assert!(body.contains("room_not_found"), "{body}");
    let (status, body) = api.room(room).await;
    assert_eq!(
        status, 404,
        "the server API still knows the rolled-back room: {body}"
    );
    let rooms = api.rooms().await;
    assert!(
        rooms.is_empty(),
        "the server API still lists rooms after the rollback: {rooms:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_creator_who_never_connects_leaves_nothing_behind() {
    let server = ChorusServer::spawn_with(&["--pending-timeout-secs", "3"]);
    let mut creator = RawClient::hello(&server.ws_url, "Ghost", None).await;
    let asked = Instant::now();
    let room = create(&mut creator, dead_offer().await).await;

    // Pending: the link does not work yet for anyone else.
    let mut visitor = RawClient::hello(&server.ws_url, "Early", None).await;
    visitor
        .send(&ClientMessage::Join {
            room: room.clone(),
            offer: dead_offer().await,
            listener: false,
        })
        .await;
    let (code, message) = visitor
        .expect_error("an error joining a pending room")
        .await
        .unwrap();
    assert_eq!(
        code,
        ErrorCode::RoomNotFound,
        "joining a pending room: {message}"
    );

    // The creator is told, in words, then put out.
    let (code, message) = creator
        .expect_error("media_unavailable")
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", server.log()));
    let after = asked.elapsed();
    assert_eq!(code, ErrorCode::MediaUnavailable, "{message}");
    assert!(
        message.contains("never connected"),
        "the words should say why: {message}"
    );
    assert!(
        after >= Duration::from_secs(PENDING_SECS - 1)
            && after < Duration::from_secs(PENDING_SECS + 7),
        "rolled back after {after:?}, expected about {PENDING_SECS} s"
    );
    let reason = creator
        .expect("left", Duration::from_secs(5), |m| match m {
            ServerMessage::Left { reason } => Some(*reason),
            _ => None,
        })
        .await
        .unwrap();
    assert_eq!(reason, LeftReason::RoomClosed);
    eprintln!("rolled back after {after:?}: {message}");
    assert_gone(&server, &room).await;

    // The session carries on: it may create again.
    creator.send(&ClientMessage::Ping).await;
    creator
        .expect("pong", Duration::from_secs(5), |m| {
            matches!(m, ServerMessage::Pong).then_some(())
        })
        .await
        .unwrap();
    // The link of the rolled-back room is dead for good.
    visitor
        .send(&ClientMessage::Join {
            room: room.clone(),
            offer: dead_offer().await,
            listener: false,
        })
        .await;
    let (code, message) = visitor.expect_error("room_not_found").await.unwrap();
    assert_eq!(code, ErrorCode::RoomNotFound, "{message}");
    visitor.close().await;
    creator.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_creator_who_leaves_before_connecting_rolls_back_at_once() {
    // The long default wait: the rollback must come from the departure, not the timer.
    let server = ChorusServer::spawn();
    let mut creator = RawClient::hello(&server.ws_url, "Hasty", None).await;
    let room = create(&mut creator, dead_offer().await).await;
    creator.send(&ClientMessage::Leave).await;
    creator
        .expect("left", Duration::from_secs(5), |m| match m {
            ServerMessage::Left { .. } => Some(()),
            _ => None,
        })
        .await
        .unwrap();
    assert_gone(&server, &room).await;

    // The same by closing the socket.
    let mut creator = RawClient::hello(&server.ws_url, "Vanishing", None).await;
    let room = create(&mut creator, dead_offer().await).await;
    creator.close().await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, _) = Api::of(&server).room(&room).await;
        if status == 404 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a creator whose socket closed left its pending room behind"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_gone(&server, &room).await;
}

/// A room pending when the server was killed (its rollback timer died with the process)
/// is rolled back after the restart, once its creator has had the pending time again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_pending_when_the_server_was_killed_is_rolled_back_after_the_restart() {
    const PENDING: &[&str] = &["--pending-timeout-secs", "8"];
    let server = ChorusServer::spawn_with(PENDING);
    let mut creator = RawClient::hello(&server.ws_url, "Ghost", None).await;
    let offer = dead_offer().await;
    let asked = Instant::now();
    let room = create(&mut creator, offer).await;
    let server = server.restart_with(PENDING);
    let killed_after = asked.elapsed();
    drop(creator);
    // Killed before its own rollback: still there, pending, after the restart.
    let api = Api::of(&server);
    let (status, view) = api.room(&room).await;
    assert!(
        status == 200 && view["room"]["state"] == "pending",
        "killed {killed_after:?} after create: the room must still be pending: {status} {view}\n{}",
        server.log()
    );
    let restarted = Instant::now();
    let deadline = restarted + Duration::from_secs(30);
    loop {
        let (status, _) = api.room(&room).await;
        if status == 404 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a room pending before the restart is still there after {:?}\n{}",
            restarted.elapsed(),
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("rolled back {:?} after the restart", restarted.elapsed());
    assert_gone(&server, &room).await;
}
