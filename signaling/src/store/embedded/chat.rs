//! Group chat messages in the embedded store's redb file: one row per message under
//! (group, seq), the newest seq per group, and each member's read mark.

use chorus_proto::chat::ChatMessage;
use chorus_proto::{GroupId, UserId};
use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use super::{EmbeddedStore, backend};
use crate::store::StoreError;
use crate::store::chat::ChatStore;

/// (group, seq) → message, as JSON.
pub(super) const MESSAGES: TableDefinition<(&str, u64), &[u8]> =
    TableDefinition::new("chat_messages");
/// group → its newest seq.
pub(super) const SEQS: TableDefinition<&str, u64> = TableDefinition::new("chat_seqs");
/// (group, user) → the seq read up to.
pub(super) const READ: TableDefinition<(&str, &str), u64> = TableDefinition::new("chat_read");

fn corrupt(e: serde_json::Error) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

#[async_trait::async_trait]
impl ChatStore for EmbeddedStore {
    async fn post(&self, group: &GroupId, message: ChatMessage) -> Result<ChatMessage, StoreError> {
        let group = group.clone();
        self.blocking(move |db| {
            // One write transaction at a time: the seq is taken and used atomically.
            let txn = db.begin_write().map_err(backend)?;
            let kept = {
                let mut seqs = txn.open_table(SEQS).map_err(backend)?;
                let seq = seqs
                    .get(group.as_str())
                    .map_err(backend)?
                    .map_or(0, |v| v.value())
                    + 1;
                seqs.insert(group.as_str(), seq).map_err(backend)?;
                let kept = ChatMessage { seq, ..message };
                let bytes = serde_json::to_vec(&kept).map_err(corrupt)?;
                let mut messages = txn.open_table(MESSAGES).map_err(backend)?;
                messages
                    .insert((group.as_str(), seq), bytes.as_slice())
                    .map_err(backend)?;
                kept
            };
            txn.commit().map_err(backend)?;
            Ok(kept)
        })
        .await?
    }

    async fn message(&self, group: &GroupId, seq: u64) -> Result<Option<ChatMessage>, StoreError> {
        let group = group.clone();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let messages = txn.open_table(MESSAGES).map_err(backend)?;
            let value = messages.get((group.as_str(), seq)).map_err(backend)?;
            value
                .map(|v| serde_json::from_slice(v.value()).map_err(corrupt))
                .transpose()
        })
        .await?
    }

    async fn replace(&self, group: &GroupId, message: &ChatMessage) -> Result<(), StoreError> {
        let (group, message) = (group.clone(), message.clone());
        self.blocking(move |db| {
            let bytes = serde_json::to_vec(&message).map_err(corrupt)?;
            let txn = db.begin_write().map_err(backend)?;
            {
                let mut messages = txn.open_table(MESSAGES).map_err(backend)?;
                messages
                    .insert((group.as_str(), message.seq), bytes.as_slice())
                    .map_err(backend)?;
            }
            txn.commit().map_err(backend)
        })
        .await?
    }

    async fn page(
        &self,
        group: &GroupId,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<ChatMessage>, StoreError> {
        let group = group.clone();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let messages = txn.open_table(MESSAGES).map_err(backend)?;
            let end = before.unwrap_or(u64::MAX);
            let mut page = Vec::with_capacity(limit.min(256));
            for row in messages
                .range((group.as_str(), 0)..(group.as_str(), end))
                .map_err(backend)?
                .rev()
                .take(limit)
            {
                let (_, value) = row.map_err(backend)?;
                page.push(serde_json::from_slice::<ChatMessage>(value.value()).map_err(corrupt)?);
            }
            page.reverse();
            Ok(page)
        })
        .await?
    }

    async fn read_up_to(&self, group: &GroupId, user: &UserId) -> Result<u64, StoreError> {
        let (group, user) = (group.clone(), user.clone());
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let read = txn.open_table(READ).map_err(backend)?;
            Ok(read
                .get((group.as_str(), user.as_str()))
                .map_err(backend)?
                .map_or(0, |v| v.value()))
        })
        .await?
    }

    async fn mark_read(&self, group: &GroupId, user: &UserId, seq: u64) -> Result<(), StoreError> {
        let (group, user) = (group.clone(), user.clone());
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(backend)?;
            {
                let mut read = txn.open_table(READ).map_err(backend)?;
                let key = (group.as_str(), user.as_str());
                let now = read.get(key).map_err(backend)?.map_or(0, |v| v.value());
                if seq > now {
                    read.insert(key, seq).map_err(backend)?;
                }
            }
            txn.commit().map_err(backend)
        })
        .await?
    }
}
