//! The demo game's rules, apart from any endpoint: players named by a number, joined, moved by
//! inputs, simulated tick by tick, and the messages each must receive per tick. The runtime
//! ([`DemoServer`](crate::demo::DemoServer)) feeds it from endpoint events and sends what it
//! returns; `tickwire-replay play` feeds it from a recording and compares what it returns with
//! the recorded sends. It is deterministic: the same joins, leaves and inputs at the same ticks
//! give the same messages, byte for byte.

use std::collections::BTreeMap;

use bytes::Bytes;
use tickwire_core::ChannelId;

/// Bytes per player in a snapshot.
const PLAYER_BYTES: usize = 16;

#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Player {
    x: f32,
    y: f32,
    dir: u8,
}

/// One message the game sends at a tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// The player it is for.
    pub player: u64,
    /// The channel it goes on.
    pub channel: ChannelId,
    /// The message.
    pub payload: Bytes,
}

/// The demo game's state.
#[derive(Debug, Default, Clone)]
pub struct DemoGame {
    players: BTreeMap<u64, Player>,
    snapshot: Option<Bytes>,
}

/// Snapshot size in bytes for `tick`: small most of the time, one in ten ticks large enough to
/// need several datagrams (a map chunk, a burst of spawned entities).
fn snapshot_size(tick: u64, players: usize) -> usize {
    let base = 8 + players * PLAYER_BYTES;
    let extra = if (tick / 2).is_multiple_of(10) {
        3_000 + (tick * 7919 % 5_000) as usize
    } else {
        (tick * 104_729 % 600) as usize
    };
    base + extra
}

impl DemoGame {
    /// Adds `player` at the origin (no-op if present).
    pub fn join(&mut self, player: u64) {
        self.players.entry(player).or_default();
    }

    /// Removes `player`.
    pub fn leave(&mut self, player: u64) {
        self.players.remove(&player);
    }

    /// Applies one input of `player`: byte 8 is its direction (`PROTOCOL.md`-independent demo
    /// schema: `input{tick u64, dir u8}`); shorter inputs change nothing.
    pub fn input(&mut self, player: u64, payload: &[u8]) {
        if let (Some(state), Some(&dir)) = (self.players.get_mut(&player), payload.get(8)) {
            state.dir = dir;
        }
    }

    /// Players in the game.
    pub fn players(&self) -> impl Iterator<Item = u64> + '_ {
        self.players.keys().copied()
    }

    /// Advances every player by one tick (1/60 unit in its direction).
    pub fn simulate(&mut self) {
        for player in self.players.values_mut() {
            let (dx, dy) = match player.dir % 4 {
                0 => (1.0, 0.0),
                1 => (0.0, 1.0),
                2 => (-1.0, 0.0),
                _ => (0.0, -1.0),
            };
            player.x += dx / 60.0;
            player.y += dy / 60.0;
        }
    }

    /// Builds tick `tick`'s snapshot (even ticks only): the tick, then each player's id and
    /// position, padded to a size that is small most ticks and spans several datagrams one tick in ten.
    pub fn extract(&mut self, tick: u64) {
        if !tick.is_multiple_of(2) {
            self.snapshot = None;
            return;
        }
        let size = snapshot_size(tick, self.players.len());
        let mut out = Vec::with_capacity(size);
        out.extend_from_slice(&tick.to_be_bytes());
        for (id, player) in &self.players {
            out.extend_from_slice(&id.to_be_bytes());
            out.extend_from_slice(&player.x.to_be_bytes());
            out.extend_from_slice(&player.y.to_be_bytes());
        }
        out.resize(size, 0xA5);
        self.snapshot = Some(Bytes::from(out));
    }

    /// The messages of tick `tick`, in send order: per player (ascending), the snapshot on
    /// [`ChannelId::LATEST`] and, every 60th tick, a score line on [`ChannelId::GAME`].
    pub fn outgoing(&mut self, tick: u64) -> Vec<Outgoing> {
        let Some(snapshot) = self.snapshot.take() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for &player in self.players.keys() {
            out.push(Outgoing {
                player,
                channel: ChannelId::LATEST,
                payload: snapshot.clone(),
            });
            if tick.is_multiple_of(60) {
                out.push(Outgoing {
                    player,
                    channel: ChannelId::GAME,
                    payload: Bytes::from(format!("tick {} players {}", tick, self.players.len())),
                });
            }
        }
        out
    }
}
