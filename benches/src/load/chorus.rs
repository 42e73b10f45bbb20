//! Joining Chorus: `POST /api/rooms`, then per peer one WebSocket speaking protocol v1
//! (`hello`, `join` with the offer, `joined` with the answer). The socket stays open for
//! the run — closing it leaves the room — read and discarded by a small task.

use std::time::{Duration, Instant};

use chorus_proto::ParticipantId;
use chorus_proto::RoomId;
use chorus_proto::api_key::ApiKey;
use chorus_proto::signal::{ClientMessage, PROTOCOL_VERSION, ServerMessage};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::peer::{PeerSetup, Role, Unjoined};
use super::{AUDIO_SLOTS, JoinRequest, JoinResult, LoadConfig, LoadError, SessionGuard};
use crate::rest;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Largest frame read from the server (a `joined` lists everyone in the room).
const MAX_SERVER_FRAME: usize = 4 * 1024 * 1024;
/// How long one signaling step may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(20);

/// An open-seat room with a seat for every speaker (and its absent owner).
pub async fn create_room(
    url: &str,
    key: Option<&ApiKey>,
    index: usize,
    config: &LoadConfig,
) -> Result<String, LoadError> {
    let key = key.ok_or_else(|| {
        LoadError::CreateRoom("a server API key is needed to create rooms (--api-key-file)".into())
    })?;
    let members = (config.speakers + config.listeners + 1) as u32;
    let seats = (config.speakers + 1).min(50) as u32;
    let settings = rest::RoomSettings::open(&format!("load {index}"), members.max(2), seats);
    let room = rest::create_room(url, key, &settings)
        .await
        .map_err(|e| LoadError::CreateRoom(e.to_string()))?;
    Ok(room.id.to_string())
}

/// An open session, kept until the end of the run.
pub struct Held {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Held {
    pub async fn close(self) {
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(2), self.task).await;
    }
}

pub async fn join(req: JoinRequest) -> JoinResult {
    let ws_url = rest::ws_url(&req.url).map_err(|e| e.to_string())?;
    let room = RoomId::parse(req.room.id.clone()).map_err(|e| format!("room id: {e}"))?;
    let mut peer = Unjoined::new(&req.cert, req.bind_ip)?;
    let (offer, pending, send_mid) = peer.offer(AUDIO_SLOTS)?;

    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_SERVER_FRAME))
        .max_frame_size(Some(MAX_SERVER_FRAME));
    let connect = tokio_tungstenite::connect_async_with_config(ws_url, Some(config), false);
    let (mut socket, _) = tokio::time::timeout(STEP_TIMEOUT, connect)
        .await
        .map_err(|_| "WebSocket connect timed out".to_owned())?
        .map_err(|e| format!("WebSocket connect: {e}"))?;
    let opened_at = Instant::now();

    send(
        &mut socket,
        &ClientMessage::Hello {
            version: PROTOCOL_VERSION,
            name: format!("load-{}", req.peer),
            user_token: None,
            takes_calls: false,
        },
    )
    .await?;
    expect(&mut socket, "welcome", |m| {
        matches!(m, ServerMessage::Welcome { .. }).then_some(())
    })
    .await?;
    send(
        &mut socket,
        &ClientMessage::Join {
            room,
            offer,
            listener: matches!(req.role, Role::Listener { .. }),
        },
    )
    .await?;
    let (answer, you) = expect(&mut socket, "joined", |m| match m {
        ServerMessage::Joined { answer, you, .. } => Some((answer.clone(), you.clone())),
        _ => None,
    })
    .await?;
    peer.accept_answer(pending, &answer)?;

    let (stop, stopped) = oneshot::channel();
    let speaker = matches!(req.role, Role::Speaker { .. });
    let task = tokio::spawn(hold(socket, stopped, speaker.then_some(you)));
    let setup = PeerSetup {
        room: req.room.index,
        role: req.role,
        rtc: peer.rtc,
        socket: peer.socket,
        local: peer.local,
        send_mid: speaker.then_some(send_mid),
        opened_at,
    };
    Ok((setup, SessionGuard::Chorus(Held { stop, task })))
}

/// Read server frames until told to stop; then leave and close. A speaker takes its
/// seat as soon as its media is connected (membership is confirmed then).
async fn hold(
    mut socket: Socket,
    mut stop: oneshot::Receiver<()>,
    mut take_seat: Option<ParticipantId>,
) {
    loop {
        tokio::select! {
            _ = &mut stop => break,
            frame = socket.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    let Ok(ServerMessage::ParticipantUpdated { participant }) = serde_json::from_str(&text) else {
                        continue;
                    };
                    if participant.connected && take_seat.as_ref() == Some(&participant.id) {
                        take_seat = None;
                        let _ = send(&mut socket, &ClientMessage::RequestSeat).await;
                    }
                }
                Some(Ok(_)) => {}
                _ => return,
            },
        }
    }
    let _ = send(&mut socket, &ClientMessage::Leave).await;
    let _ = socket.close(None).await;
}

async fn send(socket: &mut Socket, message: &ClientMessage) -> Result<(), String> {
    let text = serde_json::to_string(message).map_err(|e| format!("encode: {e}"))?;
    socket
        .send(Message::text(text))
        .await
        .map_err(|e| format!("WebSocket send: {e}"))
}

/// Wait for the message `pick` accepts; an `error` frame fails the join with its words.
async fn expect<T>(
    socket: &mut Socket,
    what: &str,
    mut pick: impl FnMut(&ServerMessage) -> Option<T>,
) -> Result<T, String> {
    let wait = async {
        loop {
            let frame = socket
                .next()
                .await
                .ok_or_else(|| format!("socket closed while waiting for {what}"))?
                .map_err(|e| format!("WebSocket: {e}"))?;
            let Message::Text(text) = frame else {
                if let Message::Close(_) = frame {
                    return Err(format!("socket closed while waiting for {what}"));
                }
                continue;
            };
            let Ok(message) = serde_json::from_str::<ServerMessage>(text.as_str()) else {
                continue;
            };
            if let Some(found) = pick(&message) {
                return Ok(found);
            }
            if let ServerMessage::Error { code, message } = message {
                return Err(format!("server refused ({code:?}): {message}"));
            }
        }
    };
    tokio::time::timeout(STEP_TIMEOUT, wait)
        .await
        .map_err(|_| format!("no {what} within {STEP_TIMEOUT:?}"))?
}
