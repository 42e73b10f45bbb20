//! Client sessions: one WebSocket per browser tab, JSON frames as in `docs/protocol.md`.

pub mod outbox;
mod rate;
mod session;

use std::sync::Arc;
use std::time::Duration;

use std::net::SocketAddr;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, State};
use axum::http::{Extensions, HeaderMap};
use axum::response::Response;
use tokio::sync::watch;

use crate::app::AppState;
use crate::client_addr::{TrustedProxies, origin_of};
use crate::config::ConnectionLimits;

/// Frames above this size close the connection outright (close code 1009); frames
/// between `MAX_FRAME_BYTES` and this get a typed error and the session carries on.
const HARD_FRAME_LIMIT: usize = 1 << 20;
/// Initial read buffer of a socket. It grows for a large frame; the default of the
/// WebSocket library (128 KiB) was most of an idle session's memory.
const READ_BUFFER_BYTES: usize = 4 * 1024;

/// The sessions of a node, as a whole: their limits, how many are open, and the signal
/// that tells every one of them the server is stopping.
#[derive(Clone)]
pub struct Sessions {
    limits: ConnectionLimits,
    proxies: Arc<TrustedProxies>,
    stopping: watch::Sender<bool>,
    open: watch::Sender<usize>,
}

impl Sessions {
    /// No session yet.
    pub fn new(limits: ConnectionLimits, proxies: TrustedProxies) -> Self {
        Self {
            limits,
            proxies: Arc::new(proxies),
            stopping: watch::Sender::new(false),
            open: watch::Sender::new(0),
        }
    }

    /// The limits every connection is held to.
    pub fn limits(&self) -> &ConnectionLimits {
        &self.limits
    }

    /// Sessions open now.
    pub fn open(&self) -> usize {
        *self.open.borrow()
    }

    /// Tell every session the server is stopping (each tells its client `left`,
    /// `server_restarting`, and closes with `close::SERVER_RESTARTING`), then wait up to
    /// `within` for all of them to end. Returns how many were still open.
    pub async fn stop(&self, within: Duration) -> usize {
        self.stopping.send_replace(true);
        let mut open = self.open.subscribe();
        let _ = tokio::time::timeout(within, open.wait_for(|n| *n == 0)).await;
        self.open()
    }

    fn opened(&self) -> SessionGuard {
        self.open.send_modify(|n| *n += 1);
        SessionGuard(self.open.clone())
    }
}

/// Counts a session as open while it lives.
struct SessionGuard(watch::Sender<usize>);

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// `GET /ws`: upgrade to a client session, which knows where its client is (for the
/// places its joins may hold).
pub async fn upgrade(
    ws: WebSocketUpgrade,
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    extensions: Extensions,
) -> Response {
    let origin = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| {
            let forwarded = headers
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|v| v.to_str().ok());
            state.sessions.proxies.client_ip(peer.ip(), forwarded)
        })
        .and_then(origin_of);
    ws.max_message_size(HARD_FRAME_LIMIT)
        .max_frame_size(HARD_FRAME_LIMIT)
        .read_buffer_size(READ_BUFFER_BYTES)
        .on_upgrade(move |socket| session::run(socket, state, origin))
}
