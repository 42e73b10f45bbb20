//! Taking a session up again from the state its client holds (`chorus_proto::session`):
//! the same participant, its media at the SFU as it was, and nobody in the room told
//! anything changed.
//!
//! Two ways a participant can be waiting for its session:
//!
//! - **Detached here**: its socket broke (no close frame) while this node stayed up. The
//!   presence stays for `resume_grace`, its frames going nowhere; a resume re-attaches
//!   it to the new socket, and if none comes it leaves as disconnected.
//! - **Orphaned at an SFU**: an SFU node still carries media no presence of any node
//!   knows — this node (re)started and the one before it crashed or stopped (the
//!   follower's first re-sync lists them), or, in a fleet, another signaling node died
//!   and this one swept its presences. The media never stopped; a resume on any node
//!   adopts it; what is not adopted within `resume_grace` is removed at the SFU and the
//!   room told it left (and, when the user is known, its seat given back), so nobody
//!   stays listed who is not coming back.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use chorus_proto::session::InRoom;
use chorus_proto::signal::{ErrorCode, LeftReason};
use chorus_proto::{NodeId, ParticipantId, RoomId, UserId};

use super::{Failure, RoomService, Visitor, knockers_of};
use crate::rooms::{Presence, room_info};
use chorus_proto::fleet::PresenceRecord;

/// How long a resume waits for the node holding its presence to be known dead (its
/// heartbeat's TTL, and a beat).
const TAKE_OVER_WAIT: std::time::Duration =
    std::time::Duration::from_millis(chorus_proto::fleet::NODE_TTL_MS + 1500);

/// Media at an SFU node that no presence knows, waiting to be adopted by a resume: its
/// node and, when known (a swept presence), its user.
#[derive(Default)]
pub struct Orphans(Mutex<HashMap<(RoomId, ParticipantId), Orphaned>>);

#[derive(Clone)]
struct Orphaned {
    sfu: NodeId,
    user: Option<UserId>,
}

impl Orphans {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(RoomId, ParticipantId), Orphaned>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn take(&self, room: &RoomId, id: &ParticipantId) -> Option<Orphaned> {
        self.lock().remove(&(room.clone(), id.clone()))
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
        let mut taken = None;
        if self.bus.is_shared()
            && let Ok(remote) = self.bus.presences(room).await
            && remote.iter().any(|(p, _)| p == id)
        {
            // Held by a node that died, before any sweep claimed it: take it over. A
            // client is back sooner than the dead node's heartbeat expires, so wait for
            // that (a node that is alive, its socket half-open there, keeps it).
            let until = Instant::now() + TAKE_OVER_WAIT;
            taken = loop {
                match self.bus.take_over(room, id).await {
                    Ok(Some(record)) if &record.user == visitor.user => break Some(record),
                    Ok(Some(_)) => {
                        return Err(refused("that place in the room is someone else's"));
                    }
                    Ok(None) | Err(_) if Instant::now() < until => {
                        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                    }
                    Ok(None) | Err(_) => {
                        return Err(refused(
                            "that place is still held by another server; joining again",
                        ));
                    }
                }
                // Claimed meanwhile by a sweep (here or on another node): an orphan now.
                if !self.held_elsewhere(room, id).await {
                    break None;
                }
            };
        }
        if group.member(visitor.user).is_none() {
            return Err(refused("you are no longer a member of this room"));
        }
        // Listed by a re-sync or a sweep of this node; else (a presence just taken over,
        // a resume quicker than the first re-sync after a start) asked of the node now.
        let listed = self.orphans.take(room, id).map(|o| o.sfu);
        let took_over = taken.is_some();
        let node = listed
            .clone()
            .or_else(|| taken.and_then(|r| r.sfu))
            .unwrap_or_else(|| place.sfu.clone());
        if listed.is_none() && !self.sfu_carries(&node, room, id).await {
            if took_over {
                // Out of the directory already: it is gone, and the room must hear so.
                self.gone(room, id, Some(visitor.user)).await;
            }
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
    /// holds it, keep it for a resume for `resume_grace`, then take it out.
    pub async fn found_orphans(&self, node: &NodeId, found: Vec<(RoomId, ParticipantId)>) {
        let mut waiting = Vec::new();
        for (room, id) in found {
            if !self.held_elsewhere(&room, &id).await {
                waiting.push((room, id, None));
            }
        }
        if !waiting.is_empty() {
            tracing::info!(sfu = %node, count = waiting.len(), "media nobody holds: waiting for the sessions to resume");
        }
        self.hold_orphans(node, waiting);
    }

    /// Presences of a signaling node that is gone, claimed by this node's sweep: those
    /// whose media an SFU carries wait for their sessions to resume (on any node); the
    /// rest are gone at once. Either way the room is told only when they are gone.
    pub async fn swept(&self, orphans: Vec<crate::rooms::bus::Orphan>) {
        let mut by_node: HashMap<NodeId, Vec<(RoomId, ParticipantId, Option<UserId>)>> =
            HashMap::new();
        for orphan in orphans {
            match orphan
                .record
                .sfu
                .clone()
                .filter(|_| orphan.record.connected)
            {
                Some(sfu) => {
                    tracing::info!(room = %orphan.room, participant = %orphan.participant, node = %orphan.record.node, "a presence left by a node that is gone: waiting for its session to resume");
                    by_node.entry(sfu).or_default().push((
                        orphan.room,
                        orphan.participant,
                        Some(orphan.record.user),
                    ));
                }
                None => {
                    tracing::info!(room = %orphan.room, participant = %orphan.participant, node = %orphan.record.node, "clearing a presence left by a node that is gone");
                    self.sfu_remove(&orphan.room, &orphan.participant).await;
                    self.gone(&orphan.room, &orphan.participant, Some(&orphan.record.user))
                        .await;
                }
            }
        }
        for (node, waiting) in by_node {
            self.hold_orphans(&node, waiting);
        }
    }

    /// Keep orphans for `resume_grace`; those not adopted by then are gone (spawned).
    fn hold_orphans(&self, node: &NodeId, waiting: Vec<(RoomId, ParticipantId, Option<UserId>)>) {
        if waiting.is_empty() {
            return;
        }
        {
            let mut orphans = self.orphans.lock();
            for (room, id, user) in &waiting {
                orphans.insert(
                    (room.clone(), id.clone()),
                    Orphaned {
                        sfu: node.clone(),
                        user: user.clone(),
                    },
                );
            }
        }
        let Some(service) = self.me.upgrade() else {
            return;
        };
        let grace = self.timeouts.resume_grace;
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            for (room, id, _) in waiting {
                let Some(orphan) = service.orphans.take(&room, &id) else {
                    continue; // resumed, or gone meanwhile
                };
                // Resumed on this node or another (or a presence that was still on its
                // way to the directory): not an orphan.
                if service.registry.contains(&room, &id) || service.held_elsewhere(&room, &id).await
                {
                    continue;
                }
                tracing::info!(room = %room, participant = %id, "not resumed in time: taken out");
                service.sfu_remove(&room, &id).await;
                service.gone(&room, &id, orphan.user.as_ref()).await;
            }
        });
    }

    /// An orphan is gone for good: the room is told, and its user's seat and held place
    /// are given back (when the user is known; otherwise the start's reconciliation
    /// does it after the rejoin grace).
    async fn gone(&self, room: &RoomId, id: &ParticipantId, user: Option<&UserId>) {
        self.registry.tell_left(room, id, LeftReason::Disconnected);
        if let Some(user) = user {
            let group = self.resolve(room).await.ok();
            self.after_departure(group, room, user).await;
        }
    }

    /// The SFU says a participant's media ended: if it was an orphan, it is gone (nobody
    /// else would say so). True when it was one.
    pub async fn orphan_left(&self, room: &RoomId, id: &ParticipantId) -> bool {
        let Some(orphan) = self.orphans.take(room, id) else {
            return false;
        };
        tracing::info!(room = %room, participant = %id, "media nobody held ended");
        self.gone(room, id, orphan.user.as_ref()).await;
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
