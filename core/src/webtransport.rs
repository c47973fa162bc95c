//! Self-signed certificates that browsers can pin through WebTransport's
//! `serverCertificateHashes`, their rotation, and the JSON document a lobby hands to browser
//! clients.
//!
//! A browser that opens `new WebTransport(url, { serverCertificateHashes: [...] })` skips the
//! Web PKI and accepts the server's certificate if its SHA-256 hash is in the list and the
//! certificate meets the W3C WebTransport *custom certificate requirements*
//! (<https://www.w3.org/TR/webtransport/#custom-certificate-requirements>, used by the
//! `serverCertificateHashes` option, <https://www.w3.org/TR/webtransport/#dom-webtransportoptions-servercertificatehashes>):
//!
//! - an X.509v3 certificate (RFC 5280) whose subject public key is ECDSA on secp256r1 (P-256);
//! - a validity period (RFC 5280 §4.1.2.5: `notBefore` through `notAfter`) of at most two
//!   weeks, `notAfter − notBefore ≤ 14 days` ([`MAX_VALIDITY`]), containing the current time;
//! - pinned by `SHA-256(DER certificate)`, given as `{ algorithm: "sha-256", value }`.
//!
//! Like the rest of the core this module does no I/O: it reads no clock and draws no
//! randomness. Times are arguments in Unix milliseconds; the private key derives from 32 bytes of
//! key material the caller supplies (fresh from the operating system's CSPRNG in production, or
//! from a [`Secrets`] in simulations, [`ServerCertificate::from_secrets`]). The certificate is
//! signed with deterministic ECDSA (RFC 6979), so the same inputs give the same bytes.
//!
//! ## Pieces
//!
//! | | |
//! |---|---|
//! | [`ServerCertificate`], [`CertificateOptions`] | one certificate: DER, PKCS#8 key, hash, validity |
//! | [`CertificateRotation`], [`RotationPolicy`] | when to replace it; the current, next and previous hashes |
//! | [`CertificateHashesDocument`], [`CertificateHash`] | the JSON a lobby publishes |
//! | [`CertificateError`] | why a certificate or a policy is refused |

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use p256::ecdsa::signature::Signer;
use p256::pkcs8::EncodePrivateKey;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::Secrets;

pub mod connect;
pub mod h3;

pub use connect::{WebTransportConfig, DEFAULT_PATH};

/// The ALPN of HTTP/3 (RFC 9114 §3.1), which WebTransport sessions negotiate.
pub const ALPN_H3: &[u8] = b"h3";

/// The longest validity the W3C WebTransport custom certificate requirements allow: two weeks,
/// measured as `notAfter − notBefore` (RFC 5280 §4.1.2.5).
pub const MAX_VALIDITY: Duration = Duration::from_secs(14 * 24 * 60 * 60);
/// Default validity of a generated certificate: 13 days, a day under [`MAX_VALIDITY`].
pub const DEFAULT_VALIDITY: Duration = Duration::from_secs(13 * 24 * 60 * 60);
/// Default [`RotationPolicy::rotate_before_expiry`]: 3 days.
pub const DEFAULT_ROTATE_BEFORE_EXPIRY: Duration = Duration::from_secs(3 * 24 * 60 * 60);
/// Default [`RotationPolicy::backdate`]: 1 hour, for clients whose clocks run behind.
pub const DEFAULT_BACKDATE: Duration = Duration::from_secs(60 * 60);
/// Default [`RotationPolicy::announce_before_rotation`]: 1 day.
pub const DEFAULT_ANNOUNCE_BEFORE_ROTATION: Duration = Duration::from_secs(24 * 60 * 60);
/// The `algorithm` string of a SHA-256 certificate hash in `serverCertificateHashes`.
pub const SHA_256: &str = "sha-256";

/// Domain separator of the private-scalar derivation (see [`ServerCertificate::generate`]).
const KEY_CONTEXT: &[u8] = b"tickwire/webtransport/p256-key/v1";
/// Domain separator of the serial number derivation.
const SERIAL_CONTEXT: &[u8] = b"tickwire/webtransport/serial/v1";
/// Common name of the certificate subject and issuer.
const COMMON_NAME: &str = "tickwire";

/// Why a certificate, its options or a rotation policy were refused. All are local
/// misconfiguration, never peer input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertificateError {
    /// The validity exceeds the two weeks browsers accept ([`MAX_VALIDITY`]).
    #[error(
        "certificate validity of {requested_ms} ms exceeds the WebTransport maximum of {max_ms} ms (14 days)"
    )]
    ValidityTooLong {
        /// The validity asked for, in milliseconds.
        requested_ms: u128,
        /// [`MAX_VALIDITY`], in milliseconds.
        max_ms: u128,
    },
    /// The validity is shorter than one second, the resolution of X.509 times.
    #[error("certificate validity must be at least one second")]
    ValidityTooShort,
    /// `not_before` (or `not_before + validity`) is not a time X.509 can encode
    /// (years 1950 through 9999, RFC 5280 §4.1.2.5).
    #[error("certificate time {unix_ms} ms since the Unix epoch is out of the X.509 range")]
    TimeOutOfRange {
        /// The offending time, in Unix milliseconds.
        unix_ms: u64,
    },
    /// A DNS name is not a valid subject alternative name.
    #[error("invalid DNS name {0:?} for the certificate")]
    InvalidDnsName(String),
    /// The rotation policy would rotate before the certificate is valid, or never leave it in
    /// service: it needs `backdate + announce_before_rotation + rotate_before_expiry < validity`.
    #[error("rotation policy rotates before the certificate is in service: backdate ({backdate_ms} ms) + announce_before_rotation ({announce_before_rotation_ms} ms) + rotate_before_expiry ({rotate_before_expiry_ms} ms) must be less than the validity ({validity_ms} ms)")]
    RotationTooEarly {
        /// [`RotationPolicy::backdate`], in milliseconds.
        backdate_ms: u128,
        /// [`RotationPolicy::announce_before_rotation`], in milliseconds.
        announce_before_rotation_ms: u128,
        /// [`RotationPolicy::rotate_before_expiry`], in milliseconds.
        rotate_before_expiry_ms: u128,
        /// [`RotationPolicy::validity`], in milliseconds.
        validity_ms: u128,
    },
    /// Encoding the key or the certificate failed (should not happen with valid options).
    #[error("certificate generation failed: {0}")]
    Generation(String),
}

/// What goes into a certificate besides its key: validity and names.
///
/// Browsers pinning a hash do not check names; they matter to other clients (and to rustls,
/// which wants at least one). The defaults are `localhost`, `127.0.0.1` and `::1`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CertificateOptions {
    /// Start of the validity period, in milliseconds since the Unix epoch; rounded down to a
    /// whole second (X.509 times have one-second resolution).
    pub not_before_unix_ms: u64,
    /// Length of the validity period, `notAfter − notBefore`; rounded down to a whole second.
    /// Default [`DEFAULT_VALIDITY`]; more than [`MAX_VALIDITY`] is refused.
    pub validity: Duration,
    /// DNS subject alternative names.
    pub dns_names: Vec<String>,
    /// IP address subject alternative names.
    pub ip_addresses: Vec<IpAddr>,
}

impl CertificateOptions {
    /// Options for a certificate valid from `not_before_unix_ms` for [`DEFAULT_VALIDITY`],
    /// named `localhost`, `127.0.0.1` and `::1`.
    pub fn new(not_before_unix_ms: u64) -> Self {
        Self {
            not_before_unix_ms,
            validity: DEFAULT_VALIDITY,
            dns_names: vec!["localhost".to_owned()],
            ip_addresses: vec![IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V6(Ipv6Addr::LOCALHOST)],
        }
    }

    /// Sets [`validity`](Self::validity).
    pub fn with_validity(mut self, validity: Duration) -> Self {
        self.validity = validity;
        self
    }

    /// Replaces the subject alternative names.
    pub fn with_names(mut self, dns_names: Vec<String>, ip_addresses: Vec<IpAddr>) -> Self {
        self.dns_names = dns_names;
        self.ip_addresses = ip_addresses;
        self
    }

    /// Checks the validity against [`MAX_VALIDITY`] and one second; returns it in whole seconds.
    fn validity_secs(&self) -> Result<u64, CertificateError> {
        if self.validity > MAX_VALIDITY {
            return Err(CertificateError::ValidityTooLong {
                requested_ms: self.validity.as_millis(),
                max_ms: MAX_VALIDITY.as_millis(),
            });
        }
        match self.validity.as_secs() {
            0 => Err(CertificateError::ValidityTooShort),
            secs => Ok(secs),
        }
    }
}

/// A self-signed X.509v3 certificate with an ECDSA P-256 key, meeting the W3C WebTransport
/// custom certificate requirements (see the [module docs](self)).
///
/// Its `Debug` output shows the hash and validity, never the private key.
#[derive(Clone)]
pub struct ServerCertificate {
    der: CertificateDer<'static>,
    key_pkcs8: Vec<u8>,
    sha256: [u8; 32],
    not_before_unix_ms: u64,
    not_after_unix_ms: u64,
}

impl ServerCertificate {
    /// A certificate for `options`, with a private key derived from the 32 bytes of secret
    /// `key` material (fresh from the operating system's CSPRNG in production).
    ///
    /// The P-256 private scalar is `SHA-256("tickwire/webtransport/p256-key/v1" ‖ key ‖ i)` for
    /// the first 32-bit big-endian counter `i` (from 0) that gives a valid scalar (all but a
    /// ~2⁻³² fraction of values are). The signature is deterministic ECDSA (RFC 6979) and the
    /// serial number derives from the public key and `notBefore`, so the same `key` and
    /// `options` give the same DER bytes.
    ///
    /// # Errors
    /// [`CertificateError::ValidityTooLong`] beyond [`MAX_VALIDITY`],
    /// [`CertificateError::ValidityTooShort`] under one second,
    /// [`CertificateError::TimeOutOfRange`] for times X.509 cannot encode,
    /// [`CertificateError::InvalidDnsName`] for a name that is not a valid SAN.
    pub fn generate(key: &[u8; 32], options: &CertificateOptions) -> Result<Self, CertificateError> {
        let validity_secs = options.validity_secs()?;
        let not_before_secs = options.not_before_unix_ms / 1000;
        let not_after_secs = not_before_secs + validity_secs;
        let not_before = x509_time(not_before_secs)?;
        let not_after = x509_time(not_after_secs)?;

        let secret = derive_secret_key(key);
        let key_pkcs8 = secret
            .to_pkcs8_der()
            .map_err(|e| CertificateError::Generation(e.to_string()))?
            .as_bytes()
            .to_vec();
        let signer = DeterministicP256::new(&secret);

        let mut params = rcgen::CertificateParams::default();
        params.not_before = not_before;
        params.not_after = not_after;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, COMMON_NAME);
        params.serial_number = Some(serial_number(&signer.public, not_before_secs));
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        for name in &options.dns_names {
            let ia5 = rcgen::Ia5String::try_from(name.as_str())
                .map_err(|_| CertificateError::InvalidDnsName(name.clone()))?;
            params.subject_alt_names.push(rcgen::SanType::DnsName(ia5));
        }
        for ip in &options.ip_addresses {
            params.subject_alt_names.push(rcgen::SanType::IpAddress(*ip));
        }

        let key_pair = rcgen::KeyPair::from_remote(Box::new(signer))
            .map_err(|e| CertificateError::Generation(e.to_string()))?;
        let cert = params
            .self_signed(&key_pair)
            .map_err(|e| CertificateError::Generation(e.to_string()))?;
        let der = cert.der().clone();
        let sha256 = Sha256::digest(der.as_ref()).into();
        Ok(Self {
            der,
            key_pkcs8,
            sha256,
            not_before_unix_ms: not_before_secs * 1000,
            not_after_unix_ms: not_after_secs * 1000,
        })
    }

    /// [`generate`](Self::generate) with key material derived from `secrets` (label
    /// `webtransport/certificate/<generation>`), for simulations and tests that must be
    /// reproducible: each `generation` gives an independent key.
    ///
    /// # Errors
    /// As [`generate`](Self::generate).
    pub fn from_secrets(
        secrets: &Secrets,
        generation: u64,
        options: &CertificateOptions,
    ) -> Result<Self, CertificateError> {
        let key = secrets.derive(&format!("webtransport/certificate/{generation}"));
        Self::generate(&key, options)
    }

    /// The certificate, DER-encoded (RFC 5280).
    pub fn der(&self) -> &[u8] {
        self.der.as_ref()
    }

    /// The private key, DER-encoded PKCS#8 v1 (RFC 5208) wrapping a SEC1 `ECPrivateKey`
    /// (RFC 5915) on P-256.
    pub fn private_key_pkcs8_der(&self) -> &[u8] {
        &self.key_pkcs8
    }

    /// `SHA-256` of [`der`](Self::der): the value browsers pin.
    pub fn sha256(&self) -> [u8; 32] {
        self.sha256
    }

    /// The hash as one `serverCertificateHashes` entry.
    pub fn hash(&self) -> CertificateHash {
        CertificateHash::sha256(self.sha256)
    }

    /// `notBefore`, in milliseconds since the Unix epoch (a whole second).
    pub fn not_before_unix_ms(&self) -> u64 {
        self.not_before_unix_ms
    }

    /// `notAfter`, in milliseconds since the Unix epoch (a whole second). RFC 5280 validity is
    /// inclusive: the certificate is valid at this instant and not after it.
    pub fn not_after_unix_ms(&self) -> u64 {
        self.not_after_unix_ms
    }

    /// The certificate and key as rustls takes them
    /// (`ServerConfig::builder()…with_single_cert(vec![cert], key)`).
    pub fn rustls_pair(&self) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
        (
            self.der.clone(),
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_pkcs8.clone())),
        )
    }
}

impl fmt::Debug for ServerCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerCertificate")
            .field("sha256", &Hex(&self.sha256))
            .field("not_before_unix_ms", &self.not_before_unix_ms)
            .field("not_after_unix_ms", &self.not_after_unix_ms)
            .finish_non_exhaustive()
    }
}

struct Hex<'a>(&'a [u8]);

impl fmt::Debug for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// Unix seconds as an X.509 time; refuses what RFC 5280 §4.1.2.5 cannot encode
/// (UTCTime from 1950, GeneralizedTime up to 9999).
fn x509_time(unix_secs: u64) -> Result<time::OffsetDateTime, CertificateError> {
    let out_of_range = || CertificateError::TimeOutOfRange {
        unix_ms: unix_secs.saturating_mul(1000),
    };
    let secs = i64::try_from(unix_secs).map_err(|_| out_of_range())?;
    let t = time::OffsetDateTime::from_unix_timestamp(secs).map_err(|_| out_of_range())?;
    if t.year() > 9999 {
        return Err(out_of_range());
    }
    Ok(t)
}

/// The P-256 secret key for `key` (see [`ServerCertificate::generate`]).
fn derive_secret_key(key: &[u8; 32]) -> p256::SecretKey {
    (0u32..)
        .find_map(|counter| {
            let candidate = Sha256::new()
                .chain_update(KEY_CONTEXT)
                .chain_update(key)
                .chain_update(counter.to_be_bytes())
                .finalize();
            p256::SecretKey::from_bytes(&candidate).ok()
        })
        .expect("a SHA-256 output is a valid P-256 scalar with probability 1 - 2^-32")
}

/// A positive 16-byte serial number (RFC 5280 §4.1.2.2) from the public key and `notBefore`.
fn serial_number(public: &[u8], not_before_secs: u64) -> rcgen::SerialNumber {
    let digest = Sha256::new()
        .chain_update(SERIAL_CONTEXT)
        .chain_update(public)
        .chain_update(not_before_secs.to_be_bytes())
        .finalize();
    let mut serial = [0u8; 16];
    serial.copy_from_slice(&digest[..16]);
    serial[0] &= 0x7f;
    serial[0] |= 0x40; // nonzero leading byte: always 16 bytes, always positive
    rcgen::SerialNumber::from_slice(&serial)
}

/// rcgen signer over p256: deterministic ECDSA (RFC 6979), so certificates are reproducible and
/// no randomness is drawn (rcgen's own ring signer draws from the operating system).
struct DeterministicP256 {
    key: p256::ecdsa::SigningKey,
    /// Uncompressed SEC1 public point, as rcgen's `public_key_raw`.
    public: Vec<u8>,
}

impl DeterministicP256 {
    fn new(secret: &p256::SecretKey) -> Self {
        let key = p256::ecdsa::SigningKey::from(secret);
        let public = key.verifying_key().to_encoded_point(false).as_bytes().to_vec();
        Self { key, public }
    }
}

impl rcgen::RemoteKeyPair for DeterministicP256 {
    fn public_key(&self) -> &[u8] {
        &self.public
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        let signature: p256::ecdsa::Signature = self.key.sign(msg);
        Ok(signature.to_der().as_bytes().to_vec())
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

/// One entry of `serverCertificateHashes`: `{"algorithm": "sha-256", "value": "<base64>"}`.
///
/// The shape of the W3C WebTransport `WebTransportHash` dictionary
/// (<https://www.w3.org/TR/webtransport/#dictdef-webtransporthash>), with the value in standard
/// base64 (RFC 4648 §4, padded) since JSON has no bytes; a browser client decodes it into an
/// `ArrayBuffer` before `new WebTransport(url, { serverCertificateHashes })`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CertificateHash {
    /// Always [`SHA_256`] (`"sha-256"`); other algorithms are refused when deserialising.
    pub algorithm: HashAlgorithm,
    /// `SHA-256` of the DER certificate.
    #[serde(with = "base64_32")]
    pub value: [u8; 32],
}

impl CertificateHash {
    /// The entry for a SHA-256 hash.
    pub fn sha256(value: [u8; 32]) -> Self {
        Self {
            algorithm: HashAlgorithm::Sha256,
            value,
        }
    }
}

/// The hash algorithm of a [`CertificateHash`]. WebTransport defines only SHA-256.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum HashAlgorithm {
    /// SHA-256, serialised `"sha-256"`.
    #[serde(rename = "sha-256")]
    Sha256,
}

mod base64_32 {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(value: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(value))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let bytes = STANDARD.decode(text.as_bytes()).map_err(D::Error::custom)?;
        <[u8; 32]>::try_from(bytes.as_slice())
            .map_err(|_| D::Error::custom(format!("expected 32 bytes, got {}", bytes.len())))
    }
}

/// The JSON document a lobby gives browser clients so that they can pin the game server's
/// certificate:
///
/// ```json
/// {"server_certificate_hashes":[{"algorithm":"sha-256","value":"<base64>"}],"not_after_unix_ms":1767225600000}
/// ```
///
/// `server_certificate_hashes` lists the current certificate first, then the next one once it
/// is announced, then the previous one while it is still valid (see
/// [`CertificateRotation::document`]); `not_after_unix_ms` is the current certificate's
/// `notAfter` in Unix milliseconds, by which the document must be fetched again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateHashesDocument {
    /// The hashes to pass as `serverCertificateHashes`, current first.
    pub server_certificate_hashes: Vec<CertificateHash>,
    /// `notAfter` of the current certificate, in milliseconds since the Unix epoch.
    pub not_after_unix_ms: u64,
}

/// When to replace a certificate, and how to make the next one.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RotationPolicy {
    /// Validity of each new certificate, `notAfter − notBefore`. Default [`DEFAULT_VALIDITY`];
    /// at most [`MAX_VALIDITY`].
    pub validity: Duration,
    /// Rotate once less than this much validity remains. Default
    /// [`DEFAULT_ROTATE_BEFORE_EXPIRY`]. It is also how long the previous hash stays published
    /// after a rotation.
    pub rotate_before_expiry: Duration,
    /// Generate the next certificate and publish its hash this long before it replaces the
    /// current one, so that a document handed out shortly before a rotation already pins the
    /// certificate served after it: a browser can only be served one certificate per handshake,
    /// and the server cannot tell which hashes it pinned. It should cover how long a lobby keeps
    /// its copy of the document and a browser keeps the hashes before connecting. Default
    /// [`DEFAULT_ANNOUNCE_BEFORE_ROTATION`]; zero announces the next certificate only when it
    /// takes over, and browsers holding an older document then fail to connect until they fetch
    /// it again.
    pub announce_before_rotation: Duration,
    /// A new certificate's `notBefore` is this far before the time of its generation, so that
    /// clients whose clocks run behind accept it at once. Default [`DEFAULT_BACKDATE`].
    pub backdate: Duration,
    /// Subject alternative names of new certificates (see [`CertificateOptions`]).
    pub dns_names: Vec<String>,
    /// IP address subject alternative names of new certificates.
    pub ip_addresses: Vec<IpAddr>,
}

impl Default for RotationPolicy {
    fn default() -> Self {
        let options = CertificateOptions::new(0);
        Self {
            validity: DEFAULT_VALIDITY,
            rotate_before_expiry: DEFAULT_ROTATE_BEFORE_EXPIRY,
            announce_before_rotation: DEFAULT_ANNOUNCE_BEFORE_ROTATION,
            backdate: DEFAULT_BACKDATE,
            dns_names: options.dns_names,
            ip_addresses: options.ip_addresses,
        }
    }
}

impl RotationPolicy {
    /// Checks that certificates under this policy are acceptable and spend time in service.
    ///
    /// # Errors
    /// [`CertificateError::ValidityTooLong`] / [`CertificateError::ValidityTooShort`] for the
    /// validity; [`CertificateError::RotationTooEarly`] unless
    /// `backdate + announce_before_rotation + rotate_before_expiry < validity` (a certificate
    /// announced ahead is generated that much before it takes over, and must still have time in
    /// service before its own rotation).
    pub fn validate(&self) -> Result<(), CertificateError> {
        self.options(0).validity_secs()?;
        let lead = self
            .backdate
            .saturating_add(self.announce_before_rotation)
            .saturating_add(self.rotate_before_expiry);
        if lead >= self.validity {
            return Err(CertificateError::RotationTooEarly {
                backdate_ms: self.backdate.as_millis(),
                announce_before_rotation_ms: self.announce_before_rotation.as_millis(),
                rotate_before_expiry_ms: self.rotate_before_expiry.as_millis(),
                validity_ms: self.validity.as_millis(),
            });
        }
        Ok(())
    }

    /// The options of a certificate generated at `now_unix_ms`.
    pub fn options(&self, now_unix_ms: u64) -> CertificateOptions {
        CertificateOptions {
            not_before_unix_ms: now_unix_ms.saturating_sub(duration_ms(self.backdate)),
            validity: self.validity,
            dns_names: self.dns_names.clone(),
            ip_addresses: self.ip_addresses.clone(),
        }
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The hash and expiry of a certificate that was rotated out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetiredCertificate {
    /// Its `serverCertificateHashes` entry.
    pub hash: CertificateHash,
    /// Its `notAfter`, in Unix milliseconds; it is published until then.
    pub not_after_unix_ms: u64,
}

/// A server's certificate over time: the current one, the next one once announced, the hash of
/// the previous one, and when to make the next.
///
/// A certificate's life: generated and its hash published
/// [`announce_before_rotation`](RotationPolicy::announce_before_rotation) before it takes over
/// ([`announce`](Self::announce)), served from its rotation ([`rotate`](Self::rotate)) until
/// [`rotate_before_expiry`](RotationPolicy::rotate_before_expiry) before its `notAfter`, and
/// published until it expires. Every document handed out thus pins both the certificate served
/// now and, from a day before a rotation (by default), the one served after it.
///
/// Driven with the wall clock as an argument (Unix milliseconds), e.g. on a server's loop:
///
/// ```
/// use tickwire_core::webtransport::{CertificateRotation, RotationPolicy};
///
/// # fn main() -> Result<(), tickwire_core::webtransport::CertificateError> {
/// let day = 24 * 60 * 60 * 1000;
/// let start = 1_750_000_000_000; // from the wall clock, in the runtime
/// let mut rotation = CertificateRotation::new(RotationPolicy::default(), start, &[1; 32])?;
/// assert!(!rotation.needs_announcement(start + day));
///
/// // 13-day certificates, rotated 3 days before they expire, the next announced a day ahead.
/// let announce = start + 9 * day;
/// assert!(rotation.needs_announcement(announce));
/// rotation.announce(announce, &[2; 32])?; // fresh key material from the OS in production
/// let document = rotation.document(announce);
/// assert_eq!(document.server_certificate_hashes.len(), 2);
///
/// let later = start + 10 * day;
/// assert!(rotation.needs_rotation(later));
/// rotation.rotate(later, &[3; 32])?; // installs the announced certificate
/// assert!(document.server_certificate_hashes.contains(&rotation.current().hash()));
/// // The old hash stays published until the old certificate expires.
/// assert_eq!(rotation.document(later).server_certificate_hashes.len(), 2);
/// assert_eq!(rotation.document(later + 4 * day).server_certificate_hashes.len(), 1);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct CertificateRotation {
    policy: RotationPolicy,
    current: ServerCertificate,
    /// The certificate announced to take over at the next rotation.
    next: Option<ServerCertificate>,
    previous: Option<RetiredCertificate>,
    generation: u64,
}

impl CertificateRotation {
    /// Starts with a certificate generated at `now_unix_ms` from `key` (32 bytes of secret key
    /// material) under `policy`.
    ///
    /// # Errors
    /// [`RotationPolicy::validate`]'s, then [`ServerCertificate::generate`]'s.
    pub fn new(policy: RotationPolicy, now_unix_ms: u64, key: &[u8; 32]) -> Result<Self, CertificateError> {
        policy.validate()?;
        let current = ServerCertificate::generate(key, &policy.options(now_unix_ms))?;
        Ok(Self::starting_with(policy, current))
    }

    /// [`new`](Self::new) with the key of generation 0 derived from `secrets` (see
    /// [`ServerCertificate::from_secrets`]); [`announce_from_secrets`](Self::announce_from_secrets)
    /// and [`rotate_from_secrets`](Self::rotate_from_secrets) continue with generations 1, 2, …
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn from_secrets(
        policy: RotationPolicy,
        now_unix_ms: u64,
        secrets: &Secrets,
    ) -> Result<Self, CertificateError> {
        policy.validate()?;
        let current = ServerCertificate::from_secrets(secrets, 0, &policy.options(now_unix_ms))?;
        Ok(Self::starting_with(policy, current))
    }

    fn starting_with(policy: RotationPolicy, current: ServerCertificate) -> Self {
        Self {
            policy,
            current,
            next: None,
            previous: None,
            generation: 0,
        }
    }

    /// The policy.
    pub fn policy(&self) -> &RotationPolicy {
        &self.policy
    }

    /// The certificate to serve.
    pub fn current(&self) -> &ServerCertificate {
        &self.current
    }

    /// The certificate announced to replace the current one at the next rotation, once
    /// [`announce`](Self::announce)d.
    pub fn next(&self) -> Option<&ServerCertificate> {
        self.next.as_ref()
    }

    /// The certificate rotated out last, if any (published while `now ≤ not_after_unix_ms`).
    pub fn previous(&self) -> Option<&RetiredCertificate> {
        self.previous.as_ref()
    }

    /// How many rotations have happened.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// When the current certificate is due for rotation: its `notAfter` minus
    /// [`RotationPolicy::rotate_before_expiry`], in Unix milliseconds.
    pub fn rotate_at_unix_ms(&self) -> u64 {
        self.retire_at(&self.current)
    }

    /// When `certificate`, in service, is due for rotation.
    fn retire_at(&self, certificate: &ServerCertificate) -> u64 {
        certificate
            .not_after_unix_ms
            .saturating_sub(duration_ms(self.policy.rotate_before_expiry))
    }

    /// When the next certificate is due to be announced: [`rotate_at_unix_ms`](Self::rotate_at_unix_ms)
    /// minus [`RotationPolicy::announce_before_rotation`], in Unix milliseconds.
    pub fn announce_at_unix_ms(&self) -> u64 {
        self.rotate_at_unix_ms()
            .saturating_sub(duration_ms(self.policy.announce_before_rotation))
    }

    /// Whether to [`announce`](Self::announce) the next certificate now: none is announced and
    /// the announcement time has come.
    pub fn needs_announcement(&self, now_unix_ms: u64) -> bool {
        self.next.is_none() && now_unix_ms >= self.announce_at_unix_ms()
    }

    /// Whether to [`rotate`](Self::rotate) now: less than `rotate_before_expiry` of validity is
    /// left (or the certificate has expired, e.g. after the clock jumped).
    pub fn needs_rotation(&self, now_unix_ms: u64) -> bool {
        now_unix_ms >= self.rotate_at_unix_ms()
    }

    /// When to look again, in Unix milliseconds: the earliest of the announcement time (while
    /// nothing is announced), the rotation time and, while a previous hash is published, its
    /// expiry (each changes [`document`](Self::document)). `now_unix_ms` itself when an
    /// announcement or a rotation is due.
    pub fn next_check_unix_ms(&self, now_unix_ms: u64) -> u64 {
        let mut next = if self.next.is_none() {
            self.announce_at_unix_ms()
        } else {
            self.rotate_at_unix_ms()
        };
        if let Some(previous) = &self.previous {
            // The document drops the previous hash just after its notAfter.
            let drop_at = previous.not_after_unix_ms.saturating_add(1);
            if drop_at > now_unix_ms {
                next = next.min(drop_at);
            }
        }
        next.max(now_unix_ms)
    }

    /// Generates, at `now_unix_ms` from `key` (fresh key material), the certificate that takes
    /// over at the next rotation, and publishes its hash from now on. Announcing again replaces
    /// the announced certificate.
    ///
    /// # Errors
    /// As [`ServerCertificate::generate`]; on error nothing changes.
    pub fn announce(&mut self, now_unix_ms: u64, key: &[u8; 32]) -> Result<(), CertificateError> {
        self.next = Some(ServerCertificate::generate(
            key,
            &self.policy.options(now_unix_ms),
        )?);
        Ok(())
    }

    /// [`announce`](Self::announce) with the key of the next generation derived from `secrets`.
    ///
    /// # Errors
    /// As [`announce`](Self::announce).
    pub fn announce_from_secrets(
        &mut self,
        now_unix_ms: u64,
        secrets: &Secrets,
    ) -> Result<(), CertificateError> {
        let options = self.policy.options(now_unix_ms);
        self.next = Some(ServerCertificate::from_secrets(
            secrets,
            self.generation + 1,
            &options,
        )?);
        Ok(())
    }

    /// Replaces the current certificate with the announced one, or, when none was announced or
    /// the announced one cannot serve from `now_unix_ms` until its own rotation (the server
    /// started late, or the clock jumped), with one generated at `now_unix_ms` from `key` (fresh
    /// key material, unused otherwise). The old one's hash stays published until it expires.
    ///
    /// # Errors
    /// As [`ServerCertificate::generate`]; on error nothing changes.
    pub fn rotate(&mut self, now_unix_ms: u64, key: &[u8; 32]) -> Result<(), CertificateError> {
        self.rotate_with(now_unix_ms, |options| ServerCertificate::generate(key, options))
    }

    /// [`rotate`](Self::rotate) with the key of the next generation derived from `secrets`.
    ///
    /// # Errors
    /// As [`rotate`](Self::rotate).
    pub fn rotate_from_secrets(
        &mut self,
        now_unix_ms: u64,
        secrets: &Secrets,
    ) -> Result<(), CertificateError> {
        let generation = self.generation + 1;
        self.rotate_with(now_unix_ms, |options| {
            ServerCertificate::from_secrets(secrets, generation, options)
        })
    }

    fn rotate_with(
        &mut self,
        now_unix_ms: u64,
        generate: impl FnOnce(&CertificateOptions) -> Result<ServerCertificate, CertificateError>,
    ) -> Result<(), CertificateError> {
        let serves = self
            .next
            .as_ref()
            .is_some_and(|next| next.not_before_unix_ms <= now_unix_ms && now_unix_ms < self.retire_at(next));
        let next = match self.next.take() {
            Some(announced) if serves => announced,
            stale => match generate(&self.policy.options(now_unix_ms)) {
                Ok(fresh) => fresh,
                Err(e) => {
                    self.next = stale;
                    return Err(e);
                }
            },
        };
        let old = std::mem::replace(&mut self.current, next);
        self.previous = Some(RetiredCertificate {
            hash: old.hash(),
            not_after_unix_ms: old.not_after_unix_ms,
        });
        self.generation += 1;
        Ok(())
    }

    /// The hashes to publish at `now_unix_ms`: the current certificate's, then the next one's
    /// once announced, then the previous one's while it has not expired (`now ≤ notAfter`).
    pub fn hashes(&self, now_unix_ms: u64) -> Vec<CertificateHash> {
        let mut hashes = vec![self.current.hash()];
        if let Some(next) = &self.next {
            hashes.push(next.hash());
        }
        if let Some(previous) = &self.previous {
            if now_unix_ms <= previous.not_after_unix_ms {
                hashes.push(previous.hash);
            }
        }
        hashes
    }

    /// The lobby document at `now_unix_ms` ([`hashes`](Self::hashes) and the current
    /// certificate's `notAfter`).
    pub fn document(&self, now_unix_ms: u64) -> CertificateHashesDocument {
        CertificateHashesDocument {
            server_certificate_hashes: self.hashes(now_unix_ms),
            not_after_unix_ms: self.current.not_after_unix_ms,
        }
    }
}

#[cfg(test)]
mod tests;
