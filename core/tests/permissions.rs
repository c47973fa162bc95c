//! The channel table's senders and rate limits, enforced by a real server over real QUIC in
//! virtual time (`PROTOCOL.md` §7.1): each role on each channel kind, refusal events and
//! counters, the `PERMISSION_DENIED` close, the client-side check, per-channel rate limits.
//!
//! Clients that break the rules are honest endpoints given a permissive copy of the server's
//! table (everyone may send everywhere), so their messages travel the ordinary send paths,
//! fragmentation included.

use std::time::Duration;

use tickwire_core::testing::Net;
use tickwire_core::{
    Breach, Channel, ChannelId, ChannelRateLimit, Config, ConnHandle, ConnectOptions, Event, Initiator,
    Priority, ReasonCode, RefusalCause, Role, SendError, Senders, PERMISSION_ADMIN,
};

const PLAYER_RELIABLE: ChannelId = ChannelId(0);
const PLAYER_UNRELIABLE: ChannelId = ChannelId(1);
const PLAYER_SEQUENCED: ChannelId = ChannelId(2);
const ADMIN_RELIABLE: ChannelId = ChannelId(3);
const ADMIN_UNRELIABLE: ChannelId = ChannelId(4);
const ADMIN_SEQUENCED: ChannelId = ChannelId(5);

/// Player channels of each kind, then admin channels of each kind.
fn table() -> Vec<Channel> {
    vec![
        Channel::reliable(Priority::Game),
        Channel::unreliable(),
        Channel::sequenced(),
        Channel::reliable(Priority::Game).with_senders(Senders::admins()),
        Channel::unreliable().with_senders(Senders::admins()),
        Channel::sequenced().with_senders(Senders::admins()),
    ]
}

fn server_config(channels: Vec<Channel>, max_permission_violations: u32) -> Config {
    Config {
        channels,
        max_permission_violations,
        ..Net::config()
    }
}

/// The server's table with every channel open to every role: a client out of step with it.
fn permissive(channels: &[Channel]) -> Config {
    let channels = channels
        .iter()
        .map(|c| c.clone().with_senders(Senders::everyone()))
        .collect();
    Config {
        channels,
        ..Net::config()
    }
}

/// A network with a server using `server` and one client using `client` joined as `role`
/// (admins with a ticket carrying [`PERMISSION_ADMIN`]); returns the network, the client's
/// node and its handle, and the server's handle.
fn joined(server: Config, client: Config, role: Role) -> (Net, usize, ConnHandle, ConnHandle) {
    let permissions = if role == Role::Admin { PERMISSION_ADMIN } else { 0 };
    joined_with(server, client, role, permissions)
}

/// [`joined`] with a ticket granting `permissions`.
fn joined_with(
    server: Config,
    client: Config,
    role: Role,
    permissions: u32,
) -> (Net, usize, ConnHandle, ConnHandle) {
    let mut net = Net::new(tickwire_core::testing::epoch(), 11);
    let s = net.add_server(server);
    let c = net.add_client(client);
    let mut claims = net.claims_for(c);
    claims.permissions = permissions;
    let ticket = net.issuer.issue(&claims);
    let options = ConnectOptions {
        role,
        ..ConnectOptions::default()
    };
    let conn = net.connect_with(c, s, ticket, options);
    let server_conn = |net: &Net| net.node(s).sessions().first().map(|(h, _)| *h);
    assert!(
        net.run_until(Duration::from_secs(5), |n| n.node(c).connected(conn)
            && server_conn(n).is_some()),
        "{role:?} did not join: {:?}",
        net.node(c).events
    );
    let sconn = server_conn(&net).expect("checked by run_until");
    assert_eq!(net.node(s).endpoint.session(sconn).map(|s| s.role), Some(role));
    (net, c, conn, sconn)
}

const SERVER: usize = 0;

fn refusal_events(net: &Net, channel: ChannelId, cause: RefusalCause) -> usize {
    net.node(SERVER)
        .events
        .iter()
        .filter(|e| matches!(e, Event::MessageRefused { channel: ch, reason, .. } if *ch == channel && *reason == cause))
        .count()
}

#[test]
fn each_role_on_each_channel_kind_is_delivered_or_refused() {
    let player_channels = [PLAYER_RELIABLE, PLAYER_UNRELIABLE, PLAYER_SEQUENCED];
    let admin_channels = [ADMIN_RELIABLE, ADMIN_UNRELIABLE, ADMIN_SEQUENCED];
    for (role, on_player, on_admin) in [
        (Role::Player, true, false),
        (Role::Spectator, false, false),
        (Role::Admin, true, true),
    ] {
        let (mut net, c, conn, sconn) = joined(server_config(table(), 0), permissive(&table()), role);
        // A large message too, so that a fragmented datagram is judged whole.
        let big = vec![7u8; 5_000];
        for channel in player_channels.iter().chain(&admin_channels) {
            net.send(c, conn, *channel, &b"hello"[..]);
            if *channel != PLAYER_SEQUENCED && *channel != ADMIN_SEQUENCED {
                net.send(c, conn, *channel, big.clone());
            }
        }
        // The server may always send, whatever the client's role.
        net.send(SERVER, sconn, PLAYER_RELIABLE, &b"state"[..]);
        net.run_for(Duration::from_millis(300));

        let mut refused = 0u64;
        for (channels, allowed) in [(player_channels, on_player), (admin_channels, on_admin)] {
            for channel in channels {
                let got = net.node(SERVER).messages(sconn, channel);
                let sent: u64 = if channel == PLAYER_SEQUENCED || channel == ADMIN_SEQUENCED {
                    1
                } else {
                    2
                };
                if allowed {
                    assert_eq!(got.len() as u64, sent, "{role:?} on {channel:?}");
                    assert_eq!(refusal_events(&net, channel, RefusalCause::NotPermitted), 0);
                } else {
                    assert!(got.is_empty(), "{role:?} on {channel:?} was delivered");
                    // Reported, at most once per tick (the large message may arrive a tick later).
                    let events = refusal_events(&net, channel, RefusalCause::NotPermitted) as u64;
                    assert!(
                        (1..=sent).contains(&events),
                        "{role:?} on {channel:?}: {events} events"
                    );
                    refused += sent;
                }
            }
        }
        let stats = net.node(SERVER).endpoint.stats(sconn).expect("live");
        assert_eq!(stats.refusals.not_permitted, refused, "{role:?}");
        assert_eq!(stats.refusals.rate_limited, 0);
        assert_eq!(
            net.node(SERVER).endpoint.endpoint_stats().message_refusals,
            stats.refusals
        );
        assert_eq!(net.node(c).messages(conn, PLAYER_RELIABLE), vec![&b"state"[..]]);
        assert!(
            net.node(c).connected(conn),
            "max_permission_violations = 0 never closes"
        );
        assert!(
            !net.node(c)
                .events
                .iter()
                .any(|e| matches!(e, Event::MessageRefused { .. })),
            "a client reports no refusals"
        );
    }
}

#[test]
fn refusals_are_reported_once_per_channel_and_cause_per_tick() {
    let (mut net, c, conn, sconn) = joined(server_config(table(), 0), permissive(&table()), Role::Spectator);
    for i in 0..5u8 {
        net.send(c, conn, PLAYER_RELIABLE, vec![i]);
        net.send(c, conn, PLAYER_UNRELIABLE, vec![i]);
    }
    net.run_for(Duration::from_millis(100));
    assert_eq!(
        refusal_events(&net, PLAYER_RELIABLE, RefusalCause::NotPermitted),
        1
    );
    assert_eq!(
        refusal_events(&net, PLAYER_UNRELIABLE, RefusalCause::NotPermitted),
        1
    );
    let stats = net.node(SERVER).endpoint.stats(sconn).expect("live");
    assert_eq!(
        stats.refusals.not_permitted, 10,
        "every refused message is counted"
    );
    assert_eq!(stats.messages_received, 0);

    // A later tick reports again.
    net.send(c, conn, PLAYER_UNRELIABLE, &b"again"[..]);
    net.run_for(Duration::from_millis(100));
    assert_eq!(
        refusal_events(&net, PLAYER_UNRELIABLE, RefusalCause::NotPermitted),
        2
    );
    assert_eq!(
        refusal_events(&net, PLAYER_RELIABLE, RefusalCause::NotPermitted),
        1
    );
    let first = net
        .node(SERVER)
        .events
        .iter()
        .find(|e| matches!(e, Event::MessageRefused { .. }));
    assert!(
        matches!(
            first,
            Some(Event::MessageRefused { conn, reason: RefusalCause::NotPermitted, .. }) if *conn == sconn
        ),
        "{first:?}"
    );
}

#[test]
fn repeated_violations_close_the_session_with_permission_denied() {
    let (mut net, c, conn, sconn) = joined(server_config(table(), 8), permissive(&table()), Role::Spectator);
    for i in 0..7u8 {
        net.send(c, conn, PLAYER_RELIABLE, vec![i]);
    }
    net.run_for(Duration::from_millis(200));
    assert!(net.node(c).connected(conn), "7 of 8 violations keep the session");
    assert_eq!(
        net.node(SERVER)
            .endpoint
            .stats(sconn)
            .expect("live")
            .refusals
            .not_permitted,
        7
    );

    net.send(c, conn, PLAYER_UNRELIABLE, &b"eighth"[..]);
    let (reason, detail, initiator) = net.run_until_disconnected(c, conn, Duration::from_secs(2));
    assert_eq!(reason, ReasonCode::PERMISSION_DENIED);
    assert_eq!(initiator, Initiator::Peer);
    assert!(detail.contains("8 messages refused"), "{detail}");
    let (reason, _, initiator) = net.run_until_disconnected(SERVER, sconn, Duration::from_secs(1));
    assert_eq!(
        (reason, initiator),
        (ReasonCode::PERMISSION_DENIED, Initiator::Local)
    );
    assert!(!ReasonCode::PERMISSION_DENIED.is_retryable());
    let stats = net.node(SERVER).endpoint.endpoint_stats();
    assert_eq!(
        stats.message_refusals.not_permitted, 8,
        "closed sessions stay counted"
    );
    assert_eq!(stats.disconnections.get(&ReasonCode::PERMISSION_DENIED), Some(&1));
}

#[test]
fn zero_max_permission_violations_never_closes() {
    let (mut net, c, conn, sconn) = joined(server_config(table(), 0), permissive(&table()), Role::Player);
    for i in 0..50u8 {
        net.send(c, conn, ADMIN_RELIABLE, vec![i]);
        net.send(c, conn, ADMIN_UNRELIABLE, vec![i]);
        net.run_for(Duration::from_millis(20));
    }
    net.run_for(Duration::from_millis(200));
    assert!(net.node(c).connected(conn));
    let stats = net.node(SERVER).endpoint.stats(sconn).expect("live");
    assert_eq!(stats.refusals.not_permitted, 100);
    assert!(net.node(SERVER).messages(sconn, ADMIN_RELIABLE).is_empty());
    net.send(c, conn, PLAYER_RELIABLE, &b"still playing"[..]);
    net.run_for(Duration::from_millis(100));
    assert_eq!(net.node(SERVER).messages(sconn, PLAYER_RELIABLE).len(), 1);
}

#[test]
fn a_client_is_refused_locally_what_the_server_would_refuse() {
    for (role, channel, allowed) in [
        (Role::Spectator, PLAYER_RELIABLE, false),
        (Role::Spectator, PLAYER_UNRELIABLE, false),
        (Role::Spectator, PLAYER_SEQUENCED, false),
        (Role::Player, PLAYER_SEQUENCED, true),
        (Role::Player, ADMIN_RELIABLE, false),
        (Role::Player, ADMIN_SEQUENCED, false),
        (Role::Admin, ADMIN_RELIABLE, true),
        (Role::Admin, ADMIN_UNRELIABLE, true),
    ] {
        let (mut net, c, conn, sconn) = joined(server_config(table(), 8), server_config(table(), 8), role);
        let now = net.now;
        let sent = net.node_mut(c).endpoint.send(now, conn, channel, "x".into());
        if allowed {
            assert_eq!(sent, Ok(()), "{role:?} on {channel:?}");
        } else {
            assert_eq!(
                sent,
                Err(SendError::NotPermitted(channel)),
                "{role:?} on {channel:?}"
            );
            let stats = net.node(c).endpoint.stats(conn).expect("live");
            assert_eq!(stats.messages_sent, 0, "nothing is sent on error");
        }
        // The server's own sends are never checked.
        let now = net.now;
        assert_eq!(
            net.node_mut(SERVER)
                .endpoint
                .send(now, sconn, ADMIN_RELIABLE, "y".into()),
            Ok(())
        );
        net.run_for(Duration::from_millis(100));
        let stats = net.node(SERVER).endpoint.stats(sconn).expect("live");
        assert_eq!(stats.refusals.total(), 0, "an honest client trips nothing");
        assert_eq!(net.node(c).messages(conn, ADMIN_RELIABLE), vec![&b"y"[..]]);
    }
    assert_eq!(
        SendError::NotPermitted(ChannelId(3)).to_string(),
        "not permitted to send on channel ChannelId(3)"
    );
}

#[test]
fn an_oversized_message_redirected_to_a_reliable_channel_is_checked_against_that_channel() {
    // Spectators may send unreliable messages but not on the reliable channel that takes
    // oversized ones.
    let channels = vec![
        Channel::reliable(Priority::Game),
        Channel::unreliable().with_senders(Senders::everyone()),
    ];
    let config = Config {
        oversize_unreliable: tickwire_core::OversizePolicy::SendReliable,
        ..server_config(channels, 8)
    };
    let (mut net, c, conn, sconn) = joined(config.clone(), config, Role::Spectator);
    let now = net.now;
    let big = vec![7u8; 300 << 10]; // over fragment.max_message_bytes (256 KiB)
    let sent = net.node_mut(c).endpoint.send(now, conn, ChannelId(1), big.into());
    assert_eq!(sent, Err(SendError::NotPermitted(ChannelId(0))));
    net.send(c, conn, ChannelId(1), &b"small"[..]);
    net.run_for(Duration::from_millis(100));
    assert_eq!(
        net.node(SERVER).messages(sconn, ChannelId(1)),
        vec![&b"small"[..]]
    );
    let stats = net.node(SERVER).endpoint.stats(sconn).expect("live");
    assert_eq!(stats.refusals.total(), 0, "an honest client trips nothing");
}

#[test]
fn a_channel_rate_limit_drops_the_excess() {
    let channels = vec![
        Channel::reliable(Priority::Game).with_rate_limit(ChannelRateLimit::new(10.0, 3)),
        Channel::unreliable().with_rate_limit(ChannelRateLimit::new(10.0, 3)),
        Channel::sequenced(),
    ];
    let config = server_config(channels, 8);
    let (mut net, c, conn, sconn) = joined(config.clone(), config, Role::Player);
    for i in 0..10u8 {
        net.send(c, conn, ChannelId(0), vec![i]);
        net.send(c, conn, ChannelId(1), vec![i]);
        net.send(c, conn, ChannelId(2), vec![i]);
    }
    net.run_for(Duration::from_millis(50));
    let server = net.node(SERVER);
    assert_eq!(server.messages(sconn, ChannelId(0)), vec![&[0u8][..], &[1], &[2]]);
    assert_eq!(server.messages(sconn, ChannelId(1)).len(), 3);
    assert_eq!(
        server.messages(sconn, ChannelId(2)).len(),
        10,
        "a channel without a limit of its own"
    );
    assert_eq!(refusal_events(&net, ChannelId(0), RefusalCause::RateLimited), 1);
    assert_eq!(refusal_events(&net, ChannelId(1), RefusalCause::RateLimited), 1);
    let stats = net.node(SERVER).endpoint.stats(sconn).expect("live");
    assert_eq!(stats.refusals.rate_limited, 14);
    assert_eq!(stats.refusals.not_permitted, 0);

    // The bucket refills at 10 per second, and drops never close the session.
    net.run_for(Duration::from_millis(300));
    net.send(c, conn, ChannelId(0), &b"later"[..]);
    net.run_for(Duration::from_millis(100));
    assert!(net.node(c).connected(conn));
    assert_eq!(net.node(SERVER).messages(sconn, ChannelId(0)).len(), 4);
    assert_eq!(
        net.node(SERVER)
            .endpoint
            .endpoint_stats()
            .message_refusals
            .rate_limited,
        14
    );
}

#[test]
fn a_channel_rate_limit_can_close_with_rate_limited_and_a_retry_after() {
    let limit = ChannelRateLimit::new(2.0, 2).on_breach(Breach::Close);
    let channels = vec![
        Channel::reliable(Priority::Game).with_rate_limit(limit),
        Channel::unreliable(),
    ];
    let config = server_config(channels, 8);
    let (mut net, c, conn, sconn) = joined(config.clone(), config, Role::Player);
    for i in 0..3u8 {
        net.send(c, conn, ChannelId(0), vec![i]);
    }
    let closed = net.run_until_closed(c, conn, Duration::from_secs(2));
    let Event::Disconnected {
        reason,
        retry_after,
        initiator,
        ..
    } = closed
    else {
        panic!("expected a disconnection, got {closed:?}");
    };
    assert_eq!((reason, initiator), (ReasonCode::RATE_LIMITED, Initiator::Peer));
    // Two tokens at 2 per second were spent at once: the next one is half a second away.
    let retry_after = retry_after.expect("a retry-after");
    assert!(
        retry_after > Duration::ZERO && retry_after <= Duration::from_millis(500),
        "{retry_after:?}"
    );
    assert_eq!(net.node(SERVER).messages(sconn, ChannelId(0)).len(), 2);
    let stats = net.node(SERVER).endpoint.endpoint_stats();
    assert_eq!(stats.message_refusals.rate_limited, 1);
    assert_eq!(stats.disconnections.get(&ReasonCode::RATE_LIMITED), Some(&1));
    assert_eq!(
        refusal_events(&net, ChannelId(0), RefusalCause::RateLimited),
        0,
        "a close is reported as the disconnection"
    );
}

#[test]
fn a_channel_requiring_a_permission_bit_admits_only_tickets_that_carry_it() {
    const MODERATOR: u32 = 1 << 3;
    let moderated = Senders {
        permissions: MODERATOR,
        ..Senders::players()
    };
    let channels = vec![
        Channel::reliable(Priority::Game),
        Channel::unreliable().with_senders(moderated),
    ];
    for (permissions, delivered) in [
        (0, false),
        (1 << 2, false),
        (MODERATOR, true),
        (u32::MAX >> 1, true),
    ] {
        let server = server_config(channels.clone(), 0);
        let (mut net, c, conn, sconn) = joined_with(server.clone(), server, Role::Player, permissions);
        let now = net.now;
        let sent = net
            .node_mut(c)
            .endpoint
            .send(now, conn, ChannelId(1), "kick 7".into());
        assert_eq!(sent.is_ok(), delivered, "{permissions:#x}: {sent:?}");
        assert_eq!(
            net.node(c).endpoint.session(conn).map(|s| s.permissions),
            Some(permissions),
            "granted in the Accept"
        );
        net.run_for(Duration::from_millis(100));
        assert_eq!(
            net.node(SERVER).messages(sconn, ChannelId(1)).len(),
            usize::from(delivered)
        );
    }
    // A client out of step with the table is refused by the server instead.
    let server = server_config(channels.clone(), 0);
    let (mut net, c, conn, sconn) = joined_with(server, permissive(&channels), Role::Player, 1 << 2);
    net.send(c, conn, ChannelId(1), &b"kick 7"[..]);
    net.run_for(Duration::from_millis(100));
    assert!(net.node(SERVER).messages(sconn, ChannelId(1)).is_empty());
    assert_eq!(refusal_events(&net, ChannelId(1), RefusalCause::NotPermitted), 1);
}
