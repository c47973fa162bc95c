//! Session recording on a server endpoint (`PROTOCOL.md` §11): which sessions are recorded,
//! their bounded buffers of encoded records, and the chunks handed to the runtime.
//!
//! The endpoint calls in at three points: when it hands a `Connected`, `Message` or
//! `Disconnected` event of an inbound session to the application ([`Endpoint::poll_event`]),
//! when the application sends to a recorded session, and when a game server's agent computes
//! a transcript digest ([`ServerMut::record_checkpoint`]). Records are encoded at once into the
//! session's buffer; [`Endpoint::poll_recorded`] takes what has accumulated. A record that
//! would take the buffer past `Config::recording_buffer_bytes` is dropped and counted into a
//! pending `Gap` record, written before the next record that fits (or at the end of the next
//! chunk taken), so a chunk may exceed the cap by one gap frame ([`MAX_GAP_FRAME_BYTES`]), and
//! the last chunk by the end's seal.
//!
//! After each checkpoint (when the seal fits the buffer) and after the end the recorder seals
//! the file: a `Seal` record holds
//! the SHA-256 of every byte before it, signed with the endpoint's identity key. The hash runs
//! over the bytes as they leave the buffer, so sealing costs one hash update per byte and one
//! signature per checkpoint.

use std::collections::{BTreeMap, VecDeque};

use ed25519_dalek::SigningKey;
use sha2::{Digest, Sha256};

use super::{Endpoint, ServerMut};
use crate::handshake::Session;
use crate::record::{
    GapCount, RecordingEncoder, RecordingHeader, MAX_GAP_FRAME_BYTES, SEAL_FRAME_BYTES, TRANSCRIPT_VERSION,
};
use crate::shared::{ConnHandle, Event};
use crate::transcript::{TranscriptChain, TranscriptDigest};
use crate::wire::Role;

/// Encoded recording bytes of one session, from [`Endpoint::poll_recorded`]. Concatenating a
/// session's chunks in the order they come gives its recording file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedChunk {
    /// The recorded connection.
    pub conn: ConnHandle,
    /// Its session id (`PROTOCOL.md` §4.4): a stable name for the file.
    pub session_id: u64,
    /// Whether this chunk starts the file (it holds the prefix and the header).
    pub first: bool,
    /// Whether this chunk ends the file (it holds the `End` record); no more follow.
    pub last: bool,
    /// The bytes.
    pub bytes: Vec<u8>,
}

/// One recorded session.
#[derive(Debug)]
struct SessionRecorder {
    session_id: u64,
    buf: Vec<u8>,
    /// The transcript chain as the game server's agent computes it, for `Gap` records.
    chain: TranscriptChain,
    gap: Option<GapCount>,
    /// SHA-256 of the file's bytes up to `buf[hashed..]`.
    hash: Sha256,
    hashed: usize,
    queued: bool,
    started: bool,
    ended: bool,
}

impl SessionRecorder {
    /// Writes a pending `Gap` record, if any.
    fn flush_gap(&mut self) {
        if let Some(gap) = self.gap.take() {
            RecordingEncoder::gap(&mut self.buf, &gap, &self.chain);
        }
    }

    /// Seals every byte written so far (`PROTOCOL.md` §11.5).
    fn seal(&mut self, identity: &SigningKey) {
        self.flush_gap();
        self.hash.update(&self.buf[self.hashed..]);
        self.hashed = self.buf.len();
        let head = self.hash.clone().finalize().into();
        RecordingEncoder::seal(&mut self.buf, self.session_id, head, identity);
    }

    /// Takes the buffered bytes, hashing what was not hashed yet.
    fn take_bytes(&mut self) -> Vec<u8> {
        self.hash.update(&self.buf[self.hashed..]);
        self.hashed = 0;
        std::mem::take(&mut self.buf)
    }
}

/// The recorders of a server endpoint: a table by connection, and the ones with bytes to take.
#[derive(Debug, Default)]
pub(super) struct Recorders {
    /// Record every client session established from now on.
    all: bool,
    sessions: BTreeMap<ConnHandle, SessionRecorder>,
    ready: VecDeque<ConnHandle>,
    pub(super) recorded_bytes: u64,
    pub(super) dropped_bytes: u64,
}

impl Recorders {
    /// Whether `conn` has a recording in progress.
    pub(super) fn is_recorded(&self, conn: ConnHandle) -> bool {
        self.sessions.get(&conn).is_some_and(|r| !r.ended)
    }

    /// Starts recording `conn`; false if a recording of it exists (running, or ended and not
    /// yet taken).
    fn start(&mut self, conn: ConnHandle, session: &Session, tick: u64, from_start: bool) -> bool {
        if self.sessions.contains_key(&conn) {
            return false;
        }
        let header = RecordingHeader {
            session_id: session.session_id,
            connection: conn.index() as u64,
            server_key: session.server_key,
            client_key: session.client_key,
            role: role_byte(session.role),
            tick_rate_hz: session.tick_rate_hz,
            start_tick: tick,
            from_start,
            transcript_version: TRANSCRIPT_VERSION,
        };
        let mut buf = Vec::new();
        RecordingEncoder::header(&mut buf, &header);
        self.sessions.insert(
            conn,
            SessionRecorder {
                session_id: session.session_id,
                buf,
                chain: TranscriptChain::new(session.session_id),
                gap: None,
                hash: Sha256::new(),
                hashed: 0,
                queued: true,
                started: false,
                ended: false,
            },
        );
        self.ready.push_back(conn);
        true
    }

    /// Appends a record of `len` encoded bytes at `tick`, written by `write`, unless the
    /// buffer is full. `input` chains a received message after it.
    fn push(
        &mut self,
        cap: usize,
        conn: ConnHandle,
        tick: u64,
        len: usize,
        input: Option<&[u8]>,
        write: impl FnOnce(&mut Vec<u8>),
    ) {
        let Some(rec) = self.sessions.get_mut(&conn) else {
            return;
        };
        if rec.ended {
            return;
        }
        let gap_len = if rec.gap.is_some() {
            crate::record::MAX_GAP_FRAME_BYTES
        } else {
            0
        };
        if rec.buf.len() + gap_len + len <= cap {
            rec.flush_gap();
            write(&mut rec.buf);
        } else {
            self.dropped_bytes += len as u64;
            let gap = rec.gap.get_or_insert(GapCount {
                first_tick: tick,
                last_tick: tick,
                records: 0,
                bytes: 0,
            });
            gap.last_tick = gap.last_tick.max(tick);
            gap.records += 1;
            gap.bytes += len as u64;
        }
        if let Some(input) = input {
            rec.chain.record(tick, input);
        }
        if !rec.queued {
            rec.queued = true;
            self.ready.push_back(conn);
        }
    }

    /// The scheduler skipped ticks `first..=last` (missed-tick policy): every recording says
    /// so, for a replay to skip them too.
    pub(super) fn skipped(&mut self, cap: usize, first: u64, last: u64) {
        let conns: Vec<ConnHandle> = self.sessions.keys().copied().collect();
        let mut frame = Vec::new();
        RecordingEncoder::record(
            &mut frame,
            &crate::record::Record::TicksSkipped {
                first_tick: first,
                last_tick: last,
            },
        );
        for conn in conns {
            self.push(cap, conn, last, frame.len(), None, |buf| {
                buf.extend_from_slice(&frame)
            });
        }
    }

    fn end(&mut self, conn: ConnHandle, tick: u64, identity: &SigningKey) {
        let Some(rec) = self.sessions.get_mut(&conn) else {
            return;
        };
        if rec.ended {
            return;
        }
        rec.flush_gap();
        RecordingEncoder::end(&mut rec.buf, tick);
        rec.seal(identity);
        rec.ended = true;
        if !rec.queued {
            rec.queued = true;
            self.ready.push_back(conn);
        }
    }

    fn take(&mut self) -> Option<RecordedChunk> {
        while let Some(conn) = self.ready.pop_front() {
            let Some(rec) = self.sessions.get_mut(&conn) else {
                continue;
            };
            rec.queued = false;
            rec.flush_gap();
            let chunk = RecordedChunk {
                conn,
                session_id: rec.session_id,
                first: !rec.started,
                last: rec.ended,
                bytes: rec.take_bytes(),
            };
            rec.started = true;
            if rec.ended {
                self.sessions.remove(&conn);
            }
            if chunk.bytes.is_empty() && !chunk.last {
                continue;
            }
            self.recorded_bytes += chunk.bytes.len() as u64;
            return Some(chunk);
        }
        None
    }
}

fn role_byte(role: Role) -> u8 {
    role as u8
}

impl Endpoint {
    /// Records what `event` (about to be handed to the application) means for a recorded
    /// session: start, a received message, or the end.
    pub(super) fn record_event(&mut self, event: &Event) {
        let Some(server) = &mut self.server else { return };
        let tick = server.scheduler.current_tick();
        let cap = self.config.recording_buffer_bytes;
        let recorders = &mut server.recorders;
        match event {
            Event::Connected { conn, session }
                if recorders.all && self.conns.get(*conn).is_some_and(|e| e.conn.is_inbound()) =>
            {
                recorders.start(*conn, session, tick, true);
            }
            Event::Message {
                conn,
                channel,
                payload,
            } if recorders.sessions.contains_key(conn) => {
                let len = RecordingEncoder::message_frame_len(tick, payload.len());
                recorders.push(cap, *conn, tick, len, Some(payload), |buf| {
                    RecordingEncoder::received(buf, tick, channel.0, payload)
                });
            }
            Event::Disconnected { conn, .. } | Event::Rejected { conn, .. } => {
                recorders.end(*conn, tick, &self.identity)
            }
            _ => {}
        }
    }

    /// Records a message the application sent on a recorded session.
    pub(super) fn record_sent(&mut self, conn: ConnHandle, channel: u8, payload: &[u8]) {
        let Some(server) = &mut self.server else { return };
        if !server.recorders.sessions.contains_key(&conn) {
            return;
        }
        let tick = server.scheduler.current_tick();
        let len = RecordingEncoder::message_frame_len(tick, payload.len());
        server
            .recorders
            .push(self.config.recording_buffer_bytes, conn, tick, len, None, |buf| {
                RecordingEncoder::sent(buf, tick, channel, payload)
            });
    }

    /// Output: the next chunk of encoded recording bytes, `None` when no recorded session has
    /// new bytes. Drain it after every turn and write each chunk to its session's file (or
    /// anywhere): until taken, a session's bytes count against `Config::recording_buffer_bytes`
    /// and records beyond it are dropped (`EndpointStats::recording_dropped_bytes`). `None` on
    /// a client endpoint.
    #[must_use]
    pub fn poll_recorded(&mut self) -> Option<RecordedChunk> {
        self.server.as_mut()?.recorders.take()
    }
}

impl ServerMut<'_> {
    /// Command: records every client session established from now on (`true`), or stops
    /// starting new recordings (`false`; recordings in progress continue).
    pub fn record_sessions(&mut self, on: bool) {
        if let Some(server) = self.endpoint.server.as_mut() {
            server.recorders.all = on;
        }
    }

    /// Command: starts recording the established client session `conn` now. Its header says
    /// the recording did not start with the session (`from_start: false`): the transcript's
    /// state before the first receipt is unknown to a verifier. Returns whether a recording
    /// runs now (false for an unknown handle, a session not yet established, a session this
    /// endpoint opened, or one whose ended recording has not been taken yet).
    pub fn record_session(&mut self, conn: ConnHandle) -> bool {
        let endpoint = &mut *self.endpoint;
        let Some(server) = endpoint.server.as_mut() else {
            return false;
        };
        let Some(entry) = endpoint.conns.get(conn) else {
            return false;
        };
        if !entry.conn.is_inbound() || !entry.conn.is_established() {
            return false;
        }
        let Some(session) = entry.conn.session.as_ref() else {
            return false;
        };
        let tick = server.scheduler.current_tick();
        server.recorders.start(conn, session, tick, false) || server.recorders.is_recorded(conn)
    }

    /// Command: ends the recording of `conn` with an `End` record and a seal; its last chunk
    /// comes from
    /// [`Endpoint::poll_recorded`]. Unknown or unrecorded handles are ignored.
    pub fn stop_recording(&mut self, conn: ConnHandle) {
        let endpoint = &mut *self.endpoint;
        if let Some(server) = endpoint.server.as_mut() {
            let tick = server.scheduler.current_tick();
            server.recorders.end(conn, tick, &endpoint.identity);
        }
    }

    /// Whether `conn` is being recorded.
    pub fn is_recording(&self, conn: ConnHandle) -> bool {
        self.endpoint
            .server
            .as_ref()
            .is_some_and(|s| s.recorders.sessions.get(&conn).is_some_and(|r| !r.ended))
    }

    /// Input: the game server's agent computed transcript digest `digest`
    /// (the game server's VS agent calls this, `PROTOCOL.md` §8.8); the recording of its session, if any,
    /// gets a `Checkpoint` record, which verification matches with the digest's receipt, and
    /// a seal over the file so far.
    pub fn record_checkpoint(&mut self, digest: &TranscriptDigest) {
        let endpoint = &mut *self.endpoint;
        let Some(server) = endpoint.server.as_mut() else {
            return;
        };
        let Some(conn) = server
            .recorders
            .sessions
            .iter()
            .find(|(_, r)| r.session_id == digest.session_id && !r.ended)
            .map(|(conn, _)| *conn)
        else {
            return;
        };
        let tick = server.scheduler.current_tick();
        let mut probe = Vec::new();
        RecordingEncoder::checkpoint(&mut probe, digest);
        server.recorders.push(
            endpoint.config.recording_buffer_bytes,
            conn,
            tick,
            probe.len(),
            None,
            |buf| buf.extend_from_slice(&probe),
        );
        // A seal that would not fit waits for the next checkpoint (or the end): an undrained
        // buffer must not grow by a seal per checkpoint.
        let cap = endpoint.config.recording_buffer_bytes;
        if let Some(rec) = server.recorders.sessions.get_mut(&conn) {
            if rec.buf.len() + MAX_GAP_FRAME_BYTES + SEAL_FRAME_BYTES <= cap {
                rec.seal(&endpoint.identity);
            }
        }
    }
}
