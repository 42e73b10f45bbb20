//! The fleet's Redis, as one node uses it: a multiplexed connection that reconnects by
//! itself with back-off, commands bounded by a response timeout (so that a Redis outage
//! turns into a clear "temporarily unavailable", never a hang), and counters for
//! `/metrics` (commands, errors, latency).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, FromRedisValue, RedisError};

use crate::error::SignalingError;

/// How long one command may take before it fails.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Counters of this node's Redis traffic.
#[derive(Debug, Default)]
pub struct RedisMetrics {
    /// Commands (and scripts, pipelines) sent.
    pub commands: AtomicU64,
    /// Of which failed (connection, timeout, server error).
    pub errors: AtomicU64,
    /// Total time waited for replies, in microseconds.
    pub latency_us: AtomicU64,
}

/// A node's handle on Redis. Cheap to clone.
#[derive(Clone)]
pub struct Redis {
    client: Client,
    conn: ConnectionManager,
    metrics: Arc<RedisMetrics>,
    url: String,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis")
            .field("url", &redact(&self.url))
            .finish()
    }
}

/// `redis://user:secret@host` without the secret, for logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

impl Redis {
    /// Connect to `url` (`redis://`, `rediss://` for TLS; a password in the URL works).
    /// Fails when the first connection cannot be made: a node should not start against
    /// a Redis it cannot reach. Later outages are retried by themselves.
    pub async fn connect(url: &str) -> Result<Self, SignalingError> {
        let unreachable = |e: RedisError| SignalingError::RedisUnreachable {
            url: redact(url),
            reason: e.to_string(),
        };
        if url.starts_with("rediss://") {
            // rustls takes the process-wide provider; aws-lc-rs is the tree's only one.
            let _ = rustls_provider_install();
        }
        let client = Client::open(url).map_err(unreachable)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_secs(2))
            .set_number_of_retries(6);
        let conn = ConnectionManager::new_with_config(client.clone(), config)
            .await
            .map_err(unreachable)?;
        Ok(Self {
            client,
            conn,
            metrics: Arc::default(),
            url: url.to_owned(),
        })
    }

    /// A connection to send commands on (multiplexed: clones share one socket).
    pub fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// A dedicated connection for subscriptions.
    pub async fn pubsub(&self) -> Result<redis::aio::PubSub, RedisError> {
        self.client.get_async_pubsub().await
    }

    /// This node's counters.
    pub fn metrics(&self) -> &RedisMetrics {
        &self.metrics
    }

    /// Run one command, counted and timed.
    pub async fn query<T: FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, RedisError> {
        let mut conn = self.conn();
        self.timed(cmd.query_async(&mut conn)).await
    }

    /// Run one pipeline (MULTI/EXEC when `atomic()`), counted and timed.
    pub async fn pipe<T: FromRedisValue>(&self, pipe: &redis::Pipeline) -> Result<T, RedisError> {
        let mut conn = self.conn();
        self.timed(pipe.query_async(&mut conn)).await
    }

    /// Count and time any Redis future.
    pub async fn timed<T>(
        &self,
        work: impl Future<Output = Result<T, RedisError>>,
    ) -> Result<T, RedisError> {
        let started = Instant::now();
        let result = work.await;
        let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.metrics.commands.fetch_add(1, Ordering::Relaxed);
        self.metrics.latency_us.fetch_add(us, Ordering::Relaxed);
        if result.is_err() {
            self.metrics.errors.fetch_add(1, Ordering::Relaxed);
        }
        result
    }
}

fn rustls_provider_install() -> Result<(), ()> {
    rustls::crypto::aws_lc_rs::default_provider()
        .install_default()
        .map_err(|_| ())
}
