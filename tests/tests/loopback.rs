//! Real UDP on loopback: a mio game server with a smol client and a mio client. Every wait is
//! bounded by `PATIENCE`; nothing sleeps to synchronise.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tickwire_core::{ChannelId, ConnHandle, ConnectOptions, Endpoint, Event, ReasonCode};
use tickwire_mio::{wall_clock_now, MioRuntime, NodeId};
use tickwire_tests::{identity, secrets, test_config, ticket, EchoServer, PATIENCE};

/// A client on the mio runtime, driven by the test thread.
struct MioClient {
    runtime: MioRuntime,
    node: NodeId,
    conn: ConnHandle,
}

impl MioClient {
    fn connect(server: SocketAddr, n: u8) -> Self {
        let endpoint = Endpoint::builder(test_config(), secrets(n), identity(n), wall_clock_now())
            .client()
            .unwrap();
        let mut runtime = MioRuntime::new().unwrap();
        let node = runtime.bind("127.0.0.1:0".parse().unwrap(), endpoint).unwrap();
        let conn = runtime
            .endpoint(node)
            .connect(Instant::now(), server, ticket(n, 1), ConnectOptions::default())
            .unwrap();
        runtime.flush(node);
        let mut client = Self { runtime, node, conn };
        client.wait_for("join", |e| matches!(e, Event::Connected { .. }));
        client
    }

    fn endpoint(&mut self) -> &mut Endpoint {
        self.runtime.endpoint(self.node)
    }

    fn send(&mut self, channel: ChannelId, payload: Bytes) {
        let conn = self.conn;
        self.endpoint()
            .send(Instant::now(), conn, channel, payload)
            .unwrap();
        self.runtime.flush(self.node);
    }

    fn wait_for(&mut self, what: &str, mut pred: impl FnMut(&Event) -> bool) -> Event {
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            self.runtime.turn(Some(Duration::from_millis(5))).unwrap();
            while let Some(event) = self.endpoint().poll_event() {
                assert!(!matches!(event, Event::Rejected { .. }), "rejected: {event:?}");
                if pred(&event) {
                    return event;
                }
            }
        }
        panic!("client never saw {what}");
    }
}

#[test]
fn smol_and_mio_clients_join_exchange_and_hear_the_shutdown_reason() {
    let server = EchoServer::start(test_config());
    let addr = server.addr;

    let smol_client = std::thread::spawn(move || {
        smol::block_on(async {
            let mut client = tickwire_smol::connect(
                test_config(),
                secrets(7),
                identity(7),
                wall_clock_now(),
                addr,
                ticket(7, 1),
                ConnectOptions::default(),
            )
            .await
            .expect("smol client joins");
            client.send(ChannelId::GAME, &b"hello from smol"[..]).unwrap();
            client
                .send(ChannelId::UNRELIABLE, &b"datagram from smol"[..])
                .unwrap();
            let mut echoes = Vec::new();
            while echoes.len() < 2 {
                let received = client.recv().await.expect("echo before close");
                echoes.push(received.payload);
            }
            echoes.sort();
            // Keep reading until the server's shutdown closes the session.
            while client.recv().await.is_some() {}
            let stats = client.stats();
            let (reason, detail) = client.closed().expect("closed with a reason");
            (echoes, reason, detail.to_owned(), stats)
        })
    });

    let mut mio = MioClient::connect(addr, 8);
    let bulk: Vec<u8> = (0..2 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(31) % 251) as u8)
        .collect();
    mio.send(ChannelId::BULK, Bytes::from(bulk.clone()));
    let echoed = mio.wait_for(
        "2 MiB echo",
        |e| matches!(e, Event::Message { channel, .. } if *channel == ChannelId::BULK),
    );
    let Event::Message { payload, .. } = echoed else {
        unreachable!()
    };
    assert!(payload == bulk, "2 MiB payload came back intact");

    // Heartbeats have run long enough to measure the path.
    let conn = mio.conn;
    let deadline = Instant::now() + PATIENCE;
    while mio.endpoint().stats(conn).unwrap().heartbeat.pongs_received == 0 {
        assert!(Instant::now() < deadline, "no heartbeat samples");
        mio.runtime.turn(Some(Duration::from_millis(5))).unwrap();
    }
    let stats = mio.endpoint().stats(conn).unwrap();
    assert!(
        stats.heartbeat.pongs_received > 0 && stats.heartbeat.srtt_ms > 0.0,
        "{stats:?}"
    );
    assert!(stats.udp_rx_bytes > bulk.len() as u64 && stats.udp_tx_bytes > bulk.len() as u64);

    server.wait_for("both sessions", {
        let mut joined = 0;
        move |e| {
            joined += usize::from(matches!(e, Event::Connected { .. }));
            joined == 2
        }
    });
    server.shutdown("maintenance");
    let closed = mio.wait_for("shutdown", |e| matches!(e, Event::Disconnected { .. }));
    assert!(
        matches!(&closed, Event::Disconnected { reason: ReasonCode::SERVER_SHUTDOWN, detail, .. } if detail == "maintenance"),
        "{closed:?}"
    );

    let (echoes, reason, detail, _) = smol_client.join().unwrap();
    assert_eq!(
        echoes,
        vec![
            Bytes::from_static(b"datagram from smol"),
            Bytes::from_static(b"hello from smol")
        ]
    );
    assert_eq!(
        (reason, detail.as_str()),
        (ReasonCode::SERVER_SHUTDOWN, "maintenance")
    );
}

#[test]
fn a_vanished_client_is_detected_within_the_heartbeat_timeout() {
    let server = EchoServer::start(test_config());
    let mut client = MioClient::connect(server.addr, 9);
    server.wait_for("join", |e| matches!(e, Event::Connected { .. }));
    // Play long enough for both sides to measure RTT: with no sample yet, the adaptive timeout
    // is built on RFC 9002's 333 ms initial RTT and comes to ~3.3 s instead of the configured 1 s.
    client.send(ChannelId::GAME, Bytes::from_static(b"ping"));
    client.wait_for("echo", |e| matches!(e, Event::Message { .. }));
    let conn = client.conn;
    let deadline = Instant::now() + PATIENCE;
    while client.endpoint().stats(conn).unwrap().heartbeat.pings_received < 5 {
        assert!(Instant::now() < deadline, "no server pings");
        client.runtime.turn(Some(Duration::from_millis(5))).unwrap();
    }
    drop(client); // no close: the process "crashed"
    let (_, event) = server.wait_for("disconnect", |e| matches!(e, Event::Disconnected { .. }));
    assert!(
        matches!(
            event,
            Event::Disconnected {
                reason: ReasonCode::HEARTBEAT_TIMEOUT,
                ..
            }
        ),
        "{event:?}"
    );
    // The heartbeat's verdict, not QUIC's idle timeout: `HEARTBEAT_TIMEOUT`, after the
    // adaptive timeout. How long that took in real time is not asserted (a busy machine
    // inflates RTT samples and delays threads); the core's virtual-time tests pin the timing.
}
