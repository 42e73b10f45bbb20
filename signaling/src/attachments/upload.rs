//! Uploads in progress: one file per uploader and content hash under `partial/`, with a
//! sidecar saying what was announced, and the running SHA-256 of what has arrived. An
//! upload cut off — by the network, or by a restart of the node — goes on from the bytes
//! on disk (after a restart they are hashed again once).

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_lc_rs::digest;
use chorus_proto::UserId;
use chorus_proto::attachments::ContentHash;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;

/// Uploads one user may have going at once.
pub const PER_USER: usize = 4;
/// Uploads a node has going at once.
pub const PER_NODE: usize = 1_000;
/// An upload untouched this long is thrown away.
pub const ABANDONED_AFTER: Duration = Duration::from_secs(24 * 3600);

/// What the upload announced (kept beside its bytes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announced {
    /// Bytes to come in all.
    pub size: u64,
    /// Declared MIME type.
    #[serde(rename = "type")]
    pub mime: String,
}

/// One upload in progress.
pub struct Partial {
    /// What was announced.
    pub announced: Announced,
    /// Bytes arrived (and on disk).
    pub received: u64,
    /// The SHA-256 of those bytes so far.
    pub hasher: digest::Context,
    /// Its bytes.
    pub path: PathBuf,
    sidecar: PathBuf,
}

impl Partial {
    /// Throw the upload away (its bytes and its sidecar).
    pub async fn discard(&self) {
        let _ = tokio::fs::remove_file(&self.path).await;
        let _ = tokio::fs::remove_file(&self.sidecar).await;
    }

    /// The bytes have moved into the store: only the sidecar is left to remove.
    pub async fn finished(&self) {
        let _ = tokio::fs::remove_file(&self.sidecar).await;
    }

    /// Whether every announced byte has arrived.
    pub fn complete(&self) -> bool {
        self.received == self.announced.size
    }
}

type Key = (UserId, ContentHash);
/// An upload, taken by one request at a time.
pub type Shared = Arc<tokio::sync::Mutex<Partial>>;

/// The uploads of this node.
pub struct Uploads {
    dir: PathBuf,
    open: Mutex<HashMap<Key, Shared>>,
}

/// Why an upload cannot start.
#[derive(Debug, thiserror::Error)]
pub enum BeginError {
    /// Too many at once.
    #[error("you have {PER_USER} uploads going already; wait for one to finish")]
    TooManyOfYours,
    /// Too many on this node.
    #[error("the server is taking too many uploads at once; try again in a moment")]
    TooMany,
    /// The disk.
    #[error("the upload could not be saved: {0}")]
    Io(#[from] io::Error),
}

impl Uploads {
    /// Uploads kept in `dir`.
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            open: Mutex::default(),
        }
    }

    fn open(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Shared>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn paths(&self, user: &UserId, hash: &ContentHash) -> (PathBuf, PathBuf) {
        let base = format!("{user}.{hash}");
        (self.dir.join(&base), self.dir.join(format!("{base}.json")))
    }

    /// `user`'s upload of `hash`, if one is going (here, or on disk from before a restart).
    pub async fn get(&self, user: &UserId, hash: &ContentHash) -> io::Result<Option<Shared>> {
        let key = (user.clone(), hash.clone());
        if let Some(open) = self.open().get(&key) {
            return Ok(Some(open.clone()));
        }
        let (path, sidecar) = self.paths(user, hash);
        let Ok(json) = tokio::fs::read(&sidecar).await else {
            return Ok(None);
        };
        let Ok(announced) = serde_json::from_slice::<Announced>(&json) else {
            let _ = tokio::fs::remove_file(&sidecar).await;
            let _ = tokio::fs::remove_file(&path).await;
            return Ok(None);
        };
        // Hash again what arrived before the restart.
        let mut hasher = digest::Context::new(&digest::SHA256);
        let mut received = 0u64;
        match tokio::fs::File::open(&path).await {
            Ok(mut file) => {
                let mut buf = vec![0u8; 1024 * 1024];
                loop {
                    let n = file.read(&mut buf).await?;
                    if n == 0 {
                        break;
                    }
                    hasher.update(&buf[..n]);
                    received += n as u64;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                tokio::fs::File::create(&path).await?;
            }
            Err(e) => return Err(e),
        }
        if received > announced.size {
            let _ = tokio::fs::remove_file(&sidecar).await;
            let _ = tokio::fs::remove_file(&path).await;
            return Ok(None);
        }
        let partial = Arc::new(tokio::sync::Mutex::new(Partial {
            announced,
            received,
            hasher,
            path,
            sidecar,
        }));
        Ok(Some(self.open().entry(key).or_insert(partial).clone()))
    }

    /// `user` uploads `hash` as announced: the upload going on (from where it got to), or
    /// a new one. An upload announced with another size starts again.
    pub async fn begin(
        &self,
        user: &UserId,
        hash: &ContentHash,
        announced: Announced,
    ) -> Result<Shared, BeginError> {
        if let Some(going) = self.get(user, hash).await? {
            let mut partial = going.lock().await;
            if partial.announced.size == announced.size {
                partial.announced.mime = announced.mime;
                drop(partial);
                return Ok(going);
            }
            partial.discard().await;
            drop(partial);
            self.forget(user, hash);
        }
        {
            let open = self.open();
            if open.len() >= PER_NODE {
                return Err(BeginError::TooMany);
            }
            if open.keys().filter(|(u, _)| u == user).count() >= PER_USER {
                return Err(BeginError::TooManyOfYours);
            }
        }
        let (path, sidecar) = self.paths(user, hash);
        tokio::fs::File::create(&path).await?;
        let json = serde_json::to_vec(&announced).map_err(io::Error::other)?;
        tokio::fs::write(&sidecar, json).await?;
        let partial = Arc::new(tokio::sync::Mutex::new(Partial {
            announced,
            received: 0,
            hasher: digest::Context::new(&digest::SHA256),
            path,
            sidecar,
        }));
        Ok(self
            .open()
            .entry((user.clone(), hash.clone()))
            .or_insert(partial)
            .clone())
    }

    /// The upload is over (stored, or thrown away).
    pub fn forget(&self, user: &UserId, hash: &ContentHash) {
        self.open().remove(&(user.clone(), hash.clone()));
    }

    /// Throw away uploads untouched for [`ABANDONED_AFTER`].
    pub async fn sweep(&self) {
        let Ok(mut entries) = tokio::fs::read_dir(&self.dir).await else {
            return;
        };
        let now = SystemTime::now();
        while let Ok(Some(entry)) = entries.next_entry().await {
            let old = entry
                .metadata()
                .await
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|age| age > ABANDONED_AFTER);
            if !old {
                continue;
            }
            if let Some((user, hash)) = parse_name(&entry.path()) {
                self.forget(&user, &hash);
            }
            let _ = tokio::fs::remove_file(entry.path()).await;
        }
    }
}

/// The uploader and hash a partial file is named by.
fn parse_name(path: &Path) -> Option<(UserId, ContentHash)> {
    let name = path.file_name()?.to_str()?;
    let name = name.strip_suffix(".json").unwrap_or(name);
    let (user, hash) = name.split_once('.')?;
    Some((UserId::parse(user).ok()?, ContentHash::parse(hash).ok()?))
}
