//! Who is online on this node: the connected devices (sessions) of each account, who is
//! in a call, and which sessions follow whose presence. A user is `online` while any of
//! their sessions is connected, `in_call` while one of them is in a call.
//!
//! One node's view. In a fleet (`shared`), a user's presence spans every node's devices:
//! this directory then tells its followers only what it is told (`tell_followers`), and
//! `People` works the presence out over the fleet (`people::fleet`).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use chorus_proto::people::Presence;
use chorus_proto::signal::ServerMessage;
use chorus_proto::{NodeId, UserId};

use super::fleet::{PeopleEvent, PeopleFleet};
use crate::ws::outbox::Outbox;

/// One session of a user: a tab, an app, a device. Random, so that the devices of every
/// node of a fleet can be told apart.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct DeviceId(u64);

impl DeviceId {
    /// A new one.
    pub fn next() -> Self {
        DeviceId(rand::random())
    }
}

impl std::fmt::Display for DeviceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl std::str::FromStr for DeviceId {
    type Err = std::num::ParseIntError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        u64::from_str_radix(s, 16).map(DeviceId)
    }
}

/// Where a device's frames go: its session's queue on this node, or through the
/// signaling node it is connected to.
#[derive(Clone)]
pub enum Sink {
    /// A session of this node.
    Local(Outbox),
    /// A session of another node of the fleet.
    Remote {
        /// Its node.
        node: NodeId,
        /// The way there.
        fleet: Arc<dyn PeopleFleet>,
    },
}

/// A connected device: where to send its frames.
#[derive(Clone)]
pub struct Device {
    /// Which.
    pub id: DeviceId,
    /// Where its frames go.
    pub sink: Sink,
    /// Whether it rings when its user is called (a calls screen, not a room page).
    pub takes_calls: bool,
}

impl Device {
    /// A session of this node.
    pub fn local(id: DeviceId, outbox: Outbox, takes_calls: bool) -> Self {
        Self {
            id,
            sink: Sink::Local(outbox),
            takes_calls,
        }
    }

    /// Send the device a frame.
    pub fn send(&self, message: ServerMessage) {
        match &self.sink {
            Sink::Local(outbox) => outbox.send(message),
            Sink::Remote { node, fleet } => fleet.send(
                node,
                PeopleEvent::Deliver {
                    device: self.id,
                    message,
                },
            ),
        }
    }

    /// Its session's queue, if it is on this node.
    fn outbox(&self) -> Option<&Outbox> {
        match &self.sink {
            Sink::Local(outbox) => Some(outbox),
            Sink::Remote { .. } => None,
        }
    }
}

#[derive(Default)]
struct Inner {
    devices: HashMap<UserId, Vec<Device>>,
    in_call: HashSet<UserId>,
    /// Who follows a user's presence: device → its outbox.
    watchers: HashMap<UserId, HashMap<DeviceId, Outbox>>,
    /// Whom a device follows (to stop following).
    watching: HashMap<DeviceId, Vec<UserId>>,
    /// Part of a fleet: presence is told from outside.
    shared: bool,
}

impl Inner {
    fn presence(&self, user: &UserId) -> Presence {
        if self.in_call.contains(user) {
            Presence::InCall
        } else if self.devices.get(user).is_some_and(|d| !d.is_empty()) {
            Presence::Online
        } else {
            Presence::Offline
        }
    }

    /// Tell `user`'s followers if its presence is no longer `before`.
    fn tell(&self, user: &UserId, before: Presence) {
        let now = self.presence(user);
        if now == before || self.shared {
            return;
        }
        self.tell_followers(user, now);
    }

    fn tell_followers(&self, user: &UserId, now: Presence) {
        for outbox in self
            .watchers
            .get(user)
            .into_iter()
            .flat_map(HashMap::values)
        {
            outbox.send(ServerMessage::Presence {
                user: user.clone(),
                presence: now,
            });
        }
    }
}

/// The presence of this node's accounts.
#[derive(Default)]
pub struct Directory {
    inner: Mutex<Inner>,
}

impl Directory {
    /// The directory of a node alone (`shared: false`) or of a fleet's node.
    pub fn new(shared: bool) -> Self {
        Self {
            inner: Mutex::new(Inner {
                shared,
                ..Inner::default()
            }),
        }
    }

    /// Tell the sessions of this node that follow `user` its presence (in a fleet: as
    /// worked out over every node).
    pub fn tell_followers(&self, user: &UserId, presence: Presence) {
        self.lock().tell_followers(user, presence);
    }

    /// A connected device of this node.
    pub fn device(&self, id: DeviceId) -> Option<Device> {
        self.lock()
            .devices
            .values()
            .flatten()
            .find(|d| d.id == id)
            .cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A session of `user` is connected.
    pub fn connect(&self, user: &UserId, device: Device) {
        let mut inner = self.lock();
        let before = inner.presence(user);
        inner.devices.entry(user.clone()).or_default().push(device);
        inner.tell(user, before);
    }

    /// A session of `user` is gone (and follows nobody any more).
    pub fn disconnect(&self, user: &UserId, device: DeviceId) {
        let mut inner = self.lock();
        Self::unwatch_in(&mut inner, device);
        let before = inner.presence(user);
        if let Some(devices) = inner.devices.get_mut(user) {
            devices.retain(|d| d.id != device);
            if devices.is_empty() {
                inner.devices.remove(user);
            }
        }
        inner.tell(user, before);
    }

    /// The connected devices of `user` that take calls (ring when it is called).
    pub fn call_takers(&self, user: &UserId) -> Vec<Device> {
        self.lock()
            .devices
            .get(user)
            .map(|d| d.iter().filter(|d| d.takes_calls).cloned().collect())
            .unwrap_or_default()
    }

    /// Whether `user` is online, in a call or offline.
    pub fn presence(&self, user: &UserId) -> Presence {
        self.lock().presence(user)
    }

    /// `user` is in a call now, or not any more.
    pub fn set_in_call(&self, user: &UserId, in_call: bool) {
        let mut inner = self.lock();
        let before = inner.presence(user);
        if in_call {
            inner.in_call.insert(user.clone());
        } else {
            inner.in_call.remove(user);
        }
        inner.tell(user, before);
    }

    /// `device` follows the presence of `users` from now on (instead of whom it followed).
    pub fn watch(&self, device: &Device, users: Vec<UserId>) {
        let mut inner = self.lock();
        Self::unwatch_in(&mut inner, device.id);
        let Some(outbox) = device.outbox().cloned() else {
            return; // a device of another node follows there
        };
        for user in &users {
            inner
                .watchers
                .entry(user.clone())
                .or_default()
                .insert(device.id, outbox.clone());
        }
        inner.watching.insert(device.id, users);
    }

    fn unwatch_in(inner: &mut Inner, device: DeviceId) {
        for user in inner.watching.remove(&device).unwrap_or_default() {
            if let Some(watchers) = inner.watchers.get_mut(&user) {
                watchers.remove(&device);
                if watchers.is_empty() {
                    inner.watchers.remove(&user);
                }
            }
        }
    }

    /// How many accounts have a device connected, and how many devices.
    pub fn counts(&self) -> (usize, usize) {
        let inner = self.lock();
        (
            inner.devices.len(),
            inner.devices.values().map(Vec::len).sum(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device() -> (
        Device,
        tokio::sync::mpsc::Receiver<crate::ws::outbox::Outgoing>,
    ) {
        let (outbox, rx, _) = Outbox::new();
        (Device::local(DeviceId::next(), outbox, true), rx)
    }

    fn presences(
        rx: &mut tokio::sync::mpsc::Receiver<crate::ws::outbox::Outgoing>,
    ) -> Vec<Presence> {
        let mut out = Vec::new();
        while let Ok(crate::ws::outbox::Outgoing::Frame(ServerMessage::Presence {
            presence, ..
        })) = rx.try_recv()
        {
            out.push(presence);
        }
        out
    }

    #[test]
    fn presence_is_per_user_across_devices() {
        let directory = Directory::default();
        let (ada, bo) = (UserId::random(), UserId::random());
        let (watcher, mut told) = device();
        directory.watch(&watcher, vec![ada.clone()]);
        let (phone, _p) = device();
        let (laptop, _l) = device();
        assert_eq!(directory.presence(&ada), Presence::Offline);
        directory.connect(&ada, phone.clone());
        directory.connect(&ada, laptop.clone());
        directory.set_in_call(&ada, true);
        directory.set_in_call(&ada, false);
        directory.disconnect(&ada, phone.id);
        assert_eq!(
            directory.presence(&ada),
            Presence::Online,
            "the laptop is still on"
        );
        directory.disconnect(&ada, laptop.id);
        directory.connect(&bo, device().0);
        assert_eq!(
            presences(&mut told),
            [
                Presence::Online,
                Presence::InCall,
                Presence::Online,
                Presence::Offline
            ],
            "one change each, none for a second device or for someone not followed"
        );
        directory.disconnect(&UserId::random(), watcher.id);
        directory.connect(&ada, phone);
        assert!(
            presences(&mut told).is_empty(),
            "a gone session follows nobody"
        );
        assert_eq!(directory.counts(), (2, 2));
    }
}
