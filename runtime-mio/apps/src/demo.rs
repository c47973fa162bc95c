//! The demo game behind `tickwire-demo`, `tickwire-gs` and `tickwire-client`: clients join
//! with join tickets, send an input every client tick, and the server simulates players and
//! broadcasts snapshots at half the tick rate, one in ten of them larger than a datagram (so it
//! is fragmented and reassembled).
//!
//! Demo clients mint their own join tickets with the issuer's private key ([`ClientOptions`]),
//! standing in for a lobby that asks the verification server for them
//! (`Verifier::issue_join_ticket`); the game server trusts the issuer's public key
//! ([`ServerOptions`]). Every endpoint's [`Secrets`](tickwire_core::Secrets), every client
//! identity and every ticket `jti` come from the operating system.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ed25519_dalek::{SigningKey, VerifyingKey};
use hdrhistogram::Histogram;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use tickwire_core::drive::TickStages;
use tickwire_core::retry::Backoff;
use tickwire_core::stats::ConnectionStats;
use tickwire_core::tick::{TickInfo, TickStats};
use tickwire_core::webtransport::{ServerCertificate, WebTransportConfig};
use tickwire_core::{
    ChannelId, Config, ConnHandle, ConnectOptions, Endpoint, Event, JoinTicket, JoinTicketClaims, ReasonCode,
    TicketIssuer,
};
use tickwire_mio::{wall_clock_now, MioRuntime, NodeId, StageStats};
use tickwire_udp::os::{os_random, os_secrets};

use crate::game::{DemoGame, Outgoing};
use crate::operator::Operator;
use crate::record::{RecordingWriter, WriterReport};
use crate::store::Store;
use crate::vs::{vs_keys, GsSide, VsLink};
use tickwire_admin::{ServerKind, Snapshot};

/// Key id of the demo issuer (join tickets and play tickets).
pub const DEMO_KEY_ID: u32 = 1;
/// Game server id of the demo when none is given.
pub const DEMO_GS_ID: u64 = 42;
/// Schema text whose hash both demo sides use.
pub const DEMO_SCHEMA: &str =
    "tickwire-demo/1: input{tick u64, dir u8} snapshot{tick u64, players[id u64, x f32, y f32]}";
/// After `k` paced rejections in a row a client waits `retry_after × (1 + U[0, k))`, with `k`
/// at most this: clients that share an address spread out instead of all coming back when the
/// next handshake token is due.
const MAX_PACED_SPREAD: u32 = 8;
/// Lifetime of a demo join ticket, in milliseconds: it authorises joining; the session
/// outlives it.
const TICKET_LIFETIME_MS: u64 = 120_000;

/// Writes `value` as pretty JSON to `path`.
///
/// # Errors
/// The file cannot be written.
pub fn write_json(path: &std::path::Path, value: &impl Serialize) -> io::Result<()> {
    let json = serde_json::to_string_pretty(value).map_err(io::Error::other)?;
    std::fs::write(path, json)
}

/// A server endpoint's secrets: fresh from the OS, with its QUIC token keys from
/// `token_key_file` if given.
///
/// # Errors
/// No OS randomness, or the file cannot be read, created or parsed (the message names it).
pub fn endpoint_secrets(token_key_file: Option<&std::path::Path>) -> io::Result<tickwire_core::Secrets> {
    match token_key_file {
        Some(path) => tickwire_udp::os::os_secrets_with_token_key_file(path),
        None => os_secrets(),
    }
}

/// Options of [`run_server`].
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// The game server's identity key (from a key file, or fresh from the OS).
    pub identity: SigningKey,
    /// The join-ticket issuer it trusts, under [`DEMO_KEY_ID`].
    pub trusted_issuer: VerifyingKey,
    /// Game server id tickets must name.
    pub gs_id: u64,
    /// The endpoint's settings: [`demo_config`], or the defaults with the demo's schema hash.
    pub config: Config,
    /// How long to run.
    pub duration: Duration,
    /// Attest to this verification server and admit clients only while it renews the play
    /// ticket.
    pub vs: Option<VsLink>,
    /// Keep the join-ticket `jti`s consumed in this SQLite file (write-ahead, before each
    /// Accept leaves) and refuse them again after a restart; `None`: in memory only, so a
    /// ticket used before a restart could be replayed after it until it expires.
    pub store: Option<std::path::PathBuf>,
    /// Keep the endpoint's QUIC token keys in this file across restarts
    /// ([`tickwire_udp::os::os_secrets_with_token_key_file`]); `None`: fresh each run.
    pub token_key_file: Option<std::path::PathBuf>,
    /// Record every client session into this directory, one file per session
    /// ([`crate::record`], `PROTOCOL.md` §11); `None`: no recording.
    pub record: Option<std::path::PathBuf>,
}

/// Options of [`run_clients`].
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The issuer key that signs the clients' join tickets (under [`DEMO_KEY_ID`]).
    pub issuer: SigningKey,
    /// Game server id tickets name.
    pub gs_id: u64,
    /// Every client endpoint's settings ([`demo_config`]).
    pub config: Config,
    /// How long to play at most: [`run_clients`] returns earlier once every client is done.
    pub duration: Duration,
    /// Require the server's play ticket, signed by this verification-server key (under
    /// [`DEMO_KEY_ID`]).
    pub trusted_vs: Option<VerifyingKey>,
}

/// The demo's endpoint config: the library defaults (rate limits included) with the demo's
/// schema hash.
pub fn demo_config() -> Config {
    Config {
        schema_hash: Config::schema_hash_of(DEMO_SCHEMA),
        ..Config::default()
    }
}

/// A join ticket signed by `issuer` for the client with identity `identity` and player id
/// `index`, valid for two minutes, with a fresh random `jti` from the OS (tickets are
/// single-use: every connection attempt needs a new one).
///
/// # Errors
/// The OS has no randomness to give.
pub fn demo_ticket(
    issuer: &SigningKey,
    gs_id: u64,
    index: u64,
    identity: &VerifyingKey,
) -> io::Result<JoinTicket> {
    demo_ticket_valid_from(issuer, gs_id, index, identity, wall_clock_now().unix_ms)
}

/// [`demo_ticket`] valid for two minutes from `valid_from_unix_ms` (Unix ms) instead of from
/// now: a time far enough in the past gives a ticket that game servers refuse with
/// `TICKET_EXPIRED` (its expiry plus their skew allowance, 30 s by default, has passed).
///
/// # Errors
/// The OS has no randomness to give.
pub fn demo_ticket_valid_from(
    issuer: &SigningKey,
    gs_id: u64,
    index: u64,
    identity: &VerifyingKey,
    valid_from_unix_ms: u64,
) -> io::Result<JoinTicket> {
    let mut jti = [0u8; 16];
    jti.copy_from_slice(&os_random()?[..16]);
    let claims = JoinTicketClaims::builder(identity.to_bytes(), jti)
        .client_id(index)
        .audience(gs_id)
        .valid_from(valid_from_unix_ms)
        .lifetime_ms(TICKET_LIFETIME_MS)
        .build();
    Ok(TicketIssuer::new(DEMO_KEY_ID, issuer.clone()).issue(&claims))
}

/// The server half of the demo game on an endpoint: [`DemoGame`] with players named by
/// their connection's index ([`ConnHandle::index`]), fed from the tick's events and sent
/// through the endpoint.
#[derive(Debug, Default)]
pub struct DemoServer {
    game: DemoGame,
    conns: BTreeMap<u64, ConnHandle>,
    outgoing: Vec<Outgoing>,
    /// Ended sessions: reason and final statistics.
    pub ended: Vec<(ReasonCode, Option<ConnectionStats>)>,
    /// Messages received from clients.
    pub inputs_received: u64,
    /// Of `inputs_received`, those from browsers (sessions over WebTransport).
    pub webtransport_inputs_received: u64,
    /// Snapshots sent (per client).
    pub snapshots_sent: u64,
    /// Send failures (queue full, not connected).
    pub send_errors: u64,
}

fn player_of(conn: ConnHandle) -> u64 {
    conn.index() as u64
}

impl TickStages for DemoServer {
    fn apply(&mut self, endpoint: &mut Endpoint, _now: Instant, event: Event) {
        match event {
            Event::Connected { conn, .. } => {
                self.game.join(player_of(conn));
                self.conns.insert(player_of(conn), conn);
            }
            Event::Disconnected { conn, reason, .. } => {
                self.game.leave(player_of(conn));
                self.conns.remove(&player_of(conn));
                self.ended.push((reason, endpoint.stats(conn)));
            }
            Event::Message { conn, payload, .. } => {
                self.inputs_received += 1;
                if endpoint.is_webtransport(conn) == Some(true) {
                    self.webtransport_inputs_received += 1;
                }
                self.game.input(player_of(conn), &payload);
            }
            _ => {}
        }
    }

    fn simulate(&mut self, _tick: &TickInfo) {
        self.game.simulate();
    }

    fn extract(&mut self, tick: &TickInfo) {
        self.game.extract(tick.tick);
        self.outgoing = self.game.outgoing(tick.tick);
    }

    fn send(&mut self, endpoint: &mut Endpoint, now: Instant, _tick: &TickInfo) {
        let deadline = now + Duration::from_millis(50);
        for message in self.outgoing.drain(..) {
            let Some(&conn) = self.conns.get(&message.player) else {
                continue;
            };
            let sent = if message.channel == ChannelId::LATEST {
                let options = tickwire_core::SendOptions {
                    deadline: Some(deadline),
                };
                let sent = endpoint.send_with(now, conn, message.channel, message.payload, options);
                if sent.is_ok() {
                    self.snapshots_sent += 1;
                }
                sent
            } else {
                endpoint.send(now, conn, message.channel, message.payload)
            };
            if sent.is_err() {
                self.send_errors += 1;
            }
        }
    }
}

/// The demo game with, optionally, its verification-server side: events of the VS session go
/// to the agent, client inputs are chained into transcripts.
#[derive(Debug)]
struct GsGame {
    demo: DemoServer,
    vs: Option<GsSide>,
}

/// Logs a session's start or end as a structured `tracing` event.
fn log_session_event(endpoint: &Endpoint, event: &Event) {
    match event {
        Event::Connected { conn, session } => tracing::info!(
            conn = conn.index(),
            peer = ?endpoint.remote_address(*conn),
            session_id = session.session_id,
            role = ?session.role,
            "session established"
        ),
        Event::Rejected {
            conn,
            reason,
            detail,
            initiator,
            ..
        } => tracing::info!(
            conn = conn.index(),
            peer = ?endpoint.remote_address(*conn),
            %reason,
            detail = detail.as_str(),
            ?initiator,
            "handshake rejected"
        ),
        Event::Disconnected {
            conn,
            reason,
            detail,
            initiator,
            ..
        } => tracing::info!(
            conn = conn.index(),
            %reason,
            detail = detail.as_str(),
            ?initiator,
            "session closed"
        ),
        // At most once per connection, channel and cause per tick (PROTOCOL.md §7.1).
        Event::MessageRefused {
            conn,
            channel,
            reason,
        } => tracing::warn!(
            conn = conn.index(),
            channel = channel.0,
            ?reason,
            "messages refused under the channel table"
        ),
        _ => {}
    }
}

impl TickStages for GsGame {
    fn apply(&mut self, endpoint: &mut Endpoint, now: Instant, event: Event) {
        log_session_event(endpoint, &event);
        if let Some(vs) = &mut self.vs {
            if vs.on_event(endpoint, now, &event) {
                return;
            }
            if let Event::Message { conn, payload, .. } = &event {
                if let (Some(session), Some(tick)) = (endpoint.session(*conn), endpoint.current_tick()) {
                    vs.agent.record_input(session.session_id, tick, payload);
                }
            }
            if let Event::Disconnected { conn, .. } = &event {
                if let Some(session) = endpoint.session(*conn) {
                    vs.agent.end_session(session.session_id);
                }
            }
        }
        self.demo.apply(endpoint, now, event);
    }

    fn simulate(&mut self, tick: &TickInfo) {
        self.demo.simulate(tick);
    }

    fn extract(&mut self, tick: &TickInfo) {
        self.demo.extract(tick);
    }

    fn send(&mut self, endpoint: &mut Endpoint, now: Instant, tick: &TickInfo) {
        self.demo.send(endpoint, now, tick);
    }
}

/// What the server side of a demo run measured.
#[derive(Debug, Clone, Serialize)]
pub struct ServerReport {
    /// Address it listened on.
    pub listen: SocketAddr,
    /// Ticks run.
    pub ticks: u64,
    /// Scheduler statistics (lateness p50/p99/max in ms, skipped ticks).
    pub tick_stats: TickStats,
    /// Per-stage wall time.
    pub stages: StageStats,
    /// Sessions established.
    pub sessions: u64,
    /// Of `sessions`, those browsers established over WebTransport (`PROTOCOL.md` §12); the
    /// rest are native clients.
    pub webtransport_sessions: u64,
    /// Inputs received.
    pub inputs_received: u64,
    /// Of `inputs_received`, those from sessions over WebTransport.
    pub webtransport_inputs_received: u64,
    /// Snapshots sent (per client).
    pub snapshots_sent: u64,
    /// Transcript receipts the verification server signed (0 without a VS).
    pub receipts: u64,
    /// Per-connection stats: ended sessions at their end, live ones just before shutdown.
    pub connections: Vec<ConnectionStats>,
    /// With `record`: what the recording writer did.
    pub recordings: Option<WriterReport>,
}

/// Runs the demo server on `listen` for `options.duration`, then shuts down gracefully.
/// `ready` receives the bound address once the socket is up and, with a verification server,
/// the TPM is open and the agent started; an error before `ready` is a setup error (the
/// address cannot be bound, the TPM cannot be opened).
///
/// # Errors
/// Socket errors; setup errors; the verification server's final refusal.
pub fn run_server(
    listen: SocketAddr,
    options: &ServerOptions,
    ready: impl FnOnce(SocketAddr),
    progress: impl FnMut(&Endpoint, Duration),
) -> io::Result<ServerReport> {
    run_server_with(listen, options, &mut Operator::default(), ready, progress)
}

/// [`run_server`] under `operator`: it stops early, draining, when a signal asks; it publishes
/// metrics snapshots and readiness to the admin endpoint (ready while admitting: with a
/// verification server, only while holding a valid play ticket); and the final shutdown tells
/// clients the drain's retry-after and waits up to its timeout.
///
/// # Errors
/// As [`run_server`].
pub fn run_server_with(
    listen: SocketAddr,
    options: &ServerOptions,
    operator: &mut Operator,
    ready: impl FnOnce(SocketAddr),
    mut progress: impl FnMut(&Endpoint, Duration),
) -> io::Result<ServerReport> {
    run_server_webtransport(listen, options, None, operator, ready, |endpoint, elapsed| {
        progress(endpoint, elapsed)
    })
}

/// [`run_server_with`] that also accepts WebTransport sessions from browsers on the same
/// socket (`PROTOCOL.md` §12) when `webtransport` gives the options and the certificate to
/// present (ECDSA P-256, at most 14 days; [`crate::webtransport::CertificateJson`] keeps one
/// and publishes its hash). `progress`, called about once a second, gets the endpoint mutably,
/// so the caller can install a rotated certificate
/// ([`ServerMut::set_webtransport_certificate`](tickwire_core::ServerMut::set_webtransport_certificate)).
///
/// # Errors
/// As [`run_server`]; the certificate is refused.
pub fn run_server_webtransport(
    listen: SocketAddr,
    options: &ServerOptions,
    webtransport: Option<(WebTransportConfig, ServerCertificate)>,
    operator: &mut Operator,
    ready: impl FnOnce(SocketAddr),
    mut progress: impl FnMut(&mut Endpoint, Duration),
) -> io::Result<ServerReport> {
    let start = Instant::now();
    let builder = Endpoint::builder(
        options.config.clone(),
        endpoint_secrets(options.token_key_file.as_deref())?,
        options.identity.clone(),
        wall_clock_now(),
    )
    .trust_issuer(DEMO_KEY_ID, options.trusted_issuer);
    let builder = match webtransport {
        Some((config, certificate)) => builder.webtransport(config, certificate),
        None => builder,
    };
    let endpoint = builder.server(options.gs_id, start).map_err(io::Error::other)?;
    let mut endpoint = endpoint;
    let store = match &options.store {
        Some(path) => Some(open_jti_store(path, &mut endpoint)?),
        None => None,
    };
    let mut recorder = match &options.record {
        Some(dir) => {
            let writer = RecordingWriter::start(dir)
                .map_err(|e| io::Error::new(e.kind(), format!("--record {}: {e}", dir.display())))?;
            if let Some(mut server) = endpoint.server_mut() {
                server.record_sessions(true);
            }
            Some(writer)
        }
        None => None,
    };
    let mut runtime = MioRuntime::new()?;
    let node = runtime
        .bind(listen, endpoint)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {listen}: {e}")))?;
    if let Some(mut store) = store {
        runtime.set_write_ahead(node, move |endpoint| persist_consumed(&mut store, endpoint));
    }
    let listen = runtime.local_addr(node)?;
    let vs = match &options.vs {
        Some(link) => {
            let endpoint = runtime.endpoint(node);
            let mut side = GsSide::new(link, endpoint, options.gs_id)?;
            side.agent.start(endpoint, start);
            side.pump(endpoint, start);
            runtime.flush(node);
            Some(side)
        }
        None => None,
    };
    ready(listen);
    let mut game = GsGame {
        demo: DemoServer::default(),
        vs,
    };
    let mut stages = StageStats::default();
    let mut last_progress = start;
    while start.elapsed() < options.duration && !operator.stop_requested() {
        let wait = game
            .vs
            .as_ref()
            .and_then(|vs| vs.agent.poll_timeout())
            .map_or(Duration::from_millis(50), |t| {
                t.saturating_duration_since(Instant::now())
            })
            .min(Duration::from_millis(50));
        runtime.turn(Some(wait))?;
        runtime.run_due_ticks(node, &mut game, &mut stages);
        if let Some(vs) = &mut game.vs {
            vs.on_time(runtime.endpoint(node), Instant::now());
            runtime.flush(node);
            if let Some(fatal) = vs.fatal.take() {
                operator.start_draining();
                runtime.shutdown(node, "not authorised", Duration::from_millis(500))?;
                return Err(io::Error::other(fatal));
            }
        }
        if let Some(recorder) = &mut recorder {
            recorder.drain(runtime.endpoint(node));
        }
        let now = Instant::now();
        let endpoint = runtime.endpoint(node);
        let admitting = endpoint
            .server_mut()
            .is_some_and(|server| !server.admissions_paused());
        operator.set_ready(admitting);
        if operator.publish_due(now) {
            let snapshot = Snapshot {
                kind: ServerKind::GameServer,
                endpoint: endpoint.endpoint_stats(),
                ticks: Some(stages.histograms),
                gs_agent: game.vs.as_ref().map(|vs| vs.agent.stats(now)),
                verifier: None,
            };
            operator.publish(now, snapshot);
        }
        if last_progress.elapsed() >= Duration::from_secs(1) {
            last_progress = Instant::now();
            progress(runtime.endpoint(node), start.elapsed());
        }
    }
    let receipts = game.vs.as_ref().map_or(0, |vs| vs.receipts);
    let game = game.demo;
    let endpoint = runtime.endpoint(node);
    let live = endpoint.connections().filter_map(|c| endpoint.stats(c));
    let connections = game
        .ended
        .iter()
        .filter_map(|(_, stats)| *stats)
        .chain(live)
        .collect();
    let endpoint_stats = endpoint.endpoint_stats();
    let (sessions, webtransport_sessions) = (
        endpoint_stats.sessions_established,
        endpoint_stats.webtransport_sessions_established,
    );
    let tick_stats = endpoint.scheduler().map(|s| s.stats()).unwrap_or_default();
    operator.start_draining();
    let (detail, grace) = if operator.stop_requested() {
        tracing::info!(
            timeout_ms = operator.drain.timeout_ms,
            "draining: signal received"
        );
        ("server draining", operator.drain.timeout())
    } else {
        ("demo over", Duration::from_secs(2))
    };
    runtime.shutdown_with(node, detail, Some(operator.drain.retry_after()), grace)?;
    let recordings = recorder.map(|recorder| {
        let endpoint = runtime.endpoint(node);
        for conn in endpoint.connections().collect::<Vec<_>>() {
            if let Some(mut server) = endpoint.server_mut() {
                server.stop_recording(conn);
            }
        }
        recorder.finish(endpoint)
    });
    Ok(ServerReport {
        listen,
        ticks: tick_stats.ticks,
        tick_stats,
        stages,
        sessions,
        webtransport_sessions,
        inputs_received: game.inputs_received,
        webtransport_inputs_received: game.webtransport_inputs_received,
        snapshots_sent: game.snapshots_sent,
        receipts,
        connections,
        recordings,
    })
}

/// Opens the game server's store at `path` and restores the `jti`s it consumed before into
/// `endpoint`'s ticket verifier, which records new ones from now on.
fn open_jti_store(path: &std::path::Path, endpoint: &mut Endpoint) -> io::Result<Store> {
    let mut store =
        Store::open(path).map_err(|e| io::Error::other(format!("--store {}: {e}", path.display())))?;
    let now_ms = endpoint.wall_clock().unix_ms_at(Instant::now());
    let consumed = store.load_consumed(now_ms)?;
    tracing::info!(path = %path.display(), jtis = consumed.len(), "consumed join tickets restored");
    if let Some(server) = endpoint.server_mut() {
        let tickets = server.tickets();
        tickets.restore_consumed(consumed);
        tickets.record_consumed(true);
    }
    Ok(store)
}

/// The write-ahead step of a game server with a store: the `jti`s its endpoint consumed are
/// committed before the Accepts that admit their holders are sent.
fn persist_consumed(store: &mut Store, endpoint: &mut Endpoint) -> io::Result<()> {
    let now_ms = endpoint.wall_clock().unix_ms_at(Instant::now());
    let Some(server) = endpoint.server_mut() else {
        return Ok(());
    };
    let tickets = server.tickets();
    let consumed: Vec<_> = std::iter::from_fn(|| tickets.poll_consumed()).collect();
    if consumed.is_empty() {
        return Ok(());
    }
    store.persist_consumed(consumed, now_ms).map_err(io::Error::from)
}

/// What one demo client observed.
#[derive(Debug, Clone, Serialize)]
pub struct ClientReport {
    /// Client index.
    pub index: u64,
    /// Whether it joined.
    pub joined: bool,
    /// Rejection reason, if rejected.
    pub rejected: Option<String>,
    /// Disconnection reason seen, if any (e.g. `SERVER_SHUTDOWN` at the end).
    pub disconnected: Option<String>,
    /// Time from the successful attempt's `connect` to the accepted handshake, in ms.
    pub handshake_ms: Option<f64>,
    /// Connection attempts made (retries after retryable rejections included).
    pub attempts: u32,
    /// Snapshots received.
    pub snapshots: u64,
    /// Connection statistics at the end of the run.
    pub stats: Option<ConnectionStats>,
}

/// Runs `count` demo clients (player ids `first..first+count`) against `server` for
/// `options.duration` on one thread, then closes them. It returns earlier once every client
/// is done: its session ended (the server draining says `SERVER_SHUTDOWN`; clients do not
/// rejoin) or it was refused with no retry left. Each client has a fresh identity key and
/// [`Secrets`](tickwire_core::Secrets) from the OS, and a fresh ticket per attempt.
///
/// # Errors
/// Socket errors; the OS has no randomness.
pub fn run_clients(
    server: SocketAddr,
    first: u64,
    count: u64,
    options: &ClientOptions,
) -> io::Result<Vec<ClientReport>> {
    let mut runtime = MioRuntime::new()?;
    let bind: SocketAddr = if server.is_ipv4() {
        "127.0.0.1:0"
    } else {
        "[::1]:0"
    }
    .parse()
    .map_err(io::Error::other)?;
    let mut clients = Vec::new();
    let start = Instant::now();
    for index in first..first.saturating_add(count) {
        let identity = tickwire_udp::os_signing_key()?;
        let public = identity.verifying_key();
        let endpoint = Endpoint::builder(options.config.clone(), os_secrets()?, identity, wall_clock_now())
            .client()
            .map_err(io::Error::other)?;
        let node = runtime.bind(bind, endpoint)?;
        clients.push(DemoClient {
            node,
            identity: public,
            conn: None,
            retry_at: Some(start),
            attempt_started: start,
            backoff: Backoff::new(options.config.retry.clone()),
            paced: 0,
            rng: ChaCha8Rng::from_seed(os_random()?),
            done: false,
            report: ClientReport {
                index,
                joined: false,
                rejected: None,
                disconnected: None,
                handshake_ms: None,
                attempts: 0,
                snapshots: 0,
                stats: None,
            },
        });
    }
    while start.elapsed() < options.duration && !clients.iter().all(|c| c.done) {
        let next_tick = clients
            .iter()
            .filter_map(|c| runtime.endpoint(c.node).tick_sync(c.conn?)?.poll_timeout())
            .min()
            .map(|t| t.saturating_duration_since(Instant::now()));
        runtime.turn(Some(
            next_tick
                .unwrap_or(Duration::from_millis(20))
                .min(Duration::from_millis(20)),
        ))?;
        for client in &mut clients {
            client.step(&mut runtime, server, options)?;
            runtime.flush(client.node);
        }
    }
    for client in &clients {
        if let Some(conn) = client.conn {
            runtime
                .endpoint(client.node)
                .close(Instant::now(), conn, ReasonCode::NORMAL, "client done");
            runtime.flush(client.node);
        }
    }
    let deadline = Instant::now() + Duration::from_millis(300);
    while Instant::now() < deadline
        && runtime
            .nodes()
            .any(|n| runtime.pump(n).endpoint_ref().connection_count() > 0)
    {
        runtime.turn(Some(Duration::from_millis(10)))?;
    }
    Ok(clients.into_iter().map(|c| c.report).collect())
}

/// One demo client: its node, its connection attempt, and its retry state.
#[derive(Debug)]
struct DemoClient {
    node: NodeId,
    /// The public half of its identity key, which its tickets name.
    identity: VerifyingKey,
    conn: Option<ConnHandle>,
    /// When to (re)connect; `None` while connected or once retries are exhausted.
    retry_at: Option<Instant>,
    attempt_started: Instant,
    backoff: Backoff,
    /// Paced rejections (`retry_after` given) in a row, up to [`MAX_PACED_SPREAD`].
    paced: u32,
    rng: ChaCha8Rng,
    /// Its session ended, or it was refused and will not try again.
    done: bool,
    report: ClientReport,
}

impl DemoClient {
    /// Connects when due, handles events, and sends one input per client tick.
    ///
    /// Retryable rejections are retried with a fresh ticket. One that says when
    /// (`retry_after`: `RATE_LIMITED`, `SERVER_FULL`) is the server pacing its admissions, not
    /// a failure: the client waits that long plus jitter that widens with each paced rejection
    /// in a row ([`MAX_PACED_SPREAD`]), so clients sharing an address do not come back in step,
    /// and it does not count against the retry budget; the run's duration bounds it. One that
    /// does not say (`SERVER_BUSY`, `HANDSHAKE_TIMEOUT`) backs off exponentially with jitter,
    /// up to `Config.retry.max_attempts`.
    fn step(
        &mut self,
        runtime: &mut MioRuntime,
        server: SocketAddr,
        options: &ClientOptions,
    ) -> io::Result<()> {
        let now = Instant::now();
        let endpoint = runtime.endpoint(self.node);
        if self.retry_at.is_some_and(|t| t <= now) {
            self.retry_at = None;
            self.attempt_started = now;
            self.report.attempts += 1;
            let ticket = demo_ticket(&options.issuer, options.gs_id, self.report.index, &self.identity)?;
            let connect = ConnectOptions {
                trusted_vs_keys: options.trusted_vs.as_ref().map(vs_keys),
                ..ConnectOptions::default()
            };
            let conn = endpoint
                .connect(now, server, ticket, connect)
                .map_err(io::Error::other)?;
            self.conn = Some(conn);
        }
        let Some(conn) = self.conn else { return Ok(()) };
        while let Some(event) = endpoint.poll_event() {
            match event {
                Event::Connected { .. } => {
                    self.report.joined = true;
                    self.report.rejected = None;
                    self.report.handshake_ms =
                        Some(now.duration_since(self.attempt_started).as_secs_f64() * 1e3);
                    self.backoff.reset();
                    self.paced = 0;
                }
                Event::Rejected {
                    reason,
                    detail,
                    retry_after,
                    ..
                } => {
                    self.report.rejected = Some(format!("{reason}: {detail}"));
                    self.retry_at = match (reason.is_retryable(), retry_after) {
                        (false, _) => None,
                        (true, Some(paced)) => {
                            // Clients sharing an address spread out further each time they
                            // are paced, so the server's tokens are not fought over.
                            self.paced = (self.paced + 1).min(MAX_PACED_SPREAD);
                            let spread = f64::from(self.paced) * self.rng.random::<f64>();
                            now.checked_add(paced.saturating_add(paced.mul_f64(spread)))
                        }
                        (true, None) => self.backoff.next_delay(&mut self.rng).map(|delay| now + delay),
                    };
                    self.done = self.retry_at.is_none();
                }
                Event::Disconnected { reason, detail, .. } => {
                    self.report.disconnected = Some(format!("{reason}: {detail}"));
                    self.done = true;
                }
                Event::Message { channel, .. } if channel == ChannelId::LATEST => self.report.snapshots += 1,
                _ => {}
            }
        }
        while let Some(tick) = endpoint.poll_client_tick(now, conn) {
            let mut input = tick.to_be_bytes().to_vec();
            input.push((tick / 120 + self.report.index) as u8);
            let _ = endpoint.send(now, conn, ChannelId::LATEST, Bytes::from(input));
        }
        if self.report.joined && self.report.disconnected.is_none() {
            self.report.stats = endpoint.stats(conn);
        }
        Ok(())
    }
}

/// Percentiles of a sample set, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
}

impl Percentiles {
    /// Percentiles of `values_ms` (zeros when empty), from an HDR histogram at microsecond
    /// resolution with three significant digits: each is the nearest-rank percentile to
    /// within 0.1 %. Negative and NaN values count as 0.
    pub fn of(values_ms: impl IntoIterator<Item = f64>) -> Self {
        let mut histogram = Histogram::<u64>::new(3).expect("3 significant digits is within 0..=5");
        for ms in values_ms {
            // `as` saturates: NaN and negatives become 0, huge values the largest u64.
            let us = (ms * 1e3).round() as u64;
            if histogram.record(us).is_err() {
                // Growing failed (a usize too narrow for the range): clamp instead.
                histogram.saturating_record(us);
            }
        }
        if histogram.is_empty() {
            return Self::default();
        }
        let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1e3;
        Self {
            p50: ms(0.50),
            p99: ms(0.99),
        }
    }
}

/// The demo's report (`--json` writes it).
#[derive(Debug, Clone, Serialize)]
pub struct DemoReport {
    /// Clients started.
    pub clients: u64,
    /// Clients whose handshake was accepted.
    pub joined: u64,
    /// Clients rejected.
    pub rejected: u64,
    /// Time from connect to accepted handshake.
    pub handshake_ms: Percentiles,
    /// RTT: p50 is the median of the clients' heartbeat p50s, p99 the largest client p99.
    pub rtt_ms: Percentiles,
    /// Mean RFC 3550 interarrival jitter over clients, in ms.
    pub jitter_ms: f64,
    /// Mean heartbeat loss ratio over clients.
    pub loss_ratio: f64,
    /// Application messages sent by all endpoints.
    pub messages_sent: u64,
    /// Application messages received by all endpoints.
    pub messages_received: u64,
    /// UDP bytes sent by all endpoints.
    pub bytes_sent: u64,
    /// UDP bytes received by all endpoints.
    pub bytes_received: u64,
    /// Fragmented messages reassembled (clients).
    pub fragmented_messages_reassembled: u64,
    /// Fragments dropped by reassembly (clients).
    pub fragments_dropped: u64,
    /// Server ticks run.
    pub ticks: u64,
    /// Server tick lateness.
    pub tick_lateness_ms: Percentiles,
    /// Server per-stage timings.
    pub stages: StageStats,
    /// Per-client details.
    pub per_client: Vec<ClientReport>,
}

impl DemoReport {
    /// Aggregates the server's and the clients' reports (either may be absent when the sides
    /// run as separate processes).
    pub fn build(server: Option<&ServerReport>, clients: &[ClientReport]) -> Self {
        let client_stats: Vec<&ConnectionStats> = clients.iter().filter_map(|c| c.stats.as_ref()).collect();
        let server_stats: &[ConnectionStats] = server.map_or(&[], |s| &s.connections);
        let all = || client_stats.iter().copied().chain(server_stats.iter());
        let mean = |f: &dyn Fn(&ConnectionStats) -> f64| {
            if client_stats.is_empty() {
                0.0
            } else {
                client_stats.iter().map(|s| f(s)).sum::<f64>() / client_stats.len() as f64
            }
        };
        let p50s = Percentiles::of(client_stats.iter().map(|s| s.heartbeat.rtt_p50_ms));
        let max_p99 = client_stats
            .iter()
            .map(|s| s.heartbeat.rtt_p99_ms)
            .fold(0.0, f64::max);
        Self {
            clients: clients.len() as u64,
            joined: clients.iter().filter(|c| c.joined).count() as u64,
            rejected: clients.iter().filter(|c| c.rejected.is_some()).count() as u64,
            handshake_ms: Percentiles::of(clients.iter().filter_map(|c| c.handshake_ms)),
            rtt_ms: Percentiles {
                p50: p50s.p50,
                p99: max_p99,
            },
            jitter_ms: mean(&|s| s.heartbeat.jitter_ms),
            loss_ratio: mean(&|s| s.heartbeat.loss_ratio),
            messages_sent: all().map(|s| s.messages_sent).sum(),
            messages_received: all().map(|s| s.messages_received).sum(),
            bytes_sent: all().map(|s| s.udp_tx_bytes).sum(),
            bytes_received: all().map(|s| s.udp_rx_bytes).sum(),
            fragmented_messages_reassembled: client_stats
                .iter()
                .map(|s| s.reassembly.messages_reassembled)
                .sum(),
            fragments_dropped: client_stats.iter().map(|s| s.reassembly.fragments_dropped).sum(),
            ticks: server.map_or(0, |s| s.ticks),
            tick_lateness_ms: server.map_or_else(Percentiles::default, |s| Percentiles {
                p50: s.tick_stats.lateness_p50_ms,
                p99: s.tick_stats.lateness_p99_ms,
            }),
            stages: server.map(|s| s.stages.clone()).unwrap_or_default(),
            per_client: clients.to_vec(),
        }
    }

    /// A human-readable summary.
    pub fn render(&self) -> String {
        let m = &self.stages.mean_us;
        format!(
            "tickwire demo report\n\
             --------------------\n\
             clients            {} joined, {} rejected (of {})\n\
             handshake          p50 {:.1} ms   p99 {:.1} ms\n\
             rtt (heartbeat)    p50 {:.2} ms   p99 {:.2} ms   jitter {:.3} ms   loss {:.2} %\n\
             messages           {} sent, {} received\n\
             udp bytes          {} sent, {} received\n\
             fragmentation      {} messages reassembled, {} fragments dropped\n\
             server ticks       {} (lateness p50 {:.3} ms, p99 {:.3} ms)\n\
             stage means (us)   poll {:.1}  apply {:.1}  simulate {:.1}  extract {:.1}  send {:.1}\n",
            self.joined,
            self.rejected,
            self.clients,
            self.handshake_ms.p50,
            self.handshake_ms.p99,
            self.rtt_ms.p50,
            self.rtt_ms.p99,
            self.jitter_ms,
            self.loss_ratio * 100.0,
            self.messages_sent,
            self.messages_received,
            self.bytes_sent,
            self.bytes_received,
            self.fragmented_messages_reassembled,
            self.fragments_dropped,
            self.ticks,
            self.tick_lateness_ms.p50,
            self.tick_lateness_ms.p99,
            m.poll,
            m.apply,
            m.simulate,
            m.extract,
            m.send,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank_within_a_tenth_of_a_percent() {
        let p = Percentiles::of((1..=100).map(f64::from));
        for (got, want) in [(p.p50, 50.0), (p.p99, 99.0)] {
            assert!((got - want).abs() <= want * 1e-3, "{got} vs {want}");
        }
        let empty = Percentiles::of([]);
        assert_eq!((empty.p50, empty.p99), (0.0, 0.0));
    }
}
