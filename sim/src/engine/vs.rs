//! The verification server in a run: a [`Verifier`] on its own node, a [`GsAgent`] with a
//! [`SimulatedTpm`] beside every game server, and one link each way between each game server
//! and the VS (see [`VsScenario`](crate::scenario::VsScenario)).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Instant;

use ed25519_dalek::SigningKey;
use tickwire_core::attest::{PcrSelection, SimulatedTpm, TpmProvider, MEASUREMENT_PCR};
use tickwire_core::vs::{
    Enrolment, GsAgent, GsConfig, GsEvent, GsIdentity, GsStatus, Measurement, Verifier, VsConfig, VsEvent,
    VsKeys,
};
use tickwire_core::{ConnHandle, Endpoint, Event, Secrets};

use super::behaviour::{Behaviour, Net};
use super::derive;
use crate::link::{Link, Nanos};
use crate::report::reason_name;
use crate::scenario::Scenario;

/// UDP address of the verification server.
pub const VS_ADDR: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 254), 4433));
/// Key id of the VS's ticket and receipt key (the join-ticket issuer has [`super::ISSUER_KEY_ID`]).
pub const VS_KEY_ID: u32 = 2;
/// The binary hash every simulated game server measures into PCR 23.
pub const SIM_BINARY_SHA256: [u8; 32] = [0xB1; 32];
/// The configuration hash every simulated game server measures into PCR 23 after the binary.
pub const SIM_CONFIG_SHA256: [u8; 32] = [0xC0; 32];

/// The VS side of the world: where it is, what it trusts, whether the game servers' paths to
/// it are cut (the links themselves are kept by the nodes sending on them: see [`links`]).
#[derive(Debug, Clone)]
pub(super) struct VsNet {
    /// The VS's node id.
    pub(super) node: usize,
    /// Keys its tickets verify against.
    pub(super) keys: VsKeys,
    /// Its endpoint's identity key (game servers pin it).
    pub(super) identity: [u8; 32],
    /// Per game server: partition counters of its path to the VS, (GS → VS, VS → GS).
    pub(super) cuts: Vec<(u32, u32)>,
}

impl VsNet {
    pub(super) fn new(scenario: &Scenario, node: usize, key: &SigningKey, identity: [u8; 32]) -> Self {
        Self {
            node,
            keys: VsKeys::single(VS_KEY_ID, key.verifying_key()),
            identity,
            cuts: vec![(0, 0); scenario.topology.servers],
        }
    }
}

/// The links between each game server and the VS: (GS → VS per server, VS → GS per server).
pub(super) fn links(scenario: &Scenario, seed: u64) -> (Vec<Link>, Vec<Link>) {
    let spec = scenario
        .vs
        .as_ref()
        .and_then(|vs| scenario.link(&vs.link))
        .expect("validated");
    (0..scenario.topology.servers)
        .map(|s| {
            (
                Link::new(&spec, derive(seed, "vs-link/up", s as u64, 0)),
                Link::new(&spec, derive(seed, "vs-link/down", s as u64, 0)),
            )
        })
        .unzip()
}

/// The VS signing key of a run.
pub(super) fn vs_key(seed: u64) -> SigningKey {
    SigningKey::from_bytes(&derive(seed, "vs-key", 0, 0))
}

/// Game server `s`'s TPM, as it is after a (re)boot: AK from the machine's seed, PCR 23
/// holding the measurement of [`SIM_BINARY_SHA256`] and [`SIM_CONFIG_SHA256`].
fn boot_tpm(seed: u64, s: usize) -> SimulatedTpm {
    let mut tpm = SimulatedTpm::new(derive(seed, "tpm", s as u64, 0));
    for digest in [SIM_BINARY_SHA256, SIM_CONFIG_SHA256] {
        tpm.extend_pcr(MEASUREMENT_PCR, digest)
            .expect("PCR 23 exists in the simulated bank");
    }
    tpm
}

/// The verifier's configuration: the scenario's, with the simulated measurement allowed and
/// every game server enrolled with its identity key and AK pinned.
pub(super) fn verifier_config(scenario: &Scenario, seed: u64, gs_keys: &[[u8; 32]]) -> VsConfig {
    let base = scenario
        .vs
        .as_ref()
        .map(|vs| vs.verifier.clone())
        .unwrap_or_default();
    VsConfig {
        key_id: VS_KEY_ID,
        measurements: vec![Measurement {
            binary_sha256: SIM_BINARY_SHA256,
            config_sha256: SIM_CONFIG_SHA256,
        }],
        game_servers: gs_keys
            .iter()
            .enumerate()
            .map(|(s, key)| Enrolment {
                gs_id: s as u64 + 1,
                identity_key: Some(*key),
                ak_public: Some(boot_tpm(seed, s).ak_public().expect("simulated").0),
            })
            .collect(),
        allow_unenrolled: false,
        ..base
    }
}

/// The VS node's application.
#[derive(Debug)]
pub(super) struct VsApp {
    pub(super) verifier: Verifier,
}

impl VsApp {
    /// The verifier of incarnation `incarnation` of a run with seed `seed`.
    pub(super) fn new(
        config: VsConfig,
        seed: u64,
        incarnation: u64,
        key: SigningKey,
        endpoint: &Endpoint,
    ) -> Self {
        let secrets = Secrets::from_bytes(derive(seed, "verifier", incarnation, 0));
        Self {
            verifier: Verifier::new(config, secrets, key, endpoint.wall_clock()),
        }
    }

    fn drain(&mut self, net: &mut Net<'_>) {
        let Some(m) = net.metrics().vs.as_mut() else {
            return;
        };
        while let Some(event) = self.verifier.poll_event() {
            match event {
                VsEvent::Joined { .. } => m.joins += 1,
                VsEvent::JoinRejected { reason, .. } => {
                    *m.join_rejections.entry(reason_name(reason)).or_default() += 1;
                }
                VsEvent::Reattested { .. } => m.reattestations += 1,
                VsEvent::Deauthorised { reason, .. } => {
                    *m.deauthorised.entry(reason_name(reason)).or_default() += 1;
                }
                VsEvent::Receipted { .. } => m.receipts_signed += 1,
                _ => {}
            }
        }
    }
}

impl Behaviour for VsApp {
    fn handle_time(&mut self, endpoint: &mut Endpoint, net: &mut Net<'_>) {
        if self.verifier.poll_timeout().is_some_and(|t| t <= net.local()) {
            self.verifier.handle_timeout(endpoint, net.local());
        }
        self.drain(net);
    }

    fn handle_event(&mut self, endpoint: &mut Endpoint, net: &mut Net<'_>, event: Event) {
        self.verifier.handle_endpoint_event(endpoint, net.local(), &event);
        self.drain(net);
    }

    fn poll_timeout(&self, _endpoint: &Endpoint) -> Option<Instant> {
        self.verifier.poll_timeout()
    }
}

/// A game server's VS side: the agent, its TPM, and its sessions' transcript ids.
#[derive(Debug)]
pub(super) struct GsVs {
    pub(super) agent: GsAgent,
    tpm: SimulatedTpm,
    selection: PcrSelection,
    /// Session id of each live client session, for its transcript.
    session_ids: BTreeMap<ConnHandle, u64>,
    /// Virtual time of the last play ticket received (or of the start, before the first).
    pub(super) last_ticket: Nanos,
    started: Nanos,
    first: bool,
}

impl GsVs {
    /// Boots game server `s`'s TPM and starts its agent on `endpoint`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn start(
        config: &GsConfig,
        seed: u64,
        s: usize,
        incarnation: u64,
        vs: &VsNet,
        endpoint: &mut Endpoint,
        local: Instant,
        now: Nanos,
    ) -> Self {
        let mut tpm = boot_tpm(seed, s);
        let identity = GsIdentity {
            gs_key: endpoint.identity_key(),
            software_hash: SIM_BINARY_SHA256,
            config_hash: SIM_CONFIG_SHA256,
            ak_public: tpm.ak_public().expect("simulated"),
        };
        let config = GsConfig {
            gs_id: s as u64 + 1,
            ..config.clone()
        };
        let mut agent = GsAgent::new(
            config,
            Secrets::from_bytes(derive(seed, "gs-agent", s as u64, incarnation)),
            identity,
            VS_ADDR,
            vs.keys.clone(),
            Some(vs.identity),
            endpoint.wall_clock(),
        );
        agent.start(endpoint, local);
        Self {
            agent,
            tpm,
            selection: PcrSelection::sha256(&[MEASUREMENT_PCR]).expect("PCR 23 exists"),
            session_ids: BTreeMap::new(),
            last_ticket: now,
            started: now,
            first: true,
        }
    }

    /// Offers an endpoint event to the agent (true: it was the VS session's) and chains
    /// client inputs into transcripts.
    pub(super) fn on_event(&mut self, endpoint: &mut Endpoint, event: &Event, net: &mut Net<'_>) -> bool {
        let consumed = self.agent.handle_endpoint_event(endpoint, net.local(), event);
        if !consumed {
            match event {
                Event::Connected { conn, .. } => {
                    if let Some(session) = endpoint.session(*conn) {
                        self.session_ids.insert(*conn, session.session_id);
                    }
                }
                Event::Message { conn, payload, .. } => {
                    if let (Some(&id), Some(tick)) = (self.session_ids.get(conn), endpoint.current_tick()) {
                        self.agent.record_input(id, tick, payload);
                    }
                }
                Event::Disconnected { conn, .. } => {
                    if let Some(id) = self.session_ids.remove(conn) {
                        self.agent.end_session(id);
                    }
                }
                _ => {}
            }
        }
        self.pump(endpoint, net);
        consumed
    }

    /// Runs the agent's timers if due.
    pub(super) fn on_time(&mut self, endpoint: &mut Endpoint, net: &mut Net<'_>) {
        if self.agent.poll_timeout().is_some_and(|t| t <= net.local()) {
            self.agent.handle_timeout(endpoint, net.local());
        }
        self.pump(endpoint, net);
    }

    fn pump(&mut self, endpoint: &mut Endpoint, net: &mut Net<'_>) {
        while let Some(event) = self.agent.poll_event() {
            if let GsEvent::NeedQuote { request, extra_data } = event {
                let quote = self.tpm.quote(&extra_data, &self.selection);
                self.agent.handle_quote(endpoint, net.local(), request, quote);
            } else {
                self.record(net, event);
            }
        }
    }

    fn record(&mut self, net: &mut Net<'_>, event: GsEvent) {
        if let GsEvent::Receipt { digest, receipt } = &event {
            net.keep_receipt(digest.clone(), receipt.clone());
        }
        let now = net.now();
        let Some(m) = net.metrics().vs.as_mut() else {
            return;
        };
        match event {
            GsEvent::Authorised { .. } => {
                m.tickets_received += 1;
                if self.first {
                    self.first = false;
                    m.first_ticket_ms.push((now - self.started) as f64 / 1e6);
                } else {
                    m.max_ticket_gap_ns = m.max_ticket_gap_ns.max(now - self.last_ticket);
                }
                self.last_ticket = now;
            }
            GsEvent::AdmissionsPaused => m.admissions_paused += 1,
            GsEvent::SessionsClosed { count } => m.sessions_closed_starved += count as u64,
            GsEvent::Resumed => m.resumed += 1,
            GsEvent::VsLost { .. } => m.vs_lost += 1,
            GsEvent::Receipt { .. } => m.receipts_received += 1,
            GsEvent::DigestAbandoned { .. } => m.digests_abandoned += 1,
            GsEvent::FirstTicketTimeout { waited_ms } => m
                .failures
                .push(format!("first play ticket timed out after {waited_ms} ms")),
            GsEvent::Rejected {
                reason,
                detail,
                retrying: false,
            } => m
                .failures
                .push(format!("refused: {}: {detail}", reason_name(reason))),
            _ => {}
        }
    }

    /// Whether the agent holds a valid ticket.
    pub(super) fn authorised(&self) -> bool {
        self.agent.status() == GsStatus::Authorised
    }
}
