//! # tickwire-smol
//!
//! An async driver for [`tickwire_core`] on [smol]'s UDP sockets and timers (`async-io`).
//! There is no background task: whichever method is awaiting drives the socket — it waits
//! for a datagram or the endpoint's next deadline, feeds the endpoint, and flushes its
//! transmits through the shared [`Pump`](tickwire_core::drive::Pump).
//!
//! ```no_run
//! use std::time::Instant;
//! use ed25519_dalek::SigningKey;
//! use tickwire_core::{ChannelId, Config, ConnectOptions, Event, JoinTicketClaims, TicketIssuer};
//! use tickwire_smol::{connect, wall_clock_now, Server, ServerOutput};
//! use tickwire_udp::{os_secrets, os_signing_key};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! smol::block_on(async {
//!     // A server trusting one ticket issuer, serving game server id 42. Secrets and keys come
//!     // from the OS (or, for long-term keys, from files: `tickwire_udp::os::load_signing_key`).
//!     let wall = wall_clock_now();
//!     let issuer = TicketIssuer::new(1, os_signing_key()?);
//!     let (secrets, identity) = (os_secrets()?, os_signing_key()?);
//!     let addr = "127.0.0.1:4433".parse()?;
//!     let mut server = Server::bind(addr, Config::default(), secrets, identity, 42, wall)?;
//!     server.tickets_mut().add_key(1, issuer.verifying_key());
//!     let server_addr = server.local_addr()?;
//!     smol::spawn(async move {
//!         while let Ok(output) = server.next().await {
//!             match output {
//!                 ServerOutput::Event(Event::Message { conn, channel, payload }) => {
//!                     let _ = server.send(conn, channel, payload); // echo
//!                 }
//!                 ServerOutput::Event(_) => {}
//!                 ServerOutput::Tick(_tick) => {} // simulate, then send snapshots
//!                 ServerOutput::Vs(_) => {} // only with `Server::attest`
//!             }
//!         }
//!     })
//!     .detach();
//!
//!     // A client with a ticket naming its identity key (a lobby would issue it), with a
//!     // random single-use `jti`.
//!     let identity: SigningKey = os_signing_key()?;
//!     let jti: [u8; 16] = tickwire_udp::os::os_random()?[..16].try_into()?;
//!     let claims = JoinTicketClaims::builder(identity.verifying_key().to_bytes(), jti)
//!         .client_id(7)
//!         .audience(42)
//!         .valid_from(wall.unix_ms_at(Instant::now()))
//!         .lifetime_ms(60_000)
//!         .build();
//!     let ticket = issuer.issue(&claims);
//!     let mut client = connect(
//!         Config::default(), os_secrets()?, identity, wall, server_addr, ticket,
//!         ConnectOptions::default(),
//!     )
//!     .await?;
//!     client.send(ChannelId::GAME, &b"hello"[..])?;
//!     while let Some(tick) = client.next_tick().await {
//!         while let Some(message) = client.try_recv() {
//!             println!("tick {tick}: {:?} on {:?}", message.payload, message.channel);
//!         }
//!         if tick % 60 == 0 {
//!             break;
//!         }
//!     }
//!     client.close(tickwire_core::ReasonCode::NORMAL, "bye").await?;
//!     Ok::<(), Box<dyn std::error::Error>>(())
//! })
//! # }
//! ```
//!
//! [smol]: https://docs.rs/smol

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod admin;
mod client;
mod io;
mod server;

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tickwire_core::WallClock;

pub use client::{connect, Client, ConnectFailure, Received};
pub use io::{SmolEndpoint, MAX_DATAGRAMS_PER_WAKE};
pub use server::{Attestation, BindError, Server, ServerOutput};

/// A wall-clock anchor from this machine's clocks: `Instant::now()` paired with the system
/// time in milliseconds since the Unix epoch (0 if the system clock is before 1970).
pub fn wall_clock_now() -> WallClock {
    let unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| u64::try_from(since.as_millis()).unwrap_or(u64::MAX));
    WallClock::new(Instant::now(), unix_ms)
}
