//! How long a 1:1 call takes from the callee's "accept" to both sides hearing each other,
//! over a running Chorus server: two `webrtc`-crate peers (as two browsers) register, one
//! calls the other by handle, the callee accepts, and then, as the web client does, the
//! caller makes its peer connection and offer, the callee answers, candidates go with the
//! SDP, and each side decodes the other's tone. Prints each run and the median.
//!
//! The two are made contacts first (one answered call, not measured): calls between
//! strangers never go direct.
//!
//! `--relayed`: the call goes through the SFU instead, as a call between strangers does:
//! the server makes the call's room at the answer (`call_accepted` says `relay`, then
//! `call_relayed`) and both join it as room peers. A direct path that fails moves the same
//! way after the web client's 5 s wait; this measures the SFU path itself.
//!
//! ```sh
//! cargo build --release -p chorus-signaling --bin chorus -p chorus-bench --example call_first_audio
//! target/release/chorus --listen 127.0.0.1:8080 --data-dir /tmp/chorus-bench &
//! target/release/examples/call_first_audio --server ws://127.0.0.1:8080/ws --runs 10 [--relayed]
//! ```
//!
//! The figure has two parts: signaling (accept → the offer and answer across) and media
//! (ICE and DTLS between the peers, then the first 100 ms window in which each side's
//! decoder finds the other's tone). The tone detector works on 100 ms windows, so the
//! figures are good to about 100 ms.

use std::time::{Duration, Instant};

use chorus_bench::webrtc_peer::{MediaConfig, MediaPeer};
use chorus_proto::people::{CallInfo, SdpType, SessionDescription};
use chorus_proto::signal::{ClientMessage, PROTOCOL_VERSION, ServerMessage};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const WAIT: Duration = Duration::from_secs(15);

struct Client {
    ws: Socket,
}

impl Client {
    async fn hello(url: &str, name: &str) -> Result<Self, String> {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .map_err(|e| format!("cannot reach {url}: {e}"))?;
        let mut client = Self { ws };
        client
            .send(&ClientMessage::Hello {
                version: PROTOCOL_VERSION,
                name: name.to_owned(),
                user_token: None,
                takes_calls: true,
            })
            .await?;
        client
            .expect("welcome", |m| {
                matches!(m, ServerMessage::Welcome { .. }).then_some(())
            })
            .await?;
        Ok(client)
    }

    async fn send(&mut self, message: &ClientMessage) -> Result<(), String> {
        let text = serde_json::to_string(message).map_err(|e| e.to_string())?;
        self.ws
            .send(Message::text(text))
            .await
            .map_err(|e| format!("send: {e}"))
    }

    /// The first frame `pick` takes, within [`WAIT`]; an `error` frame fails.
    async fn expect<T>(
        &mut self,
        what: &str,
        mut pick: impl FnMut(&ServerMessage) -> Option<T>,
    ) -> Result<T, String> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .map_err(|_| format!("no {what} within {WAIT:?}"))?
                .ok_or_else(|| format!("the socket closed before {what}"))?
                .map_err(|e| format!("waiting for {what}: {e}"))?;
            let Message::Text(text) = frame else { continue };
            let message: ServerMessage =
                serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
            if let ServerMessage::Error { code, message } = &message {
                return Err(format!("{what}: {code:?} {message}"));
            }
            if let Some(found) = pick(&message) {
                return Ok(found);
            }
        }
    }

    /// Register `handle`; the account's user token.
    async fn register(&mut self, handle: &str) -> Result<String, String> {
        self.send(&ClientMessage::Register {
            handle: handle.to_owned(),
            password: format!("{handle} bench password"),
        })
        .await?;
        self.expect("account", |m| match m {
            ServerMessage::Account { user_token, .. } => Some(user_token.clone()),
            _ => None,
        })
        .await
    }

    async fn signal(&mut self, call: &CallInfo, kind: SdpType, sdp: String) -> Result<(), String> {
        self.send(&ClientMessage::CallSignal {
            call: call.id.clone(),
            description: Some(SessionDescription { kind, sdp }),
            candidate: None,
        })
        .await
    }

    async fn description(&mut self) -> Result<SessionDescription, String> {
        self.expect("call_signal", |m| match m {
            ServerMessage::CallSignal {
                description: Some(d),
                ..
            } => Some(d.clone()),
            _ => None,
        })
        .await
    }
}

/// `caller` rings `handle`; the call as `callee` (that account) is rung.
async fn ring(caller: &mut Client, callee: &mut Client, handle: &str) -> Result<CallInfo, String> {
    caller
        .send(&ClientMessage::Call {
            handle: handle.to_owned(),
        })
        .await?;
    callee
        .expect("call_incoming", |m| match m {
            ServerMessage::CallIncoming { call } => Some(call.clone()),
            _ => None,
        })
        .await
}

/// `call_accepted`: whether the call goes through the SFU from the start.
async fn accepted_call(caller: &mut Client) -> Result<bool, String> {
    caller
        .expect("call_accepted", |m| match m {
            ServerMessage::CallAccepted { relay, .. } => Some(*relay),
            _ => None,
        })
        .await
}

/// One call: the time from accept to the offer and answer having crossed, and to both
/// sides hearing the other.
async fn one_call(
    url: &str,
    run: usize,
    tag: &str,
    relayed: bool,
) -> Result<(Duration, Duration), String> {
    let (a, b) = (format!("b{tag}{run}a"), format!("b{tag}{run}b"));
    let mut caller = Client::hello(url, "Caller").await?;
    let caller_token = caller.register(&a).await?;
    let mut callee = Client::hello(url, "Callee").await?;
    let callee_token = callee.register(&b).await?;
    if !relayed {
        // One answered call makes them contacts: the measured one may go direct.
        let call = ring(&mut caller, &mut callee, &b).await?;
        callee
            .send(&ClientMessage::AcceptCall {
                call: call.id.clone(),
            })
            .await?;
        accepted_call(&mut caller).await?;
        caller
            .send(&ClientMessage::HangUp { call: call.id })
            .await?;
        callee
            .expect("call_ended", |m| {
                matches!(m, ServerMessage::CallEnded { .. }).then_some(())
            })
            .await?;
    }
    let call = ring(&mut caller, &mut callee, &b).await?;
    let accepted = Instant::now();
    callee
        .send(&ClientMessage::AcceptCall {
            call: call.id.clone(),
        })
        .await?;
    let relay = accepted_call(&mut caller).await?;
    if relay != relayed {
        return Err(format!(
            "the server said relay: {relay} for a call that should {}go through the SFU",
            if relayed { "" } else { "not " }
        ));
    }
    if relayed {
        let heard = through_the_sfu(
            url,
            &mut caller,
            &call,
            [caller_token, callee_token],
            accepted,
        )
        .await;
        caller
            .send(&ClientMessage::HangUp {
                call: call.id.clone(),
            })
            .await?;
        return Ok((Duration::ZERO, heard?));
    }
    let peer = |hz| MediaConfig {
        tone_hz: Some(hz),
        slots: 0,
        ..MediaConfig::default()
    };
    let err = |e: chorus_bench::webrtc_peer::PeerError| e.to_string();
    let mut caller_media = MediaPeer::new(&peer(440.0)).await.map_err(err)?;
    let offer = caller_media.create_offer(WAIT).await.map_err(err)?;
    caller.signal(&call, SdpType::Offer, offer).await?;
    let offer = callee.description().await?;
    let mut callee_media = MediaPeer::new(&peer(660.0)).await.map_err(err)?;
    let answer = callee_media.answer(offer.sdp, WAIT).await.map_err(err)?;
    callee.signal(&call, SdpType::Answer, answer).await?;
    let answer = caller.description().await?;
    caller_media.apply_answer(answer.sdp).await.map_err(err)?;
    let signalled = accepted.elapsed();
    caller_media.start_publishing();
    callee_media.start_publishing();
    let heard = loop {
        let (x, y) = (caller_media.heard(), callee_media.heard());
        if x.windows_with(660.0) >= 1 && y.windows_with(440.0) >= 1 {
            break accepted.elapsed();
        }
        if accepted.elapsed() > WAIT {
            return Err(format!("not both hearing within {WAIT:?}"));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    caller
        .send(&ClientMessage::HangUp {
            call: call.id.clone(),
        })
        .await?;
    caller_media.close().await;
    callee_media.close().await;
    Ok((signalled, heard))
}

/// Join the call's room (the server made it at the answer) as both users, and wait until
/// each hears the other: the time since `since` (the answer).
async fn through_the_sfu(
    url: &str,
    caller: &mut Client,
    call: &CallInfo,
    tokens: [String; 2],
    since: Instant,
) -> Result<Duration, String> {
    use chorus_bench::webrtc_peer::{PeerConfig, WebrtcPeer};
    let room = caller
        .expect("call_relayed", |m| match m {
            ServerMessage::CallRelayed { call: id, room } if *id == call.id => Some(room.clone()),
            _ => None,
        })
        .await?;
    let [a, b] = tokens;
    let config = |name: &str, hz: f32, token: String| PeerConfig {
        tone_hz: Some(hz),
        user_token: Some(token),
        ..PeerConfig::new(url, room.clone(), name)
    };
    let (x, y) = tokio::join!(
        WebrtcPeer::join(config("Caller", 440.0, a)),
        WebrtcPeer::join(config("Callee", 660.0, b))
    );
    let (mut x, mut y) = match (x, y) {
        (Ok(x), Ok(y)) => (x, y),
        (x, y) => {
            for mut peer in [x, y].into_iter().flatten() {
                peer.close().await;
            }
            return Err("a room peer could not join the call's room".into());
        }
    };
    let heard = loop {
        if x.heard().windows_with(660.0) >= 1 && y.heard().windows_with(440.0) >= 1 {
            break Ok(since.elapsed());
        }
        if since.elapsed() > WAIT {
            break Err(format!("not both hearing through the SFU within {WAIT:?}"));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    x.close().await;
    y.close().await;
    heard
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs.get(xs.len() / 2).copied().unwrap_or_default()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut url = "ws://127.0.0.1:8080/ws".to_owned();
    let mut runs = 10usize;
    let mut relayed = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--relayed" {
            relayed = true;
            continue;
        }
        match (arg.as_str(), args.next()) {
            ("--server", Some(v)) => url = v,
            ("--runs", Some(v)) => match v.parse() {
                Ok(n) if n > 0 => runs = n,
                _ => {
                    eprintln!("--runs takes a positive number, not {v:?}");
                    std::process::exit(2);
                }
            },
            _ => {
                eprintln!(
                    "usage: call_first_audio [--server ws://host:port/ws] [--runs N] [--relayed]"
                );
                std::process::exit(2);
            }
        }
    }
    // Handles must be new on every run of the tool against the same server.
    let tag = format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() % 0xfffff)
            .unwrap_or(0)
    );
    let (mut signalled, mut heard) = (Vec::new(), Vec::new());
    for run in 0..runs {
        match one_call(&url, run, &tag, relayed).await {
            Ok((s, h)) => {
                let (s_ms, h_ms) = (s.as_secs_f64() * 1e3, h.as_secs_f64() * 1e3);
                match relayed {
                    true => {
                        println!("call {run}: accept → both hearing through the SFU {h_ms:.0} ms")
                    }
                    false => println!(
                        "call {run}: accept → SDP across {s_ms:.0} ms, → both hearing {h_ms:.0} ms"
                    ),
                }
                signalled.push(s);
                heard.push(h);
            }
            Err(e) => {
                eprintln!("call {run} failed: {e}");
                std::process::exit(1);
            }
        }
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let kind = if relayed { "relayed" } else { "direct" };
    println!(
        "{kind} calls: {runs}; accept → both hearing: median {:.0} ms (min {:.0}, max {:.0})",
        ms(median(heard.clone())),
        ms(heard.iter().min().copied().unwrap_or_default()),
        ms(heard.iter().max().copied().unwrap_or_default()),
    );
    if !relayed {
        println!(
            "accept → SDP across: median {:.0} ms",
            ms(median(signalled))
        );
    }
}
