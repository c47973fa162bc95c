//! # tickwire-core
//!
//! A sans-IO protocol core for authoritative multiplayer game sessions over QUIC
//! ([quinn-proto]). It owns the session layer — handshake, join tickets, heartbeat, channels
//! with fragmentation, tick scheduling and tick sync — and does no I/O: it reads no clock, owns
//! no socket or thread, and draws no randomness of its own. Time is an argument
//! (`now: Instant`); wall-clock time for tickets comes from a [`WallClock`] anchor; every
//! secret value (QUIC token and reset keys, connection ids, nonces, session ids) derives from
//! the [`Secrets`] an endpoint is built with, which runtimes fill from the operating system.
//!
//! ## A game server and a client on `std::net::UdpSocket`
//!
//! The whole program (also `examples/std_socket.rs`): a server trusting a lobby's ticket key,
//! a client joining with a join ticket, a message and its echo.
//!
//! ```
#![doc = include_str!("../examples/std_socket.rs")]
//! ```
//!
//! ## The drive contract
//!
//! An [`Endpoint`] is driven in turns. Each turn, in this order:
//!
//! 1. **inputs**: [`Endpoint::handle_datagram`] for each datagram received, and
//!    [`Endpoint::handle_timeout`] once [`Endpoint::poll_timeout`] has passed;
//! 2. **events**: [`Endpoint::poll_event`] until `None`, acting on each;
//! 3. **ticks**: [`Endpoint::poll_tick`] until `None`, running the game for each (a server's
//!    own ticks; on a client, each connection's synchronised ticks);
//! 4. **transmits**: [`Endpoint::poll_transmit`] until `None`, writing each to the socket;
//! 5. **sleep** until [`Endpoint::poll_timeout`] or until a datagram arrives.
//!
//! A server recording sessions (`PROTOCOL.md` §11, [`ServerMut::record_sessions`]) also drains
//! [`Endpoint::poll_recorded`] each turn and writes the chunks out (off the tick's hot path).
//!
//! Whatever the event and tick handlers send leaves in step 4 of the same turn. A command
//! issued between turns (from another input source, a UI) makes [`Endpoint::poll_timeout`]
//! return "now", so the next turn sends it at once. [`drive::Pump`] does steps 1, 4 and 5 for
//! any socket (keeping a datagram the socket would not take yet); the runtimes and hand-written
//! loops use it alike.
//!
//! ## What is where
//!
//! | | |
//! |---|---|
//! | [`Endpoint`], [`EndpointBuilder`], [`ServerMut`] | the state machine; server-only operations |
//! | [`Event`], [`ConnHandle`], [`Session`], [`Transmit`] | what an endpoint reports and emits |
//! | [`Config`], [`config`] | every setting, validated with field paths |
//! | [`Channel`], [`Senders`], [`ChannelRateLimit`] | the channel table: how each channel delivers, who may send on it, its own rate limit (`PROTOCOL.md` §7.1) |
//! | [`JoinTicket`], [`TicketIssuer`], [`TicketVerifier`] | Ed25519 join tickets (`PROTOCOL.md` §4.6) |
//! | [`ReasonCode`], [`SendError`], [`ConnectError`], [`EndpointError`] | why things fail |
//! | [`WallClock`], [`Secrets`] | time and secrets, as inputs |
//! | [`stats`] | counters and snapshots |
//! | [`drive`] | the pump and the five-stage server tick |
//! | [`vs`], [`attest`] | the verification server protocol and TPM 2.0 quote checks |
//! | [`handshake`], [`tick`], [`retry`] | sub-machines usable alone: the handshake typestate, the fixed-timestep scheduler and client tick sync, backoff |
//! | [`record`], [`RecordedChunk`] | session recordings (`PROTOCOL.md` §11): the file format, its decoder, verification against receipts |
//! | [`webtransport`] | self-signed certificates browsers pin with WebTransport `serverCertificateHashes`, their rotation, the lobby's JSON |
//! | [`wire`] | the wire format of `PROTOCOL.md`, for tools and other implementations |
//!
//! [quinn-proto]: https://docs.rs/quinn-proto

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod attest;
mod channel;
mod clock;
mod compress;
pub mod config;
mod connection;
pub mod drive;
mod endpoint;
mod fragment;
pub mod handshake;
mod heartbeat;
mod histogram;
mod limits;
mod percentile;
pub mod record;
pub mod retry;
mod secrets;
mod shared;
pub mod stats;
pub mod tick;
mod ticket;
mod tls;
mod transcript;
pub mod vs;
pub mod webtransport;
pub mod wire;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use channel::{
    Breach, Channel, ChannelId, ChannelKind, ChannelRateLimit, OversizePolicy, Priority, RoleSet,
    SendOptions, Senders,
};
pub use clock::WallClock;
pub use config::{Config, ConfigError};
pub use endpoint::{
    ConnectOptions, Endpoint, EndpointBuilder, EndpointError, RecordedChunk, ServerMut, WebTransportTarget,
};
pub use handshake::{AdmittedTicket, Session};
pub use secrets::Secrets;
pub use shared::{ConnHandle, ConnectError, Ecn, Event, Initiator, RefusalCause, SendError, Transmit};
pub use stats::{ConnectionStats, EndpointStats};
pub use tick::TickInfo;
pub use ticket::{
    JoinTicket, JoinTicketBuilder, JoinTicketClaims, RevokeError, TicketDecodeError, TicketError,
    TicketIssuer, TicketStats, TicketVerifier, JOIN_TICKET_CONTEXT, MAX_JOIN_TICKET_BYTES,
};
pub use tls::{CryptoOptions, TlsSetupError};
pub use wire::{ReasonCode, Role, PERMISSION_ADMIN};
