//! People: accounts (a handle and a password beside the guest identity), who is online,
//! and whom an account can see — the people it shares a group chat with and the people
//! it has called. There is no directory of strangers: anyone else is found only by their
//! exact handle.

pub mod directory;
pub mod fleet;
pub mod passwords;

use std::collections::{BTreeSet, HashMap};

use std::sync::Arc;

use chorus_proto::people::{self, AccountInfo, CallRecord, PersonInfo, Presence};
use chorus_proto::signal::{ErrorCode, ServerMessage};
use chorus_proto::{CallId, UserId};

use self::directory::{Device, DeviceId, Directory, Sink};
use self::fleet::PeopleFleet;
use crate::rooms::service::{Failure, store_failure};
use crate::store::SharedStore;
use crate::store::people::{Account, SharedPeopleStore, StoredCall};

/// Most people one account may block (the list lives in the account's record).
pub const MAX_BLOCKED: usize = 1000;

/// Accounts, presence and contacts of one node.
pub struct People {
    /// Accounts and call records.
    pub store: SharedPeopleStore,
    /// Group chats, for who shares one with whom.
    groups: SharedStore,
    /// Who is online here.
    pub directory: Directory,
    /// The other signaling nodes' devices and calls.
    pub fleet: Arc<dyn PeopleFleet>,
    failures: passwords::FailedSignIns,
}

fn wrong_sign_in() -> Failure {
    (ErrorCode::Unauthorized, "wrong handle or password".into())
}

/// The user-facing words of a refused handle.
pub fn handle_failure(handle: &str) -> Result<String, Failure> {
    people::parse_handle(handle).map_err(|e| (ErrorCode::InvalidInput, e.to_string()))
}

impl People {
    /// People on these stores, with the devices of other nodes reached through `fleet`.
    pub fn new(store: SharedPeopleStore, groups: SharedStore, fleet: Arc<dyn PeopleFleet>) -> Self {
        Self {
            store,
            groups,
            directory: Directory::new(fleet.is_shared()),
            fleet,
            failures: passwords::FailedSignIns::default(),
        }
    }

    /// A session of `user` on this node is signed in (its presence counts).
    pub async fn device_connected(&self, user: &UserId, device: Device) {
        let (id, takes_calls) = (device.id, device.takes_calls);
        self.directory.connect(user, device);
        if self.fleet.is_shared() {
            if let Err(e) = self.fleet.device_up(user, id, takes_calls).await {
                tracing::warn!(error = %e, "could not record a device for the fleet; other nodes do not see it");
            }
            self.announce(user).await;
        }
    }

    /// That session ended.
    pub async fn device_disconnected(&self, user: &UserId, device: DeviceId) {
        self.directory.disconnect(user, device);
        if self.fleet.is_shared() {
            if let Err(e) = self.fleet.device_down(user, device).await {
                tracing::warn!(error = %e, "could not take a device out of the fleet's record");
            }
            self.announce(user).await;
        }
    }

    /// `user`'s `call` (of this node) was answered, or has ended.
    pub async fn set_in_call(&self, user: &UserId, call: &CallId, in_call: bool) {
        self.directory.set_in_call(user, in_call);
        if self.fleet.is_shared() {
            let marked = match in_call {
                true => self.fleet.call_answered(user, call).await,
                false => self.fleet.release_call(user, call).await,
            };
            if let Err(e) = marked {
                tracing::warn!(error = %e, "could not record a call for the fleet");
            }
            self.announce(user).await;
        }
    }

    /// Tell everyone following `user`, on every node, its presence now.
    async fn announce(&self, user: &UserId) {
        let presence = self.presence(user).await;
        self.directory.tell_followers(user, presence);
        self.fleet.announce_presence(user, presence);
    }

    /// Whether `user` is online, in a call or offline, over every node of the fleet
    /// (this node's view alone when the others cannot be read).
    pub async fn presence(&self, user: &UserId) -> Presence {
        let here = self.directory.presence(user);
        if !self.fleet.is_shared() || here == Presence::InCall {
            return here;
        }
        match self.fleet.in_answered_call(user).await {
            Ok(true) => return Presence::InCall,
            Ok(false) => {}
            Err(_) => return here,
        }
        if here == Presence::Online {
            return here;
        }
        match self.fleet.devices_elsewhere(user).await {
            Ok(devices) if !devices.is_empty() => Presence::Online,
            _ => here,
        }
    }

    /// The devices of `user` that ring when it is called, on every node.
    pub async fn call_takers(&self, user: &UserId) -> Vec<Device> {
        let mut takers = self.directory.call_takers(user);
        if self.fleet.is_shared() {
            match self.fleet.devices_elsewhere(user).await {
                Ok(devices) => takers.extend(
                    devices
                        .into_iter()
                        .filter(|(_, record)| record.takes_calls)
                        .map(|(id, record)| Device {
                            id,
                            sink: Sink::Remote {
                                node: record.node,
                                fleet: self.fleet.clone(),
                            },
                            takes_calls: true,
                        }),
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "devices on other nodes unknown; ringing this node's only");
                }
            }
        }
        takers
    }

    /// Make `user` an account named `name` with this handle and password.
    pub async fn register(
        &self,
        user: &UserId,
        name: &str,
        handle: &str,
        password: &str,
    ) -> Result<Account, Failure> {
        let handle = handle_failure(handle)?;
        people::check_new_password(password).map_err(|e| (ErrorCode::InvalidInput, e))?;
        if let Some(existing) = self
            .store
            .account_by_user(user)
            .await
            .map_err(store_failure)?
        {
            return Err((
                ErrorCode::InvalidInput,
                format!("you are signed in as @{} already", existing.handle),
            ));
        }
        let password_hash = passwords::hash(password.to_owned()).await.map_err(|e| {
            (
                ErrorCode::Internal,
                format!("cannot hash the password: {e}"),
            )
        })?;
        let account = Account {
            user: user.clone(),
            handle: handle.clone(),
            name: name.to_owned(),
            password_hash,
            created_ms: chorus_proto::fleet::unix_ms(),
            blocked: Vec::new(),
            always_relay: false,
        };
        self.create(account).await
    }

    /// The account with this handle, if the password is its own. `origin` is where the
    /// attempt comes from, for the limit on failures.
    pub async fn sign_in(
        &self,
        origin: &str,
        handle: &str,
        password: &str,
    ) -> Result<Account, Failure> {
        let Ok(handle) = people::parse_handle(handle) else {
            return Err(wrong_sign_in());
        };
        if let Some(wait) = self.failures.blocked_for(origin, &handle) {
            return Err((
                ErrorCode::RateLimited,
                format!(
                    "too many failed sign-ins for @{handle}; try again in {} minutes",
                    wait.as_secs().div_ceil(60).max(1)
                ),
            ));
        }
        let account = self
            .store
            .account_by_handle(&handle)
            .await
            .map_err(store_failure)?;
        // No account, or one without a password (made by the app backend): check the
        // decoy anyway, so that neither answers sooner than a wrong password.
        let stored = account
            .as_ref()
            .map(|a| a.password_hash.clone())
            .filter(|hash| !hash.is_empty());
        let has_password = stored.is_some();
        let stored = stored.unwrap_or_else(|| passwords::decoy().to_owned());
        let matches = passwords::verify(password.to_owned(), stored).await && has_password;
        match account {
            Some(account) if matches => {
                self.failures.succeeded(origin, &handle);
                Ok(account)
            }
            _ => {
                self.failures.failed(origin, &handle);
                Err(wrong_sign_in())
            }
        }
    }

    /// The app backend's account for its `user`: `handle` (made now if the user has no
    /// account yet), or refused if the handle is someone else's or the user already has
    /// another one. No password: it signs in with the backend's tokens and links only.
    pub async fn provision(
        &self,
        user: &UserId,
        name: &str,
        handle: &str,
    ) -> Result<Account, Failure> {
        let handle = handle_failure(handle)?;
        if let Some(mut existing) = self.account_of(user).await? {
            if existing.handle != handle {
                return Err((
                    ErrorCode::InvalidInput,
                    format!(
                        "this user is @{} already; a handle cannot change",
                        existing.handle
                    ),
                ));
            }
            self.rename(&mut existing, name).await;
            return Ok(existing);
        }
        let account = Account {
            user: user.clone(),
            handle: handle.clone(),
            name: name.to_owned(),
            password_hash: String::new(),
            created_ms: chorus_proto::fleet::unix_ms(),
            blocked: Vec::new(),
            always_relay: false,
        };
        self.create(account).await
    }

    /// The account a one-time sign-in link (`POST /api/v1/users` with `link: true`) is
    /// for; the link is spent, on every node (its id is remembered in the shared store
    /// until it expires).
    pub async fn redeem_link(
        &self,
        verifier: &chorus_proto::token::TokenVerifier,
        code: &str,
    ) -> Result<Account, Failure> {
        use chorus_proto::token::TokenError;
        let refused = |why: &str| (ErrorCode::Unauthorized, why.to_owned());
        let claims = verifier.verify_sign_in_link(code).map_err(|e| match e {
            TokenError::Expired => refused("this sign-in link has expired; ask for a new one"),
            _ => refused("this is not a sign-in link of this server"),
        })?;
        let now = chorus_proto::fleet::unix_ms() / 1000;
        // Remembered a little past its expiry: the verifier allows a few seconds' leeway.
        let remember = std::time::Duration::from_secs(claims.exp.saturating_sub(now) + 60);
        let first = self
            .groups
            .first_use(&format!("sign_in_link:{}", claims.jti), remember)
            .await
            .map_err(store_failure)?;
        if !first {
            return Err(refused(
                "this sign-in link was used already; ask for a new one",
            ));
        }
        self.account_of(&claims.sub)
            .await?
            .ok_or_else(|| refused("the account of this sign-in link no longer exists"))
    }

    /// Store a new account, unless its handle is taken.
    async fn create(&self, account: Account) -> Result<Account, Failure> {
        match self
            .store
            .create_account(&account)
            .await
            .map_err(store_failure)?
        {
            true => Ok(account),
            false => Err((
                ErrorCode::HandleTaken,
                format!("@{} is taken; choose another handle", account.handle),
            )),
        }
    }

    /// The account of `user`, if it has one.
    pub async fn account_of(&self, user: &UserId) -> Result<Option<Account>, Failure> {
        self.store
            .account_by_user(user)
            .await
            .map_err(store_failure)
    }

    /// The account with this handle (refused in the user's words if there is none).
    pub async fn account_by_handle(&self, handle: &str) -> Result<Account, Failure> {
        let handle = handle_failure(handle)?;
        self.store
            .account_by_handle(&handle)
            .await
            .map_err(store_failure)?
            .ok_or_else(|| {
                (
                    ErrorCode::UserNotFound,
                    format!("nobody is called @{handle}"),
                )
            })
    }

    /// An account as others see it now.
    pub async fn person(&self, account: &Account) -> PersonInfo {
        PersonInfo {
            user: account.user.clone(),
            handle: account.handle.clone(),
            name: account.name.clone(),
            presence: self.presence(&account.user).await,
        }
    }

    /// The people `account` can see, its calls and whom it blocked; `device` follows
    /// their presence from now on.
    pub async fn contacts(
        &self,
        account: &Account,
        device: &Device,
    ) -> Result<ServerMessage, Failure> {
        let me = &account.user;
        let calls = self.store.calls_of(me).await.map_err(store_failure)?;
        let mut known: BTreeSet<UserId> = BTreeSet::new();
        for group in self.groups.groups().await.map_err(store_failure)? {
            if group.members.iter().any(|m| &m.user == me) {
                for member in &group.members {
                    known.insert(member.user.clone());
                }
            }
        }
        for call in &calls {
            known.insert(call.caller.clone());
            known.insert(call.callee.clone());
        }
        for user in &account.blocked {
            known.insert(user.clone());
        }
        known.remove(me);
        // Only people with accounts can be called; guests of rooms are not listed.
        let mut accounts: HashMap<UserId, Account> = HashMap::new();
        for user in &known {
            if let Some(found) = self
                .store
                .account_by_user(user)
                .await
                .map_err(store_failure)?
            {
                accounts.insert(user.clone(), found);
            }
        }
        let mut seen: HashMap<UserId, PersonInfo> = HashMap::new();
        for (user, found) in &accounts {
            seen.insert(user.clone(), self.person(found).await);
        }
        let mut people: Vec<PersonInfo> = seen
            .values()
            .filter(|p| !account.blocked.contains(&p.user))
            .cloned()
            .collect();
        people.sort_by_key(|p| p.name.to_lowercase());
        let blocked = account
            .blocked
            .iter()
            .filter_map(|u| seen.get(u).cloned())
            .collect();
        let calls = calls
            .iter()
            .filter_map(|call| record_for(me, call, &seen))
            .collect();
        self.directory
            .watch(device, people.iter().map(|p| p.user.clone()).collect());
        Ok(ServerMessage::Contacts {
            people,
            calls,
            blocked,
        })
    }

    /// Block `user` (or not) for `account`; the account as saved.
    pub async fn block(
        &self,
        account: &Account,
        user: &UserId,
        blocked: bool,
    ) -> Result<Account, Failure> {
        if user == &account.user {
            return Err((ErrorCode::InvalidInput, "you cannot block yourself".into()));
        }
        let mut account = self.stored(account).await?;
        account.blocked.retain(|u| u != user);
        if blocked {
            if account.blocked.len() >= MAX_BLOCKED {
                return Err((
                    ErrorCode::InvalidInput,
                    format!("at most {MAX_BLOCKED} people can be blocked; unblock someone first"),
                ));
            }
            if self.account_of(user).await?.is_none() {
                return Err((ErrorCode::UserNotFound, "nobody has that account".into()));
            }
            account.blocked.push(user.clone());
        }
        self.store
            .save_account(&account)
            .await
            .map_err(store_failure)?;
        Ok(account)
    }

    /// Whether `a` and `b` are contacts for the purpose of a direct call: they share a
    /// group chat, or one of them answered a call of the other before. Anyone else is a
    /// stranger, whose calls go through the media server (neither learns the other's
    /// address).
    pub async fn knows(&self, a: &UserId, b: &UserId) -> Result<bool, Failure> {
        let answered = self.store.calls_of(a).await.map_err(store_failure)?;
        if answered.iter().any(|call| {
            call.answered_ms.is_some()
                && ((&call.caller == a && &call.callee == b)
                    || (&call.caller == b && &call.callee == a))
        }) {
            return Ok(true);
        }
        let groups = self.groups.groups().await.map_err(store_failure)?;
        Ok(groups.iter().any(|group| {
            group.members.iter().any(|m| &m.user == a) && group.members.iter().any(|m| &m.user == b)
        }))
    }

    /// `account` as the store has it now (another device may have changed it since this
    /// session read it).
    async fn stored(&self, account: &Account) -> Result<Account, Failure> {
        Ok(self
            .store
            .account_by_user(&account.user)
            .await
            .map_err(store_failure)?
            .unwrap_or_else(|| account.clone()))
    }

    /// Whether every call of `account` goes through the media server; the account as saved.
    pub async fn set_call_privacy(
        &self,
        account: &Account,
        always_relay: bool,
    ) -> Result<Account, Failure> {
        let mut account = self.stored(account).await?;
        account.always_relay = always_relay;
        self.store
            .save_account(&account)
            .await
            .map_err(store_failure)?;
        Ok(account)
    }

    /// Keep the account's display name up to date with what its user calls itself now.
    pub async fn rename(&self, account: &mut Account, name: &str) {
        if account.name == name {
            return;
        }
        // The stored record, not this session's copy: another device may have changed
        // the block list or the call privacy meanwhile.
        match self.store.account_by_user(&account.user).await {
            Ok(Some(stored)) => *account = stored,
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "could not read an account to rename it"),
        }
        account.name = name.to_owned();
        if let Err(e) = self.store.save_account(account).await {
            tracing::warn!(error = %e, "could not save an account's new name");
        }
    }
}

/// What `me` sees of a stored call (none if the other side's account is gone).
fn record_for(
    me: &UserId,
    call: &StoredCall,
    people: &HashMap<UserId, PersonInfo>,
) -> Option<CallRecord> {
    let peer = people.get(if &call.caller == me {
        &call.callee
    } else {
        &call.caller
    })?;
    Some(record_as(me, call, peer.clone()))
}

/// `call` as `me` sees it in its list, with `peer` the other side.
pub fn record_as(me: &UserId, call: &StoredCall, peer: PersonInfo) -> CallRecord {
    let outgoing = &call.caller == me;
    CallRecord {
        id: call.id.clone(),
        peer,
        outgoing,
        started_at_ms: call.started_ms,
        duration_secs: call
            .answered_ms
            .map_or(0, |at| call.ended_ms.saturating_sub(at) / 1000),
        end: call.end,
        missed: !outgoing && call.end.missed(),
        path: call.path,
    }
}

/// An account as its own user sees it.
pub fn account_info(account: &Account) -> AccountInfo {
    AccountInfo {
        user: account.user.clone(),
        handle: account.handle.clone(),
        name: account.name.clone(),
        always_relay: account.always_relay,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::Arc;

    use super::*;
    use crate::store::EmbeddedStore;
    use crate::store::people::PeopleStore;

    fn account(n: usize) -> Account {
        Account {
            user: UserId::random(),
            handle: format!("p{n}"),
            name: format!("P {n}"),
            password_hash: String::new(),
            created_ms: 0,
            blocked: Vec::new(),
            always_relay: false,
        }
    }

    /// The block list lives in the account's record: it is bounded, and the limit is
    /// said in words; unblocking makes room again.
    #[tokio::test]
    async fn a_block_list_is_bounded() {
        let path = std::env::temp_dir().join(format!("chorus-people-{}.redb", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let store = Arc::new(EmbeddedStore::open(&path).unwrap());
        let people = People::new(store.clone(), store.clone(), Arc::new(fleet::LocalFleet));
        let mut me = account(0);
        store.create_account(&me).await.unwrap();
        let mut others = Vec::new();
        for n in 1..=MAX_BLOCKED + 1 {
            let other = account(n);
            store.create_account(&other).await.unwrap();
            others.push(other.user);
        }
        for user in &others[..MAX_BLOCKED] {
            me = people.block(&me, user, true).await.unwrap();
        }
        assert_eq!(me.blocked.len(), MAX_BLOCKED);
        let (code, message) = people
            .block(&me, &others[MAX_BLOCKED], true)
            .await
            .unwrap_err();
        assert_eq!(code, ErrorCode::InvalidInput);
        assert!(message.contains("at most"), "{message}");
        // Blocking someone blocked already, or unblocking, is not refused.
        me = people.block(&me, &others[0], true).await.unwrap();
        me = people.block(&me, &others[0], false).await.unwrap();
        people.block(&me, &others[MAX_BLOCKED], true).await.unwrap();
        let _ = std::fs::remove_file(&path);
    }
}
