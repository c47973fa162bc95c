//! What a node runs beside its endpoint, behind one small trait: the engine feeds the endpoint
//! and calls a [`Behaviour`] in the drive contract's order (its own timers, then each event,
//! then ticks), and a behaviour reaches the rest of the run only through [`Net`].

use std::net::SocketAddr;
use std::time::Instant;

use rand_chacha::ChaCha8Rng;
use tickwire_core::{Endpoint, Event, ReasonCode};

use super::{What, World};
use crate::report::{Metrics, Side};
use crate::scenario::Scenario;
use crate::units::Nanos;

/// A node's application: a client, a game server, the verification server.
pub(super) trait Behaviour {
    /// Runs the behaviour's own timers that are due (a verification agent's, a verifier's);
    /// called before the endpoint's events are drained.
    fn handle_time(&mut self, _endpoint: &mut Endpoint, _net: &mut Net<'_>) {}

    /// Acts on one endpoint event.
    fn handle_event(&mut self, endpoint: &mut Endpoint, net: &mut Net<'_>, event: Event);

    /// Runs every tick that is due (a server's ticks, a client's synchronised ticks); `true`
    /// if any ran. By default the ticks are taken and nothing else happens.
    fn run_ticks(&mut self, endpoint: &mut Endpoint, net: &mut Net<'_>) -> bool {
        let mut ran = false;
        while endpoint.poll_tick(net.local()).is_some() {
            ran = true;
        }
        ran
    }

    /// The behaviour's own next deadline, beyond the endpoint's.
    fn poll_timeout(&self, _endpoint: &Endpoint) -> Option<Instant> {
        None
    }
}

/// The run as one node's behaviour sees it: virtual and local time, the node's random stream,
/// the scenario and the metrics, and the few things it may ask of the engine.
pub(super) struct Net<'a> {
    world: &'a mut World,
    /// The node's id.
    id: usize,
    /// The node's local clock reading at the current virtual time.
    local: Instant,
    /// The node's own random stream (derived from the run's seed).
    rng: &'a mut ChaCha8Rng,
}

impl<'a> Net<'a> {
    /// Node `id`'s view of `world`, its clock reading `local`, and its random stream.
    pub(super) fn new(world: &'a mut World, id: usize, local: Instant, rng: &'a mut ChaCha8Rng) -> Self {
        Self {
            world,
            id,
            local,
            rng,
        }
    }
}

impl Net<'_> {
    /// Virtual time, in nanoseconds.
    pub(super) fn now(&self) -> Nanos {
        self.world.now
    }

    /// The node's local clock reading.
    pub(super) fn local(&self) -> Instant {
        self.local
    }

    /// The node's random stream.
    pub(super) fn rng(&mut self) -> &mut ChaCha8Rng {
        self.rng
    }

    /// The scenario being run.
    pub(super) fn scenario(&self) -> &Scenario {
        &self.world.scenario
    }

    /// The run's metrics.
    pub(super) fn metrics(&mut self) -> &mut Metrics {
        &mut self.world.metrics
    }

    /// Keeps a receipt for [`Sim::receipts`](super::Sim::receipts) when the run records.
    pub(super) fn keep_receipt(
        &mut self,
        digest: tickwire_core::vs::TranscriptDigest,
        receipt: tickwire_core::vs::ProtectedReceipt,
    ) {
        // Game servers are the first nodes: node `s` has gs_id `s + 1`.
        let gs_id = self.id as u64 + 1;
        self.world.keep_receipt(gs_id, digest, receipt);
    }

    /// The client index of the node at `addr`, if it is a client.
    pub(super) fn client_at(&self, addr: SocketAddr) -> Option<usize> {
        let id = *self.world.addrs.get(&addr)?;
        id.checked_sub(self.world.servers)
    }

    /// Records a session's end as seen by `side`, classified against the fault history.
    pub(super) fn record_disconnect(
        &mut self,
        side: Side,
        client: usize,
        established: Nanos,
        reason: ReasonCode,
        detail: &str,
    ) {
        self.world
            .record_disconnect(side, client, established, reason, detail);
    }

    /// Asks the engine to start a join attempt of this (client) node at `at`, unless its
    /// `generation` has moved on by then.
    pub(super) fn join_at(&mut self, at: Nanos, generation: u64) {
        self.world.push_from(
            self.id,
            at,
            What::Join {
                node: self.id,
                generation,
            },
        );
    }
}

/// A node whose behaviour is not running yet (the verification server before its endpoint is
/// built): it drains ticks and does nothing else.
pub(super) struct Idle;

impl Behaviour for Idle {
    fn handle_event(&mut self, _endpoint: &mut Endpoint, _net: &mut Net<'_>, _event: Event) {}
}
