//! Files in the group chats, uploaded once: content is addressed by its SHA-256, a client
//! asks by hash first and uploads only what the server does not hold, in resumable chunks
//! the server hashes as it writes. Two tiers: each node's disk (`local`, the embedded
//! default's only one) and, in a cluster, a central object store behind it (`central`) that
//! every upload is written to and a node fetches what it lacks from. What is known of each
//! hash — size, type, picture, thumbnail, who references it — is in the store
//! (`store::attachments`), shared by the fleet. `docs/protocol.md`, "Attachments".

pub mod central;
pub mod local;
pub mod thumbnail;
pub mod upload;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lc_rs::digest;
use chorus_proto::attachments::{self, Attachment, AttachmentRef, ContentHash};
use chorus_proto::fleet::unix_ms;
use chorus_proto::signal::ErrorCode;
use chorus_proto::{GroupId, UserId};
use futures_util::{Stream, StreamExt};
use tokio::io::AsyncWriteExt;

use crate::rooms::service::{Failure, store_failure};
use crate::store::attachments::{BlobRecord, SharedAttachmentStore, Thumbnail};

use self::central::Central;
use self::local::{Kind, LocalBlobs};
use self::upload::{Announced, BeginError, Uploads};

/// How a node keeps attachments (`--attachment-*` flags).
#[derive(Debug, Clone)]
pub struct AttachmentConfig {
    /// The local tier's folder (`None`: `attachments` in the data folder).
    pub dir: Option<PathBuf>,
    /// The central tier: `s3://bucket[/prefix]` or `file:///folder` (none: the local
    /// tier is all there is).
    pub central: Option<String>,
    /// The S3 endpoint of a store other than AWS (MinIO, Ceph, an emulator).
    pub s3_endpoint: Option<String>,
    /// With a central tier, the most bytes the local tier keeps as a cache.
    pub cache_bytes: u64,
    /// The largest file taken.
    pub max_bytes: u64,
    /// Types taken: `type/subtype`, `type/*` or `*` (all).
    pub types: Vec<String>,
    /// Bytes per upload request.
    pub chunk_bytes: u64,
}

impl Default for AttachmentConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl AttachmentConfig {
    /// The defaults: 100 MB files of any type, in the data folder alone.
    pub fn new() -> Self {
        Self {
            dir: None,
            central: None,
            s3_endpoint: None,
            cache_bytes: 10_000_000_000,
            max_bytes: 100_000_000,
            types: vec!["*".into()],
            chunk_bytes: 4 * 1024 * 1024,
        }
    }

    /// Whether files of type `mime` are taken.
    pub fn takes(&self, mime: &str) -> bool {
        self.types.iter().any(|t| {
            t == "*"
                || t == mime
                || t.strip_suffix("/*")
                    .is_some_and(|kind| mime.split('/').next() == Some(kind))
        })
    }
}

/// Counters for `/metrics`.
#[derive(Default)]
pub struct AttachmentMetrics {
    /// Upload bytes received.
    pub received_bytes: AtomicU64,
    /// Bytes sent to downloaders.
    pub served_bytes: AtomicU64,
    /// Offers answered "known": nothing to upload.
    pub known: AtomicU64,
    /// Uploads verified and stored.
    pub stored: AtomicU64,
    /// Uploads thrown away for a wrong hash.
    pub mismatches: AtomicU64,
    /// Contents fetched from the central store.
    pub central_fetches: AtomicU64,
    /// Contents deleted as garbage.
    pub collected: AtomicU64,
}

/// A refusal, with where an upload stands when that is the point.
#[derive(Debug)]
pub struct Refused {
    /// What went wrong.
    pub code: ErrorCode,
    /// In the user's words.
    pub message: String,
    /// With `UploadOffset`: the bytes the server has.
    pub offset: Option<u64>,
}

impl From<Failure> for Refused {
    fn from((code, message): Failure) -> Self {
        Self {
            code,
            message,
            offset: None,
        }
    }
}

fn refused(code: ErrorCode, message: impl Into<String>) -> Refused {
    Refused {
        code,
        message: message.into(),
        offset: None,
    }
}

/// The answer to an offer or a chunk.
#[derive(Debug)]
pub enum Progress {
    /// The server holds the content: nothing (more) to send.
    Known(BlobRecord),
    /// Send the bytes from here.
    Upload {
        /// Bytes the server has.
        offset: u64,
    },
    /// This upload completed it.
    Stored(BlobRecord),
}

/// Content to send to a downloader.
pub struct Served {
    /// The record of the content asked for (of the picture, for a thumbnail).
    pub record: BlobRecord,
    /// Its file on this node.
    pub file: tokio::fs::File,
    /// Bytes.
    pub size: u64,
    /// The type to send it as.
    pub mime: String,
}

fn not_found() -> Refused {
    refused(
        ErrorCode::AttachmentNotFound,
        "there is no such file in this chat",
    )
}

fn disk(e: impl std::fmt::Display) -> Refused {
    tracing::error!(error = %e, "attachment storage failed");
    refused(
        ErrorCode::Internal,
        "the server could not save or read the file; try again",
    )
}

/// The attachments of this node.
pub struct Attachments {
    config: AttachmentConfig,
    store: SharedAttachmentStore,
    local: LocalBlobs,
    central: Option<Central>,
    uploads: Uploads,
    /// One fetch from the central store per hash at a time.
    fetching: Mutex<HashMap<local::Key, Arc<tokio::sync::Mutex<()>>>>,
    /// Counters.
    pub metrics: AttachmentMetrics,
}

/// Content no message references is collected once it has been so for this long (an
/// upload is stored before the message that posts it).
pub const UNREFERENCED_GRACE: Duration = Duration::from_secs(3600);

impl Attachments {
    /// Attachments kept as `config` says (under `data_dir` unless it names a folder),
    /// their records in `store`.
    pub fn open(
        config: AttachmentConfig,
        data_dir: &std::path::Path,
        store: SharedAttachmentStore,
    ) -> Result<Arc<Self>, String> {
        let dir = config
            .dir
            .clone()
            .unwrap_or_else(|| data_dir.join("attachments"));
        let central = match &config.central {
            Some(url) => Some(Central::open(url, config.s3_endpoint.as_deref())?),
            None => None,
        };
        let cap = central.as_ref().map(|_| config.cache_bytes);
        let local = LocalBlobs::open(&dir, cap).map_err(|e| format!("{}: {e}", dir.display()))?;
        let uploads = Uploads::new(local.partial_dir());
        Ok(Arc::new(Self {
            config,
            store,
            local,
            central,
            uploads,
            fetching: Mutex::default(),
            metrics: AttachmentMetrics::default(),
        }))
    }

    /// Bytes per upload request.
    pub fn chunk_bytes(&self) -> u64 {
        self.config.chunk_bytes
    }

    /// `user`, a member of the group chat, offers content: known already, or to upload
    /// from the offset the server has.
    pub async fn offer(
        &self,
        user: &UserId,
        hash: &ContentHash,
        size: u64,
        mime: &str,
    ) -> Result<Progress, Refused> {
        if size == 0 {
            return Err(refused(ErrorCode::InvalidInput, "the file is empty"));
        }
        if size > self.config.max_bytes {
            return Err(refused(
                ErrorCode::TooLarge,
                format!(
                    "files of at most {} can be sent here; this one is {}",
                    human_bytes(self.config.max_bytes),
                    human_bytes(size)
                ),
            ));
        }
        let mime = attachments::clean_type(mime).ok_or_else(|| {
            refused(
                ErrorCode::InvalidInput,
                "a file's type is a MIME type such as image/png",
            )
        })?;
        if !self.config.takes(&mime) {
            return Err(refused(
                ErrorCode::UnsupportedType,
                format!("files of type {mime} cannot be sent here"),
            ));
        }
        // Known, unless this node cannot serve it: a fleet without a central store, the
        // bytes on another node's disk (then this upload gives this node its own copy).
        let record = self.store.blob(hash).await.map_err(store_failure)?;
        if let Some(record) =
            record.filter(|_| self.central.is_some() || self.local.path(Kind::File, hash).exists())
        {
            if record.size != size {
                return Err(refused(
                    ErrorCode::InvalidInput,
                    "that hash belongs to a file of another size: hash the whole file",
                ));
            }
            self.metrics.known.fetch_add(1, Ordering::Relaxed);
            return Ok(Progress::Known(record));
        }
        let partial = self
            .uploads
            .begin(user, hash, Announced { size, mime })
            .await
            .map_err(|e| match e {
                BeginError::Io(e) => disk(e),
                e => refused(ErrorCode::RateLimited, e.to_string()),
            })?;
        let offset = partial.lock().await.received;
        Ok(Progress::Upload { offset })
    }

    /// Bytes of `user`'s upload of `hash` from `offset`, as `body` streams them (a pause
    /// over `idle` ends the request; what arrived is kept). Completing the upload checks
    /// the hash and stores the content.
    pub async fn write<S, E>(
        &self,
        user: &UserId,
        hash: &ContentHash,
        offset: u64,
        body: S,
        idle: Duration,
    ) -> Result<Progress, Refused>
    where
        S: Stream<Item = Result<bytes::Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let Some(shared) = self.uploads.get(user, hash).await.map_err(disk)? else {
            if let Some(record) = self.store.blob(hash).await.map_err(store_failure)? {
                return Ok(Progress::Known(record));
            }
            return Err(refused(
                ErrorCode::AttachmentNotFound,
                "no upload of this file was started: offer it first (POST)",
            ));
        };
        let mut partial = shared.lock().await;
        if offset != partial.received {
            return Err(Refused {
                code: ErrorCode::UploadOffset,
                message: format!(
                    "the server has {} bytes of this file: send from there",
                    partial.received
                ),
                offset: Some(partial.received),
            });
        }
        let mut file = tokio::fs::OpenOptions::new()
            .append(true)
            .open(&partial.path)
            .await
            .map_err(disk)?;
        let mut body = body;
        let mut cut = None;
        loop {
            let next = match tokio::time::timeout(idle, body.next()).await {
                Ok(next) => next,
                Err(_) => {
                    cut = Some(refused(
                        ErrorCode::Timeout,
                        "the upload stalled; send the rest again",
                    ));
                    break;
                }
            };
            let bytes = match next {
                None => break,
                Some(Ok(bytes)) => bytes,
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "upload body ended early");
                    cut = Some(refused(
                        ErrorCode::InvalidInput,
                        "the upload request was cut off; send the rest again",
                    ));
                    break;
                }
            };
            if partial.received + bytes.len() as u64 > partial.announced.size {
                partial.discard().await;
                drop(partial);
                self.uploads.forget(user, hash);
                return Err(refused(
                    ErrorCode::TooLarge,
                    "more bytes came than the file was announced with; the upload was thrown away",
                ));
            }
            file.write_all(&bytes).await.map_err(disk)?;
            partial.hasher.update(&bytes);
            partial.received += bytes.len() as u64;
            self.metrics
                .received_bytes
                .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        }
        file.flush().await.map_err(disk)?;
        if let Some(cut) = cut {
            return Err(cut);
        }
        if !partial.complete() {
            return Ok(Progress::Upload {
                offset: partial.received,
            });
        }
        file.sync_all().await.map_err(disk)?;
        drop(file);
        let digest = partial.hasher.clone().finish();
        if ContentHash::from_digest(digest.as_ref()).ok().as_ref() != Some(hash) {
            partial.discard().await;
            drop(partial);
            self.uploads.forget(user, hash);
            self.metrics.mismatches.fetch_add(1, Ordering::Relaxed);
            return Err(refused(
                ErrorCode::HashMismatch,
                "the file that arrived does not match its hash (it changed, or was damaged on the way); it was thrown away, send it again",
            ));
        }
        let stored = self.store_upload(user, hash, &partial).await;
        match &stored {
            // Kept whole: a PATCH at its end (no bytes) tries storing it again.
            Err(e) if e.code != ErrorCode::InvalidImage => return stored.map(Progress::Stored),
            Err(_) => partial.discard().await,
            Ok(_) => partial.finished().await,
        }
        drop(partial);
        self.uploads.forget(user, hash);
        stored.map(Progress::Stored)
    }

    /// A complete, verified upload: thumbnail, central copy, local copy, record.
    async fn store_upload(
        &self,
        user: &UserId,
        hash: &ContentHash,
        partial: &upload::Partial,
    ) -> Result<BlobRecord, Refused> {
        let mime = partial.announced.mime.clone();
        let (image, thumbnail) = if thumbnail::is_picture(&mime) {
            let (path, declared) = (partial.path.clone(), mime.clone());
            let made = tokio::task::spawn_blocking(move || thumbnail::make(&path, &declared))
                .await
                .map_err(disk)?
                .map_err(|e| refused(ErrorCode::InvalidImage, e.to_string()))?;
            let thumb_hash = sha256(&made.bytes);
            if let Some(central) = &self.central {
                central
                    .put_bytes(Kind::Thumbnail, hash, made.bytes.clone())
                    .await
                    .map_err(central_down)?;
            }
            self.local
                .write(Kind::Thumbnail, hash, &made.bytes)
                .await
                .map_err(disk)?;
            let thumbnail = Thumbnail {
                hash: thumb_hash,
                mime: made.mime.into(),
                size: made.bytes.len() as u64,
            };
            (Some(made.info), Some(thumbnail))
        } else {
            (None, None)
        };
        if let Some(central) = &self.central {
            central
                .put_file(hash, &partial.path)
                .await
                .map_err(central_down)?;
        }
        self.local
            .adopt(&partial.path, Kind::File, hash)
            .await
            .map_err(disk)?;
        let record = BlobRecord {
            hash: hash.clone(),
            size: partial.announced.size,
            mime,
            image,
            thumbnail,
            first_uploader: user.clone(),
            stored_at_ms: unix_ms(),
        };
        let kept = self.store.put_blob(record).await.map_err(store_failure)?;
        self.metrics.stored.fetch_add(1, Ordering::Relaxed);
        tracing::info!(%hash, size = kept.size, "attachment stored");
        Ok(kept)
    }

    /// A message of `group` posts `posted`: counted as a reference, and described as the
    /// message will carry it.
    pub async fn attach(
        &self,
        group: &GroupId,
        posted: &AttachmentRef,
    ) -> Result<Attachment, Failure> {
        let gone = || {
            (
                ErrorCode::AttachmentNotFound,
                "that file is not on the server (its upload did not finish, or it was deleted); send it again".to_owned(),
            )
        };
        let record = self
            .store
            .blob(&posted.hash)
            .await
            .map_err(store_failure)?
            .ok_or_else(gone)?;
        if !self
            .store
            .add_ref(group, &posted.hash)
            .await
            .map_err(store_failure)?
        {
            return Err(gone());
        }
        Ok(Attachment {
            hash: record.hash,
            name: attachments::clean_name(&posted.name),
            size: record.size,
            mime: record.mime,
            image: record.image,
        })
    }

    /// A message of `group` that posted `hash` is deleted (or was never kept); content no
    /// message references any more is deleted everywhere.
    pub async fn release(&self, group: &GroupId, hash: &ContentHash) {
        match self.store.drop_ref(group, hash, unix_ms()).await {
            Ok(0) => self.collect(hash).await,
            Ok(_) => {}
            Err(e) => tracing::warn!(%hash, error = %e, "could not release an attachment"),
        }
    }

    /// Delete `hash`'s content and thumbnail if no message references it.
    async fn collect(&self, hash: &ContentHash) {
        let record = match self.store.blob(hash).await {
            Ok(Some(record)) => record,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(%hash, error = %e, "could not collect an attachment");
                return;
            }
        };
        match self.store.remove_unreferenced(hash).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                tracing::warn!(%hash, error = %e, "could not collect an attachment");
                return;
            }
        }
        let mut contents = vec![(Kind::File, record.hash.clone())];
        if record.thumbnail.is_some() {
            contents.push((Kind::Thumbnail, record.hash.clone()));
        }
        for (kind, content) in contents {
            self.local.remove(kind, &content).await;
            if let Some(central) = &self.central
                && let Err(e) = central.delete(kind, &content).await
            {
                tracing::warn!(error = %e, "could not delete from the central store");
            }
        }
        self.metrics.collected.fetch_add(1, Ordering::Relaxed);
        tracing::info!(%hash, "attachment deleted: no message posts it any more");
    }

    /// What a member of `group` downloads: `hash`'s content (or its thumbnail), if a
    /// message of that group chat posts it.
    pub async fn open_for(
        &self,
        group: &GroupId,
        hash: &ContentHash,
        thumbnail: bool,
    ) -> Result<Served, Refused> {
        if self
            .store
            .refs_in(group, hash)
            .await
            .map_err(store_failure)?
            == 0
        {
            return Err(not_found());
        }
        let record = self
            .store
            .blob(hash)
            .await
            .map_err(store_failure)?
            .ok_or_else(not_found)?;
        // A thumbnail is kept under its picture's hash, and checked against its own.
        let (kind, expect, mime) = match (thumbnail, &record.thumbnail) {
            (false, _) => (Kind::File, record.hash.clone(), record.mime.clone()),
            (true, Some(t)) => (Kind::Thumbnail, t.hash.clone(), t.mime.clone()),
            (true, None) => {
                return Err(refused(
                    ErrorCode::AttachmentNotFound,
                    "this file is not a picture: it has no thumbnail",
                ));
            }
        };
        let file = self.local_file(kind, hash, &expect).await?;
        let size = file.metadata().await.map_err(disk)?.len();
        Ok(Served {
            record,
            file,
            size,
            mime,
        })
    }

    /// The content of `kind` stored under `hash` on this node's disk, fetched from the
    /// central store if need be (and then checked to hash to `expect`).
    async fn local_file(
        &self,
        kind: Kind,
        hash: &ContentHash,
        expect: &ContentHash,
    ) -> Result<tokio::fs::File, Refused> {
        if self.local.has(kind, hash)
            && let Ok(file) = tokio::fs::File::open(self.local.path(kind, hash)).await
        {
            return Ok(file);
        }
        let Some(central) = &self.central else {
            tracing::error!(%hash, "attachment content missing from the local store");
            return Err(refused(
                ErrorCode::AttachmentNotFound,
                "the file's content is missing on this server",
            ));
        };
        let lock = self
            .fetching
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((kind, hash.clone()))
            .or_default()
            .clone();
        let fetched = async {
            let _one = lock.lock().await;
            if self.local.has(kind, hash)
                && let Ok(file) = tokio::fs::File::open(self.local.path(kind, hash)).await
            {
                return Ok(file);
            }
            let incoming = self.local.incoming(hash);
            if !central
                .fetch(kind, hash, expect, &incoming)
                .await
                .map_err(central_down)?
            {
                tracing::error!(%hash, "attachment content missing from the central store");
                return Err(refused(
                    ErrorCode::AttachmentNotFound,
                    "the file's content is missing on the server",
                ));
            }
            self.metrics.central_fetches.fetch_add(1, Ordering::Relaxed);
            self.local
                .adopt(&incoming, kind, hash)
                .await
                .map_err(disk)?;
            tokio::fs::File::open(self.local.path(kind, hash))
                .await
                .map_err(disk)
        }
        .await;
        self.fetching
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, l| Arc::strong_count(l) > 1);
        fetched
    }

    /// Every `every`: delete content nobody posted within [`UNREFERENCED_GRACE`] of its
    /// upload (or since its last message went), and uploads abandoned half-way.
    pub async fn sweep(self: Arc<Self>, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let before = unix_ms().saturating_sub(UNREFERENCED_GRACE.as_millis() as u64);
            match self.store.unreferenced(before).await {
                Ok(old) => {
                    for hash in old {
                        self.collect(&hash).await;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not list unreferenced attachments"),
            }
            self.uploads.sweep().await;
            self.forget_deleted().await;
        }
    }

    /// In a cluster, content is deleted from the central store and the disk of the node
    /// that saw its last message go; the other nodes drop their copies here: whatever
    /// this disk holds (older than the grace, so never an upload being stored) that the
    /// shared store has no record of any more.
    async fn forget_deleted(&self) {
        if self.central.is_none() {
            return;
        }
        for (kind, hash) in self.local.older_than(UNREFERENCED_GRACE) {
            match self.store.blob(&hash).await {
                Ok(None) => {
                    self.local.remove(kind, &hash).await;
                    tracing::debug!(%hash, "dropped this node's copy of deleted content");
                }
                Ok(Some(_)) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "could not check this node's attachment copies");
                    return;
                }
            }
        }
    }

    /// `/metrics` lines.
    pub fn render_metrics(&self) -> String {
        let m = &self.metrics;
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let counters: [(&str, &str, u64); 7] = [
            (
                "chorus_attachments_received_bytes_total",
                "Attachment upload bytes this node received.",
                load(&m.received_bytes),
            ),
            (
                "chorus_attachments_served_bytes_total",
                "Attachment bytes this node sent to downloaders.",
                load(&m.served_bytes),
            ),
            (
                "chorus_attachments_known_total",
                "Offers of content the server held already (nothing uploaded).",
                load(&m.known),
            ),
            (
                "chorus_attachments_stored_total",
                "Uploads verified and stored.",
                load(&m.stored),
            ),
            (
                "chorus_attachments_hash_mismatches_total",
                "Uploads thrown away because they did not match their hash.",
                load(&m.mismatches),
            ),
            (
                "chorus_attachments_central_fetches_total",
                "Contents this node fetched from the central store.",
                load(&m.central_fetches),
            ),
            (
                "chorus_attachments_collected_total",
                "Contents deleted because no message posts them.",
                load(&m.collected),
            ),
        ];
        let mut text = String::new();
        for (name, help, value) in counters {
            text.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}\n"
            ));
        }
        text.push_str(&format!(
            "# HELP chorus_attachments_local_bytes Attachment bytes on this node's disk.\n# TYPE chorus_attachments_local_bytes gauge\nchorus_attachments_local_bytes {}\n",
            self.local.bytes()
        ));
        text
    }
}

fn central_down(e: central::CentralError) -> Refused {
    tracing::warn!(error = %e, "central attachment store unavailable");
    refused(
        ErrorCode::TemporarilyUnavailable,
        "the server's file storage is temporarily unavailable; try again in a moment",
    )
}

/// The SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> ContentHash {
    let digest = digest::digest(&digest::SHA256, bytes);
    // A SHA-256 digest is always 32 bytes.
    ContentHash::from_digest(digest.as_ref()).unwrap_or_else(|_| unreachable!())
}

/// Bytes in words: "5 MB", "120 KB".
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KB", "MB", "GB", "TB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    match unit {
        0 => format!("{n} bytes"),
        // "5.2 MB", but "8 MB" rather than "8.0 MB".
        _ if value < 10.0 && (value * 10.0).round() % 10.0 != 0.0 => {
            format!("{value:.1} {}", UNITS[unit])
        }
        _ => format!("{value:.0} {}", UNITS[unit]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_in_words() {
        assert_eq!(human_bytes(999), "999 bytes");
        assert_eq!(human_bytes(5_200_000), "5.2 MB");
        assert_eq!(human_bytes(100_000_000), "100 MB");
        assert_eq!(human_bytes(8_000_000), "8 MB");
    }

    #[test]
    fn type_patterns() {
        let mut config = AttachmentConfig::new();
        assert!(config.takes("application/zip"));
        config.types = vec!["image/*".into(), "application/pdf".into()];
        assert!(config.takes("image/png") && config.takes("application/pdf"));
        assert!(!config.takes("application/zip") && !config.takes("imagex/png"));
    }
}
