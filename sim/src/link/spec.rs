//! [`LinkSpec`]: the serde (TOML) description of one link direction, its validation and the
//! named presets.

use serde::{Deserialize, Serialize};

use super::Nanos;

/// One direction of a network path, as plain data (TOML in scenarios).
///
/// [`Default`] is an ideal link: zero latency, no jitter, no loss, no queue, no MTU limit.
/// Times are milliseconds as `f64`, rates kbit/s (1 kbit = 1000 bits), sizes bytes.
///
/// ```toml
/// mtu_bytes = 1472
/// corrupt_probability = 0.0
/// latency = { dist = "normal", mean_ms = 35.0, sd_ms = 5.0 }
/// jitter = { max_ms = 10.0, reorder = false }
/// loss = { model = "burst", mean_loss = 0.015, mean_burst_len = 2.5, slot_ms = 20.0 }
/// duplicate = { probability = 0.001, max_delay_ms = 1.0 }
/// reorder = { probability = 0.005, delay_ms = 5.0 }
/// bandwidth = { rate_kbit_s = 10000.0, queue_bytes = 125000 }
/// ```
///
/// The stages a [`Link`](super::Link) builds from it, in order: MTU, bandwidth (FIFO
/// serialisation behind a tail-drop queue), latency, jitter, loss, reorder, corruption,
/// duplication. Loss comes after the delay stages so that which datagrams are lost never
/// changes the delivery times of the others.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LinkSpec {
    /// Largest UDP payload the path carries, bytes; larger datagrams are dropped
    /// ([`DropReason::Mtu`](super::DropReason::Mtu)), as on a path with IPv4 DF set or IPv6.
    /// Ethernet's 1500-byte MTU carries 1472 bytes of UDP payload over IPv4 (20-byte IP and
    /// 8-byte UDP headers), 1452 over IPv6. `None` (absent): no limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mtu_bytes: Option<usize>,
    /// Probability that a delivered datagram has one random bit flipped.
    pub corrupt_probability: f64,
    /// Base one-way delay (propagation plus fixed processing) per datagram.
    pub latency: Delay,
    /// Extra random delay per datagram, and whether it may reorder.
    pub jitter: JitterSpec,
    /// Loss model.
    pub loss: Loss,
    /// Duplication.
    pub duplicate: DuplicateSpec,
    /// Reordering by holding single datagrams back.
    pub reorder: ReorderSpec,
    /// Bottleneck rate and queue; `None` (absent): unlimited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bandwidth: Option<BandwidthSpec>,
}

impl Default for LinkSpec {
    fn default() -> LinkSpec {
        LinkSpec {
            mtu_bytes: None,
            corrupt_probability: 0.0,
            latency: Delay::default(),
            jitter: JitterSpec::default(),
            loss: Loss::None,
            duplicate: DuplicateSpec::default(),
            reorder: ReorderSpec::default(),
            bandwidth: None,
        }
    }
}

/// A delay distribution, tagged by `dist`. Samples are in ms and never negative.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "dist", rename_all = "snake_case", deny_unknown_fields)]
pub enum Delay {
    /// Always `ms`. No draws.
    Constant {
        /// The delay, ms.
        ms: f64,
    },
    /// Uniform in `[min_ms, max_ms]`. One draw.
    Uniform {
        /// Smallest delay, ms.
        min_ms: f64,
        /// Largest delay, ms.
        max_ms: f64,
    },
    /// Normal (Gaussian) with `mean_ms` and standard deviation `sd_ms`, sampled by the
    /// Box-Muller transform (two draws), clamped below at `min_ms` (default 0): a path's
    /// physical minimum delay, which no sample goes under. The clamp shifts the mean
    /// noticeably only when `min_ms` is less than about three `sd_ms` below `mean_ms`.
    ///
    /// ```toml
    /// latency = { dist = "normal", mean_ms = 35.0, sd_ms = 5.0, min_ms = 15.0 }
    /// ```
    Normal {
        /// Mean, ms.
        mean_ms: f64,
        /// Standard deviation, ms.
        sd_ms: f64,
        /// Smallest delay, ms (default 0).
        #[serde(default)]
        min_ms: f64,
    },
    /// Heavy-tailed: `base_ms` plus a Lomax (Pareto type II) tail,
    /// `base_ms + scale_ms * (U^(-1/alpha) - 1)` for `U` uniform in `(0, 1]` (one draw).
    /// `P(tail > x) = (1 + x/scale_ms)^(-alpha)`; mean `base_ms + scale_ms / (alpha - 1)`.
    /// `alpha` must be above 1 (finite mean); above 2 the variance is finite too. Models
    /// the rare long stalls of real paths (Internet delay tails are Pareto-like).
    Pareto {
        /// Smallest delay, ms.
        base_ms: f64,
        /// Tail scale, ms.
        scale_ms: f64,
        /// Tail index (shape), > 1.
        alpha: f64,
    },
}

impl Default for Delay {
    fn default() -> Delay {
        Delay::Constant { ms: 0.0 }
    }
}

impl Delay {
    /// The smallest delay the distribution can give, ms: `ms`, `min_ms` (the uniform's and
    /// the normal's lower bound) and `base_ms`.
    pub fn min_ms(&self) -> f64 {
        match *self {
            Delay::Constant { ms } => ms,
            Delay::Uniform { min_ms, .. } | Delay::Normal { min_ms, .. } => min_ms,
            Delay::Pareto { base_ms, .. } => base_ms,
        }
    }

    /// The distribution's mean, ms (for [`Delay::Normal`], ignoring the clamp at `min_ms`).
    pub fn mean_ms(&self) -> f64 {
        match *self {
            Delay::Constant { ms } => ms,
            Delay::Uniform { min_ms, max_ms } => (min_ms + max_ms) / 2.0,
            Delay::Normal { mean_ms, .. } => mean_ms,
            Delay::Pareto {
                base_ms,
                scale_ms,
                alpha,
            } => base_ms + scale_ms / (alpha - 1.0),
        }
    }

    fn validate(&self) -> Result<(), LinkSpecError> {
        match *self {
            Delay::Constant { ms } => non_negative("latency.ms", ms),
            Delay::Uniform { min_ms, max_ms } => {
                non_negative("latency.min_ms", min_ms)?;
                non_negative("latency.max_ms", max_ms)?;
                check(
                    "latency.max_ms",
                    max_ms,
                    max_ms >= min_ms,
                    "a value >= latency.min_ms",
                )
            }
            Delay::Normal {
                mean_ms,
                sd_ms,
                min_ms,
            } => {
                non_negative("latency.mean_ms", mean_ms)?;
                non_negative("latency.sd_ms", sd_ms)?;
                non_negative("latency.min_ms", min_ms)
            }
            Delay::Pareto {
                base_ms,
                scale_ms,
                alpha,
            } => {
                non_negative("latency.base_ms", base_ms)?;
                non_negative("latency.scale_ms", scale_ms)?;
                check(
                    "latency.alpha",
                    alpha,
                    alpha.is_finite() && alpha > 1.0,
                    "a finite number > 1",
                )
            }
        }
    }
}

/// Jitter: an extra delay uniform in `[0, max_ms]` per datagram (one draw; mean
/// `max_ms / 2`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JitterSpec {
    /// Largest extra delay, ms.
    pub max_ms: f64,
    /// `false` (default): the link stays FIFO — a datagram is never delivered before one
    /// offered earlier (`at = max(at, previous at)`), which also holds for a variable
    /// [`Delay`] distribution, as delay variation from queueing behaves. `true`: delays are
    /// independent per datagram and may reorder (multipath, netem-style jitter).
    pub reorder: bool,
}

/// A loss model, tagged by `model`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "model", rename_all = "snake_case", deny_unknown_fields)]
pub enum Loss {
    /// No loss. No draws.
    #[default]
    None,
    /// Independent loss with `probability` per datagram. One draw.
    Bernoulli {
        /// Loss probability.
        probability: f64,
    },
    /// Gilbert-Elliott channel with raw parameters (see [`GilbertElliott`]), stepping per
    /// datagram or, with `slot_ms`, per slot of time. Two draws.
    ///
    /// ```toml
    /// loss = { model = "gilbert_elliott", p = 0.02, r = 0.25, loss_good = 0.01, loss_bad = 0.9, slot_ms = 10.0 }
    /// ```
    GilbertElliott(GilbertElliott),
    /// Bursty loss given by its mean loss rate and mean burst length: the simple Gilbert
    /// model, i.e. Gilbert-Elliott with `loss_good = 0`, `loss_bad = 1` and
    /// `r = 1 / mean_burst_len`, `p = r * mean_loss / (1 - mean_loss)`
    /// (see [`GilbertElliott::from_mean_loss`]). Two draws.
    ///
    /// ```toml
    /// loss = { model = "burst", mean_loss = 0.10, mean_burst_len = 3.5, slot_ms = 10.0 }
    /// ```
    Burst {
        /// Long-run fraction of datagrams lost, in `[0, 1)`.
        mean_loss: f64,
        /// Mean length of a loss burst (a Bad sojourn), >= 1: in datagrams without
        /// `slot_ms`, in slots with it (so `3.5` with `slot_ms = 10.0` is a 35 ms mean
        /// burst).
        mean_burst_len: f64,
        /// Slot length, ms: the chain steps once per slot of virtual time instead of once
        /// per datagram (see [`GilbertElliott::slot_ms`]). Absent: per datagram.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        slot_ms: Option<f64>,
    },
}

impl Loss {
    /// The Gilbert-Elliott parameters for the two bursty models, `None` otherwise.
    pub fn gilbert_elliott(&self) -> Option<GilbertElliott> {
        match *self {
            Loss::GilbertElliott(ge) => Some(ge),
            Loss::Burst {
                mean_loss,
                mean_burst_len,
                slot_ms,
            } => Some(GilbertElliott {
                slot_ms,
                ..GilbertElliott::from_mean_loss(mean_loss, mean_burst_len)
            }),
            Loss::None | Loss::Bernoulli { .. } => None,
        }
    }

    /// Long-run fraction of datagrams lost (for the bursty models: of datagrams whose offer
    /// times do not depend on the chain, see [`GilbertElliott::mean_loss`]).
    pub fn mean_loss(&self) -> f64 {
        match self {
            Loss::None => 0.0,
            Loss::Bernoulli { probability } => *probability,
            Loss::GilbertElliott(ge) => ge.mean_loss(),
            Loss::Burst { mean_loss, .. } => *mean_loss,
        }
    }

    fn validate(&self) -> Result<(), LinkSpecError> {
        match *self {
            Loss::None => Ok(()),
            Loss::Bernoulli { probability } => self::probability("loss.probability", probability),
            Loss::GilbertElliott(ge) => ge.validate(),
            Loss::Burst {
                mean_loss,
                mean_burst_len,
                slot_ms,
            } => {
                check(
                    "loss.mean_loss",
                    mean_loss,
                    (0.0..1.0).contains(&mean_loss),
                    "a value in [0, 1)",
                )?;
                check(
                    "loss.mean_burst_len",
                    mean_burst_len,
                    mean_burst_len.is_finite() && mean_burst_len >= 1.0,
                    "a finite number >= 1",
                )?;
                let ge = GilbertElliott::from_mean_loss(mean_loss, mean_burst_len);
                check(
                    "loss.mean_loss",
                    mean_loss,
                    ge.p <= 1.0,
                    "mean_loss / (1 - mean_loss) <= mean_burst_len (else p > 1)",
                )?;
                validate_slot_ms(slot_ms)
            }
        }
    }
}

/// Parameters of the Gilbert-Elliott two-state Markov loss model (E. N. Gilbert, "Capacity
/// of a burst-noise channel", 1960; E. O. Elliott, "Estimates of error rates for codes on
/// burst-noise channels", 1963).
///
/// The channel is in state Good or Bad and starts in Good. Each datagram is lost with the
/// current state's probability (`loss_good` = 1 - k, `loss_bad` = 1 - h in the papers'
/// notation). The chain moves in *steps*: Good→Bad with probability `p` and Bad→Good with
/// probability `r` per step. The stationary share of Bad is `π_B = p / (p + r)`; Bad
/// sojourns are geometric with mean `1 / r` steps. What a step is depends on `slot_ms`:
///
/// - **Per datagram** (`slot_ms` absent, as netem's `loss gemodel`): each datagram decides
///   loss in the current state, then the chain takes one step. The loss pattern depends only
///   on the count of datagrams, not on their timing: a path that goes quiet stays in Bad
///   until datagrams flow again, so sparse probes after a burst (a QUIC PTO backing off) are
///   each lost with probability `1 - r`.
/// - **Per slot** (`slot_ms` present): virtual time is cut into slots `[k·slot, (k+1)·slot)`
///   from time 0, and the chain takes one step per slot, whether datagrams flow or not, as a
///   fade or a queue overflow lasts a time rather than a number of packets. A datagram
///   offered in slot `k` first advances the chain by the `n` slots since the slot of the
///   previous datagram, with the closed form of [`p_bad_after`](GilbertElliott::p_bad_after)
///   (one draw), then decides loss in the resulting state (one draw). Datagrams in the same
///   slot share its state (`n = 0`); the position within the slot is kept, so no time is
///   lost between datagrams. After a silence much longer than `1 / (p + r)` slots the state
///   is Bad with probability `π_B` again, whatever it was. The slot clock is the time the
///   datagram is offered to the link, so other stages' delays do not change it.
///
/// Either way [`mean_loss`](GilbertElliott::mean_loss) is the loss rate of datagrams whose
/// offer times do not depend on the chain, e.g. a fixed-rate stream.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GilbertElliott {
    /// P(Good → Bad) per step (datagram, or slot with `slot_ms`).
    pub p: f64,
    /// P(Bad → Good) per step (datagram, or slot with `slot_ms`).
    pub r: f64,
    /// Loss probability in Good (1 - k). Default 0.
    #[serde(default)]
    pub loss_good: f64,
    /// Loss probability in Bad (1 - h). Default 1.
    #[serde(default = "one")]
    pub loss_bad: f64,
    /// Slot length, ms (> 0, rounded to whole ns, at least 1 ns): the chain steps once per
    /// slot of virtual time. `None` (absent): once per datagram.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot_ms: Option<f64>,
}

fn one() -> f64 {
    1.0
}

impl GilbertElliott {
    /// The simple Gilbert model with long-run loss `mean_loss` and mean loss-burst length
    /// `mean_burst_len` steps: `loss_good = 0`, `loss_bad = 1`, so a burst is exactly a Bad
    /// sojourn, whose mean is `1 / r`; hence `r = 1 / mean_burst_len`, and from
    /// `p / (p + r) = mean_loss`, `p = r * mean_loss / (1 - mean_loss)`. Per datagram
    /// (`slot_ms: None`); set `slot_ms` on the result for the per-slot chain.
    pub fn from_mean_loss(mean_loss: f64, mean_burst_len: f64) -> GilbertElliott {
        let r = 1.0 / mean_burst_len;
        GilbertElliott {
            p: r * mean_loss / (1.0 - mean_loss),
            r,
            loss_good: 0.0,
            loss_bad: 1.0,
            slot_ms: None,
        }
    }

    /// Probability that the chain is in Bad `steps` steps after being in Bad (`from_bad`) or
    /// Good: the `steps`-th power of the transition matrix in closed form. With
    /// `λ = 1 - p - r` (the matrix's second eigenvalue, in `[-1, 1]`) and
    /// `π_B =` [`stationary_bad`](GilbertElliott::stationary_bad),
    ///
    /// ```text
    /// P(Bad after n | Bad)  = π_B + (1 - π_B) λⁿ
    /// P(Bad after n | Good) = π_B (1 - λⁿ)
    /// ```
    ///
    /// so `steps = 0` gives exactly 1 or 0, `steps = 1` gives `1 - r` or `p`, and the
    /// dependence on the start decays as `λⁿ` towards `π_B`.
    pub fn p_bad_after(&self, from_bad: bool, steps: u64) -> f64 {
        if steps == 0 {
            return if from_bad { 1.0 } else { 0.0 };
        }
        let bad = self.stationary_bad();
        let lambda = 1.0 - self.p - self.r;
        // λⁿ with the sign taken from n's parity, exact for any u64 (f64 cannot hold every
        // n's parity, and powf of a negative base needs an integral exponent).
        let magnitude = lambda.abs().powf(steps as f64);
        let lambda_n = if lambda < 0.0 && steps % 2 == 1 {
            -magnitude
        } else {
            magnitude
        };
        let p = if from_bad {
            bad + (1.0 - bad) * lambda_n
        } else {
            bad * (1.0 - lambda_n)
        };
        p.clamp(0.0, 1.0)
    }

    /// Stationary probability of the Bad state, `p / (p + r)` (0 if `p + r == 0`: the chain
    /// stays in Good, where it starts).
    pub fn stationary_bad(&self) -> f64 {
        if self.p + self.r > 0.0 {
            self.p / (self.p + self.r)
        } else {
            0.0
        }
    }

    /// Long-run loss rate, `π_G · loss_good + π_B · loss_bad`: the loss rate of datagrams
    /// whose offer times do not depend on the chain's state (any fixed schedule, per datagram
    /// or per slot). A sender that reacts to loss samples the chain selectively and can see
    /// a different rate.
    pub fn mean_loss(&self) -> f64 {
        let bad = self.stationary_bad();
        (1.0 - bad) * self.loss_good + bad * self.loss_bad
    }

    /// Expected length of a run of consecutive losses, in the stationary chain, in steps:
    /// `P(loss) / P(loss, then no loss)`. For `loss_good = 0, loss_bad = 1` this is `1 / r`.
    /// Infinite if a loss is never followed by a delivery. Per slot, this is the run length
    /// seen by one datagram per slot; the time a burst lasts is this many slots.
    pub fn mean_burst_len(&self) -> f64 {
        let bad = self.stationary_bad();
        let good = 1.0 - bad;
        let (lg, lb) = (self.loss_good, self.loss_bad);
        let ends = good * lg * ((1.0 - self.p) * (1.0 - lg) + self.p * (1.0 - lb))
            + bad * lb * (self.r * (1.0 - lg) + (1.0 - self.r) * (1.0 - lb));
        if ends > 0.0 {
            self.mean_loss() / ends
        } else {
            f64::INFINITY
        }
    }

    fn validate(&self) -> Result<(), LinkSpecError> {
        probability("loss.p", self.p)?;
        probability("loss.r", self.r)?;
        probability("loss.loss_good", self.loss_good)?;
        probability("loss.loss_bad", self.loss_bad)?;
        validate_slot_ms(self.slot_ms)
    }
}

fn validate_slot_ms(slot_ms: Option<f64>) -> Result<(), LinkSpecError> {
    match slot_ms {
        None => Ok(()),
        Some(ms) => check(
            "loss.slot_ms",
            ms,
            ms.is_finite() && ms > 0.0,
            "a finite number of ms > 0",
        ),
    }
}

/// Duplication: with `probability`, a delivered datagram arrives twice, the copy
/// `U[0, max_delay_ms]` after the original. Two draws.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DuplicateSpec {
    /// Probability of a copy.
    pub probability: f64,
    /// Largest delay of the copy after the original, ms.
    pub max_delay_ms: f64,
}

/// Reordering: with `probability`, a datagram is held back `delay_ms` more, so those offered
/// after it within that time overtake it. One draw.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReorderSpec {
    /// Probability of holding a datagram back.
    pub probability: f64,
    /// How long it is held, ms.
    pub delay_ms: f64,
}

/// A bottleneck: FIFO serialisation at `rate_kbit_s` behind a tail-drop queue of
/// `queue_bytes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BandwidthSpec {
    /// Link rate, kbit/s (1 kbit = 1000 bits).
    pub rate_kbit_s: f64,
    /// Bytes the queue holds, counting the unsent part of the datagram being serialised. A
    /// datagram that would take the backlog above this is dropped
    /// ([`DropReason::QueueFull`](super::DropReason::QueueFull)), except that an idle link
    /// always accepts one. A common sizing is rate × 100 ms.
    pub queue_bytes: u64,
}

impl BandwidthSpec {
    /// The rate in bit/s (rounded, at least 1).
    pub fn rate_bps(&self) -> u64 {
        ((self.rate_kbit_s * 1000.0).round() as u64).max(1)
    }
}

/// A [`LinkSpec`] field out of range. Fix the value in the scenario or spec.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("link spec field `{field}` = {value}: expected {expected}")]
pub struct LinkSpecError {
    /// The field, dotted (`loss.probability`).
    pub field: &'static str,
    /// Its value.
    pub value: f64,
    /// What it must be.
    pub expected: &'static str,
}

fn check(field: &'static str, value: f64, ok: bool, expected: &'static str) -> Result<(), LinkSpecError> {
    if ok {
        Ok(())
    } else {
        Err(LinkSpecError {
            field,
            value,
            expected,
        })
    }
}

fn probability(field: &'static str, value: f64) -> Result<(), LinkSpecError> {
    check(
        field,
        value,
        (0.0..=1.0).contains(&value),
        "a probability in [0, 1]",
    )
}

fn non_negative(field: &'static str, value: f64) -> Result<(), LinkSpecError> {
    check(
        field,
        value,
        value.is_finite() && value >= 0.0,
        "a finite number >= 0",
    )
}

impl LinkSpec {
    /// Names accepted by [`LinkSpec::preset`].
    pub const PRESETS: &'static [&'static str] =
        &["lan", "wifi", "mobile", "intercontinental", "lossy-burst"];

    /// A named, realistic link direction; `None` for an unknown name. All carry 1472-byte
    /// UDP payloads (Ethernet MTU over IPv4) except `mobile` (1400: LTE/5G tunnels cost
    /// ~100 bytes).
    ///
    /// | name | one way | jitter | loss | other |
    /// |---|---|---|---|---|
    /// | `lan` | 0.2 ms + U[0, 0.1] ≈ 0.25 ms | FIFO | none | 1 Gbit/s, 256 KiB queue |
    /// | `wifi` | N(4, 1) ≥ 1 + U[0, 2] ≈ 5 ms | FIFO | bursts: 0.5 %, mean burst 2 slots of 5 ms = 10 ms | 50 Mbit/s, 625 kB (100 ms) queue |
    /// | `mobile` | N(35, 5) ≥ 15 + U[0, 10] ≈ 40 ms | FIFO | bursts: 1.5 %, mean burst 2.5 slots of 20 ms = 50 ms | 10 Mbit/s, 125 kB (100 ms) queue; 0.5 % held 5 ms (reorder); 0.1 % duplicated |
    /// | `intercontinental` | 122.5 + Pareto(1.5 ms, α 3) + U[0, 3.5] ≈ 125 ms | FIFO | Bernoulli 0.1 % | 100 Mbit/s, 1.25 MB queue |
    /// | `lossy-burst` | 30 ms + U[0, 5] ≈ 32.5 ms | FIFO | bursts: 10 %, mean burst 3.5 slots of 10 ms = 35 ms | |
    ///
    /// The bursty presets use [`Loss::Burst`] with a `slot_ms`, so their bursts last a time
    /// and a path that goes quiet recovers (see [`GilbertElliott`]); the loss percentages are
    /// the mean loss of datagrams sent on a fixed schedule. The burst durations: on Wi-Fi,
    /// the losses that survive the 802.11 MAC's own retries come from interference and
    /// collisions lasting a few ms to tens of ms (10 ms mean); on a cellular path, from fades
    /// and handover interruptions of tens of ms (50 ms mean); `lossy-burst` is a stress
    /// case between the two (35 ms mean) with a far higher rate.
    ///
    /// The normal latencies have a floor, as real paths have a physical minimum delay (and a
    /// simulator running nodes in parallel needs one: see
    /// [`min_delay_ns`](LinkSpec::min_delay_ns)). `wifi`: 1 ms — 802.11 channel access
    /// (DIFS and a random backoff), the frame's airtime and its ACK, then the wired hops
    /// behind the access point, leave no Wi-Fi path much under a millisecond one way; it is
    /// 3 sd below the mean, so about 0.13 % of samples are raised to it. `mobile`: 15 ms — on
    /// LTE an uplink packet waits for a scheduling request and grant before it goes on air in
    /// 1 ms subframes (about 10 ms together), before the core network and the route to the
    /// server; 4 sd below the mean, so the floor raises about 3 samples in 100 000.
    ///
    /// `intercontinental` is ≈ 250 ms RTT, e.g. Europe–Australia on a good route; a
    /// scenario wanting the ≈ 500 ms RTT of a poor antipodal or satellite path overrides
    /// `latency`.
    pub fn preset(name: &str) -> Option<LinkSpec> {
        const ETHERNET_UDP_PAYLOAD: usize = 1472;
        let base = LinkSpec {
            mtu_bytes: Some(ETHERNET_UDP_PAYLOAD),
            ..LinkSpec::default()
        };
        let spec = match name {
            "lan" => LinkSpec {
                latency: Delay::Constant { ms: 0.2 },
                jitter: JitterSpec {
                    max_ms: 0.1,
                    reorder: false,
                },
                bandwidth: Some(BandwidthSpec {
                    rate_kbit_s: 1_000_000.0,
                    queue_bytes: 256 * 1024,
                }),
                ..base
            },
            "wifi" => LinkSpec {
                latency: Delay::Normal {
                    mean_ms: 4.0,
                    sd_ms: 1.0,
                    min_ms: 1.0,
                },
                jitter: JitterSpec {
                    max_ms: 2.0,
                    reorder: false,
                },
                loss: Loss::Burst {
                    mean_loss: 0.005,
                    mean_burst_len: 2.0,
                    slot_ms: Some(5.0),
                },
                bandwidth: Some(BandwidthSpec {
                    rate_kbit_s: 50_000.0,
                    queue_bytes: 625_000,
                }),
                ..base
            },
            "mobile" => LinkSpec {
                mtu_bytes: Some(1400),
                latency: Delay::Normal {
                    mean_ms: 35.0,
                    sd_ms: 5.0,
                    min_ms: 15.0,
                },
                jitter: JitterSpec {
                    max_ms: 10.0,
                    reorder: false,
                },
                loss: Loss::Burst {
                    mean_loss: 0.015,
                    mean_burst_len: 2.5,
                    slot_ms: Some(20.0),
                },
                duplicate: DuplicateSpec {
                    probability: 0.001,
                    max_delay_ms: 1.0,
                },
                reorder: ReorderSpec {
                    probability: 0.005,
                    delay_ms: 5.0,
                },
                bandwidth: Some(BandwidthSpec {
                    rate_kbit_s: 10_000.0,
                    queue_bytes: 125_000,
                }),
                ..base
            },
            "intercontinental" => LinkSpec {
                latency: Delay::Pareto {
                    base_ms: 122.5,
                    scale_ms: 1.5,
                    alpha: 3.0,
                },
                jitter: JitterSpec {
                    max_ms: 3.5,
                    reorder: false,
                },
                loss: Loss::Bernoulli { probability: 0.001 },
                bandwidth: Some(BandwidthSpec {
                    rate_kbit_s: 100_000.0,
                    queue_bytes: 1_250_000,
                }),
                ..base
            },
            "lossy-burst" => LinkSpec {
                latency: Delay::Constant { ms: 30.0 },
                jitter: JitterSpec {
                    max_ms: 5.0,
                    reorder: false,
                },
                loss: Loss::Burst {
                    mean_loss: 0.10,
                    mean_burst_len: 3.5,
                    slot_ms: Some(10.0),
                },
                ..base
            },
            _ => return None,
        };
        Some(spec)
    }

    /// The smallest delay a datagram offered to this link can take, ns: the latency's lower
    /// bound ([`Delay::min_ms`]), as every other stage (bandwidth, jitter, reordering,
    /// duplication) only adds delay. A simulator may run the two ends of the link this far
    /// apart in virtual time.
    pub fn min_delay_ns(&self) -> Nanos {
        super::ms_to_ns(self.latency.min_ms())
    }

    /// Expected one-way delay without queueing or serialisation, ms: the latency mean, plus
    /// the jitter mean (`max_ms / 2`), plus the reorder hold averaged over datagrams. FIFO
    /// clamping of jitter adds a little on top; this is for reports.
    pub fn mean_one_way_ms(&self) -> f64 {
        self.latency.mean_ms() + self.jitter.max_ms / 2.0 + self.reorder.probability * self.reorder.delay_ms
    }

    /// Checks every field's range. [`Link::new`](super::Link::new) panics on a spec that
    /// fails this; call it when loading specs.
    pub fn validate(&self) -> Result<(), LinkSpecError> {
        probability("corrupt_probability", self.corrupt_probability)?;
        self.latency.validate()?;
        non_negative("jitter.max_ms", self.jitter.max_ms)?;
        self.loss.validate()?;
        probability("duplicate.probability", self.duplicate.probability)?;
        non_negative("duplicate.max_delay_ms", self.duplicate.max_delay_ms)?;
        probability("reorder.probability", self.reorder.probability)?;
        non_negative("reorder.delay_ms", self.reorder.delay_ms)?;
        if let Some(bw) = &self.bandwidth {
            check(
                "bandwidth.rate_kbit_s",
                bw.rate_kbit_s,
                bw.rate_kbit_s.is_finite() && bw.rate_kbit_s > 0.0,
                "a finite rate > 0",
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_form_converts_to_gilbert_elliott() {
        let ge = GilbertElliott::from_mean_loss(0.1, 4.0);
        assert!((ge.r - 0.25).abs() < 1e-12);
        assert!((ge.p - 0.25 / 9.0).abs() < 1e-12);
        assert!((ge.mean_loss() - 0.1).abs() < 1e-12);
        assert!((ge.mean_burst_len() - 4.0).abs() < 1e-9);
        assert_eq!(ge.slot_ms, None);
        let spec = Loss::Burst {
            mean_loss: 0.1,
            mean_burst_len: 4.0,
            slot_ms: None,
        };
        assert_eq!(spec.gilbert_elliott(), Some(ge));
        let timed = Loss::Burst {
            mean_loss: 0.1,
            mean_burst_len: 4.0,
            slot_ms: Some(10.0),
        };
        let timed_ge = GilbertElliott {
            slot_ms: Some(10.0),
            ..ge
        };
        assert_eq!(timed.gilbert_elliott(), Some(timed_ge));
        assert_eq!(Loss::Bernoulli { probability: 0.1 }.gilbert_elliott(), None);
    }

    /// `P(Bad after n | from)` by multiplying out the 2×2 transition matrix.
    fn by_matrix(ge: &GilbertElliott, from_bad: bool, n: u64) -> f64 {
        let mut bad = if from_bad { 1.0 } else { 0.0 };
        for _ in 0..n {
            bad = bad * (1.0 - ge.r) + (1.0 - bad) * ge.p;
        }
        bad
    }

    fn chain(p: f64, r: f64) -> GilbertElliott {
        GilbertElliott {
            p,
            r,
            loss_good: 0.0,
            loss_bad: 1.0,
            slot_ms: Some(10.0),
        }
    }

    #[test]
    fn n_step_transition_in_closed_form() {
        // λ > 0 (bursty), λ < 0 (alternating), λ = 0 (memoryless), λ = 1 (frozen), λ = -1.
        let chains = [
            GilbertElliott::from_mean_loss(0.1, 3.5),
            chain(0.9, 0.8),
            chain(0.3, 0.7),
            chain(0.0, 0.0),
            chain(1.0, 1.0),
        ];
        for ge in chains {
            for from_bad in [false, true] {
                // n = 0: the identity, exactly.
                assert_eq!(ge.p_bad_after(from_bad, 0), if from_bad { 1.0 } else { 0.0 });
                // n = 1: one step of the chain.
                let one = if from_bad { 1.0 - ge.r } else { ge.p };
                assert!((ge.p_bad_after(from_bad, 1) - one).abs() < 1e-12, "{ge:?}");
                for n in 0..40 {
                    let (closed, matrix) = (ge.p_bad_after(from_bad, n), by_matrix(&ge, from_bad, n));
                    assert!((closed - matrix).abs() < 1e-12, "{ge:?} {from_bad} {n}");
                }
            }
        }
        // Large n: the stationary share of Bad, from either state.
        let ge = GilbertElliott::from_mean_loss(0.1, 3.5);
        for n in [1_000, 1 << 40, u64::MAX] {
            for from_bad in [false, true] {
                assert!((ge.p_bad_after(from_bad, n) - 0.1).abs() < 1e-12);
            }
        }
        // |λ| = 1 never mixes: frozen stays put, λ = -1 alternates by parity even for huge n.
        assert_eq!(chain(0.0, 0.0).p_bad_after(true, u64::MAX), 1.0);
        assert_eq!(chain(0.0, 0.0).p_bad_after(false, u64::MAX), 0.0);
        assert_eq!(chain(1.0, 1.0).p_bad_after(true, u64::MAX), 0.0);
        assert_eq!(chain(1.0, 1.0).p_bad_after(true, u64::MAX - 1), 1.0);
    }

    #[test]
    fn raw_gilbert_elliott_moments() {
        // Loss in Good only, never switching: a Bernoulli channel, runs of mean 1 / (1 - l).
        let ge = GilbertElliott {
            p: 0.0,
            r: 0.0,
            loss_good: 0.2,
            loss_bad: 1.0,
            slot_ms: None,
        };
        assert!((ge.mean_loss() - 0.2).abs() < 1e-12);
        assert!((ge.mean_burst_len() - 1.25).abs() < 1e-12);
        // Stuck in Bad, where every datagram is lost: bursts never end.
        let stuck = GilbertElliott {
            p: 1.0,
            r: 0.0,
            loss_good: 0.0,
            loss_bad: 1.0,
            slot_ms: None,
        };
        assert_eq!(stuck.mean_burst_len(), f64::INFINITY);
    }

    #[test]
    fn validation_names_the_field() {
        let bad = |spec: LinkSpec| spec.validate().unwrap_err().field;
        let d = LinkSpec::default;
        assert_eq!(
            bad(LinkSpec {
                corrupt_probability: 1.5,
                ..d()
            }),
            "corrupt_probability"
        );
        assert_eq!(
            bad(LinkSpec {
                latency: Delay::Constant { ms: -1.0 },
                ..d()
            }),
            "latency.ms"
        );
        assert_eq!(
            bad(LinkSpec {
                latency: Delay::Uniform {
                    min_ms: 2.0,
                    max_ms: 1.0
                },
                ..d()
            }),
            "latency.max_ms"
        );
        let pareto = Delay::Pareto {
            base_ms: 1.0,
            scale_ms: 1.0,
            alpha: 1.0,
        };
        assert_eq!(
            bad(LinkSpec {
                latency: pareto,
                ..d()
            }),
            "latency.alpha"
        );
        assert_eq!(
            bad(LinkSpec {
                jitter: JitterSpec {
                    max_ms: f64::NAN,
                    reorder: false
                },
                ..d()
            }),
            "jitter.max_ms"
        );
        let burst = |mean_loss, mean_burst_len, slot_ms| LinkSpec {
            loss: Loss::Burst {
                mean_loss,
                mean_burst_len,
                slot_ms,
            },
            ..d()
        };
        assert_eq!(bad(burst(1.0, 2.0, None)), "loss.mean_loss");
        assert_eq!(bad(burst(0.1, 0.5, None)), "loss.mean_burst_len");
        assert_eq!(bad(burst(0.8, 1.0, None)), "loss.mean_loss");
        assert_eq!(bad(burst(0.1, 2.0, Some(0.0))), "loss.slot_ms");
        assert_eq!(bad(burst(0.1, 2.0, Some(f64::INFINITY))), "loss.slot_ms");
        burst(0.1, 2.0, Some(0.5)).validate().unwrap();
        let ge = |r, slot_ms| LinkSpec {
            loss: Loss::GilbertElliott(GilbertElliott {
                r,
                slot_ms,
                ..chain(0.1, 0.1)
            }),
            ..d()
        };
        assert_eq!(bad(ge(2.0, None)), "loss.r");
        assert_eq!(bad(ge(0.2, Some(-1.0))), "loss.slot_ms");
        assert_eq!(bad(ge(0.2, Some(f64::NAN))), "loss.slot_ms");
        let bw = BandwidthSpec {
            rate_kbit_s: 0.0,
            queue_bytes: 1,
        };
        assert_eq!(
            bad(LinkSpec {
                bandwidth: Some(bw),
                ..d()
            }),
            "bandwidth.rate_kbit_s"
        );
        let err = LinkSpec {
            duplicate: DuplicateSpec {
                probability: 2.0,
                max_delay_ms: 0.0,
            },
            ..d()
        }
        .validate();
        assert_eq!(
            err.unwrap_err().to_string(),
            "link spec field `duplicate.probability` = 2: expected a probability in [0, 1]"
        );
    }

    #[test]
    fn presets_are_valid() {
        for name in LinkSpec::PRESETS {
            LinkSpec::preset(name).unwrap().validate().unwrap();
        }
        assert_eq!(LinkSpec::default().mean_one_way_ms(), 0.0);
    }
}
