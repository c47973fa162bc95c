//! The WebTransport carriage of a session (`PROTOCOL.md` §12): HTTP/3 control streams and
//! SETTINGS, the extended CONNECT, stream and datagram prefixes, the certificate channel binding
//! and the close capsule. The tickwire session inside is the native one; this module only
//! classifies streams, adds and strips prefixes, and replaces the exporter and the close.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use quinn_proto::{Dir, StreamId, VarInt};
use sha2::{Digest, Sha256};

use super::streams::{QueuedFrame, StreamEnd};
use super::{Conn, Ctx, State};
use crate::channel::CONTROL_PRIORITY;
use crate::handshake::Rejection;
use crate::webtransport::connect::{
    self, ConnectRequest, WebTransportConfig, H3_REQUEST_REJECTED, MAX_HEADERS_BYTES,
};
use crate::webtransport::h3::{
    self, decode_capsule, encode_frame_header, error_code, parse_bidi_stream, parse_uni_stream,
    BidiStreamKind, Capsule, CloseSession, FrameRead, FrameReader, FrameType, Parse, Settings, UniStreamKind,
};
use crate::webtransport::ALPN_H3;
use crate::wire::{Challenge, CloseInfo, Control, ReasonCode, BINDING_CERTIFICATE};

/// How long a closing side waits for the peer to finish the CONNECT stream before it closes
/// the QUIC connection (`PROTOCOL.md` §12.6).
const CLOSE_LINGER: Duration = Duration::from_secs(2);
/// The longest stream prefix read while classifying a stream: a type and a session id.
const MAX_PREFIX: usize = 16;
/// `H3_MISSING_SETTINGS` (RFC 9114 §8.1).
const H3_MISSING_SETTINGS: u64 = 0x10a;

/// Where the HTTP/3 session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Server: no CONNECT answered yet. Client: the CONNECT is sent, no response yet.
    Opening,
    /// The CONNECT was answered 200: the session id is known.
    Live,
}

/// One connection's WebTransport state; see the module docs.
#[derive(Debug)]
pub(crate) struct Carrier {
    /// Client: the CONNECT it sends. `None` on a server.
    request: Option<ConnectRequest>,
    phase: Phase,
    /// The certificate the binding names: the server's own, or the client's TLS peer's.
    cert_hash: Option<[u8; 32]>,
    peer_control: Option<StreamId>,
    peer_control_rx: Vec<u8>,
    peer_control_reader: FrameReader,
    peer_settings: Option<Settings>,
    /// The peer's QPACK streams, read and discarded.
    qpack: Vec<StreamId>,
    /// Streams whose type or signal is still being read, with the bytes read so far.
    pending: BTreeMap<StreamId, Vec<u8>>,
    connect: Option<StreamId>,
    connect_rx: Vec<u8>,
    connect_reader: FrameReader,
    /// Capsule bytes from the CONNECT stream's DATA frames.
    capsules: Vec<u8>,
    /// Set once a close capsule was sent: when the QUIC connection closes regardless.
    linger: Option<Instant>,
}

impl Carrier {
    fn new(request: Option<ConnectRequest>, cert_hash: Option<[u8; 32]>) -> Self {
        Self {
            request,
            phase: Phase::Opening,
            cert_hash,
            peer_control: None,
            peer_control_rx: Vec::new(),
            peer_control_reader: FrameReader::new(MAX_HEADERS_BYTES),
            peer_settings: None,
            qpack: Vec::new(),
            pending: BTreeMap::new(),
            connect: None,
            connect_rx: Vec::new(),
            connect_reader: FrameReader::new(MAX_HEADERS_BYTES),
            capsules: Vec::new(),
            linger: None,
        }
    }

    /// A client carrier that will send `request`.
    pub(crate) fn client(request: ConnectRequest) -> Self {
        Self::new(Some(request), None)
    }

    fn session_id(&self) -> Option<u64> {
        match self.phase {
            Phase::Live => self.connect.map(u64::from),
            Phase::Opening => None,
        }
    }

    /// When a lingering close gives up waiting for the peer.
    pub(crate) fn linger_deadline(&self) -> Option<Instant> {
        self.linger
    }
}

/// What a classified stream turned out to be.
enum Classified {
    Known,
    Refused(u64),
    Error(u64, String),
}

/// Writes all of `bytes` to `id`; false if the stream refused any (never at the start of a
/// connection, whose stream windows hold far more than these few hundred bytes).
fn write_all(quic: &mut quinn_proto::Connection, id: StreamId, bytes: &[u8]) -> bool {
    matches!(quic.send_stream(id).write(bytes), Ok(n) if n == bytes.len())
}

/// Reads at most `limit` bytes of stream `id` into `out`.
fn read_upto(quic: &mut quinn_proto::Connection, id: StreamId, limit: usize, out: &mut Vec<u8>) -> StreamEnd {
    let mut stream = quic.recv_stream(id);
    let Ok(mut chunks) = stream.read(true) else {
        return StreamEnd::Open;
    };
    let mut end = StreamEnd::Open;
    while out.len() < limit {
        match chunks.next(limit - out.len()) {
            Ok(Some(chunk)) => out.extend_from_slice(&chunk.bytes),
            Ok(None) => {
                end = StreamEnd::Finished;
                break;
            }
            Err(quinn_proto::ReadError::Reset(_)) => {
                end = StreamEnd::Reset;
                break;
            }
            Err(_) => break,
        }
    }
    let _ = chunks.finalize();
    end
}

/// Unpadded base64url (RFC 4648 §5) of the postcard `CloseInfo`: the close capsule's message.
fn encode_close_message(info: &CloseInfo) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(info.encode())
}

fn decode_close_message(message: &str) -> CloseInfo {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(message)
        .unwrap_or_default();
    CloseInfo::decode(&bytes)
}

impl Conn {
    /// Whether TLS negotiated `h3` on this connection.
    fn negotiated_h3(&self) -> bool {
        self.quic
            .crypto_session()
            .handshake_data()
            .and_then(|data| data.downcast::<quinn_proto::crypto::rustls::HandshakeData>().ok())
            .and_then(|data| data.protocol)
            .is_some_and(|p| p == ALPN_H3)
    }

    /// SHA-256 of the TLS peer's end-entity certificate (client side).
    fn peer_cert_hash(&self) -> Option<[u8; 32]> {
        let certs = self
            .quic
            .crypto_session()
            .peer_identity()?
            .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
            .ok()?;
        Some(Sha256::digest(certs.first()?.as_ref()).into())
    }

    pub(crate) fn is_webtransport(&self) -> bool {
        self.wt.is_some()
    }

    /// At the end of the TLS handshake: `true` if this is a WebTransport connection, which
    /// then opens its HTTP/3 control stream (and, on a client, sends the CONNECT).
    pub(super) fn start_webtransport(&mut self, ctx: &mut Ctx<'_>) -> bool {
        if self.wt.is_none() {
            if !self.negotiated_h3() {
                return false;
            }
            let cert_hash = ctx
                .server
                .as_ref()
                .and_then(|s| s.webtransport_certs)
                .and_then(|certs| certs.webtransport_hash());
            self.wt = Some(Box::new(Carrier::new(None, cert_hash)));
            // The peer's HTTP/3 control and QPACK streams, and one of a reserved type, besides
            // its channel streams (`PROTOCOL.md` §12.1).
            let uni = ctx.config.channels.len() as u32 + 4;
            self.quic
                .set_max_concurrent_streams(Dir::Uni, VarInt::from_u32(uni));
        }
        let client = self.quic.side().is_client();
        if client {
            let hash = self.peer_cert_hash();
            if let Some(wt) = self.wt.as_mut() {
                wt.cert_hash = hash;
            }
        }
        let mut settings = Vec::new();
        let _ = h3::varint::encode(h3::STREAM_CONTROL, &mut settings);
        Settings::server().encode_frame(&mut settings);
        let opened = self.quic.streams().open(Dir::Uni);
        if !opened.is_some_and(|id| write_all(&mut self.quic, id, &settings)) {
            self.close_h3(
                ctx,
                error_code::H3_STREAM_CREATION_ERROR,
                "no stream for HTTP/3 control",
            );
            return true;
        }
        if client {
            let Some(id) = self.quic.streams().open(Dir::Bi) else {
                self.close_h3(
                    ctx,
                    error_code::H3_STREAM_CREATION_ERROR,
                    "no stream for the CONNECT",
                );
                return true;
            };
            let request = self
                .wt
                .as_ref()
                .and_then(|wt| wt.request.clone())
                .unwrap_or_default();
            if !write_all(&mut self.quic, id, &request.encode_frame()) {
                self.close_h3(ctx, error_code::H3_STREAM_CREATION_ERROR, "CONNECT not written");
                return true;
            }
            if let Some(wt) = self.wt.as_mut() {
                wt.connect = Some(id);
            }
        }
        true
    }

    /// A stream the peer opened on a WebTransport connection: classified by its prefix.
    pub(super) fn wt_accept_streams(&mut self, ctx: &mut Ctx<'_>, dir: Dir) {
        while let Some(id) = self.quic.streams().accept(dir) {
            let Some(wt) = self.wt.as_mut() else { return };
            if dir == Dir::Bi && !self.quic.side().is_client() {
                if wt.connect.is_none() {
                    wt.connect = Some(id);
                    self.read_connect(ctx);
                } else {
                    // One session per connection: a second request is refused unprocessed.
                    let code = VarInt::from_u64(H3_REQUEST_REJECTED).unwrap_or(VarInt::MAX);
                    let _ = self.quic.recv_stream(id).stop(code);
                    let _ = self.quic.send_stream(id).reset(code);
                }
            } else {
                wt.pending.insert(id, Vec::new());
                self.classify(ctx, id, dir);
            }
            if self.is_closed() {
                return;
            }
        }
    }

    /// Readable stream `id`: `true` if the carrier owns it (and has read it).
    pub(super) fn wt_readable(&mut self, ctx: &mut Ctx<'_>, id: StreamId) -> bool {
        let Some(wt) = self.wt.as_mut() else {
            return false;
        };
        if wt.pending.contains_key(&id) {
            self.classify(ctx, id, id.dir());
        } else if wt.peer_control == Some(id) {
            self.read_peer_control(ctx);
        } else if wt.connect == Some(id) {
            self.read_connect(ctx);
        } else if wt.qpack.contains(&id) {
            let _ = Self::drain_stream(&mut self.quic, id, |_| {});
        } else {
            return false;
        }
        true
    }

    /// Reads the prefix of stream `id` and hands the stream to its owner.
    fn classify(&mut self, ctx: &mut Ctx<'_>, id: StreamId, dir: Dir) {
        let Some(wt) = self.wt.as_mut() else { return };
        let Some(mut buf) = wt.pending.remove(&id) else {
            return;
        };
        // One byte at a time, so that no byte after the prefix leaves QUIC's buffer here.
        let mut end = StreamEnd::Open;
        let parsed = loop {
            let parsed = if dir == Dir::Uni {
                parse_uni_stream(&buf).map(|p| match p {
                    Parse::NeedMore => None,
                    Parse::Parsed { kind, .. } => Some(Ok(kind)),
                })
            } else {
                parse_bidi_stream(&buf).map(|p| match p {
                    Parse::NeedMore => None,
                    Parse::Parsed { kind, .. } => Some(Err(kind)),
                })
            };
            match parsed {
                Ok(Some(kind)) => break Some(kind),
                Err(e) => {
                    self.close_h3(ctx, e.h3_code(), &e.to_string());
                    return;
                }
                Ok(None) if end != StreamEnd::Open || buf.len() >= MAX_PREFIX => break None,
                Ok(None) => {
                    let before = buf.len();
                    end = read_upto(&mut self.quic, id, before + 1, &mut buf);
                    if buf.len() == before && end == StreamEnd::Open {
                        // Nothing more yet: wait for the next Readable.
                        if let Some(wt) = self.wt.as_mut() {
                            wt.pending.insert(id, buf);
                        }
                        return;
                    }
                }
            }
        };
        let outcome = match parsed {
            None => Classified::Refused(error_code::H3_STREAM_CREATION_ERROR),
            Some(Ok(kind)) => self.classify_uni(ctx, id, kind),
            Some(Err(kind)) => self.classify_bidi(ctx, id, kind),
        };
        match outcome {
            Classified::Known => {}
            Classified::Refused(code) => {
                let code = VarInt::from_u64(code).unwrap_or(VarInt::MAX);
                let _ = self.quic.recv_stream(id).stop(code);
                if dir == Dir::Bi {
                    let _ = self.quic.send_stream(id).reset(code);
                }
            }
            Classified::Error(code, detail) => self.close_h3(ctx, code, &detail),
        }
    }

    fn classify_uni(&mut self, ctx: &mut Ctx<'_>, id: StreamId, kind: UniStreamKind) -> Classified {
        let Some(wt) = self.wt.as_mut() else {
            return Classified::Known;
        };
        match kind {
            UniStreamKind::Control if wt.peer_control.is_none() => {
                wt.peer_control = Some(id);
                self.read_peer_control(ctx);
                Classified::Known
            }
            UniStreamKind::QpackEncoder | UniStreamKind::QpackDecoder if wt.qpack.len() < 2 => {
                wt.qpack.push(id);
                let _ = Self::drain_stream(&mut self.quic, id, |_| {});
                Classified::Known
            }
            UniStreamKind::Control | UniStreamKind::QpackEncoder | UniStreamKind::QpackDecoder => {
                Classified::Error(
                    error_code::H3_STREAM_CREATION_ERROR,
                    "a second HTTP/3 control or QPACK stream".into(),
                )
            }
            UniStreamKind::WebTransport { session_id } if Some(session_id) == wt.session_id() => {
                self.accept_channel_stream(ctx, id);
                Classified::Known
            }
            UniStreamKind::WebTransport { .. } => {
                self.stats.streams_refused += 1;
                Classified::Refused(error_code::H3_ID_ERROR)
            }
            UniStreamKind::Push | UniStreamKind::Unknown(_) => {
                Classified::Refused(error_code::H3_STREAM_CREATION_ERROR)
            }
        }
    }

    /// Client: a bidirectional stream from the server is the tickwire control stream of its
    /// session (`PROTOCOL.md` §12.4); there is one.
    fn classify_bidi(&mut self, ctx: &mut Ctx<'_>, id: StreamId, kind: BidiStreamKind) -> Classified {
        let Some(wt) = self.wt.as_ref() else {
            return Classified::Known;
        };
        match kind {
            BidiStreamKind::WebTransport { session_id }
                if self.control.is_none() && Some(session_id) == wt.connect.map(u64::from) =>
            {
                self.control = Some(id);
                let _ = self.quic.send_stream(id).set_priority(CONTROL_PRIORITY);
                self.read_control(ctx);
                Classified::Known
            }
            _ => Classified::Refused(H3_REQUEST_REJECTED),
        }
    }

    /// The peer's HTTP/3 control stream: its SETTINGS first, then frames that are skipped.
    fn read_peer_control(&mut self, ctx: &mut Ctx<'_>) {
        let Some(wt) = self.wt.as_mut() else { return };
        let Some(id) = wt.peer_control else { return };
        let limit = MAX_HEADERS_BYTES as usize + MAX_PREFIX;
        let buf = &mut wt.peer_control_rx;
        let mut end = StreamEnd::Open;
        loop {
            let room = limit.saturating_sub(buf.len());
            if room == 0 || end != StreamEnd::Open {
                break;
            }
            let before = buf.len();
            end = read_upto(&mut self.quic, id, before + room, buf);
            if buf.len() == before {
                break;
            }
            let mut at = 0;
            loop {
                match wt.peer_control_reader.read(&buf[at..]) {
                    Ok(FrameRead::NeedMore { consumed }) => {
                        at += consumed;
                        break;
                    }
                    Ok(FrameRead::Frame {
                        ty,
                        payload,
                        consumed,
                    }) => {
                        at += consumed;
                        let error = match (ty, &wt.peer_settings) {
                            (FrameType::Settings, None) => match Settings::decode_payload(payload) {
                                Ok(settings) => {
                                    wt.peer_settings = Some(settings);
                                    None
                                }
                                Err(e) => Some((e.h3_code(), e.to_string())),
                            },
                            (_, None) => Some((
                                H3_MISSING_SETTINGS,
                                "control stream begins without SETTINGS".into(),
                            )),
                            (FrameType::Settings | FrameType::Data | FrameType::Headers, Some(_)) => Some((
                                error_code::H3_FRAME_UNEXPECTED,
                                format!("{ty:?} frame on the control stream"),
                            )),
                            _ => None,
                        };
                        if let Some((code, detail)) = error {
                            self.close_h3(ctx, code, &detail);
                            return;
                        }
                    }
                    Err(e) => {
                        self.close_h3(ctx, e.h3_code(), &e.to_string());
                        return;
                    }
                }
            }
            buf.drain(..at);
        }
        if end != StreamEnd::Open {
            self.close_h3(ctx, 0x104, "HTTP/3 control stream closed"); // H3_CLOSED_CRITICAL_STREAM
            return;
        }
        // A CONNECT that arrived before the SETTINGS can be answered now.
        if self
            .wt
            .as_ref()
            .is_some_and(|wt| wt.connect.is_some() && wt.phase == Phase::Opening)
        {
            self.read_connect(ctx);
        }
    }

    /// The CONNECT stream: the request (server) or response (client), then capsules.
    fn read_connect(&mut self, ctx: &mut Ctx<'_>) {
        let Some(wt) = self.wt.as_mut() else { return };
        let Some(id) = wt.connect else { return };
        let limit = MAX_HEADERS_BYTES as usize + MAX_PREFIX;
        let room = limit.saturating_sub(wt.connect_rx.len());
        let before = wt.connect_rx.len();
        let end = read_upto(&mut self.quic, id, before + room, &mut wt.connect_rx);
        loop {
            let Some(wt) = self.wt.as_mut() else { return };
            let frame = match wt.connect_reader.read(&wt.connect_rx) {
                Ok(FrameRead::NeedMore { consumed }) => {
                    wt.connect_rx.drain(..consumed);
                    break;
                }
                Ok(FrameRead::Frame {
                    ty,
                    payload,
                    consumed,
                }) => (ty, payload.to_vec(), consumed),
                Err(e) => {
                    self.close_h3(ctx, e.h3_code(), &e.to_string());
                    return;
                }
            };
            let (ty, payload, consumed) = frame;
            let client = self.quic.side().is_client();
            match (ty, wt.phase) {
                (FrameType::Headers, Phase::Opening) if !client => {
                    if wt.peer_settings.is_none() {
                        return; // answered once the SETTINGS arrive
                    }
                    wt.connect_rx.drain(..consumed);
                    self.answer_connect(ctx, &payload);
                }
                (FrameType::Headers, Phase::Opening) => {
                    wt.connect_rx.drain(..consumed);
                    self.handle_connect_response(ctx, &payload);
                }
                (FrameType::Data, Phase::Live) => {
                    wt.connect_rx.drain(..consumed);
                    wt.capsules.extend_from_slice(&payload);
                    self.read_capsules(ctx);
                }
                _ => {
                    self.close_h3(
                        ctx,
                        error_code::H3_FRAME_UNEXPECTED,
                        &format!("{ty:?} frame on the CONNECT stream"),
                    );
                    return;
                }
            }
            if self.is_closed() {
                return;
            }
        }
        if self.wt.as_ref().is_some_and(|wt| wt.connect_rx.len() >= limit) {
            self.close_h3(
                ctx,
                error_code::H3_EXCESSIVE_LOAD,
                "CONNECT stream holds too much",
            );
            return;
        }
        if end != StreamEnd::Open && !self.is_closed() {
            // The peer ended the session without a capsule: a normal close (§12.6).
            self.peer_closed(
                ctx,
                ReasonCode::NORMAL,
                CloseInfo {
                    retry_after_ms: None,
                    detail: String::new(),
                },
            );
        }
    }

    /// Server: answers the CONNECT (`PROTOCOL.md` §12.3) and, on 200, starts the tickwire
    /// handshake on a new control stream, or sends the rejection already decided.
    fn answer_connect(&mut self, ctx: &mut Ctx<'_>, block: &[u8]) {
        let request = match ConnectRequest::decode(block) {
            Ok(request) => request,
            Err(e) => {
                self.close_h3(ctx, e.h3_code(), &e.to_string());
                return;
            }
        };
        let datagrams = self
            .wt
            .as_ref()
            .and_then(|wt| wt.peer_settings.as_ref())
            .is_some_and(Settings::supports_webtransport_datagrams);
        let default_config = WebTransportConfig::default();
        let config = ctx
            .server
            .as_ref()
            .and_then(|s| s.webtransport)
            .unwrap_or(&default_config);
        let verdict = if datagrams {
            request.check(config)
        } else {
            Err(400)
        };
        let Some(id) = self.wt.as_ref().and_then(|wt| wt.connect) else {
            return;
        };
        let status = verdict.err().unwrap_or(200);
        if !write_all(&mut self.quic, id, &connect::response_frame(status)) {
            self.close_h3(ctx, error_code::H3_EXCESSIVE_LOAD, "CONNECT response not written");
            return;
        }
        if status != 200 {
            let _ = self.quic.send_stream(id).finish();
            let detail = format!("WebTransport CONNECT refused with status {status}");
            self.close_h3_after(ctx, &detail);
            return;
        }
        self.session_live(id);
        match std::mem::replace(&mut self.state, State::ServerConnecting(None)) {
            State::ServerConnecting(Some(rejection)) => self.close_now(ctx, rejection),
            State::ServerConnecting(None) => self.open_wt_control(ctx),
            other => self.state = other,
        }
    }

    /// The session id is known: channel streams and datagrams carry it from now on.
    fn session_live(&mut self, connect: StreamId) {
        let sid = u64::from(connect);
        if let Some(wt) = self.wt.as_mut() {
            wt.phase = Phase::Live;
        }
        self.stream_prefix.clear();
        let mut prefix = Vec::new();
        let _ = h3::encode_uni_prefix(sid, &mut prefix);
        let _ = self.stream_prefix.extend_from_slice(&prefix);
        prefix.clear();
        let _ = h3::encode_datagram_prefix(sid, &mut prefix);
        self.dgram_prefix.clear();
        let _ = self.dgram_prefix.extend_from_slice(&prefix);
    }

    /// Server: opens the control stream and sends the Challenge (`PROTOCOL.md` §12.5).
    fn open_wt_control(&mut self, ctx: &mut Ctx<'_>) {
        let Some(sid) = self.wt.as_ref().and_then(|wt| wt.session_id()) else {
            return;
        };
        let Some(cert_hash) = self.wt.as_ref().and_then(|wt| wt.cert_hash) else {
            self.close_now(
                ctx,
                Rejection::new(ReasonCode::TRANSPORT_ERROR, "no WebTransport certificate"),
            );
            return;
        };
        let Some(id) = self.quic.streams().open(Dir::Bi) else {
            self.close_now(
                ctx,
                Rejection::new(ReasonCode::TRANSPORT_ERROR, "no control stream credit"),
            );
            return;
        };
        let _ = self.quic.send_stream(id).set_priority(CONTROL_PRIORITY);
        self.control = Some(id);
        let mut prefix = Vec::new();
        let _ = h3::encode_bidi_prefix(sid, &mut prefix);
        self.control_tx.push_back(QueuedFrame {
            bytes: Bytes::from(prefix),
            written: 0,
            deadline: None,
        });
        let challenge = Challenge {
            binding: BINDING_CERTIFICATE,
            cert_hash,
            nonce: (ctx.nonce)(),
        };
        let binding = challenge.binding_value();
        self.queue_control(&Control::Challenge(challenge));
        self.await_hello(ctx, binding);
        self.flush(ctx.now);
    }

    /// Client: the server's answer to the CONNECT.
    fn handle_connect_response(&mut self, ctx: &mut Ctx<'_>, block: &[u8]) {
        let status = match connect::decode_response(block) {
            Ok(status) => status,
            Err(e) => {
                self.close_h3(ctx, e.h3_code(), &e.to_string());
                return;
            }
        };
        if !(200..300).contains(&status) {
            let detail = format!("WebTransport CONNECT refused with status {status}");
            self.close_h3(ctx, error_code::H3_NO_ERROR, &detail);
            return;
        }
        if let Some(id) = self.wt.as_ref().and_then(|wt| wt.connect) {
            self.session_live(id);
        }
    }

    /// Client: checks the Challenge against the certificate TLS saw and returns the binding
    /// value, or closes with `BAD_HANDSHAKE` (`PROTOCOL.md` §12.5).
    pub(super) fn check_challenge(&self, challenge: &Challenge) -> Result<[u8; 32], Rejection> {
        let Some(wt) = self.wt.as_ref() else {
            return Err(Rejection::new(
                ReasonCode::BAD_HANDSHAKE,
                "Challenge on a native session",
            ));
        };
        if challenge.binding != BINDING_CERTIFICATE {
            return Err(Rejection::new(
                ReasonCode::BAD_HANDSHAKE,
                format!("unknown channel binding {}", challenge.binding),
            ));
        }
        if wt.cert_hash != Some(challenge.cert_hash) {
            return Err(Rejection::new(
                ReasonCode::BAD_HANDSHAKE,
                "Challenge names another certificate than the TLS connection's",
            ));
        }
        Ok(challenge.binding_value())
    }

    /// Capsules on the CONNECT stream: a close ends the session; others are skipped.
    fn read_capsules(&mut self, ctx: &mut Ctx<'_>) {
        loop {
            let Some(wt) = self.wt.as_mut() else { return };
            // A close capsule is at most 4 + MAX_CLOSE_MESSAGE bytes; other capsules are skipped,
            // and one too large to hold is refused.
            let (close, consumed) = match decode_capsule(&wt.capsules, MAX_HEADERS_BYTES) {
                Ok(Parse::NeedMore) => return,
                Ok(Parse::Parsed { kind, consumed }) => match kind {
                    Capsule::CloseSession(close) => (Some(close), consumed),
                    Capsule::Unknown { .. } => (None, consumed),
                },
                Err(e) => {
                    self.close_h3(ctx, e.h3_code(), &e.to_string());
                    return;
                }
            };
            wt.capsules.drain(..consumed);
            if let Some(close) = close {
                let info = decode_close_message(&close.message);
                let code = u16::try_from(close.code).unwrap_or(u16::MAX);
                self.peer_closed(ctx, ReasonCode(code), info);
                return;
            }
        }
    }

    /// The peer closed the session (capsule or FIN): report it, finish our side, close QUIC.
    fn peer_closed(&mut self, ctx: &mut Ctx<'_>, reason: ReasonCode, info: CloseInfo) {
        if let Some(id) = self.wt.as_ref().and_then(|wt| wt.connect) {
            let _ = self.quic.send_stream(id).finish();
        }
        self.close_quic_quietly(ctx.now);
        self.report_closed(
            ctx,
            reason,
            info.retry_after_ms,
            info.detail,
            crate::shared::Initiator::Peer,
        );
    }

    /// A tickwire close on a WebTransport connection (`PROTOCOL.md` §12.6): the close capsule
    /// when the session is live, else an HTTP/3 close. `false` on a native connection.
    pub(super) fn close_webtransport(&mut self, now: Instant, reason: ReasonCode, info: &CloseInfo) -> bool {
        let Some(wt) = self.wt.as_mut() else {
            return false;
        };
        let live = wt.phase == Phase::Live;
        match wt.connect {
            Some(id) if live => {
                let mut capsule = Vec::new();
                let close = CloseSession {
                    code: u32::from(reason.0),
                    message: encode_close_message(info),
                };
                let _ = close.encode(&mut capsule);
                let mut frame = Vec::with_capacity(capsule.len() + 4);
                let _ = encode_frame_header(FrameType::Data, capsule.len() as u64, &mut frame);
                frame.extend_from_slice(&capsule);
                let written = write_all(&mut self.quic, id, &frame);
                let _ = self.quic.send_stream(id).finish();
                if written {
                    wt.linger = Some(now + CLOSE_LINGER);
                } else {
                    self.close_quic_quietly(now);
                }
            }
            _ => {
                self.close_quic_quietly(now);
            }
        }
        true
    }

    /// While a sent close capsule lingers: the QUIC connection closes when the linger expires
    /// (or earlier, by the peer). Not as soon as the peer finishes the CONNECT stream: Chromium
    /// then sometimes reports the connection lost instead of the capsule's reason.
    pub(super) fn linger(&mut self, now: Instant, event: Option<&quinn_proto::Event>) {
        let Some(wt) = self.wt.as_mut() else { return };
        let (Some(deadline), Some(id)) = (wt.linger, wt.connect) else {
            return;
        };
        if let Some(quinn_proto::Event::Stream(quinn_proto::StreamEvent::Readable { id: readable })) = event {
            if *readable == id {
                let _ = Self::drain_stream(&mut self.quic, id, |_| {});
            }
        }
        if now >= deadline {
            wt.linger = None;
            self.close_quic_quietly(now);
        }
    }

    /// Closes the QUIC connection with `H3_NO_ERROR`: the session's end was already said (or
    /// there was none).
    fn close_quic_quietly(&mut self, now: Instant) {
        let code = VarInt::from_u64(error_code::H3_NO_ERROR).unwrap_or(VarInt::MAX);
        self.quic.close(now, code, Bytes::new());
    }

    /// Closes the connection for an HTTP/3 error (or a refused CONNECT) with `code`, reporting
    /// it as `TRANSPORT_ERROR`: there is no tickwire session to carry a reason code.
    fn close_h3(&mut self, ctx: &mut Ctx<'_>, code: u64, detail: &str) {
        if self.is_closed() {
            return;
        }
        self.quic.close(
            ctx.now,
            VarInt::from_u64(code).unwrap_or(VarInt::MAX),
            Bytes::copy_from_slice(detail.as_bytes()),
        );
        self.report_closed(
            ctx,
            ReasonCode::TRANSPORT_ERROR,
            None,
            detail.to_owned(),
            crate::shared::Initiator::Local,
        );
    }

    /// [`Self::close_h3`] after the response just written had time to leave: the close waits
    /// for the linger, like a capsule's.
    fn close_h3_after(&mut self, ctx: &mut Ctx<'_>, detail: &str) {
        if let Some(wt) = self.wt.as_mut() {
            wt.linger = Some(ctx.now + CLOSE_LINGER);
        }
        self.report_closed(
            ctx,
            ReasonCode::TRANSPORT_ERROR,
            None,
            detail.to_owned(),
            crate::shared::Initiator::Local,
        );
    }

    /// Strips the quarter-stream-id prefix of a received HTTP datagram; `None` (counted) if it
    /// names another session or none is live.
    pub(super) fn unwrap_datagram(&mut self, mut bytes: Bytes) -> Option<Bytes> {
        let Some(wt) = self.wt.as_ref() else {
            return Some(bytes);
        };
        let sid = wt.session_id();
        match h3::decode_datagram(&bytes) {
            Ok((id, rest)) if Some(id) == sid => {
                let skip = bytes.len() - rest.len();
                bytes::Buf::advance(&mut bytes, skip);
                Some(bytes)
            }
            _ => {
                self.stats.datagrams_dropped_malformed += 1;
                None
            }
        }
    }
}
