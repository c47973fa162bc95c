//! Every shipped scenario gives the same trace and the same report on 1, 2 and 4 threads:
//! the engine's windows, event order and metric merges do not depend on how the nodes are
//! split between threads. Runs are shortened to keep debug builds quick; each still covers
//! joins, traffic and the faults or attacks that start early.

use std::time::Duration;

use tickwire_sim::engine::{Sim, SimOptions};
use tickwire_sim::report::Report;
use tickwire_sim::scenario::{Scenario, BUILTIN};

/// Virtual seconds to run each shipped scenario for.
fn duration_of(name: &str) -> f64 {
    match name {
        "default" | "cross-region" | "partition-heal" | "compression" => 2.0,
        "lossy" | "half-open" | "vs-outage" => 1.5,
        "scale-1k" => 0.6,
        "scale-5k" => 0.25,
        // The floods start at 4 s: a tenth of a second of them.
        "flood" => 4.1,
        "spectators" => 1.5,
        other => panic!("{other}: pick a test duration for this new shipped scenario"),
    }
}

fn run(name: &str, threads: usize) -> Report {
    let scenario = Scenario::builtin(name).expect("shipped");
    let seed = scenario.seed;
    let options = SimOptions {
        duration: Some(Duration::from_secs_f64(duration_of(name))),
        threads,
        ..SimOptions::default()
    };
    let mut sim = Sim::new(scenario, seed, options).expect("builds");
    // Uneven steps, so that `run_until` boundaries fall inside windows.
    let mut step = 7_000_000;
    while !sim.finished() {
        sim.run_for(step);
        step = step * 3 % 97_000_000 + 1_000_000;
    }
    sim.report()
}

/// The report as JSON, without the sections that describe the run rather than the network.
fn comparable(report: &Report) -> serde_json::Value {
    let mut value = serde_json::to_value(report).expect("serialises");
    let object = value.as_object_mut().expect("an object");
    object.remove("parallel");
    object.remove("wall_seconds");
    object.remove("speed");
    value
}

#[test]
fn every_shipped_scenario_is_identical_on_1_2_and_4_threads() {
    for (name, _) in BUILTIN {
        let one = run(name, 1);
        assert_eq!(one.parallel.threads, 1);
        assert!(one.datagrams > 0, "{name}: nothing sent");
        for threads in [2, 4] {
            let many = run(name, threads);
            assert_eq!(
                one.trace_sha256, many.trace_sha256,
                "{name}: {threads} threads, different trace"
            );
            assert_eq!(
                comparable(&one),
                comparable(&many),
                "{name}: {threads} threads, different report"
            );
            assert_eq!(one.parallel.windows, many.parallel.windows, "{name}: windows");
        }
    }
}

#[test]
fn the_report_says_how_windows_went() {
    // 25 ms constant latency: windows of the full lookahead, run in parallel.
    let scale = run("scale-1k", 2);
    assert_eq!(scale.parallel.threads, 2);
    assert_eq!(scale.parallel.lookahead_ms, 25.0);
    assert!(scale.parallel.windows_lookahead_limited > 0);
    assert_eq!(scale.parallel.sequential_windows, 0);
    // Wi-Fi and mobile latencies have floors, so LAN's 0.2 ms is the smallest delay: windows,
    // not single instants (mostly too small to share, with 100 clients).
    let default = run("default", 2);
    assert_eq!(default.parallel.lookahead_ms, 0.2);
    assert_eq!(default.parallel.sequential_windows, 0);
    assert!(default.parallel.windows_lookahead_limited > 0);
    // Spoofed floods arrive at once: no lookahead, every window a single instant.
    let flood = run("flood", 2);
    assert_eq!(flood.parallel.lookahead_ms, 0.0);
    assert_eq!(flood.parallel.sequential_windows, flood.parallel.windows);
}
