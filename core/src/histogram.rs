//! A fixed-size latency histogram (plain data), the shape of a Prometheus histogram.

use std::time::Duration;

use serde::Serialize;

/// Upper bounds, in seconds, of every [`Histogram`]'s buckets (a last `+Inf` bucket catches
/// the rest): 100 µs to 2.5 s, roughly ×2.5 apart, which covers loopback RTTs, a tick's stages
/// at 60 Hz and 600 Hz, and handshakes over a lossy path.
pub const HISTOGRAM_BOUNDS_SECONDS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// A latency histogram as plain data: a count per bucket of [`HISTOGRAM_BOUNDS_SECONDS`] (and
/// one for `+Inf`), the number of observations and their sum, in seconds. Fixed size (136
/// bytes), `Copy`, mergeable; the shape of a Prometheus histogram, which runtimes render
/// with cumulative buckets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Histogram {
    /// Observations per bucket (not cumulative); the last is the `+Inf` bucket.
    counts: [u64; HISTOGRAM_BOUNDS_SECONDS.len() + 1],
    count: u64,
    sum_seconds: f64,
}

impl Histogram {
    /// Records one observation of `value`.
    pub fn observe(&mut self, value: Duration) {
        self.observe_seconds(value.as_secs_f64());
    }

    /// Records one observation of `seconds` (negative and NaN values count as 0).
    pub fn observe_seconds(&mut self, seconds: f64) {
        let seconds = if seconds.is_nan() { 0.0 } else { seconds.max(0.0) };
        let bucket = HISTOGRAM_BOUNDS_SECONDS.partition_point(|bound| *bound < seconds);
        self.counts[bucket] += 1;
        self.count += 1;
        self.sum_seconds += seconds;
    }

    /// Adds `other`'s observations to this one.
    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts) {
            *mine += theirs;
        }
        self.count += other.count;
        self.sum_seconds += other.sum_seconds;
    }

    /// Observations recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Sum of the observations, in seconds.
    pub fn sum_seconds(&self) -> f64 {
        self.sum_seconds
    }

    /// `(upper bound in seconds, observations ≤ it)` per bucket, cumulative as in the
    /// Prometheus exposition format, ending with `(+Inf, count)`.
    pub fn cumulative_buckets(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        let bounds = HISTOGRAM_BOUNDS_SECONDS.iter().copied().chain([f64::INFINITY]);
        bounds.zip(self.counts.iter().scan(0, |total, count| {
            *total += count;
            Some(*total)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_end_at_the_count() {
        let mut h = Histogram::default();
        for ms in [0.05, 1.0, 1.0, 7.0, 9_000.0] {
            h.observe(Duration::from_secs_f64(ms / 1e3));
        }
        h.observe_seconds(f64::NAN);
        let buckets: Vec<(f64, u64)> = h.cumulative_buckets().collect();
        assert_eq!(buckets.len(), HISTOGRAM_BOUNDS_SECONDS.len() + 1);
        assert_eq!(buckets[0], (0.0001, 2), "0.05 ms and NaN (as 0)");
        assert_eq!(
            buckets[3],
            (0.001, 4),
            "an observation on a bound is in its bucket"
        );
        assert_eq!(buckets[6], (0.01, 5));
        assert_eq!(buckets[13], (2.5, 5));
        assert_eq!(buckets[14], (f64::INFINITY, 6));
        assert_eq!(h.count(), 6);
        let mut twice = h;
        twice.merge(&h);
        assert_eq!(twice.count(), 12);
        assert!((twice.sum_seconds() - 2.0 * h.sum_seconds()).abs() < 1e-12);
    }
}
