//! The listener's defences, below HTTP: a cap on the connections one IP address may hold
//! open, and a deadline for a request's headers (a client that trickles them, or sends
//! nothing at all, is dropped). Body deadlines are the server API's; WebSocket deadlines
//! (hello, ping) the session's.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum_server::accept::Accept;
use axum_server::tls_rustls::RustlsConfig;
use futures_util::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use crate::client_addr::TrustedProxies;
use crate::config::SignalingConfig;

/// The answer to a connection over the cap, on plain HTTP (on HTTPS it is just closed:
/// no TLS has been set up to speak through).
const TOO_MANY: &[u8] = b"HTTP/1.1 429 Too Many Requests\r\n\
content-type: application/json\r\nconnection: close\r\ncontent-length: 87\r\n\r\n\
{\"code\":\"too_many_connections\",\"message\":\"too many open connections from your address\"}";

/// Start serving `app` on `listener` (TLS if `tls`), held to `limits`.
pub fn spawn(
    listener: std::net::TcpListener,
    tls: Option<RustlsConfig>,
    app: Router,
    config: &SignalingConfig,
    handle: axum_server::Handle<SocketAddr>,
) -> io::Result<tokio::task::JoinHandle<()>> {
    let limits = config.limits;
    // The peer address reaches handlers (`ConnectInfo`): sessions count their places by it.
    let service = app.into_make_service_with_connect_info::<SocketAddr>();
    let per_ip = PerIpLimit::new(limits.max_connections_per_ip, tls.is_none())
        .first_byte_within(limits.header_timeout)
        .exempting(config.trusted_proxies.clone());
    let header_timeout = limits.header_timeout;
    Ok(match tls {
        Some(tls) => {
            let mut server = axum_server::from_tcp_rustls(listener, tls)?
                .map(|tls| tls.acceptor(per_ip))
                .handle(handle);
            header_deadline(server.http_builder(), header_timeout);
            tokio::spawn(async move {
                if let Err(e) = server.serve(service).await {
                    tracing::error!(error = %e, "HTTPS server stopped");
                }
            })
        }
        None => {
            let mut server = axum_server::from_tcp(listener)?
                .acceptor(per_ip)
                .handle(handle);
            header_deadline(server.http_builder(), header_timeout);
            tokio::spawn(async move {
                if let Err(e) = server.serve(service).await {
                    tracing::error!(error = %e, "HTTP server stopped");
                }
            })
        }
    })
}

fn header_deadline(
    builder: &mut hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>,
    timeout: Duration,
) {
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(timeout);
}

/// Counts open connections per IP address and refuses those over the cap.
#[derive(Clone)]
struct PerIpLimit {
    max: usize,
    plain: bool,
    /// A connection that sends nothing at all for this long is dropped (hyper's header
    /// deadline starts only with the first byte).
    first_byte: Duration,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
    /// Trusted reverse proxies carry many clients each: not capped here.
    exempt: Arc<TrustedProxies>,
}

impl PerIpLimit {
    fn new(max: usize, plain: bool) -> Self {
        Self {
            max: max.max(1),
            plain,
            first_byte: Duration::from_secs(10),
            open: Arc::default(),
            exempt: Arc::default(),
        }
    }

    fn exempting(mut self, proxies: TrustedProxies) -> Self {
        self.exempt = Arc::new(proxies);
        self
    }

    fn first_byte_within(mut self, within: Duration) -> Self {
        self.first_byte = within;
        self
    }

    /// A place for one more connection from `ip`, or `None` when it holds the most.
    fn admit(&self, ip: IpAddr) -> Option<Place> {
        if self.exempt.trusts(ip) {
            return Some(Place { ip, open: None });
        }
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let n = open.entry(ip).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(Place {
            ip,
            open: Some(self.open.clone()),
        })
    }
}

/// One connection's place in its address's count; given back on drop.
struct Place {
    ip: IpAddr,
    /// The count it is in (`None`: a trusted proxy's, not counted).
    open: Option<Arc<Mutex<HashMap<IpAddr, usize>>>>,
}

impl Drop for Place {
    fn drop(&mut self) {
        let Some(open) = &self.open else {
            return;
        };
        let mut open = open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = open.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

impl<S: Send + 'static> Accept<TcpStream, S> for PerIpLimit {
    type Stream = Counted;
    type Service = S;
    type Future = BoxFuture<'static, io::Result<(Counted, S)>>;

    fn accept(&self, mut stream: TcpStream, service: S) -> Self::Future {
        let place = stream.peer_addr().ok().and_then(|a| self.admit(a.ip()));
        let plain = self.plain;
        let first_byte = self.first_byte;
        Box::pin(async move {
            match place {
                Some(place) => {
                    match tokio::time::timeout(first_byte, stream.peek(&mut [0u8; 1])).await {
                        Ok(Ok(_)) => Ok((
                            Counted {
                                stream,
                                _place: place,
                            },
                            service,
                        )),
                        Ok(Err(e)) => Err(e),
                        Err(_) => Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "the client sent nothing",
                        )),
                    }
                }
                None => {
                    tracing::warn!(
                        peer = ?stream.peer_addr().ok(),
                        "too many connections from one address; refusing one"
                    );
                    if plain {
                        let _ = tokio::time::timeout(
                            Duration::from_secs(1),
                            stream.write_all(TOO_MANY),
                        )
                        .await;
                    }
                    Err(io::Error::other("too many connections from one address"))
                }
            }
        })
    }
}

/// A connection that holds its place in the per-address count while it lives.
pub struct Counted {
    stream: TcpStream,
    _place: Place,
}

impl AsyncRead for Counted {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_counted_per_address_and_given_back() {
        let limit = PerIpLimit::new(2, true);
        let a: IpAddr = [127, 0, 0, 1].into();
        let b: IpAddr = [127, 0, 0, 2].into();
        let first = limit.admit(a);
        let second = limit.admit(a);
        assert!(first.is_some() && second.is_some());
        assert!(limit.admit(a).is_none(), "a third from one address");
        assert!(
            limit.admit(b).is_some(),
            "another address has its own count"
        );
        drop(first);
        assert!(limit.admit(a).is_some(), "a place given back is free again");
    }

    #[test]
    fn a_trusted_proxy_is_not_capped() {
        let proxies = TrustedProxies::parse(&["10.0.0.0/8".into()]).unwrap_or_default();
        let limit = PerIpLimit::new(1, true).exempting(proxies);
        let proxy: IpAddr = [10, 0, 0, 2].into();
        let held: Vec<_> = (0..5).map(|_| limit.admit(proxy)).collect();
        assert!(
            held.iter().all(Option::is_some),
            "a proxy carries many clients"
        );
        let client: IpAddr = [203, 0, 113, 1].into();
        let first = limit.admit(client);
        assert!(first.is_some() && limit.admit(client).is_none());
    }

    #[test]
    fn the_refusal_is_well_formed_http() {
        let text = std::str::from_utf8(TOO_MANY).unwrap_or_default();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or_default();
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{head} / {body:?}"
        );
    }
}
