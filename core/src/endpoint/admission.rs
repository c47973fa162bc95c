//! Admission of new connections (`PROTOCOL.md` §4.5): Retry, per-source shares, the pending
//! table and its eviction order, all decided from counters rather than table scans.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Instant;

use super::{Endpoint, Entry};
use crate::connection::Conn;
use crate::handshake::Rejection;
use crate::limits::source_key;
use crate::shared::{ConnHandle, Transmit};
use crate::wire::ReasonCode;

/// Endpoint-level responses (version negotiation, stateless resets, refusals) held at most.
pub(super) const MAX_QUEUED_RESPONSES: usize = 256;

/// Connections per [`Phase`], and handshakes in progress per source address of inbound
/// connections, kept up to date after every operation on a connection so that admission
/// decisions never scan the connection table (O(1) per Initial under a flood).
#[derive(Debug, Default)]
pub(super) struct PhaseCounts {
    pub(super) handshaking: usize,
    pub(super) established: usize,
    /// Inbound handshakes in progress per source IP; addresses at zero are removed, so it
    /// holds at most `max_pending_handshakes` entries.
    handshaking_from: BTreeMap<IpAddr, usize>,
    /// Server connections that completed TLS and await their Hello, by when they started
    /// waiting: the eviction order when the pending table is full.
    awaiting_hello: BTreeSet<(Instant, ConnHandle)>,
}

/// Which of the endpoint's connection counters a connection belongs to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Phase {
    /// Neither: closed (or not counted yet).
    #[default]
    Uncounted,
    /// A handshake in progress.
    Handshaking,
    /// An established session.
    Established,
}

impl Phase {
    fn of(conn: &Conn) -> Self {
        if conn.is_established() {
            Phase::Established
        } else if conn.is_handshaking() {
            Phase::Handshaking
        } else {
            Phase::Uncounted
        }
    }
}

/// Where [`PhaseCounts`] counts one connection, kept in its [`Entry`].
#[derive(Debug, Default)]
pub(super) struct Counted {
    /// The counter it is in (kept equal to [`Phase::of`] after every operation).
    phase: Phase,
    /// Inbound connections: the source whose per-source count of handshakes in progress it
    /// is in while [`Phase::Handshaking`].
    source: Option<IpAddr>,
    /// When a server connection started waiting for its Hello, as the eviction index holds
    /// it (kept equal to [`Conn::awaiting_hello_since`]).
    hello: Option<Instant>,
}

impl PhaseCounts {
    fn slot(&mut self, phase: Phase) -> Option<&mut usize> {
        match phase {
            Phase::Uncounted => None,
            Phase::Handshaking => Some(&mut self.handshaking),
            Phase::Established => Some(&mut self.established),
        }
    }

    /// Inbound handshakes in progress from `ip`.
    pub(super) fn handshaking_from(&self, ip: IpAddr) -> usize {
        self.handshaking_from.get(&ip).copied().unwrap_or(0)
    }

    fn count_from(&mut self, counted: &Counted, phase: Phase, up: bool) {
        let Some(ip) = counted.source else {
            return;
        };
        if phase != Phase::Handshaking {
            return;
        }
        if up {
            *self.handshaking_from.entry(ip).or_insert(0) += 1;
        } else if let Some(n) = self.handshaking_from.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.handshaking_from.remove(&ip);
            }
        }
    }

    /// Moves `conn` to the counters of its current phase.
    #[inline]
    pub(super) fn sync(&mut self, handle: ConnHandle, conn: &Conn, counted: &mut Counted) {
        // After almost every operation: an established session, counted as one, still is
        // (and waits for no Hello).
        if counted.phase == Phase::Established && counted.hello.is_none() && conn.is_established() {
            return;
        }
        self.resync(handle, conn, counted);
    }

    /// [`PhaseCounts::sync`] for a connection that may have changed phase.
    fn resync(&mut self, handle: ConnHandle, conn: &Conn, counted: &mut Counted) {
        let waiting = conn.awaiting_hello_since();
        if waiting != counted.hello {
            if let Some(since) = counted.hello {
                self.awaiting_hello.remove(&(since, handle));
            }
            if let Some(since) = waiting {
                self.awaiting_hello.insert((since, handle));
            }
            counted.hello = waiting;
        }
        let phase = Phase::of(conn);
        if phase != counted.phase {
            if let Some(n) = self.slot(counted.phase) {
                *n -= 1;
            }
            self.count_from(counted, counted.phase, false);
            if let Some(n) = self.slot(phase) {
                *n += 1;
            }
            self.count_from(counted, phase, true);
            counted.phase = phase;
        }
    }

    /// Forgets a connection removed from the table.
    pub(super) fn remove(&mut self, handle: ConnHandle, counted: &Counted) {
        if let Some(since) = counted.hello {
            self.awaiting_hello.remove(&(since, handle));
        }
        if let Some(n) = self.slot(counted.phase) {
            *n -= 1;
        }
        self.count_from(counted, counted.phase, false);
    }
}

impl Endpoint {
    /// Admission of a new connection attempt, in order (`PROTOCOL.md` §4.5):
    /// 1. at `max_pending_handshakes` handshakes in progress, for an Initial that would be
    ///    admitted, first evict the connection that has waited longest for its Hello after
    ///    completing TLS, if any; then, still at the limit: a Retry for an unvalidated address
    ///    (when Retry is in use), else refuse (`CONNECTION_REFUSED`), as with
    ///    `max_sessions + max_pending_handshakes` connections in the table (draining ones
    ///    included);
    /// 2. from an address not yet validated, with at least `retry_threshold` handshakes in
    ///    progress, or when the handshake would only carry a fixed rejection (shutdown,
    ///    paused, full): answer with a Retry (RFC 9000 §8.1.2), keeping no state;
    /// 3. past the source's `max_pending_handshakes_per_addr`: a Retry if unvalidated, else
    ///    refuse;
    /// 4. without a handshake token for the source: a Retry if unvalidated, else a
    ///    `RATE_LIMITED` rejection handshake; the token is spent once QUIC decrypted the
    ///    Initial;
    /// 5. accept: the handshake runs, carrying the rejection if one was decided.
    ///
    /// Sources are IPv4 addresses and IPv6 /64 prefixes ([`source_key`]).
    /// O(log addresses): the pending and live counts are counters, not scans.
    ///
    /// Kept out of line: it builds a new connection, and inlined into
    /// [`Endpoint::handle_datagram`], its locals would enlarge the stack frame of every
    /// datagram's path.
    #[inline(never)]
    pub(super) fn handle_incoming(&mut self, now: Instant, incoming: quinn_proto::Incoming) {
        let validated = incoming.remote_address_validated();
        let ip = source_key(incoming.remote_address().ip());
        // Evict only for an Initial that will be admitted: not for one about to get a Retry
        // (an unvalidated source above the Retry threshold) or to be turned away for its
        // source's share, so that spoofed or excess Initials cannot churn the table.
        if self.server.is_some()
            && self.counts.handshaking >= self.config.max_pending_handshakes
            && (validated || self.counts.handshaking < self.config.retry_threshold())
            && self.counts.handshaking_from(ip) < self.config.max_pending_handshakes_per_addr
        {
            self.evict_silent(now);
        }
        let pending = self.counts.handshaking;
        let live = self.counts.established;
        let Some(server) = &mut self.server else {
            self.quic.ignore(incoming);
            self.stats.datagrams.accept_failed += 1;
            return;
        };
        let mut buf = Vec::new();
        // Draining and closing connections count too: a peer that opens and at once closes
        // connections frees its pending slot but not its table entry until draining ends.
        let table_full = self.conns.len() >= self.config.max_sessions + self.config.max_pending_handshakes;
        if pending >= self.config.max_pending_handshakes || table_full {
            if !validated && !table_full && pending >= self.config.retry_threshold() {
                // Stateless, and a real client comes back validated: then a silent
                // connection makes room for it (above).
                self.stats.datagrams.retries_rate_limited += 1;
                self.send_retry(incoming);
                return;
            }
            let transmit = self.quic.refuse(incoming, &mut buf);
            self.stats.connections_refused += 1;
            self.stats.datagrams.refused += 1;
            self.queue_response(transmit, buf);
            return;
        }
        self.stats.datagrams.initials_validated += u64::from(validated);
        let fixed = if let Some(rejection) = &server.shutdown {
            Some(rejection.clone())
        } else if let Some(rejection) = &server.paused {
            Some(rejection.clone())
        } else if live + pending >= self.config.max_sessions {
            Some(Rejection {
                reason: ReasonCode::SERVER_FULL,
                retry_after_ms: Some(self.config.server_full_retry_after_ms),
                detail: format!("{} sessions", self.config.max_sessions),
            })
        } else {
            None
        };
        if !validated && (fixed.is_some() || pending >= self.config.retry_threshold()) {
            self.stats.datagrams.retries_before_rejection += u64::from(fixed.is_some());
            self.send_retry(incoming);
            return;
        }
        // One address (or a few) must not hold the whole pending table: past its share, a
        // spoofable source must prove it receives at its address, and a proven one waits.
        if fixed.is_none() && self.counts.handshaking_from(ip) >= self.config.max_pending_handshakes_per_addr
        {
            if validated {
                let transmit = self.quic.refuse(incoming, &mut buf);
                self.stats.connections_refused += 1;
                self.stats.handshakes_refused_per_addr += 1;
                self.stats.datagrams.refused += 1;
                self.queue_response(transmit, buf);
            } else {
                self.stats.datagrams.retries_rate_limited += 1;
                self.send_retry(incoming);
            }
            return;
        }
        // The address's handshake token is only looked at here, and spent once QUIC has
        // decrypted the Initial (below): garbage from a player's address costs it nothing.
        // A rejection is still answered with a full handshake so the client learns the reason.
        let rejection = match fixed {
            Some(rejection) => Some(rejection),
            None => match server.addresses.peek(now, ip) {
                Ok(()) => None,
                Err(_) if !validated => {
                    self.stats.datagrams.retries_rate_limited += 1;
                    self.send_retry(incoming);
                    return;
                }
                Err(limited) => {
                    self.stats.handshakes_rate_limited += 1;
                    Some(Rejection {
                        reason: ReasonCode::RATE_LIMITED,
                        retry_after_ms: Some(limited.retry_after.as_millis().min(u32::MAX as u128) as u32),
                        detail: "too many handshakes from this address".into(),
                    })
                }
            },
        };
        match self.quic.accept(incoming, now, &mut buf, None) {
            Ok((ch, quic)) => {
                self.stats.datagrams.accepted += 1;
                if rejection.is_none() {
                    // Cannot fail: `peek` just saw the token, and nothing ran in between.
                    let _ = server.addresses.check(now, ip);
                }
                let handle = ConnHandle(ch.0);
                let mut entry = Entry::new(Conn::server(quic, now, &self.config, rejection), now);
                entry.counted.source = Some(ip);
                self.conns.insert(handle, entry);
                self.process_received(now, handle);
            }
            Err(err) => {
                self.stats.datagrams.accept_failed += 1;
                if let Some(transmit) = err.response {
                    self.queue_response(transmit, buf);
                }
            }
        }
    }

    /// Closes the connection that has waited longest for its Hello after completing TLS (a
    /// client sends its Hello with its TLS Finished, so such a connection is most likely a
    /// half-open attacker holding a slot), making room for a new handshake.
    fn evict_silent(&mut self, now: Instant) {
        let Some(&(_, victim)) = self.counts.awaiting_hello.first() else {
            return;
        };
        self.stats.handshakes_evicted_no_hello += 1;
        self.close_with(
            now,
            victim,
            Rejection::new(
                ReasonCode::HANDSHAKE_TIMEOUT,
                "no Hello after the TLS handshake; evicted for a new handshake",
            ),
        );
    }

    /// Answers `incoming` with a Retry: a stateless packet smaller than the Initial, carrying
    /// a token sealed with the endpoint's token key and bound to the client's address.
    fn send_retry(&mut self, incoming: quinn_proto::Incoming) {
        let mut buf = Vec::new();
        match self.quic.retry(incoming, &mut buf) {
            Ok(transmit) => {
                self.stats.datagrams.retries_sent += 1;
                self.queue_response(transmit, buf);
            }
            Err(err) => {
                // Unreachable: only an Initial without a Retry token is unvalidated, and those
                // may always be retried. Drop it rather than start a handshake.
                self.quic.ignore(err.into_incoming());
                self.stats.datagrams.accept_failed += 1;
            }
        }
    }

    /// Queues a stateless response (Retry, version negotiation, stateless reset, refusal)
    /// for [`Endpoint::poll_transmit`], dropping it past a bound. Out of line for the same
    /// reason as [`Endpoint::handle_incoming`].
    #[inline(never)]
    pub(super) fn queue_response(&mut self, transmit: quinn_proto::Transmit, buf: Vec<u8>) {
        if self.responses.len() >= MAX_QUEUED_RESPONSES {
            self.stats.responses_dropped += 1;
            return;
        }
        self.responses.push_back((Transmit::from_quic(&transmit), buf));
    }
}
