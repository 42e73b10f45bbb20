//! Bad input from one client costs that client an error frame (or its connection), never
//! the process, another session or a room.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use chorus_proto::signal::{ErrorCode, MAX_FRAME_BYTES, PROTOCOL_VERSION, ServerMessage};
use common::ChorusServer;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(server: &ChorusServer) -> Ws {
    let (ws, _) = tokio_tungstenite::connect_async(&server.ws_url)
        .await
        .unwrap();
    ws
}

/// The next server frame, skipping none; `None` when the connection is closed.
async fn next(ws: &mut Ws) -> Option<ServerMessage> {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a server frame within 10 s");
        match frame {
            Some(Ok(Message::Text(text))) => return Some(serde_json::from_str(&text).unwrap()),
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
            Some(Ok(_)) => continue,
        }
    }
}

async fn send(ws: &mut Ws, text: &str) {
    ws.send(Message::Text(text.into())).await.unwrap();
}

async fn expect_error(ws: &mut Ws, code: ErrorCode) -> String {
    match next(ws).await {
        Some(ServerMessage::Error { code: got, message }) => {
            assert_eq!(got, code, "error code (message: {message})");
            assert!(!message.is_empty());
            message
        }
        other => panic!("expected error {code:?}, got {other:?}"),
    }
}

async fn still_alive(ws: &mut Ws) {
    send(ws, r#"{"type":"ping"}"#).await;
    assert_eq!(
        next(ws).await,
        Some(ServerMessage::Pong),
        "the session must carry on"
    );
}

async fn hello(ws: &mut Ws, name: &str) {
    let frame = serde_json::json!({"type": "hello", "version": PROTOCOL_VERSION, "name": name});
    send(ws, &frame.to_string()).await;
    assert!(matches!(
        next(ws).await,
        Some(ServerMessage::Welcome { .. })
    ));
}

#[tokio::test]
async fn bad_frames_get_errors_and_the_session_carries_on() {
    let mut server = ChorusServer::spawn();
    let mut bystander = connect(&server).await;
    hello(&mut bystander, "Bystander").await;

    let mut ws = connect(&server).await;
    send(
        &mut ws,
        r#"{"type":"create_room","name":"x","offer":"v=0"}"#,
    )
    .await;
    expect_error(&mut ws, ErrorCode::HelloFirst).await;
    hello(&mut ws, "Mallory").await;

    send(&mut ws, "{ not json").await;
    expect_error(&mut ws, ErrorCode::Malformed).await;
    send(&mut ws, r#"{"type":"teleport"}"#).await;
    expect_error(&mut ws, ErrorCode::Malformed).await;
    send(
        &mut ws,
        r#"{"type":"join","room":"../../etc","offer":"v=0"}"#,
    )
    .await;
    expect_error(&mut ws, ErrorCode::Malformed).await;
    ws.send(Message::Binary(vec![0u8, 1, 2].into()))
        .await
        .unwrap();
    expect_error(&mut ws, ErrorCode::Malformed).await;
    let big = format!(
        r#"{{"type":"create_room","name":"{}","offer":""}}"#,
        "a".repeat(MAX_FRAME_BYTES + 10)
    );
    send(&mut ws, &big).await;
    let message = expect_error(&mut ws, ErrorCode::FrameTooLarge).await;
    assert!(message.contains("at most"), "{message}");
    send(
        &mut ws,
        r#"{"type":"create_room","name":"   ","offer":"v=0"}"#,
    )
    .await;
    expect_error(&mut ws, ErrorCode::InvalidInput).await;
    // Room settings out of range: each refused in words, nothing created.
    for (capacity, seats, words) in [
        (10, 11, "cannot have"),
        (-5, 1, "capacity"),
        (10, 0, "seats"),
        (99_999_999, 3, "capacity"),
    ] {
        let frame = serde_json::json!({"type": "create_room", "name": "R", "capacity": capacity, "seats": seats, "offer": "v=0"});
        send(&mut ws, &frame.to_string()).await;
        let message = expect_error(&mut ws, ErrorCode::InvalidInput).await;
        assert!(message.contains(words), "{message}");
    }
    // Moderator actions outside a room.
    send(
        &mut ws,
        r#"{"type":"grant_seat","participant":"p_someone"}"#,
    )
    .await;
    expect_error(&mut ws, ErrorCode::NotInRoom).await;
    send(
        &mut ws,
        r#"{"type":"join","room":"nosuchroom","offer":"v=0"}"#,
    )
    .await;
    let message = expect_error(&mut ws, ErrorCode::RoomNotFound).await;
    assert!(message.contains("nosuchroom"), "{message}");
    send(&mut ws, r#"{"type":"leave"}"#).await;
    expect_error(&mut ws, ErrorCode::NotInRoom).await;
    still_alive(&mut ws).await;

    // A frame beyond the hard limit closes that one connection; nobody else notices.
    let huge = "x".repeat(2 << 20);
    let _ = ws.send(Message::Text(huge.into())).await;
    assert_eq!(
        next(&mut ws).await,
        None,
        "an enormous frame closes its connection"
    );
    still_alive(&mut bystander).await;
    assert!(server.is_running(), "the server must survive bad input");
}

#[tokio::test]
async fn wrong_protocol_version_is_refused_in_words() {
    let server = ChorusServer::spawn();
    let mut ws = connect(&server).await;
    send(&mut ws, r#"{"type":"hello","version":99,"name":"Future"}"#).await;
    let message = expect_error(&mut ws, ErrorCode::UnsupportedVersion).await;
    assert!(message.contains("version"), "{message}");
    assert_eq!(
        next(&mut ws).await,
        None,
        "the session is closed after a version mismatch"
    );
}

#[tokio::test]
async fn a_refused_offer_leaves_the_room_as_it_was() {
    let server = ChorusServer::spawn();
    let settings = chorus_bench::rest::RoomSettings::open("Offers", 10, 3);
    let room = chorus_bench::rest::create_room(&server.url, &server.api_key(), &settings)
        .await
        .unwrap();
    let mut other = connect(&server).await;
    hello(&mut other, "Other").await;
    let mut ws = connect(&server).await;
    hello(&mut ws, "Garbage").await;
    let join = serde_json::json!({"type": "join", "room": room.id, "offer": "this is not SDP"});
    send(&mut ws, &join.to_string()).await;
    expect_error(&mut ws, ErrorCode::BadOffer).await;
    let path = format!("/api/rooms/{}", room.id);
    let (status, body) = chorus_bench::rest::request(&server.url, "GET", &path, None)
        .await
        .unwrap();
    assert_eq!(status, 200);
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        body["participants"], 0,
        "the refused join must not hold a place: {body}"
    );
    still_alive(&mut ws).await;
    still_alive(&mut other).await;
}

#[tokio::test]
async fn server_api_refuses_bad_requests_clearly() {
    let server = ChorusServer::spawn();
    let key = server.api_key();
    let signed = |method: &'static str, path: &'static str, body: Option<&'static str>| {
        let (url, key) = (server.url.clone(), key.clone());
        async move {
            chorus_bench::rest::signed_request(&url, &key, method, path, body)
                .await
                .unwrap()
        }
    };
    // Unsigned, and signed with the wrong secret.
    let (status, body) = chorus_bench::rest::request(&server.url, "GET", "/api/v1/rooms", None)
        .await
        .unwrap();
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("not signed"), "{body}");
    let forged = chorus_proto::api_key::ApiKey {
        key: key.key.clone(),
        secret: "00".repeat(32),
    };
    let (status, body) =
        chorus_bench::rest::signed_request(&server.url, &forged, "GET", "/api/v1/rooms", None)
            .await
            .unwrap();
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("signature does not match"), "{body}");
    // Bad bodies and settings.
    let (status, body) = signed("POST", "/api/v1/rooms", Some("{oops")).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("\"code\":\"malformed\""), "{body}");
    let (status, body) = signed(
        "POST",
        "/api/v1/rooms",
        Some(r#"{"name":"R","owner_name":"A","capacity":3,"seats":4}"#),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("invalid_input") && body.contains("cannot have"),
        "{body}"
    );
    let (status, body) = signed(
        "POST",
        "/api/v1/rooms",
        Some(r#"{"name":"","owner_name":"A"}"#),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = signed("GET", "/api/v1/rooms/unknown", None).await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("room_not_found"), "{body}");
    let (status, body) = signed("DELETE", "/api/v1/rooms/unknown/members/u_nobody", None).await;
    assert_eq!(status, 404, "{body}");
    // Nothing was created by any of that.
    let (status, body) = signed("GET", "/api/v1/rooms", None).await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["rooms"],
        serde_json::json!([])
    );
    // A good request works, and the public room lookup sees it.
    let (status, body) = signed(
        "POST",
        "/api/v1/rooms",
        Some(r#"{"name":"Fine","owner_name":"Ada","capacity":4,"seats":2}"#),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let created: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(created["room"]["state"], "active");
    assert_eq!(created["members"][0]["role"], "owner");
    let path = format!("/api/rooms/{}", created["room"]["id"].as_str().unwrap());
    let (status, _) = chorus_bench::rest::request(&server.url, "GET", &path, None)
        .await
        .unwrap();
    assert_eq!(status, 200);
}
