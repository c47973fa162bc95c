//! Session recordings (`PROTOCOL.md` §11): the file format, an incremental decoder, and the
//! offline check of a recording against the verification server's protected receipts.
//!
//! A recording is one game session seen from the game server: every tickwire message it
//! received from the client and sent to it, each with the server tick it was handled at, the
//! transcript digests the game server sent its verification server, and `Gap` records where
//! the bounded recording buffer overflowed. It is written by the endpoint's recorder
//! (`Endpoint::poll_recorded`); this module only encodes and
//! decodes bytes.
//!
//! ```text
//! file   = "TWREC" ‖ version (1 byte, = 1) ‖ frame*
//! frame  = length (4 bytes, big-endian, 1..=MAX_RECORD_BYTES) ‖ postcard(Record)
//! ```
//!
//! The first frame is a [`Record::Header`]; [`Record::End`], if present, is followed only by
//! [`Record::Seal`]s.
//!
//! The game server seals its recordings: a [`Record::Seal`] after each checkpoint and after the
//! end holds the SHA-256 of every byte of the file before it, signed with the game server's
//! identity key ([`Recording::check_seals`]). A seal makes any later edit of the bytes before it
//! detectable by anyone holding that public key, whatever the receipts cover.
//!
//! [`TranscriptCheck`] replays the received messages through the session's transcript hash
//! chain (`PROTOCOL.md` §8.8) and compares the head at each [`Record::Checkpoint`] with the
//! receipt the verification server signed for that digest. Receipts authenticate what the
//! chain covers: each received message's tick and bytes, in order. A message's channel and the
//! messages the server sent are not in the chain: the game server's seals protect them against
//! later edits, and `tickwire-replay play` checks the sends by replaying a deterministic game.

mod verify;

use serde::{Deserialize, Serialize};

use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::ticket::{ProtectedReceipt, VsKeys};
use crate::transcript::{TranscriptChain, TranscriptDigest};
use crate::wire::Signature;

pub use verify::{Coverage, Segment, TranscriptCheck, Verification};

/// The first five bytes of every recording.
pub const MAGIC: &[u8; 5] = b"TWREC";

/// The format version this crate writes and reads (the byte after [`MAGIC`]).
pub const FORMAT_VERSION: u8 = 1;

/// Largest frame body, in bytes: a message up to 8 MiB (the default
/// `Config::max_reliable_message_bytes`) plus the record's fields. A decoder refuses a longer
/// length prefix before buffering it.
pub const MAX_RECORD_BYTES: usize = (8 << 20) + 64;

/// Length of the file prefix: [`MAGIC`] and the version byte.
pub const PREFIX_LEN: usize = MAGIC.len() + 1;

/// The context string a [`Record::Seal`] signature starts with.
pub const SEAL_CONTEXT: &[u8] = b"tickwire/recording-seal/v1";

/// Largest encoded [`Record::Seal`] frame, in bytes: length prefix, variant, head, signature.
pub const SEAL_FRAME_BYTES: usize = 4 + 1 + 32 + 64;

/// The message a [`Record::Seal`] signs: [`SEAL_CONTEXT`] ‖ u64be(`session_id`) ‖ `head`.
pub fn seal_message(session_id: u64, head: &[u8; 32]) -> Vec<u8> {
    let mut message = Vec::with_capacity(SEAL_CONTEXT.len() + 8 + 32);
    message.extend_from_slice(SEAL_CONTEXT);
    message.extend_from_slice(&session_id.to_be_bytes());
    message.extend_from_slice(head);
    message
}

/// The transcript chain's version, as in its context string `tickwire/transcript/v1`.
pub const TRANSCRIPT_VERSION: u8 = 1;

/// Who the recorded session was and how its transcript is chained: everything verification
/// needs besides the records and the receipts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordingHeader {
    /// The session id agreed in the handshake (`PROTOCOL.md` §4.4): the transcript chain's
    /// seed and the `session_id` of its receipts.
    pub session_id: u64,
    /// The game server's handle of the connection (`ConnHandle::index`): a game that names
    /// players by connection (the demo's snapshots do) is replayed under the same names.
    pub connection: u64,
    /// The game server's Ed25519 identity key.
    pub server_key: [u8; 32],
    /// The client's Ed25519 identity key.
    pub client_key: [u8; 32],
    /// The role the client joined as (`PROTOCOL.md` §4.2 role byte).
    pub role: u8,
    /// The server's tick rate, in Hz.
    pub tick_rate_hz: u16,
    /// The server tick when recording started.
    pub start_tick: u64,
    /// Whether recording started when the session was established. If not, the transcript
    /// chain's state at the start is unknown, and verification begins at the first receipt.
    pub from_start: bool,
    /// [`TRANSCRIPT_VERSION`]: how received messages are chained.
    pub transcript_version: u8,
}

/// One frame of a recording. The postcard variant index is the record type (`PROTOCOL.md`
/// §11.2); new types are only ever appended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record {
    /// 0: the session; the first frame, exactly once.
    Header(RecordingHeader),
    /// 1: a message received from the client, handled at server tick `tick`. Chained into the
    /// transcript.
    Received {
        /// Server tick when the message was handed to the application.
        tick: u64,
        /// Channel id.
        channel: u8,
        /// The message.
        payload: Vec<u8>,
    },
    /// 2: a message sent to the client at server tick `tick`.
    Sent {
        /// Server tick when the application sent it.
        tick: u64,
        /// Channel id.
        channel: u8,
        /// The message.
        payload: Vec<u8>,
    },
    /// 3: a transcript digest the game server sent its verification server, written when it
    /// was computed: after exactly `inputs` received messages.
    Checkpoint {
        /// The digest's sequence number, which its receipt repeats.
        sequence: u64,
        /// Last tick covered.
        tick: u64,
        /// Received messages covered.
        inputs: u64,
        /// The chain head (SHA-256).
        digest: [u8; 32],
    },
    /// 4: records dropped because the recording buffer was full. The transcript chain's state
    /// after them is given, so verification resumes there; the dropped ticks are reported as
    /// a gap.
    Gap {
        /// Tick of the first dropped record.
        first_tick: u64,
        /// Tick of the last dropped record.
        last_tick: u64,
        /// Records dropped.
        records: u64,
        /// Encoded bytes dropped.
        bytes: u64,
        /// Received messages chained so far, the dropped ones included.
        inputs: u64,
        /// Highest tick chained so far.
        chain_tick: u64,
        /// The chain head after the dropped records.
        head: [u8; 32],
    },
    /// 5: the session ended (or recording was stopped) at server tick `tick`.
    End {
        /// Server tick.
        tick: u64,
    },
    /// 6: the server's scheduler skipped ticks `first_tick..=last_tick` (it fell behind by
    /// more than its backlog allows): the game did not run them, and a replay must not either.
    TicksSkipped {
        /// First tick skipped.
        first_tick: u64,
        /// Last tick skipped.
        last_tick: u64,
    },
    /// 7: the game server's seal over every byte of the file before this frame (from the
    /// magic on): `head` is their SHA-256, and `signature` signs [`seal_message`] with the
    /// game server's identity key (the header's `server_key`).
    Seal {
        /// SHA-256 of the file's bytes before this frame.
        head: [u8; 32],
        /// Ed25519 signature of [`seal_message`]`(session_id, head)`.
        signature: Signature,
    },
}

/// [`Record`] with borrowed payloads, for encoding without a copy. Same layout.
#[derive(Serialize)]
enum RecordRef<'a> {
    Header(&'a RecordingHeader),
    Received {
        tick: u64,
        channel: u8,
        payload: &'a [u8],
    },
    Sent {
        tick: u64,
        channel: u8,
        payload: &'a [u8],
    },
    Checkpoint {
        sequence: u64,
        tick: u64,
        inputs: u64,
        digest: [u8; 32],
    },
    Gap(GapFields),
    End {
        tick: u64,
    },
}

#[derive(Serialize)]
struct GapFields {
    first_tick: u64,
    last_tick: u64,
    records: u64,
    bytes: u64,
    inputs: u64,
    chain_tick: u64,
    head: [u8; 32],
}

/// Writes recording frames into a caller's buffer. Stateless; the endpoint's recorder and
/// tools that synthesise recordings use it alike.
#[derive(Debug, Clone, Copy, Default)]
pub struct RecordingEncoder;

impl RecordingEncoder {
    /// Appends the file prefix ([`MAGIC`], [`FORMAT_VERSION`]) and the header frame.
    pub fn header(out: &mut Vec<u8>, header: &RecordingHeader) {
        out.extend_from_slice(MAGIC);
        out.push(FORMAT_VERSION);
        frame(out, &RecordRef::Header(header));
    }

    /// Appends a [`Record::Received`] frame.
    pub fn received(out: &mut Vec<u8>, tick: u64, channel: u8, payload: &[u8]) {
        frame(
            out,
            &RecordRef::Received {
                tick,
                channel,
                payload,
            },
        );
    }

    /// Appends a [`Record::Sent`] frame.
    pub fn sent(out: &mut Vec<u8>, tick: u64, channel: u8, payload: &[u8]) {
        frame(
            out,
            &RecordRef::Sent {
                tick,
                channel,
                payload,
            },
        );
    }

    /// Appends a [`Record::Checkpoint`] frame for `digest`.
    pub fn checkpoint(out: &mut Vec<u8>, digest: &TranscriptDigest) {
        frame(
            out,
            &RecordRef::Checkpoint {
                sequence: digest.sequence,
                tick: digest.tick,
                inputs: digest.inputs,
                digest: digest.digest,
            },
        );
    }

    /// Appends a [`Record::End`] frame.
    pub fn end(out: &mut Vec<u8>, tick: u64) {
        frame(out, &RecordRef::End { tick });
    }

    /// Appends a [`Record::Seal`] over `head` (the SHA-256 of every byte of the file before
    /// it), signed with `identity`.
    pub fn seal(out: &mut Vec<u8>, session_id: u64, head: [u8; 32], identity: &SigningKey) {
        let signature = Signature(identity.sign(&seal_message(session_id, &head)).to_bytes());
        frame(out, &Record::Seal { head, signature });
    }

    /// Appends any record (payloads are copied from `record`).
    pub fn record(out: &mut Vec<u8>, record: &Record) {
        frame(out, record);
    }

    /// Appends a [`Record::Gap`] frame; the chain state comes from `chain`.
    pub(crate) fn gap(out: &mut Vec<u8>, gap: &GapCount, chain: &TranscriptChain) {
        frame(
            out,
            &RecordRef::Gap(GapFields {
                first_tick: gap.first_tick,
                last_tick: gap.last_tick,
                records: gap.records,
                bytes: gap.bytes,
                inputs: chain.inputs(),
                chain_tick: chain.last_tick(),
                head: chain.head(),
            }),
        );
    }

    /// Encoded length of a [`Record::Received`] or [`Record::Sent`] frame with a payload of
    /// `len` bytes at `tick`, without encoding it.
    pub fn message_frame_len(tick: u64, len: usize) -> usize {
        4 + 1 + varint_len(tick) + 1 + varint_len(len as u64) + len
    }
}

/// Records dropped since the last record written, for a [`Record::Gap`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GapCount {
    pub(crate) first_tick: u64,
    pub(crate) last_tick: u64,
    pub(crate) records: u64,
    pub(crate) bytes: u64,
}

/// Largest encoded [`Record::Gap`] frame, in bytes.
pub const MAX_GAP_FRAME_BYTES: usize = 4 + 1 + 6 * 10 + 32;

fn varint_len(value: u64) -> usize {
    (64 - value.max(1).leading_zeros() as usize).div_ceil(7)
}

fn frame<T: Serialize>(out: &mut Vec<u8>, record: &T) {
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    // Serialising plain structs and byte slices into a Vec cannot fail.
    let body = postcard::to_extend(record, std::mem::take(out)).expect("postcard writes into a Vec");
    *out = body;
    let len = (out.len() - at - 4) as u32;
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

/// Why a recording could not be decoded. Every variant names the byte offset where decoding
/// stopped: the file is damaged or not a recording there, and nothing after it can be trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordingError {
    /// The file does not start with [`MAGIC`].
    #[error("not a tickwire recording (bad magic)")]
    BadMagic,
    /// The format version is not [`FORMAT_VERSION`]; a newer tool may read it.
    #[error("unsupported recording format version {0}")]
    UnsupportedVersion(u8),
    /// A frame's length prefix is 0 or above [`MAX_RECORD_BYTES`].
    #[error("frame at byte {at} declares {len} bytes (allowed 1..={max})", max = MAX_RECORD_BYTES)]
    FrameLength {
        /// Offset of the length prefix.
        at: u64,
        /// The declared length.
        len: u32,
    },
    /// A frame's body is not a valid record, or has bytes left over.
    #[error("malformed record at byte {at}")]
    Malformed {
        /// Offset of the frame.
        at: u64,
    },
    /// The first frame is not a header, or a later one is.
    #[error("record at byte {at} out of place (the header must come first, once)")]
    OutOfOrder {
        /// Offset of the frame.
        at: u64,
    },
    /// A frame other than a seal follows the `End` record.
    #[error("record at byte {at} after the end record")]
    AfterEnd {
        /// Offset of the frame.
        at: u64,
    },
    /// The input ended inside the prefix or a frame ([`RecordingDecoder::finish`]).
    #[error("recording truncated at byte {at}")]
    Truncated {
        /// Offset of the incomplete part.
        at: u64,
    },
}

/// Decodes a recording incrementally: feed bytes with
/// [`handle_bytes`](Self::handle_bytes) as they come, drain [`poll_record`](Self::poll_record)
/// until `Ok(None)`, and call [`finish`](Self::finish) at the end of the input. Memory is
/// bounded by the bytes fed and not yet decoded; no allocation follows a declared length
/// before its bytes are there (a length is checked against [`MAX_RECORD_BYTES`] first). After
/// an error, every later call returns the same error.
#[derive(Debug, Default)]
pub struct RecordingDecoder {
    buf: Vec<u8>,
    /// SHA-256 of every byte consumed so far.
    hash: Sha256,
    /// SHA-256 of the bytes before the last [`Record::Seal`] returned.
    sealed_head: Option<[u8; 32]>,
    /// Offset of `buf[0]` in the input.
    offset: u64,
    prefix_done: bool,
    header_seen: bool,
    ended: bool,
    failed: Option<RecordingError>,
}

impl RecordingDecoder {
    /// A decoder at the start of a file.
    pub fn new() -> Self {
        Self::default()
    }

    /// Input: the next bytes of the file.
    pub fn handle_bytes(&mut self, bytes: &[u8]) {
        if self.failed.is_none() {
            self.buf.extend_from_slice(bytes);
        }
    }

    /// Output: the next complete record, `Ok(None)` when more bytes are needed.
    ///
    /// # Errors
    /// [`RecordingError`]; the decoder stays failed.
    #[must_use = "records must be drained until Ok(None)"]
    pub fn poll_record(&mut self) -> Result<Option<Record>, RecordingError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        let result = self.next_record();
        if let Err(error) = &result {
            self.failed = Some(error.clone());
            self.buf = Vec::new();
        }
        result
    }

    fn next_record(&mut self) -> Result<Option<Record>, RecordingError> {
        if !self.prefix_done {
            let have = self.buf.len().min(MAGIC.len());
            if self.buf[..have] != MAGIC[..have] {
                return Err(RecordingError::BadMagic);
            }
            if self.buf.len() < PREFIX_LEN {
                return Ok(None);
            }
            if self.buf[MAGIC.len()] != FORMAT_VERSION {
                return Err(RecordingError::UnsupportedVersion(self.buf[MAGIC.len()]));
            }
            self.consume(PREFIX_LEN);
            self.prefix_done = true;
        }
        if self.buf.len() < 4 {
            return Ok(None);
        }
        let at = self.offset;
        let len = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
        if len == 0 || len as usize > MAX_RECORD_BYTES {
            return Err(RecordingError::FrameLength { at, len });
        }
        let end = 4 + len as usize;
        if self.buf.len() < end {
            return Ok(None);
        }
        let record: Record = match postcard::take_from_bytes(&self.buf[4..end]) {
            Ok((record, [])) => record,
            _ => return Err(RecordingError::Malformed { at }),
        };
        match (&record, self.header_seen) {
            (Record::Seal { .. }, true) => self.sealed_head = Some(self.hash.clone().finalize().into()),
            _ if self.ended => return Err(RecordingError::AfterEnd { at }),
            (Record::Header(_), false) => self.header_seen = true,
            (Record::Header(_), true) | (_, false) => return Err(RecordingError::OutOfOrder { at }),
            (Record::End { .. }, true) => self.ended = true,
            _ => {}
        }
        self.consume(end);
        Ok(Some(record))
    }

    fn consume(&mut self, n: usize) {
        self.hash.update(&self.buf[..n]);
        self.buf.drain(..n);
        self.offset += n as u64;
    }

    /// Input: the file ended. `Ok` if it ended between frames after the header.
    ///
    /// # Errors
    /// [`RecordingError::Truncated`] if bytes of an incomplete prefix or frame are left (a
    /// recording cut short by a crash: the records before are valid), or the stored error.
    pub fn finish(&self) -> Result<(), RecordingError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        if !self.buf.is_empty() || !self.header_seen {
            return Err(RecordingError::Truncated { at: self.offset });
        }
        Ok(())
    }

    /// SHA-256 of the file's bytes before the last [`Record::Seal`] [`poll_record`] returned:
    /// what that seal's `head` must be.
    ///
    /// [`poll_record`]: Self::poll_record
    pub fn sealed_head(&self) -> Option<[u8; 32]> {
        self.sealed_head
    }

    /// Bytes consumed so far (the offset of the next frame).
    pub fn position(&self) -> u64 {
        self.offset
    }
}

/// What [`Recording::check_seals`] found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SealReport {
    /// Seal records in the file.
    pub seals: u64,
    /// Seals whose head is the hash of the bytes before them and whose signature verifies.
    pub valid: u64,
    /// The ticks between the last good seal and the first bad one: some byte there (or in
    /// the bad seal) was edited after the game server sealed it.
    pub first_invalid: Option<(u64, u64)>,
    /// Records after the last seal (a recording cut short), which no seal protects.
    pub unsealed_records: u64,
}

impl SealReport {
    /// Whether every byte of the file is under a valid seal.
    pub fn intact(&self) -> bool {
        self.seals > 0 && self.valid == self.seals && self.unsealed_records == 0
    }
}

impl Record {
    /// The server tick a record is about, if it names one.
    pub fn tick(&self) -> Option<u64> {
        match self {
            Record::Received { tick, .. }
            | Record::Sent { tick, .. }
            | Record::Checkpoint { tick, .. }
            | Record::End { tick } => Some(*tick),
            Record::Gap { last_tick, .. } | Record::TicksSkipped { last_tick, .. } => Some(*last_tick),
            Record::Header(_) | Record::Seal { .. } => None,
        }
    }
}

/// A whole recording in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recording {
    /// The session.
    pub header: RecordingHeader,
    /// Every record after the header, in file order.
    pub records: Vec<Record>,
    /// For each [`Record::Seal`] in `records`, in order: the SHA-256 of the file's bytes
    /// before it, as decoded (empty for a recording built in memory).
    pub sealed_heads: Vec<[u8; 32]>,
}

impl Recording {
    /// Decodes a complete file.
    ///
    /// # Errors
    /// [`RecordingError`], as [`RecordingDecoder`] reports it.
    pub fn decode(bytes: &[u8]) -> Result<Recording, RecordingError> {
        let mut decoder = RecordingDecoder::new();
        decoder.handle_bytes(bytes);
        let mut header = None;
        let mut records = Vec::new();
        let mut sealed_heads = Vec::new();
        while let Some(record) = decoder.poll_record()? {
            match record {
                Record::Header(h) => header = Some(h),
                Record::Seal { .. } => {
                    sealed_heads.extend(decoder.sealed_head());
                    records.push(record);
                }
                other => records.push(other),
            }
        }
        decoder.finish()?;
        let header = header.ok_or(RecordingError::Truncated { at: 0 })?;
        Ok(Recording {
            header,
            records,
            sealed_heads,
        })
    }

    /// Encodes the recording (the inverse of [`Recording::decode`]).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        RecordingEncoder::header(&mut out, &self.header);
        for record in &self.records {
            RecordingEncoder::record(&mut out, record);
        }
        out
    }

    /// Checks the game server's seals (`PROTOCOL.md` §11.5): each [`Record::Seal`] must hold
    /// the SHA-256 of the file's bytes before it and a valid signature by `server_key` (the
    /// game server's identity key, known from its enrolment; the header's own `server_key`
    /// only if nothing better is known). Works on a decoded file ([`Recording::decode`]).
    pub fn check_seals(&self, server_key: &[u8; 32]) -> SealReport {
        let key = VerifyingKey::from_bytes(server_key).ok();
        let mut report = SealReport {
            seals: 0,
            valid: 0,
            first_invalid: None,
            unsealed_records: 0,
        };
        let (mut first_tick, mut last_tick) = (self.header.start_tick, self.header.start_tick);
        let mut heads = self.sealed_heads.iter();
        for record in &self.records {
            let Record::Seal { head, signature } = record else {
                if let Some(tick) = record.tick() {
                    last_tick = last_tick.max(tick);
                }
                report.unsealed_records += 1;
                continue;
            };
            report.seals += 1;
            let message = seal_message(self.header.session_id, head);
            let signed = key.as_ref().is_some_and(|key| {
                key.verify(&message, &ed25519_dalek::Signature::from_bytes(&signature.0))
                    .is_ok()
            });
            if heads.next() == Some(head) && signed {
                report.valid += 1;
            } else if report.first_invalid.is_none() {
                report.first_invalid = Some((first_tick, last_tick));
            }
            report.unsealed_records = 0;
            first_tick = last_tick;
        }
        report
    }

    /// Checks the recording against `receipts` signed by one of `keys`
    /// (see [`TranscriptCheck`]).
    pub fn verify(&self, receipts: &[ProtectedReceipt], keys: &VsKeys) -> Verification {
        let mut check = TranscriptCheck::new(&self.header, receipts, keys);
        for record in &self.records {
            check.handle_record(record);
        }
        check.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ticket::ReceiptClaims;
    use ed25519_dalek::SigningKey;

    fn header(session_id: u64) -> RecordingHeader {
        RecordingHeader {
            session_id,
            connection: 0,
            server_key: [1; 32],
            client_key: [2; 32],
            role: 1,
            tick_rate_hz: 60,
            start_tick: 0,
            from_start: true,
            transcript_version: TRANSCRIPT_VERSION,
        }
    }

    /// A recording with `n` inputs, a checkpoint every 3 inputs, and its receipts.
    fn sample(n: u64) -> (Recording, Vec<ProtectedReceipt>, VsKeys) {
        let key = SigningKey::from_bytes(&[7; 32]);
        let keys = VsKeys::single(1, key.verifying_key());
        let mut chain = TranscriptChain::new(42);
        let mut records = Vec::new();
        let mut receipts = Vec::new();
        let mut sequence = 0;
        for i in 1..=n {
            let payload = vec![i as u8; 5];
            chain.record(i * 2, &payload);
            records.push(Record::Received {
                tick: i * 2,
                channel: 0,
                payload,
            });
            records.push(Record::Sent {
                tick: i * 2,
                channel: 2,
                payload: vec![9; 3],
            });
            if i % 3 == 0 {
                sequence += 1;
                records.push(Record::Checkpoint {
                    sequence,
                    tick: chain.last_tick(),
                    inputs: chain.inputs(),
                    digest: chain.head(),
                });
                receipts.push(ProtectedReceipt::issue(
                    1,
                    &key,
                    &ReceiptClaims {
                        gs_id: 1,
                        session_id: 42,
                        sequence,
                        tick: chain.last_tick(),
                        digest: chain.head(),
                        received_at_ms: 0,
                    },
                ));
            }
        }
        records.push(Record::End { tick: n * 2 + 1 });
        (
            Recording {
                header: header(42),
                records,
                sealed_heads: Vec::new(),
            },
            receipts,
            keys,
        )
    }

    #[test]
    fn round_trips_and_decodes_byte_by_byte() {
        let (recording, _, _) = sample(7);
        let bytes = recording.encode();
        assert_eq!(Recording::decode(&bytes), Ok(recording.clone()));
        let mut decoder = RecordingDecoder::new();
        let mut records = Vec::new();
        for byte in &bytes {
            decoder.handle_bytes(std::slice::from_ref(byte));
            while let Some(record) = decoder.poll_record().expect("valid") {
                records.push(record);
            }
        }
        decoder.finish().expect("complete");
        assert_eq!(records.len(), recording.records.len() + 1);
        assert_eq!(RecordingEncoder::message_frame_len(300, 70_000), {
            let mut out = Vec::new();
            RecordingEncoder::sent(&mut out, 300, 1, &vec![0; 70_000]);
            out.len()
        });
    }

    #[test]
    fn typed_errors() {
        assert_eq!(Recording::decode(b"TWRXX\x01"), Err(RecordingError::BadMagic));
        assert_eq!(
            Recording::decode(b"TWREC\x02"),
            Err(RecordingError::UnsupportedVersion(2))
        );
        assert_eq!(
            Recording::decode(b"TWREC"),
            Err(RecordingError::Truncated { at: 0 })
        );
        assert_eq!(
            Recording::decode(b"TWREC\x01\xff\xff\xff\xff"),
            Err(RecordingError::FrameLength { at: 6, len: u32::MAX })
        );
        let (recording, _, _) = sample(1);
        let bytes = recording.encode();
        assert_eq!(
            Recording::decode(&bytes[..bytes.len() - 1]),
            Err(RecordingError::Truncated {
                at: bytes.len() as u64 - 6
            })
        );
        let mut doubled = bytes.clone();
        doubled.extend_from_slice(&bytes[6..]);
        assert!(matches!(
            Recording::decode(&doubled),
            Err(RecordingError::AfterEnd { .. })
        ));
    }

    #[test]
    fn verifies_and_localises_an_edit() {
        let (recording, receipts, keys) = sample(9);
        let good = recording.verify(&receipts, &keys);
        assert!(good.fully_covered(), "{good:?}");
        assert_eq!(good.segments.len(), 3);
        // Edit the payload of the 5th input (tick 10): the second range (ticks 8..=12) fails.
        let mut bytes = recording.encode();
        // Length prefix 5, then five bytes 5.
        let at = bytes
            .windows(6)
            .position(|w| w == [5u8; 6])
            .expect("payload present");
        bytes[at + 3] ^= 1;
        let edited = Recording::decode(&bytes)
            .expect("still decodes")
            .verify(&receipts, &keys);
        let bad = edited.first_mismatch().expect("mismatch");
        assert_eq!((bad.first_tick, bad.last_tick), (8, 12));
        assert!(matches!(edited.segments[0].coverage, Coverage::Covered { .. }));
        assert!(matches!(edited.segments[2].coverage, Coverage::Covered { .. }));
        // Without receipts nothing is covered.
        let none = recording.verify(&[], &keys);
        assert!(matches!(
            none.segments[0].coverage,
            Coverage::NoReceipt { sequence: 1 }
        ));
    }

    #[test]
    fn a_gap_is_reported_and_verification_resumes_after_it() {
        let (mut recording, receipts, keys) = sample(9);
        // Drop inputs 4 and 5 (and their sends) as a full buffer would, with the chain state.
        let mut chain = TranscriptChain::new(42);
        for i in 1..=5u64 {
            chain.record(i * 2, &[i as u8; 5]);
        }
        let at = recording
            .records
            .iter()
            .position(|r| matches!(r, Record::Received { tick: 8, .. }))
            .expect("input 4");
        recording.records.splice(
            at..at + 4,
            [Record::Gap {
                first_tick: 8,
                last_tick: 10,
                records: 4,
                bytes: 60,
                inputs: chain.inputs(),
                chain_tick: chain.last_tick(),
                head: chain.head(),
            }],
        );
        let verification = recording.verify(&receipts, &keys);
        let coverage: Vec<&Coverage> = verification.segments.iter().map(|s| &s.coverage).collect();
        assert!(
            matches!(coverage[0], Coverage::Covered { sequence: 1 }),
            "{verification:?}"
        );
        assert!(
            matches!(coverage[1], Coverage::Gap { records: 4 }),
            "{verification:?}"
        );
        // Input 6 and the checkpoint after it verify from the gap's chain state.
        assert!(
            matches!(coverage[2], Coverage::Covered { sequence: 2 }),
            "{verification:?}"
        );
        assert!(
            matches!(coverage[3], Coverage::Covered { sequence: 3 }),
            "{verification:?}"
        );
        assert!(verification.first_mismatch().is_none());
    }

    #[test]
    fn a_recording_started_mid_session_is_anchored_by_its_first_receipt() {
        let (mut recording, receipts, keys) = sample(9);
        recording.header.from_start = false;
        // The first three inputs happened before recording started.
        recording.records.drain(..6);
        let verification = recording.verify(&receipts, &keys);
        let coverage: Vec<&Coverage> = verification.segments.iter().map(|s| &s.coverage).collect();
        assert!(matches!(coverage[0], Coverage::Unanchored), "{verification:?}");
        assert!(
            matches!(coverage[1], Coverage::Covered { sequence: 2 }),
            "{verification:?}"
        );
        assert!(
            matches!(coverage[2], Coverage::Covered { sequence: 3 }),
            "{verification:?}"
        );
    }
}
