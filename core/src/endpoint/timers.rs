//! The endpoint's timer table: one armed deadline per connection, re-read only for connections
//! touched since, so that an idle connection costs nothing per turn.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::Instant;

use super::table::ConnTable;
use super::{Endpoint, Entry};
use crate::shared::ConnHandle;

/// Every connection's armed deadline in a min-heap, plus the connections whose deadline may
/// have moved since it was last read.
///
/// The heap is lazy: a connection whose deadline moves gets a new entry and its old one stays
/// behind, recognised as stale (it no longer equals the connection's [`TimerSlot::armed`]) and
/// dropped when it reaches the top; an entry already on top is moved in place instead. QUIC
/// moves a connection's idle deadline with every packet, so this trades an ordered-set removal
/// per packet for a heap push. Stale entries are bounded: the heap is rebuilt from the
/// connections when they outnumber them.
#[derive(Debug, Default)]
pub(super) struct Timers {
    /// `(deadline, connection)`, earliest first; an entry is live while it equals the
    /// connection's armed deadline. After [`Endpoint::refresh_timers`] the top is live.
    heap: BinaryHeap<Reverse<(Instant, ConnHandle)>>,
    /// Connections whose deadline may have moved since it was last read.
    dirty: Vec<ConnHandle>,
    /// Room for [`Endpoint::due_timers`], kept between calls.
    due: Vec<ConnHandle>,
}

/// The timer table's view of one connection, kept in its [`Entry`].
#[derive(Debug, Default)]
pub(super) struct TimerSlot {
    /// The connection's deadline as last read, if any (its live heap entry).
    armed: Option<Instant>,
    /// Whether the connection is in [`Timers::dirty`].
    dirty: bool,
}

impl Timers {
    /// Whether a connection's deadline may have moved since it was last read.
    #[inline]
    pub(super) fn any_dirty(&self) -> bool {
        !self.dirty.is_empty()
    }

    /// No later than the earliest connection deadline as last read: the heap's first entry.
    /// Every armed deadline has an entry, so stale entries can only make it earlier.
    #[inline]
    pub(super) fn earliest(&self) -> Option<Instant> {
        self.heap.peek().map(|&Reverse((deadline, _))| deadline)
    }

    /// Notes that `handle`'s deadline may have moved.
    pub(super) fn mark_dirty(&mut self, handle: ConnHandle, slot: &mut TimerSlot) {
        if !slot.dirty {
            slot.dirty = true;
            self.dirty.push(handle);
        }
    }
}

/// Whether a heap entry is still its connection's armed deadline.
fn live(conns: &ConnTable<Entry>, deadline: Instant, handle: ConnHandle) -> bool {
    conns
        .get(handle)
        .is_some_and(|entry| entry.timer.armed == Some(deadline))
}

impl Endpoint {
    /// Re-reads the deadline of every connection touched since the last call, then drops
    /// stale entries from the top of the heap, so that its first entry is the next deadline.
    pub(super) fn refresh_timers(&mut self) {
        while let Some(handle) = self.timers.dirty.pop() {
            let Some(Entry { conn, timer, .. }) = self.conns.get_mut(handle) else {
                continue;
            };
            timer.dirty = false;
            let deadline = conn.poll_timeout();
            if deadline == timer.armed {
                continue;
            }
            // The connection's live entry on top of the heap (always, with one connection) is
            // moved in place rather than left behind as a stale entry to pop later.
            let on_top = timer
                .armed
                .is_some_and(|old| self.timers.heap.peek() == Some(&Reverse((old, handle))));
            match (on_top, deadline) {
                (true, Some(new)) => {
                    if let Some(mut top) = self.timers.heap.peek_mut() {
                        *top = Reverse((new, handle));
                    }
                }
                (true, None) => {
                    self.timers.heap.pop();
                }
                (false, Some(new)) => self.timers.heap.push(Reverse((new, handle))),
                (false, None) => {}
            }
            timer.armed = deadline;
        }
        if self.timers.heap.len() > 2 * self.conns.len() + 64 {
            self.timers.heap = self
                .conns
                .iter()
                .filter_map(|(handle, entry)| entry.timer.armed.map(|d| Reverse((d, handle))))
                .collect();
        }
        while let Some(&Reverse((deadline, handle))) = self.timers.heap.peek() {
            if live(&self.conns, deadline, handle) {
                break;
            }
            self.timers.heap.pop();
        }
    }

    /// Takes the connections whose deadline is at or before `now` out of the table, in
    /// deadline order. The list's room is the table's: hand it back with
    /// [`Endpoint::return_due`].
    pub(super) fn due_timers(&mut self, now: Instant) -> Vec<ConnHandle> {
        self.refresh_timers();
        let mut due = std::mem::take(&mut self.timers.due);
        due.clear();
        while let Some(&Reverse((deadline, handle))) = self.timers.heap.peek() {
            if deadline > now {
                break;
            }
            self.timers.heap.pop();
            if let Some(entry) = self.conns.get_mut(handle) {
                if entry.timer.armed == Some(deadline) {
                    entry.timer.armed = None;
                    due.push(handle);
                }
            }
        }
        due
    }

    /// Gives back the list [`Endpoint::due_timers`] returned, for its room.
    pub(super) fn return_due(&mut self, due: Vec<ConnHandle>) {
        self.timers.due = due;
    }

    /// The earliest connection deadline; the latest `now` seen while a touched connection's
    /// deadline is unread (it may have moved earlier).
    pub(super) fn next_timer(&self) -> Option<Instant> {
        if self.timers.any_dirty() {
            return self.last_now;
        }
        self.timers.earliest()
    }

    /// Marks `handle` as possibly having output and a moved deadline.
    pub(super) fn touch(&mut self, handle: ConnHandle) {
        if let Some(entry) = self.conns.get_mut(handle) {
            touch_entry(&mut self.active, &mut self.timers, handle, entry);
        }
    }
}

/// [`Endpoint::touch`] for an entry already at hand.
pub(super) fn touch_entry(
    active: &mut VecDeque<ConnHandle>,
    timers: &mut Timers,
    handle: ConnHandle,
    entry: &mut Entry,
) {
    if !entry.tx_queued {
        entry.tx_queued = true;
        active.push_back(handle);
    }
    timers.mark_dirty(handle, &mut entry.timer);
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use crate::testing::{epoch, Net};
    use crate::{ChannelId, Endpoint};

    /// After a re-read, every connection's armed deadline is the one it reports now, and the
    /// heap's first entry is the earliest of them.
    fn assert_consistent(endpoint: &mut Endpoint) {
        endpoint.refresh_timers();
        let mut earliest = None;
        for (handle, entry) in endpoint.conns.iter() {
            if let Some(armed) = entry.timer.armed {
                earliest = Some(earliest.map_or((armed, handle), |e: (_, _)| e.min((armed, handle))));
            }
        }
        for entry in endpoint.conns.values_mut() {
            assert_eq!(entry.timer.armed, entry.conn.poll_timeout(), "an unread deadline");
        }
        assert_eq!(endpoint.timers.heap.peek().map(|top| top.0), earliest);
    }

    #[test]
    fn the_heap_top_is_the_earliest_deadline_through_random_sends_and_timeouts() {
        let mut net = Net::new(epoch(), 5);
        let server = net.add_server(Net::config());
        let clients: Vec<_> = (0..4).map(|_| net.add_client(Net::config())).collect();
        let conns: Vec<_> = clients.iter().map(|&c| net.join(c, server)).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        for _ in 0..400 {
            let i = rng.random_range(0..clients.len());
            let (client_conn, server_conn) = conns[i];
            let now = net.now;
            let payload = Bytes::from(vec![7; rng.random_range(1..2_000)]);
            let sent = if rng.random_bool(0.5) {
                net.node_mut(clients[i])
                    .endpoint
                    .send(now, client_conn, ChannelId::UNRELIABLE, payload)
            } else {
                net.node_mut(server)
                    .endpoint
                    .send(now, server_conn, ChannelId::GAME, payload)
            };
            sent.expect("the send is accepted");
            net.run_for(Duration::from_millis(rng.random_range(0..120)));
            for &node in clients.iter().chain([&server]) {
                assert_consistent(&mut net.node_mut(node).endpoint);
            }
        }
    }
}
