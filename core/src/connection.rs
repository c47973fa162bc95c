//! One peer's tickwire session on top of one quinn-proto connection.
//!
//! A [`Conn`] is driven by the [`crate::Endpoint`]: inputs go to its `quic` connection, then
//! [`Conn::process`] turns QUIC events into handshake steps, heartbeats and delivered
//! messages, pushing tickwire [`Event`]s into the endpoint's queue. Sub-machines (heartbeat,
//! reassembly, tick sync, rate limits) are owned here and report their deadlines through
//! [`Conn::poll_timeout`].

use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use quinn_proto::{Dir, StreamEvent, StreamId, VarInt};

use crate::channel::{ChannelId, ChannelKind, OversizePolicy, SendOptions, CONTROL_PRIORITY};
use crate::config::Config;
use crate::endpoint::{ConnHandle, Event, Initiator, SendError};
use crate::fragment::{self, FragmentHeader, Reassembler, FRAGMENT_HEADER_LEN};
use crate::handshake::{AwaitingAccept, AwaitingHello, ClientHandshake, Exporter, Rejection, Session};
use crate::heartbeat::Heartbeat;
use crate::limits::PeerLimiter;
use crate::stats::ConnectionStats;
use crate::tick::TickSync;
use crate::tls::{EXPORTER_LABEL, EXPORTER_LEN};
use crate::wire::{
    self, seq_newer, type_byte, CloseInfo, Control, Datagram, DatagramKind, FrameDecoder, ReasonCode,
    MAX_CHANNELS, MAX_CONTROL_FRAME_BYTES, SEQUENCED_HEADER_LEN,
};

/// Where the session is. Handshake states hold their typestate value.
#[derive(Debug)]
pub(crate) enum State {
    /// Client: QUIC/TLS in progress.
    ClientConnecting(ClientHandshake),
    /// Client: hello sent.
    ClientAwaitingAccept(AwaitingAccept),
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

/// A control-stream frame the endpoint must act on (it holds the server's context).
#[derive(Debug)]
pub(crate) enum Pending {
    /// Server: a hello arrived in `ServerAwaitingHello`.
    Hello(Control),
}

#[derive(Debug)]
struct RxStream {
    channel: Option<ChannelId>,
    decoder: FrameDecoder,
    /// While the decoder holds a partial frame: when the stream stalls (the last byte for it
    /// arrived `partial_frame_timeout_ms` before). `None` between frames.
    stall_deadline: Option<Instant>,
}

/// How a receive stream stood after `Conn::drain_stream` read everything it had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StreamEnd {
    /// Still open: more bytes may come.
    Open,
    /// The peer finished it (FIN) and every byte was read.
    Finished,
    /// The peer reset it (RESET_STREAM): QUIC has freed it and given the peer a new stream.
    Reset,
}

#[derive(Debug)]
struct QueuedFrame {
    bytes: Bytes,
    written: usize,
    deadline: Option<Instant>,
}

#[derive(Debug, Default)]
struct TxChannel {
    stream: Option<StreamId>,
    queue: VecDeque<QueuedFrame>,
}

#[derive(Debug)]
struct QueuedDatagram {
    bytes: Bytes,
    deadline: Option<Instant>,
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
    datagrams: VecDeque<QueuedDatagram>,
    heartbeat: Heartbeat,
    reassembler: Reassembler,
    tick_sync: Option<TickSync>,
    limiter: Option<PeerLimiter>,
    tx_seq: [u16; MAX_CHANNELS],
    rx_seq: [Option<u16>; MAX_CHANNELS],
    next_fragment_id: u16,
    last_frames_rx: u64,
    pub(crate) stats: ConnectionStats,
    /// The deadline the endpoint's timer heap holds for this connection (`None` = none armed).
    pub(crate) armed: Option<Instant>,
    /// Whether the endpoint has this connection in its transmit queue.
    pub(crate) tx_queued: bool,
    /// Whether the endpoint has this connection in its timer-refresh list.
    pub(crate) timer_queued: bool,
    /// The endpoint counter this connection is counted in (kept equal to [`Conn::phase`] by
    /// the endpoint after every operation, so that its counts never need a scan).
    pub(crate) counted: Phase,
    /// Inbound connections: the source IP address whose per-address count of handshakes in
    /// progress this connection is in while it is [`Phase::Handshaking`].
    pub(crate) counted_ip: Option<IpAddr>,
    /// When this server connection started waiting for its Hello, as the endpoint's
    /// eviction index holds it (kept equal to [`Conn::awaiting_hello_since`] by the endpoint).
    pub(crate) counted_hello: Option<Instant>,
    /// Server: when the TLS handshake completed and the wait for the Hello began.
    hello_wait_since: Option<Instant>,
}

/// Which of the endpoint's connection counters a connection belongs to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Neither: closed (or not counted yet).
    #[default]
    Uncounted,
    /// A handshake in progress.
    Handshaking,
    /// An established session.
    Established,
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
}

impl Conn {
    /// A client connection about to run `handshake`.
    pub(crate) fn client(
        quic: quinn_proto::Connection,
        now: Instant,
        config: &Config,
        handshake: ClientHandshake,
    ) -> Self {
        let mut conn = Self::new(quic, now, config, State::ClientConnecting(handshake));
        conn.tick_sync = Some(TickSync::new(config.tick_sync.clone()));
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
            datagrams: VecDeque::new(),
            heartbeat: Heartbeat::new(now, config.heartbeat.clone()),
            reassembler: Reassembler::new(config.fragment.clone()),
            tick_sync: None,
            limiter: None,
            tx_seq: [0; MAX_CHANNELS],
            rx_seq: [None; MAX_CHANNELS],
            next_fragment_id: 0,
            last_frames_rx: 0,
            stats: ConnectionStats::default(),
            armed: None,
            tx_queued: false,
            timer_queued: false,
            counted: Phase::Uncounted,
            counted_ip: None,
            counted_hello: None,
            hello_wait_since: None,
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

    /// The counter this connection belongs in now.
    pub(crate) fn phase(&self) -> Phase {
        match self.state {
            State::Established => Phase::Established,
            State::Closed => Phase::Uncounted,
            _ => Phase::Handshaking,
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
            State::Closed => {}
            _ => consider(self.handshake_deadline),
        }
        deadline
    }

    /// Timer work: QUIC timers, handshake deadline, heartbeat pings and failure, reassembly
    /// expiry. A spurious call is harmless.
    pub(crate) fn handle_timeout(&mut self, ctx: &mut Ctx<'_>) {
        let now = ctx.now;
        self.quic.handle_timeout(now);
        match self.state {
            State::Closed => {}
            State::Established => {
                self.reassembler.handle_timeout(now);
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
                self.send_pings(ctx);
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
    fn local_tick(&self, ctx: &Ctx<'_>) -> u64 {
        match &self.tick_sync {
            Some(sync) => sync.last_tick().unwrap_or(0),
            None => ctx.server_tick,
        }
    }

    fn send_pings(&mut self, ctx: &mut Ctx<'_>) {
        let tick = self.local_tick(ctx);
        while let Some(ping) = self.heartbeat.poll_ping(ctx.now, tick) {
            let bytes = wire::encode_heartbeat(DatagramKind::Ping, &ping);
            let _ = self.quic.datagrams().send(bytes, true);
        }
    }

    /// The earliest stall deadline of a channel stream holding a partial frame. There are at
    /// most `channels.len()` receive streams (QUIC's concurrent-stream limit), so a scan is cheap.
    fn next_stall(&self) -> Option<Instant> {
        self.rx_streams.values().filter_map(|rx| rx.stall_deadline).min()
    }

    /// Closes the connection because a channel stream's partial frame received no byte for
    /// `partial_frame_timeout_ms` (a slow-loris peer pinning the frame's buffer).
    fn close_stalled(&mut self, ctx: &mut Ctx<'_>) {
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

    /// Drains QUIC events into tickwire state and events. Call after every input;
    /// `received` = the input was a datagram for this connection.
    pub(crate) fn process(&mut self, ctx: &mut Ctx<'_>, received: bool) -> Option<Pending> {
        // Liveness counts only frames from authenticated packets, so datagrams spoofed with a
        // known connection id cannot hold off the heartbeat timeout. (Reading QUIC's counters
        // copies its whole statistics block, so only after a datagram arrived.)
        if received {
            let rx = self.quic.stats().frame_rx;
            let frames =
                rx.acks + rx.stream + rx.datagram + rx.ping + rx.crypto + rx.max_data + rx.max_stream_data;
            if frames != self.last_frames_rx {
                self.last_frames_rx = frames;
                self.heartbeat.on_receive(ctx.now);
            }
        }
        let mut pending = None;
        while let Some(event) = self.quic.poll() {
            match event {
                quinn_proto::Event::Connected => self.on_quic_connected(ctx),
                quinn_proto::Event::ConnectionLost { reason } => self.on_quic_lost(ctx, reason),
                quinn_proto::Event::Stream(StreamEvent::Opened { dir }) => {
                    pending = pending.or(self.accept_streams(ctx, dir));
                }
                quinn_proto::Event::Stream(StreamEvent::Readable { id }) => {
                    if Some(id) == self.control {
                        pending = pending.or(self.read_control(ctx));
                    } else {
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
                // Drain remaining events without acting on them.
                while self.quic.poll().is_some() {}
                break;
            }
        }
        if !matches!(self.state, State::Closed) {
            self.flush(ctx.now);
        }
        pending
    }

    fn exporter(&self) -> Option<Exporter> {
        let mut out = [0u8; EXPORTER_LEN];
        self.quic
            .crypto_session()
            .export_keying_material(&mut out, EXPORTER_LABEL, b"")
            .ok()?;
        Some(out)
    }

    fn on_quic_connected(&mut self, ctx: &mut Ctx<'_>) {
        let Some(exporter) = self.exporter() else {
            self.close_now(
                ctx,
                Rejection::new(ReasonCode::TRANSPORT_ERROR, "TLS exporter unavailable"),
            );
            return;
        };
        match std::mem::replace(&mut self.state, State::Closed) {
            State::ClientConnecting(handshake) => {
                let (next, hello) = handshake.start(exporter, (ctx.nonce)());
                self.state = State::ClientAwaitingAccept(next);
                let Some(id) = self.quic.streams().open(Dir::Bi) else {
                    self.close(
                        ctx,
                        Rejection::new(ReasonCode::TRANSPORT_ERROR, "no control stream credit"),
                    );
                    return;
                };
                let _ = self.quic.send_stream(id).set_priority(CONTROL_PRIORITY);
                self.control = Some(id);
                self.queue_control(&hello);
            }
            State::ServerConnecting(None) => {
                self.state = State::ServerAwaitingHello(AwaitingHello::new(exporter));
                self.hello_wait_since = Some(ctx.now);
                let hello_by = ctx.now + Duration::from_millis(ctx.config.hello_timeout_ms);
                self.handshake_deadline = self.handshake_deadline.map(|d| d.min(hello_by));
            }
            State::ServerConnecting(Some(rejection)) => {
                self.state = State::ServerConnecting(None);
                self.close_now(ctx, rejection);
            }
            other => self.state = other,
        }
    }

    fn on_quic_lost(&mut self, ctx: &mut Ctx<'_>, error: quinn_proto::ConnectionError) {
        use quinn_proto::ConnectionError as E;
        if matches!(self.state, State::Closed) {
            return;
        }
        let (reason, info) = match error {
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
        self.tx_channels.clear();
        self.rx_streams.clear();
        self.queued_reliable_bytes = 0;
        ctx.events.push_back(event);
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
        self.quic
            .close(ctx.now, VarInt::from(rejection.reason.0), info.encode());
        self.report_closed(
            ctx,
            rejection.reason,
            rejection.retry_after_ms,
            rejection.detail,
            Initiator::Local,
        );
    }

    fn accept_streams(&mut self, ctx: &mut Ctx<'_>, dir: Dir) -> Option<Pending> {
        let mut pending = None;
        while let Some(id) = self.quic.streams().accept(dir) {
            match dir {
                Dir::Bi if self.control.is_none() && !self.quic.side().is_client() => {
                    self.control = Some(id);
                    let _ = self.quic.send_stream(id).set_priority(CONTROL_PRIORITY);
                    pending = pending.or(self.read_control(ctx));
                }
                Dir::Bi => {
                    self.close(
                        ctx,
                        Rejection::new(ReasonCode::PROTOCOL_VIOLATION, "unexpected bidirectional stream"),
                    );
                    return None;
                }
                Dir::Uni => {
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
            }
        }
        pending
    }

    /// Reads everything readable on stream `id` into `sink`; returns how many bytes it read
    /// and whether the stream is still open.
    fn drain_stream(
        quic: &mut quinn_proto::Connection,
        id: StreamId,
        mut sink: impl FnMut(&[u8]),
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
                    sink(&chunk.bytes);
                }
                Ok(None) => break StreamEnd::Finished,
                Err(quinn_proto::ReadError::Reset(_)) => break StreamEnd::Reset,
                Err(_) => break StreamEnd::Open,
            }
        };
        let _ = chunks.finalize();
        (read, end)
    }

    fn read_control(&mut self, ctx: &mut Ctx<'_>) -> Option<Pending> {
        let id = self.control?;
        let decoder = &mut self.control_rx;
        Self::drain_stream(&mut self.quic, id, |bytes| decoder.push(bytes));
        self.next_control_frame(ctx)
    }

    /// Acts on the next complete control frame, if the state expects one.
    pub(crate) fn next_control_frame(&mut self, ctx: &mut Ctx<'_>) -> Option<Pending> {
        if matches!(
            self.state,
            State::ServerConnecting(_) | State::Verifying | State::Closed
        ) {
            return None; // keep buffered until the handshake state can take it
        }
        let frame = match self.control_rx.next_frame() {
            Ok(Some(frame)) => frame,
            Ok(None) => return None,
            Err(e) => {
                self.close(ctx, Rejection::new(ReasonCode::BAD_HANDSHAKE, e.to_string()));
                return None;
            }
        };
        let message: Control = match wire::decode(&frame) {
            Ok(message) => message,
            Err(e) => {
                self.close(ctx, Rejection::new(ReasonCode::BAD_HANDSHAKE, e.to_string()));
                return None;
            }
        };
        match std::mem::replace(&mut self.state, State::Closed) {
            State::ClientAwaitingAccept(awaiting) => {
                match awaiting.handle_accept(&message, ctx.unix_ms) {
                    Ok(session) => self.establish(ctx, session),
                    Err(rejection) => {
                        self.state = State::Verifying;
                        self.close(ctx, rejection);
                    }
                }
                None
            }
            state @ State::ServerAwaitingHello(_) => {
                self.state = state;
                Some(Pending::Hello(message))
            }
            other => {
                self.state = other;
                self.close(
                    ctx,
                    Rejection::new(ReasonCode::PROTOCOL_VIOLATION, "unexpected control message"),
                );
                None
            }
        }
    }

    /// Server: takes the waiting-for-hello typestate out for the endpoint to run.
    pub(crate) fn take_awaiting_hello(&mut self) -> Option<AwaitingHello> {
        match std::mem::replace(&mut self.state, State::Verifying) {
            State::ServerAwaitingHello(awaiting) => Some(awaiting),
            other => {
                self.state = other;
                None
            }
        }
    }

    /// Server: the hello checked out; send `accept` and go live.
    pub(crate) fn accept(&mut self, ctx: &mut Ctx<'_>, session: Session, accept: &Control) {
        self.queue_control(accept);
        self.establish(ctx, session);
        self.flush(ctx.now);
    }

    fn establish(&mut self, ctx: &mut Ctx<'_>, session: Session) {
        self.state = State::Established;
        self.handshake_deadline = None;
        if self.tick_sync.is_some() {
            // The server's tick rate is authoritative: the client paces its ticks by it.
            let mut config = ctx.config.tick_sync.clone();
            config.tick_rate_hz = u32::from(session.tick_rate_hz);
            let mut sync = TickSync::new(config);
            sync.on_sample(ctx.now, session.server_tick, self.quic.rtt());
            self.tick_sync = Some(sync);
        }
        self.heartbeat.on_receive(ctx.now);
        ctx.events.push_back(Event::Connected {
            conn: ctx.handle,
            session: session.clone(),
        });
        self.session = Some(session);
        self.send_pings(ctx);
        // Reliable messages that arrived with or before the accept were held in QUIC until now.
        let early: Vec<StreamId> = self.rx_streams.keys().copied().collect();
        for id in early {
            self.read_stream(ctx, id);
        }
    }

    fn queue_control(&mut self, message: &Control) {
        self.control_tx.push_back(QueuedFrame {
            bytes: wire::encode_frame(&wire::encode(message)),
            written: 0,
            deadline: None,
        });
    }

    fn read_stream(&mut self, ctx: &mut Ctx<'_>, id: StreamId) {
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
                if let Some((&b, rest)) = bytes.split_first() {
                    channel = Some(ChannelId(b));
                    first_byte = Some(b);
                    bytes = rest;
                }
            }
            decoder.push(bytes);
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
                ctx.config.channels.get(channel.0 as usize),
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
            match rx.decoder.next_frame() {
                Ok(Some(frame)) => {
                    if !self.admit(ctx.now, frame.len()) {
                        self.close(
                            ctx,
                            Rejection::new(ReasonCode::RATE_LIMITED, "reliable message rate exceeded"),
                        );
                        return;
                    }
                    self.deliver(ctx, channel, frame);
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

    /// Rate limit for incoming messages (server side only).
    fn admit(&mut self, now: Instant, bytes: usize) -> bool {
        match &mut self.limiter {
            Some(limiter) => limiter.check(now, bytes).is_ok(),
            None => true,
        }
    }

    fn deliver(&mut self, ctx: &mut Ctx<'_>, channel: ChannelId, payload: Bytes) {
        self.stats.messages_received += 1;
        self.stats.message_bytes_received += payload.len() as u64;
        ctx.events.push_back(Event::Message {
            conn: ctx.handle,
            channel,
            payload,
        });
    }

    fn read_datagrams(&mut self, ctx: &mut Ctx<'_>) {
        while let Some(bytes) = self.quic.datagrams().recv() {
            if !self.is_established() {
                self.stats.datagrams_dropped_early += 1;
                continue;
            }
            self.handle_datagram(ctx, &bytes);
            if matches!(self.state, State::Closed) {
                return;
            }
        }
    }

    fn handle_datagram(&mut self, ctx: &mut Ctx<'_>, bytes: &Bytes) {
        let now = ctx.now;
        let datagram = match Datagram::decode(bytes) {
            Ok(d) => d,
            Err(_) => {
                self.stats.datagrams_dropped_malformed += 1;
                return;
            }
        };
        match datagram {
            Datagram::Ping(ping) => {
                let tick = self.local_tick(ctx);
                let pong = self.heartbeat.handle_ping(now, &ping, tick);
                let _ = self
                    .quic
                    .datagrams()
                    .send(wire::encode_heartbeat(DatagramKind::Pong, &pong), true);
            }
            Datagram::Pong(pong) => {
                if let (Some(sample), Some(sync)) =
                    (self.heartbeat.handle_pong(now, &pong), &mut self.tick_sync)
                {
                    sync.on_sample(now, sample.peer_tick, sample.rtt);
                }
            }
            Datagram::Unreliable { channel, payload } => {
                if self.check_datagram_channel(ctx, channel, false) && self.admit(now, payload.len()) {
                    self.deliver(ctx, ChannelId(channel), bytes.slice_ref(payload));
                }
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
                    self.deliver(ctx, ChannelId(channel), bytes.slice_ref(payload));
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
                        self.deliver(ctx, ChannelId(channel), message);
                    }
                }
            }
        }
    }

    /// Whether `channel` is a datagram channel of the right kind; counts a mismatch.
    fn check_datagram_channel(&mut self, ctx: &Ctx<'_>, channel: u8, sequenced: bool) -> bool {
        let ok = match ctx.config.channels.get(channel as usize) {
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

    /// Queues `payload` on `channel`.
    pub(crate) fn send(
        &mut self,
        now: Instant,
        config: &Config,
        channel: ChannelId,
        payload: Bytes,
        options: SendOptions,
    ) -> Result<(), SendError> {
        if !self.is_established() {
            return Err(SendError::NotConnected);
        }
        let kind = *config
            .channels
            .get(channel.0 as usize)
            .ok_or(SendError::UnknownChannel(channel))?;
        let result = match kind {
            ChannelKind::Reliable { priority } => {
                self.send_reliable(config, channel, priority.stream_priority(), payload, options)
            }
            ChannelKind::Unreliable | ChannelKind::Sequenced => {
                self.send_datagram(config, channel, kind == ChannelKind::Sequenced, payload, options)
            }
        };
        self.flush(now);
        result
    }

    fn send_reliable(
        &mut self,
        config: &Config,
        channel: ChannelId,
        priority: i32,
        payload: Bytes,
        options: SendOptions,
    ) -> Result<(), SendError> {
        if payload.len() > config.max_reliable_message_bytes {
            return Err(SendError::TooLarge {
                size: payload.len(),
                max: config.max_reliable_message_bytes,
            });
        }
        let frame = wire::encode_frame(&payload);
        if self.queued_reliable_bytes + frame.len() > config.max_queued_reliable_bytes {
            return Err(SendError::QueueFull);
        }
        let tx = self.tx_channels.entry(channel).or_default();
        if tx.stream.is_none() {
            let Some(id) = self.quic.streams().open(Dir::Uni) else {
                return Err(SendError::QueueFull);
            };
            let _ = self.quic.send_stream(id).set_priority(priority);
            tx.stream = Some(id);
            tx.queue.push_back(QueuedFrame {
                bytes: Bytes::copy_from_slice(&[channel.0]),
                written: 0,
                deadline: None,
            });
            self.queued_reliable_bytes += 1;
        }
        self.queued_reliable_bytes += frame.len();
        tx.queue.push_back(QueuedFrame {
            bytes: frame,
            written: 0,
            deadline: options.deadline,
        });
        self.stats.messages_sent += 1;
        self.stats.message_bytes_sent += payload.len() as u64;
        Ok(())
    }

    fn send_datagram(
        &mut self,
        config: &Config,
        channel: ChannelId,
        sequenced: bool,
        payload: Bytes,
        options: SendOptions,
    ) -> Result<(), SendError> {
        let max = self
            .quic
            .datagrams()
            .max_size()
            .ok_or(SendError::DatagramsUnsupported)?;
        let header = if sequenced { SEQUENCED_HEADER_LEN } else { 1 };
        if payload.len() + header <= max {
            let kind = if sequenced {
                DatagramKind::Sequenced
            } else {
                DatagramKind::Unreliable
            };
            let mut out = BytesMut::with_capacity(header + payload.len());
            out.put_u8(type_byte(kind, channel.0));
            if sequenced {
                out.put_u16(self.next_seq(channel));
            }
            out.extend_from_slice(&payload);
            self.queue_datagram(config, out.freeze(), options.deadline);
        } else {
            let chunk_max = max.saturating_sub(1 + FRAGMENT_HEADER_LEN);
            let within_limit = payload.len() <= config.fragment.max_message_bytes;
            let fragments = match fragment::split(&payload, chunk_max, config.fragment.max_fragments) {
                Ok(fragments) if within_limit => fragments,
                _ => return self.send_oversized(config, payload, options),
            };
            let (kind, message_id) = if sequenced {
                (DatagramKind::SequencedFragment, self.next_seq(channel))
            } else {
                let id = self.next_fragment_id;
                self.next_fragment_id = id.wrapping_add(1);
                (DatagramKind::Fragment, id)
            };
            for (index, count, chunk) in fragments {
                let mut out = BytesMut::with_capacity(1 + FRAGMENT_HEADER_LEN + chunk.len());
                out.put_u8(type_byte(kind, channel.0));
                out.extend_from_slice(
                    &FragmentHeader {
                        message_id,
                        index,
                        count,
                    }
                    .encode(),
                );
                out.extend_from_slice(chunk);
                self.queue_datagram(config, out.freeze(), options.deadline);
            }
            self.stats.messages_fragmented += 1;
        }
        self.stats.messages_sent += 1;
        self.stats.message_bytes_sent += payload.len() as u64;
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
        config: &Config,
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
            .find_map(|(index, kind)| match kind {
                ChannelKind::Reliable { priority } => {
                    Some((ChannelId(index as u8), priority.stream_priority()))
                }
                _ => None,
            });
        match reliable {
            Some((channel, priority)) => self.send_reliable(config, channel, priority, payload, options),
            None => Err(too_large),
        }
    }

    fn queue_datagram(&mut self, config: &Config, bytes: Bytes, deadline: Option<Instant>) {
        if self.datagrams.len() >= config.max_queued_datagrams {
            self.datagrams.pop_front();
            self.stats.datagrams_dropped_queue_full += 1;
        }
        self.datagrams.push_back(QueuedDatagram { bytes, deadline });
    }

    /// Refills QUIC's (deliberately small) datagram buffer from tickwire's queue, if anything
    /// waits; called before each transmit so the path stays busy without a deep FIFO.
    pub(crate) fn top_up_datagrams(&mut self, now: Instant) {
        if !self.datagrams.is_empty() && self.is_established() {
            self.flush(now);
        }
    }

    /// Moves queued frames and datagrams into QUIC as far as flow control and the datagram
    /// buffer allow, dropping those past their deadline.
    pub(crate) fn flush(&mut self, now: Instant) {
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
            match quic.send_stream(id).write(&front.bytes[front.written..]) {
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

    /// Fills the transport counters and sub-machine stats into a snapshot.
    pub(crate) fn snapshot_stats(&self) -> ConnectionStats {
        let quic = self.quic.stats();
        let mut stats = self.stats;
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
        self.quic.streams().open(Dir::Uni).map(u64::from)
    }

    /// Writes raw `bytes` to `stream`; returns how many QUIC took (flow control may refuse some).
    pub(crate) fn testing_write(&mut self, stream: u64, bytes: &[u8]) -> usize {
        let id = StreamId::from(VarInt::from_u64(stream).unwrap_or(VarInt::MAX));
        self.quic.send_stream(id).write(bytes).unwrap_or(0)
    }

    /// Resets `stream` (RESET_STREAM, RFC 9000 §19.4) with error code 0.
    pub(crate) fn testing_reset(&mut self, stream: u64) {
        let id = StreamId::from(VarInt::from_u64(stream).unwrap_or(VarInt::MAX));
        let _ = self.quic.send_stream(id).reset(VarInt::from_u32(0));
    }

    /// Sends one raw QUIC datagram (RFC 9221), bypassing tickwire's datagram queue.
    pub(crate) fn testing_send_datagram(&mut self, bytes: Bytes) -> bool {
        self.quic.datagrams().send(bytes, true).is_ok()
    }
}
