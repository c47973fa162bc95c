//! TPM 2.0 structures the verifier needs, marshalled and parsed by hand.
//!
//! Encoding is the TPM's canonical one (TPM 2.0 Library Part 1 §18 / Part 2 §5): integers
//! big-endian, `TPM2B_*` buffers as a `u16` size followed by that many bytes, unions selected by
//! the preceding algorithm or structure tag. Parsing goes through a bounded reader: every
//! length is checked against the buffer and against the structure's maximum, trailing bytes are
//! an error, and no input makes it panic.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::verify::AttestError;
use super::MAX_ATTEST_BYTES;

/// `TPM_GENERATED_VALUE` (Part 2 §6.2): the magic every TPM-produced `TPMS_ATTEST` starts with.
pub(crate) const TPM_GENERATED_VALUE: u32 = 0xFF54_4347;
/// `TPM_ST_ATTEST_QUOTE` (Part 2 §6.9): the structure tag of a quote's `TPMS_ATTEST`.
pub(crate) const TPM_ST_ATTEST_QUOTE: u16 = 0x8018;
/// `TPM_ALG_SHA256` (TCG Algorithm Registry).
pub(crate) const TPM_ALG_SHA256: u16 = 0x000B;
/// `TPM_ALG_ECC`.
pub(crate) const TPM_ALG_ECC: u16 = 0x0023;
/// `TPM_ALG_ECDSA`.
pub(crate) const TPM_ALG_ECDSA: u16 = 0x0018;
/// `TPM_ALG_NULL`.
pub(crate) const TPM_ALG_NULL: u16 = 0x0010;
/// `TPM_ECC_NIST_P256` (Part 2 §6.4).
pub(crate) const TPM_ECC_NIST_P256: u16 = 0x0003;

/// Number of PCRs in the SHA-256 bank this crate selects from (PCR 0 to 23).
pub(crate) const PCR_COUNT: u8 = 24;
/// `sizeofSelect` of every selection we produce and accept (`PCR_SELECT_MIN`, 24 PCRs / 8).
const SIZEOF_SELECT: u8 = 3;
/// Largest `TPM2B_NAME` body: `sizeof(TPMU_NAME)` = a `TPMT_HA` with SHA-512 (2 + 64).
const MAX_NAME_BYTES: usize = 66;
/// Largest `TPM2B_DATA` body: `sizeof(TPMT_HA)` with SHA-512 (2 + 64).
const MAX_DATA_BYTES: usize = 66;
/// Largest `TPM2B_DIGEST` body: the largest digest (SHA-512, 64 bytes).
const MAX_DIGEST_BYTES: usize = 64;
/// Largest `TPM2B_ECC_PARAMETER` body accepted (P-521 coordinates are 66 bytes).
const MAX_ECC_PARAMETER_BYTES: usize = 66;

/// A PCR selection in the SHA-256 bank, PCRs 0 to 23 (a 24-bit bitmap).
///
/// Marshals as a `TPML_PCR_SELECTION` (Part 2 §10.9.7) holding exactly one
/// `TPMS_PCR_SELECTION` (§10.6.2): `count: u32 = 1`, `hash: u16 = TPM_ALG_SHA256 (0x000B)`,
/// `sizeofSelect: u8 = 3`, `pcrSelect: [u8; 3]` where PCR *n* is bit `n % 8` of byte `n / 8`.
/// Parsing accepts only that shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PcrSelection {
    bitmap: [u8; 3],
}

impl PcrSelection {
    /// Selects `pcrs` (any order, duplicates ignored) in the SHA-256 bank.
    ///
    /// # Errors
    /// [`AttestError::BadPcrIndex`] for an index above 23.
    pub fn sha256(pcrs: &[u8]) -> Result<Self, AttestError> {
        let mut bitmap = [0u8; 3];
        for &pcr in pcrs {
            if pcr >= PCR_COUNT {
                return Err(AttestError::BadPcrIndex(pcr));
            }
            bitmap[usize::from(pcr / 8)] |= 1 << (pcr % 8);
        }
        Ok(PcrSelection { bitmap })
    }

    /// The selected PCR indices, ascending.
    pub fn indices(&self) -> Vec<u8> {
        (0..PCR_COUNT).filter(|&pcr| self.contains(pcr)).collect()
    }

    /// Whether PCR `pcr` is selected (`false` for indices above 23).
    pub fn contains(&self, pcr: u8) -> bool {
        pcr < PCR_COUNT && self.bitmap[usize::from(pcr / 8)] & (1 << (pcr % 8)) != 0
    }

    /// Appends the `TPML_PCR_SELECTION` encoding (see the type's docs).
    pub(crate) fn marshal_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&1u32.to_be_bytes());
        out.extend_from_slice(&TPM_ALG_SHA256.to_be_bytes());
        out.push(SIZEOF_SELECT);
        out.extend_from_slice(&self.bitmap);
    }

    fn parse_from(r: &mut Reader<'_>) -> Result<Self, AttestError> {
        if r.u32()? != 1 {
            return Err(AttestError::Malformed("pcr selection: count is not 1"));
        }
        if r.u16()? != TPM_ALG_SHA256 {
            return Err(AttestError::Malformed("pcr selection: bank is not sha256"));
        }
        if r.u8()? != SIZEOF_SELECT {
            return Err(AttestError::Malformed("pcr selection: sizeofSelect is not 3"));
        }
        let bytes = r.bytes(usize::from(SIZEOF_SELECT))?;
        Ok(PcrSelection {
            bitmap: [bytes[0], bytes[1], bytes[2]],
        })
    }
}

/// `TPMA_OBJECT` (Part 2 §8.3): an object's attribute bits, as on the wire (a big-endian
/// `u32`). Bits without a name here (reserved, or not checked) are kept as they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ObjectAttributes(pub u32);

bitflags::bitflags! {
    impl ObjectAttributes: u32 {
        /// `fixedTPM` (bit 1): the object cannot be duplicated off this TPM.
        const FIXED_TPM = 1 << 1;
        /// `stClear` (bit 2): the object is flushed on TPM Restart.
        const ST_CLEAR = 1 << 2;
        /// `fixedParent` (bit 4): the object's parent cannot change.
        const FIXED_PARENT = 1 << 4;
        /// `sensitiveDataOrigin` (bit 5): the TPM generated the private key.
        const SENSITIVE_DATA_ORIGIN = 1 << 5;
        /// `userWithAuth` (bit 6): user role usable with the auth value.
        const USER_WITH_AUTH = 1 << 6;
        /// `adminWithPolicy` (bit 7): admin role needs a policy session.
        const ADMIN_WITH_POLICY = 1 << 7;
        /// `noDA` (bit 10): not subject to dictionary-attack protection.
        const NO_DA = 1 << 10;
        /// `restricted` (bit 16): a signing key that only signs TPM-generated structures.
        const RESTRICTED = 1 << 16;
        /// `decrypt` (bit 17): a decryption key.
        const DECRYPT = 1 << 17;
        /// `sign` / `encrypt` (bit 18): a signing key.
        const SIGN_ENCRYPT = 1 << 18;

        /// The attributes an attestation key must have: `restricted | sign | fixedTPM |
        /// fixedParent | sensitiveDataOrigin` — a TPM-generated, non-duplicable key that signs
        /// only TPM-generated structures (so a quote cannot be forged by signing chosen bytes).
        const AK_REQUIRED = Self::RESTRICTED.bits()
            | Self::SIGN_ENCRYPT.bits()
            | Self::FIXED_TPM.bits()
            | Self::FIXED_PARENT.bits()
            | Self::SENSITIVE_DATA_ORIGIN.bits();

        // The other bits of the 32 (reserved, or not checked here) are kept, not dropped.
        const _ = !0;
    }
}

/// An attestation key's public area: a marshalled `TPMT_PUBLIC` (Part 2 §12.2.4), **without**
/// the `u16` size prefix of a `TPM2B_PUBLIC`.
///
/// This is exactly what `tss_esapi::structures::Public::marshall()` returns
/// (`Tss2_MU_TPMT_PUBLIC_Marshal`). The AK's Name (Part 1 §16) is computed over these bytes.
/// Checked by [`verify_ak`](super::verify_ak), at most
/// [`MAX_AK_PUBLIC_BYTES`](super::MAX_AK_PUBLIC_BYTES).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AkPublic(pub Vec<u8>);

impl AkPublic {
    /// Builds the `TPMT_PUBLIC` of an ECC P-256 ECDSA-SHA256 signing key with public point
    /// (`x`, `y`) (32-byte big-endian coordinates):
    ///
    /// `type = TPM_ALG_ECC (0x0023)`, `nameAlg = TPM_ALG_SHA256`, `objectAttributes`, an empty
    /// `authPolicy`, `TPMS_ECC_PARMS { symmetric = TPM_ALG_NULL, scheme = TPM_ALG_ECDSA
    /// (0x0018) with SHA-256, curveID = TPM_ECC_NIST_P256 (0x0003), kdf = TPM_ALG_NULL }`
    /// (Part 2 §12.2.3.6) and `unique = TPMS_ECC_POINT { x, y }` (§11.2.5.2).
    pub fn ecc_p256(x: [u8; 32], y: [u8; 32], attributes: ObjectAttributes) -> AkPublic {
        let mut out = Vec::with_capacity(2 + 2 + 4 + 2 + 2 + 4 + 2 + 2 + 2 + 34 + 34);
        out.extend_from_slice(&TPM_ALG_ECC.to_be_bytes());
        out.extend_from_slice(&TPM_ALG_SHA256.to_be_bytes());
        out.extend_from_slice(&attributes.bits().to_be_bytes());
        out.extend_from_slice(&0u16.to_be_bytes()); // authPolicy: empty TPM2B_DIGEST
        out.extend_from_slice(&TPM_ALG_NULL.to_be_bytes()); // symmetric
        out.extend_from_slice(&TPM_ALG_ECDSA.to_be_bytes()); // scheme
        out.extend_from_slice(&TPM_ALG_SHA256.to_be_bytes()); // scheme hashAlg
        out.extend_from_slice(&TPM_ECC_NIST_P256.to_be_bytes());
        out.extend_from_slice(&TPM_ALG_NULL.to_be_bytes()); // kdf
        put_tpm2b(&mut out, &x);
        put_tpm2b(&mut out, &y);
        AkPublic(out)
    }

    /// The key's TPM Name (Part 1 §16): `nameAlg (0x000B) ‖ SHA-256(TPMT_PUBLIC)`, 34 bytes.
    ///
    /// Computed as if `nameAlg` were SHA-256, which [`verify_ak`](super::verify_ak) requires.
    pub fn name(&self) -> Vec<u8> {
        let mut name = Vec::with_capacity(34);
        name.extend_from_slice(&TPM_ALG_SHA256.to_be_bytes());
        name.extend_from_slice(&Sha256::digest(&self.0));
        name
    }
}

/// The fields of a `TPMT_PUBLIC` that [`verify_ak`](super::verify_ak) checks, in the order it
/// checks them.
#[derive(Debug)]
pub(crate) struct ParsedEccPublic {
    pub(crate) x: [u8; 32],
    pub(crate) y: [u8; 32],
}

/// Parses an ECC P-256 ECDSA-SHA256 `TPMT_PUBLIC`, returning the first failed check.
pub(crate) fn parse_ecc_p256_public(bytes: &[u8]) -> Result<ParsedEccPublic, AttestError> {
    let mut r = Reader::new(bytes);
    if r.u16()? != TPM_ALG_ECC {
        return Err(AttestError::AkNotEcc);
    }
    if r.u16()? != TPM_ALG_SHA256 {
        return Err(AttestError::AkWrongNameAlg);
    }
    let attributes = ObjectAttributes::from_bits_retain(r.u32()?);
    let missing = ObjectAttributes::AK_REQUIRED.difference(attributes);
    if !missing.is_empty() {
        return Err(AttestError::AkAttributes {
            missing: missing.bits(),
        });
    }
    if attributes.contains(ObjectAttributes::DECRYPT) {
        return Err(AttestError::AkDecrypt);
    }
    // authPolicy: any policy digest is fine (AKs created under an EK may carry one).
    r.tpm2b(MAX_DIGEST_BYTES, "ak authPolicy too long")?;
    // TPMS_ECC_PARMS (Part 2 §12.2.3.6). A signing key's symmetric algorithm is TPM_ALG_NULL;
    // anything else is a storage key's parameters, not an AK's.
    if r.u16()? != TPM_ALG_NULL {
        return Err(AttestError::AkWrongScheme);
    }
    if r.u16()? != TPM_ALG_ECDSA {
        return Err(AttestError::AkWrongScheme);
    }
    if r.u16()? != TPM_ALG_SHA256 {
        return Err(AttestError::AkWrongScheme);
    }
    if r.u16()? != TPM_ECC_NIST_P256 {
        return Err(AttestError::AkWrongCurve);
    }
    // kdf (TPMT_KDF_SCHEME): not used by signing; a non-NULL scheme carries its hashAlg.
    if r.u16()? != TPM_ALG_NULL {
        r.u16()?;
    }
    // P-256 coordinates are exactly 32 bytes; any other length is not a P-256 point.
    let x = r.tpm2b(MAX_ECC_PARAMETER_BYTES, "ak x coordinate too long")?;
    let x: [u8; 32] = x.try_into().map_err(|_| AttestError::AkBadPoint)?;
    let y = r.tpm2b(MAX_ECC_PARAMETER_BYTES, "ak y coordinate too long")?;
    let y: [u8; 32] = y.try_into().map_err(|_| AttestError::AkBadPoint)?;
    r.finish()?;
    Ok(ParsedEccPublic { x, y })
}

/// `TPMS_CLOCK_INFO` (Part 2 §10.11.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockInfo {
    /// Milliseconds the TPM has been powered since its clock was last set (`clock`, u64).
    pub clock: u64,
    /// TPM Resets since the last TPM2_Clear (`resetCount`, u32).
    pub reset_count: u32,
    /// TPM Restarts / Resumes since the last TPM Reset or TPM2_Clear (`restartCount`, u32).
    pub restart_count: u32,
    /// Whether `clock` is known not to have gone backwards (`safe`, TPMI_YES_NO: 0 or 1).
    pub safe: bool,
}

/// A quote's `TPMS_ATTEST` (Part 2 §10.12.12) with `type = TPM_ST_ATTEST_QUOTE` and
/// `attested = TPMS_QUOTE_INFO` (§10.12.4).
///
/// Wire layout, big-endian: `magic: u32 = 0xFF544347 (TPM_GENERATED_VALUE)`,
/// `type: u16 = 0x8018`, `qualifiedSigner: TPM2B_NAME`, `extraData: TPM2B_DATA`,
/// `clockInfo: TPMS_CLOCK_INFO` (u64, u32, u32, u8), `firmwareVersion: u64`, then
/// `pcrSelect: TPML_PCR_SELECTION` (see [`PcrSelection`]) and `pcrDigest: TPM2B_DIGEST`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attest {
    /// `qualifiedSigner`: the signing key's Qualified Name (Part 1 §16.6), at most 66 bytes.
    pub qualified_signer: Vec<u8>,
    /// `extraData`: the caller's qualifying data, at most 66 bytes.
    pub extra_data: Vec<u8>,
    /// `clockInfo`.
    pub clock_info: ClockInfo,
    /// `firmwareVersion`: vendor-specific TPM firmware version.
    pub firmware_version: u64,
    /// `attested.quote.pcrSelect`.
    pub pcr_select: PcrSelection,
    /// `attested.quote.pcrDigest`: hash (SHA-256 for our AKs) of the selected PCR values
    /// concatenated in ascending order, at most 64 bytes.
    pub pcr_digest: Vec<u8>,
}

impl Attest {
    /// Marshals the structure (layout in the type's docs).
    ///
    /// Does not validate: a `TPM2B` field longer than its bound above marshals as given and
    /// [`Attest::parse`] will reject it; one longer than 65 535 bytes is truncated to that.
    pub fn marshal(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            4 + 2
                + 2
                + self.qualified_signer.len()
                + 2
                + self.extra_data.len()
                + 17
                + 8
                + 10
                + 2
                + self.pcr_digest.len(),
        );
        out.extend_from_slice(&TPM_GENERATED_VALUE.to_be_bytes());
        out.extend_from_slice(&TPM_ST_ATTEST_QUOTE.to_be_bytes());
        put_tpm2b(&mut out, &self.qualified_signer);
        put_tpm2b(&mut out, &self.extra_data);
        out.extend_from_slice(&self.clock_info.clock.to_be_bytes());
        out.extend_from_slice(&self.clock_info.reset_count.to_be_bytes());
        out.extend_from_slice(&self.clock_info.restart_count.to_be_bytes());
        out.push(u8::from(self.clock_info.safe));
        out.extend_from_slice(&self.firmware_version.to_be_bytes());
        self.pcr_select.marshal_into(&mut out);
        put_tpm2b(&mut out, &self.pcr_digest);
        out
    }

    /// Parses a quote's marshalled `TPMS_ATTEST`.
    ///
    /// # Errors
    /// - [`AttestError::TooLarge`] if `bytes` exceeds [`MAX_ATTEST_BYTES`] (checked first);
    /// - [`AttestError::BadMagic`] if `magic` is not `TPM_GENERATED_VALUE`;
    /// - [`AttestError::WrongType`] if `type` is not `TPM_ST_ATTEST_QUOTE`;
    /// - [`AttestError::Malformed`] for truncation, an over-long `TPM2B`, a `safe` byte other
    ///   than 0 or 1, a PCR selection of another shape than [`PcrSelection`]'s, or trailing
    ///   bytes.
    pub fn parse(bytes: &[u8]) -> Result<Attest, AttestError> {
        if bytes.len() > MAX_ATTEST_BYTES {
            return Err(AttestError::TooLarge {
                len: bytes.len(),
                max: MAX_ATTEST_BYTES,
            });
        }
        let mut r = Reader::new(bytes);
        let magic = r.u32()?;
        if magic != TPM_GENERATED_VALUE {
            return Err(AttestError::BadMagic(magic));
        }
        let kind = r.u16()?;
        if kind != TPM_ST_ATTEST_QUOTE {
            return Err(AttestError::WrongType(kind));
        }
        let qualified_signer = r.tpm2b(MAX_NAME_BYTES, "qualifiedSigner too long")?.to_vec();
        let extra_data = r.tpm2b(MAX_DATA_BYTES, "extraData too long")?.to_vec();
        let clock = r.u64()?;
        let reset_count = r.u32()?;
        let restart_count = r.u32()?;
        let safe = match r.u8()? {
            0 => false,
            1 => true,
            _ => return Err(AttestError::Malformed("clockInfo.safe is not 0 or 1")),
        };
        let firmware_version = r.u64()?;
        let pcr_select = PcrSelection::parse_from(&mut r)?;
        let pcr_digest = r.tpm2b(MAX_DIGEST_BYTES, "pcrDigest too long")?.to_vec();
        r.finish()?;
        Ok(Attest {
            qualified_signer,
            extra_data,
            clock_info: ClockInfo {
                clock,
                reset_count,
                restart_count,
                safe,
            },
            firmware_version,
            pcr_select,
            pcr_digest,
        })
    }
}

/// Appends a `TPM2B`: `u16` size then the bytes (truncated to 65 535 bytes, see
/// [`Attest::marshal`]).
fn put_tpm2b(out: &mut Vec<u8>, body: &[u8]) {
    let len = u16::try_from(body.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&body[..usize::from(len)]);
}

/// A bounds-checked big-endian reader; every failure is [`AttestError::Malformed`].
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Reader { rest: bytes }
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], AttestError> {
        if self.rest.len() < n {
            return Err(AttestError::Malformed("truncated"));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], AttestError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, AttestError> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, AttestError> {
        self.array().map(u16::from_be_bytes)
    }

    fn u32(&mut self) -> Result<u32, AttestError> {
        self.array().map(u32::from_be_bytes)
    }

    fn u64(&mut self) -> Result<u64, AttestError> {
        self.array().map(u64::from_be_bytes)
    }

    /// A `TPM2B` body of at most `max` bytes; `too_long` names the field if it is longer.
    fn tpm2b(&mut self, max: usize, too_long: &'static str) -> Result<&'a [u8], AttestError> {
        let len = usize::from(self.u16()?);
        if len > max {
            return Err(AttestError::Malformed(too_long));
        }
        self.bytes(len)
    }

    fn finish(self) -> Result<(), AttestError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(AttestError::Malformed("trailing bytes"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn example() -> Attest {
        Attest {
            qualified_signer: vec![0xAA, 0xBB],
            extra_data: vec![0x01, 0x02, 0x03],
            clock_info: ClockInfo {
                clock: 0x0102_0304_0506_0708,
                reset_count: 0x0A0B_0C0D,
                restart_count: 0x1112_1314,
                safe: true,
            },
            firmware_version: 0x2122_2324_2526_2728,
            pcr_select: PcrSelection::sha256(&[23, 0, 9]).unwrap(),
            pcr_digest: vec![0xDD; 4],
        }
    }

    /// Part 2 §10.12.12 `TPMS_ATTEST` with §10.12.4 `TPMS_QUOTE_INFO`, field by field.
    #[test]
    fn attest_known_answer_layout() {
        #[rustfmt::skip]
        let expected: Vec<u8> = [
            &[0xFF, 0x54, 0x43, 0x47][..],            // magic = TPM_GENERATED_VALUE
            &[0x80, 0x18],                            // type = TPM_ST_ATTEST_QUOTE
            &[0x00, 0x02, 0xAA, 0xBB],                // qualifiedSigner: TPM2B_NAME
            &[0x00, 0x03, 0x01, 0x02, 0x03],          // extraData: TPM2B_DATA
            &[1, 2, 3, 4, 5, 6, 7, 8],                // clockInfo.clock: u64
            &[0x0A, 0x0B, 0x0C, 0x0D],                // clockInfo.resetCount: u32
            &[0x11, 0x12, 0x13, 0x14],                // clockInfo.restartCount: u32
            &[0x01],                                  // clockInfo.safe: YES
            &[0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28], // firmwareVersion: u64
            &[0x00, 0x00, 0x00, 0x01],                // pcrSelect.count = 1
            &[0x00, 0x0B],                            // pcrSelections[0].hash = SHA256
            &[0x03],                                  // sizeofSelect = 3
            &[0x01, 0x02, 0x80],                      // PCR 0, 9, 23
            &[0x00, 0x04, 0xDD, 0xDD, 0xDD, 0xDD],    // pcrDigest: TPM2B_DIGEST
        ]
        .concat();
        assert_eq!(example().marshal(), expected);
        assert_eq!(Attest::parse(&expected).unwrap(), example());
    }

    /// Part 2 §12.2.4 `TPMT_PUBLIC` of an ECC key, field by field.
    #[test]
    fn ecc_public_known_answer_layout() {
        let ak = AkPublic::ecc_p256([1; 32], [2; 32], ObjectAttributes::AK_REQUIRED);
        #[rustfmt::skip]
        let expected: Vec<u8> = [
            &[0x00, 0x23][..],          // type = TPM_ALG_ECC
            &[0x00, 0x0B],              // nameAlg = SHA256
            &[0x00, 0x05, 0x00, 0x32],  // sign|restricted|sensitiveDataOrigin|fixedParent|fixedTPM
            &[0x00, 0x00],              // authPolicy: empty
            &[0x00, 0x10],              // symmetric = NULL
            &[0x00, 0x18, 0x00, 0x0B],  // scheme = ECDSA, SHA256
            &[0x00, 0x03],              // curveID = NIST P-256
            &[0x00, 0x10],              // kdf = NULL
            &[0x00, 0x20], &[1; 32],    // unique.x
            &[0x00, 0x20], &[2; 32],    // unique.y
        ]
        .concat();
        assert_eq!(ak.0, expected);
        let name = ak.name();
        assert_eq!(name.len(), 34);
        assert_eq!(&name[..2], &[0x00, 0x0B]);
        assert_eq!(&name[2..], Sha256::digest(&expected).as_slice());
    }

    #[test]
    fn pcr_selection_indices_and_errors() {
        let sel = PcrSelection::sha256(&[23, 3, 3, 0]).unwrap();
        assert_eq!(sel.indices(), vec![0, 3, 23]);
        assert!(sel.contains(23) && !sel.contains(22) && !sel.contains(200));
        assert_eq!(PcrSelection::sha256(&[24]), Err(AttestError::BadPcrIndex(24)));
        assert_eq!(PcrSelection::sha256(&[]).unwrap().indices(), Vec::<u8>::new());
    }

    #[test]
    fn attributes_contains() {
        let a = ObjectAttributes::AK_REQUIRED | ObjectAttributes::NO_DA;
        assert!(a.contains(ObjectAttributes::AK_REQUIRED));
        assert!(!ObjectAttributes::SIGN_ENCRYPT.contains(ObjectAttributes::AK_REQUIRED));
        assert_eq!(ObjectAttributes::AK_REQUIRED.bits(), 0x0005_0032);
        // Reserved bits survive: what is parsed is what was marshalled.
        let reserved = ObjectAttributes::from_bits_retain(0x8000_0001) | ObjectAttributes::DECRYPT;
        assert_eq!(reserved.bits(), 0x8002_0001);
        assert_eq!(
            ObjectAttributes::AK_REQUIRED.difference(reserved),
            ObjectAttributes::AK_REQUIRED
        );
    }

    #[test]
    fn parse_rejects_magic_type_and_shape() {
        let good = example().marshal();
        let mut bytes = good.clone();
        bytes[0] = 0;
        assert_eq!(Attest::parse(&bytes), Err(AttestError::BadMagic(0x0054_4347)));
        let mut bytes = good.clone();
        bytes[5] = 0x14; // TPM_ST_ATTEST_CERTIFY
        assert_eq!(Attest::parse(&bytes), Err(AttestError::WrongType(0x8014)));

        // clockInfo.safe is at 4 + 2 + 4 + 5 + 16.
        let mut bytes = good.clone();
        bytes[31] = 2;
        assert!(matches!(Attest::parse(&bytes), Err(AttestError::Malformed(_))));

        // PCR selection: count 2, other bank, sizeofSelect 4.
        let sel = 32 + 8;
        for (offset, value) in [(sel + 3, 2u8), (sel + 5, 0x04), (sel + 6, 4)] {
            let mut bytes = good.clone();
            bytes[offset] = value;
            assert!(
                matches!(Attest::parse(&bytes), Err(AttestError::Malformed(_))),
                "{offset}"
            );
        }

        let mut bytes = good.clone();
        bytes.push(0);
        assert_eq!(
            Attest::parse(&bytes),
            Err(AttestError::Malformed("trailing bytes"))
        );
    }

    #[test]
    fn parse_rejects_every_truncation() {
        let good = example().marshal();
        for len in 0..good.len() {
            assert!(
                matches!(Attest::parse(&good[..len]), Err(AttestError::Malformed(_))),
                "prefix of {len} bytes"
            );
        }
    }

    #[test]
    fn parse_bounds_tpm2b_lengths() {
        let mut a = example();
        a.qualified_signer = vec![0; MAX_NAME_BYTES + 1];
        assert_eq!(
            Attest::parse(&a.marshal()),
            Err(AttestError::Malformed("qualifiedSigner too long"))
        );
        let mut a = example();
        a.extra_data = vec![0; MAX_DATA_BYTES + 1];
        assert_eq!(
            Attest::parse(&a.marshal()),
            Err(AttestError::Malformed("extraData too long"))
        );
        let mut a = example();
        a.pcr_digest = vec![0; MAX_DIGEST_BYTES + 1];
        assert_eq!(
            Attest::parse(&a.marshal()),
            Err(AttestError::Malformed("pcrDigest too long"))
        );
        // A declared length past the end of the buffer.
        let mut bytes = example().marshal();
        bytes[6] = 0x01;
        assert!(matches!(Attest::parse(&bytes), Err(AttestError::Malformed(_))));
    }

    #[test]
    fn parse_rejects_oversize_before_parsing() {
        let bytes = vec![0u8; MAX_ATTEST_BYTES + 1];
        assert_eq!(
            Attest::parse(&bytes),
            Err(AttestError::TooLarge {
                len: MAX_ATTEST_BYTES + 1,
                max: MAX_ATTEST_BYTES
            })
        );
    }

    #[test]
    fn marshal_truncates_huge_fields_without_panicking() {
        let mut a = example();
        a.extra_data = vec![7; 70_000];
        let bytes = a.marshal();
        assert_eq!(&bytes[10..12], &[0xFF, 0xFF]); // extraData's size, saturated
        assert_eq!(bytes.len(), example().marshal().len() - 3 + 65_535);
        assert!(Attest::parse(&bytes).is_err());
    }

    fn arb_attest() -> impl Strategy<Value = Attest> {
        (
            proptest::collection::vec(any::<u8>(), 0..=MAX_NAME_BYTES),
            proptest::collection::vec(any::<u8>(), 0..=MAX_DATA_BYTES),
            (any::<u64>(), any::<u32>(), any::<u32>(), any::<bool>()),
            any::<u64>(),
            proptest::collection::vec(0u8..PCR_COUNT, 0..8),
            proptest::collection::vec(any::<u8>(), 0..=MAX_DIGEST_BYTES),
        )
            .prop_map(
                |(signer, extra, (clock, reset, restart, safe), fw, pcrs, digest)| Attest {
                    qualified_signer: signer,
                    extra_data: extra,
                    clock_info: ClockInfo {
                        clock,
                        reset_count: reset,
                        restart_count: restart,
                        safe,
                    },
                    firmware_version: fw,
                    pcr_select: PcrSelection::sha256(&pcrs).unwrap(),
                    pcr_digest: digest,
                },
            )
    }

    proptest! {
        #[test]
        fn parse_marshal_round_trip(a in arb_attest()) {
            let bytes = a.marshal();
            prop_assert!(bytes.len() <= MAX_ATTEST_BYTES);
            prop_assert_eq!(Attest::parse(&bytes).unwrap(), a);
        }

        #[test]
        fn parse_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..1200)) {
            let _ = Attest::parse(&bytes);
        }

        /// Mutations of a valid structure never panic, and whatever parses is canonical:
        /// re-marshalling gives back exactly the input.
        #[test]
        fn parse_is_canonical_under_mutation(
            a in arb_attest(),
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
            cut in any::<prop::sample::Index>(),
            truncate in any::<bool>(),
        ) {
            let mut bytes = a.marshal();
            for (at, value) in edits {
                let i = at.index(bytes.len());
                bytes[i] = value;
            }
            if truncate {
                bytes.truncate(cut.index(bytes.len() + 1));
            }
            if let Ok(parsed) = Attest::parse(&bytes) {
                prop_assert_eq!(parsed.marshal(), bytes);
            }
        }

        #[test]
        fn ecc_public_parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_ecc_p256_public(&bytes);
        }
    }
}
