//! Handshake CPU: one client joining a fresh server, from the first packet until both sides
//! report the session. `raw_quinn` is the QUIC and TLS handshake alone; `tickwire` adds the
//! session handshake on top (exporter-bound signatures, version and schema agreement, the join
//! ticket's signature and claims checked against the server's verifier). Endpoints,
//! certificates and the ticket are made outside the timed part.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use tickwire_benches::raw::{self, RawNet};
use tickwire_benches::tw::{self, TwNet};
use tickwire_benches::SEED;

fn handshake(c: &mut Criterion) {
    let mut group = c.benchmark_group("handshake");
    group.throughput(Throughput::Elements(1));
    group.sample_size(20);
    let issuer = tw::issuer();
    group.bench_function("tickwire", |b| {
        b.iter_batched(
            || {
                let net = TwNet::new(1, SEED);
                let tickets = net.tickets(&issuer);
                (net, tickets)
            },
            |(mut net, tickets)| {
                net.start_joins(tickets);
                net.run_until(TwNet::all_joined);
                net
            },
            BatchSize::SmallInput,
        );
    });
    let config = raw::client_config();
    group.bench_function("raw_quinn", |b| {
        b.iter_batched(
            || RawNet::new(1, SEED),
            |mut net| {
                net.start_connects(&config);
                net.run_until(RawNet::all_connected);
                net
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

criterion_group!(benches, handshake);
criterion_main!(benches);
