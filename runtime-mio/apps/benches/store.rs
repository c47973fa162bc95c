//! What durability costs a verification server per receipt: signing a receipt alone (the
//! baseline, in memory), then signing it and committing the fact durably to the embedded
//! SQLite store (`synchronous = FULL`, one transaction per receipt, as a turn with one digest
//! does), and, with `TICKWIRE_BENCH_POSTGRES=postgres://…`, to PostgreSQL.
//!
//! ```sh
//! cargo bench -p tickwire-apps --bench store
//! TICKWIRE_BENCH_POSTGRES=postgres://postgres@127.0.0.1:5432/tickwire cargo bench -p tickwire-apps --bench store
//! ```
//!
//! Receipts per second = 1 / time per iteration; the added latency per receipt is the
//! difference from the baseline in the same run.

use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ed25519_dalek::SigningKey;
use tickwire_apps::store::Store;
use tickwire_core::vs::{ProtectedReceipt, ReceiptClaims, TranscriptDigest, VsFact};

/// A receipt fact for digest `sequence`, signed now.
fn receipt(key: &SigningKey, sequence: u64) -> VsFact {
    let digest = TranscriptDigest {
        sequence,
        session_id: 7,
        tick: sequence * 60,
        inputs: sequence * 60,
        digest: [sequence as u8; 32],
    };
    let claims = ReceiptClaims {
        gs_id: 42,
        session_id: digest.session_id,
        sequence,
        tick: digest.tick,
        digest: digest.digest,
        received_at_ms: 1_800_000_000_000 + sequence,
    };
    VsFact::Receipt {
        gs_id: 42,
        receipt: ProtectedReceipt::issue(1, key, &claims),
        digest,
    }
}

fn temp_store() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tickwire-bench-store-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("vs.db")
}

fn receipts(c: &mut Criterion) {
    let key = SigningKey::from_bytes(&[7; 32]);
    let mut group = c.benchmark_group("receipt");
    group.throughput(Throughput::Elements(1));
    let mut sequence = 0;
    group.bench_function("sign (memory, baseline)", |b| {
        b.iter(|| {
            sequence += 1;
            receipt(&key, sequence)
        })
    });
    let mut stores: Vec<(&str, Store)> =
        vec![("sign + commit (SQLite)", Store::open(&temp_store()).unwrap())];
    if let Ok(url) = std::env::var("TICKWIRE_BENCH_POSTGRES") {
        stores.push((
            "sign + commit (PostgreSQL)",
            Store::open(&PathBuf::from(url)).unwrap(),
        ));
    }
    for (name, mut store) in stores {
        group.bench_function(name, |b| {
            b.iter(|| {
                sequence += 1;
                store.persist_facts(vec![receipt(&key, sequence)], 1_024).unwrap();
            })
        });
    }
    group.finish();
}

criterion_group!(benches, receipts);
criterion_main!(benches);
