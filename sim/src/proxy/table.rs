//! The proxy's two bounded structures: the NAT flow table and the timer heap of pending
//! deliveries. Both are plain data, tested without sockets.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap};
use std::net::SocketAddr;

use super::Direction;
use crate::link::{Link, Nanos};

/// One client's flow: its address, its upstream socket and a link per direction.
#[derive(Debug)]
pub(super) struct Flow<S> {
    pub(super) client: SocketAddr,
    /// Flow index: 0 for the first flow opened, never reused.
    pub(super) serial: u64,
    /// Latest of: a datagram received in either direction, a delivery scheduled, ns.
    pub(super) last_active: Nanos,
    /// The socket towards the upstream.
    pub(super) socket: S,
    pub(super) uplink: Link,
    pub(super) downlink: Link,
}

impl<S> Flow<S> {
    pub(super) fn link_mut(&mut self, direction: Direction) -> &mut Link {
        match direction {
            Direction::Uplink => &mut self.uplink,
            Direction::Downlink => &mut self.downlink,
        }
    }
}

/// The NAT table: client address → flow, in slots `0..max_flows` (a slot is the flow's poll
/// token). Freed slots are reused; flow indices (`serial`) are not, so a stale reference
/// `(slot, serial)` to a closed flow finds nothing.
#[derive(Debug)]
pub(super) struct FlowTable<S> {
    slots: Vec<Option<Flow<S>>>,
    /// Free slots below `slots.len()`, last freed on top.
    free: Vec<usize>,
    by_client: BTreeMap<SocketAddr, usize>,
    max_flows: usize,
    next_serial: u64,
}

impl<S> FlowTable<S> {
    pub(super) fn new(max_flows: usize) -> FlowTable<S> {
        FlowTable {
            slots: Vec::new(),
            free: Vec::new(),
            by_client: BTreeMap::new(),
            max_flows,
            next_serial: 0,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.by_client.len()
    }

    pub(super) fn is_full(&self) -> bool {
        self.len() >= self.max_flows
    }

    /// The index the next flow opened will get.
    pub(super) fn next_serial(&self) -> u64 {
        self.next_serial
    }

    pub(super) fn lookup(&self, client: SocketAddr) -> Option<usize> {
        self.by_client.get(&client).copied()
    }

    /// Opens a flow for `client` (which must not have one) with index
    /// [`next_serial`](Self::next_serial); returns its slot, or `None` if the table is full.
    pub(super) fn insert(
        &mut self,
        client: SocketAddr,
        now: Nanos,
        socket: S,
        uplink: Link,
        downlink: Link,
    ) -> Option<usize> {
        debug_assert!(self.lookup(client).is_none(), "one flow per client");
        if self.is_full() {
            return None;
        }
        let flow = Flow {
            client,
            serial: self.next_serial,
            last_active: now,
            socket,
            uplink,
            downlink,
        };
        self.next_serial += 1;
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot] = Some(flow);
                slot
            }
            None => {
                self.slots.push(Some(flow));
                self.slots.len() - 1
            }
        };
        self.by_client.insert(client, slot);
        Some(slot)
    }

    /// The slot the next flow opened will take, or `None` if the table is full.
    pub(super) fn vacant_slot(&self) -> Option<usize> {
        if self.is_full() {
            return None;
        }
        Some(self.free.last().copied().unwrap_or(self.slots.len()))
    }

    /// The flow in `slot`, whichever it is.
    pub(super) fn at(&self, slot: usize) -> Option<&Flow<S>> {
        self.slots.get(slot).and_then(Option::as_ref)
    }

    pub(super) fn get_mut(&mut self, slot: usize) -> Option<&mut Flow<S>> {
        self.slots.get_mut(slot).and_then(Option::as_mut)
    }

    /// The flow in `slot`, if it is still the flow with index `serial`.
    pub(super) fn get(&self, slot: usize, serial: u64) -> Option<&Flow<S>> {
        self.slots
            .get(slot)
            .and_then(Option::as_ref)
            .filter(|f| f.serial == serial)
    }

    pub(super) fn remove(&mut self, slot: usize) -> Option<Flow<S>> {
        let flow = self.slots.get_mut(slot)?.take()?;
        self.by_client.remove(&flow.client);
        self.free.push(slot);
        Some(flow)
    }

    /// Removes and returns, in slot order, every flow whose `last_active + idle_ns <= now`.
    pub(super) fn expire(&mut self, now: Nanos, idle_ns: Nanos) -> Vec<(usize, Flow<S>)> {
        let idle: Vec<usize> = (0..self.slots.len())
            .filter(|&slot| {
                self.slots[slot]
                    .as_ref()
                    .is_some_and(|f| f.last_active.saturating_add(idle_ns) <= now)
            })
            .collect();
        idle.into_iter()
            .filter_map(|slot| self.remove(slot).map(|f| (slot, f)))
            .collect()
    }

    /// Open flows in slot order.
    pub(super) fn iter(&self) -> impl Iterator<Item = &Flow<S>> {
        self.slots.iter().flatten()
    }
}

/// A delivery waiting for its time.
#[derive(Debug)]
pub(super) struct Pending {
    pub(super) at: Nanos,
    /// Insertion order: ties in `at` leave first-in first-out.
    pub(super) seq: u64,
    pub(super) direction: Direction,
    pub(super) slot: usize,
    pub(super) serial: u64,
    pub(super) payload: Vec<u8>,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Pending) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Pending {}

impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Pending) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Pending {
    fn cmp(&self, other: &Pending) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// Deliveries ordered by `(at, seq)`, bounded by count and payload bytes.
#[derive(Debug)]
pub(super) struct DeliveryQueue {
    heap: BinaryHeap<Reverse<Pending>>,
    next_seq: u64,
    bytes: usize,
    max_datagrams: usize,
    max_bytes: usize,
}

impl DeliveryQueue {
    pub(super) fn new(max_datagrams: usize, max_bytes: usize) -> DeliveryQueue {
        DeliveryQueue {
            heap: BinaryHeap::new(),
            next_seq: 0,
            bytes: 0,
            max_datagrams,
            max_bytes,
        }
    }

    /// Queues `payload` for `at`; `false` (and nothing queued) if that would exceed a bound.
    pub(super) fn push(
        &mut self,
        at: Nanos,
        direction: Direction,
        slot: usize,
        serial: u64,
        payload: Vec<u8>,
    ) -> bool {
        if self.heap.len() >= self.max_datagrams || self.bytes + payload.len() > self.max_bytes {
            return false;
        }
        self.bytes += payload.len();
        let seq = self.next_seq;
        self.next_seq += 1;
        self.heap.push(Reverse(Pending {
            at,
            seq,
            direction,
            slot,
            serial,
            payload,
        }));
        true
    }

    /// When the earliest delivery is due.
    pub(super) fn next_due(&self) -> Option<Nanos> {
        self.heap.peek().map(|Reverse(p)| p.at)
    }

    /// The earliest delivery if it is due at `now`.
    pub(super) fn pop_due(&mut self, now: Nanos) -> Option<Pending> {
        if self.next_due()? > now {
            return None;
        }
        let Reverse(p) = self.heap.pop()?;
        self.bytes -= p.payload.len();
        Some(p)
    }

    pub(super) fn len(&self) -> usize {
        self.heap.len()
    }

    /// Payload bytes waiting.
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::link::LinkSpec;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, port))
    }

    fn link(seed: u8) -> Link {
        Link::new(&LinkSpec::default(), [seed; 32])
    }

    fn table(max: usize) -> FlowTable<u16> {
        FlowTable::new(max)
    }

    fn open(t: &mut FlowTable<u16>, port: u16, now: Nanos) -> Option<usize> {
        t.insert(addr(port), now, port, link(1), link(2))
    }

    #[test]
    fn each_client_address_gets_its_own_flow_and_index() {
        let mut t = table(8);
        let a = open(&mut t, 1000, 0).unwrap();
        let b = open(&mut t, 1001, 0).unwrap();
        assert_ne!(a, b);
        assert_eq!(t.lookup(addr(1000)), Some(a));
        assert_eq!(t.lookup(addr(1001)), Some(b));
        assert_eq!(t.lookup(addr(1002)), None);
        assert_eq!(
            t.get(a, 0).map(|f| (f.client, f.socket)),
            Some((addr(1000), 1000))
        );
        assert_eq!(t.get(b, 1).map(|f| f.serial), Some(1));
        assert_eq!(t.len(), 2);
        assert_eq!(t.next_serial(), 2);
    }

    #[test]
    fn a_full_table_refuses_new_clients() {
        let mut t = table(2);
        open(&mut t, 1, 0).unwrap();
        open(&mut t, 2, 0).unwrap();
        assert!(t.is_full());
        assert_eq!(t.vacant_slot(), None);
        assert_eq!(open(&mut t, 3, 0), None);
        assert_eq!(t.lookup(addr(3)), None);
        assert_eq!(t.next_serial(), 2, "a refused client consumes no index");
    }

    #[test]
    fn idle_flows_expire_and_their_slot_is_reused_under_a_new_index() {
        let mut t = table(2);
        let a = open(&mut t, 1, 0).unwrap();
        let b = open(&mut t, 2, 0).unwrap();
        t.get_mut(b).unwrap().last_active = 5_000;
        assert!(t.expire(9_999, 10_000).is_empty(), "nothing idle yet");
        let gone = t.expire(10_000, 10_000);
        assert_eq!(
            gone.iter().map(|(slot, f)| (*slot, f.client)).collect::<Vec<_>>(),
            vec![(a, addr(1))]
        );
        assert_eq!(t.lookup(addr(1)), None);
        assert_eq!(t.len(), 1);

        assert_eq!(t.vacant_slot(), Some(a), "the freed slot is next");
        let c = open(&mut t, 3, 10_000).unwrap();
        assert_eq!(c, a, "the freed slot is reused");
        assert!(t.get(a, 0).is_none(), "a stale (slot, index) finds nothing");
        assert_eq!(t.get(c, 2).map(|f| f.client), Some(addr(3)));
        assert_eq!(t.expire(15_000, 10_000).len(), 1, "b idle since 5 000");
        assert_eq!(t.iter().map(|f| f.client).collect::<Vec<_>>(), vec![addr(3)]);
    }

    #[test]
    fn the_delivery_heap_releases_in_time_order_ties_first_in_first_out() {
        let mut q = DeliveryQueue::new(16, 1 << 20);
        for (at, tag) in [(30, 0u8), (10, 1), (20, 2), (10, 3), (20, 4)] {
            assert!(q.push(at, Direction::Uplink, 0, 0, vec![tag]));
        }
        assert_eq!(q.next_due(), Some(10));
        assert!(q.pop_due(9).is_none(), "nothing due before 10");
        let mut order = Vec::new();
        while let Some(p) = q.pop_due(25) {
            order.push((p.at, p.payload[0]));
        }
        assert_eq!(order, vec![(10, 1), (10, 3), (20, 2), (20, 4)]);
        assert_eq!((q.len(), q.bytes), (1, 1));
        assert_eq!(q.pop_due(u64::MAX).map(|p| p.at), Some(30));
        assert_eq!((q.len(), q.bytes, q.next_due()), (0, 0, None));
    }

    #[test]
    fn the_delivery_heap_is_bounded_by_count_and_bytes() {
        let mut q = DeliveryQueue::new(3, 100);
        assert!(q.push(1, Direction::Uplink, 0, 0, vec![0; 60]));
        assert!(
            !q.push(1, Direction::Uplink, 0, 0, vec![0; 41]),
            "60 + 41 > 100 bytes"
        );
        assert!(q.push(1, Direction::Uplink, 0, 0, vec![0; 40]));
        assert!(q.push(1, Direction::Downlink, 0, 0, Vec::new()));
        assert!(
            !q.push(1, Direction::Downlink, 0, 0, Vec::new()),
            "3 datagrams at most"
        );
        assert_eq!((q.len(), q.bytes), (3, 100));
        q.pop_due(1).unwrap();
        assert!(
            q.push(2, Direction::Uplink, 0, 0, vec![0; 60]),
            "room again after a delivery"
        );
    }
}
