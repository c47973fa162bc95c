use proptest::prelude::*;

use super::*;

fn varint_bytes(value: u64) -> Vec<u8> {
    let mut out = Vec::new();
    varint::encode(value, &mut out).unwrap();
    out
}

#[test]
fn varint_golden_bytes_rfc9000_appendix_a() {
    // RFC 9000 Appendix A.1 examples.
    assert_eq!(
        varint::decode(&[0xc2, 0x19, 0x7c, 0x5e, 0xff, 0x14, 0xe8, 0x8c]),
        Ok((151_288_809_941_952_652, 8))
    );
    assert_eq!(varint::decode(&[0x9d, 0x7f, 0x3e, 0x7d]), Ok((494_878_333, 4)));
    assert_eq!(varint::decode(&[0x7b, 0xbd]), Ok((15_293, 2)));
    assert_eq!(varint::decode(&[0x25]), Ok((37, 1)));
    assert_eq!(
        varint::decode(&[0x40, 0x25]),
        Ok((37, 2)),
        "non-minimal encodings are accepted"
    );
    assert_eq!(
        varint_bytes(151_288_809_941_952_652),
        [0xc2, 0x19, 0x7c, 0x5e, 0xff, 0x14, 0xe8, 0x8c]
    );
    assert_eq!(varint_bytes(494_878_333), [0x9d, 0x7f, 0x3e, 0x7d]);
    assert_eq!(varint_bytes(15_293), [0x7b, 0xbd]);
    assert_eq!(varint_bytes(37), [0x25]);
    assert_eq!(varint_bytes(63), [0x3f]);
    assert_eq!(varint_bytes(64), [0x40, 0x40]);
}

#[test]
fn varint_errors() {
    let mut out = Vec::new();
    assert_eq!(
        varint::encode(varint::MAX + 1, &mut out),
        Err(VarIntError::TooLarge(varint::MAX + 1))
    );
    assert_eq!(
        varint::encode(u64::MAX, &mut out),
        Err(VarIntError::TooLarge(u64::MAX))
    );
    assert!(out.is_empty());
    assert_eq!(varint::encode(varint::MAX, &mut out), Ok(8));
    assert_eq!(out, [0xff; 8]);
    assert_eq!(
        varint::decode(&[]),
        Err(VarIntError::Truncated {
            needed: 1,
            available: 0
        })
    );
    assert_eq!(
        varint::decode(&[0x80, 0, 0]),
        Err(VarIntError::Truncated {
            needed: 4,
            available: 3
        })
    );
}

#[test]
fn grease_codepoints() {
    assert!(is_grease(0x21));
    assert!(is_grease(0x40));
    assert!(is_grease(0x1f * 1000 + 0x21));
    assert!(!is_grease(0x20));
    assert!(!is_grease(0x00));
    assert!(!is_grease(0x54));
}

#[test]
fn uni_stream_prefixes() {
    let parsed = |kind, consumed| Ok(Parse::Parsed { kind, consumed });
    assert_eq!(parse_uni_stream(&[0x00, 0x04]), parsed(UniStreamKind::Control, 1));
    assert_eq!(parse_uni_stream(&[0x01]), parsed(UniStreamKind::Push, 1));
    assert_eq!(parse_uni_stream(&[0x02]), parsed(UniStreamKind::QpackEncoder, 1));
    assert_eq!(parse_uni_stream(&[0x03]), parsed(UniStreamKind::QpackDecoder, 1));
    // 0x54 is a two-byte varint: 0x40 0x54, then session 0.
    assert_eq!(
        parse_uni_stream(&[0x40, 0x54, 0x00, 0xaa]),
        parsed(UniStreamKind::WebTransport { session_id: 0 }, 3)
    );
    assert_eq!(
        parse_uni_stream(&[0x40, 0x54, 0x40, 0x80]),
        parsed(UniStreamKind::WebTransport { session_id: 128 }, 4)
    );
    let mut out = Vec::new();
    encode_uni_prefix(0, &mut out).unwrap();
    assert_eq!(out, [0x40, 0x54, 0x00]);
    // GREASE type 0x21 and an unknown type.
    assert_eq!(parse_uni_stream(&[0x21]), parsed(UniStreamKind::Unknown(0x21), 1));
    assert_eq!(
        parse_uni_stream(&[0x40, 0x40, 0xff]),
        parsed(UniStreamKind::Unknown(0x40), 2)
    );
    // Incremental: every strict prefix needs more.
    assert_eq!(parse_uni_stream(&[]), Ok(Parse::NeedMore));
    assert_eq!(parse_uni_stream(&[0x40]), Ok(Parse::NeedMore));
    assert_eq!(parse_uni_stream(&[0x40, 0x54]), Ok(Parse::NeedMore));
    assert_eq!(parse_uni_stream(&[0x40, 0x54, 0x40]), Ok(Parse::NeedMore));
    // Session ids must be client-initiated bidirectional stream ids.
    assert_eq!(
        parse_uni_stream(&[0x40, 0x54, 0x02]),
        Err(StreamPrefixError::InvalidSessionId(2))
    );
    assert_eq!(
        StreamPrefixError::InvalidSessionId(2).h3_code(),
        error_code::H3_ID_ERROR
    );
    assert_eq!(
        encode_uni_prefix(3, &mut out),
        Err(StreamPrefixError::InvalidSessionId(3))
    );
}

#[test]
fn bidi_stream_prefixes() {
    assert_eq!(
        parse_bidi_stream(&[0x40, 0x41, 0x04, 0x99]),
        Ok(Parse::Parsed {
            kind: BidiStreamKind::WebTransport { session_id: 4 },
            consumed: 3
        })
    );
    // A HEADERS frame (type 0x01) starts a request stream; nothing is consumed.
    assert_eq!(
        parse_bidi_stream(&[0x01, 0x10]),
        Ok(Parse::Parsed {
            kind: BidiStreamKind::Request {
                first_frame_type: 0x01
            },
            consumed: 0
        })
    );
    assert_eq!(parse_bidi_stream(&[0x40, 0x41]), Ok(Parse::NeedMore));
    assert_eq!(
        parse_bidi_stream(&[0x40, 0x41, 0x01]),
        Err(StreamPrefixError::InvalidSessionId(1))
    );
    let mut out = Vec::new();
    encode_bidi_prefix(8, &mut out).unwrap();
    assert_eq!(out, [0x40, 0x41, 0x08]);
}

/// The server's SETTINGS frame, byte for byte.
const SERVER_SETTINGS_FRAME: [u8; 24] = [
    0x04, 0x16, // SETTINGS, 22 bytes
    0x01, 0x00, // QPACK_MAX_TABLE_CAPACITY 0
    0x07, 0x00, // QPACK_BLOCKED_STREAMS 0
    0x08, 0x01, // ENABLE_CONNECT_PROTOCOL 1
    0x33, 0x01, // H3_DATAGRAM 1
    0xab, 0x60, 0x37, 0x42, 0x01, // ENABLE_WEBTRANSPORT 1
    0xc0, 0x00, 0x00, 0x00, 0xc6, 0x71, 0x70, 0x6a, 0x01, // WEBTRANSPORT_MAX_SESSIONS 1
];

#[test]
fn server_settings_golden_bytes() {
    let mut out = Vec::new();
    Settings::server().encode_frame(&mut out);
    assert_eq!(out, SERVER_SETTINGS_FRAME);
    let Ok(Parse::Parsed {
        kind: header,
        consumed,
    }) = decode_frame_header(&out)
    else {
        panic!()
    };
    assert_eq!(
        header,
        FrameHeader {
            ty: FrameType::Settings,
            length: 22
        }
    );
    assert_eq!(consumed, 2);
    let decoded = Settings::decode_payload(&out[2..]).unwrap();
    assert_eq!(decoded, Settings::server());
    assert!(decoded.supports_webtransport_datagrams());
    assert_eq!(decoded.get(SETTINGS_ENABLE_WEBTRANSPORT), Some(1));
}

#[test]
fn client_settings_datagram_support() {
    let chrome = Settings::from_pairs([
        (0x01, 0),
        (0x07, 0),
        (0x33, 1),
        (0xff_d277, 1),
        (0x2b60_3742, 1),
        (0x1f * 7 + 0x21, 9),
    ])
    .unwrap();
    assert!(chrome.supports_webtransport_datagrams());
    let draft_only = Settings::from_pairs([(0xff_d277, 1)]).unwrap();
    assert!(draft_only.supports_webtransport_datagrams());
    let off = Settings::from_pairs([(0x33, 0), (0xff_d277, 2)]).unwrap();
    assert!(!off.supports_webtransport_datagrams());
    assert!(!Settings::default().supports_webtransport_datagrams());
}

#[test]
fn settings_errors() {
    assert_eq!(
        Settings::decode_payload(&[0x33, 0x01, 0x33, 0x00]),
        Err(SettingsError::Duplicate(0x33))
    );
    assert_eq!(
        SettingsError::Duplicate(0x33).h3_code(),
        error_code::H3_SETTINGS_ERROR
    );
    assert_eq!(
        Settings::decode_payload(&[0x02, 0x00]),
        Err(SettingsError::Http2Reserved(0x02))
    );
    assert_eq!(Settings::decode_payload(&[0x33]), Err(SettingsError::Truncated));
    assert_eq!(
        Settings::decode_payload(&[0x33, 0x40]),
        Err(SettingsError::Truncated)
    );
    assert_eq!(SettingsError::Truncated.h3_code(), error_code::H3_FRAME_ERROR);
    let mut many = Vec::new();
    for id in 0..=MAX_SETTINGS as u64 {
        varint::encode(0x100 + id, &mut many).unwrap();
        many.push(0);
    }
    assert_eq!(Settings::decode_payload(&many), Err(SettingsError::TooMany));
    assert_eq!(
        Settings::from_pairs([(varint::MAX + 1, 0)]),
        Err(SettingsError::VarInt(VarIntError::TooLarge(varint::MAX + 1)))
    );
    assert_eq!(Settings::decode_payload(&[]), Ok(Settings::default()));
}

#[test]
fn frame_types() {
    for code in [0x02, 0x06, 0x08, 0x09] {
        assert_eq!(FrameType::from_code(code), Err(FrameError::Http2Reserved(code)));
    }
    assert_eq!(
        FrameError::Http2Reserved(2).h3_code(),
        error_code::H3_FRAME_UNEXPECTED
    );
    for code in [0x00, 0x01, 0x03, 0x04, 0x05, 0x07, 0x0d, 0x21, 0x2843] {
        assert_eq!(FrameType::from_code(code).unwrap().code(), code);
    }
    let mut out = Vec::new();
    encode_frame_header(FrameType::Headers, 300, &mut out).unwrap();
    assert_eq!(out, [0x01, 0x41, 0x2c]);
    assert_eq!(
        encode_frame_header(FrameType::Data, varint::MAX + 1, &mut out),
        Err(VarIntError::TooLarge(varint::MAX + 1))
    );
    assert_eq!(out.len(), 3);
}

#[test]
fn frame_reader_skips_unknown_and_grease() {
    // GREASE frame 0x21 with 3 bytes, unknown 0x40 0x40 with 0 bytes, then HEADERS "ab".
    let stream = [
        0x21, 0x03, 1, 2, 3, 0x40, 0x40, 0x00, 0x01, 0x02, b'a', b'b', 0x00,
    ];
    let mut reader = FrameReader::new(16);
    assert_eq!(
        reader.read(&stream),
        Ok(FrameRead::Frame {
            ty: FrameType::Headers,
            payload: b"ab",
            consumed: 12
        })
    );
    assert_eq!(
        reader.read(&stream[12..]),
        Ok(FrameRead::NeedMore { consumed: 0 })
    );

    // The same stream one byte at a time, keeping the unconsumed tail.
    let mut reader = FrameReader::new(16);
    let mut pending = Vec::new();
    let mut frames = Vec::new();
    for &b in &stream {
        pending.push(b);
        loop {
            match reader.read(&pending).unwrap() {
                FrameRead::NeedMore { consumed } => {
                    pending.drain(..consumed);
                    break;
                }
                FrameRead::Frame {
                    ty,
                    payload,
                    consumed,
                } => {
                    frames.push((ty, payload.to_vec()));
                    pending.drain(..consumed);
                }
            }
        }
        assert!(pending.len() <= 16 + 16);
    }
    assert_eq!(frames, [(FrameType::Headers, b"ab".to_vec())]);
    assert_eq!(pending, [0x00]);

    // A huge unknown frame is skipped without buffering.
    let mut reader = FrameReader::new(16);
    assert_eq!(
        reader.read(&[0x21, 0x80, 0x10, 0x00, 0x00, 9, 9]),
        Ok(FrameRead::NeedMore { consumed: 7 })
    );
    assert_eq!(reader.skipping(), 0x10_0000 - 2);

    // Known frames above the bound are refused.
    let mut reader = FrameReader::new(16);
    let err = FrameError::TooLarge {
        ty: 0x00,
        length: 17,
        max: 16,
    };
    assert_eq!(reader.read(&[0x00, 0x11]), Err(err));
    assert_eq!(err.h3_code(), error_code::H3_EXCESSIVE_LOAD);
    assert_eq!(reader.read(&[0x08, 0x00]), Err(FrameError::Http2Reserved(0x08)));
}

#[test]
fn datagram_prefix() {
    let mut out = Vec::new();
    encode_datagram_prefix(0, &mut out).unwrap();
    assert_eq!(out, [0x00]);
    out.clear();
    encode_datagram_prefix(4 * 100, &mut out).unwrap();
    assert_eq!(out, [0x40, 0x64]);
    assert_eq!(
        encode_datagram_prefix(1, &mut out),
        Err(DatagramError::InvalidSessionId(1))
    );
    assert_eq!(
        encode_datagram_prefix(6, &mut out),
        Err(DatagramError::InvalidSessionId(6))
    );
    assert_eq!(decode_datagram(&[0x00, b'h', b'i']), Ok((0, &b"hi"[..])));
    assert_eq!(decode_datagram(&[0x40, 0x64]), Ok((400, &[][..])));
    assert_eq!(decode_datagram(&[]), Err(DatagramError::Truncated));
    assert_eq!(decode_datagram(&[0x40]), Err(DatagramError::Truncated));
    assert_eq!(
        decode_datagram(&[0xff; 8]),
        Err(DatagramError::QuarterIdOutOfRange(varint::MAX))
    );
    let top = varint::MAX / 4 * 4;
    out.clear();
    encode_datagram_prefix(top, &mut out).unwrap();
    assert_eq!(decode_datagram(&out), Ok((top, &[][..])));
}

#[test]
fn close_capsule_golden_bytes() {
    let close = CloseSession {
        code: 0x0102_0304,
        message: "bye".to_owned(),
    };
    let mut out = Vec::new();
    close.encode(&mut out).unwrap();
    assert_eq!(out, [0x68, 0x43, 0x07, 0x01, 0x02, 0x03, 0x04, b'b', b'y', b'e']);
    assert_eq!(
        decode_capsule(&out, 2048),
        Ok(Parse::Parsed {
            kind: Capsule::CloseSession(close),
            consumed: 10
        })
    );
    for end in 0..out.len() {
        assert_eq!(decode_capsule(&out[..end], 2048), Ok(Parse::NeedMore));
    }
    assert_eq!(
        decode_capsule(&[0x68, 0x43, 0x03, 0, 0, 0], 2048),
        Err(CapsuleError::CloseTooShort)
    );
    assert_eq!(
        decode_capsule(&[0x68, 0x43, 0x05, 0, 0, 0, 0, 0xff], 2048),
        Err(CapsuleError::MessageNotUtf8)
    );
    assert_eq!(
        CapsuleError::MessageNotUtf8.h3_code(),
        error_code::H3_MESSAGE_ERROR
    );
    // Unknown capsules are returned for the caller to drop.
    assert_eq!(
        decode_capsule(&[0x21, 0x01, 0x7f, 0x00], 2048),
        Ok(Parse::Parsed {
            kind: Capsule::Unknown {
                ty: 0x21,
                payload: &[0x7f]
            },
            consumed: 3
        })
    );
    assert_eq!(
        decode_capsule(&[0x21, 0x40, 0x20], 16),
        Err(CapsuleError::TooLarge {
            ty: 0x21,
            length: 32,
            max: 16
        })
    );
}

#[test]
fn close_message_bound() {
    let longest = CloseSession {
        code: 7,
        message: "x".repeat(MAX_CLOSE_MESSAGE),
    };
    let mut out = Vec::new();
    longest.encode(&mut out).unwrap();
    assert_eq!(out.len(), 2 + 2 + 4 + MAX_CLOSE_MESSAGE);
    assert_eq!(
        decode_capsule(&out, 4096),
        Ok(Parse::Parsed {
            kind: Capsule::CloseSession(longest),
            consumed: out.len()
        })
    );
    let too_long = CloseSession {
        code: 7,
        message: "x".repeat(MAX_CLOSE_MESSAGE + 1),
    };
    let mut out = Vec::new();
    assert_eq!(
        too_long.encode(&mut out),
        Err(CapsuleError::MessageTooLong(MAX_CLOSE_MESSAGE + 1))
    );
    assert!(out.is_empty());
    let mut payload = vec![0; 4];
    payload.extend(std::iter::repeat_n(b'x', MAX_CLOSE_MESSAGE + 1));
    assert_eq!(
        CloseSession::decode_payload(&payload),
        Err(CapsuleError::MessageTooLong(MAX_CLOSE_MESSAGE + 1))
    );
}

#[test]
fn app_error_code_mapping() {
    assert_eq!(app_error_to_h3(0), 0x52e4_a40f_a8db);
    assert_eq!(app_error_to_h3(29), 0x52e4_a40f_a8f8);
    // 0x52e4a40fa8f9 is GREASE: 30 maps just past it.
    assert_eq!(app_error_to_h3(30), 0x52e4_a40f_a8fa);
    assert_eq!(app_error_to_h3(60), 0x52e4_a40f_a919);
    assert_eq!(app_error_to_h3(u32::MAX), APP_ERROR_LAST);
    for h in [0x52e4_a40f_a8f9, 0x52e4_a40f_a918, 0x52e4_a40f_a937] {
        assert!(is_grease(h));
        assert_eq!(h3_to_app_error(h), Err(AppErrorCodeError::Grease(h)));
    }
    assert_eq!(
        h3_to_app_error(APP_ERROR_FIRST - 1),
        Err(AppErrorCodeError::OutOfRange(APP_ERROR_FIRST - 1))
    );
    assert_eq!(
        h3_to_app_error(APP_ERROR_LAST + 1),
        Err(AppErrorCodeError::OutOfRange(APP_ERROR_LAST + 1))
    );
    assert_eq!(
        h3_to_app_error(error_code::H3_NO_ERROR),
        Err(AppErrorCodeError::OutOfRange(0x100))
    );
    for n in (0..200).chain([u32::MAX - 100, u32::MAX - 1, u32::MAX]) {
        let h = app_error_to_h3(n);
        assert!(!is_grease(h));
        assert_eq!(h3_to_app_error(h), Ok(n));
    }
    // Every non-GREASE code in the first stretch maps to consecutive application codes.
    let mut next = 0u32;
    for h in APP_ERROR_FIRST..APP_ERROR_FIRST + 1000 {
        if let Ok(n) = h3_to_app_error(h) {
            assert_eq!(n, next);
            next += 1;
        }
    }
}

proptest! {
    #[test]
    fn varint_round_trip(value in 0..=varint::MAX) {
        let bytes = varint_bytes(value);
        prop_assert_eq!(bytes.len(), varint::encoded_len(value).unwrap());
        prop_assert_eq!(varint::decode(&bytes), Ok((value, bytes.len())));
    }

    #[test]
    fn varint_decode_any(bytes in proptest::collection::vec(any::<u8>(), 0..10)) {
        if let Ok((value, n)) = varint::decode(&bytes) {
            prop_assert!(value <= varint::MAX);
            prop_assert!(varint_bytes(value).len() <= n);
        }
    }

    #[test]
    fn settings_round_trip(pairs in proptest::collection::btree_map(0..=varint::MAX, 0..=varint::MAX, 0..MAX_SETTINGS)) {
        let pairs: Vec<(u64, u64)> = pairs.into_iter().filter(|(id, _)| !(0x02..=0x05).contains(id)).collect();
        let settings = Settings::from_pairs(pairs.iter().copied()).unwrap();
        let mut frame = Vec::new();
        settings.encode_frame(&mut frame);
        let Ok(Parse::Parsed { kind: header, consumed }) = decode_frame_header(&frame) else {
            return Err(TestCaseError::fail("no header"));
        };
        prop_assert_eq!(header.ty, FrameType::Settings);
        prop_assert_eq!(header.length as usize, frame.len() - consumed);
        prop_assert_eq!(settings.payload_len(), frame.len() - consumed);
        let decoded = Settings::decode_payload(&frame[consumed..]).unwrap();
        prop_assert_eq!(decoded.pairs(), &pairs[..]);
    }

    #[test]
    fn parsers_accept_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = parse_uni_stream(&bytes);
        let _ = parse_bidi_stream(&bytes);
        let _ = Settings::decode_payload(&bytes);
        let _ = decode_datagram(&bytes);
        let _ = decode_capsule(&bytes, 1024);
        let _ = FrameReader::new(32).read(&bytes);
    }
}
