//! `tickwire-client`: demo clients as their own process, against a running `tickwire-gs`.
//!
//! ```text
//! cargo run --release -p tickwire-mio --bin tickwire-client -- --server 127.0.0.1:4433 --clients 8 --seconds 10
//! # mint a ticket file for the smol example client (demo issuer, client index 0):
//! cargo run --release -p tickwire-mio --bin tickwire-client -- --write-ticket ticket.bin --first 0
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use tickwire_mio::demo::{demo_ticket, run_clients, write_json, DemoReport, IssuerArgs};

/// Runs tickwire demo clients against a game server.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The game server's UDP address.
    #[arg(long, default_value = "127.0.0.1:4433")]
    server: SocketAddr,
    /// Number of clients.
    #[arg(long, default_value_t = 8)]
    clients: u64,
    /// Index of the first client (identities and tickets derive from it).
    #[arg(long, default_value_t = 0)]
    first: u64,
    /// Seconds to play.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Seed for client identities and randomness.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    #[command(flatten)]
    issuer: IssuerArgs,
    /// Write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Require the game server's play ticket, checked against the demo verification server's
    /// key (use with a `tickwire-gs --vs`).
    #[arg(long)]
    check_play_ticket: bool,
    /// Instead of playing, write client `--first`'s join ticket to this file and exit.
    #[arg(long)]
    write_ticket: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut options = args.issuer.options(args.seed, args.seconds);
    options.check_play_ticket = args.check_play_ticket;
    if let Some(path) = &args.write_ticket {
        let ticket = demo_ticket(&options, args.first, 1);
        return match std::fs::write(path, ticket.to_bytes()) {
            Ok(()) => {
                println!(
                    "ticket for client {} (seed {}) written to {}",
                    args.first,
                    args.seed,
                    path.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("cannot write {}: {e}", path.display());
                ExitCode::FAILURE
            }
        };
    }
    let clients = match run_clients(args.server, args.first, args.clients, &options) {
        Ok(clients) => clients,
        Err(e) => {
            eprintln!("tickwire-client: {e}");
            return ExitCode::FAILURE;
        }
    };
    let report = DemoReport::build(None, &clients);
    print!("{}", report.render());
    for client in clients.iter().filter(|c| !c.joined) {
        println!(
            "client {}: {}",
            client.index,
            client.rejected.as_deref().unwrap_or("no answer")
        );
    }
    if let Some(path) = &args.json {
        if let Err(e) = write_json(path, &report) {
            eprintln!("cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    if report.joined == report.clients {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
