//! Group chat messages in the fleet's Redis (key names in `chorus_proto::fleet::keys`):
//! a counter per group chat hands out each `seq` (`INCR`, so that posts from any node
//! never share one), the messages are a hash `seq` → JSON, and the read marks a hash
//! user → `seq`.

use std::sync::LazyLock;

use chorus_proto::chat::ChatMessage;
use chorus_proto::fleet::keys;
use chorus_proto::{GroupId, UserId};
use redis::Script;

use super::{RedisStore, backend};
use crate::store::StoreError;
use crate::store::chat::ChatStore;

/// KEYS[1] the read marks; ARGV[1] user, ARGV[2] seq: kept only if higher.
static MARK_READ: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        local now = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
        if tonumber(ARGV[2]) > now then
            redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
        end
        return 0",
    )
});

fn corrupt(e: serde_json::Error) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

#[async_trait::async_trait]
impl ChatStore for RedisStore {
    async fn post(&self, group: &GroupId, message: ChatMessage) -> Result<ChatMessage, StoreError> {
        let seq: u64 = self
            .redis
            .query(redis::cmd("INCR").arg(keys::chat_seq(group)))
            .await
            .map_err(backend)?;
        let kept = ChatMessage { seq, ..message };
        self.replace(group, &kept).await?;
        Ok(kept)
    }

    async fn message(&self, group: &GroupId, seq: u64) -> Result<Option<ChatMessage>, StoreError> {
        let bytes: Option<Vec<u8>> = self
            .redis
            .query(redis::cmd("HGET").arg(keys::chat_messages(group)).arg(seq))
            .await
            .map_err(backend)?;
        bytes
            .map(|b| serde_json::from_slice(&b).map_err(corrupt))
            .transpose()
    }

    async fn replace(&self, group: &GroupId, message: &ChatMessage) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(message).map_err(corrupt)?;
        self.redis
            .query::<i64>(
                redis::cmd("HSET")
                    .arg(keys::chat_messages(group))
                    .arg(message.seq)
                    .arg(bytes),
            )
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn page(
        &self,
        group: &GroupId,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<ChatMessage>, StoreError> {
        let newest: Option<u64> = self
            .redis
            .query(redis::cmd("GET").arg(keys::chat_seq(group)))
            .await
            .map_err(backend)?;
        let newest = newest.unwrap_or(0);
        let top = match before {
            Some(before) => before.saturating_sub(1).min(newest),
            None => newest,
        };
        let limit = u64::try_from(limit).unwrap_or(u64::MAX);
        let bottom = top.saturating_sub(limit).saturating_add(1).max(1);
        if top == 0 || bottom > top {
            return Ok(Vec::new());
        }
        let seqs: Vec<u64> = (bottom..=top).collect();
        let values: Vec<Option<Vec<u8>>> = self
            .redis
            .query(
                redis::cmd("HMGET")
                    .arg(keys::chat_messages(group))
                    .arg(&seqs),
            )
            .await
            .map_err(backend)?;
        // A seq whose message was never written (its post failed half-way) is skipped.
        values
            .into_iter()
            .flatten()
            .map(|b| serde_json::from_slice(&b).map_err(corrupt))
            .collect()
    }

    async fn read_up_to(&self, group: &GroupId, user: &UserId) -> Result<u64, StoreError> {
        let seq: Option<u64> = self
            .redis
            .query(
                redis::cmd("HGET")
                    .arg(keys::chat_read(group))
                    .arg(user.as_str()),
            )
            .await
            .map_err(backend)?;
        Ok(seq.unwrap_or(0))
    }

    async fn mark_read(&self, group: &GroupId, user: &UserId, seq: u64) -> Result<(), StoreError> {
        let mut conn = self.redis.conn();
        let mut call = MARK_READ.key(keys::chat_read(group));
        call.arg(user.as_str()).arg(seq);
        self.redis
            .timed(call.invoke_async::<i64>(&mut conn))
            .await
            .map_err(backend)?;
        Ok(())
    }
}
