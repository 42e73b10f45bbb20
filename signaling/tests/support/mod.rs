//! Shared helpers of the room tests (capacity, seats, audio, lifecycle, bad input): the
//! signed server API as JSON, a raw WebSocket client, and small waits on `webrtc` peers.
//! Every helper reports failures as words (`Err(String)`) so that a test can close its
//! peers before it panics.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

pub mod calls;

use std::time::{Duration, Instant};

use chorus_bench::webrtc_peer::{HearReport, PeerConfig, WebrtcPeer};
use chorus_proto::RoomId;
use chorus_proto::signal::{
    ClientMessage, ErrorCode, PROTOCOL_VERSION, ParticipantInfo, RoomInfo, ServerMessage,
};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use crate::common::ChorusServer;

/// The signed server API of one server (`docs/api.md`), answers as JSON.
#[derive(Clone)]
pub struct Api {
    url: String,
    key: chorus_proto::api_key::ApiKey,
}

/// A room created over the server API.
#[derive(Debug, Clone)]
pub struct Created {
    /// The room.
    pub room: RoomInfo,
    /// The owner's user id (an absent member holding the first seat).
    pub owner: String,
    /// The owner's token for `hello`.
    pub owner_token: String,
    /// The whole answer.
    pub body: Value,
}

impl Api {
    pub fn of(server: &ChorusServer) -> Self {
        Self::new(&server.url, server.api_key())
    }

    /// The API of the server at `url` (`http://host:port/`), signed with `key`.
    pub fn new(url: &str, key: chorus_proto::api_key::ApiKey) -> Self {
        Self {
            url: url.to_owned(),
            key,
        }
    }

    /// One signed request; the body of the answer as JSON (`Value::Null` if empty or not JSON).
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let body = body.map(|b| b.to_string());
        let (status, text) =
            chorus_bench::rest::signed_request(&self.url, &self.key, method, path, body.as_deref())
                .await
                .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// `POST /api/v1/rooms`; panics unless 201.
    pub async fn create_room(&self, body: Value) -> Created {
        let (status, body) = self.call("POST", "/api/v1/rooms", Some(body.clone())).await;
        assert_eq!(status, 201, "creating a room over the server API: {body}");
        Created {
            room: serde_json::from_value(body["room"].clone()).unwrap(),
            owner: body["owner"].as_str().unwrap().to_owned(),
            owner_token: body["owner_token"].as_str().unwrap().to_owned(),
            body,
        }
    }

    /// `PUT /api/v1/rooms/{room}/members/{user}`: the backend's `user` in the room's
    /// group chat; panics unless 200.
    pub async fn add_member(&self, room: &RoomId, user: &str, name: &str) {
        let (status, body) = self
            .call(
                "PUT",
                &format!("/api/v1/rooms/{room}/members/{user}"),
                Some(serde_json::json!({ "name": name })),
            )
            .await;
        assert_eq!(status, 200, "putting {user} in the group chat: {body}");
    }

    /// `POST /api/v1/users`: a user token for the backend's `user`; panics unless 200.
    pub async fn user_token(&self, user: &str, name: &str) -> String {
        let (status, made) = self
            .call(
                "POST",
                "/api/v1/users",
                Some(serde_json::json!({ "name": name, "user": user })),
            )
            .await;
        assert_eq!(status, 200, "signing {user} in: {made}");
        made["user_token"].as_str().unwrap().to_owned()
    }

    /// `GET /api/v1/rooms/{room}`: status and view.
    pub async fn room(&self, room: &RoomId) -> (u16, Value) {
        self.call("GET", &format!("/api/v1/rooms/{room}"), None)
            .await
    }

    /// `GET /api/v1/rooms`: every room's view.
    pub async fn rooms(&self) -> Vec<Value> {
        let (status, body) = self.call("GET", "/api/v1/rooms", None).await;
        assert_eq!(status, 200, "listing rooms: {body}");
        body["rooms"].as_array().cloned().unwrap_or_default()
    }

    /// Members of a room (panics if the room is not there).
    pub async fn members(&self, room: &RoomId) -> Vec<Value> {
        let (status, body) = self.room(room).await;
        assert_eq!(status, 200, "GET room {room}: {body}");
        body["members"].as_array().cloned().unwrap_or_default()
    }

    /// Wait until the members satisfy `done`; the last list seen on timeout, in the error.
    pub async fn wait_members(
        &self,
        room: &RoomId,
        what: &str,
        timeout: Duration,
        mut done: impl FnMut(&[Value]) -> bool,
    ) -> Result<Vec<Value>, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let members = self.members(room).await;
            if done(&members) {
                return Ok(members);
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "waited {timeout:?} for {what}; members are now: {}",
                    Value::Array(members)
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A raw signaling session: one frame at a time.
pub struct RawClient {
    ws: Socket,
    pub user: String,
    pub user_token: String,
    /// Frames read by [`Self::expect`] that it did not pick, in order.
    pub seen: Vec<ServerMessage>,
}

impl RawClient {
    /// Connect and `hello` (with `user_token` if given); panics unless `welcome`.
    pub async fn hello(ws_url: &str, name: &str, user_token: Option<&str>) -> Self {
        Self::hello_from(ws_url, name, user_token, None).await
    }

    /// As [`RawClient::hello`], through a proxy that says the client is `forwarded_for`
    /// (an `X-Forwarded-For` header: believed only by a server that trusts this host).
    pub async fn hello_from(
        ws_url: &str,
        name: &str,
        user_token: Option<&str>,
        forwarded_for: Option<&str>,
    ) -> Self {
        Self::connect(ws_url, name, user_token, forwarded_for, false).await
    }

    /// As [`RawClient::hello`], for a session that takes calls (rings when called).
    pub async fn hello_taking_calls(ws_url: &str, name: &str, user_token: Option<&str>) -> Self {
        Self::connect(ws_url, name, user_token, None, true).await
    }

    async fn connect(
        ws_url: &str,
        name: &str,
        user_token: Option<&str>,
        forwarded_for: Option<&str>,
        takes_calls: bool,
    ) -> Self {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = ws_url.into_client_request().unwrap();
        if let Some(addr) = forwarded_for {
            request
                .headers_mut()
                .insert("x-forwarded-for", addr.parse().unwrap());
        }
        let (ws, _) = tokio_tungstenite::connect_async(request)
            .await
            .unwrap_or_else(|e| panic!("{name}: WebSocket connect: {e}"));
        let mut client = Self {
            ws,
            user: String::new(),
            user_token: String::new(),
            seen: Vec::new(),
        };
        client
            .send(&ClientMessage::Hello {
                version: PROTOCOL_VERSION,
                name: name.to_owned(),
                user_token: user_token.map(str::to_owned),
                takes_calls,
            })
            .await;
        let (user, token) = client
            .expect("welcome", Duration::from_secs(15), |m| match m {
                ServerMessage::Welcome {
                    user, user_token, ..
                } => Some((user.to_string(), user_token.clone())),
                _ => None,
            })
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        client.user = user;
        client.user_token = token;
        client
    }

    /// Send `join` for `room` with `offer`.
    pub async fn send_join(&mut self, room: &RoomId, offer: String) {
        self.send(&ClientMessage::Join {
            room: room.clone(),
            offer,
            listener: false,
        })
        .await;
    }

    pub async fn send(&mut self, message: &ClientMessage) {
        let text = serde_json::to_string(message).unwrap();
        self.send_text(&text).await;
    }

    pub async fn send_json(&mut self, frame: Value) {
        self.send_text(&frame.to_string()).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws
            .send(Message::Text(text.to_owned().into()))
            .await
            .expect("send a frame");
    }

    /// The next server frame; `None` when the socket closed or nothing came in `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Option<ServerMessage> {
        let wait = async {
            loop {
                match self.ws.next().await {
                    Some(Ok(Message::Text(text))) => {
                        return serde_json::from_str::<ServerMessage>(&text).ok();
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
                    Some(Ok(_)) => {}
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.ok().flatten()
    }

    /// Read frames until `pick` accepts one (errors are offered to `pick` too); the
    /// others are kept in `seen`.
    pub async fn expect<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        mut pick: impl FnMut(&ServerMessage) -> Option<T>,
    ) -> Result<T, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left).await {
                Some(message) => {
                    if let Some(found) = pick(&message) {
                        return Ok(found);
                    }
                    self.seen.push(message);
                }
                None => {
                    return Err(format!(
                        "no {what} within {timeout:?} (or the socket closed); frames seen meanwhile: {:?}",
                        self.seen
                    ));
                }
            }
        }
    }

    /// Wait for the answer to a request that should fail: the `error` frame's code and words.
    pub async fn expect_error(&mut self, what: &str) -> Result<(ErrorCode, String), String> {
        self.expect(what, Duration::from_secs(10), |m| match m {
            ServerMessage::Error { code, message } => Some((*code, message.clone())),
            _ => None,
        })
        .await
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

/// A peer publishing `tone` (Hz) into `room`, as the user of `user_token` if given.
pub fn peer_config(
    ws_url: &str,
    room: &RoomId,
    name: &str,
    tone: Option<f32>,
    user_token: Option<&str>,
) -> PeerConfig {
    PeerConfig {
        tone_hz: tone,
        // Members without a seat are listeners; they publish anyway so that the SFU has
        // something to drop (or, once seated, to forward).
        publish_anyway: true,
        user_token: user_token.map(str::to_owned),
        ..PeerConfig::new(ws_url, room.clone(), name)
    }
}

/// Join, wait for media and for the server to say this participant is connected.
pub async fn join_connected(config: PeerConfig, timeout: Duration) -> Result<WebrtcPeer, String> {
    let name = config.name.clone();
    let mut peer = WebrtcPeer::join(config)
        .await
        .map_err(|e| format!("{name} could not join: {e}"))?;
    if let Err(e) = wait_self_connected(&peer, &name, timeout).await {
        peer.close().await;
        return Err(e);
    }
    Ok(peer)
}

/// Wait until this peer's own `participant_updated` says `connected`.
pub async fn wait_self_connected(
    peer: &WebrtcPeer,
    name: &str,
    timeout: Duration,
) -> Result<(), String> {
    peer.wait_connected(timeout)
        .await
        .map_err(|e| format!("{name}'s media did not connect: {e}"))?;
    let me = peer.id().clone();
    peer.wait_for("own participant_updated connected", timeout, |v| {
        v.participants
            .get(&me)
            .is_some_and(|p| p.connected)
            .then_some(())
    })
    .await
    .map_err(|e| format!("{name} was never told it is connected: {e}"))
}

/// How `who` looks to `peer` now.
pub fn info_of(peer: &WebrtcPeer, who: &chorus_proto::ParticipantId) -> Option<ParticipantInfo> {
    peer.view().participants.get(who).cloned()
}

/// Wait until `peer` sees `who` in a state that `done` accepts.
pub async fn wait_info(
    peer: &WebrtcPeer,
    who: &chorus_proto::ParticipantId,
    what: &'static str,
    timeout: Duration,
    mut done: impl FnMut(&ParticipantInfo) -> bool,
) -> Result<ParticipantInfo, String> {
    peer.wait_for(what, timeout, |v| {
        v.participants.get(who).filter(|p| done(p)).cloned()
    })
    .await
    .map_err(|e| {
        format!(
            "{what}: {e}; it sees {:?}; errors it got: {:?}",
            info_of(peer, who),
            peer.view().errors
        )
    })
}

/// Close every peer (always, whatever happened).
pub async fn close_all(peers: &mut [WebrtcPeer]) {
    for peer in peers {
        peer.close().await;
    }
}

/// One line of what a peer heard.
pub fn summary(name: &str, heard: &HearReport) -> String {
    let tones: Vec<String> = heard
        .tones
        .iter()
        .filter(|t| t.windows > 0)
        .map(|t| format!("{}Hz×{}", t.hz, t.windows))
        .collect();
    format!(
        "{name}: tracks {} packets {} lost {} windows {} tones [{}]",
        heard.tracks,
        heard.packets,
        heard.lost,
        heard.windows,
        tones.join(" ")
    )
}

/// Member view by user id.
pub fn member<'a>(members: &'a [Value], user: &str) -> Option<&'a Value> {
    members.iter().find(|m| m["user"] == user)
}

/// Wait until `ear` has heard `hz` in `more` new 100 ms windows.
pub async fn hears(
    ear: &WebrtcPeer,
    hz: f32,
    more: u64,
    within: Duration,
) -> Result<Duration, String> {
    let since = Instant::now();
    let before = ear.heard().windows_with(hz);
    loop {
        if ear.heard().windows_with(hz) >= before + more {
            return Ok(since.elapsed());
        }
        if since.elapsed() >= within {
            return Err(format!(
                "{hz} Hz not heard within {within:?}: {}",
                summary("ear", &ear.heard())
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A new peer connection and its complete offer (for a raw `join`); close the peer.
pub async fn new_offer() -> Result<(chorus_bench::webrtc_peer::MediaPeer, String), String> {
    let mut media = chorus_bench::webrtc_peer::MediaPeer::new(&Default::default())
        .await
        .map_err(|e| format!("a peer connection: {e}"))?;
    match media.create_offer(Duration::from_secs(20)).await {
        Ok(offer) => Ok((media, offer)),
        Err(e) => {
            media.close().await;
            Err(format!("an offer: {e}"))
        }
    }
}

/// `GET /metrics` of a server at `url` (`http://host:port/`); empty if it cannot be read.
pub async fn metrics(url: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = url.trim_start_matches("http://").trim_end_matches('/');
    let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
        return String::new();
    };
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return String::new();
    }
    let mut body = String::new();
    let _ = stream.read_to_string(&mut body).await;
    body
}

/// The value of the first sample of `name` (with any labels) in a metrics text.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// How continuous a peer's received audio was (`session_resume`, `fleet`).
/// Frames a peer hearing `speakers` should have received within `from..until` but did
/// not (20 ms frames).
pub fn missing_frames(peer: &WebrtcPeer, speakers: i64, from: Instant, until: Instant) -> i64 {
    let got = peer
        .arrivals()
        .into_iter()
        .filter(|(_, at)| *at >= from && *at <= until)
        .count();
    let expected = speakers * i64::try_from(until.duration_since(from).as_millis() / 20).unwrap();
    expected - i64::try_from(got).unwrap()
}

/// The longest pause between two payloads a peer received within `from..until`, and
/// when it began (after `from`).
pub fn longest_gap(peer: &WebrtcPeer, from: Instant, until: Instant) -> (Duration, Duration) {
    let mut times: Vec<Instant> = peer
        .arrivals()
        .into_iter()
        .map(|(_, at)| at)
        .filter(|at| *at >= from && *at <= until)
        .collect();
    times.insert(0, from);
    times.push(until);
    times
        .windows(2)
        .map(|w| (w[1].duration_since(w[0]), w[0].duration_since(from)))
        .max()
        .unwrap_or((Duration::MAX, Duration::ZERO))
}
