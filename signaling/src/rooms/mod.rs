//! Voice rooms: who is in which room right now, and telling every member when that
//! changes. Membership, seats and roles are durable and live in the room's group chat
//! record (`group_chat`, saved by the store); this module keeps a copy of that record per
//! live room together with the presences (participants) whose sessions are on this node.
//!
//! Sessions on other signaling nodes are reached over the room bus (`bus`): whatever
//! this registry tells its own sessions about the room, it also publishes, and what other
//! nodes publish it hands to its own sessions.

pub mod bus;
pub mod group_chat;
pub mod service;
pub mod sfu_events;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Instant;

use chorus_proto::fleet::PresenceRecord;
use chorus_proto::signal::{
    LeftReason, ParticipantInfo, Role, RoomInfo, ServerMessage, SpeakerLevel,
};
use chorus_proto::{NodeId, ParticipantId, RoomId, UserId};
use tokio::sync::mpsc;

use crate::rooms::bus::{BusEvent, Envelope, RoomNews};
use crate::rooms::group_chat::GroupChat;
use crate::ws::outbox::Outbox;

/// One participant's presence in a live room, held by this node.
pub struct Presence {
    /// What every node knows of it.
    pub record: PresenceRecord,
    /// When its media was admitted at the SFU (`record.sfu` set); `None` until then.
    pub admitted_at: Option<Instant>,
    /// The session's frame queue.
    pub outbox: Outbox,
}

struct LiveRoom {
    group: GroupChat,
    presences: HashMap<ParticipantId, Presence>,
    /// The last speaking levels from each SFU node of the room, and when.
    levels: Vec<(NodeId, Instant, Vec<SpeakerLevel>)>,
    /// Participants of other nodes this node's sessions have been told are present: what
    /// a re-sync after a gap in the bus diffs against.
    remote: HashSet<ParticipantId>,
}

/// Levels from another SFU node of the room older than this are no longer "speaking
/// now" (nodes report every 250 ms while anyone is audible).
const LEVELS_FRESH: std::time::Duration = std::time::Duration::from_millis(600);

/// What the registry hands to the bus, in order (one queue, so that a presence is in
/// the directory before the news of its arrival is published).
#[derive(Debug)]
pub enum Outgoing {
    /// Publish an event.
    Publish(Envelope),
    /// Record a presence in the directory.
    Put(RoomId, ParticipantId, PresenceRecord),
    /// Take a presence out of the directory.
    Remove(RoomId, ParticipantId),
}

/// A room as clients see it.
pub fn room_info(group: &GroupChat) -> RoomInfo {
    RoomInfo {
        id: group.room.clone(),
        name: group.name.clone(),
        link: group.link(),
        capacity: group.capacity,
        seats: group.seats,
        seat_mode: group.seat_mode,
        state: group.state,
        entry: group.entry,
        locked: group.locked,
    }
}

/// A participant as clients see it: its presence with its member's roles and seat.
pub fn participant_info(
    id: &ParticipantId,
    p: &PresenceRecord,
    group: &GroupChat,
) -> ParticipantInfo {
    let member = group.member(&p.user);
    ParticipantInfo {
        id: id.clone(),
        user: p.user.clone(),
        name: p.name.clone(),
        muted: p.self_muted,
        speaker: member.is_some_and(|m| m.seated),
        connected: p.connected,
        role: member.map_or(Role::Member, |m| m.role),
        hand_raised: member.is_some_and(|m| m.hand_raised),
        muted_by_moderator: member.is_some_and(|m| m.muted_by_moderator),
    }
}

impl LiveRoom {
    fn tell_local(&self, news: &RoomNews, except: Option<&ParticipantId>) {
        let message = ServerMessage::from(news.clone());
        for (id, p) in &self.presences {
            if Some(id) != except {
                p.outbox.send(message.clone());
            }
        }
    }

    fn info(&self, id: &ParticipantId) -> Option<ParticipantInfo> {
        self.presences
            .get(id)
            .map(|p| participant_info(id, &p.record, &self.group))
    }
}

/// The live rooms of this signaling node.
pub struct RoomRegistry {
    node: NodeId,
    rooms: Mutex<HashMap<RoomId, LiveRoom>>,
    bus: mpsc::Sender<Outgoing>,
    /// Other nodes exist (a fleet); alone, nothing is queued for the bus at all.
    shared: bool,
}

impl RoomRegistry {
    /// A registry for `node`, handing what other nodes must learn to `bus` when
    /// `shared` (there are other nodes).
    pub fn new(node: NodeId, bus: mpsc::Sender<Outgoing>, shared: bool) -> Self {
        Self {
            node,
            rooms: Mutex::default(),
            bus,
            shared,
        }
    }

    /// Queue news for the bus. Bounded: while Redis is down the queue cannot grow
    /// without limit; what does not fit is dropped (counted in the log), and the other
    /// nodes re-read the records when their view is next refreshed.
    fn hand_on(&self, item: Outgoing) {
        if !self.shared {
            return;
        }
        if let Err(mpsc::error::TrySendError::Full(_)) = self.bus.try_send(item) {
            tracing::warn!(
                "room bus queue full (is Redis reachable?); news for other nodes dropped"
            );
        }
    }

    /// This node.
    pub fn node(&self) -> &NodeId {
        &self.node
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<RoomId, LiveRoom>> {
        // A panic while holding this lock would be a bug in this module; keep serving.
        self.rooms
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Publish an event for the other nodes of a room.
    pub fn publish(&self, room: &RoomId, event: BusEvent) {
        if !self.shared {
            return;
        }
        self.hand_on(Outgoing::Publish(Envelope {
            origin: self.node.clone(),
            room: room.clone(),
            event,
        }));
    }

    /// Tell the whole room (this node's sessions and every other node's), but `except`.
    fn tell(&self, live: &LiveRoom, news: RoomNews, except: Option<&ParticipantId>) {
        live.tell_local(&news, except);
        self.publish(
            &live.group.room,
            BusEvent::Tell {
                news,
                except: except.cloned(),
            },
        );
    }

    fn announce(&self, live: &LiveRoom, id: &ParticipantId) {
        if let Some(participant) = live.info(id) {
            self.tell(live, RoomNews::Participant { participant }, None);
        }
    }

    /// The cached group chat of a live room.
    pub fn group(&self, room: &RoomId) -> Option<GroupChat> {
        self.lock().get(room).map(|r| r.group.clone())
    }

    /// Take a group chat record as it now is and tell the room's participants whatever
    /// changed for them. `publish`: the change was made here, so other nodes are sent the
    /// record too (each re-announces its own presences).
    pub fn apply_group(&self, group: GroupChat, publish: bool) {
        let mut rooms = self.lock();
        if publish && self.shared {
            self.publish(
                &group.room,
                BusEvent::Group {
                    group: Box::new(group.clone()),
                },
            );
        }
        // Rooms without sessions here are not kept: the store has the record.
        let Some(room) = rooms.get_mut(&group.room) else {
            return;
        };
        if group.version < room.group.version {
            return; // an older record finishing late: the live copy is newer
        }
        let before: Vec<(ParticipantId, ParticipantInfo)> = room
            .presences
            .iter()
            .map(|(id, p)| (id.clone(), participant_info(id, &p.record, &room.group)))
            .collect();
        let room_changed = room_info(&room.group) != room_info(&group);
        let knocks_changed = room.group.knocks != group.knocks;
        room.group = group;
        if knocks_changed {
            // Moderators see who waits at the door.
            let message = ServerMessage::Knocks {
                knocks: service::knockers_of(&room.group),
            };
            for p in room.presences.values() {
                if room
                    .group
                    .member(&p.record.user)
                    .is_some_and(|m| m.role.moderates())
                {
                    p.outbox.send(message.clone());
                }
            }
        }
        if room_changed {
            // Every node tells its own sessions: each received the record.
            let message = ServerMessage::RoomUpdated {
                room: room_info(&room.group),
            };
            for p in room.presences.values() {
                p.outbox.send(message.clone());
            }
        }
        for (id, old) in before {
            // A removed user is about to be taken out: it is told `left removed`, not
            // shown its record emptied first (which reads as a false "unmuted").
            let removed = room
                .presences
                .get(&id)
                .is_some_and(|p| room.group.removed.contains(&p.record.user));
            if !removed && room.info(&id).is_some_and(|new| new != old) {
                self.announce(room, &id);
            }
        }
    }

    /// Add a presence to a room, opening it live with `group` if it is not. Nobody is
    /// told yet: see [`RoomRegistry::announce_arrival`].
    pub fn add(&self, group: &GroupChat, id: ParticipantId, presence: Presence) {
        let mut rooms = self.lock();
        let live = rooms.entry(group.room.clone()).or_insert_with(|| LiveRoom {
            levels: Vec::new(),
            remote: HashSet::new(),
            group: group.clone(),
            presences: HashMap::new(),
        });
        self.hand_on(Outgoing::Put(
            group.room.clone(),
            id.clone(),
            presence.record.clone(),
        ));
        live.presences.insert(id, presence);
    }

    /// Tell everyone else in the room about a participant who just entered (its own
    /// session learns the room from `joined`). Called once the SFU accepted its offer, so
    /// that a refused join is never seen by anyone.
    pub fn announce_arrival(&self, room: &RoomId, id: &ParticipantId) {
        let rooms = self.lock();
        let Some(live) = rooms.get(room) else { return };
        let Some(participant) = live.info(id) else {
            return;
        };
        self.tell(live, RoomNews::Participant { participant }, Some(id));
    }

    /// This node's participants in a room.
    pub fn participants(&self, room: &RoomId) -> Vec<ParticipantInfo> {
        self.lock()
            .get(room)
            .map(|r| r.presences.keys().filter_map(|id| r.info(id)).collect())
            .unwrap_or_default()
    }

    /// The record of one of this node's presences.
    pub fn record(&self, room: &RoomId, id: &ParticipantId) -> Option<PresenceRecord> {
        self.lock()
            .get(room)
            .and_then(|r| r.presences.get(id))
            .map(|p| p.record.clone())
    }

    /// The user behind one of this node's participants, and its display name.
    pub fn user_of(&self, room: &RoomId, id: &ParticipantId) -> Option<(UserId, String)> {
        self.record(room, id).map(|r| (r.user, r.name))
    }

    /// This node's participants of a user in a room.
    pub fn presences_of(&self, room: &RoomId, user: &UserId) -> Vec<ParticipantId> {
        self.lock()
            .get(room)
            .map(|r| {
                r.presences
                    .iter()
                    .filter(|(_, p)| &p.record.user == user)
                    .map(|(id, _)| id.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A participant's frame queue.
    pub fn outbox_of(&self, room: &RoomId, id: &ParticipantId) -> Option<Outbox> {
        self.lock()
            .get(room)
            .and_then(|r| r.presences.get(id))
            .map(|p| p.outbox.clone())
    }

    /// Whether a participant is (still) present on this node.
    pub fn contains(&self, room: &RoomId, id: &ParticipantId) -> bool {
        self.lock()
            .get(room)
            .is_some_and(|r| r.presences.contains_key(id))
    }

    /// Hand a presence to another session's queue (a resume); the queue it had.
    pub fn reattach(&self, room: &RoomId, id: &ParticipantId, outbox: Outbox) -> Option<Outbox> {
        let mut rooms = self.lock();
        let presence = rooms.get_mut(room)?.presences.get_mut(id)?;
        Some(std::mem::replace(&mut presence.outbox, outbox))
    }

    /// Whether a presence is (still) the session's with this queue (not taken over by
    /// a resume).
    pub fn owned_by(&self, room: &RoomId, id: &ParticipantId, outbox: &Outbox) -> bool {
        self.lock()
            .get(room)
            .and_then(|r| r.presences.get(id))
            .is_some_and(|p| p.outbox.same(outbox))
    }

    /// Take a presence out without telling anyone (the server stops; its session will
    /// resume on a node that adopts the media). The user, when it was there.
    pub fn forget(&self, room: &RoomId, id: &ParticipantId) -> Option<UserId> {
        let mut rooms = self.lock();
        let live = rooms.get_mut(room)?;
        let presence = live.presences.remove(id)?;
        self.hand_on(Outgoing::Remove(room.clone(), id.clone()));
        if live.presences.is_empty() {
            rooms.remove(room);
        }
        Some(presence.record.user)
    }

    /// Change a presence and tell everyone.
    pub fn update_presence(
        &self,
        room: &RoomId,
        id: &ParticipantId,
        change: impl FnOnce(&mut Presence),
    ) {
        let mut rooms = self.lock();
        let Some(live) = rooms.get_mut(room) else {
            return;
        };
        let Some(presence) = live.presences.get_mut(id) else {
            return;
        };
        let before = presence.record.clone();
        change(presence);
        if presence.record != before {
            self.hand_on(Outgoing::Put(
                room.clone(),
                id.clone(),
                presence.record.clone(),
            ));
        }
        self.announce(live, id);
    }

    /// Record that a presence's media was admitted on SFU node `sfu` (nobody is told:
    /// it changes nothing a client sees).
    pub fn set_admitted(&self, room: &RoomId, id: &ParticipantId, sfu: &NodeId) {
        let mut rooms = self.lock();
        let Some(presence) = rooms.get_mut(room).and_then(|r| r.presences.get_mut(id)) else {
            return;
        };
        presence.record.sfu = Some(sfu.clone());
        presence.admitted_at = Some(Instant::now());
        self.hand_on(Outgoing::Put(
            room.clone(),
            id.clone(),
            presence.record.clone(),
        ));
    }

    /// Take a participant out and tell the others why; its own session is sent `left`
    /// when `tell_self` (it did not ask to leave). The user, when it was there.
    pub fn remove(
        &self,
        room: &RoomId,
        id: &ParticipantId,
        reason: LeftReason,
        tell_self: bool,
    ) -> Option<UserId> {
        let mut rooms = self.lock();
        let live = rooms.get_mut(room)?;
        let presence = live.presences.remove(id)?;
        self.hand_on(Outgoing::Remove(room.clone(), id.clone()));
        if tell_self {
            presence.outbox.send(ServerMessage::Left { reason });
        }
        self.tell(
            live,
            RoomNews::Left {
                participant: id.clone(),
                reason,
            },
            None,
        );
        // A room nobody is in here need not be kept: the store has its record.
        if live.presences.is_empty() {
            rooms.remove(room);
        }
        Some(presence.record.user)
    }

    /// Close a live room: every presence is told `left` with `reason`. `publish`: the
    /// room was closed here, so every other node closes it too.
    pub fn close(&self, room: &RoomId, reason: LeftReason, publish: bool) {
        if publish {
            self.publish(room, BusEvent::Close { reason });
        }
        let Some(live) = self.lock().remove(room) else {
            return;
        };
        for (id, presence) in &live.presences {
            self.hand_on(Outgoing::Remove(room.clone(), id.clone()));
            presence.outbox.send(ServerMessage::Left { reason });
        }
    }

    /// Hand news published by another node to this node's sessions of the room.
    pub fn deliver(&self, room: &RoomId, news: &RoomNews, except: Option<&ParticipantId>) {
        if let Some(live) = self.lock().get_mut(room) {
            match news {
                RoomNews::Participant { participant }
                    if !live.presences.contains_key(&participant.id) =>
                {
                    live.remote.insert(participant.id.clone());
                }
                RoomNews::Left { participant, .. } => {
                    live.remote.remove(participant);
                }
                RoomNews::Participant { .. } => {}
            }
            live.tell_local(news, except);
        }
    }

    /// A session was given this list of the room's participants (on entering): those of
    /// other nodes are remembered as told.
    pub fn told_of(&self, room: &RoomId, participants: &[ParticipantInfo]) {
        if let Some(live) = self.lock().get_mut(room) {
            for p in participants {
                if !live.presences.contains_key(&p.id) {
                    live.remote.insert(p.id.clone());
                }
            }
        }
    }

    /// After a gap in the bus (events of other nodes may have been missed): `current` is
    /// everyone present now, on any node. This node's sessions are told of each remote
    /// participant as it is now, and that those they knew of and who are gone left.
    pub fn resync_remote(&self, room: &RoomId, current: &[ParticipantInfo]) {
        let mut rooms = self.lock();
        let Some(live) = rooms.get_mut(room) else {
            return;
        };
        let now: HashSet<ParticipantId> = current
            .iter()
            .filter(|p| !live.presences.contains_key(&p.id))
            .map(|p| p.id.clone())
            .collect();
        let gone: Vec<ParticipantId> = live.remote.difference(&now).cloned().collect();
        for id in gone {
            tracing::info!(room = %room, participant = %id, "re-sync after a bus gap: left meanwhile");
            live.tell_local(
                &RoomNews::Left {
                    participant: id,
                    reason: LeftReason::Disconnected,
                },
                None,
            );
        }
        for p in current.iter().filter(|p| now.contains(&p.id)) {
            live.tell_local(
                &RoomNews::Participant {
                    participant: p.clone(),
                },
                None,
            );
        }
        live.remote = now;
    }

    /// Tell the whole room a participant of another node is gone (its node died).
    pub fn tell_left(&self, room: &RoomId, participant: &ParticipantId, reason: LeftReason) {
        let news = RoomNews::Left {
            participant: participant.clone(),
            reason,
        };
        match self.lock().get_mut(room) {
            Some(live) => {
                live.remote.remove(participant);
                self.tell(live, news, None);
            }
            None => self.publish(room, BusEvent::Tell { news, except: None }),
        }
    }

    /// Pass the SFU's speaking levels on to a room's participants on this node (every
    /// signaling node follows every SFU, so each tells its own sessions).
    pub fn speaking(&self, room: &RoomId, sfu: &NodeId, levels: Vec<SpeakerLevel>) {
        let mut rooms = self.lock();
        let Some(live) = rooms.get_mut(room) else {
            return;
        };
        // A room that spans SFU nodes hears from each about its own speakers: what is
        // sent is everyone audible on any node lately, not just the last node's list.
        let now = Instant::now();
        live.levels
            .retain(|(node, at, _)| node != sfu && now.duration_since(*at) < LEVELS_FRESH);
        let mut all: Vec<SpeakerLevel> = live
            .levels
            .iter()
            .flat_map(|(_, _, l)| l.iter().cloned())
            .collect();
        all.extend(levels.iter().cloned());
        live.levels.push((sfu.clone(), now, levels));
        let message = ServerMessage::Speaking { levels: all };
        for p in live.presences.values() {
            p.outbox.send_lossy(message.clone());
        }
    }

    /// The SFU node a presence of this node is admitted on.
    pub fn sfu_of(&self, room: &RoomId, id: &ParticipantId) -> Option<NodeId> {
        let rooms = self.lock();
        rooms
            .get(room)
            .and_then(|r| r.presences.get(id))
            .and_then(|p| p.record.sfu.clone())
    }

    /// This node's presences whose media is on `sfu`, with when each was admitted.
    pub fn presences_on(&self, sfu: &NodeId) -> Vec<(RoomId, ParticipantId, bool, Instant)> {
        let rooms = self.lock();
        let mut out = Vec::new();
        for (room, live) in rooms.iter() {
            for (id, p) in &live.presences {
                if p.record.sfu.as_ref() == Some(sfu)
                    && let Some(at) = p.admitted_at
                {
                    out.push((room.clone(), id.clone(), p.record.connected, at));
                }
            }
        }
        out
    }

    /// Rooms with sessions on this node.
    pub fn live_rooms(&self) -> Vec<RoomId> {
        self.lock().keys().cloned().collect()
    }

    /// Number of live rooms and of participants, for metrics.
    pub fn counts(&self) -> (usize, usize) {
        let rooms = self.lock();
        (rooms.len(), rooms.values().map(|r| r.presences.len()).sum())
    }
}
