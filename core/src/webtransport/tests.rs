use std::sync::Arc;

use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::{ServerName, UnixTime};

use super::*;

const DAY_MS: u64 = 24 * 60 * 60 * 1000;
/// 2025-06-15T14:13:20Z, a whole second.
const T0: u64 = 1_750_000_400_000;

fn cert(key: u8, not_before: u64) -> ServerCertificate {
    ServerCertificate::generate(&[key; 32], &CertificateOptions::new(not_before)).unwrap()
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// webpki's verdict on `cert` as an end-entity certificate for `name` at `at_ms`, with the
/// certificate itself as the only trust anchor (it is self-signed).
fn verify_at(cert: &ServerCertificate, name: &str, at_ms: u64) -> Result<(), rustls::Error> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.rustls_pair().0).unwrap();
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .unwrap();
    verifier
        .verify_server_cert(
            &cert.rustls_pair().0,
            &[],
            &ServerName::try_from(name.to_owned()).unwrap(),
            &[],
            UnixTime::since_unix_epoch(Duration::from_millis(at_ms)),
        )
        .map(|_| ())
}

#[test]
fn certificate_verifies_as_end_entity_within_its_validity_only() {
    let c = cert(7, T0);
    assert_eq!(c.not_before_unix_ms(), T0);
    assert_eq!(c.not_after_unix_ms(), T0 + 13 * DAY_MS);
    // webpki parses it, checks the ECDSA P-256/SHA-256 self-signature, the names and the times.
    verify_at(&c, "localhost", T0).unwrap();
    verify_at(&c, "127.0.0.1", T0 + DAY_MS).unwrap();
    verify_at(&c, "::1", c.not_after_unix_ms()).unwrap();
    verify_at(&c, "example.com", T0).unwrap_err();
    assert!(matches!(
        verify_at(&c, "localhost", T0 - 1000),
        Err(rustls::Error::InvalidCertificate(
            rustls::CertificateError::NotValidYetContext { .. }
        ))
    ));
    assert!(matches!(
        verify_at(&c, "localhost", c.not_after_unix_ms() + 1000),
        Err(rustls::Error::InvalidCertificate(
            rustls::CertificateError::ExpiredContext { .. }
        ))
    ));
}

#[test]
fn key_is_p256_and_matches_the_certificate() {
    use p256::pkcs8::{DecodePrivateKey, EncodePublicKey};
    let c = cert(3, T0);
    let secret = p256::SecretKey::from_pkcs8_der(c.private_key_pkcs8_der()).unwrap();
    let spki = secret.public_key().to_public_key_der().unwrap();
    // The subject public key info (id-ecPublicKey, prime256v1, the point) is in the certificate.
    let der = c.der();
    assert!(der.windows(spki.as_bytes().len()).any(|w| w == spki.as_bytes()));
    // OIDs: ecdsa-with-SHA256 (1.2.840.10045.4.3.2) and prime256v1 (1.2.840.10045.3.1.7).
    let contains = |needle: &[u8]| der.windows(needle.len()).any(|w| w == needle);
    assert!(contains(&[
        0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02
    ]));
    assert!(contains(&[
        0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07
    ]));
    // X.509 v3: [0] { INTEGER 2 } right after the TBSCertificate header.
    assert!(contains(&[0xa0, 0x03, 0x02, 0x01, 0x02]));
}

#[test]
fn rustls_accepts_the_pair_and_rcgen_reads_the_key() {
    let c = cert(4, T0);
    let (chain, key) = c.rustls_pair();
    rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![chain], key)
        .unwrap();
    let pkcs8 = rustls::pki_types::PrivatePkcs8KeyDer::from(c.private_key_pkcs8_der().to_vec());
    let kp = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8, &rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let secret = {
        use p256::elliptic_curve::sec1::ToEncodedPoint as _;
        use p256::pkcs8::DecodePrivateKey;
        p256::SecretKey::from_pkcs8_der(c.private_key_pkcs8_der())
            .unwrap()
            .public_key()
            .to_encoded_point(false)
    };
    assert_eq!(kp.public_key_raw(), secret.as_bytes());
}

#[test]
fn hash_is_sha256_of_the_der() {
    let c = cert(5, T0);
    let expected: [u8; 32] = Sha256::digest(c.der()).into();
    assert_eq!(c.sha256(), expected);
    assert_eq!(c.hash(), CertificateHash::sha256(expected));
    assert_eq!(c.hash().algorithm, HashAlgorithm::Sha256);
}

#[test]
fn same_inputs_give_the_same_bytes() {
    let a = cert(9, T0);
    let b = cert(9, T0);
    assert_eq!(a.der(), b.der());
    assert_eq!(a.private_key_pkcs8_der(), b.private_key_pkcs8_der());
    assert_eq!(a.sha256(), b.sha256());
    // Sub-second not_before is rounded down to the same certificate.
    assert_eq!(cert(9, T0 + 999).der(), a.der());
    assert_ne!(cert(10, T0).der(), a.der());
    assert_ne!(cert(9, T0 + 1000).der(), a.der());
    let s = Secrets::insecure_from_seed(1);
    let o = CertificateOptions::new(T0);
    assert_eq!(
        ServerCertificate::from_secrets(&s, 0, &o).unwrap().der(),
        ServerCertificate::from_secrets(&Secrets::insecure_from_seed(1), 0, &o)
            .unwrap()
            .der()
    );
    assert_ne!(
        ServerCertificate::from_secrets(&s, 0, &o).unwrap().der(),
        ServerCertificate::from_secrets(&s, 1, &o).unwrap().der()
    );
}

#[test]
fn validity_over_fourteen_days_is_refused() {
    let exactly = CertificateOptions::new(T0).with_validity(MAX_VALIDITY);
    let c = ServerCertificate::generate(&[1; 32], &exactly).unwrap();
    assert_eq!(c.not_after_unix_ms() - c.not_before_unix_ms(), 14 * DAY_MS);
    verify_at(&c, "localhost", T0 + 14 * DAY_MS).unwrap();

    let over = exactly
        .clone()
        .with_validity(MAX_VALIDITY + Duration::from_millis(1));
    assert_eq!(
        ServerCertificate::generate(&[1; 32], &over).unwrap_err(),
        CertificateError::ValidityTooLong {
            requested_ms: 14 * DAY_MS as u128 + 1,
            max_ms: 14 * DAY_MS as u128,
        }
    );
    let short = exactly.with_validity(Duration::from_millis(999));
    assert_eq!(
        ServerCertificate::generate(&[1; 32], &short).unwrap_err(),
        CertificateError::ValidityTooShort
    );
    let policy = RotationPolicy {
        validity: Duration::from_secs(15 * 24 * 3600),
        ..RotationPolicy::default()
    };
    assert!(matches!(
        CertificateRotation::new(policy, T0, &[1; 32]),
        Err(CertificateError::ValidityTooLong { .. })
    ));
}

#[test]
fn bad_names_and_times_are_refused() {
    let o = CertificateOptions::new(T0).with_names(vec!["caf\u{e9}".into()], vec![]);
    assert_eq!(
        ServerCertificate::generate(&[1; 32], &o).unwrap_err(),
        CertificateError::InvalidDnsName("caf\u{e9}".into())
    );
    let far = CertificateOptions::new(u64::MAX);
    assert!(matches!(
        ServerCertificate::generate(&[1; 32], &far),
        Err(CertificateError::TimeOutOfRange { .. })
    ));
    // Years past 2049 are GeneralizedTime and still fine.
    let y2100 = CertificateOptions::new(4_102_444_800_000);
    let c = ServerCertificate::generate(&[1; 32], &y2100).unwrap();
    verify_at(&c, "localhost", 4_102_444_800_000).unwrap();
}

#[test]
fn policy_must_leave_the_certificate_in_service() {
    let p = RotationPolicy {
        rotate_before_expiry: Duration::from_secs(13 * 24 * 3600),
        ..RotationPolicy::default()
    };
    assert!(matches!(
        p.validate(),
        Err(CertificateError::RotationTooEarly { .. })
    ));
    // The announcement counts: a certificate announced 10 days before it takes over would be
    // rotated out as soon as it did.
    let p = RotationPolicy {
        announce_before_rotation: Duration::from_secs(10 * 24 * 3600),
        ..RotationPolicy::default()
    };
    let err = p.validate().unwrap_err();
    assert!(
        matches!(err, CertificateError::RotationTooEarly { announce_before_rotation_ms, .. } if announce_before_rotation_ms == 10 * 24 * 3600 * 1000),
        "{err}"
    );
    RotationPolicy::default().validate().unwrap();
}

#[test]
fn rotation_schedule_in_virtual_time() {
    let policy = RotationPolicy::default();
    let backdate = DEFAULT_BACKDATE.as_millis() as u64;
    let mut r = CertificateRotation::new(policy, T0, &[1; 32]).unwrap();
    let first = r.current().clone();
    assert_eq!(first.not_before_unix_ms(), T0 - backdate);
    assert_eq!(first.not_after_unix_ms(), T0 - backdate + 13 * DAY_MS);
    let rotate_at = first.not_after_unix_ms() - 3 * DAY_MS;
    assert_eq!(r.rotate_at_unix_ms(), rotate_at);
    assert_eq!(r.announce_at_unix_ms(), rotate_at - DAY_MS);
    assert_eq!(r.next_check_unix_ms(T0), rotate_at - DAY_MS);
    assert!(!r.needs_announcement(rotate_at - DAY_MS - 1));
    assert!(r.needs_announcement(rotate_at - DAY_MS));
    assert!(!r.needs_rotation(T0));
    assert!(!r.needs_rotation(rotate_at - 1));
    assert!(r.needs_rotation(rotate_at));
    assert_eq!(r.next_check_unix_ms(rotate_at + 5), rotate_at + 5);
    assert_eq!(r.hashes(T0), vec![first.hash()]);
    assert!(r.previous().is_none());

    // Rotate at the due time: both hashes are published until the first expires.
    let now = rotate_at;
    r.rotate(now, &[2; 32]).unwrap();
    assert_eq!(r.generation(), 1);
    let second = r.current().clone();
    assert_ne!(second.sha256(), first.sha256());
    assert_eq!(second.not_before_unix_ms(), now - backdate);
    assert!(!r.needs_rotation(now));
    assert_eq!(
        r.previous(),
        Some(&RetiredCertificate {
            hash: first.hash(),
            not_after_unix_ms: first.not_after_unix_ms()
        })
    );
    // Next check: when the previous hash drops out (3 days), before the next announcement
    // (9 days).
    assert_eq!(r.next_check_unix_ms(now), first.not_after_unix_ms() + 1);
    assert_eq!(r.hashes(now), vec![second.hash(), first.hash()]);
    assert_eq!(
        r.hashes(first.not_after_unix_ms()),
        vec![second.hash(), first.hash()]
    );
    assert_eq!(r.hashes(first.not_after_unix_ms() + 1), vec![second.hash()]);
    assert_eq!(
        r.next_check_unix_ms(first.not_after_unix_ms() + 1),
        r.announce_at_unix_ms()
    );
    assert_eq!(r.rotate_at_unix_ms(), second.not_after_unix_ms() - 3 * DAY_MS);

    // A clock that jumped past expiry asks for rotation at once.
    assert!(r.needs_rotation(second.not_after_unix_ms() + DAY_MS));

    // Over 60 virtual days, polling at each next check: every announcement and rotation
    // happens exactly when due, each rotation installs the announced certificate, every
    // certificate published is valid from then on, and every document handed out pins the
    // certificate served until the next check.
    let mut r = CertificateRotation::new(RotationPolicy::default(), T0, &[1; 32]).unwrap();
    let mut now = T0;
    let (mut announcements, mut rotations) = (0_u8, 0);
    while now < T0 + 60 * DAY_MS {
        if r.needs_announcement(now) {
            assert_eq!(now, r.announce_at_unix_ms());
            announcements += 1;
            r.announce(now, &[announcements + 1; 32]).unwrap();
        }
        if r.needs_rotation(now) {
            assert_eq!(now, r.rotate_at_unix_ms());
            let announced = r.next().unwrap().sha256();
            rotations += 1;
            r.rotate(now, &[0xee; 32]).unwrap();
            assert_eq!(
                r.current().sha256(),
                announced,
                "the announced certificate takes over"
            );
            assert!(r.next().is_none());
        }
        let current = r.current();
        assert!(current.not_before_unix_ms() <= now && now <= current.not_after_unix_ms());
        if let Some(next) = r.next() {
            assert!(next.not_before_unix_ms() <= now && r.rotate_at_unix_ms() < next.not_after_unix_ms());
        }
        let document = r.hashes(now);
        assert!(document.len() <= 2, "{document:?}");
        let next = r.next_check_unix_ms(now);
        assert!(next > now);
        // Just before the next check, the same certificate is served; just after, the one
        // served is still in this document (a rotation installs the announced certificate).
        if r.needs_rotation(next) {
            assert!(document.contains(&r.next().unwrap().hash()));
        }
        now = next;
    }
    // 13-day certificates rotated at 10 days minus the hour of backdating.
    assert_eq!(rotations, 6);
    assert_eq!(announcements, 6);
}

/// The race the announcement closes: a lobby hands a browser the document a moment before the
/// rotation, and the browser connects a moment after it, to a server serving the new
/// certificate. The document already pins it.
#[test]
fn a_document_fetched_before_a_rotation_pins_the_certificate_served_after_it() {
    let mut r = CertificateRotation::new(RotationPolicy::default(), T0, &[1; 32]).unwrap();
    let rotate_at = r.rotate_at_unix_ms();
    r.announce(r.announce_at_unix_ms(), &[2; 32]).unwrap();
    let handed_out = r.document(rotate_at - 1);
    r.rotate(rotate_at, &[3; 32]).unwrap();
    assert!(handed_out.server_certificate_hashes.contains(&r.current().hash()));
    // And one fetched just after pins the certificate served before it, for a browser whose
    // handshake began before the rotation.
    let first = handed_out.server_certificate_hashes[0];
    assert!(r
        .document(rotate_at + 1)
        .server_certificate_hashes
        .contains(&first));

    // Without an announcement ahead, the document handed out before pins only the old one.
    let policy = RotationPolicy {
        announce_before_rotation: Duration::ZERO,
        ..RotationPolicy::default()
    };
    let mut r = CertificateRotation::new(policy, T0, &[1; 32]).unwrap();
    let rotate_at = r.rotate_at_unix_ms();
    assert_eq!(r.announce_at_unix_ms(), rotate_at);
    let handed_out = r.document(rotate_at - 1);
    assert!(r.needs_announcement(rotate_at));
    r.announce(rotate_at, &[2; 32]).unwrap();
    r.rotate(rotate_at, &[3; 32]).unwrap();
    assert!(!handed_out.server_certificate_hashes.contains(&r.current().hash()));
}

/// An announced certificate that cannot serve until its own rotation (the clock jumped past
/// it) is not installed: a fresh one is generated from the key given.
#[test]
fn a_stale_announcement_is_replaced_at_rotation() {
    let mut r = CertificateRotation::new(RotationPolicy::default(), T0, &[1; 32]).unwrap();
    r.announce(r.announce_at_unix_ms(), &[2; 32]).unwrap();
    let announced = r.next().unwrap().clone();
    let jumped = announced.not_after_unix_ms() - DAY_MS;
    r.rotate(jumped, &[3; 32]).unwrap();
    assert_ne!(r.current().sha256(), announced.sha256());
    assert_eq!(
        r.current().not_before_unix_ms(),
        jumped - DEFAULT_BACKDATE.as_millis() as u64
    );
    assert!(r.next().is_none());
    assert!(!r.hashes(jumped).contains(&announced.hash()));

    // A certificate generated at the time given, ahead of its notBefore, is not installed
    // either (the clock went back).
    let mut r = CertificateRotation::new(RotationPolicy::default(), T0, &[1; 32]).unwrap();
    let rotate_at = r.rotate_at_unix_ms();
    r.announce(rotate_at + 2 * DAY_MS, &[2; 32]).unwrap();
    let announced = r.next().unwrap().sha256();
    r.rotate(rotate_at, &[3; 32]).unwrap();
    assert_ne!(r.current().sha256(), announced);
}

#[test]
fn rotation_from_secrets_is_reproducible() {
    let run = || {
        let s = Secrets::insecure_from_seed(42);
        let mut r = CertificateRotation::from_secrets(RotationPolicy::default(), T0, &s).unwrap();
        let first = r.current().sha256();
        r.rotate_from_secrets(T0 + 10 * DAY_MS, &s).unwrap();
        let second = r.current().sha256();
        r.announce_from_secrets(r.announce_at_unix_ms(), &s).unwrap();
        let announced = r.next().unwrap().sha256();
        r.rotate_from_secrets(r.rotate_at_unix_ms(), &s).unwrap();
        assert_eq!(r.current().sha256(), announced);
        (first, second, announced)
    };
    let (a, b, c) = run();
    assert!(a != b && b != c && a != c);
    assert_eq!(run(), (a, b, c));
}

#[test]
fn document_json_has_the_browser_shape() {
    use base64::Engine as _;
    let mut r = CertificateRotation::new(RotationPolicy::default(), T0, &[1; 32]).unwrap();
    let first = r.current().clone();
    r.rotate(T0 + 10 * DAY_MS, &[2; 32]).unwrap();
    let doc = r.document(T0 + 10 * DAY_MS);
    let json = serde_json::to_value(&doc).unwrap();
    let b64 = |h: [u8; 32]| base64::engine::general_purpose::STANDARD.encode(h);
    assert_eq!(
        json,
        serde_json::json!({
            "server_certificate_hashes": [
                {"algorithm": "sha-256", "value": b64(r.current().sha256())},
                {"algorithm": "sha-256", "value": b64(first.sha256())},
            ],
            "not_after_unix_ms": r.current().not_after_unix_ms(),
        })
    );
    let text = serde_json::to_string(&doc).unwrap();
    assert_eq!(
        serde_json::from_str::<CertificateHashesDocument>(&text).unwrap(),
        doc
    );
    assert_eq!(b64(first.sha256()).len(), 44);

    let bad_algorithm = text.replacen("sha-256", "sha-1", 1);
    serde_json::from_str::<CertificateHashesDocument>(&bad_algorithm).unwrap_err();
    let short =
        r#"{"server_certificate_hashes":[{"algorithm":"sha-256","value":"AAAA"}],"not_after_unix_ms":1}"#;
    let err = serde_json::from_str::<CertificateHashesDocument>(short).unwrap_err();
    assert!(err.to_string().contains("expected 32 bytes"), "{err}");
}

#[test]
fn debug_hides_the_key() {
    let c = cert(1, T0);
    let text = format!("{c:?}");
    assert!(text.contains("sha256"), "{text}");
    assert!(!text.contains("key"), "{text}");
}
