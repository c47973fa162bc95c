//! Cross-crate integration tests for tickwire live in `tests/`; this library holds what they
//! share: a mio game server on its own thread that echoes every message, reports events and
//! obeys commands.

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ed25519_dalek::SigningKey;
use tickwire_core::{
    ChannelId, Config, ConnHandle, Endpoint, Event, JoinTicket, JoinTicketClaims, Secrets, TicketIssuer,
};
use tickwire_mio::{wall_clock_now, MioRuntime};

/// Game server id of the test server.
pub const GS_ID: u64 = 42;
/// Longest any test waits for one thing on real sockets before failing.
pub const PATIENCE: Duration = Duration::from_secs(15);

/// Config for tests: fast heartbeats so liveness tests finish quickly.
pub fn test_config() -> Config {
    let mut config = Config::default();
    config.heartbeat.interval_ms = 100;
    config.heartbeat.timeout_ms = 1_000;
    config.idle_timeout_ms = 5_000;
    config
}

/// The issuer both sides trust.
pub fn issuer() -> TicketIssuer {
    TicketIssuer::new(1, SigningKey::from_bytes(&[0x15; 32]))
}

/// Secrets number `n`: reproducible, so insecure (`Secrets::insecure_from_seed`); tests only.
pub fn secrets(n: u8) -> Secrets {
    Secrets::insecure_from_seed(u64::from(n))
}

/// Identity key number `n`.
pub fn identity(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

/// A fresh ticket for identity `n` (unique `jti` per call through `serial`).
pub fn ticket(n: u8, serial: u64) -> JoinTicket {
    let mut jti = [n; 16];
    jti[..8].copy_from_slice(&serial.to_be_bytes());
    let now_ms = wall_clock_now().unix_ms;
    let key = identity(n).verifying_key().to_bytes();
    issuer().issue(
        &JoinTicketClaims::builder(key, jti)
            .client_id(u64::from(n))
            .audience(GS_ID)
            .valid_from(now_ms)
            .lifetime_ms(60_000)
            .build(),
    )
}

/// Commands to the server thread.
#[derive(Debug)]
pub enum Command {
    /// Shut down gracefully with this detail, then stop.
    Shutdown(String),
}

/// A mio echo server on its own thread.
#[derive(Debug)]
pub struct EchoServer {
    /// Its UDP address.
    pub addr: SocketAddr,
    /// Every event it saw, with the time it saw it.
    pub events: mpsc::Receiver<(Instant, Event)>,
    commands: mpsc::Sender<Command>,
    thread: Option<JoinHandle<()>>,
}

impl EchoServer {
    /// Starts the server with `config`, identity and secrets number 200.
    pub fn start(config: Config) -> Self {
        let (addr_tx, addr_rx) = mpsc::channel();
        let (event_tx, events) = mpsc::channel();
        let (commands, command_rx) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            let mut endpoint = Endpoint::builder(config, secrets(200), identity(200), wall_clock_now())
                .server(GS_ID, Instant::now())
                .expect("valid config");
            endpoint
                .server_mut()
                .expect("a server endpoint")
                .tickets()
                .add_key(1, issuer().verifying_key());
            let mut runtime = MioRuntime::new().expect("poller");
            let node = runtime
                .bind("127.0.0.1:0".parse().expect("address"), endpoint)
                .expect("bind");
            addr_tx
                .send(runtime.local_addr(node).expect("addr"))
                .expect("test alive");
            let stop_at = Instant::now() + Duration::from_secs(120);
            while Instant::now() < stop_at {
                runtime.turn(Some(Duration::from_millis(5))).expect("turn");
                let endpoint = runtime.endpoint(node);
                while endpoint.poll_tick(Instant::now()).is_some() {}
                while let Some(event) = endpoint.poll_event() {
                    if let Event::Message {
                        conn,
                        channel,
                        payload,
                    } = &event
                    {
                        echo(endpoint, *conn, *channel, payload.clone());
                    }
                    if event_tx.send((Instant::now(), event)).is_err() {
                        return;
                    }
                }
                runtime.flush(node);
                match command_rx.try_recv() {
                    Ok(Command::Shutdown(detail)) => {
                        runtime
                            .shutdown(node, &detail, Duration::from_secs(2))
                            .expect("shutdown");
                        return;
                    }
                    Err(mpsc::TryRecvError::Disconnected) => return,
                    Err(mpsc::TryRecvError::Empty) => {}
                }
            }
        });
        let addr = addr_rx.recv_timeout(PATIENCE).expect("server starts");
        Self {
            addr,
            events,
            commands,
            thread: Some(thread),
        }
    }

    /// Waits for an event matching `pred`, returning it and when the server saw it.
    ///
    /// # Panics
    /// If none arrives within [`PATIENCE`].
    pub fn wait_for(&self, what: &str, mut pred: impl FnMut(&Event) -> bool) -> (Instant, Event) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok((at, event)) if pred(&event) => return (at, event),
                Ok(_) => {}
                Err(_) => panic!("server never saw {what}"),
            }
        }
    }

    /// Asks the server to shut down gracefully.
    pub fn shutdown(&self, detail: &str) {
        let _ = self.commands.send(Command::Shutdown(detail.to_owned()));
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Shutdown("test over".into()));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn echo(endpoint: &mut Endpoint, conn: ConnHandle, channel: ChannelId, payload: Bytes) {
    let _ = endpoint.send(Instant::now(), conn, channel, payload);
}
