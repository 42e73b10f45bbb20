//! Durable group chat messages: numbered per group chat (`seq` 1, 2, ...), read back a page
//! at a time, and how far each member has read. A third trait beside [`super::Store`] and
//! [`super::people::PeopleStore`], implemented by the same two backends.

use std::sync::Arc;

use chorus_proto::chat::ChatMessage;
use chorus_proto::{GroupId, UserId};

use super::StoreError;

/// Where group chat messages live.
#[async_trait::async_trait]
pub trait ChatStore: Send + Sync + 'static {
    /// Keep a new message under the next `seq` of its group chat (atomically: two posts
    /// never share one); the message as kept.
    async fn post(&self, group: &GroupId, message: ChatMessage) -> Result<ChatMessage, StoreError>;
    /// One message.
    async fn message(&self, group: &GroupId, seq: u64) -> Result<Option<ChatMessage>, StoreError>;
    /// Write an edited or deleted message back (same `seq`; the last write wins).
    async fn replace(&self, group: &GroupId, message: &ChatMessage) -> Result<(), StoreError>;
    /// Up to `limit` messages before `before` (the newest when `None`), oldest first.
    async fn page(
        &self,
        group: &GroupId,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<ChatMessage>, StoreError>;
    /// The `seq` `user` has read up to (0: nothing).
    async fn read_up_to(&self, group: &GroupId, user: &UserId) -> Result<u64, StoreError>;
    /// `user` has read up to `seq` (a lower `seq` than before changes nothing).
    async fn mark_read(&self, group: &GroupId, user: &UserId, seq: u64) -> Result<(), StoreError>;
}

/// A chat store shared by the whole node.
pub type SharedChatStore = Arc<dyn ChatStore>;

#[cfg(test)]
pub(crate) mod contract {
    //! What every chat store must do; each backend's tests call these.
    use super::*;

    fn message(text: &str) -> ChatMessage {
        ChatMessage {
            seq: 0,
            author: UserId::random(),
            name: "Ada".into(),
            text: text.into(),
            sent_at_ms: 1,
            edited_at_ms: None,
            deleted: false,
            attachment: None,
        }
    }

    pub async fn messages(store: &dyn ChatStore) {
        let group = GroupId::random();
        let other = GroupId::random();
        assert!(store.page(&group, None, 10).await.unwrap().is_empty());
        for n in 1..=12 {
            let kept = store.post(&group, message(&format!("m{n}"))).await.unwrap();
            assert_eq!(kept.seq, n);
        }
        assert_eq!(store.post(&other, message("x")).await.unwrap().seq, 1);
        let newest = store.page(&group, None, 5).await.unwrap();
        let seqs: Vec<u64> = newest.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, [8, 9, 10, 11, 12], "the newest, oldest first");
        let older = store.page(&group, Some(8), 5).await.unwrap();
        assert_eq!(
            older.iter().map(|m| m.seq).collect::<Vec<_>>(),
            [3, 4, 5, 6, 7]
        );
        let first = store.page(&group, Some(3), 5).await.unwrap();
        assert_eq!(first.iter().map(|m| m.seq).collect::<Vec<_>>(), [1, 2]);
        assert!(store.page(&group, Some(1), 5).await.unwrap().is_empty());

        let mut edited = store.message(&group, 4).await.unwrap().unwrap();
        assert_eq!(edited.text, "m4");
        edited.text = "m4 again".into();
        edited.edited_at_ms = Some(2);
        store.replace(&group, &edited).await.unwrap();
        assert_eq!(store.message(&group, 4).await.unwrap(), Some(edited));
        assert_eq!(store.message(&group, 99).await.unwrap(), None);
    }

    /// Posts racing from many tasks (and, for a shared store, many nodes) each get a
    /// `seq` of their own, with no gap.
    pub async fn racing_posts(stores: &[SharedChatStore]) {
        let group = GroupId::random();
        let tasks: Vec<_> = (0..40)
            .map(|i| {
                let store = stores[i % stores.len()].clone();
                let group = group.clone();
                tokio::spawn(async move { store.post(&group, message("race")).await.unwrap().seq })
            })
            .collect();
        let mut seqs = Vec::new();
        for task in tasks {
            seqs.push(task.await.unwrap());
        }
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=40).collect::<Vec<u64>>());
    }

    pub async fn reading(store: &dyn ChatStore) {
        let group = GroupId::random();
        let user = UserId::random();
        assert_eq!(store.read_up_to(&group, &user).await.unwrap(), 0);
        store.mark_read(&group, &user, 7).await.unwrap();
        store.mark_read(&group, &user, 3).await.unwrap();
        assert_eq!(
            store.read_up_to(&group, &user).await.unwrap(),
            7,
            "never back"
        );
        assert_eq!(
            store.read_up_to(&group, &UserId::random()).await.unwrap(),
            0
        );
    }
}
