//! Reliable channels under a burst: small frames sent between two transmits reach QUIC as one
//! write (a sender's local policy; the bytes on the stream are the same frames, `PROTOCOL.md`
//! §3), in order with the large and deadline-bound messages sent among them, and they count
//! against `max_queued_reliable_bytes` until QUIC takes them.

use std::time::Duration;

use bytes::Bytes;
use tickwire_core::config::Config;
use tickwire_core::testing::Net;
use tickwire_core::{ChannelId, ConnHandle, SendError, SendOptions};

/// A joined session whose client uses `client_config`.
fn session(seed: u64, client_config: Config) -> (Net, usize, usize, ConnHandle, ConnHandle) {
    Net::joined_pair(seed, Net::config(), client_config)
}

/// Runs `net` until `server` holds `count` messages on the GAME channel (at most 2 s), and
/// returns them.
fn arrived(net: &mut Net, server: usize, server_conn: ConnHandle, count: usize) -> Vec<Bytes> {
    net.run_until(Duration::from_secs(2), |net| {
        net.node(server).messages(server_conn, ChannelId::GAME).len() == count
    });
    net.node(server).messages(server_conn, ChannelId::GAME)
}

#[test]
fn a_burst_of_small_frames_keeps_its_order_around_large_and_deadline_bound_messages() {
    let (mut net, server, client, conn, server_conn) = session(1, Net::config());
    let now = net.now;
    let mut sent = Vec::new();
    let mut send = |net: &mut Net, message: Bytes, options: SendOptions| {
        net.node_mut(client)
            .endpoint
            .send_with(now, conn, ChannelId::GAME, message.clone(), options)
            .expect("the client may send");
        sent.push(message);
    };
    // Small frames, a large one (handed to QUIC apart from them), more small ones, one with a
    // deadline (queued on its own), and small ones again: all before a single transmit.
    for i in 0..50u8 {
        send(&mut net, Bytes::from(vec![i; 40]), SendOptions::default());
    }
    send(&mut net, Bytes::from(vec![0xee; 5_000]), SendOptions::default());
    for i in 0..10u8 {
        send(&mut net, Bytes::from(vec![i; 300]), SendOptions::default());
    }
    let deadline = SendOptions {
        deadline: Some(now + Duration::from_secs(1)),
    };
    send(&mut net, Bytes::from_static(b"before the deadline"), deadline);
    for i in 0..10u8 {
        send(&mut net, Bytes::from(vec![i; 1]), SendOptions::default());
    }
    net.drain(client);
    assert_eq!(arrived(&mut net, server, server_conn, sent.len()), sent);
    let stats = net.node(client).endpoint.stats(conn).unwrap();
    assert_eq!(stats.messages_expired, 0);
}

/// A session whose client may queue 2 100 bytes of reliable messages, after the client sent
/// `count` copies of `message` at once (which must fit) and was refused one more with
/// `QueueFull`.
fn queue_filled(seed: u64, message: &Bytes, count: usize) -> (Net, usize, usize, ConnHandle, ConnHandle) {
    let config = Config {
        max_reliable_message_bytes: 1_000,
        max_queued_reliable_bytes: 2_100,
        ..Net::config()
    };
    let (mut net, server, client, conn, server_conn) = session(seed, config);
    let now = net.now;
    let endpoint = &mut net.node_mut(client).endpoint;
    for _ in 0..count {
        endpoint
            .send(now, conn, ChannelId::GAME, message.clone())
            .unwrap();
    }
    assert_eq!(
        endpoint.send(now, conn, ChannelId::GAME, message.clone()),
        Err(SendError::QueueFull)
    );
    (net, server, client, conn, server_conn)
}

#[test]
fn frames_waiting_for_the_next_transmit_count_against_the_queue_limit() {
    // 4 frames of 504 bytes fit in 2 100; the fifth does not while none has left.
    let message = Bytes::from(vec![7; 500]);
    let (mut net, server, client, conn, server_conn) = queue_filled(2, &message, 4);
    // A transmit hands them to QUIC, and the queue has room again.
    net.drain(client);
    let now = net.now;
    net.node_mut(client)
        .endpoint
        .send(now, conn, ChannelId::GAME, message.clone())
        .expect("the queue drained into QUIC");
    net.drain(client);
    assert_eq!(arrived(&mut net, server, server_conn, 5), vec![message; 5]);
}

#[test]
fn the_queue_limit_holds_frame_by_frame_while_the_open_buffer_has_room() {
    // The stream's one-byte channel header and 20 frames of 104 bytes fit in 2 100; the 21st
    // frame does not, whatever room the open buffer has left.
    let message = Bytes::from(vec![9; 100]);
    let (mut net, server, client, conn, server_conn) = queue_filled(3, &message, 20);
    net.drain(client);
    assert_eq!(arrived(&mut net, server, server_conn, 20), vec![message; 20]);
    assert_eq!(net.node(client).endpoint.stats(conn).unwrap().messages_sent, 20);
}

#[test]
fn a_burst_on_a_compressed_channel_is_compressed_message_by_message() {
    let mut config = Net::config();
    config.channels[usize::from(ChannelId::GAME.0)].compress = true;
    config.compression.enabled = true;
    let (mut net, server, client, conn, server_conn) = Net::joined_pair(4, config.clone(), config);
    let now = net.now;
    let sent: Vec<Bytes> = (0..8u8).map(|i| Bytes::from(vec![i; 200])).collect();
    for message in &sent {
        net.node_mut(client)
            .endpoint
            .send(now, conn, ChannelId::GAME, message.clone())
            .expect("the client may send");
    }
    net.drain(client);
    assert_eq!(arrived(&mut net, server, server_conn, sent.len()), sent);
    let stats = net.node(client).endpoint.stats(conn).unwrap();
    assert_eq!(stats.compression.messages_sent, 8);
    assert!(stats.compression.compressed_bytes_sent < 8 * 200);
}
