//! Ed25519-signed join tickets, issued by the verification server and verified offline by a game
//! server.
//!
//! A client obtains a [`JoinTicket`] from an issuer ([`TicketIssuer`]) and presents it in its
//! handshake; the game server checks it with a [`TicketVerifier`] without contacting the issuer.
//!
//! # Wire encoding
//!
//! A ticket is the postcard encoding of [`JoinTicket`], at most [`MAX_JOIN_TICKET_BYTES`] bytes:
//!
//! ```text
//! key_id     varint u32
//! claims     varint length, then that many bytes: the postcard encoding of JoinTicketClaims
//! signature  64 raw bytes (Ed25519, RFC 8032), no length prefix
//! ```
//!
//! The claims are carried and signed as bytes, so verification never depends on re-encoding.
//! Their postcard encoding is, in order: `client_id` varint u64, `gs_id` varint u64, `jti` 16 raw
//! bytes, `issued_at_ms`, `not_before_ms`, `expires_at_ms` varint u64 each, `permissions` varint
//! u32, `client_key` 32 raw bytes (at most 103 bytes in all, so a ticket is at most 173 bytes).
//! Trailing bytes after either encoding are rejected.
//!
//! The signed message is [`JOIN_TICKET_CONTEXT`] ‖ `key_id` as 4 big-endian bytes ‖ claims bytes,
//! verified with `verify_strict` (no malleable or small-order signatures).
//!
//! # Verification
//!
//! [`TicketVerifier::verify`] checks, in this order: known key id, signature, claims decode,
//! audience, not-before and expiry (each widened by `max_skew_ms`), lifetime, revocation, that the
//! ticket's identity key is the handshake's, and finally single use of the `jti`.

mod envelope;

pub use envelope::{
    Envelope, EnvelopeError, PlayTicket, PlayTicketClaims, PlayTicketError, ProtectedReceipt, ReceiptClaims,
    VsKeys, MAX_ENVELOPE_BYTES, PLAY_TICKET_CONTEXT, RECEIPT_CONTEXT,
};

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

/// Domain-separation prefix of the signed message, so a join-ticket signature can never be taken
/// for a signature over anything else.
pub const JOIN_TICKET_CONTEXT: &[u8] = b"tickwire/join-ticket/v1\0";

/// Largest encoded [`JoinTicket`] accepted by [`JoinTicket::from_bytes`], in bytes (checked before
/// decoding). Real tickets are at most 173 bytes; the rest is room for future claims.
pub const MAX_JOIN_TICKET_BYTES: usize = 512;

/// What a join ticket asserts about its holder. All times are Unix epoch milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JoinTicketClaims {
    /// The client this ticket admits.
    pub client_id: u64,
    /// Audience: the only game server that accepts this ticket.
    pub gs_id: u64,
    /// Unique ticket id; a game server accepts each `jti` once.
    pub jti: [u8; 16],
    /// When the issuer signed the ticket.
    pub issued_at_ms: u64,
    /// Earliest acceptance time (less the skew allowance).
    pub not_before_ms: u64,
    /// Latest acceptance time (plus the skew allowance).
    pub expires_at_ms: u64,
    /// Permission bits granted to the client in the session.
    pub permissions: u32,
    /// The client's Ed25519 identity public key; must equal the key in its handshake.
    pub client_key: [u8; 32],
}

impl JoinTicketClaims {
    /// Claims for the client whose identity key is `client_key`, with the unique ticket id
    /// `jti` (16 random bytes from the issuer's CSPRNG). Set the rest by name; unset, the
    /// client id, audience and permissions are 0, validity starts at Unix time 0 and lasts
    /// [`JoinTicketBuilder::DEFAULT_LIFETIME_MS`].
    pub fn builder(client_key: [u8; 32], jti: [u8; 16]) -> JoinTicketBuilder {
        JoinTicketBuilder {
            claims: Self {
                client_id: 0,
                gs_id: 0,
                jti,
                issued_at_ms: 0,
                not_before_ms: 0,
                expires_at_ms: JoinTicketBuilder::DEFAULT_LIFETIME_MS,
                permissions: 0,
                client_key,
            },
            lifetime_ms: JoinTicketBuilder::DEFAULT_LIFETIME_MS,
        }
    }
}

/// Builds [`JoinTicketClaims`] field by field; from [`JoinTicketClaims::builder`].
#[derive(Debug, Clone)]
#[must_use = "call `build()` for the claims"]
pub struct JoinTicketBuilder {
    claims: JoinTicketClaims,
    lifetime_ms: u64,
}

impl JoinTicketBuilder {
    /// The lifetime of claims whose builder was not given one, in milliseconds.
    pub const DEFAULT_LIFETIME_MS: u64 = 30_000;

    /// The client this ticket admits.
    pub fn client_id(mut self, client_id: u64) -> Self {
        self.claims.client_id = client_id;
        self
    }

    /// The only game server that accepts the ticket.
    pub fn audience(mut self, gs_id: u64) -> Self {
        self.claims.gs_id = gs_id;
        self
    }

    /// Issued at, and valid from, `unix_ms` (Unix epoch milliseconds).
    pub fn valid_from(mut self, unix_ms: u64) -> Self {
        self.claims.issued_at_ms = unix_ms;
        self.claims.not_before_ms = unix_ms;
        self
    }

    /// Valid for `lifetime_ms` milliseconds after [`valid_from`](Self::valid_from).
    pub fn lifetime_ms(mut self, lifetime_ms: u64) -> Self {
        self.lifetime_ms = lifetime_ms;
        self
    }

    /// Permission bits granted to the client in the session (e.g. [`PERMISSION_ADMIN`](crate::PERMISSION_ADMIN)).
    pub fn permissions(mut self, permissions: u32) -> Self {
        self.claims.permissions = permissions;
        self
    }

    /// The claims.
    pub fn build(self) -> JoinTicketClaims {
        let mut claims = self.claims;
        claims.expires_at_ms = claims.not_before_ms.saturating_add(self.lifetime_ms);
        claims
    }
}

/// A signed join ticket as carried in the handshake. `PROTOCOL.md` §4.6.1 gives the encoding.
#[serde_with::serde_as]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JoinTicket {
    /// Which issuer key signed the ticket (lets issuers rotate keys).
    pub key_id: u32,
    /// Postcard encoding of [`JoinTicketClaims`], exactly the bytes that were signed.
    pub claims: Vec<u8>,
    /// Ed25519 signature over the signed message; encoded as 64 raw bytes (a fixed-size
    /// tuple: postcard writes no length).
    #[serde_as(as = "[_; 64]")]
    pub signature: [u8; 64],
}

impl JoinTicket {
    /// The wire encoding (postcard), at most [`MAX_JOIN_TICKET_BYTES`] for tickets made by
    /// [`TicketIssuer::issue`].
    pub fn to_bytes(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("postcard encoding into a Vec cannot fail")
    }

    /// Decodes the wire encoding. Does not verify anything: use [`TicketVerifier::verify`].
    ///
    /// # Errors
    /// [`TicketDecodeError`]: reject the handshake that carried it.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, TicketDecodeError> {
        if bytes.len() > MAX_JOIN_TICKET_BYTES {
            return Err(TicketDecodeError::TooLarge {
                len: bytes.len(),
                max: MAX_JOIN_TICKET_BYTES,
            });
        }
        decode_exact(bytes)
    }

    /// Decodes the claims **without verifying the signature** (for logging or routing only).
    ///
    /// # Errors
    /// [`TicketDecodeError::Malformed`] if the bytes are not exactly one claims encoding.
    pub fn claims(&self) -> Result<JoinTicketClaims, TicketDecodeError> {
        decode_exact(&self.claims)
    }
}

/// Decodes exactly one `T` from `bytes`, rejecting trailing bytes.
fn decode_exact<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, TicketDecodeError> {
    match postcard::take_from_bytes(bytes) {
        Ok((value, [])) => Ok(value),
        _ => Err(TicketDecodeError::Malformed),
    }
}

/// The message an issuer signs: context ‖ key id (big-endian) ‖ claims bytes.
fn signed_message(key_id: u32, claims: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(JOIN_TICKET_CONTEXT.len() + 4 + claims.len());
    message.extend_from_slice(JOIN_TICKET_CONTEXT);
    message.extend_from_slice(&key_id.to_be_bytes());
    message.extend_from_slice(claims);
    message
}

/// A join ticket could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TicketDecodeError {
    /// The encoding is longer than allowed; the sender is broken or hostile. Reject it.
    #[error("join ticket is {len} bytes, more than the {max} allowed")]
    TooLarge {
        /// Bytes received.
        len: usize,
        /// [`MAX_JOIN_TICKET_BYTES`].
        max: usize,
    },
    /// Not exactly one valid postcard encoding. Reject it.
    #[error("join ticket is malformed")]
    Malformed,
}

/// Signs join tickets with one key.
#[derive(Debug)]
pub struct TicketIssuer {
    key_id: u32,
    signing_key: SigningKey,
}

impl TicketIssuer {
    /// An issuer signing with `signing_key`, announced to verifiers as `key_id`.
    pub fn new(key_id: u32, signing_key: SigningKey) -> Self {
        Self { key_id, signing_key }
    }

    /// The key verifiers must register under this issuer's key id
    /// ([`TicketVerifier::add_key`]).
    pub fn verifying_key(&self) -> VerifyingKey {
        self.signing_key.verifying_key()
    }

    /// Encodes and signs `claims`.
    pub fn issue(&self, claims: &JoinTicketClaims) -> JoinTicket {
        let claims = postcard::to_allocvec(claims).expect("postcard encoding into a Vec cannot fail");
        let signature = self.signing_key.sign(&signed_message(self.key_id, &claims));
        JoinTicket {
            key_id: self.key_id,
            claims,
            signature: signature.to_bytes(),
        }
    }
}

/// Largest clock-skew allowance any validated configuration accepts, in milliseconds (one
/// hour), here and for the play-ticket and join-request skews elsewhere. Clocks further apart
/// than that are broken, and a larger allowance would keep expired tickets valid (and their
/// replay-cache entries alive) that much longer, or with `u64::MAX` disable the check.
pub const MAX_CLOCK_SKEW_MS: u64 = 3_600_000;

/// Verifier settings.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TicketConfig {
    /// Clock-skew allowance between issuer and game server, applied to `not_before_ms` and
    /// `expires_at_ms`, in milliseconds; at most [`MAX_CLOCK_SKEW_MS`]. Default 30 000 ms:
    /// the VS's `join_max_skew_ms`, for cross-region drift.
    pub max_skew_ms: u64,
    /// Accepted `jti`s remembered at once. Each is held for at most `max_lifetime_ms +
    /// max_skew_ms` (330 s), so the default 65 536 sustains about 200 joins per second; when
    /// full, new joins are refused with [`TicketError::ReplayCacheFull`].
    pub replay_cache_capacity: usize,
    /// Longest accepted `expires_at_ms − issued_at_ms`. Default 300 000 ms (5 min): join tickets
    /// are used right away, and short lifetimes bound the replay cache.
    pub max_lifetime_ms: u64,
    /// Revoked `jti`s remembered at once (each until its ticket expires). Default 65 536.
    pub max_revoked_jtis: usize,
    /// Revoked client ids remembered (permanently). Default 65 536.
    pub max_revoked_clients: usize,
    /// Revoked issuer key ids remembered (permanently). Default 256.
    pub max_revoked_keys: usize,
}

impl Default for TicketConfig {
    fn default() -> Self {
        Self {
            max_skew_ms: 30_000,
            replay_cache_capacity: 65_536,
            max_lifetime_ms: 300_000,
            max_revoked_jtis: 65_536,
            max_revoked_clients: 65_536,
            max_revoked_keys: 256,
        }
    }
}

impl TicketConfig {
    /// Checks that the verifier can accept at least one ticket (a replay cache and a lifetime
    /// of at least 1), can hold at least one revocation of each kind (a game server drops
    /// revocations pushed by its verification server that do not fit), and that `max_skew_ms`
    /// is at most [`MAX_CLOCK_SKEW_MS`].
    ///
    /// # Errors
    /// The first [`TicketConfigError`] found; its message starts with the field to fix.
    pub fn validate(&self) -> Result<(), TicketConfigError> {
        if self.max_skew_ms > MAX_CLOCK_SKEW_MS {
            return Err(TicketConfigError::SkewTooLarge);
        }
        if self.replay_cache_capacity == 0 {
            return Err(TicketConfigError::NoReplayCapacity);
        }
        if self.max_lifetime_ms == 0 {
            return Err(TicketConfigError::ZeroLifetime);
        }
        let revocation_limits = [
            ("max_revoked_jtis", self.max_revoked_jtis),
            ("max_revoked_clients", self.max_revoked_clients),
            ("max_revoked_keys", self.max_revoked_keys),
        ];
        if let Some((field, _)) = revocation_limits.into_iter().find(|(_, limit)| *limit == 0) {
            return Err(TicketConfigError::NoRevocationCapacity { field });
        }
        Ok(())
    }
}

/// An invalid [`TicketConfig`]; the variant names the field to fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TicketConfigError {
    /// `max_skew_ms` exceeds [`MAX_CLOCK_SKEW_MS`]: fix the clocks rather than widening the
    /// allowance.
    #[error("max_skew_ms must be at most 3600000 (one hour)")]
    SkewTooLarge,
    /// `replay_cache_capacity` is 0: every ticket would be refused.
    #[error("replay_cache_capacity must be at least 1")]
    NoReplayCapacity,
    /// `max_lifetime_ms` is 0: every ticket would be refused.
    #[error("max_lifetime_ms must be at least 1")]
    ZeroLifetime,
    /// The named revocation limit is 0: every revocation of that kind would be refused (and,
    /// pushed by a verification server, ignored). Raise it.
    #[error("{field} must be at least 1")]
    NoRevocationCapacity {
        /// Name of the field.
        field: &'static str,
    },
}

/// Why a join ticket was refused. Each variant says what the client can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TicketError {
    /// The signing key is not (or no longer) trusted here. Get a ticket signed with a current key.
    #[error("unknown ticket key id {key_id}")]
    UnknownKey {
        /// The ticket's key id.
        key_id: u32,
    },
    /// The signature does not match the key id and claims: the ticket was altered or forged.
    /// Get a new ticket from the issuer.
    #[error("bad ticket signature")]
    BadSignature,
    /// The signed claims do not decode: the issuer is incompatible. Get a new ticket.
    #[error("malformed ticket claims")]
    Malformed,
    /// The ticket is for another game server. Connect to that one, or get a ticket for this one.
    #[error("ticket is for game server {got}, this is {expected}")]
    WrongAudience {
        /// This game server's id.
        expected: u64,
        /// The ticket's `gs_id`.
        got: u64,
    },
    /// The ticket is not valid yet, even with the skew allowance. Retry after `starts_in_ms`, or
    /// check the clocks.
    #[error("ticket valid in {starts_in_ms} ms")]
    NotYetValid {
        /// Milliseconds until `not_before_ms − max_skew_ms`.
        starts_in_ms: u64,
    },
    /// The ticket has expired, even with the skew allowance. Get a new ticket.
    #[error("ticket expired {ago_ms} ms ago")]
    Expired {
        /// Milliseconds since `expires_at_ms + max_skew_ms`, the last accepted instant.
        ago_ms: u64,
    },
    /// The ticket's lifetime exceeds this server's `max_lifetime_ms`. Get a shorter-lived ticket.
    #[error("ticket lifetime too long")]
    LifetimeTooLong,
    /// The ticket, its client or its signing key was revoked. Do not retry with this ticket.
    #[error("ticket revoked")]
    Revoked,
    /// The ticket names another identity key than the handshake's. Present your own ticket.
    #[error("ticket identity key does not match the handshake")]
    IdentityMismatch,
    /// This ticket was already used. Get a new ticket (a fresh `jti`).
    #[error("ticket already used")]
    Replayed,
    /// The server's replay cache is full of live entries, so it cannot accept a ticket safely.
    /// Retry the same ticket after `retry_after_ms`.
    #[error("replay cache full, retry in {retry_after_ms} ms")]
    ReplayCacheFull {
        /// Milliseconds until the oldest entry expires (`u64::MAX` if the capacity is 0).
        retry_after_ms: u64,
    },
}

/// A revocation list is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RevokeError {
    /// The list holds its configured maximum. Revoke more coarsely (the client or the key
    /// instead of a `jti`), or raise the cap.
    #[error("revocation list full ({capacity} entries)")]
    Full {
        /// The configured cap.
        capacity: usize,
    },
}

/// Counters of a verifier's decisions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct TicketStats {
    /// Tickets accepted by [`TicketVerifier::verify`].
    pub accepted: u64,
    /// Tickets refused by [`TicketVerifier::verify`], for any reason.
    pub rejected: u64,
    /// Of those, refused with [`TicketError::ReplayCacheFull`] (raise the capacity if nonzero).
    pub replay_cache_full: u64,
}

/// `jti`s, each kept until a deadline (Unix ms, inclusive), oldest deadline first.
#[derive(Debug, Clone, Default)]
struct ExpiringJtis {
    deadlines: BTreeMap<[u8; 16], u64>,
    by_deadline: BTreeSet<(u64, [u8; 16])>,
}

impl ExpiringJtis {
    /// Forgets every entry whose deadline is before `now_ms`.
    fn purge(&mut self, now_ms: u64) {
        while let Some(&(deadline, jti)) = self.by_deadline.first() {
            if deadline >= now_ms {
                break;
            }
            self.by_deadline.pop_first();
            self.deadlines.remove(&jti);
        }
    }

    fn contains(&self, jti: &[u8; 16], now_ms: u64) -> bool {
        self.deadlines
            .get(jti)
            .is_some_and(|&deadline| deadline >= now_ms)
    }

    /// Adds `jti`, keeping the later deadline if it is already there.
    fn insert(&mut self, jti: [u8; 16], deadline: u64) {
        let deadline = match self.deadlines.get(&jti) {
            Some(&old) => {
                self.by_deadline.remove(&(old, jti));
                old.max(deadline)
            }
            None => deadline,
        };
        self.deadlines.insert(jti, deadline);
        self.by_deadline.insert((deadline, jti));
    }

    /// Forgets the entry with the earliest deadline.
    fn pop_oldest(&mut self) {
        if let Some((_, jti)) = self.by_deadline.pop_first() {
            self.deadlines.remove(&jti);
        }
    }

    fn oldest_deadline(&self) -> Option<u64> {
        self.by_deadline.first().map(|&(deadline, _)| deadline)
    }

    fn len(&self) -> usize {
        self.deadlines.len()
    }
}

/// Verifies join tickets for one game server, offline.
///
/// Holds the trusted issuer keys, the revocation lists and the bounded replay cache. Wall-clock
/// time is an argument (`now_unix_ms`); an earlier time than one already seen by
/// [`verify`](Self::verify) is treated as that latest time, so a clock step backwards can neither
/// revive an expired ticket nor replay a forgotten `jti`.
#[derive(Debug, Clone)]
pub struct TicketVerifier {
    gs_id: u64,
    config: TicketConfig,
    keys: BTreeMap<u32, VerifyingKey>,
    revoked_jtis: ExpiringJtis,
    revoked_clients: BTreeSet<u64>,
    revoked_keys: BTreeSet<u32>,
    replay: ExpiringJtis,
    /// Consumed `jti`s and their deadlines, queued for a store while recording (at most
    /// `replay_cache_capacity`).
    consumed: Option<VecDeque<([u8; 16], u64)>>,
    latest_now_ms: u64,
    stats: TicketStats,
}

impl TicketVerifier {
    /// A verifier for game server `gs_id` with no trusted keys yet.
    pub fn new(gs_id: u64, config: TicketConfig) -> Self {
        Self {
            gs_id,
            config,
            keys: BTreeMap::new(),
            revoked_jtis: ExpiringJtis::default(),
            revoked_clients: BTreeSet::new(),
            revoked_keys: BTreeSet::new(),
            replay: ExpiringJtis::default(),
            consumed: None,
            latest_now_ms: 0,
            stats: TicketStats::default(),
        }
    }

    /// Trusts `key` for tickets carrying `key_id`, replacing any key under that id.
    pub fn add_key(&mut self, key_id: u32, key: VerifyingKey) {
        self.keys.insert(key_id, key);
    }

    /// Stops trusting `key_id` for new tickets (key rotation); live sessions are unaffected.
    /// To also end live sessions, use [`revoke_key`](Self::revoke_key).
    pub fn remove_key(&mut self, key_id: u32) {
        self.keys.remove(&key_id);
    }

    /// Checks `ticket`, presented at `now_unix_ms` in a handshake whose identity key is
    /// `handshake_key`, and records its `jti` as used. `PROTOCOL.md` §4.6.3 gives the order of the checks.
    ///
    /// # Errors
    /// The first failed check, as a [`TicketError`]; nothing is recorded then.
    pub fn verify(
        &mut self,
        ticket: &JoinTicket,
        now_unix_ms: u64,
        handshake_key: &[u8; 32],
    ) -> Result<JoinTicketClaims, TicketError> {
        self.latest_now_ms = self.latest_now_ms.max(now_unix_ms);
        let result = self.check_and_record(ticket, self.latest_now_ms, handshake_key);
        match result {
            Ok(_) => self.stats.accepted += 1,
            Err(error) => {
                self.stats.rejected += 1;
                if matches!(error, TicketError::ReplayCacheFull { .. }) {
                    self.stats.replay_cache_full += 1;
                }
            }
        }
        result
    }

    fn check_and_record(
        &mut self,
        ticket: &JoinTicket,
        now: u64,
        handshake_key: &[u8; 32],
    ) -> Result<JoinTicketClaims, TicketError> {
        let key_id = ticket.key_id;
        let key = self.keys.get(&key_id).ok_or(TicketError::UnknownKey { key_id })?;
        key.verify_strict(
            &signed_message(key_id, &ticket.claims),
            &Signature::from_bytes(&ticket.signature),
        )
        .map_err(|_| TicketError::BadSignature)?;
        let claims = ticket.claims().map_err(|_| TicketError::Malformed)?;
        if claims.gs_id != self.gs_id {
            return Err(TicketError::WrongAudience {
                expected: self.gs_id,
                got: claims.gs_id,
            });
        }
        let starts = claims.not_before_ms.saturating_sub(self.config.max_skew_ms);
        if now < starts {
            return Err(TicketError::NotYetValid {
                starts_in_ms: starts - now,
            });
        }
        self.check_expiry(&claims, now)?;
        if claims.expires_at_ms.saturating_sub(claims.issued_at_ms) > self.config.max_lifetime_ms {
            return Err(TicketError::LifetimeTooLong);
        }
        self.check_revoked(key_id, &claims, now)?;
        if claims.client_key != *handshake_key {
            return Err(TicketError::IdentityMismatch);
        }

        self.replay.purge(now);
        if self.replay.contains(&claims.jti, now) {
            return Err(TicketError::Replayed);
        }
        if self.replay.len() >= self.config.replay_cache_capacity {
            let retry_after_ms = self
                .replay
                .oldest_deadline()
                .map_or(u64::MAX, |deadline| (deadline - now).saturating_add(1));
            return Err(TicketError::ReplayCacheFull { retry_after_ms });
        }
        let deadline = self.last_valid_ms(&claims);
        self.replay.insert(claims.jti, deadline);
        if let Some(consumed) = &mut self.consumed {
            if consumed.len() >= self.config.replay_cache_capacity {
                // Not drained: the runtime is not keeping them (its documented duty).
                consumed.pop_front();
            }
            consumed.push_back((claims.jti, deadline));
        }
        Ok(claims)
    }

    /// Command: with `on`, queue every `jti` accepted from now on, with the Unix time (ms)
    /// until which it must be remembered, for [`poll_consumed`](Self::poll_consumed); a game
    /// server that keeps them in a store makes a ticket single-use across its restarts.
    pub fn record_consumed(&mut self, on: bool) {
        self.consumed = on.then(VecDeque::new);
    }

    /// Output: the next consumed `jti` and its deadline (Unix ms). Make them durable before
    /// the endpoint's transmits are flushed: the Accept that admits the ticket's holder is
    /// queued there.
    #[must_use]
    pub fn poll_consumed(&mut self) -> Option<([u8; 16], u64)> {
        self.consumed.as_mut()?.pop_front()
    }

    /// Command, before the first handshake: `jti`s a previous run consumed, each with its
    /// deadline (Unix ms); those still live are refused as replays (`TICKET_REPLAYED`). Beyond
    /// `replay_cache_capacity`, the ones with the latest deadlines are kept.
    pub fn restore_consumed(&mut self, jtis: impl IntoIterator<Item = ([u8; 16], u64)>) {
        for (jti, deadline) in jtis {
            self.replay.insert(jti, deadline);
        }
        while self.replay.len() > self.config.replay_cache_capacity {
            self.replay.pop_oldest();
        }
    }

    /// Revalidates a live session admitted with `claims` (signed by `key_id`), e.g. every few
    /// seconds: fails once the ticket has expired or was revoked.
    ///
    /// # Errors
    /// [`TicketError::Expired`] or [`TicketError::Revoked`]: end the session.
    pub fn check_live(
        &self,
        key_id: u32,
        claims: &JoinTicketClaims,
        now_unix_ms: u64,
    ) -> Result<(), TicketError> {
        let now = now_unix_ms.max(self.latest_now_ms);
        // Revocation first: a session that outlives its ticket (when expiry does not end
        // sessions) must still end when revoked.
        self.check_revoked(key_id, claims, now)?;
        self.check_expiry(claims, now)
    }

    /// Revokes one ticket until `until_unix_ms` (pass its `expires_at_ms`; the skew allowance
    /// is added). Revoking it again keeps the later time.
    ///
    /// # Errors
    /// [`RevokeError::Full`] when `max_revoked_jtis` unexpired `jti`s are already revoked.
    pub fn revoke_jti(&mut self, jti: [u8; 16], until_unix_ms: u64) -> Result<(), RevokeError> {
        self.revoked_jtis.purge(self.latest_now_ms);
        if !self.revoked_jtis.contains(&jti, self.latest_now_ms)
            && self.revoked_jtis.len() >= self.config.max_revoked_jtis
        {
            return Err(RevokeError::Full {
                capacity: self.config.max_revoked_jtis,
            });
        }
        self.revoked_jtis
            .insert(jti, until_unix_ms.saturating_add(self.config.max_skew_ms));
        Ok(())
    }

    /// Revokes every ticket of `client_id`, permanently.
    ///
    /// # Errors
    /// [`RevokeError::Full`] when `max_revoked_clients` clients are already revoked.
    pub fn revoke_client(&mut self, client_id: u64) -> Result<(), RevokeError> {
        insert_bounded(
            &mut self.revoked_clients,
            client_id,
            self.config.max_revoked_clients,
        )
    }

    /// Revokes every ticket signed under `key_id`, permanently (a compromised issuer key).
    ///
    /// # Errors
    /// [`RevokeError::Full`] when `max_revoked_keys` keys are already revoked.
    pub fn revoke_key(&mut self, key_id: u32) -> Result<(), RevokeError> {
        insert_bounded(&mut self.revoked_keys, key_id, self.config.max_revoked_keys)
    }

    /// Number of `jti`s in the replay cache, including expired ones not yet purged.
    pub fn replay_cache_len(&self) -> usize {
        self.replay.len()
    }

    /// Decision counters.
    pub fn stats(&self) -> TicketStats {
        self.stats
    }

    /// The last instant at which `claims` are accepted: expiry plus the skew allowance.
    fn last_valid_ms(&self, claims: &JoinTicketClaims) -> u64 {
        claims.expires_at_ms.saturating_add(self.config.max_skew_ms)
    }

    fn check_expiry(&self, claims: &JoinTicketClaims, now: u64) -> Result<(), TicketError> {
        let last_valid = self.last_valid_ms(claims);
        if now > last_valid {
            return Err(TicketError::Expired {
                ago_ms: now - last_valid,
            });
        }
        Ok(())
    }

    fn check_revoked(&self, key_id: u32, claims: &JoinTicketClaims, now: u64) -> Result<(), TicketError> {
        if self.revoked_keys.contains(&key_id)
            || self.revoked_clients.contains(&claims.client_id)
            || self.revoked_jtis.contains(&claims.jti, now)
        {
            return Err(TicketError::Revoked);
        }
        Ok(())
    }
}

fn insert_bounded<T: Ord>(set: &mut BTreeSet<T>, value: T, capacity: usize) -> Result<(), RevokeError> {
    if !set.contains(&value) && set.len() >= capacity {
        return Err(RevokeError::Full { capacity });
    }
    set.insert(value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use TicketError::*;

    const GS: u64 = 7;
    const NOW: u64 = 1_700_000_000_000;
    const SKEW: u64 = 30_000;
    /// Last accepted instant of `claims(n)`: 60 s lifetime plus the skew.
    const LAST_VALID: u64 = NOW + 60_000 + SKEW;
    /// The client's identity key (only compared as bytes, so any 32 bytes do).
    const CLIENT_KEY: [u8; 32] = [0xC1; 32];

    type Verdict = Result<JoinTicketClaims, TicketError>;

    /// Ticket `n`: client `100 + n`, jti `[n; 16]`, valid from `from_ms` for `lifetime_ms`.
    fn claims_at(n: u8, from_ms: u64, lifetime_ms: u64) -> JoinTicketClaims {
        let client_id = 100 + u64::from(n);
        JoinTicketClaims::builder(CLIENT_KEY, [n; 16])
            .client_id(client_id)
            .audience(GS)
            .valid_from(from_ms)
            .lifetime_ms(lifetime_ms)
            .permissions(0b101)
            .build()
    }

    fn claims(n: u8) -> JoinTicketClaims {
        claims_at(n, NOW, 60_000)
    }

    /// An issuer with key id 1 and a game server trusting it.
    struct Harness {
        issuer: TicketIssuer,
        gs: TicketVerifier,
    }

    impl Harness {
        fn new(config: TicketConfig) -> Self {
            let issuer = TicketIssuer::new(1, SigningKey::from_bytes(&[1; 32]));
            let mut gs = TicketVerifier::new(GS, config);
            gs.add_key(1, issuer.verifying_key());
            Self { issuer, gs }
        }

        fn ticket(&mut self, ticket: &JoinTicket, now: u64) -> Verdict {
            self.gs.verify(ticket, now, &CLIENT_KEY)
        }

        fn verify(&mut self, claims: &JoinTicketClaims, now: u64) -> Verdict {
            let ticket = self.issuer.issue(claims);
            self.ticket(&ticket, now)
        }
    }

    fn harness() -> Harness {
        Harness::new(TicketConfig::default())
    }

    fn harness_with(tune: impl FnOnce(&mut TicketConfig)) -> Harness {
        let mut config = TicketConfig::default();
        tune(&mut config);
        Harness::new(config)
    }

    #[test]
    fn issued_ticket_verifies_exactly_once() {
        let mut h = harness();
        assert_eq!(h.verify(&claims(1), NOW), Ok(claims(1)));
        assert_eq!(h.gs.replay_cache_len(), 1);
        assert_eq!(h.verify(&claims(1), NOW + 1), Err(Replayed));
    }

    #[test]
    fn unknown_and_removed_keys_are_refused() {
        let mut h = harness();
        let stranger = TicketIssuer::new(2, SigningKey::from_bytes(&[2; 32]));
        assert_eq!(
            h.ticket(&stranger.issue(&claims(1)), NOW),
            Err(UnknownKey { key_id: 2 })
        );
        h.gs.remove_key(1);
        assert_eq!(h.verify(&claims(1), NOW), Err(UnknownKey { key_id: 1 }));
    }

    #[test]
    fn tampered_claims_signature_or_key_id_fail_the_signature() {
        let mut h = harness();
        let other = TicketIssuer::new(2, SigningKey::from_bytes(&[2; 32]));
        h.gs.add_key(2, other.verifying_key());
        let ticket = h.issuer.issue(&claims(1));

        let mut forged = ticket.clone();
        let mut escalated = claims(1);
        escalated.permissions = u32::MAX;
        forged.claims = postcard::to_allocvec(&escalated).unwrap();
        let mut flipped = ticket.clone();
        flipped.signature[10] ^= 1;
        let mut rekeyed = ticket.clone();
        rekeyed.key_id = 2;
        let mut relabelled = other.issue(&claims(1));
        relabelled.key_id = 1;
        for bad in [forged, flipped, rekeyed, relabelled] {
            assert_eq!(h.ticket(&bad, NOW), Err(BadSignature));
        }
        assert_eq!(h.gs.replay_cache_len(), 0, "failed checks consume nothing");
        assert!(h.ticket(&ticket, NOW).is_ok());
    }

    #[test]
    fn signed_claims_that_do_not_decode_are_malformed() {
        let mut h = harness();
        let key = SigningKey::from_bytes(&[1; 32]);
        let mut trailing = postcard::to_allocvec(&claims(1)).unwrap();
        trailing.push(0);
        for claims in [vec![1, 2, 3], trailing] {
            let signature = key.sign(&signed_message(1, &claims)).to_bytes();
            let ticket = JoinTicket {
                key_id: 1,
                claims,
                signature,
            };
            assert_eq!(h.ticket(&ticket, NOW), Err(Malformed));
        }
    }

    #[test]
    fn ticket_for_another_server_is_refused() {
        let mut elsewhere = claims(1);
        elsewhere.gs_id = 8;
        let refused = harness().verify(&elsewhere, NOW);
        assert_eq!(refused, Err(WrongAudience { expected: GS, got: 8 }));
    }

    #[test]
    fn validity_window_allows_exactly_the_skew_on_both_sides() {
        let mut h = harness();
        let mut early = claims(1);
        early.not_before_ms = NOW + 10_000;
        let earliest = NOW + 10_000 - SKEW;
        assert_eq!(
            h.verify(&early, earliest - 1),
            Err(NotYetValid { starts_in_ms: 1 })
        );
        assert!(h.verify(&early, earliest).is_ok());

        assert!(h.verify(&claims(2), LAST_VALID).is_ok());
        assert_eq!(h.verify(&claims(3), LAST_VALID + 1), Err(Expired { ago_ms: 1 }));
    }

    #[test]
    fn lifetime_is_capped() {
        let mut h = harness_with(|config| config.max_lifetime_ms = 60_000);
        assert_eq!(h.verify(&claims_at(1, NOW, 60_001), NOW), Err(LifetimeTooLong));
        assert!(h.verify(&claims_at(2, NOW, 60_000), NOW).is_ok());
    }

    #[test]
    fn identity_key_must_match_the_handshake() {
        let mut h = harness();
        let ticket = h.issuer.issue(&claims(1));
        assert_eq!(h.gs.verify(&ticket, NOW, &[0xEE; 32]), Err(IdentityMismatch));
        assert!(h.ticket(&ticket, NOW).is_ok());
    }

    #[test]
    fn revocation_by_jti_client_and_key() {
        let mut h = harness();
        h.gs.revoke_jti([1; 16], NOW + 60_000).unwrap();
        h.gs.revoke_client(102).unwrap();
        assert_eq!(h.verify(&claims(1), NOW), Err(Revoked));
        assert_eq!(h.verify(&claims(2), NOW), Err(Revoked));
        assert!(h.verify(&claims(3), NOW).is_ok());
        h.gs.revoke_key(1).unwrap();
        assert_eq!(h.verify(&claims(4), NOW), Err(Revoked));
    }

    #[test]
    fn replay_cache_holds_each_jti_until_expiry_plus_skew() {
        let mut h = harness();
        h.verify(&claims(1), NOW).unwrap();
        assert_eq!(
            h.verify(&claims(1), LAST_VALID),
            Err(Replayed),
            "held at its last valid instant"
        );

        // The next insertion after that purges it.
        h.verify(&claims_at(2, LAST_VALID, 60_000), LAST_VALID + 1)
            .unwrap();
        assert_eq!(h.gs.replay_cache_len(), 1);
        // A clock stepping back cannot revive the forgotten ticket.
        assert_eq!(h.verify(&claims(1), NOW), Err(Expired { ago_ms: 1 }));
    }

    #[test]
    fn consumed_jtis_kept_by_a_store_stay_single_use_across_a_restart() {
        let mut h = harness();
        assert_eq!(h.gs.poll_consumed(), None, "not recording: nothing queued");
        h.gs.record_consumed(true);
        h.verify(&claims(1), NOW).unwrap();
        assert_eq!(h.verify(&claims(1), NOW), Err(Replayed));
        let kept: Vec<_> = std::iter::from_fn(|| h.gs.poll_consumed()).collect();
        assert_eq!(kept, vec![([1; 16], LAST_VALID)], "one fact per accepted ticket");

        // A new process: without the store the ticket would pass again; with it, it is a replay
        // until its deadline.
        let mut restarted = harness();
        restarted.gs.restore_consumed(kept.clone());
        assert_eq!(restarted.verify(&claims(1), NOW + 1), Err(Replayed));
        let mut forgetful = harness();
        assert!(forgetful.verify(&claims(1), NOW + 1).is_ok());

        // Restoring more than the cache holds keeps the latest deadlines.
        let mut small = harness_with(|config| config.replay_cache_capacity = 1);
        small
            .gs
            .restore_consumed([([2; 16], NOW + 5), ([3; 16], LAST_VALID)]);
        assert_eq!(small.gs.replay_cache_len(), 1);
        assert_eq!(small.verify(&claims(3), NOW), Err(Replayed));
    }

    #[test]
    fn full_replay_cache_refuses_until_the_oldest_entry_expires() {
        let mut h = harness_with(|config| config.replay_cache_capacity = 2);
        h.verify(&claims_at(1, NOW, 20_000), NOW).unwrap(); // held until NOW + 50 s
        h.verify(&claims_at(2, NOW, 10_000), NOW).unwrap(); // held until NOW + 40 s

        let third = claims(3);
        let full = |retry_after_ms| Err(ReplayCacheFull { retry_after_ms });
        assert_eq!(h.verify(&third, NOW + 1_000), full(39_001));
        assert_eq!(h.verify(&third, NOW + 40_000), full(1));
        assert_eq!(h.verify(&third, NOW + 40_001), Ok(third));
        assert_eq!(h.gs.replay_cache_len(), 2);
        // The unexpired first entry was never evicted.
        assert_eq!(h.verify(&claims_at(1, NOW, 20_000), NOW + 40_001), Err(Replayed));
        let stats = TicketStats {
            accepted: 3,
            rejected: 3,
            replay_cache_full: 2,
        };
        assert_eq!(h.gs.stats(), stats);
    }

    #[test]
    fn check_live_ends_expired_and_revoked_sessions() {
        let mut h = harness();
        let [s1, s2, s3, s4] = [1, 2, 3, 4].map(|n| h.verify(&claims(n), NOW).unwrap());
        let gs = &mut h.gs;
        assert_eq!(gs.check_live(1, &s1, LAST_VALID), Ok(()));
        assert_eq!(gs.check_live(1, &s1, LAST_VALID + 1), Err(Expired { ago_ms: 1 }));

        gs.revoke_jti(s2.jti, s2.expires_at_ms).unwrap();
        assert_eq!(gs.check_live(1, &s2, NOW), Err(Revoked));
        assert_eq!(gs.check_live(1, &s3, NOW), Ok(()));
        gs.revoke_client(s3.client_id).unwrap();
        assert_eq!(gs.check_live(1, &s3, NOW), Err(Revoked));

        // Rotating a key out keeps its sessions; revoking it ends them.
        gs.remove_key(1);
        assert_eq!(gs.check_live(1, &s4, NOW), Ok(()));
        gs.revoke_key(1).unwrap();
        assert_eq!(gs.check_live(1, &s4, NOW), Err(Revoked));
        assert_eq!(gs.check_live(2, &s4, NOW), Ok(()));
    }

    #[test]
    fn revocation_lists_are_bounded() {
        let mut h = harness_with(|config| {
            config.max_revoked_jtis = 1;
            config.max_revoked_clients = 1;
            config.max_revoked_keys = 1;
        });
        let full = Err(RevokeError::Full { capacity: 1 });
        h.gs.revoke_client(1).unwrap();
        h.gs.revoke_client(1).unwrap();
        assert_eq!(h.gs.revoke_client(2), full);
        h.gs.revoke_key(9).unwrap();
        assert_eq!(h.gs.revoke_key(10), full);

        h.gs.revoke_jti([1; 16], NOW + 60_000).unwrap();
        assert_eq!(h.gs.revoke_jti([2; 16], NOW + 60_000), full);
        // Once the revoked ticket could no longer verify anyway, its slot is free again.
        h.verify(&claims_at(3, LAST_VALID, 60_000), LAST_VALID + 1)
            .unwrap();
        h.gs.revoke_jti([2; 16], NOW + 200_000).unwrap();
    }

    #[test]
    fn encoding_is_compact_with_a_raw_signature() {
        let worst = JoinTicketClaims {
            client_id: u64::MAX,
            gs_id: u64::MAX,
            jti: [0xFF; 16],
            issued_at_ms: u64::MAX,
            not_before_ms: u64::MAX,
            expires_at_ms: u64::MAX,
            permissions: u32::MAX,
            client_key: [0xFF; 32],
        };
        let ticket = TicketIssuer::new(u32::MAX, SigningKey::from_bytes(&[3; 32])).issue(&worst);
        assert_eq!(ticket.claims.len(), 103);
        let bytes = ticket.to_bytes();
        assert_eq!(bytes.len(), 173);
        assert_eq!(bytes[bytes.len() - 64..], ticket.signature);
        assert_eq!(JoinTicket::from_bytes(&bytes), Ok(ticket.clone()));
        assert_eq!(ticket.claims(), Ok(worst));

        let json = serde_json::to_string(&ticket).unwrap();
        assert_eq!(serde_json::from_str::<JoinTicket>(&json).unwrap(), ticket);
    }

    #[test]
    fn decoding_rejects_oversized_truncated_and_trailing_input() {
        let too_large = TicketDecodeError::TooLarge {
            len: 513,
            max: MAX_JOIN_TICKET_BYTES,
        };
        assert_eq!(JoinTicket::from_bytes(&[0; 513]), Err(too_large));
        let bytes = harness().issuer.issue(&claims(1)).to_bytes();
        let mut trailing = bytes.clone();
        trailing.push(0);
        // The last case announces 511 bytes of claims but carries none.
        for bad in [&bytes[..bytes.len() - 1], &trailing, &[1, 0xFF, 0x03]] {
            assert_eq!(JoinTicket::from_bytes(bad), Err(TicketDecodeError::Malformed));
        }
    }

    #[test]
    fn config_validates_and_reads_partial_toml() {
        assert_eq!(TicketConfig::default().validate(), Ok(()));
        let config: TicketConfig = toml::from_str("max_skew_ms = 10000").unwrap();
        assert_eq!((config.max_skew_ms, config.max_lifetime_ms), (10_000, 300_000));
        assert!(toml::from_str::<TicketConfig>("join_max_skew_ms = 1").is_err());
        let mut config = TicketConfig {
            max_lifetime_ms: 0,
            ..TicketConfig::default()
        };
        assert_eq!(config.validate(), Err(TicketConfigError::ZeroLifetime));
        config.replay_cache_capacity = 0;
        assert_eq!(config.validate(), Err(TicketConfigError::NoReplayCapacity));
    }

    #[test]
    fn validate_refuses_each_bad_value_naming_its_field() {
        use TicketConfigError as E;
        for skew in [0, 30_000, MAX_CLOCK_SKEW_MS] {
            let config = TicketConfig {
                max_skew_ms: skew,
                ..TicketConfig::default()
            };
            assert_eq!(config.validate(), Ok(()), "skew {skew}");
        }
        assert!(E::SkewTooLarge
            .to_string()
            .contains(&MAX_CLOCK_SKEW_MS.to_string()));
        type Edit = fn(&mut TicketConfig);
        let cases: [(Edit, E, &str); 7] = [
            (
                |c| c.max_skew_ms = MAX_CLOCK_SKEW_MS + 1,
                E::SkewTooLarge,
                "max_skew_ms",
            ),
            (|c| c.max_skew_ms = u64::MAX, E::SkewTooLarge, "max_skew_ms"),
            (
                |c| c.replay_cache_capacity = 0,
                E::NoReplayCapacity,
                "replay_cache_capacity",
            ),
            (|c| c.max_lifetime_ms = 0, E::ZeroLifetime, "max_lifetime_ms"),
            (
                |c| c.max_revoked_jtis = 0,
                E::NoRevocationCapacity {
                    field: "max_revoked_jtis",
                },
                "max_revoked_jtis",
            ),
            (
                |c| c.max_revoked_clients = 0,
                E::NoRevocationCapacity {
                    field: "max_revoked_clients",
                },
                "max_revoked_clients",
            ),
            (
                |c| c.max_revoked_keys = 0,
                E::NoRevocationCapacity {
                    field: "max_revoked_keys",
                },
                "max_revoked_keys",
            ),
        ];
        crate::config::assert_each_refused(&cases, TicketConfig::validate);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_or_verify(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600)
        ) {
            if let Ok(ticket) = JoinTicket::from_bytes(&bytes) {
                proptest::prop_assert!(harness().ticket(&ticket, NOW).is_err());
            }
        }
    }
}
