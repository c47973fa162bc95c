//! The HTTP/3 codec of WebTransport (`tickwire_core::webtransport::h3`): varints, stream
//! prefixes, frames, SETTINGS, datagram prefixes, capsules and application error codes.

use tickwire_core::webtransport::h3::{
    self, app_error_to_h3, decode_capsule, decode_datagram, encode_bidi_prefix, encode_datagram_prefix,
    encode_uni_prefix, h3_to_app_error, parse_bidi_stream, parse_uni_stream, varint, BidiStreamKind, Capsule,
    FrameRead, FrameReader, FrameType, Parse, Settings, UniStreamKind,
};

use crate::input::Input;

/// Every parser of the codec on the same bytes.
///
/// Input: `chunk: u8`, `code: u32`, then the bytes. `chunk % 16 + 1` is the slice size the
/// frame reader is fed in; `code` is an application error code and, with the first 8 bytes,
/// an HTTP/3 error code near the application range.
///
/// Asserts: decoded varints re-encode no longer and decode to the same value; parsed stream
/// prefixes, SETTINGS, datagrams and close capsules re-encode and parse to the same value and
/// never consume more than the input; a request stream consumes nothing; the frame reader finds
/// the same frames (or error) whether fed whole or in chunks, never returns an unknown type and
/// never a payload above its bound; the error code mapping round trips and never yields GREASE.
pub fn wt_h3(data: &[u8]) {
    let mut input = Input::new(data);
    let chunk = usize::from(input.u8() % 16) + 1;
    let code = input.u32();
    let bytes = input.rest();

    if let Ok((value, n)) = varint::decode(bytes) {
        let mut out = Vec::new();
        let len = varint::encode(value, &mut out).expect("a decoded varint encodes");
        assert!(len <= n);
        assert_eq!(varint::decode(&out), Ok((value, len)));
    }

    if let Ok(Parse::Parsed { kind, consumed }) = parse_uni_stream(bytes) {
        assert!(consumed >= 1 && consumed <= bytes.len());
        if let UniStreamKind::WebTransport { session_id } = kind {
            let mut out = Vec::new();
            encode_uni_prefix(session_id, &mut out).expect("a parsed session id encodes");
            assert_eq!(
                parse_uni_stream(&out),
                Ok(Parse::Parsed {
                    kind,
                    consumed: out.len()
                })
            );
        }
    }
    if let Ok(Parse::Parsed { kind, consumed }) = parse_bidi_stream(bytes) {
        assert!(consumed <= bytes.len());
        match kind {
            BidiStreamKind::Request { .. } => assert_eq!(consumed, 0),
            BidiStreamKind::WebTransport { session_id } => {
                let mut out = Vec::new();
                encode_bidi_prefix(session_id, &mut out).expect("a parsed session id encodes");
                assert_eq!(
                    parse_bidi_stream(&out),
                    Ok(Parse::Parsed {
                        kind,
                        consumed: out.len()
                    })
                );
            }
        }
    }

    let whole = read_frames(bytes, bytes.len().max(1));
    assert_eq!(read_frames(bytes, chunk), whole, "chunked reading differs");

    if let Ok(settings) = Settings::decode_payload(bytes) {
        assert!(settings.pairs().len() <= h3::MAX_SETTINGS);
        let mut out = Vec::new();
        settings.encode_payload(&mut out);
        assert!(out.len() <= bytes.len());
        assert_eq!(out.len(), settings.payload_len());
        assert_eq!(Settings::decode_payload(&out), Ok(settings));
    }

    if let Ok((session_id, payload)) = decode_datagram(bytes) {
        assert!(h3::is_client_bidi(session_id));
        let mut out = Vec::new();
        encode_datagram_prefix(session_id, &mut out).expect("a decoded session id encodes");
        out.extend_from_slice(payload);
        assert!(out.len() <= bytes.len());
        assert_eq!(decode_datagram(&out), Ok((session_id, payload)));
    }

    if let Ok(Parse::Parsed { kind, consumed }) = decode_capsule(bytes, 2048) {
        assert!(consumed <= bytes.len());
        if let Capsule::CloseSession(close) = kind {
            assert!(close.message.len() <= h3::MAX_CLOSE_MESSAGE);
            let mut out = Vec::new();
            close.encode(&mut out).expect("a decoded close capsule encodes");
            assert!(out.len() <= consumed);
            let consumed = out.len();
            assert_eq!(
                decode_capsule(&out, 2048),
                Ok(Parse::Parsed {
                    kind: Capsule::CloseSession(close),
                    consumed
                })
            );
        }
    }

    let h = app_error_to_h3(code);
    assert!(!h3::is_grease(h));
    assert_eq!(h3_to_app_error(h), Ok(code));
    let near = h3::APP_ERROR_FIRST
        .wrapping_sub(64)
        .wrapping_add(u64::from(code) * 33 / 32);
    if let Ok(n) = h3_to_app_error(near) {
        assert_eq!(app_error_to_h3(n), near);
    }
}

/// What a [`FrameReader`] bounded at 64 bytes finds in `bytes` fed `chunk` bytes at a time:
/// the frames, then the error if any.
fn read_frames(bytes: &[u8], chunk: usize) -> (Vec<(FrameType, Vec<u8>)>, Option<h3::FrameError>) {
    const MAX: usize = 64;
    let mut reader = FrameReader::new(MAX as u64);
    let mut pending = Vec::new();
    let mut frames = Vec::new();
    for piece in bytes.chunks(chunk) {
        pending.extend_from_slice(piece);
        loop {
            match reader.read(&pending) {
                Err(error) => return (frames, Some(error)),
                Ok(FrameRead::NeedMore { consumed }) => {
                    assert!(consumed <= pending.len());
                    pending.drain(..consumed);
                    break;
                }
                Ok(FrameRead::Frame {
                    ty,
                    payload,
                    consumed,
                }) => {
                    assert!(!matches!(ty, FrameType::Unknown(_)));
                    assert!(payload.len() <= MAX && consumed <= pending.len());
                    frames.push((ty, payload.to_vec()));
                    pending.drain(..consumed);
                }
            }
        }
        assert!(pending.len() <= MAX + 16 + chunk, "{} bytes held", pending.len());
    }
    (frames, None)
}

/// The extended CONNECT's header blocks (QPACK, static table and literals) as a server and a
/// client read them, and the server's verdict.
///
/// Input: `origin_rule: u8`, then a HEADERS payload.
///
/// Asserts: nothing panics; a request that decodes re-encodes to a block that decodes to the
/// same fields; the verdict is 200-equivalent, 400, 403 or 404, and the same for the re-decoded
/// request.
pub fn wt_connect(data: &[u8]) {
    use tickwire_core::webtransport::connect::{decode_response, ConnectRequest, WebTransportConfig};

    let mut input = Input::new(data);
    let origin_rule = input.u8();
    let block = input.rest();
    let _ = decode_response(block);
    let Ok(request) = ConnectRequest::decode(block) else {
        return;
    };
    let config = WebTransportConfig {
        allowed_origins: (origin_rule & 1 == 1).then(|| vec!["https://game.example".to_owned()]),
        ..WebTransportConfig::default()
    };
    let verdict = request.check(&config);
    assert!(matches!(verdict, Ok(()) | Err(400 | 403 | 404)), "{verdict:?}");
    let frame = request.encode_frame();
    let mut reader = FrameReader::new(u64::MAX);
    let Ok(FrameRead::Frame {
        ty: FrameType::Headers,
        payload,
        ..
    }) = reader.read(&frame)
    else {
        panic!("an encoded request is one HEADERS frame");
    };
    let again = ConnectRequest::decode(payload).expect("an encoded request decodes");
    assert_eq!(again, request);
    assert_eq!(again.check(&config), verdict);
}

/// A WebTransport session (`PROTOCOL.md` §12) whose peer misbehaves below the tickwire framing,
/// beside a well-behaved native client on the same server: the whole engine, over real QUIC and
/// TLS in virtual time, reaching the stream classification, the HTTP/3 control and CONNECT
/// streams, the prefixes and the capsules inside a connection.
///
/// Input: up to [`MAX_SESSION_OPS`] operations, each `op: u8` and its fields, where `side & 1`
/// picks the misbehaving end (0 the WebTransport client, 1 the server) and lengths are
/// `len: u16 % 2048`:
/// - `op % 8 == 0` — `side, prefixed: u8, len`, bytes: open a uni stream and write
///   `0x54‖session id` first when `prefixed & 1`, then the bytes;
/// - 1 — `side, len`, bytes: open a bidi stream (an extra request, or a second control stream)
///   and write the bytes;
/// - 2 — `side, stream: u8, len`, bytes: write to QUIC stream `stream` as it is (0 is the
///   CONNECT stream, 1 the control stream);
/// - 3 — `side, stream: u8`: reset that stream;
/// - 4 — `side, prefixed, len`, bytes: one QUIC datagram, after the session's quarter-stream-id
///   prefix when `prefixed & 1`;
/// - 5 — `ms: u16`: run the network `ms % 10 000` milliseconds;
/// - 6 — `side, len`, bytes: an ordinary message on the GAME channel through the engine;
/// - 7 — the native client sends a numbered message on the GAME channel.
///
/// Asserts: nothing panics; the native client stays joined and every message it sent reaches
/// the server, in order, whatever the WebTransport peer did; the server never holds more than
/// the two sessions; a WebTransport connection that is gone was reported with a
/// `Disconnected` event on both ends once the network has run for the close to settle.
pub fn wt_session(data: &[u8]) {
    use std::time::Duration;

    use tickwire_core::testing::{epoch, Net};
    use tickwire_core::webtransport::WebTransportConfig;
    use tickwire_core::{ChannelId, Event};

    let mut input = Input::new(data);
    let mut net = Net::new(epoch(), 0x5E55);
    let server = net.add_webtransport_server(Net::config(), WebTransportConfig::default());
    let wt_client = net.add_client(Net::config());
    let native_client = net.add_client(Net::config());
    let (wt_conn, wt_sconn) = net.join_webtransport(wt_client, server);
    let (native_conn, native_sconn) = net.join(native_client, server);
    // The CONNECT stream's id names the session (RFC 9297 §2; PROTOCOL.md §12.4).
    const SESSION_ID: u64 = 0;
    let mut sent_native = Vec::new();
    for _ in 0..MAX_SESSION_OPS {
        if input.is_empty() {
            break;
        }
        let op = input.u8() % 8;
        let (node, conn) = match op {
            5 | 7 => (native_client, native_conn),
            _ if input.u8() & 1 == 0 => (wt_client, wt_conn),
            _ => (server, wt_sconn),
        };
        match op {
            0 => {
                let prefixed = input.u8() & 1 == 1;
                let bytes = input.sized_bytes(MAX_RAW_BYTES);
                if let Some(stream) = net.raw_open_uni(node, conn) {
                    let mut out = Vec::new();
                    if prefixed {
                        encode_uni_prefix(SESSION_ID, &mut out).expect("session 0 encodes");
                    }
                    out.extend_from_slice(bytes);
                    net.raw_write(node, conn, stream, &out);
                }
            }
            1 => {
                let bytes = input.sized_bytes(MAX_RAW_BYTES);
                if let Some(stream) = net.raw_open_bidi(node, conn) {
                    net.raw_write(node, conn, stream, bytes);
                }
            }
            2 => {
                let stream = u64::from(input.u8());
                let bytes = input.sized_bytes(MAX_RAW_BYTES);
                net.raw_write(node, conn, stream, bytes);
            }
            3 => {
                let stream = u64::from(input.u8());
                net.raw_reset(node, conn, stream);
            }
            4 => {
                let prefixed = input.u8() & 1 == 1;
                let bytes = input.sized_bytes(MAX_RAW_BYTES);
                let mut out = Vec::new();
                if prefixed {
                    encode_datagram_prefix(SESSION_ID, &mut out).expect("session 0 encodes");
                }
                out.extend_from_slice(bytes);
                net.raw_datagram(node, conn, out);
            }
            5 => net.run_for(Duration::from_millis(u64::from(input.u16() % 10_000))),
            6 => {
                let bytes = input.sized_bytes(MAX_RAW_BYTES).to_vec();
                let now = net.now;
                // A closed session refuses; that is the engine's answer, not a failure.
                let _ = net
                    .node_mut(node)
                    .endpoint
                    .send(now, conn, ChannelId::GAME, bytes.into());
                net.drain(node);
            }
            _ => {
                let payload = (sent_native.len() as u32).to_le_bytes().to_vec();
                net.send(native_client, native_conn, ChannelId::GAME, payload.clone());
                sent_native.push(payload);
            }
        }
        assert!(net.node(server).endpoint.sessions_live() <= 2);
    }
    // Long enough for a close's 2 s linger and the QUIC draining period (3 PTO) to pass.
    net.run_for(Duration::from_secs(10));

    assert!(
        net.node(native_client).connected(native_conn),
        "the native client lost its session: {:?}",
        net.node(native_client).closure_of(native_conn)
    );
    let received = net.node(server).messages(native_sconn, ChannelId::GAME);
    assert_eq!(received, sent_native, "the native client's messages");
    for (node, conn) in [(wt_client, wt_conn), (server, wt_sconn)] {
        let n = net.node(node);
        if n.endpoint.session(conn).is_none() {
            assert!(
                matches!(n.closure_of(conn), Some(Event::Disconnected { .. })),
                "a WebTransport session ended without a Disconnected event"
            );
        }
    }
}

/// At most this many operations per [`wt_session`] input: each may run real QUIC for a while.
pub const MAX_SESSION_OPS: usize = 24;

/// Lengths of [`wt_session`]'s raw writes and datagrams are taken modulo this.
const MAX_RAW_BYTES: usize = 2048;
