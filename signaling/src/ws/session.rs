//! One client session: reads frames, answers them, and keeps the session's place in a
//! room. A bad frame costs only this session an error frame; nothing here panics on input.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use chorus_proto::signal::{
    self, ClientMessage, ErrorCode, LeftReason, PROTOCOL_VERSION, ServerMessage,
};
use chorus_proto::{ParticipantId, RoomId, UserId};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;

use crate::app::AppState;
use crate::rooms::group_chat::Actor;
use crate::rooms::service::{Entered, Failure, Moderation, NewRoom, Visitor};
use crate::ws::outbox::Outbox;

/// Whether the session goes on after a frame.
#[derive(PartialEq, Eq)]
enum Flow {
    Continue,
    Close,
}

struct Session {
    state: Arc<AppState>,
    outbox: Outbox,
    user: Option<(UserId, String)>,
    current: Option<(RoomId, ParticipantId)>,
}

pub async fn run(socket: WebSocket, state: Arc<AppState>) {
    let (sink, mut stream) = socket.split();
    let (outbox, rx, stuck) = Outbox::new();
    let writer = tokio::spawn(write_frames(sink, rx));
    let mut session = Session {
        state,
        outbox,
        user: None,
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
        let (user, name) = match (&message, &self.user) {
            (
                ClientMessage::Hello {
                    version,
                    name,
                    user_token,
                },
                _,
            ) => {
                return self
                    .hello(*version, name, user_token.as_deref())
                    .map(|()| Flow::Continue);
            }
            (_, Some(who)) => who.clone(),
            (_, None) => {
                return Err((
                    ErrorCode::HelloFirst,
                    "say hello first: the first message must be 'hello'".into(),
                ));
            }
        };
        let rooms = self.state.rooms.clone();
        match message {
            ClientMessage::Hello { .. } => {} // answered above
            ClientMessage::CreateRoom {
                name: title,
                capacity,
                seats,
                seat_mode,
                offer,
            } => {
                self.not_in_room()?;
                let title = signal::clean_name(&title)?;
                let visitor = Visitor {
                    user: &user,
                    name: &name,
                    outbox: &self.outbox,
                };
                let settings = NewRoom {
                    title,
                    capacity,
                    seats,
                    seat_mode,
                };
                let entered = rooms.create(visitor, settings, offer).await?;
                self.entered(entered);
            }
            ClientMessage::Join {
                room,
                offer,
                listener: _,
            } => {
                self.not_in_room()?;
                let visitor = Visitor {
                    user: &user,
                    name: &name,
                    outbox: &self.outbox,
                };
                let entered = rooms.join(visitor, &room, offer).await?;
                self.entered(entered);
            }
            ClientMessage::Leave => {
                let (room, me) = self.in_room()?;
                self.current = None;
                rooms.leave(&room, &me, LeftReason::Left).await;
                self.outbox.send(ServerMessage::Left {
                    reason: LeftReason::Left,
                });
            }
            ClientMessage::SetMuted { muted } => {
                let (room, me) = self.in_room()?;
                rooms.set_self_muted(&room, &me, muted);
            }
            ClientMessage::MediaOffer { offer } => {
                let (room, me) = self.in_room()?;
                let answer = rooms.reconnect_media(&room, &me, offer).await?;
                self.outbox.send(ServerMessage::MediaAnswer { answer });
            }
            ClientMessage::LeaveGroup => {
                let (room, me) = self.in_room()?;
                rooms.leave_group(&room, &me).await?;
                self.current = None;
                self.outbox.send(ServerMessage::Left {
                    reason: LeftReason::Left,
                });
            }
            ClientMessage::RequestSeat => {
                let (room, me) = self.in_room()?;
                rooms.request_seat(&room, &rooms.actor(&room, &me)?).await?;
            }
            ClientMessage::LowerHand => {
                let (room, me) = self.in_room()?;
                rooms.lower_hand(&room, &rooms.actor(&room, &me)?).await?;
            }
            ClientMessage::LeaveSeat => self.moderate(None, Moderation::Seat(false)).await?,
            ClientMessage::GrantSeat { participant } => {
                self.moderate(Some(&participant), Moderation::Seat(true))
                    .await?;
            }
            ClientMessage::RevokeSeat { participant } => {
                self.moderate(Some(&participant), Moderation::Seat(false))
                    .await?;
            }
            ClientMessage::Mute { participant, muted } => {
                self.moderate(Some(&participant), Moderation::Mute(muted))
                    .await?;
            }
            ClientMessage::Remove { participant } => {
                self.moderate(Some(&participant), Moderation::Remove)
                    .await?;
            }
            ClientMessage::SetModerator {
                participant,
                moderator,
            } => {
                self.moderate(Some(&participant), Moderation::Moderator(moderator))
                    .await?;
            }
            ClientMessage::EndRoom => {
                let (room, me) = self.in_room()?;
                rooms
                    .end(&room, &Actor::Member(rooms.actor(&room, &me)?))
                    .await?;
                self.current = None;
            }
            ClientMessage::Ping => self.outbox.send(ServerMessage::Pong),
        }
        Ok(Flow::Continue)
    }

    fn hello(&mut self, version: u32, name: &str, user_token: Option<&str>) -> Result<(), Failure> {
        if version != PROTOCOL_VERSION {
            return Err((
                ErrorCode::UnsupportedVersion,
                format!(
                    "this server speaks protocol version {PROTOCOL_VERSION}, the client {version}; reload the page"
                ),
            ));
        }
        let name = signal::clean_name(name)?;
        // A returning user keeps its id (and so its roles); a bad or old token just
        // means a new guest, never an error: the token is the client's convenience.
        let user = user_token
            .and_then(|t| self.state.users.verify_user(t).ok())
            .map(|claims| claims.sub)
            .unwrap_or_else(UserId::random);
        let user_token = self.state.user_token(&user, &name)?;
        self.outbox.send(ServerMessage::Welcome {
            version: PROTOCOL_VERSION,
            name: name.clone(),
            user: user.clone(),
            user_token,
        });
        self.user = Some((user, name));
        Ok(())
    }

    /// A moderation request from this session on another participant, or (`None`) on
    /// its own participant.
    async fn moderate(
        &mut self,
        target: Option<&ParticipantId>,
        action: Moderation,
    ) -> Result<(), Failure> {
        let (room, me) = self.in_room()?;
        let rooms = &self.state.rooms;
        let actor = rooms.actor(&room, &me)?;
        let target = match target {
            Some(target) => rooms.target(&room, target).await?,
            None => actor.clone(),
        };
        if action == Moderation::Remove && target == actor {
            return Err((
                ErrorCode::InvalidInput,
                "to leave the room, use leave".into(),
            ));
        }
        rooms
            .moderate(&room, &Actor::Member(actor), &target, action)
            .await
    }

    fn entered(&mut self, entered: Entered) {
        let Entered {
            room,
            you,
            answer,
            participants,
        } = entered;
        self.current = Some((room.id.clone(), you.clone()));
        self.outbox.send(ServerMessage::Joined {
            room,
            you,
            answer,
            participants,
        });
    }

    fn not_in_room(&mut self) -> Result<(), Failure> {
        match self.in_room() {
            Ok(_) => Err((
                ErrorCode::AlreadyInRoom,
                "you are already in a room; leave it first".into(),
            )),
            Err(_) => Ok(()),
        }
    }

    /// The room this session is in, if it is still there (the SFU may have dropped its
    /// connection, or a moderator removed it, meanwhile).
    fn in_room(&mut self) -> Result<(RoomId, ParticipantId), Failure> {
        match &self.current {
            Some((room, me)) if self.state.rooms.registry.contains(room, me) => {
                Ok((room.clone(), me.clone()))
            }
            _ => {
                self.current = None;
                Err((ErrorCode::NotInRoom, "you are not in a room".into()))
            }
        }
    }

    /// Leave the current room, if any (the session is ending).
    async fn leave(&mut self, reason: LeftReason) {
        if let Some((room, me)) = self.current.take() {
            self.state.rooms.leave(&room, &me, reason).await;
        }
    }
}
