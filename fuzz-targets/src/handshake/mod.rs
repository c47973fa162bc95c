//! The session handshake's typestates (`PROTOCOL.md` §4), server and client side, checked
//! against the transcript the specification defines.

mod client;
mod server;

pub use client::handshake_client;
pub use server::handshake_server;

use arbitrary::Arbitrary;
use sha2::{Digest, Sha256};
use tickwire_core::attest::measurement_pcr_digest;
use tickwire_core::vs::{PlayTicketClaims, VS_SCHEMA_HASH};
use tickwire_core::wire::{self, Role};

use crate::fixtures::{gs_identity, BINARY_SHA256, CONFIG_SHA256, GS_ID, SCHEMA};

/// The schema hash a hello of `role` must carry (game servers speak the VS protocol,
/// `PROTOCOL.md` §8.1), or another one.
pub(super) fn schema_for(role: Role, wrong: bool) -> [u8; 32] {
    let mut schema = if role == Role::GameServer {
        VS_SCHEMA_HASH
    } else {
        SCHEMA
    };
    schema[0] ^= u8::from(wrong);
    schema
}

/// A role from a fuzz byte.
pub(super) fn role_of(x: u8) -> Role {
    [Role::Player, Role::Spectator, Role::Admin, Role::GameServer][usize::from(x % 4)]
}

/// The hello signature's digest, `SHA-256("tickwire/hello/v1" ‖ exporter ‖ body)`
/// (`PROTOCOL.md` §4; restated here so the targets check the spec, not the code).
pub(super) fn spec_hello_digest(exporter: &[u8; 32], body: &[u8]) -> [u8; 32] {
    Sha256::new()
        .chain_update(b"tickwire/hello/v1")
        .chain_update(exporter)
        .chain_update(body)
        .finalize()
        .into()
}

/// The accept signature's digest, `SHA-256("tickwire/accept/v1" ‖ exporter ‖
/// u32be(len(hello)) ‖ hello ‖ accept)`.
pub(super) fn spec_accept_digest(exporter: &[u8; 32], hello: &[u8], accept: &[u8]) -> [u8; 32] {
    Sha256::new()
        .chain_update(b"tickwire/accept/v1")
        .chain_update(exporter)
        .chain_update((hello.len() as u32).to_be_bytes())
        .chain_update(hello)
        .chain_update(accept)
        .finalize()
        .into()
}

pub(super) fn spec_verify(key: &[u8; 32], digest: &[u8; 32], signature: &wire::Signature) -> bool {
    ed25519_dalek::VerifyingKey::from_bytes(key)
        .and_then(|k| k.verify_strict(digest, &ed25519_dalek::Signature::from_bytes(&signature.0)))
        .is_ok()
}

/// How a handshake message is signed.
#[derive(Debug, Clone, Copy, Default, Arbitrary)]
pub(super) enum Signing {
    /// Correctly.
    #[default]
    Good,
    /// Over another exporter (another TLS session).
    WrongExporter,
    /// With another key than the one the body names.
    OtherKey,
    /// All-zero signature.
    Zero,
    /// Correctly, then bit `n % 512` flipped.
    Flip(u16),
}

pub(super) fn sign_with(
    signing: Signing,
    key: &ed25519_dalek::SigningKey,
    digest: impl Fn(&[u8; 32]) -> [u8; 32],
    exporter: &[u8; 32],
) -> wire::Signature {
    use ed25519_dalek::Signer;
    let mut other = *exporter;
    other[0] ^= 1;
    let bytes = match signing {
        Signing::Good => key.sign(&digest(exporter)).to_bytes(),
        Signing::WrongExporter => key.sign(&digest(&other)).to_bytes(),
        Signing::OtherKey => ed25519_dalek::SigningKey::from_bytes(&[0x99; 32])
            .sign(&digest(exporter))
            .to_bytes(),
        Signing::Zero => [0; 64],
        Signing::Flip(bit) => {
            let mut sig = key.sign(&digest(exporter)).to_bytes();
            sig[usize::from(bit % 512) / 8] ^= 1 << (bit % 8);
            sig
        }
    };
    wire::Signature(bytes)
}

/// Where one connection of a handshake target stands.
#[derive(Debug)]
pub(super) enum Slot<A> {
    /// Waiting for the peer's message: the typestate value and the connection's exporter.
    Pending(A, [u8; 32]),
    /// Established.
    Accepted,
    /// Closed by us (with a reason, checked when it happened).
    Rejected,
    /// Closed by the peer.
    Closed,
}

pub(super) fn gs_play_claims(now_ms: u64, sequence: u64) -> PlayTicketClaims {
    PlayTicketClaims {
        gs_id: GS_ID,
        gs_key: gs_identity().verifying_key().to_bytes(),
        issued_at_ms: now_ms,
        expires_at_ms: now_ms + 6_000,
        sequence,
        measurement: measurement_pcr_digest(BINARY_SHA256, CONFIG_SHA256),
    }
}
