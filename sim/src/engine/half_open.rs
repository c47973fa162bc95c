//! Half-open attackers (see [`HalfOpen`]): QUIC clients that complete TLS with a game server
//! and never send a Hello, each connection holding one of the server's pending-handshake
//! slots until the server closes or refuses it.
//!
//! Each attacker address is one [`SilentClient`] with its own clock and a link each way to
//! the attacked server, driven like a node: what it sends goes through its uplink to the
//! server (and so through the CPU model, when there is one), the server's answers come back
//! through its downlink, and every datagram is hashed into the trace with its fate. An
//! attacker opens connections at its share of `open_per_s` until it holds its share of
//! `connections`; after the server ends some, it opens again `reconnect_after_ms` later.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use sha2::Digest;
use tickwire_core::testing::SilentClient;
use tickwire_core::Secrets;

use super::{derive, drop_code, hash_addr, Sim, What, World, MILLI, SECOND};
use crate::clock::NodeClock;
use crate::crypto::sim_crypto;
use crate::link::{Link, Nanos};
use crate::report::{reason_name, HalfOpenReport, HostileReport};
use crate::scenario::{HalfOpen, Scenario};

/// An attacker woken this many times at one virtual instant is pushed 1 µs ahead (livelock
/// guard, as for nodes).
const MAX_WAKES_PER_INSTANT: u32 = 64;

/// What happens to an attacker.
#[derive(Debug)]
pub(super) enum Step {
    /// Attacker `source` opens a connection if it holds fewer than its share.
    Open { source: usize },
    /// Attacker `source`'s armed deadline.
    Wake { source: usize },
    /// A datagram from the game server at `from` reaches attacker `source`.
    Deliver {
        source: usize,
        from: SocketAddr,
        payload: Vec<u8>,
    },
}

/// One attacker address.
#[derive(Debug)]
struct Attacker {
    addr: SocketAddr,
    client: SilentClient,
    clock: NodeClock,
    up: Link,
    down: Link,
    /// Connections it keeps open.
    share: u64,
    opened: u64,
    /// `client.tls_completed()` and `client.closed()` when last looked at.
    tls_seen: u64,
    closed_seen: u64,
    /// Whether a [`Step::Open`] is queued.
    opening: bool,
    armed: Option<Nanos>,
    wakes_at_now: (Nanos, u32),
}

impl Attacker {
    fn open_now(&self) -> u64 {
        self.opened - self.closed_seen
    }
}

/// Every half-open attacker of a run.
#[derive(Debug)]
pub(super) struct HalfOpenNet {
    /// The attacked game server's node index.
    server: usize,
    server_addr: SocketAddr,
    /// Attacker address → attacker index.
    by_addr: BTreeMap<SocketAddr, usize>,
    attackers: Vec<Attacker>,
    /// Time between two opens by one attacker, in nanoseconds.
    interval: Nanos,
    /// Delay before reopening, in nanoseconds; `None` = never reopen.
    reopen_after: Option<Nanos>,
    start: Nanos,
    /// No connection opens at or after this virtual time.
    until: Nanos,
    open_total: u64,
    report: HalfOpenReport,
}

/// The address of attacker `g`: `198.18.0.0/15` (RFC 2544, benchmarking), port 50 000.
fn attacker_addr(g: usize) -> SocketAddr {
    let ip = Ipv4Addr::from(0xC612_0001u32 + g as u32);
    SocketAddr::V4(SocketAddrV4::new(ip, 50_000))
}

/// Builds the attackers of `scenario` (none: `None`) against game server `server_addr`.
pub(super) fn build(
    scenario: &Scenario,
    seed: u64,
    epoch: Instant,
    server_addr: SocketAddr,
    key_log: Option<Arc<dyn rustls::KeyLog>>,
) -> Option<HalfOpenNet> {
    let h: &HalfOpen = scenario.half_open.as_ref()?;
    let secs = |s: f64| (s * 1e9) as Nanos;
    let spec = scenario.link(&h.link).expect("validated");
    let sources = h.sources as usize;
    let attackers: Vec<Attacker> = (0..sources)
        .map(|g| {
            let clock = NodeClock::new(epoch);
            let secrets = Secrets::from_bytes(derive(seed, "half-open", g as u64, 0));
            let crypto = sim_crypto(derive(seed, "half-open/rustls", g as u64, 0), key_log.clone());
            let share =
                u64::from(h.connections / h.sources) + u64::from((g as u32) < h.connections % h.sources);
            Attacker {
                addr: attacker_addr(g),
                client: SilentClient::new(secrets, clock.wall(), &crypto),
                clock,
                up: Link::new(&spec, derive(seed, "half-open/up", g as u64, 0)),
                down: Link::new(&spec, derive(seed, "half-open/down", g as u64, 0)),
                share,
                opened: 0,
                tls_seen: 0,
                closed_seen: 0,
                opening: false,
                armed: None,
                wakes_at_now: (0, 0),
            }
        })
        .collect();
    Some(HalfOpenNet {
        server: h.server,
        server_addr,
        by_addr: attackers.iter().enumerate().map(|(g, a)| (a.addr, g)).collect(),
        attackers,
        interval: (SECOND * sources as Nanos / Nanos::from(h.open_per_s)).max(1),
        reopen_after: h.reconnect.then_some(h.reconnect_after_ms.saturating_mul(MILLI)),
        start: secs(h.at_s),
        until: h.until_s.map_or(Nanos::MAX, secs),
        open_total: 0,
        report: HalfOpenReport {
            sources: h.sources,
            target_connections: h.connections,
            ..HalfOpenReport::default()
        },
    })
}

/// Routes a datagram a game server sent to `to` through that attacker's downlink, hashing
/// its fate; `false` if `to` is no attacker.
pub(super) fn route(world: &mut World, from: SocketAddr, to: SocketAddr, bytes: &[u8]) -> bool {
    let Some(net) = world.half_open.as_mut() else {
        return false;
    };
    let Some(&source) = net.by_addr.get(&to) else {
        return false;
    };
    let outcome = net.attackers[source].down.transmit(world.now, bytes.to_vec());
    if let Some(reason) = outcome.dropped {
        world.trace.update([0, drop_code(reason)]);
    }
    for delivery in outcome.deliveries {
        world
            .trace
            .update([1, u8::from(delivery.corrupted), u8::from(delivery.duplicate)]);
        world.trace.update(delivery.at.to_be_bytes());
        world.queue.push(
            delivery.at,
            What::HalfOpen(Step::Deliver {
                source,
                from,
                payload: delivery.payload,
            }),
        );
    }
    true
}

impl HalfOpenNet {
    /// After any input to attacker `source`: sends what it has through its uplink, notices
    /// connections that completed TLS or ended (scheduling reopens), and arms its timer.
    fn drive(&mut self, source: usize, world: &mut World) {
        let now = world.now;
        let a = &mut self.attackers[source];
        let local = a.clock.instant(now);
        let mut buf = std::mem::take(&mut world.buf);
        while let Some(transmit) = a.client.poll_transmit(local, &mut buf) {
            let bytes = &buf[..transmit.size];
            world.datagrams += 1;
            world.trace.update(now.to_be_bytes());
            hash_addr(&mut world.trace, a.addr);
            hash_addr(&mut world.trace, transmit.destination);
            world.trace.update((bytes.len() as u32).to_be_bytes());
            world.trace.update(bytes);
            if let Some(capture) = &mut world.capture {
                if let Err(e) = capture.write(now, a.addr, transmit.destination, bytes) {
                    world.capture_error.get_or_insert(e);
                }
            }
            self.report.datagrams_sent += 1;
            self.report.bytes_sent += bytes.len() as u64;
            let Some(&dst) = world.addrs.get(&transmit.destination) else {
                world.trace.update([0xff]);
                world.metrics.no_route += 1;
                continue;
            };
            let outcome = a.up.transmit(now, bytes.to_vec());
            world.enqueue(outcome, dst, a.addr);
        }
        world.buf = buf;

        let tls = a.client.tls_completed() as u64;
        self.report.tls_completed += tls - a.tls_seen;
        a.tls_seen = tls;
        let closed = a.client.closed() as u64;
        let ended = closed - a.closed_seen;
        a.closed_seen = closed;
        self.report.closed += ended;
        self.open_total -= ended;
        if ended > 0 && !a.opening {
            if let Some(after) = self.reopen_after {
                let at = now.saturating_add(after);
                if at < self.until {
                    a.opening = true;
                    world.push(at, What::HalfOpen(Step::Open { source }));
                }
            }
        }

        if let Some(deadline) = a.client.poll_timeout() {
            let mut at = a.clock.virtual_at(deadline, now);
            if at == now && a.wakes_at_now.0 == now && a.wakes_at_now.1 >= MAX_WAKES_PER_INSTANT {
                at = now + 1_000;
            }
            if a.armed.is_none_or(|armed| at < armed) {
                a.armed = Some(at);
                world.push(at, What::HalfOpen(Step::Wake { source }));
            }
        }
    }
}

impl Sim {
    /// Schedules every attacker's first connection, staggered over one open interval.
    pub(super) fn schedule_half_open(&mut self) {
        let Some(net) = self.world.half_open.as_mut() else {
            return;
        };
        let sources = net.attackers.len() as Nanos;
        let mut first = Vec::with_capacity(net.attackers.len());
        for (source, a) in net.attackers.iter_mut().enumerate() {
            let at = net.start + net.interval * source as Nanos / sources;
            if at < net.until {
                a.opening = true;
                first.push((at, source));
            }
        }
        for (at, source) in first {
            self.world.push(at, What::HalfOpen(Step::Open { source }));
        }
    }

    /// Runs one attacker step.
    pub(super) fn half_open(&mut self, step: Step) {
        let Some(mut net) = self.world.half_open.take() else {
            return;
        };
        let now = self.world.now;
        let source = match step {
            Step::Open { source } => {
                let a = &mut net.attackers[source];
                a.opening = false;
                if now < net.until && a.open_now() < a.share {
                    a.client.connect(a.clock.instant(now), net.server_addr);
                    a.opened += 1;
                    net.report.opened += 1;
                    net.open_total += 1;
                    net.report.peak_open = net.report.peak_open.max(net.open_total);
                    if a.open_now() < a.share && now + net.interval < net.until {
                        a.opening = true;
                        self.world
                            .push(now + net.interval, What::HalfOpen(Step::Open { source }));
                    }
                }
                source
            }
            Step::Wake { source } => {
                let a = &mut net.attackers[source];
                if a.armed != Some(now) {
                    self.world.counts.stale_wakes += 1;
                    self.world.half_open = Some(net);
                    return;
                }
                a.armed = None;
                if a.wakes_at_now.0 == now {
                    a.wakes_at_now.1 += 1;
                } else {
                    a.wakes_at_now = (now, 1);
                }
                a.client.handle_timeout(a.clock.instant(now));
                source
            }
            Step::Deliver {
                source,
                from,
                payload,
            } => {
                let a = &mut net.attackers[source];
                net.report.datagrams_received += 1;
                net.report.bytes_received += payload.len() as u64;
                a.client
                    .handle_datagram(a.clock.instant(now), from, BytesMut::from(&payload[..]));
                source
            }
        };
        net.drive(source, &mut self.world);
        self.world.half_open = Some(net);
    }

    /// Fills the hostile report's half-open section from the attackers' counters and the
    /// attacked game server's endpoint statistics.
    pub(super) fn finish_half_open(&self, out: &mut HostileReport) {
        let Some(net) = &self.world.half_open else {
            return;
        };
        let mut report = net.report.clone();
        if let Some(endpoint) = &self.nodes[net.server].endpoint {
            let stats = endpoint.endpoint_stats();
            report.handshakes_refused_per_addr = stats.handshakes_refused_per_addr;
            report.handshakes_evicted_no_hello = stats.handshakes_evicted_no_hello;
            report.server_rejections = stats
                .rejections
                .iter()
                .map(|(reason, n)| (reason_name(*reason), *n))
                .collect();
        }
        out.half_open = Some(report);
    }
}
