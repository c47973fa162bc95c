//! # tickwire-admin
//!
//! The operator surface of a tickwire server: its statistics as Prometheus metrics, and whether
//! it is alive and admitting players, served over HTTP from a thread of its own.
//!
//! The server loop owns the [`Endpoint`](tickwire_core::Endpoint) and never waits for the
//! admin thread: now and then (twice a second is plenty) it copies its statistics into a
//! plain-data [`Snapshot`] and [publishes](AdminState::publish) it, says when it is
//! [ready](AdminState::set_ready) to admit players, and when it
//! [starts draining](AdminState::start_draining). The HTTP thread renders the latest snapshot on
//! each scrape: publishing is a `Mutex` swap, and a scrape holds that lock only long enough to
//! copy the snapshot, whatever the scraper does.
//!
//! ## Wiring it into a server loop
//!
//! ```no_run
//! use std::sync::atomic::{AtomicBool, Ordering};
//! use std::sync::Arc;
//! use std::time::{Duration, Instant};
//!
//! use tickwire_admin::{AdminServer, AdminState, ServerKind, Snapshot};
//! use tickwire_core::Endpoint;
//!
//! const PUBLISH_EVERY: Duration = Duration::from_millis(500);
//!
//! fn serve(endpoint: &mut Endpoint, stop: &AtomicBool) -> std::io::Result<()> {
//!     let state = AdminState::new(ServerKind::GameServer);
//!     // 9464 is a common exporter port; port 0 would pick a free one (`local_addr` says which).
//!     let admin = AdminServer::start("127.0.0.1:9464".parse().unwrap(), Arc::clone(&state))?;
//!     tracing::info!(addr = %admin.local_addr(), "admin endpoint listening");
//!     state.set_ready(true);
//!
//!     let mut last_publish: Option<Instant> = None;
//!     while !stop.load(Ordering::Relaxed) {
//!         // ... one turn of the drive contract: datagrams in, events, ticks, transmits out,
//!         // sleep until the next deadline ...
//!         let now = Instant::now();
//!         if last_publish.is_none_or(|at| now - at >= PUBLISH_EVERY) {
//!             state.publish(Snapshot {
//!                 endpoint: endpoint.endpoint_stats(),
//!                 ..Snapshot::idle(ServerKind::GameServer)
//!             });
//!             last_publish = Some(now);
//!         }
//!     }
//!     // `/health` and `/ready` answer 503 from now on: load balancers stop sending players.
//!     state.start_draining();
//!     // ... close the sessions and keep turning until they are gone ...
//!     admin.shutdown(); // (dropping it does the same) stops and joins the HTTP thread
//!     Ok(())
//! }
//! ```
//!
//! ## Endpoints
//!
//! Every endpoint answers `GET` and `HEAD` (`405 Method Not Allowed` otherwise, with `Allow`);
//! other paths are `404 Not Found`; a query string is ignored.
//!
//! | Path | Answer |
//! |---|---|
//! | `/metrics` | `200`: the latest snapshot, [rendered](render). OpenMetrics 1.0 (`Content-Type: application/openmetrics-text; version=1.0.0; charset=utf-8`) when the `Accept` header asks for `application/openmetrics-text`, as Prometheus does; otherwise (no `Accept`, `*/*`, `text/plain`) the Prometheus text format 0.0.4 (`text/plain; version=0.0.4; charset=utf-8`), which `promtool check metrics` reads: `curl -s http://ADDR/metrics \| promtool check metrics` |
//! | `/health` | `200 ok` while serving; `503 draining` once [`AdminState::start_draining`] was called |
//! | `/ready` | `200 ready` while [`AdminState::set_ready`]`(true)` and not draining; `503 not ready` before, `503 draining` after |
//! | `/v1/…` | operator commands, with [`AdminState::enable_commands`] only: `Authorization: Bearer TOKEN` required (`401` otherwise), answered by the server loop ([`CommandRequest`]) in JSON |
//!
//! ## Metrics
//!
//! Counters count since the process started; names below are as exposed (OpenMetrics
//! announces a counter's family without its `_total`, and a histogram's samples add
//! `_bucket`, `_sum` and `_count`). Durations are in seconds, sizes in bytes. Reason labels
//! are [`ReasonCode::name`](tickwire_core::ReasonCode::name) in lower case (`rate_limited`);
//! a code this version does not define is labelled with its number, for at most
//! 8 such codes per metric (the lowest), the rest summed under `other`, so that
//! peers choosing close codes cannot grow a scrape without bound.
//!
//! | Metric | Type | Labels |
//! |---|---|---|
//! | `tickwire_info` | info (a gauge in the text format 0.0.4), 1 | `kind`: `game_server`, `verification_server` |
//! | `tickwire_ready`, `tickwire_draining` | gauge, 0 or 1 | |
//! | `tickwire_sessions` | gauge | `state`: `handshaking`, `established` (on a game server, its own session to the verification server too: role `game_server`) |
//! | `tickwire_sessions_established_by_role` | gauge | `role`: `player`, `spectator`, `admin`, `game_server` |
//! | `tickwire_handshakes_total` | counter | `outcome`: `established`; `outcome`: `rejected` with `reason` |
//! | `tickwire_sessions_established_total` | counter | `carrier`: `native`, `webtransport` |
//! | `tickwire_disconnections_total` | counter | `reason` |
//! | `tickwire_connections_refused_total` | counter | `cause`: `pending_limit`, `per_address`, `evicted_no_hello` |
//! | `tickwire_handshakes_rate_limited_total` | counter | |
//! | `tickwire_udp_datagrams_total`, `tickwire_udp_bytes_total` | counter | `direction`: `rx`, `tx` |
//! | `tickwire_datagrams_received_total` | counter | `outcome`: `to_connection`, `dropped`, `stateless_response`, `initial` |
//! | `tickwire_initials_total` | counter | `outcome`: `retry`, `refused`, `accepted`, `accept_failed` |
//! | `tickwire_initials_validated_total` | counter | |
//! | `tickwire_retry_packets_sent_total` | counter | `cause`: `rate_limited`, `before_rejection`, `address_validation` |
//! | `tickwire_responses_dropped_total` | counter | |
//! | `tickwire_recording_bytes_total` | counter | `outcome`: `recorded`, `dropped` |
//! | `tickwire_rate_limited_total` | counter | `limiter`: `address`, `message` |
//! | `tickwire_addresses_tracked` | gauge | |
//! | `tickwire_reassembly_dropped_fragments_total` | counter | `cause`: `too_large`, `too_many_fragments`, `inconsistent`, `partial_limit`, `memory_budget`, `timeout`, `late_duplicate` |
//! | `tickwire_compression_messages_total` | counter | `direction`: `rx`, `tx` |
//! | `tickwire_compression_bytes_total` | counter | `direction`: `rx`, `tx`; `form`: `compressed`, `uncompressed` |
//! | `tickwire_compression_refused_total` | counter | |
//! | `tickwire_rtt_seconds`, `tickwire_jitter_seconds`, `tickwire_handshake_duration_seconds`, `tickwire_tick_lateness_seconds` | histogram | |
//! | `tickwire_ticks_total` | counter | |
//! | `tickwire_tick_duration_seconds` | histogram | (with [`Snapshot::ticks`]) |
//! | `tickwire_tick_stage_duration_seconds` | histogram | `stage`: [`TickStage::name`](tickwire_core::stats::TickStage::name) (with [`Snapshot::ticks`]) |
//! | `tickwire_gs_*` | | with [`Snapshot::gs_agent`]: see [`render`] |
//! | `tickwire_vs_*` | | with [`Snapshot::verifier`]: see [`render`] |
//! | `tickwire_webtransport_certificate_expiry_seconds` | gauge: seconds until the `notAfter` of the certificate browsers pin, at the scrape | (after [`AdminState::set_webtransport_certificate_not_after`]) |
//!
//! ## Deployment
//!
//! Bind the admin endpoint to a private interface: it has no authentication, and the HTTP
//! server underneath (`tiny_http`) sets no socket timeouts. Requests are read on one thread per
//! connection, so a client that never finishes its request holds only that thread; they are
//! answered one at a time on the admin thread, and every response is a few tens of kilobytes
//! at most, so that a client that does not read its response stalls the others only once the
//! kernel's socket buffers are full.

use tickwire_core::stats::{EndpointStats, TickTimings};
use tickwire_core::vs::{GsAgentStats, VerifierStats};

mod commands;
mod metrics;
mod server;

pub use commands::{CommandRequest, MIN_TOKEN_LEN};
pub use metrics::{render, Format};
pub use server::{AdminServer, AdminState};

/// What a server process is, for the `tickwire_info` metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerKind {
    /// A game server.
    GameServer,
    /// A verification server.
    VerificationServer,
}

impl ServerKind {
    /// The `kind` label of `tickwire_info`: `game_server` or `verification_server`.
    pub fn name(self) -> &'static str {
        match self {
            ServerKind::GameServer => "game_server",
            ServerKind::VerificationServer => "verification_server",
        }
    }
}

/// Everything one scrape shows: plain data copied out of the server loop.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The process kind.
    pub kind: ServerKind,
    /// The endpoint's statistics ([`Endpoint::endpoint_stats`](tickwire_core::Endpoint::endpoint_stats)).
    pub endpoint: EndpointStats,
    /// The game server's tick timings, measured by its loop; `None` renders no tick duration
    /// histograms.
    pub ticks: Option<TickTimings>,
    /// A game server's VS agent ([`GsAgent::stats`](tickwire_core::vs::GsAgent::stats));
    /// `None` renders no `tickwire_gs_*` metrics.
    pub gs_agent: Option<GsAgentStats>,
    /// A verification server's verifier ([`Verifier::stats`](tickwire_core::vs::Verifier::stats));
    /// `None` renders no `tickwire_vs_*` metrics.
    pub verifier: Option<VerifierStats>,
}

impl Snapshot {
    /// The snapshot of an idle endpoint of `kind`: every counter 0, no tick timings, no agent,
    /// no verifier. What [`AdminState::new`] starts with, and a base for struct update syntax.
    pub fn idle(kind: ServerKind) -> Self {
        Self {
            kind,
            endpoint: EndpointStats::default(),
            ticks: None,
            gs_agent: None,
            verifier: None,
        }
    }
}

/// Whether the process admits players, as `/ready`, `/health`, `tickwire_ready` and
/// `tickwire_draining` show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// Serving but not admitting players (starting, or the loop said so): `/ready` answers 503.
    NotReady,
    /// Admitting players: `/ready` answers 200.
    Ready,
    /// Draining before exit: `/health` and `/ready` answer 503. Final.
    Draining,
}
