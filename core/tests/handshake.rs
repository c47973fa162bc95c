//! Handshake refusals as the client sees them: every failure is an explicit
//! `Event::Rejected { reason, .. }`, never a bare transport error or a silent timeout.

use std::time::Duration;

use tickwire_core::config::Config;
use tickwire_core::testing::{Fate, Net};
use tickwire_core::{ConnectOptions, Initiator, ReasonCode, Role};

/// A network with a server using `server` and a client using `client` (seeds 100 and 200).
fn pair(server: impl FnOnce(&mut Config), client: impl FnOnce(&mut Config)) -> (Net, usize, usize) {
    let mut net = Net::new(tickwire_core::testing::epoch(), 1);
    let mut server_config = Net::config();
    server(&mut server_config);
    let mut client_config = Net::config();
    client(&mut client_config);
    let s = net.add_server(server_config);
    let c = net.add_client(client_config);
    (net, s, c)
}

/// Long enough for any refusal in these stories.
const PATIENCE: Duration = Duration::from_secs(30);

#[test]
fn disjoint_version_ranges_are_unsupported() {
    let (mut net, server, client) = pair(
        |_| {},
        |c| {
            c.version_min = 2;
            c.version_max = 3;
        },
    );
    let conn = net.connect(client, server);
    assert_eq!(
        net.run_until_rejected(client, conn, PATIENCE),
        (ReasonCode::UNSUPPORTED_VERSION, None, Initiator::Peer)
    );
}

#[test]
fn a_different_schema_is_refused() {
    let (mut net, server, client) = pair(|_| {}, |c| c.schema_hash = Config::schema_hash_of("v2"));
    let conn = net.connect(client, server);
    assert_eq!(
        net.run_until_rejected(client, conn, PATIENCE),
        (ReasonCode::SCHEMA_MISMATCH, None, Initiator::Peer)
    );
}

#[test]
fn a_full_server_says_when_to_come_back() {
    let (mut net, server, first) = pair(
        |s| {
            s.max_sessions = 1;
            s.server_full_retry_after_ms = 7_000;
        },
        |_| {},
    );
    let second = net.add_client(Net::config());
    net.join(first, server);

    let conn = net.connect(second, server);
    assert_eq!(
        net.run_until_rejected(second, conn, PATIENCE),
        (
            ReasonCode::SERVER_FULL,
            Some(Duration::from_secs(7)),
            Initiator::Peer
        )
    );
    assert!(
        net.node(first).closure().is_none(),
        "the first session is unaffected"
    );
}

#[test]
fn handshakes_beyond_the_per_address_rate_are_limited() {
    let (mut net, server, client) = pair(
        |s| {
            s.limits.handshake_burst_per_addr = 1;
            s.limits.handshakes_per_addr_per_sec = 0.5;
        },
        |_| {},
    );
    net.join(client, server);

    let again = net.connect(client, server);
    let (reason, retry_after, initiator) = net.run_until_rejected(client, again, PATIENCE);
    assert_eq!((reason, initiator), (ReasonCode::RATE_LIMITED, Initiator::Peer));
    let retry_after = retry_after.expect("rate limiting advises a retry time");
    assert!(
        retry_after > Duration::from_millis(1_500) && retry_after <= Duration::from_secs(2),
        "one token at 0.5/s is about 2 s away, minus the first join: {retry_after:?}"
    );
    assert_eq!(
        net.node(server).endpoint.endpoint_stats().handshakes_rate_limited,
        1
    );
}

#[test]
fn an_unreachable_server_times_out_locally_within_the_handshake_timeout() {
    let (mut net, server, client) = pair(|_| {}, |c| c.handshake_timeout_ms = 3_000);
    net.node_mut(server).isolated = true;
    let conn = net.connect(client, server);

    assert_eq!(
        net.run_until_rejected(client, conn, PATIENCE),
        (ReasonCode::HANDSHAKE_TIMEOUT, None, Initiator::Local)
    );
    assert_eq!(net.elapsed(), Duration::from_secs(3), "exactly at the deadline");
    net.run_for(Duration::from_secs(60));
    assert_eq!(
        net.trace.iter().filter(|t| t.node == client).count(),
        1,
        "the rejection is the only event: no transport error follows it"
    );
}

#[test]
fn the_server_drops_a_client_that_never_finishes_its_handshake() {
    let (mut net, server, client) = pair(|s| s.handshake_timeout_ms = 2_000, |_| {});
    // Only the client's first flight (its Initial) gets through; the TLS handshake stalls.
    let client_addr = net.node(client).addr;
    let mut sent = 0;
    net.set_filter(move |packet| {
        sent += usize::from(packet.from == client_addr);
        match packet.from == client_addr && sent > 1 {
            true => Fate::Drop,
            false => Fate::Deliver,
        }
    });
    let conn = net.connect(client, server);
    let server_conn = net.run_until_incoming(server, Duration::from_secs(1));

    assert_eq!(
        net.run_until_rejected(server, server_conn, Duration::from_secs(3)),
        (ReasonCode::HANDSHAKE_TIMEOUT, None, Initiator::Local)
    );
    // The client learns nothing from the server (its packets never arrive) and times out too.
    assert_eq!(
        net.run_until_rejected(client, conn, PATIENCE).0,
        ReasonCode::HANDSHAKE_TIMEOUT
    );
}

#[test]
fn a_pinned_server_key_that_does_not_match_aborts_the_join() {
    let (mut net, server, client) = pair(|_| {}, |_| {});
    let ticket = net.ticket_for(client);
    let options = ConnectOptions {
        expected_server_key: Some([7; 32]),
        ..ConnectOptions::default()
    };
    let conn = net.connect_with(client, server, ticket, options);

    assert_eq!(
        net.run_until_rejected(client, conn, PATIENCE),
        (ReasonCode::SERVER_KEY_MISMATCH, None, Initiator::Local)
    );
    // The server had accepted; it hears why the client walked away.
    let server_conn = net.node(server).sessions()[0].0;
    let (reason, _, initiator) = net.run_until_disconnected(server, server_conn, Duration::from_secs(1));
    assert_eq!(
        (reason, initiator),
        (ReasonCode::SERVER_KEY_MISMATCH, Initiator::Peer)
    );
}

#[test]
fn the_pinned_server_key_admits_the_real_server() {
    let (mut net, server, client) = pair(|_| {}, |_| {});
    let ticket = net.ticket_for(client);
    let options = ConnectOptions {
        expected_server_key: Some(net.node(server).endpoint.identity_key()),
        ..ConnectOptions::default()
    };
    let conn = net.connect_with(client, server, ticket, options);
    assert!(net.run_until(Duration::from_secs(1), |n| n.node(client).connected(conn)));
}

#[test]
fn admin_role_needs_the_admin_permission() {
    let (mut net, server, client) = pair(|_| {}, |_| {});
    let ticket = net.ticket_for(client);
    let options = ConnectOptions {
        role: Role::Admin,
        ..ConnectOptions::default()
    };
    let conn = net.connect_with(client, server, ticket, options);
    assert_eq!(
        net.run_until_rejected(client, conn, PATIENCE),
        (ReasonCode::ROLE_NOT_PERMITTED, None, Initiator::Peer)
    );
}

#[test]
fn a_game_server_hello_carrying_a_join_ticket_is_refused_not_ignored() {
    // Even a verification server, which admits ticketless game servers, refuses a GameServer
    // hello with a ticket as malformed rather than admitting it and ignoring the ticket.
    let (mut net, server, client) = pair(|s| s.accept_game_servers = true, |_| {});
    let ticket = net.ticket_for(client);
    let options = ConnectOptions {
        role: Role::GameServer,
        ..ConnectOptions::default()
    };
    let conn = net.connect_with(client, server, ticket, options);
    assert_eq!(
        net.run_until_rejected(client, conn, PATIENCE),
        (ReasonCode::BAD_HANDSHAKE, None, Initiator::Peer)
    );
    assert!(net.node(server).sessions().is_empty());
}

#[test]
fn too_many_pending_handshakes_are_refused_as_server_busy() {
    let (mut net, server, first) = pair(|s| s.max_pending_handshakes = 1, |_| {});
    let second = net.add_client(Net::config());
    let first_conn = net.connect(first, server);
    let second_conn = net.connect(second, server);

    // Both Initials arrive together: the first takes the only handshake slot.
    let (reason, _, initiator) = net.run_until_rejected(second, second_conn, PATIENCE);
    assert_eq!((reason, initiator), (ReasonCode::SERVER_BUSY, Initiator::Peer));
    assert!(net.run_until(Duration::from_secs(1), |n| n.node(first).connected(first_conn)));
    assert_eq!(net.node(server).endpoint.endpoint_stats().connections_refused, 1);
}
