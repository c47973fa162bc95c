//! Determinism is not secrecy: endpoints and verifiers built the way the runtimes build them,
//! with secrets fresh from the operating system (`tickwire_udp::os_secrets`), share nothing an
//! attacker could derive. Datagrams are carried by hand between in-memory endpoints, in virtual
//! time, so every assertion is exact.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use ed25519_dalek::SigningKey;
use sha2::{Digest, Sha256};
use tickwire_core::vs::{Verifier, VsConfig};
use tickwire_core::{
    Config, ConnHandle, ConnectOptions, Endpoint, Event, JoinTicketClaims, Secrets, TicketIssuer, WallClock,
};
use tickwire_udp::os_secrets;

const GS_ID: u64 = 42;
const KEY_ID: u32 = 1;
const START_UNIX_MS: u64 = 1_767_225_600_000;

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 1], port))
}

fn issuer() -> TicketIssuer {
    TicketIssuer::new(KEY_ID, SigningKey::from_bytes(&[5; 32]))
}

fn server(secrets: Secrets, config: Config, start: Instant) -> Endpoint {
    let wall = WallClock::new(start, START_UNIX_MS);
    let mut endpoint = Endpoint::builder(config, secrets, SigningKey::from_bytes(&[1; 32]), wall)
        .server(GS_ID, start)
        .unwrap();
    endpoint
        .server_mut()
        .expect("a server endpoint")
        .tickets()
        .add_key(KEY_ID, issuer().verifying_key());
    endpoint
}

fn client(start: Instant) -> Endpoint {
    let wall = WallClock::new(start, START_UNIX_MS);
    Endpoint::builder(
        Config::default(),
        os_secrets().unwrap(),
        SigningKey::from_bytes(&[2; 32]),
        wall,
    )
    .client()
    .unwrap()
}

fn connect(client: &mut Endpoint, now: Instant, to: SocketAddr) -> ConnHandle {
    let key = client.identity_key();
    let claims = JoinTicketClaims::builder(key, os_jti())
        .client_id(7)
        .audience(GS_ID)
        .valid_from(START_UNIX_MS)
        .lifetime_ms(60_000)
        .build();
    client
        .connect(now, to, issuer().issue(&claims), ConnectOptions::default())
        .unwrap()
}

fn os_jti() -> [u8; 16] {
    tickwire_udp::os::os_random().unwrap()[..16].try_into().unwrap()
}

/// Every datagram `endpoint` has to send at `now`.
fn drain(endpoint: &mut Endpoint, now: Instant) -> Vec<(SocketAddr, Vec<u8>)> {
    let mut out = Vec::new();
    let mut buf = Vec::new();
    while let Some(t) = endpoint.poll_transmit(now, &mut buf) {
        out.push((t.destination, buf[..t.size].to_vec()));
    }
    out
}

fn deliver(endpoint: &mut Endpoint, now: Instant, from: SocketAddr, datagrams: Vec<(SocketAddr, Vec<u8>)>) {
    for (_, bytes) in datagrams {
        endpoint.handle_datagram(now, from, None, None, BytesMut::from(&bytes[..]));
    }
}

/// Runs a client and a server on a 1 ms wire for `duration`, delivering everything; `tamper`
/// sees each client-bound datagram first.
fn run(
    client: &mut Endpoint,
    server: &mut Endpoint,
    now: &mut Instant,
    duration: Duration,
    mut tamper: impl FnMut(&[u8]),
) {
    let end = *now + duration;
    while *now < end {
        *now += Duration::from_millis(1);
        client.handle_timeout(*now);
        server.handle_timeout(*now);
        let up = drain(client, *now);
        deliver(server, *now, addr(5000), up);
        let down = drain(server, *now);
        for (_, bytes) in &down {
            tamper(bytes);
        }
        deliver(client, *now, addr(4433), down);
        while server.poll_event().is_some() {}
    }
}

/// The connection ids of the server's first flight and the Initial a client sends after a
/// Retry, from a server that always Retries.
fn retried_initial(server: &mut Endpoint, start: Instant) -> (Vec<u8>, Vec<u8>) {
    let mut c = client(start);
    connect(&mut c, start, addr(4433));
    let first = drain(&mut c, start);
    deliver(server, start, addr(5000), first);
    let retry = drain(server, start);
    assert_eq!(retry.len(), 1, "one Retry");
    let retry_bytes = retry[0].1.clone();
    deliver(&mut c, start, addr(4433), retry);
    let second = drain(&mut c, start);
    (retry_bytes, second[0].1.clone())
}

#[test]
fn a_retry_token_minted_by_one_server_is_refused_by_another() {
    let start = Instant::now();
    let always_retry = Config {
        retry_above_pending_handshakes: Some(0),
        ..Config::default()
    };
    let mut a = server(os_secrets().unwrap(), always_retry.clone(), start);
    let mut b = server(os_secrets().unwrap(), always_retry, start);
    let (retry_a, with_token) = retried_initial(&mut a, start);
    let (retry_b, _) = retried_initial(&mut b, start);
    // Retry source connection ids (RFC 9000 §17.2.5): 1 + 4 + 1 + dcid + 1 + scid.
    let scid = |retry: &[u8]| {
        let dcid_len = usize::from(retry[5]);
        let at = 6 + dcid_len;
        retry[at + 1..at + 1 + usize::from(retry[at])].to_vec()
    };
    assert_ne!(scid(&retry_a), scid(&retry_b), "connection ids differ");
    b.handle_datagram(start, addr(5000), None, None, BytesMut::from(&with_token[..]));
    assert_eq!(b.connection_count(), 0, "server B refuses A's token");
    assert_eq!(b.datagram_stats().accepted, 0);
    a.handle_datagram(start, addr(5000), None, None, BytesMut::from(&with_token[..]));
    assert_eq!(a.connection_count(), 1, "server A accepts its own token");
}

/// HMAC-SHA256 (RFC 2104).
fn hmac(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    block[..key.len()].copy_from_slice(key);
    let pad = |byte: u8| block.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

/// The stateless-reset key an endpoint seeded with 0 used before secrets were an input:
/// `SHA-256("tickwire/seed/v1" ‖ 0u64 ‖ "quic/reset-key")`.
fn seed_zero_reset_key() -> [u8; 32] {
    Sha256::new()
        .chain_update(b"tickwire/seed/v1")
        .chain_update(0u64.to_be_bytes())
        .chain_update(b"quic/reset-key")
        .finalize()
        .into()
}

/// The reset key derived from `key` as `PROTOCOL.md` and `tickwire_core::Secrets` specify:
/// HKDF-SHA256 with salt "tickwire/secrets/v1", info "quic/reset-key" (RFC 5869).
fn documented_reset_key(key: [u8; 32]) -> [u8; 32] {
    let prk = hmac(b"tickwire/secrets/v1", &key);
    hmac(&prk, b"quic/reset-key\x01")
}

/// A stateless reset (RFC 9000 §10.3) for connection id `cid` under `reset_key`: a short
/// header, unpredictable bits, and the 16-byte token HMAC(reset_key, cid).
fn forged_reset(reset_key: &[u8; 32], cid: &[u8]) -> Vec<u8> {
    let mut packet = vec![0x40 | 0x2a];
    packet.extend_from_slice(&[0x5a; 31]);
    packet.extend_from_slice(&hmac(reset_key, cid)[..16]);
    packet
}

#[test]
fn a_stateless_reset_forged_with_the_old_seed_zero_key_is_ignored() {
    let start = Instant::now();
    let key = tickwire_udp::os::os_random().unwrap();
    let mut s = server(Secrets::from_bytes(key), Config::default(), start);
    let mut c = client(start);
    let conn = connect(&mut c, start, addr(4433));
    let mut now = start;
    let mut server_cid = None;
    run(&mut c, &mut s, &mut now, Duration::from_millis(200), |_| {});
    // The client's short-header packets name the server's connection id (8 bytes).
    c.send(
        now,
        conn,
        tickwire_core::ChannelId::GAME,
        bytes::Bytes::from_static(b"ping"),
    )
    .unwrap();
    for (_, bytes) in drain(&mut c, now) {
        if bytes[0] & 0x80 == 0 {
            server_cid = Some(bytes[1..9].to_vec());
        }
    }
    let cid = server_cid.expect("a 1-RTT packet");
    assert!(matches!(c.poll_event(), Some(Event::Connected { .. })));
    let forged = forged_reset(&seed_zero_reset_key(), &cid);
    c.handle_datagram(now, addr(4433), None, None, BytesMut::from(&forged[..]));
    run(&mut c, &mut s, &mut now, Duration::from_secs(2), |_| {});
    assert!(c.session(conn).is_some(), "the session survives the forged reset");
    while let Some(event) = c.poll_event() {
        assert!(!matches!(event, Event::Disconnected { .. }), "{event:?}");
    }
    // The same forgery with the key derived as documented does end it: the test forges correctly.
    let real = forged_reset(&documented_reset_key(key), &cid);
    c.handle_datagram(now, addr(4433), None, None, BytesMut::from(&real[..]));
    run(&mut c, &mut s, &mut now, Duration::from_millis(10), |_| {});
    assert!(
        c.session(conn).is_none(),
        "a reset with the real key ends the session"
    );
}

#[test]
fn two_verification_servers_issue_different_jtis() {
    let start = Instant::now();
    let wall = WallClock::new(start, START_UNIX_MS);
    let jti = |secrets: Secrets| {
        let mut vs = Verifier::new(
            VsConfig::default(),
            secrets,
            SigningKey::from_bytes(&[9; 32]),
            wall,
        );
        vs.issue_join_ticket(start, 1, [3; 32], GS_ID, 0)
            .claims()
            .unwrap()
            .jti
    };
    assert_ne!(jti(os_secrets().unwrap()), jti(os_secrets().unwrap()));
    // The jti (and the challenge nonces, drawn from the same stream) come from the secrets:
    // the insecure deterministic mode repeats them, which is all it is for.
    assert_eq!(
        jti(Secrets::insecure_from_seed(1)),
        jti(Secrets::insecure_from_seed(1))
    );
}
