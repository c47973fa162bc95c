//! Verification of attestation keys and quotes, in pure software (no TPM, no TSS).

use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use sha2::{Digest, Sha256};

use super::tpm2::{self, AkPublic, Attest, PcrSelection};
use super::{Quote, MAX_AK_PUBLIC_BYTES, MAX_ATTEST_BYTES, QUOTE_CONTEXT};

/// Why an attestation key or a quote was refused, or a selection could not be built.
///
/// Every variant except [`BadPcrIndex`](Self::BadPcrIndex) is the peer's fault (or its TPM's):
/// the verifier refuses the AK or the quote and may log [`AttestError::reason`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AttestError {
    /// A TPM structure is truncated, has an over-long field or trailing bytes, or has a shape
    /// this verifier does not accept; the string names the defect.
    #[error("malformed TPM structure: {0}")]
    Malformed(&'static str),
    /// The input exceeds its size bound (checked before any parsing).
    #[error("{len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Length received, in bytes.
        len: usize,
        /// Largest accepted, in bytes.
        max: usize,
    },
    /// A PCR index above 23 was asked for (caller error, from [`PcrSelection::sha256`]).
    #[error("PCR {0} is outside the SHA-256 bank's 0..=23")]
    BadPcrIndex(u8),
    /// The AK's `type` is not `TPM_ALG_ECC`.
    #[error("attestation key is not an ECC key")]
    AkNotEcc,
    /// The AK's `nameAlg` is not SHA-256.
    #[error("attestation key's name algorithm is not SHA-256")]
    AkWrongNameAlg,
    /// The AK lacks some of [`ObjectAttributes::AK_REQUIRED`](super::ObjectAttributes::AK_REQUIRED).
    #[error("attestation key lacks required attributes {missing:#010x}")]
    AkAttributes {
        /// The missing `TPMA_OBJECT` bits.
        missing: u32,
    },
    /// The AK has the `decrypt` attribute (an AK must be a signing-only key).
    #[error("attestation key is a decryption key")]
    AkDecrypt,
    /// The AK's curve is not NIST P-256.
    #[error("attestation key is not on NIST P-256")]
    AkWrongCurve,
    /// The AK's scheme is not ECDSA with SHA-256 (or its symmetric algorithm is not NULL).
    #[error("attestation key's scheme is not ECDSA-SHA256")]
    AkWrongScheme,
    /// The AK's public point is not a valid P-256 point (wrong coordinate length, off curve).
    #[error("attestation key's public point is invalid")]
    AkBadPoint,
    /// The quote's signature does not verify under the AK (or its scalars are out of range).
    #[error("quote signature does not verify")]
    BadSignature,
    /// The signed structure's `magic` is not `TPM_GENERATED_VALUE`.
    #[error("attestation magic {0:#010x} is not TPM_GENERATED_VALUE")]
    BadMagic(u32),
    /// The signed structure's `type` is not `TPM_ST_ATTEST_QUOTE`.
    #[error("attestation type {0:#06x} is not TPM_ST_ATTEST_QUOTE")]
    WrongType(u16),
    /// The quote's `extraData` is not the qualifying data the verifier asked for (a replay, or a
    /// quote bound to another nonce or game server).
    #[error("quote extraData does not match")]
    ExtraDataMismatch,
    /// The quote covers a different set of PCRs than asked for.
    #[error("quote PCR selection does not match")]
    PcrSelectionMismatch,
    /// The quote's PCR digest is none of the allowed ones (unknown binary or configuration).
    #[error("quote PCR digest does not match any allowed measurement")]
    PcrDigestMismatch,
}

impl AttestError {
    /// A short `snake_case` label for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            AttestError::Malformed(_) => "malformed",
            AttestError::TooLarge { .. } => "too_large",
            AttestError::BadPcrIndex(_) => "bad_pcr_index",
            AttestError::AkNotEcc => "ak_not_ecc",
            AttestError::AkWrongNameAlg => "ak_wrong_name_alg",
            AttestError::AkAttributes { .. } => "ak_attributes",
            AttestError::AkDecrypt => "ak_decrypt",
            AttestError::AkWrongCurve => "ak_wrong_curve",
            AttestError::AkWrongScheme => "ak_wrong_scheme",
            AttestError::AkBadPoint => "ak_bad_point",
            AttestError::BadSignature => "bad_signature",
            AttestError::BadMagic(_) => "bad_magic",
            AttestError::WrongType(_) => "wrong_type",
            AttestError::ExtraDataMismatch => "extra_data_mismatch",
            AttestError::PcrSelectionMismatch => "pcr_selection_mismatch",
            AttestError::PcrDigestMismatch => "pcr_digest_mismatch",
        }
    }
}

/// The qualifying data a verifier asks a game server to quote with: 32 bytes,
/// `SHA-256(QUOTE_CONTEXT ‖ u16be(nonce.len()) ‖ nonce ‖ gs_key ‖ u64be(gs_id))`.
///
/// Binds the quote to the verifier's fresh `nonce`, the game server's Ed25519 identity key
/// `gs_key` and its id, so a quote cannot be replayed or presented by another server.
/// A nonce longer than 65 535 bytes has its length field saturated (VS challenge nonces are
/// 32 bytes).
pub fn quote_extra_data(nonce: &[u8], gs_key: &[u8; 32], gs_id: u64) -> [u8; 32] {
    let len = u16::try_from(nonce.len()).unwrap_or(u16::MAX);
    let mut h = Sha256::new();
    h.update(QUOTE_CONTEXT);
    h.update(len.to_be_bytes());
    h.update(nonce);
    h.update(gs_key);
    h.update(gs_id.to_be_bytes());
    h.finalize().into()
}

/// The value of a SHA-256 PCR that starts at 32 zero bytes (after TPM Reset) and is extended
/// with each of `measurements` in order: `pcr ← SHA-256(pcr ‖ m)` (Part 1 §17.2).
pub fn expected_pcr_value(measurements: &[[u8; 32]]) -> [u8; 32] {
    measurements.iter().fold([0u8; 32], |pcr, m| {
        let mut h = Sha256::new();
        h.update(pcr);
        h.update(m);
        h.finalize().into()
    })
}

/// The `pcrDigest` `TPM2_Quote` computes with a SHA-256 signing scheme (Part 3 §18.4): SHA-256
/// of the selected PCRs' values concatenated in ascending index order.
pub fn pcr_digest(values: &[[u8; 32]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for v in values {
        h.update(v);
    }
    h.finalize().into()
}

/// The `pcrDigest` of a quote over [`MEASUREMENT_PCR`](super::MEASUREMENT_PCR) alone, after a game
/// server extended a fresh PCR 23 with `binary` (SHA-256 of its executable) then `config`
/// (SHA-256 of its configuration): `pcr_digest(&[expected_pcr_value(&[binary, config])])`.
pub fn measurement_pcr_digest(binary: [u8; 32], config: [u8; 32]) -> [u8; 32] {
    pcr_digest(&[expected_pcr_value(&[binary, config])])
}

/// An attestation key that passed [`verify_ak`]: its verifying key, Name and public area.
#[derive(Debug, Clone)]
pub struct VerifiedAk {
    key: VerifyingKey,
    name: Vec<u8>,
    public: AkPublic,
}

impl VerifiedAk {
    /// The AK's TPM Name (Part 1 §16): `0x000B ‖ SHA-256(TPMT_PUBLIC)`, 34 bytes.
    pub fn name(&self) -> &[u8] {
        &self.name
    }

    /// The AK's public area as enrolled.
    pub fn public(&self) -> &AkPublic {
        &self.public
    }

    /// The AK's P-256 verifying key.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.key
    }
}

/// Checks an attestation key at enrolment: a marshalled `TPMT_PUBLIC` (Part 2 §12.2.4, no size
/// prefix) of an ECC key with `nameAlg` SHA-256, attributes including
/// [`ObjectAttributes::AK_REQUIRED`](super::ObjectAttributes::AK_REQUIRED) and not `decrypt`,
/// a NULL symmetric algorithm, scheme ECDSA with SHA-256, curve NIST P-256 and a valid point.
/// Any `authPolicy` is accepted (AKs created under an EK may carry one).
///
/// This checks the *shape* of the key only; that it lives in a genuine TPM is established
/// elsewhere (credential activation against the EK, or operator enrolment).
///
/// # Errors
/// [`AttestError::TooLarge`] above [`MAX_AK_PUBLIC_BYTES`] (checked first), then in parse
/// order [`AkNotEcc`](AttestError::AkNotEcc), [`AkWrongNameAlg`](AttestError::AkWrongNameAlg),
/// [`AkAttributes`](AttestError::AkAttributes), [`AkDecrypt`](AttestError::AkDecrypt),
/// [`AkWrongScheme`](AttestError::AkWrongScheme), [`AkWrongCurve`](AttestError::AkWrongCurve),
/// [`AkBadPoint`](AttestError::AkBadPoint); [`Malformed`](AttestError::Malformed) for
/// truncation or trailing bytes.
pub fn verify_ak(ak: &AkPublic) -> Result<VerifiedAk, AttestError> {
    if ak.0.len() > MAX_AK_PUBLIC_BYTES {
        return Err(AttestError::TooLarge {
            len: ak.0.len(),
            max: MAX_AK_PUBLIC_BYTES,
        });
    }
    let parsed = tpm2::parse_ecc_p256_public(&ak.0)?;
    let mut sec1 = [0u8; 65];
    sec1[0] = 0x04;
    sec1[1..33].copy_from_slice(&parsed.x);
    sec1[33..].copy_from_slice(&parsed.y);
    let key = VerifyingKey::from_sec1_bytes(&sec1).map_err(|_| AttestError::AkBadPoint)?;
    Ok(VerifiedAk {
        key,
        name: ak.name(),
        public: ak.clone(),
    })
}

/// What a verifier expects of a quote.
#[derive(Debug, Clone, Copy)]
pub struct ExpectedQuote<'a> {
    /// The exact `extraData` asked for, normally [`quote_extra_data`].
    pub extra_data: &'a [u8],
    /// The exact PCR selection asked for, normally PCR 23 alone.
    pub selection: &'a PcrSelection,
    /// Allowed `pcrDigest` values (one per allowed software version, e.g. from
    /// [`measurement_pcr_digest`]); the quote must match one of them.
    pub pcr_digests: &'a [[u8; 32]],
}

/// A quote that passed [`verify_quote`], with its parsed contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedQuote {
    /// The signed `TPMS_ATTEST`. `attest.qualified_signer` is the AK's *Qualified* Name
    /// (Part 1 §16.6), which depends on its hierarchy and is not checked.
    pub attest: Attest,
}

/// Verifies a quote against an enrolled AK and what the verifier asked for.
///
/// In order: `quote.attest` within [`MAX_ATTEST_BYTES`]; the ECDSA P-256 signature
/// (`quote.signature_r`, `quote.signature_s`) over SHA-256 of `quote.attest` exactly as received
/// (FIPS 186-4 §6.4; nothing of the structure is trusted before this); then the structure's
/// parse, magic and type; `extraData`, PCR selection and `pcrDigest`. A TPM does not
/// normalise `s`, so a high-`s` signature is as valid as its low-`s` twin and is accepted
/// (it is normalised before verification); malleability is harmless here because the
/// signed bytes, not the signature, carry the freshness (`extraData`).
///
/// # Errors
/// [`TooLarge`](AttestError::TooLarge), [`BadSignature`](AttestError::BadSignature), the
/// errors of [`Attest::parse`], [`ExtraDataMismatch`](AttestError::ExtraDataMismatch),
/// [`PcrSelectionMismatch`](AttestError::PcrSelectionMismatch),
/// [`PcrDigestMismatch`](AttestError::PcrDigestMismatch).
pub fn verify_quote(
    ak: &VerifiedAk,
    quote: &Quote,
    expected: &ExpectedQuote<'_>,
) -> Result<VerifiedQuote, AttestError> {
    if quote.attest.len() > MAX_ATTEST_BYTES {
        return Err(AttestError::TooLarge {
            len: quote.attest.len(),
            max: MAX_ATTEST_BYTES,
        });
    }
    let signature = Signature::from_scalars(quote.signature_r, quote.signature_s)
        .map_err(|_| AttestError::BadSignature)?;
    let signature = signature.normalize_s().unwrap_or(signature);
    ak.key
        .verify(&quote.attest, &signature)
        .map_err(|_| AttestError::BadSignature)?;

    let attest = Attest::parse(&quote.attest)?;
    if attest.extra_data != expected.extra_data {
        return Err(AttestError::ExtraDataMismatch);
    }
    if attest.pcr_select != *expected.selection {
        return Err(AttestError::PcrSelectionMismatch);
    }
    if !expected.pcr_digests.iter().any(|d| attest.pcr_digest == d[..]) {
        return Err(AttestError::PcrDigestMismatch);
    }
    Ok(VerifiedQuote { attest })
}

#[cfg(test)]
mod tests {
    use super::super::tpm2::{ClockInfo, ObjectAttributes};
    use super::super::{SimulatedTpm, TpmProvider, MEASUREMENT_PCR};
    use super::*;
    use p256::elliptic_curve::ff::PrimeField;
    use proptest::prelude::*;

    const NONCE: [u8; 24] = [0x42; 24];
    const GS_KEY: [u8; 32] = [0x11; 32];
    const GS_ID: u64 = 7;
    const BINARY: [u8; 32] = [0xB1; 32];
    const CONFIG: [u8; 32] = [0xC0; 32];

    /// A game server's TPM after measuring `binary` and `config` into PCR 23.
    fn measured_tpm(binary: [u8; 32], config: [u8; 32]) -> SimulatedTpm {
        let mut tpm = SimulatedTpm::new([0x5E; 32]);
        tpm.extend_pcr(MEASUREMENT_PCR, binary).unwrap();
        tpm.extend_pcr(MEASUREMENT_PCR, config).unwrap();
        tpm
    }

    fn measurement_selection() -> PcrSelection {
        PcrSelection::sha256(&[MEASUREMENT_PCR]).unwrap()
    }

    /// The verifier's side: enrol the AK, expect our nonce/GS and the one allowed measurement.
    fn check(tpm: &mut SimulatedTpm, quote: &Quote) -> Result<VerifiedQuote, AttestError> {
        check_with(&verify_ak(&tpm.ak_public().unwrap())?, quote)
    }

    /// [`check`] against an already enrolled AK.
    fn check_with(ak: &VerifiedAk, quote: &Quote) -> Result<VerifiedQuote, AttestError> {
        let extra = quote_extra_data(&NONCE, &GS_KEY, GS_ID);
        let digests = [measurement_pcr_digest(BINARY, CONFIG)];
        let selection = measurement_selection();
        verify_quote(
            ak,
            quote,
            &ExpectedQuote {
                extra_data: &extra,
                selection: &selection,
                pcr_digests: &digests,
            },
        )
    }

    /// Signs arbitrary bytes with the simulated AK, then checks them as a quote.
    fn check_signed(tpm: &mut SimulatedTpm, attest: Vec<u8>) -> Result<VerifiedQuote, AttestError> {
        let quote = tpm.sign_raw(attest);
        check(tpm, &quote)
    }

    fn good_quote(tpm: &mut SimulatedTpm) -> Quote {
        tpm.quote(
            &quote_extra_data(&NONCE, &GS_KEY, GS_ID),
            &measurement_selection(),
        )
        .unwrap()
    }

    #[test]
    fn simulated_quote_verifies() {
        let mut tpm = measured_tpm(BINARY, CONFIG);
        let quote = good_quote(&mut tpm);
        let verified = check(&mut tpm, &quote).unwrap();
        assert_eq!(
            verified.attest.extra_data,
            quote_extra_data(&NONCE, &GS_KEY, GS_ID)
        );
        assert_eq!(verified.attest.pcr_digest, measurement_pcr_digest(BINARY, CONFIG));
        assert_eq!(tpm.read_pcr(23).unwrap(), expected_pcr_value(&[BINARY, CONFIG]));
    }

    #[test]
    fn any_allowed_digest_matches() {
        let mut tpm = measured_tpm(BINARY, CONFIG);
        let quote = good_quote(&mut tpm);
        let ak = verify_ak(&tpm.ak_public().unwrap()).unwrap();
        let extra = quote_extra_data(&NONCE, &GS_KEY, GS_ID);
        let digests = [
            measurement_pcr_digest([0; 32], CONFIG),
            measurement_pcr_digest(BINARY, CONFIG),
        ];
        let selection = measurement_selection();
        let expected = ExpectedQuote {
            extra_data: &extra,
            selection: &selection,
            pcr_digests: &digests,
        };
        assert!(verify_quote(&ak, &quote, &expected).is_ok());
        let none: [[u8; 32]; 0] = [];
        let expected = ExpectedQuote {
            pcr_digests: &none,
            ..expected
        };
        assert_eq!(
            verify_quote(&ak, &quote, &expected),
            Err(AttestError::PcrDigestMismatch)
        );
    }

    #[test]
    fn wrong_nonce_is_extra_data_mismatch() {
        let mut tpm = measured_tpm(BINARY, CONFIG);
        let quote = tpm.quote(
            &quote_extra_data(&[0x43; 24], &GS_KEY, GS_ID),
            &measurement_selection(),
        );
        assert_eq!(
            check(&mut tpm, &quote.unwrap()),
            Err(AttestError::ExtraDataMismatch)
        );
    }

    #[test]
    fn other_game_server_is_extra_data_mismatch() {
        let mut tpm = measured_tpm(BINARY, CONFIG);
        let other_key = quote_extra_data(&NONCE, &[0x12; 32], GS_ID);
        let quote = tpm.quote(&other_key, &measurement_selection()).unwrap();
        assert_eq!(check(&mut tpm, &quote), Err(AttestError::ExtraDataMismatch));
        let other_id = quote_extra_data(&NONCE, &GS_KEY, GS_ID + 1);
        let quote = tpm.quote(&other_id, &measurement_selection()).unwrap();
        assert_eq!(check(&mut tpm, &quote), Err(AttestError::ExtraDataMismatch));
    }

    #[test]
    fn extra_data_binds_every_input() {
        let base = quote_extra_data(&NONCE, &GS_KEY, GS_ID);
        assert_ne!(base, quote_extra_data(&NONCE[..23], &GS_KEY, GS_ID));
        assert_ne!(base, quote_extra_data(&NONCE, &[0; 32], GS_ID));
        assert_ne!(base, quote_extra_data(&NONCE, &GS_KEY, 0));
        let mut h = Sha256::new();
        h.update(b"tickwire/quote/v1\0");
        h.update([0, 24]);
        h.update(NONCE);
        h.update(GS_KEY);
        h.update(GS_ID.to_be_bytes());
        assert_eq!(base, <[u8; 32]>::from(h.finalize()));
    }

    #[test]
    fn modified_measurement_is_pcr_digest_mismatch() {
        let mut modified_binary = BINARY;
        modified_binary[0] ^= 1;
        let mut tpm = measured_tpm(modified_binary, CONFIG);
        let quote = good_quote(&mut tpm);
        assert_eq!(check(&mut tpm, &quote), Err(AttestError::PcrDigestMismatch));
        // Measurements in the wrong order are a different PCR value.
        let mut tpm = measured_tpm(CONFIG, BINARY);
        let quote = good_quote(&mut tpm);
        assert_eq!(check(&mut tpm, &quote), Err(AttestError::PcrDigestMismatch));
    }

    #[test]
    fn other_selection_is_pcr_selection_mismatch() {
        let mut tpm = measured_tpm(BINARY, CONFIG);
        let extra = quote_extra_data(&NONCE, &GS_KEY, GS_ID);
        for pcrs in [&[22u8][..], &[22, 23], &[]] {
            let quote = tpm.quote(&extra, &PcrSelection::sha256(pcrs).unwrap()).unwrap();
            assert_eq!(
                check(&mut tpm, &quote),
                Err(AttestError::PcrSelectionMismatch),
                "{pcrs:?}"
            );
        }
    }

    #[test]
    fn flipped_bytes_are_bad_signature() {
        let mut tpm = measured_tpm(BINARY, CONFIG);
        let quote = good_quote(&mut tpm);
        let mut q = quote.clone();
        q.signature_r[31] ^= 1;
        assert_eq!(check(&mut tpm, &q), Err(AttestError::BadSignature));
        let mut q = quote.clone();
        q.signature_s[0] ^= 0x80;
        assert_eq!(check(&mut tpm, &q), Err(AttestError::BadSignature));
        let mut q = quote.clone();
        q.signature_r = [0; 32];
        assert_eq!(check(&mut tpm, &q), Err(AttestError::BadSignature));
        let mut q = quote.clone();
        q.signature_s = [0xFF; 32]; // above the group order
        assert_eq!(check(&mut tpm, &q), Err(AttestError::BadSignature));
        for i in 0..quote.attest.len() {
            let mut q = quote.clone();
            q.attest[i] ^= 1;
            assert_eq!(
                check(&mut tpm, &q),
                Err(AttestError::BadSignature),
                "attest byte {i}"
            );
        }
        // A different AK's signature.
        let mut other = measured_tpm(BINARY, CONFIG);
        let ak = verify_ak(&SimulatedTpm::new([0x99; 32]).ak_public().unwrap()).unwrap();
        assert_eq!(
            check_with(&ak, &good_quote(&mut other)),
            Err(AttestError::BadSignature)
        );
    }

    #[test]
    fn high_s_signature_is_accepted() {
        let mut tpm = measured_tpm(BINARY, CONFIG);
        let quote = good_quote(&mut tpm);
        let s = p256::Scalar::from_repr(quote.signature_s.into()).unwrap();
        let twin = Quote {
            signature_s: (-s).to_repr().into(),
            ..quote.clone()
        };
        assert_ne!(twin.signature_s, quote.signature_s);
        assert!(check(&mut tpm, &quote).is_ok());
        assert!(check(&mut tpm, &twin).is_ok());
    }

    #[test]
    fn unsigned_bytes_are_never_parsed() {
        let mut tpm = measured_tpm(BINARY, CONFIG);
        let mut quote = good_quote(&mut tpm);
        quote.attest[0] = 0; // bad magic, but the signature fails first
        assert_eq!(check(&mut tpm, &quote), Err(AttestError::BadSignature));
        quote.attest = vec![1, 2, 3];
        assert_eq!(check(&mut tpm, &quote), Err(AttestError::BadSignature));
    }

    #[test]
    fn signed_but_malformed_structures() {
        let mut tpm = measured_tpm(BINARY, CONFIG);
        let attest = Attest {
            qualified_signer: vec![],
            extra_data: quote_extra_data(&NONCE, &GS_KEY, GS_ID).to_vec(),
            clock_info: ClockInfo {
                clock: 0,
                reset_count: 0,
                restart_count: 0,
                safe: true,
            },
            firmware_version: 0,
            pcr_select: measurement_selection(),
            pcr_digest: measurement_pcr_digest(BINARY, CONFIG).to_vec(),
        };
        let good = attest.marshal();
        assert!(check_signed(&mut tpm, good.clone()).is_ok());

        let mut bytes = good.clone();
        bytes[3] = 0x48;
        assert_eq!(
            check_signed(&mut tpm, bytes),
            Err(AttestError::BadMagic(0xFF54_4348))
        );
        let mut bytes = good.clone();
        bytes[5] = 0x17; // TPM_ST_ATTEST_CERTIFY
        assert_eq!(check_signed(&mut tpm, bytes), Err(AttestError::WrongType(0x8017)));
        let truncated = good[..good.len() - 1].to_vec();
        assert!(matches!(
            check_signed(&mut tpm, truncated),
            Err(AttestError::Malformed(_))
        ));
        assert!(matches!(
            check_signed(&mut tpm, Vec::new()),
            Err(AttestError::Malformed(_))
        ));
        let mut trailing = good;
        trailing.push(0);
        assert_eq!(
            check_signed(&mut tpm, trailing),
            Err(AttestError::Malformed("trailing bytes"))
        );
    }

    #[test]
    fn oversize_quote_is_too_large() {
        let mut tpm = measured_tpm(BINARY, CONFIG);
        assert_eq!(
            check_signed(&mut tpm, vec![0; MAX_ATTEST_BYTES + 1]),
            Err(AttestError::TooLarge {
                len: MAX_ATTEST_BYTES + 1,
                max: MAX_ATTEST_BYTES
            })
        );
    }

    #[test]
    fn pcr_helpers() {
        assert_eq!(expected_pcr_value(&[]), [0; 32]);
        let once: [u8; 32] = Sha256::digest([[0u8; 32], [1; 32]].concat()).into();
        assert_eq!(expected_pcr_value(&[[1; 32]]), once);
        let twice: [u8; 32] = Sha256::digest([once, [2; 32]].concat()).into();
        assert_eq!(expected_pcr_value(&[[1; 32], [2; 32]]), twice);
        let digest: [u8; 32] = Sha256::digest([[3u8; 32], [4; 32]].concat()).into();
        assert_eq!(pcr_digest(&[[3; 32], [4; 32]]), digest);
        assert_eq!(measurement_pcr_digest([1; 32], [2; 32]), pcr_digest(&[twice]));
    }

    // --- AK enrolment ---

    fn sim_ak_bytes() -> Vec<u8> {
        SimulatedTpm::new([0x5E; 32]).ak_public().unwrap().0
    }

    #[test]
    fn simulated_ak_verifies() {
        let ak = SimulatedTpm::new([0x5E; 32]).ak_public().unwrap();
        let verified = verify_ak(&ak).unwrap();
        assert_eq!(verified.name(), ak.name().as_slice());
        assert_eq!(verified.public(), &ak);
    }

    #[test]
    fn unrestricted_ak_is_refused() {
        let attrs = ObjectAttributes::SIGN_ENCRYPT
            | ObjectAttributes::FIXED_TPM
            | ObjectAttributes::FIXED_PARENT
            | ObjectAttributes::SENSITIVE_DATA_ORIGIN;
        let ak = SimulatedTpm::with_attributes([1; 32], attrs).ak_public().unwrap();
        assert_eq!(
            verify_ak(&ak).unwrap_err(),
            AttestError::AkAttributes { missing: 1 << 16 }
        );
        let ak = SimulatedTpm::with_attributes([1; 32], ObjectAttributes(0))
            .ak_public()
            .unwrap();
        assert_eq!(
            verify_ak(&ak).unwrap_err(),
            AttestError::AkAttributes {
                missing: ObjectAttributes::AK_REQUIRED.0
            }
        );
        let decrypt = ObjectAttributes::AK_REQUIRED | ObjectAttributes::DECRYPT;
        let ak = SimulatedTpm::with_attributes([1; 32], decrypt)
            .ak_public()
            .unwrap();
        assert_eq!(verify_ak(&ak).unwrap_err(), AttestError::AkDecrypt);
    }

    #[test]
    fn ak_field_checks() {
        let good = sim_ak_bytes();
        let with = |offset: usize, value: &[u8]| {
            let mut b = good.clone();
            b[offset..offset + value.len()].copy_from_slice(value);
            verify_ak(&AkPublic(b)).map(|_| ())
        };
        assert_eq!(with(0, &[0x00, 0x01]), Err(AttestError::AkNotEcc)); // RSA
        assert_eq!(with(2, &[0x00, 0x0C]), Err(AttestError::AkWrongNameAlg)); // SHA384
        assert_eq!(with(10, &[0x00, 0x06]), Err(AttestError::AkWrongScheme)); // AES symmetric
        assert_eq!(with(12, &[0x00, 0x1A]), Err(AttestError::AkWrongScheme)); // ECDAA
        assert_eq!(with(14, &[0x00, 0x04]), Err(AttestError::AkWrongScheme)); // SHA-1
        assert_eq!(with(16, &[0x00, 0x04]), Err(AttestError::AkWrongCurve)); // P-384
        assert_eq!(with(22, &[0; 32]), Err(AttestError::AkBadPoint)); // off the curve
    }

    #[test]
    fn ak_point_checks() {
        let ak = AkPublic::ecc_p256([0; 32], [0; 32], ObjectAttributes::AK_REQUIRED);
        assert_eq!(verify_ak(&ak).unwrap_err(), AttestError::AkBadPoint);
        // A 31-byte x coordinate.
        let good = sim_ak_bytes();
        let mut b = good[..20].to_vec();
        b.extend_from_slice(&[0x00, 0x1F]);
        b.extend_from_slice(&good[23..]);
        assert_eq!(verify_ak(&AkPublic(b)).unwrap_err(), AttestError::AkBadPoint);
    }

    #[test]
    fn ak_with_auth_policy_and_kdf_is_accepted() {
        let good = sim_ak_bytes();
        let mut b = good[..8].to_vec();
        b.extend_from_slice(&[0x00, 0x20]);
        b.extend_from_slice(&[0xAB; 32]); // e.g. PolicySecret(endorsement)
        b.extend_from_slice(&good[10..]);
        let ak = AkPublic(b);
        assert_eq!(verify_ak(&ak).unwrap().name(), ak.name().as_slice());
        // A quote from that key still verifies (the key is the same point).
        let mut tpm = measured_tpm(BINARY, CONFIG);
        let quote = good_quote(&mut tpm);
        assert!(check_with(&verify_ak(&ak).unwrap(), &quote).is_ok());
    }

    #[test]
    fn ak_malformed_and_oversize() {
        let good = sim_ak_bytes();
        for len in 0..good.len() {
            let err = verify_ak(&AkPublic(good[..len].to_vec())).unwrap_err();
            assert!(
                matches!(err, AttestError::Malformed(_) | AttestError::AkBadPoint),
                "{len}: {err:?}"
            );
        }
        let mut trailing = good;
        trailing.push(0);
        assert_eq!(
            verify_ak(&AkPublic(trailing)).unwrap_err(),
            AttestError::Malformed("trailing bytes")
        );
        let big = AkPublic(vec![0; MAX_AK_PUBLIC_BYTES + 1]);
        assert_eq!(
            verify_ak(&big).unwrap_err(),
            AttestError::TooLarge {
                len: MAX_AK_PUBLIC_BYTES + 1,
                max: MAX_AK_PUBLIC_BYTES
            }
        );
    }

    #[test]
    fn reasons_are_snake_case() {
        let all = [
            AttestError::Malformed("x"),
            AttestError::TooLarge { len: 2, max: 1 },
            AttestError::BadPcrIndex(24),
            AttestError::AkNotEcc,
            AttestError::AkWrongNameAlg,
            AttestError::AkAttributes { missing: 1 },
            AttestError::AkDecrypt,
            AttestError::AkWrongCurve,
            AttestError::AkWrongScheme,
            AttestError::AkBadPoint,
            AttestError::BadSignature,
            AttestError::BadMagic(0),
            AttestError::WrongType(0),
            AttestError::ExtraDataMismatch,
            AttestError::PcrSelectionMismatch,
            AttestError::PcrDigestMismatch,
        ];
        let mut seen = std::collections::HashSet::new();
        for e in &all {
            let r = e.reason();
            assert!(r.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{r}");
            assert!(seen.insert(r), "duplicate {r}");
            assert!(!e.to_string().is_empty());
        }
    }

    proptest! {
        #[test]
        fn verify_ak_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..1100)) {
            let _ = verify_ak(&AkPublic(bytes));
        }

        #[test]
        fn verify_ak_never_panics_on_mutations(
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        ) {
            let mut bytes = sim_ak_bytes();
            for (at, value) in edits {
                let i = at.index(bytes.len());
                bytes[i] = value;
            }
            let _ = verify_ak(&AkPublic(bytes));
        }

        #[test]
        fn verify_quote_never_panics(
            attest in proptest::collection::vec(any::<u8>(), 0..1100),
            r in any::<[u8; 32]>(),
            s in any::<[u8; 32]>(),
        ) {
            let mut tpm = measured_tpm(BINARY, CONFIG);
            let quote = Quote { attest, signature_r: r, signature_s: s };
            prop_assert!(check(&mut tpm, &quote).is_err());
        }
    }
}
