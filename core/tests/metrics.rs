//! The endpoint-wide figures an operator scrapes: bytes and datagrams each way, the handshake,
//! RTT and jitter histograms, and per-connection counters that outlive their connection.

use std::time::Duration;

use tickwire_core::stats::Histogram;
use tickwire_core::testing::{epoch, LinkModel, Net};
use tickwire_core::{Initiator, ReasonCode};

/// The bucket a histogram's observations fall in at most: the first cumulative bucket that
/// holds them all.
fn upper_bound(h: &Histogram) -> f64 {
    h.cumulative_buckets()
        .find(|(_, n)| *n == h.count())
        .map_or(f64::INFINITY, |(bound, _)| bound)
}

#[test]
fn a_session_moves_the_endpoint_figures_and_they_survive_its_end() {
    let mut net = Net::new(epoch(), 11);
    net.link = LinkModel {
        latency: Duration::from_millis(20),
        ..LinkModel::default()
    };
    let server = net.add_server(Net::config());
    let client = net.add_client(Net::config());
    let (client_conn, server_conn) = net.join(client, server);
    net.run_for(Duration::from_secs(3));

    for node in [server, client] {
        let stats = net.node(node).endpoint.endpoint_stats();
        assert_eq!(stats.handshake_time.count(), 1, "one session, one handshake time");
        assert!(
            stats.handshake_time.sum_seconds() >= 0.040,
            "at least one round trip of 40 ms: {}",
            stats.handshake_time.sum_seconds()
        );
        assert!(
            stats.rtt.count() >= 2,
            "heartbeat RTT samples: {}",
            stats.rtt.count()
        );
        assert_eq!(upper_bound(&stats.rtt), 0.05, "40 ms RTTs in the ≤ 50 ms bucket");
        assert!(stats.jitter.count() >= 1);
        assert!(stats.udp_tx_datagrams > 0 && stats.udp_tx_bytes >= 1_200);
        assert!(stats.udp_rx_bytes >= stats.datagrams.received);
    }
    let client_tx = net.node(client).endpoint.endpoint_stats().udp_tx_bytes;
    let server_rx = net.node(server).endpoint.endpoint_stats().udp_rx_bytes;
    assert!(
        server_rx > 0 && server_rx <= client_tx,
        "no loss: what arrived was sent"
    );
    let lateness = net.node(server).endpoint.endpoint_stats().tick_lateness;
    assert_eq!(lateness.count(), net.node(server).endpoint.endpoint_stats().ticks);

    let before = net.node(server).endpoint.endpoint_stats();
    let now = net.now;
    net.node_mut(client)
        .endpoint
        .close(now, client_conn, ReasonCode::NORMAL, "bye");
    let (reason, _, initiator) = net.run_until_disconnected(server, server_conn, Duration::from_secs(5));
    assert_eq!((reason, initiator), (ReasonCode::NORMAL, Initiator::Peer));
    net.run_for(Duration::from_secs(5));
    assert_eq!(
        net.node(server).endpoint.connection_count(),
        0,
        "drained and forgotten"
    );
    let after = net.node(server).endpoint.endpoint_stats();
    assert_eq!(after.sessions_live, 0);
    assert!(
        after.rtt.count() >= before.rtt.count(),
        "closed connections' samples are kept"
    );
    assert_eq!(after.handshake_time, before.handshake_time);
    assert!(after.message_limiter.allowed >= before.message_limiter.allowed);
}

#[test]
fn sessions_are_counted_by_role() {
    let mut net = Net::new(epoch(), 12);
    let server = net.add_server(Net::config());
    let client = net.add_client(Net::config());
    net.join(client, server);
    let stats = net.node(server).endpoint.endpoint_stats();
    assert_eq!(stats.sessions_live, 1);
    assert_eq!(
        stats.sessions_by_role.into_iter().collect::<Vec<_>>(),
        [(tickwire_core::Role::Player, 1)]
    );
}
