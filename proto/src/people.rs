//! People and 1:1 calls as clients see them: accounts with a handle, presence, contacts,
//! call records, and what two browsers exchange through signaling to connect to each
//! other directly (`docs/protocol.md`, "Accounts" and "Calls").

use serde::{Deserialize, Serialize};

use crate::ids::{CallId, UserId};

/// Shortest handle, in characters.
pub const MIN_HANDLE_CHARS: usize = 2;
/// Longest handle, in characters.
pub const MAX_HANDLE_CHARS: usize = 20;
/// Shortest password, in characters.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Longest password, in bytes (argon2 takes any length; this bounds the work a request
/// can ask for).
pub const MAX_PASSWORD_BYTES: usize = 256;
/// How long a callee's devices ring before the call ends as `no_answer` (by default;
/// `--call-ring-secs`).
pub const RING_SECS: u64 = 30;

/// Why a handle was refused. The texts are shown to users.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandleError {
    /// Shorter than [`MIN_HANDLE_CHARS`] or longer than [`MAX_HANDLE_CHARS`].
    #[error("a handle has {MIN_HANDLE_CHARS} to {MAX_HANDLE_CHARS} characters")]
    Length,
    /// Holds something besides `a–z`, `0–9`, `_` and `.`.
    #[error("a handle may hold only letters a–z, digits, '_' and '.'")]
    Character,
    /// Starts or ends with `.`, or has two in a row.
    #[error("a handle may not start or end with '.', nor have two in a row")]
    Dots,
}

/// Check and tidy a handle: a leading `@` is dropped, letters are lowered; then
/// [`MIN_HANDLE_CHARS`] to [`MAX_HANDLE_CHARS`] of `a–z 0–9 _ .`, no dot at either end
/// and no two in a row. Handles are unique regardless of case.
pub fn parse_handle(handle: &str) -> Result<String, HandleError> {
    let handle = handle.trim();
    let handle = handle
        .strip_prefix('@')
        .unwrap_or(handle)
        .to_ascii_lowercase();
    let chars = handle.chars().count();
    if !(MIN_HANDLE_CHARS..=MAX_HANDLE_CHARS).contains(&chars) {
        return Err(HandleError::Length);
    }
    if !handle
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.')
    {
        return Err(HandleError::Character);
    }
    if handle.starts_with('.') || handle.ends_with('.') || handle.contains("..") {
        return Err(HandleError::Dots);
    }
    Ok(handle)
}

/// Whether a new password is acceptable: [`MIN_PASSWORD_CHARS`] characters at least,
/// [`MAX_PASSWORD_BYTES`] bytes at most. The text says what is wrong.
pub fn check_new_password(password: &str) -> Result<(), String> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(format!(
            "a password has at least {MIN_PASSWORD_CHARS} characters"
        ));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(format!(
            "a password may be at most {MAX_PASSWORD_BYTES} bytes"
        ));
    }
    Ok(())
}

/// The account a session is signed in as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountInfo {
    /// The user (the same id in rooms).
    pub user: UserId,
    /// Unique, lower case, without the `@`.
    pub handle: String,
    /// Display name.
    pub name: String,
    /// Calls of this account always go through the media server, also with contacts:
    /// its address is never handed to the other side (`set_call_privacy`). Calls with
    /// people who are not contacts go through it whatever this says.
    #[serde(default)]
    pub always_relay: bool,
}

/// Whether someone can be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Presence {
    /// At least one of their tabs or devices is connected.
    Online,
    /// In a call on one of them.
    InCall,
    /// No tab or device connected.
    Offline,
}

/// Someone with an account, as another user sees them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonInfo {
    /// The user.
    pub user: UserId,
    /// Their handle (without `@`).
    pub handle: String,
    /// Their display name.
    pub name: String,
    /// Reachable now or not.
    pub presence: Presence,
}

/// A call as its two sides see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallInfo {
    /// The call.
    pub id: CallId,
    /// Who rings.
    pub caller: PersonInfo,
    /// Who is rung.
    pub callee: PersonInfo,
}

/// A STUN or TURN server for `RTCPeerConnection`'s `iceServers`, as the browser takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceServer {
    /// `stun:` / `turn:` / `turns:` URLs.
    pub urls: Vec<String>,
    /// TURN: `<expiry unix seconds>:<user>` (the TURN REST scheme), when the server is
    /// configured with a TURN secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// TURN: base64 of HMAC-SHA1(secret, username); valid until the expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// What an SDP is, as in `RTCSessionDescriptionInit.type` (no provisional answers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SdpType {
    /// The caller's offer (or either side's, for a renegotiation).
    Offer,
    /// The answer to it.
    Answer,
}

/// An SDP as `RTCSessionDescriptionInit`: passed to `setRemoteDescription` unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionDescription {
    /// Offer or answer.
    #[serde(rename = "type")]
    pub kind: SdpType,
    /// The SDP text.
    pub sdp: String,
}

/// A trickled ICE candidate as `RTCIceCandidateInit` (`candidate.toJSON()` in a browser):
/// passed to `addIceCandidate` unchanged. An empty `candidate` says gathering is done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IceCandidate {
    /// The `candidate:` line (without `a=`), or empty at the end of candidates.
    pub candidate: String,
    /// The media stream it is for.
    #[serde(rename = "sdpMid", default, skip_serializing_if = "Option::is_none")]
    pub sdp_mid: Option<String>,
    /// The m-line index it is for.
    #[serde(
        rename = "sdpMLineIndex",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub sdp_m_line_index: Option<u16>,
    /// The ICE username fragment it belongs to.
    #[serde(
        rename = "usernameFragment",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub username_fragment: Option<String>,
}

/// How a call ended, for both sides and for its record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallEnd {
    /// One side hung up after it was answered.
    HungUp,
    /// The caller stopped ringing before it was answered.
    Cancelled,
    /// The callee declined.
    Declined,
    /// The callee is in another call.
    Busy,
    /// Nobody answered within [`RING_SECS`].
    NoAnswer,
    /// The callee has no tab or device connected.
    Unavailable,
    /// Another device of the callee answered (sent only to the devices that rang).
    AnsweredElsewhere,
    /// One side's connection to the server ended.
    Disconnected,
    /// A side turned the call into a voice room (`grow_call`): both went on there.
    Grown,
}

impl CallEnd {
    /// Whether the callee missed the call (it shows in their list as missed).
    pub fn missed(self) -> bool {
        matches!(
            self,
            CallEnd::Cancelled | CallEnd::NoAnswer | CallEnd::Unavailable | CallEnd::Busy
        )
    }
}

/// How a call's media went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaPath {
    /// Browser to browser.
    Direct,
    /// Through the media server.
    Relayed,
}

/// One call in a user's list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallRecord {
    /// The call.
    pub id: CallId,
    /// The other side.
    pub peer: PersonInfo,
    /// This user called (or was called).
    pub outgoing: bool,
    /// When the caller rang, unix milliseconds.
    pub started_at_ms: u64,
    /// How long it was answered, in seconds (0 if it never was).
    pub duration_secs: u64,
    /// How it ended.
    pub end: CallEnd,
    /// An incoming call this user did not answer.
    pub missed: bool,
    /// How the media went, if it connected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<MediaPath>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_are_lowered_and_checked() {
        assert_eq!(parse_handle("@Ada_L").as_deref(), Ok("ada_l"));
        assert_eq!(parse_handle(" bo.ek ").as_deref(), Ok("bo.ek"));
        assert_eq!(parse_handle("a"), Err(HandleError::Length));
        assert_eq!(parse_handle(&"a".repeat(21)), Err(HandleError::Length));
        assert_eq!(parse_handle("ada lovelace"), Err(HandleError::Character));
        assert_eq!(parse_handle("adä"), Err(HandleError::Character));
        assert_eq!(parse_handle(".ada"), Err(HandleError::Dots));
        assert_eq!(parse_handle("a..da"), Err(HandleError::Dots));
    }

    #[test]
    fn passwords_have_a_floor_and_a_ceiling() {
        assert!(check_new_password("short").is_err());
        assert!(check_new_password("long enough").is_ok());
        assert!(check_new_password(&"x".repeat(MAX_PASSWORD_BYTES + 1)).is_err());
    }

    #[test]
    fn candidates_read_as_browsers_write_them() {
        let c: IceCandidate = serde_json::from_str(
            r#"{"candidate":"candidate:1 1 udp 2122260223 127.0.0.1 5000 typ host","sdpMid":"0","sdpMLineIndex":0,"usernameFragment":"abcd"}"#,
        )
        .unwrap();
        assert_eq!(c.sdp_m_line_index, Some(0));
        let d: SessionDescription =
            serde_json::from_str(r#"{"type":"offer","sdp":"v=0"}"#).unwrap();
        assert_eq!(d.kind, SdpType::Offer);
        assert!(
            serde_json::from_str::<SessionDescription>(r#"{"type":"pranswer","sdp":""}"#).is_err()
        );
    }
}
