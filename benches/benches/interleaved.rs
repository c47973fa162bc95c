//! The tickwire / raw quinn-proto ratios measured in alternation, for a machine whose load
//! changes while it runs.
//!
//! Criterion times a group's `tickwire` function to the end and then its `raw_quinn` function,
//! so load from a neighbour that falls in one of the two windows moves the ratio. Here each
//! workload runs in rounds: a round times one slice of tickwire and one slice of bare
//! quinn-proto, the same number of iterations each (a slice is sized so that the raw side
//! takes about [`SLICE`]), in alternating order, and yields one ratio. A neighbour's load
//! lands on both sides of most rounds or on few rounds, and the median over [`ROUNDS`] rounds
//! leaves those few out.
//!
//! The workloads are the `messages` and `handshake` benches', built by the same fixtures. The
//! results go to stdout and to `<target>/interleaved/<workload>.json`, which `benches/ratios`
//! prints beside criterion's ratios. `cargo bench -p tickwire-benches --bench interleaved
//! [-- FILTER]` runs it; without `--bench` (as in `cargo test --benches`) every workload runs
//! one short round, to check that it still works.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tickwire_benches::raw::{self, RawNet};
use tickwire_benches::tw::{self, TwNet};
use tickwire_benches::{
    messages_per_client, Net, CLIENTS, INPUT_BYTES, MESSAGE_WORKLOADS, SEED, SNAPSHOT_BYTES, TICK,
};

/// Rounds per workload; odd, so the median is one round's ratio.
const ROUNDS: usize = 41;
/// Wall time of the raw side of a round, about.
const SLICE: Duration = Duration::from_millis(20);

#[allow(clippy::disallowed_methods)] // a benchmark reads the clock
fn now() -> Instant {
    Instant::now()
}

/// How a run goes: a full measurement, or one short round per workload.
#[derive(Debug, Clone, Copy)]
struct Mode {
    rounds: usize,
    slice: Duration,
}

/// One side of a workload: runs `iters` iterations and returns the time they took (setup that
/// is not part of an iteration left out).
type Side<'a> = Box<dyn FnMut(u64) -> Duration + 'a>;

/// What one workload measured.
#[derive(Debug)]
struct Outcome {
    name: String,
    elements: u64,
    iters: u64,
    /// tickwire / raw per round, sorted.
    ratios: Vec<f64>,
    /// Nanoseconds per iteration, per round, sorted.
    tw_ns: Vec<f64>,
    raw_ns: Vec<f64>,
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i]
}

/// The iterations per slice: doubled from one until the raw side takes at least `slice`.
fn calibrate(raw: &mut Side<'_>, slice: Duration) -> u64 {
    let mut iters = 1;
    loop {
        if raw(iters) >= slice || iters >= 1 << 20 {
            return iters;
        }
        iters *= 2;
    }
}

fn measure(name: &str, elements: u64, mode: Mode, mut tw: Side<'_>, mut raw: Side<'_>) -> Outcome {
    let iters = calibrate(&mut raw, mode.slice);
    // One untimed round each, so that both sides start warm.
    tw(iters);
    raw(iters);
    let (mut ratios, mut tw_ns, mut raw_ns) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..mode.rounds {
        let (t, r) = if round % 2 == 0 {
            let t = tw(iters);
            (t, raw(iters))
        } else {
            let r = raw(iters);
            (tw(iters), r)
        };
        ratios.push(t.as_secs_f64() / r.as_secs_f64().max(1e-12));
        tw_ns.push(t.as_nanos() as f64 / iters as f64);
        raw_ns.push(r.as_nanos() as f64 / iters as f64);
    }
    for v in [&mut ratios, &mut tw_ns, &mut raw_ns] {
        v.sort_by(f64::total_cmp);
    }
    Outcome {
        name: name.to_owned(),
        elements,
        iters,
        ratios,
        tw_ns,
        raw_ns,
    }
}

/// Times `iters` iterations of `step` on `net`.
fn timed<N: Net>(net: &mut N, iters: u64, step: &impl Fn(&mut N)) -> Duration {
    let start = now();
    for _ in 0..iters {
        step(net);
    }
    start.elapsed()
}

/// A side that runs `step` on one long-lived net.
fn on_net<'a, N: Net + 'a>(mut net: N, step: impl Fn(&mut N) + 'a) -> Side<'a> {
    Box::new(move |iters| timed(&mut net, iters, &step))
}

fn workloads<'a>(filter: &'a str, mode: Mode, issuer: &'a tickwire_core::TicketIssuer) -> Vec<Outcome> {
    let mut out = Vec::new();
    let wanted = |name: &str| name.contains(filter);
    for (kind, size, delivery) in MESSAGE_WORKLOADS {
        for clients in CLIENTS {
            let name = format!("msg_{kind}_{size}B_N{clients}");
            if !wanted(&name) {
                continue;
            }
            let per_client = messages_per_client(clients);
            let payload = Bytes::from(vec![0xa5; size]);
            let step = move |n: &mut TwNet| n.batch(delivery, &payload, per_client);
            let payload = Bytes::from(vec![0xa5; size]);
            let raw_step = move |n: &mut RawNet| n.batch(delivery, &payload, per_client);
            out.push(measure(
                &name,
                (clients * per_client) as u64,
                mode,
                on_net(TwNet::joined(clients, SEED), step),
                on_net(RawNet::connected(clients, SEED), raw_step),
            ));
        }
    }
    for clients in CLIENTS {
        let name = format!("game_60hz_N{clients}");
        if !wanted(&name) {
            continue;
        }
        let input = Bytes::from(vec![0x11; INPUT_BYTES]);
        let snapshot = Bytes::from(vec![0x22; SNAPSHOT_BYTES]);
        let (i2, s2) = (input.clone(), snapshot.clone());
        out.push(measure(
            &name,
            2 * clients as u64,
            mode,
            on_net(TwNet::joined(clients, SEED), move |n| {
                n.game_tick(TICK, &snapshot, &input)
            }),
            on_net(RawNet::connected(clients, SEED), move |n| {
                n.game_tick(TICK, &s2, &i2)
            }),
        ));
    }
    if wanted("handshake") {
        // Each iteration joins one client to a fresh server; building the nets and the ticket
        // is not timed.
        let tw_side: Side<'a> = Box::new(move |iters| {
            (0..iters)
                .map(|_| {
                    let mut net = TwNet::new(1, SEED);
                    let tickets = net.tickets(issuer);
                    let start = now();
                    net.start_joins(tickets);
                    net.run_until(TwNet::all_joined);
                    start.elapsed()
                })
                .sum()
        });
        let config = raw::client_config();
        let raw_side: Side<'a> = Box::new(move |iters| {
            (0..iters)
                .map(|_| {
                    let mut net = RawNet::new(1, SEED);
                    let start = now();
                    net.start_connects(&config);
                    net.run_until(RawNet::all_connected);
                    start.elapsed()
                })
                .sum()
        });
        out.push(measure("handshake", 1, mode, tw_side, raw_side));
    }
    out
}

/// `<target>/interleaved`, where `<target>` holds `release/deps/` and this executable.
fn output_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    Some(exe.parent()?.parent()?.parent()?.join("interleaved"))
}

fn human(ns: f64) -> String {
    if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let full = args.iter().any(|a| a == "--bench");
    let filter = args
        .iter()
        .find(|a| !a.starts_with('-'))
        .cloned()
        .unwrap_or_default();
    let mode = if full {
        Mode {
            rounds: ROUNDS,
            slice: SLICE,
        }
    } else {
        Mode {
            rounds: 1,
            slice: Duration::ZERO,
        }
    };
    let issuer = tw::issuer();
    let outcomes = workloads(&filter, mode, &issuer);
    if !full {
        println!("interleaved: {} workloads ran once (test mode)", outcomes.len());
        return;
    }
    let dir = output_dir();
    if let Some(dir) = &dir {
        if let Err(e) = std::fs::create_dir_all(dir) {
            eprintln!("interleaved: cannot create {}: {e}", dir.display());
        }
    }
    println!("workload: median tickwire / raw of {ROUNDS} rounds [quartiles], median time per element");
    for o in &outcomes {
        let per = o.elements as f64;
        let (tw, raw) = (quantile(&o.tw_ns, 0.5) / per, quantile(&o.raw_ns, 0.5) / per);
        println!(
            "{:<28} {:.3} [{:.3} {:.3}]  tickwire {}  raw {}  ({} iterations a slice)",
            o.name,
            quantile(&o.ratios, 0.5),
            quantile(&o.ratios, 0.25),
            quantile(&o.ratios, 0.75),
            human(tw),
            human(raw),
            o.iters,
        );
        let Some(dir) = &dir else { continue };
        let json = format!(
            "{{\"workload\":\"{}\",\"rounds\":{},\"iterations_per_slice\":{},\"elements\":{},\
             \"ratio_median\":{},\"ratio_q1\":{},\"ratio_q3\":{},\
             \"tickwire_ns_per_element\":{},\"raw_ns_per_element\":{}}}\n",
            o.name,
            o.ratios.len(),
            o.iters,
            o.elements,
            quantile(&o.ratios, 0.5),
            quantile(&o.ratios, 0.25),
            quantile(&o.ratios, 0.75),
            tw,
            raw,
        );
        let path = dir.join(format!("{}.json", o.name));
        if let Err(e) = std::fs::write(&path, json) {
            eprintln!("interleaved: cannot write {}: {e}", path.display());
        }
    }
}
