//! tickwire endpoints in memory: one game server and N clients that joined it with join tickets.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use ed25519_dalek::SigningKey;
use tickwire_core::config::RateLimitConfig;
use tickwire_core::{
    ChannelId, Config, ConnHandle, ConnectOptions, Endpoint, Event, JoinTicket, JoinTicketClaims, Secrets,
    TicketIssuer, WallClock,
};

use crate::{client_addr, client_index, server_addr, Delivery, Net, DATAGRAM_SEND_BUFFER_BYTES, MAX_TURNS};

/// Unix time at the start of every net, in milliseconds (2026-01-01T00:00:00Z).
const START_UNIX_MS: u64 = 1_767_225_600_000;
/// Game server id the server runs as and tickets name.
const GS_ID: u64 = 7;
/// Key id of the lobby's ticket key.
const ISSUER_KEY_ID: u32 = 1;

/// The configuration both sides use: tickwire's defaults, except that the per-peer message
/// and byte rate limits are far above what a benchmark batch sends at one instant (the token
/// buckets are still charged for every message) and the datagram send buffer is
/// [`DATAGRAM_SEND_BUFFER_BYTES`], like the raw baseline's.
pub fn config() -> Config {
    Config {
        datagram_send_buffer_bytes: DATAGRAM_SEND_BUFFER_BYTES,
        max_queued_datagrams: 1 << 16,
        limits: RateLimitConfig {
            messages_per_sec: 1e12,
            message_burst: 1 << 40,
            bytes_per_sec: 1e15,
            byte_burst: 1 << 50,
            ..RateLimitConfig::default()
        },
        ..Config::default()
    }
}

/// A lobby's ticket issuer with a fixed key.
pub fn issuer() -> TicketIssuer {
    TicketIssuer::new(ISSUER_KEY_ID, SigningKey::from_bytes(&[1; 32]))
}

/// Identity key of client `index`, fixed.
fn client_key(index: usize) -> SigningKey {
    let mut bytes = [0x5c; 32];
    bytes[..8].copy_from_slice(&(index as u64).to_le_bytes());
    SigningKey::from_bytes(&bytes)
}

/// A join ticket for client `index`, valid from `unix_ms` for five minutes (the longest a
/// verifier accepts by default).
pub fn ticket(issuer: &TicketIssuer, index: usize, unix_ms: u64, jti: u64) -> JoinTicket {
    let mut id = [0; 16];
    id[..8].copy_from_slice(&jti.to_le_bytes());
    let claims = JoinTicketClaims::builder(client_key(index).verifying_key().to_bytes(), id)
        .client_id(index as u64 + 1)
        .audience(GS_ID)
        .valid_from(unix_ms)
        .lifetime_ms(300_000)
        .build();
    issuer.issue(&claims)
}

/// One client endpoint and its connection to the server.
#[derive(Debug)]
struct Client {
    endpoint: Endpoint,
    conn: Option<ConnHandle>,
    joined: bool,
}

/// A tickwire game server and N clients in memory, in virtual time.
#[derive(Debug)]
pub struct TwNet {
    /// Virtual time.
    pub now: Instant,
    server: Endpoint,
    clients: Vec<Client>,
    /// The server's handle of each client's session, by client index.
    server_conns: Vec<Option<ConnHandle>>,
    buf: Vec<u8>,
    /// Messages the server received.
    pub server_received: u64,
    /// Messages the clients received.
    pub clients_received: u64,
    /// Times an endpoint's deadline was not after now in a turn that sent nothing.
    pub stalls: u64,
}

impl TwNet {
    /// A server and `clients` clients, not yet connected; `seed` derives every endpoint's
    /// secrets.
    ///
    /// # Panics
    /// If tickwire refuses the configuration.
    pub fn new(clients: usize, seed: u64) -> Self {
        #[allow(clippy::disallowed_methods)] // the one clock read: virtual time starts here
        let now = Instant::now();
        let wall = WallClock::new(now, START_UNIX_MS);
        let server = Endpoint::builder(
            config(),
            Secrets::insecure_from_seed(seed),
            SigningKey::from_bytes(&[2; 32]),
            wall,
        )
        .trust_issuer(ISSUER_KEY_ID, issuer().verifying_key())
        .server(GS_ID, now)
        .expect("benchmark configuration is valid");
        let clients = (0..clients)
            .map(|i| Client {
                endpoint: Endpoint::builder(
                    config(),
                    Secrets::insecure_from_seed(seed.wrapping_add(1 + i as u64)),
                    client_key(i),
                    wall,
                )
                .client()
                .expect("benchmark configuration is valid"),
                conn: None,
                joined: false,
            })
            .collect::<Vec<_>>();
        Self {
            now,
            server,
            server_conns: vec![None; clients.len()],
            clients,
            buf: Vec::with_capacity(1500),
            server_received: 0,
            clients_received: 0,
            stalls: 0,
        }
    }

    /// Number of clients.
    pub fn len(&self) -> usize {
        self.clients.len()
    }

    /// Whether the net has no clients.
    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }

    /// A fresh join ticket from `issuer` for every client, by index.
    pub fn tickets(&self, issuer: &TicketIssuer) -> Vec<JoinTicket> {
        (0..self.clients.len())
            .map(|i| ticket(issuer, i, START_UNIX_MS, i as u64))
            .collect()
    }

    /// Starts every client's join, client `i` with `tickets[i]`.
    ///
    /// # Panics
    /// If a client refuses to connect.
    pub fn start_joins(&mut self, tickets: Vec<JoinTicket>) {
        for (client, ticket) in self.clients.iter_mut().zip(tickets) {
            let conn = client
                .endpoint
                .connect(self.now, server_addr(), ticket, ConnectOptions::default())
                .expect("a client connects");
            client.conn = Some(conn);
        }
    }

    /// Whether every client has joined, on both sides.
    pub fn all_joined(&self) -> bool {
        self.clients.iter().all(|c| c.joined) && self.server_conns.iter().all(Option::is_some)
    }

    /// Builds a net of `clients` clients and joins them all.
    ///
    /// # Panics
    /// If the joins do not complete.
    pub fn joined(clients: usize, seed: u64) -> Self {
        let mut net = Self::new(clients, seed);
        let tickets = net.tickets(&issuer());
        net.start_joins(tickets);
        net.run_until(|net| net.all_joined());
        net
    }

    /// Client `index` sends `payload` to the server.
    ///
    /// # Panics
    /// If tickwire refuses the message.
    pub fn client_send(&mut self, index: usize, delivery: Delivery, payload: Bytes) {
        let client = &mut self.clients[index];
        let conn = client.conn.expect("the client joined");
        client
            .endpoint
            .send(self.now, conn, channel(delivery), payload)
            .expect("the client may send");
    }

    /// The server sends `payload` to client `index` on `channel`.
    ///
    /// # Panics
    /// If tickwire refuses the message.
    pub fn server_send(&mut self, index: usize, channel: ChannelId, payload: Bytes) {
        let conn = self.server_conns[index].expect("the client joined");
        self.server
            .send(self.now, conn, channel, payload)
            .expect("the server may send");
    }

    /// Runs turns until `done` holds, moving time only when nothing is sent.
    ///
    /// # Panics
    /// If nothing can happen any more, or after [`MAX_TURNS`] turns.
    pub fn run_until(&mut self, mut done: impl FnMut(&Self) -> bool) {
        for _ in 0..MAX_TURNS {
            if done(self) {
                return;
            }
            if !self.turn() {
                self.now = self.next_time();
            }
        }
        panic!(
            "livelock: {MAX_TURNS} turns without reaching the goal; server deadline in {:?}, earliest client deadline in {:?}, server received {}, clients {}, sessions live {}",
            self.server.poll_timeout().map(|t| t.saturating_duration_since(self.now)),
            self.clients.iter().filter_map(|c| c.endpoint.poll_timeout()).min().map(|t| t.saturating_duration_since(self.now)),
            self.server_received,
            self.clients_received,
            self.server.sessions_live()
        );
    }

    /// Advances virtual time by `by` and runs turns until nothing more is sent.
    pub fn advance(&mut self, by: Duration) {
        self.now += by;
        while self.turn() {}
    }

    /// Where time goes when no endpoint sent anything (see [`crate::next_time`]).
    fn next_time(&mut self) -> Instant {
        let now = self.now;
        let deadlines = self
            .clients
            .iter()
            .filter_map(|c| c.endpoint.poll_timeout())
            .chain(self.server.poll_timeout());
        crate::next_time(now, deadlines, &mut self.stalls)
    }

    /// One turn of the drive contract for every endpoint; returns whether any datagram moved.
    /// Events are drained after every input, as the contract asks (and as the raw baseline
    /// reads what QUIC received at once), so a delivered message is not held for the turn.
    fn turn(&mut self) -> bool {
        let now = self.now;
        let mut moved = false;
        // Server: timers, events, ticks, then its transmits straight into the clients.
        if self.server.poll_timeout().is_some_and(|t| t <= now) {
            self.server.handle_timeout(now);
        }
        server_events(
            &mut self.server,
            &mut self.server_conns,
            &mut self.server_received,
        );
        while self.server.poll_tick(now).is_some() {}
        while let Some(transmit) = self.server.poll_transmit(now, &mut self.buf) {
            moved = true;
            if let Some(client) = client_index(transmit.destination).and_then(|i| self.clients.get_mut(i)) {
                let data = BytesMut::from(&self.buf[..transmit.size]);
                client
                    .endpoint
                    .handle_datagram(now, server_addr(), None, None, data);
                client_events(client, &mut self.clients_received);
            }
        }
        // Clients: the same, their transmits straight into the server.
        for (i, client) in self.clients.iter_mut().enumerate() {
            if client.endpoint.poll_timeout().is_some_and(|t| t <= now) {
                client.endpoint.handle_timeout(now);
            }
            client_events(client, &mut self.clients_received);
            while client.endpoint.poll_tick(now).is_some() {}
            while let Some(transmit) = client.endpoint.poll_transmit(now, &mut self.buf) {
                moved = true;
                if transmit.destination == server_addr() {
                    let data = BytesMut::from(&self.buf[..transmit.size]);
                    self.server.handle_datagram(now, client_addr(i), None, None, data);
                    server_events(
                        &mut self.server,
                        &mut self.server_conns,
                        &mut self.server_received,
                    );
                }
            }
        }
        moved
    }
}

/// The tickwire channel a delivery mode uses (the default channel table).
pub fn channel(delivery: Delivery) -> ChannelId {
    match delivery {
        Delivery::Unreliable => ChannelId::UNRELIABLE,
        Delivery::Reliable => ChannelId::GAME,
    }
}

impl Net for TwNet {
    fn clients(&self) -> usize {
        self.clients.len()
    }

    fn client_send(&mut self, index: usize, delivery: Delivery, payload: Bytes) {
        TwNet::client_send(self, index, delivery, payload);
    }

    /// On the latest-only channel.
    fn send_snapshot(&mut self, index: usize, snapshot: Bytes) {
        self.server_send(index, ChannelId::LATEST, snapshot);
    }

    fn received_by_server(&self, _message_len: u64) -> u64 {
        self.server_received
    }

    fn received_by_clients(&self) -> u64 {
        self.clients_received
    }

    fn advance(&mut self, by: Duration) {
        TwNet::advance(self, by);
    }

    fn run_until(&mut self, done: impl FnMut(&Self) -> bool) {
        TwNet::run_until(self, done);
    }
}

/// Drains the server's events: counts messages into `received` and notes each client's session
/// in `conns`, by client index.
///
/// # Panics
/// If the server rejects, loses or refuses anything: the benchmark allows none of it.
fn server_events(server: &mut Endpoint, conns: &mut [Option<ConnHandle>], received: &mut u64) {
    while let Some(event) = server.poll_event() {
        match event {
            Event::Message { .. } => *received += 1,
            Event::Connected { conn, .. } => {
                if let Some(slot) = server
                    .remote_address(conn)
                    .and_then(client_index)
                    .and_then(|i| conns.get_mut(i))
                {
                    *slot = Some(conn);
                }
            }
            Event::Rejected { reason, detail, .. } => panic!("server rejected: {reason} ({detail})"),
            Event::Disconnected { reason, detail, .. } => {
                panic!("server lost a session: {reason} ({detail})")
            }
            Event::MessageRefused { .. } => panic!("server refused a message: {event:?}"),
            _ => {}
        }
    }
}

/// Drains a client's events, counting messages into `received`.
///
/// # Panics
/// If the client is rejected or loses its session.
fn client_events(client: &mut Client, received: &mut u64) {
    while let Some(event) = client.endpoint.poll_event() {
        match event {
            Event::Message { .. } => *received += 1,
            Event::Connected { .. } => client.joined = true,
            Event::Rejected { reason, detail, .. } => panic!("client rejected: {reason} ({detail})"),
            Event::Disconnected { reason, detail, .. } => {
                panic!("client lost its session: {reason} ({detail})")
            }
            _ => {}
        }
    }
}
