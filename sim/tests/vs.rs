//! The verification server under timing faults, in the simulator: the failures of
//! `PROTOCOL.md` §8.10 (VS slow at startup, tickets delayed, outages shorter and longer than the starvation
//! timeout, 500 ms RTT, a VS restart), each on a cut-down copy of the shipped `vs-outage`
//! scenario with one fault. Attestation refusals, which do not depend on timing, are tested in
//! `core/tests/vs.rs`.

use std::time::Duration;

use tickwire_sim::engine::{Sim, SimOptions};
use tickwire_sim::report::{Report, VsReport};
use tickwire_sim::scenario::{Direction, Fault, Scenario, Target};

const CLIENTS: usize = 6;

/// `vs-outage` with two servers of [`CLIENTS`] clients, the 500 ms RTT VS link, and `faults`.
fn scenario(faults: Vec<Fault>) -> Scenario {
    let mut scenario = Scenario::builtin("vs-outage").unwrap();
    scenario.topology.clients_per_server = CLIENTS;
    scenario.faults = faults;
    scenario
}

fn vs_cut(at_s: f64, heal_at_s: f64, direction: Direction) -> Fault {
    Fault::Partition {
        target: Target::Vs,
        at_s,
        heal_at_s: Some(heal_at_s),
        direction,
    }
}

fn run(scenario: Scenario, duration_s: f64) -> (Report, VsReport) {
    let options = SimOptions {
        duration: Some(Duration::from_secs_f64(duration_s)),
        ..SimOptions::default()
    };
    let mut sim = Sim::new(scenario, 6, options).expect("scenario builds");
    sim.run_until(sim.end());
    let report = sim.report();
    let vs = report.vs.clone().expect("the scenario has a VS");
    (report, vs)
}

/// Every client joined once and kept its session; every server is authorised; nothing failed.
fn assert_undisturbed(report: &Report, vs: &VsReport) {
    let s = &report.sessions;
    assert_eq!(s.clients_joined, s.clients, "{report}");
    assert_eq!(s.joins, s.clients as u64, "{report}");
    assert!(s.disconnects.is_empty(), "{report}");
    assert_eq!(s.false_disconnects, 0, "{report}");
    assert_eq!(vs.sessions_closed_starved, 0, "{report}");
    assert_eq!(vs.authorised_at_end, report.servers, "{report}");
    assert!(vs.failures.is_empty(), "{report}");
    assert!(vs.join_rejections.is_empty(), "{report}");
    assert_eq!(vs.digests_abandoned, 0, "{report}");
    assert!(vs.receipts_received > 0, "{report}");
}

#[test]
fn at_500ms_rtt_to_the_vs_there_are_no_false_timeouts() {
    let (report, vs) = run(scenario(Vec::new()), 40.0);
    assert_undisturbed(&report, &vs);
    assert_eq!(vs.joins, report.servers as u64, "{report}");
    assert_eq!(vs.vs_lost, 0, "{report}");
    assert!(vs.deauthorised.is_empty(), "{report}");
    assert_eq!(vs.admissions_paused, 0, "{report}");
    assert!(vs.reattestations >= 2 * report.servers as u64, "{report}");
    // Renewals every 2 s arrive every 2 s, give or take the link's jitter.
    assert!(vs.max_ticket_gap_ms < 2_100.0, "{report}");
    // The first ticket takes the QUIC + tickwire handshake and the join: a few RTTs.
    assert!(vs.first_ticket_ms.max < 3_000.0, "{report}");
}

#[test]
fn a_vs_outage_shorter_than_starvation_loses_no_session() {
    let (report, vs) = run(scenario(vec![vs_cut(10.0, 14.0, Direction::Both)]), 30.0);
    assert_undisturbed(&report, &vs);
    assert!(vs.max_ticket_gap_ms >= 4_000.0, "{report}");
}

#[test]
fn tickets_delayed_5s_leave_sessions_running() {
    let (report, vs) = run(scenario(vec![vs_cut(10.0, 15.0, Direction::Downlink)]), 30.0);
    assert_undisturbed(&report, &vs);
    assert!(vs.max_ticket_gap_ms >= 5_000.0, "{report}");
}

#[test]
fn a_vs_outage_longer_than_starvation_closes_sessions_with_a_reason_then_recovers() {
    let (report, vs) = run(scenario(vec![vs_cut(10.0, 26.0, Direction::Both)]), 45.0);
    let s = &report.sessions;
    let clients = s.clients as u64;
    // Admissions paused when the tickets ran out, then starvation closed every session.
    assert!(vs.admissions_paused >= report.servers as u64, "{report}");
    assert_eq!(vs.sessions_closed_starved, clients, "{report}");
    assert_eq!(
        s.disconnects.get("client/NOT_AUTHORISED"),
        Some(&clients),
        "{report}"
    );
    assert_eq!(s.false_disconnects, 0, "{report}");
    // Clients retrying while the servers were starved were told why.
    assert!(
        s.rejected.get("NOT_AUTHORISED").is_some_and(|n| *n > 0),
        "{report}"
    );
    // After the heal: tickets again, admissions resumed, every client back.
    assert!(vs.resumed >= report.servers as u64, "{report}");
    assert_eq!(vs.authorised_at_end, report.servers, "{report}");
    assert_eq!(s.reconnects, clients, "{report}");
    assert!(vs.failures.is_empty(), "{report}");
}

#[test]
fn a_vs_that_never_answers_at_startup_fails_the_game_servers_fast_and_clearly() {
    let mut scenario = scenario(vec![vs_cut(0.0, 60.0, Direction::Both)]);
    scenario.vs.as_mut().unwrap().game_server.first_ticket_timeout_ms = 20_000;
    let (report, vs) = run(scenario, 25.0);
    assert_eq!(report.sessions.clients_joined, 0, "{report}");
    assert!(
        report
            .sessions
            .rejected
            .get("NOT_AUTHORISED")
            .is_some_and(|n| *n > 0),
        "{report}"
    );
    assert_eq!(vs.failures.len(), report.servers, "{report}");
    assert!(
        vs.failures
            .iter()
            .all(|f| f.contains("first play ticket timed out after 20000 ms")),
        "{report}"
    );
    assert_eq!(vs.tickets_received, 0, "{report}");
}

#[test]
fn a_vs_restart_is_survived_by_reattesting() {
    let crash = Fault::Crash {
        target: Target::Vs,
        at_s: 10.0,
        restart_at_s: Some(11.0),
    };
    let (report, vs) = run(scenario(vec![crash]), 30.0);
    assert_undisturbed(&report, &vs);
    // Each game server joined the fresh VS again.
    assert_eq!(vs.joins, 2 * report.servers as u64, "{report}");
}

#[test]
fn a_busy_game_server_keeps_its_vs_session_through_an_outage() {
    // 40 sessions: 32 transcript digests a second (the per-heartbeat cap) go unanswered
    // behind the faults, and must not reach the VS as one burst when they heal.
    let mut scenario = scenario(vec![
        vs_cut(10.0, 14.0, Direction::Both),
        vs_cut(20.0, 25.0, Direction::Downlink),
    ]);
    scenario.topology.servers = 1;
    scenario.topology.clients_per_server = 40;
    let (report, vs) = run(scenario, 35.0);
    assert_undisturbed(&report, &vs);
    assert!(!vs.deauthorised.contains_key("RATE_LIMITED"), "{report}");
    // Five silent seconds downstream are the endpoint's heartbeat timeout: the game server may
    // drop that VS session once and re-attest, without its clients noticing.
    assert!(vs.vs_lost <= 1, "{report}");
}

#[test]
fn the_shipped_vs_outage_scenario_does_what_it_describes() {
    let scenario = Scenario::builtin("vs-outage").unwrap();
    let duration = scenario.duration_s;
    let (report, vs) = run(scenario, duration);
    let s = &report.sessions;
    let clients = s.clients as u64;
    assert_eq!(s.clients_joined, s.clients, "{report}");
    assert_eq!(s.false_disconnects, 0, "{report}");
    // Only the 16 s outage costs sessions: each closed once, with the reason, and rejoined.
    assert_eq!(vs.sessions_closed_starved, clients, "{report}");
    assert_eq!(
        s.disconnects.get("client/NOT_AUTHORISED"),
        Some(&clients),
        "{report}"
    );
    assert_eq!(s.reconnects, clients, "{report}");
    assert_eq!(vs.authorised_at_end, report.servers, "{report}");
    assert!(vs.failures.is_empty(), "{report}");
    assert_eq!(vs.digests_abandoned, 0, "{report}");
    // The VS never had to shed a game server for flooding it.
    assert!(!vs.deauthorised.contains_key("RATE_LIMITED"), "{report}");
}

#[test]
fn a_game_server_whose_clock_is_45s_off_is_refused_for_skew_and_the_other_is_not() {
    let skew = Fault::ClockOffset {
        target: Target::Server(0),
        at_s: 0.0,
        offset_ms: 45_000,
    };
    let mut scenario = scenario(vec![skew]);
    scenario.vs.as_mut().unwrap().game_server.first_ticket_timeout_ms = 10_000;
    let (report, vs) = run(scenario, 12.0);
    assert!(
        vs.join_rejections.get("JOIN_CLOCK_SKEW").is_some_and(|n| *n > 0),
        "{report}"
    );
    assert_eq!(vs.authorised_at_end, 1, "{report}");
    assert_eq!(vs.failures.len(), 1, "{report}");
    assert_eq!(report.sessions.clients_joined, CLIENTS, "{report}");
}
