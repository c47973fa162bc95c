//! Half-open attackers (see [`HalfOpen`](crate::scenario::HalfOpen)): raw nodes (see
//! [`RawNode`]) running QUIC clients that complete TLS with a game server and never send a
//! Hello, each connection holding one of the server's pending-handshake slots until the
//! server closes or refuses it.
//!
//! Each attacker address is one [`Attacker`]: a [`SilentClient`] with its own clock and a
//! link each way to the attacked server ([`Wire::Links`]), so what it sends goes through its
//! uplink to the server (and so through the CPU model, when there is one), the server's
//! answers come back through its downlink, and every datagram is hashed into the trace with
//! its fate. An attacker opens connections at its share of `open_per_s` until it holds its
//! share of `connections`; after the server ends some, it opens again `reconnect_after_ms`
//! later.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use tickwire_core::testing::SilentClient;
use tickwire_core::{Endpoint, Secrets};

use super::raw_node::{NewRawNode, RawNet, RawNode, RawTimer, Wire};
use super::{derive, server_addr, MILLI, SECOND};
use crate::clock::NodeClock;
use crate::crypto::sim_crypto;
use crate::link::{Link, Nanos};
use crate::report::{reason_name, HalfOpenReport};
use crate::scenario::Scenario;

/// One attacker address, holding its share of the silent connections.
#[derive(Debug)]
struct Attacker {
    addr: SocketAddr,
    /// The attacked game server.
    server: SocketAddr,
    client: SilentClient,
    clock: NodeClock,
    /// Connections it keeps open.
    share: u64,
    opened: u64,
    /// `client.tls_completed()` and `client.closed()` when last looked at.
    tls_seen: u64,
    closed_seen: u64,
    /// When it next opens a connection, in virtual time; `None` = no open scheduled.
    next_open: Option<Nanos>,
    /// Its client's next deadline, in virtual time.
    client_deadline: Option<Nanos>,
    /// Time between two opens, in nanoseconds.
    interval: Nanos,
    /// Delay before reopening, in nanoseconds; `None` = never reopen.
    reopen_after: Option<Nanos>,
    /// No connection opens at or after this virtual time.
    until: Nanos,
    buf: Vec<u8>,
}

/// The address of attacker `g`: `198.18.0.0/15` (RFC 2544, benchmarking), port 50 000.
fn attacker_addr(g: usize) -> SocketAddr {
    let ip = Ipv4Addr::from(0xC612_0001u32 + g as u32);
    SocketAddr::V4(SocketAddrV4::new(ip, 50_000))
}

/// Builds the attackers of `scenario` (none without `[half_open]`), each with its links, the
/// first connections staggered over one open interval.
pub(super) fn build(
    scenario: &Scenario,
    seed: u64,
    epoch: Instant,
    key_log: Option<Arc<dyn rustls::KeyLog>>,
) -> Vec<NewRawNode> {
    let Some(h) = &scenario.half_open else {
        return Vec::new();
    };
    let secs = |s: f64| (s * 1e9) as Nanos;
    let spec = scenario.link(&h.link).expect("validated");
    let sources = h.sources as usize;
    let interval = (SECOND * sources as Nanos / Nanos::from(h.open_per_s)).max(1);
    let start = secs(h.at_s);
    let until = h.until_s.map_or(Nanos::MAX, secs);
    (0..sources)
        .map(|g| {
            let clock = NodeClock::new(epoch);
            let secrets = Secrets::from_bytes(derive(seed, "half-open", g as u64, 0));
            let crypto = sim_crypto(derive(seed, "half-open/rustls", g as u64, 0), key_log.clone());
            let share =
                u64::from(h.connections / h.sources) + u64::from((g as u32) < h.connections % h.sources);
            let first = start + interval * g as Nanos / sources as Nanos;
            let attacker = Attacker {
                addr: attacker_addr(g),
                server: server_addr(h.server),
                client: SilentClient::new(secrets, clock.wall(), &crypto),
                clock,
                share,
                opened: 0,
                tls_seen: 0,
                closed_seen: 0,
                next_open: (first < until).then_some(first),
                client_deadline: None,
                interval,
                reopen_after: h.reconnect.then_some(h.reconnect_after_ms.saturating_mul(MILLI)),
                until,
                buf: Vec::new(),
            };
            let wire = Wire::Links {
                up: Box::new(Link::new(&spec, derive(seed, "half-open/up", g as u64, 0))),
                down: Box::new(Link::new(&spec, derive(seed, "half-open/down", g as u64, 0))),
                server: h.server,
            };
            (Box::new(attacker) as Box<dyn RawNode>, wire)
        })
        .collect()
}

/// The half-open section of the hostile report.
fn report<'a>(net: &'a mut RawNet<'_>) -> Option<&'a mut HalfOpenReport> {
    net.hostile().and_then(|h| h.report.half_open.as_mut())
}

/// Fills the half-open section's figures from the attacked game server's endpoint.
pub(super) fn finish_report(report: &mut HalfOpenReport, server: &Endpoint) {
    let stats = server.endpoint_stats();
    report.handshakes_refused_per_addr = stats.handshakes_refused_per_addr;
    report.handshakes_evicted_no_hello = stats.handshakes_evicted_no_hello;
    report.server_rejections = stats
        .rejections
        .iter()
        .map(|(reason, n)| (reason_name(*reason), *n))
        .collect();
}

impl Attacker {
    fn open_now(&self) -> u64 {
        self.opened - self.closed_seen
    }

    /// Opens a connection if it holds fewer than its share, and schedules the next open.
    fn open(&mut self, net: &mut RawNet<'_>) {
        let now = net.now();
        if now >= self.until || self.open_now() >= self.share {
            return;
        }
        self.client.connect(self.clock.instant(now), self.server);
        self.opened += 1;
        if let Some(r) = report(net) {
            r.opened += 1;
            r.peak_open = r.peak_open.max(r.opened - r.closed);
        }
        if self.open_now() < self.share && now + self.interval < self.until {
            self.next_open = Some(now + self.interval);
        }
    }

    /// After any input: sends what the client has, notices connections that completed TLS or
    /// ended (scheduling a reopen), and notes the client's next deadline.
    fn drive(&mut self, net: &mut RawNet<'_>) {
        let now = net.now();
        let local = self.clock.instant(now);
        while let Some(transmit) = self.client.poll_transmit(local, &mut self.buf) {
            let bytes = self.buf[..transmit.size].to_vec();
            if let Some(r) = report(net) {
                r.datagrams_sent += 1;
                r.bytes_sent += bytes.len() as u64;
            }
            net.send(self.addr, transmit.destination, bytes);
        }
        let tls = self.client.tls_completed() as u64;
        let closed = self.client.closed() as u64;
        let ended = closed - self.closed_seen;
        if let Some(r) = report(net) {
            r.tls_completed += tls - self.tls_seen;
            r.closed += ended;
        }
        self.tls_seen = tls;
        self.closed_seen = closed;
        if ended > 0 && self.next_open.is_none() {
            if let Some(after) = self.reopen_after {
                let at = now.saturating_add(after);
                if at < self.until {
                    self.next_open = Some(at);
                }
            }
        }
        self.client_deadline = self
            .client
            .poll_timeout()
            .map(|deadline| self.clock.virtual_at(deadline, now));
    }
}

impl RawNode for Attacker {
    fn addrs(&self) -> Vec<SocketAddr> {
        vec![self.addr]
    }

    /// Opens a connection (its schedule) or runs the client's timers (its transport).
    fn handle_time(&mut self, net: &mut RawNet<'_>, timer: RawTimer) {
        match timer {
            RawTimer::Schedule => {
                if self.next_open.is_some_and(|at| at <= net.now()) {
                    self.next_open = None;
                    self.open(net);
                }
            }
            RawTimer::Transport => self.client.handle_timeout(self.clock.instant(net.now())),
        }
        self.drive(net);
    }

    fn handle_datagram(&mut self, net: &mut RawNet<'_>, from: SocketAddr, _to: SocketAddr, payload: Vec<u8>) {
        if let Some(r) = report(net) {
            r.datagrams_received += 1;
            r.bytes_received += payload.len() as u64;
        }
        let local = self.clock.instant(net.now());
        self.client
            .handle_datagram(local, from, BytesMut::from(&payload[..]));
        self.drive(net);
    }

    fn poll_timeout(&self, timer: RawTimer) -> Option<Nanos> {
        match timer {
            RawTimer::Schedule => self.next_open,
            RawTimer::Transport => self.client_deadline,
        }
    }
}
