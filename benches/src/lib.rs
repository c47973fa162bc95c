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

/// Port of the server in both nets.
const SERVER_PORT: u16 = 9_000;
/// Port of client 0; client `i` listens on `CLIENT_BASE_PORT + i`.
const CLIENT_BASE_PORT: u16 = 10_000;

/// Largest number of turns a net runs before it declares a livelock.
pub const MAX_TURNS: usize = 1_000_000;

/// The datagram send buffer both nets give every connection, in bytes: large enough that a
/// benchmark batch never overflows it (QUIC drops the oldest datagram then), so both sides
/// deliver every message.
pub const DATAGRAM_SEND_BUFFER_BYTES: usize = 4 << 20;

/// QUIC idle timeout both nets use (tickwire's default), so that idle connections behave alike.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(20);

/// Address of the server.
pub fn server_addr() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, SERVER_PORT))
}

/// Address of client `index`.
///
/// # Panics
/// If `index` does not fit the port range above [`CLIENT_BASE_PORT`].
pub fn client_addr(index: usize) -> SocketAddr {
    let offset = u16::try_from(index).expect("fewer than 55 000 clients");
    SocketAddr::from((Ipv4Addr::LOCALHOST, CLIENT_BASE_PORT + offset))
}

/// The client index an address belongs to, if it is a client's.
fn client_index(addr: SocketAddr) -> Option<usize> {
    addr.port().checked_sub(CLIENT_BASE_PORT).map(usize::from)
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
