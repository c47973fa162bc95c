//! In-memory harness: N endpoints on a virtual network, in virtual time.
//!
//! Enabled by the `testing` feature (and in this crate's tests). Packets are delivered after a
//! seeded latency with optional jitter, loss and duplication ([`LinkModel`], network-wide or per
//! directed link); a node can be cut off, and a [`Fate`] filter can drop, duplicate or delay
//! chosen packets. Time jumps straight to the next packet or deadline, so minutes of protocol
//! time run in milliseconds, and the same seed gives the same run. Every event is also recorded
//! with its node and time in [`Net::trace`].
//!
//! ```
//! # use std::time::Duration;
//! # use tickwire_core::testing::Net;
//! let mut net = Net::new(tickwire_core::testing::epoch(), 7);
//! let server = net.add_server(Net::config());
//! let client = net.add_client(Net::config());
//! let conn = net.connect(client, server);
//! net.run_for(Duration::from_millis(500));
//! assert!(net.node(client).connected(conn));
//! ```

#[doc(hidden)]
pub mod internals;
mod model;
mod silent;

pub use silent::SilentClient;

use std::collections::{BTreeMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use ed25519_dalek::SigningKey;
use rand::{Rng, RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::channel::ChannelId;
use crate::clock::WallClock;
use crate::config::Config;
use crate::endpoint::{ConnectOptions, Endpoint, WebTransportTarget};
use crate::handshake::Session;
use crate::secrets::Secrets;
use crate::shared::{ConnHandle, Event, Initiator};
use crate::tick::TickInfo;
use crate::ticket::{JoinTicket, JoinTicketClaims, TicketIssuer};
use crate::webtransport::{CertificateOptions, ServerCertificate, WebTransportConfig};
use crate::wire::ReasonCode;

/// An arbitrary starting instant for virtual time: the one clock read tests need, made here so
/// the rest of the crate's tests never read a clock (`core/clippy.toml` bans `Instant::now`).
#[allow(clippy::disallowed_methods)]
pub fn epoch() -> Instant {
    Instant::now()
}

/// Unix time at the harness's start, in milliseconds (2026-01-01T00:00:00Z).
pub const START_UNIX_MS: u64 = 1_767_225_600_000;
/// Key id of the harness's ticket issuer.
pub const ISSUER_KEY_ID: u32 = 1;
/// Game server id that harness servers use and harness tickets name.
pub const GS_ID: u64 = 42;

/// One datagram in flight.
#[derive(Debug, Clone)]
pub struct Packet {
    /// Sender's address.
    pub from: SocketAddr,
    /// Receiver's address.
    pub to: SocketAddr,
    /// UDP payload.
    pub data: Bytes,
}

/// One endpoint on the virtual network, with everything it emitted.
#[derive(Debug)]
pub struct Node {
    /// The endpoint.
    pub endpoint: Endpoint,
    /// Its address.
    pub addr: SocketAddr,
    /// Its identity key.
    pub identity: SigningKey,
    /// Events drained so far, in order (take them with [`Node::take_events`]).
    pub events: VecDeque<Event>,
    /// Ticks delivered (servers).
    pub ticks: Vec<TickInfo>,
    /// While true, every packet to or from this node is dropped.
    pub isolated: bool,
    /// Application logic run beside the endpoint ([`Net::set_app`]).
    pub app: Option<Box<dyn App>>,
    /// Events drained but not yet offered to the app.
    pending: Vec<Event>,
}

/// Application logic beside a harness node's endpoint, such as a [`GsAgent`](crate::vs::GsAgent)
/// or a [`Verifier`](crate::vs::Verifier). It sees every event first, may act on the endpoint,
/// and has its own deadline.
pub trait App: std::fmt::Debug + std::any::Any {
    /// An event the endpoint emitted. Return true to keep it from [`Node::events`].
    fn on_event(&mut self, endpoint: &mut Endpoint, now: Instant, event: &Event) -> bool;
    /// The app's deadline passed.
    fn on_timeout(&mut self, endpoint: &mut Endpoint, now: Instant);
    /// The app's next deadline.
    fn poll_timeout(&self) -> Option<Instant>;
    /// For downcasting in assertions ([`Node::app`]).
    fn as_any(&self) -> &dyn std::any::Any;
    /// For downcasting in commands ([`Node::app_mut`]).
    fn as_any_mut(&mut self) -> &mut dyn std::any::Any;
}

impl Node {
    /// The node's app as a `T`.
    ///
    /// # Panics
    /// If the node has no app of that type.
    pub fn app<T: App>(&self) -> &T {
        self.app
            .as_ref()
            .and_then(|app| app.as_any().downcast_ref())
            .expect("node has an app of this type")
    }

    /// The node's app as a `T`, with its endpoint (for commands that need both).
    ///
    /// # Panics
    /// If the node has no app of that type.
    pub fn app_mut<T: App>(&mut self) -> (&mut T, &mut Endpoint) {
        let app = self
            .app
            .as_mut()
            .and_then(|app| app.as_any_mut().downcast_mut())
            .expect("node has an app of this type");
        (app, &mut self.endpoint)
    }

    /// Takes all events drained so far.
    pub fn take_events(&mut self) -> Vec<Event> {
        self.events.drain(..).collect()
    }

    /// Whether `conn` has an established session.
    pub fn connected(&self, conn: ConnHandle) -> bool {
        self.endpoint.session(conn).is_some()
            && !self
                .events
                .iter()
                .any(|e| matches!(e, Event::Disconnected { conn: c, .. } if *c == conn))
    }

    /// Payloads received on `channel` from `conn`, in order, without removing them.
    pub fn messages(&self, conn: ConnHandle, channel: ChannelId) -> Vec<Bytes> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Message {
                    conn: c,
                    channel: ch,
                    payload,
                } if *c == conn && *ch == channel => Some(payload.clone()),
                _ => None,
            })
            .collect()
    }

    /// The first rejection or disconnection event, if any.
    pub fn closure(&self) -> Option<&Event> {
        self.events
            .iter()
            .find(|e| matches!(e, Event::Rejected { .. } | Event::Disconnected { .. }))
    }

    /// The rejection or disconnection reported for `conn`, if any.
    pub fn closure_of(&self, conn: ConnHandle) -> Option<&Event> {
        self.events.iter().find(|e| match e {
            Event::Rejected { conn: c, .. } | Event::Disconnected { conn: c, .. } => *c == conn,
            _ => false,
        })
    }

    /// The sessions this node saw established, in order, with their handles.
    pub fn sessions(&self) -> Vec<(ConnHandle, Session)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Connected { conn, session } => Some((*conn, Session::clone(session))),
                _ => None,
            })
            .collect()
    }
}

/// What a [`Net::set_filter`] closure decides for one packet, before the link model applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Hand it to the link model as usual.
    Deliver,
    /// Drop it (counted in [`Net::dropped`]).
    Drop,
    /// Deliver it twice.
    Duplicate,
    /// Deliver it this much later than the link model says (reorders it behind later packets).
    Delay(Duration),
}

/// The closure given to [`Net::set_filter`].
struct Filter(Box<dyn FnMut(&Packet) -> Fate>);

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Filter(..)")
    }
}

/// One event as it happened: when, where, what. See [`Net::trace`].
#[derive(Debug, Clone, PartialEq)]
pub struct Traced {
    /// Virtual time since the network started.
    pub at: Duration,
    /// The node that emitted it.
    pub node: usize,
    /// The event.
    pub event: Event,
}

/// Link behaviour applied to every packet (seeded).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkModel {
    /// One-way base latency.
    pub latency: Duration,
    /// Extra uniform delay in `[0, jitter)`; reorders packets when larger than their spacing.
    pub jitter: Duration,
    /// Probability a packet is dropped.
    pub loss: f64,
    /// Probability a delivered packet is delivered twice.
    pub duplicate: f64,
}

impl Default for LinkModel {
    fn default() -> Self {
        Self {
            latency: Duration::from_millis(10),
            jitter: Duration::ZERO,
            loss: 0.0,
            duplicate: 0.0,
        }
    }
}

/// The virtual network. See the module docs.
#[derive(Debug)]
pub struct Net {
    seed: u64,
    /// Current virtual time.
    pub now: Instant,
    start: Instant,
    nodes: Vec<Node>,
    in_flight: BTreeMap<(Instant, u64), Packet>,
    seq: u64,
    rng: ChaCha8Rng,
    /// Link behaviour for every packet without a per-link override ([`Net::set_link`]).
    pub link: LinkModel,
    links: BTreeMap<(usize, usize), LinkModel>,
    filter: Option<Filter>,
    /// Every event any node emitted, in order (never drained, unlike [`Node::events`]).
    pub trace: Vec<Traced>,
    /// Ticket issuer trusted by every harness server.
    pub issuer: TicketIssuer,
    /// Packets delivered so far.
    pub delivered: u64,
    /// Packets dropped so far.
    pub dropped: u64,
    next_ticket: u64,
    buf: Vec<u8>,
}

impl Net {
    /// An empty network at virtual time `start`, seeded with `seed`.
    pub fn new(start: Instant, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut issuer_key = [0u8; 32];
        rng.fill_bytes(&mut issuer_key);
        Self {
            seed,
            now: start,
            start,
            nodes: Vec::new(),
            in_flight: BTreeMap::new(),
            seq: 0,
            rng,
            link: LinkModel::default(),
            links: BTreeMap::new(),
            filter: None,
            trace: Vec::new(),
            issuer: TicketIssuer::new(ISSUER_KEY_ID, SigningKey::from_bytes(&issuer_key)),
            delivered: 0,
            dropped: 0,
            next_ticket: 0,
            buf: Vec::new(),
        }
    }

    /// The default config. Each node's secrets and identity key are derived from the
    /// network's seed and the node's index, so the same seed replays the same run.
    pub fn config() -> Config {
        Config::default()
    }

    /// The wall clock every node shares (anchored at [`START_UNIX_MS`]).
    pub fn wall_clock(&self) -> WallClock {
        WallClock::new(self.start, START_UNIX_MS)
    }

    fn next_addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::new(10, 0, 0, 1 + self.nodes.len() as u8), 4433))
    }

    /// The next node's key material: insecure, derived from the network's seed and the
    /// node's index.
    fn next_keys(&self) -> (Secrets, SigningKey) {
        let node_seed = self
            .seed
            .wrapping_mul(1_000_003)
            .wrapping_add(self.nodes.len() as u64);
        let mut identity = [0u8; 32];
        ChaCha8Rng::seed_from_u64(node_seed ^ 0x1d_e417).fill_bytes(&mut identity);
        (
            Secrets::insecure_from_seed(node_seed),
            SigningKey::from_bytes(&identity),
        )
    }

    /// Adds a game server (id [`GS_ID`]) trusting the harness issuer; returns its index.
    pub fn add_server(&mut self, config: Config) -> usize {
        self.add_server_with(config, self.wall_clock())
    }

    /// Adds a game server with its own wall clock (e.g. skewed).
    pub fn add_server_with(&mut self, config: Config, wall: WallClock) -> usize {
        let (secrets, identity) = self.next_keys();
        let endpoint = Endpoint::builder(config, secrets, identity.clone(), wall)
            .trust_issuer(ISSUER_KEY_ID, self.issuer.verifying_key())
            .server(GS_ID, self.now)
            .expect("harness config is valid");
        self.push(endpoint, identity)
    }

    /// Adds a server with the given identity key (a second instance of a service, say).
    pub fn add_server_as(&mut self, config: Config, identity: SigningKey) -> usize {
        let (secrets, _) = self.next_keys();
        let endpoint = Endpoint::builder(config, secrets, identity.clone(), self.wall_clock())
            .trust_issuer(ISSUER_KEY_ID, self.issuer.verifying_key())
            .server(GS_ID, self.now)
            .expect("harness config is valid");
        self.push(endpoint, identity)
    }

    /// Adds a game server that also accepts WebTransport sessions under `webtransport`
    /// (`PROTOCOL.md` §12), presenting a P-256 certificate derived from its seed and valid
    /// from an hour ago; returns its index.
    pub fn add_webtransport_server(&mut self, config: Config, webtransport: WebTransportConfig) -> usize {
        let (secrets, identity) = self.next_keys();
        let not_before = self.wall_clock().unix_ms_at(self.now).saturating_sub(3_600_000);
        let certificate = ServerCertificate::generate(
            &secrets.derive("webtransport/certificate"),
            &CertificateOptions::new(not_before),
        )
        .expect("harness certificate options are valid");
        let endpoint = Endpoint::builder(config, secrets, identity.clone(), self.wall_clock())
            .trust_issuer(ISSUER_KEY_ID, self.issuer.verifying_key())
            .webtransport(webtransport, certificate)
            .server(GS_ID, self.now)
            .expect("harness config is valid");
        self.push(endpoint, identity)
    }

    /// Where a WebTransport client of `server` sends its CONNECT: the server's address and
    /// [`DEFAULT_PATH`](crate::webtransport::DEFAULT_PATH), no origin.
    pub fn webtransport_target(&self, server: usize) -> WebTransportTarget {
        WebTransportTarget {
            authority: self.nodes[server].addr.to_string(),
            path: crate::webtransport::DEFAULT_PATH.to_owned(),
            origin: None,
        }
    }

    /// `client` opens a WebTransport session to `server` at `target` with `ticket`.
    pub fn connect_webtransport(
        &mut self,
        client: usize,
        server: usize,
        ticket: JoinTicket,
        target: &WebTransportTarget,
    ) -> ConnHandle {
        let addr = self.nodes[server].addr;
        let now = self.now;
        let conn = self.nodes[client]
            .endpoint
            .connect_webtransport(now, addr, ticket, ConnectOptions::default(), target)
            .expect("harness addresses are valid");
        self.drain(client);
        conn
    }

    /// [`Net::join`] over WebTransport, to [`Net::webtransport_target`].
    ///
    /// # Panics
    /// If the session is not established within 5 s of virtual time.
    pub fn join_webtransport(&mut self, client: usize, server: usize) -> (ConnHandle, ConnHandle) {
        let ticket = self.ticket_for(client);
        let target = self.webtransport_target(server);
        let conn = self.connect_webtransport(client, server, ticket, &target);
        self.await_join(client, server, conn)
    }

    /// Adds a client; returns its index.
    pub fn add_client(&mut self, config: Config) -> usize {
        let (secrets, identity) = self.next_keys();
        let endpoint = Endpoint::builder(config, secrets, identity.clone(), self.wall_clock())
            .client()
            .expect("harness config is valid");
        self.push(endpoint, identity)
    }

    fn push(&mut self, endpoint: Endpoint, identity: SigningKey) -> usize {
        let addr = self.next_addr();
        self.nodes.push(Node {
            endpoint,
            addr,
            identity,
            events: VecDeque::new(),
            ticks: Vec::new(),
            isolated: false,
            app: None,
            pending: Vec::new(),
        });
        self.nodes.len() - 1
    }

    /// Node `index`.
    pub fn node(&self, index: usize) -> &Node {
        &self.nodes[index]
    }

    /// Node `index`, mutably.
    pub fn node_mut(&mut self, index: usize) -> &mut Node {
        &mut self.nodes[index]
    }

    /// Overrides the link model for packets from node `from` to node `to` (one direction).
    pub fn set_link(&mut self, from: usize, to: usize, link: LinkModel) {
        self.links.insert((from, to), link);
    }

    /// Decides the fate of every packet emitted from now on, before the link model (and its
    /// seeded draws, which still happen for every packet) applies. Replaces any earlier filter.
    pub fn set_filter(&mut self, filter: impl FnMut(&Packet) -> Fate + 'static) {
        self.filter = Some(Filter(Box::new(filter)));
    }

    /// Claims for a valid ticket for `client` to join a harness server, valid for 60 s from now.
    pub fn claims_for(&mut self, client: usize) -> JoinTicketClaims {
        self.next_ticket += 1;
        let mut jti = [0u8; 16];
        jti[..8].copy_from_slice(&self.next_ticket.to_be_bytes());
        let now_ms = self.wall_clock().unix_ms_at(self.now);
        let client_key = self.nodes[client].identity.verifying_key().to_bytes();
        JoinTicketClaims::builder(client_key, jti)
            .client_id(client as u64)
            .audience(GS_ID)
            .valid_from(now_ms)
            .lifetime_ms(60_000)
            .build()
    }

    /// A valid ticket for `client` (see [`Net::claims_for`]).
    pub fn ticket_for(&mut self, client: usize) -> JoinTicket {
        let claims = self.claims_for(client);
        self.issuer.issue(&claims)
    }

    /// `client` connects to `server` with a fresh valid ticket.
    pub fn connect(&mut self, client: usize, server: usize) -> ConnHandle {
        let ticket = self.ticket_for(client);
        self.connect_with(client, server, ticket, ConnectOptions::default())
    }

    /// A fresh network at [`epoch`] seeded with `seed`, holding one server (`server_config`) and
    /// one client (`client_config`) joined to it: `(net, server, client, the client's handle,
    /// the server's handle)`.
    ///
    /// # Panics
    /// As [`Net::join`].
    pub fn joined_pair(
        seed: u64,
        server_config: Config,
        client_config: Config,
    ) -> (Self, usize, usize, ConnHandle, ConnHandle) {
        let mut net = Self::new(epoch(), seed);
        let server = net.add_server(server_config);
        let client = net.add_client(client_config);
        let (conn, server_conn) = net.join(client, server);
        (net, server, client, conn, server_conn)
    }

    /// `client` joins `server` with a fresh valid ticket and the session is established on both
    /// sides; returns the client's and the server's handle.
    ///
    /// # Panics
    /// If the session is not established within 5 s of virtual time.
    pub fn join(&mut self, client: usize, server: usize) -> (ConnHandle, ConnHandle) {
        let conn = self.connect(client, server);
        self.await_join(client, server, conn)
    }

    fn await_join(&mut self, client: usize, server: usize, conn: ConnHandle) -> (ConnHandle, ConnHandle) {
        let joined = |net: &Net| {
            let session = net.nodes[client].endpoint.session(conn)?;
            let (server_conn, _) = net.nodes[server]
                .sessions()
                .into_iter()
                .find(|(_, s)| s.session_id == session.session_id)?;
            Some(server_conn)
        };
        assert!(
            self.run_until(Duration::from_secs(5), |net| joined(net).is_some()),
            "client {client} did not join server {server}: {:?}",
            self.nodes[client].events
        );
        (conn, joined(self).expect("checked by run_until"))
    }

    /// Runs until `node` reports the end of `conn` ([`Event::Rejected`] or
    /// [`Event::Disconnected`]), for at most `max` of virtual time, and returns that event.
    ///
    /// # Panics
    /// If `conn` is still open after `max`.
    pub fn run_until_closed(&mut self, node: usize, conn: ConnHandle, max: Duration) -> Event {
        self.run_until(max, |net| net.nodes[node].closure_of(conn).is_some());
        match self.nodes[node].closure_of(conn) {
            Some(event) => event.clone(),
            None => panic!(
                "node {node} {conn:?} still open after {max:?}: {:?}",
                self.nodes[node].events
            ),
        }
    }

    /// Runs until `server` holds a connection (typically one still handshaking) and returns
    /// the first one's handle.
    ///
    /// # Panics
    /// If none arrives within `max`.
    pub fn run_until_incoming(&mut self, server: usize, max: Duration) -> ConnHandle {
        self.run_until(max, |net| net.nodes[server].endpoint.connection_count() > 0);
        match self.nodes[server].endpoint.connections().next() {
            Some(conn) => conn,
            None => panic!("no connection reached node {server} within {max:?}"),
        }
    }

    /// Runs until `node` reports `conn` refused (for at most `max`) and returns the fields of
    /// its [`Event::Rejected`]: `(reason, retry_after, initiator)`.
    ///
    /// # Panics
    /// If `conn` is still open after `max`, or was disconnected instead.
    pub fn run_until_rejected(
        &mut self,
        node: usize,
        conn: ConnHandle,
        max: Duration,
    ) -> (ReasonCode, Option<Duration>, Initiator) {
        match self.run_until_closed(node, conn, max) {
            Event::Rejected {
                reason,
                retry_after,
                initiator,
                ..
            } => (reason, retry_after, initiator),
            other => panic!("node {node} {conn:?}: expected a rejection, got {other:?}"),
        }
    }

    /// Runs until `node` reports `conn` disconnected (for at most `max`) and returns the fields
    /// of its [`Event::Disconnected`]: `(reason, detail, initiator)`.
    ///
    /// # Panics
    /// If `conn` is still open after `max`, or was rejected instead.
    pub fn run_until_disconnected(
        &mut self,
        node: usize,
        conn: ConnHandle,
        max: Duration,
    ) -> (ReasonCode, String, Initiator) {
        match self.run_until_closed(node, conn, max) {
            Event::Disconnected {
                reason,
                detail,
                initiator,
                ..
            } => (reason, detail, initiator),
            other => panic!("node {node} {conn:?}: expected a disconnection, got {other:?}"),
        }
    }

    /// `client` connects to `server` with `ticket` and `options`.
    pub fn connect_with(
        &mut self,
        client: usize,
        server: usize,
        ticket: JoinTicket,
        options: ConnectOptions,
    ) -> ConnHandle {
        let addr = self.nodes[server].addr;
        let now = self.now;
        let conn = self.nodes[client]
            .endpoint
            .connect(now, addr, ticket, options)
            .expect("harness addresses are valid");
        self.drain(client);
        conn
    }

    /// Sends on `conn` from `node` and drains its output.
    ///
    /// # Panics
    /// If the send fails (tests that expect failure call the endpoint directly).
    pub fn send(&mut self, node: usize, conn: ConnHandle, channel: ChannelId, payload: impl Into<Bytes>) {
        let now = self.now;
        self.nodes[node]
            .endpoint
            .send(now, conn, channel, payload.into())
            .expect("send succeeds");
        self.drain(node);
    }

    /// Installs `app` on node `index`.
    pub fn set_app(&mut self, index: usize, app: impl App) {
        self.nodes[index].app = Some(Box::new(app));
    }

    /// Drives node `index` in the drive contract's order: events, ticks, then transmits (into
    /// the network); events a tick raised (a revalidation's closes) are queued too. Events go
    /// through the node's app first; whatever the app did is drained in turn.
    pub fn drain(&mut self, index: usize) {
        loop {
            self.drain_once(index);
            let node = &mut self.nodes[index];
            let Some(app) = node.app.as_mut() else { return };
            if node.pending.is_empty() {
                return;
            }
            let now = self.now;
            for event in std::mem::take(&mut node.pending) {
                if !app.on_event(&mut node.endpoint, now, &event) {
                    node.events.push_back(event);
                }
            }
        }
    }

    /// One turn of the drive contract for node `index`: events (queued for the test or its
    /// app), ticks, then transmits (routed into the network).
    fn drain_once(&mut self, index: usize) {
        let now = self.now;
        self.collect_events(index);
        let node = &mut self.nodes[index];
        while let Some(tick) = node.endpoint.poll_tick(now) {
            node.ticks.push(tick);
        }
        let mut buf = std::mem::take(&mut self.buf);
        loop {
            let node = &mut self.nodes[index];
            let Some(transmit) = node.endpoint.poll_transmit(now, &mut buf) else {
                break;
            };
            let packet = Packet {
                from: node.addr,
                to: transmit.destination,
                data: Bytes::copy_from_slice(&buf[..transmit.size]),
            };
            self.route(index, packet);
        }
        self.buf = buf;
        // What the ticks raised (a revalidation's closes) is queued in this turn too.
        self.collect_events(index);
    }

    /// Moves node `index`'s events to its app's pending list, or to its event queue.
    fn collect_events(&mut self, index: usize) {
        let at = self.elapsed();
        let node = &mut self.nodes[index];
        while let Some(event) = node.endpoint.poll_event() {
            self.trace.push(Traced {
                at,
                node: index,
                event: event.clone(),
            });
            if node.app.is_some() {
                node.pending.push(event);
            } else {
                node.events.push_back(event);
            }
        }
    }

    /// Sends `data` from node `sender` to `to` through the network, as if `sender`'s endpoint
    /// had transmitted it (for tests that drain a node's transmits themselves).
    pub fn route_from(&mut self, sender: usize, to: SocketAddr, data: impl Into<Bytes>) {
        let packet = Packet {
            from: self.nodes[sender].addr,
            to,
            data: data.into(),
        };
        self.route(sender, packet);
    }

    fn route(&mut self, sender: usize, packet: Packet) {
        let receiver = self.nodes.iter().position(|n| n.addr == packet.to);
        // Draw a fixed number of values per packet so one knob does not reshuffle the rest.
        let (lost, jitter, dup) = (
            self.rng.random::<f64>(),
            self.rng.random::<f64>(),
            self.rng.random::<f64>(),
        );
        let isolated = self.nodes[sender].isolated || receiver.is_some_and(|r| self.nodes[r].isolated);
        let fate = match &mut self.filter {
            Some(Filter(filter)) => filter(&packet),
            None => Fate::Deliver,
        };
        let link = receiver
            .and_then(|r| self.links.get(&(sender, r)))
            .unwrap_or(&self.link);
        if isolated || fate == Fate::Drop || lost < link.loss {
            self.dropped += 1;
            return;
        }
        let mut delay = link.latency + link.jitter.mul_f64(jitter);
        if let Fate::Delay(extra) = fate {
            delay += extra;
        }
        let copies = if dup < link.duplicate || fate == Fate::Duplicate {
            2
        } else {
            1
        };
        for _ in 0..copies {
            self.seq += 1;
            self.in_flight
                .insert((self.now + delay, self.seq), packet.clone());
        }
    }

    /// The next instant anything happens: a packet arrival or a node deadline.
    pub fn next_time(&mut self) -> Option<Instant> {
        let packet = self.in_flight.keys().next().map(|(t, _)| *t);
        let timer = self
            .nodes
            .iter_mut()
            .flat_map(|n| {
                [
                    n.endpoint.poll_timeout(),
                    n.app.as_ref().and_then(|a| a.poll_timeout()),
                ]
            })
            .flatten()
            .min();
        match (packet, timer) {
            (Some(p), Some(t)) => Some(p.min(t)),
            (p, t) => p.or(t),
        }
    }

    /// Advances to the next instant anything happens (not past `limit`) and processes
    /// everything due then. Returns false if nothing is due by `limit`.
    pub fn step_until(&mut self, limit: Instant) -> bool {
        let Some(next) = self.next_time() else {
            return false;
        };
        if next > limit {
            return false;
        }
        self.now = self.now.max(next);
        let now = self.now;
        while let Some(entry) = self.in_flight.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let packet = entry.remove();
            if let Some(index) = self.nodes.iter().position(|n| n.addr == packet.to) {
                self.delivered += 1;
                self.nodes[index].endpoint.handle_datagram(
                    now,
                    packet.from,
                    None,
                    None,
                    BytesMut::from(&packet.data[..]),
                );
                self.drain(index);
            }
        }
        for index in 0..self.nodes.len() {
            if self.nodes[index]
                .endpoint
                .poll_timeout()
                .is_some_and(|t| t <= now)
            {
                self.nodes[index].endpoint.handle_timeout(now);
            }
            let node = &mut self.nodes[index];
            if let Some(app) = node.app.as_mut() {
                if app.poll_timeout().is_some_and(|t| t <= now) {
                    app.on_timeout(&mut node.endpoint, now);
                }
            }
            self.drain(index);
        }
        true
    }

    /// Processes everything up to `now + duration`, then sets the clock there.
    ///
    /// # Panics
    /// If more than 10 million steps are needed (a livelock: something re-arms a deadline in
    /// the past without making progress).
    pub fn run_for(&mut self, duration: Duration) {
        let limit = self.now + duration;
        let mut steps = 0u64;
        while self.step_until(limit) {
            steps += 1;
            assert!(
                steps < 10_000_000,
                "livelock: {steps} steps without reaching {duration:?}"
            );
        }
        self.now = limit;
    }

    /// Runs until `done(self)` holds, checking after every step, for at most `max`
    /// virtual time. Returns whether it held.
    pub fn run_until(&mut self, max: Duration, mut done: impl FnMut(&Net) -> bool) -> bool {
        let limit = self.now + max;
        let mut steps = 0u64;
        while !done(self) {
            if !self.step_until(limit) {
                self.now = limit;
                return done(self);
            }
            steps += 1;
            assert!(steps < 10_000_000, "livelock after {steps} steps");
        }
        true
    }

    /// Virtual time since the network started.
    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }
}

/// A misbehaving peer: raw stream and datagram writes that bypass the framer, the channel table
/// and the send queues of `node`'s connection `conn`, so that tests can play slow-loris and
/// resource attacks against a real endpoint over real QUIC (`core/tests/hostile.rs`). Each
/// drains `node`'s output afterwards; an unknown handle does nothing. Streams are QUIC stream
/// ids (RFC 9000 §2.1).
impl Net {
    /// Opens a unidirectional stream; `None` when the peer's concurrent-stream limit is
    /// reached (QUIC opens no stream past it, RFC 9000 §4.6) or `conn` is unknown.
    pub fn raw_open_uni(&mut self, node: usize, conn: ConnHandle) -> Option<u64> {
        self.hostile(node, conn, |c| c.testing_open_uni()).flatten()
    }

    /// Opens a bidirectional stream; `None` at the peer's concurrent-stream limit or for an
    /// unknown `conn`.
    pub fn raw_open_bidi(&mut self, node: usize, conn: ConnHandle) -> Option<u64> {
        self.hostile(node, conn, |c| c.testing_open_bidi()).flatten()
    }

    /// Writes `bytes` to `stream` as they are (no channel byte or length prefix added);
    /// returns how many bytes QUIC took (stream flow control may refuse the rest).
    pub fn raw_write(&mut self, node: usize, conn: ConnHandle, stream: u64, bytes: &[u8]) -> usize {
        self.hostile(node, conn, |c| c.testing_write(stream, bytes))
            .unwrap_or(0)
    }

    /// Resets `stream` (RESET_STREAM, RFC 9000 §19.4).
    pub fn raw_reset(&mut self, node: usize, conn: ConnHandle, stream: u64) {
        self.hostile(node, conn, |c| c.testing_reset(stream));
    }

    /// Sends `bytes` as one QUIC datagram (RFC 9221), as they are; false if QUIC refused it
    /// (too large, or datagrams unsupported).
    pub fn raw_datagram(&mut self, node: usize, conn: ConnHandle, bytes: impl Into<Bytes>) -> bool {
        let bytes = bytes.into();
        self.hostile(node, conn, |c| c.testing_send_datagram(bytes))
            .unwrap_or(false)
    }

    fn hostile<R>(
        &mut self,
        node: usize,
        conn: ConnHandle,
        f: impl FnOnce(&mut crate::connection::Conn) -> R,
    ) -> Option<R> {
        let now = self.now;
        let result = self.nodes[node].endpoint.with_conn_for_testing(now, conn, f);
        self.drain(node);
        result
    }
}
