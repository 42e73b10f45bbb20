//! Room-token checks: signature and expiry via `chorus_proto::token::TokenVerifier` (the
//! SFU holds only the public key), and the list of participants that already left, whose
//! still-valid tokens must not admit them again.

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chorus_proto::token::{RoomClaims, TokenVerifier};
use chorus_proto::{ParticipantId, RoomId};

use crate::error::SfuError;

/// Verifies room tokens with the deployment's public key.
#[derive(Clone)]
pub struct Authenticator {
    verifier: TokenVerifier,
}

impl Authenticator {
    /// From the raw 32-byte Ed25519 public key.
    pub fn new(public_key: &[u8]) -> Result<Self, SfuError> {
        let verifier = TokenVerifier::from_public_key(public_key)
            .map_err(|e| SfuError::Config(format!("token public key: {e}")))?;
        Ok(Self { verifier })
    }

    /// Signature, issuer, expiry and size (the verifier refuses > 4 KiB before parsing).
    pub fn verify(&self, token: &str) -> Result<RoomClaims, SfuError> {
        Ok(self.verifier.verify(token)?)
    }
}

/// Never remember a departure longer than this, whatever the token's expiry says: it
/// bounds memory if signaling mints very long tokens.
const MAX_REMEMBER: Duration = Duration::from_secs(24 * 3600);
/// Hard cap on remembered departures; the oldest are forgotten first.
const MAX_ENTRIES: usize = 100_000;

/// Participants that left, remembered until their token expires (bounded), so that the
/// same token cannot admit them again. Time is passed in, like the engine's.
#[derive(Debug, Default)]
pub struct Revocations {
    set: HashSet<(RoomId, ParticipantId)>,
    // Insertion order; deadlines are not strictly ordered (tokens differ in lifetime), so
    // expiry is checked lazily at the front and entries may live a little longer.
    order: VecDeque<(Instant, RoomId, ParticipantId)>,
}

impl Revocations {
    /// Remember that `participant` left `room`; its token expires at `token_exp` (Unix s).
    pub fn revoke(
        &mut self,
        room: RoomId,
        participant: ParticipantId,
        token_exp: u64,
        now: Instant,
    ) {
        let remaining = Duration::from_secs(token_exp.saturating_sub(unix_now()))
            // The verifier allows 5 s of leeway past exp: remember past it.
            .saturating_add(Duration::from_secs(10))
            .min(MAX_REMEMBER);
        if self.set.insert((room.clone(), participant.clone())) {
            self.order.push_back((now + remaining, room, participant));
        }
        while self.order.len() > MAX_ENTRIES {
            self.pop_front();
        }
    }

    /// Whether this pair left earlier.
    pub fn is_revoked(&self, room: &RoomId, participant: &ParticipantId) -> bool {
        // Cloning ids to probe is fine: admissions are rare next to packets.
        self.set.contains(&(room.clone(), participant.clone()))
    }

    /// Forget departures whose tokens have expired.
    pub fn expire(&mut self, now: Instant) {
        while self
            .order
            .front()
            .is_some_and(|(deadline, _, _)| *deadline <= now)
        {
            self.pop_front();
        }
    }

    /// How many departures are remembered.
    pub fn len(&self) -> usize {
        self.set.len()
    }

    /// Whether none are remembered.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    fn pop_front(&mut self) {
        if let Some((_, room, participant)) = self.order.pop_front() {
            self.set.remove(&(room, participant));
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
