//! Datagram bundles (`PROTOCOL.md` §5.7): small datagram-channel messages sent between two
//! transmits share one QUIC datagram when both peers offer the `BUNDLE` capability, arrive
//! whole and in order, and are never sent to a peer that did not offer it; a bundle a session
//! did not negotiate, or a malformed one, is dropped whole and counted.

use std::time::Duration;

use bytes::Bytes;
use tickwire_core::config::Config;
use tickwire_core::handshake::capability;
use tickwire_core::stats::ConnectionStats;
use tickwire_core::testing::Net;
use tickwire_core::{Channel, ChannelId, ConnHandle, SendOptions};

fn stats(net: &Net, node: usize, conn: ConnHandle) -> ConnectionStats {
    net.node(node)
        .endpoint
        .stats(conn)
        .expect("the connection is live")
}

/// The capabilities the server granted the session.
fn granted(net: &Net, server: usize, server_conn: ConnHandle) -> u64 {
    net.node(server)
        .endpoint
        .session(server_conn)
        .expect("the session is live")
        .capabilities
}

/// `count` messages of `len` bytes on `channel` from the client, all before one transmit;
/// returns them.
fn send_burst(
    net: &mut Net,
    client: usize,
    conn: ConnHandle,
    channel: ChannelId,
    count: u8,
    len: usize,
) -> Vec<Bytes> {
    let now = net.now;
    let sent: Vec<Bytes> = (0..count).map(|i| Bytes::from(vec![i; len])).collect();
    for message in &sent {
        net.node_mut(client)
            .endpoint
            .send(now, conn, channel, message.clone())
            .expect("the client may send");
    }
    net.drain(client);
    sent
}

/// Runs `net` until `server` has received as many messages on the unreliable channel as
/// `sent` holds (at most 1 s), then checks they are `sent`, in order.
fn assert_arrive(net: &mut Net, server: usize, server_conn: ConnHandle, sent: &[Bytes]) {
    net.run_until(Duration::from_secs(1), |net| {
        net.node(server)
            .messages(server_conn, ChannelId::UNRELIABLE)
            .len()
            == sent.len()
    });
    assert_eq!(
        net.node(server).messages(server_conn, ChannelId::UNRELIABLE),
        sent
    );
}

#[test]
fn a_burst_of_small_messages_travels_in_one_bundle_and_arrives_whole_and_in_order() {
    let (mut net, server, client, conn, server_conn) = Net::joined_pair(1, Net::config(), Net::config());
    assert_ne!(
        granted(&net, server, server_conn) & capability::BUNDLE,
        0,
        "both sides offer bundles by default"
    );

    let before = stats(&net, client, conn);
    let unreliable = send_burst(&mut net, client, conn, ChannelId::UNRELIABLE, 20, 20);
    let latest = send_burst(&mut net, client, conn, ChannelId::LATEST, 3, 10);
    net.run_until(Duration::from_secs(1), |net| {
        net.node(server).messages(server_conn, ChannelId::LATEST).len() == 3
    });

    assert_eq!(
        net.node(server).messages(server_conn, ChannelId::UNRELIABLE),
        unreliable
    );
    assert_eq!(net.node(server).messages(server_conn, ChannelId::LATEST), latest);
    let after = stats(&net, client, conn);
    assert_eq!(
        after.datagram_bundles_sent - before.datagram_bundles_sent,
        2,
        "one per burst"
    );
    assert_eq!(stats(&net, server, server_conn).datagrams_dropped_malformed, 0);
}

#[test]
fn a_full_bundle_is_closed_and_the_rest_go_in_the_next() {
    let (mut net, server, client, conn, server_conn) = Net::joined_pair(2, Net::config(), Net::config());
    // 100 entries of 1 + 1 + 300 bytes: four fit in a datagram of about 1 200 bytes.
    let sent = send_burst(&mut net, client, conn, ChannelId::UNRELIABLE, 100, 300);
    assert_arrive(&mut net, server, server_conn, &sent);
    let bundles = stats(&net, client, conn).datagram_bundles_sent;
    assert!((25..=50).contains(&bundles), "{bundles} bundles for 100 messages");
}

#[test]
fn a_lone_message_goes_out_as_a_plain_datagram() {
    let (mut net, server, client, conn, server_conn) = Net::joined_pair(3, Net::config(), Net::config());
    for round in 0..5u8 {
        net.send(client, conn, ChannelId::UNRELIABLE, vec![round; 30]);
        net.run_for(Duration::from_millis(20));
    }
    assert_eq!(
        net.node(server)
            .messages(server_conn, ChannelId::UNRELIABLE)
            .len(),
        5
    );
    assert_eq!(stats(&net, client, conn).datagram_bundles_sent, 0);
}

#[test]
fn a_side_that_does_not_offer_bundles_never_receives_one() {
    for (seed, server_bundles, client_bundles) in [(4, false, true), (5, true, false)] {
        let offering = |bundle_datagrams| Config {
            bundle_datagrams,
            ..Net::config()
        };
        let (mut net, server, client, conn, server_conn) =
            Net::joined_pair(seed, offering(server_bundles), offering(client_bundles));
        let granted = net.node(client).endpoint.session(conn).unwrap().capabilities;
        assert_eq!(granted & capability::BUNDLE, 0);

        let sent = send_burst(&mut net, client, conn, ChannelId::UNRELIABLE, 20, 20);
        assert_arrive(&mut net, server, server_conn, &sent);
        assert_eq!(stats(&net, client, conn).datagram_bundles_sent, 0);
    }
}

/// Unreliable on channel 2, message `hi`, then Sequenced on channel 3, seq 7, message `yo`.
const BUNDLE: [u8; 11] = [0xc0, 0x03, 0x42, 0x68, 0x69, 0x05, 0x63, 0x00, 0x07, 0x79, 0x6f];

#[test]
fn a_peer_bundle_is_read_entry_by_entry_and_a_malformed_one_is_dropped_whole() {
    let (mut net, server, client, conn, server_conn) = Net::joined_pair(6, Net::config(), Net::config());
    for malformed in [
        &[0xc0][..],
        &[0xc0, 0x03, 0x42, 0x68],
        &[0xc0, 0x02, 0xc0, 0x00],
        &[0xc0, 0x00],
    ] {
        assert!(net.raw_datagram(client, conn, Bytes::copy_from_slice(malformed)));
    }
    assert!(net.raw_datagram(client, conn, Bytes::from_static(&BUNDLE)));
    // An unreliable entry on the sequenced channel 3 (`x`), dropped and counted alone, then
    // one on channel 2 (`ok`).
    let wrong_channel = [0xc0, 0x02, 0x43, 0x78, 0x03, 0x42, 0x6f, 0x6b];
    assert!(net.raw_datagram(client, conn, Bytes::copy_from_slice(&wrong_channel)));
    net.run_until(Duration::from_secs(1), |net| {
        let node = net.node(server);
        !node.messages(server_conn, ChannelId::LATEST).is_empty()
            && node.messages(server_conn, ChannelId::UNRELIABLE).len() == 2
    });
    let node = net.node(server);
    let mut unreliable = node.messages(server_conn, ChannelId::UNRELIABLE);
    unreliable.sort();
    assert_eq!(unreliable, [Bytes::from_static(b"hi"), Bytes::from_static(b"ok")]);
    assert_eq!(
        node.messages(server_conn, ChannelId::LATEST),
        [Bytes::from_static(b"yo")]
    );
    assert_eq!(stats(&net, server, server_conn).datagrams_dropped_malformed, 5);
    assert!(
        net.node(server).closure_of(server_conn).is_none(),
        "datagrams never close a session"
    );
}

#[test]
fn a_bundle_the_session_did_not_negotiate_is_dropped_and_counted() {
    let server_config = Config {
        bundle_datagrams: false,
        ..Net::config()
    };
    let (mut net, server, client, conn, server_conn) = Net::joined_pair(7, server_config, Net::config());
    assert!(net.raw_datagram(client, conn, Bytes::from_static(&BUNDLE)));
    net.send(client, conn, ChannelId::UNRELIABLE, &b"after"[..]);
    net.run_until(Duration::from_secs(1), |net| {
        !net.node(server)
            .messages(server_conn, ChannelId::UNRELIABLE)
            .is_empty()
    });
    net.run_for(Duration::from_millis(50));
    let node = net.node(server);
    assert_eq!(
        node.messages(server_conn, ChannelId::UNRELIABLE),
        [Bytes::from_static(b"after")]
    );
    assert!(node.messages(server_conn, ChannelId::LATEST).is_empty());
    assert_eq!(stats(&net, server, server_conn).datagrams_dropped_malformed, 1);
}

#[test]
fn messages_that_cannot_join_the_open_bundle_directly_keep_their_order_form_and_counts() {
    // Channel 4 is a compressed unreliable channel; a compressed message goes through the
    // encoder even while a bundle is open, as do a message with a deadline, a sequenced one and
    // one that needs fragments.
    let mut config = Net::config();
    config.channels.push(Channel {
        compress: true,
        ..Channel::unreliable()
    });
    config.compression.enabled = true;
    let compressed = ChannelId(4);
    let (mut net, server, client, conn, server_conn) = Net::joined_pair(4, config.clone(), config);
    assert_ne!(
        granted(&net, server, server_conn) & capability::ZSTD,
        0,
        "both sides offer zstd"
    );

    let now = net.now;
    let mut sent: Vec<(ChannelId, Bytes)> = Vec::new();
    for i in 0..40u8 {
        let (channel, message, options) = match i % 5 {
            0 | 1 => (
                ChannelId::UNRELIABLE,
                vec![i; 1 + usize::from(i)],
                SendOptions::default(),
            ),
            2 => (compressed, vec![i; 200], SendOptions::default()),
            3 => (
                ChannelId::UNRELIABLE,
                vec![i; 12],
                SendOptions {
                    deadline: Some(now + Duration::from_secs(1)),
                },
            ),
            _ if i == 39 => (ChannelId::UNRELIABLE, vec![i; 3_000], SendOptions::default()),
            _ => (ChannelId::LATEST, vec![i; 8], SendOptions::default()),
        };
        let message = Bytes::from(message);
        net.node_mut(client)
            .endpoint
            .send_with(now, conn, channel, message.clone(), options)
            .expect("the client may send");
        sent.push((channel, message));
    }
    net.drain(client);
    let expect = |channel: ChannelId| -> Vec<Bytes> {
        sent.iter()
            .filter(|(c, _)| *c == channel)
            .map(|(_, m)| m.clone())
            .collect()
    };
    net.run_until(Duration::from_secs(1), |net| {
        net.node(server)
            .messages(server_conn, ChannelId::UNRELIABLE)
            .len()
            == expect(ChannelId::UNRELIABLE).len()
            && net.node(server).messages(server_conn, compressed).len() == 8
    });
    for channel in [ChannelId::UNRELIABLE, compressed, ChannelId::LATEST] {
        assert_eq!(
            net.node(server).messages(server_conn, channel),
            expect(channel),
            "channel {channel:?}"
        );
    }
    let after = stats(&net, client, conn);
    assert_eq!(after.messages_sent, 40);
    let bytes: usize = sent.iter().map(|(_, m)| m.len()).sum();
    assert_eq!(after.message_bytes_sent, bytes as u64);
    assert_eq!(after.messages_fragmented, 1);
    assert_eq!(after.compression.messages_sent, 8, "{:?}", after.compression);
    assert!(after.datagram_bundles_sent >= 1);
    assert_eq!(stats(&net, server, server_conn).datagrams_dropped_malformed, 0);
}

#[test]
fn the_smallest_transmit_chunk_still_carries_bursts_of_large_and_small_messages() {
    let config = Config {
        transmit_chunk_bytes: 1 << 10,
        ..Net::config()
    };
    let (mut net, server, client, conn, server_conn) = Net::joined_pair(8, Net::config(), config);
    let mut sent = send_burst(&mut net, client, conn, ChannelId::UNRELIABLE, 20, 1_100);
    sent.extend(send_burst(&mut net, client, conn, ChannelId::UNRELIABLE, 50, 20));
    assert_arrive(&mut net, server, server_conn, &sent);
}
