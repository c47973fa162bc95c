//! Types the endpoint and its connections share: handles, events and per-call errors.
//!
//! A leaf: it names no endpoint or connection internals, so both can use it without importing
//! each other.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;

use crate::channel::ChannelId;
use crate::handshake::Session;
use crate::wire::ReasonCode;

/// Identifies one connection of an [`Endpoint`](crate::Endpoint). Stale handles are harmless: lookups return
/// `None` or [`SendError::UnknownConnection`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnHandle(pub(crate) usize);

impl ConnHandle {
    /// The numeric index, for logs and maps.
    pub fn index(self) -> usize {
        self.0
    }
}

/// Who ended a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Initiator {
    /// This endpoint (application command, local timeout, or local verification failure).
    Local,
    /// The peer, or the network (the QUIC connection failed).
    Peer,
}

/// Something that happened; drained with [`Endpoint::poll_event`](crate::Endpoint::poll_event).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// The handshake completed; the session may send and receive.
    Connected {
        /// The connection.
        conn: ConnHandle,
        /// What was agreed (boxed: it is large, and every event is as large as its largest
        /// variant).
        session: Box<Session>,
    },
    /// The handshake failed: the client's view of a server rejection, the server's view of a
    /// client it refused, or a local failure (timeout, bad signature). Never a bare timeout.
    Rejected {
        /// The connection (now closed).
        conn: ConnHandle,
        /// Why.
        reason: ReasonCode,
        /// When trying again makes sense, if the rejecting side said so.
        retry_after: Option<Duration>,
        /// Log detail from the rejecting side.
        detail: String,
        /// Which side refused.
        initiator: Initiator,
    },
    /// An established session ended.
    Disconnected {
        /// The connection (now closed).
        conn: ConnHandle,
        /// Why.
        reason: ReasonCode,
        /// When reconnecting makes sense, if the closing side said so (e.g. a shutdown's
        /// advice).
        retry_after: Option<Duration>,
        /// Log detail from the closing side.
        detail: String,
        /// Which side ended it.
        initiator: Initiator,
    },
    /// A message arrived on `channel`.
    Message {
        /// The connection.
        conn: ConnHandle,
        /// The channel it arrived on.
        channel: ChannelId,
        /// The message, whole (reassembled if it was fragmented).
        payload: Bytes,
    },
    /// *Server*: messages from `conn` on `channel` were refused (not delivered) for `reason`
    /// (`PROTOCOL.md` §7.1). Reported at most once per connection, channel and cause per
    /// server tick (the scheduler's current tick, which advances as the application drains
    /// [`Endpoint::poll_tick`](crate::Endpoint::poll_tick)), however many were refused; every
    /// one is counted in
    /// [`ConnectionStats::refusals`](crate::ConnectionStats). Too many refused for want of
    /// permission close the session with `PERMISSION_DENIED` (`max_permission_violations`).
    MessageRefused {
        /// The connection.
        conn: ConnHandle,
        /// The channel the messages arrived on.
        channel: ChannelId,
        /// Why they were refused.
        reason: RefusalCause,
    },
}

/// Why a server refused a received message ([`Event::MessageRefused`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[non_exhaustive]
pub enum RefusalCause {
    /// The session's role is not among the channel's senders, or its ticket lacks a
    /// permission bit the channel requires.
    NotPermitted,
    /// The channel's own rate limit was exceeded (its breach policy is `drop`).
    RateLimited,
}

/// Errors of [`Endpoint::send`](crate::Endpoint::send).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The handle names no connection; drop it.
    #[error("unknown connection")]
    UnknownConnection,
    /// The session is not established (still handshaking, or closed); wait for
    /// [`Event::Connected`] or drop the handle.
    #[error("session not established")]
    NotConnected,
    /// The channel id is not in the channel table.
    #[error("unknown channel {0:?}")]
    UnknownChannel(ChannelId),
    /// The message exceeds the channel's limit; split it at the application level.
    #[error("message of {size} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// Message size.
        size: usize,
        /// Limit.
        max: usize,
    },
    /// Reliable send queue full (the peer is not reading); retry later or disconnect it.
    #[error("send queue full")]
    QueueFull,
    /// The peer did not enable QUIC datagrams (RFC 9221); use a reliable channel.
    #[error("peer does not support datagrams")]
    DatagramsUnsupported,
    /// This session may not send on the channel: its role is not among the channel's
    /// `senders`, or its ticket lacks a permission bit they require (`PROTOCOL.md` §7.1).
    /// The server would refuse the message; use another channel or join with another role.
    #[error("not permitted to send on channel {0:?}")]
    NotPermitted(ChannelId),
}

/// Errors of [`Endpoint::connect`](crate::Endpoint::connect).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The remote address cannot be connected to (port 0, an unspecified or an IPv4/IPv6
    /// mismatched address).
    #[error("invalid remote address {0}")]
    InvalidRemoteAddress(SocketAddr),
    /// The endpoint ran out of connection ids: too many connections are open.
    #[error("too many connections (connection ids exhausted)")]
    TooManyConnections,
    /// The QUIC layer refused for another reason (its message).
    #[error("QUIC connect failed: {0}")]
    Transport(String),
}

impl ConnectError {
    /// Our error for quinn-proto's (kept out of the public API, so a quinn-proto upgrade does
    /// not change it).
    pub(crate) fn from_quic(error: quinn_proto::ConnectError) -> Self {
        match error {
            quinn_proto::ConnectError::InvalidRemoteAddress(addr) => Self::InvalidRemoteAddress(addr),
            quinn_proto::ConnectError::CidsExhausted => Self::TooManyConnections,
            other => Self::Transport(other.to_string()),
        }
    }
}

/// An explicit congestion notification codepoint (RFC 3168 §5) of a UDP datagram: read from
/// the socket on receive (where the platform reports it), set on send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ecn {
    /// ECN-capable transport, codepoint ECT(0).
    Ect0,
    /// ECN-capable transport, codepoint ECT(1).
    Ect1,
    /// Congestion experienced (CE).
    Ce,
}

impl Ecn {
    /// The codepoint of the two ECN bits of an IP TOS / traffic-class byte, if any (`0b00` is
    /// "not ECN-capable").
    pub fn from_bits(bits: u8) -> Option<Self> {
        match bits & 0b11 {
            0b10 => Some(Self::Ect0),
            0b01 => Some(Self::Ect1),
            0b11 => Some(Self::Ce),
            _ => None,
        }
    }

    /// The two ECN bits of this codepoint.
    pub fn bits(self) -> u8 {
        match self {
            Self::Ect0 => 0b10,
            Self::Ect1 => 0b01,
            Self::Ce => 0b11,
        }
    }

    pub(crate) fn to_quic(self) -> quinn_proto::EcnCodepoint {
        match self {
            Self::Ect0 => quinn_proto::EcnCodepoint::Ect0,
            Self::Ect1 => quinn_proto::EcnCodepoint::Ect1,
            Self::Ce => quinn_proto::EcnCodepoint::Ce,
        }
    }

    fn from_quic(ecn: quinn_proto::EcnCodepoint) -> Self {
        match ecn {
            quinn_proto::EcnCodepoint::Ect0 => Self::Ect0,
            quinn_proto::EcnCodepoint::Ect1 => Self::Ect1,
            quinn_proto::EcnCodepoint::Ce => Self::Ce,
        }
    }
}

/// One UDP datagram (or, with `segment_size`, a batch of equal-sized ones for GSO) to send,
/// from [`Endpoint::poll_transmit`](crate::Endpoint::poll_transmit): the bytes are the first
/// `size` bytes of the buffer it filled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Transmit {
    /// Where to send it.
    pub destination: SocketAddr,
    /// The ECN codepoint to mark it with, if any.
    pub ecn: Option<Ecn>,
    /// Bytes of the buffer to send.
    pub size: usize,
    /// With GSO: the size of each datagram in the batch (the last may be shorter); `None` = one
    /// datagram.
    pub segment_size: Option<usize>,
    /// The local IP address to send from, if it matters (a multi-homed server answering on
    /// the address it was reached at).
    pub src_ip: Option<IpAddr>,
}

impl Transmit {
    pub(crate) fn from_quic(transmit: &quinn_proto::Transmit) -> Self {
        Self {
            destination: transmit.destination,
            ecn: transmit.ecn.map(Ecn::from_quic),
            size: transmit.size,
            segment_size: transmit.segment_size,
            src_ip: transmit.src_ip,
        }
    }
}
