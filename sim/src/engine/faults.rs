//! Scheduled faults: partitions, clock steps and drift, crashes and restarts.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{client_addr, derive, Action, App, ClientState, ServerApp, Sim, What, MILLI};
use crate::link::Nanos;
use crate::scenario::{Direction, Fault, Target};

impl Sim {
    pub(super) fn schedule_faults(&mut self) {
        let scenario = self.world.scenario.clone();
        let servers = self.world.servers;
        let per_server = scenario.topology.clients_per_server;
        let clients = scenario.clients();
        let secs = |s: f64| (s * 1e9) as Nanos;
        for fault in &scenario.faults {
            let (nodes, client_set): (Vec<usize>, Vec<usize>) = match *fault.target() {
                Target::Server(s) => (vec![s], (s * per_server..(s + 1) * per_server).collect()),
                Target::Servers => ((0..servers).collect(), (0..clients).collect()),
                Target::Client(c) => (vec![servers + c], vec![c]),
                Target::Clients(a, b) => ((a..b).map(|c| servers + c).collect(), (a..b).collect()),
                Target::AllClients => ((servers..servers + clients).collect(), (0..clients).collect()),
                Target::ClientsOf(s) => {
                    let range = s * per_server..(s + 1) * per_server;
                    (range.clone().map(|c| servers + c).collect(), range.collect())
                }
                Target::Vs => (
                    self.world.vs.as_ref().map(|v| v.node).into_iter().collect(),
                    Vec::new(),
                ),
            };
            if let (
                Target::Vs,
                Fault::Partition {
                    at_s,
                    heal_at_s,
                    direction,
                    ..
                },
            ) = (fault.target(), fault)
            {
                let cut = |start| {
                    What::Fault(Action::CutVs {
                        direction: *direction,
                        start,
                    })
                };
                self.world.push(secs(*at_s), cut(true));
                if let Some(heal) = heal_at_s {
                    self.world.push(secs(*heal), cut(false));
                }
                continue;
            }
            match *fault {
                Fault::Partition {
                    at_s,
                    heal_at_s,
                    direction,
                    ..
                } => {
                    for &client in &client_set {
                        self.world.push(
                            secs(at_s),
                            What::Fault(Action::Cut {
                                client,
                                direction,
                                start: true,
                            }),
                        );
                        if let Some(heal) = heal_at_s {
                            self.world.push(
                                secs(heal),
                                What::Fault(Action::Cut {
                                    client,
                                    direction,
                                    start: false,
                                }),
                            );
                        }
                    }
                }
                Fault::ClockOffset { at_s, offset_ms, .. } => {
                    for &node in &nodes {
                        self.world
                            .push(secs(at_s), What::Fault(Action::Step { node, offset_ms }));
                    }
                }
                Fault::ClockDrift { at_s, ppm, .. } => {
                    for &node in &nodes {
                        self.world
                            .push(secs(at_s), What::Fault(Action::Drift { node, ppm }));
                    }
                }
                // A raw node of its own (see `flood`).
                Fault::Flood { .. } => {}
                Fault::Crash {
                    at_s, restart_at_s, ..
                } => {
                    for &node in &nodes {
                        self.world.push(secs(at_s), What::Fault(Action::Crash { node }));
                        if let Some(restart) = restart_at_s {
                            self.world
                                .push(secs(restart), What::Fault(Action::Restart { node }));
                        }
                    }
                }
            }
        }
    }

    pub(super) fn fault(&mut self, action: Action) {
        let now = self.world.now;
        match action {
            Action::Cut {
                client,
                direction,
                start,
            } => {
                let path = &mut self.world.paths[client];
                let delta = |n: &mut u32| {
                    if start {
                        *n += 1;
                    } else {
                        *n = n.saturating_sub(1);
                    }
                };
                if direction != Direction::Downlink {
                    delta(&mut path.cut_up);
                }
                if direction != Direction::Uplink {
                    delta(&mut path.cut_down);
                }
                if start {
                    path.fault_begin(now);
                } else {
                    path.fault_end(now);
                }
                self.world.metrics.faults += u64::from(start);
            }
            Action::CutVs { direction, start } => {
                let Some(vs) = self.world.vs.as_mut() else { return };
                for path in &mut vs.paths {
                    for (cut, applies) in [
                        (&mut path.cut_up, direction != Direction::Downlink),
                        (&mut path.cut_down, direction != Direction::Uplink),
                    ] {
                        if applies {
                            *cut = if start { *cut + 1 } else { cut.saturating_sub(1) };
                        }
                    }
                }
                self.world.metrics.faults += u64::from(start);
            }
            Action::Step { node: id, offset_ms } => {
                let node = &mut self.nodes[id];
                node.clock.step_wall(offset_ms);
                if let Some(endpoint) = node.endpoint.as_mut() {
                    endpoint.set_wall_clock(node.clock.wall());
                }
                match &mut node.app {
                    App::Server(ServerApp { vs: Some(gs), .. }) => gs.agent.set_wall_clock(node.clock.wall()),
                    App::Vs(Some(vs)) => vs.verifier.set_wall_clock(node.clock.wall()),
                    _ => {}
                }
            }
            Action::Drift { node, ppm } => self.nodes[node].clock.set_drift(now, ppm),
            Action::Crash { node: id } => {
                let node = &mut self.nodes[id];
                if node.endpoint.take().is_none() {
                    return;
                }
                node.alarm.disarm();
                if let Some(cpu) = node.cpu.as_mut() {
                    cpu.clear();
                }
                self.world.metrics.faults += 1;
                for client in self.affected_clients(id) {
                    self.world.paths[client].fault_begin(now);
                }
                match &mut self.nodes[id].app {
                    App::Client(app) => {
                        app.state = ClientState::Down;
                        app.generation += 1;
                    }
                    App::Server(app) => {
                        app.sessions.clear();
                        app.vs = None;
                    }
                    App::Vs(app) => *app = None,
                }
            }
            Action::Restart { node: id } => {
                if self.nodes[id].endpoint.is_some() {
                    return;
                }
                for client in self.affected_clients(id) {
                    self.world.paths[client].fault_end(now);
                }
                let node = &mut self.nodes[id];
                node.incarnation += 1;
                node.rng = ChaCha8Rng::from_seed(derive(self.world.seed, "app", id as u64, node.incarnation));
                if let App::Client(app) = &mut node.app {
                    // A restarted client comes back from a new port, as a real process would.
                    self.world.addrs.remove(&node.addr);
                    node.addr = client_addr(app.index, node.incarnation);
                    self.world.addrs.insert(node.addr, id);
                    app.state = ClientState::Waiting;
                    app.backoff.reset();
                    app.reconnecting = false;
                    app.generation += 1;
                    let delay = node.rng.random_range(0..100 * MILLI);
                    let generation = app.generation;
                    self.world.push(now + delay, What::Join { node: id, generation });
                }
                if let Err(e) = self.start_node(id) {
                    tracing::error!("restart of node {id} failed: {e}");
                }
            }
        }
    }

    /// Clients whose sessions a crash of node `id` affects.
    fn affected_clients(&self, id: usize) -> Vec<usize> {
        let servers = self.world.servers;
        if self.world.vs.as_ref().is_some_and(|vs| vs.node == id) {
            return Vec::new();
        }
        if id >= servers {
            return vec![id - servers];
        }
        let per = self.world.scenario.topology.clients_per_server;
        (id * per..(id + 1) * per).collect()
    }
}
