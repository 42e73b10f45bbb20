//! Durability: a group chat built up over the server API and WebSocket joins (members
//! confirmed by their media, a moderator named, a seat granted, a moderator mute, a hand
//! raised, a member removed) survives a restart of `chorus` on the same data folder:
//! the server API shows the same room, settings and members; its link still works; the
//! user tokens handed out before the restart still name the same users, who keep their
//! roles and seats; the removed user is still refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod support;

use std::time::{Duration, Instant};

use chorus_bench::webrtc_peer::{PeerError, WebrtcPeer};
use chorus_proto::signal::{ClientMessage, ErrorCode};
use common::ChorusServer;
use serde_json::{Value, json};
use support::{Api, close_all, join_connected, peer_config, wait_info};

const STEP: Duration = Duration::from_secs(15);

/// What must survive: the room and its settings, the group, the owner, the members.
fn durable(view: &Value) -> Value {
    let mut members = view["members"].as_array().cloned().unwrap_or_default();
    members.sort_by_key(|m| m["user"].as_str().unwrap_or_default().to_owned());
    json!({"room": view["room"], "group": view["group"], "owner": view["owner"], "members": members})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_chat_survives_a_restart() {
    let started = Instant::now();
    let server = ChorusServer::spawn();
    let mut peers = Vec::new();
    let before = build_up(&server, &mut peers).await;
    let (room, tokens, before) = match before {
        Ok(state) => state,
        Err(message) => {
            close_all(&mut peers).await;
            panic!("{message}\n--- server log ---\n{}", server.log())
        }
    };
    eprintln!("room built up after {:?}; restarting", started.elapsed());

    // The peers stay until the server is gone: a leave processed before the kill would
    // give up seats and hands (as a member who leaves does), one processed after would
    // not; which came first was a race. Killed with everyone present, what is on disk is
    // exactly `before`.
    let server = server.restart();
    close_all(&mut peers).await;
    peers.clear();
    let outcome = after_restart(&server, &room, &tokens, &before, &mut peers).await;
    close_all(&mut peers).await;
    if let Err(message) = outcome {
        panic!(
            "{message}\n--- server log (both runs) ---\n{}",
            server.log()
        );
    }
    eprintln!("done after {:?}", started.elapsed());
}

/// SIGTERM (what systemd sends): every client is told `left` (`server_restarting`) and
/// sees close code 1012 with a reason, the process exits on its own, and after the
/// restart the members have their seats: a restart is not the members leaving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_tells_clients_and_keeps_their_seats() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let mut server = ChorusServer::spawn();
    let api = Api::of(&server);
    let created = api
        .create_room(json!({"name": "Restart", "owner_name": "Host", "capacity": 5, "seats": 2}))
        .await;
    let room = created.room.id.clone();
    let mut peers = vec![match join_connected(
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
    {
        Ok(peer) => peer,
        Err(e) => panic!("{e}\n{}", server.log()),
    }];
    // Bo is seated by the owner: a member who left would give that seat up.
    match join_connected(peer_config(&server.ws_url, &room, "Bo", None, None), STEP).await {
        Ok(peer) => peers.push(peer),
        Err(e) => {
            close_all(&mut peers).await;
            panic!("{e}\n{}", server.log());
        }
    }
    let bo_user = peers[1].user().to_string();
    peers[0]
        .send(&ClientMessage::GrantSeat {
            participant: peers[1].id().clone(),
        })
        .unwrap();
    let seated = api
        .wait_members(&room, "Bo seated", STEP, |m| {
            support::member(m, &bo_user).is_some_and(|b| b["seated"] == true)
        })
        .await;
    if let Err(e) = seated {
        close_all(&mut peers).await;
        panic!("{e}");
    }
    let (mut lobby, _) = tokio_tungstenite::connect_async(&server.ws_url)
        .await
        .unwrap();
    lobby
        .send(Message::Text(
            r#"{"type":"hello","version":1,"name":"Lobby"}"#.into(),
        ))
        .await
        .unwrap();
    let status = server.terminate(Duration::from_secs(20));
    assert!(
        status.is_some_and(|s| s.success()),
        "chorus did not stop cleanly on SIGTERM: {status:?}\n{}",
        server.log()
    );
    let host = &peers[0];
    let told = host
        .wait_for("left (server_restarting)", STEP, |v| v.left)
        .await;
    assert_eq!(
        told.ok(),
        Some(chorus_proto::signal::LeftReason::ServerRestarting),
        "{}",
        server.log()
    );
    let closed = tokio::time::timeout(STEP, async {
        while let Some(frame) = lobby.next().await {
            if let Ok(Message::Close(frame)) = frame {
                return frame.map(|f| (u16::from(f.code), f.reason.to_string()));
            }
        }
        None
    })
    .await
    .expect("the lobby session is closed");
    let (code, reason) = closed.expect("a close frame with a code");
    assert_eq!(code, chorus_proto::signal::close::SERVER_RESTARTING);
    assert!(reason.contains("restarting"), "{reason}");
    close_all(&mut peers).await;

    let server = server.restart();
    let api = Api::of(&server);
    let members = api.members(&room).await;
    let bo = support::member(&members, &bo_user).cloned();
    assert_eq!(
        bo.as_ref().map(|b| b["seated"].clone()),
        Some(Value::Bool(true)),
        "Bo's seat across a graceful restart: {members:?}"
    );
}

/// Users' tokens from before the restart.
struct Tokens {
    owner: String,
    ana: String,
    bo: String,
    rex: String,
}

async fn build_up(
    server: &ChorusServer,
    peers: &mut Vec<WebrtcPeer>,
) -> Result<(chorus_proto::RoomId, Tokens, Value), String> {
    let api = Api::of(server);
    let created = api
        .create_room(
            json!({"name": "Durable", "owner_name": "Host", "capacity": 7,
                            "seats": 3, "seat_mode": "moderated"}),
        )
        .await;
    let room = created.room.id.clone();
    let ws = &server.ws_url;
    for (name, token) in [
        ("Host", Some(created.owner_token.as_str())),
        ("Ana", None),
        ("Bo", None),
        ("Cy", None),
        ("Rex", None),
    ] {
        peers.push(join_connected(peer_config(ws, &room, name, None, token), STEP).await?);
    }
    api.wait_members(&room, "owner + 4 confirmed members", STEP, |m| m.len() == 5)
        .await?;
    let ids: Vec<_> = peers.iter().map(|p| p.id().clone()).collect();
    let host = &peers[0];
    // Ana a moderator; Bo seated and muted by a moderator; Cy's hand up; Rex removed.
    host.send(&ClientMessage::SetModerator {
        participant: ids[1].clone(),
        moderator: true,
    })
    .map_err(|e| e.to_string())?;
    host.send(&ClientMessage::GrantSeat {
        participant: ids[2].clone(),
    })
    .map_err(|e| e.to_string())?;
    host.send(&ClientMessage::Mute {
        participant: ids[2].clone(),
        muted: true,
    })
    .map_err(|e| e.to_string())?;
    peers[3]
        .send(&ClientMessage::RequestSeat)
        .map_err(|e| e.to_string())?;
    host.send(&ClientMessage::Remove {
        participant: ids[4].clone(),
    })
    .map_err(|e| e.to_string())?;
    let users: Vec<String> = peers.iter().map(|p| p.user().to_string()).collect();
    let members = api
        .wait_members(
            &room,
            "moderator, seat, mute, hand and removal applied",
            STEP,
            |m| {
                let get = |u: &str| support::member(m, u).cloned().unwrap_or(Value::Null);
                get(&users[1])["role"] == "moderator"
                    && get(&users[2])["seated"] == true
                    && get(&users[2])["muted_by_moderator"] == true
                    && get(&users[3])["hand_raised"] == true
                    && support::member(m, &users[4]).is_none()
            },
        )
        .await?;
    if members.len() != 4 {
        return Err(format!(
            "expected 4 members before the restart: {members:?}"
        ));
    }
    let (_, view) = api.room(&room).await;
    let settings = &view["room"];
    if settings["capacity"] != 7
        || settings["seats"] != 3
        || settings["seat_mode"] != "moderated"
        || settings["state"] != "active"
        || settings["link"] != format!("/r/{room}").as_str()
    {
        return Err(format!(
            "the room's settings are not as created: {settings}"
        ));
    }
    let tokens = Tokens {
        owner: created.owner_token,
        ana: peers[1].user_token().to_owned(),
        bo: peers[2].user_token().to_owned(),
        rex: peers[4].user_token().to_owned(),
    };
    Ok((room, tokens, durable(&view)))
}

async fn after_restart(
    server: &ChorusServer,
    room: &chorus_proto::RoomId,
    tokens: &Tokens,
    before: &Value,
    peers: &mut Vec<WebrtcPeer>,
) -> Result<(), String> {
    let api = Api::of(server);
    let (status, view) = api.room(room).await;
    if status != 200 {
        return Err(format!(
            "after the restart the server API does not know the room: {status} {view}"
        ));
    }
    let after = durable(&view);
    if &after != before {
        return Err(format!(
            "the group chat changed across the restart\nbefore: {before:#}\nafter:  {after:#}"
        ));
    }
    if view["present"] != 0 {
        return Err(format!(
            "nobody is in the room after a restart, yet present = {}",
            view["present"]
        ));
    }
    let listed = api.rooms().await;
    if listed.len() != 1 || listed[0]["room"]["id"] != room.as_str() {
        return Err(format!("the server API lists {listed:?}"));
    }
    let (status, public) =
        chorus_bench::rest::request(&server.url, "GET", &format!("/api/rooms/{room}"), None)
            .await
            .map_err(|e| e.to_string())?;
    if status != 200 || !public.contains("\"state\":\"active\"") {
        return Err(format!(
            "the room's page lookup after the restart: {status} {public}"
        ));
    }

    // The link works: a new guest joins, and becomes a member.
    let ws = &server.ws_url;
    peers.push(join_connected(peer_config(ws, room, "Newcomer", None, None), STEP).await?);
    api.wait_members(room, "the newcomer confirmed", STEP, |m| m.len() == 5)
        .await?;

    // Old tokens still name the same users, with their roles and seats.
    let bo = join_connected(peer_config(ws, room, "Bo", None, Some(&tokens.bo)), STEP).await?;
    peers.push(bo);
    let bo = peers.last().unwrap();
    let bo_user = before["members"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["name"] == "Bo"))
        .map(|m| m["user"].clone())
        .unwrap_or_default();
    if bo_user != bo.user().as_str() {
        return Err(format!(
            "Bo's token from before the restart made user {}, not {bo_user}: user tokens do not survive a restart",
            bo.user()
        ));
    }
    wait_info(
        bo,
        bo.id(),
        "Bo back in his seat, still muted by a moderator",
        STEP,
        |p| p.speaker && p.muted_by_moderator,
    )
    .await?;
    let ana = join_connected(peer_config(ws, room, "Ana", None, Some(&tokens.ana)), STEP).await?;
    peers.push(ana);
    let ana = peers.last().unwrap();
    wait_info(ana, ana.id(), "Ana back as a moderator", STEP, |p| {
        p.role == chorus_proto::signal::Role::Moderator
    })
    .await?;
    let host = join_connected(
        peer_config(ws, room, "Host", None, Some(&tokens.owner)),
        STEP,
    )
    .await?;
    peers.push(host);
    let host = peers.last().unwrap();
    wait_info(
        host,
        host.id(),
        "the owner back as owner, seated",
        STEP,
        |p| p.role == chorus_proto::signal::Role::Owner && p.speaker,
    )
    .await?;

    // The removed user is still refused.
    match WebrtcPeer::join(peer_config(ws, room, "Rex", None, Some(&tokens.rex))).await {
        Ok(mut rex) => {
            rex.close().await;
            return Err("Rex, removed before the restart, joined again after it".into());
        }
        Err(PeerError::Server {
            code: ErrorCode::Forbidden,
            message,
        }) if message.contains("removed") => {}
        Err(e) => {
            return Err(format!(
                "Rex coming back failed otherwise than `forbidden, removed`: {e}"
            ));
        }
    }
    let members = api.members(room).await;
    if members.len() != 5 {
        return Err(format!(
            "expected the 4 members and the newcomer after the restart: {members:?}"
        ));
    }
    Ok(())
}

/// What a restart leaves behind is reconciled: a member who does not come back within
/// the grace gives up their seat and raised hand (as a member who leaves does), one who
/// comes back keeps theirs, and the owner keeps the owner's seat. Membership stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seats_and_hands_of_members_not_back_after_a_restart_are_given_up() {
    const GRACE: &[&str] = &["--rejoin-grace-secs", "8"];
    let server = ChorusServer::spawn_with(GRACE);
    let api = Api::of(&server);
    let created = api
        .create_room(json!({"name": "Grace", "owner_name": "Host", "capacity": 6,
                            "seats": 3, "seat_mode": "moderated"}))
        .await;
    let room = created.room.id.clone();
    let mut peers = Vec::new();
    let built: Result<(), String> = async {
        for (name, token) in [
            ("Host", Some(created.owner_token.as_str())),
            ("Ana", None),
            ("Bo", None),
            ("Cy", None),
        ] {
            let config = peer_config(&server.ws_url, &room, name, None, token);
            peers.push(join_connected(config, STEP).await?);
        }
        let host = &peers[0];
        for seated in [1, 2] {
            host.send(&ClientMessage::GrantSeat {
                participant: peers[seated].id().clone(),
            })
            .map_err(|e| e.to_string())?;
        }
        peers[3]
            .send(&ClientMessage::RequestSeat)
            .map_err(|e| e.to_string())?;
        let users: Vec<String> = peers.iter().map(|p| p.user().to_string()).collect();
        api.wait_members(&room, "Ana and Bo seated, Cy's hand up", STEP, |m| {
            let get = |u: &str| support::member(m, u).cloned().unwrap_or(Value::Null);
            get(&users[1])["seated"] == true
                && get(&users[2])["seated"] == true
                && get(&users[3])["hand_raised"] == true
        })
        .await
        .map(|_| ())
    }
    .await;
    if let Err(e) = built {
        close_all(&mut peers).await;
        panic!("{e}\n{}", server.log());
    }
    let users: Vec<String> = peers.iter().map(|p| p.user().to_string()).collect();
    let ana_token = peers[1].user_token().to_owned();
    // Killed with everyone present; only Ana comes back.
    let server = server.restart_with(GRACE);
    close_all(&mut peers).await;
    peers.clear();
    let api = Api::of(&server);
    let outcome: Result<(), String> = async {
        let config = peer_config(&server.ws_url, &room, "Ana", None, Some(&ana_token));
        peers.push(join_connected(config, STEP).await?);
        let members = api
            .wait_members(
                &room,
                "Bo's seat and Cy's hand given up",
                Duration::from_secs(30),
                |m| {
                    let get = |u: &str| support::member(m, u).cloned().unwrap_or(Value::Null);
                    get(&users[2])["seated"] == false && get(&users[3])["hand_raised"] == false
                },
            )
            .await?;
        let get = |u: &str| support::member(&members, u).cloned().unwrap_or(Value::Null);
        if get(&users[0])["seated"] != true || get(&users[1])["seated"] != true {
            return Err(format!(
                "the owner and Ana (back in time) must keep their seats: {members:?}"
            ));
        }
        if members.len() != 4 {
            return Err(format!("membership is kept: {members:?}"));
        }
        Ok(())
    }
    .await;
    close_all(&mut peers).await;
    if let Err(e) = outcome {
        panic!("{e}\n--- server log (both runs) ---\n{}", server.log());
    }
}
