//! A smol server and a smol client on real loopback UDP. Real sockets need real time, so
//! every wait is bounded by `within`, which fails the test after 10 seconds.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use futures_lite::future;
use tickwire_core::{
    ChannelId, Config, ConnHandle, ConnectOptions, Event, Initiator, JoinTicket, JoinTicketClaims,
    ReasonCode, TicketIssuer, WallClock,
};
use tickwire_smol::{connect, wall_clock_now, Client, ConnectFailure, Received, Server, ServerOutput};

mod common;

use common::{identity, secrets, within};

const GS_ID: u64 = 42;
const ISSUER_KEY_ID: u32 = 1;
const SERVER_SEED: u64 = 1;
const CLIENT_SEED: u64 = 2;

/// A ticket issuer, the shared wall clock, and a server on an ephemeral loopback port that
/// trusts the issuer.
fn setup() -> (TicketIssuer, WallClock, Server) {
    let issuer = TicketIssuer::new(ISSUER_KEY_ID, identity(100));
    let wall = wall_clock_now();
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut server = Server::bind(
        addr,
        Config::default(),
        secrets(SERVER_SEED),
        identity(SERVER_SEED),
        GS_ID,
        wall,
    )
    .unwrap();
    server
        .tickets_mut()
        .add_key(ISSUER_KEY_ID, issuer.verifying_key());
    (issuer, wall, server)
}

fn ticket(issuer: &TicketIssuer, wall: WallClock, gs_id: u64) -> JoinTicket {
    let claims = JoinTicketClaims::builder(identity(CLIENT_SEED).verifying_key().to_bytes(), [9; 16])
        .client_id(7)
        .audience(gs_id)
        .valid_from(wall.unix_ms_at(Instant::now()))
        .lifetime_ms(60_000)
        .build();
    issuer.issue(&claims)
}

async fn join(wall: WallClock, server: SocketAddr, ticket: JoinTicket) -> Result<Client, ConnectFailure> {
    connect(
        Config::default(),
        secrets(CLIENT_SEED),
        identity(CLIENT_SEED),
        wall,
        server,
        ticket,
        ConnectOptions::default(),
    )
    .await
}

/// Serves until the first session is established; returns its handle.
async fn until_connected(server: &mut Server) -> ConnHandle {
    loop {
        if let ServerOutput::Event(Event::Connected { conn, .. }) = server.next().await.unwrap() {
            return conn;
        }
    }
}

/// Serves forever (to be raced against the client side).
async fn serve<T>(server: &mut Server) -> T {
    loop {
        server.next().await.unwrap();
    }
}

/// The server side of the main story: echoes every message on its channel with an
/// `echo:` prefix until the client says `bye` on the game channel, then shuts down.
/// Returns the messages it received and the server.
async fn echo_until_bye(mut server: Server) -> (Vec<(ChannelId, Bytes)>, Server) {
    let mut received = Vec::new();
    loop {
        let ServerOutput::Event(Event::Message {
            conn,
            channel,
            payload,
        }) = server.next().await.unwrap()
        else {
            continue;
        };
        received.push((channel, payload.clone()));
        if payload == "bye" {
            server.shutdown("maintenance").await.unwrap();
            return (received, server);
        }
        server
            .send(conn, channel, [&b"echo:"[..], &payload].concat())
            .unwrap();
    }
}

#[test]
fn client_joins_exchanges_messages_ticks_and_sees_server_shutdown() {
    smol::block_on(async {
        let (issuer, wall, server) = setup();
        let server_addr = server.local_addr().unwrap();
        let server_task = smol::spawn(echo_until_bye(server));

        let mut client = within("join", join(wall, server_addr, ticket(&issuer, wall, GS_ID)))
            .await
            .unwrap();
        assert_eq!(
            client.session().server_key,
            identity(SERVER_SEED).verifying_key().to_bytes()
        );

        // Client ticks follow the server's tick from the moment of the join.
        let first = within("first tick", client.next_tick()).await.unwrap();
        let second = within("second tick", client.next_tick()).await.unwrap();
        assert!(first >= client.session().server_tick);
        assert!(second > first);

        // A reliable and a datagram message each way.
        client.send(ChannelId::GAME, &b"reliable"[..]).unwrap();
        client.send(ChannelId::UNRELIABLE, &b"datagram"[..]).unwrap();
        let mut echoes = vec![
            within("echo 1", client.recv()).await.unwrap(),
            within("echo 2", client.recv()).await.unwrap(),
        ];
        echoes.sort_by_key(|m| m.channel);
        assert_eq!(
            echoes,
            vec![
                Received {
                    channel: ChannelId::GAME,
                    payload: Bytes::from_static(b"echo:reliable"),
                },
                Received {
                    channel: ChannelId::UNRELIABLE,
                    payload: Bytes::from_static(b"echo:datagram"),
                },
            ]
        );

        // The server shuts down when told to; the client learns why.
        client.send(ChannelId::GAME, &b"bye"[..]).unwrap();
        assert_eq!(within("close", client.recv()).await, None);
        assert_eq!(
            client.closed(),
            Some((ReasonCode::SERVER_SHUTDOWN, "maintenance"))
        );
        assert_eq!(client.next_tick().await, None);
        assert!(client.try_recv().is_none());

        let (received, mut server) = within("server shutdown", server_task).await;
        assert_eq!(received.len(), 3);
        assert!(received.contains(&(ChannelId::UNRELIABLE, Bytes::from_static(b"datagram"))));
        let stats = server.io().endpoint_ref().endpoint_stats();
        assert_eq!(stats.sessions_established, 1);
        assert_eq!(stats.disconnections.get(&ReasonCode::SERVER_SHUTDOWN), Some(&1));
        assert_eq!(server.io().endpoint_ref().connection_count(), 0);
        assert!(client.io().pump_stats().datagrams_in > 0);
        assert_eq!(client.io().pump_stats().send_errors, 0);
    });
}

#[test]
fn ticket_for_another_server_is_rejected_with_its_reason() {
    smol::block_on(async {
        let (issuer, wall, mut server) = setup();
        let server_addr = server.local_addr().unwrap();
        let ticket = ticket(&issuer, wall, GS_ID + 1);

        let result = within(
            "rejection",
            future::or(join(wall, server_addr, ticket), serve(&mut server)),
        )
        .await;
        let Err(ConnectFailure::Rejected { reason, .. }) = result else {
            panic!("expected a rejection, got {result:?}");
        };
        assert_eq!(reason, ReasonCode::TICKET_WRONG_AUDIENCE);
    });
}

#[test]
fn client_close_reaches_the_server_with_its_reason() {
    smol::block_on(async {
        let (issuer, wall, mut server) = setup();
        let server_addr = server.local_addr().unwrap();

        let (client, sconn) = within(
            "join",
            future::zip(
                join(wall, server_addr, ticket(&issuer, wall, GS_ID)),
                until_connected(&mut server),
            ),
        )
        .await;
        let mut client = client.unwrap();
        client.close(ReasonCode::NORMAL, "done playing").await.unwrap();
        assert_eq!(client.closed(), Some((ReasonCode::NORMAL, "done playing")));

        let event = within("disconnect", async {
            loop {
                if let ServerOutput::Event(event @ Event::Disconnected { .. }) = server.next().await.unwrap()
                {
                    return event;
                }
            }
        })
        .await;
        assert_eq!(
            event,
            Event::Disconnected {
                conn: sconn,
                reason: ReasonCode::NORMAL,
                retry_after: None,
                detail: "done playing".into(),
                initiator: Initiator::Peer,
            }
        );
    });
}
