//! A half-open attacker: a QUIC client that completes TLS with a tickwire server and then never
//! sends its Hello, holding a pending-handshake slot for as long as the server lets it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use quinn_proto::{
    ClientConfig, Connection, ConnectionHandle, DatagramEvent, Endpoint, EndpointConfig, Transmit,
};

use crate::clock::WallClock;
use crate::secrets::Secrets;
use crate::tls::{self, AnchoredTime, CryptoOptions, SERVER_NAME};

/// Raw quinn-proto client connections that finish the TLS handshake (ALPN `tickwire/1`) and
/// then stay silent: no control stream, no Hello. Drive it like an [`crate::Endpoint`]: feed
/// datagrams and timeouts, drain transmits.
#[derive(Debug)]
pub struct SilentClient {
    quic: Endpoint,
    config: ClientConfig,
    time: Arc<AnchoredTime>,
    wall: WallClock,
    conns: BTreeMap<ConnectionHandle, Connection>,
    tls_done: usize,
    closed: usize,
}

impl SilentClient {
    /// A client whose connection ids and QUIC randomness come from `secrets`; `crypto` may
    /// carry a seeded rustls provider (the simulator's) for byte-identical runs.
    ///
    /// # Panics
    /// If rustls refuses the client configuration (a build without the *ring* provider).
    pub fn new(secrets: Secrets, wall: WallClock, crypto: &CryptoOptions) -> Self {
        let time = Arc::new(AnchoredTime::default());
        let mut endpoint_config = EndpointConfig::new(tls::reset_key(secrets.derive("quic/reset-key")));
        let cid_seed = secrets.derive("quic/cid");
        endpoint_config
            .cid_generator(move || Box::new(tls::SeededCidGenerator::new(cid_seed)))
            .rng_seed(Some(secrets.derive("quic/rng")));
        let mut config = ClientConfig::new(
            tls::client_crypto(crypto, time.clone(), crate::wire::ALPN).expect("ring provider"),
        );
        config.initial_dst_cid_provider(tls::initial_cid_provider(secrets.derive("quic/initial-dcid")));
        Self {
            quic: Endpoint::new(Arc::new(endpoint_config), None, false, None),
            config,
            time,
            wall,
            conns: BTreeMap::new(),
            tls_done: 0,
            closed: 0,
        }
    }

    fn advance(&self, now: Instant) {
        self.time.set(self.wall.unix_ms_at(now));
    }

    /// Opens one more connection to `server`.
    pub fn connect(&mut self, now: Instant, server: SocketAddr) {
        self.advance(now);
        if let Ok((handle, conn)) = self.quic.connect(now, self.config.clone(), server, SERVER_NAME) {
            self.conns.insert(handle, conn);
        }
    }

    /// Input: a datagram from `from`.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: BytesMut) {
        self.advance(now);
        let mut buf = Vec::new();
        if let Some(DatagramEvent::ConnectionEvent(handle, event)) =
            self.quic.handle(now, from, None, None, data, &mut buf)
        {
            if let Some(conn) = self.conns.get_mut(&handle) {
                conn.handle_event(event);
            }
            self.process(handle);
        }
    }

    /// Input: timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.advance(now);
        let due: Vec<ConnectionHandle> = self
            .conns
            .iter_mut()
            .filter_map(|(h, c)| c.poll_timeout().is_some_and(|t| t <= now).then_some(*h))
            .collect();
        for handle in due {
            if let Some(conn) = self.conns.get_mut(&handle) {
                conn.handle_timeout(now);
            }
            self.process(handle);
        }
    }

    fn process(&mut self, handle: ConnectionHandle) {
        let Some(conn) = self.conns.get_mut(&handle) else {
            return;
        };
        while let Some(event) = conn.poll() {
            match event {
                quinn_proto::Event::Connected => self.tls_done += 1,
                quinn_proto::Event::ConnectionLost { .. } => self.closed += 1,
                _ => {}
            }
        }
        while let Some(event) = conn.poll_endpoint_events() {
            if let Some(event) = self.quic.handle_event(handle, event) {
                conn.handle_event(event);
            }
        }
        if conn.is_drained() {
            self.conns.remove(&handle);
        }
    }

    /// Output: the next datagram to send (its bytes in `buf`).
    #[must_use]
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
        self.advance(now);
        for conn in self.conns.values_mut() {
            buf.clear();
            if let Some(transmit) = conn.poll_transmit(now, 1, buf) {
                return Some(transmit);
            }
        }
        None
    }

    /// Output: the earliest timer of any connection.
    #[must_use]
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        self.conns.values_mut().filter_map(|c| c.poll_timeout()).min()
    }

    /// Connections whose TLS handshake completed.
    pub fn tls_completed(&self) -> usize {
        self.tls_done
    }

    /// Connections the server (or a timeout) closed.
    pub fn closed(&self) -> usize {
        self.closed
    }
}
