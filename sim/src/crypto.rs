//! Seeded TLS cryptography: a rustls [`CryptoProvider`] whose randomness and key exchange
//! come from a seed, so that a simulated run is byte-identical from one seed.
//!
//! A TLS 1.3 handshake draws fresh randomness in two places, and these are the two parts of
//! rustls's *ring* provider this module replaces:
//! - [`CryptoProvider::secure_random`]: the 32-byte ClientHello/ServerHello `random` (RFC 8446
//!   §4.1.2, §4.1.3) and any other bytes rustls itself draws;
//! - [`CryptoProvider::kx_groups`]: the ephemeral X25519 key share (RFC 8446 §4.2.8, RFC 7748
//!   §6.1). *ring*'s `agreement` API only accepts *ring*'s own sealed system RNG, so the group
//!   is implemented with `x25519-dalek`, its secret scalar drawn from the seed.
//!
//! Everything else in the handshake is already a function of its inputs: Ed25519 signatures are
//! deterministic (RFC 8032 §5.1.6), the AEADs and HKDF are, the TLS time provider is the
//! endpoint's virtual wall-clock anchor, tickwire-core disables session tickets and resumption,
//! and quinn-proto's RNG, connection ids, stateless-reset key and token key are seeded from
//! `Config::seed`. Cipher suites, signature verification and private-key loading stay those of
//! [`rustls::crypto::ring::default_provider`].
//!
//! **Not for production.** Whoever knows the seed can recompute every key share and so decrypt
//! every session. Production endpoints keep the default provider (`CryptoOptions::default()`).

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;
use rustls::crypto::{
    ActiveKeyExchange, CryptoProvider, GetRandomFailed, SecureRandom, SharedSecret, SupportedKxGroup,
};
use rustls::ffdhe_groups::FfdheGroup;
use rustls::{KeyLog, NamedGroup, PeerMisbehaved};
use sha2::{Digest, Sha256};
use tickwire_core::CryptoOptions;

/// Domain separator for every sub-seed this module derives.
const DOMAIN: &[u8] = b"tickwire-sim/crypto/v1";
/// Label of the stream behind [`CryptoProvider::secure_random`].
const RANDOM_LABEL: &str = "rustls random";
/// Label of the stream behind the X25519 key shares.
const KX_LABEL: &str = "kx";
/// Length of an X25519 scalar, public key and shared secret, in bytes (RFC 7748 §5).
const X25519_LEN: usize = 32;

/// A rustls provider for simulation: rustls's *ring* provider with `secure_random` and the
/// key-exchange groups replaced by seeded ones. NOT for production (see the module docs).
///
/// - `seed`: 32 bytes; two independent ChaCha12 streams are derived from it,
///   `SHA-256("tickwire-sim/crypto/v1" ‖ label ‖ 0x00 ‖ seed)` with the labels
///   `"rustls random"` (for [`CryptoProvider::secure_random`]) and `"kx"` (for key shares).
/// - Key exchange: X25519 only ([`NamedGroup::X25519`], RFC 7748), which is all TLS 1.3 needs;
///   an all-zero shared secret (a small-order peer point) is refused with
///   [`PeerMisbehaved::InvalidKeyShare`], as RFC 7748 §6.1 advises.
/// - Determinism: the bytes drawn are a function of `seed` and of the order in which
///   connections draw from the provider, so give each simulated node its own provider and seed.
///
/// # Memory
/// rustls wants `&'static` references for the RNG and the groups, so each call leaks one
/// allocation holding both ChaCha12 states (under a kilobyte). The simulator builds one
/// provider per node incarnation — a few thousand per run at most — so a run leaks at most a
/// few megabytes, once, for the life of the process.
pub fn seeded_provider(seed: [u8; 32]) -> Arc<CryptoProvider> {
    let seeded: &'static Seeded = Box::leak(Box::new(Seeded {
        random: SeededRandom(SeededStream::new(derive(&seed, RANDOM_LABEL))),
        x25519: SeededX25519(SeededStream::new(derive(&seed, KX_LABEL))),
    }));
    Arc::new(CryptoProvider {
        kx_groups: vec![&seeded.x25519],
        secure_random: &seeded.random,
        ..rustls::crypto::ring::default_provider()
    })
}

/// Convenience: [`CryptoOptions`] with [`seeded_provider`]`(seed)` and `key_log` (pass one to
/// write TLS secrets in the NSS key log format, e.g. next to a packet capture).
pub fn sim_crypto(seed: [u8; 32], key_log: Option<Arc<dyn KeyLog>>) -> CryptoOptions {
    CryptoOptions {
        provider: Some(seeded_provider(seed)),
        key_log,
    }
}

/// `SHA-256(DOMAIN ‖ label ‖ 0x00 ‖ seed)`: an independent 32-byte sub-seed per purpose.
fn derive(seed: &[u8; 32], label: &str) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(DOMAIN);
    hasher.update(label.as_bytes());
    hasher.update([0]);
    hasher.update(seed);
    hasher.finalize().into()
}

/// The per-provider state, leaked once by [`seeded_provider`].
struct Seeded {
    random: SeededRandom,
    x25519: SeededX25519,
}

/// A ChaCha12 stream shared by every connection using the provider (rustls's traits are
/// `Sync` and take `&self`, hence the mutex).
struct SeededStream(Mutex<ChaCha12Rng>);

impl SeededStream {
    fn new(seed: [u8; 32]) -> Self {
        Self(Mutex::new(ChaCha12Rng::from_seed(seed)))
    }

    fn fill(&self, buf: &mut [u8]) {
        // A panic elsewhere cannot leave the generator half-updated, so a poisoned lock is fine.
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .fill_bytes(buf);
    }
}

/// rustls's [`SecureRandom`] drawn from the seed.
struct SeededRandom(SeededStream);

impl fmt::Debug for SeededRandom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SeededRandom")
    }
}

impl SecureRandom for SeededRandom {
    fn fill(&self, buf: &mut [u8]) -> Result<(), GetRandomFailed> {
        self.0.fill(buf);
        Ok(())
    }
}

/// X25519 (RFC 7748) with ephemeral scalars drawn from the seed.
struct SeededX25519(SeededStream);

impl fmt::Debug for SeededX25519 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SeededX25519")
    }
}

impl SupportedKxGroup for SeededX25519 {
    fn start(&self) -> Result<Box<dyn ActiveKeyExchange>, rustls::Error> {
        let mut scalar = [0u8; X25519_LEN];
        self.0.fill(&mut scalar);
        // Clamping (RFC 7748 §5) happens inside x25519-dalek's scalar multiplication.
        let secret = x25519_dalek::StaticSecret::from(scalar);
        let public = x25519_dalek::PublicKey::from(&secret).to_bytes();
        Ok(Box::new(ActiveX25519 { secret, public }))
    }

    fn ffdhe_group(&self) -> Option<FfdheGroup<'static>> {
        None
    }

    fn name(&self) -> NamedGroup {
        NamedGroup::X25519
    }
}

/// One X25519 exchange in progress: our secret scalar and public key.
struct ActiveX25519 {
    /// Zeroed on drop by x25519-dalek.
    secret: x25519_dalek::StaticSecret,
    public: [u8; X25519_LEN],
}

impl ActiveKeyExchange for ActiveX25519 {
    /// Errors with [`PeerMisbehaved::InvalidKeyShare`] if `peer_pub_key` is not 32 bytes or
    /// yields the all-zero shared secret (a small-order point, RFC 7748 §6.1).
    fn complete(self: Box<Self>, peer_pub_key: &[u8]) -> Result<SharedSecret, rustls::Error> {
        let peer: [u8; X25519_LEN] = peer_pub_key
            .try_into()
            .map_err(|_| PeerMisbehaved::InvalidKeyShare)?;
        let shared = self.secret.diffie_hellman(&x25519_dalek::PublicKey::from(peer));
        if !shared.was_contributory() {
            return Err(PeerMisbehaved::InvalidKeyShare.into());
        }
        Ok(SharedSecret::from(&shared.as_bytes()[..]))
    }

    fn ffdhe_group(&self) -> Option<FfdheGroup<'static>> {
        None
    }

    fn group(&self) -> NamedGroup {
        NamedGroup::X25519
    }

    fn pub_key(&self) -> &[u8] {
        &self.public
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::net::{Ipv4Addr, SocketAddr};
    use std::time::{Duration, Instant};

    use bytes::BytesMut;
    use ed25519_dalek::SigningKey;
    use rustls::crypto::ring::kx_group;
    use tickwire_core::testing::{epoch, START_UNIX_MS};
    use tickwire_core::{
        Config, ConnectOptions, Endpoint, Event, JoinTicketClaims, Secrets, TicketIssuer, WallClock,
    };

    use super::*;

    const SEED_A: [u8; 32] = [0xa; 32];
    const SEED_B: [u8; 32] = [0xb; 32];

    fn random_bytes(provider: &CryptoProvider) -> [u8; 64] {
        let mut buf = [0u8; 64];
        provider.secure_random.fill(&mut buf).unwrap();
        buf
    }

    #[test]
    fn secure_random_repeats_per_seed_and_differs_across_seeds() {
        let (a1, a2, b) = (
            seeded_provider(SEED_A),
            seeded_provider(SEED_A),
            seeded_provider(SEED_B),
        );
        let first = random_bytes(&a1);
        assert_eq!(first, random_bytes(&a2));
        assert_ne!(first, random_bytes(&b));
        assert_ne!(first, random_bytes(&a1), "the stream moves on");
        // The key-share stream is separate from the random stream, and also repeats.
        let share = |p: &CryptoProvider| p.kx_groups[0].start().unwrap().pub_key().to_vec();
        assert_eq!(share(&a1), share(&a2));
        assert_ne!(share(&a1), share(&b));
    }

    #[test]
    fn provider_offers_x25519_and_keeps_ring_suites() {
        let provider = seeded_provider(SEED_A);
        let names: Vec<_> = provider.kx_groups.iter().map(|g| g.name()).collect();
        assert_eq!(names, [NamedGroup::X25519]);
        let ring = rustls::crypto::ring::default_provider();
        let suites = |p: &CryptoProvider| p.cipher_suites.iter().map(|s| s.suite()).collect::<Vec<_>>();
        assert_eq!(suites(&provider), suites(&ring));
        assert_eq!(
            provider.signature_verification_algorithms.supported_schemes(),
            ring.signature_verification_algorithms.supported_schemes()
        );
    }

    /// `ours` and `theirs` agree on a shared secret, with either side starting first.
    fn assert_agrees(ours: &dyn SupportedKxGroup, theirs: &dyn SupportedKxGroup) {
        let a = ours.start().unwrap();
        let b = theirs.start().unwrap();
        assert_eq!((a.group(), b.group()), (NamedGroup::X25519, NamedGroup::X25519));
        let (a_pub, b_pub) = (a.pub_key().to_vec(), b.pub_key().to_vec());
        let a_secret = a.complete(&b_pub).unwrap();
        let b_secret = b.complete(&a_pub).unwrap();
        assert_eq!(a_secret.secret_bytes().len(), X25519_LEN);
        assert_eq!(a_secret.secret_bytes(), b_secret.secret_bytes());

        let c = ours.start().unwrap();
        let completed = theirs.start_and_complete(c.pub_key()).unwrap();
        let c_secret = c.complete(&completed.pub_key).unwrap();
        assert_eq!(c_secret.secret_bytes(), completed.secret.secret_bytes());
    }

    #[test]
    fn x25519_agrees_with_itself_and_with_ring() {
        let provider = seeded_provider(SEED_A);
        let ours = provider.kx_groups[0];
        let other = seeded_provider(SEED_B);
        assert_agrees(ours, ours);
        assert_agrees(ours, other.kx_groups[0]);
        assert_agrees(ours, kx_group::X25519);
        assert_agrees(kx_group::X25519, ours);
    }

    #[test]
    fn x25519_refuses_small_order_points_and_bad_lengths() {
        let provider = seeded_provider(SEED_A);
        let group = provider.kx_groups[0];
        // u = 0 and u = 1 are small-order points: every scalar maps them to the zero secret.
        let mut one = [0u8; X25519_LEN];
        one[0] = 1;
        for bad in [&[0u8; X25519_LEN][..], &one[..], &[9u8; 31][..], &[9u8; 33][..]] {
            let err = group.start().unwrap().complete(bad).err().expect("refused");
            assert_eq!(
                err,
                rustls::Error::PeerMisbehaved(PeerMisbehaved::InvalidKeyShare)
            );
        }
    }

    const LATENCY: Duration = Duration::from_millis(10);
    const GS_ID: u64 = 42;
    const ISSUER_KEY_ID: u32 = 1;

    /// Runs a client and a game server over an in-memory 10 ms link in virtual time until the
    /// client reports [`Event::Connected`]; returns every datagram as `(sender, bytes)`.
    fn handshake(server_crypto: CryptoOptions, client_crypto: CryptoOptions) -> Vec<(usize, Vec<u8>)> {
        let start = epoch();
        let wall = WallClock::new(start, START_UNIX_MS);
        let issuer = TicketIssuer::new(ISSUER_KEY_ID, SigningKey::from_bytes(&[3; 32]));
        let mut server = Endpoint::builder(
            Config::default(),
            Secrets::insecure_from_seed(1),
            SigningKey::from_bytes(&[1; 32]),
            wall,
        )
        .crypto(server_crypto)
        .server(GS_ID, start)
        .unwrap();
        server
            .server_mut()
            .expect("a server endpoint")
            .tickets()
            .add_key(ISSUER_KEY_ID, issuer.verifying_key());
        let client_identity = SigningKey::from_bytes(&[2; 32]);
        let client_key = client_identity.verifying_key().to_bytes();
        let mut client = Endpoint::builder(
            Config::default(),
            Secrets::insecure_from_seed(2),
            client_identity,
            wall,
        )
        .crypto(client_crypto)
        .client()
        .unwrap();
        let addrs = [
            SocketAddr::from((Ipv4Addr::new(10, 0, 0, 1), 4433)),
            SocketAddr::from((Ipv4Addr::new(10, 0, 0, 2), 4433)),
        ];
        let claims = JoinTicketClaims::builder(client_key, [9; 16])
            .client_id(7)
            .audience(GS_ID)
            .valid_from(START_UNIX_MS)
            .lifetime_ms(60_000)
            .build();
        let conn = client
            .connect(start, addrs[0], issuer.issue(&claims), ConnectOptions::default())
            .unwrap();
        let mut nodes = [server, client];

        let mut wire = Vec::new();
        let mut in_flight: BTreeMap<(Instant, u64), (usize, Vec<u8>)> = BTreeMap::new();
        let mut seq = 0u64;
        let mut now = start;
        let mut buf = Vec::new();
        loop {
            for (index, node) in nodes.iter_mut().enumerate() {
                while node.poll_tick(now).is_some() {}
                while let Some(transmit) = node.poll_transmit(now, &mut buf) {
                    let to = addrs.iter().position(|a| *a == transmit.destination).unwrap();
                    let segment = transmit.segment_size.unwrap_or(transmit.size);
                    for datagram in buf[..transmit.size].chunks(segment) {
                        wire.push((index, datagram.to_vec()));
                        seq += 1;
                        in_flight.insert((now + LATENCY, seq), (to, datagram.to_vec()));
                    }
                }
                while let Some(event) = node.poll_event() {
                    match event {
                        Event::Connected { conn: c, .. } if index == 1 && c == conn => return wire,
                        Event::Rejected { .. } | Event::Disconnected { .. } => panic!("{event:?}"),
                        _ => {}
                    }
                }
            }
            let next_packet = in_flight.keys().next().map(|(t, _)| *t);
            let next_timer = nodes.iter_mut().filter_map(|n| n.poll_timeout()).min();
            now = now.max(
                next_packet
                    .into_iter()
                    .chain(next_timer)
                    .min()
                    .expect("a handshake in progress has a timer"),
            );
            assert!(now - start < Duration::from_secs(5), "no session after 5 s");
            while let Some(entry) = in_flight.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                let (to, data) = entry.remove();
                let from = addrs[1 - to];
                nodes[to].handle_datagram(now, from, None, None, BytesMut::from(&data[..]));
            }
            for node in &mut nodes {
                if node.poll_timeout().is_some_and(|t| t <= now) {
                    node.handle_timeout(now);
                }
            }
        }
    }

    #[test]
    fn same_seed_same_bytes_on_the_wire() {
        let run = |server_seed, client_seed| {
            handshake(sim_crypto(server_seed, None), sim_crypto(client_seed, None))
        };
        let first = run(SEED_A, SEED_B);
        assert!(first.iter().any(|(sender, _)| *sender == 0), "the server spoke");
        assert_eq!(first, run(SEED_A, SEED_B));
        assert_ne!(first, run(SEED_A, [0xc; 32]), "the client's rustls seed matters");
        assert_ne!(first, run([0xc; 32], SEED_B), "the server's rustls seed matters");
    }

    #[test]
    fn default_provider_is_not_reproducible() {
        let run = || handshake(CryptoOptions::default(), CryptoOptions::default());
        assert_ne!(run(), run());
    }
}
