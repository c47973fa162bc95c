//! Text inputs: the TOML configurations of `tickwire-core` (endpoint, verification server,
//! game-server agent), and the simulator's scenarios and link specs. Inputs that are not UTF-8
//! are ignored (the loaders take `&str`).

use std::fmt::Debug;

use rand::SeedableRng;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tickwire_core::vs::{GsConfig, VsConfig};
use tickwire_core::Config;
use tickwire_sim::link::{DropReason, Link, LinkSpec};
use tickwire_sim::scenario::Scenario;

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
