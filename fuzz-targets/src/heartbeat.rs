//! The heartbeat: RTT estimation (RFC 6298) and liveness.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use arbitrary::{Arbitrary, Unstructured};
use tickwire_core::config::HeartbeatConfig;
use tickwire_core::testing::internals::Heartbeat;
use tickwire_core::wire::{Ping, Pong};

use crate::input::{base_instant, each_op, ms, take, MAX_OPS};

/// Heartbeat settings XORed into the defaults (500 ms, 5 s, 16-sample window, 333 ms,
/// 32 outstanding).
#[derive(Debug, Default, Arbitrary)]
struct HeartbeatSettings {
    interval_ms: u16,
    timeout_ms: u16,
    rtt_window: u8,
    initial_rtt_ms: u16,
    max_outstanding_pings: u8,
}

#[derive(Debug, Arbitrary)]
enum HeartbeatOp {
    /// `poll_ping` at the current tick.
    PollPing { tick: u8 },
    /// Time passes: `ms` milliseconds.
    Advance { ms: u16 },
    /// The peer answers one of our pings (`which` back from the latest), holding it `hold_us`.
    Pong { which: u8, hold_us: u16, tick: u32 },
    /// A pong with any fields.
    RawPong {
        seq: u32,
        echo_ts_us: u64,
        hold_us: u32,
        tick: u64,
    },
    /// A ping from the peer, relative to its previous one.
    Ping { seq_delta: i8, ts_delta_ms: i16 },
    /// A ping with any fields.
    RawPing { seq: u32, ts_us: u64 },
    /// Something else arrived from the peer.
    Receive,
    /// `handle_timeout` now.
    Timeout,
}

/// The heartbeat machine ([`Heartbeat`]): RTT estimator, loss and failure detection.
///
/// Input (`arbitrary`): `HeartbeatSettings`, then up to [`MAX_OPS`] operations: poll for
/// pings, let time pass, answer our pings (or send any pong), receive the peer's pings (or any
/// ping), something else received, `handle_timeout`.
///
/// Asserts after every step: every statistic is finite and non-negative, ratios lie in
/// `[0, 1]`; SRTT, RTTVAR and the percentiles are at most `M = max(initial RTT, largest
/// sample)`, and every sample at most the time since its ping; the failure timeout is at most
/// `max(timeout_ms, 3 × (5 M + interval))` and the deadline at most last receipt plus it; the
/// failure fires once, only when that much silence has passed, and then pings and timers stop;
/// `pongs_sent == pings_received`, `pings_lost <= pings_sent`.
pub fn heartbeat(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let s: HeartbeatSettings = take(&mut u);
    let config = HeartbeatConfig {
        interval_ms: u64::from(500 ^ s.interval_ms),
        timeout_ms: u64::from(5_000 ^ s.timeout_ms),
        rtt_window: usize::from(16 ^ s.rtt_window),
        initial_rtt_ms: u64::from(333 ^ s.initial_rtt_ms),
        max_outstanding_pings: usize::from(32 ^ s.max_outstanding_pings),
    };
    let epoch = base_instant();
    let mut hb = Heartbeat::new(epoch, config.clone());
    let mut now = epoch;
    let mut sent: VecDeque<(Ping, Instant)> = VecDeque::new();
    let (mut peer_seq, mut peer_ts_us) = (0u32, 0u64);
    let mut last_receive = epoch;
    let mut largest = ms(config.initial_rtt_ms);
    let mut failed = false;
    let interval = ms(config.interval_ms.max(1));

    each_op(&mut u, MAX_OPS, |op: HeartbeatOp| {
        match op {
            HeartbeatOp::PollPing { tick } => {
                if let Some(ping) = hb.poll_ping(now, u64::from(tick)) {
                    assert!(!failed, "a ping after failure");
                    if sent.len() == 64 {
                        sent.pop_front();
                    }
                    sent.push_back((ping, now));
                }
                assert_eq!(hb.poll_ping(now, 0), None, "two pings at one instant");
            }
            HeartbeatOp::Advance { ms: step } => now += ms(u64::from(step)),
            HeartbeatOp::Pong { which, hold_us, tick } => {
                let Some(&(ping, at)) = sent.iter().rev().nth(usize::from(which) % sent.len().max(1)) else {
                    return;
                };
                let pong = Pong {
                    seq: ping.seq,
                    tick: u64::from(tick),
                    echo_ts_us: ping.ts_us,
                    hold_us: u32::from(hold_us),
                };
                last_receive = last_receive.max(now);
                if let Some(sample) = hb.handle_pong(now, &pong) {
                    assert!(
                        sample.rtt <= now - at + Duration::from_micros(1),
                        "RTT {:?} above the time since the ping",
                        sample.rtt
                    );
                    assert_eq!(sample.peer_tick, u64::from(tick));
                    largest = largest.max(sample.rtt);
                }
            }
            HeartbeatOp::RawPong {
                seq,
                echo_ts_us,
                hold_us,
                tick,
            } => {
                let pong = Pong {
                    seq,
                    tick,
                    echo_ts_us,
                    hold_us,
                };
                last_receive = last_receive.max(now);
                if let Some(sample) = hb.handle_pong(now, &pong) {
                    assert!(sample.rtt <= now - epoch);
                    largest = largest.max(sample.rtt);
                }
            }
            HeartbeatOp::Ping {
                seq_delta,
                ts_delta_ms,
            } => {
                peer_seq = peer_seq.wrapping_add_signed(i32::from(seq_delta));
                peer_ts_us = peer_ts_us.saturating_add_signed(i64::from(ts_delta_ms) * 1_000);
                let ping = Ping {
                    seq: peer_seq,
                    tick: 0,
                    ts_us: peer_ts_us,
                };
                last_receive = last_receive.max(now);
                let pong = hb.handle_ping(now, &ping, 9);
                assert_eq!((pong.seq, pong.echo_ts_us, pong.tick), (ping.seq, ping.ts_us, 9));
            }
            HeartbeatOp::RawPing { seq, ts_us } => {
                last_receive = last_receive.max(now);
                let ping = Ping { seq, tick: 1, ts_us };
                let pong = hb.handle_ping(now, &ping, 3);
                assert_eq!((pong.seq, pong.echo_ts_us), (seq, ts_us));
            }
            HeartbeatOp::Receive => {
                last_receive = last_receive.max(now);
                hb.handle_receive(now);
            }
            HeartbeatOp::Timeout => {
                let timeout = hb.failure_timeout();
                match hb.handle_timeout(now) {
                    Some(failure) => {
                        assert!(!failed, "failure reported twice");
                        assert_eq!(failure.timeout, timeout);
                        assert_eq!(failure.idle, now - last_receive);
                        assert!(failure.idle >= failure.timeout, "failed before the timeout");
                        failed = true;
                    }
                    None => assert!(failed || now < last_receive + timeout, "overdue failure"),
                }
            }
        }
        let st = hb.stats();
        let floats = [
            st.srtt_ms,
            st.rttvar_ms,
            st.min_rtt_ms,
            st.latest_rtt_ms,
            st.rtt_p50_ms,
            st.rtt_p99_ms,
            st.jitter_ms,
            st.loss_ratio,
            st.incoming_loss_ratio,
            st.duplicate_ratio,
            st.out_of_order_ratio,
            st.failure_timeout_ms,
        ];
        assert!(
            floats.iter().all(|x| x.is_finite() && *x >= 0.0),
            "a statistic is negative or not finite: {st:?}"
        );
        let ratios = [
            st.loss_ratio,
            st.incoming_loss_ratio,
            st.duplicate_ratio,
            st.out_of_order_ratio,
        ];
        assert!(ratios.iter().all(|r| *r <= 1.0), "a ratio above 1: {st:?}");
        let m = millis_f64(largest);
        for x in [
            st.srtt_ms,
            st.rttvar_ms,
            st.rtt_p50_ms,
            st.rtt_p99_ms,
            st.latest_rtt_ms,
        ] {
            assert!(x <= m + 1e-6, "{x} ms above the largest RTT {m} ms: {st:?}");
        }
        assert!(st.rtt_p50_ms <= st.rtt_p99_ms);
        if st.rtt_samples > 0 {
            assert!(st.min_rtt_ms <= st.latest_rtt_ms);
            // With `rtt_window` 0 the percentiles stay 0 (documented).
            assert!(config.rtt_window == 0 || st.min_rtt_ms <= st.rtt_p50_ms);
        }
        let bound = ms(config.timeout_ms).max((largest * 5 + ms(1) + interval) * 3);
        assert!(
            hb.failure_timeout() <= bound,
            "failure timeout {:?} above {bound:?}",
            hb.failure_timeout()
        );
        assert!(hb.loss_delay() <= (largest.max(interval) * 2).max(largest * 5));
        assert_eq!(st.pongs_sent, st.pings_received);
        assert!(st.pings_lost <= st.pings_sent);
        assert!(st.late_or_unknown_pongs + st.future_timestamps_clamped <= st.pongs_received);
        match hb.poll_timeout() {
            None => assert!(failed, "no deadline while alive"),
            Some(t) => {
                assert!(!failed, "a deadline after failure");
                assert!(t <= last_receive + hb.failure_timeout());
            }
        }
    });
}

fn millis_f64(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
