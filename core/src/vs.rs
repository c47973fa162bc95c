//! The game server ↔ verification server protocol (`PROTOCOL.md` §8), as two sans-IO state machines.
//!
//! A verification server (VS) attests game servers (GS) with TPM 2.0 quotes
//! ([`crate::attest`]), keeps them authorised with short-lived Ed25519 [`PlayTicket`]s, pushes
//! revocations, and signs [`ProtectedReceipt`]s over [`TranscriptDigest`]s. Both roles are plain
//! tickwire sessions: the GS connects to the VS with [`Role::GameServer`](crate::Role) (no join
//! ticket: the TPM quote is its credential, bound to the handshake's identity key) and the two
//! exchange [`VsMessage`]s on the reliable [`VS_CHANNEL`]. A refusal is the session's close:
//! its reason code (`QUOTE_REPLAYED`, `MEASUREMENT_MISMATCH`, `GS_REVOKED`, …) and detail travel
//! in the QUIC CONNECTION_CLOSE frame, like every tickwire rejection.
//!
//! ```text
//! GS                                         VS
//! ── connect (Role::GameServer) ──────────────▶
//! ◀──────────────────────── Challenge{nonce} ──
//! ── Join{ids, hashes, time, AK, quote} ──────▶   quote.extraData = H(nonce ‖ GS key ‖ GS id)
//! ◀──── Accepted{ticket, nonce} | close(reason) ──
//! ── Heartbeat{seq, [quote every Nth]} ───────▶   every heartbeat_interval_ms
//! ◀───────────────── Ticket{ticket, nonce} ───   every ticket_interval_ms
//! ── Digest{seq, session, tick, head} ────────▶
//! ◀─────────────────── Receipt{seq, receipt} ──
//! ◀───────────────────── Revoke{revocation} ───
//! ```
//!
//! - [`GsAgent`] is the game server's side: first-ticket timeout, starvation watchdog
//!   (admissions pause, then sessions close, then both resume), heartbeats with periodic
//!   re-attestation, transcript digests with timeout and retry, reconnection with backoff.
//!   It asks for quotes with [`GsEvent::NeedQuote`]; the runtime answers from a
//!   [`TpmProvider`](crate::attest::TpmProvider).
//! - [`Verifier`] is the verification server's side: challenges, join checks (clock skew,
//!   enrolment, AK attributes, quote, measurement), ticket renewal, heartbeat timeout, receipts
//!   (idempotent by sequence and content), join tickets and revocation (queued, bounded, for
//!   game servers that are away and sent when they rejoin).
//!
//! Both drive an [`Endpoint`](crate::Endpoint) they are handed, and never do I/O.

mod durable;
mod gs;
mod message;
mod server;

pub use crate::ticket::{
    Envelope, EnvelopeError, PlayTicket, PlayTicketClaims, PlayTicketError, ProtectedReceipt, ReceiptClaims,
    VsKeys, MAX_ENVELOPE_BYTES, PLAY_TICKET_CONTEXT, RECEIPT_CONTEXT,
};
pub use crate::transcript::{TranscriptChain, TranscriptDigest, TRANSCRIPT_CONTEXT};
pub use crate::wire::VS_SCHEMA_HASH;
pub use durable::{VerifierState, VsFact};
pub use gs::{GsAgent, GsAgentStats, GsConfig, GsEvent, GsIdentity, GsStatus};
pub use message::{Attestation, JoinRequest, Revocation, VsMessage, MAX_VS_MESSAGE_BYTES};
pub use server::{Enrolment, GsInfo, Measurement, Verifier, VerifierStats, VsConfig, VsEvent, NONCE_HISTORY};

use crate::channel::ChannelId;

/// The channel GS ↔ VS messages travel on: reliable and ordered.
pub const VS_CHANNEL: ChannelId = ChannelId::GAME;

/// Length of a VS challenge nonce, in bytes.
pub const VS_NONCE_LEN: usize = 32;
