//! A sans-IO codec for the HTTP/3 pieces of WebTransport as browsers speak it today
//! (draft-ietf-webtrans-http3-02 over RFC 9114, RFC 9204, RFC 9220 and RFC 9297).
//!
//! Every function here works on byte slices and `Vec<u8>` buffers; nothing reads a socket, a
//! clock or a random number generator, and no input makes a function panic. Sizes that an
//! attacker controls are bounded by constants or by caller-supplied limits.
//!
//! | | |
//! |---|---|
//! | [`varint`] | QUIC variable-length integers (RFC 9000 §16) |
//! | [`parse_uni_stream`], [`UniStreamKind`] | the type prefix of a unidirectional stream (RFC 9114 §6.2; draft-02 §4.1) |
//! | [`parse_bidi_stream`], [`BidiStreamKind`] | the signal value of a bidirectional stream (draft-02 §4.2) |
//! | [`decode_frame_header`], [`FrameReader`], [`FrameType`] | HTTP/3 frames, skipping unknown and GREASE types (RFC 9114 §7.1, §9) |
//! | [`Settings`] | the SETTINGS frame (RFC 9114 §7.2.4) and the values WebTransport needs |
//! | [`encode_datagram_prefix`], [`decode_datagram`] | the quarter-stream-id prefix of HTTP datagrams (RFC 9297 §2.1) |
//! | [`CloseSession`], [`decode_capsule`] | the `CLOSE_WEBTRANSPORT_SESSION` capsule (draft-02 §5; RFC 9297 §3.2) |
//! | [`app_error_to_h3`], [`h3_to_app_error`] | application error codes of stream resets (draft-ietf-webtrans-http3-15 §4.4) |
//!
//! Incremental parsers return [`Parse::NeedMore`] when the slice ends inside the item; the
//! caller keeps the bytes and calls again with more.

/// HTTP/3 error codes used by this module (RFC 9114 §8.1; RFC 9297 §5.2).
pub mod error_code {
    /// `H3_NO_ERROR`: graceful close.
    pub const H3_NO_ERROR: u64 = 0x100;
    /// `H3_STREAM_CREATION_ERROR`: a stream of a type the endpoint refuses.
    pub const H3_STREAM_CREATION_ERROR: u64 = 0x103;
    /// `H3_FRAME_UNEXPECTED`: a frame not allowed in its place (including HTTP/2-reserved types).
    pub const H3_FRAME_UNEXPECTED: u64 = 0x105;
    /// `H3_FRAME_ERROR`: a frame whose layout or size is invalid.
    pub const H3_FRAME_ERROR: u64 = 0x106;
    /// `H3_EXCESSIVE_LOAD`: the peer asks for more than the endpoint is willing to hold.
    pub const H3_EXCESSIVE_LOAD: u64 = 0x107;
    /// `H3_ID_ERROR`: a stream or session identifier used incorrectly.
    pub const H3_ID_ERROR: u64 = 0x108;
    /// `H3_SETTINGS_ERROR`: a malformed SETTINGS frame.
    pub const H3_SETTINGS_ERROR: u64 = 0x109;
    /// `H3_MESSAGE_ERROR`: a malformed message (here: a malformed capsule).
    pub const H3_MESSAGE_ERROR: u64 = 0x10e;
    /// `H3_DATAGRAM_ERROR` (RFC 9297 §5.2): a malformed HTTP datagram.
    pub const H3_DATAGRAM_ERROR: u64 = 0x33;
}

/// QUIC variable-length integers (RFC 9000 §16): 1, 2, 4 or 8 bytes, the two high bits of the
/// first byte giving the length, values up to [`MAX`](varint::MAX) = 2⁶² − 1.
///
/// [`decode`](varint::decode) accepts non-minimal encodings (RFC 9000 §16 allows them);
/// [`encode`](varint::encode) always writes the shortest one.
pub mod varint {
    /// The largest value a varint holds: 2⁶² − 1.
    pub const MAX: u64 = (1 << 62) - 1;
    /// The longest encoding, in bytes.
    pub const MAX_LEN: usize = 8;

    /// Why a varint could not be encoded or decoded.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
    pub enum VarIntError {
        /// The value is above [`MAX`].
        #[error("{0} does not fit a QUIC varint (max 2^62 - 1)")]
        TooLarge(u64),
        /// The slice ends inside the varint: `needed` bytes in all, `available` present.
        #[error("truncated varint: {needed} bytes needed, {available} available")]
        Truncated {
            /// Length of the whole encoding, from its first byte (1 if the slice was empty).
            needed: usize,
            /// Bytes present.
            available: usize,
        },
    }

    /// Length in bytes of the shortest encoding of `value`.
    ///
    /// # Errors
    /// [`VarIntError::TooLarge`] if `value > MAX`.
    pub const fn encoded_len(value: u64) -> Result<usize, VarIntError> {
        if value < (1 << 6) {
            Ok(1)
        } else if value < (1 << 14) {
            Ok(2)
        } else if value < (1 << 30) {
            Ok(4)
        } else if value <= MAX {
            Ok(8)
        } else {
            Err(VarIntError::TooLarge(value))
        }
    }

    /// Appends the shortest encoding of `value` to `out`; returns its length in bytes.
    ///
    /// # Errors
    /// [`VarIntError::TooLarge`] if `value > MAX` (nothing is written).
    pub fn encode(value: u64, out: &mut Vec<u8>) -> Result<usize, VarIntError> {
        let len = encoded_len(value)?;
        match len {
            1 => out.push(value as u8),
            2 => out.extend_from_slice(&((value as u16) | 0x4000).to_be_bytes()),
            4 => out.extend_from_slice(&((value as u32) | 0x8000_0000).to_be_bytes()),
            _ => out.extend_from_slice(&(value | 0xc000_0000_0000_0000).to_be_bytes()),
        }
        Ok(len)
    }

    /// Decodes the varint at the start of `buf`: `(value, bytes consumed)`.
    ///
    /// # Errors
    /// [`VarIntError::Truncated`] if `buf` ends inside it (including an empty `buf`).
    pub fn decode(buf: &[u8]) -> Result<(u64, usize), VarIntError> {
        let Some(&first) = buf.first() else {
            return Err(VarIntError::Truncated {
                needed: 1,
                available: 0,
            });
        };
        let len = 1usize << (first >> 6);
        let Some(bytes) = buf.get(..len) else {
            return Err(VarIntError::Truncated {
                needed: len,
                available: buf.len(),
            });
        };
        let mut value = u64::from(first & 0x3f);
        for &b in &bytes[1..] {
            value = (value << 8) | u64::from(b);
        }
        Ok((value, len))
    }
}

use varint::VarIntError;

/// The outcome of an incremental parser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parse<T> {
    /// The slice ends inside the item: call again with more bytes (none were consumed).
    NeedMore,
    /// The item and how many bytes of the slice it took.
    Parsed {
        /// What was parsed.
        kind: T,
        /// Bytes consumed from the start of the slice.
        consumed: usize,
    },
}

/// Decodes a varint, mapping truncation to `None`.
fn take_varint(buf: &[u8]) -> Option<(u64, usize)> {
    varint::decode(buf).ok()
}

/// Whether `value` is a reserved (GREASE) codepoint `0x1f · N + 0x21` (RFC 9114 §6.2.3, §7.2.8,
/// §7.2.4.1, §8.1), shared by stream types, frame types, setting identifiers and error codes.
pub const fn is_grease(value: u64) -> bool {
    value >= 0x21 && (value - 0x21).is_multiple_of(0x1f)
}

/// True if `id` is a client-initiated bidirectional QUIC stream id (RFC 9000 §2.1: `id % 4 ==
/// 0`), the only ids a WebTransport session (its CONNECT stream) can have.
pub const fn is_client_bidi(id: u64) -> bool {
    id.is_multiple_of(4) && id <= varint::MAX
}

// ---------------------------------------------------------------------------------------------
// Stream prefixes
// ---------------------------------------------------------------------------------------------

/// Unidirectional stream type: control (RFC 9114 §6.2.1).
pub const STREAM_CONTROL: u64 = 0x00;
/// Unidirectional stream type: push (RFC 9114 §6.2.2); only servers open them.
pub const STREAM_PUSH: u64 = 0x01;
/// Unidirectional stream type: QPACK encoder (RFC 9204 §4.2).
pub const STREAM_QPACK_ENCODER: u64 = 0x02;
/// Unidirectional stream type: QPACK decoder (RFC 9204 §4.2).
pub const STREAM_QPACK_DECODER: u64 = 0x03;
/// Unidirectional stream type: WebTransport stream, followed by the session id (draft-02 §4.1).
pub const STREAM_WEBTRANSPORT_UNI: u64 = 0x54;
/// Bidirectional stream signal value: WebTransport stream, followed by the session id
/// (draft-02 §4.2).
pub const SIGNAL_WEBTRANSPORT_BIDI: u64 = 0x41;

/// What a unidirectional stream carries, from its type prefix (RFC 9114 §6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UniStreamKind {
    /// The peer's control stream (type 0x00).
    Control,
    /// A push stream (type 0x01; the push id that follows is not parsed). A server receiving
    /// one answers `H3_STREAM_CREATION_ERROR` (RFC 9114 §6.2.2).
    Push,
    /// The peer's QPACK encoder stream (type 0x02).
    QpackEncoder,
    /// The peer's QPACK decoder stream (type 0x03).
    QpackDecoder,
    /// A WebTransport stream of session `session_id` (type 0x54 ‖ varint session id).
    WebTransport {
        /// The session's CONNECT stream id (a client-initiated bidirectional id).
        session_id: u64,
    },
    /// Any other type, GREASE (see [`is_grease`]) included: the receiver must not treat it as
    /// an error and may abort reading it with `H3_STREAM_CREATION_ERROR` (RFC 9114 §6.2.3, §9).
    Unknown(u64),
}

/// What a bidirectional stream carries, from its first varint (draft-02 §4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BidiStreamKind {
    /// A WebTransport stream of session `session_id` (signal 0x41 ‖ varint session id).
    WebTransport {
        /// The session's CONNECT stream id (a client-initiated bidirectional id).
        session_id: u64,
    },
    /// An HTTP/3 request stream whose first frame has type `first_frame_type`. Nothing is
    /// consumed (`consumed == 0`): the frame reader starts at the same byte.
    Request {
        /// Type of the stream's first frame.
        first_frame_type: u64,
    },
}

/// Why a stream prefix was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StreamPrefixError {
    /// The session id of a WebTransport stream is not a client-initiated bidirectional stream
    /// id (draft-15 §4: `H3_ID_ERROR`).
    #[error("WebTransport session id {0} is not a client-initiated bidirectional stream id")]
    InvalidSessionId(u64),
}

impl StreamPrefixError {
    /// The HTTP/3 error code to close the connection with ([`error_code::H3_ID_ERROR`]).
    pub const fn h3_code(&self) -> u64 {
        error_code::H3_ID_ERROR
    }
}

/// Reads a WebTransport session id after a prefix of `prefix_len` bytes.
fn session_after(buf: &[u8], prefix_len: usize) -> Result<Option<(u64, usize)>, StreamPrefixError> {
    let rest = buf.get(prefix_len..).unwrap_or(&[]);
    match take_varint(rest) {
        None => Ok(None),
        Some((id, n)) if is_client_bidi(id) => Ok(Some((id, prefix_len + n))),
        Some((id, _)) => Err(StreamPrefixError::InvalidSessionId(id)),
    }
}

/// Parses the type prefix at the start of a unidirectional stream (RFC 9114 §6.2; draft-02
/// §4.1). `consumed` covers the type and, for WebTransport streams, the session id; the stream's
/// payload starts right after.
///
/// # Errors
/// [`StreamPrefixError::InvalidSessionId`] for a WebTransport stream whose session id is not a
/// client-initiated bidirectional stream id.
pub fn parse_uni_stream(buf: &[u8]) -> Result<Parse<UniStreamKind>, StreamPrefixError> {
    let Some((ty, n)) = take_varint(buf) else {
        return Ok(Parse::NeedMore);
    };
    let kind = match ty {
        STREAM_CONTROL => UniStreamKind::Control,
        STREAM_PUSH => UniStreamKind::Push,
        STREAM_QPACK_ENCODER => UniStreamKind::QpackEncoder,
        STREAM_QPACK_DECODER => UniStreamKind::QpackDecoder,
        STREAM_WEBTRANSPORT_UNI => {
            return Ok(match session_after(buf, n)? {
                None => Parse::NeedMore,
                Some((session_id, consumed)) => Parse::Parsed {
                    kind: UniStreamKind::WebTransport { session_id },
                    consumed,
                },
            });
        }
        other => UniStreamKind::Unknown(other),
    };
    Ok(Parse::Parsed { kind, consumed: n })
}

/// Parses the start of a bidirectional stream (draft-02 §4.2): the WebTransport signal 0x41 and
/// session id, or else the type of an HTTP/3 request stream's first frame (left unconsumed).
///
/// # Errors
/// [`StreamPrefixError::InvalidSessionId`] for a WebTransport stream whose session id is not a
/// client-initiated bidirectional stream id.
pub fn parse_bidi_stream(buf: &[u8]) -> Result<Parse<BidiStreamKind>, StreamPrefixError> {
    let Some((ty, n)) = take_varint(buf) else {
        return Ok(Parse::NeedMore);
    };
    if ty != SIGNAL_WEBTRANSPORT_BIDI {
        return Ok(Parse::Parsed {
            kind: BidiStreamKind::Request { first_frame_type: ty },
            consumed: 0,
        });
    }
    Ok(match session_after(buf, n)? {
        None => Parse::NeedMore,
        Some((session_id, consumed)) => Parse::Parsed {
            kind: BidiStreamKind::WebTransport { session_id },
            consumed,
        },
    })
}

/// Appends the prefix of a WebTransport unidirectional stream: `varint(0x54) ‖ varint(session_id)`
/// (draft-02 §4.1).
///
/// # Errors
/// [`StreamPrefixError::InvalidSessionId`] if `session_id` is not a client-initiated
/// bidirectional stream id (nothing is written).
pub fn encode_uni_prefix(session_id: u64, out: &mut Vec<u8>) -> Result<(), StreamPrefixError> {
    encode_prefix(STREAM_WEBTRANSPORT_UNI, session_id, out)
}

/// Appends the prefix of a WebTransport bidirectional stream: `varint(0x41) ‖
/// varint(session_id)` (draft-02 §4.2).
///
/// # Errors
/// [`StreamPrefixError::InvalidSessionId`] if `session_id` is not a client-initiated
/// bidirectional stream id (nothing is written).
pub fn encode_bidi_prefix(session_id: u64, out: &mut Vec<u8>) -> Result<(), StreamPrefixError> {
    encode_prefix(SIGNAL_WEBTRANSPORT_BIDI, session_id, out)
}

fn encode_prefix(ty: u64, session_id: u64, out: &mut Vec<u8>) -> Result<(), StreamPrefixError> {
    if !is_client_bidi(session_id) {
        return Err(StreamPrefixError::InvalidSessionId(session_id));
    }
    push_varint(ty, out);
    push_varint(session_id, out);
    Ok(())
}

/// Appends a value known to be at most [`varint::MAX`].
fn push_varint(value: u64, out: &mut Vec<u8>) {
    // Callers only pass constants, lengths bounded far below 2^62, or checked values.
    let _ = varint::encode(value.min(varint::MAX), out);
}

// ---------------------------------------------------------------------------------------------
// Frames
// ---------------------------------------------------------------------------------------------

/// An HTTP/3 frame type (RFC 9114 §7.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameType {
    /// DATA (0x00).
    Data,
    /// HEADERS (0x01).
    Headers,
    /// CANCEL_PUSH (0x03).
    CancelPush,
    /// SETTINGS (0x04).
    Settings,
    /// PUSH_PROMISE (0x05).
    PushPromise,
    /// GOAWAY (0x07).
    Goaway,
    /// MAX_PUSH_ID (0x0d).
    MaxPushId,
    /// Any other type, GREASE included; [`FrameReader`] skips these (RFC 9114 §9).
    Unknown(u64),
}

impl FrameType {
    /// The type of a frame type codepoint.
    ///
    /// # Errors
    /// [`FrameError::Http2Reserved`] for the HTTP/2 types 0x02, 0x06, 0x08 and 0x09 (RFC 9114
    /// §7.2.8).
    pub const fn from_code(code: u64) -> Result<Self, FrameError> {
        Ok(match code {
            0x00 => Self::Data,
            0x01 => Self::Headers,
            0x03 => Self::CancelPush,
            0x04 => Self::Settings,
            0x05 => Self::PushPromise,
            0x07 => Self::Goaway,
            0x0d => Self::MaxPushId,
            0x02 | 0x06 | 0x08 | 0x09 => return Err(FrameError::Http2Reserved(code)),
            other => Self::Unknown(other),
        })
    }

    /// The codepoint.
    pub const fn code(self) -> u64 {
        match self {
            Self::Data => 0x00,
            Self::Headers => 0x01,
            Self::CancelPush => 0x03,
            Self::Settings => 0x04,
            Self::PushPromise => 0x05,
            Self::Goaway => 0x07,
            Self::MaxPushId => 0x0d,
            Self::Unknown(code) => code,
        }
    }
}

/// The header of an HTTP/3 frame: `varint type ‖ varint length` (RFC 9114 §7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// The frame type.
    pub ty: FrameType,
    /// Payload length in bytes.
    pub length: u64,
}

/// Why a frame was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// An HTTP/2 frame type reserved in HTTP/3 (RFC 9114 §7.2.8): `H3_FRAME_UNEXPECTED`.
    #[error("HTTP/2 frame type {0:#x} is not allowed in HTTP/3")]
    Http2Reserved(u64),
    /// A known frame whose payload is longer than the reader's bound: `H3_EXCESSIVE_LOAD`.
    #[error("frame type {ty:#x} with a {length}-byte payload exceeds the {max}-byte bound")]
    TooLarge {
        /// The frame type codepoint.
        ty: u64,
        /// Announced payload length in bytes.
        length: u64,
        /// The reader's bound in bytes.
        max: u64,
    },
}

impl FrameError {
    /// The HTTP/3 error code to close the connection with.
    pub const fn h3_code(&self) -> u64 {
        match self {
            Self::Http2Reserved(_) => error_code::H3_FRAME_UNEXPECTED,
            Self::TooLarge { .. } => error_code::H3_EXCESSIVE_LOAD,
        }
    }
}

/// Parses a frame header; `consumed` is the header's length (1 to 16 bytes), the payload follows.
///
/// # Errors
/// [`FrameError::Http2Reserved`] for a reserved HTTP/2 type.
pub fn decode_frame_header(buf: &[u8]) -> Result<Parse<FrameHeader>, FrameError> {
    let Some((code, a)) = take_varint(buf) else {
        return Ok(Parse::NeedMore);
    };
    let Some((length, b)) = take_varint(buf.get(a..).unwrap_or(&[])) else {
        return Ok(Parse::NeedMore);
    };
    Ok(Parse::Parsed {
        kind: FrameHeader {
            ty: FrameType::from_code(code)?,
            length,
        },
        consumed: a + b,
    })
}

/// Appends a frame header `varint(ty) ‖ varint(length)`.
///
/// # Errors
/// [`VarIntError::TooLarge`] if the type or the length exceeds [`varint::MAX`] (nothing is
/// written).
pub fn encode_frame_header(ty: FrameType, length: u64, out: &mut Vec<u8>) -> Result<(), VarIntError> {
    varint::encoded_len(ty.code())?;
    varint::encoded_len(length)?;
    push_varint(ty.code(), out);
    push_varint(length, out);
    Ok(())
}

/// A whole frame found by [`FrameReader::read`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameRead<'a> {
    /// No whole known frame yet. `consumed` bytes (skipped unknown frames) may be dropped; the
    /// rest must be kept and passed again with more data.
    NeedMore {
        /// Bytes the caller may drop from the front of the slice.
        consumed: usize,
    },
    /// A known frame whose payload is entirely in the slice.
    Frame {
        /// Its type (never [`FrameType::Unknown`]).
        ty: FrameType,
        /// Its payload, at most the reader's bound.
        payload: &'a [u8],
        /// Bytes consumed from the front of the slice: skipped frames, header and payload.
        consumed: usize,
    },
}

/// Reads HTTP/3 frames from a stream, skipping unknown and GREASE frame types across calls
/// without buffering them (RFC 9114 §9), and refusing known frames whose payload exceeds
/// `max_payload` bytes, so the caller never holds more than `max_payload` + 16 bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameReader {
    max_payload: u64,
    skipping: u64,
}

impl FrameReader {
    /// A reader accepting known frames of up to `max_payload` payload bytes.
    pub const fn new(max_payload: u64) -> Self {
        Self {
            max_payload,
            skipping: 0,
        }
    }

    /// Bytes of an unknown frame still to skip.
    pub const fn skipping(&self) -> u64 {
        self.skipping
    }

    /// Reads the next known frame from `buf`, the stream's bytes from where the last call's
    /// `consumed` ended.
    ///
    /// # Errors
    /// [`FrameError`] for a reserved HTTP/2 type or a known frame above `max_payload`; the
    /// stream is then unusable.
    pub fn read<'a>(&mut self, buf: &'a [u8]) -> Result<FrameRead<'a>, FrameError> {
        let mut at = 0usize;
        loop {
            let rest = buf.get(at..).unwrap_or(&[]);
            if self.skipping > 0 {
                let skip = usize::try_from(self.skipping)
                    .unwrap_or(usize::MAX)
                    .min(rest.len());
                self.skipping -= skip as u64;
                at += skip;
                if self.skipping > 0 {
                    return Ok(FrameRead::NeedMore { consumed: at });
                }
                continue;
            }
            let (header, n) = match decode_frame_header(rest)? {
                Parse::NeedMore => return Ok(FrameRead::NeedMore { consumed: at }),
                Parse::Parsed { kind, consumed } => (kind, consumed),
            };
            if let FrameType::Unknown(_) = header.ty {
                self.skipping = header.length;
                at += n;
                continue;
            }
            if header.length > self.max_payload {
                return Err(FrameError::TooLarge {
                    ty: header.ty.code(),
                    length: header.length,
                    max: self.max_payload,
                });
            }
            // length <= max_payload; if it does not fit a usize the slice cannot hold it either.
            let Ok(length) = usize::try_from(header.length) else {
                return Ok(FrameRead::NeedMore { consumed: at });
            };
            let payload = rest.get(n..).and_then(|p| p.get(..length));
            return Ok(match payload {
                Some(payload) => FrameRead::Frame {
                    ty: header.ty,
                    payload,
                    consumed: at + n + length,
                },
                None => FrameRead::NeedMore { consumed: at },
            });
        }
    }
}

// ---------------------------------------------------------------------------------------------
// SETTINGS
// ---------------------------------------------------------------------------------------------

/// `SETTINGS_QPACK_MAX_TABLE_CAPACITY` (RFC 9204 §5).
pub const SETTINGS_QPACK_MAX_TABLE_CAPACITY: u64 = 0x01;
/// `SETTINGS_QPACK_BLOCKED_STREAMS` (RFC 9204 §5).
pub const SETTINGS_QPACK_BLOCKED_STREAMS: u64 = 0x07;
/// `SETTINGS_ENABLE_CONNECT_PROTOCOL` (RFC 9220 §3).
pub const SETTINGS_ENABLE_CONNECT_PROTOCOL: u64 = 0x08;
/// `SETTINGS_H3_DATAGRAM` (RFC 9297 §2.1.1).
pub const SETTINGS_H3_DATAGRAM: u64 = 0x33;
/// The pre-RFC `H3_DATAGRAM` identifier browsers still send next to 0x33
/// (draft-ietf-masque-h3-datagram-04).
pub const SETTINGS_H3_DATAGRAM_DRAFT04: u64 = 0xff_d277;
/// `SETTINGS_ENABLE_WEBTRANSPORT` (draft-ietf-webtrans-http3-02 §3.1).
pub const SETTINGS_ENABLE_WEBTRANSPORT: u64 = 0x2b60_3742;
/// `SETTINGS_WEBTRANSPORT_MAX_SESSIONS` (draft-ietf-webtrans-http3-07 §3.1).
pub const SETTINGS_WEBTRANSPORT_MAX_SESSIONS: u64 = 0xc671_706a;
/// Most settings a SETTINGS frame may carry here; more is `H3_EXCESSIVE_LOAD`.
pub const MAX_SETTINGS: usize = 64;

/// Why a SETTINGS payload was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// An identifier appears twice (RFC 9114 §7.2.4): `H3_SETTINGS_ERROR`.
    #[error("setting {0:#x} appears twice")]
    Duplicate(u64),
    /// An HTTP/2 setting identifier reserved in HTTP/3 (0x02 to 0x05, RFC 9114 §7.2.4.1):
    /// `H3_SETTINGS_ERROR`.
    #[error("HTTP/2 setting {0:#x} is not allowed in HTTP/3")]
    Http2Reserved(u64),
    /// The payload ends inside an identifier–value pair (RFC 9114 §7.1): `H3_FRAME_ERROR`.
    #[error("SETTINGS payload ends inside a setting")]
    Truncated,
    /// More than [`MAX_SETTINGS`] settings: `H3_EXCESSIVE_LOAD`.
    #[error("more than {MAX_SETTINGS} settings")]
    TooMany,
    /// An identifier or value above [`varint::MAX`] (encoding only).
    #[error(transparent)]
    VarInt(#[from] VarIntError),
}

impl SettingsError {
    /// The HTTP/3 error code to close the connection with.
    pub const fn h3_code(&self) -> u64 {
        match self {
            Self::Duplicate(_) | Self::Http2Reserved(_) => error_code::H3_SETTINGS_ERROR,
            Self::Truncated | Self::VarInt(_) => error_code::H3_FRAME_ERROR,
            Self::TooMany => error_code::H3_EXCESSIVE_LOAD,
        }
    }
}

/// The settings of a SETTINGS frame (RFC 9114 §7.2.4): identifier–value pairs in wire order, no
/// identifier twice, at most [`MAX_SETTINGS`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    entries: Vec<(u64, u64)>,
}

impl Settings {
    /// The server's settings for WebTransport (draft-02), in this order: QPACK_MAX_TABLE_CAPACITY
    /// 0 and QPACK_BLOCKED_STREAMS 0 (RFC 9204 §5: static table and literals only),
    /// ENABLE_CONNECT_PROTOCOL 1 (RFC 9220 §3), H3_DATAGRAM (0x33) 1 (RFC 9297 §2.1.1),
    /// ENABLE_WEBTRANSPORT 1 (draft-02 §3.1) and WEBTRANSPORT_MAX_SESSIONS 1 (draft-07 §3.1).
    pub fn server() -> Self {
        Self {
            entries: vec![
                (SETTINGS_QPACK_MAX_TABLE_CAPACITY, 0),
                (SETTINGS_QPACK_BLOCKED_STREAMS, 0),
                (SETTINGS_ENABLE_CONNECT_PROTOCOL, 1),
                (SETTINGS_H3_DATAGRAM, 1),
                (SETTINGS_ENABLE_WEBTRANSPORT, 1),
                (SETTINGS_WEBTRANSPORT_MAX_SESSIONS, 1),
            ],
        }
    }

    /// Settings from pairs, in order.
    ///
    /// # Errors
    /// [`SettingsError`] for a duplicate or HTTP/2-reserved identifier, more than
    /// [`MAX_SETTINGS`] pairs, or a number above [`varint::MAX`].
    pub fn from_pairs(pairs: impl IntoIterator<Item = (u64, u64)>) -> Result<Self, SettingsError> {
        let mut settings = Self::default();
        for (id, value) in pairs {
            varint::encoded_len(id)?;
            varint::encoded_len(value)?;
            settings.insert(id, value)?;
        }
        Ok(settings)
    }

    fn insert(&mut self, id: u64, value: u64) -> Result<(), SettingsError> {
        if (0x02..=0x05).contains(&id) {
            return Err(SettingsError::Http2Reserved(id));
        }
        if self.get(id).is_some() {
            return Err(SettingsError::Duplicate(id));
        }
        if self.entries.len() >= MAX_SETTINGS {
            return Err(SettingsError::TooMany);
        }
        self.entries.push((id, value));
        Ok(())
    }

    /// The value of setting `id`, if present.
    pub fn get(&self, id: u64) -> Option<u64> {
        self.entries.iter().find(|(i, _)| *i == id).map(|(_, v)| *v)
    }

    /// The pairs, in wire order.
    pub fn pairs(&self) -> &[(u64, u64)] {
        &self.entries
    }

    /// Whether a client's settings allow WebTransport datagrams: `H3_DATAGRAM` = 1 under 0x33
    /// (RFC 9297 §2.1.1) or under the draft identifier 0xffd277.
    pub fn supports_webtransport_datagrams(&self) -> bool {
        self.get(SETTINGS_H3_DATAGRAM) == Some(1) || self.get(SETTINGS_H3_DATAGRAM_DRAFT04) == Some(1)
    }

    /// Decodes a SETTINGS frame's payload (the bytes after the frame header).
    ///
    /// # Errors
    /// [`SettingsError`] for a duplicate or HTTP/2-reserved identifier, a truncated pair, or
    /// more than [`MAX_SETTINGS`] pairs.
    pub fn decode_payload(mut payload: &[u8]) -> Result<Self, SettingsError> {
        let mut settings = Self::default();
        while !payload.is_empty() {
            let (id, a) = take_varint(payload).ok_or(SettingsError::Truncated)?;
            let (value, b) = take_varint(payload.get(a..).unwrap_or(&[])).ok_or(SettingsError::Truncated)?;
            settings.insert(id, value)?;
            payload = payload.get(a + b..).unwrap_or(&[]);
        }
        Ok(settings)
    }

    /// Length in bytes of the payload [`encode_payload`](Self::encode_payload) writes.
    pub fn payload_len(&self) -> usize {
        self.entries
            .iter()
            .map(|&(i, v)| varint::encoded_len(i).unwrap_or(8) + varint::encoded_len(v).unwrap_or(8))
            .sum()
    }

    /// Appends the payload: `varint id ‖ varint value` per setting.
    pub fn encode_payload(&self, out: &mut Vec<u8>) {
        for &(id, value) in &self.entries {
            push_varint(id, out);
            push_varint(value, out);
        }
    }

    /// Appends the whole frame: `varint(0x04) ‖ varint(length) ‖ payload`. A control stream
    /// starts with the stream type 0x00 ([`STREAM_CONTROL`]) before this frame.
    pub fn encode_frame(&self, out: &mut Vec<u8>) {
        push_varint(FrameType::Settings.code(), out);
        push_varint(self.payload_len() as u64, out);
        self.encode_payload(out);
    }
}

// ---------------------------------------------------------------------------------------------
// Datagrams
// ---------------------------------------------------------------------------------------------

/// Why an HTTP datagram was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DatagramError {
    /// The session id to encode is not a client-initiated bidirectional stream id.
    #[error("session id {0} is not a client-initiated bidirectional stream id")]
    InvalidSessionId(u64),
    /// The datagram ends inside the quarter stream id (RFC 9297 §2.1: `H3_DATAGRAM_ERROR`).
    #[error("datagram ends inside its quarter stream id")]
    Truncated,
    /// The quarter stream id times 4 is not a stream id (above 2⁶² − 1; RFC 9297 §2.1:
    /// `H3_DATAGRAM_ERROR`).
    #[error("quarter stream id {0} is out of range")]
    QuarterIdOutOfRange(u64),
}

/// Appends the prefix of an HTTP datagram of session `session_id`: `varint(session_id / 4)`
/// (RFC 9297 §2.1); the payload follows. Session 0 gives the single byte 0x00.
///
/// # Errors
/// [`DatagramError::InvalidSessionId`] if `session_id` is not a client-initiated bidirectional
/// stream id (nothing is written).
pub fn encode_datagram_prefix(session_id: u64, out: &mut Vec<u8>) -> Result<(), DatagramError> {
    if !is_client_bidi(session_id) {
        return Err(DatagramError::InvalidSessionId(session_id));
    }
    push_varint(session_id / 4, out);
    Ok(())
}

/// Splits a QUIC DATAGRAM payload into `(session_id, payload)` (RFC 9297 §2.1).
///
/// # Errors
/// [`DatagramError::Truncated`] or [`DatagramError::QuarterIdOutOfRange`].
pub fn decode_datagram(buf: &[u8]) -> Result<(u64, &[u8]), DatagramError> {
    let (quarter, n) = take_varint(buf).ok_or(DatagramError::Truncated)?;
    if quarter > varint::MAX / 4 {
        return Err(DatagramError::QuarterIdOutOfRange(quarter));
    }
    Ok((quarter * 4, buf.get(n..).unwrap_or(&[])))
}

// ---------------------------------------------------------------------------------------------
// Capsules
// ---------------------------------------------------------------------------------------------

/// Capsule type of `CLOSE_WEBTRANSPORT_SESSION` (draft-02 §5).
pub const CAPSULE_CLOSE_WEBTRANSPORT_SESSION: u64 = 0x2843;
/// Longest close message in bytes (draft-02 §5).
pub const MAX_CLOSE_MESSAGE: usize = 1024;

/// The `CLOSE_WEBTRANSPORT_SESSION` capsule (draft-02 §5): `varint(0x2843) ‖ varint(length) ‖
/// u32 code (big-endian) ‖ UTF-8 message`, the message at most [`MAX_CLOSE_MESSAGE`] bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseSession {
    /// The application's close code (`WebTransportCloseInfo.closeCode` in browsers).
    pub code: u32,
    /// The reason (`WebTransportCloseInfo.reason`), at most [`MAX_CLOSE_MESSAGE`] bytes.
    pub message: String,
}

/// A capsule (RFC 9297 §3.2) whose payload is entirely in the slice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Capsule<'a> {
    /// `CLOSE_WEBTRANSPORT_SESSION`.
    CloseSession(CloseSession),
    /// Any other type, which the receiver drops (RFC 9297 §3.2).
    Unknown {
        /// The capsule type.
        ty: u64,
        /// Its payload.
        payload: &'a [u8],
    },
}

/// Why a capsule was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CapsuleError {
    /// The capsule's payload is longer than the caller's bound.
    #[error("capsule type {ty:#x} with a {length}-byte payload exceeds the {max}-byte bound")]
    TooLarge {
        /// The capsule type.
        ty: u64,
        /// Announced payload length in bytes.
        length: u64,
        /// The bound in bytes.
        max: u64,
    },
    /// A close payload shorter than its 4-byte code.
    #[error("close capsule shorter than its 4-byte code")]
    CloseTooShort,
    /// A close message longer than [`MAX_CLOSE_MESSAGE`] bytes (its length in bytes).
    #[error("close message of {0} bytes exceeds {MAX_CLOSE_MESSAGE}")]
    MessageTooLong(usize),
    /// A close message that is not UTF-8.
    #[error("close message is not UTF-8")]
    MessageNotUtf8,
}

impl CapsuleError {
    /// The HTTP/3 error code to reset the CONNECT stream with ([`error_code::H3_MESSAGE_ERROR`],
    /// or [`error_code::H3_EXCESSIVE_LOAD`] for an oversized capsule).
    pub const fn h3_code(&self) -> u64 {
        match self {
            Self::TooLarge { .. } => error_code::H3_EXCESSIVE_LOAD,
            _ => error_code::H3_MESSAGE_ERROR,
        }
    }
}

impl CloseSession {
    /// Appends the whole capsule.
    ///
    /// # Errors
    /// [`CapsuleError::MessageTooLong`] if the message exceeds [`MAX_CLOSE_MESSAGE`] bytes
    /// (nothing is written).
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), CapsuleError> {
        if self.message.len() > MAX_CLOSE_MESSAGE {
            return Err(CapsuleError::MessageTooLong(self.message.len()));
        }
        push_varint(CAPSULE_CLOSE_WEBTRANSPORT_SESSION, out);
        push_varint(4 + self.message.len() as u64, out);
        out.extend_from_slice(&self.code.to_be_bytes());
        out.extend_from_slice(self.message.as_bytes());
        Ok(())
    }

    /// Decodes a close capsule's payload (after type and length).
    ///
    /// # Errors
    /// [`CapsuleError::CloseTooShort`], [`CapsuleError::MessageTooLong`] or
    /// [`CapsuleError::MessageNotUtf8`].
    pub fn decode_payload(payload: &[u8]) -> Result<Self, CapsuleError> {
        let (code, message) = payload
            .split_first_chunk::<4>()
            .ok_or(CapsuleError::CloseTooShort)?;
        if message.len() > MAX_CLOSE_MESSAGE {
            return Err(CapsuleError::MessageTooLong(message.len()));
        }
        let message = std::str::from_utf8(message).map_err(|_| CapsuleError::MessageNotUtf8)?;
        Ok(Self {
            code: u32::from_be_bytes(*code),
            message: message.to_owned(),
        })
    }
}

/// Parses one capsule from the CONNECT stream's capsule bytes (RFC 9297 §3.2), refusing payloads
/// above `max_payload` bytes before waiting for them.
///
/// # Errors
/// [`CapsuleError::TooLarge`], or a malformed close capsule.
pub fn decode_capsule(buf: &[u8], max_payload: u64) -> Result<Parse<Capsule<'_>>, CapsuleError> {
    let Some((ty, a)) = take_varint(buf) else {
        return Ok(Parse::NeedMore);
    };
    let Some((length, b)) = take_varint(buf.get(a..).unwrap_or(&[])) else {
        return Ok(Parse::NeedMore);
    };
    if length > max_payload {
        return Err(CapsuleError::TooLarge {
            ty,
            length,
            max: max_payload,
        });
    }
    let Some(payload) = usize::try_from(length)
        .ok()
        .and_then(|l| buf.get(a + b..)?.get(..l))
    else {
        return Ok(Parse::NeedMore);
    };
    let kind = if ty == CAPSULE_CLOSE_WEBTRANSPORT_SESSION {
        Capsule::CloseSession(CloseSession::decode_payload(payload)?)
    } else {
        Capsule::Unknown { ty, payload }
    };
    Ok(Parse::Parsed {
        kind,
        consumed: a + b + payload.len(),
    })
}

// ---------------------------------------------------------------------------------------------
// Application error codes
// ---------------------------------------------------------------------------------------------

/// The HTTP/3 error code of application error 0 (draft-15 §4.4, §9.5).
pub const APP_ERROR_FIRST: u64 = 0x52e4_a40f_a8db;
/// The HTTP/3 error code of application error `u32::MAX`.
pub const APP_ERROR_LAST: u64 = 0x52e5_ac98_3162;

/// Why an HTTP/3 error code carries no WebTransport application error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AppErrorCodeError {
    /// Outside [`APP_ERROR_FIRST`]`..=`[`APP_ERROR_LAST`].
    #[error("HTTP/3 error code {0:#x} is outside the WebTransport application range")]
    OutOfRange(u64),
    /// A GREASE codepoint inside the range, skipped by the mapping.
    #[error("HTTP/3 error code {0:#x} is a GREASE codepoint")]
    Grease(u64),
}

/// The HTTP/3 error code of a WebTransport stream reset with application code `n`:
/// `0x52e4a40fa8db + n + n / 0x1e`, which skips the GREASE codepoints (draft-15 §4.4; QUICHE
/// uses the 32-bit range with draft-02 too).
pub const fn app_error_to_h3(n: u32) -> u64 {
    let n = n as u64;
    APP_ERROR_FIRST + n + n / 0x1e
}

/// The application code of an HTTP/3 error code, the inverse of [`app_error_to_h3`]:
/// `s = h − 0x52e4a40fa8db; n = s − s / 0x1f` (draft-15 §4.4).
///
/// # Errors
/// [`AppErrorCodeError::OutOfRange`] or [`AppErrorCodeError::Grease`]: the reset carries no
/// application code.
pub const fn h3_to_app_error(h: u64) -> Result<u32, AppErrorCodeError> {
    if h < APP_ERROR_FIRST || h > APP_ERROR_LAST {
        return Err(AppErrorCodeError::OutOfRange(h));
    }
    if is_grease(h) {
        return Err(AppErrorCodeError::Grease(h));
    }
    let s = h - APP_ERROR_FIRST;
    Ok((s - s / 0x1f) as u32)
}

#[cfg(test)]
mod tests;
