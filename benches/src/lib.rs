//! # tickwire-benches
//!
//! Fixtures for the criterion benchmarks in `benches/`: a server and N clients driven in
//! memory, in virtual time, with no sockets, once as tickwire endpoints ([`tw::TwNet`]) and
//! once as bare quinn-proto endpoints ([`raw::RawNet`]) with the same crypto provider (rustls
//! over *ring*), the same kind of certificate (self-signed Ed25519) and the same QUIC transport
//! settings. A benchmark times the same workload on both and puts them side by side in one
//! criterion group, as the functions `tickwire` and `raw_quinn`.
//!
//! Both nets move datagrams the same way: each turn, every endpoint's transmits are handed
//! straight to the endpoint they are addressed to, and virtual time only moves when no
//! endpoint has anything to send (to the earliest deadline: pacing, acknowledgement delay,
//! loss detection, heartbeats).

pub mod raw;
pub mod tw;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;

/// Port every endpoint listens on.
const PORT: u16 = 4_433;
/// First two octets of every client's IPv4 address (each client has its own address, as
/// players do: servers limit handshakes per address).
const CLIENT_NET: [u8; 2] = [10, 1];

/// Largest number of turns a net runs before it declares a livelock.
pub const MAX_TURNS: usize = 1_000_000;

/// How far time moves when no endpoint sent anything and every deadline says "now".
pub const STALL_STEP: Duration = Duration::from_millis(1);

/// The datagram send buffer both nets give every connection, in bytes: large enough that a
/// benchmark batch never overflows it (QUIC drops the oldest datagram then), so both sides
/// deliver every message.
pub const DATAGRAM_SEND_BUFFER_BYTES: usize = 4 << 20;

/// QUIC idle timeout both nets use (tickwire's default), so that idle connections behave alike.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(20);

/// Where a net's virtual time goes when no endpoint sent anything: the earliest of
/// `deadlines` after `now`. An endpoint may keep answering "now" after a turn that had nothing
/// to send (a wake-up with no work, harmless to a runtime that sleeps on a real clock); its own
/// deadline then hides behind that answer, so such answers are counted in `stalls` and skipped,
/// and when every deadline says "now" time moves by [`STALL_STEP`].
///
/// # Panics
/// If there is no deadline at all: nothing can happen any more.
fn next_time(now: Instant, deadlines: impl IntoIterator<Item = Instant>, stalls: &mut u64) -> Instant {
    let mut any = false;
    let mut later = None::<Instant>;
    for deadline in deadlines {
        any = true;
        if deadline > now {
            later = Some(later.map_or(deadline, |l| l.min(deadline)));
        } else {
            *stalls += 1;
        }
    }
    assert!(any, "the net is stuck: no endpoint has a deadline");
    later.unwrap_or(now + STALL_STEP)
}

/// What the workloads need of a net. [`tw::TwNet`] and [`raw::RawNet`] implement it, so each
/// workload ([`Net::batch`], [`Net::game_tick`]) is written once and runs the same on both.
pub trait Net: Sized {
    /// Number of clients.
    fn clients(&self) -> usize;
    /// Client `index` sends `payload` to the server.
    fn client_send(&mut self, index: usize, delivery: Delivery, payload: Bytes);
    /// The server sends `snapshot` to client `index`, unreliably.
    fn send_snapshot(&mut self, index: usize, snapshot: Bytes);
    /// Messages the server received so far; `message_len` is the size of each (a raw byte
    /// stream counts messages by it).
    fn received_by_server(&self, message_len: u64) -> u64;
    /// Messages the clients received so far.
    fn received_by_clients(&self) -> u64;
    /// Moves virtual time by `by` and runs turns until nothing more is sent.
    fn advance(&mut self, by: Duration);
    /// Runs turns until `done` holds.
    fn run_until(&mut self, done: impl FnMut(&Self) -> bool);

    /// One batch: every client sends `per_client` copies of `payload`, then the net runs until
    /// the server has them all.
    fn batch(&mut self, delivery: Delivery, payload: &Bytes, per_client: usize) {
        let len = payload.len().max(1) as u64;
        let target = self.received_by_server(len) + (self.clients() * per_client) as u64;
        for i in 0..self.clients() {
            for _ in 0..per_client {
                self.client_send(i, delivery, payload.clone());
            }
        }
        self.run_until(|net| net.received_by_server(len) >= target);
    }

    /// One tick of game traffic: time moves by `tick`, the server sends every client
    /// `snapshot` and every client sends the server `input` (both unreliable), and the net runs
    /// until all of them arrived.
    fn game_tick(&mut self, tick: Duration, snapshot: &Bytes, input: &Bytes) {
        self.advance(tick);
        let n = self.clients() as u64;
        let (to_server, to_clients) = (self.received_by_server(1) + n, self.received_by_clients() + n);
        for i in 0..self.clients() {
            self.send_snapshot(i, snapshot.clone());
            self.client_send(i, Delivery::Unreliable, input.clone());
        }
        self.run_until(|net| {
            net.received_by_server(1) >= to_server && net.received_by_clients() >= to_clients
        });
    }
}

/// Seed of every benchmark net's endpoint secrets and QUIC randomness.
pub const SEED: u64 = 1;

/// Client counts the per-message and game-traffic benchmarks measure.
pub const CLIENTS: [usize; 2] = [1, 100];

/// The per-message workloads: name, message size in bytes, and how the messages travel.
pub const MESSAGE_WORKLOADS: [(&str, usize, Delivery); 3] = [
    ("unreliable", 64, Delivery::Unreliable),
    ("unreliable", 1_000, Delivery::Unreliable),
    ("reliable", 64, Delivery::Reliable),
];

/// Size of a client input in the game traffic, in bytes.
pub const INPUT_BYTES: usize = 32;

/// Size of a server snapshot in the game traffic, in bytes.
pub const SNAPSHOT_BYTES: usize = 512;

/// One tick of the game traffic, at 60 Hz.
pub const TICK: Duration = Duration::from_nanos(16_666_667);

/// Messages each client sends per batch of the per-message benchmarks: enough to amortise a
/// turn with one client, few enough per client that a hundred stay within a congestion window
/// or two.
pub fn messages_per_client(clients: usize) -> usize {
    if clients == 1 {
        64
    } else {
        4
    }
}

/// Address of the server.
pub fn server_addr() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::new(10, 0, 0, 1), PORT))
}

/// Address of client `index`: `10.1.x.y`.
///
/// # Panics
/// If `index` is 65 536 or more.
pub fn client_addr(index: usize) -> SocketAddr {
    let [hi, lo] = u16::try_from(index)
        .expect("fewer than 65 536 clients")
        .to_be_bytes();
    let [a, b] = CLIENT_NET;
    SocketAddr::from((Ipv4Addr::new(a, b, hi, lo), PORT))
}

/// The client index an address belongs to, if it is a client's.
fn client_index(addr: SocketAddr) -> Option<usize> {
    match addr {
        SocketAddr::V4(v4) => {
            let [a, b, hi, lo] = v4.ip().octets();
            ([a, b] == CLIENT_NET).then_some(usize::from(u16::from_be_bytes([hi, lo])))
        }
        SocketAddr::V6(_) => None,
    }
}

/// One workload's message stream: what each client sends per batch.
#[derive(Debug, Clone, Copy)]
pub enum Delivery {
    /// Unreliable: a QUIC datagram per message (tickwire's unreliable channel).
    Unreliable,
    /// Reliable and ordered: one QUIC stream per client (tickwire's reliable game channel).
    Reliable,
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use tickwire_core::ChannelId;

    use super::raw::RawNet;
    use super::tw::TwNet;
    use super::Delivery;

    #[test]
    fn both_nets_connect_and_deliver_both_ways() {
        let payload = Bytes::from_static(&[7; 64]);
        let mut tw = TwNet::joined(2, 1);
        let mut raw = RawNet::connected(2, 1);
        for delivery in [Delivery::Unreliable, Delivery::Reliable] {
            tw.client_send(1, delivery, payload.clone());
            raw.client_send(1, delivery, payload.clone());
        }
        tw.server_send(0, ChannelId::LATEST, payload.clone());
        raw.server_send_datagram(0, payload);
        tw.run_until(|net| net.server_received == 2 && net.clients_received == 1);
        raw.run_until(|net| net.server_received(64) == 2 && net.clients_received() == 1);
    }
}
