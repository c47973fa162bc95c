//! The browser demo end to end: `tickwire-gs` accepting WebTransport, the `tickwire-demo web`
//! lobby, and the demo page in headless Chromium (playwright-core) and in headless Firefox
//! (puppeteer-core over WebDriver BiDi), each driven by `web/test/browser.mjs`. The same test
//! runs in each browser: a page given an expired ticket is refused with `TICKET_EXPIRED`.
//! Another joins beside a native `tickwire-client`, sends inputs every tick and receives
//! snapshots, some of them fragmented; then the server drains and the page shows
//! `SERVER_SHUTDOWN`. The server's `--json` report counts both sessions, by carrier, and the
//! page's inputs.
//!
//! It needs what `web/scripts/setup` installs and builds (Chromium, Firefox ESR, the npm
//! packages, the demo bundle). Without them a browser's test says so and passes, unless
//! `TICKWIRE_WEB_E2E=1` demands it.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Mutex};
use std::time::Duration;

use common::{eventually, get, sample, sum_of, Process, TempDir, GS};
use serde_json::Value;

const DEMO: &str = env!("CARGO_BIN_EXE_tickwire-demo");
const CLIENT: &str = env!("CARGO_BIN_EXE_tickwire-client");
/// How long `browser.mjs` waits for each stage, in milliseconds.
const STAGE_TIMEOUT_MS: &str = "30000";
/// Inputs the page counts as sent that the server may not have counted when it stopped: a
/// fifth of a second at 60 Hz, for datagrams reordered (the input channel keeps only the
/// newest) or still in flight.
const INPUTS_IN_FLIGHT: u64 = 12;
const SEED: &str = "7";

/// One browser test at a time: each starts a server, a lobby, a native client and a browser,
/// and two at once only slow each other down.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn web_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../web")
}

/// A browser `browser.mjs` can drive.
#[derive(Clone, Copy)]
struct BrowserKind {
    /// Its `--browser` value, and the option naming its executable.
    name: &'static str,
    /// The environment variable naming its executable, as `browser.mjs` reads it.
    env: &'static str,
    /// Its executable when `env` is unset (Debian's).
    default_executable: &'static str,
    /// The npm package that drives it.
    driver: &'static str,
}

const CHROMIUM: BrowserKind = BrowserKind {
    name: "chromium",
    env: "CHROMIUM",
    default_executable: "/usr/bin/chromium",
    driver: "playwright-core",
};

const FIREFOX: BrowserKind = BrowserKind {
    name: "firefox",
    env: "FIREFOX",
    default_executable: "/usr/bin/firefox-esr",
    driver: "puppeteer-core",
};

impl BrowserKind {
    fn executable(self) -> String {
        std::env::var(self.env).unwrap_or_else(|_| self.default_executable.into())
    }
}

/// Why the test in `browser` cannot run here, if it cannot.
fn missing_prerequisite(web: &Path, browser: BrowserKind) -> Option<String> {
    [
        (PathBuf::from(browser.executable()), browser.name.to_owned()),
        (
            web.join("test/node_modules").join(browser.driver),
            format!("{} (npm ci in web/test)", browser.driver),
        ),
        (
            web.join("demo/dist/index.html"),
            "the demo page (web/scripts/setup)".to_owned(),
        ),
    ]
    .into_iter()
    .find(|(path, _)| !path.exists())
    .map(|(path, what)| format!("{what} not found at {}", path.display()))
    .or_else(|| {
        let node = Command::new("node").arg("--version").output();
        (!node.is_ok_and(|o| o.status.success())).then(|| "node not found".to_owned())
    })
}

/// `browser.mjs` on one page, waiting for its `--until` stages in order.
struct Page {
    child: Child,
    /// One JSON line per stage reached.
    lines: mpsc::Receiver<String>,
}

impl Page {
    fn start(web: &Path, browser: BrowserKind, url: &str, stages: &[&str], fail_if: &str) -> Self {
        let mut command = Command::new("node");
        command
            .arg(web.join("test/browser.mjs"))
            .args(["--browser", browser.name])
            .arg(format!("--{}", browser.name))
            .arg(browser.executable())
            .args(["--url", url]);
        for until in stages {
            command.args(["--until", until]);
        }
        let mut child = command
            .args(["--fail-if", fail_if, "--timeout-ms", STAGE_TIMEOUT_MS])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node runs");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines }
    }

    /// The state once the next stage is met; panics if it is not.
    fn stage(&mut self, what: &str) -> Value {
        // The browser's start and the stage's own timeout, with room to spare.
        let patience = Duration::from_secs(90);
        let line = self
            .lines
            .recv_timeout(patience)
            .unwrap_or_else(|e| panic!("browser.mjs printed nothing for {what}: {e}"));
        let json: Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("browser.mjs printed {line:?}: {e}"));
        assert_eq!(json["outcome"], "ok", "{what}: {json}");
        json["state"].clone()
    }

    /// The last stage's state; panics unless `browser.mjs` exits 0.
    fn finish(mut self, what: &str) -> Value {
        let state = self.stage(what);
        let status = self.child.wait().expect("browser.mjs is waited for");
        assert!(status.success(), "browser.mjs {status} after {what}");
        state
    }
}

impl Drop for Page {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_json(path: &str) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn count(value: &Value) -> u64 {
    value.as_u64().unwrap_or_else(|| panic!("not a count: {value}"))
}

#[test]
fn chromium_plays_beside_a_native_client_and_sees_the_server_drain() {
    plays_beside_a_native_client_and_sees_the_server_drain(CHROMIUM);
}

#[test]
fn firefox_plays_beside_a_native_client_and_sees_the_server_drain() {
    plays_beside_a_native_client_and_sees_the_server_drain(FIREFOX);
}

fn plays_beside_a_native_client_and_sees_the_server_drain(browser: BrowserKind) {
    let web = web_dir();
    if let Some(why) = missing_prerequisite(&web, browser) {
        assert!(
            std::env::var("TICKWIRE_WEB_E2E").as_deref() != Ok("1"),
            "TICKWIRE_WEB_E2E=1 but {why}"
        );
        eprintln!("skipped: {why}; run web/scripts/setup to enable this test");
        return;
    }
    // A test that failed holding the lock poisons it; the next still runs.
    let _one_at_a_time = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = TempDir::new(&format!("web-{}", browser.name));
    let cert_json = dir.path("cert.json");
    let report_json = dir.path("gs-report.json");
    let native_json = dir.path("native-report.json");
    let mut gs = Process::start(
        GS,
        "tickwire-gs",
        &[
            "--insecure-demo-issuer-seed",
            SEED,
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--webtransport-cert-json",
            &cert_json,
            "--json",
            &report_json,
            "--drain-timeout-ms",
            "3000",
            "--seconds",
            "120",
        ],
    );
    let admin = gs.address_after("admin on ");
    let gs_addr = gs.address_after("listening on ");
    let metrics = || get(admin, "/metrics").1;
    let static_dir = web.join("demo/dist").display().to_string();
    let lobby = Process::start(
        DEMO,
        "tickwire-demo web",
        &[
            "web",
            "--insecure-demo-issuer-seed",
            SEED,
            "--listen",
            "127.0.0.1:0",
            "--gs",
            &gs_addr.to_string(),
            "--cert-json",
            &cert_json,
            "--static",
            &static_dir,
            "--seconds",
            "120",
        ],
    );
    let lobby_addr = lobby.address_after("listening on ");

    // An expired ticket: the handshake is refused and the page shows why.
    let state = Page::start(
        &web,
        browser,
        &format!("http://{lobby_addr}/?expired=1"),
        &["closeReason !== null"],
        "joined",
    )
    .finish("the refusal of an expired ticket");
    assert_eq!(state["joined"], false);
    assert_eq!(state["closeReason"], "TICKET_EXPIRED", "{state}");
    assert_eq!(state["closeCode"], 14);

    // A native client joins and keeps playing (it stops once the server closes it).
    let mut native = Process::start(
        CLIENT,
        "tickwire-client",
        &[
            "--insecure-demo-issuer-seed",
            SEED,
            "--server",
            &gs_addr.to_string(),
            "--clients",
            "1",
            // Longer than the browser's part however slow the machine: the drain ends it.
            "--seconds",
            "600",
            "--json",
            &native_json,
        ],
    );
    eventually("the native client's session is established", || {
        sum_of(
            &metrics(),
            "tickwire_sessions_established_total",
            &["carrier=\"native\""],
        ) == 1.0
    });

    // The page joins beside it and plays; then the server drains under it.
    let mut page = Page::start(
        &web,
        browser,
        &format!("http://{lobby_addr}/"),
        &[
            "joined && snapshotsReceived >= 60 && fragmentedSnapshots >= 2 && inputsSent >= 60 && rttMs !== null",
            "closeReason !== null",
        ],
        "closeReason !== null",
    );
    let playing = page.stage("the page playing");
    assert_eq!(playing["joined"], true);
    assert_eq!(playing["sessionId"].as_str().map(str::len), Some(16));
    assert!(
        playing["rttMs"]
            .as_f64()
            .is_some_and(|rtt| rtt > 0.0 && rtt < 1000.0),
        "{playing}"
    );
    assert!(playing["jitterMs"].as_f64().is_some(), "{playing}");
    assert!(
        playing["lossPct"]
            .as_f64()
            .is_some_and(|loss| (0.0..=100.0).contains(&loss)),
        "{playing}"
    );
    eventually(
        "the browser and the native client are in session together",
        || {
            let text = metrics();
            sample(&text, "tickwire_sessions{state=\"established\"}") == Some(2.0)
                && sum_of(
                    &text,
                    "tickwire_sessions_established_total",
                    &["carrier=\"webtransport\""],
                ) == 1.0
        },
    );

    gs.signal("TERM");
    let closed = page.finish("the page seeing the drain");
    assert_eq!(closed["closeReason"], "SERVER_SHUTDOWN", "{closed}");
    assert_eq!(closed["closeCode"], 1);
    // The page keeps what it had after the close.
    assert_eq!(closed["joined"], true);
    assert_eq!(closed["sessionId"], playing["sessionId"]);
    assert!(count(&closed["snapshotsReceived"]) >= count(&playing["snapshotsReceived"]));
    assert_eq!(gs.wait_exit(), Some(0), "a drain exits 0");
    assert_eq!(native.wait_exit(), Some(0), "the native client joined");

    // The server's report: one session of each carrier, and the page's inputs.
    let report = read_json(&report_json);
    assert_eq!(report["sessions"], 2, "{report}");
    assert_eq!(report["webtransport_sessions"], 1, "{report}");
    let page_inputs = count(&report["webtransport_inputs_received"]);
    let sent_before_drain = count(&playing["inputsSent"]);
    assert!(
        page_inputs >= 60 && page_inputs + INPUTS_IN_FLIGHT >= sent_before_drain,
        "the server counted {page_inputs} inputs from the page, which had sent {sent_before_drain} \
         before the drain"
    );
    assert!(
        page_inputs <= count(&closed["inputsSent"]),
        "the server counted more inputs than the page sent: {report} {closed}"
    );
    let native_inputs = count(&report["inputs_received"]) - page_inputs;
    assert!(native_inputs >= 60, "{report}");

    // The native client was told the same.
    let native_report = read_json(&native_json);
    let client = &native_report["per_client"][0];
    assert_eq!(client["joined"], true, "{native_report}");
    let ended = client["disconnected"].as_str().unwrap_or("still connected");
    assert!(
        ended.contains("SERVER_SHUTDOWN"),
        "the native client was told: {ended}"
    );
    drop(lobby);
}
