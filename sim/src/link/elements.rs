//! The individual link elements. Each documents how many values it draws from its
//! [`RngStream`] per datagram; the count is the same whether the datagram reached the
//! element ([`Element::process`]) or was dropped before it ([`Element::skip`]).

use super::element::{Element, InFlight, RngStream, Verdict};
use super::spec::{Delay, GilbertElliott};
use super::{DropReason, Nanos};

/// Milliseconds (`f64`) to whole nanoseconds, rounded; negative and NaN give 0, huge values
/// saturate.
pub fn ms_to_ns(ms: f64) -> Nanos {
    // `as` saturates and maps NaN to 0.
    (ms * 1e6).round() as Nanos
}

/// Drops datagrams whose payload is larger than `max_bytes` ([`DropReason::Mtu`]), as a
/// path does with the don't-fragment bit set. No draws.
#[derive(Debug, Clone)]
pub struct Mtu {
    max_bytes: usize,
}

impl Mtu {
    /// A path carrying at most `max_bytes` of UDP payload.
    pub fn new(max_bytes: usize) -> Mtu {
        Mtu { max_bytes }
    }
}

impl Element for Mtu {
    fn process(&mut self, _now: Nanos, datagram: &mut InFlight, _: &mut Vec<InFlight>) -> Verdict {
        if datagram.payload.len() > self.max_bytes {
            Verdict::Drop(DropReason::Mtu)
        } else {
            Verdict::Forward
        }
    }

    fn skip(&mut self, _now: Nanos) {}
}

/// A bottleneck: serialises datagrams FIFO at `rate_bps` behind a byte-bounded tail-drop
/// queue. No draws.
///
/// The queue is computed analytically from the time the link becomes idle (`busy_until`):
/// the backlog a datagram arriving at `t` sees is the unsent part of everything accepted,
/// `ceil((busy_until - t) · rate / 8e9)` bytes. It is dropped ([`DropReason::QueueFull`]) if
/// backlog + its size exceeds `queue_bytes` (an idle link always accepts it); otherwise its
/// serialisation starts at `max(t, busy_until)` — the difference is its queueing delay,
/// added to [`InFlight::queue_delay`] — and it leaves when its last bit is sent, `size · 8e9
/// / rate` ns later (rounded up). Arrival times (`at` on entry) must be non-decreasing, so
/// put this stage before any that delays datagrams by random amounts.
#[derive(Debug, Clone)]
pub struct Bandwidth {
    rate_bps: u64,
    queue_bytes: u64,
    busy_until: Nanos,
}

impl Bandwidth {
    /// A link of `rate_bps` bits per second (at least 1) with `queue_bytes` of queue.
    pub fn new(rate_bps: u64, queue_bytes: u64) -> Bandwidth {
        Bandwidth {
            rate_bps: rate_bps.max(1),
            queue_bytes,
            busy_until: 0,
        }
    }

    /// Time to put `bytes` on the wire, ns, rounded up.
    pub fn serialisation_ns(&self, bytes: usize) -> Nanos {
        let bits = bytes as u128 * 8 * 1_000_000_000;
        bits.div_ceil(u128::from(self.rate_bps))
            .try_into()
            .unwrap_or(Nanos::MAX)
    }

    /// Bytes accepted but not yet sent at time `at`, rounded up.
    pub fn backlog_bytes(&self, at: Nanos) -> u64 {
        let ns = u128::from(self.busy_until.saturating_sub(at));
        (ns * u128::from(self.rate_bps))
            .div_ceil(8_000_000_000)
            .try_into()
            .unwrap_or(u64::MAX)
    }

    /// When the link finishes sending everything accepted so far, ns.
    pub fn busy_until(&self) -> Nanos {
        self.busy_until
    }
}

impl Element for Bandwidth {
    fn process(&mut self, _now: Nanos, datagram: &mut InFlight, _: &mut Vec<InFlight>) -> Verdict {
        let arrival = datagram.at;
        let size = datagram.payload.len() as u64;
        if self.busy_until > arrival && self.backlog_bytes(arrival).saturating_add(size) > self.queue_bytes {
            return Verdict::Drop(DropReason::QueueFull);
        }
        let start = arrival.max(self.busy_until);
        self.busy_until = start.saturating_add(self.serialisation_ns(datagram.payload.len()));
        datagram.queue_delay += start - arrival;
        datagram.at = self.busy_until;
        Verdict::Forward
    }

    fn skip(&mut self, _now: Nanos) {}
}

/// Base one-way delay drawn from a [`Delay`] distribution and added to `at`. Draws per
/// datagram: constant 0, uniform 1, normal 2 (Box-Muller), Pareto 1.
#[derive(Debug)]
pub struct Latency {
    delay: Delay,
    rng: RngStream,
}

impl Latency {
    /// Delays from `delay`, drawn from `rng`.
    pub fn new(delay: Delay, rng: RngStream) -> Latency {
        Latency { delay, rng }
    }

    /// One sample, ms (>= 0).
    fn sample_ms(&mut self) -> f64 {
        match self.delay {
            Delay::Constant { ms } => ms,
            Delay::Uniform { min_ms, max_ms } => min_ms + (max_ms - min_ms) * self.rng.unit(),
            Delay::Normal {
                mean_ms,
                sd_ms,
                min_ms,
            } => {
                // Box-Muller: z = sqrt(-2 ln u1) cos(2π u2) is standard normal.
                let u1 = self.rng.unit_nonzero();
                let u2 = self.rng.unit();
                let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
                (mean_ms + sd_ms * z).max(min_ms)
            }
            Delay::Pareto {
                base_ms,
                scale_ms,
                alpha,
            } => {
                // Inverse CDF of the Lomax distribution.
                let u = self.rng.unit_nonzero();
                base_ms + scale_ms * (u.powf(-1.0 / alpha) - 1.0)
            }
        }
    }
}

impl Element for Latency {
    fn process(&mut self, _now: Nanos, datagram: &mut InFlight, _: &mut Vec<InFlight>) -> Verdict {
        datagram.at = datagram.at.saturating_add(ms_to_ns(self.sample_ms()));
        Verdict::Forward
    }

    fn skip(&mut self, _now: Nanos) {
        self.sample_ms();
    }
}

/// Jitter: adds a delay uniform in `[0, max]` (one draw), then, unless reordering is
/// allowed, enforces FIFO order over everything before it: `at = max(at, previous at)`.
#[derive(Debug)]
pub struct Jitter {
    max_ns: f64,
    reorder: bool,
    last_at: Nanos,
    rng: RngStream,
}

impl Jitter {
    /// Up to `max_ms` of extra delay; `reorder == false` keeps delivery order.
    pub fn new(max_ms: f64, reorder: bool, rng: RngStream) -> Jitter {
        Jitter {
            max_ns: ms_to_ns(max_ms) as f64,
            reorder,
            last_at: 0,
            rng,
        }
    }
}

impl Element for Jitter {
    fn process(&mut self, _now: Nanos, datagram: &mut InFlight, _: &mut Vec<InFlight>) -> Verdict {
        let extra = (self.max_ns * self.rng.unit()).round() as Nanos;
        datagram.at = datagram.at.saturating_add(extra);
        if !self.reorder {
            datagram.at = datagram.at.max(self.last_at);
            self.last_at = datagram.at;
        }
        Verdict::Forward
    }

    fn skip(&mut self, _now: Nanos) {
        self.rng.unit();
    }
}

/// Independent (Bernoulli) loss with a fixed probability ([`DropReason::Loss`]). One draw.
#[derive(Debug)]
pub struct BernoulliLoss {
    probability: f64,
    rng: RngStream,
}

impl BernoulliLoss {
    /// Loses each datagram with `probability`.
    pub fn new(probability: f64, rng: RngStream) -> BernoulliLoss {
        BernoulliLoss { probability, rng }
    }
}

impl Element for BernoulliLoss {
    fn process(&mut self, _now: Nanos, _: &mut InFlight, _: &mut Vec<InFlight>) -> Verdict {
        if self.rng.chance(self.probability) {
            Verdict::Drop(DropReason::Loss)
        } else {
            Verdict::Forward
        }
    }

    fn skip(&mut self, _now: Nanos) {
        self.rng.unit();
    }
}

/// Bursty loss from a [`GilbertElliott`] chain ([`DropReason::Loss`]). Two draws per
/// datagram, processed or skipped alike, so a dropped datagram moves the chain as a
/// delivered one does:
///
/// - per datagram (`slot_ms` absent): the loss decision in the current state, then one step
///   of the chain; the loss pattern depends only on the count of datagrams offered;
/// - per slot (`slot_ms` present): the chain catches up with the slot of `now` (the offer
///   time) in one draw by [`GilbertElliott::p_bad_after`] — the draw is made, and ignored,
///   when no slot boundary has passed — then the loss decision in the resulting state; the
///   loss pattern depends only on the offer times.
#[derive(Debug)]
pub struct GilbertElliottLoss {
    params: GilbertElliott,
    /// Slot length, ns (at least 1), in the per-slot mode.
    slot_ns: Option<Nanos>,
    /// Per slot: index `k` of the slot `[k·slot, (k+1)·slot)` the chain's state is for.
    slot: u64,
    bad: bool,
    rng: RngStream,
}

impl GilbertElliottLoss {
    /// A chain with `params`, starting in Good (per slot: in Good at time 0).
    pub fn new(params: GilbertElliott, rng: RngStream) -> GilbertElliottLoss {
        GilbertElliottLoss {
            params,
            slot_ns: params.slot_ms.map(|ms| ms_to_ns(ms).max(1)),
            slot: 0,
            bad: false,
            rng,
        }
    }

    /// Whether the chain is in Bad: per datagram, the state the next datagram sees; per slot,
    /// the state of the slot of the latest datagram.
    pub fn is_bad(&self) -> bool {
        self.bad
    }

    /// Whether the datagram offered at `now` is lost, moving the chain.
    fn step(&mut self, now: Nanos) -> bool {
        match self.slot_ns {
            None => {
                let lost = self.rng.chance(self.p_loss());
                let p_switch = if self.bad { self.params.r } else { self.params.p };
                if self.rng.chance(p_switch) {
                    self.bad = !self.bad;
                }
                lost
            }
            Some(slot_ns) => {
                // `now` is non-decreasing, so slots only move forward; an earlier `now` is
                // treated as in the current slot.
                let slot = (now / slot_ns).max(self.slot);
                let p_bad = self.params.p_bad_after(self.bad, slot - self.slot);
                self.slot = slot;
                self.bad = self.rng.chance(p_bad);
                self.rng.chance(self.p_loss())
            }
        }
    }

    fn p_loss(&self) -> f64 {
        if self.bad {
            self.params.loss_bad
        } else {
            self.params.loss_good
        }
    }
}

impl Element for GilbertElliottLoss {
    fn process(&mut self, now: Nanos, _: &mut InFlight, _: &mut Vec<InFlight>) -> Verdict {
        if self.step(now) {
            Verdict::Drop(DropReason::Loss)
        } else {
            Verdict::Forward
        }
    }

    fn skip(&mut self, now: Nanos) {
        self.step(now);
    }
}

/// Reordering: with `probability`, holds a datagram back `delay` longer, so datagrams
/// offered after it can overtake it. One draw.
#[derive(Debug)]
pub struct Reorder {
    probability: f64,
    delay_ns: Nanos,
    rng: RngStream,
}

impl Reorder {
    /// Holds datagrams back `delay_ms` with `probability`.
    pub fn new(probability: f64, delay_ms: f64, rng: RngStream) -> Reorder {
        Reorder {
            probability,
            delay_ns: ms_to_ns(delay_ms),
            rng,
        }
    }
}

impl Element for Reorder {
    fn process(&mut self, _now: Nanos, datagram: &mut InFlight, _: &mut Vec<InFlight>) -> Verdict {
        if self.rng.chance(self.probability) {
            datagram.at = datagram.at.saturating_add(self.delay_ns);
        }
        Verdict::Forward
    }

    fn skip(&mut self, _now: Nanos) {
        self.rng.unit();
    }
}

/// Corruption: with `probability`, flips one uniformly chosen bit of the payload and sets
/// [`InFlight::corrupted`] (an empty payload has no bit to flip and is left alone). Two
/// draws: the decision and the bit.
#[derive(Debug)]
pub struct Corrupt {
    probability: f64,
    rng: RngStream,
}

impl Corrupt {
    /// Corrupts datagrams with `probability`.
    pub fn new(probability: f64, rng: RngStream) -> Corrupt {
        Corrupt { probability, rng }
    }
}

impl Element for Corrupt {
    fn process(&mut self, _now: Nanos, datagram: &mut InFlight, _: &mut Vec<InFlight>) -> Verdict {
        let hit = self.rng.chance(self.probability);
        let bit = self.rng.below(datagram.payload.len() as u64 * 8);
        if hit && !datagram.payload.is_empty() {
            datagram.payload[(bit / 8) as usize] ^= 1 << (bit % 8);
            datagram.corrupted = true;
        }
        Verdict::Forward
    }

    fn skip(&mut self, _now: Nanos) {
        self.rng.unit();
        self.rng.unit();
    }
}

/// Duplication: with `probability`, emits a copy ([`InFlight::duplicate`]) delivered
/// `U[0, max_delay]` after the original. The copy leaves the pipeline directly, so put this
/// stage last. Two draws: the decision and the copy's delay.
#[derive(Debug)]
pub struct Duplicate {
    probability: f64,
    max_delay_ns: f64,
    rng: RngStream,
}

impl Duplicate {
    /// Duplicates with `probability`, the copy up to `max_delay_ms` late.
    pub fn new(probability: f64, max_delay_ms: f64, rng: RngStream) -> Duplicate {
        Duplicate {
            probability,
            max_delay_ns: ms_to_ns(max_delay_ms) as f64,
            rng,
        }
    }
}

impl Element for Duplicate {
    fn process(&mut self, _now: Nanos, datagram: &mut InFlight, copies: &mut Vec<InFlight>) -> Verdict {
        let hit = self.rng.chance(self.probability);
        let delay = (self.max_delay_ns * self.rng.unit()).round() as Nanos;
        if hit {
            let mut copy = datagram.clone();
            copy.duplicate = true;
            copy.at = copy.at.saturating_add(delay);
            copies.push(copy);
        }
        Verdict::Forward
    }

    fn skip(&mut self, _now: Nanos) {
        self.rng.unit();
        self.rng.unit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(element: &mut dyn Element, now: Nanos, payload: Vec<u8>) -> (Verdict, InFlight, Vec<InFlight>) {
        let mut d = InFlight::new(now, payload);
        let mut copies = Vec::new();
        let verdict = element.process(now, &mut d, &mut copies);
        (verdict, d, copies)
    }

    const MS: Nanos = 1_000_000;

    fn rng() -> RngStream {
        RngStream::derive(&[9; 32], "test")
    }

    #[test]
    fn mtu_drops_only_larger_datagrams() {
        let mut mtu = Mtu::new(1200);
        assert_eq!(run(&mut mtu, 0, vec![0; 1200]).0, Verdict::Forward);
        assert_eq!(run(&mut mtu, 0, vec![0; 1201]).0, Verdict::Drop(DropReason::Mtu));
    }

    #[test]
    fn bandwidth_serialises_queues_and_tail_drops() {
        // 8 Mbit/s: 1 byte per µs. Queue of 2500 bytes.
        let mut bw = Bandwidth::new(8_000_000, 2500);
        assert_eq!(bw.serialisation_ns(1000), 1_000_000);
        let (_, a, _) = run(&mut bw, 0, vec![0; 1000]);
        assert_eq!((a.at, a.queue_delay), (1_000_000, 0));
        // Half-way through the first: 500 bytes of backlog, then it waits 0.5 ms.
        assert_eq!(bw.backlog_bytes(500_000), 500);
        let (_, b, _) = run(&mut bw, 500_000, vec![0; 1000]);
        assert_eq!((b.at, b.queue_delay), (2_000_000, 500_000));
        // Backlog 1500 + 1000 fits exactly; one byte more does not.
        assert_eq!(
            run(&mut bw, 500_000, vec![0; 1001]).0,
            Verdict::Drop(DropReason::QueueFull)
        );
        let (_, c, _) = run(&mut bw, 500_000, vec![0; 1000]);
        assert_eq!(c.at, 3_000_000);
        assert_eq!(bw.busy_until(), 3_000_000);
        // An idle link takes any datagram, even one larger than the queue.
        let (verdict, d, _) = run(&mut bw, 10_000_000, vec![0; 9000]);
        assert_eq!((verdict, d.at), (Verdict::Forward, 19_000_000));
    }

    #[test]
    fn latency_samples_have_the_configured_moments() {
        let n = 20_000;
        let moments = |delay: Delay| {
            let mut latency = Latency::new(delay, rng());
            let samples: Vec<f64> = (0..n).map(|_| latency.sample_ms()).collect();
            let mean = samples.iter().sum::<f64>() / n as f64;
            let var = samples.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
            let min = samples.iter().copied().fold(f64::INFINITY, f64::min);
            let max = samples.iter().copied().fold(0.0, f64::max);
            (mean, var.sqrt(), min, max)
        };
        assert_eq!(moments(Delay::Constant { ms: 3.0 }), (3.0, 0.0, 3.0, 3.0));
        let (mean, _, min, max) = moments(Delay::Uniform {
            min_ms: 10.0,
            max_ms: 20.0,
        });
        assert!((mean - 15.0).abs() < 0.1 && min >= 10.0 && max <= 20.0);
        let (mean, sd, _, _) = moments(Delay::Normal {
            mean_ms: 40.0,
            sd_ms: 5.0,
            min_ms: 0.0,
        });
        assert!((mean - 40.0).abs() < 0.1 && (sd - 5.0).abs() < 0.1, "{mean} {sd}");
        let (_, _, min, _) = moments(Delay::Normal {
            mean_ms: 1.0,
            sd_ms: 5.0,
            min_ms: 0.0,
        });
        assert_eq!(min, 0.0);
        // A floor: no sample below it, and (3 sd below the mean) the mean barely moves.
        let (mean, _, min, _) = moments(Delay::Normal {
            mean_ms: 4.0,
            sd_ms: 1.0,
            min_ms: 1.0,
        });
        assert_eq!(min, 1.0);
        assert!((mean - 4.0).abs() < 0.05, "{mean}");
        let (mean, _, min, max) = moments(Delay::Pareto {
            base_ms: 100.0,
            scale_ms: 4.0,
            alpha: 3.0,
        });
        assert!(
            (mean - 102.0).abs() < 0.1 && min >= 100.0 && max > 120.0,
            "{mean} {max}"
        );
    }

    #[test]
    fn jitter_keeps_fifo_order_unless_allowed() {
        for reorder in [false, true] {
            let mut jitter = Jitter::new(10.0, reorder, rng());
            let mut last = 0;
            let mut inversions = 0;
            for i in 0..1000 {
                let (_, d, _) = run(&mut jitter, i * 1_000_000, Vec::new());
                assert!((i * 1_000_000..=(i + 10) * 1_000_000).contains(&d.at) || !reorder);
                inversions += u32::from(d.at < last);
                last = last.max(d.at);
            }
            assert_eq!(inversions == 0, !reorder);
        }
    }

    #[test]
    fn gilbert_elliott_starts_good_and_moves() {
        let always_bad = GilbertElliott {
            p: 1.0,
            r: 0.0,
            loss_good: 0.0,
            loss_bad: 1.0,
            slot_ms: None,
        };
        let mut ge = GilbertElliottLoss::new(always_bad, rng());
        assert!(!ge.is_bad());
        assert_eq!(run(&mut ge, 0, Vec::new()).0, Verdict::Forward);
        assert!(ge.is_bad());
        ge.skip(0);
        assert_eq!(run(&mut ge, 0, Vec::new()).0, Verdict::Drop(DropReason::Loss));
    }

    #[test]
    fn gilbert_elliott_per_slot_moves_with_time_not_datagrams() {
        let always_bad = GilbertElliott {
            p: 1.0,
            r: 0.0,
            loss_good: 0.0,
            loss_bad: 1.0,
            slot_ms: Some(10.0),
        };
        let mut ge = GilbertElliottLoss::new(always_bad, rng());
        // Slot 0 is Good however many datagrams it holds; the first boundary makes it Bad.
        for now in [0, 1, 5 * MS, 9_999_999] {
            assert_eq!(run(&mut ge, now, Vec::new()).0, Verdict::Forward);
            ge.skip(now);
        }
        assert!(!ge.is_bad());
        assert_eq!(
            run(&mut ge, 10 * MS, Vec::new()).0,
            Verdict::Drop(DropReason::Loss)
        );
        assert!(ge.is_bad());
        // An earlier `now` stays in the current slot.
        assert_eq!(run(&mut ge, 0, Vec::new()).0, Verdict::Drop(DropReason::Loss));
    }

    #[test]
    fn gilbert_elliott_datagrams_in_one_slot_share_its_state() {
        // Half the slots Bad, independently: each slot's datagrams all go or all stay.
        let coin = GilbertElliott {
            p: 0.5,
            r: 0.5,
            loss_good: 0.0,
            loss_bad: 1.0,
            slot_ms: Some(10.0),
        };
        let mut ge = GilbertElliottLoss::new(coin, rng());
        let mut lost_slots = 0;
        for slot in 1..1000 {
            let verdicts: Vec<Verdict> = (0..5)
                .map(|i| run(&mut ge, slot * 10 * MS + i * 2 * MS, Vec::new()).0)
                .collect();
            assert!(
                verdicts.iter().all(|v| *v == verdicts[0]),
                "slot {slot}: {verdicts:?}"
            );
            lost_slots += u32::from(verdicts[0] != Verdict::Forward);
        }
        assert!((400..600).contains(&lost_slots), "{lost_slots}");
    }

    #[test]
    fn gilbert_elliott_draws_two_values_per_datagram_in_both_modes() {
        let per_datagram = GilbertElliott::from_mean_loss(0.1, 3.5);
        let per_slot = GilbertElliott {
            slot_ms: Some(10.0),
            ..per_datagram
        };
        for params in [per_datagram, per_slot] {
            let mut ge = GilbertElliottLoss::new(params, rng());
            // Gaps of 0, less than a slot, one slot, many slots.
            for (i, now) in [0, 0, 3, 7, 10, 10, 11, 40, 1000, 1000].into_iter().enumerate() {
                if i % 3 == 0 {
                    ge.skip(now * MS);
                } else {
                    let _ = run(&mut ge, now * MS, Vec::new());
                }
            }
            let mut reference = rng();
            for _ in 0..20 {
                reference.unit();
            }
            assert_eq!(format!("{:?}", ge.rng), format!("{reference:?}"));
        }
    }

    #[test]
    fn corruption_flips_exactly_one_bit() {
        let mut corrupt = Corrupt::new(1.0, rng());
        for len in [1usize, 2, 100, 1200] {
            let (_, d, _) = run(&mut corrupt, 0, vec![0x5a; len]);
            assert!(d.corrupted);
            let flipped: u32 = d.payload.iter().map(|b| (b ^ 0x5a).count_ones()).sum();
            assert_eq!(flipped, 1);
        }
        let (_, empty, _) = run(&mut corrupt, 0, Vec::new());
        assert!(!empty.corrupted);
    }

    #[test]
    fn copies_are_marked_and_late() {
        let mut dup = Duplicate::new(1.0, 2.0, rng());
        let (_, d, copies) = run(&mut dup, 7, vec![1, 2, 3]);
        assert!(!d.duplicate);
        assert_eq!(copies.len(), 1);
        assert!(copies[0].duplicate && copies[0].payload == d.payload);
        assert!((7..=2_000_007).contains(&copies[0].at));
    }

    #[test]
    fn ms_converts_with_rounding_and_saturation() {
        assert_eq!(ms_to_ns(1.5), 1_500_000);
        assert_eq!(ms_to_ns(-1.0), 0);
        assert_eq!(ms_to_ns(f64::NAN), 0);
        assert_eq!(ms_to_ns(f64::INFINITY), Nanos::MAX);
    }
}
