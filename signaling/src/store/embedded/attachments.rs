//! Attachment records in the embedded store's redb file: the record per content hash, the
//! references in all and per group chat, and since when unreferenced content has been so.

use chorus_proto::GroupId;
use chorus_proto::attachments::ContentHash;
use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use super::{EmbeddedStore, backend};
use crate::store::StoreError;
use crate::store::attachments::{AttachmentStore, BlobRecord};

/// hash → record, as JSON.
pub(super) const BLOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("blobs");
/// hash → messages referencing it (absent: none).
pub(super) const REFS: TableDefinition<&str, u64> = TableDefinition::new("blob_refs");
/// (group, hash) → messages of that group chat referencing it.
pub(super) const GROUP_REFS: TableDefinition<(&str, &str), u64> =
    TableDefinition::new("group_blob_refs");
/// hash → unix ms since when nothing references it.
pub(super) const UNREFERENCED: TableDefinition<&str, u64> =
    TableDefinition::new("blobs_unreferenced");

fn corrupt(e: serde_json::Error) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

fn read_record(bytes: &[u8]) -> Result<BlobRecord, StoreError> {
    serde_json::from_slice(bytes).map_err(corrupt)
}

#[async_trait::async_trait]
impl AttachmentStore for EmbeddedStore {
    async fn blob(&self, hash: &ContentHash) -> Result<Option<BlobRecord>, StoreError> {
        let hash = hash.clone();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let blobs = txn.open_table(BLOBS).map_err(backend)?;
            let value = blobs.get(hash.as_str()).map_err(backend)?;
            value.map(|v| read_record(v.value())).transpose()
        })
        .await?
    }

    async fn put_blob(&self, record: BlobRecord) -> Result<BlobRecord, StoreError> {
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(backend)?;
            let kept = {
                let mut blobs = txn.open_table(BLOBS).map_err(backend)?;
                let existing = blobs
                    .get(record.hash.as_str())
                    .map_err(backend)?
                    .map(|v| read_record(v.value()))
                    .transpose()?;
                match existing {
                    Some(existing) => existing,
                    None => {
                        let bytes = serde_json::to_vec(&record).map_err(corrupt)?;
                        blobs
                            .insert(record.hash.as_str(), bytes.as_slice())
                            .map_err(backend)?;
                        let mut unreferenced = txn.open_table(UNREFERENCED).map_err(backend)?;
                        unreferenced
                            .insert(record.hash.as_str(), record.stored_at_ms)
                            .map_err(backend)?;
                        record
                    }
                }
            };
            txn.commit().map_err(backend)?;
            Ok(kept)
        })
        .await?
    }

    async fn add_ref(&self, group: &GroupId, hash: &ContentHash) -> Result<bool, StoreError> {
        let (group, hash) = (group.clone(), hash.clone());
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(backend)?;
            {
                let blobs = txn.open_table(BLOBS).map_err(backend)?;
                if blobs.get(hash.as_str()).map_err(backend)?.is_none() {
                    return Ok(false);
                }
                let mut refs = txn.open_table(REFS).map_err(backend)?;
                let all = refs
                    .get(hash.as_str())
                    .map_err(backend)?
                    .map_or(0, |v| v.value());
                refs.insert(hash.as_str(), all + 1).map_err(backend)?;
                let mut group_refs = txn.open_table(GROUP_REFS).map_err(backend)?;
                let key = (group.as_str(), hash.as_str());
                let here = group_refs
                    .get(key)
                    .map_err(backend)?
                    .map_or(0, |v| v.value());
                group_refs.insert(key, here + 1).map_err(backend)?;
                let mut unreferenced = txn.open_table(UNREFERENCED).map_err(backend)?;
                unreferenced.remove(hash.as_str()).map_err(backend)?;
            }
            txn.commit().map_err(backend)?;
            Ok(true)
        })
        .await?
    }

    async fn drop_ref(
        &self,
        group: &GroupId,
        hash: &ContentHash,
        now_ms: u64,
    ) -> Result<u64, StoreError> {
        let (group, hash) = (group.clone(), hash.clone());
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(backend)?;
            let left = {
                let mut refs = txn.open_table(REFS).map_err(backend)?;
                let all = refs
                    .get(hash.as_str())
                    .map_err(backend)?
                    .map_or(0, |v| v.value());
                let mut group_refs = txn.open_table(GROUP_REFS).map_err(backend)?;
                let key = (group.as_str(), hash.as_str());
                let here = group_refs
                    .get(key)
                    .map_err(backend)?
                    .map_or(0, |v| v.value());
                if here == 0 {
                    return Ok(all);
                }
                match here - 1 {
                    0 => group_refs.remove(key).map_err(backend).map(drop)?,
                    n => group_refs.insert(key, n).map_err(backend).map(drop)?,
                }
                let left = all.saturating_sub(1);
                if left == 0 {
                    refs.remove(hash.as_str()).map_err(backend)?;
                    let mut unreferenced = txn.open_table(UNREFERENCED).map_err(backend)?;
                    unreferenced
                        .insert(hash.as_str(), now_ms)
                        .map_err(backend)?;
                } else {
                    refs.insert(hash.as_str(), left).map_err(backend)?;
                }
                left
            };
            txn.commit().map_err(backend)?;
            Ok(left)
        })
        .await?
    }

    async fn refs_in(&self, group: &GroupId, hash: &ContentHash) -> Result<u64, StoreError> {
        let (group, hash) = (group.clone(), hash.clone());
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let group_refs = txn.open_table(GROUP_REFS).map_err(backend)?;
            Ok(group_refs
                .get((group.as_str(), hash.as_str()))
                .map_err(backend)?
                .map_or(0, |v| v.value()))
        })
        .await?
    }

    async fn remove_unreferenced(&self, hash: &ContentHash) -> Result<bool, StoreError> {
        let hash = hash.clone();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(backend)?;
            {
                let refs = txn.open_table(REFS).map_err(backend)?;
                if refs
                    .get(hash.as_str())
                    .map_err(backend)?
                    .is_some_and(|v| v.value() > 0)
                {
                    return Ok(false);
                }
                let mut blobs = txn.open_table(BLOBS).map_err(backend)?;
                if blobs.remove(hash.as_str()).map_err(backend)?.is_none() {
                    return Ok(false);
                }
                let mut unreferenced = txn.open_table(UNREFERENCED).map_err(backend)?;
                unreferenced.remove(hash.as_str()).map_err(backend)?;
            }
            txn.commit().map_err(backend)?;
            Ok(true)
        })
        .await?
    }

    async fn unreferenced(&self, before_ms: u64) -> Result<Vec<ContentHash>, StoreError> {
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let unreferenced = txn.open_table(UNREFERENCED).map_err(backend)?;
            let mut old = Vec::new();
            for row in unreferenced.iter().map_err(backend)? {
                let (hash, since) = row.map_err(backend)?;
                if since.value() < before_ms
                    && let Ok(hash) = ContentHash::parse(hash.value())
                {
                    old.push(hash);
                }
            }
            Ok(old)
        })
        .await?
    }
}
