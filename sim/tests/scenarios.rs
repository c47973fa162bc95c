//! The protocol under faults, in the simulator: every assertion is on virtual-time results of
//! seeded runs, so each test is deterministic. Shipped scenarios are shortened where the
//! property shows well before their full duration, to keep debug-build CI time down.

use std::time::Duration;

use tickwire_sim::engine::{Sim, SimOptions};
use tickwire_sim::report::Report;
use tickwire_sim::scenario::Scenario;

fn run(scenario: Scenario, seed: u64, duration_s: Option<f64>) -> Report {
    let options = SimOptions {
        duration: duration_s.map(Duration::from_secs_f64),
        ..SimOptions::default()
    };
    let mut sim = Sim::new(scenario, seed, options).expect("scenario builds");
    sim.run_until(sim.end());
    sim.report()
}

#[test]
fn under_lossy_every_client_joins_and_none_is_falsely_disconnected() {
    let scenario = Scenario::builtin("lossy").unwrap();
    let report = run(scenario, 3, Some(20.0));
    let s = &report.sessions;
    assert_eq!(s.clients_joined, s.clients, "{report}");
    assert_eq!(s.false_disconnects, 0, "{report}");
    assert_eq!(s.gave_up, 0, "{report}");
    // The links really were lossy, and the heartbeat saw it.
    assert!(report.loss.link_ratio > 0.08, "{report}");
    assert!(report.loss.estimated_ratio > 0.05, "{report}");
}

#[test]
fn a_partition_is_detected_within_timeout_plus_one_interval_and_the_crowd_returns_spread_out() {
    let scenario = Scenario::builtin("partition-heal").unwrap();
    let heartbeat = scenario.endpoint.heartbeat.clone();
    let report = run(scenario, 4, Some(30.0));
    let s = &report.sessions;
    // Every session broken by the 12 s partition is detected by both sides ...
    assert_eq!(s.detected_disconnects, 2 * s.clients as u64, "{report}");
    assert_eq!(s.false_disconnects, 0, "{report}");
    // ... no earlier than the timeout and within timeout + one heartbeat interval.
    let bound = (heartbeat.timeout_ms + heartbeat.interval_ms) as f64;
    assert!(s.detection_delay_ms.max <= bound, "{report}");
    assert!(
        s.detection_delay_ms.p50 >= heartbeat.timeout_ms as f64 * 0.95,
        "{report}"
    );
    // After the heal every client is back, and no 100 ms window saw a stampede.
    assert_eq!(s.reconnects, s.clients as u64, "{report}");
    assert!(s.reconnect_peak_per_100ms * 5 <= s.clients as u64, "{report}");
    assert!(s.reconnect_spread_ms >= 500.0, "{report}");
}

fn skew_scenario(offset_ms: i64) -> Scenario {
    Scenario::from_toml(&format!(
        r#"
        name = "skew"
        duration_s = 4.0
        [topology]
        servers = 1
        clients_per_server = 8
        join_window_s = 0.5
        [[faults]]
        kind = "clock_offset"
        target = "server:0"
        offset_ms = {offset_ms}
        [[faults]]
        kind = "clock_drift"
        target = "clients"
        ppm = 200.0
        "#
    ))
    .unwrap()
}

#[test]
fn clock_skew_within_the_allowance_admits_tickets_and_beyond_it_rejects_them_with_the_skew_reason() {
    let allowance = tickwire_core::Config::default().tickets.max_skew_ms as i64;
    for offset in [-(allowance - 5_000), allowance - 5_000] {
        let report = run(skew_scenario(offset), 9, None);
        assert_eq!(report.sessions.clients_joined, 8, "offset {offset} ms: {report}");
        assert!(
            report.sessions.rejected.is_empty(),
            "offset {offset} ms: {report}"
        );
    }
    // A game server whose clock is behind by more than the allowance sees tickets from the
    // future; the client is told why (and when to retry).
    let report = run(skew_scenario(-(allowance + 10_000)), 9, None);
    assert_eq!(report.sessions.clients_joined, 0, "{report}");
    assert_eq!(
        report.sessions.rejected.get("TICKET_NOT_YET_VALID"),
        Some(&8),
        "{report}"
    );
    // One ahead by more than a ticket's lifetime plus the allowance sees them expired.
    let lifetime = 60_000;
    let report = run(skew_scenario(lifetime + allowance + 10_000), 9, None);
    assert_eq!(report.sessions.clients_joined, 0, "{report}");
    assert!(
        report
            .sessions
            .rejected
            .get("TICKET_EXPIRED")
            .is_some_and(|n| *n >= 8),
        "{report}"
    );
}

#[test]
fn a_crashed_server_is_detected_and_its_clients_return_after_the_restart() {
    let scenario = Scenario::from_toml(
        r#"
        name = "crash"
        duration_s = 16.0
        [topology]
        servers = 1
        clients_per_server = 10
        join_window_s = 0.5
        mix = [{ preset = "wifi" }]
        [[faults]]
        kind = "crash"
        target = "server:0"
        at_s = 3.0
        restart_at_s = 6.0
        "#,
    )
    .unwrap();
    let report = run(scenario, 11, None);
    let s = &report.sessions;
    assert_eq!(s.false_disconnects, 0, "{report}");
    assert_eq!(
        s.detected_disconnects, 10,
        "clients detect the silent server: {report}"
    );
    assert_eq!(s.reconnects, 10, "{report}");
    assert!(
        s.disconnects.get("client/HEARTBEAT_TIMEOUT") == Some(&10),
        "{report}"
    );
}

#[test]
fn same_seed_same_trace_and_a_different_seed_a_different_one() {
    let scenario = Scenario::builtin("default").unwrap();
    let a = run(scenario.clone(), 1, Some(3.0));
    let b = run(scenario.clone(), 1, Some(3.0));
    let c = run(scenario, 2, Some(3.0));
    assert_eq!(a.trace_sha256, b.trace_sha256);
    assert_eq!(a.datagrams, b.datagrams);
    assert_ne!(a.trace_sha256, c.trace_sha256);
}
