//! Joining Janus' VideoRoom plugin over its HTTP API, with the same str0m peers.
//!
//! Per peer: a Janus session and one plugin handle. Speakers `joinandconfigure` as
//! publishers with their offer (Janus answers); listeners `join` as subscribers of up to
//! [`AUDIO_SLOTS`] of the room's publishers (Janus offers, the peer answers and sends
//! `start`) — the same number of streams a Chorus listener receives. Asynchronous plugin
//! answers arrive on the session's long poll (`GET /janus/<session>`).

use std::sync::PoisonError;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::peer::{PeerSetup, Role, Unjoined};
use super::{AUDIO_SLOTS, JoinRequest, JoinResult, LoadConfig, LoadError, SessionGuard};
use crate::rest;

/// How long one asynchronous answer may take.
const EVENT_TIMEOUT: Duration = Duration::from_secs(20);
/// Base of the numeric room ids used (room `i` is `ROOM_BASE + i`).
const ROOM_BASE: u64 = 4_200;

static TRANSACTION: AtomicU64 = AtomicU64::new(1);

fn transaction() -> String {
    format!("t{}", TRANSACTION.fetch_add(1, Ordering::Relaxed))
}

/// `http://host:port/janus` → (`http://host:port`, `/janus`).
fn split(url: &str) -> Result<(String, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("not a plain http:// URL: {url}"))?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
        None => (rest, ""),
    };
    let path = if path.is_empty() { "/janus" } else { path };
    Ok((format!("http://{host}"), path.to_owned()))
}

/// A Janus session with one VideoRoom handle.
struct Handle {
    base: String,
    path: String,
    session: u64,
    handle: u64,
}

async fn post(base: &str, path: &str, body: Value) -> Result<Value, String> {
    let (status, text) = rest::request(base, "POST", path, Some(&body.to_string()))
        .await
        .map_err(|e| format!("Janus {path}: {e}"))?;
    if status != 200 {
        return Err(format!("Janus {path}: HTTP {status}: {text}"));
    }
    let v: Value = serde_json::from_str(&text).map_err(|e| format!("Janus answer: {e}"))?;
    if v["janus"] == "error" {
        return Err(format!("Janus refused: {}", v["error"]));
    }
    Ok(v)
}

impl Handle {
    async fn open(url: &str) -> Result<Self, String> {
        let (base, path) = split(url)?;
        let created = post(
            &base,
            &path,
            json!({"janus": "create", "transaction": transaction()}),
        )
        .await?;
        let session = created["data"]["id"]
            .as_u64()
            .ok_or_else(|| format!("no session id in {created}"))?;
        let attached = post(
            &base,
            &format!("{path}/{session}"),
            json!({"janus": "attach", "plugin": "janus.plugin.videoroom", "transaction": transaction()}),
        )
        .await?;
        let handle = attached["data"]["id"]
            .as_u64()
            .ok_or_else(|| format!("no handle id in {attached}"))?;
        Ok(Self {
            base,
            path,
            session,
            handle,
        })
    }

    /// A plugin request; returns Janus' immediate answer (`success` or `ack`).
    async fn message(&self, body: Value, jsep: Option<Value>) -> Result<Value, String> {
        let mut m = json!({"janus": "message", "transaction": transaction(), "body": body});
        if let Some(jsep) = jsep {
            m["jsep"] = jsep;
        }
        let answer = post(
            &self.base,
            &format!("{}/{}/{}", self.path, self.session, self.handle),
            m,
        )
        .await?;
        if let Some(err) = answer["plugindata"]["data"]["error"].as_str() {
            return Err(format!("VideoRoom refused: {err}"));
        }
        Ok(answer)
    }

    async fn trickle_done(&self) -> Result<(), String> {
        post(
            &self.base,
            &format!("{}/{}/{}", self.path, self.session, self.handle),
            json!({"janus": "trickle", "candidate": {"completed": true}, "transaction": transaction()}),
        )
        .await
        .map(|_| ())
    }

    /// Long-poll the session until a plugin event for our handle satisfies `pick`.
    async fn event<T>(&self, mut pick: impl FnMut(&Value) -> Option<T>) -> Result<T, String> {
        let deadline = Instant::now() + EVENT_TIMEOUT;
        let path = format!("{}/{}?maxev=10", self.path, self.session);
        while Instant::now() < deadline {
            let (status, text) = match rest::request(&self.base, "GET", &path, None).await {
                Ok(r) => r,
                // The long poll outlives the HTTP helper's timeout when nothing happens.
                Err(rest::RestError::Timeout(_)) => continue,
                Err(e) => return Err(format!("Janus long poll: {e}")),
            };
            if status != 200 {
                return Err(format!("Janus long poll: HTTP {status}: {text}"));
            }
            let v: Value = serde_json::from_str(&text).map_err(|e| format!("Janus event: {e}"))?;
            let events = match v {
                Value::Array(a) => a,
                other => vec![other],
            };
            for e in events {
                if e["sender"].as_u64() != Some(self.handle) {
                    continue;
                }
                if let Some(err) = e["plugindata"]["data"]["error"].as_str() {
                    return Err(format!("VideoRoom refused: {err}"));
                }
                if let Some(found) = pick(&e) {
                    return Ok(found);
                }
            }
        }
        Err(format!("no answer from Janus within {EVENT_TIMEOUT:?}"))
    }

    async fn destroy(&self) {
        let _ = post(
            &self.base,
            &format!("{}/{}", self.path, self.session),
            json!({"janus": "destroy", "transaction": transaction()}),
        )
        .await;
    }
}

/// Create room `index` (numeric id `ROOM_BASE + index`) for the scenario.
pub async fn create_room(
    url: &str,
    index: usize,
    config: &LoadConfig,
) -> Result<String, LoadError> {
    let room = ROOM_BASE + index as u64;
    let h = Handle::open(url).await.map_err(LoadError::CreateRoom)?;
    // A leftover room of an earlier run: remove it (ignore "no such room").
    let _ = h
        .message(json!({"request": "destroy", "room": room}), None)
        .await;
    let created = h
        .message(
            json!({
                "request": "create",
                "room": room,
                "description": format!("load {index}"),
                "publishers": config.speakers + 1,
                "audiocodec": "opus",
                "videocodec": "vp8",
                "audiolevel_ext": true,
                "audiolevel_event": false,
                "notify_joining": false,
                "permanent": false,
            }),
            None,
        )
        .await
        .map_err(LoadError::CreateRoom)?;
    if created["plugindata"]["data"]["videoroom"] != "created" {
        return Err(LoadError::CreateRoom(format!(
            "unexpected answer {created}"
        )));
    }
    h.destroy().await;
    Ok(room.to_string())
}

/// A Janus session kept for the run.
pub struct Held {
    handle: Handle,
}

impl Held {
    pub async fn close(self) {
        self.handle.destroy().await;
    }
}

pub async fn join(req: JoinRequest) -> JoinResult {
    let room: u64 = req
        .room
        .id
        .parse()
        .map_err(|_| format!("not a Janus room number: {}", req.room.id))?;
    let mut peer = Unjoined::new(&req.cert, req.bind_ip)?;
    let opened_at = Instant::now();
    let handle = Handle::open(&req.url).await?;
    let send_mid = match req.role {
        Role::Speaker { .. } => {
            let (offer, pending, mid) = peer.send_offer()?;
            handle
                .message(
                    json!({
                        "request": "joinandconfigure",
                        "ptype": "publisher",
                        "room": room,
                        "display": format!("load-{}", req.peer),
                        "audio": true,
                        "video": false,
                    }),
                    Some(json!({"type": "offer", "sdp": offer})),
                )
                .await?;
            let (id, answer) = handle
                .event(|e| {
                    let id = e["plugindata"]["data"]["id"].as_u64()?;
                    let sdp = e["jsep"]["sdp"].as_str()?;
                    Some((id, sdp.to_owned()))
                })
                .await?;
            peer.accept_answer(pending, &answer)?;
            handle.trickle_done().await?;
            req.room
                .feeds
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(id);
            Some(mid)
        }
        Role::Listener { .. } => {
            let feeds: Vec<Value> = req
                .room
                .feeds
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .take(AUDIO_SLOTS)
                .map(|f| json!({"feed": f}))
                .collect();
            if feeds.is_empty() {
                return Err("the room has no publisher to subscribe to".into());
            }
            // A feed exists once its publisher's media is up: retry a little.
            let mut attempt = 0;
            let offer = loop {
                attempt += 1;
                let joined = async {
                    handle
                        .message(
                            json!({
                                "request": "join",
                                "ptype": "subscriber",
                                "room": room,
                                "streams": feeds,
                            }),
                            None,
                        )
                        .await?;
                    handle
                        .event(|e| e["jsep"]["sdp"].as_str().map(str::to_owned))
                        .await
                }
                .await;
                match joined {
                    Ok(offer) => break offer,
                    Err(e) if attempt < 10 && e.contains("No such feed") => {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                    }
                    Err(e) => return Err(e),
                }
            };
            let answer = peer.accept_offer(&offer)?;
            handle
                .message(
                    json!({"request": "start"}),
                    Some(json!({"type": "answer", "sdp": answer})),
                )
                .await?;
            handle.trickle_done().await?;
            None
        }
    };
    let setup = PeerSetup {
        room: req.room.index,
        role: req.role,
        rtc: peer.rtc,
        socket: peer.socket,
        local: peer.local,
        send_mid,
        opened_at,
    };
    Ok((setup, SessionGuard::Janus(Held { handle })))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn urls_split() {
        assert_eq!(
            split("http://127.0.0.1:8088/janus").unwrap(),
            ("http://127.0.0.1:8088".into(), "/janus".into())
        );
        assert_eq!(
            split("http://127.0.0.1:8088/").unwrap(),
            ("http://127.0.0.1:8088".into(), "/janus".into())
        );
    }
}
