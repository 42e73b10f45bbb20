//! The browser <-> signaling protocol: JSON text frames over one WebSocket (`/ws`).
//!
//! Every frame is one JSON object with a `type` field. The client opens with
//! [`ClientMessage::Hello`] naming [`PROTOCOL_VERSION`]; the server answers
//! [`ServerMessage::Welcome`] or an [`ServerMessage::Error`] and closes. Requests that
//! fail get an `error` frame naming the request; the session stays open unless the
//! frame could not be read at all. `docs/protocol.md` walks through a whole session.

use serde::{Deserialize, Serialize};

use crate::ids::{ParticipantId, RoomId, UserId};

/// The version a client names in `hello`. Bumped only for changes that break clients.
pub const PROTOCOL_VERSION: u32 = 1;
/// Largest text frame the server reads; larger frames are refused with
/// [`ErrorCode::FrameTooLarge`].
pub const MAX_FRAME_BYTES: usize = 64 * 1024;
/// Longest display name, in characters.
pub const MAX_NAME_CHARS: usize = 40;

/// Frames a client sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMessage {
    /// First frame of a session: who is here, speaking which protocol version.
    Hello {
        /// Must equal [`PROTOCOL_VERSION`].
        version: u32,
        /// Display name shown to others (1..=40 characters).
        name: String,
        /// The `user_token` of an earlier `welcome`: the same user again (keeps roles).
        /// Absent or no longer valid: a new guest user.
        #[serde(default)]
        user_token: Option<String>,
    },
    /// Create a voice room and enter it: answered by [`ServerMessage::Joined`] with the
    /// room `pending`; it becomes `active` (its link works) once this client's media
    /// connects, and is rolled back if it never does.
    CreateRoom {
        /// Room title shown on its page (1..=40 characters).
        name: String,
        /// Most members (2..=10000; default 50).
        #[serde(default)]
        capacity: Option<i64>,
        /// Most speakers at once (1..=50, at most `capacity`; default 5).
        #[serde(default)]
        seats: Option<i64>,
        /// Whether listeners may take a free seat themselves (`open`) or raise a hand
        /// and wait for a moderator (`moderated`, the default).
        #[serde(default)]
        seat_mode: SeatMode,
        /// The creator's SDP offer, as for `join`.
        offer: String,
    },
    /// Join a room with an SDP offer (gathering complete, no trickle); answered by
    /// [`ServerMessage::Joined`] carrying the SFU's SDP answer.
    Join {
        /// The room, as in its link `/r/<room>`.
        room: RoomId,
        /// The browser's offer: one send audio m-line, then receive-only audio m-lines.
        offer: String,
        /// Ignored since seats: the room decides (a member without a seat listens).
        #[serde(default)]
        listener: bool,
    },
    /// A fresh SDP offer for the room this session is in, after
    /// [`ServerMessage::ReconnectMedia`]: the media moves to another SFU node, keeping
    /// the participant, its seat and its role; answered by [`ServerMessage::MediaAnswer`].
    MediaOffer {
        /// The new offer (a new peer connection, gathering complete), as for `join`.
        offer: String,
    },
    /// Leave the room and give up membership of its group chat, freeing the place
    /// (the owner cannot); answered by [`ServerMessage::Left`].
    LeaveGroup,
    /// Ask to speak: takes a free seat in an `open` room, else raises a hand.
    RequestSeat,
    /// Lower a raised hand.
    LowerHand,
    /// Give up this participant's own seat.
    LeaveSeat,
    /// Moderators: seat a participant (if a seat is free).
    GrantSeat {
        /// Who.
        participant: ParticipantId,
    },
    /// Moderators: take a participant's seat.
    RevokeSeat {
        /// Who.
        participant: ParticipantId,
    },
    /// Moderators: mute or unmute a participant at the media server.
    Mute {
        /// Who.
        participant: ParticipantId,
        /// Muted or not.
        muted: bool,
    },
    /// Moderators: remove a participant from the room for good.
    Remove {
        /// Who.
        participant: ParticipantId,
    },
    /// Owner: make a participant a moderator, or not.
    SetModerator {
        /// Who.
        participant: ParticipantId,
        /// Moderator or not.
        moderator: bool,
    },
    /// Moderators: end the room for everyone.
    EndRoom,
    /// Leave the room; answered by [`ServerMessage::Left`].
    Leave,
    /// Tell the others whether this participant's microphone is muted.
    SetMuted {
        /// Muted by its own user.
        muted: bool,
    },
    /// Keep-alive; answered by [`ServerMessage::Pong`].
    Ping,
}

/// Frames the server sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// The session is open.
    Welcome {
        /// The server's protocol version.
        version: u32,
        /// The display name as accepted (trimmed).
        name: String,
        /// This user.
        user: UserId,
        /// Keep it (e.g. in localStorage) and send it in the next `hello` to stay this user.
        user_token: String,
    },
    /// This session is in the room; apply `answer` to the peer connection.
    Joined {
        /// The room.
        room: RoomInfo,
        /// This session's participant id in the room.
        you: ParticipantId,
        /// The SFU's SDP answer.
        answer: String,
        /// Everyone in the room, this participant included.
        participants: Vec<ParticipantInfo>,
    },
    /// The room changed: became active, settings.
    RoomUpdated {
        /// The room as it is now.
        room: RoomInfo,
    },
    /// Someone entered the room (or changed: muted, connected, seat, hand, role).
    ParticipantUpdated {
        /// The participant as it is now.
        participant: ParticipantInfo,
    },
    /// Someone left the room.
    ParticipantLeft {
        /// Who.
        participant: ParticipantId,
        /// Why.
        reason: LeftReason,
    },
    /// Who is speaking now; participants not listed are silent.
    Speaking {
        /// Loudness per speaking participant.
        levels: Vec<SpeakerLevel>,
    },
    /// The SFU node carrying this session's media is gone: make a new peer connection
    /// and send its offer with [`ClientMessage::MediaOffer`]. The session stays in the
    /// room, in the same seat and role, meanwhile.
    ReconnectMedia {
        /// Why, in words.
        reason: String,
    },
    /// The SFU's answer to [`ClientMessage::MediaOffer`].
    MediaAnswer {
        /// Apply it to the new peer connection.
        answer: String,
    },
    /// This session is no longer in the room.
    Left {
        /// Why.
        reason: LeftReason,
    },
    /// Answer to [`ClientMessage::Ping`].
    Pong,
    /// A request failed; `message` is meant for the user.
    Error {
        /// Machine-readable kind.
        code: ErrorCode,
        /// What went wrong, in words.
        message: String,
    },
}

/// A room as clients see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomInfo {
    /// Room id.
    pub id: RoomId,
    /// Title.
    pub name: String,
    /// Path of the room's link, relative to the server: `/r/<id>`.
    pub link: String,
    /// Most members.
    pub capacity: u32,
    /// Most speakers at once.
    pub seats: u32,
    /// How listeners get a seat.
    pub seat_mode: SeatMode,
    /// Where the room is in its life.
    pub state: RoomState,
}

/// How listeners get a mic seat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SeatMode {
    /// A listener raises a hand; a moderator grants the seat.
    #[default]
    Moderated,
    /// A listener takes a free seat; when none is free, the hand is raised.
    Open,
}

/// Where a room is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoomState {
    /// Waiting for the creator's media; the link does not work yet.
    Pending,
    /// Live.
    Active,
    /// Ended.
    Ended,
}

/// What a participant may do in its room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Speaks when seated, listens otherwise.
    Member,
    /// Grants and revokes seats, mutes, removes.
    Moderator,
    /// Created the room; names moderators.
    Owner,
}

impl Role {
    /// May moderate: grant and revoke seats, mute, remove, end the room.
    pub fn moderates(self) -> bool {
        self >= Role::Moderator
    }
}

/// A participant as clients see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParticipantInfo {
    /// Participant id.
    pub id: ParticipantId,
    /// The user behind it.
    pub user: UserId,
    /// Display name.
    pub name: String,
    /// Muted by its own user.
    pub muted: bool,
    /// Holds a mic seat: may publish audio.
    pub speaker: bool,
    /// Media is connected to the SFU.
    pub connected: bool,
    /// Owner, moderator or member.
    pub role: Role,
    /// Asked for a seat.
    pub hand_raised: bool,
    /// Muted by a moderator: its audio is dropped at the media server.
    pub muted_by_moderator: bool,
}

/// One participant's loudness.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpeakerLevel {
    /// Who.
    pub participant: ParticipantId,
    /// 0.0 (silence) to 1.0 (full scale).
    pub level: f32,
}

/// Why a participant left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeftReason {
    /// Left on its own.
    Left,
    /// Its media connection was lost.
    ConnectionLost,
    /// Removed by a moderator.
    Removed,
    /// The room was closed.
    RoomClosed,
    /// The WebSocket session ended.
    Disconnected,
    /// The same user joined the room again from another tab or device.
    Replaced,
}

/// Kinds of error a client can be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame is not valid JSON or not a known message.
    Malformed,
    /// The frame is larger than [`MAX_FRAME_BYTES`].
    FrameTooLarge,
    /// The client speaks another protocol version.
    UnsupportedVersion,
    /// A field is out of range (empty name, and so on).
    InvalidInput,
    /// The first frame must be `hello`.
    HelloFirst,
    /// No such room.
    RoomNotFound,
    /// The room has no space left.
    RoomFull,
    /// Already in a room: leave it first.
    AlreadyInRoom,
    /// Not in a room.
    NotInRoom,
    /// The room token was refused.
    Unauthorized,
    /// Not allowed for this participant.
    Forbidden,
    /// Every mic seat is taken.
    NoFreeSeat,
    /// The SDP offer was refused by the media server.
    BadOffer,
    /// The media server cannot be reached.
    MediaUnavailable,
    /// A service the server depends on (its shared store) cannot be reached right now;
    /// nothing was changed, and the same request may be tried again in a moment.
    TemporarilyUnavailable,
    /// A fault on the server.
    Internal,
}

/// Parse one text frame from a client: the size check, then JSON, each with its own
/// error so the client is told which it was.
pub fn parse_client_frame(text: &str) -> Result<ClientMessage, (ErrorCode, String)> {
    if text.len() > MAX_FRAME_BYTES {
        return Err((
            ErrorCode::FrameTooLarge,
            format!(
                "a message may be at most {MAX_FRAME_BYTES} bytes, this one has {}",
                text.len()
            ),
        ));
    }
    serde_json::from_str(text)
        .map_err(|e| (ErrorCode::Malformed, format!("unreadable message: {e}")))
}

/// Check and tidy a display name or room title.
pub fn clean_name(name: &str) -> Result<String, (ErrorCode, String)> {
    let trimmed = name.trim();
    let chars = trimmed.chars().count();
    if chars == 0 {
        return Err((ErrorCode::InvalidInput, "the name is empty".into()));
    }
    if chars > MAX_NAME_CHARS {
        return Err((
            ErrorCode::InvalidInput,
            format!("the name may be at most {MAX_NAME_CHARS} characters"),
        ));
    }
    if trimmed.chars().any(char::is_control) {
        return Err((
            ErrorCode::InvalidInput,
            "the name holds control characters".into(),
        ));
    }
    Ok(trimmed.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_frames_round_trip() {
        let m: ClientMessage =
            serde_json::from_str(r#"{"type":"hello","version":1,"name":"Ada"}"#).unwrap();
        assert_eq!(
            m,
            ClientMessage::Hello {
                version: 1,
                name: "Ada".into(),
                user_token: None,
            }
        );
        let m =
            parse_client_frame(r#"{"type":"create_room","name":"R","capacity":10,"offer":"v=0"}"#)
                .unwrap();
        assert!(matches!(
            m,
            ClientMessage::CreateRoom {
                capacity: Some(10),
                seats: None,
                seat_mode: SeatMode::Moderated,
                ..
            }
        ));
        let m = parse_client_frame(r#"{"type":"grant_seat","participant":"p_x"}"#).unwrap();
        assert!(matches!(m, ClientMessage::GrantSeat { .. }));
        let m = parse_client_frame(r#"{"type":"join","room":"abc","offer":"v=0"}"#).unwrap();
        assert!(matches!(m, ClientMessage::Join { .. }));
        assert_eq!(
            parse_client_frame(r#"{"type":"leave"}"#).unwrap(),
            ClientMessage::Leave
        );
    }

    #[test]
    fn bad_frames_get_typed_errors() {
        assert_eq!(parse_client_frame("{").unwrap_err().0, ErrorCode::Malformed);
        assert_eq!(
            parse_client_frame(r#"{"type":"fly"}"#).unwrap_err().0,
            ErrorCode::Malformed
        );
        let bad_room = r#"{"type":"join","room":"../x","offer":""}"#;
        assert_eq!(
            parse_client_frame(bad_room).unwrap_err().0,
            ErrorCode::Malformed
        );
        let big = format!(
            r#"{{"type":"create_room","name":"{}"}}"#,
            "a".repeat(MAX_FRAME_BYTES)
        );
        assert_eq!(
            parse_client_frame(&big).unwrap_err().0,
            ErrorCode::FrameTooLarge
        );
        assert!(clean_name("  ").is_err());
        assert!(clean_name(&"x".repeat(41)).is_err());
        assert_eq!(clean_name(" Ada ").unwrap(), "Ada");
    }

    #[test]
    fn server_frames_have_snake_case_tags() {
        let json = serde_json::to_string(&ServerMessage::Error {
            code: ErrorCode::RoomFull,
            message: "full".into(),
        })
        .unwrap();
        assert_eq!(
            json,
            r#"{"type":"error","code":"room_full","message":"full"}"#
        );
    }
}
