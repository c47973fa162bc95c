//! Scenarios: TOML descriptions of a topology, a traffic model, a fault schedule and a
//! duration. Ten ship embedded in the binary ([`Scenario::builtin`]); any other file in the
//! same format can be run by path.
//!
//! ```toml
//! name = "example"
//! duration_s = 10.0
//!
//! [topology]
//! servers = 1
//! clients_per_server = 50
//! join_window_s = 1.0
//! mix = [{ preset = "wifi", weight = 3 }, { preset = "mobile", weight = 1 }]
//!
//! [traffic]
//! tick_rate_hz = 60
//! snapshot_rate_hz = 30
//! input_bytes = 32
//! snapshot_bytes = { kind = "uniform", min = 200, max = 2400 }
//!
//! [[faults]]
//! kind = "partition"
//! target = "client:3"
//! at_s = 4.0
//! heal_at_s = 9.0
//! ```

use std::collections::BTreeMap;
use std::fmt;

use rand::{Rng, RngExt};
use serde::{Deserialize, Serialize};
use tickwire_core::vs::{GsConfig, VsConfig};
use tickwire_core::Config;

use crate::link::LinkSpec;

/// A scenario as loaded from TOML. Unknown fields are errors, so typos do not pass silently.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name, printed in the report.
    pub name: String,
    /// One line on what the scenario exercises.
    #[serde(default)]
    pub description: String,
    /// Seed used when the command line gives none.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Virtual time simulated, in seconds.
    pub duration_s: f64,
    /// Game servers and clients.
    #[serde(default)]
    pub topology: Topology,
    /// What the game sends.
    #[serde(default)]
    pub traffic: Traffic,
    /// Scheduled faults, in any order.
    #[serde(default)]
    pub faults: Vec<Fault>,
    /// Link presets defined or overridden by this scenario, by name; the built-in presets
    /// ([`LinkSpec::PRESETS`]) are available without listing them.
    #[serde(default)]
    pub links: BTreeMap<String, LinkSpec>,
    /// tickwire endpoint configuration for every node. `seed` is ignored: each node's seed is
    /// derived from the run's seed.
    #[serde(default = "default_endpoint")]
    pub endpoint: Config,
    /// Reporting options.
    #[serde(default)]
    pub report: ReportOptions,
    /// A verification server attesting every game server, if present.
    #[serde(default)]
    pub vs: Option<VsScenario>,
    /// A CPU model for game servers, so that floods cost time; absent = datagrams are handled
    /// instantly (every scenario without it keeps its trace).
    #[serde(default)]
    pub server_cpu: Option<ServerCpu>,
    /// Half-open attackers: connections that complete TLS and never send a Hello, if present.
    #[serde(default)]
    pub half_open: Option<HalfOpen>,
}

/// Attackers that open QUIC connections to a game server, complete the TLS handshake (ALPN
/// `tickwire/1`) and then never send a Hello, so that each connection holds one of the
/// server's pending-handshake slots until the server closes it (`hello_timeout_ms`) or refuses
/// it (`max_pending_handshakes_per_addr`, `max_pending_handshakes`).
///
/// Each attacker address is a real QUIC client
/// ([`SilentClient`](tickwire_core::testing::SilentClient)) on its own link to the server,
/// so the server's Retries, refusals and closes reach it and it answers them. The attackers
/// keep `connections` open between them: a connection the server closes is opened again
/// after `reconnect_after_ms`, so the pressure lasts until `until_s`.
///
/// ```toml
/// [half_open]
/// connections = 300
/// sources = 8
/// at_s = 0.5
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HalfOpen {
    /// Index of the game server attacked. Default 0.
    pub server: usize,
    /// Connections the attackers keep open at once, all addresses together, split evenly
    /// between the addresses. Default 300.
    pub connections: u32,
    /// Attacker IP addresses (1..=256), in `198.18.0.0/15` (RFC 2544), apart from the
    /// clients' and the floods' addresses. Default 8.
    pub sources: u32,
    /// When the attackers open their first connections, in seconds. Default 0.
    pub at_s: f64,
    /// After this no connection is opened, in seconds; absent = until the run ends.
    pub until_s: Option<f64>,
    /// Connections opened per second, all addresses together, while fewer than
    /// `connections` are open. Default 1 000.
    pub open_per_s: u32,
    /// Whether a connection the server closed (or refused) is opened again. Default true.
    pub reconnect: bool,
    /// Delay from noticing a close to opening again, in milliseconds. Default 100.
    pub reconnect_after_ms: u64,
    /// Link preset of every attacker's path to the server (both directions, independent
    /// random streams). Default `lan`.
    pub link: String,
}

impl Default for HalfOpen {
    fn default() -> Self {
        Self {
            server: 0,
            connections: 300,
            sources: 8,
            at_s: 0.0,
            until_s: None,
            open_per_s: 1_000,
            reconnect: true,
            reconnect_after_ms: 100,
            link: "lan".into(),
        }
    }
}

/// A game server's CPU in virtual time: handling a datagram costs a fixed time by what the
/// endpoint did with it (classified from its [`DatagramStats`](tickwire_core::stats::DatagramStats)
/// before and after), and datagrams arriving while it is busy wait in a FIFO receive queue of
/// `rx_queue_datagrams` (the socket buffer); beyond it they are dropped. Timers, ticks and
/// sends cost nothing. Defaults, in nanoseconds, are rough single-core figures for
/// quinn-proto with ring:
///
/// | outcome | default | what it stands for |
/// |---|---|---|
/// | `dropped_ns` | 1 000 | header parse, no state (garbage, unknown ids, short Initials) |
/// | `stateless_ns` | 3 000 | a stateless reset or version negotiation |
/// | `connection_ns` | 5 000 | routed to a connection: AEAD open (or its failure), frames |
/// | `retry_ns` | 10 000 | Initial keys, header protection, Retry token sealing |
/// | `refused_ns` | 10 000 | Initial keys and a sealed `CONNECTION_REFUSED` |
/// | `accept_failed_ns` | 20 000 | Initial keys and a failed AEAD open of the Initial |
/// | `handshake_ns` | 150 000 | a new handshake: TLS 1.3 server flight, Ed25519 signature |
///
/// ```toml
/// [server_cpu]
/// handshake_ns = 150000
/// rx_queue_datagrams = 4096
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerCpu {
    /// Dropped by QUIC without state.
    pub dropped_ns: u64,
    /// Answered statelessly (reset, version negotiation).
    pub stateless_ns: u64,
    /// Handled by an existing connection.
    pub connection_ns: u64,
    /// Answered with a Retry.
    pub retry_ns: u64,
    /// Refused at the pending-handshake limit.
    pub refused_ns: u64,
    /// An Initial QUIC failed to accept (did not decrypt).
    pub accept_failed_ns: u64,
    /// Started a new handshake.
    pub handshake_ns: u64,
    /// Datagrams waiting for the CPU at most; more are dropped (counted). Default 4 096.
    pub rx_queue_datagrams: usize,
}

impl Default for ServerCpu {
    fn default() -> Self {
        Self {
            dropped_ns: 1_000,
            stateless_ns: 3_000,
            connection_ns: 5_000,
            retry_ns: 10_000,
            refused_ns: 10_000,
            accept_failed_ns: 20_000,
            handshake_ns: 150_000,
            rx_queue_datagrams: 4_096,
        }
    }
}

/// Largest relative weight in a mix (client link presets, flood datagram kinds): weights are
/// expanded into round-robin patterns and summed, so they stay small.
pub const MAX_WEIGHT: u32 = 1_000;

/// Relative weights of the kinds of datagram in a [`Fault::Flood`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FloodMix {
    /// Random bytes of random length 1..=1 500.
    pub random: u32,
    /// A recently seen legitimate client-to-server datagram with bits flipped, truncated or
    /// extended.
    pub mutated: u32,
    /// Real client Initials (from throwaway client endpoints), replayed from spoofed sources.
    pub initials: u32,
    /// Prefixes of legitimate datagrams and Initials whose Length field points past the end.
    pub truncated: u32,
}

impl Default for FloodMix {
    fn default() -> Self {
        Self {
            random: 1,
            mutated: 1,
            initials: 1,
            truncated: 1,
        }
    }
}

/// A verification server (VS) node and what the game servers and clients do with it.
///
/// Each game server runs a [`GsAgent`](tickwire_core::vs::GsAgent) with a
/// [`SimulatedTpm`](tickwire_core::attest::SimulatedTpm) that measures a fixed binary and
/// configuration into PCR 23; the VS runs a [`Verifier`](tickwire_core::vs::Verifier) that
/// allows exactly that measurement and has every game server enrolled with its identity key
/// and AK pinned. Game servers admit clients only while they hold a play ticket, and clients
/// verify it. Client inputs are chained into transcripts and receipted.
///
/// ```toml
/// [vs]
/// link = "cross-region"
/// verifier = { ticket_interval_ms = 2000, ticket_lifetime_ms = 6000 }
/// game_server = { ticket_starvation_timeout_ms = 10000 }
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VsScenario {
    /// Link preset of every game server's path to the VS (both directions, independent
    /// random streams). Default `lan`.
    pub link: String,
    /// The verifier's settings. `key_id`, `seed`, `measurements` and `game_servers` are
    /// filled by the simulator.
    pub verifier: VsConfig,
    /// Every game server's agent settings. `gs_id` and `seed` are filled by the simulator.
    pub game_server: GsConfig,
    /// Whether clients require the game server's play ticket and verify it. Default true.
    pub clients_check_play_ticket: bool,
}

impl Default for VsScenario {
    fn default() -> Self {
        Self {
            link: "lan".into(),
            verifier: VsConfig::default(),
            game_server: GsConfig::default(),
            clients_check_play_ticket: true,
        }
    }
}

fn default_seed() -> u64 {
    1
}

/// The endpoint configuration scenarios start from: tickwire's defaults, except that clients
/// keep retrying (a game client does not give up after five attempts while its player waits),
/// starting from one second with ±90 % jitter, so that a crowd disconnected together does not
/// come back together (QUIC's Initial retransmissions would otherwise line the attempts up
/// again at the moment a partition heals). A scenario's `[endpoint]` table replaces this
/// whole configuration; fields it leaves out take tickwire's defaults.
pub fn default_endpoint() -> Config {
    let mut config = Config::default();
    config.retry.max_attempts = 1_000;
    config.retry.initial_backoff_ms = 1_000;
    config.retry.jitter_factor = 0.9;
    config
}

/// Game servers and their clients.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Topology {
    /// Number of game servers. Default 1.
    pub servers: usize,
    /// Clients joining each server. Default 16.
    pub clients_per_server: usize,
    /// Link presets of the clients, assigned round-robin by weight. Default: all `lan`.
    pub mix: Vec<MixEntry>,
    /// Clients start joining spread evenly over this window, in seconds. Default 1.
    pub join_window_s: f64,
    /// Of each server's clients, how many (the last ones) join as spectators
    /// ([`Role::Spectator`](tickwire_core::Role)): they receive snapshots like players and
    /// also send inputs, with a copy of the channel table that lets every role send (a client
    /// out of step with the server's table), so that the server refuses every input they send
    /// (`PROTOCOL.md` §7.1). With the default `max_permission_violations` that closes them
    /// with `PERMISSION_DENIED`; a scenario that keeps them sets it to 0 under `[endpoint]`.
    /// At most `clients_per_server`. Default 0.
    pub spectators_per_server: usize,
}

impl Default for Topology {
    fn default() -> Self {
        Self {
            servers: 1,
            clients_per_server: 16,
            mix: vec![MixEntry {
                preset: "lan".into(),
                weight: 1,
            }],
            join_window_s: 1.0,
            spectators_per_server: 0,
        }
    }
}

/// One link preset in the client mix.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MixEntry {
    /// Preset name: built in ([`LinkSpec::PRESETS`]) or defined under `[links]`. Both
    /// directions of the client's path use it, with independent random streams.
    pub preset: String,
    /// Relative share of clients, at most [`MAX_WEIGHT`]. Default 1.
    #[serde(default = "one")]
    pub weight: u32,
}

fn one() -> u32 {
    1
}

/// The game's traffic.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Traffic {
    /// Server tick rate, in Hz; clients send one input per (synchronised) tick. Default 60.
    pub tick_rate_hz: u32,
    /// Snapshot broadcast rate, in Hz; must divide `tick_rate_hz`. Default 30.
    pub snapshot_rate_hz: u32,
    /// Size of one input message, in bytes (at least 16). Default 32.
    pub input_bytes: usize,
    /// Size distribution of snapshot messages, in bytes (at least 16). Default uniform
    /// 200–2 400, so some need fragments.
    pub snapshot_bytes: SizeDist,
    /// Lifetime of the join tickets clients present, in seconds. Default 60.
    pub ticket_lifetime_s: u64,
    /// What snapshot bytes hold. Default `zeros`.
    pub snapshot_content: SnapshotContent,
}

/// The bytes of a snapshot message (its first 8 bytes are always the tick, big-endian).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotContent {
    /// Zeros after the tick: the cheapest to make, and trivially compressible.
    #[default]
    Zeros,
    /// A game world's entity records, 16 bytes each: id, quantised position and velocity
    /// (moving with the tick), health, team and state bits, part of them drawn from the run's
    /// seed — data that compresses about as well as real snapshots do.
    Entities,
}

impl Default for Traffic {
    fn default() -> Self {
        Self {
            tick_rate_hz: 60,
            snapshot_rate_hz: 30,
            input_bytes: 32,
            snapshot_bytes: SizeDist::Uniform { min: 200, max: 2_400 },
            ticket_lifetime_s: 60,
            snapshot_content: SnapshotContent::Zeros,
        }
    }
}

/// A message size distribution, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SizeDist {
    /// Always `bytes`.
    Constant {
        /// Size.
        bytes: usize,
    },
    /// Uniform on `[min, max]`.
    Uniform {
        /// Smallest size.
        min: usize,
        /// Largest size.
        max: usize,
    },
    /// Normal with `mean` and `sd`, clamped to `[min, max]`.
    Normal {
        /// Mean.
        mean: f64,
        /// Standard deviation.
        sd: f64,
        /// Smallest size.
        min: usize,
        /// Largest size.
        max: usize,
    },
}

impl SizeDist {
    /// Draws one size; always exactly two `f64` draws, whatever the kind.
    pub fn sample(&self, rng: &mut impl Rng) -> usize {
        let (u1, u2): (f64, f64) = (rng.random(), rng.random());
        match *self {
            SizeDist::Constant { bytes } => bytes,
            SizeDist::Uniform { min, max } => {
                let span = max.saturating_sub(min) as f64 + 1.0;
                (min + (u1 * span) as usize).min(max)
            }
            SizeDist::Normal { mean, sd, min, max } => {
                // Box-Muller transform.
                let z = (-2.0 * (1.0 - u1).ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
                let x = (mean + sd * z).round().max(0.0) as usize;
                x.clamp(min, max)
            }
        }
    }

    /// The largest size this distribution can produce.
    pub fn max(&self) -> usize {
        match *self {
            SizeDist::Constant { bytes } => bytes,
            SizeDist::Uniform { max, .. } | SizeDist::Normal { max, .. } => max,
        }
    }
}

/// Which nodes a fault applies to. Written as a string: `server:N`, `servers`, `client:N`
/// (global client index), `clients:A..B` (half-open range), `clients`, `clients-of:N`, `vs`.
/// A partition of `vs` cuts every game server's path to the verification server (`uplink` =
/// game server to VS).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Target {
    /// One game server.
    Server(usize),
    /// Every game server.
    Servers,
    /// One client.
    Client(usize),
    /// Clients `start..end`.
    Clients(usize, usize),
    /// Every client.
    AllClients,
    /// Every client of one game server.
    ClientsOf(usize),
    /// The verification server (its node; for a partition, its paths to the game servers).
    Vs,
}

impl TryFrom<String> for Target {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        let number = |s: &str| {
            s.trim()
                .parse::<usize>()
                .map_err(|e| format!("bad target {text:?}: {e}"))
        };
        match text.split_once(':') {
            None if text == "servers" => Ok(Target::Servers),
            None if text == "clients" => Ok(Target::AllClients),
            None if text == "vs" => Ok(Target::Vs),
            Some(("server", n)) => Ok(Target::Server(number(n)?)),
            Some(("client", n)) => Ok(Target::Client(number(n)?)),
            Some(("clients-of", n)) => Ok(Target::ClientsOf(number(n)?)),
            Some(("clients", range)) => {
                let (a, b) = range
                    .split_once("..")
                    .ok_or_else(|| format!("bad target {text:?}: expected clients:A..B"))?;
                Ok(Target::Clients(number(a)?, number(b)?))
            }
            _ => Err(format!(
                "bad target {text:?}: expected server:N, servers, client:N, clients:A..B, clients, clients-of:N or vs"
            )),
        }
    }
}

impl From<Target> for String {
    fn from(target: Target) -> String {
        target.to_string()
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Server(n) => write!(f, "server:{n}"),
            Target::Servers => write!(f, "servers"),
            Target::Client(n) => write!(f, "client:{n}"),
            Target::Clients(a, b) => write!(f, "clients:{a}..{b}"),
            Target::AllClients => write!(f, "clients"),
            Target::ClientsOf(n) => write!(f, "clients-of:{n}"),
            Target::Vs => write!(f, "vs"),
        }
    }
}

/// Which directions a partition cuts, seen from the client.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Both directions.
    #[default]
    Both,
    /// Client to server only.
    Uplink,
    /// Server to client only.
    Downlink,
}

/// A scheduled fault. Times are virtual seconds from the start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Fault {
    /// Drops every datagram between the targets and their peers (for a server target: all of
    /// its clients) from `at_s` until `heal_at_s` (never, if absent).
    Partition {
        /// Whose paths are cut.
        target: Target,
        /// Start.
        at_s: f64,
        /// End, if any.
        heal_at_s: Option<f64>,
        /// Which directions.
        #[serde(default)]
        direction: Direction,
    },
    /// Steps the targets' clocks (monotonic and wall) by `offset_ms` at `at_s`; positive =
    /// ahead. At `at_s = 0` it is the node's initial skew.
    ClockOffset {
        /// Whose clocks.
        target: Target,
        /// When.
        #[serde(default)]
        at_s: f64,
        /// Step, in milliseconds.
        offset_ms: i64,
    },
    /// From `at_s`, the targets' clocks run fast (`ppm` > 0) or slow by `ppm` parts per
    /// million.
    ClockDrift {
        /// Whose clocks.
        target: Target,
        /// When.
        #[serde(default)]
        at_s: f64,
        /// Rate error, in parts per million.
        ppm: f64,
    },
    /// The targets crash at `at_s` (all state lost) and, if `restart_at_s` is given, come back
    /// then with fresh state (clients rejoin).
    Crash {
        /// Who crashes.
        target: Target,
        /// When.
        at_s: f64,
        /// When they restart, if ever.
        restart_at_s: Option<f64>,
    },
    /// `datagrams` hostile datagrams, spread evenly over `[at_s, until_s)`, sent to the target
    /// game server(s) from `sources` spoofed addresses (answers to them are routed nowhere
    /// and counted), of the kinds in `mix`. Every byte comes from the run's seed.
    Flood {
        /// `server:N` or `servers` (round-robin).
        target: Target,
        /// Start.
        at_s: f64,
        /// End.
        until_s: f64,
        /// Datagrams in total.
        datagrams: u64,
        /// Spoofed source addresses (1..=65 536), used round-robin.
        sources: u32,
        /// Kinds of datagram, by weight.
        #[serde(default)]
        mix: FloodMix,
    },
}

/// Reporting options.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReportOptions {
    /// Interval between path samples (RTT estimate vs truth, loss, the SVG's points), in
    /// milliseconds. Default 1 000.
    pub sample_interval_ms: u64,
}

impl Default for ReportOptions {
    fn default() -> Self {
        Self {
            sample_interval_ms: 1_000,
        }
    }
}

/// Errors loading a scenario.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The TOML does not parse or does not match the schema.
    #[error("scenario does not parse: {0}")]
    Toml(#[from] toml::de::Error),
    /// A value is out of range or refers to something that does not exist.
    #[error("invalid scenario: {0}")]
    Invalid(String),
}

/// The shipped scenarios, by name, as TOML text.
pub const BUILTIN: &[(&str, &str)] = &[
    ("default", include_str!("../scenarios/default.toml")),
    ("cross-region", include_str!("../scenarios/cross-region.toml")),
    ("lossy", include_str!("../scenarios/lossy.toml")),
    ("partition-heal", include_str!("../scenarios/partition-heal.toml")),
    ("scale-1k", include_str!("../scenarios/scale-1k.toml")),
    ("scale-5k", include_str!("../scenarios/scale-5k.toml")),
    ("vs-outage", include_str!("../scenarios/vs-outage.toml")),
    ("flood", include_str!("../scenarios/flood.toml")),
    ("half-open", include_str!("../scenarios/half-open.toml")),
    ("spectators", include_str!("../scenarios/spectators.toml")),
    ("compression", include_str!("../scenarios/compression.toml")),
];

impl Scenario {
    /// Parses and validates a scenario.
    ///
    /// # Errors
    /// [`ScenarioError`] naming the problem.
    pub fn from_toml(text: &str) -> Result<Self, ScenarioError> {
        let scenario: Scenario = toml::from_str(text)?;
        scenario.validate()?;
        Ok(scenario)
    }

    /// A shipped scenario by name (see [`BUILTIN`]).
    pub fn builtin(name: &str) -> Option<Self> {
        let (_, text) = BUILTIN.iter().find(|(n, _)| *n == name)?;
        Some(Self::from_toml(text).expect("shipped scenarios are valid"))
    }

    /// The link spec of a preset name: the scenario's own `[links]` first, then the built-ins.
    pub fn link(&self, name: &str) -> Option<LinkSpec> {
        self.links.get(name).cloned().or_else(|| LinkSpec::preset(name))
    }

    /// Whether global client `index` joins as a spectator (the last
    /// `topology.spectators_per_server` clients of each server).
    pub fn is_spectator(&self, index: usize) -> bool {
        let t = &self.topology;
        t.clients_per_server > 0
            && index % t.clients_per_server
                >= t.clients_per_server - t.spectators_per_server.min(t.clients_per_server)
    }

    /// Total number of clients (saturating: [`validate`](Self::validate) caps it at 2²⁰).
    pub fn clients(&self) -> usize {
        self.topology
            .servers
            .saturating_mul(self.topology.clients_per_server)
    }

    /// Checks ranges and references.
    ///
    /// # Errors
    /// [`ScenarioError::Invalid`] naming the first problem.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        let bad = |msg: String| Err(ScenarioError::Invalid(msg));
        let t = &self.topology;
        if !(self.duration_s > 0.0 && self.duration_s.is_finite()) {
            return bad(format!("duration_s must be positive, got {}", self.duration_s));
        }
        if t.servers == 0 || t.servers > 250 {
            return bad(format!("topology.servers must be 1..=250, got {}", t.servers));
        }
        if self.clients() > 1 << 20 {
            return bad(format!("at most {} clients, got {}", 1 << 20, self.clients()));
        }
        for (name, spec) in &self.links {
            spec.validate()
                .map_err(|e| ScenarioError::Invalid(format!("links.{name}: {e}")))?;
        }
        if t.mix.is_empty() || t.mix.iter().all(|m| m.weight == 0) {
            return bad("topology.mix needs at least one preset with a positive weight".into());
        }
        if t.mix.iter().any(|m| m.weight > MAX_WEIGHT) {
            return bad(format!("topology.mix weights must be at most {MAX_WEIGHT}"));
        }
        for entry in &t.mix {
            if self.link(&entry.preset).is_none() {
                return bad(format!(
                    "unknown link preset {:?} (built in: {:?}; or define it under [links])",
                    entry.preset,
                    LinkSpec::PRESETS
                ));
            }
        }
        if t.spectators_per_server > t.clients_per_server {
            return bad(format!(
                "topology.spectators_per_server ({}) must be at most clients_per_server ({})",
                t.spectators_per_server, t.clients_per_server
            ));
        }
        if !(t.join_window_s >= 0.0 && t.join_window_s.is_finite()) {
            return bad("topology.join_window_s must be a non-negative number".into());
        }
        let tr = &self.traffic;
        if tr.tick_rate_hz == 0
            || tr.snapshot_rate_hz == 0
            || !tr.tick_rate_hz.is_multiple_of(tr.snapshot_rate_hz)
        {
            return bad(format!(
                "traffic.snapshot_rate_hz ({}) must be positive and divide tick_rate_hz ({})",
                tr.snapshot_rate_hz, tr.tick_rate_hz
            ));
        }
        if tr.input_bytes < 16 || tr.snapshot_bytes.max() < 16 {
            return bad("traffic message sizes must be at least 16 bytes".into());
        }
        if let SizeDist::Uniform { min, max } | SizeDist::Normal { min, max, .. } = tr.snapshot_bytes {
            if min > max || min < 16 {
                return bad("traffic.snapshot_bytes needs 16 <= min <= max".into());
            }
        }
        if self.report.sample_interval_ms == 0 {
            return bad("report.sample_interval_ms must be positive".into());
        }
        for fault in &self.faults {
            let (target, times): (&Target, Vec<f64>) = match fault {
                Fault::Partition {
                    target,
                    at_s,
                    heal_at_s,
                    ..
                } => (target, [Some(*at_s), *heal_at_s].into_iter().flatten().collect()),
                Fault::ClockOffset { target, at_s, .. } | Fault::ClockDrift { target, at_s, .. } => {
                    (target, vec![*at_s])
                }
                Fault::Crash {
                    target,
                    at_s,
                    restart_at_s,
                } => (
                    target,
                    [Some(*at_s), *restart_at_s].into_iter().flatten().collect(),
                ),
                Fault::Flood {
                    target,
                    at_s,
                    until_s,
                    sources,
                    mix,
                    ..
                } => {
                    if !matches!(target, Target::Server(_) | Target::Servers) {
                        return bad(format!("flood target {target}: must be server:N or servers"));
                    }
                    if !(1..=65_536).contains(sources) {
                        return bad(format!("flood on {target}: sources must be 1..=65536"));
                    }
                    let weights = [mix.random, mix.mutated, mix.initials, mix.truncated];
                    if weights.iter().any(|w| *w > MAX_WEIGHT) || weights.iter().all(|w| *w == 0) {
                        return bad(format!(
                            "flood on {target}: mix weights must be 0..={MAX_WEIGHT}, one of them positive"
                        ));
                    }
                    if until_s <= at_s {
                        return bad(format!("fault on {target}: its end is before its start"));
                    }
                    (target, vec![*at_s, *until_s])
                }
            };
            if times.iter().any(|t| !(*t >= 0.0 && t.is_finite())) {
                return bad(format!("fault on {target}: times must be non-negative"));
            }
            if times.windows(2).any(|w| w[1] < w[0]) {
                return bad(format!("fault on {target}: its end is before its start"));
            }
            let in_range = match *target {
                Target::Server(n) | Target::ClientsOf(n) => n < t.servers,
                Target::Client(n) => n < self.clients(),
                Target::Clients(a, b) => a < b && b <= self.clients(),
                Target::Servers | Target::AllClients => true,
                Target::Vs => self.vs.is_some(),
            };
            if !in_range {
                return bad(format!("fault target {target} names no node"));
            }
        }
        self.endpoint
            .validate()
            .map_err(|e| ScenarioError::Invalid(format!("endpoint: {e}")))?;
        if self
            .server_cpu
            .as_ref()
            .is_some_and(|c| c.rx_queue_datagrams == 0)
        {
            return bad("server_cpu.rx_queue_datagrams must be positive".into());
        }
        if let Some(h) = &self.half_open {
            if h.server >= t.servers {
                return bad(format!("half_open.server {} names no game server", h.server));
            }
            if !(1..=256).contains(&h.sources) || h.connections < h.sources {
                return bad("half_open needs 1 <= sources <= 256 and connections >= sources".into());
            }
            if h.open_per_s == 0 {
                return bad("half_open.open_per_s must be positive".into());
            }
            let end = h.until_s.unwrap_or(f64::MAX);
            if !(h.at_s >= 0.0 && h.at_s.is_finite()) || end.is_nan() || end < h.at_s {
                return bad("half_open needs 0 <= at_s <= until_s".into());
            }
            if self.link(&h.link).is_none() {
                return bad(format!("half_open.link: unknown link preset {:?}", h.link));
            }
        }
        if let Some(vs) = &self.vs {
            if self.link(&vs.link).is_none() {
                return bad(format!("vs.link: unknown link preset {:?}", vs.link));
            }
            vs.verifier
                .validate()
                .map_err(|e| ScenarioError::Invalid(format!("vs.verifier: {e}")))?;
            vs.game_server
                .validate()
                .map_err(|e| ScenarioError::Invalid(format!("vs.game_server: {e}")))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_scenarios_parse() {
        for (name, _) in BUILTIN {
            let scenario = Scenario::builtin(name).unwrap();
            assert_eq!(scenario.name, *name);
        }
        assert!(Scenario::builtin("nope").is_none());
    }

    #[test]
    fn targets_round_trip() {
        for text in [
            "server:0",
            "servers",
            "client:7",
            "clients:2..5",
            "clients",
            "clients-of:1",
            "vs",
        ] {
            let target = Target::try_from(text.to_string()).unwrap();
            assert_eq!(target.to_string(), text);
        }
        assert!(Target::try_from("client:x".to_string()).is_err());
        assert!(Target::try_from("planet:1".to_string()).is_err());
    }

    #[test]
    fn validation_names_the_problem() {
        let text = "name = 'x'\nduration_s = 1.0\n[topology]\nmix = [{ preset = 'moon' }]\n";
        let err = Scenario::from_toml(text).unwrap_err().to_string();
        assert!(err.contains("moon"), "{err}");
        let text =
            "name = 'x'\nduration_s = 1.0\n[[faults]]\nkind = 'crash'\ntarget = 'client:99'\nat_s = 1.0\n";
        let err = Scenario::from_toml(text).unwrap_err().to_string();
        assert!(err.contains("client:99"), "{err}");
        let text = "name = 'x'\nduration_s = 1.0\nbogus = 1\n";
        assert!(Scenario::from_toml(text).is_err());
    }

    #[test]
    fn sizes_stay_in_range() {
        use rand::SeedableRng;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let dists = [
            SizeDist::Constant { bytes: 100 },
            SizeDist::Uniform { min: 16, max: 40 },
            SizeDist::Normal {
                mean: 500.0,
                sd: 300.0,
                min: 16,
                max: 900,
            },
        ];
        for dist in dists {
            for _ in 0..1000 {
                let n = dist.sample(&mut rng);
                assert!((16..=dist.max()).contains(&n), "{dist:?} gave {n}");
            }
        }
    }
}
