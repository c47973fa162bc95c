//! Liveness and path statistics over datagrams: ping/pong heartbeats.
//!
//! Each side of a connection runs one [`Heartbeat`]. It emits a [`Ping`] every
//! [`HeartbeatConfig::interval_ms`], answers the peer's pings with [`Pong`]s, estimates the
//! round-trip time from the pongs (RFC 6298 §2, less the responder's hold time), measures the
//! incoming path from the peer's pings (RFC 3550 §6.4.1 jitter, loss, duplication, reordering)
//! and declares the connection failed once nothing has been heard from the peer for an adaptive
//! timeout ([`Heartbeat::failure_timeout`]).
//!
//! The machine is sans-IO and follows the crate's naming: inputs are `handle_*` and
//! [`Heartbeat::handle_receive`], outputs are `poll_*` (drain [`Heartbeat::poll_ping`] until `None`
//! after every input, then re-read [`Heartbeat::poll_timeout`]), getters take `&self`. With a
//! grace ([`Heartbeat::with_grace`]), a due ping and a pong may wait that long for a packet that
//! carries application data ([`Heartbeat::poll_ping_carried`], [`Heartbeat::owe_pong`],
//! [`Heartbeat::poll_pong`]).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::histogram::Histogram;
use crate::percentile::nearest_rank;

/// Heartbeat request, sent every [`HeartbeatConfig::interval_ms`] on the unreliable path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ping {
    /// Sequence number: 0 for a heartbeat's first ping, +1 per ping, wrapping after `u32::MAX`.
    pub seq: u32,
    /// The sender's current tick (the last tick its scheduler delivered) when sending.
    pub tick: u64,
    /// The sender's clock when sending, in microseconds since the sender's heartbeat epoch.
    /// Only differences between one sender's timestamps mean anything to the receiver.
    pub ts_us: u64,
}

/// Heartbeat answer: echoes a [`Ping`] so that its sender can measure the round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pong {
    /// `seq` of the ping being answered.
    pub seq: u32,
    /// The responder's current tick when sending this pong (clients derive the server's tick
    /// from it, see `tick::TickSync`).
    pub tick: u64,
    /// `ts_us` of the ping being answered, unchanged (microseconds on the pinger's clock).
    pub echo_ts_us: u64,
    /// Microseconds the responder held the ping before answering (receipt to pong send);
    /// 0 when answered at once. Subtracted from the RTT like QUIC's ack delay.
    pub hold_us: u32,
}

/// Heartbeat settings. Defaults: 500 ms / 5 s, tuned for paths up to about 500 ms RTT, and RFC 9002.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HeartbeatConfig {
    /// Time between pings, in milliseconds. Default 500.
    pub interval_ms: u64,
    /// Least idle time, in milliseconds, after which the peer is declared gone. Default 5 000
    /// Slow paths stretch it, see `Heartbeat::failure_timeout`.
    pub timeout_ms: u64,
    /// Number of most recent RTT samples kept for the p50/p99 percentiles. Default 256
    /// (about two minutes of pings at the default interval).
    pub rtt_window: usize,
    /// RTT assumed before the first sample, in milliseconds. Default 333 (RFC 9002 §6.2.2).
    pub initial_rtt_ms: u64,
    /// Pings remembered while awaiting their pong. When full, the oldest is forgotten (counted
    /// lost if unanswered) and a later pong for it counts in `late_or_unknown_pongs`.
    /// Default 32: 16 s of pings at the default interval, three times the default timeout, so
    /// on a live connection no pong outlives its ping's entry.
    pub max_outstanding_pings: usize,
}

impl Default for HeartbeatConfig {
    fn default() -> Self {
        Self {
            interval_ms: 500,
            timeout_ms: 5_000,
            rtt_window: 256,
            initial_rtt_ms: 333,
            max_outstanding_pings: 32,
        }
    }
}

/// A `HeartbeatConfig` that `HeartbeatConfig::validate` rejects. `Heartbeat::new` still
/// accepts such a config (it treats zero interval and table sizes as 1), so validate once when
/// loading configuration. Messages start with the field's name;
/// [`Config::validate`](crate::Config::validate) prefixes them with `heartbeat.`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeartbeatConfigError {
    /// `interval_ms` is 0. Set a positive ping interval.
    #[error("interval_ms must be > 0")]
    ZeroInterval,
    /// `timeout_ms` does not exceed `interval_ms`, so one lost ping would end the connection.
    /// Raise `timeout_ms` (several intervals) or lower `interval_ms`.
    #[error("timeout_ms must exceed interval_ms")]
    TimeoutNotAboveInterval,
    /// `rtt_window` is 0, which leaves the percentiles empty. Set at least 1.
    #[error("rtt_window must be at least 1")]
    ZeroRttWindow,
    /// `initial_rtt_ms` is 0. Use a realistic first guess such as 333 (RFC 9002 §6.2.2).
    #[error("initial_rtt_ms must be > 0")]
    ZeroInitialRtt,
    /// `max_outstanding_pings` is 0. Allow at least `timeout_ms / interval_ms` pings.
    #[error("max_outstanding_pings must be at least 1")]
    ZeroOutstandingPings,
}

impl HeartbeatConfig {
    /// Checks the settings: a positive ping interval, a timeout longer than one interval,
    /// a positive initial RTT and non-empty RTT window and ping table.
    ///
    /// # Errors
    /// The first [`HeartbeatConfigError`] found; each variant says how to fix its field.
    pub fn validate(&self) -> Result<(), HeartbeatConfigError> {
        use HeartbeatConfigError as E;
        if self.interval_ms == 0 {
            Err(E::ZeroInterval)
        } else if self.timeout_ms <= self.interval_ms {
            Err(E::TimeoutNotAboveInterval)
        } else if self.rtt_window == 0 {
            Err(E::ZeroRttWindow)
        } else if self.initial_rtt_ms == 0 {
            Err(E::ZeroInitialRtt)
        } else if self.max_outstanding_pings == 0 {
            Err(E::ZeroOutstandingPings)
        } else {
            Ok(())
        }
    }
}

/// One round-trip measurement, returned by [`Heartbeat::handle_pong`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RttSample {
    /// Round-trip time: arrival − echoed timestamp − the peer's hold time (a hold longer than
    /// that whole round trip is impossible and ignored).
    pub rtt: Duration,
    /// The peer's tick when it sent the pong ([`Pong::tick`]).
    pub peer_tick: u64,
}

/// The peer has been silent for longer than the failure timeout; returned once by
/// [`Heartbeat::handle_timeout`]. The caller should close the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartbeatFailure {
    /// Time since anything was last received from the peer (or since the epoch, if nothing was).
    pub idle: Duration,
    /// The failure timeout that was in force ([`Heartbeat::failure_timeout`]).
    pub timeout: Duration,
}

/// A snapshot of a `Heartbeat`'s estimators and counters. Durations are `f64` milliseconds.
/// "Ratios" are in `[0, 1]` and 0 while their denominator is 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct HeartbeatStats {
    /// RTT samples fed to the estimators.
    pub rtt_samples: u64,
    /// Smoothed RTT, RFC 6298 §2 (the initial RTT until the first sample).
    pub srtt_ms: f64,
    /// RTT variation, RFC 6298 §2 (half the initial RTT until the first sample).
    pub rttvar_ms: f64,
    /// Smallest RTT sample (hold time subtracted); 0 before any sample.
    pub min_rtt_ms: f64,
    /// Most recent RTT sample; 0 before any sample.
    pub latest_rtt_ms: f64,
    /// Median of the last `rtt_window` samples (nearest rank); 0 before any sample.
    pub rtt_p50_ms: f64,
    /// 99th percentile of the last `rtt_window` samples (nearest rank); 0 before any sample.
    pub rtt_p99_ms: f64,
    /// Interarrival jitter of the peer's pings, RFC 3550 §6.4.1.
    pub jitter_ms: f64,
    /// Our pings declared lost / (lost + answered). A ping is declared lost once older than
    /// `Heartbeat::loss_delay`; a pong arriving later undoes that (see `spurious_losses`).
    pub loss_ratio: f64,
    /// Peer→us ping loss from sequence gaps (RFC 3550 §6.4.1 "cumulative number lost" over
    /// "expected"), counting pings not yet arrived as lost.
    pub incoming_loss_ratio: f64,
    /// Duplicate pings / pings received.
    pub duplicate_ratio: f64,
    /// Pings that arrived after a higher sequence number / pings received.
    pub out_of_order_ratio: f64,
    /// The failure timeout now in force (`Heartbeat::failure_timeout`).
    pub failure_timeout_ms: f64,
    /// Pings emitted by `Heartbeat::poll_ping`.
    pub pings_sent: u64,
    /// Pongs passed to `Heartbeat::handle_pong`, valid or not.
    pub pongs_received: u64,
    /// Pings passed to `Heartbeat::handle_ping`, duplicates included.
    pub pings_received: u64,
    /// Pongs returned by `Heartbeat::handle_ping`.
    pub pongs_sent: u64,
    /// Our pings currently counted lost.
    pub pings_lost: u64,
    /// Pings declared lost whose pong arrived afterwards (RTT still sampled, loss undone).
    pub spurious_losses: u64,
    /// Pongs discarded because their `seq` was not awaited: never sent, already answered
    /// (duplicate pong) or forgotten (older than `max_outstanding_pings` pings).
    pub late_or_unknown_pongs: u64,
    /// Pongs whose echoed timestamp lay in our future: the RTT would be negative, so it is
    /// clamped to zero and, not being a measurement, not fed to the estimators. The ping still
    /// counts as answered.
    pub future_timestamps_clamped: u64,
    /// Duplicate pings received.
    pub duplicate_pings: u64,
    /// Pings received after a higher sequence number (including those too old to check for
    /// duplication, see `Heartbeat::handle_ping`).
    pub out_of_order_pings: u64,
    /// Every RTT sample fed to the estimators (hold time subtracted).
    pub rtt_histogram: Histogram,
    /// The jitter estimate after each fresh ping from the peer that updated it.
    pub jitter_histogram: Histogram,
}

/// Heartbeat state machine for one side of one connection: pings, pongs, RTT and path
/// statistics, failure detection.
///
/// Inputs: [`handle_ping`](Self::handle_ping), [`handle_pong`](Self::handle_pong),
/// [`handle_receive`](Self::handle_receive), [`handle_timeout`](Self::handle_timeout). Outputs:
/// [`poll_ping`](Self::poll_ping), [`poll_timeout`](Self::poll_timeout). Getter:
/// [`stats`](Self::stats). Failure is terminal: after a `HeartbeatFailure` is returned no more
/// pings are emitted and no timer is armed (pings are still answered).
#[derive(Debug)]
pub struct Heartbeat {
    epoch: Instant,
    interval: Duration,
    min_timeout: Duration,
    max_outstanding: usize,
    next_seq: u32,
    next_ping_at: Instant,
    /// `next_ping_at + grace`: when a due ping leaves even without data.
    ping_by: Instant,
    /// Our unanswered pings, oldest first.
    outstanding: VecDeque<Outstanding>,
    rtt: RttEstimator,
    incoming: IncomingPath,
    last_receive: Instant,
    /// `last_receive + failure_timeout`, kept so that reading the deadline costs no addition.
    failure_at: Instant,
    /// [`Heartbeat::failure_timeout`], recomputed when the RTT estimate changes.
    failure_timeout: Duration,
    failed: bool,
    /// How long a due ping, or a pong, may wait for a packet that carries application data
    /// (zero unless set with [`Heartbeat::with_grace`]).
    grace: Duration,
    /// The pong owed for the peer's latest ping, and when that ping arrived.
    owed: Option<(Pong, Instant)>,
    /// Counters only; [`Heartbeat::stats`] fills in the rest. Boxed: they change once a ping
    /// or pong, and 456 bytes inline would sit between the fields every poll reads.
    counters: Box<HeartbeatStats>,
}

#[derive(Debug, Clone, Copy)]
struct Outstanding {
    seq: u32,
    sent_at: Instant,
    lost: bool,
}

impl Heartbeat {
    /// Creates a heartbeat whose timestamps count from `epoch` and whose first ping is due at
    /// `epoch`. Silence is measured from `epoch` until something is received.
    pub fn new(epoch: Instant, config: HeartbeatConfig) -> Self {
        let initial_rtt = Duration::from_millis(config.initial_rtt_ms);
        let mut heartbeat = Self {
            epoch,
            interval: Duration::from_millis(config.interval_ms.max(1)),
            min_timeout: Duration::from_millis(config.timeout_ms),
            max_outstanding: config.max_outstanding_pings.max(1),
            next_seq: 0,
            next_ping_at: epoch,
            ping_by: epoch,
            outstanding: VecDeque::new(),
            rtt: RttEstimator::new(initial_rtt, config.rtt_window),
            incoming: IncomingPath::default(),
            last_receive: epoch,
            failure_at: epoch,
            failure_timeout: Duration::ZERO,
            failed: false,
            grace: Duration::ZERO,
            owed: None,
            counters: Box::default(),
        };
        heartbeat.failure_timeout = heartbeat.compute_failure_timeout();
        heartbeat.failure_at = epoch + heartbeat.failure_timeout;
        heartbeat
    }

    /// Lets a due ping, and a pong, wait up to `grace` for a packet that carries application
    /// data: see [`poll_ping_carried`](Self::poll_ping_carried) and
    /// [`poll_pong`](Self::poll_pong). With the default of zero, pings leave when due and pongs
    /// at once.
    #[must_use]
    pub fn with_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self.ping_by = self.next_ping_at + grace;
        self
    }

    /// The grace set with [`with_grace`](Self::with_grace).
    #[must_use]
    pub fn grace(&self) -> Duration {
        self.grace
    }

    /// False when neither [`poll_ping_carried`](Self::poll_ping_carried) nor
    /// [`poll_pong`](Self::poll_pong) can return anything at `now`: no pong is held and no
    /// ping is due.
    #[inline]
    pub(crate) fn may_send(&self, now: Instant) -> bool {
        self.owed.is_some() || self.ping_due(now)
    }

    /// Whether [`poll_ping`](Self::poll_ping) sends a ping at `now`.
    #[inline]
    fn ping_due(&self, now: Instant) -> bool {
        !self.failed && now >= self.next_ping_at
    }

    /// Output: like [`poll_ping`](Self::poll_ping), for a caller about to transmit. With
    /// `carrier` (the packet will carry application data) a due ping goes now; without, it
    /// waits until it is `grace` overdue, so that it can ride with data instead of costing a
    /// packet of its own. Its timestamp is taken when it goes, so the wait never biases RTT.
    #[must_use]
    #[inline]
    pub fn poll_ping_carried(&mut self, now: Instant, local_tick: u64, carrier: bool) -> Option<Ping> {
        if !carrier && now < self.ping_by {
            return None;
        }
        self.poll_ping(now, local_tick)
    }

    /// Output: the ping to send now, if one is due (the first at the epoch, then one per
    /// interval; a late poll sends one ping, never a burst). `local_tick` is our current tick.
    /// Returns `None` after failure. If the outstanding table is full, the oldest entry is
    /// forgotten and counted lost if it was not already.
    #[must_use]
    #[inline]
    pub fn poll_ping(&mut self, now: Instant, local_tick: u64) -> Option<Ping> {
        if !self.ping_due(now) {
            return None;
        }
        self.next_ping(now, local_tick)
    }

    /// [`Heartbeat::poll_ping`] when a ping is due.
    fn next_ping(&mut self, now: Instant, local_tick: u64) -> Option<Ping> {
        self.detect_losses(now);
        if self.outstanding.len() >= self.max_outstanding {
            if let Some(evicted) = self.outstanding.pop_front() {
                if !evicted.lost {
                    self.counters.pings_lost += 1;
                }
            }
        }
        let seq = self.next_seq;
        self.next_seq = seq.wrapping_add(1);
        // A ping sent within its grace keeps the schedule (the next is due an interval after
        // this one was), so a quiet connection still pings once per interval; a later one
        // starts it afresh.
        self.next_ping_at = if now <= self.ping_by {
            self.next_ping_at + self.interval
        } else {
            now + self.interval
        };
        self.ping_by = self.next_ping_at + self.grace;
        self.outstanding.push_back(Outstanding {
            seq,
            sent_at: now,
            lost: false,
        });
        self.counters.pings_sent += 1;
        Some(Ping {
            seq,
            tick: local_tick,
            ts_us: self.micros_since_epoch(now),
        })
    }

    /// Input: a ping from the peer arrived at `now`; returns the pong to send back at once
    /// (`hold_us` 0; a caller that delays sending should set it to the delay). Also counts as
    /// [`handle_receive`](Self::handle_receive).
    ///
    /// Updates the incoming-path statistics: RFC 3550 §6.4.1 jitter between the peer's
    /// `ts_us` and our arrival time, loss from sequence gaps, duplicates and reordering.
    /// Duplicates are recognised up to 63 sequence numbers behind the highest seen; older
    /// pings count as out of order and are otherwise ignored (they neither reduce the loss
    /// count nor feed the jitter).
    pub fn handle_ping(&mut self, now: Instant, ping: &Ping, local_tick: u64) -> Pong {
        self.handle_receive(now);
        self.counters.pings_received += 1;
        let arrival_us = self.micros_since_epoch(now);
        if self.incoming.on_ping(ping, arrival_us) {
            self.counters
                .jitter_histogram
                .observe_seconds(self.incoming.jitter_us / 1e6);
        }
        self.counters.pongs_sent += 1;
        Pong {
            seq: ping.seq,
            tick: local_tick,
            echo_ts_us: ping.ts_us,
            hold_us: 0,
        }
    }

    /// Input: a pong from the peer arrived at `now`. Returns the RTT sample it yields, or `None`
    /// when it yields none: its `seq` is not awaited (counted in `late_or_unknown_pongs`) or its
    /// echoed timestamp is in our future (counted in `future_timestamps_clamped`, see
    /// [`HeartbeatStats`]). Also counts as [`handle_receive`](Self::handle_receive).
    pub fn handle_pong(&mut self, now: Instant, pong: &Pong) -> Option<RttSample> {
        self.handle_receive(now);
        self.counters.pongs_received += 1;
        let Some(index) = self.outstanding.iter().position(|p| p.seq == pong.seq) else {
            self.counters.late_or_unknown_pongs += 1;
            return None;
        };
        let ping = self.outstanding.remove(index)?;
        if ping.lost {
            self.counters.pings_lost = self.counters.pings_lost.saturating_sub(1);
            self.counters.spurious_losses += 1;
        }
        let now_us = self.micros_since_epoch(now);
        let Some(raw_us) = now_us.checked_sub(pong.echo_ts_us) else {
            self.counters.future_timestamps_clamped += 1;
            return None;
        };
        let hold = Duration::from_micros(u64::from(pong.hold_us));
        let rtt = self.rtt.on_sample(Duration::from_micros(raw_us), hold);
        self.failure_timeout = self.compute_failure_timeout();
        self.failure_at = self.last_receive + self.failure_timeout;
        self.counters.rtt_histogram.observe(rtt);
        self.detect_losses(now);
        Some(RttSample {
            rtt,
            peer_tick: pong.tick,
        })
    }

    /// Input: something (any datagram or packet) arrived from the peer at `now`; the peer is
    /// alive. Earlier `now`s than already seen are ignored. No effect after failure.
    pub fn handle_receive(&mut self, now: Instant) {
        if now > self.last_receive {
            self.last_receive = now;
            self.failure_at = now + self.failure_timeout;
        }
    }

    /// Output: the next deadline, the earliest of the next ping (plus the grace), the failure
    /// deadline (last receipt + [`failure_timeout`](Self::failure_timeout)) and the end of a
    /// held pong's grace; after failure, only the last.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let owed = self.owed.as_ref().map(|&(_, answered)| answered + self.grace);
        if self.failed {
            return owed;
        }
        let next = self.ping_by.min(self.failure_at);
        Some(owed.map_or(next, |owed| owed.min(next)))
    }

    /// Holds `pong`, answered at `now` by [`handle_ping`](Self::handle_ping), until a packet
    /// carries application data or `grace` passes ([`poll_pong`](Self::poll_pong)). Returns
    /// the pong held before, if any, completed for sending now: one pong is held at a time.
    #[must_use]
    pub fn owe_pong(&mut self, now: Instant, pong: Pong, local_tick: u64) -> Option<Pong> {
        let earlier = self.owed.replace((pong, now))?;
        Some(Self::complete(earlier, now, local_tick))
    }

    /// Output: the held pong, if `carrier` (the packet about to leave carries application data)
    /// or it has been held for `grace`; `hold_us` is the time held and `tick` is `local_tick`,
    /// our tick as it leaves (`PROTOCOL.md` §5.2).
    #[must_use]
    pub fn poll_pong(&mut self, now: Instant, local_tick: u64, carrier: bool) -> Option<Pong> {
        let &(_, answered) = self.owed.as_ref()?;
        if !carrier && now < answered + self.grace {
            return None;
        }
        Some(Self::complete(self.owed.take()?, now, local_tick))
    }

    fn complete((pong, answered): (Pong, Instant), now: Instant, local_tick: u64) -> Pong {
        let held = now.saturating_duration_since(answered).as_micros();
        Pong {
            tick: local_tick,
            hold_us: u32::try_from(held).unwrap_or(u32::MAX),
            ..pong
        }
    }

    /// Input: the deadline from [`poll_timeout`](Self::poll_timeout) (or any time) has come.
    /// Declares overdue pings lost and returns the failure, once, when the peer has been silent
    /// for the failure timeout. Spurious calls are no-ops.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<HeartbeatFailure> {
        if self.failed {
            return None;
        }
        self.detect_losses(now);
        if now < self.failure_deadline() {
            return None;
        }
        self.failed = true;
        Some(HeartbeatFailure {
            idle: now.saturating_duration_since(self.last_receive),
            timeout: self.failure_timeout(),
        })
    }

    /// The silence after which the peer is declared gone:
    /// `max(timeout_ms, 3 × (srtt + max(4 × rttvar, 1 ms) + interval))`.
    ///
    /// The inner sum is QUIC's probe timeout (RFC 9002 §6.2.1: `smoothed_rtt + max(4 × rttvar,
    /// kGranularity) + max_ack_delay`, the RFC 6298 §2 retransmission timeout plus the peer's
    /// longest wait before sending), with the ping interval in the role of `max_ack_delay`,
    /// since the peer may wait up to one interval before its next ping. QUIC keeps its idle
    /// timeout at no less than three probe timeouts (RFC 9000 §10.1) so that a few losses on a
    /// slow path are not mistaken for a dead peer; so does this. With defaults and a 333 ms
    /// RTT the sum is 1.5 s, so `timeout_ms` (5 s) rules until the RTT nears half a second.
    pub fn failure_timeout(&self) -> Duration {
        self.failure_timeout
    }

    fn compute_failure_timeout(&self) -> Duration {
        let pto = self.rtt.srtt + (self.rtt.rttvar * 4).max(Duration::from_millis(1)) + self.interval;
        self.min_timeout.max(pto * 3)
    }

    /// Age after which an unanswered ping is counted lost:
    /// `max(2 × max(srtt, interval), srtt + 4 × rttvar)`. Twice the RTT leaves room for a slow
    /// pong; the interval floor keeps sub-millisecond paths from declaring loss on scheduling
    /// hiccups; the RFC 6298 §2 RTO term covers paths whose RTT varies widely.
    pub fn loss_delay(&self) -> Duration {
        (self.rtt.srtt.max(self.interval) * 2).max(self.rtt.srtt + self.rtt.rttvar * 4)
    }

    /// Getter: a snapshot of the estimators and counters.
    pub fn stats(&self) -> HeartbeatStats {
        let c = &self.counters;
        let answered = c.pongs_received - c.late_or_unknown_pongs;
        let mut window: Vec<Duration> = self.rtt.window.iter().copied().collect();
        window.sort_unstable();
        let incoming = &self.incoming;
        let expected = incoming.expected();
        HeartbeatStats {
            rtt_samples: self.rtt.samples,
            srtt_ms: millis(self.rtt.srtt),
            rttvar_ms: millis(self.rtt.rttvar),
            min_rtt_ms: self.rtt.min.map_or(0.0, millis),
            latest_rtt_ms: self.rtt.latest.map_or(0.0, millis),
            rtt_p50_ms: nearest_rank(&window, 0.50).map_or(0.0, millis),
            rtt_p99_ms: nearest_rank(&window, 0.99).map_or(0.0, millis),
            jitter_ms: incoming.jitter_us / 1e3,
            loss_ratio: ratio(c.pings_lost, c.pings_lost + answered),
            incoming_loss_ratio: ratio(expected.saturating_sub(incoming.unique), expected),
            duplicate_ratio: ratio(incoming.duplicates, c.pings_received),
            out_of_order_ratio: ratio(incoming.out_of_order, c.pings_received),
            failure_timeout_ms: millis(self.failure_timeout()),
            duplicate_pings: incoming.duplicates,
            out_of_order_pings: incoming.out_of_order,
            ..**c
        }
    }

    /// When the peer is declared gone unless something arrives first: last receipt +
    /// [`failure_timeout`](Self::failure_timeout).
    pub fn failure_deadline(&self) -> Instant {
        self.failure_at
    }

    fn detect_losses(&mut self, now: Instant) {
        let delay = self.loss_delay();
        for ping in self.outstanding.iter_mut().filter(|p| !p.lost) {
            if now.saturating_duration_since(ping.sent_at) > delay {
                ping.lost = true;
                self.counters.pings_lost += 1;
            }
        }
    }

    fn micros_since_epoch(&self, now: Instant) -> u64 {
        let micros = now.saturating_duration_since(self.epoch).as_micros();
        u64::try_from(micros).unwrap_or(u64::MAX)
    }
}

/// RFC 6298 §2 estimator plus min/latest RTT and a window for percentiles.
#[derive(Debug)]
struct RttEstimator {
    srtt: Duration,
    rttvar: Duration,
    min: Option<Duration>,
    latest: Option<Duration>,
    samples: u64,
    window: VecDeque<Duration>,
    window_len: usize,
}

impl RttEstimator {
    /// Before any sample: SRTT = initial, RTTVAR = initial / 2 (RFC 9002 §5.3).
    fn new(initial: Duration, window_len: usize) -> Self {
        Self {
            srtt: initial,
            rttvar: initial / 2,
            min: None,
            latest: None,
            samples: 0,
            window: VecDeque::with_capacity(window_len.min(1024)),
            window_len,
        }
    }

    /// Feeds a raw RTT and the peer's hold time; returns the sample used.
    fn on_sample(&mut self, raw: Duration, hold: Duration) -> Duration {
        // Unlike RFC 9002 §5.3's ack_delay, the hold is not checked against the minimum raw
        // RTT: pongs are held routinely (up to a quarter of the ping interval, to ride with
        // data), so on a quiet connection every raw sample includes a hold and the raw minimum
        // would include one too. A peer that overstates its hold only lowers its own RTT.
        let rtt = raw.checked_sub(hold).unwrap_or(raw);
        self.min = Some(self.min.map_or(rtt, |m| m.min(rtt)));
        if self.samples == 0 {
            // RFC 6298 §2.2.
            self.srtt = rtt;
            self.rttvar = rtt / 2;
        } else {
            // RFC 6298 §2.3, alpha = 1/8, beta = 1/4; RTTVAR uses the old SRTT.
            self.rttvar = (self.rttvar * 3 + self.srtt.abs_diff(rtt)) / 4;
            self.srtt = (self.srtt * 7 + rtt) / 8;
        }
        self.samples += 1;
        self.latest = Some(rtt);
        if self.window_len > 0 {
            if self.window.len() == self.window_len {
                self.window.pop_front();
            }
            self.window.push_back(rtt);
        }
        rtt
    }
}

/// Statistics of the peer's pings as they arrive.
#[derive(Debug, Default)]
struct IncomingPath {
    /// Extended (64-bit) sequence number of the lowest ping counted, 0 before any.
    first: u64,
    /// Extended sequence number of the highest ping seen, `None` before any.
    highest: Option<u64>,
    /// Bit `k` set: ping `highest - k` has been seen.
    seen: u64,
    /// Distinct pings counted (excluding those too old to check for duplication).
    unique: u64,
    duplicates: u64,
    out_of_order: u64,
    /// RFC 3550 §6.4.1 interarrival jitter, microseconds.
    jitter_us: f64,
    /// Transit time (arrival − sender timestamp) of the previous fresh ping, microseconds.
    last_transit_us: Option<i128>,
}

/// Sequence numbers start at 2^32 in the extended space so that a first ping can be followed
/// by pings up to 2^31 behind it without underflow.
const EXTENDED_SEQ_BASE: u64 = 1 << 32;

/// How far behind the highest sequence number duplicates are still recognised.
const DUPLICATE_WINDOW: u64 = u64::BITS as u64;

impl IncomingPath {
    /// Records a ping; returns whether it updated the jitter estimate.
    fn on_ping(&mut self, ping: &Ping, arrival_us: u64) -> bool {
        if !self.record(ping.seq) {
            return false;
        }
        // RFC 3550 §6.4.1: D = (Rj − Ri) − (Sj − Si) = transit_j − transit_i;
        // J += (|D| − J) / 16.
        let transit = i128::from(arrival_us) - i128::from(ping.ts_us);
        if let Some(last) = self.last_transit_us.replace(transit) {
            let d = (transit - last).unsigned_abs() as f64;
            self.jitter_us += (d - self.jitter_us) / 16.0;
            return true;
        }
        false
    }

    /// Records a sequence number; returns whether it is a fresh (countable, non-duplicate) ping.
    fn record(&mut self, seq: u32) -> bool {
        let Some(highest) = self.highest else {
            let extended = EXTENDED_SEQ_BASE + u64::from(seq);
            (self.first, self.highest, self.seen, self.unique) = (extended, Some(extended), 1, 1);
            return true;
        };
        let delta = seq.wrapping_sub(highest as u32) as i32;
        let extended = highest.saturating_add_signed(i64::from(delta));
        if delta > 0 {
            let shift = delta.unsigned_abs();
            self.seen = self.seen.checked_shl(shift).unwrap_or(0) | 1;
            self.highest = Some(extended);
            self.unique += 1;
            return true;
        }
        let back = u64::from(delta.unsigned_abs());
        if back >= DUPLICATE_WINDOW {
            self.out_of_order += 1;
            return false;
        }
        let bit = 1u64 << back;
        if self.seen & bit != 0 {
            self.duplicates += 1;
            return false;
        }
        self.seen |= bit;
        self.out_of_order += 1;
        self.unique += 1;
        self.first = self.first.min(extended);
        true
    }

    /// Pings expected so far: highest − first + 1 (RFC 3550 Appendix A.3).
    fn expected(&self) -> u64 {
        self.highest.map_or(0, |h| h - self.first + 1)
    }
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn ping(seq: u32, ts_ms: u64) -> Ping {
        Ping {
            seq,
            tick: 0,
            ts_us: ts_ms * 1_000,
        }
    }

    /// Answers `ping` as a peer would, immediately.
    fn pong(ping: &Ping) -> Pong {
        Pong {
            seq: ping.seq,
            tick: 7,
            echo_ts_us: ping.ts_us,
            hold_us: 0,
        }
    }

    fn held(ping: &Ping, hold_us: u32) -> Pong {
        Pong {
            hold_us,
            ..pong(ping)
        }
    }

    enum Msg {
        Ping(Ping),
        Pong(Pong),
    }

    /// Two heartbeats on a symmetric link with a fixed one-way delay and random loss.
    struct Pair {
        now: Instant,
        /// Side 0 and side 1.
        sides: [Heartbeat; 2],
        one_way: Duration,
        loss: f64,
        rng: ChaCha8Rng,
        /// In flight, in delivery order: (arrival, receiving side, message).
        wire: VecDeque<(Instant, usize, Msg)>,
        failures: usize,
    }

    impl Pair {
        fn new(t0: Instant, one_way: Duration, loss: f64, seed: u64) -> Self {
            Self {
                now: t0,
                sides: [0, 1].map(|_| Heartbeat::new(t0, HeartbeatConfig::default())),
                one_way,
                loss,
                rng: ChaCha8Rng::seed_from_u64(seed),
                wire: VecDeque::new(),
                failures: 0,
            }
        }

        fn send(&mut self, to: usize, msg: Msg) {
            if !self.rng.random_bool(self.loss) {
                self.wire.push_back((self.now + self.one_way, to, msg));
            }
        }

        /// Jumps to the next event and processes everything due.
        fn step(&mut self) {
            let wire_next = self.wire.front().map(|(at, ..)| *at);
            let deadlines = self.sides.iter().filter_map(Heartbeat::poll_timeout);
            self.now = (deadlines.chain(wire_next).min()).expect("a live heartbeat always has a deadline");
            let now = self.now;
            while self.wire.front().is_some_and(|(at, ..)| *at <= now) {
                let (_, to, msg) = self.wire.pop_front().unwrap();
                match msg {
                    Msg::Ping(p) => {
                        let answer = self.sides[to].handle_ping(now, &p, 0);
                        self.send(1 - to, Msg::Pong(answer));
                    }
                    Msg::Pong(p) => _ = self.sides[to].handle_pong(now, &p),
                }
            }
            for side in [0, 1] {
                if self.sides[side].handle_timeout(now).is_some() {
                    self.failures += 1;
                }
                while let Some(p) = self.sides[side].poll_ping(now, 0) {
                    self.send(1 - side, Msg::Ping(p));
                }
            }
        }

        fn run_for(&mut self, duration: Duration) {
            let end = self.now + duration;
            while self.now < end {
                self.step();
            }
        }
    }

    #[test]
    fn config_defaults_round_trip_through_toml() {
        let config: HeartbeatConfig = toml::from_str("").unwrap();
        assert_eq!(config, HeartbeatConfig::default());
        assert_eq!((config.interval_ms, config.timeout_ms), (500, 5_000));
        assert_eq!(config.validate(), Ok(()));
        let custom: HeartbeatConfig = toml::from_str("interval_ms = 250").unwrap();
        assert_eq!(custom.interval_ms, 250);
        assert!(toml::from_str::<HeartbeatConfig>("interval = 250").is_err());
        let zero = HeartbeatConfig {
            interval_ms: 0,
            ..HeartbeatConfig::default()
        };
        assert_eq!(zero.validate(), Err(HeartbeatConfigError::ZeroInterval));
    }

    #[test]
    fn validate_refuses_each_bad_value_naming_its_field() {
        use HeartbeatConfigError as E;
        // The fast heartbeats of the loopback tests.
        let fast = HeartbeatConfig {
            interval_ms: 100,
            timeout_ms: 1_000,
            ..HeartbeatConfig::default()
        };
        assert_eq!(fast.validate(), Ok(()));
        type Edit = fn(&mut HeartbeatConfig);
        let cases: [(Edit, E, &str); 7] = [
            (|c| c.interval_ms = 0, E::ZeroInterval, "interval_ms"),
            (|c| c.timeout_ms = 500, E::TimeoutNotAboveInterval, "timeout_ms"),
            (|c| c.timeout_ms = 0, E::TimeoutNotAboveInterval, "timeout_ms"),
            (
                |c| c.interval_ms = u64::MAX,
                E::TimeoutNotAboveInterval,
                "timeout_ms",
            ),
            (|c| c.rtt_window = 0, E::ZeroRttWindow, "rtt_window"),
            (|c| c.initial_rtt_ms = 0, E::ZeroInitialRtt, "initial_rtt_ms"),
            (
                |c| c.max_outstanding_pings = 0,
                E::ZeroOutstandingPings,
                "max_outstanding_pings",
            ),
        ];
        crate::config::assert_each_refused(&cases, HeartbeatConfig::validate);
    }

    #[test]
    fn first_ping_is_immediate_then_one_per_interval() {
        let t0 = crate::testing::epoch();
        let mut hb = Heartbeat::new(t0, HeartbeatConfig::default());
        let first = hb.poll_ping(t0, 42).unwrap();
        assert_eq!((first.seq, first.tick, first.ts_us), (0, 42, 0));
        assert_eq!(hb.poll_ping(t0, 42), None);
        assert_eq!(hb.poll_timeout(), Some(t0 + ms(500)));
        assert_eq!(hb.poll_ping(t0 + ms(499), 43), None);
        // Polled late: one ping, and the next one an interval later.
        let second = hb.poll_ping(t0 + ms(700), 43).unwrap();
        assert_eq!((second.seq, second.ts_us), (1, 700_000));
        assert_eq!(hb.poll_timeout(), Some(t0 + ms(1_200)));
    }

    #[test]
    fn rfc6298_first_sample_then_update() {
        let t0 = crate::testing::epoch();
        let mut hb = Heartbeat::new(t0, HeartbeatConfig::default());
        assert_eq!((hb.stats().srtt_ms, hb.stats().rttvar_ms), (333.0, 166.5));

        let p = hb.poll_ping(t0, 0).unwrap();
        let sample = hb.handle_pong(t0 + ms(100), &pong(&p)).unwrap();
        assert_eq!((sample.rtt, sample.peer_tick), (ms(100), 7));
        // First sample: SRTT = R, RTTVAR = R / 2.
        assert_eq!((hb.stats().srtt_ms, hb.stats().rttvar_ms), (100.0, 50.0));

        let p = hb.poll_ping(t0 + ms(500), 0).unwrap();
        hb.handle_pong(t0 + ms(700), &pong(&p)).unwrap();
        // RTTVAR = 3/4 × 50 + 1/4 × |100 − 200| = 62.5; SRTT = 7/8 × 100 + 1/8 × 200 = 112.5.
        let stats = hb.stats();
        assert_eq!((stats.srtt_ms, stats.rttvar_ms), (112.5, 62.5));
        assert_eq!((stats.min_rtt_ms, stats.latest_rtt_ms), (100.0, 200.0));
        assert_eq!((stats.rtt_p50_ms, stats.rtt_p99_ms), (100.0, 200.0));
        assert_eq!(stats.rtt_samples, 2);
    }

    #[test]
    fn hold_time_is_subtracted_unless_longer_than_the_round_trip() {
        let t0 = crate::testing::epoch();
        let mut hb = Heartbeat::new(t0, HeartbeatConfig::default());
        let p = hb.poll_ping(t0, 0).unwrap();
        assert_eq!(hb.handle_pong(t0 + ms(80), &pong(&p)).unwrap().rtt, ms(80));
        let p = hb.poll_ping(t0 + ms(500), 0).unwrap();
        assert_eq!(
            hb.handle_pong(t0 + ms(630), &held(&p, 30_000)).unwrap().rtt,
            ms(100)
        );
        let p = hb.poll_ping(t0 + ms(1_000), 0).unwrap();
        assert_eq!(
            hb.handle_pong(t0 + ms(1_100), &held(&p, 50_000)).unwrap().rtt,
            ms(50)
        );
        // A hold longer than the round trip is impossible: ignored.
        let p = hb.poll_ping(t0 + ms(1_500), 0).unwrap();
        assert_eq!(
            hb.handle_pong(t0 + ms(1_600), &held(&p, 900_000)).unwrap().rtt,
            ms(100)
        );
        assert_eq!(
            hb.stats().min_rtt_ms,
            50.0,
            "the minimum is of samples, hold subtracted"
        );
    }

    #[test]
    fn rtt_converges_to_a_constant_path_delay() {
        let t0 = crate::testing::epoch();
        let mut pair = Pair::new(t0, ms(40), 0.0, 1);
        pair.run_for(ms(60000));
        for stats in pair.sides.each_ref().map(Heartbeat::stats) {
            assert_eq!(
                (stats.srtt_ms, stats.min_rtt_ms, stats.latest_rtt_ms),
                (80.0, 80.0, 80.0)
            );
            assert!(stats.rttvar_ms < 1.0, "rttvar decays: {}", stats.rttvar_ms);
            assert_eq!((stats.rtt_p50_ms, stats.rtt_p99_ms), (80.0, 80.0));
            assert_eq!(stats.jitter_ms, 0.0, "constant delay has no jitter");
            assert_eq!(stats.loss_ratio, 0.0);
            assert_eq!(stats.incoming_loss_ratio, 0.0);
            assert!(stats.pings_sent >= 120 && stats.pongs_received >= 119);
        }
        assert_eq!(pair.failures, 0);
    }

    #[test]
    fn jitter_follows_rfc3550_for_alternating_delays() {
        let t0 = crate::testing::epoch();
        let mut hb = Heartbeat::new(t0, HeartbeatConfig::default());
        // Pings sent every 500 ms by the peer, arriving after 20, 50, 20, 50, ... ms:
        // every transit difference is 30 ms, so J_k = J_{k-1} + (30 − J_{k-1}) / 16.
        let mut expected = 0.0;
        for i in 0..10u32 {
            let sent_ms = u64::from(i) * 500;
            let delay_ms = if i % 2 == 0 { 20 } else { 50 };
            let arrival = t0 + ms(sent_ms + delay_ms);
            hb.handle_ping(arrival, &ping(i, sent_ms), 0);
            if i > 0 {
                expected += (30.0 - expected) / 16.0;
            }
            assert!((hb.stats().jitter_ms - expected).abs() < 1e-9);
        }
        assert!((expected - 30.0 * (1.0 - (15.0f64 / 16.0).powi(9))).abs() < 1e-9);
    }

    #[test]
    fn incoming_loss_duplicates_and_reordering() {
        let t0 = crate::testing::epoch();
        let mut hb = Heartbeat::new(t0, HeartbeatConfig::default());
        for (i, seq) in [0, 1, 3, 3, 2, 5].into_iter().enumerate() {
            let pong = hb.handle_ping(t0 + ms(i as u64 * 500), &ping(seq, 0), 9);
            assert_eq!((pong.seq, pong.tick, pong.hold_us), (seq, 9, 0));
        }
        let stats = hb.stats();
        // Expected 0..=5 (6), got 0, 1, 2, 3, 5: 4 is missing.
        assert!((stats.incoming_loss_ratio - 1.0 / 6.0).abs() < 1e-12);
        assert_eq!((stats.duplicate_pings, stats.out_of_order_pings), (1, 1));
        assert!((stats.duplicate_ratio - 1.0 / 6.0).abs() < 1e-12);
        assert!((stats.out_of_order_ratio - 1.0 / 6.0).abs() < 1e-12);
        assert_eq!((stats.pings_received, stats.pongs_sent), (6, 6));
        // The late 4 fills the gap.
        hb.handle_ping(t0 + ms(4_000), &ping(4, 0), 9);
        assert_eq!(hb.stats().incoming_loss_ratio, 0.0);
    }

    #[test]
    fn outgoing_loss_counts_only_old_unanswered_pings_and_late_pongs_undo_it() {
        let t0 = crate::testing::epoch();
        let mut hb = Heartbeat::new(t0, HeartbeatConfig::default());
        let mut unanswered = Vec::new();
        for i in 0..8u32 {
            let at = t0 + ms(u64::from(i) * 500);
            let p = hb.poll_ping(at, 0).unwrap();
            if i % 4 == 3 {
                unanswered.push(p);
            } else {
                hb.handle_pong(at + ms(50), &pong(&p)).unwrap();
            }
        }
        // Seq 7 is only 500 ms old at 4 s: not lost yet (loss delay 2 × max(srtt, 500 ms) = 1 s).
        let at = t0 + ms(4_000);
        hb.handle_timeout(at);
        assert_eq!((hb.stats().pings_lost, hb.stats().loss_ratio), (1, 1.0 / 7.0));
        hb.handle_timeout(at + ms(600));
        assert_eq!((hb.stats().pings_lost, hb.stats().loss_ratio), (2, 0.25));

        // Seq 3's pong finally arrives: a real (if slow) round trip, and not a loss after all.
        let late = hb.handle_pong(at + ms(700), &pong(&unanswered[0])).unwrap();
        assert_eq!(late.rtt, ms(3_200));
        let stats = hb.stats();
        assert_eq!((stats.pings_lost, stats.spurious_losses), (1, 1));
        assert_eq!(stats.loss_ratio, 0.125);

        // A duplicate of it, and a pong for a ping never sent, are discarded and counted.
        assert_eq!(hb.handle_pong(at + ms(800), &pong(&unanswered[0])), None);
        assert_eq!(hb.handle_pong(at + ms(800), &pong(&ping(999, 0))), None);
        assert_eq!(hb.stats().late_or_unknown_pongs, 2);
        assert_eq!(hb.stats().pongs_received, 9);
    }

    #[test]
    fn outstanding_table_is_bounded() {
        let t0 = crate::testing::epoch();
        // A long initial RTT keeps age-based loss out of the picture.
        let config = HeartbeatConfig {
            max_outstanding_pings: 4,
            initial_rtt_ms: 10_000,
            ..HeartbeatConfig::default()
        };
        let mut hb = Heartbeat::new(t0, config);
        let pings: Vec<Ping> = (0..6u32)
            .map(|i| hb.poll_ping(t0 + ms(u64::from(i) * 500), 0).unwrap())
            .collect();
        assert_eq!(hb.outstanding.len(), 4);
        // Seqs 0 and 1 were forgotten (and counted lost); their pongs are unknown now.
        assert_eq!(hb.stats().pings_lost, 2);
        assert_eq!(hb.handle_pong(t0 + ms(3_000), &pong(&pings[0])), None);
        assert_eq!(hb.stats().late_or_unknown_pongs, 1);
    }

    #[test]
    fn failure_is_reported_exactly_at_the_timeout_and_only_once() {
        let t0 = crate::testing::epoch();
        let mut hb = Heartbeat::new(t0, HeartbeatConfig::default());
        // 3 × (333 + 4 × 166.5 + 500) ms = 4.497 s < 5 s: the configured timeout rules.
        assert_eq!(hb.failure_timeout(), ms(5000));
        let mut failure = None;
        while failure.is_none() {
            let now = hb.poll_timeout().unwrap();
            failure = hb.handle_timeout(now).map(|f| (now, f));
            while hb.poll_ping(now, 0).is_some() {}
        }
        let (at, failure) = failure.unwrap();
        assert_eq!(at, t0 + ms(5000));
        assert_eq!(failure.idle, ms(5000));
        assert_eq!(failure.timeout, ms(5000));
        assert_eq!(hb.stats().pings_sent, 10, "pings at 0, 0.5, …, 4.5 s");

        assert_eq!(hb.handle_timeout(at + ms(1)), None);
        assert_eq!(hb.poll_timeout(), None);
        assert_eq!(hb.poll_ping(at + ms(1000), 0), None);
    }

    #[test]
    fn any_receipt_defers_failure_and_slow_paths_stretch_the_timeout() {
        let t0 = crate::testing::epoch();
        let mut hb = Heartbeat::new(t0, HeartbeatConfig::default());
        let _ = hb.poll_ping(t0, 0);
        hb.handle_receive(t0 + ms(4_000));
        assert_eq!(hb.handle_timeout(t0 + ms(5_000)), None);
        assert_eq!(hb.poll_timeout(), Some(t0 + ms(500)), "next ping first");

        // A 2 s RTT path: 3 × (2 + 4 × 1 + 0.5) s = 19.5 s.
        let p = hb.poll_ping(t0 + ms(5_000), 0).unwrap();
        hb.handle_pong(t0 + ms(7_000), &pong(&p)).unwrap();
        assert_eq!(hb.failure_timeout(), ms(19_500));
        assert_eq!(hb.stats().failure_timeout_ms, 19_500.0);
    }

    #[test]
    fn no_false_failure_under_30_percent_random_loss() {
        let t0 = crate::testing::epoch();
        let mut pair = Pair::new(t0, ms(40), 0.30, 0x5eed);
        pair.run_for(ms(600000));
        assert_eq!(pair.failures, 0);
        for stats in pair.sides.each_ref().map(Heartbeat::stats) {
            // A round trip survives with probability 0.7 × 0.7, so ~51 % of pings are lost.
            assert!((stats.loss_ratio - 0.51).abs() < 0.05, "{}", stats.loss_ratio);
            assert!((stats.incoming_loss_ratio - 0.30).abs() < 0.05);
            assert_eq!(stats.srtt_ms, 80.0);
            assert_eq!(stats.spurious_losses, 0);
        }
    }

    #[test]
    fn future_dated_pong_is_clamped_and_not_sampled() {
        let t0 = crate::testing::epoch();
        let mut hb = Heartbeat::new(t0, HeartbeatConfig::default());
        let p = hb.poll_ping(t0 + ms(1_000), 0).unwrap();
        let forged = Pong {
            echo_ts_us: 5_000_000,
            ..pong(&p)
        };
        assert_eq!(hb.handle_pong(t0 + ms(1_050), &forged), None);
        hb.handle_timeout(t0 + ms(4000));
        let stats = hb.stats();
        assert_eq!(stats.future_timestamps_clamped, 1);
        assert_eq!((stats.rtt_samples, stats.srtt_ms), (0, 333.0));
        assert_eq!(
            (stats.pongs_received, stats.pings_lost),
            (1, 0),
            "answered all the same"
        );
    }

    #[test]
    fn sequence_numbers_wrap() {
        let t0 = crate::testing::epoch();
        let mut hb = Heartbeat::new(t0, HeartbeatConfig::default());
        hb.next_seq = u32::MAX;
        let last = hb.poll_ping(t0, 0).unwrap();
        let wrapped = hb.poll_ping(t0 + ms(500), 0).unwrap();
        assert_eq!((last.seq, wrapped.seq), (u32::MAX, 0));
        assert!(hb.handle_pong(t0 + ms(600), &pong(&wrapped)).is_some());
        assert!(hb.handle_pong(t0 + ms(600), &pong(&last)).is_some());

        for (i, seq) in [u32::MAX - 1, u32::MAX, 0, 1].into_iter().enumerate() {
            hb.handle_ping(t0 + ms(i as u64 * 500), &ping(seq, i as u64 * 500), 0);
        }
        let stats = hb.stats();
        assert_eq!((stats.incoming_loss_ratio, stats.out_of_order_ratio), (0.0, 0.0));
        hb.handle_ping(t0 + ms(2_000), &ping(u32::MAX, 500), 0);
        assert_eq!(hb.stats().duplicate_pings, 1);
    }

    #[test]
    fn a_due_ping_waits_up_to_the_grace_for_a_carrier() {
        let t0 = crate::testing::epoch();
        let mut hb = Heartbeat::new(t0, HeartbeatConfig::default()).with_grace(ms(125));
        assert!(
            hb.poll_ping_carried(t0, 0, true).is_some(),
            "the first ping goes with data"
        );
        // Due at 500 ms: the timer is armed for the end of the grace.
        assert_eq!(hb.poll_timeout(), Some(t0 + ms(625)));
        assert!(
            hb.poll_ping_carried(t0 + ms(499), 0, true).is_none(),
            "not due yet"
        );
        assert!(
            hb.poll_ping_carried(t0 + ms(520), 0, false).is_none(),
            "no carrier: waits"
        );
        let ping = hb
            .poll_ping_carried(t0 + ms(540), 0, true)
            .expect("rides with data");
        assert_eq!(ping.ts_us, 540_000, "stamped when it leaves");
        // The schedule holds: the next is due at 1 000 ms, and without data it goes at the
        // grace's end; so does the one after, an interval later.
        assert_eq!(hb.poll_timeout(), Some(t0 + ms(1_125)));
        assert!(hb.poll_ping_carried(t0 + ms(1_124), 0, false).is_none());
        assert!(hb.poll_ping_carried(t0 + ms(1_125), 0, false).is_some());
        assert_eq!(hb.poll_timeout(), Some(t0 + ms(1_625)));
        // A ping later than its grace restarts the schedule from when it went.
        assert!(hb.poll_ping_carried(t0 + ms(1_700), 0, false).is_some());
        assert_eq!(hb.poll_timeout(), Some(t0 + ms(2_325)));
        assert_eq!(hb.stats().pings_sent, 4);
    }

    #[test]
    fn a_held_pong_leaves_with_a_carrier_or_at_the_grace_with_its_hold_and_tick() {
        let t0 = crate::testing::epoch();
        let mut hb = Heartbeat::new(t0, HeartbeatConfig::default()).with_grace(ms(125));
        let _ = hb.poll_ping_carried(t0, 0, true);
        let pong = hb.handle_ping(t0 + ms(10), &ping(0, 0), 7);
        assert!(hb.owe_pong(t0 + ms(10), pong, 7).is_none());
        assert_eq!(hb.poll_timeout(), Some(t0 + ms(135)));
        assert!(hb.poll_pong(t0 + ms(20), 7, false).is_none());
        let sent = hb.poll_pong(t0 + ms(26), 8, true).expect("rides with data");
        assert_eq!((sent.seq, sent.tick, sent.hold_us), (0, 8, 16_000));
        assert!(hb.poll_pong(t0 + ms(30), 8, true).is_none(), "sent once");

        // Without a carrier it leaves at the end of the grace.
        let pong = hb.handle_ping(t0 + ms(500), &ping(1, 500), 9);
        assert!(hb.owe_pong(t0 + ms(500), pong, 9).is_none());
        assert!(hb.poll_pong(t0 + ms(624), 9, false).is_none());
        assert_eq!(
            hb.poll_pong(t0 + ms(625), 9, false).map(|p| p.hold_us),
            Some(125_000)
        );

        // A second ping while one is held sends the first at once.
        let first = hb.handle_ping(t0 + ms(1_000), &ping(2, 1_000), 10);
        assert!(hb.owe_pong(t0 + ms(1_000), first, 10).is_none());
        let second = hb.handle_ping(t0 + ms(1_005), &ping(3, 1_005), 10);
        let displaced = hb
            .owe_pong(t0 + ms(1_005), second, 10)
            .expect("the first is sent");
        assert_eq!((displaced.seq, displaced.hold_us), (2, 5_000));
        assert_eq!(hb.poll_pong(t0 + ms(1_006), 10, true).map(|p| p.seq), Some(3));
    }

    #[test]
    fn a_held_pong_still_has_a_timer_after_failure() {
        let t0 = crate::testing::epoch();
        let mut hb = Heartbeat::new(t0, HeartbeatConfig::default()).with_grace(ms(125));
        assert!(hb.handle_timeout(t0 + ms(60_000)).is_some());
        assert_eq!(hb.poll_timeout(), None);
        let pong = hb.handle_ping(t0 + ms(60_000), &ping(0, 0), 0);
        assert!(hb.owe_pong(t0 + ms(60_000), pong, 0).is_none());
        assert_eq!(hb.poll_timeout(), Some(t0 + ms(60_125)));
    }
}
