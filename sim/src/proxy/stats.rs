//! What the proxy counts, per direction and overall.

use std::fmt;

use serde::Serialize;

use super::Direction;
use crate::link::{LinkStats, Nanos};

/// Counters of one direction, over all flows since the proxy started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DirectionStats {
    /// The link models' counters, summed over flows (closed flows included). `delivered`
    /// counts deliveries the model scheduled; some may still be pending or overflow.
    pub link: LinkStats,
    /// Datagrams sent on to their destination.
    pub forwarded: u64,
    /// Payload bytes sent on.
    pub forwarded_bytes: u64,
    /// Deliveries dropped because the timer heap was full ([`ProxyConfig`](super::ProxyConfig)).
    pub overflow_dropped: u64,
    /// Deliveries the OS refused to send (socket buffer full, ICMP error pending), or whose
    /// flow was gone.
    pub send_failed: u64,
    /// Sum of the modelled one-way delay (delivery time − arrival at the proxy) over the
    /// deliveries the model scheduled (`link.delivered`), ns.
    pub delay_ns_sum: u64,
    /// Smallest modelled one-way delay, ns; `None` before the first delivery.
    pub delay_ns_min: Option<u64>,
    /// Largest modelled one-way delay, ns.
    pub delay_ns_max: u64,
    /// Sum over sent deliveries (`forwarded + send_failed`) of how long after its scheduled
    /// time each left, ns: the proxy's own timing error.
    pub late_ns_sum: u64,
    /// Largest lateness, ns.
    pub late_ns_max: u64,
}

impl DirectionStats {
    /// Mean modelled one-way delay, ms (0 if nothing delivered).
    pub fn mean_delay_ms(&self) -> f64 {
        mean_ms(self.delay_ns_sum, self.link.delivered)
    }

    /// Mean lateness of sent deliveries, ms (0 if none sent).
    pub fn mean_late_ms(&self) -> f64 {
        mean_ms(self.late_ns_sum, self.forwarded + self.send_failed)
    }

    pub(super) fn record_delay(&mut self, delay: Nanos) {
        self.delay_ns_sum += delay;
        self.delay_ns_min = Some(self.delay_ns_min.map_or(delay, |m| m.min(delay)));
        self.delay_ns_max = self.delay_ns_max.max(delay);
    }
}

fn mean_ms(sum_ns: u64, count: u64) -> f64 {
    if count == 0 {
        0.0
    } else {
        sum_ns as f64 / count as f64 / 1e6
    }
}

/// What a proxy ([`ProxyCore`](super::ProxyCore)) did since it started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ProxyStats {
    /// Time since the proxy started, ns.
    pub elapsed_ns: u64,
    /// Client → upstream.
    pub uplink: DirectionStats,
    /// Upstream → client.
    pub downlink: DirectionStats,
    /// Flows open now.
    pub flows_active: usize,
    /// Flows opened.
    pub flows_opened: u64,
    /// Flows closed for idleness.
    pub flows_expired: u64,
    /// Datagrams from new clients dropped because no flow could be opened (table full, or
    /// the upstream socket could not be created).
    pub flows_refused: u64,
    /// Receive errors ignored (ICMP port unreachable reported on a socket, and the like).
    pub recv_errors: u64,
    /// Deliveries waiting in the timer heap now.
    pub pending_datagrams: usize,
    /// Payload bytes waiting in the timer heap now.
    pub pending_bytes: usize,
}

impl ProxyStats {
    /// The direction's counters.
    pub fn direction(&self, direction: Direction) -> &DirectionStats {
        match direction {
            Direction::Uplink => &self.uplink,
            Direction::Downlink => &self.downlink,
        }
    }

    pub(super) fn direction_mut(&mut self, direction: Direction) -> &mut DirectionStats {
        match direction {
            Direction::Uplink => &mut self.uplink,
            Direction::Downlink => &mut self.downlink,
        }
    }
}

impl fmt::Display for ProxyStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "t={:.1} s  flows {} active, {} opened, {} expired, {} refused  pending {} ({} B)",
            self.elapsed_ns as f64 / 1e9,
            self.flows_active,
            self.flows_opened,
            self.flows_expired,
            self.flows_refused,
            self.pending_datagrams,
            self.pending_bytes,
        )?;
        for (name, d) in [("uplink", &self.uplink), ("downlink", &self.downlink)] {
            let l = &d.link;
            write!(
                f,
                "  {name:<8} offered {} delivered {} lost {} queue_dropped {} mtu_dropped {} \
                 duplicated {} corrupted {} reordered {} | forwarded {} overflow {} send_failed {} \
                 | delay mean {:.2} ms max {:.2} ms | late mean {:.2} ms max {:.2} ms",
                l.offered,
                l.delivered,
                l.lost,
                l.queue_dropped,
                l.mtu_dropped,
                l.duplicated,
                l.corrupted,
                l.reordered,
                d.forwarded,
                d.overflow_dropped,
                d.send_failed,
                d.mean_delay_ms(),
                d.delay_ns_max as f64 / 1e6,
                d.mean_late_ms(),
                d.late_ns_max as f64 / 1e6,
            )?;
            if name == "uplink" {
                writeln!(f)?;
            }
        }
        Ok(())
    }
}

/// Adds `s` to `total` (sums; maxima for `queue_delay_ns_max`).
pub(super) fn add_link_stats(total: &mut LinkStats, s: &LinkStats) {
    total.offered += s.offered;
    total.delivered += s.delivered;
    total.lost += s.lost;
    total.queue_dropped += s.queue_dropped;
    total.mtu_dropped += s.mtu_dropped;
    total.duplicated += s.duplicated;
    total.corrupted += s.corrupted;
    total.reordered += s.reordered;
    total.bytes_offered += s.bytes_offered;
    total.bytes_delivered += s.bytes_delivered;
    total.queue_delay_ns_sum += s.queue_delay_ns_sum;
    total.queue_delay_ns_max = total.queue_delay_ns_max.max(s.queue_delay_ns_max);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::{Delay, Link, LinkSpec, Loss};

    #[test]
    fn stats_add_up_across_flows() {
        let spec = LinkSpec {
            latency: Delay::Constant { ms: 1.0 },
            loss: Loss::Bernoulli { probability: 0.5 },
            ..LinkSpec::default()
        };
        let mut total = LinkStats::default();
        let mut offered = 0;
        for seed in 0..3u8 {
            let mut l = Link::new(&spec, [seed; 32]);
            for i in 0..20 {
                l.transmit(i, vec![0; 10]);
                offered += 1;
            }
            add_link_stats(&mut total, &l.stats());
        }
        assert_eq!(total.offered, offered);
        assert_eq!(total.delivered + total.lost, offered);
        assert_eq!(total.bytes_offered, 10 * offered);
    }
}
