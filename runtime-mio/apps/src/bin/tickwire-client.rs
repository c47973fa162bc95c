//! `tickwire-client`: demo clients as their own process, against a running `tickwire-gs`.
//!
//! ```text
//! tickwire-client --issuer-key /tmp/tw/issuer.pem --server 127.0.0.1:4433 --clients 8 --seconds 10
//! # mint a ticket for the smol example client: the ticket at /tmp/tw/ticket.bin, a fresh
//! # identity key it names at /tmp/tw/ticket.bin.key (PKCS#8 PEM, mode 0600):
//! tickwire-client --issuer-key /tmp/tw/issuer.pem --write-ticket /tmp/tw/ticket.bin
//! ```
//!
//! Demo clients mint their own join tickets with the issuer's private key (`--issuer-key`),
//! standing in for a lobby; `--insecure-demo-issuer-seed N` replaces it with a key anyone can
//! derive from `N`, for throwaway demos only. Every client has a fresh identity key and fresh
//! secrets from the OS, and every ticket a random `jti`. Clients retry retryable rejections,
//! waiting as long as the server says (`RATE_LIMITED`, `SERVER_FULL`), so more clients than
//! a server's per-address burst (8 by default) still join, a few per second.
//!
//! Bad input (a duration that is not a finite number of seconds up to a year, an option that
//! would have no effect, a missing or malformed key file) exits with code 2 and one line on
//! stderr.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use ed25519_dalek::SigningKey;
use tickwire_apps::cli::{check_output, check_peer, fail, parse_seconds, IssuerSource, UsageError};
use tickwire_apps::demo::{
    demo_config, demo_ticket, run_clients, write_json, ClientOptions, DemoReport, DEMO_GS_ID,
};

const BIN: &str = "tickwire-client";

/// Runs tickwire demo clients against a game server.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The game server's UDP address.
    #[arg(long, default_value = "127.0.0.1:4433")]
    server: SocketAddr,
    /// Number of clients (1 to 1024).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=1024))]
    clients: u64,
    /// Player id of the first client (the tickets' subject; the next ones count up).
    #[arg(long, default_value_t = 0)]
    first: u64,
    /// Seconds to play (finite, above 0, at most a year); it exits earlier once every client's
    /// session has ended (a draining server closes them) or been refused for good.
    #[arg(long, default_value = "10", value_parser = parse_seconds, allow_negative_numbers = true)]
    seconds: Duration,
    /// The ticket issuer's private key (PKCS#8 PEM, from `tickwire-vs keygen`): the clients
    /// sign their own join tickets with it. Required unless `--insecure-demo-issuer-seed`.
    #[arg(long, value_name = "PATH")]
    issuer_key: Option<PathBuf>,
    /// INSECURE, demos only: sign tickets with a key derived from this public number instead
    /// of `--issuer-key` (anyone can forge tickets with it).
    #[arg(long, value_name = "N", conflicts_with = "issuer_key")]
    insecure_demo_issuer_seed: Option<u64>,
    /// Game server id that tickets name.
    #[arg(long, default_value_t = DEMO_GS_ID)]
    gs_id: u64,
    /// Write the report as JSON here at the end.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
    /// Require the game server's play ticket, signed by the issuer key (the verification
    /// server's; use with a `tickwire-gs --vs`).
    #[arg(long)]
    check_play_ticket: bool,
    /// Instead of playing, write a join ticket for player `--first` to PATH and a fresh
    /// identity key it names to PATH.key (PKCS#8 PEM, mode 0600; never overwritten), then exit.
    #[arg(
        long,
        value_name = "PATH",
        conflicts_with_all = ["server", "clients", "seconds", "json", "check_play_ticket"]
    )]
    write_ticket: Option<PathBuf>,
}

/// Writes a ticket for a fresh identity: the key first (it refuses to overwrite), then the
/// ticket naming it.
fn write_ticket(args: &Args, issuer: &SigningKey, path: &Path) -> Result<(), UsageError> {
    check_output("--write-ticket", path)?;
    let mut key_path = path.as_os_str().to_owned();
    key_path.push(".key");
    let key_path = PathBuf::from(key_path);
    tickwire_udp::os::generate_key_file(&key_path).map_err(|e| {
        UsageError::new(format!(
            "--write-ticket: cannot write the identity key: {e} (key files are never \
             overwritten; remove it or choose another path)"
        ))
    })?;
    let identity = tickwire_udp::os::load_signing_key(&key_path).map_err(UsageError::new)?;
    let ticket = demo_ticket(issuer, args.gs_id, args.first, &identity.verifying_key())
        .map_err(|e| UsageError::new(format!("cannot mint a ticket: {e}")))?;
    std::fs::write(path, ticket.to_bytes())
        .map_err(|e| UsageError::new(format!("--write-ticket {}: {e}", path.display())))?;
    println!(
        "ticket for player {} (valid 2 minutes) written to {}; its identity key to {}",
        args.first,
        path.display(),
        key_path.display()
    );
    Ok(())
}

/// Everything from the arguments, checked before any client starts.
fn options(args: &Args, issuer: SigningKey) -> Result<ClientOptions, UsageError> {
    check_peer("--server", args.server)?;
    if args.first.checked_add(args.clients).is_none() {
        return Err(UsageError::new(
            "--first plus --clients overflows the player ids; choose a smaller --first",
        ));
    }
    if let Some(path) = &args.json {
        check_output("--json", path)?;
    }
    let trusted_vs = args.check_play_ticket.then(|| issuer.verifying_key());
    Ok(ClientOptions {
        issuer,
        gs_id: args.gs_id,
        config: demo_config(),
        duration: args.seconds,
        trusted_vs,
    })
}

fn main() -> ExitCode {
    let args = Args::parse();
    let issuer = IssuerSource {
        bin: BIN,
        path: args.issuer_key.as_deref(),
        insecure_seed: args.insecure_demo_issuer_seed,
    }
    .signing_key();
    let issuer = match issuer {
        Ok(issuer) => issuer,
        Err(e) => return fail(BIN, e),
    };
    if let Some(path) = &args.write_ticket {
        return match write_ticket(&args, &issuer, path) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(BIN, e),
        };
    }
    let options = match options(&args, issuer) {
        Ok(options) => options,
        Err(e) => return fail(BIN, e),
    };
    let clients = match run_clients(args.server, args.first, args.clients, &options) {
        Ok(clients) => clients,
        Err(e) => {
            eprintln!("{BIN}: {e}");
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
            eprintln!("{BIN}: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    if report.joined == report.clients {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
