//! What a run measured: counters gathered while it runs ([`Metrics`]) and the report built
//! from them ([`Report`]), printed as text or written as JSON.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};

use hdrhistogram::Histogram;
use serde::Serialize;
use tickwire_core::stats::{CompressionStats, ReassemblyStats};
use tickwire_core::tick::TickStats;
use tickwire_core::{ConnectionStats, ReasonCode};

use crate::plot::Series;
use crate::scenario::Scenario;
use crate::units::{Nanos, FRAGMENTED_ABOVE, MILLI, SECOND};

/// Which end of a session saw it end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client.
    Client,
    /// The game server.
    Server,
}

/// Percentile summary of a sample set, in the unit its name gives. Count, mean and maximum
/// are exact; the percentiles are nearest-rank, read from an HDR histogram with three
/// significant digits (each within 0.1 % above the exact one, and never above `max`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Samples.
    pub count: u64,
    /// Arithmetic mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest sample.
    pub max: f64,
}

impl Summary {
    /// Summarises `samples` (any order); all zero when empty.
    pub fn of(samples: &[f64]) -> Self {
        let mut recorded = Samples::default();
        for &sample in samples {
            recorded.record(sample);
        }
        recorded.summary()
    }
}

/// Samples of one quantity gathered during a run, in milliseconds, for a [`Summary`]: an HDR
/// histogram at nanosecond resolution (memory bounded by the range, not the count) plus the
/// exact count, the sum of the samples rounded to whole nanoseconds (an integer, so that
/// sample sets merge to the same sum in any order) and the maximum.
#[derive(Debug, Clone)]
pub(crate) struct Samples {
    histogram: Histogram<u64>,
    sum_ns: i128,
    max: f64,
}

impl Default for Samples {
    fn default() -> Self {
        Samples {
            histogram: Histogram::new(3).expect("3 significant digits is within 0..=5"),
            sum_ns: 0,
            max: f64::NEG_INFINITY,
        }
    }
}

impl Samples {
    /// Records one sample, in milliseconds. Negative and NaN samples count as 0 in the
    /// percentiles.
    pub(crate) fn record(&mut self, ms: f64) {
        // `as` saturates: NaN and negatives become 0, huge values the largest u64.
        let ns = (ms * 1e6).round() as u64;
        if self.histogram.record(ns).is_err() {
            // Growing failed (a usize too narrow for the range): clamp instead.
            self.histogram.saturating_record(ns);
        }
        // `as` saturates and maps NaN to 0.
        self.sum_ns += i128::from((ms * 1e6).round() as i64);
        self.max = self.max.max(ms);
    }

    /// Adds `other`'s samples to these (the result does not depend on the order of merges).
    pub(crate) fn absorb(&mut self, other: &Samples) {
        if self.histogram.add(&other.histogram).is_err() {
            for value in other.histogram.iter_recorded() {
                self.histogram
                    .saturating_record_n(value.value_iterated_to(), value.count_at_value());
            }
        }
        self.sum_ns += other.sum_ns;
        self.max = self.max.max(other.max);
    }

    /// Nearest-rank `quantile` (0 to 1) of the samples, ms; `None` when empty.
    pub(crate) fn quantile(&self, quantile: f64) -> Option<f64> {
        if self.histogram.is_empty() {
            return None;
        }
        let ms = self.histogram.value_at_quantile(quantile) as f64 / 1e6;
        Some(ms.min(self.max))
    }

    /// The summary; all zero when empty.
    pub(crate) fn summary(&self) -> Summary {
        let count = self.histogram.len();
        let (Some(p50), Some(p99)) = (self.quantile(0.50), self.quantile(0.99)) else {
            return Summary::default();
        };
        Summary {
            count,
            mean: self.sum_ns as f64 / 1e6 / count as f64,
            p50,
            p99,
            max: self.max,
        }
    }
}

/// Session outcomes.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SessionReport {
    /// Clients in the scenario.
    pub clients: usize,
    /// Clients that joined at least once.
    pub clients_joined: usize,
    /// Sessions established (first joins and reconnections).
    pub joins: u64,
    /// Sessions established by reconnecting after a lost session.
    pub reconnects: u64,
    /// Join attempts started (each with a fresh ticket).
    pub attempts: u64,
    /// Attempts rejected, by reason, as the clients saw them.
    pub rejected: BTreeMap<String, u64>,
    /// Handshakes the servers refused, by reason.
    pub rejected_by_servers: BTreeMap<String, u64>,
    /// Clients that stopped retrying.
    pub gave_up: u64,
    /// Established sessions that ended, by reason and side (`client/…`, `server/…`).
    pub disconnects: BTreeMap<String, u64>,
    /// The earliest detail text seen for each entry of `disconnects` (ties in virtual time:
    /// the smallest text), for diagnosis.
    pub disconnect_details: BTreeMap<String, String>,
    /// Sessions ended while no fault touched their path (either side's view): the failure
    /// detector's false positives. Should be 0. Sessions a game server starved of play
    /// tickets closed with `NOT_AUTHORISED` are deliberate and not counted.
    pub false_disconnects: u64,
    /// Sessions ended by a fault (partition, crash) and detected by a side.
    pub detected_disconnects: u64,
    /// Time from a fault's start to a side ending the session it broke, in milliseconds.
    pub detection_delay_ms: Summary,
    /// Reconnection attempts started after lost sessions.
    pub reconnect_attempts: u64,
    /// Most reconnections completed in any 100 ms window: the burst of handshakes a server
    /// takes when a crowd comes back (a synchronised stampede shows as a peak near the number
    /// of clients cut off).
    pub reconnect_peak_per_100ms: u64,
    /// Spread of reconnections: 90th minus 10th percentile of their completion times, in
    /// milliseconds.
    pub reconnect_spread_ms: f64,
}

/// RTT estimate (the heartbeat's SRTT, RFC 6298) against the truth (mean one-way delays the
/// links imposed in the sample interval, both directions added).
#[derive(Debug, Clone, Default, Serialize)]
pub struct RttReport {
    /// Path samples compared.
    pub samples: u64,
    /// Mean true RTT, in milliseconds.
    pub true_ms: f64,
    /// Mean estimated RTT (SRTT), in milliseconds.
    pub estimated_ms: f64,
    /// Absolute error |SRTT − true|, in milliseconds.
    pub abs_error_ms: Summary,
    /// Mean signed error SRTT − true, in milliseconds.
    pub bias_ms: f64,
    /// The clients' SRTT at every path sample, in milliseconds.
    pub srtt_ms: Summary,
}

/// Loss as the links imposed it and as the heartbeat estimated it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LossReport {
    /// Datagrams the links dropped (loss, queue, MTU) over datagrams offered.
    pub link_ratio: f64,
    /// Mean of the clients' heartbeat loss estimates at the sample points.
    pub estimated_ratio: f64,
    /// Datagrams dropped by partitions.
    pub partition_dropped: u64,
}

/// Fragmented snapshot delivery.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReassemblyReport {
    /// Snapshots sent larger than one datagram (always fragmented).
    pub fragmented_sent: u64,
    /// Of those, delivered whole.
    pub fragmented_received: u64,
    /// `fragmented_received / fragmented_sent` (loss of any fragment loses the message).
    pub success_ratio: f64,
    /// Reassembly counters summed over the sessions live at the end.
    pub counters: ReassemblyCounters,
}

/// A subset of [`ReassemblyStats`] summed over sessions.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReassemblyCounters {
    /// Fragments received.
    pub fragments_received: u64,
    /// Messages reassembled.
    pub messages_reassembled: u64,
    /// Partial messages expired before completion.
    pub expired_timeout: u64,
    /// Fragments dropped for any reason.
    pub fragments_dropped: u64,
}

impl ReassemblyReport {
    /// Adds one session's reassembly counters.
    pub fn absorb(&mut self, stats: &ReassemblyStats) {
        self.counters.fragments_received += stats.fragments_received;
        self.counters.messages_reassembled += stats.messages_reassembled;
        self.counters.expired_timeout += stats.expired_timeout;
        self.counters.fragments_dropped += stats.fragments_dropped;
    }
}

/// Bytes on the wire (UDP payloads as sent, before link faults).
#[derive(Debug, Clone, Default, Serialize)]
pub struct WireReport {
    /// Client-to-server bytes.
    pub bytes_up: u64,
    /// Server-to-client bytes.
    pub bytes_down: u64,
    /// Client-to-server datagrams.
    pub datagrams_up: u64,
    /// Server-to-client datagrams.
    pub datagrams_down: u64,
    /// Upstream bytes per client per second.
    pub up_bytes_per_client_s: f64,
    /// Downstream bytes per client per second.
    pub down_bytes_per_client_s: f64,
}

/// Game traffic counters.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TrafficReport {
    /// Inputs sent by clients.
    pub inputs_sent: u64,
    /// Inputs received by servers.
    pub inputs_received: u64,
    /// Snapshots sent by servers.
    pub snapshots_sent: u64,
    /// Snapshots received by clients.
    pub snapshots_received: u64,
    /// Sends refused by the endpoint (queue full, not connected, not permitted).
    pub send_errors: u64,
    /// Snapshots received by spectators (part of `snapshots_received`).
    pub spectator_snapshots_received: u64,
    /// Inputs sent by spectators (part of `inputs_sent`); servers refuse them.
    pub spectator_inputs_sent: u64,
    /// Messages the servers refused because the session may not send on the channel, from
    /// the endpoints' `message_refusals` (servers alive at the end; counted only when the
    /// scenario has spectators).
    pub refused_not_permitted: u64,
    /// Messages the servers refused under a channel's own rate limit (same source).
    pub refused_rate_limited: u64,
    /// `MessageRefused` events the servers reported (at most one per connection, channel and
    /// cause per tick).
    pub refusal_events: u64,
}

/// Server tick lateness (virtual time, so it shows the scheduler's own behaviour).
#[derive(Debug, Clone, Default, Serialize)]
pub struct TickReport {
    /// Ticks delivered, all servers.
    pub ticks: u64,
    /// Ticks skipped by the missed-tick policy.
    pub skipped: u64,
    /// Worst server's median lateness, in milliseconds.
    pub lateness_p50_ms: f64,
    /// Worst server's 99th-percentile lateness, in milliseconds.
    pub lateness_p99_ms: f64,
    /// Largest lateness, in milliseconds.
    pub lateness_max_ms: f64,
}

impl TickReport {
    /// Adds one server's scheduler statistics.
    pub fn absorb(&mut self, stats: &TickStats) {
        self.ticks += stats.ticks;
        self.skipped += stats.skipped;
        self.lateness_p50_ms = self.lateness_p50_ms.max(stats.lateness_p50_ms);
        self.lateness_p99_ms = self.lateness_p99_ms.max(stats.lateness_p99_ms);
        self.lateness_max_ms = self.lateness_max_ms.max(stats.lateness_max_ms);
    }
}

/// Per link preset: clients and time series for the SVG.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PresetReport {
    /// Preset name.
    pub name: String,
    /// Clients on it.
    pub clients: usize,
    /// Mean estimated RTT (SRTT) of its connected clients at each sample, `(s, ms)`.
    pub rtt_ms: Vec<(f64, f64)>,
    /// Datagrams its links dropped in each sample interval, `(s, %)`.
    pub loss_pct: Vec<(f64, f64)>,
}

/// The report of one run. Everything but `wall_seconds` and `speed` is a function of the
/// scenario and the seed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// The run's seed.
    pub seed: u64,
    /// SHA-256 over every datagram (time, source, destination, bytes, fate), hex.
    pub trace_sha256: String,
    /// Datagrams sent.
    pub datagrams: u64,
    /// Virtual time simulated, in seconds.
    pub virtual_seconds: f64,
    /// Wall-clock time the run took, in seconds (filled by the runner).
    pub wall_seconds: f64,
    /// Virtual seconds per wall second (filled by the runner).
    pub speed: f64,
    /// Game servers.
    pub servers: usize,
    /// Session outcomes.
    pub sessions: SessionReport,
    /// Time from `connect` to an established session, in milliseconds.
    pub handshake_ms: Summary,
    /// RTT estimate against the truth.
    pub rtt: RttReport,
    /// The clients' heartbeat jitter estimates (RFC 3550 §6.4.1) at the sample points, in
    /// milliseconds.
    pub jitter_ms: Summary,
    /// Loss.
    pub loss: LossReport,
    /// Fragmented snapshots.
    pub reassembly: ReassemblyReport,
    /// Bytes on the wire.
    pub wire: WireReport,
    /// Server tick lateness.
    pub ticks: TickReport,
    /// Game traffic.
    pub traffic: TrafficReport,
    /// Per link preset.
    pub presets: Vec<PresetReport>,
    /// The verification server and its game servers, when the scenario has one.
    pub vs: Option<VsReport>,
    /// Floods and the servers' defences, when the scenario has a flood or a CPU model.
    pub hostile: Option<HostileReport>,
    /// What zstd compression saved, when the game servers compressed anything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compression: Option<CompressionReport>,
    /// How the engine split the run between threads and windows of virtual time.
    pub parallel: ParallelReport,
}

/// How a run advanced: in windows of virtual time no longer than the lookahead, each window's
/// nodes processed by the threads in parallel, and the datagrams they sent each other merged
/// in a fixed order at the barrier after it. Windows depend on the scenario, never on the
/// number of threads, so neither does anything else in the report but this section and the
/// wall time.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ParallelReport {
    /// Threads the nodes were split between.
    pub threads: usize,
    /// The lookahead: the smallest delay any link (or spoofed wire) can give a datagram
    /// between two nodes, in milliseconds; 0 when some path has no minimum delay.
    pub lookahead_ms: f64,
    /// Windows run (each one barrier).
    pub windows: u64,
    /// Windows of the full lookahead: the lookahead limited parallelism.
    pub windows_lookahead_limited: u64,
    /// Windows ended early by a fault or a path sample (a `run_until` step that ends inside a
    /// window does not end it: the next step goes on with it).
    pub windows_cut_short: u64,
    /// Windows of a single instant because the lookahead is zero: run on one thread, one
    /// node after another (a sequential fallback).
    pub sequential_windows: u64,
    /// Windows run on one thread although more were given, because the window before held
    /// too few events to be worth sharing.
    pub small_windows: u64,
    /// Barriers where faults or path samples took effect, between windows.
    pub global_steps: u64,
}

/// Compression of the game servers' messages (their compressed channels, summed over every
/// session they had), and what the clients decompressed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CompressionReport {
    /// The servers' counters: messages, bytes before and after, refusals.
    pub servers: CompressionStats,
    /// The clients' counters, summed over the clients' endpoints at the end of the run.
    pub clients: CompressionStats,
    /// Bytes the servers' compression saved (uncompressed − compressed, flag bytes counted).
    pub saved_bytes: i64,
    /// Uncompressed over compressed bytes, as the servers sent them.
    pub ratio: f64,
}

impl CompressionReport {
    /// A report from the servers' and clients' summed counters; `None` when nothing was
    /// compressed.
    pub fn from_stats(servers: CompressionStats, clients: CompressionStats) -> Option<Self> {
        (servers.messages_sent > 0).then(|| Self {
            saved_bytes: servers.saved_bytes_sent(),
            ratio: servers.ratio_sent(),
            servers,
            clients,
        })
    }
}

/// Hostile traffic and what the game servers did with it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HostileReport {
    /// Flood datagrams sent (all floods).
    pub flood_datagrams: u64,
    /// Flood bytes sent.
    pub flood_bytes: u64,
    /// Flood datagrams by kind (`random`, `mutated`, `initials`, `truncated`).
    pub flood_by_kind: BTreeMap<String, u64>,
    /// Every datagram the game servers handled (legitimate and flood), by what the endpoint
    /// did with it: `dropped`, `stateless`, `connection`, `retry`, `refused`,
    /// `accept_failed`, `handshake`.
    pub handled: BTreeMap<String, u64>,
    /// Retries sent (RFC 9000 §8.1.2), all reasons.
    pub retries_sent: u64,
    /// Of those, to addresses over their handshake rate.
    pub retries_rate_limited: u64,
    /// Initials that came back with a valid Retry token.
    pub initials_validated: u64,
    /// `RATE_LIMITED` rejection handshakes (validated addresses over their rate).
    pub handshakes_rate_limited: u64,
    /// Every refusal of the per-address handshake limiter (answered by Retry or rejection).
    pub address_limiter_refusals: u64,
    /// Initials refused at the pending-handshake limit.
    pub connections_refused: u64,
    /// Initials QUIC could not accept (did not decrypt).
    pub accept_failed: u64,
    /// Endpoint responses dropped because their queue was full.
    pub responses_dropped: u64,
    /// Bytes the servers sent to spoofed flood sources (routed nowhere).
    pub bytes_to_spoofed: u64,
    /// Largest ratio, over spoofed sources, of bytes the servers sent to a source to bytes
    /// they received from it. RFC 9000 §8.1 allows 3 before validation; tickwire holds 1.
    pub amplification: f64,
    /// Bytes sent to all spoofed sources over bytes received from them.
    pub amplification_overall: f64,
    /// Most handshakes in progress on one server at once.
    pub peak_handshakes_pending: usize,
    /// Most connections (any phase) on one server at once.
    pub peak_connections: usize,
    /// Peak of one server's estimated memory for what the flood can grow: connections ×
    /// 64 KiB (a generous figure for a quinn-proto connection with its TLS state and
    /// tickwire's bounded queues) plus datagrams waiting in its receive queue, in bytes.
    pub peak_memory_estimate_bytes: u64,
    /// The CPU model's figures, when the scenario has `[server_cpu]`.
    pub cpu: Option<CpuReport>,
    /// The half-open attackers, when the scenario has `[half_open]`.
    pub half_open: Option<HalfOpenReport>,
}

/// Half-open attackers (see [`HalfOpen`](crate::scenario::HalfOpen)) and what the attacked
/// game server did with their connections. The legitimate clients' side is in
/// [`Report::sessions`] and [`Report::handshake_ms`].
#[derive(Debug, Clone, Default, Serialize)]
pub struct HalfOpenReport {
    /// Attacker IP addresses.
    pub sources: u32,
    /// Connections the attackers tried to keep open at once.
    pub target_connections: u32,
    /// Connections opened (first ones and reopened ones).
    pub opened: u64,
    /// Of those, connections whose TLS handshake completed.
    pub tls_completed: u64,
    /// Connections that ended: closed by the server after its Hello timeout, refused, or
    /// timed out.
    pub closed: u64,
    /// Most connections open at once, all attackers together (opened, not yet ended).
    pub peak_open: u64,
    /// Datagrams the attackers sent.
    pub datagrams_sent: u64,
    /// Datagrams the attackers received.
    pub datagrams_received: u64,
    /// Bytes the attackers sent.
    pub bytes_sent: u64,
    /// Bytes the attackers received.
    pub bytes_received: u64,
    /// Handshakes the game servers ended with a rejection, by reason, from their endpoint
    /// statistics (all peers: legitimate clients' rejections are here too);
    /// `HANDSHAKE_TIMEOUT` counts the connections closed for sending no Hello.
    pub server_rejections: BTreeMap<String, u64>,
    /// Initials from a validated address refused because that address already had
    /// `max_pending_handshakes_per_addr` handshakes in progress.
    pub handshakes_refused_per_addr: u64,
    /// Silent connections (TLS complete, no Hello) closed to make room for a new handshake
    /// while the pending table was full (also in `HANDSHAKE_TIMEOUT`).
    pub handshakes_evicted_no_hello: u64,
}

/// The game servers' modelled CPU (see [`ServerCpu`](crate::scenario::ServerCpu)).
#[derive(Debug, Clone, Default, Serialize)]
pub struct CpuReport {
    /// The cost table in force, nanoseconds per datagram by outcome.
    pub cost_ns: BTreeMap<String, u64>,
    /// Highest busy fraction of any server in any whole virtual second.
    pub peak_utilisation: f64,
    /// Busy fraction over the run, worst server.
    pub mean_utilisation: f64,
    /// Datagrams dropped because the receive queue was full.
    pub rx_queue_dropped: u64,
    /// Longest receive queue seen, in datagrams.
    pub rx_queue_peak: usize,
    /// Longest time a datagram waited for the CPU, in milliseconds.
    pub max_wait_ms: f64,
}

/// The verification server and the game servers it attests.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VsReport {
    /// Game-server joins the VS accepted (attestations, first and after a lost session).
    pub joins: u64,
    /// Joins the VS refused, by reason.
    pub join_rejections: BTreeMap<String, u64>,
    /// Re-attestations (fresh quotes in heartbeats) the VS accepted.
    pub reattestations: u64,
    /// Authorisations the VS withdrew, by reason (heartbeat timeout, session lost, …).
    pub deauthorised: BTreeMap<String, u64>,
    /// Play tickets the game servers received and accepted.
    pub tickets_received: u64,
    /// Time from a game server's start to its first play ticket, in milliseconds.
    pub first_ticket_ms: Summary,
    /// Longest time any game server went without a new play ticket, in milliseconds
    /// (counting a gap still open at the end).
    pub max_ticket_gap_ms: f64,
    /// Times a game server paused admissions because its ticket ran out.
    pub admissions_paused: u64,
    /// Client sessions game servers closed with `NOT_AUTHORISED` when starved of tickets.
    pub sessions_closed_starved: u64,
    /// Times a game server resumed admitting after a pause or starvation.
    pub resumed: u64,
    /// Times a game server lost its session to the VS (it reconnects and re-attests).
    pub vs_lost: u64,
    /// Transcript digests the VS receipted (idempotent retries count again).
    pub receipts_signed: u64,
    /// Receipts the game servers accepted.
    pub receipts_received: u64,
    /// Digests abandoned after every retry.
    pub digests_abandoned: u64,
    /// Game servers holding a valid play ticket at the end.
    pub authorised_at_end: usize,
    /// What made a game server give up (first-ticket timeout, a final refusal), sorted.
    pub failures: Vec<String>,
}

/// Counters behind [`VsReport`].
#[derive(Debug, Clone, Default)]
pub(crate) struct VsMetrics {
    pub(crate) joins: u64,
    pub(crate) join_rejections: BTreeMap<String, u64>,
    pub(crate) reattestations: u64,
    pub(crate) deauthorised: BTreeMap<String, u64>,
    pub(crate) tickets_received: u64,
    pub(crate) first_ticket_ms: Vec<f64>,
    pub(crate) max_ticket_gap_ns: Nanos,
    pub(crate) admissions_paused: u64,
    pub(crate) sessions_closed_starved: u64,
    pub(crate) resumed: u64,
    pub(crate) vs_lost: u64,
    pub(crate) receipts_signed: u64,
    pub(crate) receipts_received: u64,
    pub(crate) digests_abandoned: u64,
    pub(crate) failures: Vec<String>,
}

impl VsMetrics {
    fn report(&self) -> VsReport {
        VsReport {
            joins: self.joins,
            join_rejections: self.join_rejections.clone(),
            reattestations: self.reattestations,
            deauthorised: self.deauthorised.clone(),
            tickets_received: self.tickets_received,
            first_ticket_ms: Summary::of(&self.first_ticket_ms),
            max_ticket_gap_ms: self.max_ticket_gap_ns as f64 / MILLI as f64,
            admissions_paused: self.admissions_paused,
            sessions_closed_starved: self.sessions_closed_starved,
            resumed: self.resumed,
            vs_lost: self.vs_lost,
            receipts_signed: self.receipts_signed,
            receipts_received: self.receipts_received,
            digests_abandoned: self.digests_abandoned,
            authorised_at_end: 0,
            failures: {
                let mut failures = self.failures.clone();
                failures.sort();
                failures
            },
        }
    }
}

impl Report {
    /// Derives ratios once the engine has absorbed end-of-run statistics.
    pub fn finish(&mut self) {
        let r = &mut self.reassembly;
        r.success_ratio = ratio(r.fragmented_received, r.fragmented_sent);
    }

    /// RTT and loss series per preset, for [`crate::plot::render_svg`].
    pub fn series(&self) -> (Vec<Series>, Vec<Series>) {
        let series = |points: fn(&PresetReport) -> &Vec<(f64, f64)>| {
            self.presets
                .iter()
                .map(|p| Series {
                    label: format!("{} ({} clients)", p.name, p.clients),
                    points: points(p).clone(),
                })
                .collect()
        };
        (series(|p| &p.rtt_ms), series(|p| &p.loss_pct))
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.sessions;
        let mut out = String::new();
        let w = &mut out;
        let _ = writeln!(
            w,
            "scenario {} · seed {} · {:.1} virtual s · {} servers, {} clients",
            self.scenario, self.seed, self.virtual_seconds, self.servers, s.clients
        );
        let _ = writeln!(w, "  sessions");
        let _ = writeln!(
            w,
            "    joined            {}/{} clients, {} sessions ({} reconnections), {} attempts",
            s.clients_joined, s.clients, s.joins, s.reconnects, s.attempts
        );
        let _ = writeln!(w, "    rejected          {}", map_or_none(&s.rejected));
        let _ = writeln!(w, "    refused by server {}", map_or_none(&s.rejected_by_servers));
        let _ = writeln!(w, "    gave up           {}", s.gave_up);
        let _ = writeln!(w, "    false disconnects {}", s.false_disconnects);
        let _ = writeln!(
            w,
            "    detected          {} (delay p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms)",
            s.detected_disconnects,
            s.detection_delay_ms.p50,
            s.detection_delay_ms.p99,
            s.detection_delay_ms.max
        );
        let _ = writeln!(w, "    disconnects       {}", map_or_none(&s.disconnects));
        let _ = writeln!(
            w,
            "    reconnection      {} attempts, {} done: peak {} per 100 ms, spread p10–p90 {:.0} ms",
            s.reconnect_attempts, s.reconnects, s.reconnect_peak_per_100ms, s.reconnect_spread_ms
        );
        let h = &self.handshake_ms;
        let _ = writeln!(
            w,
            "  handshake           p50 {:.1} ms, p99 {:.1} ms ({} joins)",
            h.p50, h.p99, h.count
        );
        let r = &self.rtt;
        let _ = writeln!(
            w,
            "  RTT                 true {:.1} ms, estimated {:.1} ms, |error| mean {:.2} ms p99 {:.2} ms ({} samples); SRTT p99 {:.1} ms",
            r.true_ms, r.estimated_ms, r.abs_error_ms.mean, r.abs_error_ms.p99, r.samples, r.srtt_ms.p99
        );
        let j = &self.jitter_ms;
        let _ = writeln!(
            w,
            "  jitter              mean {:.2} ms, p99 {:.2} ms",
            j.mean, j.p99
        );
        let l = &self.loss;
        let _ = writeln!(
            w,
            "  loss                links {:.2} %, heartbeat estimate {:.2} %, partitions dropped {}",
            100.0 * l.link_ratio,
            100.0 * l.estimated_ratio,
            l.partition_dropped
        );
        let re = &self.reassembly;
        let _ = writeln!(
            w,
            "  reassembly          {}/{} snapshots > {} B delivered ({:.1} %), {} partials expired",
            re.fragmented_received,
            re.fragmented_sent,
            FRAGMENTED_ABOVE,
            100.0 * re.success_ratio,
            re.counters.expired_timeout
        );
        let wi = &self.wire;
        let _ = writeln!(
            w,
            "  wire                {:.0} B/s up, {:.0} B/s down per client ({} datagrams)",
            wi.up_bytes_per_client_s, wi.down_bytes_per_client_s, self.datagrams
        );
        if let Some(c) = &self.compression {
            let _ = writeln!(
                w,
                "  compression         {} messages, {} B -> {} B (ratio {:.2}, {} B saved), {} refused",
                c.servers.messages_sent,
                c.servers.uncompressed_bytes_sent,
                c.servers.compressed_bytes_sent,
                c.ratio,
                c.saved_bytes,
                c.clients.refused
            );
        }
        let t = &self.traffic;
        let _ = writeln!(
            w,
            "  traffic             inputs {}/{} received, snapshots {}/{} received",
            t.inputs_received, t.inputs_sent, t.snapshots_received, t.snapshots_sent
        );
        if t.spectator_inputs_sent > 0 || t.refused_not_permitted + t.refused_rate_limited > 0 {
            let _ = writeln!(
                w,
                "    refused           {} not permitted ({} spectator inputs sent), {} rate-limited, {} events; spectators received {} snapshots",
                t.refused_not_permitted,
                t.spectator_inputs_sent,
                t.refused_rate_limited,
                t.refusal_events,
                t.spectator_snapshots_received
            );
        }
        let tk = &self.ticks;
        let _ = writeln!(
            w,
            "  ticks               {} (skipped {}), lateness p99 {:.2} ms, max {:.2} ms",
            tk.ticks, tk.skipped, tk.lateness_p99_ms, tk.lateness_max_ms
        );
        if let Some(v) = &self.vs {
            let _ = writeln!(
                w,
                "  verification server {} joins, {} re-attestations, refused {}, deauthorised {}",
                v.joins,
                v.reattestations,
                map_or_none(&v.join_rejections),
                map_or_none(&v.deauthorised)
            );
            let _ = writeln!(
                w,
                "    play tickets      {} received, first after p99 {:.0} ms, longest gap {:.0} ms, {}/{} servers authorised at the end",
                v.tickets_received, v.first_ticket_ms.p99, v.max_ticket_gap_ms, v.authorised_at_end, self.servers
            );
            let _ = writeln!(
                w,
                "    starvation        {} pauses, {} sessions closed, {} resumes, {} VS sessions lost",
                v.admissions_paused, v.sessions_closed_starved, v.resumed, v.vs_lost
            );
            let _ = writeln!(
                w,
                "    transcripts       {} receipts signed, {} received, {} digests abandoned",
                v.receipts_signed, v.receipts_received, v.digests_abandoned
            );
            for failure in &v.failures {
                let _ = writeln!(w, "    failure           {failure}");
            }
        }
        if let Some(h) = &self.hostile {
            if h.flood_datagrams == 0 {
                let _ = writeln!(w, "  hostile             no flood");
            } else {
                let _ = writeln!(
                    w,
                    "  hostile             {} flood datagrams ({} B): {}",
                    h.flood_datagrams,
                    h.flood_bytes,
                    map_or_none(&h.flood_by_kind)
                );
            }
            let _ = writeln!(w, "    handled           {}", map_or_none(&h.handled));
            let _ = writeln!(
                w,
                "    defences          {} retries ({} for rate, {} came back), {} limiter refusals, {} RATE_LIMITED, {} refused, {} undecryptable",
                h.retries_sent,
                h.retries_rate_limited,
                h.initials_validated,
                h.address_limiter_refusals,
                h.handshakes_rate_limited,
                h.connections_refused,
                h.accept_failed
            );
            if h.flood_datagrams > 0 {
                let _ = writeln!(
                    w,
                    "    amplification     max {:.3} per spoofed source, {:.3} overall ({} B answered)",
                    h.amplification, h.amplification_overall, h.bytes_to_spoofed
                );
            }
            let _ = writeln!(
                w,
                "    state             peak {} handshakes pending, {} connections, memory estimate {:.1} MiB",
                h.peak_handshakes_pending,
                h.peak_connections,
                h.peak_memory_estimate_bytes as f64 / f64::from(1 << 20)
            );
            if let Some(a) = &h.half_open {
                let _ = writeln!(
                    w,
                    "    half-open         {} addresses aiming at {} open: {} opened, {} TLS complete, {} ended, peak {} open at once",
                    a.sources, a.target_connections, a.opened, a.tls_completed, a.closed, a.peak_open
                );
                let _ = writeln!(
                    w,
                    "      server          {} refused at the per-address pending cap, {} evicted for new handshakes; rejections {}",
                    a.handshakes_refused_per_addr,
                    a.handshakes_evicted_no_hello,
                    map_or_none(&a.server_rejections)
                );
            }
            if let Some(c) = &h.cpu {
                let _ = writeln!(
                    w,
                    "    server CPU        peak {:.1} % in a second, mean {:.1} %, rx queue peak {} ({} dropped), longest wait {:.2} ms",
                    100.0 * c.peak_utilisation,
                    100.0 * c.mean_utilisation,
                    c.rx_queue_peak,
                    c.rx_queue_dropped,
                    c.max_wait_ms
                );
            }
        }
        if self.wall_seconds > 0.0 {
            let _ = writeln!(
                w,
                "  speed               {:.2}× real time ({:.1} virtual s in {:.1} wall s)",
                self.speed, self.virtual_seconds, self.wall_seconds
            );
        }
        let p = &self.parallel;
        let _ = writeln!(
            w,
            "  parallel            {} threads, lookahead {} ms: {} windows ({} of the full lookahead, {} cut short by faults or samples, {} sequential for want of lookahead, {} on one thread for want of events)",
            p.threads, p.lookahead_ms, p.windows, p.windows_lookahead_limited, p.windows_cut_short, p.sequential_windows, p.small_windows
        );
        let _ = write!(w, "  trace_sha256        {}", self.trace_sha256);
        f.write_str(&out)
    }
}

fn map_or_none(map: &BTreeMap<String, u64>) -> String {
    if map.is_empty() {
        return "none".into();
    }
    map.iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) fn reason_name(reason: ReasonCode) -> String {
    reason
        .name()
        .map_or_else(|| format!("REASON_{}", reason.0), str::to_owned)
}

/// `(time_s, value)` points of one series.
type Points = Vec<(f64, f64)>;

/// Counters gathered during a run.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    pub(crate) presets: Vec<String>,
    preset_clients: Vec<usize>,
    joined: Vec<bool>,
    joins: u64,
    reconnects: u64,
    pub(crate) attempts: u64,
    pub(crate) connect_errors: u64,
    pub(crate) gave_up: u64,
    rejected: BTreeMap<String, u64>,
    rejected_by_servers: BTreeMap<String, u64>,
    disconnects: BTreeMap<String, u64>,
    /// Per disconnect key: the earliest detail text (its virtual time, then the text, decide).
    disconnect_details: BTreeMap<String, (Nanos, String)>,
    false_disconnects: u64,
    detection_ms: Samples,
    detected: u64,
    reconnect_attempts: u64,
    /// When each reconnection completed, in order.
    reconnect_joins: Vec<Nanos>,
    handshake_ms: Samples,
    rtt_true: Vec<f64>,
    rtt_est: Vec<f64>,
    rtt_abs_err: Samples,
    rtt_err_sum: f64,
    jitter_ms: Samples,
    est_loss: Vec<f64>,
    /// Per preset: (RTT points, loss points).
    series: Vec<(Points, Points)>,
    pub(crate) wire: WireReport,
    pub(crate) inputs_sent: u64,
    pub(crate) inputs_received: u64,
    pub(crate) snapshots_sent: u64,
    pub(crate) snapshots_received: u64,
    pub(crate) fragmented_sent: u64,
    pub(crate) fragmented_received: u64,
    pub(crate) send_errors: u64,
    pub(crate) spectator_snapshots_received: u64,
    pub(crate) spectator_inputs_sent: u64,
    pub(crate) refusal_events: u64,
    pub(crate) no_route: u64,
    pub(crate) partition_dropped: u64,
    pub(crate) dropped_at_down_node: u64,
    pub(crate) faults: u64,
    pub(crate) vs: Option<VsMetrics>,
    srtt_ms: Samples,
    /// Flood and defence counters, when the scenario has a flood or a CPU model.
    pub(crate) hostile: Option<HostileMetrics>,
}

/// Counters behind [`HostileReport`]; the engine fills `report` directly and the per-source
/// and per-second tallies here.
#[derive(Debug, Clone, Default)]
pub(crate) struct HostileMetrics {
    pub(crate) report: HostileReport,
    /// Datagrams the game servers handled, by outcome.
    pub(crate) handled: BTreeMap<&'static str, u64>,
    /// Per spoofed source: (bytes received from it, bytes sent to it).
    pub(crate) per_source: Vec<(u64, u64)>,
    /// Busy nanoseconds per server per virtual second.
    pub(crate) busy: Vec<Vec<Nanos>>,
}

impl HostileMetrics {
    /// Empty counters, with the CPU and half-open sections `scenario` calls for.
    fn new(scenario: &Scenario) -> Self {
        let half_open = scenario.half_open.as_ref().map(|h| HalfOpenReport {
            sources: h.sources,
            target_connections: h.connections,
            ..HalfOpenReport::default()
        });
        Self {
            report: HostileReport {
                cpu: scenario.server_cpu.as_ref().map(|_| CpuReport::default()),
                half_open,
                ..HostileReport::default()
            },
            ..Self::default()
        }
    }

    /// Spoofed source `g`'s tally: (bytes received from it, bytes sent to it).
    pub(crate) fn source(&mut self, g: usize) -> &mut (u64, u64) {
        grow(&mut self.per_source, g)
    }

    /// Game server `server`'s busy nanoseconds in virtual second `second`.
    pub(crate) fn busy_ns(&mut self, server: usize, second: usize) -> &mut Nanos {
        grow(grow(&mut self.busy, server), second)
    }
}

/// The slot `i` of `v`, growing it with defaults as needed.
fn grow<T: Default>(v: &mut Vec<T>, i: usize) -> &mut T {
    if v.len() <= i {
        v.resize_with(i + 1, T::default);
    }
    &mut v[i]
}

fn add_counts<K: Ord + Clone>(into: &mut BTreeMap<K, u64>, from: &BTreeMap<K, u64>) {
    for (key, n) in from {
        *into.entry(key.clone()).or_default() += n;
    }
}

impl VsMetrics {
    /// Adds `o`'s counters to these.
    fn absorb(&mut self, o: &VsMetrics) {
        self.joins += o.joins;
        add_counts(&mut self.join_rejections, &o.join_rejections);
        self.reattestations += o.reattestations;
        add_counts(&mut self.deauthorised, &o.deauthorised);
        self.tickets_received += o.tickets_received;
        self.first_ticket_ms.extend_from_slice(&o.first_ticket_ms);
        self.max_ticket_gap_ns = self.max_ticket_gap_ns.max(o.max_ticket_gap_ns);
        self.admissions_paused += o.admissions_paused;
        self.sessions_closed_starved += o.sessions_closed_starved;
        self.resumed += o.resumed;
        self.vs_lost += o.vs_lost;
        self.receipts_signed += o.receipts_signed;
        self.receipts_received += o.receipts_received;
        self.digests_abandoned += o.digests_abandoned;
        self.failures.extend_from_slice(&o.failures);
    }
}

impl HostileMetrics {
    /// Adds `o`'s counters to these (sums, and maxima for the peaks).
    fn absorb(&mut self, o: &HostileMetrics) {
        let (r, x) = (&mut self.report, &o.report);
        r.flood_datagrams += x.flood_datagrams;
        r.flood_bytes += x.flood_bytes;
        add_counts(&mut r.flood_by_kind, &x.flood_by_kind);
        r.peak_handshakes_pending = r.peak_handshakes_pending.max(x.peak_handshakes_pending);
        r.peak_connections = r.peak_connections.max(x.peak_connections);
        r.peak_memory_estimate_bytes = r.peak_memory_estimate_bytes.max(x.peak_memory_estimate_bytes);
        if let (Some(c), Some(y)) = (r.cpu.as_mut(), x.cpu.as_ref()) {
            c.rx_queue_dropped += y.rx_queue_dropped;
            c.rx_queue_peak = c.rx_queue_peak.max(y.rx_queue_peak);
            c.max_wait_ms = c.max_wait_ms.max(y.max_wait_ms);
        }
        if let (Some(h), Some(y)) = (r.half_open.as_mut(), x.half_open.as_ref()) {
            h.opened += y.opened;
            h.tls_completed += y.tls_completed;
            h.closed += y.closed;
            h.peak_open = h.peak_open.max(y.peak_open);
            h.datagrams_sent += y.datagrams_sent;
            h.datagrams_received += y.datagrams_received;
            h.bytes_sent += y.bytes_sent;
            h.bytes_received += y.bytes_received;
        }
        add_counts(&mut self.handled, &o.handled);
        for (g, (rx, tx)) in o.per_source.iter().enumerate() {
            let slot = self.source(g);
            slot.0 += rx;
            slot.1 += tx;
        }
        for (server, seconds) in o.busy.iter().enumerate() {
            for (second, ns) in seconds.iter().enumerate() {
                *self.busy_ns(server, second) += ns;
            }
        }
    }
}

impl Metrics {
    /// Adds the counters `o` gathered (another part of the same run) to these. Every merge
    /// is exact and commutative (integer sums, maxima, unions), so the result does not depend
    /// on how the run's nodes were split between the parts, nor on the order of merges.
    pub(crate) fn absorb(&mut self, o: &Metrics) {
        for (joined, other) in self.joined.iter_mut().zip(&o.joined) {
            *joined |= other;
        }
        self.joins += o.joins;
        self.reconnects += o.reconnects;
        self.attempts += o.attempts;
        self.connect_errors += o.connect_errors;
        self.gave_up += o.gave_up;
        add_counts(&mut self.rejected, &o.rejected);
        add_counts(&mut self.rejected_by_servers, &o.rejected_by_servers);
        add_counts(&mut self.disconnects, &o.disconnects);
        for (key, (at, text)) in &o.disconnect_details {
            let later = |(mine_at, mine): &(Nanos, String)| (*at, text) < (*mine_at, mine);
            if self.disconnect_details.get(key).is_none_or(later) {
                self.disconnect_details.insert(key.clone(), (*at, text.clone()));
            }
        }
        self.false_disconnects += o.false_disconnects;
        self.detection_ms.absorb(&o.detection_ms);
        self.detected += o.detected;
        self.reconnect_attempts += o.reconnect_attempts;
        self.reconnect_joins.extend_from_slice(&o.reconnect_joins);
        self.handshake_ms.absorb(&o.handshake_ms);
        self.rtt_true.extend_from_slice(&o.rtt_true);
        self.rtt_est.extend_from_slice(&o.rtt_est);
        self.rtt_abs_err.absorb(&o.rtt_abs_err);
        self.rtt_err_sum += o.rtt_err_sum;
        self.jitter_ms.absorb(&o.jitter_ms);
        self.est_loss.extend_from_slice(&o.est_loss);
        for ((rtt, loss), (o_rtt, o_loss)) in self.series.iter_mut().zip(&o.series) {
            rtt.extend_from_slice(o_rtt);
            loss.extend_from_slice(o_loss);
        }
        let (w, x) = (&mut self.wire, &o.wire);
        w.bytes_up += x.bytes_up;
        w.bytes_down += x.bytes_down;
        w.datagrams_up += x.datagrams_up;
        w.datagrams_down += x.datagrams_down;
        self.inputs_sent += o.inputs_sent;
        self.inputs_received += o.inputs_received;
        self.snapshots_sent += o.snapshots_sent;
        self.snapshots_received += o.snapshots_received;
        self.fragmented_sent += o.fragmented_sent;
        self.fragmented_received += o.fragmented_received;
        self.send_errors += o.send_errors;
        self.spectator_snapshots_received += o.spectator_snapshots_received;
        self.spectator_inputs_sent += o.spectator_inputs_sent;
        self.refusal_events += o.refusal_events;
        self.no_route += o.no_route;
        self.partition_dropped += o.partition_dropped;
        self.dropped_at_down_node += o.dropped_at_down_node;
        self.faults += o.faults;
        if let (Some(vs), Some(other)) = (self.vs.as_mut(), o.vs.as_ref()) {
            vs.absorb(other);
        }
        if let (Some(h), Some(other)) = (self.hostile.as_mut(), o.hostile.as_ref()) {
            h.absorb(other);
        }
        self.srtt_ms.absorb(&o.srtt_ms);
    }

    /// The CPU-model counters, when the scenario models server CPU.
    pub(crate) fn cpu(&mut self) -> Option<&mut CpuReport> {
        self.hostile.as_mut().and_then(|h| h.report.cpu.as_mut())
    }

    /// Empty counters for `scenario`, with clients mapped to preset indices.
    pub(crate) fn new(scenario: &Scenario, presets: Vec<String>, client_presets: &[usize]) -> Self {
        let mut preset_clients = vec![0; presets.len()];
        for &p in client_presets {
            preset_clients[p] += 1;
        }
        Self {
            series: vec![(Vec::new(), Vec::new()); presets.len()],
            presets,
            preset_clients,
            joined: vec![false; scenario.clients()],
            vs: scenario.vs.as_ref().map(|_| VsMetrics::default()),
            hostile: (scenario.server_cpu.is_some()
                || scenario.half_open.is_some()
                || scenario
                    .faults
                    .iter()
                    .any(|f| matches!(f, crate::scenario::Fault::Flood { .. })))
            .then(|| HostileMetrics::new(scenario)),
            ..Self::default()
        }
    }

    pub(crate) fn record_join(&mut self, client: usize, handshake_ns: Nanos, reconnect: bool, now: Nanos) {
        self.joined[client] = true;
        self.joins += 1;
        if reconnect {
            self.reconnects += 1;
            self.reconnect_joins.push(now);
        }
        self.handshake_ms.record(handshake_ns as f64 / MILLI as f64);
    }

    pub(crate) fn record_rejection(&mut self, reason: ReasonCode) {
        *self.rejected.entry(reason_name(reason)).or_default() += 1;
    }

    pub(crate) fn record_server_rejection(&mut self, reason: ReasonCode) {
        *self.rejected_by_servers.entry(reason_name(reason)).or_default() += 1;
    }

    pub(crate) fn record_reconnect_attempt(&mut self) {
        self.reconnect_attempts += 1;
    }

    pub(crate) fn record_disconnect(
        &mut self,
        side: Side,
        reason: ReasonCode,
        explained: bool,
        delay: Option<Nanos>,
        detail: &str,
        now: Nanos,
    ) {
        let side_name = match side {
            Side::Client => "client",
            Side::Server => "server",
        };
        let key = format!("{side_name}/{}", reason_name(reason));
        let earlier = |(at, text): &(Nanos, String)| (now, detail) < (*at, text.as_str());
        if self.disconnect_details.get(&key).is_none_or(earlier) {
            self.disconnect_details
                .insert(key.clone(), (now, detail.to_owned()));
        }
        *self.disconnects.entry(key).or_default() += 1;
        if !explained {
            self.false_disconnects += 1;
        }
        if let Some(delay) = delay {
            self.detected += 1;
            self.detection_ms.record(delay as f64 / MILLI as f64);
        }
    }

    pub(crate) fn record_path_sample(&mut self, truth_ms: Option<f64>, stats: &ConnectionStats) {
        let hb = &stats.heartbeat;
        self.srtt_ms.record(hb.srtt_ms);
        self.jitter_ms.record(hb.jitter_ms);
        self.est_loss.push(hb.loss_ratio);
        if let Some(truth) = truth_ms {
            self.rtt_true.push(truth);
            self.rtt_est.push(hb.srtt_ms);
            self.rtt_abs_err.record((hb.srtt_ms - truth).abs());
            self.rtt_err_sum += hb.srtt_ms - truth;
        }
    }

    pub(crate) fn record_series(
        &mut self,
        preset: usize,
        t: f64,
        rtt_ms: Option<f64>,
        loss_pct: Option<f64>,
    ) {
        let (rtt, loss) = &mut self.series[preset];
        if let Some(v) = rtt_ms {
            rtt.push((t, v));
        }
        if let Some(v) = loss_pct {
            loss.push((t, v));
        }
    }

    /// The report of the counters so far.
    pub(crate) fn report(&self, scenario: &Scenario, seed: u64, now: Nanos) -> Report {
        let seconds = now as f64 / SECOND as f64;
        let clients = scenario.clients();
        let per_client_s = |bytes: u64| {
            if clients == 0 || seconds == 0.0 {
                0.0
            } else {
                bytes as f64 / (clients as f64 * seconds)
            }
        };
        let mut joins = self.reconnect_joins.clone();
        joins.sort_unstable();
        let peak = peak_in_window(&joins, 100 * MILLI);
        let spread = match joins.first() {
            Some(&first) if joins.len() >= 2 => {
                let mut since_first = Samples::default();
                for &t in &joins {
                    since_first.record((t - first) as f64 / MILLI as f64);
                }
                let at = |q: f64| since_first.quantile(q).unwrap_or(0.0);
                at(0.9) - at(0.1)
            }
            _ => 0.0,
        };
        let mean = |v: &[f64]| {
            if v.is_empty() {
                0.0
            } else {
                v.iter().sum::<f64>() / v.len() as f64
            }
        };
        let mut wire = self.wire.clone();
        wire.up_bytes_per_client_s = per_client_s(wire.bytes_up);
        wire.down_bytes_per_client_s = per_client_s(wire.bytes_down);
        Report {
            scenario: scenario.name.clone(),
            seed,
            virtual_seconds: seconds,
            servers: scenario.topology.servers,
            sessions: SessionReport {
                clients,
                clients_joined: self.joined.iter().filter(|j| **j).count(),
                joins: self.joins,
                reconnects: self.reconnects,
                attempts: self.attempts,
                rejected: self.rejected.clone(),
                rejected_by_servers: self.rejected_by_servers.clone(),
                gave_up: self.gave_up,
                disconnects: self.disconnects.clone(),
                disconnect_details: self
                    .disconnect_details
                    .iter()
                    .map(|(key, (_, text))| (key.clone(), text.clone()))
                    .collect(),
                false_disconnects: self.false_disconnects,
                detected_disconnects: self.detected,
                detection_delay_ms: self.detection_ms.summary(),
                reconnect_attempts: self.reconnect_attempts,
                reconnect_peak_per_100ms: peak,
                reconnect_spread_ms: spread,
            },
            handshake_ms: self.handshake_ms.summary(),
            rtt: RttReport {
                samples: self.rtt_true.len() as u64,
                true_ms: mean(&self.rtt_true),
                estimated_ms: mean(&self.rtt_est),
                abs_error_ms: self.rtt_abs_err.summary(),
                bias_ms: if self.rtt_true.is_empty() {
                    0.0
                } else {
                    self.rtt_err_sum / self.rtt_true.len() as f64
                },
                srtt_ms: self.srtt_ms.summary(),
            },
            jitter_ms: self.jitter_ms.summary(),
            loss: LossReport {
                link_ratio: 0.0,
                estimated_ratio: mean(&self.est_loss),
                partition_dropped: self.partition_dropped,
            },
            reassembly: ReassemblyReport {
                fragmented_sent: self.fragmented_sent,
                fragmented_received: self.fragmented_received,
                ..ReassemblyReport::default()
            },
            wire,
            traffic: TrafficReport {
                inputs_sent: self.inputs_sent,
                inputs_received: self.inputs_received,
                snapshots_sent: self.snapshots_sent,
                snapshots_received: self.snapshots_received,
                send_errors: self.send_errors,
                spectator_snapshots_received: self.spectator_snapshots_received,
                spectator_inputs_sent: self.spectator_inputs_sent,
                refusal_events: self.refusal_events,
                ..TrafficReport::default()
            },
            presets: self
                .presets
                .iter()
                .enumerate()
                .map(|(i, name)| PresetReport {
                    name: name.clone(),
                    clients: self.preset_clients[i],
                    rtt_ms: self.series[i].0.clone(),
                    loss_pct: self.series[i].1.clone(),
                })
                .collect(),
            vs: self.vs.as_ref().map(VsMetrics::report),
            hostile: self.hostile.as_ref().map(|h| h.report.clone()),
            ..Report::default()
        }
    }
}

/// Largest number of sorted `times` inside any window of `width`.
fn peak_in_window(times: &[Nanos], width: Nanos) -> u64 {
    let mut best = 0;
    let mut start = 0;
    for (end, &t) in times.iter().enumerate() {
        while t - times[start] >= width {
            start += 1;
        }
        best = best.max(end - start + 1);
    }
    best as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_uses_nearest_rank_within_a_tenth_of_a_percent() {
        let samples: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        let s = Summary::of(&samples);
        assert_eq!((s.count, s.mean, s.max), (100, 50.5, 100.0));
        for (got, want) in [(s.p50, 50.0), (s.p99, 99.0)] {
            assert!((want..=want * 1.001).contains(&got), "{got} vs {want}");
        }
        assert_eq!(Summary::of(&[]), Summary::default());
        let one = Summary::of(&[0.25]);
        assert_eq!((one.count, one.p50, one.p99, one.max), (1, 0.25, 0.25, 0.25));
    }

    #[test]
    fn window_peak_counts_events_within_width() {
        let t = [0, 10, 20, 150, 160, 170, 175, 400];
        assert_eq!(peak_in_window(&t, 100), 4);
        assert_eq!(peak_in_window(&t, 1), 1);
        assert_eq!(peak_in_window(&[], 100), 0);
    }
}
