//! Shared state of one signaling node.

use std::sync::Arc;
use std::time::Duration;

use chorus_proto::UserId;
use chorus_proto::signal::ErrorCode;

use chorus_proto::token::{TokenIssuer, TokenVerifier};

use crate::auth::api_key::ApiKey;
use crate::rooms::service::{Failure, RoomService};

/// What every request handler and session can reach.
pub struct AppState {
    /// Rooms: store, SFU and presences together.
    pub rooms: Arc<RoomService>,
    /// Mints user tokens.
    pub tokens: TokenIssuer,
    /// The SFU goes on when this process stops (see `SignalingConfig`).
    pub media_outlives_stop: bool,
    /// Seals the session state clients hold (keys derived from the token key).
    pub sealer: chorus_proto::session::Sealer,
    /// Checks user tokens.
    pub users: TokenVerifier,
    /// The server API's key.
    pub api_key: ApiKey,
    /// The fleet's Redis, when there is one (for metrics).
    pub redis: Option<crate::redis_client::Redis>,
    /// Every client session: limits, count, and the stop signal.
    pub sessions: crate::ws::Sessions,
    /// Accounts, presence, contacts.
    pub people: Arc<crate::people::People>,
    /// 1:1 calls.
    pub calls: Arc<crate::calls::CallService>,
    /// The group chats beside the rooms.
    pub chat: Arc<crate::chat::ChatService>,
    /// The files posted in them.
    pub attachments: Arc<crate::attachments::Attachments>,
}

/// How long a user token lets a client come back as the same user.
pub const USER_TOKEN_TTL: Duration = Duration::from_secs(90 * 24 * 3600);

impl AppState {
    /// Mint a user token for `user`: signed in through the app backend, or a guest.
    pub fn user_token(
        &self,
        user: &UserId,
        name: &str,
        signed_in: bool,
    ) -> Result<String, Failure> {
        self.tokens
            .mint_user_as(user, name, USER_TOKEN_TTL, signed_in)
            .map_err(|e| {
                (
                    ErrorCode::Internal,
                    format!("cannot issue a user token: {e}"),
                )
            })
    }
}
