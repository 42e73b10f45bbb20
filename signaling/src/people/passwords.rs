//! Passwords: argon2id hashes (the `argon2` crate's defaults: 19 MiB, 2 passes, one lane,
//! as OWASP recommends), computed off the async threads, and a limit on failed sign-ins.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use rand::Rng;

/// Failed sign-ins one handle may have from one network address within [`FAILURE_WINDOW`].
pub const MAX_FAILURES: usize = 10;
/// The window [`MAX_FAILURES`] counts in.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);

/// Hash a new password (a fresh random salt each time).
pub async fn hash(password: String) -> Result<String, String> {
    tokio::task::spawn_blocking(move || {
        let mut salt = [0u8; 16];
        rand::rng().fill(&mut salt);
        let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())?
}

/// Whether `password` matches a stored hash. An unreadable hash matches nothing.
pub async fn verify(password: String, stored: String) -> bool {
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&stored)
            .map(|parsed| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false)
    })
    .await
    .unwrap_or(false)
}

/// A hash of a password nobody has, verified when a handle does not exist so that a
/// wrong handle takes as long as a wrong password.
pub fn decoy() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| {
        SaltString::encode_b64(b"chorus-decoy-salt")
            .ok()
            .and_then(|salt| {
                Argon2::default()
                    .hash_password(b"not a password anyone has", &salt)
                    .ok()
                    .map(|h| h.to_string())
            })
            .unwrap_or_default()
    })
}

/// Failed sign-ins per (network address, handle), in a sliding window.
#[derive(Default)]
pub struct FailedSignIns {
    failures: Mutex<HashMap<(String, String), Vec<Instant>>>,
}

impl FailedSignIns {
    /// How long until `handle` may be tried again from `origin`, if it may not now.
    pub fn blocked_for(&self, origin: &str, handle: &str) -> Option<Duration> {
        let now = Instant::now();
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let key = (origin.to_owned(), handle.to_owned());
        let list = failures.get_mut(&key)?;
        list.retain(|at| now.duration_since(*at) < FAILURE_WINDOW);
        if list.is_empty() {
            failures.remove(&key);
            return None;
        }
        (list.len() >= MAX_FAILURES)
            .then(|| FAILURE_WINDOW.saturating_sub(now.duration_since(list[0])))
    }

    /// Count one failure.
    pub fn failed(&self, origin: &str, handle: &str) {
        let now = Instant::now();
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        // Forget windows that have passed, so the map holds only recent attempts.
        if failures.len() > 10_000 {
            failures.retain(|_, list| {
                list.iter()
                    .any(|at| now.duration_since(*at) < FAILURE_WINDOW)
            });
        }
        failures
            .entry((origin.to_owned(), handle.to_owned()))
            .or_default()
            .push(now);
    }

    /// A success forgets the failures.
    pub fn succeeded(&self, origin: &str, handle: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.remove(&(origin.to_owned(), handle.to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_only_their_password() {
        let stored = hash("correct horse".into()).await.unwrap();
        assert!(stored.starts_with("$argon2id$"), "{stored}");
        assert!(verify("correct horse".into(), stored.clone()).await);
        assert!(!verify("wrong horse".into(), stored.clone()).await);
        assert!(!verify("correct horse".into(), "garbage".into()).await);
        assert_ne!(
            hash("correct horse".into()).await.unwrap(),
            stored,
            "salted"
        );
        assert!(!verify("x".into(), decoy().to_owned()).await);
        assert!(decoy().starts_with("$argon2id$"));
    }

    #[test]
    fn failures_block_after_the_limit() {
        let limit = FailedSignIns::default();
        for _ in 0..MAX_FAILURES - 1 {
            limit.failed("1.2.3.4", "ada");
        }
        assert_eq!(limit.blocked_for("1.2.3.4", "ada"), None);
        limit.failed("1.2.3.4", "ada");
        assert!(limit.blocked_for("1.2.3.4", "ada").is_some());
        assert_eq!(limit.blocked_for("5.6.7.8", "ada"), None, "per address");
        limit.succeeded("1.2.3.4", "ada");
        assert_eq!(limit.blocked_for("1.2.3.4", "ada"), None);
    }
}
