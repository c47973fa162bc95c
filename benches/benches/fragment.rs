//! Fragmentation and reassembly of one unreliable message: split into chunks, each chunk framed
//! with its fragment header into a datagram-sized buffer, the header decoded again and the chunk
//! handed to a reassembler, until the message is whole. Throughput is message bytes per second.
//!
//! A counting global allocator reports the heap allocations per fragment of one message, counted
//! outside criterion's timing and printed before the group runs.

#![allow(unsafe_code)] // the counting allocator below: `GlobalAlloc` is an unsafe trait

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tickwire_core::config::FragmentConfig;
use tickwire_core::testing::internals::{split, FragmentHeader, Reassembler};

/// The system allocator, counting every allocation and reallocation.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded unchanged to `System`, which upholds the contract.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's guarantees about `layout` are passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout` (every allocation goes there).
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as for `dealloc`, and the caller's guarantees about `new_size` are passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Chunk bytes per fragment: what a 1 200-byte QUIC datagram leaves after the packet's own
/// overhead, the type byte and the fragment header (the figure tickwire's fragment limits are
/// documented with).
const CHUNK_BYTES: usize = 1_029;
/// Channel the fragments are said to arrive on.
const CHANNEL: u8 = 2;
/// Message sizes measured, in bytes.
const SIZES: [(&str, usize); 2] = [("8KiB", 8 << 10), ("64KiB", 64 << 10)];

/// Fragments `message` as `message_id`, reassembles it, and returns it with the number of
/// fragments it took.
fn round_trip(
    reassembler: &mut Reassembler,
    now: Instant,
    message: &[u8],
    message_id: u16,
    datagram: &mut Vec<u8>,
) -> (usize, Option<bytes::Bytes>) {
    let fragments = split(message, CHUNK_BYTES, 255).expect("the message fits 255 fragments");
    let mut count = 0;
    let mut whole = None;
    for (index, total, chunk) in fragments {
        count += 1;
        let header = FragmentHeader {
            message_id,
            index,
            count: total,
        };
        datagram.clear();
        datagram.push(CHANNEL);
        datagram.extend_from_slice(&header.encode());
        datagram.extend_from_slice(chunk);
        let (header, chunk) = FragmentHeader::decode(&datagram[1..]).expect("a header just encoded");
        whole = reassembler.insert(now, CHANNEL, header, chunk).or(whole);
    }
    (count, whole)
}

#[allow(clippy::disallowed_methods)] // virtual time needs one starting instant
fn epoch() -> Instant {
    Instant::now()
}

fn fragment(c: &mut Criterion) {
    let mut group = c.benchmark_group("fragment");
    for (name, size) in SIZES {
        let message: Vec<u8> = (0..size).map(|i| i as u8).collect();
        let mut reassembler = Reassembler::new(FragmentConfig::default());
        let mut datagram = Vec::with_capacity(1_500);
        let now = epoch();

        // Allocations per fragment, in steady state (after one warm-up message).
        let _ = round_trip(&mut reassembler, now, &message, 0, &mut datagram);
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        let (fragments, whole) = round_trip(&mut reassembler, now, &message, 1, &mut datagram);
        let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
        assert_eq!(whole.as_deref(), Some(&message[..]), "the message reassembles");
        println!(
            "fragment/{name}: {fragments} fragments, {allocations} allocations, {:.2} allocations per fragment",
            allocations as f64 / fragments as f64
        );

        group.throughput(Throughput::Bytes(size as u64));
        let mut message_id = 2u16;
        let mut at = now;
        group.bench_function(name, |b| {
            b.iter(|| {
                message_id = message_id.wrapping_add(1);
                // Each message a microsecond later: time only moves forward, and no partial expires.
                at += Duration::from_micros(1);
                black_box(round_trip(
                    &mut reassembler,
                    at,
                    black_box(&message),
                    message_id,
                    &mut datagram,
                ))
            });
        });
    }
    group.finish();
}

criterion_group!(benches, fragment);
criterion_main!(benches);
