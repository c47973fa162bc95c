//! The I/O half shared by [`Client`](crate::Client) and [`Server`](crate::Server): one UDP
//! socket on smol's reactor feeding a [`Pump`].

use std::fmt;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::Instant;

use async_io::{Async, Timer};
use futures_lite::future;
use tickwire_core::drive::{Pump, PumpStats};
use tickwire_core::Endpoint;
use tickwire_udp::Datapath;

/// Datagrams read per wake-up at most, so that a flood of input cannot starve timers and
/// sends; the rest stays in the socket buffer for the next wake-up.
pub const MAX_DATAGRAMS_PER_WAKE: usize = 64;

/// An [`Endpoint`] on a UDP socket registered with smol's reactor (`async-io`).
///
/// Nothing runs in the background: [`SmolEndpoint::drive`] waits for the socket or the next
/// deadline and then does one turn of the drive loop (receive, timers, transmit), and
/// [`SmolEndpoint::flush`] sends what commands queued. Events and ticks stay in the
/// endpoint for the caller to poll. Datagrams go through the shared
/// [`Datapath`] (quinn-udp: ECN, destination addresses, GRO).
pub struct SmolEndpoint {
    socket: Async<UdpSocket>,
    datapath: Datapath,
    pump: Pump,
}

impl fmt::Debug for SmolEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmolEndpoint")
            .field("local_addr", &self.socket.get_ref().local_addr().ok())
            .field("pump", &self.pump.stats())
            .finish_non_exhaustive()
    }
}

impl SmolEndpoint {
    /// Drives `endpoint` on `socket` (which is made non-blocking).
    ///
    /// # Errors
    /// The socket options quinn-udp needs (ECN, packet info) cannot be set, or the socket
    /// cannot be registered with the reactor.
    pub fn new(socket: UdpSocket, endpoint: Endpoint) -> io::Result<Self> {
        Ok(Self {
            datapath: Datapath::new(&socket)?,
            socket: Async::new(socket)?,
            pump: Pump::new(endpoint),
        })
    }

    /// The endpoint, for commands, events and ticks. Commands take effect on the wire at the
    /// next [`flush`](Self::flush) or [`drive`](Self::drive).
    pub fn endpoint(&mut self) -> &mut Endpoint {
        self.pump.endpoint()
    }

    /// The endpoint, read-only.
    pub fn endpoint_ref(&self) -> &Endpoint {
        self.pump.endpoint_ref()
    }

    /// The socket's local address.
    ///
    /// # Errors
    /// As [`UdpSocket::local_addr`].
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.get_ref().local_addr()
    }

    /// Datagram counters of the socket side.
    pub fn pump_stats(&self) -> PumpStats {
        self.pump.stats()
    }

    /// Sends every pending transmit the socket takes now; if it reports `WouldBlock`, the
    /// transmit is kept and [`drive`](Self::drive) also waits for writability.
    pub fn flush(&mut self) {
        self.datapath
            .flush(self.socket.get_ref(), &mut self.pump, Instant::now());
    }

    /// Sends every pending transmit, waiting for the socket to become writable as needed.
    ///
    /// # Errors
    /// A reactor error while waiting.
    pub async fn flush_all(&mut self) -> io::Result<()> {
        self.flush();
        while self.pump.is_send_blocked() {
            self.socket.writable().await?;
            self.flush();
        }
        Ok(())
    }

    /// One turn: waits until the socket is readable (or writable, after a blocked send) or
    /// the earlier of the endpoint's deadline and `extra_deadline` passes — not at all if
    /// that is already past — then reads up to [`MAX_DATAGRAMS_PER_WAKE`] datagrams, runs
    /// due timers and flushes.
    ///
    /// # Errors
    /// A socket or reactor error other than `WouldBlock` and `Interrupted`.
    pub async fn drive(&mut self, extra_deadline: Option<Instant>) -> io::Result<()> {
        let deadline = match (self.pump.poll_timeout(), extra_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if deadline.is_none_or(|deadline| deadline > Instant::now()) {
            let timer = deadline.map_or_else(Timer::never, Timer::at);
            let writable = async {
                if self.pump.is_send_blocked() {
                    self.socket.writable().await
                } else {
                    future::pending().await
                }
            };
            let timer = async {
                timer.await;
                Ok(())
            };
            future::or(self.socket.readable(), future::or(writable, timer)).await?;
        }
        self.datapath.receive(
            self.socket.get_ref(),
            &mut self.pump,
            Instant::now(),
            MAX_DATAGRAMS_PER_WAKE,
        )?;
        self.pump.handle_timeout(Instant::now());
        self.flush();
        Ok(())
    }
}
