//! Link models: what the network does to each datagram of one direction of a path.
//!
//! A link is a [`Pipeline`] of [`Element`]s sharing one contract — a datagram in, the
//! datagram (delayed, changed or dropped) and any copies out — in the style of neqo's
//! `test-fixture/src/sim` and str0m's `netem`. [`Link`] builds the standard pipeline from a
//! [`LinkSpec`] (TOML-friendly, with named [presets](LinkSpec::preset)) and keeps
//! [`LinkStats`]:
//!
//! ```text
//! Mtu → Bandwidth → Latency → Jitter → loss → Reorder → Corrupt → Duplicate
//! ```
//!
//! Time is virtual (`Nanos`) and only moves forward: a link is offered datagrams with
//! non-decreasing `now` and answers at once with their fate ([`Outcome`]), so queueing is
//! computed analytically and no timers are needed. Bursty loss ([`GilbertElliott`]) steps
//! per datagram, as netem's does, or per slot of virtual time (`slot_ms`), so that a path
//! that goes quiet during a burst recovers while it is quiet.
//!
//! Randomness: each random element draws from its own [`RngStream`], derived from the link's
//! 32-byte seed and a purpose label with SHA-256, and draws a fixed number of values per
//! datagram offered — also for datagrams an earlier element dropped ([`Element::skip`]).
//! Changing one knob therefore never reshuffles another: raising the loss rate leaves the
//! delivery times of the datagrams that still get through unchanged.
//!
//! ```
//! use tickwire_sim::link::{Link, LinkSpec};
//!
//! let spec = LinkSpec::preset("wifi").unwrap();
//! let mut link = Link::new(&spec, [7; 32]);
//! let outcome = link.transmit(1_000_000, vec![0; 100]);
//! for delivery in &outcome.deliveries {
//!     assert!(delivery.at > 1_000_000);
//! }
//! assert_eq!(link.stats().offered, 1);
//! ```

use std::fmt;

use serde::Serialize;

mod element;
mod elements;
mod spec;

pub use element::{Element, InFlight, Pipeline, RngStream, Verdict};
pub use elements::{
    ms_to_ns, Bandwidth, BernoulliLoss, Corrupt, Duplicate, GilbertElliottLoss, Jitter, Latency, Mtu, Reorder,
};
pub use spec::{
    BandwidthSpec, Delay, DuplicateSpec, GilbertElliott, JitterSpec, LinkSpec, LinkSpecError, Loss,
    ReorderSpec,
};

pub use crate::units::Nanos;

/// Why a link dropped a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// Random loss ([`Loss`]).
    Loss,
    /// The bandwidth queue was full (tail drop).
    QueueFull,
    /// Larger than the path MTU.
    Mtu,
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DropReason::Loss => "loss",
            DropReason::QueueFull => "queue_full",
            DropReason::Mtu => "mtu",
        })
    }
}

/// One datagram arriving at the far end.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// Arrival time, ns of virtual time.
    pub at: Nanos,
    /// The payload (with one bit flipped if `corrupted`).
    pub payload: Vec<u8>,
    /// One bit of the payload was flipped on the way.
    pub corrupted: bool,
    /// This is an extra copy made by the network.
    pub duplicate: bool,
}

/// The fate of one datagram offered to a link.
///
/// If `dropped` is `Some`, `deliveries` is empty: neither the datagram nor any copy
/// arrives. Otherwise `deliveries[0]` is the datagram and any further entries are copies
/// (`duplicate == true`), arriving no earlier than it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    /// What arrives, and when.
    pub deliveries: Vec<Delivery>,
    /// Why the datagram was dropped, if it was.
    pub dropped: Option<DropReason>,
}

/// Counters of one link, since it was created.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LinkStats {
    /// Datagrams offered.
    pub offered: u64,
    /// Datagrams delivered, copies included.
    pub delivered: u64,
    /// Dropped by the loss model.
    pub lost: u64,
    /// Dropped because the bandwidth queue was full.
    pub queue_dropped: u64,
    /// Dropped for exceeding the MTU.
    pub mtu_dropped: u64,
    /// Extra copies delivered.
    pub duplicated: u64,
    /// Deliveries with a flipped bit, copies included.
    pub corrupted: u64,
    /// Datagrams (not copies) delivered earlier than a datagram offered before them.
    pub reordered: u64,
    /// Payload bytes offered.
    pub bytes_offered: u64,
    /// Payload bytes delivered, copies included.
    pub bytes_delivered: u64,
    /// Sum of queueing delay (waiting for the bandwidth stage, before serialisation) over
    /// the datagrams that passed that stage, ns (saturating).
    pub queue_delay_ns_sum: u64,
    /// Largest queueing delay seen, ns.
    pub queue_delay_ns_max: u64,
}

impl LinkStats {
    /// Mean queueing delay of the datagrams that passed the bandwidth stage, ns (0 if none).
    pub fn mean_queue_delay_ns(&self) -> f64 {
        let queued = self.offered - self.mtu_dropped - self.queue_dropped;
        if queued == 0 {
            0.0
        } else {
            self.queue_delay_ns_sum as f64 / queued as f64
        }
    }

    /// Fraction of offered datagrams dropped for any reason (0 if none offered).
    pub fn drop_rate(&self) -> f64 {
        if self.offered == 0 {
            0.0
        } else {
            (self.lost + self.queue_dropped + self.mtu_dropped) as f64 / self.offered as f64
        }
    }
}

/// Stream labels, one per purpose; part of the seed derivation, so changing one changes
/// every run.
mod label {
    pub const LATENCY: &str = "latency";
    pub const JITTER: &str = "jitter";
    pub const LOSS: &str = "loss";
    pub const REORDER: &str = "reorder";
    pub const CORRUPT: &str = "corrupt";
    pub const DUPLICATE: &str = "duplicate";
}

impl Pipeline {
    /// The standard pipeline for `spec`, each random element drawing from the stream
    /// [`RngStream::derive`]`(seed, purpose)`: stages left out by the spec (no MTU, no
    /// bandwidth cap, zero probabilities) are not built.
    ///
    /// # Errors
    /// The spec's [validation](LinkSpec::validate) error.
    pub fn from_spec(spec: &LinkSpec, seed: &[u8; 32]) -> Result<Pipeline, LinkSpecError> {
        spec.validate()?;
        let mut p = Pipeline::new();
        if let Some(mtu) = spec.mtu_bytes {
            p.push(Mtu::new(mtu));
        }
        if let Some(bw) = &spec.bandwidth {
            p.push(Bandwidth::new(bw.rate_bps(), bw.queue_bytes));
        }
        p.push(Latency::new(
            spec.latency.clone(),
            RngStream::derive(seed, label::LATENCY),
        ));
        p.push(Jitter::new(
            spec.jitter.max_ms,
            spec.jitter.reorder,
            RngStream::derive(seed, label::JITTER),
        ));
        match &spec.loss {
            Loss::None => {}
            Loss::Bernoulli { probability } => {
                p.push(BernoulliLoss::new(
                    *probability,
                    RngStream::derive(seed, label::LOSS),
                ));
            }
            loss @ (Loss::GilbertElliott(_) | Loss::Burst { .. }) => {
                let ge = loss
                    .gilbert_elliott()
                    .expect("both variants are Gilbert-Elliott models");
                p.push(GilbertElliottLoss::new(ge, RngStream::derive(seed, label::LOSS)));
            }
        }
        if spec.reorder.probability > 0.0 {
            let rng = RngStream::derive(seed, label::REORDER);
            p.push(Reorder::new(spec.reorder.probability, spec.reorder.delay_ms, rng));
        }
        if spec.corrupt_probability > 0.0 {
            p.push(Corrupt::new(
                spec.corrupt_probability,
                RngStream::derive(seed, label::CORRUPT),
            ));
        }
        if spec.duplicate.probability > 0.0 {
            let rng = RngStream::derive(seed, label::DUPLICATE);
            p.push(Duplicate::new(
                spec.duplicate.probability,
                spec.duplicate.max_delay_ms,
                rng,
            ));
        }
        Ok(p)
    }
}

/// One direction of a simulated path: the standard [`Pipeline`] for a [`LinkSpec`], plus
/// [`LinkStats`].
///
/// Inputs are [`transmit`](Link::transmit) calls with non-decreasing `now` (an earlier `now`
/// is treated as the latest seen); getters are [`stats`](Link::stats) and
/// [`spec`](Link::spec).
#[derive(Debug)]
pub struct Link {
    spec: LinkSpec,
    pipeline: Pipeline,
    stats: LinkStats,
    last_now: Nanos,
    /// Latest delivery time of a datagram (not a copy) so far, for `stats.reordered`.
    latest_at: Option<Nanos>,
    copies: Vec<InFlight>,
}

impl Link {
    /// A link behaving as `spec`. `seed`: 32 bytes unique to this link direction; each
    /// purpose's stream is derived from it with SHA-256 and a label ([`RngStream::derive`]).
    ///
    /// # Panics
    /// If `spec` fails [`LinkSpec::validate`]; use [`Link::try_new`] for specs not yet
    /// checked.
    pub fn new(spec: &LinkSpec, seed: [u8; 32]) -> Link {
        match Link::try_new(spec, seed) {
            Ok(link) => link,
            Err(e) => panic!("invalid link spec (validate specs when loading them): {e}"),
        }
    }

    /// As [`Link::new`], returning the validation error instead of panicking.
    ///
    /// # Errors
    /// The spec's [validation](LinkSpec::validate) error.
    pub fn try_new(spec: &LinkSpec, seed: [u8; 32]) -> Result<Link, LinkSpecError> {
        Ok(Link {
            spec: spec.clone(),
            pipeline: Pipeline::from_spec(spec, &seed)?,
            stats: LinkStats::default(),
            last_now: 0,
            latest_at: None,
            copies: Vec::new(),
        })
    }

    /// Offers one datagram at `now` (non-decreasing across calls). Returns what happens to
    /// it.
    pub fn transmit(&mut self, now: Nanos, payload: Vec<u8>) -> Outcome {
        let mut deliveries = Vec::new();
        let dropped = self.transmit_into(now, payload, &mut deliveries);
        Outcome { deliveries, dropped }
    }

    /// As [`transmit`](Link::transmit), appending the deliveries to `out` (which is not
    /// cleared) to spare an allocation per datagram. Returns the drop reason, if dropped.
    pub fn transmit_into(
        &mut self,
        now: Nanos,
        payload: Vec<u8>,
        out: &mut Vec<Delivery>,
    ) -> Option<DropReason> {
        let now = now.max(self.last_now);
        self.last_now = now;
        let stats = &mut self.stats;
        stats.offered += 1;
        stats.bytes_offered += payload.len() as u64;

        let mut datagram = InFlight::new(now, payload);
        self.copies.clear();
        if let Verdict::Drop(reason) = self.pipeline.process(now, &mut datagram, &mut self.copies) {
            match reason {
                DropReason::Loss => stats.lost += 1,
                DropReason::QueueFull => stats.queue_dropped += 1,
                DropReason::Mtu => stats.mtu_dropped += 1,
            }
            if reason == DropReason::Loss {
                // Lost after the queue: it waited there like the others.
                stats.queue_delay_ns_sum = stats.queue_delay_ns_sum.saturating_add(datagram.queue_delay);
                stats.queue_delay_ns_max = stats.queue_delay_ns_max.max(datagram.queue_delay);
            }
            return Some(reason);
        }

        stats.queue_delay_ns_sum = stats.queue_delay_ns_sum.saturating_add(datagram.queue_delay);
        stats.queue_delay_ns_max = stats.queue_delay_ns_max.max(datagram.queue_delay);
        match self.latest_at {
            Some(latest) if datagram.at < latest => stats.reordered += 1,
            _ => self.latest_at = Some(datagram.at),
        }
        for d in std::iter::once(datagram).chain(self.copies.drain(..)) {
            stats.delivered += 1;
            stats.bytes_delivered += d.payload.len() as u64;
            stats.corrupted += u64::from(d.corrupted);
            stats.duplicated += u64::from(d.duplicate);
            out.push(Delivery {
                at: d.at,
                payload: d.payload,
                corrupted: d.corrupted,
                duplicate: d.duplicate,
            });
        }
        None
    }

    /// Counters since creation.
    pub fn stats(&self) -> LinkStats {
        self.stats.clone()
    }

    /// The spec this link was built from.
    pub fn spec(&self) -> &LinkSpec {
        &self.spec
    }
}
