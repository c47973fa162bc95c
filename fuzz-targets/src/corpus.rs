//! Fuzz corpora on disk (see the README's "Fuzzing"). A target's corpus lives in
//! `fuzz/corpus/<target>/`, one file per input named by the first 16 hex digits of its SHA-256,
//! and libFuzzer leaves crashing inputs in `fuzz/artifacts/<target>/`: [`replay`] runs every one
//! of them through its target on stable (`tests/corpora.rs`), so a regression on any input a
//! fuzzer ever kept fails `cargo test` without nightly.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::Target;

/// A corpus file name: the first 16 hex digits of the content's SHA-256.
pub fn file_name(bytes: &[u8]) -> String {
    Sha256::digest(bytes)[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Asserts that `inputs` and `targets` name the same targets in the same order, that each
/// target has 1..=30 inputs of at most 64 KiB, and that every input passes its target.
pub fn check_inputs(inputs: &[(&str, Vec<Vec<u8>>)], targets: &[(&str, Target)]) {
    let names: Vec<&str> = inputs.iter().map(|(name, _)| *name).collect();
    let listed: Vec<&str> = targets.iter().map(|(name, _)| *name).collect();
    assert_eq!(names, listed, "the inputs and the targets list the same targets");
    for ((name, inputs), (_, target)) in inputs.iter().zip(targets) {
        assert!(
            !inputs.is_empty() && inputs.len() <= 30,
            "{name}: {} inputs",
            inputs.len()
        );
        for input in inputs {
            assert!(
                input.len() <= 64 << 10,
                "{name}: an input of {} bytes",
                input.len()
            );
            target(input);
        }
    }
}

/// Writes `inputs` to `fuzz_dir/corpus/<target>/` (existing files are kept).
///
/// # Panics
/// A directory or file cannot be written.
pub fn write_inputs(fuzz_dir: &Path, inputs: &[(&str, Vec<Vec<u8>>)]) {
    for (name, inputs) in inputs {
        let dir = fuzz_dir.join("corpus").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for input in inputs {
            std::fs::write(dir.join(file_name(input)), input).unwrap();
        }
    }
}

/// Runs `target` on every file in `fuzz_dir/{corpus,artifacts}/<name>/`, in name order;
/// returns the number of files and the failures (file, panic message).
///
/// # Panics
/// A directory entry or file cannot be read.
pub fn replay(fuzz_dir: &Path, name: &str, target: Target) -> (usize, Vec<(String, String)>) {
    let mut files = 0;
    let mut failures = Vec::new();
    for kind in ["corpus", "artifacts"] {
        let Ok(entries) = std::fs::read_dir(fuzz_dir.join(kind).join(name)) else {
            continue;
        };
        let mut paths: Vec<_> = entries
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file())
            .collect();
        paths.sort();
        for path in paths {
            let data = std::fs::read(&path).unwrap();
            files += 1;
            if let Err(panic) = std::panic::catch_unwind(|| target(&data)) {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_default();
                failures.push((path.display().to_string(), message));
            }
        }
    }
    (files, failures)
}

/// `fuzz/`, the cargo-fuzz crate at the repository root: `fuzz_targets/`, `corpus/`,
/// `artifacts/`.
pub fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// The names of the entries of `dir` that `keep` accepts, with `suffix` stripped (entries
/// without it are skipped); empty when `dir` does not exist.
///
/// # Panics
/// A directory entry cannot be read.
pub fn names_in(dir: &Path, suffix: &str, keep: fn(&Path) -> bool) -> BTreeSet<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return BTreeSet::new();
    };
    entries
        .map(|entry| entry.unwrap().path())
        .filter(|path| keep(path))
        .filter_map(|path| {
            let name = path.file_name()?.to_str()?;
            Some(name.strip_suffix(suffix)?.to_owned())
        })
        .collect()
}
