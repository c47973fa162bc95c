//! What an operator runs the servers with: logs through `tracing`, SIGTERM and SIGINT that
//! drain, the admin HTTP endpoint (`/metrics`, `/health`, `/ready`), and the drain settings of
//! the one configuration file.
//!
//! A drain, started by the first SIGTERM or SIGINT: `/ready` and `/health` answer 503, the
//! endpoint stops admitting, every client is closed with `SERVER_SHUTDOWN` carrying
//! `retry_after_ms`, and the process exits 0 once the connections are gone or `timeout_ms`
//! has passed. A second signal during the drain exits at once with [`EXIT_SECOND_SIGNAL`].

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tickwire_admin::{AdminServer, AdminState, CommandRequest, ServerKind, Snapshot};

use crate::cli::UsageError;

/// Exit code when a second SIGTERM or SIGINT arrives during a drain (128 + SIGINT, as a shell
/// reports an interrupted program).
pub const EXIT_SECOND_SIGNAL: i32 = 130;

/// How often the loop publishes a metrics snapshot for `/metrics`.
const PUBLISH_EVERY: Duration = Duration::from_millis(500);

/// Log output format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Human,
    /// One JSON object per event (for log shippers).
    Json,
}

/// Without `RUST_LOG`: `info`, except the TPM library's own log, whose failures the binaries
/// already report in their one line.
const DEFAULT_LOG_FILTER: &str = "info,tss_esapi=off";

/// Installs the process's `tracing` subscriber: events at `RUST_LOG`'s levels (default
/// `info`, the TPM library's log off) on stderr, in `format`.
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr);
    // A second initialisation (tests run servers in threads) keeps the first subscriber.
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// How a server drains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DrainSettings {
    /// Longest wait for clients to go once they were told, in milliseconds. Default 5 000.
    pub timeout_ms: u64,
    /// The `retry_after_ms` clients are told to wait before coming back. Default 5 000.
    pub retry_after_ms: u64,
}

impl Default for DrainSettings {
    fn default() -> Self {
        Self {
            timeout_ms: 5_000,
            retry_after_ms: 5_000,
        }
    }
}

impl DrainSettings {
    /// The drain timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// The retry-after clients are told.
    pub fn retry_after(&self) -> Duration {
        Duration::from_millis(self.retry_after_ms)
    }
}

/// The operator side of one server loop: the signal flag, the admin endpoint's shared state,
/// and the drain settings. [`Operator::default`] has none of them (tests, the all-in-one demo).
#[derive(Debug, Default)]
pub struct Operator {
    stop: Option<Arc<AtomicBool>>,
    admin: Option<(Arc<AdminState>, AdminServer)>,
    /// How to drain.
    pub drain: DrainSettings,
    last_publish: Option<Instant>,
}

impl Operator {
    /// An operator with `drain` settings, nothing else yet.
    pub fn new(drain: DrainSettings) -> Self {
        Self {
            drain,
            ..Self::default()
        }
    }

    /// Makes SIGTERM and SIGINT start a drain, and a second one exit at once with
    /// [`EXIT_SECOND_SIGNAL`].
    ///
    /// # Errors
    /// The handlers cannot be installed.
    pub fn handle_signals(&mut self) -> io::Result<()> {
        let stop = Arc::new(AtomicBool::new(false));
        for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
            // Registered first, so it sees the flag as the first signal left it.
            signal_hook::flag::register_conditional_shutdown(signal, EXIT_SECOND_SIGNAL, Arc::clone(&stop))?;
            signal_hook::flag::register(signal, Arc::clone(&stop))?;
        }
        self.stop = Some(stop);
        Ok(())
    }

    /// Starts the admin endpoint on `addr` for a server of `kind`.
    ///
    /// # Errors
    /// The address cannot be bound (a clear message naming it).
    pub fn serve_admin(&mut self, addr: SocketAddr, kind: ServerKind) -> Result<SocketAddr, UsageError> {
        let state = AdminState::new(kind);
        let server = AdminServer::start(addr, Arc::clone(&state))
            .map_err(|e| UsageError::new(format!("--admin {addr}: cannot listen: {e}")))?;
        let bound = server.local_addr();
        self.admin = Some((state, server));
        Ok(bound)
    }

    /// Accepts operator commands on the admin endpoint from requests bearing the token in
    /// `token_file` (its contents, trimmed; at least 16 characters).
    ///
    /// # Errors
    /// No admin endpoint, or the file cannot be read or holds too short a token.
    pub fn enable_commands(&mut self, token_file: &std::path::Path) -> Result<(), UsageError> {
        let shown = token_file.display();
        let Some((state, _)) = &self.admin else {
            return Err(UsageError::new(
                "--admin-token-file has no effect without --admin ADDR (commands are served there)",
            ));
        };
        let token = std::fs::read_to_string(token_file)
            .map_err(|e| UsageError::new(format!("--admin-token-file {shown}: {e}")))?;
        state
            .enable_commands(&token)
            .map_err(|e| UsageError::new(format!("--admin-token-file {shown}: {e}")))
    }

    /// The admin endpoint's shared state, if it is served: for what the server sets outside
    /// the loop's snapshots.
    pub fn admin_state(&self) -> Option<Arc<AdminState>> {
        self.admin.as_ref().map(|(state, _)| Arc::clone(state))
    }

    /// The next operator command from the admin endpoint, if any.
    pub fn poll_command(&self) -> Option<CommandRequest> {
        self.admin.as_ref()?.0.poll_command()
    }

    /// Whether a signal asked the process to stop.
    pub fn stop_requested(&self) -> bool {
        self.stop
            .as_ref()
            .is_some_and(|stop| stop.load(Ordering::Relaxed))
    }

    /// Sets what `/ready` answers (while not draining).
    pub fn set_ready(&self, ready: bool) {
        if let Some((state, _)) = &self.admin {
            state.set_ready(ready);
        }
    }

    /// Whether a snapshot is due (every half second, and at once the first time); call
    /// [`Operator::publish`] when it is.
    pub fn publish_due(&self, now: Instant) -> bool {
        self.admin.is_some()
            && self
                .last_publish
                .is_none_or(|last| now.saturating_duration_since(last) >= PUBLISH_EVERY)
    }

    /// Hands `snapshot` to the admin endpoint.
    pub fn publish(&mut self, now: Instant, snapshot: Snapshot) {
        if let Some((state, _)) = &self.admin {
            state.publish(snapshot);
            self.last_publish = Some(now);
        }
    }

    /// Marks the process as draining: `/health` and `/ready` answer 503 from now on.
    pub fn start_draining(&self) {
        if let Some((state, _)) = &self.admin {
            state.start_draining();
        }
    }
}
