//! The verification server's side of the VS protocol: [`Verifier`].

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ed25519_dalek::SigningKey;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;
use serde::{Deserialize, Serialize};
use serde_with::hex::Hex;
use serde_with::serde_as;

use crate::attest::{
    measurement_pcr_digest, quote_extra_data, verify_ak, verify_quote, Attest, AttestError, ExpectedQuote,
    PcrSelection, VerifiedAk, MEASUREMENT_PCR,
};
use crate::clock::WallClock;
use crate::config::ConfigError;
use crate::endpoint::Endpoint;
use crate::secrets::Secrets;
use crate::shared::{ConnHandle, Event};
use crate::ticket::{JoinTicket, JoinTicketClaims, TicketIssuer};
use crate::wire::{ReasonCode, Role};

use super::durable::{VerifierState, VsFact};
use super::message::{JoinRequest, Revocation, VsMessage};
use super::{VS_CHANNEL, VS_NONCE_LEN};
use crate::ticket::{PlayTicket, PlayTicketClaims, ProtectedReceipt, ReceiptClaims, VsKeys};
use crate::transcript::TranscriptDigest;

/// An allowed software measurement: the binary and configuration hashes a game server extends
/// into PCR 23, in that order.
#[serde_as]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Measurement {
    /// SHA-256 of the binary, 64 hex digits in config files.
    #[serde_as(as = "Hex")]
    pub binary_sha256: [u8; 32],
    /// SHA-256 of the configuration, 64 hex digits in config files.
    #[serde_as(as = "Hex")]
    pub config_sha256: [u8; 32],
}

/// A game server the VS knows: its id and, when pinned, its identity key and AK.
#[serde_as]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Enrolment {
    /// The game server's id.
    pub gs_id: u64,
    /// Its Ed25519 identity key, 64 hex digits; `None` (absent) = any key (the quote still
    /// binds it).
    #[serde_as(as = "Option<Hex>")]
    pub identity_key: Option<[u8; 32]>,
    /// Its AK's marshalled `TPMT_PUBLIC`, hex; `None` (absent) = any AK that passes the checks
    /// (an AK created afresh at every start, as `HardwareTpm` does, cannot be pinned).
    #[serde_as(as = "Option<Hex>")]
    pub ak_public: Option<Vec<u8>>,
}

/// Verification-server settings. Defaults in `PROTOCOL.md` §8.11.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VsConfig {
    /// Key id of the VS signing key (announced in every ticket and receipt). Default 1.
    pub key_id: u32,
    /// Play-ticket renewal period, in milliseconds. Default 2 000.
    pub ticket_interval_ms: u64,
    /// Play-ticket lifetime (`expires_at_ms − issued_at_ms`), in milliseconds. Default 6 000:
    /// three renewals may be lost before a game server pauses admissions.
    pub ticket_lifetime_ms: u64,
    /// A game server silent for this long is revoked: no more tickets, session closed with
    /// `HEARTBEAT_TIMEOUT`. Default 30 000.
    pub heartbeat_timeout_ms: u64,
    /// Largest accepted difference between a join request's timestamp and the VS clock, in
    /// milliseconds. Default 30 000 (cross-region drift).
    pub join_max_skew_ms: u64,
    /// Time from the challenge to a join request, in milliseconds; then the session is closed
    /// with `HANDSHAKE_TIMEOUT`. Default 10 000.
    pub join_timeout_ms: u64,
    /// The allowed software measurements. A join whose quote shows any other PCR 23 value is
    /// refused with `MEASUREMENT_MISMATCH`.
    pub measurements: Vec<Measurement>,
    /// Enrolled game servers.
    pub game_servers: Vec<Enrolment>,
    /// Accept game servers that are not enrolled (identity and AK are then bound by the quote
    /// alone). Default false.
    pub allow_unenrolled: bool,
    /// Receipts remembered per game server (across its sessions) for idempotent retries: a
    /// digest resent with the same sequence and content gets the same receipt. Default 1 024.
    pub receipt_cache: usize,
    /// Lifetime of join tickets issued by [`Verifier::issue_join_ticket`], in milliseconds.
    /// Default 60 000.
    pub join_ticket_lifetime_ms: u64,
    /// Revocations ([`Verifier::revoke`]) remembered at most: the VS pushes each to every game
    /// server joined when it is issued, and the whole list to every game server right after
    /// each `Accepted` (a game server that was away, restarted, or lost the push with a failing
    /// session catches up; applying a revocation twice changes nothing). `Jti` revocations
    /// leave the list once they lapse; when it is full the oldest is dropped and counted
    /// ([`Verifier::revocations_dropped`], [`VsEvent::RevocationDropped`]). About 32 bytes
    /// each. Default 1 024.
    pub max_revocations: usize,
}

impl Default for VsConfig {
    fn default() -> Self {
        Self {
            key_id: 1,
            ticket_interval_ms: 2_000,
            ticket_lifetime_ms: 6_000,
            heartbeat_timeout_ms: 30_000,
            join_max_skew_ms: 30_000,
            join_timeout_ms: 10_000,
            measurements: Vec::new(),
            game_servers: Vec::new(),
            allow_unenrolled: false,
            receipt_cache: 1_024,
            join_ticket_lifetime_ms: 60_000,
            max_revocations: 1_024,
        }
    }
}

impl VsConfig {
    /// Checks ranges: intervals and timeouts positive, a ticket living at least one renewal
    /// interval (else every game server pauses between tickets), room for at least one receipt
    /// and one revocation (with 0, retried digests would get fresh receipts and every
    /// revocation would be dropped at once), `join_max_skew_ms` at most one hour
    /// ([`MAX_CLOCK_SKEW_MS`](crate::ticket::MAX_CLOCK_SKEW_MS)), enrolments unique. Never
    /// panics, whatever the values.
    ///
    /// # Errors
    /// [`ConfigError`] naming the first problem by its field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |what: String| Err(ConfigError(what));
        for (name, value) in [
            ("ticket_interval_ms", self.ticket_interval_ms),
            ("heartbeat_timeout_ms", self.heartbeat_timeout_ms),
            ("join_timeout_ms", self.join_timeout_ms),
            ("join_ticket_lifetime_ms", self.join_ticket_lifetime_ms),
            ("receipt_cache", self.receipt_cache as u64),
            ("max_revocations", self.max_revocations as u64),
        ] {
            if value == 0 {
                return fail(format!("{name} must be > 0"));
            }
        }
        let max_skew_ms = crate::ticket::MAX_CLOCK_SKEW_MS;
        if self.join_max_skew_ms > max_skew_ms {
            return fail(format!(
                "join_max_skew_ms must be at most {max_skew_ms} (one hour)"
            ));
        }
        if self.ticket_lifetime_ms < self.ticket_interval_ms {
            return fail(format!(
                "ticket_lifetime_ms ({}) must be at least ticket_interval_ms ({})",
                self.ticket_lifetime_ms, self.ticket_interval_ms
            ));
        }
        let mut ids = BTreeSet::new();
        if let Some(dup) = self.game_servers.iter().find(|e| !ids.insert(e.gs_id)) {
            return fail(format!("game server {} is enrolled twice", dup.gs_id));
        }
        Ok(())
    }
}

/// Something the VS application may want to log or act on.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum VsEvent {
    /// A game server attested and got its first ticket.
    Joined {
        /// Its id.
        gs_id: u64,
        /// Its session.
        conn: ConnHandle,
    },
    /// A join was refused.
    JoinRejected {
        /// The session (closed).
        conn: ConnHandle,
        /// Why.
        reason: ReasonCode,
        /// Detail sent to the game server.
        detail: String,
    },
    /// A game server passed a re-attestation.
    Reattested {
        /// Its id.
        gs_id: u64,
    },
    /// A game server lost its authorisation (heartbeat timeout, failed re-attestation,
    /// revocation, or its session ended).
    Deauthorised {
        /// Its id.
        gs_id: u64,
        /// Why.
        reason: ReasonCode,
    },
    /// A transcript digest was receipted.
    Receipted {
        /// The game server.
        gs_id: u64,
        /// The digest.
        digest: TranscriptDigest,
    },
    /// The revocation list was full (`max_revocations`): its oldest entry was dropped, and
    /// game servers joining from now on will not learn of it.
    RevocationDropped {
        /// The revocation dropped.
        revocation: Revocation,
    },
}

/// What the VS knows about an authorised game server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GsInfo {
    /// Its session.
    pub conn: ConnHandle,
    /// Play tickets issued in this session.
    pub tickets_issued: u64,
    /// Re-attestations passed in this session.
    pub reattestations: u64,
    /// Last heartbeat's reported client sessions.
    pub sessions: u32,
}

#[derive(Debug)]
enum Phase {
    Challenged {
        nonce: [u8; VS_NONCE_LEN],
        deadline: Instant,
    },
    Joined(Box<Joined>),
}

#[derive(Debug)]
struct Joined {
    gs_id: u64,
    ak: VerifiedAk,
    measurement: [u8; 32],
    sequence: u64,
    next_ticket: Instant,
    last_heard: Instant,
    /// Nonces sent for re-attestation and not yet used, oldest first.
    nonces: heapless::Vec<[u8; VS_NONCE_LEN], OUTSTANDING_NONCES>,
    info: GsInfo,
}

#[derive(Debug)]
struct GsConn {
    gs_key: [u8; 32],
    phase: Phase,
}

/// Nonces remembered per game server to recognise replayed quotes (a store of
/// [`VsFact::Nonce`]s needs keep no more).
pub const NONCE_HISTORY: usize = 64;
/// Game servers whose nonce history or receipt cache is kept at most (each map separately);
/// beyond it the one written least recently is forgotten.
const MAX_HISTORY_GAME_SERVERS: usize = 65_536;
/// Outstanding re-attestation nonces per game server.
const OUTSTANDING_NONCES: usize = 4;

/// Appends `nonce`, forgetting the oldest when all [`OUTSTANDING_NONCES`] are taken.
fn push_newest(
    nonces: &mut heapless::Vec<[u8; VS_NONCE_LEN], OUTSTANDING_NONCES>,
    nonce: [u8; VS_NONCE_LEN],
) {
    if nonces.is_full() {
        nonces.remove(0);
    }
    let _ = nonces.push(nonce); // room was made above
}

/// The verification server: see the [module docs](super).
///
/// Run it beside a server [`Endpoint`] configured with `accept_game_servers = true`: offer every
/// endpoint event to [`handle_endpoint_event`](Self::handle_endpoint_event), call
/// [`handle_timeout`](Self::handle_timeout) at [`poll_timeout`](Self::poll_timeout), drain
/// [`poll_event`](Self::poll_event). It sends and closes through the endpoint itself.
#[derive(Debug)]
pub struct Verifier {
    config: VsConfig,
    key: SigningKey,
    issuer: TicketIssuer,
    wall: WallClock,
    rng: ChaCha12Rng,
    selection: PcrSelection,
    allowed_digests: Vec<[u8; 32]>,
    conns: BTreeMap<ConnHandle, GsConn>,
    by_gs: BTreeMap<u64, ConnHandle>,
    /// Nonces each game server was challenged with or sent and then quoted, newest last.
    nonce_history: RecencyMap<VecDeque<[u8; VS_NONCE_LEN]>>,
    revoked: BTreeSet<u64>,
    /// Receipts by game server and digest sequence, across sessions, for idempotent retries.
    receipts: RecencyMap<BTreeMap<u64, (TranscriptDigest, ProtectedReceipt)>>,
    /// Revocations in force, oldest first: pushed to every game server at each `Accepted`.
    revocations: VecDeque<Revocation>,
    facts: Facts,
    counters: VerifierStats,
    events: VecDeque<VsEvent>,
}

/// Durable facts queued for the runtime (only while recording).
#[derive(Debug, Default)]
struct Facts {
    recording: bool,
    queue: VecDeque<VsFact>,
}

/// Facts queued at most: a runtime that records them drains every turn, which holds a few.
const MAX_QUEUED_FACTS: usize = 65_536;

impl Facts {
    fn push(&mut self, fact: VsFact, counters: &mut VerifierStats) {
        if !self.recording {
            return;
        }
        if self.queue.len() >= MAX_QUEUED_FACTS {
            // The runtime is not draining: the oldest promise cannot be kept durable.
            self.queue.pop_front();
            counters.facts_dropped += 1;
        }
        self.queue.push_back(fact);
    }
}

/// A snapshot of a [`Verifier`]'s counters (since it was created) and gauges.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VerifierStats {
    /// Game servers authorised now. A gauge.
    pub game_servers_authorised: usize,
    /// Joins that passed attestation.
    pub joins_accepted: u64,
    /// Joins refused, by reason.
    pub joins_rejected: BTreeMap<ReasonCode, u64>,
    /// Re-attestations passed.
    pub reattestations: u64,
    /// Failed attestations (joins refused and failed re-attestations), by reason.
    pub attestation_failures: BTreeMap<ReasonCode, u64>,
    /// Authorisations withdrawn (heartbeat timeout, failed re-attestation, revocation, session
    /// end), by reason.
    pub deauthorisations: BTreeMap<ReasonCode, u64>,
    /// Play tickets signed.
    pub play_tickets_issued: u64,
    /// Join tickets signed ([`Verifier::issue_join_ticket`]).
    pub join_tickets_issued: u64,
    /// Receipts signed (a retried digest answered from the cache is not counted again).
    pub receipts_signed: u64,
    /// Revocations in force now. A gauge.
    pub revocations_in_force: usize,
    /// Revocations dropped because the list was full.
    pub revocations_dropped: u64,
    /// Durable facts dropped because the runtime did not drain
    /// [`Verifier::poll_fact`] (65 536 queued); should stay 0.
    pub facts_dropped: u64,
}

impl Verifier {
    /// A verifier signing with `key` (its public half goes to game servers and clients as the
    /// trusted VS key under `config.key_id`); challenge nonces and `jti`s come from `secrets`.
    pub fn new(config: VsConfig, secrets: Secrets, key: SigningKey, wall: WallClock) -> Self {
        let rng = ChaCha12Rng::from_seed(secrets.derive("vs/verifier"));
        let allowed_digests = config
            .measurements
            .iter()
            .map(|m| measurement_pcr_digest(m.binary_sha256, m.config_sha256))
            .collect();
        let selection = PcrSelection::sha256(&[MEASUREMENT_PCR]).expect("PCR 23 exists");
        let issuer = TicketIssuer::new(config.key_id, key.clone());
        Self {
            config,
            key,
            issuer,
            wall,
            rng,
            selection,
            allowed_digests,
            conns: BTreeMap::new(),
            by_gs: BTreeMap::new(),
            nonce_history: RecencyMap::new(MAX_HISTORY_GAME_SERVERS),
            revoked: BTreeSet::new(),
            receipts: RecencyMap::new(MAX_HISTORY_GAME_SERVERS),
            revocations: VecDeque::new(),
            facts: Facts::default(),
            counters: VerifierStats::default(),
            events: VecDeque::new(),
        }
    }

    /// The settings in force.
    pub fn config(&self) -> &VsConfig {
        &self.config
    }

    /// The keys game servers and clients must trust for this VS's tickets and receipts.
    pub fn keys(&self) -> VsKeys {
        VsKeys::single(self.config.key_id, self.key.verifying_key())
    }

    /// The authorised game server `gs_id`, if any.
    pub fn game_server(&self, gs_id: u64) -> Option<&GsInfo> {
        let conn = self.by_gs.get(&gs_id)?;
        match &self.conns.get(conn)?.phase {
            Phase::Joined(joined) => Some(&joined.info),
            Phase::Challenged { .. } => None,
        }
    }

    /// The ids of the game servers authorised now, ascending.
    pub fn authorised_game_servers(&self) -> impl Iterator<Item = u64> + '_ {
        self.by_gs
            .keys()
            .copied()
            .filter(|gs_id| self.game_server(*gs_id).is_some())
    }

    /// The game servers revoked for good ([`Verifier::revoke_game_server`]), ascending.
    pub fn revoked_game_servers(&self) -> impl Iterator<Item = u64> + '_ {
        self.revoked.iter().copied()
    }

    /// The receipts kept for `gs_id` (the newest `receipt_cache`), by digest sequence.
    pub fn receipts_of(
        &self,
        gs_id: u64,
    ) -> impl Iterator<Item = &(TranscriptDigest, ProtectedReceipt)> + '_ {
        self.receipts
            .get(gs_id)
            .into_iter()
            .flat_map(|receipts| receipts.values())
    }

    /// Output: the next event.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<VsEvent> {
        self.events.pop_front()
    }

    /// Command: a join ticket for `client_id` with identity `client_key` to play on `gs_id`,
    /// valid from now for `join_ticket_lifetime_ms`.
    pub fn issue_join_ticket(
        &mut self,
        now: Instant,
        client_id: u64,
        client_key: [u8; 32],
        gs_id: u64,
        permissions: u32,
    ) -> JoinTicket {
        let mut jti = [0u8; 16];
        self.rng.fill_bytes(&mut jti);
        let claims = JoinTicketClaims::builder(client_key, jti)
            .client_id(client_id)
            .audience(gs_id)
            .valid_from(self.wall.unix_ms_at(now))
            .lifetime_ms(self.config.join_ticket_lifetime_ms)
            .permissions(permissions)
            .build();
        self.counters.join_tickets_issued += 1;
        self.issuer.issue(&claims)
    }

    /// Command: pushes `revocation` to every authorised game server, which applies it to
    /// admissions and live sessions, and adds it to the list every game server receives right
    /// after each `Accepted` (see [`VsConfig::max_revocations`]).
    pub fn revoke(&mut self, ep: &mut Endpoint, now: Instant, revocation: Revocation) {
        let message = VsMessage::Revoke(revocation);
        let joined: Vec<ConnHandle> = self
            .conns
            .iter()
            .filter(|(_, c)| matches!(c.phase, Phase::Joined(_)))
            .map(|(h, _)| *h)
            .collect();
        for conn in joined {
            send(ep, now, conn, &message);
        }
        self.prune_revocations(now);
        while !self.revocations.is_empty() && self.revocations.len() >= self.config.max_revocations {
            if let Some(oldest) = self.revocations.pop_front() {
                self.revocation_dropped(oldest);
            }
        }
        if self.config.max_revocations > 0 {
            self.facts.push(VsFact::Revoked(revocation), &mut self.counters);
            self.revocations.push_back(revocation);
        } else {
            self.revocation_dropped(revocation);
        }
    }

    /// Forgets `Jti` revocations that no longer matter: the VS clock is past `until_unix_ms`
    /// plus twice `join_max_skew_ms` (the game server's ticket skew, by default equal to it,
    /// plus the clock difference the VS tolerates).
    fn prune_revocations(&mut self, now: Instant) {
        let unix_ms = self.wall.unix_ms_at(now);
        let skew = self.config.join_max_skew_ms;
        self.revocations.retain(|r| !revocation_lapsed(r, unix_ms, skew));
    }

    /// Revocations dropped because the list was full.
    pub fn revocations_dropped(&self) -> u64 {
        self.counters.revocations_dropped
    }

    /// A snapshot of the verifier's counters and gauges.
    pub fn stats(&self) -> VerifierStats {
        VerifierStats {
            game_servers_authorised: self.by_gs.len(),
            revocations_in_force: self.revocations.len(),
            ..self.counters.clone()
        }
    }

    /// Queues `event`, counting it.
    fn emit(&mut self, event: VsEvent) {
        let c = &mut self.counters;
        match &event {
            VsEvent::Joined { .. } => c.joins_accepted += 1,
            VsEvent::JoinRejected { reason, .. } => {
                *c.joins_rejected.entry(*reason).or_default() += 1;
                *c.attestation_failures.entry(*reason).or_default() += 1;
            }
            VsEvent::Reattested { .. } => c.reattestations += 1,
            VsEvent::Deauthorised { reason, .. } => *c.deauthorisations.entry(*reason).or_default() += 1,
            VsEvent::Receipted { .. } => c.receipts_signed += 1,
            VsEvent::RevocationDropped { .. } => c.revocations_dropped += 1,
        }
        self.events.push_back(event);
    }

    /// The revocations in force (sent to every game server at each `Accepted`), oldest first.
    pub fn revocations(&self) -> impl Iterator<Item = &Revocation> + '_ {
        self.revocations.iter()
    }

    /// Command: with `on`, queue every durable fact from now on for
    /// [`poll_fact`](Self::poll_fact) (see [`VsFact`]); off (the default), nothing is queued
    /// and the verifier's promises last as long as the process.
    pub fn record_facts(&mut self, on: bool) {
        self.facts.recording = on;
        if !on {
            self.facts.queue.clear();
        }
    }

    /// Output: the next durable fact. Drain and make them durable before flushing the
    /// endpoint (write-ahead): the messages that carry them are queued there.
    #[must_use]
    pub fn poll_fact(&mut self) -> Option<VsFact> {
        self.facts.queue.pop_front()
    }

    /// Command, before the first event: restores what a store kept — revocations in force
    /// (beyond `max_revocations`, the oldest are dropped), game servers revoked for good,
    /// challenge nonces (a quote over one is `QUOTE_REPLAYED`), receipts (a retried digest
    /// gets the same bytes). Restoring queues no facts.
    pub fn restore(&mut self, state: VerifierState) {
        let VerifierState {
            revocations,
            revoked_game_servers,
            nonces,
            receipts,
        } = state;
        for revocation in revocations {
            if self.revocations.contains(&revocation) {
                continue;
            }
            if self.revocations.len() >= self.config.max_revocations {
                if self.config.max_revocations == 0 {
                    break;
                }
                self.revocations.pop_front();
            }
            self.revocations.push_back(revocation);
        }
        self.revoked.extend(revoked_game_servers);
        let mut discard = Facts::default();
        for (gs_id, nonce) in nonces {
            remember_nonce(
                &mut self.nonce_history,
                &mut discard,
                &mut self.counters,
                gs_id,
                nonce,
            );
        }
        for (gs_id, digest, receipt) in receipts {
            let cache = self.receipts.touch(gs_id, BTreeMap::new).0;
            cache.insert(digest.sequence, (digest, receipt));
            while cache.len() > self.config.receipt_cache {
                cache.pop_first();
            }
        }
    }

    /// Command: applies `fact`, learned from another instance of this verification server
    /// sharing its store, as if it were this one's own promise: a revocation is pushed to the
    /// game servers joined here and sent at their later joins; a game server revoked for good
    /// loses its session here (`GS_REVOKED`); a nonce makes a quote over it a replay here; a
    /// receipt answers a retry of its digest here with the same bytes. Queues no fact.
    pub fn import(&mut self, ep: &mut Endpoint, now: Instant, fact: VsFact) {
        let recording = std::mem::replace(&mut self.facts.recording, false);
        match fact {
            VsFact::Revoked(revocation) => {
                if !self.revocations.contains(&revocation) {
                    self.revoke(ep, now, revocation);
                }
            }
            VsFact::GameServerRevoked { gs_id } => self.revoke_game_server(ep, now, gs_id),
            VsFact::Nonce { gs_id, nonce } => {
                remember_nonce(
                    &mut self.nonce_history,
                    &mut self.facts,
                    &mut self.counters,
                    gs_id,
                    nonce,
                );
            }
            VsFact::Receipt {
                gs_id,
                digest,
                receipt,
            } => {
                let cache = self.receipts.touch(gs_id, BTreeMap::new).0;
                cache.entry(digest.sequence).or_insert((digest, receipt));
                while cache.len() > self.config.receipt_cache {
                    cache.pop_first();
                }
            }
        }
        self.facts.recording = recording;
    }

    /// Command: replaces the wall-clock anchor (after the system clock was stepped); join
    /// timestamps, tickets and receipts use the new anchor from now on.
    pub fn set_wall_clock(&mut self, wall: WallClock) {
        self.wall = wall;
    }

    fn revocation_dropped(&mut self, revocation: Revocation) {
        self.emit(VsEvent::RevocationDropped { revocation });
    }

    /// A joined session of `gs_id` on `conn` ended: if it was the game server's current one,
    /// it is no longer authorised.
    fn session_ended(&mut self, conn: ConnHandle, gs_id: u64) {
        if self.by_gs.get(&gs_id) == Some(&conn) {
            self.by_gs.remove(&gs_id);
        }
    }

    /// Command: withdraws `gs_id`'s authorisation for good: no more tickets, its session closed
    /// with `GS_REVOKED`, later joins refused.
    pub fn revoke_game_server(&mut self, ep: &mut Endpoint, now: Instant, gs_id: u64) {
        if self.revoked.insert(gs_id) {
            self.facts
                .push(VsFact::GameServerRevoked { gs_id }, &mut self.counters);
        }
        if let Some(conn) = self.by_gs.get(&gs_id).copied() {
            self.deauthorise(ep, now, conn, ReasonCode::GS_REVOKED, "revoked by the operator");
        }
    }

    /// Output: the next instant [`handle_timeout`](Self::handle_timeout) must run.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let heartbeat = Duration::from_millis(self.config.heartbeat_timeout_ms);
        self.conns
            .values()
            .flat_map(|c| match &c.phase {
                Phase::Challenged { deadline, .. } => [Some(*deadline), None],
                Phase::Joined(j) => [Some(j.next_ticket), Some(j.last_heard + heartbeat)],
            })
            .flatten()
            .min()
    }

    /// Input: time passed. Renews tickets that are due and revokes silent game servers.
    pub fn handle_timeout(&mut self, ep: &mut Endpoint, now: Instant) {
        let heartbeat = Duration::from_millis(self.config.heartbeat_timeout_ms);
        let interval = Duration::from_millis(self.config.ticket_interval_ms);
        let mut expired = Vec::new();
        let mut silent = Vec::new();
        let mut due = Vec::new();
        for (handle, conn) in &self.conns {
            match &conn.phase {
                Phase::Challenged { deadline, .. } if now >= *deadline => expired.push(*handle),
                Phase::Joined(j) if now >= j.last_heard + heartbeat => silent.push(*handle),
                Phase::Joined(j) if now >= j.next_ticket => due.push(*handle),
                _ => {}
            }
        }
        for handle in expired {
            self.conns.remove(&handle);
            ep.close(now, handle, ReasonCode::HANDSHAKE_TIMEOUT, "no join request");
        }
        for handle in silent {
            self.deauthorise(ep, now, handle, ReasonCode::HEARTBEAT_TIMEOUT, "no heartbeat");
        }
        for handle in due {
            let nonce = self.fresh_nonce();
            let Some(GsConn {
                gs_key,
                phase: Phase::Joined(joined),
            }) = self.conns.get_mut(&handle)
            else {
                continue;
            };
            joined.next_ticket = now + interval;
            let ticket = issue_ticket(&self.config, &self.key, &self.wall, now, *gs_key, joined);
            self.counters.play_tickets_issued += 1;
            remember_nonce(
                &mut self.nonce_history,
                &mut self.facts,
                &mut self.counters,
                joined.gs_id,
                nonce,
            );
            push_newest(&mut joined.nonces, nonce);
            send(
                ep,
                now,
                handle,
                &VsMessage::Ticket {
                    ticket,
                    next_nonce: nonce,
                },
            );
        }
    }

    /// Input: an endpoint event. Returns true if it concerned a game-server session
    /// (consumed).
    pub fn handle_endpoint_event(&mut self, ep: &mut Endpoint, now: Instant, event: &Event) -> bool {
        match event {
            Event::Connected { conn, session } if session.role == Role::GameServer => {
                let nonce = self.fresh_nonce();
                let deadline = now + Duration::from_millis(self.config.join_timeout_ms);
                self.conns.insert(
                    *conn,
                    GsConn {
                        gs_key: session.client_key,
                        phase: Phase::Challenged { nonce, deadline },
                    },
                );
                send(ep, now, *conn, &VsMessage::Challenge { nonce });
                true
            }
            Event::Message {
                conn,
                channel,
                payload,
            } if self.conns.contains_key(conn) => {
                if *channel != VS_CHANNEL {
                    ep.close(now, *conn, ReasonCode::PROTOCOL_VIOLATION, "unexpected channel");
                    return true;
                }
                match VsMessage::decode(payload) {
                    Ok(message) => self.handle_message(ep, now, *conn, message),
                    Err(err) => {
                        let detail = err.to_string();
                        self.deauthorise(ep, now, *conn, ReasonCode::PROTOCOL_VIOLATION, &detail);
                    }
                }
                true
            }
            Event::Disconnected { conn, reason, .. } | Event::Rejected { conn, reason, .. }
                if self.conns.contains_key(conn) =>
            {
                if let Some(GsConn {
                    phase: Phase::Joined(joined),
                    ..
                }) = self.conns.remove(conn)
                {
                    self.session_ended(*conn, joined.gs_id);
                    self.emit(VsEvent::Deauthorised {
                        gs_id: joined.gs_id,
                        reason: *reason,
                    });
                }
                true
            }
            _ => false,
        }
    }

    fn fresh_nonce(&mut self) -> [u8; VS_NONCE_LEN] {
        let mut nonce = [0u8; VS_NONCE_LEN];
        self.rng.fill_bytes(&mut nonce);
        nonce
    }

    fn handle_message(&mut self, ep: &mut Endpoint, now: Instant, conn: ConnHandle, message: VsMessage) {
        let joined = matches!(
            self.conns.get(&conn),
            Some(GsConn {
                phase: Phase::Joined(_),
                ..
            })
        );
        if !joined && !matches!(message, VsMessage::Join(_)) {
            return self.deauthorise(
                ep,
                now,
                conn,
                ReasonCode::PROTOCOL_VIOLATION,
                "message before join",
            );
        }
        match message {
            VsMessage::Join(request) => self.handle_join(ep, now, conn, request),
            VsMessage::Heartbeat {
                sessions,
                attestation,
                ..
            } => {
                let Some(GsConn {
                    gs_key,
                    phase: Phase::Joined(joined),
                }) = self.conns.get_mut(&conn)
                else {
                    return; // checked above
                };
                joined.last_heard = now;
                joined.info.sessions = sessions;
                let Some(attestation) = attestation else { return };
                let gs_id = joined.gs_id;
                let outstanding = joined.nonces.iter().position(|n| *n == attestation.nonce);
                let result = match outstanding {
                    None => Err((
                        ReasonCode::QUOTE_REPLAYED,
                        "re-attestation over a nonce not outstanding".to_owned(),
                    )),
                    Some(index) => {
                        joined.nonces.remove(index);
                        let extra = quote_extra_data(&attestation.nonce, gs_key, gs_id);
                        let expected = ExpectedQuote {
                            extra_data: &extra,
                            selection: &self.selection,
                            pcr_digests: std::slice::from_ref(&joined.measurement),
                        };
                        verify_quote(&joined.ak, &attestation.quote, &expected)
                            .map(|_| ())
                            .map_err(|e| (attest_reason(&e), format!("re-attestation: {e}")))
                    }
                };
                match result {
                    Ok(()) => {
                        joined.info.reattestations += 1;
                        self.emit(VsEvent::Reattested { gs_id });
                    }
                    Err((reason, detail)) => {
                        *self.counters.attestation_failures.entry(reason).or_default() += 1;
                        self.deauthorise(ep, now, conn, reason, &detail);
                    }
                }
            }
            VsMessage::Digest(digest) => {
                let Some(GsConn {
                    phase: Phase::Joined(joined),
                    ..
                }) = self.conns.get_mut(&conn)
                else {
                    return; // checked above
                };
                joined.last_heard = now;
                let gs_id = joined.gs_id;
                let cache = self.receipts.touch(gs_id, BTreeMap::new).0;
                let (receipt, fresh) = match cache.get(&digest.sequence) {
                    // A retry, possibly over a new session: the same receipt again.
                    Some((sent, receipt)) if *sent == digest => (receipt.clone(), false),
                    // New (or, after a game-server restart, a reused sequence with new content).
                    _ => {
                        let claims = ReceiptClaims {
                            gs_id: joined.gs_id,
                            session_id: digest.session_id,
                            sequence: digest.sequence,
                            tick: digest.tick,
                            digest: digest.digest,
                            received_at_ms: self.wall.unix_ms_at(now),
                        };
                        let receipt = ProtectedReceipt::issue(self.config.key_id, &self.key, &claims);
                        self.facts.push(
                            VsFact::Receipt {
                                gs_id,
                                digest: digest.clone(),
                                receipt: receipt.clone(),
                            },
                            &mut self.counters,
                        );
                        cache.insert(digest.sequence, (digest.clone(), receipt.clone()));
                        while cache.len() > self.config.receipt_cache {
                            cache.pop_first();
                        }
                        (receipt, true)
                    }
                };
                if fresh {
                    self.emit(VsEvent::Receipted {
                        gs_id,
                        digest: digest.clone(),
                    });
                }
                send(
                    ep,
                    now,
                    conn,
                    &VsMessage::Receipt {
                        sequence: digest.sequence,
                        receipt,
                    },
                );
            }
            _ => self.deauthorise(
                ep,
                now,
                conn,
                ReasonCode::PROTOCOL_VIOLATION,
                "unexpected message",
            ),
        }
    }

    fn handle_join(&mut self, ep: &mut Endpoint, now: Instant, conn: ConnHandle, request: JoinRequest) {
        let challenge = match self.conns.get(&conn) {
            Some(GsConn {
                phase: Phase::Challenged { nonce, .. },
                ..
            }) => Some(*nonce),
            _ => None,
        };
        let outcome = self.check_join(now, conn, &request);
        // The challenge was quoted (or claimed to be): remembered whether the join passed or
        // not, so that replaying this quote later is reported as a replay. Only for game
        // servers that get as far as the quote check (enrolled, or all if unenrolled ones are
        // allowed), so strangers cannot fill the history.
        let known =
            self.config.allow_unenrolled || self.config.game_servers.iter().any(|e| e.gs_id == request.gs_id);
        if let (Some(nonce), true) = (challenge, known) {
            remember_nonce(
                &mut self.nonce_history,
                &mut self.facts,
                &mut self.counters,
                request.gs_id,
                nonce,
            );
        }
        match outcome {
            Ok(ak) => self.admit(ep, now, conn, request, ak),
            Err((reason, detail)) => {
                self.emit(VsEvent::JoinRejected {
                    conn,
                    reason,
                    detail: detail.clone(),
                });
                self.deauthorise(ep, now, conn, reason, &detail);
            }
        }
    }

    /// The join checks, in order. See `PROTOCOL.md` §8.3.
    fn check_join(
        &self,
        now: Instant,
        conn: ConnHandle,
        request: &JoinRequest,
    ) -> Result<VerifiedAk, (ReasonCode, String)> {
        let Some(GsConn {
            gs_key,
            phase: Phase::Challenged { nonce, .. },
        }) = self.conns.get(&conn)
        else {
            return Err((ReasonCode::PROTOCOL_VIOLATION, "join out of order".into()));
        };
        if request.gs_key != *gs_key {
            return Err((
                ReasonCode::QUOTE_BINDING_MISMATCH,
                "join names another identity key than the handshake".into(),
            ));
        }
        let vs_ms = self.wall.unix_ms_at(now);
        let skew = vs_ms.abs_diff(request.timestamp_ms);
        if skew > self.config.join_max_skew_ms {
            return Err((
                ReasonCode::JOIN_CLOCK_SKEW,
                format!(
                    "clock differs by {skew} ms (allowed {} ms)",
                    self.config.join_max_skew_ms
                ),
            ));
        }
        if self.revoked.contains(&request.gs_id) {
            return Err((
                ReasonCode::GS_REVOKED,
                format!("game server {} is revoked", request.gs_id),
            ));
        }
        let enrolment = self.config.game_servers.iter().find(|e| e.gs_id == request.gs_id);
        match enrolment {
            None if !self.config.allow_unenrolled => {
                return Err((
                    ReasonCode::UNKNOWN_GAME_SERVER,
                    format!("game server {} is not enrolled", request.gs_id),
                ))
            }
            Some(e) if e.identity_key.is_some_and(|k| k != request.gs_key) => {
                return Err((
                    ReasonCode::UNKNOWN_GAME_SERVER,
                    "identity key differs from the enrolled one".into(),
                ))
            }
            _ => {}
        }
        let pinned = enrolment.and_then(|e| e.ak_public.as_ref());
        if pinned.is_some_and(|ak| *ak != request.ak_public.0) {
            return Err((
                ReasonCode::AK_REJECTED,
                "attestation key differs from the enrolled one".into(),
            ));
        }
        let ak = verify_ak(&request.ak_public).map_err(|e| (ReasonCode::AK_REJECTED, e.to_string()))?;
        let claimed = measurement_pcr_digest(request.software_hash, request.config_hash);
        if !self.allowed_digests.contains(&claimed) {
            return Err((
                ReasonCode::MEASUREMENT_MISMATCH,
                "software or configuration hash not allowed".into(),
            ));
        }
        let extra = quote_extra_data(nonce, &request.gs_key, request.gs_id);
        let expected = ExpectedQuote {
            extra_data: &extra,
            selection: &self.selection,
            pcr_digests: std::slice::from_ref(&claimed),
        };
        match verify_quote(&ak, &request.quote, &expected) {
            Ok(_) => Ok(ak),
            Err(AttestError::ExtraDataMismatch) => Err(self.classify_binding(request)),
            Err(e) => Err((attest_reason(&e), e.to_string())),
        }
    }

    /// A quote whose signature verified but whose `extraData` is not this challenge's: a
    /// replay if it binds a nonce this game server was sent before, else a quote made for
    /// another key, id or challenge.
    fn classify_binding(&self, request: &JoinRequest) -> (ReasonCode, String) {
        let quoted = Attest::parse(&request.quote.attest)
            .map(|a| a.extra_data)
            .unwrap_or_default();
        let replayed = self.nonce_history.get(request.gs_id).is_some_and(|history| {
            history
                .iter()
                .any(|old| quote_extra_data(old, &request.gs_key, request.gs_id)[..] == quoted[..])
        });
        if replayed {
            (
                ReasonCode::QUOTE_REPLAYED,
                "quote binds an earlier challenge".into(),
            )
        } else {
            (
                ReasonCode::QUOTE_BINDING_MISMATCH,
                "quote is not bound to this challenge, identity key and game server id".into(),
            )
        }
    }

    fn admit(
        &mut self,
        ep: &mut Endpoint,
        now: Instant,
        conn: ConnHandle,
        request: JoinRequest,
        ak: VerifiedAk,
    ) {
        if !self.conns.contains_key(&conn) {
            return;
        }
        let mut joined = Box::new(Joined {
            gs_id: request.gs_id,
            ak,
            measurement: measurement_pcr_digest(request.software_hash, request.config_hash),
            sequence: 0,
            next_ticket: now + Duration::from_millis(self.config.ticket_interval_ms),
            last_heard: now,
            nonces: heapless::Vec::new(),
            info: GsInfo {
                conn,
                tickets_issued: 0,
                reattestations: 0,
                sessions: 0,
            },
        });
        let ticket = issue_ticket(
            &self.config,
            &self.key,
            &self.wall,
            now,
            request.gs_key,
            &mut joined,
        );
        self.counters.play_tickets_issued += 1;
        let mut next_nonce = [0u8; VS_NONCE_LEN];
        self.rng.fill_bytes(&mut next_nonce);
        remember_nonce(
            &mut self.nonce_history,
            &mut self.facts,
            &mut self.counters,
            request.gs_id,
            next_nonce,
        );
        push_newest(&mut joined.nonces, next_nonce);
        let gs_conn = self.conns.get_mut(&conn).expect("looked up above");
        gs_conn.phase = Phase::Joined(joined);
        if let Some(old) = self.by_gs.insert(request.gs_id, conn) {
            if old != conn && self.conns.remove(&old).is_some() {
                ep.close(
                    now,
                    old,
                    ReasonCode::NORMAL,
                    "replaced by a newer session of this game server",
                );
            }
        }
        send(ep, now, conn, &VsMessage::Accepted { ticket, next_nonce });
        // Joined: revocations go to it directly from now on; first the whole list, so that a
        // game server that was away, restarted or lost a push catches up.
        self.prune_revocations(now);
        for revocation in &self.revocations {
            send(ep, now, conn, &VsMessage::Revoke(*revocation));
        }
        self.emit(VsEvent::Joined {
            gs_id: request.gs_id,
            conn,
        });
    }

    fn deauthorise(
        &mut self,
        ep: &mut Endpoint,
        now: Instant,
        conn: ConnHandle,
        reason: ReasonCode,
        detail: &str,
    ) {
        if let Some(GsConn {
            phase: Phase::Joined(joined),
            ..
        }) = self.conns.remove(&conn)
        {
            self.session_ended(conn, joined.gs_id);
            self.emit(VsEvent::Deauthorised {
                gs_id: joined.gs_id,
                reason,
            });
        }
        ep.close(now, conn, reason, detail);
    }
}

fn issue_ticket(
    config: &VsConfig,
    key: &SigningKey,
    wall: &WallClock,
    now: Instant,
    gs_key: [u8; 32],
    joined: &mut Joined,
) -> PlayTicket {
    joined.sequence += 1;
    joined.info.tickets_issued += 1;
    let issued_at_ms = wall.unix_ms_at(now);
    let claims = PlayTicketClaims {
        gs_id: joined.gs_id,
        gs_key,
        issued_at_ms,
        expires_at_ms: issued_at_ms.saturating_add(config.ticket_lifetime_ms),
        sequence: joined.sequence,
        measurement: joined.measurement,
    };
    PlayTicket::issue(config.key_id, key, &claims)
}

/// Adds `nonce` to `gs_id`'s history (its [`NONCE_HISTORY`] newest kept). When
/// [`MAX_HISTORY_GAME_SERVERS`] game servers have a history, the one whose newest nonce is
/// oldest is forgotten.
fn remember_nonce(
    history: &mut RecencyMap<VecDeque<[u8; VS_NONCE_LEN]>>,
    facts: &mut Facts,
    counters: &mut VerifierStats,
    gs_id: u64,
    nonce: [u8; VS_NONCE_LEN],
) {
    facts.push(VsFact::Nonce { gs_id, nonce }, counters);
    let entry = history.touch(gs_id, VecDeque::new).0;
    entry.push_back(nonce);
    if entry.len() > NONCE_HISTORY {
        entry.pop_front();
    }
}

/// Whether a queued revocation no longer matters at Unix time `unix_ms`: a `Jti` revocation
/// past its ticket's expiry plus twice `join_max_skew_ms` (a game server applies it up to its
/// own ticket skew after `until_unix_ms`, by default equal to `join_max_skew_ms`, on a clock
/// that may differ from ours by up to `join_max_skew_ms`). Client and key revocations are
/// permanent.
fn revocation_lapsed(revocation: &Revocation, unix_ms: u64, join_max_skew_ms: u64) -> bool {
    match revocation {
        Revocation::Jti { until_unix_ms, .. } => {
            unix_ms > until_unix_ms.saturating_add(join_max_skew_ms.saturating_mul(2))
        }
        Revocation::Client { .. } | Revocation::Key { .. } => false,
    }
}

/// A map from game-server id to `V` holding at most `capacity` keys. Keys are ordered by when
/// they were inserted, or last [`touch`](Self::touch)ed; inserting a new key into a full map
/// evicts the oldest (never the lowest id). Every operation is O(log n).
#[derive(Debug)]
struct RecencyMap<V> {
    capacity: usize,
    /// Key → (its stamp, value).
    entries: BTreeMap<u64, (u64, V)>,
    /// Stamp → key, oldest first.
    order: BTreeMap<u64, u64>,
    next_stamp: u64,
}

impl<V> RecencyMap<V> {
    fn new(capacity: usize) -> Self {
        Self {
            capacity,
            entries: BTreeMap::new(),
            order: BTreeMap::new(),
            next_stamp: 0,
        }
    }

    fn get(&self, key: u64) -> Option<&V> {
        self.entries.get(&key).map(|(_, v)| v)
    }

    fn stamp(&mut self) -> u64 {
        self.next_stamp += 1;
        self.next_stamp
    }

    /// Inserts `make()` under `key` as the newest entry unless `key` is present (then nothing
    /// changes). Returns the entry evicted to make room, if any.
    fn insert_if_absent(&mut self, key: u64, make: impl FnOnce() -> V) -> Option<(u64, V)> {
        if self.entries.contains_key(&key) {
            return None;
        }
        let evicted = if self.entries.len() >= self.capacity {
            self.order
                .pop_first()
                .and_then(|(_, old)| self.entries.remove(&old).map(|(_, v)| (old, v)))
        } else {
            None
        };
        let stamp = self.stamp();
        self.order.insert(stamp, key);
        self.entries.insert(key, (stamp, make()));
        evicted
    }

    /// `key`'s value (created with `make` if absent, evicting the oldest entry if full),
    /// which becomes the newest entry; and the entry evicted, if any.
    fn touch(&mut self, key: u64, make: impl FnOnce() -> V) -> (&mut V, Option<(u64, V)>) {
        let evicted = self.insert_if_absent(key, make);
        let stamp = self.stamp();
        let entry = self.entries.get_mut(&key).expect("inserted above");
        self.order.remove(&entry.0);
        self.order.insert(stamp, key);
        entry.0 = stamp;
        (&mut entry.1, evicted)
    }
}

fn send(ep: &mut Endpoint, now: Instant, conn: ConnHandle, message: &VsMessage) {
    // A failed send means the session is closing; its event follows.
    let _ = ep.send(now, conn, VS_CHANNEL, Bytes::from(message.encode()));
}

/// The reason code for a quote that failed verification.
fn attest_reason(error: &AttestError) -> ReasonCode {
    match error {
        AttestError::PcrDigestMismatch => ReasonCode::MEASUREMENT_MISMATCH,
        AttestError::ExtraDataMismatch => ReasonCode::QUOTE_BINDING_MISMATCH,
        _ => ReasonCode::QUOTE_INVALID,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enrolments_and_measurements_are_hex_in_config_files() {
        let pinned = Enrolment {
            gs_id: 7,
            identity_key: Some([0x0F; 32]),
            ak_public: Some(vec![0x00, 0xFF, 0x10]),
        };
        let text = toml::to_string(&pinned).unwrap();
        assert!(
            text.contains(&format!("identity_key = \"{}\"", "0f".repeat(32))),
            "{text}"
        );
        assert!(text.contains("ak_public = \"00ff10\""), "{text}");
        assert_eq!(toml::from_str::<Enrolment>(&text).unwrap(), pinned);
        let open: Enrolment = toml::from_str("gs_id = 7").unwrap();
        assert_eq!((open.identity_key, open.ak_public), (None, None));
        assert!(toml::from_str::<Enrolment>("gs_id = 7\nidentity_key = \"0f\"").is_err());
        assert!(toml::from_str::<Enrolment>("gs_id = 7\nak_public = \"0\"").is_err());

        let measurement = Measurement {
            binary_sha256: [1; 32],
            config_sha256: [2; 32],
        };
        let json = serde_json::to_string(&measurement).unwrap();
        assert_eq!(
            json,
            format!(
                r#"{{"binary_sha256":"{}","config_sha256":"{}"}}"#,
                "01".repeat(32),
                "02".repeat(32)
            )
        );
        assert_eq!(serde_json::from_str::<Measurement>(&json).unwrap(), measurement);
    }

    fn nonce(n: u8) -> [u8; VS_NONCE_LEN] {
        [n; VS_NONCE_LEN]
    }

    #[test]
    fn a_full_nonce_history_forgets_the_oldest_game_server_not_the_lowest_id() {
        let mut history = RecencyMap::new(3);
        for gs_id in [9, 5, 1] {
            remember_nonce(
                &mut history,
                &mut Facts::default(),
                &mut VerifierStats::default(),
                gs_id,
                nonce(gs_id as u8),
            );
        }
        // 9 is the oldest; a lowest-id policy would have dropped 1.
        remember_nonce(
            &mut history,
            &mut Facts::default(),
            &mut VerifierStats::default(),
            7,
            nonce(7),
        );
        assert_eq!(history.get(9), None);
        assert!([5, 1, 7].iter().all(|id| history.get(*id).is_some()));
        // A new nonce makes 5 the newest, so 1 goes next.
        remember_nonce(
            &mut history,
            &mut Facts::default(),
            &mut VerifierStats::default(),
            5,
            nonce(55),
        );
        remember_nonce(
            &mut history,
            &mut Facts::default(),
            &mut VerifierStats::default(),
            3,
            nonce(3),
        );
        assert_eq!(history.get(1), None);
        assert_eq!(
            history.get(5).map(|h| h.iter().copied().collect::<Vec<_>>()),
            Some(vec![nonce(5), nonce(55)])
        );
        assert_eq!(history.entries.len(), 3);
        assert_eq!(history.order.len(), 3);
    }

    #[test]
    fn a_game_server_keeps_its_newest_nonces_only() {
        let mut history = RecencyMap::new(MAX_HISTORY_GAME_SERVERS);
        for n in 0..=NONCE_HISTORY as u8 {
            remember_nonce(
                &mut history,
                &mut Facts::default(),
                &mut VerifierStats::default(),
                4,
                nonce(n),
            );
        }
        let kept = history.get(4).unwrap();
        assert_eq!(kept.len(), NONCE_HISTORY);
        assert_eq!(kept.front(), Some(&nonce(1)));
        assert_eq!(kept.back(), Some(&nonce(NONCE_HISTORY as u8)));
    }

    #[test]
    fn insert_if_absent_keeps_age_and_reports_the_evicted_entry() {
        let mut map = RecencyMap::new(2);
        assert_eq!(map.insert_if_absent(8, || "a"), None);
        assert_eq!(map.insert_if_absent(2, || "b"), None);
        assert_eq!(map.insert_if_absent(8, || "ignored"), None, "present: unchanged");
        assert_eq!(map.insert_if_absent(5, || "c"), Some((8, "a")));
        assert_eq!(map.insert_if_absent(1, || "d"), Some((2, "b")));
        assert_eq!(
            (map.get(1), map.get(5), map.get(2)),
            (Some(&"d"), Some(&"c"), None)
        );
    }

    #[test]
    fn the_vs_schema_hash_is_the_hash_of_its_name() {
        use sha2::{Digest, Sha256};
        let hash: [u8; 32] = Sha256::digest(b"tickwire/vs-protocol/v1").into();
        assert_eq!(hash, crate::vs::VS_SCHEMA_HASH);
    }

    #[test]
    fn validation_names_the_problem() {
        assert_eq!(VsConfig::default().validate(), Ok(()));
        let short = VsConfig {
            ticket_lifetime_ms: 1_000,
            ..VsConfig::default()
        };
        assert!(short.validate().unwrap_err().0.contains("ticket_lifetime_ms"));
        let twice = VsConfig {
            game_servers: vec![
                Enrolment {
                    gs_id: 3,
                    identity_key: None,
                    ak_public: None,
                };
                2
            ],
            ..VsConfig::default()
        };
        assert!(twice.validate().unwrap_err().0.contains("enrolled twice"));
        let zero = VsConfig {
            heartbeat_timeout_ms: 0,
            ..VsConfig::default()
        };
        assert!(zero.validate().unwrap_err().0.contains("heartbeat_timeout_ms"));
        assert_eq!(crate::vs::GsConfig::default().validate(), Ok(()));
        let gs = crate::vs::GsConfig {
            max_outstanding_digests: 0,
            ..crate::vs::GsConfig::default()
        };
        assert!(gs.validate().unwrap_err().0.contains("max_outstanding_digests"));
    }

    #[test]
    fn validation_refuses_each_bad_value_naming_its_field() {
        // What the integration tests and the simulator run with.
        let fast = VsConfig {
            ticket_interval_ms: 500,
            heartbeat_timeout_ms: 3_000,
            max_revocations: 2,
            join_max_skew_ms: 0,
            ..VsConfig::default()
        };
        assert_eq!(fast.validate(), Ok(()));
        type Edit = fn(&mut VsConfig);
        let cases: [(Edit, &str); 10] = [
            (|c| c.ticket_interval_ms = 0, "ticket_interval_ms"),
            (|c| c.heartbeat_timeout_ms = 0, "heartbeat_timeout_ms"),
            (|c| c.join_timeout_ms = 0, "join_timeout_ms"),
            (|c| c.join_ticket_lifetime_ms = 0, "join_ticket_lifetime_ms"),
            (|c| c.receipt_cache = 0, "receipt_cache"),
            (|c| c.max_revocations = 0, "max_revocations"),
            (|c| c.join_max_skew_ms = 3_600_001, "join_max_skew_ms"),
            (|c| c.join_max_skew_ms = u64::MAX, "join_max_skew_ms"),
            (|c| c.ticket_lifetime_ms = 0, "ticket_lifetime_ms"),
            (
                |c| (c.ticket_interval_ms, c.ticket_lifetime_ms) = (u64::MAX, u64::MAX - 1),
                "ticket_lifetime_ms",
            ),
        ];
        for (edit, field) in cases {
            let mut config = VsConfig::default();
            edit(&mut config);
            let error = config.validate().unwrap_err().0;
            assert!(error.starts_with(field), "{error:?} should start with {field:?}");
        }
    }

    #[test]
    fn only_jti_revocations_lapse_after_their_expiry_and_twice_the_skew() {
        let jti = Revocation::Jti {
            jti: [1; 16],
            until_unix_ms: 1_000,
        };
        assert!(!revocation_lapsed(&jti, 61_000, 30_000));
        assert!(revocation_lapsed(&jti, 61_001, 30_000));
        assert!(!revocation_lapsed(
            &Revocation::Client { client_id: 1 },
            u64::MAX,
            0
        ));
        assert!(!revocation_lapsed(&Revocation::Key { key_id: 1 }, u64::MAX, 0));
    }
}
