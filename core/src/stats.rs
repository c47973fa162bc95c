//! Per-connection and per-endpoint statistics snapshots (plain data, serde-serialisable).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::fragment::ReassemblyStats;
use crate::heartbeat::HeartbeatStats;
use crate::limits::LimiterStats;
use crate::tick::TickSyncStats;
use crate::wire::ReasonCode;

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
}

/// Endpoint-wide counters.
#[derive(Debug, Clone, Default, Serialize)]
pub struct EndpointStats {
    /// Sessions established (both sides count their own).
    pub sessions_established: u64,
    /// Sessions currently established.
    pub sessions_live: usize,
    /// Handshakes in progress.
    pub handshakes_pending: usize,
    /// Handshakes that ended in a rejection, by reason (either side's).
    pub rejections: BTreeMap<ReasonCode, u64>,
    /// Established sessions that ended, by reason.
    pub disconnections: BTreeMap<ReasonCode, u64>,
    /// Incoming connections refused at the QUIC level (pending-handshake limit).
    pub connections_refused: u64,
    /// Incoming connections rejected by the per-address handshake rate limit.
    pub handshakes_rate_limited: u64,
    /// Endpoint-level responses dropped because their queue was full.
    pub responses_dropped: u64,
    /// Ticks delivered by the server scheduler.
    pub ticks: u64,
}
