//! 1:1 calls between accounts: ringing every device of the callee, one answer, relaying
//! the two browsers' SDP and ICE candidates (the media goes straight between them), the
//! move into a two-seat SFU room when the direct path fails, the end of a call however it
//! comes, and its record. `docs/protocol.md`, "Calls".
//!
//! A call lives in the process of the caller's signaling node while it rings and runs;
//! its record is written to the people store when it ends. The callee's devices may be
//! on any node of a fleet: they are rung, told and heard through `people::fleet`, and
//! their requests about the call come back here (`follow_fleet`).

pub mod ice;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chorus_proto::fleet::unix_ms;
use chorus_proto::people::{
    CallEnd, CallInfo, IceCandidate, MediaPath, PersonInfo, SessionDescription,
};
use chorus_proto::signal::{ErrorCode, ServerMessage};
use chorus_proto::{CallId, NodeId, RoomId, UserId};

use crate::people::People;
use crate::people::directory::{Device, DeviceId, Sink};
use crate::people::fleet::{CallRequest, PeopleEnvelope, PeopleEvent};
use crate::rooms::bus::BusError;
use crate::rooms::group_chat::Actor;
use crate::rooms::service::{CallRoom, Failure, RoomService};
use crate::store::people::{Account, StoredCall};

use self::ice::IceConfig;

/// Calls one user may start per [`INVITE_WINDOW`].
pub const MAX_INVITES: usize = 5;
/// The window [`MAX_INVITES`] counts in.
pub const INVITE_WINDOW: Duration = Duration::from_secs(60);

/// Every way a call ends, for counting.
const ENDS: [CallEnd; 9] = [
    CallEnd::HungUp,
    CallEnd::Cancelled,
    CallEnd::Declined,
    CallEnd::Busy,
    CallEnd::NoAnswer,
    CallEnd::Unavailable,
    CallEnd::AnsweredElsewhere,
    CallEnd::Disconnected,
    CallEnd::Grown,
];

/// Counters for `/metrics`.
#[derive(Default)]
pub struct CallMetrics {
    /// Calls that rang (or ended at once: busy, unavailable).
    pub started: AtomicU64,
    /// Calls answered.
    pub answered: AtomicU64,
    /// Calls the callee missed.
    pub missed: AtomicU64,
    /// Answered calls whose media never connected.
    pub failed: AtomicU64,
    /// Calls whose media went browser to browser.
    pub direct: AtomicU64,
    /// Calls moved into an SFU room.
    pub relayed: AtomicU64,
    /// Calls turned into voice rooms.
    pub grown: AtomicU64,
    /// Bytes the SFU carried for relayed calls (from and to both sides), counted when
    /// each call's room closes.
    pub sfu_bytes: AtomicU64,
    /// Ended calls, by how (in the order of `ENDS`).
    ended: [AtomicU64; 9],
}

impl CallMetrics {
    /// Prometheus text.
    pub fn render(&self, active: usize) -> String {
        use std::fmt::Write as _;
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut text = String::new();
        for (name, help, value) in [
            (
                "chorus_calls_started_total",
                "1:1 calls started.",
                load(&self.started),
            ),
            (
                "chorus_calls_answered_total",
                "1:1 calls answered.",
                load(&self.answered),
            ),
            (
                "chorus_calls_missed_total",
                "1:1 calls the callee missed (cancelled, no answer, unavailable, busy).",
                load(&self.missed),
            ),
            (
                "chorus_calls_failed_total",
                "1:1 calls answered whose media never connected.",
                load(&self.failed),
            ),
            (
                "chorus_calls_direct_total",
                "1:1 calls whose media went browser to browser (the SFU carried none of it).",
                load(&self.direct),
            ),
            (
                "chorus_calls_relayed_total",
                "1:1 calls moved into an SFU room (the direct path failed or was not wanted).",
                load(&self.relayed),
            ),
            (
                "chorus_calls_grown_total",
                "1:1 calls turned into voice rooms (add someone).",
                load(&self.grown),
            ),
            (
                "chorus_calls_sfu_bytes_total",
                "Bytes the SFU carried for 1:1 calls, from and to both sides (none for a direct call); counted as each call ends.",
                load(&self.sfu_bytes),
            ),
        ] {
            let _ = writeln!(
                text,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        }
        let _ = writeln!(
            text,
            "# HELP chorus_calls_ended_total 1:1 calls ended, by how.\n# TYPE chorus_calls_ended_total counter"
        );
        for (end, count) in ENDS.iter().zip(&self.ended) {
            let reason = serde_json::to_value(end)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let _ = writeln!(
                text,
                "chorus_calls_ended_total{{reason=\"{reason}\"}} {}",
                load(count)
            );
        }
        let _ = writeln!(
            text,
            "# HELP chorus_calls_active 1:1 calls ringing or running on this node.\n# TYPE chorus_calls_active gauge\nchorus_calls_active {active}"
        );
        text
    }

    fn ended(&self, end: CallEnd) {
        if let Some(i) = ENDS.iter().position(|e| *e == end) {
            self.ended[i].fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// One call while it rings or runs.
struct Call {
    info: CallInfo,
    caller: Device,
    /// The callee's devices that ring (until one answers).
    ringing: Vec<Device>,
    /// The callee's device that answered.
    answered: Option<Device>,
    started_ms: u64,
    answered_ms: Option<u64>,
    path: Option<MediaPath>,
    no_answer: Option<tokio::task::AbortHandle>,
    /// Through the SFU: not yet, being made, or this room.
    relay: Relay,
    /// Only through the SFU: the two are not contacts, or one of them wants it. No
    /// signal passes between them.
    relay_only: bool,
    /// Its room is being made ("add someone"): a second ask waits for the first.
    growing: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Relay {
    No,
    Making,
    Room(RoomId),
}

impl Call {
    /// The other side of `device`, once answered.
    fn other_side(&self, device: DeviceId) -> Option<&Device> {
        let answered = self.answered.as_ref()?;
        if self.caller.id == device {
            Some(answered)
        } else if answered.id == device {
            Some(&self.caller)
        } else {
            None
        }
    }

    fn is_party(&self, device: DeviceId) -> bool {
        self.caller.id == device
            || self.answered.as_ref().is_some_and(|d| d.id == device)
            || self.ringing.iter().any(|d| d.id == device)
    }
}

#[derive(Default)]
struct Calls {
    calls: HashMap<CallId, Call>,
    /// The call each user is in (as caller or callee).
    of_user: HashMap<UserId, CallId>,
}

impl Calls {
    /// The answered call `id` that `device` is a side of. A side still ringing is told
    /// `then`: what waits for the answer.
    fn answered(
        &mut self,
        id: &CallId,
        device: DeviceId,
        then: &str,
    ) -> Result<&mut Call, Failure> {
        let call = self.calls.get_mut(id).ok_or_else(not_found)?;
        if call.other_side(device).is_none() {
            return Err(match call.is_party(device) {
                true => (
                    ErrorCode::InvalidInput,
                    format!("the call is not answered yet: {then}"),
                ),
                false => not_found(),
            });
        }
        Ok(call)
    }
}

/// Calls of other nodes that this node's devices were told of: the call's node, and
/// which devices here take part.
type CallsElsewhere = HashMap<CallId, (NodeId, Vec<DeviceId>)>;

/// The calls of this node.
pub struct CallService {
    people: Arc<People>,
    rooms: Arc<RoomService>,
    ice: IceConfig,
    ring: Duration,
    state: Mutex<Calls>,
    elsewhere: Mutex<CallsElsewhere>,
    invites: Mutex<HashMap<UserId, VecDeque<Instant>>>,
    /// Counters.
    pub metrics: CallMetrics,
}

fn not_found() -> Failure {
    (
        ErrorCode::CallNotFound,
        "that call has ended or is not yours".into(),
    )
}

fn fleet_failure(e: BusError) -> Failure {
    (
        ErrorCode::TemporarilyUnavailable,
        format!("calls are unavailable for a moment ({e}); try again"),
    )
}

/// The call a frame for a device is about, if any.
fn call_of(message: &ServerMessage) -> Option<&CallId> {
    match message {
        ServerMessage::CallIncoming { call }
        | ServerMessage::CallRinging { call }
        | ServerMessage::CallAccepted { call, .. } => Some(&call.id),
        ServerMessage::CallSignal { call, .. }
        | ServerMessage::CallRelayed { call, .. }
        | ServerMessage::CallGrown { call, .. }
        | ServerMessage::CallEnded { call, .. } => Some(call),
        _ => None,
    }
}

impl CallService {
    /// Calls between the accounts of `people`, with these ICE servers, ringing for `ring`
    /// before they end unanswered.
    pub fn new(
        people: Arc<People>,
        rooms: Arc<RoomService>,
        ice: IceConfig,
        ring: Duration,
    ) -> Arc<Self> {
        let service = Arc::new(Self {
            people,
            rooms,
            ice,
            ring,
            state: Mutex::default(),
            elsewhere: Mutex::default(),
            invites: Mutex::default(),
            metrics: CallMetrics::default(),
        });
        if service.people.fleet.is_shared() {
            tokio::spawn(Self::refresh_claims(Arc::downgrade(&service)));
        }
        service
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Calls> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Calls ringing or running.
    pub fn active(&self) -> usize {
        self.lock().calls.len()
    }

    /// One more call by `user`, if within the limit.
    fn allow_invite(&self, user: &UserId) -> Result<(), Failure> {
        let now = Instant::now();
        let mut invites = self.invites.lock().unwrap_or_else(|e| e.into_inner());
        if invites.len() > 10_000 {
            invites.retain(|_, at| {
                at.back()
                    .is_some_and(|t| now.duration_since(*t) < INVITE_WINDOW)
            });
        }
        let recent = invites.entry(user.clone()).or_default();
        while recent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= INVITE_WINDOW)
        {
            recent.pop_front();
        }
        if recent.len() >= MAX_INVITES {
            return Err((
                ErrorCode::RateLimited,
                format!("at most {MAX_INVITES} calls a minute; wait a moment"),
            ));
        }
        recent.push_back(now);
        Ok(())
    }

    /// `me` (on `device`) rings the account with `handle`.
    pub async fn invite(
        self: &Arc<Self>,
        me: &Account,
        device: &Device,
        handle: &str,
    ) -> Result<(), Failure> {
        let callee = self.people.account_by_handle(handle).await?;
        if callee.user == me.user {
            return Err((ErrorCode::InvalidInput, "you cannot call yourself".into()));
        }
        if callee.blocked.contains(&me.user) {
            return Err((
                ErrorCode::Forbidden,
                format!("@{} does not take calls from you", callee.handle),
            ));
        }
        if self.lock().of_user.contains_key(&me.user) {
            return Err((
                ErrorCode::AlreadyInCall,
                "you are in a call already; hang up first".into(),
            ));
        }
        self.allow_invite(&me.user)?;
        let id = CallId::random();
        let info = CallInfo {
            id: id.clone(),
            caller: self.people.person(me).await,
            callee: self.people.person(&callee).await,
        };
        let now = unix_ms();
        let devices = self.people.call_takers(&callee.user).await;
        // One call at a time for each, on every node of a fleet.
        let fleet = &self.people.fleet;
        if !fleet
            .claim_call(&me.user, &id)
            .await
            .map_err(fleet_failure)?
        {
            return Err((
                ErrorCode::AlreadyInCall,
                "you are in a call already (on another device); hang up first".into(),
            ));
        }
        let callee_free = devices.is_empty()
            || fleet
                .claim_call(&callee.user, &id)
                .await
                .unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "cannot tell whether the callee is in a call elsewhere");
                    true
                });
        self.metrics.started.fetch_add(1, Ordering::Relaxed);
        let at_once = {
            let mut state = self.lock();
            if state.of_user.contains_key(&me.user) {
                return Err((
                    ErrorCode::AlreadyInCall,
                    "you are in a call already; hang up first".into(),
                ));
            }
            if devices.is_empty() {
                Some(CallEnd::Unavailable)
            } else if state.of_user.contains_key(&callee.user) || !callee_free {
                Some(CallEnd::Busy)
            } else {
                for d in &devices {
                    d.send(ServerMessage::CallIncoming { call: info.clone() });
                }
                device.send(ServerMessage::CallRinging { call: info.clone() });
                let service = Arc::downgrade(self);
                let ringing = id.clone();
                let ring = self.ring;
                let timer = tokio::spawn(async move {
                    tokio::time::sleep(ring).await;
                    if let Some(service) = service.upgrade() {
                        service.ring_out(&ringing).await;
                    }
                });
                state.of_user.insert(me.user.clone(), id.clone());
                state.of_user.insert(callee.user.clone(), id.clone());
                state.calls.insert(
                    id.clone(),
                    Call {
                        info: info.clone(),
                        caller: device.clone(),
                        ringing: devices,
                        answered: None,
                        started_ms: now,
                        answered_ms: None,
                        path: None,
                        no_answer: Some(timer.abort_handle()),
                        relay: Relay::No,
                        relay_only: false,
                        growing: false,
                    },
                );
                None
            }
        };
        if let Some(end) = at_once {
            for user in [&me.user, &callee.user] {
                if let Err(e) = fleet.release_call(user, &id).await {
                    tracing::warn!(error = %e, "could not free a user's call claim");
                }
            }
            self.finished(StoredCall {
                id: id.clone(),
                caller: me.user.clone(),
                callee: callee.user.clone(),
                started_ms: now,
                answered_ms: None,
                ended_ms: now,
                end,
                path: None,
            })
            .await;
            device.send(ServerMessage::CallEnded {
                call: id,
                reason: end,
            });
        }
        Ok(())
    }

    /// The callee takes the call on `device`. Between strangers (no shared group chat,
    /// no answered call before), or when either side always relays, the call goes
    /// through the SFU from the start: both are told so and the room is made at once.
    async fn accept_here(&self, me: &Account, device: &Device, id: &CallId) -> Result<(), Failure> {
        let caller = {
            let state = self.lock();
            let call = state.calls.get(id).ok_or_else(not_found)?;
            if call.info.callee.user != me.user {
                return Err(not_found());
            }
            call.info.caller.user.clone()
        };
        let relay_only = self.relay_only(&caller, &me.user).await?;
        let answering = {
            let mut state = self.lock();
            let call = state.calls.get_mut(id).ok_or_else(not_found)?;
            if call.answered.is_some() {
                // Another device was quicker: this one was told, or is told now.
                if call.answered.as_ref().is_some_and(|d| d.id == device.id) {
                    return Ok(());
                }
                device.send(ServerMessage::CallEnded {
                    call: id.clone(),
                    reason: CallEnd::AnsweredElsewhere,
                });
                return Ok(());
            }
            let Some(at) = call.ringing.iter().position(|d| d.id == device.id) else {
                return Err(not_found());
            };
            let answering = call.ringing.remove(at);
            for other in call.ringing.drain(..) {
                other.send(ServerMessage::CallEnded {
                    call: id.clone(),
                    reason: CallEnd::AnsweredElsewhere,
                });
            }
            if let Some(timer) = call.no_answer.take() {
                timer.abort();
            }
            call.answered_ms = Some(unix_ms());
            call.relay_only = relay_only;
            let now_secs = unix_ms() / 1000;
            call.caller.send(ServerMessage::CallAccepted {
                call: call.info.clone(),
                ice_servers: self.ice.servers_for(&call.info.caller.user, now_secs),
                relay: relay_only,
            });
            answering.send(ServerMessage::CallAccepted {
                call: call.info.clone(),
                ice_servers: self.ice.servers_for(&call.info.callee.user, now_secs),
                relay: relay_only,
            });
            call.answered = Some(answering.clone());
            self.metrics.answered.fetch_add(1, Ordering::Relaxed);
            answering
        };
        self.people.set_in_call(&caller, id, true).await;
        self.people.set_in_call(&me.user, id, true).await;
        if relay_only {
            match self.relay_here(&answering, id).await {
                // Hung up while its room was made: nothing left to tell the callee.
                Err((ErrorCode::CallNotFound, _)) => {}
                other => other?,
            }
        }
        Ok(())
    }

    /// `me`'s `device` takes the call.
    pub async fn accept(&self, me: &Account, device: &Device, id: &CallId) -> Result<(), Failure> {
        if self.forwarded(id, device, me, CallRequest::Accept) {
            return Ok(());
        }
        self.accept_here(me, device, id).await
    }

    /// `me`'s `device` refuses the call.
    pub async fn decline(&self, me: &Account, device: &Device, id: &CallId) -> Result<(), Failure> {
        if self.forwarded(id, device, me, CallRequest::Decline) {
            return Ok(());
        }
        self.decline_here(me, device, id).await
    }

    /// `me`'s `device` ends the call: cancelled, declined or hung up.
    pub async fn hang_up(&self, me: &Account, device: &Device, id: &CallId) -> Result<(), Failure> {
        if self.forwarded(id, device, me, CallRequest::HangUp) {
            return Ok(());
        }
        self.hang_up_here(me, device, id).await
    }

    /// An SDP or ICE candidate from `device` for the other side.
    pub async fn signal(
        &self,
        me: &Account,
        device: &Device,
        id: &CallId,
        description: Option<SessionDescription>,
        candidate: Option<IceCandidate>,
    ) -> Result<(), Failure> {
        let request = CallRequest::Signal {
            description,
            candidate,
        };
        if self.forwarded(id, device, me, request.clone()) {
            return Ok(());
        }
        let CallRequest::Signal {
            description,
            candidate,
        } = request
        else {
            return Ok(());
        };
        self.signal_here(device, id, description, candidate)
    }

    /// `device`'s peer connection reached the other browser directly.
    pub async fn connected(
        &self,
        me: &Account,
        device: &Device,
        id: &CallId,
    ) -> Result<(), Failure> {
        if self.forwarded(id, device, me, CallRequest::Connected) {
            return Ok(());
        }
        self.connected_here(device, id)
    }

    /// `device` asks for the SFU.
    pub async fn relay(&self, me: &Account, device: &Device, id: &CallId) -> Result<(), Failure> {
        if self.forwarded(id, device, me, CallRequest::Relay) {
            return Ok(());
        }
        self.relay_here(device, id).await
    }

    /// `device` turns the call into a room ("add someone").
    pub async fn grow(&self, me: &Account, device: &Device, id: &CallId) -> Result<(), Failure> {
        if self.forwarded(id, device, me, CallRequest::Grow) {
            return Ok(());
        }
        self.grow_here(device, id).await
    }

    /// `device`'s session ended: its call ends with it (a ringing device just stops),
    /// here or on the node of a call it was told of.
    pub async fn device_gone(&self, device: DeviceId) {
        self.device_gone_here(device).await;
        let nodes: Vec<NodeId> = {
            let mut elsewhere = self.elsewhere.lock().unwrap_or_else(|e| e.into_inner());
            let mut nodes = Vec::new();
            elsewhere.retain(|_, (node, devices)| {
                if devices.contains(&device) {
                    devices.retain(|d| *d != device);
                    if !nodes.contains(node) {
                        nodes.push(node.clone());
                    }
                }
                !devices.is_empty()
            });
            nodes
        };
        for node in nodes {
            self.people
                .fleet
                .send(&node, PeopleEvent::DeviceGone { device });
        }
    }

    /// If `id` is a call of another node that `device` was told of, hand the request to
    /// that node (which answers an error, if any, to the device): true.
    fn forwarded(&self, id: &CallId, device: &Device, me: &Account, request: CallRequest) -> bool {
        let node = {
            let elsewhere = self.elsewhere.lock().unwrap_or_else(|e| e.into_inner());
            match elsewhere.get(id) {
                Some((node, devices)) if devices.contains(&device.id) => node.clone(),
                _ => return false,
            }
        };
        self.people.fleet.send(
            &node,
            PeopleEvent::Request {
                call: id.clone(),
                device: device.id,
                user: me.user.clone(),
                request,
            },
        );
        true
    }

    /// Follow what the other nodes of the fleet send about people and calls, until the
    /// node stops.
    pub async fn follow_fleet(
        self: Arc<Self>,
        mut inbound: tokio::sync::mpsc::UnboundedReceiver<PeopleEnvelope>,
    ) {
        while let Some(PeopleEnvelope { origin, event }) = inbound.recv().await {
            match event {
                PeopleEvent::Deliver { device, message } => self.deliver(origin, device, message),
                PeopleEvent::Request {
                    call,
                    device,
                    user,
                    request,
                } => self.on_request(origin, call, device, user, request).await,
                PeopleEvent::DeviceGone { device } => self.device_gone_here(device).await,
                PeopleEvent::Presence { user, presence } => {
                    self.people.directory.tell_followers(&user, presence);
                }
            }
        }
    }

    /// A frame from the call's node for a device of this one.
    fn deliver(&self, origin: NodeId, device: DeviceId, message: ServerMessage) {
        let Some(local) = self.people.directory.device(device) else {
            if call_of(&message).is_some() && !matches!(message, ServerMessage::CallEnded { .. }) {
                // Gone meanwhile: the call's node must not wait for it.
                self.people
                    .fleet
                    .send(&origin, PeopleEvent::DeviceGone { device });
            }
            return;
        };
        if let Some(call) = call_of(&message) {
            let mut elsewhere = self.elsewhere.lock().unwrap_or_else(|e| e.into_inner());
            if matches!(message, ServerMessage::CallEnded { .. }) {
                if let Some((_, devices)) = elsewhere.get_mut(call) {
                    devices.retain(|d| *d != device);
                    if devices.is_empty() {
                        elsewhere.remove(call);
                    }
                }
            } else {
                let (_, devices) = elsewhere
                    .entry(call.clone())
                    .or_insert_with(|| (origin, Vec::new()));
                if !devices.contains(&device) {
                    devices.push(device);
                }
            }
        }
        local.send(message);
    }

    /// A request of a device on `origin` about a call of this node.
    async fn on_request(
        &self,
        origin: NodeId,
        call: CallId,
        device: DeviceId,
        user: UserId,
        request: CallRequest,
    ) {
        let device = Device {
            id: device,
            sink: Sink::Remote {
                node: origin,
                fleet: self.people.fleet.clone(),
            },
            takes_calls: true,
        };
        let result = match self.people.account_of(&user).await {
            Ok(Some(account)) => match request {
                CallRequest::Accept => self.accept_here(&account, &device, &call).await,
                CallRequest::Decline => self.decline_here(&account, &device, &call).await,
                CallRequest::HangUp => self.hang_up_here(&account, &device, &call).await,
                CallRequest::Signal {
                    description,
                    candidate,
                } => self.signal_here(&device, &call, description, candidate),
                CallRequest::Connected => self.connected_here(&device, &call),
                CallRequest::Relay => self.relay_here(&device, &call).await,
                CallRequest::Grow => self.grow_here(&device, &call).await,
            },
            Ok(None) => Err(not_found()),
            Err(failure) => Err(failure),
        };
        if let Err((code, message)) = result {
            device.send(ServerMessage::Error { code, message });
        }
    }

    /// Keep the fleet's claims of this node's calls alive, every third of their TTL,
    /// until the service is gone.
    async fn refresh_claims(service: std::sync::Weak<Self>) {
        let every = Duration::from_millis(crate::people::fleet::CALL_CLAIM_TTL_MS / 3);
        loop {
            tokio::time::sleep(every).await;
            let Some(service) = service.upgrade() else {
                return;
            };
            let claims: Vec<(UserId, CallId)> = service
                .lock()
                .calls
                .iter()
                .flat_map(|(id, call)| {
                    [
                        (call.info.caller.user.clone(), id.clone()),
                        (call.info.callee.user.clone(), id.clone()),
                    ]
                })
                .collect();
            if let Err(e) = service.people.fleet.refresh_calls(&claims).await {
                tracing::warn!(error = %e, "could not refresh this node's call claims");
            }
        }
    }

    /// Whether a call between these two must go through the SFU: they are not contacts,
    /// or one of them always relays (as their accounts say now, not as a session of
    /// theirs read them).
    async fn relay_only(&self, caller: &UserId, callee: &UserId) -> Result<bool, Failure> {
        for user in [caller, callee] {
            if self
                .people
                .account_of(user)
                .await?
                .is_some_and(|a| a.always_relay)
            {
                return Ok(true);
            }
        }
        Ok(!self.people.knows(caller, callee).await?)
    }

    /// The callee refuses the call from `device`.
    async fn decline_here(
        &self,
        me: &Account,
        device: &Device,
        id: &CallId,
    ) -> Result<(), Failure> {
        {
            let state = self.lock();
            let call = state.calls.get(id).ok_or_else(not_found)?;
            if call.info.callee.user != me.user
                || call.answered.is_some()
                || !call.ringing.iter().any(|d| d.id == device.id)
            {
                return Err(not_found());
            }
        }
        self.end(id, CallEnd::Declined, None).await;
        Ok(())
    }

    /// Either side ends the call from `device`: cancelled, declined or hung up.
    async fn hang_up_here(
        &self,
        me: &Account,
        device: &Device,
        id: &CallId,
    ) -> Result<(), Failure> {
        let end = {
            let state = self.lock();
            let call = state.calls.get(id).ok_or_else(not_found)?;
            let mine = call.info.caller.user == me.user || call.info.callee.user == me.user;
            if !mine || !call.is_party(device.id) {
                return Err(not_found());
            }
            match (&call.answered, call.caller.id == device.id) {
                (Some(_), _) => CallEnd::HungUp,
                (None, true) => CallEnd::Cancelled,
                (None, false) => CallEnd::Declined,
            }
        };
        self.end(id, end, None).await;
        Ok(())
    }

    /// Pass an SDP or ICE candidate from `device` to the other side of an answered call.
    fn signal_here(
        &self,
        device: &Device,
        id: &CallId,
        description: Option<SessionDescription>,
        candidate: Option<IceCandidate>,
    ) -> Result<(), Failure> {
        if description.is_none() && candidate.is_none() {
            return Err((
                ErrorCode::InvalidInput,
                "a call_signal carries a description or a candidate".into(),
            ));
        }
        let mut state = self.lock();
        let call = state.answered(id, device.id, "signals follow call_accepted")?;
        let Some(other) = call.other_side(device.id) else {
            return Err(not_found());
        };
        if call.relay_only {
            return Err((
                ErrorCode::Forbidden,
                "this call goes through the server: addresses are not exchanged".into(),
            ));
        }
        other.send(ServerMessage::CallSignal {
            call: id.clone(),
            description,
            candidate,
        });
        Ok(())
    }

    /// `device`'s peer connection reached the other browser directly.
    fn connected_here(&self, device: &Device, id: &CallId) -> Result<(), Failure> {
        let mut state = self.lock();
        let call = state.calls.get_mut(id).ok_or_else(not_found)?;
        if call.other_side(device.id).is_none() {
            return Err(not_found());
        }
        if call.path.is_none() {
            call.path = Some(MediaPath::Direct);
            self.metrics.direct.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// A side of an answered call asks for the SFU: the call's room is made (once, however
    /// many ask) and both sides are told to join it.
    async fn relay_here(&self, device: &Device, id: &CallId) -> Result<(), Failure> {
        let (caller, callee) = {
            let mut state = self.lock();
            let call = state.answered(id, device.id, "it moves to the SFU after call_accepted")?;
            match &call.relay {
                Relay::Room(room) => {
                    device.send(ServerMessage::CallRelayed {
                        call: id.clone(),
                        room: room.clone(),
                    });
                    return Ok(());
                }
                Relay::Making => return Ok(()), // told with the other side when it is made
                Relay::No => call.relay = Relay::Making,
            }
            (call.info.caller.clone(), call.info.callee.clone())
        };
        let made = self
            .rooms
            .create_call_room(
                CallRoom::Relay,
                format!("Call: {} and {}", caller.name, callee.name),
                (&caller.user, &caller.name),
                (&callee.user, &callee.name),
            )
            .await;
        let room = match made {
            Ok(room) => room,
            Err(failure) => {
                if let Some(call) = self.lock().calls.get_mut(id) {
                    call.relay = Relay::No;
                }
                return Err(failure);
            }
        };
        let marked = |call: &mut Call| {
            call.relay = Relay::Room(room.clone());
            call.path = Some(MediaPath::Relayed);
        };
        let relayed = ServerMessage::CallRelayed {
            call: id.clone(),
            room: room.clone(),
        };
        self.tell_sides(id, &room, marked, relayed).await?;
        self.metrics.relayed.fetch_add(1, Ordering::Relaxed);
        tracing::info!(call = %id, room = %room, "call moved to the SFU");
        Ok(())
    }

    /// "Add someone": a side of an answered call turns it into a voice room, both on
    /// seats; both are told the room, then the call ends `grown`.
    async fn grow_here(&self, device: &Device, id: &CallId) -> Result<(), Failure> {
        let (caller, callee) = {
            let mut state = self.lock();
            let call = state.answered(id, device.id, "answer it before adding someone")?;
            if call.growing {
                return Ok(()); // both sides are told when the first ask's room is made
            }
            call.growing = true;
            (call.info.caller.clone(), call.info.callee.clone())
        };
        let room = self
            .rooms
            .create_call_room(
                CallRoom::Grown,
                format!("{} and {}", caller.name, callee.name),
                (&caller.user, &caller.name),
                (&callee.user, &callee.name),
            )
            .await;
        let room = match room {
            Ok(room) => room,
            Err(failure) => {
                if let Some(call) = self.lock().calls.get_mut(id) {
                    call.growing = false;
                }
                return Err(failure);
            }
        };
        let grown = ServerMessage::CallGrown {
            call: id.clone(),
            room: room.clone(),
        };
        self.tell_sides(id, &room, |_| {}, grown).await?;
        self.metrics.grown.fetch_add(1, Ordering::Relaxed);
        tracing::info!(call = %id, room = %room, "call grown into a room");
        self.end(id, CallEnd::Grown, None).await;
        Ok(())
    }

    /// Both sides of call `id` are told `frame` about `room`, made for it (after `mark`
    /// updated the call). If the call ended while the room was made, nobody goes there:
    /// the room is closed and the call is not found.
    async fn tell_sides(
        &self,
        id: &CallId,
        room: &RoomId,
        mark: impl FnOnce(&mut Call),
        frame: ServerMessage,
    ) -> Result<(), Failure> {
        let told = match self.lock().calls.get_mut(id) {
            Some(call) => {
                mark(call);
                for side in std::iter::once(&call.caller).chain(call.answered.iter()) {
                    side.send(frame.clone());
                }
                true
            }
            None => false,
        };
        if !told {
            self.close_room(room).await;
            return Err(not_found());
        }
        Ok(())
    }

    /// A call's room, ended with its call.
    /// The bytes the SFU carried for it are counted.
    async fn close_room(&self, room: &RoomId) {
        match self.rooms.end(room, &Actor::Service).await {
            Ok(bytes) => {
                self.metrics.sfu_bytes.fetch_add(bytes, Ordering::Relaxed);
            }
            Err((code, message)) => {
                tracing::warn!(room = %room, ?code, message, "could not end a call's room");
            }
        }
    }

    /// `device`'s session ended: its call ends with it (a ringing device just stops).
    async fn device_gone_here(&self, device: DeviceId) {
        let mut ends = Vec::new();
        {
            let mut state = self.lock();
            for (id, call) in state.calls.iter_mut() {
                if call.caller.id == device {
                    ends.push((
                        id.clone(),
                        if call.answered.is_some() {
                            CallEnd::Disconnected
                        } else {
                            CallEnd::Cancelled
                        },
                    ));
                } else if call.answered.as_ref().is_some_and(|d| d.id == device) {
                    ends.push((id.clone(), CallEnd::Disconnected));
                } else if let Some(at) = call.ringing.iter().position(|d| d.id == device) {
                    call.ringing.remove(at);
                    if call.ringing.is_empty() && call.answered.is_none() {
                        ends.push((id.clone(), CallEnd::Unavailable));
                    }
                }
            }
        }
        for (id, end) in ends {
            self.end(&id, end, Some(device)).await;
        }
    }

    /// Nobody answered in time.
    async fn ring_out(&self, id: &CallId) {
        // This runs in the timer's own task: it must not abort itself on the way.
        let unanswered = self
            .lock()
            .calls
            .get_mut(id)
            .and_then(|call| call.answered.is_none().then(|| call.no_answer.take()));
        if unanswered.is_some() {
            self.end(id, CallEnd::NoAnswer, None).await;
        }
    }

    /// End a call: the users are free again, the record is written, and both sides are
    /// told (except `gone`, a session that no longer listens) — so a side that is told
    /// finds the call in its list.
    async fn end(&self, id: &CallId, end: CallEnd, gone: Option<DeviceId>) {
        let call = {
            let mut state = self.lock();
            let Some(call) = state.calls.remove(id) else {
                return;
            };
            state.of_user.remove(&call.info.caller.user);
            state.of_user.remove(&call.info.callee.user);
            call
        };
        if let Some(timer) = &call.no_answer {
            timer.abort();
        }
        if let Relay::Room(room) = &call.relay {
            self.close_room(room).await;
        }
        for user in [&call.info.caller.user, &call.info.callee.user] {
            self.people.set_in_call(user, id, false).await;
        }
        if call.answered.is_some() && call.path.is_none() {
            self.metrics.failed.fetch_add(1, Ordering::Relaxed);
        }
        let record = StoredCall {
            id: id.clone(),
            caller: call.info.caller.user.clone(),
            callee: call.info.callee.user.clone(),
            started_ms: call.started_ms,
            answered_ms: call.answered_ms,
            ended_ms: unix_ms(),
            end,
            path: call.path,
        };
        self.finished(record.clone()).await;
        let told = std::iter::once(&call.caller)
            .chain(call.answered.iter())
            .chain(call.ringing.iter())
            .filter(|d| Some(d.id) != gone);
        for device in told {
            device.send(ServerMessage::CallEnded {
                call: id.clone(),
                reason: end,
            });
        }
        // Every calls screen of both users, also those answered elsewhere, lists it now.
        for (me, peer) in [
            (&call.info.caller, &call.info.callee),
            (&call.info.callee, &call.info.caller),
        ] {
            let peer = PersonInfo {
                presence: self.people.presence(&peer.user).await,
                ..peer.clone()
            };
            let seen = crate::people::record_as(&me.user, &record, peer);
            for device in self.people.call_takers(&me.user).await {
                device.send(ServerMessage::CallRecorded {
                    record: seen.clone(),
                });
            }
        }
    }

    /// Count an ended call and write its record. A store failure loses the record, not
    /// the call's end: both sides are told all the same.
    async fn finished(&self, record: StoredCall) {
        self.metrics.ended(record.end);
        if record.end.missed() {
            self.metrics.missed.fetch_add(1, Ordering::Relaxed);
        }
        if let Err(e) = self.people.store.record_call(&record).await {
            tracing::warn!(call = %record.id, error = %e, "could not save a call's record");
        }
    }
}
