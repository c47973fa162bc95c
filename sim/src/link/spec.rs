//! [`LinkSpec`]: the serde (TOML) description of one link direction, its validation and the
//! named presets.

use serde::{Deserialize, Serialize};

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
/// loss = { model = "burst", mean_loss = 0.015, mean_burst_len = 2.5 }
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
    /// Box-Muller transform (two draws), clamped at 0. The clamp shifts the mean
    /// noticeably only when `sd_ms` is above about a third of `mean_ms`.
    Normal {
        /// Mean, ms.
        mean_ms: f64,
        /// Standard deviation, ms.
        sd_ms: f64,
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
    /// The distribution's mean, ms (for [`Delay::Normal`], ignoring the clamp at 0).
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
            Delay::Normal { mean_ms, sd_ms } => {
                non_negative("latency.mean_ms", mean_ms)?;
                non_negative("latency.sd_ms", sd_ms)
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
    /// Gilbert-Elliott channel with raw parameters (see [`GilbertElliott`]). Two draws.
    GilbertElliott(GilbertElliott),
    /// Bursty loss given by its mean loss rate and mean burst length: the simple Gilbert
    /// model, i.e. Gilbert-Elliott with `loss_good = 0`, `loss_bad = 1` and
    /// `r = 1 / mean_burst_len`, `p = r * mean_loss / (1 - mean_loss)`
    /// (see [`GilbertElliott::from_mean_loss`]). Two draws.
    Burst {
        /// Long-run fraction of datagrams lost, in `[0, 1)`.
        mean_loss: f64,
        /// Mean number of consecutive losses, >= 1.
        mean_burst_len: f64,
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
            } => Some(GilbertElliott::from_mean_loss(mean_loss, mean_burst_len)),
            Loss::None | Loss::Bernoulli { .. } => None,
        }
    }

    /// Long-run fraction of datagrams lost.
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
                )
            }
        }
    }
}

/// Parameters of the Gilbert-Elliott two-state Markov loss model (E. N. Gilbert, "Capacity
/// of a burst-noise channel", 1960; E. O. Elliott, "Estimates of error rates for codes on
/// burst-noise channels", 1963).
///
/// The channel is in state Good or Bad. Per datagram it first decides loss with the current
/// state's probability (`loss_good` = 1 - k, `loss_bad` = 1 - h in the papers' notation),
/// then moves Good→Bad with probability `p` and Bad→Good with probability `r`. It starts in
/// Good. The stationary share of Bad is `p / (p + r)`; Bad sojourns are geometric with mean
/// `1 / r` datagrams.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GilbertElliott {
    /// P(Good → Bad) per datagram.
    pub p: f64,
    /// P(Bad → Good) per datagram.
    pub r: f64,
    /// Loss probability in Good (1 - k). Default 0.
    #[serde(default)]
    pub loss_good: f64,
    /// Loss probability in Bad (1 - h). Default 1.
    #[serde(default = "one")]
    pub loss_bad: f64,
}

fn one() -> f64 {
    1.0
}

impl GilbertElliott {
    /// The simple Gilbert model with long-run loss `mean_loss` and mean loss-burst length
    /// `mean_burst_len` datagrams: `loss_good = 0`, `loss_bad = 1`, so a burst is exactly a
    /// Bad sojourn, whose mean is `1 / r`; hence `r = 1 / mean_burst_len`, and from
    /// `p / (p + r) = mean_loss`, `p = r * mean_loss / (1 - mean_loss)`.
    pub fn from_mean_loss(mean_loss: f64, mean_burst_len: f64) -> GilbertElliott {
        let r = 1.0 / mean_burst_len;
        GilbertElliott {
            p: r * mean_loss / (1.0 - mean_loss),
            r,
            loss_good: 0.0,
            loss_bad: 1.0,
        }
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

    /// Long-run loss rate, `π_G · loss_good + π_B · loss_bad`.
    pub fn mean_loss(&self) -> f64 {
        let bad = self.stationary_bad();
        (1.0 - bad) * self.loss_good + bad * self.loss_bad
    }

    /// Expected length of a run of consecutive losses, in the stationary chain:
    /// `P(loss) / P(loss, then no loss)`. For `loss_good = 0, loss_bad = 1` this is `1 / r`.
    /// Infinite if a loss is never followed by a delivery.
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
        probability("loss.loss_bad", self.loss_bad)
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
    /// | `wifi` | N(4, 1) + U[0, 2] ≈ 5 ms | FIFO | bursts: 0.5 %, mean burst 2 | 50 Mbit/s, 625 kB (100 ms) queue |
    /// | `mobile` | N(35, 5) + U[0, 10] ≈ 40 ms | FIFO | bursts: 1.5 %, mean burst 2.5 | 10 Mbit/s, 125 kB (100 ms) queue; 0.5 % held 5 ms (reorder); 0.1 % duplicated |
    /// | `intercontinental` | 122.5 + Pareto(1.5 ms, α 3) + U[0, 3.5] ≈ 125 ms | FIFO | Bernoulli 0.1 % | 100 Mbit/s, 1.25 MB queue |
    /// | `lossy-burst` | 30 ms + U[0, 5] ≈ 32.5 ms | FIFO | bursts: 10 %, mean burst 3.5 | |
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
                },
                jitter: JitterSpec {
                    max_ms: 2.0,
                    reorder: false,
                },
                loss: Loss::Burst {
                    mean_loss: 0.005,
                    mean_burst_len: 2.0,
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
                },
                jitter: JitterSpec {
                    max_ms: 10.0,
                    reorder: false,
                },
                loss: Loss::Burst {
                    mean_loss: 0.015,
                    mean_burst_len: 2.5,
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
                },
                ..base
            },
            _ => return None,
        };
        Some(spec)
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
        let spec = Loss::Burst {
            mean_loss: 0.1,
            mean_burst_len: 4.0,
        };
        assert_eq!(spec.gilbert_elliott(), Some(ge));
        assert_eq!(Loss::Bernoulli { probability: 0.1 }.gilbert_elliott(), None);
    }

    #[test]
    fn raw_gilbert_elliott_moments() {
        // Loss in Good only, never switching: a Bernoulli channel, runs of mean 1 / (1 - l).
        let ge = GilbertElliott {
            p: 0.0,
            r: 0.0,
            loss_good: 0.2,
            loss_bad: 1.0,
        };
        assert!((ge.mean_loss() - 0.2).abs() < 1e-12);
        assert!((ge.mean_burst_len() - 1.25).abs() < 1e-12);
        // Stuck in Bad, where every datagram is lost: bursts never end.
        let stuck = GilbertElliott {
            p: 1.0,
            r: 0.0,
            loss_good: 0.0,
            loss_bad: 1.0,
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
        let burst = |mean_loss, mean_burst_len| LinkSpec {
            loss: Loss::Burst {
                mean_loss,
                mean_burst_len,
            },
            ..d()
        };
        assert_eq!(bad(burst(1.0, 2.0)), "loss.mean_loss");
        assert_eq!(bad(burst(0.1, 0.5)), "loss.mean_burst_len");
        assert_eq!(bad(burst(0.8, 1.0)), "loss.mean_loss");
        let ge = GilbertElliott {
            p: 0.1,
            r: 2.0,
            loss_good: 0.0,
            loss_bad: 1.0,
        };
        assert_eq!(
            bad(LinkSpec {
                loss: Loss::GilbertElliott(ge),
                ..d()
            }),
            "loss.r"
        );
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
