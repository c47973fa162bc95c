//! Server-only operations, through [`ServerMut`], a view that exists only on server endpoints.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Endpoint;
use crate::handshake::Rejection;
use crate::limits::AddressLimiter;
use crate::shared::ConnHandle;
use crate::tick::TickScheduler;
use crate::ticket::{TicketError, TicketVerifier};
use crate::tls::{CertResolver, TlsSetupError};
use crate::webtransport::{ServerCertificate, WebTransportConfig};
use crate::wire::ReasonCode;

/// What only a server endpoint holds.
#[derive(Debug)]
pub(super) struct ServerState {
    pub(super) tickets: TicketVerifier,
    pub(super) addresses: AddressLimiter,
    pub(super) scheduler: TickScheduler,
    pub(super) ticks_since_revalidation: u32,
    /// Set by [`ServerMut::shutdown`]: the rejection every later connection gets.
    pub(super) shutdown: Option<Rejection>,
    /// Set by [`ServerMut::pause_admissions`]: the rejection new connections get until resumed.
    pub(super) paused: Option<Rejection>,
    /// The play ticket presented in accepts ([`ServerMut::set_play_ticket`]).
    pub(super) play_ticket: Option<Vec<u8>>,
    /// Session recordings (`PROTOCOL.md` §11).
    pub(super) recorders: super::recorder::Recorders,
    /// WebTransport sessions, when accepted (`PROTOCOL.md` §12).
    pub(super) webtransport: Option<WebTransportServer>,
}

/// A server's WebTransport options and the certificate its TLS presents for `h3`.
#[derive(Debug)]
pub(super) struct WebTransportServer {
    pub(super) config: WebTransportConfig,
    pub(super) certs: Arc<CertResolver>,
    pub(super) provider: Arc<rustls::crypto::CryptoProvider>,
}

/// The server-only operations of an [`Endpoint`]: admission, shutdown, ticket revocation and
/// revalidation, the play ticket. Borrowed from [`Endpoint::server_mut`], which returns `None`
/// on a client endpoint — so a client has no server commands that would silently do nothing.
#[derive(Debug)]
pub struct ServerMut<'a> {
    pub(super) endpoint: &'a mut Endpoint,
}

impl Endpoint {
    /// The server-only operations, or `None` on a client endpoint.
    pub fn server_mut(&mut self) -> Option<ServerMut<'_>> {
        self.server.as_ref()?;
        Some(ServerMut { endpoint: self })
    }

    /// Whether this endpoint was built as a server.
    pub fn is_server(&self) -> bool {
        self.server.is_some()
    }

    /// Rechecks every live session's ticket (see [`ServerMut::revalidate`]).
    pub(super) fn revalidate_sessions(&mut self, now: Instant) {
        let Some(server) = &self.server else { return };
        let unix_ms = self.wall.unix_ms_at(now);
        let close_on_expiry = self.config.close_sessions_on_ticket_expiry;
        let failed: Vec<(ConnHandle, TicketError)> = self
            .conns
            .iter()
            .filter_map(|(handle, entry)| {
                let conn = &entry.conn;
                let ticket = conn.session.as_ref()?.ticket.as_ref()?;
                match server.tickets.check_live(ticket.key_id, &ticket.claims, unix_ms) {
                    Err(TicketError::Expired { .. }) if !close_on_expiry => None,
                    Err(e) if conn.is_established() => Some((handle, e)),
                    _ => None,
                }
            })
            .collect();
        for (handle, error) in failed {
            self.close_with(now, handle, Rejection::from(error));
        }
    }
}

fn retry_after_ms(retry_after: Option<Duration>) -> Option<u32> {
    retry_after.map(|d| d.as_millis().min(u32::MAX as u128) as u32)
}

impl<'a> ServerMut<'a> {
    /// Presents `certificate` to WebTransport connections from now on (rotation before it
    /// expires); sessions already open keep theirs. Publish its hash for clients to pin
    /// before they need it.
    ///
    /// # Errors
    /// [`TlsSetupError`] if the endpoint accepts no WebTransport sessions or the key is refused.
    pub fn set_webtransport_certificate(
        &mut self,
        certificate: &ServerCertificate,
    ) -> Result<(), TlsSetupError> {
        let wt = self
            .endpoint
            .server
            .as_ref()
            .and_then(|server| server.webtransport.as_ref())
            .ok_or_else(|| {
                TlsSetupError::Certificate("WebTransport is not enabled on this endpoint".into())
            })?;
        wt.certs.set_webtransport(&wt.provider, certificate)
    }

    /// SHA-256 of the certificate WebTransport connections are presented now, if enabled.
    pub fn webtransport_certificate_hash(&self) -> Option<[u8; 32]> {
        self.endpoint
            .server
            .as_ref()?
            .webtransport
            .as_ref()?
            .certs
            .webtransport_hash()
    }

    /// Command: stops admitting sessions and closes every connection with `SERVER_SHUTDOWN`,
    /// advising clients to retry after `retry_after` if given.
    pub fn shutdown(&mut self, now: Instant, detail: &str, retry_after: Option<Duration>) {
        let rejection = Rejection {
            reason: ReasonCode::SERVER_SHUTDOWN,
            retry_after_ms: retry_after_ms(retry_after),
            detail: detail.to_owned(),
        };
        if let Some(server) = self.endpoint.server.as_mut() {
            server.shutdown = Some(rejection.clone());
        }
        let handles: Vec<ConnHandle> = self.endpoint.conns.keys().collect();
        for handle in handles {
            self.endpoint.close_with(now, handle, rejection.clone());
        }
    }

    /// Command: refuses new connections with `reason` (and `retry_after`, if given) until
    /// [`ServerMut::resume_admissions`]; live sessions continue. A game server pauses while it
    /// holds no valid play ticket.
    pub fn pause_admissions(&mut self, reason: ReasonCode, detail: &str, retry_after: Option<Duration>) {
        if let Some(server) = self.endpoint.server.as_mut() {
            server.paused = Some(Rejection {
                reason,
                retry_after_ms: retry_after_ms(retry_after),
                detail: detail.to_owned(),
            });
        }
    }

    /// Command: admits new connections again after [`ServerMut::pause_admissions`].
    pub fn resume_admissions(&mut self) {
        if let Some(server) = self.endpoint.server.as_mut() {
            server.paused = None;
        }
    }

    /// Whether admissions are paused.
    pub fn admissions_paused(&self) -> bool {
        self.endpoint.server.as_ref().is_some_and(|s| s.paused.is_some())
    }

    /// Command: the play ticket (an encoded play-ticket envelope, `PROTOCOL.md` §8.5) to present
    /// in every later accept; `None` presents none.
    pub fn set_play_ticket(&mut self, ticket: Option<Vec<u8>>) {
        if let Some(server) = self.endpoint.server.as_mut() {
            server.play_ticket = ticket;
        }
    }

    /// Command: closes every session a client opened to this endpoint (handshaking or
    /// established; not sessions this endpoint opened, such as a game server's session to its
    /// verification server) with `reason`. Returns how many were closed.
    pub fn close_client_sessions(&mut self, now: Instant, reason: ReasonCode, detail: &str) -> usize {
        let handles: Vec<ConnHandle> = self
            .endpoint
            .conns
            .iter()
            .filter(|(_, entry)| entry.conn.is_inbound() && !entry.conn.is_closed())
            .map(|(handle, _)| handle)
            .collect();
        for &handle in &handles {
            self.endpoint.close(now, handle, reason, detail);
        }
        handles.len()
    }

    /// Established sessions clients opened to this endpoint.
    pub fn client_session_count(&self) -> usize {
        self.endpoint
            .conns
            .values()
            .filter(|entry| entry.conn.is_inbound() && entry.conn.is_established())
            .count()
    }

    /// Command: rechecks every live session's ticket now (revocation, and expiry if
    /// `close_sessions_on_ticket_expiry`), closing failures with the ticket reason. Runs
    /// automatically every `revalidate_every_ticks` ticks.
    pub fn revalidate(&mut self, now: Instant) {
        let now = self.endpoint.advance(now);
        self.endpoint.revalidate_sessions(now);
    }

    /// The join-ticket verifier: add issuer keys, revoke tickets, clients or keys. Takes the
    /// view (borrow another with [`Endpoint::server_mut`] for more commands).
    pub fn tickets(self) -> &'a mut TicketVerifier {
        // `ServerMut` exists only on server endpoints (see `Endpoint::server_mut`).
        &mut self
            .endpoint
            .server
            .as_mut()
            .expect("a ServerMut is only made for a server endpoint")
            .tickets
    }
}
