//! The verification server's side of the VS protocol: [`Verifier`].

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ed25519_dalek::SigningKey;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;
use serde::{Deserialize, Serialize};

use crate::attest::{
    measurement_pcr_digest, quote_extra_data, verify_ak, verify_quote, Attest, AttestError, ExpectedQuote,
    PcrSelection, VerifiedAk, MEASUREMENT_PCR,
};
use crate::clock::WallClock;
use crate::endpoint::{ConnHandle, Endpoint, Event};
use crate::ticket::{JoinTicket, JoinTicketClaims, TicketIssuer};
use crate::wire::{ReasonCode, Role};

use super::message::{JoinRequest, Revocation, VsMessage};
use super::tickets::{PlayTicket, PlayTicketClaims, ProtectedReceipt, ReceiptClaims, VsKeys};
use super::transcript::TranscriptDigest;
use super::{VS_CHANNEL, VS_NONCE_LEN};

/// An allowed software measurement: the binary and configuration hashes a game server extends
/// into PCR 23, in that order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Measurement {
    /// SHA-256 of the binary, hex in config files.
    #[serde(with = "crate::config::hex32")]
    pub binary_sha256: [u8; 32],
    /// SHA-256 of the configuration, hex in config files.
    #[serde(with = "crate::config::hex32")]
    pub config_sha256: [u8; 32],
}

/// A game server the VS knows: its id and, when pinned, its identity key and AK.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Enrolment {
    /// The game server's id.
    pub gs_id: u64,
    /// Its Ed25519 identity key, hex; `None` = any key (the quote still binds it).
    #[serde(default, with = "opt_hex32")]
    pub identity_key: Option<[u8; 32]>,
    /// Its AK's marshalled `TPMT_PUBLIC`, hex; `None` = any AK that passes the checks (an AK
    /// created afresh at every start, as `HardwareTpm` does, cannot be pinned).
    #[serde(default, with = "opt_hexvec")]
    pub ak_public: Option<Vec<u8>>,
}

mod opt_hex32 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(value: &Option<[u8; 32]>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(bytes) => crate::config::hex32::serialize(bytes, s),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<[u8; 32]>, D::Error> {
        let text = String::deserialize(d)?;
        crate::config::hexvec::decode(&text)
            .ok()
            .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom("expected 64 hex characters"))
    }
}

mod opt_hexvec {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(value: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(bytes) => crate::config::hexvec::serialize(bytes, s),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        let text = String::deserialize(d)?;
        crate::config::hexvec::decode(&text)
            .map(Some)
            .map_err(|()| serde::de::Error::custom("expected hex digits"))
    }
}

/// Verification-server settings. Defaults from seed 000 (`DESIGN.md` §4.3).
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
    /// Seeds nonces and `jti`s.
    pub seed: u64,
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
            seed: 0,
        }
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
    /// Nonces sent for re-attestation and not yet used, oldest first (at most 4).
    nonces: VecDeque<[u8; VS_NONCE_LEN]>,
    info: GsInfo,
}

#[derive(Debug)]
struct GsConn {
    gs_key: [u8; 32],
    phase: Phase,
}

/// Nonces remembered per game server to recognise replayed quotes.
const NONCE_HISTORY: usize = 64;
/// Game servers whose nonce history is kept at most.
const MAX_HISTORY_GAME_SERVERS: usize = 65_536;
/// Outstanding re-attestation nonces per game server.
const OUTSTANDING_NONCES: usize = 4;

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
    nonce_history: BTreeMap<u64, VecDeque<[u8; VS_NONCE_LEN]>>,
    revoked: BTreeSet<u64>,
    /// Receipts by game server and digest sequence, across sessions, for idempotent retries.
    receipts: BTreeMap<u64, BTreeMap<u64, (TranscriptDigest, ProtectedReceipt)>>,
    events: VecDeque<VsEvent>,
}

impl Verifier {
    /// A verifier signing with `key` (its public half goes to game servers and clients as the
    /// trusted VS key under `config.key_id`).
    pub fn new(config: VsConfig, key: SigningKey, wall: WallClock) -> Self {
        let rng = ChaCha12Rng::from_seed(crate::tls::derive_seed(config.seed, "vs/verifier"));
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
            nonce_history: BTreeMap::new(),
            revoked: BTreeSet::new(),
            receipts: BTreeMap::new(),
            events: VecDeque::new(),
        }
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

    /// Output: the next event.
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
        let claims = JoinTicketClaims::new(
            client_id,
            gs_id,
            jti,
            self.wall.unix_ms_at(now),
            self.config.join_ticket_lifetime_ms,
            permissions,
            client_key,
        );
        self.issuer.issue(&claims)
    }

    /// Command: pushes `revocation` to every authorised game server, which applies it to
    /// admissions and live sessions.
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
    }

    /// Command: withdraws `gs_id`'s authorisation for good: no more tickets, its session closed
    /// with `GS_REVOKED`, later joins refused.
    pub fn revoke_game_server(&mut self, ep: &mut Endpoint, now: Instant, gs_id: u64) {
        self.revoked.insert(gs_id);
        if let Some(conn) = self.by_gs.get(&gs_id).copied() {
            self.deauthorise(ep, now, conn, ReasonCode::GS_REVOKED, "revoked by the operator");
        }
    }

    /// Output: the next instant [`handle_timeout`](Self::handle_timeout) must run.
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
            remember_nonce(&mut self.nonce_history, joined.gs_id, nonce);
            joined.nonces.push_back(nonce);
            if joined.nonces.len() > OUTSTANDING_NONCES {
                joined.nonces.pop_front();
            }
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
                    if self.by_gs.get(&joined.gs_id) == Some(conn) {
                        self.by_gs.remove(&joined.gs_id);
                    }
                    self.events.push_back(VsEvent::Deauthorised {
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
                        self.events.push_back(VsEvent::Reattested { gs_id });
                    }
                    Err((reason, detail)) => self.deauthorise(ep, now, conn, reason, &detail),
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
                if !self.receipts.contains_key(&gs_id) && self.receipts.len() >= MAX_HISTORY_GAME_SERVERS {
                    self.receipts.pop_first();
                }
                let cache = self.receipts.entry(gs_id).or_default();
                let receipt = match cache.get(&digest.sequence) {
                    // A retry, possibly over a new session: the same receipt again.
                    Some((sent, receipt)) if *sent == digest => receipt.clone(),
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
                        cache.insert(digest.sequence, (digest.clone(), receipt.clone()));
                        while cache.len() > self.config.receipt_cache {
                            cache.pop_first();
                        }
                        self.events.push_back(VsEvent::Receipted {
                            gs_id: joined.gs_id,
                            digest: digest.clone(),
                        });
                        receipt
                    }
                };
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
        match self.check_join(now, conn, &request) {
            Ok(ak) => self.admit(ep, now, conn, request, ak),
            Err((reason, detail)) => {
                self.events.push_back(VsEvent::JoinRejected {
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
        let replayed = self.nonce_history.get(&request.gs_id).is_some_and(|history| {
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
        let Some(gs_conn) = self.conns.get_mut(&conn) else {
            return;
        };
        if let Phase::Challenged { nonce, .. } = gs_conn.phase {
            remember_nonce(&mut self.nonce_history, request.gs_id, nonce);
        }
        let mut joined = Box::new(Joined {
            gs_id: request.gs_id,
            ak,
            measurement: measurement_pcr_digest(request.software_hash, request.config_hash),
            sequence: 0,
            next_ticket: now + Duration::from_millis(self.config.ticket_interval_ms),
            last_heard: now,
            nonces: VecDeque::new(),
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
        let mut next_nonce = [0u8; VS_NONCE_LEN];
        self.rng.fill_bytes(&mut next_nonce);
        remember_nonce(&mut self.nonce_history, request.gs_id, next_nonce);
        joined.nonces.push_back(next_nonce);
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
        self.events.push_back(VsEvent::Joined {
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
            if self.by_gs.get(&joined.gs_id) == Some(&conn) {
                self.by_gs.remove(&joined.gs_id);
            }
            self.events.push_back(VsEvent::Deauthorised {
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

fn remember_nonce(
    history: &mut BTreeMap<u64, VecDeque<[u8; VS_NONCE_LEN]>>,
    gs_id: u64,
    nonce: [u8; VS_NONCE_LEN],
) {
    if !history.contains_key(&gs_id) && history.len() >= MAX_HISTORY_GAME_SERVERS {
        history.pop_first();
    }
    let entry = history.entry(gs_id).or_default();
    entry.push_back(nonce);
    if entry.len() > NONCE_HISTORY {
        entry.pop_front();
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
