//! The client side: [`ClientHandshake`] and [`AwaitingAccept`] against scripted accepts.

use arbitrary::{Arbitrary, Unstructured};
use tickwire_core::handshake::{AwaitingAccept, ClientHandshake, ClientOffer, PlayTicketCheck};
use tickwire_core::vs::{Envelope, PlayTicket, PlayTicketClaims};
use tickwire_core::wire::{
    self, capability, AcceptBody, Control, Extension, ExtensionKind, HelloBody, ReasonCode,
};
use tickwire_core::wire::{Role, Signed, NONCE_LEN};

use super::{
    gs_play_claims, role_of, schema_for, sign_with, spec_accept_digest, spec_hello_digest, spec_verify,
    Signing, Slot,
};
use crate::fixtures::{client_identity, gs_identity, issuer_key, signing_key, vs_keys, KEY_ID, NOW_MS};
use crate::input::each_op;
use crate::tickets::TicketSpec;

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
            extensions: Vec::new(),
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
    /// Extensions `(kind, data length)` in this order: skipped when well formed (at most 16,
    /// kinds strictly ascending), `BAD_HANDSHAKE` otherwise (`PROTOCOL.md` §4.4.4).
    extensions: Vec<(u16, u8)>,
}

impl AcceptSpec {
    fn extension_list(&self) -> Vec<Extension> {
        self.extensions
            .iter()
            .take(24)
            .map(|&(kind, len)| Extension {
                kind: ExtensionKind(kind),
                data: vec![0xA5; usize::from(len)],
            })
            .collect()
    }

    fn extensions_well_formed(&self) -> bool {
        self.extensions.len() <= 16 && self.extensions.windows(2).all(|w| w[0].0 < w[1].0)
    }
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
/// Input (`arbitrary`): up to 64 operations: accepts built from an `AcceptSpec` (every echo,
/// version, capability and role defect, another server key, bad signatures, every play-ticket
/// defect, mutated bodies), raw control bytes, hellos, server closes, new connections with any
/// `OfferSpec`, wall-clock steps.
///
/// Asserts: the client's own hello verifies under the spec's transcript; every connection ends
/// accepted, rejected with a documented reason, or pending; an accepted accept echoes the
/// nonce, schema and role, picks a version in the offer and capabilities within it, names the
/// expected server key if one was set, verifies under the spec's transcript, and carries a
/// play ticket that verifies now (within the skew) for the server's key when the offer asked;
/// a valid accept is accepted.
pub fn handshake_client(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let mut now_ms = NOW_MS;
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
                    extensions: accept.extension_list(),
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
                assert!(
                    session.capabilities & capability::ZSTD_DICTIONARY == 0
                        || session.capabilities & capability::ZSTD != 0,
                    "the dictionary bit without zstd"
                );
                let kinds: Vec<_> = body.extensions.iter().map(|e| e.kind).collect();
                assert!(
                    kinds.len() <= 16 && kinds.windows(2).all(|w| w[0] < w[1]),
                    "{kinds:?}"
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
                        && (offer.capabilities & capability::ZSTD_DICTIONARY == 0
                            || offer.capabilities & capability::ZSTD != 0)
                        && spec.extensions_well_formed()
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
