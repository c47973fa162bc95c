//! A smol server with its admin endpoint on real loopback: `/ready` is 200 while it admits,
//! `/metrics` shows a joined client, `/health` turns 503 when it drains.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use async_io::Timer;
use tickwire_core::{Config, ConnectOptions, JoinTicketClaims, TicketIssuer};
use tickwire_smol::admin::Admin;
use tickwire_smol::{connect, wall_clock_now, Server};

mod common;

use common::{identity, secrets, within};

/// `GET path` over HTTP/1.0: `(status, body)`.
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response.split_whitespace().nth(1).unwrap().parse().unwrap();
    (
        status,
        response.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned(),
    )
}

#[test]
fn a_smol_server_serves_its_metrics_and_readiness() {
    let wall = wall_clock_now();
    let issuer = TicketIssuer::new(1, identity(100));
    let mut server = Server::bind(
        "127.0.0.1:0".parse().unwrap(),
        Config::default(),
        secrets(1),
        identity(1),
        42,
        wall,
    )
    .unwrap();
    server.tickets_mut().add_key(1, issuer.verifying_key());
    let server_addr = server.local_addr().unwrap();
    let mut admin = Admin::serve("127.0.0.1:0".parse().unwrap()).unwrap();
    let admin_addr = admin.local_addr();
    assert_eq!(
        get(admin_addr, "/ready").0,
        503,
        "not ready before the loop says so"
    );
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let loop_thread = std::thread::spawn(move || {
        smol::block_on(async move {
            while stop_rx.try_recv().is_err() {
                server.next().await.unwrap();
                admin.update(&mut server, None);
            }
            admin.start_draining();
            server.shutdown("test over").await.unwrap();
        })
    });

    smol::block_on(async {
        let claims = JoinTicketClaims::builder(identity(2).verifying_key().to_bytes(), [3; 16])
            .audience(42)
            .valid_from(wall.unix_ms_at(Instant::now()))
            .lifetime_ms(60_000)
            .build();
        let ticket = issuer.issue(&claims);
        let options = ConnectOptions::default();
        let client = connect(
            Config::default(),
            secrets(2),
            identity(2),
            wall,
            server_addr,
            ticket,
            options,
        );
        let mut client = within("join", client).await.unwrap();
        within("the join in /metrics", async {
            loop {
                let metrics = get(admin_addr, "/metrics").1;
                if metrics.contains("tickwire_sessions{state=\"established\"} 1") {
                    break;
                }
                // Keep the client's side of the session driven while waiting.
                futures_lite::future::or(
                    async {
                        client.next_tick().await;
                    },
                    async {
                        Timer::after(Duration::from_millis(50)).await;
                    },
                )
                .await;
            }
        })
        .await;
    });
    assert_eq!(get(admin_addr, "/ready").0, 200);
    assert_eq!(get(admin_addr, "/health").0, 200);
    stop_tx.send(()).unwrap();
    loop_thread.join().unwrap();
}
