//! Secret material: the one input from which an endpoint, a verifier or a game-server agent
//! derives every value an attacker must not predict.
//!
//! The core does no I/O, so it cannot draw randomness itself. Each state machine takes a
//! [`Secrets`] at construction instead of a default: runtimes fill it from the operating
//! system's CSPRNG (`tickwire_udp::os_secrets`) or a key file; the simulator and tests use
//! [`Secrets::insecure_from_seed`], whose name says what it is.
//!
//! ## What is derived, and why it must be secret
//! Every value below is `HKDF-Expand(PRK, label, 32)` (RFC 5869 §2.3), with
//! `PRK = HKDF-Extract(salt = "tickwire/secrets/v1", IKM = key)` and HKDF-SHA256:
//!
//! | label | used for | an attacker who knows it could |
//! |---|---|---|
//! | `quic/token-key` | QUIC Retry and address-validation tokens (RFC 9000 §8.1.2) | mint tokens for spoofed addresses, defeating Retry |
//! | `quic/reset-key` | stateless-reset tokens (RFC 9000 §10.3) | forge stateless resets that kill live sessions |
//! | `quic/cid` | connection ids this endpoint issues | link a client's migrated paths, aim resets |
//! | `quic/initial-dcid` | a client's initial destination connection ids | predict a client's first packets |
//! | `quic/rng` | quinn-proto's internal RNG (packet-number skips, path challenges) | defeat its anti-spoofing checks |
//! | `tickwire/rng` | handshake nonces and session ids (`PROTOCOL.md` §4) | precompute handshake transcripts |
//! | `vs/verifier` | VS challenge nonces and join-ticket `jti`s (`PROTOCOL.md` §8) | replay quotes; collide `jti`s |
//! | `vs/gs-agent` | the jitter of a game server's reconnections and retries | synchronise a fleet's retries |
//! | `webtransport/certificate/<n>` | the P-256 key of the `n`-th WebTransport certificate, in simulations ([`crate::webtransport`]) | impersonate the server to browsers pinning it |
//!
//! Identity keys and ticket-issuer keys are separate long-term Ed25519 keys that binaries load
//! from PKCS#8 files; they are not derived from a [`Secrets`].
//!
//! Give each state machine its own [`Secrets`]: two endpoints built from the same key issue the
//! same connection ids and nonces. The type is deliberately not `Clone`, and its `Debug` output
//! hides the key.

use ring::hkdf;

/// HKDF salt that separates tickwire's derivations from any other use of the same key.
const SALT: &[u8] = b"tickwire/secrets/v1";

/// 32 bytes of secret key material for one state machine. See `PROTOCOL.md` §2.6.
pub struct Secrets {
    prk: hkdf::Prk,
}

impl Secrets {
    /// Secrets from 32 bytes of key material: fresh bytes from the operating system's CSPRNG
    /// (`getrandom`), or a key kept in a file so that tokens survive a restart.
    pub fn from_bytes(key: [u8; 32]) -> Self {
        Self {
            prk: hkdf::Salt::new(hkdf::HKDF_SHA256, SALT).extract(&key),
        }
    }

    /// **Insecure**: secrets anyone can recompute from `seed`, for simulations and tests that
    /// must be reproducible byte for byte. Never use it for an endpoint that faces a real
    /// network: its Retry tokens, stateless resets, connection ids and nonces are public.
    /// The key is `SHA-256("tickwire/insecure-seed/v1" ‖ seed_be)`.
    pub fn insecure_from_seed(seed: u64) -> Self {
        use sha2::Digest;
        let mut hasher = sha2::Sha256::new();
        hasher.update(b"tickwire/insecure-seed/v1");
        hasher.update(seed.to_be_bytes());
        Self::from_bytes(hasher.finalize().into())
    }

    /// The 32-byte value for `label` (one row of the table in the [module docs](self)).
    pub(crate) fn derive(&self, label: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        let info = [label.as_bytes()];
        self.prk
            .expand(&info, hkdf::HKDF_SHA256)
            .and_then(|okm| okm.fill(&mut out))
            .expect("HKDF-SHA256 can expand 32 bytes (RFC 5869 §2.3 allows up to 8160)");
        out
    }
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_keys_give_independent_values() {
        let a = Secrets::from_bytes([1; 32]);
        let b = Secrets::from_bytes([2; 32]);
        assert_eq!(
            a.derive("quic/cid"),
            Secrets::from_bytes([1; 32]).derive("quic/cid")
        );
        assert_ne!(a.derive("quic/cid"), a.derive("quic/reset-key"));
        assert_ne!(a.derive("quic/cid"), b.derive("quic/cid"));
        assert_ne!(
            Secrets::insecure_from_seed(0).derive("x"),
            Secrets::insecure_from_seed(1).derive("x")
        );
    }

    #[test]
    fn hkdf_matches_rfc_5869_structure() {
        // HKDF-Expand with one block: T(1) = HMAC(PRK, info ‖ 0x01), PRK = HMAC(salt, IKM).
        use ring::hmac;
        let ikm = [7u8; 32];
        let prk = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, SALT), &ikm);
        let t1 = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, prk.as_ref()),
            b"tickwire/rng\x01",
        );
        assert_eq!(Secrets::from_bytes(ikm).derive("tickwire/rng"), t1.as_ref());
    }

    #[test]
    fn debug_hides_the_key() {
        assert_eq!(format!("{:?}", Secrets::from_bytes([9; 32])), "Secrets(..)");
    }
}
