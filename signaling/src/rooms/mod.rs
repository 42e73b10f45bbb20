//! Voice rooms: who is in which room right now, and telling every member when that
//! changes. Membership, seats and roles are durable and live in the room's group chat
//! record (`group_chat`, saved by the store); this module keeps a copy of that record per
//! live room together with the presences (participants) of this node.

pub mod group_chat;
pub mod service;
pub mod sfu_events;

use std::collections::HashMap;
use std::sync::Mutex;

use chorus_proto::signal::{
    LeftReason, ParticipantInfo, Role, RoomInfo, ServerMessage, SpeakerLevel,
};
use chorus_proto::{ParticipantId, RoomId, UserId};

use crate::rooms::group_chat::GroupChat;
use crate::ws::outbox::Outbox;

/// One participant's presence in a live room.
pub struct Presence {
    /// The user behind it.
    pub user: UserId,
    /// Display name.
    pub name: String,
    /// Muted by its own user.
    pub self_muted: bool,
    /// Media connected to the SFU.
    pub connected: bool,
    /// The session's frame queue.
    pub outbox: Outbox,
}

struct LiveRoom {
    group: GroupChat,
    presences: HashMap<ParticipantId, Presence>,
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
    }
}

fn participant_info(id: &ParticipantId, p: &Presence, group: &GroupChat) -> ParticipantInfo {
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
    fn broadcast(&self, message: &ServerMessage) {
        for p in self.presences.values() {
            p.outbox.send(message.clone());
        }
    }

    fn info(&self, id: &ParticipantId) -> Option<ParticipantInfo> {
        self.presences
            .get(id)
            .map(|p| participant_info(id, p, &self.group))
    }

    fn announce(&self, id: &ParticipantId) {
        if let Some(participant) = self.info(id) {
            self.broadcast(&ServerMessage::ParticipantUpdated { participant });
        }
    }
}

/// The live rooms of this signaling node.
#[derive(Default)]
pub struct RoomRegistry {
    rooms: Mutex<HashMap<RoomId, LiveRoom>>,
}

impl RoomRegistry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<RoomId, LiveRoom>> {
        // A panic while holding this lock would be a bug in this module; keep serving.
        self.rooms
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The cached group chat of a live room.
    pub fn group(&self, room: &RoomId) -> Option<GroupChat> {
        self.lock().get(room).map(|r| r.group.clone())
    }

    /// Take a group chat record as it now is (opening its live room if needed) and tell
    /// the room's participants whatever changed for them.
    pub fn apply_group(&self, group: GroupChat) {
        let mut rooms = self.lock();
        let room = rooms.entry(group.room.clone()).or_insert_with(|| LiveRoom {
            group: group.clone(),
            presences: HashMap::new(),
        });
        if group.version < room.group.version {
            return; // an older record finishing late: the live copy is newer
        }
        let before: Vec<(ParticipantId, ParticipantInfo)> = room
            .presences
            .iter()
            .map(|(id, p)| (id.clone(), participant_info(id, p, &room.group)))
            .collect();
        let room_changed = room_info(&room.group) != room_info(&group);
        room.group = group;
        if room_changed {
            room.broadcast(&ServerMessage::RoomUpdated {
                room: room_info(&room.group),
            });
        }
        for (id, old) in before {
            if room.info(&id).is_some_and(|new| new != old) {
                room.announce(&id);
            }
        }
    }

    /// Add a presence to a room, opening it live with `group` if it is not. Nobody is
    /// told yet: see [`RoomRegistry::announce_arrival`].
    pub fn add(&self, group: &GroupChat, id: ParticipantId, presence: Presence) {
        let mut rooms = self.lock();
        let live = rooms.entry(group.room.clone()).or_insert_with(|| LiveRoom {
            group: group.clone(),
            presences: HashMap::new(),
        });
        live.presences.insert(id.clone(), presence);
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
        let message = ServerMessage::ParticipantUpdated { participant };
        for (other, presence) in &live.presences {
            if other != id {
                presence.outbox.send(message.clone());
            }
        }
    }

    /// Everyone present in a room.
    pub fn participants(&self, room: &RoomId) -> Vec<ParticipantInfo> {
        self.lock()
            .get(room)
            .map(|r| r.presences.keys().filter_map(|id| r.info(id)).collect())
            .unwrap_or_default()
    }

    /// The user behind a participant, and its display name.
    pub fn user_of(&self, room: &RoomId, id: &ParticipantId) -> Option<(UserId, String)> {
        self.lock()
            .get(room)
            .and_then(|r| r.presences.get(id))
            .map(|p| (p.user.clone(), p.name.clone()))
    }

    /// The participants of a user in a room (one, unless a join is replacing another).
    pub fn presences_of(&self, room: &RoomId, user: &UserId) -> Vec<ParticipantId> {
        self.lock()
            .get(room)
            .map(|r| {
                r.presences
                    .iter()
                    .filter(|(_, p)| &p.user == user)
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

    /// Whether a participant is (still) present.
    pub fn contains(&self, room: &RoomId, id: &ParticipantId) -> bool {
        self.lock()
            .get(room)
            .is_some_and(|r| r.presences.contains_key(id))
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
        change(presence);
        live.announce(id);
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
        if tell_self {
            presence.outbox.send(ServerMessage::Left { reason });
        }
        live.broadcast(&ServerMessage::ParticipantLeft {
            participant: id.clone(),
            reason,
        });
        // A room nobody is in need not be kept: the store has its record.
        if live.presences.is_empty() {
            rooms.remove(room);
        }
        Some(presence.user)
    }

    /// Close a live room: every presence is told `left` with `reason`.
    pub fn close(&self, room: &RoomId, reason: LeftReason) {
        let Some(live) = self.lock().remove(room) else {
            return;
        };
        for presence in live.presences.values() {
            presence.outbox.send(ServerMessage::Left { reason });
        }
    }

    /// Pass the SFU's speaking levels on to a room's participants.
    pub fn speaking(&self, room: &RoomId, levels: Vec<SpeakerLevel>) {
        let rooms = self.lock();
        let Some(live) = rooms.get(room) else { return };
        let levels: Vec<SpeakerLevel> = levels
            .into_iter()
            .filter(|l| live.presences.contains_key(&l.participant))
            .collect();
        let message = ServerMessage::Speaking { levels };
        for p in live.presences.values() {
            p.outbox.send_lossy(message.clone());
        }
    }

    /// Number of live rooms and of participants, for metrics.
    pub fn counts(&self) -> (usize, usize) {
        let rooms = self.lock();
        (rooms.len(), rooms.values().map(|r| r.presences.len()).sum())
    }
}
