//! Each shipped scenario, run twice in separate processes, gives the same `trace_sha256`; a
//! different seed gives a different one. Runs are shortened (`--duration`) to keep CI quick:
//! the hash covers every datagram, so a short prefix already exercises every source of
//! randomness (handshakes, links, faults that start early).

use std::path::Path;
use std::process::Command;

fn trace_of(scenario: &str, seed: u64, duration_s: f64, dir: &Path) -> String {
    let json = dir.join(format!("{scenario}-{seed}-{}.json", std::process::id()));
    let output = Command::new(env!("CARGO_BIN_EXE_tickwire-sim"))
        .args(["run", scenario, "--quiet", "--seed", &seed.to_string()])
        .args(["--duration", &duration_s.to_string()])
        .arg("--json")
        .arg(&json)
        .output()
        .expect("tickwire-sim runs");
    assert!(
        output.status.success(),
        "{scenario}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(report["seed"], seed);
    report["trace_sha256"].as_str().unwrap().to_owned()
}

#[test]
fn every_shipped_scenario_is_byte_identical_across_processes() {
    let dir = std::env::temp_dir();
    for (scenario, duration) in [
        ("default", 3.0),
        ("cross-region", 3.0),
        ("lossy", 3.0),
        ("partition-heal", 3.0),
        ("scale-1k", 1.0),
        // 5 000 clients: a third of a second of joins (debug builds are slow at this size).
        ("scale-5k", 0.3),
        ("vs-outage", 3.0),
        // The floods start at 4 s: half a second of them.
        ("flood", 4.5),
        // The attackers start at 0.5 s: their connections, Retries, refusals and closes.
        ("half-open", 3.0),
        // Spectators join within 1 s and send refused inputs from then on.
        ("spectators", 2.0),
        ("compression", 3.0),
    ] {
        let first = trace_of(scenario, 17, duration, &dir);
        let second = trace_of(scenario, 17, duration, &dir);
        assert_eq!(first, second, "{scenario}: same seed, different traces");
        let other = trace_of(scenario, 18, duration, &dir);
        assert_ne!(first, other, "{scenario}: different seeds, same trace");
    }
}
