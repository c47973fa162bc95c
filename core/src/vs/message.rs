//! GS ↔ VS messages: postcard-encoded [`VsMessage`]s, one per reliable message on
//! [`VS_CHANNEL`](super::VS_CHANNEL). `PROTOCOL.md` §8 gives the encoding.

use serde::{Deserialize, Serialize};

use crate::attest::{AkPublic, Quote};
use crate::wire::WireError;

use super::VS_NONCE_LEN;
use crate::ticket::{PlayTicket, ProtectedReceipt};
use crate::transcript::TranscriptDigest;

/// Largest encoded [`VsMessage`] accepted, in bytes (checked before decoding).
pub const MAX_VS_MESSAGE_BYTES: usize = 8 * 1024;

/// The game server's join request: who it is, what it runs, and a quote proving it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinRequest {
    /// The game server's id.
    pub gs_id: u64,
    /// Its Ed25519 identity key; must be the key that signed the session's handshake.
    pub gs_key: [u8; 32],
    /// SHA-256 of its binary (the first measurement extended into PCR 23).
    pub software_hash: [u8; 32],
    /// SHA-256 of its configuration (the second measurement).
    pub config_hash: [u8; 32],
    /// Its wall clock at sending, Unix epoch milliseconds (checked against `join_max_skew_ms`).
    pub timestamp_ms: u64,
    /// The attestation key's public area.
    pub ak_public: AkPublic,
    /// Quote over PCR 23 with `extraData` = [`quote_extra_data`](crate::attest::quote_extra_data)`(nonce, gs_key, gs_id)`.
    pub quote: Quote,
}

/// A re-attestation carried by a heartbeat: a fresh quote over the VS's latest nonce.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attestation {
    /// The nonce quoted (the latest the VS sent).
    pub nonce: [u8; VS_NONCE_LEN],
    /// The quote.
    pub quote: Quote,
}

/// A revocation pushed by the VS and applied by game servers to live sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Revocation {
    /// One join ticket, remembered until its expiry (Unix ms).
    Jti {
        /// The ticket's `jti`.
        jti: [u8; 16],
        /// Until when to remember it.
        until_unix_ms: u64,
    },
    /// Every ticket of a client.
    Client {
        /// The client id.
        client_id: u64,
    },
    /// Every ticket signed by an issuer key.
    Key {
        /// The key id.
        key_id: u32,
    },
}

/// One GS ↔ VS message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum VsMessage {
    /// VS → GS, first message of every session: the nonce the join quote must bind.
    Challenge {
        /// Fresh nonce.
        nonce: [u8; VS_NONCE_LEN],
    },
    /// GS → VS: the join request.
    Join(JoinRequest),
    /// VS → GS: joined; the first play ticket and the nonce for the next re-attestation.
    Accepted {
        /// The first play ticket.
        ticket: PlayTicket,
        /// Nonce for the next re-attestation quote.
        next_nonce: [u8; VS_NONCE_LEN],
    },
    /// VS → GS: a renewed play ticket, and a fresh nonce for re-attestation.
    Ticket {
        /// The ticket.
        ticket: PlayTicket,
        /// Nonce for the next re-attestation quote.
        next_nonce: [u8; VS_NONCE_LEN],
    },
    /// GS → VS: liveness, optionally with a re-attestation.
    Heartbeat {
        /// Increases by one per heartbeat in a session.
        sequence: u64,
        /// The GS's wall clock, Unix epoch milliseconds.
        timestamp_ms: u64,
        /// Live client sessions on the GS.
        sessions: u32,
        /// A fresh quote, every `reattest_every`-th heartbeat.
        attestation: Option<Attestation>,
    },
    /// GS → VS: a transcript head to be receipted.
    Digest(TranscriptDigest),
    /// VS → GS: the signed receipt for digest `sequence`.
    Receipt {
        /// The digest's sequence.
        sequence: u64,
        /// The receipt.
        receipt: ProtectedReceipt,
    },
    /// VS → GS: apply this revocation to admissions and live sessions.
    Revoke(Revocation),
}

impl VsMessage {
    /// The wire encoding.
    pub fn encode(&self) -> Vec<u8> {
        crate::wire::encode(self)
    }

    /// Decodes one message, bounded by [`MAX_VS_MESSAGE_BYTES`].
    ///
    /// # Errors
    /// [`WireError::FrameTooLarge`] or [`WireError::Malformed`]; close with
    /// `PROTOCOL_VIOLATION`.
    pub fn decode(bytes: &[u8]) -> Result<VsMessage, WireError> {
        if bytes.len() > MAX_VS_MESSAGE_BYTES {
            return Err(WireError::FrameTooLarge {
                len: bytes.len(),
                max: MAX_VS_MESSAGE_BYTES,
            });
        }
        crate::wire::decode(bytes)
    }
}
