//! Room semantics: creating a room through its creator's media, joining within capacity,
//! seats, moderation and ending. Each operation changes the group chat record atomically
//! in the store, tells the room's SFU node what changed for media (grants, removal), and
//! lets the registry tell the participants — on this signaling node and, over the room
//! bus, on every other.
//!
//! The service talks only to seams: the [`Store`](crate::store::Store), the
//! [`NodeRouter`] (which SFU node holds a room) and the [`RoomBus`] (the other signaling
//! nodes). Each has a local implementation and a Redis one.

use std::collections::HashSet;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chorus_proto::fleet::{PresenceRecord, SfuNodeRecord};
use chorus_proto::signal::{
    EntryPolicy, ErrorCode, LeftReason, ParticipantInfo, Role, RoomInfo, RoomState, SeatMode,
    ServerMessage,
};
use chorus_proto::token::{Grants, TokenIssuer};
use chorus_proto::{NodeId, ParticipantId, RoomId, UserId};
use tokio::sync::mpsc;

use crate::rooms::bus::{BusEvent, Inbound, RoomBus};
use crate::rooms::group_chat::{self, Actor, GroupChat, GroupError, HoldRequest, Member};
use crate::rooms::{Outgoing, Presence, RoomRegistry, participant_info, room_info};
use crate::routing::{NodeRouter, RouteError, SfuPool};
use crate::sfu::{RelayPeer, Sfu, SfuConnector};
use crate::store::{Change, SharedStore, StoreError, UpdateError};
use crate::ws::outbox::Outbox;

mod knock;
pub use knock::knockers_of;
mod reconcile;
mod resume;

/// An error for the user: a code and words.
pub type Failure = (ErrorCode, String);

/// News for other nodes that may wait for the bus (Redis) before any is dropped.
const OUTGOING_CAPACITY: usize = 16_384;

/// Nodes an admission tries before it gives up (the room's, then others it may span).
const MAX_ADMIT_TRIES: usize = 3;

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
    /// After a start, how long seats, raised hands and held places of users who are not
    /// back wait for them before they are given up.
    pub rejoin_grace: Duration,
    /// How long a participant whose socket broke (or whose media an SFU still carries
    /// after this node restarted) waits for its session to resume before it leaves.
    pub resume_grace: Duration,
}

impl Default for RoomTimeouts {
    fn default() -> Self {
        Self {
            token_ttl: Duration::from_secs(120),
            pending: Duration::from_secs(20),
            reservation: Duration::from_secs(15),
            rejoin_grace: Duration::from_secs(60),
            resume_grace: Duration::from_secs(30),
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
    /// Who waits at the door, for a moderator (empty for everyone else).
    pub knocks: Vec<chorus_proto::signal::Knocker>,
}

/// Who asks: a user with a display name and a session to send to.
pub struct Visitor<'a> {
    /// The user.
    pub user: &'a UserId,
    /// Display name.
    pub name: &'a str,
    /// The session's frame queue.
    pub outbox: &'a Outbox,
    /// Where the client is, for the places its joins may hold (`None`: not limited).
    pub origin: Option<&'a str>,
    /// Signed in through the app backend, not a guest of the page.
    pub signed_in: bool,
}

/// Which room a call makes ([`RoomService::create_call_room`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallRoom {
    /// The call goes on through the SFU, the two alone.
    Relay,
    /// The call became a voice room others join.
    Grown,
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
    /// Who may join besides the members.
    pub entry: EntryPolicy,
}

/// Rooms of this node: store, SFU nodes, bus and registry together.
pub struct RoomService {
    /// Presences of live rooms.
    pub registry: RoomRegistry,
    store: SharedStore,
    router: Arc<dyn NodeRouter>,
    pool: SfuPool,
    bus: Arc<dyn RoomBus>,
    tokens: TokenIssuer,
    timeouts: RoomTimeouts,
    /// Sessions of this node waiting at a room's door.
    knockers: knock::Knockers,
    /// Where chat news from other nodes goes (the chat service, once it is made).
    chat_tap: std::sync::OnceLock<ChatTap>,
    /// Media at SFU nodes that no presence knows, waiting for a resume.
    orphans: resume::Orphans,
    me: Weak<RoomService>,
}

/// What the chat service is handed of the chat news other nodes publish.
pub type ChatTap = Box<dyn Fn(&RoomId, crate::rooms::bus::ChatNews) + Send + Sync>;

/// The seams a [`RoomService`] is built on, chosen at start-up.
pub struct Seams {
    /// Durable records.
    pub store: SharedStore,
    /// Which SFU node holds a room.
    pub router: Arc<dyn NodeRouter>,
    /// The other signaling nodes.
    pub bus: Arc<dyn RoomBus>,
    /// How SFU nodes are driven (gRPC; an in-process fake in room tests).
    pub sfus: Arc<dyn SfuConnector>,
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
        UpdateError::Store(e) => store_failure(e),
    }
}

pub(crate) fn store_failure(e: StoreError) -> Failure {
    match e {
        StoreError::Unavailable(reason) => {
            tracing::warn!(%reason, "store unavailable");
            (
                ErrorCode::TemporarilyUnavailable,
                "the server's storage is temporarily unavailable; nothing was changed, try again in a moment".into(),
            )
        }
        e => {
            tracing::error!(error = %e, "store failed");
            (
                ErrorCode::Internal,
                "the server could not read or save the room; try again".into(),
            )
        }
    }
}

fn route_failure(e: RouteError) -> Failure {
    match e {
        RouteError::NoNode => (ErrorCode::MediaUnavailable, e.to_string()),
        RouteError::Unavailable(_) => {
            tracing::warn!(error = %e, "node registry unavailable");
            (
                ErrorCode::TemporarilyUnavailable,
                "the server's node registry is temporarily unavailable; try again in a moment"
                    .into(),
            )
        }
        e => {
            tracing::error!(error = %e, "routing failed");
            (
                ErrorCode::Internal,
                format!("the server could not route the room: {e}"),
            )
        }
    }
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
    /// A service over its seams. Starts the task that hands the registry's news to the
    /// bus, in order.
    pub fn new(seams: Seams, tokens: TokenIssuer, timeouts: RoomTimeouts) -> Arc<Self> {
        let (outgoing, queue) = mpsc::channel(OUTGOING_CAPACITY);
        let node = seams.bus.node().clone();
        let shared = seams.bus.is_shared();
        if shared {
            tokio::spawn(drain_outgoing(seams.bus.clone(), queue));
        }
        Arc::new_cyclic(|me| Self {
            registry: RoomRegistry::new(node, outgoing, shared),
            store: seams.store,
            router: seams.router,
            pool: SfuPool::new(seams.sfus),
            bus: seams.bus,
            tokens,
            timeouts,
            knockers: knock::Knockers::default(),
            chat_tap: std::sync::OnceLock::new(),
            orphans: resume::Orphans::default(),
            me: me.clone(),
        })
    }

    /// Whether other signaling nodes share the rooms (a fleet).
    pub fn is_fleet(&self) -> bool {
        self.bus.is_shared()
    }

    /// Durable records.
    pub fn store(&self) -> &SharedStore {
        &self.store
    }

    /// Which SFU node holds which room.
    pub fn router(&self) -> &Arc<dyn NodeRouter> {
        &self.router
    }

    /// The client of an SFU node.
    pub fn sfu_client(&self, node: &SfuNodeRecord) -> Result<Sfu, Failure> {
        self.pool.client(node).map_err(route_failure)
    }

    /// The SFU node of a room (placing it if it has none, or its node is gone).
    async fn sfu_for(&self, room: &RoomId) -> Result<(SfuNodeRecord, Sfu), Failure> {
        let node = self
            .router
            .node_for_room(room)
            .await
            .map_err(route_failure)?;
        let client = self.sfu_client(&node)?;
        Ok((node, client))
    }

    /// Remove a participant at its room's SFU node (best effort: it may be gone already).
    pub async fn sfu_remove(&self, room: &RoomId, id: &ParticipantId) {
        match self.sfu_of(room, id).await {
            Ok(sfu) => {
                if let Err((_, message)) = sfu.remove(room, id).await {
                    tracing::warn!(room = %room, participant = %id, %message, "SFU removal failed");
                }
            }
            Err((_, message)) => {
                tracing::warn!(room = %room, participant = %id, %message, "SFU removal skipped");
            }
        }
    }

    /// Close a room at every SFU node it is on and forget the binding.
    /// Close a room on every SFU node it is on; the bytes its media took on them.
    async fn sfu_close(&self, room: &RoomId) -> u64 {
        let Ok(Some(node)) = self.router.bound_node(room).await else {
            return 0;
        };
        let mut bytes = 0;
        for record in self.router.room_nodes(room).await.unwrap_or_default() {
            let Ok(sfu) = self.sfu_client(&record) else {
                continue;
            };
            match sfu.close_room(room).await {
                Ok(carried) => bytes += carried,
                Err((_, message)) => {
                    tracing::warn!(room = %room, node = %record.id, %message, "SFU room close failed");
                }
            }
        }
        if let Err(e) = self.router.unbind(room, &node).await {
            tracing::warn!(room = %room, error = %e, "cannot unbind a closed room");
        }
        bytes
    }

    /// Everyone present in a room, on this node and on every other (only this node's
    /// when the others' cannot be read).
    pub async fn participants(&self, room: &RoomId) -> Vec<ParticipantInfo> {
        match self.everyone(room).await {
            Ok(list) => list,
            Err(message) => {
                tracing::warn!(room = %room, %message, "presences of other nodes unavailable");
                self.registry.participants(room)
            }
        }
    }

    /// Everyone present in a room, on this node and on every other, or why the other
    /// nodes' presences cannot be read.
    async fn everyone(&self, room: &RoomId) -> Result<Vec<ParticipantInfo>, String> {
        let mut list = self.registry.participants(room);
        if self.bus.is_shared() {
            let group = self.resolve(room).await.map_err(|(_, m)| m)?;
            let here: HashSet<ParticipantId> = list.iter().map(|p| p.id.clone()).collect();
            let remote = self.bus.presences(room).await.map_err(|e| e.to_string())?;
            list.extend(
                remote
                    .iter()
                    .filter(|(id, _)| !here.contains(id))
                    .map(|(id, record)| participant_info(id, record, &group)),
            );
        }
        Ok(list)
    }

    /// Every presence of a user in a room, whichever node holds it: (participant, held
    /// here).
    async fn presences_of(&self, room: &RoomId, user: &UserId) -> Vec<(ParticipantId, bool)> {
        let mut out: Vec<(ParticipantId, bool)> = self
            .registry
            .presences_of(room, user)
            .into_iter()
            .map(|id| (id, true))
            .collect();
        if self.bus.is_shared()
            && let Ok(remote) = self.bus.presences(room).await
        {
            for (id, record) in remote {
                if &record.user == user && !out.iter().any(|(known, _)| known == &id) {
                    out.push((id, false));
                }
            }
        }
        out
    }

    /// Take a presence out wherever it is held: here directly, elsewhere by asking its
    /// node over the bus.
    fn remove_anywhere(
        &self,
        room: &RoomId,
        id: &ParticipantId,
        here: bool,
        reason: LeftReason,
        tell_self: bool,
    ) {
        if here {
            self.registry.remove(room, id, reason, tell_self);
        } else {
            self.registry.publish(
                room,
                BusEvent::Remove {
                    participant: id.clone(),
                    reason,
                    tell_self,
                },
            );
        }
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
        self.registry.apply_group(group.clone(), true);
        self.knocks_answered(&group);
        Ok(group)
    }

    /// Tell the SFU what `user` may now do, for each of its presences (on any node).
    async fn push_grants(&self, group: &GroupChat, user: &UserId) {
        let member = group.member(user);
        let grants = grants_for(member);
        let muted = member.is_some_and(|m| m.muted_by_moderator);
        let presences = self.presences_of(&group.room, user).await;
        for (id, _) in presences {
            let sfu = match self.sfu_of(&group.room, &id).await {
                Ok(sfu) => sfu,
                Err((_, message)) => {
                    tracing::warn!(room = %group.room, participant = %id, %message, "grant update skipped");
                    continue;
                }
            };
            if let Err((_, message)) = sfu.update_grants(&group.room, &id, grants, muted).await {
                tracing::warn!(room = %group.room, participant = %id, %message, "grant update failed");
            }
        }
    }

    /// Mint a token and have the room's SFU node answer the offer.
    async fn admit(
        &self,
        group: &GroupChat,
        id: &ParticipantId,
        (user, name): (&UserId, &str),
        offer: String,
    ) -> Result<String, Failure> {
        let member = group.member(user);
        let token = self
            .tokens
            .mint(
                &group.room,
                id,
                name,
                grants_for(member),
                self.timeouts.token_ttl,
            )
            .map_err(|e| {
                (
                    ErrorCode::Internal,
                    format!("cannot issue a room token: {e}"),
                )
            })?;
        // The room's node, or (when it is full) another node the room then spans. A
        // node that refuses as full or unreachable is skipped for the next try.
        let mut tried: Vec<NodeId> = Vec::new();
        let (placement, sfu, answer) = loop {
            let placement = match self.router.node_for_participant(&group.room, &tried).await {
                Ok(p) if !tried.contains(&p.node.id) => p,
                Ok(_) | Err(RouteError::NoNode) if !tried.is_empty() => {
                    return Err((
                        ErrorCode::MediaUnavailable,
                        "every media server is full or unreachable right now; try again in a moment"
                            .into(),
                    ));
                }
                Ok(p) => p,
                Err(e) => return Err(route_failure(e)),
            };
            let sfu = self.sfu_client(&placement.node)?;
            match sfu.admit(token.clone(), offer.clone()).await {
                Ok(answer) => break (placement, sfu, answer),
                Err((ErrorCode::MediaUnavailable, message)) if tried.len() < MAX_ADMIT_TRIES => {
                    tracing::info!(room = %group.room, node = %placement.node.id, %message, "node refused; trying another");
                    tried.push(placement.node.id);
                }
                Err(failure) => return Err(failure),
            }
        };
        if member.is_some_and(|m| m.muted_by_moderator) {
            let _ = sfu
                .update_grants(&group.room, id, grants_for(member), true)
                .await;
        }
        self.registry
            .set_admitted(&group.room, id, &placement.node.id);
        if placement.new_in_room {
            self.update_relays(&group.room).await;
        }
        Ok(answer)
    }

    /// Tell every node of a room that spans nodes who the others are, so that each
    /// relays its own speakers to them (one stream per speaker per node).
    async fn update_relays(&self, room: &RoomId) {
        let nodes = match self.router.room_nodes(room).await {
            Ok(nodes) => nodes,
            Err(e) => {
                tracing::warn!(room = %room, error = %e, "cannot list the room's nodes; relays not updated");
                return;
            }
        };
        for node in &nodes {
            let peers: Vec<RelayPeer> = nodes
                .iter()
                .filter(|n| n.id != node.id)
                .filter_map(|n| n.relay_addr())
                .map(|addr| RelayPeer {
                    addr: addr.to_owned(),
                })
                .collect();
            let result = match self.sfu_client(node) {
                Ok(sfu) => sfu.set_relays(room, &peers).await,
                Err(failure) => Err(failure),
            };
            match result {
                Ok(()) => {
                    tracing::info!(room = %room, node = %node.id, peers = peers.len(), "relays set");
                }
                Err((_, message)) => {
                    tracing::warn!(room = %room, node = %node.id, %message, "cannot set the room's relays");
                }
            }
        }
    }

    /// The SFU node holding a participant's media: its presence's (here or on another
    /// signaling node), else the room's own node.
    async fn sfu_of(&self, room: &RoomId, id: &ParticipantId) -> Result<Sfu, Failure> {
        let mut node = self.registry.sfu_of(room, id);
        if node.is_none()
            && self.bus.is_shared()
            && let Ok(remote) = self.bus.presences(room).await
        {
            node = remote
                .into_iter()
                .find(|(p, _)| p == id)
                .and_then(|(_, record)| record.sfu);
        }
        if let Some(node) = node
            && let Ok(nodes) = self.router.nodes().await
            && let Some(record) = nodes.iter().find(|n| n.id == node)
        {
            return self.sfu_client(record);
        }
        self.sfu_for(room).await.map(|(_, sfu)| sfu)
    }

    async fn entered(&self, group: &GroupChat, you: ParticipantId, answer: String) -> Entered {
        self.registry.announce_arrival(&group.room, &you);
        let knocks = match self.registry.user_of(&group.room, &you) {
            Some((user, _)) if group.member(&user).is_some_and(|m| m.role.moderates()) => {
                knockers_of(group)
            }
            _ => Vec::new(),
        };
        let participants = self.participants(&group.room).await;
        self.registry.told_of(&group.room, &participants);
        Entered {
            room: room_info(group),
            you,
            answer,
            participants,
            knocks,
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
        let mut group = GroupChat::new(
            settings.title,
            visitor.user.clone(),
            visitor.name.to_owned(),
            capacity,
            seats,
            settings.seat_mode,
            now_secs(),
        );
        group.entry = settings.entry;
        self.store
            .create_group(&group)
            .await
            .map_err(store_failure)?;
        let id = ParticipantId::random();
        self.registry
            .add(&group, id.clone(), self.presence(&visitor));
        let answer = match self
            .admit(&group, &id, (visitor.user, visitor.name), offer)
            .await
        {
            Ok(answer) => answer,
            Err(failure) => {
                self.roll_back(&group, None).await;
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
        Ok(self.entered(&group, id, answer).await)
    }

    fn presence(&self, visitor: &Visitor<'_>) -> Presence {
        Presence {
            record: PresenceRecord {
                user: visitor.user.clone(),
                name: visitor.name.to_owned(),
                self_muted: false,
                connected: false,
                node: self.registry.node().clone(),
                sfu: None,
            },
            admitted_at: None,
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
            self.roll_back(&group, Some(creator)).await;
        }
    }

    /// Undo a pending room: media, record and presence.
    /// The creator is told why when `tell_creator` names its presence.
    async fn roll_back(&self, group: &GroupChat, tell_creator: Option<&ParticipantId>) {
        if let Some(outbox) =
            tell_creator.and_then(|creator| self.registry.outbox_of(&group.room, creator))
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
        self.registry
            .close(&group.room, LeftReason::RoomClosed, true);
        self.sfu_close(&group.room).await;
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
        let (origin, signed_in) = (visitor.origin.map(str::to_owned), visitor.signed_in);
        let group = self
            .change(
                room,
                Box::new(move |g| {
                    let hold = HoldRequest {
                        now: now_secs(),
                        ttl_secs: ttl,
                        origin: origin.as_deref(),
                        signed_in,
                    };
                    g.hold_place(&user, &name, &hold).map(|_| ())
                }),
            )
            .await?;
        // One presence per user and room: a second tab replaces the first, on any node.
        for (old, here) in self.presences_of(room, visitor.user).await {
            self.remove_anywhere(room, &old, here, LeftReason::Replaced, true);
            self.sfu_remove(room, &old).await;
        }
        let id = ParticipantId::random();
        self.registry
            .add(&group, id.clone(), self.presence(&visitor));
        match self
            .admit(&group, &id, (visitor.user, visitor.name), offer)
            .await
        {
            Ok(answer) => {
                tracing::info!(room = %room, participant = %id, user = %visitor.user, "joining");
                Ok(self.entered(&group, id, answer).await)
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
        self.sfu_remove(room, id).await;
        self.after_departure(group, room, &user).await;
    }

    async fn after_departure(&self, group: Option<GroupChat>, room: &RoomId, user: &UserId) {
        match group {
            Some(group) if group.state == RoomState::Pending && &group.owner == user => {
                self.roll_back(&group, None).await;
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
                .update_presence(room, id, |p| p.record.connected = true);
        }
        if let Err((code, message)) = result {
            // The place was lost meanwhile (removed, or expired and taken): out it goes.
            tracing::info!(room = %room, participant = %id, %message, "connected but cannot be confirmed");
            if let Some(outbox) = self.registry.outbox_of(room, id) {
                outbox.send(ServerMessage::Error { code, message });
            }
            let reason = match code {
                ErrorCode::RoomFull => LeftReason::RoomFull,
                _ => LeftReason::Removed,
            };
            self.registry.remove(room, id, reason, true);
            self.sfu_remove(room, id).await;
        }
    }

    /// The SFU reports a participant gone (connection lost, timed out, removed).
    pub async fn on_left(&self, room: &RoomId, id: &ParticipantId, reason: LeftReason) {
        let group = self.registry.group(room);
        let Some(user) = self.registry.remove(room, id, reason, true) else {
            return;
        };
        self.after_departure(group, room, &user).await;
    }

    /// The SFU node carrying some of this node's sessions is gone: each is told to
    /// reconnect its media (a new offer), keeping its place, seat and role meanwhile.
    pub async fn sfu_node_lost(&self, node: &NodeId) {
        self.pool.forget(node);
        let lost = self.registry.presences_on(node);
        if !lost.is_empty() {
            tracing::warn!(sfu = %node, sessions = lost.len(), "asking sessions to move their media to another node");
        }
        for (room, id, _, _) in lost {
            self.registry.update_presence(&room, &id, |p| {
                p.record.connected = false;
                p.record.sfu = None;
                p.admitted_at = None;
            });
            if let Some(outbox) = self.registry.outbox_of(&room, &id) {
                outbox.send(ServerMessage::ReconnectMedia {
                    reason:
                        "the media server carrying this room went away; reconnecting your audio"
                            .into(),
                });
            }
        }
    }

    /// A session's fresh offer after [`ServerMessage::ReconnectMedia`]: admitted on the
    /// room's node as it is now (placed again if its node is gone), same participant.
    pub async fn reconnect_media(
        &self,
        room: &RoomId,
        id: &ParticipantId,
        offer: String,
    ) -> Result<String, Failure> {
        let (user, name) = self
            .registry
            .user_of(room, id)
            .ok_or_else(|| (ErrorCode::NotInRoom, "you are not in a room".to_owned()))?;
        let group = self.resolve(room).await?;
        let answer = self.admit(&group, id, (&user, &name), offer).await?;
        // Its node may have replaced a lost one of a room that spans nodes.
        if self
            .router
            .room_nodes(room)
            .await
            .is_ok_and(|n| n.len() > 1)
        {
            self.update_relays(room).await;
        }
        tracing::info!(room = %room, participant = %id, "media reconnected");
        Ok(answer)
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
            .update_presence(room, id, |p| p.record.self_muted = muted);
    }

    /// The user behind one's own participant.
    pub fn actor(&self, room: &RoomId, id: &ParticipantId) -> Result<UserId, Failure> {
        self.registry
            .user_of(room, id)
            .map(|(user, _)| user)
            .ok_or_else(|| (ErrorCode::NotInRoom, "you are not in a room".into()))
    }

    /// The user behind another participant, whichever node holds it.
    pub async fn target(&self, room: &RoomId, id: &ParticipantId) -> Result<UserId, Failure> {
        if let Some((user, _)) = self.registry.user_of(room, id) {
            return Ok(user);
        }
        if self.bus.is_shared()
            && let Ok(remote) = self.bus.presences(room).await
            && let Some((_, record)) = remote.into_iter().find(|(known, _)| known == id)
        {
            return Ok(record.user);
        }
        Err(not_present())
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
            for (id, here) in self.presences_of(room, target).await {
                self.sfu_remove(room, &id).await;
                self.remove_anywhere(room, &id, here, LeftReason::Removed, true);
            }
            tracing::info!(room = %room, user = %target, "removed by a moderator");
        } else {
            self.push_grants(&group, target).await;
        }
        Ok(())
    }

    /// `actor` (a moderator, or the server API) locks or unlocks the room, or says who
    /// may join; everyone present is told (`room_updated`).
    pub async fn set_access(
        &self,
        room: &RoomId,
        actor: &Actor,
        locked: Option<bool>,
        entry: Option<EntryPolicy>,
    ) -> Result<GroupChat, Failure> {
        let actor = actor.clone();
        let group = self
            .change(room, Box::new(move |g| g.set_access(&actor, locked, entry)))
            .await?;
        tracing::info!(room = %room, locked = group.locked, entry = ?group.entry, "room access changed");
        Ok(group)
    }

    /// Hand chat news from other nodes to `tap` from now on (once; later taps are ignored).
    pub fn on_chat(&self, tap: ChatTap) {
        let _ = self.chat_tap.set(tap);
    }

    /// Publish chat news to the other nodes of the fleet (every node: a member may follow
    /// the chat of a room that is not live anywhere).
    pub fn publish_chat(&self, room: &RoomId, news: crate::rooms::bus::ChatNews) {
        self.registry.publish(room, BusEvent::Chat { news });
    }

    /// `actor` mutes `user` in the room's group chat, or lets them write again.
    pub async fn set_chat_muted(
        &self,
        room: &RoomId,
        actor: &Actor,
        user: &UserId,
        muted: bool,
    ) -> Result<GroupChat, Failure> {
        let (actor, who) = (actor.clone(), user.clone());
        self.change(
            room,
            Box::new(move |g| g.set_chat_muted(&actor, &who, muted)),
        )
        .await
    }

    /// The app backend puts `user` (named `name`) in the room's group chat as a member.
    pub async fn put_member(
        &self,
        room: &RoomId,
        user: &UserId,
        name: &str,
    ) -> Result<GroupChat, Failure> {
        let (who, name) = (user.clone(), name.to_owned());
        let group = self
            .change(room, Box::new(move |g| g.put_member(&who, &name)))
            .await?;
        tracing::info!(room = %room, "member put in over the server API");
        Ok(group)
    }

    /// `actor` (a moderator) ends the room for everyone; the bytes its media took on the
    /// SFU nodes over its life.
    pub async fn end(&self, room: &RoomId, actor: &Actor) -> Result<u64, Failure> {
        let actor = actor.clone();
        self.change(room, Box::new(move |g| g.end(&actor))).await?;
        let bytes = self.sfu_close(room).await;
        self.registry.close(room, LeftReason::RoomClosed, true);
        tracing::info!(room = %room, bytes, "room ended");
        Ok(bytes)
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
        group.entry = settings.entry;
        group.state = RoomState::Active;
        self.store
            .create_group(&group)
            .await
            .map_err(store_failure)?;
        Ok(group)
    }

    /// The room of a 1:1 call, active at once, both users members on a seat (the caller
    /// the owner). [`CallRoom::Relay`]: where the call goes on when it cannot go browser to
    /// browser — locked, two places, two seats. [`CallRoom::Grown`]: "add someone" — an
    /// open room of the default size that anyone with its link joins, the callee a
    /// moderator.
    pub async fn create_call_room(
        &self,
        kind: CallRoom,
        title: String,
        caller: (&UserId, &str),
        callee: (&UserId, &str),
    ) -> Result<RoomId, Failure> {
        let (capacity, seats, seat_mode, role) = match kind {
            CallRoom::Relay => (2, 2, SeatMode::Open, Role::Member),
            CallRoom::Grown => {
                let (capacity, seats) =
                    group_chat::validate_settings(DEFAULT_CAPACITY, DEFAULT_SEATS)
                        .map_err(|e| group_failure(&e))?;
                (capacity, seats, SeatMode::default(), Role::Moderator)
            }
        };
        let mut group = GroupChat::new(
            title,
            caller.0.clone(),
            caller.1.to_owned(),
            capacity,
            seats,
            seat_mode,
            now_secs(),
        );
        group.members.push(Member {
            user: callee.0.clone(),
            name: callee.1.to_owned(),
            role,
            seated: true,
            hand_raised: false,
            muted_by_moderator: false,
        });
        group.locked = kind == CallRoom::Relay;
        group.state = RoomState::Active;
        self.store
            .create_group(&group)
            .await
            .map_err(store_failure)?;
        Ok(group.room)
    }

    /// Every group chat, for the server API.
    pub async fn all(&self) -> Result<Vec<GroupChat>, Failure> {
        self.store.groups().await.map_err(store_failure)
    }
}

/// Hand the registry's outgoing news to the bus, one at a time and in order.
async fn drain_outgoing(bus: Arc<dyn RoomBus>, mut queue: mpsc::Receiver<Outgoing>) {
    while let Some(item) = queue.recv().await {
        let result = match &item {
            Outgoing::Publish(envelope) => bus.publish(envelope).await,
            Outgoing::Put(room, id, record) => bus.put_presence(room, id, record).await,
            Outgoing::Remove(room, id) => bus.remove_presence(room, id).await.map(|_| ()),
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "room bus: could not hand on news; other nodes may be behind until it recovers");
        }
    }
}

impl RoomService {
    /// Apply what another node published, and re-read what may have been missed when the
    /// subscription was down. Runs until the bus stops.
    pub async fn follow_bus(self: Arc<Self>, mut inbound: mpsc::UnboundedReceiver<Inbound>) {
        while let Some(item) = inbound.recv().await {
            match item {
                Inbound::Event(envelope) => self.apply_bus_event(envelope.room, envelope.event),
                Inbound::Returned => self.end_cleared_sessions().await,
                Inbound::Resubscribed => {
                    for room in self.registry.live_rooms() {
                        if let Ok(Some(group)) = self.store.group_by_room(&room).await {
                            self.knocks_answered(&group);
                            self.registry.apply_group(group, false);
                        }
                        // Arrivals and departures on other nodes may have been missed.
                        match self.everyone(&room).await {
                            Ok(current) => self.registry.resync_remote(&room, &current),
                            Err(message) => {
                                tracing::warn!(room = %room, %message, "cannot re-sync presences after a bus gap");
                            }
                        }
                    }
                }
            }
        }
    }

    /// This node was cut off from the fleet long enough for its record to expire: the
    /// sessions whose presences another node cleared meanwhile (told the room they left,
    /// removed their media, gave back their seats) must not carry on as if nothing
    /// happened — nor come back as ghosts the next time this node re-announces. Each is
    /// told `left` (`server_restarting`) and its socket closes with 1012, so that the
    /// client joins again, here or on another node. Presences nobody cleared go on.
    async fn end_cleared_sessions(&self) {
        for room in self.registry.live_rooms() {
            let present: HashSet<ParticipantId> = match self.bus.presences(&room).await {
                Ok(all) => all.into_iter().map(|(id, _)| id).collect(),
                Err(e) => {
                    tracing::warn!(room = %room, error = %e, "cannot check this node's presences after its outage");
                    continue;
                }
            };
            for info in self.registry.participants(&room) {
                if present.contains(&info.id) {
                    continue;
                }
                self.end_cleared(&room, &info.id);
            }
        }
    }

    /// End the session of a presence the fleet cleared while this node was cut off:
    /// `left` (`server_restarting`), then the socket closes with 1012.
    fn end_cleared(&self, room: &RoomId, id: &ParticipantId) {
        tracing::warn!(room = %room, participant = %id, "cleared by the fleet while this node was cut off; ending its session");
        let outbox = self.registry.outbox_of(room, id);
        self.registry
            .remove(room, id, LeftReason::ServerRestarting, true);
        if let Some(outbox) = outbox {
            tokio::spawn(async move {
                outbox
                    .close(
                        chorus_proto::signal::close::SERVER_RESTARTING,
                        "this server lost the fleet for a while; join again".into(),
                        Duration::from_secs(5),
                    )
                    .await
            });
        }
    }

    /// The SFU removed one of this node's presences, and this node did not ask: another
    /// node did. A moderator's removal leaves the presence in the directory (its own
    /// `Remove` follows over the bus); a presence gone from it (or a directory that cannot
    /// be read yet, as just after an outage) was cleared by a node that took this one
    /// for dead, and the session ends to join again rather than hear "removed".
    pub async fn on_removed_elsewhere(&self, room: &RoomId, id: &ParticipantId) {
        if self.bus.is_shared() {
            let listed = match self.bus.presences(room).await {
                Ok(all) => all.iter().any(|(p, _)| p == id),
                Err(_) => false,
            };
            if !listed {
                self.end_cleared(room, id);
                return;
            }
        }
        self.on_left(room, id, LeftReason::Removed).await;
    }

    fn apply_bus_event(&self, room: RoomId, event: BusEvent) {
        match event {
            BusEvent::Group { group } => {
                self.knocks_answered(&group);
                self.registry.apply_group(*group, false);
            }
            BusEvent::Tell { news, except } => self.registry.deliver(&room, &news, except.as_ref()),
            BusEvent::Remove {
                participant,
                reason,
                tell_self,
            } => {
                self.registry.remove(&room, &participant, reason, tell_self);
            }
            BusEvent::Close { reason } => self.registry.close(&room, reason, false),
            BusEvent::Chat { news } => {
                if let Some(tap) = self.chat_tap.get() {
                    tap(&room, news);
                }
            }
        }
    }

    /// Clear, every couple of seconds, the presences of signaling nodes that died: the
    /// room is told they left, their media is removed, their seats and held places are
    /// given back (a pending room whose creator was there is rolled back). Runs forever.
    pub async fn sweep_orphans(self: Arc<Self>, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let orphans = match self.bus.claim_orphans().await {
                Ok(orphans) => orphans,
                Err(e) => {
                    tracing::debug!(error = %e, "orphan sweep skipped");
                    continue;
                }
            };
            // Their sessions may resume on any node: see `resume.rs`.
            self.swept(orphans).await;
        }
    }

    /// This node's presences on an SFU node, for re-syncing after its event stream
    /// (re)connected: (room, participant, connected, admitted at).
    pub fn presences_on(&self, sfu: &NodeId) -> Vec<(RoomId, ParticipantId, bool, Instant)> {
        self.registry.presences_on(sfu)
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
