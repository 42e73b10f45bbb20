//! One client session: reads frames, answers them, and keeps the session's place in a
//! room. A bad frame costs only this session an error frame; nothing here panics on input.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use chorus_proto::signal::{
    self, ClientMessage, ErrorCode, LeftReason, PROTOCOL_VERSION, ParticipantInfo, ServerMessage,
};
use chorus_proto::token::Grants;
use chorus_proto::{ParticipantId, RoomId};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;

use crate::app::AppState;
use crate::ws::outbox::Outbox;

type Failure = (ErrorCode, String);

/// Whether the session goes on after a frame.
#[derive(PartialEq, Eq)]
enum Flow {
    Continue,
    Close,
}

struct Session {
    state: Arc<AppState>,
    outbox: Outbox,
    name: Option<String>,
    current: Option<(RoomId, ParticipantId)>,
}

pub async fn run(socket: WebSocket, state: Arc<AppState>) {
    let (sink, mut stream) = socket.split();
    let (outbox, rx, stuck) = Outbox::new();
    let writer = tokio::spawn(write_frames(sink, rx));
    let mut session = Session {
        state,
        outbox,
        name: None,
        current: None,
    };

    loop {
        let frame = tokio::select! {
            frame = stream.next() => frame,
            () = stuck.notified() => break,
        };
        let flow = match frame {
            None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
            Some(Ok(Message::Text(text))) => session.handle_text(text.as_str()).await,
            Some(Ok(Message::Binary(_))) => {
                session.fail((
                    ErrorCode::Malformed,
                    "binary frames are not understood; send JSON text".into(),
                ));
                Flow::Continue
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => Flow::Continue,
        };
        if flow == Flow::Close {
            break;
        }
    }

    session.leave(LeftReason::Disconnected).await;
    drop(session);
    // The writer ends once every queued frame is sent; do not wait on a dead client.
    let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
}

async fn write_frames(
    mut sink: futures_util::stream::SplitSink<WebSocket, Message>,
    mut rx: mpsc::Receiver<ServerMessage>,
) {
    while let Some(message) = rx.recv().await {
        let text = match serde_json::to_string(&message) {
            Ok(text) => text,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode a server frame");
                continue;
            }
        };
        if sink.send(Message::Text(text.into())).await.is_err() {
            return;
        }
    }
    let _ = sink.send(Message::Close(None)).await;
}

impl Session {
    fn fail(&self, (code, message): Failure) {
        self.outbox.send(ServerMessage::Error { code, message });
    }

    async fn handle_text(&mut self, text: &str) -> Flow {
        let message = match signal::parse_client_frame(text) {
            Ok(message) => message,
            Err(failure) => {
                self.fail(failure);
                return Flow::Continue;
            }
        };
        match self.handle(message).await {
            Ok(flow) => flow,
            Err(failure) => {
                let close = failure.0 == ErrorCode::UnsupportedVersion;
                self.fail(failure);
                if close { Flow::Close } else { Flow::Continue }
            }
        }
    }

    async fn handle(&mut self, message: ClientMessage) -> Result<Flow, Failure> {
        let name = match (&message, &self.name) {
            (ClientMessage::Hello { version, name }, _) => {
                return self.hello(*version, name).map(|()| Flow::Continue);
            }
            (_, Some(name)) => name.clone(),
            (_, None) => {
                return Err((
                    ErrorCode::HelloFirst,
                    "say hello first: the first message must be 'hello'".into(),
                ));
            }
        };
        match message {
            ClientMessage::Hello { .. } => {} // answered above
            ClientMessage::CreateRoom { name: title } => {
                let title = signal::clean_name(&title)?;
                let room = self.state.rooms.create(title);
                tracing::info!(room = %room.id, by = %name, "room created");
                self.outbox.send(ServerMessage::RoomCreated { room });
            }
            ClientMessage::Join {
                room,
                offer,
                listener,
            } => self.join(name, room, offer, listener).await?,
            ClientMessage::Leave => {
                if !self.leave(LeftReason::Left).await {
                    return Err((ErrorCode::NotInRoom, "you are not in a room".into()));
                }
                self.outbox.send(ServerMessage::Left {
                    reason: LeftReason::Left,
                });
            }
            ClientMessage::SetMuted { muted } => {
                let (room, me) = self.in_room()?;
                self.state.rooms.update(&room, &me, |p| p.muted = muted);
            }
            ClientMessage::Ping => self.outbox.send(ServerMessage::Pong),
        }
        Ok(Flow::Continue)
    }

    fn hello(&mut self, version: u32, name: &str) -> Result<(), Failure> {
        if version != PROTOCOL_VERSION {
            return Err((
                ErrorCode::UnsupportedVersion,
                format!(
                    "this server speaks protocol version {PROTOCOL_VERSION}, the client {version}; reload the page"
                ),
            ));
        }
        let name = signal::clean_name(name)?;
        self.outbox.send(ServerMessage::Welcome {
            version: PROTOCOL_VERSION,
            name: name.clone(),
        });
        self.name = Some(name);
        Ok(())
    }

    /// The room this session is in, if the registry still has it there (the SFU may
    /// have dropped its connection meanwhile).
    fn in_room(&mut self) -> Result<(RoomId, ParticipantId), Failure> {
        match &self.current {
            Some((room, me)) if self.state.rooms.contains(room, me) => {
                Ok((room.clone(), me.clone()))
            }
            _ => {
                self.current = None;
                Err((ErrorCode::NotInRoom, "you are not in a room".into()))
            }
        }
    }

    async fn join(
        &mut self,
        name: String,
        room: RoomId,
        offer: String,
        listener: bool,
    ) -> Result<(), Failure> {
        if self.in_room().is_ok() {
            return Err((
                ErrorCode::AlreadyInRoom,
                "you are already in a room; leave it first".into(),
            ));
        }
        let me = ParticipantId::random();
        let info = ParticipantInfo {
            id: me.clone(),
            name: name.clone(),
            muted: false,
            speaker: !listener,
            connected: false,
        };
        let room_info = self
            .state
            .rooms
            .reserve(&room, info, self.outbox.clone())
            .map_err(|e| (e.code(), e.to_string()))?;
        let grants = if listener {
            Grants::LISTENER
        } else {
            Grants::SPEAKER
        };
        let admitted = match self
            .state
            .tokens
            .mint(&room, &me, &name, grants, self.state.token_ttl)
        {
            Ok(token) => self.state.sfu.admit(token, offer).await,
            Err(e) => Err((
                ErrorCode::Internal,
                format!("cannot issue a room token: {e}"),
            )),
        };
        let answer = match admitted {
            Ok(answer) => answer,
            Err(failure) => {
                self.state.rooms.remove(&room, &me, LeftReason::Left, false);
                return Err(failure);
            }
        };
        tracing::info!(room = %room, participant = %me, listener, "joined");
        let participants = self.state.rooms.participants(&room);
        self.outbox.send(ServerMessage::Joined {
            room: room_info,
            you: me.clone(),
            answer,
            participants,
        });
        self.state.rooms.announce(&room, &me);
        self.current = Some((room, me));
        Ok(())
    }

    /// Leave the current room, if any; true when there was one.
    async fn leave(&mut self, reason: LeftReason) -> bool {
        let Some((room, me)) = self.current.take() else {
            return false;
        };
        let was_there = self.state.rooms.remove(&room, &me, reason, false);
        if let Err(status) = self.state.sfu.remove(&room, &me).await {
            tracing::warn!(room = %room, participant = %me, error = %status.message(), "SFU removal failed");
        }
        was_there
    }
}
