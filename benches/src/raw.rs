//! The raw baseline: the same server and N clients as bare quinn-proto endpoints, messages as
//! QUIC datagrams (unreliable) or bytes on one unidirectional stream per client (reliable).
//! TLS matches tickwire's: TLS 1.3 over rustls's *ring* provider, a self-signed Ed25519
//! certificate that the client accepts after checking the TLS 1.3 handshake signature with it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use ed25519_dalek::pkcs8::EncodePrivateKey;
use ed25519_dalek::SigningKey;
use quinn_proto::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn_proto::{
    ClientConfig, Connection, ConnectionHandle, DatagramEvent, Dir, Endpoint, EndpointConfig, IdleTimeout,
    ServerConfig, StreamEvent, StreamId, TransportConfig, VarInt,
};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tickwire_core::testing::internals::ExporterBoundVerifier;

use crate::{
    client_addr, client_index, server_addr, Delivery, Net, DATAGRAM_SEND_BUFFER_BYTES, IDLE_TIMEOUT,
    MAX_TURNS,
};

/// ALPN both sides offer.
const ALPN: &[u8] = b"bench/1";
/// Server name in the ClientHello.
const SERVER_NAME: &str = "bench";

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Transport settings as tickwire sets them (no keep-alive, 1 MiB datagram receive buffer),
/// with [`DATAGRAM_SEND_BUFFER_BYTES`] to send.
fn transport() -> Arc<TransportConfig> {
    let mut transport = TransportConfig::default();
    transport
        .max_idle_timeout(Some(IdleTimeout::try_from(IDLE_TIMEOUT).expect("20 s fits")))
        .keep_alive_interval(None)
        .datagram_receive_buffer_size(Some(1 << 20))
        .datagram_send_buffer_size(DATAGRAM_SEND_BUFFER_BYTES)
        .max_concurrent_uni_streams(VarInt::from_u32(4));
    Arc::new(transport)
}

/// Server configuration: a certificate self-signed with `identity`, TLS 1.3 only, no tickets.
///
/// # Panics
/// If rcgen or rustls refuse the key (they do not for Ed25519 over *ring*).
pub fn server_config(identity: &SigningKey) -> Arc<ServerConfig> {
    let pkcs8 = identity.to_pkcs8_der().expect("an Ed25519 key encodes");
    let key_der = PrivatePkcs8KeyDer::from(pkcs8.as_bytes().to_vec());
    let key_pair = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&key_der, &rcgen::PKCS_ED25519)
        .expect("an Ed25519 key pair");
    let cert = rcgen::CertificateParams::new(vec![SERVER_NAME.to_owned()])
        .expect("a valid name")
        .self_signed(&key_pair)
        .expect("self-signing works");
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3 is supported")
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], PrivateKeyDer::Pkcs8(key_der))
        .expect("the certificate matches its key");
    tls.alpn_protocols = vec![ALPN.to_vec()];
    tls.max_early_data_size = 0;
    tls.send_tls13_tickets = 0;
    let crypto = QuicServerConfig::try_from(tls).expect("the initial cipher suite is there");
    let mut config = ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(transport());
    Arc::new(config)
}

/// Client configuration: TLS 1.3 only, the certificate accepted once its handshake signature
/// verifies, no resumption.
///
/// # Panics
/// If rustls refuses the configuration.
pub fn client_config() -> ClientConfig {
    let provider = provider();
    let mut tls = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3 is supported")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(ExporterBoundVerifier::new(provider)))
        .with_no_client_auth();
    tls.alpn_protocols = vec![ALPN.to_vec()];
    tls.enable_early_data = false;
    tls.resumption = rustls::client::Resumption::disabled();
    let crypto = QuicClientConfig::try_from(tls).expect("the initial cipher suite is there");
    let mut config = ClientConfig::new(Arc::new(crypto));
    config.transport_config(transport());
    config
}

/// One connection and the streams the benchmark uses on it.
#[derive(Debug)]
struct Conn {
    quic: Connection,
    connected: bool,
    /// The stream this side sends reliable messages on, opened on first use.
    send_stream: Option<StreamId>,
    /// Streams the peer opened.
    recv_streams: Vec<StreamId>,
}

/// A quinn-proto endpoint with its connections.
#[derive(Debug)]
struct Peer {
    endpoint: Endpoint,
    conns: BTreeMap<ConnectionHandle, Conn>,
}

/// Counts of what a peer's connections received, added to the net's.
#[derive(Debug, Default, Clone, Copy)]
struct Received {
    datagrams: u64,
    stream_bytes: u64,
}

impl Peer {
    fn new(seed: u64, server: Option<Arc<ServerConfig>>) -> Self {
        let mut rng_seed = [0; 32];
        rng_seed[..8].copy_from_slice(&seed.to_le_bytes());
        Self {
            endpoint: Endpoint::new(Arc::new(EndpointConfig::default()), server, false, Some(rng_seed)),
            conns: BTreeMap::new(),
        }
    }

    fn insert(&mut self, handle: ConnectionHandle, quic: Connection) {
        self.conns.insert(
            handle,
            Conn {
                quic,
                connected: false,
                send_stream: None,
                recv_streams: Vec::new(),
            },
        );
    }

    /// Input: a datagram from `from`. Stateless responses (version negotiation, resets,
    /// refusals) never happen between these well-behaved peers and are dropped.
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: BytesMut, received: &mut Received) {
        let mut buf = Vec::new();
        match self.endpoint.handle(now, from, None, None, data, &mut buf) {
            Some(DatagramEvent::ConnectionEvent(handle, event)) => {
                if let Some(conn) = self.conns.get_mut(&handle) {
                    conn.quic.handle_event(event);
                }
                self.process(handle, received);
            }
            Some(DatagramEvent::NewConnection(incoming)) => {
                match self.endpoint.accept(incoming, now, &mut buf, None) {
                    Ok((handle, quic)) => {
                        self.insert(handle, quic);
                        self.process(handle, received);
                    }
                    Err(error) => panic!("the server refused a connection: {:?}", error.cause),
                }
            }
            Some(DatagramEvent::Response(_)) | None => {}
        }
    }

    /// Input: timers due at `now`.
    fn handle_timeout(&mut self, now: Instant, received: &mut Received) {
        let due: Vec<ConnectionHandle> = self
            .conns
            .iter_mut()
            .filter_map(|(h, c)| c.quic.poll_timeout().map(|t| (h, t)))
            .filter(|(_, t)| *t <= now)
            .map(|(h, _)| *h)
            .collect();
        for handle in due {
            if let Some(conn) = self.conns.get_mut(&handle) {
                conn.quic.handle_timeout(now);
            }
            self.process(handle, received);
        }
    }

    fn poll_timeout(&mut self) -> Option<Instant> {
        self.conns
            .values_mut()
            .filter_map(|c| c.quic.poll_timeout())
            .min()
    }

    /// Drains a connection's events (reading what arrived) and endpoint events.
    fn process(&mut self, handle: ConnectionHandle, received: &mut Received) {
        let Some(conn) = self.conns.get_mut(&handle) else {
            return;
        };
        while let Some(event) = conn.quic.poll() {
            match event {
                quinn_proto::Event::Connected => conn.connected = true,
                quinn_proto::Event::DatagramReceived => {
                    while conn.quic.datagrams().recv().is_some() {
                        received.datagrams += 1;
                    }
                }
                quinn_proto::Event::Stream(StreamEvent::Opened { dir: Dir::Uni }) => {
                    while let Some(id) = conn.quic.streams().accept(Dir::Uni) {
                        conn.recv_streams.push(id);
                    }
                    read_streams(conn, received);
                }
                quinn_proto::Event::Stream(StreamEvent::Readable { .. }) => read_streams(conn, received),
                quinn_proto::Event::ConnectionLost { reason } => panic!("connection lost: {reason}"),
                _ => {}
            }
        }
        while let Some(event) = conn.quic.poll_endpoint_events() {
            if let Some(event) = self.endpoint.handle_event(handle, event) {
                conn.quic.handle_event(event);
            }
        }
    }

    /// Sends `payload` on connection `handle`.
    fn send(&mut self, handle: ConnectionHandle, delivery: Delivery, payload: Bytes) {
        let conn = self.conns.get_mut(&handle).expect("the connection exists");
        match delivery {
            Delivery::Unreliable => conn
                .quic
                .datagrams()
                .send(payload, true)
                .expect("datagrams are enabled and fit"),
            Delivery::Reliable => {
                let id = match conn.send_stream {
                    Some(id) => id,
                    None => {
                        let id = conn.quic.streams().open(Dir::Uni).expect("a stream is allowed");
                        conn.send_stream = Some(id);
                        id
                    }
                };
                let written = conn
                    .quic
                    .send_stream(id)
                    .write(&payload)
                    .expect("the stream is open");
                assert_eq!(
                    written,
                    payload.len(),
                    "the stream's flow control window has room"
                );
            }
        }
    }
}

fn read_streams(conn: &mut Conn, received: &mut Received) {
    for &id in &conn.recv_streams {
        let mut stream = conn.quic.recv_stream(id);
        let Ok(mut chunks) = stream.read(true) else {
            continue;
        };
        while let Ok(Some(chunk)) = chunks.next(usize::MAX) {
            received.stream_bytes += chunk.bytes.len() as u64;
        }
        let _ = chunks.finalize();
    }
}

/// A quinn-proto server and N clients in memory, in virtual time.
#[derive(Debug)]
pub struct RawNet {
    /// Virtual time.
    pub now: Instant,
    server: Peer,
    clients: Vec<Peer>,
    /// Each client's handle of its connection.
    client_conns: Vec<Option<ConnectionHandle>>,
    /// The server's handle of each client's connection, by client index, once connected.
    server_conns: Vec<Option<ConnectionHandle>>,
    buf: Vec<u8>,
    /// Scratch list of connection handles, kept to save an allocation per turn.
    handles: Vec<ConnectionHandle>,
    server_received: Received,
    clients_received: Received,
    /// Times a connection's deadline was not after now in a turn that sent nothing.
    pub stalls: u64,
}

impl RawNet {
    /// A server and `clients` clients, not yet connected; `seed` seeds every endpoint's
    /// randomness.
    pub fn new(clients: usize, seed: u64) -> Self {
        #[allow(clippy::disallowed_methods)] // the one clock read: virtual time starts here
        let now = Instant::now();
        let server = Peer::new(seed, Some(server_config(&SigningKey::from_bytes(&[2; 32]))));
        Self {
            now,
            server,
            clients: (0..clients)
                .map(|i| Peer::new(seed.wrapping_add(1 + i as u64), None))
                .collect(),
            client_conns: vec![None; clients],
            server_conns: vec![None; clients],
            buf: Vec::with_capacity(1500),
            handles: Vec::new(),
            server_received: Received::default(),
            clients_received: Received::default(),
            stalls: 0,
        }
    }

    /// Starts every client's connection.
    ///
    /// # Panics
    /// If quinn-proto refuses to connect.
    pub fn start_connects(&mut self, config: &ClientConfig) {
        for (client, conn) in self.clients.iter_mut().zip(&mut self.client_conns) {
            let (handle, quic) = client
                .endpoint
                .connect(self.now, config.clone(), server_addr(), SERVER_NAME)
                .expect("a client connects");
            client.insert(handle, quic);
            *conn = Some(handle);
        }
    }

    /// Whether every connection is established, on both sides.
    pub fn all_connected(&self) -> bool {
        let clients = self
            .clients
            .iter()
            .all(|c| c.conns.values().all(|conn| conn.connected));
        clients
            && self.server.conns.len() == self.clients.len()
            && self.server.conns.values().all(|conn| conn.connected)
    }

    /// Builds a net of `clients` clients and connects them all.
    pub fn connected(clients: usize, seed: u64) -> Self {
        let mut net = Self::new(clients, seed);
        net.start_connects(&client_config());
        net.run_until(|net| net.all_connected());
        for (handle, conn) in &net.server.conns {
            if let Some(index) = client_index(conn.quic.remote_address()) {
                net.server_conns[index] = Some(*handle);
            }
        }
        net
    }

    /// Number of clients.
    pub fn len(&self) -> usize {
        self.clients.len()
    }

    /// Whether the net has no clients.
    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }

    /// Messages the server received: datagrams, plus reliable bytes divided by `reliable_len`.
    pub fn server_received(&self, reliable_len: u64) -> u64 {
        self.server_received.datagrams + self.server_received.stream_bytes / reliable_len.max(1)
    }

    /// Datagrams the clients received.
    pub fn clients_received(&self) -> u64 {
        self.clients_received.datagrams
    }

    /// Client `index` sends `payload` to the server.
    pub fn client_send(&mut self, index: usize, delivery: Delivery, payload: Bytes) {
        let handle = self.client_conns[index].expect("the client connected");
        self.clients[index].send(handle, delivery, payload);
    }

    /// The server sends `payload` to client `index` as a datagram.
    pub fn server_send_datagram(&mut self, index: usize, payload: Bytes) {
        let handle = self.server_conns[index].expect("the client connected");
        self.server.send(handle, Delivery::Unreliable, payload);
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
        panic!("livelock: {MAX_TURNS} turns without reaching the goal");
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
            .iter_mut()
            .filter_map(Peer::poll_timeout)
            .chain(self.server.poll_timeout());
        crate::next_time(now, deadlines, &mut self.stalls)
    }

    /// One turn for every endpoint: timers, then transmits straight into their destination.
    fn turn(&mut self) -> bool {
        let now = self.now;
        let mut moved = false;
        self.server.handle_timeout(now, &mut self.server_received);
        let mut handles = std::mem::take(&mut self.handles);
        handles.clear();
        handles.extend(self.server.conns.keys().copied());
        for &handle in &handles {
            while let Some(transmit) = self.server.conns.get_mut(&handle).and_then(|conn| {
                // quinn-proto appends the datagram to the buffer.
                self.buf.clear();
                conn.quic.poll_transmit(now, 1, &mut self.buf)
            }) {
                moved = true;
                if let Some(i) = client_index(transmit.destination).filter(|&i| i < self.clients.len()) {
                    let data = BytesMut::from(&self.buf[..transmit.size]);
                    self.clients[i].handle_datagram(now, server_addr(), data, &mut self.clients_received);
                }
            }
            self.server.process(handle, &mut self.server_received);
        }
        for (i, client) in self.clients.iter_mut().enumerate() {
            client.handle_timeout(now, &mut self.clients_received);
            handles.clear();
            handles.extend(client.conns.keys().copied());
            for &handle in &handles {
                while let Some(transmit) = client.conns.get_mut(&handle).and_then(|conn| {
                    // quinn-proto appends the datagram to the buffer.
                    self.buf.clear();
                    conn.quic.poll_transmit(now, 1, &mut self.buf)
                }) {
                    moved = true;
                    if transmit.destination == server_addr() {
                        let data = BytesMut::from(&self.buf[..transmit.size]);
                        self.server
                            .handle_datagram(now, client_addr(i), data, &mut self.server_received);
                    }
                }
                client.process(handle, &mut self.clients_received);
            }
        }
        self.handles = handles;
        moved
    }
}

impl Net for RawNet {
    fn clients(&self) -> usize {
        self.len()
    }

    fn client_send(&mut self, index: usize, delivery: Delivery, payload: Bytes) {
        RawNet::client_send(self, index, delivery, payload);
    }

    /// As a QUIC datagram.
    fn send_snapshot(&mut self, index: usize, snapshot: Bytes) {
        self.server_send_datagram(index, snapshot);
    }

    fn received_by_server(&self, message_len: u64) -> u64 {
        self.server_received(message_len)
    }

    fn received_by_clients(&self) -> u64 {
        self.clients_received()
    }

    fn advance(&mut self, by: Duration) {
        RawNet::advance(self, by);
    }

    fn run_until(&mut self, done: impl FnMut(&Self) -> bool) {
        RawNet::run_until(self, done);
    }
}
