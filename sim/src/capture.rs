//! Packet capture: every simulated datagram in a pcap file stamped with virtual time, and the
//! TLS secrets of every simulated endpoint in an NSS key log beside it, so that the trace opens
//! decrypted in Wireshark.
//!
//! The pcap is the classic format (not pcapng) with nanosecond timestamps (magic `0xa1b23c4d`),
//! written little-endian whatever the host, link type `LINKTYPE_RAW` (101: every record starts
//! with an IPv4 or IPv6 header). The simulator only sees UDP payloads and socket addresses, so
//! [`PcapWriter`] synthesises the IP and UDP headers: TTL / hop limit 64, IPv4 Don't Fragment
//! set and identification 0, correct IPv4 header checksum (RFC 791 §3.1) and UDP checksum
//! (RFC 768). Headers are built by `etherparse`, the file by `pcap-file`.
//!
//! Virtual time zero is [`CAPTURE_EPOCH_UNIX_S`] (2026-01-01T00:00:00Z), the same instant the
//! core's test harness anchors its wall clock to; a datagram sent `at_ns` virtual nanoseconds
//! into the run is stamped `2026-01-01T00:00:00Z + at_ns`.
//!
//! To open a capture decrypted (the key log is [`keylog_path_for`] the pcap). Wireshark's QUIC
//! heuristic finds connections on any port from their Initial packets, which a capture of a
//! whole run contains, so no port hint (`-d udp.port==4433,quic`) is needed; checked with
//! tshark 4.0:
//!
//! ```sh
//! tshark -r trace.pcap -o tls.keylog_file:trace.pcap.keys -Y quic -O quic
//! ```
//!
//! In Wireshark: *Preferences → Protocols → TLS → (Pre)-Master-Secret log filename*.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use etherparse::PacketBuilder;
use pcap_file::pcap::{PcapHeader, PcapPacket};
use pcap_file::{DataLink, Endianness, PcapError, TsResolution};

/// Unix time, in seconds, of virtual time zero in captures: 2026-01-01T00:00:00Z.
pub const CAPTURE_EPOCH_UNIX_S: u64 = 1_767_225_600;

/// Largest record, in bytes (the pcap snap length): the largest IP packet. Records are never
/// truncated; a datagram that would not fit is refused.
pub const SNAPLEN_BYTES: u32 = 65_535;

/// TTL (IPv4) or hop limit (IPv6) written in synthesised headers.
const HOP_LIMIT: u8 = 64;

/// Writes every simulated datagram to a classic pcap; see the module docs for the format.
///
/// Records are written in call order; the simulator calls [`PcapWriter::write`] in event order,
/// so timestamps are non-decreasing. `W` is typically a `BufWriter<File>`.
#[derive(Debug)]
pub struct PcapWriter<W: Write> {
    pcap: pcap_file::pcap::PcapWriter<W>,
    /// Reused buffer for the IP packet of the record being written.
    packet: Vec<u8>,
    records: u64,
}

impl<W: Write> PcapWriter<W> {
    /// Writes the global header (nanosecond resolution, little-endian, `LINKTYPE_RAW`, snap
    /// length [`SNAPLEN_BYTES`]) to `out`.
    ///
    /// # Errors
    /// Any error writing to `out`.
    pub fn new(out: W) -> io::Result<Self> {
        let header = PcapHeader {
            version_major: 2,
            version_minor: 4,
            ts_correction: 0,
            ts_accuracy: 0,
            snaplen: SNAPLEN_BYTES,
            datalink: DataLink::RAW,
            ts_resolution: TsResolution::NanoSecond,
            endianness: Endianness::Little,
        };
        let pcap = pcap_file::pcap::PcapWriter::with_header(out, header).map_err(into_io)?;
        Ok(Self {
            pcap,
            packet: Vec::new(),
            records: 0,
        })
    }

    /// Records one UDP datagram carrying `payload` from `src` to `dst`, sent `at_ns` virtual
    /// nanoseconds after the start of the run.
    ///
    /// # Errors
    /// [`io::ErrorKind::InvalidInput`] if `src` and `dst` are of different address families
    /// or the IP packet would exceed [`SNAPLEN_BYTES`] (payloads up to 65 507 bytes over IPv4,
    /// 65 487 over IPv6); otherwise any error writing to the underlying writer.
    pub fn write(&mut self, at_ns: u64, src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> io::Result<()> {
        let builder = match (src, dst) {
            (SocketAddr::V4(s), SocketAddr::V4(d)) => {
                PacketBuilder::ipv4(s.ip().octets(), d.ip().octets(), HOP_LIMIT).udp(s.port(), d.port())
            }
            (SocketAddr::V6(s), SocketAddr::V6(d)) => {
                PacketBuilder::ipv6(s.ip().octets(), d.ip().octets(), HOP_LIMIT).udp(s.port(), d.port())
            }
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("pcap record from {src} to {dst}: address families differ"),
                ))
            }
        };
        let size = builder.size(payload.len());
        let orig_len = u32::try_from(size)
            .ok()
            .filter(|&len| len <= SNAPLEN_BYTES)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("pcap record of {size} bytes exceeds the snap length {SNAPLEN_BYTES}"),
                )
            })?;
        self.packet.clear();
        builder
            .write_to_vec(&mut self.packet, payload)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let timestamp = Duration::from_secs(CAPTURE_EPOCH_UNIX_S) + Duration::from_nanos(at_ns);
        self.pcap
            .write_packet(&PcapPacket::new(timestamp, orig_len, &self.packet))
            .map_err(into_io)?;
        self.records += 1;
        Ok(())
    }

    /// Records written so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Flushes and returns the underlying writer.
    ///
    /// # Errors
    /// Any error flushing the writer.
    pub fn finish(self) -> io::Result<W> {
        let mut out = self.pcap.into_writer();
        out.flush()?;
        Ok(out)
    }
}

fn into_io(e: PcapError) -> io::Error {
    match e {
        PcapError::IoError(e) => e,
        other => io::Error::new(io::ErrorKind::InvalidInput, other),
    }
}

/// A [`rustls::KeyLog`] that collects TLS secrets in memory as NSS key log lines
/// (`LABEL <client_random hex> <secret hex>`, lowercase hex, one per line; the format Wireshark
/// and tshark read, <https://firefox-source-docs.mozilla.org/security/nss/legacy/key_log_format/>).
///
/// One buffer is shared (as `Arc`) by every simulated endpoint; lines are kept in the order
/// rustls reports them, which the deterministic simulation fixes. Both ends of a connection
/// report the same secrets; a line already held is not added again. Give it to an endpoint as
/// `CryptoOptions { key_log: Some(buffer.clone()), .. }`.
#[derive(Debug, Default)]
pub struct KeyLogBuffer {
    lines: Mutex<Lines>,
}

/// The distinct lines, sorted.
#[derive(Debug, Default)]
struct Lines {
    seen: BTreeSet<String>,
}

impl KeyLogBuffer {
    /// An empty, shareable buffer.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn lines(&self) -> MutexGuard<'_, Lines> {
        // Nothing panics while the lock is held, so a poisoned lock still holds consistent lines.
        self.lines.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The key log so far: every line, each ending in `\n`, sorted (so that the log does not
    /// depend on which thread's handshake logged first).
    pub fn contents(&self) -> String {
        self.lines().seen.iter().map(String::as_str).collect()
    }

    /// Writes [`KeyLogBuffer::contents`] to `path` (see [`keylog_path_for`]), replacing it.
    ///
    /// # Errors
    /// Any error creating or writing the file.
    pub fn write_to(&self, path: &Path) -> io::Result<()> {
        std::fs::write(path, self.contents())
    }

    /// Distinct lines (secrets) logged so far.
    pub fn len(&self) -> usize {
        self.lines().seen.len()
    }

    /// Whether nothing has been logged.
    pub fn is_empty(&self) -> bool {
        self.lines().seen.is_empty()
    }
}

impl rustls::KeyLog for KeyLogBuffer {
    fn log(&self, label: &str, client_random: &[u8], secret: &[u8]) {
        let mut line = String::with_capacity(label.len() + 2 * (client_random.len() + secret.len()) + 3);
        line.push_str(label);
        line.push(' ');
        push_hex(&mut line, client_random);
        line.push(' ');
        push_hex(&mut line, secret);
        line.push('\n');
        self.lines().seen.insert(line);
    }
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    for byte in bytes {
        // Writing to a String cannot fail.
        let _ = write!(out, "{byte:02x}");
    }
}

/// The key log path written beside a pcap: the pcap's path with `.keys` appended
/// (`trace.pcap` → `trace.pcap.keys`).
pub fn keylog_path_for(pcap: &Path) -> PathBuf {
    let mut path = pcap.as_os_str().to_owned();
    path.push(".keys");
    PathBuf::from(path)
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use etherparse::{NetSlice, SlicedPacket, TransportSlice};
    use pcap_file::pcap::PcapReader;
    use rustls::KeyLog;

    use super::*;

    fn v4(last: u8, port: u16) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::new(10, 0, 0, last), port))
    }

    /// RFC 1071 one's-complement sum of 16-bit words; a header with a correct checksum sums to
    /// 0xffff.
    fn ones_complement_sum(bytes: &[u8]) -> u16 {
        let mut sum: u32 = bytes
            .chunks(2)
            .map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
            .sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        sum as u16
    }

    #[test]
    fn pcap_round_trips_with_nanosecond_virtual_timestamps() {
        let (a, b) = (v4(1, 4433), v4(2, 50_000));
        let mut pcap = PcapWriter::new(Vec::new()).unwrap();
        pcap.write(0, b, a, b"hello").unwrap();
        pcap.write(1_500_000_123, a, b, &[0xc3; 1200]).unwrap();
        pcap.write(1_500_000_123, a, b, &[]).unwrap();
        assert_eq!(pcap.records(), 3);
        let bytes = pcap.finish().unwrap();

        // Global header: nanosecond magic, little-endian, v2.4, snaplen, LINKTYPE_RAW (101).
        assert_eq!(&bytes[..4], &0xa1b2_3c4d_u32.to_le_bytes());
        assert_eq!(&bytes[4..8], &[2, 0, 4, 0]);
        assert_eq!(&bytes[16..20], &SNAPLEN_BYTES.to_le_bytes());
        assert_eq!(&bytes[20..24], &101u32.to_le_bytes());

        let mut reader = PcapReader::new(&bytes[..]).unwrap();
        let header = reader.header();
        assert_eq!(header.datalink, DataLink::RAW);
        assert_eq!(header.ts_resolution, TsResolution::NanoSecond);
        let expected = [
            (0u64, b, a, b"hello".to_vec()),
            (1_500_000_123, a, b, vec![0xc3; 1200]),
            (1_500_000_123, a, b, vec![]),
        ];
        for (at_ns, src, dst, payload) in expected {
            let packet = reader.next_packet().unwrap().unwrap();
            assert_eq!(
                packet.timestamp,
                Duration::from_secs(CAPTURE_EPOCH_UNIX_S) + Duration::from_nanos(at_ns)
            );
            assert_eq!(packet.data.len(), 20 + 8 + payload.len());
            assert_eq!(packet.orig_len as usize, packet.data.len());

            let ip_header = &packet.data[..20];
            assert_eq!(ip_header[0], 0x45, "IPv4, 20-byte header");
            assert_eq!(ip_header[8], HOP_LIMIT);
            assert_eq!(ip_header[9], 17, "protocol UDP");
            assert_eq!(
                u16::from_be_bytes([ip_header[2], ip_header[3]]) as usize,
                packet.data.len()
            );
            assert_eq!(ones_complement_sum(ip_header), 0xffff, "IPv4 header checksum");

            let sliced = SlicedPacket::from_ip(&packet.data).unwrap();
            let Some(NetSlice::Ipv4(ip)) = &sliced.net else {
                panic!("not IPv4: {:?}", sliced.net)
            };
            assert_eq!(std::net::IpAddr::V4(ip.header().source_addr()), src.ip());
            assert_eq!(std::net::IpAddr::V4(ip.header().destination_addr()), dst.ip());
            let Some(TransportSlice::Udp(udp)) = &sliced.transport else {
                panic!("not UDP")
            };
            assert_eq!(
                (udp.source_port(), udp.destination_port()),
                (src.port(), dst.port())
            );
            assert_eq!(udp.payload(), &payload[..]);
            let checksum = udp
                .to_header()
                .calc_checksum_ipv4(&ip.header().to_header(), udp.payload())
                .unwrap();
            assert_eq!(udp.checksum(), checksum, "UDP checksum");
        }
        assert!(reader.next_packet().is_none());
    }

    #[test]
    fn ipv6_datagrams_get_ipv6_headers() {
        let a = SocketAddr::from((Ipv6Addr::LOCALHOST, 4433));
        let b = SocketAddr::from((Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2), 9));
        let mut pcap = PcapWriter::new(Vec::new()).unwrap();
        pcap.write(7, a, b, b"six").unwrap();
        let bytes = pcap.finish().unwrap();
        let mut reader = PcapReader::new(&bytes[..]).unwrap();
        let packet = reader.next_packet().unwrap().unwrap();
        assert_eq!(packet.data.len(), 40 + 8 + 3);
        let sliced = SlicedPacket::from_ip(&packet.data).unwrap();
        let Some(NetSlice::Ipv6(ip)) = &sliced.net else {
            panic!("not IPv6")
        };
        assert_eq!(ip.header().source_addr(), Ipv6Addr::LOCALHOST);
        let Some(TransportSlice::Udp(udp)) = &sliced.transport else {
            panic!("not UDP")
        };
        assert_eq!(udp.payload(), b"six");
    }

    #[test]
    fn refuses_mixed_families_and_oversized_datagrams() {
        let mut pcap = PcapWriter::new(Vec::new()).unwrap();
        let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, 1));
        let err = pcap.write(0, v4(1, 1), v6, b"x").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        let err = pcap.write(0, v4(1, 1), v4(2, 2), &vec![0; 65_508]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        pcap.write(0, v4(1, 1), v4(2, 2), &vec![0; 65_507]).unwrap();
        assert_eq!(pcap.records(), 1);
        // Refused records leave nothing behind: the file is the header and one record.
        let bytes = pcap.finish().unwrap();
        assert_eq!(bytes.len(), 24 + 16 + 65_535);
    }

    #[test]
    fn key_log_lines_are_nss_format() {
        let log = KeyLogBuffer::new();
        assert!(log.is_empty());
        let shared: Arc<dyn KeyLog> = log.clone();
        shared.log("CLIENT_HANDSHAKE_TRAFFIC_SECRET", &[0xab; 32], &[0x01, 0xff]);
        shared.log("SERVER_TRAFFIC_SECRET_0", &[0x00, 0x10], &[0x7f]);
        // The peer in the same simulation reports the same secret: kept once.
        shared.log("CLIENT_HANDSHAKE_TRAFFIC_SECRET", &[0xab; 32], &[0x01, 0xff]);
        assert_eq!(log.len(), 2);
        assert_eq!(
            log.contents(),
            format!(
                "CLIENT_HANDSHAKE_TRAFFIC_SECRET {} 01ff\nSERVER_TRAFFIC_SECRET_0 0010 7f\n",
                "ab".repeat(32)
            )
        );

        let path = std::env::temp_dir().join(format!("tickwire-sim-keylog-{}.keys", std::process::id()));
        log.write_to(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), log.contents());
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn key_log_sits_beside_the_pcap() {
        assert_eq!(
            keylog_path_for(Path::new("out/trace.pcap")),
            PathBuf::from("out/trace.pcap.keys")
        );
        assert_eq!(keylog_path_for(Path::new("trace")), PathBuf::from("trace.keys"));
    }
}
