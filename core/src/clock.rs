//! Wall-clock time without reading a clock: an anchor pairs a monotonic [`Instant`] with the
//! Unix time at that instant. A simulated node with clock skew is just a different anchor.

use std::time::{Duration, Instant};

/// `(Instant, unix_ms)` anchor: the Unix time in milliseconds at `instant`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WallClock {
    /// The monotonic instant the anchor was taken at.
    pub instant: Instant,
    /// Milliseconds since the Unix epoch at `instant`.
    pub unix_ms: u64,
}

impl WallClock {
    /// An anchor; runtimes build it once from the monotonic and the system clock
    /// (`tickwire_mio::wall_clock_now`), simulators from virtual time.
    pub fn new(instant: Instant, unix_ms: u64) -> Self {
        Self { instant, unix_ms }
    }

    /// Unix time in milliseconds at `now` (saturating for instants before the anchor).
    pub fn unix_ms_at(&self, now: Instant) -> u64 {
        match now.checked_duration_since(self.instant) {
            Some(elapsed) => self.unix_ms.saturating_add(elapsed.as_millis() as u64),
            None => {
                let before = self.instant.duration_since(now).as_millis() as u64;
                self.unix_ms.saturating_sub(before)
            }
        }
    }

    /// The same clock shifted by `offset_ms` (positive = ahead), e.g. to model skew.
    pub fn skewed(&self, offset_ms: i64) -> Self {
        let unix_ms = if offset_ms >= 0 {
            self.unix_ms.saturating_add(offset_ms as u64)
        } else {
            self.unix_ms.saturating_sub(offset_ms.unsigned_abs())
        };
        Self {
            instant: self.instant,
            unix_ms,
        }
    }

    /// Milliseconds between `now` and the Unix time `unix_ms` on this clock, as a duration
    /// from `now` (zero if already past).
    pub fn until(&self, now: Instant, unix_ms: u64) -> Duration {
        Duration::from_millis(unix_ms.saturating_sub(self.unix_ms_at(now)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchor_maps_instants_to_unix_ms() {
        let t0 = crate::testing::epoch();
        let clock = WallClock::new(t0 + Duration::from_secs(10), 1_000_000);
        assert_eq!(clock.unix_ms_at(t0 + Duration::from_secs(12)), 1_002_000);
        assert_eq!(clock.unix_ms_at(t0), 990_000);
        assert_eq!(
            clock.skewed(-500).unix_ms_at(t0 + Duration::from_secs(10)),
            999_500
        );
        assert_eq!(
            clock.until(t0 + Duration::from_secs(10), 1_000_250),
            Duration::from_millis(250)
        );
    }
}
