//! The endpoint's timer table: one armed deadline per connection, re-read only for connections
//! touched since, so that an idle connection costs nothing per turn.

use std::collections::BTreeSet;
use std::time::Instant;

use super::{Endpoint, Entry};
use crate::shared::ConnHandle;

/// Every connection's armed deadline, ordered, plus the connections whose deadline may have
/// moved since it was last read.
#[derive(Debug, Default)]
pub(super) struct Timers {
    /// `(deadline, connection)` for each connection with a deadline: exact (an entry leaves
    /// when its connection's deadline moves), so the first is the next.
    armed: BTreeSet<(Instant, ConnHandle)>,
    /// Connections whose deadline may have moved since it was last read.
    dirty: Vec<ConnHandle>,
}

/// The timer table's view of one connection, kept in its [`Entry`].
#[derive(Debug, Default)]
pub(super) struct TimerSlot {
    /// The deadline in [`Timers::armed`] for this connection, if any.
    armed: Option<Instant>,
    /// Whether the connection is in [`Timers::dirty`].
    dirty: bool,
}

impl Timers {
    /// Notes that `handle`'s deadline may have moved.
    pub(super) fn mark_dirty(&mut self, handle: ConnHandle, slot: &mut TimerSlot) {
        if !slot.dirty {
            slot.dirty = true;
            self.dirty.push(handle);
        }
    }

    /// Forgets a removed connection's deadline.
    pub(super) fn forget(&mut self, handle: ConnHandle, slot: &TimerSlot) {
        if let Some(deadline) = slot.armed {
            self.armed.remove(&(deadline, handle));
        }
    }
}

impl Endpoint {
    /// Re-reads the deadline of every connection touched since the last call.
    pub(super) fn refresh_timers(&mut self) {
        while let Some(handle) = self.timers.dirty.pop() {
            let Some(Entry { conn, timer, .. }) = self.conns.get_mut(&handle) else {
                continue;
            };
            timer.dirty = false;
            let deadline = conn.poll_timeout();
            if deadline != timer.armed {
                if let Some(old) = timer.armed {
                    self.timers.armed.remove(&(old, handle));
                }
                if let Some(new) = deadline {
                    self.timers.armed.insert((new, handle));
                }
                timer.armed = deadline;
            }
        }
    }

    /// Takes the connections whose deadline is at or before `now` out of the table, in
    /// deadline order.
    pub(super) fn due_timers(&mut self, now: Instant) -> Vec<ConnHandle> {
        self.refresh_timers();
        let mut due = Vec::new();
        while let Some(&(deadline, handle)) = self.timers.armed.first() {
            if deadline > now {
                break;
            }
            self.timers.armed.pop_first();
            if let Some(entry) = self.conns.get_mut(&handle) {
                entry.timer.armed = None;
            }
            due.push(handle);
        }
        due
    }

    /// The earliest connection deadline; the latest `now` seen while a touched connection's
    /// deadline is unread (it may have moved earlier).
    pub(super) fn next_timer(&self) -> Option<Instant> {
        if !self.timers.dirty.is_empty() {
            return self.last_now;
        }
        self.timers.armed.first().map(|&(deadline, _)| deadline)
    }

    /// Marks `handle` as possibly having output and a moved deadline.
    pub(super) fn touch(&mut self, handle: ConnHandle) {
        let Some(entry) = self.conns.get_mut(&handle) else {
            return;
        };
        if !entry.tx_queued {
            entry.tx_queued = true;
            self.active.push_back(handle);
        }
        self.timers.mark_dirty(handle, &mut entry.timer);
    }
}
