//! A software TPM: a SHA-256 PCR bank and a P-256 attestation key, producing real quotes.

use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use sha2::{Digest, Sha256};

use super::tpm2::{AkPublic, Attest, ClockInfo, ObjectAttributes, PcrSelection, PCR_COUNT};
use super::verify::pcr_digest;
use super::{Quote, TpmError, TpmProvider};

/// Domain-separation label for deriving the simulated AK from its seed.
const AK_DERIVATION_LABEL: &[u8] = b"tickwire/simulated-tpm/ak";
/// `firmwareVersion` reported in quotes (arbitrary, recognisable: "TWSIM\0\0\x01").
const FIRMWARE_VERSION: u64 = 0x5457_5349_4D00_0001;
/// Largest `extraData` accepted by `quote`, in bytes (a TPM2B_DATA; see [`TpmError`]).
const MAX_EXTRA_DATA_BYTES: usize = 64;

/// A deterministic software TPM for tests and for game servers without a TPM.
///
/// Holds 24 SHA-256 PCRs (all zero, as after TPM Reset) and an ECC P-256 ECDSA-SHA256
/// attestation key derived from a 32-byte seed (`SHA-256("tickwire/simulated-tpm/ak" ‖ seed)`,
/// re-derived with a counter in the negligible case that is not a valid scalar). Quotes are
/// genuine `TPMS_ATTEST` bytes (Part 2 §10.12.12) signed with deterministic ECDSA (RFC 6979), so
/// [`verify_quote`](super::verify_quote) has one path for software and hardware.
///
/// It proves nothing about the machine: anyone with the seed can sign any quote. Reads no
/// clock and no RNG; `clockInfo.clock` is whatever [`SimulatedTpm::set_clock`] last set.
#[derive(Debug, Clone)]
pub struct SimulatedTpm {
    pcrs: [[u8; 32]; PCR_COUNT as usize],
    key: SigningKey,
    attributes: ObjectAttributes,
    clock_ms: u64,
}

impl SimulatedTpm {
    /// A fresh TPM whose AK has [`ObjectAttributes::AK_REQUIRED`] plus `userWithAuth`.
    pub fn new(seed: [u8; 32]) -> Self {
        Self::with_attributes(
            seed,
            ObjectAttributes::AK_REQUIRED | ObjectAttributes::USER_WITH_AUTH,
        )
    }

    /// A fresh TPM whose AK public area reports `attributes` (for tests of AK enrolment, e.g. an
    /// unrestricted key). The signing behaviour is the same.
    pub fn with_attributes(seed: [u8; 32], attributes: ObjectAttributes) -> Self {
        SimulatedTpm {
            pcrs: [[0u8; 32]; PCR_COUNT as usize],
            key: derive_key(&seed),
            attributes,
            clock_ms: 0,
        }
    }

    /// Sets `clockInfo.clock` (milliseconds) reported by later quotes; it starts at 0.
    pub fn set_clock(&mut self, clock_ms: u64) {
        self.clock_ms = clock_ms;
    }

    fn pcr_index(pcr: u8) -> Result<usize, TpmError> {
        if pcr < PCR_COUNT {
            Ok(usize::from(pcr))
        } else {
            Err(TpmError::BadPcr(pcr))
        }
    }
}

/// `SHA-256(label ‖ seed)`, then `SHA-256(label ‖ seed ‖ u32be(counter))` for counter 1, 2, …
/// until the digest is a valid P-256 scalar (fails with probability about 2⁻³²).
fn derive_key(seed: &[u8; 32]) -> SigningKey {
    let mut counter: u32 = 0;
    loop {
        let mut h = Sha256::new();
        h.update(AK_DERIVATION_LABEL);
        h.update(seed);
        if counter != 0 {
            h.update(counter.to_be_bytes());
        }
        let digest = h.finalize();
        if let Ok(key) = SigningKey::from_bytes(&digest) {
            return key;
        }
        counter = counter.wrapping_add(1);
    }
}

impl TpmProvider for SimulatedTpm {
    fn extend_pcr(&mut self, pcr: u8, digest: [u8; 32]) -> Result<(), TpmError> {
        let i = Self::pcr_index(pcr)?;
        let mut h = Sha256::new();
        h.update(self.pcrs[i]);
        h.update(digest);
        self.pcrs[i] = h.finalize().into();
        Ok(())
    }

    fn read_pcr(&mut self, pcr: u8) -> Result<[u8; 32], TpmError> {
        Ok(self.pcrs[Self::pcr_index(pcr)?])
    }

    fn quote(&mut self, extra_data: &[u8], selection: &PcrSelection) -> Result<Quote, TpmError> {
        if extra_data.len() > MAX_EXTRA_DATA_BYTES {
            return Err(TpmError::ExtraDataTooLong(extra_data.len()));
        }
        let values: Vec<[u8; 32]> = selection
            .indices()
            .into_iter()
            .map(|i| self.pcrs[usize::from(i)])
            .collect();
        let attest = Attest {
            qualified_signer: self.ak_public_area().name(),
            extra_data: extra_data.to_vec(),
            clock_info: ClockInfo {
                clock: self.clock_ms,
                reset_count: 0,
                restart_count: 0,
                safe: true,
            },
            firmware_version: FIRMWARE_VERSION,
            pcr_select: selection.clone(),
            pcr_digest: pcr_digest(&values).to_vec(),
        }
        .marshal();
        let signature: Signature = self.key.sign(&attest);
        let (r, s) = signature.split_bytes();
        Ok(Quote {
            attest,
            signature_r: r.into(),
            signature_s: s.into(),
        })
    }

    fn ak_public(&mut self) -> Result<AkPublic, TpmError> {
        Ok(self.ak_public_area())
    }
}

impl SimulatedTpm {
    /// The AK's `TPMT_PUBLIC`.
    fn ak_public_area(&self) -> AkPublic {
        let point = self.key.verifying_key().to_encoded_point(false);
        let mut x = [0u8; 32];
        let mut y = [0u8; 32];
        // An uncompressed encoding of a valid key always has both coordinates.
        if let (Some(px), Some(py)) = (point.x(), point.y()) {
            x.copy_from_slice(px);
            y.copy_from_slice(py);
        }
        AkPublic::ecc_p256(x, y, self.attributes)
    }
}

#[cfg(test)]
impl SimulatedTpm {
    /// Signs arbitrary bytes with the AK as if they were a `TPMS_ATTEST` (what a restricted key
    /// would refuse to do), for testing the verifier's checks after the signature.
    pub(crate) fn sign_raw(&self, attest: Vec<u8>) -> Quote {
        let signature: Signature = self.key.sign(&attest);
        let (r, s) = signature.split_bytes();
        Quote {
            attest,
            signature_r: r.into(),
            signature_s: s.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::verify::expected_pcr_value;
    use super::*;

    #[test]
    fn pcrs_start_at_zero_and_extend() {
        let mut tpm = SimulatedTpm::new([1; 32]);
        assert_eq!(tpm.read_pcr(23).unwrap(), [0; 32]);
        tpm.extend_pcr(23, [5; 32]).unwrap();
        tpm.extend_pcr(23, [6; 32]).unwrap();
        assert_eq!(tpm.read_pcr(23).unwrap(), expected_pcr_value(&[[5; 32], [6; 32]]));
        assert_eq!(tpm.read_pcr(22).unwrap(), [0; 32]);
        tpm.extend_pcr(0, [1; 32]).unwrap();
        assert_eq!(tpm.extend_pcr(24, [0; 32]), Err(TpmError::BadPcr(24)));
        assert_eq!(tpm.read_pcr(255), Err(TpmError::BadPcr(255)));
    }

    #[test]
    fn quote_rejects_long_extra_data() {
        let mut tpm = SimulatedTpm::new([1; 32]);
        let sel = PcrSelection::sha256(&[23]).unwrap();
        assert!(tpm.quote(&[0; 64], &sel).is_ok());
        assert_eq!(tpm.quote(&[0; 65], &sel), Err(TpmError::ExtraDataTooLong(65)));
    }

    #[test]
    fn deterministic_per_seed() {
        let sel = PcrSelection::sha256(&[23]).unwrap();
        let mut a = SimulatedTpm::new([7; 32]);
        let mut b = SimulatedTpm::new([7; 32]);
        let mut c = SimulatedTpm::new([8; 32]);
        assert_eq!(a.ak_public().unwrap(), b.ak_public().unwrap());
        assert_ne!(a.ak_public().unwrap(), c.ak_public().unwrap());
        assert_eq!(a.quote(b"n", &sel).unwrap(), b.quote(b"n", &sel).unwrap());
    }

    #[test]
    fn quote_contents() {
        let mut tpm = SimulatedTpm::new([3; 32]);
        tpm.set_clock(12_345);
        tpm.extend_pcr(23, [9; 32]).unwrap();
        let sel = PcrSelection::sha256(&[0, 23]).unwrap();
        let quote = tpm.quote(b"qualifying", &sel).unwrap();
        let attest = Attest::parse(&quote.attest).unwrap();
        assert_eq!(attest.qualified_signer, tpm.ak_public().unwrap().name());
        assert_eq!(attest.extra_data, b"qualifying");
        assert_eq!(
            attest.clock_info,
            ClockInfo {
                clock: 12_345,
                reset_count: 0,
                restart_count: 0,
                safe: true
            }
        );
        assert_eq!(attest.firmware_version, FIRMWARE_VERSION);
        assert_eq!(attest.pcr_select, sel);
        let values = [[0; 32], expected_pcr_value(&[[9; 32]])];
        assert_eq!(attest.pcr_digest, pcr_digest(&values));
    }
}
