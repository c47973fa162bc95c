//! `tickwire-gs`: the demo game server as its own process.
//!
//! ```text
//! cargo run --release -p tickwire-mio --bin tickwire-gs -- --listen 127.0.0.1:4433 --seconds 30
//! # attested by a verification server, with a simulated TPM or a real one (feature `tpm`):
//! cargo run --release -p tickwire-mio --bin tickwire-gs -- --vs 127.0.0.1:4500 --tpm simulated
//! cargo run --release -p tickwire-mio --features tpm --bin tickwire-gs -- \
//!     --vs 127.0.0.1:4500 --tpm swtpm:host=127.0.0.1,port=2321
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use tickwire_core::vs::GsConfig;
use tickwire_mio::demo::{run_server, write_json, DemoReport, IssuerArgs};
use tickwire_mio::vs::{demo_config_sha256, VsLink};

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
    /// Verification server to attest to; without it the server admits on join tickets alone.
    #[arg(long)]
    vs: Option<SocketAddr>,
    /// TPM for attestation: `simulated`, or a TCTI (`swtpm:host=H,port=P`, `device:/dev/tpmrm0`;
    /// those need the `tpm` feature).
    #[arg(long, default_value = "simulated")]
    tpm: String,
    /// Game-server VS settings (TOML, `tickwire_core::vs::GsConfig`: timeouts, intervals); its
    /// SHA-256 is the measured configuration.
    #[arg(long)]
    gs_config: Option<PathBuf>,
}

/// The VS link from the arguments: the settings file's text is both parsed and measured.
fn vs_link(args: &Args, vs: SocketAddr) -> Result<VsLink, String> {
    let gs = match &args.gs_config {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let gs = toml::from_str::<GsConfig>(&text).map_err(|e| format!("{}: {e}", path.display()))?;
            gs.validate().map_err(|e| format!("{}: {e}", path.display()))?;
            gs
        }
        None => GsConfig::default(),
    };
    Ok(VsLink {
        addr: vs,
        tpm: args.tpm.clone(),
        config_sha256: demo_config_sha256(&gs),
        gs,
    })
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut options = args.issuer.options(args.seed, args.seconds);
    if let Some(vs) = args.vs {
        match vs_link(&args, vs) {
            Ok(link) => options.vs = Some(link),
            Err(e) => {
                eprintln!("tickwire-gs: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
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
