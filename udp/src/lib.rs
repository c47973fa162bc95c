//! The UDP datapath shared by every tickwire runtime: [`quinn-udp`] for batched receive (GRO),
//! ECN and source-address metadata, feeding a [`Pump`] and draining it back to the socket.
//!
//! A runtime owns a non-blocking UDP socket (mio's, async-io's, std's) and calls
//! [`Datapath::receive`] when it is readable and [`Datapath::flush`] after every input. The
//! socket type only needs to expose its file descriptor (`AsFd`).
//!
//! [`os`] holds the rest of what a runtime takes from the operating system: fresh
//! [`Secrets`](tickwire_core::Secrets) for every state machine, and Ed25519 key files.
//!
//! [`quinn-udp`]: https://docs.rs/quinn-udp

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod os;
pub use os::{os_secrets, os_secrets_with_token_key_file, os_signing_key};

use std::io::{self, IoSliceMut};
use std::os::fd::AsFd;
use std::time::Instant;

use quinn_udp::{RecvMeta, UdpSockRef, UdpSocketState};
use tickwire_core::drive::Pump;
use tickwire_core::{Ecn, Transmit};

/// Largest UDP payload we accept per datagram, in bytes (the IPv4/IPv6 maximum).
const MAX_DATAGRAM: usize = 65_535;

/// Per-socket datagram state: quinn-udp's socket options plus the receive buffer.
#[derive(Debug)]
pub struct Datapath {
    state: UdpSocketState,
    buf: Vec<u8>,
}

/// What a [`Datapath::receive`] call did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Received {
    /// Datagrams handed to the pump (GRO batches count per segment).
    pub datagrams: usize,
    /// Whether the socket was drained (`WouldBlock` seen) rather than stopped at the budget.
    pub drained: bool,
}

impl Datapath {
    /// Configures `socket` (ECN, packet info, GRO where the OS has them).
    ///
    /// # Errors
    /// The OS refused the socket options.
    pub fn new(socket: &impl AsFd) -> io::Result<Self> {
        let state = UdpSocketState::new(UdpSockRef::from(socket))?;
        let buf = vec![0u8; MAX_DATAGRAM * state.gro_segments().max(1)];
        Ok(Self { state, buf })
    }

    /// Reads datagrams until the socket would block or `budget` datagrams were read (so one
    /// busy socket cannot starve the rest of a loop), handing each to `pump` at `now`.
    ///
    /// # Errors
    /// A socket error other than `WouldBlock`/`Interrupted`.
    pub fn receive(
        &mut self,
        socket: &impl AsFd,
        pump: &mut Pump,
        now: Instant,
        budget: usize,
    ) -> io::Result<Received> {
        let mut out = Received::default();
        while out.datagrams < budget {
            let mut meta = [RecvMeta::default()];
            let mut bufs = [IoSliceMut::new(&mut self.buf)];
            match self.state.recv(UdpSockRef::from(socket), &mut bufs, &mut meta) {
                Ok(_) => {
                    let meta = meta[0];
                    let ecn = meta.ecn.and_then(|e| Ecn::from_bits(e as u8));
                    let stride = meta.stride.max(1);
                    for segment in self.buf[..meta.len].chunks(stride) {
                        pump.handle_datagram(now, meta.addr, meta.dst_ip, ecn, segment);
                        out.datagrams += 1;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    out.drained = true;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Writes every pending transmit of `pump`; stops (keeping the transmit in the pump)
    /// when the socket would block. Returns the number of datagrams written.
    pub fn flush(&self, socket: &impl AsFd, pump: &mut Pump, now: Instant) -> usize {
        pump.flush(now, |transmit, contents| self.send(socket, transmit, contents))
    }

    /// Sends one transmit (for [`tickwire_core::drive::run_tick`]'s `send` argument).
    /// Transient OS errors other than `WouldBlock` are swallowed, as UDP loss would be.
    ///
    /// # Errors
    /// `WouldBlock` when the socket buffer is full: keep the transmit and retry later.
    pub fn send(&self, socket: &impl AsFd, transmit: &Transmit, contents: &[u8]) -> io::Result<()> {
        let udp = quinn_udp::Transmit {
            destination: transmit.destination,
            ecn: transmit
                .ecn
                .and_then(|e| quinn_udp::EcnCodepoint::from_bits(e.bits())),
            contents,
            segment_size: transmit.segment_size,
            src_ip: transmit.src_ip,
        };
        self.state.send(UdpSockRef::from(socket), &udp)
    }
}
