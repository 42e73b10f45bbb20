//! Taking a session up again from the state its client holds (`chorus_proto::session`):
//! the same participant, its media at the SFU as it was, and nobody in the room told
//! anything changed.
//!
//! Two ways a participant can be waiting for its session:
//!
//! - **Detached here**: its socket broke (no close frame) while this node stayed up. The
//!   presence stays for `resume_grace`, its frames going nowhere; a resume re-attaches
//!   it to the new socket, and if none comes it leaves as disconnected.
//! - **Orphaned at an SFU**: this node (re)started and an SFU node still carries media
//!   no presence of any node knows (the node before it crashed or restarted; the media
//!   never stopped). The follower's re-sync lists them; a resume adopts one; those not
//!   adopted within `resume_grace` are removed at the SFU and the room is told they
//!   left, so nobody stays listed who is not coming back.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use chorus_proto::session::InRoom;
use chorus_proto::signal::{ErrorCode, LeftReason};
use chorus_proto::{NodeId, ParticipantId, RoomId};

use super::{Failure, RoomService, Visitor, knockers_of};
use crate::rooms::{Presence, room_info};
use chorus_proto::fleet::PresenceRecord;

/// Media at an SFU node that no presence knows, waiting to be adopted by a resume.
#[derive(Default)]
pub struct Orphans(Mutex<HashMap<(RoomId, ParticipantId), (NodeId, Instant)>>);

impl Orphans {
    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<(RoomId, ParticipantId), (NodeId, Instant)>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn take(&self, room: &RoomId, id: &ParticipantId) -> Option<NodeId> {
        self.lock()
            .remove(&(room.clone(), id.clone()))
            .map(|(node, _)| node)
    }
}

/// What a session learns when it resumes.
pub struct Resumed {
    /// The room.
    pub room: chorus_proto::signal::RoomInfo,
    /// Its participant (the same as before).
    pub you: ParticipantId,
    /// Everyone present now.
    pub participants: Vec<chorus_proto::signal::ParticipantInfo>,
    /// Who waits at the door, for a moderator.
    pub knocks: Vec<chorus_proto::signal::Knocker>,
}

fn refused(message: impl Into<String>) -> Failure {
    (ErrorCode::ResumeFailed, message.into())
}

impl RoomService {
    /// Resume `visitor`'s place in a room as its sealed state describes it.
    pub async fn resume(&self, visitor: Visitor<'_>, place: &InRoom) -> Result<Resumed, Failure> {
        let (room, id) = (&place.room, &place.participant);
        let group = self
            .resolve(room)
            .await
            .map_err(|(_, message)| refused(message))?;
        if group.removed.contains(visitor.user) {
            return Err(refused("you were removed from this room"));
        }
        match self.registry.record(room, id) {
            Some(record) if &record.user == visitor.user => {
                // Detached (or a half-open socket the server still thinks alive): this
                // session takes the presence over; the old one ends without leaving.
                if let Some(old) = self.registry.reattach(room, id, visitor.outbox.clone()) {
                    tokio::spawn(async move {
                        old.close(
                            chorus_proto::signal::close::RESUMED_ELSEWHERE,
                            "this session was resumed on another connection".into(),
                            std::time::Duration::from_secs(2),
                        )
                        .await;
                    });
                }
                tracing::info!(room = %room, participant = %id, "session resumed (re-attached)");
            }
            Some(_) => return Err(refused("that place in the room is someone else's")),
            None => self.adopt(&group, &visitor, place).await?,
        }
        let participants = self.participants(room).await;
        self.registry.told_of(room, &participants);
        let moderates = group
            .member(visitor.user)
            .is_some_and(|m| m.role.moderates());
        Ok(Resumed {
            room: room_info(&group),
            you: id.clone(),
            participants,
            knocks: if moderates {
                knockers_of(&group)
            } else {
                Vec::new()
            },
        })
    }

    /// Adopt media an SFU node still carries for this participant (the node that held
    /// its presence restarted or died).
    async fn adopt(
        &self,
        group: &crate::rooms::group_chat::GroupChat,
        visitor: &Visitor<'_>,
        place: &InRoom,
    ) -> Result<(), Failure> {
        let (room, id) = (&place.room, &place.participant);
        if self.bus.is_shared()
            && let Ok(remote) = self.bus.presences(room).await
            && remote.iter().any(|(p, _)| p == id)
        {
            return Err(refused(
                "that place is still held by another server; joining again",
            ));
        }
        if group.member(visitor.user).is_none() {
            return Err(refused("you are no longer a member of this room"));
        }
        // Listed by the re-sync, or (a resume quicker than the first re-sync after a
        // start) asked of the node now.
        let listed = self.orphans.take(room, id);
        let node = listed.clone().unwrap_or_else(|| place.sfu.clone());
        if listed.is_none() && !self.sfu_carries(&node, room, id).await {
            return Err(refused(
                "your audio connection ended meanwhile; joining again",
            ));
        }
        let record = PresenceRecord {
            user: visitor.user.clone(),
            name: visitor.name.to_owned(),
            self_muted: place.muted,
            connected: true,
            node: self.registry.node().clone(),
            sfu: Some(node.clone()),
        };
        self.registry.add(
            group,
            id.clone(),
            Presence {
                record,
                admitted_at: Some(Instant::now()),
                outbox: visitor.outbox.clone(),
            },
        );
        // Others kept it listed: an update (its name and mute as now), never a join.
        self.registry.announce_arrival(room, id);
        tracing::info!(room = %room, participant = %id, sfu = %node, "session resumed (media adopted)");
        Ok(())
    }

    /// Whether SFU node `node` carries connected media for this participant.
    async fn sfu_carries(&self, node: &NodeId, room: &RoomId, id: &ParticipantId) -> bool {
        let Ok(nodes) = self.router.nodes().await else {
            return false;
        };
        let Some(record) = nodes.iter().find(|n| &n.id == node) else {
            return false;
        };
        let Ok(sfu) = self.sfu_client(record) else {
            return false;
        };
        sfu.participants().await.is_ok_and(|list| {
            list.iter().any(|p| {
                p.connected && p.room_id == room.as_str() && p.participant_id == id.as_str()
            })
        })
    }

    /// Whether another signaling node holds a presence for this participant.
    async fn held_elsewhere(&self, room: &RoomId, id: &ParticipantId) -> bool {
        self.bus.is_shared()
            && self
                .bus
                .presences(room)
                .await
                .is_ok_and(|remote| remote.iter().any(|(p, _)| p == id))
    }

    /// The re-sync with `node` found media no presence here knows: unless another node
    /// holds it, keep it for a resume for `resume_grace`, then take it out (spawned).
    pub async fn found_orphans(&self, node: &NodeId, mut found: Vec<(RoomId, ParticipantId)>) {
        let mut i = 0;
        while i < found.len() {
            let (room, id) = &found[i];
            if self.held_elsewhere(room, id).await {
                found.swap_remove(i);
            } else {
                i += 1;
            }
        }
        if found.is_empty() {
            return;
        }
        tracing::info!(sfu = %node, count = found.len(), "media nobody holds: waiting for the sessions to resume");
        let now = Instant::now();
        {
            let mut orphans = self.orphans.lock();
            for key in &found {
                orphans.insert(key.clone(), (node.clone(), now));
            }
        }
        let Some(service) = self.me.upgrade() else {
            return;
        };
        let grace = self.timeouts.resume_grace;
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            for (room, id) in found {
                let Some(_) = service.orphans.take(&room, &id) else {
                    continue; // resumed, or gone meanwhile
                };
                // A presence that was still on its way to the directory is not an orphan.
                if service.registry.contains(&room, &id) || service.held_elsewhere(&room, &id).await
                {
                    continue;
                }
                tracing::info!(room = %room, participant = %id, "not resumed in time: taken out");
                service.sfu_remove(&room, &id).await;
                service
                    .registry
                    .tell_left(&room, &id, LeftReason::Disconnected);
            }
        });
    }

    /// The SFU says a participant's media ended: if it was an orphan, the room is told
    /// it left (nobody else would). True when it was one.
    pub fn orphan_left(&self, room: &RoomId, id: &ParticipantId) -> bool {
        if self.orphans.take(room, id).is_none() {
            return false;
        }
        tracing::info!(room = %room, participant = %id, "media nobody held ended");
        self.registry.tell_left(room, id, LeftReason::Disconnected);
        true
    }

    /// A session whose socket broke leaves after `resume_grace`, unless a resume took
    /// its presence over meanwhile (`outbox` is the broken session's).
    pub fn detach(&self, room: RoomId, id: ParticipantId, outbox: crate::ws::outbox::Outbox) {
        let Some(service) = self.me.upgrade() else {
            return;
        };
        let grace = self.timeouts.resume_grace;
        tracing::info!(room = %room, participant = %id, grace_ms = grace.as_millis() as u64, "socket lost: the place waits for a resume");
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            if service.registry.owned_by(&room, &id, &outbox) {
                tracing::info!(room = %room, participant = %id, "not resumed in time: leaving");
                service.leave(&room, &id, LeftReason::Disconnected).await;
            }
        });
    }
}
