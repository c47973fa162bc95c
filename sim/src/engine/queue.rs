//! The event queue.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::What;
use crate::link::Nanos;

/// The event queue: a min-heap of small `(at, seq, slot)` keys over a slab of event bodies,
/// so that reordering the heap moves 24 bytes per entry, not whole datagrams. Ties in `at`
/// resolve by insertion sequence, so the order is total and reproducible.
#[derive(Debug, Default)]
pub(super) struct Queue {
    heap: BinaryHeap<Reverse<(Nanos, u64, u32)>>,
    slots: Vec<Option<What>>,
    free: Vec<u32>,
    seq: u64,
}

impl Queue {
    pub(super) fn push(&mut self, at: Nanos, what: What) {
        self.seq += 1;
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
        self.heap.push(Reverse((at, self.seq, slot)));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_leave_in_time_order_and_ties_in_insertion_order() {
        let mut queue = Queue::default();
        for (at, node) in [(30, 0), (10, 1), (20, 2), (10, 3), (10, 4)] {
            queue.push(at, What::Wake { node });
        }
        let mut order = Vec::new();
        while let Some((at, What::Wake { node })) = queue.pop() {
            order.push((at, node));
        }
        assert_eq!(order, [(10, 1), (10, 3), (10, 4), (20, 2), (30, 0)]);
        // Slots are reused, so the slab does not grow with the number of events ever queued.
        for round in 0..100 {
            queue.push(round, What::Wake { node: 0 });
            queue.pop();
        }
        assert_eq!(queue.len(), 0);
        assert!(queue.slots.len() <= 5);
    }
}
