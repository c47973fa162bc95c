//! What a verification server promised and must not forget across a restart, as plain data:
//! the facts a [`Verifier`](super::Verifier) emits, and the state it is restored from.
//!
//! The verifier does no I/O. With [`Verifier::record_facts`](super::Verifier::record_facts)
//! on, every promise it makes — a revocation in force, a game server revoked for good, a
//! challenge nonce (so that a quote over it is a replay later), a receipt signed — is queued
//! as a [`VsFact`] next to the messages that carry it. The runtime drains
//! [`Verifier::poll_fact`](super::Verifier::poll_fact) and makes the facts durable *before* it
//! flushes the endpoint, so that no game server ever holds a receipt or sees a revocation the
//! store would forget; at start it hands what the store holds back as a [`VerifierState`].

use serde::{Deserialize, Serialize};

use super::message::Revocation;
use super::VS_NONCE_LEN;
use crate::ticket::ProtectedReceipt;
use crate::transcript::TranscriptDigest;

/// One durable fact a [`Verifier`](super::Verifier) promised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum VsFact {
    /// A revocation entered force: it is pushed to every game server, and sent to each at its
    /// next join until it lapses (a `Jti` revocation) or forever (client and key revocations).
    Revoked(Revocation),
    /// Game server `gs_id` was revoked for good: its later joins are refused (`GS_REVOKED`).
    GameServerRevoked {
        /// The game server.
        gs_id: u64,
    },
    /// `gs_id` was sent (or quoted) challenge `nonce`: a later quote over it is a replay
    /// (`QUOTE_REPLAYED`). A store keeps the newest few per game server, as the verifier does.
    Nonce {
        /// The game server.
        gs_id: u64,
        /// The challenge nonce.
        nonce: [u8; VS_NONCE_LEN],
    },
    /// A receipt was signed for `digest`: a retry of the same digest gets these same bytes.
    Receipt {
        /// The game server.
        gs_id: u64,
        /// What was receipted.
        digest: TranscriptDigest,
        /// The signed receipt.
        receipt: ProtectedReceipt,
    },
}

/// What a verifier is restored from at start ([`Verifier::restore`](super::Verifier::restore)):
/// every fact a store kept, oldest first within each list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifierState {
    /// Revocations in force.
    pub revocations: Vec<Revocation>,
    /// Game servers revoked for good.
    pub revoked_game_servers: Vec<u64>,
    /// Challenge nonces by game server.
    pub nonces: Vec<(u64, [u8; VS_NONCE_LEN])>,
    /// Receipts by game server.
    pub receipts: Vec<(u64, TranscriptDigest, ProtectedReceipt)>,
}
