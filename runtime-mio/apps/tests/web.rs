//! The browser demo end to end: `tickwire-gs` accepting WebTransport, the `tickwire-demo web`
//! lobby, and the demo page in headless Chromium driven by `web/test/browser.mjs`
//! (playwright-core). The page joins, sends inputs every tick and receives snapshots, some of
//! them fragmented; a page given an expired ticket is refused with `TICKET_EXPIRED`.
//!
//! It needs what `web/scripts/setup` installs and builds (Chromium, the npm packages, the demo
//! bundle). Without them it says so and passes, unless `TICKWIRE_WEB_E2E=1` demands it.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Process, TempDir, GS};

const DEMO: &str = env!("CARGO_BIN_EXE_tickwire-demo");
const SEED: &str = "7";

fn web_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../web")
}

/// Why the browser test cannot run here, if it cannot.
fn missing_prerequisite(web: &Path) -> Option<String> {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    [
        (PathBuf::from(&chromium), "Chromium"),
        (
            web.join("test/node_modules/playwright-core"),
            "playwright-core (npm ci in web/test)",
        ),
        (
            web.join("demo/dist/index.html"),
            "the demo page (web/scripts/setup)",
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

/// Runs `browser.mjs` on `url` until `until`; its exit status and the JSON it printed.
fn browser(web: &Path, url: &str, until: &str, fail_if: &str) -> (bool, serde_json::Value) {
    let output = Command::new("node")
        .arg(web.join("test/browser.mjs"))
        .args([
            "--url",
            url,
            "--until",
            until,
            "--fail-if",
            fail_if,
            "--timeout-ms",
            "30000",
        ])
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    eprintln!("browser.mjs stderr:\n{}", String::from_utf8_lossy(&output.stderr));
    let json =
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("browser.mjs printed {stdout:?}: {e}"));
    (output.status.success(), json)
}

#[test]
fn a_browser_joins_plays_and_is_refused_with_an_expired_ticket() {
    let web = web_dir();
    if let Some(why) = missing_prerequisite(&web) {
        assert!(
            std::env::var("TICKWIRE_WEB_E2E").as_deref() != Ok("1"),
            "TICKWIRE_WEB_E2E=1 but {why}"
        );
        eprintln!("skipped: {why}; run web/scripts/setup to enable this test");
        return;
    }
    let dir = TempDir::new("web");
    let cert_json = dir.path("cert.json");
    let gs = Process::start(
        GS,
        "tickwire-gs",
        &[
            "--insecure-demo-issuer-seed",
            SEED,
            "--listen",
            "127.0.0.1:0",
            "--webtransport-cert-json",
            &cert_json,
            "--seconds",
            "120",
        ],
    );
    let gs_addr = gs.address_after("listening on ");
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

    let (ok, json) = browser(
        &web,
        &format!("http://{lobby_addr}/"),
        "joined && snapshotsReceived >= 60 && fragmentedSnapshots >= 2 && inputsSent >= 60 && rttMs !== null",
        "closeReason !== null",
    );
    let state = &json["state"];
    assert!(ok, "the page did not play: {json}");
    assert_eq!(state["joined"], true);
    assert_eq!(state["sessionId"].as_str().map(str::len), Some(16));
    assert!(
        state["rttMs"]
            .as_f64()
            .is_some_and(|rtt| rtt > 0.0 && rtt < 1000.0),
        "{state}"
    );
    assert!(state["jitterMs"].as_f64().is_some(), "{state}");
    assert!(
        state["lossPct"]
            .as_f64()
            .is_some_and(|loss| (0.0..=100.0).contains(&loss)),
        "{state}"
    );

    let (ok, json) = browser(
        &web,
        &format!("http://{lobby_addr}/?expired=1"),
        "closeReason !== null",
        "joined",
    );
    let state = &json["state"];
    assert!(ok, "the expired ticket was not refused: {json}");
    assert_eq!(state["joined"], false);
    assert_eq!(state["closeReason"], "TICKET_EXPIRED", "{state}");
    assert_eq!(state["closeCode"], 14);
    drop(lobby);
    drop(gs);
}
