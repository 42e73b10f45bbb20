//! The WebSocket edge under pressure: a burst of frames from a client that reads is
//! answered in full (the reader waits for the outbox), a flood past the rate limit gets
//! `rate_limited`, and every close the server starts carries a code and a reason: a frame
//! over 1 MiB (1009), the wrong protocol version, no `hello` in time, no answer to pings.
//! Also: names that cannot be seen or that turn text around, unknown fields, and the
//! memory an idle session holds.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use chorus_proto::signal::{ErrorCode, PROTOCOL_VERSION, ServerMessage, close};
use common::ChorusServer;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const WAIT: Duration = Duration::from_secs(15);

async fn connect(server: &ChorusServer) -> Ws {
    tokio_tungstenite::connect_async(&server.ws_url)
        .await
        .unwrap()
        .0
}

async fn hello(ws: &mut Ws, name: &str) {
    let frame = serde_json::json!({"type": "hello", "version": PROTOCOL_VERSION, "name": name});
    ws.send(Message::Text(frame.to_string().into()))
        .await
        .unwrap();
    match next(ws).await {
        Next::Frame(ServerMessage::Welcome { .. }) => {}
        other => panic!("expected welcome, got {other:?}"),
    }
}

#[derive(Debug)]
enum Next {
    Frame(ServerMessage),
    /// The server closed: its code and reason.
    Closed(Option<(u16, String)>),
    /// The socket broke (no close frame).
    Broken(#[allow(dead_code)] String),
}

/// The next server frame or the close, within [`WAIT`] (pings do not count).
async fn next(ws: &mut Ws) -> Next {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let frame = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("a server frame within the wait");
        match frame {
            Some(Ok(Message::Text(text))) => {
                return Next::Frame(serde_json::from_str(&text).unwrap());
            }
            Some(Ok(Message::Close(frame))) => {
                return Next::Closed(frame.map(|f| (u16::from(f.code), f.reason.to_string())));
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Next::Broken(e.to_string()),
            None => return Next::Broken("the stream ended".into()),
        }
    }
}

/// Read until the server's close; its code and reason (panics on anything else).
async fn expect_close(ws: &mut Ws, what: &str) -> (u16, String) {
    loop {
        match next(ws).await {
            Next::Frame(_) => {}
            Next::Closed(Some(close)) => return close,
            other => panic!("{what}: expected a close with a code, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_burst_from_a_reading_client_is_answered_in_full() {
    // A rate limit above the burst: this is about backpressure alone.
    let mut server = ChorusServer::spawn_with(&["--ws-rate", "5000", "--ws-burst", "5000"]);
    let mut ws = connect(&server).await;
    hello(&mut ws, "Burst").await;
    const N: usize = 1000;
    let (mut sink, mut stream) = ws.split();
    let reader = tokio::spawn(async move {
        let mut pongs = 0;
        while pongs < N {
            match tokio::time::timeout(WAIT, stream.next()).await {
                Ok(Some(Ok(Message::Text(text)))) => {
                    match serde_json::from_str::<ServerMessage>(&text).unwrap() {
                        ServerMessage::Pong => pongs += 1,
                        other => return Err(format!("after {pongs} pongs: {other:?}")),
                    }
                }
                Ok(Some(Ok(Message::Close(frame)))) => {
                    return Err(format!("closed after {pongs} pongs: {frame:?}"));
                }
                Ok(Some(Ok(_))) => {}
                other => return Err(format!("after {pongs} pongs: {other:?}")),
            }
        }
        Ok(pongs)
    });
    for _ in 0..N {
        sink.feed(Message::Text(r#"{"type":"ping"}"#.into()))
            .await
            .unwrap();
    }
    sink.flush().await.unwrap();
    let pongs = reader.await.unwrap();
    assert_eq!(pongs, Ok(N), "every frame of the burst is answered");
    assert!(server.is_running());
    assert!(
        !server.log().contains("not reading"),
        "a reading client is not called stuck:\n{}",
        server.log()
    );
}

#[tokio::test]
async fn a_flood_past_the_rate_limit_is_refused_in_words() {
    let server = ChorusServer::spawn_with(&["--ws-rate", "5", "--ws-burst", "10"]);
    let mut ws = connect(&server).await;
    hello(&mut ws, "Flood").await;
    for _ in 0..50 {
        ws.feed(Message::Text(r#"{"type":"ping"}"#.into()))
            .await
            .unwrap();
    }
    ws.flush().await.unwrap();
    let (mut pongs, mut limited) = (0, 0);
    while pongs + limited < 50 {
        match next(&mut ws).await {
            Next::Frame(ServerMessage::Pong) => pongs += 1,
            Next::Frame(ServerMessage::Error { code, message }) => {
                assert_eq!(code, ErrorCode::RateLimited, "{message}");
                assert!(message.contains("too many messages"), "{message}");
                limited += 1;
            }
            other => panic!("after {pongs} pongs and {limited} refusals: {other:?}"),
        }
    }
    assert!(pongs >= 9, "the burst (less the hello) is served: {pongs}");
    assert!(limited >= 1, "the rest is refused: {limited}");
    // The session carries on: once the bucket refills, a ping is answered again.
    let deadline = Instant::now() + WAIT;
    loop {
        ws.send(Message::Text(r#"{"type":"ping"}"#.into()))
            .await
            .unwrap();
        match next(&mut ws).await {
            Next::Frame(ServerMessage::Pong) => break,
            Next::Frame(ServerMessage::Error {
                code: ErrorCode::RateLimited,
                ..
            }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => panic!("after the flood: {other:?}"),
        }
    }
}

#[tokio::test]
async fn server_closes_carry_a_code_and_a_reason() {
    let server = ChorusServer::spawn_with(&["--hello-timeout-ms", "300"]);
    // Over 1 MiB: 1009, as docs/protocol.md promises.
    let mut ws = connect(&server).await;
    hello(&mut ws, "Huge").await;
    let _ = ws
        .send(Message::Text("x".repeat((1 << 20) + 10).into()))
        .await;
    let (code, reason) = expect_close(&mut ws, "a frame over 1 MiB").await;
    assert_eq!(code, close::FRAME_TOO_LARGE, "{reason}");
    assert_eq!(CloseCode::from(code), CloseCode::Size);
    assert!(reason.contains("at most"), "{reason}");

    // The wrong version: the error, then a close that says why.
    let mut ws = connect(&server).await;
    ws.send(Message::Text(
        r#"{"type":"hello","version":99,"name":"Future"}"#.into(),
    ))
    .await
    .unwrap();
    match next(&mut ws).await {
        Next::Frame(ServerMessage::Error { code, .. }) => {
            assert_eq!(code, ErrorCode::UnsupportedVersion);
        }
        other => panic!("expected the version error, got {other:?}"),
    }
    let (code, reason) = expect_close(&mut ws, "a wrong version").await;
    assert_eq!(code, close::UNSUPPORTED_VERSION, "{reason}");
    assert!(reason.contains("version"), "{reason}");

    // No hello at all.
    let mut ws = connect(&server).await;
    let (code, reason) = expect_close(&mut ws, "no hello").await;
    assert_eq!(code, close::HELLO_TIMEOUT, "{reason}");
    assert!(reason.contains("hello"), "{reason}");
}

#[tokio::test]
async fn a_client_that_stops_reading_is_closed_and_one_that_reads_is_not() {
    let server =
        ChorusServer::spawn_with(&["--ping-interval-ms", "100", "--pong-timeout-ms", "300"]);
    // A client that stops reading: nothing answers its pings, and it is closed with a
    // code that says so (seen once it reads again).
    let mut idle = connect(&server).await;
    hello(&mut idle, "Idle").await;
    // A reading client answers the pings (tungstenite does so while reading): it sees
    // many and stays, all the while the idle one is given up on.
    let mut alive = connect(&server).await;
    hello(&mut alive, "Alive").await;
    let reading = tokio::spawn(async move {
        let mut pings = 0;
        while pings < 10 {
            match tokio::time::timeout(WAIT, alive.next()).await {
                Ok(Some(Ok(Message::Ping(_)))) => pings += 1,
                Ok(Some(Ok(Message::Close(frame)))) => {
                    return Err(format!("a reading client was closed: {frame:?}"));
                }
                Ok(Some(Ok(_))) => {}
                other => return Err(format!("{other:?}")),
            }
        }
        alive
            .send(Message::Text(r#"{"type":"ping"}"#.into()))
            .await
            .map_err(|e| e.to_string())?;
        match next(&mut alive).await {
            Next::Frame(ServerMessage::Pong) => Ok(pings),
            other => Err(format!("the reading client: {other:?}")),
        }
    });
    // No reads from the idle one meanwhile, so no pongs. Wait for the server to give
    // up (its log says so), then read what it sent.
    let deadline = Instant::now() + WAIT;
    while !server.log().contains("no answer to a ping") {
        assert!(
            Instant::now() < deadline,
            "the idle client was never closed:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (code, reason) = expect_close(&mut idle, "an idle client").await;
    assert_eq!(code, close::NOT_READING, "{reason}");
    assert!(reason.contains("ping"), "{reason}");
    let alive = reading.await.unwrap();
    assert!(alive.is_ok(), "{alive:?}\n{}", server.log());
}

#[tokio::test]
async fn invisible_and_reversed_names_and_unknown_fields_are_refused() {
    let server = ChorusServer::spawn();
    let mut ws = connect(&server).await;
    for (name, words) in [
        ("\u{200B}\u{200B}\u{200B}", "visible"),
        ("\u{2800}", "visible"),
        ("Ada\u{202E}nimda", "direction"),
        ("\u{2067}Bo", "direction"),
        (&format!("Z{}", "\u{301}".repeat(39)), "marks"),
    ] {
        let frame = serde_json::json!({"type": "hello", "version": PROTOCOL_VERSION, "name": name});
        ws.send(Message::Text(frame.to_string().into()))
            .await
            .unwrap();
        match next(&mut ws).await {
            Next::Frame(ServerMessage::Error { code, message }) => {
                assert_eq!(code, ErrorCode::InvalidInput, "{name:?}: {message}");
                assert!(message.contains(words), "{name:?}: {message}");
            }
            other => panic!("{name:?} was not refused: {other:?}"),
        }
    }
    // NFC: the name comes back composed.
    let frame =
        serde_json::json!({"type": "hello", "version": PROTOCOL_VERSION, "name": "Rene\u{301}"});
    ws.send(Message::Text(frame.to_string().into()))
        .await
        .unwrap();
    match next(&mut ws).await {
        Next::Frame(ServerMessage::Welcome { name, .. }) => assert_eq!(name, "Ren\u{e9}"),
        other => panic!("{other:?}"),
    }
    for frame in [
        r#"{"type":"ping","extra":1}"#,
        r#"{"type":"leave","room":"abc"}"#,
        r#"{"type":"set_muted","muted":true,"volume":3}"#,
    ] {
        ws.send(Message::Text(frame.into())).await.unwrap();
        match next(&mut ws).await {
            Next::Frame(ServerMessage::Error { code, message }) => {
                assert_eq!(code, ErrorCode::Malformed, "{frame}: {message}");
                assert!(
                    message.contains("takes no fields") || message.contains("unknown field"),
                    "{frame}: {message}"
                );
            }
            other => panic!("{frame} was accepted: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sessions_hold_little_memory() {
    let server = ChorusServer::spawn_with(&["--max-connections-per-ip", "1000"]);
    const N: usize = 300;
    let mut warm = Vec::new();
    for i in 0..20 {
        let mut ws = connect(&server).await;
        hello(&mut ws, &format!("Warm {i}")).await;
        warm.push(ws);
    }
    let before = server.rss_kib();
    let mut sessions = Vec::with_capacity(N);
    for i in 0..N {
        let mut ws = connect(&server).await;
        hello(&mut ws, &format!("Idle {i}")).await;
        sessions.push(ws);
    }
    let during = server.rss_kib();
    let per_session = (during.saturating_sub(before)) * 1024 / N as u64;
    for mut ws in sessions {
        let _ = ws.close(None).await;
    }
    eprintln!(
        "RSS {before} KiB; with {N} more idle sessions {during} KiB: ≈ {per_session} bytes each"
    );
    assert!(
        per_session < 64 * 1024,
        "an idle session holds ≈ {per_session} bytes (before the fix ≈ 137 KB)"
    );
}
