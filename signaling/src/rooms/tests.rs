//! Room logic in-process, against the fake SFU (`sfu::fake`): the same service, store and
//! event follower as a real node, with no UDP, DTLS or second process. What media does
//! at a real SFU is covered by the integration tests under `tests/`.

use std::sync::Arc;
use std::time::Duration;

use chorus_proto::signal::{ErrorCode, LeftReason, RoomState, SeatMode, ServerMessage};
use chorus_proto::token::TokenIssuer;
use chorus_proto::{NodeId, ParticipantId, RoomId, UserId};
use tokio::sync::mpsc;

use crate::rooms::bus::LocalBus;
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
        bus: Arc::new(LocalBus::new(NodeId::random())),
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
