//! Large messages end to end: unreliable messages are fragmented into datagrams and reassembled
//! intact or not at all, whatever the link does to them; every reassembly limit is configurable
//! and counted; reliable channels carry megabytes.

use std::collections::BTreeSet;
use std::time::Duration;

use tickwire_core::config::Config;
use tickwire_core::testing::{Fate, LinkModel, Net};
use tickwire_core::OversizePolicy;
use tickwire_core::{config::FragmentConfig, stats::ReassemblyStats};
use tickwire_core::{ChannelId, ConnHandle, SendError};

/// A joined session whose *client* (the receiver in most stories) uses `fragment` limits.
struct Fixture {
    net: Net,
    server: usize,
    client: usize,
    server_conn: ConnHandle,
    client_conn: ConnHandle,
}

impl Fixture {
    fn new(link: LinkModel, configure_server: impl FnOnce(&mut Config), fragment: FragmentConfig) -> Self {
        let mut net = Net::new(tickwire_core::testing::epoch(), 5);
        let mut server_config = Net::config();
        configure_server(&mut server_config);
        let server = net.add_server(server_config);
        let client = net.add_client(Config {
            fragment,
            ..Net::config()
        });
        let (client_conn, server_conn) = net.join(client, server);
        net.link = link;
        Self {
            net,
            server,
            client,
            server_conn,
            client_conn,
        }
    }

    /// The server sends `count` numbered messages of `len` bytes on `channel`, `every` apart,
    /// then lets everything settle (reordering makes QUIC's congestion control slow).
    fn stream(&mut self, channel: ChannelId, count: u32, len: usize, every: Duration) {
        for index in 0..count {
            self.net
                .send(self.server, self.server_conn, channel, numbered(index, len));
            self.net.run_for(every);
        }
        self.net.run_for(Duration::from_secs(10));
    }

    /// Indices of the messages the client received on `channel`, checking each is intact.
    fn received(&self, channel: ChannelId) -> Vec<u32> {
        let messages = self.net.node(self.client).messages(self.client_conn, channel);
        messages.iter().map(|m| intact(m)).collect()
    }

    fn reassembly(&self) -> ReassemblyStats {
        self.net
            .node(self.client)
            .endpoint
            .stats(self.client_conn)
            .unwrap()
            .reassembly
    }
}

/// Message `index` of `len` bytes: the index, then bytes derived from it and their position.
fn numbered(index: u32, len: usize) -> Vec<u8> {
    let mut message = index.to_be_bytes().to_vec();
    message.extend((4..len).map(|i| (i as u32).wrapping_mul(31).wrapping_add(index) as u8));
    message
}

/// The index of a message made by [`numbered`], panicking if any byte is wrong.
fn intact(message: &[u8]) -> u32 {
    let index = u32::from_be_bytes(message[..4].try_into().unwrap());
    assert_eq!(
        message,
        numbered(index, message.len()),
        "message {index} corrupted"
    );
    index
}

fn rough_link(loss: f64) -> LinkModel {
    LinkModel {
        latency: Duration::from_millis(20),
        jitter: Duration::from_millis(15),
        loss,
        duplicate: 0.2,
    }
}

fn defaults() -> FragmentConfig {
    FragmentConfig::default()
}

#[test]
fn unreliable_messages_arrive_whole_and_once_despite_loss_duplication_and_reordering() {
    let mut f = Fixture::new(rough_link(0.02), |_| {}, defaults());
    // On top of the jitter, hold back every fifth packet from the server long enough to
    // overtake whole messages.
    let server_addr = f.net.node(f.server).addr;
    let mut sent = 0;
    f.net.set_filter(move |packet| {
        sent += usize::from(packet.from == server_addr);
        match packet.from == server_addr && sent % 5 == 0 {
            true => Fate::Delay(Duration::from_millis(60)),
            false => Fate::Deliver,
        }
    });
    f.stream(ChannelId::UNRELIABLE, 40, 6_000, Duration::from_millis(5));

    let received = f.received(ChannelId::UNRELIABLE);
    let unique: BTreeSet<u32> = received.iter().copied().collect();
    assert_eq!(unique.len(), received.len(), "a message was delivered twice");
    assert!(received.len() >= 30, "most survive 2 % loss: {}", received.len());
    assert!(
        received.windows(2).any(|w| w[0] > w[1]),
        "jitter above the spacing reorders messages"
    );
    let stats = f.reassembly();
    assert_eq!(stats.messages_reassembled, received.len() as u64);
    assert_eq!(stats.dropped_inconsistent, 0);
}

#[test]
fn a_sequenced_channel_never_delivers_an_older_message_after_a_newer_one() {
    let mut f = Fixture::new(rough_link(0.02), |_| {}, defaults());
    // Alternate fragmented and single-datagram snapshots so arrival order shuffles them.
    for index in 0..80 {
        let len = if index % 2 == 0 { 3_500 } else { 200 };
        f.net
            .send(f.server, f.server_conn, ChannelId::LATEST, numbered(index, len));
        f.net.run_for(Duration::from_millis(5));
    }
    f.net.run_for(Duration::from_secs(2));

    let received = f.received(ChannelId::LATEST);
    assert!(received.windows(2).all(|w| w[0] < w[1]), "{received:?}");
    assert!(received.len() >= 20, "{received:?}");
    let stats = f.net.node(f.client).endpoint.stats(f.client_conn).unwrap();
    assert!(stats.stale_sequenced_dropped > 0, "{stats:?}");
}

#[test]
fn an_unreliable_message_above_max_message_bytes_is_refused_at_send() {
    let mut f = Fixture::new(
        LinkModel::default(),
        |s| s.fragment.max_message_bytes = 10_000,
        defaults(),
    );
    let now = f.net.now;
    let result = f.net.node_mut(f.server).endpoint.send(
        now,
        f.server_conn,
        ChannelId::UNRELIABLE,
        numbered(0, 10_001).into(),
    );
    assert_eq!(
        result,
        Err(SendError::TooLarge {
            size: 10_001,
            max: 10_000
        })
    );
    f.stream(ChannelId::UNRELIABLE, 1, 10_000, Duration::ZERO);
    assert_eq!(f.received(ChannelId::UNRELIABLE), [0], "the limit itself is fine");
}

#[test]
fn the_send_reliable_policy_moves_oversized_messages_to_the_first_reliable_channel() {
    let mut f = Fixture::new(
        LinkModel::default(),
        |s| {
            s.fragment.max_message_bytes = 10_000;
            s.oversize_unreliable = OversizePolicy::SendReliable;
        },
        defaults(),
    );
    f.stream(ChannelId::UNRELIABLE, 1, 50_000, Duration::ZERO);
    assert_eq!(f.received(ChannelId::GAME), [0]);
    assert!(f.received(ChannelId::UNRELIABLE).is_empty());
}

#[test]
fn the_receiver_refuses_messages_above_its_own_size_limit() {
    let limit = FragmentConfig {
        max_message_bytes: 8_000,
        ..defaults()
    };
    let mut f = Fixture::new(LinkModel::default(), |_| {}, limit);
    f.stream(ChannelId::UNRELIABLE, 3, 20_000, Duration::from_millis(50));
    assert!(f.received(ChannelId::UNRELIABLE).is_empty());
    let stats = f.reassembly();
    assert!(stats.dropped_too_large >= 3, "{stats:?}");
    assert_eq!(stats.fragments_dropped, stats.fragments_received, "{stats:?}");
}

#[test]
fn the_receiver_refuses_messages_with_too_many_fragments() {
    let limit = FragmentConfig {
        max_fragments: 4,
        ..defaults()
    };
    let mut f = Fixture::new(LinkModel::default(), |_| {}, limit);
    f.stream(ChannelId::UNRELIABLE, 2, 10_000, Duration::from_millis(50));
    f.stream(ChannelId::UNRELIABLE, 1, 3_000, Duration::ZERO);
    let stats = f.reassembly();
    assert_eq!(f.received(ChannelId::UNRELIABLE), [0], "the small one passes");
    assert_eq!(
        stats.dropped_too_many_fragments,
        stats.fragments_received - 3,
        "{stats:?}"
    );
}

#[test]
fn interleaved_messages_beyond_max_partial_messages_evict_the_oldest() {
    let limit = FragmentConfig {
        max_partial_messages: 1,
        ..defaults()
    };
    let mut f = Fixture::new(rough_link(0.0), |_| {}, limit);
    // Back-to-back messages whose fragments interleave in flight.
    f.stream(ChannelId::UNRELIABLE, 20, 5_000, Duration::ZERO);
    assert!(f.reassembly().evicted_partial_limit > 0, "{:?}", f.reassembly());
    assert!(f.received(ChannelId::UNRELIABLE).len() < 20);
}

#[test]
fn interleaved_messages_beyond_the_memory_budget_evict_the_oldest() {
    let limit = FragmentConfig {
        max_message_bytes: 6_000,
        memory_budget_bytes: 6_000,
        ..defaults()
    };
    let mut f = Fixture::new(rough_link(0.0), |_| {}, limit);
    f.stream(ChannelId::UNRELIABLE, 20, 5_000, Duration::ZERO);
    assert!(f.reassembly().evicted_memory_budget > 0, "{:?}", f.reassembly());
    assert!(f.received(ChannelId::UNRELIABLE).len() < 20);
}

#[test]
fn partial_messages_expire_under_heavy_loss() {
    let limit = FragmentConfig {
        reassembly_timeout_ms: 300,
        ..defaults()
    };
    let mut f = Fixture::new(rough_link(0.3), |_| {}, limit);
    f.stream(ChannelId::UNRELIABLE, 30, 10_000, Duration::from_millis(100));

    let stats = f.reassembly();
    assert!(stats.expired_timeout > 0, "{stats:?}");
    let received = f.received(ChannelId::UNRELIABLE);
    assert_eq!(stats.messages_reassembled, received.len() as u64);
    assert!(received.len() < 30, "{stats:?}");
}

#[test]
fn two_mebibytes_arrive_intact_with_ack_frequency_requested_both_ways() {
    let ack = Some(tickwire_core::config::AckFrequency::default());
    let mut net = Net::new(tickwire_core::testing::epoch(), 5);
    let server = net.add_server(Config {
        ack_frequency: ack.clone(),
        ..Net::config()
    });
    let client = net.add_client(Config {
        ack_frequency: ack,
        ..Net::config()
    });
    let (client_conn, server_conn) = net.join(client, server);
    net.link = rough_link(0.01);
    net.send(client, client_conn, ChannelId::BULK, numbered(7, 2 << 20));
    let delivered = move |n: &Net| !n.node(server).messages(server_conn, ChannelId::BULK).is_empty();
    assert!(net.run_until(Duration::from_secs(30), delivered));
    let received = net.node(server).messages(server_conn, ChannelId::BULK);
    assert_eq!(received[0].len(), 2 << 20);
    assert_eq!(intact(&received[0]), 7);
}

#[test]
fn two_mebibytes_on_the_bulk_channel_arrive_intact() {
    let mut f = Fixture::new(rough_link(0.01), |_| {}, defaults());
    let asset = numbered(7, 2 << 20);
    f.net.send(f.client, f.client_conn, ChannelId::BULK, asset);
    let (server, conn) = (f.server, f.server_conn);
    let delivered = move |n: &Net| !n.node(server).messages(conn, ChannelId::BULK).is_empty();
    assert!(f.net.run_until(Duration::from_secs(30), delivered));

    let received = f.net.node(server).messages(conn, ChannelId::BULK);
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].len(), 2 << 20);
    assert_eq!(intact(&received[0]), 7);
}
