//! Inputs for the `endpoint` target: a real client's Initial, raw and re-sealed, with the
//! operations around it.

use std::net::SocketAddr;

use tickwire_core::{Config, ConnectOptions, Endpoint, JoinTicketClaims, Secrets, TicketIssuer, WallClock};

use super::{cat, le16, le32, noise};
use crate::endpoint::initial_suite;
use crate::fixtures::{client_identity, signing_key, GS_ID, KEY_ID, NOW_MS, SCHEMA};
use crate::input::base_instant;

/// A real client's first Initial to a server: its connection ids and decrypted frames
/// (the ClientHello in a CRYPTO frame; trailing PADDING dropped). Its TLS randomness and key
/// share come from a seed, so the corpus written from it is the same on every run.
fn recorded_initial() -> (Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>) {
    let start = base_instant();
    let wall = WallClock::new(start, NOW_MS);
    let mut client = Endpoint::builder(
        Config {
            schema_hash: SCHEMA,
            ..Config::default()
        },
        Secrets::insecure_from_seed(9),
        client_identity(0),
        wall,
    )
    .crypto(tickwire_sim::crypto::sim_crypto([9; 32], None))
    .client()
    .unwrap();
    let ticket = TicketIssuer::new(KEY_ID, signing_key()).issue(
        &JoinTicketClaims::builder(client_identity(0).verifying_key().to_bytes(), [0x0B; 16])
            .client_id(5)
            .audience(GS_ID)
            .valid_from(NOW_MS)
            .lifetime_ms(60_000)
            .permissions(1)
            .build(),
    );
    let server: SocketAddr = ([192, 0, 2, 1], 4433).into();
    client
        .connect(start, server, ticket, ConnectOptions::default())
        .unwrap();
    let mut buf = Vec::new();
    let transmit = client.poll_transmit(start, &mut buf).unwrap();
    let datagram = buf[..transmit.size].to_vec();
    // RFC 9000 §17.2.2.
    let mut p = 5;
    let dcid = datagram[p + 1..p + 1 + usize::from(datagram[p])].to_vec();
    p += 1 + dcid.len();
    let scid = datagram[p + 1..p + 1 + usize::from(datagram[p])].to_vec();
    p += 1 + scid.len();
    assert_eq!(datagram[p], 0, "a first Initial carries no token");
    p += 1;
    let length = usize::from(u16::from_be_bytes([datagram[p], datagram[p + 1]]) & 0x3fff);
    p += 2;
    let keys = initial_suite().keys(&dcid, rustls::Side::Server, rustls::quic::Version::V1);
    let mut header = datagram[..p + 4].to_vec();
    let sample: [u8; 16] = datagram[p + 4..p + 20].try_into().unwrap();
    let (first, pn) = header.split_at_mut(1);
    keys.remote
        .header
        .decrypt_in_place(&sample, &mut first[0], &mut pn[p - 1..p + 3])
        .unwrap();
    let pn_len = usize::from(header[0] & 3) + 1;
    header.truncate(p + pn_len);
    let pn = header[p..].iter().fold(0u64, |n, b| (n << 8) | u64::from(*b));
    let mut payload = datagram[p + pn_len..p + length].to_vec();
    let frames = keys
        .remote
        .packet
        .decrypt_in_place(pn, &header, &mut payload)
        .unwrap()
        .to_vec();
    let end = frames.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
    (datagram, dcid, scid, frames[..end].to_vec())
}

pub(super) fn endpoint_inputs() -> Vec<Vec<u8>> {
    let (datagram, dcid, scid, frames) = recorded_initial();
    let raw = |src: u8, bytes: &[u8]| cat(&[&[0, src], &le16(u16::try_from(bytes.len()).unwrap()), bytes]);
    let sealed = |src: u8, dcid: &[u8], frames: &[u8]| {
        cat(&[
            &[1, src, u8::try_from(dcid.len()).unwrap()],
            dcid,
            &[u8::try_from(scid.len()).unwrap()],
            &scid,
            &le32(0),
            &[0],
            &le16(u16::try_from(frames.len()).unwrap()),
            frames,
        ])
    };
    let advance = |ms: u16| cat(&[&[2], &le16(ms)]);
    let mut other_dcid = dcid.clone();
    other_dcid[0] ^= 0x55;
    let flood = cat(&[
        &[0x00, 0x00],
        &sealed(0, &dcid, &frames),
        &sealed(1, &other_dcid, &frames),
        &[5, 2],
        &advance(100),
        &[7, 0, 3, 0x40, 3],
        &advance(2_500),
        &[6],
        &sealed(4, &dcid, &frames),
        &[4, 2],
        &sealed(6, &other_dcid, &frames),
    ]);
    let mut inputs = vec![
        cat(&[
            &[0x15, 0x00],
            &raw(0, &datagram),
            &advance(50),
            &raw(0, &datagram),
        ]),
        cat(&[
            &[0x00, 0x02],
            &sealed(0, &dcid, &frames),
            &advance(3_000),
            &[3, 10, 0],
        ]),
        flood,
        cat(&[
            &[0x3F, 0x09],
            &raw(1, &datagram[..1_199]),
            &raw(2, &[0x40; 40]),
            &raw(3, &[0x80, 0, 0, 0, 0x2a]),
        ]),
    ];
    inputs.extend(noise(10, &[600, 2_000]));
    inputs
}

/// `wt_session` inputs: ordinary traffic both ways, then one misbehaviour each of the
/// WebTransport client and server (a duplicate HTTP/3 control stream, an extra request, bytes
/// and capsules on the CONNECT stream, garbage on the control stream, datagrams with and
/// without the session prefix, a reset CONNECT stream).
pub(super) fn wt_session_inputs() -> Vec<Vec<u8>> {
    const CLIENT: u8 = 0;
    const SERVER: u8 = 1;
    let with_bytes = |op: u8, side: u8, extra: &[u8], bytes: &[u8]| {
        let len = u16::try_from(bytes.len()).unwrap();
        cat(&[&[op, side], extra, &le16(len), bytes])
    };
    let run = |ms: u16| cat(&[&[5], &le16(ms)]);
    let native = vec![7];
    let traffic = cat(&[
        &native,
        &with_bytes(6, CLIENT, &[], b"input"),
        &with_bytes(6, SERVER, &[], b"snapshot"),
        &run(100),
        &native,
    ]);
    // HEADERS (type 1) with a QPACK block naming :method CONNECT (static index 15).
    let headers = [0x01, 0x03, 0x00, 0x00, 0xcf];
    // DATA frames on the CONNECT stream carrying a CLOSE_WEBTRANSPORT_SESSION capsule (type
    // 0x2843) with code 7 and no message, and an unknown capsule.
    let close_capsule = [0x00, 0x07, 0x68, 0x43, 0x04, 0x00, 0x00, 0x00, 0x07];
    let unknown_capsule = [0x00, 0x04, 0x3f, 0x02, 0xaa, 0xbb];
    let misbehaviours: Vec<Vec<u8>> = vec![
        with_bytes(0, CLIENT, &[1], &[0x00, 0x01, 0x05, b'h', b'e', b'l', b'l', b'o']),
        with_bytes(0, CLIENT, &[0], &[0x00, 0x04, 0x00]),
        with_bytes(0, SERVER, &[0], &[0x02]),
        with_bytes(1, CLIENT, &[], &headers),
        with_bytes(1, SERVER, &[], &[0x40, 0x41, 0x00]),
        with_bytes(2, CLIENT, &[0], &unknown_capsule),
        with_bytes(2, CLIENT, &[0], &close_capsule),
        with_bytes(2, SERVER, &[0], &close_capsule),
        with_bytes(2, CLIENT, &[1], &[0xff; 16]),
        with_bytes(2, SERVER, &[1], &[0x00, 0x00, 0x09]),
        with_bytes(4, CLIENT, &[1], &[0x01, 0x02, 0x03]),
        with_bytes(4, SERVER, &[0], &[0x04, 0x00]),
        vec![3, CLIENT, 0],
        vec![3, SERVER, 1],
    ];
    let mut inputs = vec![Vec::new(), traffic.clone()];
    inputs.extend(
        misbehaviours
            .into_iter()
            .map(|m| cat(&[&traffic, &m, &run(3000), &native])),
    );
    inputs
}
