//! The game server's side of the VS protocol: [`GsAgent`].

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::SeedableRng;
use rand_chacha::ChaCha12Rng;
use serde::{Deserialize, Serialize};

use crate::attest::{quote_extra_data, AkPublic, Quote, TpmError};
use crate::clock::WallClock;
use crate::config::ConfigError;
use crate::endpoint::{ConnectOptions, Endpoint};
use crate::retry::{Backoff, RetryConfig};
use crate::secrets::Secrets;
use crate::shared::{ConnHandle, Event, Initiator};
use crate::wire::{ReasonCode, Role};

use super::message::{Attestation, JoinRequest, Revocation, VsMessage};
use super::{VS_CHANNEL, VS_NONCE_LEN};
use crate::ticket::{PlayTicket, PlayTicketClaims, ProtectedReceipt, ReceiptClaims, VsKeys};
use crate::transcript::{TranscriptChain, TranscriptDigest};

/// Game-server settings for its verification server. Defaults in `PROTOCOL.md` §8.11.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GsConfig {
    /// This game server's id (the audience of its join tickets).
    pub gs_id: u64,
    /// Startup fails with [`GsEvent::FirstTicketTimeout`] if no play ticket arrives within this
    /// many milliseconds of [`GsAgent::start`]. Default 30 000.
    pub first_ticket_timeout_ms: u64,
    /// Milliseconds without a new play ticket after which live client sessions are closed with
    /// `NOT_AUTHORISED`. Admissions pause earlier, when the held ticket's lifetime runs out.
    /// Default 10 000 (4× the VS's 2 s ticket interval, plus margin).
    pub ticket_starvation_timeout_ms: u64,
    /// Milliseconds to wait for a receipt before retrying a transcript digest. Default 15 000.
    pub transcript_response_timeout_ms: u64,
    /// Heartbeat period to the VS, in milliseconds. Default 1 000.
    pub heartbeat_interval_ms: u64,
    /// Every this many heartbeats carries a fresh quote (re-attestation). Default 10; 0 = never.
    pub reattest_every: u32,
    /// Backoff of reconnections to the VS (after the attempts run out, the maximum delay
    /// repeats: a game server never stops trying). Default: [`RetryConfig::default`].
    pub reconnect: RetryConfig,
    /// Backoff of transcript digest retries; after `max_attempts` the digest is abandoned
    /// ([`GsEvent::DigestAbandoned`]). Default: [`RetryConfig::default`].
    pub transcript_retry: RetryConfig,
    /// Clock-skew allowance when checking play tickets from the VS, in milliseconds.
    /// Default 30 000 (as the VS's `join_max_skew_ms`).
    pub play_ticket_skew_ms: u64,
    /// Transcript digests awaiting a receipt at most; beyond it the oldest is abandoned.
    /// Default 1 024.
    pub max_pending_digests: usize,
    /// Digests sent (new or retried) per heartbeat at most, so the VS session stays within
    /// the VS's per-peer message rate; sessions left over are digested at later heartbeats.
    /// Default 32.
    pub max_digests_per_heartbeat: usize,
    /// Digests awaiting a receipt within their response timeout at most (a window, as in
    /// flow control): new digests and retries wait while this many are outstanding. It bounds
    /// what queues up behind a stalled VS session and reaches the VS as one burst when the
    /// path heals. Default 64.
    pub max_outstanding_digests: usize,
    /// Sessions whose transcript is tracked at most; inputs of further sessions are not
    /// chained (counted in [`GsAgent::untracked_inputs`]). Default 65 536.
    pub max_transcripts: usize,
}

impl Default for GsConfig {
    fn default() -> Self {
        Self {
            gs_id: 0,
            first_ticket_timeout_ms: 30_000,
            ticket_starvation_timeout_ms: 10_000,
            transcript_response_timeout_ms: 15_000,
            heartbeat_interval_ms: 1_000,
            reattest_every: 10,
            reconnect: RetryConfig::default(),
            transcript_retry: RetryConfig::default(),
            play_ticket_skew_ms: 30_000,
            max_pending_digests: 1_024,
            max_digests_per_heartbeat: 32,
            max_outstanding_digests: 64,
            max_transcripts: 65_536,
        }
    }
}

impl GsConfig {
    /// Checks ranges: every timeout and interval positive, the digest and transcript limits
    /// at least 1, `play_ticket_skew_ms` at most one hour
    /// ([`MAX_CLOCK_SKEW_MS`](crate::ticket::MAX_CLOCK_SKEW_MS)), and both retry schedules
    /// ([`RetryConfig::validate`]). Never panics, whatever the values (NaN included).
    ///
    /// # Errors
    /// [`ConfigError`] naming the first field out of range; fields of the retry schedules
    /// carry their path (`reconnect.multiplier must be finite and at least 1.0`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("first_ticket_timeout_ms", self.first_ticket_timeout_ms),
            ("ticket_starvation_timeout_ms", self.ticket_starvation_timeout_ms),
            (
                "transcript_response_timeout_ms",
                self.transcript_response_timeout_ms,
            ),
            ("heartbeat_interval_ms", self.heartbeat_interval_ms),
            ("max_pending_digests", self.max_pending_digests as u64),
            ("max_digests_per_heartbeat", self.max_digests_per_heartbeat as u64),
            ("max_outstanding_digests", self.max_outstanding_digests as u64),
            ("max_transcripts", self.max_transcripts as u64),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, value)| *value == 0) {
            return Err(ConfigError(format!("{name} must be > 0")));
        }
        let max_skew_ms = crate::ticket::MAX_CLOCK_SKEW_MS;
        if self.play_ticket_skew_ms > max_skew_ms {
            return Err(ConfigError(format!(
                "play_ticket_skew_ms must be at most {max_skew_ms} (one hour)"
            )));
        }
        crate::config::in_section("reconnect", self.reconnect.validate())?;
        crate::config::in_section("transcript_retry", self.transcript_retry.validate())
    }
}

/// Where the game server stands with its verification server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum GsStatus {
    /// Started; no play ticket yet.
    Starting,
    /// Holding a valid play ticket: admitting clients.
    Authorised,
    /// The ticket ran out: new clients are refused with `NOT_AUTHORISED`; sessions continue.
    AdmissionsPaused,
    /// Starved: client sessions were closed; waiting for a ticket.
    Starved,
    /// Gave up: the first ticket never came, or the VS refused for good. See the events.
    Failed,
}

/// Something the runtime or application must know or do.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum GsEvent {
    /// Produce a quote over PCR 23 with this `extraData` and answer with
    /// [`GsAgent::handle_quote`].
    NeedQuote {
        /// Echo in the answer.
        request: u64,
        /// The qualifying data.
        extra_data: [u8; 32],
    },
    /// A play ticket arrived (the first one when `first`); the endpoint presents it already.
    Authorised {
        /// The ticket's claims.
        claims: PlayTicketClaims,
        /// Whether this is the first ticket since start.
        first: bool,
    },
    /// The ticket ran out: admissions paused.
    AdmissionsPaused,
    /// Starvation: this many client sessions were closed with `NOT_AUTHORISED`.
    SessionsClosed {
        /// Sessions closed.
        count: usize,
    },
    /// Tickets returned after a pause or starvation: admissions resumed.
    Resumed,
    /// No play ticket within `first_ticket_timeout_ms`: startup failed. Fatal.
    FirstTicketTimeout {
        /// The timeout that elapsed, in milliseconds.
        waited_ms: u64,
    },
    /// The VS closed the session with `reason`: it refused the join or withdrew authorisation
    /// (or is restarting). Fatal unless `retrying`.
    Rejected {
        /// Why.
        reason: ReasonCode,
        /// The VS's detail.
        detail: String,
        /// Whether the agent will reconnect and try again.
        retrying: bool,
    },
    /// The session to the VS ended; the agent reconnects after `retry_in`.
    VsLost {
        /// Delay before the next attempt.
        retry_in: Duration,
    },
    /// A revocation from the VS was applied (sessions it covers were closed).
    Revoked(Revocation),
    /// The VS receipted a transcript digest.
    Receipt {
        /// What was receipted.
        digest: TranscriptDigest,
        /// The VS's signed receipt (verifies offline).
        receipt: ProtectedReceipt,
    },
    /// A receipt for a pending digest was ignored: it does not verify, or its claims differ
    /// from the digest sent (game server, sequence, session, tick or chain head). The digest
    /// stays pending (and is retried). Counted in [`GsAgent::receipts_rejected`].
    ReceiptRejected {
        /// The digest sequence the receipt was for.
        sequence: u64,
        /// What did not match.
        detail: String,
    },
    /// A digest got no receipt after every retry.
    DigestAbandoned {
        /// Its sequence.
        sequence: u64,
    },
    /// The TPM failed to quote; the join is retried after a backoff, a re-attestation skipped.
    QuoteFailed(TpmError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    /// No session; reconnect at the instant, if any.
    Down { retry_at: Option<Instant> },
    /// Connecting or waiting for the challenge.
    Connecting,
    /// Waiting for the join quote over this nonce, then for the VS's answer.
    Joining,
    /// Joined.
    Up,
}

#[derive(Debug, Clone, Copy)]
enum QuotePurpose {
    Join([u8; VS_NONCE_LEN]),
    Reattest([u8; VS_NONCE_LEN]),
}

#[derive(Debug)]
struct PendingDigest {
    digest: TranscriptDigest,
    /// When to give up waiting for this attempt's receipt.
    deadline: Option<Instant>,
    /// When to resend (after a timeout's backoff, or on reconnection).
    resend_at: Option<Instant>,
    backoff: Backoff,
}

#[derive(Debug)]
struct Transcript {
    chain: TranscriptChain,
    /// Inputs already covered by a digest.
    digested: u64,
    ended: bool,
}

/// The game server's VS client: see the [module docs](super).
///
/// Drive it beside the endpoint: offer every endpoint event to
/// [`handle_endpoint_event`](Self::handle_endpoint_event) (it consumes those of its VS session),
/// call [`handle_timeout`](Self::handle_timeout) at [`poll_timeout`](Self::poll_timeout), answer
/// [`GsEvent::NeedQuote`] with [`handle_quote`](Self::handle_quote), and drain
/// [`poll_event`](Self::poll_event). It acts on the endpoint itself: it connects to the VS,
/// sets the play ticket the endpoint presents, pauses and resumes admissions, closes client
/// sessions when starved, and applies revocations.
#[derive(Debug)]
pub struct GsAgent {
    config: GsConfig,
    /// The verification servers to try, in order: the one in `new`, then the failovers.
    vs_addrs: Vec<SocketAddr>,
    /// Index in `vs_addrs` of the one connected to, or tried next.
    vs_current: usize,
    vs_keys: VsKeys,
    vs_identity: Option<[u8; 32]>,
    gs_key: [u8; 32],
    software_hash: [u8; 32],
    config_hash: [u8; 32],
    ak_public: AkPublic,
    wall: WallClock,
    rng: ChaCha12Rng,
    conn: Option<ConnHandle>,
    link: Link,
    reconnect: Backoff,
    started_at: Option<Instant>,
    status: GsStatus,
    ticket: Option<PlayTicketClaims>,
    /// Monotonic instant the held ticket's lifetime ends (admissions pause).
    ticket_ends: Option<Instant>,
    last_ticket_at: Option<Instant>,
    next_nonce: Option<[u8; VS_NONCE_LEN]>,
    heartbeat_seq: u64,
    next_heartbeat: Option<Instant>,
    quote_requests: u64,
    pending_quote: Option<(u64, QuotePurpose)>,
    transcripts: BTreeMap<u64, Transcript>,
    digest_seq: u64,
    pending_digests: BTreeMap<u64, PendingDigest>,
    untracked_inputs: u64,
    counters: GsAgentStats,
    events: VecDeque<GsEvent>,
}

/// A snapshot of a [`GsAgent`]: where it stands with its VS and what came of its tickets and
/// transcript digests. Counters count since the agent was created.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct GsAgentStats {
    /// The status now.
    pub status: GsStatus,
    /// Whether new clients are refused now (no valid play ticket: starting, paused, starved,
    /// failed).
    pub admissions_paused: bool,
    /// Time since the last play ticket arrived; `None` before the first.
    pub ticket_age: Option<Duration>,
    /// Play tickets received.
    pub tickets_received: u64,
    /// Client sessions closed with `NOT_AUTHORISED` because the play tickets stopped
    /// (starvation) or the agent gave up.
    pub sessions_closed_starved: u64,
    /// Times the VS session ended and the agent had to reconnect.
    pub vs_sessions_lost: u64,
    /// Times the VS refused the join or withdrew authorisation.
    pub vs_rejections: u64,
    /// Times the TPM failed to quote.
    pub quote_failures: u64,
    /// Revocations applied.
    pub revocations_applied: u64,
    /// Transcript digests awaiting a receipt now. A gauge.
    pub receipts_pending: usize,
    /// Receipts received and verified.
    pub receipts_received: u64,
    /// Receipts ignored ([`GsEvent::ReceiptRejected`]).
    pub receipts_rejected: u64,
    /// Digests abandoned without a receipt ([`GsEvent::DigestAbandoned`]).
    pub digests_abandoned: u64,
    /// Inputs not chained because `max_transcripts` sessions were already tracked.
    pub untracked_inputs: u64,
}

/// The identity and measurements a [`GsAgent`] presents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GsIdentity {
    /// The endpoint's identity key ([`Endpoint::identity_key`]).
    pub gs_key: [u8; 32],
    /// SHA-256 of the binary, as extended into PCR 23.
    pub software_hash: [u8; 32],
    /// SHA-256 of the configuration, as extended into PCR 23 after the binary.
    pub config_hash: [u8; 32],
    /// The TPM's attestation key ([`TpmProvider::ak_public`](crate::attest::TpmProvider::ak_public)).
    pub ak_public: AkPublic,
}

impl GsAgent {
    /// An agent for the VS at `vs_addr` whose play tickets verify against `vs_keys`; if
    /// `vs_identity` is set, the VS must prove that Ed25519 identity in the handshake. The
    /// jitter of its retries comes from `secrets`, so a fleet's game servers never retry in step.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: GsConfig,
        secrets: Secrets,
        identity: GsIdentity,
        vs_addr: SocketAddr,
        vs_keys: VsKeys,
        vs_identity: Option<[u8; 32]>,
        wall: WallClock,
    ) -> Self {
        let rng = ChaCha12Rng::from_seed(secrets.derive("vs/gs-agent"));
        let reconnect = Backoff::new(config.reconnect.clone());
        Self {
            config,
            vs_addrs: vec![vs_addr],
            vs_current: 0,
            vs_keys,
            vs_identity,
            gs_key: identity.gs_key,
            software_hash: identity.software_hash,
            config_hash: identity.config_hash,
            ak_public: identity.ak_public,
            wall,
            rng,
            conn: None,
            link: Link::Down { retry_at: None },
            reconnect,
            started_at: None,
            status: GsStatus::Starting,
            ticket: None,
            ticket_ends: None,
            last_ticket_at: None,
            next_nonce: None,
            heartbeat_seq: 0,
            next_heartbeat: None,
            quote_requests: 0,
            pending_quote: None,
            transcripts: BTreeMap::new(),
            digest_seq: 0,
            pending_digests: BTreeMap::new(),
            untracked_inputs: 0,
            counters: GsAgentStats {
                status: GsStatus::Starting,
                admissions_paused: true,
                ticket_age: None,
                tickets_received: 0,
                sessions_closed_starved: 0,
                vs_sessions_lost: 0,
                vs_rejections: 0,
                quote_failures: 0,
                revocations_applied: 0,
                receipts_pending: 0,
                receipts_received: 0,
                receipts_rejected: 0,
                digests_abandoned: 0,
                untracked_inputs: 0,
            },
            events: VecDeque::new(),
        }
    }

    /// Command: starts the agent: trusts the VS keys for join tickets, pauses admissions until
    /// the first ticket, and connects to the VS.
    pub fn start(&mut self, ep: &mut Endpoint, now: Instant) {
        self.started_at = Some(now);
        if let Some(server) = ep.server_mut() {
            let tickets = server.tickets();
            for (key_id, key) in self.vs_keys.iter() {
                tickets.add_key(key_id, *key);
            }
        }
        if let Some(mut server) = ep.server_mut() {
            server.pause_admissions(ReasonCode::NOT_AUTHORISED, "no play ticket yet", None);
        }
        self.connect(ep, now);
    }

    /// Command: replaces the wall-clock anchor (after the system clock was stepped): join
    /// timestamps, heartbeats and ticket checks use the new anchor from now on.
    pub fn set_wall_clock(&mut self, wall: WallClock) {
        self.wall = wall;
    }

    /// Command, before [`start`](Self::start): verification servers to fail over to, in
    /// order, after the one given to [`new`](Self::new). Each lost session (or failed attempt)
    /// moves the next attempt to the next one in the list, round robin, after the reconnect
    /// backoff; they must share the VS keys (and, with a pinned `vs_identity`, the identity).
    /// A failover that completes within `ticket_starvation_timeout_ms` loses no client session.
    pub fn add_failover(&mut self, vs_addr: SocketAddr) {
        if !self.vs_addrs.contains(&vs_addr) {
            self.vs_addrs.push(vs_addr);
        }
    }

    /// The verification server connected to, or tried next.
    pub fn vs_addr(&self) -> SocketAddr {
        self.vs_addrs[self.vs_current]
    }

    /// The current status.
    pub fn status(&self) -> GsStatus {
        self.status
    }

    /// The claims of the play ticket held, if any.
    pub fn ticket(&self) -> Option<&PlayTicketClaims> {
        self.ticket.as_ref()
    }

    /// The VS session, while one is open.
    pub fn vs_conn(&self) -> Option<ConnHandle> {
        self.conn
    }

    /// Inputs not chained because `max_transcripts` sessions were already tracked.
    pub fn untracked_inputs(&self) -> u64 {
        self.untracked_inputs
    }

    /// Transcript digests awaiting a receipt.
    pub fn pending_digests(&self) -> usize {
        self.pending_digests.len()
    }

    /// Receipts for pending digests that were ignored because they did not verify or did not
    /// match the digest sent ([`GsEvent::ReceiptRejected`]).
    pub fn receipts_rejected(&self) -> u64 {
        self.counters.receipts_rejected
    }

    /// A snapshot of the agent's state and counters at `now`.
    pub fn stats(&self, now: Instant) -> GsAgentStats {
        GsAgentStats {
            status: self.status,
            admissions_paused: self.status != GsStatus::Authorised,
            ticket_age: self.last_ticket_at.map(|at| now.saturating_duration_since(at)),
            receipts_pending: self.pending_digests.len(),
            untracked_inputs: self.untracked_inputs,
            ..self.counters
        }
    }

    /// Queues `event`, counting it.
    fn emit(&mut self, event: GsEvent) {
        let c = &mut self.counters;
        match &event {
            GsEvent::Authorised { .. } => c.tickets_received += 1,
            GsEvent::SessionsClosed { count } => c.sessions_closed_starved += *count as u64,
            GsEvent::Rejected { .. } => c.vs_rejections += 1,
            GsEvent::VsLost { .. } => c.vs_sessions_lost += 1,
            GsEvent::Revoked(_) => c.revocations_applied += 1,
            GsEvent::Receipt { .. } => c.receipts_received += 1,
            GsEvent::ReceiptRejected { .. } => c.receipts_rejected += 1,
            GsEvent::DigestAbandoned { .. } => c.digests_abandoned += 1,
            GsEvent::QuoteFailed(_) => c.quote_failures += 1,
            GsEvent::NeedQuote { .. } | GsEvent::AdmissionsPaused | GsEvent::Resumed => {}
            GsEvent::FirstTicketTimeout { .. } => {}
        }
        self.events.push_back(event);
    }

    /// The transcript head of `session_id`, if tracked.
    pub fn transcript(&self, session_id: u64) -> Option<&TranscriptChain> {
        self.transcripts.get(&session_id).map(|t| &t.chain)
    }

    /// Output: the next event.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<GsEvent> {
        self.events.pop_front()
    }

    /// Input: one input of `session_id` applied at `tick`, chained into its transcript.
    pub fn record_input(&mut self, session_id: u64, tick: u64, input: &[u8]) {
        if !self.transcripts.contains_key(&session_id)
            && self.transcripts.len() >= self.config.max_transcripts
        {
            self.untracked_inputs += 1;
            return;
        }
        let transcript = self.transcripts.entry(session_id).or_insert_with(|| Transcript {
            chain: TranscriptChain::new(session_id),
            digested: 0,
            ended: false,
        });
        transcript.chain.record(tick, input);
    }

    /// Input: `session_id` ended; its final digest goes with the next heartbeat, then the chain
    /// is dropped.
    pub fn end_session(&mut self, session_id: u64) {
        if let Some(transcript) = self.transcripts.get_mut(&session_id) {
            transcript.ended = true;
        }
    }

    /// Output: the next instant [`handle_timeout`](Self::handle_timeout) must run.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.status == GsStatus::Failed {
            return None;
        }
        let mut next: Option<Instant> = None;
        let mut at = |t: Option<Instant>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        if let Link::Down { retry_at } = self.link {
            at(retry_at);
        }
        if self.ticket.is_none() && self.last_ticket_at.is_none() {
            at(self.first_ticket_deadline());
        }
        if self.status == GsStatus::Authorised {
            at(self.ticket_ends);
        }
        if matches!(self.status, GsStatus::Authorised | GsStatus::AdmissionsPaused) {
            at(self.starvation_deadline());
        }
        if self.link == Link::Up {
            at(self.next_heartbeat);
            // A full window frees up at a deadline or a receipt, not at a resend time.
            let room = self.outstanding_digests() < self.config.max_outstanding_digests;
            for pending in self.pending_digests.values() {
                at(pending.deadline);
                if room {
                    at(pending.resend_at);
                }
            }
        }
        next
    }

    fn first_ticket_deadline(&self) -> Option<Instant> {
        self.started_at
            .map(|t| t + Duration::from_millis(self.config.first_ticket_timeout_ms))
    }

    fn starvation_deadline(&self) -> Option<Instant> {
        self.last_ticket_at
            .map(|t| t + Duration::from_millis(self.config.ticket_starvation_timeout_ms))
    }

    /// Input: time passed.
    pub fn handle_timeout(&mut self, ep: &mut Endpoint, now: Instant) {
        if self.status == GsStatus::Failed {
            return;
        }
        if self.last_ticket_at.is_none() && self.first_ticket_deadline().is_some_and(|d| now >= d) {
            self.fail(ep, now);
            self.emit(GsEvent::FirstTicketTimeout {
                waited_ms: self.config.first_ticket_timeout_ms,
            });
            return;
        }
        if let Link::Down { retry_at: Some(at) } = self.link {
            if now >= at {
                self.connect(ep, now);
            }
        }
        if self.status == GsStatus::Authorised && self.ticket_ends.is_some_and(|t| now >= t) {
            self.status = GsStatus::AdmissionsPaused;
            if let Some(mut server) = ep.server_mut() {
                server.set_play_ticket(None);
            }
            if let Some(mut server) = ep.server_mut() {
                server.pause_admissions(ReasonCode::NOT_AUTHORISED, "play ticket expired", None);
            }
            self.emit(GsEvent::AdmissionsPaused);
        }
        if matches!(self.status, GsStatus::Authorised | GsStatus::AdmissionsPaused)
            && self.starvation_deadline().is_some_and(|d| now >= d)
        {
            if self.status == GsStatus::Authorised {
                if let Some(mut server) = ep.server_mut() {
                    server.set_play_ticket(None);
                }
                if let Some(mut server) = ep.server_mut() {
                    server.pause_admissions(ReasonCode::NOT_AUTHORISED, "play ticket starvation", None);
                }
                self.emit(GsEvent::AdmissionsPaused);
            }
            self.status = GsStatus::Starved;
            let count = ep.server_mut().map_or(0, |mut server| {
                server.close_client_sessions(now, ReasonCode::NOT_AUTHORISED, "play ticket starvation")
            });
            self.emit(GsEvent::SessionsClosed { count });
        }
        if self.link == Link::Up {
            if self.next_heartbeat.is_some_and(|t| now >= t) {
                self.heartbeat(ep, now);
            }
            self.retry_digests(ep, now);
        }
    }

    /// Input: an endpoint event. Returns true if it belonged to the VS session (consumed).
    pub fn handle_endpoint_event(&mut self, ep: &mut Endpoint, now: Instant, event: &Event) -> bool {
        let ours = |conn: &ConnHandle| Some(*conn) == self.conn;
        match event {
            Event::Connected { conn, .. } if ours(conn) => true,
            Event::Message {
                conn,
                channel,
                payload,
            } if ours(conn) => {
                if *channel == VS_CHANNEL {
                    match VsMessage::decode(payload) {
                        Ok(message) => self.handle_message(ep, now, message),
                        Err(err) => ep.close(now, *conn, ReasonCode::PROTOCOL_VIOLATION, &err.to_string()),
                    }
                }
                true
            }
            Event::Rejected {
                conn,
                reason,
                detail,
                initiator,
                ..
            }
            | Event::Disconnected {
                conn,
                reason,
                detail,
                initiator,
                ..
            } if ours(conn) => {
                self.closed(ep, now, *reason, detail, *initiator);
                true
            }
            _ => false,
        }
    }

    /// Input: the answer to [`GsEvent::NeedQuote`] `request`.
    pub fn handle_quote(
        &mut self,
        ep: &mut Endpoint,
        now: Instant,
        request: u64,
        quote: Result<Quote, TpmError>,
    ) {
        let Some((expected, purpose)) = self.pending_quote else {
            return;
        };
        if expected != request {
            return;
        }
        self.pending_quote = None;
        let quote = match quote {
            Ok(quote) => quote,
            Err(err) => {
                self.emit(GsEvent::QuoteFailed(err));
                match purpose {
                    QuotePurpose::Join(_) => {
                        if let Some(conn) = self.conn {
                            ep.close(now, conn, ReasonCode::NORMAL, "TPM quote failed");
                        }
                    }
                    QuotePurpose::Reattest(_) => self.send_heartbeat(ep, now, None),
                }
                return;
            }
        };
        match purpose {
            QuotePurpose::Join(_) => {
                let request = JoinRequest {
                    gs_id: self.config.gs_id,
                    gs_key: self.gs_key,
                    software_hash: self.software_hash,
                    config_hash: self.config_hash,
                    timestamp_ms: self.wall.unix_ms_at(now),
                    ak_public: self.ak_public.clone(),
                    quote,
                };
                self.send(ep, now, &VsMessage::Join(request));
            }
            QuotePurpose::Reattest(nonce) => self.send_heartbeat(ep, now, Some(Attestation { nonce, quote })),
        }
    }

    fn connect(&mut self, ep: &mut Endpoint, now: Instant) {
        let options = ConnectOptions {
            role: Role::GameServer,
            expected_server_key: self.vs_identity,
            ..ConnectOptions::default()
        };
        match ep.connect_game_server(now, self.vs_addrs[self.vs_current], options) {
            Ok(conn) => {
                self.conn = Some(conn);
                self.link = Link::Connecting;
            }
            Err(_) => self.lost(now),
        }
    }

    /// The VS session ended. A VS refusal (its close reason) that retrying cannot fix is
    /// fatal; anything else is a loss to reconnect from.
    fn closed(
        &mut self,
        ep: &mut Endpoint,
        now: Instant,
        reason: ReasonCode,
        detail: &str,
        initiator: Initiator,
    ) {
        if initiator == Initiator::Peer && reason != ReasonCode::TRANSPORT_ERROR {
            let retrying = reason.is_retryable() || reason == ReasonCode::NORMAL;
            self.emit(GsEvent::Rejected {
                reason,
                detail: detail.to_owned(),
                retrying,
            });
            if !retrying {
                self.conn = None;
                return self.fail(ep, now);
            }
        }
        self.lost(now);
    }

    fn lost(&mut self, now: Instant) {
        self.conn = None;
        self.pending_quote = None;
        if self.status == GsStatus::Failed {
            return;
        }
        // The next attempt goes to the next verification server, if there are several.
        self.vs_current = (self.vs_current + 1) % self.vs_addrs.len();
        let delay = self
            .reconnect
            .next_delay(&mut self.rng)
            .unwrap_or(Duration::from_millis(self.config.reconnect.max_backoff_ms));
        self.link = Link::Down {
            retry_at: Some(now + delay),
        };
        self.emit(GsEvent::VsLost { retry_in: delay });
    }

    /// Gives up for good: no ticket, no admissions, no client sessions, no VS session.
    fn fail(&mut self, ep: &mut Endpoint, now: Instant) {
        self.status = GsStatus::Failed;
        self.link = Link::Down { retry_at: None };
        self.ticket = None;
        if let Some(conn) = self.conn.take() {
            ep.close(now, conn, ReasonCode::NORMAL, "game server giving up");
        }
        if let Some(mut server) = ep.server_mut() {
            server.set_play_ticket(None);
        }
        if let Some(mut server) = ep.server_mut() {
            server.pause_admissions(ReasonCode::NOT_AUTHORISED, "game server not authorised", None);
        }
        let count = ep.server_mut().map_or(0, |mut server| {
            server.close_client_sessions(now, ReasonCode::NOT_AUTHORISED, "game server not authorised")
        });
        if count > 0 {
            self.emit(GsEvent::SessionsClosed { count });
        }
    }

    fn send(&mut self, ep: &mut Endpoint, now: Instant, message: &VsMessage) {
        if let Some(conn) = self.conn {
            // A full queue or a closed session surfaces as a lost session; nothing to do here.
            let _ = ep.send(now, conn, VS_CHANNEL, Bytes::from(message.encode()));
        }
    }

    fn request_quote(&mut self, purpose: QuotePurpose) {
        let nonce = match purpose {
            QuotePurpose::Join(nonce) | QuotePurpose::Reattest(nonce) => nonce,
        };
        self.quote_requests += 1;
        self.pending_quote = Some((self.quote_requests, purpose));
        self.emit(GsEvent::NeedQuote {
            request: self.quote_requests,
            extra_data: quote_extra_data(&nonce, &self.gs_key, self.config.gs_id),
        });
    }

    fn handle_message(&mut self, ep: &mut Endpoint, now: Instant, message: VsMessage) {
        match message {
            VsMessage::Challenge { nonce } => {
                if self.link == Link::Connecting {
                    self.link = Link::Joining;
                    self.request_quote(QuotePurpose::Join(nonce));
                }
            }
            VsMessage::Accepted { ticket, next_nonce } => {
                if self.link != Link::Joining {
                    return;
                }
                if !self.take_ticket(ep, now, &ticket) {
                    if let Some(conn) = self.conn {
                        ep.close(
                            now,
                            conn,
                            ReasonCode::PLAY_TICKET_INVALID,
                            "first play ticket does not verify",
                        );
                    }
                } else {
                    self.link = Link::Up;
                    self.reconnect.reset();
                    self.next_nonce = Some(next_nonce);
                    self.heartbeat_seq = 0;
                    self.next_heartbeat =
                        Some(now + Duration::from_millis(self.config.heartbeat_interval_ms));
                    for pending in self.pending_digests.values_mut() {
                        pending.deadline = None;
                        pending.resend_at = Some(now);
                    }
                    self.retry_digests(ep, now);
                }
            }
            VsMessage::Ticket { ticket, next_nonce } => {
                if self.link == Link::Up && self.take_ticket(ep, now, &ticket) {
                    self.next_nonce = Some(next_nonce);
                }
            }
            VsMessage::Revoke(revocation) => {
                if let Some(server) = ep.server_mut() {
                    let tickets = server.tickets();
                    // A full revocation list is the VS's problem to size; revoking the client
                    // or key instead still works.
                    let _ = match revocation {
                        Revocation::Jti { jti, until_unix_ms } => tickets.revoke_jti(jti, until_unix_ms),
                        Revocation::Client { client_id } => tickets.revoke_client(client_id),
                        Revocation::Key { key_id } => tickets.revoke_key(key_id),
                    };
                }
                if let Some(mut server) = ep.server_mut() {
                    server.revalidate(now);
                }
                self.emit(GsEvent::Revoked(revocation));
            }
            VsMessage::Receipt { sequence, receipt } => {
                let Some(pending) = self.pending_digests.get(&sequence) else {
                    // No digest waits for it: a late duplicate of one already accepted.
                    return;
                };
                let mismatch = match receipt.verify(&self.vs_keys) {
                    Err(err) => Some(format!("receipt does not verify: {err}")),
                    Ok(claims) => receipt_mismatch(&claims, sequence, &pending.digest, self.config.gs_id),
                };
                if let Some(detail) = mismatch {
                    // Ignored; the digest stays pending and is retried on its timeout.
                    self.emit(GsEvent::ReceiptRejected { sequence, detail });
                    return;
                }
                let pending = self.pending_digests.remove(&sequence).expect("looked up above");
                self.emit(GsEvent::Receipt {
                    digest: pending.digest,
                    receipt,
                });
            }
            // GS → VS messages arriving here are ignored.
            VsMessage::Join(_) | VsMessage::Heartbeat { .. } | VsMessage::Digest(_) => {}
        }
    }

    /// Verifies and installs a play ticket; false if it does not verify.
    fn take_ticket(&mut self, ep: &mut Endpoint, now: Instant, ticket: &PlayTicket) -> bool {
        let unix_ms = self.wall.unix_ms_at(now);
        let Ok(claims) = ticket.verify(
            &self.vs_keys,
            &self.gs_key,
            unix_ms,
            self.config.play_ticket_skew_ms,
        ) else {
            return false;
        };
        if self
            .ticket
            .as_ref()
            .is_some_and(|held| held.sequence > claims.sequence && held.issued_at_ms > claims.issued_at_ms)
        {
            return false;
        }
        let first = self.last_ticket_at.is_none();
        let lifetime = Duration::from_millis(claims.expires_at_ms.saturating_sub(claims.issued_at_ms));
        self.ticket_ends = Some(now + lifetime);
        self.last_ticket_at = Some(now);
        self.ticket = Some(claims.clone());
        if let Some(mut server) = ep.server_mut() {
            server.set_play_ticket(Some(ticket.0.to_bytes()));
        }
        let was = self.status;
        self.status = GsStatus::Authorised;
        if was != GsStatus::Authorised {
            if let Some(mut server) = ep.server_mut() {
                server.resume_admissions();
            }
            if was != GsStatus::Starting {
                self.emit(GsEvent::Resumed);
            }
        }
        self.emit(GsEvent::Authorised { claims, first });
        true
    }

    fn heartbeat(&mut self, ep: &mut Endpoint, now: Instant) {
        self.next_heartbeat = Some(now + Duration::from_millis(self.config.heartbeat_interval_ms));
        self.heartbeat_seq += 1;
        self.send_digests(ep, now);
        let reattest = self.config.reattest_every != 0
            && self
                .heartbeat_seq
                .is_multiple_of(u64::from(self.config.reattest_every))
            && self.pending_quote.is_none();
        match (reattest, self.next_nonce.take()) {
            (true, Some(nonce)) => self.request_quote(QuotePurpose::Reattest(nonce)),
            (_, nonce) => {
                self.next_nonce = nonce;
                self.send_heartbeat(ep, now, None);
            }
        }
    }

    fn send_heartbeat(&mut self, ep: &mut Endpoint, now: Instant, attestation: Option<Attestation>) {
        let message = VsMessage::Heartbeat {
            sequence: self.heartbeat_seq,
            timestamp_ms: self.wall.unix_ms_at(now),
            sessions: u32::try_from(ep.server_mut().map_or(0, |server| server.client_session_count()))
                .unwrap_or(u32::MAX),
            attestation,
        };
        self.send(ep, now, &message);
    }

    /// Turns every transcript with new inputs into a digest and sends it.
    fn send_digests(&mut self, ep: &mut Endpoint, now: Instant) {
        let mut fresh = Vec::new();
        let budget = self.config.max_digests_per_heartbeat.min(
            self.config
                .max_outstanding_digests
                .saturating_sub(self.outstanding_digests()),
        );
        self.transcripts.retain(|_, t| {
            if t.chain.inputs() > t.digested && fresh.len() < budget {
                t.digested = t.chain.inputs();
                fresh.push(t.chain.clone());
            }
            !t.ended || t.chain.inputs() > t.digested
        });
        for chain in fresh {
            self.digest_seq += 1;
            let digest = TranscriptDigest {
                sequence: self.digest_seq,
                session_id: chain.session_id(),
                tick: chain.last_tick(),
                inputs: chain.inputs(),
                digest: chain.head(),
            };
            if self.pending_digests.len() >= self.config.max_pending_digests {
                if let Some((sequence, _)) = self.pending_digests.pop_first() {
                    self.emit(GsEvent::DigestAbandoned { sequence });
                }
            }
            if let Some(mut server) = ep.server_mut() {
                server.record_checkpoint(&digest);
            }
            self.send(ep, now, &VsMessage::Digest(digest.clone()));
            if self.config.max_pending_digests == 0 {
                // A configuration `GsConfig::validate` refuses; the bound holds all the same.
                self.emit(GsEvent::DigestAbandoned {
                    sequence: digest.sequence,
                });
                continue;
            }
            self.pending_digests.insert(
                digest.sequence,
                PendingDigest {
                    digest,
                    deadline: Some(now + Duration::from_millis(self.config.transcript_response_timeout_ms)),
                    resend_at: None,
                    backoff: Backoff::new(self.config.transcript_retry.clone()),
                },
            );
        }
    }

    /// Digests sent and still within their response timeout.
    fn outstanding_digests(&self) -> usize {
        self.pending_digests
            .values()
            .filter(|p| p.deadline.is_some())
            .count()
    }

    /// Times out digests without a receipt and resends those whose backoff has passed, while
    /// the outstanding window has room.
    fn retry_digests(&mut self, ep: &mut Endpoint, now: Instant) {
        let timeout = Duration::from_millis(self.config.transcript_response_timeout_ms);
        let mut room = self
            .config
            .max_outstanding_digests
            .saturating_sub(self.outstanding_digests());
        let mut resend = Vec::new();
        let mut abandoned = Vec::new();
        for (sequence, pending) in &mut self.pending_digests {
            if pending.deadline.is_some_and(|d| now >= d) {
                pending.deadline = None;
                match pending.backoff.next_delay(&mut self.rng) {
                    Some(delay) => pending.resend_at = Some(now + delay),
                    None => abandoned.push(*sequence),
                }
            }
            if pending.resend_at.is_some_and(|t| now >= t)
                && resend.len() < self.config.max_digests_per_heartbeat
                && room > 0
            {
                room -= 1;
                pending.resend_at = None;
                pending.deadline = Some(now + timeout);
                resend.push(pending.digest.clone());
            }
        }
        for sequence in abandoned {
            self.pending_digests.remove(&sequence);
            self.emit(GsEvent::DigestAbandoned { sequence });
        }
        for digest in resend {
            self.send(ep, now, &VsMessage::Digest(digest));
        }
    }
}

/// Why a verified receipt does not receipt `sent` (the digest pending under `sequence`), if it
/// does not: every claim but `received_at_ms` must match what this game server sent.
fn receipt_mismatch(
    claims: &ReceiptClaims,
    sequence: u64,
    sent: &TranscriptDigest,
    gs_id: u64,
) -> Option<String> {
    let field = if claims.gs_id != gs_id {
        "gs_id"
    } else if claims.sequence != sequence || claims.sequence != sent.sequence {
        "sequence"
    } else if claims.session_id != sent.session_id {
        "session_id"
    } else if claims.tick != sent.tick {
        "tick"
    } else if claims.digest != sent.digest {
        "digest"
    } else {
        return None;
    };
    Some(format!("receipt {field} differs from the digest sent"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_validation_names_each_bad_field() {
        assert_eq!(GsConfig::default().validate(), Ok(()));
        // What the integration tests and the simulator run with.
        let fast = GsConfig {
            gs_id: 7,
            heartbeat_interval_ms: 200,
            max_outstanding_digests: 3,
            reattest_every: 0,
            play_ticket_skew_ms: 0,
            ..GsConfig::default()
        };
        assert_eq!(fast.validate(), Ok(()));
        type Edit = fn(&mut GsConfig);
        let cases: [(Edit, &str); 18] = [
            (|c| c.first_ticket_timeout_ms = 0, "first_ticket_timeout_ms"),
            (
                |c| c.ticket_starvation_timeout_ms = 0,
                "ticket_starvation_timeout_ms",
            ),
            (
                |c| c.transcript_response_timeout_ms = 0,
                "transcript_response_timeout_ms",
            ),
            (|c| c.heartbeat_interval_ms = 0, "heartbeat_interval_ms"),
            (|c| c.max_pending_digests = 0, "max_pending_digests"),
            (|c| c.max_digests_per_heartbeat = 0, "max_digests_per_heartbeat"),
            (|c| c.max_outstanding_digests = 0, "max_outstanding_digests"),
            (|c| c.max_transcripts = 0, "max_transcripts"),
            (|c| c.play_ticket_skew_ms = 3_600_001, "play_ticket_skew_ms"),
            (|c| c.reconnect.max_attempts = 0, "reconnect.max_attempts"),
            (
                |c| c.reconnect.initial_backoff_ms = 0,
                "reconnect.initial_backoff_ms",
            ),
            (|c| c.reconnect.max_backoff_ms = 1, "reconnect.initial_backoff_ms"),
            (|c| c.reconnect.multiplier = f64::NAN, "reconnect.multiplier"),
            (|c| c.reconnect.jitter_factor = 1.0, "reconnect.jitter_factor"),
            (
                |c| c.transcript_retry.max_attempts = 0,
                "transcript_retry.max_attempts",
            ),
            (
                |c| c.transcript_retry.multiplier = 0.5,
                "transcript_retry.multiplier",
            ),
            (
                |c| c.transcript_retry.multiplier = f64::INFINITY,
                "transcript_retry.multiplier",
            ),
            (
                |c| c.transcript_retry.jitter_factor = -0.5,
                "transcript_retry.jitter_factor",
            ),
        ];
        for (edit, path) in cases {
            let mut config = GsConfig::default();
            edit(&mut config);
            let error = config.validate().unwrap_err().0;
            assert!(error.starts_with(path), "{error:?} should start with {path:?}");
        }
    }

    #[test]
    fn a_receipt_must_match_every_field_of_the_digest_sent() {
        let sent = TranscriptDigest {
            sequence: 4,
            session_id: 9,
            tick: 120,
            inputs: 7,
            digest: [3; 32],
        };
        let good = ReceiptClaims {
            gs_id: 42,
            session_id: 9,
            sequence: 4,
            tick: 120,
            digest: [3; 32],
            received_at_ms: 5,
        };
        assert_eq!(receipt_mismatch(&good, 4, &sent, 42), None);
        type Change = fn(&mut ReceiptClaims);
        let cases: [(&str, Change); 5] = [
            ("gs_id", |c| c.gs_id = 43),
            ("sequence", |c| c.sequence = 5),
            ("session_id", |c| c.session_id = 8),
            ("tick", |c| c.tick = 121),
            ("digest", |c| c.digest = [4; 32]),
        ];
        for (field, change) in cases {
            let mut claims = good.clone();
            change(&mut claims);
            let detail = receipt_mismatch(&claims, 4, &sent, 42).expect(field);
            assert!(detail.contains(field), "{detail}");
        }
        // The message's own sequence must be the digest's too.
        assert!(receipt_mismatch(&good, 5, &sent, 42).is_some());
    }
}
