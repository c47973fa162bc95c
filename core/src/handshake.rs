//! The tickwire session handshake (client ↔ game server), as a typestate.
//!
//! It runs on the control stream once QUIC/TLS is up, in one round trip:
//!
//! ```text
//! client                                             server
//!   ClientHandshake::start(exporter, nonce)
//!     ── Control::Hello { body, sig_c } ──────────▶  AwaitingHello::handle_hello(..)
//!                                                      checks version, schema, sig_c, ticket,
//!                                                      role; signs the transcript
//!     ◀──────────── Control::Accept { body, sig_s } ──  (or CONNECTION_CLOSE with a reason)
//!   AwaitingAccept::handle_accept(..) → Session
//! ```
//!
//! `sig_c = Ed25519(client_key, SHA-256("tickwire/hello/v1" ‖ exporter ‖ hello_body))` and
//! `sig_s = Ed25519(server_key, SHA-256("tickwire/accept/v1" ‖ exporter ‖ u32be(len(hello_body))
//! ‖ hello_body ‖ accept_body))`, where `exporter` is 32 bytes of TLS exporter output
//! ([`EXPORTER_LABEL`], empty context). Both signatures therefore bind the
//! identities to this very TLS session (see `PROTOCOL.md` §4).

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::ticket::{Envelope, PlayTicket, PlayTicketClaims, PlayTicketError, VsKeys};
use crate::ticket::{JoinTicket, JoinTicketClaims, TicketError};
pub use crate::tls::{EXPORTER_LABEL, EXPORTER_LEN};
use crate::wire::{self, check_extensions, find_extension, MAX_EXTENSIONS};
pub use crate::wire::{capability, Extension, ExtensionKind};
use crate::wire::{AcceptBody, Control, HelloBody, ReasonCode, Role, Signature, Signed, NONCE_LEN};

pub use crate::wire::PERMISSION_ADMIN;

/// A TLS exporter value binding the handshake to one QUIC connection.
pub type Exporter = [u8; EXPORTER_LEN];

fn hello_digest(exporter: &Exporter, hello_body: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"tickwire/hello/v1");
    h.update(exporter);
    h.update(hello_body);
    h.finalize().into()
}

fn accept_digest(exporter: &Exporter, hello_body: &[u8], accept_body: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"tickwire/accept/v1");
    h.update(exporter);
    h.update((hello_body.len() as u32).to_be_bytes());
    h.update(hello_body);
    h.update(accept_body);
    h.finalize().into()
}

fn verify(key: &[u8; 32], digest: &[u8; 32], sig: &Signature) -> bool {
    VerifyingKey::from_bytes(key)
        .and_then(|k| k.verify_strict(digest, &ed25519_dalek::Signature::from_bytes(&sig.0)))
        .is_ok()
}

/// An explicit refusal: sent to the peer as CONNECTION_CLOSE with `reason` as the application
/// error code and [`wire::CloseInfo`] as the reason phrase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Why.
    pub reason: ReasonCode,
    /// When the client may retry, in milliseconds, if at all.
    pub retry_after_ms: Option<u32>,
    /// Log detail.
    pub detail: String,
}

impl Rejection {
    /// A rejection without retry advice.
    pub fn new(reason: ReasonCode, detail: impl Into<String>) -> Self {
        Self {
            reason,
            retry_after_ms: None,
            detail: detail.into(),
        }
    }
}

impl From<TicketError> for Rejection {
    fn from(err: TicketError) -> Self {
        let (reason, retry_after_ms) = match &err {
            TicketError::Malformed => (ReasonCode::TICKET_MALFORMED, None),
            TicketError::UnknownKey { .. } => (ReasonCode::TICKET_UNKNOWN_KEY, None),
            TicketError::BadSignature => (ReasonCode::TICKET_BAD_SIGNATURE, None),
            TicketError::WrongAudience { .. } => (ReasonCode::TICKET_WRONG_AUDIENCE, None),
            TicketError::NotYetValid { starts_in_ms } => (
                ReasonCode::TICKET_NOT_YET_VALID,
                Some(u32::try_from(*starts_in_ms).unwrap_or(u32::MAX)),
            ),
            TicketError::Expired { .. } => (ReasonCode::TICKET_EXPIRED, None),
            TicketError::LifetimeTooLong => (ReasonCode::TICKET_LIFETIME_TOO_LONG, None),
            TicketError::Revoked => (ReasonCode::TICKET_REVOKED, None),
            TicketError::IdentityMismatch => (ReasonCode::TICKET_IDENTITY_MISMATCH, None),
            TicketError::Replayed => (ReasonCode::TICKET_REPLAYED, None),
            TicketError::ReplayCacheFull { retry_after_ms } => (
                ReasonCode::SERVER_BUSY,
                Some(u32::try_from(*retry_after_ms).unwrap_or(u32::MAX)),
            ),
        };
        Rejection {
            reason,
            retry_after_ms,
            detail: err.to_string(),
        }
    }
}

/// The agreed session, as each side sees it once the handshake completes.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    /// Negotiated protocol version.
    pub version: u16,
    /// Server-assigned session id.
    pub session_id: u64,
    /// Assigned role.
    pub role: Role,
    /// Granted permission bits.
    pub permissions: u32,
    /// Capability intersection.
    pub capabilities: u64,
    /// The client's Ed25519 identity key.
    pub client_key: [u8; 32],
    /// The server's Ed25519 identity key.
    pub server_key: [u8; 32],
    /// The server's tick when it accepted.
    pub server_tick: u64,
    /// The server's tick rate, in hertz.
    pub tick_rate_hz: u16,
    /// *Server side*: the verified ticket (used for revalidation); `None` for a game server
    /// on its verification server. *Client side*: `None`.
    pub ticket: Option<AdmittedTicket>,
    /// *Client side*: the server's verified play ticket, when the client asked for the check.
    pub play_ticket: Option<Box<PlayTicketClaims>>,
}

/// A join ticket the server accepted: its issuer key id and verified claims.
#[derive(Debug, Clone, PartialEq)]
pub struct AdmittedTicket {
    /// Issuer key id (revoking the key revokes the session).
    pub key_id: u32,
    /// The verified claims.
    pub claims: JoinTicketClaims,
}

/// What the client offers.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientOffer {
    /// Lowest protocol version offered.
    pub version_min: u16,
    /// Highest protocol version offered.
    pub version_max: u16,
    /// The game's schema hash.
    pub schema_hash: [u8; 32],
    /// Capability bits offered.
    pub capabilities: u64,
    /// Requested role.
    pub role: Role,
    /// The join ticket to present: `None` for [`Role::GameServer`] (a server refuses a
    /// GameServer hello that carries one with `BAD_HANDSHAKE`), `Some` for every other role.
    pub join_ticket: Option<JoinTicket>,
    /// If set, the server must prove this identity key or the client aborts with
    /// [`ReasonCode::SERVER_KEY_MISMATCH`].
    pub expected_server_key: Option<[u8; 32]>,
    /// If set, the server must present a play ticket that verifies (see [`PlayTicketCheck`]),
    /// or the client aborts with `PLAY_TICKET_INVALID` or `NOT_AUTHORISED`.
    pub play_ticket: Option<PlayTicketCheck>,
    /// Extensions to send in the Hello (`PROTOCOL.md` §4.4.4). [`ClientHandshake::start`]
    /// sorts them by kind and keeps the first of each kind; at most
    /// [`crate::wire::MAX_EXTENSIONS`] are sent.
    pub extensions: Vec<Extension>,
}

/// How a client checks the server's play ticket. The validity window is checked against the
/// wall clock given to [`AwaitingAccept::handle_accept`], i.e. when the Accept is processed,
/// not when the client started connecting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlayTicketCheck {
    /// The verification-server keys the client trusts.
    pub keys: VsKeys,
    /// Clock-skew allowance either way around `[issued_at_ms, expires_at_ms]`, in
    /// milliseconds (the endpoint uses [`Config::play_ticket_max_skew_ms`](crate::Config),
    /// default 2 000).
    pub max_skew_ms: u64,
}

/// Client, before TLS completes: holds the offer. The only move is [`ClientHandshake::start`].
#[derive(Debug)]
pub struct ClientHandshake {
    identity: SigningKey,
    offer: ClientOffer,
}

/// Client, hello sent: the only move is [`AwaitingAccept::handle_accept`].
#[derive(Debug)]
pub struct AwaitingAccept {
    offer: ClientOffer,
    exporter: Exporter,
    nonce: [u8; NONCE_LEN],
    hello_body: Vec<u8>,
    client_key: [u8; 32],
}

impl ClientHandshake {
    /// A client handshake for `identity` presenting `offer`.
    pub fn new(identity: SigningKey, offer: ClientOffer) -> Self {
        Self { identity, offer }
    }

    /// Builds and signs the hello once the TLS exporter is available.
    pub fn start(self, exporter: Exporter, nonce: [u8; NONCE_LEN]) -> (AwaitingAccept, Control) {
        let client_key = self.identity.verifying_key().to_bytes();
        let mut extensions = self.offer.extensions.clone();
        extensions.sort_by_key(|e| e.kind);
        extensions.dedup_by_key(|e| e.kind);
        extensions.truncate(MAX_EXTENSIONS);
        let body = HelloBody {
            version_min: self.offer.version_min,
            version_max: self.offer.version_max,
            schema_hash: self.offer.schema_hash,
            nonce,
            capabilities: self.offer.capabilities,
            role: self.offer.role,
            identity_key: client_key,
            join_ticket: self.offer.join_ticket.clone(),
            extensions,
        };
        let hello_body = wire::encode(&body);
        let signature = Signature(
            self.identity
                .sign(&hello_digest(&exporter, &hello_body))
                .to_bytes(),
        );
        let message = Control::Hello(Signed {
            body: hello_body.clone(),
            signature,
        });
        let next = AwaitingAccept {
            offer: self.offer,
            exporter,
            nonce,
            hello_body,
            client_key,
        };
        (next, message)
    }
}

impl AwaitingAccept {
    /// Verifies the server's accept. `now_unix_ms` is the client's wall clock (Unix epoch
    /// milliseconds) at the moment the accept is processed; only the play-ticket check (if the
    /// offer asked for one) reads it.
    ///
    /// # Errors
    /// A [`Rejection`] the client sends back to the server when closing: `BAD_HANDSHAKE`
    /// (wrong message, undecodable body, echo mismatch, version outside the offer),
    /// `SERVER_KEY_MISMATCH`, `BAD_SIGNATURE`, or for the play ticket `NOT_AUTHORISED`
    /// (missing, expired or not yet valid at `now_unix_ms` with the skew allowance) or
    /// `PLAY_TICKET_INVALID` (undecodable, untrusted key, bad signature, another server's key).
    pub fn handle_accept(self, message: &Control, now_unix_ms: u64) -> Result<Session, Rejection> {
        let Control::Accept(signed) = message else {
            return Err(Rejection::new(ReasonCode::BAD_HANDSHAKE, "expected accept"));
        };
        let body: AcceptBody = wire::decode(&signed.body)
            .and_then(|body: AcceptBody| check_extensions(&body.extensions).map(|()| body))
            .map_err(|e| Rejection::new(ReasonCode::BAD_HANDSHAKE, e.to_string()))?;
        if body.client_nonce != self.nonce
            || body.schema_hash != self.offer.schema_hash
            || body.version < self.offer.version_min
            || body.version > self.offer.version_max
            || body.capabilities & !self.offer.capabilities != 0
            || (body.capabilities & capability::ZSTD_DICTIONARY != 0
                && body.capabilities & capability::ZSTD == 0)
            || body.role != self.offer.role
        {
            return Err(Rejection::new(
                ReasonCode::BAD_HANDSHAKE,
                "accept does not match hello",
            ));
        }
        if let Some(expected) = self.offer.expected_server_key {
            if expected != body.server_key {
                return Err(Rejection::new(
                    ReasonCode::SERVER_KEY_MISMATCH,
                    "unexpected server key",
                ));
            }
        }
        let digest = accept_digest(&self.exporter, &self.hello_body, &signed.body);
        if !verify(&body.server_key, &digest, &signed.signature) {
            return Err(Rejection::new(
                ReasonCode::BAD_SIGNATURE,
                "server signature invalid",
            ));
        }
        let play_ticket = match &self.offer.play_ticket {
            None => None,
            Some(check) => Some(Box::new(check_play_ticket(
                check,
                body.play_ticket.as_deref(),
                &body.server_key,
                now_unix_ms,
            )?)),
        };
        Ok(Session {
            version: body.version,
            session_id: body.session_id,
            role: body.role,
            permissions: body.permissions,
            capabilities: body.capabilities,
            client_key: self.client_key,
            server_key: body.server_key,
            server_tick: body.server_tick,
            tick_rate_hz: body.tick_rate_hz,
            ticket: None,
            play_ticket,
        })
    }
}

fn check_play_ticket(
    check: &PlayTicketCheck,
    presented: Option<&[u8]>,
    server_key: &[u8; 32],
    now_unix_ms: u64,
) -> Result<PlayTicketClaims, Rejection> {
    let result = presented
        .ok_or(PlayTicketError::Missing)
        .and_then(|bytes| Envelope::from_bytes(bytes).map_err(PlayTicketError::from))
        .and_then(|envelope| {
            PlayTicket(envelope).verify(&check.keys, server_key, now_unix_ms, check.max_skew_ms)
        });
    result.map_err(|e| Rejection::new(ReasonCode::from(&e), e.to_string()))
}

/// The reason code a client closes with when the server's play ticket is refused
/// (`PROTOCOL.md` §4.4.3): `NOT_AUTHORISED` for a missing, expired or not-yet-valid ticket (the
/// game server may get a fresh one: retry later), `PLAY_TICKET_INVALID` otherwise.
impl From<&PlayTicketError> for ReasonCode {
    fn from(error: &PlayTicketError) -> Self {
        match error {
            PlayTicketError::Expired { .. }
            | PlayTicketError::NotYetValid { .. }
            | PlayTicketError::Missing => ReasonCode::NOT_AUTHORISED,
            _ => ReasonCode::PLAY_TICKET_INVALID,
        }
    }
}

/// What the server requires of a hello.
#[derive(Debug, Clone, Copy)]
pub struct ServerPolicy<'a> {
    /// Lowest protocol version accepted.
    pub version_min: u16,
    /// Highest protocol version accepted.
    pub version_max: u16,
    /// The game's schema hash.
    pub schema_hash: [u8; 32],
    /// Capability bits the server supports.
    pub capabilities: u64,
    /// The server's identity key (signs the accept).
    pub identity: &'a SigningKey,
    /// Whether [`Role::GameServer`] hellos (which must carry no join ticket) are admitted:
    /// true on a verification server.
    pub accept_game_servers: bool,
    /// The play ticket to present in the accept (an encoded
    /// [`Envelope`]), if the server holds one.
    pub play_ticket: Option<&'a [u8]>,
    /// SHA-256 of the server's zstd dictionary, if it has one: the
    /// [`capability::ZSTD_DICTIONARY`] bit is granted only to a Hello whose
    /// `COMPRESSION_DICTIONARY` extension names the same hash (`PROTOCOL.md` §4.4.2).
    pub dictionary_hash: Option<[u8; 32]>,
}

/// Values the server contributes to the accept (drawn by the endpoint from its seeded RNG
/// and its tick scheduler).
#[derive(Debug, Clone, Copy)]
pub struct ServerContribution {
    /// Fresh server nonce.
    pub nonce: [u8; NONCE_LEN],
    /// The new session's id.
    pub session_id: u64,
    /// Current server tick.
    pub server_tick: u64,
    /// Server tick rate, in hertz.
    pub tick_rate_hz: u16,
}

/// Server, TLS up: waiting for the hello. The only move is [`AwaitingHello::handle_hello`].
#[derive(Debug)]
pub struct AwaitingHello {
    exporter: Exporter,
}

impl AwaitingHello {
    /// A server handshake bound to the connection's exporter value.
    pub fn new(exporter: Exporter) -> Self {
        Self { exporter }
    }

    /// Checks the hello in order — decoding, version, schema, client signature, game-server
    /// role (no join ticket, and only where admitted), join ticket (through `verify_ticket`,
    /// which sees the ticket and the handshake identity key), role — and answers with a signed
    /// accept (`PROTOCOL.md` §4.4.1).
    ///
    /// # Errors
    /// A [`Rejection`] with the first failing check's reason code.
    pub fn handle_hello(
        self,
        policy: &ServerPolicy<'_>,
        message: &Control,
        contribution: ServerContribution,
        verify_ticket: impl FnOnce(&JoinTicket, &[u8; 32]) -> Result<JoinTicketClaims, TicketError>,
    ) -> Result<(Session, Control), Rejection> {
        let Control::Hello(signed) = message else {
            return Err(Rejection::new(ReasonCode::BAD_HANDSHAKE, "expected hello"));
        };
        let hello: HelloBody = wire::decode(&signed.body)
            .and_then(|hello: HelloBody| check_extensions(&hello.extensions).map(|()| hello))
            .map_err(|e| Rejection::new(ReasonCode::BAD_HANDSHAKE, e.to_string()))?;
        let offered_dictionary =
            match find_extension(&hello.extensions, ExtensionKind::COMPRESSION_DICTIONARY) {
                None => None,
                Some(data) => Some(<[u8; 32]>::try_from(data).map_err(|_| {
                    Rejection::new(
                        ReasonCode::BAD_HANDSHAKE,
                        "compression dictionary extension is not 32 bytes",
                    )
                })?),
            };
        let low = hello.version_min.max(policy.version_min);
        let high = hello.version_max.min(policy.version_max);
        if low > high {
            return Err(Rejection::new(
                ReasonCode::UNSUPPORTED_VERSION,
                format!(
                    "client speaks {}..={}, server {}..={}",
                    hello.version_min, hello.version_max, policy.version_min, policy.version_max
                ),
            ));
        }
        // Game servers speak the VS protocol, not the game (§8.1).
        let schema_hash = match hello.role {
            Role::GameServer => crate::wire::VS_SCHEMA_HASH,
            _ => policy.schema_hash,
        };
        if hello.schema_hash != schema_hash {
            return Err(Rejection::new(ReasonCode::SCHEMA_MISMATCH, "schema hash differs"));
        }
        if !verify(
            &hello.identity_key,
            &hello_digest(&self.exporter, &signed.body),
            &signed.signature,
        ) {
            return Err(Rejection::new(
                ReasonCode::BAD_SIGNATURE,
                "client signature invalid",
            ));
        }
        let admitted = match (hello.role, &hello.join_ticket) {
            // A game server's credential is its TPM quote (`PROTOCOL.md` §8.1): a ticket in its
            // hello is a malformed hello, never silently ignored.
            (Role::GameServer, Some(_)) => {
                return Err(Rejection::new(
                    ReasonCode::BAD_HANDSHAKE,
                    "a GameServer hello must not carry a join ticket",
                ));
            }
            (Role::GameServer, None) if !policy.accept_game_servers => {
                return Err(Rejection::new(
                    ReasonCode::ROLE_NOT_PERMITTED,
                    "this server admits no game servers",
                ));
            }
            (Role::GameServer, None) => None,
            (_, None) => return Err(Rejection::new(ReasonCode::TICKET_MALFORMED, "no join ticket")),
            (role, Some(ticket)) => {
                let claims = verify_ticket(ticket, &hello.identity_key)?;
                if role == Role::Admin && claims.permissions & PERMISSION_ADMIN == 0 {
                    return Err(Rejection::new(
                        ReasonCode::ROLE_NOT_PERMITTED,
                        "ticket lacks the admin permission",
                    ));
                }
                Some(AdmittedTicket {
                    key_id: ticket.key_id,
                    claims,
                })
            }
        };
        let body = AcceptBody {
            version: high,
            schema_hash,
            client_nonce: hello.nonce,
            server_nonce: contribution.nonce,
            session_id: contribution.session_id,
            role: hello.role,
            permissions: admitted.as_ref().map_or(0, |t| t.claims.permissions),
            capabilities: negotiate_capabilities(
                hello.capabilities,
                policy.capabilities,
                offered_dictionary,
                policy.dictionary_hash,
            ),
            server_key: policy.identity.verifying_key().to_bytes(),
            server_tick: contribution.server_tick,
            tick_rate_hz: contribution.tick_rate_hz,
            play_ticket: policy.play_ticket.map(<[u8]>::to_vec),
            extensions: Vec::new(),
        };
        let accept_body = wire::encode(&body);
        let digest = accept_digest(&self.exporter, &signed.body, &accept_body);
        let signature = Signature(policy.identity.sign(&digest).to_bytes());
        let session = Session {
            version: body.version,
            session_id: body.session_id,
            role: body.role,
            permissions: body.permissions,
            capabilities: body.capabilities,
            client_key: hello.identity_key,
            server_key: body.server_key,
            server_tick: body.server_tick,
            tick_rate_hz: body.tick_rate_hz,
            ticket: admitted,
            play_ticket: None,
        };
        Ok((
            session,
            Control::Accept(Signed {
                body: accept_body,
                signature,
            }),
        ))
    }
}

/// The session's capabilities (`PROTOCOL.md` §4.4.2): the intersection, except that
/// [`capability::ZSTD_DICTIONARY`] needs [`capability::ZSTD`] and both sides' dictionary hashes
/// present and equal; without it the session may still compress without a dictionary.
fn negotiate_capabilities(
    client: u64,
    server: u64,
    client_dictionary: Option<[u8; 32]>,
    server_dictionary: Option<[u8; 32]>,
) -> u64 {
    let mut capabilities = client & server;
    let same_dictionary = client_dictionary.is_some() && client_dictionary == server_dictionary;
    if capabilities & capability::ZSTD == 0 || !same_dictionary {
        capabilities &= !capability::ZSTD_DICTIONARY;
    }
    capabilities
}

#[cfg(test)]
mod tests;
