//! Shared state of one signaling node.

use std::sync::Arc;

use chorus_proto::token::{TokenIssuer, TokenVerifier};

use crate::rooms::service::RoomService;

/// What every request handler and session can reach.
pub struct AppState {
    /// Rooms: store, SFU and presences together.
    pub rooms: Arc<RoomService>,
    /// Mints user tokens.
    pub tokens: TokenIssuer,
    /// Checks user tokens.
    pub users: TokenVerifier,
}
