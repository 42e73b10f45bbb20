//! The durable record of a voice room's group chat: who owns it, who belongs to it, how
//! many may belong (capacity) and speak (mic seats), and whether it is live yet.
//!
//! Every rule about places, seats and roles lives here as plain functions on the record,
//! so that each store only has to apply them atomically (read, change, write).

use chorus_proto::signal::{EntryPolicy, ErrorCode, Role, RoomState, SeatMode};
use chorus_proto::{GroupId, RoomId, UserId};
use serde::{Deserialize, Serialize};

/// Most members a room may be created with.
pub const MAX_CAPACITY: u32 = 10_000;
/// Most mic seats a room may be created with.
pub const MAX_SEATS: u32 = 50;

/// A member of a group chat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Who.
    pub user: UserId,
    /// Display name.
    pub name: String,
    /// What they may do.
    pub role: Role,
    /// Holds a mic seat (a speaker); otherwise a listener.
    pub seated: bool,
    /// Asked for a seat.
    pub hand_raised: bool,
    /// Muted by a moderator: their audio is dropped at the SFU even in a seat.
    pub muted_by_moderator: bool,
}

/// A place held for a join whose media has not connected yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    /// Who.
    pub user: UserId,
    /// Display name.
    pub name: String,
    /// Unix seconds after which the place is free again.
    pub expires_at: u64,
    /// The network address the join came from (`None`: not known, or loopback), so that
    /// one address cannot hold many places.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
}

/// Someone asking to come into a room whose entry is `knock`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Knock {
    /// Who.
    pub user: UserId,
    /// Display name.
    pub name: String,
    /// Unix seconds when they knocked.
    pub at: u64,
}

/// How long a knock waits for a moderator (then it is dropped, and the joiner told).
pub const KNOCK_TTL_SECS: u64 = 300;
/// Most people knocking on one room at once.
pub const MAX_KNOCKS: usize = 50;

/// Most places joins from one address may hold in a room at once (their media still
/// connecting): a guest that re-joins without ever connecting cannot crowd a room.
pub const MAX_HELD_PER_ORIGIN: usize = 3;

/// A join's request for a held place.
#[derive(Debug, Clone, Copy, Default)]
pub struct HoldRequest<'a> {
    /// Unix seconds now.
    pub now: u64,
    /// How long the place is held while the media connects.
    pub ttl_secs: u64,
    /// Where the join comes from (see [`Reservation::origin`]).
    pub origin: Option<&'a str>,
    /// The user signed in through the app backend (not a guest of the page).
    pub signed_in: bool,
}

/// A group chat and its voice room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupChat {
    /// Group chat id.
    pub id: GroupId,
    /// Its voice room (the link is `/r/<room>`).
    pub room: RoomId,
    /// Title.
    pub name: String,
    /// Creator.
    pub owner: UserId,
    /// Most members.
    pub capacity: u32,
    /// Most members in a mic seat at once.
    pub seats: u32,
    /// How listeners get a seat.
    pub seat_mode: SeatMode,
    /// Where it is in its life.
    pub state: RoomState,
    /// Confirmed members.
    pub members: Vec<Member>,
    /// Places held by joins in flight.
    pub reservations: Vec<Reservation>,
    /// Removed users: refused from then on.
    pub removed: Vec<UserId>,
    /// Who may join besides the members.
    #[serde(default)]
    pub entry: EntryPolicy,
    /// No newcomers at all (members still come back).
    #[serde(default)]
    pub locked: bool,
    /// Newcomers waiting for a moderator (entry `knock`), oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub knocks: Vec<Knock>,
    /// Newcomers a moderator let in, until they are members.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub admitted: Vec<UserId>,
    /// Members a moderator muted in the group chat (they read, but do not write).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chat_muted: Vec<UserId>,
    /// Unix seconds.
    pub created_at: u64,
    /// Bumped by every saved change.
    #[serde(default)]
    pub version: u64,
}

/// Who asks for a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// A member, acting in the room.
    Member(UserId),
    /// The server API, for an app backend: the owner's powers; the owner's own seat,
    /// voice and membership are protected from it as from anyone.
    Service,
}

impl Actor {
    /// Whether this is `user` acting on itself.
    pub fn is(&self, user: &UserId) -> bool {
        matches!(self, Actor::Member(me) if me == user)
    }
}

/// Why a change to a group chat was refused. The texts are shown to users.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GroupError {
    /// Capacity or seats out of range.
    #[error("{0}")]
    InvalidSettings(String),
    /// No such group chat or room.
    #[error("there is no such room; check the link")]
    NotFound,
    /// Not live (yet, or any more).
    #[error("this room is not open")]
    NotActive,
    /// Every place is taken.
    #[error("the room is full ({0} members)")]
    Full(u32),
    /// Every mic seat is taken.
    #[error("all {0} mic seats are taken")]
    NoFreeSeat(u32),
    /// The user was removed from this room.
    #[error("you were removed from this room")]
    Removed,
    /// The room asks newcomers to knock, and this one has not been let in.
    #[error("this room asks newcomers to knock: wait for a moderator to let you in")]
    MustKnock,
    /// Nobody by that id is knocking (any more).
    #[error("that person is not waiting to come in (any more)")]
    NoSuchKnock,
    /// Too many are knocking already.
    #[error("too many people are waiting to come in; try again later")]
    TooManyKnocks,
    /// The room is locked: members only.
    #[error("this room is locked: only its members can come in")]
    Locked,
    /// The room takes signed-in users only, and this is a guest.
    #[error("this room is for signed-in users only: sign in through the app that shared the link")]
    SignedInOnly,
    /// Joins from this address already hold the most places they may.
    #[error(
        "too many joins from your network are still connecting to this room; wait a few seconds and try again"
    )]
    TooManyHeld,
    /// The user is not a member.
    #[error("that person is not a member of this room")]
    NotMember,
    /// The acting user may not do this.
    #[error("{0}")]
    Forbidden(&'static str),
}

impl GroupError {
    /// The protocol's error code.
    pub fn code(&self) -> ErrorCode {
        match self {
            GroupError::InvalidSettings(_) => ErrorCode::InvalidInput,
            GroupError::NotFound => ErrorCode::RoomNotFound,
            GroupError::NotActive => ErrorCode::RoomNotFound,
            GroupError::Full(_) => ErrorCode::RoomFull,
            GroupError::NoFreeSeat(_) => ErrorCode::NoFreeSeat,
            GroupError::Removed => ErrorCode::Forbidden,
            GroupError::TooManyHeld => ErrorCode::RateLimited,
            GroupError::Locked => ErrorCode::Forbidden,
            GroupError::MustKnock => ErrorCode::Forbidden,
            GroupError::NoSuchKnock => ErrorCode::InvalidInput,
            GroupError::TooManyKnocks => ErrorCode::RateLimited,
            GroupError::SignedInOnly => ErrorCode::Unauthorized,
            GroupError::NotMember => ErrorCode::NotInRoom,
            GroupError::Forbidden(_) => ErrorCode::Forbidden,
        }
    }
}

/// Check room settings given by a user.
pub fn validate_settings(capacity: i64, seats: i64) -> Result<(u32, u32), GroupError> {
    if !(2..=i64::from(MAX_CAPACITY)).contains(&capacity) {
        return Err(GroupError::InvalidSettings(format!(
            "capacity must be between 2 and {MAX_CAPACITY} members"
        )));
    }
    if !(1..=i64::from(MAX_SEATS)).contains(&seats) {
        return Err(GroupError::InvalidSettings(format!(
            "mic seats must be between 1 and {MAX_SEATS}"
        )));
    }
    if seats > capacity {
        return Err(GroupError::InvalidSettings(format!(
            "a room of {capacity} members cannot have {seats} mic seats"
        )));
    }
    // Both were range-checked against u32 limits above.
    Ok((capacity as u32, seats as u32))
}

/// What [`GroupChat::reserve_place`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// Already a member: no new place needed.
    Member,
    /// A place is held until the media connects.
    Reserved,
}

impl GroupChat {
    /// A new pending group chat whose creator holds the first seat.
    pub fn new(
        name: String,
        owner: UserId,
        owner_name: String,
        capacity: u32,
        seats: u32,
        seat_mode: SeatMode,
        now: u64,
    ) -> Self {
        Self {
            id: GroupId::random(),
            room: RoomId::random(),
            name,
            owner: owner.clone(),
            capacity,
            seats,
            seat_mode,
            state: RoomState::Pending,
            members: vec![Member {
                user: owner,
                name: owner_name,
                role: Role::Owner,
                seated: true,
                hand_raised: false,
                muted_by_moderator: false,
            }],
            reservations: Vec::new(),
            removed: Vec::new(),
            entry: EntryPolicy::Anyone,
            locked: false,
            knocks: Vec::new(),
            admitted: Vec::new(),
            chat_muted: Vec::new(),
            created_at: now,
            version: 0,
        }
    }

    /// The link path.
    pub fn link(&self) -> String {
        format!("/r/{}", self.room)
    }

    /// A member.
    pub fn member(&self, user: &UserId) -> Option<&Member> {
        self.members.iter().find(|m| &m.user == user)
    }

    fn member_mut(&mut self, user: &UserId) -> Result<&mut Member, GroupError> {
        self.members
            .iter_mut()
            .find(|m| &m.user == user)
            .ok_or(GroupError::NotMember)
    }

    /// Members in a mic seat.
    pub fn seated(&self) -> u32 {
        self.members.iter().filter(|m| m.seated).count() as u32
    }

    /// Drop reservations whose time is up.
    pub fn expire_reservations(&mut self, now: u64) {
        self.reservations.retain(|r| r.expires_at > now);
    }

    /// Hold a place for `user` if the room has one: the capacity check of a join (from
    /// an address not known).
    #[cfg(test)]
    pub fn reserve_place(
        &mut self,
        user: &UserId,
        name: &str,
        now: u64,
        ttl_secs: u64,
    ) -> Result<Place, GroupError> {
        let hold = HoldRequest {
            now,
            ttl_secs,
            origin: None,
            signed_in: false,
        };
        self.hold_place(user, name, &hold)
    }

    /// Most held places that count against the capacity: half of it (at least one).
    /// Joins beyond that still get a place held, but whoever connects first becomes the
    /// member ([`GroupChat::confirm_member`] checks the capacity again), so joins that
    /// never connect cannot keep real members out.
    pub fn counted_holds(&self) -> usize {
        self.reservations
            .len()
            .min((self.capacity as usize / 2).max(1))
    }

    /// Hold a place for `user` if the room has one; at most [`MAX_HELD_PER_ORIGIN`] per
    /// address.
    pub fn hold_place(
        &mut self,
        user: &UserId,
        name: &str,
        hold: &HoldRequest<'_>,
    ) -> Result<Place, GroupError> {
        let (now, ttl_secs) = (hold.now, hold.ttl_secs);
        if self.state != RoomState::Active {
            return Err(GroupError::NotActive);
        }
        if self.removed.contains(user) {
            return Err(GroupError::Removed);
        }
        if self.member(user).is_some() {
            return Ok(Place::Member);
        }
        if self.locked {
            return Err(GroupError::Locked);
        }
        if self.entry == EntryPolicy::SignedIn && !hold.signed_in {
            return Err(GroupError::SignedInOnly);
        }
        if self.entry == EntryPolicy::Knock && !self.admitted.contains(user) {
            return Err(GroupError::MustKnock);
        }
        self.expire_reservations(now);
        self.reservations.retain(|r| &r.user != user);
        if let Some(origin) = hold.origin
            && self
                .reservations
                .iter()
                .filter(|r| r.origin.as_deref() == Some(origin))
                .count()
                >= MAX_HELD_PER_ORIGIN
        {
            return Err(GroupError::TooManyHeld);
        }
        if self.members.len() + self.counted_holds() >= self.capacity as usize {
            return Err(GroupError::Full(self.capacity));
        }
        self.reservations.push(Reservation {
            user: user.clone(),
            name: name.to_owned(),
            expires_at: now + ttl_secs,
            origin: hold.origin.map(str::to_owned),
        });
        Ok(Place::Reserved)
    }

    /// Turn a held place into membership (the join's media connected). A member already
    /// is one; a place that expired meanwhile is taken again only if one is free.
    pub fn confirm_member(&mut self, user: &UserId, name: &str) -> Result<(), GroupError> {
        if self.member(user).is_some() {
            return Ok(());
        }
        if self.removed.contains(user) {
            return Err(GroupError::Removed);
        }
        let held = self.reservations.iter().position(|r| &r.user == user);
        if self.members.len() >= self.capacity as usize {
            return Err(GroupError::Full(self.capacity));
        }
        match held {
            Some(i) => {
                self.reservations.swap_remove(i);
            }
            None if self.members.len() + self.counted_holds() >= self.capacity as usize => {
                return Err(GroupError::Full(self.capacity));
            }
            None => {}
        }
        self.admitted.retain(|u| u != user);
        self.members.push(Member {
            user: user.clone(),
            name: name.to_owned(),
            role: Role::Member,
            seated: false,
            hand_raised: false,
            muted_by_moderator: false,
        });
        Ok(())
    }

    /// `user` left the room: its held place is free again, and unless it owns the room,
    /// so is its seat (the stage shows who is there) and its hand is lowered.
    pub fn depart(&mut self, user: &UserId) {
        self.release_place(user);
        if let Ok(member) = self.member_mut(user) {
            if member.role != Role::Owner {
                member.seated = false;
            }
            member.hand_raised = false;
        }
    }

    /// `user` gives up membership: its place is free for someone else.
    pub fn leave_group(&mut self, user: &UserId) -> Result<(), GroupError> {
        if self.is_owner(user) {
            return Err(GroupError::Forbidden(
                "the owner cannot leave the group; end the room instead",
            ));
        }
        self.member_mut(user)?;
        self.members.retain(|m| &m.user != user);
        self.release_place(user);
        Ok(())
    }

    /// Give back a place held by a join that failed.
    pub fn release_place(&mut self, user: &UserId) {
        self.reservations.retain(|r| &r.user != user);
    }

    fn require_moderator(&self, actor: &Actor) -> Result<(), GroupError> {
        match actor {
            Actor::Service => Ok(()),
            Actor::Member(user) => match self.member(user) {
                Some(m) if m.role.moderates() => Ok(()),
                _ => Err(GroupError::Forbidden(
                    "only the owner or a moderator may do that",
                )),
            },
        }
    }

    /// Whether `actor` has the owner's powers (naming moderators, removing them).
    fn owner_power(&self, actor: &Actor) -> bool {
        match actor {
            Actor::Service => true,
            Actor::Member(user) => user == &self.owner,
        }
    }

    fn is_owner(&self, user: &UserId) -> bool {
        self.member(user).is_some_and(|m| m.role == Role::Owner)
    }

    /// The creator's media connected: the room goes live.
    pub fn activate(&mut self) -> Result<(), GroupError> {
        match self.state {
            RoomState::Pending | RoomState::Active => {
                self.state = RoomState::Active;
                Ok(())
            }
            RoomState::Ended => Err(GroupError::NotActive),
        }
    }

    /// A member asks to speak: in an open room a free seat is taken at once; otherwise
    /// (or when none is free) the hand is raised. Returns whether the member is seated.
    pub fn request_seat(&mut self, user: &UserId) -> Result<bool, GroupError> {
        let free = self.seated() < self.seats;
        let open = self.seat_mode == SeatMode::Open;
        let member = self.member_mut(user)?;
        if member.seated {
            return Ok(true);
        }
        if open && free {
            member.seated = true;
            member.hand_raised = false;
        } else {
            member.hand_raised = true;
        }
        Ok(member.seated)
    }

    /// Raise or lower a hand.
    pub fn set_hand(&mut self, user: &UserId, raised: bool) -> Result<(), GroupError> {
        let member = self.member_mut(user)?;
        member.hand_raised = raised && !member.seated;
        Ok(())
    }

    /// A moderator seats `user`, if a seat is free.
    pub fn grant_seat(&mut self, actor: &Actor, user: &UserId) -> Result<(), GroupError> {
        self.require_moderator(actor)?;
        if self.member(user).ok_or(GroupError::NotMember)?.seated {
            return Ok(());
        }
        if self.seated() >= self.seats {
            return Err(GroupError::NoFreeSeat(self.seats));
        }
        let member = self.member_mut(user)?;
        member.seated = true;
        member.hand_raised = false;
        Ok(())
    }

    /// A moderator takes `user`'s seat, or `user` leaves their own seat.
    pub fn revoke_seat(&mut self, actor: &Actor, user: &UserId) -> Result<(), GroupError> {
        if !actor.is(user) {
            self.require_moderator(actor)?;
            if self.is_owner(user) {
                return Err(GroupError::Forbidden("the owner's seat cannot be taken"));
            }
        }
        self.member_mut(user)?.seated = false;
        Ok(())
    }

    /// A moderator mutes or unmutes a member at the SFU.
    pub fn set_moderator_mute(
        &mut self,
        actor: &Actor,
        user: &UserId,
        muted: bool,
    ) -> Result<(), GroupError> {
        self.require_moderator(actor)?;
        if !actor.is(user) && self.is_owner(user) {
            return Err(GroupError::Forbidden("the owner cannot be muted"));
        }
        self.member_mut(user)?.muted_by_moderator = muted;
        Ok(())
    }

    /// The owner names or unnames a moderator.
    pub fn set_role(
        &mut self,
        actor: &Actor,
        user: &UserId,
        moderator: bool,
    ) -> Result<(), GroupError> {
        if !self.owner_power(actor) {
            return Err(GroupError::Forbidden("only the owner may name moderators"));
        }
        let member = self.member_mut(user)?;
        if member.role == Role::Owner {
            return Err(GroupError::Forbidden("the owner stays the owner"));
        }
        member.role = if moderator {
            Role::Moderator
        } else {
            Role::Member
        };
        Ok(())
    }

    /// A moderator removes `user`: out of the group, and refused from then on.
    pub fn remove_member(&mut self, actor: &Actor, user: &UserId) -> Result<(), GroupError> {
        self.require_moderator(actor)?;
        match self.member(user) {
            Some(m) if m.role == Role::Owner => {
                return Err(GroupError::Forbidden("the owner cannot be removed"));
            }
            Some(m) if m.role == Role::Moderator && !self.owner_power(actor) => {
                return Err(GroupError::Forbidden(
                    "only the owner may remove a moderator",
                ));
            }
            Some(_) => {}
            None => return Err(GroupError::NotMember),
        }
        self.members.retain(|m| &m.user != user);
        self.reservations.retain(|r| &r.user != user);
        if !self.removed.contains(user) {
            self.removed.push(user.clone());
        }
        Ok(())
    }

    /// `actor` (a moderator, or the server API) locks or unlocks the room, and says who
    /// may join. Joins already let in (their media connecting) finish.
    pub fn set_access(
        &mut self,
        actor: &Actor,
        locked: Option<bool>,
        entry: Option<EntryPolicy>,
    ) -> Result<(), GroupError> {
        self.require_moderator(actor)?;
        if let Some(locked) = locked {
            self.locked = locked;
        }
        if let Some(entry) = entry {
            self.entry = entry;
        }
        Ok(())
    }

    /// The app backend (server API) puts `user` in its group chat: a member from now on,
    /// not seated, whatever the room's entry or lock (the backend owns the group's
    /// membership). A member already keeps its role and seat; a removed user is let back.
    /// Refused only when the room is full.
    pub fn put_member(&mut self, user: &UserId, name: &str) -> Result<(), GroupError> {
        if self.member(user).is_some() {
            return Ok(());
        }
        if self.members.len() >= self.capacity as usize {
            return Err(GroupError::Full(self.capacity));
        }
        self.removed.retain(|u| u != user);
        self.reservations.retain(|r| &r.user != user);
        self.members.push(Member {
            user: user.clone(),
            name: name.to_owned(),
            role: Role::Member,
            seated: false,
            hand_raised: false,
            muted_by_moderator: false,
        });
        Ok(())
    }

    /// `actor` (a moderator, or the server API) stops `user` writing in the group chat,
    /// or lets them again. The owner and other moderators cannot be muted.
    pub fn set_chat_muted(
        &mut self,
        actor: &Actor,
        user: &UserId,
        muted: bool,
    ) -> Result<(), GroupError> {
        self.require_moderator(actor)?;
        let member = self.member(user).ok_or(GroupError::NotMember)?;
        if muted && member.role.moderates() {
            return Err(GroupError::Forbidden(
                "the owner and moderators cannot be muted in the chat",
            ));
        }
        self.chat_muted.retain(|u| u != user);
        if muted {
            self.chat_muted.push(user.clone());
        }
        Ok(())
    }

    /// Whether `user` must knock to come in (a room with entry `knock`, and neither a
    /// member nor let in yet).
    pub fn must_knock(&self, user: &UserId) -> bool {
        self.entry == EntryPolicy::Knock
            && self.member(user).is_none()
            && !self.admitted.contains(user)
    }

    /// `user` knocks (again: the knock is renewed). Refused like a join when the room is
    /// not open, locked, or the user was removed.
    pub fn knock(&mut self, user: &UserId, name: &str, now: u64) -> Result<(), GroupError> {
        if self.state != RoomState::Active {
            return Err(GroupError::NotActive);
        }
        if self.removed.contains(user) {
            return Err(GroupError::Removed);
        }
        if self.locked {
            return Err(GroupError::Locked);
        }
        self.knocks
            .retain(|k| &k.user != user && k.at + KNOCK_TTL_SECS > now);
        if self.knocks.len() >= MAX_KNOCKS {
            return Err(GroupError::TooManyKnocks);
        }
        self.knocks.push(Knock {
            user: user.clone(),
            name: name.to_owned(),
            at: now,
        });
        Ok(())
    }

    /// `actor` (a moderator) lets `user`, who knocked, in (`admit`) or not.
    pub fn answer_knock(
        &mut self,
        actor: &Actor,
        user: &UserId,
        admit: bool,
    ) -> Result<(), GroupError> {
        self.require_moderator(actor)?;
        let i = self
            .knocks
            .iter()
            .position(|k| &k.user == user)
            .ok_or(GroupError::NoSuchKnock)?;
        self.knocks.remove(i);
        if admit && !self.admitted.contains(user) {
            self.admitted.push(user.clone());
        }
        Ok(())
    }

    /// `user` stopped waiting (left, or its session ended).
    pub fn withdraw_knock(&mut self, user: &UserId) {
        self.knocks.retain(|k| &k.user != user);
    }

    /// A moderator ends the room for everyone.
    pub fn end(&mut self, actor: &Actor) -> Result<(), GroupError> {
        self.require_moderator(actor)?;
        self.state = RoomState::Ended;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn active(capacity: u32, seats: u32) -> (GroupChat, UserId) {
        let owner = UserId::random();
        let mut g = GroupChat::new(
            "Room".into(),
            owner.clone(),
            "Owner".into(),
            capacity,
            seats,
            SeatMode::Moderated,
            0,
        );
        g.state = RoomState::Active;
        (g, owner)
    }

    #[test]
    fn settings_are_validated() {
        assert!(validate_settings(10, 3).is_ok());
        assert!(validate_settings(3, 4).is_err());
        assert!(validate_settings(-1, 1).is_err());
        assert!(validate_settings(10, 0).is_err());
        assert!(validate_settings(i64::MAX, 1).is_err());
    }

    #[test]
    fn places_count_members_and_reservations() {
        let (mut g, _) = active(4, 1);
        let [a, b, c, d] = [(); 4].map(|_| UserId::random());
        for u in [&a, &b] {
            assert_eq!(g.reserve_place(u, "m", 0, 30), Ok(Place::Reserved));
            g.confirm_member(u, "m").unwrap();
        }
        assert_eq!(g.reserve_place(&c, "c", 0, 30), Ok(Place::Reserved));
        assert_eq!(g.reserve_place(&d, "d", 0, 30), Err(GroupError::Full(4)));
        g.release_place(&c);
        assert_eq!(g.reserve_place(&d, "d", 0, 30), Ok(Place::Reserved));
        // An expired hold frees its place.
        assert_eq!(g.reserve_place(&c, "c", 100, 30), Ok(Place::Reserved));
        g.confirm_member(&c, "c").unwrap();
        assert_eq!(g.reserve_place(&a, "a", 100, 30), Ok(Place::Member));
        // The room filled up while d's media was connecting.
        assert_eq!(g.confirm_member(&d, "d"), Err(GroupError::Full(4)));
    }

    #[test]
    fn held_places_never_crowd_out_those_who_connect() {
        // Capacity 10: the owner, and six joins that never connect, each from its own
        // address. Holds count for at most half the capacity: they never take more than
        // 5 places from those who do connect.
        let (mut g, _) = active(10, 1);
        let ghosts: Vec<UserId> = (0..6).map(|_| UserId::random()).collect();
        for (i, ghost) in ghosts.iter().enumerate() {
            let origin = format!("198.51.100.{i}");
            let hold = HoldRequest {
                now: 0,
                ttl_secs: 15,
                origin: Some(&origin),
                signed_in: false,
            };
            assert_eq!(g.hold_place(ghost, "ghost", &hold), Ok(Place::Reserved));
        }
        for _ in 0..4 {
            let user = UserId::random();
            assert_eq!(g.reserve_place(&user, "real", 0, 15), Ok(Place::Reserved));
            g.confirm_member(&user, "real").unwrap();
        }
        assert_eq!(g.members.len(), 5);
        assert_eq!(
            g.reserve_place(&UserId::random(), "late", 0, 15),
            Err(GroupError::Full(10)),
            "5 members and 5 counted holds fill 10"
        );
        // Whoever connects first is the member: five of the six fit, the last finds the
        // room full although its place was held.
        for ghost in &ghosts[..5] {
            g.confirm_member(ghost, "ghost").unwrap();
        }
        assert_eq!(
            g.confirm_member(&ghosts[5], "ghost"),
            Err(GroupError::Full(10))
        );
    }

    #[test]
    fn a_locked_or_signed_in_only_room_lets_its_members_back() {
        let (mut g, owner) = active(10, 1);
        let (member, guest) = (UserId::random(), UserId::random());
        g.reserve_place(&member, "m", 0, 15).unwrap();
        g.confirm_member(&member, "m").unwrap();
        let (mod_actor, service) = (Actor::Member(owner.clone()), Actor::Service);
        assert_eq!(
            g.set_access(&Actor::Member(member.clone()), Some(true), None),
            Err(GroupError::Forbidden(
                "only the owner or a moderator may do that"
            ))
        );
        g.set_access(&mod_actor, Some(true), None).unwrap();
        assert_eq!(g.reserve_place(&guest, "g", 0, 15), Err(GroupError::Locked));
        assert_eq!(g.reserve_place(&member, "m", 0, 15), Ok(Place::Member));
        g.set_access(&service, Some(false), Some(EntryPolicy::SignedIn))
            .unwrap();
        assert_eq!(
            g.reserve_place(&guest, "g", 0, 15),
            Err(GroupError::SignedInOnly)
        );
        let signed_in = HoldRequest {
            now: 0,
            ttl_secs: 15,
            origin: None,
            signed_in: true,
        };
        assert_eq!(g.hold_place(&guest, "g", &signed_in), Ok(Place::Reserved));
        // A removed user is refused whoever it is; a removed guest is a new guest the
        // next time, which a signed-in-only room refuses.
        g.confirm_member(&guest, "g").unwrap();
        g.remove_member(&mod_actor, &guest).unwrap();
        assert_eq!(
            g.hold_place(&guest, "g", &signed_in),
            Err(GroupError::Removed)
        );
    }

    #[test]
    fn newcomers_knock_and_a_moderator_lets_them_in_or_not() {
        let (mut g, owner) = active(10, 1);
        let moderator = Actor::Member(owner.clone());
        g.set_access(&moderator, None, Some(EntryPolicy::Knock))
            .unwrap();
        let (ada, bo) = (UserId::random(), UserId::random());
        assert!(g.must_knock(&ada) && !g.must_knock(&owner));
        assert_eq!(
            g.reserve_place(&ada, "Ada", 0, 15),
            Err(GroupError::MustKnock)
        );
        g.knock(&ada, "Ada", 0).unwrap();
        g.knock(&bo, "Bo", 1).unwrap();
        g.knock(&ada, "Ada", 2).unwrap();
        assert_eq!(g.knocks.len(), 2, "a second knock renews the first");
        assert_eq!(
            g.answer_knock(&Actor::Member(bo.clone()), &ada, true),
            Err(GroupError::Forbidden(
                "only the owner or a moderator may do that"
            ))
        );
        g.answer_knock(&moderator, &ada, true).unwrap();
        g.answer_knock(&moderator, &bo, false).unwrap();
        assert_eq!(
            g.answer_knock(&moderator, &bo, true),
            Err(GroupError::NoSuchKnock)
        );
        assert!(g.knocks.is_empty() && !g.must_knock(&ada) && g.must_knock(&bo));
        assert_eq!(g.reserve_place(&ada, "Ada", 0, 15), Ok(Place::Reserved));
        g.confirm_member(&ada, "Ada").unwrap();
        assert!(g.admitted.is_empty(), "let in once: a member from then on");
        // Old knocks lapse; a locked room takes none.
        g.knock(&bo, "Bo", 10).unwrap();
        g.knock(&UserId::random(), "C", 10 + KNOCK_TTL_SECS)
            .unwrap();
        assert_eq!(g.knocks.len(), 1);
        g.set_access(&moderator, Some(true), None).unwrap();
        assert_eq!(g.knock(&bo, "Bo", 20), Err(GroupError::Locked));
    }

    #[test]
    fn one_address_holds_at_most_a_few_places() {
        let (mut g, _) = active(100, 1);
        let hold = HoldRequest {
            now: 0,
            ttl_secs: 15,
            origin: Some("203.0.113.9"),
            signed_in: false,
        };
        for _ in 0..MAX_HELD_PER_ORIGIN {
            assert_eq!(
                g.hold_place(&UserId::random(), "g", &hold),
                Ok(Place::Reserved)
            );
        }
        assert_eq!(
            g.hold_place(&UserId::random(), "g", &hold),
            Err(GroupError::TooManyHeld)
        );
        // Another address, or the same once the holds expire, gets in.
        let other = HoldRequest {
            origin: Some("203.0.113.10"),
            ..hold
        };
        assert_eq!(
            g.hold_place(&UserId::random(), "g", &other),
            Ok(Place::Reserved)
        );
        let later = HoldRequest { now: 16, ..hold };
        assert_eq!(
            g.hold_place(&UserId::random(), "g", &later),
            Ok(Place::Reserved)
        );
    }

    #[test]
    fn open_rooms_seat_whoever_asks_first() {
        let (mut g, _) = active(10, 2);
        g.seat_mode = SeatMode::Open;
        let (a, b) = (UserId::random(), UserId::random());
        for u in [&a, &b] {
            g.reserve_place(u, "x", 0, 30).unwrap();
            g.confirm_member(u, "x").unwrap();
        }
        assert_eq!(g.request_seat(&a), Ok(true));
        assert_eq!(
            g.request_seat(&b),
            Ok(false),
            "the owner and a hold both seats"
        );
        assert!(g.member(&b).unwrap().hand_raised);
    }

    #[test]
    fn leaving_frees_the_seat_but_not_the_owners() {
        let (mut g, owner) = active(10, 2);
        let a = UserId::random();
        g.reserve_place(&a, "a", 0, 30).unwrap();
        g.confirm_member(&a, "a").unwrap();
        g.grant_seat(&Actor::Member(owner.clone()), &a).unwrap();
        g.depart(&a);
        g.depart(&owner);
        assert!(!g.member(&a).unwrap().seated);
        assert!(g.member(&owner).unwrap().seated);
        assert_eq!(g.seated(), 1);
    }

    #[test]
    fn the_service_moderates_but_cannot_touch_the_owner() {
        let (mut g, owner) = active(10, 2);
        let a = UserId::random();
        g.reserve_place(&a, "a", 0, 30).unwrap();
        g.confirm_member(&a, "a").unwrap();
        g.grant_seat(&Actor::Service, &a).unwrap();
        g.set_role(&Actor::Service, &a, true).unwrap();
        assert!(g.revoke_seat(&Actor::Service, &owner).is_err());
        assert!(g.set_moderator_mute(&Actor::Service, &owner, true).is_err());
        assert!(g.remove_member(&Actor::Service, &owner).is_err());
        assert!(g.member(&owner).unwrap().seated);
        // The owner may still leave its own seat.
        g.revoke_seat(&Actor::Member(owner.clone()), &owner)
            .unwrap();
        g.remove_member(&Actor::Service, &a).unwrap();
        g.end(&Actor::Service).unwrap();
    }

    #[test]
    fn moderators_mute_members_in_the_chat_but_not_each_other() {
        let (mut g, owner) = active(10, 2);
        let (a, b) = (UserId::random(), UserId::random());
        for (user, name) in [(&a, "a"), (&b, "b")] {
            g.put_member(user, name).unwrap();
        }
        g.set_role(&Actor::Service, &a, true).unwrap(); // a moderates
        let outsider = UserId::random();
        assert_eq!(
            g.set_chat_muted(&Actor::Member(a.clone()), &outsider, true),
            Err(GroupError::NotMember)
        );
        assert!(matches!(
            g.set_chat_muted(&Actor::Member(b.clone()), &a, true),
            Err(GroupError::Forbidden(_))
        ));
        for moderator in [&owner, &a] {
            assert!(matches!(
                g.set_chat_muted(&Actor::Member(a.clone()), moderator, true),
                Err(GroupError::Forbidden(_))
            ));
        }
        g.set_chat_muted(&Actor::Member(a.clone()), &b, true)
            .unwrap();
        g.set_chat_muted(&Actor::Member(owner.clone()), &b, true)
            .unwrap();
        assert_eq!(g.chat_muted, vec![b.clone()], "muted once");
        g.set_chat_muted(&Actor::Service, &b, false).unwrap();
        assert!(g.chat_muted.is_empty());
    }

    #[test]
    fn the_backend_puts_members_in_whatever_the_lock() {
        let (mut g, _owner) = active(3, 1);
        g.locked = true;
        let (a, b, c) = (UserId::random(), UserId::random(), UserId::random());
        g.removed.push(a.clone());
        g.put_member(&a, "a").unwrap();
        assert!(!g.removed.contains(&a), "let back");
        g.put_member(&a, "a again").unwrap();
        assert_eq!(g.members.len(), 2, "twice is once");
        assert!(!g.member(&a).unwrap().seated);
        g.put_member(&b, "b").unwrap();
        assert_eq!(g.put_member(&c, "c"), Err(GroupError::Full(3)));
    }

    #[test]
    fn leaving_the_group_frees_the_place() {
        let (mut g, owner) = active(2, 1);
        let (a, b) = (UserId::random(), UserId::random());
        g.reserve_place(&a, "a", 0, 30).unwrap();
        g.confirm_member(&a, "a").unwrap();
        assert_eq!(g.reserve_place(&b, "b", 0, 30), Err(GroupError::Full(2)));
        g.leave_group(&a).unwrap();
        assert_eq!(g.reserve_place(&b, "b", 0, 30), Ok(Place::Reserved));
        assert!(g.leave_group(&owner).is_err());
        // Unlike removal, leaving is not a ban.
        assert!(!g.removed.contains(&a));
    }

    #[test]
    fn seats_and_moderation() {
        let (mut g, owner) = active(10, 2);
        let (a, b) = (UserId::random(), UserId::random());
        for u in [&a, &b] {
            g.reserve_place(u, "x", 0, 30).unwrap();
            g.confirm_member(u, "x").unwrap();
        }
        assert!(matches!(
            g.grant_seat(&Actor::Member(a.clone()), &b),
            Err(GroupError::Forbidden(_))
        ));
        g.grant_seat(&Actor::Member(owner.clone()), &a).unwrap();
        assert_eq!(
            g.grant_seat(&Actor::Member(owner.clone()), &b),
            Err(GroupError::NoFreeSeat(2))
        );
        g.revoke_seat(&Actor::Member(a.clone()), &a).unwrap();
        g.grant_seat(&Actor::Member(owner.clone()), &b).unwrap();
        assert!(
            g.remove_member(&Actor::Member(owner.clone()), &owner)
                .is_err()
        );
        g.remove_member(&Actor::Member(owner.clone()), &b).unwrap();
        assert_eq!(g.reserve_place(&b, "b", 0, 30), Err(GroupError::Removed));
        assert!(g.end(&Actor::Member(a.clone())).is_err());
        g.end(&Actor::Member(owner.clone())).unwrap();
        assert_eq!(g.reserve_place(&a, "a", 0, 30), Err(GroupError::NotActive));
    }
}
