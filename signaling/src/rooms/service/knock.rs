//! Knocking: in a room whose entry is `knock`, a newcomer's `join` waits until a
//! moderator lets them in or not. The knock itself is in the group record (so every
//! node's moderators see it, and a moderator on any node answers it); the waiting
//! session is on one node, which hands it the answer when a record without the knock
//! arrives — admitted (the join then goes ahead) or not.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use chorus_proto::signal::{Knocker, RoomInfo};
use chorus_proto::{RoomId, UserId};
use tokio::sync::oneshot;

use super::{Failure, RoomService, now_secs};
use crate::rooms::group_chat::{Actor, GroupChat};
use crate::rooms::room_info;

/// The sessions of this node waiting at a room's door: each is told `true` (let in) or
/// `false` (not, or the knock lapsed).
#[derive(Default)]
pub struct Knockers(Mutex<HashMap<(RoomId, UserId), oneshot::Sender<bool>>>);

impl Knockers {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(RoomId, UserId), oneshot::Sender<bool>>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Everyone knocking on a room, as moderators are shown them.
pub fn knockers_of(group: &GroupChat) -> Vec<Knocker> {
    group
        .knocks
        .iter()
        .map(|k| Knocker {
            user: k.user.clone(),
            name: k.name.clone(),
        })
        .collect()
}

impl RoomService {
    /// `user` knocks on `room`: the answer comes on the receiver.
    pub async fn knock(
        &self,
        room: &RoomId,
        user: &UserId,
        name: &str,
    ) -> Result<(RoomInfo, oneshot::Receiver<bool>), Failure> {
        let (tx, rx) = oneshot::channel();
        // Registered first: the answer may come before `change` returns.
        self.knockers
            .lock()
            .insert((room.clone(), user.clone()), tx);
        let (who, name) = (user.clone(), name.to_owned());
        match self
            .change(room, Box::new(move |g| g.knock(&who, &name, now_secs())))
            .await
        {
            Ok(group) => {
                tracing::info!(room = %room, user = %user, "knocking");
                Ok((room_info(&group), rx))
            }
            Err(failure) => {
                self.knockers.lock().remove(&(room.clone(), user.clone()));
                Err(failure)
            }
        }
    }

    /// `actor` (a moderator) lets `user` in, or not.
    pub async fn answer_knock(
        &self,
        room: &RoomId,
        actor: &Actor,
        user: &UserId,
        admit: bool,
    ) -> Result<(), Failure> {
        let (actor, who) = (actor.clone(), user.clone());
        self.change(room, Box::new(move |g| g.answer_knock(&actor, &who, admit)))
            .await?;
        tracing::info!(room = %room, user = %user, admit, "knock answered");
        Ok(())
    }

    /// `user` stops waiting (it left, or its session ended).
    pub async fn withdraw_knock(&self, room: &RoomId, user: &UserId) {
        self.knockers.lock().remove(&(room.clone(), user.clone()));
        let who = user.clone();
        let withdrawn = self
            .change(
                room,
                Box::new(move |g| {
                    g.withdraw_knock(&who);
                    Ok(())
                }),
            )
            .await;
        if let Err((_, message)) = withdrawn {
            tracing::debug!(room = %room, %message, "knock not withdrawn");
        }
    }

    /// A record of `group` arrived (changed here or on another node): the sessions
    /// waiting here whose knock is gone from it are told whether they were let in.
    pub(super) fn knocks_answered(&self, group: &GroupChat) {
        let mut knockers = self.knockers.lock();
        let answered: Vec<(RoomId, UserId)> = knockers
            .keys()
            .filter(|(room, user)| {
                room == &group.room && !group.knocks.iter().any(|k| &k.user == user)
            })
            .cloned()
            .collect();
        for key in answered {
            if let Some(tx) = knockers.remove(&key) {
                let _ = tx.send(group.admitted.contains(&key.1) || group.member(&key.1).is_some());
            }
        }
    }
}
