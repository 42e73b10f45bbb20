//! Room semantics: creating a room through its creator's media, joining within capacity,
//! seats, moderation and ending. Each operation changes the group chat record atomically
//! in the store, tells the SFU what changed for media (grants, removal), and lets the
//! registry tell the participants.

use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chorus_proto::signal::{
    ErrorCode, LeftReason, ParticipantInfo, Role, RoomInfo, RoomState, SeatMode, ServerMessage,
};
use chorus_proto::token::{Grants, TokenIssuer};
use chorus_proto::{ParticipantId, RoomId, UserId};

use crate::rooms::group_chat::{self, Actor, GroupChat, GroupError, Member};
use crate::rooms::{Presence, RoomRegistry, room_info};
use crate::sfu_client::SfuClient;
use crate::store::{Change, SharedStore, UpdateError};
use crate::ws::outbox::Outbox;

/// An error for the user: a code and words.
pub type Failure = (ErrorCode, String);

/// Default capacity of a room created without one.
pub const DEFAULT_CAPACITY: i64 = 50;
/// Default mic seats of a room created without a number.
pub const DEFAULT_SEATS: i64 = 5;

/// Times that bound a room's lifecycle.
#[derive(Debug, Clone, Copy)]
pub struct RoomTimeouts {
    /// Lifetime of a minted room token (only needed to enter).
    pub token_ttl: Duration,
    /// How long a new room waits for its creator's media before it is rolled back.
    pub pending: Duration,
    /// How long a joiner's place is held while its media connects.
    pub reservation: Duration,
}

impl Default for RoomTimeouts {
    fn default() -> Self {
        Self {
            token_ttl: Duration::from_secs(120),
            pending: Duration::from_secs(20),
            reservation: Duration::from_secs(30),
        }
    }
}

/// What a session learns when it enters a room.
pub struct Entered {
    /// The room.
    pub room: RoomInfo,
    /// Its participant id.
    pub you: ParticipantId,
    /// The SFU's SDP answer.
    pub answer: String,
    /// Everyone present.
    pub participants: Vec<ParticipantInfo>,
}

/// Who asks: a user with a display name and a session to send to.
pub struct Visitor<'a> {
    /// The user.
    pub user: &'a UserId,
    /// Display name.
    pub name: &'a str,
    /// The session's frame queue.
    pub outbox: &'a Outbox,
}

/// Settings of a room being created.
pub struct NewRoom {
    /// Title.
    pub title: String,
    /// Most members, as given (validated here).
    pub capacity: Option<i64>,
    /// Most speakers, as given (validated here).
    pub seats: Option<i64>,
    /// How listeners get a seat.
    pub seat_mode: SeatMode,
}

/// Rooms of this node: store, SFU and registry together.
pub struct RoomService {
    /// Presences of live rooms.
    pub registry: RoomRegistry,
    store: SharedStore,
    sfu: SfuClient,
    tokens: TokenIssuer,
    timeouts: RoomTimeouts,
    me: Weak<RoomService>,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn group_failure(e: &GroupError) -> Failure {
    (e.code(), e.to_string())
}

fn update_failure(e: UpdateError) -> Failure {
    match e {
        UpdateError::Group(e) => group_failure(&e),
        UpdateError::Store(e) => {
            tracing::error!(error = %e, "store update failed");
            (
                ErrorCode::Internal,
                "the server could not save that; try again".into(),
            )
        }
    }
}

fn store_failure(e: crate::store::StoreError) -> Failure {
    tracing::error!(error = %e, "store failed");
    (
        ErrorCode::Internal,
        "the server could not read or save the room; try again".into(),
    )
}

/// What a member may do at the SFU.
fn grants_for(member: Option<&Member>) -> Grants {
    Grants {
        publish: member.is_some_and(|m| m.seated),
        subscribe: true,
        admin: member.is_some_and(|m| m.role.moderates()),
    }
}

fn not_present() -> Failure {
    (
        ErrorCode::NotInRoom,
        "that participant is not in the room".into(),
    )
}

impl RoomService {
    /// A service over `store` and `sfu`.
    pub fn new(
        store: SharedStore,
        sfu: SfuClient,
        tokens: TokenIssuer,
        timeouts: RoomTimeouts,
    ) -> Arc<Self> {
        Arc::new_cyclic(|me| Self {
            registry: RoomRegistry::default(),
            store,
            sfu,
            tokens,
            timeouts,
            me: me.clone(),
        })
    }

    /// The SFU node these rooms live on.
    pub fn sfu(&self) -> &SfuClient {
        &self.sfu
    }

    /// The group chat of a room: the live copy, else the store's.
    pub async fn resolve(&self, room: &RoomId) -> Result<GroupChat, Failure> {
        if let Some(group) = self.registry.group(room) {
            return Ok(group);
        }
        match self
            .store
            .group_by_room(room)
            .await
            .map_err(store_failure)?
        {
            Some(group) => Ok(group),
            None => Err((
                ErrorCode::RoomNotFound,
                format!("there is no room '{room}'; check the link"),
            )),
        }
    }

    /// Apply a change to a room's group chat atomically and tell everyone.
    async fn change(&self, room: &RoomId, mut change: Change) -> Result<GroupChat, Failure> {
        let group = self.resolve(room).await?;
        // Every saved change bumps the version, so that the live copy never takes an
        // older record over a newer one when two changes finish out of order.
        let versioned: Change = Box::new(move |g| {
            change(g)?;
            g.version += 1;
            Ok(())
        });
        let group = self
            .store
            .update_group(&group.id, versioned)
            .await
            .map_err(update_failure)?;
        self.registry.apply_group(group.clone());
        Ok(group)
    }

    /// Tell the SFU what `user` may now do, for each of its presences.
    async fn push_grants(&self, group: &GroupChat, user: &UserId) {
        let member = group.member(user);
        let grants = grants_for(member);
        let muted = member.is_some_and(|m| m.muted_by_moderator);
        for id in self.registry.presences_of(&group.room, user) {
            if let Err((_, message)) = self
                .sfu
                .update_grants(&group.room, &id, grants, muted)
                .await
            {
                tracing::warn!(room = %group.room, participant = %id, %message, "grant update failed");
            }
        }
    }

    /// Mint a token and have the SFU answer the offer.
    async fn admit(
        &self,
        group: &GroupChat,
        id: &ParticipantId,
        visitor: &Visitor<'_>,
        offer: String,
    ) -> Result<String, Failure> {
        let member = group.member(visitor.user);
        let token = self
            .tokens
            .mint(
                &group.room,
                id,
                visitor.name,
                grants_for(member),
                self.timeouts.token_ttl,
            )
            .map_err(|e| {
                (
                    ErrorCode::Internal,
                    format!("cannot issue a room token: {e}"),
                )
            })?;
        let answer = self.sfu.admit(token, offer).await?;
        if member.is_some_and(|m| m.muted_by_moderator) {
            let _ = self
                .sfu
                .update_grants(&group.room, id, grants_for(member), true)
                .await;
        }
        Ok(answer)
    }

    fn entered(&self, group: &GroupChat, you: ParticipantId, answer: String) -> Entered {
        self.registry.announce_arrival(&group.room, &you);
        Entered {
            room: room_info(group),
            you,
            answer,
            participants: self.registry.participants(&group.room),
        }
    }

    /// Create a room whose creator enters it at once. The room stays pending until the
    /// creator's media connects, and is rolled back if that does not happen in time.
    pub async fn create(
        &self,
        visitor: Visitor<'_>,
        settings: NewRoom,
        offer: String,
    ) -> Result<Entered, Failure> {
        let (capacity, seats) = group_chat::validate_settings(
            settings.capacity.unwrap_or(DEFAULT_CAPACITY),
            settings.seats.unwrap_or(DEFAULT_SEATS),
        )
        .map_err(|e| group_failure(&e))?;
        let group = GroupChat::new(
            settings.title,
            visitor.user.clone(),
            visitor.name.to_owned(),
            capacity,
            seats,
            settings.seat_mode,
            now_secs(),
        );
        self.store
            .create_group(&group)
            .await
            .map_err(store_failure)?;
        let id = ParticipantId::random();
        self.registry
            .add(&group, id.clone(), self.presence(&visitor));
        let answer = match self.admit(&group, &id, &visitor, offer).await {
            Ok(answer) => answer,
            Err(failure) => {
                self.roll_back(&group, &id, false).await;
                return Err(failure);
            }
        };
        tracing::info!(room = %group.room, group = %group.id, creator = %visitor.user, "room created (pending)");
        if let Some(service) = self.me.upgrade() {
            let (room, creator, wait) = (group.room.clone(), id.clone(), self.timeouts.pending);
            tokio::spawn(async move {
                tokio::time::sleep(wait).await;
                service.expire_pending(&room, &creator).await;
            });
        }
        Ok(self.entered(&group, id, answer))
    }

    fn presence(&self, visitor: &Visitor<'_>) -> Presence {
        Presence {
            user: visitor.user.clone(),
            name: visitor.name.to_owned(),
            self_muted: false,
            connected: false,
            outbox: visitor.outbox.clone(),
        }
    }

    /// A room still pending after its wait is rolled back.
    async fn expire_pending(&self, room: &RoomId, creator: &ParticipantId) {
        let Ok(Some(group)) = self.store.group_by_room(room).await else {
            return;
        };
        if group.state == RoomState::Pending {
            tracing::info!(room = %room, "the creator's media never connected; rolling the room back");
            self.roll_back(&group, creator, true).await;
        }
    }

    /// Undo a pending room: media, record and presence.
    async fn roll_back(&self, group: &GroupChat, creator: &ParticipantId, tell: bool) {
        if let Some(outbox) = self
            .registry
            .outbox_of(&group.room, creator)
            .filter(|_| tell)
        {
            outbox.send(ServerMessage::Error {
                code: ErrorCode::MediaUnavailable,
                message: "your audio never connected, so the room was not created".into(),
            });
        }
        // Record first: once the creator is told `left`, the room must already be gone.
        if let Err(e) = self.store.delete_group(&group.id).await {
            tracing::error!(group = %group.id, error = %e, "cannot roll back a pending room");
        }
        self.registry.close(&group.room, LeftReason::RoomClosed);
        let _ = self.sfu.close_room(&group.room).await;
    }

    /// Join a room within its capacity. The place is held while the media connects and
    /// becomes membership when it does.
    pub async fn join(
        &self,
        visitor: Visitor<'_>,
        room: &RoomId,
        offer: String,
    ) -> Result<Entered, Failure> {
        let (user, name, ttl) = (
            visitor.user.clone(),
            visitor.name.to_owned(),
            self.timeouts.reservation.as_secs(),
        );
        let group = self
            .change(
                room,
                Box::new(move |g| g.reserve_place(&user, &name, now_secs(), ttl).map(|_| ())),
            )
            .await?;
        // One presence per user and room: a second tab replaces the first.
        for old in self.registry.presences_of(room, visitor.user) {
            self.registry.remove(room, &old, LeftReason::Replaced, true);
            let _ = self.sfu.remove(room, &old).await;
        }
        let id = ParticipantId::random();
        self.registry
            .add(&group, id.clone(), self.presence(&visitor));
        match self.admit(&group, &id, &visitor, offer).await {
            Ok(answer) => {
                tracing::info!(room = %room, participant = %id, user = %visitor.user, "joining");
                Ok(self.entered(&group, id, answer))
            }
            Err(failure) => {
                self.registry.remove(room, &id, LeftReason::Left, false);
                self.release(room, visitor.user).await;
                Err(failure)
            }
        }
    }

    /// `user` is no longer present: give back a place it held, and (unless it owns the
    /// room) its seat and raised hand, so the stage shows what is really free.
    async fn release(&self, room: &RoomId, user: &UserId) {
        let Ok(group) = self.resolve(room).await else {
            return;
        };
        let holds_place = group.reservations.iter().any(|r| &r.user == user);
        let on_stage = group
            .member(user)
            .is_some_and(|m| m.role != Role::Owner && (m.seated || m.hand_raised));
        if holds_place || on_stage {
            let user = user.clone();
            let _ = self
                .change(
                    room,
                    Box::new(move |g| {
                        g.depart(&user);
                        Ok(())
                    }),
                )
                .await;
        }
    }

    /// A participant leaves on its own (or its session ended).
    pub async fn leave(&self, room: &RoomId, id: &ParticipantId, reason: LeftReason) {
        let group = self.registry.group(room);
        let Some(user) = self.registry.remove(room, id, reason, false) else {
            return;
        };
        if let Err(status) = self.sfu.remove(room, id).await {
            tracing::warn!(room = %room, participant = %id, error = %status.message(), "SFU removal failed");
        }
        self.after_departure(group, room, id, &user).await;
    }

    async fn after_departure(
        &self,
        group: Option<GroupChat>,
        room: &RoomId,
        id: &ParticipantId,
        user: &UserId,
    ) {
        match group {
            Some(group) if group.state == RoomState::Pending && &group.owner == user => {
                self.roll_back(&group, id, false).await;
            }
            _ => self.release(room, user).await,
        }
    }

    /// The SFU reports a participant's media connected.
    pub async fn on_connected(&self, room: &RoomId, id: &ParticipantId) {
        let Some((user, name)) = self.registry.user_of(room, id) else {
            return;
        };
        let Some(group) = self.registry.group(room) else {
            return;
        };
        // Membership first, then `connected`: whoever sees the participant connected may
        // rely on it being a member (e.g. to ask for a seat at once).
        let result = if group.state == RoomState::Pending && group.owner == user {
            tracing::info!(room = %room, "creator connected: room active");
            self.change(room, Box::new(GroupChat::activate)).await
        } else {
            let who = user.clone();
            self.change(room, Box::new(move |g| g.confirm_member(&who, &name)))
                .await
        };
        if result.is_ok() {
            self.registry
                .update_presence(room, id, |p| p.connected = true);
        }
        if let Err((code, message)) = result {
            // The place was lost meanwhile (removed, or expired and taken): out it goes.
            tracing::info!(room = %room, participant = %id, %message, "connected but cannot be confirmed");
            if let Some(outbox) = self.registry.outbox_of(room, id) {
                outbox.send(ServerMessage::Error { code, message });
            }
            self.registry.remove(room, id, LeftReason::Removed, true);
            let _ = self.sfu.remove(room, id).await;
        }
    }

    /// The SFU reports a participant gone (connection lost, timed out, removed).
    pub async fn on_left(&self, room: &RoomId, id: &ParticipantId, reason: LeftReason) {
        let group = self.registry.group(room);
        let Some(user) = self.registry.remove(room, id, reason, true) else {
            return;
        };
        self.after_departure(group, room, id, &user).await;
    }

    /// Leave the room and give up membership of its group chat.
    pub async fn leave_group(&self, room: &RoomId, id: &ParticipantId) -> Result<(), Failure> {
        let user = self.actor(room, id)?;
        let who = user.clone();
        self.change(room, Box::new(move |g| g.leave_group(&who)))
            .await?;
        self.leave(room, id, LeftReason::Left).await;
        tracing::info!(room = %room, user = %user, "left the group");
        Ok(())
    }

    /// Mute or unmute oneself (the client stops sending; everyone sees the icon).
    pub fn set_self_muted(&self, room: &RoomId, id: &ParticipantId, muted: bool) {
        self.registry
            .update_presence(room, id, |p| p.self_muted = muted);
    }

    /// The user behind one's own participant.
    pub fn actor(&self, room: &RoomId, id: &ParticipantId) -> Result<UserId, Failure> {
        self.registry
            .user_of(room, id)
            .map(|(user, _)| user)
            .ok_or_else(|| (ErrorCode::NotInRoom, "you are not in a room".into()))
    }

    /// The user behind another participant.
    pub fn target(&self, room: &RoomId, id: &ParticipantId) -> Result<UserId, Failure> {
        self.registry
            .user_of(room, id)
            .map(|(user, _)| user)
            .ok_or_else(not_present)
    }

    /// Ask to speak.
    pub async fn request_seat(&self, room: &RoomId, user: &UserId) -> Result<(), Failure> {
        let who = user.clone();
        let group = self
            .change(room, Box::new(move |g| g.request_seat(&who).map(|_| ())))
            .await?;
        self.push_grants(&group, user).await;
        Ok(())
    }

    /// Lower one's hand.
    pub async fn lower_hand(&self, room: &RoomId, user: &UserId) -> Result<(), Failure> {
        let who = user.clone();
        self.change(room, Box::new(move |g| g.set_hand(&who, false)))
            .await
            .map(|_| ())
    }

    /// `actor` does `action` to `target` (a member; one's own seat may always be left).
    /// The group chat's rules decide whether `actor` may.
    pub async fn moderate(
        &self,
        room: &RoomId,
        actor: &Actor,
        target: &UserId,
        action: Moderation,
    ) -> Result<(), Failure> {
        let (actor, who) = (actor.clone(), target.clone());
        let change: Change = match action {
            Moderation::Seat(true) => Box::new(move |g| g.grant_seat(&actor, &who)),
            Moderation::Seat(false) => Box::new(move |g| g.revoke_seat(&actor, &who)),
            Moderation::Mute(muted) => Box::new(move |g| g.set_moderator_mute(&actor, &who, muted)),
            Moderation::Moderator(moderator) => {
                Box::new(move |g| g.set_role(&actor, &who, moderator))
            }
            Moderation::Remove => Box::new(move |g| g.remove_member(&actor, &who)),
        };
        let group = self.change(room, change).await?;
        if action == Moderation::Remove {
            for id in self.registry.presences_of(room, target) {
                let _ = self.sfu.remove(room, &id).await;
                self.registry.remove(room, &id, LeftReason::Removed, true);
            }
            tracing::info!(room = %room, user = %target, "removed by a moderator");
        } else {
            self.push_grants(&group, target).await;
        }
        Ok(())
    }

    /// `actor` (a moderator) ends the room for everyone.
    pub async fn end(&self, room: &RoomId, actor: &Actor) -> Result<(), Failure> {
        let actor = actor.clone();
        self.change(room, Box::new(move |g| g.end(&actor))).await?;
        if let Err(status) = self.sfu.close_room(room).await {
            tracing::warn!(room = %room, error = %status.message(), "SFU room close failed");
        }
        self.registry.close(room, LeftReason::RoomClosed);
        tracing::info!(room = %room, "room ended");
        Ok(())
    }

    /// Create an active room for an app backend (server API): the backend vouches for
    /// the owner, so no creator media is awaited.
    pub async fn create_active(
        &self,
        owner: &UserId,
        owner_name: &str,
        settings: NewRoom,
    ) -> Result<GroupChat, Failure> {
        let (capacity, seats) = group_chat::validate_settings(
            settings.capacity.unwrap_or(DEFAULT_CAPACITY),
            settings.seats.unwrap_or(DEFAULT_SEATS),
        )
        .map_err(|e| group_failure(&e))?;
        let mut group = GroupChat::new(
            settings.title,
            owner.clone(),
            owner_name.to_owned(),
            capacity,
            seats,
            settings.seat_mode,
            now_secs(),
        );
        group.state = RoomState::Active;
        self.store
            .create_group(&group)
            .await
            .map_err(store_failure)?;
        Ok(group)
    }

    /// Every group chat, for the server API.
    pub async fn all(&self) -> Result<Vec<GroupChat>, Failure> {
        self.store.groups().await.map_err(store_failure)
    }
}

/// What a moderator (or the server API) can do to a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moderation {
    /// Seat (true) or unseat (false).
    Seat(bool),
    /// Mute (true) or unmute at the SFU.
    Mute(bool),
    /// Name (true) or unname a moderator; owner only.
    Moderator(bool),
    /// Remove for good.
    Remove,
}
