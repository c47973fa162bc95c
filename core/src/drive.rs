//! Driving logic shared by every runtime, written once: the pump that feeds an [`Endpoint`]
//! and drains its transmits, and the server's five-stage tick (poll, apply, simulate,
//! extract, send) with per-stage timings.
//!
//! Nothing here does I/O or reads a clock: the socket is a closure and the clock is a
//! closure, supplied by the runtime (`tickwire-mio`, `tickwire-smol`, the simulator).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use serde::Serialize;

use crate::endpoint::Endpoint;
use crate::shared::{Ecn, Event, Transmit};
use crate::stats::TickStage;
use crate::tick::TickInfo;

/// Counters of a [`Pump`].
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct PumpStats {
    /// Datagrams handed to the endpoint.
    pub datagrams_in: u64,
    /// Datagrams written to the socket.
    pub datagrams_out: u64,
    /// Transmits dropped because the socket failed with an error other than `WouldBlock`.
    pub send_errors: u64,
    /// Times the socket reported `WouldBlock` on send (the transmit is kept and retried).
    pub send_blocked: u64,
}

/// Feeds an endpoint and drains it into a socket, keeping at most one transmit that the
/// socket could not take yet (`WouldBlock`), so nothing is lost and memory stays bounded. The
/// runtimes use it, and so can a hand-written loop; one turn of the drive contract is:
///
/// ```
/// use std::net::UdpSocket;
/// use std::time::Instant;
/// use tickwire_core::drive::Pump;
///
/// /// One turn: inputs, events, ticks, then transmits; `received` is what the socket read.
/// fn turn(pump: &mut Pump, socket: &UdpSocket, now: Instant, received: &[(std::net::SocketAddr, Vec<u8>)])
///     -> Option<Instant>
/// {
///     for (from, bytes) in received {
///         pump.handle_datagram(now, *from, None, None, bytes);
///     }
///     pump.handle_timeout(now);
///     while let Some(event) = pump.endpoint().poll_event() {
///         let _ = event; // the application reacts, and may send
///     }
///     while let Some(tick) = pump.endpoint().poll_tick(now) {
///         let _ = tick; // run the game, send snapshots
///     }
///     pump.flush(now, |transmit, bytes| socket.send_to(bytes, transmit.destination).map(drop));
///     pump.poll_timeout() // sleep until then, or until the socket is readable
/// }
/// ```
#[derive(Debug)]
pub struct Pump {
    endpoint: Endpoint,
    buf: Vec<u8>,
    blocked: Option<(Transmit, Vec<u8>)>,
    stats: PumpStats,
}

impl Pump {
    /// Wraps `endpoint`.
    pub fn new(endpoint: Endpoint) -> Self {
        Self {
            endpoint,
            buf: Vec::with_capacity(1500),
            blocked: None,
            stats: PumpStats::default(),
        }
    }

    /// The endpoint, for commands, events and ticks.
    pub fn endpoint(&mut self) -> &mut Endpoint {
        &mut self.endpoint
    }

    /// The endpoint, read-only.
    pub fn endpoint_ref(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Counters.
    pub fn stats(&self) -> PumpStats {
        self.stats
    }

    /// Input: one received datagram ([`Endpoint::handle_datagram`]).
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        local_ip: Option<IpAddr>,
        ecn: Option<Ecn>,
        data: &[u8],
    ) {
        self.stats.datagrams_in += 1;
        self.endpoint
            .handle_datagram(now, from, local_ip, ecn, BytesMut::from(data));
    }

    /// Input: a wake-up; runs the endpoint's timers if its deadline has passed. After inputs
    /// whose effects are not yet flushed the deadline reads as "now", so this runs the timers
    /// (cheaply: only due connections are visited).
    pub fn handle_timeout(&mut self, now: Instant) {
        if self
            .endpoint
            .poll_timeout()
            .is_some_and(|deadline| deadline <= now)
        {
            self.endpoint.handle_timeout(now);
        }
    }

    /// Output: writes every pending transmit with `send`; stops early (keeping the transmit)
    /// when `send` returns `WouldBlock`. Returns the number of datagrams written.
    pub fn flush(&mut self, now: Instant, mut send: impl FnMut(&Transmit, &[u8]) -> io::Result<()>) -> usize {
        let mut written = 0;
        loop {
            let (transmit, bytes) = match self.blocked.take() {
                Some(blocked) => blocked,
                None => match self.endpoint.poll_transmit(now, &mut self.buf) {
                    Some(transmit) => (transmit, std::mem::take(&mut self.buf)),
                    None => return written,
                },
            };
            match send(&transmit, &bytes[..transmit.size]) {
                Ok(()) => {
                    written += 1;
                    self.stats.datagrams_out += 1;
                    self.buf = bytes;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.stats.send_blocked += 1;
                    self.blocked = Some((transmit, bytes));
                    return written;
                }
                Err(_) => {
                    self.stats.send_errors += 1;
                    self.buf = bytes;
                }
            }
        }
    }

    /// Whether a transmit is waiting for the socket to become writable.
    pub fn is_send_blocked(&self) -> bool {
        self.blocked.is_some()
    }

    /// When to wake next: the endpoint's deadline.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.endpoint.poll_timeout()
    }
}

/// The application side of a server tick, called in stage order by [`run_tick`].
pub trait TickStages {
    /// Stage 2, *apply*: act on one event (joins, leaves, received inputs).
    fn apply(&mut self, endpoint: &mut Endpoint, now: Instant, event: Event);
    /// Stage 3, *simulate*: advance the world by one tick.
    fn simulate(&mut self, tick: &TickInfo);
    /// Stage 4, *extract*: build what each client must receive for this tick.
    fn extract(&mut self, tick: &TickInfo);
    /// Stage 5, *send*: hand the extracted messages to the endpoint.
    fn send(&mut self, endpoint: &mut Endpoint, now: Instant, tick: &TickInfo);
}

/// Wall time spent in each stage of one tick.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct StageTimings {
    /// Draining the endpoint's events (network input was received before the tick).
    pub poll: Duration,
    /// Applying events to the game.
    pub apply: Duration,
    /// Simulating.
    pub simulate: Duration,
    /// Extracting snapshots.
    pub extract: Duration,
    /// Sending and flushing to the socket.
    pub send: Duration,
}

impl StageTimings {
    /// Each stage's duration, in stage order (for [`TickTimings::record`](crate::stats::TickTimings::record)).
    pub fn stages(&self) -> [(TickStage, Duration); 5] {
        [
            (TickStage::Poll, self.poll),
            (TickStage::Apply, self.apply),
            (TickStage::Simulate, self.simulate),
            (TickStage::Extract, self.extract),
            (TickStage::Send, self.send),
        ]
    }

    /// Sum of all stages.
    pub fn total(&self) -> Duration {
        self.poll + self.apply + self.simulate + self.extract + self.send
    }
}

/// Runs one tick's five stages on `pump` for `game`, timing each with `clock` (the runtime
/// passes `Instant::now`; the simulator passes virtual time), and flushes with `send`. Each
/// stage runs in a `tracing` span of its name (`poll`, `apply`, `simulate`, `extract`,
/// `send`, at debug level) inside a `tick` span carrying the tick number.
pub fn run_tick(
    pump: &mut Pump,
    game: &mut impl TickStages,
    tick: &TickInfo,
    mut clock: impl FnMut() -> Instant,
    send: impl FnMut(&Transmit, &[u8]) -> io::Result<()>,
) -> StageTimings {
    let _tick = tracing::debug_span!("tick", tick = tick.tick).entered();
    let t0 = clock();
    let mut events = Vec::new();
    tracing::debug_span!("poll").in_scope(|| {
        while let Some(event) = pump.endpoint().poll_event() {
            events.push(event);
        }
    });
    let t1 = clock();
    tracing::debug_span!("apply", events = events.len()).in_scope(|| {
        for event in events {
            game.apply(pump.endpoint(), t1, event);
        }
    });
    let t2 = clock();
    tracing::debug_span!("simulate").in_scope(|| game.simulate(tick));
    let t3 = clock();
    tracing::debug_span!("extract").in_scope(|| game.extract(tick));
    let t4 = clock();
    tracing::debug_span!("send").in_scope(|| {
        game.send(pump.endpoint(), t4, tick);
        pump.flush(t4, send);
    });
    let t5 = clock();
    StageTimings {
        poll: t1.saturating_duration_since(t0),
        apply: t2.saturating_duration_since(t1),
        simulate: t3.saturating_duration_since(t2),
        extract: t4.saturating_duration_since(t3),
        send: t5.saturating_duration_since(t4),
    }
}
