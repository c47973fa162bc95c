//! Durable state across restarts, with real sockets: a game server with a store refuses a
//! join ticket consumed before its restart (`TICKET_REPLAYED`), as a netcode.io-style replay
//! across a restart would otherwise succeed until the ticket expires.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use tickwire_apps::demo::{demo_config, run_server, ServerOptions, DEMO_GS_ID, DEMO_KEY_ID};
use tickwire_core::{ConnectOptions, JoinTicket, JoinTicketClaims, ReasonCode, Secrets, TicketIssuer};
use tickwire_smol::{connect, wall_clock_now, ConnectFailure};

fn issuer() -> SigningKey {
    SigningKey::from_bytes(&[0x1B; 32])
}

fn client_identity() -> SigningKey {
    SigningKey::from_bytes(&[0x2C; 32])
}

fn temp_store(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tickwire-store-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("gs.db")
}

/// Runs a game server with `store` for `duration` on a thread; its address and the thread.
fn start_server(store: &Path, duration: Duration) -> (SocketAddr, std::thread::JoinHandle<()>) {
    let options = ServerOptions {
        identity: SigningKey::from_bytes(&[0x01; 32]),
        trusted_issuer: issuer().verifying_key(),
        gs_id: DEMO_GS_ID,
        config: demo_config(),
        duration,
        vs: None,
        store: Some(store.to_path_buf()),
        token_key_file: None,
        record: None,
    };
    let (tx, rx) = mpsc::channel();
    let thread = std::thread::spawn(move || {
        run_server(
            "127.0.0.1:0".parse().unwrap(),
            &options,
            |addr| tx.send(addr).unwrap(),
            |_, _| {},
        )
        .unwrap();
    });
    (rx.recv_timeout(Duration::from_secs(10)).unwrap(), thread)
}

/// Joins `server` with `ticket`: `Ok` once established, else the rejection's reason.
fn join(server: SocketAddr, ticket: JoinTicket) -> Result<(), ReasonCode> {
    let attempt = connect(
        demo_config(),
        Secrets::insecure_from_seed(3),
        client_identity(),
        wall_clock_now(),
        server,
        ticket,
        ConnectOptions::default(),
    );
    match smol::block_on(attempt) {
        Ok(_client) => Ok(()),
        Err(ConnectFailure::Rejected { reason, .. }) => Err(reason),
        Err(other) => panic!("join failed: {other}"),
    }
}

#[test]
fn a_join_ticket_used_before_a_game_server_restart_is_refused_after_it() {
    let store = temp_store("jti");
    let claims = JoinTicketClaims::builder(client_identity().verifying_key().to_bytes(), [0x77; 16])
        .client_id(5)
        .audience(DEMO_GS_ID)
        .valid_from(wall_clock_now().unix_ms_at(Instant::now()))
        .lifetime_ms(60_000)
        .build();
    let ticket = TicketIssuer::new(DEMO_KEY_ID, issuer()).issue(&claims);

    // Each server runs for a fixed time, which must cover the join on a loaded machine.
    let (addr, first) = start_server(&store, Duration::from_secs(4));
    assert_eq!(join(addr, ticket.clone()), Ok(()), "the ticket's first use");
    first.join().unwrap();

    // A new process on the same store: the ticket is still valid, and already used.
    let (addr, second) = start_server(&store, Duration::from_secs(4));
    assert_eq!(join(addr, ticket), Err(ReasonCode::TICKET_REPLAYED));
    second.join().unwrap();
}
