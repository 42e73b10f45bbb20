//! A speaker's Opus frames reach every other member, intact, and never come back to it.
mod common;

use std::time::Duration;

use chorus_proto::RoomId;
use chorus_proto::token::Grants;
use common::{Sim, payload_for};

#[test]
fn frames_reach_others_intact_not_sender() {
    let mut sim = Sim::new();
    let room = RoomId::random();
    let a = sim.join(&room, Grants::SPEAKER);
    let b = sim.join(&room, Grants::SPEAKER);
    let c = sim.join(&room, Grants::LISTENER);
    // Someone in another room must hear nothing.
    let other = sim.join(&RoomId::random(), Grants::SPEAKER);
    sim.connect_all();

    sim.clients[a].talking = Some(-20);
    sim.run_for(Duration::from_secs(1));

    for listener in [b, c] {
        let got = &sim.clients[listener].received;
        assert!(
            got.len() >= 40,
            "client {listener} received only {} frames",
            got.len()
        );
        assert_eq!(sim.heard_from(listener), vec![a]);
        for r in got {
            let n = u32::from_be_bytes(r.payload[1..5].try_into().unwrap());
            assert_eq!(r.payload, payload_for(a, n), "payload altered");
            assert_eq!(r.audio_level, Some(-20), "audio level forwarded");
        }
        // Timestamps keep the sender's 960-tick spacing: frame n + k is 960 × k later
        // (the frame number travels in the payload).
        for w in got.windows(2) {
            let n = |r: &common::Received| u32::from_be_bytes(r.payload[1..5].try_into().unwrap());
            let (n0, n1) = (n(&w[0]), n(&w[1]));
            assert!(n1 > n0, "frames in order: {n0} then {n1}");
            assert_eq!(
                w[1].rtp_time.wrapping_sub(w[0].rtp_time),
                960 * u64::from(n1 - n0),
                "frames {n0} and {n1}: timestamps {} and {}",
                w[0].rtp_time,
                w[1].rtp_time
            );
        }
    }
    assert!(
        sim.clients[a].received.is_empty(),
        "the sender hears itself"
    );
    assert!(
        sim.clients[other].received.is_empty(),
        "another room hears it"
    );
    let m = sim.engine.stats().metrics;
    assert!(m.packets_forwarded >= 80, "{m:?}");
}
