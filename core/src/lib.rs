//! # tickwire-core
//!
//! A sans-IO protocol core for authoritative multiplayer game sessions over QUIC
//! ([quinn-proto]). It owns the session layer — handshake, join tickets, heartbeat,
//! channels with fragmentation, tick scheduling and tick sync — and does no I/O: it reads no
//! clock, owns no socket or thread, and draws no randomness of its own: every secret value (QUIC
//! token and reset keys, connection ids, nonces, session ids) is derived from the [`Secrets`]
//! an endpoint is built with, which runtimes fill from the operating system. Time is an
//! argument (`now: Instant`); wall-clock time for tickets comes from a [`WallClock`] anchor.
//!
//! ## The drive loop
//!
//! After **any** input (`handle_datagram`, `handle_timeout`, a command), drain transmits,
//! then events, then (servers) ticks, then re-read the deadline:
//!
//! ```
//! use std::net::SocketAddr;
//! use std::time::Instant;
//! use tickwire_core::{Endpoint, Event};
//!
//! /// One turn of a loop around any socket: `recv` yields datagrams that arrived, `send`
//! /// writes one out. Returns when the endpoint wants to be woken next.
//! fn turn(
//!     endpoint: &mut Endpoint,
//!     now: Instant,
//!     received: Vec<(SocketAddr, Vec<u8>)>,
//!     mut send: impl FnMut(SocketAddr, &[u8]),
//! ) -> Option<Instant> {
//!     for (from, bytes) in received {
//!         endpoint.handle_datagram(now, from, None, None, bytes.as_slice().into());
//!     }
//!     endpoint.handle_timeout(now);
//!     let mut buf = Vec::new();
//!     while let Some(transmit) = endpoint.poll_transmit(now, &mut buf) {
//!         send(transmit.destination, &buf[..transmit.size]);
//!     }
//!     while let Some(event) = endpoint.poll_event() {
//!         match event {
//!             Event::Connected { conn, session } => println!("{conn:?} joined as {:?}", session.role),
//!             Event::Message { conn, channel, payload } => { let _ = (conn, channel, payload); }
//!             Event::Rejected { reason, retry_after, .. } => println!("rejected: {reason} {retry_after:?}"),
//!             Event::Disconnected { reason, .. } => println!("closed: {reason}"),
//!             _ => {}
//!         }
//!     }
//!     while let Some(tick) = endpoint.poll_tick(now) {
//!         let _ = tick; // servers: run the game for tick.tick, then `send` snapshots
//!     }
//!     endpoint.poll_timeout()
//! }
//! ```
//!
//! [`drive`] wraps exactly this loop for runtimes; `tickwire-mio` and `tickwire-smol` use it.
//!
//! ## Modules
//!
//! | module | concern |
//! |---|---|
//! | [`endpoint`] | the state machine applications drive |
//! | [`handshake`] | hello/accept typestate, exporter-bound signatures |
//! | [`ticket`] | Ed25519 join tickets, replay cache, revocation |
//! | [`heartbeat`] | ping/pong, SRTT/RTTVAR, jitter, loss, failure detection |
//! | [`fragment`] | fragmentation and bounded reassembly of datagram messages |
//! | [`channel`] | reliable/unreliable/sequenced channels, priorities |
//! | [`tick`] | fixed-timestep scheduler and client tick sync |
//! | [`retry`], [`limits`] | backoff with jitter, token buckets |
//! | [`wire`] | reason codes, message encodings, framing (see `PROTOCOL.md`) |
//!
//! [quinn-proto]: https://docs.rs/quinn-proto

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod attest;
pub mod channel;
pub mod clock;
pub mod config;
mod connection;
pub mod drive;
pub mod endpoint;
pub mod fragment;
#[cfg(any(fuzzing, test))]
#[doc(hidden)]
pub mod fuzzing;
pub mod handshake;
pub mod heartbeat;
pub mod limits;
pub mod retry;
pub mod secrets;
mod shared;
pub mod stats;
pub mod tick;
pub mod ticket;
pub mod tls;
pub mod vs;
pub mod wire;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use channel::{ChannelId, ChannelKind, Priority, SendOptions};
pub use clock::WallClock;
pub use config::Config;
pub use endpoint::{ConnectOptions, Endpoint, EndpointBuilder, EndpointError, ServerMut};
pub use handshake::Session;
pub use secrets::Secrets;
pub use shared::{ConnHandle, ConnectError, Ecn, Event, Initiator, SendError, Transmit};
pub use stats::{ConnectionStats, EndpointStats};
pub use ticket::{JoinTicket, JoinTicketClaims, TicketIssuer};
pub use tls::CryptoOptions;
pub use wire::{ReasonCode, Role};
