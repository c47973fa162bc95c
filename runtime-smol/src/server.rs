//! The async server: [`Server::bind`], then [`Server::next`] in a loop.

use std::fmt;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::Instant;

use bytes::Bytes;
use ed25519_dalek::SigningKey;
use tickwire_core::tick::TickInfo;
use tickwire_core::ticket::TicketVerifier;
use tickwire_core::{
    ChannelId, Config, ConnHandle, Endpoint, EndpointError, Event, ReasonCode, SendError, WallClock,
};

use crate::io::SmolEndpoint;

/// Why [`Server::bind`] failed.
#[derive(Debug)]
pub enum BindError {
    /// The configuration is invalid or TLS could not be set up; fix the configuration.
    Endpoint(EndpointError),
    /// The address could not be bound (in use, not local, no permission).
    Io(io::Error),
}

impl fmt::Display for BindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Endpoint(e) => write!(f, "endpoint setup failed: {e}"),
            Self::Io(e) => write!(f, "cannot bind: {e}"),
        }
    }
}

impl std::error::Error for BindError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Endpoint(e) => Some(e),
            Self::Io(e) => Some(e),
        }
    }
}

impl From<EndpointError> for BindError {
    fn from(e: EndpointError) -> Self {
        Self::Endpoint(e)
    }
}

impl From<io::Error> for BindError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

/// What [`Server::next`] yields.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerOutput {
    /// Something happened: a join, a message, a rejection or a disconnect.
    Event(Event),
    /// A simulation tick is due: run the game for it, then send snapshots.
    Tick(TickInfo),
}

/// A game server on one UDP socket, driven by [`Server::next`].
#[derive(Debug)]
pub struct Server {
    io: SmolEndpoint,
}

impl Server {
    /// Binds `addr` and serves game server id `gs_id` (the audience join tickets must name)
    /// with identity `identity`; the tick scheduler starts now. Register ticket issuer keys
    /// with [`tickets_mut`](Self::tickets_mut) before clients join.
    ///
    /// # Errors
    /// [`BindError`].
    pub fn bind(
        addr: SocketAddr,
        config: Config,
        identity: SigningKey,
        gs_id: u64,
        wall: WallClock,
    ) -> Result<Self, BindError> {
        let endpoint = Endpoint::server(config, identity, gs_id, wall, Instant::now())?;
        Ok(Self {
            io: SmolEndpoint::new(UdpSocket::bind(addr)?, endpoint)?,
        })
    }

    /// The next event or due tick, driving the socket and timers until there is one. Events
    /// come before ticks, as in the core's drive loop; commands issued through
    /// [`io`](Self::io) are flushed here.
    ///
    /// # Errors
    /// The socket failed; the server cannot continue on it.
    pub async fn next(&mut self) -> io::Result<ServerOutput> {
        loop {
            self.io.flush();
            if let Some(event) = self.io.endpoint().poll_event() {
                return Ok(ServerOutput::Event(event));
            }
            if let Some(tick) = self.io.endpoint().poll_tick(Instant::now()) {
                // Revalidation at a tick may have closed sessions.
                self.io.flush();
                return Ok(ServerOutput::Tick(tick));
            }
            self.io.drive(None).await?;
        }
    }

    /// Queues `payload` to `conn` on `channel` and sends what the socket takes now.
    ///
    /// # Errors
    /// [`SendError`]; nothing is sent on error.
    pub fn send(
        &mut self,
        conn: ConnHandle,
        channel: ChannelId,
        payload: impl Into<Bytes>,
    ) -> Result<(), SendError> {
        self.io
            .endpoint()
            .send(Instant::now(), conn, channel, payload.into())?;
        self.io.flush();
        Ok(())
    }

    /// Closes `conn` with `reason` (e.g. `KICKED`) and `detail`; reported by
    /// [`next`](Self::next) as a local [`Event::Disconnected`]. Unknown handles are ignored.
    pub fn close(&mut self, conn: ConnHandle, reason: ReasonCode, detail: &str) {
        self.io.endpoint().close(Instant::now(), conn, reason, detail);
        self.io.flush();
    }

    /// Closes every session with `SERVER_SHUTDOWN` and `detail`, refuses new ones, and
    /// drives the socket until every connection has finished closing (QUIC's closing
    /// period, three probe timeouts), so that a lost close is repeated. Ticks due meanwhile
    /// are skipped; the `Disconnected` events stay queued for [`next`](Self::next).
    ///
    /// # Errors
    /// The socket failed; the remaining connections are abandoned.
    pub async fn shutdown(&mut self, detail: &str) -> io::Result<()> {
        self.io.endpoint().shutdown(Instant::now(), detail, None);
        self.io.flush_all().await?;
        while self.io.endpoint_ref().connection_count() > 0 {
            while self.io.endpoint().poll_tick(Instant::now()).is_some() {}
            self.io.drive(None).await?;
        }
        Ok(())
    }

    /// The ticket verifier: add issuer keys, revoke tickets, clients or keys.
    pub fn tickets_mut(&mut self) -> &mut TicketVerifier {
        self.io
            .endpoint()
            .tickets_mut()
            .expect("a server endpoint has a ticket verifier")
    }

    /// The socket's local address.
    ///
    /// # Errors
    /// As [`UdpSocket::local_addr`].
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.local_addr()
    }

    /// The endpoint underneath: statistics, sessions, revalidation and other commands.
    pub fn io(&mut self) -> &mut SmolEndpoint {
        &mut self.io
    }
}
