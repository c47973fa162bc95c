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
use tickwire_admin::ServerKind;
use tickwire_apps::cli::{
    self, check_output, fail, identity_key, load_toml, overlay, overlay_some, parse_seconds, IssuerSource,
    UsageError,
};
use tickwire_apps::demo::{write_json, DEMO_KEY_ID};
use tickwire_apps::operator::{init_logging, Operator};
use tickwire_apps::settings::{load_settings, to_toml, ServerArgs, VsSettings};
use tickwire_apps::vs::{allow_binary, run_vs_with, VsOptions};
use tickwire_core::vs::VsConfig;

const BIN: &str = "tickwire-vs";

/// Runs a tickwire verification server. Every option can also be set in the `--config` file
/// (TOML, same names with `_`); an option given here overrides the file.
#[derive(Debug, Parser)]
#[command(version, args_conflicts_with_subcommands = true)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    server: ServerArgs,
    /// UDP address to listen on [default: 127.0.0.1:4500].
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Accept operator commands (`/v1/…`: revoke, list revocations and game servers, export
    /// receipts) on the admin endpoint from requests bearing the token in this file
    /// (`Authorization: Bearer TOKEN`; at least 16 characters).
    #[arg(long, value_name = "PATH")]
    admin_token_file: Option<PathBuf>,
    /// The VS signing key (PKCS#8 PEM private key, from `keygen`): play tickets, receipts,
    /// and the demo's join tickets. Required unless `--insecure-demo-issuer-seed`.
    #[arg(long, value_name = "PATH")]
    issuer_key: Option<PathBuf>,
    /// INSECURE, demos only: sign with a key derived from this public number instead of
    /// `--issuer-key` (anyone can forge tickets with it).
    #[arg(long, value_name = "N", conflicts_with = "issuer_key")]
    insecure_demo_issuer_seed: Option<u64>,
    /// Verifier settings (TOML, `tickwire_core::vs::VsConfig`: measurements, enrolments,
    /// timeouts), replacing the config file's `[verifier]`. Without either: defaults, and
    /// unenrolled game servers are admitted.
    #[arg(long, value_name = "PATH")]
    verifier_config: Option<PathBuf>,
    /// Also allow the measurement of this game-server binary with the default GS settings
    /// (repeatable; added to the config file's list).
    #[arg(long, value_name = "PATH")]
    allow_gs_binary: Vec<PathBuf>,
    /// Keep the verifier's promises (revocations, revoked game servers, challenge nonces,
    /// receipts) in this SQLite file, or in the PostgreSQL database a `postgres://` URL names
    /// (shared by several instances), and restore them at start; without it they are kept in
    /// memory only and forgotten at exit.
    #[arg(long, value_name = "PATH")]
    store: Option<PathBuf>,
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

/// The effective settings: the `--config` file (or the defaults), overridden by the flags
/// given.
fn settings(args: &Args) -> Result<VsSettings, UsageError> {
    let mut settings: VsSettings =
        load_settings(args.server.config.as_deref(), |s: &VsSettings| &s.endpoint)?;
    if let Some(path) = &args.verifier_config {
        settings.verifier = Some(load_toml("--verifier-config", path, VsConfig::validate)?);
    } else if let Some(verifier) = &settings.verifier {
        verifier
            .validate()
            .map_err(|e| UsageError::new(format!("--config [verifier]: {e}")))?;
    }
    args.server.overlay(settings.common());
    let s = &mut settings;
    overlay(&mut s.listen, args.listen);
    overlay_some(&mut s.admin_token_file, args.admin_token_file.clone());
    if args.issuer_key.is_some() || args.insecure_demo_issuer_seed.is_some() {
        s.issuer_key = args.issuer_key.clone();
        s.insecure_demo_issuer_seed = args.insecure_demo_issuer_seed;
    }
    s.allow_gs_binary.extend(args.allow_gs_binary.iter().cloned());
    overlay_some(&mut s.store, args.store.clone());
    Ok(settings)
}

/// The verifier's settings: `[verifier]` or the defaults, plus allowed binaries; refused when
/// every game server would be refused.
fn verifier_config(settings: &VsSettings) -> Result<VsConfig, UsageError> {
    let mut config = match &settings.verifier {
        Some(config) => {
            if config.key_id != DEMO_KEY_ID {
                return Err(UsageError::new(format!(
                    "verifier settings: key_id must be {DEMO_KEY_ID}, the key id the demo game \
                     servers and clients trust"
                )));
            }
            config.clone()
        }
        None => VsConfig {
            allow_unenrolled: true,
            ..VsConfig::default()
        },
    };
    for binary in &settings.allow_gs_binary {
        allow_binary(&mut config, binary)
            .map_err(|e| UsageError::new(format!("--allow-gs-binary {}: {e}", binary.display())))?;
    }
    if !config.allow_unenrolled && config.game_servers.is_empty() {
        return Err(UsageError::new(
            "no game server is enrolled and allow_unenrolled is false, so every game server would be \
             refused; enrol game servers in the verifier settings or set allow_unenrolled = true",
        ));
    }
    if config.measurements.is_empty() {
        return Err(UsageError::new(
            "no game-server measurement is allowed, so every game server would be refused; \
             pass --allow-gs-binary PATH or list measurements in the verifier settings",
        ));
    }
    Ok(config)
}

/// Everything from the settings, checked before anything is bound.
fn options(settings: &VsSettings) -> Result<VsOptions, UsageError> {
    if let Some(path) = &settings.json {
        check_output("--json", path)?;
    }
    let config = verifier_config(settings)?;
    let duration = match settings.seconds {
        Some(seconds) => parse_seconds(&seconds.to_string()).map_err(UsageError::new)?,
        None => Duration::from_secs_f64(cli::MAX_SECONDS),
    };
    let issuer = IssuerSource {
        bin: BIN,
        path: settings.issuer_key.as_deref(),
        insecure_seed: settings.insecure_demo_issuer_seed,
    }
    .signing_key()?;
    let (identity, ephemeral) = identity_key(settings.identity_key.as_deref())?;
    cli::announce_identity(&identity, ephemeral);
    Ok(VsOptions {
        listen: settings.listen,
        identity,
        issuer,
        endpoint: settings.endpoint.clone(),
        duration,
        config,
        store: settings.store.clone(),
        token_key_file: settings.token_key_file.clone(),
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
    let settings = match settings(&args) {
        Ok(settings) => settings,
        Err(e) => return fail(BIN, e),
    };
    if args.server.print_config {
        print!("{}", to_toml(&settings));
        return ExitCode::SUCCESS;
    }
    init_logging(settings.log_format);
    let options = match options(&settings) {
        Ok(options) => options,
        Err(e) => return fail(BIN, e),
    };
    let mut operator = Operator::new(settings.drain);
    if let Err(e) = operator.handle_signals() {
        return fail(BIN, format!("cannot install the SIGTERM/SIGINT handlers: {e}"));
    }
    if let Some(addr) = settings.admin {
        match operator.serve_admin(addr, ServerKind::VerificationServer) {
            Ok(bound) => println!("tickwire-vs admin on http://{bound} (/metrics, /health, /ready)"),
            Err(e) => return fail(BIN, e),
        }
    }
    if let Some(path) = &settings.admin_token_file {
        if let Err(e) = operator.enable_commands(path) {
            return fail(BIN, e);
        }
    }
    let started = Cell::new(false);
    let result = run_vs_with(
        &options,
        &mut operator,
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
            if let Some(path) = &settings.json {
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
