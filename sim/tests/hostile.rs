//! The shipped `flood` scenario: a game server with 50 real clients takes 10⁶
//! random, mutated, replayed-Initial and truncated datagrams from spoofed sources, on the
//! modelled CPU. Compared with the same run without the floods: no panic, memory under the
//! caps below, the clients' RTT p99 within 2×, every client joined and none falsely
//! disconnected, per-address limits and Retry engaged, and no amplification.
//!
//! Memory is bounded two ways. The report's deterministic estimate (connections × 64 KiB plus
//! the bytes waiting in the server's receive queue) must stay under [`SERVER_MEMORY_CAP`].
//! And on Linux the test measures the process's peak resident set growth during each run
//! (`VmHWM` after resetting it through `/proc/self/clear_refs`), which covers the whole
//! simulated world — all 51 endpoints, links, event queue, report samples — and must stay
//! under [`PROCESS_MEMORY_CAP`]. (A counting global allocator would be exact, but needs
//! `unsafe`, which the workspace forbids.)

use std::sync::Mutex;
use std::time::Duration;

use tickwire_sim::engine::{Sim, SimOptions};
use tickwire_sim::report::Report;
use tickwire_sim::scenario::{Fault, Scenario};

/// The game server's estimated flood-grown memory never exceeds this.
const SERVER_MEMORY_CAP: u64 = 32 << 20;
/// The whole test process's peak resident set grows by less than this during a run.
const PROCESS_MEMORY_CAP: u64 = 256 << 20;

/// The runs measure process memory: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Peak resident set since the last reset, in bytes (Linux; `None` elsewhere).
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib << 10)
}

/// Resets the peak resident set to the current one (Linux ≥ 4.0).
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Runs `scenario` to its end; returns the report and the growth of the process's peak
/// resident set during the run, if measurable.
fn run(scenario: Scenario) -> (Report, Option<u64>) {
    let base = (reset_peak_rss()).then(peak_rss).flatten();
    let mut sim = Sim::new(scenario, 1, SimOptions::default()).expect("scenario builds");
    sim.run_until(sim.end());
    let report = sim.report();
    let grown = base.and_then(|b| Some(peak_rss()?.saturating_sub(b)));
    (report, grown)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1 << 20)
}

#[test]
fn a_flood_of_a_million_datagrams_leaves_the_clients_playing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let flooded = Scenario::builtin("flood").unwrap();
    let pending_cap = flooded.endpoint.max_pending_handshakes;
    let mut calm = flooded.clone();
    calm.faults.retain(|f| !matches!(f, Fault::Flood { .. }));

    let (quiet, quiet_heap) = run(calm);
    let (report, heap) = run(flooded);
    println!("{report}");
    let h = report
        .hostile
        .as_ref()
        .expect("the flood scenario reports hostile traffic");
    println!(
        "process peak RSS growth: {:?} MiB flooded, {:?} MiB without; server memory estimate {:.1} MiB; SRTT p99 {:.1} ms vs {:.1} ms",
        heap.map(mib),
        quiet_heap.map(mib),
        mib(h.peak_memory_estimate_bytes),
        report.rtt.srtt_ms.p99,
        quiet.rtt.srtt_ms.p99
    );
    assert_eq!(h.flood_datagrams, 1_000_000, "{report}");
    assert!(h.peak_memory_estimate_bytes < SERVER_MEMORY_CAP, "{report}");
    if let Some(heap) = heap {
        assert!(heap < PROCESS_MEMORY_CAP, "peak RSS grew {:.1} MiB", mib(heap));
    }

    // Every legitimate client joined and stayed.
    let s = &report.sessions;
    assert_eq!(s.clients_joined, s.clients, "{report}");
    assert_eq!(
        s.joins, s.clients as u64,
        "no session was lost and re-established: {report}"
    );
    assert_eq!(s.false_disconnects, 0, "{report}");
    assert!(s.disconnects.is_empty(), "{report}");

    // Their RTT p99 stays within twice the unflooded run's.
    assert!(quiet.rtt.srtt_ms.count > 500 && report.rtt.srtt_ms.count > 500);
    assert!(
        report.rtt.srtt_ms.p99 <= 2.0 * quiet.rtt.srtt_ms.p99,
        "SRTT p99 {:.1} ms flooded vs {:.1} ms: {report}",
        report.rtt.srtt_ms.p99,
        quiet.rtt.srtt_ms.p99
    );

    // The defences engaged, and are counted.
    assert!(h.retries_sent > 100_000, "{report}");
    // Per-address defences engaged: past its share of handshakes in progress (or of its
    // handshake tokens) an unvalidated source gets a Retry. The replayed Initials now meet
    // the per-address pending cap before the token bucket, which is charged only for
    // Initials QUIC decrypts, so the bucket itself may never run dry here.
    assert!(h.retries_rate_limited > 0, "{report}");
    assert!(h.peak_handshakes_pending <= pending_cap, "{report}");
    assert!(h.handled.get("dropped").is_some_and(|n| *n > 100_000), "{report}");
    // Never more bytes to a spoofed source than it sent (RFC 9000 §8.1 would allow 3×).
    assert!(h.amplification <= 1.0, "{report}");
    let cpu = h.cpu.as_ref().expect("the scenario models the server CPU");
    assert!(
        cpu.peak_utilisation > 0.2 && cpu.peak_utilisation < 1.0,
        "{report}"
    );
}

#[test]
fn floods_are_deterministic_and_seeded() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let short = |seed| {
        let options = SimOptions {
            duration: Some(Duration::from_secs_f64(4.2)),
            ..SimOptions::default()
        };
        let mut sim = Sim::new(Scenario::builtin("flood").unwrap(), seed, options).unwrap();
        sim.run_until(sim.end());
        sim.report()
    };
    let (a, b, c) = (short(5), short(5), short(6));
    assert_eq!(a.trace_sha256, b.trace_sha256);
    assert_ne!(a.trace_sha256, c.trace_sha256);
    let h = a.hostile.unwrap();
    assert!(h.flood_datagrams > 10_000);
    assert_eq!(
        h.flood_by_kind.values().sum::<u64>(),
        h.flood_datagrams,
        "every datagram has a kind"
    );
}
