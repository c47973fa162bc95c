//! The element contract, the pipeline that composes elements, and the per-purpose random
//! streams elements draw from.

use std::fmt;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};

use super::{DropReason, Nanos};

/// A datagram travelling through a pipeline of [`Element`]s.
///
/// It enters with `at == sent == now`; each element may move `at` later (queueing,
/// serialisation, propagation, jitter), change the payload (corruption) or drop it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InFlight {
    /// When the datagram was offered to the link, ns of virtual time.
    pub sent: Nanos,
    /// When the datagram leaves the last element that processed it, ns; after the whole
    /// pipeline, its delivery time.
    pub at: Nanos,
    /// The UDP payload.
    pub payload: Vec<u8>,
    /// A bit of the payload was flipped ([`Corrupt`](super::Corrupt)).
    pub corrupted: bool,
    /// This is a copy made by [`Duplicate`](super::Duplicate), not the datagram offered.
    pub duplicate: bool,
    /// Time spent waiting in a bandwidth queue before serialisation started, ns
    /// ([`Bandwidth`](super::Bandwidth)).
    pub queue_delay: Nanos,
}

impl InFlight {
    /// A datagram offered at `now`, not yet touched by any element.
    pub fn new(now: Nanos, payload: Vec<u8>) -> InFlight {
        InFlight {
            sent: now,
            at: now,
            payload,
            corrupted: false,
            duplicate: false,
            queue_delay: 0,
        }
    }
}

/// What an element did with a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Verdict {
    /// The datagram goes on to the next element (possibly changed).
    Forward,
    /// The datagram is gone; the elements after this one see it only through
    /// [`Element::skip`].
    Drop(DropReason),
}

/// One stage of a link: datagram in, datagram(s) out.
///
/// The contract every element keeps:
///
/// - [`process`](Element::process) is called once per datagram that reaches the element,
///   with `now` (the time the datagram was offered to the link) non-decreasing across calls.
///   It may change the datagram in place (most often: move `at` later), drop it by returning
///   [`Verdict::Drop`], or push copies onto `copies`. A copy leaves the pipeline as it is —
///   the elements after the one that made it do not see it — so the element making a copy
///   sets its delivery time itself, and duplication belongs at the end of a pipeline.
/// - [`skip`](Element::skip) is called instead of `process` when an earlier element dropped
///   the datagram. A random element draws exactly the values `process` would have drawn (and
///   makes the same state transitions, e.g. of a Gilbert-Elliott chain) and throws them away.
///
/// Together with one [`RngStream`] per element and purpose, this makes the number of draws
/// per offered datagram fixed, so changing one knob (say the loss rate) never shifts the
/// random values another element (say latency) sees.
pub trait Element: fmt::Debug + Send {
    /// Processes one datagram that reached this element.
    fn process(&mut self, now: Nanos, datagram: &mut InFlight, copies: &mut Vec<InFlight>) -> Verdict;

    /// Accounts for a datagram offered at `now` that an earlier element dropped: consumes the
    /// same draws as [`process`](Element::process) would have.
    fn skip(&mut self, now: Nanos);
}

/// Elements applied in order; itself an [`Element`], so pipelines nest.
///
/// Once an element drops the datagram, the later elements are [skipped](Element::skip).
#[derive(Debug, Default)]
pub struct Pipeline {
    elements: Vec<Box<dyn Element>>,
}

impl Pipeline {
    /// An empty pipeline: an ideal link that delivers at the offer time.
    pub fn new() -> Pipeline {
        Pipeline::default()
    }

    /// Appends `element` as the last stage (builder style).
    pub fn with(mut self, element: impl Element + 'static) -> Pipeline {
        self.push(element);
        self
    }

    /// Appends `element` as the last stage.
    pub fn push(&mut self, element: impl Element + 'static) {
        self.elements.push(Box::new(element));
    }

    /// Appends an already boxed element as the last stage.
    pub fn push_boxed(&mut self, element: Box<dyn Element>) {
        self.elements.push(element);
    }

    /// Number of stages.
    pub fn len(&self) -> usize {
        self.elements.len()
    }

    /// Whether the pipeline has no stages.
    pub fn is_empty(&self) -> bool {
        self.elements.is_empty()
    }
}

impl Element for Pipeline {
    fn process(&mut self, now: Nanos, datagram: &mut InFlight, copies: &mut Vec<InFlight>) -> Verdict {
        let mut verdict = Verdict::Forward;
        for element in &mut self.elements {
            match verdict {
                Verdict::Forward => verdict = element.process(now, datagram, copies),
                Verdict::Drop(_) => element.skip(now),
            }
        }
        verdict
    }

    fn skip(&mut self, now: Nanos) {
        for element in &mut self.elements {
            element.skip(now);
        }
    }
}

/// One random stream: ChaCha8 keyed by `SHA-256("tickwire-sim link stream" 0 label 0 seed)`.
///
/// A link derives one stream per purpose (`"latency"`, `"jitter"`, `"loss"`, ...) from its
/// 32-byte seed, so elements never share random values. Each method below consumes exactly
/// one 64-bit output of the generator, which keeps draw counts easy to state.
pub struct RngStream(ChaCha8Rng);

impl fmt::Debug for RngStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The generator state is 300 bytes of noise; the position is what helps debugging.
        f.debug_struct("RngStream")
            .field("word_pos", &self.0.get_word_pos())
            .finish()
    }
}

impl RngStream {
    /// The stream for purpose `label` of the link with `seed`.
    pub fn derive(seed: &[u8; 32], label: &str) -> RngStream {
        let mut hasher = Sha256::new();
        hasher.update(b"tickwire-sim link stream\0");
        hasher.update(label.as_bytes());
        hasher.update([0]);
        hasher.update(seed);
        RngStream(ChaCha8Rng::from_seed(hasher.finalize().into()))
    }

    /// One draw: uniform in `[0, 1)` with 53 bits of precision.
    pub fn unit(&mut self) -> f64 {
        (self.0.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// One draw: uniform in `(0, 1]` (safe to take the logarithm or a negative power of).
    pub fn unit_nonzero(&mut self) -> f64 {
        ((self.0.next_u64() >> 11) + 1) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// One draw: `true` with probability `p` (`p` outside `[0, 1]` saturates).
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// One draw: uniform in `0..n` by Lemire's multiply-shift (no rejection, so always one
    /// draw; the bias is below `n / 2^64`). Returns 0 when `n == 0`.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.0.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts calls; drops every datagram when `drop` is set.
    #[derive(Debug, Default)]
    struct Probe {
        processed: u32,
        skipped: u32,
        drop: bool,
    }

    impl Element for Probe {
        fn process(&mut self, _: Nanos, d: &mut InFlight, _: &mut Vec<InFlight>) -> Verdict {
            self.processed += 1;
            d.at += 1;
            if self.drop {
                Verdict::Drop(DropReason::Loss)
            } else {
                Verdict::Forward
            }
        }

        fn skip(&mut self, _: Nanos) {
            self.skipped += 1;
        }
    }

    #[test]
    fn elements_after_a_drop_are_skipped() {
        let mut pipeline = Pipeline::new().with(Probe::default()).with(Probe {
            drop: true,
            ..Probe::default()
        });
        pipeline.push(Probe::default());
        let mut d = InFlight::new(5, vec![1]);
        assert_eq!(
            pipeline.process(5, &mut d, &mut Vec::new()),
            Verdict::Drop(DropReason::Loss)
        );
        assert_eq!(d.at, 7);
        pipeline.skip(6);
        let counts: Vec<String> = pipeline.elements.iter().map(|e| format!("{e:?}")).collect();
        assert!(counts[0].contains("processed: 1, skipped: 1"), "{counts:?}");
        assert!(counts[1].contains("processed: 1, skipped: 1"), "{counts:?}");
        assert!(counts[2].contains("processed: 0, skipped: 2"), "{counts:?}");
    }

    #[test]
    fn streams_differ_by_label_and_seed_and_repeat() {
        let first = |seed: [u8; 32], label| RngStream::derive(&seed, label).0.next_u64();
        assert_eq!(first([1; 32], "loss"), first([1; 32], "loss"));
        assert_ne!(first([1; 32], "loss"), first([1; 32], "latency"));
        assert_ne!(first([1; 32], "loss"), first([2; 32], "loss"));
    }

    #[test]
    fn draws_stay_in_range() {
        let mut rng = RngStream::derive(&[3; 32], "test");
        for _ in 0..10_000 {
            assert!((0.0..1.0).contains(&rng.unit()));
            let u = rng.unit_nonzero();
            assert!(u > 0.0 && u <= 1.0);
            assert!(rng.below(10) < 10);
        }
        assert_eq!(rng.below(0), 0);
        assert!(!rng.chance(0.0) && rng.chance(1.0));
    }
}
