//! Participants' deadlines in a min-heap, so a timeout drives only the `Rtc`s whose own
//! deadline has passed and the engine's next deadline is the heap's top, not a scan.
//! Entries are armed lazily: a participant has at most one live entry (its earliest);
//! a deadline that moves later is re-armed when the old entry fires, without a push per
//! packet, and entries of removed participants simply fall out as stale.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

#[derive(Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<Reverse<(Instant, u64)>>,
}

impl Timers {
    /// Make sure participant `key` (whose live entry is `armed`) wakes by `at`.
    pub(crate) fn arm(&mut self, key: u64, at: Instant, armed: &mut Option<Instant>) {
        if armed.is_none_or(|a| at < a) {
            self.heap.push(Reverse((at, key)));
            *armed = Some(at);
        }
    }

    /// The earliest entry (possibly stale: waking early is harmless).
    pub(crate) fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// Move the entries due at `now` into `due` as (deadline, key).
    pub(crate) fn pop_due(&mut self, now: Instant, due: &mut Vec<(Instant, u64)>) {
        while let Some(Reverse((at, key))) = self.heap.peek().copied() {
            if at > now {
                break;
            }
            self.heap.pop();
            due.push((at, key));
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn arms_only_earlier_deadlines() {
        let t0 = Instant::now();
        let mut timers = Timers::default();
        let mut armed = None;
        timers.arm(7, t0 + Duration::from_millis(50), &mut armed);
        // Later deadlines do not push: the live entry fires first and re-arms.
        for ms in 51..100 {
            timers.arm(7, t0 + Duration::from_millis(ms), &mut armed);
        }
        assert_eq!(timers.len(), 1);
        timers.arm(7, t0 + Duration::from_millis(10), &mut armed);
        assert_eq!(armed, Some(t0 + Duration::from_millis(10)));
        assert_eq!(timers.next(), Some(t0 + Duration::from_millis(10)));
        let mut due = Vec::new();
        timers.pop_due(t0 + Duration::from_millis(20), &mut due);
        assert_eq!(due, vec![(t0 + Duration::from_millis(10), 7)]);
        assert_eq!(timers.next(), Some(t0 + Duration::from_millis(50)));
    }
}
