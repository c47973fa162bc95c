//! Orderly endings: a server shutting down and a client leaving both tell the other side why.

use std::time::Duration;

use tickwire_core::testing::Net;
use tickwire_core::{ConnHandle, Initiator, ReasonCode};

fn setup() -> (Net, usize, usize) {
    let mut net = Net::new(tickwire_core::testing::epoch(), 7);
    let server = net.add_server(Net::config());
    let client = net.add_client(Net::config());
    (net, server, client)
}

fn shutdown(net: &mut Net, server: usize, retry_after: Option<Duration>) {
    let now = net.now;
    net.node_mut(server)
        .endpoint
        .server_mut()
        .expect("a server endpoint")
        .shutdown(now, "maintenance", retry_after);
    net.drain(server);
}

/// The `(reason, detail, initiator)` of the disconnection of `conn` on `node`.
fn disconnection(net: &mut Net, node: usize, conn: ConnHandle) -> (ReasonCode, String, Initiator) {
    net.run_until_disconnected(node, conn, Duration::from_secs(1))
}

#[test]
fn a_shutdown_tells_every_client_why() {
    let (mut net, server, alice) = setup();
    let bob = net.add_client(Net::config());
    let (alice_conn, alice_at_server) = net.join(alice, server);
    let (bob_conn, _) = net.join(bob, server);

    shutdown(&mut net, server, Some(Duration::from_secs(30)));
    let peer_view = (
        ReasonCode::SERVER_SHUTDOWN,
        "maintenance".to_owned(),
        Initiator::Peer,
    );
    assert_eq!(disconnection(&mut net, alice, alice_conn), peer_view);
    assert_eq!(disconnection(&mut net, bob, bob_conn), peer_view);
    assert_eq!(
        disconnection(&mut net, server, alice_at_server),
        (
            ReasonCode::SERVER_SHUTDOWN,
            "maintenance".to_owned(),
            Initiator::Local
        )
    );

    net.run_for(Duration::from_secs(2));
    assert_eq!(net.node(server).endpoint.connection_count(), 0, "all drained");
}

#[test]
fn a_client_mid_handshake_is_rejected_with_the_retry_advice() {
    let (mut net, server, client) = setup();
    let conn = net.connect(client, server);
    let server_conn = net.run_until_incoming(server, Duration::from_secs(1));
    assert!(
        net.node(client).endpoint.session(conn).is_none(),
        "still handshaking"
    );

    shutdown(&mut net, server, Some(Duration::from_secs(30)));
    let advice = Some(Duration::from_secs(30));
    assert_eq!(
        net.run_until_rejected(client, conn, Duration::from_secs(1)),
        (ReasonCode::SERVER_SHUTDOWN, advice, Initiator::Peer),
        "not a bare transport error: the close waits for the client's 1-RTT keys"
    );
    assert_eq!(
        net.run_until_rejected(server, server_conn, Duration::ZERO),
        (ReasonCode::SERVER_SHUTDOWN, advice, Initiator::Local)
    );
}

#[test]
fn after_a_shutdown_new_clients_are_turned_away() {
    let (mut net, server, client) = setup();
    shutdown(&mut net, server, None);
    let conn = net.connect(client, server);
    let (reason, _, initiator) = net.run_until_rejected(client, conn, Duration::from_secs(1));
    assert_eq!(
        (reason, initiator),
        (ReasonCode::SERVER_SHUTDOWN, Initiator::Peer),
        "told the real reason, not a bare refusal"
    );
}

#[test]
fn a_client_leaving_normally_is_reported_to_the_server() {
    let (mut net, server, client) = setup();
    let (conn, server_conn) = net.join(client, server);

    let now = net.now;
    net.node_mut(client)
        .endpoint
        .close(now, conn, ReasonCode::NORMAL, "quit to menu");
    net.drain(client);

    assert_eq!(
        disconnection(&mut net, server, server_conn),
        (ReasonCode::NORMAL, "quit to menu".to_owned(), Initiator::Peer)
    );
    assert_eq!(
        disconnection(&mut net, client, conn),
        (ReasonCode::NORMAL, "quit to menu".to_owned(), Initiator::Local)
    );
}
