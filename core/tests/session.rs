//! End-to-end session stories in virtual time over real QUIC/TLS (the in-memory harness).

use std::time::Duration;

use tickwire_core::testing::Net;
use tickwire_core::{ChannelId, Event};

#[test]
fn client_joins_and_messages_flow_on_every_channel() {
    let mut net = Net::new(tickwire_core::testing::epoch(), 1);
    let server = net.add_server(Net::config());
    let client = net.add_client(Net::config());
    let conn = net.connect(client, server);
    assert!(net.run_until(Duration::from_secs(2), |n| n.node(client).connected(conn)));
    let events = net.node_mut(server).take_events();
    let Some(Event::Connected { conn: sconn, session }) = events.first().cloned() else {
        panic!("server saw {events:?}");
    };
    assert_eq!(
        session.client_key,
        net.node(client).identity.verifying_key().to_bytes()
    );

    net.send(client, conn, ChannelId::GAME, &b"reliable"[..]);
    net.send(client, conn, ChannelId::UNRELIABLE, &b"unreliable"[..]);
    net.send(client, conn, ChannelId::LATEST, &b"latest"[..]);
    let big: Vec<u8> = (0..20_000u32).map(|i| i as u8).collect();
    net.send(server, sconn, ChannelId::LATEST, big.clone());
    net.run_for(Duration::from_millis(200));

    let s = net.node(server);
    assert_eq!(s.messages(sconn, ChannelId::GAME), vec![&b"reliable"[..]]);
    assert_eq!(s.messages(sconn, ChannelId::UNRELIABLE), vec![&b"unreliable"[..]]);
    assert_eq!(s.messages(sconn, ChannelId::LATEST), vec![&b"latest"[..]]);
    assert_eq!(net.node(client).messages(conn, ChannelId::LATEST), vec![big]);
    let stats = net.node(client).endpoint.stats(conn).unwrap();
    assert_eq!(stats.reassembly.messages_reassembled, 1);
}
