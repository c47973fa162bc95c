//! `tickwire-sim`: runs a scenario in virtual time and prints its report; or runs a real-UDP
//! impairment proxy with the same link models.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use tickwire_sim::capture::keylog_path_for;
use tickwire_sim::engine::{Sim, SimOptions, MILLI};
use tickwire_sim::plot::render_svg;
use tickwire_sim::scenario::{Scenario, BUILTIN};

mod proxy;

#[derive(Debug, Parser)]
#[command(
    name = "tickwire-sim",
    version,
    about = "Deterministic network simulator for tickwire: real QUIC, TLS and Ed25519 in virtual time",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a scenario (the default command).
    Run(RunArgs),
    /// List the shipped scenarios and link presets.
    List,
    /// Forward real UDP between a listen address and an upstream, through a link preset.
    Proxy(proxy::ProxyArgs),
}

#[derive(Debug, Args)]
struct RunArgs {
    /// A shipped scenario's name (see `list`) or a path to a scenario TOML file.
    #[arg(default_value = "default")]
    scenario: String,
    /// Seed for every random choice (default: the scenario's).
    #[arg(long)]
    seed: Option<u64>,
    /// Override the scenario's duration, in virtual seconds.
    #[arg(long)]
    duration: Option<f64>,
    /// Write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write every datagram to this pcap, and the TLS key log to `<PATH>.keys`.
    #[arg(long)]
    pcap: Option<PathBuf>,
    /// Draw RTT and loss over time per link preset into this SVG.
    #[arg(long)]
    svg: Option<PathBuf>,
    /// Record every client session of every game server into this directory
    /// (`gs-N-session-ID.twrec`, `PROTOCOL.md` §11), with the receipts the game servers got
    /// (`receipts.json`, the verification server's export format) and its public key
    /// (`vs-key.pem`), for `tickwire-replay verify`.
    #[arg(long, value_name = "DIR")]
    record: Option<PathBuf>,
    /// Threads to run on: nodes advance in parallel within windows of virtual time as long
    /// as the smallest link latency (the lookahead), so the trace and the report (but the wall
    /// time and the `parallel` section) are the same for every N; scenarios with a zero
    /// lookahead run sequentially. The report's `parallel` line says how the windows went.
    #[arg(long, short = 'j', default_value_t = 1, value_name = "N")]
    threads: usize,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None => run(cli.run),
        Some(Command::Run(args)) => run(args),
        Some(Command::List) => {
            list();
            Ok(())
        }
        Some(Command::Proxy(args)) => proxy::run(args).map_err(|e| e.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("tickwire-sim: {message}");
            ExitCode::FAILURE
        }
    }
}

fn list() {
    println!("scenarios:");
    for (name, _) in BUILTIN {
        let scenario = Scenario::builtin(name).expect("shipped scenarios parse");
        println!("  {name:<16} {}", scenario.description);
    }
    println!("link presets:");
    for name in tickwire_sim::link::LinkSpec::PRESETS {
        println!("  {name}");
    }
}

fn load(name: &str) -> Result<Scenario, String> {
    if let Some(scenario) = Scenario::builtin(name) {
        return Ok(scenario);
    }
    let text = std::fs::read_to_string(name)
        .map_err(|e| format!("{name:?} is neither a shipped scenario nor a readable file: {e}"))?;
    Scenario::from_toml(&text).map_err(|e| format!("{name}: {e}"))
}

fn create(path: &Path) -> Result<BufWriter<File>, String> {
    File::create(path)
        .map(BufWriter::new)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))
}

fn run(args: RunArgs) -> Result<(), String> {
    let scenario = load(&args.scenario)?;
    let seed = args.seed.unwrap_or(scenario.seed);
    let capture: Option<Box<dyn Write>> = match &args.pcap {
        Some(path) => Some(Box::new(create(path)?)),
        None => None,
    };
    let options = SimOptions {
        capture,
        duration: args.duration.map(std::time::Duration::from_secs_f64),
        record: args.record.is_some(),
        threads: args.threads,
    };
    let started = Instant::now();
    let mut sim = Sim::new(scenario.clone(), seed, options).map_err(|e| e.to_string())?;
    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(sim.end() / MILLI)
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} {prefix} [{bar:40}] {pos}/{len} virtual ms · {msg}")
            .expect("static template")
            .progress_chars("=> "),
    );
    bar.set_prefix(scenario.name.clone());
    // Steps do not cut windows short: a step that ends inside a window leaves it open for
    // the next.
    let step = (sim.end() / 200).max(MILLI);
    let profile = std::env::var_os("TICKWIRE_SIM_COUNTS").is_some();
    let mut last = (Instant::now(), 0);
    while !sim.finished() {
        sim.run_for(step);
        if profile && sim.now() / 1_000_000_000 != last.1 / 1_000_000_000 {
            eprintln!(
                "virtual {:>6.2} s: {:>6.3} wall s for the last {:.2} virtual s, {:?}",
                sim.now() as f64 / 1e9,
                last.0.elapsed().as_secs_f64(),
                (sim.now() - last.1) as f64 / 1e9,
                sim.counts()
            );
            last = (Instant::now(), sim.now());
        }
        bar.set_position(sim.now() / MILLI);
        bar.set_message(format!("{} datagrams", sim.datagrams()));
    }
    bar.finish_and_clear();
    let wall = started.elapsed().as_secs_f64();
    if std::env::var_os("TICKWIRE_SIM_COUNTS").is_some() {
        eprintln!("{:?}", sim.counts());
    }
    let mut report = sim.report();
    report.wall_seconds = wall;
    report.speed = if wall > 0.0 {
        report.virtual_seconds / wall
    } else {
        0.0
    };
    println!("{report}");
    if let Some(path) = &args.pcap {
        let sink = sim.finish_capture().map_err(|e| format!("pcap: {e}"))?;
        if let Some(mut sink) = sink {
            sink.flush().map_err(|e| format!("pcap: {e}"))?;
        }
        let keys = keylog_path_for(path);
        std::fs::write(&keys, sim.key_log().unwrap_or_default())
            .map_err(|e| format!("cannot write {}: {e}", keys.display()))?;
        println!(
            "pcap written to {} (TLS key log: {})",
            path.display(),
            keys.display()
        );
    }
    if let Some(dir) = &args.record {
        write_recordings(&sim, dir)?;
    }
    if let Some(path) = &args.json {
        let mut out = create(path)?;
        serde_json::to_writer_pretty(&mut out, &report).map_err(|e| e.to_string())?;
        out.flush().map_err(|e| e.to_string())?;
        println!("report written to {}", path.display());
    }
    if let Some(path) = &args.svg {
        let (rtt, loss) = report.series();
        let title = format!(
            "{} · seed {} · RTT and loss per link preset",
            report.scenario, report.seed
        );
        std::fs::write(path, render_svg(&title, &rtt, &loss))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        println!("chart written to {}", path.display());
    }
    Ok(())
}

/// Writes `sim`'s recordings, the receipts its game servers got (grouped by game server, in
/// the verification server's export format) and the verification server's public key.
fn write_recordings(sim: &Sim, dir: &std::path::Path) -> Result<(), String> {
    use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
    use ed25519_dalek::pkcs8::EncodePublicKey;

    let fail =
        |path: &std::path::Path, e: &dyn std::fmt::Display| format!("cannot write {}: {e}", path.display());
    std::fs::create_dir_all(dir).map_err(|e| fail(dir, &e))?;
    for recording in sim.recordings() {
        let path = dir.join(format!(
            "gs-{}-session-{:016x}.twrec",
            recording.server + 1,
            recording.session_id
        ));
        std::fs::write(&path, &recording.bytes).map_err(|e| fail(&path, &e))?;
    }
    let mut by_gs: std::collections::BTreeMap<u64, Vec<serde_json::Value>> =
        std::collections::BTreeMap::new();
    for r in sim.receipt_records() {
        by_gs
            .entry(r.gs_id)
            .or_default()
            .push(serde_json::json!({ "digest": r.digest, "receipt": r.receipt }));
    }
    let export: Vec<serde_json::Value> = by_gs
        .into_iter()
        .map(|(gs_id, receipts)| serde_json::json!({ "gs_id": gs_id, "receipts": receipts }))
        .collect();
    let path = dir.join("receipts.json");
    std::fs::write(&path, serde_json::Value::from(export).to_string()).map_err(|e| fail(&path, &e))?;
    let mut key_id = None;
    if let Some((id, key)) = sim.vs_public_key() {
        let path = dir.join("vs-key.pem");
        let pem = key
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| fail(&path, &e))?;
        std::fs::write(&path, pem).map_err(|e| fail(&path, &e))?;
        key_id = Some(id);
    }
    println!(
        "{} recordings written to {}{}",
        sim.recordings().len(),
        dir.display(),
        key_id.map_or(String::new(), |id| format!(
            " (check one: tickwire-replay verify FILE --receipts {0}/receipts.json --vs-key {0}/vs-key.pem --vs-key-id {id})",
            dir.display()
        ))
    );
    Ok(())
}
