//! `tickwire-demo`: a game server and N clients on real loopback UDP in one process (server on
//! its own thread, all clients on another), then a report.
//!
//! ```text
//! cargo run --release -p tickwire-apps --bin tickwire-demo -- --clients 32 --seconds 5 --json report.json
//! # with a verification server attesting the game server (simulated TPM), clients checking
//! # its play ticket:
//! cargo run --release -p tickwire-apps --bin tickwire-demo -- --with-vs
//! ```
//!
//! It needs no keys: each run draws one issuer key from the OS, shared in-process by the
//! verification server (which signs play tickets with it), the game server (which trusts it)
//! and the clients (which sign their join tickets with it). Every identity and every
//! endpoint's secrets come from the OS too.
//!
//! `tickwire-demo web` is the lobby for browser clients ([`tickwire_apps::lobby`]): it serves
//! the demo page and hands each browser a join ticket and the game server's certificate
//! hashes, for a `tickwire-gs` started with `--webtransport-cert-json` and the same issuer:
//!
//! ```text
//! tickwire-gs --insecure-demo-issuer-seed 7 --listen 127.0.0.1:4433 --webtransport-cert-json /tmp/tw/cert.json
//! tickwire-demo web --insecure-demo-issuer-seed 7 --gs 127.0.0.1:4433 --cert-json /tmp/tw/cert.json
//! # then open http://127.0.0.1:8080/ (web/scripts/setup builds the page into web/demo/dist)
//! ```
//!
//! Bad input (a duration that is not a finite number of seconds up to a year, a client count
//! out of range) exits with code 2 and one line on stderr.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::Duration;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use clap::{Args as ClapArgs, Parser, Subcommand};
use ed25519_dalek::SigningKey;
use tickwire_apps::cli::{check_output, fail, parse_seconds, IssuerSource};
use tickwire_apps::demo::{
    demo_config, run_clients, run_server, write_json, ClientOptions, DemoReport, ServerOptions, DEMO_GS_ID,
    DEMO_SCHEMA,
};
use tickwire_apps::lobby::{Lobby, LobbyOptions};
use tickwire_apps::vs::{
    binary_sha256, demo_config_sha256, run_vs, vs_endpoint_config, vs_keys, VsLink, VsOptions,
};
use tickwire_core::vs::{GsConfig, Measurement, VsConfig};
use tickwire_core::Config;
use tickwire_udp::os_signing_key;

const BIN: &str = "tickwire-demo";

/// Runs a tickwire game server and clients over loopback UDP and reports what happened.
#[derive(Debug, Parser)]
#[command(version, args_conflicts_with_subcommands = true)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Number of clients (1 to 1024).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=1024))]
    clients: u64,
    /// Seconds the clients play (finite, above 0, at most a year).
    #[arg(long, default_value = "5", value_parser = parse_seconds, allow_negative_numbers = true)]
    seconds: Duration,
    /// Write the report as JSON here.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
    /// Also run a verification server (its own thread): the game server attests with a
    /// simulated TPM measuring this binary, and clients require its play ticket.
    #[arg(long)]
    with_vs: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serves the browser demo: the page (web/demo/dist) and `GET /session`, which mints a
    /// join ticket for the key given and returns the game server's WebTransport URL and
    /// certificate hashes.
    Web(WebArgs),
}

/// `tickwire-demo web`.
#[derive(Debug, ClapArgs)]
struct WebArgs {
    /// HTTP address of the lobby. Loopback by default; anything else exposes ticket minting
    /// to that network.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The game server's UDP address (`tickwire-gs --listen`), named in the session URL.
    #[arg(long, default_value = "127.0.0.1:4433")]
    gs: SocketAddr,
    /// The certificate-hash document the game server writes (`tickwire-gs
    /// --webtransport-cert-json PATH`); read on every request.
    #[arg(long, value_name = "PATH")]
    cert_json: PathBuf,
    /// The ticket issuer's private key (PEM, `tickwire-vs keygen PATH`); the game server
    /// must trust its public key.
    #[arg(long, value_name = "PATH")]
    issuer_key: Option<PathBuf>,
    /// INSECURE, demos only: mint tickets with the key derived from this public number (the
    /// game server's `--insecure-demo-issuer-seed`).
    #[arg(long, value_name = "N", conflicts_with = "issuer_key")]
    insecure_demo_issuer_seed: Option<u64>,
    /// Game server id tickets name.
    #[arg(long, default_value_t = DEMO_GS_ID)]
    gs_id: u64,
    /// The game server's WebTransport path.
    #[arg(long, default_value = tickwire_core::webtransport::DEFAULT_PATH)]
    path: String,
    /// Directory of the page's files.
    #[arg(long = "static", value_name = "DIR", default_value = "web/demo/dist")]
    static_dir: PathBuf,
    /// Stop after this many seconds (default: run until SIGINT or SIGTERM).
    #[arg(long, value_parser = parse_seconds, allow_negative_numbers = true)]
    seconds: Option<Duration>,
}

/// `tickwire-demo web`: binds the lobby, prints its address, serves until a signal or the
/// duration.
fn web(args: &WebArgs) -> ExitCode {
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
    if !args.static_dir.join("index.html").is_file() {
        eprintln!(
            "{BIN}: warning: {} has no index.html (run web/scripts/setup to build the page); serving /session only",
            args.static_dir.display()
        );
    }
    let options = LobbyOptions {
        listen: args.listen,
        static_dir: args.static_dir.clone(),
        game_server: args.gs,
        path: args.path.clone(),
        cert_json: args.cert_json.clone(),
        issuer,
        gs_id: args.gs_id,
        schema_hash: Config::schema_hash_of(DEMO_SCHEMA),
    };
    let lobby = match Lobby::bind(options) {
        Ok(lobby) => lobby,
        Err(e) => return fail(BIN, e),
    };
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(signal, stop.clone()) {
            return fail(BIN, format!("cannot install the signal handlers: {e}"));
        }
    }
    match lobby.local_addr() {
        Ok(addr) => println!(
            "tickwire-demo web: lobby listening on {addr} (open http://{addr}/; game server {}, certificate hashes from {})",
            args.gs,
            args.cert_json.display()
        ),
        Err(e) => return fail(BIN, e),
    }
    match lobby.serve(&stop, args.seconds.map(|s| Instant::now() + s)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{BIN}: lobby: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The game server's config. Every demo client comes from 127.0.0.1, and this server binds
/// loopback only, so the per-address admission limits that protect a public server (8
/// handshakes in a burst, 4 per second, 8 in progress per address) would only pace the demo's
/// own clients: they are raised to let a whole demo join at once. `tickwire-gs` keeps the
/// defaults.
fn loopback_config(clients: u64) -> Config {
    let mut config = demo_config();
    let clients = usize::try_from(clients).unwrap_or(usize::MAX);
    config.limits.handshake_burst_per_addr = config.limits.handshake_burst_per_addr.max(clients as u64);
    config.max_pending_handshakes_per_addr = config
        .max_pending_handshakes_per_addr
        .max(clients.min(config.max_pending_handshakes));
    config
}

/// Starts a verification server for the demo on its own thread; returns the game server's
/// link to it.
fn start_vs(args: &Args, issuer: &SigningKey) -> Result<VsLink, String> {
    let gs = GsConfig::default();
    let options = VsOptions {
        listen: "127.0.0.1:0".parse().expect("a literal socket address"),
        identity: os_signing_key().map_err(|e| e.to_string())?,
        issuer: issuer.clone(),
        endpoint: vs_endpoint_config(),
        duration: args.seconds + Duration::from_secs(4),
        config: VsConfig {
            measurements: vec![Measurement {
                binary_sha256: binary_sha256().map_err(|e| e.to_string())?,
                config_sha256: demo_config_sha256(&gs),
            }],
            allow_unenrolled: true,
            ..VsConfig::default()
        },
        store: None,
        token_key_file: None,
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
        match report {
            Ok(report) => println!(
                "verification server: {} join(s), {} re-attestation(s), {} receipt(s), rejected {:?}",
                report.joins, report.reattestations, report.receipts, report.rejections
            ),
            Err(e) => eprintln!("{BIN}: verification server: {e}"),
        }
    });
    let addr = rx
        .recv()
        .map_err(|_| "verification server failed to start".to_owned())?;
    println!("verification server on {addr}");
    Ok(VsLink {
        failover: Vec::new(),
        addr,
        tpm: "simulated".into(),
        vs_keys: vs_keys(&issuer.verifying_key()),
        config_sha256: demo_config_sha256(&gs),
        gs,
    })
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(Command::Web(web_args)) = &args.command {
        return web(web_args);
    }
    if let Some(path) = &args.json {
        if let Err(e) = check_output("--json", path) {
            return fail(BIN, e);
        }
    }
    // One issuer key per run, from the OS, never written anywhere.
    let (issuer, identity) = match (os_signing_key(), os_signing_key()) {
        (Ok(issuer), Ok(identity)) => (issuer, identity),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("{BIN}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let vs = if args.with_vs {
        match start_vs(&args, &issuer) {
            Ok(link) => Some(link),
            Err(e) => {
                eprintln!("{BIN}: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    let client_options = ClientOptions {
        issuer: issuer.clone(),
        gs_id: DEMO_GS_ID,
        config: demo_config(),
        duration: args.seconds,
        trusted_vs: vs.is_some().then(|| issuer.verifying_key()),
    };
    // The server outlives the clients so they can leave normally before it shuts down.
    let server_options = ServerOptions {
        identity,
        trusted_issuer: issuer.verifying_key(),
        gs_id: DEMO_GS_ID,
        config: loopback_config(args.clients),
        duration: args.seconds + Duration::from_millis(1_500),
        vs,
        store: None,
        token_key_file: None,
        record: None,
    };
    let (tx, rx) = mpsc::channel();
    let server = std::thread::spawn(move || {
        run_server(
            "127.0.0.1:0".parse().expect("a literal socket address"),
            &server_options,
            |addr| {
                let _ = tx.send(addr);
            },
            |_, _| {},
        )
    });
    let addr: SocketAddr = match rx.recv() {
        Ok(addr) => addr,
        Err(_) => {
            let why = match server.join() {
                Ok(Err(e)) => e.to_string(),
                other => format!("{other:?}"),
            };
            eprintln!("{BIN}: the game server failed to start: {why}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "game server on {addr}; {} clients joining for {:.1} s",
        args.clients,
        args.seconds.as_secs_f64()
    );
    let clients = match run_clients(addr, 0, args.clients, &client_options) {
        Ok(clients) => clients,
        Err(e) => {
            eprintln!("{BIN}: clients failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    let server = match server.join() {
        Ok(Ok(report)) => report,
        other => {
            eprintln!("{BIN}: server failed: {other:?}");
            return ExitCode::FAILURE;
        }
    };
    let report = DemoReport::build(Some(&server), &clients);
    print!("{}", report.render());
    if let Some(path) = &args.json {
        if let Err(e) = write_json(path, &report) {
            eprintln!("{BIN}: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        println!("report written to {}", path.display());
    }
    if report.joined == report.clients {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "{BIN}: {} of {} clients did not join",
            report.clients - report.joined,
            report.clients
        );
        ExitCode::FAILURE
    }
}
