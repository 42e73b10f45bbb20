//! Accounts and call records in the fleet's Redis (key names in
//! `chorus_proto::fleet::keys`): an account is one JSON string under its handle, with the
//! user → handle mapping beside it; each user's calls are a list trimmed to the newest
//! [`CALLS_KEPT`].

use std::sync::LazyLock;

use chorus_proto::UserId;
use chorus_proto::fleet::keys;
use redis::Script;

use super::{RedisStore, backend};
use crate::store::StoreError;
use crate::store::people::{Account, CALLS_KEPT, PeopleStore, StoredCall};

/// KEYS[1] account key, KEYS[2] user → handle key; ARGV[1] the record, ARGV[2] the
/// handle. Both are written, or (when either exists) neither.
static CREATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('EXISTS', KEYS[2]) == 1 then
            return 0
        end
        redis.call('SET', KEYS[1], ARGV[1])
        redis.call('SET', KEYS[2], ARGV[2])
        return 1",
    )
});

/// KEYS[1] user → handle key; ARGV[1] the account key prefix.
static BY_USER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        local handle = redis.call('GET', KEYS[1])
        if not handle then return false end
        return redis.call('GET', ARGV[1] .. handle)",
    )
});

fn corrupt(e: serde_json::Error) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

fn decode(bytes: Option<Vec<u8>>) -> Result<Option<Account>, StoreError> {
    bytes
        .map(|b| serde_json::from_slice(&b).map_err(corrupt))
        .transpose()
}

#[async_trait::async_trait]
impl PeopleStore for RedisStore {
    async fn create_account(&self, account: &Account) -> Result<bool, StoreError> {
        let bytes = serde_json::to_vec(account).map_err(corrupt)?;
        let mut conn = self.redis.conn();
        let mut call = CREATE.key(keys::account(&account.handle));
        call.key(keys::account_of_user(&account.user))
            .arg(bytes)
            .arg(account.handle.as_str());
        let created: i64 = self
            .redis
            .timed(call.invoke_async(&mut conn))
            .await
            .map_err(backend)?;
        Ok(created == 1)
    }

    async fn account_by_handle(&self, handle: &str) -> Result<Option<Account>, StoreError> {
        let bytes: Option<Vec<u8>> = self
            .redis
            .query(redis::cmd("GET").arg(keys::account(handle)))
            .await
            .map_err(backend)?;
        decode(bytes)
    }

    async fn account_by_user(&self, user: &UserId) -> Result<Option<Account>, StoreError> {
        let mut conn = self.redis.conn();
        let mut call = BY_USER.key(keys::account_of_user(user));
        call.arg(keys::account(""));
        let bytes: Option<Vec<u8>> = self
            .redis
            .timed(call.invoke_async(&mut conn))
            .await
            .map_err(backend)?;
        decode(bytes)
    }

    async fn save_account(&self, account: &Account) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(account).map_err(corrupt)?;
        self.redis
            .query(
                redis::cmd("SET")
                    .arg(keys::account(&account.handle))
                    .arg(bytes),
            )
            .await
            .map_err(backend)
    }

    async fn record_call(&self, call: &StoredCall) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(call).map_err(corrupt)?;
        let keep = isize::try_from(CALLS_KEPT).unwrap_or(isize::MAX) - 1;
        let mut pipe = redis::pipe();
        pipe.atomic();
        for user in [&call.caller, &call.callee] {
            pipe.lpush(keys::calls(user), bytes.as_slice())
                .ignore()
                .ltrim(keys::calls(user), 0, keep)
                .ignore();
        }
        self.redis.pipe::<()>(&pipe).await.map_err(backend)
    }

    async fn calls_of(&self, user: &UserId) -> Result<Vec<StoredCall>, StoreError> {
        let values: Vec<Vec<u8>> = self
            .redis
            .query(redis::cmd("LRANGE").arg(keys::calls(user)).arg(0).arg(-1))
            .await
            .map_err(backend)?;
        values
            .iter()
            .map(|v| serde_json::from_slice(v).map_err(corrupt))
            .collect()
    }
}
