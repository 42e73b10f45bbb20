//! Room logic in-process, against the fake SFU (`sfu::fake`): the same service, store and
//! event follower as a real node, with no UDP, DTLS or second process. What media does
//! at a real SFU is covered by the integration tests under `tests/`.

use std::sync::Arc;
use std::time::Duration;

use chorus_proto::fleet::PresenceRecord;
use chorus_proto::signal::{ErrorCode, LeftReason, RoomState, SeatMode, ServerMessage};
use chorus_proto::token::TokenIssuer;
use chorus_proto::{NodeId, ParticipantId, RoomId, UserId};
use tokio::sync::mpsc;

use crate::rooms::bus::{
    BusError, BusEvent, Envelope, Inbound, LocalBus, Orphan, RoomBus, RoomNews,
};
use crate::rooms::group_chat::Actor;
use crate::rooms::service::{
    Entered, Moderation, NewRoom, RoomService, RoomTimeouts, Seams, Visitor,
};
use crate::routing::LocalRouter;
use crate::sfu::fake::{FAKE_ANSWER, FakeSfu};
use crate::store::{EmbeddedStore, SharedStore};
use crate::ws::outbox::{Outbox, Outgoing};

/// How long a condition may take to become true before a test fails.
const DEADLINE: Duration = Duration::from_secs(10);

struct Node {
    rooms: Arc<RoomService>,
    sfu: FakeSfu,
    store: SharedStore,
    path: std::path::PathBuf,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

struct Client {
    user: UserId,
    name: String,
    outbox: Outbox,
    frames: mpsc::Receiver<Outgoing>,
}

impl Client {
    fn new(name: &str) -> Self {
        let (outbox, frames, _) = Outbox::new();
        Self {
            user: UserId::random(),
            name: name.to_owned(),
            outbox,
            frames,
        }
    }

    fn visitor(&self) -> Visitor<'_> {
        Visitor {
            user: &self.user,
            name: &self.name,
            outbox: &self.outbox,
            origin: None,
            signed_in: false,
        }
    }

    /// The next frame matching `want`, skipping others.
    async fn expect(&mut self, what: &str, want: impl Fn(&ServerMessage) -> bool) -> ServerMessage {
        let wait = async {
            loop {
                match self.frames.recv().await {
                    Some(Outgoing::Frame(m)) if want(&m) => return Some(m),
                    Some(_) => {}
                    None => return None,
                }
            }
        };
        match tokio::time::timeout(DEADLINE, wait).await {
            Ok(Some(m)) => m,
            other => panic!("{} never got {what} ({other:?})", self.name),
        }
    }
}

async fn node(timeouts: RoomTimeouts) -> Node {
    node_on(timeouts, Arc::new(LocalBus::new(NodeId::random()))).await
}

async fn node_on(timeouts: RoomTimeouts, bus: Arc<dyn RoomBus>) -> Node {
    let tokens = TokenIssuer::generate().unwrap();
    let sfu_id = NodeId::random();
    let sfu = FakeSfu::new(sfu_id.clone(), tokens.verifier().unwrap());
    let path = std::env::temp_dir().join(format!(
        "chorus-rooms-{}-{}.redb",
        std::process::id(),
        ParticipantId::random()
    ));
    let store: SharedStore = Arc::new(EmbeddedStore::open(&path).unwrap());
    let seams = Seams {
        store: store.clone(),
        router: Arc::new(LocalRouter::new("fake://sfu", sfu_id)),
        bus,
        sfus: Arc::new(sfu.clone()),
    };
    let rooms = RoomService::new(seams, tokens, timeouts);
    let (tx, subscribed) = tokio::sync::oneshot::channel();
    crate::rooms::sfu_events::spawn(rooms.clone(), tx);
    subscribed.await.unwrap();
    Node {
        rooms,
        sfu,
        store,
        path,
    }
}

fn room_settings(seat_mode: SeatMode) -> NewRoom {
    NewRoom {
        title: "standup".into(),
        capacity: Some(3),
        seats: Some(2),
        seat_mode,
        entry: chorus_proto::signal::EntryPolicy::Anyone,
    }
}

/// Poll `check` until it is true, or fail saying `what`.
async fn eventually<F: std::future::Future<Output = bool>>(what: &str, check: impl Fn() -> F) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn state_of(node: &Node, room: &RoomId) -> Option<RoomState> {
    node.store
        .group_by_room(room)
        .await
        .unwrap()
        .map(|g| g.state)
}

/// A room whose creator's media connected: (room, creator's participant id).
async fn active_room(node: &Node, owner: &mut Client, mode: SeatMode) -> (RoomId, ParticipantId) {
    let Entered {
        room, you, answer, ..
    } = node
        .rooms
        .create(owner.visitor(), room_settings(mode), "offer".into())
        .await
        .unwrap();
    assert_eq!(answer, FAKE_ANSWER);
    assert_eq!(state_of(node, &room.id).await, Some(RoomState::Pending));
    assert!(node.sfu.connect(&room.id, &you));
    eventually("the room is active", || async {
        state_of(node, &room.id).await == Some(RoomState::Active)
    })
    .await;
    (room.id, you)
}

#[tokio::test]
async fn the_creators_media_makes_the_room_active_with_the_owner_on_a_seat() {
    let node = node(RoomTimeouts::default()).await;
    let mut owner = Client::new("owner");
    let (room, you) = active_room(&node, &mut owner, SeatMode::Moderated).await;
    let at_sfu = node.sfu.participant(&room, &you).unwrap();
    assert!(at_sfu.grants.publish && at_sfu.grants.admin, "{at_sfu:?}");
}

#[tokio::test]
async fn a_pending_room_whose_creator_never_connects_is_rolled_back_everywhere() {
    let node = node(RoomTimeouts {
        pending: Duration::from_millis(300),
        ..RoomTimeouts::default()
    })
    .await;
    let mut owner = Client::new("owner");
    let entered = node
        .rooms
        .create(
            owner.visitor(),
            room_settings(SeatMode::Moderated),
            "offer".into(),
        )
        .await
        .unwrap();
    let room = entered.room.id.clone();
    assert_eq!(node.sfu.in_room(&room), vec![entered.you.clone()]);
    owner
        .expect("the error", |m| {
            matches!(
                m,
                ServerMessage::Error {
                    code: ErrorCode::MediaUnavailable,
                    ..
                }
            )
        })
        .await;
    owner
        .expect("left room_closed", |m| {
            matches!(
                m,
                ServerMessage::Left {
                    reason: LeftReason::RoomClosed,
                    ..
                }
            )
        })
        .await;
    assert_eq!(state_of(&node, &room).await, None, "record deleted");
    assert!(
        node.sfu.in_room(&room).is_empty(),
        "media closed at the SFU"
    );
}

#[tokio::test]
async fn a_granted_seat_reaches_the_sfu_and_a_revoked_one_is_taken_back() {
    let node = node(RoomTimeouts::default()).await;
    let mut owner = Client::new("owner");
    let (room, _) = active_room(&node, &mut owner, SeatMode::Moderated).await;
    let guest = Client::new("guest");
    let entered = node
        .rooms
        .join(guest.visitor(), &room, "offer".into())
        .await
        .unwrap();
    let id = entered.you;
    assert!(!node.sfu.participant(&room, &id).unwrap().grants.publish);
    node.sfu.connect(&room, &id);
    eventually("the guest is a member", || async {
        node.store
            .group_by_room(&room)
            .await
            .unwrap()
            .is_some_and(|g| g.member(&guest.user).is_some())
    })
    .await;
    let actor = Actor::Member(owner.user.clone());
    node.rooms
        .moderate(&room, &actor, &guest.user, Moderation::Seat(true))
        .await
        .unwrap();
    assert!(node.sfu.participant(&room, &id).unwrap().grants.publish);
    node.rooms
        .moderate(&room, &actor, &guest.user, Moderation::Mute(true))
        .await
        .unwrap();
    assert!(node.sfu.participant(&room, &id).unwrap().muted);
    node.rooms
        .moderate(&room, &actor, &guest.user, Moderation::Seat(false))
        .await
        .unwrap();
    assert!(!node.sfu.participant(&room, &id).unwrap().grants.publish);
}

#[tokio::test]
async fn a_node_the_media_has_moved_away_from_cannot_take_the_participant_out() {
    let node = node(RoomTimeouts::default()).await;
    let mut owner = Client::new("owner");
    let (room, _) = active_room(&node, &mut owner, SeatMode::Open).await;
    let (moved, marker) = (Client::new("moved"), Client::new("marker"));
    let mut ids = Vec::new();
    for client in [&moved, &marker] {
        let id = node
            .rooms
            .join(client.visitor(), &room, "offer".into())
            .await
            .unwrap()
            .you;
        node.sfu.connect(&room, &id);
        ids.push(id);
    }
    let (moved_id, marker_id) = (ids[0].clone(), ids[1].clone());
    // The participant's media now runs on another node (its old node was lost and it
    // reconnected there); the old node, back, reports the connection it no longer uses.
    node.rooms
        .registry
        .set_admitted(&room, &moved_id, &NodeId::random());
    node.sfu.lose(&room, &moved_id);
    // Events of one node arrive in order: once the marker's departure is in, the stale
    // one before it was handled too.
    node.sfu.lose(&room, &marker_id);
    owner
        .expect("the marker's departure", |m| {
            matches!(m, ServerMessage::ParticipantLeft { participant, .. } if *participant == marker_id)
        })
        .await;
    let present: Vec<ParticipantId> = node
        .rooms
        .participants(&room)
        .await
        .into_iter()
        .map(|p| p.id)
        .collect();
    assert!(
        present.contains(&moved_id),
        "a stale event of a node it has left took the participant out: {present:?}"
    );
}

#[tokio::test]
async fn lost_media_is_heard_of_and_a_held_place_is_given_back() {
    let node = node(RoomTimeouts::default()).await;
    let mut owner = Client::new("owner");
    let (room, _) = active_room(&node, &mut owner, SeatMode::Open).await;
    let guest = Client::new("guest");
    let id = node
        .rooms
        .join(guest.visitor(), &room, "offer".into())
        .await
        .unwrap()
        .you;
    node.sfu.connect(&room, &id);
    eventually("the guest is a member", || async {
        node.store
            .group_by_room(&room)
            .await
            .unwrap()
            .is_some_and(|g| g.member(&guest.user).is_some())
    })
    .await;
    node.sfu.lose(&room, &id);
    let gone = id.clone();
    owner
        .expect("the guest's departure", |m| {
            matches!(m, ServerMessage::ParticipantLeft { participant, .. } if *participant == gone)
        })
        .await;
    assert!(
        !node
            .rooms
            .participants(&room)
            .await
            .iter()
            .any(|p| p.id == id)
    );
    // A member keeps its place (membership is durable); a joiner whose media never
    // connected gives its held place back. Capacity 3: owner, guest, and one more.
    let late = Client::new("late");
    let held = node
        .rooms
        .join(late.visitor(), &room, "offer".into())
        .await
        .unwrap()
        .you;
    let extra = Client::new("extra");
    let Err((code, _)) = node
        .rooms
        .join(extra.visitor(), &room, "offer".into())
        .await
    else {
        panic!("a fourth place in a room of 3");
    };
    assert_eq!(code, ErrorCode::RoomFull);
    node.sfu.lose(&room, &held);
    eventually("the held place is given back", || async {
        node.store
            .group_by_room(&room)
            .await
            .unwrap()
            .is_some_and(|g| g.reservations.is_empty())
    })
    .await;
    node.rooms
        .join(extra.visitor(), &room, "offer".into())
        .await
        .unwrap();
}

#[tokio::test]
async fn an_sfu_refusal_reaches_the_joiner_and_holds_no_place() {
    let node = node(RoomTimeouts::default()).await;
    let mut owner = Client::new("owner");
    let (room, _) = active_room(&node, &mut owner, SeatMode::Open).await;
    node.sfu.refuse_admissions(Some((
        ErrorCode::MediaUnavailable,
        "the media server cannot be reached right now".into(),
    )));
    let guest = Client::new("guest");
    let Err((code, _)) = node
        .rooms
        .join(guest.visitor(), &room, "offer".into())
        .await
    else {
        panic!("a refused admission must fail the join");
    };
    assert_eq!(code, ErrorCode::MediaUnavailable);
    let group = node.store.group_by_room(&room).await.unwrap().unwrap();
    assert!(group.reservations.is_empty(), "{:?}", group.reservations);
}

#[tokio::test]
async fn speaking_levels_of_a_room_spanning_nodes_are_merged_not_alternated() {
    use chorus_proto::signal::SpeakerLevel;
    let node = node(RoomTimeouts::default()).await;
    let mut owner = Client::new("owner");
    let (room, you) = active_room(&node, &mut owner, SeatMode::Open).await;
    let (a, b) = (NodeId::random(), NodeId::random());
    let other = ParticipantId::random();
    let level = |p: &ParticipantId| SpeakerLevel {
        participant: p.clone(),
        level: 0.5,
    };
    node.rooms.registry.speaking(&room, &a, vec![level(&you)]);
    node.rooms.registry.speaking(&room, &b, vec![level(&other)]);
    let is_speaking = |m: &ServerMessage| matches!(m, ServerMessage::Speaking { .. });
    owner.expect("node A's levels", is_speaking).await;
    let ServerMessage::Speaking { levels } = owner.expect("merged levels", is_speaking).await
    else {
        unreachable!()
    };
    let mut who: Vec<_> = levels.iter().map(|l| l.participant.clone()).collect();
    who.sort_by(|x, y| x.as_str().cmp(y.as_str()));
    let mut want = vec![you.clone(), other.clone()];
    want.sort_by(|x, y| x.as_str().cmp(y.as_str()));
    assert_eq!(who, want, "both nodes' speakers in one message");
    // A node's next report replaces its own earlier one.
    node.rooms.registry.speaking(&room, &a, vec![]);
    let ServerMessage::Speaking { levels } = owner.expect("A silent", is_speaking).await else {
        unreachable!()
    };
    assert_eq!(levels.len(), 1);
    assert_eq!(levels[0].participant, other);
}

/// A bus of a fleet whose other nodes the test plays: their presences are what the test
/// puts here, their events what it sends to `follow_bus`.
struct ScriptedBus {
    node: NodeId,
    presences: std::sync::Mutex<Vec<(ParticipantId, PresenceRecord)>>,
}

#[async_trait::async_trait]
impl RoomBus for ScriptedBus {
    fn node(&self) -> &NodeId {
        &self.node
    }
    fn is_shared(&self) -> bool {
        true
    }
    async fn publish(&self, _envelope: &Envelope) -> Result<(), BusError> {
        Ok(())
    }
    async fn put_presence(
        &self,
        _room: &RoomId,
        _participant: &ParticipantId,
        _record: &PresenceRecord,
    ) -> Result<(), BusError> {
        Ok(())
    }
    async fn remove_presence(
        &self,
        _room: &RoomId,
        _participant: &ParticipantId,
    ) -> Result<bool, BusError> {
        Ok(true)
    }
    async fn presences(
        &self,
        _room: &RoomId,
    ) -> Result<Vec<(ParticipantId, PresenceRecord)>, BusError> {
        Ok(self.presences.lock().unwrap().clone())
    }
    async fn claim_orphans(&self) -> Result<Vec<Orphan>, BusError> {
        Ok(Vec::new())
    }

    async fn take_over(
        &self,
        _room: &RoomId,
        _participant: &ParticipantId,
    ) -> Result<Option<PresenceRecord>, BusError> {
        Ok(None)
    }
}

#[tokio::test]
async fn after_a_gap_in_the_bus_departures_and_arrivals_elsewhere_are_caught_up() {
    let other = NodeId::random();
    let bus = Arc::new(ScriptedBus {
        node: NodeId::random(),
        presences: std::sync::Mutex::default(),
    });
    let node = node_on(RoomTimeouts::default(), bus.clone()).await;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(node.rooms.clone().follow_bus(rx));
    let mut owner = Client::new("owner");
    let (room, _) = active_room(&node, &mut owner, SeatMode::Open).await;
    let group = node.store.group_by_room(&room).await.unwrap().unwrap();
    let remote = |name: &str| {
        (
            ParticipantId::random(),
            PresenceRecord {
                user: UserId::random(),
                name: name.to_owned(),
                self_muted: false,
                connected: true,
                node: other.clone(),
                sfu: None,
            },
        )
    };
    // Zoe arrives on another node: the owner hears of it over the bus.
    let zoe = remote("Zoe");
    bus.presences.lock().unwrap().push(zoe.clone());
    let info = crate::rooms::participant_info(&zoe.0, &zoe.1, &group);
    tx.send(Inbound::Event(Envelope {
        origin: other.clone(),
        room: room.clone(),
        event: BusEvent::Tell {
            news: RoomNews::Participant { participant: info },
            except: None,
        },
    }))
    .unwrap();
    let z = zoe.0.clone();
    owner
        .expect("Zoe's arrival", |m| {
            matches!(m, ServerMessage::ParticipantUpdated { participant } if participant.id == z)
        })
        .await;
    // A gap: meanwhile Zoe left and Yan arrived, and neither event got here.
    let yan = remote("Yan");
    *bus.presences.lock().unwrap() = vec![yan.clone()];
    tx.send(Inbound::Resubscribed).unwrap();
    let (z, y) = (zoe.0.clone(), yan.0.clone());
    owner
        .expect("Zoe's departure, caught up", |m| {
            matches!(m, ServerMessage::ParticipantLeft { participant, reason: LeftReason::Disconnected } if *participant == z)
        })
        .await;
    owner
        .expect("Yan's arrival, caught up", |m| {
            matches!(m, ServerMessage::ParticipantUpdated { participant } if participant.id == y)
        })
        .await;
}
