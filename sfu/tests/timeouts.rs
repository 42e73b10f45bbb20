//! Cleanup on simulated time: a client that stops responding is removed with
//! `ConnectionLost`; one that never connects is removed with `ConnectTimeout`.
mod common;

use std::time::Duration;

use chorus_proto::RoomId;
use chorus_proto::token::Grants;
use chorus_sfu::LeaveReason;
use common::Sim;

#[test]
fn silent_client_is_connection_lost() {
    let mut sim = Sim::new();
    let room = RoomId::random();
    let a = sim.join(&room, Grants::SPEAKER);
    let b = sim.join(&room, Grants::SPEAKER);
    sim.connect_all();
    // Connected clients stay, however long (keepalives flow).
    sim.run_for(Duration::from_secs(30));
    assert!(sim.left_events().is_empty(), "{:?}", sim.left_events());

    sim.clients[a].offline = true;
    sim.run_for(Duration::from_secs(20));
    assert_eq!(
        sim.left_events(),
        vec![(sim.clients[a].id.clone(), LeaveReason::ConnectionLost)]
    );
    assert_eq!(sim.engine.stats().participants, 1);
    let _ = b;
}

#[test]
fn never_connecting_client_times_out() {
    let mut sim = Sim::with_config(|c| c.connect_timeout = Duration::from_secs(5));
    let room = RoomId::random();
    let a = sim.join(&room, Grants::SPEAKER);
    sim.clients[a].offline = true;
    sim.run_for(Duration::from_secs(4));
    assert!(sim.left_events().is_empty());
    sim.run_for(Duration::from_secs(2));
    assert_eq!(
        sim.left_events(),
        vec![(sim.clients[a].id.clone(), LeaveReason::ConnectTimeout)]
    );
    assert_eq!(sim.engine.stats().rooms, 0);
}
