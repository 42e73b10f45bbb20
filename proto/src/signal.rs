//! The browser <-> signaling protocol: JSON text frames over one WebSocket (`/ws`).
//!
//! Every frame is one JSON object with a `type` field. The client opens with
//! [`ClientMessage::Hello`] naming [`PROTOCOL_VERSION`]; the server answers
//! [`ServerMessage::Welcome`] or an [`ServerMessage::Error`] and closes. Requests that
//! fail get an `error` frame naming the request; the session stays open unless the
//! frame could not be read at all. `docs/protocol.md` walks through a whole session.

use serde::{Deserialize, Serialize};

use crate::ids::{CallId, ParticipantId, RoomId, SessionId, UserId};
use crate::people::{
    AccountInfo, CallEnd, CallInfo, CallRecord, IceCandidate, IceServer, PersonInfo, Presence,
    SessionDescription,
};

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
        /// This session takes calls: it rings when the account is called (a calls
        /// screen). Other sessions of the account (a room page) count for its presence
        /// but never ring.
        #[serde(default)]
        takes_calls: bool,
    },
    /// Take up again a session that lost its socket (a dropped connection, a restarted
    /// or another signaling node), after `hello` as the same user: `state` is the last
    /// [`ServerMessage::Session`] blob, `session` the session it was sealed for. Answered
    /// by [`ServerMessage::Resumed`] (same participant, seat and role; the media
    /// connection is not touched) or by an `error` (`session_expired`,
    /// `session_invalid`, `session_replayed`, `resume_failed`): then join again.
    Resume {
        /// The session of the blob.
        session: SessionId,
        /// The sealed state, as the server sent it.
        state: String,
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
        /// Who may join: anyone with the link (the default) or signed-in users only.
        #[serde(default)]
        entry: EntryPolicy,
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
    /// Moderators: lock the room (no newcomers; its members still come back) or unlock
    /// it, and say who may join. Absent fields are left as they are.
    SetAccess {
        /// Locked or not.
        #[serde(default)]
        locked: Option<bool>,
        /// Who may join.
        #[serde(default)]
        entry: Option<EntryPolicy>,
    },
    /// Moderators: let someone who knocked in (`admit`), or not.
    Admit {
        /// The user who knocked (from [`ServerMessage::Knocks`]).
        user: UserId,
        /// In or not.
        admit: bool,
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
    /// Make this user an account: a unique handle and a password. The user keeps its
    /// id (and so its rooms and roles); the display name is the session's. Answered by
    /// [`ServerMessage::Account`] with a user token to keep.
    Register {
        /// Wanted handle ([`crate::people::parse_handle`]).
        handle: String,
        /// The password ([`crate::people::check_new_password`]).
        password: String,
    },
    /// Sign in to an account (on any number of devices): this session becomes that
    /// user. Answered by [`ServerMessage::Account`]; not while in a room or a call.
    SignIn {
        /// The account's handle.
        handle: String,
        /// Its password.
        password: String,
    },
    /// Sign in with a one-time link from the app backend (`POST /api/v1/users` with
    /// `link: true`): answered by [`ServerMessage::Account`], as `sign_in`. A link
    /// works once, until it expires (10 minutes).
    SignInWithLink {
        /// The link's code (after `#sign_in=` in the link the backend hands out).
        code: String,
    },
    /// Find someone by their exact handle; answered by [`ServerMessage::Person`].
    FindPerson {
        /// The handle, with or without `@`.
        handle: String,
    },
    /// The people this account can see (from its group chats and its calls), with
    /// presence, and its recent calls; answered by [`ServerMessage::Contacts`]. Their
    /// presence changes follow as [`ServerMessage::Presence`].
    Contacts,
    /// Block someone (their calls are refused) or unblock them; answered by
    /// [`ServerMessage::Contacts`].
    Block {
        /// Who.
        user: UserId,
        /// Blocked or not.
        blocked: bool,
    },
    /// Ring someone; answered by [`ServerMessage::CallRinging`] (or the call ends at
    /// once: `busy`, `unavailable`).
    Call {
        /// Their handle.
        handle: String,
    },
    /// Callee: take the call on this device; answered by [`ServerMessage::CallAccepted`].
    AcceptCall {
        /// The call.
        call: CallId,
    },
    /// Callee: refuse the call.
    DeclineCall {
        /// The call.
        call: CallId,
    },
    /// Either side: end the call (the caller, before it is answered: cancel it).
    HangUp {
        /// The call.
        call: CallId,
    },
    /// Either side of an answered call: an SDP or an ICE candidate for the other side's
    /// peer connection, relayed unchanged as [`ServerMessage::CallSignal`].
    CallSignal {
        /// The call.
        call: CallId,
        /// An offer or answer.
        #[serde(default)]
        description: Option<SessionDescription>,
        /// A trickled candidate.
        #[serde(default)]
        candidate: Option<IceCandidate>,
    },
    /// Either side: its peer connection connected straight to the other browser (counted
    /// and kept in the call's record).
    CallConnected {
        /// The call.
        call: CallId,
    },
    /// Either side of an answered call: the direct path did not connect (or must not be
    /// used): carry the call through the SFU. Both sides get [`ServerMessage::CallRelayed`]
    /// and join its room; the call goes on (same id, same hang-up).
    RelayCall {
        /// The call.
        call: CallId,
    },
    /// Either side of an answered call: "add someone" — the call becomes a voice room
    /// with both on seats (the caller owns it, the callee moderates it) that anyone with
    /// its link joins as any room. Both sides get [`ServerMessage::CallGrown`], then the
    /// call ends (`grown`).
    GrowCall {
        /// The call.
        call: CallId,
    },
    /// Whether this account's calls always go through the media server, also with
    /// contacts (its address never reaches the other side). Answered by
    /// [`ServerMessage::Account`].
    SetCallPrivacy {
        /// On: every call relayed. Off (the default): direct with contacts.
        always_relay: bool,
    },
    /// Members: read a room's group chat (live or not) and follow it from now on (one
    /// chat per session; opening another stops following this one). Answered by
    /// [`ServerMessage::ChatHistory`] with the newest page; then
    /// [`ServerMessage::ChatMessage`] as messages come and change.
    ChatOpen {
        /// The room whose group chat.
        room: RoomId,
    },
    /// Members: an older page of the chat, before `before` (a `seq`).
    ChatHistory {
        /// The room.
        room: RoomId,
        /// Messages before this `seq` (absent: the newest).
        #[serde(default)]
        before: Option<u64>,
        /// How many (1 to `chat::MAX_PAGE`; `chat::PAGE` when absent).
        #[serde(default)]
        limit: Option<u32>,
    },
    /// Members not muted in the chat: write a message.
    ChatSend {
        /// The room.
        room: RoomId,
        /// Plain text (`chat::clean_text`); may be empty with an attachment.
        #[serde(default)]
        text: String,
        /// A file uploaded before (`docs/protocol.md`, "Attachments").
        #[serde(default)]
        attachment: Option<crate::attachments::AttachmentRef>,
        /// The client's own label for this request (up to 64 characters), echoed in the
        /// `chat_message` it causes, to match the answer.
        #[serde(default)]
        nonce: Option<String>,
    },
    /// The author: change the text of a message.
    ChatEdit {
        /// The room.
        room: RoomId,
        /// The message.
        seq: u64,
        /// Its new text.
        text: String,
        /// Echoed in the `chat_message` (as for `chat_send`).
        #[serde(default)]
        nonce: Option<String>,
    },
    /// The author, or a moderator: delete a message (its place stays, its text goes).
    ChatDelete {
        /// The room.
        room: RoomId,
        /// The message.
        seq: u64,
        /// Echoed in the `chat_message` (as for `chat_send`).
        #[serde(default)]
        nonce: Option<String>,
    },
    /// Moderators: stop a member writing in the chat, or let them again.
    ChatMute {
        /// The room.
        room: RoomId,
        /// The member.
        user: UserId,
        /// Muted or not.
        muted: bool,
    },
    /// This account has read the chat up to this message (unread counts start after).
    ChatRead {
        /// The room.
        room: RoomId,
        /// The newest message seen.
        seq: u64,
    },
    /// How many unread messages each of this user's group chats has. Answered by
    /// [`ServerMessage::ChatUnread`].
    ChatUnread,
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
        /// The account this user is signed in as, if it has one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        account: Option<AccountInfo>,
        /// This web session: the `session` of a later `resume` (a successful resume
        /// continues the resumed session instead).
        session: SessionId,
    },
    /// The session's state, sealed: keep the latest (memory and `sessionStorage`) and
    /// present it in `resume` after a lost socket. Sent whenever the state changes
    /// (joined, left, media moved) and again before it expires; opaque to the client.
    Session {
        /// The blob.
        state: String,
        /// When it stops opening (unix seconds).
        expires: u64,
    },
    /// A `resume` succeeded: this session is again `you` in `room`, its media as it was
    /// (nobody else was told anything changed). `participants` is everyone present on
    /// the server now: a client keeps those it knew who are not listed yet (they are
    /// resuming too) until a `participant_left` says otherwise.
    Resumed {
        /// The room.
        room: RoomInfo,
        /// This session's participant (the same as before).
        you: ParticipantId,
        /// Everyone present now, this participant included.
        participants: Vec<ParticipantInfo>,
    },
    /// The session is signed in as this account (after `register` or `sign_in`).
    Account {
        /// The account.
        account: AccountInfo,
        /// Keep it instead of the last one: the next `hello` with it is this account.
        user_token: String,
    },
    /// Answer to [`ClientMessage::FindPerson`].
    Person {
        /// Who, with presence.
        person: PersonInfo,
    },
    /// Answer to [`ClientMessage::Contacts`] and [`ClientMessage::Block`].
    Contacts {
        /// People from this user's group chats and calls, blocked ones left out.
        people: Vec<PersonInfo>,
        /// This user's recent calls, newest first.
        calls: Vec<CallRecord>,
        /// Who this user blocked.
        blocked: Vec<PersonInfo>,
    },
    /// A contact's presence changed.
    Presence {
        /// Who.
        user: UserId,
        /// Now.
        presence: Presence,
    },
    /// Caller: the callee's devices are ringing.
    CallRinging {
        /// The call.
        call: CallInfo,
    },
    /// Callee (every device): someone is calling.
    CallIncoming {
        /// The call.
        call: CallInfo,
    },
    /// The call was answered (sent to the caller and to the device that answered):
    /// make a peer connection with these ICE servers; the caller sends the offer.
    CallAccepted {
        /// The call.
        call: CallInfo,
        /// STUN/TURN servers for the peer connection (may be empty on a LAN).
        ice_servers: Vec<IceServer>,
        /// The call goes through the media server from the start (the two are not
        /// contacts, or one side asked for it): make no direct peer connection —
        /// `call_signal` is refused — and wait for [`ServerMessage::CallRelayed`].
        #[serde(default)]
        relay: bool,
    },
    /// The other side's SDP or ICE candidate.
    CallSignal {
        /// The call.
        call: CallId,
        /// An offer or answer.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description: Option<SessionDescription>,
        /// A trickled candidate.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        candidate: Option<IceCandidate>,
    },
    /// The call is over for this session.
    CallEnded {
        /// The call.
        call: CallId,
        /// How.
        reason: CallEnd,
    },
    /// A call of this account ended and is in its list now (sent to every session of
    /// both users that takes calls, ringing or not): add it to the recent calls.
    CallRecorded {
        /// The call as this user sees it.
        record: CallRecord,
    },
    /// The call goes through the SFU now: `join` `room` (a locked two-seat room of the
    /// two of them, both seated) as any room, from any session of this user. It ends
    /// (`left room_closed`) when the call does.
    CallRelayed {
        /// The call.
        call: CallId,
        /// Its room.
        room: RoomId,
    },
    /// The call became this voice room (`grow_call`): open `/r/<room>` and join it as any
    /// room (both sides are members on seats). `call_ended` (`grown`) follows.
    CallGrown {
        /// The call.
        call: CallId,
        /// The room.
        room: RoomId,
    },
    /// A page of a group chat, oldest first (after `chat_open` or `chat_history`).
    ChatHistory {
        /// The room.
        room: RoomId,
        /// The messages, oldest first.
        messages: Vec<crate::chat::ChatMessage>,
        /// Older messages exist (ask with `before` = the first one's `seq`).
        more: bool,
        /// This account read up to here (`chat_read`); later ones are unread.
        read_up_to: u64,
        /// Members a moderator muted in the chat.
        muted: Vec<UserId>,
    },
    /// A message was written, edited or deleted (to every session following the chat).
    ChatMessage {
        /// The room.
        room: RoomId,
        /// The message as it is now.
        message: crate::chat::ChatMessage,
        /// The `nonce` of the request that caused it, if it had one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        nonce: Option<String>,
    },
    /// A moderator muted a member in the chat, or let them write again.
    ChatMuted {
        /// The room.
        room: RoomId,
        /// The member.
        user: UserId,
        /// Muted or not.
        muted: bool,
    },
    /// Unread messages per group chat of this user (after `chat_unread`).
    ChatUnread {
        /// Each group chat the user is a member of.
        groups: Vec<crate::chat::UnreadCount>,
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
    /// The `join` knocked: this session waits until a moderator lets it in (the join is
    /// then answered `joined`) or does not (`error`, `forbidden`). `leave` withdraws.
    Knocking {
        /// The room.
        room: RoomInfo,
    },
    /// Moderators: who is waiting to be let in, each time that changes (and on entering).
    Knocks {
        /// Everyone knocking, oldest first.
        knocks: Vec<Knocker>,
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
    /// Who may join.
    #[serde(default)]
    pub entry: EntryPolicy,
    /// Locked: nobody new may join (members still come back).
    #[serde(default)]
    pub locked: bool,
}

/// Who may join a room besides its members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryPolicy {
    /// Anyone with the link, guests included.
    #[default]
    Anyone,
    /// Users signed in through the app backend only (the server API's `POST /users`):
    /// guests of the page are refused, and a removed user cannot come back as a new guest.
    SignedIn,
    /// Newcomers knock: a `join` is answered [`ServerMessage::Knocking`] and waits until
    /// a moderator lets them in (then `joined`) or not (then `error`).
    Knock,
}

/// Someone waiting to be let into a room that asks newcomers to knock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Knocker {
    /// Who.
    pub user: UserId,
    /// Their display name.
    pub name: String,
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
    /// The server is stopping (a restart or an upgrade): reconnect, and join again. The
    /// socket is closed next with [`close::SERVER_RESTARTING`]; seats and roles are kept.
    ServerRestarting,
    /// The room filled up while this join's media was connecting (its place was held,
    /// but others connected first): try again later.
    RoomFull,
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
    /// Too many messages in too short a time: this one was not handled.
    RateLimited,
    /// A request took too long to arrive (a body sent too slowly).
    Timeout,
    /// A fault on the server.
    Internal,
    /// That handle belongs to someone else already.
    HandleTaken,
    /// Nobody has that handle.
    UserNotFound,
    /// Calls need an account: register or sign in first.
    NotSignedIn,
    /// No such call, or it has ended.
    CallNotFound,
    /// Already in a call: hang up first.
    AlreadyInCall,
    /// The server holds no such attachment, or none that this chat posted.
    AttachmentNotFound,
    /// An upload's bytes did not start where the server's copy ends (it says where).
    UploadOffset,
    /// The uploaded bytes do not hash to the hash they were announced with.
    HashMismatch,
    /// A file over the server's size limit.
    TooLarge,
    /// A file type the server does not take.
    UnsupportedType,
    /// Declared a picture, but it cannot be decoded (or is too large to decode).
    InvalidImage,
    /// A `resume` blob sealed too long ago: join again.
    SessionExpired,
    /// A `resume` blob that is damaged, changed or another session's: join again.
    SessionInvalid,
    /// A `resume` blob older than the latest one issued (or already used): join again.
    SessionReplayed,
    /// The blob is good but its place is gone (the media connection ended, the room
    /// closed, the member was removed): join again.
    ResumeFailed,
}

/// WebSocket close codes the server sends, each with a reason in words. A client that
/// sees one knows whether to reconnect (`docs/protocol.md`, "Closes").
pub mod close {
    /// A frame over the hard limit (1 MiB): the standard "message too big".
    pub const FRAME_TOO_LARGE: u16 = 1009;
    /// The server is stopping or restarting: reconnect (to this or another node) in a
    /// moment. The standard "service restart".
    pub const SERVER_RESTARTING: u16 = 1012;
    /// The client speaks another protocol version: reload the page, do not reconnect.
    pub const UNSUPPORTED_VERSION: u16 = 4000;
    /// No `hello` came in time after the socket opened.
    pub const HELLO_TIMEOUT: u16 = 4001;
    /// The client stopped reading: it answered no ping in time, or fell too far behind
    /// on the frames sent to it. Reconnecting is fine.
    pub const NOT_READING: u16 = 4002;
    /// The session was resumed on another connection (this one was stale): do not
    /// reconnect this one.
    pub const RESUMED_ELSEWHERE: u16 = 4003;
}

/// Types of client message that take no field besides `type`.
const BARE_TYPES: &[&str] = &[
    "leave_group",
    "request_seat",
    "lower_hand",
    "leave_seat",
    "end_room",
    "leave",
    "ping",
    "contacts",
];

/// Parse one text frame from a client: the size check, then JSON, each with its own
/// error so the client is told which it was. Unknown fields are refused, also on the
/// messages that take none (which serde alone would let through).
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
    let malformed =
        |e: serde_json::Error| (ErrorCode::Malformed, format!("unreadable message: {e}"));
    let value: serde_json::Value = serde_json::from_str(text).map_err(malformed)?;
    if let Some(object) = value.as_object()
        && let Some(kind) = object.get("type").and_then(serde_json::Value::as_str)
        && BARE_TYPES.contains(&kind)
        && let Some(extra) = object.keys().find(|k| k.as_str() != "type")
    {
        return Err((
            ErrorCode::Malformed,
            format!("unreadable message: '{kind}' takes no fields, yet it has '{extra}'"),
        ));
    }
    serde_json::from_value(value).map_err(malformed)
}

/// Most combining marks accepted on one character (enough for any script's accents and
/// vowel signs; stacks beyond it only smear a name over its neighbours).
pub const MAX_MARKS_PER_CHAR: usize = 4;

/// Why a display name or room title was refused. The texts are shown to users.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// Nothing left after trimming.
    #[error("the name is empty")]
    Empty,
    /// Longer than [`MAX_NAME_CHARS`].
    #[error("the name may be at most {MAX_NAME_CHARS} characters")]
    TooLong,
    /// Holds a control character (a line break, a tab, ...).
    #[error("the name holds control characters")]
    Control,
    /// Holds a character that reverses or reorders text (right-to-left override, ...).
    #[error("the name holds a character that changes the direction of text (U+{0:04X})")]
    Bidi(u32),
    /// Nothing in it can be seen.
    #[error("the name has no visible character")]
    Invisible,
    /// Too many accents or marks stacked on one character.
    #[error("the name stacks more than {MAX_MARKS_PER_CHAR} marks on one character")]
    TooManyMarks,
}

impl From<NameError> for (ErrorCode, String) {
    fn from(e: NameError) -> Self {
        (ErrorCode::InvalidInput, e.to_string())
    }
}

/// Explicit direction controls: embeddings, overrides, isolates and marks.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Characters that draw nothing on their own: spaces, zero-width and format characters,
/// fillers, variation selectors, tags and combining marks.
fn is_invisible(c: char) -> bool {
    c.is_whitespace()
        || unicode_normalization::char::is_combining_mark(c)
        || matches!(
            c,
            '\u{00AD}'
                | '\u{034F}'
                | '\u{115F}'
                | '\u{1160}'
                | '\u{17B4}'
                | '\u{17B5}'
                | '\u{180B}'..='\u{180F}'
                | '\u{200B}'..='\u{200D}'
                | '\u{2060}'..='\u{2064}'
                | '\u{206A}'..='\u{206F}'
                | '\u{2800}'
                | '\u{3164}'
                | '\u{FE00}'..='\u{FE0F}'
                | '\u{FEFF}'
                | '\u{FFA0}'
                | '\u{FFF9}'..='\u{FFFB}'
                | '\u{1D173}'..='\u{1D17A}'
                | '\u{E0000}'..='\u{E007F}'
                | '\u{E0100}'..='\u{E01EF}'
        )
}

/// Check and tidy a display name or room title: NFC-normalised and trimmed; 1 to
/// [`MAX_NAME_CHARS`] characters; no control or direction characters; something
/// visible; at most [`MAX_MARKS_PER_CHAR`] marks on any one character.
pub fn parse_name(name: &str) -> Result<String, NameError> {
    use unicode_normalization::UnicodeNormalization;
    let normal: String = name.trim().nfc().collect();
    let trimmed = normal.trim();
    let chars = trimmed.chars().count();
    if chars == 0 {
        return Err(NameError::Empty);
    }
    if chars > MAX_NAME_CHARS {
        return Err(NameError::TooLong);
    }
    if trimmed.chars().any(char::is_control) {
        return Err(NameError::Control);
    }
    if let Some(c) = trimmed.chars().find(|&c| is_bidi_control(c)) {
        return Err(NameError::Bidi(u32::from(c)));
    }
    if trimmed.chars().all(is_invisible) {
        return Err(NameError::Invisible);
    }
    let mut run = 0;
    for c in trimmed.chars() {
        if unicode_normalization::char::is_combining_mark(c) {
            run += 1;
            if run > MAX_MARKS_PER_CHAR {
                return Err(NameError::TooManyMarks);
            }
        } else {
            run = 0;
        }
    }
    Ok(trimmed.to_owned())
}

/// [`parse_name`], its refusal as an `invalid_input` failure.
pub fn clean_name(name: &str) -> Result<String, (ErrorCode, String)> {
    parse_name(name).map_err(Into::into)
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
                takes_calls: false,
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
    fn bare_messages_refuse_fields() {
        for frame in [
            r#"{"type":"leave","room":"x"}"#,
            r#"{"type":"ping","extra":1}"#,
            r#"{"type":"end_room","now":true}"#,
        ] {
            let (code, message) = parse_client_frame(frame).unwrap_err();
            assert_eq!(code, ErrorCode::Malformed, "{frame}");
            assert!(message.contains("takes no fields"), "{message}");
        }
        for frame in [
            r#"{"type":"hello","version":1,"name":"A","colour":"red"}"#,
            r#"{"type":"set_muted","muted":true,"loud":false}"#,
            r#"{"type":"join","room":"abc","offer":"v=0","x":1}"#,
        ] {
            let (code, message) = parse_client_frame(frame).unwrap_err();
            assert_eq!(code, ErrorCode::Malformed, "{frame}");
            assert!(message.contains("unknown field"), "{message}");
        }
        assert_eq!(
            parse_client_frame(r#"{"type":"ping"}"#),
            Ok(ClientMessage::Ping)
        );
    }

    #[test]
    fn names_are_normalised_and_must_be_visible() {
        // NFC: "e" + combining acute becomes one "é".
        assert_eq!(parse_name("Rene\u{301}"), Ok("Ren\u{e9}".into()));
        assert_eq!(parse_name("\u{200B}\u{200B}"), Err(NameError::Invisible));
        assert_eq!(parse_name("\u{2800}\u{3164}"), Err(NameError::Invisible));
        assert_eq!(parse_name("\u{301}\u{301}"), Err(NameError::Invisible));
        assert_eq!(parse_name("Ada\u{202E}nimda"), Err(NameError::Bidi(0x202E)));
        assert_eq!(parse_name("\u{2067}x"), Err(NameError::Bidi(0x2067)));
        let zalgo = format!("a{}", "\u{300}".repeat(39));
        assert_eq!(parse_name(&zalgo), Err(NameError::TooManyMarks));
        // Real names and emoji sequences (joined by ZWJ) pass.
        for ok in [
            "Nguyễn Văn A",
            "नमस्ते",
            "محمد",
            "👩\u{200D}👩\u{200D}👧",
            "Zoë",
        ] {
            assert!(parse_name(ok).is_ok(), "{ok}");
        }
        let message = clean_name("\u{202E}").unwrap_err().1;
        assert!(message.contains("direction"), "{message}");
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
