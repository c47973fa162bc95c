//! Wire format: reason codes, control messages, stream framing and the datagram header.
//!
//! Everything here is specified byte for byte in `PROTOCOL.md` at the repository root. Messages
//! are encoded with [postcard](https://docs.rs/postcard) (varint integers, length-prefixed
//! byte strings, fixed arrays as raw bytes). Stream frames carry a 4-byte big-endian length
//! prefix whose maximum is enforced before any payload byte is buffered.

use std::collections::VecDeque;
use std::fmt;

use bytes::{Buf, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use crate::fragment::{FragmentHeader, FragmentHeaderError, FRAGMENT_HEADER_LEN};
pub use crate::heartbeat::{Ping, Pong};
use crate::ticket::JoinTicket;

/// The tickwire protocol version this build speaks (the highest it supports).
pub const PROTOCOL_VERSION: u16 = 1;
/// The lowest protocol version this build still accepts.
pub const MIN_PROTOCOL_VERSION: u16 = 1;
/// ALPN protocol identifier negotiated in the TLS handshake (RFC 7301).
pub const ALPN: &[u8] = b"tickwire/1";
/// Length of handshake nonces, in bytes.
pub const NONCE_LEN: usize = 24;
/// Length of the stream frame length prefix, in bytes.
pub const FRAME_PREFIX_LEN: usize = 4;
/// Largest control frame (hello or accept) accepted, in bytes.
pub const MAX_CONTROL_FRAME_BYTES: usize = 4096;
/// Largest close detail string carried in a CONNECTION_CLOSE reason, in bytes.
pub const MAX_CLOSE_DETAIL_BYTES: usize = 200;

/// The schema hash of every GS ↔ VS session, whatever game the GS serves:
/// SHA-256(`"tickwire/vs-protocol/v1"`) (`PROTOCOL.md` §8.1). A game server's Hello with
/// [`Role::GameServer`] carries it instead of its game's schema hash,
/// and the VS checks it instead of its own, so one VS serves game servers of any game.
pub const VS_SCHEMA_HASH: [u8; 32] = [
    0x2b, 0xdf, 0x39, 0x20, 0x3d, 0xc6, 0xa1, 0x3e, 0x42, 0x90, 0xad, 0xf2, 0x4f, 0x2b, 0xfa, 0x8a, 0x06,
    0xbb, 0xe8, 0xe4, 0x45, 0xdd, 0x21, 0x4d, 0x0f, 0x05, 0xe3, 0x07, 0x10, 0xd4, 0x31, 0x22,
];

/// Why a session was refused or ended: carried as the QUIC application error code of the
/// CONNECTION_CLOSE frame (RFC 9000 §19.19), so it reaches the peer even when no stream data can.
///
/// A newtype rather than an enum so that codes added by newer peers still decode; the named
/// constants are the codes this version defines (see `PROTOCOL.md` §6).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ReasonCode(pub u16);

macro_rules! reason_codes {
    ($($(#[$doc:meta])* $name:ident = $value:expr, retry = $retry:expr;)*) => {
        impl ReasonCode {
            $($(#[$doc])* pub const $name: ReasonCode = ReasonCode($value);)*

            /// Every code this version defines, in numeric order.
            pub const ALL: &'static [ReasonCode] = &[$(ReasonCode::$name),*];

            /// The constant's name, or `None` for a code this version does not define.
            pub fn name(self) -> Option<&'static str> {
                match self.0 {
                    $($value => Some(stringify!($name)),)*
                    _ => None,
                }
            }

            /// Whether a client may reasonably retry after this reason (possibly after the
            /// close's `retry_after_ms`).
            pub fn is_retryable(self) -> bool {
                match self.0 {
                    $($value => $retry,)*
                    _ => false,
                }
            }
        }
    };
}

reason_codes! {
    /// The application closed the session normally.
    NORMAL = 0, retry = false;
    /// The server is shutting down.
    SERVER_SHUTDOWN = 1, retry = true;
    /// No protocol version in common.
    UNSUPPORTED_VERSION = 2, retry = false;
    /// The client's schema hash differs from the server's.
    SCHEMA_MISMATCH = 3, retry = false;
    /// The server has no free session slot.
    SERVER_FULL = 4, retry = true;
    /// Too many handshakes from this address, or too many messages from this session (on the
    /// connection or on one channel, `PROTOCOL.md` §7.1); see `retry_after_ms`.
    RATE_LIMITED = 5, retry = true;
    /// The handshake did not complete within the configured time.
    HANDSHAKE_TIMEOUT = 6, retry = true;
    /// A handshake message was malformed or out of order.
    BAD_HANDSHAKE = 7, retry = false;
    /// A handshake signature did not verify against the identity key and TLS exporter.
    BAD_SIGNATURE = 8, retry = false;
    /// The join ticket could not be decoded.
    TICKET_MALFORMED = 9, retry = false;
    /// The join ticket's key id is unknown to the server.
    TICKET_UNKNOWN_KEY = 10, retry = false;
    /// The join ticket's signature is invalid.
    TICKET_BAD_SIGNATURE = 11, retry = false;
    /// The join ticket was issued for another game server.
    TICKET_WRONG_AUDIENCE = 12, retry = false;
    /// The join ticket is not valid yet, even with the clock-skew allowance.
    TICKET_NOT_YET_VALID = 13, retry = true;
    /// The join ticket has expired (also used when revalidation finds it expired).
    TICKET_EXPIRED = 14, retry = false;
    /// The join ticket's `jti` was already used.
    TICKET_REPLAYED = 15, retry = false;
    /// The join ticket, its client or its key was revoked.
    TICKET_REVOKED = 16, retry = false;
    /// The join ticket names a different identity key than the handshake.
    TICKET_IDENTITY_MISMATCH = 17, retry = false;
    /// The join ticket's lifetime exceeds the server's maximum.
    TICKET_LIFETIME_TOO_LONG = 18, retry = false;
    /// The server is temporarily out of a bounded resource; see `retry_after_ms`.
    SERVER_BUSY = 19, retry = true;
    /// No packet arrived from the peer within the heartbeat timeout.
    HEARTBEAT_TIMEOUT = 20, retry = true;
    /// The peer broke the protocol (oversized frame, unknown stream, bad channel).
    PROTOCOL_VIOLATION = 21, retry = false;
    /// The application removed the client.
    KICKED = 22, retry = false;
    /// The requested role is not permitted by the ticket.
    ROLE_NOT_PERMITTED = 23, retry = false;
    /// The server's identity key is not the one the client pinned.
    SERVER_KEY_MISMATCH = 24, retry = false;
    /// The QUIC connection failed below tickwire (idle timeout, reset, TLS failure).
    TRANSPORT_ERROR = 25, retry = true;
    /// The game server holds no valid play ticket from its verification server (not yet, or
    /// starved): it admits no clients and closes sessions when starved. Retry later.
    NOT_AUTHORISED = 26, retry = true;
    /// The game server's play ticket does not verify against the verification-server keys the
    /// client trusts, or names another game server.
    PLAY_TICKET_INVALID = 27, retry = false;
    /// VS: the join request's timestamp differs from the VS clock by more than
    /// `join_max_skew_ms`. Fix the clock, then retry.
    JOIN_CLOCK_SKEW = 28, retry = true;
    /// VS: the game server is not enrolled, or its identity key differs from the enrolled one.
    UNKNOWN_GAME_SERVER = 29, retry = false;
    /// VS: the attestation key is not an ECC P-256 restricted signing key fixed to its TPM, or
    /// differs from the enrolled one.
    AK_REJECTED = 30, retry = false;
    /// VS: the quote's signature, structure or PCR selection is invalid.
    QUOTE_INVALID = 31, retry = false;
    /// VS: the quote binds a challenge nonce this game server was sent before.
    QUOTE_REPLAYED = 32, retry = false;
    /// VS: the quote is not bound to this challenge, identity key and game-server id (made
    /// for another machine or key).
    QUOTE_BINDING_MISMATCH = 33, retry = false;
    /// VS: the measured software (PCR 23) is not an allowed binary and configuration.
    MEASUREMENT_MISMATCH = 34, retry = false;
    /// VS: the game server was revoked by the operator.
    GS_REVOKED = 35, retry = false;
    /// The session sent too many messages on channels its role or ticket permissions may not
    /// send on (`max_permission_violations`, `PROTOCOL.md` §7.1).
    PERMISSION_DENIED = 36, retry = false;
}

impl fmt::Debug for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "ReasonCode({})", self.0),
        }
    }
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// The payload of a tickwire CONNECTION_CLOSE reason phrase: postcard-encoded, at most
/// [`MAX_CLOSE_DETAIL_BYTES`] of detail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloseInfo {
    /// When the peer may try again, in milliseconds; `None` = no advice.
    pub retry_after_ms: Option<u32>,
    /// Human-readable detail for logs; never parsed.
    pub detail: String,
}

impl CloseInfo {
    /// Encodes the close payload, truncating `detail` at a character boundary to the limit.
    pub fn encode(&self) -> Bytes {
        let mut detail = self.detail.as_str();
        if detail.len() > MAX_CLOSE_DETAIL_BYTES {
            let mut end = MAX_CLOSE_DETAIL_BYTES;
            while !detail.is_char_boundary(end) {
                end -= 1;
            }
            detail = &detail[..end];
        }
        let info = CloseInfo {
            retry_after_ms: self.retry_after_ms,
            detail: detail.to_owned(),
        };
        Bytes::from(postcard::to_allocvec(&info).expect("encoding to a Vec cannot fail"))
    }

    /// Decodes a close payload; a payload that is not tickwire's yields an empty `CloseInfo`
    /// (a peer's bad close reason must not hide the reason code itself).
    pub fn decode(bytes: &[u8]) -> CloseInfo {
        postcard::from_bytes(bytes).unwrap_or(CloseInfo {
            retry_after_ms: None,
            detail: String::new(),
        })
    }
}

/// An Ed25519 signature: 64 raw bytes on the wire.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature(pub [u8; 64]);

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Signature({:02x}{:02x}{:02x}{:02x}..)",
            self.0[0], self.0[1], self.0[2], self.0[3]
        )
    }
}

impl Serialize for Signature {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let mut tuple = serializer.serialize_tuple(64)?;
        for byte in &self.0 {
            tuple.serialize_element(byte)?;
        }
        tuple.end()
    }
}

impl<'de> Deserialize<'de> for Signature {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Signature;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("64 signature bytes")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Signature, A::Error> {
                let mut out = [0u8; 64];
                for (i, byte) in out.iter_mut().enumerate() {
                    *byte = seq
                        .next_element()?
                        .ok_or_else(|| serde::de::Error::invalid_length(i, &self))?;
                }
                Ok(Signature(out))
            }
        }
        deserializer.deserialize_tuple(64, Visitor)
    }
}

/// Ticket permission bit that allows the [`Role::Admin`] role and, in the default channel
/// table's terms, sending on admin channels (`PROTOCOL.md` §4.6, §7.1).
pub const PERMISSION_ADMIN: u32 = 1 << 31;

/// Role a client asks for and the server assigns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[repr(u8)]
#[non_exhaustive]
pub enum Role {
    /// Plays the game: sends inputs, receives state.
    Player = 0,
    /// Receives state only.
    Spectator = 1,
    /// Operator access; requires the ticket's admin permission bit.
    Admin = 2,
    /// A game server connecting to its verification server: presents no join ticket; only
    /// endpoints with `accept_game_servers` admit it (`PROTOCOL.md` §8).
    GameServer = 3,
}

/// The signed part of the client's hello (`PROTOCOL.md` §4.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HelloBody {
    /// Lowest protocol version the client speaks.
    pub version_min: u16,
    /// Highest protocol version the client speaks.
    pub version_max: u16,
    /// SHA-256 of the game's message schema; must equal the server's.
    pub schema_hash: [u8; 32],
    /// Fresh client nonce, 24 bytes.
    pub nonce: [u8; NONCE_LEN],
    /// Capability bits the client supports.
    pub capabilities: u64,
    /// Role the client asks for.
    pub role: Role,
    /// The client's Ed25519 identity public key.
    pub identity_key: [u8; 32],
    /// The join ticket the client presents; `None` only for [`Role::GameServer`].
    pub join_ticket: Option<JoinTicket>,
    /// Typed extensions, strictly ascending by kind; unknown kinds are skipped
    /// (`PROTOCOL.md` §4.4.4).
    pub extensions: Vec<Extension>,
}

/// The signed part of the server's accept (`PROTOCOL.md` §4.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AcceptBody {
    /// The negotiated protocol version: the highest both sides speak.
    pub version: u16,
    /// The schema hash, echoed.
    pub schema_hash: [u8; 32],
    /// The client's nonce, echoed.
    pub client_nonce: [u8; NONCE_LEN],
    /// Fresh server nonce, 24 bytes.
    pub server_nonce: [u8; NONCE_LEN],
    /// Session id assigned by the server: 64 bits from its seeded RNG (collisions are
    /// possible in principle; use the connection handle as the local key).
    pub session_id: u64,
    /// Role assigned to the client.
    pub role: Role,
    /// Permission bits granted (from the ticket).
    pub permissions: u32,
    /// Capability intersection of client and server.
    pub capabilities: u64,
    /// The server's Ed25519 identity public key.
    pub server_key: [u8; 32],
    /// The server's tick at the time of accepting.
    pub server_tick: u64,
    /// The server's tick rate, in hertz.
    pub tick_rate_hz: u16,
    /// The server's current play ticket from its verification server, when it has one.
    pub play_ticket: Option<Vec<u8>>,
    /// Typed extensions, strictly ascending by kind; unknown kinds are skipped
    /// (`PROTOCOL.md` §4.4.4).
    pub extensions: Vec<Extension>,
}

/// Capability bits defined by this version (`PROTOCOL.md` §4.4.2). A session has a bit only
/// when both peers set it; bits not listed here are reserved and ignored.
pub mod capability {
    /// zstd compression (RFC 8878) of the channels marked for it (`PROTOCOL.md` §7.3).
    pub const ZSTD: u64 = 1 << 0;
    /// zstd with the shared dictionary whose SHA-256 the Hello names in a
    /// [`ExtensionKind::COMPRESSION_DICTIONARY`](super::ExtensionKind::COMPRESSION_DICTIONARY)
    /// extension; granted only together with [`ZSTD`] and when the server's dictionary has
    /// the same hash.
    pub const ZSTD_DICTIONARY: u64 = 1 << 1;
    /// Datagram bundles: several small datagrams in one QUIC DATAGRAM frame
    /// ([`DatagramKind::Bundle`](super::DatagramKind::Bundle), `PROTOCOL.md` §5.7).
    pub const BUNDLE: u64 = 1 << 2;
    /// Every bit this version defines.
    pub const ALL: u64 = ZSTD | ZSTD_DICTIONARY | BUNDLE;
}

/// The kind of a handshake [`Extension`]: a u16, varint-encoded. A newtype so that kinds
/// defined by later versions still decode (and are skipped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ExtensionKind(pub u16);

impl ExtensionKind {
    /// Hello: the SHA-256 of the client's zstd dictionary, 32 raw bytes (`PROTOCOL.md` §7.3).
    pub const COMPRESSION_DICTIONARY: ExtensionKind = ExtensionKind(1);
}

/// Most extensions a Hello or Accept may carry.
pub const MAX_EXTENSIONS: usize = 16;

/// One typed extension of a Hello or Accept: `kind` ‖ `data` (varint length + bytes). Both
/// bodies are signed whole, so extensions are covered by the handshake signatures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extension {
    /// What the data means; receivers skip kinds they do not know.
    pub kind: ExtensionKind,
    /// The extension's content, defined per kind.
    pub data: Vec<u8>,
}

/// Checks a received extension list: at most [`MAX_EXTENSIONS`], kinds strictly ascending
/// (so no kind twice). A failure is a malformed handshake (`BAD_HANDSHAKE`).
///
/// # Errors
/// [`WireError::Malformed`] naming the rule broken.
pub fn check_extensions(extensions: &[Extension]) -> Result<(), WireError> {
    if extensions.len() > MAX_EXTENSIONS {
        return Err(WireError::Malformed("too many extensions"));
    }
    if extensions.windows(2).any(|w| w[0].kind >= w[1].kind) {
        return Err(WireError::Malformed("extension kinds not strictly ascending"));
    }
    Ok(())
}

/// The data of the extension of `kind`, if the list has one.
pub fn find_extension(extensions: &[Extension], kind: ExtensionKind) -> Option<&[u8]> {
    extensions
        .iter()
        .find(|e| e.kind == kind)
        .map(|e| e.data.as_slice())
}

/// A body with the Ed25519 signature over it (the signed bytes are defined by the handshake).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Signed {
    /// The postcard encoding of the body, exactly as signed.
    pub body: Vec<u8>,
    /// Signature over the handshake transcript that includes `body`.
    pub signature: Signature,
}

/// A message on the control stream (client-initiated bidirectional stream 0; in a WebTransport
/// session, the server's first bidirectional stream, `PROTOCOL.md` §12.4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Control {
    /// Client → server: a signed [`HelloBody`].
    Hello(Signed),
    /// Server → client: a signed [`AcceptBody`].
    Accept(Signed),
    /// Server → client, first frame of a WebTransport control stream only: what the handshake's
    /// signatures bind to in place of the TLS exporter (`PROTOCOL.md` §12.5).
    Challenge(Challenge),
}

/// [`Challenge::binding`]: the certificate binding, the only one version 1 defines.
pub const BINDING_CERTIFICATE: u8 = 0;

/// The WebTransport channel binding's inputs (`PROTOCOL.md` §12.5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Challenge {
    /// [`BINDING_CERTIFICATE`].
    pub binding: u8,
    /// SHA-256 of the DER certificate the server presented on this connection.
    pub cert_hash: [u8; 32],
    /// Fresh server nonce.
    pub nonce: [u8; NONCE_LEN],
}

impl Challenge {
    /// The value both handshake signatures bind to in place of the TLS exporter:
    /// `SHA-256("tickwire/wt-binding/v1" ‖ cert_hash ‖ nonce)`.
    pub fn binding_value(&self) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(b"tickwire/wt-binding/v1");
        hasher.update(self.cert_hash);
        hasher.update(self.nonce);
        hasher.finalize().into()
    }
}

/// Errors decoding anything received from a peer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The bytes do not decode as the expected message; close with
    /// [`ReasonCode::PROTOCOL_VIOLATION`] or [`ReasonCode::BAD_HANDSHAKE`].
    #[error("malformed message: {0}")]
    Malformed(&'static str),
    /// A frame's length prefix exceeds the limit; the stream cannot be resynchronised.
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    FrameTooLarge {
        /// Declared length.
        len: usize,
        /// Configured maximum.
        max: usize,
    },
    /// The datagram's type bits name no known kind; the datagram is dropped.
    #[error("unknown datagram type {0}")]
    UnknownDatagramType(u8),
    /// The fragment header is invalid; the datagram is dropped.
    #[error(transparent)]
    Fragment(#[from] FragmentHeaderError),
}

/// Encodes any message with postcard.
pub fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    postcard::to_allocvec(message).expect("encoding to a Vec cannot fail")
}

/// Decodes a postcard message, rejecting trailing bytes.
pub fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, WireError> {
    match postcard::take_from_bytes(bytes) {
        Ok((value, [])) => Ok(value),
        Ok(_) => Err(WireError::Malformed("trailing bytes")),
        Err(_) => Err(WireError::Malformed("postcard decode failed")),
    }
}

/// Prepends the 4-byte big-endian length prefix to `payload`.
pub fn encode_frame(payload: &[u8]) -> Bytes {
    let len = u32::try_from(payload.len()).expect("frames are bounded far below 4 GiB");
    let mut out = BytesMut::with_capacity(FRAME_PREFIX_LEN + payload.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
    out.freeze()
}

/// Incremental decoder of length-prefixed frames from a byte stream.
///
/// The declared length is checked against `max_frame_bytes` as soon as the 4-byte prefix is
/// complete — in [`FrameDecoder::push`] itself, so an oversized frame's payload is discarded
/// rather than buffered — and the buffer grows only as bytes arrive, so a peer cannot make us
/// reserve memory it has not sent. Buffered bytes are thus bounded by `max_frame_bytes` plus
/// one push (which QUIC stream flow control bounds in turn).
#[derive(Debug)]
pub struct FrameDecoder {
    max_frame_bytes: usize,
    /// Complete frames cut straight out of pushed chunks, oldest first (they precede `buf`).
    ready: VecDeque<Bytes>,
    buf: BytesMut,
    /// Declared length of the frame in progress, once its prefix is complete.
    expected: Option<usize>,
    /// Set once an oversized prefix was seen; the stream is unusable afterwards.
    oversized: Option<usize>,
}

impl FrameDecoder {
    /// A decoder that rejects frames longer than `max_frame_bytes`.
    pub fn new(max_frame_bytes: usize) -> Self {
        Self {
            max_frame_bytes,
            ready: VecDeque::new(),
            buf: BytesMut::new(),
            expected: None,
            oversized: None,
        }
    }

    /// Appends stream bytes. Complete frames are then taken with [`FrameDecoder::poll_frame`].
    pub fn push(&mut self, bytes: &[u8]) {
        self.push_bytes(Bytes::copy_from_slice(bytes));
    }

    /// [`FrameDecoder::push`] without a copy: frames that lie wholly inside `chunk` (and start
    /// where no partial frame is pending) are handed out as slices of it; only the bytes of a
    /// frame split across chunks are buffered.
    pub fn push_bytes(&mut self, mut chunk: Bytes) {
        if self.oversized.is_some() {
            return;
        }
        while self.buf.is_empty() && self.expected.is_none() && chunk.len() >= FRAME_PREFIX_LEN {
            let len = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]) as usize;
            if len > self.max_frame_bytes {
                self.oversized = Some(len);
                return;
            }
            if chunk.len() - FRAME_PREFIX_LEN < len {
                break;
            }
            chunk.advance(FRAME_PREFIX_LEN);
            self.ready.push_back(chunk.split_to(len));
        }
        if chunk.is_empty() {
            return;
        }
        self.buf.extend_from_slice(&chunk);
        if self.expected.is_none() && self.buf.len() >= FRAME_PREFIX_LEN {
            let len = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize;
            if len > self.max_frame_bytes {
                self.oversized = Some(len);
                self.buf = BytesMut::new();
            }
        }
    }

    /// Takes the next complete frame, `Ok(None)` if more bytes are needed.
    ///
    /// # Errors
    /// [`WireError::FrameTooLarge`] once the prefix declares more than the limit; the stream
    /// is unusable afterwards.
    pub fn poll_frame(&mut self) -> Result<Option<Bytes>, WireError> {
        if let Some(frame) = self.ready.pop_front() {
            return Ok(Some(frame));
        }
        if let Some(len) = self.oversized {
            return Err(WireError::FrameTooLarge {
                len,
                max: self.max_frame_bytes,
            });
        }
        let len = match self.expected {
            Some(len) => len,
            None => {
                if self.buf.len() < FRAME_PREFIX_LEN {
                    return Ok(None);
                }
                let len = self.buf.get_u32() as usize;
                if len > self.max_frame_bytes {
                    return Err(WireError::FrameTooLarge {
                        len,
                        max: self.max_frame_bytes,
                    });
                }
                self.expected = Some(len);
                len
            }
        };
        if self.buf.len() < len {
            return Ok(None);
        }
        self.expected = None;
        Ok(Some(self.buf.split_to(len).freeze()))
    }

    /// Bytes buffered for the frame in progress (prefix included while it is incomplete).
    pub fn buffered_bytes(&self) -> usize {
        self.buf.len()
    }

    /// Whether a frame is partially received.
    pub fn is_mid_frame(&self) -> bool {
        // (Frames in `ready` are complete; they do not count.)
        self.expected.is_some() || !self.buf.is_empty()
    }
}

/// Number of channel ids: the datagram header's channel field is 5 bits.
pub const MAX_CHANNELS: usize = 32;

/// Kind of a datagram: the top 3 bits of its first byte (`PROTOCOL.md` §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum DatagramKind {
    /// A heartbeat ping; payload is a postcard [`Ping`].
    Ping = 0,
    /// A heartbeat pong; payload is a postcard [`Pong`].
    Pong = 1,
    /// A whole unreliable message.
    Unreliable = 2,
    /// A whole sequenced message, preceded by a 2-byte big-endian sequence number.
    Sequenced = 3,
    /// A fragment of an unreliable message.
    Fragment = 4,
    /// A fragment of a sequenced message (message id = sequence number).
    SequencedFragment = 5,
    /// Several datagrams of kinds 0–5, each behind its varint length (`PROTOCOL.md` §5.7);
    /// only in sessions that negotiated [`capability::BUNDLE`].
    Bundle = 6,
}

/// The type byte of a bundle (kind 6, channel bits 0).
pub const BUNDLE_TYPE_BYTE: u8 = (DatagramKind::Bundle as u8) << 5;

/// Most bytes of a bundle entry's length prefix: a varint `u16` (`PROTOCOL.md` §1.3).
pub const BUNDLE_LENGTH_MAX_LEN: usize = 3;

/// Writes `len` as a minimal varint `u16` (LEB128, `PROTOCOL.md` §1.3) into `out`; returns
/// how many bytes it took (1–3).
pub fn encode_bundle_length(len: u16, out: &mut [u8; BUNDLE_LENGTH_MAX_LEN]) -> usize {
    let mut value = len;
    let mut n = 0;
    loop {
        let low = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out[n] = low;
            return n + 1;
        }
        out[n] = low | 0x80;
        n += 1;
    }
}

/// One entry off the front of `body`: varint length (at most 3 bytes, ≤ `u16::MAX`), then
/// that many bytes, at least 1, not a bundle.
fn take_bundle_entry(body: &[u8]) -> Result<(&[u8], &[u8]), WireError> {
    let mut len: u32 = 0;
    let mut used = 0;
    loop {
        let &byte = body
            .get(used)
            .ok_or(WireError::Malformed("bundle entry length cut short"))?;
        len |= u32::from(byte & 0x7f) << (7 * used);
        used += 1;
        if byte & 0x80 == 0 {
            break;
        }
        if used == BUNDLE_LENGTH_MAX_LEN {
            return Err(WireError::Malformed("bundle entry length longer than 3 bytes"));
        }
    }
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    if len > usize::from(u16::MAX) {
        return Err(WireError::Malformed("bundle entry length overflows u16"));
    }
    let rest = &body[used..];
    if len == 0 || len > rest.len() {
        return Err(WireError::Malformed("bundle entry empty or past the end"));
    }
    let (entry, rest) = rest.split_at(len);
    if entry[0] >> 5 == DatagramKind::Bundle as u8 {
        return Err(WireError::Malformed("bundle inside a bundle"));
    }
    Ok((entry, rest))
}

/// A bundle's body, checked whole (`PROTOCOL.md` §5.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bundle<'a> {
    body: &'a [u8],
}

impl<'a> Bundle<'a> {
    /// Checks `body` (the bytes after the type byte): at least one entry, every length a
    /// varint of at most 3 bytes naming 1 to the remaining bytes, no entry of kind 6.
    ///
    /// # Errors
    /// [`WireError::Malformed`] naming the first fault; the whole datagram is dropped.
    pub fn check(body: &'a [u8]) -> Result<Self, WireError> {
        if body.is_empty() {
            return Err(WireError::Malformed("bundle without entries"));
        }
        let mut rest = body;
        while !rest.is_empty() {
            rest = take_bundle_entry(rest)?.1;
        }
        Ok(Self { body })
    }

    /// The entries, in order; each is a datagram to decode on its own.
    pub fn entries(&self) -> impl Iterator<Item = &'a [u8]> {
        let mut rest = self.body;
        std::iter::from_fn(move || {
            let (entry, tail) = take_bundle_entry(rest).ok()?;
            rest = tail;
            Some(entry)
        })
    }
}

/// Header length of a sequenced datagram: type byte + 16-bit sequence.
pub const SEQUENCED_HEADER_LEN: usize = 3;

/// A decoded datagram, borrowing its payload.
#[derive(Debug, Clone, PartialEq)]
pub enum Datagram<'a> {
    /// Heartbeat ping.
    Ping(Ping),
    /// Heartbeat pong.
    Pong(Pong),
    /// An unreliable message on `channel`.
    Unreliable {
        /// Channel id (0–31).
        channel: u8,
        /// The message.
        payload: &'a [u8],
    },
    /// A sequenced ("latest only") message on `channel`.
    Sequenced {
        /// Channel id (0–31).
        channel: u8,
        /// Sequence number, compared with wrapping arithmetic.
        seq: u16,
        /// The message.
        payload: &'a [u8],
    },
    /// One fragment of a larger message on `channel`.
    Fragment {
        /// Channel id (0–31).
        channel: u8,
        /// Whether the message is sequenced (its `message_id` is then its sequence number).
        sequenced: bool,
        /// Fragment header.
        header: FragmentHeader,
        /// This fragment's bytes.
        chunk: &'a [u8],
    },
    /// Several datagrams in one (`PROTOCOL.md` §5.7), already checked whole.
    Bundle(Bundle<'a>),
}

/// The first byte of a datagram: kind in the top 3 bits, channel in the low 5.
pub fn type_byte(kind: DatagramKind, channel: u8) -> u8 {
    debug_assert!((channel as usize) < MAX_CHANNELS);
    ((kind as u8) << 5) | (channel & 0x1f)
}

impl<'a> Datagram<'a> {
    /// Decodes a datagram.
    ///
    /// # Errors
    /// [`WireError`] for an empty datagram, an unknown type, a short header or a malformed
    /// heartbeat payload. Every such datagram is dropped and counted by the caller.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, WireError> {
        let (&first, rest) = bytes
            .split_first()
            .ok_or(WireError::Malformed("empty datagram"))?;
        let channel = first & 0x1f;
        match first >> 5 {
            0 => Ok(Datagram::Ping(decode(rest)?)),
            1 => Ok(Datagram::Pong(decode(rest)?)),
            2 => Ok(Datagram::Unreliable {
                channel,
                payload: rest,
            }),
            3 => match rest {
                [hi, lo, payload @ ..] => Ok(Datagram::Sequenced {
                    channel,
                    seq: u16::from_be_bytes([*hi, *lo]),
                    payload,
                }),
                _ => Err(WireError::Malformed("short sequenced header")),
            },
            kind @ (4 | 5) => {
                let (header, chunk) = FragmentHeader::decode(rest)?;
                Ok(Datagram::Fragment {
                    channel,
                    sequenced: kind == 5,
                    header,
                    chunk,
                })
            }
            6 => Ok(Datagram::Bundle(Bundle::check(rest)?)),
            other => Err(WireError::UnknownDatagramType(other)),
        }
    }

    /// The channel and payload of an unreliable message (kind 2, `PROTOCOL.md` §5.3); `None`
    /// for any other datagram. The common case, read without the rest of [`Datagram::decode`].
    #[inline]
    pub fn unreliable(bytes: &'a [u8]) -> Option<(u8, &'a [u8])> {
        let (&first, payload) = bytes.split_first()?;
        (first >> 5 == DatagramKind::Unreliable as u8).then_some((first & 0x1f, payload))
    }
}

/// Encodes a heartbeat datagram (`kind` is [`DatagramKind::Ping`] or [`DatagramKind::Pong`]).
pub fn encode_heartbeat<T: Serialize>(kind: DatagramKind, message: &T) -> Bytes {
    let mut out = vec![type_byte(kind, 0)];
    out.extend_from_slice(&encode(message));
    Bytes::from(out)
}

/// Whether sequence `a` is newer than `b` under 16-bit wrapping (RFC 1982 serial arithmetic).
pub fn seq_newer(a: u16, b: u16) -> bool {
    a != b && a.wrapping_sub(b) < 0x8000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unreliable_shortcut_agrees_with_decode_for_every_type_byte() {
        assert_eq!(Datagram::unreliable(&[]), None);
        for first in 0..=u8::MAX {
            for bytes in [vec![first], vec![first, 1, 2, 3]] {
                let full = match Datagram::decode(&bytes) {
                    Ok(Datagram::Unreliable { channel, payload }) => Some((channel, payload)),
                    _ => None,
                };
                assert_eq!(Datagram::unreliable(&bytes), full, "type byte {first:#04x}");
            }
        }
    }

    #[test]
    fn frame_roundtrip_across_arbitrary_splits() {
        let frames: Vec<Vec<u8>> = vec![vec![], vec![1], vec![7; 300], vec![9; 5000]];
        let stream: Vec<u8> = frames.iter().flat_map(|f| encode_frame(f).to_vec()).collect();
        for split in [1, 3, 4, 5, 17, 4096, stream.len()] {
            let mut decoder = FrameDecoder::new(8192);
            let mut out = Vec::new();
            for piece in stream.chunks(split) {
                decoder.push(piece);
                while let Some(frame) = decoder.poll_frame().unwrap() {
                    out.push(frame.to_vec());
                }
            }
            assert_eq!(out, frames, "split {split}");
            assert!(!decoder.is_mid_frame());
        }
    }

    #[test]
    fn oversized_prefix_rejected_before_payload_is_buffered() {
        let mut decoder = FrameDecoder::new(1024);
        let mut oversized = (1025u32).to_be_bytes().to_vec();
        oversized.extend_from_slice(&[0; 900]);
        decoder.push(&oversized);
        assert_eq!(decoder.buffered_bytes(), 0, "payload discarded as it arrives");
        decoder.push(&[0; 500]);
        assert_eq!(
            decoder.poll_frame(),
            Err(WireError::FrameTooLarge { len: 1025, max: 1024 })
        );
        assert_eq!(decoder.buffered_bytes(), 0);
    }

    #[test]
    fn datagram_header_is_one_or_three_bytes_in_steady_state() {
        let payload = [0xAB; 10];
        let mut dgram = vec![type_byte(DatagramKind::Unreliable, 7)];
        dgram.extend_from_slice(&payload);
        assert_eq!(
            Datagram::decode(&dgram).unwrap(),
            Datagram::Unreliable {
                channel: 7,
                payload: &payload
            }
        );
        let mut seq = vec![type_byte(DatagramKind::Sequenced, 31), 0x12, 0x34];
        seq.extend_from_slice(&payload);
        assert_eq!(seq.len() - payload.len(), SEQUENCED_HEADER_LEN);
        assert_eq!(
            Datagram::decode(&seq).unwrap(),
            Datagram::Sequenced {
                channel: 31,
                seq: 0x1234,
                payload: &payload
            }
        );
    }

    #[test]
    fn bundle_entries_roundtrip_and_match_the_worked_example() {
        let mut length = [0; BUNDLE_LENGTH_MAX_LEN];
        for (len, bytes) in [
            (0, &[0][..]),
            (127, &[0x7f]),
            (128, &[0x80, 0x01]),
            (u16::MAX, &[0xff, 0xff, 0x03]),
        ] {
            let used = encode_bundle_length(len, &mut length);
            assert_eq!(&length[..used], bytes, "{len}");
        }
        // Unreliable channel 1 "hi", then Sequenced channel 3 seq 0x1234 "yo" (§5.7).
        let bundle = [0xc0, 0x03, 0x41, 0x68, 0x69, 0x05, 0x63, 0x12, 0x34, 0x79, 0x6f];
        let Ok(Datagram::Bundle(decoded)) = Datagram::decode(&bundle) else {
            panic!("a bundle decodes");
        };
        let entries: Vec<_> = decoded.entries().map(|e| Datagram::decode(e).unwrap()).collect();
        assert_eq!(
            entries,
            [
                Datagram::Unreliable {
                    channel: 1,
                    payload: b"hi"
                },
                Datagram::Sequenced {
                    channel: 3,
                    seq: 0x1234,
                    payload: b"yo"
                },
            ]
        );
        // A 200-byte entry needs a 2-byte length; an overlong 3-byte length still reads.
        let mut long = vec![0xc0, 0xc8, 0x01, 0x40];
        long.extend_from_slice(&[7; 199]);
        assert_eq!(
            Datagram::decode(&long).map(|d| matches!(d, Datagram::Bundle(_))),
            Ok(true)
        );
        assert!(Datagram::decode(&[0xc0, 0x81, 0x80, 0x00, 0x40]).is_ok());
    }

    #[test]
    fn malformed_bundles_are_refused_whole() {
        for bad in [
            &[0xc0][..],                           // no entry
            &[0xc0, 0x00],                         // empty entry
            &[0xc0, 0x03, 0x40, 0x01],             // entry past the end
            &[0xc0, 0x01, 0x40, 0x80],             // second length cut short
            &[0xc0, 0x80, 0x80, 0x80, 0x01, 0x40], // length longer than 3 bytes
            &[0xc0, 0xff, 0xff, 0x7f, 0x40],       // length over u16::MAX
            &[0xc0, 0x02, 0xc0, 0x00],             // bundle in a bundle
        ] {
            assert!(
                matches!(Datagram::decode(bad), Err(WireError::Malformed(_))),
                "{bad:02x?}"
            );
        }
    }

    #[test]
    fn bad_datagrams_are_errors_not_panics() {
        assert!(Datagram::decode(&[]).is_err());
        assert_eq!(Datagram::decode(&[0xE0]), Err(WireError::UnknownDatagramType(7)));
        assert!(Datagram::decode(&[BUNDLE_TYPE_BYTE]).is_err());
        assert!(Datagram::decode(&[type_byte(DatagramKind::Sequenced, 0), 1]).is_err());
        assert!(Datagram::decode(&[type_byte(DatagramKind::Fragment, 0), 0, 1]).is_err());
        assert!(Datagram::decode(&[type_byte(DatagramKind::Ping, 0), 0xff]).is_err());
    }

    #[test]
    fn heartbeat_roundtrip() {
        let ping = Ping {
            seq: 5,
            tick: 99,
            ts_us: 1_000_000,
        };
        let bytes = encode_heartbeat(DatagramKind::Ping, &ping);
        assert_eq!(Datagram::decode(&bytes).unwrap(), Datagram::Ping(ping));
    }

    #[test]
    fn close_info_truncates_detail_on_char_boundary() {
        let info = CloseInfo {
            retry_after_ms: Some(1500),
            detail: "é".repeat(150),
        };
        let decoded = CloseInfo::decode(&info.encode());
        assert_eq!(decoded.retry_after_ms, Some(1500));
        assert!(decoded.detail.len() <= MAX_CLOSE_DETAIL_BYTES);
        assert!(decoded.detail.chars().all(|c| c == 'é'));
        assert_eq!(CloseInfo::decode(&[0xff, 0xff]).detail, "");
    }

    #[test]
    fn signature_encodes_as_64_raw_bytes() {
        let sig = Signature([7; 64]);
        let bytes = encode(&sig);
        assert_eq!(bytes, vec![7; 64]);
        assert_eq!(decode::<Signature>(&bytes).unwrap(), sig);
    }

    #[test]
    fn sequence_comparison_wraps() {
        assert!(seq_newer(1, 0));
        assert!(seq_newer(0, 65535));
        assert!(!seq_newer(65535, 0));
        assert!(!seq_newer(5, 5));
    }

    #[test]
    fn reason_codes_have_names_and_unknown_codes_survive() {
        assert_eq!(format!("{:?}", ReasonCode::SERVER_FULL), "SERVER_FULL");
        assert_eq!(format!("{:?}", ReasonCode(999)), "ReasonCode(999)");
        assert!(ReasonCode::ALL.windows(2).all(|w| w[0].0 + 1 == w[1].0));
    }
}
