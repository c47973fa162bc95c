//! A game server and a client on `std::net::UdpSocket`, in one process: the client joins with
//! a join ticket, sends "hello", and the server echoes it from its event handler.
//!
//! Run it with `cargo run -p tickwire-core --example std_socket`.

// The program around the core owns the socket and the clock; the core itself does neither.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::io;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ed25519_dalek::SigningKey;
use tickwire_core::{
    ChannelId, Config, ConnectOptions, Endpoint, Event, JoinTicketClaims, Secrets, TicketIssuer, WallClock,
};

/// One turn of the drive contract: inputs, then events, then ticks, then transmits. Whatever
/// the event and tick handlers send leaves in this turn's transmits.
fn turn(
    endpoint: &mut Endpoint,
    socket: &UdpSocket,
    mut on_event: impl FnMut(&mut Endpoint, Instant, Event),
) -> io::Result<()> {
    // 1. Inputs: a datagram if one arrives before the endpoint's deadline, then timers.
    let now = Instant::now();
    let wait = endpoint
        .poll_timeout()
        .map_or(Duration::from_millis(20), |deadline| {
            deadline.saturating_duration_since(now)
        })
        .clamp(Duration::from_millis(1), Duration::from_millis(20));
    socket.set_read_timeout(Some(wait))?;
    let mut buf = [0u8; 65_535];
    match socket.recv_from(&mut buf) {
        Ok((len, from)) => endpoint.handle_datagram(Instant::now(), from, None, None, buf[..len].into()),
        Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
        Err(e) => return Err(e),
    }
    let now = Instant::now();
    if endpoint.poll_timeout().is_some_and(|deadline| deadline <= now) {
        endpoint.handle_timeout(now);
    }
    // 2. Events: the application reacts, and may send.
    while let Some(event) = endpoint.poll_event() {
        on_event(endpoint, now, event);
    }
    // 3. Ticks: a server runs the game for each due tick and sends snapshots; a client sends
    //    its inputs on its synchronised ticks.
    while let Some(tick) = endpoint.poll_tick(now) {
        let _ = tick.tick;
    }
    // 4. Transmits: everything queued above leaves now.
    let mut out = Vec::new();
    while let Some(transmit) = endpoint.poll_transmit(now, &mut out) {
        socket.send_to(&out[..transmit.size], transmit.destination)?;
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let start = Instant::now();
    // Wall-clock time, for tickets: a runtime reads the system clock once
    // (`tickwire_mio::wall_clock_now`). Keys and secrets come from the operating system in
    // production (`tickwire_udp::os`); fixed here so that the example is self-contained.
    let wall = WallClock::new(start, 1_767_225_600_000);
    let issuer = TicketIssuer::new(1, SigningKey::from_bytes(&[1; 32]));
    let server_key = SigningKey::from_bytes(&[2; 32]);
    let client_key = SigningKey::from_bytes(&[3; 32]);

    let mut server = Endpoint::builder(
        Config::default(),
        Secrets::insecure_from_seed(1),
        server_key,
        wall,
    )
    .trust_issuer(1, issuer.verifying_key())
    .server(7, start)?;
    let mut client = Endpoint::builder(
        Config::default(),
        Secrets::insecure_from_seed(2),
        client_key.clone(),
        wall,
    )
    .client()?;
    let server_socket = UdpSocket::bind("127.0.0.1:0")?;
    let client_socket = UdpSocket::bind("127.0.0.1:0")?;

    // The lobby issues a join ticket for this client and this game server.
    let claims = JoinTicketClaims::builder(client_key.verifying_key().to_bytes(), [9; 16])
        .client_id(42)
        .audience(7)
        .valid_from(wall.unix_ms_at(start))
        .lifetime_ms(30_000)
        .build();
    client.connect(
        start,
        server_socket.local_addr()?,
        issuer.issue(&claims),
        ConnectOptions::default(),
    )?;

    let mut echoed = None;
    for _ in 0..500 {
        turn(&mut server, &server_socket, |server, now, event| {
            if let Event::Message {
                conn,
                channel,
                payload,
            } = event
            {
                // Sent from the event handler: it leaves in this turn.
                let _ = server.send(now, conn, channel, payload);
            }
        })?;
        turn(&mut client, &client_socket, |client, now, event| match event {
            Event::Connected { conn, session } => {
                println!("joined as {:?}, session {:#x}", session.role, session.session_id);
                let _ = client.send(now, conn, ChannelId::GAME, Bytes::from_static(b"hello"));
            }
            Event::Message { payload, .. } => echoed = Some(payload),
            Event::Rejected { reason, detail, .. } => panic!("rejected: {reason} ({detail})"),
            _ => {}
        })?;
        if echoed.is_some() {
            break;
        }
    }
    assert_eq!(
        echoed.as_deref(),
        Some(&b"hello"[..]),
        "the server echoed the message"
    );
    println!("echoed {:?}", echoed.unwrap_or_default());
    Ok(())
}
