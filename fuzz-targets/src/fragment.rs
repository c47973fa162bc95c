//! The fragment reassembler (RFC 9221 datagrams, `PROTOCOL.md` §3.5), against its reference
//! model.

use std::ops::Range;
use std::time::Instant;

use arbitrary::{Arbitrary, Unstructured};
use tickwire_core::config::FragmentConfig;
use tickwire_core::testing::internals::{split, Reassembler, ReassemblerModel};
use tickwire_core::wire::FragmentHeader;

use crate::input::{base_instant, each_op, ms, take, MAX_OPS};

/// The reassembler's limits, XORed into the target's defaults (4 KiB messages, 16 fragments,
/// 4 partials, 500 ms, 8 KiB budget).
#[derive(Debug, Default, Arbitrary)]
struct ReassemblyLimits {
    max_message_bytes: u16,
    max_fragments: u8,
    max_partial_messages: u8,
    timeout_ms: u16,
    memory_budget_bytes: u16,
}

#[derive(Debug, Arbitrary)]
enum ReassemblyOp {
    /// Defines a message of `len % 4097` bytes, cut into `chunk % 1024 + 1`-byte
    /// fragments, on channel `channel % 4` under the next message id.
    Message {
        channel: u8,
        len: u16,
        chunk: u16,
        fill: u8,
    },
    /// Inserts every fragment of message `message` not inserted since its last delivery,
    /// in order or reversed.
    Rest { message: u8, reverse: bool },
    /// Inserts fragment `index` of message `message` (again, if it was).
    Fragment { message: u8, index: u8 },
    /// A raw fragment on channel 4..=255 (never a defined message's key), any header.
    Raw {
        channel: u8,
        message_id: u16,
        index: u8,
        count: u8,
        len: u16,
    },
    /// Time passes: `ms` milliseconds.
    Advance { ms: u16 },
    /// `handle_timeout` now.
    Timeout,
    /// A `now` earlier than the latest (the reassembler must treat it as the latest).
    Stale { ms: u16, message: u8, index: u8 },
}

/// A message the input defined: its key, bytes and fragments.
struct Message {
    channel: u8,
    id: u16,
    data: Vec<u8>,
    /// `(index, count, byte range)` of each fragment.
    fragments: Vec<(u8, u8, Range<usize>)>,
    /// Which fragments were inserted since the message's last delivery.
    inserted: Vec<bool>,
}

/// The reassembler under test beside its model, fed the same fragments.
struct Run {
    config: FragmentConfig,
    real: Reassembler,
    model: ReassemblerModel,
    /// Fragments held by delivered messages.
    delivered_fragments: u64,
}

impl Run {
    /// Inserts one fragment into both and asserts they agree on the outcome; returns the
    /// delivered message.
    fn insert(&mut self, at: Instant, channel: u8, header: FragmentHeader, chunk: &[u8]) -> Option<Vec<u8>> {
        let got = self.real.insert(at, channel, header, chunk);
        let expected = self.model.insert(at, channel, header, chunk);
        assert_eq!(
            got.as_deref(),
            expected.as_deref(),
            "delivery of {header:?} on channel {channel} differs from the model"
        );
        let got = got?;
        let limit = self.config.max_message_bytes.min(self.config.memory_budget_bytes);
        assert!(got.len() <= limit && header.count <= self.config.max_fragments);
        self.delivered_fragments += u64::from(header.count);
        Some(got.to_vec())
    }

    /// Inserts fragment `i` of message `m` at `at`.
    fn insert_fragment(&mut self, at: Instant, messages: &mut [Message], m: usize, i: usize) {
        let msg = &mut messages[m];
        let (index, count, range) = msg.fragments[i].clone();
        let header = FragmentHeader {
            message_id: msg.id,
            index,
            count,
        };
        msg.inserted[i] = true;
        if let Some(bytes) = self.insert(at, msg.channel, header, &msg.data[range]) {
            assert_eq!(bytes, msg.data, "delivered bytes differ from the message");
            msg.inserted.iter_mut().for_each(|x| *x = false);
        }
    }

    /// Asserts that the real reassembler and the model agree on everything observable, and that
    /// the limits hold.
    fn check(&self) {
        let (real, model) = (&self.real, &self.model);
        assert_eq!(real.stats(), model.stats(), "counters differ from the model");
        assert_eq!(
            (real.partial_count(), real.buffered_bytes(), real.poll_timeout()),
            (
                model.partial_count(),
                model.buffered_bytes(),
                model.poll_timeout()
            ),
            "partials, buffered bytes or deadline differ from the model"
        );
        assert!(
            real.buffered_bytes() <= self.config.memory_budget_bytes,
            "over the memory budget"
        );
        assert!(
            real.partial_count() <= self.config.max_partial_messages,
            "over the partial limit"
        );
    }
}

/// The fragment reassembler (`Reassembler`) against its reference model
/// ([`ReassemblerModel`], also used by the reassembler's property tests).
///
/// Input (`arbitrary`): `ReassemblyLimits`, then up to [`MAX_OPS`] operations: define a
/// message, insert some or all of its fragments, insert raw fragments on other channels, let
/// time pass, call `handle_timeout`, insert with a stale `now`.
///
/// Asserts: after every operation, the reassembler and the model agree on what was delivered,
/// every counter, the partials and bytes buffered and the next deadline; a delivered message
/// is exactly a defined message, within `max_message_bytes`, `memory_budget_bytes` and
/// `max_fragments`; at most `memory_budget_bytes` buffered and `max_partial_messages` partials
/// at any time; `poll_timeout` is in the future after `handle_timeout`; once everything
/// expired, nothing is held and every fragment received is accounted for (delivered,
/// duplicate or dropped).
pub fn reassembler(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let limits: ReassemblyLimits = take(&mut u);
    let config = FragmentConfig {
        max_message_bytes: usize::from(4096 ^ limits.max_message_bytes),
        max_fragments: 16 ^ limits.max_fragments,
        max_partial_messages: usize::from(4 ^ (limits.max_partial_messages % 64)),
        reassembly_timeout_ms: u64::from(500 ^ limits.timeout_ms),
        memory_budget_bytes: usize::from(8192 ^ limits.memory_budget_bytes),
    };
    let mut run = Run {
        real: Reassembler::new(config.clone()),
        model: ReassemblerModel::new(config.clone()),
        config,
        delivered_fragments: 0,
    };
    let mut now = base_instant();
    let mut messages: Vec<Message> = Vec::new();
    let mut next_id = 0u16;

    each_op(&mut u, MAX_OPS, |op: ReassemblyOp| {
        match op {
            ReassemblyOp::Message {
                channel,
                len,
                chunk,
                fill,
            } => {
                let data: Vec<u8> = (0..usize::from(len % 4097))
                    .map(|i| fill.wrapping_add(i as u8))
                    .collect();
                let chunk = usize::from(chunk % 1024) + 1;
                let Ok(split) = split(&data, chunk, 255) else {
                    return;
                };
                let mut offset = 0;
                let fragments: Vec<_> = split
                    .map(|(index, count, bytes)| {
                        let range = offset..offset + bytes.len();
                        offset += bytes.len();
                        (index, count, range)
                    })
                    .collect();
                messages.push(Message {
                    channel: channel % 4,
                    id: next_id,
                    inserted: vec![false; fragments.len()],
                    data,
                    fragments,
                });
                next_id = next_id.wrapping_add(1);
            }
            ReassemblyOp::Rest { message, reverse } => {
                if messages.is_empty() {
                    return;
                }
                let m = usize::from(message) % messages.len();
                let mut todo: Vec<usize> = (0..messages[m].fragments.len())
                    .filter(|&i| !messages[m].inserted[i])
                    .collect();
                if reverse {
                    todo.reverse();
                }
                for i in todo {
                    run.insert_fragment(now, &mut messages, m, i);
                }
            }
            ReassemblyOp::Fragment { message, index } => {
                if messages.is_empty() {
                    return;
                }
                let m = usize::from(message) % messages.len();
                let i = usize::from(index) % messages[m].fragments.len();
                run.insert_fragment(now, &mut messages, m, i);
            }
            ReassemblyOp::Raw {
                channel,
                message_id,
                index,
                count,
                len,
            } => {
                let chunk = vec![0xEE; usize::from(len % 2048)];
                let header = FragmentHeader {
                    message_id,
                    index,
                    count,
                };
                if run.insert(now, 4 + channel % 252, header, &chunk).is_some() {
                    assert!(count >= 1 && index < count, "delivered a malformed fragment");
                }
            }
            ReassemblyOp::Advance { ms: step } => now += ms(u64::from(step)),
            ReassemblyOp::Timeout => {
                run.real.handle_timeout(now);
                run.model.handle_timeout(now);
                let due = run.real.poll_timeout();
                assert!(due.is_none_or(|t| t > now), "a due partial survived");
            }
            ReassemblyOp::Stale {
                ms: back,
                message,
                index,
            } => {
                if messages.is_empty() {
                    return;
                }
                let m = usize::from(message) % messages.len();
                let i = usize::from(index) % messages[m].fragments.len();
                let at = now.checked_sub(ms(u64::from(back))).unwrap_or(now);
                run.insert_fragment(at, &mut messages, m, i);
            }
        }
        run.check();
    });

    // Everything expires eventually; then every fragment is accounted for.
    let end = now + ms(run.config.reassembly_timeout_ms) + ms(1);
    run.real.handle_timeout(end);
    run.model.handle_timeout(end);
    run.check();
    let r = &run.real;
    assert_eq!(
        (r.partial_count(), r.buffered_bytes()),
        (0, 0),
        "partials outlived the timeout"
    );
    assert_eq!(r.poll_timeout(), None);
    let stats = r.stats();
    assert_eq!(
        stats.fragments_received,
        run.delivered_fragments + stats.duplicate_fragments + stats.fragments_dropped,
        "fragments unaccounted for: {stats:?}"
    );
}
