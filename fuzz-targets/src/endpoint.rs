//! The whole engine: a game-server [`Endpoint`] fed datagrams from several addresses.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use tickwire_core::wire::ReasonCode;
use tickwire_core::{Config, Endpoint, Secrets, WallClock};

use crate::fixtures::{gs_identity, signing_key, GS_ID, KEY_ID, MAX_DRAIN, NOW_MS, SCHEMA};
use crate::input::{base_instant, ms, Input};

/// Source addresses of the endpoint target's datagrams.
fn source_address(index: u8) -> SocketAddr {
    match index % 8 {
        i @ 0..=4 => SocketAddr::from(([198, 51, 100, 1 + i], 40_000 + u16::from(i))),
        5 => SocketAddr::from(([198, 51, 100, 1], 40_001)),
        6 => SocketAddr::from(([0x2001u16, 0xdb8, 0, 0, 0, 0, 0, 7], 50_000)),
        _ => SocketAddr::from(([0, 0, 0, 0], 0)),
    }
}

fn put_varint(out: &mut Vec<u8>, value: usize) {
    match value {
        0..=63 => out.push(value as u8),
        64..=16_383 => out.extend_from_slice(&(0x4000 | value as u16).to_be_bytes()),
        _ => out.extend_from_slice(&(0x8000_0000 | value as u32).to_be_bytes()),
    }
}

/// The QUIC v1 Initial suite (RFC 9001 §5.2: AES-128-GCM, HKDF-SHA256).
pub(crate) fn initial_suite() -> rustls::quic::Suite {
    rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256
        .tls13()
        .and_then(|suite| suite.quic_suite())
        .expect("AES-128-GCM has a QUIC suite")
}

/// A client Initial packet (RFC 9000 §17.2.2) carrying `frames`, protected with the Initial
/// keys of `dcid` (RFC 9001 §5) and padded with PADDING frames to a 1 200-byte datagram: what
/// lets the fuzzer reach the server's TLS and transport-parameter parsing.
pub(crate) fn seal_initial(dcid: &[u8], scid: &[u8], token: &[u8], pn: u32, frames: &[u8]) -> Vec<u8> {
    let keys = initial_suite().keys(dcid, rustls::Side::Client, rustls::quic::Version::V1);
    let mut header = vec![0xC3]; // long header, Initial, 4-byte packet number
    header.extend_from_slice(&1u32.to_be_bytes());
    header.push(dcid.len() as u8);
    header.extend_from_slice(dcid);
    header.push(scid.len() as u8);
    header.extend_from_slice(scid);
    put_varint(&mut header, token.len());
    header.extend_from_slice(token);
    let mut payload = frames.to_vec();
    let overhead = header.len() + 2 + 4 + 16;
    payload.resize(payload.len().max(1_200usize.saturating_sub(overhead)), 0);
    let length = 4 + payload.len() + 16;
    header.extend_from_slice(&(0x4000 | length as u16).to_be_bytes());
    let pn_offset = header.len();
    header.extend_from_slice(&pn.to_be_bytes());
    let tag = keys
        .local
        .packet
        .encrypt_in_place(u64::from(pn), &header, &mut payload)
        .expect("an Initial payload fits the AEAD");
    let mut packet = header;
    packet.extend_from_slice(&payload);
    packet.extend_from_slice(tag.as_ref());
    let sample: [u8; 16] = packet[pn_offset + 4..pn_offset + 20]
        .try_into()
        .expect("16 bytes");
    let (first, rest) = packet.split_at_mut(1);
    keys.local
        .header
        .encrypt_in_place(&sample, &mut first[0], &mut rest[pn_offset - 1..pn_offset + 3])
        .expect("the sample is 16 bytes");
    packet
}

/// A game server for the endpoint target (fixed insecure secrets), small limits so the fuzzer reaches them.
fn endpoint_config(limits: u8, flags: u8) -> Config {
    let mut config = Config {
        schema_hash: SCHEMA,
        max_sessions: 1 + usize::from(limits & 3),
        max_pending_handshakes: 1 + usize::from((limits >> 2) & 3),
        retry_above_pending_handshakes: [Some(64), None, Some(0), Some(1)][usize::from((limits >> 4) & 3)],
        accept_game_servers: flags & 1 != 0,
        handshake_timeout_ms: 2_000,
        ..Config::default()
    };
    if flags & 4 != 0 {
        config.limits.max_tracked_addrs = 2;
    }
    if flags & 8 != 0 {
        config.limits.handshake_burst_per_addr = 1;
        config.limits.handshakes_per_addr_per_sec = 0.5;
    }
    config
}

/// A whole game-server [`Endpoint`] (real config, fixed seed, a trusted ticket key) fed
/// datagrams from eight source addresses at fuzz-chosen monotonic times.
///
/// Input: `limits: u8` (`max_sessions = 1 + (l & 3)`, `max_pending_handshakes = 1 + (l >> 2
/// & 3)`, the Retry threshold from `l >> 4 & 3`: 64, unset, 0, 1), `flags: u8` (`& 1` admit
/// game servers, `& 2` admissions paused, `& 4` two tracked addresses, `& 8` one handshake per
/// address per 2 s), then up to 64 operations, each an opcode byte `% 8` and its fields:
/// - 0 `src: u8, len: u16, bytes`: a raw datagram (`len % 4096` bytes);
/// - 1 `src, dcid_len: u8, dcid, scid_len: u8, scid, pn: u32, token_len: u8, token, len: u16,
///   frames`: a client Initial sealed with the real Initial keys of `dcid` (`seal_initial`;
///   connection ids `% 21` bytes, frames `% 4096`);
/// - 2 `ms: u16`: time passes; 3 `secs: u16`: time jumps (`% 3600`);
/// - 4 `command: u8`: pause or resume admissions, shut down, revalidate, close client sessions,
///   step the wall clock;
/// - 5 `src`: the previous datagram again, from `src`; 6: `handle_timeout`; 7 `at: u16, xor:
///   u8`: the previous datagram with one byte changed.
///
/// After each operation the endpoint's timers run and its transmits, events and ticks are
/// drained (at most 1 000 each). Asserts: no panic; handshakes in progress at most
/// `max_pending_handshakes`, live sessions at most `max_sessions`, connections (draining ones
/// included) at most the Initials accepted and at most `max_sessions + max_pending_handshakes`;
/// queued endpoint responses within their cap;
/// transmits go only to addresses that sent something, fit 1 500 bytes (or, for stateless
/// resets, the largest datagram received from that address), and never total more than three
/// times the bytes received from an address (RFC 9000 §8.1: no address is validated here);
/// the datagram counters partition the datagrams received and the Initials.
pub fn endpoint(data: &[u8]) {
    let mut input = Input::new(data);
    let (limits, flags) = (input.u8(), input.u8());
    let config = endpoint_config(limits, flags);
    let start = base_instant();
    let wall = WallClock::new(start, NOW_MS);
    let mut ep = Endpoint::builder(
        config.clone(),
        Secrets::insecure_from_seed(0xF0),
        gs_identity(),
        wall,
    )
    .server(GS_ID, start)
    .expect("the config is valid");
    if let Some(server) = ep.server_mut() {
        let tickets = server.tickets();
        tickets.add_key(KEY_ID, signing_key().verifying_key());
    }
    if flags & 2 != 0 {
        ep.server_mut().expect("a server endpoint").pause_admissions(
            ReasonCode::NOT_AUTHORISED,
            "fuzz",
            None,
        );
    }
    let mut now = start;
    let mut last: Vec<u8> = Vec::new();
    let mut received: BTreeMap<SocketAddr, u64> = BTreeMap::new();
    let mut sent: BTreeMap<SocketAddr, u64> = BTreeMap::new();
    let mut largest: BTreeMap<SocketAddr, usize> = BTreeMap::new();
    let mut buf = Vec::new();
    for _ in 0..64 {
        if input.is_empty() {
            break;
        }
        let mut datagram: Option<(SocketAddr, Vec<u8>)> = None;
        match input.u8() % 8 {
            0 => {
                let src = source_address(input.u8());
                datagram = Some((src, input.sized_bytes(4096).to_vec()));
            }
            1 => {
                let src = source_address(input.u8());
                let dcid_len = usize::from(input.u8() % 21);
                let dcid = input.bytes(dcid_len).to_vec();
                let scid_len = usize::from(input.u8() % 21);
                let scid = input.bytes(scid_len).to_vec();
                let pn = input.u32();
                let token_len = usize::from(input.u8());
                let token = input.bytes(token_len).to_vec();
                let frames = input.sized_bytes(4096).to_vec();
                datagram = Some((src, seal_initial(&dcid, &scid, &token, pn, &frames)));
            }
            2 => now += ms(u64::from(input.u16())),
            3 => now += Duration::from_secs(u64::from(input.u16() % 3600)),
            4 => match input.u8() % 6 {
                0 => ep.server_mut().expect("a server endpoint").pause_admissions(
                    ReasonCode::SERVER_BUSY,
                    "fuzz",
                    Some(ms(500)),
                ),
                1 => ep.server_mut().expect("a server endpoint").resume_admissions(),
                2 => ep
                    .server_mut()
                    .expect("a server endpoint")
                    .shutdown(now, "fuzz", Some(ms(1_000))),
                3 => ep.server_mut().expect("a server endpoint").revalidate(now),
                4 => {
                    ep.server_mut().expect("a server endpoint").close_client_sessions(
                        now,
                        ReasonCode::NORMAL,
                        "fuzz",
                    );
                }
                _ => ep.set_wall_clock(wall.skewed(-60_000)),
            },
            5 => datagram = Some((source_address(input.u8()), last.clone())),
            6 => {}
            _ => {
                let (at, xor) = (usize::from(input.u16()), input.u8());
                let mut bytes = last.clone();
                if !bytes.is_empty() {
                    let i = at % bytes.len();
                    bytes[i] ^= xor;
                }
                datagram = Some((source_address(input.u8()), bytes));
            }
        }
        if let Some((src, bytes)) = datagram {
            *received.entry(src).or_default() += bytes.len() as u64;
            let max = largest.entry(src).or_default();
            *max = (*max).max(bytes.len());
            ep.handle_datagram(now, src, None, None, BytesMut::from(&bytes[..]));
            last = bytes;
        }
        if ep.poll_timeout().is_some_and(|t| t <= now) {
            ep.handle_timeout(now);
        }
        for _ in 0..MAX_DRAIN {
            let Some(transmit) = ep.poll_transmit(now, &mut buf) else {
                break;
            };
            let to = transmit.destination;
            assert!(
                received.contains_key(&to),
                "a datagram to {to}, which sent nothing"
            );
            // Stateless resets may be as large as the datagram that caused them, less one byte
            // (RFC 9000 §10.3); everything else fits a 1 500-byte path.
            assert!(
                transmit.size <= buf.len() && transmit.size <= largest[&to].max(1_500),
                "a {}-byte datagram",
                transmit.size
            );
            let total = sent.entry(to).or_default();
            *total += transmit.size as u64;
            assert!(
                *total <= 3 * received[&to],
                "{total} bytes sent to {to}, which sent {} (RFC 9000 §8.1)",
                received[&to]
            );
        }
        for _ in 0..MAX_DRAIN {
            if ep.poll_event().is_none() {
                break;
            }
        }
        for _ in 0..MAX_DRAIN {
            if ep.poll_tick(now).is_none() {
                break;
            }
        }
        let stats = ep.endpoint_stats();
        let d = stats.datagrams;
        assert!(
            stats.handshakes_pending <= config.max_pending_handshakes,
            "{stats:?}"
        );
        assert!(stats.sessions_live <= config.max_sessions, "{stats:?}");
        assert!(ep.connection_count() as u64 <= d.accepted, "{stats:?}");
        assert!(
            ep.connection_count() <= config.max_sessions + config.max_pending_handshakes,
            "draining connections must count against the table's bound: {stats:?}"
        );
        let (queued, cap) = ep.queued_responses();
        assert!(queued <= cap, "{queued} responses queued, cap {cap}");
        assert!(stats.addresses_tracked <= config.limits.max_tracked_addrs.max(1));
        assert_eq!(
            d.received,
            d.to_connections + d.dropped + d.stateless_responses + d.initials,
            "{d:?}"
        );
        assert_eq!(
            d.initials,
            d.retries_sent + d.refused + d.accepted + d.accept_failed,
            "{d:?}"
        );
        assert!(
            d.initials_validated <= d.initials
                && d.retries_rate_limited + d.retries_before_rejection <= d.retries_sent
        );
        assert_eq!(stats.connections_refused, d.refused);
    }
}
