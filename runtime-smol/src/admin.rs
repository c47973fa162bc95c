//! The operator surface of a smol [`Server`]: `/metrics`, `/health` and `/ready` over HTTP
//! (served by `tickwire-admin` on a thread of its own, so a slow scraper never stalls the
//! game loop), fed from the server loop by [`Admin::update`].
//!
//! ```no_run
//! # async fn run(mut server: tickwire_smol::Server) -> std::io::Result<()> {
//! use tickwire_smol::{admin::Admin, ServerOutput};
//! let mut admin = Admin::serve("127.0.0.1:9433".parse().unwrap())?;
//! loop {
//!     let output = server.next().await?;
//!     if let ServerOutput::Tick(_) = output {
//!         // simulate, send snapshots, then:
//!         admin.update(&mut server, None);
//!     }
//! }
//! # }
//! ```

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tickwire_core::stats::TickTimings;

pub use tickwire_admin::{AdminServer, AdminState, ServerKind, Snapshot};

use crate::Server;

/// How often [`Admin::update`] publishes a new snapshot at most.
const PUBLISH_EVERY: Duration = Duration::from_millis(500);

/// An admin endpoint for one game server.
#[derive(Debug)]
pub struct Admin {
    state: Arc<AdminState>,
    server: AdminServer,
    last_publish: Option<Instant>,
}

impl Admin {
    /// Serves `/metrics`, `/health` and `/ready` on `addr` (port 0: any free port).
    ///
    /// # Errors
    /// The address cannot be bound.
    pub fn serve(addr: SocketAddr) -> io::Result<Self> {
        let state = AdminState::new(ServerKind::GameServer);
        let server = AdminServer::start(addr, Arc::clone(&state))?;
        Ok(Self {
            state,
            server,
            last_publish: None,
        })
    }

    /// The address it serves on.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Updates `/ready` (admitting players: not shut down, admissions not paused — with
    /// attestation, only while a valid play ticket is held) and, at most every half second,
    /// the snapshot `/metrics` renders, with `ticks` if the loop measures its tick stages.
    /// Cheap enough to call at every tick.
    pub fn update(&mut self, server: &mut Server, ticks: Option<&TickTimings>) {
        let endpoint = server.io().endpoint();
        let admitting = endpoint.server_mut().is_some_and(|s| !s.admissions_paused());
        self.state.set_ready(admitting);
        let now = Instant::now();
        if self
            .last_publish
            .is_some_and(|last| now.saturating_duration_since(last) < PUBLISH_EVERY)
        {
            return;
        }
        self.last_publish = Some(now);
        let endpoint = server.io().endpoint_ref().endpoint_stats();
        let gs_agent = server.vs_agent().map(|agent| agent.stats(now));
        self.state.publish(Snapshot {
            kind: ServerKind::GameServer,
            endpoint,
            ticks: ticks.copied(),
            gs_agent,
            verifier: None,
        });
    }

    /// Marks the server as draining (before [`Server::shutdown`]): `/health` and `/ready`
    /// answer 503 from now on.
    pub fn start_draining(&self) {
        self.state.start_draining();
    }
}
