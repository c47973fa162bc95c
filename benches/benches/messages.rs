//! Per-message CPU: a server and N clients, connected outside the timed loop; each iteration
//! every client sends a batch of messages and the nets run until the server has them all. The
//! same workload on tickwire (`tickwire`) and on bare quinn-proto (`raw_quinn`) share a group.
//!
//! Also 60 Hz game traffic: each iteration is one tick of virtual time in which the server
//! sends every client a snapshot and every client sends the server an input.

use std::time::Instant;

use bytes::Bytes;
use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use tickwire_benches::raw::RawNet;
use tickwire_benches::tw::TwNet;
use tickwire_benches::{
    messages_per_client, Net, CLIENTS, INPUT_BYTES, MESSAGE_WORKLOADS, SEED, SNAPSHOT_BYTES, TICK,
};

#[allow(clippy::disallowed_methods)] // criterion's custom timing reads the clock
fn now() -> Instant {
    Instant::now()
}

/// Times `step` on `net` as the group's function `name`; `net` is dropped afterwards, before the
/// next function's net is built.
fn bench<N: Net>(group: &mut BenchmarkGroup<'_, WallTime>, name: &str, mut net: N, step: impl Fn(&mut N)) {
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let start = now();
            for _ in 0..iters {
                step(&mut net);
            }
            start.elapsed()
        });
    });
}

fn messages(c: &mut Criterion) {
    for (kind, size, delivery) in MESSAGE_WORKLOADS {
        for clients in CLIENTS {
            let per_client = messages_per_client(clients);
            let total = (clients * per_client) as u64;
            let payload = Bytes::from(vec![0xa5; size]);
            let mut group = c.benchmark_group(format!("msg_{kind}_{size}B_N{clients}"));
            group.throughput(Throughput::Elements(total));
            group.sample_size(20);

            let net = TwNet::joined(clients, SEED);
            bench(&mut group, "tickwire", net, |n| {
                n.batch(delivery, &payload, per_client)
            });
            let net = RawNet::connected(clients, SEED);
            bench(&mut group, "raw_quinn", net, |n| {
                n.batch(delivery, &payload, per_client)
            });
            group.finish();
        }
    }
}

fn game_traffic(c: &mut Criterion) {
    let input = Bytes::from(vec![0x11; INPUT_BYTES]);
    let snapshot = Bytes::from(vec![0x22; SNAPSHOT_BYTES]);
    for clients in CLIENTS {
        let total = 2 * clients as u64;
        let mut group = c.benchmark_group(format!("game_60hz_N{clients}"));
        group.throughput(Throughput::Elements(total));
        group.sample_size(20);

        let net = TwNet::joined(clients, SEED);
        bench(&mut group, "tickwire", net, |n| {
            n.game_tick(TICK, &snapshot, &input)
        });
        let net = RawNet::connected(clients, SEED);
        bench(&mut group, "raw_quinn", net, |n| {
            n.game_tick(TICK, &snapshot, &input)
        });
        group.finish();
    }
}

criterion_group!(benches, messages, game_traffic);
criterion_main!(benches);
