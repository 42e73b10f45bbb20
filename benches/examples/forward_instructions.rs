//! The criterion scenario (`benches/forwarding.rs`) as a plain program, for a figure the
//! machine's noise cannot move: run it under callgrind, counting only the engine's share
//! of each frame, and divide by the packets forwarded.
//!
//! ```sh
//! cargo build --profile release -p chorus-bench --example forward_instructions
//! bash benches/callgrind.sh          # builds, runs N = 1, 10, 100, prints Ir per packet
//! ```
//!
//! Arguments: subscribers (default 10), measured frames (default 200), mode (`local`,
//! `relay-out`: the room spans one more node, which this one relays its speaker to, or
//! `relay-in`: the speaker is on another node and arrives relayed). It prints the packets
//! forwarded in the measured frames; warm-up frames run before callgrind's collection.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../benches/scenario/mod.rs"]
mod scenario;

use scenario::{Mode, Room};

fn main() {
    chorus_sfu::install_crypto_provider();
    let mut args = std::env::args().skip(1);
    let subscribers: usize = args.next().map_or(10, |a| a.parse().unwrap());
    let frames: u64 = args.next().map_or(200, |a| a.parse().unwrap());
    let mode: Mode = args.next().map_or(Mode::Local, |a| a.parse().unwrap());
    let mut room = Room::with_mode(subscribers, mode);
    for _ in 0..100 {
        room.frame();
    }
    let before = room.engine.stats().metrics.packets_forwarded;
    room.counted = true;
    for _ in 0..frames {
        room.frame();
    }
    let forwarded = room.engine.stats().metrics.packets_forwarded - before;
    assert_eq!(
        forwarded,
        frames * subscribers as u64,
        "every subscriber got every frame"
    );
    let relayed = room.engine.stats().metrics.packets_relayed_out;
    println!(
        "subscribers={subscribers} frames={frames} mode={mode:?} relayed_out={relayed} forwarded={forwarded}"
    );
}
