//! Simulator speed: the shipped `default` scenario (LAN, Wi-Fi, mobile and intercontinental
//! clients, a partition, a crash), cut to ten clients joining within half a second and three
//! seconds of virtual time, run to its end from a fixed seed. Throughput is the datagrams the
//! run delivers, so criterion reports simulated datagrams per second of CPU.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use tickwire_sim::engine::{Sim, SimOptions};
use tickwire_sim::scenario::Scenario;

/// Seed of the run.
const SEED: u64 = 1;

fn scenario() -> Scenario {
    let mut scenario = Scenario::builtin("default").expect("a shipped scenario");
    scenario.topology.clients_per_server = 10;
    scenario.topology.join_window_s = 0.5;
    scenario
}

fn sim() -> Sim {
    let options = SimOptions {
        duration: Some(Duration::from_secs(3)),
        ..SimOptions::default()
    };
    Sim::new(scenario(), SEED, options).expect("the scenario is valid")
}

fn run(mut sim: Sim) -> u64 {
    sim.run_until(sim.end());
    sim.report().datagrams
}

fn simulator(c: &mut Criterion) {
    let datagrams = run(sim());
    let mut group = c.benchmark_group("sim_default_10clients_3s");
    group.throughput(Throughput::Elements(datagrams));
    group.sample_size(10);
    group.bench_function("datagrams", |b| {
        b.iter_batched(sim, run, BatchSize::LargeInput);
    });
    group.finish();
}

criterion_group!(benches, simulator);
criterion_main!(benches);
