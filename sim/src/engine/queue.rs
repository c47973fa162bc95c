//! The event queue, and the alarm that keeps a node's wake-ups in it.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::What;
use crate::link::Nanos;

/// An event's place in the queue: (time, origin, slot in the slab).
type Key = (Nanos, (u32, u64), u32);

/// The event queue: a min-heap of small `(at, origin, slot)` keys over a slab of event bodies,
/// so that reordering the heap moves 32 bytes per entry, not whole datagrams. Ties in `at`
/// resolve by origin — the actor that created the event and its count of events created so
/// far — so the order is total, reproducible, and independent of when an event reached the
/// queue (a datagram from another node is queued at a barrier, a node's own timer at once).
#[derive(Debug, Default)]
pub(super) struct Queue {
    heap: BinaryHeap<Reverse<Key>>,
    slots: Vec<Option<What>>,
    free: Vec<u32>,
}

impl Queue {
    /// Queues `what` at `at`; `origin` (creating actor, its sequence) must be unique.
    pub(super) fn push(&mut self, at: Nanos, origin: (u32, u64), what: What) {
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(what);
                slot
            }
            None => {
                self.slots.push(Some(what));
                (self.slots.len() - 1) as u32
            }
        };
        self.heap.push(Reverse((at, origin, slot)));
    }

    pub(super) fn peek_time(&self) -> Option<Nanos> {
        self.heap.peek().map(|Reverse((at, _, _))| *at)
    }

    pub(super) fn pop(&mut self) -> Option<(Nanos, What)> {
        let Reverse((at, _, slot)) = self.heap.pop()?;
        let what = self.slots[slot as usize]
            .take()
            .expect("a queued slot holds its event");
        self.free.push(slot);
        Some((at, what))
    }

    pub(super) fn len(&self) -> usize {
        self.heap.len()
    }
}

/// A node woken this many times at one virtual instant is pushed 1 µs ahead (livelock guard).
const MAX_WAKES_PER_INSTANT: u32 = 64;

/// A node's wake-up: the earliest deadline queued for it, and how often it woke at one instant
/// (the livelock guard's tally).
#[derive(Debug, Default)]
pub(super) struct Alarm {
    armed: Option<Nanos>,
    wakes_at_now: (Nanos, u32),
}

impl Alarm {
    /// When to queue a wake-up for deadline `at` (never before `now`; 1 µs ahead once the node
    /// woke [`MAX_WAKES_PER_INSTANT`] times at `now`); `None` if an earlier one is queued.
    pub(super) fn arm(&mut self, now: Nanos, at: Nanos) -> Option<Nanos> {
        let mut at = at.max(now);
        if at == now && self.wakes_at_now.0 == now && self.wakes_at_now.1 >= MAX_WAKES_PER_INSTANT {
            at = now + 1_000;
        }
        if self.armed.is_some_and(|armed| armed <= at) {
            return None;
        }
        self.armed = Some(at);
        Some(at)
    }

    /// A queued wake-up comes due at `now`: `false` if it was superseded by an earlier one.
    pub(super) fn fire(&mut self, now: Nanos) -> bool {
        if self.armed != Some(now) {
            return false;
        }
        self.armed = None;
        if self.wakes_at_now.0 == now {
            self.wakes_at_now.1 += 1;
        } else {
            self.wakes_at_now = (now, 1);
        }
        true
    }

    /// Forgets the queued wake-up (the node crashed): it is ignored when it comes due.
    pub(super) fn disarm(&mut self) {
        self.armed = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_leave_in_time_order_and_ties_in_origin_order() {
        let mut queue = Queue::default();
        for (at, node, origin) in [
            (30, 0, (0, 1)),
            (10, 1, (2, 1)),
            (20, 2, (0, 2)),
            (10, 3, (1, 7)),
            (10, 4, (1, 9)),
        ] {
            queue.push(at, origin, What::Wake { node });
        }
        let mut order = Vec::new();
        while let Some((at, What::Wake { node })) = queue.pop() {
            order.push((at, node));
        }
        assert_eq!(order, [(10, 3), (10, 4), (10, 1), (20, 2), (30, 0)]);
        // Slots are reused, so the slab does not grow with the number of events ever queued.
        for round in 0..100 {
            queue.push(round, (0, round), What::Wake { node: 0 });
            queue.pop();
        }
        assert_eq!(queue.len(), 0);
        assert!(queue.slots.len() <= 5);
    }

    #[test]
    fn an_alarm_keeps_the_earliest_wake_up_and_guards_against_livelock() {
        let mut alarm = Alarm::default();
        assert_eq!(alarm.arm(10, 50), Some(50));
        assert_eq!(
            alarm.arm(10, 60),
            None,
            "a later deadline waits for the armed one"
        );
        assert_eq!(
            alarm.arm(10, 5),
            Some(10),
            "never before now; an earlier one supersedes"
        );
        assert!(!alarm.fire(50), "superseded");
        assert!(alarm.fire(10));
        for _ in 1..MAX_WAKES_PER_INSTANT {
            assert_eq!(alarm.arm(10, 10), Some(10));
            assert!(alarm.fire(10));
        }
        assert_eq!(alarm.arm(10, 10), Some(1_010), "pushed 1 µs ahead");
        alarm.disarm();
        assert!(!alarm.fire(1_010));
    }
}
