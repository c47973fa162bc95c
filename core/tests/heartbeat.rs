//! Heartbeat over a real session: silence is detected and reported with a reason on both sides,
//! heavy loss is not mistaken for silence, and the path statistics describe the link.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tickwire_core::testing::{Fate, LinkModel, Net};
use tickwire_core::{ConnHandle, Initiator, ReasonCode};

/// A joined session on a network with `link`: `(net, server, client, server_conn, client_conn)`.
fn session(link: LinkModel) -> (Net, usize, usize, ConnHandle, ConnHandle) {
    session_seeded(link, 4)
}

/// [`session`] on a network seeded with `seed`.
fn session_seeded(link: LinkModel, seed: u64) -> (Net, usize, usize, ConnHandle, ConnHandle) {
    let mut net = Net::new(tickwire_core::testing::epoch(), seed);
    net.link = link;
    let server = net.add_server(Net::config());
    let client = net.add_client(Net::config());
    let (client_conn, server_conn) = net.join(client, server);
    (net, server, client, server_conn, client_conn)
}

/// Runs until `node` reports `conn` disconnected; returns `(reason, initiator)`.
fn ending(net: &mut Net, node: usize, conn: ConnHandle, max: Duration) -> (ReasonCode, Initiator) {
    let (reason, _, initiator) = net.run_until_disconnected(node, conn, max);
    (reason, initiator)
}

#[test]
fn total_silence_times_out_on_both_sides() {
    let (mut net, server, client, server_conn, client_conn) = session(LinkModel::default());
    net.run_for(Duration::from_secs(2));
    let config = net.node(server).endpoint.config().heartbeat.clone();
    let limit = Duration::from_millis(config.timeout_ms + config.interval_ms);

    net.node_mut(client).isolated = true;
    let cut_at = net.elapsed();
    assert_eq!(
        ending(&mut net, server, server_conn, limit),
        (ReasonCode::HEARTBEAT_TIMEOUT, Initiator::Local)
    );
    assert!(net.elapsed() - cut_at >= Duration::from_millis(config.timeout_ms - config.interval_ms));

    // The client hears nothing either (not even the server's close) and reaches the same verdict.
    let left = limit - (net.elapsed() - cut_at);
    assert_eq!(
        ending(&mut net, client, client_conn, left),
        (ReasonCode::HEARTBEAT_TIMEOUT, Initiator::Local)
    );
}

#[test]
fn replayed_packets_do_not_hold_off_the_timeout() {
    let (mut net, server, client, server_conn, _) = session(LinkModel::default());
    net.run_for(Duration::from_secs(2));
    let config = net.node(server).endpoint.config().heartbeat.clone();
    let grace = Duration::from_millis(config.interval_ms) / 4;
    let client_addr = net.node(client).addr;

    // Record what the client sends for a while, then let nothing more of it through.
    let captured: Rc<RefCell<Vec<Bytes>>> = Rc::default();
    let tap = Rc::clone(&captured);
    net.set_filter(move |packet| {
        if packet.from == client_addr {
            tap.borrow_mut().push(packet.data.clone());
        }
        Fate::Deliver
    });
    net.run_for(Duration::from_millis(600));
    net.node_mut(client).isolated = true;
    let cut_at = net.elapsed();
    let replays = captured.borrow().clone();
    assert!(!replays.is_empty(), "the client sent packets to replay");

    // Every 20 ms a copy of one of its authenticated packets arrives from its address: QUIC
    // decrypts it, sees a duplicate packet number and drops it, so it is no sign of life.
    let mut i = 0;
    while net.node(server).connected(server_conn) && net.elapsed() - cut_at < Duration::from_secs(10) {
        let now = net.now;
        let packet = BytesMut::from(&replays[i % replays.len()][..]);
        net.node_mut(server)
            .endpoint
            .handle_datagram(now, client_addr, None, None, packet);
        i += 1;
        net.run_for(Duration::from_millis(20));
    }
    let silent = net.elapsed() - cut_at;
    let (reason, _, initiator) = net.run_until_disconnected(server, server_conn, Duration::ZERO);
    assert_eq!(
        (reason, initiator),
        (ReasonCode::HEARTBEAT_TIMEOUT, Initiator::Local)
    );
    // Silence is counted from the client's last real packet, which reached the server at
    // most a ping interval before the cut; the replays can postpone the verdict by less
    // than the heartbeat's grace (and one 20 ms step to notice it).
    let timeout = Duration::from_millis(config.timeout_ms);
    assert!(
        silent >= timeout - Duration::from_millis(config.interval_ms),
        "{silent:?}"
    );
    assert!(
        silent <= timeout + grace + Duration::from_millis(20),
        "{silent:?}"
    );
}

#[test]
fn when_only_the_uplink_dies_the_client_learns_why_from_the_server() {
    let (mut net, server, client, server_conn, client_conn) = session(LinkModel::default());
    let dead = LinkModel {
        loss: 1.0,
        ..LinkModel::default()
    };
    net.set_link(client, server, dead);

    assert_eq!(
        ending(&mut net, server, server_conn, Duration::from_secs(6)),
        (ReasonCode::HEARTBEAT_TIMEOUT, Initiator::Local)
    );
    assert_eq!(
        ending(&mut net, client, client_conn, Duration::from_millis(100)),
        (ReasonCode::HEARTBEAT_TIMEOUT, Initiator::Peer)
    );
}

#[test]
fn thirty_percent_loss_for_two_minutes_is_not_a_timeout() {
    let link = LinkModel {
        latency: Duration::from_millis(25),
        jitter: Duration::from_millis(10),
        loss: 0.3,
        duplicate: 0.0,
    };
    let (mut net, server, client, server_conn, client_conn) = session(link);
    net.run_for(Duration::from_secs(120));

    assert!(
        net.node(server).connected(server_conn),
        "{:?}",
        net.node(server).closure()
    );
    assert!(
        net.node(client).connected(client_conn),
        "{:?}",
        net.node(client).closure()
    );

    let stats = net.node(client).endpoint.stats(client_conn).unwrap().heartbeat;
    // 240 pings in two minutes; a round trip survives both directions 49 % of the time.
    assert!(stats.pings_sent >= 235, "{stats:?}");
    assert!((0.4..0.62).contains(&stats.loss_ratio), "{stats:?}");
    assert!((0.2..0.4).contains(&stats.incoming_loss_ratio), "{stats:?}");
    // Two one-way trips of 25 ms plus on average half the 10 ms jitter each.
    assert!((54.0..66.0).contains(&stats.srtt_ms), "{stats:?}");
    assert!(stats.min_rtt_ms >= 50.0, "{stats:?}");
    // Uniform 0–10 ms one-way jitter: RFC 3550's mean |D| is 10/3 ms.
    assert!((1.5..6.0).contains(&stats.jitter_ms), "{stats:?}");
}

#[test]
fn a_clean_link_reports_its_round_trip_time() {
    let (mut net, _, client, _, client_conn) = session(LinkModel {
        latency: Duration::from_millis(40),
        ..LinkModel::default()
    });
    net.run_for(Duration::from_secs(10));
    let stats = net.node(client).endpoint.stats(client_conn).unwrap();
    let heartbeat = stats.heartbeat;
    assert!(heartbeat.rtt_samples >= 19, "{heartbeat:?}");
    assert!((79.0..82.0).contains(&heartbeat.srtt_ms), "{heartbeat:?}");
    assert!(heartbeat.jitter_ms < 0.5, "{heartbeat:?}");
    assert_eq!(heartbeat.loss_ratio, 0.0);
    assert!((stats.quic_rtt_ms - heartbeat.srtt_ms).abs() < 5.0, "{stats:?}");
}

#[test]
fn a_send_backlog_does_not_inflate_the_heartbeat_rtt() {
    // Jitter beyond the packet spacing reorders packets, which QUIC's loss detection reads as
    // loss: the congestion window stays small and the offered load backs up.
    let link = LinkModel {
        latency: Duration::from_millis(20),
        jitter: Duration::from_millis(15),
        ..LinkModel::default()
    };
    let (mut net, server, _client, server_conn, _client_conn) = session_seeded(link, 5);
    // Offer far more than the congestion window carries: 60 × 6 KB every 10 ms (~36 MB/s).
    for _ in 0..300 {
        for _ in 0..60 {
            let now = net.now;
            // The queue is bounded and drops the oldest: a full queue is not an error.
            let _ = net.node_mut(server).endpoint.send(
                now,
                server_conn,
                tickwire_core::ChannelId::UNRELIABLE,
                bytes::Bytes::from(vec![7u8; 6_000]),
            );
        }
        net.drain(server);
        net.run_for(Duration::from_millis(10));
    }
    let stats = net.node(server).endpoint.stats(server_conn).unwrap();
    assert!(stats.heartbeat.rtt_samples > 0, "{stats:?}");
    assert!(stats.datagrams_dropped_queue_full > 0, "the backlog was real");
    // The path RTT is 40–70 ms; pings wait behind at most one small QUIC datagram buffer.
    assert!(
        stats.heartbeat.srtt_ms < 70.0 + 60.0,
        "heartbeat srtt {:.1} ms vs QUIC {:.1} ms",
        stats.heartbeat.srtt_ms,
        stats.quic_rtt_ms
    );
}
