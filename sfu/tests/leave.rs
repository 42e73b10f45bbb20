//! Removing a participant: a `Left` event, the others stop hearing it, and its token
//! cannot admit it again. Closing a room removes everyone.
mod common;

use std::time::Duration;

use chorus_proto::RoomId;
use chorus_proto::token::Grants;
use chorus_sfu::{LeaveReason, SfuError};
use common::{Sim, claims};

#[test]
fn removed_participant_leaves_and_cannot_return() {
    let mut sim = Sim::new();
    let room = RoomId::random();
    let a = sim.join(&room, Grants::SPEAKER);
    let b = sim.join(&room, Grants::SPEAKER);
    sim.connect_all();
    sim.clients[a].talking = Some(-20);
    sim.run_for(Duration::from_millis(500));
    assert!(!sim.clients[b].received.is_empty());

    let id = sim.clients[a].id.clone();
    assert!(sim.engine.remove(&room, &id, sim.now));
    assert!(!sim.engine.remove(&room, &id, sim.now), "removed twice");
    sim.run_for(Duration::from_millis(100));
    assert_eq!(sim.left_events(), vec![(id.clone(), LeaveReason::Removed)]);

    sim.clear_received();
    sim.run_for(Duration::from_secs(1));
    assert!(
        sim.clients[b].received.is_empty(),
        "removed participant still heard"
    );
    assert_eq!(sim.engine.stats().participants, 1);

    let again = claims(&room, &id, Grants::SPEAKER);
    let err = sim.join_with(again, 3).unwrap_err();
    assert!(matches!(err, SfuError::Revoked { .. }), "{err}");
    assert!(err.to_string().contains("no longer accepted"), "{err}");
}

#[test]
fn admitting_twice_is_refused() {
    let mut sim = Sim::new();
    let room = RoomId::random();
    let id = chorus_proto::ParticipantId::random();
    sim.join_with(claims(&room, &id, Grants::SPEAKER), 3)
        .unwrap();
    let err = sim
        .join_with(claims(&room, &id, Grants::SPEAKER), 3)
        .unwrap_err();
    assert!(matches!(err, SfuError::AlreadyAdmitted { .. }), "{err}");
}

#[test]
fn close_room_removes_everyone() {
    let mut sim = Sim::new();
    let room = RoomId::random();
    let other = RoomId::random();
    sim.join(&room, Grants::SPEAKER);
    sim.join(&room, Grants::LISTENER);
    sim.join(&other, Grants::SPEAKER);
    sim.connect_all();
    assert_eq!(sim.engine.close_room(&room, sim.now).participants, 2);
    assert_eq!(sim.engine.close_room(&room, sim.now).participants, 0);
    sim.run_for(Duration::from_millis(10));
    let left = sim.left_events();
    assert_eq!(left.len(), 2);
    assert!(left.iter().all(|(_, r)| *r == LeaveReason::RoomClosed));
    let stats = sim.engine.stats();
    assert_eq!((stats.rooms, stats.participants), (1, 1));
}

/// Closing a room says what its media took: the bytes from and to its participants over
/// the room's life, those who left before included, and nothing of another room's. A
/// room whose last member left still answers with its count once.
#[test]
fn close_room_counts_the_rooms_bytes() {
    let mut sim = Sim::new();
    let room = RoomId::random();
    let other = RoomId::random();
    let a = sim.join(&room, Grants::SPEAKER);
    let b = sim.join(&room, Grants::SPEAKER);
    let c = sim.join(&other, Grants::SPEAKER);
    sim.connect_all();
    for talker in [a, b, c] {
        sim.clients[talker].talking = Some(-20);
    }
    sim.run_for(Duration::from_millis(500));
    let before = sim.engine.stats().metrics;
    let early = sim.clients[a].id.clone();
    assert!(sim.engine.remove(&room, &early, sim.now));
    sim.run_for(Duration::from_millis(500));
    let closed = sim.engine.close_room(&room, sim.now);
    assert_eq!(closed.participants, 1);
    let node = sim.engine.stats().metrics;
    // 1 s of 20 ms frames from b, half a second from a, each forwarded to the other.
    assert!(
        closed.bytes > 50 * 60 && closed.bytes < node.bytes_in + node.bytes_out,
        "room bytes {} (node in {} out {}; before the removal {} + {})",
        closed.bytes,
        node.bytes_in,
        node.bytes_out,
        before.bytes_in,
        before.bytes_out
    );
    assert_eq!(
        sim.engine.close_room(&room, sim.now).bytes,
        0,
        "counted once"
    );

    // The other room empties before it is closed: its count waits for the close.
    let last = sim.clients[c].id.clone();
    sim.run_for(Duration::from_millis(200));
    assert!(sim.engine.remove(&other, &last, sim.now));
    assert!(sim.engine.close_room(&other, sim.now).bytes > 0);
}
