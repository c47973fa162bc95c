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
use std::time::Duration;

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
