//! Accounts and call records in the embedded store's redb file.

use chorus_proto::UserId;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::{EmbeddedStore, backend};
use crate::store::StoreError;
use crate::store::people::{Account, CALLS_KEPT, PeopleStore, StoredCall};

/// Accounts by handle, as JSON.
pub(super) const ACCOUNTS: TableDefinition<&str, &[u8]> = TableDefinition::new("accounts");
/// Handle by user id.
pub(super) const ACCOUNT_USERS: TableDefinition<&str, &str> = TableDefinition::new("account_users");
/// Each user's calls, newest first, as one JSON list.
pub(super) const CALLS: TableDefinition<&str, &[u8]> = TableDefinition::new("calls");

fn corrupt(e: serde_json::Error) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

fn read_account(db: &Database, handle: &str) -> Result<Option<Account>, StoreError> {
    let txn = db.begin_read().map_err(backend)?;
    let table = txn.open_table(ACCOUNTS).map_err(backend)?;
    let value = table.get(handle).map_err(backend)?;
    value
        .map(|v| serde_json::from_slice(v.value()).map_err(corrupt))
        .transpose()
}

#[async_trait::async_trait]
impl PeopleStore for EmbeddedStore {
    async fn create_account(&self, account: &Account) -> Result<bool, StoreError> {
        let account = account.clone();
        self.blocking(move |db| {
            let bytes = serde_json::to_vec(&account).map_err(corrupt)?;
            let txn = db.begin_write().map_err(backend)?;
            let created = {
                let mut accounts = txn.open_table(ACCOUNTS).map_err(backend)?;
                let mut users = txn.open_table(ACCOUNT_USERS).map_err(backend)?;
                let taken = accounts
                    .get(account.handle.as_str())
                    .map_err(backend)?
                    .is_some()
                    || users.get(account.user.as_str()).map_err(backend)?.is_some();
                if !taken {
                    accounts
                        .insert(account.handle.as_str(), bytes.as_slice())
                        .map_err(backend)?;
                    users
                        .insert(account.user.as_str(), account.handle.as_str())
                        .map_err(backend)?;
                }
                !taken
            };
            txn.commit().map_err(backend)?;
            Ok(created)
        })
        .await?
    }

    async fn account_by_handle(&self, handle: &str) -> Result<Option<Account>, StoreError> {
        let handle = handle.to_owned();
        self.blocking(move |db| read_account(db, &handle)).await?
    }

    async fn account_by_user(&self, user: &UserId) -> Result<Option<Account>, StoreError> {
        let user = user.clone();
        self.blocking(move |db| {
            let handle = {
                let txn = db.begin_read().map_err(backend)?;
                let users = txn.open_table(ACCOUNT_USERS).map_err(backend)?;
                match users.get(user.as_str()).map_err(backend)? {
                    Some(handle) => handle.value().to_owned(),
                    None => return Ok(None),
                }
            };
            read_account(db, &handle)
        })
        .await?
    }

    async fn save_account(&self, account: &Account) -> Result<(), StoreError> {
        let account = account.clone();
        self.blocking(move |db| {
            let bytes = serde_json::to_vec(&account).map_err(corrupt)?;
            let txn = db.begin_write().map_err(backend)?;
            {
                let mut accounts = txn.open_table(ACCOUNTS).map_err(backend)?;
                accounts
                    .insert(account.handle.as_str(), bytes.as_slice())
                    .map_err(backend)?;
            }
            txn.commit().map_err(backend)
        })
        .await?
    }

    async fn record_call(&self, call: &StoredCall) -> Result<(), StoreError> {
        let call = call.clone();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(backend)?;
            {
                let mut calls = txn.open_table(CALLS).map_err(backend)?;
                for user in [&call.caller, &call.callee] {
                    let mut list: Vec<StoredCall> =
                        match calls.get(user.as_str()).map_err(backend)? {
                            Some(v) => serde_json::from_slice(v.value()).map_err(corrupt)?,
                            None => Vec::new(),
                        };
                    list.insert(0, call.clone());
                    list.truncate(CALLS_KEPT);
                    let bytes = serde_json::to_vec(&list).map_err(corrupt)?;
                    calls
                        .insert(user.as_str(), bytes.as_slice())
                        .map_err(backend)?;
                }
            }
            txn.commit().map_err(backend)
        })
        .await?
    }

    async fn calls_of(&self, user: &UserId) -> Result<Vec<StoredCall>, StoreError> {
        let user = user.clone();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let calls = txn.open_table(CALLS).map_err(backend)?;
            match calls.get(user.as_str()).map_err(backend)? {
                Some(v) => serde_json::from_slice(v.value()).map_err(corrupt),
                None => Ok(Vec::new()),
            }
        })
        .await?
    }
}
