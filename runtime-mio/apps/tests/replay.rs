//! Session recordings end to end (`PROTOCOL.md` §11): a game server records its sessions;
//! `tickwire-replay play` reproduces the demo game's sends from the recorded inputs and finds
//! the first divergence of an edited input; and, with real processes, `tickwire-gs --record`
//! attested by `tickwire-vs`, a recording verifies against the receipts the VS exports, while
//! a one-byte edit fails verification in the range holding the edited input.
//!
//! Real sockets and processes need real time, so waits poll with deadlines; what is asserted
//! (the replay, the verification) is a deterministic function of the files.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tickwire_apps::demo::{demo_config, run_clients, run_server, ServerOptions, DEMO_GS_ID};
use tickwire_apps::replay::{load_recording, parse_receipts, play, ReceiptExport};
use tickwire_core::record::{Record, Recording, RecordingDecoder};

mod common;

use common::*;

const REPLAY: &str = env!("CARGO_BIN_EXE_tickwire-replay");

fn recordings_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "twrec"))
        .collect();
    files.sort();
    files
}

/// Byte offset of the last payload byte (the demo input's direction) of the `n`th received
/// demo input (9 bytes or more: tick, direction) that is the last input of its tick, and its
/// tick. (An earlier input of the same tick would be overridden by the later one.)
fn input_byte(bytes: &[u8], n: usize) -> (usize, u64) {
    let mut decoder = RecordingDecoder::new();
    decoder.handle_bytes(bytes);
    let mut inputs: Vec<(usize, u64)> = Vec::new();
    while let Some(record) = decoder.poll_record().unwrap() {
        if let Record::Received { tick, payload, .. } = &record {
            if payload.len() >= 9 {
                if inputs.last().is_some_and(|(_, t)| t == tick) {
                    inputs.pop();
                }
                inputs.push((decoder.position() as usize - 1, *tick));
            }
        }
    }
    assert!(inputs.len() > n, "only {} inputs recorded", inputs.len());
    inputs[n]
}

#[test]
fn play_reproduces_the_sends_of_recorded_sessions_and_finds_an_edited_input() {
    let dir = TempDir::new("replay-play");
    let issuer = dir.key("issuer.pem");
    let record = dir.0.join("rec");
    let options = ServerOptions {
        identity: tickwire_udp::os_signing_key().unwrap(),
        trusted_issuer: tickwire_udp::os::load_signing_key(Path::new(&issuer))
            .unwrap()
            .verifying_key(),
        gs_id: DEMO_GS_ID,
        config: demo_config(),
        duration: Duration::from_secs(4),
        vs: None,
        store: None,
        token_key_file: None,
        record: Some(record.clone()),
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let server = std::thread::spawn(move || {
        run_server(
            "127.0.0.1:0".parse().unwrap(),
            &options,
            |a| tx.send(a).unwrap(),
            |_, _| {},
        )
        .unwrap()
    });
    let addr = rx.recv_timeout(PATIENCE).unwrap();
    let clients = run_clients(addr, 0, 2, &client_options(&issuer, Duration::from_secs(2))).unwrap();
    assert!(clients.iter().all(|c| c.joined), "{clients:?}");
    let report = server.join().unwrap();
    let written = report.recordings.expect("recording was on");
    assert_eq!((written.files, written.errors), (2, 0), "{written:?}");

    let files = recordings_in(&record);
    assert_eq!(files.len(), 2);
    let recordings: Vec<Recording> = files.iter().map(|f| load_recording(f).unwrap()).collect();
    let outcome = play(&recordings).unwrap();
    assert_eq!(outcome.divergence, None, "{outcome:?}");
    assert!(outcome.sends_compared > 50, "{outcome:?}");

    // The same through the binary: exit 0 and a match.
    let output = Command::new(REPLAY).arg("play").args(&files).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("replay matches"));

    // Change one input's direction byte: the game moves that player differently, and the
    // first snapshot after it differs.
    let mut bytes = std::fs::read(&files[0]).unwrap();
    let (at, tick) = input_byte(&bytes, 20);
    bytes[at] ^= 0x01;
    let edited = Recording::decode(&bytes).unwrap();
    let outcome = play(&[edited, recordings[1].clone()]).unwrap();
    let divergence = outcome.divergence.expect("the edit changes the sends");
    assert!(
        divergence.tick >= tick && divergence.tick <= tick + 2,
        "edit at {tick}: {divergence:?}"
    );
    let edited_file = dir.0.join("edited.twrec");
    std::fs::write(&edited_file, &bytes).unwrap();
    let output = Command::new(REPLAY)
        .arg("play")
        .arg(&edited_file)
        .arg(&files[1])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("DIVERGES"));

    // Usage errors exit 2: no file, not a recording.
    assert_eq!(Command::new(REPLAY).arg("play").status().unwrap().code(), Some(2));
    let junk = dir.file("junk.twrec", "not a recording");
    assert_eq!(
        Command::new(REPLAY)
            .args(["play", &junk])
            .status()
            .unwrap()
            .code(),
        Some(2)
    );
}

/// `tickwire-vs` and `tickwire-gs --record` as processes, one client: the recording verifies
/// against the receipts the VS exports on its admin endpoint, and an edit fails.
#[test]
fn a_recording_verifies_against_the_receipts_the_verification_server_exports() {
    let dir = TempDir::new("replay-verify");
    let issuer = dir.key("issuer.pem");
    const TOKEN: &str = "operator-token-0123456789";
    let token_file = dir.file("token", &format!("{TOKEN}\n"));
    let vs_config = dir.file(
        "vs.toml",
        &format!(
            "issuer_key = \"{issuer}\"\nallow_gs_binary = [\"{GS}\"]\n\
             admin_token_file = \"{token_file}\"\n[verifier]\nallow_unenrolled = true\nticket_interval_ms = 300\nticket_lifetime_ms = 3000\n"
        ),
    );
    let vs_addr = free_udp_port().to_string();
    let vs = Process::start(
        VS,
        "tickwire-vs",
        &[
            "--config",
            &vs_config,
            "--listen",
            &vs_addr,
            "--admin",
            "127.0.0.1:0",
        ],
    );
    let vs_admin = vs.address_after("admin on ");
    let public = format!("{issuer}.pub");
    let record = dir.path("rec");
    let gs_identity = dir.key("gs.pem");
    let (mut gs, gs_admin, gs_addr) = Process::game_server(
        &public,
        &vs_addr,
        &["--identity-key", &gs_identity, "--record", &record],
    );
    eventually("the GS is admitted", || get(gs_admin, "/ready").0 == 200);
    let played = run_clients(gs_addr, 0, 1, &client_options(&issuer, Duration::from_secs(3))).unwrap();
    assert!(played[0].joined, "{played:?}");
    // The recording is complete once the session's End record is written.
    let mut files = Vec::new();
    eventually("the recording is complete", || {
        files = recordings_in(Path::new(&record));
        files.len() == 1
            && load_recording(&files[0])
                .is_ok_and(|r| r.records.iter().any(|r| matches!(r, Record::End { .. })))
    });
    let recording = load_recording(&files[0]).unwrap();
    let last_input = recording
        .records
        .iter()
        .filter_map(|r| match r {
            Record::Received { tick, .. } => Some(*tick),
            _ => None,
        })
        .max()
        .unwrap();
    // The session's last digest goes with a heartbeat after it ended: wait for its receipt.
    let mut export = String::new();
    eventually("the last input is receipted", || {
        let (status, body) = request(vs_admin, "GET", "/v1/game-servers/42/receipts", Some(TOKEN));
        export = body;
        status == 200
            && serde_json::from_str::<ReceiptExport>(&export).is_ok_and(|e| {
                e.receipts.iter().any(|r| {
                    r.digest.session_id == recording.header.session_id && r.digest.tick == last_input
                })
            })
    });
    assert!(!parse_receipts(&export).unwrap().is_empty(), "{export}");
    assert!(
        sum_of(
            &get(gs_admin, "/metrics").1,
            "tickwire_recording_bytes_total",
            &["outcome=\"recorded\""]
        ) > 0.0
    );
    gs.signal("TERM");
    assert_eq!(gs.wait_exit(), Some(0));
    let receipts = dir.file("receipts.json", &export);
    let file = files[0].display().to_string();
    let verify = |file: &str| {
        Command::new(REPLAY)
            .args(["verify", file, "--receipts", &receipts, "--vs-key", &public])
            .args(["--gs-key", &format!("{gs_identity}.pub")])
            .output()
            .unwrap()
    };
    let good = verify(&file);
    let text = String::from_utf8_lossy(&good.stdout).into_owned();
    assert_eq!(
        good.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&good.stderr)
    );
    assert!(text.contains("covered by receipt"), "{text}");
    assert!(
        text.contains("seals: OK") && text.contains("the given game-server key"),
        "{text}"
    );

    let mut bytes = std::fs::read(&files[0]).unwrap();
    let (at, tick) = input_byte(&bytes, 10);
    bytes[at] ^= 0x01;
    let edited = dir.file("edited.twrec", "");
    std::fs::write(&edited, &bytes).unwrap();
    let bad = verify(&edited);
    let text = String::from_utf8_lossy(&bad.stdout).into_owned();
    assert_eq!(bad.status.code(), Some(1), "{text}");
    let line = text
        .lines()
        .find(|l| l.contains("MISMATCH"))
        .expect("a mismatch line");
    let range = line.split("edited at tick ").nth(1).unwrap();
    let (first, last) = range.split_once("..=").unwrap();
    let (first, last): (u64, u64) = (first.trim().parse().unwrap(), last.trim().parse().unwrap());
    assert!(first <= tick && tick <= last, "edit at {tick}: {line}");
    assert_eq!(text.matches("MISMATCH").count(), 1, "{text}");
    assert!(text.contains("seals: BROKEN"), "{text}");

    // A byte of a sent message: outside what receipts cover, inside the seal.
    let mut bytes = std::fs::read(&files[0]).unwrap();
    let recording = tickwire_core::record::Recording::decode(&bytes).unwrap();
    let sent = recording
        .records
        .iter()
        .find_map(|r| match r {
            Record::Sent { payload, .. } if payload.len() >= 8 => Some(payload.clone()),
            _ => None,
        })
        .expect("a sent message");
    let at = bytes.windows(sent.len()).position(|w| w == sent).unwrap() + sent.len() - 1;
    bytes[at] ^= 0x01;
    let edited_send = dir.file("edited-send.twrec", "");
    std::fs::write(&edited_send, &bytes).unwrap();
    let bad = verify(&edited_send);
    let text = String::from_utf8_lossy(&bad.stdout).into_owned();
    assert_eq!(bad.status.code(), Some(1), "{text}");
    assert!(
        !text.contains("MISMATCH") && text.contains("seals: BROKEN"),
        "{text}"
    );
}

/// `record` is a setting like the others: in the config file, overridden by `--record`.
#[test]
fn record_is_read_from_the_config_file_and_the_flag_overrides_it() {
    let dir = TempDir::new("replay-settings");
    let issuer = dir.key("issuer.pem");
    let public = format!("{issuer}.pub");
    let from_file = dir.path("from-file");
    let config = dir.file("gs.toml", &format!("record = \"{from_file}\"\n"));
    let print = |extra: &[&str]| {
        let output = Command::new(GS)
            .args(["--config", &config, "--issuer-key", &public, "--print-config"])
            .args(extra)
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        String::from_utf8(output.stdout).unwrap()
    };
    assert!(print(&[]).contains(&format!("record = \"{from_file}\"")));
    let from_flag = dir.path("from-flag");
    let text = print(&["--record", &from_flag]);
    assert!(text.contains(&format!("record = \"{from_flag}\"")), "{text}");
    assert!(text.contains("recording_buffer_bytes = 1048576"), "{text}");
}
