//! Bad room input gets a clear error and changes nothing: impossible settings (over the
//! WebSocket and the server API), unknown rooms and dead links, and members without the
//! right trying moderator actions in a live room of connected `webrtc` peers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod support;

use std::time::Duration;

use chorus_bench::webrtc_peer::WebrtcPeer;
use chorus_proto::signal::{ClientMessage, ErrorCode, LeftReason, RoomState};
use common::ChorusServer;
use serde_json::json;
use support::{Api, RawClient, close_all, join_connected, peer_config};

const STEP: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impossible_settings_are_refused_in_words() {
    let server = ChorusServer::spawn();
    let api = Api::of(&server);
    let mut ws = RawClient::hello(&server.ws_url, "Settings", None).await;
    // (capacity, seats, words the message must hold)
    let cases: [(Option<i64>, Option<i64>, &str); 9] = [
        (Some(10), Some(11), "cannot have 11 mic seats"),
        (Some(3), Some(4), "cannot have"),
        (Some(-5), Some(1), "capacity"),
        (Some(0), Some(1), "capacity"),
        (Some(1), Some(1), "capacity"),
        (Some(10), Some(0), "seats"),
        (Some(10), Some(-3), "seats"),
        (Some(99_999_999), Some(3), "capacity"),
        (Some(100), Some(51), "seats"),
    ];
    for (capacity, seats, words) in cases {
        ws.send(&ClientMessage::CreateRoom {
            name: "Bad".into(),
            capacity,
            seats,
            seat_mode: Default::default(),
            entry: Default::default(),
            offer: "v=0".into(),
        })
        .await;
        let (code, message) = ws.expect_error("invalid_input").await.unwrap();
        assert_eq!(
            code,
            ErrorCode::InvalidInput,
            "capacity {capacity:?} seats {seats:?}: {message}"
        );
        assert!(
            message.contains(words),
            "capacity {capacity:?} seats {seats:?}: {message:?} should say {words:?}"
        );
        // The server API refuses the same settings the same way.
        let (status, body) = api
            .call(
                "POST",
                "/api/v1/rooms",
                Some(
                    json!({"name": "Bad", "owner_name": "A", "capacity": capacity, "seats": seats}),
                ),
            )
            .await;
        assert_eq!(
            status, 400,
            "server API, capacity {capacity:?} seats {seats:?}: {body}"
        );
        assert_eq!(body["code"], "invalid_input", "{body}");
        assert!(
            body["message"].as_str().unwrap_or_default().contains(words),
            "{body}"
        );
    }
    // Numbers that are not numbers, or beyond any integer.
    for frame in [
        r#"{"type":"create_room","name":"Bad","capacity":"ten","offer":"v=0"}"#,
        r#"{"type":"create_room","name":"Bad","capacity":1e400,"offer":"v=0"}"#,
        r#"{"type":"create_room","name":"Bad","seats":99999999999999999999999,"offer":"v=0"}"#,
        r#"{"type":"create_room","name":"Bad","capacity":2.5,"offer":"v=0"}"#,
    ] {
        ws.send_text(frame).await;
        let (code, message) = ws.expect_error("malformed").await.unwrap();
        assert!(
            matches!(code, ErrorCode::Malformed | ErrorCode::InvalidInput),
            "{frame}: {code:?} {message}"
        );
        assert!(!message.is_empty());
    }
    let (status, body) = api
        .call(
            "POST",
            "/api/v1/rooms",
            Some(json!({"name": "Bad", "owner_name": "A", "capacity": -1.5})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = api
        .call(
            "POST",
            "/api/v1/rooms",
            Some(json!({"name": "Bad", "owner_name": "A", "seat_mode": "anarchy"})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    // Nothing was created by any of it, and the session carries on.
    assert_eq!(
        api.rooms().await,
        Vec::<serde_json::Value>::new(),
        "a refused room was created"
    );
    ws.send(&ClientMessage::Ping).await;
    ws.expect("pong", STEP, |m| {
        matches!(m, chorus_proto::signal::ServerMessage::Pong).then_some(())
    })
    .await
    .unwrap();
    ws.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_rooms_and_dead_links_are_refused_in_words() {
    let server = ChorusServer::spawn();
    let api = Api::of(&server);
    let mut ws = RawClient::hello(&server.ws_url, "Lost", None).await;
    ws.send_json(json!({"type": "join", "room": "nosuchroom", "offer": "v=0"}))
        .await;
    let (code, message) = ws.expect_error("room_not_found").await.unwrap();
    assert_eq!(code, ErrorCode::RoomNotFound, "{message}");
    assert!(
        message.contains("nosuchroom") || message.contains("link"),
        "{message}"
    );
    for path in [
        "/api/rooms/nosuchroom",
        "/api/rooms/..%2F..",
        "/api/rooms/a%20b",
    ] {
        let (status, body) = chorus_bench::rest::request(&server.url, "GET", path, None)
            .await
            .unwrap();
        assert_eq!(status, 404, "{path}: {body}");
    }
    let (status, body) = api.call("GET", "/api/v1/rooms/nosuchroom", None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("room_not_found")),
        "{body}"
    );
    let (status, body) = api
        .call(
            "PATCH",
            "/api/v1/rooms/nosuchroom/members/u_nobody",
            Some(json!({"seated": true})),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = api.call("DELETE", "/api/v1/rooms/nosuchroom", None).await;
    assert_eq!(status, 404, "{body}");

    // A room that ended: its link is dead.
    let created = api
        .create_room(json!({"name": "Ends", "owner_name": "Host", "capacity": 5, "seats": 2}))
        .await;
    let room = created.room.id.clone();
    let mut host = join_connected(
        peer_config(
            &server.ws_url,
            &room,
            "Host",
            None,
            Some(&created.owner_token),
        ),
        STEP,
    )
    .await
    .unwrap();
    let (status, body) = api
        .call("DELETE", &format!("/api/v1/rooms/{room}"), None)
        .await;
    let told = host.wait_for("left", STEP, |v| v.left).await;
    host.close().await;
    assert_eq!(status, 204, "ending a room over the server API: {body}");
    assert_eq!(
        told.unwrap(),
        LeftReason::RoomClosed,
        "the owner present must be told the room closed"
    );
    ws.send_json(json!({"type": "join", "room": room, "offer": "v=0"}))
        .await;
    let (code, message) = ws.expect_error("an ended room refused").await.unwrap();
    assert_eq!(
        code,
        ErrorCode::RoomNotFound,
        "joining an ended room: {message}"
    );
    assert!(!message.is_empty());
    let (status, body) = api.room(&room).await;
    if status == 200 {
        assert_eq!(
            body["room"]["state"], "ended",
            "an ended room must say so: {body}"
        );
    }
    ws.close().await;
}

/// Send `message` from `peer` and return the error it is answered with.
async fn refused(peer: &WebrtcPeer, message: ClientMessage) -> Result<(ErrorCode, String), String> {
    let before = peer.view().errors.len();
    peer.send(&message).map_err(|e| e.to_string())?;
    peer.wait_for("an error", STEP, |v| v.errors.get(before).cloned())
        .await
        .map_err(|e| format!("{message:?} was not refused: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_without_the_right_cannot_moderate() {
    let server = ChorusServer::spawn();
    let api = Api::of(&server);
    let created = api
        .create_room(json!({"name": "Rules", "owner_name": "Host", "capacity": 6,
                            "seats": 2, "seat_mode": "moderated"}))
        .await;
    let room = created.room.id.clone();
    let ws = &server.ws_url;
    let mut peers = Vec::new();
    for (name, token) in [
        ("Host", Some(created.owner_token.as_str())),
        ("Ana", None),
        ("Lis", None),
    ] {
        match join_connected(peer_config(ws, &room, name, None, token), STEP).await {
            Ok(peer) => peers.push(peer),
            Err(e) => {
                close_all(&mut peers).await;
                panic!("{e}");
            }
        }
    }
    let outcome = moderation_checks(&api, &room, &peers).await;
    close_all(&mut peers).await;
    if let Err(message) = outcome {
        panic!("{message}");
    }
}

/// The checks; an `Err` says what went wrong.
async fn moderation_checks(
    api: &Api,
    room: &chorus_proto::RoomId,
    peers: &[WebrtcPeer],
) -> Result<(), String> {
    let room = room.clone();
    {
        api.wait_members(&room, "owner + 2 confirmed members", STEP, |m| m.len() == 3)
            .await?;
        let ids: Vec<_> = peers.iter().map(|p| p.id().clone()).collect();
        let (host, ana, lis) = (&peers[0], &peers[1], &peers[2]);
        let before = api.room(&room).await.1;

        // A listener (plain member) tries every moderator action, on others and itself.
        let attempts = [
            ClientMessage::GrantSeat {
                participant: ids[2].clone(),
            },
            ClientMessage::GrantSeat {
                participant: ids[1].clone(),
            },
            ClientMessage::RevokeSeat {
                participant: ids[0].clone(),
            },
            ClientMessage::Mute {
                participant: ids[0].clone(),
                muted: true,
            },
            ClientMessage::Remove {
                participant: ids[1].clone(),
            },
            ClientMessage::Remove {
                participant: ids[0].clone(),
            },
            ClientMessage::SetModerator {
                participant: ids[2].clone(),
                moderator: true,
            },
            ClientMessage::EndRoom,
        ];
        for attempt in attempts {
            let (code, message) = refused(lis, attempt.clone()).await?;
            if code != ErrorCode::Forbidden
                || !message.contains("moderator") && !message.contains("owner")
            {
                return Err(format!(
                    "a listener's {attempt:?} got {code:?} {message:?}, expected forbidden in words naming who may"
                ));
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let after = api.room(&room).await.1;
        if after["members"] != before["members"]
            || after["room"] != before["room"]
            || after["present"] != 3
        {
            return Err(format!(
                "a refused moderator action changed the room\nbefore: {before}\nafter:  {after}"
            ));
        }
        for (name, peer) in ["Host", "Ana", "Lis"].iter().zip(peers) {
            let view = peer.view();
            if view.left.is_some() || !view.departures.is_empty() || view.participants.len() != 3 {
                return Err(format!(
                    "{name}'s view changed after refused actions: left {:?}, departures {:?}, {} present",
                    view.left,
                    view.departures,
                    view.participants.len()
                ));
            }
            if view
                .participants
                .values()
                .any(|p| p.muted_by_moderator || (p.speaker && p.id != ids[0]))
            {
                return Err(format!(
                    "{name} sees a mute or seat that was refused: {:?}",
                    view.participants
                ));
            }
        }

        // A moderator who is not the owner may not name moderators.
        host.send(&ClientMessage::SetModerator {
            participant: ids[1].clone(),
            moderator: true,
        })
        .map_err(|e| e.to_string())?;
        support::wait_info(ana, &ids[1], "Ana a moderator", STEP, |p| {
            p.role == chorus_proto::signal::Role::Moderator
        })
        .await?;
        let (code, message) = refused(
            ana,
            ClientMessage::SetModerator {
                participant: ids[2].clone(),
                moderator: true,
            },
        )
        .await?;
        if code != ErrorCode::Forbidden {
            return Err(format!(
                "a moderator naming a moderator got {code:?} {message:?}, expected forbidden (owner only)"
            ));
        }
        // Nobody may unseat or mute the owner, a moderator neither.
        for attempt in [
            ClientMessage::RevokeSeat {
                participant: ids[0].clone(),
            },
            ClientMessage::Mute {
                participant: ids[0].clone(),
                muted: true,
            },
            ClientMessage::Remove {
                participant: ids[0].clone(),
            },
        ] {
            let (code, message) = refused(ana, attempt.clone()).await?;
            if code != ErrorCode::Forbidden {
                return Err(format!(
                    "a moderator's {attempt:?} on the owner got {code:?} {message:?}, expected forbidden"
                ));
            }
        }
        // Unknown participant; no free seat.
        let (code, message) = refused(
            host,
            ClientMessage::GrantSeat {
                participant: serde_json::from_value(json!("p_nobody")).unwrap(),
            },
        )
        .await?;
        if code != ErrorCode::NotInRoom || message.is_empty() {
            return Err(format!(
                "granting a seat to nobody got {code:?} {message:?}"
            ));
        }
        host.send(&ClientMessage::GrantSeat {
            participant: ids[1].clone(),
        })
        .map_err(|e| e.to_string())?;
        support::wait_info(ana, &ids[1], "Ana seated", STEP, |p| p.speaker).await?;
        let (code, message) = refused(
            host,
            ClientMessage::GrantSeat {
                participant: ids[2].clone(),
            },
        )
        .await?;
        if code != ErrorCode::NoFreeSeat || !message.contains("taken") {
            return Err(format!(
                "a third seat in a room of 2 got {code:?} {message:?}, expected no_free_seat in words"
            ));
        }
        let lis_user = lis.user().to_string();
        let (status, body) = api
            .call(
                "PATCH",
                &format!("/api/v1/rooms/{room}/members/{lis_user}"),
                Some(json!({"seated": true})),
            )
            .await;
        if status != 409 || body["code"] != "no_free_seat" {
            return Err(format!(
                "the server API seating a third speaker answered {status} {body}"
            ));
        }
        let (status, body) = api
            .call(
                "PATCH",
                &format!("/api/v1/rooms/{room}/members/u_nobodyhere"),
                Some(json!({"seated": true})),
            )
            .await;
        if (200..300).contains(&status) || status >= 500 {
            return Err(format!(
                "seating a user who is no member answered {status} {body}"
            ));
        }
        let members = api.members(&room).await;
        let seated = members.iter().filter(|m| m["seated"] == true).count();
        let muted = members
            .iter()
            .filter(|m| m["muted_by_moderator"] == true)
            .count();
        if seated != 2 || muted != 0 || members.len() != 3 {
            return Err(format!(
                "after the refusals: {seated} seated, {muted} muted, {} members: {members:?}",
                members.len()
            ));
        }
        let (_, view) = api.room(&room).await;
        if view["room"]["state"] != serde_json::to_value(RoomState::Active).unwrap() {
            return Err(format!("the room is no longer active: {view}"));
        }
        Ok(())
    }
}

/// `docs/api.md`: PATCH applies changes "as the owner would … the owner cannot be
/// unseated or muted". Each attempt must be refused and leave the owner seated, unmuted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_api_cannot_unseat_or_mute_the_owner() {
    let server = ChorusServer::spawn();
    let api = Api::of(&server);
    let created = api
        .create_room(json!({"name": "Owner", "owner_name": "Host", "capacity": 4, "seats": 2}))
        .await;
    let (room, owner) = (created.room.id.clone(), created.owner.clone());
    let mut problems = Vec::new();
    for change in [json!({"seated": false}), json!({"muted": true})] {
        let (status, body) = api
            .call(
                "PATCH",
                &format!("/api/v1/rooms/{room}/members/{owner}"),
                Some(change.clone()),
            )
            .await;
        if (200..300).contains(&status) || status >= 500 {
            problems.push(format!(
                "PATCH {change} on the owner answered {status}: {body}"
            ));
        } else if body["code"] != "forbidden"
            || body["message"].as_str().unwrap_or_default().is_empty()
        {
            problems.push(format!(
                "PATCH {change} on the owner refused without forbidden in words: {status} {body}"
            ));
        }
    }
    let members = api.members(&room).await;
    let host = support::member(&members, &owner)
        .cloned()
        .unwrap_or_default();
    if host["seated"] != true || host["muted_by_moderator"] != false {
        problems.push(format!("the owner is now {host}"));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// `PUT /api/v1/rooms/{room}/members/{user}`: the app backend puts its user in a group
/// chat (a member, not seated; twice is once); an unknown room, a bad body or a full
/// room is refused in words and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_api_puts_members_in_and_refuses_bad_ones() {
    let server = ChorusServer::spawn();
    let api = Api::of(&server);
    let (status, body) = api
        .call(
            "PUT",
            "/api/v1/rooms/nosuchroom/members/u_nobody",
            Some(json!({"name": "Nobody"})),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    let created = api
        .create_room(json!({"name": "Pair", "owner_name": "Host", "capacity": 2, "seats": 2}))
        .await;
    let room = created.room.id.clone();
    let path = |user: &str| format!("/api/v1/rooms/{room}/members/{user}");
    for bad in [
        json!({}),
        json!({"name": ""}),
        json!({"name": "Ada", "role": "owner"}),
    ] {
        let (status, body) = api
            .call("PUT", &path("backend-ada"), Some(bad.clone()))
            .await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(
            !body["message"].as_str().unwrap_or_default().is_empty(),
            "{body}"
        );
    }
    for _ in 0..2 {
        let (status, body) = api
            .call("PUT", &path("backend-ada"), Some(json!({"name": "Ada"})))
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let members = api.members(&room).await;
    assert_eq!(members.len(), 2, "{members:?}");
    let ada = support::member(&members, "backend-ada").expect("Ada is a member");
    assert_eq!(
        (ada["role"].as_str(), ada["seated"].as_bool()),
        (Some("member"), Some(false))
    );
    let (status, body) = api
        .call("PUT", &path("backend-bo"), Some(json!({"name": "Bo"})))
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("room_full")),
        "{body}"
    );
    assert_eq!(api.members(&room).await.len(), 2);
}
