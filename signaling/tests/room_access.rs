//! Who may come in (issue 14 finding 5): a moderator locks a room (newcomers refused in
//! words, members still come back) and unlocks it; a room for signed-in users only
//! refuses guests of the page, so a removed user cannot come straight back as a new
//! guest. Real peers (the `webrtc` crate) through the real server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod support;

use std::time::Duration;

use chorus_bench::webrtc_peer::{PeerError, WebrtcPeer};
use chorus_proto::signal::{ClientMessage, ErrorCode};
use common::ChorusServer;
use serde_json::json;
use support::{Api, close_all, join_connected, peer_config};

const STEP: Duration = Duration::from_secs(20);

/// A join that must be refused with `code`, in words containing `words`.
async fn refused(
    config: chorus_bench::webrtc_peer::PeerConfig,
    code: ErrorCode,
    words: &str,
) -> Result<(), String> {
    let name = config.name.clone();
    match WebrtcPeer::join(config).await {
        Err(PeerError::Server { code: got, message }) if got == code && message.contains(words) => {
            Ok(())
        }
        Err(e) => Err(format!(
            "{name} should be refused with {code:?} ({words:?}), got: {e}"
        )),
        Ok(mut peer) => {
            peer.close().await;
            Err(format!("{name} got in; it should be refused with {code:?}"))
        }
    }
}

async fn wait_locked(api: &Api, room: &chorus_proto::RoomId, locked: bool) -> Result<(), String> {
    let deadline = std::time::Instant::now() + STEP;
    loop {
        let (_, view) = api.room(room).await;
        if view["room"]["locked"] == locked {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(format!("the room never showed locked = {locked}: {view}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Close the peers whatever happened; a failure panics with the server's log.
async fn settle(server: &ChorusServer, peers: &mut [WebrtcPeer], outcome: Result<(), String>) {
    close_all(peers).await;
    if let Err(message) = outcome {
        panic!("{message}\n--- server log ---\n{}", server.log());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_room_refuses_newcomers_and_lets_its_members_back() {
    let server = ChorusServer::spawn();
    let mut peers = Vec::new();
    let outcome = locked(&server, &mut peers).await;
    settle(&server, &mut peers, outcome).await;
}

async fn locked(server: &ChorusServer, peers: &mut Vec<WebrtcPeer>) -> Result<(), String> {
    let api = Api::of(server);
    let created = api
        .create_room(json!({"name": "Locked", "owner_name": "Host", "seat_mode": "open"}))
        .await;
    let room = created.room.id.clone();
    let ws = &server.ws_url;
    peers.push(
        join_connected(
            peer_config(ws, &room, "Host", None, Some(&created.owner_token)),
            STEP,
        )
        .await?,
    );
    peers.push(join_connected(peer_config(ws, &room, "Member", None, None), STEP).await?);
    let member_token = peers[1].user_token().to_owned();
    // The owner locks the room: everyone present is told, a newcomer is refused.
    peers[0]
        .send(&ClientMessage::SetAccess {
            locked: Some(true),
            entry: None,
        })
        .map_err(|e| e.to_string())?;
    wait_locked(&api, &room, true).await?;
    refused(
        peer_config(ws, &room, "Newcomer", None, None),
        ErrorCode::Forbidden,
        "locked",
    )
    .await?;
    // A member that leaves comes back.
    let mut member = peers.remove(1);
    member.close().await;
    peers.push(
        join_connected(
            peer_config(ws, &room, "Member", None, Some(&member_token)),
            STEP,
        )
        .await?,
    );
    // A member that is not a moderator cannot unlock it.
    peers[1]
        .send(&ClientMessage::SetAccess {
            locked: Some(false),
            entry: None,
        })
        .map_err(|e| e.to_string())?;
    peers[1]
        .wait_for("forbidden to unlock", STEP, |v| {
            v.errors
                .iter()
                .any(|(code, _)| *code == ErrorCode::Forbidden)
                .then_some(())
        })
        .await
        .map_err(|e| e.to_string())?;
    // The app backend unlocks it over the server API: the newcomer gets in.
    let (status, view) = api
        .call(
            "PATCH",
            &format!("/api/v1/rooms/{room}"),
            Some(json!({"locked": false})),
        )
        .await;
    if status != 200 || view["room"]["locked"] != false {
        return Err(format!("PATCH locked=false: {status} {view}"));
    }
    peers.push(join_connected(peer_config(ws, &room, "Newcomer", None, None), STEP).await?);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_for_signed_in_users_refuses_guests_and_a_removed_user_stays_out() {
    let server = ChorusServer::spawn();
    let mut peers = Vec::new();
    let outcome = signed_in_only(&server, &mut peers).await;
    settle(&server, &mut peers, outcome).await;
}

async fn signed_in_only(server: &ChorusServer, peers: &mut Vec<WebrtcPeer>) -> Result<(), String> {
    let api = Api::of(server);
    let created = api
        .create_room(json!({"name": "Members", "owner_name": "Host", "entry": "signed_in"}))
        .await;
    let room = created.room.id.clone();
    if created.body["room"]["entry"] != "signed_in" {
        return Err(format!(
            "the room view should say entry signed_in: {}",
            created.body
        ));
    }
    let ws = &server.ws_url;
    refused(
        peer_config(ws, &room, "Guest", None, None),
        ErrorCode::Unauthorized,
        "signed-in users only",
    )
    .await?;
    // A user the app backend signed in gets in.
    let (status, signed) = api
        .call("POST", "/api/v1/users", Some(json!({"name": "Ada"})))
        .await;
    let token = signed["user_token"].as_str().unwrap_or_default().to_owned();
    let user = signed["user"].as_str().unwrap_or_default().to_owned();
    if status != 200 || token.is_empty() {
        return Err(format!("POST /users: {status} {signed}"));
    }
    peers.push(join_connected(peer_config(ws, &room, "Ada", None, Some(&token)), STEP).await?);
    // Removed: the account stays out, and as a guest it is refused anyway.
    let (status, body) = api
        .call(
            "DELETE",
            &format!("/api/v1/rooms/{room}/members/{user}"),
            None,
        )
        .await;
    if status != 204 {
        return Err(format!("removing Ada: {status} {body}"));
    }
    peers[0]
        .wait_for("Ada told she was removed", STEP, |v| v.left)
        .await
        .map_err(|e| e.to_string())?;
    refused(
        peer_config(ws, &room, "Ada", None, Some(&token)),
        ErrorCode::Forbidden,
        "removed",
    )
    .await?;
    refused(
        peer_config(ws, &room, "Ada again", None, None),
        ErrorCode::Unauthorized,
        "signed-in users only",
    )
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newcomers_knock_and_a_moderator_lets_them_in_or_not() {
    let server = ChorusServer::spawn();
    let mut peers = Vec::new();
    let mut clients = Vec::new();
    let outcome = knocking(&server, &mut peers, &mut clients).await;
    for client in clients {
        client.close().await;
    }
    settle(&server, &mut peers, outcome).await;
}

/// A newcomer that knocks (a raw session with a real offer): it is told `knocking`.
async fn knock(
    server: &ChorusServer,
    room: &chorus_proto::RoomId,
    name: &str,
) -> Result<support::RawClient, String> {
    let (mut media, offer) = support::new_offer().await?;
    media.close().await;
    let mut client = support::RawClient::hello(&server.ws_url, name, None).await;
    client.send_join(room, offer).await;
    client
        .expect("knocking", STEP, |m| {
            matches!(m, chorus_proto::signal::ServerMessage::Knocking { .. }).then_some(())
        })
        .await?;
    Ok(client)
}

async fn knocking(
    server: &ChorusServer,
    peers: &mut Vec<WebrtcPeer>,
    clients: &mut Vec<support::RawClient>,
) -> Result<(), String> {
    let api = Api::of(server);
    let created = api
        .create_room(json!({"name": "Door", "owner_name": "Host", "entry": "knock"}))
        .await;
    let room = created.room.id.clone();
    let ws = &server.ws_url;
    peers.push(
        join_connected(
            peer_config(ws, &room, "Host", None, Some(&created.owner_token)),
            STEP,
        )
        .await?,
    );
    // Ada knocks; the owner sees her at the door and lets her in: her join goes ahead.
    let ada = tokio::spawn(WebrtcPeer::join(peer_config(ws, &room, "Ada", None, None)));
    let at_door = peers[0]
        .wait_for("Ada at the door", STEP, |v| {
            v.knocks.iter().find(|k| k.name == "Ada").cloned()
        })
        .await
        .map_err(|e| e.to_string())?;
    peers[0]
        .send(&ClientMessage::Admit {
            user: at_door.user.clone(),
            admit: true,
        })
        .map_err(|e| e.to_string())?;
    let ada = ada
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("Ada, let in, could not join: {e}"))?;
    peers.push(ada);
    support::wait_self_connected(&peers[1], "Ada", STEP).await?;
    peers[0]
        .wait_for("nobody at the door", STEP, |v| {
            v.knocks.is_empty().then_some(())
        })
        .await
        .map_err(|e| e.to_string())?;
    // Bo knocks and is not let in: told so in words.
    clients.push(knock(server, &room, "Bo").await?);
    let bo = peers[0]
        .wait_for("Bo at the door", STEP, |v| {
            v.knocks.iter().find(|k| k.name == "Bo").cloned()
        })
        .await
        .map_err(|e| e.to_string())?;
    peers[0]
        .send(&ClientMessage::Admit {
            user: bo.user,
            admit: false,
        })
        .map_err(|e| e.to_string())?;
    let (code, message) = clients[0].expect_error("Bo not let in").await?;
    if code != ErrorCode::Forbidden || !message.contains("did not let you in") {
        return Err(format!(
            "Bo should be told he was not let in, got {code:?} {message}"
        ));
    }
    // Cy knocks and gives up: the door is empty again.
    clients.push(knock(server, &room, "Cy").await?);
    peers[0]
        .wait_for("Cy at the door", STEP, |v| {
            v.knocks.iter().any(|k| k.name == "Cy").then_some(())
        })
        .await
        .map_err(|e| e.to_string())?;
    clients[1].send(&ClientMessage::Leave).await;
    peers[0]
        .wait_for("Cy gone from the door", STEP, |v| {
            v.knocks.is_empty().then_some(())
        })
        .await
        .map_err(|e| e.to_string())?;
    // A member that is not a moderator cannot let anyone in.
    clients.push(knock(server, &room, "Di").await?);
    let di = peers[1]
        .wait_for(
            "nothing shown to a member",
            Duration::from_millis(500),
            |v| (!v.knocks.is_empty()).then_some(()),
        )
        .await;
    if di.is_ok() {
        return Err("a member who is not a moderator was shown the door".into());
    }
    Ok(())
}
