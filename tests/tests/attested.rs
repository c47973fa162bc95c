//! A verification server, an attested game server and clients as real processes would run them:
//! three mio runtimes on real loopback UDP, each on its own thread. The game server measures the
//! running test binary into PCR 23 of a simulated TPM, or of a real software TPM (`swtpm`, with
//! the `tpm` feature), and the clients require its play ticket.

use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::Duration;

use tickwire_core::vs::{GsConfig, Measurement, VsConfig};
use tickwire_mio::demo::{run_clients, run_server, DemoOptions, IssuerArgs, ServerReport};
use tickwire_mio::vs::{binary_sha256, demo_config_sha256, run_vs, VsLink, VsOptions, VsReport};

const SECONDS: f64 = 4.0;

/// Runs VS, GS (with `tpm`) and 4 clients; returns the three reports.
fn run(tpm: String) -> (VsReport, ServerReport, Vec<tickwire_mio::demo::ClientReport>) {
    let gs_config = GsConfig {
        heartbeat_interval_ms: 200,
        reattest_every: 3,
        ..GsConfig::default()
    };
    let vs_options = VsOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        issuer_seed: 1,
        seed: 3,
        duration: Duration::from_secs_f64(SECONDS + 3.0),
        config: VsConfig {
            measurements: vec![Measurement {
                binary_sha256: binary_sha256().unwrap(),
                config_sha256: demo_config_sha256(&gs_config),
            }],
            allow_unenrolled: true,
            ticket_interval_ms: 500,
            ..VsConfig::default()
        },
    };
    let (vs_tx, vs_rx) = mpsc::channel();
    let vs = std::thread::spawn(move || run_vs(&vs_options, |addr| vs_tx.send(addr).unwrap(), |_, _| {}));
    let vs_addr: SocketAddr = vs_rx.recv().unwrap();

    let issuer = IssuerArgs {
        issuer_seed: 1,
        gs_id: 42,
    };
    let mut server_options = issuer.options(1, SECONDS + 2.0);
    server_options.vs = Some(VsLink {
        addr: vs_addr,
        tpm,
        config_sha256: demo_config_sha256(&gs_config),
        gs: gs_config,
    });
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
    let client_options = DemoOptions {
        check_play_ticket: true,
        ..issuer.options(7, SECONDS)
    };
    let clients = run_clients(gs_addr, 0, 4, &client_options).unwrap();
    let server = gs.join().unwrap().unwrap();
    let vs = vs.join().unwrap().unwrap();
    (vs, server, clients)
}

fn check(vs: &VsReport, server: &ServerReport, clients: &[tickwire_mio::demo::ClientReport]) {
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
    let vs_options = VsOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        issuer_seed: 1,
        seed: 3,
        duration: Duration::from_secs(3),
        config: VsConfig {
            allow_unenrolled: true,
            ..VsConfig::default()
        },
    };
    let (vs_tx, vs_rx) = mpsc::channel();
    let vs = std::thread::spawn(move || run_vs(&vs_options, |addr| vs_tx.send(addr).unwrap(), |_, _| {}));
    let vs_addr = vs_rx.recv().unwrap();
    let mut options = IssuerArgs {
        issuer_seed: 1,
        gs_id: 42,
    }
    .options(1, 2.5);
    options.vs = Some(VsLink {
        addr: vs_addr,
        tpm: "simulated".into(),
        config_sha256: demo_config_sha256(&GsConfig::default()),
        gs: GsConfig::default(),
    });
    let err = run_server("127.0.0.1:0".parse().unwrap(), &options, |_| {}, |_, _| {}).unwrap_err();
    assert!(err.to_string().contains("MEASUREMENT_MISMATCH"), "{err}");
    let vs = vs.join().unwrap().unwrap();
    assert_eq!(vs.rejections.len(), 1, "{vs:?}");
}
