//! Runs one benchmark workload for a fixed number of batches, for a profiler (callgrind,
//! perf): `cargo run --release -p tickwire-benches --example profile -- tw|raw unreliable64|unreliable1000|reliable64|game N BATCHES`,
//! or `-- tw|raw handshake JOINS`.

use bytes::Bytes;
use tickwire_benches::raw::RawNet;
use tickwire_benches::tw::TwNet;
use tickwire_benches::{Delivery, Net, INPUT_BYTES, SEED, SNAPSHOT_BYTES, TICK};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(2).map(String::as_str) == Some("handshake") {
        return handshakes(&args[1], args.get(3).and_then(|s| s.parse().ok()).unwrap_or(10));
    }
    let usage = "usage: profile tw|raw unreliable64|unreliable1000|reliable64|game CLIENTS BATCHES";
    let (side, workload) = (args.get(1).expect(usage), args.get(2).expect(usage));
    let clients: usize = args.get(3).and_then(|s| s.parse().ok()).expect(usage);
    let batches: usize = args.get(4).and_then(|s| s.parse().ok()).expect(usage);
    let job = Job {
        batches,
        per_client: tickwire_benches::messages_per_client(clients),
        delivery: match workload.as_str() {
            "unreliable64" | "unreliable1000" => Some(Delivery::Unreliable),
            "reliable64" => Some(Delivery::Reliable),
            "game" => None,
            _ => panic!("{usage}"),
        },
        payload: Bytes::from(vec![0xa5; if workload == "unreliable1000" { 1000 } else { 64 }]),
        input: Bytes::from(vec![0x11; INPUT_BYTES]),
        snapshot: Bytes::from(vec![0x22; SNAPSHOT_BYTES]),
    };
    match side.as_str() {
        "tw" => job.run(TwNet::joined(clients, SEED)),
        "raw" => job.run(RawNet::connected(clients, SEED)),
        _ => panic!("{usage}"),
    }
}

/// A workload as the message benches run it: `batches` batches of `payload` with `delivery`,
/// or with `None` that many ticks of 60 Hz game traffic.
struct Job {
    batches: usize,
    per_client: usize,
    delivery: Option<Delivery>,
    payload: Bytes,
    input: Bytes,
    snapshot: Bytes,
}

impl Job {
    fn run<N: Net>(&self, mut net: N) {
        for _ in 0..self.batches {
            match self.delivery {
                Some(delivery) => net.batch(delivery, &self.payload, self.per_client),
                None => net.game_tick(TICK, &self.snapshot, &self.input),
            }
        }
    }
}

/// `joins` handshakes on fresh nets (endpoints made outside `join`/`connect`, as the
/// criterion bench does).
fn handshakes(side: &str, joins: usize) {
    let issuer = tickwire_benches::tw::issuer();
    let config = tickwire_benches::raw::client_config();
    for _ in 0..joins {
        if side == "tw" {
            let mut net = TwNet::new(1, SEED);
            let tickets = net.tickets(&issuer);
            join(&mut net, tickets);
        } else {
            let mut net = RawNet::new(1, SEED);
            connect(&mut net, &config);
        }
    }
}

#[inline(never)]
fn join(net: &mut TwNet, tickets: Vec<tickwire_core::JoinTicket>) {
    net.start_joins(tickets);
    net.run_until(TwNet::all_joined);
}

#[inline(never)]
fn connect(net: &mut RawNet, config: &quinn_proto::ClientConfig) {
    net.start_connects(config);
    net.run_until(RawNet::all_connected);
}
