//! Fuzz target bodies, compiled only under `cfg(fuzzing)` (cargo-fuzz sets it) and in
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
//! - state-machine targets (operation sequences decoded with `arbitrary`, [`MAX_OPS`] at most),
//!   and the whole-engine `endpoint` target;
//! - `seeds` (tests): the seed-corpus generator, `cargo test -p tickwire-core -- --ignored
//!   write_seed_corpus` rewrites `fuzz/corpus/<name>/`;
//! - `replay` (tests): runs every file of `fuzz/corpus/<name>/` and `fuzz/artifacts/<name>/`
//!   through its target on stable.
//!
//! Input layouts are documented per target; every target accepts any bytes (missing header
//! bytes read as zero).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Debug;
use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use arbitrary::{Arbitrary, Unstructured};
use bytes::{Bytes, BytesMut};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::attest::TpmError;
use crate::attest::{
    measurement_pcr_digest, quote_extra_data, verify_ak, verify_quote, AkPublic, Attest, AttestError,
    ExpectedQuote, ObjectAttributes, PcrSelection, Quote, MAX_AK_PUBLIC_BYTES, MAX_ATTEST_BYTES,
    MEASUREMENT_PCR,
};
use crate::clock::WallClock;
use crate::config::Config;
use crate::endpoint::Endpoint;
use crate::fragment::{
    split, FragmentConfig, FragmentHeader, Reassembler, ReassemblyStats, FRAGMENT_HEADER_LEN,
};
use crate::handshake::{
    AwaitingAccept, AwaitingHello, ClientHandshake, ClientOffer, PlayTicketCheck, Rejection,
    ServerContribution, ServerPolicy, PERMISSION_ADMIN,
};
use crate::heartbeat::{Heartbeat, HeartbeatConfig, Ping, Pong};
use crate::limits::{AddressLimiter, PeerLimiter, RateLimitConfig, TokenBucket};
use crate::secrets::Secrets;
use crate::shared::{ConnHandle, Event};
use crate::tick::{MissedTickPolicy, TickConfig, TickScheduler, TickSync, TickSyncConfig};
use crate::ticket::{
    JoinTicket, JoinTicketClaims, TicketConfig, TicketError, TicketIssuer, TicketVerifier,
    JOIN_TICKET_CONTEXT, MAX_JOIN_TICKET_BYTES,
};
use crate::vs::{
    Envelope, EnvelopeError, GsAgent, GsConfig, GsEvent, GsIdentity, GsStatus, PlayTicket, PlayTicketClaims,
    PlayTicketError, ProtectedReceipt, ReceiptClaims, Revocation, TranscriptDigest, VsKeys, VsMessage,
    MAX_ENVELOPE_BYTES, MAX_VS_MESSAGE_BYTES, PLAY_TICKET_CONTEXT, RECEIPT_CONTEXT, VS_CHANNEL,
    VS_SCHEMA_HASH,
};
use crate::wire::{
    self, type_byte, AcceptBody, CloseInfo, Control, Datagram, DatagramKind, FrameDecoder, HelloBody,
    ReasonCode, Role, Signed, WireError, FRAME_PREFIX_LEN, MAX_CHANNELS, MAX_CLOSE_DETAIL_BYTES, NONCE_LEN,
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
    // State machines.
    ("reassembler", reassembler),
    ("heartbeat", heartbeat),
    ("tick_scheduler", tick_scheduler),
    ("tick_sync", tick_sync),
    ("rate_limiter", rate_limiter),
    ("replay_cache", replay_cache),
    ("handshake_server", handshake_server),
    ("handshake_client", handshake_client),
    ("gs_agent", gs_agent),
    // The whole engine.
    ("endpoint", endpoint),
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
        Err(_) => {} // every refusal maps to a reason code (`handshake::check_play_ticket`)
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
// State-machine targets.
//
// Each decodes a configuration and then a sequence of operations with `arbitrary` (at most
// `MAX_OPS`), runs them against the real machine and checks it after every step against a model
// or against invariants its documentation promises. Configurations are the defaults XORed with
// fuzz bytes, so an all-zero input runs the defaults and every other value is reachable.
// ---------------------------------------------------------------------------------------------

/// Most operations one state-machine input runs.
pub const MAX_OPS: usize = 256;

/// The process's base instant: every state-machine target counts its time from it, so inputs
/// replay identically (only differences between instants reach the code under test).
#[allow(clippy::disallowed_methods)] // the one clock read of the fuzz targets, as `testing::epoch`
pub fn base_instant() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

/// Decodes `T` (zeros once the input runs out).
fn take<'a, T: Arbitrary<'a> + Default>(u: &mut Unstructured<'a>) -> T {
    T::arbitrary(u).unwrap_or_default()
}

/// Runs `step` on each operation decoded from `u`, at most `max`, until the input runs out.
fn each_op<'a, T: Arbitrary<'a>>(u: &mut Unstructured<'a>, max: usize, mut step: impl FnMut(T)) {
    for _ in 0..max {
        if u.is_empty() {
            return;
        }
        match T::arbitrary(u) {
            Ok(op) => step(op),
            Err(_) => return,
        }
    }
}

/// Milliseconds as a `Duration`.
fn ms(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

// ----- reassembler -----

/// The reassembler's limits, XORed into the target's defaults (4 KiB messages, 16 fragments,
/// 4 partials, 500 ms, 8 KiB budget).
#[derive(Debug, Default, Arbitrary)]
struct ReassemblyLimits {
    max_message_bytes: u16,
    max_fragments: u8,
    max_partial_messages: u8,
    timeout_ms: u16,
    memory_budget_bytes: u16,
}

#[derive(Debug, Arbitrary)]
enum ReassemblyOp {
    /// Defines a model message of `len % 4097` bytes, cut into `chunk % 1024 + 1`-byte
    /// fragments, on channel `channel % 4` under the next message id.
    Message {
        channel: u8,
        len: u16,
        chunk: u16,
        fill: u8,
    },
    /// Inserts every fragment of model message `message` not inserted since its last delivery,
    /// in order or reversed.
    Rest { message: u8, reverse: bool },
    /// Inserts fragment `index` of model message `message` (again, if it was).
    Fragment { message: u8, index: u8 },
    /// A raw fragment on channel 4..=255 (never a model message's key), any header.
    Raw {
        channel: u8,
        message_id: u16,
        index: u8,
        count: u8,
        len: u16,
    },
    /// Time passes: `ms` milliseconds.
    Advance { ms: u16 },
    /// `handle_timeout` now.
    Timeout,
    /// A `now` earlier than the latest (the reassembler must treat it as the latest).
    Stale { ms: u16, message: u8, index: u8 },
}

/// A model message: its key, bytes, fragments, and what happened to it.
struct ModelMessage {
    channel: u8,
    id: u16,
    data: Vec<u8>,
    /// `(index, count, byte range)` of each fragment.
    fragments: Vec<(u8, u8, std::ops::Range<usize>)>,
    /// Which fragments were inserted since the last delivery.
    inserted: Vec<bool>,
    /// Eviction counters (partial limit + memory budget + timeout) when its first fragment
    /// since the last delivery went in.
    evictions_at_start: Option<u64>,
    /// `messages_reassembled` right after its last delivery.
    delivered_at: Option<u64>,
}

fn evictions(stats: &ReassemblyStats) -> u64 {
    stats.evicted_partial_limit + stats.evicted_memory_budget + stats.expired_timeout
}

/// The fragment reassembler ([`Reassembler`]) against a model.
///
/// Input (`arbitrary`): [`ReassemblyLimits`], then up to [`MAX_OPS`] operations: define a
/// message, insert some or all of its fragments, insert raw fragments on other channels, let
/// time pass, call `handle_timeout`, insert with a stale `now`.
///
/// Asserts: a delivered message is exactly a model message, all of whose fragments were
/// inserted since its last delivery, within `max_message_bytes`, `memory_budget_bytes` and
/// `max_fragments`, and not within 64 completions of its last delivery (late duplicates); a
/// message whose last fragment completes it is delivered unless it breaks a limit or a partial
/// was evicted or expired meanwhile; at most `memory_budget_bytes` buffered and
/// `max_partial_messages` partials at any time; `poll_timeout` is in the future after
/// `handle_timeout`; once everything expired, nothing is held and every fragment received is
/// accounted for (delivered, duplicate or dropped).
pub fn reassembler(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let limits: ReassemblyLimits = take(&mut u);
    let config = FragmentConfig {
        max_message_bytes: usize::from(4096 ^ limits.max_message_bytes),
        max_fragments: 16 ^ limits.max_fragments,
        max_partial_messages: usize::from(4 ^ (limits.max_partial_messages % 64)),
        reassembly_timeout_ms: u64::from(500 ^ limits.timeout_ms),
        memory_budget_bytes: usize::from(8192 ^ limits.memory_budget_bytes),
    };
    let limit = config.max_message_bytes.min(config.memory_budget_bytes);
    let mut r = Reassembler::new(config.clone());
    let mut now = base_instant();
    let mut messages: Vec<ModelMessage> = Vec::new();
    let mut next_id = 0u16;
    // Fragments held by delivered messages (model and raw).
    let mut delivered_fragments = 0u64;

    let insert = |r: &mut Reassembler,
                  at: Instant,
                  messages: &mut Vec<ModelMessage>,
                  delivered_fragments: &mut u64,
                  m: usize,
                  i: usize| {
        let msg = &mut messages[m];
        let (index, count, range) = msg.fragments[i].clone();
        let before = *r.stats();
        if msg.evictions_at_start.is_none() {
            msg.evictions_at_start = Some(evictions(&before));
        }
        let again = msg.inserted[i];
        let late = msg
            .delivered_at
            .is_some_and(|at| before.messages_reassembled - at < 64);
        // A late duplicate is refused outright: it joins nothing.
        msg.inserted[i] = again || !late;
        let header = FragmentHeader {
            message_id: msg.id,
            index,
            count,
        };
        let out = r.insert(at, msg.channel, header, &msg.data[range]);
        let complete = msg.inserted.iter().all(|&x| x);
        let fits = msg.data.len() <= limit && count <= config.max_fragments;
        match out {
            Some(bytes) => {
                assert_eq!(
                    &bytes[..],
                    &msg.data[..],
                    "delivered bytes differ from the message"
                );
                assert!(complete, "delivered before every fragment arrived");
                assert!(fits, "delivered a message over the limits");
                assert!(!late, "delivered again within 64 completions");
                *delivered_fragments += u64::from(count);
                msg.delivered_at = Some(r.stats().messages_reassembled);
                msg.inserted.iter_mut().for_each(|x| *x = false);
                msg.evictions_at_start = None;
            }
            None => {
                let evicted = msg.evictions_at_start != Some(evictions(r.stats()));
                assert!(
                    !(complete && !again && fits && !late && !evicted),
                    "message {} ({} bytes, {count} fragments) not delivered: {:?}",
                    msg.id,
                    msg.data.len(),
                    r.stats()
                );
            }
        }
    };

    each_op(&mut u, MAX_OPS, |op: ReassemblyOp| {
        match op {
            ReassemblyOp::Message {
                channel,
                len,
                chunk,
                fill,
            } => {
                let data: Vec<u8> = (0..usize::from(len % 4097))
                    .map(|i| fill.wrapping_add(i as u8))
                    .collect();
                let chunk = usize::from(chunk % 1024) + 1;
                let Ok(split) = split(&data, chunk, 255) else {
                    return;
                };
                let mut offset = 0;
                let fragments: Vec<_> = split
                    .map(|(index, count, bytes)| {
                        let range = offset..offset + bytes.len();
                        offset += bytes.len();
                        (index, count, range)
                    })
                    .collect();
                messages.push(ModelMessage {
                    channel: channel % 4,
                    id: next_id,
                    inserted: vec![false; fragments.len()],
                    data,
                    fragments,
                    evictions_at_start: None,
                    delivered_at: None,
                });
                next_id += 1;
            }
            ReassemblyOp::Rest { message, reverse } => {
                if messages.is_empty() {
                    return;
                }
                let m = usize::from(message) % messages.len();
                let mut todo: Vec<usize> = (0..messages[m].fragments.len())
                    .filter(|&i| !messages[m].inserted[i])
                    .collect();
                if reverse {
                    todo.reverse();
                }
                for i in todo {
                    insert(&mut r, now, &mut messages, &mut delivered_fragments, m, i);
                }
            }
            ReassemblyOp::Fragment { message, index } => {
                if messages.is_empty() {
                    return;
                }
                let m = usize::from(message) % messages.len();
                let i = usize::from(index) % messages[m].fragments.len();
                insert(&mut r, now, &mut messages, &mut delivered_fragments, m, i);
            }
            ReassemblyOp::Raw {
                channel,
                message_id,
                index,
                count,
                len,
            } => {
                let chunk = vec![0xEE; usize::from(len % 2048)];
                let header = FragmentHeader {
                    message_id,
                    index,
                    count,
                };
                if let Some(bytes) = r.insert(now, 4 + channel % 252, header, &chunk) {
                    assert!(count >= 1 && index < count && count <= config.max_fragments);
                    assert!(bytes.len() <= limit);
                    delivered_fragments += u64::from(count);
                }
            }
            ReassemblyOp::Advance { ms: step } => now += ms(u64::from(step)),
            ReassemblyOp::Timeout => {
                r.handle_timeout(now);
                assert!(r.poll_timeout().is_none_or(|t| t > now), "a due partial survived");
            }
            ReassemblyOp::Stale {
                ms: back,
                message,
                index,
            } => {
                if messages.is_empty() {
                    return;
                }
                let m = usize::from(message) % messages.len();
                let i = usize::from(index) % messages[m].fragments.len();
                let at = now.checked_sub(ms(u64::from(back))).unwrap_or(now);
                insert(&mut r, at, &mut messages, &mut delivered_fragments, m, i);
            }
        }
        assert!(
            r.buffered_bytes() <= config.memory_budget_bytes,
            "over the memory budget"
        );
        assert!(
            r.partial_count() <= config.max_partial_messages,
            "over the partial limit"
        );
    });

    // Everything expires eventually; then every fragment is accounted for.
    let end = now + ms(config.reassembly_timeout_ms) + ms(1);
    r.handle_timeout(end);
    assert_eq!(
        (r.partial_count(), r.buffered_bytes()),
        (0, 0),
        "partials outlived the timeout"
    );
    assert_eq!(r.poll_timeout(), None);
    let stats = r.stats();
    assert_eq!(
        stats.fragments_received,
        delivered_fragments + stats.duplicate_fragments + stats.fragments_dropped,
        "fragments unaccounted for: {stats:?}"
    );
}

// ----- heartbeat -----

/// Heartbeat settings XORed into the defaults (500 ms, 5 s, 16-sample window, 333 ms,
/// 32 outstanding).
#[derive(Debug, Default, Arbitrary)]
struct HeartbeatSettings {
    interval_ms: u16,
    timeout_ms: u16,
    rtt_window: u8,
    initial_rtt_ms: u16,
    max_outstanding_pings: u8,
}

#[derive(Debug, Arbitrary)]
enum HeartbeatOp {
    /// `poll_ping` at the current tick.
    PollPing { tick: u8 },
    /// Time passes: `ms` milliseconds.
    Advance { ms: u16 },
    /// The peer answers one of our pings (`which` back from the latest), holding it `hold_us`.
    Pong { which: u8, hold_us: u16, tick: u32 },
    /// A pong with any fields.
    RawPong {
        seq: u32,
        echo_ts_us: u64,
        hold_us: u32,
        tick: u64,
    },
    /// A ping from the peer, relative to its previous one.
    Ping { seq_delta: i8, ts_delta_ms: i16 },
    /// A ping with any fields.
    RawPing { seq: u32, ts_us: u64 },
    /// Something else arrived from the peer.
    Receive,
    /// `handle_timeout` now.
    Timeout,
}

/// The heartbeat machine ([`Heartbeat`]): RTT estimator, loss and failure detection.
///
/// Input (`arbitrary`): [`HeartbeatSettings`], then up to [`MAX_OPS`] operations: poll for
/// pings, let time pass, answer our pings (or send any pong), receive the peer's pings (or any
/// ping), something else received, `handle_timeout`.
///
/// Asserts after every step: every statistic is finite and non-negative, ratios lie in
/// `[0, 1]`; SRTT, RTTVAR and the percentiles are at most `M = max(initial RTT, largest
/// sample)`, and every sample at most the time since its ping; the failure timeout is at most
/// `max(timeout_ms, 3 × (5 M + interval))` and the deadline at most last receipt plus it; the
/// failure fires once, only when that much silence has passed, and then pings and timers stop;
/// `pongs_sent == pings_received`, `pings_lost <= pings_sent`.
pub fn heartbeat(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let s: HeartbeatSettings = take(&mut u);
    let config = HeartbeatConfig {
        interval_ms: u64::from(500 ^ s.interval_ms),
        timeout_ms: u64::from(5_000 ^ s.timeout_ms),
        rtt_window: usize::from(16 ^ s.rtt_window),
        initial_rtt_ms: u64::from(333 ^ s.initial_rtt_ms),
        max_outstanding_pings: usize::from(32 ^ s.max_outstanding_pings),
    };
    let epoch = base_instant();
    let mut hb = Heartbeat::new(epoch, config.clone());
    let mut now = epoch;
    let mut sent: VecDeque<(Ping, Instant)> = VecDeque::new();
    let (mut peer_seq, mut peer_ts_us) = (0u32, 0u64);
    let mut last_receive = epoch;
    let mut largest = ms(config.initial_rtt_ms);
    let mut failed = false;
    let interval = ms(config.interval_ms.max(1));

    each_op(&mut u, MAX_OPS, |op: HeartbeatOp| {
        match op {
            HeartbeatOp::PollPing { tick } => {
                if let Some(ping) = hb.poll_ping(now, u64::from(tick)) {
                    assert!(!failed, "a ping after failure");
                    if sent.len() == 64 {
                        sent.pop_front();
                    }
                    sent.push_back((ping, now));
                }
                assert_eq!(hb.poll_ping(now, 0), None, "two pings at one instant");
            }
            HeartbeatOp::Advance { ms: step } => now += ms(u64::from(step)),
            HeartbeatOp::Pong { which, hold_us, tick } => {
                let Some(&(ping, at)) = sent.iter().rev().nth(usize::from(which) % sent.len().max(1)) else {
                    return;
                };
                let pong = Pong {
                    seq: ping.seq,
                    tick: u64::from(tick),
                    echo_ts_us: ping.ts_us,
                    hold_us: u32::from(hold_us),
                };
                last_receive = last_receive.max(now);
                if let Some(sample) = hb.handle_pong(now, &pong) {
                    assert!(
                        sample.rtt <= now - at + Duration::from_micros(1),
                        "RTT {:?} above the time since the ping",
                        sample.rtt
                    );
                    assert_eq!(sample.peer_tick, u64::from(tick));
                    largest = largest.max(sample.rtt);
                }
            }
            HeartbeatOp::RawPong {
                seq,
                echo_ts_us,
                hold_us,
                tick,
            } => {
                let pong = Pong {
                    seq,
                    tick,
                    echo_ts_us,
                    hold_us,
                };
                last_receive = last_receive.max(now);
                if let Some(sample) = hb.handle_pong(now, &pong) {
                    assert!(sample.rtt <= now - epoch);
                    largest = largest.max(sample.rtt);
                }
            }
            HeartbeatOp::Ping {
                seq_delta,
                ts_delta_ms,
            } => {
                peer_seq = peer_seq.wrapping_add_signed(i32::from(seq_delta));
                peer_ts_us = peer_ts_us.saturating_add_signed(i64::from(ts_delta_ms) * 1_000);
                let ping = Ping {
                    seq: peer_seq,
                    tick: 0,
                    ts_us: peer_ts_us,
                };
                last_receive = last_receive.max(now);
                let pong = hb.handle_ping(now, &ping, 9);
                assert_eq!((pong.seq, pong.echo_ts_us, pong.tick), (ping.seq, ping.ts_us, 9));
            }
            HeartbeatOp::RawPing { seq, ts_us } => {
                last_receive = last_receive.max(now);
                let ping = Ping { seq, tick: 1, ts_us };
                let pong = hb.handle_ping(now, &ping, 3);
                assert_eq!((pong.seq, pong.echo_ts_us), (seq, ts_us));
            }
            HeartbeatOp::Receive => {
                last_receive = last_receive.max(now);
                hb.handle_receive(now);
            }
            HeartbeatOp::Timeout => {
                let timeout = hb.failure_timeout();
                match hb.handle_timeout(now) {
                    Some(failure) => {
                        assert!(!failed, "failure reported twice");
                        assert_eq!(failure.timeout, timeout);
                        assert_eq!(failure.idle, now - last_receive);
                        assert!(failure.idle >= failure.timeout, "failed before the timeout");
                        failed = true;
                    }
                    None => assert!(failed || now < last_receive + timeout, "overdue failure"),
                }
            }
        }
        let st = hb.stats();
        let floats = [
            st.srtt_ms,
            st.rttvar_ms,
            st.min_rtt_ms,
            st.latest_rtt_ms,
            st.rtt_p50_ms,
            st.rtt_p99_ms,
            st.jitter_ms,
            st.loss_ratio,
            st.incoming_loss_ratio,
            st.duplicate_ratio,
            st.out_of_order_ratio,
            st.failure_timeout_ms,
        ];
        assert!(
            floats.iter().all(|x| x.is_finite() && *x >= 0.0),
            "a statistic is negative or not finite: {st:?}"
        );
        let ratios = [
            st.loss_ratio,
            st.incoming_loss_ratio,
            st.duplicate_ratio,
            st.out_of_order_ratio,
        ];
        assert!(ratios.iter().all(|r| *r <= 1.0), "a ratio above 1: {st:?}");
        let m = millis_f64(largest);
        for x in [
            st.srtt_ms,
            st.rttvar_ms,
            st.rtt_p50_ms,
            st.rtt_p99_ms,
            st.latest_rtt_ms,
        ] {
            assert!(x <= m + 1e-6, "{x} ms above the largest RTT {m} ms: {st:?}");
        }
        assert!(st.rtt_p50_ms <= st.rtt_p99_ms);
        if st.rtt_samples > 0 {
            assert!(st.min_rtt_ms <= st.latest_rtt_ms);
            // With `rtt_window` 0 the percentiles stay 0 (documented).
            assert!(config.rtt_window == 0 || st.min_rtt_ms <= st.rtt_p50_ms);
        }
        let bound = ms(config.timeout_ms).max((largest * 5 + ms(1) + interval) * 3);
        assert!(
            hb.failure_timeout() <= bound,
            "failure timeout {:?} above {bound:?}",
            hb.failure_timeout()
        );
        assert!(hb.loss_delay() <= (largest.max(interval) * 2).max(largest * 5));
        assert_eq!(st.pongs_sent, st.pings_received);
        assert!(st.pings_lost <= st.pings_sent);
        assert!(st.late_or_unknown_pongs + st.future_timestamps_clamped <= st.pongs_received);
        match hb.poll_timeout() {
            None => assert!(failed, "no deadline while alive"),
            Some(t) => {
                assert!(!failed, "a deadline after failure");
                assert!(t <= last_receive + hb.failure_timeout());
            }
        }
    });
}

fn millis_f64(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

// ----- tick scheduler -----

#[derive(Debug, Default, Arbitrary)]
struct SchedulerSettings {
    /// XORed into 60 Hz.
    tick_rate_hz: u16,
    /// 0: skip; else catch up at most `catch_up % 16` (0 acts as 1).
    catch_up: u8,
    lateness_window: u8,
}

#[derive(Debug, Arbitrary)]
enum TimeOp {
    /// Time passes: `micros` microseconds.
    Advance { micros: u32 },
    /// A stall: `ms` milliseconds.
    Stall { ms: u32 },
    /// A jump of `hours` hours (the process was suspended).
    Jump { hours: u8 },
    /// One `now` earlier than the latest, by `ms` milliseconds.
    Back { ms: u16 },
    /// Polls until `None`.
    Drain,
}

/// Upper end of the instants the time targets reach: 100 years after the base.
const MAX_FUZZ_SPAN: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Applies a time step; `None` for the polls-only and back steps.
fn step_time(now: &mut Instant, op: &TimeOp) {
    let delta = match *op {
        TimeOp::Advance { micros } => Duration::from_micros(u64::from(micros)),
        TimeOp::Stall { ms: step } => ms(u64::from(step)),
        TimeOp::Jump { hours } => Duration::from_secs(u64::from(hours) * 3600),
        TimeOp::Back { .. } | TimeOp::Drain => Duration::ZERO,
    };
    if *now + delta <= base_instant() + MAX_FUZZ_SPAN {
        *now += delta;
    }
}

/// The fixed-timestep scheduler ([`TickScheduler`]) under stalls, jumps and stale `now`s.
///
/// Input (`arbitrary`): [`SchedulerSettings`], then up to [`MAX_OPS`] time steps (each
/// followed by a drain of `poll_tick`).
///
/// Asserts: ticks are delivered in strictly increasing order, each due (`scheduled_at <= now`,
/// `scheduled_at = start + ⌈tick × 10⁹ / rate⌉ ns`, lateness `now − scheduled_at`); one drain
/// delivers at most the policy's catch-up (1 for skip) and leaves the scheduler at the latest
/// due tick with the next deadline in the future; delivered + skipped = current tick; a stale
/// `now` delivers nothing.
pub fn tick_scheduler(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let s: SchedulerSettings = take(&mut u);
    let policy = match s.catch_up {
        0 => MissedTickPolicy::Skip,
        n => MissedTickPolicy::CatchUp {
            max_ticks: u32::from(n % 16),
        },
    };
    let max_backlog = match policy {
        MissedTickPolicy::Skip => 1,
        MissedTickPolicy::CatchUp { max_ticks } => u64::from(max_ticks.max(1)),
    };
    let rate = u64::from(60 ^ s.tick_rate_hz).max(1);
    let config = TickConfig {
        tick_rate_hz: u32::from(60 ^ s.tick_rate_hz),
        missed_tick_policy: policy,
        lateness_window_ticks: usize::from(s.lateness_window),
    };
    let start = base_instant();
    let mut scheduler = TickScheduler::new(start, config);
    let mut now = start;
    let mut last = 0u64;
    let scheduled = |tick: u64| {
        let nanos = (u128::from(tick) * 1_000_000_000).div_ceil(u128::from(rate));
        start + Duration::from_nanos(u64::try_from(nanos).unwrap())
    };
    let due =
        |at: Instant| u64::try_from((at - start).as_nanos() * u128::from(rate) / 1_000_000_000).unwrap();
    each_op(&mut u, MAX_OPS, |op: TimeOp| {
        step_time(&mut now, &op);
        if let TimeOp::Back { ms: back } = op {
            let at = now.checked_sub(ms(u64::from(back)) + Duration::from_nanos(1));
            if let Some(at) = at.filter(|at| *at >= start) {
                if due(at) <= last {
                    assert_eq!(scheduler.poll_tick(at), None, "a stale now delivered a tick");
                }
            }
            return;
        }
        let mut delivered = 0;
        while let Some(tick) = scheduler.poll_tick(now) {
            delivered += 1;
            assert!(
                delivered <= max_backlog,
                "more than {max_backlog} ticks in one drain"
            );
            assert!(tick.tick > last, "tick {} after {last}", tick.tick);
            assert_eq!(tick.scheduled_at, scheduled(tick.tick));
            assert!(tick.scheduled_at <= now, "tick {} delivered early", tick.tick);
            assert_eq!(tick.lateness, now - tick.scheduled_at);
            last = tick.tick;
        }
        assert_eq!(scheduler.current_tick(), last);
        assert_eq!(last, due(now).max(last), "a due tick left undelivered");
        assert!(scheduler.poll_timeout() > now, "the next deadline is already due");
        assert_eq!(scheduler.poll_timeout(), scheduled(last + 1));
        let stats = scheduler.stats();
        assert_eq!(stats.ticks + stats.skipped, last);
        assert!(stats.lateness_p50_ms <= stats.lateness_p99_ms);
        assert!(stats.lateness_p99_ms <= stats.lateness_max_ms);
    });
}

// ----- tick sync -----

#[derive(Debug, Default, Arbitrary)]
struct SyncSettings {
    /// XORed into 60 Hz.
    tick_rate_hz: u16,
    /// `lead_margin_ticks = 2 + this / 16`.
    lead_margin: u8,
    /// `max_adjust_ratio = 0.05 + this / 500` (clamped by the machine to 0.5).
    max_adjust: u8,
    /// `snap_threshold_ticks = 30 ^ this`.
    snap: u8,
    /// `smoothing = 0.2 + this / 255` (clamped to 1).
    smoothing: u8,
    /// XORed into 1 000 ms.
    slew_ms: u16,
}

#[derive(Debug, Arbitrary)]
enum SyncOp {
    /// A time step (drains `poll_tick` after it).
    Time(TimeOp),
    /// A pong sample: the server's tick is the model server's plus `offset`, `rtt_ms` after
    /// its ping.
    Sample { offset: i16, rtt_ms: u16 },
    /// A sample with any server tick and RTT.
    RawSample { server_tick: u64, rtt_ms: u32 },
}

/// Client tick synchronisation ([`TickSync`]) under samples, jumps and stale `now`s.
///
/// Input (`arbitrary`): [`SyncSettings`], then up to [`MAX_OPS`] time steps and samples
/// (samples follow a model server ticking at the configured rate, offset by the input, or
/// are arbitrary).
///
/// Asserts: ticks are strictly increasing, at most one per instant (a second poll at the same
/// `now` gives `None`), and `skipped_ticks` grows by exactly the ticks jumped over; every
/// statistic and the estimate are finite; the rate adjustment stays within
/// `±max_adjust_ratio`; after a delivery the next deadline is in the future.
pub fn tick_sync(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let s: SyncSettings = take(&mut u);
    let config = TickSyncConfig {
        tick_rate_hz: u32::from(60 ^ s.tick_rate_hz),
        lead_margin_ticks: 2.0 + f64::from(s.lead_margin) / 16.0,
        max_adjust_ratio: 0.05 + f64::from(s.max_adjust) / 500.0,
        snap_threshold_ticks: f64::from(30 ^ s.snap),
        smoothing: 0.2 + f64::from(s.smoothing) / 255.0,
        slew_time_constant_ms: u64::from(1_000 ^ s.slew_ms),
    };
    let max_adjust = config.max_adjust_ratio.min(0.5);
    let hz = u64::from(config.tick_rate_hz.max(1));
    let start = base_instant();
    let mut sync = TickSync::new(config);
    let mut now = start;
    let mut last: Option<u64> = None;
    let server_tick = |now: Instant| {
        u64::try_from((now - start).as_nanos() * u128::from(hz) / 1_000_000_000).unwrap_or(u64::MAX)
    };
    each_op(&mut u, MAX_OPS, |op: SyncOp| {
        let mut at = now;
        match op {
            SyncOp::Time(time) => {
                step_time(&mut now, &time);
                at = match time {
                    TimeOp::Back { ms: back } => now.checked_sub(ms(u64::from(back))).unwrap_or(now),
                    _ => now,
                };
            }
            SyncOp::Sample { offset, rtt_ms } => {
                let tick = server_tick(now).saturating_add_signed(i64::from(offset));
                sync.handle_sample(now, tick, ms(u64::from(rtt_ms)));
            }
            SyncOp::RawSample { server_tick, rtt_ms } => {
                sync.handle_sample(now, server_tick, ms(u64::from(rtt_ms)));
            }
        }
        let skipped_before = sync.stats().skipped_ticks;
        if let Some(tick) = sync.poll_tick(at) {
            if let Some(prev) = last {
                assert!(tick > prev, "tick {tick} after {prev}");
                assert_eq!(
                    sync.stats().skipped_ticks - skipped_before,
                    tick - prev - 1,
                    "skipped ticks miscounted"
                );
            }
            last = Some(tick);
            assert_eq!(sync.last_tick(), Some(tick));
            assert_eq!(sync.poll_tick(at), None, "two ticks at one instant");
            assert!(
                sync.poll_timeout().is_none_or(|d| d > at),
                "the next deadline is due"
            );
        }
        let stats = sync.stats();
        for x in [
            stats.offset_ticks,
            stats.estimation_error_ticks,
            stats.rate_adjust_ratio,
        ] {
            assert!(x.is_finite(), "a statistic is not finite: {stats:?}");
        }
        assert!(
            stats.rate_adjust_ratio.abs() <= max_adjust + 1e-12,
            "rate adjustment {} beyond ±{max_adjust}",
            stats.rate_adjust_ratio
        );
        if let Some(estimate) = sync.estimated_server_tick(now) {
            assert!(estimate.is_finite());
        }
    });
}

// ----- rate limiter -----

#[derive(Debug, Default, Arbitrary)]
struct LimiterSettings {
    /// XORed into 4 tokens (the bucket) and 8 (per address).
    burst: u8,
    /// Refill in 1/16 token per second, XORed into 4/s; `flags & 1` negates it, `& 2` makes
    /// it NaN.
    rate: u16,
    flags: u8,
    /// XORed into 3 addresses.
    max_tracked: u8,
    /// XORed into 120 messages, and 4 096 bytes, per burst; rates as `rate` scaled.
    message_burst: u8,
    byte_burst: u16,
}

#[derive(Debug, Arbitrary)]
enum LimiterOp {
    /// `TokenBucket::try_take(amount)`.
    Take { amount: u8 },
    /// `AddressLimiter::check` for one of six addresses.
    Addr { addr: u8 },
    /// `PeerLimiter::check` for a message of `bytes` bytes.
    Peer { bytes: u16 },
    /// Time passes: `nanos` nanoseconds.
    Nanos { nanos: u32 },
    /// Time passes: `ms` milliseconds.
    Millis { ms: u16 },
    /// `TokenBucket::try_take(amount)` `ms` before the latest `now` (which then stays).
    Back { ms: u16, amount: u8 },
}

/// Admissions of one bucket: `(now, latest now so far, tokens)` for each admitted request.
type Admissions = Vec<(Instant, Instant, u64)>;

/// Asserts the token-bucket bound over every window of `admitted`: the tokens admitted between
/// requests `i` and `j` are at most the capacity plus the refill over the time between them
/// (`refill_per_ns` pico-tokens per nanosecond, the documented fixed point).
fn assert_bucket_bound(admitted: &[(Instant, Instant, u64)], capacity: u64, refill_per_ns: u128, what: &str) {
    let Some(&(_, latest_j, _)) = admitted.last() else {
        return;
    };
    let mut sum = 0u128;
    for &(now_i, _, amount) in admitted.iter().rev() {
        sum += u128::from(amount);
        let elapsed = latest_j.saturating_duration_since(now_i).as_nanos();
        let allowed = (u128::from(capacity) * UNITS).saturating_add(elapsed.saturating_mul(refill_per_ns));
        assert!(
            sum * UNITS <= allowed,
            "{what}: {sum} tokens admitted over {elapsed} ns, capacity {capacity}, {refill_per_ns} pico-tokens/ns"
        );
    }
}

/// Pico-tokens per token (the limiter's documented fixed point).
const UNITS: u128 = 1_000_000_000_000;

/// The documented rate representation: tokens per second rounded to 0.001, i.e. pico-tokens
/// per nanosecond; negative or NaN rates refill nothing.
fn refill_per_ns(per_sec: f64) -> u128 {
    (per_sec * 1_000.0).round() as u128
}

/// Token buckets and the limiters built on them ([`TokenBucket`], [`AddressLimiter`],
/// [`PeerLimiter`]), against the token-bucket bound.
///
/// Input (`arbitrary`): [`LimiterSettings`], then up to [`MAX_OPS`] requests and time steps
/// (including `now`s earlier than the latest).
///
/// Asserts: over every window of requests, a bucket never admits more than its burst plus its
/// rate × elapsed (per address, over windows without an eviction; per connection for messages
/// and for bytes, a message charged at most the byte burst); a refusal happens only when fewer
/// tokens are available, and its `retry_after` is exact (the same request succeeds at
/// `now + retry_after` and, for a positive wait, fails a nanosecond earlier) or `Duration::MAX`
/// exactly when the request can never succeed; the address table stays within
/// `max_tracked_addrs`; the counters add up.
pub fn rate_limiter(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let s: LimiterSettings = take(&mut u);
    let mut rate = f64::from(64 ^ s.rate) / 16.0;
    if s.flags & 1 != 0 {
        rate = -rate;
    }
    if s.flags & 2 != 0 {
        rate = f64::NAN;
    }
    let capacity = u64::from(4 ^ s.burst);
    let config = RateLimitConfig {
        handshakes_per_addr_per_sec: rate,
        handshake_burst_per_addr: u64::from(8 ^ s.burst),
        max_tracked_addrs: usize::from(3 ^ (s.max_tracked % 8)),
        messages_per_sec: rate * 30.0,
        message_burst: u64::from(120 ^ s.message_burst),
        bytes_per_sec: rate * 4096.0,
        byte_burst: u64::from(4096 ^ s.byte_burst),
    };
    let start = base_instant() + Duration::from_secs(3600);
    let mut now = start;
    let mut bucket = TokenBucket::new(capacity, rate, now);
    let mut addresses = AddressLimiter::new(&config);
    let mut peer = PeerLimiter::new(&config, now);
    let addrs: [IpAddr; 6] = [
        IpAddr::from([10, 0, 0, 1]),
        IpAddr::from([10, 0, 0, 2]),
        IpAddr::from([192, 168, 1, 1]),
        IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]),
        IpAddr::from([0x2001u16, 0xdb8, 0, 0, 0, 0, 0, 1]),
        IpAddr::from([255, 255, 255, 255]),
    ];
    let mut latest = now;
    let mut bucket_latest = now;
    let mut bucket_admitted: Admissions = Vec::new();
    // Per address: admissions since the last eviction anywhere.
    let mut addr_admitted: Vec<Admissions> = vec![Vec::new(); addrs.len()];
    let mut addr_evictions = 0u64;
    let (mut messages_admitted, mut bytes_admitted): (Admissions, Admissions) = (Vec::new(), Vec::new());
    let (mut addr_checks, mut peer_checks) = (0u64, 0u64);
    let byte_burst = config.byte_burst;

    each_op(&mut u, MAX_OPS, |op: LimiterOp| {
        let mut at = now;
        match op {
            LimiterOp::Nanos { nanos } => {
                now += Duration::from_nanos(u64::from(nanos));
                return;
            }
            LimiterOp::Millis { ms: step } => {
                now += ms(u64::from(step));
                return;
            }
            LimiterOp::Back { ms: back, .. } => at = now - ms(u64::from(back)),
            _ => {}
        }
        latest = latest.max(at);
        match op {
            LimiterOp::Take { amount } | LimiterOp::Back { amount, .. } => {
                let amount = u64::from(amount);
                bucket_latest = bucket_latest.max(at);
                let available = bucket.available(at);
                let before = bucket.clone();
                match bucket.try_take(at, amount) {
                    Ok(()) => {
                        assert!(available >= amount, "took {amount} of {available} tokens");
                        bucket_admitted.push((at, latest, amount));
                        assert_bucket_bound(&bucket_admitted, capacity, refill_per_ns(rate), "bucket");
                    }
                    Err(limited) => {
                        assert!(available < amount, "refused {amount} with {available} available");
                        let never = amount > capacity || refill_per_ns(rate) == 0;
                        assert_eq!(limited.retry_after == Duration::MAX, never, "{limited:?}");
                        if !never {
                            let retry = bucket_latest + limited.retry_after;
                            assert!(
                                before.clone().try_take(retry, amount).is_ok(),
                                "retry_after too short"
                            );
                            if !limited.retry_after.is_zero() {
                                let early = retry - Duration::from_nanos(1);
                                assert!(
                                    before.clone().try_take(early, amount).is_err(),
                                    "retry_after too long"
                                );
                            }
                        }
                    }
                }
            }
            LimiterOp::Addr { addr } => {
                let i = usize::from(addr) % addrs.len();
                addr_checks += 1;
                let result = addresses.check(at, addrs[i]);
                let stats = addresses.stats();
                if stats.evictions != addr_evictions {
                    addr_evictions = stats.evictions;
                    addr_admitted.iter_mut().for_each(Vec::clear);
                }
                if result.is_ok() {
                    addr_admitted[i].push((at, latest, 1));
                    assert_bucket_bound(
                        &addr_admitted[i],
                        config.handshake_burst_per_addr,
                        refill_per_ns(config.handshakes_per_addr_per_sec),
                        "address",
                    );
                }
                assert!(
                    addresses.tracked() <= config.max_tracked_addrs.max(1),
                    "address table over its cap"
                );
                assert_eq!(stats.allowed + stats.limited, addr_checks);
            }
            LimiterOp::Peer { bytes } => {
                peer_checks += 1;
                let charged = u64::from(bytes).min(byte_burst);
                let before = peer.clone();
                match peer.check(at, usize::from(bytes)) {
                    Ok(()) => {
                        messages_admitted.push((at, latest, 1));
                        bytes_admitted.push((at, latest, charged));
                        assert_bucket_bound(
                            &messages_admitted,
                            config.message_burst,
                            refill_per_ns(config.messages_per_sec),
                            "messages",
                        );
                        assert_bucket_bound(
                            &bytes_admitted,
                            byte_burst,
                            refill_per_ns(config.bytes_per_sec),
                            "bytes",
                        );
                    }
                    Err(limited) => {
                        if let Some(retry) = latest.checked_add(limited.retry_after) {
                            if limited.retry_after < Duration::from_secs(1 << 40) {
                                assert!(
                                    before.clone().check(retry, usize::from(bytes)).is_ok(),
                                    "peer retry_after too short"
                                );
                            }
                        }
                    }
                }
                let stats = peer.stats();
                assert_eq!(stats.allowed + stats.limited, peer_checks);
                assert_eq!(stats.evictions, 0);
            }
            LimiterOp::Nanos { .. } | LimiterOp::Millis { .. } => {}
        }
    });
}

// ----- ticket replay cache -----

#[derive(Debug, Default, Arbitrary)]
struct VerifierSettings {
    /// XORed into 30 000 ms.
    max_skew_ms: u16,
    /// XORed into 4 (`% 16` first).
    replay_cache_capacity: u8,
    /// XORed into 300 000 ms.
    max_lifetime_ms: u32,
    /// XORed into 4, 4 and 2 (`% 8` first).
    max_revoked: u8,
}

/// A join ticket as the replay-cache and handshake targets build it: fields relative to the
/// wall clock, keys and ids from small pools. All zeros is a valid ticket (key 1, client 0,
/// `jti` 0, issued now, 60 s).
#[derive(Debug, Clone, Default, Arbitrary)]
struct TicketSpec {
    /// `jti = [jti % 8; 16]`.
    jti: u8,
    /// `client_id = client % 4`.
    client: u8,
    /// Signing key `key % 3` (ids 1, 2, 3; 1 and 2 trusted at start).
    key: u8,
    /// Another game server's id.
    wrong_audience: bool,
    /// `issued_at = now + issued_offset_ms`.
    issued_offset_ms: i32,
    /// `not_before = issued_at + not_before_ms`.
    not_before_ms: u16,
    /// `expires_at = issued_at + 60 000 ^ lifetime_ms`.
    lifetime_ms: u32,
    /// Names another identity key than the handshake's.
    wrong_identity: bool,
    /// Flips a signature bit.
    bad_signature: bool,
    /// Grants [`PERMISSION_ADMIN`].
    admin: bool,
}

/// The issuer keys of the ticket targets: key id `k + 1` is `[0x60 + k; 32]`.
fn issuer_key(k: u8) -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[0x60 + k % 3; 32])
}

impl TicketSpec {
    fn claims(&self, now_ms: u64, identity: [u8; 32]) -> JoinTicketClaims {
        let issued = now_ms.saturating_add_signed(i64::from(self.issued_offset_ms));
        let mut client_key = identity;
        if self.wrong_identity {
            client_key[0] ^= 1;
        }
        JoinTicketClaims {
            client_id: u64::from(self.client % 4),
            gs_id: if self.wrong_audience { GS_ID + 1 } else { GS_ID },
            jti: [self.jti % 8; 16],
            issued_at_ms: issued,
            not_before_ms: issued.saturating_add(u64::from(self.not_before_ms)),
            expires_at_ms: issued.saturating_add(u64::from(60_000 ^ self.lifetime_ms)),
            permissions: if self.admin { PERMISSION_ADMIN | 1 } else { 1 },
            client_key,
        }
    }

    fn key_id(&self) -> u32 {
        u32::from(self.key % 3) + 1
    }

    fn ticket(&self, now_ms: u64, identity: [u8; 32]) -> JoinTicket {
        let mut ticket =
            TicketIssuer::new(self.key_id(), issuer_key(self.key)).issue(&self.claims(now_ms, identity));
        if self.bad_signature {
            ticket.signature[7] ^= 0x10;
        }
        ticket
    }
}

#[derive(Debug, Arbitrary)]
enum VerifierOp {
    /// A join ticket presented with the client's identity key.
    Verify(TicketSpec),
    /// Wall-clock time passes: `ms` milliseconds.
    Advance { ms: u32 },
    /// The wall clock steps back `ms` milliseconds.
    Back { ms: u16 },
    /// Revokes `jti % 8` until `now + until_offset_ms`.
    RevokeJti { jti: u8, until_offset_ms: i32 },
    /// Revokes client `client % 4`.
    RevokeClient { client: u8 },
    /// Revokes key id `key % 3 + 1`.
    RevokeKey { key: u8 },
    /// Stops trusting key id `key % 3 + 1`.
    RemoveKey { key: u8 },
    /// Trusts key id `key % 3 + 1`.
    AddKey { key: u8 },
}

/// Model of what a [`TicketVerifier`] has accepted and revoked.
#[derive(Debug, Default)]
struct VerifierModel {
    /// Per `jti`: the latest accepted instant of every ticket accepted with it (expiry + skew).
    accepted: BTreeMap<[u8; 16], u64>,
    revoked_clients: BTreeSet<u64>,
    revoked_keys: BTreeSet<u32>,
    revoked_jtis: BTreeMap<[u8; 16], u64>,
    trusted: BTreeSet<u32>,
    /// Admitted tickets, for `check_live` after revocations.
    live: Vec<(u32, JoinTicketClaims)>,
}

impl VerifierModel {
    /// Checks one verification against the model and records an acceptance. `now` is the
    /// verifier's effective time (the latest seen).
    fn check(
        &mut self,
        config: &TicketConfig,
        cache_len_before: usize,
        spec: &TicketSpec,
        ticket: &JoinTicket,
        now: u64,
        result: &Result<JoinTicketClaims, TicketError>,
    ) {
        let claims = ticket.claims().expect("the target's tickets decode");
        let key_id = ticket.key_id;
        let last_valid = claims.expires_at_ms.saturating_add(config.max_skew_ms);
        let replayed = self.accepted.get(&claims.jti).is_some_and(|&until| until >= now);
        let revoked = self.revoked_keys.contains(&key_id)
            || self.revoked_clients.contains(&claims.client_id)
            || self
                .revoked_jtis
                .get(&claims.jti)
                .is_some_and(|&until| until >= now);
        let valid = self.trusted.contains(&key_id)
            && !spec.bad_signature
            && !spec.wrong_audience
            && claims.not_before_ms.saturating_sub(config.max_skew_ms) <= now
            && now <= last_valid
            && claims.expires_at_ms.saturating_sub(claims.issued_at_ms) <= config.max_lifetime_ms
            && !revoked
            && !spec.wrong_identity;
        match result {
            Ok(accepted) => {
                assert_eq!(accepted, &claims, "accepted claims differ from the ticket's");
                assert!(valid, "accepted an invalid ticket: {spec:?} at {now}, {self:?}");
                assert!(
                    !replayed,
                    "jti {:?} accepted twice within its lifetime",
                    claims.jti
                );
                let until = self.accepted.entry(claims.jti).or_default();
                *until = (*until).max(last_valid);
                self.live.push((key_id, claims));
            }
            Err(TicketError::Replayed) => assert!(replayed, "a fresh jti refused as replayed"),
            Err(TicketError::ReplayCacheFull { .. }) => {
                assert!(
                    cache_len_before >= config.replay_cache_capacity,
                    "cache full below capacity"
                )
            }
            Err(error) => assert!(
                !valid || replayed,
                "a valid fresh ticket refused with {error:?}: {spec:?} at {now}"
            ),
        }
        if valid && !replayed && cache_len_before < config.replay_cache_capacity {
            assert!(result.is_ok(), "a valid fresh ticket refused: {result:?}");
        }
    }
}

/// The join-ticket verifier and its replay cache ([`TicketVerifier`]), against a model.
///
/// Input (`arbitrary`): [`VerifierSettings`], then up to [`MAX_OPS`] operations: present a
/// ticket (any mix of key, audience, validity window, identity, signature), move the wall
/// clock either way, revoke `jti`s, clients and keys, remove and add keys.
///
/// Asserts: a `jti` is never accepted twice while a ticket accepted with it is within its
/// lifetime (expiry plus skew); only tickets that pass every documented check are accepted,
/// with their own claims, and a valid fresh ticket is accepted when the cache has room;
/// `Replayed` only for a live `jti`, `ReplayCacheFull` only at capacity; the cache holds at
/// most its capacity; revoked admissions fail `check_live`; the counters add up.
pub fn replay_cache(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let s: VerifierSettings = take(&mut u);
    let config = TicketConfig {
        max_skew_ms: u64::from(30_000 ^ s.max_skew_ms),
        replay_cache_capacity: usize::from(4 ^ (s.replay_cache_capacity % 16)),
        max_lifetime_ms: u64::from(300_000 ^ s.max_lifetime_ms),
        max_revoked_jtis: usize::from(4 ^ (s.max_revoked % 8)),
        max_revoked_clients: usize::from(4 ^ (s.max_revoked % 8)),
        max_revoked_keys: usize::from(2 ^ (s.max_revoked % 8)),
    };
    let mut verifier = TicketVerifier::new(GS_ID, config.clone());
    let mut model = VerifierModel::default();
    for k in 0..2 {
        verifier.add_key(u32::from(k) + 1, issuer_key(k).verifying_key());
        model.trusted.insert(u32::from(k) + 1);
    }
    let mut now = SEED_NOW_MS;
    // The verifier's effective time: the latest `now` it was given (none yet).
    let mut latest = 0;
    let mut calls = 0u64;
    each_op(&mut u, MAX_OPS, |op: VerifierOp| {
        match op {
            VerifierOp::Verify(spec) => {
                let ticket = spec.ticket(now, CLIENT_KEY);
                let before = verifier.replay_cache_len();
                let result = verifier.verify(&ticket, now, &CLIENT_KEY);
                latest = latest.max(now);
                calls += 1;
                model.check(&config, before, &spec, &ticket, latest, &result);
            }
            VerifierOp::Advance { ms } => now = now.saturating_add(u64::from(ms)),
            VerifierOp::Back { ms } => now = now.saturating_sub(u64::from(ms)),
            VerifierOp::RevokeJti { jti, until_offset_ms } => {
                let until = now.saturating_add_signed(i64::from(until_offset_ms));
                if verifier.revoke_jti([jti % 8; 16], until).is_ok() {
                    let entry = model.revoked_jtis.entry([jti % 8; 16]).or_default();
                    *entry = (*entry).max(until.saturating_add(config.max_skew_ms));
                }
            }
            VerifierOp::RevokeClient { client } => {
                if verifier.revoke_client(u64::from(client % 4)).is_ok() {
                    model.revoked_clients.insert(u64::from(client % 4));
                }
            }
            VerifierOp::RevokeKey { key } => {
                if verifier.revoke_key(u32::from(key % 3) + 1).is_ok() {
                    model.revoked_keys.insert(u32::from(key % 3) + 1);
                }
            }
            VerifierOp::RemoveKey { key } => {
                verifier.remove_key(u32::from(key % 3) + 1);
                model.trusted.remove(&(u32::from(key % 3) + 1));
            }
            VerifierOp::AddKey { key } => {
                verifier.add_key(u32::from(key % 3) + 1, issuer_key(key).verifying_key());
                model.trusted.insert(u32::from(key % 3) + 1);
            }
        }
        assert!(
            verifier.replay_cache_len() <= config.replay_cache_capacity,
            "replay cache over capacity"
        );
        let stats = verifier.stats();
        assert_eq!(stats.accepted + stats.rejected, calls);
        assert!(stats.replay_cache_full <= stats.rejected);
        for (key_id, claims) in &model.live {
            let revoked = model.revoked_keys.contains(key_id)
                || model.revoked_clients.contains(&claims.client_id)
                || model
                    .revoked_jtis
                    .get(&claims.jti)
                    .is_some_and(|&until| until >= latest.max(now));
            if revoked {
                assert_eq!(
                    verifier.check_live(*key_id, claims, now),
                    Err(TicketError::Revoked),
                    "a revoked admission is still live"
                );
            }
        }
    });
}

// ----- handshake (server side) -----

/// The schema hash both sides of the handshake targets use.
const SCHEMA: [u8; 32] = [0x5C; 32];
/// Capabilities the handshake targets' server supports.
const SERVER_CAPABILITIES: u64 = 0b0111;

/// The schema hash a hello of `role` must carry (game servers speak the VS protocol,
/// `PROTOCOL.md` §8.1), or another one.
fn schema_for(role: Role, wrong: bool) -> [u8; 32] {
    let mut schema = if role == Role::GameServer {
        VS_SCHEMA_HASH
    } else {
        SCHEMA
    };
    schema[0] ^= u8::from(wrong);
    schema
}

/// A role from a fuzz byte.
fn role_of(x: u8) -> Role {
    [Role::Player, Role::Spectator, Role::Admin, Role::GameServer][usize::from(x % 4)]
}

/// The client identity keys of the handshake targets: `[0x70 + k; 32]`.
fn client_identity(k: u8) -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[0x70 + k % 3; 32])
}

/// The game server's identity key in the handshake and GS targets.
fn gs_identity() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[0x11; 32])
}

/// The hello signature's digest, `SHA-256("tickwire/hello/v1" ‖ exporter ‖ body)`
/// (`PROTOCOL.md` §4; restated here so the targets check the spec, not the code).
fn spec_hello_digest(exporter: &[u8; 32], body: &[u8]) -> [u8; 32] {
    Sha256::new()
        .chain_update(b"tickwire/hello/v1")
        .chain_update(exporter)
        .chain_update(body)
        .finalize()
        .into()
}

/// The accept signature's digest, `SHA-256("tickwire/accept/v1" ‖ exporter ‖
/// u32be(len(hello)) ‖ hello ‖ accept)`.
fn spec_accept_digest(exporter: &[u8; 32], hello: &[u8], accept: &[u8]) -> [u8; 32] {
    Sha256::new()
        .chain_update(b"tickwire/accept/v1")
        .chain_update(exporter)
        .chain_update((hello.len() as u32).to_be_bytes())
        .chain_update(hello)
        .chain_update(accept)
        .finalize()
        .into()
}

fn spec_verify(key: &[u8; 32], digest: &[u8; 32], signature: &wire::Signature) -> bool {
    ed25519_dalek::VerifyingKey::from_bytes(key)
        .and_then(|k| k.verify_strict(digest, &ed25519_dalek::Signature::from_bytes(&signature.0)))
        .is_ok()
}

/// How a handshake message is signed.
#[derive(Debug, Clone, Copy, Default, Arbitrary)]
enum Signing {
    /// Correctly.
    #[default]
    Good,
    /// Over another exporter (another TLS session).
    WrongExporter,
    /// With another key than the one the body names.
    OtherKey,
    /// All-zero signature.
    Zero,
    /// Correctly, then bit `n % 512` flipped.
    Flip(u16),
}

fn sign_with(
    signing: Signing,
    key: &ed25519_dalek::SigningKey,
    digest: impl Fn(&[u8; 32]) -> [u8; 32],
    exporter: &[u8; 32],
) -> wire::Signature {
    use ed25519_dalek::Signer;
    let mut other = *exporter;
    other[0] ^= 1;
    let bytes = match signing {
        Signing::Good => key.sign(&digest(exporter)).to_bytes(),
        Signing::WrongExporter => key.sign(&digest(&other)).to_bytes(),
        Signing::OtherKey => ed25519_dalek::SigningKey::from_bytes(&[0x99; 32])
            .sign(&digest(exporter))
            .to_bytes(),
        Signing::Zero => [0; 64],
        Signing::Flip(bit) => {
            let mut sig = key.sign(&digest(exporter)).to_bytes();
            sig[usize::from(bit % 512) / 8] ^= 1 << (bit % 8);
            sig
        }
    };
    wire::Signature(bytes)
}

/// Which join ticket a hello carries.
#[derive(Debug, Clone, Default, Arbitrary)]
enum TicketChoice {
    /// Built from a spec (all zeros: valid).
    #[default]
    Ticket,
    /// Built from this spec.
    Spec(TicketSpec),
    /// None.
    Missing,
    /// Claims that do not decode, correctly signed.
    Garbage(u8),
}

/// A client hello: all zeros is a valid Player hello with a valid ticket.
#[derive(Debug, Clone, Default, Arbitrary)]
struct HelloSpec {
    identity: u8,
    /// `version_min = 1 ^ (v % 4)`.
    version_min: u8,
    /// `version_max = 1 ^ (v % 4)`.
    version_max: u8,
    wrong_schema: bool,
    capabilities: u8,
    role: u8,
    ticket: TicketChoice,
    signing: Signing,
    /// XORs `(at % len, byte)` into the encoded body before signing.
    mutate: Option<(u16, u8)>,
    nonce: u8,
}

impl HelloSpec {
    /// The hello's body bytes and the message, for a connection with `exporter`.
    fn build(&self, exporter: &[u8; 32], now_ms: u64, jti_base: u8) -> (Vec<u8>, Control) {
        let identity = client_identity(self.identity);
        let key = identity.verifying_key().to_bytes();
        let ticket = match &self.ticket {
            TicketChoice::Ticket => Some(
                TicketSpec {
                    jti: jti_base,
                    ..TicketSpec::default()
                }
                .ticket(now_ms, key),
            ),
            TicketChoice::Spec(spec) => Some(spec.ticket(now_ms, key)),
            TicketChoice::Missing => None,
            TicketChoice::Garbage(byte) => {
                let claims = vec![*byte; 9];
                let key_id = 1u32;
                let mut message = JOIN_TICKET_CONTEXT.to_vec();
                message.extend_from_slice(&key_id.to_be_bytes());
                message.extend_from_slice(&claims);
                use ed25519_dalek::Signer;
                Some(JoinTicket {
                    key_id,
                    signature: issuer_key(0).sign(&message).to_bytes(),
                    claims,
                })
            }
        };
        let body = HelloBody {
            version_min: 1 ^ u16::from(self.version_min % 4),
            version_max: 1 ^ u16::from(self.version_max % 4),
            schema_hash: schema_for(role_of(self.role), self.wrong_schema),
            nonce: [self.nonce; NONCE_LEN],
            capabilities: u64::from(self.capabilities),
            role: role_of(self.role),
            identity_key: key,
            join_ticket: ticket,
        };
        let mut bytes = wire::encode(&body);
        if let Some((at, byte)) = self.mutate {
            let at = usize::from(at) % bytes.len();
            bytes[at] ^= byte;
        }
        let signature = sign_with(
            self.signing,
            &identity,
            |e| spec_hello_digest(e, &bytes),
            exporter,
        );
        (
            bytes.clone(),
            Control::Hello(Signed {
                body: bytes,
                signature,
            }),
        )
    }
}

#[derive(Debug, Arbitrary)]
enum ServerOp {
    /// A hello on connection `conn % 4`.
    Hello { conn: u8, hello: HelloSpec },
    /// Control-stream bytes on connection `conn % 4`: a `Control` if they decode, else the
    /// connection closes with `BAD_HANDSHAKE` (as `connection.rs` does).
    Raw { conn: u8, bytes: Vec<u8> },
    /// An accept (the wrong message) on connection `conn % 4`.
    Accept { conn: u8, body: Vec<u8> },
    /// The client closes connection `conn % 4`.
    Close { conn: u8 },
    /// A new connection in slot `conn % 4`, with exporter `[exporter; 32]`.
    Open { conn: u8, exporter: u8 },
    /// Wall-clock time passes.
    Advance { ms: u32 },
    /// Revokes client `client % 4`.
    Revoke { client: u8 },
}

/// Where one connection of a handshake target stands.
#[derive(Debug)]
enum Slot<A> {
    /// Waiting for the peer's message: the typestate value and the connection's exporter.
    Pending(A, [u8; 32]),
    /// Established.
    Accepted,
    /// Closed by us (with a reason, checked when it happened).
    Rejected,
    /// Closed by the peer.
    Closed,
}

/// Reason codes `AwaitingHello::handle_hello` may refuse with.
const SERVER_REASONS: &[ReasonCode] = &[
    ReasonCode::BAD_HANDSHAKE,
    ReasonCode::UNSUPPORTED_VERSION,
    ReasonCode::SCHEMA_MISMATCH,
    ReasonCode::BAD_SIGNATURE,
    ReasonCode::ROLE_NOT_PERMITTED,
    ReasonCode::TICKET_MALFORMED,
    ReasonCode::TICKET_UNKNOWN_KEY,
    ReasonCode::TICKET_BAD_SIGNATURE,
    ReasonCode::TICKET_WRONG_AUDIENCE,
    ReasonCode::TICKET_NOT_YET_VALID,
    ReasonCode::TICKET_EXPIRED,
    ReasonCode::TICKET_LIFETIME_TOO_LONG,
    ReasonCode::TICKET_REVOKED,
    ReasonCode::TICKET_IDENTITY_MISMATCH,
    ReasonCode::TICKET_REPLAYED,
    ReasonCode::SERVER_BUSY,
];

/// The server side of the session handshake ([`AwaitingHello`]) on four connections sharing
/// one ticket verifier.
///
/// Input (`arbitrary`): a flags byte (`& 1`: the server admits game servers; `& 2`: it
/// presents a play ticket), then up to 64 operations: hellos built from a [`HelloSpec`]
/// (mutated bodies, wrong exporters and keys, every ticket defect), raw control bytes, accepts,
/// client closes, new connections, wall-clock steps, client revocations.
///
/// Asserts: every connection ends accepted, rejected with one of the documented reasons, or
/// pending; an accepted hello's signature verifies under the spec's transcript, the version is
/// the highest both speak, capabilities the intersection; a non-game-server session carries
/// the ticket the verifier just accepted (its claims name the hello's identity key, grant admin
/// if the role is admin), a game-server session none and only where admitted; the accept's
/// signature verifies under the spec's transcript and echoes the hello; a rejection after the
/// verifier refused a ticket carries that refusal's reason; a hello that is valid in every
/// respect (fresh ticket, cache room) is accepted.
pub fn handshake_server(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let flags: u8 = take(&mut u);
    let identity = gs_identity();
    let play = a_play_ticket_bytes(SEED_NOW_MS);
    let policy = ServerPolicy {
        version_min: 1,
        version_max: 2,
        schema_hash: SCHEMA,
        capabilities: SERVER_CAPABILITIES,
        identity: &identity,
        accept_game_servers: flags & 1 != 0,
        play_ticket: (flags & 2 != 0).then_some(play.as_slice()),
    };
    let config = TicketConfig {
        replay_cache_capacity: 3,
        ..TicketConfig::default()
    };
    let mut verifier = TicketVerifier::new(GS_ID, config.clone());
    verifier.add_key(1, issuer_key(0).verifying_key());
    verifier.add_key(2, issuer_key(1).verifying_key());
    let mut model = VerifierModel::default();
    model.trusted.extend([1, 2]);
    let mut slots: Vec<Slot<AwaitingHello>> = (0..4u8)
        .map(|i| Slot::Pending(AwaitingHello::new([i; 32]), [i; 32]))
        .collect();
    let mut now_ms = SEED_NOW_MS;
    let mut hellos = 0u8;
    each_op(&mut u, 64, |op: ServerOp| {
        let (conn, message, spec) = match op {
            ServerOp::Hello { conn, hello } => {
                let exporter = match &slots[usize::from(conn % 4)] {
                    Slot::Pending(_, exporter) => *exporter,
                    _ => [0; 32],
                };
                hellos = hellos.wrapping_add(1);
                let (_, message) = hello.build(&exporter, now_ms, hellos % 8);
                (conn, message, Some(hello))
            }
            ServerOp::Raw { conn, bytes } => match wire::decode::<Control>(&bytes) {
                Ok(message) => (conn, message, None),
                Err(_) => {
                    let slot = &mut slots[usize::from(conn % 4)];
                    if matches!(slot, Slot::Pending(..) | Slot::Accepted) {
                        *slot = Slot::Rejected;
                    }
                    return;
                }
            },
            ServerOp::Accept { conn, body } => (
                conn,
                Control::Accept(Signed {
                    body,
                    signature: wire::Signature([1; 64]),
                }),
                None,
            ),
            ServerOp::Close { conn } => {
                let slot = &mut slots[usize::from(conn % 4)];
                if matches!(slot, Slot::Pending(..) | Slot::Accepted) {
                    *slot = Slot::Closed;
                }
                return;
            }
            ServerOp::Open { conn, exporter } => {
                slots[usize::from(conn % 4)] =
                    Slot::Pending(AwaitingHello::new([exporter; 32]), [exporter; 32]);
                return;
            }
            ServerOp::Advance { ms } => {
                now_ms = now_ms.saturating_add(u64::from(ms));
                return;
            }
            ServerOp::Revoke { client } => {
                if verifier.revoke_client(u64::from(client % 4)).is_ok() {
                    model.revoked_clients.insert(u64::from(client % 4));
                }
                return;
            }
        };
        let slot = &mut slots[usize::from(conn % 4)];
        let (awaiting, exporter) = match std::mem::replace(slot, Slot::Closed) {
            Slot::Pending(awaiting, exporter) => (awaiting, exporter),
            Slot::Accepted => {
                // A control message after the handshake: `connection.rs` closes.
                *slot = Slot::Rejected;
                return;
            }
            other => {
                *slot = other;
                return;
            }
        };
        let mut verified: Option<(JoinTicket, Result<JoinTicketClaims, TicketError>, usize)> = None;
        let contribution = ServerContribution {
            nonce: [0x33; NONCE_LEN],
            session_id: 0x5E55,
            server_tick: 77,
            tick_rate_hz: 60,
        };
        let result = awaiting.handle_hello(&policy, &message, contribution, |ticket, key| {
            let before = verifier.replay_cache_len();
            let result = verifier.verify(ticket, now_ms, key);
            verified = Some((ticket.clone(), result.clone(), before));
            result
        });
        let Control::Hello(signed) = &message else {
            let rejection = result.expect_err("an accept passed as a hello");
            assert_eq!(rejection.reason, ReasonCode::BAD_HANDSHAKE);
            *slot = Slot::Rejected;
            return;
        };
        let body = wire::decode::<HelloBody>(&signed.body);
        // The model learns what the verifier did (and checks it).
        if let (Some((ticket, ticket_result, before)), Ok(body)) = (&verified, &body) {
            if let Ok(claims) = ticket.claims() {
                let spec = match spec.as_ref().map(|s| &s.ticket) {
                    Some(TicketChoice::Spec(spec)) => spec.clone(),
                    _ => TicketSpec::default(),
                };
                let spec = TicketSpec {
                    bad_signature: spec.bad_signature,
                    wrong_audience: claims.gs_id != GS_ID,
                    wrong_identity: claims.client_key != body.identity_key,
                    ..spec
                };
                if spec.bad_signature || spec_ticket_signed(ticket) {
                    model.check(&config, *before, &spec, ticket, now_ms, ticket_result);
                }
            }
        }
        match result {
            Ok((session, accept)) => {
                let hello = body.expect("an accepted hello decodes");
                assert!(
                    spec_verify(
                        &hello.identity_key,
                        &spec_hello_digest(&exporter, &signed.body),
                        &signed.signature
                    ),
                    "accepted a hello whose signature does not verify"
                );
                let low = hello.version_min.max(policy.version_min);
                let high = hello.version_max.min(policy.version_max);
                assert!(
                    low <= high && session.version == high,
                    "version {} of {low}..={high}",
                    session.version
                );
                assert_eq!(hello.schema_hash, schema_for(hello.role, false));
                assert_eq!(session.capabilities, hello.capabilities & SERVER_CAPABILITIES);
                assert_eq!(
                    (session.role, session.client_key),
                    (hello.role, hello.identity_key)
                );
                if hello.role == Role::GameServer {
                    assert!(
                        policy.accept_game_servers,
                        "a game server admitted where none are"
                    );
                    assert!(hello.join_ticket.is_none() && session.ticket.is_none() && verified.is_none());
                } else {
                    let admitted = session
                        .ticket
                        .as_ref()
                        .expect("a client session without a ticket");
                    let (ticket, ticket_result, _) = verified.as_ref().expect("the ticket was not verified");
                    assert_eq!(Some(ticket), hello.join_ticket.as_ref());
                    assert_eq!(
                        ticket_result.as_ref(),
                        Ok(&admitted.claims),
                        "session ticket is not the verified one"
                    );
                    assert_eq!(admitted.key_id, ticket.key_id);
                    assert_eq!(admitted.claims.client_key, hello.identity_key);
                    assert_eq!(session.permissions, admitted.claims.permissions);
                    if hello.role == Role::Admin {
                        assert!(
                            admitted.claims.permissions & PERMISSION_ADMIN != 0,
                            "admin without the permission"
                        );
                    }
                }
                let Control::Accept(accept) = accept else {
                    panic!("the server answered with a hello");
                };
                let server_key = identity.verifying_key().to_bytes();
                assert!(
                    spec_verify(
                        &server_key,
                        &spec_accept_digest(&exporter, &signed.body, &accept.body),
                        &accept.signature
                    ),
                    "the accept's signature does not verify"
                );
                let body: AcceptBody = wire::decode(&accept.body).expect("the accept decodes");
                assert_eq!(body.client_nonce, hello.nonce);
                assert_eq!(body.schema_hash, hello.schema_hash);
                assert_eq!(
                    (body.version, body.role, body.server_key),
                    (session.version, hello.role, server_key)
                );
                assert_eq!(body.play_ticket.as_deref(), policy.play_ticket);
                *slot = Slot::Accepted;
            }
            Err(rejection) => {
                assert!(
                    SERVER_REASONS.contains(&rejection.reason),
                    "undocumented reason {rejection:?}"
                );
                if rejection.retry_after_ms.is_some() {
                    assert!(
                        [ReasonCode::TICKET_NOT_YET_VALID, ReasonCode::SERVER_BUSY]
                            .contains(&rejection.reason),
                        "retry advice with {rejection:?}"
                    );
                }
                match &verified {
                    Some((_, Err(error), _)) => assert_eq!(rejection, Rejection::from(*error)),
                    Some((_, Ok(claims), _)) => {
                        assert_eq!(rejection.reason, ReasonCode::ROLE_NOT_PERMITTED);
                        assert_eq!(claims.permissions & PERMISSION_ADMIN, 0);
                    }
                    None => {}
                }
                // A hello valid in every respect must not be refused.
                if let Some(spec) = &spec {
                    let clean = matches!(spec.signing, Signing::Good)
                        && spec.mutate.is_none()
                        && !spec.wrong_schema
                        && (1 ^ (spec.version_min % 4)).max(1) <= (1 ^ (spec.version_max % 4)).min(2)
                        && match (role_of(spec.role), &spec.ticket) {
                            (Role::GameServer, TicketChoice::Missing) => policy.accept_game_servers,
                            (Role::Admin | Role::GameServer, _) => false,
                            (_, TicketChoice::Ticket) => true,
                            _ => false,
                        };
                    let fresh = match (&verified, &body) {
                        (Some((ticket, _, before)), Ok(_)) => {
                            ticket.claims().is_ok_and(|c| {
                                !model.revoked_clients.contains(&c.client_id)
                                    && model.accepted.get(&c.jti).is_none_or(|&t| t < now_ms)
                            }) && *before < config.replay_cache_capacity
                        }
                        _ => true,
                    };
                    assert!(
                        !(clean && fresh),
                        "a valid hello was refused: {rejection:?} for {spec:?}"
                    );
                }
                *slot = Slot::Rejected;
            }
        }
    });
}

/// Whether `ticket`'s signature is its issuer key's over the spec's signed message.
fn spec_ticket_signed(ticket: &JoinTicket) -> bool {
    let k = u8::try_from(ticket.key_id.wrapping_sub(1)).unwrap_or(9);
    if k > 2 {
        return false;
    }
    let mut message = JOIN_TICKET_CONTEXT.to_vec();
    message.extend_from_slice(&ticket.key_id.to_be_bytes());
    message.extend_from_slice(&ticket.claims);
    issuer_key(k)
        .verifying_key()
        .verify_strict(&message, &ed25519_dalek::Signature::from_bytes(&ticket.signature))
        .is_ok()
}

/// A play ticket for [`gs_identity`], valid for 6 s from `now_ms`, signed by [`signing_key`].
fn a_play_ticket_bytes(now_ms: u64) -> Vec<u8> {
    PlayTicket::issue(KEY_ID, &signing_key(), &gs_play_claims(now_ms, 0))
        .0
        .to_bytes()
}

fn gs_play_claims(now_ms: u64, sequence: u64) -> PlayTicketClaims {
    PlayTicketClaims {
        gs_id: GS_ID,
        gs_key: gs_identity().verifying_key().to_bytes(),
        issued_at_ms: now_ms,
        expires_at_ms: now_ms + 6_000,
        sequence,
        measurement: measurement_pcr_digest(BINARY_SHA256, CONFIG_SHA256),
    }
}

// ----- handshake (client side) -----

/// What a client offers: all zeros is a Player offer of version 1, no checks.
#[derive(Debug, Clone, Default, Arbitrary)]
struct OfferSpec {
    identity: u8,
    role: u8,
    /// 0: no expected server key; 1: the server's; 2: another.
    expect_key: u8,
    /// Asks for the server's play ticket ([`vs_keys`], 2 s skew).
    check_play: bool,
    capabilities: u8,
    /// `version_min = 1 ^ (v % 4)`.
    version_min: u8,
    /// `version_max = 1 ^ (v % 4)`.
    version_max: u8,
    nonce: u8,
    exporter: u8,
}

impl OfferSpec {
    fn offer(&self, now_ms: u64) -> ClientOffer {
        let role = role_of(self.role);
        let key = client_identity(self.identity).verifying_key().to_bytes();
        let mut other = gs_identity().verifying_key().to_bytes();
        other[0] ^= 1;
        ClientOffer {
            version_min: 1 ^ u16::from(self.version_min % 4),
            version_max: 1 ^ u16::from(self.version_max % 4),
            schema_hash: schema_for(role, false),
            capabilities: u64::from(self.capabilities),
            role,
            join_ticket: (role != Role::GameServer).then(|| TicketSpec::default().ticket(now_ms, key)),
            expected_server_key: match self.expect_key % 3 {
                0 => None,
                1 => Some(gs_identity().verifying_key().to_bytes()),
                _ => Some(other),
            },
            play_ticket: self.check_play.then(|| PlayTicketCheck {
                keys: vs_keys(),
                max_skew_ms: 2_000,
            }),
        }
    }
}

/// The play ticket an accept carries.
#[derive(Debug, Clone, Copy, Default, Arbitrary)]
enum PlayChoice {
    /// Valid for the server's key, now.
    #[default]
    Valid,
    Missing,
    /// Expired 18 s ago.
    Expired,
    /// Issued 10 s in the future.
    Future,
    /// For another game server's key.
    WrongServer,
    /// Signed by an untrusted key under the trusted key id.
    OtherSigner,
    /// Bytes that are no envelope.
    Garbage(u8),
}

impl PlayChoice {
    fn bytes(self, now_ms: u64) -> Option<Vec<u8>> {
        let claims = gs_play_claims(now_ms, 1);
        let issue =
            |claims: &PlayTicketClaims| PlayTicket::issue(KEY_ID, &signing_key(), claims).0.to_bytes();
        Some(match self {
            PlayChoice::Valid => issue(&claims),
            PlayChoice::Missing => return None,
            PlayChoice::Expired => issue(&gs_play_claims(now_ms - 20_000, 1)),
            PlayChoice::Future => issue(&gs_play_claims(now_ms + 10_000, 1)),
            PlayChoice::WrongServer => issue(&PlayTicketClaims {
                gs_key: [0x12; 32],
                ..claims
            }),
            PlayChoice::OtherSigner => PlayTicket::issue(KEY_ID, &issuer_key(0), &claims).0.to_bytes(),
            PlayChoice::Garbage(byte) => vec![byte; 12],
        })
    }
}

/// A server's accept, relative to the hello it answers: all zeros is a valid accept.
#[derive(Debug, Clone, Default, Arbitrary)]
struct AcceptSpec {
    /// XORed into the offer's highest version.
    version: u8,
    wrong_nonce: bool,
    wrong_schema: bool,
    /// ORed into the offer's capabilities.
    extra_capabilities: u8,
    /// XORed into the offer's role index.
    role: u8,
    /// Signed (and named) by another server key.
    other_server: bool,
    play: PlayChoice,
    signing: Signing,
    /// XORs `(at % len, byte)` into the encoded body before signing.
    mutate: Option<(u16, u8)>,
    session_id: u64,
    server_tick: u64,
}

#[derive(Debug, Arbitrary)]
enum ClientOp {
    /// An accept on connection `conn % 2`.
    Accept { conn: u8, accept: AcceptSpec },
    /// Control-stream bytes: a `Control` if they decode, else `BAD_HANDSHAKE`.
    Raw { conn: u8, bytes: Vec<u8> },
    /// A hello (the wrong message).
    Hello { conn: u8, body: Vec<u8> },
    /// The server closes connection `conn % 2`.
    Close { conn: u8 },
    /// A new connection in slot `conn % 2`.
    Open { conn: u8, offer: OfferSpec },
    /// Wall-clock time passes.
    Advance { ms: u32 },
}

/// One client connection of the client target: the offer, the hello sent, its state.
struct ClientConn {
    spec: OfferSpec,
    offer: ClientOffer,
    hello_body: Vec<u8>,
    slot: Slot<AwaitingAccept>,
}

fn open_client(spec: OfferSpec, now_ms: u64) -> ClientConn {
    let offer = spec.offer(now_ms);
    let exporter = [spec.exporter; 32];
    let (awaiting, hello) = ClientHandshake::new(client_identity(spec.identity), offer.clone())
        .start(exporter, [spec.nonce; NONCE_LEN]);
    let Control::Hello(signed) = hello else {
        panic!("start made no hello");
    };
    assert!(
        spec_verify(
            &signed_key(&signed),
            &spec_hello_digest(&exporter, &signed.body),
            &signed.signature
        ),
        "the client's own hello does not verify"
    );
    ClientConn {
        spec,
        offer,
        hello_body: signed.body,
        slot: Slot::Pending(awaiting, exporter),
    }
}

/// The identity key a signed hello names (zeros if it does not decode).
fn signed_key(signed: &Signed) -> [u8; 32] {
    wire::decode::<HelloBody>(&signed.body).map_or([0; 32], |h| h.identity_key)
}

/// Reason codes `AwaitingAccept::handle_accept` may refuse with.
const CLIENT_REASONS: &[ReasonCode] = &[
    ReasonCode::BAD_HANDSHAKE,
    ReasonCode::SERVER_KEY_MISMATCH,
    ReasonCode::BAD_SIGNATURE,
    ReasonCode::NOT_AUTHORISED,
    ReasonCode::PLAY_TICKET_INVALID,
];

/// The client side of the session handshake ([`ClientHandshake`], [`AwaitingAccept`]) on two
/// connections.
///
/// Input (`arbitrary`): up to 64 operations: accepts built from an [`AcceptSpec`] (every echo,
/// version, capability and role defect, another server key, bad signatures, every play-ticket
/// defect, mutated bodies), raw control bytes, hellos, server closes, new connections with any
/// [`OfferSpec`], wall-clock steps.
///
/// Asserts: the client's own hello verifies under the spec's transcript; every connection ends
/// accepted, rejected with a documented reason, or pending; an accepted accept echoes the
/// nonce, schema and role, picks a version in the offer and capabilities within it, names the
/// expected server key if one was set, verifies under the spec's transcript, and carries a
/// play ticket that verifies now (within the skew) for the server's key when the offer asked;
/// a valid accept is accepted.
pub fn handshake_client(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let mut now_ms = SEED_NOW_MS;
    let mut conns: Vec<ClientConn> = (0..2u8)
        .map(|i| {
            open_client(
                OfferSpec {
                    exporter: i,
                    ..OfferSpec::default()
                },
                now_ms,
            )
        })
        .collect();
    each_op(&mut u, 64, |op: ClientOp| {
        let (conn, message, spec) = match op {
            ClientOp::Accept { conn, accept } => {
                let c = &conns[usize::from(conn % 2)];
                let Slot::Pending(_, exporter) = &c.slot else {
                    return;
                };
                let offer = &c.offer;
                let server = if accept.other_server {
                    ed25519_dalek::SigningKey::from_bytes(&[0x12; 32])
                } else {
                    gs_identity()
                };
                let role_index = [Role::Player, Role::Spectator, Role::Admin, Role::GameServer]
                    .iter()
                    .position(|r| *r == offer.role)
                    .unwrap_or(0) as u8;
                let body = AcceptBody {
                    version: offer.version_max ^ u16::from(accept.version),
                    schema_hash: schema_for(offer.role, accept.wrong_schema),
                    client_nonce: [c.spec.nonce ^ u8::from(accept.wrong_nonce); NONCE_LEN],
                    server_nonce: [0x02; NONCE_LEN],
                    session_id: accept.session_id,
                    role: role_of(role_index ^ accept.role),
                    permissions: 0,
                    capabilities: offer.capabilities | u64::from(accept.extra_capabilities),
                    server_key: server.verifying_key().to_bytes(),
                    server_tick: accept.server_tick,
                    tick_rate_hz: 60,
                    play_ticket: accept.play.bytes(now_ms),
                };
                let mut bytes = wire::encode(&body);
                if let Some((at, byte)) = accept.mutate {
                    let at = usize::from(at) % bytes.len();
                    bytes[at] ^= byte;
                }
                let hello = c.hello_body.clone();
                let signature = sign_with(
                    accept.signing,
                    &server,
                    |e| spec_accept_digest(e, &hello, &bytes),
                    exporter,
                );
                (
                    conn,
                    Control::Accept(Signed {
                        body: bytes,
                        signature,
                    }),
                    Some(accept),
                )
            }
            ClientOp::Raw { conn, bytes } => match wire::decode::<Control>(&bytes) {
                Ok(message) => (conn, message, None),
                Err(_) => {
                    let c = &mut conns[usize::from(conn % 2)];
                    if matches!(c.slot, Slot::Pending(..)) {
                        c.slot = Slot::Rejected;
                    }
                    return;
                }
            },
            ClientOp::Hello { conn, body } => (
                conn,
                Control::Hello(Signed {
                    body,
                    signature: wire::Signature([2; 64]),
                }),
                None,
            ),
            ClientOp::Close { conn } => {
                let c = &mut conns[usize::from(conn % 2)];
                if matches!(c.slot, Slot::Pending(..) | Slot::Accepted) {
                    c.slot = Slot::Closed;
                }
                return;
            }
            ClientOp::Open { conn, offer } => {
                conns[usize::from(conn % 2)] = open_client(offer, now_ms);
                return;
            }
            ClientOp::Advance { ms } => {
                now_ms = now_ms.saturating_add(u64::from(ms));
                return;
            }
        };
        let c = &mut conns[usize::from(conn % 2)];
        let (awaiting, exporter) = match std::mem::replace(&mut c.slot, Slot::Closed) {
            Slot::Pending(awaiting, exporter) => (awaiting, exporter),
            Slot::Accepted => {
                c.slot = Slot::Rejected;
                return;
            }
            other => {
                c.slot = other;
                return;
            }
        };
        let result = awaiting.handle_accept(&message, now_ms);
        let offer = &c.offer;
        match result {
            Ok(session) => {
                let Control::Accept(signed) = &message else {
                    panic!("a hello passed as an accept");
                };
                let body: AcceptBody = wire::decode(&signed.body).expect("an accepted accept decodes");
                assert_eq!(body.client_nonce, [c.spec.nonce; NONCE_LEN], "nonce not echoed");
                assert_eq!(body.schema_hash, offer.schema_hash);
                assert!((offer.version_min..=offer.version_max).contains(&session.version));
                assert_eq!(
                    session.capabilities & !offer.capabilities,
                    0,
                    "capabilities beyond the offer"
                );
                assert_eq!(session.role, offer.role);
                if let Some(key) = offer.expected_server_key {
                    assert_eq!(session.server_key, key, "unexpected server key accepted");
                }
                assert!(
                    spec_verify(
                        &body.server_key,
                        &spec_accept_digest(&exporter, &c.hello_body, &signed.body),
                        &signed.signature
                    ),
                    "accepted an accept whose signature does not verify"
                );
                assert_eq!(
                    session.client_key,
                    client_identity(c.spec.identity).verifying_key().to_bytes()
                );
                assert!(session.ticket.is_none());
                match (&offer.play_ticket, &session.play_ticket) {
                    (None, None) => {}
                    (Some(check), Some(claims)) => {
                        assert_eq!(
                            claims.gs_key, session.server_key,
                            "play ticket for another server"
                        );
                        assert!(claims.issued_at_ms.saturating_sub(check.max_skew_ms) <= now_ms);
                        assert!(now_ms <= claims.expires_at_ms.saturating_add(check.max_skew_ms));
                        let envelope = Envelope::from_bytes(body.play_ticket.as_deref().unwrap_or_default())
                            .expect("an accepted play ticket decodes");
                        assert_eq!(
                            PlayTicket(envelope)
                                .verify(&vs_keys(), &session.server_key, now_ms, check.max_skew_ms)
                                .as_ref(),
                            Ok(&**claims)
                        );
                    }
                    (asked, got) => panic!("play ticket asked {asked:?}, got {got:?}"),
                }
                c.slot = Slot::Accepted;
            }
            Err(rejection) => {
                assert!(
                    CLIENT_REASONS.contains(&rejection.reason),
                    "undocumented reason {rejection:?}"
                );
                if let Some(spec) = spec {
                    let clean = spec.version == 0
                        && !spec.wrong_nonce
                        && !spec.wrong_schema
                        && u64::from(spec.extra_capabilities) & !offer.capabilities == 0
                        && spec.role % 4 == 0
                        && !spec.other_server
                        && matches!(spec.signing, Signing::Good)
                        && spec.mutate.is_none()
                        && offer.version_min <= offer.version_max
                        && c.spec.expect_key % 3 != 2
                        && (offer.play_ticket.is_none() || matches!(spec.play, PlayChoice::Valid));
                    assert!(!clean, "a valid accept was refused: {rejection:?} for {spec:?}");
                }
                c.slot = Slot::Rejected;
            }
        }
    });
}

// ----- GS agent -----

/// A game server's and its verification server's endpoints, joined by a lossless zero-delay
/// path that can be cut.
struct Pair {
    gs: Endpoint,
    vs: Endpoint,
    gs_addr: SocketAddr,
    vs_addr: SocketAddr,
    now: Instant,
    isolated: bool,
    buf: Vec<u8>,
}

/// Bound on every drain loop of the engine targets (transmits, events, ticks per call).
const MAX_DRAIN: usize = 1_000;

/// What the GS target saw the VS side and the agent do.
#[derive(Debug, Default)]
struct GsSeen {
    /// The VS endpoint's handle of the GS session, while one is up.
    vs_conn: Option<ConnHandle>,
    /// Digests the VS received, latest last (at most 64 kept).
    digests: VecDeque<TranscriptDigest>,
    /// The latest quote request.
    need_quote: Option<(u64, [u8; 32])>,
    /// Claims of the correctly signed play tickets for this GS sent so far.
    valid_claims: Vec<PlayTicketClaims>,
}

impl Pair {
    /// Exchanges datagrams and events until nothing moves (bounded).
    fn settle(&mut self, agent: &mut GsAgent, seen: &mut GsSeen) {
        let now = self.now;
        for _ in 0..32 {
            let mut moved = false;
            for (from, from_addr) in [(0, self.gs_addr), (1, self.vs_addr)] {
                for _ in 0..MAX_DRAIN {
                    let (src, dst) = if from == 0 {
                        (&mut self.gs, &mut self.vs)
                    } else {
                        (&mut self.vs, &mut self.gs)
                    };
                    let Some(transmit) = src.poll_transmit(now, &mut self.buf) else {
                        break;
                    };
                    moved = true;
                    if !self.isolated {
                        let bytes = BytesMut::from(&self.buf[..transmit.size]);
                        dst.handle_datagram(now, from_addr, None, None, bytes);
                    }
                }
            }
            for _ in 0..MAX_DRAIN {
                if self.gs.poll_tick(now).is_none() {
                    break;
                }
            }
            for _ in 0..MAX_DRAIN {
                if self.vs.poll_tick(now).is_none() {
                    break;
                }
            }
            for _ in 0..MAX_DRAIN {
                let Some(event) = self.gs.poll_event() else { break };
                moved = true;
                agent.handle_endpoint_event(&mut self.gs, now, &event);
            }
            for _ in 0..MAX_DRAIN {
                let Some(event) = self.vs.poll_event() else { break };
                moved = true;
                match event {
                    Event::Connected { conn, .. } => seen.vs_conn = Some(conn),
                    Event::Message { conn, payload, .. } if Some(conn) == seen.vs_conn => {
                        if let Ok(VsMessage::Digest(digest)) = VsMessage::decode(&payload) {
                            if seen.digests.len() == 64 {
                                seen.digests.pop_front();
                            }
                            seen.digests.push_back(digest);
                        }
                    }
                    Event::Rejected { conn, .. } | Event::Disconnected { conn, .. }
                        if Some(conn) == seen.vs_conn =>
                    {
                        seen.vs_conn = None;
                    }
                    _ => {}
                }
            }
            if !moved {
                break;
            }
        }
    }

    /// Runs every deadline up to `now + delta` (at most 64 of them, then jumps).
    fn advance(&mut self, delta: Duration, agent: &mut GsAgent, seen: &mut GsSeen) {
        let target = self.now + delta;
        for _ in 0..64 {
            let next = [
                self.gs.poll_timeout(),
                self.vs.poll_timeout(),
                agent.poll_timeout(),
            ]
            .into_iter()
            .flatten()
            .min();
            match next {
                Some(t) if t <= target => {
                    self.now = self.now.max(t);
                    self.fire(agent, seen);
                }
                _ => break,
            }
        }
        self.now = target;
        self.fire(agent, seen);
    }

    fn fire(&mut self, agent: &mut GsAgent, seen: &mut GsSeen) {
        let now = self.now;
        self.gs.handle_timeout(now);
        self.vs.handle_timeout(now);
        if agent.poll_timeout().is_some_and(|t| t <= now) {
            agent.handle_timeout(&mut self.gs, now);
        }
        self.settle(agent, seen);
    }
}

#[derive(Debug, Default, Arbitrary)]
struct GsSettings {
    /// XORed into 30 000 ms.
    first_ticket_timeout_ms: u16,
    /// XORed into 10 000 ms.
    starvation_timeout_ms: u16,
    /// XORed into 15 000 ms.
    transcript_timeout_ms: u16,
    /// XORed into 1 000 ms.
    heartbeat_interval_ms: u16,
    /// XORed into 10.
    reattest_every: u8,
    /// XORed into 8, 4, 8 and 8 (`% 16` first).
    max_pending_digests: u8,
    max_digests_per_heartbeat: u8,
    max_outstanding_digests: u8,
    max_transcripts: u8,
    /// XORed into 30 000 ms.
    play_ticket_skew_ms: u16,
    /// The agent expects the VS's identity key.
    pin_vs_identity: bool,
}

/// A play ticket the fuzzed VS sends: all zeros is valid (the VS key, this GS, now, 6 s).
#[derive(Debug, Clone, Default, Arbitrary)]
struct PlayTicketSpec {
    /// 0: the VS key; 1: an untrusted key under the VS key id; 2: the VS key under another id.
    signer: u8,
    wrong_gs_key: bool,
    wrong_gs_id: bool,
    issued_offset_ms: i32,
    /// XORed into 6 000 ms.
    lifetime_ms: u16,
    sequence: u8,
}

/// A receipt the fuzzed VS sends for one of the digests it received: all zeros is valid.
#[derive(Debug, Clone, Default, Arbitrary)]
struct ReceiptSpec {
    /// 0: the VS key; else an untrusted key.
    signer: u8,
    /// 0: exact; 1–5: another game server id, sequence, session, tick, digest.
    tweak: u8,
    received_offset_ms: i32,
}

#[derive(Debug, Arbitrary)]
enum VsOp {
    Challenge {
        nonce: u8,
    },
    Accepted {
        ticket: PlayTicketSpec,
        next_nonce: u8,
    },
    Ticket {
        ticket: PlayTicketSpec,
        next_nonce: u8,
    },
    /// A receipt for the digest `pick` back from the latest the VS received.
    Receipt {
        pick: u8,
        receipt: ReceiptSpec,
    },
    RevokeJti {
        jti: u8,
        until_offset_ms: i32,
    },
    RevokeClient {
        client: u8,
    },
    RevokeKey {
        key: u8,
    },
    /// A GS → VS message sent the wrong way.
    Heartbeat {
        sequence: u64,
    },
}

#[derive(Debug, Arbitrary)]
enum GsOp {
    /// The VS sends a message on the session, if one is up.
    Vs(VsOp),
    /// Time passes: `ms` milliseconds (deadlines run in order).
    Advance {
        ms: u16,
    },
    /// Time jumps `secs` seconds.
    Jump {
        secs: u16,
    },
    /// The runtime answers the latest quote request (`offset` 0: the right request id).
    Quote {
        offset: u8,
        fail: bool,
    },
    /// An input of session `session % 8`.
    Input {
        session: u8,
        tick: u16,
        byte: u8,
    },
    EndSession {
        session: u8,
    },
    /// The VS closes the session with reason [`VS_CLOSE_REASONS`]`[reason]`, or beyond the
    /// list `ReasonCode(reason × 257)`.
    VsClose {
        reason: u8,
    },
    /// The path drops everything (`on`) or nothing.
    Isolate {
        on: bool,
    },
    /// The VS sends raw bytes on the VS channel.
    Raw {
        bytes: Vec<u8>,
    },
    /// The GS's wall clock steps by `ms`.
    WallStep {
        ms: i32,
    },
}

/// Reasons the fuzzed VS closes with: retryable ones first, then the VS's refusals.
const VS_CLOSE_REASONS: &[ReasonCode] = &[
    ReasonCode::NORMAL,
    ReasonCode::SERVER_SHUTDOWN,
    ReasonCode::SERVER_BUSY,
    ReasonCode::RATE_LIMITED,
    ReasonCode::TRANSPORT_ERROR,
    ReasonCode::QUOTE_REPLAYED,
    ReasonCode::MEASUREMENT_MISMATCH,
    ReasonCode::GS_REVOKED,
];

/// The GS side of the VS protocol ([`GsAgent`]) beside a real game-server [`Endpoint`],
/// connected over a real QUIC session to a verification-server endpoint whose messages the
/// input chooses.
///
/// Input (`arbitrary`): [`GsSettings`], then up to 96 operations: VS messages (challenges,
/// accepted and renewed play tickets signed with the fixed VS key or not, for this game server
/// or not, at any time; receipts for digests the VS received, exact or altered, signed or not;
/// revocations; messages sent the wrong way; raw bytes), time steps and jumps, quote answers
/// (right or wrong request, failures), game inputs and session ends, VS closes with any reason,
/// path cuts, wall-clock steps.
///
/// Asserts: `Starting` is never re-entered and `Failed` is terminal (no ticket, no session, no
/// timer); `Authorised` holds a ticket and admits clients, every other status pauses
/// admissions; a held or announced ticket is one the VS signed for this game server's key;
/// an announced receipt verifies and matches its digest in every field; pending digests stay
/// within `max_pending_digests`.
pub fn gs_agent(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let s: GsSettings = take(&mut u);
    let start = base_instant();
    let wall = WallClock::new(start, SEED_NOW_MS);
    let gs_addr: SocketAddr = ([10, 0, 0, 1], 4433).into();
    let vs_addr: SocketAddr = ([10, 0, 0, 2], 4433).into();
    let gs = Endpoint::builder(
        Config::default(),
        Secrets::insecure_from_seed(1),
        gs_identity(),
        wall,
    )
    .server(GS_ID, start)
    .expect("the GS config is valid");
    let vs_key = ed25519_dalek::SigningKey::from_bytes(&[0x44; 32]);
    let vs = Endpoint::builder(
        Config {
            accept_game_servers: true,
            ..Config::default()
        },
        Secrets::insecure_from_seed(2),
        vs_key.clone(),
        wall,
    )
    .server(0, start)
    .expect("the VS config is valid");
    let config = GsConfig {
        gs_id: GS_ID,
        first_ticket_timeout_ms: u64::from(30_000 ^ s.first_ticket_timeout_ms),
        ticket_starvation_timeout_ms: u64::from(10_000 ^ s.starvation_timeout_ms),
        transcript_response_timeout_ms: u64::from(15_000 ^ s.transcript_timeout_ms),
        heartbeat_interval_ms: u64::from(1_000 ^ s.heartbeat_interval_ms),
        reattest_every: u32::from(10 ^ s.reattest_every),
        max_pending_digests: usize::from(8 ^ (s.max_pending_digests % 16)),
        max_digests_per_heartbeat: usize::from(4 ^ (s.max_digests_per_heartbeat % 16)),
        max_outstanding_digests: usize::from(8 ^ (s.max_outstanding_digests % 16)),
        max_transcripts: usize::from(8 ^ (s.max_transcripts % 16)),
        play_ticket_skew_ms: u64::from(30_000 ^ s.play_ticket_skew_ms),
        ..GsConfig::default()
    };
    let identity = GsIdentity {
        gs_key: gs.identity_key(),
        software_hash: BINARY_SHA256,
        config_hash: CONFIG_SHA256,
        ak_public: ak_public(),
    };
    let pinned = s.pin_vs_identity.then(|| vs.identity_key());
    let mut agent = GsAgent::new(
        config.clone(),
        Secrets::insecure_from_seed(3),
        identity,
        vs_addr,
        vs_keys(),
        pinned,
        wall,
    );
    let mut pair = Pair {
        gs,
        vs,
        gs_addr,
        vs_addr,
        now: start,
        isolated: false,
        buf: Vec::new(),
    };
    let mut seen = GsSeen::default();
    agent.start(&mut pair.gs, start);
    pair.settle(&mut agent, &mut seen);
    let gs_key = pair.gs.identity_key();
    let mut status = agent.status();
    let mut check = |agent: &mut GsAgent, pair: &mut Pair, seen: &mut GsSeen| {
        while let Some(event) = agent.poll_event() {
            match event {
                GsEvent::NeedQuote { request, extra_data } => seen.need_quote = Some((request, extra_data)),
                GsEvent::Authorised { claims, .. } => {
                    assert!(
                        seen.valid_claims.contains(&claims),
                        "authorised by a ticket the VS never signed: {claims:?}"
                    );
                }
                GsEvent::Receipt { digest, receipt } => {
                    let claims = receipt.verify(&vs_keys()).expect("an announced receipt verifies");
                    assert_eq!(
                        (
                            claims.gs_id,
                            claims.sequence,
                            claims.session_id,
                            claims.tick,
                            claims.digest
                        ),
                        (
                            GS_ID,
                            digest.sequence,
                            digest.session_id,
                            digest.tick,
                            digest.digest
                        ),
                        "an announced receipt does not match its digest"
                    );
                }
                _ => {}
            }
        }
        let now_status = agent.status();
        assert!(
            now_status != GsStatus::Starting || status == GsStatus::Starting,
            "{status:?} → Starting"
        );
        assert!(
            status != GsStatus::Failed || now_status == GsStatus::Failed,
            "left Failed"
        );
        status = now_status;
        match now_status {
            GsStatus::Authorised => {
                assert!(
                    !pair
                        .gs
                        .server_mut()
                        .expect("a server endpoint")
                        .admissions_paused(),
                    "authorised but not admitting"
                );
                assert!(agent.ticket().is_some(), "authorised without a ticket");
            }
            other => assert!(
                pair.gs
                    .server_mut()
                    .expect("a server endpoint")
                    .admissions_paused(),
                "admitting while {other:?}"
            ),
        }
        if now_status == GsStatus::Failed {
            assert!(agent.ticket().is_none() && agent.vs_conn().is_none() && agent.poll_timeout().is_none());
        }
        if let Some(held) = agent.ticket() {
            assert_eq!(held.gs_key, gs_key);
            assert!(
                seen.valid_claims.contains(held),
                "holding a ticket the VS never signed"
            );
        }
        assert!(
            agent.pending_digests() <= config.max_pending_digests,
            "pending digests over the cap"
        );
    };
    check(&mut agent, &mut pair, &mut seen);

    each_op(&mut u, 96, |op: GsOp| {
        let now = pair.now;
        let unix_ms = wall.unix_ms_at(now);
        let send = |pair: &mut Pair, seen: &GsSeen, message: &VsMessage| {
            if let Some(conn) = seen.vs_conn {
                let _ = pair.vs.send(now, conn, VS_CHANNEL, Bytes::from(message.encode()));
            }
        };
        match op {
            GsOp::Vs(vs_op) => {
                let message = match vs_op {
                    VsOp::Challenge { nonce } => VsMessage::Challenge { nonce: [nonce; 32] },
                    VsOp::Accepted {
                        ref ticket,
                        next_nonce,
                    }
                    | VsOp::Ticket {
                        ref ticket,
                        next_nonce,
                    } => {
                        let claims = PlayTicketClaims {
                            gs_id: if ticket.wrong_gs_id { GS_ID + 1 } else { GS_ID },
                            gs_key: if ticket.wrong_gs_key { [0x12; 32] } else { gs_key },
                            issued_at_ms: unix_ms.saturating_add_signed(i64::from(ticket.issued_offset_ms)),
                            expires_at_ms: unix_ms
                                .saturating_add_signed(i64::from(ticket.issued_offset_ms))
                                .saturating_add(u64::from(6_000 ^ ticket.lifetime_ms)),
                            sequence: u64::from(ticket.sequence),
                            measurement: measurement_pcr_digest(BINARY_SHA256, CONFIG_SHA256),
                        };
                        let play = match ticket.signer % 3 {
                            0 => PlayTicket::issue(KEY_ID, &signing_key(), &claims),
                            1 => PlayTicket::issue(KEY_ID, &issuer_key(0), &claims),
                            _ => PlayTicket::issue(KEY_ID + 1, &signing_key(), &claims),
                        };
                        if ticket.signer % 3 == 0 && !ticket.wrong_gs_key {
                            seen.valid_claims.push(claims);
                        }
                        let next_nonce = [next_nonce; 32];
                        if matches!(vs_op, VsOp::Accepted { .. }) {
                            VsMessage::Accepted {
                                ticket: play,
                                next_nonce,
                            }
                        } else {
                            VsMessage::Ticket {
                                ticket: play,
                                next_nonce,
                            }
                        }
                    }
                    VsOp::Receipt { pick, receipt } => {
                        let Some(digest) = seen
                            .digests
                            .iter()
                            .rev()
                            .nth(usize::from(pick) % seen.digests.len().max(1))
                            .cloned()
                        else {
                            return;
                        };
                        let mut claims = ReceiptClaims {
                            gs_id: GS_ID,
                            session_id: digest.session_id,
                            sequence: digest.sequence,
                            tick: digest.tick,
                            digest: digest.digest,
                            received_at_ms: unix_ms
                                .saturating_add_signed(i64::from(receipt.received_offset_ms)),
                        };
                        match receipt.tweak % 6 {
                            1 => claims.gs_id += 1,
                            2 => claims.sequence += 1,
                            3 => claims.session_id ^= 1,
                            4 => claims.tick ^= 1,
                            5 => claims.digest[0] ^= 1,
                            _ => {}
                        }
                        let key = if receipt.signer == 0 {
                            signing_key()
                        } else {
                            issuer_key(1)
                        };
                        VsMessage::Receipt {
                            sequence: digest.sequence,
                            receipt: ProtectedReceipt::issue(KEY_ID, &key, &claims),
                        }
                    }
                    VsOp::RevokeJti { jti, until_offset_ms } => VsMessage::Revoke(Revocation::Jti {
                        jti: [jti; 16],
                        until_unix_ms: unix_ms.saturating_add_signed(i64::from(until_offset_ms)),
                    }),
                    VsOp::RevokeClient { client } => VsMessage::Revoke(Revocation::Client {
                        client_id: u64::from(client),
                    }),
                    VsOp::RevokeKey { key } => VsMessage::Revoke(Revocation::Key {
                        key_id: u32::from(key),
                    }),
                    VsOp::Heartbeat { sequence } => VsMessage::Heartbeat {
                        sequence,
                        timestamp_ms: unix_ms,
                        sessions: 0,
                        attestation: None,
                    },
                };
                send(&mut pair, &seen, &message);
                pair.settle(&mut agent, &mut seen);
            }
            GsOp::Advance { ms: step } => pair.advance(ms(u64::from(step)), &mut agent, &mut seen),
            GsOp::Jump { secs } => pair.advance(Duration::from_secs(u64::from(secs)), &mut agent, &mut seen),
            GsOp::Quote { offset, fail } => {
                let Some((request, extra)) = seen.need_quote else {
                    return;
                };
                let quote = if fail {
                    Err(TpmError::Device("fuzzed TPM failure".into()))
                } else {
                    Ok(Quote {
                        attest: extra.to_vec(),
                        signature_r: [0; 32],
                        signature_s: [0; 32],
                    })
                };
                agent.handle_quote(&mut pair.gs, now, request.wrapping_add(u64::from(offset)), quote);
                pair.settle(&mut agent, &mut seen);
            }
            GsOp::Input { session, tick, byte } => {
                agent.record_input(u64::from(session % 8), u64::from(tick), &[byte]);
            }
            GsOp::EndSession { session } => agent.end_session(u64::from(session % 8)),
            GsOp::VsClose { reason } => {
                if let Some(conn) = seen.vs_conn {
                    let reason = VS_CLOSE_REASONS
                        .get(usize::from(reason))
                        .copied()
                        .unwrap_or(ReasonCode(u16::from(reason) * 257));
                    pair.vs.close(now, conn, reason, "fuzzed VS close");
                    pair.settle(&mut agent, &mut seen);
                }
            }
            GsOp::Isolate { on } => pair.isolated = on,
            GsOp::Raw { bytes } => {
                if let Some(conn) = seen.vs_conn {
                    let _ = pair.vs.send(now, conn, VS_CHANNEL, Bytes::from(bytes));
                    pair.settle(&mut agent, &mut seen);
                }
            }
            GsOp::WallStep { ms: step } => agent.set_wall_clock(wall.skewed(i64::from(step))),
        }
        check(&mut agent, &mut pair, &mut seen);
    });
}

// ----- whole endpoint -----

/// Source addresses of the endpoint target's datagrams.
fn source_address(index: u8) -> SocketAddr {
    match index % 8 {
        i @ 0..=4 => SocketAddr::from(([198, 51, 100, 1 + i], 40_000 + u16::from(i))),
        5 => SocketAddr::from(([198, 51, 100, 1], 40_001)),
        6 => SocketAddr::from(([0x2001u16, 0xdb8, 0, 0, 0, 0, 0, 7], 50_000)),
        _ => SocketAddr::from(([0, 0, 0, 0], 0)),
    }
}

fn put_varint(out: &mut Vec<u8>, value: usize) {
    match value {
        0..=63 => out.push(value as u8),
        64..=16_383 => out.extend_from_slice(&(0x4000 | value as u16).to_be_bytes()),
        _ => out.extend_from_slice(&(0x8000_0000 | value as u32).to_be_bytes()),
    }
}

/// The QUIC v1 Initial suite (RFC 9001 §5.2: AES-128-GCM, HKDF-SHA256).
fn initial_suite() -> rustls::quic::Suite {
    rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256
        .tls13()
        .and_then(|suite| suite.quic_suite())
        .expect("AES-128-GCM has a QUIC suite")
}

/// A client Initial packet (RFC 9000 §17.2.2) carrying `frames`, protected with the Initial
/// keys of `dcid` (RFC 9001 §5) and padded with PADDING frames to a 1 200-byte datagram: what
/// lets the fuzzer reach the server's TLS and transport-parameter parsing.
pub fn seal_initial(dcid: &[u8], scid: &[u8], token: &[u8], pn: u32, frames: &[u8]) -> Vec<u8> {
    let keys = initial_suite().keys(dcid, rustls::Side::Client, rustls::quic::Version::V1);
    let mut header = vec![0xC3]; // long header, Initial, 4-byte packet number
    header.extend_from_slice(&1u32.to_be_bytes());
    header.push(dcid.len() as u8);
    header.extend_from_slice(dcid);
    header.push(scid.len() as u8);
    header.extend_from_slice(scid);
    put_varint(&mut header, token.len());
    header.extend_from_slice(token);
    let mut payload = frames.to_vec();
    let overhead = header.len() + 2 + 4 + 16;
    payload.resize(payload.len().max(1_200usize.saturating_sub(overhead)), 0);
    let length = 4 + payload.len() + 16;
    header.extend_from_slice(&(0x4000 | length as u16).to_be_bytes());
    let pn_offset = header.len();
    header.extend_from_slice(&pn.to_be_bytes());
    let tag = keys
        .local
        .packet
        .encrypt_in_place(u64::from(pn), &header, &mut payload)
        .expect("an Initial payload fits the AEAD");
    let mut packet = header;
    packet.extend_from_slice(&payload);
    packet.extend_from_slice(tag.as_ref());
    let sample: [u8; 16] = packet[pn_offset + 4..pn_offset + 20]
        .try_into()
        .expect("16 bytes");
    let (first, rest) = packet.split_at_mut(1);
    keys.local
        .header
        .encrypt_in_place(&sample, &mut first[0], &mut rest[pn_offset - 1..pn_offset + 3])
        .expect("the sample is 16 bytes");
    packet
}

/// A game server for the endpoint target (fixed insecure secrets), small limits so the fuzzer reaches them.
fn endpoint_config(limits: u8, flags: u8) -> Config {
    let mut config = Config {
        schema_hash: SCHEMA,
        max_sessions: 1 + usize::from(limits & 3),
        max_pending_handshakes: 1 + usize::from((limits >> 2) & 3),
        retry_above_pending_handshakes: [Some(64), None, Some(0), Some(1)][usize::from((limits >> 4) & 3)],
        accept_game_servers: flags & 1 != 0,
        handshake_timeout_ms: 2_000,
        ..Config::default()
    };
    if flags & 4 != 0 {
        config.limits.max_tracked_addrs = 2;
    }
    if flags & 8 != 0 {
        config.limits.handshake_burst_per_addr = 1;
        config.limits.handshakes_per_addr_per_sec = 0.5;
    }
    config
}

/// A whole game-server [`Endpoint`] (real config, fixed seed, a trusted ticket key) fed
/// datagrams from eight source addresses at fuzz-chosen monotonic times.
///
/// Input: `limits: u8` (`max_sessions = 1 + (l & 3)`, `max_pending_handshakes = 1 + (l >> 2
/// & 3)`, the Retry threshold from `l >> 4 & 3`: 64, unset, 0, 1), `flags: u8` (`& 1` admit
/// game servers, `& 2` admissions paused, `& 4` two tracked addresses, `& 8` one handshake per
/// address per 2 s), then up to 64 operations, each an opcode byte `% 8` and its fields:
/// - 0 `src: u8, len: u16, bytes`: a raw datagram (`len % 4096` bytes);
/// - 1 `src, dcid_len: u8, dcid, scid_len: u8, scid, pn: u32, token_len: u8, token, len: u16,
///   frames`: a client Initial sealed with the real Initial keys of `dcid` ([`seal_initial`];
///   connection ids `% 21` bytes, frames `% 4096`);
/// - 2 `ms: u16`: time passes; 3 `secs: u16`: time jumps (`% 3600`);
/// - 4 `command: u8`: pause or resume admissions, shut down, revalidate, close client sessions,
///   step the wall clock;
/// - 5 `src`: the previous datagram again, from `src`; 6: `handle_timeout`; 7 `at: u16, xor:
///   u8`: the previous datagram with one byte changed.
///
/// After each operation the endpoint's timers run and its transmits, events and ticks are
/// drained (at most 1 000 each). Asserts: no panic; handshakes in progress at most
/// `max_pending_handshakes`, live sessions at most `max_sessions`, connections (draining ones
/// included) at most the Initials accepted and at most `max_sessions + max_pending_handshakes`;
/// queued endpoint responses within their cap;
/// transmits go only to addresses that sent something, fit 1 500 bytes (or, for stateless
/// resets, the largest datagram received from that address), and never total more than three
/// times the bytes received from an address (RFC 9000 §8.1: no address is validated here);
/// the datagram counters partition the datagrams received and the Initials.
pub fn endpoint(data: &[u8]) {
    let mut input = Input::new(data);
    let (limits, flags) = (input.u8(), input.u8());
    let config = endpoint_config(limits, flags);
    let start = base_instant();
    let wall = WallClock::new(start, SEED_NOW_MS);
    let mut ep = Endpoint::builder(
        config.clone(),
        Secrets::insecure_from_seed(0xF0),
        gs_identity(),
        wall,
    )
    .server(GS_ID, start)
    .expect("the config is valid");
    if let Some(server) = ep.server_mut() {
        let tickets = server.tickets();
        tickets.add_key(KEY_ID, signing_key().verifying_key());
    }
    if flags & 2 != 0 {
        ep.server_mut().expect("a server endpoint").pause_admissions(
            ReasonCode::NOT_AUTHORISED,
            "fuzz",
            None,
        );
    }
    let mut now = start;
    let mut last: Vec<u8> = Vec::new();
    let mut received: BTreeMap<SocketAddr, u64> = BTreeMap::new();
    let mut sent: BTreeMap<SocketAddr, u64> = BTreeMap::new();
    let mut largest: BTreeMap<SocketAddr, usize> = BTreeMap::new();
    let mut buf = Vec::new();
    for _ in 0..64 {
        if input.rest.is_empty() {
            break;
        }
        let mut datagram: Option<(SocketAddr, Vec<u8>)> = None;
        match input.u8() % 8 {
            0 => {
                let src = source_address(input.u8());
                let len = usize::from(input.u16()) % 4096;
                datagram = Some((src, input.bytes(len).to_vec()));
            }
            1 => {
                let src = source_address(input.u8());
                let dcid_len = usize::from(input.u8() % 21);
                let dcid = input.bytes(dcid_len).to_vec();
                let scid_len = usize::from(input.u8() % 21);
                let scid = input.bytes(scid_len).to_vec();
                let pn = input.u32();
                let token_len = usize::from(input.u8());
                let token = input.bytes(token_len).to_vec();
                let len = usize::from(input.u16()) % 4096;
                let frames = input.bytes(len).to_vec();
                datagram = Some((src, seal_initial(&dcid, &scid, &token, pn, &frames)));
            }
            2 => now += ms(u64::from(input.u16())),
            3 => now += Duration::from_secs(u64::from(input.u16() % 3600)),
            4 => match input.u8() % 6 {
                0 => ep.server_mut().expect("a server endpoint").pause_admissions(
                    ReasonCode::SERVER_BUSY,
                    "fuzz",
                    Some(ms(500)),
                ),
                1 => ep.server_mut().expect("a server endpoint").resume_admissions(),
                2 => ep
                    .server_mut()
                    .expect("a server endpoint")
                    .shutdown(now, "fuzz", Some(ms(1_000))),
                3 => ep.server_mut().expect("a server endpoint").revalidate(now),
                4 => {
                    ep.server_mut().expect("a server endpoint").close_client_sessions(
                        now,
                        ReasonCode::NORMAL,
                        "fuzz",
                    );
                }
                _ => ep.set_wall_clock(wall.skewed(-60_000)),
            },
            5 => datagram = Some((source_address(input.u8()), last.clone())),
            6 => {}
            _ => {
                let (at, xor) = (usize::from(input.u16()), input.u8());
                let mut bytes = last.clone();
                if !bytes.is_empty() {
                    let i = at % bytes.len();
                    bytes[i] ^= xor;
                }
                datagram = Some((source_address(input.u8()), bytes));
            }
        }
        if let Some((src, bytes)) = datagram {
            *received.entry(src).or_default() += bytes.len() as u64;
            let max = largest.entry(src).or_default();
            *max = (*max).max(bytes.len());
            ep.handle_datagram(now, src, None, None, BytesMut::from(&bytes[..]));
            last = bytes;
        }
        if ep.poll_timeout().is_some_and(|t| t <= now) {
            ep.handle_timeout(now);
        }
        for _ in 0..MAX_DRAIN {
            let Some(transmit) = ep.poll_transmit(now, &mut buf) else {
                break;
            };
            let to = transmit.destination;
            assert!(
                received.contains_key(&to),
                "a datagram to {to}, which sent nothing"
            );
            // Stateless resets may be as large as the datagram that caused them, less one byte
            // (RFC 9000 §10.3); everything else fits a 1 500-byte path.
            assert!(
                transmit.size <= buf.len() && transmit.size <= largest[&to].max(1_500),
                "a {}-byte datagram",
                transmit.size
            );
            let total = sent.entry(to).or_default();
            *total += transmit.size as u64;
            assert!(
                *total <= 3 * received[&to],
                "{total} bytes sent to {to}, which sent {} (RFC 9000 §8.1)",
                received[&to]
            );
        }
        for _ in 0..MAX_DRAIN {
            if ep.poll_event().is_none() {
                break;
            }
        }
        for _ in 0..MAX_DRAIN {
            if ep.poll_tick(now).is_none() {
                break;
            }
        }
        let stats = ep.endpoint_stats();
        let d = stats.datagrams;
        assert!(
            stats.handshakes_pending <= config.max_pending_handshakes,
            "{stats:?}"
        );
        assert!(stats.sessions_live <= config.max_sessions, "{stats:?}");
        assert!(ep.connection_count() as u64 <= d.accepted, "{stats:?}");
        assert!(
            ep.connection_count() <= config.max_sessions + config.max_pending_handshakes,
            "draining connections must count against the table's bound: {stats:?}"
        );
        let (queued, cap) = ep.queued_responses();
        assert!(queued <= cap, "{queued} responses queued, cap {cap}");
        assert!(stats.addresses_tracked <= config.limits.max_tracked_addrs.max(1));
        assert_eq!(
            d.received,
            d.to_connections + d.dropped + d.stateless_responses + d.initials,
            "{d:?}"
        );
        assert_eq!(
            d.initials,
            d.retries_sent + d.refused + d.accepted + d.accept_failed,
            "{d:?}"
        );
        assert!(
            d.initials_validated <= d.initials
                && d.retries_rate_limited + d.retries_before_rejection <= d.retries_sent
        );
        assert_eq!(stats.connections_refused, d.refused);
    }
}

/// The seed corpus: small valid inputs made by the real encoders, plus edge cases.
#[cfg(test)]
mod seeds {
    use std::path::PathBuf;

    use super::*;
    use crate::attest::{ClockInfo, SimulatedTpm, TpmProvider};
    use crate::fragment::split;
    use crate::testing::corpus;
    use crate::ticket::{JoinTicketClaims, TicketIssuer};
    use crate::vs::{Attestation, JoinRequest, PlayTicketClaims, Revocation, TranscriptDigest, VS_NONCE_LEN};
    use crate::wire::{encode_frame, Role, Signature, MAX_CONTROL_FRAME_BYTES, NONCE_LEN};

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

    // ----- state-machine and engine seeds -----

    /// `arbitrary`'s encoding of variant `k` of an `n`-variant enum: the derive reads a `u32`
    /// `x` and picks `(x × n) >> 32`.
    fn tag(k: u32, n: u32) -> Vec<u8> {
        let x = u32::try_from((u64::from(k) << 32).div_ceil(u64::from(n))).unwrap();
        assert_eq!((u64::from(x) * u64::from(n)) >> 32, u64::from(k));
        x.to_le_bytes().to_vec()
    }

    /// Deterministic pseudo-random inputs of the given lengths (every byte string decodes).
    fn noise(seed: u64, lens: &[usize]) -> Vec<Vec<u8>> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        lens.iter()
            .map(|&len| {
                let mut bytes = vec![0; len];
                rng.fill_bytes(&mut bytes);
                bytes
            })
            .collect()
    }

    fn cat(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    fn le16(x: u16) -> [u8; 2] {
        x.to_le_bytes()
    }

    fn le32(x: u32) -> [u8; 4] {
        x.to_le_bytes()
    }

    fn reassembler_seeds() -> Vec<Vec<u8>> {
        let message = |channel: u8, len: u16, chunk: u16, fill: u8| {
            cat(&[&tag(0, 7), &[channel], &le16(len), &le16(chunk), &[fill]])
        };
        let rest = |m: u8, reverse: bool| cat(&[&tag(1, 7), &[m, u8::from(reverse)]]);
        let fragment = |m: u8, i: u8| cat(&[&tag(2, 7), &[m, i]]);
        let advance = |ms: u16| cat(&[&tag(4, 7), &le16(ms)]);
        let flow = cat(&[
            &[0; 8],
            &message(1, 3_000, 499, 7),
            &rest(0, false),
            &message(2, 100, 0, 1),
            &rest(1, true),
            &message(0, 4_096, 255, 3),
            &fragment(2, 0),
            &fragment(2, 0),
            &advance(600),
            &rest(2, false),
            &tag(5, 7),
            &rest(0, false),
        ]);
        // A 2 KiB budget: one message evicts another.
        let budget = cat(&[
            &[0, 0, 0, 0, 0, 0],
            &le16(8192 ^ 2048),
            &message(0, 1_500, 299, 1),
            &fragment(0, 0),
            &message(1, 1_500, 299, 2),
            &rest(1, false),
            &rest(0, false),
        ]);
        let mut seeds = vec![flow, budget, vec![0; 48]];
        seeds.extend(noise(1, &[256, 2_048]));
        seeds
    }

    fn heartbeat_seeds() -> Vec<Vec<u8>> {
        let poll = |tick: u8| cat(&[&tag(0, 8), &[tick]]);
        let advance = |ms: u16| cat(&[&tag(1, 8), &le16(ms)]);
        let pong = |which: u8, hold: u16| cat(&[&tag(2, 8), &[which], &le16(hold), &le32(7)]);
        let ping = |seq: i8, ts: i16| cat(&[&tag(4, 8), &seq.to_le_bytes(), &ts.to_le_bytes()]);
        let mut flow = vec![0; 8];
        for round in 0..12u8 {
            flow.extend(poll(round));
            flow.extend(advance(30 + u16::from(round) * 7));
            flow.extend(pong(0, 500));
            flow.extend(ping(1, 500));
            if round % 4 == 3 {
                flow.extend(ping(-2, -500)); // reordered
            }
            flow.extend(advance(470));
        }
        flow.extend(advance(9_000));
        flow.extend(tag(7, 8));
        flow.extend(poll(0));
        let mut seeds = vec![flow, vec![0; 32]];
        seeds.extend(noise(2, &[256, 1_024]));
        seeds
    }

    fn tick_scheduler_seeds() -> Vec<Vec<u8>> {
        let advance = |us: u32| cat(&[&tag(0, 5), &le32(us)]);
        let stall = |ms: u32| cat(&[&tag(1, 5), &le32(ms)]);
        let catch_up = cat(&[
            &[0, 0, 5, 16],
            &advance(16_667),
            &advance(16_666),
            &stall(250),
            &cat(&[&tag(3, 5), &le16(100)]),
            &cat(&[&tag(2, 5), &[1]]),
            &tag(4, 5),
            &advance(1),
        ]);
        let mut seeds = vec![catch_up, vec![0; 40]];
        seeds.extend(noise(3, &[128, 512]));
        seeds
    }

    fn tick_sync_seeds() -> Vec<Vec<u8>> {
        let time = |us: u32| cat(&[&tag(0, 3), &tag(0, 5), &le32(us)]);
        let sample = |offset: i16, rtt: u16| cat(&[&tag(1, 3), &offset.to_le_bytes(), &le16(rtt)]);
        let mut flow = vec![0; 8];
        flow.extend(sample(0, 50));
        for i in 0..20 {
            flow.extend(time(16_667));
            if i % 5 == 4 {
                flow.extend(sample(1, 48));
            }
        }
        flow.extend(sample(90, 40)); // the server's tick jumped: snap
        flow.extend(time(16_667));
        flow.extend(cat(&[&tag(0, 3), &tag(1, 5), &le32(2_000)]));
        flow.extend(cat(&[&tag(2, 3), &u64::MAX.to_le_bytes(), &le32(0)]));
        let mut seeds = vec![flow, vec![0; 40]];
        seeds.extend(noise(4, &[128, 512]));
        seeds
    }

    fn rate_limiter_seeds() -> Vec<Vec<u8>> {
        let take = |n: u8| cat(&[&tag(0, 6), &[n]]);
        let addr = |a: u8| cat(&[&tag(1, 6), &[a]]);
        let peer = |bytes: u16| cat(&[&tag(2, 6), &le16(bytes)]);
        let nanos = |n: u32| cat(&[&tag(3, 6), &le32(n)]);
        let mut flow = vec![0; 8];
        for i in 0..10u8 {
            flow.extend(take(1 + i % 3));
            flow.extend(addr(i % 4));
            flow.extend(peer(700 * u16::from(i)));
            flow.extend(nanos(123_456_789));
        }
        flow.extend(take(200));
        flow.extend(cat(&[&tag(5, 6), &le16(50), &[2]]));
        let mut seeds = vec![flow, vec![0; 24]];
        seeds.extend(noise(5, &[128, 512]));
        seeds
    }

    /// A `TicketSpec` encoding: `jti`, `client`, `key`, then defaults but for `lifetime_ms` and
    /// `admin`.
    fn ticket_spec(jti: u8, client: u8, key: u8, lifetime: u32, admin: bool) -> Vec<u8> {
        cat(&[
            &[jti, client, key, 0],
            &0i32.to_le_bytes(),
            &le16(0),
            &le32(lifetime),
            &[0, 0, u8::from(admin)],
        ])
    }

    fn replay_cache_seeds() -> Vec<Vec<u8>> {
        let verify = |spec: Vec<u8>| cat(&[&tag(0, 8), &spec]);
        let flow = cat(&[
            &[0; 8],
            &verify(ticket_spec(1, 0, 0, 0, false)),
            &verify(ticket_spec(1, 0, 0, 0, false)), // replayed
            &verify(ticket_spec(2, 1, 1, 0, false)),
            &cat(&[&tag(1, 8), &le32(100_000)]),
            &verify(ticket_spec(1, 0, 0, 0, false)), // the first has expired
            &cat(&[&tag(4, 8), &[1]]),
            &verify(ticket_spec(3, 1, 0, 0, false)), // revoked client
            &cat(&[&tag(5, 8), &[0]]),
            &verify(ticket_spec(4, 2, 0, 0, false)), // revoked key
            &verify(ticket_spec(5, 2, 2, 0, false)), // untrusted key
            &cat(&[&tag(7, 8), &[2]]),
            &verify(ticket_spec(5, 2, 2, 0, false)),
            &cat(&[&tag(3, 8), &[6], &100_000i32.to_le_bytes()]),
            &verify(ticket_spec(6, 3, 1, 0, false)), // revoked jti
        ]);
        let mut seeds = vec![flow, vec![0; 64]];
        seeds.extend(noise(6, &[256, 1_024]));
        seeds
    }

    fn handshake_server_seeds() -> Vec<Vec<u8>> {
        // HelloSpec: identity, version_min, version_max, wrong_schema, capabilities, role,
        // ticket, signing, mutate, nonce.
        let hello = |conn: u8, role: u8, ticket: &[u8], signing: &[u8]| {
            cat(&[
                &tag(0, 7),
                &[conn, 0, 0, 0, 0, 0b101, role],
                ticket,
                signing,
                &[0, 9],
            ])
        };
        let valid = hello(0, 0, &tag(0, 4), &tag(0, 5));
        let flow = cat(&[
            &[3],
            &valid,
            &valid,                               // a control message after the handshake
            &hello(1, 3, &tag(2, 4), &tag(0, 5)), // a game server
            &hello(
                2,
                2,
                &cat(&[&tag(1, 4), &ticket_spec(5, 0, 0, 0, true)]),
                &tag(0, 5),
            ), // admin
            &hello(3, 1, &tag(0, 4), &tag(1, 5)), // wrong exporter
            &cat(&[&tag(4, 7), &[0, 9]]),
            &hello(0, 0, &tag(0, 4), &tag(0, 5)),
            &hello(
                0,
                1,
                &cat(&[&tag(1, 4), &ticket_spec(5, 0, 1, 0, false)]),
                &tag(0, 5),
            ),
        ]);
        let mut seeds = vec![flow, vec![0; 64]];
        seeds.extend(noise(7, &[256, 1_024]));
        seeds
    }

    fn handshake_client_seeds() -> Vec<Vec<u8>> {
        // AcceptSpec: version, wrong_nonce, wrong_schema, extra_capabilities, role,
        // other_server, play, signing, mutate, session_id, server_tick.
        let accept = |conn: u8, play: &[u8], signing: &[u8]| {
            cat(&[
                &tag(0, 6),
                &[conn, 0, 0, 0, 0, 0, 0],
                play,
                signing,
                &[0],
                &7u64.to_le_bytes(),
                &900u64.to_le_bytes(),
            ])
        };
        // OfferSpec: identity, role, expect_key, check_play, capabilities, version_min,
        // version_max, nonce, exporter.
        let open = |conn: u8, role: u8, expect: u8, check: bool| {
            cat(&[
                &tag(4, 6),
                &[conn, 1, role, expect, u8::from(check), 0b11, 0, 0, 5, 6],
            ])
        };
        let flow = cat(&[
            &accept(0, &tag(0, 7), &tag(0, 5)),
            &open(0, 1, 1, true),
            &accept(0, &tag(0, 7), &tag(0, 5)),
            &open(1, 0, 0, true),
            &accept(1, &tag(2, 7), &tag(0, 5)), // expired play ticket
            &open(1, 3, 2, false),
            &accept(1, &tag(1, 7), &tag(0, 5)), // unexpected server key
            &open(0, 0, 0, false),
            &accept(0, &tag(0, 7), &cat(&[&tag(4, 5), &le16(100)])),
        ]);
        let mut seeds = vec![flow, vec![0; 64]];
        seeds.extend(noise(8, &[256, 1_024]));
        seeds
    }

    fn gs_agent_seeds() -> Vec<Vec<u8>> {
        let vs = |k: u32, fields: &[u8]| cat(&[&tag(0, 10), &tag(k, 8), fields]);
        // PlayTicketSpec: signer, wrong_gs_key, wrong_gs_id, issued_offset_ms, lifetime_ms,
        // sequence.
        let ticket =
            |signer: u8, sequence: u8| cat(&[&[signer, 0, 0], &0i32.to_le_bytes(), &le16(0), &[sequence]]);
        let advance = |ms: u16| cat(&[&tag(1, 10), &le16(ms)]);
        let input = |session: u8, tick: u16| cat(&[&tag(4, 10), &[session], &le16(tick), &[0xAB]]);
        let receipt = |pick: u8, tweak: u8| vs(3, &cat(&[&[pick, 0, tweak], &0i32.to_le_bytes()]));
        let mut flow = cat(&[
            &[0; 16],
            &vs(0, &[0x77]),
            &cat(&[&tag(3, 10), &[0, 0]]),
            &vs(1, &cat(&[&ticket(0, 1), &[0x78]])),
            &input(1, 10),
            &input(2, 11),
            &advance(1_000),
            &receipt(0, 0),
            &receipt(1, 4),
            &vs(2, &cat(&[&ticket(0, 2), &[0x79]])),
            &vs(2, &cat(&[&ticket(1, 3), &[0x7A]])),
            &vs(4, &cat(&[&[3], &60_000i32.to_le_bytes()])),
        ]);
        for _ in 0..4 {
            flow.extend(advance(3_000));
        }
        flow.extend(vs(2, &cat(&[&ticket(0, 4), &[0x7B]])));
        flow.extend(cat(&[&tag(6, 10), &[1]]));
        flow.extend(advance(5_000));
        let mut seeds = vec![flow, vec![0; 48]];
        seeds.extend(noise(9, &[256, 1_024]));
        seeds
    }

    /// A real client's first Initial to a server: its connection ids and decrypted frames
    /// (the ClientHello in a CRYPTO frame; trailing PADDING dropped).
    fn recorded_initial() -> (Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>) {
        let start = base_instant();
        let wall = WallClock::new(start, SEED_NOW_MS);
        let mut client = Endpoint::builder(
            Config {
                schema_hash: SCHEMA,
                ..Config::default()
            },
            Secrets::insecure_from_seed(9),
            client_identity(0),
            wall,
        )
        .client()
        .unwrap();
        let ticket = TicketIssuer::new(KEY_ID, signing_key()).issue(
            &JoinTicketClaims::builder(client_identity(0).verifying_key().to_bytes(), [0x0B; 16])
                .client_id(5)
                .audience(GS_ID)
                .valid_from(SEED_NOW_MS)
                .lifetime_ms(60_000)
                .permissions(1)
                .build(),
        );
        let server: SocketAddr = ([192, 0, 2, 1], 4433).into();
        client
            .connect(start, server, ticket, crate::endpoint::ConnectOptions::default())
            .unwrap();
        let mut buf = Vec::new();
        let transmit = client.poll_transmit(start, &mut buf).unwrap();
        let datagram = buf[..transmit.size].to_vec();
        // RFC 9000 §17.2.2.
        let mut p = 5;
        let dcid = datagram[p + 1..p + 1 + usize::from(datagram[p])].to_vec();
        p += 1 + dcid.len();
        let scid = datagram[p + 1..p + 1 + usize::from(datagram[p])].to_vec();
        p += 1 + scid.len();
        assert_eq!(datagram[p], 0, "a first Initial carries no token");
        p += 1;
        let length = usize::from(u16::from_be_bytes([datagram[p], datagram[p + 1]]) & 0x3fff);
        p += 2;
        let keys = initial_suite().keys(&dcid, rustls::Side::Server, rustls::quic::Version::V1);
        let mut header = datagram[..p + 4].to_vec();
        let sample: [u8; 16] = datagram[p + 4..p + 20].try_into().unwrap();
        let (first, pn) = header.split_at_mut(1);
        keys.remote
            .header
            .decrypt_in_place(&sample, &mut first[0], &mut pn[p - 1..p + 3])
            .unwrap();
        let pn_len = usize::from(header[0] & 3) + 1;
        header.truncate(p + pn_len);
        let pn = header[p..].iter().fold(0u64, |n, b| (n << 8) | u64::from(*b));
        let mut payload = datagram[p + pn_len..p + length].to_vec();
        let frames = keys
            .remote
            .packet
            .decrypt_in_place(pn, &header, &mut payload)
            .unwrap()
            .to_vec();
        let end = frames.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
        (datagram, dcid, scid, frames[..end].to_vec())
    }

    fn endpoint_seeds() -> Vec<Vec<u8>> {
        let (datagram, dcid, scid, frames) = recorded_initial();
        let raw =
            |src: u8, bytes: &[u8]| cat(&[&[0, src], &le16(u16::try_from(bytes.len()).unwrap()), bytes]);
        let sealed = |src: u8, dcid: &[u8], frames: &[u8]| {
            cat(&[
                &[1, src, u8::try_from(dcid.len()).unwrap()],
                dcid,
                &[u8::try_from(scid.len()).unwrap()],
                &scid,
                &le32(0),
                &[0],
                &le16(u16::try_from(frames.len()).unwrap()),
                frames,
            ])
        };
        let advance = |ms: u16| cat(&[&[2], &le16(ms)]);
        let mut other_dcid = dcid.clone();
        other_dcid[0] ^= 0x55;
        let flood = cat(&[
            &[0x00, 0x00],
            &sealed(0, &dcid, &frames),
            &sealed(1, &other_dcid, &frames),
            &[5, 2],
            &advance(100),
            &[7, 0, 3, 0x40, 3],
            &advance(2_500),
            &[6],
            &sealed(4, &dcid, &frames),
            &[4, 2],
            &sealed(6, &other_dcid, &frames),
        ]);
        let mut seeds = vec![
            cat(&[
                &[0x15, 0x00],
                &raw(0, &datagram),
                &advance(50),
                &raw(0, &datagram),
            ]),
            cat(&[
                &[0x00, 0x02],
                &sealed(0, &dcid, &frames),
                &advance(3_000),
                &[3, 10, 0],
            ]),
            flood,
            cat(&[
                &[0x3F, 0x09],
                &raw(1, &datagram[..1_199]),
                &raw(2, &[0x40; 40]),
                &raw(3, &[0x80, 0, 0, 0, 0x2a]),
            ]),
        ];
        seeds.extend(noise(10, &[600, 2_000]));
        seeds
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
            ("reassembler", reassembler_seeds()),
            ("heartbeat", heartbeat_seeds()),
            ("tick_scheduler", tick_scheduler_seeds()),
            ("tick_sync", tick_sync_seeds()),
            ("rate_limiter", rate_limiter_seeds()),
            ("replay_cache", replay_cache_seeds()),
            ("handshake_server", handshake_server_seeds()),
            ("handshake_client", handshake_client_seeds()),
            ("gs_agent", gs_agent_seeds()),
            ("endpoint", endpoint_seeds()),
        ]
    }

    /// `fuzz/` at the repository root.
    pub(super) fn fuzz_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
    }

    #[test]
    fn every_target_has_seeds_and_they_pass() {
        corpus::check_seeds(&all(), TARGETS);
    }

    /// Writes the seeds to `fuzz/corpus/<name>/<sha256 prefix>` (existing files are kept):
    /// `cargo test -p tickwire-core --lib -- --ignored write_seed_corpus`.
    #[test]
    #[ignore = "writes fuzz/corpus; run by hand after changing an encoding"]
    fn write_seed_corpus() {
        corpus::write_seeds(&fuzz_dir(), &all());
    }
}

/// Corpus replay on stable: every file under `fuzz/corpus/<name>/` and `fuzz/artifacts/<name>/`
/// goes through its target, so `cargo test -p tickwire-core` catches a regression on any input
/// a fuzzer ever kept, without nightly.
#[cfg(test)]
mod replay {
    use super::seeds::fuzz_dir;
    use super::TARGETS;
    use crate::testing::corpus;

    #[test]
    fn corpora_replay() {
        corpus::replay_all(&fuzz_dir(), TARGETS);
    }

    #[test]
    fn every_target_has_a_fuzz_target_file() {
        corpus::check_target_files(&fuzz_dir(), "tickwire_core::fuzzing", TARGETS);
    }
}
