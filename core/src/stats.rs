//! Per-connection and per-endpoint statistics snapshots (plain data, serde-serialisable).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

pub use crate::compress::CompressionStats;
pub use crate::fragment::ReassemblyStats;
pub use crate::heartbeat::HeartbeatStats;
pub use crate::histogram::{Histogram, HISTOGRAM_BOUNDS_SECONDS};
pub use crate::limits::LimiterStats;
pub use crate::tick::{TickStats, TickSyncStats};
pub use crate::ticket::TicketStats;
use crate::wire::{ReasonCode, Role};

/// A snapshot of one connection: path statistics from the heartbeat, transport counters from
/// QUIC, and tickwire's message and drop counters.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ConnectionStats {
    /// Heartbeat estimators: SRTT/RTTVAR (RFC 6298), min RTT, jitter (RFC 3550), loss,
    /// duplicate and reorder ratios, RTT p50/p99.
    pub heartbeat: HeartbeatStats,
    /// Reassembly counters, including every kind of dropped fragment.
    pub reassembly: ReassemblyStats,
    /// Client only: tick synchronisation state.
    pub tick_sync: Option<TickSyncStats>,
    /// Server only: incoming message rate limiter counters.
    pub limiter: Option<LimiterStats>,
    /// UDP datagrams sent on this connection.
    pub udp_tx_datagrams: u64,
    /// UDP payload bytes sent on this connection.
    pub udp_tx_bytes: u64,
    /// UDP datagrams received on this connection.
    pub udp_rx_datagrams: u64,
    /// UDP payload bytes received on this connection.
    pub udp_rx_bytes: u64,
    /// quinn-proto's smoothed RTT (RFC 9002 §5.3), in milliseconds, for comparison.
    pub quic_rtt_ms: f64,
    /// Application messages accepted by `send`.
    pub messages_sent: u64,
    /// Application payload bytes accepted by `send`.
    pub message_bytes_sent: u64,
    /// Application messages delivered.
    pub messages_received: u64,
    /// Application payload bytes delivered.
    pub message_bytes_received: u64,
    /// Unreliable messages sent in fragments.
    pub messages_fragmented: u64,
    /// Datagram bundles sent, each carrying two or more small datagrams in one QUIC datagram
    /// (`PROTOCOL.md` §5.7).
    pub datagram_bundles_sent: u64,
    /// Messages dropped because their send deadline passed before QUIC took them.
    pub messages_expired: u64,
    /// Datagrams dropped because the per-connection datagram queue was full.
    pub datagrams_dropped_queue_full: u64,
    /// Datagrams dropped as malformed or for the wrong channel kind.
    pub datagrams_dropped_malformed: u64,
    /// Datagrams dropped because they arrived before the handshake completed (a peer's first
    /// ping can overtake its accept).
    pub datagrams_dropped_early: u64,
    /// Sequenced messages dropped because a newer one was already delivered.
    pub stale_sequenced_dropped: u64,
    /// Messages being reassembled now (at most `fragment.max_partial_messages`). A gauge.
    pub reassembly_partials: usize,
    /// Bytes held now for those partial messages (at most `fragment.memory_budget_bytes`;
    /// `PROTOCOL.md` §5.4 says what a partial holds). A gauge.
    pub reassembly_buffered_bytes: usize,
    /// Receive channel streams open now (at most `channels.len()`, QUIC's limit on concurrent
    /// unidirectional streams from the peer). A gauge, not a counter.
    pub channel_streams: usize,
    /// Bytes held now in partial frames on those streams, prefixes included: at most
    /// `channel_streams × (max_reliable_message_bytes + 4)` (`PROTOCOL.md` §9). A gauge.
    pub partial_frame_bytes: u64,
    /// Closes because a channel stream held a partial frame with no new byte for
    /// `partial_frame_timeout_ms` (`PROTOCOL_VIOLATION`; 0 or 1).
    pub partial_frame_timeouts: u64,
    /// Closes because a channel stream's frame prefix declared more than
    /// `max_reliable_message_bytes` (`PROTOCOL_VIOLATION`; 0 or 1).
    pub oversized_frames: u64,
    /// Closes because the peer opened a channel stream for a channel that is not reliable in
    /// our table, or not in it at all (`PROTOCOL_VIOLATION`; 0 or 1).
    pub streams_refused: u64,
    /// Channel streams the peer reset (RESET_STREAM); their partial frames were discarded.
    pub streams_reset: u64,
    /// Compression on this session's compressed channels (`PROTOCOL.md` §7.3).
    pub compression: CompressionStats,
    /// *Server*: messages received and refused (not delivered), by cause (`PROTOCOL.md` §7.1).
    pub refusals: RefusalStats,
}

/// Received messages a server refused, by cause ([`crate::RefusalCause`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RefusalStats {
    /// Refused because the session may not send on the channel (role or permission bits).
    pub not_permitted: u64,
    /// Refused, or ended the session, because the channel's own rate limit was exceeded.
    pub rate_limited: u64,
}

impl RefusalStats {
    /// Both causes together.
    pub fn total(&self) -> u64 {
        self.not_permitted + self.rate_limited
    }
}

impl std::ops::AddAssign for RefusalStats {
    /// Sums two sets of counters (e.g. over connections).
    fn add_assign(&mut self, other: Self) {
        let Self {
            not_permitted,
            rate_limited,
        } = other;
        self.not_permitted += not_permitted;
        self.rate_limited += rate_limited;
    }
}

/// Distinct codes this version does not define that a by-reason map keeps apart; the codes
/// of a peer's closes are its choice, so further undefined ones are counted together under
/// [`OTHER_REASONS`], and a map holds at most `ReasonCode::ALL.len() + 9` entries.
pub const MAX_UNDEFINED_REASONS: usize = 8;

/// The key under which a by-reason map counts undefined codes beyond the first
/// [`MAX_UNDEFINED_REASONS`] (`u16::MAX`, which no version defines).
pub const OTHER_REASONS: ReasonCode = ReasonCode(u16::MAX);

/// Counts one `reason` in a by-reason map, bounded as [`MAX_UNDEFINED_REASONS`] says.
pub(crate) fn count_reason(counts: &mut BTreeMap<ReasonCode, u64>, reason: ReasonCode) {
    let undefined = |code: &ReasonCode| code.name().is_none() && *code != OTHER_REASONS;
    let key = if undefined(&reason)
        && !counts.contains_key(&reason)
        && counts.keys().filter(|code| undefined(code)).count() >= MAX_UNDEFINED_REASONS
    {
        OTHER_REASONS
    } else {
        reason
    };
    *counts.entry(key).or_default() += 1;
}

/// Endpoint-wide counters.
#[derive(Debug, Clone, Default, Serialize)]
pub struct EndpointStats {
    /// Sessions established (both sides count their own).
    pub sessions_established: u64,
    /// Of those, sessions carried by WebTransport (`PROTOCOL.md` §12), e.g. browsers.
    pub webtransport_sessions_established: u64,
    /// Sessions currently established.
    pub sessions_live: usize,
    /// Handshakes in progress.
    pub handshakes_pending: usize,
    /// Established sessions by the role the client joined as (a client endpoint counts the
    /// role it asked for). Gauges; together they make `sessions_live`.
    pub sessions_by_role: BTreeMap<Role, usize>,
    /// Handshakes that ended in a rejection, by reason (either side's; bounded, see
    /// [`MAX_UNDEFINED_REASONS`]).
    pub rejections: BTreeMap<ReasonCode, u64>,
    /// Established sessions that ended, by reason (bounded, see [`MAX_UNDEFINED_REASONS`]).
    pub disconnections: BTreeMap<ReasonCode, u64>,
    /// Incoming connections refused at the QUIC level (pending-handshake limits).
    pub connections_refused: u64,
    /// Incoming connections from a validated address answered with a `RATE_LIMITED`
    /// rejection by the per-address handshake rate limit. (An unvalidated address over its
    /// limit is sent a Retry first, counted in [`DatagramStats::retries_rate_limited`].)
    pub handshakes_rate_limited: u64,
    /// Incoming connections from a validated address refused at the QUIC level because that
    /// address already had `max_pending_handshakes_per_addr` handshakes in progress (also in
    /// `connections_refused`).
    pub handshakes_refused_per_addr: u64,
    /// Connections that had completed TLS and not sent their Hello, closed with
    /// `HANDSHAKE_TIMEOUT` to make room when `max_pending_handshakes` handshakes were in
    /// progress and a new one arrived.
    pub handshakes_evicted_no_hello: u64,
    /// Endpoint-level responses dropped because their queue was full.
    pub responses_dropped: u64,
    /// What became of every datagram received (also [`Endpoint::datagram_stats`](crate::Endpoint::datagram_stats)).
    pub datagrams: DatagramStats,
    /// The per-address handshake limiter's decisions (server). `limited` counts every refusal,
    /// whether it was answered with a Retry or a `RATE_LIMITED` rejection.
    pub address_limiter: LimiterStats,
    /// Source addresses the per-address limiter tracks now (at most
    /// `limits.max_tracked_addrs`).
    pub addresses_tracked: usize,
    /// Ticks delivered by the server scheduler.
    pub ticks: u64,
    /// How late each of those ticks was delivered (`TickInfo::lateness`).
    pub tick_lateness: Histogram,
    /// UDP payload bytes received (all datagrams, as counted in `datagrams.received`).
    pub udp_rx_bytes: u64,
    /// UDP datagrams sent (connection packets and endpoint-level responses).
    pub udp_tx_datagrams: u64,
    /// UDP payload bytes sent.
    pub udp_tx_bytes: u64,
    /// Time from a connection's first packet (client: its `connect`) to its session being
    /// established, per established session.
    pub handshake_time: Histogram,
    /// Every connection's RTT samples (live and closed connections).
    pub rtt: Histogram,
    /// Every connection's jitter estimates, one per fresh ping from the peer.
    pub jitter: Histogram,
    /// Every connection's reassembly counters summed (live and closed connections): drops by
    /// cause.
    pub reassembly: ReassemblyStats,
    /// (Server) every session's incoming message rate limiter summed (live and closed).
    pub message_limiter: LimiterStats,
    /// Every connection's compression counters summed (live and closed connections).
    pub compression: CompressionStats,
    /// (Server) received messages refused by the channel table's senders and rate limits, by
    /// cause, summed over every session (live and closed).
    pub message_refusals: RefusalStats,
    /// (Server) session recording bytes handed out by `Endpoint::poll_recorded`
    /// (`PROTOCOL.md` §11).
    pub recorded_bytes: u64,
    /// (Server) encoded recording bytes dropped because a session's recording buffer held
    /// `Config::recording_buffer_bytes` (each run of drops is marked by a `Gap` record).
    pub recording_dropped_bytes: u64,
}

/// What became of the UDP datagrams an endpoint received: one counter per outcome, so that a
/// load model (the simulator's CPU cost per datagram) or an operator can see where a flood
/// went. Every datagram lands in exactly one of `to_connections`, `dropped`,
/// `stateless_responses` and `initials`; every Initial in `initials` lands in exactly one of
/// `retries_sent`, `refused`, `accepted` and `accept_failed`.
///
/// Address validation follows RFC 9000 §8.1: a Retry (§8.1.2, §17.2.5) carries a token the
/// client must echo, proving it receives at its address; a Retry is smaller than the Initial
/// that caused it, so answering a spoofed source never amplifies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DatagramStats {
    /// Datagrams received ([`Endpoint::handle_datagram`](crate::Endpoint::handle_datagram) calls).
    pub received: u64,
    /// Routed to an existing connection by its connection id (whether or not they then
    /// decrypted).
    pub to_connections: u64,
    /// Dropped by QUIC without state or answer: malformed or unsupported headers, Initials
    /// shorter than 1 200 bytes (RFC 9000 §14.1), unknown connection ids, packets for a
    /// connection already gone.
    pub dropped: u64,
    /// Answered statelessly by QUIC: version negotiation (RFC 9000 §6), stateless resets
    /// (§10.3, always smaller than the datagram that caused them), or a close for an Initial
    /// with an invalid token or connection id.
    pub stateless_responses: u64,
    /// Initials that would start a new connection.
    pub initials: u64,
    /// Of `initials`: carried a valid Retry token, so their source address is validated.
    pub initials_validated: u64,
    /// Of `initials`: answered with a Retry (RFC 9000 §8.1.2): no connection state kept.
    pub retries_sent: u64,
    /// Of `retries_sent`: sent because the address was over its handshake rate or already had
    /// `max_pending_handshakes_per_addr` handshakes in progress.
    pub retries_rate_limited: u64,
    /// Of `retries_sent`: sent because the handshake would only have carried a rejection
    /// (shutdown, admissions paused, server full).
    pub retries_before_rejection: u64,
    /// Of `initials`: refused with `CONNECTION_REFUSED` at the pending-handshake limit.
    pub refused: u64,
    /// Of `initials`: accepted, so a handshake started (possibly one that carries a rejection).
    pub accepted: u64,
    /// Of `initials`: QUIC failed to accept them (the Initial did not decrypt, was stale, or
    /// connection ids ran out).
    pub accept_failed: u64,
}

/// The stages of one server tick, as a game loop runs them (poll the network, apply inputs,
/// simulate, extract snapshots, send), for per-stage duration histograms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum TickStage {
    /// Draining the network: datagrams in, endpoint events out.
    Poll,
    /// Applying the inputs received.
    Apply,
    /// Advancing the simulation by one tick.
    Simulate,
    /// Building the snapshots to send.
    Extract,
    /// Handing the snapshots to the endpoint and flushing transmits.
    Send,
}

impl TickStage {
    /// Every stage, in the order a tick runs them.
    pub const ALL: [TickStage; 5] = [
        TickStage::Poll,
        TickStage::Apply,
        TickStage::Simulate,
        TickStage::Extract,
        TickStage::Send,
    ];

    /// The stage's name in lower case (`poll`, `apply`, …), for labels and span names.
    pub fn name(self) -> &'static str {
        match self {
            TickStage::Poll => "poll",
            TickStage::Apply => "apply",
            TickStage::Simulate => "simulate",
            TickStage::Extract => "extract",
            TickStage::Send => "send",
        }
    }
}

/// How long a game loop's ticks took, as measured by the application (the core reads no clock):
/// a histogram of whole ticks and one per [`TickStage`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct TickTimings {
    /// Duration of whole ticks.
    pub tick: Histogram,
    /// Duration of each stage, in [`TickStage::ALL`] order.
    pub stages: [Histogram; 5],
}

impl TickTimings {
    /// Records one tick: each stage's duration (the tick driver's `StageTimings::stages`, or
    /// the application's own measurements), and their sum as the tick's duration.
    pub fn record(&mut self, stages: &[(TickStage, Duration)]) {
        for (stage, duration) in stages {
            self.observe_stage(*stage, *duration);
        }
        self.tick.observe(stages.iter().map(|(_, d)| *d).sum());
    }

    /// Records that `stage` of a tick took `duration`.
    pub fn observe_stage(&mut self, stage: TickStage, duration: Duration) {
        self.stages[stage as usize].observe(duration);
    }

    /// The histogram of `stage`.
    pub fn stage(&self, stage: TickStage) -> &Histogram {
        &self.stages[stage as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn by_reason_maps_stay_bounded_whatever_codes_peers_send() {
        let mut counts = BTreeMap::new();
        for code in (0..=u16::MAX).map(ReasonCode) {
            count_reason(&mut counts, code);
        }
        count_reason(&mut counts, ReasonCode::NORMAL);
        assert_eq!(counts.len(), ReasonCode::ALL.len() + MAX_UNDEFINED_REASONS + 1);
        assert_eq!(
            counts[&ReasonCode::NORMAL],
            2,
            "defined codes each keep their own count"
        );
        let kept = ReasonCode::ALL.len() + MAX_UNDEFINED_REASONS;
        assert_eq!(
            counts[&OTHER_REASONS],
            65_536 - kept as u64,
            "and nothing is lost"
        );
    }
}
