//! `tickwire-replay`: checks and replays the session recordings of `tickwire-gs --record DIR`
//! (`PROTOCOL.md` §11).
//!
//! ```text
//! # the receipts the verification server keeps for game server 42, from its admin endpoint:
//! curl -H "Authorization: Bearer $(cat token)" \
//!     http://127.0.0.1:9500/v1/game-servers/42/receipts > receipts.json
//! tickwire-replay verify rec/session-0123456789abcdef.twrec --receipts receipts.json \
//!     --vs-key /tmp/tw/issuer.pem.pub
//! # feed the recorded inputs back into the demo game and compare its sends:
//! tickwire-replay play rec/*.twrec
//! ```
//!
//! Exit codes: 0 verified (every input covered by a valid receipt and every byte under a valid
//! game-server seal, or, with `--allow-unreceipted`, no mismatch and no broken seal) / replay
//! matched; 1 verification failed / replay
//! diverged; 2 usage errors (bad arguments, unreadable or undecodable files).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tickwire_apps::cli::{fail, IssuerSource};
use tickwire_apps::demo::DEMO_KEY_ID;
use tickwire_apps::replay::{describe_seals, describe_verification, load_receipts, load_recording, play};
use tickwire_core::vs::VsKeys;

const BIN: &str = "tickwire-replay";

/// Checks tickwire session recordings against verification-server receipts, and replays
/// them through the demo game.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Recomputes a recording's transcript chain and checks it against receipts: which tick
    /// ranges a valid receipt covers, and where the file was edited.
    Verify {
        /// The recording (`session-<id>.twrec`).
        file: PathBuf,
        /// Receipts exported by the verification server (`GET
        /// /v1/game-servers/ID/receipts` on its admin endpoint; repeatable).
        #[arg(long, value_name = "FILE", required = true)]
        receipts: Vec<PathBuf>,
        /// The verification server's public key (PEM, `PATH.pub` of `tickwire-vs keygen`).
        #[arg(long, value_name = "PATH")]
        vs_key: Option<PathBuf>,
        /// INSECURE, demos only: the key derived from this public number.
        #[arg(long, value_name = "N", conflicts_with = "vs_key")]
        insecure_demo_issuer_seed: Option<u64>,
        /// The key id the receipts name (`tickwire-vs` signs under 1; the simulator's VS
        /// under 2).
        #[arg(long, value_name = "ID", default_value_t = DEMO_KEY_ID)]
        vs_key_id: u32,
        /// The game server's public identity key (PEM, `PATH.pub` of `keygen`), which must
        /// have sealed the file; without it the seals are checked against the key the file's
        /// own header names.
        #[arg(long, value_name = "PATH")]
        gs_key: Option<PathBuf>,
        /// Succeed when nothing mismatches even if some ranges have no receipt or the last
        /// records no seal yet (a session still running, a receipt not yet exported).
        #[arg(long)]
        allow_unreceipted: bool,
    },
    /// Feeds recorded sessions' inputs into the demo game at their recorded ticks and compares
    /// its sends with the recorded ones, tick by tick. Give every recording of the run that
    /// overlaps: snapshots carry every player.
    Play {
        /// The recordings.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    match args.command {
        Command::Verify {
            file,
            receipts,
            vs_key,
            insecure_demo_issuer_seed,
            vs_key_id,
            gs_key,
            allow_unreceipted,
        } => {
            let key = IssuerSource {
                bin: BIN,
                path: vs_key.as_deref(),
                insecure_seed: insecure_demo_issuer_seed,
            }
            .verifying_key();
            let key = match key {
                Ok(key) => key,
                Err(e) => return fail(BIN, format!("{e} (for replay: --vs-key PATH)")),
            };
            let recording = match load_recording(&file) {
                Ok(recording) => recording,
                Err(e) => return fail(BIN, e),
            };
            let mut all = Vec::new();
            for path in &receipts {
                match load_receipts(path) {
                    Ok(found) => all.extend(found),
                    Err(e) => return fail(BIN, e),
                }
            }
            let server_key = match &gs_key {
                Some(path) => match (IssuerSource {
                    bin: BIN,
                    path: Some(path),
                    insecure_seed: None,
                })
                .verifying_key()
                {
                    Ok(key) => key.to_bytes(),
                    Err(e) => return fail(BIN, format!("{e} (--gs-key PATH)")),
                },
                None => recording.header.server_key,
            };
            let verification = recording.verify(&all, &VsKeys::single(vs_key_id, key));
            let seals = recording.check_seals(&server_key);
            print!("{}", describe_verification(&verification));
            print!("{}", describe_seals(&seals, gs_key.is_some()));
            let sealed = seals.first_invalid.is_none()
                && seals.seals > 0
                && (allow_unreceipted || seals.unsealed_records == 0);
            let ok = sealed
                && verification.first_mismatch().is_none()
                && !verification
                    .segments
                    .iter()
                    .any(|s| matches!(s.coverage, tickwire_core::record::Coverage::Gap { .. }))
                && (allow_unreceipted || verification.fully_covered());
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Command::Play { files } => {
            let mut recordings = Vec::new();
            for path in &files {
                match load_recording(path) {
                    Ok(recording) => recordings.push(recording),
                    Err(e) => return fail(BIN, e),
                }
            }
            match play(&recordings) {
                Ok(outcome) => match outcome.divergence {
                    None => {
                        println!(
                            "replay matches: {} ticks, {} recorded sends reproduced",
                            outcome.ticks, outcome.sends_compared
                        );
                        ExitCode::SUCCESS
                    }
                    Some(d) => {
                        println!(
                            "replay DIVERGES at tick {} for connection {}: {} ({} ticks and {} sends matched before)",
                            d.tick, d.player, d.detail, outcome.ticks - 1, outcome.sends_compared
                        );
                        ExitCode::FAILURE
                    }
                },
                Err(e) => fail(BIN, e),
            }
        }
    }
}
