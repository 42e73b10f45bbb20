//! Client sessions: one WebSocket per browser tab, JSON frames as in `docs/protocol.md`.

pub mod outbox;
mod session;

use std::sync::Arc;

use axum::extract::State;
use axum::extract::ws::WebSocketUpgrade;
use axum::response::Response;

use crate::app::AppState;

/// Frames above this size close the connection outright (close code 1009); frames
/// between `MAX_FRAME_BYTES` and this get a typed error and the session carries on.
const HARD_FRAME_LIMIT: usize = 1 << 20;

/// `GET /ws`: upgrade to a client session.
pub async fn upgrade(ws: WebSocketUpgrade, State(state): State<Arc<AppState>>) -> Response {
    ws.max_message_size(HARD_FRAME_LIMIT)
        .max_frame_size(HARD_FRAME_LIMIT)
        .on_upgrade(move |socket| session::run(socket, state))
}
