//! The embedded store: one redb file in the data folder. redb serialises write
//! transactions, which is what makes `update_group` atomic here.

mod attachments;
mod chat;
mod people;

use std::path::Path;
use std::sync::Arc;

use chorus_proto::{GroupId, RoomId, SessionId};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::{Change, Store, StoreError, UpdateError};
use crate::rooms::group_chat::{GroupChat, GroupError};

/// Group chats by group id, as JSON (readable, and tolerant of added fields).
const GROUPS: TableDefinition<&str, &[u8]> = TableDefinition::new("group_chats");
/// Group id by room id.
const ROOMS: TableDefinition<&str, &str> = TableDefinition::new("rooms");
/// Tokens used once (server-API nonces) and until when (Unix ms) they are remembered.
const USED: TableDefinition<&str, u64> = TableDefinition::new("used_once");
/// Session id → (latest sealed counter, until when it is kept, Unix ms).
const SESSIONS: TableDefinition<&str, (u64, u64)> = TableDefinition::new("session_counters");
/// Every this many first uses, expired entries are swept.
const SWEEP_EVERY: u64 = 512;

/// A store in one file on disk.
#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
    uses: Arc<std::sync::atomic::AtomicU64>,
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn decode(bytes: &[u8]) -> Result<GroupChat, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn encode(group: &GroupChat) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(group).map_err(|e| StoreError::Corrupt(e.to_string()))
}

impl EmbeddedStore {
    /// Open (or create) the store file.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Database::create(path)
            .map_err(|e| StoreError::Backend(format!("{}: {e}", path.display())))?;
        let txn = db.begin_write().map_err(backend)?;
        txn.open_table(GROUPS).map_err(backend)?;
        txn.open_table(ROOMS).map_err(backend)?;
        txn.open_table(USED).map_err(backend)?;
        txn.open_table(SESSIONS).map_err(backend)?;
        txn.open_table(people::ACCOUNTS).map_err(backend)?;
        txn.open_table(people::ACCOUNT_USERS).map_err(backend)?;
        txn.open_table(people::CALLS).map_err(backend)?;
        txn.open_table(chat::MESSAGES).map_err(backend)?;
        txn.open_table(chat::SEQS).map_err(backend)?;
        txn.open_table(chat::READ).map_err(backend)?;
        txn.open_table(attachments::BLOBS).map_err(backend)?;
        txn.open_table(attachments::REFS).map_err(backend)?;
        txn.open_table(attachments::GROUP_REFS).map_err(backend)?;
        txn.open_table(attachments::UNREFERENCED).map_err(backend)?;
        txn.commit().map_err(backend)?;
        Ok(Self {
            db: Arc::new(db),
            uses: Arc::default(),
        })
    }

    /// Whether this use of the short-lived records should also sweep the lapsed ones.
    fn sweep_due(&self) -> bool {
        self.uses
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            .is_multiple_of(SWEEP_EVERY)
    }

    /// Run blocking redb work off the async threads.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Database) -> T + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || work(&db))
            .await
            .map_err(backend)
    }
}

fn read_group(db: &Database, id: &str) -> Result<Option<GroupChat>, StoreError> {
    let txn = db.begin_read().map_err(backend)?;
    let table = txn.open_table(GROUPS).map_err(backend)?;
    let value = table.get(id).map_err(backend)?;
    value.map(|v| decode(v.value())).transpose()
}

/// Until when something kept for `ttl` from `now` (Unix ms) is kept.
fn until_ms(now: u64, ttl: std::time::Duration) -> u64 {
    now.saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX))
}

/// The latest counter sealed for a session, unless its time is up.
fn latest_counter(
    table: &redb::Table<'_, &str, (u64, u64)>,
    session: &str,
    now: u64,
) -> Result<Option<u64>, StoreError> {
    Ok(table
        .get(session)
        .map_err(backend)?
        .map(|v| v.value())
        .filter(|(_, until)| *until > now)
        .map(|(c, _)| c))
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[async_trait::async_trait]
impl Store for EmbeddedStore {
    async fn first_use(&self, token: &str, ttl: std::time::Duration) -> Result<bool, StoreError> {
        let token = token.to_owned();
        let sweep = self.sweep_due();
        self.blocking(move |db| {
            let now = unix_ms();
            let until = until_ms(now, ttl);
            let txn = db.begin_write().map_err(backend)?;
            let first = {
                let mut used = txn.open_table(USED).map_err(backend)?;
                if sweep {
                    used.retain(|_, until| until > now).map_err(backend)?;
                }
                let seen = used
                    .get(token.as_str())
                    .map_err(backend)?
                    .is_some_and(|v| v.value() > now);
                if !seen {
                    used.insert(token.as_str(), until).map_err(backend)?;
                }
                !seen
            };
            txn.commit().map_err(backend)?;
            Ok(first)
        })
        .await?
    }

    async fn session_sealed(
        &self,
        session: &SessionId,
        counter: u64,
        ttl: std::time::Duration,
    ) -> Result<(), StoreError> {
        let session = session.to_string();
        let sweep = self.sweep_due();
        self.blocking(move |db| {
            let now = unix_ms();
            let until = until_ms(now, ttl);
            let txn = db.begin_write().map_err(backend)?;
            {
                let mut table = txn.open_table(SESSIONS).map_err(backend)?;
                if sweep {
                    table.retain(|_, (_, until)| until > now).map_err(backend)?;
                }
                let latest = latest_counter(&table, &session, now)?;
                if latest.is_none_or(|c| counter > c) {
                    table
                        .insert(session.as_str(), (counter, until))
                        .map_err(backend)?;
                }
            }
            txn.commit().map_err(backend)
        })
        .await?
    }

    async fn session_resume(
        &self,
        session: &SessionId,
        counter: u64,
        ttl: std::time::Duration,
    ) -> Result<bool, StoreError> {
        let session = session.to_string();
        self.blocking(move |db| {
            let now = unix_ms();
            let until = until_ms(now, ttl);
            let txn = db.begin_write().map_err(backend)?;
            let taken = {
                let mut table = txn.open_table(SESSIONS).map_err(backend)?;
                let latest = latest_counter(&table, &session, now)?;
                let taken = latest == Some(counter);
                if taken {
                    table
                        .insert(session.as_str(), (counter.saturating_add(1), until))
                        .map_err(backend)?;
                }
                taken
            };
            txn.commit().map_err(backend)?;
            Ok(taken)
        })
        .await?
    }

    async fn create_group(&self, group: &GroupChat) -> Result<(), StoreError> {
        let group = group.clone();
        self.blocking(move |db| {
            let bytes = encode(&group)?;
            let txn = db.begin_write().map_err(backend)?;
            {
                let mut groups = txn.open_table(GROUPS).map_err(backend)?;
                groups
                    .insert(group.id.as_str(), bytes.as_slice())
                    .map_err(backend)?;
                let mut rooms = txn.open_table(ROOMS).map_err(backend)?;
                rooms
                    .insert(group.room.as_str(), group.id.as_str())
                    .map_err(backend)?;
            }
            txn.commit().map_err(backend)
        })
        .await?
    }

    async fn group_by_room(&self, room: &RoomId) -> Result<Option<GroupChat>, StoreError> {
        let room = room.clone();
        self.blocking(move |db| {
            let group_id = {
                let txn = db.begin_read().map_err(backend)?;
                let rooms = txn.open_table(ROOMS).map_err(backend)?;
                let found = rooms.get(room.as_str()).map_err(backend)?;
                match found {
                    Some(id) => id.value().to_owned(),
                    None => return Ok(None),
                }
            };
            read_group(db, &group_id)
        })
        .await?
    }

    async fn groups(&self) -> Result<Vec<GroupChat>, StoreError> {
        self.blocking(|db| {
            let txn = db.begin_read().map_err(backend)?;
            let table = txn.open_table(GROUPS).map_err(backend)?;
            let mut out = Vec::new();
            for entry in table.iter().map_err(backend)? {
                let (_, value) = entry.map_err(backend)?;
                out.push(decode(value.value())?);
            }
            Ok(out)
        })
        .await?
    }

    async fn delete_group(&self, id: &GroupId) -> Result<bool, StoreError> {
        let id = id.clone();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(backend)?;
            let existed = {
                let mut groups = txn.open_table(GROUPS).map_err(backend)?;
                let removed = groups.remove(id.as_str()).map_err(backend)?;
                let group = removed.map(|v| decode(v.value())).transpose()?;
                if let Some(group) = &group {
                    let mut rooms = txn.open_table(ROOMS).map_err(backend)?;
                    rooms.remove(group.room.as_str()).map_err(backend)?;
                }
                group.is_some()
            };
            txn.commit().map_err(backend)?;
            Ok(existed)
        })
        .await?
    }

    async fn update_group(
        &self,
        id: &GroupId,
        mut change: Change,
    ) -> Result<GroupChat, UpdateError> {
        let id = id.clone();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(backend)?;
            let group = {
                let mut groups = txn.open_table(GROUPS).map_err(backend)?;
                let current = groups
                    .get(id.as_str())
                    .map_err(backend)?
                    .map(|v| decode(v.value()));
                let mut group = match current {
                    Some(group) => group?,
                    None => return Err(UpdateError::Group(GroupError::NotFound)),
                };
                change(&mut group)?;
                let bytes = encode(&group)?;
                groups
                    .insert(id.as_str(), bytes.as_slice())
                    .map_err(backend)?;
                group
            };
            txn.commit().map_err(backend)?;
            Ok(group)
        })
        .await?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::contract;

    fn temp_store(name: &str) -> (EmbeddedStore, std::path::PathBuf) {
        let path =
            std::env::temp_dir().join(format!("chorus-store-{}-{name}.redb", std::process::id()));
        let _ = std::fs::remove_file(&path);
        (EmbeddedStore::open(&path).unwrap(), path)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn people_contract() {
        use crate::store::people::{PeopleStore, contract as people};
        let (store, path) = temp_store("people");
        people::accounts(&store).await;
        people::call_records(&store).await;
        let shared: Arc<dyn PeopleStore> = Arc::new(store);
        people::one_handle_one_winner(&[shared]).await;
        let _ = std::fs::remove_file(path);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn chat_contract() {
        use crate::store::chat::{SharedChatStore, contract as chat};
        let (store, path) = temp_store("chat");
        chat::messages(&store).await;
        chat::reading(&store).await;
        let shared: SharedChatStore = Arc::new(store);
        chat::racing_posts(&[shared]).await;
        let _ = std::fs::remove_file(path);
    }

    #[tokio::test]
    async fn attachments_contract() {
        use crate::store::attachments::contract as attachments;
        let (store, path) = temp_store("attachments");
        attachments::records_and_references(&store).await;
        let _ = std::fs::remove_file(path);
    }

    #[tokio::test]
    async fn contract_round_trip() {
        let (store, path) = temp_store("round-trip");
        contract::round_trip(&store).await;
        let _ = std::fs::remove_file(path);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn contract_updates_are_atomic() {
        let (store, path) = temp_store("atomic");
        contract::updates_are_atomic(Arc::new(store)).await;
        let _ = std::fs::remove_file(path);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn contract_session_counter_is_latest_once() {
        let (store, path) = temp_store("sessions");
        let store = Arc::new(store);
        contract::session_counter_is_latest_once(store.clone(), store).await;
        let _ = std::fs::remove_file(path);
    }

    #[tokio::test]
    async fn contract_first_use_is_once() {
        let (store, path) = temp_store("once");
        let store = Arc::new(store);
        contract::first_use_is_once(store.clone(), store).await;
        let _ = std::fs::remove_file(path);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn contract_retried_change_sees_fresh_record() {
        let (store, path) = temp_store("fresh");
        contract::retried_change_sees_fresh_record(Arc::new(store)).await;
        let _ = std::fs::remove_file(path);
    }

    #[tokio::test]
    async fn survives_reopening() {
        let (store, path) = temp_store("reopen");
        let group = GroupChat::new(
            "Kept".into(),
            chorus_proto::UserId::random(),
            "Ada".into(),
            5,
            2,
            chorus_proto::signal::SeatMode::Moderated,
            0,
        );
        store.create_group(&group).await.unwrap();
        drop(store);
        let reopened = EmbeddedStore::open(&path).unwrap();
        assert_eq!(
            reopened.group_by_room(&group.room).await.unwrap(),
            Some(group)
        );
        let _ = std::fs::remove_file(path);
    }
}
