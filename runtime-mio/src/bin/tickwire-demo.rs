//! `tickwire-demo`: a game server and N clients on real loopback UDP in one process (server on
//! its own thread, all clients on another), then a report.
//!
//! ```text
//! cargo run --release -p tickwire-mio --bin tickwire-demo -- --clients 32 --seconds 5 --json report.json
//! # with a verification server attesting the game server (simulated TPM), clients checking
//! # its play ticket:
//! cargo run --release -p tickwire-mio --bin tickwire-demo -- --with-vs
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::Duration;

use clap::Parser;
use tickwire_core::vs::{GsConfig, Measurement, VsConfig};
use tickwire_mio::demo::{run_clients, run_server, write_json, DemoOptions, DemoReport, IssuerArgs};
use tickwire_mio::vs::{binary_sha256, demo_config_sha256, run_vs, VsLink, VsOptions};

/// Runs a tickwire game server and clients over loopback UDP and reports what happened.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Number of clients.
    #[arg(long, default_value_t = 32)]
    clients: u64,
    /// Seconds the clients play.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Base seed for every endpoint's randomness.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[command(flatten)]
    issuer: IssuerArgs,
    /// Write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Also run a verification server (its own thread): the game server attests with a
    /// simulated TPM measuring this binary, and clients require its play ticket.
    #[arg(long)]
    with_vs: bool,
}

/// Starts a verification server for the demo on its own thread; returns its address.
fn start_vs(args: &Args) -> Result<(SocketAddr, VsLink), String> {
    let gs = GsConfig::default();
    let options = VsOptions {
        listen: "127.0.0.1:0".parse().expect("valid address"),
        issuer_seed: args.issuer.issuer_seed,
        seed: args.seed.wrapping_add(500),
        duration: Duration::from_secs_f64(args.seconds + 4.0),
        config: VsConfig {
            measurements: vec![Measurement {
                binary_sha256: binary_sha256().map_err(|e| e.to_string())?,
                config_sha256: demo_config_sha256(&gs),
            }],
            allow_unenrolled: true,
            ..VsConfig::default()
        },
    };
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let report = run_vs(
            &options,
            |addr| {
                let _ = tx.send(addr);
            },
            |_, _| {},
        );
        if let Ok(report) = report {
            println!(
                "verification server: {} join(s), {} re-attestation(s), {} receipt(s), rejected {:?}",
                report.joins, report.reattestations, report.receipts, report.rejections
            );
        }
    });
    let addr = rx
        .recv()
        .map_err(|_| "verification server failed to start".to_owned())?;
    let link = VsLink {
        addr,
        tpm: "simulated".into(),
        config_sha256: demo_config_sha256(&gs),
        gs,
    };
    Ok((addr, link))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut client_options = args.issuer.options(args.seed, args.seconds);
    // The server outlives the clients so they can leave normally before it shuts down.
    let mut server_options = DemoOptions {
        duration: client_options.duration + Duration::from_millis(1_500),
        ..client_options.clone()
    };
    if args.with_vs {
        match start_vs(&args) {
            Ok((addr, link)) => {
                println!("verification server on {addr}");
                server_options.vs = Some(link);
                client_options.check_play_ticket = true;
            }
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let (tx, rx) = mpsc::channel();
    let server = std::thread::spawn(move || {
        run_server(
            "127.0.0.1:0".parse().expect("valid address"),
            &server_options,
            |addr| {
                let _ = tx.send(addr);
            },
            |_, _| {},
        )
    });
    let Ok(addr) = rx.recv() else {
        eprintln!("server failed to start: {:?}", server.join());
        return ExitCode::FAILURE;
    };
    println!(
        "game server on {addr}; {} clients joining for {:.1} s",
        args.clients, args.seconds
    );
    let clients = match run_clients(addr, 0, args.clients, &client_options) {
        Ok(clients) => clients,
        Err(e) => {
            eprintln!("clients failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    let server = match server.join() {
        Ok(Ok(report)) => report,
        other => {
            eprintln!("server failed: {other:?}");
            return ExitCode::FAILURE;
        }
    };
    let report = DemoReport::build(Some(&server), &clients);
    print!("{}", report.render());
    if let Some(path) = &args.json {
        if let Err(e) = write_json(path, &report) {
            eprintln!("cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        println!("report written to {}", path.display());
    }
    if report.joined == report.clients {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "{} of {} clients did not join",
            report.clients - report.joined,
            report.clients
        );
        ExitCode::FAILURE
    }
}
