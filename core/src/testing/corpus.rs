//! Fuzz corpora on disk, for the tests of the crates that hold fuzz targets
//! (`tickwire_core::fuzzing`, `tickwire_sim::fuzzing`; see the README's "Fuzzing"). A target's
//! seeds live in `fuzz/corpus/<target>/<first 16 hex digits of their SHA-256>`, and libFuzzer
//! leaves crashing inputs in `fuzz/artifacts/<target>/`: [`replay_all`] runs every one of them
//! through its target on stable, so a regression on any input a fuzzer ever kept fails
//! `cargo test` without nightly.

use std::path::Path;

use sha2::{Digest, Sha256};

/// A fuzz target body: one input, any bytes.
pub type Target = fn(&[u8]);

/// A corpus file name: the first 16 hex digits of the content's SHA-256.
pub fn file_name(bytes: &[u8]) -> String {
    Sha256::digest(bytes)[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Asserts that `seeds` and `targets` name the same targets in the same order, that each
/// target has 1..=30 seeds of at most 64 KiB, and that every seed passes its target.
pub fn check_seeds(seeds: &[(&str, Vec<Vec<u8>>)], targets: &[(&str, Target)]) {
    let names: Vec<&str> = seeds.iter().map(|(name, _)| *name).collect();
    let listed: Vec<&str> = targets.iter().map(|(name, _)| *name).collect();
    assert_eq!(names, listed, "the seeds and the targets list the same targets");
    for ((name, inputs), (_, target)) in seeds.iter().zip(targets) {
        assert!(
            !inputs.is_empty() && inputs.len() <= 30,
            "{name}: {} seeds",
            inputs.len()
        );
        for input in inputs {
            assert!(input.len() <= 64 << 10, "{name}: a seed of {} bytes", input.len());
            target(input);
        }
    }
}

/// Writes `seeds` to `fuzz_dir/corpus/<target>/` (existing files are kept).
///
/// # Panics
/// A directory or file cannot be written.
pub fn write_seeds(fuzz_dir: &Path, seeds: &[(&str, Vec<Vec<u8>>)]) {
    for (name, inputs) in seeds {
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

/// Asserts that every target's corpus is present and that every kept input passes.
pub fn replay_all(fuzz_dir: &Path, targets: &[(&str, Target)]) {
    let mut failures = Vec::new();
    for (name, target) in targets {
        let (files, failed) = replay(fuzz_dir, name, *target);
        assert!(files > 0, "fuzz/corpus/{name}/ is empty or missing");
        failures.extend(failed);
    }
    assert!(failures.is_empty(), "corpus inputs failing: {failures:#?}");
}

/// Asserts that `fuzz_dir/fuzz_targets/<name>.rs` exists for every target and calls
/// `<module>::<name>(data)` (e.g. `module` = `tickwire_core::fuzzing`).
pub fn check_target_files(fuzz_dir: &Path, module: &str, targets: &[(&str, Target)]) {
    for (name, _) in targets {
        let path = fuzz_dir.join("fuzz_targets").join(format!("{name}.rs"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|_| panic!("{} missing", path.display()));
        assert!(
            text.contains(&format!("{module}::{name}(data)")),
            "{} does not call its target",
            path.display()
        );
    }
}
