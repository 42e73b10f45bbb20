//! HTTP: the web client's files, the room links, the REST API and the WebSocket upgrade.

mod api;
mod server_api;

use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, header};
use axum::routing::get;
use tower_http::services::{ServeDir, ServeFile};
use tower_http::set_header::SetResponseHeaderLayer;

use crate::app::AppState;

/// Largest REST request body.
const MAX_BODY_BYTES: usize = 16 * 1024;

/// The whole HTTP surface of a signaling node.
pub fn router(state: Arc<AppState>, web_dir: &Path) -> Router {
    let index = ServeFile::new(web_dir.join("index.html"));
    // The client is small and changes with the server; revalidate rather than cache stale code.
    let no_cache = SetResponseHeaderLayer::overriding(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache"),
    );
    Router::new()
        .route("/ws", get(crate::ws::upgrade))
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .route("/api/rooms/{room}", get(api::get_room))
        .nest("/api/v1", server_api::routes(state.clone()))
        .route_service("/r/{room}", index)
        .fallback_service(ServeDir::new(web_dir))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(no_cache)
        .with_state(state)
}

/// `GET /metrics`: Prometheus text format.
async fn metrics(axum::extract::State(state): axum::extract::State<Arc<AppState>>) -> String {
    let (rooms, participants) = state.rooms.registry.counts();
    let mut text = format!(
        "# HELP chorus_signaling_rooms Live rooms on this signaling node.\n\
         # TYPE chorus_signaling_rooms gauge\n\
         chorus_signaling_rooms {rooms}\n\
         # HELP chorus_signaling_participants Participants in rooms on this signaling node.\n\
         # TYPE chorus_signaling_participants gauge\n\
         chorus_signaling_participants {participants}\n"
    );
    // This process (in the embedded default it carries the SFU too), then the SFU's counters.
    text.push_str(&chorus_sfu::prometheus::process_metrics());
    match state.rooms.sfu().node_stats().await {
        Ok(stats) => text.push_str(&chorus_sfu::prometheus::node_metrics(&stats)),
        Err(status) => tracing::warn!(error = %status.message(), "SFU node stats unavailable"),
    }
    text
}
