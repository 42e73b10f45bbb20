//! Who is online on this node: the connected devices (sessions) of each account, who is
//! in a call, and which sessions follow whose presence. A user is `online` while any of
//! their sessions is connected, `in_call` while one of them is in a call.
//!
//! One node's view: accounts on other signaling nodes of a fleet are not seen yet (a
//! presence hash and user channels in Redis, as rooms have, are the way there).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use chorus_proto::UserId;
use chorus_proto::people::Presence;
use chorus_proto::signal::ServerMessage;

use crate::ws::outbox::Outbox;

/// One session of a user: a tab, an app, a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceId(u64);

impl DeviceId {
    /// A new one, unique in this process.
    pub fn next() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        DeviceId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

/// A connected device: where to send its frames.
#[derive(Clone)]
pub struct Device {
    /// Which.
    pub id: DeviceId,
    /// Its session's frames.
    pub outbox: Outbox,
    /// Whether it rings when its user is called (a calls screen, not a room page).
    pub takes_calls: bool,
}

#[derive(Default)]
struct Inner {
    devices: HashMap<UserId, Vec<Device>>,
    in_call: HashSet<UserId>,
    /// Who follows a user's presence: device → its outbox.
    watchers: HashMap<UserId, HashMap<DeviceId, Outbox>>,
    /// Whom a device follows (to stop following).
    watching: HashMap<DeviceId, Vec<UserId>>,
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
        if now == before {
            return;
        }
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
        for user in &users {
            inner
                .watchers
                .entry(user.clone())
                .or_default()
                .insert(device.id, device.outbox.clone());
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
        (
            Device {
                id: DeviceId::next(),
                outbox,
                takes_calls: true,
            },
            rx,
        )
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
