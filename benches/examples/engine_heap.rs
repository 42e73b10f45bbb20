//! Heap the engine holds per listener, in memory: the criterion scenario (one publisher,
//! N listeners, str0m clients on simulated time) under an allocator that charges every
//! allocation made inside an engine call to the engine until it is freed, wherever that
//! happens. The clients' own `Rtc`s are not counted.
//!
//! ```sh
//! cargo run --profile release -p chorus-bench --example engine_heap -- 10 100 1000
//! ```
//! Prints, per N, the engine's live heap after 150 frames of audio and the growth per
//! listener between consecutive N.
#![allow(unsafe_code, clippy::unwrap_used, clippy::expect_used)]

#[path = "../benches/scenario/mod.rs"]
mod scenario;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use scenario::{IN_ENGINE, Room};

/// Bytes allocated inside engine calls and not yet freed.
static ENGINE_LIVE: AtomicIsize = AtomicIsize::new(0);
/// Room in front of every allocation for the tag (kept at 16 to preserve alignment).
const HEADER: usize = 16;

struct Tagged;

fn header_for(layout: Layout) -> usize {
    layout.align().max(HEADER)
}

fn charged_now() -> bool {
    IN_ENGINE.try_with(|c| c.get()).unwrap_or(false)
}

// SAFETY (all four): every block handed out is `header` bytes into a System block of
// `size + header` bytes aligned to `max(align, 16)`; the tag lives in its first word, and
// dealloc/realloc recompute the same header from the same layout.
unsafe impl GlobalAlloc for Tagged {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let h = header_for(layout);
        let Ok(full) = Layout::from_size_align(layout.size() + h, layout.align().max(HEADER))
        else {
            return std::ptr::null_mut();
        };
        let base = unsafe { System.alloc(full) };
        if base.is_null() {
            return base;
        }
        let charged = charged_now();
        unsafe { (base as *mut usize).write(usize::from(charged)) };
        if charged {
            ENGINE_LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        unsafe { base.add(h) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let h = header_for(layout);
        let base = unsafe { ptr.sub(h) };
        if unsafe { (base as *const usize).read() } == 1 {
            ENGINE_LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        }
        let full = unsafe {
            Layout::from_size_align_unchecked(layout.size() + h, layout.align().max(HEADER))
        };
        unsafe { System.dealloc(base, full) };
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // Keep the block's owner: a buffer the engine made stays the engine's when it grows.
        let h = header_for(layout);
        let base = unsafe { ptr.sub(h) };
        let charged = unsafe { (base as *const usize).read() } == 1;
        let full = unsafe {
            Layout::from_size_align_unchecked(layout.size() + h, layout.align().max(HEADER))
        };
        let new_base = unsafe { System.realloc(base, full, new_size + h) };
        if new_base.is_null() {
            return new_base;
        }
        if charged {
            ENGINE_LIVE.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        unsafe { new_base.add(h) }
    }
}

#[global_allocator]
static ALLOC: Tagged = Tagged;

fn main() {
    chorus_sfu::install_crypto_provider();
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().unwrap())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![10, 100, 1000]
    } else {
        sizes
    };
    println!(
        "{:>10} {:>14} {:>18}",
        "listeners", "engine KiB", "KiB per listener"
    );
    let mut last: Option<(usize, isize)> = None;
    for n in sizes {
        let base = ENGINE_LIVE.load(Ordering::Relaxed);
        let mut room = Room::new(n);
        for _ in 0..150 {
            room.frame();
        }
        let live = ENGINE_LIVE.load(Ordering::Relaxed) - base;
        let per = match last {
            Some((m, l)) if n > m => (live - l) as f64 / (n - m) as f64 / 1024.0,
            _ => live as f64 / n as f64 / 1024.0,
        };
        println!("{n:>10} {:>14.0} {per:>18.1}", live as f64 / 1024.0);
        last = Some((n, live));
        drop(room);
    }
}
