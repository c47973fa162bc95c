//! The exposition `render` produces: expected lines, and `promtool check metrics` on a fully
//! populated snapshot.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use tickwire_admin::{render, Format, Readiness, ServerKind, Snapshot};
use tickwire_core::stats::{
    DatagramStats, EndpointStats, LimiterStats, ReassemblyStats, RefusalStats, TickStage, TickTimings,
};
use tickwire_core::vs::{GsAgentStats, GsStatus, VerifierStats};
use tickwire_core::{ReasonCode, Role};

fn ms(ms: f64) -> Duration {
    Duration::from_secs_f64(ms / 1e3)
}

/// A game server's snapshot with every field non-zero, every map non-empty, one unnamed
/// reason code, and a verifier too (a process never has both; the renderer does not care).
fn populated() -> Snapshot {
    let mut endpoint = EndpointStats {
        sessions_established: 40,
        webtransport_sessions_established: 3,
        sessions_live: 7,
        handshakes_pending: 2,
        sessions_by_role: BTreeMap::from([(Role::Player, 5), (Role::Spectator, 2)]),
        rejections: BTreeMap::from([
            (ReasonCode::RATE_LIMITED, 3),
            (ReasonCode::TICKET_EXPIRED, 1),
            (ReasonCode(4242), 2),
        ]),
        disconnections: BTreeMap::from([
            (ReasonCode::NORMAL, 30),
            (ReasonCode::HEARTBEAT_TIMEOUT, 3),
            (ReasonCode::PERMISSION_DENIED, 2),
        ]),
        connections_refused: 9,
        handshakes_rate_limited: 4,
        handshakes_refused_per_addr: 2,
        handshakes_evicted_no_hello: 1,
        responses_dropped: 5,
        datagrams: DatagramStats {
            received: 10_000,
            to_connections: 9_000,
            dropped: 500,
            stateless_responses: 300,
            initials: 200,
            initials_validated: 60,
            retries_sent: 80,
            retries_rate_limited: 10,
            retries_before_rejection: 5,
            refused: 9,
            accepted: 100,
            accept_failed: 11,
        },
        address_limiter: LimiterStats {
            allowed: 100,
            limited: 14,
            evictions: 1,
        },
        addresses_tracked: 12,
        ticks: 3_600,
        udp_rx_bytes: 1_200_000,
        udp_tx_datagrams: 12_000,
        udp_tx_bytes: 9_000_000,
        reassembly: ReassemblyStats {
            fragments_received: 100,
            messages_reassembled: 20,
            duplicate_fragments: 3,
            fragments_dropped: 28,
            dropped_too_large: 1,
            dropped_too_many_fragments: 2,
            dropped_inconsistent: 3,
            evicted_partial_limit: 4,
            evicted_memory_budget: 5,
            expired_timeout: 6,
            late_duplicates: 7,
        },
        message_limiter: LimiterStats {
            allowed: 5_000,
            limited: 17,
            evictions: 0,
        },
        message_refusals: RefusalStats {
            not_permitted: 21,
            rate_limited: 22,
        },
        ..EndpointStats::default()
    };
    for x in [0.05, 0.3, 1.0, 4.0, 40.0] {
        endpoint.rtt.observe(ms(x));
        endpoint.jitter.observe(ms(x / 10.0));
        endpoint.tick_lateness.observe(ms(x / 4.0));
    }
    endpoint.handshake_time.observe(ms(12.0));
    endpoint.handshake_time.observe(ms(3_000.0));
    let mut ticks = TickTimings::default();
    for (i, stage) in TickStage::ALL.into_iter().enumerate() {
        ticks.observe_stage(stage, ms(0.2 * (i + 1) as f64));
    }
    ticks.tick.observe(ms(3.0));
    Snapshot {
        kind: ServerKind::GameServer,
        endpoint,
        ticks: Some(ticks),
        gs_agent: Some(GsAgentStats {
            status: GsStatus::AdmissionsPaused,
            admissions_paused: true,
            ticket_age: Some(Duration::from_millis(61_500)),
            tickets_received: 12,
            sessions_closed_starved: 1,
            vs_sessions_lost: 2,
            vs_rejections: 3,
            quote_failures: 4,
            revocations_applied: 5,
            receipts_pending: 6,
            receipts_received: 7,
            receipts_rejected: 8,
            digests_abandoned: 9,
            untracked_inputs: 10,
        }),
        verifier: Some(VerifierStats {
            game_servers_authorised: 3,
            joins_accepted: 4,
            joins_rejected: BTreeMap::from([(ReasonCode::UNKNOWN_GAME_SERVER, 2)]),
            reattestations: 50,
            attestation_failures: BTreeMap::from([(ReasonCode::UNKNOWN_GAME_SERVER, 2)]),
            deauthorisations: BTreeMap::from([(ReasonCode::HEARTBEAT_TIMEOUT, 1)]),
            play_tickets_issued: 60,
            join_tickets_issued: 70,
            receipts_signed: 80,
            revocations_in_force: 2,
            revocations_dropped: 1,
            facts_dropped: 0,
        }),
    }
}

fn lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

#[test]
fn openmetrics_shows_counters_labels_and_histograms() {
    let text = render(&populated(), Readiness::Ready, Format::OpenMetrics);
    println!("{text}");
    let lines = lines(&text);
    for expected in [
        "# TYPE tickwire info",
        "tickwire_info{kind=\"game_server\"} 1",
        "tickwire_ready 1",
        "tickwire_draining 0",
        "# TYPE tickwire_ticks counter",
        "tickwire_ticks_total 3600",
        "tickwire_handshakes_total{outcome=\"established\"} 40",
        "tickwire_sessions_established_total{carrier=\"native\"} 37",
        "tickwire_sessions_established_total{carrier=\"webtransport\"} 3",
        "tickwire_handshakes_total{outcome=\"rejected\",reason=\"rate_limited\"} 3",
        "tickwire_handshakes_total{outcome=\"rejected\",reason=\"4242\"} 2",
        "tickwire_udp_bytes_total{direction=\"tx\"} 9000000",
        "tickwire_retry_packets_sent_total{cause=\"address_validation\"} 65",
        "tickwire_connections_refused_total{cause=\"pending_limit\"} 7",
        "tickwire_sessions_established_by_role{role=\"admin\"} 0",
        "tickwire_message_refusals_total{cause=\"not_permitted\"} 21",
        "tickwire_message_refusals_total{cause=\"rate_limited\"} 22",
        "tickwire_disconnections_total{reason=\"permission_denied\"} 2",
        "# TYPE tickwire_rtt_seconds histogram",
        "# UNIT tickwire_rtt_seconds seconds",
        "tickwire_rtt_seconds_bucket{le=\"0.0001\"} 1",
        "tickwire_rtt_seconds_bucket{le=\"0.001\"} 3",
        "tickwire_rtt_seconds_bucket{le=\"+Inf\"} 5",
        "tickwire_rtt_seconds_count 5",
        "tickwire_handshake_duration_seconds_bucket{le=\"2.5\"} 1",
        "tickwire_tick_stage_duration_seconds_count{stage=\"extract\"} 1",
        "tickwire_gs_status{status=\"admissions_paused\"} 1",
        "tickwire_gs_status{status=\"authorised\"} 0",
        "tickwire_gs_play_ticket_age_seconds 61.5",
        "tickwire_vs_joins_total{result=\"rejected\",reason=\"unknown_game_server\"} 2",
        "tickwire_vs_tickets_issued_total{kind=\"join\"} 70",
        "# EOF",
    ] {
        assert!(lines.contains(&expected), "missing {expected:?}");
    }
    let sum = lines
        .iter()
        .find_map(|l| l.strip_prefix("tickwire_rtt_seconds_sum "))
        .expect("the RTT histogram has a sum");
    let sum: f64 = sum.parse().expect("the sum is a number");
    assert!((sum - 0.04535).abs() < 1e-9, "sum {sum}");
}

#[test]
fn optional_parts_render_only_when_present() {
    let snapshot = Snapshot::idle(ServerKind::VerificationServer);
    let text = render(&snapshot, Readiness::Draining, Format::PrometheusText);
    assert!(text.contains("tickwire_info{kind=\"verification_server\"} 1\n"));
    assert!(text.contains("tickwire_draining 1\n"));
    assert!(text.contains("tickwire_rtt_seconds_count 0\n"));
    for absent in ["tickwire_tick_duration", "tickwire_gs_", "tickwire_vs_", "# EOF"] {
        assert!(!text.contains(absent), "{absent} rendered");
    }
    let mut agent = populated().gs_agent;
    if let Some(agent) = &mut agent {
        agent.ticket_age = None;
    }
    let text = render(
        &Snapshot {
            gs_agent: agent,
            ..snapshot
        },
        Readiness::NotReady,
        Format::OpenMetrics,
    );
    assert!(text.contains("tickwire_gs_status{status=\"admissions_paused\"} 1\n"));
    assert!(!text.contains("tickwire_gs_play_ticket_age"));
}

#[test]
fn unnamed_reason_codes_are_bounded() {
    let mut snapshot = Snapshot::idle(ServerKind::GameServer);
    snapshot.endpoint.disconnections = (1000..2000).map(|code| (ReasonCode(code), 1)).collect();
    snapshot.endpoint.disconnections.insert(ReasonCode::KICKED, 4);
    let text = render(&snapshot, Readiness::Ready, Format::OpenMetrics);
    let series: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("tickwire_disconnections_total{"))
        .collect();
    assert_eq!(series.len(), 1 + 8 + 1, "{series:#?}");
    assert!(series.contains(&"tickwire_disconnections_total{reason=\"kicked\"} 4"));
    assert!(series.contains(&"tickwire_disconnections_total{reason=\"1007\"} 1"));
    assert!(series.contains(&"tickwire_disconnections_total{reason=\"other\"} 992"));
}

/// `promtool check metrics` (the Prometheus text format linter) on a fully populated
/// snapshot and on an idle one (families with no sample): no parse error, no lint complaint.
/// Fails without promtool when `CI` is set; skips with a note otherwise.
#[test]
fn promtool_accepts_the_exposition() {
    let idle = Snapshot {
        verifier: Some(VerifierStats::default()),
        ..Snapshot::idle(ServerKind::VerificationServer)
    };
    for (what, snapshot) in [("populated", populated()), ("idle", idle)] {
        let text = render(&snapshot, Readiness::Ready, Format::PrometheusText);
        let child = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match child {
            Ok(child) => child,
            Err(e) if std::env::var_os("CI").is_none() => {
                eprintln!("skipped: promtool not runnable ({e}); install the `prometheus` package");
                return;
            }
            Err(e) => panic!("promtool not runnable with CI set: {e}"),
        };
        child
            .stdin
            .take()
            .expect("stdin is piped")
            .write_all(text.as_bytes())
            .expect("promtool reads its stdin");
        let output = child.wait_with_output().expect("promtool runs");
        let complaints = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            output.status.success() && complaints.trim().is_empty(),
            "promtool check metrics on the {what} snapshot: {}\n{complaints}\n--- input ---\n{text}",
            output.status
        );
    }
}

/// The largest exposition there can be (every reason map full of every code, both optional
/// parts) stays small enough to answer in one go.
#[test]
fn the_largest_exposition_is_bounded() {
    let every_code: BTreeMap<ReasonCode, u64> = (0..=u16::MAX).map(|code| (ReasonCode(code), 1)).collect();
    let mut snapshot = populated();
    snapshot.endpoint.rejections = every_code.clone();
    snapshot.endpoint.disconnections = every_code.clone();
    if let Some(verifier) = &mut snapshot.verifier {
        verifier.joins_rejected = every_code.clone();
        verifier.attestation_failures = every_code.clone();
        verifier.deauthorisations = every_code;
    }
    for format in [Format::OpenMetrics, Format::PrometheusText] {
        let len = render(&snapshot, Readiness::Ready, format).len();
        assert!(len < 64 * 1024, "{format:?}: {len} bytes");
    }
}
