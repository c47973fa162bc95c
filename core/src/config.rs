//! Endpoint configuration: plain data, serde-deserialisable (TOML or JSON), units in names.
//!
//! One [`Config`] serves both sides; fields marked *server* or *client* are ignored by the
//! other. Defaults follow `DESIGN.md` §4.3 and the seeds they cite.

use serde::{Deserialize, Serialize};

use crate::channel::{default_channels, ChannelKind, OversizePolicy};
use crate::fragment::FragmentConfig;
use crate::heartbeat::HeartbeatConfig;
use crate::limits::RateLimitConfig;
use crate::retry::RetryConfig;
use crate::tick::{TickConfig, TickSyncConfig};
use crate::ticket::TicketConfig;
use crate::wire::{MAX_CHANNELS, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION};

/// Endpoint configuration. Validate with [`Config::validate`] (the endpoint does so too).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// SHA-256 of the game's message schema, hex in config files; peers must agree.
    #[serde(with = "hex32")]
    pub schema_hash: [u8; 32],
    /// Lowest protocol version offered or accepted.
    pub version_min: u16,
    /// Highest protocol version offered or accepted.
    pub version_max: u16,
    /// Capability bits this side supports; the session gets the intersection.
    pub capabilities: u64,
    /// Time allowed from the QUIC connection's start to an accepted tickwire handshake.
    /// Default 10 000 ms: several round trips at 500 ms RTT plus TLS.
    pub handshake_timeout_ms: u64,
    /// *Server*: live sessions admitted at once; more are rejected with `SERVER_FULL`.
    pub max_sessions: usize,
    /// *Server*: handshakes in progress at once; beyond it new connections are refused
    /// at the QUIC level (CONNECTION_REFUSED, seen by clients as `SERVER_BUSY`).
    pub max_pending_handshakes: usize,
    /// *Server*: with at least this many handshakes in progress, an Initial from an address
    /// not yet validated is answered with a QUIC Retry (RFC 9000 §8.1.2) instead of a
    /// handshake: the client must echo the Retry's token from the same address, which a spoofed
    /// source cannot, and the server keeps no state meanwhile. `0` = always Retry unvalidated
    /// addresses (one extra round trip per join, and the server never sends an unvalidated
    /// address more bytes than it received); `None` (the default) = half of
    /// `max_pending_handshakes`. Independently of it, an unvalidated address that would only
    /// get a rejection (over its handshake rate, server full, paused, shutting down) is sent a
    /// Retry first, so rejection handshakes go only to addresses proven reachable.
    pub retry_above_pending_handshakes: Option<usize>,
    /// *Server*: admit [`Role::GameServer`](crate::Role) sessions, which present no join
    /// ticket: set on a verification server only. Default false.
    pub accept_game_servers: bool,
    /// *Server*: `retry_after_ms` advised when full.
    pub server_full_retry_after_ms: u32,
    /// *Server*: revalidate every live session's ticket every this many ticks (default 60 =
    /// once a second at 60 Hz); revoked or expired sessions are closed with a reason.
    pub revalidate_every_ticks: u32,
    /// *Server*: whether revalidation also closes sessions whose join ticket has expired
    /// (`TICKET_EXPIRED`). Off by default: a join ticket authorises *joining*, and issuers
    /// keep them short-lived; turn it on when tickets bound session length. Revoked tickets
    /// always close their sessions.
    pub close_sessions_on_ticket_expiry: bool,
    /// Largest reliable message, in bytes; a peer declaring a larger frame is closed with
    /// `PROTOCOL_VIOLATION`. Default 8 MiB.
    pub max_reliable_message_bytes: usize,
    /// Longest a reliable channel stream may hold a partial frame with no new byte arriving
    /// for it, in milliseconds; then the connection is closed with `PROTOCOL_VIOLATION`
    /// (counted in `ConnectionStats::partial_frame_timeouts`). The clock restarts with every
    /// byte, so a slow but moving transfer is never cut; it stops a peer that keeps the session
    /// alive with heartbeats while pinning a frame's buffer (up to `max_reliable_message_bytes`
    /// per stream). A sender whose stream is starved this long by its own higher-priority
    /// traffic is closed too. Must be > 0. Default 10 000 (twice the heartbeat timeout).
    pub partial_frame_timeout_ms: u64,
    /// Bytes of reliable messages queued per connection waiting for flow control; a `send`
    /// beyond it fails with `SendError::QueueFull`. Default 32 MiB.
    pub max_queued_reliable_bytes: usize,
    /// Datagram messages queued per connection waiting for QUIC's datagram buffer; beyond it
    /// the oldest is dropped and counted. Default 1024.
    pub max_queued_datagrams: usize,
    /// Bytes of datagrams handed to QUIC at once (its datagram send buffer); the rest wait in
    /// tickwire's own queue, where deadlines and drop-oldest apply. Heartbeats bypass that
    /// queue, so they wait behind at most this much — keep it small so that RTT samples
    /// measure the path, not our backlog. tickwire refills it before every transmit, so a few
    /// datagrams suffice to keep the path busy. Default 4 KiB.
    pub datagram_send_buffer_bytes: usize,
    /// What to do with unreliable messages larger than the fragmentation limits.
    pub oversize_unreliable: OversizePolicy,
    /// QUIC idle timeout (RFC 9000 §10.1), kept above the heartbeat timeout so that tickwire's
    /// detection, with its reason code, fires first. Default 20 000 ms.
    pub idle_timeout_ms: u64,
    /// QUIC ACK frequency requested from the peer (draft-ietf-quic-ack-frequency-04, which
    /// quinn-proto implements); `None` (the default) = the peer's defaults (RFC 9000 §13.2.2:
    /// an ACK for every second ack-eliciting packet). Game traffic is a steady stream of small
    /// datagrams both ways, so letting ACKs wait for the next packet going the other way
    /// roughly halves the packets a server sends (measured in the simulator's `scale-1k`).
    /// Off by default while the extension is a draft: with quinn-proto 0.11 and a reordering
    /// threshold of 1 or 2 it stalled a 2 MiB reliable transfer on a path with 15 ms
    /// reordering jitter and 20 % duplication; [`AckFrequency::default`] (threshold 0) passes
    /// that test (`core/tests/fragments.rs`). Peers without the extension ignore the request.
    pub ack_frequency: Option<AckFrequency>,
    /// Channel table, indexed by channel id; both peers must use the same table.
    pub channels: Vec<ChannelKind>,
    /// Heartbeat interval and failure detection.
    pub heartbeat: HeartbeatConfig,
    /// Fragmentation and reassembly limits, per connection.
    pub fragment: FragmentConfig,
    /// *Server*: fixed-timestep scheduler.
    pub tick: TickConfig,
    /// *Client*: tick synchronisation to the server.
    pub tick_sync: TickSyncConfig,
    /// *Server*: join ticket verification.
    pub tickets: TicketConfig,
    /// *Client*: clock-skew allowance, in milliseconds, when checking a game server's play
    /// ticket (only for connections given `trusted_vs_keys`): the ticket must satisfy
    /// `issued_at_ms − skew ≤ now ≤ expires_at_ms + skew`, where `now` is the client's wall
    /// clock (Unix ms) at the moment the Accept is processed (`PROTOCOL.md` §4.4.3 checks
    /// 12–13). Default 2 000: play tickets live only 6 s, so the 30 s join-ticket allowance
    /// (`tickets.max_skew_ms`) would accept a ticket long after its verification server
    /// stopped renewing it.
    pub play_ticket_max_skew_ms: u64,
    /// Reconnection backoff (used by runtimes and applications).
    pub retry: RetryConfig,
    /// *Server*: rate limits per address and per connection.
    pub limits: RateLimitConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            schema_hash: [0; 32],
            version_min: MIN_PROTOCOL_VERSION,
            version_max: PROTOCOL_VERSION,
            capabilities: 0,
            handshake_timeout_ms: 10_000,
            max_sessions: 1024,
            max_pending_handshakes: 256,
            retry_above_pending_handshakes: None,
            accept_game_servers: false,
            server_full_retry_after_ms: 5_000,
            revalidate_every_ticks: 60,
            close_sessions_on_ticket_expiry: false,
            max_reliable_message_bytes: 8 << 20,
            partial_frame_timeout_ms: 10_000,
            max_queued_reliable_bytes: 32 << 20,
            max_queued_datagrams: 1024,
            datagram_send_buffer_bytes: 4 << 10,
            oversize_unreliable: OversizePolicy::Reject,
            idle_timeout_ms: 20_000,
            ack_frequency: None,
            channels: default_channels(),
            heartbeat: HeartbeatConfig::default(),
            fragment: FragmentConfig::default(),
            tick: TickConfig::default(),
            tick_sync: TickSyncConfig::default(),
            tickets: TicketConfig::default(),
            play_ticket_max_skew_ms: 2_000,
            retry: RetryConfig::default(),
            limits: RateLimitConfig::default(),
        }
    }
}

/// The ACK frequency an endpoint asks its peer for (draft-ietf-quic-ack-frequency-04 §4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AckFrequency {
    /// Ack-eliciting packets the peer may receive before it must send an ACK at once.
    /// Default 4: at 60 inputs/s and 30 snapshots/s, ACKs ride on the next packet the other way.
    pub ack_eliciting_threshold: u32,
    /// Longest the peer may delay an ACK, in milliseconds (quinn-proto caps it at the larger of
    /// the RTT and 25 ms). Default 33: one snapshot interval at 30 Hz.
    pub max_ack_delay_ms: u64,
    /// Out-of-order packets that make the peer ACK at once (§4 `Reordering Threshold`); 0 =
    /// reordering alone never does. Default 0: with 1 or 2, quinn-proto 0.11 stalled a bulk
    /// transfer on a reordering, duplicating path (`core/tests/fragments.rs`).
    pub reordering_threshold: u32,
}

impl Default for AckFrequency {
    fn default() -> Self {
        Self {
            ack_eliciting_threshold: 4,
            max_ack_delay_ms: 33,
            reordering_threshold: 0,
        }
    }
}

/// A configuration value out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid config: {0}")]
pub struct ConfigError(pub String);

impl Config {
    /// Checks ranges and cross-field constraints.
    ///
    /// # Errors
    /// [`ConfigError`] naming the first offending field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |what: &str| Err(ConfigError(what.to_owned()));
        if self.version_min > self.version_max || self.version_min == 0 {
            return fail("version_min must be >= 1 and <= version_max");
        }
        if self.channels.is_empty() || self.channels.len() > MAX_CHANNELS {
            return fail("channels must hold 1..=32 entries");
        }
        if self.handshake_timeout_ms == 0 {
            return fail("handshake_timeout_ms must be > 0");
        }
        if self.idle_timeout_ms <= self.heartbeat.timeout_ms {
            return fail("idle_timeout_ms must exceed heartbeat.timeout_ms");
        }
        if self.max_reliable_message_bytes == 0 || self.max_reliable_message_bytes > u32::MAX as usize {
            return fail("max_reliable_message_bytes must be in 1..=u32::MAX");
        }
        if self.partial_frame_timeout_ms == 0 {
            return fail("partial_frame_timeout_ms must be > 0");
        }
        if self.datagram_send_buffer_bytes < 2048 {
            return fail("datagram_send_buffer_bytes must be >= 2048 (one datagram plus a heartbeat)");
        }
        if self.revalidate_every_ticks == 0 {
            return fail("revalidate_every_ticks must be > 0");
        }
        if let Some(ack) = &self.ack_frequency {
            if ack.max_ack_delay_ms == 0 || ack.max_ack_delay_ms > 1_000 {
                return fail("ack_frequency.max_ack_delay_ms must be in 1..=1000");
            }
        }
        Ok(())
    }

    /// The pending-handshake count from which unvalidated addresses get a Retry:
    /// `retry_above_pending_handshakes`, or half of `max_pending_handshakes` if unset.
    pub fn retry_threshold(&self) -> usize {
        self.retry_above_pending_handshakes
            .unwrap_or(self.max_pending_handshakes / 2)
    }

    /// The schema hash for a schema described by `text` (SHA-256 of its bytes).
    pub fn schema_hash_of(text: &str) -> [u8; 32] {
        use sha2::Digest;
        sha2::Sha256::digest(text.as_bytes()).into()
    }
}

/// Serde helper: `[u8; 32]` as a 64-character hex string.
pub(crate) mod hex32 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(bytes: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::hexvec::encode(bytes))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(d)?;
        super::hexvec::decode(&text)
            .ok()
            .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
            .ok_or_else(|| serde::de::Error::custom("expected 64 hex characters"))
    }
}

/// Serde for byte strings as hex strings (config files).
pub(crate) mod hexvec {
    use serde::Serializer;

    pub(crate) fn encode(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub(crate) fn decode(text: &str) -> Result<Vec<u8>, ()> {
        if text.len() % 2 != 0 || !text.is_ascii() {
            return Err(());
        }
        (0..text.len() / 2)
            .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).map_err(|_| ()))
            .collect()
    }

    pub(crate) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&encode(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_roundtrip_through_toml() {
        let config = Config::default();
        config.validate().unwrap();
        let text = toml::to_string(&config).unwrap();
        let back: Config = toml::from_str(&text).unwrap();
        assert_eq!(back, config);
    }

    #[test]
    fn partial_toml_keeps_defaults() {
        let config: Config = toml::from_str(
            "schema_hash = \"00000000000000000000000000000000000000000000000000000000000000ff\"\n[heartbeat]\ninterval_ms = 250\n",
        )
        .unwrap();
        assert_eq!(config.schema_hash[31], 0xff);
        assert_eq!(config.heartbeat.interval_ms, 250);
        assert_eq!(config.heartbeat.timeout_ms, HeartbeatConfig::default().timeout_ms);
        assert!(toml::from_str::<Config>("sed = 1").is_err());
    }

    #[test]
    fn validation_names_the_field() {
        let config = Config {
            idle_timeout_ms: 1,
            ..Config::default()
        };
        assert!(config.validate().unwrap_err().0.contains("idle_timeout_ms"));
        let config = Config {
            partial_frame_timeout_ms: 0,
            ..Config::default()
        };
        assert!(config
            .validate()
            .unwrap_err()
            .0
            .contains("partial_frame_timeout_ms"));
    }
}
