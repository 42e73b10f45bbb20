//! Grants are enforced on every packet: a listener's media and a muted speaker's media
//! are dropped and counted; granting `publish` lets the next packets through.
mod common;

use std::time::Duration;

use chorus_proto::RoomId;
use chorus_proto::token::Grants;
use common::Sim;

#[test]
fn listener_media_is_dropped_until_granted() {
    let mut sim = Sim::new();
    let room = RoomId::random();
    let a = sim.join(&room, Grants::LISTENER);
    let b = sim.join(&room, Grants::SPEAKER);
    sim.connect_all();

    sim.clients[a].talking = Some(-20);
    sim.run_for(Duration::from_secs(1));
    assert!(sim.clients[b].received.is_empty(), "a listener was heard");
    let dropped = sim.engine.stats().metrics.dropped_not_publisher;
    assert!(dropped >= 40, "drop counter: {dropped}");
    assert!(
        !sim.events
            .iter()
            .any(|e| matches!(e, chorus_sfu::EngineEvent::Speaking { .. })),
        "a listener shows as speaking"
    );

    let (room_id, id) = (sim.clients[a].room.clone(), sim.clients[a].id.clone());
    sim.engine
        .update_grants(&room_id, &id, Grants::SPEAKER, false)
        .unwrap();
    sim.run_for(Duration::from_secs(1));
    assert!(
        sim.clients[b].received.len() >= 40,
        "granted speaker not heard"
    );
    assert_eq!(sim.heard_from(b), vec![a]);

    // Server-side mute: dropped again, counted as muted.
    sim.engine
        .update_grants(&room_id, &id, Grants::SPEAKER, true)
        .unwrap();
    sim.run_for(Duration::from_millis(100));
    sim.clear_received();
    sim.run_for(Duration::from_secs(1));
    assert!(sim.clients[b].received.is_empty(), "muted speaker heard");
    assert!(sim.engine.stats().metrics.dropped_muted >= 40);
}

#[test]
fn non_subscriber_receives_nothing() {
    let mut sim = Sim::new();
    let room = RoomId::random();
    let a = sim.join(&room, Grants::SPEAKER);
    let deaf = sim.join(
        &room,
        Grants {
            publish: true,
            subscribe: false,
            admin: false,
        },
    );
    sim.connect_all();
    sim.clients[a].talking = Some(-20);
    sim.run_for(Duration::from_secs(1));
    assert!(sim.clients[deaf].received.is_empty());
}

#[test]
fn unknown_grants_target_is_not_found() {
    let mut sim = Sim::new();
    let err = sim
        .engine
        .update_grants(
            &RoomId::random(),
            &chorus_proto::ParticipantId::random(),
            Grants::SPEAKER,
            false,
        )
        .unwrap_err();
    assert!(matches!(err, chorus_sfu::SfuError::NotFound(_)), "{err}");
}
