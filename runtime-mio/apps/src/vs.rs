//! The verification server and a game server attested by it, on real UDP: [`run_vs`] drives a
//! [`Verifier`] beside a server endpoint; [`GsSide`] drives a [`GsAgent`] beside the demo game
//! server (see [`crate::demo::run_server`] with [`ServerOptions::vs`](crate::demo::ServerOptions)).
//!
//! Keys: the verifier signs play tickets with [`VsOptions::issuer`], which game servers and
//! clients trust ([`VsLink::vs_keys`], `ClientOptions::trusted_vs`); every endpoint's,
//! verifier's and agent's [`Secrets`](tickwire_core::Secrets) come from the operating system.
//!
//! TPMs: `simulated` is [`SimulatedTpm`] with an attestation key fresh from the OS each run
//! (so it cannot be enrolled: use it with `VsConfig::allow_unenrolled`); any other spec
//! (`swtpm:host=127.0.0.1,port=2321`, `device:/dev/tpmrm0`) opens a `HardwareTpm` from
//! `tickwire-tpm`, which needs this crate's `tpm` feature (and libtss2 at build time).

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tickwire_core::attest::{PcrSelection, SimulatedTpm, TpmError, TpmProvider, MEASUREMENT_PCR};
use tickwire_core::vs::{
    GsAgent, GsConfig, GsEvent, GsIdentity, Measurement, Revocation, Verifier, VsConfig, VsEvent, VsKeys,
};
use tickwire_core::{Config, Endpoint, Event};

use tickwire_mio::{wall_clock_now, MioRuntime};
use tickwire_udp::os::{os_random, os_secrets};

use crate::demo::{demo_config, DEMO_KEY_ID};
use crate::operator::Operator;
use crate::store::Store;
use tickwire_admin::{CommandRequest, ServerKind, Snapshot};

/// How a game server reaches and proves itself to its verification server.
#[derive(Debug, Clone)]
pub struct VsLink {
    /// The VS's UDP address.
    pub addr: SocketAddr,
    /// Further instances of the VS to fail over to, in order (they share its keys).
    pub failover: Vec<SocketAddr>,
    /// `simulated`, or a TCTI for `HardwareTpm` (`swtpm:host=…,port=…`, `device:/dev/tpmrm0`).
    pub tpm: String,
    /// The keys play tickets must verify against (the VS's public key, [`vs_keys`]).
    pub vs_keys: VsKeys,
    /// Timeouts and intervals (its `gs_id` is overwritten with the demo's).
    pub gs: GsConfig,
    /// SHA-256 of the game server's configuration, the second measurement.
    pub config_sha256: [u8; 32],
}

/// SHA-256 of the running executable: the first measurement.
///
/// # Errors
/// The executable cannot be read.
pub fn binary_sha256() -> io::Result<[u8; 32]> {
    file_sha256(&std::env::current_exe()?)
}

/// SHA-256 of a file.
///
/// # Errors
/// The file cannot be read.
pub fn file_sha256(path: &std::path::Path) -> io::Result<[u8; 32]> {
    Ok(Sha256::digest(std::fs::read(path)?).into())
}

/// SHA-256 of the demo game server's configuration (what `--gs-config` files replace).
pub fn demo_config_sha256(gs: &GsConfig) -> [u8; 32] {
    let text = toml::to_string(gs).unwrap_or_default();
    Sha256::digest(text.as_bytes()).into()
}

/// The keys clients and game servers trust for a VS signing with `key` under the demo's key id
/// (`VsConfig::key_id` must be [`DEMO_KEY_ID`]).
pub fn vs_keys(key: &VerifyingKey) -> VsKeys {
    VsKeys::single(DEMO_KEY_ID, *key)
}

/// Opens the TPM named by `spec` (see the module docs); a simulated one gets its attestation
/// key seed from the OS.
///
/// # Errors
/// The TPM cannot be opened, or `spec` needs the `tpm` feature.
pub fn open_tpm(spec: &str) -> Result<Box<dyn TpmProvider + Send>, TpmError> {
    if spec == "simulated" {
        let seed = os_random().map_err(|e| TpmError::Device(e.to_string()))?;
        return Ok(Box::new(SimulatedTpm::new(seed)));
    }
    #[cfg(feature = "tpm")]
    {
        Ok(Box::new(tickwire_tpm::HardwareTpm::open(spec)?))
    }
    #[cfg(not(feature = "tpm"))]
    {
        Err(TpmError::Device(
            "a TPM other than `simulated` needs a build with the `tpm` feature (cargo build --features tpm)"
                .to_owned(),
        ))
    }
}

/// The game server's VS side: agent, TPM, and what went wrong for good.
pub struct GsSide {
    /// The agent.
    pub agent: GsAgent,
    tpm: Box<dyn TpmProvider + Send>,
    selection: PcrSelection,
    /// Set when the agent gave up (first-ticket timeout, a final refusal).
    pub fatal: Option<String>,
    /// Receipts received for transcript digests.
    pub receipts: u64,
}

impl std::fmt::Debug for GsSide {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GsSide")
            .field("agent", &self.agent)
            .field("fatal", &self.fatal)
            .finish_non_exhaustive()
    }
}

impl GsSide {
    /// Opens the TPM, measures the binary and configuration into PCR 23, and builds the agent
    /// for `endpoint` (game server `gs_id`), with secrets from the OS.
    ///
    /// # Errors
    /// The TPM or the executable cannot be read; the OS has no randomness.
    pub fn new(link: &VsLink, endpoint: &Endpoint, gs_id: u64) -> io::Result<Self> {
        let mut tpm =
            open_tpm(&link.tpm).map_err(|e| io::Error::other(format!("TPM `{}`: {e}", link.tpm)))?;
        let software_sha256 = binary_sha256()?;
        let measured = tpm.read_pcr(MEASUREMENT_PCR).map_err(io::Error::other)?;
        if measured != [0; 32] {
            tracing::warn!(
                "PCR 23 is already extended; the VS will see a measurement mismatch unless it is reset"
            );
        }
        tpm.extend_pcr(MEASUREMENT_PCR, software_sha256)
            .map_err(io::Error::other)?;
        tpm.extend_pcr(MEASUREMENT_PCR, link.config_sha256)
            .map_err(io::Error::other)?;
        let identity = GsIdentity {
            gs_key: endpoint.identity_key(),
            software_hash: software_sha256,
            config_hash: link.config_sha256,
            ak_public: tpm.ak_public().map_err(io::Error::other)?,
        };
        let config = GsConfig {
            gs_id,
            ..link.gs.clone()
        };
        let mut agent = GsAgent::new(
            config,
            os_secrets()?,
            identity,
            link.addr,
            link.vs_keys.clone(),
            None,
            endpoint.wall_clock(),
        );
        for addr in &link.failover {
            agent.add_failover(*addr);
        }
        Ok(Self {
            agent,
            tpm,
            selection: PcrSelection::sha256(&[MEASUREMENT_PCR]).expect("PCR 23 exists"),
            fatal: None,
            receipts: 0,
        })
    }

    /// Drains the agent's events: answers quote requests from the TPM, records what is fatal.
    pub fn pump(&mut self, endpoint: &mut Endpoint, now: Instant) {
        while let Some(event) = self.agent.poll_event() {
            match event {
                GsEvent::NeedQuote { request, extra_data } => {
                    let quote = self.tpm.quote(&extra_data, &self.selection);
                    self.agent.handle_quote(endpoint, now, request, quote);
                }
                GsEvent::FirstTicketTimeout { waited_ms } => {
                    self.fatal = Some(format!(
                        "timeout waiting for the first play ticket after {waited_ms} ms"
                    ));
                }
                GsEvent::Rejected {
                    reason,
                    detail,
                    retrying: false,
                } => {
                    self.fatal = Some(format!("the verification server refused: {reason}: {detail}"));
                }
                GsEvent::Receipt { digest, .. } => {
                    self.receipts += 1;
                    tracing::debug!(
                        sequence = digest.sequence,
                        session_id = digest.session_id,
                        "receipt"
                    );
                }
                GsEvent::Authorised { claims, first } => {
                    let lifetime_ms = claims.expires_at_ms.saturating_sub(claims.issued_at_ms);
                    if first {
                        tracing::info!(
                            sequence = claims.sequence,
                            lifetime_ms,
                            "first play ticket: admitting"
                        );
                    } else {
                        tracing::debug!(sequence = claims.sequence, lifetime_ms, "play ticket renewed");
                    }
                }
                GsEvent::AdmissionsPaused => tracing::warn!("play ticket expired: admissions paused"),
                GsEvent::Resumed => tracing::info!("play ticket back: admissions resumed"),
                GsEvent::SessionsClosed { count } => {
                    tracing::warn!(count, "play ticket starvation: client sessions closed")
                }
                GsEvent::VsLost { retry_in } => {
                    tracing::warn!(
                        retry_in_ms = retry_in.as_millis() as u64,
                        "verification server lost"
                    )
                }
                GsEvent::Rejected { reason, detail, .. } => {
                    tracing::warn!(%reason, detail = detail.as_str(), "verification server refused; retrying")
                }
                other => tracing::info!(?other, "verification agent"),
            }
        }
    }

    /// Runs the agent's timers if due.
    pub fn on_time(&mut self, endpoint: &mut Endpoint, now: Instant) {
        if self.agent.poll_timeout().is_some_and(|t| t <= now) {
            self.agent.handle_timeout(endpoint, now);
        }
        self.pump(endpoint, now);
    }

    /// Offers an endpoint event to the agent; true if it was the VS session's.
    pub fn on_event(&mut self, endpoint: &mut Endpoint, now: Instant, event: &Event) -> bool {
        let consumed = self.agent.handle_endpoint_event(endpoint, now, event);
        self.pump(endpoint, now);
        consumed
    }
}

/// Answers an operator command (`/v1/…` on the admin endpoint) with a status and JSON:
///
/// - `GET /v1/revocations`: the revocations in force.
/// - `GET /v1/game-servers`: enrolled (from the settings), authorised now, revoked for good.
/// - `GET /v1/game-servers/ID/receipts[?session_id=S]`: the receipts kept for a game server
///   (one session's with `session_id`): the audit trail of its transcript digests, and what
///   `tickwire-replay verify --receipts` checks a session recording against.
/// - `POST /v1/game-servers/ID/revoke`: revokes a game server for good (`GS_REVOKED`).
/// - `POST /v1/revocations/client/ID`, `…/key/KEY_ID`, `…/jti/HEX?until_unix_ms=MS`: pushes a
///   join-ticket revocation to every game server, now and at each later join.
fn operator_command(
    command: &CommandRequest,
    verifier: &mut Verifier,
    endpoint: &mut Endpoint,
    now: Instant,
) -> (u16, String) {
    let json = |value: serde_json::Value| value.to_string();
    let bad = |what: String| (400, json(serde_json::json!({ "error": what })));
    let number = |text: &str| {
        text.parse::<u64>()
            .map_err(|_| format!("`{text}` is not a number"))
    };
    let revoke = |verifier: &mut Verifier, endpoint: &mut Endpoint, revocation: Revocation| {
        verifier.revoke(endpoint, now, revocation);
        (200, json(serde_json::json!({ "revoked": revocation })))
    };
    match (command.method(), command.segments().as_slice()) {
        ("GET", ["revocations"]) => {
            let revocations: Vec<&Revocation> = verifier.revocations().collect();
            (200, json(serde_json::json!({ "revocations": revocations })))
        }
        ("GET", ["game-servers"]) => {
            let authorised: Vec<serde_json::Value> = verifier
                .authorised_game_servers()
                .filter_map(|gs_id| {
                    let info = verifier.game_server(gs_id)?;
                    Some(serde_json::json!({
                        "gs_id": gs_id,
                        "tickets_issued": info.tickets_issued,
                        "reattestations": info.reattestations,
                        "sessions": info.sessions,
                    }))
                })
                .collect();
            let revoked: Vec<u64> = verifier.revoked_game_servers().collect();
            let config = verifier.config();
            let body = serde_json::json!({
                "enrolled": config.game_servers,
                "allow_unenrolled": config.allow_unenrolled,
                "authorised": authorised,
                "revoked": revoked,
            });
            (200, json(body))
        }
        ("GET", ["game-servers", gs_id, "receipts"]) => {
            let gs_id = match number(gs_id) {
                Ok(gs_id) => gs_id,
                Err(e) => return bad(e),
            };
            let session = match command.query("session_id").map(number).transpose() {
                Ok(session) => session,
                Err(e) => return bad(e),
            };
            let receipts: Vec<serde_json::Value> = verifier
                .receipts_of(gs_id)
                .filter(|(digest, _)| session.is_none_or(|s| digest.session_id == s))
                .map(|(digest, receipt)| serde_json::json!({ "digest": digest, "receipt": receipt }))
                .collect();
            (
                200,
                json(serde_json::json!({ "gs_id": gs_id, "receipts": receipts })),
            )
        }
        ("POST", ["game-servers", gs_id, "revoke"]) => match number(gs_id) {
            Ok(gs_id) => {
                verifier.revoke_game_server(endpoint, now, gs_id);
                tracing::warn!(gs_id, "game server revoked by the operator");
                (200, json(serde_json::json!({ "revoked_game_server": gs_id })))
            }
            Err(e) => bad(e),
        },
        ("POST", ["revocations", "client", client_id]) => match number(client_id) {
            Ok(client_id) => revoke(verifier, endpoint, Revocation::Client { client_id }),
            Err(e) => bad(e),
        },
        ("POST", ["revocations", "key", key_id]) => match number(key_id).map(u32::try_from) {
            Ok(Ok(key_id)) => revoke(verifier, endpoint, Revocation::Key { key_id }),
            _ => bad(format!("`{key_id}` is not a key id")),
        },
        ("POST", ["revocations", "jti", hex]) => {
            let Some(jti) = parse_jti(hex) else {
                return bad(format!("`{hex}` is not a jti (32 hex digits)"));
            };
            match command.query("until_unix_ms").map(number) {
                Some(Ok(until_unix_ms)) => revoke(verifier, endpoint, Revocation::Jti { jti, until_unix_ms }),
                Some(Err(e)) => bad(e),
                None => bad("give ?until_unix_ms= (the ticket's expiry)".into()),
            }
        }
        _ => (404, json(serde_json::json!({ "error": "no such command" }))),
    }
}

/// A `jti` from 32 hex digits.
fn parse_jti(hex: &str) -> Option<[u8; 16]> {
    if hex.len() != 32 || !hex.is_ascii() {
        return None;
    }
    let mut jti = [0u8; 16];
    for (byte, pair) in jti.iter_mut().zip(hex.as_bytes().chunks(2)) {
        *byte = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(jti)
}

/// Logs a verifier event as a structured `tracing` event.
fn log_vs_event(event: &VsEvent) {
    match event {
        VsEvent::Joined { gs_id, conn } => tracing::info!(gs_id, conn = conn.index(), "game server joined"),
        VsEvent::JoinRejected { conn, reason, detail } => tracing::warn!(
            conn = conn.index(),
            %reason,
            detail = detail.as_str(),
            "game server join rejected"
        ),
        VsEvent::Reattested { gs_id } => tracing::debug!(gs_id, "game server re-attested"),
        VsEvent::Deauthorised { gs_id, reason } => {
            tracing::warn!(gs_id, %reason, "game server deauthorised")
        }
        VsEvent::Receipted { gs_id, digest } => tracing::debug!(
            gs_id,
            sequence = digest.sequence,
            session_id = digest.session_id,
            tick = digest.tick,
            "transcript digest receipted"
        ),
        VsEvent::RevocationDropped { revocation } => {
            tracing::warn!(?revocation, "revocation list full: oldest revocation dropped")
        }
        other => tracing::info!(?other, "verifier event"),
    }
}

/// Options of [`run_vs`].
#[derive(Debug, Clone)]
pub struct VsOptions {
    /// UDP address to listen on.
    pub listen: SocketAddr,
    /// The endpoint's identity key (from a key file, or fresh from the OS).
    pub identity: SigningKey,
    /// The VS signing key: play tickets, receipts, and (in the demo) join tickets, under
    /// `config.key_id`.
    pub issuer: SigningKey,
    /// The endpoint's settings ([`vs_endpoint_config`]).
    pub endpoint: Config,
    /// How long to run.
    pub duration: Duration,
    /// The verifier's settings (allowed measurements, enrolments, timeouts).
    pub config: VsConfig,
    /// Keep what the verifier promises (revocations, nonces, receipts) in this SQLite file, or
    /// the PostgreSQL database a `postgres://` URL names (shared with other instances), and
    /// restore it at start; `None`: in memory only, forgotten at exit.
    pub store: Option<PathBuf>,
    /// Keep the endpoint's QUIC token keys in this file across restarts, so that game servers
    /// still sending to the last run's connections are reset at once
    /// ([`tickwire_udp::os::os_secrets_with_token_key_file`]); `None`: fresh each run.
    pub token_key_file: Option<PathBuf>,
}

/// What a VS run saw.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VsReport {
    /// Game servers admitted (joins).
    pub joins: u64,
    /// Joins refused, with reason.
    pub rejections: Vec<String>,
    /// Re-attestations passed.
    pub reattestations: u64,
    /// Receipts signed.
    pub receipts: u64,
    /// Authorisations withdrawn, with reason.
    pub deauthorisations: Vec<String>,
}

/// The endpoint config of a verification server: the library defaults (rate limits
/// included), admitting game servers.
pub fn vs_endpoint_config() -> Config {
    Config {
        accept_game_servers: true,
        ..demo_config()
    }
}

/// Allows the measurement of `binary` (a file) with the demo's default GS configuration.
///
/// # Errors
/// The file cannot be read.
pub fn allow_binary(config: &mut VsConfig, binary: &std::path::Path) -> io::Result<()> {
    config.measurements.push(Measurement {
        binary_sha256: file_sha256(binary)?,
        config_sha256: demo_config_sha256(&GsConfig::default()),
    });
    Ok(())
}

/// Runs a verification server on `options.listen` for `options.duration`; `ready` gets the
/// bound address (an error before it is a setup error: the address cannot be bound),
/// `progress` is called about once a second.
///
/// # Errors
/// Socket errors; the OS has no randomness.
pub fn run_vs(
    options: &VsOptions,
    ready: impl FnOnce(SocketAddr),
    progress: impl FnMut(&VsReport, Duration),
) -> io::Result<VsReport> {
    run_vs_with(options, &mut Operator::default(), ready, progress)
}

/// [`run_vs`] under `operator`: it stops early, draining, when a signal asks; it publishes
/// metrics snapshots to the admin endpoint and is ready once bound; the final shutdown tells
/// game servers the drain's retry-after and waits up to its timeout.
///
/// # Errors
/// As [`run_vs`].
pub fn run_vs_with(
    options: &VsOptions,
    operator: &mut Operator,
    ready: impl FnOnce(SocketAddr),
    mut progress: impl FnMut(&VsReport, Duration),
) -> io::Result<VsReport> {
    let start = Instant::now();
    let endpoint = Endpoint::builder(
        options.endpoint.clone(),
        crate::demo::endpoint_secrets(options.token_key_file.as_deref())?,
        options.identity.clone(),
        wall_clock_now(),
    )
    .server(0, start)
    .map_err(io::Error::other)?;
    let mut verifier = Verifier::new(
        options.config.clone(),
        os_secrets()?,
        options.issuer.clone(),
        endpoint.wall_clock(),
    );
    let mut store = match &options.store {
        Some(path) => {
            let mut store = Store::open(path)
                .map_err(|e| io::Error::other(format!("--store {}: {e}", path.display())))?;
            // Jti revocations matter until their ticket's expiry plus twice the skew.
            let lapsed = endpoint
                .wall_clock()
                .unix_ms_at(start)
                .saturating_sub(options.config.join_max_skew_ms.saturating_mul(2));
            let state = store.load_verifier(lapsed)?;
            tracing::info!(
                path = %path.display(),
                revocations = state.revocations.len(),
                revoked_game_servers = state.revoked_game_servers.len(),
                nonces = state.nonces.len(),
                receipts = state.receipts.len(),
                "state restored"
            );
            verifier.restore(state);
            verifier.record_facts(true);
            Some(store)
        }
        None => None,
    };
    let mut runtime = MioRuntime::new()?;
    let listen = options.listen;
    let node = runtime
        .bind(listen, endpoint)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {listen}: {e}")))?;
    ready(runtime.local_addr(node)?);
    if store.is_none() {
        tracing::warn!(
            "no --store: revocations, challenge nonces and receipts live in memory only and are \
             forgotten at exit (fine for a demo, not for a deployment)"
        );
    }
    operator.set_ready(true);
    let mut report = VsReport::default();
    let mut last_progress = start;
    while start.elapsed() < options.duration && !operator.stop_requested() {
        let wait = verifier
            .poll_timeout()
            .map_or(Duration::from_millis(50), |t| {
                t.saturating_duration_since(Instant::now())
            })
            .min(Duration::from_millis(50));
        runtime.turn(Some(wait))?;
        let now = Instant::now();
        let endpoint = runtime.endpoint(node);
        // What other instances sharing the store promised since the last turn applies here
        // too, before this turn's events are judged.
        if let Some(store) = &mut store {
            for fact in store.fetch_foreign()? {
                verifier.import(endpoint, now, fact);
            }
        }
        while let Some(event) = endpoint.poll_event() {
            verifier.handle_endpoint_event(endpoint, now, &event);
        }
        while endpoint.poll_tick(now).is_some() {} // a VS has no game: its ticks do nothing
        if verifier.poll_timeout().is_some_and(|t| t <= now) {
            verifier.handle_timeout(endpoint, now);
        }
        let answered: Vec<_> = std::iter::from_fn(|| operator.poll_command())
            .map(|command| {
                let (status, body) = operator_command(&command, &mut verifier, endpoint, now);
                (command, status, body)
            })
            .collect();
        // Write-ahead: what the verifier promised is durable before the packets that carry
        // it leave (and before an operator is told it is done); if it cannot be, they never do.
        if let Some(store) = &mut store {
            let facts: Vec<_> = std::iter::from_fn(|| verifier.poll_fact()).collect();
            if !facts.is_empty() {
                store.persist_facts(facts, options.config.receipt_cache)?;
            }
        }
        for (command, status, body) in answered {
            command.respond(status, body);
        }
        runtime.flush(node);
        while let Some(event) = verifier.poll_event() {
            log_vs_event(&event);
            match event {
                VsEvent::Joined { .. } => report.joins += 1,
                VsEvent::JoinRejected { reason, detail, .. } => {
                    report.rejections.push(format!("{reason}: {detail}"))
                }
                VsEvent::Reattested { .. } => report.reattestations += 1,
                VsEvent::Receipted { .. } => report.receipts += 1,
                VsEvent::Deauthorised { reason, .. } => report.deauthorisations.push(reason.to_string()),
                _ => {}
            }
        }
        if operator.publish_due(now) {
            let snapshot = Snapshot {
                kind: ServerKind::VerificationServer,
                endpoint: runtime.endpoint(node).endpoint_stats(),
                ticks: None,
                gs_agent: None,
                verifier: Some(verifier.stats()),
            };
            operator.publish(now, snapshot);
        }
        if last_progress.elapsed() >= Duration::from_secs(1) {
            last_progress = Instant::now();
            progress(&report, start.elapsed());
        }
    }
    operator.start_draining();
    let grace = if operator.stop_requested() {
        tracing::info!(
            timeout_ms = operator.drain.timeout_ms,
            "draining: signal received"
        );
        operator.drain.timeout()
    } else {
        Duration::from_secs(1)
    };
    runtime.shutdown_with(
        node,
        "verification server stopping",
        Some(operator.drain.retry_after()),
        grace,
    )?;
    Ok(report)
}
