//! The fixed-timestep tick scheduler and the client's tick sync.

use std::time::{Duration, Instant};

use arbitrary::{Arbitrary, Unstructured};
use tickwire_core::tick::{MissedTickPolicy, TickConfig, TickScheduler, TickSync, TickSyncConfig};

use crate::input::{base_instant, each_op, ms, take, MAX_OPS};

// ----- tick scheduler -----

#[derive(Debug, Default, Arbitrary)]
struct SchedulerSettings {
    /// XORed into 60 Hz.
    tick_rate_hz: u16,
    /// 0: skip; else catch up at most `catch_up % 16` (0 acts as 1).
    catch_up: u8,
    lateness_window: u8,
}

#[derive(Debug, Arbitrary)]
enum TimeOp {
    /// Time passes: `micros` microseconds.
    Advance { micros: u32 },
    /// A stall: `ms` milliseconds.
    Stall { ms: u32 },
    /// A jump of `hours` hours (the process was suspended).
    Jump { hours: u8 },
    /// One `now` earlier than the latest, by `ms` milliseconds.
    Back { ms: u16 },
    /// Polls until `None`.
    Drain,
}

/// Upper end of the instants the time targets reach: 100 years after the base.
const MAX_FUZZ_SPAN: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Applies a time step; `None` for the polls-only and back steps.
fn step_time(now: &mut Instant, op: &TimeOp) {
    let delta = match *op {
        TimeOp::Advance { micros } => Duration::from_micros(u64::from(micros)),
        TimeOp::Stall { ms: step } => ms(u64::from(step)),
        TimeOp::Jump { hours } => Duration::from_secs(u64::from(hours) * 3600),
        TimeOp::Back { .. } | TimeOp::Drain => Duration::ZERO,
    };
    if *now + delta <= base_instant() + MAX_FUZZ_SPAN {
        *now += delta;
    }
}

/// The fixed-timestep scheduler ([`TickScheduler`]) under stalls, jumps and stale `now`s.
///
/// Input (`arbitrary`): `SchedulerSettings`, then up to [`MAX_OPS`] time steps (each
/// followed by a drain of `poll_tick`).
///
/// Asserts: ticks are delivered in strictly increasing order, each due (`scheduled_at <= now`,
/// `scheduled_at = start + ⌈tick × 10⁹ / rate⌉ ns`, lateness `now − scheduled_at`); one drain
/// delivers at most the policy's catch-up (1 for skip) and leaves the scheduler at the latest
/// due tick with the next deadline in the future; delivered + skipped = current tick; a stale
/// `now` delivers nothing.
pub fn tick_scheduler(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let s: SchedulerSettings = take(&mut u);
    let policy = match s.catch_up {
        0 => MissedTickPolicy::Skip,
        n => MissedTickPolicy::CatchUp {
            max_ticks: u32::from(n % 16),
        },
    };
    let max_backlog = match policy {
        MissedTickPolicy::Skip => 1,
        MissedTickPolicy::CatchUp { max_ticks } => u64::from(max_ticks.max(1)),
    };
    let rate = u64::from(60 ^ s.tick_rate_hz).max(1);
    let config = TickConfig {
        tick_rate_hz: u32::from(60 ^ s.tick_rate_hz),
        missed_tick_policy: policy,
        lateness_window_ticks: usize::from(s.lateness_window),
    };
    let start = base_instant();
    let mut scheduler = TickScheduler::new(start, config);
    let mut now = start;
    let mut last = 0u64;
    let scheduled = |tick: u64| {
        let nanos = (u128::from(tick) * 1_000_000_000).div_ceil(u128::from(rate));
        start + Duration::from_nanos(u64::try_from(nanos).unwrap())
    };
    let due =
        |at: Instant| u64::try_from((at - start).as_nanos() * u128::from(rate) / 1_000_000_000).unwrap();
    each_op(&mut u, MAX_OPS, |op: TimeOp| {
        step_time(&mut now, &op);
        if let TimeOp::Back { ms: back } = op {
            let at = now.checked_sub(ms(u64::from(back)) + Duration::from_nanos(1));
            if let Some(at) = at.filter(|at| *at >= start) {
                if due(at) <= last {
                    assert_eq!(scheduler.poll_tick(at), None, "a stale now delivered a tick");
                }
            }
            return;
        }
        let mut delivered = 0;
        while let Some(tick) = scheduler.poll_tick(now) {
            delivered += 1;
            assert!(
                delivered <= max_backlog,
                "more than {max_backlog} ticks in one drain"
            );
            assert!(tick.tick > last, "tick {} after {last}", tick.tick);
            assert_eq!(tick.scheduled_at, scheduled(tick.tick));
            assert!(tick.scheduled_at <= now, "tick {} delivered early", tick.tick);
            assert_eq!(tick.lateness, now - tick.scheduled_at);
            last = tick.tick;
        }
        assert_eq!(scheduler.current_tick(), last);
        assert_eq!(last, due(now).max(last), "a due tick left undelivered");
        assert!(scheduler.poll_timeout() > now, "the next deadline is already due");
        assert_eq!(scheduler.poll_timeout(), scheduled(last + 1));
        let stats = scheduler.stats();
        assert_eq!(stats.ticks + stats.skipped, last);
        assert!(stats.lateness_p50_ms <= stats.lateness_p99_ms);
        assert!(stats.lateness_p99_ms <= stats.lateness_max_ms);
    });
}

// ----- tick sync -----

#[derive(Debug, Default, Arbitrary)]
struct SyncSettings {
    /// XORed into 60 Hz.
    tick_rate_hz: u16,
    /// `lead_margin_ticks = 2 + this / 16`.
    lead_margin: u8,
    /// `max_adjust_ratio = 0.05 + this / 500` (clamped by the machine to 0.5).
    max_adjust: u8,
    /// `snap_threshold_ticks = 30 ^ this`.
    snap: u8,
    /// `smoothing = 0.2 + this / 255` (clamped to 1).
    smoothing: u8,
    /// XORed into 1 000 ms.
    slew_ms: u16,
}

#[derive(Debug, Arbitrary)]
enum SyncOp {
    /// A time step (drains `poll_tick` after it).
    Time(TimeOp),
    /// A pong sample: the server's tick is the model server's plus `offset`, `rtt_ms` after
    /// its ping.
    Sample { offset: i16, rtt_ms: u16 },
    /// A sample with any server tick and RTT.
    RawSample { server_tick: u64, rtt_ms: u32 },
}

/// Client tick synchronisation ([`TickSync`]) under samples, jumps and stale `now`s.
///
/// Input (`arbitrary`): `SyncSettings`, then up to [`MAX_OPS`] time steps and samples
/// (samples follow a model server ticking at the configured rate, offset by the input, or
/// are arbitrary).
///
/// Asserts: ticks are strictly increasing, at most one per instant (a second poll at the same
/// `now` gives `None`), and `skipped_ticks` grows by exactly the ticks jumped over; every
/// statistic and the estimate are finite; the rate adjustment stays within
/// `±max_adjust_ratio`; after a delivery the next deadline is in the future.
pub fn tick_sync(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let s: SyncSettings = take(&mut u);
    let config = TickSyncConfig {
        tick_rate_hz: u32::from(60 ^ s.tick_rate_hz),
        lead_margin_ticks: 2.0 + f64::from(s.lead_margin) / 16.0,
        max_adjust_ratio: 0.05 + f64::from(s.max_adjust) / 500.0,
        snap_threshold_ticks: f64::from(30 ^ s.snap),
        smoothing: 0.2 + f64::from(s.smoothing) / 255.0,
        slew_time_constant_ms: u64::from(1_000 ^ s.slew_ms),
    };
    let max_adjust = config.max_adjust_ratio.min(0.5);
    let hz = u64::from(config.tick_rate_hz.max(1));
    let start = base_instant();
    let mut sync = TickSync::new(config);
    let mut now = start;
    let mut last: Option<u64> = None;
    let server_tick = |now: Instant| {
        u64::try_from((now - start).as_nanos() * u128::from(hz) / 1_000_000_000).unwrap_or(u64::MAX)
    };
    each_op(&mut u, MAX_OPS, |op: SyncOp| {
        let mut at = now;
        match op {
            SyncOp::Time(time) => {
                step_time(&mut now, &time);
                at = match time {
                    TimeOp::Back { ms: back } => now.checked_sub(ms(u64::from(back))).unwrap_or(now),
                    _ => now,
                };
            }
            SyncOp::Sample { offset, rtt_ms } => {
                let tick = server_tick(now).saturating_add_signed(i64::from(offset));
                sync.handle_sample(now, tick, ms(u64::from(rtt_ms)));
            }
            SyncOp::RawSample { server_tick, rtt_ms } => {
                sync.handle_sample(now, server_tick, ms(u64::from(rtt_ms)));
            }
        }
        let skipped_before = sync.stats().skipped_ticks;
        if let Some(tick) = sync.poll_tick(at) {
            if let Some(prev) = last {
                assert!(tick > prev, "tick {tick} after {prev}");
                assert_eq!(
                    sync.stats().skipped_ticks - skipped_before,
                    tick - prev - 1,
                    "skipped ticks miscounted"
                );
            }
            last = Some(tick);
            assert_eq!(sync.last_tick(), Some(tick));
            assert_eq!(sync.poll_tick(at), None, "two ticks at one instant");
            assert!(
                sync.poll_timeout().is_none_or(|d| d > at),
                "the next deadline is due"
            );
        }
        let stats = sync.stats();
        for x in [
            stats.offset_ticks,
            stats.estimation_error_ticks,
            stats.rate_adjust_ratio,
        ] {
            assert!(x.is_finite(), "a statistic is not finite: {stats:?}");
        }
        assert!(
            stats.rate_adjust_ratio.abs() <= max_adjust + 1e-12,
            "rate adjustment {} beyond ±{max_adjust}",
            stats.rate_adjust_ratio
        );
        if let Some(estimate) = sync.estimated_server_tick(now) {
            assert!(estimate.is_finite());
        }
    });
}
