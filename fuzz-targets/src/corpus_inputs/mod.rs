//! The starting corpus of every target, generated with the real encoders, signers and
//! endpoints: `every_target_has_corpus_inputs_and_they_pass` checks it, and
//! `cargo test -p tickwire-fuzz-targets --lib -- --ignored write_corpus` writes it to
//! `fuzz/corpus/<target>/` (existing files are kept).

mod decoders;
mod endpoint;
mod machines;
mod sim;

use crate::{corpus, TARGETS};

/// Every target's inputs, in [`TARGETS`] order.
fn all() -> Vec<(&'static str, Vec<Vec<u8>>)> {
    let mut all = decoders::decoders();
    all.extend(machines::machines());
    all.push(("endpoint", endpoint::endpoint_inputs()));
    all.push(("wt_session", endpoint::wt_session_inputs()));
    all.extend(sim::sim());
    all
}

/// `arbitrary`'s encoding of variant `k` of an `n`-variant enum: the derive reads a `u32`
/// `x` and picks `(x × n) >> 32`.
fn tag(k: u32, n: u32) -> Vec<u8> {
    let x = u32::try_from((u64::from(k) << 32).div_ceil(u64::from(n))).unwrap();
    assert_eq!((u64::from(x) * u64::from(n)) >> 32, u64::from(k));
    x.to_le_bytes().to_vec()
}

/// Deterministic pseudo-random inputs of the given lengths (every byte string decodes).
fn noise(seed: u64, lens: &[usize]) -> Vec<Vec<u8>> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    lens.iter()
        .map(|&len| {
            let mut bytes = vec![0; len];
            rng.fill_bytes(&mut bytes);
            bytes
        })
        .collect()
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn le16(x: u16) -> [u8; 2] {
    x.to_le_bytes()
}

fn le32(x: u32) -> [u8; 4] {
    x.to_le_bytes()
}

#[test]
fn every_target_has_corpus_inputs_and_they_pass() {
    corpus::check_inputs(&all(), TARGETS);
}

/// No input draws on the OS (TLS randomness included), so writing the corpus twice writes the
/// same files.
#[test]
fn the_inputs_are_the_same_on_every_run() {
    assert!(all() == all(), "an input generator is not deterministic");
}

/// Writes the inputs to `fuzz/corpus/<name>/<sha256 prefix>` (existing files are kept):
/// `cargo test -p tickwire-fuzz-targets --lib -- --ignored write_corpus`.
#[test]
#[ignore = "writes fuzz/corpus; run by hand after changing an encoding"]
fn write_corpus() {
    corpus::write_inputs(&corpus::fuzz_dir(), &all());
}
