//! Nodes without an endpoint, behind one small trait: hostile traffic generators (floods,
//! half-open attackers) are [`RawNode`]s that take and give raw datagrams, in the spirit of
//! neqo's simulator nodes. The engine wakes a raw node when one of its [`RawTimer`]s comes
//! due, hands it every datagram sent to one of its addresses, and routes what it sends
//! through its [`Wire`], hashing every datagram into the trace like any other node's. A raw
//! node reaches the rest of the run only through [`RawNet`].

use std::collections::VecDeque;
use std::net::SocketAddr;

use sha2::{Digest, Sha256};

use super::{Alarm, Part, Sim, What, Wires, World};
use crate::link::{Link, Nanos};
use crate::report::HostileMetrics;

/// Legitimate client-to-server datagrams the engine keeps for raw nodes that overhear them.
pub(super) const OVERHEARD: usize = 64;
/// Trace marker of a datagram sent from a spoofed source (links mark their verdicts with 0–1,
/// routing with 0xfe/0xff).
const SPOOFED_MARK: u8 = 0xfd;

/// A raw node's timers, each armed and fired on its own (so that a node's schedule and its
/// protocol stack's deadlines keep their own places in the event queue).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RawTimer {
    /// Its own schedule: a flood's next datagram, an attacker's next connection.
    Schedule,
    /// Its protocol stack's deadline: an attacker's QUIC connections.
    Transport,
}

impl RawTimer {
    const ALL: [RawTimer; 2] = [RawTimer::Schedule, RawTimer::Transport];
}

/// A node that sends and receives raw datagrams, with no endpoint. Inputs are `handle_*`;
/// its deadlines are [`RawNode::poll_timeout`], asked after every input; what it sends goes
/// through [`RawNet::send`].
pub(super) trait RawNode: Send {
    /// The addresses it sends from and receives at (asked once, when it joins the run).
    fn addrs(&self) -> Vec<SocketAddr>;

    /// Whether it reads [`RawNet::overheard`]; the engine keeps those datagrams only then.
    fn overhears(&self) -> bool {
        false
    }

    /// Timer `timer` has come due at [`RawNet::now`] (a spurious wake-up is a no-op).
    fn handle_time(&mut self, net: &mut RawNet<'_>, timer: RawTimer);

    /// A datagram from `from` reached its address `to`.
    fn handle_datagram(&mut self, net: &mut RawNet<'_>, from: SocketAddr, to: SocketAddr, payload: Vec<u8>);

    /// Timer `timer`'s deadline, in virtual nanoseconds; `None` = not armed.
    fn poll_timeout(&self, timer: RawTimer) -> Option<Nanos>;
}

/// How a raw node's datagrams travel to and from the nodes with endpoints.
#[derive(Debug)]
pub(super) enum Wire {
    /// From spoofed sources: what it sends reaches its destination at once (its own link is
    /// not modelled), and what is sent to it is routed nowhere, though it still hears of it
    /// (to count amplification).
    Spoofed,
    /// A link each way, like a client's path: `up` carries what it sends, `down` what game
    /// server `server` (the only node it talks to) sends it.
    Links {
        up: Box<Link>,
        down: Box<Link>,
        server: usize,
    },
}

/// A raw node about to join a run, with its wire.
pub(super) type NewRawNode = (Box<dyn RawNode>, Wire);

/// A datagram a raw node sent, waiting for the engine to route it.
#[derive(Debug)]
pub(super) struct RawTransmit {
    from: SocketAddr,
    to: SocketAddr,
    payload: Vec<u8>,
}

/// A raw node in the engine's table, with a wake-up per [`RawTimer`], its uplink (`None`:
/// spoofed) and its trace.
pub(super) struct RawSlot {
    node: Box<dyn RawNode>,
    alarms: [Alarm; RawTimer::ALL.len()],
    up: Option<Box<Link>>,
    pub(super) trace: Sha256,
}

/// The run as a raw node sees it: virtual time, the hostile-traffic counters, what it can
/// overhear, and a way to send.
pub(super) struct RawNet<'a> {
    world: &'a mut World,
}

impl<'a> RawNet<'a> {
    fn new(world: &'a mut World) -> Self {
        Self { world }
    }
}

impl RawNet<'_> {
    /// Virtual time, in nanoseconds.
    pub(super) fn now(&self) -> Nanos {
        self.world.now
    }

    /// Sends `payload` from `from` (one of its addresses) to `to`; routed when the current
    /// input returns.
    pub(super) fn send(&mut self, from: SocketAddr, to: SocketAddr, payload: Vec<u8>) {
        self.world.outbox.push(RawTransmit { from, to, payload });
    }

    /// The hostile-traffic counters of the report (present whenever raw nodes run).
    pub(super) fn hostile(&mut self) -> Option<&mut HostileMetrics> {
        self.world.metrics.hostile.as_mut()
    }

    /// The latest legitimate client-to-server datagrams, oldest first, as an attacker on the
    /// path would overhear them; `None` unless the node [overhears](RawNode::overhears).
    pub(super) fn overheard(&self) -> Option<&VecDeque<Vec<u8>>> {
        self.world.overheard.as_ref()
    }
}

impl World {
    /// Notes a legitimate client-to-server datagram for raw nodes that overhear them (they
    /// hear it after the barrier).
    pub(super) fn overhear(&mut self, client: usize, bytes: &[u8]) {
        if self.overheard.is_some() {
            self.heard.push((self.now, client, bytes.to_vec()));
        }
    }

    /// Keeps a legitimate client-to-server datagram, at a barrier.
    pub(super) fn overhear_merged(&mut self, bytes: &[u8]) {
        let Some(recent) = self.overheard.as_mut() else {
            return;
        };
        if recent.len() == OVERHEARD {
            recent.pop_front();
        }
        recent.push_back(bytes.to_vec());
    }

    /// Routes a datagram node `src` sent to `to`, an address no endpoint node holds: through
    /// the raw node's downlink (kept by the game server it talks to), or (spoofed sources,
    /// unknown addresses) nowhere.
    pub(super) fn route_raw(
        &mut self,
        src: usize,
        wires: &mut Wires,
        from: SocketAddr,
        to: SocketAddr,
        bytes: &[u8],
    ) {
        let now = self.now;
        let Some(&node) = self.raw_addrs.get(&to) else {
            self.no_route(&mut wires.trace);
            return;
        };
        let deliver = move |payload| What::DeliverRaw {
            node,
            from,
            to,
            payload,
        };
        if self.raw_spoofed[node] {
            wires.trace.update([0xff]);
            self.send(src, now, deliver(bytes.to_vec()));
            return;
        }
        let Some((_, down)) = wires.raw_down.iter_mut().find(|(raw, _)| *raw == node) else {
            self.no_route(&mut wires.trace);
            return;
        };
        let outcome = down.transmit(now, bytes.to_vec());
        self.enqueue(src, &mut wires.trace, outcome, deliver);
    }
}

impl Sim {
    /// Adds a raw node reached through `wire` and arms its first wake-up.
    pub(super) fn add_raw(&mut self, node: Box<dyn RawNode>, wire: Wire) {
        let id = self.raw.len();
        let overhears = node.overhears();
        let addrs = node.addrs();
        for world in &mut self.groups {
            for &addr in &addrs {
                world.raw_addrs.insert(addr, id);
            }
            if overhears {
                world.overheard.get_or_insert_default();
            }
            world.raw_spoofed.push(matches!(wire, Wire::Spoofed));
        }
        let up = match wire {
            Wire::Spoofed => None,
            Wire::Links { up, down, server } => {
                self.nodes[server].wires.raw_down.push((id, *down));
                Some(up)
            }
        };
        self.raw.push(RawSlot {
            node,
            alarms: Default::default(),
            up,
            trace: Sha256::new(),
        });
        let group = self.raw_group;
        let mut parts = self.parts();
        parts[group].drive_raw(id);
    }
}

impl Part<'_> {
    /// Raw node `id`'s armed `timer` (ignored if an earlier wake-up superseded it).
    pub(super) fn wake_raw(&mut self, id: usize, timer: RawTimer) {
        let slot = &mut self.raw[id];
        if !slot.alarms[timer as usize].fire(self.world.now) {
            self.world.counts.stale_wakes += 1;
            return;
        }
        self.world.counts.wakes += 1;
        slot.node.handle_time(&mut RawNet::new(self.world), timer);
        self.drive_raw(id);
    }

    /// A datagram from `from` reaches raw node `id` at its address `to`.
    pub(super) fn deliver_raw(&mut self, id: usize, from: SocketAddr, to: SocketAddr, payload: Vec<u8>) {
        self.world.counts.deliveries += 1;
        let net = &mut RawNet::new(self.world);
        self.raw[id].node.handle_datagram(net, from, to, payload);
        self.drive_raw(id);
    }

    /// After any input to raw node `id`: arms its timers, then routes what it sent.
    fn drive_raw(&mut self, id: usize) {
        let now = self.world.now;
        let actor = self.world.raw_base + id;
        let slot = &mut self.raw[id];
        for timer in RawTimer::ALL {
            let alarm = &mut slot.alarms[timer as usize];
            if let Some(at) = slot.node.poll_timeout(timer).and_then(|at| alarm.arm(now, at)) {
                self.world.push_from(actor, at, What::WakeRaw { node: id, timer });
            }
        }
        let mut outbox = std::mem::take(&mut self.world.outbox);
        for transmit in outbox.drain(..) {
            self.send_raw(id, transmit);
        }
        self.world.outbox = outbox;
    }

    /// Routes one datagram raw node `id` sent, hashing it with its fate.
    fn send_raw(&mut self, id: usize, RawTransmit { from, to, payload }: RawTransmit) {
        let world = &mut *self.world;
        let actor = world.raw_base + id;
        let slot = &mut self.raw[id];
        if slot.up.is_some() {
            // Spoofed datagrams are counted in the hostile report instead.
            world.datagrams += 1;
        }
        world.record(actor, &mut slot.trace, from, to, &payload);
        if slot.up.is_none() {
            slot.trace.update([SPOOFED_MARK]);
        }
        let Some(&dst) = world.addrs.get(&to) else {
            world.no_route(&mut slot.trace);
            return;
        };
        match &mut slot.up {
            None => world.send(
                actor,
                world.now,
                What::Deliver {
                    to: dst,
                    from,
                    payload,
                },
            ),
            Some(up) => {
                let outcome = up.transmit(world.now, payload);
                world.enqueue(actor, &mut slot.trace, outcome, |payload| What::Deliver {
                    to: dst,
                    from,
                    payload,
                });
            }
        }
    }
}
