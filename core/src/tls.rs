//! QUIC and TLS configuration: certificates, the exporter-bound verifier, and the pieces of
//! quinn-proto that tickwire keys from its [`Secrets`](crate::Secrets) (connection ids,
//! stateless-reset key, token key) or its wall-clock anchor (time source).
//!
//! ## Trust model
//! A game server's TLS certificate is self-signed with its Ed25519 identity key. The client does
//! not authenticate it through a PKI; instead, after TLS completes, both sides sign the
//! handshake transcript together with a TLS exporter value (RFC 8446 §7.5, label
//! [`EXPORTER_LABEL`]). An on-path relay terminates two TLS sessions with different exporter
//! values, so it cannot present a signature made for either side: identities are bound to this
//! QUIC connection. The client still checks the TLS 1.3 CertificateVerify signature, so the TLS
//! peer provably holds the certificate's key.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ed25519_dalek::pkcs8::EncodePrivateKey;
use ed25519_dalek::SigningKey;
use quinn_proto::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn_proto::{ConnectionId, ConnectionIdGenerator, TimeSource};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::time_provider::TimeProvider;
use rustls::KeyLog;
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};

use crate::webtransport::{ServerCertificate, ALPN_H3};
use crate::wire::ALPN;

/// TLS exporter label used to bind handshake signatures to the connection (RFC 5705 / 8446 §7.5).
pub const EXPORTER_LABEL: &[u8] = b"EXPORTER-tickwire-session-v1";
/// Length of the exporter value, in bytes.
pub const EXPORTER_LEN: usize = 32;
/// Server name used in the TLS ClientHello; identity is checked by tickwire, not by SNI.
pub(crate) const SERVER_NAME: &str = "tickwire";
/// Length of locally issued QUIC connection ids, in bytes.
pub(crate) const CID_LEN: usize = 8;

/// Errors building TLS configuration (all are local misconfiguration, never peer input).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsSetupError {
    /// The identity key could not be turned into a certificate.
    #[error("certificate generation failed: {0}")]
    Certificate(String),
    /// rustls refused the configuration.
    #[error("TLS configuration rejected: {0}")]
    Rustls(#[from] rustls::Error),
    /// The TLS configuration lacks the QUIC initial cipher suite.
    #[error("TLS configuration unusable for QUIC: {0}")]
    Quic(String),
}

/// Cryptography hooks of an endpoint. Production leaves both at their defaults; the simulator
/// supplies a provider whose randomness and key exchange come from the seed, and a key log so
/// that its packet captures open decrypted in Wireshark.
#[derive(Clone, Default)]
pub struct CryptoOptions {
    /// The rustls crypto provider (randomness, key exchange, cipher suites, signature
    /// verification). `None` = rustls's *ring* provider.
    pub provider: Option<Arc<CryptoProvider>>,
    /// Receives TLS secrets in the NSS key log format. `None` = secrets are never exported.
    pub key_log: Option<Arc<dyn KeyLog>>,
}

impl std::fmt::Debug for CryptoOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CryptoOptions")
            .field("provider", &self.provider.as_ref().map(|_| "custom"))
            .field("key_log", &self.key_log.is_some())
            .finish()
    }
}

impl CryptoOptions {
    pub(crate) fn provider(&self) -> Arc<CryptoProvider> {
        self.provider
            .clone()
            .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()))
    }
}

/// A self-signed certificate for `identity`, deterministic in the key.
fn self_signed(
    identity: &SigningKey,
) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), TlsSetupError> {
    let pkcs8 = identity
        .to_pkcs8_der()
        .map_err(|e| TlsSetupError::Certificate(e.to_string()))?;
    let key_der = PrivatePkcs8KeyDer::from(pkcs8.as_bytes().to_vec());
    let key_pair = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&key_der, &rcgen::PKCS_ED25519)
        .map_err(|e| TlsSetupError::Certificate(e.to_string()))?;
    let mut params = rcgen::CertificateParams::new(vec![SERVER_NAME.to_owned()])
        .map_err(|e| TlsSetupError::Certificate(e.to_string()))?;
    let public = identity.verifying_key().to_bytes();
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&public[..16]));
    let cert = params
        .self_signed(&key_pair)
        .map_err(|e| TlsSetupError::Certificate(e.to_string()))?;
    Ok((cert.der().clone(), PrivateKeyDer::Pkcs8(key_der)))
}

/// QUIC server crypto: TLS 1.3 only, ALPN [`ALPN`] (and `h3` when `webtransport` is given),
/// no session tickets (tickwire does not resume sessions), wall time from `time`. The
/// certificate is self-signed by `identity`, except for connections that offer only `h3`,
/// which get the WebTransport certificate (`PROTOCOL.md` §12.1).
pub(crate) fn server_crypto(
    identity: &SigningKey,
    options: &CryptoOptions,
    time: Arc<dyn TimeProvider>,
    webtransport: Option<Arc<CertResolver>>,
) -> Result<Arc<QuicServerConfig>, TlsSetupError> {
    let (cert, key) = self_signed(identity)?;
    let builder = rustls::ServerConfig::builder_with_details(options.provider(), time)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth();
    let mut tls = match webtransport {
        Some(resolver) => {
            resolver.set_identity(certified_key(&options.provider(), cert, key)?);
            let mut tls = builder.with_cert_resolver(resolver);
            tls.alpn_protocols = vec![ALPN.to_vec(), ALPN_H3.to_vec()];
            tls
        }
        None => {
            let mut tls = builder.with_single_cert(vec![cert], key)?;
            tls.alpn_protocols = vec![ALPN.to_vec()];
            tls
        }
    };
    tls.max_early_data_size = 0;
    tls.send_tls13_tickets = 0;
    if let Some(key_log) = &options.key_log {
        tls.key_log = key_log.clone();
    }
    let quic = QuicServerConfig::try_from(tls).map_err(|e| TlsSetupError::Quic(e.to_string()))?;
    Ok(Arc::new(quic))
}

fn certified_key(
    provider: &CryptoProvider,
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<CertifiedKey>, TlsSetupError> {
    let signing = provider.key_provider.load_private_key(key)?;
    Ok(Arc::new(CertifiedKey::new(vec![cert], signing)))
}

/// The server's certificates by ALPN: the identity certificate for `tickwire/1`, the current
/// WebTransport certificate (replaceable while the endpoint runs) for `h3`.
#[derive(Debug, Default)]
pub(crate) struct CertResolver {
    identity: RwLock<Option<Arc<CertifiedKey>>>,
    webtransport: RwLock<Option<(Arc<CertifiedKey>, [u8; 32])>>,
}

impl CertResolver {
    fn set_identity(&self, key: Arc<CertifiedKey>) {
        *self.identity.write().unwrap_or_else(|e| e.into_inner()) = Some(key);
    }

    /// Presents `certificate` to WebTransport connections from now on.
    pub(crate) fn set_webtransport(
        &self,
        provider: &CryptoProvider,
        certificate: &ServerCertificate,
    ) -> Result<(), TlsSetupError> {
        let (cert, key) = certificate.rustls_pair();
        let key = certified_key(provider, cert, key)?;
        *self.webtransport.write().unwrap_or_else(|e| e.into_inner()) = Some((key, certificate.sha256()));
        Ok(())
    }

    /// SHA-256 of the WebTransport certificate presented now.
    pub(crate) fn webtransport_hash(&self) -> Option<[u8; 32]> {
        self.webtransport
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|(_, hash)| *hash)
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // rustls selects the first of our ALPNs the client offers: `tickwire/1` before `h3`.
        let offers_native = hello.alpn().is_some_and(|mut offered| offered.any(|p| p == ALPN));
        let offers_h3 = hello
            .alpn()
            .is_some_and(|mut offered| offered.any(|p| p == ALPN_H3));
        if offers_h3 && !offers_native {
            let webtransport = self.webtransport.read().unwrap_or_else(|e| e.into_inner());
            return webtransport.as_ref().map(|(key, _)| key.clone());
        }
        self.identity.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// QUIC client crypto: TLS 1.3 only, ALPN `alpn` ([`ALPN`], or `h3` for WebTransport), the
/// exporter-bound verifier, no session resumption, wall time from `time`.
pub(crate) fn client_crypto(
    options: &CryptoOptions,
    time: Arc<dyn TimeProvider>,
    alpn: &[u8],
) -> Result<Arc<QuicClientConfig>, TlsSetupError> {
    let provider = options.provider();
    let mut tls = rustls::ClientConfig::builder_with_details(provider.clone(), time)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(ExporterBoundVerifier::new(provider)))
        .with_no_client_auth();
    tls.alpn_protocols = vec![alpn.to_vec()];
    tls.enable_early_data = false;
    tls.resumption = rustls::client::Resumption::disabled();
    if let Some(key_log) = &options.key_log {
        tls.key_log = key_log.clone();
    }
    let quic = QuicClientConfig::try_from(tls).map_err(|e| TlsSetupError::Quic(e.to_string()))?;
    Ok(Arc::new(quic))
}

/// Accepts any server certificate but verifies the TLS 1.3 handshake signature with it; the
/// server's identity is then proven by its exporter-bound handshake signature.
#[derive(Debug)]
pub struct ExporterBoundVerifier {
    provider: Arc<CryptoProvider>,
}

impl ExporterBoundVerifier {
    /// A verifier using `provider`'s signature algorithms.
    pub fn new(provider: Arc<CryptoProvider>) -> Self {
        Self { provider }
    }
}

impl ServerCertVerifier for ExporterBoundVerifier {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Connection-id generator keyed from the endpoint's secrets (quinn-proto's default draws from
/// the OS RNG, which the core may not read).
#[derive(Debug)]
pub(crate) struct SeededCidGenerator {
    rng: ChaCha12Rng,
}

impl SeededCidGenerator {
    pub(crate) fn new(seed: [u8; 32]) -> Self {
        Self {
            rng: ChaCha12Rng::from_seed(seed),
        }
    }
}

impl ConnectionIdGenerator for SeededCidGenerator {
    fn generate_cid(&mut self) -> ConnectionId {
        let mut bytes = [0u8; CID_LEN];
        self.rng.fill_bytes(&mut bytes);
        ConnectionId::new(&bytes)
    }

    fn cid_len(&self) -> usize {
        CID_LEN
    }

    fn cid_lifetime(&self) -> Option<Duration> {
        None
    }
}

/// Initial destination connection ids for outgoing connections:
/// `SHA-256(seed ‖ counter)[..8]`, lock-free because quinn-proto wants a shared `Fn`.
pub(crate) fn initial_cid_provider(seed: [u8; 32]) -> Arc<dyn Fn() -> ConnectionId + Send + Sync> {
    let counter = AtomicU64::new(0);
    Arc::new(move || {
        let n = counter.fetch_add(1, Ordering::Relaxed);
        let mut hasher = Sha256::new();
        hasher.update(seed);
        hasher.update(n.to_be_bytes());
        let digest = hasher.finalize();
        ConnectionId::new(&digest[..CID_LEN])
    })
}

/// quinn-proto's wall-clock source for address-validation tokens, fed from the endpoint's
/// `(Instant, unix_ms)` anchor at every input instead of reading the system clock.
#[derive(Debug, Default)]
pub(crate) struct AnchoredTime {
    unix_ms: AtomicU64,
}

impl AnchoredTime {
    pub(crate) fn set(&self, unix_ms: u64) {
        self.unix_ms.store(unix_ms, Ordering::Relaxed);
    }

    /// The time last set, Unix epoch milliseconds.
    pub(crate) fn get(&self) -> u64 {
        self.unix_ms.load(Ordering::Relaxed)
    }
}

impl TimeSource for AnchoredTime {
    fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.unix_ms.load(Ordering::Relaxed))
    }
}

/// rustls reads wall time from the same anchor, so the core never consults the system clock.
impl TimeProvider for AnchoredTime {
    fn current_time(&self) -> Option<UnixTime> {
        Some(UnixTime::since_unix_epoch(Duration::from_millis(
            self.unix_ms.load(Ordering::Relaxed),
        )))
    }
}

/// Stateless-reset key (RFC 9000 §10.3), from the endpoint's secrets.
pub(crate) fn reset_key(seed: [u8; 32]) -> Arc<dyn quinn_proto::crypto::HmacKey> {
    Arc::new(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &seed))
}

/// Address-validation token key (RFC 9000 §8.1), from the endpoint's secrets.
pub(crate) fn token_key(seed: [u8; 32]) -> Arc<dyn quinn_proto::crypto::HandshakeTokenKey> {
    Arc::new(ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, &[]).extract(&seed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_is_deterministic_in_the_key() {
        let key = SigningKey::from_bytes(&[3; 32]);
        let (a, _) = self_signed(&key).unwrap();
        let (b, _) = self_signed(&key).unwrap();
        assert_eq!(a, b);
        let time = Arc::new(AnchoredTime::default());
        assert!(server_crypto(&key, &CryptoOptions::default(), time.clone(), None).is_ok());
        assert!(client_crypto(&CryptoOptions::default(), time, ALPN).is_ok());
    }

    #[test]
    fn seeded_ids_repeat_per_seed_and_differ_across_seeds() {
        let mut a = SeededCidGenerator::new([1; 32]);
        let mut b = SeededCidGenerator::new([1; 32]);
        let mut c = SeededCidGenerator::new([2; 32]);
        let (x, y, z) = (a.generate_cid(), b.generate_cid(), c.generate_cid());
        assert_eq!(x, y);
        assert_ne!(x, z);
        let p = initial_cid_provider([3; 32]);
        let q = initial_cid_provider([3; 32]);
        assert_eq!(p(), q());
        assert_ne!(p(), p());
    }
}
