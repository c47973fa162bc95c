//! The real-UDP impairment proxy without its sockets: the simulator's [`Link`] models applied
//! to real datagrams between real processes, for machines without kernel netem
//! (`tc qdisc … netem`). `tickwire-sim proxy` drives a [`ProxyCore`] with a mio event loop
//! and real UDP sockets; this module holds everything else — flows, links, the timer heap,
//! counters — and runs without a socket or a clock.
//!
//! ```text
//!                      ┌──────────────── proxy ────────────────┐
//!  client A ──┐        │             flow 0: uplink Link ─► socket A' ──┐
//!             ├─► listen ─► flow table                               ├─► upstream
//!  client B ──┘        │             flow 1: uplink Link ─► socket B' ──┘
//!      ▲               │  ◄─ downlink Link ◄─ (replies to A', B')      │
//!      └───────────────┴── timer heap (deliver_at, seq) ───────────────┘
//! ```
//!
//! **NAT-like flows.** Each distinct client address opens a *flow* with its own socket `S`
//! towards the upstream (the driver binds it to an ephemeral port of the upstream's address
//! family and connects it), so the upstream server sees one address per client (like an
//! endpoint-independent NAT mapping, RFC 4787 §4.1) and its replies are routed back to the
//! right client. At most [`ProxyConfig::max_flows`] flows exist at once (default 4 096; each
//! holds one file descriptor, so the process's descriptor limit may bind first); a datagram
//! from a new client when the table is full, after expiring idle flows, is dropped and
//! counted in [`ProxyStats::flows_refused`]. A flow idle for
//! [`ProxyConfig::idle_timeout_ms`] in both directions is closed (RFC 4787 §4.3, REQ-5: at
//! least two minutes).
//!
//! **Links.** A flow has one [`Link`] per [`Direction`]: client → upstream (*uplink*) and
//! upstream → client (*downlink*), seeded by [`flow_seed`] from the proxy's seed, the flow's
//! index (flows are numbered from 0 in order of their first datagram) and the direction.
//! The links' virtual time is nanoseconds since the proxy started, which the driver reads
//! from the monotonic clock; a datagram received at `now` is offered to its link at `now`,
//! and each delivery the link returns waits in a timer heap ordered by `(deliver_at, seq)`
//! until its time comes.
//!
//! **Determinism.** Which datagrams a link drops, corrupts or duplicates, and the modelled
//! delay of each, depend only on the seed, the flow index and the datagram's position in its
//! direction (random elements draw a fixed number of values per datagram, see
//! [`link`](crate::link)); the bandwidth stage also depends on arrival times. Real timing is
//! not reproducible, and so neither is what the endpoints send.
//!
//! **Bounds.** Every buffer is bounded: the flow table ([`ProxyConfig::max_flows`]) and the
//! timer heap ([`ProxyConfig::max_pending_datagrams`] and
//! [`ProxyConfig::max_pending_bytes`]; a delivery that does not fit is dropped and counted in
//! [`DirectionStats::overflow_dropped`]).
//!
//! A driver's loop, with `S` its socket type (`now` in ns since the proxy started):
//!
//! ```
//! use std::net::SocketAddr;
//! use tickwire_sim::link::LinkSpec;
//! use tickwire_sim::proxy::{Destination, ProxyConfig, ProxyCore};
//!
//! // A stand-in for sockets: a flow's "socket" is its slot number.
//! let spec = LinkSpec::default();
//! let mut proxy = ProxyCore::<usize>::new(&spec, &spec, 1, ProxyConfig::default())?;
//! let client: SocketAddr = "127.0.0.1:5000".parse()?;
//! // A datagram from a new client: the driver opens the flow's upstream socket.
//! proxy.handle_client_datagram(0, client, b"hello", |slot| Some(slot));
//! // Later, at `poll_timeout` or when a socket is readable: send what is due.
//! let mut sent = Vec::new();
//! proxy.deliver_due(proxy.poll_timeout(), |to, payload| {
//!     sent.push((matches!(to, Destination::Upstream(_)), payload.to_vec()));
//!     true // the socket took it
//! });
//! assert_eq!(sent, vec![(true, b"hello".to_vec())]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::net::SocketAddr;

use serde::Serialize;

mod stats;
mod table;

use stats::add_link_stats;
pub use stats::{DirectionStats, ProxyStats};
use table::{DeliveryQueue, FlowTable};

use crate::engine::derive;
use crate::link::{Delivery, Link, LinkSpec, LinkSpecError, LinkStats, Nanos};

/// How often idle flows are looked for, ns.
const EXPIRY_CHECK_NS: Nanos = 1_000_000_000;

/// Limits of a proxy. Plain data; [`Default`] suits a game server with up to a few thousand
/// clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyConfig {
    /// Most flows (distinct client addresses) at once. Default 4 096. Each flow holds one UDP
    /// socket, so this many descriptors must be available.
    pub max_flows: usize,
    /// A flow with no datagram received and none pending in either direction for this long is
    /// closed, ms. Default 120 000: RFC 4787 §4.3 REQ-5 asks NATs to keep UDP mappings at
    /// least two minutes.
    pub idle_timeout_ms: u64,
    /// Most deliveries waiting in the timer heap. Default 65 536.
    pub max_pending_datagrams: usize,
    /// Most payload bytes waiting in the timer heap. Default 32 MiB: 250 ms at 1 Gbit/s.
    pub max_pending_bytes: usize,
}

impl Default for ProxyConfig {
    fn default() -> ProxyConfig {
        ProxyConfig {
            max_flows: 4096,
            idle_timeout_ms: 120_000,
            max_pending_datagrams: 65_536,
            max_pending_bytes: 32 << 20,
        }
    }
}

/// A direction through the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Client → upstream.
    Uplink,
    /// Upstream → client.
    Downlink,
}

impl Direction {
    fn label(self) -> &'static str {
        match self {
            Direction::Uplink => "proxy/uplink",
            Direction::Downlink => "proxy/downlink",
        }
    }
}

/// The 32-byte seed of the [`Link`] of flow number `flow` (0 for the first client seen) in
/// `direction`: [`engine::derive`](crate::engine::derive)`(seed, "proxy/uplink" or
/// "proxy/downlink", flow, 0)`, i.e. SHA-256 over the proxy's seed, the label and the flow
/// index. Replaying a [`Link`] built from it shows offline what the proxy did to that flow's
/// n-th datagram.
pub fn flow_seed(seed: u64, flow: u64, direction: Direction) -> [u8; 32] {
    derive(seed, direction.label(), flow, 0)
}

/// Where a due delivery goes ([`ProxyCore::deliver_due`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination<'a, S> {
    /// To the upstream, through this flow's socket.
    Upstream(&'a S),
    /// To this client, through the listening socket.
    Client(SocketAddr),
}

/// The impairment proxy's state: the flow table (with each flow's socket `S` towards the
/// upstream), the links and the timer heap. See the [module docs](self).
///
/// Sans-IO: the driver owns the listening socket and the clock (`now`: ns since the proxy
/// started, never decreasing). Inputs are [`handle_client_datagram`](Self::handle_client_datagram),
/// [`handle_upstream_datagram`](Self::handle_upstream_datagram),
/// [`handle_recv_error`](Self::handle_recv_error) and [`handle_timeout`](Self::handle_timeout);
/// output is [`deliver_due`](Self::deliver_due), to be called whenever
/// [`poll_timeout`](Self::poll_timeout) has passed; getters are [`socket`](Self::socket) and
/// [`stats`](Self::stats).
#[derive(Debug)]
pub struct ProxyCore<S> {
    spec_up: LinkSpec,
    spec_down: LinkSpec,
    seed: u64,
    config: ProxyConfig,
    flows: FlowTable<S>,
    queue: DeliveryQueue,
    /// Counters other than the live flows' link stats.
    counters: ProxyStats,
    /// Link stats of closed flows, per direction.
    retired: [LinkStats; 2],
    next_expiry_check: Nanos,
    deliveries: Vec<Delivery>,
}

impl<S> ProxyCore<S> {
    /// A proxy with no flows: client → upstream datagrams go through a [`Link`] built from
    /// `spec_up`, replies through one from `spec_down`, per flow, seeded from `seed` by
    /// [`flow_seed`].
    ///
    /// # Errors
    /// A spec fails [`LinkSpec::validate`].
    pub fn new(
        spec_up: &LinkSpec,
        spec_down: &LinkSpec,
        seed: u64,
        config: ProxyConfig,
    ) -> Result<ProxyCore<S>, LinkSpecError> {
        spec_up.validate()?;
        spec_down.validate()?;
        Ok(ProxyCore {
            spec_up: spec_up.clone(),
            spec_down: spec_down.clone(),
            seed,
            flows: FlowTable::new(config.max_flows),
            queue: DeliveryQueue::new(config.max_pending_datagrams, config.max_pending_bytes),
            config,
            counters: ProxyStats::default(),
            retired: [LinkStats::default(), LinkStats::default()],
            next_expiry_check: EXPIRY_CHECK_NS,
            deliveries: Vec::new(),
        })
    }

    /// The socket of the flow in `slot` (the slot `open` was given when the flow opened), if
    /// that flow is still open.
    pub fn socket(&self, slot: usize) -> Option<&S> {
        self.flows.at(slot).map(|flow| &flow.socket)
    }

    /// Counters at `now`, the links' summed over open and closed flows.
    pub fn stats(&self, now: Nanos) -> ProxyStats {
        let mut stats = self.counters.clone();
        stats.elapsed_ns = now;
        stats.uplink.link = self.retired[0].clone();
        stats.downlink.link = self.retired[1].clone();
        for flow in self.flows.iter() {
            add_link_stats(&mut stats.uplink.link, &flow.uplink.stats());
            add_link_stats(&mut stats.downlink.link, &flow.downlink.stats());
        }
        stats.flows_active = self.flows.len();
        stats.pending_datagrams = self.queue.len();
        stats.pending_bytes = self.queue.bytes();
        stats
    }

    /// A datagram from `client`, received at `now`, offered to its flow's uplink. A client
    /// without a flow gets one if there is room (idle flows are expired first when the table
    /// is full): `open(slot)` must return the flow's socket towards the upstream, ready to
    /// read in `slot`, or `None` if it cannot be set up. Without a flow the datagram is
    /// dropped and counted in [`ProxyStats::flows_refused`].
    pub fn handle_client_datagram(
        &mut self,
        now: Nanos,
        client: SocketAddr,
        payload: &[u8],
        open: impl FnOnce(usize) -> Option<S>,
    ) {
        let slot = match self.flows.lookup(client) {
            Some(slot) => slot,
            None => match self.open_flow(client, now, open) {
                Some(slot) => slot,
                None => {
                    self.counters.flows_refused += 1;
                    return;
                }
            },
        };
        self.offer(Direction::Uplink, slot, now, payload);
    }

    /// A datagram from the upstream on the socket of flow `slot`, received at `now`, offered
    /// to its downlink. Ignored if that flow is closed.
    pub fn handle_upstream_datagram(&mut self, now: Nanos, slot: usize, payload: &[u8]) {
        self.offer(Direction::Downlink, slot, now, payload);
    }

    /// A receive error that UDP reports and the proxy ignores (an ICMP port unreachable
    /// reported on a socket, and the like): counted in [`ProxyStats::recv_errors`].
    pub fn handle_recv_error(&mut self) {
        self.counters.recv_errors += 1;
    }

    /// Closes the flows idle for [`ProxyConfig::idle_timeout_ms`] (dropping their sockets),
    /// if the periodic check is due at `now`. A no-op otherwise.
    pub fn handle_timeout(&mut self, now: Nanos) {
        if now >= self.next_expiry_check {
            self.expire(now);
            self.next_expiry_check = now.saturating_add(EXPIRY_CHECK_NS);
        }
    }

    /// When the driver must next call [`deliver_due`](Self::deliver_due) and
    /// [`handle_timeout`](Self::handle_timeout), ns since the proxy started: the earliest
    /// pending delivery or the next idle check, whichever comes first.
    pub fn poll_timeout(&self) -> Nanos {
        self.queue
            .next_due()
            .map_or(self.next_expiry_check, |at| at.min(self.next_expiry_check))
    }

    /// Hands every delivery due at `now` to `send`, which transmits the payload to the
    /// [`Destination`] and returns whether the socket took it. A refused one is counted in
    /// [`DirectionStats::send_failed`] (UDP gives no delivery guarantee: a full socket buffer
    /// is one more loss), as is one whose flow has closed.
    pub fn deliver_due(&mut self, now: Nanos, mut send: impl FnMut(Destination<'_, S>, &[u8]) -> bool) {
        while let Some(p) = self.queue.pop_due(now) {
            let sent = self
                .flows
                .get(p.slot, p.serial)
                .is_some_and(|flow| match p.direction {
                    Direction::Uplink => send(Destination::Upstream(&flow.socket), &p.payload),
                    Direction::Downlink => send(Destination::Client(flow.client), &p.payload),
                });
            let stats = self.counters.direction_mut(p.direction);
            let late = now - p.at;
            stats.late_ns_sum += late;
            stats.late_ns_max = stats.late_ns_max.max(late);
            if sent {
                stats.forwarded += 1;
                stats.forwarded_bytes += p.payload.len() as u64;
            } else {
                stats.send_failed += 1;
            }
        }
    }

    /// Offers `payload`, received at `now`, to flow `slot`'s link in `direction` and queues
    /// what it delivers.
    fn offer(&mut self, direction: Direction, slot: usize, now: Nanos, payload: &[u8]) {
        let Some(flow) = self.flows.get_mut(slot) else {
            return;
        };
        self.deliveries.clear();
        let _dropped = flow
            .link_mut(direction)
            .transmit_into(now, payload.to_vec(), &mut self.deliveries);
        flow.last_active = flow.last_active.max(now);
        let serial = flow.serial;
        let stats = self.counters.direction_mut(direction);
        for delivery in self.deliveries.drain(..) {
            stats.record_delay(delivery.at.saturating_sub(now));
            flow.last_active = flow.last_active.max(delivery.at);
            if !self
                .queue
                .push(delivery.at, direction, slot, serial, delivery.payload)
            {
                stats.overflow_dropped += 1;
            }
        }
    }

    /// Opens a flow for `client` with the socket `open` sets up for its slot. `None` if the
    /// table is full (after expiring idle flows) or `open` fails.
    fn open_flow(
        &mut self,
        client: SocketAddr,
        now: Nanos,
        open: impl FnOnce(usize) -> Option<S>,
    ) -> Option<usize> {
        if self.flows.is_full() {
            self.expire(now);
        }
        let slot = self.flows.vacant_slot()?;
        let socket = open(slot)?;
        let serial = self.flows.next_serial();
        let uplink = Link::new(&self.spec_up, flow_seed(self.seed, serial, Direction::Uplink));
        let downlink = Link::new(&self.spec_down, flow_seed(self.seed, serial, Direction::Downlink));
        let inserted = self.flows.insert(client, now, socket, uplink, downlink)?;
        debug_assert_eq!(inserted, slot, "a flow opens in the vacant slot");
        self.counters.flows_opened += 1;
        Some(inserted)
    }

    /// Closes flows idle for the configured timeout, keeping their link counters.
    fn expire(&mut self, now: Nanos) {
        let idle_ns = self.config.idle_timeout_ms.saturating_mul(1_000_000);
        for (_, flow) in self.flows.expire(now, idle_ns) {
            add_link_stats(&mut self.retired[0], &flow.uplink.stats());
            add_link_stats(&mut self.retired[1], &flow.downlink.stats());
            self.counters.flows_expired += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::link::Delay;

    const MS: Nanos = 1_000_000;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, port))
    }

    /// A proxy whose links delay every datagram by 10 ms; a flow's "socket" is its client's
    /// port.
    fn proxy(config: ProxyConfig) -> ProxyCore<u16> {
        let spec = LinkSpec {
            latency: Delay::Constant { ms: 10.0 },
            ..LinkSpec::default()
        };
        ProxyCore::new(&spec, &spec, 7, config).unwrap()
    }

    fn from_client(p: &mut ProxyCore<u16>, now: Nanos, port: u16, payload: &[u8]) {
        p.handle_client_datagram(now, addr(port), payload, |_| Some(port));
    }

    /// What `deliver_due(now)` sends: (upstream socket or client port, payload).
    fn due(p: &mut ProxyCore<u16>, now: Nanos) -> Vec<(Result<u16, u16>, Vec<u8>)> {
        let mut out = Vec::new();
        p.deliver_due(now, |to, payload| {
            let to = match to {
                Destination::Upstream(socket) => Ok(*socket),
                Destination::Client(client) => Err(client.port()),
            };
            out.push((to, payload.to_vec()));
            true
        });
        out
    }

    #[test]
    fn flow_seeds_differ_by_flow_and_direction() {
        let seeds = [
            flow_seed(1, 0, Direction::Uplink),
            flow_seed(1, 0, Direction::Downlink),
            flow_seed(1, 1, Direction::Uplink),
            flow_seed(2, 0, Direction::Uplink),
        ];
        for (i, a) in seeds.iter().enumerate() {
            for b in &seeds[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_eq!(seeds[0], flow_seed(1, 0, Direction::Uplink));
    }

    #[test]
    fn datagrams_go_up_through_their_clients_flow_and_replies_come_back() {
        let mut p = proxy(ProxyConfig::default());
        let mut opened = Vec::new();
        for port in [1000, 1001] {
            p.handle_client_datagram(0, addr(port), &[port as u8], |slot| {
                opened.push(slot);
                Some(port)
            });
        }
        assert_eq!(opened, vec![0, 1], "one flow, and one socket, per client");
        assert_eq!(p.poll_timeout(), 10 * MS);
        assert!(due(&mut p, 10 * MS - 1).is_empty(), "never early");
        assert_eq!(
            due(&mut p, 10 * MS),
            vec![(Ok(1000), vec![1000u16 as u8]), (Ok(1001), vec![1001u16 as u8])]
        );
        p.handle_upstream_datagram(12 * MS, 1, b"reply");
        assert_eq!(due(&mut p, 30 * MS), vec![(Err(1001), b"reply".to_vec())]);
        assert_eq!(p.socket(1), Some(&1001));

        let stats = p.stats(30 * MS);
        assert_eq!((stats.flows_opened, stats.flows_active), (2, 2));
        assert_eq!((stats.uplink.forwarded, stats.downlink.forwarded), (2, 1));
        assert_eq!(stats.uplink.delay_ns_min, Some(10 * MS));
        assert_eq!(stats.downlink.late_ns_max, 8 * MS, "sent at 30 ms, due at 22 ms");
    }

    #[test]
    fn a_full_table_or_a_socket_that_cannot_open_refuses_the_client() {
        let mut p = proxy(ProxyConfig {
            max_flows: 1,
            ..ProxyConfig::default()
        });
        from_client(&mut p, 0, 1, b"a");
        from_client(&mut p, 0, 2, b"b");
        p.handle_client_datagram(0, addr(3), b"c", |_| None);
        p.handle_recv_error();
        let stats = p.stats(0);
        assert_eq!((stats.flows_opened, stats.flows_refused), (1, 2));
        assert_eq!((stats.uplink.link.offered, stats.recv_errors), (1, 1));
    }

    #[test]
    fn idle_flows_close_and_keep_their_counts() {
        let idle_ms = 1_000;
        let mut p = proxy(ProxyConfig {
            idle_timeout_ms: idle_ms,
            ..ProxyConfig::default()
        });
        from_client(&mut p, 0, 1, b"a");
        assert_eq!(due(&mut p, 10 * MS).len(), 1);
        // Idle since the delivery at 10 ms; the check runs once a second.
        p.handle_timeout(idle_ms * MS);
        assert_eq!(p.stats(idle_ms * MS).flows_active, 1, "idle for 990 ms only");
        assert_eq!(p.poll_timeout(), 2 * idle_ms * MS);
        p.handle_timeout(2 * idle_ms * MS);
        let stats = p.stats(2 * idle_ms * MS);
        assert_eq!((stats.flows_active, stats.flows_expired), (0, 1));
        assert_eq!(stats.uplink.link.offered, 1, "a closed flow's link counts remain");
        assert_eq!(p.socket(0), None);
        from_client(&mut p, 2 * idle_ms * MS, 1, b"again");
        assert_eq!(
            p.stats(0).flows_opened,
            2,
            "the client comes back with a new flow"
        );
    }

    #[test]
    fn a_full_timer_heap_drops_and_a_refused_send_counts() {
        let mut p = proxy(ProxyConfig {
            max_pending_datagrams: 1,
            ..ProxyConfig::default()
        });
        from_client(&mut p, 0, 1, b"a");
        from_client(&mut p, 0, 1, b"b");
        assert_eq!(p.stats(0).uplink.overflow_dropped, 1);
        p.deliver_due(10 * MS, |_, _| false);
        let stats = p.stats(10 * MS);
        assert_eq!((stats.uplink.forwarded, stats.uplink.send_failed), (0, 1));
        assert_eq!(stats.pending_datagrams, 0);
    }
}
