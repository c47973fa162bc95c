//! Ticks: the server runs a fixed timestep, and a client estimates the server's tick through
//! heartbeat pongs closely enough to run its own ticks just ahead of it.

use std::time::Duration;

use tickwire_core::testing::{LinkModel, Net};
use tickwire_core::ConnHandle;

/// A network whose one-way latency is uniform in 20–40 ms, with a server started at time 0
/// and a client that joined it.
fn jittery_session() -> (Net, usize, usize, ConnHandle) {
    let mut net = Net::new(tickwire_core::testing::epoch(), 6);
    net.link = LinkModel {
        latency: Duration::from_millis(20),
        jitter: Duration::from_millis(20),
        ..LinkModel::default()
    };
    let server = net.add_server(Net::config());
    let client = net.add_client(Net::config());
    let (conn, _) = net.join(client, server);
    (net, server, client, conn)
}

/// The server's true (fractional) tick now: it started with the network, at 60 Hz.
fn true_server_tick(net: &Net) -> f64 {
    net.elapsed().as_secs_f64() * 60.0
}

#[test]
fn the_server_ticks_at_its_configured_rate() {
    let mut net = Net::new(tickwire_core::testing::epoch(), 6);
    let mut config = Net::config();
    config.tick.tick_rate_hz = 20;
    let server = net.add_server(config);
    net.run_for(Duration::from_secs(3));

    let node = net.node(server);
    let numbers: Vec<u64> = node.ticks.iter().map(|t| t.tick).collect();
    assert_eq!(numbers, (1..=60).collect::<Vec<_>>());
    let start = net.now - Duration::from_secs(3);
    for tick in &node.ticks {
        assert_eq!(
            tick.scheduled_at - start,
            Duration::from_millis(50) * tick.tick as u32
        );
        assert_eq!(tick.lateness, Duration::ZERO, "the harness wakes exactly on time");
    }
    assert_eq!(node.endpoint.current_tick(), Some(60));
    assert_eq!(node.endpoint.endpoint_stats().ticks, 60);
}

#[test]
fn ticks_stay_regular_while_a_session_runs() {
    let (mut net, server, _, _) = jittery_session();
    net.run_for(Duration::from_secs(5));
    let expected = true_server_tick(&net).floor() as u64;
    let ticks = &net.node(server).ticks;
    assert_eq!(ticks.len() as u64, expected);
    assert!(ticks.windows(2).all(|w| w[1].tick == w[0].tick + 1));
}

#[test]
fn client_tick_sync_converges_under_jitter() {
    let (mut net, _, client, conn) = jittery_session();
    net.run_for(Duration::from_secs(10));

    let sync = net.node(client).endpoint.tick_sync(conn).unwrap();
    let stats = sync.stats();
    assert!(stats.samples >= 18, "a pong every 500 ms: {stats:?}");
    assert!(stats.estimation_error_ticks < 1.0, "{stats:?}");
    let estimate = sync.estimated_server_tick(net.now).unwrap();
    let truth = true_server_tick(&net);
    assert!(
        (estimate - truth).abs() <= 1.5,
        "estimated {estimate}, server at {truth}"
    );
}

#[test]
fn the_client_runs_its_ticks_just_ahead_of_the_server() {
    let (mut net, _, client, conn) = jittery_session();
    net.run_for(Duration::from_secs(10));

    // The harness drains `poll_tick`, which on a client delivers each connection's ticks.
    let node = net.node(client);
    let ticks: Vec<_> = node.ticks.iter().filter(|t| t.conn == Some(conn)).collect();
    assert!(
        ticks.windows(2).all(|w| w[1].tick > w[0].tick),
        "strictly increasing"
    );
    let latest = ticks.last().expect("a synchronised client has ticks").tick;
    let endpoint = &node.endpoint;
    assert_eq!(endpoint.tick_sync(conn).unwrap().last_tick(), Some(latest));
    let deadline = endpoint
        .tick_sync(conn)
        .unwrap()
        .poll_timeout()
        .expect("synchronised");
    assert!(
        endpoint.poll_timeout().is_some_and(|t| t <= deadline),
        "the client's tick deadline is part of the endpoint's"
    );
    let margin = endpoint.config().tick_sync.lead_margin_ticks;
    let ahead = latest as f64 - true_server_tick(&net);
    assert!(
        (margin - 1.5..=margin + 1.0).contains(&ahead),
        "client tick {latest} is {ahead} ticks ahead"
    );
}
