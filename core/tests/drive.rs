//! The drive contract: what an event or tick handler sends leaves in the same turn's
//! transmits, so a reply never waits for the next timer. In virtual time, datagrams carried by
//! hand between two endpoints.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ed25519_dalek::SigningKey;
use tickwire_core::testing::{epoch, START_UNIX_MS};
use tickwire_core::{
    ChannelId, Config, ConnHandle, ConnectOptions, Endpoint, Event, JoinTicketClaims, Secrets, TicketIssuer,
    WallClock,
};

const SERVER: &str = "10.0.0.1:4433";
const CLIENT: &str = "10.0.0.2:5000";

type Datagrams = Vec<(SocketAddr, Vec<u8>)>;

/// One turn in contract order: inputs, events (handled by `on_event`), ticks, transmits.
/// Returns the datagrams the turn sent.
fn turn(
    endpoint: &mut Endpoint,
    now: Instant,
    from: SocketAddr,
    inbox: Datagrams,
    mut on_event: impl FnMut(&mut Endpoint, Event),
) -> Datagrams {
    for (_, bytes) in inbox {
        endpoint.handle_datagram(now, from, None, None, bytes.as_slice().into());
    }
    if endpoint.poll_timeout().is_some_and(|deadline| deadline <= now) {
        endpoint.handle_timeout(now);
    }
    while let Some(event) = endpoint.poll_event() {
        on_event(endpoint, event);
    }
    while endpoint.poll_tick(now).is_some() {}
    let mut sent = Vec::new();
    let mut buf = Vec::new();
    while let Some(transmit) = endpoint.poll_transmit(now, &mut buf) {
        sent.push((transmit.destination, buf[..transmit.size].to_vec()));
    }
    sent
}

fn endpoints(now: Instant) -> (Endpoint, Endpoint, ConnHandle) {
    let wall = WallClock::new(now, START_UNIX_MS);
    let issuer = TicketIssuer::new(1, SigningKey::from_bytes(&[1; 32]));
    let server = Endpoint::builder(
        Config::default(),
        Secrets::insecure_from_seed(1),
        SigningKey::from_bytes(&[2; 32]),
        wall,
    )
    .trust_issuer(1, issuer.verifying_key())
    .server(7, now)
    .unwrap();
    let client_key = SigningKey::from_bytes(&[3; 32]);
    let mut client = Endpoint::builder(
        Config::default(),
        Secrets::insecure_from_seed(2),
        client_key.clone(),
        wall,
    )
    .client()
    .unwrap();
    let claims = JoinTicketClaims::builder(client_key.verifying_key().to_bytes(), [5; 16])
        .client_id(9)
        .audience(7)
        .valid_from(START_UNIX_MS)
        .lifetime_ms(60_000)
        .build();
    let conn = client
        .connect(
            now,
            SERVER.parse().unwrap(),
            issuer.issue(&claims),
            ConnectOptions::default(),
        )
        .unwrap();
    (server, client, conn)
}

/// Carries datagrams both ways, 1 ms per turn, until the client is connected. Returns the
/// time and the datagrams still on their way to the server.
fn join(server: &mut Endpoint, client: &mut Endpoint, mut now: Instant) -> (Instant, Datagrams) {
    let (server_addr, client_addr): (SocketAddr, SocketAddr) =
        (SERVER.parse().unwrap(), CLIENT.parse().unwrap());
    let mut to_server = turn(client, now, server_addr, Vec::new(), |_, _| {});
    for _ in 0..200 {
        let to_client = turn(
            server,
            now,
            client_addr,
            std::mem::take(&mut to_server),
            |_, _| {},
        );
        let mut connected = false;
        to_server = turn(client, now, server_addr, to_client, |_, event| {
            connected |= matches!(event, Event::Connected { .. });
        });
        if connected {
            return (now, to_server);
        }
        now += Duration::from_millis(1);
    }
    panic!("the client did not join");
}

#[test]
fn a_reply_from_an_event_handler_leaves_in_the_same_turn() {
    let now = epoch();
    let (mut server, mut client, conn) = endpoints(now);
    let (server_addr, client_addr): (SocketAddr, SocketAddr) =
        (SERVER.parse().unwrap(), CLIENT.parse().unwrap());
    let (now, mut to_server) = join(&mut server, &mut client, now);

    // The client sends; the server echoes from its event handler. The echo must be in the
    // datagrams of the server's very turn, with no time passing and no timer firing.
    client
        .send(now, conn, ChannelId::GAME, Bytes::from_static(b"ping"))
        .unwrap();
    let mut buf = Vec::new();
    while let Some(transmit) = client.poll_transmit(now, &mut buf) {
        to_server.push((transmit.destination, buf[..transmit.size].to_vec()));
    }
    let mut echoes = 0;
    let to_client = turn(&mut server, now, client_addr, to_server, |server, event| {
        if let Event::Message {
            conn,
            channel,
            payload,
        } = event
        {
            server.send(now, conn, channel, payload).unwrap();
            echoes += 1;
        }
    });
    assert_eq!(echoes, 1, "the server got the message this turn");
    let mut echoed = Vec::new();
    turn(&mut client, now, server_addr, to_client, |_, event| {
        if let Event::Message { payload, .. } = event {
            echoed.push(payload);
        }
    });
    assert_eq!(
        echoed,
        vec![Bytes::from_static(b"ping")],
        "the echo left in the server's same turn"
    );
}

#[test]
fn a_send_after_the_transmits_were_drained_makes_the_deadline_now() {
    let now = epoch();
    let (mut server, mut client, conn) = endpoints(now);
    let _ = &mut server;
    let mut buf = Vec::new();
    while client.poll_transmit(now, &mut buf).is_some() {}
    let before = client.poll_timeout().expect("a handshake timer is armed");
    assert!(before > now);
    // Not yet connected: the send is refused and moves nothing.
    assert!(client
        .send(now, conn, ChannelId::GAME, Bytes::from_static(b"x"))
        .is_err());
    assert_eq!(client.poll_timeout(), Some(before));
    // A command that queues output (a close) asks to be driven at once.
    client.close(now, conn, tickwire_core::ReasonCode::NORMAL, "bye");
    assert_eq!(client.poll_timeout(), Some(now), "queued output is due now");
    while client.poll_transmit(now, &mut buf).is_some() {}
    assert!(
        client.poll_timeout().is_none_or(|deadline| deadline > now),
        "drained: back to the timers"
    );
}

/// A client joined at virtual time `now`, with its first synchronised-tick deadline.
fn synchronised_client() -> (Endpoint, ConnHandle, Instant, Instant) {
    let now = epoch();
    let (mut server, mut client, conn) = endpoints(now);
    let (now, _) = join(&mut server, &mut client, now);
    let sync = client.tick_sync(conn).expect("a client connection");
    let deadline = sync.poll_timeout().expect("synchronised at the Accept");
    (client, conn, now, deadline)
}

#[test]
fn a_client_is_woken_for_its_ticks_but_not_continuously_when_it_does_not_tick() {
    let (mut client, conn, now, deadline) = synchronised_client();
    assert!(
        client.poll_timeout().is_some_and(|t| t <= deadline),
        "the tick deadline is the endpoint's"
    );

    // Woken at the tick, the application does not tick: the same deadline is not due again.
    let at = deadline.max(now);
    client.handle_timeout(at);
    let mut buf = Vec::new();
    while client.poll_transmit(at, &mut buf).is_some() {}
    assert!(
        client.poll_timeout().is_none_or(|t| t > at),
        "no busy wake-up for an unpolled tick"
    );

    // The tick is still there to take, and the next one counts again.
    let tick = client.poll_tick(at).expect("the due tick");
    assert_eq!(tick.conn, Some(conn));
    assert_eq!(tick.scheduled_at, deadline);
    let next = client.tick_sync(conn).unwrap().poll_timeout().unwrap();
    assert!(next > at);
    assert!(client.poll_timeout().is_some_and(|t| t <= next));
}

#[test]
fn a_closed_connection_has_no_more_ticks() {
    let (mut client, conn, now, deadline) = synchronised_client();
    client.close(now, conn, tickwire_core::ReasonCode::NORMAL, "leaving");
    while client.poll_event().is_some() {}
    let later = deadline.max(now) + Duration::from_millis(100);
    client.handle_timeout(later);
    assert!(client.poll_tick(later).is_none(), "no tick for a closed session");
}

#[test]
fn a_server_tick_due_at_the_latest_time_seen_is_delivered_to_an_earlier_reading() {
    let now = epoch();
    let (mut server, _client, _conn) = endpoints(now);
    let due = server.poll_timeout().expect("the first tick's deadline");
    assert!(
        server.poll_tick(due - Duration::from_millis(1)).is_none(),
        "not yet due"
    );
    // An input at the deadline, then a tick poll whose clock reads earlier: time never runs
    // backwards inside the endpoint, so the tick is due.
    server.handle_timeout(due);
    let tick = server
        .poll_tick(due - Duration::from_millis(1))
        .expect("due at the latest time seen");
    assert_eq!((tick.tick, tick.scheduled_at), (1, due));
    assert!(server.poll_tick(due).is_none(), "one tick per period");
}

#[test]
fn a_wake_up_that_finds_no_connection_due_leaves_the_timers_armed() {
    let now = epoch();
    let (mut server, mut client, _conn) = endpoints(now);
    let (now, _) = join(&mut server, &mut client, now);
    let mut buf = Vec::new();
    while client.poll_transmit(now, &mut buf).is_some() {}
    let deadline = client.poll_timeout().expect("a connection timer is armed");
    assert!(deadline > now);
    // Early and spurious: nothing runs, nothing moves.
    client.handle_timeout(now);
    assert!(client.poll_transmit(now, &mut buf).is_none());
    assert_eq!(client.poll_timeout(), Some(deadline));
    // At the deadline the connection's timer work runs (a ping or a tick is due by then).
    client.handle_timeout(deadline);
    while client.poll_tick(deadline).is_some() {}
    while client.poll_transmit(deadline, &mut buf).is_some() {}
    assert!(
        client.poll_timeout().is_some_and(|t| t > deadline),
        "re-armed later"
    );
}
