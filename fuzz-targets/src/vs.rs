//! The game server ↔ verification server protocol (`PROTOCOL.md` §8): its messages, and the
//! game server's agent driven by a scripted verification server.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use arbitrary::{Arbitrary, Unstructured};
use bytes::{Bytes, BytesMut};
use tickwire_core::attest::{
    measurement_pcr_digest, verify_ak, verify_quote, Attest, ExpectedQuote, Quote, TpmError,
};
use tickwire_core::vs::{
    GsAgent, GsConfig, GsEvent, GsIdentity, GsStatus, PlayTicket, PlayTicketClaims, ProtectedReceipt,
    ReceiptClaims, Revocation, TranscriptDigest, VsMessage, MAX_VS_MESSAGE_BYTES, VS_CHANNEL,
};
use tickwire_core::wire::ReasonCode;
use tickwire_core::{Config, ConnHandle, Endpoint, Event, Secrets, WallClock};

use crate::fixtures::{
    ak_public, expected_extra_data, gs_identity, issuer_key, measurement_selection, signing_key, vs_keys,
    BINARY_SHA256, CONFIG_SHA256, GS_ID, GS_KEY, KEY_ID, MAX_DRAIN, NOW_MS,
};
use crate::input::{base_instant, each_op, ms, take};

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
            let _ = ticket.verify(&vs_keys(), &GS_KEY, NOW_MS, 30_000);
        }
        VsMessage::Receipt { receipt, .. } => {
            let _ = receipt.verify(&vs_keys());
        }
        _ => {}
    }
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
/// Input (`arbitrary`): `GsSettings`, then up to 96 operations: VS messages (challenges,
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
    let wall = WallClock::new(start, NOW_MS);
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
