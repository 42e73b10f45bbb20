//! Slot mapping: with 4 speakers and 3 slots each listener hears at most 3, the loudest
//! are kept, a speaker never lands on its own slots, and speaking levels are reported.
mod common;

use std::time::Duration;

use chorus_proto::RoomId;
use chorus_proto::token::Grants;
use chorus_sfu::EngineEvent;
use common::Sim;

#[test]
fn four_speakers_three_slots_loudest_kept() {
    let mut sim = Sim::new();
    let room = RoomId::random();
    // The quietest starts first so it grabs a slot; the louder ones must win later.
    let levels = [-60i8, -30, -20, -10];
    let speakers: Vec<usize> = levels
        .iter()
        .map(|_| sim.join(&room, Grants::SPEAKER))
        .collect();
    let listener = sim.join(&room, Grants::LISTENER);
    sim.connect_all();

    for (i, level) in levels.iter().enumerate() {
        sim.clients[speakers[i]].talking = Some(*level);
        sim.run_for(Duration::from_millis(100));
    }
    // Let the slot hold time pass so the loud newcomer can replace the quiet one.
    sim.run_for(Duration::from_secs(2));
    sim.clear_received();
    sim.run_for(Duration::from_secs(2));

    let heard = sim.heard_from(listener);
    assert_eq!(
        heard,
        vec![speakers[1], speakers[2], speakers[3]],
        "listener hears the three loudest"
    );
    // Each of the listener's three slots carries one speaker, all the while: a slot that
    // switched speakers mid-stream, or two speakers on one slot, would show here.
    let mut per_slot: std::collections::HashMap<_, std::collections::HashSet<usize>> =
        Default::default();
    for r in &sim.clients[listener].received {
        per_slot.entry(r.mid).or_default().insert(r.sender());
    }
    let used: std::collections::HashSet<_> = per_slot.keys().copied().collect();
    let offered: std::collections::HashSet<_> =
        sim.clients[listener].slot_mids.iter().copied().collect();
    assert_eq!(used, offered, "every slot in use, and only the slots");
    assert!(
        per_slot.values().all(|senders| senders.len() == 1),
        "one speaker per slot: {per_slot:?}"
    );

    // Each speaker hears exactly the other three on its three slots; never itself.
    for &s in &speakers {
        let others: Vec<usize> = speakers.iter().copied().filter(|&o| o != s).collect();
        assert_eq!(
            sim.heard_from(s),
            others,
            "speaker {s} hears the other three"
        );
    }
    assert!(sim.engine.stats().metrics.dropped_no_free_slot > 0);

    // Speaking levels: louder speakers report higher loudness in 0..1.
    let last = sim
        .events
        .iter()
        .rev()
        .find_map(|e| match e {
            EngineEvent::Speaking { levels, .. } => Some(levels.clone()),
            _ => None,
        })
        .expect("speaking events");
    let level_of = |i: usize| {
        last.iter()
            .find(|(p, _)| *p == sim.clients[speakers[i]].id)
            .map(|(_, l)| *l)
    };
    let loud = level_of(3).unwrap();
    let mid = level_of(1).unwrap();
    assert!((loud - 10f32.powf(-0.5)).abs() < 0.05, "{loud}");
    assert!(loud > mid && mid > 0.0 && loud <= 1.0);
    assert!(level_of(0).is_none(), "−60 dBov is not audible");
}

#[test]
fn slot_timestamps_stay_monotonic_when_speakers_change() {
    let mut sim = Sim::with_config(|c| c.audio_slots = 1);
    let room = RoomId::random();
    let a = sim.join(&room, Grants::SPEAKER);
    let b = sim.join(&room, Grants::SPEAKER);
    let l = sim.join(&room, Grants::LISTENER);
    sim.connect_all();
    sim.clients[a].talking = Some(-20);
    sim.run_for(Duration::from_secs(1));
    sim.clients[a].talking = None;
    // b's own timestamps start at 0, far below a's.
    sim.run_for(Duration::from_millis(1500));
    sim.clients[b].talking = Some(-20);
    sim.run_for(Duration::from_secs(1));
    let got = &sim.clients[l].received;
    assert_eq!(sim.heard_from(l), vec![a, b]);
    assert!(
        got.windows(2).all(|w| w[1].rtp_time > w[0].rtp_time),
        "timestamps went backwards"
    );
}
