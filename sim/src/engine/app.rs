//! What simulated nodes do besides running their endpoint: clients join (with fresh tickets,
//! retrying with backoff), send one input per synchronised tick and count snapshots; game
//! servers broadcast snapshots of a drawn size to every live session.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand_chacha::ChaCha8Rng;
use tickwire_core::retry::Backoff;
use tickwire_core::{ChannelId, ConnHandle, ConnectOptions, Endpoint, Event, ReasonCode, SendOptions};

use super::vs::{GsVs, VsApp};
use super::{drive, Node, What, World, FRAGMENTED_ABOVE, SECOND, SERVER_PORT};
use crate::link::Nanos;
use crate::report::Side;

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

/// A client starts a join attempt: a fresh ticket, then `connect`.
pub(super) fn start_attempt(id: usize, node: &mut Node, world: &mut World) {
    let Some(endpoint) = node.endpoint.as_mut() else {
        return;
    };
    let App::Client(app) = &mut node.app else { return };
    let server_addr = SocketAddr::V4(SocketAddrV4::new(
        Ipv4Addr::new(10, 0, 0, app.server as u8 + 1),
        SERVER_PORT,
    ));
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

pub(super) fn server_event(
    app: &mut ServerApp,
    endpoint: &mut Endpoint,
    world: &mut World,
    local: Instant,
    event: Event,
) {
    if let Some(vs) = &mut app.vs {
        if vs.on_event(endpoint, local, &event, world) {
            return;
        }
    }
    match event {
        Event::Connected { conn, .. } => {
            let client = endpoint
                .remote_address(conn)
                .and_then(|a| world.addrs.get(&a).copied())
                .and_then(|id| id.checked_sub(world.servers));
            if let Some(client) = client {
                app.sessions.insert(conn, (client, world.now));
            }
        }
        Event::Disconnected {
            conn, reason, detail, ..
        } => {
            if let Some((client, since)) = app.sessions.remove(&conn) {
                world.record_disconnect(Side::Server, client, since, reason, &detail);
            }
        }
        Event::Rejected { reason, .. } => world.metrics.record_server_rejection(reason),
        Event::Message { .. } => world.metrics.inputs_received += 1,
        _ => {}
    }
}

pub(super) fn client_event(
    id: usize,
    app: &mut ClientApp,
    rng: &mut ChaCha8Rng,
    world: &mut World,
    event: Event,
) {
    let now = world.now;
    match event {
        Event::Connected { conn, .. } => {
            if let ClientState::Connecting { conn: c, started } = app.state {
                if c == conn {
                    world
                        .metrics
                        .record_join(app.index, now - started, app.reconnecting, now);
                    app.state = ClientState::Connected { conn, since: now };
                    app.backoff.reset();
                }
            }
        }
        Event::Rejected {
            conn,
            reason,
            retry_after,
            ..
        } => {
            if matches!(app.state, ClientState::Connecting { conn: c, .. } if c == conn) {
                world.metrics.record_rejection(reason);
                let fresh_ticket_helps =
                    matches!(reason, ReasonCode::TICKET_EXPIRED | ReasonCode::TICKET_REPLAYED);
                if reason.is_retryable() || fresh_ticket_helps {
                    schedule_retry(id, app, rng, world, retry_after);
                } else {
                    app.state = ClientState::Waiting;
                    world.metrics.gave_up += 1;
                }
            }
        }
        Event::Disconnected {
            conn, reason, detail, ..
        } => {
            if let ClientState::Connected { conn: c, since } = app.state {
                if c == conn {
                    world.record_disconnect(Side::Client, app.index, since, reason, &detail);
                    app.reconnecting = true;
                    schedule_retry(id, app, rng, world, None);
                }
            }
        }
        Event::Message { payload, .. } => {
            world.metrics.snapshots_received += 1;
            if payload.len() > FRAGMENTED_ABOVE {
                world.metrics.fragmented_received += 1;
            }
        }
        _ => {}
    }
}

/// Schedules the next join attempt after the backoff (or the server's advice, if later).
fn schedule_retry(
    id: usize,
    app: &mut ClientApp,
    rng: &mut ChaCha8Rng,
    world: &mut World,
    advice: Option<Duration>,
) {
    app.state = ClientState::Waiting;
    let Some(delay) = app.backoff.next_delay(rng) else {
        world.metrics.gave_up += 1;
        return;
    };
    let delay = advice.map_or(delay, |a| a.max(delay));
    app.generation += 1;
    let at = world.now + delay.as_nanos() as Nanos;
    world.push(
        at,
        What::Join {
            node: id,
            generation: app.generation,
        },
    );
}

/// Server: one snapshot to every live session, each of a size drawn from the distribution.
pub(super) fn broadcast(
    app: &ServerApp,
    endpoint: &mut Endpoint,
    rng: &mut ChaCha8Rng,
    world: &mut World,
    local: Instant,
    tick: u64,
) {
    let dist = world.scenario.traffic.snapshot_bytes;
    let period = Duration::from_nanos(SECOND / u64::from(world.scenario.traffic.tick_rate_hz));
    for &conn in app.sessions.keys() {
        let size = dist.sample(rng);
        let mut payload = vec![0u8; size];
        payload[..8].copy_from_slice(&tick.to_be_bytes());
        let options = SendOptions {
            deadline: Some(local + period),
        };
        match endpoint.send_with(local, conn, ChannelId::LATEST, Bytes::from(payload), options) {
            Ok(()) => {
                world.metrics.snapshots_sent += 1;
                if size > FRAGMENTED_ABOVE {
                    world.metrics.fragmented_sent += 1;
                }
            }
            Err(_) => world.metrics.send_errors += 1,
        }
    }
}

/// Client: one input for local tick `tick`.
pub(super) fn send_input(
    endpoint: &mut Endpoint,
    world: &mut World,
    local: Instant,
    conn: ConnHandle,
    tick: u64,
) {
    let mut payload = vec![0u8; world.scenario.traffic.input_bytes];
    payload[..8].copy_from_slice(&tick.to_be_bytes());
    match endpoint.send(local, conn, ChannelId::UNRELIABLE, Bytes::from(payload)) {
        Ok(()) => world.metrics.inputs_sent += 1,
        Err(_) => world.metrics.send_errors += 1,
    }
}
