//! # tickwire-apps
//!
//! The programs built on [`tickwire_mio`]: the demo game server `tickwire-gs`, its clients
//! `tickwire-client`, the verification server `tickwire-vs`, and `tickwire-demo`, which runs a
//! game server and its clients (and optionally a verification server) in one process.
//!
//! This library is what those binaries share, and what the workspace's end-to-end tests run
//! in threads; it is not published. [`demo`] is the demo game; [`vs`] the verification server
//! and a game server's attestation to it; [`cli`] the binaries' argument checks, key files and
//! the one way they fail (one line on stderr, exit code 2).
//!
//! The runtime itself — the poll loop, nodes, ticks, graceful shutdown — is `tickwire-mio`,
//! which depends on none of this crate's command-line or report machinery.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod cli;
pub mod demo;
pub mod game;
pub mod lobby;
pub mod operator;
pub mod record;
pub mod replay;
pub mod settings;
pub mod store;
pub mod vs;
pub mod webtransport;
