//! Channels: how a message travels.
//!
//! A channel id (0–31) names one of the kinds below; both peers use the same channel table
//! (it is part of the game's schema). Reliable channels map to one QUIC unidirectional stream
//! per direction, opened on first use and prefixed by the channel id; unreliable and sequenced
//! channels use QUIC datagrams (RFC 9221) with tickwire fragmentation for large messages.
//! Each table entry ([`Channel`]) also says who may send on it ([`Senders`]) and may carry its
//! own rate limit ([`ChannelRateLimit`]); the server enforces both on receive (`PROTOCOL.md`
//! §7.1).

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::wire::{Role, PERMISSION_ADMIN};

/// A channel id: index into [`crate::Config::channels`]; at most [`crate::wire::MAX_CHANNELS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ChannelId(pub u8);

impl ChannelId {
    /// Default table: reliable ordered game events (priority [`Priority::Game`]).
    pub const GAME: ChannelId = ChannelId(0);
    /// Default table: reliable ordered bulk transfers such as assets ([`Priority::Bulk`]).
    pub const BULK: ChannelId = ChannelId(1);
    /// Default table: unreliable, unordered messages.
    pub const UNRELIABLE: ChannelId = ChannelId(2);
    /// Default table: unreliable sequenced ("latest only"): inputs and snapshots.
    pub const LATEST: ChannelId = ChannelId(3);
}

/// Scheduling priority of a reliable channel's stream; higher is sent first. The control
/// stream (handshake) always outranks every channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// Large transfers that must not delay gameplay (assets, maps).
    Bulk,
    /// Gameplay events.
    Game,
}

impl Priority {
    /// The quinn-proto stream priority for this level (control uses `CONTROL_PRIORITY`).
    pub fn stream_priority(self) -> i32 {
        match self {
            Priority::Bulk => 0,
            Priority::Game => 1,
        }
    }
}

/// quinn-proto stream priority of the control stream.
pub(crate) const CONTROL_PRIORITY: i32 = 2;

/// How a channel delivers messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    /// Reliable and ordered within the channel (a QUIC stream).
    Reliable {
        /// Scheduling priority against other reliable channels.
        priority: Priority,
    },
    /// Unreliable and unordered (datagrams, fragmented when large).
    Unreliable,
    /// Unreliable; a message older than the newest delivered one on the channel is dropped.
    Sequenced,
}

impl ChannelKind {
    /// Whether messages on this channel ride QUIC datagrams.
    pub fn is_datagram(self) -> bool {
        !matches!(self, ChannelKind::Reliable { .. })
    }
}

/// The default channel table: see the constants on [`ChannelId`]. Every channel admits the
/// roles that play ([`Senders::players`]) and has no rate limit of its own.
pub(crate) fn default_channels() -> Vec<Channel> {
    vec![
        Channel::reliable(Priority::Game),
        Channel::reliable(Priority::Bulk),
        Channel::unreliable(),
        Channel::sequenced(),
    ]
}

/// One entry of the channel table ([`crate::Config::channels`]): how messages travel, who may
/// send them, at what rate, and whether they are compressed (`PROTOCOL.md` §7.1).
///
/// In TOML only `kind` is required:
///
/// ```toml
/// channels = [
///     { kind = { reliable = { priority = "game" } } },
///     { kind = "sequenced", senders = { roles = ["player"] }, rate_limit = { messages_per_second = 60.0, burst = 10 } },
///     { kind = { reliable = { priority = "game" } }, senders = { roles = ["admin"], permissions = 2147483648 } },
/// ]
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Channel {
    /// How messages travel.
    pub kind: ChannelKind,
    /// *Server*: which sessions may send on this channel; a message from any other is refused
    /// (not delivered, counted, reported as [`crate::Event::MessageRefused`]). A client checks
    /// its own session against it in [`crate::Endpoint::send`]. The server itself may always
    /// send. Default [`Senders::players`].
    #[serde(default)]
    pub senders: Senders,
    /// *Server*: a token bucket for the messages each session sends on this channel, on top of
    /// the per-connection `limits`. `None` (the default) = only the per-connection limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<ChannelRateLimit>,
    /// Messages on this channel are zstd-compressed when both peers negotiated the ZSTD
    /// capability (`PROTOCOL.md` §7.3). Default false.
    #[serde(default)]
    pub compress: bool,
}

impl Channel {
    /// A channel of `kind` with the defaults: players may send, no rate limit of its own, no
    /// compression.
    pub fn new(kind: ChannelKind) -> Self {
        Self {
            kind,
            senders: Senders::default(),
            rate_limit: None,
            compress: false,
        }
    }

    /// A reliable ordered channel at `priority` (see [`Channel::new`]).
    pub fn reliable(priority: Priority) -> Self {
        Self::new(ChannelKind::Reliable { priority })
    }

    /// An unreliable unordered channel (see [`Channel::new`]).
    pub fn unreliable() -> Self {
        Self::new(ChannelKind::Unreliable)
    }

    /// An unreliable sequenced channel (see [`Channel::new`]).
    pub fn sequenced() -> Self {
        Self::new(ChannelKind::Sequenced)
    }

    /// This channel with `senders`.
    #[must_use]
    pub fn with_senders(mut self, senders: Senders) -> Self {
        self.senders = senders;
        self
    }

    /// This channel with its own rate limit.
    #[must_use]
    pub fn with_rate_limit(mut self, rate_limit: ChannelRateLimit) -> Self {
        self.rate_limit = Some(rate_limit);
        self
    }

    /// This channel with `compress` set.
    #[must_use]
    pub fn with_compress(mut self, compress: bool) -> Self {
        self.compress = compress;
        self
    }

    /// Whether messages on this channel ride QUIC datagrams.
    pub fn is_datagram(&self) -> bool {
        self.kind.is_datagram()
    }

    /// Checks the rate limit's values.
    ///
    /// # Errors
    /// The first [`ChannelConfigError`] found; its message starts with the field's path
    /// inside the entry (`rate_limit.burst must be at least 1`).
    pub fn validate(&self) -> Result<(), ChannelConfigError> {
        if let Some(limit) = &self.rate_limit {
            let rate = limit.messages_per_second;
            if !(rate.is_finite() && rate >= 0.001) {
                return Err(ChannelConfigError::BadRate);
            }
            if limit.burst == 0 {
                return Err(ChannelConfigError::ZeroBurst);
            }
        }
        Ok(())
    }
}

impl From<ChannelKind> for Channel {
    fn from(kind: ChannelKind) -> Self {
        Self::new(kind)
    }
}

/// An invalid [`Channel`]; the message names the field inside the entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelConfigError {
    /// `rate_limit.messages_per_second` is below 0.001 (the token bucket's resolution),
    /// infinite or NaN.
    #[error("rate_limit.messages_per_second must be finite and at least 0.001")]
    BadRate,
    /// `rate_limit.burst` is 0, so nothing would ever be delivered.
    #[error("rate_limit.burst must be at least 1")]
    ZeroBurst,
}

/// A set of [`Role`]s, written in config files as a list of names: `["player", "spectator",
/// "admin", "game_server"]`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct RoleSet(u8);

impl RoleSet {
    /// No role.
    pub const EMPTY: RoleSet = RoleSet(0);
    /// [`Role::Player`].
    pub const PLAYER: RoleSet = RoleSet(1);
    /// [`Role::Spectator`].
    pub const SPECTATOR: RoleSet = RoleSet(1 << 1);
    /// [`Role::Admin`].
    pub const ADMIN: RoleSet = RoleSet(1 << 2);
    /// [`Role::GameServer`] (a game server on its verification server).
    pub const GAME_SERVER: RoleSet = RoleSet(1 << 3);
    /// Every role.
    pub const ALL: RoleSet = RoleSet(0b1111);

    const NAMES: [(RoleSet, &'static str); 4] = [
        (RoleSet::PLAYER, "player"),
        (RoleSet::SPECTATOR, "spectator"),
        (RoleSet::ADMIN, "admin"),
        (RoleSet::GAME_SERVER, "game_server"),
    ];

    /// The set holding only `role`.
    pub const fn of(role: Role) -> RoleSet {
        match role {
            Role::Player => RoleSet::PLAYER,
            Role::Spectator => RoleSet::SPECTATOR,
            Role::Admin => RoleSet::ADMIN,
            Role::GameServer => RoleSet::GAME_SERVER,
        }
    }

    /// Both sets' roles.
    pub const fn union(self, other: RoleSet) -> RoleSet {
        RoleSet(self.0 | other.0)
    }

    /// Whether `role` is in the set.
    pub const fn contains(self, role: Role) -> bool {
        self.0 & RoleSet::of(role).0 != 0
    }

    /// Whether the set holds no role.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl std::ops::BitOr for RoleSet {
    type Output = RoleSet;

    fn bitor(self, other: RoleSet) -> RoleSet {
        self.union(other)
    }
}

impl std::fmt::Debug for RoleSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names = RoleSet::NAMES
            .iter()
            .filter(|(set, _)| self.0 & set.0 != 0)
            .map(|(_, name)| name);
        f.debug_set().entries(names).finish()
    }
}

impl Serialize for RoleSet {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let names: Vec<&str> = RoleSet::NAMES
            .iter()
            .filter(|(set, _)| self.0 & set.0 != 0)
            .map(|(_, name)| *name)
            .collect();
        let mut seq = serializer.serialize_seq(Some(names.len()))?;
        for name in names {
            seq.serialize_element(name)?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for RoleSet {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = RoleSet;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a list of roles: \"player\", \"spectator\", \"admin\", \"game_server\"")
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<RoleSet, A::Error> {
                let mut set = RoleSet::EMPTY;
                while let Some(name) = seq.next_element::<std::borrow::Cow<'de, str>>()? {
                    let Some((role, _)) = RoleSet::NAMES.iter().find(|(_, n)| *n == name) else {
                        return Err(serde::de::Error::unknown_variant(
                            &name,
                            &["player", "spectator", "admin", "game_server"],
                        ));
                    };
                    set = set | *role;
                }
                Ok(set)
            }
        }
        deserializer.deserialize_seq(Visitor)
    }
}

/// Who may send on a channel: a session whose role is in `roles` and whose ticket grants every
/// bit of `permissions` (`PROTOCOL.md` §7.1). The server checks it for every message it
/// receives; the server's own sends are never checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Senders {
    /// Roles that may send. Default: player, admin and game server (every role but
    /// spectator).
    pub roles: RoleSet,
    /// Permission bits the session must all hold (the join ticket's `permissions`, granted in
    /// the Accept). Default 0: none required.
    pub permissions: u32,
}

impl Senders {
    /// Every role that plays (player, admin, game server); spectators are read-only. No
    /// permission bit required. The default.
    pub const fn players() -> Self {
        Self {
            roles: RoleSet(RoleSet::PLAYER.0 | RoleSet::ADMIN.0 | RoleSet::GAME_SERVER.0),
            permissions: 0,
        }
    }

    /// Every role, spectators included (chat, votes).
    pub const fn everyone() -> Self {
        Self {
            roles: RoleSet::ALL,
            permissions: 0,
        }
    }

    /// Privileged commands: [`Role::Admin`] sessions whose ticket carries
    /// [`PERMISSION_ADMIN`].
    pub const fn admins() -> Self {
        Self {
            roles: RoleSet::ADMIN,
            permissions: PERMISSION_ADMIN,
        }
    }

    /// No client may send: a channel only the server sends on (snapshots, announcements).
    pub const fn server_only() -> Self {
        Self {
            roles: RoleSet::EMPTY,
            permissions: 0,
        }
    }

    /// Whether a session of `role` granted `permissions` may send.
    pub const fn permits(&self, role: Role, permissions: u32) -> bool {
        self.roles.contains(role) && permissions & self.permissions == self.permissions
    }
}

impl Default for Senders {
    fn default() -> Self {
        Self::players()
    }
}

/// A channel's own token bucket: each session may send `burst` messages back to back and
/// `messages_per_second` sustained on the channel (`PROTOCOL.md` §7.1, §9).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelRateLimit {
    /// Sustained messages per second per session; at least 0.001.
    pub messages_per_second: f64,
    /// Messages a session may send back to back; at least 1.
    pub burst: u64,
    /// What a message over the limit does. Default [`Breach::Drop`].
    #[serde(default)]
    pub on_breach: Breach,
}

impl ChannelRateLimit {
    /// `messages_per_second` sustained, `burst` back to back, excess dropped.
    pub fn new(messages_per_second: f64, burst: u64) -> Self {
        Self {
            messages_per_second,
            burst,
            on_breach: Breach::Drop,
        }
    }

    /// This limit with `on_breach`.
    #[must_use]
    pub fn on_breach(mut self, on_breach: Breach) -> Self {
        self.on_breach = on_breach;
        self
    }
}

/// What a message over its channel's rate limit does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Breach {
    /// The message is refused (not delivered, counted, reported); the session goes on.
    #[default]
    Drop,
    /// The session is closed with `RATE_LIMITED` and a `retry_after_ms` (when the bucket
    /// would have held a token again).
    Close,
}

/// What to do with an unreliable message too large for the fragmentation limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OversizePolicy {
    /// Refuse it with [`crate::SendError::TooLarge`].
    #[default]
    Reject,
    /// Send it on the first reliable channel instead. That channel's `senders` judge it (on
    /// the server, `PROTOCOL.md` §7.1); a client that may not send there gets
    /// [`crate::SendError::NotPermitted`] naming it.
    SendReliable,
}

/// Per-message options for [`crate::Endpoint::send_with`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendOptions {
    /// Drop the message (counted in `messages_expired`) if it has not been handed to QUIC by
    /// this instant, e.g. a snapshot that is useless after its tick.
    pub deadline: Option<Instant>,
}
