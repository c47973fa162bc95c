//! Hostile traffic: floods of random, mutated, replayed and truncated datagrams
//! from spoofed sources, and the CPU model that makes them cost a game server time.
//!
//! A flood is one [`What::Flood`] event at a time: each emits one datagram straight to its
//! target (the attacker's own link is not modelled) and schedules the next, so a flood of 10⁶
//! datagrams never sits in the event queue. Every byte comes from the run's seed, and every
//! datagram is hashed into the trace, so floods are as reproducible as the rest of a run.
//!
//! With `[server_cpu]`, a game server handles one datagram at a time: each costs the time the
//! scenario's [`ServerCpu`] table gives for what the endpoint did with it (see
//! [`Class`]), and datagrams arriving meanwhile wait in a bounded FIFO receive queue.

use std::collections::{BTreeMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use ed25519_dalek::SigningKey;
use rand::{Rng, RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sha2::Digest;
use tickwire_core::stats::DatagramStats;
use tickwire_core::{Config, ConnectOptions, Endpoint, JoinTicketClaims, Secrets};

use super::{derive, drive, hash_addr, Sim, What, World, MILLI, SECOND};
use crate::clock::{NodeClock, START_UNIX_MS};
use crate::crypto::sim_crypto;
use crate::link::Nanos;
use crate::report::{CpuReport, HostileMetrics};
use crate::scenario::{Fault, FloodMix, Scenario, ServerCpu};

/// Real client Initials generated at the start of a run and replayed by floods.
pub const INITIALS_POOL: usize = 1024;
/// Memory the hostile report's estimate charges per connection, in bytes (see
/// [`HostileReport::peak_memory_estimate_bytes`](crate::report::HostileReport)).
pub const CONNECTION_BYTES_ESTIMATE: u64 = 64 << 10;
/// Recent legitimate client-to-server datagrams kept for mutation.
const RECENT: usize = 64;
/// Trace marker of a flood datagram (links mark their verdicts with 0–1, routing with
/// 0xfe/0xff).
const FLOOD_MARK: u8 = 0xfd;
/// Trace marker of a datagram dropped because a server's receive queue was full.
const RX_QUEUE_FULL_MARK: u8 = 0xfc;

/// Kinds of flood datagram, in [`FloodMix`] order.
const KINDS: [&str; 4] = ["random", "mutated", "initials", "truncated"];

/// One scheduled flood.
#[derive(Debug)]
struct Flood {
    targets: Vec<usize>,
    start: Nanos,
    end: Nanos,
    total: u64,
    sent: u64,
    first_source: usize,
    sources: usize,
    weights: [u32; 4],
    rng: ChaCha8Rng,
}

/// Every flood of a run, their spoofed sources and the material they mutate.
#[derive(Debug, Default)]
pub(super) struct FloodNet {
    floods: Vec<Flood>,
    /// Spoofed source address → global source index (into `HostileMetrics::per_source`).
    pub(super) sources: BTreeMap<SocketAddr, usize>,
    /// Real client Initials, replayed by the `initials` kind.
    pool: Vec<Vec<u8>>,
    /// Recent legitimate client-to-server datagrams.
    recent: VecDeque<Vec<u8>>,
}

impl FloodNet {
    /// Remembers a legitimate client-to-server datagram for the `mutated` kind.
    pub(super) fn observe(&mut self, bytes: &[u8]) {
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(bytes.to_vec());
    }
}

/// The address of global spoofed source `g`: `172.16.0.0/12`, ports from 20 000.
fn source_addr(g: usize) -> SocketAddr {
    let ip = Ipv4Addr::from(0xAC10_0000u32 + g as u32);
    SocketAddr::V4(SocketAddrV4::new(ip, 20_000 + (g % 40_000) as u16))
}

/// What a server's endpoint did with one datagram, from its [`DatagramStats`] before and
/// after; the CPU model charges by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Class {
    /// Dropped by QUIC without state.
    Dropped,
    /// Answered statelessly (reset, version negotiation, invalid-token close).
    Stateless,
    /// Handled by an existing connection.
    Connection,
    /// Answered with a Retry.
    Retry,
    /// Refused at the pending-handshake limit.
    Refused,
    /// An Initial that QUIC could not accept.
    AcceptFailed,
    /// A new handshake started.
    Handshake,
}

impl Class {
    fn of(before: &DatagramStats, after: &DatagramStats) -> Self {
        if after.retries_sent > before.retries_sent {
            Class::Retry
        } else if after.accepted > before.accepted {
            Class::Handshake
        } else if after.refused > before.refused {
            Class::Refused
        } else if after.accept_failed > before.accept_failed {
            Class::AcceptFailed
        } else if after.stateless_responses > before.stateless_responses {
            Class::Stateless
        } else if after.dropped > before.dropped {
            Class::Dropped
        } else {
            Class::Connection
        }
    }

    fn name(self) -> &'static str {
        match self {
            Class::Dropped => "dropped",
            Class::Stateless => "stateless",
            Class::Connection => "connection",
            Class::Retry => "retry",
            Class::Refused => "refused",
            Class::AcceptFailed => "accept_failed",
            Class::Handshake => "handshake",
        }
    }

    fn cost(self, cpu: &ServerCpu) -> Nanos {
        match self {
            Class::Dropped => cpu.dropped_ns,
            Class::Stateless => cpu.stateless_ns,
            Class::Connection => cpu.connection_ns,
            Class::Retry => cpu.retry_ns,
            Class::Refused => cpu.refused_ns,
            Class::AcceptFailed => cpu.accept_failed_ns,
            Class::Handshake => cpu.handshake_ns,
        }
    }
}

/// A game server's CPU: busy until `busy_until`, with datagrams waiting in `backlog`.
#[derive(Debug)]
pub(super) struct Cpu {
    costs: ServerCpu,
    busy_until: Nanos,
    /// `(arrived at, from, payload)`, oldest first.
    backlog: VecDeque<(Nanos, SocketAddr, Vec<u8>)>,
    /// Payload bytes in `backlog`.
    backlog_bytes: u64,
    /// Whether a [`What::CpuFree`] is queued for this node.
    wake_pending: bool,
}

impl Cpu {
    pub(super) fn new(costs: ServerCpu) -> Self {
        Self {
            costs,
            busy_until: 0,
            backlog: VecDeque::new(),
            backlog_bytes: 0,
            wake_pending: false,
        }
    }

    /// Forgets queued datagrams (the node crashed).
    pub(super) fn clear(&mut self) {
        self.backlog.clear();
        self.backlog_bytes = 0;
    }
}

/// Builds the floods of `scenario` (none: `None`), with a pool of real Initials from a
/// throwaway client endpoint aimed at `server`.
pub(super) fn build(
    scenario: &Scenario,
    seed: u64,
    epoch: Instant,
    server: SocketAddr,
    issuer: &tickwire_core::TicketIssuer,
) -> Result<Option<FloodNet>, tickwire_core::EndpointError> {
    let secs = |s: f64| (s * 1e9) as Nanos;
    let mut net = FloodNet::default();
    for (i, fault) in scenario.faults.iter().enumerate() {
        let Fault::Flood {
            target,
            at_s,
            until_s,
            datagrams,
            sources,
            mix,
        } = fault
        else {
            continue;
        };
        let targets = match *target {
            crate::scenario::Target::Server(s) => vec![s],
            _ => (0..scenario.topology.servers).collect(),
        };
        let first_source = net.sources.len();
        for g in first_source..first_source + *sources as usize {
            net.sources.insert(source_addr(g), g);
        }
        let FloodMix {
            random,
            mutated,
            initials,
            truncated,
        } = *mix;
        net.floods.push(Flood {
            targets,
            start: secs(*at_s),
            end: secs(*until_s),
            total: *datagrams,
            sent: 0,
            first_source,
            sources: *sources as usize,
            weights: [random, mutated, initials, truncated],
            rng: ChaCha8Rng::from_seed(derive(seed, "flood", i as u64, 0)),
        });
    }
    if net.floods.is_empty() {
        return Ok(None);
    }
    net.pool = initials_pool(scenario, seed, epoch, server, issuer)?;
    Ok(Some(net))
}

/// [`INITIALS_POOL`] real client Initials (each a fresh connection attempt, padded to 1 200
/// bytes) from one throwaway client endpoint with its own seed.
fn initials_pool(
    scenario: &Scenario,
    seed: u64,
    epoch: Instant,
    server: SocketAddr,
    issuer: &tickwire_core::TicketIssuer,
) -> Result<Vec<Vec<u8>>, tickwire_core::EndpointError> {
    let config: Config = scenario.endpoint.clone();
    let secrets = Secrets::from_bytes(derive(seed, "flood/client", 0, 0));
    let identity = SigningKey::from_bytes(&derive(seed, "flood/identity", 0, 0));
    let clock = NodeClock::new(epoch);
    let crypto = sim_crypto(derive(seed, "flood/rustls", 0, 0), None);
    let mut client = Endpoint::builder(config, secrets, identity.clone(), clock.wall())
        .crypto(crypto)
        .client()?;
    let mut rng = ChaCha8Rng::from_seed(derive(seed, "flood/tickets", 0, 0));
    let now = clock.instant(0);
    let mut pool = Vec::with_capacity(INITIALS_POOL);
    let mut buf = Vec::new();
    for i in 0..INITIALS_POOL {
        let claims = JoinTicketClaims::builder(identity.verifying_key().to_bytes(), rng.random())
            .client_id(u64::MAX - i as u64)
            .audience(1)
            .valid_from(START_UNIX_MS)
            .lifetime_ms(60_000)
            .build();
        if client
            .connect(now, server, issuer.issue(&claims), ConnectOptions::default())
            .is_err()
        {
            continue;
        }
        if let Some(transmit) = client.poll_transmit(now, &mut buf) {
            pool.push(buf[..transmit.size].to_vec());
        }
        while client.poll_transmit(now, &mut buf).is_some() {}
    }
    Ok(pool)
}

/// Offset of the Length field of a client Initial without a token (RFC 9000 §17.2.2).
fn initial_length_offset(packet: &[u8]) -> Option<usize> {
    let dcid = usize::from(*packet.get(5)?);
    let scid = usize::from(*packet.get(6 + dcid)?);
    let at = 7 + dcid + scid + 1;
    (packet.len() > at + 2).then_some(at)
}

fn random_bytes(rng: &mut ChaCha8Rng, len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    rng.fill_bytes(&mut bytes);
    bytes
}

impl FloodNet {
    /// Draws one datagram of kind `kind` (an index into [`KINDS`]).
    fn make(&mut self, flood: usize, kind: usize) -> Vec<u8> {
        let rng = &mut self.floods[flood].rng;
        let pick = |rng: &mut ChaCha8Rng, from: &[Vec<u8>]| -> Option<Vec<u8>> {
            (!from.is_empty()).then(|| from[rng.random_range(0..from.len())].clone())
        };
        let legit = |rng: &mut ChaCha8Rng, recent: &VecDeque<Vec<u8>>, pool: &[Vec<u8>]| {
            let (a, b) = recent.as_slices();
            let n = recent.len();
            if n > 0 {
                let i = rng.random_range(0..n);
                Some(if i < a.len() {
                    a[i].clone()
                } else {
                    b[i - a.len()].clone()
                })
            } else {
                pick(rng, pool)
            }
        };
        match kind {
            1 => {
                let Some(mut bytes) = legit(rng, &self.recent, &self.pool) else {
                    return random_bytes(rng, 64);
                };
                match rng.random_range(0..3u8) {
                    0 => {
                        for _ in 0..rng.random_range(1..=8) {
                            let at = rng.random_range(0..bytes.len());
                            bytes[at] ^= 1 << rng.random_range(0..8);
                        }
                    }
                    1 => bytes.truncate(rng.random_range(1..bytes.len().max(2))),
                    _ => {
                        let extra = rng.random_range(1..=64);
                        bytes.extend(random_bytes(rng, extra));
                    }
                }
                bytes
            }
            2 => pick(rng, &self.pool).unwrap_or_else(|| random_bytes(rng, 1_200)),
            3 => {
                if rng.random_bool(0.5) {
                    let Some(mut bytes) = legit(rng, &self.recent, &self.pool) else {
                        return random_bytes(rng, 16);
                    };
                    bytes.truncate(rng.random_range(1..bytes.len().max(2)));
                    bytes
                } else {
                    let Some(mut bytes) = pick(rng, &self.pool) else {
                        return random_bytes(rng, 16);
                    };
                    if let Some(at) = initial_length_offset(&bytes) {
                        // The largest 2-byte varint: far past the end of the datagram.
                        bytes[at] = 0x7f;
                        bytes[at + 1] = 0xff;
                    }
                    bytes
                }
            }
            _ => {
                let len = rng.random_range(1..=1_500);
                random_bytes(rng, len)
            }
        }
    }
}

impl Sim {
    /// Schedules the first datagram of every flood.
    pub(super) fn schedule_floods(&mut self) {
        let Some(net) = &self.world.flood else { return };
        let starts: Vec<Nanos> = net.floods.iter().map(|f| f.start).collect();
        for (flood, at) in starts.into_iter().enumerate() {
            self.world.push(at, What::Flood { flood });
        }
    }

    /// Sends flood `flood`'s next datagram and schedules the one after.
    pub(super) fn flood(&mut self, flood: usize) {
        let now = self.world.now;
        let Some(net) = self.world.flood.as_mut() else {
            return;
        };
        let f = &mut net.floods[flood];
        if f.sent >= f.total {
            return;
        }
        let total_weight: u32 = f.weights.iter().sum();
        let mut draw = f.rng.random_range(0..total_weight);
        let kind = f
            .weights
            .iter()
            .position(|&w| {
                if draw < w {
                    true
                } else {
                    draw -= w;
                    false
                }
            })
            .unwrap_or(0);
        let source = f.first_source + (f.sent % f.sources as u64) as usize;
        let target = f.targets[(f.sent % f.targets.len() as u64) as usize];
        f.sent += 1;
        let next = f.start + ((f.end - f.start) as u128 * u128::from(f.sent) / u128::from(f.total)) as Nanos;
        let more = f.sent < f.total;
        let bytes = net.make(flood, kind);
        if more {
            self.world.push(next.max(now), What::Flood { flood });
        }
        let from = source_addr(source);
        let to = self.nodes[target].addr;
        let world = &mut self.world;
        world.trace.update(now.to_be_bytes());
        hash_addr(&mut world.trace, from);
        hash_addr(&mut world.trace, to);
        world.trace.update((bytes.len() as u32).to_be_bytes());
        world.trace.update(&bytes);
        world.trace.update([FLOOD_MARK]);
        if let Some(capture) = &mut world.capture {
            if let Err(e) = capture.write(now, from, to, &bytes) {
                world.capture_error.get_or_insert(e);
            }
        }
        if let Some(h) = world.metrics.hostile.as_mut() {
            h.report.flood_datagrams += 1;
            h.report.flood_bytes += bytes.len() as u64;
            *h.report.flood_by_kind.entry(KINDS[kind].into()).or_default() += 1;
            grow(&mut h.per_source, source).0 += bytes.len() as u64;
        }
        self.deliver(target, from, bytes);
    }

    /// A datagram reaches node `to`: handled now, or queued behind its busy CPU.
    pub(super) fn deliver(&mut self, to: usize, from: SocketAddr, payload: Vec<u8>) {
        let now = self.world.now;
        self.world.counts.deliveries += 1;
        let node = &mut self.nodes[to];
        if node.endpoint.is_none() {
            self.world.metrics.dropped_at_down_node += 1;
            return;
        }
        if let Some(cpu) = node.cpu.as_mut() {
            if cpu.busy_until > now || !cpu.backlog.is_empty() {
                if cpu.backlog.len() >= cpu.costs.rx_queue_datagrams {
                    self.world.trace.update([RX_QUEUE_FULL_MARK]);
                    if let Some(c) = self.world.metrics.cpu() {
                        c.rx_queue_dropped += 1;
                    }
                    return;
                }
                cpu.backlog_bytes += payload.len() as u64;
                cpu.backlog.push_back((now, from, payload));
                let queued = cpu.backlog.len();
                if !cpu.wake_pending {
                    cpu.wake_pending = true;
                    let at = cpu.busy_until.max(now);
                    self.world.push(at, What::CpuFree { node: to });
                }
                if let Some(c) = self.world.metrics.cpu() {
                    c.rx_queue_peak = c.rx_queue_peak.max(queued);
                }
                return;
            }
        }
        self.handle_now(to, from, payload);
    }

    /// Node `id`'s CPU is free: it takes the oldest queued datagram.
    pub(super) fn cpu_free(&mut self, id: usize) {
        let now = self.world.now;
        let node = &mut self.nodes[id];
        let Some(cpu) = node.cpu.as_mut() else { return };
        cpu.wake_pending = false;
        if node.endpoint.is_none() {
            cpu.clear();
            return;
        }
        if cpu.busy_until > now {
            cpu.wake_pending = true;
            let at = cpu.busy_until;
            self.world.push(at, What::CpuFree { node: id });
            return;
        }
        let Some((arrived, from, payload)) = cpu.backlog.pop_front() else {
            return;
        };
        cpu.backlog_bytes -= payload.len() as u64;
        if let Some(c) = self.world.metrics.cpu() {
            c.max_wait_ms = c.max_wait_ms.max((now - arrived) as f64 / MILLI as f64);
        }
        self.handle_now(id, from, payload);
        let cpu = self.nodes[id].cpu.as_mut().expect("checked above");
        if !cpu.backlog.is_empty() && !cpu.wake_pending {
            cpu.wake_pending = true;
            let at = cpu.busy_until.max(now);
            self.world.push(at, What::CpuFree { node: id });
        }
    }

    /// Hands a datagram to node `id`'s endpoint, classifies what it did for the hostile report
    /// and the CPU model, and drives the node.
    fn handle_now(&mut self, id: usize, from: SocketAddr, payload: Vec<u8>) {
        let now = self.world.now;
        let servers = self.world.servers;
        let node = &mut self.nodes[id];
        let Some(endpoint) = node.endpoint.as_mut() else {
            self.world.metrics.dropped_at_down_node += 1;
            return;
        };
        let local = node.clock.instant(now);
        let tracked = id < servers && self.world.metrics.hostile.is_some();
        let before = tracked.then(|| endpoint.datagram_stats());
        endpoint.handle_datagram(local, from, None, None, BytesMut::from(Bytes::from(payload)));
        if let (Some(before), Some(h)) = (before, self.world.metrics.hostile.as_mut()) {
            let class = Class::of(&before, &endpoint.datagram_stats());
            *h.handled.entry(class.name()).or_default() += 1;
            h.report.peak_handshakes_pending = h
                .report
                .peak_handshakes_pending
                .max(endpoint.handshakes_pending());
            h.report.peak_connections = h.report.peak_connections.max(endpoint.connection_count());
            let memory = endpoint.connection_count() as u64 * CONNECTION_BYTES_ESTIMATE
                + node.cpu.as_ref().map_or(0, |c| c.backlog_bytes);
            h.report.peak_memory_estimate_bytes = h.report.peak_memory_estimate_bytes.max(memory);
            if let Some(cpu) = node.cpu.as_mut() {
                let cost = class.cost(&cpu.costs);
                cpu.busy_until = now + cost;
                let busy = grow(&mut h.busy, id);
                *grow(busy, (now / SECOND) as usize) += cost;
            }
        }
        drive(id, node, &mut self.world);
    }

    /// Fills the hostile report's end-of-run figures from the servers' endpoints.
    pub(super) fn finish_hostile(&self, report: &mut crate::report::Report) {
        let (Some(h), Some(out)) = (self.world.metrics.hostile.as_ref(), report.hostile.as_mut()) else {
            return;
        };
        self.finish_half_open(out);
        out.handled = h.handled.iter().map(|(c, n)| ((*c).to_owned(), *n)).collect();
        for node in &self.nodes[..self.world.servers] {
            let Some(endpoint) = &node.endpoint else { continue };
            let stats = endpoint.endpoint_stats();
            let d = stats.datagrams;
            out.retries_sent += d.retries_sent;
            out.retries_rate_limited += d.retries_rate_limited;
            out.initials_validated += d.initials_validated;
            out.accept_failed += d.accept_failed;
            out.handshakes_rate_limited += stats.handshakes_rate_limited;
            out.address_limiter_refusals += stats.address_limiter.limited;
            out.connections_refused += stats.connections_refused;
            out.responses_dropped += stats.responses_dropped;
        }
        let (mut received, mut sent) = (0u64, 0u64);
        for &(rx, tx) in &h.per_source {
            received += rx;
            sent += tx;
            if rx > 0 {
                out.amplification = out.amplification.max(tx as f64 / rx as f64);
            } else if tx > 0 {
                out.amplification = f64::INFINITY;
            }
        }
        out.bytes_to_spoofed = sent;
        out.amplification_overall = if received == 0 {
            0.0
        } else {
            sent as f64 / received as f64
        };
        if let (Some(costs), Some(cpu)) = (&self.world.scenario.server_cpu, out.cpu.as_mut()) {
            cpu.cost_ns = [
                Class::Dropped,
                Class::Stateless,
                Class::Connection,
                Class::Retry,
                Class::Refused,
                Class::AcceptFailed,
                Class::Handshake,
            ]
            .into_iter()
            .map(|c| (c.name().to_owned(), c.cost(costs)))
            .collect();
            let elapsed = self.world.now.max(1);
            let whole = (elapsed / SECOND) as usize;
            for busy in &h.busy {
                let peak = busy
                    .iter()
                    .take(whole.max(1))
                    .map(|&b| b as f64 / SECOND as f64)
                    .fold(0.0, f64::max);
                cpu.peak_utilisation = cpu.peak_utilisation.max(peak);
                let total: Nanos = busy.iter().sum();
                cpu.mean_utilisation = cpu.mean_utilisation.max(total as f64 / elapsed as f64);
            }
        }
    }
}

/// The slot `i` of `v`, growing it with defaults as needed.
fn grow<T: Default>(v: &mut Vec<T>, i: usize) -> &mut T {
    if v.len() <= i {
        v.resize_with(i + 1, T::default);
    }
    &mut v[i]
}

/// Starts the hostile metrics' CPU section when the scenario models one.
pub(super) fn init_metrics(h: &mut HostileMetrics, scenario: &Scenario) {
    if scenario.server_cpu.is_some() {
        h.report.cpu = Some(CpuReport::default());
    }
}

/// Counts bytes a server sent to a spoofed source (the datagram itself goes nowhere).
pub(super) fn count_reply(world: &mut World, to: SocketAddr, bytes: usize) -> bool {
    let Some(&g) = world.flood.as_ref().and_then(|f| f.sources.get(&to)) else {
        return false;
    };
    if let Some(h) = world.metrics.hostile.as_mut() {
        grow(&mut h.per_source, g).1 += bytes as u64;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_follow_the_counter_that_moved() {
        let before = DatagramStats::default();
        let mut after = before;
        assert_eq!(Class::of(&before, &after), Class::Connection);
        after.dropped += 1;
        assert_eq!(Class::of(&before, &after), Class::Dropped);
        after.retries_sent += 1;
        assert_eq!(Class::of(&before, &after), Class::Retry);
    }

    #[test]
    fn the_length_field_of_an_initial_is_found() {
        // 0xc0 | version | dcid len 8 | dcid | scid len 8 | scid | token len 0 | length…
        let mut packet = vec![0xc3, 0, 0, 0, 1, 8];
        packet.extend([0xaa; 8]);
        packet.push(8);
        packet.extend([0xbb; 8]);
        packet.push(0);
        packet.extend([0x44, 0x9e, 0, 0, 0]);
        assert_eq!(initial_length_offset(&packet), Some(24));
        assert_eq!(packet[24], 0x44);
        assert_eq!(initial_length_offset(&packet[..10]), None);
    }
}
