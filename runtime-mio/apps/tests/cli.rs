//! The binaries refuse bad operator input with exit code 2 and a message naming the problem,
//! never a panic, and before serving anything: each case below must exit on its own (a server
//! that starts serving runs until signalled, and is killed as a failure after [`PATIENCE`]).

use std::net::UdpSocket;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const GS: &str = env!("CARGO_BIN_EXE_tickwire-gs");
const VS: &str = env!("CARGO_BIN_EXE_tickwire-vs");
const CLIENT: &str = env!("CARGO_BIN_EXE_tickwire-client");
const DEMO: &str = env!("CARGO_BIN_EXE_tickwire-demo");

/// Longer than any refusal takes on a loaded machine (they take milliseconds), far shorter than
/// any run.
const PATIENCE: Duration = Duration::from_secs(30);

mod common;

use common::TempDir;

struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `bin` with `args`, killing it after [`PATIENCE`] (and failing).
fn run(bin: &str, args: &[&str]) -> Outcome {
    let mut child = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > PATIENCE {
            child.kill().unwrap();
            let output = child.wait_with_output().unwrap();
            panic!(
                "{bin} {args:?} was still running after {PATIENCE:?}: it started serving\n\
                 stdout: {}\nstderr: {}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let output = child.wait_with_output().unwrap();
    Outcome {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Who reports the error: clap (its own multi-line format) or the binary (one line,
/// `<binary>: <message>`).
#[derive(Clone, Copy, PartialEq)]
enum By {
    Clap,
    Binary,
}

/// `bin args` exits with 2, its stderr names the problem (`expect`, case-insensitive), and
/// nothing panicked.
fn refuses(bin: &str, args: &[&str], by: By, expect: &str) {
    let outcome = run(bin, args);
    let name = Path::new(bin).file_name().unwrap().to_string_lossy();
    let case = format!("{name} {}", args.join(" "));
    assert_eq!(
        outcome.code,
        Some(2),
        "{case}: exit code\nstderr: {}",
        outcome.stderr
    );
    assert!(
        !outcome.stderr.contains("panicked"),
        "{case} panicked: {}",
        outcome.stderr
    );
    assert!(
        outcome.stderr.to_lowercase().contains(&expect.to_lowercase()),
        "{case}: stderr does not mention {expect:?}: {}",
        outcome.stderr
    );
    if by == By::Binary {
        let lines: Vec<&str> = outcome.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{case}: one line on stderr, got {lines:?}");
        assert!(lines[0].starts_with(&format!("{name}: ")), "{case}: {}", lines[0]);
    }
}

/// Every binary: `--seconds` must be a finite number of seconds in (0, a year].
#[test]
fn every_binary_refuses_durations_that_are_not_finite_positive_seconds() {
    let dir = TempDir::new("seconds");
    let issuer = dir.key("issuer.pem");
    for bin in [GS, VS, CLIENT, DEMO] {
        for seconds in ["inf", "nan", "-1", "0", "31536001", "ten"] {
            refuses(
                bin,
                &["--seconds", seconds, "--issuer-key", &issuer],
                By::Clap,
                "--seconds",
            );
        }
    }
}

#[test]
fn the_game_server_refuses_bad_options_and_files() {
    let dir = TempDir::new("gs");
    let nowhere_json = dir.path("nowhere/report.json");
    let issuer = dir.key("issuer.pem");
    let public = format!("{issuer}.pub");
    let missing = dir.path("missing.toml");
    let unknown = dir.file(
        "unknown.toml",
        "first_ticket_timeout_ms = 1000\ncolour = \"blue\"\n",
    );
    let invalid = dir.file("invalid.toml", "first_ticket_timeout_ms = 0\n");
    let not_a_key = dir.file("not-a-key.pem", "hello\n");
    let cases: Vec<(Vec<&str>, By, &str)> = vec![
        (
            vec!["--issuer-key", &public, "--gs-config", &missing],
            By::Binary,
            "--gs-config has no effect without --vs",
        ),
        (
            vec!["--issuer-key", &public, "--tpm", "simulated"],
            By::Binary,
            "--tpm has no effect without --vs",
        ),
        (
            vec![
                "--vs",
                "127.0.0.1:9",
                "--issuer-key",
                &public,
                "--gs-config",
                &missing,
            ],
            By::Binary,
            "missing.toml: No such file",
        ),
        (
            vec![
                "--vs",
                "127.0.0.1:9",
                "--issuer-key",
                &public,
                "--gs-config",
                &unknown,
            ],
            By::Binary,
            "unknown field `colour`",
        ),
        (
            vec![
                "--vs",
                "127.0.0.1:9",
                "--issuer-key",
                &public,
                "--gs-config",
                &invalid,
            ],
            By::Binary,
            "first_ticket_timeout_ms",
        ),
        (
            vec![
                "--vs",
                "127.0.0.1:9",
                "--issuer-key",
                &public,
                "--tpm",
                "device:/nonexistent/tpm",
            ],
            By::Binary,
            "TPM",
        ),
        (vec!["--issuer-key", &not_a_key], By::Binary, "not an Ed25519"),
        (vec!["--issuer-key", &missing], By::Binary, "No such file"),
        (
            vec!["--issuer-key", &public, "--token-key-file", &not_a_key],
            By::Binary,
            "not-a-key.pem: not a token key (64 hex digits)",
        ),
        (
            vec!["--issuer-key", &public, "--identity-key", &public],
            By::Binary,
            "--identity-key",
        ),
        (vec![], By::Binary, "no ticket issuer key"),
        (
            vec!["--issuer-key", &public, "--vs", "127.0.0.1:0"],
            By::Binary,
            "--vs 127.0.0.1:0",
        ),
        (
            vec!["--issuer-key", &public, "--insecure-demo-issuer-seed", "1"],
            By::Clap,
            "cannot be used with",
        ),
        (
            vec!["--issuer-key", &public, "--json", &nowhere_json],
            By::Binary,
            "does not exist",
        ),
    ];
    for (args, by, expect) in &cases {
        refuses(GS, args, *by, expect);
    }
}

#[test]
fn servers_refuse_a_port_in_use_before_serving() {
    let dir = TempDir::new("port");
    let issuer = dir.key("issuer.pem");
    let binary = dir.file("game-server-binary", "not really a binary, but it has a hash");
    let taken = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    refuses(
        GS,
        &["--issuer-key", &format!("{issuer}.pub"), "--listen", &addr],
        By::Binary,
        "in use",
    );
    refuses(
        VS,
        &[
            "--issuer-key",
            &issuer,
            "--allow-gs-binary",
            &binary,
            "--listen",
            &addr,
        ],
        By::Binary,
        "in use",
    );
}

#[test]
fn the_verification_server_refuses_bad_options_and_files() {
    let dir = TempDir::new("vs");
    let k2 = dir.path("k2.pem");
    let issuer = dir.key("issuer.pem");
    let binary = dir.file("game-server-binary", "a hash to allow");
    let missing = dir.path("missing.toml");
    let unknown = dir.file("unknown.toml", "allow_unenrolled = true\nflavour = 1\n");
    let invalid = dir.file("invalid.toml", "ticket_interval_ms = 0\n");
    let other_key_id = dir.file("key-id.toml", "key_id = 7\n");
    let nobody = dir.file("nobody.toml", "allow_unenrolled = false\n");
    let not_a_key = dir.file(
        "not-a-key.pem",
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    );
    let public = format!("{issuer}.pub");
    let nowhere_key = dir.path("nowhere/token.key");
    let cases: Vec<(Vec<&str>, By, &str)> = vec![
        (
            vec!["--issuer-key", &issuer, "--verifier-config", &missing],
            By::Binary,
            "missing.toml: No such file",
        ),
        (
            vec![
                "--issuer-key",
                &issuer,
                "--allow-gs-binary",
                &binary,
                "--token-key-file",
                &nowhere_key,
            ],
            By::Binary,
            "nowhere/token.key: No such file",
        ),
        (
            vec!["--issuer-key", &issuer, "--verifier-config", &unknown],
            By::Binary,
            "unknown field `flavour`",
        ),
        (
            vec!["--issuer-key", &issuer, "--verifier-config", &invalid],
            By::Binary,
            "ticket_interval_ms",
        ),
        (
            vec![
                "--issuer-key",
                &issuer,
                "--verifier-config",
                &other_key_id,
                "--allow-gs-binary",
                &binary,
            ],
            By::Binary,
            "key_id",
        ),
        (
            vec!["--issuer-key", &issuer, "--allow-gs-binary", &missing],
            By::Binary,
            "--allow-gs-binary",
        ),
        (
            vec!["--issuer-key", &issuer],
            By::Binary,
            "no game-server measurement",
        ),
        (
            vec![
                "--issuer-key",
                &issuer,
                "--verifier-config",
                &nobody,
                "--allow-gs-binary",
                &binary,
            ],
            By::Binary,
            "no game server is enrolled",
        ),
        (
            vec!["--issuer-key", &not_a_key, "--allow-gs-binary", &binary],
            By::Binary,
            "not an Ed25519",
        ),
        (
            vec!["--issuer-key", &public, "--allow-gs-binary", &binary],
            By::Binary,
            "private key",
        ),
        (
            vec!["--issuer-key", &missing, "--allow-gs-binary", &binary],
            By::Binary,
            "No such file",
        ),
        (
            vec!["--allow-gs-binary", &binary],
            By::Binary,
            "no ticket issuer key",
        ),
        (
            vec![
                "--issuer-key",
                &issuer,
                "--allow-gs-binary",
                &binary,
                "--identity-key",
                &missing,
            ],
            By::Binary,
            "--identity-key",
        ),
        (vec!["keygen", &issuer], By::Binary, "exists already"),
        (
            vec!["--listen", "127.0.0.1:0", "keygen", &k2],
            By::Clap,
            "cannot be used with",
        ),
    ];
    for (args, by, expect) in &cases {
        refuses(VS, args, *by, expect);
    }
}

#[test]
fn the_client_refuses_bad_options_and_files() {
    let dir = TempDir::new("client");
    let nowhere_json = dir.path("nowhere/report.json");
    let nowhere_ticket = dir.path("nowhere/ticket.bin");
    let issuer = dir.key("issuer.pem");
    let public = format!("{issuer}.pub");
    let missing = dir.path("missing.pem");
    let not_a_key = dir.file("not-a-key.pem", "hello\n");
    let ticket = dir.path("ticket.bin");
    let cases: Vec<(Vec<&str>, By, &str)> = vec![
        (vec![], By::Binary, "no ticket issuer key"),
        (
            vec!["--issuer-key", &issuer, "--server", "0.0.0.0:4433"],
            By::Binary,
            "--server 0.0.0.0:4433",
        ),
        (vec!["--issuer-key", &public], By::Binary, "private key"),
        (vec!["--issuer-key", &not_a_key], By::Binary, "not an Ed25519"),
        (vec!["--issuer-key", &missing], By::Binary, "No such file"),
        (
            vec!["--issuer-key", &issuer, "--clients", "0"],
            By::Clap,
            "--clients",
        ),
        (
            vec!["--issuer-key", &issuer, "--clients", "100000"],
            By::Clap,
            "--clients",
        ),
        (
            vec!["--issuer-key", &issuer, "--first", "18446744073709551615"],
            By::Binary,
            "--first",
        ),
        (
            vec![
                "--issuer-key",
                &issuer,
                "--write-ticket",
                &ticket,
                "--check-play-ticket",
            ],
            By::Clap,
            "cannot be used with",
        ),
        (
            vec!["--issuer-key", &issuer, "--json", &nowhere_json],
            By::Binary,
            "does not exist",
        ),
        (
            vec!["--issuer-key", &issuer, "--write-ticket", &nowhere_ticket],
            By::Binary,
            "does not exist",
        ),
    ];
    for (args, by, expect) in &cases {
        refuses(CLIENT, args, *by, expect);
    }
}

#[test]
fn the_demo_refuses_bad_options() {
    let dir = TempDir::new("demo");
    let nowhere_json = dir.path("nowhere/report.json");
    refuses(DEMO, &["--clients", "0"], By::Clap, "--clients");
    refuses(DEMO, &["--json", &nowhere_json], By::Binary, "does not exist");
    refuses(DEMO, &["--issuer-key", "x.pem"], By::Clap, "--issuer-key");
}

#[test]
fn keygen_writes_a_private_key_for_its_owner_and_the_public_key_beside_it() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("keygen");
    for bin in [VS, GS] {
        let path = dir.path(&format!(
            "{}.pem",
            Path::new(bin).file_name().unwrap().to_string_lossy()
        ));
        let outcome = run(bin, &["keygen", &path]);
        assert_eq!(outcome.code, Some(0), "{}", outcome.stderr);
        assert!(outcome.stdout.contains(&path), "{}", outcome.stdout);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{path}");
        let private = tickwire_udp::os::load_signing_key(Path::new(&path)).unwrap();
        let public = tickwire_udp::os::load_verifying_key(Path::new(&format!("{path}.pub"))).unwrap();
        assert_eq!(private.verifying_key(), public);
    }
}

#[test]
fn the_client_writes_a_ticket_and_the_identity_key_it_names() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("ticket");
    let issuer = dir.key("issuer.pem");
    let ticket = dir.path("ticket.bin");
    let outcome = run(CLIENT, &["--issuer-key", &issuer, "--write-ticket", &ticket]);
    assert_eq!(outcome.code, Some(0), "{}", outcome.stderr);
    let key = format!("{ticket}.key");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let identity = tickwire_udp::os::load_signing_key(Path::new(&key)).unwrap();
    let bytes = std::fs::read(&ticket).unwrap();
    let claims = tickwire_core::JoinTicket::from_bytes(&bytes)
        .unwrap()
        .claims()
        .unwrap();
    assert_eq!(claims.client_key, identity.verifying_key().to_bytes());
    // A second ticket at the same path would overwrite the identity key: refused.
    refuses(
        CLIENT,
        &["--issuer-key", &issuer, "--write-ticket", &ticket],
        By::Binary,
        "exists already",
    );
}

/// Both servers: one configuration file with unknown fields refused, flags that override it,
/// `--print-config` printing what would run, and an admin address that cannot be bound.
#[test]
fn the_servers_read_one_config_file_and_print_the_effective_one() {
    let dir = TempDir::new("config");
    let issuer = dir.key("issuer.pem");
    let public = format!("{issuer}.pub");
    let unknown = dir.file(
        "unknown.toml",
        "listen = \"127.0.0.1:5000\"\n[drain]\ncolour = 1\n",
    );
    let bad_endpoint = dir.file("endpoint.toml", "[endpoint.tick]\ntick_rate_hz = 0\n");
    let gs_file = dir.file(
        "gs.toml",
        &format!(
            "listen = \"127.0.0.1:5001\"\nissuer_key = \"{public}\"\nlog_format = \"json\"\n\
             [drain]\ntimeout_ms = 1234\n[endpoint.tick]\ntick_rate_hz = 30\n"
        ),
    );
    let vs_file = dir.file(
        "vs.toml",
        &format!("issuer_key = \"{issuer}\"\nallow_gs_binary = [\"{issuer}\"]\n[verifier]\nallow_unenrolled = true\n"),
    );
    for bin in [GS, VS] {
        refuses(bin, &["--config", &unknown], By::Binary, "unknown field `colour`");
        refuses(
            bin,
            &["--config", &bad_endpoint],
            By::Binary,
            "tick.tick_rate_hz must be",
        );
    }

    let printed = run(
        GS,
        &[
            "--config",
            &gs_file,
            "--listen",
            "127.0.0.1:5002",
            "--print-config",
        ],
    );
    assert_eq!(printed.code, Some(0), "{}", printed.stderr);
    for line in [
        "listen = \"127.0.0.1:5002\"",
        "log_format = \"json\"",
        "timeout_ms = 1234",
        "retry_after_ms = 5000",
        "tick_rate_hz = 30",
        "gs_id = 42",
    ] {
        assert!(
            printed.stdout.contains(line),
            "{line:?} missing from:\n{}",
            printed.stdout
        );
    }
    let reprinted = dir.file("printed.toml", &printed.stdout);
    let again = run(GS, &["--config", &reprinted, "--print-config"]);
    assert_eq!(
        again.stdout, printed.stdout,
        "the printed configuration reads back as itself"
    );

    let printed = run(VS, &["--config", &vs_file, "--print-config"]);
    assert_eq!(printed.code, Some(0), "{}", printed.stderr);
    for line in [
        "listen = \"127.0.0.1:4500\"",
        "[verifier]",
        "accept_game_servers = true",
    ] {
        assert!(
            printed.stdout.contains(line),
            "{line:?} missing from:\n{}",
            printed.stdout
        );
    }

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap().to_string();
    refuses(
        GS,
        &[
            "--issuer-key",
            &public,
            "--listen",
            "127.0.0.1:0",
            "--admin",
            &taken,
        ],
        By::Binary,
        "--admin",
    );
    refuses(
        VS,
        &["--config", &vs_file, "--listen", "127.0.0.1:0", "--admin", &taken],
        By::Binary,
        "--admin",
    );
}
