//! The impairment proxy on real UDP: a mio event loop around a
//! [`ProxyCore`](tickwire_sim::proxy::ProxyCore), which holds the flows, links and timer heap
//! (see [`tickwire_sim::proxy`]).
//!
//! **Sockets.** One listening socket for the clients; per flow, a socket bound to an
//! ephemeral port of the upstream's address family and connected to the upstream, so the
//! kernel passes it only the upstream's replies. A flow's socket is registered with the
//! poller under its slot; closing the flow drops the socket, which removes it from the poller.
//!
//! **Timing.** The loop sleeps in [mio](https://docs.rs/mio) until the next delivery is due
//! or a socket is readable. mio's poll timeout has millisecond resolution (epoll), so a
//! datagram leaves up to about 1 ms after its scheduled time, plus scheduling noise; it never
//! leaves early. [`DirectionStats::late_ns_max`](tickwire_sim::proxy::DirectionStats::late_ns_max)
//! reports how late deliveries were. ECN marks and other IP header fields are not carried
//! over.
//!
//! **Reads.** At most 64 datagrams per socket per loop turn, so a flood on one socket cannot
//! starve deliveries.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Registry, Token};
use tickwire_sim::link::{LinkSpec, LinkSpecError, Nanos};
use tickwire_sim::proxy::{Destination, ProxyConfig, ProxyCore, ProxyStats};

/// Largest UDP payload, bytes (65 535 − 8-byte UDP header − 20-byte IPv4 header).
const MAX_DATAGRAM_BYTES: usize = 65_507;
/// Datagrams read from one socket per loop turn before other work gets a chance.
const READ_BUDGET: usize = 64;

const LISTENER: Token = Token(0);
/// Flow `slot` is registered as `Token(FIRST_FLOW + slot)`.
const FIRST_FLOW: usize = 1;

/// Errors of [`Proxy::bind`].
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// A socket or poller operation failed (address in use, descriptor limit, …). Check the
    /// addresses and the system's limits.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// A link spec failed [`LinkSpec::validate`]; fix the field named.
    #[error("invalid link spec: {0}")]
    Spec(#[from] LinkSpecError),
}

fn io_error(context: &'static str) -> impl FnOnce(io::Error) -> BindError {
    move |source| BindError::Io { context, source }
}

/// The proxy's listening socket and poller around its [`ProxyCore`]. Drive it with
/// [`run_until`](Proxy::run_until); getters: [`local_addr`](Proxy::local_addr),
/// [`stats`](Proxy::stats).
#[derive(Debug)]
pub struct Proxy {
    poll: Poll,
    events: Events,
    listener: UdpSocket,
    local_addr: SocketAddr,
    upstream: SocketAddr,
    started: Instant,
    core: ProxyCore<UdpSocket>,
    /// Sockets that may still hold datagrams (their read budget ran out).
    backlog: Vec<Token>,
    buf: Vec<u8>,
}

impl Proxy {
    /// Binds `listen` and prepares to forward to `upstream`: client → upstream datagrams go
    /// through a link built from `spec_up`, replies through one from `spec_down`, per flow,
    /// seeded from `seed` ([`flow_seed`](tickwire_sim::proxy::flow_seed)). Nothing is
    /// forwarded until [`run_until`](Proxy::run_until).
    ///
    /// # Errors
    /// [`BindError::Spec`] if a spec fails validation; [`BindError::Io`] if the poller or the
    /// listening socket cannot be set up.
    pub fn bind(
        listen: SocketAddr,
        upstream: SocketAddr,
        spec_up: &LinkSpec,
        spec_down: &LinkSpec,
        seed: u64,
        config: ProxyConfig,
    ) -> Result<Proxy, BindError> {
        let core = ProxyCore::new(spec_up, spec_down, seed, config)?;
        let poll = Poll::new().map_err(io_error("creating the poller"))?;
        let mut listener = UdpSocket::bind(listen).map_err(io_error("binding the listen address"))?;
        let local_addr = listener
            .local_addr()
            .map_err(io_error("reading the listen address"))?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(io_error("registering the listen socket"))?;
        Ok(Proxy {
            poll,
            events: Events::with_capacity(256),
            listener,
            local_addr,
            upstream,
            started: Instant::now(),
            core,
            backlog: Vec::new(),
            buf: vec![0; MAX_DATAGRAM_BYTES],
        })
    }

    /// The address clients send to (the actual port if `listen` had port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Counters since the proxy started.
    pub fn stats(&self) -> ProxyStats {
        self.core.stats(self.now())
    }

    /// Runs the event loop — receive, offer to the flow's link, deliver when due — until
    /// `deadline`. Can be called again to continue.
    ///
    /// # Errors
    /// A poller or socket error other than `WouldBlock`, `Interrupted` and the ICMP-reported
    /// errors of UDP (which are counted and ignored).
    pub fn run_until(&mut self, deadline: Instant) -> io::Result<()> {
        loop {
            let now = self.now();
            self.deliver_due(now);
            self.core.handle_timeout(now);
            let wall = Instant::now();
            if wall >= deadline {
                return Ok(());
            }
            let now = self.now();
            let due = Duration::from_nanos(self.core.poll_timeout().saturating_sub(now));
            let timeout = if self.backlog.is_empty() {
                (deadline - wall).min(due)
            } else {
                Duration::ZERO
            };
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
                    LISTENER => self.read_clients()?,
                    Token(t) => self.read_upstream(t - FIRST_FLOW)?,
                };
                if !drained {
                    self.backlog.push(token);
                }
            }
        }
    }

    /// Virtual time: ns since the proxy started.
    fn now(&self) -> Nanos {
        u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Sends every delivery due at `now`.
    fn deliver_due(&mut self, now: Nanos) {
        let listener = &self.listener;
        self.core.deliver_due(now, |to, payload| match to {
            Destination::Upstream(socket) => socket.send(payload).is_ok(),
            Destination::Client(client) => listener.send_to(payload, client).is_ok(),
        });
    }

    /// After a failed receive: `true` = the socket is drained, stop reading; `false` = read
    /// on (interrupted, or an ICMP error, which is counted); a fatal error is returned.
    fn recv_failed(&mut self, e: io::Error) -> io::Result<bool> {
        match classify(&e) {
            RecvError::Drained => Ok(true),
            RecvError::Retry => Ok(false),
            RecvError::Ignore => {
                self.core.handle_recv_error();
                Ok(false)
            }
            RecvError::Fatal => Err(e),
        }
    }

    /// Reads client datagrams into their flows' uplinks, opening flows for new clients.
    /// Returns whether the socket was drained (`WouldBlock`) within the read budget.
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
            let (registry, upstream) = (self.poll.registry(), self.upstream);
            self.core
                .handle_client_datagram(now, client, &self.buf[..len], |slot| {
                    flow_socket(registry, upstream, slot)
                });
        }
        Ok(false)
    }

    /// Reads the upstream's replies on flow `slot` into its downlink. Returns whether the
    /// socket was drained within the read budget.
    fn read_upstream(&mut self, slot: usize) -> io::Result<bool> {
        for _ in 0..READ_BUDGET {
            let Some(socket) = self.core.socket(slot) else {
                return Ok(true);
            };
            // The socket is connected: the kernel passes only the upstream's datagrams.
            let len = match socket.recv(&mut self.buf) {
                Ok(len) => len,
                Err(e) => {
                    if self.recv_failed(e)? {
                        return Ok(true);
                    }
                    continue;
                }
            };
            let now = self.now();
            self.core.handle_upstream_datagram(now, slot, &self.buf[..len]);
        }
        Ok(false)
    }
}

/// A new flow's socket towards `upstream`, registered for `slot`; `None` if the OS refuses
/// (the flow is then refused and counted).
fn flow_socket(registry: &Registry, upstream: SocketAddr, slot: usize) -> Option<UdpSocket> {
    let any: SocketAddr = match upstream {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let mut socket = UdpSocket::bind(any).ok()?;
    socket.connect(upstream).ok()?;
    registry
        .register(&mut socket, Token(FIRST_FLOW + slot), Interest::READABLE)
        .ok()?;
    Some(socket)
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
