//! Helpers shared by the binaries' tests: temporary files and keys, server processes, HTTP
//! requests to the admin endpoint, scraping metrics, and waits bounded by [`PATIENCE`].
//! Real processes need real time, so waits poll with deadlines; nothing asserts on how long
//! anything took.

#![allow(dead_code)] // each test file uses its own part

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tickwire_apps::demo::{demo_config, ClientOptions, DEMO_GS_ID};

pub const GS: &str = env!("CARGO_BIN_EXE_tickwire-gs");
pub const VS: &str = env!("CARGO_BIN_EXE_tickwire-vs");

/// Longest wait for anything a test expects to happen.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// How long a player plays in a test that ends with the game server's drain: longer than any
/// test takes, since the drain ends the run (and `run_clients` returns then).
pub const UNTIL_DRAINED: Duration = Duration::from_secs(120);

/// A fresh directory for one test's files, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("tickwire-apps-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub fn path(&self, name: &str) -> String {
        self.0.join(name).display().to_string()
    }

    pub fn file(&self, name: &str, contents: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        path.display().to_string()
    }

    /// A key pair at `name` (private) and `name.pub`.
    pub fn key(&self, name: &str) -> String {
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
pub struct Process {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    name: &'static str,
}

impl Process {
    pub fn start(bin: &str, name: &'static str, args: &[&str]) -> Self {
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

    /// `tickwire-gs` on loopback with an admin endpoint, trusting `issuer_pub` and attested
    /// by the VS at `vs`, with `extra` options; returns it with its admin and game addresses.
    pub fn game_server(issuer_pub: &str, vs: &str, extra: &[&str]) -> (Self, SocketAddr, SocketAddr) {
        let mut args = vec![
            "--issuer-key",
            issuer_pub,
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--vs",
            vs,
        ];
        args.extend_from_slice(extra);
        let gs = Self::start(GS, "tickwire-gs", &args);
        let admin = gs.address_after("admin on ");
        let addr = gs.address_after("listening on ");
        (gs, admin, addr)
    }

    /// The address printed after `marker` on a stdout line (`… listening on ADDR …`).
    pub fn address_after(&self, marker: &str) -> SocketAddr {
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

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit; its exit code.
    pub fn wait_exit(&mut self) -> Option<i32> {
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
pub fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    request(addr, "GET", path, None)
}

/// `method path` over HTTP/1.0, with a bearer `token` if given: `(status, body)`.
pub fn request(addr: SocketAddr, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
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
pub fn eventually(what: &str, mut probe: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !probe() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// How many game servers the verification server with admin endpoint `vs_admin` holds
/// authorised, as its `/metrics` says.
pub fn game_servers_authorised(vs_admin: SocketAddr) -> Option<f64> {
    sample(
        &get(vs_admin, "/metrics").1,
        "tickwire_vs_game_servers_authorised",
    )
}

/// The value of the sample named exactly `series` (name and labels as exposed).
pub fn sample(text: &str, series: &str) -> Option<f64> {
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
pub fn sum_of(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|line| line.starts_with(&format!("{name}{{")) || line.starts_with(&format!("{name} ")))
        .filter(|line| labels.iter().all(|label| line.contains(label)))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// `promtool check metrics` accepts `text`. Without promtool, fails under CI and skips
/// otherwise (the README's test command installs it).
pub fn promtool_accepts(text: &str, what: &str) {
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
pub fn free_udp_port() -> SocketAddr {
    UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

pub fn client_options(issuer: &str, duration: Duration) -> ClientOptions {
    ClientOptions {
        issuer: tickwire_udp::os::load_signing_key(std::path::Path::new(issuer)).unwrap(),
        gs_id: DEMO_GS_ID,
        config: demo_config(),
        duration,
        trusted_vs: None,
    }
}
