//! The discrete-event engine: virtual time in integer nanoseconds, one queue of events ordered
//! by `(time, insertion sequence)`, nodes, and [`Link`]s between them.
//!
//! Nodes come in two kinds, each behind one small trait:
//!
//! - **Nodes with an endpoint** — clients, game servers, the verification server — run a real
//!   tickwire [`Endpoint`] and, beside it, a `Behaviour` (module `behaviour`): the engine feeds
//!   the endpoint its datagrams and timeouts, calls the behaviour on its events and ticks, and
//!   routes what the endpoint transmits. A behaviour reaches the run through the `Net` facade.
//! - **Raw nodes** — the hostile traffic generators: floods from spoofed sources and
//!   half-open attackers — implement `RawNode` (module `raw_node`): raw datagrams in
//!   (`handle_datagram`), their own wake-ups (`handle_time`, `poll_timeout`), and datagrams
//!   out through the `RawNet` facade, routed by the engine through the raw node's wire.
//!
//! The engine is itself sans-IO: no threads, no wall clock, no `HashMap`; every random choice
//! comes from the run's seed through [`derive()`]. Each datagram a node emits is routed through
//! its path's link and recorded in the trace hash ([`Sim::trace_sha256`]) with its fate, so two
//! runs agree on the hash exactly when they agree on every packet.
//!
//! ```no_run
//! use tickwire_sim::{engine::{Sim, SimOptions}, scenario::Scenario};
//! let scenario = Scenario::builtin("default").unwrap();
//! let mut sim = Sim::new(scenario, 7, SimOptions::default()).unwrap();
//! while !sim.finished() {
//!     sim.run_for(1_000_000_000); // one virtual second at a time
//! }
//! let report = sim.report();
//! println!("{} joined, trace {}", report.sessions.clients_joined, report.trace_sha256);
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};
use tickwire_core::retry::Backoff;
use tickwire_core::stats::CompressionStats;
use tickwire_core::vs::{ProtectedReceipt, TranscriptDigest, VsKeys};
use tickwire_core::{
    Config, Endpoint, JoinTicketClaims, ReasonCode, RecordedChunk, Secrets, Senders, TicketIssuer,
};

use crate::capture::{KeyLogBuffer, PcapWriter};
use crate::clock::{NodeClock, START_UNIX_MS};
use crate::crypto::sim_crypto;
use crate::link::{DropReason, Link, LinkStats, Nanos};
use crate::report::{CompressionReport, Metrics, Report, Side};
use crate::scenario::{Direction, Fault, Scenario, ScenarioError, Target};

pub use crate::units::{FRAGMENTED_ABOVE, MILLI, SECOND};
/// UDP port game servers listen on.
pub const SERVER_PORT: u16 = 4433;
/// Key id of the simulation's ticket issuer.
pub const ISSUER_KEY_ID: u32 = 1;

/// A 32-byte seed for one purpose of one run: `SHA-256("tickwire-sim/v1" ‖ seed ‖ label ‖ a ‖ b)`.
pub fn derive(seed: u64, label: &str, a: u64, b: u64) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(b"tickwire-sim/v1");
    hasher.update(seed.to_be_bytes());
    hasher.update((label.len() as u64).to_be_bytes());
    hasher.update(label.as_bytes());
    hasher.update(a.to_be_bytes());
    hasher.update(b.to_be_bytes());
    hasher.finalize().into()
}

mod app;
mod behaviour;
mod cpu;
mod faults;
mod flood;
mod half_open;
mod queue;
mod raw_node;
mod vs;

use app::{start_attempt, App, ClientApp, ClientState, ServerApp};
use behaviour::{Idle, Net};
use queue::{Alarm, Queue};
use raw_node::{RawSlot, RawTimer, RawTransmit, Wire};
use vs::{GsVs, VsApp, VsNet};
pub use vs::{SIM_BINARY_SHA256, SIM_CONFIG_SHA256, VS_ADDR, VS_KEY_ID};

/// Options of one run beyond the scenario.
#[derive(Default)]
pub struct SimOptions {
    /// Write every datagram to this pcap sink and collect the TLS key log
    /// ([`Sim::key_log`]).
    pub capture: Option<Box<dyn Write>>,
    /// Stop after this much virtual time instead of the scenario's `duration_s`.
    pub duration: Option<Duration>,
    /// Record every client session of every game server (`PROTOCOL.md` §11) and keep the
    /// receipts the game servers get, for [`Sim::recordings`] and [`Sim::receipts`].
    pub record: bool,
}

impl std::fmt::Debug for SimOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimOptions")
            .field("capture", &self.capture.is_some())
            .field("duration", &self.duration)
            .field("record", &self.record)
            .finish()
    }
}

/// Errors setting up a run.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The scenario is invalid.
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    /// An endpoint could not be built from the scenario's configuration.
    #[error("endpoint setup failed: {0}")]
    Endpoint(#[from] tickwire_core::EndpointError),
    /// The capture file could not be written.
    #[error("capture failed: {0}")]
    Capture(#[from] std::io::Error),
}

#[derive(Debug)]
enum What {
    /// A datagram arrives at node `to`.
    Deliver {
        to: usize,
        from: SocketAddr,
        payload: Vec<u8>,
    },
    /// A node's armed deadline.
    Wake { node: usize },
    /// A client starts (or restarts) an attempt to join, if `generation` is still current.
    Join { node: usize, generation: u64 },
    /// A scheduled fault takes effect.
    Fault(Action),
    /// Periodic path sampling for the report.
    Sample,
    /// A game server's modelled CPU is free for the next queued datagram.
    CpuFree { node: usize },
    /// Raw node `node`'s armed `timer`.
    WakeRaw { node: usize, timer: RawTimer },
    /// A datagram arrives at raw node `node`, at its address `to`.
    DeliverRaw {
        node: usize,
        from: SocketAddr,
        to: SocketAddr,
        payload: Vec<u8>,
    },
}

#[derive(Debug, Clone, Copy)]
enum Action {
    Cut {
        client: usize,
        direction: Direction,
        start: bool,
    },
    /// Every game server's path to the VS.
    CutVs {
        direction: Direction,
        start: bool,
    },
    Step {
        node: usize,
        offset_ms: i64,
    },
    Drift {
        node: usize,
        ppm: f64,
    },
    Crash {
        node: usize,
    },
    Restart {
        node: usize,
    },
}

/// A client's path to its server: one link each way, partition counters and fault history.
#[derive(Debug)]
pub(crate) struct Path {
    pub(crate) preset: usize,
    pub(crate) up: Link,
    pub(crate) down: Link,
    cut_up: u32,
    cut_down: u32,
    /// Faults currently affecting this client's session (cuts, its or its server's crash).
    pub(crate) faults_active: u32,
    /// Start of the current (or, once cleared, the last) faulted period.
    pub(crate) fault_since: Option<Nanos>,
    /// When the last fault cleared.
    pub(crate) fault_cleared: Option<Nanos>,
    /// One-way delays observed since the last sample, per direction: (sum ns, count).
    pub(crate) up_delay: (u128, u64),
    pub(crate) down_delay: (u128, u64),
    pub(crate) last_up: LinkStats,
    pub(crate) last_down: LinkStats,
}

impl Path {
    fn fault_begin(&mut self, now: Nanos) {
        if self.faults_active == 0 {
            self.fault_since = Some(now);
        }
        self.faults_active += 1;
    }

    fn fault_end(&mut self, now: Nanos) {
        self.faults_active = self.faults_active.saturating_sub(1);
        if self.faults_active == 0 {
            self.fault_cleared = Some(now);
        }
    }
}

#[derive(Debug)]
struct Node {
    addr: SocketAddr,
    identity: SigningKey,
    clock: NodeClock,
    endpoint: Option<Endpoint>,
    incarnation: u64,
    alarm: Alarm,
    rng: ChaCha8Rng,
    app: App,
    /// The CPU model (game servers, when the scenario has `[server_cpu]`).
    cpu: Option<cpu::Cpu>,
}

/// Everything but the nodes, so a node and the world can be borrowed together.
struct World {
    seed: u64,
    now: Nanos,
    queue: Queue,
    servers: usize,
    addrs: BTreeMap<SocketAddr, usize>,
    paths: Vec<Path>,
    trace: Sha256,
    datagrams: u64,
    capture: Option<PcapWriter<Box<dyn Write>>>,
    capture_error: Option<std::io::Error>,
    key_log: Option<Arc<KeyLogBuffer>>,
    issuer: TicketIssuer,
    scenario: Arc<Scenario>,
    metrics: Metrics,
    buf: Vec<u8>,
    counts: EngineCounts,
    /// The verification server, if the scenario has one.
    vs: Option<VsNet>,
    /// Raw node addresses → raw node id.
    raw_addrs: BTreeMap<SocketAddr, usize>,
    /// Per raw node: how its datagrams travel.
    raw_wires: Vec<Wire>,
    /// What raw nodes sent during their current input, waiting to be routed.
    outbox: Vec<RawTransmit>,
    /// Recent legitimate client-to-server datagrams, kept when a raw node overhears them.
    overheard: Option<VecDeque<Vec<u8>>>,
    /// Session recordings, when [`SimOptions::record`] is set.
    recordings: Option<Recordings>,
}

/// What a recording run keeps: each session's recording bytes and every receipt.
#[derive(Debug, Default)]
struct Recordings {
    sessions: Vec<SimRecording>,
    /// (game server node, session id) → index in `sessions`.
    index: BTreeMap<(usize, u64), usize>,
    receipts: Vec<SimReceipt>,
}

/// A receipt a simulated game server received, with the digest it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimReceipt {
    /// The game server's id (its index + 1).
    pub gs_id: u64,
    /// The digest the game server sent.
    pub digest: TranscriptDigest,
    /// The verification server's receipt for it.
    pub receipt: ProtectedReceipt,
}

/// One recorded session of a simulated game server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimRecording {
    /// The game server's index (0-based; its `gs_id` is one more).
    pub server: usize,
    /// The session id.
    pub session_id: u64,
    /// The recording file's bytes so far (`PROTOCOL.md` §11).
    pub bytes: Vec<u8>,
    /// Whether the recording is complete (it holds its `End` record).
    pub complete: bool,
}

/// Work the engine did, for profiling a run.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct EngineCounts {
    /// Events processed.
    pub events: u64,
    /// Datagram deliveries.
    pub deliveries: u64,
    /// Node wake-ups that ran (an endpoint's `handle_timeout`, a raw node's own timers).
    pub wakes: u64,
    /// Wake-ups superseded by an earlier one (skipped).
    pub stale_wakes: u64,
}

impl World {
    fn push(&mut self, at: Nanos, what: What) {
        self.queue.push(at, what);
    }

    /// Hashes one datagram into the trace (time, source, destination, bytes) and captures it.
    fn record(&mut self, from: SocketAddr, to: SocketAddr, bytes: &[u8]) {
        let now = self.now;
        self.trace.update(now.to_be_bytes());
        hash_addr(&mut self.trace, from);
        hash_addr(&mut self.trace, to);
        self.trace.update((bytes.len() as u32).to_be_bytes());
        self.trace.update(bytes);
        if let Some(capture) = &mut self.capture {
            if let Err(e) = capture.write(now, from, to, bytes) {
                self.capture_error.get_or_insert(e);
            }
        }
    }

    /// Routes one datagram from node `src` through its path, hashing it with its fate.
    fn route(&mut self, src: usize, from: SocketAddr, to: SocketAddr, bytes: &[u8]) {
        let now = self.now;
        self.datagrams += 1;
        self.record(from, to, bytes);
        let Some(&dst) = self.addrs.get(&to) else {
            self.route_raw(from, to, bytes);
            return;
        };
        if let Some(vs) = &self.vs {
            if src == vs.node || dst == vs.node {
                self.route_vs(src, dst, from, bytes);
                return;
            }
        }
        let uplink = src >= self.servers;
        let client = if uplink { src } else { dst } - self.servers;
        if uplink {
            self.overhear(bytes);
            self.metrics.wire.bytes_up += bytes.len() as u64;
            self.metrics.wire.datagrams_up += 1;
        } else {
            self.metrics.wire.bytes_down += bytes.len() as u64;
            self.metrics.wire.datagrams_down += 1;
        }
        let path = &mut self.paths[client];
        let cut = if uplink { path.cut_up } else { path.cut_down } > 0;
        if cut {
            self.trace.update([0xfe]);
            self.metrics.partition_dropped += 1;
            return;
        }
        let link = if uplink { &mut path.up } else { &mut path.down };
        let outcome = link.transmit(now, bytes.to_vec());
        let acc = if uplink {
            &mut path.up_delay
        } else {
            &mut path.down_delay
        };
        for delivery in outcome.deliveries.iter().filter(|d| !d.duplicate) {
            acc.0 += u128::from(delivery.at.saturating_sub(now));
            acc.1 += 1;
        }
        self.enqueue(outcome, |payload| What::Deliver {
            to: dst,
            from,
            payload,
        });
    }

    /// Routes one datagram between a game server and the verification server.
    fn route_vs(&mut self, src: usize, dst: usize, from: SocketAddr, bytes: &[u8]) {
        let vs = self.vs.as_mut().expect("checked by the caller");
        let uplink = dst == vs.node;
        let server = if uplink { src } else { dst };
        let Some(path) = vs.paths.get_mut(server) else {
            // Only game servers have a path to the VS.
            self.trace.update([0xff]);
            self.metrics.no_route += 1;
            return;
        };
        if (if uplink { path.cut_up } else { path.cut_down }) > 0 {
            self.trace.update([0xfe]);
            self.metrics.partition_dropped += 1;
            return;
        }
        let link = if uplink { &mut path.up } else { &mut path.down };
        let outcome = link.transmit(self.now, bytes.to_vec());
        self.enqueue(outcome, |payload| What::Deliver {
            to: dst,
            from,
            payload,
        });
    }

    /// Hashes a link's verdict on one datagram and queues its deliveries, each as the event
    /// `deliver` makes of its payload.
    fn enqueue(&mut self, outcome: crate::link::Outcome, deliver: impl Fn(Vec<u8>) -> What) {
        if let Some(reason) = outcome.dropped {
            self.trace.update([0, drop_code(reason)]);
        }
        for delivery in outcome.deliveries {
            self.trace
                .update([1, u8::from(delivery.corrupted), u8::from(delivery.duplicate)]);
            self.trace.update(delivery.at.to_be_bytes());
            self.push(delivery.at, deliver(delivery.payload));
        }
    }

    /// Arms `node`'s wake-up at virtual time `at` unless an earlier one is armed.
    fn arm(&mut self, id: usize, node: &mut Node, at: Nanos) {
        if let Some(at) = node.alarm.arm(self.now, at) {
            self.push(at, What::Wake { node: id });
        }
    }

    fn issue_ticket(
        &mut self,
        rng: &mut ChaCha8Rng,
        client: usize,
        gs_id: u64,
        key: [u8; 32],
    ) -> tickwire_core::JoinTicket {
        let jti: [u8; 16] = rng.random();
        let claims = JoinTicketClaims::builder(key, jti)
            .client_id(client as u64)
            .audience(gs_id)
            .valid_from(START_UNIX_MS + self.now / MILLI)
            .lifetime_ms(self.scenario.traffic.ticket_lifetime_s * 1_000)
            .build();
        self.issuer.issue(&claims)
    }

    /// Records a session's end as seen by `side`, classifying it against the fault history.
    fn record_disconnect(
        &mut self,
        side: Side,
        client: usize,
        established: Nanos,
        reason: ReasonCode,
        detail: &str,
    ) {
        if reason == ReasonCode::NOT_AUTHORISED && self.vs.is_some() {
            // A game server starved of play tickets closes its sessions on purpose: the VS
            // protocol at work, not a failure detector's verdict on the path.
            self.metrics.record_disconnect(side, reason, true, None, detail);
            return;
        }
        let now = self.now;
        let grace = self.scenario.endpoint.idle_timeout_ms * MILLI;
        let path = &self.paths[client];
        let explained =
            path.faults_active > 0 || path.fault_cleared.is_some_and(|t| now.saturating_sub(t) < grace);
        // Detection delay: from the start of the fault that broke this session (it may have
        // cleared since, e.g. a crashed server that restarted before the client noticed).
        let delay = match path.fault_since {
            Some(since) if explained && established <= since => Some(now - since),
            _ => None,
        };
        self.metrics
            .record_disconnect(side, reason, explained, delay, detail);
    }
}

fn hash_addr(hasher: &mut Sha256, addr: SocketAddr) {
    match addr {
        SocketAddr::V4(a) => hasher.update(a.ip().octets()),
        SocketAddr::V6(a) => hasher.update(a.ip().octets()),
    }
    hasher.update(addr.port().to_be_bytes());
}

fn drop_code(reason: DropReason) -> u8 {
    match reason {
        DropReason::Loss => 1,
        DropReason::QueueFull => 2,
        DropReason::Mtu => 3,
    }
}

/// A simulation run: build with [`Sim::new`], advance with [`Sim::run_for`] /
/// [`Sim::run_until`], read [`Sim::report`].
pub struct Sim {
    world: World,
    /// Nodes with an endpoint: game servers, then clients, then the verification server.
    nodes: Vec<Node>,
    /// Raw nodes: floods, then half-open attackers.
    raw: Vec<RawSlot>,
    end: Nanos,
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim")
            .field("now", &self.world.now)
            .field("nodes", &self.nodes.len())
            .field("raw_nodes", &self.raw.len())
            .field("queued", &self.world.queue.len())
            .finish()
    }
}

impl Sim {
    /// Builds every node, link and scheduled fault of `scenario` for `seed`.
    ///
    /// # Errors
    /// [`SimError`] if the scenario is invalid or an endpoint cannot be built.
    pub fn new(scenario: Scenario, seed: u64, options: SimOptions) -> Result<Self, SimError> {
        scenario.validate()?;
        #[allow(clippy::disallowed_methods)]
        let epoch = Instant::now(); // only differences of instants reach the endpoints
        let servers = scenario.topology.servers;
        let clients = scenario.clients();
        let presets: Vec<String> = {
            let mut pattern = Vec::new();
            for entry in &scenario.topology.mix {
                pattern.extend(std::iter::repeat_n(entry.preset.clone(), entry.weight as usize));
            }
            pattern
        };
        let preset_names: Vec<String> = {
            let mut names: Vec<String> = Vec::new();
            for entry in &scenario.topology.mix {
                if entry.weight > 0 && !names.contains(&entry.preset) {
                    names.push(entry.preset.clone());
                }
            }
            names
        };
        let issuer = TicketIssuer::new(
            ISSUER_KEY_ID,
            SigningKey::from_bytes(&derive(seed, "issuer", 0, 0)),
        );
        let capture = options.capture.map(PcapWriter::new).transpose()?;
        let key_log = capture.as_ref().map(|_| KeyLogBuffer::new());
        let end = options
            .duration
            .map_or((scenario.duration_s * 1e9) as Nanos, |d| d.as_nanos() as Nanos);
        let mut paths = Vec::with_capacity(clients);
        let mut client_presets = Vec::with_capacity(clients);
        for c in 0..clients {
            let name = &presets[c % presets.len()];
            let spec = scenario.link(name).expect("validated");
            let preset = preset_names.iter().position(|n| n == name).expect("listed");
            client_presets.push(preset);
            let up = Link::new(&spec, derive(seed, "link/up", c as u64, 0));
            let down = Link::new(&spec, derive(seed, "link/down", c as u64, 0));
            paths.push(Path {
                preset,
                last_up: LinkStats::default(),
                last_down: LinkStats::default(),
                up,
                down,
                cut_up: 0,
                cut_down: 0,
                faults_active: 0,
                fault_since: None,
                fault_cleared: None,
                up_delay: (0, 0),
                down_delay: (0, 0),
            });
        }
        let scenario = Arc::new(scenario);
        let metrics = Metrics::new(&scenario, preset_names, &client_presets);
        let mut world = World {
            seed,
            now: 0,
            queue: Queue::default(),
            servers,
            addrs: BTreeMap::new(),
            paths,
            trace: Sha256::new(),
            datagrams: 0,
            capture,
            capture_error: None,
            key_log,
            issuer,
            scenario: scenario.clone(),
            metrics,
            buf: Vec::with_capacity(1500),
            counts: EngineCounts::default(),
            vs: None,
            raw_addrs: BTreeMap::new(),
            raw_wires: Vec::new(),
            outbox: Vec::new(),
            overheard: None,
            recordings: options.record.then(Recordings::default),
        };
        let mut nodes = Vec::with_capacity(servers + clients);
        for s in 0..servers {
            let addr = server_addr(s);
            let snapshot_every = u64::from(scenario.traffic.tick_rate_hz / scenario.traffic.snapshot_rate_hz);
            let app = App::Server(ServerApp {
                gs_id: s as u64 + 1,
                sessions: BTreeMap::new(),
                snapshot_every,
                vs: None,
            });
            nodes.push(Self::make_node(&world, epoch, s, addr, app));
        }
        for c in 0..clients {
            let id = servers + c;
            let addr = client_addr(c, 0);
            let app = App::Client(ClientApp {
                index: c,
                server: c / scenario.topology.clients_per_server,
                state: ClientState::Waiting,
                backoff: Backoff::new(scenario.endpoint.retry.clone()),
                generation: 0,
                reconnecting: false,
                spectator: scenario.is_spectator(c),
            });
            nodes.push(Self::make_node(&world, epoch, id, addr, app));
        }
        if scenario.vs.is_some() {
            let id = servers + clients;
            let node = Self::make_node(&world, epoch, id, VS_ADDR, App::Vs(None));
            let identity = node.identity.verifying_key().to_bytes();
            world.vs = Some(VsNet::new(&scenario, seed, id, &vs::vs_key(seed), identity));
            nodes.push(node);
        }
        if let Some(costs) = &scenario.server_cpu {
            for node in &mut nodes[..servers] {
                node.cpu = Some(cpu::Cpu::new(costs.clone()));
            }
        }
        let mut raw = flood::build(&scenario, seed, epoch, &world.issuer)?;
        let key_log = world.key_log.clone().map(|k| k as Arc<dyn rustls::KeyLog>);
        raw.extend(half_open::build(&scenario, seed, epoch, key_log));
        let mut sim = Self {
            world,
            nodes,
            raw: Vec::with_capacity(raw.len()),
            end,
        };
        for id in 0..sim.nodes.len() {
            sim.world.addrs.insert(sim.nodes[id].addr, id);
        }
        // The VS (the last node) first, so that game servers find it listening.
        let order = (0..sim.nodes.len())
            .rev()
            .take(usize::from(scenario.vs.is_some()));
        for id in order.chain(0..servers + clients) {
            sim.start_node(id)?;
        }
        // Clients join spread over the join window, each at a random point of its own slot.
        let window = (scenario.topology.join_window_s * 1e9) as Nanos;
        for c in 0..clients {
            let id = servers + c;
            let slot = window / clients.max(1) as Nanos;
            let jitter = if slot > 0 {
                sim.nodes[id].rng.random_range(0..slot)
            } else {
                0
            };
            sim.world.push(
                window * c as Nanos / clients.max(1) as Nanos + jitter,
                What::Join {
                    node: id,
                    generation: 0,
                },
            );
        }
        sim.schedule_faults();
        for (node, wire) in raw {
            sim.add_raw(node, wire);
        }
        let interval = scenario.report.sample_interval_ms * MILLI;
        sim.world.push(interval, What::Sample);
        Ok(sim)
    }

    fn make_node(world: &World, epoch: Instant, id: usize, addr: SocketAddr, app: App) -> Node {
        Node {
            addr,
            identity: SigningKey::from_bytes(&derive(world.seed, "identity", id as u64, 0)),
            clock: NodeClock::new(epoch),
            endpoint: None,
            incarnation: 0,
            alarm: Alarm::default(),
            rng: ChaCha8Rng::from_seed(derive(world.seed, "app", id as u64, 0)),
            app,
            cpu: None,
        }
    }

    /// Builds node `id`'s endpoint for its current incarnation.
    fn start_node(&mut self, id: usize) -> Result<(), SimError> {
        let world = &mut self.world;
        let node = &mut self.nodes[id];
        let incarnation = node.incarnation;
        let mut config: Config = world.scenario.endpoint.clone();
        // Simulations are reproducible, not secret: each node's secrets derive from the seed.
        let secrets = Secrets::from_bytes(derive(world.seed, "node", id as u64, incarnation));
        config.tick.tick_rate_hz = world.scenario.traffic.tick_rate_hz;
        config.tick_sync.tick_rate_hz = world.scenario.traffic.tick_rate_hz;
        let key_log = world.key_log.clone().map(|k| k as Arc<dyn rustls::KeyLog>);
        let crypto = sim_crypto(derive(world.seed, "rustls", id as u64, incarnation), key_log);
        let now = node.clock.instant(world.now);
        let endpoint = match &mut node.app {
            App::Server(app) => {
                let mut endpoint =
                    Endpoint::builder(config, secrets, node.identity.clone(), node.clock.wall())
                        .crypto(crypto)
                        .trust_issuer(ISSUER_KEY_ID, world.issuer.verifying_key())
                        .server(app.gs_id, now)?;
                if world.recordings.is_some() {
                    if let Some(mut server) = endpoint.server_mut() {
                        server.record_sessions(true);
                    }
                }
                if let (Some(vs), Some(settings)) = (&world.vs, &world.scenario.vs) {
                    let gs = GsVs::start(
                        &settings.game_server,
                        world.seed,
                        id,
                        incarnation,
                        vs,
                        &mut endpoint,
                        now,
                        world.now,
                    );
                    app.vs = Some(Box::new(gs));
                }
                endpoint
            }
            App::Client(app) => {
                if app.spectator {
                    // Out of step with the server's table: every role may send everywhere, so
                    // the spectator's inputs reach the server, which refuses them.
                    for channel in &mut config.channels {
                        channel.senders = Senders::everyone();
                    }
                }
                Endpoint::builder(config, secrets, node.identity.clone(), node.clock.wall())
                    .crypto(crypto)
                    .client()?
            }
            App::Vs(app) => {
                config.accept_game_servers = true;
                let endpoint = Endpoint::builder(config, secrets, node.identity.clone(), node.clock.wall())
                    .crypto(crypto)
                    .server(0, now)?;
                let gs_keys: Vec<[u8; 32]> = (0..world.servers)
                    .map(|s| {
                        SigningKey::from_bytes(&derive(world.seed, "identity", s as u64, 0))
                            .verifying_key()
                            .to_bytes()
                    })
                    .collect();
                let settings = vs::verifier_config(&world.scenario, world.seed, &gs_keys);
                *app = Some(Box::new(VsApp::new(
                    settings,
                    world.seed,
                    incarnation,
                    vs::vs_key(world.seed),
                    &endpoint,
                )));
                endpoint
            }
        };
        node.endpoint = Some(endpoint);
        drive(id, node, world);
        Ok(())
    }

    /// Current virtual time, in nanoseconds.
    pub fn now(&self) -> Nanos {
        self.world.now
    }

    /// Virtual time at which the run ends, in nanoseconds.
    pub fn end(&self) -> Nanos {
        self.end
    }

    /// Whether the run has reached its end.
    pub fn finished(&self) -> bool {
        self.world.now >= self.end
    }

    /// Work counters of the engine so far.
    pub fn counts(&self) -> EngineCounts {
        self.world.counts
    }

    /// Datagrams sent so far (all nodes, before link faults).
    pub fn datagrams(&self) -> u64 {
        self.world.datagrams
    }

    /// Advances by `span` nanoseconds of virtual time (capped at the end).
    pub fn run_for(&mut self, span: Nanos) {
        self.run_until(self.world.now.saturating_add(span));
    }

    /// Processes every event due at or before `until` (capped at the end), then sets the clock
    /// to `until`.
    pub fn run_until(&mut self, until: Nanos) {
        let until = until.min(self.end);
        while self.world.queue.peek_time().is_some_and(|at| at <= until) {
            let Some((at, what)) = self.world.queue.pop() else {
                break;
            };
            self.world.now = at;
            self.world.counts.events += 1;
            self.handle(what);
        }
        self.world.now = self.world.now.max(until);
    }

    fn handle(&mut self, what: What) {
        let now = self.world.now;
        match what {
            What::Deliver { to, from, payload } => self.deliver(to, from, payload),
            What::CpuFree { node } => self.cpu_free(node),
            What::WakeRaw { node, timer } => self.wake_raw(node, timer),
            What::DeliverRaw {
                node,
                from,
                to,
                payload,
            } => self.deliver_raw(node, from, to, payload),
            What::Wake { node: id } => {
                let node = &mut self.nodes[id];
                if !node.alarm.fire(now) {
                    self.world.counts.stale_wakes += 1;
                    return; // superseded by an earlier wake-up
                }
                self.world.counts.wakes += 1;
                let Some(endpoint) = node.endpoint.as_mut() else {
                    return;
                };
                endpoint.handle_timeout(node.clock.instant(now));
                drive(id, node, &mut self.world);
            }
            What::Join { node: id, generation } => {
                let node = &mut self.nodes[id];
                let App::Client(app) = &node.app else { return };
                if app.generation != generation || !matches!(app.state, ClientState::Waiting) {
                    return;
                }
                start_attempt(id, node, &mut self.world);
            }
            What::Fault(action) => self.fault(action),
            What::Sample => {
                self.sample();
                let interval = self.world.scenario.report.sample_interval_ms * MILLI;
                self.world.push(now + interval, What::Sample);
            }
        }
    }

    /// Samples every client's path: estimated vs true RTT, jitter, loss, per preset.
    fn sample(&mut self) {
        let now = self.world.now;
        let servers = self.world.servers;
        let mut per_preset = vec![PresetSample::default(); self.world.metrics.presets.len()];
        for (c, path) in self.world.paths.iter_mut().enumerate() {
            let slot = &mut per_preset[path.preset];
            let (up, down) = (path.up.stats(), path.down.stats());
            slot.offered += (up.offered - path.last_up.offered) + (down.offered - path.last_down.offered);
            slot.dropped += dropped(&up) - dropped(&path.last_up) + dropped(&down) - dropped(&path.last_down);
            path.last_up = up;
            path.last_down = down;
            let truth = match (path.up_delay, path.down_delay) {
                ((us, un), (ds, dn)) if un > 0 && dn > 0 => {
                    Some((us / u128::from(un) + ds / u128::from(dn)) as f64 / 1e6)
                }
                _ => None,
            };
            path.up_delay = (0, 0);
            path.down_delay = (0, 0);
            let node = &self.nodes[servers + c];
            let (Some(endpoint), App::Client(app)) = (&node.endpoint, &node.app) else {
                continue;
            };
            let ClientState::Connected { conn, .. } = app.state else {
                continue;
            };
            let Some(stats) = endpoint.stats(conn) else {
                continue;
            };
            let hb = stats.heartbeat;
            if hb.rtt_samples == 0 {
                continue;
            }
            slot.rtt_sum += hb.srtt_ms;
            slot.rtt_n += 1;
            self.world.metrics.record_path_sample(truth, &stats);
        }
        let t = now as f64 / 1e9;
        for (p, sample) in per_preset.into_iter().enumerate() {
            let rtt = (sample.rtt_n > 0).then(|| sample.rtt_sum / sample.rtt_n as f64);
            let loss = (sample.offered > 0).then(|| 100.0 * sample.dropped as f64 / sample.offered as f64);
            self.world.metrics.record_series(p, t, rtt, loss);
        }
    }

    /// The report so far (complete once [`Sim::finished`]). `wall_seconds` and `speed` are
    /// left at 0 for the caller, who owns the wall clock.
    pub fn report(&self) -> Report {
        let servers = self.world.servers;
        let mut report = self
            .world
            .metrics
            .report(&self.world.scenario, self.world.seed, self.world.now);
        report.trace_sha256 = self.trace_sha256();
        report.datagrams = self.world.datagrams;
        let (mut offered, mut lost) = (0, 0);
        for path in &self.world.paths {
            for stats in [path.up.stats(), path.down.stats()] {
                offered += stats.offered;
                lost += dropped(&stats);
            }
        }
        report.loss.link_ratio = if offered == 0 {
            0.0
        } else {
            lost as f64 / offered as f64
        };
        for node in &self.nodes[..servers] {
            if let Some(endpoint) = &node.endpoint {
                if let Some(scheduler) = endpoint.scheduler() {
                    report.ticks.absorb(&scheduler.stats());
                }
                if self.world.scenario.topology.spectators_per_server > 0 {
                    let refusals = endpoint.endpoint_stats().message_refusals;
                    report.traffic.refused_not_permitted += refusals.not_permitted;
                    report.traffic.refused_rate_limited += refusals.rate_limited;
                }
            }
            if let (App::Server(ServerApp { vs: Some(gs), .. }), Some(vs)) = (&node.app, &mut report.vs) {
                vs.authorised_at_end += usize::from(gs.authorised());
                let open_gap = (self.world.now - gs.last_ticket) as f64 / MILLI as f64;
                vs.max_ticket_gap_ms = vs.max_ticket_gap_ms.max(open_gap);
            }
        }
        let mut compression = (CompressionStats::default(), CompressionStats::default());
        for (index, node) in self.nodes.iter().enumerate() {
            if let (Some(endpoint), App::Server(_) | App::Client(_)) = (&node.endpoint, &node.app) {
                let side = if index < servers {
                    &mut compression.0
                } else {
                    &mut compression.1
                };
                *side += endpoint.endpoint_stats().compression;
            }
        }
        report.compression = CompressionReport::from_stats(compression.0, compression.1);
        for node in &self.nodes[servers..] {
            if let (Some(endpoint), App::Client(app)) = (&node.endpoint, &node.app) {
                if let ClientState::Connected { conn, .. } = app.state {
                    if let Some(stats) = endpoint.stats(conn) {
                        report.reassembly.absorb(&stats.reassembly);
                    }
                }
            }
        }
        self.finish_hostile(&mut report);
        report.finish();
        report
    }

    /// SHA-256 over every datagram so far (time, source, destination, bytes, fate), hex.
    pub fn trace_sha256(&self) -> String {
        let digest = self.world.trace.clone().finalize();
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The sessions recorded so far ([`SimOptions::record`]), in the order they started.
    pub fn recordings(&self) -> &[SimRecording] {
        self.world.recordings.as_ref().map_or(&[], |r| &r.sessions)
    }

    /// The protected receipts the game servers received so far ([`SimOptions::record`]).
    pub fn receipts(&self) -> Vec<ProtectedReceipt> {
        self.receipt_records().iter().map(|r| r.receipt.clone()).collect()
    }

    /// [`Sim::receipts`] with the game server and digest of each.
    pub fn receipt_records(&self) -> &[SimReceipt] {
        self.world.recordings.as_ref().map_or(&[], |r| &r.receipts)
    }

    /// The verification server's receipt-signing public key and its key id, if the scenario
    /// has a verification server.
    pub fn vs_public_key(&self) -> Option<(u32, ed25519_dalek::VerifyingKey)> {
        self.world.vs.as_ref()?;
        Some((vs::VS_KEY_ID, vs::vs_key(self.world.seed).verifying_key()))
    }

    /// The keys the verification server's receipts verify against, if the scenario has one.
    pub fn vs_keys(&self) -> Option<VsKeys> {
        self.world.vs.as_ref().map(|vs| vs.keys.clone())
    }

    /// The TLS key log collected when capturing (NSS key-log format), for Wireshark.
    pub fn key_log(&self) -> Option<String> {
        self.world.key_log.as_ref().map(|k| k.contents())
    }

    /// Finishes the pcap capture, returning its sink.
    ///
    /// # Errors
    /// The first I/O error met while capturing, or one flushing now.
    pub fn finish_capture(&mut self) -> Result<Option<Box<dyn Write>>, std::io::Error> {
        if let Some(e) = self.world.capture_error.take() {
            return Err(e);
        }
        self.world.capture.take().map(|c| c.finish()).transpose()
    }
}

impl Recordings {
    fn keep(&mut self, node: usize, chunk: RecordedChunk) {
        let key = (node, chunk.session_id);
        let at = *self.index.entry(key).or_insert_with(|| {
            self.sessions.push(SimRecording {
                server: node,
                session_id: chunk.session_id,
                bytes: Vec::new(),
                complete: false,
            });
            self.sessions.len() - 1
        });
        let session = &mut self.sessions[at];
        session.bytes.extend_from_slice(&chunk.bytes);
        session.complete |= chunk.last;
    }
}

impl World {
    /// Keeps a receipt a game server received, when recording.
    pub(super) fn keep_receipt(&mut self, gs_id: u64, digest: TranscriptDigest, receipt: ProtectedReceipt) {
        if let Some(recordings) = &mut self.recordings {
            recordings.receipts.push(SimReceipt {
                gs_id,
                digest,
                receipt,
            });
        }
    }
}

#[derive(Debug, Clone, Default)]
struct PresetSample {
    offered: u64,
    dropped: u64,
    rtt_sum: f64,
    rtt_n: u64,
}

fn dropped(stats: &LinkStats) -> u64 {
    stats.lost + stats.queue_dropped + stats.mtu_dropped
}

/// Game server `index`'s address: `10.0.0.x`, port [`SERVER_PORT`].
fn server_addr(index: usize) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(
        Ipv4Addr::new(10, 0, 0, index as u8 + 1),
        SERVER_PORT,
    ))
}

/// Client `index`'s address in incarnation `incarnation`: `10.x.y.z`, port 40000 + incarnation.
fn client_addr(index: usize, incarnation: u64) -> SocketAddr {
    let n = index as u32 + 1;
    let ip = Ipv4Addr::new(10, 1 + (n >> 16) as u8, (n >> 8) as u8, n as u8);
    SocketAddr::V4(SocketAddrV4::new(ip, 40_000u16.wrapping_add(incarnation as u16)))
}

impl Fault {
    fn target(&self) -> &Target {
        match self {
            Fault::Partition { target, .. }
            | Fault::ClockOffset { target, .. }
            | Fault::ClockDrift { target, .. }
            | Fault::Crash { target, .. }
            | Fault::Flood { target, .. } => target,
        }
    }
}

/// After any input, in the drive contract's order until quiet: the behaviour's timers, the
/// endpoint's events, ticks, then transmits; then arms the next wake-up.
fn drive(id: usize, node: &mut Node, world: &mut World) {
    let now = world.now;
    let local = node.clock.instant(now);
    let mut buf = std::mem::take(&mut world.buf);
    let mut idle = Idle;
    while let Some(endpoint) = node.endpoint.as_mut() {
        let behaviour = node.app.behaviour().unwrap_or(&mut idle);
        let mut net = Net::new(world, id, local, &mut node.rng);
        behaviour.handle_time(endpoint, &mut net);
        let mut busy = false;
        while let Some(event) = endpoint.poll_event() {
            busy = true;
            behaviour.handle_event(endpoint, &mut net, event);
        }
        busy |= behaviour.run_ticks(endpoint, &mut net);
        while let Some(transmit) = endpoint.poll_transmit(local, &mut buf) {
            busy = true;
            world.route(id, node.addr, transmit.destination, &buf[..transmit.size]);
        }
        if !busy {
            break;
        }
    }
    world.buf = buf;
    let Some(endpoint) = node.endpoint.as_mut() else {
        return;
    };
    while let Some(chunk) = endpoint.poll_recorded() {
        if let Some(recordings) = &mut world.recordings {
            recordings.keep(id, chunk);
        }
    }
    let mut deadline = endpoint.poll_timeout();
    let app_deadline = node.app.behaviour().and_then(|b| b.poll_timeout(endpoint));
    if let Some(at) = app_deadline {
        deadline = Some(deadline.map_or(at, |d| d.min(at)));
    }
    if let Some(deadline) = deadline {
        let at = node.clock.virtual_at(deadline, now);
        world.arm(id, node, at);
    }
}
