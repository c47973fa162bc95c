//! CPU of tickwire's building blocks on their own: join-ticket verification, one heartbeat
//! round (ping, answer, RTT sample), decoding length-prefixed frames from a reliable stream, and
//! signing (and checking) a verification server's receipt.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ed25519_dalek::SigningKey;
use tickwire_core::config::{HeartbeatConfig, TicketConfig};
use tickwire_core::testing::internals::Heartbeat;
use tickwire_core::vs::{ProtectedReceipt, ReceiptClaims, VsKeys};
use tickwire_core::wire::{encode_frame, FrameDecoder};
use tickwire_core::{JoinTicketClaims, TicketIssuer, TicketVerifier};

/// Unix time the tickets are checked at, in milliseconds (2026-01-01T00:00:00Z).
const NOW_UNIX_MS: u64 = 1_767_225_600_000;
/// Frames per decoding run.
const FRAMES: usize = 100;
/// Payload bytes per frame.
const FRAME_PAYLOAD_BYTES: usize = 64;
/// Bytes handed to the decoder at a time, as a QUIC stream read of one packet's worth.
const READ_BYTES: usize = 1_200;

fn ticket_verify(c: &mut Criterion) {
    let issuer = TicketIssuer::new(1, SigningKey::from_bytes(&[1; 32]));
    let client_key = SigningKey::from_bytes(&[3; 32]).verifying_key().to_bytes();
    let claims = JoinTicketClaims::builder(client_key, [9; 16])
        .client_id(42)
        .audience(7)
        .valid_from(NOW_UNIX_MS)
        .lifetime_ms(30_000)
        .build();
    let ticket = issuer.issue(&claims);
    let mut group = c.benchmark_group("ticket");
    group.throughput(Throughput::Elements(1));
    group.bench_function("verify", |b| {
        b.iter_batched(
            // A fresh verifier each time: the ticket's id is recorded as used once verified.
            || {
                let mut verifier = TicketVerifier::new(7, TicketConfig::default());
                verifier.add_key(1, issuer.verifying_key());
                verifier
            },
            |mut verifier| {
                let claims = verifier
                    .verify(black_box(&ticket), NOW_UNIX_MS, &client_key)
                    .expect("the ticket is valid");
                (verifier, claims)
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

#[allow(clippy::disallowed_methods)] // virtual time needs one starting instant
fn epoch() -> Instant {
    Instant::now()
}

fn heartbeat(c: &mut Criterion) {
    let config = HeartbeatConfig::default();
    let interval = Duration::from_millis(config.interval_ms);
    let start = epoch();
    let mut pinger = Heartbeat::new(start, config.clone());
    let mut answerer = Heartbeat::new(start, config);
    let mut now = start;
    let mut tick = 0u64;
    let mut group = c.benchmark_group("heartbeat");
    group.throughput(Throughput::Elements(1));
    group.bench_function("ping_pong_rtt", |b| {
        b.iter(|| {
            now += interval;
            tick += 30;
            let ping = pinger.poll_ping(now, tick).expect("a ping is due each interval");
            let pong = answerer.handle_ping(now, &ping, tick);
            black_box(pinger.handle_pong(now, &pong))
        });
    });
    group.finish();
}

fn frame_decode(c: &mut Criterion) {
    let payload = vec![0x5a; FRAME_PAYLOAD_BYTES];
    let mut stream = BytesMut::new();
    for _ in 0..FRAMES {
        stream.extend_from_slice(&encode_frame(&payload));
    }
    let stream = stream.freeze();
    let mut decoder = FrameDecoder::new(1 << 20);
    let mut group = c.benchmark_group("frame_decode");
    group.throughput(Throughput::Elements(FRAMES as u64));
    group.bench_function("64B_x100", |b| {
        b.iter(|| {
            let mut frames = 0;
            for read in stream.chunks(READ_BYTES) {
                decoder.push(black_box(read));
                while let Some(frame) = decoder.poll_frame().expect("well-formed frames") {
                    frames += 1;
                    black_box(frame);
                }
            }
            assert_eq!(frames, FRAMES);
        });
    });
    group.finish();
}

fn receipt(c: &mut Criterion) {
    let key = SigningKey::from_bytes(&[4; 32]);
    let keys = VsKeys::single(1, key.verifying_key());
    let claims = ReceiptClaims {
        gs_id: 7,
        session_id: 0x1234_5678,
        sequence: 1,
        tick: 3_600,
        digest: [0xd1; 32],
        received_at_ms: NOW_UNIX_MS,
    };
    let signed = ProtectedReceipt::issue(1, &key, &claims);
    let mut group = c.benchmark_group("vs_receipt");
    group.throughput(Throughput::Elements(1));
    group.bench_function("sign", |b| {
        b.iter(|| ProtectedReceipt::issue(1, &key, black_box(&claims)));
    });
    group.bench_function("verify", |b| {
        b.iter(|| black_box(&signed).verify(&keys).expect("a receipt just signed"));
    });
    group.finish();
}

criterion_group!(benches, ticket_verify, heartbeat, frame_decode, receipt);
criterion_main!(benches);
