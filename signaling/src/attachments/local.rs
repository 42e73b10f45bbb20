//! The node-local tier: content on disk under its hash (`blobs/ab/abcdef…`, thumbnails in
//! `thumbs/ab/…`), uploads in progress (`partial/`), and files fetched from the central store while they arrive
//! (`incoming/`). Alone, this is all there is and nothing is ever evicted; with a central
//! store behind it, it is a cache held under a size cap, the least recently used content
//! going first.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chorus_proto::attachments::ContentHash;

/// What a stored content is: a file as it was sent, or a picture's thumbnail, kept under
/// the picture's hash (here and in the central store): it lives and goes with the picture,
/// and a file whose bytes equal some thumbnail (one saved and sent again) is another
/// content.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// A file as sent.
    File,
    /// A picture's thumbnail.
    Thumbnail,
}

impl Kind {
    /// The folder (and object name prefix) of this kind.
    pub fn folder(self) -> &'static str {
        match self {
            Kind::File => "blobs",
            Kind::Thumbnail => "thumbs",
        }
    }
}

/// A content as stored: its kind and hash.
pub type Key = (Kind, ContentHash);

/// Content on this node's disk.
pub struct LocalBlobs {
    root: PathBuf,
    /// With a central store: the most bytes kept here.
    cap: Option<u64>,
    lru: Mutex<Lru>,
}

#[derive(Default)]
struct Lru {
    /// content → (bytes, last use).
    entries: HashMap<Key, (u64, u64)>,
    bytes: u64,
    clock: u64,
}

impl LocalBlobs {
    /// The store in `root` (made if missing); `cap` bytes at most when it is a cache.
    pub fn open(root: &Path, cap: Option<u64>) -> io::Result<Self> {
        for dir in ["blobs", "thumbs", "partial", "incoming"] {
            std::fs::create_dir_all(root.join(dir))?;
        }
        // A fetch cut off by a stop left half a file: never served, so drop it.
        for entry in std::fs::read_dir(root.join("incoming"))?.flatten() {
            let _ = std::fs::remove_file(entry.path());
        }
        let mut lru = Lru::default();
        for kind in [Kind::File, Kind::Thumbnail] {
            for shard in std::fs::read_dir(root.join(kind.folder()))?.flatten() {
                let Ok(files) = std::fs::read_dir(shard.path()) else {
                    continue;
                };
                for file in files.flatten() {
                    let name = file.file_name();
                    let (Some(hash), Ok(meta)) = (
                        name.to_str().and_then(|n| ContentHash::parse(n).ok()),
                        file.metadata(),
                    ) else {
                        continue;
                    };
                    lru.clock += 1;
                    lru.bytes += meta.len();
                    let tick = lru.clock;
                    lru.entries.insert((kind, hash), (meta.len(), tick));
                }
            }
        }
        Ok(Self {
            root: root.to_owned(),
            cap,
            lru: Mutex::new(lru),
        })
    }

    fn lru(&self) -> std::sync::MutexGuard<'_, Lru> {
        self.lru.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Where `hash`'s content of `kind` is (or would be).
    pub fn path(&self, kind: Kind, hash: &ContentHash) -> PathBuf {
        let hex = hash.as_str();
        self.root.join(kind.folder()).join(&hex[..2]).join(hex)
    }

    /// The folder of uploads in progress.
    pub fn partial_dir(&self) -> PathBuf {
        self.root.join("partial")
    }

    /// A fresh file name for content arriving from the central store.
    pub fn incoming(&self, hash: &ContentHash) -> PathBuf {
        self.root
            .join("incoming")
            .join(format!("{hash}.{:016x}", rand::random::<u64>()))
    }

    /// Whether `hash`'s content of `kind` is here; counts as a use.
    pub fn has(&self, kind: Kind, hash: &ContentHash) -> bool {
        let mut lru = self.lru();
        lru.clock += 1;
        let tick = lru.clock;
        match lru.entries.get_mut(&(kind, hash.clone())) {
            Some(entry) => {
                entry.1 = tick;
                true
            }
            None => false,
        }
    }

    /// Bytes held here.
    pub fn bytes(&self) -> u64 {
        self.lru().bytes
    }

    /// Move the verified file at `from` into place as `hash`'s content of `kind`, then
    /// keep under the cap (never evicting what was just added).
    pub async fn adopt(&self, from: &Path, kind: Kind, hash: &ContentHash) -> io::Result<()> {
        let key = (kind, hash.clone());
        let to = self.path(kind, hash);
        if let Some(dir) = to.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        let size = tokio::fs::metadata(from).await?.len();
        tokio::fs::rename(from, &to).await?;
        let evict = {
            let mut lru = self.lru();
            lru.clock += 1;
            let tick = lru.clock;
            if let Some((old, _)) = lru.entries.insert(key.clone(), (size, tick)) {
                lru.bytes -= old;
            }
            lru.bytes += size;
            self.over_cap(&mut lru, &key)
        };
        for (kind, old) in evict {
            let _ = tokio::fs::remove_file(self.path(kind, &old)).await;
            tracing::debug!(hash = %old, "evicted from the local attachment cache");
        }
        Ok(())
    }

    /// Write `bytes` as `hash`'s content of `kind` (a thumbnail: small).
    pub async fn write(&self, kind: Kind, hash: &ContentHash, bytes: &[u8]) -> io::Result<()> {
        let tmp = self.incoming(hash);
        tokio::fs::write(&tmp, bytes).await?;
        self.adopt(&tmp, kind, hash).await
    }

    /// The least recently used entries to drop until `lru` is under the cap.
    fn over_cap(&self, lru: &mut Lru, keep: &Key) -> Vec<Key> {
        let Some(cap) = self.cap else {
            return Vec::new();
        };
        let mut gone = Vec::new();
        if lru.bytes <= cap {
            return gone;
        }
        let mut by_age: Vec<(u64, Key, u64)> = lru
            .entries
            .iter()
            .filter(|(h, _)| *h != keep)
            .map(|(h, (size, tick))| (*tick, h.clone(), *size))
            .collect();
        by_age.sort_unstable();
        for (_, hash, size) in by_age {
            if lru.bytes <= cap {
                break;
            }
            lru.entries.remove(&hash);
            lru.bytes -= size;
            gone.push(hash);
        }
        gone
    }

    /// What this disk holds that was put here more than `age` ago.
    pub fn older_than(&self, age: std::time::Duration) -> Vec<Key> {
        let keys: Vec<Key> = self.lru().entries.keys().cloned().collect();
        keys.into_iter()
            .filter(|(kind, hash)| {
                std::fs::metadata(self.path(*kind, hash))
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|elapsed| elapsed > age)
            })
            .collect()
    }

    /// Drop `hash`'s content of `kind` from this node.
    pub async fn remove(&self, kind: Kind, hash: &ContentHash) {
        {
            let mut lru = self.lru();
            if let Some((size, _)) = lru.entries.remove(&(kind, hash.clone())) {
                lru.bytes = lru.bytes.saturating_sub(size);
            }
        }
        match tokio::fs::remove_file(self.path(kind, hash)).await {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(%hash, error = %e, "could not delete attachment content"),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn hash(n: u8) -> ContentHash {
        ContentHash::from_digest(&[n; 32]).unwrap()
    }

    #[tokio::test]
    async fn a_cache_keeps_the_recently_used_under_its_cap() {
        let root = std::env::temp_dir().join(format!("chorus-local-{:x}", rand::random::<u64>()));
        let local = LocalBlobs::open(&root, Some(250)).unwrap();
        const F: Kind = Kind::File;
        for n in 1..=2 {
            local.write(F, &hash(n), &[n; 100]).await.unwrap();
        }
        assert!(local.has(F, &hash(1)), "1 used after 2");
        local.write(F, &hash(3), &[3; 100]).await.unwrap();
        assert!(
            !local.path(F, &hash(2)).exists(),
            "2 was least recently used"
        );
        assert!(local.has(F, &hash(1)) && local.has(F, &hash(3)) && !local.has(F, &hash(2)));
        assert_eq!(local.bytes(), 200);
        drop(local);
        let again = LocalBlobs::open(&root, None).unwrap();
        assert_eq!(again.bytes(), 200, "found again on disk");
        // The same bytes as a file and as a thumbnail are two contents.
        again
            .write(Kind::Thumbnail, &hash(1), &[1; 100])
            .await
            .unwrap();
        again.remove(F, &hash(1)).await;
        assert!(!again.has(F, &hash(1)) && again.bytes() == 200);
        assert!(again.has(Kind::Thumbnail, &hash(1)));
        assert!(again.path(Kind::Thumbnail, &hash(1)).exists());
        let _ = std::fs::remove_dir_all(root);
    }
}
