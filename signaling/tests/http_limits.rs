//! The HTTP listener against slow and greedy clients: headers trickled, a body sent a
//! byte at a time, many connections from one address. Each loses only its own
//! connection, with a status or a close, within the configured time. Also: paging of
//! `GET /api/v1/rooms`, and a token key that standard tools can read.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod support;

use std::time::{Duration, Instant};

use common::ChorusServer;
use serde_json::json;
use support::Api;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(15);

/// Read until the server closes the connection; what it sent. Panics after [`WAIT`].
async fn read_to_close(stream: &mut TcpStream, what: &str) -> String {
    let mut got = Vec::new();
    match tokio::time::timeout(WAIT, stream.read_to_end(&mut got)).await {
        Ok(_) => String::from_utf8_lossy(&got).into_owned(),
        Err(_) => panic!("{what}: the server kept the connection open for {WAIT:?}"),
    }
}

#[tokio::test]
async fn slow_headers_and_silent_connections_are_dropped() {
    let server = ChorusServer::spawn_with(&["--header-timeout-ms", "300"]);
    // Nothing at all after connecting.
    let mut silent = TcpStream::connect(&server.addr).await.unwrap();
    read_to_close(&mut silent, "a silent connection").await;
    // Headers trickled, a byte now and then, never finished.
    let slow = TcpStream::connect(&server.addr).await.unwrap();
    let (mut read, mut write) = slow.into_split();
    let trickle = async move {
        for b in b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ".iter().cycle() {
            if write.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        std::future::pending::<()>().await;
    };
    let mut got = Vec::new();
    tokio::select! {
        () = trickle => {}
        r = tokio::time::timeout(WAIT, read.read_to_end(&mut got)) => {
            assert!(r.is_ok(), "trickled headers were never cut off");
        }
    }
    // The server still serves a normal request.
    let (status, body) = chorus_bench::rest::request(&server.url, "GET", "/healthz", None)
        .await
        .unwrap();
    assert_eq!((status, body.as_str()), (200, "ok"));
}

#[tokio::test]
async fn a_body_sent_too_slowly_is_refused_in_words() {
    let server = ChorusServer::spawn_with(&["--body-timeout-ms", "300"]);
    let key = server.api_key();
    let body = r#"{"name":"Slow","owner_name":"Ada"}"#;
    let auth = key.sign("POST", "/api/v1/rooms", body.as_bytes());
    let mut stream = TcpStream::connect(&server.addr).await.unwrap();
    let head = format!(
        "POST /api/v1/rooms HTTP/1.1\r\nHost: {}\r\nAuthorization: {auth}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        server.addr,
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body.as_bytes()[..3]).await.unwrap();
    // The rest never comes: the answer must.
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(WAIT, stream.read(&mut answer))
        .await
        .expect("an answer to a stalled body")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"code\":\"timeout\""), "{answer}");
    assert!(answer.contains("did not arrive"), "{answer}");
    assert!(
        Api::of(&server).rooms().await.is_empty(),
        "nothing was created"
    );
}

#[tokio::test]
async fn one_address_may_hold_only_so_many_connections() {
    let server = ChorusServer::spawn_with(&["--max-connections-per-ip", "4"]);
    // Four connections, each seen to be served (so counted) before the next.
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut stream = TcpStream::connect(&server.addr).await.unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut answer = [0u8; 256];
        let n = tokio::time::timeout(WAIT, stream.read(&mut answer))
            .await
            .unwrap()
            .unwrap();
        assert!(
            answer[..n].starts_with(b"HTTP/1.1 200"),
            "{:?}",
            String::from_utf8_lossy(&answer[..n])
        );
        held.push(stream);
    }
    // The fifth is answered 429 in words and closed.
    let mut fifth = TcpStream::connect(&server.addr).await.unwrap();
    let answer = read_to_close(&mut fifth, "a connection over the cap").await;
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer:?}");
    assert!(answer.contains("too_many_connections"), "{answer}");
    // One given back makes room for one more (the server counts it as soon as it sees
    // the close: wait for that, not for a fixed time).
    held.pop();
    let deadline = Instant::now() + WAIT;
    loop {
        match chorus_bench::rest::request(&server.url, "GET", "/healthz", None).await {
            Ok((200, _)) => break,
            other => assert!(Instant::now() < deadline, "no place came free: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn rooms_are_listed_a_page_at_a_time() {
    let server = ChorusServer::spawn();
    let api = Api::of(&server);
    let mut ids = Vec::new();
    for i in 0..5 {
        let created = api
            .create_room(json!({"name": format!("Room {i}"), "owner_name": "Ada"}))
            .await;
        ids.push(created.room.id.to_string());
    }
    ids.sort();
    let mut seen = Vec::new();
    let mut path = "/api/v1/rooms?limit=2".to_owned();
    loop {
        let (status, body) = api.call("GET", &path, None).await;
        assert_eq!(status, 200, "{path}: {body}");
        let page = body["rooms"].as_array().unwrap();
        assert!(page.len() <= 2, "{body}");
        seen.extend(
            page.iter()
                .map(|r| r["room"]["id"].as_str().unwrap().to_owned()),
        );
        match body["next"].as_str() {
            Some(next) => path = format!("/api/v1/rooms?limit=2&after={next}"),
            None => break,
        }
    }
    assert_eq!(seen, ids, "every room once, in id order");
    // Without paging: the first 100 (all five here), no `next`.
    let (_, body) = api.call("GET", "/api/v1/rooms", None).await;
    assert_eq!(body["rooms"].as_array().unwrap().len(), 5);
    assert!(body.get("next").is_none(), "{body}");
    for bad in [
        "limit=0",
        "limit=1001",
        "limit=many",
        "after=../x",
        "colour=red",
    ] {
        let (status, body) = api.call("GET", &format!("/api/v1/rooms?{bad}"), None).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["code"], "invalid_input", "{bad}: {body}");
    }
}

#[test]
fn the_token_key_is_one_openssl_reads() {
    let dir = std::env::temp_dir().join(format!("chorus-key-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let path = dir.join("token-key.pem");
    chorus_signaling::load_or_create_token_key(&path).unwrap();
    match std::process::Command::new("openssl")
        .args(["pkey", "-noout", "-in"])
        .arg(&path)
        .output()
    {
        Ok(out) => assert!(
            out.status.success(),
            "openssl cannot read the token key: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => eprintln!("openssl is not installed ({e}); only the reload is checked"),
    }
    // And it loads again.
    chorus_signaling::load_or_create_token_key(&path).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A signed server-API request is good once: sent again (the same header) it is refused
/// in words and creates nothing; the same request signed anew (a new nonce) works, also
/// within the same second.
#[tokio::test]
async fn a_signed_request_cannot_be_replayed() {
    let server = ChorusServer::spawn();
    let key = server.api_key();
    let body = json!({"name": "Once", "owner_name": "Ada"}).to_string();
    let header = key.sign("POST", "/api/v1/rooms", body.as_bytes());
    let send = |h: String| {
        let (url, body) = (server.url.clone(), body.clone());
        async move {
            chorus_bench::rest::request_with_authorization(
                &url,
                "POST",
                "/api/v1/rooms",
                Some(&body),
                &h,
            )
            .await
            .unwrap()
        }
    };
    let (first, _) = send(header.clone()).await;
    assert_eq!(first, 201);
    let (again, words) = send(header).await;
    assert_eq!(again, 401, "a replay: {words}");
    assert!(words.contains("already used"), "{words}");
    let fresh = key.sign("POST", "/api/v1/rooms", body.as_bytes());
    let (status, words) = send(fresh).await;
    assert_eq!(status, 201, "signed anew: {words}");
    let rooms = Api::of(&server).rooms().await;
    assert_eq!(rooms.len(), 2, "two rooms, not three: {rooms:?}");
}
