//! Inputs for the decoder targets: real encodings of every message kind, made with the real
//! encoders and signers, and a few malformed ones.

use tickwire_core::attest::{
    measurement_pcr_digest, quote_extra_data, Attest, ClockInfo, PcrSelection, Quote, SimulatedTpm,
    TpmProvider, MEASUREMENT_PCR,
};
use tickwire_core::testing::internals::split;
use tickwire_core::vs::{
    Attestation, JoinRequest, PlayTicket, PlayTicketClaims, ProtectedReceipt, ReceiptClaims, Revocation,
    TranscriptDigest, VsMessage, VS_NONCE_LEN,
};
use tickwire_core::wire::{
    self, encode_frame, type_byte, AcceptBody, CloseInfo, Control, DatagramKind, Extension, ExtensionKind,
    FragmentHeader, HelloBody, Ping, Pong, Role, Signature, Signed, MAX_CONTROL_FRAME_BYTES, NONCE_LEN,
};
use tickwire_core::{JoinTicketClaims, TicketIssuer};

use crate::fixtures::{
    ak_public, expected_extra_data, measurement_selection, sign_attest, signing_key, BINARY_SHA256,
    CLIENT_KEY, CONFIG_SHA256, GS_ID, GS_KEY, KEY_ID, NOW_MS,
};

fn issuer() -> TicketIssuer {
    TicketIssuer::new(KEY_ID, signing_key())
}

fn join_ticket_claims(gs_id: u64, now: u64, lifetime: u64) -> JoinTicketClaims {
    JoinTicketClaims::builder(CLIENT_KEY, [0x0A; 16])
        .client_id(42)
        .audience(gs_id)
        .valid_from(now)
        .lifetime_ms(lifetime)
        .permissions(1)
        .build()
}

fn hello() -> HelloBody {
    HelloBody {
        version_min: 1,
        version_max: 1,
        schema_hash: [0x5C; 32],
        nonce: [0x01; NONCE_LEN],
        capabilities: 3,
        role: Role::Player,
        identity_key: CLIENT_KEY,
        join_ticket: Some(issuer().issue(&join_ticket_claims(GS_ID, NOW_MS, 60_000))),
        extensions: vec![Extension {
            kind: ExtensionKind::COMPRESSION_DICTIONARY,
            data: vec![0xDD; 32],
        }],
    }
}

fn play_ticket_claims() -> PlayTicketClaims {
    PlayTicketClaims {
        gs_id: GS_ID,
        gs_key: GS_KEY,
        issued_at_ms: NOW_MS,
        expires_at_ms: NOW_MS + 6_000,
        sequence: 1,
        measurement: measurement_pcr_digest(BINARY_SHA256, CONFIG_SHA256),
    }
}

fn a_play_ticket() -> PlayTicket {
    PlayTicket::issue(KEY_ID, &signing_key(), &play_ticket_claims())
}

fn receipt_claims() -> ReceiptClaims {
    ReceiptClaims {
        gs_id: GS_ID,
        session_id: 9,
        sequence: 1,
        tick: 600,
        digest: [0xD1; 32],
        received_at_ms: NOW_MS,
    }
}

fn accept() -> AcceptBody {
    AcceptBody {
        version: 1,
        schema_hash: [0x5C; 32],
        client_nonce: [0x01; NONCE_LEN],
        server_nonce: [0x02; NONCE_LEN],
        session_id: 0x1234_5678,
        role: Role::Player,
        permissions: 1,
        capabilities: 3,
        server_key: GS_KEY,
        server_tick: 120,
        tick_rate_hz: 60,
        play_ticket: Some(a_play_ticket().0.to_bytes()),
        extensions: vec![Extension {
            kind: ExtensionKind(0x4242),
            data: b"a later version's field".to_vec(),
        }],
    }
}

fn signed(body: Vec<u8>) -> Signed {
    use ed25519_dalek::Signer;
    Signed {
        signature: Signature(signing_key().sign(&body).to_bytes()),
        body,
    }
}

/// `decompress` inputs: real encodings (stored, zstd, dictionary), a bomb over the cap, and
/// round trips.
fn decompress_inputs() -> Vec<Vec<u8>> {
    use tickwire_core::config::CompressionConfig;
    use tickwire_core::testing::internals::encode_message;
    use tickwire_core::wire::capability;

    let snapshot: Vec<u8> = (0..600u32).map(|i| (i / 24) as u8).collect();
    let words = b"position 3 velocity 1 health 90 ammo 12 team blue tick 77 ".repeat(3);
    let plain = CompressionConfig {
        enabled: true,
        ..CompressionConfig::default()
    };
    let with_dictionary = CompressionConfig {
        dictionary: Some(crate::compress::dictionary()),
        ..plain.clone()
    };
    let input = |mode: u8, cap: u16, body: &[u8]| prefixed(&[&[mode][..], &cap.to_le_bytes()].concat(), body);
    vec![
        input(0, 4096, &encode_message(&plain, capability::ZSTD, &snapshot)),
        input(0, 4096, &encode_message(&plain, capability::ZSTD, b"jump")),
        input(
            3,
            4096,
            &encode_message(&with_dictionary, capability::ALL, &words),
        ),
        input(0, 4096, &encode_message(&plain, capability::ZSTD, &[0; 60_000])),
        input(0, 100, &encode_message(&plain, capability::ZSTD, &snapshot)),
        input(0, 4096, &[9, 1, 2]),
        input(4, 4096, &snapshot),
        input(7, 4096, &words),
        vec![],
    ]
}

fn prefixed(prefix: &[u8], body: &[u8]) -> Vec<u8> {
    let mut out = prefix.to_vec();
    out.extend_from_slice(body);
    out
}

/// A game server's simulated TPM after measuring the allowed binary and configuration.
fn measured_tpm() -> SimulatedTpm {
    let mut tpm = SimulatedTpm::new([0x5E; 32]);
    tpm.set_clock(12_345);
    tpm.extend_pcr(MEASUREMENT_PCR, BINARY_SHA256).unwrap();
    tpm.extend_pcr(MEASUREMENT_PCR, CONFIG_SHA256).unwrap();
    tpm
}

/// A quote's attest bytes as the fixed expectation wants them.
fn good_attest() -> Attest {
    Attest {
        qualified_signer: ak_public().name(),
        extra_data: expected_extra_data().to_vec(),
        clock_info: ClockInfo {
            clock: 12_345,
            reset_count: 1,
            restart_count: 2,
            safe: true,
        },
        firmware_version: 0x5457_5349_4D00_0001,
        pcr_select: measurement_selection(),
        pcr_digest: measurement_pcr_digest(BINARY_SHA256, CONFIG_SHA256).to_vec(),
    }
}

fn frame_stream(max: u16, sizes: &[u8], frames: &[&[u8]]) -> Vec<u8> {
    let mut out = max.to_le_bytes().to_vec();
    out.push(u8::try_from(sizes.len() - 1).unwrap());
    out.extend_from_slice(sizes);
    for frame in frames {
        out.extend_from_slice(&encode_frame(frame));
    }
    out
}

/// The decoder targets' inputs, in [`TARGETS`](crate::TARGETS) order.
pub(super) fn decoders() -> Vec<(&'static str, Vec<Vec<u8>>)> {
    let hello_bytes = wire::encode(&Control::Hello(signed(wire::encode(&hello()))));
    let accept_bytes = wire::encode(&Control::Accept(signed(wire::encode(&accept()))));
    let max_control = u16::try_from(MAX_CONTROL_FRAME_BYTES).unwrap();
    let frame_decoder = vec![
        frame_stream(max_control, &[0xff], &[&hello_bytes]),
        frame_stream(max_control, &[0x80, 0x01, 0x83], &[&accept_bytes, &hello_bytes]),
        frame_stream(8192, &[0x82, 0x10, 0xff], &[&[], &[1], &[7; 300], &[9; 5000]]),
        frame_stream(16, &[0x81], &[&[1; 16], &[2; 3]]),
        // An oversized prefix after a good frame, in one push and split.
        [
            frame_stream(100, &[0xff], &[&[5; 10]]),
            101u32.to_be_bytes().to_vec(),
            vec![0; 50],
        ]
        .concat(),
        [
            frame_stream(100, &[0x80], &[&[5; 10]]),
            101u32.to_be_bytes().to_vec(),
            vec![0; 50],
        ]
        .concat(),
        // A limit of 0: only empty frames.
        frame_stream(0, &[0x80], &[&[], &[]]),
        // A frame that never finishes.
        [
            frame_stream(1024, &[0x85], &[]),
            1000u32.to_be_bytes().to_vec(),
            vec![3; 200],
        ]
        .concat(),
    ];

    let ping = Ping {
        seq: 5,
        tick: 99,
        ts_us: 1_000_000,
    };
    let pong = Pong {
        seq: 5,
        tick: 100,
        echo_ts_us: 1_000_000,
        hold_us: 250,
    };
    let mut game_server_hello = hello();
    game_server_hello.role = Role::GameServer;
    game_server_hello.join_ticket = None;
    let mut bare_accept = accept();
    bare_accept.play_ticket = None;
    let close = CloseInfo {
        retry_after_ms: Some(5_000),
        detail: "server full".into(),
    };
    let control_message = vec![
        prefixed(&[0], &hello_bytes),
        prefixed(&[0], &accept_bytes),
        prefixed(&[0], &wire::encode(&Control::Hello(signed(vec![0xff; 8])))),
        prefixed(&[1], &wire::encode(&hello())),
        prefixed(&[1], &wire::encode(&game_server_hello)),
        prefixed(&[2], &wire::encode(&accept())),
        prefixed(&[2], &wire::encode(&bare_accept)),
        prefixed(&[3], &close.encode()),
        prefixed(
            &[3],
            &CloseInfo {
                retry_after_ms: None,
                detail: "é".repeat(150),
            }
            .encode(),
        ),
        prefixed(&[4], &wire::encode(&ping)),
        prefixed(&[5], &wire::encode(&pong)),
    ];

    let message: Vec<u8> = (0..=255u8).cycle().take(700).collect();
    let fragments: Vec<Vec<u8>> = split(&message, 300, 16)
        .unwrap()
        .map(|(index, count, chunk)| {
            let header = FragmentHeader {
                message_id: 0x0102,
                index,
                count,
            };
            [&header.encode()[..], chunk].concat()
        })
        .collect();
    let datagram = vec![
        wire::encode_heartbeat(DatagramKind::Ping, &ping).to_vec(),
        wire::encode_heartbeat(DatagramKind::Pong, &pong).to_vec(),
        prefixed(&[type_byte(DatagramKind::Unreliable, 7)], &[0xAB; 10]),
        prefixed(&[type_byte(DatagramKind::Sequenced, 31), 0x12, 0x34], &[0xCD; 10]),
        prefixed(&[type_byte(DatagramKind::Fragment, 2)], &fragments[0]),
        prefixed(&[type_byte(DatagramKind::SequencedFragment, 3)], &fragments[2]),
        vec![],
        vec![0xC0],
        vec![type_byte(DatagramKind::Sequenced, 0), 1],
        // A bundle (§5.7): Unreliable on channel 1 "hi", Sequenced on channel 3 "yo".
        vec![0xC0, 0x03, 0x41, 0x68, 0x69, 0x05, 0x63, 0x12, 0x34, 0x79, 0x6F],
        // A bundle of a Ping and a fragment, its second length overlong (2 bytes for 5).
        {
            let ping = wire::encode_heartbeat(DatagramKind::Ping, &ping);
            let length = u8::try_from(ping.len()).expect("a ping is short");
            [
                &[0xC0, length][..],
                &ping,
                &[0x85, 0x00, type_byte(DatagramKind::Fragment, 2)],
                &fragments[0][..4],
            ]
            .concat()
        },
    ];
    let mut fragment_header = fragments.clone();
    fragment_header.extend([
        FragmentHeader {
            message_id: 0,
            index: 0,
            count: 1,
        }
        .encode()
        .to_vec(),
        vec![1, 2, 0],
        vec![1, 2, 0, 0],
        vec![1, 2, 5, 5],
        vec![0xff, 0xff, 254, 255, 0x42],
    ]);

    let ticket = issuer().issue(&join_ticket_claims(GS_ID, NOW_MS, 60_000));
    let now = NOW_MS.to_le_bytes();
    let join_ticket = vec![
        [&[0][..], &now, &ticket.to_bytes()].concat(),
        [&[2][..], &now, &ticket.to_bytes()].concat(),
        [&[3][..], &now, &ticket.to_bytes()].concat(),
        // Expired, wrong audience, too long a lifetime.
        [&[2][..], &(NOW_MS + 600_000).to_le_bytes(), &ticket.to_bytes()].concat(),
        [
            &[2][..],
            &now,
            &issuer()
                .issue(&join_ticket_claims(GS_ID + 1, NOW_MS, 60_000))
                .to_bytes(),
        ]
        .concat(),
        [
            &[2][..],
            &now,
            &issuer()
                .issue(&join_ticket_claims(GS_ID, NOW_MS, 3_600_000))
                .to_bytes(),
        ]
        .concat(),
        // A play ticket's envelope presented as a join ticket.
        [&[2][..], &now, &a_play_ticket().0.to_bytes()].concat(),
    ];

    let play = a_play_ticket().0.to_bytes();
    let skew = 2_000u32.to_le_bytes();
    let receipt_envelope = ProtectedReceipt::issue(KEY_ID, &signing_key(), &receipt_claims()).0;
    let play_ticket = vec![
        [&[0][..], &now, &skew, &play].concat(),
        [&[2][..], &(NOW_MS + 3_000).to_le_bytes(), &skew, &play].concat(),
        [&[3][..], &(NOW_MS + 9_000).to_le_bytes(), &skew, &play].concat(),
        [&[0][..], &now, &skew, &receipt_envelope.to_bytes()].concat(),
        [&[0][..], &now, &skew, &ticket.to_bytes()].concat(),
    ];
    let receipt = vec![
        prefixed(&[0], &receipt_envelope.to_bytes()),
        prefixed(&[1], &receipt_envelope.to_bytes()),
        prefixed(&[0], &play),
    ];

    let mut tpm = measured_tpm();
    let sim_quote = tpm
        .quote(
            &quote_extra_data(&[0x77; VS_NONCE_LEN], &GS_KEY, GS_ID),
            &measurement_selection(),
        )
        .unwrap();
    let sim_ak = tpm.ak_public().unwrap();
    let join = VsMessage::Join(JoinRequest {
        gs_id: GS_ID,
        gs_key: GS_KEY,
        software_hash: BINARY_SHA256,
        config_hash: CONFIG_SHA256,
        timestamp_ms: NOW_MS,
        ak_public: sim_ak.clone(),
        quote: sim_quote.clone(),
    });
    let vs_messages = [
        VsMessage::Challenge { nonce: [0x77; 32] },
        join,
        VsMessage::Accepted {
            ticket: a_play_ticket(),
            next_nonce: [0x78; 32],
        },
        VsMessage::Ticket {
            ticket: a_play_ticket(),
            next_nonce: [0x79; 32],
        },
        VsMessage::Heartbeat {
            sequence: 3,
            timestamp_ms: NOW_MS,
            sessions: 12,
            attestation: Some(Attestation {
                nonce: [0x78; 32],
                quote: sim_quote.clone(),
            }),
        },
        VsMessage::Heartbeat {
            sequence: 4,
            timestamp_ms: NOW_MS + 1_000,
            sessions: 0,
            attestation: None,
        },
        VsMessage::Digest(TranscriptDigest {
            sequence: 1,
            session_id: 9,
            tick: 600,
            inputs: 580,
            digest: [0xD1; 32],
        }),
        VsMessage::Receipt {
            sequence: 1,
            receipt: ProtectedReceipt::issue(KEY_ID, &signing_key(), &receipt_claims()),
        },
        VsMessage::Revoke(Revocation::Jti {
            jti: [0x0A; 16],
            until_unix_ms: NOW_MS + 60_000,
        }),
        VsMessage::Revoke(Revocation::Client { client_id: 42 }),
        VsMessage::Revoke(Revocation::Key { key_id: 3 }),
    ];
    let vs_message = vs_messages.iter().map(VsMessage::encode).collect();

    let all_pcrs: Vec<u8> = (0..24).collect();
    let full = Attest {
        qualified_signer: vec![0xAA; 66],
        extra_data: vec![0xBB; 66],
        pcr_select: PcrSelection::sha256(&all_pcrs).unwrap(),
        pcr_digest: vec![0xCC; 64],
        ..good_attest()
    };
    let tpm_attest = vec![
        sim_quote.attest.clone(),
        tpm.quote(b"", &PcrSelection::sha256(&[0, 7, 23]).unwrap())
            .unwrap()
            .attest,
        good_attest().marshal(),
        full.marshal(),
    ];

    let good_ak = ak_public().0;
    let mut with_policy = good_ak[..8].to_vec();
    with_policy.extend_from_slice(&[0x00, 0x20]);
    with_policy.extend_from_slice(&[0xAB; 32]);
    with_policy.extend_from_slice(&good_ak[10..]);
    let mut with_kdf = good_ak[..18].to_vec();
    with_kdf.extend_from_slice(&[0x00, 0x20, 0x00, 0x0B]); // kdf: KDF1_SP800_56A, SHA-256
    with_kdf.extend_from_slice(&good_ak[20..]);
    let mut decrypt = good_ak.clone();
    decrypt[5] |= 0x02; // TPMA_OBJECT decrypt (bit 17)
    let tpm_ak_public = vec![good_ak, sim_ak.0, with_policy, with_kdf, decrypt];

    let signed_quote = sign_attest(good_attest().marshal());
    let quote_input = |mode: u8, quote: &Quote| {
        [&[mode][..], &quote.signature_r, &quote.signature_s, &quote.attest].concat()
    };
    let other_nonce = Attest {
        extra_data: vec![0x99; 32],
        ..good_attest()
    };
    let tpm_quote = vec![
        quote_input(0, &signed_quote),
        quote_input(
            1,
            &Quote {
                attest: good_attest().marshal(),
                signature_r: [0; 32],
                signature_s: [0; 32],
            },
        ),
        quote_input(3, &sign_attest(other_nonce.marshal())),
        quote_input(0, &sign_attest(other_nonce.marshal())),
        quote_input(0, &sim_quote),
    ];

    vec![
        ("frame_decoder", frame_decoder),
        ("control_message", control_message),
        ("datagram", datagram),
        ("fragment_header", fragment_header),
        ("decompress", decompress_inputs()),
        ("join_ticket", join_ticket),
        ("play_ticket", play_ticket),
        ("receipt", receipt),
        ("recording", recording_inputs()),
        ("vs_message", vs_message),
        ("tpm_attest", tpm_attest),
        ("tpm_ak_public", tpm_ak_public),
        ("tpm_quote", tpm_quote),
        ("wt_h3", wt_h3_inputs()),
        ("wt_connect", wt_connect_inputs()),
    ]
}

/// A recording with every record type, as the recorder writes it, and damaged copies.
fn recording_inputs() -> Vec<Vec<u8>> {
    use tickwire_core::record::{Record, Recording, RecordingHeader, TRANSCRIPT_VERSION};
    use tickwire_core::vs::TranscriptChain;

    use super::cat;

    let mut chain = TranscriptChain::new(9);
    let mut records = Vec::new();
    for tick in 1..=6u64 {
        let payload = vec![tick as u8; 3];
        chain.record(tick, &payload);
        records.push(Record::Received {
            tick,
            channel: 0,
            payload,
        });
        records.push(Record::Sent {
            tick,
            channel: 2,
            payload: vec![0xEE; 20],
        });
        if tick % 3 == 0 {
            records.push(Record::Checkpoint {
                sequence: tick / 3,
                tick,
                inputs: chain.inputs(),
                digest: chain.head(),
            });
        }
    }
    records.push(Record::Gap {
        first_tick: 7,
        last_tick: 8,
        records: 2,
        bytes: 40,
        inputs: 8,
        chain_tick: 8,
        head: [0xAB; 32],
    });
    records.push(Record::TicksSkipped {
        first_tick: 9,
        last_tick: 11,
    });
    records.push(Record::End { tick: 12 });
    let recording = Recording {
        header: RecordingHeader {
            session_id: 9,
            connection: 3,
            server_key: crate::fixtures::gs_identity().verifying_key().to_bytes(),
            client_key: CLIENT_KEY,
            role: 0,
            tick_rate_hz: 60,
            start_tick: 0,
            from_start: true,
            transcript_version: TRANSCRIPT_VERSION,
        },
        records,
        sealed_heads: Vec::new(),
    };
    let file = recording.encode();
    let mut edited = file.clone();
    edited[40] ^= 1;
    // The same records sealed after each checkpoint and after the end, as the recorder does.
    let mut sealed = Vec::new();
    tickwire_core::record::RecordingEncoder::header(&mut sealed, &recording.header);
    let identity = crate::fixtures::gs_identity();
    let seal = |out: &mut Vec<u8>| {
        use sha2::{Digest, Sha256};
        let head = Sha256::digest(&out[..]).into();
        tickwire_core::record::RecordingEncoder::seal(out, 9, head, &identity);
    };
    for record in &recording.records {
        tickwire_core::record::RecordingEncoder::record(&mut sealed, record);
        if matches!(record, Record::Checkpoint { .. } | Record::End { .. }) {
            seal(&mut sealed);
        }
    }
    let mut resealed_edit = sealed.clone();
    resealed_edit[60] ^= 1;
    vec![
        cat(&[&[0x80], &file]),
        cat(&[&[0x00], &file]),
        cat(&[&[0x07], &file]),
        cat(&[&[0x80], &edited]),
        cat(&[&[0x80], &sealed]),
        cat(&[&[0x00], &resealed_edit]),
        cat(&[&[0x10], &file[..file.len() - 3]]),
        cat(&[&[0x10], &file, &file[6..]]),
        cat(&[&[0x01], b"TWREC\x01\xff\xff\xff\xff"]),
        cat(&[&[0x01], b"TWREC\x02"]),
        cat(&[&[0x01], b"TWRXX"]),
    ]
}

/// `wt_h3` inputs (`chunk`, `code`, then bytes): the server's control stream, stream prefixes,
/// a request stream, frames with GREASE between them, a datagram and a close capsule.
fn wt_h3_inputs() -> Vec<Vec<u8>> {
    use super::{cat, le32};
    use tickwire_core::webtransport::h3::{self, CloseSession, Settings};

    let input = |chunk: u8, code: u32, body: &[u8]| cat(&[&[chunk], &le32(code), body]);
    let mut control = vec![h3::STREAM_CONTROL as u8];
    Settings::server().encode_frame(&mut control);
    let mut settings_payload = Vec::new();
    Settings::server().encode_payload(&mut settings_payload);
    let mut uni = Vec::new();
    h3::encode_uni_prefix(4, &mut uni).unwrap();
    uni.extend_from_slice(b"payload");
    let mut bidi = Vec::new();
    h3::encode_bidi_prefix(0, &mut bidi).unwrap();
    let mut datagram = Vec::new();
    h3::encode_datagram_prefix(8, &mut datagram).unwrap();
    datagram.extend_from_slice(b"tick");
    let mut close = Vec::new();
    CloseSession {
        code: 42,
        message: "bye".to_owned(),
    }
    .encode(&mut close)
    .unwrap();
    let frames = cat(&[
        &[0x21, 0x02, 0xaa, 0xbb][..],
        &[0x01, 0x03, 0xd1, 0xd7, 0x50],
        &[0x00, 0x02],
        b"hi",
    ]);
    vec![
        input(0, 0, &control),
        input(3, 29, &settings_payload),
        input(1, 30, &uni),
        input(2, u32::MAX, &bidi),
        input(5, 1000, &[0x01, 0x00]),
        input(4, 61, &frames),
        input(0, 7, &datagram),
        input(6, 0x0100_0000, &close),
    ]
}

/// `wt_connect` inputs (`origin_rule`, then a HEADERS payload): a browser's CONNECT with and
/// without an origin, one to another path, a response, and a block naming the dynamic table.
fn wt_connect_inputs() -> Vec<Vec<u8>> {
    use tickwire_core::webtransport::connect::{response_frame, ConnectRequest};

    use tickwire_core::webtransport::h3::{FrameRead, FrameReader};

    let payload = |frame: Vec<u8>| match FrameReader::new(u64::MAX).read(&frame) {
        Ok(FrameRead::Frame { payload, .. }) => payload.to_vec(),
        other => panic!("not one frame: {other:?}"),
    };
    let browser = ConnectRequest::new("127.0.0.1:4433", "/tickwire", Some("https://game.example"));
    let other = ConnectRequest::new("127.0.0.1:4433", "/other?x=1", None);
    vec![
        [&[1u8][..], &payload(browser.encode_frame())].concat(),
        [&[0u8][..], &payload(browser.encode_frame())].concat(),
        [&[1u8][..], &payload(other.encode_frame())].concat(),
        [&[0u8][..], &payload(response_frame(200))].concat(),
        vec![0, 0x02, 0x00, 0x80],
    ]
}
