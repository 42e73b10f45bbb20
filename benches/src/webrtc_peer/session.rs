//! The WebSocket half of a synthetic peer: one signaling session speaking
//! `chorus_proto::signal`, and the room as the server has described it so far.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chorus_proto::ParticipantId;
use chorus_proto::signal::{
    ClientMessage, ErrorCode, LeftReason, ParticipantInfo, ServerMessage, SpeakerLevel,
};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::PeerError;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Largest frame accepted from the server: 16 × the client frame limit is ample for a
/// `joined` with a full room.
const MAX_SERVER_FRAME: usize = 16 * chorus_proto::signal::MAX_FRAME_BYTES;

/// The room as this session has been told about it.
#[derive(Debug, Clone, Default)]
pub struct RoomView {
    /// Everyone present, by id (this participant included).
    pub participants: BTreeMap<ParticipantId, ParticipantInfo>,
    /// Who left, and why, in order.
    pub departures: Vec<(ParticipantId, LeftReason)>,
    /// The latest `speaking` levels.
    pub speaking: Vec<SpeakerLevel>,
    /// Everyone ever listed in a `speaking` message, with their loudest level.
    pub ever_spoke: BTreeMap<ParticipantId, f32>,
    /// `error` frames received after joining.
    pub errors: Vec<(ErrorCode, String)>,
    /// Set when this session was told it left the room.
    pub left: Option<LeftReason>,
    /// Frames that were not a known server message.
    pub unreadable: u64,
    /// The socket is closed.
    pub closed: bool,
    /// Times the server asked for a new media offer (its SFU node went away).
    pub media_reconnects: u64,
    /// Who is knocking to come in (shown to moderators).
    pub knocks: Vec<chorus_proto::signal::Knocker>,
    /// This session's join is waiting at the room's door.
    pub knocking: bool,
    /// The web session the server named in `welcome`.
    pub session: Option<chorus_proto::SessionId>,
    /// The latest sealed state the server sent (`session` frames), for a resume.
    pub sealed: Option<String>,
    /// `session` frames received.
    pub seals: u64,
    /// Times a `resume` was answered `resumed`.
    pub resumes: u64,
}

impl RoomView {
    /// Apply one server message.
    pub(crate) fn apply(&mut self, message: &ServerMessage) {
        match message {
            ServerMessage::Joined { participants, .. } => {
                self.participants = participants
                    .iter()
                    .map(|p| (p.id.clone(), p.clone()))
                    .collect();
            }
            ServerMessage::ParticipantUpdated { participant } => {
                self.participants
                    .insert(participant.id.clone(), participant.clone());
            }
            ServerMessage::ParticipantLeft {
                participant,
                reason,
            } => {
                self.participants.remove(participant);
                self.departures.push((participant.clone(), *reason));
            }
            ServerMessage::Speaking { levels } => {
                for level in levels {
                    let loudest = self
                        .ever_spoke
                        .entry(level.participant.clone())
                        .or_insert(0.0);
                    *loudest = loudest.max(level.level);
                }
                self.speaking = levels.clone();
            }
            ServerMessage::Left { reason } => self.left = Some(*reason),
            ServerMessage::Error { code, message } => self.errors.push((*code, message.clone())),
            ServerMessage::ReconnectMedia { .. } => self.media_reconnects += 1,
            ServerMessage::Knocks { knocks } => self.knocks = knocks.clone(),
            ServerMessage::Knocking { .. } => self.knocking = true,
            ServerMessage::Welcome { session, .. } => self.session = Some(session.clone()),
            ServerMessage::Session { state, .. } => {
                self.sealed = Some(state.clone());
                self.seals += 1;
            }
            ServerMessage::Resumed { participants, .. } => {
                // Those known and not listed yet are resuming too: kept until they leave.
                for p in participants {
                    self.participants.insert(p.id.clone(), p.clone());
                }
                self.resumes += 1;
            }
            ServerMessage::RoomUpdated { .. }
            | ServerMessage::MediaAnswer { .. }
            | ServerMessage::Pong => {}
            // A room peer takes no part in calls.
            ServerMessage::Account { .. }
            | ServerMessage::Person { .. }
            | ServerMessage::Contacts { .. }
            | ServerMessage::Presence { .. }
            | ServerMessage::CallRinging { .. }
            | ServerMessage::CallIncoming { .. }
            | ServerMessage::CallAccepted { .. }
            | ServerMessage::CallSignal { .. }
            | ServerMessage::CallEnded { .. }
            | ServerMessage::CallRelayed { .. }
            | ServerMessage::CallGrown { .. }
            | ServerMessage::ChatHistory { .. }
            | ServerMessage::ChatMessage { .. }
            | ServerMessage::ChatMuted { .. }
            | ServerMessage::ChatUnread { .. }
            | ServerMessage::CallRecorded { .. } => {}
        }
    }
}

/// An open signaling session.
pub(crate) struct Session {
    outbox: mpsc::UnboundedSender<Message>,
    view: Arc<Mutex<RoomView>>,
    changed: watch::Receiver<u64>,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
    closed: bool,
}

/// A socket before the join is over: messages are awaited one by one.
pub(crate) struct Handshake {
    socket: Socket,
    view: RoomView,
}

impl Handshake {
    pub(crate) async fn connect(url: &str) -> Result<Self, PeerError> {
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_SERVER_FRAME))
            .max_frame_size(Some(MAX_SERVER_FRAME));
        let (socket, _) =
            tokio_tungstenite::connect_async_with_config(url, Some(config), false).await?;
        Ok(Self {
            socket,
            view: RoomView::default(),
        })
    }

    /// Connect again, carrying on with what an earlier session learnt of the room.
    pub(crate) async fn reconnect(url: &str, view: RoomView) -> Result<Self, PeerError> {
        let mut handshake = Self::connect(url).await?;
        handshake.view = RoomView {
            closed: false,
            left: None,
            ..view
        };
        Ok(handshake)
    }

    pub(crate) async fn send(&mut self, message: &ClientMessage) -> Result<(), PeerError> {
        let text =
            serde_json::to_string(message).map_err(|e| PeerError::Protocol(e.to_string()))?;
        self.socket.send(Message::text(text)).await?;
        Ok(())
    }

    /// Wait for the first message `pick` accepts; an `error` frame ends the wait with
    /// [`PeerError::Server`]; others update the view.
    pub(crate) async fn expect<T>(
        &mut self,
        what: &'static str,
        timeout: Duration,
        mut pick: impl FnMut(&ServerMessage) -> Option<T>,
    ) -> Result<T, PeerError> {
        let wait = async {
            loop {
                let message = next_message(&mut self.socket).await?;
                self.view.apply(&message);
                if let Some(found) = pick(&message) {
                    return Ok(found);
                }
                if let ServerMessage::Error { code, message } = message {
                    return Err(PeerError::Server { code, message });
                }
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .map_err(|_| PeerError::Timeout(what))?
    }

    /// Hand the socket to a reader and a writer task.
    pub(crate) fn into_session(self) -> Session {
        let (sink, mut stream) = self.socket.split();
        let view = Arc::new(Mutex::new(self.view));
        let (changed_tx, changed) = watch::channel(0u64);
        let (outbox, mut outbox_rx) = mpsc::unbounded_channel::<Message>();
        let writer = tokio::spawn(async move {
            let mut sink = sink;
            while let Some(message) = outbox_rx.recv().await {
                let closing = matches!(message, Message::Close(_));
                if sink.send(message).await.is_err() || closing {
                    break;
                }
            }
        });
        let reader_view = Arc::clone(&view);
        let reader = tokio::spawn(async move {
            loop {
                let message = next_message_from(&mut stream).await;
                let mut v = reader_view.lock().unwrap_or_else(PoisonError::into_inner);
                match message {
                    Ok(message) => v.apply(&message),
                    Err(PeerError::Protocol(_)) => v.unreadable += 1,
                    Err(_) => {
                        v.closed = true;
                        drop(v);
                        changed_tx.send_modify(|n| *n += 1);
                        return;
                    }
                }
                drop(v);
                changed_tx.send_modify(|n| *n += 1);
            }
        });
        Session {
            outbox,
            view,
            changed,
            reader,
            writer,
            closed: false,
        }
    }
}

impl Session {
    pub(crate) fn send(&self, message: &ClientMessage) -> Result<(), PeerError> {
        let text =
            serde_json::to_string(message).map_err(|e| PeerError::Protocol(e.to_string()))?;
        self.outbox
            .send(Message::text(text))
            .map_err(|_| PeerError::Closed)
    }

    pub(crate) fn view(&self) -> RoomView {
        self.view
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Wait until `done` holds for the view, or `timeout`.
    pub(crate) async fn wait_for<T>(
        &self,
        what: &'static str,
        timeout: Duration,
        mut done: impl FnMut(&RoomView) -> Option<T>,
    ) -> Result<T, PeerError> {
        let mut changed = self.changed.clone();
        let wait = async {
            loop {
                {
                    let view = self.view.lock().unwrap_or_else(PoisonError::into_inner);
                    if let Some(found) = done(&view) {
                        return Ok(found);
                    }
                    if view.closed {
                        return Err(PeerError::Closed);
                    }
                }
                if changed.changed().await.is_err() {
                    // The reader is gone: look once more, then give up.
                    let view = self.view.lock().unwrap_or_else(PoisonError::into_inner);
                    return done(&view).ok_or(PeerError::Closed);
                }
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .map_err(|_| PeerError::Timeout(what))?
    }

    /// Drop the socket without a close frame, as a network that went away does.
    pub(crate) fn cut(&mut self) {
        self.closed = true;
        self.writer.abort();
        self.reader.abort();
    }

    /// Close the socket politely, then stop both tasks. Idempotent.
    pub(crate) async fn close(&mut self) {
        if std::mem::replace(&mut self.closed, true) {
            return;
        }
        let _ = self.outbox.send(Message::Close(None));
        let _ = tokio::time::timeout(Duration::from_millis(500), &mut self.writer).await;
        self.writer.abort();
        self.reader.abort();
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.writer.abort();
        self.reader.abort();
    }
}

async fn next_message(socket: &mut Socket) -> Result<ServerMessage, PeerError> {
    loop {
        match next_message_from(socket).await {
            Err(PeerError::Protocol(detail)) => {
                tracing::warn!(%detail, "unreadable frame from the server");
            }
            other => return other,
        }
    }
}

/// The next server message; [`PeerError::Protocol`] for a frame that is not one.
async fn next_message_from<S>(stream: &mut S) -> Result<ServerMessage, PeerError>
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        let frame = stream.next().await.ok_or(PeerError::Closed)??;
        match frame {
            Message::Text(text) => {
                return serde_json::from_str(text.as_str())
                    .map_err(|e| PeerError::Protocol(format!("unreadable server frame: {e}")));
            }
            Message::Close(_) => return Err(PeerError::Closed),
            Message::Binary(_) => {
                return Err(PeerError::Protocol("binary frame from the server".into()));
            }
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
        }
    }
}
