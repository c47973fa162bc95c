//! Exponential backoff with jitter for retried operations (handshakes, VS round-trips).
//!
//! The caller makes an attempt; when it fails, it asks [`Backoff::next_delay`] how long to wait
//! before the next one. The delay before retry `k` (1-based) is
//!
//! ```text
//! min(initial_backoff_ms × multiplier^(k−1), max_backoff_ms) × (1 + u),   u ~ U[−jitter_factor, +jitter_factor)
//! ```
//!
//! clamped at zero. Jitter spreads the retries of many clients that failed at the same moment
//! (a "thundering herd" after a server restart). With the defaults the schedule is
//! about 100, 200, 400 and 800 ms, then the fifth failure gives up.
//!
//! The randomness is injected: the same RNG state gives the same schedule.

use std::time::Duration;

use rand::RngExt;

/// Retry policy. Defaults: 5 attempts, 100 ms doubling to at most 5 s, ±20 % jitter.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    /// Total attempts including the first one; after this many failures, give up. Default 5.
    pub max_attempts: u32,
    /// Delay before the first retry, before jitter, in milliseconds. Default 100.
    pub initial_backoff_ms: u64,
    /// Cap on the delay before jitter, in milliseconds. Default 5 000.
    pub max_backoff_ms: u64,
    /// Growth factor of the delay per failed attempt. Default 2.0 (doubling).
    pub multiplier: f64,
    /// Relative jitter: each delay is scaled by `1 + u`, `u` uniform in
    /// `[−jitter_factor, +jitter_factor)`. Default 0.2 (±20 %).
    pub jitter_factor: f64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            initial_backoff_ms: 100,
            max_backoff_ms: 5_000,
            multiplier: 2.0,
            jitter_factor: 0.2,
        }
    }
}

impl RetryConfig {
    /// Checks the invariants the schedule relies on: at least one attempt, a first delay of at
    /// least 1 ms and no more than `max_backoff_ms`, a finite `multiplier` of at least 1.0 and a
    /// `jitter_factor` in `[0, 1)`. [`Backoff`] accepts any config without panicking (a zero or
    /// NaN delay becomes 0), so validate when loading configuration.
    ///
    /// # Errors
    /// The first [`RetryConfigError`] found; its message starts with the field to fix (callers
    /// embedding a `RetryConfig` prefix it with the section's name).
    pub fn validate(&self) -> Result<(), RetryConfigError> {
        if self.max_attempts == 0 {
            return Err(RetryConfigError::NoAttempts);
        }
        if self.initial_backoff_ms == 0 {
            return Err(RetryConfigError::ZeroInitialBackoff);
        }
        if self.initial_backoff_ms > self.max_backoff_ms {
            return Err(RetryConfigError::InitialAboveMax);
        }
        if !(self.multiplier.is_finite() && self.multiplier >= 1.0) {
            return Err(RetryConfigError::BadMultiplier);
        }
        if !(0.0..1.0).contains(&self.jitter_factor) {
            return Err(RetryConfigError::BadJitter);
        }
        Ok(())
    }
}

/// An invalid [`RetryConfig`]; the variant names the field to fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RetryConfigError {
    /// `max_attempts` is 0: at least the first attempt must be allowed.
    #[error("max_attempts must be at least 1")]
    NoAttempts,
    /// `initial_backoff_ms` is 0: every delay would be 0 (0 × `multiplier` stays 0), so retries
    /// would run back to back. Use a few hundred milliseconds.
    #[error("initial_backoff_ms must be at least 1")]
    ZeroInitialBackoff,
    /// `initial_backoff_ms` exceeds `max_backoff_ms`: lower the first or raise the second.
    #[error("initial_backoff_ms must not exceed max_backoff_ms")]
    InitialAboveMax,
    /// `multiplier` is below 1.0 or not finite: delays must not shrink.
    #[error("multiplier must be finite and at least 1.0")]
    BadMultiplier,
    /// `jitter_factor` is outside `[0, 1)` (or NaN): a delay must stay positive.
    #[error("jitter_factor must be in [0, 1)")]
    BadJitter,
}

/// The retry state of one operation: counts failed attempts and produces the next delay.
///
/// Getters take `&self`; [`next_delay`](Self::next_delay) is the input recording a failure.
#[derive(Debug, Clone)]
pub struct Backoff {
    config: RetryConfig,
    attempts: u32,
}

impl Backoff {
    /// A fresh schedule: no attempt has failed yet.
    pub fn new(config: RetryConfig) -> Self {
        Self { config, attempts: 0 }
    }

    /// Records a failed attempt and returns how long to wait before the next one, or `None`
    /// when `max_attempts` attempts have failed (give up; further calls keep returning `None`).
    ///
    /// Draws exactly one `f64` from `rng` per returned delay, none when giving up.
    pub fn next_delay(&mut self, rng: &mut impl rand::Rng) -> Option<Duration> {
        if self.attempts >= self.config.max_attempts {
            return None;
        }
        self.attempts += 1;
        if self.attempts == self.config.max_attempts {
            return None;
        }
        let exponent = i32::try_from(self.attempts - 1).unwrap_or(i32::MAX);
        let base_ms = (self.config.initial_backoff_ms as f64 * self.config.multiplier.powi(exponent))
            .min(self.config.max_backoff_ms as f64);
        let u = self.config.jitter_factor * (2.0 * rng.random::<f64>() - 1.0);
        let delay_ms = (base_ms * (1.0 + u)).max(0.0);
        // Float-to-int `as` saturates (NaN becomes 0), so this cannot panic.
        Some(Duration::from_nanos((delay_ms * 1e6).round() as u64))
    }

    /// Number of failed attempts recorded so far (at most `max_attempts`).
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Forgets all failures, e.g. after a success, so the next failure starts the schedule again.
    pub fn reset(&mut self) {
        self.attempts = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn schedule(config: RetryConfig, seed: u64) -> Vec<Duration> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut backoff = Backoff::new(config);
        std::iter::from_fn(|| backoff.next_delay(&mut rng)).collect()
    }

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    #[test]
    fn default_config_without_jitter_doubles_then_gives_up() {
        let config = RetryConfig {
            jitter_factor: 0.0,
            ..RetryConfig::default()
        };
        assert_eq!(
            schedule(config, 0),
            [ms(100), ms(200), ms(400), ms(800)],
            "five attempts, four waits"
        );
    }

    #[test]
    fn delays_are_capped_at_max_backoff() {
        let config = RetryConfig {
            max_attempts: 8,
            initial_backoff_ms: 1_000,
            jitter_factor: 0.0,
            ..RetryConfig::default()
        };
        let delays = schedule(config, 0);
        assert_eq!(delays, [1_000, 2_000, 4_000, 5_000, 5_000, 5_000, 5_000].map(ms));
    }

    #[test]
    fn jittered_delays_stay_within_twenty_percent() {
        let config = RetryConfig {
            max_attempts: 12,
            ..RetryConfig::default()
        };
        for seed in 0..200 {
            let delays = schedule(config.clone(), seed);
            assert_eq!(delays.len(), 11);
            for (k, delay) in delays.into_iter().enumerate() {
                let base = (100.0 * 2f64.powi(k as i32)).min(5_000.0);
                let delay_ms = delay.as_secs_f64() * 1e3;
                assert!(
                    (base * 0.8..=base * 1.2).contains(&delay_ms),
                    "seed {seed}, retry {k}: {delay_ms} ms not within ±20 % of {base}"
                );
            }
        }
    }

    #[test]
    fn same_seed_gives_same_schedule() {
        let config = RetryConfig::default();
        assert_eq!(schedule(config.clone(), 42), schedule(config, 42));
    }

    #[test]
    fn different_seeds_spread_the_herd() {
        let config = RetryConfig::default();
        let a = schedule(config.clone(), 1);
        let b = schedule(config, 2);
        assert_eq!(a.len(), b.len());
        assert!(a.iter().zip(&b).all(|(x, y)| x != y), "{a:?} vs {b:?}");
    }

    #[test]
    fn exhausted_stays_exhausted_until_reset() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut backoff = Backoff::new(RetryConfig {
            max_attempts: 2,
            jitter_factor: 0.0,
            ..RetryConfig::default()
        });
        assert_eq!(backoff.next_delay(&mut rng), Some(ms(100)));
        assert_eq!(backoff.attempts(), 1);
        assert_eq!(backoff.next_delay(&mut rng), None);
        assert_eq!(backoff.next_delay(&mut rng), None);
        assert_eq!(backoff.attempts(), 2);

        backoff.reset();
        assert_eq!(backoff.attempts(), 0);
        assert_eq!(backoff.next_delay(&mut rng), Some(ms(100)));
    }

    #[test]
    fn a_single_attempt_never_retries() {
        let config = RetryConfig {
            max_attempts: 1,
            ..RetryConfig::default()
        };
        assert!(schedule(config, 0).is_empty());
    }

    #[test]
    fn validate_accepts_defaults_and_rejects_nonsense() {
        assert_eq!(RetryConfig::default().validate(), Ok(()));
        // Values the simulator's endpoints use.
        let patient = RetryConfig {
            max_attempts: 1_000,
            initial_backoff_ms: 1_000,
            jitter_factor: 0.9,
            ..RetryConfig::default()
        };
        assert_eq!(patient.validate(), Ok(()));
        type Edit = fn(&mut RetryConfig);
        let cases: [(Edit, RetryConfigError, &str); 10] = [
            (
                |c| c.max_attempts = 0,
                RetryConfigError::NoAttempts,
                "max_attempts",
            ),
            (
                |c| c.initial_backoff_ms = 0,
                RetryConfigError::ZeroInitialBackoff,
                "initial_backoff_ms",
            ),
            (
                |c| c.initial_backoff_ms = 6_000,
                RetryConfigError::InitialAboveMax,
                "initial_backoff_ms",
            ),
            (
                |c| c.multiplier = 0.5,
                RetryConfigError::BadMultiplier,
                "multiplier",
            ),
            (
                |c| c.multiplier = -2.0,
                RetryConfigError::BadMultiplier,
                "multiplier",
            ),
            (
                |c| c.multiplier = f64::NAN,
                RetryConfigError::BadMultiplier,
                "multiplier",
            ),
            (
                |c| c.multiplier = f64::INFINITY,
                RetryConfigError::BadMultiplier,
                "multiplier",
            ),
            (
                |c| c.jitter_factor = 1.0,
                RetryConfigError::BadJitter,
                "jitter_factor",
            ),
            (
                |c| c.jitter_factor = -0.1,
                RetryConfigError::BadJitter,
                "jitter_factor",
            ),
            (
                |c| c.jitter_factor = f64::NAN,
                RetryConfigError::BadJitter,
                "jitter_factor",
            ),
        ];
        crate::config::assert_each_refused(&cases, RetryConfig::validate);
    }

    #[test]
    fn config_reads_partial_toml_with_defaults() {
        let config: RetryConfig = toml::from_str("max_attempts = 3").unwrap();
        assert_eq!(
            config,
            RetryConfig {
                max_attempts: 3,
                ..RetryConfig::default()
            }
        );
        assert!(toml::from_str::<RetryConfig>("attempts = 3").is_err());
    }
}
