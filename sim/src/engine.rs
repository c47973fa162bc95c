//! The discrete-event engine: virtual time in integer nanoseconds, nodes, and [`Link`]s between
//! them, run in parallel windows of virtual time.
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
//! The engine is itself sans-IO: no wall clock, no `HashMap`; every random choice comes from the
//! run's seed through [`derive()`]. Each datagram a node emits is routed through its path's link
//! (kept by the sending node, with its own random streams) and recorded in the sending node's
//! trace hash with its fate; [`Sim::trace_sha256`] combines the nodes' hashes in node order, so
//! two runs agree on the hash exactly when they agree on every packet.
//!
//! **Threads.** The run is a conservative synchronous parallel simulation. The nodes are split
//! once, by estimated cost, into contiguous groups — eight per thread of
//! [`SimOptions::threads`] — each with its own event queue. Time advances in windows no
//! longer than the *lookahead* — the smallest delay any link can give a datagram between two
//! nodes (the lower bound of its latency distribution; jitter, reordering and queueing only
//! add) — so nothing sent in a window arrives within it: the groups process their nodes'
//! events of a window independently, the threads taking them one at a time (so a thread whose
//! groups were cheap takes more), and the datagrams they sent each other are handed over at
//! the barrier after it. Each node's events are ordered by `(time, creating node, that node's
//! sequence)`, never by when they reached its queue, and metrics merge exactly (integer sums,
//! maxima, unions), so the split — and so the number of threads — changes nothing but the
//! wall time. Faults and path samples act at barriers; a `run_until` step ending inside a
//! window leaves it open for the next. With a zero lookahead (a spoofed flood) each window is
//! a single instant, run on one thread, as is a window after one with too few events to be
//! worth sharing.
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
use crate::report::{CompressionReport, Metrics, ParallelReport, Report, Side};
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
use raw_node::{RawSlot, RawTimer, RawTransmit};
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
    /// Threads to run windows on (0 and 1: the calling thread only; at most the machine's
    /// available parallelism run at once, each taking groups of nodes in turn from a split
    /// made for this many). Results do not depend on it.
    pub threads: usize,
}

impl std::fmt::Debug for SimOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimOptions")
            .field("capture", &self.capture.is_some())
            .field("duration", &self.duration)
            .field("record", &self.record)
            .field("threads", &self.threads)
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

/// A client's path to its server: its preset, partition counters and fault history. The links
/// themselves are kept by the nodes that send on them ([`LinkEnd`]); every group of nodes has
/// a copy of this state, changed only at barriers.
#[derive(Debug, Clone)]
pub(crate) struct Path {
    pub(crate) preset: usize,
    cut_up: u32,
    cut_down: u32,
    /// Faults currently affecting this client's session (cuts, its or its server's crash).
    pub(crate) faults_active: u32,
    /// Start of the current (or, once cleared, the last) faulted period.
    pub(crate) fault_since: Option<Nanos>,
    /// When the last fault cleared.
    pub(crate) fault_cleared: Option<Nanos>,
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

/// One direction of a client's path, kept by the node that sends on it, with the one-way
/// delays it gave since the last sample.
#[derive(Debug)]
pub(crate) struct LinkEnd {
    pub(crate) link: Link,
    /// One-way delays given since the last sample: (sum ns, count).
    pub(crate) delay: (u128, u64),
    /// The link's counters at the last sample.
    pub(crate) last: LinkStats,
}

impl LinkEnd {
    fn new(link: Link) -> Self {
        Self {
            link,
            delay: (0, 0),
            last: LinkStats::default(),
        }
    }
}

/// What a node sends through, and the hash of what it sent.
#[derive(Debug)]
struct Wires {
    /// The node's trace: every datagram it sent, with its fate, and its receive-queue drops.
    trace: Sha256,
    /// A client: its uplink. A game server: the downlink to each of its clients, in client
    /// order. The verification server: the downlink to each game server.
    links: Vec<LinkEnd>,
    /// A game server: its uplink to the verification server.
    vs_up: Option<Link>,
    /// A game server: the downlinks to the raw nodes that reach it over links, by raw node id.
    raw_down: Vec<(usize, Link)>,
}

impl Wires {
    fn new(links: Vec<LinkEnd>) -> Self {
        Self {
            trace: Sha256::new(),
            links,
            vs_up: None,
            raw_down: Vec::new(),
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
    wires: Wires,
}

/// A datagram one node sent another during a window, handed over at the barrier after it.
#[derive(Debug)]
struct Sent {
    at: Nanos,
    /// The sending node (raw nodes after the nodes with endpoints) and its event sequence.
    origin: (u32, u64),
    what: What,
}

/// A datagram sent during a window, for the pcap capture (written in order at the barrier).
#[derive(Debug)]
struct Captured {
    at: Nanos,
    src: usize,
    from: SocketAddr,
    to: SocketAddr,
    bytes: Vec<u8>,
}

/// One group of nodes' view of the run: its event queue, what its nodes sent and measured,
/// and a copy of the state they read but change only at barriers (addresses, partitions,
/// fault history), so that groups never share anything mutable while a window runs.
struct World {
    seed: u64,
    now: Nanos,
    queue: Queue,
    servers: usize,
    clients_per_server: usize,
    addrs: BTreeMap<SocketAddr, usize>,
    paths: Vec<Path>,
    datagrams: u64,
    /// Datagrams of this window, when capturing.
    capture: Option<Vec<Captured>>,
    key_log: Option<Arc<KeyLogBuffer>>,
    issuer: Arc<TicketIssuer>,
    scenario: Arc<Scenario>,
    metrics: Metrics,
    buf: Vec<u8>,
    counts: EngineCounts,
    /// The verification server, if the scenario has one.
    vs: Option<VsNet>,
    /// Raw node addresses → raw node id.
    raw_addrs: BTreeMap<SocketAddr, usize>,
    /// Per raw node: whether it sends from spoofed sources (else over links).
    raw_spoofed: Vec<bool>,
    /// The first raw node's actor number (the number of nodes with endpoints).
    raw_base: usize,
    /// Per actor (node, then raw node): events it created so far, to order them.
    seqs: Vec<u64>,
    /// What raw nodes sent during their current input, waiting to be routed.
    outbox: Vec<RawTransmit>,
    /// Recent legitimate client-to-server datagrams, kept when a raw node overhears them.
    overheard: Option<VecDeque<Vec<u8>>>,
    /// Client-to-server datagrams of this window, when a raw node overhears: (time, client).
    heard: Vec<(Nanos, usize, Vec<u8>)>,
    /// Datagrams for other nodes, sent during this window.
    sent: Vec<Sent>,
    /// Whether sessions are recorded ([`SimOptions::record`]).
    recording: bool,
    /// Recording chunks of this window, by game server node.
    recorded: Vec<(usize, RecordedChunk)>,
    /// Receipts of this window.
    receipts: Vec<SimReceipt>,
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
    /// Queues an event created by actor `origin` (a node, or `raw_base` + a raw node) for one
    /// of this group's actors.
    fn push_from(&mut self, origin: usize, at: Nanos, what: What) {
        let seq = &mut self.seqs[origin];
        *seq += 1;
        self.queue.push(at, (origin as u32, *seq), what);
    }

    /// Hashes one datagram into `trace` (time, source, destination, bytes) and captures it.
    fn record(&mut self, src: usize, trace: &mut Sha256, from: SocketAddr, to: SocketAddr, bytes: &[u8]) {
        let now = self.now;
        trace.update(now.to_be_bytes());
        hash_addr(trace, from);
        hash_addr(trace, to);
        trace.update((bytes.len() as u32).to_be_bytes());
        trace.update(bytes);
        if let Some(capture) = &mut self.capture {
            capture.push(Captured {
                at: now,
                src,
                from,
                to,
                bytes: bytes.to_vec(),
            });
        }
    }

    /// A datagram nobody can route: hashed as such and counted.
    fn no_route(&mut self, trace: &mut Sha256) {
        trace.update([0xff]);
        self.metrics.no_route += 1;
    }

    /// Routes one datagram from node `src` through its wires, hashing it with its fate.
    fn route(&mut self, src: usize, wires: &mut Wires, from: SocketAddr, to: SocketAddr, bytes: &[u8]) {
        let now = self.now;
        self.datagrams += 1;
        self.record(src, &mut wires.trace, from, to, bytes);
        let Some(&dst) = self.addrs.get(&to) else {
            self.route_raw(src, wires, from, to, bytes);
            return;
        };
        if let Some(vs) = &self.vs {
            if src == vs.node || dst == vs.node {
                self.route_vs(src, dst, wires, from, bytes);
                return;
            }
        }
        let uplink = src >= self.servers;
        let Some(client) = (if uplink { src } else { dst }).checked_sub(self.servers) else {
            // Game servers do not talk to each other.
            self.no_route(&mut wires.trace);
            return;
        };
        // A client's only link is its uplink; a game server's links go to its clients.
        let end = if uplink {
            wires.links.first_mut()
        } else {
            client
                .checked_sub(src * self.clients_per_server)
                .and_then(|i| wires.links.get_mut(i))
        };
        let Some(end) = end else {
            self.no_route(&mut wires.trace);
            return;
        };
        if uplink {
            self.overhear(src, bytes);
            self.metrics.wire.bytes_up += bytes.len() as u64;
            self.metrics.wire.datagrams_up += 1;
        } else {
            self.metrics.wire.bytes_down += bytes.len() as u64;
            self.metrics.wire.datagrams_down += 1;
        }
        let path = &self.paths[client];
        let cut = if uplink { path.cut_up } else { path.cut_down } > 0;
        if cut {
            wires.trace.update([0xfe]);
            self.metrics.partition_dropped += 1;
            return;
        }
        let outcome = end.link.transmit(now, bytes.to_vec());
        for delivery in outcome.deliveries.iter().filter(|d| !d.duplicate) {
            end.delay.0 += u128::from(delivery.at.saturating_sub(now));
            end.delay.1 += 1;
        }
        self.enqueue(src, &mut wires.trace, outcome, |payload| What::Deliver {
            to: dst,
            from,
            payload,
        });
    }

    /// Routes one datagram between a game server and the verification server.
    fn route_vs(&mut self, src: usize, dst: usize, wires: &mut Wires, from: SocketAddr, bytes: &[u8]) {
        let vs = self.vs.as_ref().expect("checked by the caller");
        let uplink = dst == vs.node;
        let server = if uplink { src } else { dst };
        let link = if uplink {
            wires.vs_up.as_mut()
        } else {
            wires.links.get_mut(server).map(|end| &mut end.link)
        };
        let (Some(&(cut_up, cut_down)), Some(link)) = (vs.cuts.get(server), link) else {
            // Only game servers have a path to the VS.
            self.no_route(&mut wires.trace);
            return;
        };
        if (if uplink { cut_up } else { cut_down }) > 0 {
            wires.trace.update([0xfe]);
            self.metrics.partition_dropped += 1;
            return;
        }
        let outcome = link.transmit(self.now, bytes.to_vec());
        self.enqueue(src, &mut wires.trace, outcome, |payload| What::Deliver {
            to: dst,
            from,
            payload,
        });
    }

    /// Hashes a link's verdict on one datagram from actor `src` into `trace` and sends its
    /// deliveries, each as the event `deliver` makes of its payload.
    fn enqueue(
        &mut self,
        src: usize,
        trace: &mut Sha256,
        outcome: crate::link::Outcome,
        deliver: impl Fn(Vec<u8>) -> What,
    ) {
        if let Some(reason) = outcome.dropped {
            trace.update([0, drop_code(reason)]);
        }
        for delivery in outcome.deliveries {
            trace.update([1, u8::from(delivery.corrupted), u8::from(delivery.duplicate)]);
            trace.update(delivery.at.to_be_bytes());
            self.send(src, delivery.at, deliver(delivery.payload));
        }
    }

    /// Sends actor `src`'s event `what`, due at `at`, to another node (at the next barrier).
    fn send(&mut self, src: usize, at: Nanos, what: What) {
        let seq = &mut self.seqs[src];
        *seq += 1;
        self.sent.push(Sent {
            at,
            origin: (src as u32, *seq),
            what,
        });
    }

    /// Arms `node`'s wake-up at virtual time `at` unless an earlier one is armed.
    fn arm(&mut self, id: usize, node: &mut Node, at: Nanos) {
        if let Some(at) = node.alarm.arm(self.now, at) {
            self.push_from(id, at, What::Wake { node: id });
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
            self.metrics
                .record_disconnect(side, reason, true, None, detail, self.now);
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
            .record_disconnect(side, reason, explained, delay, detail, now);
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
    /// One per group of nodes (per thread).
    groups: Vec<World>,
    /// Group `g` holds nodes `bounds[g]..bounds[g + 1]`.
    bounds: Vec<usize>,
    /// The group holding every raw node.
    raw_group: usize,
    /// Nodes with an endpoint: game servers, then clients, then the verification server.
    nodes: Vec<Node>,
    /// Raw nodes: floods, then half-open attackers.
    raw: Vec<RawSlot>,
    /// Faults and path samples, which act at barriers.
    global: Queue,
    global_seq: u64,
    /// What the barriers measured (faults, path samples); the groups' metrics add to it.
    metrics: Metrics,
    now: Nanos,
    end: Nanos,
    lookahead: Nanos,
    /// Threads that run a window's groups (1: the calling thread alone): those asked for, at
    /// most the machine's available parallelism.
    threads: usize,
    /// The last instant of the window under way when a `run_until` step ended inside it: the
    /// next step goes on with it, so that steps do not cut windows short.
    open: Option<Nanos>,
    /// Whether the window under way is shared between the threads (see
    /// [`MIN_SHARED_EVENTS`]).
    shared: bool,
    /// Events processed when the window under way opened.
    events_at_open: u64,
    parallel: ParallelReport,
    capture: Option<PcapWriter<Box<dyn Write>>>,
    capture_error: Option<std::io::Error>,
    recordings: Option<Recordings>,
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim")
            .field("now", &self.now)
            .field("nodes", &self.nodes.len())
            .field("raw_nodes", &self.raw.len())
            .field("groups", &self.groups.len())
            .field(
                "queued",
                &self.groups.iter().map(|w| w.queue.len()).sum::<usize>(),
            )
            .finish()
    }
}

/// A run's lookahead, in ns: the smallest delay any datagram between two nodes can take —
/// the least [`LinkSpec::min_delay_ns`](crate::link::LinkSpec::min_delay_ns) over the links
/// in use (client paths, the verification server's, the half-open attackers'), and 0 with a
/// flood (spoofed datagrams arrive at once). [`Nanos::MAX`] when no link is in use.
pub fn lookahead(scenario: &Scenario) -> Nanos {
    let mut names: Vec<&str> = Vec::new();
    if scenario.clients() > 0 {
        names.extend(
            scenario
                .topology
                .mix
                .iter()
                .filter(|entry| entry.weight > 0)
                .map(|entry| entry.preset.as_str()),
        );
    }
    if let Some(vs) = &scenario.vs {
        names.push(&vs.link);
    }
    if let Some(h) = &scenario.half_open {
        names.push(&h.link);
    }
    let links = names
        .into_iter()
        .filter_map(|name| scenario.link(name))
        .map(|spec| spec.min_delay_ns());
    let flood = scenario.faults.iter().any(|f| matches!(f, Fault::Flood { .. }));
    links.chain(flood.then_some(0)).min().unwrap_or(Nanos::MAX)
}

/// Splits `costs` (one per node, in node order) into at most `parts` contiguous ranges of
/// about equal total cost, none empty: the bounds, `0` first and `costs.len()` last. Each
/// range aims at an equal share of the cost the earlier ones left, so a node heavier than a
/// share (a game server) takes a range alone and the others split the rest evenly.
fn split(costs: &[f64], parts: usize) -> Vec<usize> {
    let parts = parts.clamp(1, costs.len().max(1));
    let mut bounds = vec![0];
    let mut remaining: f64 = costs.iter().sum();
    let mut i = 0;
    for group in 0..parts - 1 {
        let later = parts - group - 1;
        let target = remaining / (later + 1) as f64;
        let mut acc = costs[i];
        i += 1;
        // Take the next node while that brings the range nearer its share, leaving a node
        // for each later range.
        while costs.len() - i > later && acc + costs[i] / 2.0 <= target {
            acc += costs[i];
            i += 1;
        }
        remaining -= acc;
        bounds.push(i);
    }
    bounds.push(costs.len());
    bounds
}

/// Groups of nodes per thread: more groups than threads, taken by the threads one after
/// another within each window (the heaviest, holding the game server, first), so that a
/// thread that finishes early — its groups were cheap in this window, or the other thread was
/// descheduled — takes the next group instead of waiting at the barrier.
const GROUPS_PER_THREAD: usize = 8;

/// A window is shared between the threads only when the one before it held at least this
/// many events: starting threads and meeting at the barrier costs tens of µs, a few events'
/// work, so a short lookahead (a LAN's 0.2 ms) with little traffic runs faster on one thread.
/// The choice changes nothing but the wall time.
const MIN_SHARED_EVENTS: u64 = 64;

/// Estimated relative cost of each node, a client's being 1: a game server handles every one
/// of its clients' datagrams, which costs it (measured on `scale-1k`) about 0.85 of what its
/// clients spend together.
fn costs(servers: usize, clients_per_server: usize, clients: usize, vs: bool) -> Vec<f64> {
    let mut costs = vec![1.0 + 0.85 * clients_per_server as f64; servers];
    costs.resize(servers + clients, 1.0);
    if vs {
        costs.push(servers as f64);
    }
    costs
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
        let per_server = scenario.topology.clients_per_server;
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
        let issuer = Arc::new(TicketIssuer::new(
            ISSUER_KEY_ID,
            SigningKey::from_bytes(&derive(seed, "issuer", 0, 0)),
        ));
        let capture = options.capture.map(PcapWriter::new).transpose()?;
        let key_log = capture.as_ref().map(|_| KeyLogBuffer::new());
        let end = options
            .duration
            .map_or((scenario.duration_s * 1e9) as Nanos, |d| d.as_nanos() as Nanos);
        let mut paths = Vec::with_capacity(clients);
        let mut client_presets = Vec::with_capacity(clients);
        let mut ups = Vec::with_capacity(clients);
        let mut downs = Vec::with_capacity(clients);
        for c in 0..clients {
            let name = &presets[c % presets.len()];
            let spec = scenario.link(name).expect("validated");
            let preset = preset_names.iter().position(|n| n == name).expect("listed");
            client_presets.push(preset);
            ups.push(LinkEnd::new(Link::new(
                &spec,
                derive(seed, "link/up", c as u64, 0),
            )));
            downs.push(LinkEnd::new(Link::new(
                &spec,
                derive(seed, "link/down", c as u64, 0),
            )));
            paths.push(Path {
                preset,
                cut_up: 0,
                cut_down: 0,
                faults_active: 0,
                fault_since: None,
                fault_cleared: None,
            });
        }
        let scenario = Arc::new(scenario);
        let metrics = Metrics::new(&scenario, preset_names, &client_presets);
        let mut world = World {
            seed,
            now: 0,
            queue: Queue::default(),
            servers,
            clients_per_server: per_server,
            addrs: BTreeMap::new(),
            paths,
            datagrams: 0,
            capture: capture.as_ref().map(|_| Vec::new()),
            key_log,
            issuer,
            scenario: scenario.clone(),
            metrics: metrics.clone(),
            buf: Vec::with_capacity(1500),
            counts: EngineCounts::default(),
            vs: None,
            raw_addrs: BTreeMap::new(),
            raw_spoofed: Vec::new(),
            raw_base: 0,
            seqs: Vec::new(),
            outbox: Vec::new(),
            overheard: None,
            heard: Vec::new(),
            sent: Vec::new(),
            recording: options.record,
            recorded: Vec::new(),
            receipts: Vec::new(),
        };
        let mut nodes = Vec::with_capacity(servers + clients);
        let mut downs = downs.into_iter();
        for s in 0..servers {
            let addr = server_addr(s);
            let snapshot_every = u64::from(scenario.traffic.tick_rate_hz / scenario.traffic.snapshot_rate_hz);
            let app = App::Server(ServerApp {
                gs_id: s as u64 + 1,
                sessions: BTreeMap::new(),
                snapshot_every,
                vs: None,
            });
            let links = downs.by_ref().take(per_server).collect();
            nodes.push(Self::make_node(&world, epoch, s, addr, app, links));
        }
        for (c, up) in ups.into_iter().enumerate() {
            let id = servers + c;
            let addr = client_addr(c, 0);
            let app = App::Client(ClientApp {
                index: c,
                server: c / per_server,
                state: ClientState::Waiting,
                backoff: Backoff::new(scenario.endpoint.retry.clone()),
                generation: 0,
                reconnecting: false,
                spectator: scenario.is_spectator(c),
            });
            nodes.push(Self::make_node(&world, epoch, id, addr, app, vec![up]));
        }
        if scenario.vs.is_some() {
            let id = servers + clients;
            let vs = VsNet::new(&scenario, id, &vs::vs_key(seed), [0; 32]);
            let (ups, downs) = vs::links(&scenario, seed);
            for (node, up) in nodes.iter_mut().zip(ups) {
                node.wires.vs_up = Some(up);
            }
            let links = downs.into_iter().map(LinkEnd::new).collect();
            let node = Self::make_node(&world, epoch, id, VS_ADDR, App::Vs(None), links);
            let identity = node.identity.verifying_key().to_bytes();
            world.vs = Some(VsNet { identity, ..vs });
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
        world.raw_base = nodes.len();
        world.seqs = vec![0; nodes.len() + raw.len()];
        for (id, node) in nodes.iter().enumerate() {
            world.addrs.insert(node.addr, id);
        }
        let threads = options.threads.max(1);
        let parts = if threads > 1 {
            threads * GROUPS_PER_THREAD
        } else {
            1
        };
        let bounds = split(&costs(servers, per_server, clients, scenario.vs.is_some()), parts);
        let groups = bounds.len() - 1;
        let threads = threads.min(groups);
        // More threads than cores only adds waits at the barriers: a thread descheduled in
        // the middle of a group holds every other one up.
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let mut sim = Self {
            groups: Vec::with_capacity(groups),
            bounds,
            raw_group: groups - 1,
            nodes,
            raw: Vec::with_capacity(raw.len()),
            global: Queue::default(),
            global_seq: 0,
            metrics,
            now: 0,
            end,
            lookahead: lookahead(&scenario),
            threads: threads.min(cores),
            open: None,
            shared: false,
            events_at_open: 0,
            parallel: ParallelReport {
                threads,
                ..ParallelReport::default()
            },
            capture,
            capture_error: None,
            recordings: options.record.then(Recordings::default),
        };
        for _ in 1..groups {
            let copy = World {
                queue: Queue::default(),
                capture: world.capture.as_ref().map(|_| Vec::new()),
                key_log: world.key_log.clone(),
                issuer: world.issuer.clone(),
                scenario: world.scenario.clone(),
                metrics: world.metrics.clone(),
                buf: Vec::with_capacity(1500),
                vs: world.vs.clone(),
                addrs: world.addrs.clone(),
                paths: world.paths.clone(),
                raw_addrs: BTreeMap::new(),
                seqs: world.seqs.clone(),
                outbox: Vec::new(),
                overheard: None,
                heard: Vec::new(),
                sent: Vec::new(),
                recorded: Vec::new(),
                receipts: Vec::new(),
                raw_spoofed: Vec::new(),
                ..world
            };
            sim.groups.push(copy);
        }
        sim.groups.insert(0, world);
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
            let at = window * c as Nanos / clients.max(1) as Nanos + jitter;
            let group = sim.group_of(id);
            sim.groups[group].push_from(
                id,
                at,
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
        sim.push_global(interval, What::Sample);
        sim.barrier();
        Ok(sim)
    }

    fn make_node(
        world: &World,
        epoch: Instant,
        id: usize,
        addr: SocketAddr,
        app: App,
        links: Vec<LinkEnd>,
    ) -> Node {
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
            wires: Wires::new(links),
        }
    }

    /// The group holding node `id`.
    fn group_of(&self, id: usize) -> usize {
        self.bounds.partition_point(|&b| b <= id) - 1
    }

    /// Queues a fault or a path sample for the barrier at `at`.
    fn push_global(&mut self, at: Nanos, what: What) {
        self.global_seq += 1;
        self.global.push(at, (u32::MAX, self.global_seq), what);
    }

    /// Builds node `id`'s endpoint for its current incarnation.
    fn start_node(&mut self, id: usize) -> Result<(), SimError> {
        let group = self.group_of(id);
        start_node(&mut self.groups[group], &mut self.nodes[id], id)
    }

    /// The groups' views, each with its own nodes (and the raw nodes, for the last group).
    fn parts(&mut self) -> Vec<Part<'_>> {
        let mut parts = Vec::with_capacity(self.groups.len());
        let mut nodes = &mut self.nodes[..];
        let mut raw = Some(&mut self.raw[..]);
        for (g, world) in self.groups.iter_mut().enumerate() {
            let (mine, rest) = nodes.split_at_mut(self.bounds[g + 1] - self.bounds[g]);
            nodes = rest;
            let raw = if g == self.raw_group {
                raw.take().unwrap_or_default()
            } else {
                Default::default()
            };
            parts.push(Part {
                world,
                nodes: Slots {
                    first: self.bounds[g],
                    items: mine,
                },
                raw: Slots { first: 0, items: raw },
            });
        }
        parts
    }
}

/// Builds `node`'s (node `id`'s) endpoint for its current incarnation.
fn start_node(world: &mut World, node: &mut Node, id: usize) -> Result<(), SimError> {
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
            let mut endpoint = Endpoint::builder(config, secrets, node.identity.clone(), node.clock.wall())
                .crypto(crypto)
                .trust_issuer(ISSUER_KEY_ID, world.issuer.verifying_key())
                .server(app.gs_id, now)?;
            if world.recording {
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

/// Items `first..first + items.len()` of a table, indexed by their number in the table.
struct Slots<'a, T> {
    first: usize,
    items: &'a mut [T],
}

impl<T> std::ops::Index<usize> for Slots<'_, T> {
    type Output = T;

    fn index(&self, id: usize) -> &T {
        &self.items[id - self.first]
    }
}

impl<T> std::ops::IndexMut<usize> for Slots<'_, T> {
    fn index_mut(&mut self, id: usize) -> &mut T {
        &mut self.items[id - self.first]
    }
}

/// One group's share of a run while a window runs: its world and its nodes.
struct Part<'a> {
    world: &'a mut World,
    nodes: Slots<'a, Node>,
    raw: Slots<'a, RawSlot>,
}

impl Part<'_> {
    /// Processes this group's events due at or before `last`.
    fn run(&mut self, last: Nanos) {
        while self.world.queue.peek_time().is_some_and(|at| at <= last) {
            let Some((at, what)) = self.world.queue.pop() else {
                break;
            };
            self.world.now = at;
            self.world.counts.events += 1;
            self.handle(what);
        }
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
                drive(id, node, self.world);
            }
            What::Join { node: id, generation } => {
                let node = &mut self.nodes[id];
                let App::Client(app) = &node.app else { return };
                if app.generation != generation || !matches!(app.state, ClientState::Waiting) {
                    return;
                }
                start_attempt(id, node, self.world);
            }
            What::Fault(_) | What::Sample => unreachable!("handled at barriers"),
        }
    }
}

impl Sim {
    /// Current virtual time, in nanoseconds.
    pub fn now(&self) -> Nanos {
        self.now
    }

    /// Virtual time at which the run ends, in nanoseconds.
    pub fn end(&self) -> Nanos {
        self.end
    }

    /// Whether the run has reached its end.
    pub fn finished(&self) -> bool {
        self.now >= self.end
    }

    /// Work counters of the engine so far.
    pub fn counts(&self) -> EngineCounts {
        let mut counts = EngineCounts::default();
        for w in &self.groups {
            counts.events += w.counts.events;
            counts.deliveries += w.counts.deliveries;
            counts.wakes += w.counts.wakes;
            counts.stale_wakes += w.counts.stale_wakes;
        }
        counts
    }

    /// Datagrams sent so far (all nodes, before link faults).
    pub fn datagrams(&self) -> u64 {
        self.groups.iter().map(|w| w.datagrams).sum()
    }

    /// Advances by `span` nanoseconds of virtual time (capped at the end).
    pub fn run_for(&mut self, span: Nanos) {
        self.run_until(self.now.saturating_add(span));
    }

    /// Processes every event due at or before `until` (capped at the end), then sets the clock
    /// to `until`.
    ///
    /// Windows: from the earliest pending event `t`, a window takes every event due before
    /// `t` + the lookahead, stopping short of the next fault or path sample; with a zero
    /// lookahead, the events at `t` alone. Faults and samples run at the barriers between
    /// windows. A window that `until` ends inside goes on in the next call (its barrier
    /// waits for its end), so the steps a caller takes do not change the windows.
    pub fn run_until(&mut self, until: Nanos) {
        let until = until.min(self.end);
        loop {
            let last = match self.open.take() {
                Some(last) => last,
                None => match self.next_window(until) {
                    Some(last) => last,
                    None => break,
                },
            };
            let stop = last.min(until);
            self.run_window(stop);
            if stop < last {
                self.open = Some(last);
                break;
            }
            self.barrier();
        }
        if until >= self.end && self.open.take().is_some() {
            self.barrier();
        }
        self.now = self.now.max(until);
        for w in &mut self.groups {
            w.now = self.now;
        }
    }

    /// Runs the faults and samples due before the next window, then opens it if it starts
    /// at or before `until`: its last instant.
    fn next_window(&mut self, until: Nanos) -> Option<Nanos> {
        loop {
            let next_node = self.groups.iter().filter_map(|w| w.queue.peek_time()).min();
            let next_global = self.global.peek_time();
            let t = next_node.into_iter().chain(next_global).min()?;
            if t > until {
                return None;
            }
            self.now = t;
            if next_global == Some(t) {
                self.global_step(t);
                continue;
            }
            let full = window_end(t, self.lookahead);
            let last = next_global.map_or(full, |g| full.min(g - 1));
            self.parallel.windows += 1;
            let events = self.counts().events;
            let previous = events - std::mem::replace(&mut self.events_at_open, events);
            self.shared = self.lookahead > 0 && self.threads > 1 && previous >= MIN_SHARED_EVENTS;
            if self.lookahead > 0 && self.threads > 1 && !self.shared {
                self.parallel.small_windows += 1;
            }
            if self.lookahead == 0 {
                self.parallel.sequential_windows += 1;
            } else if last == full {
                self.parallel.windows_lookahead_limited += 1;
            } else {
                self.parallel.windows_cut_short += 1;
            }
            return Some(last);
        }
    }

    /// Processes every group's events due at or before `stop`: in a shared window, the
    /// threads take the groups one at a time, in order, until none is left; else one group
    /// after another on the calling thread.
    fn run_window(&mut self, stop: Nanos) {
        let threads = if self.shared { self.threads } else { 1 };
        let mut parts = self.parts();
        if threads <= 1 {
            for part in &mut parts {
                part.run(stop);
            }
            return;
        }
        let next = std::sync::Mutex::new(parts.iter_mut());
        let work = || loop {
            let part = next
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .next();
            match part {
                Some(part) => part.run(stop),
                None => break,
            }
        };
        std::thread::scope(|scope| {
            for _ in 1..threads {
                scope.spawn(work);
            }
            work();
        });
    }

    /// Runs the faults and path samples due at `t`, then the barrier.
    fn global_step(&mut self, t: Nanos) {
        self.parallel.global_steps += 1;
        for w in &mut self.groups {
            w.now = t;
        }
        while self.global.peek_time() == Some(t) {
            let Some((_, what)) = self.global.pop() else { break };
            match what {
                What::Fault(action) => self.fault(action),
                What::Sample => {
                    self.sample();
                    let interval = self.groups[0].scenario.report.sample_interval_ms * MILLI;
                    self.push_global(t + interval, What::Sample);
                }
                _ => unreachable!("only faults and samples are global"),
            }
        }
        self.barrier();
    }

    /// After a window or a global step: hands every datagram sent to the node it is for, and
    /// writes the capture, recordings and overheard datagrams in a fixed order.
    fn barrier(&mut self) {
        let mut sent = Vec::new();
        let mut captured = Vec::new();
        let mut heard = Vec::new();
        let mut recorded = Vec::new();
        let mut receipts = Vec::new();
        for w in &mut self.groups {
            sent.append(&mut w.sent);
            if let Some(capture) = &mut w.capture {
                captured.append(capture);
            }
            heard.append(&mut w.heard);
            recorded.append(&mut w.recorded);
            receipts.append(&mut w.receipts);
        }
        for Sent { at, origin, what } in sent {
            let group = match &what {
                What::Deliver { to, .. } => self.group_of(*to),
                _ => self.raw_group,
            };
            self.groups[group].queue.push(at, origin, what);
        }
        if let Some(writer) = &mut self.capture {
            captured.sort_by_key(|c| (c.at, c.src));
            for c in captured {
                if let Err(e) = writer.write(c.at, c.from, c.to, &c.bytes) {
                    self.capture_error.get_or_insert(e);
                }
            }
        }
        if !heard.is_empty() {
            heard.sort_by_key(|(at, client, _)| (*at, *client));
            let recent = heard.len().saturating_sub(raw_node::OVERHEARD);
            for w in &mut self.groups {
                for (_, _, bytes) in &heard[recent..] {
                    w.overhear_merged(bytes);
                }
            }
        }
        if let Some(recordings) = &mut self.recordings {
            recorded.sort_by_key(|(node, _)| *node);
            for (node, chunk) in recorded {
                recordings.keep(node, chunk);
            }
            receipts.sort_by_key(|r| r.gs_id);
            recordings.receipts.append(&mut receipts);
        }
    }

    /// Samples every client's path: estimated vs true RTT, jitter, loss, per preset.
    fn sample(&mut self) {
        let now = self.now;
        let servers = self.groups[0].servers;
        let per_server = self.groups[0].clients_per_server;
        let mut per_preset = vec![PresetSample::default(); self.metrics.presets.len()];
        for (c, path) in self.groups[0].paths.iter().enumerate() {
            let slot = &mut per_preset[path.preset];
            let mut delays = [(0, 0); 2];
            for (d, end) in [(0, (servers + c, 0)), (1, (c / per_server, c % per_server))] {
                let end = &mut self.nodes[end.0].wires.links[end.1];
                let stats = end.link.stats();
                slot.offered += stats.offered - end.last.offered;
                slot.dropped += dropped(&stats) - dropped(&end.last);
                end.last = stats;
                delays[d] = std::mem::take(&mut end.delay);
            }
            let truth = match delays {
                [(us, un), (ds, dn)] if un > 0 && dn > 0 => {
                    Some((us / u128::from(un) + ds / u128::from(dn)) as f64 / 1e6)
                }
                _ => None,
            };
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
            self.metrics.record_path_sample(truth, &stats);
        }
        let t = now as f64 / 1e9;
        for (p, sample) in per_preset.into_iter().enumerate() {
            let rtt = (sample.rtt_n > 0).then(|| sample.rtt_sum / sample.rtt_n as f64);
            let loss = (sample.offered > 0).then(|| 100.0 * sample.dropped as f64 / sample.offered as f64);
            self.metrics.record_series(p, t, rtt, loss);
        }
    }

    /// Every group's metrics, merged with the barriers'.
    fn merged_metrics(&self) -> Metrics {
        let mut metrics = self.metrics.clone();
        for w in &self.groups {
            metrics.absorb(&w.metrics);
        }
        metrics
    }

    /// The report so far (complete once [`Sim::finished`]). `wall_seconds` and `speed` are
    /// left at 0 for the caller, who owns the wall clock.
    pub fn report(&self) -> Report {
        let world = &self.groups[0];
        let servers = world.servers;
        let metrics = self.merged_metrics();
        let mut report = metrics.report(&world.scenario, world.seed, self.now);
        report.trace_sha256 = self.trace_sha256();
        report.datagrams = self.datagrams();
        report.parallel = ParallelReport {
            lookahead_ms: if self.lookahead == Nanos::MAX {
                f64::INFINITY
            } else {
                self.lookahead as f64 / MILLI as f64
            },
            ..self.parallel.clone()
        };
        let (mut offered, mut lost) = (0, 0);
        for node in &self.nodes[servers..servers + world.paths.len()] {
            for stats in node.wires.links.iter().map(|end| end.link.stats()) {
                offered += stats.offered;
                lost += dropped(&stats);
            }
        }
        for node in &self.nodes[..servers] {
            for stats in node.wires.links.iter().map(|end| end.link.stats()) {
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
                if world.scenario.topology.spectators_per_server > 0 {
                    let refusals = endpoint.endpoint_stats().message_refusals;
                    report.traffic.refused_not_permitted += refusals.not_permitted;
                    report.traffic.refused_rate_limited += refusals.rate_limited;
                }
            }
            if let (App::Server(ServerApp { vs: Some(gs), .. }), Some(vs)) = (&node.app, &mut report.vs) {
                vs.authorised_at_end += usize::from(gs.authorised());
                let open_gap = (self.now - gs.last_ticket) as f64 / MILLI as f64;
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
        self.finish_hostile(&metrics, &mut report);
        report.finish();
        report
    }

    /// SHA-256 over every node's trace (each the hash of the datagrams it sent — time,
    /// source, destination, bytes, fate — in the order it sent them), in node order, then
    /// every raw node's; hex.
    pub fn trace_sha256(&self) -> String {
        let mut trace = Sha256::new();
        trace.update(b"tickwire-sim trace v2");
        let nodes = self.nodes.iter().map(|n| &n.wires.trace);
        for hasher in nodes.chain(self.raw.iter().map(|r| &r.trace)) {
            trace.update(hasher.clone().finalize());
        }
        let digest = trace.finalize();
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The sessions recorded so far ([`SimOptions::record`]), in the order they started.
    pub fn recordings(&self) -> &[SimRecording] {
        self.recordings.as_ref().map_or(&[], |r| &r.sessions)
    }

    /// The protected receipts the game servers received so far ([`SimOptions::record`]).
    pub fn receipts(&self) -> Vec<ProtectedReceipt> {
        self.receipt_records().iter().map(|r| r.receipt.clone()).collect()
    }

    /// [`Sim::receipts`] with the game server and digest of each.
    pub fn receipt_records(&self) -> &[SimReceipt] {
        self.recordings.as_ref().map_or(&[], |r| &r.receipts)
    }

    /// The verification server's receipt-signing public key and its key id, if the scenario
    /// has a verification server.
    pub fn vs_public_key(&self) -> Option<(u32, ed25519_dalek::VerifyingKey)> {
        self.groups[0].vs.as_ref()?;
        Some((vs::VS_KEY_ID, vs::vs_key(self.groups[0].seed).verifying_key()))
    }

    /// The keys the verification server's receipts verify against, if the scenario has one.
    pub fn vs_keys(&self) -> Option<VsKeys> {
        self.groups[0].vs.as_ref().map(|vs| vs.keys.clone())
    }

    /// The TLS key log collected when capturing (NSS key-log format, lines sorted), for
    /// Wireshark.
    pub fn key_log(&self) -> Option<String> {
        self.groups[0].key_log.as_ref().map(|k| k.contents())
    }

    /// Finishes the pcap capture, returning its sink.
    ///
    /// # Errors
    /// The first I/O error met while capturing, or one flushing now.
    pub fn finish_capture(&mut self) -> Result<Option<Box<dyn Write>>, std::io::Error> {
        if let Some(e) = self.capture_error.take() {
            return Err(e);
        }
        self.capture.take().map(|c| c.finish()).transpose()
    }
}

/// The last instant of a window starting at `t` with `lookahead` ns: `t` itself when the
/// lookahead is 0 (a single instant), else `t + lookahead - 1`, so that nothing sent within
/// the window can arrive within it.
pub(crate) fn window_end(t: Nanos, lookahead: Nanos) -> Nanos {
    t.saturating_add(lookahead.saturating_sub(1))
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
        if self.recording {
            self.receipts.push(SimReceipt {
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
            world.route(
                id,
                &mut node.wires,
                node.addr,
                transmit.destination,
                &buf[..transmit.size],
            );
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
        if world.recording {
            world.recorded.push((id, chunk));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_ends_before_anything_sent_in_it_can_arrive() {
        assert_eq!(window_end(100, 25), 124);
        assert_eq!(window_end(100, 1), 100);
        // Zero lookahead: a single instant, with deliveries at it handed over after it.
        assert_eq!(window_end(100, 0), 100);
        assert_eq!(window_end(Nanos::MAX - 3, 25), Nanos::MAX);
    }

    #[test]
    fn the_lookahead_is_the_smallest_link_delay() {
        let of = |name| lookahead(&Scenario::builtin(name).unwrap());
        assert_eq!(of("scale-1k"), 25 * MILLI);
        assert_eq!(of("lossy"), 30 * MILLI);
        assert_eq!(of("cross-region"), 245 * MILLI);
        // The presets' floors: LAN's 0.2 ms, below Wi-Fi's 1 ms and mobile's 15 ms.
        for name in [
            "default",
            "partition-heal",
            "vs-outage",
            "spectators",
            "compression",
        ] {
            assert_eq!(of(name), 200_000, "{name}");
        }
        let mut far = Scenario::builtin("compression").unwrap();
        far.topology.mix.retain(|entry| entry.preset != "lan");
        assert_eq!(lookahead(&far), MILLI);
        far.topology.mix.retain(|entry| entry.preset != "wifi");
        assert_eq!(lookahead(&far), 15 * MILLI);
        // Spoofed datagrams arrive at once.
        assert_eq!(of("flood"), 0);
        let mut zero = Scenario::builtin("scale-1k").unwrap();
        zero.links.get_mut("scale").unwrap().latency = crate::link::Delay::Constant { ms: 0.0 };
        assert_eq!(lookahead(&zero), 0);
        zero.links.get_mut("scale").unwrap().latency = crate::link::Delay::Uniform {
            min_ms: 1.5,
            max_ms: 9.0,
        };
        assert_eq!(lookahead(&zero), 1_500_000);
    }

    #[test]
    fn a_zero_lookahead_runs_single_instant_windows_on_one_thread() {
        let mut scenario = Scenario::builtin("scale-1k").unwrap();
        scenario.topology.clients_per_server = 20;
        scenario.links.get_mut("scale").unwrap().latency = crate::link::Delay::Constant { ms: 0.0 };
        let run = |threads| {
            let options = SimOptions {
                duration: Some(Duration::from_millis(300)),
                threads,
                ..SimOptions::default()
            };
            let mut sim = Sim::new(scenario.clone(), 3, options).unwrap();
            sim.run_until(sim.end());
            sim.report()
        };
        let (one, two) = (run(1), run(2));
        assert_eq!(one.trace_sha256, two.trace_sha256);
        assert_eq!(two.parallel.lookahead_ms, 0.0);
        assert!(two.parallel.windows > 0);
        assert_eq!(two.parallel.sequential_windows, two.parallel.windows);
        assert!(one.sessions.clients_joined > 0);
    }

    #[test]
    fn run_until_steps_do_not_cut_windows() {
        let mut scenario = Scenario::builtin("scale-1k").unwrap();
        scenario.topology.clients_per_server = 20;
        let run = |step: Nanos| {
            let options = SimOptions {
                duration: Some(Duration::from_millis(400)),
                threads: 2,
                ..SimOptions::default()
            };
            let mut sim = Sim::new(scenario.clone(), 3, options).unwrap();
            while !sim.finished() {
                sim.run_for(step);
            }
            sim.report()
        };
        let (whole, stepped) = (run(Nanos::MAX), run(7 * MILLI));
        assert_eq!(whole.trace_sha256, stepped.trace_sha256);
        assert_eq!(whole.parallel, stepped.parallel);
        assert!(whole.parallel.windows_lookahead_limited > 0);
    }

    #[test]
    fn nodes_split_into_contiguous_groups_by_cost() {
        // One server as heavy as its 10 clients: it stays alone.
        let costs = costs(1, 10, 10, false);
        assert_eq!(split(&costs, 2), [0, 1, 11]);
        assert_eq!(split(&costs, 1), [0, 11]);
        let groups = split(&costs, 4);
        assert_eq!(groups.len(), 5);
        assert!(groups.windows(2).all(|w| w[0] < w[1]), "{groups:?}");
        // More groups than nodes: one node each.
        assert_eq!(split(&[1.0, 1.0], 8), [0, 1, 2]);
        assert_eq!(split(&[1.0; 4], 2), [0, 2, 4]);
        // A server heavier than a share takes a group alone; its clients share the rest.
        let groups = split(&super::costs(1, 1000, 1000, false), 16);
        assert_eq!(&groups[..2], [0, 1]);
        let sizes: Vec<usize> = groups[1..].windows(2).map(|w| w[1] - w[0]).collect();
        assert_eq!(sizes.len(), 15);
        assert!(sizes.iter().all(|&n| (66..=67).contains(&n)), "{sizes:?}");
    }
}
