//! zstd compression of marked channels (`PROTOCOL.md` §7.3), end to end over real QUIC/TLS in
//! virtual time: negotiation with and without the peer's support, the shared dictionary, the
//! stats, and hostile frames (bombs, unknown flags) on datagram and reliable channels.

use std::sync::Arc;
use std::time::Duration;

use tickwire_core::config::CompressionConfig;
use tickwire_core::testing::Net;
use tickwire_core::wire::{capability, encode_frame, type_byte, DatagramKind};
use tickwire_core::{ChannelId, Config, ConnHandle, Event, ReasonCode};

/// A configuration compressing the GAME (reliable) and UNRELIABLE channels.
fn compressing(dictionary: Option<&[u8]>) -> Config {
    let mut config = Net::config();
    for channel in [ChannelId::GAME, ChannelId::UNRELIABLE] {
        config.channels[channel.0 as usize].compress = true;
    }
    config.compression = CompressionConfig {
        enabled: true,
        max_decompressed_bytes: 64 << 10,
        dictionary: dictionary.map(Arc::from),
        ..CompressionConfig::default()
    };
    config
}

/// The same channel table (both peers must agree on it), without offering zstd.
fn not_compressing() -> Config {
    let mut config = compressing(None);
    config.compression.enabled = false;
    config
}

/// A snapshot that compresses the way game state does: entity records with small fields.
fn snapshot(entities: u32) -> Vec<u8> {
    (0..entities)
        .flat_map(|id| {
            let mut record = [0u8; 16];
            record[..4].copy_from_slice(&id.to_le_bytes());
            record[4..6].copy_from_slice(&((id * 37) as u16).to_le_bytes());
            record[8] = (id % 5) as u8;
            record[10] = 100 - (id % 7) as u8 * 10;
            record
        })
        .collect()
}

struct Session {
    net: Net,
    server: usize,
    client: usize,
    conn: ConnHandle,
    server_conn: ConnHandle,
    capabilities: u64,
}

impl Session {
    /// The client sends `message` on `up` and the server sends it back on `down`; both arrive
    /// intact within 200 ms.
    fn exchange(&mut self, up: ChannelId, down: ChannelId, message: &[u8]) {
        let (net, server, client) = (&mut self.net, self.server, self.client);
        net.send(client, self.conn, up, message.to_vec());
        net.send(server, self.server_conn, down, message.to_vec());
        net.run_for(Duration::from_millis(200));
        assert_eq!(
            net.node(server).messages(self.server_conn, up),
            vec![message.to_vec()]
        );
        assert_eq!(net.node(client).messages(self.conn, down), vec![message.to_vec()]);
    }
}

fn session(seed: u64, server_config: Config, client_config: Config) -> Session {
    let mut net = Net::new(tickwire_core::testing::epoch(), seed);
    let server = net.add_server(server_config);
    let client = net.add_client(client_config);
    let conn = net.connect(client, server);
    assert!(net.run_until(Duration::from_secs(2), |n| n.node(client).connected(conn)));
    let events = net.node_mut(server).take_events();
    let Some(Event::Connected {
        conn: server_conn,
        session,
    }) = events.first().cloned()
    else {
        panic!("server saw {events:?}");
    };
    Session {
        net,
        server,
        client,
        conn,
        server_conn,
        capabilities: session.capabilities,
    }
}

#[test]
fn compressed_channels_carry_smaller_messages_and_count_the_ratio() {
    let Session {
        mut net,
        server,
        client,
        conn,
        server_conn,
        capabilities,
    } = session(1, compressing(None), compressing(None));
    assert_eq!(capabilities, capability::ZSTD | capability::BUNDLE);

    let big = snapshot(1_000); // 16 000 bytes
    net.send(server, server_conn, ChannelId::UNRELIABLE, big.clone());
    net.send(server, server_conn, ChannelId::GAME, big.clone());
    net.send(server, server_conn, ChannelId::GAME, &b"short"[..]);
    net.send(server, server_conn, ChannelId::LATEST, big.clone()); // not a compressed channel
    net.run_for(Duration::from_millis(200));

    let c = net.node(client);
    assert_eq!(c.messages(conn, ChannelId::UNRELIABLE), vec![big.clone()]);
    assert_eq!(
        c.messages(conn, ChannelId::GAME),
        vec![big.clone(), b"short".to_vec()]
    );
    assert_eq!(c.messages(conn, ChannelId::LATEST), vec![big.clone()]);

    let sent = net.node(server).endpoint.stats(server_conn).unwrap().compression;
    assert_eq!(sent.messages_sent, 3);
    assert_eq!(sent.uncompressed_bytes_sent, 2 * 16_000 + 5);
    assert!(sent.ratio_sent() > 3.0, "ratio {}", sent.ratio_sent());
    let received = net.node(client).endpoint.stats(conn).unwrap();
    assert_eq!(received.compression.messages_received, 3);
    assert_eq!(received.compression.uncompressed_bytes_received, 2 * 16_000 + 5);
    assert_eq!(
        received.compression.compressed_bytes_received,
        sent.compressed_bytes_sent
    );
    // The compressed datagram message needs fewer fragments than the uncompressed one.
    let fragments = received.reassembly.fragments_received;
    let uncompressed_fragments = 16_000 / 1_100;
    assert!(fragments < 2 * uncompressed_fragments, "{fragments} fragments");
    assert_eq!(net.node(server).endpoint.endpoint_stats().compression, sent);
}

#[test]
fn a_peer_without_compression_interoperates_without_flag_bytes() {
    for (seed, server_config, client_config) in [
        (2, compressing(None), not_compressing()),
        (3, not_compressing(), compressing(None)),
    ] {
        let mut session = session(seed, server_config, client_config);
        assert_eq!(session.capabilities, capability::BUNDLE);
        session.exchange(ChannelId::GAME, ChannelId::UNRELIABLE, &snapshot(500));
        let Session {
            net,
            server,
            server_conn,
            ..
        } = session;
        let stats = net.node(server).endpoint.stats(server_conn).unwrap();
        assert_eq!(stats.compression, Default::default());
    }
}

#[test]
fn the_dictionary_is_used_only_when_both_hashes_match() {
    let dictionary = b"entity position velocity health team ".repeat(50);
    let other = b"a different dictionary altogether ".repeat(50);
    for (seed, client_dictionary, expected) in [
        (4, Some(&dictionary[..]), capability::ALL),
        (5, Some(&other[..]), capability::ZSTD | capability::BUNDLE),
        (6, None, capability::ZSTD | capability::BUNDLE),
    ] {
        let mut session = session(
            seed,
            compressing(Some(&dictionary)),
            compressing(client_dictionary),
        );
        assert_eq!(session.capabilities, expected, "seed {seed}");
        let message = b"entity 7 position 12 40 velocity 1 0 health 90 team 2 ".repeat(3);
        session.exchange(ChannelId::GAME, ChannelId::GAME, &message);
    }
}

/// flag 1 ‖ a real zstd frame of `size` zeros: a few dozen bytes declaring `size`.
fn bomb(size: usize) -> Vec<u8> {
    let mut message = vec![1u8];
    message.extend(zstd_frame(&vec![0u8; size]));
    message
}

fn zstd_frame(data: &[u8]) -> Vec<u8> {
    let mut config = compressing(None).compression;
    config.min_bytes = 0;
    let encoded = tickwire_core::testing::internals::encode_message(&config, capability::ZSTD, data);
    assert_eq!(encoded[0], 1, "compressed");
    encoded[1..].to_vec()
}

#[test]
fn bad_datagram_messages_are_dropped_and_counted_and_the_session_lives() {
    let Session {
        mut net,
        server,
        client,
        conn,
        server_conn,
        ..
    } = session(7, compressing(None), compressing(None));
    let channel = ChannelId::UNRELIABLE.0;
    let datagram = |message: &[u8]| {
        let mut bytes = vec![type_byte(DatagramKind::Unreliable, channel)];
        bytes.extend_from_slice(message);
        bytes
    };
    // Over the 64 KiB cap; an unknown flag; dictionary without the capability; empty; a
    // frame whose declared size lies.
    let mut liar = vec![1u8];
    liar.extend(zstd_frame(&[7u8; 300]));
    let last = liar.len() - 1;
    liar[last] ^= 0xff;
    for message in [bomb(1 << 20), vec![9, 1, 2], vec![2, 1, 2], vec![], liar] {
        assert!(net.raw_datagram(client, conn, datagram(&message)));
    }
    net.run_for(Duration::from_millis(100));
    assert!(net.node(client).connected(conn));
    assert!(net
        .node(server)
        .messages(server_conn, ChannelId::UNRELIABLE)
        .is_empty());
    let stats = net.node(server).endpoint.stats(server_conn).unwrap();
    assert_eq!(stats.compression.refused, 5);
    assert_eq!(stats.compression.messages_received, 0);

    // A well-formed message still arrives.
    assert!(net.raw_datagram(client, conn, datagram(&bomb(1_000))));
    net.run_for(Duration::from_millis(100));
    assert_eq!(
        net.node(server).messages(server_conn, ChannelId::UNRELIABLE),
        vec![vec![0u8; 1_000]]
    );
}

#[test]
fn a_bomb_on_a_reliable_channel_closes_with_protocol_violation() {
    let Session {
        mut net,
        server,
        client,
        conn,
        server_conn,
        ..
    } = session(8, compressing(None), compressing(None));
    let stream = net.raw_open_uni(client, conn).expect("a stream");
    let mut bytes = vec![ChannelId::GAME.0];
    bytes.extend_from_slice(&encode_frame(&bomb(1 << 20)));
    assert_eq!(net.raw_write(client, conn, stream, &bytes), bytes.len());
    let (reason, detail, _) = net.run_until_disconnected(server, server_conn, Duration::from_secs(1));
    assert_eq!(reason, ReasonCode::PROTOCOL_VIOLATION);
    assert!(detail.contains("65536"), "{detail}");
    let stats = net.node(server).endpoint.endpoint_stats();
    assert_eq!(stats.compression.refused, 1);
    assert!(net.node(server).messages(server_conn, ChannelId::GAME).is_empty());
}

#[test]
fn sending_more_than_the_decompression_cap_is_refused_at_send() {
    let Session {
        mut net,
        server,
        server_conn,
        ..
    } = session(9, compressing(None), compressing(None));
    let now = tickwire_core::testing::epoch() + net.elapsed();
    let result = net.node_mut(server).endpoint.send(
        now,
        server_conn,
        ChannelId::GAME,
        vec![0u8; (64 << 10) + 1].into(),
    );
    assert!(
        matches!(result, Err(tickwire_core::SendError::TooLarge { max, .. }) if max == 64 << 10),
        "{result:?}"
    );
}
