//! Wire-format decoders (`PROTOCOL.md` §3): the stream frame decoder, control messages,
//! datagram headers and fragment headers.

use std::fmt::Debug;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tickwire_core::vs::{Envelope, PlayTicket};
use tickwire_core::wire::{
    self, type_byte, AcceptBody, CloseInfo, Control, Datagram, DatagramKind, FragmentHeader, FrameDecoder,
    HelloBody, Ping, Pong, Signed, WireError, FRAGMENT_HEADER_LEN, FRAME_PREFIX_LEN, MAX_CHANNELS,
    MAX_CLOSE_DETAIL_BYTES,
};
use tickwire_core::{JoinTicket, MAX_JOIN_TICKET_BYTES};

use crate::fixtures::{vs_keys, NOW_MS};
use crate::input::Input;

/// The stream frame decoder ([`FrameDecoder`]), fed in fuzz-chosen chunks.
///
/// Input: `max_frame_bytes: u16`, `n: u8` then `n % 16 + 1` chunk-size bytes, then the stream.
/// A chunk-size byte `s` pushes `((s & 0x7f) + 1)²` bytes (1 to 16 384) and, when `s & 0x80`,
/// drains the decoder afterwards (the last push always drains).
///
/// Asserts: the frames and the error are exactly those of a one-shot model parse of the
/// stream (frames in order, up to the first prefix above the limit); no frame exceeds the
/// limit; after a drain that needs more bytes, at most `max(limit, 4)` bytes stay buffered, and
/// between drains at most that plus the bytes pushed since.
pub fn frame_decoder(data: &[u8]) {
    let mut input = Input::new(data);
    let max = usize::from(input.u16());
    let n = usize::from(input.u8() % 16) + 1;
    let mut sizes = input.bytes(n).to_vec();
    if sizes.is_empty() {
        sizes.push(0xff);
    }
    let stream = input.rest();
    let (want_frames, want_error) = model_frames(stream, max);
    let bound = max.max(FRAME_PREFIX_LEN);

    let mut decoder = FrameDecoder::new(max);
    let mut frames: Vec<Vec<u8>> = Vec::new();
    let mut error = None;
    let drain = |decoder: &mut FrameDecoder, frames: &mut Vec<Vec<u8>>| loop {
        match decoder.poll_frame() {
            Ok(Some(frame)) => {
                assert!(
                    frame.len() <= max,
                    "frame of {} bytes over the {max} limit",
                    frame.len()
                );
                frames.push(frame.to_vec());
            }
            Ok(None) => {
                assert!(
                    decoder.buffered_bytes() <= bound,
                    "{} bytes buffered waiting for more, limit {max}",
                    decoder.buffered_bytes()
                );
                return None;
            }
            Err(WireError::FrameTooLarge { len, max: reported }) => {
                assert_eq!(reported, max);
                assert!(len > max);
                return Some(len);
            }
            Err(other) => panic!("unexpected frame error {other:?}"),
        }
    };
    let (mut pos, mut since_drain) = (0, 0);
    for &s in sizes.iter().cycle() {
        if pos >= stream.len() || error.is_some() {
            break;
        }
        let len = (usize::from(s & 0x7f) + 1).pow(2).min(stream.len() - pos);
        decoder.push(&stream[pos..pos + len]);
        pos += len;
        since_drain += len;
        assert!(
            decoder.buffered_bytes() <= bound + since_drain,
            "{} bytes buffered, {since_drain} pushed since the last drain",
            decoder.buffered_bytes()
        );
        if s & 0x80 != 0 || pos == stream.len() {
            error = drain(&mut decoder, &mut frames);
            since_drain = 0;
        }
    }
    if error.is_none() {
        error = drain(&mut decoder, &mut frames);
    }
    assert_eq!(error, want_error, "frame error differs from the model");
    assert_eq!(frames, want_frames, "frames differ from the model");
}

/// Frames of a whole stream, and the declared length of the first oversized prefix.
fn model_frames(stream: &[u8], max: usize) -> (Vec<Vec<u8>>, Option<usize>) {
    let mut frames = Vec::new();
    let mut rest = stream;
    while let Some((prefix, body)) = rest.split_first_chunk::<FRAME_PREFIX_LEN>() {
        let len = u32::from_be_bytes(*prefix) as usize;
        if len > max {
            return (frames, Some(len));
        }
        if body.len() < len {
            break;
        }
        frames.push(body[..len].to_vec());
        rest = &body[len..];
    }
    (frames, None)
}

/// Every control-stream message type's decoder.
///
/// Input: a selector byte, then the message. Selector `% 6`: 0 [`Control`] (and the body it
/// carries, decoded as [`HelloBody`] or [`AcceptBody`] as the handshake does, and the join or
/// play ticket inside), 1 [`HelloBody`], 2 [`AcceptBody`], 3 [`CloseInfo`] (a
/// CONNECTION_CLOSE reason), 4 [`Ping`], 5 [`Pong`].
///
/// Asserts: decode→encode→decode round-trips, re-encodings are no longer than the input; a
/// close reason re-encodes within [`MAX_CLOSE_DETAIL_BYTES`] of detail, as a prefix of the
/// original; heartbeats survive the datagram encoding.
pub fn control_message(data: &[u8]) {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    match selector % 6 {
        0 => {
            let Ok(message) = wire::decode::<Control>(bytes) else {
                return;
            };
            assert_round_trip(&message, bytes.len());
            match &message {
                Control::Hello(signed) => check_signed_hello(signed),
                Control::Accept(signed) => check_signed_accept(signed),
                Control::Challenge(challenge) => {
                    let _ = challenge.binding_value();
                }
            }
        }
        1 => {
            if let Ok(body) = wire::decode::<HelloBody>(bytes) {
                check_hello(&body, bytes.len());
            }
        }
        2 => {
            if let Ok(body) = wire::decode::<AcceptBody>(bytes) {
                check_accept(&body, bytes.len());
            }
        }
        3 => {
            let info = CloseInfo::decode(bytes);
            let encoded = info.encode();
            let back = CloseInfo::decode(&encoded);
            assert_eq!(back.retry_after_ms, info.retry_after_ms);
            assert!(back.detail.len() <= MAX_CLOSE_DETAIL_BYTES);
            assert!(info.detail.starts_with(&back.detail));
            if info.detail.len() <= MAX_CLOSE_DETAIL_BYTES {
                assert_eq!(back, info);
            }
        }
        4 => {
            if let Ok(ping) = wire::decode::<Ping>(bytes) {
                assert_round_trip(&ping, bytes.len());
                let datagram = wire::encode_heartbeat(DatagramKind::Ping, &ping);
                assert_eq!(Datagram::decode(&datagram), Ok(Datagram::Ping(ping)));
            }
        }
        _ => {
            if let Ok(pong) = wire::decode::<Pong>(bytes) {
                assert_round_trip(&pong, bytes.len());
                let datagram = wire::encode_heartbeat(DatagramKind::Pong, &pong);
                assert_eq!(Datagram::decode(&datagram), Ok(Datagram::Pong(pong)));
            }
        }
    }
}

fn check_signed_hello(signed: &Signed) {
    if let Ok(body) = wire::decode::<HelloBody>(&signed.body) {
        check_hello(&body, signed.body.len());
    }
}

fn check_signed_accept(signed: &Signed) {
    if let Ok(body) = wire::decode::<AcceptBody>(&signed.body) {
        check_accept(&body, signed.body.len());
    }
}

fn check_hello(body: &HelloBody, input_len: usize) {
    assert_round_trip(body, input_len);
    if let Some(ticket) = &body.join_ticket {
        let bytes = ticket.to_bytes();
        if bytes.len() <= MAX_JOIN_TICKET_BYTES {
            assert_eq!(JoinTicket::from_bytes(&bytes).as_ref(), Ok(ticket));
        }
        let _ = ticket.claims();
    }
}

fn check_accept(body: &AcceptBody, input_len: usize) {
    assert_round_trip(body, input_len);
    if let Some(bytes) = &body.play_ticket {
        if let Ok(envelope) = Envelope::from_bytes(bytes) {
            let _ = PlayTicket(envelope).verify(&vs_keys(), &body.server_key, NOW_MS, 2_000);
        }
    }
}

/// The datagram header ([`Datagram::decode`]).
///
/// Input: one datagram.
///
/// Asserts: the channel is below [`MAX_CHANNELS`]; message datagrams re-encode to exactly the
/// input (type byte, header, payload); heartbeats round-trip through their encoding; a
/// fragment's header is in range; a bundle's entries are non-empty, not bundles, each passes
/// these checks as a datagram of its own, and with minimal lengths re-encode to at most the
/// input.
pub fn datagram(data: &[u8]) {
    let Ok(decoded) = Datagram::decode(data) else {
        return;
    };
    match decoded {
        Datagram::Ping(ping) => {
            let again = wire::encode_heartbeat(DatagramKind::Ping, &ping);
            assert!(again.len() <= data.len());
            assert_eq!(Datagram::decode(&again), Ok(Datagram::Ping(ping)));
        }
        Datagram::Pong(pong) => {
            let again = wire::encode_heartbeat(DatagramKind::Pong, &pong);
            assert!(again.len() <= data.len());
            assert_eq!(Datagram::decode(&again), Ok(Datagram::Pong(pong)));
        }
        Datagram::Unreliable { channel, payload } => {
            assert!(usize::from(channel) < MAX_CHANNELS);
            let mut again = vec![type_byte(DatagramKind::Unreliable, channel)];
            again.extend_from_slice(payload);
            assert_eq!(again, data);
        }
        Datagram::Sequenced {
            channel,
            seq,
            payload,
        } => {
            assert!(usize::from(channel) < MAX_CHANNELS);
            let mut again = vec![type_byte(DatagramKind::Sequenced, channel)];
            again.extend_from_slice(&seq.to_be_bytes());
            again.extend_from_slice(payload);
            assert_eq!(again, data);
        }
        Datagram::Fragment {
            channel,
            sequenced,
            header,
            chunk,
        } => {
            assert!(usize::from(channel) < MAX_CHANNELS);
            assert!(header.count >= 1 && header.index < header.count);
            let kind = if sequenced {
                DatagramKind::SequencedFragment
            } else {
                DatagramKind::Fragment
            };
            let mut again = vec![type_byte(kind, channel)];
            again.extend_from_slice(&header.encode());
            again.extend_from_slice(chunk);
            assert_eq!(again, data);
        }
        Datagram::Bundle(bundle) => {
            let mut again = vec![wire::BUNDLE_TYPE_BYTE];
            for entry in bundle.entries() {
                assert!(entry
                    .first()
                    .is_some_and(|&b| b >> 5 != DatagramKind::Bundle as u8));
                let mut length = [0; wire::BUNDLE_LENGTH_MAX_LEN];
                let len = u16::try_from(entry.len()).expect("an entry is at most 65 535 bytes");
                let used = wire::encode_bundle_length(len, &mut length);
                again.extend_from_slice(&length[..used]);
                again.extend_from_slice(entry);
                datagram(entry);
            }
            assert!(again.len() > 1 && again.len() <= data.len());
            // The channel bits of a bundle's type byte are ignored (`PROTOCOL.md` §5.1).
            assert_eq!(data[0] >> 5, DatagramKind::Bundle as u8);
        }
    }
}

/// The fragment header ([`FragmentHeader::decode`]).
///
/// Input: the bytes after a fragment datagram's type byte.
///
/// Asserts: `1 <= count`, `index < count`, `is_last` iff `index == count - 1`; header and
/// chunk re-encode to exactly the input; inputs shorter than the header are refused.
pub fn fragment_header(data: &[u8]) {
    if let Ok((header, chunk)) = FragmentHeader::decode(data) {
        assert!(header.count >= 1 && header.index < header.count);
        assert_eq!(header.is_last(), header.index == header.count - 1);
        let mut again = header.encode().to_vec();
        again.extend_from_slice(chunk);
        assert_eq!(again, data);
    }
    if data.len() < FRAGMENT_HEADER_LEN {
        assert!(FragmentHeader::decode(data).is_err());
    }
}

/// Asserts that `value` re-encodes to at most `input_len` bytes (postcard's canonical
/// encoding is the shortest) and decodes back to itself.
fn assert_round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(value: &T, input_len: usize) {
    let bytes = wire::encode(value);
    assert!(
        bytes.len() <= input_len,
        "re-encoding of {value:?} is {} bytes, longer than the {input_len}-byte input",
        bytes.len()
    );
    let back: T = wire::decode(&bytes).expect("a re-encoding decodes");
    assert_eq!(&back, value, "decode(encode(x)) != x");
}
