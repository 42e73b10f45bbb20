//! Chorus signaling: the service browsers talk to.
//!
//! It serves the web client, holds client sessions over WebSocket (`docs/protocol.md`),
//! keeps rooms and their members, mints room tokens and admits participants into rooms
//! on an SFU node over gRPC. Media never passes through it.
//!
//! [`start`] runs one node; the `chorus` binary runs it together with an in-process SFU
//! (the embedded default), `chorus-signaling` alone against a separate SFU.

mod app;
pub mod attachments;
mod auth;
mod calls;
mod chat;
pub mod cli;
mod client_addr;
mod config;
mod error;
mod http;
mod net;
mod people;
mod redis_client;
mod rooms;
mod routing;
mod serve;
mod sfu;
mod store;
mod tls;
mod ws;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chorus_proto::token::TokenIssuer;

pub use auth::api_key::ApiKey;
pub use config::{ConnectionLimits, SignalingConfig, TlsMode, default_web_dir};
pub use error::SignalingError;
pub use net::primary_ip;
pub use rooms::service::RoomTimeouts;

/// A running signaling node.
pub struct SignalingHandle {
    local_addr: SocketAddr,
    url: String,
    server: axum_server::Handle<SocketAddr>,
    task: tokio::task::JoinHandle<()>,
    sessions: ws::Sessions,
    drain_timeout: Duration,
}

impl SignalingHandle {
    /// The address the HTTP(S) listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address a person opens in a browser.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Stop gracefully: accept no more connections, tell every session the server is
    /// restarting (`left` with `server_restarting`, then close code 1012), take their
    /// participants off the SFU, and return once they are all gone or the drain
    /// timeout has passed.
    pub async fn shutdown(self) {
        self.server.graceful_shutdown(Some(self.drain_timeout));
        let open = self.sessions.open();
        let left = self.sessions.stop(self.drain_timeout).await;
        tracing::info!(
            sessions = open,
            still_open = left,
            "sessions told the server is restarting"
        );
        let _ = self.task.await;
    }

    /// Run until the server stops by itself.
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

/// Start a signaling node: check the SFU is reachable, bind, serve.
pub async fn start(
    config: SignalingConfig,
    tokens: TokenIssuer,
) -> Result<SignalingHandle, SignalingError> {
    if !config.web_dir.join("index.html").is_file() {
        return Err(SignalingError::WebDirMissing(config.web_dir.clone()));
    }
    std::fs::create_dir_all(&config.data_dir).map_err(|source| SignalingError::Io {
        path: config.data_dir.clone(),
        source,
    })?;

    let node_id = config
        .node_id
        .clone()
        .unwrap_or_else(chorus_proto::NodeId::random);
    let users = tokens.verifier()?;
    let control = sfu::grpc::ControlTokens::new(tokens.clone());
    let (seams, people_store, chat_store, attachment_store, fleet, inbound) = match &config
        .redis_url
    {
        None => {
            let (seams, people, chat, attachments) =
                local_seams(&config, node_id.clone(), control.clone()).await?;
            let fleet: Arc<dyn people::fleet::PeopleFleet> = Arc::new(people::fleet::LocalFleet);
            (seams, people, chat, attachments, fleet, None)
        }
        Some(url) => {
            let redis = redis_client::Redis::connect(url).await?;
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            let bus = rooms::bus::RedisBus::start(redis.clone(), node_id.clone(), None, tx);
            let people: store::people::SharedPeopleStore =
                Arc::new(store::RedisStore::new(redis.clone()));
            let chat: store::chat::SharedChatStore =
                Arc::new(store::RedisStore::new(redis.clone()));
            let attachments: store::attachments::SharedAttachmentStore =
                Arc::new(store::RedisStore::new(redis.clone()));
            let seams = rooms::service::Seams {
                store: Arc::new(store::RedisStore::new(redis.clone())),
                router: Arc::new(routing::RedisRouter::new(redis.clone())),
                bus: Arc::new(bus),
                sfus: Arc::new(sfu::GrpcConnector(control.clone())),
            };
            let (people_tx, people_rx) = tokio::sync::mpsc::unbounded_channel();
            let fleet: Arc<dyn people::fleet::PeopleFleet> = Arc::new(
                people::fleet::RedisFleet::start(redis.clone(), node_id.clone(), people_tx).await,
            );
            tracing::info!(node = %node_id, redis = %redis_client::redact(url), "joined the fleet");
            (
                seams,
                people,
                chat,
                attachments,
                fleet,
                Some((rx, people_rx, redis)),
            )
        }
    };
    let people = Arc::new(people::People::new(
        people_store,
        seams.store.clone(),
        fleet,
    ));
    let rooms = rooms::service::RoomService::new(seams, tokens.clone(), config.timeouts);
    let calls = calls::CallService::new(
        people.clone(),
        rooms.clone(),
        config.ice.clone(),
        config.ring_timeout,
    );
    let attachments = attachments::Attachments::open(
        config.attachments.clone(),
        &config.data_dir,
        attachment_store,
    )
    .map_err(SignalingError::Attachments)?;
    if config.redis_url.is_some() && config.attachments.central.is_none() {
        tracing::warn!(
            "in a fleet without --attachment-store, a chat file is served only by the node it \
             was uploaded to; give every node one central store (s3://bucket or file:///folder)"
        );
    }
    tokio::spawn(attachments.clone().sweep(Duration::from_secs(600)));
    let chat = chat::ChatService::new(chat_store, rooms.clone(), attachments.clone());
    let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
    rooms::sfu_events::spawn(rooms.clone(), subscribed_tx);
    tokio::spawn(rooms.clone().reconcile_after_start());
    let redis = match inbound {
        Some((rx, people_rx, redis)) => {
            tokio::spawn(rooms.clone().follow_bus(rx));
            tokio::spawn(calls.clone().follow_fleet(people_rx));
            tokio::spawn(rooms.clone().sweep_orphans(Duration::from_secs(2)));
            Some(redis)
        }
        None => {
            // One SFU: wait until its events are followed, so no early join's event is
            // missed. (A fleet's nodes come and go; each is re-synced when followed.)
            match tokio::time::timeout(Duration::from_secs(10), subscribed).await {
                Ok(Ok(())) => {}
                _ => {
                    return Err(SignalingError::SfuUnreachable {
                        url: config.sfu_url.clone(),
                        reason: "no event stream within 10 s".into(),
                    });
                }
            }
            None
        }
    };

    let api_key = match config.api_key.clone() {
        Some(key) => key,
        None => auth::api_key::load_or_create(&config.data_dir.join("api-key.json"))?,
    };
    let sessions = ws::Sessions::new(config.limits, config.trusted_proxies.clone());
    let state = Arc::new(app::AppState {
        rooms,
        sealer: chorus_proto::session::Sealer::new(tokens.session_secret()),
        media_outlives_stop: config.media_outlives_stop,
        tokens,
        users,
        api_key,
        redis,
        sessions: sessions.clone(),
        people,
        calls,
        chat,
        attachments,
    });
    let app = http::router(state, &config.web_dir);

    let listener =
        std::net::TcpListener::bind(config.listen).map_err(|source| SignalingError::Bind {
            addr: config.listen,
            source,
        })?;
    listener
        .set_nonblocking(true)
        .map_err(|source| SignalingError::Bind {
            addr: config.listen,
            source,
        })?;
    let local_addr = listener
        .local_addr()
        .map_err(|source| SignalingError::Bind {
            addr: config.listen,
            source,
        })?;

    let host_ip = if local_addr.ip().is_unspecified() {
        primary_ip().unwrap_or(local_addr.ip())
    } else {
        local_addr.ip()
    };
    let tls = tls::rustls_config(&config.tls, &config.data_dir, &[host_ip]).await?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let url = format!(
        "{scheme}://{}/",
        SocketAddr::new(host_ip, local_addr.port())
    );

    let server = axum_server::Handle::new();
    let task = serve::spawn(listener, tls, app, &config, server.clone()).map_err(|source| {
        SignalingError::Bind {
            addr: config.listen,
            source,
        }
    })?;
    match &config.redis_url {
        Some(_) => tracing::info!(%url, node = %node_id, "signaling is serving (fleet)"),
        None => tracing::info!(%url, sfu = %config.sfu_url, "signaling is serving"),
    }
    Ok(SignalingHandle {
        local_addr,
        url,
        server,
        task,
        sessions,
        drain_timeout: config.drain_timeout,
    })
}

/// The seams of a node alone: the embedded store on disk (rooms and people in one
/// file), the one SFU at `--sfu`, and nobody else to tell.
async fn local_seams(
    config: &SignalingConfig,
    node: chorus_proto::NodeId,
    control: sfu::grpc::ControlTokens,
) -> Result<
    (
        rooms::service::Seams,
        store::people::SharedPeopleStore,
        store::chat::SharedChatStore,
        store::attachments::SharedAttachmentStore,
    ),
    SignalingError,
> {
    let embedded = store::EmbeddedStore::open(&config.data_dir.join("chorus.redb"))?;
    let people: store::people::SharedPeopleStore = Arc::new(embedded.clone());
    let chat: store::chat::SharedChatStore = Arc::new(embedded.clone());
    let attachments: store::attachments::SharedAttachmentStore = Arc::new(embedded.clone());
    let store: store::SharedStore = Arc::new(embedded);
    let sfu = sfu::grpc::GrpcSfu::connect_lazy(&config.sfu_url, control.clone())?;
    use sfu::SfuControl as _;
    // The SFU's own id names it in metrics and the API; ask it (it may still be starting).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let stats = loop {
        match sfu.node_stats().await {
            Ok(stats) => break stats,
            Err(status) if tokio::time::Instant::now() >= deadline => {
                return Err(SignalingError::SfuUnreachable {
                    url: config.sfu_url.clone(),
                    reason: status.1,
                });
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    let sfu_id = chorus_proto::NodeId::parse(stats.node_id)
        .unwrap_or_else(|_| chorus_proto::NodeId::random());
    let seams = rooms::service::Seams {
        store,
        router: Arc::new(routing::LocalRouter::new(&config.sfu_url, sfu_id)),
        bus: Arc::new(rooms::bus::LocalBus::new(node)),
        sfus: Arc::new(sfu::GrpcConnector(control)),
    };
    Ok((seams, people, chat, attachments))
}

/// Read the room-token signing key from `path`, or make one there (mode 0600) if the
/// file does not exist yet.
pub fn load_or_create_token_key(path: &std::path::Path) -> Result<TokenIssuer, SignalingError> {
    let io = |source| SignalingError::Io {
        path: path.to_owned(),
        source,
    };
    match std::fs::read(path) {
        Ok(pem) => Ok(TokenIssuer::from_pem(&pem)?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(io)?;
            }
            let der = chorus_proto::token::generate_pkcs8()?;
            write_private(path, chorus_proto::token::pkcs8_pem(&der).as_bytes()).map_err(io)?;
            Ok(TokenIssuer::from_pkcs8_der(&der)?)
        }
        Err(e) => Err(io(e)),
    }
}

pub(crate) fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)
}
