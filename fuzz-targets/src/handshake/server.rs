//! The server side: [`AwaitingHello`] on four connections sharing one ticket verifier.

use arbitrary::{Arbitrary, Unstructured};
use tickwire_core::config::TicketConfig;
use tickwire_core::handshake::{AwaitingHello, Rejection, ServerContribution, ServerPolicy};
use tickwire_core::testing::internals::JOIN_TICKET_CONTEXT;
use tickwire_core::vs::PlayTicket;
use tickwire_core::wire::NONCE_LEN;
use tickwire_core::wire::{
    self, AcceptBody, Control, Extension, ExtensionKind, HelloBody, ReasonCode, Role, Signed,
};
use tickwire_core::{JoinTicket, JoinTicketClaims, TicketError, TicketVerifier, PERMISSION_ADMIN};

use super::{
    gs_play_claims, role_of, schema_for, sign_with, spec_accept_digest, spec_hello_digest, spec_verify,
    Signing, Slot,
};
use crate::fixtures::{client_identity, gs_identity, issuer_key, signing_key, GS_ID, KEY_ID, NOW_MS, SCHEMA};
use crate::input::{each_op, take};
use crate::tickets::{TicketSpec, VerifierModel};

/// Capabilities the handshake targets' server supports.
const SERVER_CAPABILITIES: u64 = 0b0111;
/// The server's dictionary hash, when the run gives it one.
const DICTIONARY_HASH: [u8; 32] = [0xDD; 32];

/// Which join ticket a hello carries.
#[derive(Debug, Clone, Default, Arbitrary)]
enum TicketChoice {
    /// Built from a spec (all zeros: valid).
    #[default]
    Ticket,
    /// Built from this spec.
    Spec(TicketSpec),
    /// None.
    Missing,
    /// Claims that do not decode, correctly signed.
    Garbage(u8),
}

/// A client hello: all zeros is a valid Player hello with a valid ticket.
#[derive(Debug, Clone, Default, Arbitrary)]
struct HelloSpec {
    identity: u8,
    /// `version_min = 1 ^ (v % 4)`.
    version_min: u8,
    /// `version_max = 1 ^ (v % 4)`.
    version_max: u8,
    wrong_schema: bool,
    capabilities: u8,
    role: u8,
    ticket: TicketChoice,
    signing: Signing,
    /// XORs `(at % len, byte)` into the encoded body before signing.
    mutate: Option<(u16, u8)>,
    nonce: u8,
    /// `COMPRESSION_DICTIONARY` extension: None, Some(true) = the server's hash, Some(false) =
    /// another.
    dictionary: Option<bool>,
    /// Further extensions `(kind, data length)`, in this order (valid or not).
    extensions: Vec<(u16, u8)>,
}

impl HelloSpec {
    fn extension_list(&self) -> Vec<Extension> {
        let dictionary = self.dictionary.map(|ours| Extension {
            kind: ExtensionKind::COMPRESSION_DICTIONARY,
            data: vec![if ours { DICTIONARY_HASH[0] } else { 0x0D }; 32],
        });
        let rest = self.extensions.iter().take(24).map(|&(kind, len)| Extension {
            kind: ExtensionKind(kind),
            data: vec![0xE7; usize::from(len)],
        });
        dictionary.into_iter().chain(rest).collect()
    }

    /// Whether the extension list is one a server must accept (`PROTOCOL.md` §4.4.4): at most
    /// 16 entries, kinds strictly ascending, a dictionary hash of 32 bytes.
    fn extensions_well_formed(&self) -> bool {
        let list = self.extension_list();
        list.len() <= 16
            && list.windows(2).all(|w| w[0].kind.0 < w[1].kind.0)
            && list
                .iter()
                .all(|e| e.kind != ExtensionKind::COMPRESSION_DICTIONARY || e.data.len() == 32)
    }

    /// The hello's body bytes and the message, for a connection with `exporter`.
    fn build(&self, exporter: &[u8; 32], now_ms: u64, jti_base: u8) -> (Vec<u8>, Control) {
        let identity = client_identity(self.identity);
        let key = identity.verifying_key().to_bytes();
        let ticket = match &self.ticket {
            TicketChoice::Ticket => Some(
                TicketSpec {
                    jti: jti_base,
                    ..TicketSpec::default()
                }
                .ticket(now_ms, key),
            ),
            TicketChoice::Spec(spec) => Some(spec.ticket(now_ms, key)),
            TicketChoice::Missing => None,
            TicketChoice::Garbage(byte) => {
                let claims = vec![*byte; 9];
                let key_id = 1u32;
                let mut message = JOIN_TICKET_CONTEXT.to_vec();
                message.extend_from_slice(&key_id.to_be_bytes());
                message.extend_from_slice(&claims);
                use ed25519_dalek::Signer;
                Some(JoinTicket {
                    key_id,
                    signature: issuer_key(0).sign(&message).to_bytes(),
                    claims,
                })
            }
        };
        let body = HelloBody {
            version_min: 1 ^ u16::from(self.version_min % 4),
            version_max: 1 ^ u16::from(self.version_max % 4),
            schema_hash: schema_for(role_of(self.role), self.wrong_schema),
            nonce: [self.nonce; NONCE_LEN],
            capabilities: u64::from(self.capabilities),
            role: role_of(self.role),
            identity_key: key,
            join_ticket: ticket,
            extensions: self.extension_list(),
        };
        let mut bytes = wire::encode(&body);
        if let Some((at, byte)) = self.mutate {
            let at = usize::from(at) % bytes.len();
            bytes[at] ^= byte;
        }
        let signature = sign_with(
            self.signing,
            &identity,
            |e| spec_hello_digest(e, &bytes),
            exporter,
        );
        (
            bytes.clone(),
            Control::Hello(Signed {
                body: bytes,
                signature,
            }),
        )
    }
}

#[derive(Debug, Arbitrary)]
enum ServerOp {
    /// A hello on connection `conn % 4`.
    Hello { conn: u8, hello: HelloSpec },
    /// Control-stream bytes on connection `conn % 4`: a `Control` if they decode, else the
    /// connection closes with `BAD_HANDSHAKE` (as `connection.rs` does).
    Raw { conn: u8, bytes: Vec<u8> },
    /// An accept (the wrong message) on connection `conn % 4`.
    Accept { conn: u8, body: Vec<u8> },
    /// The client closes connection `conn % 4`.
    Close { conn: u8 },
    /// A new connection in slot `conn % 4`, with exporter `[exporter; 32]`.
    Open { conn: u8, exporter: u8 },
    /// Wall-clock time passes.
    Advance { ms: u32 },
    /// Revokes client `client % 4`.
    Revoke { client: u8 },
}

/// Reason codes `AwaitingHello::handle_hello` may refuse with.
const SERVER_REASONS: &[ReasonCode] = &[
    ReasonCode::BAD_HANDSHAKE,
    ReasonCode::UNSUPPORTED_VERSION,
    ReasonCode::SCHEMA_MISMATCH,
    ReasonCode::BAD_SIGNATURE,
    ReasonCode::ROLE_NOT_PERMITTED,
    ReasonCode::TICKET_MALFORMED,
    ReasonCode::TICKET_UNKNOWN_KEY,
    ReasonCode::TICKET_BAD_SIGNATURE,
    ReasonCode::TICKET_WRONG_AUDIENCE,
    ReasonCode::TICKET_NOT_YET_VALID,
    ReasonCode::TICKET_EXPIRED,
    ReasonCode::TICKET_LIFETIME_TOO_LONG,
    ReasonCode::TICKET_REVOKED,
    ReasonCode::TICKET_IDENTITY_MISMATCH,
    ReasonCode::TICKET_REPLAYED,
    ReasonCode::SERVER_BUSY,
];

/// The server side of the session handshake ([`AwaitingHello`]) on four connections sharing
/// one ticket verifier.
///
/// Input (`arbitrary`): a flags byte (`& 1`: the server admits game servers; `& 2`: it
/// presents a play ticket), then up to 64 operations: hellos built from a `HelloSpec`
/// (mutated bodies, wrong exporters and keys, every ticket defect), raw control bytes, accepts,
/// client closes, new connections, wall-clock steps, client revocations.
///
/// Asserts: every connection ends accepted, rejected with one of the documented reasons, or
/// pending; an accepted hello's signature verifies under the spec's transcript, the version is
/// the highest both speak, capabilities the intersection; a non-game-server session carries
/// the ticket the verifier just accepted (its claims name the hello's identity key, grant admin
/// if the role is admin), a game-server session none and only where admitted; the accept's
/// signature verifies under the spec's transcript and echoes the hello; a rejection after the
/// verifier refused a ticket carries that refusal's reason; a hello that is valid in every
/// respect (fresh ticket, cache room) is accepted.
pub fn handshake_server(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let flags: u8 = take(&mut u);
    let identity = gs_identity();
    let play = a_play_ticket_bytes(NOW_MS);
    let policy = ServerPolicy {
        version_min: 1,
        version_max: 2,
        schema_hash: SCHEMA,
        capabilities: SERVER_CAPABILITIES,
        identity: &identity,
        accept_game_servers: flags & 1 != 0,
        play_ticket: (flags & 2 != 0).then_some(play.as_slice()),
        dictionary_hash: (flags & 4 != 0).then_some(DICTIONARY_HASH),
    };
    let config = TicketConfig {
        replay_cache_capacity: 3,
        ..TicketConfig::default()
    };
    let mut verifier = TicketVerifier::new(GS_ID, config.clone());
    verifier.add_key(1, issuer_key(0).verifying_key());
    verifier.add_key(2, issuer_key(1).verifying_key());
    let mut model = VerifierModel::default();
    model.trusted.extend([1, 2]);
    let mut slots: Vec<Slot<AwaitingHello>> = (0..4u8)
        .map(|i| Slot::Pending(AwaitingHello::new([i; 32]), [i; 32]))
        .collect();
    let mut now_ms = NOW_MS;
    let mut hellos = 0u8;
    each_op(&mut u, 64, |op: ServerOp| {
        let (conn, message, spec) = match op {
            ServerOp::Hello { conn, hello } => {
                let exporter = match &slots[usize::from(conn % 4)] {
                    Slot::Pending(_, exporter) => *exporter,
                    _ => [0; 32],
                };
                hellos = hellos.wrapping_add(1);
                let (_, message) = hello.build(&exporter, now_ms, hellos % 8);
                (conn, message, Some(hello))
            }
            ServerOp::Raw { conn, bytes } => match wire::decode::<Control>(&bytes) {
                Ok(message) => (conn, message, None),
                Err(_) => {
                    let slot = &mut slots[usize::from(conn % 4)];
                    if matches!(slot, Slot::Pending(..) | Slot::Accepted) {
                        *slot = Slot::Rejected;
                    }
                    return;
                }
            },
            ServerOp::Accept { conn, body } => (
                conn,
                Control::Accept(Signed {
                    body,
                    signature: wire::Signature([1; 64]),
                }),
                None,
            ),
            ServerOp::Close { conn } => {
                let slot = &mut slots[usize::from(conn % 4)];
                if matches!(slot, Slot::Pending(..) | Slot::Accepted) {
                    *slot = Slot::Closed;
                }
                return;
            }
            ServerOp::Open { conn, exporter } => {
                slots[usize::from(conn % 4)] =
                    Slot::Pending(AwaitingHello::new([exporter; 32]), [exporter; 32]);
                return;
            }
            ServerOp::Advance { ms } => {
                now_ms = now_ms.saturating_add(u64::from(ms));
                return;
            }
            ServerOp::Revoke { client } => {
                if verifier.revoke_client(u64::from(client % 4)).is_ok() {
                    model.revoked_clients.insert(u64::from(client % 4));
                }
                return;
            }
        };
        let slot = &mut slots[usize::from(conn % 4)];
        let (awaiting, exporter) = match std::mem::replace(slot, Slot::Closed) {
            Slot::Pending(awaiting, exporter) => (awaiting, exporter),
            Slot::Accepted => {
                // A control message after the handshake: `connection.rs` closes.
                *slot = Slot::Rejected;
                return;
            }
            other => {
                *slot = other;
                return;
            }
        };
        let mut verified: Option<(JoinTicket, Result<JoinTicketClaims, TicketError>, usize)> = None;
        let contribution = ServerContribution {
            nonce: [0x33; NONCE_LEN],
            session_id: 0x5E55,
            server_tick: 77,
            tick_rate_hz: 60,
        };
        let result = awaiting.handle_hello(&policy, &message, contribution, |ticket, key| {
            let before = verifier.replay_cache_len();
            let result = verifier.verify(ticket, now_ms, key);
            verified = Some((ticket.clone(), result.clone(), before));
            result
        });
        let Control::Hello(signed) = &message else {
            let rejection = result.expect_err("an accept passed as a hello");
            assert_eq!(rejection.reason, ReasonCode::BAD_HANDSHAKE);
            *slot = Slot::Rejected;
            return;
        };
        let body = wire::decode::<HelloBody>(&signed.body);
        // The model learns what the verifier did (and checks it).
        if let (Some((ticket, ticket_result, before)), Ok(body)) = (&verified, &body) {
            if let Ok(claims) = ticket.claims() {
                let spec = match spec.as_ref().map(|s| &s.ticket) {
                    Some(TicketChoice::Spec(spec)) => spec.clone(),
                    _ => TicketSpec::default(),
                };
                let spec = TicketSpec {
                    bad_signature: spec.bad_signature,
                    wrong_audience: claims.gs_id != GS_ID,
                    wrong_identity: claims.client_key != body.identity_key,
                    ..spec
                };
                if spec.bad_signature || spec_ticket_signed(ticket) {
                    model.check(&config, *before, &spec, ticket, now_ms, ticket_result);
                }
            }
        }
        match result {
            Ok((session, accept)) => {
                let hello = body.expect("an accepted hello decodes");
                assert!(
                    spec_verify(
                        &hello.identity_key,
                        &spec_hello_digest(&exporter, &signed.body),
                        &signed.signature
                    ),
                    "accepted a hello whose signature does not verify"
                );
                let low = hello.version_min.max(policy.version_min);
                let high = hello.version_max.min(policy.version_max);
                assert!(
                    low <= high && session.version == high,
                    "version {} of {low}..={high}",
                    session.version
                );
                assert_eq!(hello.schema_hash, schema_for(hello.role, false));
                // §4.4.4: a well-formed list; §4.4.2: bit 1 needs bit 0 and equal hashes.
                let kinds: Vec<u16> = hello.extensions.iter().map(|e| e.kind.0).collect();
                assert!(
                    kinds.len() <= 16 && kinds.windows(2).all(|w| w[0] < w[1]),
                    "{kinds:?}"
                );
                let offered = hello
                    .extensions
                    .iter()
                    .find(|e| e.kind.0 == 1)
                    .map(|e| e.data.as_slice());
                assert!(
                    offered.is_none_or(|d| d.len() == 32),
                    "dictionary extension length"
                );
                let mut expected = hello.capabilities & SERVER_CAPABILITIES;
                let same = offered.is_some() && offered == policy.dictionary_hash.as_ref().map(|h| &h[..]);
                if expected & 1 == 0 || !same {
                    expected &= !2;
                }
                assert_eq!(session.capabilities, expected);
                assert_eq!(
                    (session.role, session.client_key),
                    (hello.role, hello.identity_key)
                );
                if hello.role == Role::GameServer {
                    assert!(
                        policy.accept_game_servers,
                        "a game server admitted where none are"
                    );
                    assert!(hello.join_ticket.is_none() && session.ticket.is_none() && verified.is_none());
                } else {
                    let admitted = session
                        .ticket
                        .as_ref()
                        .expect("a client session without a ticket");
                    let (ticket, ticket_result, _) = verified.as_ref().expect("the ticket was not verified");
                    assert_eq!(Some(ticket), hello.join_ticket.as_ref());
                    assert_eq!(
                        ticket_result.as_ref(),
                        Ok(&admitted.claims),
                        "session ticket is not the verified one"
                    );
                    assert_eq!(admitted.key_id, ticket.key_id);
                    assert_eq!(admitted.claims.client_key, hello.identity_key);
                    assert_eq!(session.permissions, admitted.claims.permissions);
                    if hello.role == Role::Admin {
                        assert!(
                            admitted.claims.permissions & PERMISSION_ADMIN != 0,
                            "admin without the permission"
                        );
                    }
                }
                let Control::Accept(accept) = accept else {
                    panic!("the server answered with a hello");
                };
                let server_key = identity.verifying_key().to_bytes();
                assert!(
                    spec_verify(
                        &server_key,
                        &spec_accept_digest(&exporter, &signed.body, &accept.body),
                        &accept.signature
                    ),
                    "the accept's signature does not verify"
                );
                let body: AcceptBody = wire::decode(&accept.body).expect("the accept decodes");
                assert_eq!(body.client_nonce, hello.nonce);
                assert_eq!(body.schema_hash, hello.schema_hash);
                assert_eq!(
                    (body.version, body.role, body.server_key),
                    (session.version, hello.role, server_key)
                );
                assert_eq!(body.play_ticket.as_deref(), policy.play_ticket);
                *slot = Slot::Accepted;
            }
            Err(rejection) => {
                assert!(
                    SERVER_REASONS.contains(&rejection.reason),
                    "undocumented reason {rejection:?}"
                );
                if rejection.retry_after_ms.is_some() {
                    assert!(
                        [ReasonCode::TICKET_NOT_YET_VALID, ReasonCode::SERVER_BUSY]
                            .contains(&rejection.reason),
                        "retry advice with {rejection:?}"
                    );
                }
                match &verified {
                    Some((_, Err(error), _)) => assert_eq!(rejection, Rejection::from(*error)),
                    Some((_, Ok(claims), _)) => {
                        assert_eq!(rejection.reason, ReasonCode::ROLE_NOT_PERMITTED);
                        assert_eq!(claims.permissions & PERMISSION_ADMIN, 0);
                    }
                    None => {}
                }
                // A hello valid in every respect must not be refused.
                if let Some(spec) = &spec {
                    let clean = matches!(spec.signing, Signing::Good)
                        && spec.mutate.is_none()
                        && spec.extensions_well_formed()
                        && !spec.wrong_schema
                        && (1 ^ (spec.version_min % 4)).max(1) <= (1 ^ (spec.version_max % 4)).min(2)
                        && match (role_of(spec.role), &spec.ticket) {
                            (Role::GameServer, TicketChoice::Missing) => policy.accept_game_servers,
                            (Role::Admin | Role::GameServer, _) => false,
                            (_, TicketChoice::Ticket) => true,
                            _ => false,
                        };
                    let fresh = match (&verified, &body) {
                        (Some((ticket, _, before)), Ok(_)) => {
                            ticket.claims().is_ok_and(|c| {
                                !model.revoked_clients.contains(&c.client_id)
                                    && model.accepted.get(&c.jti).is_none_or(|&t| t < now_ms)
                            }) && *before < config.replay_cache_capacity
                        }
                        _ => true,
                    };
                    assert!(
                        !(clean && fresh),
                        "a valid hello was refused: {rejection:?} for {spec:?}"
                    );
                }
                *slot = Slot::Rejected;
            }
        }
    });
}

/// Whether `ticket`'s signature is its issuer key's over the spec's signed message.
fn spec_ticket_signed(ticket: &JoinTicket) -> bool {
    let k = u8::try_from(ticket.key_id.wrapping_sub(1)).unwrap_or(9);
    if k > 2 {
        return false;
    }
    let mut message = JOIN_TICKET_CONTEXT.to_vec();
    message.extend_from_slice(&ticket.key_id.to_be_bytes());
    message.extend_from_slice(&ticket.claims);
    issuer_key(k)
        .verifying_key()
        .verify_strict(&message, &ed25519_dalek::Signature::from_bytes(&ticket.signature))
        .is_ok()
}

/// A play ticket for [`gs_identity`], valid for 6 s from `now_ms`, signed by [`signing_key`].
fn a_play_ticket_bytes(now_ms: u64) -> Vec<u8> {
    PlayTicket::issue(KEY_ID, &signing_key(), &gs_play_claims(now_ms, 0))
        .0
        .to_bytes()
}
