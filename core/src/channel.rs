//! Channels: how a message travels.
//!
//! A channel id (0–31) names one of the kinds below; both peers use the same channel table
//! (it is part of the game's schema). Reliable channels map to one QUIC unidirectional stream
//! per direction, opened on first use and prefixed by the channel id; unreliable and sequenced
//! channels use QUIC datagrams (RFC 9221) with tickwire fragmentation for large messages.

use std::time::Instant;

use serde::{Deserialize, Serialize};

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

/// The default channel table: see the constants on [`ChannelId`].
pub(crate) fn default_channels() -> Vec<ChannelKind> {
    vec![
        ChannelKind::Reliable {
            priority: Priority::Game,
        },
        ChannelKind::Reliable {
            priority: Priority::Bulk,
        },
        ChannelKind::Unreliable,
        ChannelKind::Sequenced,
    ]
}

/// What to do with an unreliable message too large for the fragmentation limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OversizePolicy {
    /// Refuse it with [`crate::SendError::TooLarge`].
    #[default]
    Reject,
    /// Send it on the first reliable channel instead.
    SendReliable,
}

/// Per-message options for [`crate::Endpoint::send_with`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendOptions {
    /// Drop the message (counted in `messages_expired`) if it has not been handed to QUIC by
    /// this instant, e.g. a snapshot that is useless after its tick.
    pub deadline: Option<Instant>,
}
