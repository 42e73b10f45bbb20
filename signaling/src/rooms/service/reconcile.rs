//! What a stop left behind, reconciled when a node starts. A room's timers (a pending
//! room's rollback) and its presences lived in the process that stopped; the record
//! still says what they were for. So, once started:
//!
//! - a room still **pending** gets the pending time again: if its creator has not come
//!   back by then (present on no node), it is rolled back;
//! - **seats, raised hands and held places** of users present on no node are kept for
//!   `rejoin_grace` (a restart is not the members leaving: they reconnect by themselves
//!   and find their seat), then given up, as when a member leaves.
//!
//! Only what was in the records at start is judged, so nothing made afterwards is
//! touched. In a fleet every starting node does this; a user present on any node counts
//! as back.

use std::sync::Arc;

use chorus_proto::signal::{Role, RoomState};
use chorus_proto::{RoomId, UserId};

use super::RoomService;
use crate::rooms::group_chat::GroupChat;

impl RoomService {
    /// Run the reconciliation; returns when it is done (spawn it).
    pub async fn reconcile_after_start(self: Arc<Self>) {
        let groups = match self.store.groups().await {
            Ok(groups) => groups,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the rooms to reconcile after start");
                return;
            }
        };
        let waiting: Vec<(RoomId, Vec<UserId>)> = groups
            .iter()
            .filter(|g| g.state == RoomState::Active)
            .map(|g| (g.room.clone(), on_stage_or_holding(g)))
            .filter(|(_, users)| !users.is_empty())
            .collect();
        let pending: Vec<GroupChat> = groups
            .into_iter()
            .filter(|g| g.state == RoomState::Pending)
            .collect();
        if waiting.is_empty() && pending.is_empty() {
            return;
        }
        tracing::info!(
            pending = pending.len(),
            rooms_waiting = waiting.len(),
            "reconciling what the last stop left behind"
        );
        let started = tokio::time::Instant::now();
        tokio::time::sleep(self.timeouts.pending).await;
        for group in pending {
            let Ok(Some(now)) = self.store.group_by_room(&group.room).await else {
                continue;
            };
            if now.state == RoomState::Pending
                && self.presences_of(&now.room, &now.owner).await.is_empty()
            {
                tracing::info!(room = %now.room, "a room pending when the server stopped: its creator never came back; rolling it back");
                self.roll_back(&now, None).await;
            }
        }
        tokio::time::sleep_until(started + self.timeouts.rejoin_grace).await;
        for (room, users) in waiting {
            let mut absent = Vec::new();
            for user in users {
                if self.presences_of(&room, &user).await.is_empty() {
                    absent.push(user);
                }
            }
            if absent.is_empty() {
                continue;
            }
            tracing::info!(room = %room, users = absent.len(), "not back after the restart: seats, hands and held places given up");
            let result = self
                .change(
                    &room,
                    Box::new(move |g| {
                        for user in &absent {
                            g.depart(user);
                        }
                        Ok(())
                    }),
                )
                .await;
            if let Err((_, message)) = result {
                tracing::info!(room = %room, %message, "room not reconciled");
            }
        }
    }
}

/// Users other than the owner with a seat, a raised hand or a held place.
fn on_stage_or_holding(group: &GroupChat) -> Vec<UserId> {
    let mut users: Vec<UserId> = group
        .members
        .iter()
        .filter(|m| m.role != Role::Owner && (m.seated || m.hand_raised))
        .map(|m| m.user.clone())
        .collect();
    for r in &group.reservations {
        if !users.contains(&r.user) {
            users.push(r.user.clone());
        }
    }
    users
}
