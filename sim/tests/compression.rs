//! The compression scenario: entity snapshots on a zstd-compressed channel, against the same
//! run with compression off (same seed, same traffic), in virtual time.

use std::time::Duration;

use tickwire_sim::engine::{Sim, SimOptions};
use tickwire_sim::report::Report;
use tickwire_sim::scenario::Scenario;

fn run(scenario: Scenario) -> Report {
    let options = SimOptions {
        duration: Some(Duration::from_secs(6)),
        ..SimOptions::default()
    };
    let seed = scenario.seed;
    let mut sim = Sim::new(scenario, seed, options).expect("scenario builds");
    sim.run_until(sim.end());
    sim.report()
}

#[test]
fn compressed_snapshots_save_bytes_on_the_wire_and_arrive_intact() {
    let scenario = Scenario::builtin("compression").unwrap();
    let mut off = scenario.clone();
    off.endpoint.compression.enabled = false;

    let on = run(scenario);
    let off = run(off);
    let compression = on.compression.as_ref().expect("a compression section");
    assert!(off.compression.is_none(), "{off}");
    assert_eq!(on.sessions.clients_joined, on.sessions.clients, "{on}");

    // The servers compressed every snapshot, and the clients decompressed them all.
    assert_eq!(
        compression.servers.messages_sent, on.traffic.snapshots_sent,
        "{on}"
    );
    assert_eq!(compression.clients.refused, 0, "{on}");
    assert_eq!(
        compression.clients.messages_received, on.traffic.snapshots_received,
        "{on}"
    );
    assert!(compression.ratio > 1.3, "{on}");
    assert!(compression.saved_bytes > 0, "{on}");

    // The same traffic costs fewer bytes on the wire: the saving shows downstream, per
    // snapshot (both runs join every client; link draws may shift a snapshot or two).
    assert_eq!(off.sessions.clients_joined, off.sessions.clients, "{off}");
    let per_snapshot = |r: &Report| r.wire.bytes_down as f64 / r.traffic.snapshots_sent as f64;
    let ratio = per_snapshot(&off) / per_snapshot(&on);
    assert!(
        ratio > 1.2,
        "downstream per snapshot {:.0} B off vs {:.0} B on",
        per_snapshot(&off),
        per_snapshot(&on)
    );
    let text = on.to_string();
    assert!(text.contains("compression "), "{text}");
}
