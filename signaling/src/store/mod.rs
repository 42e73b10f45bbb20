//! Durable state behind one trait: the embedded store on disk (the default, no server
//! needed) and, with `--redis`, a Redis store shared by many signaling nodes. Both must
//! pass the same contract tests.
//!
//! The trait is small on purpose: records are read and written whole, and every rule
//! about them lives in the record's own methods (`rooms::group_chat`). What a store must
//! guarantee is that [`Store::update_group`] is atomic: no two changes to one group
//! interleave, on one node or many.

pub mod attachments;
pub mod chat;
mod embedded;
pub mod people;
mod redis;

use std::sync::Arc;

use chorus_proto::{GroupId, RoomId, SessionId};

pub use self::redis::RedisStore;
pub use embedded::EmbeddedStore;

use crate::rooms::group_chat::{GroupChat, GroupError};

/// A change to a group chat, applied inside the store's atomic update. It may run more
/// than once (an optimistic store retries it on conflict), so it must only touch the
/// record it is given.
pub type Change = Box<dyn FnMut(&mut GroupChat) -> Result<(), GroupError> + Send>;

/// A store failed (disk, network, corrupt record). Users are told only that saving failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend failed.
    #[error("storage failed: {0}")]
    Backend(String),
    /// The backend cannot be reached right now (Redis down or too slow); nothing was
    /// half-written, and the same request can be tried again shortly.
    #[error("storage is temporarily unavailable: {0}")]
    Unavailable(String),
    /// A stored record could not be read back.
    #[error("a stored record is unreadable: {0}")]
    Corrupt(String),
}

/// Why [`Store::update_group`] did not apply a change.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpdateError {
    /// The change itself refused (room full, not allowed, ...).
    #[error(transparent)]
    Group(#[from] GroupError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where group chats live.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Save a new group chat.
    async fn create_group(&self, group: &GroupChat) -> Result<(), StoreError>;
    /// The group chat a room belongs to.
    async fn group_by_room(&self, room: &RoomId) -> Result<Option<GroupChat>, StoreError>;
    /// Every group chat.
    async fn groups(&self) -> Result<Vec<GroupChat>, StoreError>;
    /// Forget a group chat (a pending one rolled back). False when it was not there.
    async fn delete_group(&self, id: &GroupId) -> Result<bool, StoreError>;
    /// Apply `change` atomically and return the record as saved.
    async fn update_group(&self, id: &GroupId, change: Change) -> Result<GroupChat, UpdateError>;
    /// Remember `token` for `ttl`: true the first time, false while it is remembered
    /// (a server-API nonce seen again is a replay). Shared by every node of a fleet.
    async fn first_use(&self, token: &str, ttl: std::time::Duration) -> Result<bool, StoreError>;
    /// A session's state was sealed with `counter`: remember the highest counter of the
    /// session for `ttl` (as long as a blob of it could still open).
    async fn session_sealed(
        &self,
        session: &SessionId,
        counter: u64,
        ttl: std::time::Duration,
    ) -> Result<(), StoreError>;
    /// A resume presents the state sealed with `counter`: true when that is the latest
    /// sealed for the session, which then moves on to `counter + 1` (so the same blob
    /// resumes once, on any node); false for an older blob, a used one, or a session
    /// the store does not know.
    async fn session_resume(
        &self,
        session: &SessionId,
        counter: u64,
        ttl: std::time::Duration,
    ) -> Result<bool, StoreError>;
}

/// A store shared by the whole node.
pub type SharedStore = Arc<dyn Store>;

#[cfg(test)]
pub(crate) mod contract {
    //! The behaviour every store must show; each backend's tests call these.
    use super::*;
    use crate::rooms::group_chat::Place;
    use chorus_proto::UserId;
    use chorus_proto::signal::RoomState;

    fn sample() -> GroupChat {
        GroupChat::new(
            "Friday".into(),
            UserId::random(),
            "Ada".into(),
            10,
            3,
            chorus_proto::signal::SeatMode::Moderated,
            0,
        )
    }

    pub async fn round_trip(store: &dyn Store) {
        let group = sample();
        store.create_group(&group).await.unwrap();
        assert_eq!(
            store.group_by_room(&group.room).await.unwrap().as_ref(),
            Some(&group)
        );
        assert!(
            store
                .groups()
                .await
                .unwrap()
                .iter()
                .any(|g| g.id == group.id)
        );
        assert!(store.delete_group(&group.id).await.unwrap());
        assert!(!store.delete_group(&group.id).await.unwrap());

        assert_eq!(store.group_by_room(&group.room).await.unwrap(), None);
    }

    /// `joins` joins into `group` at once (each holds a place and becomes a member in
    /// one change), spread over `stores` in turn; how many got in. Every other one must
    /// have been refused as full, at the group's capacity.
    async fn race_joins(stores: &[Arc<dyn Store>], group: &GroupChat, joins: usize) -> usize {
        let tasks: Vec<_> = (0..joins)
            .map(|i| {
                let store = stores[i % stores.len()].clone();
                let id = group.id.clone();
                tokio::spawn(async move {
                    let user = UserId::random();
                    store
                        .update_group(
                            &id,
                            Box::new(move |g| {
                                let name = format!("u{i}");
                                g.reserve_place(&user, &name, 0, u64::MAX / 2)?;
                                g.confirm_member(&user, &name)
                            }),
                        )
                        .await
                })
            })
            .collect();
        let mut ok = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(_) => ok += 1,
                Err(UpdateError::Group(GroupError::Full(n))) if n == group.capacity => {}
                Err(e) => panic!("unexpected {e}"),
            }
        }
        ok
    }

    pub async fn updates_are_atomic(store: Arc<dyn Store>) {
        let mut group = sample();
        group.state = RoomState::Active;
        store.create_group(&group).await.unwrap();
        let ok = race_joins(std::slice::from_ref(&store), &group, 30).await;
        // The owner is a member: 9 more places.
        assert_eq!(ok, 9);
        let saved = store.group_by_room(&group.room).await.unwrap().unwrap();
        assert_eq!(saved.members.len(), 10);
        let missing = GroupId::random();
        let refused = store.update_group(&missing, Box::new(|_| Ok(()))).await;
        assert!(matches!(
            refused,
            Err(UpdateError::Group(GroupError::NotFound))
        ));
        let _ = Place::Member;
    }

    /// Two stores (two nodes' connections) race joins into one room of 10: exactly 9
    /// get in beside the owner, whichever store they went through.
    pub async fn two_stores_race(a: Arc<dyn Store>, b: Arc<dyn Store>) {
        let mut group = sample();
        group.state = RoomState::Active;
        a.create_group(&group).await.unwrap();
        let ok = race_joins(&[a.clone(), b.clone()], &group, 40).await;
        assert_eq!(
            ok, 9,
            "exactly the free places are given, across both stores"
        );
        let via_b = b.group_by_room(&group.room).await.unwrap().unwrap();
        assert_eq!(via_b.members.len(), 10);
        assert!(b.delete_group(&group.id).await.unwrap());
    }

    /// A change that loses a race runs again on the record as the winner left it, so
    /// nothing the winner wrote is lost.
    pub async fn retried_change_sees_fresh_record(store: Arc<dyn Store>) {
        let mut group = sample();
        group.state = RoomState::Active;
        store.create_group(&group).await.unwrap();
        // Twenty concurrent renames that each append a letter: if any change ran on a
        // stale record and still won, a letter would be missing.
        let tasks: Vec<_> = (0..20u8)
            .map(|i| {
                let store = store.clone();
                let id = group.id.clone();
                tokio::spawn(async move {
                    store
                        .update_group(
                            &id,
                            Box::new(move |g| {
                                g.name.push(char::from(b'a' + i));
                                Ok(())
                            }),
                        )
                        .await
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let saved = store.group_by_room(&group.room).await.unwrap().unwrap();
        let added: std::collections::BTreeSet<char> =
            saved.name["Friday".len()..].chars().collect();
        assert_eq!(added.len(), 20, "every change kept: {}", saved.name);
        assert_eq!(saved.name.len(), "Friday".len() + 20);
        assert!(store.delete_group(&group.id).await.unwrap());
    }

    /// A session resumes only from its latest state, once, on any store of the data.
    pub async fn session_counter_is_latest_once(a: Arc<dyn Store>, b: Arc<dyn Store>) {
        use std::time::Duration;
        let session = SessionId::random();
        let long = Duration::from_secs(60);
        assert!(
            !a.session_resume(&session, 1, long).await.unwrap(),
            "unknown session"
        );
        a.session_sealed(&session, 1, long).await.unwrap();
        a.session_sealed(&session, 2, long).await.unwrap();
        a.session_sealed(&session, 1, long).await.unwrap(); // late: never goes back
        assert!(
            !b.session_resume(&session, 1, long).await.unwrap(),
            "an older blob"
        );
        assert!(b.session_resume(&session, 2, long).await.unwrap());
        assert!(
            !a.session_resume(&session, 2, long).await.unwrap(),
            "used twice"
        );
        // The resumed session goes on from 3.
        a.session_sealed(&session, 3, long).await.unwrap();
        let racing: Vec<_> = (0..10)
            .map(|i| {
                let store = if i % 2 == 0 { a.clone() } else { b.clone() };
                let session = session.clone();
                tokio::spawn(async move { store.session_resume(&session, 3, long).await.unwrap() })
            })
            .collect();
        let mut won = 0;
        for task in racing {
            won += usize::from(task.await.unwrap());
        }
        assert_eq!(won, 1, "one resume of one blob wins");
    }

    /// A token is used once: refused while remembered, by any store on the same data;
    /// taken again once its time is up.
    pub async fn first_use_is_once(a: Arc<dyn Store>, b: Arc<dyn Store>) {
        use std::time::Duration;
        let token = format!("ck_test:{}", chorus_proto::ParticipantId::random());
        let long = Duration::from_secs(60);
        assert!(a.first_use(&token, long).await.unwrap());
        assert!(!a.first_use(&token, long).await.unwrap(), "a replay here");
        assert!(
            !b.first_use(&token, long).await.unwrap(),
            "a replay on another node"
        );
        assert!(a.first_use(&format!("{token}-other"), long).await.unwrap());
        // Concurrent first uses of one token: exactly one wins.
        let racing = format!("{token}-race");
        let tasks: Vec<_> = (0..10)
            .map(|i| {
                let store = if i % 2 == 0 { a.clone() } else { b.clone() };
                let racing = racing.clone();
                tokio::spawn(async move { store.first_use(&racing, long).await.unwrap() })
            })
            .collect();
        let mut wins = 0;
        for t in tasks {
            wins += usize::from(t.await.unwrap());
        }
        assert_eq!(wins, 1, "one first use of a token");
        let short = format!("{token}-short");
        assert!(
            a.first_use(&short, Duration::from_millis(50))
                .await
                .unwrap()
        );
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert!(
            a.first_use(&short, Duration::from_millis(50))
                .await
                .unwrap(),
            "forgotten after its time"
        );
    }
}
