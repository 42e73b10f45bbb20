//! The I/O shell around the engine: one OS thread running a current-thread tokio runtime
//! that owns the media sockets and the `Engine`. It feeds datagrams, commands (from gRPC,
//! with oneshot replies) and timeouts in, and sends the engine's transmits out. Nothing
//! here is per-packet logged: the engine counts.

use std::future::poll_fn;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket as StdUdpSocket};
use std::task::Poll;
use std::time::{Duration, Instant};

use chorus_proto::token::{Grants, RoomClaims};
use chorus_proto::{ParticipantId, RoomId};
use tokio::io::ReadBuf;
use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::engine::{ClosedRoom, Engine, EngineEvent, EngineStats, Output, ParticipantState};
use crate::error::SfuError;

/// Largest datagram read; WebRTC keeps datagrams under ≈ 1200 bytes.
const RECV_BUF: usize = 2048;
/// Commands waiting for the loop; gRPC handlers wait (async) when it is full.
pub(crate) const COMMAND_QUEUE: usize = 256;
/// Finest timer step of the loop.
const MIN_TIMER_STEP: Duration = Duration::from_millis(1);

/// A request from the control plane to the engine loop.
pub(crate) enum Command {
    Admit {
        claims: RoomClaims,
        offer: String,
        reply: oneshot::Sender<Result<String, SfuError>>,
    },
    UpdateGrants {
        room: RoomId,
        participant: ParticipantId,
        grants: Grants,
        muted: bool,
        reply: oneshot::Sender<Result<(), SfuError>>,
    },
    Remove {
        room: RoomId,
        participant: ParticipantId,
        reply: oneshot::Sender<bool>,
    },
    CloseRoom {
        room: RoomId,
        reply: oneshot::Sender<ClosedRoom>,
    },
    Stats {
        reply: oneshot::Sender<EngineStats>,
    },
    Participants {
        reply: oneshot::Sender<Vec<ParticipantState>>,
    },
    SetRelays {
        room: RoomId,
        peers: Vec<SocketAddr>,
        reply: oneshot::Sender<Result<(), SfuError>>,
    },
    Shutdown,
}

/// A bound media socket and the address announced for it (its ICE host candidate, and
/// the `destination` of every datagram it receives).
pub(crate) struct MediaSocket {
    pub socket: StdUdpSocket,
    pub announced: SocketAddr,
}

/// Bind the media sockets for `listen`.
///
/// - A specific IP: one socket; announced as itself, or as the first public IP (NAT).
/// - Unspecified IP: one socket per announced IP. A public IP that is not local (NAT)
///   gets a wildcard socket and is announced as-is. Without public IPs: 127.0.0.1 plus
///   the host's primary address.
pub(crate) fn bind_media(
    listen: SocketAddr,
    public_ips: &[IpAddr],
) -> Result<Vec<MediaSocket>, SfuError> {
    if !listen.ip().is_unspecified() {
        let socket = StdUdpSocket::bind(listen)?;
        let local = socket.local_addr()?;
        if public_ips.len() > 1 {
            tracing::warn!("one media socket: only the first public IP is announced");
        }
        let announced = public_ips
            .first()
            .map_or(local, |ip| SocketAddr::new(*ip, local.port()));
        return Ok(vec![MediaSocket { socket, announced }]);
    }
    let ips: Vec<IpAddr> = if public_ips.is_empty() {
        let mut ips = vec![IpAddr::V4(Ipv4Addr::LOCALHOST)];
        if let Some(ip) = primary_ip().filter(|ip| !ip.is_loopback()) {
            ips.push(ip);
        }
        ips
    } else {
        public_ips.to_vec()
    };
    let mut sockets = Vec::new();
    for ip in ips {
        let (socket, announced) = match StdUdpSocket::bind(SocketAddr::new(ip, listen.port())) {
            Ok(s) => {
                let local = s.local_addr()?;
                (s, local)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AddrNotAvailable => {
                // Not an address of this host: we are behind NAT. Listen on all
                // interfaces and announce the public address.
                let s = StdUdpSocket::bind(listen)?;
                let port = s.local_addr()?.port();
                (s, SocketAddr::new(ip, port))
            }
            Err(e) => return Err(e.into()),
        };
        sockets.push(MediaSocket { socket, announced });
    }
    Ok(sockets)
}

/// The address this host would use to reach the Internet. `connect` on UDP sends
/// nothing; it only picks a route and a source address.
fn primary_ip() -> Option<IpAddr> {
    let s = StdUdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
    s.connect((Ipv4Addr::new(192, 0, 2, 1), 9)).ok()?;
    s.local_addr().ok().map(|a| a.ip())
}

/// Handle to the running media loop.
pub(crate) struct MediaLoop {
    pub commands: mpsc::Sender<Command>,
    pub udp_addrs: Vec<SocketAddr>,
    done: oneshot::Receiver<()>,
}

impl MediaLoop {
    /// Start the loop thread owning `engine` and `sockets`.
    pub fn spawn(
        engine: Engine,
        sockets: Vec<MediaSocket>,
        events: broadcast::Sender<EngineEvent>,
    ) -> Result<Self, SfuError> {
        let udp_addrs = sockets.iter().map(|s| s.announced).collect();
        for s in &sockets {
            s.socket.set_nonblocking(true)?;
        }
        let (commands, rx) = mpsc::channel(COMMAND_QUEUE);
        let (done_tx, done) = oneshot::channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name("chorus-sfu-media".into())
            .spawn(move || {
                runtime.block_on(async move {
                    match sockets
                        .into_iter()
                        .map(|s| UdpSocket::from_std(s.socket).map(|u| (u, s.announced)))
                        .collect::<Result<Vec<_>, _>>()
                    {
                        Ok(sockets) => run(engine, sockets, rx, events).await,
                        Err(e) => tracing::error!(error = %e, "media sockets unusable"),
                    }
                });
                let _ = done_tx.send(());
            })?;
        Ok(Self {
            commands,
            udp_addrs,
            done,
        })
    }

    /// Stop the loop and wait for its thread to finish.
    pub async fn shutdown(self) {
        let _ = self.commands.send(Command::Shutdown).await;
        let _ = self.done.await;
    }
}

enum Wake {
    Datagram {
        socket: usize,
        len: usize,
        source: SocketAddr,
    },
    Command(Command),
    Timeout,
    Stop,
}

async fn run(
    mut engine: Engine,
    sockets: Vec<(UdpSocket, SocketAddr)>,
    mut commands: mpsc::Receiver<Command>,
    events: broadcast::Sender<EngineEvent>,
) {
    let mut buf = vec![0u8; RECV_BUF];
    let mut last_forced_timeout = Instant::now();
    let sleep = tokio::time::sleep_until(tokio::time::Instant::now());
    tokio::pin!(sleep);
    loop {
        let deadline = loop {
            match engine.poll_output() {
                Output::Transmit(t) => {
                    // Few sockets (one per announced address): a scan beats a map.
                    let sent = sockets
                        .iter()
                        .find(|(_, announced)| *announced == t.source)
                        .map(|(s, _)| s.try_send_to(&t.bytes, t.destination));
                    if !matches!(sent, Some(Ok(_))) {
                        engine.record_send_failure();
                    }
                }
                // No subscriber is fine; a lagging one loses old events, never stalls us.
                Output::Event(e) => drop(events.send(e)),
                Output::Timeout(t) => break t,
            }
        };
        // A deadline already past is served at once, but at most once per millisecond:
        // if a timer keeps reporting "now", the loop must not spin the core.
        let now = Instant::now();
        if deadline <= now {
            if now.saturating_duration_since(last_forced_timeout) >= MIN_TIMER_STEP {
                last_forced_timeout = now;
                engine.handle_timeout(now);
                continue;
            }
            sleep
                .as_mut()
                .reset(tokio::time::Instant::from_std(now + MIN_TIMER_STEP));
        } else {
            sleep
                .as_mut()
                .reset(tokio::time::Instant::from_std(deadline));
        }

        // Commands first (admissions should not wait behind media), then each socket,
        // then the deadline. Recv errors on an unconnected UDP socket are transient
        // (e.g. ICMP reports): skip them.
        let wake = poll_fn(|cx| {
            match commands.poll_recv(cx) {
                Poll::Ready(Some(c)) => return Poll::Ready(Wake::Command(c)),
                Poll::Ready(None) => return Poll::Ready(Wake::Stop),
                Poll::Pending => {}
            }
            for (i, (socket, _)) in sockets.iter().enumerate() {
                let mut rb = ReadBuf::new(&mut buf);
                if let Poll::Ready(Ok(source)) = socket.poll_recv_from(cx, &mut rb) {
                    return Poll::Ready(Wake::Datagram {
                        socket: i,
                        len: rb.filled().len(),
                        source,
                    });
                }
            }
            if sleep.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Wake::Timeout);
            }
            Poll::Pending
        })
        .await;
        let now = Instant::now();
        match wake {
            // Seam for batched receive (recvmmsg, issue #4): feed several datagrams here.
            Wake::Datagram {
                socket,
                len,
                source,
            } => {
                if let (Some((_, destination)), Some(bytes)) = (sockets.get(socket), buf.get(..len))
                {
                    engine.handle_receive(now, source, *destination, bytes);
                }
            }
            Wake::Timeout => engine.handle_timeout(now),
            Wake::Command(Command::Shutdown) | Wake::Stop => break,
            Wake::Command(c) => handle_command(&mut engine, c, now),
        }
    }
    tracing::info!("media loop stopped");
}

fn handle_command(engine: &mut Engine, command: Command, now: Instant) {
    // A dropped reply means the gRPC caller went away; nothing to do about it.
    match command {
        Command::Admit {
            claims,
            offer,
            reply,
        } => {
            let _ = reply.send(engine.admit(claims, &offer, now));
        }
        Command::UpdateGrants {
            room,
            participant,
            grants,
            muted,
            reply,
        } => {
            let _ = reply.send(engine.update_grants(&room, &participant, grants, muted));
        }
        Command::Remove {
            room,
            participant,
            reply,
        } => {
            let _ = reply.send(engine.remove(&room, &participant, now));
        }
        Command::CloseRoom { room, reply } => {
            let _ = reply.send(engine.close_room(&room, now));
        }
        Command::Stats { reply } => {
            let _ = reply.send(engine.stats());
        }
        Command::Participants { reply } => {
            let _ = reply.send(engine.participants());
        }
        Command::SetRelays { room, peers, reply } => {
            let _ = reply.send(engine.set_relays(&room, peers));
        }
        Command::Shutdown => {}
    }
}
