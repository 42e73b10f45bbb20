//! The engine's forwarding path in memory: one publisher → N subscribers (N = 1, 10, 100),
//! SRTP included. Clients are str0m `Rtc`s on a simulated clock (as in `sfu/tests`); only
//! the engine's work is timed — decrypting the published packet, choosing slots, writing
//! and encrypting one packet per subscriber, and handling the subscribers' RTCP feedback
//! (receiver reports, TWCC) that comes back. Throughput is in forwarded packets, so
//! criterion's time per element is the engine's cost per forwarded packet.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod scenario;

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use scenario::{FRESH_ROOM_AFTER, Room};

fn forwarding(c: &mut Criterion) {
    chorus_sfu::install_crypto_provider();
    let mut group = c.benchmark_group("forward_one_publisher");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(5));
    for n in [1usize, 10, 100] {
        let mut room = Room::new(n);
        // Warm the slots and buffers up.
        for _ in 0..100 {
            room.frame();
        }
        let before = room.engine.stats().metrics.packets_forwarded;
        room.frame();
        let per_frame = room.engine.stats().metrics.packets_forwarded - before;
        assert_eq!(per_frame, n as u64, "every subscriber gets the frame");
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("subscribers", n), &n, |b, _| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    // Simulated time runs 20 ms per iteration: keep each room's life
                    // within ~15 simulated minutes (set-up is not timed).
                    if room.frames >= FRESH_ROOM_AFTER {
                        room = Room::new(n);
                        for _ in 0..100 {
                            room.frame();
                        }
                    }
                    spent += room.frame();
                }
                spent
            });
        });
        // Still forwarding to everyone after all those simulated hours?
        let before = room.engine.stats().metrics.packets_forwarded;
        room.frame();
        let after = room.engine.stats().metrics.packets_forwarded - before;
        assert_eq!(after, n as u64, "forwarding stopped during the measurement");
    }
    group.finish();
}

criterion_group!(benches, forwarding);
criterion_main!(benches);
