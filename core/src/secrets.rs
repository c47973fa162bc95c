//! Secret material: the one input from which an endpoint, a verifier or a game-server agent
//! derives every value an attacker must not predict.
//!
//! The core does no I/O, so it cannot draw randomness itself. Each state machine takes a
//! [`Secrets`] at construction instead of a default: runtimes fill it from the operating
//! system's CSPRNG (`tickwire_udp::os_secrets`), optionally with token keys kept in a file
//! ([`Secrets::with_kept_token_keys`]); the simulator and tests use
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
//! ## Surviving a restart
//! With [`Secrets::with_kept_token_keys`], the two token keys (`quic/token-key`,
//! `quic/reset-key`) come from 32 bytes kept in a file, the same at every start, so that
//! stateless resets reach the peers of the run before a restart; every other row comes from
//! fresh bytes, and must: kept, it would repeat connection ids and nonces after each restart.
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
    /// The token keys' PRK when they are kept across restarts.
    kept: Option<hkdf::Prk>,
}

/// The labels [`Secrets::with_kept_token_keys`] derives from the kept key.
const KEPT_LABELS: [&str; 2] = ["quic/token-key", "quic/reset-key"];

fn extract(key: &[u8; 32]) -> hkdf::Prk {
    hkdf::Salt::new(hkdf::HKDF_SHA256, SALT).extract(key)
}

impl Secrets {
    /// Secrets from 32 bytes of key material, fresh from the operating system's CSPRNG
    /// (`getrandom`) at every start. Never reuse the bytes across starts: the connection ids,
    /// nonces and session ids would repeat. To keep the token keys across restarts, see
    /// [`Secrets::with_kept_token_keys`].
    pub fn from_bytes(key: [u8; 32]) -> Self {
        Self {
            prk: extract(&key),
            kept: None,
        }
    }

    /// Secrets whose token keys survive a restart (`PROTOCOL.md` §2.6): the Retry token key
    /// and the stateless-reset key derive from `kept` (32 bytes kept in a file, the same at
    /// every start; HKDF as for [`from_bytes`](Self::from_bytes)), every other value from
    /// `fresh` (from the operating system's CSPRNG at this start). The two must differ.
    ///
    /// A peer still sending to a connection of the process before the restart then gets a
    /// stateless reset it accepts (RFC 9000 §10.3: the token is keyed by the reset key and the
    /// connection id) in answer to its next packet, and learns of the restart then instead of
    /// at its idle or heartbeat timeout; Retry tokens issued before the restart stay valid. Nothing else may
    /// be kept: a key used at every start would issue the same connection ids, nonces and
    /// session ids after each restart.
    pub fn with_kept_token_keys(kept: [u8; 32], fresh: [u8; 32]) -> Self {
        Self {
            prk: extract(&fresh),
            kept: Some(extract(&kept)),
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
        let prk = match &self.kept {
            Some(kept) if KEPT_LABELS.contains(&label) => kept,
            _ => &self.prk,
        };
        prk.expand(&info, hkdf::HKDF_SHA256)
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
    fn kept_token_keys_survive_a_restart_and_nothing_else_does() {
        let kept = [3; 32];
        let before = Secrets::with_kept_token_keys(kept, [4; 32]);
        let after = Secrets::with_kept_token_keys(kept, [5; 32]);
        for label in KEPT_LABELS {
            assert_eq!(before.derive(label), after.derive(label), "{label}");
            // As `from_bytes(kept)` would give them.
            assert_eq!(before.derive(label), Secrets::from_bytes(kept).derive(label));
        }
        for label in [
            "quic/cid",
            "quic/initial-dcid",
            "quic/initial-dcid/wt",
            "quic/rng",
            "tickwire/rng",
            "vs/verifier",
            "vs/gs-agent",
        ] {
            assert_ne!(before.derive(label), after.derive(label), "{label}");
            assert_eq!(before.derive(label), Secrets::from_bytes([4; 32]).derive(label));
        }
    }

    #[test]
    fn debug_hides_the_key() {
        assert_eq!(format!("{:?}", Secrets::from_bytes([9; 32])), "Secrets(..)");
    }
}
