//! A browser-shaped client is admitted, connects, and the engine reports it.
mod common;

use chorus_proto::RoomId;
use chorus_proto::token::Grants;
use chorus_sfu::EngineEvent;
use common::Sim;

#[test]
fn join_emits_connected() {
    let mut sim = Sim::new();
    let room = RoomId::random();
    let a = sim.join(&room, Grants::SPEAKER);
    sim.connect_all();
    assert!(sim.clients[a].connected);
    let connected: Vec<_> = sim
        .events
        .iter()
        .filter_map(|e| match e {
            EngineEvent::Connected {
                room: r,
                participant,
            } => Some((r.clone(), participant.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(connected, vec![(room, sim.clients[a].id.clone())]);
    let stats = sim.engine.stats();
    assert_eq!((stats.rooms, stats.participants), (1, 1));
}

#[test]
fn offer_without_audio_is_refused() {
    let mut sim = Sim::new();
    let room = RoomId::random();
    let id = chorus_proto::ParticipantId::random();
    let err = sim
        .engine
        .admit(
            common::claims(&room, &id, Grants::SPEAKER),
            "v=0\r\nnot sdp",
            sim.now,
        )
        .unwrap_err();
    assert!(err.to_string().contains("SDP"), "{err}");
}

/// Listeners send no media: their answer leaves out transport-cc, so their clients send
/// no TWCC feedback for what we forward; speakers keep it.
#[test]
fn transport_cc_only_for_publishers() {
    const TWCC: &str = "transport-wide-cc-extensions";
    let mut sim = Sim::new();
    let room = RoomId::random();
    let mut answer_for = |grants| {
        let (_, offer, ..) = sim.offer(3);
        assert!(offer.contains(TWCC));
        let id = chorus_proto::ParticipantId::random();
        sim.engine
            .admit(common::claims(&room, &id, grants), &offer, sim.now)
            .unwrap()
    };
    assert!(answer_for(Grants::SPEAKER).contains(TWCC));
    assert!(!answer_for(Grants::LISTENER).contains(TWCC));
}
