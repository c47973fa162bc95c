//! Percentiles of the bounded sample windows that the sub-machines keep (heartbeat RTTs, tick
//! lateness): exact, since the windows are small.

use std::time::Duration;

/// Nearest-rank percentile of sorted values: the value at rank ⌈p × n⌉ (`p` in `0.0..=1.0`);
/// `None` for no values.
pub(crate) fn nearest_rank(sorted: &[Duration], p: f64) -> Option<Duration> {
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len().max(1)) - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_picks_the_value_at_the_ceiling_rank() {
        let ms = |n: u64| Duration::from_millis(n);
        let values: Vec<Duration> = (1..=100).map(ms).collect();
        assert_eq!(nearest_rank(&values, 0.50), Some(ms(50)));
        assert_eq!(nearest_rank(&values, 0.99), Some(ms(99)));
        assert_eq!(nearest_rank(&values, 0.0), Some(ms(1)));
        assert_eq!(nearest_rank(&[ms(7)], 0.99), Some(ms(7)));
        assert_eq!(nearest_rank(&[], 0.5), None);
    }
}
