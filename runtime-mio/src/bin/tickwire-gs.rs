//! `tickwire-gs`: the demo game server as its own process.
//!
//! ```text
//! cargo run --release -p tickwire-mio --bin tickwire-gs -- --listen 127.0.0.1:4433 --seconds 30
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use tickwire_mio::demo::{run_server, write_json, DemoReport, IssuerArgs};

/// Runs the tickwire demo game server.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// UDP address to listen on.
    #[arg(long, default_value = "127.0.0.1:4433")]
    listen: SocketAddr,
    /// Seconds to run before shutting down gracefully.
    #[arg(long, default_value_t = 30.0)]
    seconds: f64,
    /// Seed for the server's randomness and identity.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[command(flatten)]
    issuer: IssuerArgs,
    /// Write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let options = args.issuer.options(args.seed, args.seconds);
    let result = run_server(
        args.listen,
        &options,
        |addr| println!("tickwire-gs listening on {addr} (gs id {})", args.issuer.gs_id),
        |endpoint, elapsed| {
            let stats = endpoint.endpoint_stats();
            println!(
                "t={:>5.1}s sessions live {:>4}  handshakes pending {:>3}  ticks {}",
                elapsed.as_secs_f64(),
                stats.sessions_live,
                stats.handshakes_pending,
                stats.ticks
            );
        },
    );
    match result {
        Ok(server) => {
            let report = DemoReport::build(Some(&server), &[]);
            println!(
                "served {} sessions, {} ticks (lateness p99 {:.3} ms), {} inputs, {} snapshots",
                server.sessions,
                server.ticks,
                report.tick_lateness_ms.p99,
                server.inputs_received,
                server.snapshots_sent
            );
            if let Some(path) = &args.json {
                if let Err(e) = write_json(path, &server) {
                    eprintln!("cannot write {}: {e}", path.display());
                    return ExitCode::FAILURE;
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tickwire-gs: {e}");
            ExitCode::FAILURE
        }
    }
}
