//! Starting and stopping a node: bind the media sockets and the gRPC listener, start the
//! engine loop thread and the tonic server, and hand back a handle.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chorus_proto::sfu::sfu_control_server::SfuControlServer;
use tokio::sync::{broadcast, oneshot};

use crate::auth::Authenticator;
use crate::config::SfuConfig;
use crate::control::{ControlGate, ControlService, stats_response};
use crate::engine::{Engine, EngineConfig};
use crate::error::SfuError;
use crate::net::{MediaLoop, bind_media};

/// Room events kept for slow watchers before the oldest are dropped.
const EVENT_BUFFER: usize = 4096;

/// A running SFU node. Dropping it leaves the node running until the process ends; call
/// [`SfuHandle::shutdown`] to stop it.
#[must_use = "keep the handle to stop the node with shutdown()"]
pub struct SfuHandle {
    grpc_addr: SocketAddr,
    media: MediaLoop,
    stop_grpc: oneshot::Sender<()>,
    grpc_task: tokio::task::JoinHandle<()>,
    fleet: Option<crate::fleet::Registration>,
    stats: NodeStats,
}

/// Reads the node's counters in-process (its own `/metrics`, its drain), without the
/// control port and its control token. Cheap to clone.
#[derive(Clone)]
pub struct NodeStats {
    node_id: chorus_proto::NodeId,
    commands: tokio::sync::mpsc::Sender<crate::net::Command>,
}

impl NodeStats {
    /// The counters as `NodeStats` reports them; `None` once the node is stopping.
    pub async fn get(&self) -> Option<chorus_proto::sfu::NodeStatsResponse> {
        let (reply, stats) = oneshot::channel();
        self.commands
            .send(crate::net::Command::Stats { reply })
            .await
            .ok()?;
        let stats = stats.await.ok()?;
        Some(stats_response(&self.node_id, &stats))
    }
}

impl SfuHandle {
    /// The node's counters, read in-process.
    pub fn stats(&self) -> NodeStats {
        self.stats.clone()
    }

    /// Where the gRPC server listens.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// The media sockets' announced addresses (ICE host candidates).
    pub fn udp_addrs(&self) -> Vec<SocketAddr> {
        self.media.udp_addrs.clone()
    }

    /// Take no new rooms (in a fleet: the node's record says it drains); rooms here go on.
    pub fn drain(&self) {
        if let Some(fleet) = &self.fleet {
            fleet.drain();
            tracing::info!("draining: no new rooms will be placed on this node");
        }
    }

    /// Leave the fleet (so no new room is placed here), stop the media loop (open Events
    /// streams end with it), then the gRPC server.
    pub async fn shutdown(mut self) {
        if let Some(fleet) = self.fleet.take() {
            fleet.stop().await;
        }
        self.media.shutdown().await;
        let _ = self.stop_grpc.send(());
        // Graceful first; a client holding a call open must not hold shutdown forever.
        if tokio::time::timeout(Duration::from_secs(2), &mut self.grpc_task)
            .await
            .is_err()
        {
            self.grpc_task.abort();
        }
    }
}

/// Start a node; returns once it listens. Call inside a tokio runtime.
pub async fn start(config: SfuConfig) -> Result<SfuHandle, SfuError> {
    let auth = Authenticator::new(&config.token_public_key)?;
    if config.audio_slots == 0 {
        return Err(SfuError::Config("audio_slots must be at least 1".into()));
    }
    let sockets = bind_media(config.udp_listen, &config.public_ips)?;
    let engine = Engine::new(
        EngineConfig {
            local_addrs: sockets.iter().map(|s| s.announced).collect(),
            audio_slots: config.audio_slots,
            connect_timeout: config.connect_timeout,
            max_participants: config.max_participants,
        },
        Instant::now(),
    )?;
    let (events, _) = broadcast::channel(EVENT_BUFFER);
    let weak_events = events.downgrade();
    let media = MediaLoop::spawn(engine, sockets, events)?;

    let listener = tokio::net::TcpListener::bind(config.grpc_listen).await?;
    let grpc_addr = listener.local_addr()?;
    let gate = ControlGate::new(&config.token_public_key)?;
    let stats = NodeStats {
        node_id: config.node_id.clone(),
        commands: media.commands.clone(),
    };
    let service = ControlService {
        node_id: config.node_id.clone(),
        auth,
        commands: media.commands.clone(),
        events: weak_events,
    };
    let (stop_grpc, stopped) = oneshot::channel::<()>();
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    let grpc_task = tokio::spawn(async move {
        let result = tonic::transport::Server::builder()
            .add_service(SfuControlServer::with_interceptor(service, gate))
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stopped.await;
            })
            .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "gRPC server failed");
        }
    });
    tracing::info!(node = %config.node_id, grpc = %grpc_addr, udp = ?media.udp_addrs, "SFU listening");
    let fleet = match &config.fleet {
        Some(fleet) => {
            let grpc_url = match &fleet.advertise_grpc {
                Some(url) => url.clone(),
                None if grpc_addr.ip().is_unspecified() => {
                    return Err(SfuError::Config(
                        "with --redis and a wildcard --grpc address, say where signaling reaches this node: --advertise-grpc http://HOST:PORT".into(),
                    ));
                }
                None => format!("http://{grpc_addr}"),
            };
            let media_addrs = media.udp_addrs.iter().map(ToString::to_string).collect();
            let registration = crate::fleet::register(
                fleet,
                config.node_id.clone(),
                grpc_url.clone(),
                media_addrs,
                u32::try_from(config.max_participants).unwrap_or(u32::MAX),
                media.commands.clone(),
            )
            .await?;
            tracing::info!(node = %config.node_id, %grpc_url, "joined the fleet");
            Some(registration)
        }
        None => None,
    };
    Ok(SfuHandle {
        grpc_addr,
        media,
        stop_grpc,
        grpc_task,
        fleet,
        stats,
    })
}
