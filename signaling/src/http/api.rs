//! The public REST API: look up a room (its page shows the title before joining). Errors come back as
//! `{"code": ..., "message": ...}` with the same codes as the WebSocket protocol.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chorus_proto::RoomId;
use chorus_proto::signal::{ErrorCode, RoomInfo};
use serde::Serialize;

use crate::app::AppState;

/// Answer of `GET /api/rooms/{room}`.
#[derive(Debug, Serialize)]
pub struct RoomStatus {
    room: RoomInfo,
    /// Present in the room now.
    participants: usize,
    /// Members of its group chat.
    members: usize,
}

/// A REST error.
pub struct ApiError(StatusCode, ErrorCode, String);

impl ApiError {
    /// An error with a status, a code and words.
    pub fn new(status: StatusCode, code: ErrorCode, message: &str) -> Self {
        Self(status, code, message.to_owned())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "code": self.1, "message": self.2 });
        (self.0, Json(body)).into_response()
    }
}

pub async fn get_room(
    State(state): State<Arc<AppState>>,
    Path(room): Path<String>,
) -> Result<Json<RoomStatus>, ApiError> {
    let not_found = || {
        ApiError(
            StatusCode::NOT_FOUND,
            ErrorCode::RoomNotFound,
            "there is no such room; check the link".into(),
        )
    };
    let id = RoomId::parse(room).map_err(|_| not_found())?;
    let group = state
        .rooms
        .resolve(&id)
        .await
        .map_err(|(code, message)| match code {
            ErrorCode::RoomNotFound => not_found(),
            _ => ApiError(StatusCode::INTERNAL_SERVER_ERROR, code, message),
        })?;
    let participants = state.rooms.participants(&id).await.len();
    Ok(Json(RoomStatus {
        room: crate::rooms::room_info(&group),
        participants,
        members: group.members.len(),
    }))
}
