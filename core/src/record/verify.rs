//! Verification of a recording against protected receipts (`PROTOCOL.md` §11.4).

use std::collections::BTreeMap;

use serde::Serialize;

use super::{Record, RecordingHeader, TRANSCRIPT_VERSION};
use crate::ticket::{ProtectedReceipt, ReceiptClaims, VsKeys};
use crate::transcript::TranscriptChain;

/// What verification found for one stretch of ticks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub enum Coverage {
    /// The recomputed chain head matches a valid receipt: every received message in the
    /// range is exactly as the game server chained it.
    Covered {
        /// The receipt's digest sequence.
        sequence: u64,
    },
    /// The recomputed head differs from the valid receipt for this checkpoint: a received
    /// message in the range (its tick or bytes), or the checkpoint, was edited, added or
    /// removed.
    Mismatch {
        /// The receipt's digest sequence.
        sequence: u64,
    },
    /// The game server sent a digest here but no valid receipt for it was given.
    NoReceipt {
        /// The checkpoint's digest sequence.
        sequence: u64,
    },
    /// Received messages after the last checkpoint: not yet digested.
    Unreceipted,
    /// Recording started mid-session: the chain's state before the first receipt is unknown.
    Unanchored,
    /// Records were dropped here (a full recording buffer): what the range held is unknown.
    Gap {
        /// Records dropped.
        records: u64,
    },
}

/// A range of ticks and what verification found for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Segment {
    /// First tick of the range (inclusive).
    pub first_tick: u64,
    /// Last tick of the range (inclusive).
    pub last_tick: u64,
    /// Received messages in the range (present in the file).
    pub inputs: u64,
    /// The finding.
    pub coverage: Coverage,
}

/// The result of checking a recording against receipts, in tick order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verification {
    /// The recorded session.
    pub session_id: u64,
    /// Consecutive ranges of the session's ticks.
    pub segments: Vec<Segment>,
    /// Receipts given that verified and name this session.
    pub receipts_used: usize,
    /// Receipts given that did not verify against the keys (ignored).
    pub receipts_invalid: usize,
    /// Valid receipts for this session whose checkpoint is not in the recording.
    pub receipts_unmatched: usize,
}

impl Verification {
    /// The first range whose receipt does not match, if any.
    pub fn first_mismatch(&self) -> Option<&Segment> {
        self.segments
            .iter()
            .find(|s| matches!(s.coverage, Coverage::Mismatch { .. }))
    }

    /// Whether every range holding received messages is covered by a valid receipt and none
    /// mismatches.
    pub fn fully_covered(&self) -> bool {
        self.segments
            .iter()
            .all(|s| matches!(s.coverage, Coverage::Covered { .. }) || s.inputs == 0)
            && self.first_mismatch().is_none()
    }
}

/// Recomputes a recording's transcript chain record by record and checks every
/// [`Record::Checkpoint`] against the receipt with its sequence number (`PROTOCOL.md` §11.4).
/// After each checkpoint with a valid receipt the chain continues from the receipt's signed
/// head, so an edit is reported in the one range it falls in.
#[derive(Debug)]
pub struct TranscriptCheck {
    session_id: u64,
    chain: Option<TranscriptChain>,
    receipts: BTreeMap<u64, ReceiptClaims>,
    matched: usize,
    receipts_used: usize,
    receipts_invalid: usize,
    open: Option<(u64, u64)>,
    open_inputs: u64,
    unanchored: bool,
    last_tick: u64,
    segments: Vec<Segment>,
}

impl TranscriptCheck {
    /// A check of the session `header` describes against `receipts`; receipts that do not
    /// verify against `keys` or name another session are set aside.
    pub fn new(header: &RecordingHeader, receipts: &[ProtectedReceipt], keys: &VsKeys) -> Self {
        let mut valid = BTreeMap::new();
        let mut invalid = 0;
        for receipt in receipts {
            match receipt.verify(keys) {
                Ok(claims) if claims.session_id == header.session_id => {
                    valid.insert(claims.sequence, claims);
                }
                Ok(_) => {}
                Err(_) => invalid += 1,
            }
        }
        let known = header.from_start && header.transcript_version == TRANSCRIPT_VERSION;
        Self {
            session_id: header.session_id,
            chain: Some(TranscriptChain::new(header.session_id)),
            receipts_used: valid.len(),
            receipts: valid,
            matched: 0,
            receipts_invalid: invalid,
            open: None,
            open_inputs: 0,
            unanchored: !known,
            last_tick: header.start_tick,
            segments: Vec::new(),
        }
    }

    /// Input: the next record after the header.
    pub fn handle_record(&mut self, record: &Record) {
        match record {
            Record::Received { tick, payload, .. } => {
                if let Some(chain) = &mut self.chain {
                    chain.record(*tick, payload);
                }
                self.extend(*tick);
                self.open_inputs += 1;
            }
            Record::Sent { tick, .. }
            | Record::End { tick }
            | Record::TicksSkipped { last_tick: tick, .. } => self.last_tick = self.last_tick.max(*tick),
            Record::Checkpoint {
                sequence,
                tick,
                inputs,
                ..
            } => self.checkpoint(*sequence, *tick, *inputs),
            Record::Gap {
                first_tick,
                last_tick,
                records,
                inputs,
                chain_tick,
                head,
                ..
            } => {
                self.extend(*first_tick);
                self.extend(*last_tick);
                self.close(Coverage::Gap { records: *records });
                self.chain = Some(TranscriptChain::resume(
                    self.session_id,
                    *head,
                    *chain_tick,
                    *inputs,
                ));
            }
            Record::Header(_) | Record::Seal { .. } => {}
        }
    }

    fn extend(&mut self, tick: u64) {
        self.last_tick = self.last_tick.max(tick);
        self.open = Some(match self.open {
            Some((first, last)) => (first.min(tick), last.max(tick)),
            None => (tick, tick),
        });
    }

    fn close(&mut self, coverage: Coverage) {
        let (first_tick, last_tick) = self.open.take().unwrap_or((self.last_tick, self.last_tick));
        self.segments.push(Segment {
            first_tick,
            last_tick,
            inputs: self.open_inputs,
            coverage,
        });
        self.open_inputs = 0;
    }

    fn checkpoint(&mut self, sequence: u64, tick: u64, inputs: u64) {
        self.extend(tick);
        let Some(claims) = self.receipts.get(&sequence).cloned() else {
            let coverage = if self.unanchored {
                Coverage::Unanchored
            } else {
                Coverage::NoReceipt { sequence }
            };
            self.close(coverage);
            return;
        };
        self.matched += 1;
        let matches = self.chain.as_ref().is_some_and(|c| {
            c.head() == claims.digest && c.last_tick() == claims.tick && c.inputs() == inputs
        });
        let coverage = match (matches, self.unanchored) {
            (true, _) => Coverage::Covered { sequence },
            (false, true) => Coverage::Unanchored,
            (false, false) => Coverage::Mismatch { sequence },
        };
        self.close(coverage);
        // Continue from the signed head: later ranges are checked on their own.
        self.chain = Some(TranscriptChain::resume(
            self.session_id,
            claims.digest,
            claims.tick,
            inputs,
        ));
        self.unanchored = false;
    }

    /// Output: the verdict. Received messages after the last checkpoint form one more range:
    /// covered if a receipt whose checkpoint is not in the file signs the chain's final head
    /// (a session's last digest is computed after its recording ended), else
    /// [`Coverage::Unreceipted`].
    pub fn finish(mut self) -> Verification {
        if self.open_inputs > 0 {
            let last = self.chain.as_ref().and_then(|chain| {
                self.receipts
                    .values()
                    .find(|c| c.digest == chain.head() && c.tick == chain.last_tick())
                    .map(|c| c.sequence)
            });
            let coverage = if let Some(sequence) = last {
                self.matched += 1;
                Coverage::Covered { sequence }
            } else if self.unanchored {
                Coverage::Unanchored
            } else {
                Coverage::Unreceipted
            };
            self.close(coverage);
        }
        Verification {
            session_id: self.session_id,
            segments: self.segments,
            receipts_used: self.receipts_used,
            receipts_invalid: self.receipts_invalid,
            receipts_unmatched: self.receipts_used - self.matched.min(self.receipts_used),
        }
    }
}
