//! The Redis store: group chats shared by every signaling node of a fleet.
//!
//! A record is one JSON string under `chorus:group:{id}` (key names in
//! `chorus_proto::fleet::keys`). `update_group` is optimistic: read the record, apply the
//! change, and write it back only if the stored bytes are still the ones read (a Lua
//! compare-and-set, atomic in Redis); on a conflict the change runs again on the fresh
//! record. Reads that need two keys (room → group → record) are one script, so they
//! are one consistent read.

mod attachments;
mod chat;
mod people;

use std::time::Duration;

use chorus_proto::fleet::keys;
use chorus_proto::{GroupId, RoomId, SessionId};
use redis::Script;

use super::{Change, Store, StoreError, UpdateError};
use crate::redis_client::Redis;
use crate::rooms::group_chat::{GroupChat, GroupError};

/// How many times a change is retried against a fresher record before giving up.
const MAX_ATTEMPTS: usize = 200;

/// Group chats in Redis.
pub struct RedisStore {
    redis: Redis,
    compare_and_set: Script,
    by_room: Script,
    delete: Script,
    session_sealed: Script,
    session_resume: Script,
}

fn backend(e: redis::RedisError) -> StoreError {
    if e.is_timeout() || e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() {
        StoreError::Unavailable(e.to_string())
    } else {
        StoreError::Backend(e.to_string())
    }
}

fn decode(bytes: &[u8]) -> Result<GroupChat, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn encode(group: &GroupChat) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(group).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// The prefix of a group key: what `keys::group` puts before the id (scripts build
/// the key from an id they read).
fn group_key_prefix() -> String {
    let probe = GroupId::random();
    let key = keys::group(&probe);
    key.strip_suffix(probe.as_str()).unwrap_or(&key).to_owned()
}

impl RedisStore {
    /// Run one of the session counter scripts on `session` with `counter` and `ttl`.
    async fn session_counter(
        &self,
        script: &Script,
        session: &SessionId,
        counter: u64,
        ttl: Duration,
    ) -> Result<i64, StoreError> {
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut conn = self.redis.conn();
        let mut call = script.key(keys::session_counter(session));
        call.arg(counter).arg(ms);
        self.redis
            .timed(call.invoke_async(&mut conn))
            .await
            .map_err(backend)
    }

    /// A store on `redis`.
    pub fn new(redis: Redis) -> Self {
        Self {
            redis,
            // KEYS[1] group key; ARGV[1] the bytes read; ARGV[2] the new bytes.
            compare_and_set: Script::new(
                r"
                if redis.call('GET', KEYS[1]) == ARGV[1] then
                    redis.call('SET', KEYS[1], ARGV[2])
                    return 1
                end
                return 0",
            ),
            // KEYS[1] session counter; ARGV[1] counter, ARGV[2] ttl ms.
            session_sealed: Script::new(
                r"
                local latest = tonumber(redis.call('GET', KEYS[1]) or '-1')
                if tonumber(ARGV[1]) > latest then
                    redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
                end
                return 1",
            ),
            // KEYS[1] session counter; ARGV[1] counter presented, ARGV[2] ttl ms.
            session_resume: Script::new(
                r"
                if redis.call('GET', KEYS[1]) == ARGV[1] then
                    redis.call('SET', KEYS[1], tostring(tonumber(ARGV[1]) + 1), 'PX', ARGV[2])
                    return 1
                end
                return 0",
            ),
            // KEYS[1] room → group key; ARGV[1] the group key prefix.
            by_room: Script::new(
                r"
                local id = redis.call('GET', KEYS[1])
                if not id then return false end
                return redis.call('GET', ARGV[1] .. id)",
            ),
            // KEYS[1] group key, KEYS[2] the set of groups; ARGV[1] the room → group key
            // prefix, ARGV[2] the group id. The record names its room, so the room's
            // mapping goes with it in the same step.
            delete: Script::new(
                r"
                local record = redis.call('GET', KEYS[1])
                if not record then return 0 end
                local ok, decoded = pcall(cjson.decode, record)
                if ok and decoded['room'] then
                    redis.call('DEL', ARGV[1] .. decoded['room'])
                end
                redis.call('DEL', KEYS[1])
                redis.call('SREM', KEYS[2], ARGV[2])
                return 1",
            ),
        }
    }

    async fn raw(&self, id: &GroupId) -> Result<Option<Vec<u8>>, StoreError> {
        self.redis
            .query(redis::cmd("GET").arg(keys::group(id)))
            .await
            .map_err(backend)
    }
}

/// The prefix of a room → group key.
fn room_key_prefix() -> String {
    let probe = RoomId::random();
    let key = keys::room_group(&probe);
    key.strip_suffix(probe.as_str()).unwrap_or(&key).to_owned()
}

#[async_trait::async_trait]
impl Store for RedisStore {
    async fn create_group(&self, group: &GroupChat) -> Result<(), StoreError> {
        let bytes = encode(group)?;
        let mut pipe = redis::pipe();
        pipe.atomic()
            .set(keys::group(&group.id), bytes)
            .ignore()
            .set(keys::room_group(&group.room), group.id.as_str())
            .ignore()
            .sadd(keys::groups(), group.id.as_str())
            .ignore();
        self.redis.pipe::<()>(&pipe).await.map_err(backend)
    }

    async fn group_by_room(&self, room: &RoomId) -> Result<Option<GroupChat>, StoreError> {
        let mut conn = self.redis.conn();
        let prefix = group_key_prefix();
        let mut call = self.by_room.key(keys::room_group(room));
        call.arg(prefix);
        let bytes: Option<Vec<u8>> = self
            .redis
            .timed(call.invoke_async(&mut conn))
            .await
            .map_err(backend)?;
        bytes.map(|b| decode(&b)).transpose()
    }

    async fn groups(&self) -> Result<Vec<GroupChat>, StoreError> {
        let ids: Vec<String> = self
            .redis
            .query(redis::cmd("SMEMBERS").arg(keys::groups()))
            .await
            .map_err(backend)?;
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            let mut cmd = redis::cmd("MGET");
            for id in chunk
                .iter()
                .filter_map(|id| GroupId::parse(id.as_str()).ok())
            {
                cmd.arg(keys::group(&id));
            }
            let values: Vec<Option<Vec<u8>>> = self.redis.query(&cmd).await.map_err(backend)?;
            // A group deleted between the two reads is simply not listed.
            for bytes in values.into_iter().flatten() {
                out.push(decode(&bytes)?);
            }
        }
        Ok(out)
    }

    async fn first_use(&self, token: &str, ttl: std::time::Duration) -> Result<bool, StoreError> {
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let set: Option<String> = self
            .redis
            .query(
                redis::cmd("SET")
                    .arg(keys::used_once(token))
                    .arg(1)
                    .arg("NX")
                    .arg("PX")
                    .arg(ms),
            )
            .await
            .map_err(backend)?;
        Ok(set.is_some())
    }

    async fn session_sealed(
        &self,
        session: &SessionId,
        counter: u64,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.session_counter(&self.session_sealed, session, counter, ttl)
            .await
            .map(|_| ())
    }

    async fn session_resume(
        &self,
        session: &SessionId,
        counter: u64,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        self.session_counter(&self.session_resume, session, counter, ttl)
            .await
            .map(|taken| taken == 1)
    }

    async fn delete_group(&self, id: &GroupId) -> Result<bool, StoreError> {
        let mut conn = self.redis.conn();
        let mut call = self.delete.key(keys::group(id));
        call.key(keys::groups())
            .arg(room_key_prefix())
            .arg(id.as_str());
        let deleted: i64 = self
            .redis
            .timed(call.invoke_async(&mut conn))
            .await
            .map_err(backend)?;
        Ok(deleted == 1)
    }

    async fn update_group(
        &self,
        id: &GroupId,
        mut change: Change,
    ) -> Result<GroupChat, UpdateError> {
        for attempt in 0..MAX_ATTEMPTS {
            let Some(old) = self.raw(id).await? else {
                return Err(GroupError::NotFound.into());
            };
            let mut group = decode(&old)?;
            change(&mut group)?;
            let new = encode(&group)?;
            let mut conn = self.redis.conn();
            let mut call = self.compare_and_set.key(keys::group(id));
            call.arg(old).arg(new);
            let written: i64 = self
                .redis
                .timed(call.invoke_async(&mut conn))
                .await
                .map_err(backend)?;
            if written == 1 {
                return Ok(group);
            }
            // Someone else wrote first: back off a little (more under heavy contention)
            // and run the change again on what they wrote.
            if attempt >= 4 {
                let jitter = rand::random_range(0..=u64::try_from(attempt).unwrap_or(50).min(50));
                tokio::time::sleep(Duration::from_millis(jitter)).await;
            }
        }
        Err(StoreError::Backend(format!(
            "group {id} changed under us {MAX_ATTEMPTS} times in a row; giving up"
        ))
        .into())
    }
}

#[cfg(test)]
mod tests {
    //! These run against a real `redis-server` each test starts on a free loopback port
    //! (Debian's package; the test command installs it). Without it they fail, never
    //! skip: a store that is not tested is not known to work.
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::Arc;

    use super::*;
    use crate::store::contract;

    /// A store on a Redis of its own (started here, stopped when the test ends).
    async fn store() -> (RedisStore, chorus_bench::redis_server::RedisServer) {
        let server = chorus_bench::redis_server::RedisServer::start().expect("redis-server");
        let redis = Redis::connect(&server.url())
            .await
            .expect("connect to the test redis");
        (RedisStore::new(redis), server)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn people_contract() {
        use crate::store::people::{PeopleStore, contract as people};
        let (a, redis) = store().await;
        people::accounts(&a).await;
        people::call_records(&a).await;
        let b = RedisStore::new(
            Redis::connect(&redis.url())
                .await
                .expect("second connection"),
        );
        let stores: [Arc<dyn PeopleStore>; 2] = [Arc::new(a), Arc::new(b)];
        people::one_handle_one_winner(&stores).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn chat_contract() {
        use crate::store::chat::{SharedChatStore, contract as chat};
        let (a, redis) = store().await;
        chat::messages(&a).await;
        chat::reading(&a).await;
        let b = RedisStore::new(
            Redis::connect(&redis.url())
                .await
                .expect("second connection"),
        );
        let stores: [SharedChatStore; 2] = [Arc::new(a), Arc::new(b)];
        chat::racing_posts(&stores).await;
    }

    #[tokio::test]
    async fn attachments_contract() {
        use crate::store::attachments::contract as attachments;
        let (store, _redis) = store().await;
        attachments::records_and_references(&store).await;
    }

    #[tokio::test]
    async fn session_counters_across_two_stores() {
        let (a, redis) = store().await;
        let b = RedisStore::new(
            Redis::connect(&redis.url())
                .await
                .expect("second connection"),
        );
        contract::session_counter_is_latest_once(Arc::new(a), Arc::new(b)).await;
    }

    #[tokio::test]
    async fn round_trip() {
        let (store, _redis) = store().await;
        contract::round_trip(&store).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn updates_are_atomic() {
        let (store, _redis) = store().await;
        contract::updates_are_atomic(Arc::new(store)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn two_stores_racing_admit_exactly_capacity() {
        // Two stores on two connections to one Redis, as two signaling processes are.
        let (a, redis) = store().await;
        let b = RedisStore::new(
            Redis::connect(&redis.url())
                .await
                .expect("second connection"),
        );
        contract::two_stores_race(Arc::new(a), Arc::new(b)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_nonce_is_used_once_across_two_stores() {
        let (a, redis) = store().await;
        let b = RedisStore::new(
            Redis::connect(&redis.url())
                .await
                .expect("second connection"),
        );
        contract::first_use_is_once(Arc::new(a), Arc::new(b)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_retried_change_sees_the_fresh_record() {
        let (store, _redis) = store().await;
        contract::retried_change_sees_fresh_record(Arc::new(store)).await;
    }

    #[tokio::test]
    async fn redis_down_is_temporarily_unavailable_and_writes_nothing() {
        let (store, mut redis) = store().await;
        let group = GroupChat::new(
            "Down".into(),
            chorus_proto::UserId::random(),
            "Ada".into(),
            5,
            2,
            chorus_proto::signal::SeatMode::Moderated,
            0,
        );
        store.create_group(&group).await.unwrap();
        redis.kill();
        let refused = store
            .update_group(
                &group.id,
                Box::new(|g| {
                    g.name = "changed".into();
                    Ok(())
                }),
            )
            .await;
        assert!(
            matches!(refused, Err(UpdateError::Store(StoreError::Unavailable(_)))),
            "a change while Redis is down is refused as temporarily unavailable: {refused:?}"
        );
        redis.restart().unwrap();
        // The connection comes back by itself; the record is as it was (AOF kept it).
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let back = loop {
            match store.group_by_room(&group.room).await {
                Ok(found) => break found,
                Err(_) if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("the store did not reconnect: {e}"),
            }
        };
        assert_eq!(back.map(|g| g.name), Some("Down".to_owned()));
    }
}
