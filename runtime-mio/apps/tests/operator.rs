//! The operator surface of the real binaries: `tickwire-gs` and `tickwire-vs` started as
//! processes on loopback with `--admin`, scraped over real HTTP, their metrics checked by
//! Prometheus's own `promtool`, `/ready` following the play ticket, and SIGTERM draining.
//!
//! These tests wait on real processes, so they poll with deadlines; nothing asserts on how
//! long anything took.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tickwire_apps::demo::{demo_config, run_clients, ClientOptions, DEMO_GS_ID};

const GS: &str = env!("CARGO_BIN_EXE_tickwire-gs");
const VS: &str = env!("CARGO_BIN_EXE_tickwire-vs");

/// Longest wait for anything a test expects to happen.
const PATIENCE: Duration = Duration::from_secs(20);

/// A fresh directory for one test's files, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("tickwire-operator-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn file(&self, name: &str, contents: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        path.display().to_string()
    }

    /// A key pair at `name` (private) and `name.pub`.
    fn key(&self, name: &str) -> String {
        let path = self.0.join(name);
        tickwire_udp::os::generate_key_file(&path).unwrap();
        path.display().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A server process; killed when dropped.
struct Process {
    child: Child,
    lines: mpsc::Receiver<String>,
    name: &'static str,
}

impl Process {
    fn start(bin: &str, name: &'static str, args: &[&str]) -> Self {
        let mut child = Command::new(bin)
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines, name }
    }

    /// The address printed after `marker` on a stdout line (`… listening on ADDR …`).
    fn address_after(&self, marker: &str) -> SocketAddr {
        let deadline = Instant::now() + PATIENCE;
        while let Ok(line) = self
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            if let Some(rest) = line.split(marker).nth(1) {
                let addr = rest
                    .trim_start_matches("http://")
                    .split_whitespace()
                    .next()
                    .unwrap();
                return addr.parse().unwrap();
            }
        }
        panic!("{}: no line with {marker:?}", self.name);
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit; its exit code.
    fn wait_exit(&mut self) -> Option<i32> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(Instant::now() < deadline, "{} did not exit", self.name);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET path` over HTTP/1.0: `(status, body)`.
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    request(addr, "GET", path, None)
}

/// `method path` over HTTP/1.0, with a bearer `token` if given: `(status, body)`.
fn request(addr: SocketAddr, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let authorization = token.map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\n{authorization}Content-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, body)| body)
        .to_owned();
    (status, body)
}

/// Polls `probe` until it holds; panics with `what` after [`PATIENCE`].
fn eventually(what: &str, mut probe: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !probe() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The value of the sample named exactly `series` (name and labels as exposed).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            line.strip_prefix(series)?
                .strip_prefix(' ')?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
}

/// The sum of every sample of `name` whose labels contain all of `labels`.
fn sum_of(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|line| line.starts_with(&format!("{name}{{")) || line.starts_with(&format!("{name} ")))
        .filter(|line| labels.iter().all(|label| line.contains(label)))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// `promtool check metrics` accepts `text`. Without promtool, fails under CI and skips
/// otherwise (the README's test command installs it).
fn promtool_accepts(text: &str, what: &str) {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) if std::env::var_os("CI").is_none() => {
            eprintln!("promtool not found ({e}): skipping the exposition check of {what}");
            return;
        }
        Err(e) => panic!("promtool is required under CI (Debian package prometheus): {e}"),
    };
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success() && output.stdout.is_empty() && output.stderr.is_empty(),
        "promtool check metrics refused the {what} scrape:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A loopback UDP port free a moment ago.
fn free_udp_port() -> SocketAddr {
    UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

fn client_options(issuer: &str, duration: Duration) -> ClientOptions {
    ClientOptions {
        issuer: tickwire_udp::os::load_signing_key(std::path::Path::new(issuer)).unwrap(),
        gs_id: DEMO_GS_ID,
        config: demo_config(),
        duration,
        trusted_vs: None,
    }
}

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
    let mut gs = Process::start(
        GS,
        "tickwire-gs",
        &[
            "--issuer-key",
            &public,
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--vs",
            &vs_listen,
            "--tpm",
            "simulated",
        ],
    );
    let gs_admin = gs.address_after("admin on ");
    let gs_addr = gs.address_after("listening on ");

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
        let options = client_options(&issuer, Duration::from_secs(15));
        std::thread::spawn(move || run_clients(gs_addr, 0, 1, &options).unwrap())
    };
    eventually("the join shows in the GS's metrics", || {
        let text = get(gs_admin, "/metrics").1;
        sample(&text, "tickwire_sessions{state=\"established\"}") == Some(1.0)
            && sample(&text, "tickwire_handshake_duration_seconds_count") == Some(1.0)
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
    let vs_text = get(vs_admin, "/metrics").1;
    assert!(
        sum_of(&vs_text, "tickwire_vs_joins_total", &["result=\"accepted\""]) >= 1.0,
        "{vs_text}"
    );
    assert!(sum_of(&vs_text, "tickwire_vs_tickets_issued_total", &["kind=\"play\""]) >= 1.0);
    assert_eq!(sample(&vs_text, "tickwire_vs_game_servers_authorised"), Some(1.0));
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
    let vs_args = [
        "--config",
        &vs_config,
        "--listen",
        &vs_listen,
        "--admin",
        "127.0.0.1:0",
    ];
    let vs = Process::start(VS, "tickwire-vs", &vs_args);
    vs.address_after("admin on ");
    let public = format!("{issuer}.pub");
    let mut gs = Process::start(
        GS,
        "tickwire-gs",
        &[
            "--issuer-key",
            &public,
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--vs",
            &vs_listen,
        ],
    );
    let gs_admin = gs.address_after("admin on ");
    let gs_addr = gs.address_after("listening on ");
    // The first kill lands while the game server is connecting and joining.
    drop(vs);
    let vs = Process::start(VS, "tickwire-vs", &vs_args);
    let vs_admin = vs.address_after("admin on ");
    eventually("the GS is admitted", || get(gs_admin, "/ready").0 == 200);
    let player = {
        let options = client_options(&issuer, Duration::from_secs(18));
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
        sample(
            &get(vs_admin, "/metrics").1,
            "tickwire_vs_game_servers_authorised",
        ) == Some(1.0)
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
    let mut gs = Process::start(
        GS,
        "tickwire-gs",
        &[
            "--issuer-key",
            &public,
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--vs",
            &absent_vs,
            "--drain-timeout-ms",
            "60000",
        ],
    );
    let admin = gs.address_after("admin on ");
    gs.address_after("listening on ");
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
    let mut gs = Process::start(
        GS,
        "tickwire-gs",
        &[
            "--issuer-key",
            &public,
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--vs",
            &first_addr,
            "--vs-failover",
            &second_addr,
        ],
    );
    let gs_admin = gs.address_after("admin on ");
    let gs_addr = gs.address_after("listening on ");
    eventually("the GS is admitted by the first VS", || {
        get(gs_admin, "/ready").0 == 200
    });
    let player = {
        let options = client_options(&issuer, Duration::from_secs(18));
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
        sample(
            &get(second_admin, "/metrics").1,
            "tickwire_vs_game_servers_authorised",
        ) == Some(1.0)
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
