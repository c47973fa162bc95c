//! The operator surface of the real binaries: `tickwire-gs` and `tickwire-vs` started as
//! processes on loopback with `--admin`, scraped over real HTTP, their metrics checked by
//! Prometheus's own `promtool`, `/ready` following the play ticket, and SIGTERM draining.
//!
//! These tests wait on real processes, so they poll with deadlines; nothing asserts on how
//! long anything took.

use std::time::Duration;

use tickwire_apps::demo::run_clients;

mod common;

use common::*;

/// A game server attested by a verification server, both real processes with `--admin`:
/// `/ready` is 503 until the first play ticket and again once the VS has been gone longer
/// than a ticket's lifetime; a join and a rejection move their metrics; both scrapes pass
/// promtool; SIGTERM drains the game server (clients told `SERVER_SHUTDOWN`, exit code 0).
#[test]
fn a_game_server_and_its_verification_server_are_observable_and_drain() {
    let dir = TempDir::new("gs-vs");
    let issuer = dir.key("issuer.pem");
    let stranger = dir.key("stranger.pem");
    let vs_config = dir.file(
        "vs.toml",
        &format!(
            "issuer_key = \"{issuer}\"\nallow_gs_binary = [\"{GS}\"]\n\
             [verifier]\nallow_unenrolled = true\nticket_interval_ms = 300\nticket_lifetime_ms = 1500\n"
        ),
    );
    let vs_addr = free_udp_port();
    let vs_listen = vs_addr.to_string();
    let public = format!("{issuer}.pub");
    let (mut gs, gs_admin, gs_addr) = Process::game_server(&public, &vs_listen, &["--tpm", "simulated"]);

    // Before the first play ticket: serving, not ready.
    assert_eq!(get(gs_admin, "/health").0, 200);
    assert_eq!(get(gs_admin, "/ready").0, 503);
    eventually("the GS publishes its metrics", || {
        sample(&get(gs_admin, "/metrics").1, "tickwire_gs_admissions_paused") == Some(1.0)
    });

    let vs = Process::start(
        VS,
        "tickwire-vs",
        &[
            "--config",
            &vs_config,
            "--listen",
            &vs_listen,
            "--admin",
            "127.0.0.1:0",
        ],
    );
    let vs_admin = vs.address_after("admin on ");
    eventually("a VS is ready once bound", || get(vs_admin, "/ready").0 == 200);
    eventually("the first play ticket makes the GS ready", || {
        get(gs_admin, "/ready").0 == 200
    });

    // A client joins; another, with a ticket from an issuer the GS does not trust, is refused.
    let player = {
        let options = client_options(&issuer, UNTIL_DRAINED);
        std::thread::spawn(move || run_clients(gs_addr, 0, 1, &options).unwrap())
    };
    // The GS's own session to the VS is established too (role `game_server`), so the
    // player's join is told apart by its role: two sessions, two handshakes timed.
    eventually("the join shows in the GS's metrics", || {
        let text = get(gs_admin, "/metrics").1;
        sample(&text, "tickwire_sessions_established_by_role{role=\"player\"}") == Some(1.0)
            && sample(
                &text,
                "tickwire_sessions_established_by_role{role=\"game_server\"}",
            ) == Some(1.0)
            && sample(&text, "tickwire_sessions{state=\"established\"}") == Some(2.0)
            && sample(&text, "tickwire_handshake_duration_seconds_count") >= Some(2.0)
    });
    let intruder = {
        let options = client_options(&stranger, Duration::from_secs(2));
        std::thread::spawn(move || run_clients(gs_addr, 1, 1, &options).unwrap())
    };
    eventually("the rejection shows with its reason", || {
        let text = get(gs_admin, "/metrics").1;
        sum_of(
            &text,
            "tickwire_handshakes_total",
            &["outcome=\"rejected\"", "reason=\"ticket_"],
        ) >= 1.0
    });
    let refused = intruder.join().unwrap();
    assert!(!refused[0].joined, "{:?}", refused[0]);

    let gs_text = get(gs_admin, "/metrics").1;
    for series in [
        "tickwire_gs_admissions_paused",
        "tickwire_gs_receipts_pending",
        "tickwire_tick_lateness_seconds_count",
        "tickwire_tick_stage_duration_seconds_count{stage=\"simulate\"}",
    ] {
        assert!(sample(&gs_text, series).is_some(), "{series} missing:\n{gs_text}");
    }
    assert!(sum_of(&gs_text, "tickwire_udp_bytes_total", &["direction=\"rx\""]) > 0.0);
    assert!(sum_of(&gs_text, "tickwire_gs_play_tickets_received_total", &[]) >= 1.0);
    // The VS publishes its figures periodically: wait for the snapshot after the join.
    eventually("the VS's metrics show the GS's join and its tickets", || {
        let vs_text = get(vs_admin, "/metrics").1;
        sum_of(&vs_text, "tickwire_vs_joins_total", &["result=\"accepted\""]) >= 1.0
            && sum_of(&vs_text, "tickwire_vs_tickets_issued_total", &["kind=\"play\""]) >= 1.0
            && sample(&vs_text, "tickwire_vs_game_servers_authorised") == Some(1.0)
    });
    let vs_text = get(vs_admin, "/metrics").1;
    promtool_accepts(&gs_text, "game server");
    promtool_accepts(&vs_text, "verification server");

    // The VS goes away for longer than a ticket lives: admissions pause, /ready says so.
    drop(vs);
    eventually(
        "a VS outage longer than the ticket lifetime makes the GS unready",
        || get(gs_admin, "/ready").0 == 503,
    );
    assert_eq!(get(gs_admin, "/health").0, 200, "still serving its sessions");

    // SIGTERM: the client is told SERVER_SHUTDOWN and the process exits 0.
    gs.signal("TERM");
    assert_eq!(gs.wait_exit(), Some(0), "a drain exits 0");
    let played = player.join().unwrap();
    assert!(played[0].joined);
    let ended = played[0].disconnected.as_deref().unwrap_or("still connected");
    assert!(ended.contains("SERVER_SHUTDOWN"), "the client was told: {ended}");
}

/// A verification server alone: SIGTERM drains it and it exits 0; `/health` is 200 before.
#[test]
fn a_verification_server_drains_on_sigterm() {
    let dir = TempDir::new("vs");
    let issuer = dir.key("issuer.pem");
    let mut vs = Process::start(
        VS,
        "tickwire-vs",
        &[
            "--issuer-key",
            &issuer,
            "--allow-gs-binary",
            GS,
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
        ],
    );
    let admin = vs.address_after("admin on ");
    assert_eq!(get(admin, "/health").0, 200);
    vs.signal("TERM");
    assert_eq!(vs.wait_exit(), Some(0));
}

/// A verification server killed with SIGKILL and restarted on its store, once while its game
/// server joins and once right after a revocation with digests flowing: what it promised
/// survives (the store holds its challenge nonces and receipts), its game server rejoins
/// within the starvation timeout, and the client session on the game server never ends.
#[test]
fn a_verification_server_killed_and_restarted_on_its_store_forgets_nothing() {
    let dir = TempDir::new("restart");
    let issuer = dir.key("issuer.pem");
    let store = dir.0.join("vs.db").display().to_string();
    const TOKEN: &str = "operator-token-0123456789";
    let token_file = dir.file("token", &format!("{TOKEN}\n"));
    let vs_config = dir.file(
        "vs.toml",
        &format!(
            "issuer_key = \"{issuer}\"\nallow_gs_binary = [\"{GS}\"]\nstore = \"{store}\"\n\
             admin_token_file = \"{token_file}\"\n[verifier]\nallow_unenrolled = true\nticket_interval_ms = 300\nticket_lifetime_ms = 3000\n"
        ),
    );
    let vs_addr = free_udp_port();
    let vs_listen = vs_addr.to_string();
    // The same token key at every start: the restarted VS resets the game server's link to
    // the killed one at its next packet, instead of leaving it to its heartbeat timeout.
    let token_key = dir.path("vs-token.key");
    let vs_args = [
        "--config",
        &vs_config,
        "--listen",
        &vs_listen,
        "--admin",
        "127.0.0.1:0",
        "--token-key-file",
        &token_key,
    ];
    let vs = Process::start(VS, "tickwire-vs", &vs_args);
    vs.address_after("admin on ");
    let public = format!("{issuer}.pub");
    let (mut gs, gs_admin, gs_addr) = Process::game_server(&public, &vs_listen, &[]);
    // The first kill lands while the game server is connecting and joining.
    drop(vs);
    let vs = Process::start(VS, "tickwire-vs", &vs_args);
    let vs_admin = vs.address_after("admin on ");
    // By the restarted VS: a ticket from the first, had it come before the kill, would make
    // the GS ready for a while on a dead link.
    eventually("the GS joins the restarted VS", || {
        game_servers_authorised(vs_admin) == Some(1.0)
    });
    eventually("the GS is admitted", || get(gs_admin, "/ready").0 == 200);
    let player = {
        let options = client_options(&issuer, UNTIL_DRAINED);
        std::thread::spawn(move || run_clients(gs_addr, 0, 1, &options).unwrap())
    };
    eventually("a receipt is signed", || {
        sum_of(
            &get(vs_admin, "/metrics").1,
            "tickwire_vs_receipts_signed_total",
            &[],
        ) >= 1.0
    });
    // An operator revokes a client: refused without the token, done with it.
    let revoke = "/v1/revocations/client/100";
    assert_eq!(request(vs_admin, "POST", revoke, None).0, 401);
    assert_eq!(
        request(vs_admin, "POST", revoke, Some("wrong-token-0123456789")).0,
        401
    );
    let (status, body) = request(vs_admin, "POST", revoke, Some(TOKEN));
    assert_eq!(status, 200, "{body}");
    let listed = request(vs_admin, "GET", "/v1/revocations", Some(TOKEN)).1;
    assert!(listed.contains("\"client_id\":100"), "{listed}");
    let receipts = request(vs_admin, "GET", "/v1/game-servers/42/receipts", Some(TOKEN)).1;
    assert!(
        receipts.contains("\"receipt\""),
        "the audit trail lists receipts: {receipts}"
    );

    drop(vs); // SIGKILL: no drain, nothing flushed but what was committed
    {
        let mut kept = tickwire_apps::store::Store::open(std::path::Path::new(&store)).unwrap();
        let state = kept.load_verifier(0).unwrap();
        assert!(!state.nonces.is_empty(), "challenge nonces are durable");
        assert!(!state.receipts.is_empty(), "signed receipts are durable");
        assert_eq!(
            state.revocations,
            [tickwire_core::vs::Revocation::Client { client_id: 100 }],
            "the revocation is durable"
        );
    }
    let vs = Process::start(VS, "tickwire-vs", &vs_args);
    let vs_admin = vs.address_after("admin on ");
    eventually("the GS rejoins the restarted VS", || {
        game_servers_authorised(vs_admin) == Some(1.0)
    });
    eventually("and is admitting again", || get(gs_admin, "/ready").0 == 200);
    let listed = request(vs_admin, "GET", "/v1/revocations", Some(TOKEN)).1;
    assert!(
        listed.contains("\"client_id\":100"),
        "still in force after the restart: {listed}"
    );
    let servers = request(vs_admin, "GET", "/v1/game-servers", Some(TOKEN)).1;
    assert!(servers.contains("\"authorised\":[{"), "{servers}");
    let gs_text = get(gs_admin, "/metrics").1;
    assert_eq!(
        sum_of(&gs_text, "tickwire_gs_receipts_total", &["result=\"rejected\""]),
        0.0
    );
    assert_eq!(
        sum_of(&gs_text, "tickwire_gs_starvation_closed_sessions_total", &[]),
        0.0
    );
    // The link to the killed VS ended with the restarted one's stateless reset (a transport
    // error, "reset by peer"), never with the heartbeat timeout.
    assert!(
        sum_of(
            &gs_text,
            "tickwire_disconnections_total",
            &["reason=\"transport_error\""]
        ) >= 1.0,
        "{gs_text}"
    );
    assert_eq!(
        sum_of(
            &gs_text,
            "tickwire_disconnections_total",
            &["reason=\"heartbeat_timeout\""]
        ),
        0.0,
        "{gs_text}"
    );

    gs.signal("TERM");
    assert_eq!(gs.wait_exit(), Some(0));
    let played = player.join().unwrap();
    let ended = played[0].disconnected.as_deref().unwrap_or("still connected");
    assert!(
        ended.contains("SERVER_SHUTDOWN"),
        "the session lasted until the drain: {ended}"
    );
}

/// A second signal during a drain exits at once, with code 130. The game server's drain
/// lasts while its connection attempt to an absent verification server closes (QUIC's
/// closing period, three probe timeouts at the initial RTT: seconds).
#[test]
fn a_second_signal_exits_at_once() {
    let dir = TempDir::new("twice");
    let issuer = dir.key("issuer.pem");
    let public = format!("{issuer}.pub");
    let absent_vs = free_udp_port().to_string();
    let (mut gs, admin, _) = Process::game_server(&public, &absent_vs, &["--drain-timeout-ms", "60000"]);
    gs.signal("TERM");
    eventually("the drain starts", || get(admin, "/health").0 == 503);
    gs.signal("INT");
    assert_eq!(gs.wait_exit(), Some(130));
}

/// Two verification-server instances sharing the issuer key: the game server fails over from
/// the first, killed, to the second within the starvation timeout and keeps its client.
#[test]
fn a_game_server_fails_over_to_a_second_verification_server() {
    let dir = TempDir::new("failover");
    let issuer = dir.key("issuer.pem");
    let vs_config = dir.file(
        "vs.toml",
        &format!(
            "issuer_key = \"{issuer}\"\nallow_gs_binary = [\"{GS}\"]\n\
             [verifier]\nallow_unenrolled = true\nticket_interval_ms = 300\nticket_lifetime_ms = 3000\n"
        ),
    );
    let start_vs = || {
        let vs = Process::start(
            VS,
            "tickwire-vs",
            &[
                "--config",
                &vs_config,
                "--listen",
                "127.0.0.1:0",
                "--admin",
                "127.0.0.1:0",
            ],
        );
        let admin = vs.address_after("admin on ");
        let addr = vs.address_after("listening on ");
        (vs, admin, addr.to_string())
    };
    let (first, _, first_addr) = start_vs();
    let (_second, second_admin, second_addr) = start_vs();
    let public = format!("{issuer}.pub");
    let (mut gs, gs_admin, gs_addr) =
        Process::game_server(&public, &first_addr, &["--vs-failover", &second_addr]);
    eventually("the GS is admitted by the first VS", || {
        get(gs_admin, "/ready").0 == 200
    });
    let player = {
        let options = client_options(&issuer, UNTIL_DRAINED);
        std::thread::spawn(move || run_clients(gs_addr, 0, 1, &options).unwrap())
    };
    eventually("the client joins", || {
        sample(
            &get(gs_admin, "/metrics").1,
            "tickwire_sessions_established_by_role{role=\"player\"}",
        ) == Some(1.0)
    });

    drop(first); // SIGKILL
    eventually("the GS joins the second VS", || {
        game_servers_authorised(second_admin) == Some(1.0)
    });
    eventually("and admits again", || get(gs_admin, "/ready").0 == 200);
    let gs_text = get(gs_admin, "/metrics").1;
    assert_eq!(
        sum_of(&gs_text, "tickwire_gs_starvation_closed_sessions_total", &[]),
        0.0
    );

    gs.signal("TERM");
    assert_eq!(gs.wait_exit(), Some(0));
    let played = player.join().unwrap();
    let ended = played[0].disconnected.as_deref().unwrap_or("still connected");
    assert!(
        ended.contains("SERVER_SHUTDOWN"),
        "the session lasted until the drain: {ended}"
    );
}

/// `--webtransport-cert-json`: the game server writes the hashes browsers pin (one SHA-256,
/// 32 bytes in base64) and an expiry at most 14 days away, prints the hash, and exposes the
/// time left as a metric.
#[test]
fn a_game_server_publishes_its_webtransport_certificate_hash() {
    use base64::Engine as _;
    let dir = TempDir::new("webtransport-cert");
    let issuer = dir.key("issuer.pem");
    let json = dir.path("cert.json");
    let gs = Process::start(
        GS,
        "tickwire-gs",
        &[
            "--issuer-key",
            &format!("{issuer}.pub"),
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--webtransport-cert-json",
            &json,
        ],
    );
    let admin = gs.address_after("admin on ");
    gs.address_after("listening on ");
    // Written before the server listens.
    let text = std::fs::read_to_string(&json).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let hashes = doc["server_certificate_hashes"].as_array().unwrap();
    assert_eq!(hashes.len(), 1, "{text}");
    assert_eq!(hashes[0]["algorithm"], "sha-256");
    let hash = base64::engine::general_purpose::STANDARD
        .decode(hashes[0]["value"].as_str().unwrap())
        .unwrap();
    assert_eq!(hash.len(), 32);
    let not_after_ms = doc["not_after_unix_ms"].as_u64().unwrap();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(
        not_after_ms > now_ms && not_after_ms - now_ms <= 14 * 24 * 3600 * 1000,
        "{text}"
    );

    let metric = "tickwire_webtransport_certificate_expiry_seconds";
    let scrape = get(admin, "/metrics").1;
    let left = sample(&scrape, metric).unwrap_or_else(|| panic!("no {metric}:\n{scrape}"));
    assert!(left > 0.0 && left <= 14.0 * 24.0 * 3600.0, "{left}");
    promtool_accepts(&scrape, "tickwire-gs with a WebTransport certificate");
}
