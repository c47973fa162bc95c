//! The decompression path of compressed channels (`PROTOCOL.md` §7.3): the flag byte, zstd
//! frames with and without the shared dictionary, and the decompressed-size cap.

use std::sync::Arc;

use tickwire_core::config::CompressionConfig;
use tickwire_core::testing::internals::{decode_message, encode_message, FLAG_STORED};
use tickwire_core::wire::capability;

use crate::input::Input;

/// The shared dictionary of the configurations with one (raw-content dictionary).
pub(crate) fn dictionary() -> Arc<[u8]> {
    b"position velocity health ammo team score tick entity "
        .repeat(16)
        .into()
}

/// A received compressed-channel message ([`decode_message`]), or a round trip.
///
/// Input: `mode: u8`, `cap: u16`, then the message (or, in round-trip mode, the payload).
/// `mode` bit 0: the receiver has the dictionary; bit 1: the session granted
/// `ZSTD_DICTIONARY` (else only `ZSTD`); bit 2: round trip — encode the rest with the same
/// configuration, then decode it. `cap` is the channel's message limit (the configuration's own
/// cap is 4 KiB).
///
/// Asserts: a decoded message is at most `min(cap, 4096)` bytes; a stored message (flag 0)
/// decodes to the bytes after the flag; a decoded message encodes and decodes back to itself;
/// in round-trip mode, every payload within the caps comes back unchanged and an encoding is
/// never more than one byte longer than the payload.
pub fn decompress(data: &[u8]) {
    let mut input = Input::new(data);
    let mode = input.u8();
    let cap = usize::from(input.u16());
    let rest = input.rest();
    let config = CompressionConfig {
        enabled: true,
        max_decompressed_bytes: 4096,
        dictionary: (mode & 1 != 0).then(dictionary),
        ..CompressionConfig::default()
    };
    let capabilities = if mode & 2 != 0 {
        capability::ZSTD | capability::ZSTD_DICTIONARY
    } else {
        capability::ZSTD
    };
    let limit = cap.min(config.max_decompressed_bytes);

    if mode & 4 != 0 {
        let encoded = encode_message(&config, capabilities, rest);
        assert!(
            encoded.len() <= rest.len() + 1,
            "{} bytes for {}",
            encoded.len(),
            rest.len()
        );
        if rest.len() <= limit {
            let decoded = decode_message(&config, capabilities, &encoded, cap)
                .unwrap_or_else(|error| panic!("own encoding refused: {error}"));
            assert_eq!(&decoded[..], rest);
        }
        return;
    }

    let Ok(decoded) = decode_message(&config, capabilities, rest, cap) else {
        return;
    };
    assert!(
        decoded.len() <= limit,
        "{} bytes over the {limit}-byte cap",
        decoded.len()
    );
    if rest[0] == FLAG_STORED {
        assert_eq!(&decoded[..], &rest[1..]);
    }
    let again = encode_message(&config, capabilities, &decoded);
    assert_eq!(
        decode_message(&config, capabilities, &again, cap).as_deref(),
        Ok(&decoded[..])
    );
}
