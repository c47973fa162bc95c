//! What simulated nodes do besides running their endpoint: clients join (with fresh tickets,
//! retrying with backoff), send one input per synchronised tick and count snapshots; game
//! servers broadcast snapshots of a drawn size to every live session.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tickwire_core::retry::Backoff;
use tickwire_core::{ChannelId, ConnHandle, ConnectOptions, Endpoint, Event, ReasonCode, Role, SendOptions};

use super::behaviour::{Behaviour, Net};
use super::vs::{GsVs, VsApp};
use super::{drive, server_addr, Node, World, FRAGMENTED_ABOVE, SECOND};
use crate::link::Nanos;
use crate::report::Side;
use crate::scenario::SnapshotContent;

#[derive(Debug)]
pub(super) enum ClientState {
    /// Not connected; a `Join` event is pending (or none, if it gave up).
    Waiting,
    Connecting {
        conn: ConnHandle,
        started: Nanos,
    },
    Connected {
        conn: ConnHandle,
        since: Nanos,
    },
    /// Crashed.
    Down,
}

#[derive(Debug)]
pub(super) struct ClientApp {
    pub(super) index: usize,
    pub(super) server: usize,
    pub(super) state: ClientState,
    pub(super) backoff: Backoff,
    /// Invalidates pending `Join` events after a crash or a newer schedule.
    pub(super) generation: u64,
    /// Whether the next attempt is a reconnection (for the stampede statistics).
    pub(super) reconnecting: bool,
    /// Joins as [`Role::Spectator`] (`topology.spectators_per_server`).
    pub(super) spectator: bool,
}

#[derive(Debug)]
pub(super) struct ServerApp {
    pub(super) gs_id: u64,
    /// Live sessions: connection → (client index, established at).
    pub(super) sessions: BTreeMap<ConnHandle, (usize, Nanos)>,
    pub(super) snapshot_every: u64,
    /// The VS agent, when the scenario has a verification server.
    pub(super) vs: Option<Box<GsVs>>,
}

#[derive(Debug)]
pub(super) enum App {
    Server(ServerApp),
    Client(ClientApp),
    /// The verification server (built with its endpoint).
    Vs(Option<Box<VsApp>>),
}

impl App {
    /// The node's behaviour; `None` for the verification server before it is built.
    pub(super) fn behaviour(&mut self) -> Option<&mut dyn Behaviour> {
        match self {
            App::Server(app) => Some(app),
            App::Client(app) => Some(app),
            App::Vs(app) => app.as_deref_mut().map(|app| app as &mut dyn Behaviour),
        }
    }
}

/// A client starts a join attempt: a fresh ticket, then `connect`.
pub(super) fn start_attempt(id: usize, node: &mut Node, world: &mut World) {
    let Some(endpoint) = node.endpoint.as_mut() else {
        return;
    };
    let App::Client(app) = &mut node.app else { return };
    let server_addr = server_addr(app.server);
    let gs_id = app.server as u64 + 1;
    let ticket = world.issue_ticket(
        &mut node.rng,
        app.index,
        gs_id,
        node.identity.verifying_key().to_bytes(),
    );
    let local = node.clock.instant(world.now);
    if app.reconnecting {
        world.metrics.record_reconnect_attempt();
    }
    world.metrics.attempts += 1;
    let options = ConnectOptions {
        trusted_vs_keys: world
            .vs
            .as_ref()
            .filter(|_| {
                world
                    .scenario
                    .vs
                    .as_ref()
                    .is_some_and(|v| v.clients_check_play_ticket)
            })
            .map(|vs| vs.keys.clone()),
        role: if app.spectator {
            Role::Spectator
        } else {
            Role::Player
        },
        ..ConnectOptions::default()
    };
    match endpoint.connect(local, server_addr, ticket, options) {
        Ok(conn) => {
            app.state = ClientState::Connecting {
                conn,
                started: world.now,
            };
        }
        Err(e) => {
            tracing::warn!("client {} cannot connect: {e}", app.index);
            world.metrics.connect_errors += 1;
        }
    }
    drive(id, node, world);
}

impl Behaviour for ServerApp {
    fn handle_time(&mut self, endpoint: &mut Endpoint, net: &mut Net<'_>) {
        if let Some(vs) = &mut self.vs {
            vs.on_time(endpoint, net);
        }
    }

    fn handle_event(&mut self, endpoint: &mut Endpoint, net: &mut Net<'_>, event: Event) {
        if let Some(vs) = &mut self.vs {
            if vs.on_event(endpoint, &event, net) {
                return;
            }
        }
        let now = net.now();
        match event {
            Event::Connected { conn, .. } => {
                let client = endpoint.remote_address(conn).and_then(|a| net.client_at(a));
                if let Some(client) = client {
                    self.sessions.insert(conn, (client, now));
                }
            }
            Event::Disconnected {
                conn, reason, detail, ..
            } => {
                if let Some((client, since)) = self.sessions.remove(&conn) {
                    net.record_disconnect(Side::Server, client, since, reason, &detail);
                }
            }
            Event::Rejected { reason, .. } => net.metrics().record_server_rejection(reason),
            Event::Message { .. } => net.metrics().inputs_received += 1,
            Event::MessageRefused { .. } => net.metrics().refusal_events += 1,
            _ => {}
        }
    }

    fn run_ticks(&mut self, endpoint: &mut Endpoint, net: &mut Net<'_>) -> bool {
        let mut ran = false;
        while let Some(tick) = endpoint.poll_tick(net.local()) {
            ran = true;
            if tick.tick % self.snapshot_every == 0 {
                self.broadcast(endpoint, net, tick.tick);
            }
        }
        ran
    }

    fn poll_timeout(&self, _endpoint: &Endpoint) -> Option<Instant> {
        self.vs.as_ref().and_then(|vs| vs.agent.poll_timeout())
    }
}

impl ServerApp {
    /// One snapshot to every live session, each of a size drawn from the distribution.
    fn broadcast(&self, endpoint: &mut Endpoint, net: &mut Net<'_>, tick: u64) {
        let dist = net.scenario().traffic.snapshot_bytes;
        let period = Duration::from_nanos(SECOND / u64::from(net.scenario().traffic.tick_rate_hz));
        let local = net.local();
        for &conn in self.sessions.keys() {
            let size = dist.sample(net.rng());
            let mut payload = vec![0u8; size];
            if net.scenario().traffic.snapshot_content == SnapshotContent::Entities {
                fill_entities(&mut payload, tick, net.rng());
            }
            payload[..8].copy_from_slice(&tick.to_be_bytes());
            let options = SendOptions {
                deadline: Some(local + period),
            };
            match endpoint.send_with(local, conn, ChannelId::LATEST, Bytes::from(payload), options) {
                Ok(()) => {
                    net.metrics().snapshots_sent += 1;
                    if size > FRAGMENTED_ABOVE {
                        net.metrics().fragmented_sent += 1;
                    }
                }
                Err(_) => net.metrics().send_errors += 1,
            }
        }
    }
}

/// Entity records after the 8-byte tick, 16 bytes each (the last partial one truncated): id
/// (u32), position x, y (u16, moving with the tick), velocity x, y (i8, drawn), health, team,
/// state bits (drawn), and 4 bytes of animation state (drawn for one entity in four).
fn fill_entities(payload: &mut [u8], tick: u64, rng: &mut impl rand::Rng) {
    for (index, record) in payload
        .get_mut(8..)
        .unwrap_or_default()
        .chunks_mut(16)
        .enumerate()
    {
        let id = index as u32;
        let mut entity = [0u8; 16];
        entity[..4].copy_from_slice(&id.to_le_bytes());
        let x = (id.wrapping_mul(37) as u64).wrapping_add(tick / 2) as u16;
        let y = (id.wrapping_mul(91) as u64).wrapping_add(tick / 3) as u16;
        entity[4..6].copy_from_slice(&x.to_le_bytes());
        entity[6..8].copy_from_slice(&y.to_le_bytes());
        let drawn = rng.next_u32().to_le_bytes();
        entity[8] = drawn[0] % 5;
        entity[9] = drawn[1] % 5;
        entity[10] = 100 - (id % 7) as u8 * 10;
        entity[11] = (id % 2) as u8;
        entity[12] = drawn[2] & 0x03;
        if drawn[3] < 64 {
            entity[13..16].copy_from_slice(&drawn[..3]);
        }
        record.copy_from_slice(&entity[..record.len()]);
    }
}

impl Behaviour for ClientApp {
    fn handle_event(&mut self, _endpoint: &mut Endpoint, net: &mut Net<'_>, event: Event) {
        let now = net.now();
        match event {
            Event::Connected { conn, .. } => {
                if let ClientState::Connecting { conn: c, started } = self.state {
                    if c == conn {
                        net.metrics()
                            .record_join(self.index, now - started, self.reconnecting, now);
                        self.state = ClientState::Connected { conn, since: now };
                        self.backoff.reset();
                    }
                }
            }
            Event::Rejected {
                conn,
                reason,
                retry_after,
                ..
            } => {
                if matches!(self.state, ClientState::Connecting { conn: c, .. } if c == conn) {
                    net.metrics().record_rejection(reason);
                    let fresh_ticket_helps =
                        matches!(reason, ReasonCode::TICKET_EXPIRED | ReasonCode::TICKET_REPLAYED);
                    if reason.is_retryable() || fresh_ticket_helps {
                        self.schedule_retry(net, retry_after);
                    } else {
                        self.state = ClientState::Waiting;
                        net.metrics().gave_up += 1;
                    }
                }
            }
            Event::Disconnected {
                conn, reason, detail, ..
            } => {
                if let ClientState::Connected { conn: c, since } = self.state {
                    if c == conn {
                        net.record_disconnect(Side::Client, self.index, since, reason, &detail);
                        self.reconnecting = true;
                        self.schedule_retry(net, None);
                    }
                }
            }
            Event::Message { payload, .. } => {
                net.metrics().snapshots_received += 1;
                if self.spectator {
                    net.metrics().spectator_snapshots_received += 1;
                }
                if payload.len() > FRAGMENTED_ABOVE {
                    net.metrics().fragmented_received += 1;
                }
            }
            _ => {}
        }
    }

    fn run_ticks(&mut self, endpoint: &mut Endpoint, net: &mut Net<'_>) -> bool {
        let ClientState::Connected { conn, .. } = self.state else {
            return false;
        };
        let mut ran = false;
        while let Some(tick) = endpoint.poll_client_tick(net.local(), conn) {
            ran = true;
            if send_input(endpoint, net, conn, tick) && self.spectator {
                net.metrics().spectator_inputs_sent += 1;
            }
        }
        ran
    }

    fn poll_timeout(&self, endpoint: &Endpoint) -> Option<Instant> {
        match self.state {
            ClientState::Connected { conn, .. } => endpoint.tick_sync(conn).and_then(|s| s.poll_timeout()),
            _ => None,
        }
    }
}

impl ClientApp {
    /// Schedules the next join attempt after the backoff (or the server's advice, if later).
    fn schedule_retry(&mut self, net: &mut Net<'_>, advice: Option<Duration>) {
        self.state = ClientState::Waiting;
        let Some(delay) = self.backoff.next_delay(net.rng()) else {
            net.metrics().gave_up += 1;
            return;
        };
        let delay = advice.map_or(delay, |a| a.max(delay));
        self.generation += 1;
        let at = net.now() + delay.as_nanos() as Nanos;
        net.join_at(at, self.generation);
    }
}

/// Client: one input for local tick `tick`; whether the endpoint took it.
fn send_input(endpoint: &mut Endpoint, net: &mut Net<'_>, conn: ConnHandle, tick: u64) -> bool {
    let mut payload = vec![0u8; net.scenario().traffic.input_bytes];
    payload[..8].copy_from_slice(&tick.to_be_bytes());
    match endpoint.send(net.local(), conn, ChannelId::UNRELIABLE, Bytes::from(payload)) {
        Ok(()) => {
            net.metrics().inputs_sent += 1;
            true
        }
        Err(_) => {
            net.metrics().send_errors += 1;
            false
        }
    }
}
