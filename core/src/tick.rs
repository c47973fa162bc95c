//! Fixed-timestep tick scheduling ([`TickScheduler`]) and client-side tick synchronisation
//! ([`TickSync`]).
//!
//! Both are sans-IO: time is an argument, outputs are `poll_*` drained until `None`, and the
//! next wake-up is an absolute deadline. The server runs a [`TickScheduler`] at
//! [`TickConfig::tick_rate_hz`]; a client runs a [`TickSync`] fed with the server's tick from
//! heartbeat pongs, and runs its own tick sequence slightly ahead of the server's so that its
//! inputs for tick `n` reach the server before the server simulates `n`.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::percentile::nearest_rank;

use crate::shared::ConnHandle;

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// Highest tick rate [`TickConfig::validate`] and [`TickSyncConfig::validate`] accept, in ticks
/// per second: one tick per millisecond, the resolution of every other timer in the
/// configuration (the handshake would carry up to 65 535).
pub const MAX_TICK_RATE_HZ: u32 = 1_000;

/// What a [`TickScheduler`] does when polled after more than one tick came due.
///
/// In TOML: `missed_tick_policy = "skip"` or
/// `missed_tick_policy = { catch_up = { max_ticks = 4 } }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum MissedTickPolicy {
    /// Deliver only the latest due tick and count the older ones as skipped. The default
    /// (missed ticks are skipped, as tokio's `MissedTickBehavior::Skip`): after a stall
    /// the simulation resumes in step with wall time instead of running a burst of ticks.
    #[default]
    Skip,
    /// Deliver up to `max_ticks` due ticks back to back (one per poll), oldest first, and
    /// count any older ones as skipped. Suits simulations that must not drop steps after
    /// short stalls.
    CatchUp {
        /// Most due ticks delivered after a stall, the latest included; 0 acts as 1 (Skip).
        max_ticks: u32,
    },
}

/// Fixed-timestep scheduler settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TickConfig {
    /// Ticks per second, `1..=1000` ([`MAX_TICK_RATE_HZ`]). Default 60.
    pub tick_rate_hz: u32,
    /// Behaviour after a stall. Default [`MissedTickPolicy::Skip`].
    pub missed_tick_policy: MissedTickPolicy,
    /// Most recent ticks whose lateness feeds [`TickStats`]' percentiles and maximum; at
    /// least 1. Default 600 (10 s at 60 Hz).
    pub lateness_window_ticks: usize,
}

impl Default for TickConfig {
    fn default() -> Self {
        Self {
            tick_rate_hz: 60,
            missed_tick_policy: MissedTickPolicy::Skip,
            lateness_window_ticks: 600,
        }
    }
}

/// A [`TickConfig`] or [`TickSyncConfig`] that `validate` rejects. The constructors still accept
/// such configs (clamping each value into its valid range), so validate once when loading
/// configuration. Messages start with the field's name; [`Config::validate`](crate::Config::validate)
/// prefixes them with `tick.` or `tick_sync.`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TickConfigError {
    /// `tick_rate_hz` is 0 (the scheduler would treat it as 1 Hz) or above
    /// [`MAX_TICK_RATE_HZ`]. Set a rate in range (60 is typical).
    #[error("tick_rate_hz must be in 1..=1000")]
    TickRateOutOfRange,
    /// `missed_tick_policy` is `catch_up` with `max_ticks` 0 (the scheduler would treat it as
    /// `skip`). Use `skip`, or `max_ticks` ≥ 1.
    #[error("missed_tick_policy.catch_up.max_ticks must be at least 1")]
    ZeroCatchUp,
    /// `lateness_window_ticks` is 0, which leaves the lateness statistics at 0. Set at least 1.
    #[error("lateness_window_ticks must be at least 1")]
    ZeroLatenessWindow,
    /// `lead_margin_ticks` is negative, not finite, or above 2⁴⁰ (where it would be clamped).
    /// Use a small non-negative number of ticks.
    #[error("lead_margin_ticks must be finite and in [0, 2^40]")]
    InvalidLeadMargin,
    /// `max_adjust_ratio` is outside `[0, 0.5]` or not finite. Use e.g. 0.05 (±5 %).
    #[error("max_adjust_ratio must lie in [0, 0.5]")]
    InvalidMaxAdjust,
    /// `snap_threshold_ticks` is not positive and finite. Use a few dozen ticks.
    #[error("snap_threshold_ticks must be positive and finite")]
    InvalidSnapThreshold,
    /// `smoothing` is outside `(0, 1]` or not finite. Use e.g. 0.2.
    #[error("smoothing must lie in (0, 1]")]
    InvalidSmoothing,
    /// `slew_time_constant_ms` is 0 (it would be treated as 1). Use e.g. 1 000.
    #[error("slew_time_constant_ms must be > 0")]
    ZeroSlewTimeConstant,
}

impl TickConfig {
    /// Checks the settings: `tick_rate_hz` in `1..=1000`, a `catch_up` policy delivering at
    /// least one tick, a non-empty lateness window.
    ///
    /// # Errors
    /// The first [`TickConfigError`] found; each variant says how to fix its field.
    pub fn validate(&self) -> Result<(), TickConfigError> {
        if !(1..=MAX_TICK_RATE_HZ).contains(&self.tick_rate_hz) {
            Err(TickConfigError::TickRateOutOfRange)
        } else if self.missed_tick_policy == (MissedTickPolicy::CatchUp { max_ticks: 0 }) {
            Err(TickConfigError::ZeroCatchUp)
        } else if self.lateness_window_ticks == 0 {
            Err(TickConfigError::ZeroLatenessWindow)
        } else {
            Ok(())
        }
    }
}

/// A tick delivered by [`TickScheduler::poll_tick`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TickInfo {
    /// Tick number: 1 for the first tick after the start, +1 per period.
    pub tick: u64,
    /// When the tick was due: `start + ⌈tick × 10⁹ / tick_rate_hz⌉` ns.
    pub scheduled_at: Instant,
    /// How long after `scheduled_at` it was delivered.
    pub lateness: Duration,
    /// Whose tick it is: `None` for a server's own tick; on a client endpoint, the
    /// connection whose synchronised local tick this is ([`TickSync`]).
    pub conn: Option<ConnHandle>,
}

/// [`TickScheduler`] statistics. Lateness figures are milliseconds over the last
/// `lateness_window_ticks` delivered ticks (nearest-rank percentiles), 0 before any tick.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct TickStats {
    /// Ticks delivered.
    pub ticks: u64,
    /// Ticks skipped by the missed-tick policy.
    pub skipped: u64,
    /// Median lateness.
    pub lateness_p50_ms: f64,
    /// 99th-percentile lateness.
    pub lateness_p99_ms: f64,
    /// Largest lateness.
    pub lateness_max_ms: f64,
}

/// Fixed-timestep scheduler: tick `n` is due at `start + ⌈n × 10⁹ / tick_rate_hz⌉` ns,
/// computed from the tick number in integer nanoseconds so that no drift accumulates.
///
/// Output: [`poll_tick`](Self::poll_tick) (drain until `None`), deadline:
/// [`poll_timeout`](Self::poll_timeout). Getters: [`current_tick`](Self::current_tick),
/// [`tick_duration`](Self::tick_duration), [`stats`](Self::stats).
#[derive(Debug)]
pub struct TickScheduler {
    start: Instant,
    tick_rate_hz: u64,
    /// Most due ticks delivered after a stall: 1 for Skip, `max_ticks` for CatchUp.
    max_backlog: u64,
    current: u64,
    /// `scheduled_at(current + 1)`, kept so that polling before it is due costs a comparison.
    next_due: Instant,
    delivered: u64,
    skipped: u64,
    lateness: VecDeque<Duration>,
    lateness_window: usize,
}

impl TickScheduler {
    /// Creates a scheduler whose tick 0 is `start` (never delivered: it is the initial state)
    /// and whose tick 1 is due one period later. A zero tick rate is treated as 1 Hz.
    pub fn new(start: Instant, config: TickConfig) -> Self {
        let max_backlog = match config.missed_tick_policy {
            MissedTickPolicy::Skip => 1,
            MissedTickPolicy::CatchUp { max_ticks } => u64::from(max_ticks.max(1)),
        };
        let mut scheduler = Self {
            start,
            tick_rate_hz: u64::from(config.tick_rate_hz.max(1)),
            max_backlog,
            current: 0,
            next_due: start,
            delivered: 0,
            skipped: 0,
            lateness: VecDeque::with_capacity(config.lateness_window_ticks.min(4096)),
            lateness_window: config.lateness_window_ticks,
        };
        scheduler.next_due = scheduler.scheduled_at(1);
        scheduler
    }

    /// Output: the next tick to run, if one is due at `now`. After a stall the
    /// [`MissedTickPolicy`] decides which due ticks are delivered; the others are counted as
    /// skipped. Call until `None`, then sleep until [`poll_timeout`](Self::poll_timeout).
    #[must_use]
    pub fn poll_tick(&mut self, now: Instant) -> Option<TickInfo> {
        if now < self.next_due {
            return None;
        }
        let after_next = self.scheduled_at(self.current.saturating_add(2));
        let scheduled_at = if now < after_next {
            // On time, or late by less than a tick: the due tick is the next one, scheduled at
            // the old deadline, and the tick after it is the new one.
            self.current += 1;
            let scheduled_at = self.next_due;
            self.next_due = after_next;
            scheduled_at
        } else {
            let latest = self.latest_due(now);
            let backlog = latest.checked_sub(self.current).filter(|b| *b > 0)?;
            if backlog > self.max_backlog {
                self.skipped += backlog - self.max_backlog;
                self.current = latest - self.max_backlog;
            }
            self.current += 1;
            self.next_due = self.scheduled_at(self.current.saturating_add(1));
            self.scheduled_at(self.current)
        };
        self.delivered += 1;
        let lateness = now.saturating_duration_since(scheduled_at);
        if self.lateness_window > 0 {
            if self.lateness.len() == self.lateness_window {
                self.lateness.pop_front();
            }
            self.lateness.push_back(lateness);
        }
        Some(TickInfo {
            tick: self.current,
            scheduled_at,
            lateness,
            conn: None,
        })
    }

    /// When the tick after [`current_tick`](Self::current_tick) is due (possibly already past).
    #[must_use]
    pub fn poll_timeout(&self) -> Instant {
        self.next_due
    }

    /// The last tick delivered; 0 before the first.
    pub fn current_tick(&self) -> u64 {
        self.current
    }

    /// The nominal period, `10⁹ / tick_rate_hz` ns rounded down (16 666 666 ns at 60 Hz). The
    /// schedule itself is exact, see [`TickScheduler`].
    pub fn tick_duration(&self) -> Duration {
        Duration::from_nanos(1_000_000_000 / self.tick_rate_hz)
    }

    /// Getter: counters and lateness statistics.
    pub fn stats(&self) -> TickStats {
        let mut window: Vec<Duration> = self.lateness.iter().copied().collect();
        window.sort_unstable();
        TickStats {
            ticks: self.delivered,
            skipped: self.skipped,
            lateness_p50_ms: nearest_rank(&window, 0.50).map_or(0.0, millis),
            lateness_p99_ms: nearest_rank(&window, 0.99).map_or(0.0, millis),
            lateness_max_ms: window.last().copied().map_or(0.0, millis),
        }
    }

    fn scheduled_at(&self, tick: u64) -> Instant {
        let nanos = (u128::from(tick) * NANOS_PER_SEC).div_ceil(u128::from(self.tick_rate_hz));
        self.start + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// The highest `n` with `scheduled_at(n) <= now`.
    fn latest_due(&self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.start).as_nanos();
        u64::try_from(elapsed * u128::from(self.tick_rate_hz) / NANOS_PER_SEC).unwrap_or(u64::MAX)
    }
}

/// Client tick synchronisation settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TickSyncConfig {
    /// The server's tick rate, in ticks per second, `1..=1000`. Default 60; must
    /// match the server's [`TickConfig::tick_rate_hz`] (a session uses the rate the server
    /// announces in its handshake).
    pub tick_rate_hz: u32,
    /// How many ticks the client runs ahead of its estimate of the server's tick, so that its
    /// input for a tick arrives before the server runs it. Default 2: the client's sends are
    /// already ahead by the one-way delay (added by the estimate); two ticks (33 ms at 60 Hz)
    /// absorb the estimation error (below a tick) plus ordinary jitter.
    pub lead_margin_ticks: f64,
    /// Largest relative speed-up or slow-down of the client's tick clock while slewing.
    /// Default 0.05 (±5 %): corrects 3 ticks per second at 60 Hz, too little for players to
    /// notice. Valid range `[0, 0.5]`.
    pub max_adjust_ratio: f64,
    /// When the client's tick is off its target by more than this many ticks, it jumps
    /// instead of slewing; also, a sample this far from the estimate replaces it (the server's
    /// tick jumped). Default 30 (0.5 s at 60 Hz; slewing that far at 5 % would take 10 s).
    pub snap_threshold_ticks: f64,
    /// Weight of each new sample in the server tick estimate (an EWMA gain in `(0, 1]`).
    /// Default 0.2: with a pong every 500 ms the estimate settles in about 5 s and averages
    /// per-sample noise (delay asymmetry, tick phase) down by a factor of three.
    pub smoothing: f64,
    /// Time constant of the slew, in milliseconds: an offset of `x` ticks is corrected at
    /// `x / τ` ticks per second, capped by `max_adjust_ratio`. Default 1 000: well above the
    /// tick period, so estimate noise barely moves the rate, yet small offsets vanish within
    /// a few seconds.
    pub slew_time_constant_ms: u64,
}

impl Default for TickSyncConfig {
    fn default() -> Self {
        Self {
            tick_rate_hz: 60,
            lead_margin_ticks: 2.0,
            max_adjust_ratio: 0.05,
            snap_threshold_ticks: 30.0,
            smoothing: 0.2,
            slew_time_constant_ms: 1_000,
        }
    }
}

impl TickSyncConfig {
    /// Checks the settings: `tick_rate_hz` in `1..=1000`, every float finite and in its
    /// documented range, a positive slew time constant. Values the constructor would clamp
    /// are refused here.
    ///
    /// # Errors
    /// The first [`TickConfigError`] found; each variant says how to fix its field.
    pub fn validate(&self) -> Result<(), TickConfigError> {
        use TickConfigError as E;
        let finite_in = |x: f64, lo: f64, hi: f64| x.is_finite() && (lo..=hi).contains(&x);
        if !(1..=MAX_TICK_RATE_HZ).contains(&self.tick_rate_hz) {
            Err(E::TickRateOutOfRange)
        } else if !finite_in(self.lead_margin_ticks, 0.0, MAX_SERVER_TICK) {
            Err(E::InvalidLeadMargin)
        } else if !finite_in(self.max_adjust_ratio, 0.0, MAX_ADJUST_RATIO) {
            Err(E::InvalidMaxAdjust)
        } else if !finite_in(self.snap_threshold_ticks, f64::MIN_POSITIVE, f64::MAX) {
            Err(E::InvalidSnapThreshold)
        } else if !finite_in(self.smoothing, f64::MIN_POSITIVE, 1.0) {
            Err(E::InvalidSmoothing)
        } else if self.slew_time_constant_ms == 0 {
            Err(E::ZeroSlewTimeConstant)
        } else {
            Ok(())
        }
    }
}

/// Upper bound of [`TickSyncConfig::max_adjust_ratio`]: the client clock never stops or runs
/// backwards, and never runs more than 1.5× nominal speed.
const MAX_ADJUST_RATIO: f64 = 0.5;

/// Implied server ticks above this (2⁴⁰: 580 years at 60 Hz) are rejected as implausible:
/// beyond it `f64` tick arithmetic would lose sub-tick precision.
const MAX_SERVER_TICK: f64 = (1u64 << 40) as f64;

/// Gain of the EWMA of |innovation| reported as [`TickSyncStats::estimation_error_ticks`]
/// (1/8, as for SRTT in RFC 6298 §2).
const ERROR_GAIN: f64 = 0.125;

/// [`TickSync`] statistics, in ticks unless stated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct TickSyncStats {
    /// Samples accepted by [`TickSync::handle_sample`].
    pub samples: u64,
    /// Samples rejected because they implied a server tick above 2⁴⁰.
    pub rejected_samples: u64,
    /// Client tick − (estimated server tick + lead margin), fractional, as of the last
    /// `handle_sample` or `poll_tick`. Positive: the client is ahead of its target.
    pub offset_ticks: f64,
    /// EWMA (gain 1/8) of |innovation|: how far each sample's implied server tick lay from
    /// the estimate before it. Measures the noise of the samples, not the final error.
    pub estimation_error_ticks: f64,
    /// Times the client tick jumped instead of slewing.
    pub snaps: u64,
    /// Client ticks jumped over by `poll_tick` (after a snap ahead or a late poll).
    pub skipped_ticks: u64,
    /// Current speed adjustment of the client's tick clock: +0.05 runs 5 % fast. Always
    /// within ±`max_adjust_ratio`.
    pub rate_adjust_ratio: f64,
}

/// Client-side tick synchronisation: estimates the server's tick from pongs and runs the
/// client's own tick sequence `lead_margin_ticks` ahead of it.
///
/// Each [`handle_sample`](Self::handle_sample) gives the server tick in a pong and the round trip it
/// belongs to. The estimate of the server tick advances at the nominal rate between samples
/// and is pulled towards each sample by `smoothing`. The client's tick clock runs at the
/// nominal rate times `1 + adjust`, where `adjust = −offset / (rate × τ)` clamped to
/// ±`max_adjust_ratio`, re-evaluated on every call, so the offset decays smoothly; beyond
/// `snap_threshold_ticks` the clock jumps. Ticks are delivered monotonically and never repeat:
/// after a jump back, nothing is delivered until the clock passes the last delivered tick.
///
/// Input: [`handle_sample`](Self::handle_sample). Output: [`poll_tick`](Self::poll_tick), deadline
/// [`poll_timeout`](Self::poll_timeout). Getters:
/// [`estimated_server_tick`](Self::estimated_server_tick), [`last_tick`](Self::last_tick),
/// [`stats`](Self::stats).
/// Earlier `now`s than already seen are treated as the latest one seen.
#[derive(Debug)]
pub struct TickSync {
    params: SyncParams,
    /// `None` until the first sample.
    state: Option<SyncState>,
    last_delivered: Option<u64>,
    samples: u64,
    rejected_samples: u64,
    snaps: u64,
    skipped_ticks: u64,
    error_ewma: f64,
    last_offset: f64,
    /// [`TickSync::poll_timeout`]'s answer, recomputed whenever the state changes (in
    /// `handle_sample` and `poll_tick`), so that polling it is free.
    deadline: Option<Instant>,
}

/// The configuration, each value clamped into its valid range.
#[derive(Debug, Clone, Copy)]
struct SyncParams {
    hz: f64,
    margin: f64,
    max_adjust: f64,
    snap: f64,
    smoothing: f64,
    slew_tau_s: f64,
}

#[derive(Debug, Clone, Copy)]
struct SyncState {
    /// Estimated (fractional) server tick at `estimate_at`.
    estimate_tick: f64,
    estimate_at: Instant,
    /// Client (fractional) tick at `clock_at`; advances at `hz × (1 + adjust)`.
    clock_tick: f64,
    clock_at: Instant,
    adjust: f64,
}

impl SyncState {
    fn estimate(&self, now: Instant, hz: f64) -> f64 {
        self.estimate_tick + secs_since(self.estimate_at, now) * hz
    }

    fn clock(&self, now: Instant, hz: f64) -> f64 {
        self.clock_tick + secs_since(self.clock_at, now) * hz * (1.0 + self.adjust)
    }

    /// Re-anchors the client clock at `now` and re-aims its rate; returns the offset.
    fn steer(&mut self, now: Instant, p: &SyncParams) -> f64 {
        self.clock_tick = self.clock(now, p.hz);
        self.clock_at = now;
        let offset = self.clock_tick - (self.estimate(now, p.hz) + p.margin);
        self.adjust = (-offset / (p.hz * p.slew_tau_s)).clamp(-p.max_adjust, p.max_adjust);
        offset
    }
}

impl TickSync {
    /// Creates an unsynchronised tick sync; it delivers nothing before the first sample.
    /// Out-of-range settings are clamped into range (see [`TickSyncConfig::validate`]).
    pub fn new(config: TickSyncConfig) -> Self {
        let defaults = TickSyncConfig::default();
        let clamp = |x: f64, lo: f64, hi: f64, fallback: f64| {
            if x.is_finite() {
                x.clamp(lo, hi)
            } else {
                fallback
            }
        };
        let params = SyncParams {
            hz: f64::from(config.tick_rate_hz.max(1)),
            margin: clamp(
                config.lead_margin_ticks,
                0.0,
                MAX_SERVER_TICK,
                defaults.lead_margin_ticks,
            ),
            max_adjust: clamp(
                config.max_adjust_ratio,
                0.0,
                MAX_ADJUST_RATIO,
                defaults.max_adjust_ratio,
            ),
            snap: clamp(
                config.snap_threshold_ticks,
                0.0,
                f64::MAX,
                defaults.snap_threshold_ticks,
            ),
            smoothing: clamp(config.smoothing, 0.0, 1.0, defaults.smoothing),
            slew_tau_s: config.slew_time_constant_ms.max(1) as f64 / 1e3,
        };
        Self {
            params,
            state: None,
            last_delivered: None,
            samples: 0,
            rejected_samples: 0,
            snaps: 0,
            skipped_ticks: 0,
            error_ewma: 0.0,
            last_offset: 0.0,
            deadline: None,
        }
    }

    /// Input: a pong carrying `server_tick` arrived at `now`, `rtt` after its ping was sent
    /// (from `heartbeat::RttSample`).
    ///
    /// The server sent the pong about `rtt / 2` ago (one-way delays are assumed symmetric; an
    /// asymmetry `a` between the two directions biases the estimate by `a / 2`), and it stamps
    /// its last delivered tick while being on average half a period into the next one, so the
    /// sample implies server tick `server_tick + 0.5 + (rtt / 2) × tick_rate_hz` at `now`.
    /// The first sample sets the estimate and the client clock outright. Samples implying a
    /// tick above 2⁴⁰ are ignored and counted in `rejected_samples`.
    pub fn handle_sample(&mut self, now: Instant, server_tick: u64, rtt: Duration) {
        self.take_sample(now, server_tick, rtt);
        self.deadline = self.next_deadline();
    }

    fn take_sample(&mut self, now: Instant, server_tick: u64, rtt: Duration) {
        let p = self.params;
        let implied = server_tick as f64 + 0.5 + rtt.as_secs_f64() / 2.0 * p.hz;
        if implied > MAX_SERVER_TICK {
            self.rejected_samples += 1;
            return;
        }
        self.samples += 1;
        let Some(state) = self.state.as_mut() else {
            self.state = Some(SyncState {
                estimate_tick: implied,
                estimate_at: now,
                clock_tick: implied + p.margin,
                clock_at: now,
                adjust: 0.0,
            });
            self.last_offset = 0.0;
            return;
        };
        let now = now.max(state.clock_at).max(state.estimate_at);
        let predicted = state.estimate(now, p.hz);
        let innovation = implied - predicted;
        self.error_ewma += ERROR_GAIN * (innovation.abs() - self.error_ewma);
        state.estimate_tick = if innovation.abs() > p.snap {
            implied
        } else {
            predicted + p.smoothing * innovation
        };
        state.estimate_at = now;
        let target = state.estimate_tick + p.margin;
        if (state.clock(now, p.hz) - target).abs() > p.snap {
            state.clock_tick = target;
            state.clock_at = now;
            self.snaps += 1;
        }
        self.last_offset = state.steer(now, &p);
    }

    /// The estimated (fractional) server tick at `now`; `None` before the first sample.
    pub fn estimated_server_tick(&self, now: Instant) -> Option<f64> {
        self.state.map(|s| s.estimate(now, self.params.hz))
    }

    /// Getter: the last tick delivered by [`poll_tick`](Self::poll_tick); `None` before the
    /// first.
    pub fn last_tick(&self) -> Option<u64> {
        self.last_delivered
    }

    /// Output: the client's next tick, once the client clock has reached it. Delivers at most
    /// one tick per call, strictly increasing; if the clock is more than one tick past the last
    /// delivered one (after a snap ahead or a late poll), jumps to the clock's tick and counts
    /// the ticks in between in `skipped_ticks`. `None` before the first sample.
    #[must_use]
    pub fn poll_tick(&mut self, now: Instant) -> Option<u64> {
        let tick = self.next_tick(now);
        self.deadline = self.next_deadline();
        tick
    }

    fn next_tick(&mut self, now: Instant) -> Option<u64> {
        let due = self.poll_timeout()? <= now;
        let p = self.params;
        let state = self.state.as_mut()?;
        let now = now.max(state.clock_at).max(state.estimate_at);
        self.last_offset = state.steer(now, &p);
        if !due {
            return None;
        }
        // Negative clock readings saturate to tick 0.
        let reached = state.clock_tick.floor() as u64;
        let tick = match self.last_delivered {
            None => reached,
            Some(last) => {
                let next = last.checked_add(1)?;
                self.skipped_ticks += reached.saturating_sub(next);
                reached.max(next)
            }
        };
        self.last_delivered = Some(tick);
        Some(tick)
    }

    /// When the client clock reaches the tick after the last delivered one at its current rate
    /// (now-ish before the first delivery); `None` before the first sample. Rounded up to the
    /// next nanosecond, and [`poll_tick`](Self::poll_tick) delivers whenever this deadline has
    /// passed, so polling at the deadline always makes progress.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }

    fn next_deadline(&self) -> Option<Instant> {
        let state = self.state.as_ref()?;
        let Some(last) = self.last_delivered else {
            return Some(state.clock_at);
        };
        let remaining = (last as f64 + 1.0) - state.clock_tick;
        if remaining <= 0.0 {
            return Some(state.clock_at);
        }
        let nanos = (remaining / (self.params.hz * (1.0 + state.adjust)) * 1e9).ceil();
        state.clock_at.checked_add(Duration::from_nanos(nanos as u64))
    }

    /// Getter: synchronisation statistics.
    pub fn stats(&self) -> TickSyncStats {
        TickSyncStats {
            samples: self.samples,
            rejected_samples: self.rejected_samples,
            offset_ticks: self.last_offset,
            estimation_error_ticks: self.error_ewma,
            snaps: self.snaps,
            skipped_ticks: self.skipped_ticks,
            rate_adjust_ratio: self.state.map_or(0.0, |s| s.adjust),
        }
    }
}

fn secs_since(earlier: Instant, now: Instant) -> f64 {
    now.saturating_duration_since(earlier).as_secs_f64()
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    const MS: Duration = Duration::from_millis(1);

    fn nanos(n: u64) -> Duration {
        Duration::from_nanos(n)
    }

    fn scheduler(t0: Instant, policy: MissedTickPolicy) -> TickScheduler {
        let config = TickConfig {
            missed_tick_policy: policy,
            ..TickConfig::default()
        };
        TickScheduler::new(t0, config)
    }

    #[test]
    fn config_reads_from_toml() {
        let config: TickConfig = toml::from_str("").unwrap();
        assert_eq!(config, TickConfig::default());
        assert_eq!(config.missed_tick_policy, MissedTickPolicy::Skip);

        let skip: TickConfig = toml::from_str("tick_rate_hz = 30\nmissed_tick_policy = \"skip\"").unwrap();
        assert_eq!(
            (skip.tick_rate_hz, skip.missed_tick_policy),
            (30, MissedTickPolicy::Skip)
        );

        let catch_up: TickConfig =
            toml::from_str("missed_tick_policy = { catch_up = { max_ticks = 4 } }").unwrap();
        let policy = MissedTickPolicy::CatchUp { max_ticks: 4 };
        assert_eq!(catch_up.missed_tick_policy, policy);
        let written = toml::to_string(&catch_up).unwrap();
        assert_eq!(toml::from_str::<TickConfig>(&written).unwrap(), catch_up);

        assert!(toml::from_str::<TickConfig>("missed_tick_policy = \"drop\"").is_err());
        assert!(toml::from_str::<TickConfig>("tick_hz = 60").is_err());
        let zero = TickConfig {
            missed_tick_policy: MissedTickPolicy::CatchUp { max_ticks: 0 },
            ..TickConfig::default()
        };
        assert_eq!(zero.validate(), Err(TickConfigError::ZeroCatchUp));

        let sync: TickSyncConfig = toml::from_str("lead_margin_ticks = 3.0").unwrap();
        assert_eq!(sync.lead_margin_ticks, 3.0);
        assert_eq!(sync.validate(), Ok(()));
        let bad = TickSyncConfig {
            max_adjust_ratio: 1.5,
            ..TickSyncConfig::default()
        };
        assert_eq!(bad.validate(), Err(TickConfigError::InvalidMaxAdjust));
    }

    #[test]
    fn validate_refuses_each_bad_value_naming_its_field() {
        use TickConfigError as E;
        assert_eq!(TickConfig::default().validate(), Ok(()));
        assert_eq!(TickSyncConfig::default().validate(), Ok(()));
        for hz in [1, 20, 60, MAX_TICK_RATE_HZ] {
            let tick = TickConfig {
                tick_rate_hz: hz,
                ..TickConfig::default()
            };
            assert_eq!(tick.validate(), Ok(()), "{hz} Hz");
        }

        type TickEdit = fn(&mut TickConfig);
        let tick_cases: [(TickEdit, E, &str); 5] = [
            (|c| c.tick_rate_hz = 0, E::TickRateOutOfRange, "tick_rate_hz"),
            (|c| c.tick_rate_hz = 1_001, E::TickRateOutOfRange, "tick_rate_hz"),
            (
                |c| c.tick_rate_hz = u32::MAX,
                E::TickRateOutOfRange,
                "tick_rate_hz",
            ),
            (
                |c| c.missed_tick_policy = MissedTickPolicy::CatchUp { max_ticks: 0 },
                E::ZeroCatchUp,
                "missed_tick_policy",
            ),
            (
                |c| c.lateness_window_ticks = 0,
                E::ZeroLatenessWindow,
                "lateness_window_ticks",
            ),
        ];
        crate::config::assert_each_refused(&tick_cases, TickConfig::validate);

        type SyncEdit = fn(&mut TickSyncConfig);
        let sync_cases: [(SyncEdit, E, &str); 16] = [
            (|c| c.tick_rate_hz = 0, E::TickRateOutOfRange, "tick_rate_hz"),
            (|c| c.tick_rate_hz = 5_000, E::TickRateOutOfRange, "tick_rate_hz"),
            (
                |c| c.lead_margin_ticks = -1.0,
                E::InvalidLeadMargin,
                "lead_margin_ticks",
            ),
            (
                |c| c.lead_margin_ticks = f64::NAN,
                E::InvalidLeadMargin,
                "lead_margin_ticks",
            ),
            (
                |c| c.lead_margin_ticks = f64::INFINITY,
                E::InvalidLeadMargin,
                "lead_margin_ticks",
            ),
            (
                |c| c.lead_margin_ticks = 1e15,
                E::InvalidLeadMargin,
                "lead_margin_ticks",
            ),
            (
                |c| c.max_adjust_ratio = -0.01,
                E::InvalidMaxAdjust,
                "max_adjust_ratio",
            ),
            (
                |c| c.max_adjust_ratio = 0.6,
                E::InvalidMaxAdjust,
                "max_adjust_ratio",
            ),
            (
                |c| c.max_adjust_ratio = f64::NAN,
                E::InvalidMaxAdjust,
                "max_adjust_ratio",
            ),
            (
                |c| c.snap_threshold_ticks = 0.0,
                E::InvalidSnapThreshold,
                "snap_threshold_ticks",
            ),
            (
                |c| c.snap_threshold_ticks = f64::NEG_INFINITY,
                E::InvalidSnapThreshold,
                "snap_threshold_ticks",
            ),
            (
                |c| c.snap_threshold_ticks = f64::NAN,
                E::InvalidSnapThreshold,
                "snap_threshold_ticks",
            ),
            (|c| c.smoothing = 0.0, E::InvalidSmoothing, "smoothing"),
            (|c| c.smoothing = 1.5, E::InvalidSmoothing, "smoothing"),
            (|c| c.smoothing = f64::NAN, E::InvalidSmoothing, "smoothing"),
            (
                |c| c.slew_time_constant_ms = 0,
                E::ZeroSlewTimeConstant,
                "slew_time_constant_ms",
            ),
        ];
        crate::config::assert_each_refused(&sync_cases, TickSyncConfig::validate);
    }

    #[test]
    fn delivers_one_tick_per_period_at_exact_times() {
        let t0 = crate::testing::epoch();
        let mut s = TickScheduler::new(t0, TickConfig::default());
        assert_eq!(s.tick_duration(), nanos(16_666_666));
        assert_eq!(s.poll_tick(t0), None, "tick 0 is the start, not delivered");
        for n in 1..=60u64 {
            let deadline = s.poll_timeout();
            assert_eq!(deadline, t0 + nanos((n * 1_000_000_000).div_ceil(60)));
            assert_eq!(s.poll_tick(deadline - nanos(1)), None);
            let info = s.poll_tick(deadline).unwrap();
            assert_eq!(
                (info.tick, info.scheduled_at, info.lateness),
                (n, deadline, Duration::ZERO)
            );
            assert_eq!(s.poll_tick(deadline), None);
            assert_eq!(s.current_tick(), n);
        }
        assert_eq!(s.poll_timeout() - nanos(16_666_667), t0 + Duration::from_secs(1));
        assert_eq!(
            s.stats(),
            TickStats {
                ticks: 60,
                ..TickStats::default()
            }
        );
    }

    #[test]
    fn lateness_is_recorded() {
        let t0 = crate::testing::epoch();
        let mut s = TickScheduler::new(t0, TickConfig::default());
        for late_ms in [1u32, 1, 1, 2, 9] {
            let deadline = s.poll_timeout();
            let info = s.poll_tick(deadline + late_ms * MS).unwrap();
            assert_eq!(info.lateness, late_ms * MS);
        }
        let stats = s.stats();
        assert_eq!(
            (
                stats.lateness_p50_ms,
                stats.lateness_p99_ms,
                stats.lateness_max_ms
            ),
            (1.0, 9.0, 9.0)
        );
    }

    /// Runs ticks 1–5 on time, then polls once 10 ticks overdue (ticks 6–15 due).
    fn after_stall(policy: MissedTickPolicy) -> (TickScheduler, Vec<u64>) {
        let t0 = crate::testing::epoch();
        let mut s = scheduler(t0, policy);
        for _ in 0..5 {
            s.poll_tick(s.poll_timeout()).unwrap();
        }
        let now = s.scheduled_at(15) + MS;
        let ticks = std::iter::from_fn(|| s.poll_tick(now).map(|i| i.tick)).collect();
        (s, ticks)
    }

    #[test]
    fn skip_jumps_to_the_latest_due_tick() {
        let (s, ticks) = after_stall(MissedTickPolicy::Skip);
        assert_eq!(ticks, [15]);
        assert_eq!((s.stats().ticks, s.stats().skipped), (6, 9));
        assert_eq!(s.poll_timeout(), s.scheduled_at(16));
    }

    #[test]
    fn catch_up_delivers_a_bounded_burst() {
        let (s, ticks) = after_stall(MissedTickPolicy::CatchUp { max_ticks: 4 });
        assert_eq!(ticks, [12, 13, 14, 15]);
        assert_eq!((s.stats().ticks, s.stats().skipped), (9, 6));
        let (_, ticks) = after_stall(MissedTickPolicy::CatchUp { max_ticks: 20 });
        assert_eq!(ticks, (6..=15).collect::<Vec<_>>());
    }

    #[test]
    fn ticks_match_the_exact_schedule_however_late_the_polls() {
        let t0 = crate::testing::epoch();
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for policy in [MissedTickPolicy::Skip, MissedTickPolicy::CatchUp { max_ticks: 3 }] {
            let mut s = scheduler(t0, policy);
            let mut now = t0;
            for _ in 0..5_000 {
                // Mostly within a tick of the deadline, sometimes several ticks late.
                now = s.poll_timeout() + nanos(rng.random_range(0..40_000_000));
                while let Some(info) = s.poll_tick(now) {
                    assert_eq!(info.scheduled_at, s.scheduled_at(info.tick));
                    assert!(info.scheduled_at <= now && info.tick <= s.latest_due(now));
                    assert_eq!(s.poll_timeout(), s.scheduled_at(info.tick + 1));
                }
                assert!(s.poll_timeout() > now);
            }
            assert_eq!(s.current_tick(), s.latest_due(now));
        }
    }

    #[test]
    fn no_drift_over_an_hour() {
        let t0 = crate::testing::epoch();
        let mut s = TickScheduler::new(t0, TickConfig::default());
        let mut previous = t0;
        while let Some(info) = s.poll_tick(s.poll_timeout()) {
            let step = info.scheduled_at - previous;
            assert!(step == nanos(16_666_666) || step == nanos(16_666_667), "{step:?}");
            previous = info.scheduled_at;
            if info.tick == 216_000 {
                break;
            }
        }
        assert_eq!(previous, t0 + Duration::from_secs(3_600));
        assert_eq!(s.stats().skipped, 0);
    }

    /// A server on a path with a base one-way delay, uniform jitter and a clock that may run
    /// fast relative to the client's; the client pings every 500 ms.
    struct SyncSim {
        t0: Instant,
        rng: ChaCha8Rng,
        server_start_tick: f64,
        server_drift: f64,
        base_delay: Duration,
        jitter_us: i64,
        /// Pongs in flight: (arrival, server tick, rtt).
        pongs: VecDeque<(Instant, u64, Duration)>,
        next_ping: Instant,
    }

    impl SyncSim {
        fn new(t0: Instant, seed: u64) -> Self {
            Self {
                t0,
                rng: ChaCha8Rng::seed_from_u64(seed),
                server_start_tick: 12_345.0,
                server_drift: 0.0,
                base_delay: 40 * MS,
                jitter_us: 0,
                pongs: VecDeque::new(),
                next_ping: t0,
            }
        }

        /// The server's continuous tick at `t`.
        fn server_tick(&self, t: Instant) -> f64 {
            self.server_start_tick + (t - self.t0).as_secs_f64() * 60.0 * (1.0 + self.server_drift)
        }

        fn one_way(&mut self) -> Duration {
            let jitter = self.rng.random_range(-self.jitter_us..=self.jitter_us);
            Duration::from_micros((self.base_delay.as_micros() as i64 + jitter) as u64)
        }

        fn ping(&mut self, up: Duration, down: Duration) {
            let stamped = self.server_tick(self.next_ping + up).floor() as u64;
            self.pongs
                .push_back((self.next_ping + up + down, stamped, up + down));
            self.next_ping += 500 * MS;
        }

        /// Advances to the next event until `end`; calls `on_tick(now, tick)` for every client
        /// tick delivered.
        fn run(&mut self, sync: &mut TickSync, end: Instant, mut on_tick: impl FnMut(&Self, Instant, u64)) {
            loop {
                let pong_at = self.pongs.front().map(|(at, ..)| *at);
                let now = [Some(self.next_ping), pong_at, sync.poll_timeout()]
                    .into_iter()
                    .flatten()
                    .min()
                    .unwrap();
                if now > end {
                    return;
                }
                if now == self.next_ping {
                    let (up, down) = (self.one_way(), self.one_way());
                    self.ping(up, down);
                }
                while self.pongs.front().is_some_and(|(at, ..)| *at <= now) {
                    let (_, tick, rtt) = self.pongs.pop_front().unwrap();
                    sync.handle_sample(now, tick, rtt);
                }
                while let Some(tick) = sync.poll_tick(now) {
                    on_tick(self, now, tick);
                }
            }
        }
    }

    #[test]
    fn first_sample_sets_the_estimate() {
        let t0 = crate::testing::epoch();
        let mut sync = TickSync::new(TickSyncConfig::default());
        assert_eq!((sync.poll_tick(t0), sync.poll_timeout()), (None, None));
        assert_eq!(sync.estimated_server_tick(t0), None);
        // Stamped tick 100, half a period in on average, plus 50 ms (3 ticks) of one-way delay.
        sync.handle_sample(t0, 100, 100 * MS);
        assert_eq!(sync.estimated_server_tick(t0), Some(103.5));
        assert_eq!(
            sync.estimated_server_tick(t0 + Duration::from_secs(1)),
            Some(163.5)
        );
        // The client runs two ticks ahead: 105.5, so tick 105 now and 106 half a period later.
        assert_eq!(sync.last_tick(), None);
        assert_eq!(sync.poll_tick(t0), Some(105));
        assert_eq!(sync.poll_tick(t0), None);
        assert_eq!(sync.last_tick(), Some(105));
        assert_eq!(sync.poll_timeout(), Some(t0 + nanos(8_333_334)));
        assert_eq!(sync.poll_tick(t0 + nanos(8_333_334)), Some(106));
        assert_eq!(sync.last_tick(), Some(106));
    }

    #[test]
    fn converges_under_jitter_with_bounded_rate() {
        let t0 = crate::testing::epoch();
        let mut sim = SyncSim::new(t0, 0x71c);
        sim.server_drift = 0.001;
        sim.jitter_us = 10_000;
        let mut sync = TickSync::new(TickSyncConfig::default());
        // The first pong, delayed 300 ms on its way back, makes the client start 9 ticks late.
        sim.ping(10 * MS, 300 * MS);

        // (time, client tick, client tick − (true server tick + margin)) per delivered tick.
        let mut ticks: Vec<(Instant, u64, f64)> = Vec::new();
        sim.run(&mut sync, t0 + Duration::from_secs(120), |sim, now, tick| {
            ticks.push((now, tick, tick as f64 - (sim.server_tick(now) + 2.0)));
        });

        assert!(
            ticks.windows(2).all(|w| w[1].1 == w[0].1 + 1),
            "one at a time, none skipped"
        );
        let converged = ticks
            .iter()
            .filter(|(at, ..)| *at >= t0 + Duration::from_secs(15));
        let worst_error = converged.map(|(.., e)| e.abs()).fold(0.0, f64::max);
        assert!(worst_error < 1.0, "error {worst_error} ticks after 15 s");
        // Each tick after the first (which starts mid-period) took period / (1 + adjust):
        // adjust stays within ±5 % (up to nanosecond rounding of the deadlines).
        let adjusts = ticks[1..]
            .windows(2)
            .map(|w| (1.0 / 60.0) / (w[1].0 - w[0].0).as_secs_f64() - 1.0);
        let worst_rate = adjusts.map(f64::abs).fold(0.0, f64::max);
        assert!(worst_rate <= 0.05 + 1e-4, "rate adjusted by {worst_rate}");
        assert!(worst_rate > 0.04, "the initial offset was slewed at full speed");
        let stats = sync.stats();
        assert_eq!(stats.snaps, 0);
        assert_eq!(stats.samples, 240);
        assert!(stats.offset_ticks.abs() < 0.5 && stats.estimation_error_ticks < 1.0);
    }

    #[test]
    fn snaps_on_a_huge_offset_and_never_repeats_a_tick() {
        let t0 = crate::testing::epoch();
        let mut sim = SyncSim::new(t0, 7);
        let mut sync = TickSync::new(TickSyncConfig::default());
        let mut delivered = Vec::new();
        sim.run(&mut sync, t0 + Duration::from_secs(10), |_, _, tick| {
            delivered.push(tick)
        });

        // The server's tick leaps 1 000 ticks ahead: the client jumps with it.
        sim.server_start_tick += 1_000.0;
        sim.run(&mut sync, t0 + Duration::from_secs(20), |_, _, tick| {
            delivered.push(tick)
        });
        assert_eq!(sync.stats().snaps, 1);
        assert!(sync.stats().skipped_ticks > 990);

        // Then 2 000 back: the client holds still until its clock passes its last tick again.
        sim.server_start_tick -= 2_000.0;
        let before = delivered.len();
        sim.run(&mut sync, t0 + Duration::from_secs(40), |_, _, tick| {
            delivered.push(tick)
        });
        assert_eq!(sync.stats().snaps, 2);
        // Ticks run on until the first pong stamped after the leap arrives (< 1 s), then the
        // client has 2 000 ticks (33 s) to wait out.
        assert!(delivered.len() - before < 60, "{}", delivered.len() - before);
        assert!(delivered.windows(2).all(|w| w[0] < w[1]), "strictly increasing");
        let error = sync.estimated_server_tick(t0 + Duration::from_secs(40)).unwrap()
            - sim.server_tick(t0 + Duration::from_secs(40));
        assert!(error.abs() < 1.0, "estimate follows the server: {error}");
    }

    #[test]
    fn implausible_server_ticks_are_rejected() {
        let t0 = crate::testing::epoch();
        let mut sync = TickSync::new(TickSyncConfig::default());
        sync.handle_sample(t0, u64::MAX, 50 * MS);
        sync.handle_sample(t0, 0, Duration::MAX);
        assert_eq!((sync.stats().rejected_samples, sync.stats().samples), (2, 0));
        assert_eq!(sync.poll_tick(t0), None);
    }
}
