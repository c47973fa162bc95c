//! Per-node clocks: each node sees virtual time through a rate error (drift) and its wall
//! clock through an offset, both changeable while running.
//!
//! A node's monotonic time in nanoseconds is piecewise linear in virtual time:
//! `local(v) = anchor_local + (v − anchor_virtual) × (1 + ppb / 10⁹)`; a new rate re-anchors
//! at the current instant, so it never jumps (monotonic clocks do not step). Its wall clock
//! follows the monotonic clock plus an offset, which a step changes — what NTP or an operator
//! does to a real system clock, and what ticket checks see.

use std::time::{Duration, Instant};

use tickwire_core::WallClock;

use crate::link::Nanos;

/// Local time `0` is placed this far after the simulation's epoch `Instant`, so that clocks
/// set behind by up to an hour stay representable as `Instant`s.
const BASE_NS: i128 = 3_600_000_000_000;

/// Unix time, in milliseconds, at virtual time 0 on a correct clock (2026-01-01T00:00:00Z).
pub const START_UNIX_MS: u64 = 1_767_225_600_000;

/// One node's view of time.
#[derive(Debug, Clone, Copy)]
pub struct NodeClock {
    epoch: Instant,
    anchor_virtual: Nanos,
    anchor_local: i128,
    ppb: i128,
    wall_offset_ms: i64,
}

impl NodeClock {
    /// A correct clock (no offset, no drift) over the simulation's `epoch`.
    pub fn new(epoch: Instant) -> Self {
        Self {
            epoch,
            anchor_virtual: 0,
            anchor_local: 0,
            ppb: 0,
            wall_offset_ms: 0,
        }
    }

    /// Local nanoseconds at virtual time `v` (may be negative for a clock set behind).
    pub fn local_ns(&self, v: Nanos) -> i128 {
        let elapsed = i128::from(v) - i128::from(self.anchor_virtual);
        self.anchor_local + elapsed + elapsed * self.ppb / 1_000_000_000
    }

    /// The `Instant` the node's endpoint is given at virtual time `v`.
    pub fn instant(&self, v: Nanos) -> Instant {
        let ns = (BASE_NS + self.local_ns(v)).max(0);
        self.epoch + Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
    }

    /// The node's wall clock: Unix time [`START_UNIX_MS`] plus its offset at local time 0,
    /// advancing with the (possibly drifting) monotonic clock.
    pub fn wall(&self) -> WallClock {
        WallClock::new(self.epoch + Duration::from_nanos(BASE_NS as u64), START_UNIX_MS)
            .skewed(self.wall_offset_ms)
    }

    /// The earliest virtual time `>= not_before` at which the local clock reads `at` or later.
    pub fn virtual_at(&self, at: Instant, not_before: Nanos) -> Nanos {
        let target = at.saturating_duration_since(self.epoch).as_nanos() as i128 - BASE_NS;
        if self.local_ns(not_before) >= target {
            return not_before;
        }
        let rate = 1_000_000_000 + self.ppb;
        let span = target - self.anchor_local;
        // Ceiling of span × 10⁹ / rate, then nudge up past rounding in `local_ns`.
        let mut v = i128::from(self.anchor_virtual) + (span * 1_000_000_000 + rate - 1) / rate;
        while self.local_ns(v.max(0) as Nanos) < target {
            v += 1;
        }
        (v.max(i128::from(not_before))).min(i128::from(u64::MAX)) as Nanos
    }

    /// Steps the wall clock by `offset_ms` (positive = ahead); the monotonic clock is untouched.
    pub fn step_wall(&mut self, offset_ms: i64) {
        self.wall_offset_ms = self.wall_offset_ms.saturating_add(offset_ms);
    }

    /// From `now`, runs the clock fast (positive) or slow by `ppm` parts per million.
    pub fn set_drift(&mut self, now: Nanos, ppm: f64) {
        self.anchor_local = self.local_ns(now);
        self.anchor_virtual = now;
        self.ppb = (ppm * 1_000.0).round() as i128;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epoch() -> Instant {
        #[allow(clippy::disallowed_methods)]
        Instant::now()
    }

    #[test]
    fn correct_clock_is_identity() {
        let clock = NodeClock::new(epoch());
        assert_eq!(clock.local_ns(5_000), 5_000);
        let at = clock.instant(123_456_789);
        assert_eq!(clock.virtual_at(at, 0), 123_456_789);
        assert_eq!(
            clock.wall().unix_ms_at(clock.instant(2_000_000_000)),
            START_UNIX_MS + 2_000
        );
    }

    #[test]
    fn offsets_and_drift_map_back_and_forth() {
        let mut clock = NodeClock::new(epoch());
        clock.step_wall(-40_000);
        assert_eq!(
            clock.local_ns(1_000),
            1_000,
            "steps leave the monotonic clock alone"
        );
        assert_eq!(
            clock.wall().unix_ms_at(clock.instant(1_000_000)),
            START_UNIX_MS - 40_000 + 1
        );
        clock.set_drift(2_000_000_000, 500.0);
        let v = 12_000_000_000u64;
        let local = clock.local_ns(v);
        assert_eq!(local, 2_000_000_000 + 10_000_000_000 + 5_000_000);
        for target in [v, v + 1, v + 999, v + 1_000_003] {
            let at = clock.instant(target);
            let back = clock.virtual_at(at, 0);
            assert!(clock.local_ns(back) >= clock.local_ns(target));
            assert!(clock.local_ns(back - 1) < clock.local_ns(target));
        }
        // Deadlines already passed map to `not_before`.
        assert_eq!(clock.virtual_at(clock.instant(5), 7_000), 7_000);
    }
}
