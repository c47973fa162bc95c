//! Corpus replay on stable: every file of every `fuzz/corpus/<target>/` directory and every
//! crash artifact under `fuzz/artifacts/<target>/` goes through its target body, so `cargo test`
//! catches a regression on any input a fuzzer ever kept, without nightly. The target lists of
//! this crate, of `fuzz/fuzz_targets/`, of `fuzz/Cargo.toml` and of `fuzz/corpus/` must agree,
//! so a new target cannot be left out of any of them.

use std::collections::BTreeSet;
use std::path::Path;

use tickwire_fuzz_targets::corpus::{fuzz_dir, names_in, replay};
use tickwire_fuzz_targets::TARGETS;

fn bodies() -> BTreeSet<String> {
    let names: BTreeSet<String> = TARGETS.iter().map(|(name, _)| (*name).to_owned()).collect();
    assert_eq!(names.len(), TARGETS.len(), "a target is listed twice");
    names
}

#[test]
fn every_fuzz_target_has_a_body_and_every_body_a_fuzz_target() {
    let wrappers = names_in(&fuzz_dir().join("fuzz_targets"), ".rs", Path::is_file);
    assert_eq!(wrappers, bodies(), "fuzz/fuzz_targets/*.rs and TARGETS differ");
}

#[test]
fn every_wrapper_calls_its_body() {
    for name in bodies() {
        let path = fuzz_dir().join("fuzz_targets").join(format!("{name}.rs"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|_| panic!("{} missing", path.display()));
        assert!(
            text.contains(&format!("tickwire_fuzz_targets::{name}(data)")),
            "{} does not call tickwire_fuzz_targets::{name}",
            path.display()
        );
    }
}

#[test]
fn every_target_is_a_binary_of_the_fuzz_crate() {
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).unwrap();
    for name in bodies() {
        let bin = format!("[[bin]]\nname = \"{name}\"\npath = \"fuzz_targets/{name}.rs\"\n");
        assert!(
            manifest.contains(&bin),
            "fuzz/Cargo.toml has no [[bin]] for {name}"
        );
    }
}

#[test]
fn every_target_has_a_corpus_and_every_corpus_a_target() {
    let bodies = bodies();
    let corpora = names_in(&fuzz_dir().join("corpus"), "", Path::is_dir);
    assert_eq!(corpora, bodies, "fuzz/corpus/ and TARGETS differ");
    let artifacts = names_in(&fuzz_dir().join("artifacts"), "", Path::is_dir);
    let orphans: Vec<_> = artifacts.difference(&bodies).collect();
    assert!(orphans.is_empty(), "artifacts of unknown targets: {orphans:?}");
}

#[test]
fn every_corpus_input_and_artifact_passes_its_target() {
    let mut failures = Vec::new();
    for (name, target) in TARGETS {
        let (files, failed) = replay(&fuzz_dir(), name, *target);
        assert!(files > 0, "fuzz/corpus/{name}/ is empty");
        failures.extend(failed);
    }
    assert!(failures.is_empty(), "inputs failing: {failures:#?}");
}
