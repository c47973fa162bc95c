//! Session transcripts: a SHA-256 hash chain over a session's inputs, tick by tick.
//!
//! ```text
//! h₀ = SHA-256("tickwire/transcript/v1\0" ‖ session_id (8 bytes BE))
//! hₙ = SHA-256(hₙ₋₁ ‖ tick (8 bytes BE) ‖ input length (4 bytes BE) ‖ input)
//! ```
//!
//! The game server records every input it applies; at each heartbeat it sends the chain head as
//! a [`TranscriptDigest`] to the verification server, which answers with a signed
//! [`ProtectedReceipt`](crate::ticket::ProtectedReceipt). Anyone holding the inputs can recompute the
//! head and check it against the receipt offline.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Domain-separation prefix of a transcript chain's first link.
pub const TRANSCRIPT_CONTEXT: &[u8] = b"tickwire/transcript/v1\0";

/// One session's running hash chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranscriptChain {
    session_id: u64,
    head: [u8; 32],
    last_tick: u64,
    inputs: u64,
}

impl TranscriptChain {
    /// A chain for `session_id`, at h₀.
    pub fn new(session_id: u64) -> Self {
        let mut hash = Sha256::new();
        hash.update(TRANSCRIPT_CONTEXT);
        hash.update(session_id.to_be_bytes());
        Self {
            session_id,
            head: hash.finalize().into(),
            last_tick: 0,
            inputs: 0,
        }
    }

    /// A chain for `session_id` continuing from a known state: `head` after `inputs` inputs,
    /// the highest at `last_tick` (as a signed receipt or a recording's gap record states it).
    pub fn resume(session_id: u64, head: [u8; 32], last_tick: u64, inputs: u64) -> Self {
        Self {
            session_id,
            head,
            last_tick,
            inputs,
        }
    }

    /// Appends one input applied at `tick`.
    pub fn record(&mut self, tick: u64, input: &[u8]) {
        let mut hash = Sha256::new();
        hash.update(self.head);
        hash.update(tick.to_be_bytes());
        hash.update((input.len() as u32).to_be_bytes());
        hash.update(input);
        self.head = hash.finalize().into();
        self.last_tick = self.last_tick.max(tick);
        self.inputs += 1;
    }

    /// The current head.
    pub fn head(&self) -> [u8; 32] {
        self.head
    }

    /// The session this chain belongs to.
    pub fn session_id(&self) -> u64 {
        self.session_id
    }

    /// The highest tick recorded (0 before any input).
    pub fn last_tick(&self) -> u64 {
        self.last_tick
    }

    /// Inputs recorded.
    pub fn inputs(&self) -> u64 {
        self.inputs
    }
}

/// A transcript head as sent to the verification server. Retries resend the same `sequence`,
/// so the verification server answers them idempotently.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TranscriptDigest {
    /// Per game server, from 1, increasing by one per digest.
    pub sequence: u64,
    /// The game session.
    pub session_id: u64,
    /// The last tick covered.
    pub tick: u64,
    /// Inputs covered.
    pub inputs: u64,
    /// The chain head.
    pub digest: [u8; 32],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_is_order_and_content_sensitive() {
        let mut a = TranscriptChain::new(1);
        let mut b = TranscriptChain::new(1);
        a.record(1, b"left");
        a.record(2, b"right");
        b.record(1, b"right");
        b.record(2, b"left");
        assert_ne!(a.head(), b.head());
        let mut c = TranscriptChain::new(1);
        c.record(1, b"left");
        c.record(2, b"right");
        assert_eq!(a, c);
        assert_ne!(TranscriptChain::new(1).head(), TranscriptChain::new(2).head());
        // Length prefix: ("ab","c") differs from ("a","bc") within one tick.
        let mut d = TranscriptChain::new(1);
        d.record(1, b"ab");
        d.record(1, b"c");
        let mut e = TranscriptChain::new(1);
        e.record(1, b"a");
        e.record(1, b"bc");
        assert_ne!(d.head(), e.head());
        assert_eq!((a.last_tick(), a.inputs()), (2, 2));
    }
}
