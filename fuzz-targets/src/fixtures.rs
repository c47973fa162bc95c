//! The fixed keys, identities and expectations the targets (and their corpus) share.

use tickwire_core::attest::{
    quote_extra_data, AkPublic, ObjectAttributes, PcrSelection, Quote, MEASUREMENT_PCR,
};
use tickwire_core::vs::VsKeys;

/// Secret key of the one Ed25519 key that signs join tickets, play tickets and receipts in the
/// targets (one key for all three, so the targets check domain separation).
pub(crate) const SIGNING_SECRET: [u8; 32] = [0x5A; 32];
/// Key id [`SIGNING_SECRET`]'s key is trusted under.
pub(crate) const KEY_ID: u32 = 1;
/// The game server id verifiers expect.
pub(crate) const GS_ID: u64 = 7;
/// The game server identity key play tickets must name (unless the input picks its own).
pub(crate) const GS_KEY: [u8; 32] = [0x11; 32];
/// The client identity key join tickets must name (unless the input picks its own).
pub(crate) const CLIENT_KEY: [u8; 32] = [0x22; 32];
/// A wall-clock time (Unix ms) the corpus inputs are valid at.
pub(crate) const NOW_MS: u64 = 1_700_000_000_000;
/// Secret scalar of the P-256 attestation key the TPM targets enrol.
pub(crate) const AK_SCALAR: [u8; 32] = [0x33; 32];
/// The VS nonce the TPM targets' fixed expectation binds.
pub(crate) const QUOTE_NONCE: [u8; 32] = [0x44; 32];
/// SHA-256 of the binary the fixed expectation allows.
pub(crate) const BINARY_SHA256: [u8; 32] = [0xB1; 32];
/// SHA-256 of the configuration the fixed expectation allows.
pub(crate) const CONFIG_SHA256: [u8; 32] = [0xC0; 32];

/// The Ed25519 key of [`SIGNING_SECRET`].
pub(crate) fn signing_key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&SIGNING_SECRET)
}

/// The verification-server keys the envelope targets trust: [`signing_key`] under [`KEY_ID`].
pub(crate) fn vs_keys() -> VsKeys {
    VsKeys::single(KEY_ID, signing_key().verifying_key())
}

/// Signs `context ‖ key_id (BE) ‖ claims` with [`signing_key`]: the signed message of join
/// tickets, play tickets and receipts (`PROTOCOL.md` §3.3, §8.5). Lets a target re-sign
/// fuzzed claims so the checks after the signature are reached.
pub(crate) fn sign_envelope(context: &[u8], key_id: u32, claims: &[u8]) -> [u8; 64] {
    use ed25519_dalek::Signer;
    let mut message = Vec::with_capacity(context.len() + 4 + claims.len());
    message.extend_from_slice(context);
    message.extend_from_slice(&key_id.to_be_bytes());
    message.extend_from_slice(claims);
    signing_key().sign(&message).to_bytes()
}

/// The P-256 attestation key of [`AK_SCALAR`].
pub(crate) fn ak_signing_key() -> p256::ecdsa::SigningKey {
    p256::ecdsa::SigningKey::from_bytes(&AK_SCALAR.into()).expect("AK_SCALAR is a valid P-256 scalar")
}

/// The `TPMT_PUBLIC` of [`ak_signing_key`], with the attributes an AK must have.
pub(crate) fn ak_public() -> AkPublic {
    let point = ak_signing_key().verifying_key().to_encoded_point(false);
    let (Some(x), Some(y)) = (point.x(), point.y()) else {
        unreachable!("an uncompressed point has both coordinates")
    };
    let mut xy = ([0u8; 32], [0u8; 32]);
    xy.0.copy_from_slice(x);
    xy.1.copy_from_slice(y);
    AkPublic::ecc_p256(
        xy.0,
        xy.1,
        ObjectAttributes::AK_REQUIRED | ObjectAttributes::USER_WITH_AUTH,
    )
}

/// Signs `attest` with [`ak_signing_key`] (ECDSA-SHA256, RFC 6979), as a TPM's `TPM2_Quote`.
pub(crate) fn sign_attest(attest: Vec<u8>) -> Quote {
    use p256::ecdsa::signature::Signer;
    let signature: p256::ecdsa::Signature = ak_signing_key().sign(&attest);
    let (r, s) = signature.split_bytes();
    Quote {
        attest,
        signature_r: r.into(),
        signature_s: s.into(),
    }
}

/// The quote `extraData` the fixed expectation asks for.
pub(crate) fn expected_extra_data() -> [u8; 32] {
    quote_extra_data(&QUOTE_NONCE, &GS_KEY, GS_ID)
}

/// The PCR selection the fixed expectation asks for: PCR 23 alone.
pub(crate) fn measurement_selection() -> PcrSelection {
    PcrSelection::sha256(&[MEASUREMENT_PCR]).expect("PCR 23 is in the bank")
}

/// Bound on every drain loop of the engine targets (transmits, events, ticks per call).
pub(crate) const MAX_DRAIN: usize = 1_000;

/// The schema hash both sides of the handshake targets use.
pub(crate) const SCHEMA: [u8; 32] = [0x5C; 32];

/// The client identity keys of the handshake targets: `[0x70 + k; 32]`.
pub(crate) fn client_identity(k: u8) -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[0x70 + k % 3; 32])
}

/// The game server's identity key in the handshake and GS targets.
pub(crate) fn gs_identity() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[0x11; 32])
}

/// The issuer keys of the ticket targets: key id `k + 1` is `[0x60 + k; 32]`.
pub(crate) fn issuer_key(k: u8) -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[0x60 + k % 3; 32])
}
