//! Inputs for the `endpoint` target: a real client's Initial, raw and re-sealed, with the
//! operations around it.

use std::net::SocketAddr;

use tickwire_core::{Config, ConnectOptions, Endpoint, JoinTicketClaims, Secrets, TicketIssuer, WallClock};

use super::{cat, le16, le32, noise};
use crate::endpoint::initial_suite;
use crate::fixtures::{client_identity, signing_key, GS_ID, KEY_ID, NOW_MS, SCHEMA};
use crate::input::base_instant;

/// A real client's first Initial to a server: its connection ids and decrypted frames
/// (the ClientHello in a CRYPTO frame; trailing PADDING dropped).
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
