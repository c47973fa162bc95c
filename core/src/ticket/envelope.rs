//! Play tickets and protected receipts: what the verification server signs for game servers.
//!
//! Both are *envelopes*: a key id, the postcard encoding of the claims exactly as signed, and an
//! Ed25519 signature (RFC 8032, verified with `verify_strict`) over
//! `context ‖ key_id (4 bytes big-endian) ‖ claims`, with a context string per kind
//! ([`PLAY_TICKET_CONTEXT`], [`RECEIPT_CONTEXT`]) so one kind can never pass for another, nor for
//! a join ticket. `PROTOCOL.md` §8 gives the byte layout.

use std::collections::BTreeMap;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use serde_with::serde_as;

/// The postcard encoding of `value` (`PROTOCOL.md` §1.3).
fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_allocvec(value).expect("postcard encoding into a Vec cannot fail")
}

/// Decodes exactly `bytes` (trailing bytes are an error, as everywhere in `PROTOCOL.md`).
fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, ()> {
    match postcard::take_from_bytes(bytes) {
        Ok((value, [])) => Ok(value),
        _ => Err(()),
    }
}

/// Domain-separation prefix of a play ticket's signed message.
pub const PLAY_TICKET_CONTEXT: &[u8] = b"tickwire/play-ticket/v1\0";
/// Domain-separation prefix of a protected receipt's signed message.
pub const RECEIPT_CONTEXT: &[u8] = b"tickwire/receipt/v1\0";
/// Largest encoded envelope accepted, in bytes (checked before decoding).
pub const MAX_ENVELOPE_BYTES: usize = 512;

/// A signed envelope: key id, claims bytes, signature (layout in `PROTOCOL.md` §8.5).
#[serde_as]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Which verification-server key signed it.
    pub key_id: u32,
    /// The postcard encoding of the claims, exactly as signed.
    pub claims: Vec<u8>,
    /// Ed25519 signature, 64 raw bytes on the wire (a fixed-size tuple: postcard writes no
    /// length).
    #[serde_as(as = "[_; 64]")]
    pub signature: [u8; 64],
}

impl Envelope {
    fn seal<T: Serialize>(context: &[u8], key_id: u32, key: &SigningKey, claims: &T) -> Envelope {
        let claims = encode(claims);
        let signature = key.sign(&signed_message(context, key_id, &claims)).to_bytes();
        Envelope {
            key_id,
            claims,
            signature,
        }
    }

    fn open<T: DeserializeOwned>(&self, context: &[u8], keys: &VsKeys) -> Result<T, EnvelopeError> {
        let key = keys
            .get(self.key_id)
            .ok_or(EnvelopeError::UnknownKey(self.key_id))?;
        let signature = Signature::from_bytes(&self.signature);
        key.verify_strict(&signed_message(context, self.key_id, &self.claims), &signature)
            .map_err(|_| EnvelopeError::BadSignature)?;
        decode(&self.claims).map_err(|_| EnvelopeError::Malformed)
    }

    /// The wire encoding (postcard).
    pub fn to_bytes(&self) -> Vec<u8> {
        encode(self)
    }

    /// Decodes the wire encoding; verifies nothing.
    ///
    /// # Errors
    /// [`EnvelopeError::Malformed`] for oversized or undecodable bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Envelope, EnvelopeError> {
        if bytes.len() > MAX_ENVELOPE_BYTES {
            return Err(EnvelopeError::Malformed);
        }
        decode(bytes).map_err(|_| EnvelopeError::Malformed)
    }
}

fn signed_message(context: &[u8], key_id: u32, claims: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(context.len() + 4 + claims.len());
    message.extend_from_slice(context);
    message.extend_from_slice(&key_id.to_be_bytes());
    message.extend_from_slice(claims);
    message
}

/// Why an envelope did not open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// The key id is not trusted here.
    #[error("unknown verification-server key id {0}")]
    UnknownKey(u32),
    /// The signature does not verify: altered or forged.
    #[error("bad signature")]
    BadSignature,
    /// The bytes or the signed claims do not decode.
    #[error("malformed")]
    Malformed,
}

/// The verification-server keys a party trusts, by key id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VsKeys {
    keys: BTreeMap<u32, VerifyingKey>,
}

impl VsKeys {
    /// Trust `key` under `key_id` (replacing any key with that id).
    pub fn insert(&mut self, key_id: u32, key: VerifyingKey) {
        self.keys.insert(key_id, key);
    }

    /// A set with one key.
    pub fn single(key_id: u32, key: VerifyingKey) -> Self {
        let mut keys = Self::default();
        keys.insert(key_id, key);
        keys
    }

    /// Parses raw 32-byte Ed25519 public keys.
    ///
    /// # Errors
    /// [`EnvelopeError::Malformed`] if a key is not a valid curve point.
    pub fn from_raw(keys: &[(u32, [u8; 32])]) -> Result<Self, EnvelopeError> {
        let mut out = Self::default();
        for (id, raw) in keys {
            out.insert(
                *id,
                VerifyingKey::from_bytes(raw).map_err(|_| EnvelopeError::Malformed)?,
            );
        }
        Ok(out)
    }

    /// The trusted keys, by key id.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &VerifyingKey)> + '_ {
        self.keys.iter().map(|(id, key)| (*id, key))
    }

    fn get(&self, key_id: u32) -> Option<&VerifyingKey> {
        self.keys.get(&key_id)
    }
}

/// What a play ticket asserts: this game server, with this key and this measurement, is
/// authorised until `expires_at_ms` (Unix epoch milliseconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlayTicketClaims {
    /// The game server.
    pub gs_id: u64,
    /// Its Ed25519 identity key (the key that signs its handshake accepts).
    pub gs_key: [u8; 32],
    /// When the verification server signed it.
    pub issued_at_ms: u64,
    /// Last instant of validity (plus the verifier's skew allowance).
    pub expires_at_ms: u64,
    /// Increases by one with every ticket issued to this game server in one attestation.
    pub sequence: u64,
    /// The attested PCR digest (SHA-256) the ticket was issued for.
    pub measurement: [u8; 32],
}

/// A signed play ticket: [`Envelope`] over [`PlayTicketClaims`] with [`PLAY_TICKET_CONTEXT`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlayTicket(pub Envelope);

/// Why a play ticket was refused. A client closes with `NOT_AUTHORISED` for a missing, expired
/// or not-yet-valid one, `PLAY_TICKET_INVALID` otherwise (`PROTOCOL.md` §4.4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlayTicketError {
    /// No ticket was presented.
    #[error("no play ticket")]
    Missing,
    /// The envelope did not open.
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    /// The ticket names another game-server key than the one that signed the handshake.
    #[error("play ticket is for another game server key")]
    WrongGameServer,
    /// Expired, even with the skew allowance.
    #[error("play ticket expired {ago_ms} ms ago")]
    Expired {
        /// Milliseconds since the last accepted instant.
        ago_ms: u64,
    },
    /// Issued in the future beyond the skew allowance.
    #[error("play ticket issued {ahead_ms} ms in the future")]
    NotYetValid {
        /// Milliseconds ahead of the allowance.
        ahead_ms: u64,
    },
}

impl PlayTicket {
    /// Signs `claims` with `key` under `key_id`.
    pub fn issue(key_id: u32, key: &SigningKey, claims: &PlayTicketClaims) -> PlayTicket {
        PlayTicket(Envelope::seal(PLAY_TICKET_CONTEXT, key_id, key, claims))
    }

    /// Checks signature, key and validity at `now_unix_ms` with `max_skew_ms` either way.
    ///
    /// # Errors
    /// The first failing check, as a [`PlayTicketError`].
    pub fn verify(
        &self,
        keys: &VsKeys,
        gs_key: &[u8; 32],
        now_unix_ms: u64,
        max_skew_ms: u64,
    ) -> Result<PlayTicketClaims, PlayTicketError> {
        let claims: PlayTicketClaims = self.0.open(PLAY_TICKET_CONTEXT, keys)?;
        if &claims.gs_key != gs_key {
            return Err(PlayTicketError::WrongGameServer);
        }
        let last = claims.expires_at_ms.saturating_add(max_skew_ms);
        if now_unix_ms > last {
            return Err(PlayTicketError::Expired {
                ago_ms: now_unix_ms - last,
            });
        }
        let first = claims.issued_at_ms.saturating_sub(max_skew_ms);
        if now_unix_ms < first {
            return Err(PlayTicketError::NotYetValid {
                ahead_ms: first - now_unix_ms,
            });
        }
        Ok(claims)
    }

    /// The claims **without** verifying anything (logs, routing).
    ///
    /// # Errors
    /// [`EnvelopeError::Malformed`].
    pub fn claims_unverified(&self) -> Result<PlayTicketClaims, EnvelopeError> {
        decode(&self.0.claims).map_err(|_| EnvelopeError::Malformed)
    }
}

/// What a protected receipt asserts: the verification server received this transcript digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptClaims {
    /// The game server that sent the digest.
    pub gs_id: u64,
    /// The game session the transcript belongs to.
    pub session_id: u64,
    /// The digest's sequence number (per game server, from 1).
    pub sequence: u64,
    /// The last tick the digest covers.
    pub tick: u64,
    /// The transcript hash-chain head (SHA-256).
    pub digest: [u8; 32],
    /// When the verification server received it, Unix epoch milliseconds.
    pub received_at_ms: u64,
}

/// A signed receipt: [`Envelope`] over [`ReceiptClaims`] with [`RECEIPT_CONTEXT`]. Verifies
/// offline against the verification server's key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProtectedReceipt(pub Envelope);

impl ProtectedReceipt {
    /// Signs `claims`.
    pub fn issue(key_id: u32, key: &SigningKey, claims: &ReceiptClaims) -> ProtectedReceipt {
        ProtectedReceipt(Envelope::seal(RECEIPT_CONTEXT, key_id, key, claims))
    }

    /// Verifies the signature and returns the claims.
    ///
    /// # Errors
    /// [`EnvelopeError`].
    pub fn verify(&self, keys: &VsKeys) -> Result<ReceiptClaims, EnvelopeError> {
        self.0.open(RECEIPT_CONTEXT, keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn claims() -> PlayTicketClaims {
        PlayTicketClaims {
            gs_id: 7,
            gs_key: [9; 32],
            issued_at_ms: 1_000_000,
            expires_at_ms: 1_006_000,
            sequence: 1,
            measurement: [3; 32],
        }
    }

    #[test]
    fn play_ticket_verifies_and_checks_each_field() {
        let vs = key(1);
        let keys = VsKeys::single(5, vs.verifying_key());
        let ticket = PlayTicket::issue(5, &vs, &claims());
        assert_eq!(ticket.verify(&keys, &[9; 32], 1_003_000, 0), Ok(claims()));
        assert_eq!(
            ticket.verify(&keys, &[8; 32], 1_003_000, 0),
            Err(PlayTicketError::WrongGameServer)
        );
        assert_eq!(
            ticket.verify(&keys, &[9; 32], 1_007_000, 500),
            Err(PlayTicketError::Expired { ago_ms: 500 })
        );
        assert!(ticket.verify(&keys, &[9; 32], 1_007_000, 1_000).is_ok());
        assert_eq!(
            ticket.verify(&keys, &[9; 32], 998_000, 1_000),
            Err(PlayTicketError::NotYetValid { ahead_ms: 1_000 })
        );
        let other = VsKeys::single(5, key(2).verifying_key());
        assert_eq!(
            ticket.verify(&other, &[9; 32], 1_003_000, 0),
            Err(PlayTicketError::Envelope(EnvelopeError::BadSignature))
        );
        let unknown = VsKeys::single(6, vs.verifying_key());
        assert_eq!(
            ticket.verify(&unknown, &[9; 32], 1_003_000, 0),
            Err(PlayTicketError::Envelope(EnvelopeError::UnknownKey(5)))
        );
    }

    #[test]
    fn a_receipt_signature_never_passes_as_a_play_ticket() {
        let vs = key(1);
        let keys = VsKeys::single(5, vs.verifying_key());
        let receipt = ProtectedReceipt::issue(
            5,
            &vs,
            &ReceiptClaims {
                gs_id: 7,
                session_id: 1,
                sequence: 1,
                tick: 60,
                digest: [1; 32],
                received_at_ms: 5,
            },
        );
        assert!(receipt.verify(&keys).is_ok());
        let forged = PlayTicket(receipt.0.clone());
        assert_eq!(
            forged.verify(&keys, &[9; 32], 0, u64::MAX),
            Err(PlayTicketError::Envelope(EnvelopeError::BadSignature))
        );
    }

    #[test]
    fn envelope_bytes_round_trip_and_garbage_is_malformed() {
        let ticket = PlayTicket::issue(5, &key(1), &claims());
        let bytes = ticket.0.to_bytes();
        assert_eq!(Envelope::from_bytes(&bytes), Ok(ticket.0));
        assert_eq!(Envelope::from_bytes(&bytes[..10]), Err(EnvelopeError::Malformed));
        assert_eq!(Envelope::from_bytes(&[0; 600]), Err(EnvelopeError::Malformed));
    }
}
