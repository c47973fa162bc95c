//! The [`Endpoint`]: every tickwire session of one UDP socket, as a sans-IO state machine.
//!
//! Method kinds follow quinn-proto: inputs are `handle_*`, outputs are `poll_*` drained until
//! `None`, commands are verbs, getters take `&self`. See the crate docs for the drive loop.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use ed25519_dalek::SigningKey;
use quinn_proto::{DatagramEvent, EcnCodepoint, IdleTimeout, Transmit, TransportConfig, VarInt};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;

use crate::channel::{ChannelId, SendOptions};
use crate::clock::WallClock;
use crate::config::{Config, ConfigError};
use crate::connection::{Conn, Ctx, Pending, Phase, State};
use crate::handshake::{
    ClientHandshake, ClientOffer, PlayTicketCheck, Rejection, ServerContribution, ServerPolicy, Session,
};
use crate::limits::{source_key, AddressLimiter};
use crate::secrets::Secrets;
use crate::stats::{ConnectionStats, DatagramStats, EndpointStats};
use crate::tick::{TickInfo, TickScheduler, TickSync};
use crate::ticket::{JoinTicket, TicketError, TicketVerifier};
use crate::tls::{self, AnchoredTime, CryptoOptions, TlsSetupError, SERVER_NAME};
use crate::vs::VsKeys;
use crate::wire::{ReasonCode, Role, NONCE_LEN};

/// Endpoint-level responses (version negotiation, stateless resets, refusals) held at most.
const MAX_QUEUED_RESPONSES: usize = 256;

/// Connections per [`Phase`], and handshakes in progress per source address of inbound
/// connections, kept up to date after every operation on a connection so that admission
/// decisions never scan the connection table (O(1) per Initial under a flood).
#[derive(Debug, Default)]
struct PhaseCounts {
    handshaking: usize,
    established: usize,
    /// Inbound handshakes in progress per source IP; addresses at zero are removed, so it
    /// holds at most `max_pending_handshakes` entries.
    handshaking_from: BTreeMap<IpAddr, usize>,
    /// Server connections that completed TLS and await their Hello, by when they started
    /// waiting: the eviction order when the pending table is full.
    awaiting_hello: BTreeSet<(Instant, ConnHandle)>,
}

impl PhaseCounts {
    fn slot(&mut self, phase: Phase) -> Option<&mut usize> {
        match phase {
            Phase::Uncounted => None,
            Phase::Handshaking => Some(&mut self.handshaking),
            Phase::Established => Some(&mut self.established),
        }
    }

    /// Inbound handshakes in progress from `ip`.
    fn handshaking_from(&self, ip: IpAddr) -> usize {
        self.handshaking_from.get(&ip).copied().unwrap_or(0)
    }

    fn count_from(&mut self, conn: &Conn, phase: Phase, up: bool) {
        let Some(ip) = conn.counted_ip else {
            return;
        };
        if phase != Phase::Handshaking {
            return;
        }
        if up {
            *self.handshaking_from.entry(ip).or_insert(0) += 1;
        } else if let Some(n) = self.handshaking_from.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.handshaking_from.remove(&ip);
            }
        }
    }

    /// Moves `conn` to the counter of its current phase.
    fn sync(&mut self, handle: ConnHandle, conn: &mut Conn) {
        let waiting = conn.awaiting_hello_since();
        if waiting != conn.counted_hello {
            if let Some(since) = conn.counted_hello {
                self.awaiting_hello.remove(&(since, handle));
            }
            if let Some(since) = waiting {
                self.awaiting_hello.insert((since, handle));
            }
            conn.counted_hello = waiting;
        }
        let phase = conn.phase();
        if phase != conn.counted {
            if let Some(n) = self.slot(conn.counted) {
                *n -= 1;
            }
            self.count_from(conn, conn.counted, false);
            if let Some(n) = self.slot(phase) {
                *n += 1;
            }
            self.count_from(conn, phase, true);
            conn.counted = phase;
        }
    }

    /// Forgets `conn` (removed from the table).
    fn remove(&mut self, handle: ConnHandle, conn: &Conn) {
        if let Some(since) = conn.counted_hello {
            self.awaiting_hello.remove(&(since, handle));
        }
        if let Some(n) = self.slot(conn.counted) {
            *n -= 1;
        }
        self.count_from(conn, conn.counted, false);
    }
}

/// Identifies one connection of an [`Endpoint`]. Stale handles are harmless: lookups return
/// `None` or [`SendError::UnknownConnection`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnHandle(pub(crate) usize);

impl ConnHandle {
    /// The numeric index, for logs and maps.
    pub fn index(self) -> usize {
        self.0
    }
}

/// Who ended a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Initiator {
    /// This endpoint (application command, local timeout, or local verification failure).
    Local,
    /// The peer, or the network (the QUIC connection failed).
    Peer,
}

/// Something that happened; drained with [`Endpoint::poll_event`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// The handshake completed; the session may send and receive.
    Connected {
        /// The connection.
        conn: ConnHandle,
        /// What was agreed.
        session: Session,
    },
    /// The handshake failed: the client's view of a server rejection, the server's view of a
    /// client it refused, or a local failure (timeout, bad signature). Never a bare timeout.
    Rejected {
        /// The connection (now closed).
        conn: ConnHandle,
        /// Why.
        reason: ReasonCode,
        /// When trying again makes sense, if the rejecting side said so.
        retry_after: Option<Duration>,
        /// Log detail from the rejecting side.
        detail: String,
        /// Which side refused.
        initiator: Initiator,
    },
    /// An established session ended.
    Disconnected {
        /// The connection (now closed).
        conn: ConnHandle,
        /// Why.
        reason: ReasonCode,
        /// When reconnecting makes sense, if the closing side said so (e.g. a shutdown's
        /// advice).
        retry_after: Option<Duration>,
        /// Log detail from the closing side.
        detail: String,
        /// Which side ended it.
        initiator: Initiator,
    },
    /// A message arrived on `channel`.
    Message {
        /// The connection.
        conn: ConnHandle,
        /// The channel it arrived on.
        channel: ChannelId,
        /// The message, whole (reassembled if it was fragmented).
        payload: Bytes,
    },
}

/// Errors of [`Endpoint::send`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The handle names no connection; drop it.
    #[error("unknown connection")]
    UnknownConnection,
    /// The session is not established (still handshaking, or closed); wait for
    /// [`Event::Connected`] or drop the handle.
    #[error("session not established")]
    NotConnected,
    /// The channel id is not in the channel table.
    #[error("unknown channel {0:?}")]
    UnknownChannel(ChannelId),
    /// The message exceeds the channel's limit; split it at the application level.
    #[error("message of {size} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// Message size.
        size: usize,
        /// Limit.
        max: usize,
    },
    /// Reliable send queue full (the peer is not reading); retry later or disconnect it.
    #[error("send queue full")]
    QueueFull,
    /// The peer did not enable QUIC datagrams (RFC 9221); use a reliable channel.
    #[error("peer does not support datagrams")]
    DatagramsUnsupported,
}

/// Errors of [`Endpoint::connect`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// quinn-proto refused (invalid address, connection ids exhausted).
    #[error("QUIC connect failed: {0}")]
    Quic(#[from] quinn_proto::ConnectError),
}

/// Errors constructing an [`Endpoint`] (local misconfiguration).
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// A configuration value is out of range.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// TLS could not be set up.
    #[error(transparent)]
    Tls(#[from] TlsSetupError),
}

/// Options for one outgoing connection.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectOptions {
    /// Requested role.
    pub role: Role,
    /// Abort with `SERVER_KEY_MISMATCH` unless the server proves this identity key.
    pub expected_server_key: Option<[u8; 32]>,
    /// If set, the server must present a play ticket signed by one of these verification-server
    /// keys and naming its identity key, valid within [`Config::play_ticket_max_skew_ms`]
    /// (default 2 000 ms) at the client's wall-clock time when the Accept is processed;
    /// otherwise the client aborts with `PLAY_TICKET_INVALID` (or `NOT_AUTHORISED` for a
    /// missing, expired or not-yet-valid one).
    pub trusted_vs_keys: Option<VsKeys>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            role: Role::Player,
            expected_server_key: None,
            trusted_vs_keys: None,
        }
    }
}

#[derive(Debug)]
struct ServerState {
    tickets: TicketVerifier,
    addresses: AddressLimiter,
    scheduler: TickScheduler,
    ticks_since_revalidation: u32,
    /// Set by [`Endpoint::shutdown`]: the rejection every later connection gets.
    shutdown: Option<Rejection>,
    /// Set by [`Endpoint::pause_admissions`]: the rejection new connections get until resumed.
    paused: Option<Rejection>,
    /// The play ticket presented in accepts ([`Endpoint::set_play_ticket`]).
    play_ticket: Option<Vec<u8>>,
}

/// All sessions of one UDP socket. Construct with [`Endpoint::server`] or
/// [`Endpoint::client`]; drive as the crate docs show.
#[derive(Debug)]
pub struct Endpoint {
    config: Arc<Config>,
    quic: quinn_proto::Endpoint,
    client_config: quinn_proto::ClientConfig,
    identity: SigningKey,
    wall: WallClock,
    time_source: Arc<AnchoredTime>,
    conns: BTreeMap<ConnHandle, Conn>,
    /// Connections that may have datagrams to transmit: touched by an input or command since
    /// `poll_transmit` last found them empty. Idle connections are never polled.
    active: VecDeque<ConnHandle>,
    /// Connections whose deadline may have moved since it was last put in `timers`.
    timer_dirty: Vec<ConnHandle>,
    /// Min-heap of `(deadline, connection)`; an entry is live iff it equals the connection's
    /// `armed` deadline, others are skipped lazily (and compacted when they pile up).
    timers: BinaryHeap<Reverse<(Instant, ConnHandle)>>,
    events: VecDeque<Event>,
    responses: VecDeque<(Transmit, Vec<u8>)>,
    rng: ChaCha12Rng,
    server: Option<ServerState>,
    stats: EndpointStats,
    counts: PhaseCounts,
    last_now: Option<Instant>,
}

fn transport_config(config: &Config, server: bool) -> Arc<TransportConfig> {
    let mut transport = TransportConfig::default();
    let idle = IdleTimeout::try_from(Duration::from_millis(config.idle_timeout_ms))
        .unwrap_or(IdleTimeout::from(VarInt::MAX));
    transport
        .max_idle_timeout(Some(idle))
        .keep_alive_interval(None)
        .datagram_receive_buffer_size(Some(1 << 20))
        .datagram_send_buffer_size(config.datagram_send_buffer_bytes)
        .max_concurrent_bidi_streams(VarInt::from_u32(u32::from(server)))
        .max_concurrent_uni_streams(VarInt::from_u32(config.channels.len() as u32));
    if let Some(ack) = &config.ack_frequency {
        let mut frequency = quinn_proto::AckFrequencyConfig::default();
        frequency
            .ack_eliciting_threshold(VarInt::from_u32(ack.ack_eliciting_threshold))
            .max_ack_delay(Some(Duration::from_millis(ack.max_ack_delay_ms)))
            .reordering_threshold(VarInt::from_u32(ack.reordering_threshold));
        transport.ack_frequency_config(Some(frequency));
    }
    Arc::new(transport)
}

impl Endpoint {
    /// A game-server endpoint with identity `identity`, serving game server id `gs_id`
    /// (the audience join tickets must name), whose secret values (QUIC token and reset keys,
    /// connection ids, nonces, session ids) derive from `secrets` — fresh from the operating
    /// system in production (see [`Secrets`]). Add ticket issuer keys with
    /// [`Endpoint::tickets_mut`]. The tick scheduler starts at `now`.
    ///
    /// # Errors
    /// [`EndpointError`] if the config is invalid or TLS cannot be set up.
    pub fn server(
        config: Config,
        secrets: Secrets,
        identity: SigningKey,
        gs_id: u64,
        wall: WallClock,
        now: Instant,
    ) -> Result<Self, EndpointError> {
        Self::server_with(
            config,
            secrets,
            identity,
            gs_id,
            wall,
            now,
            CryptoOptions::default(),
        )
    }

    /// [`Endpoint::server`] with cryptography hooks (a seeded provider, a key log).
    ///
    /// # Errors
    /// [`EndpointError`] if the config is invalid or TLS cannot be set up.
    #[allow(clippy::too_many_arguments)]
    pub fn server_with(
        config: Config,
        secrets: Secrets,
        identity: SigningKey,
        gs_id: u64,
        wall: WallClock,
        now: Instant,
        crypto: CryptoOptions,
    ) -> Result<Self, EndpointError> {
        config.validate()?;
        let time_source = Arc::new(AnchoredTime::default());
        let mut server_config = quinn_proto::ServerConfig::new(
            tls::server_crypto(&identity, &crypto, time_source.clone())?,
            tls::token_key(secrets.derive("quic/token-key")),
        );
        server_config
            .transport_config(transport_config(&config, true))
            .time_source(time_source.clone());
        let server = ServerState {
            tickets: TicketVerifier::new(gs_id, config.tickets.clone()),
            addresses: AddressLimiter::new(&config.limits),
            scheduler: TickScheduler::new(now, config.tick.clone()),
            ticks_since_revalidation: 0,
            shutdown: None,
            paused: None,
            play_ticket: None,
        };
        let mut endpoint = Self::new(
            config,
            &secrets,
            identity,
            wall,
            &crypto,
            time_source,
            Some(Arc::new(server_config)),
        )?;
        endpoint.server = Some(server);
        Ok(endpoint)
    }

    /// A client endpoint with identity `identity` (the key its join tickets name); its nonces
    /// and connection ids derive from `secrets` (see [`Secrets`]).
    ///
    /// # Errors
    /// [`EndpointError`] if the config is invalid or TLS cannot be set up.
    pub fn client(
        config: Config,
        secrets: Secrets,
        identity: SigningKey,
        wall: WallClock,
    ) -> Result<Self, EndpointError> {
        Self::client_with(config, secrets, identity, wall, CryptoOptions::default())
    }

    /// [`Endpoint::client`] with cryptography hooks (a seeded provider, a key log).
    ///
    /// # Errors
    /// [`EndpointError`] if the config is invalid or TLS cannot be set up.
    pub fn client_with(
        config: Config,
        secrets: Secrets,
        identity: SigningKey,
        wall: WallClock,
        crypto: CryptoOptions,
    ) -> Result<Self, EndpointError> {
        config.validate()?;
        Self::new(
            config,
            &secrets,
            identity,
            wall,
            &crypto,
            Arc::new(AnchoredTime::default()),
            None,
        )
    }

    fn new(
        config: Config,
        secrets: &Secrets,
        identity: SigningKey,
        wall: WallClock,
        crypto: &CryptoOptions,
        time_source: Arc<AnchoredTime>,
        server_config: Option<Arc<quinn_proto::ServerConfig>>,
    ) -> Result<Self, EndpointError> {
        let mut endpoint_config =
            quinn_proto::EndpointConfig::new(tls::reset_key(secrets.derive("quic/reset-key")));
        let cid_seed = secrets.derive("quic/cid");
        endpoint_config
            .cid_generator(move || Box::new(tls::SeededCidGenerator::new(cid_seed)))
            .rng_seed(Some(secrets.derive("quic/rng")));
        let mut client_config =
            quinn_proto::ClientConfig::new(tls::client_crypto(crypto, time_source.clone())?);
        client_config
            .transport_config(transport_config(&config, false))
            .initial_dst_cid_provider(tls::initial_cid_provider(secrets.derive("quic/initial-dcid")));
        Ok(Self {
            quic: quinn_proto::Endpoint::new(Arc::new(endpoint_config), server_config, false, None),
            client_config,
            identity,
            wall,
            time_source,
            conns: BTreeMap::new(),
            active: VecDeque::new(),
            timer_dirty: Vec::new(),
            timers: BinaryHeap::new(),
            events: VecDeque::new(),
            responses: VecDeque::new(),
            rng: ChaCha12Rng::from_seed(secrets.derive("tickwire/rng")),
            server: None,
            stats: EndpointStats::default(),
            counts: PhaseCounts::default(),
            last_now: None,
            config: Arc::new(config),
        })
    }

    /// Time only moves forward: an earlier `now` than already seen is replaced by the latest.
    fn advance(&mut self, now: Instant) -> Instant {
        let now = match self.last_now {
            Some(last) if last > now => last,
            _ => now,
        };
        self.last_now = Some(now);
        self.time_source.set(self.wall.unix_ms_at(now));
        now
    }

    // ----- inputs -----

    /// Input: a UDP datagram from `remote`, received on local address `local_ip` (if known)
    /// with ECN codepoint `ecn`.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        local_ip: Option<IpAddr>,
        ecn: Option<EcnCodepoint>,
        data: BytesMut,
    ) {
        let now = self.advance(now);
        let mut buf = Vec::new();
        self.stats.datagrams.received += 1;
        match self.quic.handle(now, remote, local_ip, ecn, data, &mut buf) {
            None => self.stats.datagrams.dropped += 1,
            Some(DatagramEvent::ConnectionEvent(ch, event)) => {
                let handle = ConnHandle(ch.0);
                if let Some(conn) = self.conns.get_mut(&handle) {
                    self.stats.datagrams.to_connections += 1;
                    conn.quic.handle_event(event);
                    self.process_received(now, handle);
                } else {
                    self.stats.datagrams.dropped += 1;
                }
            }
            Some(DatagramEvent::NewConnection(incoming)) => {
                self.stats.datagrams.initials += 1;
                self.on_incoming(now, incoming);
            }
            Some(DatagramEvent::Response(transmit)) => {
                self.stats.datagrams.stateless_responses += 1;
                self.queue_response(transmit, buf);
            }
        }
    }

    /// Input: the deadline from [`Endpoint::poll_timeout`] passed (spurious calls are fine).
    /// Only connections whose deadline is due are visited: O(due · log n).
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.advance(now);
        self.refresh_timers();
        let mut due = Vec::new();
        while let Some(&Reverse((deadline, handle))) = self.timers.peek() {
            if deadline > now {
                break;
            }
            self.timers.pop();
            if let Some(conn) = self.conns.get_mut(&handle) {
                if conn.armed == Some(deadline) {
                    conn.armed = None;
                    due.push(handle);
                }
            }
        }
        let server_tick = self.server.as_ref().map_or(0, |s| s.scheduler.current_tick());
        for handle in due {
            if self
                .with_conn(now, handle, server_tick, |conn, ctx| conn.handle_timeout(ctx))
                .is_some()
            {
                self.process(now, handle);
            }
        }
    }

    /// Re-reads the deadline of every connection touched since the last call and arms it in
    /// the heap; rebuilds the heap when stale entries outnumber live ones.
    fn refresh_timers(&mut self) {
        while let Some(handle) = self.timer_dirty.pop() {
            let Some(conn) = self.conns.get_mut(&handle) else {
                continue;
            };
            conn.timer_queued = false;
            let deadline = conn.poll_timeout();
            if deadline != conn.armed {
                conn.armed = deadline;
                if let Some(t) = deadline {
                    self.timers.push(Reverse((t, handle)));
                }
            }
        }
        if self.timers.len() > 2 * self.conns.len() + 64 {
            self.timers = self
                .conns
                .iter()
                .filter_map(|(handle, conn)| Some(Reverse((conn.armed?, *handle))))
                .collect();
        }
    }

    /// Marks `handle` as possibly having output and a moved deadline.
    fn touch(&mut self, handle: ConnHandle) {
        let Some(conn) = self.conns.get_mut(&handle) else {
            return;
        };
        if !conn.tx_queued {
            conn.tx_queued = true;
            self.active.push_back(handle);
        }
        if !conn.timer_queued {
            conn.timer_queued = true;
            self.timer_dirty.push(handle);
        }
    }

    /// Admission of a new connection attempt, in order (`PROTOCOL.md` §4.5):
    /// 1. at `max_pending_handshakes` handshakes in progress, for an Initial that would be
    ///    admitted, first evict the connection that has waited longest for its Hello after
    ///    completing TLS, if any; then, still at the limit: a Retry for an unvalidated address
    ///    (when Retry is in use), else refuse (`CONNECTION_REFUSED`), as with
    ///    `max_sessions + max_pending_handshakes` connections in the table (draining ones
    ///    included);
    /// 2. from an address not yet validated, with at least `retry_threshold` handshakes in
    ///    progress, or when the handshake would only carry a fixed rejection (shutdown,
    ///    paused, full): answer with a Retry (RFC 9000 §8.1.2), keeping no state;
    /// 3. past the source's `max_pending_handshakes_per_addr`: a Retry if unvalidated, else
    ///    refuse;
    /// 4. without a handshake token for the source: a Retry if unvalidated, else a
    ///    `RATE_LIMITED` rejection handshake; the token is spent once QUIC decrypted the
    ///    Initial;
    /// 5. accept: the handshake runs, carrying the rejection if one was decided.
    ///
    /// Sources are IPv4 addresses and IPv6 /64 prefixes ([`limits::source_key`](crate::limits::source_key)).
    /// O(log addresses): the pending and live counts are counters, not scans.
    fn on_incoming(&mut self, now: Instant, incoming: quinn_proto::Incoming) {
        let validated = incoming.remote_address_validated();
        let ip = source_key(incoming.remote_address().ip());
        // Evict only for an Initial that will be admitted: not for one about to get a Retry
        // (an unvalidated source above the Retry threshold) or to be turned away for its
        // source's share, so that spoofed or excess Initials cannot churn the table.
        if self.server.is_some()
            && self.counts.handshaking >= self.config.max_pending_handshakes
            && (validated || self.counts.handshaking < self.config.retry_threshold())
            && self.counts.handshaking_from(ip) < self.config.max_pending_handshakes_per_addr
        {
            self.evict_silent(now);
        }
        let pending = self.counts.handshaking;
        let live = self.counts.established;
        let Some(server) = &mut self.server else {
            self.quic.ignore(incoming);
            self.stats.datagrams.accept_failed += 1;
            return;
        };
        let mut buf = Vec::new();
        // Draining and closing connections count too: a peer that opens and at once closes
        // connections frees its pending slot but not its table entry until draining ends.
        let table_full = self.conns.len() >= self.config.max_sessions + self.config.max_pending_handshakes;
        if pending >= self.config.max_pending_handshakes || table_full {
            if !validated && !table_full && pending >= self.config.retry_threshold() {
                // Stateless, and a real client comes back validated: then a silent
                // connection makes room for it (above).
                self.stats.datagrams.retries_rate_limited += 1;
                self.send_retry(incoming);
                return;
            }
            let transmit = self.quic.refuse(incoming, &mut buf);
            self.stats.connections_refused += 1;
            self.stats.datagrams.refused += 1;
            self.queue_response(transmit, buf);
            return;
        }
        self.stats.datagrams.initials_validated += u64::from(validated);
        let fixed = if let Some(rejection) = &server.shutdown {
            Some(rejection.clone())
        } else if let Some(rejection) = &server.paused {
            Some(rejection.clone())
        } else if live + pending >= self.config.max_sessions {
            Some(Rejection {
                reason: ReasonCode::SERVER_FULL,
                retry_after_ms: Some(self.config.server_full_retry_after_ms),
                detail: format!("{} sessions", self.config.max_sessions),
            })
        } else {
            None
        };
        if !validated && (fixed.is_some() || pending >= self.config.retry_threshold()) {
            self.stats.datagrams.retries_before_rejection += u64::from(fixed.is_some());
            self.send_retry(incoming);
            return;
        }
        // One address (or a few) must not hold the whole pending table: past its share, a
        // spoofable source must prove it receives at its address, and a proven one waits.
        if fixed.is_none() && self.counts.handshaking_from(ip) >= self.config.max_pending_handshakes_per_addr
        {
            if validated {
                let transmit = self.quic.refuse(incoming, &mut buf);
                self.stats.connections_refused += 1;
                self.stats.handshakes_refused_per_addr += 1;
                self.stats.datagrams.refused += 1;
                self.queue_response(transmit, buf);
            } else {
                self.stats.datagrams.retries_rate_limited += 1;
                self.send_retry(incoming);
            }
            return;
        }
        // The address's handshake token is only looked at here, and spent once QUIC has
        // decrypted the Initial (below): garbage from a player's address costs it nothing.
        // A rejection is still answered with a full handshake so the client learns the reason.
        let rejection = match fixed {
            Some(rejection) => Some(rejection),
            None => match server.addresses.peek(now, ip) {
                Ok(()) => None,
                Err(_) if !validated => {
                    self.stats.datagrams.retries_rate_limited += 1;
                    self.send_retry(incoming);
                    return;
                }
                Err(limited) => {
                    self.stats.handshakes_rate_limited += 1;
                    Some(Rejection {
                        reason: ReasonCode::RATE_LIMITED,
                        retry_after_ms: Some(limited.retry_after.as_millis().min(u32::MAX as u128) as u32),
                        detail: "too many handshakes from this address".into(),
                    })
                }
            },
        };
        match self.quic.accept(incoming, now, &mut buf, None) {
            Ok((ch, quic)) => {
                self.stats.datagrams.accepted += 1;
                if rejection.is_none() {
                    // Cannot fail: `peek` just saw the token, and nothing ran in between.
                    let _ = server.addresses.check(now, ip);
                }
                let handle = ConnHandle(ch.0);
                let mut conn = Conn::server(quic, now, &self.config, rejection);
                conn.counted_ip = Some(ip);
                self.conns.insert(handle, conn);
                self.process_received(now, handle);
            }
            Err(err) => {
                self.stats.datagrams.accept_failed += 1;
                if let Some(transmit) = err.response {
                    self.queue_response(transmit, buf);
                }
            }
        }
    }

    /// Closes the connection that has waited longest for its Hello after completing TLS (a
    /// client sends its Hello with its TLS Finished, so such a connection is most likely a
    /// half-open attacker holding a slot), making room for a new handshake.
    fn evict_silent(&mut self, now: Instant) {
        let Some(&(_, victim)) = self.counts.awaiting_hello.first() else {
            return;
        };
        self.stats.handshakes_evicted_no_hello += 1;
        self.close_with(
            now,
            victim,
            Rejection::new(
                ReasonCode::HANDSHAKE_TIMEOUT,
                "no Hello after the TLS handshake; evicted for a new handshake",
            ),
        );
    }

    /// Answers `incoming` with a Retry: a stateless packet smaller than the Initial, carrying
    /// a token sealed with the endpoint's token key and bound to the client's address.
    fn send_retry(&mut self, incoming: quinn_proto::Incoming) {
        let mut buf = Vec::new();
        match self.quic.retry(incoming, &mut buf) {
            Ok(transmit) => {
                self.stats.datagrams.retries_sent += 1;
                self.queue_response(transmit, buf);
            }
            Err(err) => {
                // Unreachable: only an Initial without a Retry token is unvalidated, and those
                // may always be retried. Drop it rather than start a handshake.
                self.quic.ignore(err.into_incoming());
                self.stats.datagrams.accept_failed += 1;
            }
        }
    }

    fn queue_response(&mut self, transmit: Transmit, buf: Vec<u8>) {
        if self.responses.len() >= MAX_QUEUED_RESPONSES {
            self.stats.responses_dropped += 1;
            return;
        }
        self.responses.push_back((transmit, buf));
    }

    /// Runs a connection's event processing, the server side of its handshake, and its
    /// endpoint-event exchange; forgets it once drained.
    fn process(&mut self, now: Instant, handle: ConnHandle) {
        self.process_inner(now, handle, false);
    }

    /// [`Self::process`] after a datagram reached the connection: also checks liveness.
    fn process_received(&mut self, now: Instant, handle: ConnHandle) {
        self.process_inner(now, handle, true);
    }

    fn process_inner(&mut self, now: Instant, handle: ConnHandle, received: bool) {
        self.touch(handle);
        let Some(conn) = self.conns.get_mut(&handle) else {
            return;
        };
        let server_tick = self.server.as_ref().map_or(0, |s| s.scheduler.current_tick());
        let unix_ms = self.wall.unix_ms_at(now);
        let before = self.events.len();
        let mut nonce = nonce_fn(&mut self.rng);
        let mut ctx = Ctx {
            now,
            handle,
            config: &self.config,
            events: &mut self.events,
            nonce: &mut nonce,
            server_tick,
            unix_ms,
        };
        let mut pending = conn.process(&mut ctx, received);
        while let Some(Pending::Hello(hello)) = pending.take() {
            let Some(server) = self.server.as_mut() else { break };
            let Some(awaiting) = conn.take_awaiting_hello() else {
                break;
            };
            let tick_rate_hz = u16::try_from(self.config.tick.tick_rate_hz).unwrap_or(u16::MAX);
            let policy = ServerPolicy {
                version_min: self.config.version_min,
                version_max: self.config.version_max,
                schema_hash: self.config.schema_hash,
                capabilities: self.config.capabilities,
                identity: &self.identity,
                accept_game_servers: self.config.accept_game_servers,
                play_ticket: server.play_ticket.as_deref(),
            };
            let contribution = ServerContribution {
                nonce: (ctx.nonce)(),
                session_id: u64::from_be_bytes((ctx.nonce)()[..8].try_into().expect("nonce is 24 bytes")),
                server_tick,
                tick_rate_hz,
            };
            let tickets = &mut server.tickets;
            match awaiting.handle_hello(
                &policy,
                &hello,
                contribution,
                |ticket: &JoinTicket, key: &[u8; 32]| tickets.verify(ticket, unix_ms, key),
            ) {
                Ok((session, accept)) => conn.accept(&mut ctx, session, &accept),
                Err(rejection) => conn.close(&mut ctx, rejection),
            }
            pending = conn.next_control_frame(&mut ctx);
        }
        count_events(&mut self.stats, &self.events, before);
        self.counts.sync(handle, conn);
        while let Some(event) = conn.quic.poll_endpoint_events() {
            if let Some(reply) = self
                .quic
                .handle_event(quinn_proto::ConnectionHandle(handle.0), event)
            {
                conn.quic.handle_event(reply);
            }
        }
        if conn.quic.is_drained() {
            // Queued handles of a removed connection are skipped when met.
            if let Some(conn) = self.conns.remove(&handle) {
                self.counts.remove(handle, &conn);
            }
        }
    }

    // ----- outputs -----

    /// Output: the next UDP datagram to send, written into `buf` (cleared first); the
    /// returned [`Transmit`] says where to, its size and segment size. Drain until `None`.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
        let now = self.advance(now);
        if let Some((transmit, bytes)) = self.responses.pop_front() {
            buf.clear();
            buf.extend_from_slice(&bytes);
            return Some(transmit);
        }
        // Only connections touched since they last came up empty can have anything to send;
        // they are served in the order they were touched, each until it has nothing more.
        loop {
            let key = *self.active.front()?;
            let Some(conn) = self.conns.get_mut(&key) else {
                self.active.pop_front();
                continue;
            };
            conn.top_up_datagrams(now);
            buf.clear();
            // Sending arms QUIC's loss-detection, pacing and idle timers.
            if !conn.timer_queued {
                conn.timer_queued = true;
                self.timer_dirty.push(key);
            }
            if let Some(transmit) = conn.quic.poll_transmit(now, 1, buf) {
                return Some(transmit);
            }
            conn.tx_queued = false;
            self.active.pop_front();
        }
    }

    /// Output: the next event. Drain until `None` after every input.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Output: the next absolute deadline at which [`Endpoint::handle_timeout`] (or, on a
    /// server, [`Endpoint::poll_tick`]) has work; `None` = no timer.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        self.refresh_timers();
        let mut deadline = self.server.as_ref().map(|s| s.scheduler.next_deadline());
        while let Some(&Reverse((t, handle))) = self.timers.peek() {
            if self.conns.get(&handle).is_some_and(|c| c.armed == Some(t)) {
                deadline = Some(deadline.map_or(t, |d| d.min(t)));
                break;
            }
            self.timers.pop();
        }
        deadline
    }

    /// Output (server): the next due tick, with its lateness. Drain until `None`. Every
    /// `revalidate_every_ticks` ticks, live sessions' tickets are rechecked.
    pub fn poll_tick(&mut self, now: Instant) -> Option<TickInfo> {
        let now = self.advance(now);
        let server = self.server.as_mut()?;
        let tick = server.scheduler.poll_tick(now)?;
        self.stats.ticks += 1;
        server.ticks_since_revalidation += 1;
        if server.ticks_since_revalidation >= self.config.revalidate_every_ticks {
            server.ticks_since_revalidation = 0;
            self.revalidate(now);
        }
        Some(tick)
    }

    // ----- commands -----

    /// Command (client): opens a session to `remote` presenting `ticket`. With
    /// `options.role` = [`Role::GameServer`] the server refuses the hello with `BAD_HANDSHAKE`
    /// (a game server presents no ticket): use [`Endpoint::connect_game_server`].
    ///
    /// # Errors
    /// [`ConnectError`] if QUIC refuses the address. Later failures arrive as
    /// [`Event::Rejected`].
    pub fn connect(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        ticket: JoinTicket,
        options: ConnectOptions,
    ) -> Result<ConnHandle, ConnectError> {
        self.connect_inner(now, remote, Some(ticket), options)
    }

    /// Command (game server): opens a session to its verification server at `remote` with
    /// [`Role::GameServer`] and no join ticket (the VS admits it on its TPM quote; see
    /// [`crate::vs`]). `options.role` is ignored.
    ///
    /// # Errors
    /// [`ConnectError`] if QUIC refuses the address.
    pub fn connect_game_server(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        options: ConnectOptions,
    ) -> Result<ConnHandle, ConnectError> {
        let options = ConnectOptions {
            role: Role::GameServer,
            ..options
        };
        self.connect_inner(now, remote, None, options)
    }

    fn connect_inner(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        ticket: Option<JoinTicket>,
        options: ConnectOptions,
    ) -> Result<ConnHandle, ConnectError> {
        let now = self.advance(now);
        // Checked against the wall clock when the Accept is processed (`Ctx::unix_ms`).
        let play_ticket = options.trusted_vs_keys.map(|keys| PlayTicketCheck {
            keys,
            max_skew_ms: self.config.play_ticket_max_skew_ms,
        });
        let offer = ClientOffer {
            version_min: self.config.version_min,
            version_max: self.config.version_max,
            schema_hash: match options.role {
                Role::GameServer => crate::vs::VS_SCHEMA_HASH,
                _ => self.config.schema_hash,
            },
            capabilities: self.config.capabilities,
            role: options.role,
            join_ticket: ticket,
            expected_server_key: options.expected_server_key,
            play_ticket,
        };
        let (ch, quic) = self
            .quic
            .connect(now, self.client_config.clone(), remote, SERVER_NAME)?;
        let handle = ConnHandle(ch.0);
        let handshake = ClientHandshake::new(self.identity.clone(), offer);
        self.conns
            .insert(handle, Conn::client(quic, now, &self.config, handshake));
        self.process(now, handle);
        Ok(handle)
    }

    /// Command: sends `payload` on `channel` (see [`crate::channel`] for delivery semantics).
    ///
    /// # Errors
    /// [`SendError`]; nothing is sent on error.
    pub fn send(
        &mut self,
        now: Instant,
        conn: ConnHandle,
        channel: ChannelId,
        payload: Bytes,
    ) -> Result<(), SendError> {
        self.send_with(now, conn, channel, payload, SendOptions::default())
    }

    /// Command: [`Endpoint::send`] with per-message options (a deadline).
    ///
    /// # Errors
    /// [`SendError`]; nothing is sent on error.
    pub fn send_with(
        &mut self,
        now: Instant,
        conn: ConnHandle,
        channel: ChannelId,
        payload: Bytes,
        options: SendOptions,
    ) -> Result<(), SendError> {
        let now = self.advance(now);
        let handle = conn;
        let config = &self.config;
        let conn = self.conns.get_mut(&handle).ok_or(SendError::UnknownConnection)?;
        let sent = conn.send(now, config, channel, payload, options);
        self.counts.sync(handle, conn);
        sent?;
        self.touch(handle);
        Ok(())
    }

    /// Command: closes `conn`, telling the peer `reason` and `detail`. Reported as
    /// [`Event::Disconnected`] (or [`Event::Rejected`] mid-handshake) with
    /// [`Initiator::Local`]. Unknown handles are ignored.
    pub fn close(&mut self, now: Instant, conn: ConnHandle, reason: ReasonCode, detail: &str) {
        self.close_with(now, conn, Rejection::new(reason, detail));
    }

    fn close_with(&mut self, now: Instant, handle: ConnHandle, rejection: Rejection) {
        let now = self.advance(now);
        if self
            .with_conn(now, handle, 0, |conn, ctx| conn.close(ctx, rejection))
            .is_some()
        {
            self.process(now, handle);
        }
    }

    /// Runs `f` on connection `handle` with a context over the endpoint's shared state, then
    /// counts the events it raised. `None` if the handle names no connection.
    fn with_conn<R>(
        &mut self,
        now: Instant,
        handle: ConnHandle,
        server_tick: u64,
        f: impl FnOnce(&mut Conn, &mut Ctx<'_>) -> R,
    ) -> Option<R> {
        let conn = self.conns.get_mut(&handle)?;
        let before = self.events.len();
        let unix_ms = self.wall.unix_ms_at(now);
        let result = {
            let mut nonce = nonce_fn(&mut self.rng);
            let mut ctx = Ctx {
                now,
                handle,
                config: &self.config,
                events: &mut self.events,
                nonce: &mut nonce,
                server_tick,
                unix_ms,
            };
            f(conn, &mut ctx)
        };
        self.counts.sync(handle, conn);
        count_events(&mut self.stats, &self.events, before);
        Some(result)
    }

    /// Command (server): stops admitting sessions and closes every connection with
    /// `SERVER_SHUTDOWN`, advising clients to retry after `retry_after` if given.
    pub fn shutdown(&mut self, now: Instant, detail: &str, retry_after: Option<Duration>) {
        let rejection = Rejection {
            reason: ReasonCode::SERVER_SHUTDOWN,
            retry_after_ms: retry_after.map(|d| d.as_millis().min(u32::MAX as u128) as u32),
            detail: detail.to_owned(),
        };
        if let Some(server) = &mut self.server {
            server.shutdown = Some(rejection.clone());
        }
        let handles: Vec<ConnHandle> = self.conns.keys().copied().collect();
        for handle in handles {
            self.close_with(now, handle, rejection.clone());
        }
    }

    /// Command (server): refuses new connections with `reason` (and `retry_after`, if given)
    /// until [`Endpoint::resume_admissions`]; live sessions continue. A game server pauses while
    /// it holds no valid play ticket.
    pub fn pause_admissions(&mut self, reason: ReasonCode, detail: &str, retry_after: Option<Duration>) {
        if let Some(server) = &mut self.server {
            server.paused = Some(Rejection {
                reason,
                retry_after_ms: retry_after.map(|d| d.as_millis().min(u32::MAX as u128) as u32),
                detail: detail.to_owned(),
            });
        }
    }

    /// Command (server): admits new connections again after [`Endpoint::pause_admissions`].
    pub fn resume_admissions(&mut self) {
        if let Some(server) = &mut self.server {
            server.paused = None;
        }
    }

    /// Whether admissions are paused.
    pub fn admissions_paused(&self) -> bool {
        self.server.as_ref().is_some_and(|s| s.paused.is_some())
    }

    /// Command (server): the play ticket (an encoded [`Envelope`](crate::vs::Envelope)) to
    /// present in every later accept; `None` presents none.
    pub fn set_play_ticket(&mut self, ticket: Option<Vec<u8>>) {
        if let Some(server) = &mut self.server {
            server.play_ticket = ticket;
        }
    }

    /// Command (server): closes every session a client opened to this endpoint (handshaking
    /// or established; not sessions this endpoint opened, such as a game server's session to
    /// its verification server) with `reason`. Returns how many were closed.
    pub fn close_client_sessions(&mut self, now: Instant, reason: ReasonCode, detail: &str) -> usize {
        let handles: Vec<ConnHandle> = self
            .conns
            .iter()
            .filter(|(_, conn)| conn.is_inbound() && !matches!(conn.state, State::Closed))
            .map(|(handle, _)| *handle)
            .collect();
        for &handle in &handles {
            self.close(now, handle, reason, detail);
        }
        handles.len()
    }

    /// Established sessions clients opened to this endpoint.
    pub fn client_session_count(&self) -> usize {
        self.conns
            .values()
            .filter(|conn| conn.is_inbound() && conn.is_established())
            .count()
    }

    /// Command (server): rechecks every live session's ticket now (revocation, and expiry if
    /// `tickets.close_on_expiry`), closing failures with the ticket reason. Runs
    /// automatically every `revalidate_every_ticks` ticks.
    pub fn revalidate(&mut self, now: Instant) {
        let Some(server) = &self.server else { return };
        let unix_ms = self.wall.unix_ms_at(now);
        let close_on_expiry = self.config.close_sessions_on_ticket_expiry;
        let failed: Vec<(ConnHandle, TicketError)> = self
            .conns
            .iter()
            .filter_map(|(handle, conn)| {
                let ticket = conn.session.as_ref()?.ticket.as_ref()?;
                match server.tickets.check_live(ticket.key_id, &ticket.claims, unix_ms) {
                    Err(TicketError::Expired { .. }) if !close_on_expiry => None,
                    Err(e) if conn.is_established() => Some((*handle, e)),
                    _ => None,
                }
            })
            .collect();
        for (handle, error) in failed {
            self.close_with(now, handle, Rejection::from(error));
        }
    }

    // ----- getters -----

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The session agreed on `conn`, once established.
    pub fn session(&self, conn: ConnHandle) -> Option<&Session> {
        self.conns.get(&conn)?.session.as_ref()
    }

    /// The peer's current address.
    pub fn remote_address(&self, conn: ConnHandle) -> Option<SocketAddr> {
        Some(self.conns.get(&conn)?.quic.remote_address())
    }

    /// A statistics snapshot for `conn`.
    pub fn stats(&self, conn: ConnHandle) -> Option<ConnectionStats> {
        Some(self.conns.get(&conn)?.snapshot_stats())
    }

    /// Endpoint-wide counters.
    pub fn endpoint_stats(&self) -> EndpointStats {
        let mut stats = self.stats.clone();
        stats.sessions_live = self.counts.established;
        stats.handshakes_pending = self.counts.handshaking;
        debug_assert_eq!(
            (stats.sessions_live, stats.handshakes_pending),
            (
                self.conns.values().filter(|c| c.is_established()).count(),
                self.conns.values().filter(|c| c.is_handshaking()).count()
            ),
            "phase counters agree with a scan"
        );
        if let Some(server) = &self.server {
            stats.address_limiter = server.addresses.stats();
            stats.addresses_tracked = server.addresses.tracked();
        }
        stats
    }

    /// What became of the datagrams received so far (a cheap copy, unlike
    /// [`Endpoint::endpoint_stats`]).
    pub fn datagram_stats(&self) -> DatagramStats {
        self.stats.datagrams
    }

    /// Handshakes in progress (either direction), from a counter: O(1).
    pub fn handshakes_pending(&self) -> usize {
        self.counts.handshaking
    }

    /// Established sessions (either direction), from a counter: O(1).
    pub fn sessions_live(&self) -> usize {
        self.counts.established
    }

    /// Handles of all connections not yet drained, in handle order.
    pub fn connections(&self) -> impl Iterator<Item = ConnHandle> + '_ {
        self.conns.keys().copied()
    }

    /// Number of connections not yet drained (established, handshaking or closing).
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// (Server) the ticket verifier: add issuer keys, revoke tickets, clients or keys.
    pub fn tickets_mut(&mut self) -> Option<&mut TicketVerifier> {
        Some(&mut self.server.as_mut()?.tickets)
    }

    /// (Server) the last delivered tick.
    pub fn current_tick(&self) -> Option<u64> {
        Some(self.server.as_ref()?.scheduler.current_tick())
    }

    /// (Server) the tick scheduler, for its deadline and lateness statistics.
    pub fn scheduler(&self) -> Option<&TickScheduler> {
        Some(&self.server.as_ref()?.scheduler)
    }

    /// (Client) tick synchronisation state for `conn`.
    pub fn tick_sync(&self, conn: ConnHandle) -> Option<&TickSync> {
        self.conns.get(&conn)?.tick_sync()
    }

    /// (Client) the next local tick of `conn`, run ahead of the server by the configured
    /// margin and slewed smoothly; drain until `None`. Its deadline is
    /// `tick_sync(conn)?.next_deadline()` (not part of [`Endpoint::poll_timeout`], since only
    /// applications that tick need it).
    pub fn poll_client_tick(&mut self, now: Instant, conn: ConnHandle) -> Option<u64> {
        let now = self.advance(now);
        self.conns.get_mut(&conn)?.tick_sync_mut()?.poll_tick(now)
    }

    /// The wall-clock anchor.
    pub fn wall_clock(&self) -> WallClock {
        self.wall
    }

    /// Command: replaces the wall-clock anchor, e.g. after the system clock was stepped (NTP,
    /// an operator). Ticket checks use the new anchor from now on; monotonic time is unaffected.
    pub fn set_wall_clock(&mut self, wall: WallClock) {
        self.wall = wall;
        if let Some(now) = self.last_now {
            self.time_source.set(wall.unix_ms_at(now));
        }
    }

    /// This endpoint's identity public key.
    pub fn identity_key(&self) -> [u8; 32] {
        self.identity.verifying_key().to_bytes()
    }
}

fn nonce_fn(rng: &mut ChaCha12Rng) -> impl FnMut() -> [u8; NONCE_LEN] + '_ {
    move || {
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        nonce
    }
}

fn count_events(stats: &mut EndpointStats, events: &VecDeque<Event>, from: usize) {
    for event in events.iter().skip(from) {
        match event {
            Event::Connected { .. } => stats.sessions_established += 1,
            Event::Rejected { reason, .. } => *stats.rejections.entry(*reason).or_default() += 1,
            Event::Disconnected { reason, .. } => *stats.disconnections.entry(*reason).or_default() += 1,
            Event::Message { .. } => {}
        }
    }
}

// ----- fuzzing hook (the `endpoint` fuzz target checks the response queue's bound) -----
#[cfg(any(fuzzing, test))]
impl Endpoint {
    /// Fuzzing only: endpoint-level responses queued now, and their cap.
    pub(crate) fn queued_responses(&self) -> (usize, usize) {
        (self.responses.len(), MAX_QUEUED_RESPONSES)
    }
}

// ----- testing hook (feature `testing` only; not part of the non-testing API) -----
#[cfg(any(test, feature = "testing"))]
impl Endpoint {
    /// Testing only: runs `f` on connection `handle` (to act as a misbehaving peer through
    /// `Conn`'s `testing_*` methods), then processes it so what `f` queued is sent. `None` for
    /// an unknown handle.
    pub(crate) fn with_conn_for_testing<R>(
        &mut self,
        now: Instant,
        handle: ConnHandle,
        f: impl FnOnce(&mut Conn) -> R,
    ) -> Option<R> {
        let now = self.advance(now);
        let result = f(self.conns.get_mut(&handle)?);
        self.process(now, handle);
        Some(result)
    }
}
