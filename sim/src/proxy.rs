//! A real-UDP impairment proxy: the simulator's [`Link`] models applied to real datagrams
//! between real processes, for machines without kernel netem (`tc qdisc … netem`).
//!
//! ```text
//!                      ┌──────────────── proxy ────────────────┐
//!  client A ──┐        │             flow 0: uplink Link ─► socket A' ──┐
//!             ├─► listen ─► flow table                               ├─► upstream
//!  client B ──┘        │             flow 1: uplink Link ─► socket B' ──┘
//!      ▲               │  ◄─ downlink Link ◄─ (replies to A', B')      │
//!      └───────────────┴── timer heap (deliver_at, seq) ───────────────┘
//! ```
//!
//! **NAT-like flows.** Each distinct client address opens a *flow* with its own UDP socket
//! towards the upstream, bound to an ephemeral port of the upstream's address family and
//! connected to it, so the upstream server sees one address per client (like an
//! endpoint-independent NAT mapping, RFC 4787 §4.1) and its replies are routed back to the
//! right client. At most [`ProxyConfig::max_flows`] flows exist at once (default 4 096; each
//! holds one file descriptor, so the process's descriptor limit may bind first); a datagram
//! from a new client when the table is full, after expiring idle flows, is dropped and
//! counted in [`ProxyStats::flows_refused`]. A flow idle for
//! [`ProxyConfig::idle_timeout_ms`] in both directions is closed (RFC 4787 §4.3, REQ-5: at
//! least two minutes).
//!
//! **Links.** A flow has one [`Link`] per [`Direction`]: client → upstream (*uplink*) and
//! upstream → client (*downlink*), seeded by [`flow_seed`] from the proxy's seed, the flow's
//! index (flows are numbered from 0 in order of their first datagram) and the direction.
//! The links' virtual time is nanoseconds since the proxy started, read from the monotonic
//! clock; a datagram received at `now` is offered to its link at `now`, and each delivery the
//! link returns waits in a timer heap ordered by `(deliver_at, seq)` until its time comes.
//!
//! **Determinism.** Which datagrams a link drops, corrupts or duplicates, and the modelled
//! delay of each, depend only on the seed, the flow index and the datagram's position in its
//! direction (random elements draw a fixed number of values per datagram, see
//! [`link`](crate::link)); the bandwidth stage also depends on arrival times. Real timing is
//! not reproducible, and so neither is what the endpoints send.
//!
//! **Timing.** The event loop sleeps in [mio](https://docs.rs/mio) until the next delivery is
//! due or a socket is readable. mio's poll timeout has millisecond resolution (epoll), so a
//! datagram leaves up to about 1 ms after its scheduled time, plus scheduling noise; it never
//! leaves early. [`DirectionStats::late_ns_max`] reports how late deliveries were. ECN marks
//! and other IP header fields are not carried over.
//!
//! **Bounds.** Every buffer is bounded: the flow table ([`ProxyConfig::max_flows`]), the timer
//! heap ([`ProxyConfig::max_pending_datagrams`] and [`ProxyConfig::max_pending_bytes`]; a
//! delivery that does not fit is dropped and counted in
//! [`DirectionStats::overflow_dropped`]), and reads (at most 64 datagrams per socket per
//! loop turn, so a flood on one socket cannot starve deliveries).
//!
//! Use it from code ([`Proxy::spawn`]) or as `tickwire-sim proxy` ([`run`]):
//!
//! ```no_run
//! use tickwire_sim::link::LinkSpec;
//! use tickwire_sim::proxy::{Proxy, ProxyConfig};
//!
//! let spec = LinkSpec::preset("lossy-burst").unwrap();
//! let upstream = "127.0.0.1:4433".parse()?;
//! let proxy = Proxy::bind("127.0.0.1:0".parse()?, upstream, &spec, &spec, 1, ProxyConfig::default())?;
//! let handle = proxy.spawn()?;
//! println!("clients connect to {}", handle.local_addr());
//! // … run clients …
//! let stats = handle.stop()?;
//! println!("{stats}");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token, Waker};
use serde::Serialize;

mod stats;
mod table;

use stats::add_link_stats;
pub use stats::{DirectionStats, ProxyStats};
use table::{DeliveryQueue, FlowTable};

use crate::engine::derive;
use crate::link::{Delivery, Link, LinkSpec, LinkSpecError, LinkStats, Nanos};

/// Largest UDP payload, bytes (65 535 − 8-byte UDP header − 20-byte IPv4 header).
const MAX_DATAGRAM_BYTES: usize = 65_507;
/// Datagrams read from one socket per loop turn before other work gets a chance.
const READ_BUDGET: usize = 64;
/// How often idle flows are looked for, ns.
const EXPIRY_CHECK_NS: Nanos = 1_000_000_000;
/// How often a [`ProxyHandle`]'s statistics snapshot is refreshed.
const PUBLISH_INTERVAL: Duration = Duration::from_millis(50);

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
/// Flow `slot` is registered as `Token(FIRST_FLOW + slot)`.
const FIRST_FLOW: usize = 2;

/// `tickwire-sim proxy`: forward real UDP between `--listen` and `--upstream` through a link
/// model, in both directions.
#[derive(Debug, clap::Args)]
pub struct ProxyArgs {
    /// Address clients send to, e.g. 127.0.0.1:5000 (port 0: any free port, printed).
    #[arg(long)]
    pub listen: SocketAddr,
    /// Address of the server datagrams are forwarded to.
    #[arg(long)]
    pub upstream: SocketAddr,
    /// A built-in link preset applied in both directions (see `tickwire-sim list`).
    #[arg(long, required_unless_present = "link", conflicts_with = "link")]
    pub preset: Option<String>,
    /// A TOML file holding one link spec (the fields of a scenario's `[links.NAME]` table),
    /// applied in both directions; instead of `--preset`.
    #[arg(long)]
    pub link: Option<PathBuf>,
    /// Seed of the link models' random streams.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Stop after this many seconds (default: run until killed).
    #[arg(long)]
    pub duration_s: Option<f64>,
    /// Print per-direction statistics every this many seconds.
    #[arg(long, default_value_t = 5.0)]
    pub stats_every_s: f64,
    /// Most client flows at once.
    #[arg(long, default_value_t = ProxyConfig::default().max_flows)]
    pub max_flows: usize,
    /// Close a flow after this many seconds without traffic in either direction.
    #[arg(long, default_value_t = ProxyConfig::default().idle_timeout_ms / 1000)]
    pub idle_timeout_s: u64,
}

/// Errors of [`Proxy::bind`] and [`run`].
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// A socket or poller operation failed (address in use, descriptor limit, …). Check the
    /// addresses and the system's limits.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// `--preset` names no built-in preset; pick one of [`LinkSpec::PRESETS`].
    #[error("unknown link preset {0:?} (known: {known})", known = LinkSpec::PRESETS.join(", "))]
    UnknownPreset(String),
    /// The `--link` file could not be read or parsed as a [`LinkSpec`]; fix the file.
    #[error("link spec {path}: {message}")]
    LinkFile {
        /// The file.
        path: PathBuf,
        /// Why it was not usable.
        message: String,
    },
    /// A link spec failed [`LinkSpec::validate`]; fix the field named.
    #[error("invalid link spec: {0}")]
    Spec(#[from] LinkSpecError),
    /// A command-line value is out of range; fix it.
    #[error("{0}")]
    Argument(String),
}

fn io_error(context: &'static str) -> impl FnOnce(io::Error) -> ProxyError {
    move |source| ProxyError::Io { context, source }
}

/// Limits of a [`Proxy`]. Plain data; [`Default`] suits a game server with up to a few
/// thousand clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyConfig {
    /// Most flows (distinct client addresses) at once. Default 4 096. Each flow holds one UDP
    /// socket, so this many descriptors must be available.
    pub max_flows: usize,
    /// A flow with no datagram received and none pending in either direction for this long is
    /// closed, ms. Default 120 000: RFC 4787 §4.3 REQ-5 asks NATs to keep UDP mappings at
    /// least two minutes.
    pub idle_timeout_ms: u64,
    /// Most deliveries waiting in the timer heap. Default 65 536.
    pub max_pending_datagrams: usize,
    /// Most payload bytes waiting in the timer heap. Default 32 MiB: 250 ms at 1 Gbit/s.
    pub max_pending_bytes: usize,
}

impl Default for ProxyConfig {
    fn default() -> ProxyConfig {
        ProxyConfig {
            max_flows: 4096,
            idle_timeout_ms: 120_000,
            max_pending_datagrams: 65_536,
            max_pending_bytes: 32 << 20,
        }
    }
}

/// A direction through the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Client → upstream.
    Uplink,
    /// Upstream → client.
    Downlink,
}

impl Direction {
    fn label(self) -> &'static str {
        match self {
            Direction::Uplink => "proxy/uplink",
            Direction::Downlink => "proxy/downlink",
        }
    }
}

/// The 32-byte seed of the [`Link`] of flow number `flow` (0 for the first client seen) in
/// `direction`: [`engine::derive`](crate::engine::derive)`(seed, "proxy/uplink" or
/// "proxy/downlink", flow, 0)`, i.e. SHA-256 over the proxy's seed, the label and the flow
/// index. Replaying a [`Link`] built from it shows offline what the proxy did to that flow's
/// n-th datagram.
pub fn flow_seed(seed: u64, flow: u64, direction: Direction) -> [u8; 32] {
    derive(seed, direction.label(), flow, 0)
}

/// Stops a running [`Proxy`] from another thread: [`stop`](Stopper::stop) sets a flag and
/// wakes the event loop, which returns from [`Proxy::run_until`] promptly.
#[derive(Debug, Clone)]
pub struct Stopper {
    flag: Arc<AtomicBool>,
    waker: Arc<Waker>,
}

impl Stopper {
    /// Asks the proxy to stop. Idempotent.
    pub fn stop(&self) {
        self.flag.store(true, Ordering::Release);
        // A failed wake only delays the stop until the loop's next wake-up.
        let _ = self.waker.wake();
    }

    /// Whether [`stop`](Stopper::stop) was called.
    pub fn is_stopped(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }
}

/// The impairment proxy: a listening UDP socket, the flow table, the links and the timer heap.
/// See the [module docs](self).
///
/// Drive it with [`run_until`](Proxy::run_until) on the current thread, or hand it to a
/// thread with [`spawn`](Proxy::spawn). Getters: [`local_addr`](Proxy::local_addr),
/// [`stats`](Proxy::stats); command: [`stopper`](Proxy::stopper).
#[derive(Debug)]
pub struct Proxy {
    poll: Poll,
    events: Events,
    listener: UdpSocket,
    local_addr: SocketAddr,
    upstream: SocketAddr,
    spec_up: LinkSpec,
    spec_down: LinkSpec,
    seed: u64,
    config: ProxyConfig,
    stopper: Stopper,
    started: Instant,
    flows: FlowTable<UdpSocket>,
    queue: DeliveryQueue,
    /// Counters other than the live flows' link stats.
    counters: ProxyStats,
    /// Link stats of closed flows, per direction.
    retired: [LinkStats; 2],
    next_expiry_check: Nanos,
    /// Sockets that may still hold datagrams (their read budget ran out).
    backlog: Vec<Token>,
    buf: Vec<u8>,
    deliveries: Vec<Delivery>,
}

impl Proxy {
    /// Binds `listen` and prepares to forward to `upstream`: client → upstream datagrams go
    /// through a [`Link`] built from `spec_up`, replies through one from `spec_down`, per
    /// flow, seeded from `seed` by [`flow_seed`]. Nothing is forwarded until
    /// [`run_until`](Proxy::run_until) or [`spawn`](Proxy::spawn).
    ///
    /// # Errors
    /// [`ProxyError::Spec`] if a spec fails validation; [`ProxyError::Io`] if the poller or
    /// the listening socket cannot be set up.
    pub fn bind(
        listen: SocketAddr,
        upstream: SocketAddr,
        spec_up: &LinkSpec,
        spec_down: &LinkSpec,
        seed: u64,
        config: ProxyConfig,
    ) -> Result<Proxy, ProxyError> {
        spec_up.validate()?;
        spec_down.validate()?;
        let poll = Poll::new().map_err(io_error("creating the poller"))?;
        let mut listener = UdpSocket::bind(listen).map_err(io_error("binding the listen address"))?;
        let local_addr = listener
            .local_addr()
            .map_err(io_error("reading the listen address"))?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(io_error("registering the listen socket"))?;
        let waker = Waker::new(poll.registry(), WAKER).map_err(io_error("creating the waker"))?;
        Ok(Proxy {
            poll,
            events: Events::with_capacity(256),
            listener,
            local_addr,
            upstream,
            spec_up: spec_up.clone(),
            spec_down: spec_down.clone(),
            seed,
            flows: FlowTable::new(config.max_flows),
            queue: DeliveryQueue::new(config.max_pending_datagrams, config.max_pending_bytes),
            config,
            stopper: Stopper {
                flag: Arc::new(AtomicBool::new(false)),
                waker: Arc::new(waker),
            },
            started: Instant::now(),
            counters: ProxyStats::default(),
            retired: [LinkStats::default(), LinkStats::default()],
            next_expiry_check: EXPIRY_CHECK_NS,
            backlog: Vec::new(),
            buf: vec![0; MAX_DATAGRAM_BYTES],
            deliveries: Vec::new(),
        })
    }

    /// The address clients send to (the actual port if `listen` had port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A handle that stops this proxy from another thread.
    pub fn stopper(&self) -> Stopper {
        self.stopper.clone()
    }

    /// Whether the proxy was asked to stop.
    pub fn is_stopped(&self) -> bool {
        self.stopper.is_stopped()
    }

    /// Counters since the proxy started, the links' summed over open and closed flows.
    pub fn stats(&self) -> ProxyStats {
        let mut stats = self.counters.clone();
        stats.elapsed_ns = self.now();
        stats.uplink.link = self.retired[0].clone();
        stats.downlink.link = self.retired[1].clone();
        for flow in self.flows.iter() {
            add_link_stats(&mut stats.uplink.link, &flow.uplink.stats());
            add_link_stats(&mut stats.downlink.link, &flow.downlink.stats());
        }
        stats.flows_active = self.flows.len();
        stats.pending_datagrams = self.queue.len();
        stats.pending_bytes = self.queue.bytes();
        stats
    }

    /// Runs the event loop — receive, offer to the flow's link, deliver when due — until
    /// `deadline` or until [stopped](Stopper::stop). Can be called again to continue.
    ///
    /// # Errors
    /// A poller or socket error other than `WouldBlock`, `Interrupted` and the ICMP-reported
    /// errors of UDP (which are counted and ignored).
    pub fn run_until(&mut self, deadline: Instant) -> io::Result<()> {
        loop {
            if self.is_stopped() {
                return Ok(());
            }
            let now = self.now();
            self.deliver_due(now);
            if now >= self.next_expiry_check {
                self.expire(now);
                self.next_expiry_check = now + EXPIRY_CHECK_NS;
            }
            let wall = Instant::now();
            if wall >= deadline {
                return Ok(());
            }
            let mut timeout = deadline - wall;
            let now = self.now();
            if let Some(at) = self.queue.next_due() {
                timeout = timeout.min(Duration::from_nanos(at.saturating_sub(now)));
            }
            timeout = timeout.min(Duration::from_nanos(self.next_expiry_check.saturating_sub(now)));
            if !self.backlog.is_empty() {
                timeout = Duration::ZERO;
            }
            match self.poll.poll(&mut self.events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            let mut ready = std::mem::take(&mut self.backlog);
            ready.extend(self.events.iter().filter(|e| e.is_readable()).map(|e| e.token()));
            ready.sort_unstable();
            ready.dedup();
            for &token in &ready {
                let drained = match token {
                    WAKER => true,
                    LISTENER => self.read_clients()?,
                    Token(t) => self.read_upstream(t - FIRST_FLOW)?,
                };
                if !drained {
                    self.backlog.push(token);
                }
            }
        }
    }

    /// Moves the proxy to a new thread, running until [`ProxyHandle::stop`] (or the
    /// handle's drop).
    ///
    /// # Errors
    /// The thread could not be spawned.
    pub fn spawn(mut self) -> io::Result<ProxyHandle> {
        let local_addr = self.local_addr;
        let stopper = self.stopper();
        let shared = Arc::new(Mutex::new(self.stats()));
        let snapshot = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("tickwire-proxy".into())
            .spawn(move || {
                while !self.is_stopped() {
                    self.run_until(Instant::now() + PUBLISH_INTERVAL)?;
                    *snapshot.lock().unwrap_or_else(PoisonError::into_inner) = self.stats();
                }
                Ok(self.stats())
            })?;
        Ok(ProxyHandle {
            local_addr,
            stopper,
            shared,
            thread: Some(thread),
        })
    }

    /// Virtual time: ns since the proxy started.
    fn now(&self) -> Nanos {
        u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// After a failed receive: `true` = the socket is drained, stop reading; `false` = read
    /// on (interrupted, or an ICMP error, which is counted); a fatal error is returned.
    fn recv_failed(&mut self, e: io::Error) -> io::Result<bool> {
        match classify(&e) {
            RecvError::Drained => Ok(true),
            RecvError::Retry => Ok(false),
            RecvError::Ignore => {
                self.counters.recv_errors += 1;
                Ok(false)
            }
            RecvError::Fatal => Err(e),
        }
    }

    /// Reads client datagrams into their flows' uplinks. Returns whether the socket was
    /// drained (`WouldBlock`) within the read budget.
    fn read_clients(&mut self) -> io::Result<bool> {
        for _ in 0..READ_BUDGET {
            let (len, client) = match self.listener.recv_from(&mut self.buf) {
                Ok(received) => received,
                Err(e) => {
                    if self.recv_failed(e)? {
                        return Ok(true);
                    }
                    continue;
                }
            };
            let now = self.now();
            let slot = match self.flows.lookup(client) {
                Some(slot) => slot,
                None => match self.open_flow(client, now) {
                    Some(slot) => slot,
                    None => {
                        self.counters.flows_refused += 1;
                        continue;
                    }
                },
            };
            self.offer(Direction::Uplink, slot, now, len);
        }
        Ok(false)
    }

    /// Reads the upstream's replies on flow `slot` into its downlink. Returns whether the
    /// socket was drained within the read budget.
    fn read_upstream(&mut self, slot: usize) -> io::Result<bool> {
        for _ in 0..READ_BUDGET {
            let Some(flow) = self.flows.get_mut(slot) else {
                return Ok(true);
            };
            // The socket is connected: the kernel passes only the upstream's datagrams.
            let len = match flow.socket.recv(&mut self.buf) {
                Ok(len) => len,
                Err(e) => {
                    if self.recv_failed(e)? {
                        return Ok(true);
                    }
                    continue;
                }
            };
            let now = self.now();
            self.offer(Direction::Downlink, slot, now, len);
        }
        Ok(false)
    }

    /// Offers `self.buf[..len]`, received at `now`, to flow `slot`'s link in `direction` and
    /// queues what it delivers.
    fn offer(&mut self, direction: Direction, slot: usize, now: Nanos, len: usize) {
        let Some(flow) = self.flows.get_mut(slot) else {
            return;
        };
        self.deliveries.clear();
        let _dropped =
            flow.link_mut(direction)
                .transmit_into(now, self.buf[..len].to_vec(), &mut self.deliveries);
        flow.last_active = flow.last_active.max(now);
        let serial = flow.serial;
        let stats = self.counters.direction_mut(direction);
        for delivery in self.deliveries.drain(..) {
            stats.record_delay(delivery.at.saturating_sub(now));
            flow.last_active = flow.last_active.max(delivery.at);
            if !self
                .queue
                .push(delivery.at, direction, slot, serial, delivery.payload)
            {
                stats.overflow_dropped += 1;
            }
        }
    }

    /// Opens a flow for `client`: an upstream socket and two links. `None` if the table is
    /// full (after expiring idle flows) or the socket cannot be set up.
    fn open_flow(&mut self, client: SocketAddr, now: Nanos) -> Option<usize> {
        if self.flows.is_full() {
            self.expire(now);
        }
        if self.flows.is_full() {
            return None;
        }
        let any: SocketAddr = match self.upstream {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let socket = UdpSocket::bind(any).ok()?;
        socket.connect(self.upstream).ok()?;
        let serial = self.flows.next_serial();
        let uplink = Link::new(&self.spec_up, flow_seed(self.seed, serial, Direction::Uplink));
        let downlink = Link::new(&self.spec_down, flow_seed(self.seed, serial, Direction::Downlink));
        let slot = self.flows.insert(client, now, socket, uplink, downlink)?;
        let flow = self.flows.get_mut(slot).expect("just inserted");
        let registered =
            self.poll
                .registry()
                .register(&mut flow.socket, Token(FIRST_FLOW + slot), Interest::READABLE);
        if registered.is_err() {
            self.flows.remove(slot);
            return None;
        }
        self.counters.flows_opened += 1;
        Some(slot)
    }

    /// Closes flows idle for the configured timeout, keeping their link counters.
    fn expire(&mut self, now: Nanos) {
        let idle_ns = self.config.idle_timeout_ms.saturating_mul(1_000_000);
        for (_, mut flow) in self.flows.expire(now, idle_ns) {
            // Closing the socket deregisters it too; this only makes it explicit.
            let _ = self.poll.registry().deregister(&mut flow.socket);
            add_link_stats(&mut self.retired[0], &flow.uplink.stats());
            add_link_stats(&mut self.retired[1], &flow.downlink.stats());
            self.counters.flows_expired += 1;
        }
    }

    /// Sends every delivery due at `now`.
    fn deliver_due(&mut self, now: Nanos) {
        while let Some(p) = self.queue.pop_due(now) {
            let sent = self.flows.get(p.slot, p.serial).map(|flow| match p.direction {
                Direction::Uplink => flow.socket.send(&p.payload),
                Direction::Downlink => self.listener.send_to(&p.payload, flow.client),
            });
            let stats = self.counters.direction_mut(p.direction);
            let late = now - p.at;
            stats.late_ns_sum += late;
            stats.late_ns_max = stats.late_ns_max.max(late);
            match sent {
                Some(Ok(_)) => {
                    stats.forwarded += 1;
                    stats.forwarded_bytes += p.payload.len() as u64;
                }
                // UDP gives no delivery guarantee: a full socket buffer is one more loss.
                Some(Err(_)) | None => stats.send_failed += 1,
            }
        }
    }
}

/// How the event loop treats a receive error.
enum RecvError {
    /// `WouldBlock`: nothing more to read.
    Drained,
    /// `Interrupted`: try again.
    Retry,
    /// An ICMP error reported on the socket (port unreachable and the like): count, go on.
    Ignore,
    /// Anything else.
    Fatal,
}

fn classify(e: &io::Error) -> RecvError {
    match e.kind() {
        io::ErrorKind::WouldBlock => RecvError::Drained,
        io::ErrorKind::Interrupted => RecvError::Retry,
        io::ErrorKind::ConnectionRefused
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::HostUnreachable
        | io::ErrorKind::NetworkUnreachable => RecvError::Ignore,
        _ => RecvError::Fatal,
    }
}

/// A [`Proxy`] running on its own thread ([`Proxy::spawn`]). Dropping it stops the proxy and
/// waits for the thread.
#[derive(Debug)]
pub struct ProxyHandle {
    local_addr: SocketAddr,
    stopper: Stopper,
    shared: Arc<Mutex<ProxyStats>>,
    thread: Option<JoinHandle<io::Result<ProxyStats>>>,
}

impl ProxyHandle {
    /// The address clients send to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The latest statistics snapshot, refreshed every 50 ms while the proxy runs.
    pub fn stats(&self) -> ProxyStats {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// A handle that stops the proxy without consuming this one.
    pub fn stopper(&self) -> Stopper {
        self.stopper.clone()
    }

    /// Stops the proxy, waits for its thread and returns the final statistics. Deliveries
    /// still waiting in the timer heap are discarded (counted in `pending_datagrams`).
    ///
    /// # Errors
    /// The event loop's error, if it had failed before being stopped.
    ///
    /// # Panics
    /// If the proxy thread panicked (a bug), the panic is propagated.
    pub fn stop(mut self) -> io::Result<ProxyStats> {
        self.stopper.stop();
        let thread = self
            .thread
            .take()
            .expect("the thread is only taken here and in drop");
        match thread.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

impl Drop for ProxyHandle {
    fn drop(&mut self) {
        self.stopper.stop();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The link spec `args` name: a built-in preset, or a TOML file.
fn load_spec(args: &ProxyArgs) -> Result<(String, LinkSpec), ProxyError> {
    if let Some(path) = &args.link {
        let link_file = |message: String| ProxyError::LinkFile {
            path: path.clone(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| link_file(e.to_string()))?;
        let spec: LinkSpec = toml::from_str(&text).map_err(|e| link_file(e.to_string()))?;
        spec.validate()?;
        return Ok((path.display().to_string(), spec));
    }
    let name = args.preset.clone().unwrap_or_default();
    let spec = LinkSpec::preset(&name).ok_or_else(|| ProxyError::UnknownPreset(name.clone()))?;
    Ok((name, spec))
}

fn seconds(flag: &str, value: f64) -> Result<Duration, ProxyError> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            ProxyError::Argument(format!(
                "--{flag} must be a positive number of seconds, not {value}"
            ))
        })
}

/// Runs `tickwire-sim proxy`: binds, prints the listen address, then forwards until
/// `--duration-s` has passed (or until killed), printing [`ProxyStats`] every
/// `--stats-every-s` and at the end.
///
/// # Errors
/// A bad preset, link file or argument, or a socket error ([`ProxyError`]).
pub fn run(args: ProxyArgs) -> Result<(), ProxyError> {
    let (name, spec) = load_spec(&args)?;
    let every = seconds("stats-every-s", args.stats_every_s)?;
    let duration = args.duration_s.map(|s| seconds("duration-s", s)).transpose()?;
    if args.max_flows == 0 {
        return Err(ProxyError::Argument("--max-flows must be at least 1".into()));
    }
    let config = ProxyConfig {
        max_flows: args.max_flows,
        idle_timeout_ms: args.idle_timeout_s.saturating_mul(1000),
        ..ProxyConfig::default()
    };
    let mut proxy = Proxy::bind(args.listen, args.upstream, &spec, &spec, args.seed, config)?;
    println!(
        "tickwire-sim proxy: listening on {}, forwarding to {} through link {name} (seed {}), \
         both directions",
        proxy.local_addr(),
        args.upstream,
        args.seed
    );
    let end = duration.map(|d| Instant::now() + d);
    loop {
        let mut until = Instant::now() + every;
        if let Some(end) = end {
            until = until.min(end);
        }
        proxy.run_until(until).map_err(io_error("forwarding"))?;
        println!("{}", proxy.stats());
        if end.is_some_and(|end| Instant::now() >= end) {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, port))
    }

    #[test]
    fn flow_seeds_differ_by_flow_and_direction() {
        let seeds = [
            flow_seed(1, 0, Direction::Uplink),
            flow_seed(1, 0, Direction::Downlink),
            flow_seed(1, 1, Direction::Uplink),
            flow_seed(2, 0, Direction::Uplink),
        ];
        for (i, a) in seeds.iter().enumerate() {
            for b in &seeds[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_eq!(seeds[0], flow_seed(1, 0, Direction::Uplink));
    }

    /// Real sockets on loopback, no timing assumptions: a datagram through an ideal link comes
    /// back through the same flow, and a second client gets a second flow.
    #[test]
    fn forwards_both_ways_over_loopback() {
        let server = std::net::UdpSocket::bind(addr(0)).unwrap();
        server.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let spec = LinkSpec::default();
        let proxy = Proxy::bind(
            addr(0),
            server.local_addr().unwrap(),
            &spec,
            &spec,
            7,
            ProxyConfig::default(),
        )
        .unwrap()
        .spawn()
        .unwrap();
        let clients: Vec<_> = (0..2)
            .map(|_| std::net::UdpSocket::bind(addr(0)).unwrap())
            .collect();
        let mut seen_by_server = Vec::new();
        for (i, client) in clients.iter().enumerate() {
            client.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            client.send_to(&[i as u8; 3], proxy.local_addr()).unwrap();
            let mut buf = [0; 16];
            let (len, from) = server.recv_from(&mut buf).expect("forwarded upstream");
            assert_eq!(&buf[..len], &[i as u8; 3]);
            assert_ne!(
                from,
                client.local_addr().unwrap(),
                "the server sees the proxy's socket"
            );
            seen_by_server.push(from);
            server.send_to(&[0xA0 + i as u8], from).unwrap();
            let (len, from) = client.recv_from(&mut buf).expect("reply forwarded back");
            assert_eq!((&buf[..len], from), (&[0xA0 + i as u8][..], proxy.local_addr()));
        }
        assert_ne!(
            seen_by_server[0], seen_by_server[1],
            "one upstream address per client"
        );
        let stats = proxy.stop().unwrap();
        assert_eq!((stats.flows_opened, stats.flows_active), (2, 2));
        assert_eq!((stats.uplink.forwarded, stats.downlink.forwarded), (2, 2));
        assert_eq!((stats.uplink.link.offered, stats.downlink.link.offered), (2, 2));
        assert_eq!(stats.uplink.delay_ns_min, Some(0));
    }
}
