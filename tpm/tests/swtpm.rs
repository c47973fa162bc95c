//! `HardwareTpm` against a real software TPM: measurement, quotes and their verification by the
//! core's verifier. Needs the `tpm` feature, libtss2 and the `swtpm` binary (scripts/test installs
//! them).
#![cfg(feature = "tpm")]

use sha2::{Digest, Sha256};
use tickwire_core::attest::{
    expected_pcr_value, measurement_pcr_digest, quote_extra_data, verify_ak, verify_quote, AttestError,
    ExpectedQuote, PcrSelection, TpmError, TpmProvider, MEASUREMENT_PCR,
};
use tickwire_tpm::swtpm::Swtpm;
use tickwire_tpm::HardwareTpm;

const GS_KEY: [u8; 32] = [7; 32];
const GS_ID: u64 = 42;

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// A fresh swtpm and a `HardwareTpm` on it (the swtpm must outlive the TPM: declared first,
/// dropped last).
fn open() -> (Swtpm, HardwareTpm) {
    let swtpm = Swtpm::start().expect("start swtpm (install it: scripts/test does)");
    let tpm = HardwareTpm::open(&swtpm.tcti()).expect("open the swtpm through tss-esapi");
    (swtpm, tpm)
}

fn pcr23() -> PcrSelection {
    PcrSelection::sha256(&[MEASUREMENT_PCR]).unwrap()
}

#[test]
fn measure_quote_and_verify() {
    let (_swtpm, mut tpm) = open();
    let binary = sha256(b"tickwire-gs binary");
    let config = sha256(b"tick_rate_hz = 60");

    assert_eq!(
        tpm.read_pcr(MEASUREMENT_PCR).unwrap(),
        [0; 32],
        "PCR 23 starts reset"
    );
    tickwire_tpm::measure(&mut tpm, binary, config).unwrap();
    let pcr = tpm.read_pcr(MEASUREMENT_PCR).unwrap();
    assert_eq!(pcr, expected_pcr_value(&[binary, config]));
    // The same chain, computed here independently of the core.
    assert_eq!(
        pcr,
        sha256(&[sha256(&[[0u8; 32], binary].concat()), config].concat())
    );

    let ak = verify_ak(&tpm.ak_public().unwrap())
        .expect("the AK is an ECC P-256 restricted ECDSA-SHA256 signing key");

    let nonce = [0x5a; 24];
    let extra_data = quote_extra_data(&nonce, &GS_KEY, GS_ID);
    let selection = pcr23();
    let quote = tpm.quote(&extra_data, &selection).unwrap();
    let good = [measurement_pcr_digest(binary, config)];
    let expected = ExpectedQuote {
        extra_data: &extra_data,
        selection: &selection,
        pcr_digests: &good,
    };
    let verified = verify_quote(&ak, &quote, &expected).expect("the TPM's quote verifies");
    assert_eq!(verified.attest.extra_data, extra_data);

    // A quote asked for with another nonce is not this one.
    let other_nonce = quote_extra_data(&[0xa5; 24], &GS_KEY, GS_ID);
    let stale = ExpectedQuote {
        extra_data: &other_nonce,
        ..expected
    };
    assert_eq!(
        verify_quote(&ak, &quote, &stale),
        Err(AttestError::ExtraDataMismatch)
    );

    // Another binary measured: the PCR digest does not match.
    let other = [measurement_pcr_digest(sha256(b"patched binary"), config)];
    let tampered = ExpectedQuote {
        pcr_digests: &other,
        ..expected
    };
    assert_eq!(
        verify_quote(&ak, &quote, &tampered),
        Err(AttestError::PcrDigestMismatch)
    );

    // A quote over another selection does not pass for PCR 23 alone.
    let wider = PcrSelection::sha256(&[16, MEASUREMENT_PCR]).unwrap();
    let quote = tpm.quote(&extra_data, &wider).unwrap();
    assert_eq!(
        verify_quote(&ak, &quote, &expected),
        Err(AttestError::PcrSelectionMismatch)
    );

    // A flipped byte in the signed structure breaks the signature.
    let mut forged = tpm.quote(&extra_data, &selection).unwrap();
    let last = forged.attest.len() - 1;
    forged.attest[last] ^= 1;
    assert_eq!(
        verify_quote(&ak, &forged, &expected),
        Err(AttestError::BadSignature)
    );
}

#[test]
fn many_quotes_from_one_open_all_verify() {
    let (_swtpm, mut tpm) = open();
    let binary = sha256(b"binary");
    let config = sha256(b"config");
    tickwire_tpm::measure(&mut tpm, binary, config).unwrap();
    let ak = verify_ak(&tpm.ak_public().unwrap()).unwrap();
    let selection = pcr23();
    let good = [measurement_pcr_digest(binary, config)];
    // No resource manager on swtpm: a leaked transient handle or session per quote would run the
    // TPM out of object or session slots (3 each) well before 20.
    for i in 0..20u8 {
        let extra_data = quote_extra_data(&[i; 24], &GS_KEY, GS_ID);
        let quote = tpm.quote(&extra_data, &selection).unwrap();
        let expected = ExpectedQuote {
            extra_data: &extra_data,
            selection: &selection,
            pcr_digests: &good,
        };
        verify_quote(&ak, &quote, &expected).unwrap_or_else(|e| panic!("quote {i}: {e}"));
    }
}

#[test]
fn reopening_the_same_tpm_works() {
    // Drop flushes the AK: a second open on the same swtpm finds free object slots.
    let swtpm = Swtpm::start().unwrap();
    for _ in 0..4 {
        let mut tpm = HardwareTpm::open(&swtpm.tcti()).unwrap();
        verify_ak(&tpm.ak_public().unwrap()).unwrap();
        let extra_data = [1u8; 32];
        let quote = tpm.quote(&extra_data, &pcr23()).unwrap();
        assert!(!quote.attest.is_empty());
    }
}

#[test]
fn bad_inputs_are_typed_errors() {
    let (_swtpm, mut tpm) = open();
    assert_eq!(tpm.extend_pcr(24, [0; 32]), Err(TpmError::BadPcr(24)));
    assert_eq!(tpm.read_pcr(200), Err(TpmError::BadPcr(200)));
    assert_eq!(
        tpm.quote(&[0; 65], &pcr23()).unwrap_err(),
        TpmError::ExtraDataTooLong(65)
    );
    assert!(matches!(
        HardwareTpm::open("no-such-tcti"),
        Err(TpmError::Device(_))
    ));
}
