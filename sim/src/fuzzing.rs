//! Fuzz target bodies for text inputs: scenario TOML, link specs and the TOML
//! configurations of `tickwire-core` (kept here because this crate depends on `toml`).
//! Compiled only under `cfg(fuzzing)` (cargo-fuzz sets it) and in tests.
//!
//! Each target is one `pub fn <name>(data: &[u8])`, called by the 3-line
//! `fuzz/fuzz_targets/<name>.rs` and by the corpus replay test below; see
//! `tickwire_core::fuzzing` for the conventions. Inputs that are not UTF-8 are ignored (the
//! loaders take `&str`).
//!
//! - `seeds` (tests): `cargo test -p tickwire-sim --lib -- --ignored write_seed_corpus`
//!   rewrites `fuzz/corpus/<name>/`;
//! - `replay` (tests): runs every file of `fuzz/corpus/<name>/` and `fuzz/artifacts/<name>/`
//!   through its target on stable.

use std::fmt::Debug;

use rand::SeedableRng;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tickwire_core::vs::{GsConfig, VsConfig};
use tickwire_core::Config;

use crate::link::{DropReason, Link, LinkSpec};
use crate::scenario::Scenario;

/// A fuzz target body: one input, any bytes.
pub type Target = fn(&[u8]);

/// Every target in this crate, by name: `fuzz/fuzz_targets/<name>.rs` calls the function, and
/// `fuzz/corpus/<name>/` holds its seeds.
pub const TARGETS: &[(&str, Target)] = &[
    ("endpoint_config", endpoint_config),
    ("vs_config", vs_config),
    ("gs_config", gs_config),
    ("scenario_toml", scenario_toml),
    ("link_spec", link_spec),
];

/// Parses `text` as `T`; when it parses, asserts that it writes back to TOML, that the text
/// written parses to the same value (when the value equals itself: NaN does not) and writes
/// the same text again.
fn toml_round_trip<T: Serialize + DeserializeOwned + PartialEq + Clone + Debug>(text: &str) -> Option<T> {
    let value: T = toml::from_str(text).ok()?;
    let written = toml::to_string(&value).unwrap_or_else(|e| panic!("{value:?} does not write back: {e}"));
    let back: T =
        toml::from_str(&written).unwrap_or_else(|e| panic!("written {written:?} does not parse: {e}"));
    if value == value.clone() {
        assert_eq!(back, value, "TOML round trip changed the value");
    }
    let again = toml::to_string(&back).expect("a re-parsed value writes");
    assert_eq!(again, written, "TOML writing is not a fixpoint");
    Some(value)
}

/// The endpoint configuration ([`Config`]) as TOML, then [`Config::validate`].
///
/// Asserts: the TOML round trip (see the module docs); validation does not panic.
pub fn endpoint_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(config) = toml_round_trip::<Config>(text) {
        let _ = config.validate();
    }
}

/// The verification server's configuration ([`VsConfig`]) as TOML, then its validation.
///
/// Asserts: the TOML round trip; validation does not panic.
pub fn vs_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(config) = toml_round_trip::<VsConfig>(text) {
        let _ = config.validate();
    }
}

/// The game server's VS-agent configuration ([`GsConfig`]) as TOML, then validation of it
/// and of its retry schedules.
///
/// Asserts: the TOML round trip; validation does not panic.
pub fn gs_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(config) = toml_round_trip::<GsConfig>(text) {
        let _ = config.validate();
        let _ = config.reconnect.validate();
        let _ = config.transcript_retry.validate();
    }
}

/// Scenarios ([`Scenario::from_toml`]: parse and validate).
///
/// Asserts, for an accepted scenario: it writes back to TOML that loads again and writes the
/// same text; every preset it names resolves; a [`Link`] builds from every link spec it
/// defines and every preset it uses; snapshot sizes drawn from its distribution stay within
/// `[16, max]`.
pub fn scenario_toml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(scenario) = Scenario::from_toml(text) else {
        return;
    };
    let written = toml::to_string(&scenario).unwrap_or_else(|e| panic!("scenario does not write back: {e}"));
    let back =
        Scenario::from_toml(&written).unwrap_or_else(|e| panic!("written scenario does not load: {e}"));
    let again = toml::to_string(&back).expect("a re-loaded scenario writes");
    assert_eq!(again, written, "scenario TOML writing is not a fixpoint");

    let mut presets: Vec<&str> = scenario.topology.mix.iter().map(|m| m.preset.as_str()).collect();
    if let Some(vs) = &scenario.vs {
        presets.push(&vs.link);
    }
    for name in presets {
        let spec = scenario
            .link(name)
            .unwrap_or_else(|| panic!("preset {name:?} does not resolve"));
        assert!(
            Link::try_new(&spec, [1; 32]).is_ok(),
            "preset {name:?} does not build"
        );
    }
    for (name, spec) in &scenario.links {
        assert!(
            Link::try_new(spec, [2; 32]).is_ok(),
            "link {name:?} does not build"
        );
    }
    let dist = scenario.traffic.snapshot_bytes;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(scenario.seed);
    for _ in 0..8 {
        let size = dist.sample(&mut rng);
        assert!((16..=dist.max()).contains(&size), "{dist:?} drew {size}");
    }
}

/// Link specs ([`LinkSpec`] as TOML, [`LinkSpec::validate`]) and the link built from them.
///
/// Input: the spec's TOML text, a NUL byte, then a schedule of up to 512 datagrams, 3 bytes
/// each: the gap since the previous one in units of 100 µs (`u8`) and the size (`u16` LE).
///
/// Asserts: [`Link::try_new`] succeeds exactly when the spec validates; for each datagram, a
/// drop leaves no deliveries, one larger than the MTU is dropped for it, otherwise the
/// datagram arrives no earlier than sent with its length, followed by at most one copy no
/// earlier than it; the link's counters add up.
pub fn link_spec(data: &[u8]) {
    let (text, schedule) = match data.iter().position(|&b| b == 0) {
        Some(nul) => (&data[..nul], &data[nul + 1..]),
        None => (data, &[][..]),
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let Some(spec) = toml_round_trip::<LinkSpec>(text) else {
        return;
    };
    let valid = spec.validate().is_ok();
    let Ok(mut link) = Link::try_new(&spec, [7; 32]) else {
        assert!(!valid, "a valid spec did not build");
        return;
    };
    assert!(valid, "an invalid spec built");
    let (mut now, mut drops, mut delivered) = (0u64, 0u64, 0u64);
    for record in schedule.chunks_exact(3).take(512) {
        now += u64::from(record[0]) * 100_000;
        let size = usize::from(u16::from_le_bytes([record[1], record[2]]));
        let outcome = link.transmit(now, vec![0x5A; size]);
        if let Some(reason) = outcome.dropped {
            assert!(outcome.deliveries.is_empty(), "dropped ({reason}) yet delivered");
            if spec.mtu_bytes.is_some_and(|mtu| size > mtu) {
                assert_eq!(reason, DropReason::Mtu, "the MTU stage comes first");
            }
            drops += 1;
            continue;
        }
        if let Some(mtu) = spec.mtu_bytes {
            assert!(size <= mtu, "{size} bytes passed an MTU of {mtu}");
        }
        let [first, copies @ ..] = outcome.deliveries.as_slice() else {
            panic!("neither dropped nor delivered");
        };
        assert!(copies.len() <= 1, "{} copies", copies.len());
        assert!(first.at >= now && !first.duplicate);
        for delivery in &outcome.deliveries {
            assert_eq!(delivery.payload.len(), size);
            assert!(delivery.at >= first.at);
            if !delivery.corrupted {
                assert!(delivery.payload.iter().all(|&b| b == 0x5A));
            }
        }
        assert!(copies.iter().all(|copy| copy.duplicate));
        delivered += outcome.deliveries.len() as u64;
    }
    let stats = link.stats();
    assert_eq!(stats.lost + stats.queue_dropped + stats.mtu_dropped, drops);
    assert_eq!(stats.delivered, delivered);
    if spec.mtu_bytes.is_none() {
        assert_eq!(stats.mtu_dropped, 0);
    }
    if spec.bandwidth.is_none() {
        assert_eq!(stats.queue_dropped, 0);
    }
}

/// The seed corpus: the shipped scenarios and presets, the default configurations written by
/// the real serialisers, and a few edge cases.
#[cfg(test)]
mod seeds {
    use std::path::PathBuf;

    use tickwire_core::testing::corpus;
    use tickwire_core::vs::{Enrolment, Measurement};

    use super::*;
    use crate::scenario::{default_endpoint, BUILTIN};

    pub(super) fn all() -> Vec<(&'static str, Vec<Vec<u8>>)> {
        let text = |s: &str| s.as_bytes().to_vec();
        let endpoint_config = vec![
            text(&toml::to_string(&Config::default()).unwrap()),
            text(&toml::to_string(&default_endpoint()).unwrap()),
            text("seed = 7\nschema_hash = \"00000000000000000000000000000000000000000000000000000000000000ff\"\n[heartbeat]\ninterval_ms = 250\n"),
            text("max_sessions = 4\n[ack_frequency]\nack_eliciting_threshold = 2\n[retry]\nmultiplier = nan\n"),
            text("channels = [{ reliable = { priority = 1 } }, \"unreliable\", \"sequenced\"]\nidle_timeout_ms = 1\n"),
        ];

        let vs = VsConfig {
            measurements: vec![Measurement {
                binary_sha256: [0xB1; 32],
                config_sha256: [0xC0; 32],
            }],
            game_servers: vec![
                Enrolment {
                    gs_id: 7,
                    identity_key: Some([0x11; 32]),
                    ak_public: Some(vec![0x00, 0x23, 0x00, 0x0B]),
                },
                Enrolment {
                    gs_id: 8,
                    identity_key: None,
                    ak_public: None,
                },
            ],
            ..VsConfig::default()
        };
        let vs_config = vec![
            text(&toml::to_string(&VsConfig::default()).unwrap()),
            text(&toml::to_string(&vs).unwrap()),
            text("ticket_interval_ms = 0\n[[game_servers]]\ngs_id = 1\nak_public = \"0\"\n"),
        ];
        let gs_config = vec![
            text(&toml::to_string(&GsConfig::default()).unwrap()),
            text("gs_id = 7\nreattest_every = 0\n[reconnect]\nmax_attempts = 0\n"),
        ];

        let mut scenario_toml: Vec<Vec<u8>> = BUILTIN.iter().map(|(_, t)| text(t)).collect();
        scenario_toml.extend([
            text("name = 'x'\nduration_s = 1.0\n"),
            // Found by reasoning: `clients()` overflowed (3 × i64::MAX).
            text("name = \"x\"\nduration_s = 1.0\n[topology]\nservers = 3\nclients_per_server = 9223372036854775807\n"),
            text("name = 'vs'\nduration_s = 2.0\n[vs]\nlink = 'lan'\nverifier = { ticket_interval_ms = 2000, ticket_lifetime_ms = 6000 }\ngame_server = { ticket_starvation_timeout_ms = 10000 }\n"),
            text("name = 'x'\nduration_s = 1.0\n[topology]\nservers = 2\nclients_per_server = 3\nmix = [{ preset = 'mine', weight = 1 }]\n[links.mine]\nlatency = { dist = 'pareto', base_ms = 1.0, scale_ms = 2.0, alpha = 1.5 }\n[[faults]]\nkind = 'crash'\ntarget = 'clients:0..6'\nat_s = 0.5\n"),
        ]);

        let schedule: Vec<u8> = (0..64u16)
            .flat_map(|i| [(i % 7) as u8, (i * 97 % 256) as u8, (i % 6) as u8])
            .collect();
        let mut link_spec: Vec<Vec<u8>> = LinkSpec::PRESETS
            .iter()
            .map(|name| {
                let spec = LinkSpec::preset(name).unwrap();
                [text(&toml::to_string(&spec).unwrap()), vec![0], schedule.clone()].concat()
            })
            .collect();
        link_spec.extend([
            [text("mtu_bytes = 1472\ncorrupt_probability = 0.5\nlatency = { dist = \"normal\", mean_ms = 35.0, sd_ms = 5.0 }\njitter = { max_ms = 10.0, reorder = true }\nloss = { model = \"burst\", mean_loss = 0.015, mean_burst_len = 2.5, slot_ms = 20.0 }\nduplicate = { probability = 0.5, max_delay_ms = 1.0 }\nreorder = { probability = 0.2, delay_ms = 5.0 }\nbandwidth = { rate_kbit_s = 100.0, queue_bytes = 3000 }\n"), vec![0], schedule.clone()].concat(),
            [text("latency = { dist = \"uniform\", min_ms = 5.0, max_ms = 1.0 }\n"), vec![0], schedule].concat(),
            text("corrupt_probability = 2.0\n"),
            // A 1 bit/s link with an unbounded queue: queueing delays near u64::MAX.
            [
                text("bandwidth = { rate_kbit_s = 0.001, queue_bytes = 9000000000000000000 }\n"),
                vec![0],
                [0u8, 0xff, 0xff].repeat(512),
            ]
            .concat(),
        ]);

        vec![
            ("endpoint_config", endpoint_config),
            ("vs_config", vs_config),
            ("gs_config", gs_config),
            ("scenario_toml", scenario_toml),
            ("link_spec", link_spec),
        ]
    }

    /// `fuzz/` at the repository root.
    pub(super) fn fuzz_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
    }

    #[test]
    fn every_target_has_seeds_and_they_pass() {
        corpus::check_seeds(&all(), TARGETS);
    }

    /// Writes the seeds to `fuzz/corpus/<name>/<sha256 prefix>` (existing files are kept):
    /// `cargo test -p tickwire-sim --lib -- --ignored write_seed_corpus`.
    #[test]
    #[ignore = "writes fuzz/corpus; run by hand after changing a format"]
    fn write_seed_corpus() {
        corpus::write_seeds(&fuzz_dir(), &all());
    }
}

/// Corpus replay on stable: every file under `fuzz/corpus/<name>/` and `fuzz/artifacts/<name>/`
/// goes through its target, so `cargo test -p tickwire-sim` catches a regression on any input a
/// fuzzer ever kept, without nightly.
#[cfg(test)]
mod replay {
    use tickwire_core::testing::corpus;

    use super::seeds::fuzz_dir;
    use super::TARGETS;

    #[test]
    fn corpora_replay() {
        corpus::replay_all(&fuzz_dir(), TARGETS);
    }

    #[test]
    fn every_target_has_a_fuzz_target_file() {
        corpus::check_target_files(&fuzz_dir(), "tickwire_sim::fuzzing", TARGETS);
    }
}
