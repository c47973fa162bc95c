//! # tickwire-sim
//!
//! A deterministic discrete-event network simulator that runs real tickwire endpoints — real
//! QUIC, real TLS, real Ed25519 — between simulated clients and game servers, in virtual time,
//! reproducibly from one seed, and much faster than real time.
//!
//! | module | concern |
//! |---|---|
//! | [`engine`] | the event queue, nodes, routing, faults, the trace hash |
//! | [`link`] | link elements (latency, jitter, loss, duplication, reordering, bandwidth, MTU, corruption) and presets |
//! | [`scenario`] | TOML scenarios: topology, traffic, fault schedule |
//! | [`report`] | what a run measured, as text and JSON |
//! | [`clock`] | per-node clock offset and drift |
//! | [`crypto`] | a seeded rustls provider (simulation only) |
//! | [`capture`] | pcap export and the TLS key log |
//! | [`plot`] | SVG charts of RTT and loss per link preset |
//! | [`units`] | virtual-time units and size thresholds shared by the engine and the report |
//! | [`proxy`] | the socket-free core of the impairment proxy (flows, links, timers); the `proxy` command runs it on real UDP |
//!
//! Run a scenario from code:
//!
//! ```no_run
//! use tickwire_sim::{engine::{Sim, SimOptions}, scenario::Scenario};
//! let mut sim = Sim::new(Scenario::builtin("lossy").unwrap(), 42, SimOptions::default()).unwrap();
//! sim.run_until(sim.end());
//! println!("{}", sim.report());
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod capture;
pub mod clock;
pub mod crypto;
pub mod engine;
pub mod link;
pub mod plot;
pub mod proxy;
pub mod report;
pub mod scenario;
pub mod units;
