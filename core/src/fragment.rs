//! Fragmentation and reassembly of unreliable messages carried in QUIC datagrams (RFC 9221).
//!
//! QUIC never splits a DATAGRAM frame across packets (RFC 9221 §5), so an unreliable message larger
//! than the current maximum datagram payload is cut here into chunks, one per datagram, each after a
//! 4-byte [`FragmentHeader`]:
//!
//! ```text
//! [type|channel: u8][message_id: u16 BE][index: u8][count: u8][chunk ...]
//!  connection        this module
//! ```
//!
//! A fragment set, as produced by [`split`] and checked by [`Reassembler`]:
//! - `count` is `1..=255` and `index < count`;
//! - every chunk but the last has the same length `C ≥ 1`, the last has length `1..=C`;
//! - the empty message is one fragment with an empty chunk, the only empty chunk allowed.
//!
//! A fragment is refused as too large as soon as the smallest message it can belong to exceeds
//! the limit (`(count − 1) × C + 1` for a non-last chunk of length `C`, `count × L` for a last
//! one of length `L`), and a partial as soon as its exact length `(count − 1) × C + L` is known
//! to. Refusing when `count × C` merely *could* exceed the limit would refuse messages of exactly
//! the maximum size (262 144 bytes in 1 200-byte chunks: 219 × 1 200 = 262 800).
//!
//! Lost fragments are not repaired (datagrams are never retransmitted): a message is delivered only
//! when all its fragments arrive, and a partial message is dropped after
//! [`FragmentConfig::reassembly_timeout_ms`]. Every fragment the reassembler refuses or throws away
//! is counted in [`ReassemblyStats`].

use std::collections::BTreeMap;
use std::iter::FusedIterator;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

/// Length in bytes of an encoded [`FragmentHeader`].
pub const FRAGMENT_HEADER_LEN: usize = 4;

/// How many completed `(channel, message_id)` keys a [`Reassembler`] remembers, so that late
/// duplicates of a delivered message are dropped instead of opening a partial that never completes.
const COMPLETED_HISTORY: usize = 64;

/// The header in front of every fragment's chunk: `message_id: u16` big-endian, `index: u8`,
/// `count: u8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FragmentHeader {
    /// Sender-chosen id shared by all fragments of one message; unique per channel among the
    /// messages in flight (it wraps after 65 536 messages).
    pub message_id: u16,
    /// Position of this chunk in the message, `0..count`.
    pub index: u8,
    /// Number of fragments in the message, `1..=255`.
    pub count: u8,
}

impl FragmentHeader {
    /// The 4 header bytes, to be followed by the chunk.
    pub fn encode(&self) -> [u8; FRAGMENT_HEADER_LEN] {
        let [hi, lo] = self.message_id.to_be_bytes();
        [hi, lo, self.index, self.count]
    }

    /// Parses a header from the start of `bytes` and returns it with the chunk that follows.
    ///
    /// # Errors
    /// [`FragmentHeaderError`] when the input is shorter than [`FRAGMENT_HEADER_LEN`], `count` is 0
    /// or `index >= count`.
    pub fn decode(bytes: &[u8]) -> Result<(Self, &[u8]), FragmentHeaderError> {
        let Some((&[hi, lo, index, count], chunk)) = bytes.split_first_chunk() else {
            return Err(FragmentHeaderError::Truncated { len: bytes.len() });
        };
        if count == 0 {
            return Err(FragmentHeaderError::ZeroCount);
        }
        if index >= count {
            return Err(FragmentHeaderError::IndexOutOfRange { index, count });
        }
        let message_id = u16::from_be_bytes([hi, lo]);
        Ok((
            Self {
                message_id,
                index,
                count,
            },
            chunk,
        ))
    }

    /// Whether this is the last fragment of its message (`index == count - 1`).
    pub fn is_last(&self) -> bool {
        self.count.checked_sub(1) == Some(self.index)
    }
}

/// A malformed fragment header. The peer sent a datagram no conforming sender produces: drop the
/// datagram and count it; the connection itself can go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FragmentHeaderError {
    /// Fewer than [`FRAGMENT_HEADER_LEN`] bytes were available.
    #[error("fragment header truncated: {len} of 4 bytes")]
    Truncated {
        /// Bytes available.
        len: usize,
    },
    /// `count` is 0: a message has at least one fragment.
    #[error("fragment count is 0")]
    ZeroCount,
    /// `index` is not below `count`.
    #[error("fragment index {index} out of range for count {count}")]
    IndexOutOfRange {
        /// The index received.
        index: u8,
        /// The count received.
        count: u8,
    },
}

/// Cuts `message` into chunks of `max_chunk_bytes` (the last may be shorter).
///
/// `max_chunk_bytes` is the datagram payload left after the connection's type byte and
/// [`FRAGMENT_HEADER_LEN`]. An empty message yields one empty fragment.
///
/// # Errors
/// `SplitError` when `max_chunk_bytes` is 0 or the message needs more than `max_fragments`
/// fragments.
pub fn split(message: &[u8], max_chunk_bytes: usize, max_fragments: u8) -> Result<Fragments<'_>, SplitError> {
    if max_chunk_bytes == 0 {
        return Err(SplitError::ZeroChunkSize);
    }
    let needed = message.len().div_ceil(max_chunk_bytes).max(1);
    let count = u8::try_from(needed)
        .ok()
        .filter(|&count| count <= max_fragments)
        .ok_or(SplitError::TooManyFragments {
            needed,
            max: max_fragments,
        })?;
    Ok(Fragments {
        rest: message,
        chunk_bytes: max_chunk_bytes,
        next: 0,
        count,
    })
}

/// Why a message could not be split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SplitError {
    /// No room for payload in a datagram (API misuse or a tiny path MTU): send the message
    /// reliably, or wait for a larger maximum datagram size.
    #[error("fragment chunk size is 0")]
    ZeroChunkSize,
    /// The message is too large for the unreliable path at this datagram size: send it reliably
    /// or drop it, per the channel's policy.
    #[error("message needs {needed} fragments, at most {max} allowed")]
    TooManyFragments {
        /// Fragments the message would need at this chunk size.
        needed: usize,
        /// The limit that was passed in.
        max: u8,
    },
}

/// The fragments of one message, in order, as `(index, count, chunk)`; see [`split`].
#[derive(Debug, Clone)]
pub struct Fragments<'a> {
    rest: &'a [u8],
    chunk_bytes: usize,
    next: u8,
    count: u8,
}

impl Fragments<'_> {
    #[cfg(test)]
    /// Total number of fragments of the message (the `count` of every header), `1..=255`.
    pub fn fragment_count(&self) -> u8 {
        self.count
    }
}

impl<'a> Iterator for Fragments<'a> {
    type Item = (u8, u8, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.next == self.count {
            return None;
        }
        let (chunk, rest) = self.rest.split_at(self.chunk_bytes.min(self.rest.len()));
        self.rest = rest;
        let index = self.next;
        self.next += 1;
        Some((index, self.count, chunk))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = usize::from(self.count - self.next);
        (left, Some(left))
    }
}

impl ExactSizeIterator for Fragments<'_> {}
impl FusedIterator for Fragments<'_> {}

/// Reassembly limits, per peer. All are enforced by `Reassembler`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FragmentConfig {
    /// Largest message accepted, in bytes. Default 262 144 (256 KiB): chunks of 1 029 bytes carry
    /// it in 255 fragments, and every QUIC path fits more (it must carry 1 200-byte UDP payloads,
    /// RFC 9000 §14). Large unreliable messages rarely survive loss (every fragment must arrive:
    /// 219 fragments at 1 % loss make it 11 % of the time), so bulk data belongs on a reliable
    /// channel.
    pub max_message_bytes: usize,
    /// Most fragments per message. Default 255, the most the `u8` count can express.
    pub max_fragments: u8,
    /// Most messages being reassembled at once for one peer; when full, the oldest is evicted.
    /// Default 32: a few ticks' worth of fragmented messages on several channels, with room for
    /// reordering.
    pub max_partial_messages: usize,
    /// How long a partial message is kept after its first fragment arrived, in milliseconds.
    /// Default 1 000: fragments are never retransmitted, so a partial only completes if its
    /// missing fragments are merely late; one second is several RTTs even on poor links, and a
    /// game state that old has been superseded anyway, so keeping it would only pin memory.
    pub reassembly_timeout_ms: u64,
    /// Most chunk bytes buffered for one peer; when exceeded, the oldest partials are evicted.
    /// Default 1 MiB (four maximum-size messages); a server's worst case is this times its peers.
    pub memory_budget_bytes: usize,
}

impl Default for FragmentConfig {
    fn default() -> Self {
        Self {
            max_message_bytes: 262_144,
            max_fragments: 255,
            max_partial_messages: 32,
            reassembly_timeout_ms: 1_000,
            memory_budget_bytes: 1 << 20,
        }
    }
}

impl FragmentConfig {
    /// Checks for settings that would refuse every fragmented message or the largest ones:
    /// `max_message_bytes`, `max_fragments`, `max_partial_messages` and
    /// `reassembly_timeout_ms` at least 1, and `memory_budget_bytes` at least
    /// `max_message_bytes`.
    ///
    /// A `Reassembler` accepts any configuration (a zero limit refuses what it limits), so
    /// validate when loading configuration.
    ///
    /// # Errors
    /// The first [`FragmentConfigError`] found; its message starts with the field to fix.
    pub fn validate(&self) -> Result<(), FragmentConfigError> {
        let zero = [
            ("max_message_bytes", self.max_message_bytes == 0),
            ("max_fragments", self.max_fragments == 0),
            ("max_partial_messages", self.max_partial_messages == 0),
            ("reassembly_timeout_ms", self.reassembly_timeout_ms == 0),
        ];
        if let Some((field, _)) = zero.into_iter().find(|(_, is_zero)| *is_zero) {
            return Err(FragmentConfigError::Zero { field });
        }
        if self.memory_budget_bytes < self.max_message_bytes {
            return Err(FragmentConfigError::BudgetBelowMaxMessage);
        }
        Ok(())
    }
}

/// An invalid [`FragmentConfig`]; the variant names the field to fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FragmentConfigError {
    /// The named field is 0, which refuses every fragmented message: raise it.
    #[error("{field} must be at least 1")]
    Zero {
        /// Name of the field.
        field: &'static str,
    },
    /// `memory_budget_bytes` is below `max_message_bytes`, so the largest messages could never be
    /// reassembled: raise the budget or lower the maximum.
    #[error("memory_budget_bytes must be at least max_message_bytes")]
    BudgetBelowMaxMessage,
}

/// Reassembly counters of one peer, monotonic.
///
/// Per-reason counters count drop events: each event throws away either the incoming fragment or
/// a partial message (with the fragments it held, and the incoming one when that caused it).
/// `fragments_dropped` counts the fragments thrown away by all of them. Every received fragment
/// ends up in exactly one place: a delivered message, `duplicate_fragments`, `fragments_dropped`,
/// or a partial still buffered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReassemblyStats {
    /// Fragments passed to `Reassembler::insert`.
    pub fragments_received: u64,
    /// Complete messages returned by `Reassembler::insert`.
    pub messages_reassembled: u64,
    /// Fragments whose index was already buffered for the same partial; ignored (first copy kept).
    pub duplicate_fragments: u64,
    /// Fragments thrown away by all the reasons below.
    pub fragments_dropped: u64,
    /// Fragments (with their partial, if any) whose message exceeds `max_message_bytes` or
    /// `memory_budget_bytes`, detected as soon as the fragments seen imply it.
    pub dropped_too_large: u64,
    /// Fragments whose `count` exceeds `max_fragments`.
    pub dropped_too_many_fragments: u64,
    /// Malformed fragments (`index >= count`, or an empty chunk in a multi-fragment message), and
    /// partials replaced by a fragment that disagrees with them on `count` or chunk length (a
    /// wrapped `message_id`, or a non-last chunk of another size).
    pub dropped_inconsistent: u64,
    /// Partials evicted (oldest first) to open a new one when `max_partial_messages` are open;
    /// with a limit of 0, the refused fragments.
    pub evicted_partial_limit: u64,
    /// Partials evicted (oldest first) to stay within `memory_budget_bytes`.
    pub evicted_memory_budget: u64,
    /// Partials dropped after `reassembly_timeout_ms`.
    pub expired_timeout: u64,
    /// Fragments of one of the last 64 completed messages (same channel and id). A new message
    /// that reuses such an id before 64 others complete is dropped the same way.
    pub late_duplicates: u64,
}

impl std::ops::AddAssign for ReassemblyStats {
    /// Sums two sets of counters (e.g. over connections).
    fn add_assign(&mut self, other: Self) {
        let Self {
            fragments_received,
            messages_reassembled,
            duplicate_fragments,
            fragments_dropped,
            dropped_too_large,
            dropped_too_many_fragments,
            dropped_inconsistent,
            evicted_partial_limit,
            evicted_memory_budget,
            expired_timeout,
            late_duplicates,
        } = other;
        self.fragments_received += fragments_received;
        self.messages_reassembled += messages_reassembled;
        self.duplicate_fragments += duplicate_fragments;
        self.fragments_dropped += fragments_dropped;
        self.dropped_too_large += dropped_too_large;
        self.dropped_too_many_fragments += dropped_too_many_fragments;
        self.dropped_inconsistent += dropped_inconsistent;
        self.evicted_partial_limit += evicted_partial_limit;
        self.evicted_memory_budget += evicted_memory_budget;
        self.expired_timeout += expired_timeout;
        self.late_duplicates += late_duplicates;
    }
}

/// Why fragments were thrown away; selects the [`ReassemblyStats`] counter.
#[derive(Debug, Clone, Copy)]
enum DropReason {
    TooLarge,
    TooManyFragments,
    Inconsistent,
    PartialLimit,
    MemoryBudget,
    Timeout,
    LateDuplicate,
}

/// A partial message's identity: `(channel, message_id)`.
type Key = (u8, u16);

/// A message being reassembled, in place: each chunk is copied once, to where it belongs in the
/// message, and the finished buffer is the delivered message.
#[derive(Debug)]
struct Partial {
    /// Creation order, the eviction and expiry order.
    seq: u64,
    /// `None` when `created + timeout` is not representable: never expires.
    deadline: Option<Instant>,
    count: u8,
    /// Length of every non-last chunk, once one arrived.
    chunk_len: Option<usize>,
    /// Length of the last chunk, once it arrived.
    last_len: Option<usize>,
    /// Which fragments arrived.
    received: FragmentSet,
    /// The message: once a non-last chunk arrived, [`Partial::reserved`] bytes with chunk `i`
    /// at `i × chunk_len`; before that, only the last chunk, parked at the start.
    buf: BytesMut,
}

/// A set of fragment indexes (`0..=255`).
#[derive(Debug, Clone, Copy, Default)]
struct FragmentSet([u64; 4]);

impl FragmentSet {
    fn contains(&self, index: u8) -> bool {
        self.0[usize::from(index / 64)] & (1 << (index % 64)) != 0
    }

    fn insert(&mut self, index: u8) {
        self.0[usize::from(index / 64)] |= 1 << (index % 64);
    }

    fn len(&self) -> u32 {
        self.0.iter().map(|word| word.count_ones()).sum()
    }
}

impl Partial {
    /// Bytes this partial accounts for against the memory budget: the message length once known
    /// exactly, `min(count × C, limit)` (all a valid message can need) once the chunk length `C`
    /// is, and the last chunk alone before that.
    fn reserved(count: u8, chunk_len: Option<usize>, last_len: Option<usize>, limit: usize) -> usize {
        match (chunk_len, last_len) {
            (Some(c), Some(l)) => usize::from(count - 1).saturating_mul(c).saturating_add(l),
            (Some(c), None) => usize::from(count).saturating_mul(c).min(limit),
            (None, last) => last.unwrap_or(0),
        }
    }

    fn reserved_now(&self, limit: usize) -> usize {
        Self::reserved(self.count, self.chunk_len, self.last_len, limit)
    }

    /// The reservation once a chunk of `len` bytes described by `header` is in.
    fn reserved_with(&self, header: FragmentHeader, len: usize, limit: usize) -> usize {
        let (chunk_len, last_len) = if header.is_last() {
            (self.chunk_len, Some(len))
        } else {
            (Some(len), self.last_len)
        };
        Self::reserved(self.count, chunk_len, last_len, limit)
    }

    /// Copies `chunk` (fragment `header.index`) into place. The caller checked it against the
    /// partial (`fit`) and the limit, so it lands inside the buffer: a non-last chunk ends by
    /// `(count − 1) × C < limit`, the last by the exact length, which is within the limit.
    fn store(&mut self, header: FragmentHeader, chunk: &[u8], limit: usize) {
        let len = chunk.len();
        let count = usize::from(self.count);
        let at = if header.is_last() {
            self.last_len = Some(len);
            match self.chunk_len {
                None => {
                    // Parked until the chunk length is known.
                    self.buf.extend_from_slice(chunk);
                    self.received.insert(header.index);
                    return;
                }
                Some(c) => (count - 1) * c,
            }
        } else {
            if self.chunk_len.is_none() {
                // The chunk length is known from now on: lay the message out, moving a parked
                // last chunk to its place.
                // (`zeroed` asks the allocator for zeroed memory, which large allocations get
                // from the OS without a fill: pages no chunk reaches cost no memory.)
                self.chunk_len = Some(len);
                let mut buf = BytesMut::zeroed(count.saturating_mul(len).min(limit));
                let last_at = (count - 1) * len;
                if let Some(slot) = buf.get_mut(last_at..last_at + self.buf.len()) {
                    slot.copy_from_slice(&self.buf);
                }
                self.buf = buf;
            }
            usize::from(header.index) * len
        };
        if let Some(slot) = self.buf.get_mut(at..at + len) {
            slot.copy_from_slice(chunk);
        }
        self.received.insert(header.index);
    }

    /// The finished message.
    fn finish(mut self) -> Bytes {
        let len = Self::reserved(self.count, self.chunk_len, self.last_len, usize::MAX);
        self.buf.truncate(len);
        self.buf.freeze()
    }
}

/// How an incoming fragment relates to the partial with its key.
enum Fit {
    Joins,
    Duplicate,
    Inconsistent,
    TooLarge,
}

impl Partial {
    fn fit(&self, header: FragmentHeader, len: usize, limit: usize) -> Fit {
        let (chunk_len, last_len) = if header.is_last() {
            (self.chunk_len, Some(len))
        } else {
            (Some(len), self.last_len)
        };
        let consistent = header.count == self.count
            && self.chunk_len.is_none_or(|c| Some(c) == chunk_len)
            && chunk_len.zip(last_len).is_none_or(|(c, l)| l <= c);
        if !consistent {
            return Fit::Inconsistent;
        }
        if self.received.contains(header.index) {
            return Fit::Duplicate;
        }
        let message_len = |(c, l)| usize::from(self.count - 1).saturating_mul(c).saturating_add(l);
        if chunk_len
            .zip(last_len)
            .is_some_and(|lens| message_len(lens) > limit)
        {
            Fit::TooLarge
        } else {
            Fit::Joins
        }
    }
}

/// Reassembles the fragmented unreliable messages of one peer (connection).
///
/// [`insert`](Self::insert) is the input for each received fragment and returns a message when it
/// completes; [`handle_timeout`](Self::handle_timeout) drops expired partials, due at
/// [`poll_timeout`](Self::poll_timeout); the rest are getters. All inputs take `now`; a `now`
/// earlier than one already seen is treated as the latest seen.
///
/// Partials are keyed by `(channel, message_id)`. Each is reassembled in place: a chunk is copied
/// once, to its offset in the message, and the completed buffer is the message delivered, so
/// steady-state reassembly allocates once per message, not per fragment. Memory is accounted as
/// the bytes a partial holds for its message (see [`buffered_bytes`](Self::buffered_bytes)), and
/// never exceeds `memory_budget_bytes`; when a limit is reached the oldest partials are evicted
/// rather than the new fragment refused, since newer data is worth more to a game.
#[derive(Debug)]
pub struct Reassembler {
    config: FragmentConfig,
    partials: BTreeMap<Key, Partial>,
    /// Keys of `partials` by creation sequence: oldest first.
    by_age: BTreeMap<u64, Key>,
    next_seq: u64,
    /// Keys of the last [`COMPLETED_HISTORY`] completed messages, oldest first.
    completed: heapless::Deque<Key, COMPLETED_HISTORY>,
    buffered_bytes: usize,
    latest: Option<Instant>,
    stats: ReassemblyStats,
}

impl Reassembler {
    /// An empty reassembler enforcing `config` (see [`FragmentConfig::validate`]).
    pub fn new(config: FragmentConfig) -> Self {
        Self {
            config,
            partials: BTreeMap::new(),
            by_age: BTreeMap::new(),
            next_seq: 0,
            completed: heapless::Deque::new(),
            buffered_bytes: 0,
            latest: None,
            stats: ReassemblyStats::default(),
        }
    }

    /// Takes in one fragment received on `channel` (header already decoded, `chunk` the bytes
    /// after it) and returns the complete message when this was its last missing fragment.
    ///
    /// Expired partials are dropped first. A refused fragment returns `None` and is counted in
    /// [`stats`](Self::stats); nothing a peer sends can make this panic or exceed the limits.
    pub fn insert(
        &mut self,
        now: Instant,
        channel: u8,
        header: FragmentHeader,
        chunk: &[u8],
    ) -> Option<Bytes> {
        let now = self.advance(now);
        self.expire(now);
        self.stats.fragments_received += 1;
        let key = (channel, header.message_id);
        let len = chunk.len();
        let refused = if header.index >= header.count || (len == 0 && header.count > 1) {
            Some(DropReason::Inconsistent)
        } else if header.count > self.config.max_fragments {
            Some(DropReason::TooManyFragments)
        } else if self.completed.iter().any(|k| *k == key) {
            Some(DropReason::LateDuplicate)
        } else if min_message_len(header, len) > self.message_limit() {
            Some(DropReason::TooLarge)
        } else {
            None
        };
        if let Some(reason) = refused {
            self.record_drop(reason, 1);
            return None;
        }
        if let Some(partial) = self.partials.get(&key) {
            match partial.fit(header, len, self.message_limit()) {
                Fit::Joins => {}
                Fit::Duplicate => {
                    self.stats.duplicate_fragments += 1;
                    return None;
                }
                // The partial belongs to an older message with the same id: start afresh.
                Fit::Inconsistent => self.discard(key, DropReason::Inconsistent, 0),
                Fit::TooLarge => {
                    self.discard(key, DropReason::TooLarge, 1);
                    return None;
                }
            }
        }
        if header.count == 1 {
            return Some(self.complete(key, Bytes::copy_from_slice(chunk)));
        }
        if !self.partials.contains_key(&key) && !self.open(now, key, header.count) {
            return None;
        }
        let limit = self.message_limit();
        let (before, after) = match self.partials.get(&key) {
            Some(partial) => (
                partial.reserved_now(limit),
                partial.reserved_with(header, len, limit),
            ),
            None => return None,
        };
        self.make_room(key, after.saturating_sub(before));
        let partial = self.partials.get_mut(&key)?;
        partial.store(header, chunk, limit);
        self.buffered_bytes = self.buffered_bytes - before + after;
        if partial.received.len() < u32::from(partial.count) {
            return None;
        }
        let partial = self.remove(key)?;
        Some(self.complete(key, partial.finish()))
    }

    /// When the oldest partial expires, or `None` when nothing is buffered (or it never expires).
    #[must_use]
    #[inline]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.by_age.is_empty() {
            return None;
        }
        let key = self.by_age.values().next()?;
        self.partials.get(key)?.deadline
    }

    /// Drops the partials whose deadline is at or before `now`, counted in `expired_timeout`.
    /// Calling it early is a no-op.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.advance(now);
        self.expire(now);
    }

    /// The counters so far.
    pub fn stats(&self) -> &ReassemblyStats {
        &self.stats
    }

    /// Number of messages being reassembled, at most `max_partial_messages`.
    pub fn partial_count(&self) -> usize {
        self.partials.len()
    }

    /// Bytes held for partial messages, at most `memory_budget_bytes`: a partial's exact
    /// length once known, `min(count × C, limit)` once its chunk length `C` is, and its last
    /// chunk alone before that.
    pub fn buffered_bytes(&self) -> usize {
        self.buffered_bytes
    }

    /// `now`, or the latest instant seen if that is later: time only moves forward.
    fn advance(&mut self, now: Instant) -> Instant {
        let now = self.latest.map_or(now, |latest| latest.max(now));
        self.latest = Some(now);
        now
    }

    /// Largest message that can be accepted: it must fit both limits on its own.
    fn message_limit(&self) -> usize {
        self.config.max_message_bytes.min(self.config.memory_budget_bytes)
    }

    /// Drops the partials due at `now`, oldest first (deadlines grow with creation order).
    fn expire(&mut self, now: Instant) {
        while let Some(key) = self.oldest_except(None) {
            let deadline = self.partials.get(&key).and_then(|p| p.deadline);
            if deadline.is_none_or(|deadline| deadline > now) {
                break;
            }
            self.discard(key, DropReason::Timeout, 0);
        }
    }

    /// Opens a partial for `key`, evicting the oldest ones at the partial limit. Returns `false`
    /// (counted) when the limit is 0.
    fn open(&mut self, now: Instant, key: Key, count: u8) -> bool {
        while self.partials.len() >= self.config.max_partial_messages {
            let Some(oldest) = self.oldest_except(None) else {
                self.record_drop(DropReason::PartialLimit, 1);
                return false;
            };
            self.discard(oldest, DropReason::PartialLimit, 0);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let timeout = Duration::from_millis(self.config.reassembly_timeout_ms);
        let partial = Partial {
            seq,
            deadline: now.checked_add(timeout),
            count,
            chunk_len: None,
            last_len: None,
            received: FragmentSet::default(),
            buf: BytesMut::new(),
        };
        self.partials.insert(key, partial);
        self.by_age.insert(seq, key);
        true
    }

    /// Evicts the oldest partials other than `key`'s until `extra` more bytes fit the budget.
    fn make_room(&mut self, key: Key, extra: usize) {
        while self.buffered_bytes + extra > self.config.memory_budget_bytes {
            // `key`'s partial plus `extra` never exceeds `message_limit()` (checked by
            // `min_message_len` and `Partial::fit`), so evicting the others always suffices.
            let Some(oldest) = self.oldest_except(Some(key)) else {
                break;
            };
            self.discard(oldest, DropReason::MemoryBudget, 0);
        }
    }

    fn oldest_except(&self, skip: Option<Key>) -> Option<Key> {
        self.by_age.values().copied().find(|&key| Some(key) != skip)
    }

    fn remove(&mut self, key: Key) -> Option<Partial> {
        let partial = self.partials.remove(&key)?;
        self.by_age.remove(&partial.seq);
        self.buffered_bytes -= partial.reserved_now(self.message_limit());
        Some(partial)
    }

    /// Drops `key`'s partial, counting its fragments plus `extra` incoming ones.
    fn discard(&mut self, key: Key, reason: DropReason, extra: u64) {
        let held = self.remove(key).map_or(0, |partial| partial.received.len());
        self.record_drop(reason, u64::from(held) + extra);
    }

    fn complete(&mut self, key: Key, message: Bytes) -> Bytes {
        if self.completed.is_full() {
            self.completed.pop_front();
        }
        let _ = self.completed.push_back(key); // room was made above
        self.stats.messages_reassembled += 1;
        message
    }

    fn record_drop(&mut self, reason: DropReason, fragments: u64) {
        let stats = &mut self.stats;
        let counter = match reason {
            DropReason::TooLarge => &mut stats.dropped_too_large,
            DropReason::TooManyFragments => &mut stats.dropped_too_many_fragments,
            DropReason::Inconsistent => &mut stats.dropped_inconsistent,
            DropReason::PartialLimit => &mut stats.evicted_partial_limit,
            DropReason::MemoryBudget => &mut stats.evicted_memory_budget,
            DropReason::Timeout => &mut stats.expired_timeout,
            DropReason::LateDuplicate => &mut stats.late_duplicates,
        };
        *counter += 1;
        stats.fragments_dropped += fragments;
    }
}

/// The smallest message a well-formed fragment can belong to: non-last chunks all have the same
/// length `C` and the last one has `1..=C` bytes.
fn min_message_len(header: FragmentHeader, len: usize) -> usize {
    let count = usize::from(header.count);
    if count == 1 {
        len
    } else if header.is_last() {
        count.saturating_mul(len)
    } else {
        (count - 1).saturating_mul(len).saturating_add(1)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::ops::RangeBounds;

    use proptest::prelude::*;
    use proptest::sample::Index;

    use super::*;
    use crate::testing::internals::ReassemblerModel;

    fn h(message_id: u16, index: u8, count: u8) -> FragmentHeader {
        FragmentHeader {
            message_id,
            index,
            count,
        }
    }

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    fn message(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 256) as u8).collect()
    }

    fn reassembler(edit: impl FnOnce(&mut FragmentConfig)) -> Reassembler {
        let mut config = FragmentConfig::default();
        edit(&mut config);
        Reassembler::new(config)
    }

    /// Splits `msg` into `chunk`-byte fragments under `id`, inserts those whose index is in
    /// `which` on channel 0 at `now`, and returns what was delivered.
    fn feed(
        r: &mut Reassembler,
        now: Instant,
        (id, msg, chunk): (u16, &[u8], usize),
        which: impl RangeBounds<u8>,
    ) -> Vec<Bytes> {
        let frags = split(msg, chunk, 255).unwrap();
        frags
            .filter(|(index, ..)| which.contains(index))
            .filter_map(|(index, count, chunk)| r.insert(now, 0, h(id, index, count), chunk))
            .collect()
    }

    const NOTHING: [Bytes; 0] = [];

    #[test]
    fn headers_roundtrip_and_malformed_ones_are_rejected() {
        let datagram = [&h(0x1234, 2, 3).encode()[..], b"chunk"].concat();
        assert_eq!(&datagram[..4], [0x12, 0x34, 2, 3]);
        let decoded = FragmentHeader::decode(&datagram);
        assert_eq!(decoded, Ok((h(0x1234, 2, 3), &b"chunk"[..])));
        assert!(h(0, 2, 3).is_last() && !h(0, 0, 3).is_last());

        use FragmentHeaderError::*;
        assert_eq!(FragmentHeader::decode(&[1, 2, 0]), Err(Truncated { len: 3 }));
        assert_eq!(FragmentHeader::decode(&[1, 2, 0, 0]), Err(ZeroCount));
        let out_of_range = Err(IndexOutOfRange { index: 5, count: 5 });
        assert_eq!(FragmentHeader::decode(&[1, 2, 5, 5]), out_of_range);
    }

    #[test]
    fn split_cuts_equal_chunks_and_reports_how_many_would_be_needed() {
        let chunks: Vec<_> = split(b"abcdefg", 3, 255).unwrap().collect();
        let expected: [(u8, u8, &[u8]); 3] = [(0, 3, b"abc"), (1, 3, b"def"), (2, 3, b"g")];
        assert_eq!(chunks, expected);
        assert_eq!(split(b"abcdef", 3, 2).unwrap().len(), 2);
        let empty: Vec<_> = split(b"", 3, 1).unwrap().collect();
        assert_eq!(empty, [(0, 1, &b""[..])], "one empty fragment");

        use SplitError::*;
        assert_eq!(split(b"abc", 0, 255).unwrap_err(), ZeroChunkSize);
        let too_many = TooManyFragments { needed: 4, max: 3 };
        assert_eq!(split(b"abcdefg", 2, 3).unwrap_err(), too_many);
        let beyond_u8 = TooManyFragments {
            needed: 300,
            max: 255,
        };
        assert_eq!(split(&[0; 300], 1, 255).unwrap_err(), beyond_u8);
    }

    #[test]
    fn reordered_fragments_are_delivered_once_and_copies_are_counted() {
        let t0 = crate::testing::epoch();
        let mut r = reassembler(|_| {});
        let msg = message(2_500);
        assert_eq!(feed(&mut r, t0, (7, &msg, 1_000), 2..), NOTHING);
        assert_eq!(feed(&mut r, t0, (7, &msg, 1_000), 2..), NOTHING, "duplicate");
        assert_eq!((r.partial_count(), r.buffered_bytes()), (1, 500));
        assert_eq!(feed(&mut r, t0, (7, &msg, 1_000), ..2), [msg.as_slice()]);
        assert_eq!(
            (r.partial_count(), r.buffered_bytes(), r.poll_timeout()),
            (0, 0, None)
        );

        // A late copy must not open a partial that could never complete.
        assert_eq!(feed(&mut r, t0, (7, &msg, 1_000), 1..=1), NOTHING);
        assert_eq!(r.partial_count(), 0);
        let s = r.stats();
        assert_eq!((s.fragments_received, s.messages_reassembled), (5, 1));
        assert_eq!(
            (s.duplicate_fragments, s.late_duplicates, s.fragments_dropped),
            (1, 1, 1)
        );
    }

    #[test]
    fn single_fragment_messages_complete_at_once_and_channels_are_separate() {
        let t0 = crate::testing::epoch();
        let mut r = reassembler(|_| {});
        assert_eq!(r.insert(t0, 0, h(1, 0, 1), b""), Some(Bytes::new()));
        assert_eq!(r.insert(t0, 1, h(1, 0, 1), b"x"), Some(Bytes::from("x")));
        assert_eq!(r.insert(t0, 1, h(1, 0, 1), b"x"), None, "late duplicate");

        r.insert(t0, 2, h(9, 0, 2), b"a2");
        r.insert(t0, 3, h(9, 1, 2), b"b3");
        assert_eq!(r.insert(t0, 3, h(9, 0, 2), b"a3"), Some(Bytes::from("a3b3")));
        assert_eq!(r.insert(t0, 2, h(9, 1, 2), b"b2"), Some(Bytes::from("a2b2")));
        assert_eq!(r.stats().messages_reassembled, 4);
    }

    #[test]
    fn a_lost_fragment_lets_the_partial_expire_and_time_never_goes_back() {
        let t0 = crate::testing::epoch();
        let mut r = reassembler(|_| {});
        let msg = message(30);
        feed(&mut r, t0, (1, &msg, 10), ..2);
        feed(&mut r, t0 + ms(400), (2, &msg, 10), ..1);
        assert_eq!(
            r.poll_timeout(),
            Some(t0 + ms(1_000)),
            "the oldest partial's deadline"
        );
        r.handle_timeout(t0 + ms(999));
        assert_eq!(r.partial_count(), 2, "an early timeout is a no-op");
        r.handle_timeout(t0 + ms(1_000));
        assert_eq!((r.partial_count(), r.poll_timeout()), (1, Some(t0 + ms(1_400))));
        assert_eq!((r.stats().expired_timeout, r.stats().fragments_dropped), (1, 2));

        // An earlier `now` counts as the latest seen: nothing revived, nothing extended.
        assert_eq!(feed(&mut r, t0, (1, &msg, 10), 2..), NOTHING);
        r.handle_timeout(t0);
        assert_eq!(r.partial_count(), 2);
        r.handle_timeout(t0 + ms(1_400));
        assert_eq!(
            r.poll_timeout(),
            Some(t0 + ms(2_000)),
            "opened at the latest time seen"
        );
    }

    #[test]
    fn malformed_and_inconsistent_fragments_are_dropped() {
        let t0 = crate::testing::epoch();
        let mut r = reassembler(|_| {});
        r.insert(t0, 0, h(1, 3, 3), b"x");
        r.insert(t0, 0, h(1, 0, 3), b"");
        r.insert(t0, 0, h(1, 2, 3), b"");
        assert_eq!((r.stats().dropped_inconsistent, r.partial_count()), (3, 0));

        // A chunk of another size replaces the partial it disagrees with...
        r.insert(t0, 0, h(1, 0, 3), b"aa");
        r.insert(t0, 0, h(1, 1, 3), b"bbb");
        // (The new partial holds room for its whole message: 3 chunks of 3 bytes.)
        assert_eq!((r.stats().dropped_inconsistent, r.buffered_bytes()), (4, 9));
        // ...and so does a last chunk longer than the others.
        r.insert(t0, 0, h(1, 2, 3), b"cccc");
        assert_eq!((r.stats().dropped_inconsistent, r.buffered_bytes()), (5, 4));
        assert_eq!(r.stats().fragments_dropped, 5);
    }

    #[test]
    fn a_wrapped_id_with_another_count_replaces_the_stale_partial() {
        let t0 = crate::testing::epoch();
        let mut r = reassembler(|_| {});
        feed(&mut r, t0, (42, &message(50), 10), ..3);
        let newer = message(20);
        assert_eq!(feed(&mut r, t0 + ms(10), (42, &newer, 10), ..), [newer]);
        assert_eq!(
            (r.stats().dropped_inconsistent, r.stats().fragments_dropped),
            (1, 3)
        );
        assert_eq!((r.partial_count(), r.buffered_bytes()), (0, 0));
    }

    #[test]
    fn oversized_messages_are_refused_as_soon_as_known_but_the_maximum_fits() {
        let t0 = crate::testing::epoch();
        let mut r = reassembler(|c| (c.max_message_bytes, c.max_fragments) = (100, 10));
        r.insert(t0, 0, h(1, 0, 11), b"x");
        assert_eq!(r.stats().dropped_too_many_fragments, 1);
        r.insert(t0, 0, h(2, 0, 3), &[0; 50]); // at least 2 × 50 + 1 bytes
        r.insert(t0, 0, h(3, 3, 4), &[0; 26]); // at least 4 × 26 bytes
        r.insert(t0, 0, h(4, 0, 1), &[0; 101]);
        assert_eq!((r.stats().dropped_too_large, r.partial_count()), (3, 0));

        // Each alone could fit; together they make 3 × 30 + 20 = 110 bytes.
        r.insert(t0, 0, h(5, 3, 4), &[0; 20]);
        r.insert(t0, 0, h(5, 1, 4), &[0; 30]);
        assert_eq!((r.stats().dropped_too_large, r.stats().fragments_dropped), (4, 6));
        assert_eq!((r.partial_count(), r.buffered_bytes()), (0, 0));

        // 100 bytes in 30-byte chunks: 4 × 30 > 100, yet the message is within the limit.
        let max = message(100);
        assert_eq!(feed(&mut r, t0, (6, &max, 30), ..), [max]);
    }

    #[test]
    fn the_partial_limit_evicts_the_oldest_partial() {
        let t0 = crate::testing::epoch();
        let mut r = reassembler(|c| c.max_partial_messages = 2);
        let msg = message(20);
        for id in 0..3 {
            feed(&mut r, t0 + ms(id.into()), (id, &msg, 10), ..1);
        }
        assert_eq!((r.partial_count(), r.stats().evicted_partial_limit), (2, 1));
        assert_eq!(r.poll_timeout(), Some(t0 + ms(1_001)), "message 0 was evicted");
        assert_eq!(feed(&mut r, t0, (2, &msg, 10), 1..), [msg.as_slice()]);

        let mut none = reassembler(|c| c.max_partial_messages = 0);
        assert_eq!(feed(&mut none, t0, (0, &msg, 10), ..), NOTHING);
        assert_eq!(
            none.stats().evicted_partial_limit,
            2,
            "a zero limit refuses fragments"
        );
        assert_eq!(none.insert(t0, 0, h(9, 0, 1), b"x"), Some(Bytes::from("x")));
    }

    #[test]
    fn the_memory_budget_evicts_the_oldest_partials_and_refuses_what_cannot_fit() {
        let t0 = crate::testing::epoch();
        let mut r = reassembler(|c| c.memory_budget_bytes = 200);
        let (big, small) = (message(80), message(60));
        // Each partial holds room for its whole message from its first non-last chunk on.
        feed(&mut r, t0, (1, &big, 40), ..1);
        feed(&mut r, t0, (2, &big, 40), ..1);
        assert_eq!((r.partial_count(), r.buffered_bytes()), (2, 160));
        feed(&mut r, t0, (3, &small, 30), ..1);
        assert_eq!(
            (r.partial_count(), r.buffered_bytes()),
            (2, 140),
            "message 1 evicted"
        );
        feed(&mut r, t0, (1, &big, 40), ..1);
        assert_eq!(
            (r.partial_count(), r.buffered_bytes()),
            (2, 140),
            "message 2 evicted"
        );
        assert_eq!(r.stats().evicted_memory_budget, 2);

        r.insert(t0, 0, h(4, 0, 3), &[0; 150]);
        assert_eq!(r.stats().dropped_too_large, 1, "more than the whole budget");
        assert_eq!(r.buffered_bytes(), 140, "nothing evicted for a hopeless message");
        assert_eq!(feed(&mut r, t0, (3, &small, 30), 1..), [small]);
    }

    #[test]
    fn only_the_last_64_completed_messages_are_remembered() {
        let t0 = crate::testing::epoch();
        let mut r = reassembler(|_| {});
        for id in 0..=64 {
            assert!(r.insert(t0, 0, h(id, 0, 1), b"m").is_some());
        }
        assert_eq!(r.insert(t0, 0, h(1, 0, 1), b"m"), None);
        assert_eq!(r.stats().late_duplicates, 1);
        assert!(r.insert(t0, 0, h(0, 0, 1), b"m").is_some(), "forgotten");
    }

    #[test]
    fn config_defaults_parse_and_validate() {
        let config = FragmentConfig::default();
        assert_eq!(config.validate(), Ok(()));
        assert_eq!(toml::from_str::<FragmentConfig>("").unwrap(), config);
        let parsed: FragmentConfig = toml::from_str("max_fragments = 16").unwrap();
        assert_eq!(parsed.max_fragments, 16);
        assert!(toml::from_str::<FragmentConfig>("max_fragment = 16").is_err());

        let mut zero = config.clone();
        zero.max_partial_messages = 0;
        let field = "max_partial_messages";
        assert_eq!(zero.validate(), Err(FragmentConfigError::Zero { field }));
        let mut small_budget = config;
        small_budget.memory_budget_bytes = 1_000;
        let error = FragmentConfigError::BudgetBelowMaxMessage;
        assert_eq!(small_budget.validate(), Err(error));
        let stats = serde_json::to_value(ReassemblyStats::default()).unwrap();
        assert_eq!(stats["late_duplicates"], 0);
    }

    #[test]
    fn validate_refuses_each_bad_value_naming_its_field() {
        use FragmentConfigError as E;
        // Limits the integration tests run with.
        let tight = FragmentConfig {
            max_message_bytes: 6_000,
            memory_budget_bytes: 6_000,
            max_fragments: 4,
            max_partial_messages: 1,
            ..FragmentConfig::default()
        };
        assert_eq!(tight.validate(), Ok(()));
        type Edit = fn(&mut FragmentConfig);
        let zero = |field| E::Zero { field };
        let cases: [(Edit, E, &str); 6] = [
            (
                |c| c.max_message_bytes = 0,
                zero("max_message_bytes"),
                "max_message_bytes",
            ),
            (|c| c.max_fragments = 0, zero("max_fragments"), "max_fragments"),
            (
                |c| c.max_partial_messages = 0,
                zero("max_partial_messages"),
                "max_partial_messages",
            ),
            (
                |c| c.reassembly_timeout_ms = 0,
                zero("reassembly_timeout_ms"),
                "reassembly_timeout_ms",
            ),
            (
                |c| c.memory_budget_bytes = 0,
                E::BudgetBelowMaxMessage,
                "memory_budget_bytes",
            ),
            (
                |c| c.max_message_bytes = usize::MAX,
                E::BudgetBelowMaxMessage,
                "memory_budget_bytes",
            ),
        ];
        crate::config::assert_each_refused(&cases, FragmentConfig::validate);
    }

    /// A step of the model-based tests.
    #[derive(Debug, Clone)]
    enum Op {
        /// `(channel, len, chunk, reuse)`: split a message and put its fragments in flight; with
        /// `reuse`, under the channel's previous id if the count differs (a wrapped id).
        Send(u8, usize, usize, bool),
        /// `(pick, duplicate, rewind_ms)`: deliver any in-flight fragment (reordering), keeping a
        /// copy in flight if `duplicate`, stamped `rewind_ms` in the past (a clock going back).
        Deliver(Index, bool, u64),
        /// Lose an in-flight fragment.
        Lose(Index),
        Advance(u64),
        Timeout,
    }

    fn op() -> impl Strategy<Value = Op> {
        let send = (0..3u8, 0..1_500usize, 1..200usize, prop::bool::weighted(0.2));
        let deliver = (any::<Index>(), prop::bool::weighted(0.2), 0..50u64);
        prop_oneof![
            2 => send.prop_map(|(channel, len, chunk, reuse)| Op::Send(channel, len, chunk, reuse)),
            8 => deliver.prop_map(|(pick, copy, rewind)| Op::Deliver(pick, copy, rewind.saturating_sub(35))),
            1 => any::<Index>().prop_map(Op::Lose),
            2 => (0..60u64).prop_map(Op::Advance),
            1 => Just(Op::Timeout),
        ]
    }

    /// Runs `ops` against a reassembler with `config` and against the reference model
    /// ([`ReassemblerModel`]): every delivered message is exactly one that was sent, delivered
    /// once; delivery, buffering, the deadline and every counter match the model at each step;
    /// the limits and the fragment accounting hold.
    fn run(config: FragmentConfig, ops: Vec<Op>) -> Result<(), TestCaseError> {
        let mut now = crate::testing::epoch();
        let mut real = Reassembler::new(config.clone());
        let mut model = ReassemblerModel::new(config.clone());
        let mut next_id = [0u16; 3];
        // Messages by `(key, count)`: a reused id always comes with another count.
        let mut sent: BTreeMap<(Key, u8), Vec<u8>> = BTreeMap::new();
        let mut in_flight: Vec<(u8, FragmentHeader, Vec<u8>)> = Vec::new();
        let mut delivered = BTreeSet::new();
        let mut delivered_fragments = 0;
        for op in ops {
            match op {
                Op::Send(channel, len, chunk, reuse) => {
                    let c = usize::from(channel);
                    let needed = len.div_ceil(chunk).max(1);
                    let previous = (channel, next_id[c].wrapping_sub(1));
                    let taken =
                        |(&(key, n), _): (&(Key, u8), &Vec<u8>)| key == previous && usize::from(n) == needed;
                    let id = if reuse && next_id[c] > 0 && !sent.iter().any(taken) {
                        previous.1
                    } else {
                        next_id[c] += 1;
                        next_id[c] - 1
                    };
                    let msg: Vec<u8> = message(len).iter().map(|b| b ^ id as u8).collect();
                    match split(&msg, chunk, 255) {
                        Ok(frags) => {
                            sent.insert(((channel, id), frags.fragment_count()), msg.clone());
                            in_flight.extend(frags.map(|(i, n, c)| (channel, h(id, i, n), c.to_vec())));
                        }
                        Err(e) => {
                            prop_assert_eq!(e, SplitError::TooManyFragments { needed, max: 255 })
                        }
                    }
                }
                Op::Deliver(pick, copy, rewind_ms) if !in_flight.is_empty() => {
                    let i = pick.index(in_flight.len());
                    let (channel, h, chunk) = if copy {
                        in_flight[i].clone()
                    } else {
                        in_flight.swap_remove(i)
                    };
                    let (key, at) = ((channel, h.message_id), now - ms(rewind_ms));
                    let got = real.insert(at, channel, h, &chunk);
                    if let Some(got) = &got {
                        prop_assert_eq!(&got[..], &sent[&(key, h.count)][..], "wrong content");
                        prop_assert!(delivered.insert((key, h.count)), "delivered twice");
                        delivered_fragments += u64::from(h.count);
                    }
                    let expected = model.insert(at, channel, h, &chunk);
                    prop_assert_eq!(
                        got.as_deref(),
                        expected.as_deref(),
                        "delivery differs from the model"
                    );
                }
                Op::Lose(pick) if !in_flight.is_empty() => {
                    in_flight.swap_remove(pick.index(in_flight.len()));
                }
                Op::Deliver(..) | Op::Lose(_) => {}
                Op::Advance(step) => now += ms(step),
                Op::Timeout => {
                    real.handle_timeout(now);
                    model.handle_timeout(now);
                }
            }
            let stats = *real.stats();
            prop_assert!(real.partial_count() <= config.max_partial_messages);
            prop_assert!(real.buffered_bytes() <= config.memory_budget_bytes);
            let partials = real.partials.values();
            let limit = real.message_limit();
            let stored: usize = partials.clone().map(|p| p.reserved_now(limit)).sum();
            let held: u64 = partials.map(|p| u64::from(p.received.len())).sum();
            prop_assert_eq!(real.buffered_bytes(), stored);
            prop_assert_eq!(
                stats.fragments_received,
                delivered_fragments + stats.duplicate_fragments + stats.fragments_dropped + held,
                "every fragment is accounted for once"
            );
            prop_assert_eq!(
                (real.partial_count(), real.buffered_bytes(), real.poll_timeout()),
                (
                    model.partial_count(),
                    model.buffered_bytes(),
                    model.poll_timeout()
                )
            );
            prop_assert_eq!(&stats, model.stats());
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn reassembler_matches_the_model_without_limits(ops in prop::collection::vec(op(), 0..300)) {
            let config = FragmentConfig {
                max_message_bytes: usize::MAX,
                max_partial_messages: usize::MAX,
                memory_budget_bytes: usize::MAX,
                reassembly_timeout_ms: 300,
                ..FragmentConfig::default()
            };
            run(config, ops)?;
        }

        #[test]
        fn reassembler_matches_the_model_under_tight_limits(
            ops in prop::collection::vec(op(), 0..300),
            max_message_bytes in 300..1_500usize,
            max_fragments in 0..64u8,
            max_partial_messages in 0..8usize,
            reassembly_timeout_ms in 0..400u64,
            budget_halves in 1..4usize,
        ) {
            let config = FragmentConfig {
                max_message_bytes,
                max_fragments,
                max_partial_messages,
                reassembly_timeout_ms,
                memory_budget_bytes: max_message_bytes * budget_halves / 2,
            };
            run(config, ops)?;
        }

        #[test]
        fn any_message_within_limits_roundtrips_through_shuffled_duplicated_fragments(
            msg in prop::collection::vec(any::<u8>(), 0..3_000),
            chunk in 1..400usize,
            order in Just((0..255u8).collect::<Vec<_>>()).prop_shuffle(),
            duplicates in prop::collection::vec(any::<bool>(), 255),
        ) {
            let t0 = crate::testing::epoch();
            let frags = match split(&msg, chunk, 255) {
                Ok(frags) => frags.collect::<Vec<_>>(),
                Err(_) => return Err(TestCaseError::reject("more than 255 fragments")),
            };
            let count = frags.len() as u8;
            // The tightest limits that still admit this message.
            let mut r = Reassembler::new(FragmentConfig {
                max_message_bytes: msg.len(),
                max_fragments: count,
                max_partial_messages: 1,
                memory_budget_bytes: msg.len(),
                ..FragmentConfig::default()
            });
            let mut seen = BTreeSet::new();
            let mut expected = ReassemblyStats::default();
            for index in order.into_iter().filter(|&i| i < count) {
                let (_, _, chunk) = frags[usize::from(index)];
                for _ in 0..1 + usize::from(duplicates[usize::from(index)]) {
                    let got = r.insert(t0, 3, h(9, index, count), chunk);
                    expected.fragments_received += 1;
                    if expected.messages_reassembled == 1 {
                        expected.late_duplicates += 1;
                        expected.fragments_dropped += 1;
                    } else if !seen.insert(index) {
                        expected.duplicate_fragments += 1;
                    } else if seen.len() == usize::from(count) {
                        expected.messages_reassembled += 1;
                        prop_assert_eq!(got.as_deref(), Some(&msg[..]));
                        continue;
                    }
                    prop_assert_eq!(got, None);
                }
            }
            prop_assert_eq!(r.stats(), &expected);
            prop_assert_eq!((r.partial_count(), r.buffered_bytes()), (0, 0));
        }
    }
}
