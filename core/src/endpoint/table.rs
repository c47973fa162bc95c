//! The endpoint's connection table: a slab indexed by QUIC's connection index.
//!
//! QUIC (`quinn_proto::Endpoint`) hands out connection indices from a slab of its own, which
//! reuses freed slots, so they stay dense: below the peak number of connections held at once.
//! Indexing a vector by them makes every per-packet lookup one bounds check, where an ordered
//! map walked its nodes. Iteration is in index order, as the ordered map's was, so everything
//! derived from it (close order, revalidation, stats) stays deterministic.

use crate::shared::ConnHandle;

/// Connections (`T`, the endpoint's entry) by handle. A handle past the end or at an empty
/// slot is unknown.
///
/// Entries are boxed: one is about 11 KiB (most of it QUIC's connection state), so an empty
/// slot costs a pointer rather than a whole entry, and growing the table moves no connection.
#[derive(Debug)]
pub(super) struct ConnTable<T> {
    slots: Vec<Option<Box<T>>>,
    len: usize,
}

impl<T> Default for ConnTable<T> {
    fn default() -> Self {
        Self {
            slots: Vec::new(),
            len: 0,
        }
    }
}

impl<T> ConnTable<T> {
    /// Number of connections held.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn get(&self, handle: ConnHandle) -> Option<&T> {
        self.slots.get(handle.0)?.as_deref()
    }

    pub(super) fn get_mut(&mut self, handle: ConnHandle) -> Option<&mut T> {
        self.slots.get_mut(handle.0)?.as_deref_mut()
    }

    /// Puts `entry` at `handle`, in place of anything there (QUIC never hands out a live
    /// handle twice).
    pub(super) fn insert(&mut self, handle: ConnHandle, entry: T) {
        if handle.0 >= self.slots.len() {
            self.slots.resize_with(handle.0 + 1, || None);
        }
        if self.slots[handle.0].replace(Box::new(entry)).is_none() {
            self.len += 1;
        }
    }

    /// Takes the entry at `handle` out, boxed as it was held (an entry is large: moving it out
    /// of its box would copy it).
    pub(super) fn remove(&mut self, handle: ConnHandle) -> Option<Box<T>> {
        let old = self.slots.get_mut(handle.0)?.take();
        if old.is_some() {
            self.len -= 1;
            // Trailing empty slots are dropped and spare room is given back, so the table
            // shrinks after a peak.
            while self.slots.last().is_some_and(Option::is_none) {
                self.slots.pop();
            }
            if self.slots.capacity() > 4 * self.slots.len() + 16 {
                self.slots.shrink_to(2 * self.slots.len());
            }
        }
        old
    }

    /// `(handle, entry)` in handle order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (ConnHandle, &T)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, slot)| Some((ConnHandle(i), slot.as_deref()?)))
    }

    /// Handles in order.
    pub(super) fn keys(&self) -> impl Iterator<Item = ConnHandle> + '_ {
        self.iter().map(|(handle, _)| handle)
    }

    /// Entries in handle order.
    pub(super) fn values(&self) -> impl Iterator<Item = &T> {
        self.slots.iter().filter_map(Option::as_deref)
    }

    /// Entries in handle order, mutably.
    pub(super) fn values_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.slots.iter_mut().filter_map(Option::as_deref_mut)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_length_and_order_follow_inserts_and_removals() {
        let mut table = ConnTable::default();
        for i in [3, 0, 7] {
            table.insert(ConnHandle(i), i * 10);
        }
        assert_eq!(table.len(), 3);
        assert_eq!(table.get(ConnHandle(7)), Some(&70));
        assert_eq!(table.get(ConnHandle(5)), None, "an empty slot is unknown");
        assert_eq!(table.get(ConnHandle(99)), None, "past the end is unknown");
        assert_eq!(
            table.keys().collect::<Vec<_>>(),
            [ConnHandle(0), ConnHandle(3), ConnHandle(7)]
        );
        *table.get_mut(ConnHandle(3)).unwrap() += 1;
        assert_eq!(table.values().copied().collect::<Vec<_>>(), [0, 31, 70]);
        table.insert(ConnHandle(3), 33);
        assert_eq!(table.len(), 3, "replacing an entry does not count it twice");
        assert_eq!(table.remove(ConnHandle(3)).map(|entry| *entry), Some(33));
        assert_eq!(table.remove(ConnHandle(3)), None);
        assert_eq!(table.remove(ConnHandle(42)), None);
        assert_eq!(table.len(), 2);
        assert_eq!(
            table.iter().map(|(h, &v)| (h.0, v)).collect::<Vec<_>>(),
            [(0, 0), (7, 70)]
        );
    }

    #[test]
    fn the_table_shrinks_after_a_peak() {
        let mut table = ConnTable::default();
        for i in 0..1000 {
            table.insert(ConnHandle(i), i);
        }
        for i in (1..1000).rev() {
            assert_eq!(table.remove(ConnHandle(i)).map(|entry| *entry), Some(i));
        }
        assert_eq!(table.len(), 1);
        assert!(
            table.slots.capacity() <= 20,
            "{} slots kept for one entry",
            table.slots.capacity()
        );
        for v in table.values_mut() {
            *v = 5;
        }
        assert_eq!(table.get(ConnHandle(0)), Some(&5));
    }
}
