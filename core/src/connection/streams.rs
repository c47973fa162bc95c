//! Reliable channels: one QUIC unidirectional stream per channel and direction, carrying
//! length-prefixed frames (`PROTOCOL.md` §2.4, §3), with bounded send queues, per-message deadlines
//! and a stall timeout for partial frames.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use quinn_proto::{Dir, StreamId};

use super::{reserve_chunk, Conn, Ctx};
use crate::channel::SendOptions;
use crate::channel::{ChannelId, ChannelKind, CONTROL_PRIORITY};
use crate::compress::Codec;
use crate::config::Config;
use crate::handshake::Rejection;
use crate::shared::SendError;
use crate::wire::{self, FrameDecoder, ReasonCode};

/// Reliable payloads up to this size are copied behind their length prefix into one chunk;
/// larger ones go to QUIC as they are, after a chunk holding the prefix.
const COPY_BELOW_BYTES: usize = 1024;

/// Size of the chunks a channel's open buffer of small frames is cut from: at most this much
/// stays allocated for an idle channel.
const OPEN_BUFFER_BYTES: usize = 1024;

#[derive(Debug)]
pub(super) struct RxStream {
    pub(super) channel: Option<ChannelId>,
    pub(super) decoder: FrameDecoder,
    /// While the decoder holds a partial frame: when the stream stalls (the last byte for it
    /// arrived `partial_frame_timeout_ms` before). `None` between frames.
    pub(super) stall_deadline: Option<Instant>,
}

/// How a receive stream stood after `Conn::drain_stream` read everything it had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StreamEnd {
    /// Still open: more bytes may come.
    Open,
    /// The peer finished it (FIN) and every byte was read.
    Finished,
    /// The peer reset it (RESET_STREAM): QUIC has freed it and given the peer a new stream.
    Reset,
}

#[derive(Debug)]
pub(super) struct QueuedFrame {
    pub(super) bytes: Bytes,
    pub(super) written: usize,
    pub(super) deadline: Option<Instant>,
}

#[derive(Debug, Default)]
pub(super) struct TxChannel {
    stream: Option<StreamId>,
    queue: VecDeque<QueuedFrame>,
    /// Small frames sent since the last transmit, one after another, logically behind `queue`:
    /// handed to it as one chunk before the next transmit ([`Conn::seal_frames`]), so that QUIC
    /// takes one write for them all.
    open: BytesMut,
}

/// A frame's length prefix (`PROTOCOL.md` §3): the payload's length, big-endian.
fn frame_prefix(len: usize) -> [u8; wire::FRAME_PREFIX_LEN] {
    u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes()
}

/// Appends the frame prefix ‖ `payload` to `open`.
#[inline]
fn push_frame(open: &mut BytesMut, payload: &[u8]) {
    open.extend_from_slice(&frame_prefix(payload.len()));
    open.extend_from_slice(payload);
}

impl TxChannel {
    /// Moves the open buffer, if it holds frames, to the back of the queue as one chunk.
    fn seal(&mut self) {
        if !self.open.is_empty() {
            self.queue.push_back(QueuedFrame {
                bytes: self.open.split().freeze(),
                written: 0,
                deadline: None,
            });
        }
    }
}

impl Conn {
    /// The earliest stall deadline of a channel stream holding a partial frame. There are at
    /// most `channels.len()` receive streams (QUIC's concurrent-stream limit), so a scan is cheap.
    #[inline]
    pub(super) fn next_stall(&self) -> Option<Instant> {
        if self.rx_streams.is_empty() {
            return None;
        }
        self.rx_streams.values().filter_map(|rx| rx.stall_deadline).min()
    }

    /// Closes the connection because a channel stream's partial frame received no byte for
    /// `partial_frame_timeout_ms` (a slow-loris peer pinning the frame's buffer).
    pub(super) fn close_stalled(&mut self, ctx: &mut Ctx<'_>) {
        let Some((rx, deadline)) = self
            .rx_streams
            .values()
            .filter_map(|rx| Some((rx, rx.stall_deadline?)))
            .min_by_key(|&(_, deadline)| deadline)
        else {
            return;
        };
        let timeout = Duration::from_millis(ctx.config.partial_frame_timeout_ms);
        let idle = timeout + ctx.now.saturating_duration_since(deadline);
        let detail = format!(
            "partial frame stalled on channel {}: {} bytes held, no bytes for {} ms (timeout {} ms)",
            rx.channel.map_or(0, |c| c.0),
            rx.decoder.buffered_bytes(),
            idle.as_millis(),
            timeout.as_millis()
        );
        self.stats.partial_frame_timeouts += 1;
        self.close(ctx, Rejection::new(ReasonCode::PROTOCOL_VIOLATION, detail));
    }

    pub(super) fn accept_streams(&mut self, ctx: &mut Ctx<'_>, dir: Dir) {
        while let Some(id) = self.quic.streams().accept(dir) {
            match dir {
                Dir::Bi if self.control.is_none() && !self.quic.side().is_client() => {
                    self.control = Some(id);
                    let _ = self.quic.send_stream(id).set_priority(CONTROL_PRIORITY);
                    self.read_control(ctx);
                    if self.is_closed() {
                        return;
                    }
                }
                Dir::Bi => {
                    self.close(
                        ctx,
                        Rejection::new(ReasonCode::PROTOCOL_VIOLATION, "unexpected bidirectional stream"),
                    );
                    return;
                }
                Dir::Uni => self.accept_channel_stream(ctx, id),
            }
        }
    }

    /// Takes `id` as a channel stream of the peer (its channel byte not read yet) and reads it.
    pub(super) fn accept_channel_stream(&mut self, ctx: &mut Ctx<'_>, id: StreamId) {
        let decoder = FrameDecoder::new(ctx.config.max_reliable_message_bytes);
        self.rx_streams.insert(
            id,
            RxStream {
                channel: None,
                decoder,
                stall_deadline: None,
            },
        );
        self.read_stream(ctx, id);
    }

    /// Reads everything readable on stream `id` into `sink`; returns how many bytes it read
    /// and whether the stream is still open.
    pub(super) fn drain_stream(
        quic: &mut quinn_proto::Connection,
        id: StreamId,
        mut sink: impl FnMut(Bytes),
    ) -> (usize, StreamEnd) {
        let mut stream = quic.recv_stream(id);
        let Ok(mut chunks) = stream.read(true) else {
            return (0, StreamEnd::Open);
        };
        let mut read = 0;
        let end = loop {
            match chunks.next(usize::MAX) {
                Ok(Some(chunk)) => {
                    read += chunk.bytes.len();
                    sink(chunk.bytes);
                }
                Ok(None) => break StreamEnd::Finished,
                Err(quinn_proto::ReadError::Reset(_)) => break StreamEnd::Reset,
                Err(_) => break StreamEnd::Open,
            }
        };
        let _ = chunks.finalize();
        (read, end)
    }

    pub(super) fn read_stream(&mut self, ctx: &mut Ctx<'_>, id: StreamId) {
        if !self.is_established() {
            return; // an unauthenticated peer's messages stay in QUIC's flow-controlled buffer
        }
        let Some(rx) = self.rx_streams.get_mut(&id) else {
            return;
        };
        let mut first_byte = None;
        let mut channel = rx.channel;
        let decoder = &mut rx.decoder;
        let (read, end) = Self::drain_stream(&mut self.quic, id, |mut bytes| {
            if channel.is_none() {
                if let Some(&b) = bytes.first() {
                    channel = Some(ChannelId(b));
                    first_byte = Some(b);
                    bytes.advance(1);
                }
            }
            decoder.push_bytes(bytes);
        });
        rx.channel = channel;
        if end == StreamEnd::Reset {
            // QUIC freed the stream and gave the peer a new one: free ours too, or a peer
            // cycling open–partial frame–reset would pile up decoders past the stream limit.
            self.rx_streams.remove(&id);
            self.stats.streams_reset += 1;
            return;
        }
        let Some(channel) = channel else {
            if end == StreamEnd::Finished {
                self.rx_streams.remove(&id);
            }
            return;
        };
        if first_byte.is_some()
            && !matches!(
                ctx.config.channels.get(channel.0 as usize).map(|c| c.kind),
                Some(ChannelKind::Reliable { .. })
            )
        {
            self.stats.streams_refused += 1;
            self.close(
                ctx,
                Rejection::new(
                    ReasonCode::PROTOCOL_VIOLATION,
                    format!("stream for non-reliable channel {}", channel.0),
                ),
            );
            return;
        }
        loop {
            let Some(rx) = self.rx_streams.get_mut(&id) else {
                return;
            };
            match rx.decoder.poll_frame() {
                Ok(Some(frame)) => {
                    if !self.admit(ctx.now, frame.len()) {
                        self.close(
                            ctx,
                            Rejection::new(ReasonCode::RATE_LIMITED, "reliable message rate exceeded"),
                        );
                        return;
                    }
                    if !self.deliver(ctx, channel, frame, true) {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    self.stats.oversized_frames += 1;
                    self.close(ctx, Rejection::new(ReasonCode::PROTOCOL_VIOLATION, e.to_string()));
                    return;
                }
            }
        }
        if end == StreamEnd::Finished {
            self.rx_streams.remove(&id);
        } else if let Some(rx) = self.rx_streams.get_mut(&id) {
            // The stall clock restarts with every byte that arrives for a partial frame.
            let timeout = Duration::from_millis(ctx.config.partial_frame_timeout_ms);
            rx.stall_deadline = match rx.stall_deadline {
                _ if !rx.decoder.is_mid_frame() => None,
                Some(deadline) if read == 0 => Some(deadline),
                _ => ctx.now.checked_add(timeout),
            };
        }
    }

    /// Whether `frame_len` more bytes fit in the connection's queue of reliable messages
    /// (`Config::max_queued_reliable_bytes`).
    fn reliable_queue_has_room(&self, config: &Config, frame_len: usize) -> bool {
        self.queued_reliable_bytes + frame_len <= config.max_queued_reliable_bytes
    }

    /// [`Conn::send_shortcut`] for a reliable channel: a small message joins the channel's
    /// open buffer if the channel's stream is open and the buffer has room.
    #[inline]
    pub(super) fn append_to_open_frames(
        &mut self,
        config: &Config,
        channel: ChannelId,
        payload: &[u8],
    ) -> bool {
        let frame_len = wire::FRAME_PREFIX_LEN + payload.len();
        if payload.len() > COPY_BELOW_BYTES
            || payload.len() > config.max_reliable_message_bytes
            || !self.reliable_queue_has_room(config, frame_len)
        {
            return false;
        }
        let Some(tx) = self.tx_channels.get_mut(&channel) else {
            return false;
        };
        if tx.stream.is_none() || tx.open.capacity() - tx.open.len() < frame_len {
            return false;
        }
        push_frame(&mut tx.open, payload);
        self.queued_reliable_bytes += frame_len;
        self.frames_open = true;
        true
    }

    /// Sends `payload` as one frame on `channel`'s stream: a small frame without a deadline
    /// joins the channel's open buffer, anything else goes to QUIC at once or waits on the
    /// channel's queue. Returns whether a frame now waits on the queue (call
    /// [`Self::flush_streams`] to move it on).
    pub(super) fn send_reliable(
        &mut self,
        config: &Config,
        codec: &mut Codec,
        channel: ChannelId,
        priority: i32,
        payload: Bytes,
        options: SendOptions,
    ) -> Result<bool, SendError> {
        let raw_len = payload.len();
        let payload = self.encode_payload(config, codec, channel, payload)?;
        if payload.len() > config.max_reliable_message_bytes {
            return Err(SendError::TooLarge {
                size: payload.len(),
                max: config.max_reliable_message_bytes,
            });
        }
        let frame_len = wire::FRAME_PREFIX_LEN + payload.len();
        if !self.reliable_queue_has_room(config, frame_len) {
            return Err(SendError::QueueFull);
        }
        let tx = self.tx_channels.entry(channel).or_default();
        let id = match tx.stream {
            Some(id) => id,
            None => {
                let Some(id) = self.quic.streams().open(Dir::Uni) else {
                    return Err(SendError::QueueFull);
                };
                let _ = self.quic.send_stream(id).set_priority(priority);
                tx.stream = Some(id);
                // On a WebTransport session the stream begins with its prefix (`PROTOCOL.md` §12.4).
                let head = self.tx_arena.pack(&self.stream_prefix, &[channel.0]);
                self.queued_reliable_bytes += head.len();
                tx.queue.push_back(QueuedFrame {
                    bytes: head,
                    written: 0,
                    deadline: None,
                });
                id
            }
        };
        if payload.len() <= COPY_BELOW_BYTES && options.deadline.is_none() {
            // A small frame without a deadline joins the channel's open buffer.
            reserve_chunk(&mut tx.open, frame_len, OPEN_BUFFER_BYTES);
            push_frame(&mut tx.open, &payload);
            self.queued_reliable_bytes += frame_len;
            self.frames_open = true;
            self.count_sent(config, channel, raw_len, payload.len());
            // It leaves with the buffer, sealed and flushed before the next transmit.
            return Ok(false);
        }
        let prefix = frame_prefix(payload.len());
        // Anything else follows the open buffer.
        tx.seal();
        if tx.queue.is_empty() {
            // Nothing waits on this stream: hand the frame to QUIC as its prefix and the
            // payload itself, without copying the payload; queue only what QUIC did not take.
            // A small payload is copied behind its prefix instead: QUIC's send buffer costs
            // per chunk, more than copying a few hundred bytes.
            let mut parts = if payload.len() <= COPY_BELOW_BYTES {
                [self.tx_arena.pack(&prefix, &payload), Bytes::new()]
            } else {
                [self.tx_arena.pack(&prefix, &[]), payload.clone()]
            };
            let written = match self.quic.send_stream(id).write_chunks(&mut parts) {
                Ok(written) => written.bytes,
                Err(quinn_proto::WriteError::Blocked) => 0,
                Err(_) => frame_len, // the stream is gone; so is the frame, as on the queue
            };
            if written > 0 {
                if written < frame_len {
                    // Started: the rest must follow whatever its deadline.
                    for bytes in parts.into_iter().filter(|part| !part.is_empty()) {
                        self.queued_reliable_bytes += bytes.len();
                        tx.queue.push_back(QueuedFrame {
                            bytes,
                            written: 0,
                            deadline: None,
                        });
                    }
                }
                self.count_sent(config, channel, raw_len, payload.len());
                return Ok(written < frame_len);
            }
        }
        self.queued_reliable_bytes += frame_len;
        tx.queue.push_back(QueuedFrame {
            bytes: wire::encode_frame(&payload),
            written: 0,
            deadline: options.deadline,
        });
        self.count_sent(config, channel, raw_len, payload.len());
        Ok(true)
    }

    fn write_queue(
        quic: &mut quinn_proto::Connection,
        id: StreamId,
        queue: &mut VecDeque<QueuedFrame>,
        now: Instant,
        queued_bytes: &mut usize,
        expired: &mut u64,
    ) {
        while let Some(front) = queue.front_mut() {
            if front.written == 0 && front.deadline.is_some_and(|d| now > d) {
                *queued_bytes = queued_bytes.saturating_sub(front.bytes.len());
                queue.pop_front();
                *expired += 1;
                continue;
            }
            let mut rest = [front.bytes.slice(front.written..)];
            match quic.send_stream(id).write_chunks(&mut rest).map(|w| w.bytes) {
                Ok(n) => {
                    front.written += n;
                    *queued_bytes = queued_bytes.saturating_sub(n);
                    if front.written == front.bytes.len() {
                        queue.pop_front();
                    } else {
                        break;
                    }
                }
                Err(quinn_proto::WriteError::Blocked) => break,
                Err(_) => {
                    let dropped: usize = queue.iter().map(|f| f.bytes.len() - f.written).sum();
                    *queued_bytes = queued_bytes.saturating_sub(dropped);
                    queue.clear();
                    break;
                }
            }
        }
    }

    /// Hands every channel's open buffer of small frames to its queue as one chunk, then moves
    /// the queues into QUIC ([`Self::flush_streams`]); called before every transmit.
    pub(super) fn seal_frames(&mut self, now: Instant) {
        if !self.frames_open {
            return;
        }
        self.frames_open = false;
        self.tx_channels.values_mut().for_each(TxChannel::seal);
        self.flush_streams(now);
    }

    /// Moves queued control and channel frames into QUIC's streams as far as flow control
    /// allows, dropping frames past their deadline that were not started.
    #[inline]
    pub(super) fn flush_streams(&mut self, now: Instant) {
        if self.queued_reliable_bytes != 0 || !self.control_tx.is_empty() {
            self.write_streams(now);
        }
    }

    /// [`Conn::flush_streams`] when frames wait.
    fn write_streams(&mut self, now: Instant) {
        if let Some(id) = self.control {
            Self::write_queue(
                &mut self.quic,
                id,
                &mut self.control_tx,
                now,
                &mut 0,
                &mut self.stats.messages_expired,
            );
        }
        for tx in self.tx_channels.values_mut() {
            if let Some(id) = tx.stream {
                Self::write_queue(
                    &mut self.quic,
                    id,
                    &mut tx.queue,
                    now,
                    &mut self.queued_reliable_bytes,
                    &mut self.stats.messages_expired,
                );
            }
        }
    }
}
