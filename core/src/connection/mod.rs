//! One peer's tickwire session on top of one quinn-proto connection.
//!
//! A [`Conn`] is driven by the [`crate::Endpoint`]: inputs go to its `quic` connection, then
//! [`Conn::process`] turns QUIC events into handshake steps, heartbeats and delivered
//! messages, pushing tickwire [`Event`]s into the endpoint's queue. Sub-machines (heartbeat,
//! reassembly, tick sync, rate limits) are owned here and report their deadlines through
//! [`Conn::poll_timeout`].

mod control;
mod datagrams;
mod policy;
mod streams;
mod webtransport;

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use ed25519_dalek::SigningKey;
use quinn_proto::{StreamEvent, StreamId, VarInt};

use crate::channel::{ChannelId, ChannelKind, SendOptions};
use crate::compress::Codec;
use crate::config::Config;
use crate::fragment::Reassembler;
use crate::handshake::{AwaitingAccept, AwaitingHello, ClientHandshake, Rejection, Session};
use crate::heartbeat::Heartbeat;
use crate::limits::PeerLimiter;
use crate::shared::{ConnHandle, Event, Initiator, SendError};
use crate::stats::ConnectionStats;
use crate::tick::TickSync;
use crate::ticket::TicketVerifier;
use crate::wire::{
    self, capability, CloseInfo, FrameDecoder, ReasonCode, MAX_CHANNELS, MAX_CONTROL_FRAME_BYTES,
};

use datagrams::QueuedDatagram;
use policy::Policy;
use streams::{QueuedFrame, RxStream, TxChannel};
pub(crate) use webtransport::Carrier;

/// Where the session is. Handshake states hold their typestate value; the client's, a key and
/// an offer of a few hundred bytes, are boxed so that an established connection's state is a
/// small tag beside the fields each message reads.
#[derive(Debug)]
pub(crate) enum State {
    /// Client: QUIC/TLS in progress.
    ClientConnecting(Box<ClientHandshake>),
    /// Client: hello sent.
    ClientAwaitingAccept(Box<AwaitingAccept>),
    /// Server: QUIC/TLS in progress; a rejection may already be decided (sent once 1-RTT keys
    /// exist, because an application close in Initial packets loses its code, RFC 9000 §10.2.3).
    ServerConnecting(Option<Rejection>),
    /// Server: waiting for the hello.
    ServerAwaitingHello(AwaitingHello),
    /// A handshake message is being checked (its typestate value has been taken out).
    Verifying,
    /// Handshake done.
    Established,
    /// Closed by tickwire (event already reported); waiting for QUIC to drain.
    Closed,
}

/// Where a connection writes outgoing bytes: chunks of `Config::transmit_chunk_bytes`.
#[derive(Debug)]
struct Arena {
    buf: BytesMut,
    /// Size of a new chunk.
    chunk: usize,
}

impl Arena {
    fn new(config: &Config) -> Self {
        Self {
            buf: BytesMut::new(),
            chunk: config.transmit_chunk_bytes,
        }
    }

    /// `head` followed by `body` as one `Bytes`, written behind the previous one and split
    /// off, so that small datagrams and frame prefixes share one allocation; a chunk is freed
    /// once every `Bytes` cut from it is. The arena holds at most one partly used chunk (of
    /// the chunk size, or the size of its largest datagram).
    fn pack(&mut self, head: &[u8], body: &[u8]) -> Bytes {
        self.pack3(&[], head, body)
    }

    /// [`Arena::pack`] behind a `prefix` (a WebTransport session's stream or datagram prefix,
    /// empty on a native session).
    fn pack3(&mut self, prefix: &[u8], head: &[u8], body: &[u8]) -> Bytes {
        let len = prefix.len() + head.len() + body.len();
        reserve_chunk(&mut self.buf, len, self.chunk);
        put_prefix(&mut self.buf, prefix);
        self.buf.extend_from_slice(head);
        self.buf.extend_from_slice(body);
        self.buf.split().freeze()
    }
}

/// Makes room for `len` more bytes in `buf`: takes its chunk back when every `Bytes` cut from
/// it is gone, else allocates a new one of `chunk` bytes (or `len`, if larger).
fn reserve_chunk(buf: &mut BytesMut, len: usize, chunk: usize) {
    if buf.capacity() - buf.len() < len {
        buf.reserve(len.max(chunk));
    }
}

/// Appends a session's stream or datagram `prefix` to `buf`. A native session's prefix is
/// empty, and the check spares the call into `memcpy` that copying it would still make.
fn put_prefix(buf: &mut BytesMut, prefix: &[u8]) {
    if !prefix.is_empty() {
        buf.extend_from_slice(prefix);
    }
}

/// Per-connection state; see the module docs.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) quic: quinn_proto::Connection,
    pub(crate) state: State,
    pub(crate) session: Option<Session>,
    handshake_deadline: Option<Instant>,
    control: Option<StreamId>,
    control_rx: FrameDecoder,
    control_tx: VecDeque<QueuedFrame>,
    rx_streams: BTreeMap<StreamId, RxStream>,
    tx_channels: BTreeMap<ChannelId, TxChannel>,
    queued_reliable_bytes: usize,
    /// Whether a channel's open buffer holds frames (see [`TxChannel`]).
    frames_open: bool,
    datagrams: VecDeque<QueuedDatagram>,
    heartbeat: Heartbeat,
    /// Whether the application sent a message since the last transmit: a due ping and a held
    /// pong ride with it (see [`Conn::send_heartbeat`]).
    carrying: bool,
    reassembler: Reassembler,
    tick_sync: Option<TickSync>,
    limiter: Option<PeerLimiter>,
    /// Server: the channel table's receive rules (senders, per-channel rate limits).
    policy: Option<Policy>,
    tx_seq: [u16; MAX_CHANNELS],
    rx_seq: [Option<u16>; MAX_CHANNELS],
    next_fragment_id: u16,
    /// Room for outgoing headers and datagrams (see [`Arena::pack`]).
    tx_arena: Arena,
    /// The open datagram bundle (`PROTOCOL.md` §5.7): datagram prefix ‖ type byte ‖ entries;
    /// empty when none is open. Closed before every transmit.
    bundle: BytesMut,
    /// Entries in the open bundle.
    bundle_entries: usize,
    /// Where the open bundle's first entry starts (a bundle of one goes out as that entry).
    bundle_first: usize,
    /// QUIC's datagram limit (less the prefix) when the open bundle was opened.
    bundle_max: usize,
    /// QUIC's count of liveness frames received (see [`Conn::read_liveness`]) at the last read.
    last_frames_rx: u64,
    /// When QUIC's frame counters were last read.
    liveness_read_at: Instant,
    /// When the last datagram for this connection arrived, authenticated or not.
    last_datagram_at: Instant,
    pub(crate) stats: Box<ConnectionStats>,
    /// Server: when the TLS handshake completed and the wait for the Hello began.
    hello_wait_since: Option<Instant>,
    /// WebTransport connections: the HTTP/3 session carrying this one (`PROTOCOL.md` §12).
    wt: Option<Box<Carrier>>,
    /// What begins each channel stream before its channel byte, and each datagram: empty on
    /// a native session, the WebTransport session's prefixes once it is live.
    stream_prefix: heapless::Vec<u8, 16>,
    dgram_prefix: heapless::Vec<u8, 8>,
}

/// What [`Conn::process`] needs from the endpoint.
pub(crate) struct Ctx<'a> {
    pub now: Instant,
    pub handle: ConnHandle,
    pub config: &'a Config,
    pub events: &'a mut VecDeque<Event>,
    pub nonce: &'a mut dyn FnMut() -> [u8; wire::NONCE_LEN],
    /// The server's current tick (clients use their tick-sync estimate).
    pub server_tick: u64,
    /// The endpoint's wall clock at `now`, Unix epoch milliseconds (a client checks the
    /// server's play ticket against it when the Accept arrives).
    pub unix_ms: u64,
    /// Server connections: what answering a Hello takes.
    pub server: Option<ServerCtx<'a>>,
    /// The endpoint's zstd contexts.
    pub codec: &'a mut Codec,
    /// Session events ([`Event::Connected`], [`Event::Rejected`], [`Event::Disconnected`])
    /// pushed to `events`, for the endpoint's counters: messages, the usual events, need no
    /// counting.
    pub session_events: usize,
}

/// What a server connection needs from its endpoint to answer a Hello (`PROTOCOL.md` §4.4.1).
pub(crate) struct ServerCtx<'a> {
    /// The server's identity key, which signs the Accept.
    pub identity: &'a SigningKey,
    /// The play ticket presented in accepts, if any.
    pub play_ticket: Option<&'a [u8]>,
    /// WebTransport sessions' CONNECT rules, when the server accepts them.
    pub webtransport: Option<&'a crate::webtransport::WebTransportConfig>,
    /// The certificate WebTransport connections are presented (`PROTOCOL.md` §12.5).
    pub webtransport_certs: Option<&'a crate::tls::CertResolver>,
    /// Join-ticket verification: issuer keys, revocations, replay cache.
    pub tickets: &'a mut TicketVerifier,
}

impl Conn {
    /// A client connection about to run `handshake`.
    pub(crate) fn client(
        quic: quinn_proto::Connection,
        now: Instant,
        config: &Config,
        handshake: ClientHandshake,
    ) -> Self {
        let mut conn = Self::new(quic, now, config, State::ClientConnecting(Box::new(handshake)));
        conn.tick_sync = Some(TickSync::new(config.tick_sync.clone()));
        conn
    }

    /// A client connection that runs `handshake` inside a WebTransport session opened by
    /// `request` (`PROTOCOL.md` §12).
    pub(crate) fn client_webtransport(
        quic: quinn_proto::Connection,
        now: Instant,
        config: &Config,
        handshake: ClientHandshake,
        request: crate::webtransport::connect::ConnectRequest,
    ) -> Self {
        let mut conn = Self::client(quic, now, config, handshake);
        conn.wt = Some(Box::new(Carrier::client(request)));
        conn
    }

    /// A server connection; `rejection` if the accept policy already refused it.
    pub(crate) fn server(
        quic: quinn_proto::Connection,
        now: Instant,
        config: &Config,
        rejection: Option<Rejection>,
    ) -> Self {
        let mut conn = Self::new(quic, now, config, State::ServerConnecting(rejection));
        conn.limiter = Some(PeerLimiter::new(&config.limits, now));
        conn.policy = Some(Policy::new(config, now));
        conn
    }

    fn new(quic: quinn_proto::Connection, now: Instant, config: &Config, state: State) -> Self {
        Self {
            quic,
            state,
            session: None,
            handshake_deadline: Some(now + Duration::from_millis(config.handshake_timeout_ms)),
            control: None,
            control_rx: FrameDecoder::new(MAX_CONTROL_FRAME_BYTES),
            control_tx: VecDeque::new(),
            rx_streams: BTreeMap::new(),
            tx_channels: BTreeMap::new(),
            queued_reliable_bytes: 0,
            frames_open: false,
            datagrams: VecDeque::new(),
            heartbeat: Heartbeat::new(now, config.heartbeat.clone())
                .with_grace(Duration::from_millis(config.heartbeat.interval_ms) / 4),
            carrying: false,
            reassembler: Reassembler::new(config.fragment.clone()),
            tick_sync: None,
            limiter: None,
            policy: None,
            tx_seq: [0; MAX_CHANNELS],
            rx_seq: [None; MAX_CHANNELS],
            next_fragment_id: 0,
            tx_arena: Arena::new(config),
            bundle: BytesMut::new(),
            bundle_entries: 0,
            bundle_first: 0,
            bundle_max: 0,
            last_frames_rx: 0,
            liveness_read_at: now,
            last_datagram_at: now,
            stats: Box::default(),
            hello_wait_since: None,
            wt: None,
            stream_prefix: heapless::Vec::new(),
            dgram_prefix: heapless::Vec::new(),
        }
    }

    /// Whether the peer opened this connection (server side). Only inbound connections have
    /// a per-peer rate limiter.
    pub(crate) fn is_inbound(&self) -> bool {
        self.limiter.is_some()
    }

    pub(crate) fn is_established(&self) -> bool {
        matches!(self.state, State::Established)
    }

    pub(crate) fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    pub(crate) fn is_handshaking(&self) -> bool {
        !matches!(self.state, State::Established | State::Closed)
    }

    /// Server: when the wait for the Hello began, while it lasts.
    pub(crate) fn awaiting_hello_since(&self) -> Option<Instant> {
        match self.state {
            State::ServerAwaitingHello(_) => self.hello_wait_since,
            _ => None,
        }
    }

    pub(crate) fn tick_sync(&self) -> Option<&TickSync> {
        self.tick_sync.as_ref()
    }

    pub(crate) fn tick_sync_mut(&mut self) -> Option<&mut TickSync> {
        self.tick_sync.as_mut()
    }

    /// The earliest deadline of this connection and its sub-machines.
    pub(crate) fn poll_timeout(&mut self) -> Option<Instant> {
        let mut deadline = self.quic.poll_timeout();
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                deadline = Some(deadline.map_or(t, |d| d.min(t)));
            }
        };
        match self.state {
            State::Established => {
                consider(self.heartbeat.poll_timeout());
                consider(self.reassembler.poll_timeout());
                consider(self.next_stall());
            }
            State::Closed => consider(self.wt.as_ref().and_then(|wt| wt.linger_deadline())),
            _ => consider(self.handshake_deadline),
        }
        deadline
    }

    /// Credits the heartbeat with a receipt at `at` if QUIC counted frames from authenticated
    /// packets since the last read. Liveness counts only those, so datagrams spoofed with a
    /// known connection id cannot hold off the heartbeat timeout.
    ///
    /// Reading QUIC's counters copies its whole statistics block, so a datagram triggers a
    /// read only once the last read is a heartbeat grace old; the failure check reads again,
    /// crediting the last datagram's arrival. Honest traffic is thus credited exactly, and
    /// spoofed datagrams interleaved with the peer's last packets can delay the verdict by
    /// less than the grace, never bring it forward.
    fn read_liveness(&mut self, now: Instant, at: Instant) {
        self.liveness_read_at = now;
        let rx = self.quic.stats().frame_rx;
        let frames =
            rx.acks + rx.stream + rx.datagram + rx.ping + rx.crypto + rx.max_data + rx.max_stream_data;
        if frames != self.last_frames_rx {
            self.last_frames_rx = frames;
            self.heartbeat.handle_receive(at);
        }
    }

    /// Timer work: QUIC timers, handshake deadline, heartbeat pings and failure, reassembly
    /// expiry. A spurious call is harmless.
    pub(crate) fn handle_timeout(&mut self, ctx: &mut Ctx<'_>) {
        let now = ctx.now;
        self.quic.handle_timeout(now);
        match self.state {
            State::Closed => self.linger(now, None),
            State::Established => {
                self.reassembler.handle_timeout(now);
                if now >= self.heartbeat.failure_deadline() && self.last_datagram_at >= self.liveness_read_at
                {
                    self.read_liveness(now, self.last_datagram_at);
                }
                if let Some(failure) = self.heartbeat.handle_timeout(now) {
                    let detail = format!(
                        "no packets from peer for {} ms (timeout {} ms)",
                        failure.idle.as_millis(),
                        failure.timeout.as_millis()
                    );
                    self.close(ctx, Rejection::new(ReasonCode::HEARTBEAT_TIMEOUT, detail));
                    return;
                }
                if self.next_stall().is_some_and(|d| now >= d) {
                    self.close_stalled(ctx);
                    return;
                }
                self.send_heartbeat(now, self.local_tick(ctx.server_tick), false);
            }
            _ => {
                if self.handshake_deadline.is_some_and(|d| now >= d) {
                    let detail = if matches!(self.state, State::ServerAwaitingHello(_)) {
                        "no Hello after the TLS handshake"
                    } else {
                        "handshake did not finish in time"
                    };
                    self.close(ctx, Rejection::new(ReasonCode::HANDSHAKE_TIMEOUT, detail));
                }
            }
        }
    }

    /// The tick stamped on our pings and pongs: the server's last delivered tick, or the
    /// client's last delivered local tick (0 before the first).
    fn local_tick(&self, server_tick: u64) -> u64 {
        match &self.tick_sync {
            Some(sync) => sync.last_tick().unwrap_or(0),
            None => server_tick,
        }
    }

    /// Drains QUIC events into tickwire state and events. Call after every input;
    /// `received` = the input was a datagram for this connection.
    pub(crate) fn process(&mut self, ctx: &mut Ctx<'_>, received: bool) {
        if received {
            self.last_datagram_at = ctx.now;
            if ctx.now >= self.liveness_read_at + self.heartbeat.grace() {
                self.read_liveness(ctx.now, ctx.now);
            }
        }
        while let Some(event) = self.quic.poll() {
            match event {
                quinn_proto::Event::Connected => self.handle_quic_connected(ctx),
                quinn_proto::Event::ConnectionLost { reason } => self.handle_quic_lost(ctx, reason),
                quinn_proto::Event::Stream(StreamEvent::Opened { dir }) => {
                    if self.wt.is_some() {
                        self.wt_accept_streams(ctx, dir);
                    } else {
                        self.accept_streams(ctx, dir);
                    }
                }
                quinn_proto::Event::Stream(StreamEvent::Readable { id }) => {
                    if Some(id) == self.control {
                        self.read_control(ctx);
                    } else if !self.wt_readable(ctx, id) {
                        self.read_stream(ctx, id);
                    }
                }
                quinn_proto::Event::DatagramReceived => self.read_datagrams(ctx),
                quinn_proto::Event::Stream(
                    StreamEvent::Finished { id } | StreamEvent::Stopped { id, .. },
                ) => {
                    self.rx_streams.remove(&id);
                }
                _ => {}
            }
            if matches!(self.state, State::Closed) {
                // Drain remaining events without acting on them (but a lingering WebTransport
                // close watches for the peer's end of the CONNECT stream).
                while let Some(event) = self.quic.poll() {
                    self.linger(ctx.now, Some(&event));
                }
                break;
            }
        }
        if !matches!(self.state, State::Closed) {
            self.flush(ctx.now);
        }
    }

    fn handle_quic_lost(&mut self, ctx: &mut Ctx<'_>, error: quinn_proto::ConnectionError) {
        use quinn_proto::ConnectionError as E;
        if matches!(self.state, State::Closed) {
            return;
        }
        let (reason, info) = match error {
            // HTTP/3 error codes, not reason codes: a WebTransport session's reason travels in
            // its close capsule (`PROTOCOL.md` §12.6), so this close carries none.
            E::ApplicationClosed(close) if self.wt.is_some() => (
                ReasonCode::TRANSPORT_ERROR,
                CloseInfo {
                    retry_after_ms: None,
                    detail: format!(
                        "HTTP/3 connection closed with code {:#x}",
                        close.error_code.into_inner()
                    ),
                },
            ),
            E::ApplicationClosed(close) => {
                let code = u16::try_from(close.error_code.into_inner()).unwrap_or(u16::MAX);
                (ReasonCode(code), CloseInfo::decode(&close.reason))
            }
            E::ConnectionClosed(close)
                if close.error_code == quinn_proto::TransportErrorCode::CONNECTION_REFUSED =>
            {
                (
                    ReasonCode::SERVER_BUSY,
                    CloseInfo {
                        retry_after_ms: None,
                        detail: "connection refused".into(),
                    },
                )
            }
            E::TimedOut if self.is_handshaking() => (
                ReasonCode::HANDSHAKE_TIMEOUT,
                CloseInfo {
                    retry_after_ms: None,
                    detail: "QUIC handshake timed out".into(),
                },
            ),
            other => (
                ReasonCode::TRANSPORT_ERROR,
                CloseInfo {
                    retry_after_ms: None,
                    detail: other.to_string(),
                },
            ),
        };
        self.report_closed(ctx, reason, info.retry_after_ms, info.detail, Initiator::Peer);
    }

    fn report_closed(
        &mut self,
        ctx: &mut Ctx<'_>,
        reason: ReasonCode,
        retry_after_ms: Option<u32>,
        detail: String,
        initiator: Initiator,
    ) {
        let conn = ctx.handle;
        let retry_after = retry_after_ms.map(|ms| Duration::from_millis(ms.into()));
        let event = if self.is_established() {
            Event::Disconnected {
                conn,
                reason,
                retry_after,
                detail,
                initiator,
            }
        } else {
            Event::Rejected {
                conn,
                reason,
                retry_after,
                detail,
                initiator,
            }
        };
        self.state = State::Closed;
        self.datagrams.clear();
        self.bundle.clear();
        self.bundle_entries = 0;
        self.tx_channels.clear();
        self.frames_open = false;
        self.rx_streams.clear();
        self.queued_reliable_bytes = 0;
        ctx.events.push_back(event);
        ctx.session_events += 1;
    }

    /// Closes the session with `rejection` as the reason the peer sees, and reports it.
    ///
    /// A server whose TLS handshake is still running holds the rejection until the handshake
    /// completes (at the latest until the handshake deadline): an application close sent
    /// before the client has 1-RTT keys reaches it without its code (RFC 9000 §10.2.3).
    pub(crate) fn close(&mut self, ctx: &mut Ctx<'_>, rejection: Rejection) {
        let in_time = self.handshake_deadline.is_some_and(|d| ctx.now < d);
        match &mut self.state {
            State::ServerConnecting(pending) if in_time => *pending = Some(rejection),
            _ => self.close_now(ctx, rejection),
        }
    }

    fn close_now(&mut self, ctx: &mut Ctx<'_>, rejection: Rejection) {
        if matches!(self.state, State::Closed) {
            return;
        }
        let info = CloseInfo {
            retry_after_ms: rejection.retry_after_ms,
            detail: rejection.detail.clone(),
        };
        if !self.close_webtransport(ctx.now, rejection.reason, &info) {
            self.quic
                .close(ctx.now, VarInt::from(rejection.reason.0), info.encode());
        }
        self.report_closed(
            ctx,
            rejection.reason,
            rejection.retry_after_ms,
            rejection.detail,
            Initiator::Local,
        );
    }

    /// Rate limit for incoming messages (server side only).
    fn admit(&mut self, now: Instant, bytes: usize) -> bool {
        match &mut self.limiter {
            Some(limiter) => limiter.check(now, bytes).is_ok(),
            None => true,
        }
    }

    /// Hands a received message to the application, decompressing it first on a compressed
    /// channel (`PROTOCOL.md` §7.3), once the channel table's senders and rate limit admitted it
    /// (§7.1). Returns false when the session was closed: a message on a
    /// reliable channel that does not decompress is a protocol violation; on a datagram
    /// channel it is dropped and counted.
    fn deliver(&mut self, ctx: &mut Ctx<'_>, channel: ChannelId, payload: Bytes, reliable: bool) -> bool {
        if !self.police(ctx, channel) {
            return !matches!(self.state, State::Closed);
        }
        let payload = match self.compression(ctx.config, channel) {
            None => payload,
            Some(capabilities) => {
                let channel_max = if reliable {
                    ctx.config.max_reliable_message_bytes
                } else {
                    ctx.config.fragment.max_message_bytes
                };
                let wire_len = payload.len() as u64;
                match ctx.codec.decode(payload, capabilities, channel_max) {
                    Ok(message) => {
                        self.stats
                            .compression
                            .count_received(wire_len, message.len() as u64);
                        message
                    }
                    Err(error) => {
                        self.stats.compression.refused += 1;
                        if reliable {
                            let detail = format!("channel {}: {error}", channel.0);
                            self.close(ctx, Rejection::new(ReasonCode::PROTOCOL_VIOLATION, detail));
                            return false;
                        }
                        return true;
                    }
                }
            }
        };
        self.stats.messages_received += 1;
        self.stats.message_bytes_received += payload.len() as u64;
        ctx.events.push_back(Event::Message {
            conn: ctx.handle,
            channel,
            payload,
        });
        true
    }

    /// The session's capabilities when messages on `channel` carry the compression flag byte
    /// (`PROTOCOL.md` §7.3): the channel is marked `compress` and the session negotiated
    /// [`capability::ZSTD`].
    fn compression(&self, config: &Config, channel: ChannelId) -> Option<u64> {
        let capabilities = self.session.as_ref()?.capabilities;
        (capabilities & capability::ZSTD != 0 && config.channel_compressed(channel)).then_some(capabilities)
    }

    /// `payload` as it travels on `channel`: flag ‖ data on a compressed channel (`PROTOCOL.md`
    /// §7.3), otherwise unchanged.
    ///
    /// # Errors
    /// [`SendError::TooLarge`] for a message larger than the decompression cap, which the peer
    /// would refuse.
    fn encode_payload(
        &self,
        config: &Config,
        codec: &mut Codec,
        channel: ChannelId,
        payload: Bytes,
    ) -> Result<Bytes, SendError> {
        let Some(capabilities) = self.compression(config, channel) else {
            return Ok(payload);
        };
        let max = config.compression.max_decompressed_bytes;
        if payload.len() > max {
            return Err(SendError::TooLarge {
                size: payload.len(),
                max,
            });
        }
        Ok(codec.encode(&payload, capabilities))
    }

    /// Counts one queued message: `raw_len` bytes from the application, `wire_len` after the
    /// compression step.
    fn count_sent(&mut self, config: &Config, channel: ChannelId, raw_len: usize, wire_len: usize) {
        self.count_plain_sent(raw_len);
        if self.compression(config, channel).is_some() {
            self.stats.compression.count_sent(raw_len as u64, wire_len as u64);
        }
    }

    /// Counts one queued message of `len` bytes, on a channel that compresses nothing.
    fn count_plain_sent(&mut self, len: usize) {
        self.stats.messages_sent += 1;
        self.stats.message_bytes_sent += len as u64;
    }

    /// The common send, without the general path's steps ([`Conn::send`]): a message without a
    /// deadline, on a channel that compresses nothing, joins what is already open for the
    /// next transmit: on an unreliable channel the open bundle if it fits beside it, on a
    /// reliable one the channel's open buffer if the stream is open and the buffer has room.
    /// False, with nothing done, when the general path must take the message. The caller
    /// checked the channel's senders.
    #[inline]
    pub(crate) fn send_shortcut(
        &mut self,
        config: &Config,
        channel: ChannelId,
        payload: &[u8],
        options: SendOptions,
    ) -> bool {
        if options.deadline.is_some() || !self.is_established() {
            return false;
        }
        let appended = match config.channels.get(usize::from(channel.0)) {
            Some(c) if c.compress => false,
            Some(c) => match c.kind {
                ChannelKind::Unreliable => self.append_to_open_bundle(config, channel, payload),
                ChannelKind::Reliable { .. } => self.append_to_open_frames(config, channel, payload),
                ChannelKind::Sequenced => false,
            },
            None => false,
        };
        if appended {
            self.carrying = true;
            self.count_plain_sent(payload.len());
        }
        appended
    }

    /// Queues `payload` on `channel`.
    pub(crate) fn send(
        &mut self,
        now: Instant,
        config: &Config,
        codec: &mut Codec,
        channel: ChannelId,
        payload: Bytes,
        options: SendOptions,
    ) -> Result<(), SendError> {
        if !self.is_established() {
            return Err(SendError::NotConnected);
        }
        let kind = config
            .channels
            .get(channel.0 as usize)
            .ok_or(SendError::UnknownChannel(channel))?
            .kind;
        self.carrying = true;
        // Small frames and bundle entries wait for the next transmit (`before_transmit`);
        // anything else goes to QUIC at once, as far as QUIC takes it.
        match kind {
            ChannelKind::Reliable { priority } => {
                let queued = self.send_reliable(
                    config,
                    codec,
                    channel,
                    priority.stream_priority(),
                    payload,
                    options,
                )?;
                if queued {
                    self.flush_streams(now);
                }
                Ok(())
            }
            ChannelKind::Unreliable | ChannelKind::Sequenced => self.send_datagram(
                now,
                config,
                codec,
                channel,
                kind == ChannelKind::Sequenced,
                payload,
                options,
            ),
        }
    }

    /// Moves queued frames and datagrams into QUIC as far as flow control and the datagram
    /// buffer allow, dropping those past their deadline.
    #[inline]
    pub(crate) fn flush(&mut self, now: Instant) {
        self.flush_streams(now);
        if !self.datagrams.is_empty() {
            self.flush_datagrams(now);
        }
    }

    /// Fills the transport counters and sub-machine stats into a snapshot.
    pub(crate) fn snapshot_stats(&self) -> ConnectionStats {
        let quic = self.quic.stats();
        let mut stats = *self.stats;
        stats.udp_tx_datagrams = quic.udp_tx.datagrams;
        stats.udp_tx_bytes = quic.udp_tx.bytes;
        stats.udp_rx_datagrams = quic.udp_rx.datagrams;
        stats.udp_rx_bytes = quic.udp_rx.bytes;
        stats.quic_rtt_ms = self.quic.rtt().as_secs_f64() * 1e3;
        stats.heartbeat = self.heartbeat.stats();
        stats.reassembly = *self.reassembler.stats();
        stats.tick_sync = self.tick_sync.as_ref().map(|s| s.stats());
        stats.limiter = self.limiter.as_ref().map(|l| l.stats());
        stats.partial_frame_bytes = self
            .rx_streams
            .values()
            .map(|rx| rx.decoder.buffered_bytes() as u64)
            .sum();
        stats.channel_streams = self.rx_streams.len();
        stats.reassembly_partials = self.reassembler.partial_count();
        stats.reassembly_buffered_bytes = self.reassembler.buffered_bytes();
        stats
    }
}

/// Hostile-peer actions for tests (feature `testing`; never in the non-testing API): they
/// bypass the framer, the channel table and the send queues, so that a harness node can play a
/// misbehaving peer against a real endpoint over real QUIC. Streams are named by their QUIC
/// stream id (RFC 9000 §2.1) as a `u64`.
#[cfg(any(test, feature = "testing"))]
impl Conn {
    /// Opens a unidirectional stream, `None` when the peer's stream limit is reached
    /// (RFC 9000 §4.6: QUIC will not open past it).
    pub(crate) fn testing_open_uni(&mut self) -> Option<u64> {
        self.quic.streams().open(quinn_proto::Dir::Uni).map(u64::from)
    }

    /// Opens a raw bidirectional stream; `None` at the peer's stream limit.
    pub(crate) fn testing_open_bidi(&mut self) -> Option<u64> {
        self.quic.streams().open(quinn_proto::Dir::Bi).map(u64::from)
    }

    /// Writes raw `bytes` to `stream`; returns how many QUIC took (flow control may refuse some).
    pub(crate) fn testing_write(&mut self, stream: u64, bytes: &[u8]) -> usize {
        match self.testing_send_side(stream) {
            Some(id) => self.quic.send_stream(id).write(bytes).unwrap_or(0),
            None => 0,
        }
    }

    /// Resets `stream` (RESET_STREAM, RFC 9000 §19.4) with error code 0.
    pub(crate) fn testing_reset(&mut self, stream: u64) {
        if let Some(id) = self.testing_send_side(stream) {
            let _ = self.quic.send_stream(id).reset(VarInt::from_u32(0));
        }
    }

    /// `stream` if it can have a send side here: bidirectional, or opened by this end (a peer's
    /// unidirectional stream has none).
    fn testing_send_side(&self, stream: u64) -> Option<StreamId> {
        let id = StreamId::from(VarInt::from_u64(stream).ok()?);
        (id.dir() == quinn_proto::Dir::Bi || id.initiator() == self.quic.side()).then_some(id)
    }

    /// Sends one raw QUIC datagram (RFC 9221), bypassing tickwire's datagram queue.
    pub(crate) fn testing_send_datagram(&mut self, bytes: Bytes) -> bool {
        self.quic.datagrams().send(bytes, true).is_ok()
    }
}
