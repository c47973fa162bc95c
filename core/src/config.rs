//! Endpoint configuration: plain data, serde-deserialisable (TOML or JSON), units in names.
//!
//! One [`Config`] serves both sides; fields marked *server* or *client* are ignored by the
//! other. Each default is documented on its field, with its unit and why.

use serde::{Deserialize, Serialize};
use serde_with::hex::Hex;
use serde_with::serde_as;

use crate::channel::default_channels;
use crate::channel::ChannelId;
pub use crate::channel::{
    Breach, Channel, ChannelConfigError, ChannelKind, ChannelRateLimit, OversizePolicy, Priority, RoleSet,
    Senders,
};
pub use crate::compress::{CompressionConfig, CompressionConfigError, DecompressError};
pub use crate::fragment::{FragmentConfig, FragmentConfigError};
pub use crate::heartbeat::{HeartbeatConfig, HeartbeatConfigError};
pub use crate::limits::{RateLimitConfig, RateLimitConfigError};
pub use crate::retry::{RetryConfig, RetryConfigError};
pub use crate::tick::{MissedTickPolicy, TickConfig, TickConfigError, TickSyncConfig};
pub use crate::ticket::{TicketConfig, TicketConfigError, MAX_CLOCK_SKEW_MS};
use crate::wire::{capability, FRAME_PREFIX_LEN, MAX_CHANNELS, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION};

/// Endpoint configuration. Validate with [`Config::validate`] (the endpoint does so too).
#[serde_as]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// SHA-256 of the game's message schema, 64 lowercase hex digits in config files; peers
    /// must agree.
    #[serde_as(as = "Hex")]
    pub schema_hash: [u8; 32],
    /// Lowest protocol version offered or accepted.
    pub version_min: u16,
    /// Highest protocol version offered or accepted.
    pub version_max: u16,
    /// Capability bits this side supports besides those it derives from its own settings
    /// ([`Config::offered_capabilities`]); the session gets the intersection. Leave 0: the
    /// bits this version defines are set through their sections (`compression`) and
    /// `bundle_datagrams`.
    pub capabilities: u64,
    /// Time allowed from the QUIC connection's start to an accepted tickwire handshake.
    /// Default 10 000 ms: several round trips at 500 ms RTT plus TLS.
    pub handshake_timeout_ms: u64,
    /// *Server*: time from the end of the TLS handshake to the client's Hello, in
    /// milliseconds; then the connection is closed with `HANDSHAKE_TIMEOUT`. A client sends its
    /// Hello in the same flight as its TLS Finished, so a few RTTs suffice; a connection that
    /// completed TLS and stays silent holds a pending-handshake slot and a TLS session for
    /// nothing. Capped by `handshake_timeout_ms`. Default 5 000: half the handshake timeout, so
    /// that a Hello retransmitted several times on a path losing 30 % of its packets still
    /// arrives (a 2 000 ms default refused such clients in `core/tests/heartbeat.rs`).
    pub hello_timeout_ms: u64,
    /// *Server*: live sessions admitted at once; more are rejected with `SERVER_FULL`.
    pub max_sessions: usize,
    /// *Server*: handshakes in progress at once. At the limit, a new connection first evicts
    /// the connection that has waited longest for its Hello after completing TLS (closed with
    /// `HANDSHAKE_TIMEOUT`); with none to evict it is refused at the QUIC level
    /// (CONNECTION_REFUSED, seen by clients as `SERVER_BUSY`).
    pub max_pending_handshakes: usize,
    /// *Server*: handshakes in progress at once from one source (an IPv4 address or an IPv6
    /// /64, `PROTOCOL.md` §4.5). Beyond it an
    /// Initial from an unvalidated address is answered with a Retry and one from a validated
    /// address is refused at the QUIC level (seen by clients as `SERVER_BUSY`), so that one
    /// address, or a few, cannot hold the whole `max_pending_handshakes` table while others
    /// join. Default 8 (a household or LAN party joining at once, as
    /// `limits.handshake_burst_per_addr`).
    pub max_pending_handshakes_per_addr: usize,
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
    /// Bytes of reliable messages queued per connection waiting for the next transmit or for
    /// flow control; a `send` beyond it fails with `SendError::QueueFull`. At least one largest
    /// frame (`max_reliable_message_bytes` + 4). Default 32 MiB.
    pub max_queued_reliable_bytes: usize,
    /// Datagram messages queued per connection waiting for QUIC's datagram buffer; beyond it
    /// the oldest is dropped and counted. At least 1. Default 1024.
    pub max_queued_datagrams: usize,
    /// Bytes of datagrams handed to QUIC at once (its datagram send buffer); the rest wait in
    /// tickwire's own queue, where deadlines and drop-oldest apply. Heartbeats bypass that
    /// queue, so they wait behind at most this much — keep it small so that RTT samples
    /// measure the path, not our backlog. tickwire refills it before every transmit, so a few
    /// datagrams suffice to keep the path busy. Default 4 KiB.
    pub datagram_send_buffer_bytes: usize,
    /// Size of the chunks a connection writes its outgoing datagrams, bundles and frame
    /// headers into: many share one allocation, freed once QUIC has sent them all. A burst of
    /// large datagrams takes one allocation per chunk; a connection keeps up to two partly
    /// used chunks (its open bundle's and its header arena's) between sends, so a server with
    /// very many connections may trade some CPU for memory with a smaller size. In
    /// 1 024..=1 048 576. Default 16 KiB.
    pub transmit_chunk_bytes: usize,
    /// Offer datagram bundles (capability `BUNDLE`, `PROTOCOL.md` §5.7): in sessions where
    /// both peers offer them, small datagram-channel messages sent between two transmits (and
    /// without a send deadline) travel together in one QUIC datagram, which costs both ends
    /// less CPU per message. Default true.
    pub bundle_datagrams: bool,
    /// What to do with unreliable messages larger than the fragmentation limits;
    /// `send_reliable` needs a reliable channel in `channels`.
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
    /// Channel table, indexed by channel id (1..=32 entries); both peers must use the same
    /// table. Each entry gives the channel's kind, who may send on it, its own rate limit and
    /// whether it is compressed ([`Channel`], `PROTOCOL.md` §7.1). Default: reliable game,
    /// reliable bulk, unreliable, sequenced (the constants on [`crate::ChannelId`]), all open
    /// to the roles that play and closed to spectators.
    pub channels: Vec<Channel>,
    /// *Server*: messages a session may have refused for want of permission (a role or
    /// permission bit its channel's `senders` requires, `PROTOCOL.md` §7.1) before the session
    /// is closed with `PERMISSION_DENIED`; rate-limited messages do not count. `0` = never
    /// close (refused messages are still dropped and counted). Default 8: an honest client
    /// never sends one ([`crate::Endpoint::send`] refuses locally with
    /// `SendError::NotPermitted`), so a few are a peer out of step with the channel table
    /// and a steady stream is a misbehaving one.
    pub max_permission_violations: u32,
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
    /// stopped renewing it. At most [`MAX_CLOCK_SKEW_MS`] (one hour).
    pub play_ticket_max_skew_ms: u64,
    /// Reconnection backoff (used by runtimes and applications).
    pub retry: RetryConfig,
    /// *Server*: rate limits per address and per connection.
    pub limits: RateLimitConfig,
    /// zstd compression of the channels the table marks `compress` (`PROTOCOL.md` §7.3):
    /// whether it is offered, the level, and the decompression cap.
    pub compression: CompressionConfig,
    /// *Server*: bytes of encoded records a recorded session (`PROTOCOL.md` §11) may hold
    /// until the runtime takes them with `Endpoint::poll_recorded`; records beyond it are
    /// dropped and marked by a `Gap` record. At least 4096. Default 1 MiB: at 60 Hz with a
    /// 100-byte input and a 1 KiB snapshot per tick a session records about 70 KiB/s, so a
    /// writer may stall for over ten seconds before anything is lost.
    pub recording_buffer_bytes: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            schema_hash: [0; 32],
            version_min: MIN_PROTOCOL_VERSION,
            version_max: PROTOCOL_VERSION,
            capabilities: 0,
            handshake_timeout_ms: 10_000,
            hello_timeout_ms: 5_000,
            max_sessions: 1024,
            max_pending_handshakes: 256,
            max_pending_handshakes_per_addr: 8,
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
            transmit_chunk_bytes: 16 << 10,
            bundle_datagrams: true,
            oversize_unreliable: OversizePolicy::Reject,
            idle_timeout_ms: 20_000,
            ack_frequency: None,
            channels: default_channels(),
            max_permission_violations: 8,
            heartbeat: HeartbeatConfig::default(),
            fragment: FragmentConfig::default(),
            tick: TickConfig::default(),
            tick_sync: TickSyncConfig::default(),
            tickets: TicketConfig::default(),
            play_ticket_max_skew_ms: 2_000,
            retry: RetryConfig::default(),
            limits: RateLimitConfig::default(),
            compression: CompressionConfig::default(),
            recording_buffer_bytes: 1 << 20,
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

impl AckFrequency {
    /// Checks that `max_ack_delay_ms` is in `1..=1000` (a longer delay would stall loss
    /// recovery and RTT samples; the thresholds take any value).
    ///
    /// # Errors
    /// [`ConfigError`] naming the field with its path in [`Config`] (`ack_frequency.`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_ack_delay_ms == 0 || self.max_ack_delay_ms > 1_000 {
            return Err(ConfigError(
                "ack_frequency.max_ack_delay_ms must be in 1..=1000".to_owned(),
            ));
        }
        Ok(())
    }
}

/// A configuration value out of range. The message starts with the offending field, with its
/// path for nested sections (`tick.tick_rate_hz must be in 1..=1000`): fix that field in the
/// configuration file and load it again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid config: {0}")]
pub struct ConfigError(pub String);

/// A nested section's validation result as a [`ConfigError`] whose message is the section's
/// error prefixed with `section.`: the section's messages start with the field's name, so the
/// result names the field's whole path (`heartbeat.interval_ms must be > 0`).
pub(crate) fn in_section<E: std::fmt::Display>(
    section: &str,
    result: Result<(), E>,
) -> Result<(), ConfigError> {
    result.map_err(|error| ConfigError(format!("{section}.{error}")))
}

impl Config {
    /// Checks ranges and cross-field constraints of every field, nested sections included
    /// (`heartbeat`, `fragment`, `tick`, `tick_sync`, `tickets`, `retry`, `limits`,
    /// `ack_frequency`), on both sides: a value a component would clamp, ignore or divide by is
    /// refused here, so that a bad configuration fails at load time with a message instead of
    /// misbehaving later. Never panics, whatever the values (NaN included).
    ///
    /// # Errors
    /// [`ConfigError`] naming the first offending field by its path, e.g.
    /// `heartbeat.interval_ms must be > 0`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |what: &str| Err(ConfigError(what.to_owned()));
        if self.version_min > self.version_max || self.version_min == 0 {
            return fail("version_min must be >= 1 and <= version_max");
        }
        if self.channels.is_empty() || self.channels.len() > MAX_CHANNELS {
            return fail("channels must hold 1..=32 entries");
        }
        for (index, channel) in self.channels.iter().enumerate() {
            in_section(&format!("channels[{index}]"), channel.validate())?;
        }
        if self.handshake_timeout_ms == 0 {
            return fail("handshake_timeout_ms must be > 0");
        }
        if self.hello_timeout_ms == 0 {
            return fail("hello_timeout_ms must be > 0");
        }
        if self.max_pending_handshakes_per_addr == 0 {
            return fail("max_pending_handshakes_per_addr must be >= 1");
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
        if !(1 << 10..=1 << 20).contains(&self.transmit_chunk_bytes) {
            return fail("transmit_chunk_bytes must be in 1024..=1048576");
        }
        if self.recording_buffer_bytes < 4096 {
            return fail("recording_buffer_bytes must be >= 4096");
        }
        if self.revalidate_every_ticks == 0 {
            return fail("revalidate_every_ticks must be > 0");
        }
        if let Some(ack) = &self.ack_frequency {
            ack.validate()?;
        }
        if self.max_queued_datagrams == 0 {
            return fail("max_queued_datagrams must be >= 1");
        }
        if self.max_queued_reliable_bytes < self.max_reliable_message_bytes.saturating_add(FRAME_PREFIX_LEN) {
            return fail(
                "max_queued_reliable_bytes must be >= max_reliable_message_bytes + 4 (one largest \
                 frame), else the largest messages never fit the queue",
            );
        }
        if self
            .max_sessions
            .checked_add(self.max_pending_handshakes)
            .is_none()
        {
            return fail("max_sessions + max_pending_handshakes must not overflow usize");
        }
        if self.oversize_unreliable == OversizePolicy::SendReliable
            && self.channels.iter().all(Channel::is_datagram)
        {
            return fail("oversize_unreliable = \"send_reliable\" needs a reliable channel in channels");
        }
        if self.play_ticket_max_skew_ms > MAX_CLOCK_SKEW_MS {
            return fail("play_ticket_max_skew_ms must be at most 3600000 (one hour)");
        }
        in_section("heartbeat", self.heartbeat.validate())?;
        in_section("fragment", self.fragment.validate())?;
        in_section("tick", self.tick.validate())?;
        in_section("tick_sync", self.tick_sync.validate())?;
        in_section("tickets", self.tickets.validate())?;
        in_section("retry", self.retry.validate())?;
        in_section("limits", self.limits.validate())?;
        in_section("compression", self.compression.validate())?;
        Ok(())
    }

    /// The capability bits this endpoint offers (client) or grants at most (server):
    /// `capabilities` plus the bits its sections enable ([`CompressionConfig::capabilities`]).
    pub fn offered_capabilities(&self) -> u64 {
        let bundle = if self.bundle_datagrams {
            capability::BUNDLE
        } else {
            0
        };
        self.capabilities | self.compression.capabilities() | bundle
    }

    /// Whether messages on `channel` are compressed in sessions that negotiated zstd.
    pub(crate) fn channel_compressed(&self, channel: ChannelId) -> bool {
        self.channels
            .get(usize::from(channel.0))
            .is_some_and(|entry| entry.compress)
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

/// A refusal test case: an edit of the default config, the error it must give, and the field
/// the message must start with.
#[cfg(test)]
pub(crate) type RefusalCase<'a, C, E> = (fn(&mut C), E, &'a str);

/// Test helper: each `(edit, error, field)` applied to the default config is refused with
/// `error`, whose message starts with `field`.
#[cfg(test)]
pub(crate) fn assert_each_refused<C, E>(
    cases: &[RefusalCase<'_, C, E>],
    validate: impl Fn(&C) -> Result<(), E>,
) where
    C: Default + std::fmt::Debug,
    E: PartialEq + std::fmt::Debug + std::fmt::Display,
{
    for (edit, expected, field) in cases {
        let mut config = C::default();
        edit(&mut config);
        let error = validate(&config).expect_err("the edited config is invalid");
        assert_eq!(&error, expected, "{config:?}");
        assert!(
            error.to_string().starts_with(field),
            "{error} should name {field}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Role;

    #[test]
    fn defaults_validate_and_roundtrip_through_toml() {
        let config = Config::default();
        config.validate().unwrap();
        let text = toml::to_string(&config).unwrap();
        let back: Config = toml::from_str(&text).unwrap();
        assert_eq!(back, config);
    }

    #[test]
    fn a_channel_entry_needs_only_its_kind() {
        let config: Config = toml::from_str(
            r#"
            max_permission_violations = 0
            channels = [
                { kind = { reliable = { priority = "game" } } },
                { kind = "unreliable", compress = true },
                { kind = "sequenced", senders = { roles = ["player", "spectator"] }, rate_limit = { messages_per_second = 30.0, burst = 5 } },
                { kind = { reliable = { priority = "game" } }, senders = { roles = ["admin"], permissions = 2147483648 }, rate_limit = { messages_per_second = 1.0, burst = 2, on_breach = "close" } },
                { kind = "unreliable", senders = { roles = [] } },
            ]
            "#,
        )
        .unwrap();
        assert_eq!(config.max_permission_violations, 0);
        assert_eq!(
            config.channels,
            vec![
                Channel::reliable(Priority::Game),
                Channel::unreliable().with_compress(true),
                Channel::sequenced()
                    .with_senders(Senders {
                        roles: RoleSet::PLAYER | RoleSet::SPECTATOR,
                        permissions: 0,
                    })
                    .with_rate_limit(ChannelRateLimit::new(30.0, 5)),
                Channel::reliable(Priority::Game)
                    .with_senders(Senders::admins())
                    .with_rate_limit(ChannelRateLimit::new(1.0, 2).on_breach(Breach::Close)),
                Channel::unreliable().with_senders(Senders::server_only()),
            ]
        );
        config.validate().unwrap();
        let back: Config = toml::from_str(&toml::to_string(&config).unwrap()).unwrap();
        assert_eq!(back, config);
        for bad in [
            "channels = [\"unreliable\"]",
            "channels = [{ senders = { roles = [\"player\"] } }]",
            "channels = [{ kind = \"unreliable\", senders = { roles = [\"owner\"] } }]",
            "channels = [{ kind = \"unreliable\", rate_limit = { burst = 1 } }]",
            "channels = [{ kind = \"unreliable\", colour = 1 }]",
        ] {
            assert!(toml::from_str::<Config>(bad).is_err(), "{bad}");
        }
    }

    /// The channel tables in README.md and PROTOCOL.md §7.1 parse and validate.
    #[test]
    fn the_documented_channel_tables_parse() {
        #[derive(Deserialize)]
        struct Settings {
            endpoint: Config,
        }
        let block = |text: &'static str, start: &str| {
            let at = text.find(start).expect("the example is there") + "```toml\n".len();
            let end = at + text[at..].find("```").expect("the block ends");
            &text[at..end]
        };
        let readme = include_str!("../../README.md");
        let settings: Settings =
            toml::from_str(block(readme, "```toml\n[endpoint]\nmax_permission_violations")).unwrap();
        settings.endpoint.validate().unwrap();
        assert_eq!(settings.endpoint.channels.len(), 5);
        assert_eq!(settings.endpoint.channels[3].senders, Senders::admins());
        let protocol = include_str!("../../PROTOCOL.md");
        let config: Config = toml::from_str(block(protocol, "```toml\nmax_permission_violations")).unwrap();
        config.validate().unwrap();
        assert_eq!(
            config.channels[3].rate_limit.map(|l| l.on_breach),
            Some(Breach::Close)
        );
    }

    #[test]
    fn the_default_table_is_closed_to_spectators_only() {
        for channel in Config::default().channels {
            assert_eq!(channel.senders, Senders::players());
            assert!(channel.rate_limit.is_none() && !channel.compress);
            for role in [Role::Player, Role::Admin, Role::GameServer] {
                assert!(channel.senders.permits(role, 0), "{role:?}");
            }
            assert!(!channel.senders.permits(Role::Spectator, u32::MAX));
        }
        let admins = Senders::admins();
        assert!(admins.permits(Role::Admin, crate::wire::PERMISSION_ADMIN | 1));
        assert!(!admins.permits(Role::Admin, 1));
        assert!(!admins.permits(Role::Player, u32::MAX));
        assert_eq!(
            format!("{:?}", RoleSet::ALL),
            r#"{"player", "spectator", "admin", "game_server"}"#
        );
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
    fn the_schema_hash_is_64_hex_digits() {
        let config = Config {
            schema_hash: [0xAB; 32],
            ..Config::default()
        };
        let text = toml::to_string(&config).unwrap();
        assert!(
            text.contains(&format!("schema_hash = \"{}\"", "ab".repeat(32))),
            "{text}"
        );
        let upper = format!("schema_hash = \"{}\"", "AB".repeat(32));
        assert_eq!(toml::from_str::<Config>(&upper).unwrap().schema_hash, [0xAB; 32]);
        for bad in [
            "ab".repeat(31),
            "ab".repeat(33),
            format!("{}a", "ab".repeat(31)),
            "zz".repeat(32),
        ] {
            assert!(
                toml::from_str::<Config>(&format!("schema_hash = \"{bad}\"")).is_err(),
                "{bad}"
            );
        }
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

    #[test]
    fn a_zero_tick_rate_or_heartbeat_interval_is_refused_by_its_path() {
        let config = Config {
            tick: TickConfig {
                tick_rate_hz: 0,
                ..TickConfig::default()
            },
            ..Config::default()
        };
        let error = config.validate().unwrap_err().0;
        assert!(error.starts_with("tick.tick_rate_hz"), "{error}");
        assert!(error.contains("1..=1000"), "{error}");

        let mut config = Config::default();
        config.heartbeat.interval_ms = 0;
        let error = config.validate().unwrap_err().0;
        assert_eq!(error, "heartbeat.interval_ms must be > 0");

        let mut config = Config::default();
        config.retry.multiplier = f64::NAN;
        let error = config.validate().unwrap_err();
        assert_eq!(error.0, "retry.multiplier must be finite and at least 1.0");
        assert_eq!(
            error.to_string(),
            "invalid config: retry.multiplier must be finite and at least 1.0"
        );
    }

    /// Configurations the tests, the simulator and the fuzz targets run endpoints with.
    #[test]
    fn configurations_in_use_validate() {
        let mut loopback = Config::default();
        loopback.heartbeat.interval_ms = 100;
        loopback.heartbeat.timeout_ms = 1_000;
        loopback.idle_timeout_ms = 5_000;
        let mut simulated = Config::default();
        simulated.retry.max_attempts = 1_000;
        simulated.retry.initial_backoff_ms = 1_000;
        simulated.retry.jitter_factor = 0.9;
        let mut tight = Config {
            max_sessions: 1,
            max_pending_handshakes: 1,
            retry_above_pending_handshakes: Some(usize::MAX),
            handshake_timeout_ms: 2_000,
            play_ticket_max_skew_ms: 30_000,
            version_min: 2,
            version_max: 3,
            oversize_unreliable: OversizePolicy::SendReliable,
            ..Config::default()
        };
        tight.tick.tick_rate_hz = 20;
        tight.tickets.max_skew_ms = 0;
        tight.fragment.max_fragments = 4;
        tight.fragment.max_message_bytes = 6_000;
        tight.fragment.memory_budget_bytes = 6_000;
        tight.limits.max_tracked_addrs = 2;
        tight.limits.handshake_burst_per_addr = 1;
        tight.limits.handshakes_per_addr_per_sec = 0.5;
        for config in [loopback, simulated, tight] {
            assert_eq!(config.validate(), Ok(()), "{config:?}");
        }
    }

    #[test]
    fn every_bad_value_is_refused_naming_its_path() {
        type Edit = fn(&mut Config);
        let cases: [(Edit, &str); 36] = [
            (|c| c.heartbeat.interval_ms = 0, "heartbeat.interval_ms"),
            (|c| c.heartbeat.timeout_ms = 500, "heartbeat.timeout_ms"),
            (|c| c.heartbeat.rtt_window = 0, "heartbeat.rtt_window"),
            (|c| c.heartbeat.initial_rtt_ms = 0, "heartbeat.initial_rtt_ms"),
            (
                |c| c.heartbeat.max_outstanding_pings = 0,
                "heartbeat.max_outstanding_pings",
            ),
            (|c| c.fragment.max_fragments = 0, "fragment.max_fragments"),
            (
                |c| c.fragment.reassembly_timeout_ms = 0,
                "fragment.reassembly_timeout_ms",
            ),
            (
                |c| c.fragment.memory_budget_bytes = 1_000,
                "fragment.memory_budget_bytes",
            ),
            (|c| c.tick.tick_rate_hz = 0, "tick.tick_rate_hz"),
            (|c| c.tick.tick_rate_hz = 1_001, "tick.tick_rate_hz"),
            (|c| c.tick.lateness_window_ticks = 0, "tick.lateness_window_ticks"),
            (
                |c| c.tick.missed_tick_policy = crate::tick::MissedTickPolicy::CatchUp { max_ticks: 0 },
                "tick.missed_tick_policy",
            ),
            (|c| c.tick_sync.tick_rate_hz = 0, "tick_sync.tick_rate_hz"),
            (
                |c| c.tick_sync.lead_margin_ticks = f64::NAN,
                "tick_sync.lead_margin_ticks",
            ),
            (|c| c.tick_sync.smoothing = f64::INFINITY, "tick_sync.smoothing"),
            (|c| c.tickets.max_skew_ms = u64::MAX, "tickets.max_skew_ms"),
            (
                |c| c.tickets.replay_cache_capacity = 0,
                "tickets.replay_cache_capacity",
            ),
            (|c| c.tickets.max_revoked_keys = 0, "tickets.max_revoked_keys"),
            (|c| c.retry.max_attempts = 0, "retry.max_attempts"),
            (|c| c.retry.initial_backoff_ms = 0, "retry.initial_backoff_ms"),
            (
                |c| c.retry.initial_backoff_ms = 10_000,
                "retry.initial_backoff_ms",
            ),
            (|c| c.retry.jitter_factor = f64::NAN, "retry.jitter_factor"),
            (|c| c.limits.bytes_per_sec = -1.0, "limits.bytes_per_sec"),
            (|c| c.limits.max_tracked_addrs = 0, "limits.max_tracked_addrs"),
            (
                |c| {
                    c.ack_frequency = Some(AckFrequency {
                        max_ack_delay_ms: 0,
                        ..AckFrequency::default()
                    })
                },
                "ack_frequency.max_ack_delay_ms",
            ),
            (|c| c.max_queued_datagrams = 0, "max_queued_datagrams"),
            (|c| c.transmit_chunk_bytes = 512, "transmit_chunk_bytes"),
            (|c| c.transmit_chunk_bytes = 2 << 20, "transmit_chunk_bytes"),
            (
                |c| c.max_queued_reliable_bytes = 8 << 20,
                "max_queued_reliable_bytes",
            ),
            (
                |c| (c.max_sessions, c.max_pending_handshakes) = (usize::MAX, 1),
                "max_sessions",
            ),
            (
                |c| {
                    c.oversize_unreliable = OversizePolicy::SendReliable;
                    c.channels = vec![Channel::unreliable(), Channel::sequenced()];
                },
                "oversize_unreliable",
            ),
            (
                |c| c.play_ticket_max_skew_ms = u64::MAX,
                "play_ticket_max_skew_ms",
            ),
            (|c| c.channels.clear(), "channels"),
            (
                |c| c.channels[2].rate_limit = Some(ChannelRateLimit::new(0.0, 10)),
                "channels[2].rate_limit.messages_per_second",
            ),
            (
                |c| c.channels[3].rate_limit = Some(ChannelRateLimit::new(f64::NAN, 10)),
                "channels[3].rate_limit.messages_per_second",
            ),
            (
                |c| c.channels[0].rate_limit = Some(ChannelRateLimit::new(30.0, 0)),
                "channels[0].rate_limit.burst",
            ),
        ];
        for (edit, path) in cases {
            let mut config = Config::default();
            edit(&mut config);
            let error = config.validate().unwrap_err().0;
            assert!(error.starts_with(path), "{error:?} should start with {path:?}");
        }
    }

    #[test]
    fn validation_never_panics_on_extreme_values() {
        let mut config = Config {
            max_sessions: usize::MAX,
            max_pending_handshakes: usize::MAX,
            max_reliable_message_bytes: usize::MAX,
            max_queued_reliable_bytes: usize::MAX,
            idle_timeout_ms: u64::MAX,
            ..Config::default()
        };
        config.heartbeat.interval_ms = u64::MAX;
        config.heartbeat.timeout_ms = u64::MAX;
        config.tick_sync.lead_margin_ticks = f64::NAN;
        config.retry.multiplier = f64::NEG_INFINITY;
        config.limits.messages_per_sec = f64::NAN;
        assert!(config.validate().is_err());
        for value in [
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -0.0,
            f64::MIN_POSITIVE,
            f64::MAX,
        ] {
            let mut config = Config::default();
            config.tick_sync.lead_margin_ticks = value;
            config.tick_sync.max_adjust_ratio = value;
            config.tick_sync.snap_threshold_ticks = value;
            config.tick_sync.smoothing = value;
            config.retry.multiplier = value;
            config.retry.jitter_factor = value;
            config.limits.handshakes_per_addr_per_sec = value;
            config.limits.messages_per_sec = value;
            config.limits.bytes_per_sec = value;
            let _ = config.validate();
        }
    }
}
