//! Audio slots: each subscriber receives the room's active speakers on a fixed number of
//! receive-only media lines, so it never renegotiates when people come and go. This file
//! decides which speaker a slot carries, and keeps each slot's RTP timestamps monotonic
//! across speaker changes.

use std::time::{Duration, Instant};

use str0m::media::Mid;
use str0m::media::Pt;
use str0m::rtp::SeqNo;

/// A slot whose speaker sent nothing for this long is free for another.
pub(crate) const SLOT_IDLE: Duration = Duration::from_secs(1);
/// A speaker keeps its slot at least this long before a louder one may take it; avoids
/// flapping between two voices of similar loudness.
pub(crate) const SLOT_MIN_HOLD: Duration = Duration::from_secs(1);
/// "Clearly louder": linear loudness ratio (≈ +6 dB) a newcomer needs to take a slot.
pub(crate) const LOUDER_RATIO: f32 = 2.0;
/// Gap inserted in a slot's timeline when it changes speaker and the real gap is
/// shorter: one 20 ms Opus frame at 48 kHz, so the decoder sees a new frame, not a rewind.
const MIN_SWITCH_GAP_MS: u64 = 20;

/// One receive-only media line of a subscriber.
#[derive(Debug)]
pub(crate) struct Slot {
    pub mid: Mid,
    /// The subscriber's payload type for Opus on this media line.
    pub pt: Pt,
    /// Next outgoing (extended) sequence number. RTP mode: the SFU numbers each slot's
    /// packets itself, one run for the slot's whole life whoever speaks in it.
    next_seq: u64,
    /// Engine key of the participant currently carried.
    pub speaker: Option<u64>,
    /// When the current speaker got the slot.
    pub assigned_at: Instant,
    /// When the slot last carried a frame.
    pub last_write: Option<Instant>,
    /// Loudness (0..1) of the current speaker at its last frame.
    pub level: f32,
    /// Outgoing timestamp = incoming + offset (wrapping), fixed per assignment.
    ts_offset: u64,
    /// Last outgoing timestamp, to continue from after a speaker change.
    last_out_ts: Option<u64>,
    /// Set on assignment: the next frame fixes `ts_offset`.
    rebase: bool,
}

impl Slot {
    /// A slot on `mid` whose packets carry `pt`, numbered from `first_seq` (below 2^16:
    /// a first sequence number with a non-zero rollover counter would need signaling).
    pub(crate) fn new(mid: Mid, pt: Pt, first_seq: u16, now: Instant) -> Self {
        Self {
            mid,
            pt,
            next_seq: u64::from(first_seq),
            speaker: None,
            assigned_at: now,
            last_write: None,
            level: 0.0,
            ts_offset: 0,
            last_out_ts: None,
            rebase: true,
        }
    }

    fn is_idle(&self, now: Instant) -> bool {
        match (self.speaker, self.last_write) {
            (None, _) => true,
            // Assigned but never written: treat the assignment as its last activity.
            (Some(_), None) => now.saturating_duration_since(self.assigned_at) > SLOT_IDLE,
            (Some(_), Some(t)) => now.saturating_duration_since(t) > SLOT_IDLE,
        }
    }

    fn assign(&mut self, speaker: u64, now: Instant) {
        self.speaker = Some(speaker);
        self.assigned_at = now;
        self.rebase = true;
    }

    /// Release the slot (its speaker left); the timeline continues for the next one.
    pub(crate) fn release(&mut self) {
        self.speaker = None;
        self.level = 0.0;
    }

    /// The outgoing RTP timestamp for a frame with incoming timestamp `in_ts`
    /// (clock `rate` Hz), written at `now`. Records the write.
    pub(crate) fn map_timestamp(&mut self, in_ts: u64, rate: u32, now: Instant, level: f32) -> u64 {
        if self.rebase {
            self.rebase = false;
            self.ts_offset = match (self.last_out_ts, self.last_write) {
                // Continue the slot's own timeline: last timestamp plus the wall-clock
                // gap, so the receiver's jitter buffer sees time move forward.
                (Some(last), Some(at)) => {
                    let gap_ms = (now.saturating_duration_since(at).as_millis() as u64)
                        .max(MIN_SWITCH_GAP_MS);
                    let target = last.wrapping_add(gap_ms * u64::from(rate) / 1000);
                    target.wrapping_sub(in_ts)
                }
                _ => 0,
            };
        }
        let out = in_ts.wrapping_add(self.ts_offset);
        self.last_out_ts = Some(out);
        self.last_write = Some(now);
        self.level = level;
        out
    }
}

impl Slot {
    /// The sequence number of the next packet written into the slot.
    pub(crate) fn take_seq(&mut self) -> SeqNo {
        let seq = self.next_seq;
        self.next_seq = seq.wrapping_add(1);
        seq.into()
    }
}

/// What to do with a speaker's frame for one subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SlotChoice {
    /// Write into slot `index`.
    Use(usize),
    /// No slot for this speaker now.
    Drop,
}

/// Pick the slot for `speaker` (current loudness `level`) among `slots`, reassigning one
/// if the rules allow: keep an existing slot; else a free or idle slot; else replace the
/// quietest slot if the newcomer is clearly louder and the slot was held long enough.
pub(crate) fn choose_slot(
    slots: &mut [Slot],
    speaker: u64,
    level: f32,
    now: Instant,
) -> SlotChoice {
    if let Some(i) = slots.iter().position(|s| s.speaker == Some(speaker)) {
        return SlotChoice::Use(i);
    }
    if let Some(i) = slots.iter().position(|s| s.is_idle(now)) {
        slots[i].assign(speaker, now);
        return SlotChoice::Use(i);
    }
    let quietest = slots
        .iter()
        .enumerate()
        .min_by(|(_, a), (_, b)| a.level.total_cmp(&b.level));
    if let Some((i, slot)) = quietest {
        let held = now.saturating_duration_since(slot.assigned_at);
        if held >= SLOT_MIN_HOLD && level > slot.level * LOUDER_RATIO && level > 0.0 {
            slots[i].assign(speaker, now);
            return SlotChoice::Use(i);
        }
    }
    SlotChoice::Drop
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots(n: usize, now: Instant) -> Vec<Slot> {
        (0..n)
            .map(|i| Slot::new(Mid::from(format!("{i}").as_str()), Pt::from(111), 0, now))
            .collect()
    }

    #[test]
    fn keeps_then_fills_then_drops() {
        let t0 = Instant::now();
        let mut s = slots(2, t0);
        assert_eq!(choose_slot(&mut s, 1, 0.1, t0), SlotChoice::Use(0));
        s[0].map_timestamp(0, 48_000, t0, 0.1);
        assert_eq!(choose_slot(&mut s, 2, 0.1, t0), SlotChoice::Use(1));
        s[1].map_timestamp(0, 48_000, t0, 0.1);
        assert_eq!(choose_slot(&mut s, 1, 0.1, t0), SlotChoice::Use(0));
        // Held too briefly to be replaced, even by a louder one.
        assert_eq!(choose_slot(&mut s, 3, 0.9, t0), SlotChoice::Drop);
    }

    #[test]
    fn louder_replaces_quietest_after_hold() {
        let t0 = Instant::now();
        let mut s = slots(2, t0);
        let t1 = t0 + Duration::from_millis(1500);
        choose_slot(&mut s, 1, 0.1, t0);
        choose_slot(&mut s, 2, 0.3, t0);
        s[0].map_timestamp(0, 48_000, t1, 0.1);
        s[1].map_timestamp(0, 48_000, t1, 0.3);
        // Not clearly louder than the quietest (0.1 * 2).
        assert_eq!(choose_slot(&mut s, 3, 0.15, t1), SlotChoice::Drop);
        assert_eq!(choose_slot(&mut s, 3, 0.5, t1), SlotChoice::Use(0));
        assert_eq!(s[0].speaker, Some(3));
    }

    #[test]
    fn timestamps_stay_monotonic_across_speakers() {
        let t0 = Instant::now();
        let mut s = slots(1, t0);
        choose_slot(&mut s, 1, 0.5, t0);
        let a = s[0].map_timestamp(1_000_000, 48_000, t0, 0.5);
        let b = s[0].map_timestamp(1_000_960, 48_000, t0 + Duration::from_millis(20), 0.5);
        assert_eq!(b - a, 960);
        // Speaker 1 goes silent; speaker 2 (far lower timestamps) takes the idle slot.
        let t2 = t0 + Duration::from_millis(1520);
        s[0].release();
        choose_slot(&mut s, 2, 0.5, t2);
        let c = s[0].map_timestamp(5, 48_000, t2, 0.5);
        assert_eq!(c, b + 1500 * 48);
        let d = s[0].map_timestamp(965, 48_000, t2 + Duration::from_millis(20), 0.5);
        assert_eq!(d, c + 960);
    }

    #[test]
    fn sequence_numbers_run_on_across_speakers() {
        let t0 = Instant::now();
        let mut s = Slot::new(Mid::from("a"), Pt::from(111), 65_534, t0);
        assert_eq!(*s.take_seq(), 65_534);
        s.release();
        assert_eq!(*s.take_seq(), 65_535);
        // Extended: the rollover counter moves on instead of wrapping to 0.
        assert_eq!(*s.take_seq(), 65_536);
    }
}
