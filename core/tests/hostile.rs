//! Hostile traffic against a game server in virtual time over real QUIC/TLS:
//! spoofed Initials, address validation with Retry (RFC 9000 §8.1.2), amplification, garbage
//! datagrams and half-open handshakes; then, from an authenticated but misbehaving peer,
//! slow-loris and resource attacks: partial frames that never finish, oversized length
//! prefixes, streams past the limit or for the wrong channel, fragments of messages that
//! never complete, and a control stream that ends or carries a frame after the Accept. Each
//! attack is bounded by a limit (and, where it can hold state, a timeout) and counted.
//!
//! Spoofed datagrams are handed to the server's endpoint directly from addresses no harness
//! node owns, so its answers to them go nowhere (and are summed here, for the amplification
//! bound, by draining the server's transmits ourselves). A misbehaving peer is a harness
//! client whose connection writes raw stream bytes and datagrams (`Net::raw_*`).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::BytesMut;
use rand::{Rng, RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tickwire_core::config::Config;
use tickwire_core::testing::{Net, SilentClient};
use tickwire_core::wire::{type_byte, DatagramKind};
use tickwire_core::{config::FragmentConfig, wire::FragmentHeader};
use tickwire_core::{
    ChannelId, ConnHandle, ConnectOptions, ConnectionStats, CryptoOptions, Event, Initiator, ReasonCode,
    Secrets,
};

/// The client's first datagram (its Initial, padded to 1 200 bytes) of `n` connection
/// attempts from a throwaway client endpoint to `server`.
fn initials(net: &mut Net, server: usize, n: usize) -> Vec<Vec<u8>> {
    let client = net.add_client(Net::config());
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
        ..Net::config()
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
fn copies_of_an_initial_from_other_addresses_do_not_raise_what_its_source_is_sent() {
    // An Initial spoofed from a victim's address, then the same datagram again from elsewhere:
    // RFC 9000 §8.1 allows three times what the victim's address sent, and §9 lets a server
    // drop a handshake's packets from another address. Every timer then runs to the end.
    let mut net = Net::new(tickwire_core::testing::epoch(), 3);
    let server = net.add_server(Net::config());
    let initial = initials(&mut net, server, 1).remove(0);
    let (victim, others) = (spoofed(1), [spoofed(2), spoofed(3), spoofed(4)]);
    let mut now = net.now;
    let endpoint = &mut net.node_mut(server).endpoint;
    let mut to_victim = 0;
    let mut buf = Vec::new();
    let mut drain = |endpoint: &mut tickwire_core::Endpoint, now| {
        while let Some(transmit) = endpoint.poll_transmit(now, &mut buf) {
            if transmit.destination == victim {
                to_victim += transmit.size;
            }
        }
    };
    endpoint.handle_datagram(now, victim, None, None, BytesMut::from(&initial[..]));
    drain(endpoint, now);
    for from in others {
        endpoint.handle_datagram(now, from, None, None, BytesMut::from(&initial[..]));
        drain(endpoint, now);
    }
    for _ in 0..3_000 {
        now += Duration::from_millis(10);
        if endpoint.poll_timeout().is_some_and(|t| t <= now) {
            endpoint.handle_timeout(now);
        }
        drain(endpoint, now);
    }
    assert_eq!(
        endpoint.connection_count(),
        0,
        "the handshake timed out and drained"
    );
    assert!(
        to_victim <= 3 * initial.len(),
        "{to_victim} B sent to an address that sent {} B",
        initial.len()
    );
    let stats = endpoint.datagram_stats();
    assert_eq!(stats.dropped, 3, "the copies from elsewhere: {stats:?}");
}

#[test]
fn always_retrying_never_answers_a_spoofed_source_with_more_than_it_sent() {
    let mut net = Net::new(tickwire_core::testing::epoch(), 2);
    let server = net.add_server(Config {
        retry_above_pending_handshakes: Some(0),
        ..Net::config()
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
        ..Net::config()
    });
    let client = net.add_client(Net::config());
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
        limits: tickwire_core::config::RateLimitConfig {
            handshake_burst_per_addr: 2,
            handshakes_per_addr_per_sec: 0.5,
            ..Default::default()
        },
        ..Net::config()
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
        limits: tickwire_core::config::RateLimitConfig {
            handshake_burst_per_addr: 1,
            handshakes_per_addr_per_sec: 0.5,
            ..Default::default()
        },
        ..Net::config()
    });
    let client = net.add_client(Net::config());
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
    let server = net.add_server(Net::config());
    let client = net.add_client(Net::config());
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
        ..Net::config()
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
    let client = net.add_client(Net::config());
    net.join(client, server);
}

// ----- a misbehaving peer (authenticated, so only tickwire's own limits stand in its way) -----

/// A server with `config` and a client joined to it: `(server, client, client's conn,
/// server's conn)`.
fn session(seed: u64, config: Config) -> (Net, usize, usize, ConnHandle, ConnHandle) {
    Net::joined_pair(seed, config, Net::config())
}

fn server_stats(net: &Net, server: usize, conn: ConnHandle) -> ConnectionStats {
    net.node(server)
        .endpoint
        .stats(conn)
        .expect("the server still holds the connection")
}

/// A channel-stream frame header: the channel byte, then a length prefix declaring `len`.
fn frame_start(channel: u8, len: u32) -> Vec<u8> {
    let mut bytes = vec![channel];
    bytes.extend_from_slice(&len.to_be_bytes());
    bytes
}

fn protocol_violations(net: &Net, server: usize) -> u64 {
    let stats = net.node(server).endpoint.endpoint_stats();
    stats
        .disconnections
        .get(&ReasonCode::PROTOCOL_VIOLATION)
        .copied()
        .unwrap_or(0)
}

#[test]
fn a_partial_frame_that_never_finishes_is_closed_after_the_stall_timeout() {
    let (mut net, server, client, conn, server_conn) = session(10, Net::config());
    assert_eq!(
        net.node(server).endpoint.config().partial_frame_timeout_ms,
        10_000
    );
    let stream = net.raw_open_uni(client, conn).expect("a stream");
    let mut start = frame_start(0, 1_000);
    start.extend_from_slice(&[7; 10]);
    assert_eq!(net.raw_write(client, conn, stream, &start), 15);
    // Heartbeats keep the session alive while the frame hangs, 10 of its 1 000 bytes held.
    net.run_for(Duration::from_secs(9));
    assert!(net.node(client).connected(conn));
    let stats = server_stats(&net, server, server_conn);
    assert_eq!((stats.channel_streams, stats.partial_frame_bytes), (1, 10));
    // Every byte restarts the stall clock: a slow transfer that moves is never cut.
    assert_eq!(net.raw_write(client, conn, stream, &[7]), 1);
    let last_byte = net.elapsed();
    net.run_for(Duration::from_secs(9));
    assert!(net.node(client).connected(conn));
    assert_eq!(server_stats(&net, server, server_conn).partial_frame_bytes, 11);
    // Then nothing: closed 10 s after the last byte arrived (10 ms one-way latency).
    let (reason, detail, initiator) = net.run_until_disconnected(server, server_conn, Duration::from_secs(5));
    assert_eq!(
        (reason, initiator),
        (ReasonCode::PROTOCOL_VIOLATION, Initiator::Local)
    );
    assert_eq!(
        detail,
        "partial frame stalled on channel 0: 11 bytes held, no bytes for 10000 ms (timeout 10000 ms)"
    );
    assert_eq!(net.elapsed() - last_byte, Duration::from_millis(10_010));
    let stats = server_stats(&net, server, server_conn);
    assert_eq!(stats.partial_frame_timeouts, 1);
    assert_eq!(
        (stats.channel_streams, stats.partial_frame_bytes),
        (0, 0),
        "freed at the close"
    );
    assert_eq!(protocol_violations(&net, server), 1);
    // The peer learns why.
    let (reason, peer_detail, _) = net.run_until_disconnected(client, conn, Duration::from_secs(1));
    assert_eq!((reason, peer_detail), (ReasonCode::PROTOCOL_VIOLATION, detail));
}

#[test]
fn partial_frames_are_bounded_by_the_stream_limit_and_reset_streams_are_freed() {
    const MAX: u32 = 64 << 10;
    let (mut net, server, client, conn, server_conn) = session(
        11,
        Config {
            max_reliable_message_bytes: MAX as usize,
            ..Net::config()
        },
    );
    let channels = net.node(server).endpoint.config().channels.len();
    for round in 0..3 {
        // QUIC lets the peer open `channels.len()` streams at once (the server's
        // max_streams_uni), no more (RFC 9000 §4.6; quinn-proto refuses to open past it, and
        // closes a peer that does with STREAM_LIMIT_ERROR).
        let mut streams = Vec::new();
        while let Some(stream) = net.raw_open_uni(client, conn) {
            let mut bytes = frame_start(0, MAX);
            bytes.resize(5 + MAX as usize - 1, 1); // one byte short of the frame
            assert_eq!(net.raw_write(client, conn, stream, &bytes), bytes.len());
            streams.push(stream);
        }
        assert_eq!(streams.len(), channels, "round {round}");
        net.run_for(Duration::from_secs(1));
        let stats = server_stats(&net, server, server_conn);
        assert_eq!(stats.channel_streams, channels);
        assert_eq!(stats.partial_frame_bytes, (channels * (MAX as usize - 1)) as u64);
        // The bound: every stream the peer may hold open at once, each one frame short.
        assert!(stats.partial_frame_bytes <= (channels * (MAX as usize + 4)) as u64);
        // Resetting them frees their state, and QUIC gives the peer new streams: without
        // the reset freeing our decoders, each round would add `channels` more.
        for stream in streams {
            net.raw_reset(client, conn, stream);
        }
        net.run_for(Duration::from_millis(200));
        let stats = server_stats(&net, server, server_conn);
        assert_eq!((stats.channel_streams, stats.partial_frame_bytes), (0, 0));
        assert_eq!(stats.streams_reset, (channels * (round + 1)) as u64);
    }
    assert!(
        net.node(client).connected(conn),
        "resets alone are not a violation"
    );
    assert_eq!(server_stats(&net, server, server_conn).messages_received, 0);
}

#[test]
fn a_stream_for_a_channel_that_is_not_reliable_is_refused_and_counted() {
    for (seed, channel) in [(12, 2u8), (13, 3), (14, 200)] {
        let (mut net, server, client, conn, server_conn) = session(seed, Net::config());
        let stream = net.raw_open_uni(client, conn).expect("a stream");
        net.raw_write(client, conn, stream, &frame_start(channel, 1));
        let (reason, detail, _) = net.run_until_disconnected(server, server_conn, Duration::from_secs(1));
        assert_eq!(reason, ReasonCode::PROTOCOL_VIOLATION);
        assert_eq!(detail, format!("stream for non-reliable channel {channel}"));
        assert_eq!(server_stats(&net, server, server_conn).streams_refused, 1);
        assert_eq!(protocol_violations(&net, server), 1);
    }
}

#[test]
fn an_oversized_length_prefix_closes_at_once_without_waiting_for_the_payload() {
    for (seed, max, declared) in [(15, 64 << 10, (64 << 10) + 1), (16, 8 << 20, u32::MAX)] {
        let (mut net, server, client, conn, server_conn) = session(
            seed,
            Config {
                max_reliable_message_bytes: max,
                ..Net::config()
            },
        );
        let stream = net.raw_open_uni(client, conn).expect("a stream");
        // The prefix alone: the payload never comes, and need not.
        net.raw_write(client, conn, stream, &frame_start(0, declared));
        let sent = net.elapsed();
        let (reason, detail, _) = net.run_until_disconnected(server, server_conn, Duration::from_secs(1));
        assert_eq!(reason, ReasonCode::PROTOCOL_VIOLATION);
        assert!(detail.contains(&declared.to_string()), "{detail}");
        assert_eq!(net.elapsed() - sent, Duration::from_millis(10), "on arrival");
        let stats = server_stats(&net, server, server_conn);
        assert_eq!((stats.oversized_frames, stats.partial_frame_timeouts), (1, 0));
        assert_eq!(protocol_violations(&net, server), 1);
    }
}

/// Sends, for `rounds` × 10 ms, 4 datagrams per 10 ms (400 a second, in bursts that fit the
/// sender's 4 KiB QUIC datagram buffer), each the first fragment of a new `count`-fragment
/// message on unreliable channel 2 (never followed by the rest), and checks the server's
/// reassembly state after every round against `check`. Returns how many were sent.
fn first_fragments_only(
    net: &mut Net,
    (server, client, conn, server_conn): (usize, usize, ConnHandle, ConnHandle),
    (rounds, count, chunk): (u16, u8, usize),
    mut check: impl FnMut(&ConnectionStats),
) -> u64 {
    let mut sent = 0;
    for round in 0..rounds {
        for i in 0..4u16 {
            let header = FragmentHeader {
                message_id: round.wrapping_mul(4).wrapping_add(i),
                index: 0,
                count,
            };
            let mut datagram = vec![type_byte(DatagramKind::Fragment, 2)];
            datagram.extend_from_slice(&header.encode());
            datagram.resize(datagram.len() + chunk, 0xAA);
            assert!(net.raw_datagram(client, conn, datagram));
            sent += 1;
        }
        net.run_for(Duration::from_millis(10));
        check(&server_stats(net, server, server_conn));
    }
    sent
}

#[test]
fn first_fragments_only_forever_stay_within_the_partial_limit_and_expire() {
    let (mut net, server, client, conn, server_conn) = session(17, Net::config());
    let limits = FragmentConfig::default();
    let mut peak = 0;
    let sent = first_fragments_only(
        &mut net,
        (server, client, conn, server_conn),
        (500, 20, 1_000),
        |stats| {
            // Each partial holds room for its whole message (20 chunks of 1 000 bytes), and
            // the partial limit bites before the memory budget does.
            assert!(stats.reassembly_partials <= limits.max_partial_messages);
            assert!(stats.reassembly_buffered_bytes <= limits.max_partial_messages * 20_000);
            peak = peak.max(stats.reassembly_partials);
        },
    );
    assert_eq!(
        peak, limits.max_partial_messages,
        "the limit was reached, not passed"
    );
    let r = server_stats(&net, server, server_conn).reassembly;
    assert_eq!(r.fragments_received, sent, "no loss on this link");
    assert_eq!(r.messages_reassembled, 0);
    // Every partial beyond the limit evicted the oldest one.
    assert_eq!(r.evicted_partial_limit, sent - limits.max_partial_messages as u64);
    // The peer stops: what is left expires at the reassembly timeout.
    net.run_for(Duration::from_millis(limits.reassembly_timeout_ms + 100));
    let stats = server_stats(&net, server, server_conn);
    assert_eq!(
        (stats.reassembly_partials, stats.reassembly_buffered_bytes),
        (0, 0)
    );
    assert_eq!(
        stats.reassembly.expired_timeout,
        limits.max_partial_messages as u64
    );
    assert_eq!(stats.reassembly.fragments_dropped, sent);
    // Datagrams never close a session, and real fragmented messages still get through.
    assert!(net.node(client).connected(conn));
    let message = vec![5u8; 4_000];
    net.send(client, conn, ChannelId(2), message.clone());
    net.run_for(Duration::from_millis(100));
    assert_eq!(
        net.node(server).messages(server_conn, ChannelId(2)),
        vec![message]
    );
}

#[test]
fn first_fragments_only_are_held_to_the_memory_budget() {
    let fragment = FragmentConfig {
        max_message_bytes: 32_000,
        memory_budget_bytes: 32_000,
        max_partial_messages: 1_000,
        ..FragmentConfig::default()
    };
    let (mut net, server, client, conn, server_conn) = session(
        18,
        Config {
            fragment: fragment.clone(),
            ..Net::config()
        },
    );
    let sent = first_fragments_only(
        &mut net,
        (server, client, conn, server_conn),
        (200, 8, 1_000),
        |stats| assert!(stats.reassembly_buffered_bytes <= fragment.memory_budget_bytes),
    );
    // Each partial holds room for its whole message, 8 000 bytes: four fit the budget.
    let stats = server_stats(&net, server, server_conn);
    assert_eq!(stats.reassembly_buffered_bytes, fragment.memory_budget_bytes);
    assert_eq!(stats.reassembly.evicted_memory_budget, sent - 4);
    assert_eq!(stats.reassembly.evicted_partial_limit, 0);
    // Messages too large for the limit are refused on their first fragment.
    let before = stats.reassembly.dropped_too_large;
    first_fragments_only(
        &mut net,
        (server, client, conn, server_conn),
        (1, 40, 1_000),
        |_| {},
    );
    let after = server_stats(&net, server, server_conn)
        .reassembly
        .dropped_too_large;
    assert_eq!(after - before, 4);
}

/// An Initial-shaped datagram of 1 200 bytes: a long header (version 1, random connection ids,
/// no token, a length covering the rest) around random bytes that no key decrypts.
fn garbage_initial(rng: &mut ChaCha8Rng) -> Vec<u8> {
    let mut packet = vec![0xC0 | (rng.random::<u8>() & 0x0F)];
    packet.extend_from_slice(&1u32.to_be_bytes());
    for _ in 0..2 {
        packet.push(8);
        packet.extend((0..8).map(|_| rng.random::<u8>()));
    }
    packet.push(0); // token length
    let rest = 1_200 - packet.len() - 2;
    packet.extend_from_slice(&(0x4000 | rest as u16).to_be_bytes());
    packet.extend((0..rest).map(|_| rng.random::<u8>()));
    packet
}

#[test]
fn garbage_initials_from_a_players_address_spend_none_of_its_handshake_tokens() {
    let mut net = Net::new(tickwire_core::testing::epoch(), 21);
    let server = net.add_server(Net::config());
    let client = net.add_client(Net::config());
    let from = net.node(client).addr;
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    for _ in 0..100_000 {
        let datagram = garbage_initial(&mut rng);
        inject(&mut net, server, from, &datagram);
    }
    let stats = net.node(server).endpoint.endpoint_stats();
    assert!(
        stats.datagrams.accept_failed > 10_000,
        "most reached decryption: {:?}",
        stats.datagrams
    );
    assert_eq!(stats.address_limiter.allowed, 0, "no token spent on garbage");
    assert_eq!(net.node(server).endpoint.connection_count(), 0);
    // The player joins at once: no Retry, no RATE_LIMITED.
    net.join(client, server);
    let stats = net.node(server).endpoint.endpoint_stats();
    assert_eq!(stats.address_limiter.allowed, 1);
    assert_eq!(stats.handshakes_rate_limited, 0);
    assert_eq!(stats.datagrams.retries_rate_limited, 0);
}

/// A server endpoint, one silent (half-open) attacker and one real client on a zero-latency
/// wire, in virtual time.
struct HalfOpen {
    net: Net,
    server: usize,
    silent: SilentClient,
    silent_addr: SocketAddr,
    buf: Vec<u8>,
}

impl HalfOpen {
    fn new(seed: u64, config: Config) -> Self {
        let mut net = Net::new(tickwire_core::testing::epoch(), seed);
        let server = net.add_server(config);
        let silent = SilentClient::new(
            Secrets::insecure_from_seed(seed),
            net.wall_clock(),
            &CryptoOptions::default(),
        );
        Self {
            net,
            server,
            silent,
            silent_addr: SocketAddr::from((Ipv4Addr::new(198, 51, 100, 7), 40_000)),
            buf: Vec::new(),
        }
    }

    /// Delivers everything the attacker and the server have for each other, runs due timers,
    /// then lets the harness (and the real client) run for `step`.
    fn step(&mut self, step: Duration) {
        let server_addr = self.net.node(self.server).addr;
        for _ in 0..64 {
            let now = self.net.now;
            let mut moved = false;
            self.silent.handle_timeout(now);
            while let Some(t) = self.silent.poll_transmit(now, &mut self.buf) {
                assert_eq!(t.destination, server_addr);
                let data = BytesMut::from(&self.buf[..t.size]);
                let endpoint = &mut self.net.node_mut(self.server).endpoint;
                endpoint.handle_datagram(now, self.silent_addr, None, None, data);
                moved = true;
            }
            let endpoint = &mut self.net.node_mut(self.server).endpoint;
            endpoint.handle_timeout(now);
            let mut to_silent = Vec::new();
            let mut others = Vec::new();
            while let Some(t) = endpoint.poll_transmit(now, &mut self.buf) {
                let bytes = self.buf[..t.size].to_vec();
                if t.destination == self.silent_addr {
                    to_silent.push(bytes);
                } else {
                    others.push((t.destination, bytes));
                }
            }
            for bytes in to_silent {
                self.silent
                    .handle_datagram(now, server_addr, BytesMut::from(&bytes[..]));
                moved = true;
            }
            for (to, bytes) in others {
                // Answers to the real client travel through the harness.
                self.net.route_from(self.server, to, bytes);
            }
            if !moved {
                break;
            }
        }
        self.net.run_for(step);
    }
}

#[test]
fn a_connection_silent_after_tls_is_closed_at_the_hello_timeout() {
    let mut h = HalfOpen::new(22, Net::config());
    let server_addr = h.net.node(h.server).addr;
    h.silent.connect(h.net.now, server_addr);
    h.step(Duration::from_millis(10));
    assert_eq!(h.silent.tls_completed(), 1, "TLS completed");
    assert_eq!(h.net.node(h.server).endpoint.handshakes_pending(), 1);
    // Default Hello timeout: 5 s, inside the 10 s handshake timeout.
    for _ in 0..490 {
        h.step(Duration::from_millis(10));
    }
    assert_eq!(
        h.net.node(h.server).endpoint.handshakes_pending(),
        1,
        "still waiting at 4.9 s"
    );
    for _ in 0..20 {
        h.step(Duration::from_millis(10));
    }
    let stats = h.net.node(h.server).endpoint.endpoint_stats();
    assert_eq!(stats.handshakes_pending, 0, "closed at 5 s");
    assert_eq!(stats.rejections.get(&ReasonCode::HANDSHAKE_TIMEOUT), Some(&1));
}

#[test]
fn one_address_cannot_hold_more_than_its_share_of_pending_handshakes() {
    let mut h = HalfOpen::new(23, Net::config());
    let server_addr = h.net.node(h.server).addr;
    let client = h.net.add_client(Net::config());
    for _ in 0..40 {
        h.silent.connect(h.net.now, server_addr);
    }
    for _ in 0..5 {
        h.step(Duration::from_millis(10));
    }
    let endpoint = &h.net.node(h.server).endpoint;
    let per_addr = endpoint.config().max_pending_handshakes_per_addr;
    assert_eq!(per_addr, 8);
    assert_eq!(
        endpoint.handshakes_pending(),
        per_addr,
        "the rest were turned away"
    );
    assert_eq!(h.silent.tls_completed(), per_addr);
    let stats = endpoint.endpoint_stats();
    assert!(
        stats.datagrams.retries_rate_limited + stats.handshakes_refused_per_addr >= 32,
        "{stats:?}"
    );
    // Another address joins at once.
    let conn = h.net.connect(client, h.server);
    for _ in 0..20 {
        h.step(Duration::from_millis(10));
    }
    assert!(
        h.net.node(client).connected(conn),
        "{:?}",
        h.net.node(client).events
    );
}

#[test]
fn a_pending_table_full_of_silent_connections_makes_room_for_a_real_client() {
    let mut h = HalfOpen::new(
        24,
        Config {
            max_pending_handshakes: 8,
            retry_above_pending_handshakes: Some(64),
            ..Net::config()
        },
    );
    let server_addr = h.net.node(h.server).addr;
    let client = h.net.add_client(Net::config());
    for _ in 0..8 {
        h.silent.connect(h.net.now, server_addr);
    }
    h.step(Duration::from_millis(10));
    assert_eq!(h.silent.tls_completed(), 8, "the attacker fills the table");
    assert_eq!(h.net.node(h.server).endpoint.handshakes_pending(), 8);
    // A real client arrives: the connection silent longest makes room for it.
    let conn = h.net.connect(client, h.server);
    for _ in 0..20 {
        h.step(Duration::from_millis(10));
    }
    assert!(
        h.net.node(client).connected(conn),
        "{:?}",
        h.net.node(client).events
    );
    let stats = h.net.node(h.server).endpoint.endpoint_stats();
    assert_eq!(stats.handshakes_evicted_no_hello, 1, "{stats:?}");
    assert_eq!(stats.connections_refused, 0);
}

#[test]
fn an_ended_control_stream_leaves_the_session_up_and_a_late_control_frame_closes_it() {
    use tickwire_core::wire::{encode, encode_frame, Challenge, Control, BINDING_CERTIFICATE};

    let (mut net, server, client, conn, server_conn) = session(15, Net::config());
    // Both ends end their side of the control stream (client-initiated bidirectional stream 0).
    net.raw_reset(client, conn, 0);
    net.raw_reset(server, server_conn, 0);
    net.run_for(Duration::from_secs(3));
    net.send(client, conn, ChannelId::GAME, &b"still here"[..]);
    net.send(server, server_conn, ChannelId::GAME, &b"so am I"[..]);
    net.run_for(Duration::from_millis(300));
    assert_eq!(
        net.node(server).messages(server_conn, ChannelId::GAME),
        vec![&b"still here"[..]]
    );
    assert_eq!(
        net.node(client).messages(conn, ChannelId::GAME),
        vec![&b"so am I"[..]]
    );

    // On a fresh session, a well-formed control frame after the Accept is a violation.
    let (mut net, server, client, conn, server_conn) = session(16, Net::config());
    let late = Control::Challenge(Challenge {
        binding: BINDING_CERTIFICATE,
        cert_hash: [0; 32],
        nonce: [0; 24],
    });
    net.raw_write(client, conn, 0, &encode_frame(&encode(&late)));
    let (reason, detail, _) = net.run_until_disconnected(server, server_conn, Duration::from_secs(1));
    assert_eq!(reason, ReasonCode::PROTOCOL_VIOLATION);
    assert_eq!(detail, "unexpected control message");
}
