//! Signed envelopes: join tickets (`PROTOCOL.md` §4.6), play tickets and receipts (§8.5), and
//! the join-ticket verifier's replay cache and revocations as a state machine.

use std::collections::{BTreeMap, BTreeSet};

use arbitrary::{Arbitrary, Unstructured};
use tickwire_core::config::TicketConfig;
use tickwire_core::testing::internals::JOIN_TICKET_CONTEXT;
use tickwire_core::vs::{
    Envelope, EnvelopeError, PlayTicket, PlayTicketError, ProtectedReceipt, ReceiptClaims,
    MAX_ENVELOPE_BYTES, PLAY_TICKET_CONTEXT, RECEIPT_CONTEXT,
};
use tickwire_core::wire;
use tickwire_core::{
    JoinTicket, JoinTicketClaims, ReasonCode, TicketError, TicketIssuer, TicketVerifier,
    MAX_JOIN_TICKET_BYTES, PERMISSION_ADMIN,
};

use crate::fixtures::{
    issuer_key, sign_envelope, signing_key, vs_keys, CLIENT_KEY, GS_ID, GS_KEY, KEY_ID, NOW_MS,
};
use crate::input::{each_op, take, Input, MAX_OPS};

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
/// skew; every refusal maps to `NOT_AUTHORISED` or `PLAY_TICKET_INVALID` through
/// `ReasonCode::from`; the signature passes
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
    let verdict = ticket.verify(&vs_keys(), &gs_key, now, skew);
    if let Err(error) = &verdict {
        let reason = ReasonCode::from(error);
        assert!(
            reason == ReasonCode::NOT_AUTHORISED || reason == ReasonCode::PLAY_TICKET_INVALID,
            "{error:?} maps to {reason:?}"
        );
    }
    if let Ok(claims) = verdict {
        assert_eq!(unverified.as_ref(), Ok(&claims));
        assert_eq!(claims.gs_key, gs_key);
        assert!(claims.issued_at_ms.saturating_sub(skew) <= now);
        assert!(now <= claims.expires_at_ms.saturating_add(skew));
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
pub(crate) struct TicketSpec {
    /// `jti = [jti % 8; 16]`.
    pub(crate) jti: u8,
    /// `client_id = client % 4`.
    pub(crate) client: u8,
    /// Signing key `key % 3` (ids 1, 2, 3; 1 and 2 trusted at start).
    pub(crate) key: u8,
    /// Another game server's id.
    pub(crate) wrong_audience: bool,
    /// `issued_at = now + issued_offset_ms`.
    pub(crate) issued_offset_ms: i32,
    /// `not_before = issued_at + not_before_ms`.
    pub(crate) not_before_ms: u16,
    /// `expires_at = issued_at + 60 000 ^ lifetime_ms`.
    pub(crate) lifetime_ms: u32,
    /// Names another identity key than the handshake's.
    pub(crate) wrong_identity: bool,
    /// Flips a signature bit.
    pub(crate) bad_signature: bool,
    /// Grants [`PERMISSION_ADMIN`].
    pub(crate) admin: bool,
}

impl TicketSpec {
    pub(crate) fn claims(&self, now_ms: u64, identity: [u8; 32]) -> JoinTicketClaims {
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

    pub(crate) fn key_id(&self) -> u32 {
        u32::from(self.key % 3) + 1
    }

    pub(crate) fn ticket(&self, now_ms: u64, identity: [u8; 32]) -> JoinTicket {
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
pub(crate) struct VerifierModel {
    /// Per `jti`: the latest accepted instant of every ticket accepted with it (expiry + skew).
    pub(crate) accepted: BTreeMap<[u8; 16], u64>,
    pub(crate) revoked_clients: BTreeSet<u64>,
    pub(crate) revoked_keys: BTreeSet<u32>,
    pub(crate) revoked_jtis: BTreeMap<[u8; 16], u64>,
    pub(crate) trusted: BTreeSet<u32>,
    /// Admitted tickets, for `check_live` after revocations.
    pub(crate) live: Vec<(u32, JoinTicketClaims)>,
}

impl VerifierModel {
    /// Checks one verification against the model and records an acceptance. `now` is the
    /// verifier's effective time (the latest seen).
    pub(crate) fn check(
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
/// Input (`arbitrary`): `VerifierSettings`, then up to [`MAX_OPS`] operations: present a
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
    let mut now = NOW_MS;
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
        PlayTicket(envelope.clone()).verify(&keys, &GS_KEY, NOW_MS, u64::MAX),
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
        verifier.verify(&ticket, NOW_MS, &CLIENT_KEY),
        Err(TicketError::BadSignature | TicketError::UnknownKey { .. })
    );
    let kinds = usize::from(as_play) + usize::from(as_receipt) + usize::from(as_join);
    assert!(
        kinds <= 1,
        "one signature passed as {kinds} kinds (play {as_play}, receipt {as_receipt}, join {as_join})"
    );
}
