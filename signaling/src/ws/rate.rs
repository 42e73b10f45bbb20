//! A token bucket: how many frames a session may send, on average and at once.

use std::time::Instant;

/// Frames a session may still send now; refills at a steady rate up to a burst.
pub struct RateLimit {
    per_sec: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl RateLimit {
    /// `per_sec` frames a second on average, `burst` at once (both at least 1).
    pub fn new(per_sec: u32, burst: u32, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            per_sec: f64::from(per_sec.max(1)),
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Take one frame's worth; `false` when the session is over its rate.
    pub fn allow(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.per_sec).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_burst_then_the_steady_rate() {
        let t0 = Instant::now();
        let mut rate = RateLimit::new(10, 5, t0);
        assert_eq!((0..8).filter(|_| rate.allow(t0)).count(), 5);
        // 10 a second: one more after 100 ms, never more than the burst.
        assert!(rate.allow(t0 + Duration::from_millis(100)));
        assert!(!rate.allow(t0 + Duration::from_millis(100)));
        let later = t0 + Duration::from_secs(60);
        assert_eq!((0..8).filter(|_| rate.allow(later)).count(), 5);
    }
}
