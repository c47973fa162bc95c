//! Per-channel zstd compression (RFC 8878), negotiated at the handshake (`PROTOCOL.md` §7.3).
//!
//! On a channel marked `compress`, in a session whose capabilities include
//! [`capability::ZSTD`], every message is one flag byte followed by its data:
//!
//! | flag | data |
//! |---|---|
//! | `0` | the message, stored as is |
//! | `1` | one zstd frame of the message, with its content size |
//! | `2` | one zstd frame made with the shared dictionary (only if [`capability::ZSTD_DICTIONARY`] was granted) |
//!
//! A receiver reads the frame's declared content size before it allocates anything and refuses
//! a frame without one, or one larger than its cap, so a small message cannot make it allocate
//! much more than the cap ("decompression bombs").

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::wire::{capability, Extension, ExtensionKind};

/// Flag byte: the message follows uncompressed.
pub const FLAG_STORED: u8 = 0;
/// Flag byte: a zstd frame without dictionary follows.
pub const FLAG_ZSTD: u8 = 1;
/// Flag byte: a zstd frame made with the negotiated dictionary follows.
pub const FLAG_ZSTD_DICTIONARY: u8 = 2;

/// Compression settings of an endpoint (`PROTOCOL.md` §7.3). Which channels are compressed is
/// said by the channel table; this section says whether the endpoint offers zstd at all, and
/// how it compresses and bounds decompression.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CompressionConfig {
    /// Offer zstd ([`capability::ZSTD`]) in the handshake. Default false: sessions never
    /// compress, and marked channels carry messages without the flag byte.
    pub enabled: bool,
    /// zstd compression level, 1..=19. Default 3 (zstd's own default: fast, a good ratio on
    /// game snapshots).
    pub level: i32,
    /// Messages shorter than this, in bytes, are sent stored (flag 0): zstd's 9-byte frame
    /// overhead outweighs the saving on small inputs. Default 64.
    pub min_bytes: usize,
    /// Largest decompressed message accepted, in bytes (also capped by the channel's own
    /// message limit). A frame declaring more is refused before anything is allocated.
    /// Default 1 MiB.
    pub max_decompressed_bytes: usize,
    /// A shared dictionary trained offline (`zstd --train`), identical on both peers. Not
    /// read from configuration files: the application loads the bytes. Its SHA-256 is sent in
    /// the Hello; [`capability::ZSTD_DICTIONARY`] is granted only when both hashes are equal.
    #[serde(skip)]
    pub dictionary: Option<Arc<[u8]>>,
}

impl Default for CompressionConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            level: 3,
            min_bytes: 64,
            max_decompressed_bytes: 1 << 20,
            dictionary: None,
        }
    }
}

/// A [`CompressionConfig`] value out of range; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CompressionConfigError(&'static str);

impl CompressionConfig {
    /// Checks the level (1..=19), the cap (≥ 1) and that a dictionary is not empty.
    ///
    /// # Errors
    /// [`CompressionConfigError`] naming the field.
    pub fn validate(&self) -> Result<(), CompressionConfigError> {
        if !(1..=19).contains(&self.level) {
            return Err(CompressionConfigError("level must be in 1..=19"));
        }
        if self.max_decompressed_bytes == 0 {
            return Err(CompressionConfigError("max_decompressed_bytes must be >= 1"));
        }
        if self.dictionary.as_ref().is_some_and(|d| d.is_empty()) {
            return Err(CompressionConfigError("dictionary must not be empty"));
        }
        Ok(())
    }

    /// The capability bits this configuration offers: [`capability::ZSTD`] when enabled, and
    /// [`capability::ZSTD_DICTIONARY`] too when it has a dictionary.
    pub fn capabilities(&self) -> u64 {
        match (self.enabled, &self.dictionary) {
            (false, _) => 0,
            (true, None) => capability::ZSTD,
            (true, Some(_)) => capability::ZSTD | capability::ZSTD_DICTIONARY,
        }
    }

    /// SHA-256 of the dictionary, as sent in the Hello's `COMPRESSION_DICTIONARY` extension.
    pub fn dictionary_hash(&self) -> Option<[u8; 32]> {
        self.dictionary
            .as_ref()
            .map(|dictionary| Sha256::digest(dictionary).into())
    }
}

/// Why a compressed message was refused. On a datagram channel the message is dropped and
/// counted; on a reliable channel the session closes with `PROTOCOL_VIOLATION`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecompressError {
    /// The message has no flag byte.
    #[error("compressed-channel message without its flag byte")]
    Empty,
    /// The flag byte is not 0, 1 or 2.
    #[error("unknown compression flag {0}")]
    UnknownFlag(u8),
    /// Flag 2 in a session that did not negotiate the dictionary.
    #[error("dictionary compression was not negotiated")]
    DictionaryNotNegotiated,
    /// The zstd frame header does not state the content size, or does not parse.
    #[error("zstd frame without a readable content size")]
    NoContentSize,
    /// The declared content size (or a stored message's size) exceeds the cap.
    #[error("message of {declared} bytes, more than the {max}-byte cap")]
    TooLarge {
        /// Declared content size, bytes.
        declared: u64,
        /// The receiver's cap, bytes.
        max: usize,
    },
    /// zstd failed, or produced another size than declared.
    #[error("corrupt zstd frame")]
    Corrupt,
}

/// Compression counters of a connection, or summed over an endpoint's connections. Only
/// messages on compressed channels of sessions that negotiated zstd are counted; sizes are
/// before (`uncompressed`) and after (`compressed`, flag byte included) the compression step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CompressionStats {
    /// Messages sent on compressed channels.
    pub messages_sent: u64,
    /// Their bytes as the application gave them.
    pub uncompressed_bytes_sent: u64,
    /// Their bytes as sent (flag byte included).
    pub compressed_bytes_sent: u64,
    /// Messages received and decompressed on compressed channels.
    pub messages_received: u64,
    /// Their bytes as received (flag byte included).
    pub compressed_bytes_received: u64,
    /// Their bytes once decompressed.
    pub uncompressed_bytes_received: u64,
    /// Received messages refused ([`DecompressError`]): dropped on a datagram channel, closing
    /// the session on a reliable one.
    pub refused: u64,
}

impl CompressionStats {
    pub(crate) fn count_sent(&mut self, uncompressed: u64, compressed: u64) {
        self.messages_sent += 1;
        self.uncompressed_bytes_sent += uncompressed;
        self.compressed_bytes_sent += compressed;
    }

    pub(crate) fn count_received(&mut self, compressed: u64, uncompressed: u64) {
        self.messages_received += 1;
        self.compressed_bytes_received += compressed;
        self.uncompressed_bytes_received += uncompressed;
    }

    /// Compression ratio of what was sent: uncompressed bytes over compressed bytes (2.0 means
    /// half the size); 1.0 before anything was sent.
    pub fn ratio_sent(&self) -> f64 {
        ratio(self.uncompressed_bytes_sent, self.compressed_bytes_sent)
    }

    /// Compression ratio of what was received, as [`CompressionStats::ratio_sent`].
    pub fn ratio_received(&self) -> f64 {
        ratio(self.uncompressed_bytes_received, self.compressed_bytes_received)
    }

    /// Bytes compression saved on what was sent (negative when flag bytes on incompressible
    /// messages cost more than it saved).
    pub fn saved_bytes_sent(&self) -> i64 {
        self.uncompressed_bytes_sent as i64 - self.compressed_bytes_sent as i64
    }
}

impl std::ops::AddAssign for CompressionStats {
    /// Sums two sets of counters (e.g. over connections).
    fn add_assign(&mut self, other: Self) {
        self.messages_sent += other.messages_sent;
        self.uncompressed_bytes_sent += other.uncompressed_bytes_sent;
        self.compressed_bytes_sent += other.compressed_bytes_sent;
        self.messages_received += other.messages_received;
        self.compressed_bytes_received += other.compressed_bytes_received;
        self.uncompressed_bytes_received += other.uncompressed_bytes_received;
        self.refused += other.refused;
    }
}

fn ratio(uncompressed: u64, compressed: u64) -> f64 {
    if compressed == 0 {
        1.0
    } else {
        uncompressed as f64 / compressed as f64
    }
}

/// One endpoint's zstd contexts, created on first use and shared by its connections.
pub(crate) struct Codec {
    level: i32,
    min_bytes: usize,
    max_decompressed_bytes: usize,
    dictionary: Option<Arc<[u8]>>,
    dictionary_hash: Option<[u8; 32]>,
    compressor: Option<zstd::bulk::Compressor<'static>>,
    dictionary_compressor: Option<zstd::bulk::Compressor<'static>>,
    decompressor: Option<zstd::bulk::Decompressor<'static>>,
    dictionary_decompressor: Option<zstd::bulk::Decompressor<'static>>,
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Codec")
            .field("level", &self.level)
            .field("min_bytes", &self.min_bytes)
            .field("max_decompressed_bytes", &self.max_decompressed_bytes)
            .field("dictionary_bytes", &self.dictionary.as_ref().map(|d| d.len()))
            .finish_non_exhaustive()
    }
}

impl Codec {
    pub(crate) fn new(config: &CompressionConfig) -> Self {
        Self {
            level: config.level,
            min_bytes: config.min_bytes,
            max_decompressed_bytes: config.max_decompressed_bytes,
            dictionary: config.dictionary.clone(),
            dictionary_hash: config.dictionary_hash(),
            compressor: None,
            dictionary_compressor: None,
            decompressor: None,
            dictionary_decompressor: None,
        }
    }

    /// SHA-256 of the dictionary, if any.
    pub(crate) fn dictionary_hash(&self) -> Option<[u8; 32]> {
        self.dictionary_hash
    }

    /// The Hello extensions compression adds: the dictionary's hash, when there is one.
    pub(crate) fn hello_extensions(&self) -> Vec<Extension> {
        self.dictionary_hash
            .map(|hash| Extension {
                kind: ExtensionKind::COMPRESSION_DICTIONARY,
                data: hash.to_vec(),
            })
            .into_iter()
            .collect()
    }

    /// `payload` as a compressed-channel message: flag ‖ data. Compresses when the payload is
    /// at least `min_bytes` and zstd makes it smaller; otherwise stores it.
    pub(crate) fn encode(&mut self, payload: &[u8], capabilities: u64) -> Bytes {
        let use_dictionary = capabilities & capability::ZSTD_DICTIONARY != 0 && self.dictionary.is_some();
        if payload.len() >= self.min_bytes {
            if let Some(compressed) = self.compress(payload, use_dictionary) {
                if compressed.len() < payload.len() {
                    let flag = if use_dictionary {
                        FLAG_ZSTD_DICTIONARY
                    } else {
                        FLAG_ZSTD
                    };
                    return framed(flag, &compressed);
                }
            }
        }
        framed(FLAG_STORED, payload)
    }

    fn compress(&mut self, payload: &[u8], use_dictionary: bool) -> Option<Vec<u8>> {
        let level = self.level;
        let slot = if use_dictionary {
            &mut self.dictionary_compressor
        } else {
            &mut self.compressor
        };
        if slot.is_none() {
            let made = match (&self.dictionary, use_dictionary) {
                (Some(dictionary), true) => zstd::bulk::Compressor::with_dictionary(level, dictionary),
                _ => zstd::bulk::Compressor::new(level),
            };
            *slot = Some(made.ok()?);
        }
        slot.as_mut()?.compress(payload).ok()
    }

    /// The message carried by `message` (flag ‖ data), decompressed to at most
    /// `min(max_decompressed_bytes, channel_max)` bytes.
    ///
    /// # Errors
    /// [`DecompressError`]; nothing larger than the cap is ever allocated.
    pub(crate) fn decode(
        &mut self,
        message: Bytes,
        capabilities: u64,
        channel_max: usize,
    ) -> Result<Bytes, DecompressError> {
        let (&flag, data) = message.split_first().ok_or(DecompressError::Empty)?;
        let max = self.max_decompressed_bytes.min(channel_max);
        let use_dictionary = match flag {
            FLAG_STORED if data.len() > max => {
                return Err(DecompressError::TooLarge {
                    declared: data.len() as u64,
                    max,
                })
            }
            FLAG_STORED => return Ok(message.slice(1..)),
            FLAG_ZSTD => false,
            FLAG_ZSTD_DICTIONARY if capabilities & capability::ZSTD_DICTIONARY != 0 => true,
            FLAG_ZSTD_DICTIONARY => return Err(DecompressError::DictionaryNotNegotiated),
            other => return Err(DecompressError::UnknownFlag(other)),
        };
        let slot = if use_dictionary {
            &mut self.dictionary_decompressor
        } else {
            &mut self.decompressor
        };
        if slot.is_none() {
            let made = match (&self.dictionary, use_dictionary) {
                (Some(dictionary), true) => zstd::bulk::Decompressor::with_dictionary(dictionary),
                (None, true) => return Err(DecompressError::DictionaryNotNegotiated),
                _ => zstd::bulk::Decompressor::new(),
            };
            *slot = Some(made.map_err(|_| DecompressError::Corrupt)?);
        }
        let decompressor = slot.as_mut().ok_or(DecompressError::Corrupt)?;
        decompress_bounded(decompressor, data, max).map(Bytes::from)
    }
}

fn framed(flag: u8, data: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(1 + data.len());
    out.put_u8(flag);
    out.put_slice(data);
    out.freeze()
}

/// Decompresses one zstd frame whose header declares its content size, at most `max` bytes:
/// the declared size is read and checked before the output is allocated, and the frame must
/// produce exactly that many bytes.
fn decompress_bounded(
    decompressor: &mut zstd::bulk::Decompressor<'static>,
    frame: &[u8],
    max: usize,
) -> Result<Vec<u8>, DecompressError> {
    let declared = zstd::zstd_safe::get_frame_content_size(frame)
        .ok()
        .flatten()
        .ok_or(DecompressError::NoContentSize)?;
    let size = usize::try_from(declared)
        .ok()
        .filter(|&size| size <= max)
        .ok_or(DecompressError::TooLarge { declared, max })?;
    let mut out = Vec::with_capacity(size);
    let written = decompressor
        .decompress_to_buffer(frame, &mut out)
        .map_err(|_| DecompressError::Corrupt)?;
    if written != size {
        return Err(DecompressError::Corrupt);
    }
    Ok(out)
}

/// Decodes a compressed-channel message with fresh contexts (for fuzzing and tests): the
/// same rules as a session with `capabilities` and `config`.
///
/// # Errors
/// As `Codec::decode`.
#[cfg(any(test, feature = "testing"))]
pub fn decode_message(
    config: &CompressionConfig,
    capabilities: u64,
    message: &[u8],
    channel_max: usize,
) -> Result<Bytes, DecompressError> {
    Codec::new(config).decode(Bytes::copy_from_slice(message), capabilities, channel_max)
}

/// Encodes a compressed-channel message with fresh contexts (for fuzzing and tests).
#[cfg(any(test, feature = "testing"))]
pub fn encode_message(config: &CompressionConfig, capabilities: u64, payload: &[u8]) -> Bytes {
    Codec::new(config).encode(payload, capabilities)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> CompressionConfig {
        CompressionConfig {
            enabled: true,
            ..CompressionConfig::default()
        }
    }

    const ZSTD: u64 = capability::ZSTD;

    #[test]
    fn round_trip_and_small_messages_stored() {
        let config = config();
        let snapshot: Vec<u8> = (0..4096u32).map(|i| (i / 64) as u8).collect();
        let message = encode_message(&config, ZSTD, &snapshot);
        assert_eq!(message[0], FLAG_ZSTD);
        assert!(message.len() < snapshot.len() / 4, "{} bytes", message.len());
        assert_eq!(
            decode_message(&config, ZSTD, &message, usize::MAX).unwrap(),
            &snapshot[..]
        );
        let small = encode_message(&config, ZSTD, b"jump");
        assert_eq!(&small[..], b"\0jump");
        assert_eq!(decode_message(&config, ZSTD, &small, 4).unwrap(), &b"jump"[..]);
    }

    #[test]
    fn incompressible_data_is_stored() {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let noise: Vec<u8> = (0..512)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        let message = encode_message(&config(), ZSTD, &noise);
        assert_eq!(message[0], FLAG_STORED);
        assert_eq!(message.len(), noise.len() + 1);
    }

    #[test]
    fn bombs_and_bad_frames_are_refused_before_allocation() {
        let config = config();
        let zeros = vec![0u8; 1 << 20];
        let bomb = encode_message(&config, ZSTD, &zeros);
        assert!(bomb.len() < 200, "{} bytes", bomb.len());
        assert_eq!(
            decode_message(&config, ZSTD, &bomb, 4096),
            Err(DecompressError::TooLarge {
                declared: 1 << 20,
                max: 4096
            })
        );
        assert_eq!(
            decode_message(&config, ZSTD, &[], 10),
            Err(DecompressError::Empty)
        );
        assert_eq!(
            decode_message(&config, ZSTD, &[9, 1], 10),
            Err(DecompressError::UnknownFlag(9))
        );
        assert_eq!(
            decode_message(&config, ZSTD, &[FLAG_ZSTD_DICTIONARY, 1], 10),
            Err(DecompressError::DictionaryNotNegotiated)
        );
        assert_eq!(
            decode_message(&config, ZSTD, &[FLAG_ZSTD, 1, 2, 3], 10),
            Err(DecompressError::NoContentSize)
        );
        // A frame whose declared size is a lie.
        let mut liar = encode_message(&config, ZSTD, &[7u8; 300]).to_vec();
        let last = liar.len() - 1;
        liar[last] ^= 0xff;
        assert!(decode_message(&config, ZSTD, &liar, 1 << 20).is_err());
    }

    #[test]
    fn dictionary_sessions_use_the_dictionary() {
        let dictionary: Vec<u8> = b"position velocity health ammo team ".repeat(40);
        let config = CompressionConfig {
            dictionary: Some(dictionary.into()),
            ..config()
        };
        let both = capability::ZSTD | capability::ZSTD_DICTIONARY;
        assert_eq!(config.capabilities(), both);
        let snapshot = b"position 1 velocity 2 health 100 ammo 30 team red position 4".repeat(2);
        let with = encode_message(&config, both, &snapshot);
        assert_eq!(with[0], FLAG_ZSTD_DICTIONARY);
        let without = encode_message(&config, ZSTD, &snapshot);
        assert_eq!(without[0], FLAG_ZSTD);
        assert!(with.len() < without.len(), "{} vs {}", with.len(), without.len());
        assert_eq!(
            decode_message(&config, both, &with, usize::MAX).unwrap(),
            &snapshot[..]
        );
        assert_eq!(
            decode_message(&config, ZSTD, &with, usize::MAX),
            Err(DecompressError::DictionaryNotNegotiated)
        );
    }

    #[test]
    fn validate_names_the_field() {
        let bad = CompressionConfig { level: 0, ..config() };
        assert!(bad.validate().unwrap_err().to_string().starts_with("level"));
        let bad = CompressionConfig {
            max_decompressed_bytes: 0,
            ..config()
        };
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("max_decompressed_bytes"));
    }
}
