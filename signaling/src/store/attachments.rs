//! What the server knows of attachment content (the bytes themselves are in
//! `crate::attachments`' local and central stores): a record per content hash, and which
//! group chats' messages reference it. A fourth trait beside [`super::Store`], implemented
//! by the same two backends.

use std::sync::Arc;

use chorus_proto::attachments::{ContentHash, ImageInfo};
use chorus_proto::{GroupId, UserId};
use serde::{Deserialize, Serialize};

use super::StoreError;

/// A thumbnail of a picture, itself content-addressed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Thumbnail {
    /// The thumbnail's own hash.
    pub hash: ContentHash,
    /// `image/jpeg` or `image/png`.
    #[serde(rename = "type")]
    pub mime: String,
    /// Bytes.
    pub size: u64,
}

/// Content the server holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRecord {
    /// Its SHA-256.
    pub hash: ContentHash,
    /// Bytes.
    pub size: u64,
    /// MIME type, as its first uploader declared it.
    #[serde(rename = "type")]
    pub mime: String,
    /// For a picture the server decoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageInfo>,
    /// The picture's thumbnail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbnail: Option<Thumbnail>,
    /// Who uploaded it first.
    pub first_uploader: UserId,
    /// When it was stored, unix ms.
    pub stored_at_ms: u64,
}

/// Where attachment records live.
#[async_trait::async_trait]
pub trait AttachmentStore: Send + Sync + 'static {
    /// The record of `hash`, if the server holds that content.
    async fn blob(&self, hash: &ContentHash) -> Result<Option<BlobRecord>, StoreError>;
    /// Keep `record` unless there is one for its hash already; the record kept (the first
    /// uploader's). A new record counts as unreferenced from its `stored_at_ms`.
    async fn put_blob(&self, record: BlobRecord) -> Result<BlobRecord, StoreError>;
    /// One more message of `group` references `hash`. `false`, and nothing changed, when
    /// there is no record of `hash`.
    async fn add_ref(&self, group: &GroupId, hash: &ContentHash) -> Result<bool, StoreError>;
    /// One message of `group` referencing `hash` is gone; the references left in every
    /// group together (0: garbage, unreferenced from `now_ms`). A group with none left
    /// changes nothing.
    async fn drop_ref(
        &self,
        group: &GroupId,
        hash: &ContentHash,
        now_ms: u64,
    ) -> Result<u64, StoreError>;
    /// How many messages of `group` reference `hash`.
    async fn refs_in(&self, group: &GroupId, hash: &ContentHash) -> Result<u64, StoreError>;
    /// Forget `hash` if no message references it; `true` when it was forgotten (its
    /// bytes may then go).
    async fn remove_unreferenced(&self, hash: &ContentHash) -> Result<bool, StoreError>;
    /// Content no message has referenced since before `before_ms`.
    async fn unreferenced(&self, before_ms: u64) -> Result<Vec<ContentHash>, StoreError>;
}

/// An attachment store shared by the whole node.
pub type SharedAttachmentStore = Arc<dyn AttachmentStore>;

#[cfg(test)]
pub(crate) mod contract {
    //! What every attachment store must do; each backend's tests call these.
    use super::*;

    fn hash(n: u8) -> ContentHash {
        ContentHash::from_digest(&[n; 32]).unwrap()
    }

    fn record(hash: ContentHash, at: u64) -> BlobRecord {
        BlobRecord {
            hash,
            size: 5,
            mime: "image/png".into(),
            image: Some(ImageInfo {
                width: 2,
                height: 3,
            }),
            thumbnail: None,
            first_uploader: UserId::random(),
            stored_at_ms: at,
        }
    }

    pub async fn records_and_references(store: &dyn AttachmentStore) {
        let (h, other) = (hash(rand::random()), hash(rand::random()));
        let (g1, g2) = (GroupId::random(), GroupId::random());
        assert_eq!(store.blob(&h).await.unwrap(), None);
        assert!(!store.add_ref(&g1, &h).await.unwrap(), "no record, no ref");
        let first = record(h.clone(), 1_000);
        assert_eq!(store.put_blob(first.clone()).await.unwrap(), first);
        let second = record(h.clone(), 2_000);
        assert_eq!(
            store.put_blob(second).await.unwrap(),
            first,
            "the first uploader's record stays"
        );
        assert_eq!(store.blob(&h).await.unwrap(), Some(first.clone()));
        assert!(
            store.unreferenced(1_001).await.unwrap().contains(&h),
            "stored but never posted"
        );
        assert!(!store.unreferenced(999).await.unwrap().contains(&h));

        assert!(store.add_ref(&g1, &h).await.unwrap());
        assert!(store.add_ref(&g1, &h).await.unwrap());
        assert!(store.add_ref(&g2, &h).await.unwrap());
        assert!(!store.unreferenced(u64::MAX).await.unwrap().contains(&h));
        assert_eq!(store.refs_in(&g1, &h).await.unwrap(), 2);
        assert_eq!(store.refs_in(&g2, &h).await.unwrap(), 1);
        assert_eq!(store.refs_in(&g2, &other).await.unwrap(), 0);
        assert!(
            !store.remove_unreferenced(&h).await.unwrap(),
            "still posted"
        );

        assert_eq!(store.drop_ref(&g1, &h, 5_000).await.unwrap(), 2);
        assert_eq!(
            store.drop_ref(&g2, &other, 5_000).await.unwrap(),
            0,
            "nothing to drop"
        );
        assert_eq!(store.drop_ref(&g2, &h, 5_000).await.unwrap(), 1);
        assert_eq!(
            store.drop_ref(&g2, &h, 5_000).await.unwrap(),
            1,
            "g2 has none left: the others' stay"
        );
        assert_eq!(store.refs_in(&g2, &h).await.unwrap(), 0);
        assert_eq!(store.drop_ref(&g1, &h, 6_000).await.unwrap(), 0);
        assert!(store.unreferenced(6_001).await.unwrap().contains(&h));
        assert!(!store.unreferenced(5_999).await.unwrap().contains(&h));

        assert!(store.remove_unreferenced(&h).await.unwrap());
        assert_eq!(store.blob(&h).await.unwrap(), None);
        assert!(!store.unreferenced(u64::MAX).await.unwrap().contains(&h));
        assert!(!store.add_ref(&g1, &h).await.unwrap(), "forgotten");
    }
}
