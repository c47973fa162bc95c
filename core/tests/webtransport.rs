//! WebTransport sessions (`PROTOCOL.md` §12) in virtual time over real QUIC/TLS: the HTTP/3
//! setup, the extended CONNECT and its refusals, the certificate channel binding, and the same
//! tickwire session inside, beside native sessions on the same endpoint.

use std::time::Duration;

use tickwire_core::testing::Net;
use tickwire_core::webtransport::WebTransportConfig;
use tickwire_core::{ChannelId, Event, ReasonCode, WebTransportTarget};

fn wt_net(seed: u64, webtransport: WebTransportConfig) -> (Net, usize, usize) {
    let mut net = Net::new(tickwire_core::testing::epoch(), seed);
    let server = net.add_webtransport_server(Net::config(), webtransport);
    let client = net.add_client(Net::config());
    (net, server, client)
}

#[test]
fn a_webtransport_session_carries_every_channel_and_the_heartbeat() {
    let (mut net, server, client) = wt_net(1, WebTransportConfig::default());
    let (conn, sconn) = net.join_webtransport(client, server);
    assert_eq!(net.node(server).endpoint.is_webtransport(sconn), Some(true));
    assert_eq!(net.node(client).endpoint.is_webtransport(conn), Some(true));

    net.send(client, conn, ChannelId::GAME, &b"reliable"[..]);
    net.send(client, conn, ChannelId::UNRELIABLE, &b"unreliable"[..]);
    net.send(client, conn, ChannelId::LATEST, &b"latest"[..]);
    let big: Vec<u8> = (0..20_000u32).map(|i| i as u8).collect();
    net.send(server, sconn, ChannelId::LATEST, big.clone());
    net.send(server, sconn, ChannelId::GAME, &b"from the server"[..]);
    net.run_for(Duration::from_secs(3));

    let s = net.node(server);
    assert_eq!(s.messages(sconn, ChannelId::GAME), vec![&b"reliable"[..]]);
    assert_eq!(s.messages(sconn, ChannelId::UNRELIABLE), vec![&b"unreliable"[..]]);
    assert_eq!(s.messages(sconn, ChannelId::LATEST), vec![&b"latest"[..]]);
    let c = net.node(client);
    assert_eq!(c.messages(conn, ChannelId::LATEST), vec![big]);
    assert_eq!(c.messages(conn, ChannelId::GAME), vec![&b"from the server"[..]]);
    let stats = c.endpoint.stats(conn).unwrap();
    assert_eq!(stats.reassembly.messages_reassembled, 1);
    assert!(stats.heartbeat.pongs_received > 0, "{:?}", stats.heartbeat);
    assert_eq!(stats.datagrams_dropped_malformed, 0);
    let sstats = s.endpoint.stats(sconn).unwrap();
    assert!(sstats.heartbeat.pongs_received > 0);
    assert_eq!(sstats.datagrams_dropped_malformed, 0);
}

#[test]
fn native_and_webtransport_clients_share_one_server() {
    let (mut net, server, wt_client) = wt_net(2, WebTransportConfig::default());
    let native_client = net.add_client(Net::config());
    let (wt_conn, wt_sconn) = net.join_webtransport(wt_client, server);
    let (native_conn, native_sconn) = net.join(native_client, server);
    assert_eq!(
        net.node(server).endpoint.is_webtransport(native_sconn),
        Some(false)
    );
    assert_eq!(net.node(server).endpoint.sessions_live(), 2);
    net.send(wt_client, wt_conn, ChannelId::GAME, &b"browser"[..]);
    net.send(native_client, native_conn, ChannelId::GAME, &b"native"[..]);
    net.run_for(Duration::from_millis(300));
    let s = net.node(server);
    assert_eq!(s.messages(wt_sconn, ChannelId::GAME), vec![&b"browser"[..]]);
    assert_eq!(s.messages(native_sconn, ChannelId::GAME), vec![&b"native"[..]]);
}

#[test]
fn closes_carry_their_reason_in_the_capsule_both_ways() {
    let (mut net, server, client) = wt_net(3, WebTransportConfig::default());
    let (conn, sconn) = net.join_webtransport(client, server);
    let now = net.now;
    net.node_mut(server)
        .endpoint
        .close(now, sconn, ReasonCode::KICKED, "cheating");
    net.drain(server);
    let Event::Disconnected { reason, detail, .. } =
        net.run_until_closed(client, conn, Duration::from_secs(3))
    else {
        panic!("expected a disconnection");
    };
    assert_eq!(reason, ReasonCode::KICKED);
    assert_eq!(detail, "cheating");

    let (conn, sconn) = net.join_webtransport(client, server);
    let now = net.now;
    net.node_mut(client)
        .endpoint
        .close(now, conn, ReasonCode::NORMAL, "bye");
    net.drain(client);
    let Event::Disconnected { reason, detail, .. } =
        net.run_until_closed(server, sconn, Duration::from_secs(3))
    else {
        panic!("expected a disconnection");
    };
    assert_eq!((reason, detail.as_str()), (ReasonCode::NORMAL, "bye"));
    // Both QUIC connections close within the linger.
    net.run_for(Duration::from_secs(3));
    assert_eq!(net.node(server).endpoint.connection_count(), 0);
    assert_eq!(net.node(client).endpoint.connection_count(), 0);
}

#[test]
fn a_connect_to_another_path_or_origin_is_refused_with_its_status() {
    let config = WebTransportConfig {
        path: "/play".into(),
        allowed_origins: Some(vec!["https://game.example".into()]),
    };
    let (mut net, server, client) = wt_net(4, config);
    let cases = [
        ("/tickwire", Some("https://game.example"), "404"),
        ("/play", Some("https://evil.example"), "403"),
        ("/play", None, "403"),
    ];
    for (path, origin, status) in cases {
        let target = WebTransportTarget {
            authority: "game.example:4433".into(),
            path: path.into(),
            origin: origin.map(Into::into),
        };
        let ticket = net.ticket_for(client);
        let conn = net.connect_webtransport(client, server, ticket, &target);
        let Event::Rejected { reason, detail, .. } =
            net.run_until_closed(client, conn, Duration::from_secs(3))
        else {
            panic!("expected a rejection");
        };
        assert_eq!(reason, ReasonCode::TRANSPORT_ERROR);
        assert!(detail.contains(status), "{path} {origin:?}: {detail}");
    }
    let target = WebTransportTarget {
        authority: "game.example:4433".into(),
        path: "/play?room=1".into(),
        origin: Some("https://game.example".into()),
    };
    let ticket = net.ticket_for(client);
    let conn = net.connect_webtransport(client, server, ticket, &target);
    assert!(net.run_until(Duration::from_secs(3), |n| n.node(client).connected(conn)));
}

#[test]
fn a_rejected_join_reaches_the_client_through_the_capsule() {
    let (mut net, server, client) = wt_net(5, WebTransportConfig::default());
    let mut claims = net.claims_for(client);
    claims.gs_id = 999; // another game server
    let ticket = net.issuer.issue(&claims);
    let target = net.webtransport_target(server);
    let conn = net.connect_webtransport(client, server, ticket, &target);
    let Event::Rejected { reason, .. } = net.run_until_closed(client, conn, Duration::from_secs(3)) else {
        panic!("expected a rejection");
    };
    assert_eq!(reason, ReasonCode::TICKET_WRONG_AUDIENCE);
}

#[test]
fn a_native_client_is_not_offered_webtransport_and_still_joins() {
    let (mut net, server, client) = wt_net(6, WebTransportConfig::default());
    let (conn, _) = net.join(client, server);
    assert_eq!(net.node(client).endpoint.is_webtransport(conn), Some(false));
}

#[test]
fn a_challenge_naming_another_certificate_than_tls_is_refused() {
    use tickwire_core::webtransport::{CertificateOptions, ServerCertificate};

    let (mut net, server, client) = wt_net(7, WebTransportConfig::default());
    let ticket = net.ticket_for(client);
    let target = net.webtransport_target(server);
    let conn = net.connect_webtransport(client, server, ticket, &target);
    // The server's TLS has presented its certificate; it rotates before the Challenge, which
    // then names a certificate this connection never saw (as a relay's would).
    net.run_until_incoming(server, Duration::from_secs(1));
    let now_ms = net.wall_clock().unix_ms_at(net.now);
    let rotated = ServerCertificate::generate(&[9; 32], &CertificateOptions::new(now_ms)).unwrap();
    let mut ops = net.node_mut(server).endpoint.server_mut().unwrap();
    ops.set_webtransport_certificate(&rotated).unwrap();
    assert_eq!(ops.webtransport_certificate_hash(), Some(rotated.sha256()));
    let Event::Rejected { reason, detail, .. } = net.run_until_closed(client, conn, Duration::from_secs(3))
    else {
        panic!("expected a rejection");
    };
    assert_eq!(reason, ReasonCode::BAD_HANDSHAKE, "{detail}");
    assert!(detail.contains("another certificate"), "{detail}");
    // The next connection sees the new certificate and joins.
    net.join_webtransport(client, server);
}
