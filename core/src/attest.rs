//! TPM 2.0 attestation: measurement, quotes and their verification, in pure software.
//!
//! The game server measures its binary and configuration into PCR 23 of the SHA-256 bank and,
//! when its verification server asks, produces a *quote*: a TPM 2.0 `TPMS_ATTEST` structure
//! (TPM 2.0 Library Part 2, §10.12.12) signed by its attestation key (AK), an ECC P-256
//! ECDSA-SHA256 restricted signing key. The verification server checks the quote here, with no
//! TPM and no TSS library: the signature, the structure's magic and type, the caller's
//! `extraData`, the exact PCR selection and the PCR digest over the expected measurements.
//!
//! The core never talks to a TPM. It asks for a quote with an event and takes the answer as an
//! input; runtimes answer through a [`TpmProvider`]: [`SimulatedTpm`] here (a software PCR bank
//! producing real `TPMS_ATTEST` bytes signed with P-256, so the verifier has one path), or
//! `HardwareTpm` in the `tickwire-tpm` crate (feature `tpm`, over `tss-esapi`).

mod simulated;
mod tpm2;
mod verify;

pub use simulated::SimulatedTpm;
pub use tpm2::{AkPublic, Attest, ClockInfo, ObjectAttributes, PcrSelection};
pub use verify::{
    expected_pcr_value, measurement_pcr_digest, pcr_digest, quote_extra_data, verify_ak, verify_quote,
    AttestError, ExpectedQuote, VerifiedAk, VerifiedQuote,
};

use serde::{Deserialize, Serialize};

/// The PCR the game server extends with its measurements (a debug/application PCR that
/// platform firmware leaves alone, TCG PC Client Platform Firmware Profile §2.3.4).
pub const MEASUREMENT_PCR: u8 = 23;

/// Domain-separation prefix hashed into a quote's `extraData` (see [`quote_extra_data`]).
pub const QUOTE_CONTEXT: &[u8] = b"tickwire/quote/v1\0";

/// A quote as it travels: the marshalled `TPMS_ATTEST` exactly as the TPM signed it, and the
/// ECDSA signature's scalars.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quote {
    /// Marshalled `TPMS_ATTEST` (Part 2 §10.12.12), big-endian TPM encoding, at most
    /// [`MAX_ATTEST_BYTES`].
    pub attest: Vec<u8>,
    /// ECDSA signature `r`, 32 bytes big-endian.
    pub signature_r: [u8; 32],
    /// ECDSA signature `s`, 32 bytes big-endian.
    pub signature_s: [u8; 32],
}

/// Largest `TPMS_ATTEST` accepted, in bytes (checked before parsing).
pub const MAX_ATTEST_BYTES: usize = 1024;

/// Largest marshalled `TPMT_PUBLIC` accepted, in bytes (checked before parsing).
pub const MAX_AK_PUBLIC_BYTES: usize = 1024;

/// Errors of a [`TpmProvider`] (local failures, never a peer's fault).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TpmError {
    /// The PCR index is outside the bank, or not one this provider lets callers extend.
    #[error("PCR {0} is not available")]
    BadPcr(u8),
    /// `extraData` longer than a TPM accepts (64 bytes for a SHA-256 signing key's TPM2B_DATA).
    #[error("qualifying data of {0} bytes is too long")]
    ExtraDataTooLong(usize),
    /// The TPM (or its transport) failed; the message is the TSS's.
    #[error("TPM failure: {0}")]
    Device(String),
}

/// What a game server needs of a TPM. Implemented by [`SimulatedTpm`] and, in
/// `tickwire-tpm`, by `HardwareTpm`.
pub trait TpmProvider {
    /// `TPM2_PCR_Extend` on the SHA-256 bank: `pcr ← SHA-256(pcr ‖ digest)`.
    ///
    /// # Errors
    /// [`TpmError::BadPcr`] or [`TpmError::Device`].
    fn extend_pcr(&mut self, pcr: u8, digest: [u8; 32]) -> Result<(), TpmError>;

    /// `TPM2_PCR_Read` of one SHA-256 PCR.
    ///
    /// # Errors
    /// [`TpmError::BadPcr`] or [`TpmError::Device`].
    fn read_pcr(&mut self, pcr: u8) -> Result<[u8; 32], TpmError>;

    /// `TPM2_Quote` over the SHA-256 PCRs in `selection`, with `extra_data` as the
    /// qualifying data, signed by the AK with ECDSA-SHA256.
    ///
    /// # Errors
    /// [`TpmError::ExtraDataTooLong`], [`TpmError::BadPcr`] or [`TpmError::Device`].
    fn quote(&mut self, extra_data: &[u8], selection: &PcrSelection) -> Result<Quote, TpmError>;

    /// The AK's public area, marshalled `TPMT_PUBLIC` (Part 2 §12.2.4).
    ///
    /// # Errors
    /// [`TpmError::Device`].
    fn ak_public(&mut self) -> Result<AkPublic, TpmError>;
}
