//! Hostile traffic against a game server (issue 5 §3), in virtual time over real QUIC/TLS:
//! spoofed Initials, address validation with Retry (RFC 9000 §8.1.2), amplification, garbage
//! datagrams and half-open handshakes. Each attack is bounded by a limit and counted.
//!
//! Spoofed datagrams are handed to the server's endpoint directly from addresses no harness
//! node owns, so its answers to them go nowhere (and are summed here, for the amplification
//! bound, by draining the server's transmits ourselves).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::BytesMut;
use rand::{Rng, RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tickwire_core::config::Config;
use tickwire_core::testing::Net;
use tickwire_core::{ConnectOptions, Event, ReasonCode};

/// The client's first datagram (its Initial, padded to 1 200 bytes) of `n` connection
/// attempts from a throwaway client endpoint to `server`.
fn initials(net: &mut Net, server: usize, n: usize) -> Vec<Vec<u8>> {
    let client = net.add_client(Net::config(900));
    let to = net.node(server).addr;
    let now = net.now;
    let mut out = Vec::new();
    let mut buf = Vec::new();
    for _ in 0..n {
        let ticket = net.ticket_for(client);
        let endpoint = &mut net.node_mut(client).endpoint;
        endpoint
            .connect(now, to, ticket, ConnectOptions::default())
            .unwrap();
        let transmit = endpoint.poll_transmit(now, &mut buf).expect("an Initial");
        out.push(buf[..transmit.size].to_vec());
        while endpoint.poll_transmit(now, &mut buf).is_some() {}
    }
    // The throwaway client's own retransmissions never reach the server.
    net.node_mut(client).isolated = true;
    out
}

fn spoofed(i: u32) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::from(0xC633_6400 + i), 50_000))
}

/// Feeds `data` to `server` from `from`, then drains the server's transmits, returning the
/// bytes it sent to `from` (answers to other addresses are routed normally).
fn inject(net: &mut Net, server: usize, from: SocketAddr, data: &[u8]) -> usize {
    let now = net.now;
    let endpoint = &mut net.node_mut(server).endpoint;
    endpoint.handle_datagram(now, from, None, None, BytesMut::from(data));
    let mut sent = 0;
    let mut buf = Vec::new();
    while let Some(transmit) = endpoint.poll_transmit(now, &mut buf) {
        assert_eq!(transmit.destination, from, "only the spoofed source is answered");
        sent += transmit.size;
    }
    sent
}

#[test]
fn above_the_retry_threshold_spoofed_initials_get_a_smaller_retry_and_leave_no_state() {
    let mut net = Net::new(tickwire_core::testing::epoch(), 1);
    let server = net.add_server(Config {
        max_pending_handshakes: 8,
        ..Net::config(100)
    });
    let pool = initials(&mut net, server, 12);
    // Default threshold: half of max_pending_handshakes.
    assert_eq!(net.node(server).endpoint.config().retry_threshold(), 4);
    let mut answered = Vec::new();
    for (i, initial) in pool.iter().enumerate() {
        answered.push(inject(&mut net, server, spoofed(i as u32), initial));
    }
    let endpoint = &net.node(server).endpoint;
    assert_eq!(
        endpoint.handshakes_pending(),
        4,
        "four handshakes below the threshold"
    );
    assert_eq!(endpoint.connection_count(), 4);
    let stats = endpoint.endpoint_stats();
    let d = stats.datagrams;
    assert_eq!(
        (d.received, d.initials, d.accepted, d.retries_sent),
        (12, 12, 4, 8)
    );
    assert_eq!((d.refused, d.accept_failed, d.dropped), (0, 0, 0));
    for (size, initial) in answered[4..].iter().zip(&pool[4..]) {
        assert!(
            *size > 0 && *size < initial.len() / 4,
            "a Retry of {size} B for {} B",
            initial.len()
        );
    }
    // RFC 9000 §8.1: before validation the server may send at most three times what it
    // received; quinn-proto holds the handshakes below the threshold to that.
    for (size, initial) in answered[..4].iter().zip(&pool[..4]) {
        assert!(*size <= 3 * initial.len(), "{size} B for {} B", initial.len());
    }
}

#[test]
fn always_retrying_never_answers_a_spoofed_source_with_more_than_it_sent() {
    let mut net = Net::new(tickwire_core::testing::epoch(), 2);
    let server = net.add_server(Config {
        retry_above_pending_handshakes: Some(0),
        ..Net::config(100)
    });
    let pool = initials(&mut net, server, 16);
    let (mut received, mut sent) = (0, 0);
    for round in 0..4u32 {
        for (i, initial) in pool.iter().enumerate() {
            received += initial.len();
            sent += inject(&mut net, server, spoofed(round * 100 + i as u32), initial);
        }
    }
    // Spoofed sources never come back: let every timer run.
    net.run_for(Duration::from_secs(30));
    let endpoint = &net.node(server).endpoint;
    assert_eq!(endpoint.connection_count(), 0, "no state for unvalidated sources");
    assert_eq!(endpoint.datagram_stats().retries_sent, 64);
    assert!(sent * 5 < received, "{sent} B answered for {received} B received");
}

#[test]
fn a_real_client_joins_through_a_retry() {
    let mut net = Net::new(tickwire_core::testing::epoch(), 3);
    let server = net.add_server(Config {
        retry_above_pending_handshakes: Some(0),
        ..Net::config(100)
    });
    let client = net.add_client(Net::config(200));
    let (conn, _) = net.join(client, server);
    assert!(net.node(client).connected(conn));
    let d = net.node(server).endpoint.datagram_stats();
    assert_eq!(
        (d.initials, d.retries_sent, d.initials_validated, d.accepted),
        (2, 1, 1, 1)
    );
    assert_eq!(net.node(server).endpoint.sessions_live(), 1);
    assert_eq!(net.node(server).endpoint.handshakes_pending(), 0);
}

#[test]
fn an_unvalidated_address_over_its_rate_gets_a_retry_not_a_rejection_handshake() {
    let mut net = Net::new(tickwire_core::testing::epoch(), 4);
    let server = net.add_server(Config {
        limits: tickwire_core::limits::RateLimitConfig {
            handshake_burst_per_addr: 2,
            handshakes_per_addr_per_sec: 0.5,
            ..Default::default()
        },
        ..Net::config(100)
    });
    let pool = initials(&mut net, server, 6);
    let from = spoofed(7);
    for initial in &pool {
        inject(&mut net, server, from, initial);
    }
    let endpoint = &net.node(server).endpoint;
    let stats = endpoint.endpoint_stats();
    assert_eq!(endpoint.connection_count(), 2, "the burst, no more");
    assert_eq!(stats.datagrams.retries_rate_limited, 4);
    assert_eq!(stats.address_limiter.limited, 4);
    assert_eq!(
        stats.handshakes_rate_limited, 0,
        "no rejection handshake to a spoofed source"
    );
}

#[test]
fn a_validated_client_over_its_rate_still_learns_the_reason() {
    let mut net = Net::new(tickwire_core::testing::epoch(), 5);
    let server = net.add_server(Config {
        limits: tickwire_core::limits::RateLimitConfig {
            handshake_burst_per_addr: 1,
            handshakes_per_addr_per_sec: 0.5,
            ..Default::default()
        },
        ..Net::config(100)
    });
    let client = net.add_client(Net::config(200));
    net.join(client, server);
    let again = net.connect(client, server);
    let (reason, retry_after, _) = net.run_until_rejected(client, again, Duration::from_secs(5));
    assert_eq!(reason, ReasonCode::RATE_LIMITED);
    assert!(retry_after.is_some());
    let stats = net.node(server).endpoint.endpoint_stats();
    // First a Retry (the address was not validated), then the rejection handshake.
    assert_eq!(stats.datagrams.retries_rate_limited, 1);
    assert_eq!(stats.datagrams.initials_validated, 1);
    assert_eq!(stats.handshakes_rate_limited, 1);
}

#[test]
fn garbage_and_truncated_datagrams_are_dropped_without_state_or_amplification() {
    let mut net = Net::new(tickwire_core::testing::epoch(), 6);
    let server = net.add_server(Net::config(100));
    let client = net.add_client(Net::config(200));
    let (conn, _) = net.join(client, server);
    let pool = initials(&mut net, server, 4);
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    let (mut received, mut sent) = (0usize, 0usize);
    for i in 0..20_000u32 {
        let data: Vec<u8> = match i % 4 {
            0 => {
                let mut d = vec![0u8; rng.random_range(1..1500)];
                rng.fill_bytes(&mut d);
                d
            }
            1 => {
                // Truncated Initials: below 1 200 bytes QUIC drops them unread.
                let initial = &pool[i as usize % pool.len()];
                initial[..rng.random_range(1..initial.len())].to_vec()
            }
            2 => {
                // An Initial with bytes flipped: it does not decrypt.
                let mut d = pool[i as usize % pool.len()].clone();
                for _ in 0..4 {
                    let at = rng.random_range(0..d.len());
                    d[at] ^= 1 << rng.random_range(0..8);
                }
                d
            }
            _ => {
                // An Initial with an oversized Length field (the 2-byte varint after the
                // token length), pointing past the datagram.
                let mut d = pool[i as usize % pool.len()].clone();
                let dcid = usize::from(d[5]);
                let scid = usize::from(d[6 + dcid]);
                let at = 7 + dcid + scid + 1; // after the 1-byte empty token length
                d[at] = 0x7f;
                d[at + 1] = 0xff;
                d
            }
        };
        received += data.len();
        sent += inject(&mut net, server, spoofed(1_000 + i % 64), &data);
        net.run_for(Duration::from_micros(50));
    }
    net.run_for(Duration::from_secs(1));
    assert!(net.node(client).connected(conn), "the real session is unaffected");
    let endpoint = &net.node(server).endpoint;
    let d = endpoint.datagram_stats();
    assert!(d.dropped > 10_000, "{d:?}");
    assert!(sent <= received, "{sent} B answered for {received} B");
    // Only flipped-bit Initials whose header still parsed became Incoming; none decrypted.
    assert_eq!(d.accepted, 1, "{d:?}");
    assert_eq!(endpoint.connection_count(), 1);
    assert_eq!(endpoint.sessions_live(), 1);
}

#[test]
fn half_open_handshakes_are_bounded_by_the_limit_and_expire_with_the_handshake_timeout() {
    let mut net = Net::new(tickwire_core::testing::epoch(), 7);
    let server = net.add_server(Config {
        max_pending_handshakes: 16,
        retry_above_pending_handshakes: Some(usize::MAX),
        handshake_timeout_ms: 2_000,
        ..Net::config(100)
    });
    let pool = initials(&mut net, server, 24);
    for (i, initial) in pool.iter().enumerate() {
        inject(&mut net, server, spoofed(i as u32), initial);
    }
    let endpoint = &net.node(server).endpoint;
    assert_eq!(endpoint.handshakes_pending(), 16);
    assert_eq!(endpoint.endpoint_stats().connections_refused, 8);
    // The half-open handshakes end at the handshake timeout, with a reason, and are freed.
    net.run_for(Duration::from_millis(2_001));
    assert_eq!(net.node(server).endpoint.handshakes_pending(), 0);
    let timeouts = net
        .node(server)
        .events
        .iter()
        .filter(|e| {
            matches!(
                e,
                Event::Rejected {
                    reason: ReasonCode::HANDSHAKE_TIMEOUT,
                    ..
                }
            )
        })
        .count();
    assert_eq!(timeouts, 16);
    net.run_for(Duration::from_secs(30));
    assert_eq!(net.node(server).endpoint.connection_count(), 0);
    // And the slots are free again: a real client joins.
    let client = net.add_client(Net::config(200));
    net.join(client, server);
}
