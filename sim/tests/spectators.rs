//! The shipped `spectators` scenario: spectators receive snapshots like players, and the inputs
//! they send (with a channel table out of step with the server's) are refused, counted and
//! reported without closing them (`max_permission_violations = 0`); a scenario that keeps the
//! default limit sees them closed with `PERMISSION_DENIED` instead.

use std::time::Duration;

use tickwire_sim::engine::{Sim, SimOptions};
use tickwire_sim::report::Report;
use tickwire_sim::scenario::Scenario;

fn run(scenario: Scenario, seed: u64, duration_s: f64) -> Report {
    let options = SimOptions {
        duration: Some(Duration::from_secs_f64(duration_s)),
        ..SimOptions::default()
    };
    let mut sim = Sim::new(scenario, seed, options).expect("scenario builds");
    sim.run_until(sim.end());
    sim.report()
}

#[test]
fn spectators_receive_snapshots_and_their_inputs_are_refused_without_closing_them() {
    let scenario = Scenario::builtin("spectators").expect("shipped");
    assert_eq!(scenario.topology.spectators_per_server, 8);
    assert_eq!(scenario.endpoint.max_permission_violations, 0);
    let report = run(scenario, 5, 4.0);
    let s = &report.sessions;
    assert_eq!(s.clients_joined, s.clients, "{report}");
    assert!(s.disconnects.is_empty(), "nobody is closed: {report}");
    let t = &report.traffic;
    // Spectators watch: 8 of 32 clients, so about a quarter of the snapshots.
    assert!(t.spectator_snapshots_received > 0, "{report}");
    assert!(
        t.spectator_snapshots_received * 5 > t.snapshots_received,
        "{report}"
    );
    // Every spectator input that arrived was refused and none delivered; players' were.
    assert!(t.spectator_inputs_sent > 100, "{report}");
    assert!(t.refused_not_permitted > 0, "{report}");
    assert!(t.refused_not_permitted <= t.spectator_inputs_sent, "{report}");
    assert!(
        t.inputs_received + t.refused_not_permitted <= t.inputs_sent,
        "{report}"
    );
    assert_eq!(t.refused_rate_limited, 0, "{report}");
    assert_eq!(t.send_errors, 0, "{report}");
    // Reported to the server application at most once per session and tick.
    assert!(
        t.refusal_events > 0 && t.refusal_events <= t.refused_not_permitted,
        "{report}"
    );
    assert!(report.to_string().contains("not permitted"), "{report}");
}

#[test]
fn with_the_default_violation_limit_spectators_are_closed_with_permission_denied() {
    let mut scenario = Scenario::builtin("spectators").expect("shipped");
    scenario.endpoint.max_permission_violations = 8;
    let report = run(scenario, 5, 3.0);
    let closed = |side: &str| {
        let key = format!("{side}/PERMISSION_DENIED");
        report.sessions.disconnects.get(&key).copied().unwrap_or(0)
    };
    // Each spectator session is closed, seen from both sides; players are not.
    assert!(closed("server") >= 8, "{report}");
    assert!(closed("client") >= 8, "{report}");
    let others: u64 = report.sessions.disconnects.values().sum::<u64>() - closed("server") - closed("client");
    assert_eq!(others, 0, "{report}");
    assert!(report.traffic.refused_not_permitted >= 8 * 8 / 2, "{report}");
}
