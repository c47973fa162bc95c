//! Inputs for the state-machine targets: operation sequences in `arbitrary`'s encoding that
//! walk each machine through its main paths, and some noise.

use super::{cat, le16, le32, noise, tag};

/// The state-machine targets' inputs, in [`TARGETS`](crate::TARGETS) order.
pub(super) fn machines() -> Vec<(&'static str, Vec<Vec<u8>>)> {
    vec![
        ("reassembler", reassembler_inputs()),
        ("heartbeat", heartbeat_inputs()),
        ("tick_scheduler", tick_scheduler_inputs()),
        ("tick_sync", tick_sync_inputs()),
        ("rate_limiter", rate_limiter_inputs()),
        ("replay_cache", replay_cache_inputs()),
        ("handshake_server", handshake_server_inputs()),
        ("handshake_client", handshake_client_inputs()),
        ("gs_agent", gs_agent_inputs()),
    ]
}

fn reassembler_inputs() -> Vec<Vec<u8>> {
    let message = |channel: u8, len: u16, chunk: u16, fill: u8| {
        cat(&[&tag(0, 7), &[channel], &le16(len), &le16(chunk), &[fill]])
    };
    let rest = |m: u8, reverse: bool| cat(&[&tag(1, 7), &[m, u8::from(reverse)]]);
    let fragment = |m: u8, i: u8| cat(&[&tag(2, 7), &[m, i]]);
    let advance = |ms: u16| cat(&[&tag(4, 7), &le16(ms)]);
    let flow = cat(&[
        &[0; 8],
        &message(1, 3_000, 499, 7),
        &rest(0, false),
        &message(2, 100, 0, 1),
        &rest(1, true),
        &message(0, 4_096, 255, 3),
        &fragment(2, 0),
        &fragment(2, 0),
        &advance(600),
        &rest(2, false),
        &tag(5, 7),
        &rest(0, false),
    ]);
    // A 2 KiB budget: one message evicts another.
    let budget = cat(&[
        &[0, 0, 0, 0, 0, 0],
        &le16(8192 ^ 2048),
        &message(0, 1_500, 299, 1),
        &fragment(0, 0),
        &message(1, 1_500, 299, 2),
        &rest(1, false),
        &rest(0, false),
    ]);
    let mut inputs = vec![flow, budget, vec![0; 48]];
    inputs.extend(noise(1, &[256, 2_048]));
    inputs
}

fn heartbeat_inputs() -> Vec<Vec<u8>> {
    let poll = |tick: u8| cat(&[&tag(0, 8), &[tick]]);
    let advance = |ms: u16| cat(&[&tag(1, 8), &le16(ms)]);
    let pong = |which: u8, hold: u16| cat(&[&tag(2, 8), &[which], &le16(hold), &le32(7)]);
    let ping = |seq: i8, ts: i16| cat(&[&tag(4, 8), &seq.to_le_bytes(), &ts.to_le_bytes()]);
    let mut flow = vec![0; 8];
    for round in 0..12u8 {
        flow.extend(poll(round));
        flow.extend(advance(30 + u16::from(round) * 7));
        flow.extend(pong(0, 500));
        flow.extend(ping(1, 500));
        if round % 4 == 3 {
            flow.extend(ping(-2, -500)); // reordered
        }
        flow.extend(advance(470));
    }
    flow.extend(advance(9_000));
    flow.extend(tag(7, 8));
    flow.extend(poll(0));
    let mut inputs = vec![flow, vec![0; 32]];
    inputs.extend(noise(2, &[256, 1_024]));
    inputs
}

fn tick_scheduler_inputs() -> Vec<Vec<u8>> {
    let advance = |us: u32| cat(&[&tag(0, 5), &le32(us)]);
    let stall = |ms: u32| cat(&[&tag(1, 5), &le32(ms)]);
    let catch_up = cat(&[
        &[0, 0, 5, 16],
        &advance(16_667),
        &advance(16_666),
        &stall(250),
        &cat(&[&tag(3, 5), &le16(100)]),
        &cat(&[&tag(2, 5), &[1]]),
        &tag(4, 5),
        &advance(1),
    ]);
    let mut inputs = vec![catch_up, vec![0; 40]];
    inputs.extend(noise(3, &[128, 512]));
    inputs
}

fn tick_sync_inputs() -> Vec<Vec<u8>> {
    let time = |us: u32| cat(&[&tag(0, 3), &tag(0, 5), &le32(us)]);
    let sample = |offset: i16, rtt: u16| cat(&[&tag(1, 3), &offset.to_le_bytes(), &le16(rtt)]);
    let mut flow = vec![0; 8];
    flow.extend(sample(0, 50));
    for i in 0..20 {
        flow.extend(time(16_667));
        if i % 5 == 4 {
            flow.extend(sample(1, 48));
        }
    }
    flow.extend(sample(90, 40)); // the server's tick jumped: snap
    flow.extend(time(16_667));
    flow.extend(cat(&[&tag(0, 3), &tag(1, 5), &le32(2_000)]));
    flow.extend(cat(&[&tag(2, 3), &u64::MAX.to_le_bytes(), &le32(0)]));
    let mut inputs = vec![flow, vec![0; 40]];
    inputs.extend(noise(4, &[128, 512]));
    inputs
}

fn rate_limiter_inputs() -> Vec<Vec<u8>> {
    let take = |n: u8| cat(&[&tag(0, 6), &[n]]);
    let addr = |a: u8| cat(&[&tag(1, 6), &[a]]);
    let peer = |bytes: u16| cat(&[&tag(2, 6), &le16(bytes)]);
    let nanos = |n: u32| cat(&[&tag(3, 6), &le32(n)]);
    let mut flow = vec![0; 8];
    for i in 0..10u8 {
        flow.extend(take(1 + i % 3));
        flow.extend(addr(i % 4));
        flow.extend(peer(700 * u16::from(i)));
        flow.extend(nanos(123_456_789));
    }
    flow.extend(take(200));
    flow.extend(cat(&[&tag(5, 6), &le16(50), &[2]]));
    let mut inputs = vec![flow, vec![0; 24]];
    inputs.extend(noise(5, &[128, 512]));
    inputs
}

/// A `TicketSpec` encoding: `jti`, `client`, `key`, then defaults but for `lifetime_ms` and
/// `admin`.
fn ticket_spec(jti: u8, client: u8, key: u8, lifetime: u32, admin: bool) -> Vec<u8> {
    cat(&[
        &[jti, client, key, 0],
        &0i32.to_le_bytes(),
        &le16(0),
        &le32(lifetime),
        &[0, 0, u8::from(admin)],
    ])
}

fn replay_cache_inputs() -> Vec<Vec<u8>> {
    let verify = |spec: Vec<u8>| cat(&[&tag(0, 8), &spec]);
    let flow = cat(&[
        &[0; 8],
        &verify(ticket_spec(1, 0, 0, 0, false)),
        &verify(ticket_spec(1, 0, 0, 0, false)), // replayed
        &verify(ticket_spec(2, 1, 1, 0, false)),
        &cat(&[&tag(1, 8), &le32(100_000)]),
        &verify(ticket_spec(1, 0, 0, 0, false)), // the first has expired
        &cat(&[&tag(4, 8), &[1]]),
        &verify(ticket_spec(3, 1, 0, 0, false)), // revoked client
        &cat(&[&tag(5, 8), &[0]]),
        &verify(ticket_spec(4, 2, 0, 0, false)), // revoked key
        &verify(ticket_spec(5, 2, 2, 0, false)), // untrusted key
        &cat(&[&tag(7, 8), &[2]]),
        &verify(ticket_spec(5, 2, 2, 0, false)),
        &cat(&[&tag(3, 8), &[6], &100_000i32.to_le_bytes()]),
        &verify(ticket_spec(6, 3, 1, 0, false)), // revoked jti
    ]);
    let mut inputs = vec![flow, vec![0; 64]];
    inputs.extend(noise(6, &[256, 1_024]));
    inputs
}

fn handshake_server_inputs() -> Vec<Vec<u8>> {
    // HelloSpec: identity, version_min, version_max, wrong_schema, capabilities, role,
    // ticket, signing, mutate, nonce.
    let hello = |conn: u8, role: u8, ticket: &[u8], signing: &[u8]| {
        cat(&[
            &tag(0, 7),
            &[conn, 0, 0, 0, 0, 0b101, role],
            ticket,
            signing,
            &[0, 9],
        ])
    };
    let valid = hello(0, 0, &tag(0, 4), &tag(0, 5));
    let flow = cat(&[
        &[3],
        &valid,
        &valid,                               // a control message after the handshake
        &hello(1, 3, &tag(2, 4), &tag(0, 5)), // a game server
        &hello(
            2,
            2,
            &cat(&[&tag(1, 4), &ticket_spec(5, 0, 0, 0, true)]),
            &tag(0, 5),
        ), // admin
        &hello(3, 1, &tag(0, 4), &tag(1, 5)), // wrong exporter
        &cat(&[&tag(4, 7), &[0, 9]]),
        &hello(0, 0, &tag(0, 4), &tag(0, 5)),
        &hello(
            0,
            1,
            &cat(&[&tag(1, 4), &ticket_spec(5, 0, 1, 0, false)]),
            &tag(0, 5),
        ),
    ]);
    let mut inputs = vec![flow, vec![0; 64]];
    inputs.extend(noise(7, &[256, 1_024]));
    inputs
}

fn handshake_client_inputs() -> Vec<Vec<u8>> {
    // AcceptSpec: version, wrong_nonce, wrong_schema, extra_capabilities, role,
    // other_server, play, signing, mutate, session_id, server_tick.
    let accept = |conn: u8, play: &[u8], signing: &[u8]| {
        cat(&[
            &tag(0, 6),
            &[conn, 0, 0, 0, 0, 0, 0],
            play,
            signing,
            &[0],
            &7u64.to_le_bytes(),
            &900u64.to_le_bytes(),
        ])
    };
    // OfferSpec: identity, role, expect_key, check_play, capabilities, version_min,
    // version_max, nonce, exporter.
    let open = |conn: u8, role: u8, expect: u8, check: bool| {
        cat(&[
            &tag(4, 6),
            &[conn, 1, role, expect, u8::from(check), 0b11, 0, 0, 5, 6],
        ])
    };
    let flow = cat(&[
        &accept(0, &tag(0, 7), &tag(0, 5)),
        &open(0, 1, 1, true),
        &accept(0, &tag(0, 7), &tag(0, 5)),
        &open(1, 0, 0, true),
        &accept(1, &tag(2, 7), &tag(0, 5)), // expired play ticket
        &open(1, 3, 2, false),
        &accept(1, &tag(1, 7), &tag(0, 5)), // unexpected server key
        &open(0, 0, 0, false),
        &accept(0, &tag(0, 7), &cat(&[&tag(4, 5), &le16(100)])),
    ]);
    let mut inputs = vec![flow, vec![0; 64]];
    inputs.extend(noise(8, &[256, 1_024]));
    inputs
}

fn gs_agent_inputs() -> Vec<Vec<u8>> {
    let vs = |k: u32, fields: &[u8]| cat(&[&tag(0, 10), &tag(k, 8), fields]);
    // PlayTicketSpec: signer, wrong_gs_key, wrong_gs_id, issued_offset_ms, lifetime_ms,
    // sequence.
    let ticket =
        |signer: u8, sequence: u8| cat(&[&[signer, 0, 0], &0i32.to_le_bytes(), &le16(0), &[sequence]]);
    let advance = |ms: u16| cat(&[&tag(1, 10), &le16(ms)]);
    let input = |session: u8, tick: u16| cat(&[&tag(4, 10), &[session], &le16(tick), &[0xAB]]);
    let receipt = |pick: u8, tweak: u8| vs(3, &cat(&[&[pick, 0, tweak], &0i32.to_le_bytes()]));
    let mut flow = cat(&[
        &[0; 16],
        &vs(0, &[0x77]),
        &cat(&[&tag(3, 10), &[0, 0]]),
        &vs(1, &cat(&[&ticket(0, 1), &[0x78]])),
        &input(1, 10),
        &input(2, 11),
        &advance(1_000),
        &receipt(0, 0),
        &receipt(1, 4),
        &vs(2, &cat(&[&ticket(0, 2), &[0x79]])),
        &vs(2, &cat(&[&ticket(1, 3), &[0x7A]])),
        &vs(4, &cat(&[&[3], &60_000i32.to_le_bytes()])),
    ]);
    for _ in 0..4 {
        flow.extend(advance(3_000));
    }
    flow.extend(vs(2, &cat(&[&ticket(0, 4), &[0x7B]])));
    flow.extend(cat(&[&tag(6, 10), &[1]]));
    flow.extend(advance(5_000));
    let mut inputs = vec![flow, vec![0; 48]];
    inputs.extend(noise(9, &[256, 1_024]));
    inputs
}
