//! Voice rooms as signaling knows them: who is in which room, and telling every member
//! when that changes. The SFU holds the media side of the same rooms.

use std::collections::HashMap;
use std::sync::Mutex;

use chorus_proto::signal::{
    ErrorCode, LeftReason, ParticipantInfo, RoomInfo, ServerMessage, SpeakerLevel,
};
use chorus_proto::{ParticipantId, RoomId};

use crate::ws::outbox::Outbox;

pub mod sfu_events;

/// Why a participant could not be placed in a room.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JoinError {
    /// No such room.
    #[error("there is no room '{0}'; check the link")]
    NotFound(RoomId),
    /// The room is at capacity.
    #[error("the room is full ({0} people)")]
    Full(usize),
}

impl JoinError {
    /// The protocol's error code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            JoinError::NotFound(_) => ErrorCode::RoomNotFound,
            JoinError::Full(_) => ErrorCode::RoomFull,
        }
    }
}

struct Member {
    info: ParticipantInfo,
    outbox: Outbox,
}

struct Room {
    info: RoomInfo,
    members: HashMap<ParticipantId, Member>,
}

impl Room {
    fn broadcast(&self, message: &ServerMessage, except: Option<&ParticipantId>) {
        for (id, member) in &self.members {
            if Some(id) != except {
                member.outbox.send(message.clone());
            }
        }
    }
}

/// All rooms of this signaling node.
pub struct RoomRegistry {
    rooms: Mutex<HashMap<RoomId, Room>>,
    max_participants: usize,
}

impl RoomRegistry {
    /// An empty registry whose rooms hold at most `max_participants` each.
    pub fn new(max_participants: usize) -> Self {
        Self {
            rooms: Mutex::new(HashMap::new()),
            max_participants,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<RoomId, Room>> {
        // A panic while holding this lock would be a bug in this module; keep serving.
        self.rooms
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Create a room with a fresh id.
    pub fn create(&self, name: String) -> RoomInfo {
        let id = RoomId::random();
        let info = RoomInfo {
            link: format!("/r/{id}"),
            id: id.clone(),
            name,
        };
        self.lock().insert(
            id,
            Room {
                info: info.clone(),
                members: HashMap::new(),
            },
        );
        info
    }

    /// A room and how many are in it.
    pub fn get(&self, id: &RoomId) -> Option<(RoomInfo, usize)> {
        self.lock()
            .get(id)
            .map(|room| (room.info.clone(), room.members.len()))
    }

    /// Place a participant in a room (not yet connected), checking capacity under the
    /// same lock so two joins can never overfill it.
    pub fn reserve(
        &self,
        room: &RoomId,
        info: ParticipantInfo,
        outbox: Outbox,
    ) -> Result<RoomInfo, JoinError> {
        let mut rooms = self.lock();
        let entry = rooms
            .get_mut(room)
            .ok_or_else(|| JoinError::NotFound(room.clone()))?;
        if entry.members.len() >= self.max_participants {
            return Err(JoinError::Full(self.max_participants));
        }
        entry
            .members
            .insert(info.id.clone(), Member { info, outbox });
        Ok(entry.info.clone())
    }

    /// Everyone in a room.
    pub fn participants(&self, room: &RoomId) -> Vec<ParticipantInfo> {
        self.lock()
            .get(room)
            .map(|r| r.members.values().map(|m| m.info.clone()).collect())
            .unwrap_or_default()
    }

    /// Whether a participant is (still) in a room.
    pub fn contains(&self, room: &RoomId, participant: &ParticipantId) -> bool {
        self.lock()
            .get(room)
            .is_some_and(|r| r.members.contains_key(participant))
    }

    /// Tell the others about a participant as it is now.
    pub fn announce(&self, room: &RoomId, participant: &ParticipantId) {
        self.update(room, participant, |_| {});
    }

    /// Change a participant and tell everyone (it included).
    pub fn update(
        &self,
        room: &RoomId,
        participant: &ParticipantId,
        change: impl FnOnce(&mut ParticipantInfo),
    ) {
        let mut rooms = self.lock();
        let Some(entry) = rooms.get_mut(room) else {
            return;
        };
        let Some(member) = entry.members.get_mut(participant) else {
            return;
        };
        change(&mut member.info);
        let message = ServerMessage::ParticipantUpdated {
            participant: member.info.clone(),
        };
        entry.broadcast(&message, None);
    }

    /// Take a participant out of its room and tell the others why. The participant's own
    /// session is sent `left` when `tell_self` (it did not ask to leave itself).
    /// Returns false when it was not there.
    pub fn remove(
        &self,
        room: &RoomId,
        participant: &ParticipantId,
        reason: LeftReason,
        tell_self: bool,
    ) -> bool {
        let mut rooms = self.lock();
        let Some(entry) = rooms.get_mut(room) else {
            return false;
        };
        let Some(member) = entry.members.remove(participant) else {
            return false;
        };
        if tell_self {
            member.outbox.send(ServerMessage::Left { reason });
        }
        let message = ServerMessage::ParticipantLeft {
            participant: participant.clone(),
            reason,
        };
        entry.broadcast(&message, None);
        true
    }

    /// Pass the SFU's speaking levels on to a room's members.
    pub fn speaking(&self, room: &RoomId, levels: Vec<SpeakerLevel>) {
        let rooms = self.lock();
        let Some(entry) = rooms.get(room) else { return };
        let levels: Vec<SpeakerLevel> = levels
            .into_iter()
            .filter(|l| entry.members.contains_key(&l.participant))
            .collect();
        let message = ServerMessage::Speaking { levels };
        for member in entry.members.values() {
            member.outbox.send_lossy(message.clone());
        }
    }

    /// Number of rooms and of participants, for metrics and logs.
    pub fn counts(&self) -> (usize, usize) {
        let rooms = self.lock();
        (rooms.len(), rooms.values().map(|r| r.members.len()).sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str) -> ParticipantInfo {
        ParticipantInfo {
            id: ParticipantId::random(),
            name: name.into(),
            muted: false,
            speaker: true,
            connected: false,
        }
    }

    #[test]
    fn capacity_is_enforced_and_leaving_frees_a_place() {
        let registry = RoomRegistry::new(2);
        let room = registry.create("Test".into()).id;
        let (outbox, mut rx, _) = Outbox::new();
        let a = member("a");
        registry.reserve(&room, a.clone(), outbox.clone()).unwrap();
        registry
            .reserve(&room, member("b"), outbox.clone())
            .unwrap();
        assert_eq!(
            registry.reserve(&room, member("c"), outbox.clone()),
            Err(JoinError::Full(2))
        );
        assert!(registry.remove(&room, &a.id, LeftReason::Left, false));
        assert!(!registry.remove(&room, &a.id, LeftReason::Left, false));
        registry.reserve(&room, member("c"), outbox).unwrap();
        assert!(matches!(
            rx.try_recv(),
            Ok(ServerMessage::ParticipantLeft { .. })
        ));
        let unknown = RoomId::random();
        assert_eq!(
            registry.reserve(&unknown, member("d"), Outbox::new().0),
            Err(JoinError::NotFound(unknown))
        );
    }
}
