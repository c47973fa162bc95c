//! Reference models: plain restatements of a state machine's documented behaviour, with none
//! of its data-structure cleverness, for model-based tests to run beside the real machine and
//! compare step by step. Each model is the only one of its machine: the machine's property
//! tests and its fuzz target both use it.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use crate::fragment::{FragmentConfig, FragmentHeader, ReassemblyStats};

/// How many completed `(channel, message_id)` keys are remembered to drop late duplicates
/// ([`ReassemblyStats::late_duplicates`]).
const COMPLETED_HISTORY: usize = 64;

/// The reassembler as its documentation states it (`fragment` module docs, [`FragmentConfig`],
/// [`ReassemblyStats`]): partials in a list, oldest first, each a map from index to chunk;
/// every limit checked by scanning. Same inputs and getters as the real `Reassembler`, so a
/// test can feed both the same fragments and compare deliveries, counters, buffering and the
/// deadline after every step.
#[derive(Debug)]
pub struct ReassemblerModel {
    config: FragmentConfig,
    latest: Option<Instant>,
    /// Open partial messages, oldest first (the eviction and expiry order).
    partials: Vec<ModelPartial>,
    /// Keys of the last [`COMPLETED_HISTORY`] completed messages, oldest first.
    completed: VecDeque<(u8, u16)>,
    stats: ReassemblyStats,
}

#[derive(Debug)]
struct ModelPartial {
    key: (u8, u16),
    opened: Instant,
    count: u8,
    chunks: BTreeMap<u8, Vec<u8>>,
}

/// What a partial holds against the memory budget: its exact length once known, all a valid
/// message can need (`min(count × C, limit)`) once its chunk length `C` is, else its last chunk.
fn reserved(count: u8, chunk_len: Option<usize>, last_len: Option<usize>, limit: usize) -> usize {
    match (chunk_len, last_len) {
        (Some(c), Some(l)) => usize::from(count - 1) * c + l,
        (Some(c), None) => (usize::from(count) * c).min(limit),
        (None, last) => last.unwrap_or(0),
    }
}

impl ModelPartial {
    fn reserved(&self, limit: usize) -> usize {
        reserved(self.count, self.chunk_len(), self.last_len(), limit)
    }

    /// Length of the non-last chunks received, if any (they are all the same).
    fn chunk_len(&self) -> Option<usize> {
        let last = self.count - 1;
        self.chunks.iter().find(|(&i, _)| i != last).map(|(_, c)| c.len())
    }

    /// Length of the last chunk, if received.
    fn last_len(&self) -> Option<usize> {
        self.chunks.get(&(self.count - 1)).map(Vec::len)
    }
}

/// Why the model threw fragments away: the [`ReassemblyStats`] counter to bump.
#[derive(Debug, Clone, Copy)]
enum Reason {
    TooLarge,
    TooManyFragments,
    Inconsistent,
    PartialLimit,
    MemoryBudget,
    Timeout,
    LateDuplicate,
}

impl ReassemblerModel {
    /// An empty model enforcing `config`.
    pub fn new(config: FragmentConfig) -> Self {
        Self {
            config,
            latest: None,
            partials: Vec::new(),
            completed: VecDeque::new(),
            stats: ReassemblyStats::default(),
        }
    }

    /// One fragment received on `channel`; the message when it completes.
    pub fn insert(
        &mut self,
        now: Instant,
        channel: u8,
        header: FragmentHeader,
        chunk: &[u8],
    ) -> Option<Vec<u8>> {
        let now = self.expire(now);
        self.stats.fragments_received += 1;
        let key = (channel, header.message_id);
        let (count, index, len) = (header.count, header.index, chunk.len());
        let limit = self.config.max_message_bytes.min(self.config.memory_budget_bytes);

        // A fragment that cannot be taken whatever is buffered. The smallest message a
        // well-formed one belongs to: non-last chunks share a length `C`, the last has `1..=C`.
        let smallest = || match (count, header.is_last()) {
            (1, _) => len,
            (_, true) => usize::from(count).saturating_mul(len),
            (_, false) => usize::from(count - 1).saturating_mul(len).saturating_add(1),
        };
        let refused = if index >= count || (len == 0 && count > 1) {
            Some(Reason::Inconsistent)
        } else if count > self.config.max_fragments {
            Some(Reason::TooManyFragments)
        } else if self.completed.contains(&key) {
            Some(Reason::LateDuplicate)
        } else if smallest() > limit {
            Some(Reason::TooLarge)
        } else {
            None
        };
        if let Some(reason) = refused {
            self.count_drop(reason, 1);
            return None;
        }

        // Against the partial with its key: another message (start afresh), a duplicate, or
        // one whose exact length is now known to be too large.
        if let Some(at) = self.partials.iter().position(|p| p.key == key) {
            let partial = &self.partials[at];
            let (chunk_len, last_len) = if header.is_last() {
                (partial.chunk_len(), Some(len))
            } else {
                (Some(len), partial.last_len())
            };
            let consistent = partial.count == count
                && (header.is_last() || partial.chunk_len().is_none_or(|c| c == len))
                && chunk_len.zip(last_len).is_none_or(|(c, l)| l <= c);
            if !consistent {
                self.discard(at, Reason::Inconsistent, 0);
            } else if partial.chunks.contains_key(&index) {
                self.stats.duplicate_fragments += 1;
                return None;
            } else if chunk_len
                .zip(last_len)
                .is_some_and(|(c, l)| usize::from(count - 1).saturating_mul(c).saturating_add(l) > limit)
            {
                self.discard(at, Reason::TooLarge, 1);
                return None;
            }
        }
        if count == 1 {
            return Some(self.complete(key, chunk.to_vec()));
        }

        // Open a partial, evicting the oldest at the partial limit.
        if !self.partials.iter().any(|p| p.key == key) {
            while self.partials.len() >= self.config.max_partial_messages {
                if self.partials.is_empty() {
                    self.count_drop(Reason::PartialLimit, 1);
                    return None;
                }
                self.discard(0, Reason::PartialLimit, 0);
            }
            self.partials.push(ModelPartial {
                key,
                opened: now,
                count,
                chunks: BTreeMap::new(),
            });
        }
        // Make room in the budget for what the partial holds once this chunk is in, evicting
        // the oldest other partials.
        let at = self.partials.iter().position(|p| p.key == key)?;
        let partial = &self.partials[at];
        let (chunk_len, last_len) = if header.is_last() {
            (partial.chunk_len(), Some(len))
        } else {
            (Some(len), partial.last_len())
        };
        let extra = reserved(count, chunk_len, last_len, limit).saturating_sub(partial.reserved(limit));
        while self.buffered_bytes() + extra > self.config.memory_budget_bytes {
            let Some(oldest) = self.partials.iter().position(|p| p.key != key) else {
                break;
            };
            self.discard(oldest, Reason::MemoryBudget, 0);
        }
        let at = self.partials.iter().position(|p| p.key == key)?;
        self.partials[at].chunks.insert(index, chunk.to_vec());
        if self.partials[at].chunks.len() < usize::from(count) {
            return None;
        }
        let partial = self.partials.remove(at);
        Some(self.complete(key, partial.chunks.into_values().flatten().collect()))
    }

    /// Drops the partials due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.expire(now);
    }

    /// When the oldest partial expires; `None` when nothing is buffered (or it never expires).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.partials.first().and_then(|p| self.deadline(p))
    }

    /// The counters so far.
    pub fn stats(&self) -> &ReassemblyStats {
        &self.stats
    }

    /// Messages being reassembled.
    pub fn partial_count(&self) -> usize {
        self.partials.len()
    }

    /// Bytes held for partial messages (see `reserved`).
    pub fn buffered_bytes(&self) -> usize {
        let limit = self.config.max_message_bytes.min(self.config.memory_budget_bytes);
        self.partials.iter().map(|p| p.reserved(limit)).sum()
    }

    fn deadline(&self, partial: &ModelPartial) -> Option<Instant> {
        partial
            .opened
            .checked_add(Duration::from_millis(self.config.reassembly_timeout_ms))
    }

    /// Moves time forward to `now` (an earlier `now` counts as the latest seen) and drops
    /// the partials due by then; returns the time now.
    fn expire(&mut self, now: Instant) -> Instant {
        let now = self.latest.map_or(now, |latest| latest.max(now));
        self.latest = Some(now);
        while let Some(at) = self
            .partials
            .iter()
            .position(|p| self.deadline(p).is_some_and(|deadline| deadline <= now))
        {
            self.discard(at, Reason::Timeout, 0);
        }
        now
    }

    fn complete(&mut self, key: (u8, u16), message: Vec<u8>) -> Vec<u8> {
        if self.completed.len() == COMPLETED_HISTORY {
            self.completed.pop_front();
        }
        self.completed.push_back(key);
        self.stats.messages_reassembled += 1;
        message
    }

    /// Drops the partial at `at`, counting its fragments plus `extra` incoming ones.
    fn discard(&mut self, at: usize, reason: Reason, extra: u64) {
        let held = self.partials.remove(at).chunks.len() as u64;
        self.count_drop(reason, held + extra);
    }

    fn count_drop(&mut self, reason: Reason, fragments: u64) {
        let stats = &mut self.stats;
        *match reason {
            Reason::TooLarge => &mut stats.dropped_too_large,
            Reason::TooManyFragments => &mut stats.dropped_too_many_fragments,
            Reason::Inconsistent => &mut stats.dropped_inconsistent,
            Reason::PartialLimit => &mut stats.evicted_partial_limit,
            Reason::MemoryBudget => &mut stats.evicted_memory_budget,
            Reason::Timeout => &mut stats.expired_timeout,
            Reason::LateDuplicate => &mut stats.late_duplicates,
        } += 1;
        stats.fragments_dropped += fragments;
    }
}
