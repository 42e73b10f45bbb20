//! The ICE servers handed to the two browsers of a call: STUN and TURN URLs from the
//! configuration and, with a TURN secret, short-lived TURN credentials of the TURN REST
//! scheme (coturn's `use-auth-secret`): the username is `<expiry>:<user>`, the password
//! base64(HMAC-SHA1(secret, username)), so no credential is stored anywhere.

use std::time::Duration;

use aws_lc_rs::hmac;
use base64::Engine as _;
use chorus_proto::UserId;
use chorus_proto::people::IceServer;

/// How long TURN credentials are valid.
pub const TURN_CREDENTIAL_TTL: Duration = Duration::from_secs(3600);

/// STUN/TURN servers for calls.
#[derive(Clone, Default)]
pub struct IceConfig {
    /// `stun:` URLs.
    pub stun: Vec<String>,
    /// `turn:` / `turns:` URLs.
    pub turn: Vec<String>,
    /// The secret shared with the TURN server.
    pub turn_secret: Option<String>,
}

impl std::fmt::Debug for IceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IceConfig")
            .field("stun", &self.stun)
            .field("turn", &self.turn)
            .field("turn_secret", &self.turn_secret.as_ref().map(|_| "***"))
            .finish()
    }
}

impl IceConfig {
    /// The servers for `user`'s peer connection, with credentials valid from `now_secs`
    /// (unix seconds) for [`TURN_CREDENTIAL_TTL`].
    pub fn servers_for(&self, user: &UserId, now_secs: u64) -> Vec<IceServer> {
        let mut servers = Vec::new();
        if !self.stun.is_empty() {
            servers.push(IceServer {
                urls: self.stun.clone(),
                username: None,
                credential: None,
            });
        }
        if !self.turn.is_empty() {
            let (username, credential) = match &self.turn_secret {
                Some(secret) => {
                    let username = format!("{}:{user}", now_secs + TURN_CREDENTIAL_TTL.as_secs());
                    let key =
                        hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret.as_bytes());
                    let tag = hmac::sign(&key, username.as_bytes());
                    let credential = base64::engine::general_purpose::STANDARD.encode(tag.as_ref());
                    (Some(username), Some(credential))
                }
                None => (None, None),
            };
            servers.push(IceServer {
                urls: self.turn.clone(),
                username,
                credential,
            });
        }
        servers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turn_rest_credentials() {
        let config = IceConfig {
            stun: vec!["stun:127.0.0.1:3478".into()],
            turn: vec!["turn:127.0.0.1:3478?transport=udp".into()],
            turn_secret: Some("north".into()),
        };
        let user = UserId::parse("u_ada").unwrap();
        let servers = config.servers_for(&user, 1_000);
        assert_eq!(servers.len(), 2);
        assert_eq!(servers[0].username, None);
        assert_eq!(servers[1].username.as_deref(), Some("4600:u_ada"));
        // HMAC-SHA1("north", "4600:u_ada"), base64: as `openssl dgst -sha1 -hmac north -binary | base64`.
        assert_eq!(
            servers[1].credential.as_deref(),
            Some("5MqfyRUoMnzGT5Mr8fn9/1LEFH0=")
        );
        assert!(IceConfig::default().servers_for(&user, 0).is_empty());
        assert!(
            !format!("{config:?}").contains("north"),
            "the secret is not logged"
        );
    }
}
