//! `tickwire-replay`: checks session recordings (`PROTOCOL.md` §11) against the verification
//! server's receipts, and replays them through the demo game.
//!
//! - **verify**: [`load_receipts`] reads the receipts a verification server exports
//!   (`GET /v1/game-servers/ID/receipts` on its admin endpoint: `{"gs_id": …, "receipts":
//!   [{"digest": …, "receipt": …}]}`; a JSON array of such documents is accepted too), and
//!   [`Recording::verify`] says, range by range, which ticks a valid receipt covers.
//! - **play**: [`play`] feeds the recorded joins, inputs and leaves of one game server's
//!   sessions into [`DemoGame`] at their recorded ticks and compares what it sends, tick by
//!   tick and player by player, with the recorded sends. Give it every session of the run that
//!   overlaps: a snapshot carries every player.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Deserialize;
use tickwire_core::record::{Coverage, Record, Recording, SealReport, Verification};
use tickwire_core::vs::{ProtectedReceipt, TranscriptDigest};

use crate::game::DemoGame;

/// One entry of a verification server's receipt export.
#[derive(Debug, Clone, Deserialize)]
pub struct ExportedReceipt {
    /// The digest the receipt is for.
    pub digest: TranscriptDigest,
    /// The signed receipt.
    pub receipt: ProtectedReceipt,
}

/// A verification server's receipt export for one game server.
#[derive(Debug, Clone, Deserialize)]
pub struct ReceiptExport {
    /// The game server.
    pub gs_id: u64,
    /// Its receipts.
    pub receipts: Vec<ExportedReceipt>,
}

/// Reads a receipt export (one document, or an array of them) from `path`.
///
/// # Errors
/// The file cannot be read or is not an export, as a message naming the file.
pub fn load_receipts(path: &Path) -> Result<Vec<ProtectedReceipt>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    parse_receipts(&text).map_err(|e| format!("{}: not a receipt export: {e}", path.display()))
}

/// Parses a receipt export (one document, or an array of them).
///
/// # Errors
/// The JSON error.
pub fn parse_receipts(text: &str) -> Result<Vec<ProtectedReceipt>, serde_json::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Export {
        One(ReceiptExport),
        Many(Vec<ReceiptExport>),
    }
    let exports = match serde_json::from_str::<Export>(text)? {
        Export::One(one) => vec![one],
        Export::Many(many) => many,
    };
    Ok(exports
        .into_iter()
        .flat_map(|e| e.receipts.into_iter().map(|r| r.receipt))
        .collect())
}

/// Reads and decodes a recording file.
///
/// # Errors
/// The file cannot be read or does not decode, as a message naming the file.
pub fn load_recording(path: &Path) -> Result<Recording, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Recording::decode(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// The verdict of [`Recording::verify`] as text: one line per range, then a summary line.
pub fn describe_verification(verification: &Verification) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "session {:016x}", verification.session_id);
    for segment in &verification.segments {
        let what = match &segment.coverage {
            Coverage::Covered { sequence } => format!("covered by receipt #{sequence}"),
            Coverage::Mismatch { sequence } => {
                format!(
                    "MISMATCH against receipt #{sequence}: edited at tick {}..={}",
                    segment.first_tick, segment.last_tick
                )
            }
            Coverage::NoReceipt { sequence } => format!("no receipt for digest #{sequence}"),
            Coverage::Unreceipted => "not yet digested (no receipt)".to_owned(),
            Coverage::Unanchored => "before the first receipt of a recording started mid-session".to_owned(),
            Coverage::Gap { records } => format!("GAP: {records} records dropped while recording"),
            _ => "unknown".to_owned(),
        };
        let _ = writeln!(
            out,
            "  ticks {:>8}..={:<8} {:>5} inputs  {what}",
            segment.first_tick, segment.last_tick, segment.inputs
        );
    }
    let verdict = if verification.first_mismatch().is_some() {
        "FAILED: the recording differs from what the game server digested"
    } else if verification.fully_covered() {
        "OK: every input is covered by a valid receipt"
    } else {
        "OK so far: no mismatch, but some ranges have no receipt"
    };
    let _ = writeln!(
        out,
        "{verdict} ({} receipts used, {} invalid, {} without a checkpoint in the file)",
        verification.receipts_used, verification.receipts_invalid, verification.receipts_unmatched
    );
    out
}

/// The verdict of [`Recording::check_seals`] as one line; `pinned` says whether the key
/// checked came from the operator rather than the file's own header.
pub fn describe_seals(report: &SealReport, pinned: bool) -> String {
    let key = if !pinned {
        "the header's server key (pin it with --gs-key)"
    } else {
        "the given game-server key"
    };
    match report.first_invalid {
        Some((first, last)) => format!(
            "seals: BROKEN: {} of {} valid under {key}; bytes edited between ticks {first} and {last}\n",
            report.valid, report.seals
        ),
        None if report.seals == 0 => "seals: NONE: the file carries no game-server seal\n".to_owned(),
        None if report.unsealed_records > 0 => format!(
            "seals: {} valid under {key}, but the last {} records are not sealed (cut short?)\n",
            report.valid, report.unsealed_records
        ),
        None => format!(
            "seals: OK: {} seals valid under {key}; every byte is as the game server wrote it\n",
            report.valid
        ),
    }
}

/// The first place a replay's sends differ from the recorded ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Divergence {
    /// Server tick.
    pub tick: u64,
    /// Player (the recording's connection index).
    pub player: u64,
    /// What differs, in words.
    pub detail: String,
}

/// What [`play`] found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PlayOutcome {
    /// Ticks replayed.
    pub ticks: u64,
    /// Recorded sends compared (and matched, up to the divergence).
    pub sends_compared: u64,
    /// The first difference, if any.
    pub divergence: Option<Divergence>,
}

/// A recording that cannot be replayed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlayError {
    /// No recording was given.
    #[error("no recording to play")]
    Empty,
    /// A recording lost records (`Gap`): what the game received there is unknown.
    #[error(
        "session {session:016x} lost records at ticks {first_tick}..={last_tick}; it cannot be replayed"
    )]
    Gap {
        /// The session.
        session: u64,
        /// First tick of the gap.
        first_tick: u64,
        /// Last tick of the gap.
        last_tick: u64,
    },
    /// A recording started mid-session: the game's state for its player is unknown.
    #[error("session {0:016x} was recorded from the middle; it cannot be replayed")]
    NotFromStart(u64),
    /// Two recordings name the same player (connection) at overlapping ticks.
    #[error("two recordings name connection {0} at the same time")]
    DuplicatePlayer(u64),
}

/// The recorded sends of one player at one tick: (channel, payload) in order.
type Sends = Vec<(u8, Vec<u8>)>;

#[derive(Debug, Default)]
struct Timeline {
    joins: BTreeMap<u64, Vec<u64>>,
    leaves: BTreeMap<u64, Vec<u64>>,
    inputs: BTreeMap<u64, Vec<(u64, Vec<u8>)>>,
    sends: BTreeMap<(u64, u64), Sends>,
    skipped: BTreeMap<u64, u64>,
    /// Per player: the ticks its recording covers.
    covers: BTreeMap<u64, (u64, u64)>,
}

impl Timeline {
    fn build(recordings: &[Recording]) -> Result<Timeline, PlayError> {
        let mut t = Timeline::default();
        for recording in recordings {
            let header = &recording.header;
            let player = header.connection;
            if !header.from_start {
                return Err(PlayError::NotFromStart(header.session_id));
            }
            if t.covers.contains_key(&player) {
                return Err(PlayError::DuplicatePlayer(player));
            }
            t.joins.entry(header.start_tick).or_default().push(player);
            let mut last = header.start_tick;
            let mut last_sent = None;
            for record in &recording.records {
                match record {
                    Record::Received { tick, payload, .. } => {
                        t.inputs.entry(*tick).or_default().push((player, payload.clone()));
                        last = last.max(*tick);
                    }
                    Record::Sent {
                        tick,
                        channel,
                        payload,
                    } => {
                        t.sends
                            .entry((*tick, player))
                            .or_default()
                            .push((*channel, payload.clone()));
                        last = last.max(*tick);
                        last_sent = Some(*tick);
                    }
                    Record::End { tick } => {
                        // A session that ended in a tick's poll stage got no sends at that
                        // tick; one whose recording was stopped after them leaves after it.
                        let leaves_at = if last_sent == Some(*tick) { tick + 1 } else { *tick };
                        t.leaves.entry(leaves_at).or_default().push(player);
                        last = last.max(*tick);
                    }
                    Record::TicksSkipped {
                        first_tick,
                        last_tick,
                    } => {
                        t.skipped.insert(*first_tick, *last_tick);
                        last = last.max(*last_tick);
                    }
                    Record::Gap {
                        first_tick,
                        last_tick,
                        ..
                    } => {
                        return Err(PlayError::Gap {
                            session: header.session_id,
                            first_tick: *first_tick,
                            last_tick: *last_tick,
                        })
                    }
                    _ => {}
                }
            }
            t.covers.insert(player, (header.start_tick, last));
        }
        Ok(t)
    }
}

/// Replays `recordings` (sessions of one game server run) through [`DemoGame`] and compares
/// its sends with the recorded ones, tick by tick, stopping at the first divergence. A
/// player's sends are compared over the ticks its recording covers.
///
/// # Errors
/// [`PlayError`] if the recordings cannot be replayed.
pub fn play(recordings: &[Recording]) -> Result<PlayOutcome, PlayError> {
    let timeline = Timeline::build(recordings)?;
    let first = timeline
        .covers
        .values()
        .map(|c| c.0)
        .min()
        .ok_or(PlayError::Empty)?;
    let last = timeline.covers.values().map(|c| c.1).max().unwrap_or(first);
    let mut game = DemoGame::default();
    let mut outcome = PlayOutcome::default();
    let empty: Vec<u64> = Vec::new();
    let mut tick = first;
    while tick <= last {
        if let Some(&skip_to) = timeline.skipped.get(&tick) {
            tick = skip_to + 1;
            continue;
        }
        for &player in timeline.joins.get(&tick).unwrap_or(&empty) {
            game.join(player);
        }
        for (player, payload) in timeline.inputs.get(&tick).into_iter().flatten() {
            game.input(*player, payload);
        }
        for &player in timeline.leaves.get(&tick).unwrap_or(&empty) {
            game.leave(player);
        }
        game.simulate();
        game.extract(tick);
        let mut actual: BTreeMap<u64, Sends> = BTreeMap::new();
        for message in game.outgoing(tick) {
            actual
                .entry(message.player)
                .or_default()
                .push((message.channel.0, message.payload.to_vec()));
        }
        outcome.ticks += 1;
        for (&player, &(from, to)) in &timeline.covers {
            if tick < from || tick > to {
                continue;
            }
            let recorded = timeline.sends.get(&(tick, player)).map_or(&[][..], Vec::as_slice);
            let replayed = actual.get(&player).map_or(&[][..], Vec::as_slice);
            if let Some(detail) = compare(recorded, replayed) {
                outcome.divergence = Some(Divergence { tick, player, detail });
                return Ok(outcome);
            }
            outcome.sends_compared += recorded.len() as u64;
        }
        tick += 1;
    }
    Ok(outcome)
}

fn compare(recorded: &[(u8, Vec<u8>)], replayed: &[(u8, Vec<u8>)]) -> Option<String> {
    for (i, pair) in recorded.iter().zip(replayed).enumerate() {
        let ((rc, rp), (pc, pp)) = pair;
        if rc != pc {
            return Some(format!(
                "message {i}: recorded on channel {rc}, replayed on channel {pc}"
            ));
        }
        if rp != pp {
            let at = rp
                .iter()
                .zip(pp)
                .position(|(a, b)| a != b)
                .unwrap_or(rp.len().min(pp.len()));
            return Some(format!(
                "message {i} on channel {rc}: {} bytes recorded, {} replayed, first difference at byte {at}",
                rp.len(),
                pp.len()
            ));
        }
    }
    (recorded.len() != replayed.len()).then(|| {
        format!(
            "{} messages recorded, {} replayed",
            recorded.len(),
            replayed.len()
        )
    })
}
