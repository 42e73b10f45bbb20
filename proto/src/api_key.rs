//! API keys of the server API (`docs/api.md`): each request is signed with the key's secret,
//!
//! ```text
//! Authorization: Chorus key=<key id>,ts=<unix seconds>,nonce=<16–64 hex>,sig=<hex HMAC-SHA256>
//! signed text:   METHOD "\n" PATH_AND_QUERY "\n" ts "\n" nonce "\n" hex(SHA-256(body))
//! ```
//!
//! so the secret never travels, a request cannot be altered, an old one is refused after
//! five minutes, and — the server remembering each nonce for as long as its timestamp is
//! acceptable — none can be replayed.

use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::{digest, hmac};
use serde::{Deserialize, Serialize};

/// How far a request's timestamp may be from the server's clock.
pub const MAX_SKEW_SECS: u64 = 300;
/// How long a server must remember a nonce: as long as a request bearing it could still
/// be accepted (its timestamp up to [`MAX_SKEW_SECS`] either side of the clock).
pub const NONCE_MEMORY_SECS: u64 = 2 * MAX_SKEW_SECS + 1;
/// Hex digits a nonce has: at least 16 (64 random bits), at most 64.
const NONCE_HEX: std::ops::RangeInclusive<usize> = 16..=64;

/// A request whose signature verified: what the server keeps to refuse its replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// The key that signed it.
    pub key: String,
    /// Its nonce (hex).
    pub nonce: String,
}

/// An API key: its public id and its secret.
#[derive(Clone, Serialize, Deserialize)]
pub struct ApiKey {
    /// Sent in every request.
    pub key: String,
    /// Hex; never sent.
    pub secret: String,
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKey")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// Why a request's signature was refused. The texts go back to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// No `Authorization: Chorus ...` header.
    #[error("the request is not signed: send 'Authorization: Chorus key=..,ts=..,sig=..'")]
    Missing,
    /// The header is not of the documented form.
    #[error("the Authorization header is malformed")]
    Malformed,
    /// Not a key of this server.
    #[error("unknown API key")]
    UnknownKey,
    /// No nonce (or one that is not 16–64 hex digits).
    #[error(
        "the request has no usable nonce: send nonce=<16 to 64 random hex digits> in the Authorization header, signed (docs/api.md)"
    )]
    NoNonce,
    /// Too old or from the future.
    #[error("the request timestamp is more than {MAX_SKEW_SECS} s from the server's clock")]
    Stale,
    /// The signature does not match.
    #[error("the request signature does not match")]
    BadSignature,
    /// The system's random source failed while making a key.
    #[error("the system random source failed")]
    NoRandom,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn signed_text(method: &str, path_and_query: &str, ts: u64, nonce: &str, body: &[u8]) -> String {
    let body_hash = crate::hex::encode(digest::digest(&digest::SHA256, body).as_ref());
    format!("{method}\n{path_and_query}\n{ts}\n{nonce}\n{body_hash}")
}

fn random_nonce() -> String {
    use aws_lc_rs::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    if aws_lc_rs::rand::SystemRandom::new()
        .fill(&mut bytes)
        .is_err()
    {
        // Never seen; still unique enough per process and instant to stay replay-safe.
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        bytes = t.to_be_bytes();
    }
    crate::hex::encode(&bytes)
}

impl ApiKey {
    /// A fresh random key.
    pub fn generate() -> Result<Self, SignatureError> {
        use aws_lc_rs::rand::SecureRandom;
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let mut id = [0u8; 8];
        let mut secret = [0u8; 32];
        rng.fill(&mut id)
            .and_then(|()| rng.fill(&mut secret))
            .map_err(|_| SignatureError::NoRandom)?;
        Ok(Self {
            key: format!("ck_{}", crate::hex::encode(&id)),
            secret: crate::hex::encode(&secret),
        })
    }

    /// The `Authorization` header value for a request (what a client of the API does),
    /// with a fresh nonce: every call gives a header that is good for one request.
    pub fn sign(&self, method: &str, path_and_query: &str, body: &[u8]) -> String {
        let ts = now_secs();
        let nonce = random_nonce();
        let secret = crate::hex::decode(&self.secret).unwrap_or_default();
        let key = hmac::Key::new(hmac::HMAC_SHA256, &secret);
        let sig = hmac::sign(
            &key,
            signed_text(method, path_and_query, ts, &nonce, body).as_bytes(),
        );
        format!(
            "Chorus key={},ts={ts},nonce={nonce},sig={}",
            self.key,
            crate::hex::encode(sig.as_ref())
        )
    }

    /// Check a request's `Authorization` header.
    pub fn verify(
        &self,
        header: Option<&str>,
        method: &str,
        path_and_query: &str,
        body: &[u8],
    ) -> Result<Signed, SignatureError> {
        let header = header.ok_or(SignatureError::Missing)?;
        let fields = header
            .strip_prefix("Chorus ")
            .ok_or(SignatureError::Missing)?;
        let (mut key, mut ts, mut nonce, mut sig) = (None, None, None, None);
        for part in fields.split(',') {
            match part.trim().split_once('=') {
                Some(("key", v)) => key = Some(v),
                Some(("ts", v)) => ts = v.parse::<u64>().ok(),
                Some(("nonce", v)) => nonce = Some(v),
                Some(("sig", v)) => sig = crate::hex::decode(v),
                _ => return Err(SignatureError::Malformed),
            }
        }
        let (Some(key), Some(ts), Some(sig)) = (key, ts, sig) else {
            return Err(SignatureError::Malformed);
        };
        let nonce = nonce
            .filter(|n| NONCE_HEX.contains(&n.len()) && n.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or(SignatureError::NoNonce)?;
        if key != self.key {
            return Err(SignatureError::UnknownKey);
        }
        if now_secs().abs_diff(ts) > MAX_SKEW_SECS {
            return Err(SignatureError::Stale);
        }
        let secret = crate::hex::decode(&self.secret).ok_or(SignatureError::UnknownKey)?;
        let hmac_key = hmac::Key::new(hmac::HMAC_SHA256, &secret);
        hmac::verify(
            &hmac_key,
            signed_text(method, path_and_query, ts, nonce, body).as_bytes(),
            &sig,
        )
        .map_err(|_| SignatureError::BadSignature)?;
        Ok(Signed {
            key: key.to_owned(),
            nonce: nonce.to_ascii_lowercase(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_requests_verify_and_tampering_is_caught() {
        let key = ApiKey::generate().unwrap();
        let header = key.sign("POST", "/api/v1/rooms", b"{\"name\":\"x\"}");
        let signed = key
            .verify(Some(&header), "POST", "/api/v1/rooms", b"{\"name\":\"x\"}")
            .unwrap();
        assert_eq!(signed.key, key.key);
        // Two signatures of the same request differ: each carries its own nonce.
        let again = key.sign("POST", "/api/v1/rooms", b"{\"name\":\"x\"}");
        let signed_again = key
            .verify(Some(&again), "POST", "/api/v1/rooms", b"{\"name\":\"x\"}")
            .unwrap();
        assert_ne!(signed.nonce, signed_again.nonce);
        // The nonce is signed: another one breaks the signature; none is refused.
        let swapped = header.replace(&signed.nonce, &signed_again.nonce);
        assert_eq!(
            key.verify(Some(&swapped), "POST", "/api/v1/rooms", b"{\"name\":\"x\"}"),
            Err(SignatureError::BadSignature)
        );
        let without = header.replace(&format!("nonce={},", signed.nonce), "");
        assert_eq!(
            key.verify(Some(&without), "POST", "/api/v1/rooms", b"{\"name\":\"x\"}"),
            Err(SignatureError::NoNonce)
        );
        assert_eq!(
            key.verify(Some(&header), "POST", "/api/v1/rooms", b"{\"name\":\"y\"}"),
            Err(SignatureError::BadSignature)
        );
        assert_eq!(
            key.verify(Some(&header), "GET", "/api/v1/rooms", b""),
            Err(SignatureError::BadSignature)
        );
        let other = ApiKey::generate().unwrap();
        assert_eq!(
            other.verify(Some(&header), "POST", "/api/v1/rooms", b"{\"name\":\"x\"}"),
            Err(SignatureError::UnknownKey)
        );
        assert_eq!(
            key.verify(None, "GET", "/", b""),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            key.verify(Some("Chorus nonsense"), "GET", "/", b""),
            Err(SignatureError::Malformed)
        );
        let stale = format!("Chorus key={},ts=1,nonce=0123456789abcdef,sig=00", key.key);
        assert_eq!(
            key.verify(Some(&stale), "GET", "/", b""),
            Err(SignatureError::Stale)
        );
    }
}
