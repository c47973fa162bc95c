//! TPM 2.0 attestation for tickwire game servers: a real TPM behind [`tickwire_core::attest`]'s
//! [`TpmProvider`], and a software TPM harness for tests.
//!
//! A game server measures what it runs into PCR 23 ([`MEASUREMENT_PCR`]) once at start-up with
//! [`measure`], then answers its verification server's quote requests through a [`TpmProvider`].
//! The core never calls the TPM itself: it asks for a quote with an event, the runtime calls
//! [`TpmProvider::quote`] and feeds the [`Quote`](tickwire_core::attest::Quote) back in.
//!
//! ```
//! use tickwire_core::attest::{TpmProvider, MEASUREMENT_PCR};
//!
//! // Any provider works; `HardwareTpm::open("device:/dev/tpmrm0")` on a real machine.
//! fn start(tpm: &mut impl TpmProvider, binary_sha256: [u8; 32], config_sha256: [u8; 32])
//!     -> Result<[u8; 32], tickwire_core::attest::TpmError>
//! {
//!     tickwire_tpm::measure(tpm, binary_sha256, config_sha256)?;
//!     tpm.read_pcr(MEASUREMENT_PCR)
//! }
//! ```
//!
//! # Providers
//!
//! - `HardwareTpm` (feature **`tpm`**): a TPM 2.0 through the TSS2 ESAPI ([`tss-esapi`] 7.x
//!   over the system's tpm2-tss 3.x). It is opened with a TCTI string, the tpm2-tss way of
//!   naming a transport:
//!   - `device:/dev/tpmrm0` — the kernel's resource-managed TPM device (Linux; the user needs
//!     read/write access, usually the `tss` group);
//!   - `tabrmd` or `tabrmd:bus_type=session` — the user-space resource manager daemon;
//!   - `swtpm:host=127.0.0.1,port=2321` — a software TPM ([`swtpm`](https://github.com/stefanberger/swtpm))
//!     over TCP, as the tests use (see [`swtpm::Swtpm`]);
//!   - `mssim:host=127.0.0.1,port=2321` — Microsoft's TPM 2.0 reference simulator.
//!
//!   Building the feature needs the tpm2-tss libraries and headers and `pkg-config` (Debian:
//!   `libtss2-dev pkg-config`); tss-esapi 7.x ships pregenerated bindings, so no clang.
//! - [`SimulatedTpm`](tickwire_core::attest::SimulatedTpm) in the core: a software PCR bank and
//!   P-256 key producing the same `TPMS_ATTEST` bytes, for simulations and machines without a TPM.
//!
//! # Testing against a software TPM
//!
//! [`swtpm::Swtpm`] (always compiled, no feature needed) starts a private `swtpm socket` process
//! on free loopback ports with a fresh state directory and removes both when dropped. It needs
//! the `swtpm` binary (Debian: `swtpm swtpm-tools`); `scripts/test` installs it together with
//! `libtss2-dev` and `pkg-config`, then runs this crate's tests with `--all-features`.
//!
//! [`tss-esapi`]: https://docs.rs/tss-esapi/7
//! [`TpmProvider`]: tickwire_core::attest::TpmProvider
//! [`TpmProvider::quote`]: tickwire_core::attest::TpmProvider::quote
//! [`MEASUREMENT_PCR`]: tickwire_core::attest::MEASUREMENT_PCR
#![deny(missing_docs)]

#[cfg(feature = "tpm")]
mod hardware;
pub mod swtpm;

#[cfg(feature = "tpm")]
pub use hardware::HardwareTpm;

use tickwire_core::attest::{TpmError, TpmProvider, MEASUREMENT_PCR};

/// Measures a game server into PCR 23 ([`MEASUREMENT_PCR`]) of the SHA-256 bank: extends it with
/// `binary` (the SHA-256 of the server binary), then with `config` (the SHA-256 of its
/// configuration), so that from a freshly reset PCR the value is
/// `SHA-256(SHA-256(0³² ‖ binary) ‖ config)` (TPM 2.0 Library Part 1 §17.2, PCR extend).
///
/// Call it once per boot of the PCR (PCR 23 is only reset by a TPM restart or `TPM2_PCR_Reset`),
/// before the first quote; the verification server expects exactly these two extensions.
///
/// # Errors
/// Whatever [`TpmProvider::extend_pcr`] returns: [`TpmError::BadPcr`] when the provider does not
/// offer PCR 23, [`TpmError::Device`] when the TPM fails. After an error after the first extend
/// the PCR holds a partial measurement; the server must not attest until the TPM is reset.
pub fn measure(tpm: &mut impl TpmProvider, binary: [u8; 32], config: [u8; 32]) -> Result<(), TpmError> {
    tpm.extend_pcr(MEASUREMENT_PCR, binary)?;
    tpm.extend_pcr(MEASUREMENT_PCR, config)
}
