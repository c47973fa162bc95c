//! `tickwire-vs`: the verification server as its own process. It attests game servers
//! (`tickwire-gs --vs`), renews their play tickets, signs transcript receipts and revokes
//! silent ones.
//!
//! ```text
//! cargo build --release -p tickwire-mio
//! cargo run --release -p tickwire-mio --bin tickwire-vs -- --listen 127.0.0.1:4500 \
//!     --allow-gs-binary target/release/tickwire-gs --seconds 60
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tickwire_core::vs::VsConfig;
use tickwire_mio::demo::write_json;
use tickwire_mio::vs::{allow_binary, run_vs, VsOptions};

/// Runs a tickwire verification server.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// UDP address to listen on.
    #[arg(long, default_value = "127.0.0.1:4500")]
    listen: SocketAddr,
    /// Seconds to run.
    #[arg(long, default_value_t = 60.0)]
    seconds: f64,
    /// Seed for the endpoint's randomness and identity.
    #[arg(long, default_value_t = 3)]
    seed: u64,
    /// Seed of the VS signing key (the demo's issuer seed: clients and game servers derive the
    /// same key).
    #[arg(long, default_value_t = 1)]
    issuer_seed: u64,
    /// Verifier settings (TOML, `tickwire_core::vs::VsConfig`: measurements, enrolments,
    /// timeouts). Without it: defaults, and unenrolled game servers are admitted.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Also allow the measurement of this game-server binary with the default GS settings
    /// (repeatable).
    #[arg(long)]
    allow_gs_binary: Vec<PathBuf>,
    /// Write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn load(args: &Args) -> Result<VsConfig, String> {
    let mut config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let config: VsConfig = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
            config
                .validate()
                .map_err(|e| format!("{}: {e}", path.display()))?;
            config
        }
        None => VsConfig {
            allow_unenrolled: true,
            ..VsConfig::default()
        },
    };
    for binary in &args.allow_gs_binary {
        allow_binary(&mut config, binary).map_err(|e| format!("{}: {e}", binary.display()))?;
    }
    Ok(config)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = match load(&args) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("tickwire-vs: {e}");
            return ExitCode::FAILURE;
        }
    };
    let options = VsOptions {
        listen: args.listen,
        issuer_seed: args.issuer_seed,
        seed: args.seed,
        duration: Duration::from_secs_f64(args.seconds.max(0.1)),
        config,
    };
    let result = run_vs(
        &options,
        |addr| println!("tickwire-vs listening on {addr}"),
        |report, elapsed| {
            println!(
                "t={:>5.1}s joins {} rejected {} re-attestations {} receipts {}",
                elapsed.as_secs_f64(),
                report.joins,
                report.rejections.len(),
                report.reattestations,
                report.receipts
            );
        },
    );
    match result {
        Ok(report) => {
            for rejection in &report.rejections {
                println!("rejected: {rejection}");
            }
            if let Some(path) = &args.json {
                if let Err(e) = write_json(path, &report) {
                    eprintln!("cannot write {}: {e}", path.display());
                    return ExitCode::FAILURE;
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tickwire-vs: {e}");
            ExitCode::FAILURE
        }
    }
}
