//! The central tier a cluster shares: every upload is written here too, and a node asked
//! for content it lacks fetches it from here. An S3-compatible bucket (`s3://bucket`,
//! credentials from the usual `AWS_*` variables: AWS S3, MinIO, Ceph, GCS's S3 API) or a
//! folder every node mounts (`file:///srv/chorus-attachments`), through `object_store`.
//! Objects are named `blobs/<sha-256>` (a picture's thumbnail `thumbs/<the picture's
//! sha-256>`); what comes back is hashed again as it is written.

use std::path::Path;
use std::sync::Arc;

use aws_lc_rs::digest;
use chorus_proto::attachments::ContentHash;

use super::local::Kind;
use futures_util::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Uploads larger than this go to the bucket in parts of this size (S3 needs ≥ 5 MiB).
const PART_BYTES: usize = 8 * 1024 * 1024;

/// A central store.
pub struct Central {
    objects: Arc<dyn ObjectStore>,
    /// What the logs and errors call it (no credentials).
    name: String,
}

/// A central store that could not be reached or did not answer as expected.
#[derive(Debug, thiserror::Error)]
#[error("the central attachment store ({store}) failed: {reason}")]
pub struct CentralError {
    store: String,
    reason: String,
}

impl Central {
    /// The store at `url`: `s3://bucket[/prefix]` (with `endpoint` for a store other than
    /// AWS, e.g. `http://127.0.0.1:9000` for MinIO) or `file:///folder`.
    pub fn open(url: &str, endpoint: Option<&str>) -> Result<Self, String> {
        let objects: Arc<dyn ObjectStore> = if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(format!("{url}: name the bucket, as s3://bucket"));
            }
            let mut builder =
                object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
            if let Some(endpoint) = endpoint {
                builder = builder
                    .with_endpoint(endpoint)
                    .with_allow_http(endpoint.starts_with("http://"))
                    .with_virtual_hosted_style_request(false);
            }
            let s3 = builder.build().map_err(|e| format!("{url}: {e}"))?;
            prefixed(Arc::new(s3), prefix)
        } else if let Some(folder) = url.strip_prefix("file://") {
            std::fs::create_dir_all(folder).map_err(|e| format!("{folder}: {e}"))?;
            Arc::new(
                object_store::local::LocalFileSystem::new_with_prefix(folder)
                    .map_err(|e| format!("{url}: {e}"))?,
            )
        } else {
            return Err(format!(
                "{url}: a central attachment store is s3://bucket or file:///folder"
            ));
        };
        Ok(Self {
            objects,
            name: url.to_owned(),
        })
    }

    fn error(&self, e: impl std::fmt::Display) -> CentralError {
        CentralError {
            store: self.name.clone(),
            reason: e.to_string(),
        }
    }

    fn location(kind: Kind, hash: &ContentHash) -> ObjectPath {
        ObjectPath::from(format!("{}/{hash}", kind.folder()))
    }

    /// Write the file at `path` as `hash`'s content (a file as sent).
    pub async fn put_file(&self, hash: &ContentHash, path: &Path) -> Result<(), CentralError> {
        let mut file = tokio::fs::File::open(path)
            .await
            .map_err(|e| self.error(e))?;
        let size = file.metadata().await.map_err(|e| self.error(e))?.len();
        let location = Self::location(Kind::File, hash);
        if size <= PART_BYTES as u64 {
            let mut bytes = Vec::with_capacity(size as usize);
            file.read_to_end(&mut bytes)
                .await
                .map_err(|e| self.error(e))?;
            return self.put_bytes(Kind::File, hash, bytes).await;
        }
        let upload = self
            .objects
            .put_multipart(&location)
            .await
            .map_err(|e| self.error(e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
        let mut buf = vec![0u8; 1024 * 1024];
        loop {
            let n = match file.read(&mut buf).await {
                Ok(n) => n,
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(self.error(e));
                }
            };
            if n == 0 {
                break;
            }
            if let Err(e) = writer.wait_for_capacity(4).await {
                return Err(self.error(e));
            }
            writer.write(&buf[..n]);
        }
        writer.finish().await.map_err(|e| self.error(e))?;
        Ok(())
    }

    /// Write `bytes` as `hash`'s content of `kind`.
    pub async fn put_bytes(
        &self,
        kind: Kind,
        hash: &ContentHash,
        bytes: Vec<u8>,
    ) -> Result<(), CentralError> {
        self.objects
            .put(&Self::location(kind, hash), PutPayload::from(bytes))
            .await
            .map_err(|e| self.error(e))?;
        Ok(())
    }

    /// Fetch the content of `kind` stored under `hash` into a new file at `to`, checking
    /// it hashes to `expect` (`hash` itself for a file). `Ok(false)` when the store does
    /// not have it.
    pub async fn fetch(
        &self,
        kind: Kind,
        hash: &ContentHash,
        expect: &ContentHash,
        to: &Path,
    ) -> Result<bool, CentralError> {
        let location = Self::location(kind, hash);
        let got = match self.objects.get(&location).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(self.error(e)),
        };
        let written = async {
            let mut file = tokio::fs::File::create(to)
                .await
                .map_err(|e| self.error(e))?;
            let mut hasher = digest::Context::new(&digest::SHA256);
            let mut stream = got.into_stream();
            while let Some(bytes) = stream.next().await {
                let bytes = bytes.map_err(|e| self.error(e))?;
                hasher.update(&bytes);
                file.write_all(&bytes).await.map_err(|e| self.error(e))?;
            }
            file.sync_all().await.map_err(|e| self.error(e))?;
            let digest = hasher.finish();
            if ContentHash::from_digest(digest.as_ref()).ok().as_ref() != Some(expect) {
                return Err(self.error(format!("{location} is not the content it should be")));
            }
            Ok(true)
        }
        .await;
        if written.is_err() {
            let _ = tokio::fs::remove_file(to).await;
        }
        written
    }

    /// Delete `hash`'s content of `kind` (gone already is fine).
    pub async fn delete(&self, kind: Kind, hash: &ContentHash) -> Result<(), CentralError> {
        match self.objects.delete(&Self::location(kind, hash)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error(e)),
        }
    }
}

/// `objects` with every name under `prefix` (none when empty).
fn prefixed(objects: Arc<dyn ObjectStore>, prefix: &str) -> Arc<dyn ObjectStore> {
    let prefix = prefix.trim_matches('/');
    if prefix.is_empty() {
        return objects;
    }
    Arc::new(object_store::prefix::PrefixStore::new(objects, prefix))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn sha(bytes: &[u8]) -> ContentHash {
        ContentHash::from_digest(digest::digest(&digest::SHA256, bytes).as_ref()).unwrap()
    }

    /// The folder backend: the same calls an S3 bucket gets (the fleet tests run those
    /// against an S3 server).
    #[tokio::test]
    async fn a_folder_store_round_trips_and_checks_what_it_returns() {
        let dir = std::env::temp_dir().join(format!("chorus-central-{:x}", rand::random::<u64>()));
        let central = Central::open(&format!("file://{}", dir.display()), None).unwrap();
        let big: Vec<u8> = (0..(PART_BYTES + 12_345))
            .map(|i| (i % 251) as u8)
            .collect();
        let hash = sha(&big);
        let file = dir.join("upload");
        std::fs::write(&file, &big).unwrap();
        central.put_file(&hash, &file).await.unwrap();
        let back = dir.join("back");
        assert!(
            central
                .fetch(Kind::File, &hash, &hash, &back)
                .await
                .unwrap()
        );
        assert_eq!(std::fs::read(&back).unwrap(), big);

        let missing = sha(b"nothing");
        assert!(
            !central
                .fetch(Kind::File, &missing, &missing, &dir.join("none"))
                .await
                .unwrap()
        );
        // Content that does not hash to its name is never handed on.
        central
            .put_bytes(Kind::File, &missing, b"something else".to_vec())
            .await
            .unwrap();
        let bad = dir.join("bad");
        assert!(
            central
                .fetch(Kind::File, &missing, &missing, &bad)
                .await
                .is_err()
        );
        assert!(!bad.exists(), "nothing partial is left");

        // A thumbnail with the same bytes is another object.
        central
            .put_bytes(Kind::Thumbnail, &hash, big.clone())
            .await
            .unwrap();
        central.delete(Kind::File, &hash).await.unwrap();
        central.delete(Kind::File, &hash).await.unwrap();
        assert!(
            !central
                .fetch(Kind::File, &hash, &hash, &back)
                .await
                .unwrap()
        );
        assert!(
            central
                .fetch(Kind::Thumbnail, &hash, &hash, &back)
                .await
                .unwrap()
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn urls_name_a_bucket_or_a_folder() {
        assert!(Central::open("s3://", None).is_err());
        assert!(Central::open("ftp://x", None).is_err());
    }
}
