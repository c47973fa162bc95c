//! The game server ↔ verification server protocol end to end, in virtual time: one VS, one GS
//! with a simulated TPM, and clients, on the in-memory network. Each failure mode in the
//! GS-VS protocol (`PROTOCOL.md` §8.10) has a test here; the real-socket and swtpm runs are in
//! `tests/` and `tpm/`.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use tickwire_core::attest::MEASUREMENT_PCR;
use tickwire_core::attest::{
    quote_extra_data, ObjectAttributes, PcrSelection, Quote, SimulatedTpm, TpmProvider,
};
use tickwire_core::config::Config;
use tickwire_core::testing::{App, Fate, LinkModel, Net, GS_ID};
use tickwire_core::vs::{
    GsAgent, GsConfig, GsEvent, GsIdentity, GsStatus, Measurement, ProtectedReceipt, ReceiptClaims,
    Revocation, TranscriptChain, TranscriptDigest, Verifier, VerifierState, VsConfig, VsEvent, VsFact,
    VsKeys, VsMessage, VS_CHANNEL,
};
use tickwire_core::{ConnHandle, ConnectOptions, Endpoint, Event, Initiator, ReasonCode, Secrets};

const BINARY: [u8; 32] = [0xB1; 32];
const CONFIG_HASH: [u8; 32] = [0xC0; 32];
const VS_KEY_ID: u32 = 7;
/// The verifier's signing key seed (tests forge receipts with it).
const VS_KEY_SEED: [u8; 32] = [0x5A; 32];
const SECOND: Duration = Duration::from_secs(1);

/// The VS node's app: the verifier, plus a switch that swallows transcript digests unanswered.
#[derive(Debug)]
struct Vs {
    verifier: Verifier,
    events: Vec<VsEvent>,
    mute_digests: bool,
    digests_seen: Vec<u64>,
    digests: Vec<TranscriptDigest>,
}

impl App for Vs {
    fn on_event(&mut self, ep: &mut Endpoint, now: Instant, event: &Event) -> bool {
        if let Event::Message { payload, .. } = event {
            if let Ok(VsMessage::Digest(digest)) = VsMessage::decode(payload) {
                self.digests_seen.push(digest.sequence);
                self.digests.push(digest.clone());
                if self.mute_digests {
                    return true;
                }
            }
        }
        let consumed = self.verifier.handle_endpoint_event(ep, now, event);
        self.events
            .extend(std::iter::from_fn(|| self.verifier.poll_event()));
        consumed
    }

    fn on_timeout(&mut self, ep: &mut Endpoint, now: Instant) {
        self.verifier.handle_timeout(ep, now);
        self.events
            .extend(std::iter::from_fn(|| self.verifier.poll_event()));
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.verifier.poll_timeout()
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}

/// How the GS answers quote requests: honestly, or as an attacker would.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quotes {
    Honest,
    /// Answers every request after the first with the first quote.
    ReplayFirst,
    /// Quotes over another identity key's binding.
    ForeignKey,
}

/// The GS node's app: the agent, a simulated TPM, and the events it produced.
#[derive(Debug)]
struct Gs {
    agent: GsAgent,
    tpm: SimulatedTpm,
    quotes: Quotes,
    first_quote: Option<Quote>,
    events: Vec<GsEvent>,
}

impl Gs {
    fn pump(&mut self, ep: &mut Endpoint, now: Instant) {
        while let Some(event) = self.agent.poll_event() {
            if let GsEvent::NeedQuote { request, extra_data } = &event {
                let selection = PcrSelection::sha256(&[MEASUREMENT_PCR]).unwrap();
                let extra = match self.quotes {
                    Quotes::ForeignKey => quote_extra_data(&[0; 32], &[0xEE; 32], GS_ID),
                    _ => *extra_data,
                };
                let fresh = self.tpm.quote(&extra, &selection);
                let quote = match (&self.first_quote, self.quotes) {
                    (Some(first), Quotes::ReplayFirst) => Ok(first.clone()),
                    _ => fresh,
                };
                if self.first_quote.is_none() {
                    self.first_quote = quote.clone().ok();
                }
                self.agent.handle_quote(ep, now, *request, quote);
            }
            self.events.push(event);
        }
    }
}

impl App for Gs {
    fn on_event(&mut self, ep: &mut Endpoint, now: Instant, event: &Event) -> bool {
        let consumed = self.agent.handle_endpoint_event(ep, now, event);
        self.pump(ep, now);
        consumed
    }

    fn on_timeout(&mut self, ep: &mut Endpoint, now: Instant) {
        self.agent.handle_timeout(ep, now);
        self.pump(ep, now);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.agent.poll_timeout()
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}

/// What a test varies.
struct Setup {
    vs: VsConfig,
    gs: GsConfig,
    /// The binary hash the TPM measures (the GS always claims [`BINARY`]).
    measured_binary: [u8; 32],
    ak_attributes: ObjectAttributes,
    quotes: Quotes,
    gs_skew_ms: i64,
    /// The verifier's clock offset from the network's (the VS endpoint's stays exact).
    vs_skew_ms: i64,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            vs: VsConfig {
                key_id: VS_KEY_ID,
                measurements: vec![Measurement {
                    binary_sha256: BINARY,
                    config_sha256: CONFIG_HASH,
                }],
                allow_unenrolled: true,
                ..VsConfig::default()
            },
            gs: GsConfig {
                gs_id: GS_ID,
                ..GsConfig::default()
            },
            measured_binary: BINARY,
            ak_attributes: ObjectAttributes::AK_REQUIRED,
            quotes: Quotes::Honest,
            gs_skew_ms: 0,
            vs_skew_ms: 0,
        }
    }
}

struct World {
    net: Net,
    vs: usize,
    gs: usize,
    keys: VsKeys,
}

impl World {
    fn new(setup: Setup) -> World {
        let mut net = Net::new(tickwire_core::testing::epoch(), 5);
        let vs = net.add_server(Config {
            accept_game_servers: true,
            ..Net::config()
        });
        let gs_wall = net.wall_clock().skewed(setup.gs_skew_ms);
        let gs = net.add_server_with(Net::config(), gs_wall);
        let vs_key = SigningKey::from_bytes(&VS_KEY_SEED);
        let verifier = Verifier::new(
            setup.vs,
            Secrets::insecure_from_seed(11),
            vs_key,
            net.wall_clock().skewed(setup.vs_skew_ms),
        );
        let keys = verifier.keys();
        net.set_app(
            vs,
            Vs {
                verifier,
                events: Vec::new(),
                mute_digests: false,
                digests_seen: Vec::new(),
                digests: Vec::new(),
            },
        );
        let mut tpm = SimulatedTpm::with_attributes([3; 32], setup.ak_attributes);
        tpm.extend_pcr(MEASUREMENT_PCR, setup.measured_binary).unwrap();
        tpm.extend_pcr(MEASUREMENT_PCR, CONFIG_HASH).unwrap();
        let identity = GsIdentity {
            gs_key: net.node(gs).identity.verifying_key().to_bytes(),
            software_hash: BINARY,
            config_hash: CONFIG_HASH,
            ak_public: tpm.ak_public().unwrap(),
        };
        let vs_identity = net.node(vs).identity.verifying_key().to_bytes();
        let agent = GsAgent::new(
            setup.gs,
            Secrets::insecure_from_seed(12),
            identity,
            net.node(vs).addr,
            keys.clone(),
            Some(vs_identity),
            gs_wall,
        );
        net.set_app(
            gs,
            Gs {
                agent,
                tpm,
                quotes: setup.quotes,
                first_quote: None,
                events: Vec::new(),
            },
        );
        let now = net.now;
        let (app, ep) = net.node_mut(gs).app_mut::<Gs>();
        app.agent.start(ep, now);
        app.pump(ep, now);
        net.drain(gs);
        World { net, vs, gs, keys }
    }

    fn gs(&self) -> &Gs {
        self.net.node(self.gs).app::<Gs>()
    }

    fn vs(&self) -> &Vs {
        self.net.node(self.vs).app::<Vs>()
    }

    fn status(&self) -> GsStatus {
        self.gs().agent.status()
    }

    fn run_until_status(&mut self, status: GsStatus, max: Duration) {
        let gs = self.gs;
        assert!(
            self.net
                .run_until(max, |net| net.node(gs).app::<Gs>().agent.status() == status),
            "GS never reached {status:?}; events: {:?}",
            self.gs().events
        );
    }

    /// A client with a VS-issued join ticket that checks the GS's play ticket.
    fn client_connects(&mut self, seed: u64) -> (usize, ConnHandle) {
        let client = self.net.add_client(Net::config());
        let client_key = self.net.node(client).identity.verifying_key().to_bytes();
        let now = self.net.now;
        let (vs, _) = self.net.node_mut(self.vs).app_mut::<Vs>();
        let ticket = vs.verifier.issue_join_ticket(now, seed, client_key, GS_ID, 0);
        let options = ConnectOptions {
            trusted_vs_keys: Some(self.keys.clone()),
            ..ConnectOptions::default()
        };
        let conn = self.net.connect_with(client, self.gs, ticket, options);
        (client, conn)
    }

    fn client_joins(&mut self, seed: u64) -> (usize, ConnHandle) {
        let (client, conn) = self.client_connects(seed);
        assert!(
            self.net.run_until(5 * SECOND, |net| net
                .node(client)
                .endpoint
                .session(conn)
                .is_some()),
            "client did not join: {:?}",
            self.net.node(client).events
        );
        (client, conn)
    }

    fn join_rejection(&self) -> Option<ReasonCode> {
        self.join_rejections().first().copied()
    }

    fn join_rejections(&self) -> Vec<ReasonCode> {
        self.vs()
            .events
            .iter()
            .filter_map(|e| match e {
                VsEvent::JoinRejected { reason, .. } => Some(*reason),
                _ => None,
            })
            .collect()
    }

    fn joins(&self) -> usize {
        let joins = self.vs().events.iter();
        joins.filter(|e| matches!(e, VsEvent::Joined { .. })).count()
    }

    /// The VS ends the GS's session (as on a VS-side failure); the GS will reconnect.
    fn vs_drops_the_gs(&mut self) {
        let now = self.net.now;
        let vs_conn = self.vs().verifier.game_server(GS_ID).unwrap().conn;
        self.net
            .node_mut(self.vs)
            .endpoint
            .close(now, vs_conn, ReasonCode::SERVER_SHUTDOWN, "restart");
        self.net.drain(self.vs);
        assert!(self.vs().verifier.game_server(GS_ID).is_none());
    }

    fn revoke(&mut self, revocation: Revocation) {
        let now = self.net.now;
        let (vs, ep) = self.net.node_mut(self.vs).app_mut::<Vs>();
        vs.verifier.revoke(ep, now, revocation);
        vs.events.extend(std::iter::from_fn(|| vs.verifier.poll_event()));
        self.net.drain(self.vs);
    }

    fn revocations_applied(&self) -> Vec<Revocation> {
        self.gs()
            .events
            .iter()
            .filter_map(|e| match e {
                GsEvent::Revoked(revocation) => Some(*revocation),
                _ => None,
            })
            .collect()
    }

    /// The client's session survived, no session was closed for starvation, and the GS is
    /// authorised.
    fn assert_session_kept(&self, client: usize, conn: ConnHandle) {
        assert!(self.net.node(client).endpoint.session(conn).is_some());
        let closed = self
            .gs()
            .events
            .iter()
            .any(|e| matches!(e, GsEvent::SessionsClosed { .. }));
        assert!(!closed, "{:?}", self.gs().events);
        assert_eq!(self.status(), GsStatus::Authorised);
    }

    fn vs_path_isolated(&mut self, cut: bool) {
        self.net.node_mut(self.vs).isolated = cut;
    }
}

#[test]
fn a_gs_attests_gets_renewed_tickets_and_clients_verify_them() {
    let mut w = World::new(Setup::default());
    w.run_until_status(GsStatus::Authorised, 5 * SECOND);
    let (client, conn) = w.client_joins(100);
    let session = w.net.node(client).endpoint.session(conn).unwrap().clone();
    let ticket = session.play_ticket.expect("the client checked the play ticket");
    assert_eq!(ticket.gs_id, GS_ID);
    assert_eq!(
        ticket.gs_key,
        w.net.node(w.gs).identity.verifying_key().to_bytes()
    );

    w.net.run_for(20 * SECOND);
    let info = w.vs().verifier.game_server(GS_ID).unwrap().clone();
    assert!(info.tickets_issued >= 10, "{info:?}");
    assert!(
        info.reattestations >= 1,
        "one re-attestation per 10 heartbeats: {info:?}"
    );
    assert_eq!(info.sessions, 1);
    assert!(w.gs().agent.ticket().unwrap().sequence >= 10);
    assert_eq!(w.status(), GsStatus::Authorised);
    assert!(w.net.node(client).endpoint.session(conn).is_some());
    assert!(!w.gs().events.iter().any(|e| matches!(e, GsEvent::VsLost { .. })));
}

#[test]
fn transcript_receipts_verify_offline_against_the_recomputed_chain() {
    let mut w = World::new(Setup::default());
    w.run_until_status(GsStatus::Authorised, 5 * SECOND);
    let (app, _) = w.net.node_mut(w.gs).app_mut::<Gs>();
    let mut replica = TranscriptChain::new(9);
    for tick in 1..=120u64 {
        let input = tick.to_be_bytes();
        app.agent.record_input(9, tick, &input);
        replica.record(tick, &input);
    }
    w.net.run_for(3 * SECOND);
    let receipts: Vec<_> = w
        .gs()
        .events
        .iter()
        .filter_map(|e| match e {
            GsEvent::Receipt { digest, receipt } => Some((digest.clone(), receipt.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(receipts.len(), 1);
    let (digest, receipt) = &receipts[0];
    let claims = receipt.verify(&w.keys).expect("receipt verifies offline");
    assert_eq!(claims.digest, replica.head());
    assert_eq!((claims.session_id, claims.tick, claims.gs_id), (9, 120, GS_ID));
    assert_eq!(digest.inputs, 120);
    assert_eq!(w.gs().agent.pending_digests(), 0);
}

#[test]
fn a_slow_vs_at_startup_fails_fast_with_a_clear_error_and_clients_are_told_why() {
    let mut w = World::new(Setup::default());
    w.vs_path_isolated(true);
    let (client, conn) = w.client_connects(100);
    let (reason, _, _) = w.net.run_until_rejected(client, conn, 5 * SECOND);
    assert_eq!(reason, ReasonCode::NOT_AUTHORISED);
    w.run_until_status(GsStatus::Failed, 31 * SECOND);
    assert!(w.net.elapsed() >= 30 * SECOND);
    assert!(w
        .gs()
        .events
        .iter()
        .any(|e| matches!(e, GsEvent::FirstTicketTimeout { waited_ms: 30_000 })));
    assert_eq!(
        w.gs().agent.poll_timeout(),
        None,
        "a failed agent never wakes again"
    );
}

#[test]
fn an_unanswered_transcript_digest_times_out_and_is_retried_with_backoff() {
    let mut w = World::new(Setup::default());
    w.run_until_status(GsStatus::Authorised, 5 * SECOND);
    w.net.node_mut(w.vs).app_mut::<Vs>().0.mute_digests = true;
    w.net
        .node_mut(w.gs)
        .app_mut::<Gs>()
        .0
        .agent
        .record_input(1, 1, b"jump");
    // Sent with the next heartbeat (within 1 s), then retried 15 s later plus ~100 ms backoff.
    w.net.run_for(15 * SECOND);
    assert_eq!(w.vs().digests_seen, vec![1], "sent once, not yet retried");
    w.net.run_for(2 * SECOND);
    assert_eq!(w.vs().digests_seen, vec![1, 1], "retried once");
    w.net.node_mut(w.vs).app_mut::<Vs>().0.mute_digests = false;
    w.net.run_for(17 * SECOND);
    assert_eq!(w.vs().digests_seen, vec![1, 1, 1]);
    assert!(w.gs().events.iter().any(|e| matches!(e, GsEvent::Receipt { .. })));
    assert_eq!(w.gs().agent.pending_digests(), 0);
    assert_eq!(
        w.status(),
        GsStatus::Authorised,
        "the heartbeat loop never blocked"
    );
}

#[test]
fn digests_wait_while_the_outstanding_window_is_full() {
    let mut w = World::new(Setup {
        gs: GsConfig {
            gs_id: GS_ID,
            max_outstanding_digests: 3,
            ..GsConfig::default()
        },
        ..Setup::default()
    });
    w.run_until_status(GsStatus::Authorised, 5 * SECOND);
    w.net.node_mut(w.vs).app_mut::<Vs>().0.mute_digests = true;
    let (gs, _) = w.net.node_mut(w.gs).app_mut::<Gs>();
    for session in 1..=10 {
        gs.agent.record_input(session, 1, b"jump");
    }
    // Ten sessions to digest, three may be outstanding: the rest wait, and no deadline of a
    // waiting digest spins the agent.
    w.net.run_for(10 * SECOND);
    assert_eq!(w.vs().digests_seen, vec![1, 2, 3]);
    // Once the VS answers (the retries after the 15 s timeout), the window moves on.
    w.net.node_mut(w.vs).app_mut::<Vs>().0.mute_digests = false;
    w.net.run_for(40 * SECOND);
    let mut seen = w.vs().digests_seen.clone();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen, (1..=10).collect::<Vec<u64>>());
    assert_eq!(w.gs().agent.pending_digests(), 0);
}

#[test]
fn a_retried_digest_gets_the_same_receipt() {
    let mut w = World::new(Setup::default());
    w.run_until_status(GsStatus::Authorised, 5 * SECOND);
    let gs_conn = w.gs().agent.vs_conn().unwrap();
    let vs_conn = w.vs().verifier.game_server(GS_ID).unwrap().conn;
    let digest = tickwire_core::vs::TranscriptDigest {
        sequence: 77,
        session_id: 3,
        tick: 10,
        inputs: 10,
        digest: [4; 32],
    };
    for _ in 0..2 {
        let now = w.net.now;
        let payload = VsMessage::Digest(digest.clone()).encode();
        w.net
            .node_mut(w.gs)
            .endpoint
            .send(now, gs_conn, tickwire_core::vs::VS_CHANNEL, payload.into())
            .unwrap();
        w.net.drain(w.gs);
        w.net.run_for(SECOND);
    }
    let receipts: Vec<_> = w
        .net
        .node(w.gs)
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Message { conn, payload, .. } if *conn == gs_conn => match VsMessage::decode(payload) {
                Ok(VsMessage::Receipt {
                    sequence: 77,
                    receipt,
                }) => Some(receipt),
                _ => None,
            },
            _ => None,
        })
        .collect();
    let _ = vs_conn;
    // The agent consumes messages of its VS session, so the receipts reach its app as
    // unmatched (it has no pending digest 77) and are dropped there; count them at the VS.
    assert!(receipts.is_empty());
    let receipted = w
        .vs()
        .events
        .iter()
        .filter(|e| matches!(e, VsEvent::Receipted { digest, .. } if digest.sequence == 77))
        .count();
    assert_eq!(
        receipted, 1,
        "the retry was answered from the cache, not signed again"
    );
}

#[test]
fn ticket_delivery_delayed_five_seconds_keeps_sessions() {
    let mut w = World::new(Setup::default());
    w.run_until_status(GsStatus::Authorised, 5 * SECOND);
    let (client, conn) = w.client_joins(100);
    let delaying = Rc::new(Cell::new(true));
    let (vs_addr, gs_addr) = (w.net.node(w.vs).addr, w.net.node(w.gs).addr);
    let flag = delaying.clone();
    w.net.set_filter(move |p| {
        if flag.get() && p.from == vs_addr && p.to == gs_addr {
            Fate::Delay(5 * SECOND)
        } else {
            Fate::Deliver
        }
    });
    w.net.run_for(3 * SECOND);
    delaying.set(false);
    w.net.run_for(20 * SECOND);
    w.assert_session_kept(client, conn);
}

#[test]
fn a_vs_outage_shorter_than_starvation_loses_no_session() {
    let mut w = World::new(Setup::default());
    w.run_until_status(GsStatus::Authorised, 5 * SECOND);
    let (client, conn) = w.client_joins(100);
    w.vs_path_isolated(true);
    w.net.run_for(4 * SECOND);
    w.vs_path_isolated(false);
    w.net.run_for(20 * SECOND);
    w.assert_session_kept(client, conn);
}

#[test]
fn a_vs_outage_longer_than_starvation_pauses_admissions_then_closes_sessions_then_recovers() {
    let mut w = World::new(Setup::default());
    w.run_until_status(GsStatus::Authorised, 5 * SECOND);
    let (client, conn) = w.client_joins(100);
    w.vs_path_isolated(true);
    w.run_until_status(GsStatus::AdmissionsPaused, 7 * SECOND);
    let (late, late_conn) = w.client_connects(101);
    let (reason, _, _) = w.net.run_until_rejected(late, late_conn, 5 * SECOND);
    assert_eq!(reason, ReasonCode::NOT_AUTHORISED);
    assert!(
        w.net.node(client).endpoint.session(conn).is_some(),
        "sessions continue while paused"
    );

    w.run_until_status(GsStatus::Starved, 5 * SECOND);
    let (reason, _, _) = w.net.run_until_disconnected(client, conn, 5 * SECOND);
    assert_eq!(reason, ReasonCode::NOT_AUTHORISED);

    w.vs_path_isolated(false);
    w.run_until_status(GsStatus::Authorised, 30 * SECOND);
    assert!(w.gs().events.iter().any(|e| matches!(e, GsEvent::Resumed)));
    w.client_joins(102);
}

#[test]
fn a_500_ms_rtt_causes_no_false_timeouts() {
    let mut w = World::new(Setup::default());
    w.net.link = LinkModel {
        latency: Duration::from_millis(250),
        ..LinkModel::default()
    };
    w.run_until_status(GsStatus::Authorised, 10 * SECOND);
    let (client, conn) = w.client_joins(100);
    w.net.run_for(60 * SECOND);
    assert!(w.net.node(client).endpoint.session(conn).is_some());
    let gs_events = &w.gs().events;
    assert!(
        !gs_events.iter().any(|e| matches!(
            e,
            GsEvent::VsLost { .. } | GsEvent::AdmissionsPaused | GsEvent::SessionsClosed { .. }
        )),
        "{gs_events:?}"
    );
    assert!(!w
        .vs()
        .events
        .iter()
        .any(|e| matches!(e, VsEvent::Deauthorised { .. })));
}

#[test]
fn a_modified_binary_is_rejected_for_its_measurement() {
    let mut w = World::new(Setup {
        measured_binary: [0xBA; 32],
        ..Setup::default()
    });
    w.net.run_for(3 * SECOND);
    assert_eq!(w.join_rejection(), Some(ReasonCode::MEASUREMENT_MISMATCH));
    assert_eq!(w.status(), GsStatus::Failed, "not retryable");
}

#[test]
fn an_unrestricted_attestation_key_is_rejected() {
    let mut w = World::new(Setup {
        ak_attributes: ObjectAttributes(ObjectAttributes::AK_REQUIRED.0 & !ObjectAttributes::RESTRICTED.0),
        ..Setup::default()
    });
    w.net.run_for(3 * SECOND);
    assert_eq!(w.join_rejection(), Some(ReasonCode::AK_REJECTED));
}

#[test]
fn a_quote_bound_to_another_key_is_rejected() {
    let mut w = World::new(Setup {
        quotes: Quotes::ForeignKey,
        ..Setup::default()
    });
    w.net.run_for(3 * SECOND);
    assert_eq!(w.join_rejection(), Some(ReasonCode::QUOTE_BINDING_MISMATCH));
}

#[test]
fn a_replayed_quote_is_rejected_as_a_replay() {
    let mut w = World::new(Setup {
        quotes: Quotes::ReplayFirst,
        ..Setup::default()
    });
    w.run_until_status(GsStatus::Authorised, 5 * SECOND);
    // Drop the session; the reconnection's join answers the new challenge with the old quote.
    let now = w.net.now;
    let vs_conn = w.vs().verifier.game_server(GS_ID).unwrap().conn;
    w.net
        .node_mut(w.vs)
        .endpoint
        .close(now, vs_conn, ReasonCode::SERVER_SHUTDOWN, "restart");
    w.net.drain(w.vs);
    w.net.run_for(5 * SECOND);
    assert_eq!(w.join_rejection(), Some(ReasonCode::QUOTE_REPLAYED));
}

#[test]
fn an_unenrolled_gs_and_a_skewed_clock_are_rejected_with_their_reasons() {
    let mut unenrolled = Setup::default();
    unenrolled.vs.allow_unenrolled = false;
    let mut w = World::new(unenrolled);
    w.net.run_for(3 * SECOND);
    assert_eq!(w.join_rejection(), Some(ReasonCode::UNKNOWN_GAME_SERVER));

    let mut w = World::new(Setup {
        gs_skew_ms: 45_000,
        ..Setup::default()
    });
    w.net.run_for(3 * SECOND);
    assert_eq!(w.join_rejection(), Some(ReasonCode::JOIN_CLOCK_SKEW));
    assert_ne!(w.status(), GsStatus::Failed, "a skewed clock is retryable");
}

#[test]
fn join_tickets_for_another_gs_expired_replayed_or_revoked_are_rejected() {
    let mut w = World::new(Setup::default());
    w.run_until_status(GsStatus::Authorised, 5 * SECOND);
    let options = || ConnectOptions::default();
    let refused =
        |w: &mut World, client: usize, conn: ConnHandle| w.net.run_until_rejected(client, conn, 5 * SECOND).0;

    let client = w.net.add_client(Net::config());
    let key = w.net.node(client).identity.verifying_key().to_bytes();
    let now = w.net.now;
    let (vs, _) = w.net.node_mut(w.vs).app_mut::<Vs>();
    let elsewhere = vs.verifier.issue_join_ticket(now, 100, key, GS_ID + 1, 0);
    let good = vs.verifier.issue_join_ticket(now, 100, key, GS_ID, 0);
    let conn = w.net.connect_with(client, w.gs, elsewhere, options());
    assert_eq!(refused(&mut w, client, conn), ReasonCode::TICKET_WRONG_AUDIENCE);

    let conn = w.net.connect_with(client, w.gs, good.clone(), options());
    assert!(w.net.run_until(5 * SECOND, |net| net
        .node(client)
        .endpoint
        .session(conn)
        .is_some()));
    let again = w.net.connect_with(client, w.gs, good, options());
    assert_eq!(refused(&mut w, client, again), ReasonCode::TICKET_REPLAYED);

    // Revocation: pushed by the VS, applied to the live session and to later joins.
    let now = w.net.now;
    let (vs, ep) = w.net.node_mut(w.vs).app_mut::<Vs>();
    vs.verifier.revoke(ep, now, Revocation::Client { client_id: 100 });
    w.net.drain(w.vs);
    let (reason, _, _) = w.net.run_until_disconnected(client, conn, 5 * SECOND);
    assert_eq!(reason, ReasonCode::TICKET_REVOKED);
    let now = w.net.now;
    let (vs, _) = w.net.node_mut(w.vs).app_mut::<Vs>();
    let fresh = vs.verifier.issue_join_ticket(now, 100, key, GS_ID, 0);
    let conn = w.net.connect_with(client, w.gs, fresh, options());
    assert_eq!(refused(&mut w, client, conn), ReasonCode::TICKET_REVOKED);

    // Expiry: 60 s lifetime plus the 30 s skew allowance.
    let other = w.net.add_client(Net::config());
    let key = w.net.node(other).identity.verifying_key().to_bytes();
    let now = w.net.now;
    let (vs, _) = w.net.node_mut(w.vs).app_mut::<Vs>();
    let stale = vs.verifier.issue_join_ticket(now, 101, key, GS_ID, 0);
    w.net.run_for(91 * SECOND);
    let conn = w.net.connect_with(other, w.gs, stale, options());
    assert_eq!(refused(&mut w, other, conn), ReasonCode::TICKET_EXPIRED);
}

#[test]
fn a_silent_gs_is_revoked_at_the_heartbeat_timeout_and_comes_back_after_reconnecting() {
    let mut setup = Setup::default();
    setup.vs.heartbeat_timeout_ms = 3_000;
    setup.gs.heartbeat_interval_ms = 60_000;
    let mut w = World::new(setup);
    w.run_until_status(GsStatus::Authorised, 5 * SECOND);
    w.net.run_for(4 * SECOND);
    assert!(w.vs().events.iter().any(|e| matches!(
        e,
        VsEvent::Deauthorised {
            reason: ReasonCode::HEARTBEAT_TIMEOUT,
            ..
        }
    )));
    assert!(w.gs().events.iter().any(|e| matches!(
        e,
        GsEvent::Rejected {
            reason: ReasonCode::HEARTBEAT_TIMEOUT,
            retrying: true,
            ..
        }
    )));
    // It reconnects with backoff and re-attests.
    let vs = w.vs;
    assert!(w.net.run_until(5 * SECOND, |net| {
        let joins = net.node(vs).app::<Vs>().events.iter();
        joins.filter(|e| matches!(e, VsEvent::Joined { .. })).count() >= 2
    }));
}

#[test]
fn a_revoked_gs_loses_its_session_and_may_not_rejoin() {
    let mut w = World::new(Setup::default());
    w.run_until_status(GsStatus::Authorised, 5 * SECOND);
    let now = w.net.now;
    let (vs, ep) = w.net.node_mut(w.vs).app_mut::<Vs>();
    vs.verifier.revoke_game_server(ep, now, GS_ID);
    w.net.drain(w.vs);
    w.net.run_for(2 * SECOND);
    assert!(w.gs().events.iter().any(|e| matches!(
        e,
        GsEvent::Rejected {
            reason: ReasonCode::GS_REVOKED,
            retrying: false,
            ..
        }
    )));
    assert_eq!(w.status(), GsStatus::Failed);
}

#[test]
fn a_revocation_issued_while_the_gs_is_away_is_delivered_when_it_rejoins() {
    let mut w = World::new(Setup::default());
    w.run_until_status(GsStatus::Authorised, 5 * SECOND);
    let (client, conn) = w.client_joins(100);
    w.vs_drops_the_gs();
    assert_eq!(w.vs().verifier.revocations().count(), 0);
    w.revoke(Revocation::Client { client_id: 100 });
    // A jti revocation whose ticket expired long ago (beyond twice the skew) is not worth
    // delivering.
    let wall_now = w.net.wall_clock().unix_ms_at(w.net.now);
    w.revoke(Revocation::Jti {
        jti: [7; 16],
        until_unix_ms: wall_now - 60_001,
    });
    assert_eq!(w.vs().verifier.revocations().count(), 2);
    assert!(w.revocations_applied().is_empty(), "not joined: nothing was sent");

    let gs = w.gs;
    assert!(w.net.run_until(5 * SECOND, |net| net
        .node(gs)
        .app::<Gs>()
        .events
        .iter()
        .any(|e| matches!(e, GsEvent::Revoked(_)))));
    assert_eq!(w.joins(), 2, "delivered after the re-join");
    assert_eq!(
        w.vs().verifier.revocations().collect::<Vec<_>>(),
        vec![&Revocation::Client { client_id: 100 }],
        "the lapsed jti was forgotten, the client revocation stays in force"
    );
    let (reason, _, _) = w.net.run_until_disconnected(client, conn, 5 * SECOND);
    assert_eq!(reason, ReasonCode::TICKET_REVOKED);
    assert_eq!(
        w.revocations_applied(),
        vec![Revocation::Client { client_id: 100 }]
    );
    assert_eq!(w.vs().verifier.revocations_dropped(), 0);
    // Every join gets the whole list again: a game server that restarted, or whose session
    // failed before a push arrived, catches up (applying it twice changes nothing).
    w.vs_drops_the_gs();
    assert!(w.net.run_until(5 * SECOND, |net| net
        .node(gs)
        .app::<Gs>()
        .events
        .iter()
        .filter(|e| matches!(e, GsEvent::Revoked(_)))
        .count()
        == 2));
    assert_eq!(w.joins(), 3);
}

#[test]
fn a_full_revocation_list_drops_its_oldest_and_counts_it() {
    let mut setup = Setup::default();
    setup.vs.max_revocations = 2;
    let mut w = World::new(setup);
    w.run_until_status(GsStatus::Authorised, 5 * SECOND);
    let (client, conn) = w.client_joins(100);
    w.vs_drops_the_gs();
    for client_id in [100, 200, 300] {
        w.revoke(Revocation::Client { client_id });
    }
    assert_eq!(w.vs().verifier.revocations().count(), 2);
    assert_eq!(w.vs().verifier.revocations_dropped(), 1);
    assert!(w.vs().events.contains(&VsEvent::RevocationDropped {
        revocation: Revocation::Client { client_id: 100 },
    }));

    w.net.run_for(5 * SECOND);
    assert_eq!(w.joins(), 2);
    assert_eq!(
        w.revocations_applied(),
        vec![
            Revocation::Client { client_id: 200 },
            Revocation::Client { client_id: 300 }
        ]
    );
    assert!(
        w.net.node(client).endpoint.session(conn).is_some(),
        "the dropped revocation never reached the GS"
    );
}

#[test]
fn replaying_the_quote_of_a_refused_join_is_reported_as_a_replay() {
    // The VS clock is 45 s ahead: the first join is refused for skew (retryable) after the VS
    // saw its quote. Once the clock is fixed the GS answers the next challenge with that quote.
    let mut w = World::new(Setup {
        quotes: Quotes::ReplayFirst,
        vs_skew_ms: 45_000,
        ..Setup::default()
    });
    let vs = w.vs;
    assert!(w
        .net
        .run_until(5 * SECOND, |net| !net.node(vs).app::<Vs>().events.is_empty()));
    assert_eq!(w.join_rejections(), vec![ReasonCode::JOIN_CLOCK_SKEW]);
    let wall = w.net.wall_clock();
    w.net.node_mut(vs).app_mut::<Vs>().0.verifier.set_wall_clock(wall);
    assert!(w
        .net
        .run_until(5 * SECOND, |net| net.node(vs).app::<Vs>().events.len() >= 2));
    assert_eq!(
        w.join_rejections(),
        vec![ReasonCode::JOIN_CLOCK_SKEW, ReasonCode::QUOTE_REPLAYED]
    );
}

#[test]
fn a_receipt_that_does_not_match_the_digest_sent_is_ignored_and_counted() {
    let mut w = World::new(Setup::default());
    w.run_until_status(GsStatus::Authorised, 5 * SECOND);
    w.net.node_mut(w.vs).app_mut::<Vs>().0.mute_digests = true;
    w.net
        .node_mut(w.gs)
        .app_mut::<Gs>()
        .0
        .agent
        .record_input(5, 10, b"jump");
    let vs = w.vs;
    assert!(w
        .net
        .run_until(2 * SECOND, |net| !net.node(vs).app::<Vs>().digests.is_empty()));
    let sent = w.vs().digests[0].clone();
    let vs_key = SigningKey::from_bytes(&VS_KEY_SEED);
    let claims = ReceiptClaims {
        gs_id: GS_ID,
        session_id: sent.session_id,
        sequence: sent.sequence,
        tick: sent.tick,
        digest: sent.digest,
        received_at_ms: w.net.wall_clock().unix_ms_at(w.net.now),
    };
    let deliver = |w: &mut World, claims: &ReceiptClaims| {
        let now = w.net.now;
        let vs_conn = w.vs().verifier.game_server(GS_ID).unwrap().conn;
        let message = VsMessage::Receipt {
            sequence: sent.sequence,
            receipt: ProtectedReceipt::issue(VS_KEY_ID, &vs_key, claims),
        };
        w.net
            .node_mut(w.vs)
            .endpoint
            .send(now, vs_conn, VS_CHANNEL, message.encode().into())
            .unwrap();
        w.net.drain(w.vs);
        w.net.run_for(SECOND);
    };
    // Validly signed, right sequence, session and head, but another tick.
    let wrong_tick = ReceiptClaims {
        tick: sent.tick + 1,
        ..claims.clone()
    };
    deliver(&mut w, &wrong_tick);
    let agent = &w.gs().agent;
    assert_eq!(agent.receipts_rejected(), 1);
    assert_eq!(agent.pending_digests(), 1, "the digest stays pending");
    assert!(w.gs().events.iter().any(|e| matches!(
        e,
        GsEvent::ReceiptRejected { sequence, detail } if *sequence == sent.sequence && detail.contains("tick")
    )));
    assert!(!w.gs().events.iter().any(|e| matches!(e, GsEvent::Receipt { .. })));

    deliver(&mut w, &claims);
    assert_eq!(w.gs().agent.pending_digests(), 0);
    assert_eq!(w.gs().agent.receipts_rejected(), 1);
    assert!(w
        .gs()
        .events
        .iter()
        .any(|e| matches!(e, GsEvent::Receipt { digest, .. } if *digest == sent)));
}

#[test]
fn a_play_ticket_expired_when_the_accept_arrives_is_refused_though_fresh_at_connect() {
    // One ticket only (no renewals, no starvation): it expires 6 s after it is issued.
    let mut setup = Setup::default();
    setup.vs.ticket_interval_ms = 600_000;
    setup.gs.ticket_starvation_timeout_ms = 600_000;
    let mut w = World::new(setup);
    w.run_until_status(GsStatus::Authorised, 5 * SECOND);
    w.net.run_for(SECOND);
    let expires_at_ms = w.gs().agent.ticket().unwrap().expires_at_ms;
    let connect_ms = w.net.wall_clock().unix_ms_at(w.net.now);
    assert!(
        connect_ms + 4_900 < expires_at_ms,
        "fresh when the client connects"
    );

    // Everything from the GS to clients takes 4 s more: the GS reads the hello ~4 s after the
    // connect, while it still holds (and presents) the ticket; the accept reaches the client
    // ~8 s after the connect, 3 s after the ticket expired, beyond the 2 s allowance.
    let gs_addr = w.net.node(w.gs).addr;
    let vs_addr = w.net.node(w.vs).addr;
    w.net.set_filter(move |p| {
        if p.from == gs_addr && p.to != vs_addr {
            Fate::Delay(4 * SECOND)
        } else {
            Fate::Deliver
        }
    });
    let (client, conn) = w.client_connects(100);
    // Control: a client allowing 30 s of skew, connecting at the same instant, gets in.
    let lenient = w.net.add_client(Config {
        play_ticket_max_skew_ms: 30_000,
        ..Net::config()
    });
    let key = w.net.node(lenient).identity.verifying_key().to_bytes();
    let now = w.net.now;
    let ticket = w
        .net
        .node_mut(w.vs)
        .app_mut::<Vs>()
        .0
        .verifier
        .issue_join_ticket(now, 101, key, GS_ID, 0);
    let options = ConnectOptions {
        trusted_vs_keys: Some(w.keys.clone()),
        ..ConnectOptions::default()
    };
    let lenient_conn = w.net.connect_with(lenient, w.gs, ticket, options);

    let (reason, _, initiator) = w.net.run_until_rejected(client, conn, 10 * SECOND);
    assert_eq!(
        (reason, initiator),
        (ReasonCode::NOT_AUTHORISED, Initiator::Local)
    );
    let Some(Event::Rejected { detail, .. }) = w.net.node(client).closure_of(conn) else {
        unreachable!("rejected above")
    };
    assert!(detail.contains("play ticket expired"), "{detail}");
    assert!(
        w.net.node(lenient).endpoint.session(lenient_conn).is_some(),
        "same delay, larger allowance: {:?}",
        w.net.node(lenient).events
    );
    assert_eq!(
        w.net.node(w.gs).sessions().len(),
        2,
        "the GS accepted both hellos, presenting its ticket"
    );
}

/// What a store does with a verifier's facts: keep them, and hand them back at start.
fn state_of(facts: &[VsFact]) -> VerifierState {
    let mut state = VerifierState::default();
    for fact in facts.iter().cloned() {
        match fact {
            VsFact::Revoked(revocation) => state.revocations.push(revocation),
            VsFact::GameServerRevoked { gs_id } => state.revoked_game_servers.push(gs_id),
            VsFact::Nonce { gs_id, nonce } => state.nonces.push((gs_id, nonce)),
            VsFact::Receipt {
                gs_id,
                digest,
                receipt,
            } => state.receipts.push((gs_id, digest, receipt)),
            other => panic!("a fact this test does not know: {other:?}"),
        }
    }
    state
}

/// How the verifier that takes over learns the first one's facts.
#[derive(Clone, Copy, PartialEq)]
enum Handover {
    /// A restart: restored from the store at start.
    Restore,
    /// Another instance on a shared store: imported as they are written.
    Import,
}

#[test]
fn a_verifier_restarted_from_its_facts_keeps_every_promise() {
    takes_over_keeping_every_promise(Handover::Restore);
}

#[test]
fn a_second_instance_importing_the_facts_keeps_every_promise() {
    takes_over_keeping_every_promise(Handover::Import);
}

fn takes_over_keeping_every_promise(handover: Handover) {
    let mut w = World::new(Setup {
        quotes: Quotes::ReplayFirst,
        ..Setup::default()
    });
    let vs = w.vs;
    w.net.node_mut(vs).app_mut::<Vs>().0.verifier.record_facts(true);
    w.run_until_status(GsStatus::Authorised, 5 * SECOND);
    w.revoke(Revocation::Client { client_id: 100 });
    let facts: Vec<VsFact> = {
        let verifier = &mut w.net.node_mut(vs).app_mut::<Vs>().0.verifier;
        std::iter::from_fn(|| verifier.poll_fact()).collect()
    };
    assert!(facts.contains(&VsFact::Revoked(Revocation::Client { client_id: 100 })));
    assert!(
        facts
            .iter()
            .any(|f| matches!(f, VsFact::Nonce { gs_id: GS_ID, .. })),
        "the challenge the GS quoted is a fact: {facts:?}"
    );

    // The VS process dies; a new one starts from what the store kept, signing with the same
    // key. The GS reconnects and answers the new challenge with its first quote.
    let wall = w.net.wall_clock();
    let mut restarted = Verifier::new(
        w.vs().verifier.config().clone(),
        Secrets::insecure_from_seed(12),
        SigningKey::from_bytes(&VS_KEY_SEED),
        wall,
    );
    match handover {
        Handover::Restore => restarted.restore(state_of(&facts)),
        Handover::Import => {
            let now = w.net.now;
            let ep = &mut w.net.node_mut(vs).endpoint;
            for fact in facts.iter().cloned() {
                restarted.import(ep, now, fact);
            }
        }
    }
    assert_eq!(restarted.poll_fact(), None, "taking over promises nothing new");
    assert_eq!(
        restarted.revocations().collect::<Vec<_>>(),
        vec![&Revocation::Client { client_id: 100 }],
        "the revocation is still in force"
    );
    std::mem::swap(&mut w.net.node_mut(vs).app_mut::<Vs>().0.verifier, &mut restarted);
    let now = w.net.now;
    let old_conn = restarted.game_server(GS_ID).unwrap().conn;
    w.net
        .node_mut(vs)
        .endpoint
        .close(now, old_conn, ReasonCode::SERVER_SHUTDOWN, "restart");
    w.net.drain(vs);
    w.net.run_for(5 * SECOND);
    assert_eq!(
        w.join_rejection(),
        Some(ReasonCode::QUOTE_REPLAYED),
        "a quote over a challenge of the previous process is a replay"
    );
}

#[test]
fn a_gs_fails_over_to_a_second_vs_without_losing_sessions() {
    let mut w = World::new(Setup::default());
    // A second instance of the verification server: the same signing key and identity.
    let identity = w.net.node(w.vs).identity.clone();
    let vs2 = w.net.add_server_as(
        Config {
            accept_game_servers: true,
            ..Net::config()
        },
        identity,
    );
    let verifier = Verifier::new(
        w.vs().verifier.config().clone(),
        Secrets::insecure_from_seed(13),
        SigningKey::from_bytes(&VS_KEY_SEED),
        w.net.wall_clock(),
    );
    w.net.set_app(
        vs2,
        Vs {
            verifier,
            events: Vec::new(),
            mute_digests: false,
            digests_seen: Vec::new(),
            digests: Vec::new(),
        },
    );
    let second = w.net.node(vs2).addr;
    let gs = w.gs;
    w.net.node_mut(gs).app_mut::<Gs>().0.agent.add_failover(second);
    w.run_until_status(GsStatus::Authorised, 5 * SECOND);
    let (client, conn) = w.client_joins(100);

    // The first instance goes dark for good.
    let first = w.vs;
    w.net.node_mut(first).isolated = true;
    assert!(
        w.net.run_until(20 * SECOND, |net| net
            .node(vs2)
            .app::<Vs>()
            .verifier
            .game_server(GS_ID)
            .is_some()),
        "the GS joined the second instance; events: {:?}",
        w.gs().events
    );
    assert_eq!(w.gs().agent.vs_addr(), second);
    w.net.run_for(5 * SECOND);
    assert_eq!(w.status(), GsStatus::Authorised);
    w.assert_session_kept(client, conn);
}

/// Sends transcript digest `digest` from the GS to the VS on the current session, then runs
/// for a second.
fn send_digest(w: &mut World, digest: &TranscriptDigest) {
    let now = w.net.now;
    let gs_conn = w.gs().agent.vs_conn().unwrap();
    let payload = VsMessage::Digest(digest.clone()).encode();
    w.net
        .node_mut(w.gs)
        .endpoint
        .send(now, gs_conn, VS_CHANNEL, payload.into())
        .unwrap();
    w.net.drain(w.gs);
    w.net.run_for(SECOND);
}

#[test]
fn a_restarted_verifier_answers_a_resent_digest_with_the_same_receipt() {
    let mut w = World::new(Setup::default());
    let vs = w.vs;
    w.net.node_mut(vs).app_mut::<Vs>().0.verifier.record_facts(true);
    w.run_until_status(GsStatus::Authorised, 5 * SECOND);
    let digest = TranscriptDigest {
        sequence: 77,
        session_id: 3,
        tick: 10,
        inputs: 10,
        digest: [4; 32],
    };
    send_digest(&mut w, &digest);
    let facts: Vec<VsFact> = {
        let verifier = &mut w.net.node_mut(vs).app_mut::<Vs>().0.verifier;
        std::iter::from_fn(|| verifier.poll_fact()).collect()
    };
    let signed = facts
        .iter()
        .find_map(|f| match f {
            VsFact::Receipt {
                digest: d, receipt, ..
            } if *d == digest => Some(receipt.clone()),
            _ => None,
        })
        .expect("the receipt is a fact");

    let mut restarted = Verifier::new(
        w.vs().verifier.config().clone(),
        Secrets::insecure_from_seed(14),
        SigningKey::from_bytes(&VS_KEY_SEED),
        w.net.wall_clock(),
    );
    restarted.restore(state_of(&facts));
    std::mem::swap(&mut w.net.node_mut(vs).app_mut::<Vs>().0.verifier, &mut restarted);
    let now = w.net.now;
    let old_conn = restarted.game_server(GS_ID).unwrap().conn;
    w.net
        .node_mut(vs)
        .endpoint
        .close(now, old_conn, ReasonCode::SERVER_SHUTDOWN, "restart");
    w.net.drain(vs);
    assert!(
        w.net.run_until(10 * SECOND, |net| net
            .node(vs)
            .app::<Vs>()
            .verifier
            .game_server(GS_ID)
            .is_some()),
        "the GS rejoins the restarted verifier"
    );
    send_digest(&mut w, &digest);
    let receipted = w
        .vs()
        .events
        .iter()
        .filter(|e| matches!(e, VsEvent::Receipted { digest, .. } if digest.sequence == 77))
        .count();
    assert_eq!(
        receipted, 1,
        "the resent digest was answered from the restored receipts"
    );
    let kept: Vec<_> = w.vs().verifier.receipts_of(GS_ID).cloned().collect();
    assert_eq!(kept, vec![(digest, signed)], "the same receipt, byte for byte");
}
