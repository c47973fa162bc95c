//! `tickwire-gs`: the demo game server as its own process.
//!
//! ```text
//! tickwire-vs keygen /tmp/tw/issuer.pem            # once: the ticket issuer's key pair
//! tickwire-gs --issuer-key /tmp/tw/issuer.pem.pub --listen 127.0.0.1:4433 --seconds 30
//! # attested by a verification server, with a simulated TPM or a real one (feature `tpm`);
//! # a game server enrolled at its VS needs a stable identity:
//! tickwire-gs keygen /tmp/tw/gs.pem
//! tickwire-gs --issuer-key /tmp/tw/issuer.pem.pub --identity-key /tmp/tw/gs.pem \
//!     --vs 127.0.0.1:4500 --tpm simulated
//! tickwire-gs --issuer-key /tmp/tw/issuer.pem.pub --vs 127.0.0.1:4500 \
//!     --tpm swtpm:host=127.0.0.1,port=2321
//! # every session recorded, one file each (check with tickwire-replay verify):
//! tickwire-gs --issuer-key /tmp/tw/issuer.pem.pub --vs 127.0.0.1:4500 --record /tmp/tw/rec
//! ```
//!
//! `--issuer-key` is the public key of the ticket issuer, which is also the verification
//! server's play-ticket key (a private key file works too). `--insecure-demo-issuer-seed N`
//! replaces it with a key anyone can derive from `N`: for throwaway demos only. Without
//! `--identity-key` the identity is fresh from the OS each run. The server runs with the
//! library's default limits (8 handshakes in a burst per source address, 4 per second).
//!
//! Bad input (a duration that is not a finite number of seconds up to a year, an option that
//! would have no effect, a missing or malformed key or settings file, a port in use) exits
//! with code 2 and one line on stderr.

use std::cell::Cell;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use ed25519_dalek::VerifyingKey;
use tickwire_admin::ServerKind;
use tickwire_apps::cli::{
    self, check_output, fail, identity_key, load_toml, overlay, overlay_some, parse_seconds, IssuerSource,
    UsageError,
};
use tickwire_apps::demo::{run_server_webtransport, write_json, DemoReport, ServerOptions};
use tickwire_apps::operator::{init_logging, Operator};
use tickwire_apps::settings::{load_settings, to_toml, GsSettings, ServerArgs};
use tickwire_apps::vs::{demo_config_sha256, vs_keys, VsLink};
use tickwire_apps::webtransport::{base64_hash, unix_ms_now, CertificateJson};
use tickwire_core::vs::GsConfig;
use tickwire_core::webtransport::WebTransportConfig;

const BIN: &str = "tickwire-gs";

/// Runs the tickwire demo game server. Every option can also be set in the `--config` file
/// (TOML, same names with `_`); an option given here overrides the file.
#[derive(Debug, Parser)]
#[command(version, args_conflicts_with_subcommands = true)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    server: ServerArgs,
    /// UDP address to listen on [default: 127.0.0.1:4433].
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// The ticket issuer's (and verification server's) public key it trusts: PEM, `PATH.pub`
    /// of `tickwire-vs keygen PATH` (a private key file works too). Required unless
    /// `--insecure-demo-issuer-seed`.
    #[arg(long, value_name = "PATH")]
    issuer_key: Option<PathBuf>,
    /// INSECURE, demos only: trust an issuer key derived from this public number instead of
    /// `--issuer-key` (anyone can sign tickets with it).
    #[arg(long, value_name = "N", conflicts_with = "issuer_key")]
    insecure_demo_issuer_seed: Option<u64>,
    /// Game server id that join tickets must name [default: 42].
    #[arg(long)]
    gs_id: Option<u64>,
    /// Verification server to attest to; without it the server admits on join tickets alone.
    #[arg(long, value_name = "ADDR")]
    vs: Option<SocketAddr>,
    /// Further verification servers to fail over to, in order, when the session to `--vs`
    /// is lost (repeatable; instances sharing its keys).
    #[arg(long, value_name = "ADDR")]
    vs_failover: Vec<SocketAddr>,
    /// TPM for attestation (with `--vs`): `simulated` (the default), or a TCTI
    /// (`swtpm:host=H,port=P`, `device:/dev/tpmrm0`; those need the `tpm` feature).
    #[arg(long, value_name = "SPEC")]
    tpm: Option<String>,
    /// Game-server VS settings (with `--vs`; TOML, `tickwire_core::vs::GsConfig`: timeouts,
    /// intervals), replacing the config file's `[gs]`; their SHA-256 is the measured
    /// configuration.
    #[arg(long, value_name = "PATH")]
    gs_config: Option<PathBuf>,
    /// Keep consumed join-ticket ids in this SQLite file, so a ticket used before a restart is
    /// refused after it (`TICKET_REPLAYED`); without it they are kept in memory only.
    #[arg(long, value_name = "PATH")]
    store: Option<PathBuf>,
    /// Record every client session into this directory (created if missing), one file per
    /// session, `session-<id>.twrec` (`PROTOCOL.md` §11); check them with `tickwire-replay`.
    #[arg(long, value_name = "DIR")]
    record: Option<PathBuf>,
    /// For browser clients: accept WebTransport sessions on the same socket (path
    /// `/tickwire`, PROTOCOL.md §12), presenting a self-signed ECDSA P-256 certificate (13
    /// days, rotated with 3 days left, the next one listed a day ahead), and write the hashes
    /// browsers pin with WebTransport `serverCertificateHashes` to this file as JSON, replaced
    /// atomically whenever the list changes.
    #[arg(long, value_name = "PATH")]
    webtransport_cert_json: Option<PathBuf>,
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
fn settings(args: &Args) -> Result<GsSettings, UsageError> {
    let mut settings: GsSettings =
        load_settings(args.server.config.as_deref(), |s: &GsSettings| &s.endpoint)?;
    if let Some(gs) = &settings.gs {
        gs.validate()
            .map_err(|e| UsageError::new(format!("--config [gs]: {e}")))?;
    }
    args.server.overlay(settings.common());
    let s = &mut settings;
    overlay(&mut s.listen, args.listen);
    if args.issuer_key.is_some() || args.insecure_demo_issuer_seed.is_some() {
        s.issuer_key = args.issuer_key.clone();
        s.insecure_demo_issuer_seed = args.insecure_demo_issuer_seed;
    }
    overlay(&mut s.gs_id, args.gs_id);
    overlay_some(&mut s.store, args.store.clone());
    overlay_some(&mut s.record, args.record.clone());
    overlay_some(&mut s.webtransport_cert_json, args.webtransport_cert_json.clone());
    overlay_some(&mut s.vs, args.vs);
    s.vs_failover.extend(args.vs_failover.iter().copied());
    overlay_some(&mut s.tpm, args.tpm.clone());
    if let Some(path) = &args.gs_config {
        if s.vs.is_some() {
            s.gs = Some(load_toml("--gs-config", path, GsConfig::validate)?);
        } else {
            return Err(no_effect_without_vs("--gs-config"));
        }
    }
    Ok(settings)
}

/// `flag` configures attestation, which needs `--vs`.
fn no_effect_without_vs(flag: &str) -> UsageError {
    UsageError::new(format!(
        "{flag} has no effect without --vs ADDR (it configures attestation to a verification \
         server); add --vs or drop {flag}"
    ))
}

/// The VS link from the settings: the `[gs]` settings are both used and measured. Without
/// `vs`, the attestation settings would have no effect: that is an error.
fn vs_link(settings: &GsSettings, issuer: &VerifyingKey) -> Result<Option<VsLink>, UsageError> {
    let Some(addr) = settings.vs else {
        return Ok(None);
    };
    cli::check_peer("--vs", addr)?;
    let gs = settings.gs.clone().unwrap_or_default();
    for failover in &settings.vs_failover {
        cli::check_peer("--vs-failover", *failover)?;
    }
    Ok(Some(VsLink {
        addr,
        failover: settings.vs_failover.clone(),
        tpm: settings.tpm.clone().unwrap_or_else(|| "simulated".into()),
        vs_keys: vs_keys(issuer),
        config_sha256: demo_config_sha256(&gs),
        gs,
    }))
}

/// Everything from the settings, checked before anything is bound: options without effect
/// first, then files.
fn options(settings: &GsSettings) -> Result<ServerOptions, UsageError> {
    if settings.vs.is_none() {
        for (given, flag) in [
            (settings.gs.is_some(), "--gs-config"),
            (settings.tpm.is_some(), "--tpm"),
            (!settings.vs_failover.is_empty(), "--vs-failover"),
        ] {
            if given {
                return Err(no_effect_without_vs(flag));
            }
        }
    }
    if let Some(path) = &settings.json {
        check_output("--json", path)?;
    }
    if let Some(path) = &settings.webtransport_cert_json {
        check_output("--webtransport-cert-json", path)?;
    }
    let duration = match settings.seconds {
        Some(seconds) => parse_seconds(&seconds.to_string()).map_err(UsageError::new)?,
        None => Duration::from_secs_f64(cli::MAX_SECONDS),
    };
    let trusted_issuer = IssuerSource {
        bin: BIN,
        path: settings.issuer_key.as_deref(),
        insecure_seed: settings.insecure_demo_issuer_seed,
    }
    .verifying_key()?;
    let vs = vs_link(settings, &trusted_issuer)?;
    let (identity, ephemeral) = identity_key(settings.identity_key.as_deref())?;
    cli::announce_identity(&identity, ephemeral);
    Ok(ServerOptions {
        identity,
        trusted_issuer,
        gs_id: settings.gs_id,
        config: settings.endpoint.clone(),
        duration,
        vs,
        store: settings.store.clone(),
        token_key_file: settings.token_key_file.clone(),
        record: settings.record.clone(),
    })
}

fn main() -> ExitCode {
    // tpm2-tss logs its own errors to stderr (three lines for a missing device) on top of the
    // one line we print; keep it quiet unless the operator asked for its log.
    if std::env::var_os("TSS2_LOG").is_none() {
        std::env::set_var("TSS2_LOG", "all+NONE");
    }
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
        match operator.serve_admin(addr, ServerKind::GameServer) {
            Ok(bound) => println!("tickwire-gs admin on http://{bound} (/metrics, /health, /ready)"),
            Err(e) => return fail(BIN, e),
        }
    }
    let mut certificate = match &settings.webtransport_cert_json {
        Some(path) => match CertificateJson::start(path, unix_ms_now()) {
            Ok(certificate) => {
                let current = certificate.rotation().current();
                println!(
                    "tickwire-gs webtransport certificate sha-256 {} until {} (unix ms) in {}",
                    base64_hash(&current.sha256()),
                    current.not_after_unix_ms(),
                    path.display()
                );
                Some(certificate)
            }
            Err(e) => return fail(BIN, format!("--webtransport-cert-json {}: {e}", path.display())),
        },
        None => None,
    };
    let admin_state = operator.admin_state();
    let publish_certificate = |certificate: &CertificateJson| {
        if let Some(state) = &admin_state {
            state.set_webtransport_certificate_not_after(Some(
                certificate.rotation().current().not_after_unix_ms(),
            ));
        }
    };
    if let Some(certificate) = &certificate {
        publish_certificate(certificate);
    }
    let gs_id = settings.gs_id;
    let started = Cell::new(false);
    // With a certificate, browsers join over WebTransport on the same socket (PROTOCOL.md §12).
    let webtransport = certificate
        .as_ref()
        .map(|c| (WebTransportConfig::default(), c.rotation().current().clone()));
    let result = run_server_webtransport(
        settings.listen,
        &options,
        webtransport,
        &mut operator,
        |addr| {
            started.set(true);
            println!("tickwire-gs listening on {addr} (gs id {gs_id})");
        },
        |endpoint, elapsed| {
            if let Some(certificate) = &mut certificate {
                match certificate.on_time(unix_ms_now(), tickwire_udp::os::os_random) {
                    Ok(true) => {
                        // New sessions get the new certificate; open ones keep theirs.
                        let installed = endpoint.server_mut().map(|mut server| {
                            server.set_webtransport_certificate(certificate.rotation().current())
                        });
                        if let Some(Err(e)) = installed {
                            tracing::warn!(error = %e, "webtransport certificate: the endpoint refused the rotated one");
                        }
                        publish_certificate(certificate);
                    }
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "webtransport certificate: rotation failed, will retry")
                    }
                }
            }
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
                "served {} sessions ({} over WebTransport), {} ticks (lateness p99 {:.3} ms), \
                 {} inputs ({} over WebTransport), {} snapshots",
                server.sessions,
                server.webtransport_sessions,
                server.ticks,
                report.tick_lateness_ms.p99,
                server.inputs_received,
                server.webtransport_inputs_received,
                server.snapshots_sent
            );
            if let Some(path) = &settings.json {
                if let Err(e) = write_json(path, &server) {
                    eprintln!("{BIN}: cannot write {}: {e}", path.display());
                    return ExitCode::FAILURE;
                }
            }
            ExitCode::SUCCESS
        }
        // Nothing served yet: the address, the TPM or the OS refused what the operator asked.
        Err(e) if !started.get() => fail(BIN, cli::setup_error(&e)),
        Err(e) => {
            eprintln!("{BIN}: {e}");
            ExitCode::FAILURE
        }
    }
}
