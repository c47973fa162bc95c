//! Reading fuzz input: a zero-padded byte cursor for the decoder targets, and the `arbitrary`
//! helpers the state-machine targets decode their operations with.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use arbitrary::{Arbitrary, Unstructured};

/// A cursor over fuzz input: fixed-size fields read little-endian, zero-padded once the input
/// runs out, so every byte string is a valid input.
#[derive(Debug, Clone)]
pub(crate) struct Input<'a> {
    rest: &'a [u8],
}

impl<'a> Input<'a> {
    /// A cursor at the start of `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Self { rest: data }
    }

    /// Up to `n` bytes (fewer at the end of the input).
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (head, tail) = self.rest.split_at(n.min(self.rest.len()));
        self.rest = tail;
        head
    }

    /// `N` bytes, zero-padded.
    pub fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let head = self.bytes(N);
        out[..head.len()].copy_from_slice(head);
        out
    }

    /// One byte (0 at the end).
    pub fn u8(&mut self) -> u8 {
        self.array::<1>()[0]
    }

    /// A little-endian `u16`.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.array())
    }

    /// A little-endian `u32`.
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.array())
    }

    /// A little-endian `u64`.
    pub fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.array())
    }

    /// A length, `u16 % modulus`, then up to that many bytes.
    pub fn sized_bytes(&mut self, modulus: usize) -> &'a [u8] {
        let len = usize::from(self.u16()) % modulus;
        self.bytes(len)
    }

    /// Whether the input is used up.
    pub(crate) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// Whatever is left.
    pub fn rest(self) -> &'a [u8] {
        self.rest
    }
}

/// Most operations one state-machine input runs.
pub const MAX_OPS: usize = 256;

/// The process's base instant: every state-machine target counts its time from it, so inputs
/// replay identically (only differences between instants reach the code under test).
pub(crate) fn base_instant() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(tickwire_core::testing::epoch)
}

/// Decodes `T` (zeros once the input runs out).
pub(crate) fn take<'a, T: Arbitrary<'a> + Default>(u: &mut Unstructured<'a>) -> T {
    T::arbitrary(u).unwrap_or_default()
}

/// Runs `step` on each operation decoded from `u`, at most `max`, until the input runs out.
pub(crate) fn each_op<'a, T: Arbitrary<'a>>(u: &mut Unstructured<'a>, max: usize, mut step: impl FnMut(T)) {
    for _ in 0..max {
        if u.is_empty() {
            return;
        }
        match T::arbitrary(u) {
            Ok(op) => step(op),
            Err(_) => return,
        }
    }
}

/// Milliseconds as a `Duration`.
pub(crate) fn ms(ms: u64) -> Duration {
    Duration::from_millis(ms)
}
