//! Shared state of one signaling node.

use std::sync::Arc;
use std::time::Duration;

use chorus_proto::token::TokenIssuer;

use crate::rooms::RoomRegistry;
use crate::sfu_client::SfuClient;

/// What every request handler and session can reach.
pub struct AppState {
    /// Rooms and their members.
    pub rooms: Arc<RoomRegistry>,
    /// The SFU node that carries this node's rooms.
    pub sfu: SfuClient,
    /// Mints room tokens.
    pub tokens: TokenIssuer,
    /// Lifetime of a minted token.
    pub token_ttl: Duration,
}
