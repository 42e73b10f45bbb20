//! Attachment records in the fleet's Redis (key names in `chorus_proto::fleet::keys`): a
//! JSON string per content hash, the references in one hash for all group chats and one
//! per group chat, and a sorted set of unreferenced content by since when. Each change is
//! one Lua script, so that nodes posting and deleting at once never lose a count.

use std::sync::LazyLock;

use chorus_proto::GroupId;
use chorus_proto::attachments::ContentHash;
use chorus_proto::fleet::keys;
use redis::Script;

use super::{RedisStore, backend};
use crate::store::StoreError;
use crate::store::attachments::{AttachmentStore, BlobRecord};

/// KEYS[1] record, KEYS[2] unreferenced; ARGV[1] JSON, ARGV[2] stored at, ARGV[3] hash.
/// The record kept.
static PUT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        if redis.call('SET', KEYS[1], ARGV[1], 'NX') then
            redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
            return ARGV[1]
        end
        return redis.call('GET', KEYS[1])",
    )
});

/// KEYS[1] record, KEYS[2] all refs, KEYS[3] group refs, KEYS[4] unreferenced; ARGV[1]
/// hash. 1 when counted, 0 when there is no record.
static ADD_REF: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
        redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
        redis.call('HINCRBY', KEYS[3], ARGV[1], 1)
        redis.call('ZREM', KEYS[4], ARGV[1])
        return 1",
    )
});

/// KEYS[1] all refs, KEYS[2] group refs, KEYS[3] unreferenced; ARGV[1] hash, ARGV[2] now.
/// The references left in all group chats.
static DROP_REF: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        local all = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
        local here = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
        if here <= 0 then return all end
        if here == 1 then
            redis.call('HDEL', KEYS[2], ARGV[1])
        else
            redis.call('HSET', KEYS[2], ARGV[1], here - 1)
        end
        all = all - 1
        if all <= 0 then
            redis.call('HDEL', KEYS[1], ARGV[1])
            redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
            return 0
        end
        redis.call('HSET', KEYS[1], ARGV[1], all)
        return all",
    )
});

/// KEYS[1] record, KEYS[2] all refs, KEYS[3] unreferenced; ARGV[1] hash. 1 when
/// forgotten.
static REMOVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        if tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0') > 0 then return 0 end
        local gone = redis.call('DEL', KEYS[1])
        redis.call('ZREM', KEYS[3], ARGV[1])
        return gone",
    )
});

fn corrupt(e: serde_json::Error) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

#[async_trait::async_trait]
impl AttachmentStore for RedisStore {
    async fn blob(&self, hash: &ContentHash) -> Result<Option<BlobRecord>, StoreError> {
        let bytes: Option<Vec<u8>> = self
            .redis
            .query(redis::cmd("GET").arg(keys::blob(hash)))
            .await
            .map_err(backend)?;
        bytes
            .map(|b| serde_json::from_slice(&b).map_err(corrupt))
            .transpose()
    }

    async fn put_blob(&self, record: BlobRecord) -> Result<BlobRecord, StoreError> {
        let json = serde_json::to_vec(&record).map_err(corrupt)?;
        let mut conn = self.redis.conn();
        let mut call = PUT.key(keys::blob(&record.hash));
        call.key(keys::BLOBS_UNREFERENCED)
            .arg(json)
            .arg(record.stored_at_ms)
            .arg(record.hash.as_str());
        let kept: Vec<u8> = self
            .redis
            .timed(call.invoke_async(&mut conn))
            .await
            .map_err(backend)?;
        serde_json::from_slice(&kept).map_err(corrupt)
    }

    async fn add_ref(&self, group: &GroupId, hash: &ContentHash) -> Result<bool, StoreError> {
        let mut conn = self.redis.conn();
        let mut call = ADD_REF.key(keys::blob(hash));
        call.key(keys::BLOB_REFS)
            .key(keys::group_blobs(group))
            .key(keys::BLOBS_UNREFERENCED)
            .arg(hash.as_str());
        let counted: i64 = self
            .redis
            .timed(call.invoke_async(&mut conn))
            .await
            .map_err(backend)?;
        Ok(counted == 1)
    }

    async fn drop_ref(
        &self,
        group: &GroupId,
        hash: &ContentHash,
        now_ms: u64,
    ) -> Result<u64, StoreError> {
        let mut conn = self.redis.conn();
        let mut call = DROP_REF.key(keys::BLOB_REFS);
        call.key(keys::group_blobs(group))
            .key(keys::BLOBS_UNREFERENCED)
            .arg(hash.as_str())
            .arg(now_ms);
        let left: i64 = self
            .redis
            .timed(call.invoke_async(&mut conn))
            .await
            .map_err(backend)?;
        Ok(u64::try_from(left).unwrap_or(0))
    }

    async fn refs_in(&self, group: &GroupId, hash: &ContentHash) -> Result<u64, StoreError> {
        let n: Option<u64> = self
            .redis
            .query(
                redis::cmd("HGET")
                    .arg(keys::group_blobs(group))
                    .arg(hash.as_str()),
            )
            .await
            .map_err(backend)?;
        Ok(n.unwrap_or(0))
    }

    async fn remove_unreferenced(&self, hash: &ContentHash) -> Result<bool, StoreError> {
        let mut conn = self.redis.conn();
        let mut call = REMOVE.key(keys::blob(hash));
        call.key(keys::BLOB_REFS)
            .key(keys::BLOBS_UNREFERENCED)
            .arg(hash.as_str());
        let gone: i64 = self
            .redis
            .timed(call.invoke_async(&mut conn))
            .await
            .map_err(backend)?;
        Ok(gone == 1)
    }

    async fn unreferenced(&self, before_ms: u64) -> Result<Vec<ContentHash>, StoreError> {
        let hashes: Vec<String> = self
            .redis
            .query(
                redis::cmd("ZRANGE")
                    .arg(keys::BLOBS_UNREFERENCED)
                    .arg("-inf")
                    .arg(format!("({before_ms}"))
                    .arg("BYSCORE"),
            )
            .await
            .map_err(backend)?;
        Ok(hashes
            .iter()
            .filter_map(|h| ContentHash::parse(h).ok())
            .collect())
    }
}
