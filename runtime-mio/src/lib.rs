//! # tickwire-mio
//!
//! A single-threaded driver for [`tickwire_core`] on [mio] and real UDP sockets. One
//! [`MioRuntime`] polls any number of nodes (a UDP socket plus an [`Endpoint`]) and wakes on
//! readability or the earliest endpoint deadline, whichever comes first. The driving logic —
//! feeding datagrams, running timers, draining transmits, the five-stage tick — lives once in
//! `tickwire_core::drive` and `tickwire_udp`; this crate only owns the poll loop.
//!
//! ```no_run
//! use std::time::{Duration, Instant};
//! use tickwire_core::{Config, Endpoint, Event, WallClock};
//! use tickwire_mio::{wall_clock_now, MioRuntime};
//!
//! // Secret material and the identity key come from the OS (or a key file), never a seed.
//! let secrets = tickwire_udp::os_secrets()?;
//! let identity = tickwire_udp::os_signing_key()?;
//! let wall = wall_clock_now();
//! let endpoint = Endpoint::builder(Config::default(), secrets, identity, wall).server(42, Instant::now())?;
//! let mut runtime = MioRuntime::new()?;
//! let server = runtime.bind("127.0.0.1:4433".parse()?, endpoint)?;
//! loop {
//!     runtime.turn(Some(Duration::from_millis(100)))?;
//!     while let Some(event) = runtime.endpoint(server).poll_event() {
//!         if let Event::Connected { conn, .. } = event {
//!             println!("{conn:?} joined");
//!         }
//!     }
//!     # break;
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! This crate is the runtime only. The demo game, the verification server and the binaries
//! built on this runtime (`tickwire-gs`, `tickwire-vs`, `tickwire-client`, `tickwire-demo`)
//! live in the unpublished `tickwire-apps` crate beside it (`runtime-mio/apps`).
//!
//! [mio]: https://docs.rs/mio

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::cell::Cell;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};
use serde::Serialize;
use tickwire_core::drive::{run_tick, Pump, StageTimings, TickStages};
use tickwire_core::stats::TickTimings;
use tickwire_core::tick::TickInfo;
use tickwire_core::{Endpoint, ReasonCode, WallClock};
use tickwire_udp::Datapath;

/// Datagrams read from one socket per wake-up before the others get a turn.
const RECEIVE_BUDGET: usize = 256;

/// A wall-clock anchor for now: runtimes may read clocks, the core may not.
pub fn wall_clock_now() -> WallClock {
    let unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    WallClock::new(Instant::now(), unix_ms)
}

/// Identifies a node of a [`MioRuntime`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(usize);

#[derive(Debug)]
struct Node {
    socket: UdpSocket,
    datapath: Datapath,
    pump: Pump,
    /// Readable data may remain (the receive budget stopped us before `WouldBlock`).
    readable: bool,
    write_ahead: Option<WriteAhead>,
    /// The write-ahead hook failed: nothing is sent any more, and the error is returned by
    /// the next [`MioRuntime::turn`].
    failed: Option<io::Error>,
    poisoned: bool,
}

/// A write-ahead step: makes what the endpoint promised durable (see
/// [`MioRuntime::set_write_ahead`]).
type WriteAheadFn = dyn FnMut(&mut Endpoint) -> io::Result<()>;

/// A node's write-ahead hook.
struct WriteAhead(Box<WriteAheadFn>);

impl std::fmt::Debug for WriteAhead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WriteAhead(..)")
    }
}

impl Node {
    /// Runs the write-ahead hook; whether the node may send (the hook never failed).
    fn persist(&mut self) -> bool {
        if self.poisoned {
            return false;
        }
        if let Some(WriteAhead(hook)) = &mut self.write_ahead {
            if let Err(e) = hook(self.pump.endpoint()) {
                self.poisoned = true;
                self.failed = Some(e);
                return false;
            }
        }
        true
    }

    /// Persists, then sends whatever the endpoint has queued.
    fn flush(&mut self, now: Instant) {
        if self.persist() {
            self.datapath.flush(&self.socket, &mut self.pump, now);
        }
    }
}

/// The game's stages, with the node's write-ahead hook run after the send stage and before
/// the tick's transmits leave.
struct Persisting<'a, G> {
    game: &'a mut G,
    write_ahead: Option<&'a mut WriteAhead>,
    failed: &'a mut Option<io::Error>,
    poisoned: &'a Cell<bool>,
}

impl<G: TickStages> TickStages for Persisting<'_, G> {
    fn apply(&mut self, endpoint: &mut Endpoint, now: Instant, event: tickwire_core::Event) {
        self.game.apply(endpoint, now, event);
    }
    fn simulate(&mut self, tick: &TickInfo) {
        self.game.simulate(tick);
    }
    fn extract(&mut self, tick: &TickInfo) {
        self.game.extract(tick);
    }
    fn send(&mut self, endpoint: &mut Endpoint, now: Instant, tick: &TickInfo) {
        self.game.send(endpoint, now, tick);
        if let (Some(WriteAhead(hook)), false) = (&mut self.write_ahead, self.poisoned.get()) {
            if let Err(e) = hook(endpoint) {
                self.poisoned.set(true);
                *self.failed = Some(e);
            }
        }
    }
}

/// One thread's poll loop over any number of nodes. See the crate docs.
#[derive(Debug)]
pub struct MioRuntime {
    poll: Poll,
    events: Events,
    nodes: Vec<Node>,
}

impl MioRuntime {
    /// A runtime with no nodes.
    ///
    /// # Errors
    /// The OS refused to create the poller.
    pub fn new() -> io::Result<Self> {
        Ok(Self {
            poll: Poll::new()?,
            events: Events::with_capacity(256),
            nodes: Vec::new(),
        })
    }

    /// Binds a UDP socket at `addr` (port 0 = any) for `endpoint`.
    ///
    /// # Errors
    /// The socket could not be bound or configured.
    pub fn bind(&mut self, addr: SocketAddr, endpoint: Endpoint) -> io::Result<NodeId> {
        let mut socket = UdpSocket::bind(addr)?;
        let id = NodeId(self.nodes.len());
        self.poll
            .registry()
            .register(&mut socket, Token(id.0), Interest::READABLE | Interest::WRITABLE)?;
        let datapath = Datapath::new(&socket)?;
        self.nodes.push(Node {
            socket,
            datapath,
            pump: Pump::new(endpoint),
            readable: true,
            write_ahead: None,
            failed: None,
            poisoned: false,
        });
        Ok(id)
    }

    /// The node's local address.
    ///
    /// # Errors
    /// The OS could not report it.
    pub fn local_addr(&self, id: NodeId) -> io::Result<SocketAddr> {
        self.nodes[id.0].socket.local_addr()
    }

    /// The node's endpoint, for commands, events and ticks. Call [`MioRuntime::flush`] (or the
    /// next [`MioRuntime::turn`]) after commands so their packets leave.
    pub fn endpoint(&mut self, id: NodeId) -> &mut Endpoint {
        self.nodes[id.0].pump.endpoint()
    }

    /// The node's pump (socket counters).
    pub fn pump(&self, id: NodeId) -> &Pump {
        &self.nodes[id.0].pump
    }

    /// Node ids in creation order.
    pub fn nodes(&self) -> impl Iterator<Item = NodeId> {
        (0..self.nodes.len()).map(NodeId)
    }

    /// Installs `hook` as node `id`'s write-ahead step: it runs on the endpoint before every
    /// flush of the node's transmits (in [`turn`](Self::turn), [`flush`](Self::flush) and
    /// each tick's send stage), so that what the endpoint promised in the packets about to
    /// leave (a consumed ticket, say) is made durable first. If it fails, nothing of the node
    /// is sent again and the next [`turn`](Self::turn) returns the error.
    pub fn set_write_ahead(
        &mut self,
        id: NodeId,
        hook: impl FnMut(&mut Endpoint) -> io::Result<()> + 'static,
    ) {
        self.nodes[id.0].write_ahead = Some(WriteAhead(Box::new(hook)));
    }

    /// Sends whatever the node's endpoint has queued (after its write-ahead hook).
    pub fn flush(&mut self, id: NodeId) {
        self.nodes[id.0].flush(Instant::now());
    }

    /// The earliest deadline of any node's endpoint.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        self.nodes.iter_mut().filter_map(|n| n.pump.poll_timeout()).min()
    }

    /// One turn: waits for readability or the earliest deadline (at most `max_wait`), then
    /// feeds received datagrams, runs due timers and flushes every node. The clock is read
    /// after waking, so a late timer is handled at the real time.
    ///
    /// # Errors
    /// A socket or poller error other than `WouldBlock`/`Interrupted`.
    pub fn turn(&mut self, max_wait: Option<Duration>) -> io::Result<()> {
        let now = Instant::now();
        let mut timeout = self.poll_timeout().map(|d| d.saturating_duration_since(now));
        if let Some(max) = max_wait {
            timeout = Some(timeout.map_or(max, |t| t.min(max)));
        }
        if self.nodes.iter().any(|n| n.readable) {
            timeout = Some(Duration::ZERO);
        }
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        for event in &self.events {
            if event.is_readable() {
                if let Some(node) = self.nodes.get_mut(event.token().0) {
                    node.readable = true;
                }
            }
        }
        let now = Instant::now();
        for node in &mut self.nodes {
            if node.readable {
                let received = node
                    .datapath
                    .receive(&node.socket, &mut node.pump, now, RECEIVE_BUDGET)?;
                node.readable = !received.drained;
            }
            node.pump.handle_timeout(now);
            node.flush(now);
        }
        match self.nodes.iter_mut().find_map(|node| node.failed.take()) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Runs every tick that is due on server node `id` through its five stages (poll, apply,
    /// simulate, extract, send), recording per-stage wall time in `timings`.
    pub fn run_due_ticks(&mut self, id: NodeId, game: &mut impl TickStages, timings: &mut StageStats) {
        let node = &mut self.nodes[id.0];
        while let Some(tick) = node.pump.endpoint().poll_tick(Instant::now()) {
            let poisoned = Cell::new(node.poisoned);
            let mut game = Persisting {
                game: &mut *game,
                write_ahead: node.write_ahead.as_mut(),
                failed: &mut node.failed,
                poisoned: &poisoned,
            };
            let (socket, datapath) = (&node.socket, &node.datapath);
            let stages = run_tick(&mut node.pump, &mut game, &tick, Instant::now, |t, b| {
                if poisoned.get() {
                    return Ok(()); // not durable: dropped
                }
                datapath.send(socket, t, b)
            });
            node.poisoned = poisoned.get();
            timings.record(&stages);
        }
    }

    /// Graceful shutdown of server node `id`: tells every client why (`SERVER_SHUTDOWN` with
    /// `detail`), then keeps the loop running until the connections have drained or
    /// `grace` has passed.
    ///
    /// # Errors
    /// A socket or poller error.
    pub fn shutdown(&mut self, id: NodeId, detail: &str, grace: Duration) -> io::Result<()> {
        self.shutdown_with(id, detail, None, grace)
    }

    /// [`MioRuntime::shutdown`], telling clients to come back after `retry_after` (carried in
    /// the `SERVER_SHUTDOWN` close, `PROTOCOL.md` §6).
    ///
    /// # Errors
    /// A socket or poller error.
    pub fn shutdown_with(
        &mut self,
        id: NodeId,
        detail: &str,
        retry_after: Option<Duration>,
        grace: Duration,
    ) -> io::Result<()> {
        let start = Instant::now();
        let endpoint = self.endpoint(id);
        match endpoint.server_mut() {
            Some(mut server) => server.shutdown(start, detail, retry_after),
            None => endpoint.close_all(start, ReasonCode::NORMAL, detail),
        }
        self.flush(id);
        while self.endpoint(id).connection_count() > 0 && start.elapsed() < grace {
            self.turn(Some(Duration::from_millis(10)))?;
        }
        Ok(())
    }
}

/// Per-stage timing aggregates of a server loop, in microseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StageStats {
    /// Ticks recorded.
    pub ticks: u64,
    /// Mean time per stage.
    pub mean_us: StageMicros,
    /// Worst time per stage.
    pub max_us: StageMicros,
    #[serde(skip)]
    sum: StageMicros,
    /// Duration histograms of whole ticks and of each stage (for a metrics exporter).
    #[serde(skip)]
    pub histograms: TickTimings,
}

/// One number per stage, in microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct StageMicros {
    /// Poll stage.
    pub poll: f64,
    /// Apply stage.
    pub apply: f64,
    /// Simulate stage.
    pub simulate: f64,
    /// Extract stage.
    pub extract: f64,
    /// Send stage.
    pub send: f64,
}

impl StageMicros {
    fn of(t: &StageTimings) -> Self {
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        Self {
            poll: us(t.poll),
            apply: us(t.apply),
            simulate: us(t.simulate),
            extract: us(t.extract),
            send: us(t.send),
        }
    }

    fn zip(self, other: Self, f: impl Fn(f64, f64) -> f64) -> Self {
        Self {
            poll: f(self.poll, other.poll),
            apply: f(self.apply, other.apply),
            simulate: f(self.simulate, other.simulate),
            extract: f(self.extract, other.extract),
            send: f(self.send, other.send),
        }
    }
}

impl StageStats {
    /// Adds one tick's timings.
    pub fn record(&mut self, timings: &StageTimings) {
        self.histograms.record(&timings.stages());
        let t = StageMicros::of(timings);
        self.ticks += 1;
        self.sum = self.sum.zip(t, |a, b| a + b);
        self.max_us = self.max_us.zip(t, f64::max);
        let n = self.ticks as f64;
        self.mean_us = self.sum.zip(self.sum, |a, _| a / n);
    }
}
