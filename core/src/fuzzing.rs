//! Fuzz target bodies (issue 5), compiled only under `cfg(fuzzing)` (cargo-fuzz sets it) and in
//! tests.
//!
//! Each target is one `pub fn <name>(data: &[u8])`, called by the 3-line
//! `fuzz/fuzz_targets/<name>.rs` and by the corpus replay test below. A target asserts what is
//! worth asserting about the code it drives (not panicking is implicit): decoders re-encode and
//! decode to the same value, re-encodings are never longer than the input (postcard's canonical
//! varints are minimal), decoded sizes stay within their documented limits, verifiers accept
//! only what their documented checks allow, and no signed envelope passes for two kinds.
//!
//! Layout of the file, so that more targets slot in as sections:
//! - [`TARGETS`]: every target by name (the replay test and `fuzz/fuzz_targets` follow it);
//! - shared helpers: [`Input`], the fixed keys and expectations;
//! - decoder targets;
//! - (state-machine targets: reassembler, handshake, replay cache, … go in their own section);
//! - `seeds` (tests): the seed-corpus generator, `cargo test -p tickwire-core -- --ignored
//!   write_seed_corpus` rewrites `fuzz/corpus/<name>/`;
//! - `replay` (tests): runs every file of `fuzz/corpus/<name>/` and `fuzz/artifacts/<name>/`
//!   through its target on stable.
//!
//! Input layouts are documented per target; every target accepts any bytes (missing header
//! bytes read as zero).

use std::fmt::Debug;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::attest::{
    measurement_pcr_digest, quote_extra_data, verify_ak, verify_quote, AkPublic, Attest, AttestError,
    ExpectedQuote, ObjectAttributes, PcrSelection, Quote, MAX_AK_PUBLIC_BYTES, MAX_ATTEST_BYTES,
    MEASUREMENT_PCR,
};
use crate::fragment::{FragmentHeader, FRAGMENT_HEADER_LEN};
use crate::heartbeat::{Ping, Pong};
use crate::ticket::{
    JoinTicket, TicketConfig, TicketError, TicketVerifier, JOIN_TICKET_CONTEXT, MAX_JOIN_TICKET_BYTES,
};
use crate::vs::{
    Envelope, EnvelopeError, PlayTicket, PlayTicketError, ProtectedReceipt, ReceiptClaims, VsKeys, VsMessage,
    MAX_ENVELOPE_BYTES, MAX_VS_MESSAGE_BYTES, PLAY_TICKET_CONTEXT, RECEIPT_CONTEXT,
};
use crate::wire::{
    self, type_byte, AcceptBody, CloseInfo, Control, Datagram, DatagramKind, FrameDecoder, HelloBody,
    ReasonCode, Signed, WireError, FRAME_PREFIX_LEN, MAX_CHANNELS, MAX_CLOSE_DETAIL_BYTES,
};

/// A fuzz target body: one input, any bytes.
pub type Target = fn(&[u8]);

/// Every target in this crate, by name: `fuzz/fuzz_targets/<name>.rs` calls the function, and
/// `fuzz/corpus/<name>/` holds its seeds.
pub const TARGETS: &[(&str, Target)] = &[
    // Decoders.
    ("frame_decoder", frame_decoder),
    ("control_message", control_message),
    ("datagram", datagram),
    ("fragment_header", fragment_header),
    ("join_ticket", join_ticket),
    ("play_ticket", play_ticket),
    ("receipt", receipt),
    ("vs_message", vs_message),
    ("tpm_attest", tpm_attest),
    ("tpm_ak_public", tpm_ak_public),
    ("tpm_quote", tpm_quote),
];

// ---------------------------------------------------------------------------------------------
// Shared helpers.
// ---------------------------------------------------------------------------------------------

/// A cursor over fuzz input: fixed-size fields read little-endian, zero-padded once the input
/// runs out, so every byte string is a valid input.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    rest: &'a [u8],
}

impl<'a> Input<'a> {
    /// A cursor at the start of `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Self { rest: data }
    }

    /// Up to `n` bytes (fewer at the end of the input).
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (head, tail) = self.rest.split_at(n.min(self.rest.len()));
        self.rest = tail;
        head
    }

    /// `N` bytes, zero-padded.
    pub fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let head = self.bytes(N);
        out[..head.len()].copy_from_slice(head);
        out
    }

    /// One byte (0 at the end).
    pub fn u8(&mut self) -> u8 {
        self.array::<1>()[0]
    }

    /// A little-endian `u16`.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.array())
    }

    /// A little-endian `u32`.
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.array())
    }

    /// A little-endian `u64`.
    pub fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.array())
    }

    /// Whatever is left.
    pub fn rest(self) -> &'a [u8] {
        self.rest
    }
}

/// Seed of the one Ed25519 key that signs join tickets, play tickets and receipts in the
/// targets (one key for all three, so the targets check domain separation).
pub const SIGNING_SEED: [u8; 32] = [0x5A; 32];
/// Key id [`SIGNING_SEED`]'s key is trusted under.
pub const KEY_ID: u32 = 1;
/// The game server id verifiers expect.
pub const GS_ID: u64 = 7;
/// The game server identity key play tickets must name (unless the input picks its own).
pub const GS_KEY: [u8; 32] = [0x11; 32];
/// The client identity key join tickets must name (unless the input picks its own).
pub const CLIENT_KEY: [u8; 32] = [0x22; 32];
/// A wall-clock time (Unix ms) the seeds are valid at.
pub const SEED_NOW_MS: u64 = 1_700_000_000_000;
/// Seed of the P-256 attestation key the TPM targets enrol.
pub const AK_SEED: [u8; 32] = [0x33; 32];
/// The VS nonce the TPM targets' fixed expectation binds.
pub const QUOTE_NONCE: [u8; 32] = [0x44; 32];
/// SHA-256 of the binary the fixed expectation allows.
pub const BINARY_SHA256: [u8; 32] = [0xB1; 32];
/// SHA-256 of the configuration the fixed expectation allows.
pub const CONFIG_SHA256: [u8; 32] = [0xC0; 32];

/// The Ed25519 key of [`SIGNING_SEED`].
pub fn signing_key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&SIGNING_SEED)
}

/// The verification-server keys the envelope targets trust: [`signing_key`] under [`KEY_ID`].
pub fn vs_keys() -> VsKeys {
    VsKeys::single(KEY_ID, signing_key().verifying_key())
}

/// Signs `context ‖ key_id (BE) ‖ claims` with [`signing_key`]: the signed message of join
/// tickets, play tickets and receipts (`PROTOCOL.md` §3.3, §8.5). Lets a target re-sign
/// fuzzed claims so the checks after the signature are reached.
pub fn sign_envelope(context: &[u8], key_id: u32, claims: &[u8]) -> [u8; 64] {
    use ed25519_dalek::Signer;
    let mut message = Vec::with_capacity(context.len() + 4 + claims.len());
    message.extend_from_slice(context);
    message.extend_from_slice(&key_id.to_be_bytes());
    message.extend_from_slice(claims);
    signing_key().sign(&message).to_bytes()
}

/// The P-256 attestation key of [`AK_SEED`].
pub fn ak_signing_key() -> p256::ecdsa::SigningKey {
    p256::ecdsa::SigningKey::from_bytes(&AK_SEED.into()).expect("AK_SEED is a valid P-256 scalar")
}

/// The `TPMT_PUBLIC` of [`ak_signing_key`], with the attributes an AK must have.
pub fn ak_public() -> AkPublic {
    let point = ak_signing_key().verifying_key().to_encoded_point(false);
    let (Some(x), Some(y)) = (point.x(), point.y()) else {
        unreachable!("an uncompressed point has both coordinates")
    };
    let mut xy = ([0u8; 32], [0u8; 32]);
    xy.0.copy_from_slice(x);
    xy.1.copy_from_slice(y);
    AkPublic::ecc_p256(
        xy.0,
        xy.1,
        ObjectAttributes::AK_REQUIRED | ObjectAttributes::USER_WITH_AUTH,
    )
}

/// Signs `attest` with [`ak_signing_key`] (ECDSA-SHA256, RFC 6979), as a TPM's `TPM2_Quote`.
pub fn sign_attest(attest: Vec<u8>) -> Quote {
    use p256::ecdsa::signature::Signer;
    let signature: p256::ecdsa::Signature = ak_signing_key().sign(&attest);
    let (r, s) = signature.split_bytes();
    Quote {
        attest,
        signature_r: r.into(),
        signature_s: s.into(),
    }
}

/// The quote `extraData` the fixed expectation asks for.
pub fn expected_extra_data() -> [u8; 32] {
    quote_extra_data(&QUOTE_NONCE, &GS_KEY, GS_ID)
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

/// Asserts that the signature over `key_id ‖ claims` verifies as at most one of join ticket,
/// play ticket and receipt: the context strings separate the three kinds.
fn assert_one_kind_at_most(key_id: u32, claims: &[u8], signature: [u8; 64]) {
    let envelope = Envelope {
        key_id,
        claims: claims.to_vec(),
        signature,
    };
    let keys = vs_keys();
    let as_play = !matches!(
        PlayTicket(envelope.clone()).verify(&keys, &GS_KEY, SEED_NOW_MS, u64::MAX),
        Err(PlayTicketError::Envelope(
            EnvelopeError::BadSignature | EnvelopeError::UnknownKey(_)
        ))
    );
    let as_receipt = !matches!(
        ProtectedReceipt(envelope).verify(&keys),
        Err(EnvelopeError::BadSignature | EnvelopeError::UnknownKey(_))
    );
    let mut verifier = TicketVerifier::new(GS_ID, TicketConfig::default());
    verifier.add_key(KEY_ID, signing_key().verifying_key());
    let ticket = JoinTicket {
        key_id,
        claims: claims.to_vec(),
        signature,
    };
    let as_join = !matches!(
        verifier.verify(&ticket, SEED_NOW_MS, &CLIENT_KEY),
        Err(TicketError::BadSignature | TicketError::UnknownKey { .. })
    );
    let kinds = usize::from(as_play) + usize::from(as_receipt) + usize::from(as_join);
    assert!(
        kinds <= 1,
        "one signature passed as {kinds} kinds (play {as_play}, receipt {as_receipt}, join {as_join})"
    );
}

// ---------------------------------------------------------------------------------------------
// Decoder targets.
// ---------------------------------------------------------------------------------------------

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
        match decoder.next_frame() {
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
            let _ = PlayTicket(envelope).verify(&vs_keys(), &body.server_key, SEED_NOW_MS, 2_000);
        }
    }
}

/// The datagram header ([`Datagram::decode`]).
///
/// Input: one datagram.
///
/// Asserts: the channel is below [`MAX_CHANNELS`]; message datagrams re-encode to exactly the
/// input (type byte, header, payload); heartbeats round-trip through their encoding; a
/// fragment's header is in range.
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

/// Join tickets: [`JoinTicket::from_bytes`], then [`TicketVerifier::verify`] with the fixed
/// key.
///
/// Input: `mode: u8`, `now_unix_ms: u64`, then the ticket. `mode & 1` re-signs the claims with
/// the trusted key (so the checks after the signature are reached); `mode & 2` presents the
/// claims' own `client_key` as the handshake key.
///
/// Asserts: decoded tickets are at most [`MAX_JOIN_TICKET_BYTES`] and round-trip; an accepted
/// ticket's claims are the ticket's, name this game server and the handshake key, are inside
/// their validity window widened by the skew and within the maximum lifetime; the same ticket
/// is then refused as replayed; its signature passes as no other kind.
pub fn join_ticket(data: &[u8]) {
    let mut input = Input::new(data);
    let mode = input.u8();
    let now = input.u64();
    let bytes = input.rest();
    let Ok(mut ticket) = JoinTicket::from_bytes(bytes) else {
        return;
    };
    assert!(bytes.len() <= MAX_JOIN_TICKET_BYTES);
    let again = ticket.to_bytes();
    assert!(again.len() <= bytes.len());
    assert_eq!(JoinTicket::from_bytes(&again).as_ref(), Ok(&ticket));
    if mode & 1 != 0 {
        ticket.signature = sign_envelope(JOIN_TICKET_CONTEXT, ticket.key_id, &ticket.claims);
    }
    let claims = ticket.claims();
    let handshake_key = match (&claims, mode & 2 != 0) {
        (Ok(claims), true) => claims.client_key,
        _ => CLIENT_KEY,
    };
    let config = TicketConfig::default();
    let mut verifier = TicketVerifier::new(GS_ID, config.clone());
    verifier.add_key(KEY_ID, signing_key().verifying_key());
    if let Ok(accepted) = verifier.verify(&ticket, now, &handshake_key) {
        assert_eq!(claims.as_ref(), Ok(&accepted));
        assert_eq!(accepted.gs_id, GS_ID);
        assert_eq!(accepted.client_key, handshake_key);
        assert!(accepted.not_before_ms.saturating_sub(config.max_skew_ms) <= now);
        assert!(now <= accepted.expires_at_ms.saturating_add(config.max_skew_ms));
        assert!(accepted.expires_at_ms.saturating_sub(accepted.issued_at_ms) <= config.max_lifetime_ms);
        assert_eq!(verifier.replay_cache_len(), 1);
        assert_eq!(
            verifier.verify(&ticket, now, &handshake_key),
            Err(TicketError::Replayed)
        );
    }
    assert_one_kind_at_most(ticket.key_id, &ticket.claims, ticket.signature);
}

/// Play tickets: [`Envelope::from_bytes`], then [`PlayTicket::verify`] with the fixed key.
///
/// Input: `mode: u8`, `now_unix_ms: u64`, `max_skew_ms: u32`, then the envelope. `mode & 1`
/// re-signs the claims as a play ticket; `mode & 2` expects the claims' own `gs_key`.
///
/// Asserts: decoded envelopes are at most [`MAX_ENVELOPE_BYTES`] and round-trip; an accepted
/// ticket's claims are the unverified ones, name the expected key and cover `now` within the
/// skew; every refusal maps to `NOT_AUTHORISED` or `PLAY_TICKET_INVALID`; the signature passes
/// as no other kind.
pub fn play_ticket(data: &[u8]) {
    let mut input = Input::new(data);
    let mode = input.u8();
    let now = input.u64();
    let skew = u64::from(input.u32());
    let bytes = input.rest();
    let Some(mut envelope) = decode_envelope(bytes) else {
        return;
    };
    if mode & 1 != 0 {
        envelope.signature = sign_envelope(PLAY_TICKET_CONTEXT, envelope.key_id, &envelope.claims);
    }
    let ticket = PlayTicket(envelope.clone());
    let unverified = ticket.claims_unverified();
    let gs_key = match (&unverified, mode & 2 != 0) {
        (Ok(claims), true) => claims.gs_key,
        _ => GS_KEY,
    };
    match ticket.verify(&vs_keys(), &gs_key, now, skew) {
        Ok(claims) => {
            assert_eq!(unverified.as_ref(), Ok(&claims));
            assert_eq!(claims.gs_key, gs_key);
            assert!(claims.issued_at_ms.saturating_sub(skew) <= now);
            assert!(now <= claims.expires_at_ms.saturating_add(skew));
        }
        Err(error) => {
            let reason = error.reason();
            assert!(
                reason == ReasonCode::NOT_AUTHORISED || reason == ReasonCode::PLAY_TICKET_INVALID,
                "{error:?} maps to {reason:?}"
            );
        }
    }
    assert_one_kind_at_most(envelope.key_id, &envelope.claims, envelope.signature);
}

/// Protected receipts: [`Envelope::from_bytes`], then [`ProtectedReceipt::verify`] with the
/// fixed key.
///
/// Input: `mode: u8`, then the envelope. `mode & 1` re-signs the claims as a receipt.
///
/// Asserts: as for [`play_ticket`]; an accepted receipt's claims are its claims bytes decoded.
pub fn receipt(data: &[u8]) {
    let mut input = Input::new(data);
    let mode = input.u8();
    let Some(mut envelope) = decode_envelope(input.rest()) else {
        return;
    };
    if mode & 1 != 0 {
        envelope.signature = sign_envelope(RECEIPT_CONTEXT, envelope.key_id, &envelope.claims);
    }
    if let Ok(claims) = ProtectedReceipt(envelope.clone()).verify(&vs_keys()) {
        assert_eq!(wire::decode::<ReceiptClaims>(&envelope.claims), Ok(claims));
    }
    assert_one_kind_at_most(envelope.key_id, &envelope.claims, envelope.signature);
}

/// Decodes an envelope, asserting its size bound and round trip.
fn decode_envelope(bytes: &[u8]) -> Option<Envelope> {
    let envelope = Envelope::from_bytes(bytes).ok()?;
    assert!(bytes.len() <= MAX_ENVELOPE_BYTES);
    let again = envelope.to_bytes();
    assert!(again.len() <= bytes.len());
    assert_eq!(Envelope::from_bytes(&again).as_ref(), Ok(&envelope));
    Some(envelope)
}

/// GS ↔ VS messages ([`VsMessage::decode`]), every variant, and what they carry.
///
/// Input: one encoded message.
///
/// Asserts: decoded messages are at most [`MAX_VS_MESSAGE_BYTES`] and round-trip; the AK,
/// quotes, play tickets and receipts inside go through their verifiers without panicking.
pub fn vs_message(data: &[u8]) {
    let Ok(message) = VsMessage::decode(data) else {
        return;
    };
    assert!(data.len() <= MAX_VS_MESSAGE_BYTES);
    let again = message.encode();
    assert!(again.len() <= data.len());
    assert_eq!(VsMessage::decode(&again).as_ref(), Ok(&message));
    let extra = expected_extra_data();
    let selection = measurement_selection();
    let digests = [measurement_pcr_digest(BINARY_SHA256, CONFIG_SHA256)];
    let expected = ExpectedQuote {
        extra_data: &extra,
        selection: &selection,
        pcr_digests: &digests,
    };
    match &message {
        VsMessage::Join(join) => {
            if let Ok(ak) = verify_ak(&join.ak_public) {
                let _ = verify_quote(&ak, &join.quote, &expected);
            }
            let _ = Attest::parse(&join.quote.attest);
        }
        VsMessage::Heartbeat {
            attestation: Some(attestation),
            ..
        } => {
            let _ = Attest::parse(&attestation.quote.attest);
        }
        VsMessage::Accepted { ticket, .. } | VsMessage::Ticket { ticket, .. } => {
            let _ = ticket.verify(&vs_keys(), &GS_KEY, SEED_NOW_MS, 30_000);
        }
        VsMessage::Receipt { receipt, .. } => {
            let _ = receipt.verify(&vs_keys());
        }
        _ => {}
    }
}

/// The PCR selection the fixed expectation asks for: PCR 23 alone.
pub fn measurement_selection() -> PcrSelection {
    PcrSelection::sha256(&[MEASUREMENT_PCR]).expect("PCR 23 is in the bank")
}

/// `TPMS_ATTEST` parsing ([`Attest::parse`]).
///
/// Input: a marshalled `TPMS_ATTEST`.
///
/// Asserts: parsed inputs are at most [`MAX_ATTEST_BYTES`]; `qualifiedSigner` and `extraData`
/// are at most 66 bytes and `pcrDigest` at most 64 (TPM 2.0 Library Part 2 §10.5.3, §10.4.3,
/// §10.4.2 bounds for SHA-256/SHA-512 TPMs); marshalling the parse gives back the input
/// exactly (the encoding is canonical); selected PCRs are in the 24-PCR bank.
pub fn tpm_attest(data: &[u8]) {
    match Attest::parse(data) {
        Ok(attest) => {
            assert!(data.len() <= MAX_ATTEST_BYTES);
            assert!(attest.qualified_signer.len() <= 66);
            assert!(attest.extra_data.len() <= 66);
            assert!(attest.pcr_digest.len() <= 64);
            assert!(attest.pcr_select.indices().iter().all(|&pcr| pcr < 24));
            assert_eq!(attest.marshal(), data, "parse is not canonical");
        }
        Err(AttestError::TooLarge { len, max }) => {
            assert_eq!((len, max), (data.len(), MAX_ATTEST_BYTES));
            assert!(len > max);
        }
        Err(_) => {}
    }
}

/// AK public-area parsing and checks ([`verify_ak`]).
///
/// Input: a marshalled `TPMT_PUBLIC` (no size prefix).
///
/// Asserts: accepted inputs are at most [`MAX_AK_PUBLIC_BYTES`]; the Name is
/// `0x000B ‖ SHA-256(input)`; the required attributes are set and `decrypt` is not; an
/// accepted 88-byte input (empty `authPolicy`, NULL kdf) is exactly
/// [`AkPublic::ecc_p256`] of its point and attributes.
pub fn tpm_ak_public(data: &[u8]) {
    let ak = AkPublic(data.to_vec());
    let Ok(verified) = verify_ak(&ak) else {
        return;
    };
    assert!(data.len() <= MAX_AK_PUBLIC_BYTES);
    assert_eq!(verified.name(), ak.name().as_slice());
    assert_eq!(verified.name().len(), 34);
    assert_eq!(verified.public(), &ak);
    let attributes = ObjectAttributes(u32::from_be_bytes([data[4], data[5], data[6], data[7]]));
    assert!(attributes.contains(ObjectAttributes::AK_REQUIRED));
    assert!(!attributes.contains(ObjectAttributes::DECRYPT));
    if data.len() == 88 {
        let point = verified.verifying_key().to_encoded_point(false);
        let (Some(x), Some(y)) = (point.x(), point.y()) else {
            panic!("an uncompressed point has both coordinates");
        };
        let mut xy = ([0u8; 32], [0u8; 32]);
        xy.0.copy_from_slice(x);
        xy.1.copy_from_slice(y);
        assert_eq!(AkPublic::ecc_p256(xy.0, xy.1, attributes), ak);
    }
}

/// Quote verification ([`verify_quote`]) against the fixed AK ([`ak_public`]).
///
/// Input: `mode: u8`, `r: [u8; 32]`, `s: [u8; 32]`, then the marshalled `TPMS_ATTEST`.
/// `mode & 1` signs the attest bytes with the AK instead of using `r`, `s` (so the checks after
/// the signature are reached); `mode & 2` expects the parsed quote's own `extraData`, selection
/// and digest (so acceptance is reachable from any well-formed attest), else the fixed
/// expectation (nonce [`QUOTE_NONCE`], PCR 23, [`BINARY_SHA256`] then [`CONFIG_SHA256`]).
///
/// Asserts: an accepted quote's parse is [`Attest::parse`] of its bytes and matches the
/// expectation in every field; a signed quote over bytes that parse and match is accepted.
pub fn tpm_quote(data: &[u8]) {
    let mut input = Input::new(data);
    let mode = input.u8();
    let r = input.array::<32>();
    let s = input.array::<32>();
    let attest = input.rest().to_vec();
    let quote = if mode & 1 != 0 {
        sign_attest(attest)
    } else {
        Quote {
            attest,
            signature_r: r,
            signature_s: s,
        }
    };
    let ak = verify_ak(&ak_public()).expect("the fixed AK is valid");
    let parsed = Attest::parse(&quote.attest);
    let fixed_extra = expected_extra_data();
    let fixed_selection = measurement_selection();
    let mut digests = vec![measurement_pcr_digest(BINARY_SHA256, CONFIG_SHA256)];
    let (extra, selection): (&[u8], &PcrSelection) = match (&parsed, mode & 2 != 0) {
        (Ok(attest), true) => {
            if let Ok(digest) = <[u8; 32]>::try_from(attest.pcr_digest.as_slice()) {
                digests.push(digest);
            }
            (attest.extra_data.as_slice(), &attest.pcr_select)
        }
        _ => (&fixed_extra, &fixed_selection),
    };
    let expected = ExpectedQuote {
        extra_data: extra,
        selection,
        pcr_digests: &digests,
    };
    match verify_quote(&ak, &quote, &expected) {
        Ok(verified) => {
            assert_eq!(parsed.as_ref(), Ok(&verified.attest));
            assert_eq!(verified.attest.extra_data, extra);
            assert_eq!(&verified.attest.pcr_select, selection);
            assert!(digests.iter().any(|d| verified.attest.pcr_digest == d[..]));
        }
        Err(error) => {
            if mode & 1 != 0 {
                if let Ok(attest) = &parsed {
                    let matches = attest.extra_data == extra
                        && &attest.pcr_select == selection
                        && digests.iter().any(|d| attest.pcr_digest == d[..]);
                    assert!(
                        !matches,
                        "a correctly signed, matching quote was refused: {error:?}"
                    );
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// State-machine targets go here (reassembler, handshake, replay cache, heartbeat, tick
// scheduler and sync, rate limiter, GS agent, whole endpoint): add each to `TARGETS`, give it
// seeds in `seeds::all`, and a `fuzz/fuzz_targets/<name>.rs`.
// ---------------------------------------------------------------------------------------------

/// The seed corpus: small valid inputs made by the real encoders, plus edge cases.
#[cfg(test)]
mod seeds {
    use std::path::PathBuf;

    use sha2::{Digest, Sha256};

    use super::*;
    use crate::attest::{ClockInfo, SimulatedTpm, TpmProvider};
    use crate::fragment::split;
    use crate::ticket::{JoinTicketClaims, TicketIssuer};
    use crate::vs::{Attestation, JoinRequest, PlayTicketClaims, Revocation, TranscriptDigest, VS_NONCE_LEN};
    use crate::wire::{encode_frame, Role, Signature, MAX_CONTROL_FRAME_BYTES, NONCE_LEN};

    fn issuer() -> TicketIssuer {
        TicketIssuer::new(KEY_ID, signing_key())
    }

    fn join_ticket_claims(gs_id: u64, now: u64, lifetime: u64) -> JoinTicketClaims {
        JoinTicketClaims::new(42, gs_id, [0x0A; 16], now, lifetime, 1, CLIENT_KEY)
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
            join_ticket: Some(issuer().issue(&join_ticket_claims(GS_ID, SEED_NOW_MS, 60_000))),
        }
    }

    fn play_ticket_claims() -> PlayTicketClaims {
        PlayTicketClaims {
            gs_id: GS_ID,
            gs_key: GS_KEY,
            issued_at_ms: SEED_NOW_MS,
            expires_at_ms: SEED_NOW_MS + 6_000,
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
            received_at_ms: SEED_NOW_MS,
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
        }
    }

    fn signed(body: Vec<u8>) -> Signed {
        use ed25519_dalek::Signer;
        Signed {
            signature: Signature(signing_key().sign(&body).to_bytes()),
            body,
        }
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

    /// Every target's seeds, by target name.
    pub(super) fn all() -> Vec<(&'static str, Vec<Vec<u8>>)> {
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

        let ticket = issuer().issue(&join_ticket_claims(GS_ID, SEED_NOW_MS, 60_000));
        let now = SEED_NOW_MS.to_le_bytes();
        let join_ticket = vec![
            [&[0][..], &now, &ticket.to_bytes()].concat(),
            [&[2][..], &now, &ticket.to_bytes()].concat(),
            [&[3][..], &now, &ticket.to_bytes()].concat(),
            // Expired, wrong audience, too long a lifetime.
            [
                &[2][..],
                &(SEED_NOW_MS + 600_000).to_le_bytes(),
                &ticket.to_bytes(),
            ]
            .concat(),
            [
                &[2][..],
                &now,
                &issuer()
                    .issue(&join_ticket_claims(GS_ID + 1, SEED_NOW_MS, 60_000))
                    .to_bytes(),
            ]
            .concat(),
            [
                &[2][..],
                &now,
                &issuer()
                    .issue(&join_ticket_claims(GS_ID, SEED_NOW_MS, 3_600_000))
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
            [&[2][..], &(SEED_NOW_MS + 3_000).to_le_bytes(), &skew, &play].concat(),
            [&[3][..], &(SEED_NOW_MS + 9_000).to_le_bytes(), &skew, &play].concat(),
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
            timestamp_ms: SEED_NOW_MS,
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
                timestamp_ms: SEED_NOW_MS,
                sessions: 12,
                attestation: Some(Attestation {
                    nonce: [0x78; 32],
                    quote: sim_quote.clone(),
                }),
            },
            VsMessage::Heartbeat {
                sequence: 4,
                timestamp_ms: SEED_NOW_MS + 1_000,
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
                until_unix_ms: SEED_NOW_MS + 60_000,
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
            ("join_ticket", join_ticket),
            ("play_ticket", play_ticket),
            ("receipt", receipt),
            ("vs_message", vs_message),
            ("tpm_attest", tpm_attest),
            ("tpm_ak_public", tpm_ak_public),
            ("tpm_quote", tpm_quote),
        ]
    }

    /// `fuzz/` at the repository root.
    pub(super) fn fuzz_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
    }

    /// A corpus file name: the first 16 hex digits of the content's SHA-256.
    fn file_name(bytes: &[u8]) -> String {
        Sha256::digest(bytes)[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    #[test]
    fn every_target_has_seeds_and_they_pass() {
        let seeds = all();
        let names: Vec<&str> = seeds.iter().map(|(name, _)| *name).collect();
        let targets: Vec<&str> = TARGETS.iter().map(|(name, _)| *name).collect();
        assert_eq!(names, targets, "seeds::all and TARGETS list the same targets");
        for ((name, inputs), (_, target)) in seeds.iter().zip(TARGETS) {
            assert!(
                !inputs.is_empty() && inputs.len() <= 30,
                "{name}: {} seeds",
                inputs.len()
            );
            for input in inputs {
                assert!(input.len() <= 64 << 10, "{name}: a seed of {} bytes", input.len());
                target(input);
            }
        }
    }

    /// Writes the seeds to `fuzz/corpus/<name>/<sha256 prefix>` (existing files are kept):
    /// `cargo test -p tickwire-core --lib -- --ignored write_seed_corpus`.
    #[test]
    #[ignore = "writes fuzz/corpus; run by hand after changing an encoding"]
    fn write_seed_corpus() {
        for (name, inputs) in all() {
            let dir = fuzz_dir().join("corpus").join(name);
            std::fs::create_dir_all(&dir).unwrap();
            for input in inputs {
                std::fs::write(dir.join(file_name(&input)), &input).unwrap();
            }
        }
    }
}

/// Corpus replay on stable: every file under `fuzz/corpus/<name>/` and `fuzz/artifacts/<name>/`
/// goes through its target, so `cargo test -p tickwire-core` catches a regression on any input
/// a fuzzer ever kept, without nightly.
#[cfg(test)]
mod replay {
    use super::seeds::fuzz_dir;
    use super::TARGETS;

    /// Runs `target` on every file in `fuzz/{corpus,artifacts}/<name>/`, returning the number
    /// of files and the failures (file, panic message).
    pub(crate) fn replay(name: &str, target: super::Target) -> (usize, Vec<(String, String)>) {
        let mut files = 0;
        let mut failures = Vec::new();
        for kind in ["corpus", "artifacts"] {
            let dir = fuzz_dir().join(kind).join(name);
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            let mut paths: Vec<_> = entries
                .map(|e| e.unwrap().path())
                .filter(|p| p.is_file())
                .collect();
            paths.sort();
            for path in paths {
                let data = std::fs::read(&path).unwrap();
                files += 1;
                if let Err(panic) = std::panic::catch_unwind(|| target(&data)) {
                    let message = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                        .unwrap_or_default();
                    failures.push((path.display().to_string(), message));
                }
            }
        }
        (files, failures)
    }

    #[test]
    fn corpora_replay() {
        let mut failures = Vec::new();
        for (name, target) in TARGETS {
            let (files, failed) = replay(name, *target);
            assert!(files > 0, "fuzz/corpus/{name}/ is empty or missing");
            failures.extend(failed);
        }
        assert!(failures.is_empty(), "corpus inputs failing: {failures:#?}");
    }

    #[test]
    fn every_target_has_a_fuzz_target_file() {
        for (name, _) in TARGETS {
            let path = fuzz_dir().join("fuzz_targets").join(format!("{name}.rs"));
            let text =
                std::fs::read_to_string(&path).unwrap_or_else(|_| panic!("{} missing", path.display()));
            assert!(
                text.contains(&format!("tickwire_core::fuzzing::{name}(data)")),
                "{} does not call its target",
                path.display()
            );
        }
    }
}
