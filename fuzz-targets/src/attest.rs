//! TPM 2.0 structures and quote verification (TPM 2.0 Library Part 2; `PROTOCOL.md` §8.3).

use tickwire_core::attest::{
    measurement_pcr_digest, verify_ak, verify_quote, AkPublic, Attest, AttestError, ExpectedQuote,
    ObjectAttributes, PcrSelection, Quote, MAX_AK_PUBLIC_BYTES, MAX_ATTEST_BYTES,
};

use crate::fixtures::{
    ak_public, expected_extra_data, measurement_selection, sign_attest, BINARY_SHA256, CONFIG_SHA256,
};
use crate::input::Input;

/// `TPMS_ATTEST` parsing ([`Attest::parse`]).
///
/// Input: a marshalled `TPMS_ATTEST`.
///
/// Asserts: parsed inputs are at most [`MAX_ATTEST_BYTES`]; `qualifiedSigner` and `extraData`
/// are at most 66 bytes and `pcrDigest` at most 64 (TPM 2.0 Library Part 2 §10.5.3, §10.4.3,
/// §10.4.2 bounds for SHA-256/SHA-512 TPMs); marshalling the parse gives back the input
/// exactly (the encoding is canonical); selected PCRs are in the 24-PCR bank.
pub fn tpm_attest(data: &[u8]) {
    match Attest::parse(data) {
        Ok(attest) => {
            assert!(data.len() <= MAX_ATTEST_BYTES);
            assert!(attest.qualified_signer.len() <= 66);
            assert!(attest.extra_data.len() <= 66);
            assert!(attest.pcr_digest.len() <= 64);
            assert!(attest.pcr_select.indices().iter().all(|&pcr| pcr < 24));
            assert_eq!(attest.marshal(), data, "parse is not canonical");
        }
        Err(AttestError::TooLarge { len, max }) => {
            assert_eq!((len, max), (data.len(), MAX_ATTEST_BYTES));
            assert!(len > max);
        }
        Err(_) => {}
    }
}

/// AK public-area parsing and checks ([`verify_ak`]).
///
/// Input: a marshalled `TPMT_PUBLIC` (no size prefix).
///
/// Asserts: accepted inputs are at most [`MAX_AK_PUBLIC_BYTES`]; the Name is
/// `0x000B ‖ SHA-256(input)`; the required attributes are set and `decrypt` is not; an
/// accepted 88-byte input (empty `authPolicy`, NULL kdf) is exactly
/// [`AkPublic::ecc_p256`] of its point and attributes.
pub fn tpm_ak_public(data: &[u8]) {
    let ak = AkPublic(data.to_vec());
    let Ok(verified) = verify_ak(&ak) else {
        return;
    };
    assert!(data.len() <= MAX_AK_PUBLIC_BYTES);
    assert_eq!(verified.name(), ak.name().as_slice());
    assert_eq!(verified.name().len(), 34);
    assert_eq!(verified.public(), &ak);
    let attributes = ObjectAttributes(u32::from_be_bytes([data[4], data[5], data[6], data[7]]));
    assert!(attributes.contains(ObjectAttributes::AK_REQUIRED));
    assert!(!attributes.contains(ObjectAttributes::DECRYPT));
    if data.len() == 88 {
        let point = verified.verifying_key().to_encoded_point(false);
        let (Some(x), Some(y)) = (point.x(), point.y()) else {
            panic!("an uncompressed point has both coordinates");
        };
        let mut xy = ([0u8; 32], [0u8; 32]);
        xy.0.copy_from_slice(x);
        xy.1.copy_from_slice(y);
        assert_eq!(AkPublic::ecc_p256(xy.0, xy.1, attributes), ak);
    }
}

/// Quote verification ([`verify_quote`]) against the fixed AK (`ak_public`).
///
/// Input: `mode: u8`, `r: [u8; 32]`, `s: [u8; 32]`, then the marshalled `TPMS_ATTEST`.
/// `mode & 1` signs the attest bytes with the AK instead of using `r`, `s` (so the checks after
/// the signature are reached); `mode & 2` expects the parsed quote's own `extraData`, selection
/// and digest (so acceptance is reachable from any well-formed attest), else the fixed
/// expectation (nonce `QUOTE_NONCE`, PCR 23, `BINARY_SHA256` then `CONFIG_SHA256`).
///
/// Asserts: an accepted quote's parse is [`Attest::parse`] of its bytes and matches the
/// expectation in every field; a signed quote over bytes that parse and match is accepted.
pub fn tpm_quote(data: &[u8]) {
    let mut input = Input::new(data);
    let mode = input.u8();
    let r = input.array::<32>();
    let s = input.array::<32>();
    let attest = input.rest().to_vec();
    let quote = if mode & 1 != 0 {
        sign_attest(attest)
    } else {
        Quote {
            attest,
            signature_r: r,
            signature_s: s,
        }
    };
    let ak = verify_ak(&ak_public()).expect("the fixed AK is valid");
    let parsed = Attest::parse(&quote.attest);
    let fixed_extra = expected_extra_data();
    let fixed_selection = measurement_selection();
    let mut digests = vec![measurement_pcr_digest(BINARY_SHA256, CONFIG_SHA256)];
    let (extra, selection): (&[u8], &PcrSelection) = match (&parsed, mode & 2 != 0) {
        (Ok(attest), true) => {
            if let Ok(digest) = <[u8; 32]>::try_from(attest.pcr_digest.as_slice()) {
                digests.push(digest);
            }
            (attest.extra_data.as_slice(), &attest.pcr_select)
        }
        _ => (&fixed_extra, &fixed_selection),
    };
    let expected = ExpectedQuote {
        extra_data: extra,
        selection,
        pcr_digests: &digests,
    };
    match verify_quote(&ak, &quote, &expected) {
        Ok(verified) => {
            assert_eq!(parsed.as_ref(), Ok(&verified.attest));
            assert_eq!(verified.attest.extra_data, extra);
            assert_eq!(&verified.attest.pcr_select, selection);
            assert!(digests.iter().any(|d| verified.attest.pcr_digest == d[..]));
        }
        Err(error) => {
            if mode & 1 != 0 {
                if let Ok(attest) = &parsed {
                    let matches = attest.extra_data == extra
                        && &attest.pcr_select == selection
                        && digests.iter().any(|d| attest.pcr_digest == d[..]);
                    assert!(
                        !matches,
                        "a correctly signed, matching quote was refused: {error:?}"
                    );
                }
            }
        }
    }
}
