//! Sessions that survive: the state of a client's call, sealed by the server and held by
//! the client, so that no signaling node has to remember it. Any node that holds the
//! cluster's secret opens what another node sealed (`docs/architecture.md`, "Sessions
//! that survive"; the wire in `docs/protocol.md`, "Resuming a session").
//!
//! - **Keys.** Nodes keep no per-session table: the key of a session is derived
//!   (HKDF-SHA256) from the cluster secret, the epoch and the session id. An epoch lasts
//!   [`EPOCH_SECS`]; new state is sealed with the current epoch's key and the previous
//!   epoch's still opens, so keys rotate by themselves and a key is never used for more
//!   than two epochs.
//! - **The blob.** `base64url(version ‖ epoch ‖ nonce ‖ AES-256-GCM(state) ‖ tag)`, the
//!   version, epoch and session id as associated data: a blob opens only for the session
//!   it was sealed for, and any changed byte is refused.
//! - **Freshness.** The state carries a counter (one more at every seal) and an expiry.
//!   The counter is checked against the store by whoever resumes (an older blob is
//!   refused once a newer one was issued); the expiry here.
//!
//! The client never holds a key: what it holds it can neither read nor change.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hkdf;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::{CallId, NodeId, ParticipantId, RoomId, SessionId, UserId};

/// How long one epoch's key seals new state (a day). State sealed in the previous epoch
/// still opens, so the longest a key is in use is two epochs.
pub const EPOCH_SECS: u64 = 24 * 3600;

/// The blob format.
const VERSION: u8 = 1;
/// Version, epoch, nonce.
const HEADER_LEN: usize = 1 + 4 + NONCE_LEN;
/// The AES-GCM tag.
const TAG_LEN: usize = 16;
/// Refused before decoding anything: a real blob is a few hundred characters.
pub const MAX_BLOB_LEN: usize = 4096;
/// Domain separation of everything this module derives or authenticates.
const LABEL: &[u8] = b"chorus-session-v1";

/// What a client's session is doing, as the server last told it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionState {
    /// The session this state belongs to (also bound as associated data).
    pub session: SessionId,
    /// One more at every seal of this session; a blob whose counter is not the latest
    /// issued is a replay.
    pub counter: u64,
    /// When the state stops opening (unix seconds).
    pub expires: u64,
    /// Who the session is.
    pub user: UserId,
    /// Its display name.
    pub name: String,
    /// Signed in through an account (not a guest).
    pub signed_in: bool,
    /// The room it is in, if it is in one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<InRoom>,
    /// The 1:1 call it is in, if it is in one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call: Option<InCall>,
}

/// A session's place in a room: enough to take over its media at the SFU as it is.
/// Seats and roles are not here: they are the group's record, which the store keeps.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InRoom {
    /// The room.
    pub room: RoomId,
    /// Its participant there (the same one after a resume).
    pub participant: ParticipantId,
    /// The SFU node carrying its media.
    pub sfu: NodeId,
    /// It muted itself.
    pub muted: bool,
}

/// A session's 1:1 call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InCall {
    /// The call.
    pub call: CallId,
    /// The other side.
    pub peer: UserId,
}

/// Why a blob does not open, in words for the user (the client then rejoins).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// Not a blob at all: not base64, too short or too long, an unknown version.
    #[error("the saved session is not readable (damaged or cut short)")]
    Malformed,
    /// It does not authenticate: changed, sealed for another session, or with a key
    /// this cluster does not have.
    #[error("the saved session does not belong to this session or was changed")]
    Forged,
    /// Sealed too long ago: past its expiry, or with a retired epoch's key.
    #[error("your session expired")]
    Expired,
}

/// Why state could not be sealed (a fault on the server).
#[derive(Debug, thiserror::Error)]
#[error("cannot seal the session state: {0}")]
pub struct SealError(String);

/// Seals and opens session state with keys derived from the cluster secret.
#[derive(Clone)]
pub struct Sealer {
    prk: hkdf::Prk,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

impl Sealer {
    /// A sealer over the cluster secret (every signaling node of a fleet has the same).
    pub fn new(secret: &[u8]) -> Self {
        Self {
            prk: hkdf::Salt::new(hkdf::HKDF_SHA256, LABEL).extract(secret),
        }
    }

    fn key(&self, epoch: u32, session: &SessionId) -> Result<LessSafeKey, ()> {
        let epoch = epoch.to_be_bytes();
        let info: [&[u8]; 4] = [b"epoch", &epoch, b"session", session.as_str().as_bytes()];
        let okm = self.prk.expand(&info, &AES_256_GCM).map_err(|_| ())?;
        Ok(LessSafeKey::new(UnboundKey::from(okm)))
    }

    /// Seal `state` now (`now`: unix seconds).
    pub fn seal(&self, state: &SessionState, now: u64) -> Result<String, SealError> {
        let epoch = epoch_of(now);
        let key = self
            .key(epoch, &state.session)
            .map_err(|()| SealError("key derivation failed".into()))?;
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| SealError("no randomness".into()))?;
        let mut body = serde_json::to_vec(state).map_err(|e| SealError(e.to_string()))?;
        let aad = associated(epoch, &state.session);
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad.as_slice()),
            &mut body,
        )
        .map_err(|_| SealError("encryption failed".into()))?;
        let mut blob = Vec::with_capacity(HEADER_LEN + body.len());
        blob.push(VERSION);
        blob.extend_from_slice(&epoch.to_be_bytes());
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&body);
        Ok(URL_SAFE_NO_PAD.encode(blob))
    }

    /// Open a blob the client presents as the state of `session` (`now`: unix seconds).
    /// Whether its counter is still the latest is for the caller to check.
    pub fn open(
        &self,
        session: &SessionId,
        blob: &str,
        now: u64,
    ) -> Result<SessionState, OpenError> {
        if blob.len() > MAX_BLOB_LEN {
            return Err(OpenError::Malformed);
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(blob)
            .map_err(|_| OpenError::Malformed)?;
        if bytes.len() < HEADER_LEN + TAG_LEN || bytes[0] != VERSION {
            return Err(OpenError::Malformed);
        }
        let epoch = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
        let current = epoch_of(now);
        // Only the current epoch and the one before open; a blob from the future is
        // not this cluster's (its clocks agree to well within a day).
        if epoch > current {
            return Err(OpenError::Forged);
        }
        if current - epoch > 1 {
            return Err(OpenError::Expired);
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&bytes[5..HEADER_LEN]);
        let key = self.key(epoch, session).map_err(|()| OpenError::Forged)?;
        let aad = associated(epoch, session);
        let mut body = bytes[HEADER_LEN..].to_vec();
        let plain = key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad.as_slice()),
                &mut body,
            )
            .map_err(|_| OpenError::Forged)?;
        let state: SessionState = serde_json::from_slice(plain).map_err(|_| OpenError::Forged)?;
        if &state.session != session {
            return Err(OpenError::Forged);
        }
        if state.expires <= now {
            return Err(OpenError::Expired);
        }
        Ok(state)
    }
}

fn epoch_of(now: u64) -> u32 {
    u32::try_from(now / EPOCH_SECS).unwrap_or(u32::MAX)
}

fn associated(epoch: u32, session: &SessionId) -> Vec<u8> {
    let mut aad = Vec::with_capacity(LABEL.len() + 5 + session.as_str().len());
    aad.extend_from_slice(LABEL);
    aad.push(VERSION);
    aad.extend_from_slice(&epoch.to_be_bytes());
    aad.extend_from_slice(session.as_str().as_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: u64 = 1_800_000_000;

    fn state(session: &SessionId, counter: u64) -> SessionState {
        SessionState {
            session: session.clone(),
            counter,
            expires: NOW + 3600,
            user: UserId::random(),
            name: "Ada".into(),
            signed_in: false,
            room: Some(InRoom {
                room: RoomId::random(),
                participant: ParticipantId::random(),
                sfu: NodeId::random(),
                muted: true,
            }),
            call: None,
        }
    }

    #[test]
    fn opens_what_it_sealed_on_any_node_with_the_secret() {
        let (a, b) = (
            Sealer::new(b"cluster secret"),
            Sealer::new(b"cluster secret"),
        );
        let session = SessionId::random();
        let s = state(&session, 7);
        let blob = a.seal(&s, NOW).unwrap();
        assert_eq!(b.open(&session, &blob, NOW + 10).unwrap(), s);
    }

    #[test]
    fn another_cluster_cannot_open_it() {
        let session = SessionId::random();
        let blob = Sealer::new(b"ours").seal(&state(&session, 1), NOW).unwrap();
        assert_eq!(
            Sealer::new(b"theirs").open(&session, &blob, NOW),
            Err(OpenError::Forged)
        );
    }

    #[test]
    fn another_session_cannot_use_it() {
        let sealer = Sealer::new(b"secret");
        let session = SessionId::random();
        let blob = sealer.seal(&state(&session, 1), NOW).unwrap();
        assert_eq!(
            sealer.open(&SessionId::random(), &blob, NOW),
            Err(OpenError::Forged)
        );
    }

    #[test]
    fn expiry_and_epochs() {
        let sealer = Sealer::new(b"secret");
        let session = SessionId::random();
        let s = state(&session, 1);
        let blob = sealer.seal(&s, NOW).unwrap();
        assert_eq!(
            sealer.open(&session, &blob, s.expires),
            Err(OpenError::Expired)
        );
        // A long-lived state sealed in the previous epoch still opens; two back does not.
        let long = SessionState {
            expires: NOW + 10 * EPOCH_SECS,
            ..s
        };
        let blob = sealer.seal(&long, NOW).unwrap();
        assert!(sealer.open(&session, &blob, NOW + EPOCH_SECS).is_ok());
        assert_eq!(
            sealer.open(&session, &blob, NOW + 2 * EPOCH_SECS + 1),
            Err(OpenError::Expired)
        );
        // Nor does one from an epoch that has not begun.
        assert_eq!(
            sealer.open(&session, &blob, NOW - EPOCH_SECS),
            Err(OpenError::Forged)
        );
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        let sealer = Sealer::new(b"secret");
        let session = SessionId::random();
        for blob in ["", "!!!", "AQ", &"A".repeat(MAX_BLOB_LEN + 1)] {
            assert_eq!(
                sealer.open(&session, blob, NOW),
                Err(OpenError::Malformed),
                "{blob:.20}"
            );
        }
    }

    proptest! {
        #[test]
        fn any_changed_byte_is_refused(pos in 0usize..400, flip in 1u8..=255) {
            let sealer = Sealer::new(b"secret");
            let session = SessionId::random();
            let blob = sealer.seal(&state(&session, 3), NOW).unwrap();
            let mut bytes = URL_SAFE_NO_PAD.decode(&blob).unwrap();
            let pos = pos % bytes.len();
            bytes[pos] ^= flip;
            let tampered = URL_SAFE_NO_PAD.encode(bytes);
            prop_assert!(sealer.open(&session, &tampered, NOW).is_err());
        }

        #[test]
        fn any_truncation_is_refused(cut in 1usize..400) {
            let sealer = Sealer::new(b"secret");
            let session = SessionId::random();
            let blob = sealer.seal(&state(&session, 3), NOW).unwrap();
            let cut = cut.min(blob.len());
            prop_assert!(sealer.open(&session, &blob[..blob.len() - cut], NOW).is_err());
        }

        #[test]
        fn round_trips(counter in any::<u64>(), name in "\\PC{0,40}", muted in any::<bool>()) {
            let sealer = Sealer::new(b"secret");
            let session = SessionId::random();
            let mut s = state(&session, counter);
            s.name = name;
            if let Some(r) = s.room.as_mut() { r.muted = muted; }
            let blob = sealer.seal(&s, NOW).unwrap();
            prop_assert!(blob.len() <= MAX_BLOB_LEN);
            prop_assert_eq!(sealer.open(&session, &blob, NOW).unwrap(), s);
        }

        #[test]
        fn arbitrary_text_never_opens(text in "[A-Za-z0-9_-]{0,600}") {
            let sealer = Sealer::new(b"secret");
            prop_assert!(sealer.open(&SessionId::random(), &text, NOW).is_err());
        }
    }
}
