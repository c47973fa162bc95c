//! `tickwire-vs`: the verification server as its own process. It attests game servers
//! (`tickwire-gs --vs`), renews their play tickets, signs transcript receipts and revokes
//! silent ones.
//!
//! ```text
//! cargo build --release -p tickwire-apps
//! tickwire-vs keygen /tmp/tw/issuer.pem            # once: writes issuer.pem and issuer.pem.pub
//! tickwire-vs --issuer-key /tmp/tw/issuer.pem --listen 127.0.0.1:4500 \
//!     --allow-gs-binary target/release/tickwire-gs --seconds 60
//! ```
//!
//! `--issuer-key` is the VS signing key (PKCS#8 PEM): it signs play tickets and receipts,
//! and in the demo the clients' join tickets too; game servers and clients trust its public
//! half. `--insecure-demo-issuer-seed N` replaces it with a key anyone can derive from `N`:
//! for throwaway demos only. Without `--identity-key` the endpoint's identity is fresh from the
//! OS each run (it says so). The server runs with the library's default limits.
//!
//! Bad input (a duration that is not a finite number of seconds up to a year, a missing or
//! malformed key or settings file, settings that fail validation or admit no game server, a
//! port in use) exits with code 2 and one line on stderr.

use std::cell::Cell;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tickwire_apps::cli::{
    self, check_output, fail, identity_key, load_toml, parse_seconds, IssuerSource, UsageError,
};
use tickwire_apps::demo::{write_json, DEMO_KEY_ID};
use tickwire_apps::vs::{allow_binary, run_vs, vs_endpoint_config, VsOptions};
use tickwire_core::vs::VsConfig;

const BIN: &str = "tickwire-vs";

/// Runs a tickwire verification server.
#[derive(Debug, Parser)]
#[command(version, args_conflicts_with_subcommands = true)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// UDP address to listen on.
    #[arg(long, default_value = "127.0.0.1:4500")]
    listen: SocketAddr,
    /// Seconds to run (finite, above 0, at most a year).
    #[arg(long, default_value = "60", value_parser = parse_seconds, allow_negative_numbers = true)]
    seconds: Duration,
    /// The endpoint's Ed25519 identity key (PKCS#8 PEM, from `keygen`). Without it, a fresh
    /// one from the OS each run.
    #[arg(long, value_name = "PATH")]
    identity_key: Option<PathBuf>,
    /// The VS signing key (PKCS#8 PEM private key, from `keygen`): play tickets, receipts,
    /// and the demo's join tickets. Required unless `--insecure-demo-issuer-seed`.
    #[arg(long, value_name = "PATH")]
    issuer_key: Option<PathBuf>,
    /// INSECURE, demos only: sign with a key derived from this public number instead of
    /// `--issuer-key` (anyone can forge tickets with it).
    #[arg(long, value_name = "N", conflicts_with = "issuer_key")]
    insecure_demo_issuer_seed: Option<u64>,
    /// Verifier settings (TOML, `tickwire_core::vs::VsConfig`: measurements, enrolments,
    /// timeouts). Without it: defaults, and unenrolled game servers are admitted.
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Also allow the measurement of this game-server binary with the default GS settings
    /// (repeatable).
    #[arg(long, value_name = "PATH")]
    allow_gs_binary: Vec<PathBuf>,
    /// Write the report as JSON here at the end.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Writes a new Ed25519 key pair: the private key at PATH (PKCS#8 PEM, mode 0600) and the
    /// public key at PATH.pub. Never overwrites.
    Keygen {
        /// Where to write the private key.
        path: PathBuf,
    },
}

/// The verifier's settings: the file (validated) or the defaults, plus allowed binaries.
fn load(args: &Args) -> Result<VsConfig, UsageError> {
    let mut config = match &args.config {
        Some(path) => {
            let config = load_toml::<VsConfig, _>("--config", path, VsConfig::validate)?;
            if config.key_id != DEMO_KEY_ID {
                return Err(UsageError::new(format!(
                    "--config {}: key_id must be {DEMO_KEY_ID}, the key id the demo game servers \
                     and clients trust",
                    path.display()
                )));
            }
            config
        }
        None => VsConfig {
            allow_unenrolled: true,
            ..VsConfig::default()
        },
    };
    for binary in &args.allow_gs_binary {
        allow_binary(&mut config, binary)
            .map_err(|e| UsageError::new(format!("--allow-gs-binary {}: {e}", binary.display())))?;
    }
    if !config.allow_unenrolled && config.game_servers.is_empty() {
        return Err(UsageError::new(
            "no game server is enrolled and allow_unenrolled is false, so every game server would be \
             refused; enrol game servers in --config or set allow_unenrolled = true",
        ));
    }
    if config.measurements.is_empty() {
        return Err(UsageError::new(
            "no game-server measurement is allowed, so every game server would be refused; \
             pass --allow-gs-binary PATH or list measurements in --config",
        ));
    }
    Ok(config)
}

/// Everything from the arguments, checked before anything is bound.
fn options(args: &Args) -> Result<VsOptions, UsageError> {
    if let Some(path) = &args.json {
        check_output("--json", path)?;
    }
    let config = load(args)?;
    let issuer = IssuerSource {
        bin: BIN,
        path: args.issuer_key.as_deref(),
        insecure_seed: args.insecure_demo_issuer_seed,
    }
    .signing_key()?;
    let (identity, ephemeral) = identity_key(args.identity_key.as_deref())?;
    cli::announce_identity(&identity, ephemeral);
    Ok(VsOptions {
        listen: args.listen,
        identity,
        issuer,
        endpoint: vs_endpoint_config(),
        duration: args.seconds,
        config,
    })
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(Command::Keygen { path }) = &args.command {
        return match cli::keygen(path) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(BIN, e),
        };
    }
    let options = match options(&args) {
        Ok(options) => options,
        Err(e) => return fail(BIN, e),
    };
    let started = Cell::new(false);
    let result = run_vs(
        &options,
        |addr| {
            started.set(true);
            println!("tickwire-vs listening on {addr}");
        },
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
                    eprintln!("{BIN}: cannot write {}: {e}", path.display());
                    return ExitCode::FAILURE;
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) if !started.get() => fail(BIN, cli::setup_error(&e)),
        Err(e) => {
            eprintln!("{BIN}: {e}");
            ExitCode::FAILURE
        }
    }
}
