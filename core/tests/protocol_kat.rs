//! Known-answer tests: the worked examples of `PROTOCOL.md`, byte for byte, produced by the real
//! encoders and signers from the examples' inputs. The expected hex is hard-coded here (copied
//! from the document), so a change to the encoding, the signed transcripts or the document that
//! makes them disagree fails a test instead of passing unnoticed.

use ed25519_dalek::SigningKey;
use sha2::{Digest, Sha256};
use tickwire_core::attest::{measurement_pcr_digest, quote_extra_data};
use tickwire_core::config::TicketConfig;
use tickwire_core::handshake::{
    AwaitingHello, ClientHandshake, ClientOffer, ServerContribution, ServerPolicy,
};
use tickwire_core::vs::{
    PlayTicket, PlayTicketClaims, ProtectedReceipt, ReceiptClaims, Revocation, TranscriptChain,
    TranscriptDigest, VsMessage,
};
use tickwire_core::wire::{self, capability, Control, Extension, ExtensionKind, NONCE_LEN};
use tickwire_core::TicketVerifier;
use tickwire_core::{JoinTicketClaims, Role, TicketIssuer};

/// 2026-01-01T00:00:00Z: the examples' `t₀` (`issued_at` of the join ticket).
const T0: u64 = 1_767_225_600_000;
/// The fixed stand-in for the TLS exporter value (§4.7 `E`).
const EXPORTER: [u8; 32] = [0xEE; 32];

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hex with the document's shorthand expanded: `NN×K` is K bytes of `NN`; spaces are ignored.
fn expand(text: &str) -> String {
    text.split_whitespace()
        .map(|token| match token.split_once('×') {
            Some((byte, count)) => byte.repeat(count.parse().unwrap()),
            None => token.to_owned(),
        })
        .collect()
}

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for part in parts {
        h.update(part);
    }
    h.finalize().into()
}

const CLIENT_KEY: &str = "8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c";
const SERVER_KEY: &str = "8139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394";
const ISSUER_KEY: &str = "fd1724385aa0c75b64fb78cd602fa1d991fdebf76b13c58ed702eac835e9f618";
const TICKET_SIGNATURE: &str = "98a6a1998315b024a11fe67ac2bcf217aa850b63f6e286401df21dfe7edc6ede\
                                5c2e5c47d800ba1c3ff81b35c1698bfcbb147f59a818f61d76bb3a18525bf201";
const SIG_C: &str = "251b904d5c1b068183aa71383d9b731fe5b62654d4b026c0d19e0584de5271fa\
                     5c765bad70db698eb68af2a2378ce21f24114c07249d8926195499dba9353f04";
const SIG_S: &str = "c61b231cdfce6502cd4917d3b5ec42994273bf8475974e74bc5ef25f2f98129e\
                     03ac2a1d3d92c4aece0d4449b8e88a6a8336a442dc992699119d902e58262e01";

#[test]
fn section_4_7_hello_and_accept_bytes() {
    let client = SigningKey::from_bytes(&[0x01; 32]);
    let server = SigningKey::from_bytes(&[0x02; 32]);
    let issuer = TicketIssuer::new(1, SigningKey::from_bytes(&[0x09; 32]));
    assert_eq!(hex(&client.verifying_key().to_bytes()), CLIENT_KEY);
    assert_eq!(hex(&server.verifying_key().to_bytes()), SERVER_KEY);
    assert_eq!(hex(&issuer.verifying_key().to_bytes()), ISSUER_KEY);

    // Join ticket: client 7, gs 42, jti 16×05, issued = not_before = t₀, expires t₀ + 60 s.
    let claims = JoinTicketClaims::builder(client.verifying_key().to_bytes(), [0x05; 16])
        .client_id(7)
        .audience(42)
        .valid_from(T0)
        .lifetime_ms(60_000)
        .build();
    let ticket = issuer.issue(&claims);
    let claims_hex = expand(&format!(
        "07 2a 05×16 80d0eab6b733 80d0eab6b733 e0a4eeb6b733 00 {CLIENT_KEY}"
    ));
    assert_eq!(hex(&ticket.claims), claims_hex);
    assert_eq!(hex(&ticket.signature), TICKET_SIGNATURE);

    // Hello frame (334 bytes): zstd with a dictionary offered, the dictionary's hash DD×32 in
    // a COMPRESSION_DICTIONARY extension.
    let offer = ClientOffer {
        version_min: 1,
        version_max: 1,
        schema_hash: [0x08; 32],
        capabilities: capability::ZSTD | capability::ZSTD_DICTIONARY,
        role: Role::Player,
        join_ticket: Some(ticket),
        expected_server_key: None,
        play_ticket: None,
        extensions: vec![Extension {
            kind: ExtensionKind::COMPRESSION_DICTIONARY,
            data: vec![0xDD; 32],
        }],
    };
    let (awaiting, hello) = ClientHandshake::new(client, offer).start(EXPORTER, [0x03; NONCE_LEN]);
    let hello_frame = wire::encode_frame(&wire::encode(&hello));
    let hello_body = expand(&format!(
        "01 01 08×32 03×24 03 00 {CLIENT_KEY} 01 01 45 {claims_hex} {TICKET_SIGNATURE} 01 01 20 dd×32"
    ));
    let expected_hello = expand(&format!("0000014a 00 8702 {hello_body} {SIG_C}"));
    assert_eq!(hello_frame.len(), 334);
    assert_eq!(hex(&hello_frame), expected_hello);
    let Control::Hello(signed_hello) = &hello else {
        unreachable!("the client sends a hello")
    };
    assert_eq!(signed_hello.body.len(), 263);
    assert_eq!(
        hex(&sha256(&[b"tickwire/hello/v1", &EXPORTER, &signed_hello.body])),
        "00ce80f94c36e5252c39bf6d742441e9f2bf6b77e5854e8238b96d06bc84dea5"
    );
    assert_eq!(
        hex(&[b"tickwire/join-ticket/v1\0".as_slice(), &1u32.to_be_bytes()].concat()),
        "7469636b776972652f6a6f696e2d7469636b65742f76310000000001",
        "ticket signed-message prefix"
    );

    // Accept frame (192 bytes): server nonce 24×04, session 77, tick 1 000 at 60 Hz; the server
    // has the same dictionary, so both capability bits are granted.
    let mut verifier = TicketVerifier::new(42, TicketConfig::default());
    verifier.add_key(1, issuer.verifying_key());
    let policy = ServerPolicy {
        version_min: 1,
        version_max: 1,
        schema_hash: [0x08; 32],
        capabilities: capability::ZSTD | capability::ZSTD_DICTIONARY,
        identity: &server,
        accept_game_servers: false,
        play_ticket: None,
        dictionary_hash: Some([0xDD; 32]),
    };
    let contribution = ServerContribution {
        nonce: [0x04; NONCE_LEN],
        session_id: 77,
        server_tick: 1_000,
        tick_rate_hz: 60,
    };
    let (server_session, accept) = AwaitingHello::new(EXPORTER)
        .handle_hello(&policy, &hello, contribution, |t, k| verifier.verify(t, T0, k))
        .expect("the example's hello is accepted");
    let accept_frame = wire::encode_frame(&wire::encode(&accept));
    let accept_body = expand(&format!(
        "01 08×32 03×24 04×24 4d 00 00 03 {SERVER_KEY} e807 3c 00 00"
    ));
    let expected_accept = expand(&format!("000000bc 01 7a {accept_body} {SIG_S}"));
    assert_eq!(accept_frame.len(), 192);
    assert_eq!(hex(&accept_frame), expected_accept);
    let Control::Accept(signed_accept) = &accept else {
        unreachable!("the server sends an accept")
    };
    let hello_len = (signed_hello.body.len() as u32).to_be_bytes();
    assert_eq!(
        hex(&sha256(&[
            b"tickwire/accept/v1",
            &EXPORTER,
            &hello_len,
            &signed_hello.body,
            &signed_accept.body,
        ])),
        "c7dd8d60a0eca5eb2acbe93f9fb1013ba34dd4d8c52a603908ec8fe9855a069a"
    );

    // And the client accepts it.
    let client_session = awaiting
        .handle_accept(&accept, T0)
        .expect("the example's accept verifies");
    assert_eq!(client_session.session_id, 77);
    assert_eq!(client_session.capabilities, 0b11);
    assert_eq!(server_session.session_id, 77);
}

#[test]
fn section_8_12_vs_bytes() {
    let gs_key = SigningKey::from_bytes(&[0x02; 32]).verifying_key().to_bytes();
    let vs_key = SigningKey::from_bytes(&[0x09; 32]);
    assert_eq!(hex(&vs_key.verifying_key().to_bytes()), ISSUER_KEY);
    assert_eq!(hex(&gs_key), SERVER_KEY);

    assert_eq!(
        hex(&quote_extra_data(&[0x21; 32], &gs_key, 42)),
        "f474409179d53e4f0b90e80d1478fa043a42e0bf521a374c9fe71e0d0666ef50"
    );
    let pcr23 = sha256(&[&sha256(&[&[0; 32], &[0xB1; 32]]), &[0xC0; 32]]);
    assert_eq!(
        hex(&pcr23),
        "89eb4301e1e15e4dcd3365f765a3eb490d32e944d5743439e9b8dc41df1ab1a6"
    );
    let measurement = measurement_pcr_digest([0xB1; 32], [0xC0; 32]);
    let d = "9dda0ee6709d5071fd0957b3a02576f9fa762d90bf3b37e024635c9aa1982c35";
    assert_eq!(hex(&measurement), d);

    // Play ticket {gs 42, gs_key, t₀, t₀ + 6 s, sequence 1, D}: a 144-byte envelope.
    let ticket = PlayTicket::issue(
        1,
        &vs_key,
        &PlayTicketClaims {
            gs_id: 42,
            gs_key,
            issued_at_ms: T0,
            expires_at_ms: T0 + 6_000,
            sequence: 1,
            measurement,
        },
    );
    let signature = "897ef061238fbd4bae58cec78fc470a30a6f513d091f307d6dbd4a9aab65a7bf\
                     6f79eb358fd338dcda0d5fd01561b385cdf016c9b48fb7d1555f7233d0e69401";
    let envelope = expand(&format!(
        "01 4e 2a {SERVER_KEY} 80d0eab6b733 f0feeab6b733 01 {d} {signature}"
    ));
    assert_eq!(ticket.0.to_bytes().len(), 144);
    assert_eq!(hex(&ticket.0.to_bytes()), envelope);
    let accepted = VsMessage::Accepted {
        ticket: ticket.clone(),
        next_nonce: [0x22; 32],
    };
    assert_eq!(hex(&accepted.encode()), expand(&format!("02 {envelope} 22×32")));

    // Transcript of session 77, input "hi" at tick 1 000; digest; receipt at t₀ + 1 s.
    let mut chain = TranscriptChain::new(77);
    let h0 = "02df6d36087bfe14e2ea79f096c2751b3c568eaf415025de38a7352192d5e25a";
    assert_eq!(hex(&chain.head()), h0);
    chain.record(1_000, b"hi");
    let h1 = "09e0e36b25a66b0225596b62e2d002eeb4279dff8aea967ef1df1db3c6fa0410";
    assert_eq!(hex(&chain.head()), h1);
    let digest = TranscriptDigest {
        sequence: 1,
        session_id: 77,
        tick: 1_000,
        inputs: 1,
        digest: chain.head(),
    };
    assert_eq!(
        hex(&VsMessage::Digest(digest).encode()),
        format!("05014de80701{h1}")
    );
    let claims = ReceiptClaims {
        gs_id: 42,
        session_id: 77,
        sequence: 1,
        tick: 1_000,
        digest: chain.head(),
        received_at_ms: T0 + 1_000,
    };
    let receipt = ProtectedReceipt::issue(1, &vs_key, &claims);
    assert_eq!(hex(&receipt.0.claims), format!("2a4d01e807{h1}e8d7eab6b733"));
    assert_eq!(
        hex(&receipt.0.signature),
        "170248def29a342aabefac24867f71229ec9f60d065e3d1c175a283e75f43739\
         a8058866e6f87ff51bcce7909666c8a0dd1f0a1ec5e3b8205ee797f1fe741308"
    );

    // Other messages.
    assert_eq!(
        hex(&VsMessage::Challenge { nonce: [0x21; 32] }.encode()),
        expand("00 21×32")
    );
    let heartbeat = VsMessage::Heartbeat {
        sequence: 1,
        timestamp_ms: T0,
        sessions: 3,
        attestation: None,
    };
    assert_eq!(hex(&heartbeat.encode()), "040180d0eab6b7330300");
    assert_eq!(
        hex(&VsMessage::Revoke(Revocation::Client { client_id: 7 }).encode()),
        "070107"
    );
}
