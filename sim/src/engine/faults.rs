//! Scheduled faults: partitions, clock steps and drift, crashes and restarts.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{client_addr, derive, Action, App, ClientState, ServerApp, Sim, What, MILLI};
use crate::link::Nanos;
use crate::scenario::{Direction, Fault, Target};

impl Sim {
    pub(super) fn schedule_faults(&mut self) {
        let scenario = self.groups[0].scenario.clone();
        let servers = self.groups[0].servers;
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
                    self.groups[0].vs.as_ref().map(|v| v.node).into_iter().collect(),
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
                self.push_global(secs(*at_s), cut(true));
                if let Some(heal) = heal_at_s {
                    self.push_global(secs(*heal), cut(false));
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
                        self.push_global(
                            secs(at_s),
                            What::Fault(Action::Cut {
                                client,
                                direction,
                                start: true,
                            }),
                        );
                        if let Some(heal) = heal_at_s {
                            self.push_global(
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
                        self.push_global(secs(at_s), What::Fault(Action::Step { node, offset_ms }));
                    }
                }
                Fault::ClockDrift { at_s, ppm, .. } => {
                    for &node in &nodes {
                        self.push_global(secs(at_s), What::Fault(Action::Drift { node, ppm }));
                    }
                }
                // A raw node of its own (see `flood`).
                Fault::Flood { .. } => {}
                Fault::Crash {
                    at_s, restart_at_s, ..
                } => {
                    for &node in &nodes {
                        self.push_global(secs(at_s), What::Fault(Action::Crash { node }));
                        if let Some(restart) = restart_at_s {
                            self.push_global(secs(restart), What::Fault(Action::Restart { node }));
                        }
                    }
                }
            }
        }
    }

    /// Applies a fault at a barrier; the state every group reads (partitions, fault history,
    /// addresses) changes in every group's copy alike.
    pub(super) fn fault(&mut self, action: Action) {
        let now = self.now;
        match action {
            Action::Cut {
                client,
                direction,
                start,
            } => {
                let delta = |n: &mut u32| {
                    if start {
                        *n += 1;
                    } else {
                        *n = n.saturating_sub(1);
                    }
                };
                for world in &mut self.groups {
                    let path = &mut world.paths[client];
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
                }
                self.metrics.faults += u64::from(start);
            }
            Action::CutVs { direction, start } => {
                for world in &mut self.groups {
                    let Some(vs) = world.vs.as_mut() else { return };
                    for (up, down) in &mut vs.cuts {
                        for (cut, applies) in [
                            (up, direction != Direction::Downlink),
                            (down, direction != Direction::Uplink),
                        ] {
                            if applies {
                                *cut = if start { *cut + 1 } else { cut.saturating_sub(1) };
                            }
                        }
                    }
                }
                self.metrics.faults += u64::from(start);
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
                self.metrics.faults += 1;
                let affected = self.affected_clients(id);
                for world in &mut self.groups {
                    for &client in &affected {
                        world.paths[client].fault_begin(now);
                    }
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
                let affected = self.affected_clients(id);
                for world in &mut self.groups {
                    for &client in &affected {
                        world.paths[client].fault_end(now);
                    }
                }
                let seed = self.groups[0].seed;
                let group = self.group_of(id);
                let node = &mut self.nodes[id];
                node.incarnation += 1;
                node.rng = ChaCha8Rng::from_seed(derive(seed, "app", id as u64, node.incarnation));
                if let App::Client(app) = &mut node.app {
                    // A restarted client comes back from a new port, as a real process would.
                    let old = node.addr;
                    node.addr = client_addr(app.index, node.incarnation);
                    for world in &mut self.groups {
                        world.addrs.remove(&old);
                        world.addrs.insert(node.addr, id);
                    }
                    app.state = ClientState::Waiting;
                    app.backoff.reset();
                    app.reconnecting = false;
                    app.generation += 1;
                    let delay = node.rng.random_range(0..100 * MILLI);
                    let generation = app.generation;
                    self.groups[group].push_from(id, now + delay, What::Join { node: id, generation });
                }
                if let Err(e) = self.start_node(id) {
                    tracing::error!("restart of node {id} failed: {e}");
                }
            }
        }
    }

    /// Clients whose sessions a crash of node `id` affects.
    fn affected_clients(&self, id: usize) -> Vec<usize> {
        let world = &self.groups[0];
        let servers = world.servers;
        if world.vs.as_ref().is_some_and(|vs| vs.node == id) {
            return Vec::new();
        }
        if id >= servers {
            return vec![id - servers];
        }
        let per = world.clients_per_server;
        (id * per..(id + 1) * per).collect()
    }
}
