//! Floods: raw nodes (see [`RawNode`]) that send random, mutated, replayed and truncated
//! datagrams from spoofed sources.
//!
//! A flood sends one datagram per wake-up straight to its target ([`Wire::Spoofed`]: the
//! attacker's own link is not modelled) and wakes again at the next one's time, so a flood of
//! 10⁶ datagrams never sits in the event queue. What the servers send back to its sources is
//! routed nowhere; the flood only counts it, for the amplification figures. Every byte comes
//! from the run's seed, and every datagram is hashed into the trace, so floods are as
//! reproducible as the rest of a run.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::Instant;

use ed25519_dalek::SigningKey;
use rand::{Rng, RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tickwire_core::{Config, ConnectOptions, Endpoint, JoinTicketClaims, Secrets, TicketIssuer};

use super::raw_node::{NewRawNode, RawNet, RawNode, RawTimer, Wire};
use super::{derive, server_addr};
use crate::clock::{NodeClock, START_UNIX_MS};
use crate::crypto::sim_crypto;
use crate::link::Nanos;
use crate::scenario::{Fault, FloodMix, Scenario, Target};

/// Real client Initials generated at the start of a run and replayed by floods.
const INITIALS_POOL: usize = 1024;
/// First spoofed source address: `172.16.0.0/12`, ports from 20 000.
const FIRST_SOURCE: u32 = 0xAC10_0000;

/// Kinds of flood datagram, in [`FloodMix`] order.
const KINDS: [&str; 4] = ["random", "mutated", "initials", "truncated"];

/// One scheduled flood: `total` datagrams spread evenly over `[start, end)`, from its
/// sources and to its targets round-robin.
#[derive(Debug)]
struct Flood {
    targets: Vec<SocketAddr>,
    start: Nanos,
    end: Nanos,
    total: u64,
    sent: u64,
    /// Its sources are the global spoofed sources `first_source..first_source + sources`
    /// (indices into `HostileMetrics::per_source`).
    first_source: usize,
    sources: usize,
    weights: [u32; 4],
    rng: ChaCha8Rng,
    /// Real client Initials, replayed by the `initials` kind (shared by every flood).
    pool: Arc<[Vec<u8>]>,
}

/// The address of global spoofed source `g`.
fn source_addr(g: usize) -> SocketAddr {
    let ip = Ipv4Addr::from(FIRST_SOURCE + g as u32);
    SocketAddr::V4(SocketAddrV4::new(ip, 20_000 + (g % 40_000) as u16))
}

/// Builds the floods of `scenario`, each sending from spoofed sources, with a pool of real
/// Initials from a throwaway client endpoint aimed at game server 0.
pub(super) fn build(
    scenario: &Scenario,
    seed: u64,
    epoch: Instant,
    issuer: &TicketIssuer,
) -> Result<Vec<NewRawNode>, tickwire_core::EndpointError> {
    let secs = |s: f64| (s * 1e9) as Nanos;
    if !scenario.faults.iter().any(|f| matches!(f, Fault::Flood { .. })) {
        return Ok(Vec::new());
    }
    let pool: Arc<[Vec<u8>]> = initials_pool(scenario, seed, epoch, server_addr(0), issuer)?.into();
    let mut floods = Vec::new();
    let mut first_source = 0;
    for (i, fault) in scenario.faults.iter().enumerate() {
        let Fault::Flood {
            target,
            at_s,
            until_s,
            datagrams,
            sources,
            mix,
        } = fault
        else {
            continue;
        };
        let targets = match *target {
            Target::Server(s) => vec![server_addr(s)],
            _ => (0..scenario.topology.servers).map(server_addr).collect(),
        };
        let FloodMix {
            random,
            mutated,
            initials,
            truncated,
        } = *mix;
        let flood = Flood {
            targets,
            start: secs(*at_s),
            end: secs(*until_s),
            total: *datagrams,
            sent: 0,
            first_source,
            sources: *sources as usize,
            weights: [random, mutated, initials, truncated],
            rng: ChaCha8Rng::from_seed(derive(seed, "flood", i as u64, 0)),
            pool: pool.clone(),
        };
        floods.push((Box::new(flood) as Box<dyn RawNode>, Wire::Spoofed));
        first_source += *sources as usize;
    }
    Ok(floods)
}

impl Flood {
    /// When datagram number `sent` (from 0) goes out.
    fn due(&self) -> Nanos {
        let span = u128::from(self.end.saturating_sub(self.start));
        self.start + (span * u128::from(self.sent) / u128::from(self.total)) as Nanos
    }

    /// Draws the kind of the next datagram (an index into [`KINDS`]) by the mix's weights.
    fn draw_kind(&mut self) -> usize {
        let total_weight: u32 = self.weights.iter().sum();
        let mut draw = self.rng.random_range(0..total_weight);
        self.weights
            .iter()
            .position(|&w| {
                if draw < w {
                    true
                } else {
                    draw -= w;
                    false
                }
            })
            .unwrap_or(0)
    }

    /// Draws one datagram of kind `kind`, mutating what it `overheard` (or, failing that,
    /// its pool of Initials).
    fn make(&mut self, kind: usize, overheard: Option<&VecDeque<Vec<u8>>>) -> Vec<u8> {
        let rng = &mut self.rng;
        let pool = &self.pool[..];
        let pick = |rng: &mut ChaCha8Rng, from: &[Vec<u8>]| -> Option<Vec<u8>> {
            (!from.is_empty()).then(|| from[rng.random_range(0..from.len())].clone())
        };
        let legit = |rng: &mut ChaCha8Rng| match overheard.filter(|recent| !recent.is_empty()) {
            Some(recent) => Some(recent[rng.random_range(0..recent.len())].clone()),
            None => pick(rng, pool),
        };
        match kind {
            1 => {
                let Some(mut bytes) = legit(rng) else {
                    return random_bytes(rng, 64);
                };
                match rng.random_range(0..3u8) {
                    0 => {
                        for _ in 0..rng.random_range(1..=8) {
                            let at = rng.random_range(0..bytes.len());
                            bytes[at] ^= 1 << rng.random_range(0..8);
                        }
                    }
                    1 => bytes.truncate(rng.random_range(1..bytes.len().max(2))),
                    _ => {
                        let extra = rng.random_range(1..=64);
                        bytes.extend(random_bytes(rng, extra));
                    }
                }
                bytes
            }
            2 => pick(rng, pool).unwrap_or_else(|| random_bytes(rng, 1_200)),
            3 => {
                if rng.random_bool(0.5) {
                    let Some(mut bytes) = legit(rng) else {
                        return random_bytes(rng, 16);
                    };
                    bytes.truncate(rng.random_range(1..bytes.len().max(2)));
                    bytes
                } else {
                    let Some(mut bytes) = pick(rng, pool) else {
                        return random_bytes(rng, 16);
                    };
                    if let Some(at) = initial_length_offset(&bytes) {
                        // The largest 2-byte varint: far past the end of the datagram.
                        bytes[at] = 0x7f;
                        bytes[at + 1] = 0xff;
                    }
                    bytes
                }
            }
            _ => {
                let len = rng.random_range(1..=1_500);
                random_bytes(rng, len)
            }
        }
    }
}

impl RawNode for Flood {
    fn addrs(&self) -> Vec<SocketAddr> {
        (self.first_source..self.first_source + self.sources)
            .map(source_addr)
            .collect()
    }

    fn overhears(&self) -> bool {
        true
    }

    /// Sends the next datagram, if it is due.
    fn handle_time(&mut self, net: &mut RawNet<'_>, _timer: RawTimer) {
        if self.sent >= self.total || self.due() > net.now() {
            return;
        }
        let kind = self.draw_kind();
        let source = self.first_source + (self.sent % self.sources as u64) as usize;
        let target = self.targets[(self.sent % self.targets.len() as u64) as usize];
        self.sent += 1;
        let bytes = self.make(kind, net.overheard());
        if let Some(h) = net.hostile() {
            h.report.flood_datagrams += 1;
            h.report.flood_bytes += bytes.len() as u64;
            *h.report.flood_by_kind.entry(KINDS[kind].into()).or_default() += 1;
            h.source(source).0 += bytes.len() as u64;
        }
        net.send(source_addr(source), target, bytes);
    }

    /// Counts what a server sent to one of its sources.
    fn handle_datagram(&mut self, net: &mut RawNet<'_>, _from: SocketAddr, to: SocketAddr, payload: Vec<u8>) {
        let SocketAddr::V4(to) = to else { return };
        let Some(g) = u32::from(*to.ip()).checked_sub(FIRST_SOURCE) else {
            return;
        };
        if let Some(h) = net.hostile() {
            h.source(g as usize).1 += payload.len() as u64;
        }
    }

    fn poll_timeout(&self, timer: RawTimer) -> Option<Nanos> {
        (timer == RawTimer::Schedule && self.sent < self.total).then(|| self.due())
    }
}

/// [`INITIALS_POOL`] real client Initials (each a fresh connection attempt, padded to 1 200
/// bytes) from one throwaway client endpoint with its own seed.
fn initials_pool(
    scenario: &Scenario,
    seed: u64,
    epoch: Instant,
    server: SocketAddr,
    issuer: &TicketIssuer,
) -> Result<Vec<Vec<u8>>, tickwire_core::EndpointError> {
    let config: Config = scenario.endpoint.clone();
    let secrets = Secrets::from_bytes(derive(seed, "flood/client", 0, 0));
    let identity = SigningKey::from_bytes(&derive(seed, "flood/identity", 0, 0));
    let clock = NodeClock::new(epoch);
    let crypto = sim_crypto(derive(seed, "flood/rustls", 0, 0), None);
    let mut client = Endpoint::builder(config, secrets, identity.clone(), clock.wall())
        .crypto(crypto)
        .client()?;
    let mut rng = ChaCha8Rng::from_seed(derive(seed, "flood/tickets", 0, 0));
    let now = clock.instant(0);
    let mut pool = Vec::with_capacity(INITIALS_POOL);
    let mut buf = Vec::new();
    for i in 0..INITIALS_POOL {
        let claims = JoinTicketClaims::builder(identity.verifying_key().to_bytes(), rng.random())
            .client_id(u64::MAX - i as u64)
            .audience(1)
            .valid_from(START_UNIX_MS)
            .lifetime_ms(60_000)
            .build();
        if client
            .connect(now, server, issuer.issue(&claims), ConnectOptions::default())
            .is_err()
        {
            continue;
        }
        if let Some(transmit) = client.poll_transmit(now, &mut buf) {
            pool.push(buf[..transmit.size].to_vec());
        }
        while client.poll_transmit(now, &mut buf).is_some() {}
    }
    Ok(pool)
}

/// Offset of the Length field of a client Initial without a token (RFC 9000 §17.2.2).
fn initial_length_offset(packet: &[u8]) -> Option<usize> {
    let dcid = usize::from(*packet.get(5)?);
    let scid = usize::from(*packet.get(6 + dcid)?);
    let at = 7 + dcid + scid + 1;
    (packet.len() > at + 2).then_some(at)
}

fn random_bytes(rng: &mut ChaCha8Rng, len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    rng.fill_bytes(&mut bytes);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_length_field_of_an_initial_is_found() {
        // 0xc0 | version | dcid len 8 | dcid | scid len 8 | scid | token len 0 | length…
        let mut packet = vec![0xc3, 0, 0, 0, 1, 8];
        packet.extend([0xaa; 8]);
        packet.push(8);
        packet.extend([0xbb; 8]);
        packet.push(0);
        packet.extend([0x44, 0x9e, 0, 0, 0]);
        assert_eq!(initial_length_offset(&packet), Some(24));
        assert_eq!(packet[24], 0x44);
        assert_eq!(initial_length_offset(&packet[..10]), None);
    }
}
