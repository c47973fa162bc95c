use ed25519_dalek::SigningKey;

use super::*;
use crate::ticket::{TicketConfig, TicketIssuer, TicketVerifier};

const NOW_MS: u64 = 1_767_225_600_000;

struct Fixture {
    client: SigningKey,
    server: SigningKey,
    issuer: TicketIssuer,
    verifier: TicketVerifier,
}

fn fixture() -> Fixture {
    let issuer = TicketIssuer::new(1, SigningKey::from_bytes(&[9; 32]));
    let mut verifier = TicketVerifier::new(42, TicketConfig::default());
    verifier.add_key(1, issuer.verifying_key());
    Fixture {
        client: SigningKey::from_bytes(&[1; 32]),
        server: SigningKey::from_bytes(&[2; 32]),
        issuer,
        verifier,
    }
}

fn offer(f: &Fixture, role: Role, permissions: u32) -> ClientOffer {
    let claims = JoinTicketClaims::builder(f.client.verifying_key().to_bytes(), [5; 16])
        .client_id(7)
        .audience(42)
        .valid_from(NOW_MS)
        .lifetime_ms(60_000)
        .permissions(permissions)
        .build();
    ClientOffer {
        version_min: 1,
        version_max: 3,
        schema_hash: [8; 32],
        capabilities: 0b1011 << 8,
        role,
        join_ticket: Some(f.issuer.issue(&claims)),
        expected_server_key: None,
        play_ticket: None,
        extensions: Vec::new(),
    }
}

fn policy(f: &Fixture) -> ServerPolicy<'_> {
    base_policy(&f.server)
}

fn base_policy(server: &SigningKey) -> ServerPolicy<'_> {
    ServerPolicy {
        version_min: 2,
        version_max: 5,
        schema_hash: [8; 32],
        capabilities: 0b0110 << 8,
        identity: server,
        accept_game_servers: false,
        play_ticket: None,
        dictionary_hash: None,
    }
}

const CONTRIBUTION: ServerContribution = ServerContribution {
    nonce: [4; NONCE_LEN],
    session_id: 77,
    server_tick: 1000,
    tick_rate_hz: 60,
};

fn run(
    f: &mut Fixture,
    offer: ClientOffer,
    client_exporter: Exporter,
    server_exporter: Exporter,
) -> Result<(Session, Session), Rejection> {
    run_with(f, offer, client_exporter, server_exporter, false, None)
}

fn run_with(
    f: &mut Fixture,
    offer: ClientOffer,
    client_exporter: Exporter,
    server_exporter: Exporter,
    accept_game_servers: bool,
    play_ticket: Option<&[u8]>,
) -> Result<(Session, Session), Rejection> {
    run_at(
        f,
        offer,
        (client_exporter, server_exporter),
        accept_game_servers,
        play_ticket,
        NOW_MS,
    )
}

/// [`run_with`], the client processing the accept at wall-clock time `accept_at_ms`.
fn run_at(
    f: &mut Fixture,
    offer: ClientOffer,
    (client_exporter, server_exporter): (Exporter, Exporter),
    accept_game_servers: bool,
    play_ticket: Option<&[u8]>,
    accept_at_ms: u64,
) -> Result<(Session, Session), Rejection> {
    let (awaiting, hello) =
        ClientHandshake::new(f.client.clone(), offer).start(client_exporter, [3; NONCE_LEN]);
    let policy = ServerPolicy {
        identity: &f.server,
        accept_game_servers,
        play_ticket,
        ..policy(f)
    };
    let verifier = &mut f.verifier;
    let (server_session, accept) =
        AwaitingHello::new(server_exporter).handle_hello(&policy, &hello, CONTRIBUTION, |ticket, key| {
            verifier.verify(ticket, NOW_MS, key)
        })?;
    let client_session = awaiting.handle_accept(&accept, accept_at_ms)?;
    Ok((client_session, server_session))
}

#[test]
fn both_sides_agree_on_the_negotiated_session() {
    let mut f = fixture();
    let offer = offer(&f, Role::Player, 0);
    let (client, server) = run(&mut f, offer, [0xE; 32], [0xE; 32]).unwrap();
    assert_eq!(client.version, 3, "highest common version");
    assert_eq!(client.capabilities, 0b0010 << 8, "intersection");
    assert_eq!(client.session_id, 77);
    assert_eq!(client.server_key, f.server.verifying_key().to_bytes());
    assert_eq!(server.client_key, f.client.verifying_key().to_bytes());
    assert_eq!(server.ticket.as_ref().unwrap().claims.client_id, 7);
    assert_eq!(
        Session {
            ticket: None,
            ..server
        },
        client
    );
}

#[test]
fn a_relayed_handshake_fails_because_exporters_differ() {
    let mut f = fixture();
    let offer = offer(&f, Role::Player, 0);
    let err = run(&mut f, offer, [1; 32], [2; 32]).unwrap_err();
    assert_eq!(err.reason, ReasonCode::BAD_SIGNATURE);
}

#[test]
fn version_schema_and_role_failures_have_their_own_reasons() {
    let mut f = fixture();
    let mut old = offer(&f, Role::Player, 0);
    old.version_max = 1;
    assert_eq!(
        run(&mut f, old, [0; 32], [0; 32]).unwrap_err().reason,
        ReasonCode::UNSUPPORTED_VERSION
    );

    let mut other_schema = offer(&f, Role::Player, 0);
    other_schema.schema_hash = [0; 32];
    assert_eq!(
        run(&mut f, other_schema, [0; 32], [0; 32]).unwrap_err().reason,
        ReasonCode::SCHEMA_MISMATCH
    );

    let admin = offer(&f, Role::Admin, 0);
    assert_eq!(
        run(&mut f, admin, [0; 32], [0; 32]).unwrap_err().reason,
        ReasonCode::ROLE_NOT_PERMITTED
    );
}

#[test]
fn admin_role_needs_the_permission_bit() {
    let mut f = fixture();
    let admin = offer(&f, Role::Admin, PERMISSION_ADMIN);
    let (client, _) = run(&mut f, admin, [0; 32], [0; 32]).unwrap();
    assert_eq!(client.role, Role::Admin);
}

#[test]
fn a_pinned_server_key_is_enforced() {
    let mut f = fixture();
    let mut pinned = offer(&f, Role::Player, 0);
    pinned.expected_server_key = Some([0xAA; 32]);
    assert_eq!(
        run(&mut f, pinned, [0; 32], [0; 32]).unwrap_err().reason,
        ReasonCode::SERVER_KEY_MISMATCH
    );
}

#[test]
fn a_tampered_accept_is_rejected() {
    let mut f = fixture();
    let offer = offer(&f, Role::Player, 0);
    let (awaiting, hello) = ClientHandshake::new(f.client.clone(), offer).start([0; 32], [3; NONCE_LEN]);
    let verifier = &mut f.verifier;
    let policy = ServerPolicy {
        version_min: 1,
        version_max: 5,
        schema_hash: [8; 32],
        capabilities: 0,
        identity: &f.server,
        accept_game_servers: false,
        play_ticket: None,
        dictionary_hash: None,
    };
    let (_, accept) = AwaitingHello::new([0; 32])
        .handle_hello(&policy, &hello, CONTRIBUTION, |t, k| {
            verifier.verify(t, NOW_MS, k)
        })
        .unwrap();
    let Control::Accept(mut signed) = accept else {
        unreachable!()
    };
    let mut body: AcceptBody = wire::decode(&signed.body).unwrap();
    body.permissions = u32::MAX;
    signed.body = wire::encode(&body);
    let err = awaiting
        .handle_accept(&Control::Accept(signed), NOW_MS)
        .unwrap_err();
    assert_eq!(err.reason, ReasonCode::BAD_SIGNATURE);
}

#[test]
fn ticket_errors_map_to_reason_codes() {
    let mut f = fixture();
    let mut stranger = offer(&f, Role::Player, 0);
    stranger.join_ticket.as_mut().unwrap().key_id = 99;
    assert_eq!(
        run(&mut f, stranger, [0; 32], [0; 32]).unwrap_err().reason,
        ReasonCode::TICKET_UNKNOWN_KEY
    );
    let ok = offer(&f, Role::Player, 0);
    run(&mut f, ok.clone(), [0; 32], [0; 32]).unwrap();
    assert_eq!(
        run(&mut f, ok, [0; 32], [0; 32]).unwrap_err().reason,
        ReasonCode::TICKET_REPLAYED
    );
}

#[test]
fn game_servers_join_without_a_ticket_only_where_admitted() {
    let mut f = fixture();
    let gs = ClientOffer {
        role: Role::GameServer,
        join_ticket: None,
        schema_hash: crate::wire::VS_SCHEMA_HASH,
        ..offer(&f, Role::Player, 0)
    };
    // Game servers speak the VS protocol: the game's schema hash is the wrong one for them.
    let with_game_schema = ClientOffer {
        schema_hash: offer(&f, Role::Player, 0).schema_hash,
        ..gs.clone()
    };
    assert_ne!(with_game_schema.schema_hash, crate::wire::VS_SCHEMA_HASH);
    assert_eq!(
        run_with(&mut f, with_game_schema, [0; 32], [0; 32], true, None)
            .unwrap_err()
            .reason,
        ReasonCode::SCHEMA_MISMATCH
    );
    assert_eq!(
        run(&mut f, gs.clone(), [0; 32], [0; 32]).unwrap_err().reason,
        ReasonCode::ROLE_NOT_PERMITTED
    );
    let (client, server) = run_with(&mut f, gs, [0; 32], [0; 32], true, None).unwrap();
    assert_eq!((client.role, server.role), (Role::GameServer, Role::GameServer));
    assert_eq!(server.ticket, None);
    assert_eq!(server.client_key, f.client.verifying_key().to_bytes());

    // A GameServer hello carrying a join ticket is malformed, whether or not the server
    // admits game servers: the ticket is refused, never silently ignored.
    let gs_with_ticket = ClientOffer {
        role: Role::GameServer,
        schema_hash: crate::wire::VS_SCHEMA_HASH,
        ..offer(&f, Role::Player, 0)
    };
    assert!(gs_with_ticket.join_ticket.is_some());
    for admits in [true, false] {
        let err = run_with(&mut f, gs_with_ticket.clone(), [0; 32], [0; 32], admits, None).unwrap_err();
        assert_eq!(
            err.reason,
            ReasonCode::BAD_HANDSHAKE,
            "admits game servers: {admits}"
        );
        assert!(err.detail.contains("join ticket"), "{}", err.detail);
    }

    let ticketless_player = ClientOffer {
        join_ticket: None,
        ..offer(&f, Role::Player, 0)
    };
    assert_eq!(
        run_with(&mut f, ticketless_player, [0; 32], [0; 32], true, None)
            .unwrap_err()
            .reason,
        ReasonCode::TICKET_MALFORMED
    );
}

#[test]
fn the_client_checks_the_play_ticket_it_asked_for() {
    use crate::ticket::{PlayTicket, PlayTicketClaims, VsKeys};
    let vs = SigningKey::from_bytes(&[0x51; 32]);
    let keys = VsKeys::single(3, vs.verifying_key());
    let claims_for = |gs_key: [u8; 32]| PlayTicketClaims {
        gs_id: 42,
        gs_key,
        issued_at_ms: NOW_MS,
        expires_at_ms: NOW_MS + 6_000,
        sequence: 1,
        measurement: [0; 32],
    };
    let f0 = fixture();
    let server_key = f0.server.verifying_key().to_bytes();
    let good = PlayTicket::issue(3, &vs, &claims_for(server_key)).0.to_bytes();
    let other_gs = PlayTicket::issue(3, &vs, &claims_for([1; 32])).0.to_bytes();
    let forged = PlayTicket::issue(3, &SigningKey::from_bytes(&[0x52; 32]), &claims_for(server_key))
        .0
        .to_bytes();
    let checking = |f: &Fixture| ClientOffer {
        play_ticket: Some(PlayTicketCheck {
            keys: keys.clone(),
            max_skew_ms: 1_000,
        }),
        ..offer(f, Role::Player, 0)
    };
    type Case<'a> = (Option<&'a [u8]>, u64, Result<(), ReasonCode>);
    let cases: [Case<'_>; 5] = [
        (Some(&good), NOW_MS, Ok(())),
        (None, NOW_MS, Err(ReasonCode::NOT_AUTHORISED)),
        (Some(&good), NOW_MS + 8_000, Err(ReasonCode::NOT_AUTHORISED)),
        (Some(&other_gs), NOW_MS, Err(ReasonCode::PLAY_TICKET_INVALID)),
        (Some(&forged), NOW_MS, Err(ReasonCode::PLAY_TICKET_INVALID)),
    ];
    for (presented, now, expected) in cases {
        let mut f = fixture();
        let offer = checking(&f);
        let outcome = run_at(&mut f, offer, ([0; 32], [0; 32]), false, presented, now);
        match expected {
            Ok(()) => assert_eq!(
                outcome.unwrap().0.play_ticket.as_deref(),
                Some(&claims_for(server_key))
            ),
            Err(reason) => assert_eq!(outcome.unwrap_err().reason, reason),
        }
    }
}

#[test]
fn the_play_ticket_is_checked_when_the_accept_is_processed_with_its_own_skew() {
    use crate::ticket::{PlayTicket, PlayTicketClaims, VsKeys};
    let vs = SigningKey::from_bytes(&[0x51; 32]);
    let server_key = fixture().server.verifying_key().to_bytes();
    let ticket = PlayTicket::issue(
        3,
        &vs,
        &PlayTicketClaims {
            gs_id: 42,
            gs_key: server_key,
            issued_at_ms: NOW_MS,
            expires_at_ms: NOW_MS + 6_000,
            sequence: 1,
            measurement: [0; 32],
        },
    )
    .0
    .to_bytes();
    let offer = |f: &Fixture| ClientOffer {
        play_ticket: Some(PlayTicketCheck {
            keys: VsKeys::single(3, vs.verifying_key()),
            max_skew_ms: 2_000,
        }),
        ..offer(f, Role::Player, 0)
    };
    // The offer was made at NOW_MS, when the ticket was fresh; only the accept's time counts.
    let at = |accept_at_ms: u64| {
        let mut f = fixture();
        let offer = offer(&f);
        run_at(
            &mut f,
            offer,
            ([0; 32], [0; 32]),
            false,
            Some(&ticket),
            accept_at_ms,
        )
    };
    assert!(
        at(NOW_MS + 8_000).is_ok(),
        "expiry + skew is the last valid instant"
    );
    let late = at(NOW_MS + 8_001).unwrap_err();
    assert_eq!(late.reason, ReasonCode::NOT_AUTHORISED);
    assert!(late.detail.contains("expired 1 ms ago"), "{}", late.detail);
    assert!(at(NOW_MS - 2_000).is_ok());
    assert_eq!(
        at(NOW_MS - 2_001).unwrap_err().reason,
        ReasonCode::NOT_AUTHORISED,
        "issued in the future beyond the skew"
    );
}

/// A Hello as a later client might send it: the fixed fields, a wider version range, capability
/// bits this version does not define, and extensions of kinds it does not know.
fn synthetic_hello(f: &Fixture, exporter: &Exporter, versions: (u16, u16), extensions: Vec<Extension>) -> Control {
    let Control::Hello(signed) = ClientHandshake::new(f.client.clone(), offer(f, Role::Player, 0))
        .start(*exporter, [3; NONCE_LEN])
        .1
    else {
        unreachable!()
    };
    let mut body: HelloBody = wire::decode(&signed.body).unwrap();
    (body.version_min, body.version_max) = versions;
    body.capabilities = capability::ALL | 1 << 40 | 1 << 63;
    body.extensions = extensions;
    let body = wire::encode(&body);
    let signature = Signature(f.client.sign(&hello_digest(exporter, &body)).to_bytes());
    Control::Hello(Signed { body, signature })
}

fn ext(kind: u16, data: &[u8]) -> Extension {
    Extension {
        kind: ExtensionKind(kind),
        data: data.to_vec(),
    }
}

fn answer(f: &mut Fixture, policy: &ServerPolicy<'_>, hello: &Control) -> Result<(Session, Control), Rejection> {
    let verifier = &mut f.verifier;
    AwaitingHello::new([0xE; 32]).handle_hello(policy, hello, CONTRIBUTION, |ticket, key| {
        verifier.verify(ticket, NOW_MS, key)
    })
}

#[test]
fn a_newer_hello_negotiates_down_and_its_unknown_extensions_are_skipped() {
    let mut f = fixture();
    let hello = synthetic_hello(
        &f,
        &[0xE; 32],
        (1, 9),
        vec![ext(7, b"from the future"), ext(0x4242, &[0xff; 300])],
    );
    let server = f.server.clone();
    let policy = ServerPolicy {
        version_min: 1,
        version_max: 1,
        capabilities: capability::ZSTD,
        ..base_policy(&server)
    };
    let (session, accept) = answer(&mut f, &policy, &hello).unwrap();
    assert_eq!(session.version, 1, "the highest version both speak");
    assert_eq!(session.capabilities, capability::ZSTD, "unknown bits are not granted");
    let Control::Accept(signed) = accept else {
        unreachable!()
    };
    let body: AcceptBody = wire::decode(&signed.body).unwrap();
    assert_eq!(body.version, 1);
    assert!(body.extensions.is_empty());

    // Ranges that do not meet, and only those, are UNSUPPORTED_VERSION.
    let newer_only = synthetic_hello(&f, &[0xE; 32], (2, 9), vec![ext(7, b"x")]);
    let err = answer(&mut f, &policy, &newer_only).unwrap_err();
    assert_eq!(err.reason, ReasonCode::UNSUPPORTED_VERSION);
    assert_eq!(err.detail, "client speaks 2..=9, server 1..=1");
}

#[test]
fn malformed_extension_lists_are_bad_handshakes() {
    let too_many = (1..=17).map(|kind| ext(kind, b"")).collect();
    let cases: [(Vec<Extension>, &str); 4] = [
        (vec![ext(9, b""), ext(3, b"")], "ascending"),
        (vec![ext(9, b"a"), ext(9, b"b")], "ascending"),
        (too_many, "too many"),
        (vec![ext(1, &[0; 31])], "32 bytes"),
    ];
    for (extensions, detail) in cases {
        let mut f = fixture();
        let hello = synthetic_hello(&f, &[0xE; 32], (1, 3), extensions);
        let server = f.server.clone();
        let policy = ServerPolicy {
            version_min: 1,
            ..base_policy(&server)
        };
        let err = answer(&mut f, &policy, &hello).unwrap_err();
        assert_eq!(err.reason, ReasonCode::BAD_HANDSHAKE, "{detail}");
        assert!(err.detail.contains(detail), "{} / {detail}", err.detail);
    }
}

#[test]
fn the_client_skips_unknown_accept_extensions_covered_by_the_signature() {
    let mut f = fixture();
    let player = offer(&f, Role::Player, 0);
    let (awaiting, hello) = ClientHandshake::new(f.client.clone(), player).start([0xE; 32], [3; NONCE_LEN]);
    let Control::Hello(hello_signed) = &hello else {
        unreachable!()
    };
    let server = f.server.clone();
    let policy = base_policy(&server);
    let (_, accept) = answer(&mut f, &policy, &hello).unwrap();
    let Control::Accept(signed) = accept else {
        unreachable!()
    };
    let mut body: AcceptBody = wire::decode(&signed.body).unwrap();
    body.extensions = vec![ext(0x300, b"later server hint")];
    let body = wire::encode(&body);
    let resign = |body: Vec<u8>| {
        let digest = accept_digest(&[0xE; 32], &hello_signed.body, &body);
        Control::Accept(Signed {
            signature: Signature(server.sign(&digest).to_bytes()),
            body,
        })
    };
    let session = awaiting.handle_accept(&resign(body.clone()), NOW_MS).unwrap();
    assert_eq!(session.version, 3);

    // The same extension added after signing breaks the signature.
    let (awaiting, _) =
        ClientHandshake::new(f.client.clone(), offer(&f, Role::Player, 0)).start([0xE; 32], [3; NONCE_LEN]);
    let Control::Accept(mut forged) = resign(body) else {
        unreachable!()
    };
    let mut tampered: AcceptBody = wire::decode(&forged.body).unwrap();
    tampered.extensions.push(ext(0x301, b"injected"));
    forged.body = wire::encode(&tampered);
    let err = awaiting.handle_accept(&Control::Accept(forged), NOW_MS).unwrap_err();
    assert_eq!(err.reason, ReasonCode::BAD_SIGNATURE);
}

#[test]
fn the_dictionary_capability_needs_equal_hashes() {
    let ours = [0xD1; 32];
    let zstd_both = capability::ZSTD | capability::ZSTD_DICTIONARY;
    let cases = [
        // (client offers dictionary hash, server's hash, server capabilities) → granted
        (Some(ours), Some(ours), zstd_both, zstd_both),
        (Some(ours), Some([0xD2; 32]), zstd_both, capability::ZSTD),
        (None, Some(ours), zstd_both, capability::ZSTD),
        (Some(ours), None, capability::ZSTD, capability::ZSTD),
        (Some(ours), Some(ours), capability::ZSTD_DICTIONARY, 0),
        (Some(ours), Some(ours), 0, 0),
    ];
    for (offered, server_hash, server_caps, granted) in cases {
        let mut f = fixture();
        let offer = ClientOffer {
            capabilities: zstd_both,
            extensions: offered
                .map(|hash| vec![ext(ExtensionKind::COMPRESSION_DICTIONARY.0, &hash)])
                .unwrap_or_default(),
            ..offer(&f, Role::Player, 0)
        };
        let (awaiting, hello) = ClientHandshake::new(f.client.clone(), offer).start([0xE; 32], [3; NONCE_LEN]);
        let server = f.server.clone();
        let policy = ServerPolicy {
            capabilities: server_caps,
            dictionary_hash: server_hash,
            ..base_policy(&server)
        };
        let (session, accept) = answer(&mut f, &policy, &hello).unwrap();
        assert_eq!(session.capabilities, granted, "{offered:?} {server_hash:?} {server_caps:b}");
        assert_eq!(awaiting.handle_accept(&accept, NOW_MS).unwrap().capabilities, granted);
    }
}
