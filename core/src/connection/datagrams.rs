//! Datagram channels (unreliable and sequenced, `PROTOCOL.md` §5.3), fragmentation and
//! reassembly of large messages (§5.4), and heartbeat pings and pongs (§5.2, §5.5), all in QUIC
//! datagrams (RFC 9221).

use std::time::Instant;

use bytes::{Buf, Bytes};

use super::{put_prefix, reserve_chunk, Conn, Ctx};
use crate::channel::{ChannelId, ChannelKind, OversizePolicy, SendOptions};
use crate::compress::Codec;
use crate::config::Config;
use crate::fragment::{self, FragmentHeader, FRAGMENT_HEADER_LEN};
use crate::shared::SendError;
use crate::wire::{
    self, capability, encode_bundle_length, seq_newer, type_byte, Datagram, DatagramKind,
    BUNDLE_LENGTH_MAX_LEN, BUNDLE_TYPE_BYTE, SEQUENCED_HEADER_LEN,
};

#[derive(Debug)]
pub(super) struct QueuedDatagram {
    pub(super) bytes: Bytes,
    pub(super) deadline: Option<Instant>,
}

/// The most a bundle entry's length and header take together: a 3-byte length and a
/// sequenced header (`PROTOCOL.md` §5.7, §5.3).
const ENTRY_FRONT_MAX: usize = BUNDLE_LENGTH_MAX_LEN + SEQUENCED_HEADER_LEN;

/// A bundle entry's front: its length as a varint, then the datagram's header (`PROTOCOL.md`
/// §5.7), in a fixed-size array. It goes into the bundle as one constant-size copy, then cut
/// to `len`: copying the pieces at their runtime sizes would take calls into `memcpy`.
struct EntryFront {
    bytes: [u8; ENTRY_FRONT_MAX],
    /// Bytes in use.
    len: usize,
    /// Bytes of the length varint.
    length_len: usize,
}

impl EntryFront {
    /// The front of an entry `head` ‖ a body of `body_len` bytes; `None` if the entry is
    /// longer than a bundle length can say, or `head` is longer than any header.
    #[inline]
    fn new(head: &[u8], body_len: usize) -> Option<Self> {
        let len16 = u16::try_from(head.len() + body_len).ok()?;
        let mut length = [0; BUNDLE_LENGTH_MAX_LEN];
        let length_len = encode_bundle_length(len16, &mut length);
        let len = length_len + head.len();
        if len > ENTRY_FRONT_MAX {
            return None;
        }
        let mut bytes = [0; ENTRY_FRONT_MAX];
        for (slot, &byte) in bytes.iter_mut().zip(length[..length_len].iter().chain(head)) {
            *slot = byte;
        }
        Some(Self {
            bytes,
            len,
            length_len,
        })
    }
}

/// Where `part`, a subslice of `bytes`, lies in it.
fn within(bytes: &[u8], part: &[u8]) -> std::ops::Range<usize> {
    let start = (part.as_ptr() as usize).saturating_sub(bytes.as_ptr() as usize);
    start..start + part.len()
}

/// `bytes` cut down to `range` in place (no reference-count traffic, unlike `Bytes::slice`).
fn cut(mut bytes: Bytes, range: std::ops::Range<usize>) -> Bytes {
    bytes.truncate(range.end);
    bytes.advance(range.start.min(bytes.len()));
    bytes
}

impl Conn {
    /// Sends a due ping and the held pong. With `carrier` (application data leaves in this
    /// transmit) they go now and share its packet; without, each waits out its grace first
    /// (`PROTOCOL.md` §5.5), so that heartbeats on a busy connection cost no packet of their
    /// own.
    #[inline]
    pub(super) fn send_heartbeat(&mut self, now: Instant, tick: u64, carrier: bool) {
        if self.heartbeat.may_send(now) {
            self.send_due_heartbeat(now, tick, carrier);
        }
    }

    /// [`Conn::send_heartbeat`] when a ping may be due or a pong is held.
    fn send_due_heartbeat(&mut self, now: Instant, tick: u64, carrier: bool) {
        if let Some(ping) = self.heartbeat.poll_ping_carried(now, tick, carrier) {
            self.send_heartbeat_datagram(wire::encode_heartbeat(DatagramKind::Ping, &ping));
        }
        if let Some(pong) = self.heartbeat.poll_pong(now, tick, carrier) {
            self.send_heartbeat_datagram(wire::encode_heartbeat(DatagramKind::Pong, &pong));
        }
    }

    /// Pings and pongs bypass the datagram queue (`PROTOCOL.md` §2.5).
    fn send_heartbeat_datagram(&mut self, bytes: Bytes) {
        let bytes = self.wrap(bytes);
        let _ = self.quic.datagrams().send(bytes, true);
    }

    /// `bytes` behind the session's datagram prefix (a copy, on WebTransport sessions only).
    fn wrap(&mut self, bytes: Bytes) -> Bytes {
        if self.dgram_prefix.is_empty() {
            return bytes;
        }
        self.tx_arena.pack3(&self.dgram_prefix, &bytes, &[])
    }

    pub(super) fn read_datagrams(&mut self, ctx: &mut Ctx<'_>) {
        while let Some(bytes) = self.quic.datagrams().recv() {
            if !self.is_established() {
                self.stats.datagrams_dropped_early += 1;
                continue;
            }
            let Some(bytes) = self.unwrap_datagram(bytes) else {
                continue;
            };
            self.handle_datagram(ctx, bytes);
            if self.is_closed() {
                return;
            }
        }
    }

    fn handle_datagram(&mut self, ctx: &mut Ctx<'_>, bytes: Bytes) {
        // The common datagram, an unreliable message, skips the decoding.
        if let Some((channel, payload)) = Datagram::unreliable(&bytes) {
            let range = within(&bytes, payload);
            self.receive_unreliable(ctx, channel, cut(bytes, range));
            return;
        }
        let now = ctx.now;
        let datagram = match Datagram::decode(&bytes) {
            Ok(d) => d,
            Err(_) => {
                self.stats.datagrams_dropped_malformed += 1;
                return;
            }
        };
        match datagram {
            Datagram::Ping(ping) => {
                let tick = self.local_tick(ctx.server_tick);
                let pong = self.heartbeat.handle_ping(now, &ping, tick);
                // The pong waits for our next application data, up to its grace; one
                // held before goes now.
                if let Some(earlier) = self.heartbeat.owe_pong(now, pong, tick) {
                    self.send_heartbeat_datagram(wire::encode_heartbeat(DatagramKind::Pong, &earlier));
                }
            }
            Datagram::Pong(pong) => {
                if let (Some(sample), Some(sync)) =
                    (self.heartbeat.handle_pong(now, &pong), &mut self.tick_sync)
                {
                    sync.handle_sample(now, sample.peer_tick, sample.rtt);
                }
            }
            Datagram::Unreliable { channel, payload } => {
                let range = within(&bytes, payload);
                self.receive_unreliable(ctx, channel, cut(bytes, range));
            }
            Datagram::Sequenced {
                channel,
                seq,
                payload,
            } => {
                if self.check_datagram_channel(ctx, channel, true)
                    && self.accept_seq(channel, seq)
                    && self.admit(now, payload.len())
                {
                    let range = within(&bytes, payload);
                    let _ = self.deliver(ctx, ChannelId(channel), cut(bytes, range), false);
                }
            }
            Datagram::Fragment {
                channel,
                sequenced,
                header,
                chunk,
            } => {
                if !self.check_datagram_channel(ctx, channel, sequenced) {
                    return;
                }
                if sequenced
                    && self.rx_seq[channel as usize].is_some_and(|last| !seq_newer(header.message_id, last))
                {
                    self.stats.stale_sequenced_dropped += 1;
                    return;
                }
                if let Some(message) = self.reassembler.insert(now, channel, header, chunk) {
                    let fresh = !sequenced || self.accept_seq(channel, header.message_id);
                    if fresh && self.admit(now, message.len()) {
                        let _ = self.deliver(ctx, ChannelId(channel), message, false);
                    }
                }
            }
            Datagram::Bundle(bundle) => {
                if !self.bundles() {
                    self.stats.datagrams_dropped_malformed += 1;
                    return;
                }
                // Each entry as a datagram of its own; none is a bundle (checked whole), and
                // none is empty. The common entry, an unreliable message, skips the decoding.
                for entry in bundle.entries() {
                    match Datagram::unreliable(entry) {
                        Some((channel, payload)) => {
                            let payload = bytes.slice(within(&bytes, payload));
                            self.receive_unreliable(ctx, channel, payload);
                        }
                        None => self.handle_datagram(ctx, bytes.slice(within(&bytes, entry))),
                    }
                    if self.is_closed() {
                        return;
                    }
                }
            }
        }
    }

    /// An unreliable message (`PROTOCOL.md` §5.3) on `channel`: delivered if the channel is an
    /// unreliable one and the rate limit admits it.
    fn receive_unreliable(&mut self, ctx: &mut Ctx<'_>, channel: u8, payload: Bytes) {
        if self.check_datagram_channel(ctx, channel, false) && self.admit(ctx.now, payload.len()) {
            let _ = self.deliver(ctx, ChannelId(channel), payload, false);
        }
    }

    /// Whether the session negotiated datagram bundles (`PROTOCOL.md` §5.7).
    fn bundles(&self) -> bool {
        self.session
            .as_ref()
            .is_some_and(|session| session.capabilities & capability::BUNDLE != 0)
    }

    /// Appends one whole datagram, `head` ‖ `body`, to the open bundle (`PROTOCOL.md` §5.7),
    /// opening one if none is open and closing the open one first if the entry does not fit in
    /// `max` bytes beside it. False when the entry would not fit in a bundle even alone: the
    /// caller sends it as a datagram of its own.
    fn bundle_append(&mut self, now: Instant, config: &Config, max: usize, head: &[u8], body: &[u8]) -> bool {
        let Some(front) = EntryFront::new(head, body.len()) else {
            return false;
        };
        let entry = front.len + body.len();
        if 1 + entry > max {
            return false;
        }
        if !self.joins_open_bundle(entry, max) {
            self.close_bundle(now, config);
        }
        if self.bundle_entries == 0 {
            // Slack for the constant-size copy of the last entry's front.
            let room = self.dgram_prefix.len() + max + ENTRY_FRONT_MAX;
            reserve_chunk(&mut self.bundle, room, self.tx_arena.chunk);
            put_prefix(&mut self.bundle, &self.dgram_prefix);
            self.bundle.extend_from_slice(&[BUNDLE_TYPE_BYTE]);
            self.bundle_first = self.bundle.len() + front.length_len;
            self.bundle_max = max;
        }
        self.push_entry(&front, body);
        true
    }

    /// Whether a bundle is open and an entry of `entry` bytes fits in it beside the entries it
    /// holds, within `max` bytes after the datagram prefix.
    fn joins_open_bundle(&self, entry: usize, max: usize) -> bool {
        self.bundle_entries > 0 && self.bundle.len() - self.dgram_prefix.len() + entry <= max
    }

    /// Appends an entry to the open bundle, which has room for it and for the slack of its
    /// front's constant-size copy.
    #[inline]
    fn push_entry(&mut self, front: &EntryFront, body: &[u8]) {
        let end = self.bundle.len() + front.len;
        self.bundle.extend_from_slice(&front.bytes);
        self.bundle.truncate(end);
        self.bundle.extend_from_slice(body);
        self.bundle_entries += 1;
    }

    /// [`Conn::send_shortcut`] for an unreliable channel: the message joins the bundle already
    /// open if it fits beside it.
    #[inline]
    pub(super) fn append_to_open_bundle(
        &mut self,
        config: &Config,
        channel: ChannelId,
        payload: &[u8],
    ) -> bool {
        if payload.len() > config.fragment.max_message_bytes {
            return false;
        }
        let head = [type_byte(DatagramKind::Unreliable, channel.0)];
        let Some(front) = EntryFront::new(&head, payload.len()) else {
            return false;
        };
        if !self.joins_open_bundle(front.len + payload.len(), self.bundle_max) {
            return false;
        }
        self.push_entry(&front, payload);
        true
    }

    /// Queues the open bundle, if any, as one datagram; a bundle of one entry (on a native
    /// session) goes out as that entry alone.
    #[inline]
    pub(super) fn close_bundle(&mut self, now: Instant, config: &Config) {
        if self.bundle_entries != 0 {
            self.queue_bundle(now, config);
        }
    }

    /// [`Conn::close_bundle`] when a bundle is open.
    fn queue_bundle(&mut self, now: Instant, config: &Config) {
        let mut bytes = self.bundle.split().freeze();
        if self.bundle_entries == 1 && self.dgram_prefix.is_empty() {
            bytes.advance(self.bundle_first);
        } else {
            self.stats.datagram_bundles_sent += 1;
        }
        self.bundle_entries = 0;
        self.queue_datagram(now, config, bytes, None);
    }

    /// Whether `channel` is a datagram channel of the right kind; counts a mismatch.
    fn check_datagram_channel(&mut self, ctx: &Ctx<'_>, channel: u8, sequenced: bool) -> bool {
        let ok = match ctx.config.channels.get(channel as usize).map(|c| c.kind) {
            Some(ChannelKind::Sequenced) => sequenced,
            Some(ChannelKind::Unreliable) => !sequenced,
            _ => false,
        };
        if !ok {
            self.stats.datagrams_dropped_malformed += 1;
        }
        ok
    }

    /// Sequenced channels deliver only messages newer than the newest delivered.
    fn accept_seq(&mut self, channel: u8, seq: u16) -> bool {
        let last = &mut self.rx_seq[channel as usize];
        if last.is_some_and(|l| !seq_newer(seq, l)) {
            self.stats.stale_sequenced_dropped += 1;
            return false;
        }
        *last = Some(seq);
        true
    }

    #[allow(clippy::too_many_arguments)] // one send's inputs; a struct would only rename them
    pub(super) fn send_datagram(
        &mut self,
        now: Instant,
        config: &Config,
        codec: &mut Codec,
        channel: ChannelId,
        sequenced: bool,
        raw: Bytes,
        options: SendOptions,
    ) -> Result<(), SendError> {
        // QUIC's limit, read once per bundle: the open bundle was sized with it.
        let max = match self.bundle_entries {
            0 => self
                .quic
                .datagrams()
                .max_size()
                .ok_or(SendError::DatagramsUnsupported)?
                .saturating_sub(self.dgram_prefix.len()),
            _ => self.bundle_max,
        };
        if raw.len() > config.fragment.max_message_bytes {
            return self.send_oversized(now, config, codec, raw, options);
        }
        let raw_len = raw.len();
        // On a compressed channel the message is kept for the reliable fallback below.
        let (payload, raw) = match self.compression(config, channel) {
            None => (raw, None),
            Some(_) => (
                self.encode_payload(config, codec, channel, raw.clone())?,
                Some(raw),
            ),
        };
        let header = if sequenced { SEQUENCED_HEADER_LEN } else { 1 };
        if payload.len() + header <= max {
            let mut head = [0; SEQUENCED_HEADER_LEN];
            if sequenced {
                head[0] = type_byte(DatagramKind::Sequenced, channel.0);
                head[1..3].copy_from_slice(&self.next_seq(channel).to_be_bytes());
            } else {
                head[0] = type_byte(DatagramKind::Unreliable, channel.0);
            }
            let bundled = options.deadline.is_none()
                && self.bundles()
                && self.bundle_append(now, config, max, &head[..header], &payload);
            if !bundled {
                // Behind the open bundle, so that a sequenced channel's order holds.
                self.close_bundle(now, config);
                let bytes = self.tx_arena.pack3(&self.dgram_prefix, &head[..header], &payload);
                self.queue_datagram(now, config, bytes, options.deadline);
            }
        } else {
            self.close_bundle(now, config);
            let chunk_max = max.saturating_sub(1 + FRAGMENT_HEADER_LEN);
            let within_limit = payload.len() <= config.fragment.max_message_bytes;
            let split = fragment::split(&payload, chunk_max, config.fragment.max_fragments);
            let Some(fragments) = split.ok().filter(|_| within_limit) else {
                let raw = raw.unwrap_or_else(|| payload.clone());
                return self.send_oversized(now, config, codec, raw, options);
            };
            let (kind, message_id) = if sequenced {
                (DatagramKind::SequencedFragment, self.next_seq(channel))
            } else {
                let id = self.next_fragment_id;
                self.next_fragment_id = id.wrapping_add(1);
                (DatagramKind::Fragment, id)
            };
            for (index, count, chunk) in fragments {
                let mut head = [0; 1 + FRAGMENT_HEADER_LEN];
                head[0] = type_byte(kind, channel.0);
                head[1..].copy_from_slice(
                    &FragmentHeader {
                        message_id,
                        index,
                        count,
                    }
                    .encode(),
                );
                let bytes = self.tx_arena.pack3(&self.dgram_prefix, &head, chunk);
                self.queue_datagram(now, config, bytes, options.deadline);
            }
            self.stats.messages_fragmented += 1;
        }
        self.count_sent(config, channel, raw_len, payload.len());
        Ok(())
    }

    /// The next sequence number of a sequenced channel (consumed only by a message that is
    /// actually queued).
    fn next_seq(&mut self, channel: ChannelId) -> u16 {
        let seq = &mut self.tx_seq[channel.0 as usize];
        let current = *seq;
        *seq = current.wrapping_add(1);
        current
    }

    /// An unreliable message beyond the fragmentation limits: refused, or sent on the first
    /// reliable channel, per [`OversizePolicy`].
    fn send_oversized(
        &mut self,
        now: Instant,
        config: &Config,
        codec: &mut Codec,
        payload: Bytes,
        options: SendOptions,
    ) -> Result<(), SendError> {
        let too_large = SendError::TooLarge {
            size: payload.len(),
            max: config.fragment.max_message_bytes,
        };
        if config.oversize_unreliable == OversizePolicy::Reject {
            return Err(too_large);
        }
        let reliable = config
            .channels
            .iter()
            .enumerate()
            .find_map(|(index, channel)| match channel.kind {
                ChannelKind::Reliable { priority } => {
                    Some((ChannelId(index as u8), priority.stream_priority()))
                }
                _ => None,
            });
        match reliable {
            Some((channel, priority)) => {
                // The redirect is judged by that channel's senders on the server: check it here
                // as any send on it is, so an honest client never trips the server.
                self.check_may_send(config, channel)?;
                if self.send_reliable(config, codec, channel, priority, payload, options)? {
                    self.flush_streams(now);
                }
                Ok(())
            }
            None => Err(too_large),
        }
    }

    /// Queues a datagram behind those already waiting, or hands it straight to QUIC when none
    /// wait and its buffer has room.
    fn queue_datagram(&mut self, now: Instant, config: &Config, bytes: Bytes, deadline: Option<Instant>) {
        let bytes = if self.datagrams.is_empty() && deadline.is_none_or(|d| now <= d) {
            match self.quic.datagrams().send(bytes, false) {
                Ok(()) => return,
                Err(quinn_proto::SendDatagramError::Blocked(bytes)) => bytes,
                Err(_) => {
                    self.stats.datagrams_dropped_queue_full += 1;
                    return;
                }
            }
        } else {
            bytes
        };
        if self.datagrams.len() >= config.max_queued_datagrams {
            self.datagrams.pop_front();
            self.stats.datagrams_dropped_queue_full += 1;
        }
        self.datagrams.push_back(QueuedDatagram { bytes, deadline });
    }

    /// Called before each transmit (`server_tick`: the endpoint's current tick, on a
    /// server): sends a due ping and a held pong if application data leaves in it, closes the
    /// open bundle, hands the small frames sent since the last transmit to QUIC, and refills
    /// QUIC's (deliberately small) datagram buffer from tickwire's queue, if anything waits, so
    /// the path stays busy without a deep FIFO.
    pub(crate) fn before_transmit(&mut self, now: Instant, config: &Config, server_tick: u64) {
        let carrier = std::mem::take(&mut self.carrying);
        if carrier && self.is_established() {
            self.send_heartbeat(now, self.local_tick(server_tick), true);
        }
        self.close_bundle(now, config);
        self.seal_frames(now);
        if !self.datagrams.is_empty() && self.is_established() {
            self.flush(now);
        }
    }

    /// Moves queued datagrams into QUIC's datagram buffer as far as it has room, dropping
    /// those past their deadline.
    pub(super) fn flush_datagrams(&mut self, now: Instant) {
        while let Some(front) = self.datagrams.front() {
            if front.deadline.is_some_and(|d| now > d) {
                self.datagrams.pop_front();
                self.stats.messages_expired += 1;
                continue;
            }
            if self.quic.datagrams().send_buffer_space() < front.bytes.len() {
                break;
            }
            let Some(item) = self.datagrams.pop_front() else {
                break;
            };
            match self.quic.datagrams().send(item.bytes, false) {
                Ok(()) => {}
                Err(quinn_proto::SendDatagramError::Blocked(bytes)) => {
                    self.datagrams.push_front(QueuedDatagram {
                        bytes,
                        deadline: item.deadline,
                    });
                    break;
                }
                Err(_) => self.stats.datagrams_dropped_queue_full += 1,
            }
        }
    }
}
