//! HTTP: the web client's files, the room links, the REST API and the WebSocket upgrade.

mod api;
mod attachments;
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

/// The files of the web client, and nothing else of its folder (its tests, tools and
/// `node_modules` are not the server's to publish). An unknown path gets the client's
/// own "page not found" with status 404.
fn web_client(web_dir: &Path, index: ServeFile) -> Router<Arc<AppState>> {
    let not_found = ServeFile::new(web_dir.join("404.html"));
    let not_found = tower::ServiceBuilder::new()
        .map_response(|mut response: axum::http::Response<_>| {
            *response.status_mut() = axum::http::StatusCode::NOT_FOUND;
            response
        })
        .service(not_found);
    let mut router = Router::new().route_service("/", index);
    for file in ["style.css", "sw.js", "manifest.webmanifest", "404.html"] {
        router = router.route_service(&format!("/{file}"), ServeFile::new(web_dir.join(file)));
    }
    for folder in ["src", "icons"] {
        router = router.nest_service(
            &format!("/{folder}"),
            ServeDir::new(web_dir.join(folder)).not_found_service(not_found.clone()),
        );
    }
    router.fallback_service(not_found)
}

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
        .merge(attachments::routes())
        .route_service("/r/{room}", index.clone())
        .merge(web_client(web_dir, index))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(no_cache)
        .with_state(state)
}

/// The SFU side as this node sees it: alone, the one SFU's counters (the embedded
/// default's `/metrics` carries them); in a fleet, every live SFU node's load, the
/// placements, and this node's Redis traffic.
async fn fleet_metrics(state: &AppState) -> String {
    use chorus_proto::fleet::SfuNodeRecord;
    use std::fmt::Write as _;
    let mut text = String::new();
    let router = state.rooms.router();
    let nodes = match router.nodes().await {
        Ok(nodes) => nodes,
        Err(e) => {
            tracing::warn!(error = %e, "SFU nodes unavailable for metrics");
            Vec::new()
        }
    };
    let Some(redis) = &state.redis else {
        if let Some(node) = nodes.first()
            && let Ok(sfu) = state.rooms.sfu_client(node)
        {
            match sfu.node_stats().await {
                Ok(stats) => text.push_str(&chorus_sfu::prometheus::node_metrics(&stats)),
                Err((_, message)) => {
                    tracing::warn!(%message, "SFU node stats unavailable");
                }
            }
        }
        return text;
    };
    let bound = router.rooms_per_node().await.unwrap_or_default();
    let _ = writeln!(
        text,
        "# HELP chorus_fleet_sfu_nodes Live SFU nodes in the fleet.\n# TYPE chorus_fleet_sfu_nodes gauge\nchorus_fleet_sfu_nodes {}",
        nodes.len()
    );
    type Gauge = (&'static str, &'static str, fn(&SfuNodeRecord) -> f64);
    let gauges: [Gauge; 5] = [
        (
            "chorus_fleet_sfu_participants",
            "Participants on each SFU node (its heartbeat).",
            |n| f64::from(n.participants),
        ),
        (
            "chorus_fleet_sfu_rooms",
            "Rooms with participants on each SFU node (its heartbeat).",
            |n| f64::from(n.rooms),
        ),
        (
            "chorus_fleet_sfu_forwarded_per_second",
            "Packets forwarded per second by each SFU node.",
            |n| n.forwarded_per_sec,
        ),
        (
            "chorus_fleet_sfu_cpu_cores",
            "CPU used by each SFU node, in cores.",
            |n| n.cpu_cores,
        ),
        (
            "chorus_fleet_sfu_draining",
            "1 while an SFU node drains (takes no new rooms).",
            |n| if n.draining { 1.0 } else { 0.0 },
        ),
    ];
    for (name, help, value) in gauges {
        let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} gauge");
        for node in &nodes {
            let _ = writeln!(text, "{name}{{node=\"{}\"}} {}", node.id, value(node));
        }
    }
    let _ = writeln!(
        text,
        "# HELP chorus_fleet_sfu_bound_rooms Rooms placed on each SFU node.\n# TYPE chorus_fleet_sfu_bound_rooms gauge"
    );
    for (node, rooms) in &bound {
        let _ = writeln!(
            text,
            "chorus_fleet_sfu_bound_rooms{{node=\"{node}\"}} {rooms}"
        );
    }
    let m = redis.metrics();
    let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    let _ = write!(
        text,
        "# HELP chorus_redis_commands_total Redis commands sent by this node.\n# TYPE chorus_redis_commands_total counter\nchorus_redis_commands_total {}\n\
         # HELP chorus_redis_errors_total Redis commands that failed (connection, timeout, server error).\n# TYPE chorus_redis_errors_total counter\nchorus_redis_errors_total {}\n\
         # HELP chorus_redis_latency_seconds_total Time spent waiting for Redis replies.\n# TYPE chorus_redis_latency_seconds_total counter\nchorus_redis_latency_seconds_total {}\n",
        load(&m.commands),
        load(&m.errors),
        load(&m.latency_us) as f64 / 1e6,
    );
    text
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
    let (accounts, devices) = state.people.directory.counts();
    let _ = std::fmt::Write::write_fmt(
        &mut text,
        format_args!(
            "# HELP chorus_people_online Accounts with a tab or device connected to this node.\n\
             # TYPE chorus_people_online gauge\n\
             chorus_people_online {accounts}\n\
             # HELP chorus_people_devices Tabs and devices of accounts connected to this node.\n\
             # TYPE chorus_people_devices gauge\n\
             chorus_people_devices {devices}\n"
        ),
    );
    text.push_str(&state.calls.metrics.render(state.calls.active()));
    text.push_str(&state.attachments.render_metrics());
    // This process (in the embedded default it carries the SFU too), then the SFU's counters.
    text.push_str(&chorus_sfu::prometheus::process_metrics());
    text.push_str(&fleet_metrics(&state).await);
    text
}
