//! The [`Endpoint`]: every tickwire session of one UDP socket, as a sans-IO state machine.
//!
//! Method kinds follow quinn-proto: inputs are `handle_*`, outputs are `poll_*` drained until
//! `None`, commands are verbs, getters take `&self`. See the crate docs for the drive loop.

mod admission;
mod builder;
mod recorder;
mod server;
mod table;
mod timers;

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use ed25519_dalek::SigningKey;
use quinn_proto::{DatagramEvent, IdleTimeout, TransportConfig, VarInt};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;

use crate::channel::{ChannelId, SendOptions};
use crate::clock::WallClock;
use crate::compress::Codec;
use crate::config::{Config, ConfigError};
use crate::connection::{Conn, Ctx, ServerCtx};
use crate::handshake::{ClientHandshake, ClientOffer, PlayTicketCheck, Rejection, Session};
use crate::histogram::Histogram;
use crate::secrets::Secrets;
use crate::shared::{ConnHandle, ConnectError, Ecn, Event, SendError, Transmit};
use crate::stats::{
    count_reason, CompressionStats, ConnectionStats, DatagramStats, EndpointStats, LimiterStats,
    ReassemblyStats, RefusalStats,
};
use crate::tick::{TickInfo, TickScheduler, TickSync};
use crate::ticket::{JoinTicket, VsKeys};
use crate::tls::{self, AnchoredTime, CryptoOptions, TlsSetupError, SERVER_NAME};
use crate::wire::{ReasonCode, Role, NONCE_LEN};

use admission::{Counted, PhaseCounts};
pub use builder::EndpointBuilder;
pub use recorder::RecordedChunk;
pub use server::ServerMut;
use server::ServerState;
use table::ConnTable;
use timers::{TimerSlot, Timers};

/// Errors constructing an [`Endpoint`] (local misconfiguration).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
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

/// Where [`Endpoint::connect_webtransport`] sends its extended CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebTransportTarget {
    /// `:authority`, e.g. `127.0.0.1:4433`.
    pub authority: String,
    /// `:path`, e.g. [`DEFAULT_PATH`](crate::webtransport::DEFAULT_PATH).
    pub path: String,
    /// `origin`, as a browser sends it; `None` sends none.
    pub origin: Option<String>,
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

/// A connection and the endpoint's bookkeeping about it: whether it is queued for transmit,
/// its armed timer, and the counters it is counted in.
#[derive(Debug)]
struct Entry {
    conn: Conn,
    /// Whether the connection is in [`Endpoint::active`].
    tx_queued: bool,
    timer: TimerSlot,
    counted: Counted,
    /// Client endpoints: the synchronised-tick deadline a `handle_timeout` already woke the
    /// application for; left out of `poll_timeout` until the tick is taken, so an
    /// application that does not tick is woken once per tick, not continuously.
    tick_woken: Option<Instant>,
    /// When the connection was created (server: its first Initial arrived; client: `connect`),
    /// for the handshake-time histogram.
    created: Instant,
}

impl Entry {
    fn new(conn: Conn, created: Instant) -> Self {
        Self {
            conn,
            created,
            tx_queued: false,
            timer: TimerSlot::default(),
            counted: Counted::default(),
            tick_woken: None,
        }
    }
}

/// Per-connection counters and histograms summed over connections, for the endpoint-wide
/// figures in [`EndpointStats`].
#[derive(Debug, Clone, Copy, Default)]
struct ConnTotals {
    rtt: Histogram,
    jitter: Histogram,
    reassembly: ReassemblyStats,
    message_limiter: LimiterStats,
    compression: CompressionStats,
    message_refusals: RefusalStats,
}

impl ConnTotals {
    fn add(&mut self, stats: &ConnectionStats) {
        self.rtt.merge(&stats.heartbeat.rtt_histogram);
        self.jitter.merge(&stats.heartbeat.jitter_histogram);
        self.reassembly += stats.reassembly;
        self.compression += stats.compression;
        self.message_refusals += stats.refusals;
        if let Some(limiter) = stats.limiter {
            self.message_limiter += limiter;
        }
    }
}

/// All sessions of one UDP socket: a sans-IO state machine. Build one with
/// [`Endpoint::builder`]; drive it as the crate docs show. Server-only operations (admission,
/// shutdown, revocation) are on [`Endpoint::server_mut`].
///
/// Method kinds follow quinn-proto: inputs are `handle_*`, outputs are `poll_*` drained until
/// `None`, the next deadline is [`Endpoint::poll_timeout`], commands are verbs, getters take
/// `&self`.
#[derive(Debug)]
pub struct Endpoint {
    config: Arc<Config>,
    quic: quinn_proto::Endpoint,
    client_config: quinn_proto::ClientConfig,
    /// Outgoing WebTransport connections: ALPN `h3`, room for the server's streams.
    webtransport_client_config: quinn_proto::ClientConfig,
    identity: SigningKey,
    wall: WallClock,
    time_source: Arc<AnchoredTime>,
    conns: ConnTable<Entry>,
    /// Connections that may have datagrams to transmit: touched by an input or command since
    /// `poll_transmit` last found them empty. Idle connections are never polled.
    active: VecDeque<ConnHandle>,
    timers: Timers,
    events: VecDeque<Event>,
    responses: VecDeque<(Transmit, Vec<u8>)>,
    rng: ChaCha12Rng,
    server: Option<ServerState>,
    stats: EndpointStats,
    /// Per-connection counters and histograms of the connections already forgotten.
    closed: ConnTotals,
    counts: PhaseCounts,
    last_now: Option<Instant>,
    /// zstd contexts shared by the connections (`PROTOCOL.md` §7.3).
    codec: Codec,
}

fn transport_config(config: &Config, server: bool) -> Arc<TransportConfig> {
    transport_config_with(config, u32::from(server), config.channels.len() as u32)
}

/// The transport parameters of `PROTOCOL.md` §2.3, allowing the peer `bidi` and `uni` streams.
fn transport_config_with(config: &Config, bidi: u32, uni: u32) -> Arc<TransportConfig> {
    let mut transport = TransportConfig::default();
    let idle = IdleTimeout::try_from(Duration::from_millis(config.idle_timeout_ms))
        .unwrap_or(IdleTimeout::from(VarInt::MAX));
    transport
        .max_idle_timeout(Some(idle))
        .keep_alive_interval(None)
        .datagram_receive_buffer_size(Some(1 << 20))
        .datagram_send_buffer_size(config.datagram_send_buffer_bytes)
        .max_concurrent_bidi_streams(VarInt::from_u32(bidi))
        .max_concurrent_uni_streams(VarInt::from_u32(uni));
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

/// A WebTransport client's transport: the native one, plus room for the server's control
/// stream (bidirectional) and its HTTP/3 streams (`PROTOCOL.md` §12.1).
fn webtransport_transport_config(config: &Config) -> Arc<TransportConfig> {
    transport_config_with(config, 1, config.channels.len() as u32 + 4)
}

impl Endpoint {
    /// A builder for an endpoint with `config`, whose secret values (QUIC token and reset keys,
    /// connection ids, nonces, session ids) derive from `secrets` — fresh from the operating
    /// system in production (see [`Secrets`]) — proving identity key `identity` in every
    /// handshake (`PROTOCOL.md` §4), and checking tickets against the wall clock `wall`.
    pub fn builder(
        config: Config,
        secrets: Secrets,
        identity: SigningKey,
        wall: WallClock,
    ) -> EndpointBuilder {
        EndpointBuilder::new(config, secrets, identity, wall)
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
        let mut client_config = quinn_proto::ClientConfig::new(tls::client_crypto(
            crypto,
            time_source.clone(),
            crate::wire::ALPN,
        )?);
        client_config
            .transport_config(transport_config(&config, false))
            .initial_dst_cid_provider(tls::initial_cid_provider(secrets.derive("quic/initial-dcid")));
        let mut webtransport_client_config = quinn_proto::ClientConfig::new(tls::client_crypto(
            crypto,
            time_source.clone(),
            crate::webtransport::ALPN_H3,
        )?);
        webtransport_client_config
            .transport_config(webtransport_transport_config(&config))
            .initial_dst_cid_provider(tls::initial_cid_provider(secrets.derive("quic/initial-dcid/wt")));
        Ok(Self {
            quic: quinn_proto::Endpoint::new(Arc::new(endpoint_config), server_config, false, None),
            client_config,
            webtransport_client_config,
            identity,
            wall,
            time_source,
            conns: ConnTable::default(),
            active: VecDeque::new(),
            timers: Timers::default(),
            events: VecDeque::new(),
            responses: VecDeque::new(),
            rng: ChaCha12Rng::from_seed(secrets.derive("tickwire/rng")),
            server: None,
            stats: EndpointStats::default(),
            closed: ConnTotals::default(),
            counts: PhaseCounts::default(),
            last_now: None,
            codec: Codec::new(&config.compression),
            config: Arc::new(config),
        })
    }

    /// Time only moves forward: an earlier `now` than already seen is replaced by the latest.
    #[inline]
    fn advance(&mut self, now: Instant) -> Instant {
        // Most calls come at the instant of the one before: one comparison, no ordering.
        if self.last_now == Some(now) {
            return now;
        }
        self.advance_to(now)
    }

    /// [`Endpoint::advance`] to an instant other than the latest seen.
    #[inline(never)]
    fn advance_to(&mut self, now: Instant) -> Instant {
        let now = self.last_now.map_or(now, |last| last.max(now));
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
        ecn: Option<Ecn>,
        data: BytesMut,
    ) {
        let now = self.advance(now);
        let mut buf = Vec::new();
        self.stats.datagrams.received += 1;
        self.stats.udp_rx_bytes += data.len() as u64;
        let ecn = ecn.map(Ecn::to_quic);
        match self.quic.handle(now, remote, local_ip, ecn, data, &mut buf) {
            None => self.stats.datagrams.dropped += 1,
            Some(DatagramEvent::ConnectionEvent(ch, event)) => {
                let handle = ConnHandle(ch.0);
                // During the handshake a connection's packets come from its first address only
                // (RFC 9000 §9: the server may drop the others). QUIC would count another
                // address's bytes toward the first's anti-amplification budget (§8.1), so a
                // spoofed Initial copied from elsewhere would raise what its victim is sent.
                let moved = |entry: &Entry| {
                    entry.conn.quic.is_handshaking() && entry.conn.quic.remote_address() != remote
                };
                if let Some(entry) = self.conns.get_mut(handle).filter(|entry| !moved(entry)) {
                    self.stats.datagrams.to_connections += 1;
                    entry.conn.quic.handle_event(event);
                    self.process_received(now, handle);
                } else {
                    self.stats.datagrams.dropped += 1;
                }
            }
            Some(DatagramEvent::NewConnection(incoming)) => {
                self.stats.datagrams.initials += 1;
                self.handle_incoming(now, incoming);
            }
            Some(DatagramEvent::Response(transmit)) => {
                self.stats.datagrams.stateless_responses += 1;
                self.queue_response(transmit, buf);
            }
        }
    }

    /// Input: the deadline from [`Endpoint::poll_timeout`] passed (spurious calls are fine).
    /// Only connections whose deadline is due are visited: O(due · log n). A connection's
    /// deadline counts as last read: one touched by an input or a command since is read again
    /// when [`Endpoint::poll_transmit`] is drained, and if it passed by then, `poll_timeout`
    /// says so.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.advance(now);
        if self.server.is_none() {
            for entry in self
                .conns
                .values_mut()
                .filter(|entry| entry.conn.is_established())
            {
                let deadline = entry.conn.tick_sync().and_then(|sync| sync.poll_timeout());
                if deadline.is_some_and(|d| d <= now) {
                    entry.tick_woken = deadline;
                }
            }
        }
        // The usual wake-up is a tick's, or an input's: no deadline as last read is due.
        if self.timers.earliest().is_none_or(|deadline| deadline > now) {
            return;
        }
        let due = self.due_timers(now);
        for &handle in &due {
            if self
                .with_conn(now, handle, |conn, ctx| conn.handle_timeout(ctx))
                .is_some()
            {
                self.process(now, handle);
            }
        }
        self.return_due(due);
    }

    /// Runs a connection's event processing (the handshake, on either side, included) and its
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
        if self
            .with_conn(now, handle, |conn, ctx| conn.process(ctx, received))
            .is_none()
        {
            return;
        }
        let Some(entry) = self.conns.get_mut(handle) else {
            return;
        };
        while let Some(event) = entry.conn.quic.poll_endpoint_events() {
            exchange_endpoint_event(&mut self.quic, handle, &mut entry.conn, event);
        }
        if entry.conn.quic.is_drained() {
            self.forget(handle);
        }
    }

    /// Removes a drained connection, adding its counters to the closed connections' totals.
    /// Queued handles of a removed connection are skipped when met, and its timer entry, if
    /// any, is stale and dropped when met.
    #[cold]
    #[inline(never)]
    fn forget(&mut self, handle: ConnHandle) {
        if let Some(entry) = self.conns.remove(handle) {
            self.counts.remove(handle, &entry.counted);
            self.closed.add(&entry.conn.snapshot_stats());
        }
    }

    /// Runs `f` on connection `handle` with a context over the endpoint's shared state (and,
    /// on a server, what answering a Hello takes), then recounts it and counts the events it
    /// raised. `None` if the handle names no connection.
    fn with_conn<R>(
        &mut self,
        now: Instant,
        handle: ConnHandle,
        f: impl FnOnce(&mut Conn, &mut Ctx<'_>) -> R,
    ) -> Option<R> {
        let entry = self.conns.get_mut(handle)?;
        let before = self.events.len();
        let unix_ms = match self.last_now {
            Some(last) if last == now => self.time_source.get(),
            _ => self.wall.unix_ms_at(now),
        };
        let server_tick = self.server.as_ref().map_or(0, |s| s.scheduler.current_tick());
        let (result, session_events) = {
            let mut nonce = nonce_fn(&mut self.rng);
            let identity = &self.identity;
            let server = self.server.as_mut().map(|server| ServerCtx {
                identity,
                play_ticket: server.play_ticket.as_deref(),
                tickets: &mut server.tickets,
                webtransport: server.webtransport.as_ref().map(|wt| &wt.config),
                webtransport_certs: server.webtransport.as_ref().map(|wt| &*wt.certs),
            });
            let mut ctx = Ctx {
                now,
                handle,
                config: &self.config,
                events: &mut self.events,
                nonce: &mut nonce,
                server_tick,
                unix_ms,
                server,
                codec: &mut self.codec,
                session_events: 0,
            };
            let result = f(&mut entry.conn, &mut ctx);
            (result, ctx.session_events)
        };
        self.counts.sync(handle, &entry.conn, &mut entry.counted);
        debug_assert_eq!(
            session_events,
            self.events
                .range(before..)
                .filter(|e| is_session_event(e))
                .count(),
            "every session event pushed is reported in the context"
        );
        if session_events > 0 {
            let webtransport = entry.conn.is_webtransport();
            let handshake_time = || now.saturating_duration_since(entry.created);
            count_events(
                &mut self.stats,
                &self.events,
                before,
                handshake_time,
                webtransport,
            );
        }
        Some(result)
    }

    // ----- outputs -----

    /// Output: the next UDP datagram to send, written into `buf` (cleared first); the
    /// returned [`Transmit`] says where to, its size and segment size. Drain until `None`.
    #[must_use]
    #[inline]
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
        // The drain's last call, answered in the caller: nothing waits and no deadline is
        // unread.
        if self.responses.is_empty() && self.active.is_empty() && !self.timers.any_dirty() {
            return None;
        }
        self.next_transmit(now, buf)
    }

    /// [`Endpoint::poll_transmit`] when a response, a touched connection or an unread deadline
    /// waits.
    #[inline(never)]
    fn next_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
        let now = self.advance(now);
        if let Some((transmit, bytes)) = self.responses.pop_front() {
            buf.clear();
            buf.extend_from_slice(&bytes);
            self.count_transmit(&transmit);
            return Some(transmit);
        }
        // Only connections touched since they last came up empty can have anything to send;
        // they are served in the order they were touched, each until it has nothing more.
        let server_tick = self.server.as_ref().map_or(0, |s| s.scheduler.current_tick());
        loop {
            let Some(&key) = self.active.front() else {
                // Drained: re-read the deadlines the sends moved, for `poll_timeout`.
                self.refresh_timers();
                return None;
            };
            let Some(entry) = self.conns.get_mut(key) else {
                self.active.pop_front();
                continue;
            };
            entry.conn.before_transmit(now, &self.config, server_tick);
            buf.clear();
            // Sending arms QUIC's loss-detection, pacing and idle timers.
            self.timers.mark_dirty(key, &mut entry.timer);
            if let Some(transmit) = entry.conn.quic.poll_transmit(now, 1, buf) {
                let transmit = Transmit::from_quic(&transmit);
                self.count_transmit(&transmit);
                return Some(transmit);
            }
            entry.tx_queued = false;
            self.active.pop_front();
        }
    }

    /// Output: the next event. Drain until `None` after every input.
    #[must_use]
    #[inline]
    pub fn poll_event(&mut self) -> Option<Event> {
        if self.events.is_empty() {
            return None;
        }
        self.next_event()
    }

    /// [`Endpoint::poll_event`] when an event waits.
    #[inline(never)]
    fn next_event(&mut self) -> Option<Event> {
        let event = self.events.pop_front()?;
        if self.events.is_empty() {
            // Back to the start of the ring, so that the next burst of events lands in the
            // lines this one warmed instead of walking the whole buffer.
            self.events.clear();
        }
        self.record_event(&event);
        Some(event)
    }

    /// Output: the next absolute deadline at which [`Endpoint::handle_timeout`] or
    /// [`Endpoint::poll_tick`] has work; `None` = no timer. On a client, a connection's tick
    /// deadline counts once: after a `handle_timeout` at or past it, it is left out until the
    /// tick is taken, so an application that does not tick is not woken continuously. Read it after draining
    /// [`Endpoint::poll_transmit`]: before that, a connection's deadline may still move, and
    /// the answer is "now" (a spurious wake-up, which is harmless).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let ticks = match &self.server {
            Some(server) => Some(server.scheduler.poll_timeout()),
            None => self.next_client_tick(false).map(|(deadline, _)| deadline),
        };
        let connections = self.next_timer();
        match (ticks, connections) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Client endpoints: the earliest synchronised-tick deadline of any connection, with the
    /// connection (clients hold few connections, so a scan is cheap); with `woken`, also
    /// deadlines the application was already woken for.
    fn next_client_tick(&self, woken: bool) -> Option<(Instant, ConnHandle)> {
        self.conns
            .iter()
            .filter(|(_, entry)| entry.conn.is_established())
            .filter_map(|(handle, entry)| {
                let deadline = entry.conn.tick_sync()?.poll_timeout()?;
                (woken || entry.tick_woken != Some(deadline)).then_some((deadline, handle))
            })
            .min()
    }

    /// Output: the next due tick, with its lateness; drain until `None`. On a server, its own
    /// fixed-timestep ticks (every `revalidate_every_ticks` ticks, live sessions' tickets are
    /// rechecked). On a client, each connection's synchronised local tick, run ahead of the
    /// server by the configured margin ([`TickInfo::conn`] says which connection); also
    /// [`Endpoint::poll_client_tick`] for one connection.
    #[must_use]
    #[inline]
    pub fn poll_tick(&mut self, now: Instant) -> Option<TickInfo> {
        // A server's usual answer, in the caller: its next tick is not due at `now`, nor at
        // the latest time seen (time never runs backwards here).
        if let Some(server) = &self.server {
            let due = server.scheduler.poll_timeout();
            if now < due && self.last_now.is_none_or(|last| last < due) {
                return None;
            }
        }
        self.next_tick(now)
    }

    /// [`Endpoint::poll_tick`] past its fast answer.
    #[inline(never)]
    fn next_tick(&mut self, now: Instant) -> Option<TickInfo> {
        let now = self.advance(now);
        let Some(server) = self.server.as_mut() else {
            let (scheduled_at, conn) = self.next_client_tick(true).filter(|(due, _)| *due <= now)?;
            let tick = self.conns.get_mut(conn)?.conn.tick_sync_mut()?.poll_tick(now)?;
            return Some(TickInfo {
                tick,
                scheduled_at,
                lateness: now.saturating_duration_since(scheduled_at),
                conn: Some(conn),
            });
        };
        let previous = server.scheduler.current_tick();
        let tick = server.scheduler.poll_tick(now)?;
        if tick.tick > previous + 1 {
            server
                .recorders
                .skipped(self.config.recording_buffer_bytes, previous + 1, tick.tick - 1);
        }
        self.stats.ticks += 1;
        self.stats.tick_lateness.observe(tick.lateness);
        server.ticks_since_revalidation += 1;
        if server.ticks_since_revalidation >= self.config.revalidate_every_ticks {
            server.ticks_since_revalidation = 0;
            self.revalidate_sessions(now);
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

    /// Command (client): opens a session to `remote` inside a WebTransport session
    /// (`PROTOCOL.md` §12), as a browser would: ALPN `h3`, an extended CONNECT to
    /// `https://{target.authority}{target.path}`, then the handshake bound to the server's
    /// WebTransport certificate. The application sees the same events as for [`Endpoint::connect`].
    ///
    /// # Errors
    /// [`ConnectError`] if QUIC refuses the address. A refused CONNECT arrives as
    /// [`Event::Rejected`] with `TRANSPORT_ERROR` and the HTTP status in its detail.
    pub fn connect_webtransport(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        ticket: JoinTicket,
        options: ConnectOptions,
        target: &WebTransportTarget,
    ) -> Result<ConnHandle, ConnectError> {
        let request = crate::webtransport::connect::ConnectRequest::new(
            &target.authority,
            &target.path,
            target.origin.as_deref(),
        );
        self.connect_with(now, remote, Some(ticket), options, Some(request))
    }

    /// Command (game server): opens a session to its verification server at `remote` with
    /// [`Role::GameServer`] and no join ticket (the VS admits it on its TPM quote;
    /// `PROTOCOL.md` §8). `options.role` is ignored.
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
        self.connect_with(now, remote, ticket, options, None)
    }

    fn connect_with(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        ticket: Option<JoinTicket>,
        options: ConnectOptions,
        webtransport: Option<crate::webtransport::connect::ConnectRequest>,
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
                Role::GameServer => crate::wire::VS_SCHEMA_HASH,
                _ => self.config.schema_hash,
            },
            capabilities: self.config.offered_capabilities(),
            role: options.role,
            join_ticket: ticket,
            expected_server_key: options.expected_server_key,
            play_ticket,
            extensions: self.codec.hello_extensions(),
        };
        let client_config = match webtransport {
            Some(_) => self.webtransport_client_config.clone(),
            None => self.client_config.clone(),
        };
        let (ch, quic) = self
            .quic
            .connect(now, client_config, remote, SERVER_NAME)
            .map_err(ConnectError::from_quic)?;
        let handle = ConnHandle(ch.0);
        let handshake = ClientHandshake::new(self.identity.clone(), offer);
        let conn = match webtransport {
            Some(request) => Conn::client_webtransport(quic, now, &self.config, handshake, request),
            None => Conn::client(quic, now, &self.config, handshake),
        };
        self.conns.insert(handle, Entry::new(conn, now));
        self.process(now, handle);
        Ok(handle)
    }

    /// Whether `conn` is carried by WebTransport (`PROTOCOL.md` §12) rather than native QUIC;
    /// `None` for an unknown handle. Known once the TLS handshake completed.
    pub fn is_webtransport(&self, conn: ConnHandle) -> Option<bool> {
        self.conns.get(conn).map(|entry| entry.conn.is_webtransport())
    }

    /// Command: sends `payload` on `channel` (see `crate::channel` for delivery semantics).
    ///
    /// # Errors
    /// [`SendError`]; nothing is sent on error. A client gets [`SendError::NotPermitted`] for a
    /// channel whose `senders` its session's role or permissions do not satisfy (`PROTOCOL.md`
    /// §7.1): the server would refuse the message.
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
        let entry = self.conns.get_mut(handle).ok_or(SendError::UnknownConnection)?;
        entry.conn.check_may_send(config, channel)?;
        let recorded = self
            .server
            .as_ref()
            .is_some_and(|s| s.recorders.is_recorded(handle))
            .then(|| payload.clone());
        // A send queues or hands bytes to QUIC; it never changes the connection's phase, so
        // the phase counts need no resync.
        if !entry.conn.send_shortcut(config, channel, &payload, options) {
            entry
                .conn
                .send(now, config, &mut self.codec, channel, payload, options)?;
        }
        timers::touch_entry(&mut self.active, &mut self.timers, handle, entry);
        if let Some(payload) = recorded {
            self.record_sent(handle, channel.0, &payload);
        }
        Ok(())
    }

    /// Command: closes `conn`, telling the peer `reason` and `detail`. Reported as
    /// [`Event::Disconnected`] (or [`Event::Rejected`] mid-handshake) with
    /// [`Initiator::Local`](crate::Initiator::Local). Unknown handles are ignored.
    pub fn close(&mut self, now: Instant, conn: ConnHandle, reason: ReasonCode, detail: &str) {
        self.close_with(now, conn, Rejection::new(reason, detail));
    }

    /// Command: closes every connection with `reason` and `detail` (a client leaving; a server
    /// uses [`ServerMut::shutdown`], which also refuses new connections).
    pub fn close_all(&mut self, now: Instant, reason: ReasonCode, detail: &str) {
        let handles: Vec<ConnHandle> = self.conns.keys().collect();
        for handle in handles {
            self.close_with(now, handle, Rejection::new(reason, detail));
        }
    }

    pub(super) fn close_with(&mut self, now: Instant, handle: ConnHandle, rejection: Rejection) {
        let now = self.advance(now);
        if self
            .with_conn(now, handle, |conn, ctx| conn.close(ctx, rejection))
            .is_some()
        {
            self.process(now, handle);
        }
    }

    // ----- getters -----

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The session agreed on `conn`, once established.
    pub fn session(&self, conn: ConnHandle) -> Option<&Session> {
        self.conns.get(conn)?.conn.session.as_ref()
    }

    /// The peer's current address.
    pub fn remote_address(&self, conn: ConnHandle) -> Option<SocketAddr> {
        Some(self.conns.get(conn)?.conn.quic.remote_address())
    }

    /// A statistics snapshot for `conn`.
    pub fn stats(&self, conn: ConnHandle) -> Option<ConnectionStats> {
        Some(self.conns.get(conn)?.conn.snapshot_stats())
    }

    /// Endpoint-wide counters.
    pub fn endpoint_stats(&self) -> EndpointStats {
        let mut stats = self.stats.clone();
        stats.sessions_live = self.counts.established;
        stats.handshakes_pending = self.counts.handshaking;
        debug_assert_eq!(
            (stats.sessions_live, stats.handshakes_pending),
            (
                self.conns.values().filter(|e| e.conn.is_established()).count(),
                self.conns.values().filter(|e| e.conn.is_handshaking()).count()
            ),
            "phase counters agree with a scan"
        );
        if let Some(server) = &self.server {
            stats.recorded_bytes = server.recorders.recorded_bytes;
            stats.recording_dropped_bytes = server.recorders.dropped_bytes;
            stats.address_limiter = server.addresses.stats();
            stats.addresses_tracked = server.addresses.tracked();
        }
        let mut totals = self.closed;
        for entry in self.conns.values() {
            totals.add(&entry.conn.snapshot_stats());
            if let Some(session) = entry
                .conn
                .session
                .as_ref()
                .filter(|_| entry.conn.is_established())
            {
                *stats.sessions_by_role.entry(session.role).or_default() += 1;
            }
        }
        (stats.rtt, stats.jitter) = (totals.rtt, totals.jitter);
        (stats.reassembly, stats.message_limiter) = (totals.reassembly, totals.message_limiter);
        stats.compression = totals.compression;
        stats.message_refusals = totals.message_refusals;
        stats
    }

    /// Counts a datagram (or GSO batch) about to be sent.
    fn count_transmit(&mut self, transmit: &Transmit) {
        self.stats.udp_tx_bytes += transmit.size as u64;
        self.stats.udp_tx_datagrams += transmit
            .segment_size
            .filter(|segment| *segment > 0)
            .map_or(1, |segment| transmit.size.div_ceil(segment))
            as u64;
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
        self.conns.keys()
    }

    /// Number of connections not yet drained (established, handshaking or closing).
    pub fn connection_count(&self) -> usize {
        self.conns.len()
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
        self.conns.get(conn)?.conn.tick_sync()
    }

    /// (Client) the next local tick of `conn`, run ahead of the server by the configured
    /// margin and slewed smoothly; drain until `None`. [`Endpoint::poll_tick`] delivers the same
    /// ticks for every connection, and [`Endpoint::poll_timeout`] includes their deadlines.
    #[must_use]
    pub fn poll_client_tick(&mut self, now: Instant, conn: ConnHandle) -> Option<u64> {
        let now = self.advance(now);
        self.conns.get_mut(conn)?.conn.tick_sync_mut()?.poll_tick(now)
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

/// Whether `event` is one the endpoint's session counters count.
fn is_session_event(event: &Event) -> bool {
    match event {
        Event::Connected { .. } | Event::Rejected { .. } | Event::Disconnected { .. } => true,
        Event::Message { .. } | Event::MessageRefused { .. } => false,
    }
}

/// Counts the events a connection raised; a `Connected` one took `handshake_time()` (read only
/// then).
fn count_events(
    stats: &mut EndpointStats,
    events: &VecDeque<Event>,
    from: usize,
    handshake_time: impl Fn() -> Duration,
    webtransport: bool,
) {
    for event in events.iter().skip(from) {
        match event {
            Event::Connected { .. } => {
                stats.sessions_established += 1;
                stats.webtransport_sessions_established += u64::from(webtransport);
                stats.handshake_time.observe(handshake_time());
            }
            Event::Rejected { reason, .. } => count_reason(&mut stats.rejections, *reason),
            Event::Disconnected { reason, .. } => count_reason(&mut stats.disconnections, *reason),
            Event::Message { .. } | Event::MessageRefused { .. } => {}
        }
    }
}

// ----- testing hook (the `endpoint` fuzz target checks the response queue's bound) -----
#[cfg(feature = "testing")]
impl Endpoint {
    /// Testing only: endpoint-level responses (version negotiation, stateless resets, refusals)
    /// queued now, and their cap.
    #[doc(hidden)]
    pub fn queued_responses(&self) -> (usize, usize) {
        (self.responses.len(), admission::MAX_QUEUED_RESPONSES)
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
        let result = f(&mut self.conns.get_mut(handle)?.conn);
        self.process(now, handle);
        Some(result)
    }
}

/// Hands one of a connection's endpoint events (connection-id issuance and retirement, the
/// drained notice) to the QUIC endpoint, and its reply, if any, back to the connection. Out of
/// line: the reply is large and rare, and inlined it would enlarge every datagram's stack
/// frame.
#[inline(never)]
fn exchange_endpoint_event(
    quic: &mut quinn_proto::Endpoint,
    handle: ConnHandle,
    conn: &mut Conn,
    event: quinn_proto::EndpointEvent,
) {
    if let Some(reply) = quic.handle_event(quinn_proto::ConnectionHandle(handle.0), event) {
        conn.quic.handle_event(reply);
    }
}
