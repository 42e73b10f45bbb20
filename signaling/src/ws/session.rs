//! One client session: reads frames, answers them, and keeps the session's place in a
//! room. A bad frame costs only this session an error frame; nothing here panics on input.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use chorus_proto::session::{InRoom, OpenError, SessionState};
use chorus_proto::signal::{
    self, ClientMessage, ErrorCode, LeftReason, PROTOCOL_VERSION, ServerMessage, close,
};
use chorus_proto::{ParticipantId, RoomId, SessionId, UserId};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::app::AppState;
use crate::people::directory::{Device, DeviceId};
use crate::rooms::group_chat::Actor;
use crate::rooms::service::{Entered, Failure, Moderation, NewRoom, Visitor};
use crate::store::people::Account;
use crate::ws::outbox::{Outbox, Outgoing};
use crate::ws::rate::RateLimit;

/// How long a sealed state opens: a session that holds one longer gets a fresh one
/// first (every [`STATE_REFRESH`]).
const STATE_TTL: Duration = Duration::from_secs(2 * 3600);
/// How often a session in a room is sent its state again, though nothing changed.
const STATE_REFRESH: Duration = Duration::from_secs(30 * 60);

/// How long the last frames (`left`, the close) may take to leave once a session ends.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether the session goes on after a frame.
#[derive(PartialEq, Eq)]
enum Flow {
    Continue,
    Close,
}

/// How a session ends.
enum Ending {
    /// The client closed the socket: nobody to tell.
    Gone,
    /// The socket broke (no close frame): the client may resume its session.
    Lost,
    /// The server closes: with this code and reason.
    Close(u16, String),
    /// The server is stopping.
    Restart,
}

struct Session {
    state: Arc<AppState>,
    outbox: Outbox,
    user: Option<(UserId, String)>,
    current: Option<(RoomId, ParticipantId)>,
    /// Where the client is (`client_addr::origin_of`), for the places its joins hold.
    origin: Option<String>,
    /// Its user token says it signed in through the app backend (not a guest).
    signed_in: bool,
    /// The join waiting at a room's door (entry `knock`).
    knocking: Option<Knocking>,
    /// The answer to a knock just made, for the session loop to wait on.
    new_knock: Option<oneshot::Receiver<bool>>,
    /// The account this session is signed in as (its user has a handle).
    account: Option<Account>,
    /// This session as one of its account's devices (online while it is connected).
    device: Device,
    /// This web session (its sealed state is bound to it; a resume continues another).
    session_id: SessionId,
    /// The counter of the last state sealed for it.
    sealed: u64,
    /// When its state is sent again before it expires (while in a room).
    reseal_at: Option<Instant>,
}

/// A join that knocked: it goes ahead with its offer once a moderator lets it in.
struct Knocking {
    room: RoomId,
    offer: String,
}

/// How long a knock waits for an answer.
const KNOCK_WAIT: Duration = Duration::from_secs(crate::rooms::group_chat::KNOCK_TTL_SECS);

pub async fn run(socket: WebSocket, state: Arc<AppState>, origin: Option<String>) {
    let _open = state.sessions.opened();
    let limits = *state.sessions.limits();
    let mut stopping = state.sessions.stopping.subscribe();
    let (sink, mut stream) = socket.split();
    let (outbox, rx, behind) = Outbox::new();
    let mut writer = tokio::spawn(write_frames(sink, rx));
    let device = Device::local(DeviceId::next(), outbox.clone(), false);
    let mut session = Session {
        state,
        outbox,
        user: None,
        current: None,
        origin,
        signed_in: false,
        knocking: None,
        new_knock: None,
        account: None,
        device,
        session_id: SessionId::random(),
        sealed: 0,
        reseal_at: None,
    };
    // The answer to this session's knock, if it is waiting at a door, and until when.
    let mut knock: Option<(Instant, oneshot::Receiver<bool>)> = None;
    let opened = Instant::now();
    let mut rate = RateLimit::new(limits.frames_per_sec, limits.frame_burst, opened.into_std());
    // When the client was last heard from, and when it was pinged since (if it was).
    let mut heard = opened;
    let mut pinged: Option<Instant> = None;

    let ending = loop {
        if *stopping.borrow_and_update() {
            break Ending::Restart;
        }
        let deadline = match (&session.user, pinged) {
            (None, _) => opened + limits.hello_timeout,
            (Some(_), Some(at)) => at + limits.pong_timeout,
            (Some(_), None) => heard + limits.ping_interval,
        };
        let reseal_at = session.reseal_at;
        let frame = tokio::select! {
            biased;
            _ = stopping.changed() => continue,
            () = async {
                match reseal_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => {
                session.reseal_at = None;
                if session.current.is_some() {
                    session.reseal().await;
                }
                continue;
            }
            answer = async {
                match knock.as_mut() {
                    Some((until, rx)) => tokio::time::timeout_at(*until, rx).await,
                    None => std::future::pending().await,
                }
            } => {
                knock = None;
                session.knock_answered(answer.map(|a| a.unwrap_or(false))).await;
                continue;
            }
            () = behind.notified() => {
                break Ending::Close(
                    close::NOT_READING,
                    "not reading: too far behind on the frames sent to it".into(),
                );
            }
            () = tokio::time::sleep_until(deadline) => {
                match (&session.user, pinged) {
                    (None, _) => {
                        break Ending::Close(
                            close::HELLO_TIMEOUT,
                            format!("no hello within {} ms", limits.hello_timeout.as_millis()),
                        );
                    }
                    (Some(_), Some(_)) => {
                        break Ending::Close(
                            close::NOT_READING,
                            format!(
                                "not reading: no answer to a ping within {} ms",
                                limits.pong_timeout.as_millis()
                            ),
                        );
                    }
                    (Some(_), None) => {
                        session.outbox.ping();
                        pinged = Some(Instant::now());
                        continue;
                    }
                }
            }
            // Backpressure: the next frame is read only once its answers have room.
            frame = async {
                session.outbox.room_for_answers().await;
                stream.next().await
            } => frame,
        };
        heard = Instant::now();
        pinged = None;
        let frame = match frame {
            Some(Ok(Message::Close(_))) => break Ending::Gone,
            None => break Ending::Lost,
            Some(Err(e)) => match too_large(e) {
                true => {
                    break Ending::Close(
                        close::FRAME_TOO_LARGE,
                        format!("a frame may be at most {} bytes", super::HARD_FRAME_LIMIT),
                    );
                }
                false => break Ending::Lost,
            },
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(frame)) => frame,
        };
        if !rate.allow(heard.into_std()) {
            session.fail((
                ErrorCode::RateLimited,
                format!(
                    "too many messages: at most {} a second ({} at once); this one was not handled",
                    limits.frames_per_sec, limits.frame_burst
                ),
            ));
            continue;
        }
        let flow = match frame {
            Message::Text(text) => {
                let flow = session.handle_text(text.as_str()).await;
                if let Some(rx) = session.new_knock.take() {
                    knock = Some((Instant::now() + KNOCK_WAIT, rx));
                }
                if session.knocking.is_none() {
                    knock = None;
                }
                flow
            }
            _ => {
                session.fail((
                    ErrorCode::Malformed,
                    "binary frames are not understood; send JSON text".into(),
                ));
                Flow::Continue
            }
        };
        if flow == Flow::Close {
            break Ending::Close(
                close::UNSUPPORTED_VERSION,
                "unsupported protocol version: reload the page".into(),
            );
        }
    };

    let goodbye = match ending {
        Ending::Gone => {
            session.leave(LeftReason::Disconnected).await;
            None
        }
        Ending::Lost => {
            session.detach().await;
            None
        }
        Ending::Close(code, reason) => {
            tracing::info!(code, %reason, "closing a session");
            // A client that stopped answering may be on a network that went away: its
            // place waits for a resume like a broken socket's.
            match code {
                close::NOT_READING => session.detach().await,
                _ => session.leave(LeftReason::Disconnected).await,
            }
            Some((code, reason))
        }
        Ending::Restart => {
            session.leave_for_restart().await;
            Some((close::SERVER_RESTARTING, "server restarting".to_owned()))
        }
    };
    session.offline().await;
    let outbox = session.outbox.clone();
    drop(session);
    if let Some((code, reason)) = goodbye {
        outbox.close(code, reason, GOODBYE_TIMEOUT).await;
    }
    drop(outbox);
    // The writer ends once every queued frame is sent; a client that does not read gets
    // no longer than this, then its connection is dropped.
    if tokio::time::timeout(GOODBYE_TIMEOUT, &mut writer)
        .await
        .is_err()
    {
        writer.abort();
    }
}

/// Whether a read error is a frame over the hard limit (the rest are broken sockets).
fn too_large(error: axum::Error) -> bool {
    matches!(
        error
            .into_inner()
            .downcast::<tungstenite::Error>()
            .map(|e| *e),
        Ok(tungstenite::Error::Capacity(_))
    )
}

async fn write_frames(
    mut sink: futures_util::stream::SplitSink<WebSocket, Message>,
    mut rx: mpsc::Receiver<Outgoing>,
) {
    while let Some(outgoing) = rx.recv().await {
        let frame = match outgoing {
            Outgoing::Frame(message) => match serde_json::to_string(&message) {
                Ok(text) => Message::Text(text.into()),
                Err(e) => {
                    tracing::error!(error = %e, "cannot encode a server frame");
                    continue;
                }
            },
            Outgoing::Ping => Message::Ping(Default::default()),
            Outgoing::Close(code, reason) => {
                let frame = CloseFrame {
                    code,
                    reason: reason.into(),
                };
                let _ = sink.send(Message::Close(Some(frame))).await;
                return;
            }
        };
        if sink.send(frame).await.is_err() {
            return;
        }
    }
}

impl Session {
    /// This session as a visitor of a room.
    fn visitor<'a>(&'a self, user: &'a UserId, name: &'a str) -> Visitor<'a> {
        Visitor {
            user,
            name,
            outbox: &self.outbox,
            origin: self.origin.as_deref(),
            signed_in: self.signed_in,
        }
    }

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
                    takes_calls,
                },
                _,
            ) => {
                let (version, name, user_token) = (*version, name.clone(), user_token.clone());
                self.device.takes_calls = *takes_calls;
                return self
                    .hello(version, &name, user_token.as_deref())
                    .await
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
            ClientMessage::Resume { session, state } => {
                self.resume(&user, &name, session, &state).await?;
            }
            ClientMessage::CreateRoom {
                name: title,
                capacity,
                seats,
                seat_mode,
                entry,
                offer,
            } => {
                self.not_in_room()?;
                let title = signal::clean_name(&title)?;
                let visitor = self.visitor(&user, &name);
                let settings = NewRoom {
                    title,
                    capacity,
                    seats,
                    seat_mode,
                    entry,
                };
                let entered = rooms.create(visitor, settings, offer).await?;
                self.entered(entered);
                self.reseal().await;
            }
            ClientMessage::Join {
                room,
                offer,
                listener: _,
            } => {
                self.not_in_room()?;
                if self.knocking.is_some() {
                    return Err((
                        ErrorCode::AlreadyInRoom,
                        "you are already waiting to come into a room; leave to stop waiting".into(),
                    ));
                }
                if rooms.resolve(&room).await?.must_knock(&user) {
                    let (info, answer) = rooms.knock(&room, &user, &name).await?;
                    self.outbox.send(ServerMessage::Knocking { room: info });
                    self.knocking = Some(Knocking { room, offer });
                    self.new_knock = Some(answer);
                    return Ok(Flow::Continue);
                }
                let visitor = self.visitor(&user, &name);
                let entered = rooms.join(visitor, &room, offer).await?;
                self.entered(entered);
                self.reseal().await;
            }
            ClientMessage::Leave if self.knocking.is_some() => {
                self.stop_knocking().await;
                self.outbox.send(ServerMessage::Left {
                    reason: LeftReason::Left,
                });
            }
            ClientMessage::Leave => {
                let (room, me) = self.in_room()?;
                self.current = None;
                rooms.leave(&room, &me, LeftReason::Left).await;
                self.outbox.send(ServerMessage::Left {
                    reason: LeftReason::Left,
                });
                self.reseal().await;
            }
            ClientMessage::SetMuted { muted } => {
                let (room, me) = self.in_room()?;
                rooms.set_self_muted(&room, &me, muted);
            }
            ClientMessage::MediaOffer { offer } => {
                let (room, me) = self.in_room()?;
                let answer = rooms.reconnect_media(&room, &me, offer).await?;
                self.outbox.send(ServerMessage::MediaAnswer { answer });
                self.reseal().await;
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
            ClientMessage::Admit { user: who, admit } => {
                let (room, me) = self.in_room()?;
                let actor = Actor::Member(rooms.actor(&room, &me)?);
                rooms.answer_knock(&room, &actor, &who, admit).await?;
            }
            ClientMessage::SetAccess { locked, entry } => {
                let (room, me) = self.in_room()?;
                let actor = Actor::Member(rooms.actor(&room, &me)?);
                rooms.set_access(&room, &actor, locked, entry).await?;
            }
            ClientMessage::EndRoom => {
                let (room, me) = self.in_room()?;
                rooms
                    .end(&room, &Actor::Member(rooms.actor(&room, &me)?))
                    .await?;
                self.current = None;
            }
            ClientMessage::Ping => self.outbox.send(ServerMessage::Pong),
            ClientMessage::Register { handle, password } => {
                let account = self
                    .state
                    .people
                    .register(&user, &name, &handle, &password)
                    .await?;
                self.signed_in_as(account).await?;
            }
            ClientMessage::SignIn { handle, password } => {
                self.may_sign_in()?;
                let origin = self.origin.clone().unwrap_or_default();
                let account = self
                    .state
                    .people
                    .sign_in(&origin, &handle, &password)
                    .await?;
                self.user = Some((account.user.clone(), account.name.clone()));
                self.signed_in_as(account).await?;
            }
            ClientMessage::SignInWithLink { code } => {
                self.may_sign_in()?;
                let account = self
                    .state
                    .people
                    .redeem_link(&self.state.users, &code)
                    .await?;
                self.user = Some((account.user.clone(), account.name.clone()));
                self.signed_in_as(account).await?;
            }
            ClientMessage::FindPerson { handle } => {
                self.my_account()?;
                let found = self.state.people.account_by_handle(&handle).await?;
                let person = self.state.people.person(&found).await;
                self.outbox.send(ServerMessage::Person { person });
            }
            ClientMessage::Contacts => {
                let me = self.my_account()?;
                let contacts = self.state.people.contacts(&me, &self.device).await?;
                self.outbox.send(contacts);
            }
            ClientMessage::Block { user: who, blocked } => {
                let me = self.my_account()?;
                let saved = self.state.people.block(&me, &who, blocked).await?;
                let contacts = self.state.people.contacts(&saved, &self.device).await?;
                self.account = Some(saved);
                self.outbox.send(contacts);
            }
            ClientMessage::Call { handle } => {
                let me = self.my_account()?;
                self.state.calls.invite(&me, &self.device, &handle).await?;
            }
            ClientMessage::AcceptCall { call } => {
                let me = self.my_account()?;
                self.state.calls.accept(&me, &self.device, &call).await?;
            }
            ClientMessage::DeclineCall { call } => {
                let me = self.my_account()?;
                self.state.calls.decline(&me, &self.device, &call).await?;
            }
            ClientMessage::HangUp { call } => {
                let me = self.my_account()?;
                self.state.calls.hang_up(&me, &self.device, &call).await?;
            }
            ClientMessage::CallSignal {
                call,
                description,
                candidate,
            } => {
                let me = self.my_account()?;
                self.state
                    .calls
                    .signal(&me, &self.device, &call, description, candidate)
                    .await?;
            }
            ClientMessage::CallConnected { call } => {
                let me = self.my_account()?;
                self.state.calls.connected(&me, &self.device, &call).await?;
            }
            ClientMessage::RelayCall { call } => {
                let me = self.my_account()?;
                self.state.calls.relay(&me, &self.device, &call).await?;
            }
            ClientMessage::GrowCall { call } => {
                let me = self.my_account()?;
                self.state.calls.grow(&me, &self.device, &call).await?;
            }
            ClientMessage::ChatOpen { room } => {
                let chat = &self.state.chat;
                let page = chat
                    .open(&room, &user, self.device.id, &self.outbox)
                    .await?;
                self.outbox.send(page);
            }
            ClientMessage::ChatHistory {
                room,
                before,
                limit,
            } => {
                let page = self.state.chat.history(&room, &user, before, limit).await?;
                self.outbox.send(page);
            }
            ClientMessage::ChatSend {
                room,
                text,
                attachment,
                nonce,
            } => {
                self.state
                    .chat
                    .send(&room, &user, &name, &text, attachment, nonce)
                    .await?;
            }
            ClientMessage::ChatEdit {
                room,
                seq,
                text,
                nonce,
            } => {
                self.state
                    .chat
                    .edit(&room, &user, seq, &text, nonce)
                    .await?;
            }
            ClientMessage::ChatDelete { room, seq, nonce } => {
                self.state.chat.delete(&room, &user, seq, nonce).await?;
            }
            ClientMessage::ChatMute {
                room,
                user: who,
                muted,
            } => {
                self.state.chat.mute(&room, &user, &who, muted).await?;
            }
            ClientMessage::ChatRead { room, seq } => {
                self.state.chat.read(&room, &user, seq).await?;
            }
            ClientMessage::ChatUnread => {
                let groups = self.state.chat.unread(&user).await?;
                self.outbox.send(ServerMessage::ChatUnread { groups });
            }
            ClientMessage::SetCallPrivacy { always_relay } => {
                let me = self.my_account()?;
                let saved = self
                    .state
                    .people
                    .set_call_privacy(&me, always_relay)
                    .await?;
                self.tell_account(&saved)?;
                self.account = Some(saved);
            }
        }
        Ok(Flow::Continue)
    }

    /// The account this session is signed in as (calls and people need one).
    fn my_account(&self) -> Result<Account, Failure> {
        self.account.clone().ok_or_else(|| {
            (
                ErrorCode::NotSignedIn,
                "calls need an account: sign up or sign in first".into(),
            )
        })
    }

    /// This session is now `account`: it gets a token to keep, and is online.
    async fn signed_in_as(&mut self, account: Account) -> Result<(), Failure> {
        self.tell_account(&account)?;
        self.signed_in = true;
        self.state
            .people
            .device_connected(&account.user, self.device.clone())
            .await;
        self.account = Some(account);
        Ok(())
    }

    /// Send the session its account as it is now, with a token to keep.
    fn tell_account(&self, account: &Account) -> Result<(), Failure> {
        let user_token = self.state.user_token(&account.user, &account.name, true)?;
        self.outbox.send(ServerMessage::Account {
            account: crate::people::account_info(account),
            user_token,
        });
        Ok(())
    }

    /// A guest session, not in a room nor at a room's door, may become an account.
    fn may_sign_in(&mut self) -> Result<(), Failure> {
        if let Some(account) = &self.account {
            return Err((
                ErrorCode::InvalidInput,
                format!(
                    "you are signed in as @{} already; sign out first",
                    account.handle
                ),
            ));
        }
        self.not_in_room()?;
        if self.knocking.is_some() {
            return Err((
                ErrorCode::AlreadyInRoom,
                "you are waiting to come into a room; leave it first".into(),
            ));
        }
        Ok(())
    }

    /// The session is ending: its call ends, and its account has one device less.
    async fn offline(&mut self) {
        self.state.chat.close(self.device.id);
        if let Some(account) = self.account.take() {
            self.state.calls.device_gone(self.device.id).await;
            self.state
                .people
                .device_disconnected(&account.user, self.device.id)
                .await;
        }
    }

    async fn hello(
        &mut self,
        version: u32,
        name: &str,
        user_token: Option<&str>,
    ) -> Result<(), Failure> {
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
        let (user, signed_in) = user_token
            .and_then(|t| self.state.users.verify_user(t).ok())
            .map_or_else(|| (UserId::random(), false), |c| (c.sub, c.signed_in));
        // A second hello starts over as whoever it names.
        self.offline().await;
        // An account's token: the account, under the name its user gives now.
        let mut account = match signed_in {
            true => self.state.people.account_of(&user).await?,
            false => None,
        };
        if let Some(account) = account.as_mut() {
            self.state.people.rename(account, &name).await;
        }
        let user_token = self.state.user_token(&user, &name, signed_in)?;
        self.outbox.send(ServerMessage::Welcome {
            version: PROTOCOL_VERSION,
            name: name.clone(),
            user: user.clone(),
            user_token,
            account: account.as_ref().map(crate::people::account_info),
            session: self.session_id.clone(),
        });
        if let Some(account) = account {
            self.state
                .people
                .device_connected(&account.user, self.device.clone())
                .await;
            self.account = Some(account);
        }
        self.user = Some((user, name));
        self.signed_in = signed_in;
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
            knocks,
        } = entered;
        self.current = Some((room.id.clone(), you.clone()));
        self.outbox.send(ServerMessage::Joined {
            room,
            you,
            answer,
            participants,
        });
        if !knocks.is_empty() {
            self.outbox.send(ServerMessage::Knocks { knocks });
        }
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
            Some((room, me)) if self.state.rooms.registry.owned_by(room, me, &self.outbox) => {
                Ok((room.clone(), me.clone()))
            }
            _ => {
                self.current = None;
                Err((ErrorCode::NotInRoom, "you are not in a room".into()))
            }
        }
    }

    /// The answer to this session's knock (`Err`: none in time).
    async fn knock_answered(&mut self, answer: Result<bool, tokio::time::error::Elapsed>) {
        let Some(Knocking { room, offer }) = self.knocking.take() else {
            return;
        };
        let Some((user, name)) = self.user.clone() else {
            return;
        };
        match answer {
            Ok(true) => {
                let visitor = self.visitor(&user, &name);
                match self.state.rooms.join(visitor, &room, offer).await {
                    Ok(entered) => {
                        self.entered(entered);
                        self.reseal().await;
                    }
                    Err(failure) => self.fail(failure),
                }
            }
            Ok(false) => self.fail((
                ErrorCode::Forbidden,
                "a moderator did not let you in".into(),
            )),
            Err(_) => {
                self.state.rooms.withdraw_knock(&room, &user).await;
                self.fail((
                    ErrorCode::Timeout,
                    format!(
                        "nobody let you in within {} minutes; knock again later",
                        KNOCK_WAIT.as_secs() / 60
                    ),
                ));
            }
        }
    }

    /// Stop waiting at a room's door.
    async fn stop_knocking(&mut self) {
        if let (Some(Knocking { room, .. }), Some((user, _))) = (self.knocking.take(), &self.user) {
            self.state.rooms.withdraw_knock(&room, user).await;
        }
    }

    /// Leave the current room, if any (the session is ending). A presence a resume took
    /// over is the new session's: nothing to leave.
    async fn leave(&mut self, reason: LeftReason) {
        self.stop_knocking().await;
        if let Some((room, me)) = self.current.take()
            && self.state.rooms.registry.owned_by(&room, &me, &self.outbox)
        {
            self.state.rooms.leave(&room, &me, reason).await;
        }
    }

    /// The socket broke: the place in the room waits for a resume (then leaves).
    async fn detach(&mut self) {
        self.stop_knocking().await;
        if let Some((room, me)) = self.current.take()
            && self.state.rooms.registry.owned_by(&room, &me, &self.outbox)
        {
            self.state.rooms.detach(room, me, self.outbox.clone());
        }
    }

    /// Seal the session's state as it is now and send it (after every change of it,
    /// and before the last one expires). The counter is recorded first: a blob the
    /// store does not know the counter of could never resume.
    async fn reseal(&mut self) {
        let Some((user, name)) = self.user.clone() else {
            return;
        };
        let rooms = &self.state.rooms;
        let room = self.current.as_ref().and_then(|(room, me)| {
            let record = rooms
                .registry
                .record(room, me)
                .filter(|_| rooms.registry.owned_by(room, me, &self.outbox))?;
            Some(InRoom {
                room: room.clone(),
                participant: me.clone(),
                sfu: record.sfu?,
                muted: record.self_muted,
            })
        });
        let now = unix_now();
        let state = SessionState {
            session: self.session_id.clone(),
            counter: self.sealed + 1,
            expires: now + STATE_TTL.as_secs(),
            user,
            name,
            signed_in: self.signed_in,
            room,
            call: None,
        };
        let blob = match self.state.sealer.seal(&state, now) {
            Ok(blob) => blob,
            Err(e) => {
                tracing::error!(error = %e, "session state not sealed");
                return;
            }
        };
        if let Err(e) = rooms
            .store()
            .session_sealed(&self.session_id, state.counter, STATE_TTL)
            .await
        {
            tracing::warn!(error = %e, "session state not recorded; the client keeps its last one");
            return;
        }
        self.sealed = state.counter;
        self.reseal_at = Some(Instant::now() + STATE_REFRESH);
        self.outbox.send(ServerMessage::Session {
            state: blob,
            expires: state.expires,
        });
    }

    /// Take up the session `state` was sealed for: its place in the room, its media as
    /// it is. Any refusal leaves the room as it was; the client then joins as usual.
    async fn resume(
        &mut self,
        user: &UserId,
        name: &str,
        session: SessionId,
        state: &str,
    ) -> Result<(), Failure> {
        self.not_in_room()?;
        if self.knocking.is_some() {
            return Err((
                ErrorCode::AlreadyInRoom,
                "you are waiting to come into a room; leave it first".into(),
            ));
        }
        let sealed = self
            .state
            .sealer
            .open(&session, state, unix_now())
            .map_err(|e| {
                let code = match e {
                    OpenError::Expired => ErrorCode::SessionExpired,
                    _ => ErrorCode::SessionInvalid,
                };
                (code, format!("{e}; joining again"))
            })?;
        if &sealed.user != user {
            return Err((
                ErrorCode::SessionInvalid,
                "the saved session belongs to another user; joining again".into(),
            ));
        }
        let taken = self
            .state
            .rooms
            .store()
            .session_resume(&session, sealed.counter, STATE_TTL)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "cannot check a session's counter");
                (
                    ErrorCode::TemporarilyUnavailable,
                    "the server cannot check your session right now; try again in a moment".into(),
                )
            })?;
        if !taken {
            return Err((
                ErrorCode::SessionReplayed,
                "this saved session is out of date (a newer one was issued, or it was resumed already); joining again"
                    .into(),
            ));
        }
        // From here on this is that session, one seal further.
        self.session_id = session;
        self.sealed = sealed.counter;
        let Some(place) = sealed.room else {
            self.reseal().await;
            return Err((
                ErrorCode::ResumeFailed,
                "the saved session was in no room".into(),
            ));
        };
        let visitor = self.visitor(user, name);
        let resumed = self.state.rooms.resume(visitor, &place).await;
        match resumed {
            Ok(resumed) => {
                self.current = Some((place.room.clone(), place.participant.clone()));
                self.outbox.send(ServerMessage::Resumed {
                    room: resumed.room,
                    you: resumed.you,
                    participants: resumed.participants,
                });
                if !resumed.knocks.is_empty() {
                    self.outbox.send(ServerMessage::Knocks {
                        knocks: resumed.knocks,
                    });
                }
                self.reseal().await;
                Ok(())
            }
            Err(failure) => {
                self.reseal().await;
                Err(failure)
            }
        }
    }

    /// The server is stopping: out of the room and off the SFU, told `left`
    /// (`server_restarting`), but the member keeps seat, hand and role in the durable
    /// record, as after a crash, so that coming back after the restart finds them again.
    async fn leave_for_restart(&mut self) {
        self.stop_knocking().await;
        let Some((room, me)) = self.current.take() else {
            return;
        };
        let rooms = &self.state.rooms;
        if !rooms.registry.owned_by(&room, &me, &self.outbox) {
            return;
        }
        if self.state.media_outlives_stop && !rooms.is_fleet() {
            // The SFU goes on: the media stays there, and the node that starts next
            // adopts it when this session resumes (nobody is told anything changed).
            rooms.registry.forget(&room, &me);
            return;
        }
        if rooms
            .registry
            .remove(&room, &me, LeftReason::ServerRestarting, true)
            .is_some()
        {
            rooms.sfu_remove(&room, &me).await;
        }
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
