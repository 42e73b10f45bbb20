//! Durable records of people: accounts (handle, password hash, block list) and the
//! records of their calls. A second trait beside [`super::Store`], implemented by the same
//! two backends, so that rooms and people can grow apart.

use std::sync::Arc;

use chorus_proto::people::{CallEnd, MediaPath};
use chorus_proto::{CallId, UserId};
use serde::{Deserialize, Serialize};

use super::StoreError;

/// How many calls each user's list keeps (the newest).
pub const CALLS_KEPT: usize = 100;

/// An account: a user with a handle and a password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// The user (its id in rooms too).
    pub user: UserId,
    /// Unique, lower case (`chorus_proto::people::parse_handle`).
    pub handle: String,
    /// Display name.
    pub name: String,
    /// argon2id, PHC string format (salt and parameters inside). Empty for an account
    /// the app backend made (`POST /api/v1/users` with a handle): no password signs it
    /// in, only the backend's tokens and one-time links.
    pub password_hash: String,
    /// When it was made, unix ms.
    pub created_ms: u64,
    /// Users whose calls this account refuses.
    #[serde(default)]
    pub blocked: Vec<UserId>,
    /// Every call of this account goes through the media server, also with contacts
    /// (`set_call_privacy`).
    #[serde(default)]
    pub always_relay: bool,
}

/// What the store keeps of a call: one record, listed for both its people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredCall {
    /// The call.
    pub id: CallId,
    /// Who rang.
    pub caller: UserId,
    /// Who was rung.
    pub callee: UserId,
    /// When it rang, unix ms.
    pub started_ms: u64,
    /// When it was answered, unix ms.
    #[serde(default)]
    pub answered_ms: Option<u64>,
    /// When it ended, unix ms.
    pub ended_ms: u64,
    /// How.
    pub end: CallEnd,
    /// How its media went, if it connected.
    #[serde(default)]
    pub path: Option<MediaPath>,
}

/// Where accounts and call records live.
#[async_trait::async_trait]
pub trait PeopleStore: Send + Sync + 'static {
    /// Save a new account. False (nothing written) when its handle is taken or its
    /// user has an account already.
    async fn create_account(&self, account: &Account) -> Result<bool, StoreError>;
    /// The account with this handle.
    async fn account_by_handle(&self, handle: &str) -> Result<Option<Account>, StoreError>;
    /// The account of this user.
    async fn account_by_user(&self, user: &UserId) -> Result<Option<Account>, StoreError>;
    /// Write an existing account back whole (same handle, same user): its name, block
    /// list. The last write wins.
    async fn save_account(&self, account: &Account) -> Result<(), StoreError>;
    /// Keep a call's record in the lists of both its people (each keeps the newest
    /// [`CALLS_KEPT`]).
    async fn record_call(&self, call: &StoredCall) -> Result<(), StoreError>;
    /// A user's calls, newest first.
    async fn calls_of(&self, user: &UserId) -> Result<Vec<StoredCall>, StoreError>;
}

/// A people store shared by the whole node.
pub type SharedPeopleStore = Arc<dyn PeopleStore>;

#[cfg(test)]
pub(crate) mod contract {
    //! What every people store must do; each backend's tests call these.
    use super::*;

    fn account(handle: &str) -> Account {
        Account {
            user: UserId::random(),
            handle: handle.to_owned(),
            name: "Ada".into(),
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
            created_ms: 1,
            blocked: Vec::new(),
            always_relay: false,
        }
    }

    fn unique(prefix: &str) -> String {
        format!("{prefix}{}", &CallId::random().as_str()[2..8])
    }

    pub async fn accounts(store: &dyn PeopleStore) {
        let ada = account(&unique("ada"));
        assert!(store.create_account(&ada).await.unwrap());
        let again = Account {
            user: UserId::random(),
            ..ada.clone()
        };
        assert!(!store.create_account(&again).await.unwrap(), "handle taken");
        let same_user = Account {
            handle: unique("other"),
            ..ada.clone()
        };
        assert!(
            !store.create_account(&same_user).await.unwrap(),
            "one account per user"
        );
        assert_eq!(
            store.account_by_handle(&same_user.handle).await.unwrap(),
            None,
            "the refused one left nothing behind"
        );
        assert_eq!(
            store.account_by_handle(&ada.handle).await.unwrap().as_ref(),
            Some(&ada)
        );
        assert_eq!(
            store.account_by_user(&ada.user).await.unwrap().as_ref(),
            Some(&ada)
        );
        let mut changed = ada.clone();
        changed.blocked.push(UserId::random());
        store.save_account(&changed).await.unwrap();
        assert_eq!(
            store.account_by_user(&ada.user).await.unwrap().as_ref(),
            Some(&changed)
        );
        assert_eq!(store.account_by_handle("nobody_here").await.unwrap(), None);
    }

    /// Many registrations of one handle at once: exactly one wins.
    pub async fn one_handle_one_winner(stores: &[Arc<dyn PeopleStore>]) {
        let handle = unique("race");
        let tasks: Vec<_> = (0..12)
            .map(|i| {
                let store = stores[i % stores.len()].clone();
                let candidate = account(&handle);
                tokio::spawn(async move { store.create_account(&candidate).await.unwrap() })
            })
            .collect();
        let mut wins = 0;
        for t in tasks {
            wins += usize::from(t.await.unwrap());
        }
        assert_eq!(wins, 1);
    }

    pub async fn call_records(store: &dyn PeopleStore) {
        let (a, b) = (UserId::random(), UserId::random());
        for i in 0..(CALLS_KEPT as u64 + 5) {
            let call = StoredCall {
                id: CallId::random(),
                caller: if i % 2 == 0 { a.clone() } else { b.clone() },
                callee: if i % 2 == 0 { b.clone() } else { a.clone() },
                started_ms: i,
                answered_ms: None,
                ended_ms: i + 1,
                end: CallEnd::NoAnswer,
                path: None,
            };
            store.record_call(&call).await.unwrap();
        }
        let of_a = store.calls_of(&a).await.unwrap();
        let of_b = store.calls_of(&b).await.unwrap();
        assert_eq!(of_a.len(), CALLS_KEPT);
        assert_eq!(of_a, of_b, "one record, in both lists");
        assert_eq!(of_a[0].started_ms, CALLS_KEPT as u64 + 4, "newest first");
        assert!(store.calls_of(&UserId::random()).await.unwrap().is_empty());
    }
}
