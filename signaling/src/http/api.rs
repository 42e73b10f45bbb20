//! The REST API: create and look up rooms. Errors come back as
//! `{"code": ..., "message": ...}` with the same codes as the WebSocket protocol.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chorus_proto::RoomId;
use chorus_proto::signal::{self, ErrorCode, RoomInfo};
use serde::{Deserialize, Serialize};

use crate::app::AppState;

/// Body of `POST /api/rooms`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRoom {
    name: String,
}

/// Answer of `GET /api/rooms/{room}`.
#[derive(Debug, Serialize)]
pub struct RoomStatus {
    room: RoomInfo,
    participants: usize,
}

/// A REST error.
pub struct ApiError(StatusCode, ErrorCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "code": self.1, "message": self.2 });
        (self.0, Json(body)).into_response()
    }
}

pub async fn create_room(
    State(state): State<Arc<AppState>>,
    body: Result<Json<CreateRoom>, JsonRejection>,
) -> Result<(StatusCode, Json<RoomInfo>), ApiError> {
    let Json(body) = body.map_err(|e| ApiError(e.status(), ErrorCode::Malformed, e.body_text()))?;
    let name = signal::clean_name(&body.name)
        .map_err(|(code, msg)| ApiError(StatusCode::BAD_REQUEST, code, msg))?;
    let room = state.rooms.create(name);
    tracing::info!(room = %room.id, "room created over REST");
    Ok((StatusCode::CREATED, Json(room)))
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
    let (room, participants) = state.rooms.get(&id).ok_or_else(not_found)?;
    Ok(Json(RoomStatus { room, participants }))
}
