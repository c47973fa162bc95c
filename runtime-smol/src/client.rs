//! The async client: [`connect`], then [`Client::send`], [`Client::recv`] and
//! [`Client::next_tick`].

use std::collections::VecDeque;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ed25519_dalek::SigningKey;
use tickwire_core::tick::TickSync;
use tickwire_core::{
    ChannelId, Config, ConnHandle, ConnectError, ConnectOptions, ConnectionStats, Endpoint, EndpointError,
    Event, JoinTicket, ReasonCode, Secrets, SendError, Session, WallClock,
};

use crate::io::SmolEndpoint;

/// Why [`connect`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectFailure {
    /// The configuration is invalid or TLS could not be set up; fix the configuration.
    #[error("endpoint setup failed: {0}")]
    Endpoint(#[from] EndpointError),
    /// The socket could not be bound or failed; check the network and try again.
    #[error("socket error: {0}")]
    Io(#[from] io::Error),
    /// QUIC refused the server address (e.g. port 0); fix the address.
    #[error("{0}")]
    Connect(#[from] ConnectError),
    /// The handshake failed: the server refused (bad ticket, full, shutting down) or it did
    /// not complete in time (`HANDSHAKE_TIMEOUT`). Retry only if
    /// [`ReasonCode::is_retryable`], after `retry_after` if given.
    #[error("rejected: {reason} ({detail})")]
    Rejected {
        /// Why.
        reason: ReasonCode,
        /// When trying again makes sense, if the server said so.
        retry_after: Option<Duration>,
        /// Log detail from the rejecting side.
        detail: String,
    },
}

/// A message the server sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The channel it arrived on.
    pub channel: ChannelId,
    /// The whole message.
    pub payload: Bytes,
}

/// Joins the game server at `server` presenting `ticket` (issued for `identity`'s public
/// key), from a fresh socket on the unspecified address of the server's family with an
/// ephemeral port. The client endpoint's nonces and connection ids derive from `secrets`:
/// fresh from the OS (`tickwire_udp::os_secrets()`) for anything facing a real network.
/// Returns once the tickwire handshake completes.
///
/// # Errors
/// [`ConnectFailure`]; a refusal or a handshake timeout is [`ConnectFailure::Rejected`].
pub async fn connect(
    config: Config,
    secrets: Secrets,
    identity: SigningKey,
    wall: WallClock,
    server: SocketAddr,
    ticket: JoinTicket,
    options: ConnectOptions,
) -> Result<Client, ConnectFailure> {
    let endpoint = Endpoint::builder(config, secrets, identity, wall).client()?;
    let local = match server {
        SocketAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
        SocketAddr::V6(_) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
    };
    let mut io = SmolEndpoint::new(UdpSocket::bind(local)?, endpoint)?;
    let conn = io.endpoint().connect(Instant::now(), server, ticket, options)?;
    io.flush();
    loop {
        // Stop at `Connected`: messages behind it stay queued for `Client::recv`.
        while let Some(event) = io.endpoint().poll_event() {
            match event {
                Event::Connected { session, .. } => {
                    return Ok(Client {
                        io,
                        conn,
                        session: *session,
                        inbox: VecDeque::new(),
                        closed: None,
                    })
                }
                Event::Rejected {
                    reason,
                    retry_after,
                    detail,
                    ..
                } => {
                    return Err(ConnectFailure::Rejected {
                        reason,
                        retry_after,
                        detail,
                    })
                }
                Event::Disconnected { reason, detail, .. } => {
                    return Err(ConnectFailure::Rejected {
                        reason,
                        retry_after: None,
                        detail,
                    })
                }
                _ => {}
            }
        }
        io.drive(None).await?;
    }
}

/// An established session with a game server, driven by whichever method is awaiting.
///
/// Received messages are buffered until [`recv`](Self::recv) or
/// [`try_recv`](Self::try_recv) takes them, so a game loop can await
/// [`next_tick`](Self::next_tick) and drain messages with `try_recv` each tick.
#[derive(Debug)]
pub struct Client {
    io: SmolEndpoint,
    conn: ConnHandle,
    session: Session,
    inbox: VecDeque<Received>,
    closed: Option<(ReasonCode, String)>,
}

impl Client {
    /// What the handshake agreed.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// Queues `payload` on `channel` and sends what the socket takes now.
    ///
    /// # Errors
    /// [`SendError`]; nothing is sent on error. After a disconnect:
    /// [`SendError::NotConnected`] or [`SendError::UnknownConnection`]; on a channel the
    /// session's role or permissions may not send on: [`SendError::NotPermitted`].
    pub fn send(&mut self, channel: ChannelId, payload: impl Into<Bytes>) -> Result<(), SendError> {
        self.io
            .endpoint()
            .send(Instant::now(), self.conn, channel, payload.into())?;
        self.io.flush();
        Ok(())
    }

    /// The next message from the server; `None` once the session has ended and every
    /// message received before the end was returned (see [`closed`](Self::closed)).
    pub async fn recv(&mut self) -> Option<Received> {
        loop {
            self.take_events();
            if let Some(message) = self.inbox.pop_front() {
                return Some(message);
            }
            if self.closed.is_some() {
                return None;
            }
            self.drive(None).await;
        }
    }

    /// A message already received, without waiting or doing I/O.
    pub fn try_recv(&mut self) -> Option<Received> {
        self.take_events();
        self.inbox.pop_front()
    }

    /// Waits for the client's next tick (tick sync's estimate of the server's tick, run
    /// ahead by `tick_sync.lead_margin_ticks`, strictly increasing); `None` once the session
    /// has ended. Messages arriving meanwhile are kept for [`try_recv`](Self::try_recv).
    pub async fn next_tick(&mut self) -> Option<u64> {
        loop {
            self.take_events();
            if self.closed.is_some() {
                return None;
            }
            if let Some(tick) = self.io.endpoint().poll_client_tick(Instant::now(), self.conn) {
                return Some(tick);
            }
            let deadline = self
                .io
                .endpoint_ref()
                .tick_sync(self.conn)
                .and_then(TickSync::poll_timeout);
            self.drive(deadline).await;
        }
    }

    /// Why the session ended, with the closing side's detail; `None` while it is live.
    pub fn closed(&self) -> Option<(ReasonCode, &str)> {
        self.closed
            .as_ref()
            .map(|(reason, detail)| (*reason, detail.as_str()))
    }

    /// Connection statistics; `None` once the connection is gone.
    pub fn stats(&self) -> Option<ConnectionStats> {
        self.io.endpoint_ref().stats(self.conn)
    }

    /// The socket's local address.
    ///
    /// # Errors
    /// As [`UdpSocket::local_addr`].
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.local_addr()
    }

    /// The endpoint underneath, for what this type does not wrap.
    pub fn io(&mut self) -> &mut SmolEndpoint {
        &mut self.io
    }

    /// Ends the session with `reason` and `detail` and waits until the socket took the
    /// close. Reliable messages not yet sent are discarded (a QUIC close is immediate);
    /// messages already received stay available to [`recv`](Self::recv).
    ///
    /// # Errors
    /// The socket failed while sending the close.
    pub async fn close(&mut self, reason: ReasonCode, detail: &str) -> io::Result<()> {
        self.io
            .endpoint()
            .close(Instant::now(), self.conn, reason, detail);
        self.take_events();
        self.io.flush_all().await
    }

    /// Moves the endpoint's events into the inbox and `closed`.
    fn take_events(&mut self) {
        while let Some(event) = self.io.endpoint().poll_event() {
            match event {
                Event::Message { channel, payload, .. } => {
                    self.inbox.push_back(Received { channel, payload })
                }
                Event::Disconnected { reason, detail, .. } | Event::Rejected { reason, detail, .. } => {
                    self.closed.get_or_insert((reason, detail));
                }
                _ => {}
            }
        }
    }

    /// One I/O turn; a socket failure ends the session with `TRANSPORT_ERROR`.
    async fn drive(&mut self, deadline: Option<Instant>) {
        if let Err(e) = self.io.drive(deadline).await {
            tracing::warn!(error = %e, "socket failed; closing the session");
            let detail = format!("socket error: {e}");
            self.io
                .endpoint()
                .close(Instant::now(), self.conn, ReasonCode::TRANSPORT_ERROR, &detail);
            self.closed.get_or_insert((ReasonCode::TRANSPORT_ERROR, detail));
        }
    }
}
