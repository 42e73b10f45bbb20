//! The signaling crate's error type.

use std::path::PathBuf;

/// What can stop signaling from starting or serving.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignalingError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The TLS certificate or key could not be read, made or used.
    #[error("TLS setup failed: {0}")]
    Tls(String),
    /// A file or folder could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// Which.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The attachment stores could not be opened (`--attachment-*`).
    #[error("attachments: {0}")]
    Attachments(String),
    /// The web client folder is missing.
    #[error("the web client folder {0} has no index.html (set --web-dir)")]
    WebDirMissing(PathBuf),
    /// The SFU's address is not a valid URL.
    #[error("invalid SFU address '{0}'")]
    SfuUrl(String),
    /// The SFU did not answer at start-up.
    #[error("the SFU at {url} cannot be reached: {reason}")]
    SfuUnreachable {
        /// Where.
        url: String,
        /// Why.
        reason: String,
    },
    /// Redis (`--redis`) did not answer at start-up.
    #[error("Redis at {url} cannot be reached: {reason}")]
    RedisUnreachable {
        /// Where (without its password).
        url: String,
        /// Why.
        reason: String,
    },
    /// The room token key is unusable.
    #[error(transparent)]
    Token(#[from] chorus_proto::token::TokenError),
    /// A setting or settings file is unusable.
    #[error("configuration: {0}")]
    Config(String),
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The in-process SFU failed (embedded mode).
    #[error("the embedded SFU failed: {0}")]
    EmbeddedSfu(String),
}
