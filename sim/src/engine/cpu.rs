//! How game servers take datagrams: the CPU model that makes hostile traffic cost a server
//! time, and the hostile report's tallies of what each server did with each datagram.
//!
//! With `[server_cpu]`, a game server handles one datagram at a time: each costs the time the
//! scenario's [`ServerCpu`] table gives for what the endpoint did with it (see [`Class`]),
//! and datagrams arriving meanwhile wait in a bounded FIFO receive queue.

use std::collections::VecDeque;
use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use sha2::Digest;
use tickwire_core::stats::DatagramStats;

use super::{drive, half_open, Part, Sim, What, MILLI, SECOND};
use crate::link::Nanos;
use crate::scenario::ServerCpu;

/// Memory the hostile report's estimate charges per connection, in bytes (see
/// [`HostileReport::peak_memory_estimate_bytes`](crate::report::HostileReport)).
const CONNECTION_BYTES_ESTIMATE: u64 = 64 << 10;
/// Trace marker of a datagram dropped because a server's receive queue was full.
const RX_QUEUE_FULL_MARK: u8 = 0xfc;

/// What a server's endpoint did with one datagram, from its [`DatagramStats`] before and
/// after; the CPU model charges by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
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

impl Part<'_> {
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
                    node.wires.trace.update([RX_QUEUE_FULL_MARK]);
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
                    self.world.push_from(to, at, What::CpuFree { node: to });
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
            self.world.push_from(id, at, What::CpuFree { node: id });
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
            self.world.push_from(id, at, What::CpuFree { node: id });
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
                *h.busy_ns(id, (now / SECOND) as usize) += cost;
            }
        }
        drive(id, node, self.world);
    }
}

impl Sim {
    /// Fills the hostile report's end-of-run figures from the servers' endpoints and the
    /// run's merged `metrics`.
    pub(super) fn finish_hostile(
        &self,
        metrics: &crate::report::Metrics,
        report: &mut crate::report::Report,
    ) {
        let world = &self.groups[0];
        let (Some(h), Some(out)) = (metrics.hostile.as_ref(), report.hostile.as_mut()) else {
            return;
        };
        if let (Some(attack), Some(report)) = (&world.scenario.half_open, out.half_open.as_mut()) {
            if let Some(endpoint) = &self.nodes[attack.server].endpoint {
                half_open::finish_report(report, endpoint);
            }
        }
        out.handled = h.handled.iter().map(|(c, n)| ((*c).to_owned(), *n)).collect();
        for node in &self.nodes[..world.servers] {
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
        if let (Some(costs), Some(cpu)) = (&world.scenario.server_cpu, out.cpu.as_mut()) {
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
            let elapsed = self.now.max(1);
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
}
