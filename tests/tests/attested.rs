//! A verification server, an attested game server and clients as real processes would run them:
//! three mio runtimes on real loopback UDP, each on its own thread. The game server measures the
//! running test binary into PCR 23 of a simulated TPM, or of a real software TPM (`swtpm`, with
//! the `tpm` feature), and the clients require its play ticket.

use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use tickwire_apps::demo::{
    demo_config, run_clients, run_server, ClientOptions, ClientReport, ServerOptions, ServerReport,
};
use tickwire_apps::vs::{
    binary_sha256, demo_config_sha256, run_vs, vs_endpoint_config, vs_keys, VsLink, VsOptions, VsReport,
};
use tickwire_core::retry::RetryConfig;
use tickwire_core::vs::{GsConfig, Measurement, VsConfig};
use tickwire_core::Config;

const SECONDS: f64 = 4.0;
const GS_ID: u64 = 42;

/// The VS's signing key: play tickets, and (standing in for a lobby) the clients' join tickets.
fn issuer() -> SigningKey {
    SigningKey::from_bytes(&[0x1A; 32])
}

fn vs_options(duration: Duration, config: VsConfig) -> VsOptions {
    VsOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        identity: SigningKey::from_bytes(&[0x03; 32]),
        issuer: issuer(),
        endpoint: vs_endpoint_config(),
        duration,
        config,
        store: None,
        token_key_file: None,
    }
}

fn server_options(duration: Duration, vs: VsLink) -> ServerOptions {
    ServerOptions {
        identity: SigningKey::from_bytes(&[0x01; 32]),
        trusted_issuer: issuer().verifying_key(),
        gs_id: GS_ID,
        config: demo_config(),
        duration,
        vs: Some(vs),
        store: None,
        token_key_file: None,
        record: None,
    }
}

fn link(addr: SocketAddr, tpm: String, gs: GsConfig) -> VsLink {
    VsLink {
        addr,
        failover: Vec::new(),
        tpm,
        vs_keys: vs_keys(&issuer().verifying_key()),
        config_sha256: demo_config_sha256(&gs),
        gs,
    }
}

/// Runs VS, GS (with `tpm`) and 4 clients; returns the three reports.
fn run(tpm: String) -> (VsReport, ServerReport, Vec<ClientReport>) {
    let gs_config = GsConfig {
        heartbeat_interval_ms: 200,
        reattest_every: 3,
        ..GsConfig::default()
    };
    let vs_options = vs_options(
        Duration::from_secs_f64(SECONDS + 3.0),
        VsConfig {
            measurements: vec![Measurement {
                binary_sha256: binary_sha256().unwrap(),
                config_sha256: demo_config_sha256(&gs_config),
            }],
            allow_unenrolled: true,
            ticket_interval_ms: 500,
            ..VsConfig::default()
        },
    );
    let (vs_tx, vs_rx) = mpsc::channel();
    let vs = std::thread::spawn(move || run_vs(&vs_options, |addr| vs_tx.send(addr).unwrap(), |_, _| {}));
    let vs_addr: SocketAddr = vs_rx.recv().unwrap();

    let server_options = server_options(
        Duration::from_secs_f64(SECONDS + 2.0),
        link(vs_addr, tpm, gs_config),
    );
    let (gs_tx, gs_rx) = mpsc::channel();
    let gs = std::thread::spawn(move || {
        run_server(
            "127.0.0.1:0".parse().unwrap(),
            &server_options,
            |addr| gs_tx.send(addr).unwrap(),
            |_, _| {},
        )
    });
    let gs_addr: SocketAddr = gs_rx.recv().unwrap();
    // The game server refuses joins (`NOT_AUTHORISED`, retryable) until its first play ticket,
    // which takes its attestation: the clients retry every 200 ms at most through it, however
    // slow the machine, rather than giving up after the default few quick attempts.
    let client_options = ClientOptions {
        issuer: issuer(),
        gs_id: GS_ID,
        config: Config {
            retry: RetryConfig {
                max_attempts: 100,
                max_backoff_ms: 200,
                ..RetryConfig::default()
            },
            ..demo_config()
        },
        duration: Duration::from_secs_f64(SECONDS),
        trusted_vs: Some(issuer().verifying_key()),
    };
    let clients = run_clients(gs_addr, 0, 4, &client_options).unwrap();
    let server = gs.join().unwrap().unwrap();
    let vs = vs.join().unwrap().unwrap();
    (vs, server, clients)
}

fn check(vs: &VsReport, server: &ServerReport, clients: &[ClientReport]) {
    assert_eq!(vs.joins, 1, "{vs:?}");
    assert!(vs.rejections.is_empty(), "{vs:?}");
    assert!(vs.reattestations >= 1, "{vs:?}");
    assert!(
        vs.receipts >= 1 && server.receipts >= 1,
        "{vs:?} {}",
        server.receipts
    );
    for client in clients {
        assert!(client.joined, "client {} did not join: {client:?}", client.index);
        assert!(client.snapshots > 0);
    }
}

#[test]
fn vs_gs_and_clients_on_loopback_with_a_simulated_tpm() {
    let (vs, server, clients) = run("simulated".into());
    check(&vs, &server, &clients);
}

#[cfg(feature = "tpm")]
#[test]
fn vs_gs_and_clients_on_loopback_with_swtpm() {
    let swtpm = tickwire_tpm::swtpm::Swtpm::start().expect("swtpm starts (scripts/test installs it)");
    let (vs, server, clients) = run(swtpm.tcti());
    check(&vs, &server, &clients);
}

#[test]
fn a_gs_whose_binary_is_not_allowed_fails_with_the_reason() {
    let vs_options = vs_options(
        Duration::from_secs(6),
        VsConfig {
            allow_unenrolled: true,
            ..VsConfig::default()
        },
    );
    let (vs_tx, vs_rx) = mpsc::channel();
    let vs = std::thread::spawn(move || run_vs(&vs_options, |addr| vs_tx.send(addr).unwrap(), |_, _| {}));
    let vs_addr = vs_rx.recv().unwrap();
    let options = server_options(
        // Long enough for the refusal on a slow machine; the refusal ends it at once.
        Duration::from_secs(5),
        link(vs_addr, "simulated".into(), GsConfig::default()),
    );
    let err = run_server("127.0.0.1:0".parse().unwrap(), &options, |_| {}, |_, _| {}).unwrap_err();
    assert!(err.to_string().contains("MEASUREMENT_MISMATCH"), "{err}");
    let vs = vs.join().unwrap().unwrap();
    assert_eq!(vs.rejections.len(), 1, "{vs:?}");
}
