//! A synthetic Chorus participant on the `webrtc` crate (webrtc-rs 0.21), a WebRTC stack
//! independent of the str0m SFU, so Chorus is never tested only against itself.
//!
//! [`WebrtcPeer::join`] speaks the client protocol over the signaling WebSocket (`hello`,
//! then `join` with a complete offer: one send audio m-line, then receive-only slots),
//! publishes a sine tone as Opus, and decodes whatever the SFU forwards to tell which tones
//! it hears ([`HearReport`]). [`MediaPeer`] is the WebRTC half alone, for tests that wire
//! two peers to each other without a server. Always `close().await` a peer.
//!
//! ```no_run
//! # async fn demo(room: chorus_proto::RoomId) -> Result<(), chorus_bench::webrtc_peer::PeerError> {
//! use chorus_bench::webrtc_peer::{PeerConfig, WebrtcPeer};
//! use std::time::Duration;
//! let config = PeerConfig { tone_hz: Some(440.0), ..PeerConfig::new("ws://127.0.0.1:8080/ws", room, "Ada") };
//! let mut peer = WebrtcPeer::join(config).await?;
//! peer.wait_connected(Duration::from_secs(5)).await?;
//! tokio::time::sleep(Duration::from_secs(3)).await;
//! println!("{:?}", peer.heard());
//! peer.close().await;
//! # Ok(()) }
//! ```

mod media;
mod session;

use std::time::Duration;

use chorus_proto::signal::{
    ClientMessage, ErrorCode, LeftReason, PROTOCOL_VERSION, ParticipantInfo, RoomInfo,
    ServerMessage,
};
use chorus_proto::{ParticipantId, RoomId, UserId};

pub use media::{HearReport, MediaConfig, MediaPeer, SendReport, ToneCount};
pub use session::RoomView;
use session::{Handshake, Session};

/// How long gathering, the WebSocket handshake and the `join` may take.
const JOIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a synthetic peer failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PeerError {
    /// The `webrtc` stack refused an operation.
    #[error("WebRTC: {0}")]
    WebRtc(#[from] webrtc::error::Error),
    /// The WebSocket failed (connect, read or write).
    #[error("WebSocket: {0}")]
    WebSocket(#[from] tokio_tungstenite::tungstenite::Error),
    /// The server answered a request with an `error` frame.
    #[error("server error {code:?}: {message}")]
    Server {
        /// Its code.
        code: ErrorCode,
        /// Its words.
        message: String,
    },
    /// The server sent something this client cannot read or did not expect.
    #[error("protocol: {0}")]
    Protocol(String),
    /// Waited too long for the named thing.
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    /// The media connection failed.
    #[error("media: {0}")]
    MediaFailed(String),
    /// The socket or the connection is closed.
    #[error("closed")]
    Closed,
    /// A REST call failed.
    #[error(transparent)]
    Rest(#[from] crate::rest::RestError),
}

/// Who a synthetic peer is and what it does.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// Signaling's WebSocket, `ws://host:port/ws`.
    pub ws_url: String,
    /// The room to join.
    pub room: RoomId,
    /// Display name.
    pub name: String,
    /// Tone to publish (Hz); `None` publishes nothing.
    pub tone_hz: Option<f32>,
    /// Join without a mic seat (`join.listener`).
    pub listener: bool,
    /// Publish the tone even as a listener: RTP the SFU must drop.
    pub publish_anyway: bool,
    /// Receive-only audio m-lines (audio slots) in the offer.
    pub slots: usize,
    /// Frequencies to look for in what is received.
    pub candidates: Vec<f32>,
    /// A `user_token` for `hello` (from an earlier `welcome` or the server API): join as
    /// that user. `None`: a new guest.
    pub user_token: Option<String>,
    /// The local address its media is sent from (127.0.0.1 unless a test network
    /// needs another).
    pub media_ip: std::net::IpAddr,
}

impl PeerConfig {
    /// A silent speaker with 3 slots, listening for [`crate::tone::DEFAULT_CANDIDATES`].
    pub fn new(ws_url: impl Into<String>, room: RoomId, name: impl Into<String>) -> Self {
        Self {
            ws_url: ws_url.into(),
            room,
            name: name.into(),
            tone_hz: None,
            listener: false,
            publish_anyway: false,
            slots: MediaConfig::default().slots,
            candidates: MediaConfig::default().candidates,
            user_token: None,
            media_ip: MediaConfig::default().ip,
        }
    }
}

/// What a successful `hello` + `join` yields.
struct Negotiated {
    session: Session,
    you: ParticipantId,
    room: RoomInfo,
    user: UserId,
    user_token: String,
}

/// A participant in a Chorus room: a signaling session plus a `webrtc` peer connection
/// to the SFU. Always [`close`](Self::close) it.
pub struct WebrtcPeer {
    media: MediaPeer,
    session: Session,
    you: ParticipantId,
    room: RoomInfo,
    user: UserId,
    user_token: String,
    name: String,
}

impl WebrtcPeer {
    /// Connect, `hello`, `join` with a complete offer, apply the answer and start
    /// publishing. Returns once the server has answered `joined`; media may still be
    /// connecting (see [`Self::wait_connected`]).
    pub async fn join(config: PeerConfig) -> Result<Self, PeerError> {
        let publishes = !config.listener || config.publish_anyway;
        let mut media = MediaPeer::new(&MediaConfig {
            tone_hz: config.tone_hz.filter(|_| publishes),
            slots: config.slots,
            candidates: config.candidates.clone(),
            ip: config.media_ip,
        })
        .await?;
        match Self::negotiate(&mut media, &config).await {
            Ok(Negotiated {
                session,
                you,
                room,
                user,
                user_token,
            }) => {
                media.start_publishing();
                Ok(Self {
                    media,
                    session,
                    you,
                    room,
                    user,
                    user_token,
                    name: config.name.clone(),
                })
            }
            Err(error) => {
                media.close().await;
                Err(error)
            }
        }
    }

    async fn negotiate(
        media: &mut MediaPeer,
        config: &PeerConfig,
    ) -> Result<Negotiated, PeerError> {
        let offer = media.create_offer(JOIN_TIMEOUT).await?;
        let mut ws = Handshake::connect(&config.ws_url).await?;
        ws.send(&ClientMessage::Hello {
            version: PROTOCOL_VERSION,
            name: config.name.clone(),
            user_token: config.user_token.clone(),
            takes_calls: false,
        })
        .await?;
        let (user, user_token) = ws
            .expect("welcome", JOIN_TIMEOUT, |m| match m {
                ServerMessage::Welcome {
                    user, user_token, ..
                } => Some((user.clone(), user_token.clone())),
                _ => None,
            })
            .await?;
        ws.send(&ClientMessage::Join {
            room: config.room.clone(),
            offer,
            listener: config.listener,
        })
        .await?;
        let (you, room, answer) = ws
            .expect("joined", JOIN_TIMEOUT, |m| match m {
                ServerMessage::Joined {
                    room, you, answer, ..
                } => Some((you.clone(), room.clone(), answer.clone())),
                _ => None,
            })
            .await?;
        media.apply_answer(answer).await?;
        Ok(Negotiated {
            session: ws.into_session(),
            you,
            room,
            user,
            user_token,
        })
    }

    /// The user behind this participant (from `welcome`).
    pub fn user(&self) -> &UserId {
        &self.user
    }

    /// The `user_token` the server gave this session: send it in a later `hello`
    /// ([`PeerConfig::user_token`]) to come back as the same user.
    pub fn user_token(&self) -> &str {
        &self.user_token
    }

    /// This participant's id.
    pub fn id(&self) -> &ParticipantId {
        &self.you
    }

    /// The room joined.
    pub fn room(&self) -> &RoomInfo {
        &self.room
    }

    /// Wait until media is connected to the SFU.
    pub async fn wait_connected(&self, timeout: Duration) -> Result<(), PeerError> {
        self.media.wait_connected(timeout).await
    }

    /// What has been received so far.
    pub fn heard(&self) -> HearReport {
        self.media.heard()
    }

    /// When the payloads received lately arrived (see [`MediaPeer::arrivals`]).
    pub fn arrivals(&self) -> Vec<(u64, std::time::Instant)> {
        self.media.arrivals()
    }

    /// What has been published so far.
    pub async fn sent(&self) -> SendReport {
        self.media.sent().await
    }

    /// Everyone in the room as the server has described it (this peer included).
    pub fn participants(&self) -> Vec<ParticipantInfo> {
        self.session.view().participants.into_values().collect()
    }

    /// The room as this session knows it: participants, departures, errors, speaking.
    pub fn view(&self) -> RoomView {
        self.session.view()
    }

    /// Wait until the view satisfies `done` (returns `Some`), or `timeout`.
    pub async fn wait_for<T>(
        &self,
        what: &'static str,
        timeout: Duration,
        done: impl FnMut(&RoomView) -> Option<T>,
    ) -> Result<T, PeerError> {
        self.session.wait_for(what, timeout, done).await
    }

    /// Wait until `who` has left the room; returns why.
    pub async fn wait_for_departure(
        &self,
        who: &ParticipantId,
        timeout: Duration,
    ) -> Result<LeftReason, PeerError> {
        self.wait_for("participant_left", timeout, |view| {
            view.departures
                .iter()
                .find(|(id, _)| id == who)
                .map(|(_, reason)| *reason)
        })
        .await
    }

    /// Send any client message (tests of the protocol's edges).
    pub fn send(&self, message: &ClientMessage) -> Result<(), PeerError> {
        self.session.send(message)
    }

    /// `leave` the room and wait for `left`; the media connection stays until [`Self::close`].
    pub async fn leave(&self) -> Result<LeftReason, PeerError> {
        self.session.send(&ClientMessage::Leave)?;
        self.wait_for("left", JOIN_TIMEOUT, |view| view.left).await
    }

    /// The session and its latest sealed state, once the server sent one.
    pub fn sealed(&self) -> Option<(chorus_proto::SessionId, String)> {
        let view = self.session.view();
        Some((view.session?, view.sealed?))
    }

    /// Drop the signaling socket without a close frame (a network gone away); the media
    /// connection goes on.
    pub fn cut_socket(&mut self) {
        self.session.cut();
    }

    /// Take the session up again on a new socket to `ws_url` (this node after a
    /// restart, or another): `hello` as the same user, then `resume` with the latest
    /// sealed state. The media connection is not touched. An `error` answer is
    /// [`PeerError::Server`] (the session stays without a socket).
    pub async fn resume(&mut self, ws_url: &str) -> Result<(), PeerError> {
        let (session, state) = self
            .sealed()
            .ok_or_else(|| PeerError::Protocol("no sealed state to resume from".into()))?;
        self.resume_with(ws_url, session, state).await
    }

    /// [`Self::resume`] presenting any blob (tests of refusals).
    pub async fn resume_with(
        &mut self,
        ws_url: &str,
        session: chorus_proto::SessionId,
        state: String,
    ) -> Result<(), PeerError> {
        let mut ws = Handshake::reconnect(ws_url, self.session.view()).await?;
        ws.send(&ClientMessage::Hello {
            version: PROTOCOL_VERSION,
            name: self.name.clone(),
            user_token: Some(self.user_token.clone()),
            takes_calls: false,
        })
        .await?;
        ws.expect("welcome", JOIN_TIMEOUT, |m| {
            matches!(m, ServerMessage::Welcome { .. }).then_some(())
        })
        .await?;
        ws.send(&ClientMessage::Resume { session, state }).await?;
        ws.expect("resumed", JOIN_TIMEOUT, |m| {
            matches!(m, ServerMessage::Resumed { .. }).then_some(())
        })
        .await?;
        self.session.cut();
        self.session = ws.into_session();
        Ok(())
    }

    /// Close only the media connection, as a browser whose network died would lose it,
    /// while the signaling session stays open (the SFU must notice by itself).
    pub async fn close_media(&mut self) {
        self.media.close().await;
    }

    /// Close the socket, then the media connection. Idempotent. The socket goes first
    /// so that the server learns of the departure from it (`disconnected`) instead of
    /// racing it against the end of the media (`connection_lost`).
    pub async fn close(&mut self) {
        self.session.close().await;
        self.media.close().await;
    }
}
