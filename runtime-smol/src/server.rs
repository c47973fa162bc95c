//! The async server: [`Server::bind`], then [`Server::next`] in a loop.

use std::fmt;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::Instant;

use bytes::Bytes;
use ed25519_dalek::SigningKey;
use tickwire_core::attest::{PcrSelection, TpmError, TpmProvider, MEASUREMENT_PCR};
use tickwire_core::tick::TickInfo;
use tickwire_core::vs::{GsAgent, GsConfig, GsEvent, GsIdentity, VsKeys};
use tickwire_core::TicketVerifier;
use tickwire_core::{
    ChannelId, Config, ConnHandle, Endpoint, EndpointError, Event, ReasonCode, Secrets, SendError, WallClock,
};

use crate::io::SmolEndpoint;

/// Why [`Server::bind`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BindError {
    /// The configuration is invalid or TLS could not be set up; fix the configuration.
    #[error("endpoint setup failed: {0}")]
    Endpoint(#[from] EndpointError),
    /// The address could not be bound (in use, not local, no permission).
    #[error("cannot bind: {0}")]
    Io(#[from] io::Error),
}

/// What [`Server::next`] yields.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerOutput {
    /// Something happened: a join, a message, a rejection or a disconnect.
    Event(Event),
    /// A simulation tick is due: run the game for it, then send snapshots.
    Tick(TickInfo),
    /// The verification-server agent reports something ([`Server::attest`]): the first and
    /// every renewed play ticket, admissions paused or resumed, sessions closed for
    /// starvation, refusals, receipts. Quote requests are answered inside, never reported.
    /// A [`GsEvent::FirstTicketTimeout`] or a refusal with `retrying: false` is fatal.
    Vs(GsEvent),
}

/// How a game server proves itself to its verification server ([`Server::attest`]).
pub struct Attestation {
    /// The agent's secrets (the jitter of its reconnections): fresh from the OS
    /// (`tickwire_udp::os_secrets()`), not the endpoint's.
    pub secrets: Secrets,
    /// The VS's UDP address.
    pub vs_addr: SocketAddr,
    /// The keys the VS signs play tickets with (clients must trust the same).
    pub vs_keys: VsKeys,
    /// The VS endpoint's Ed25519 identity, if pinned.
    pub vs_identity: Option<[u8; 32]>,
    /// Timeouts and intervals; its `gs_id` is replaced by the server's.
    pub config: GsConfig,
    /// SHA-256 of the binary, as extended into PCR 23.
    pub software_sha256: [u8; 32],
    /// SHA-256 of the configuration, as extended into PCR 23 after the binary.
    pub config_sha256: [u8; 32],
    /// The TPM that quotes PCR 23 (measured already: see [`tickwire_core::attest`]).
    pub tpm: Box<dyn TpmProvider + Send>,
}

impl fmt::Debug for Attestation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Attestation")
            .field("vs_addr", &self.vs_addr)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The agent and the TPM that answers its quote requests.
struct Attested {
    agent: GsAgent,
    tpm: Box<dyn TpmProvider + Send>,
    selection: PcrSelection,
}

impl fmt::Debug for Attested {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Attested")
            .field("agent", &self.agent)
            .finish_non_exhaustive()
    }
}

impl Attested {
    /// The agent's next event for the application, answering quote requests on the way.
    fn next_event(&mut self, endpoint: &mut Endpoint, now: Instant) -> Option<GsEvent> {
        while let Some(event) = self.agent.poll_event() {
            match event {
                GsEvent::NeedQuote { request, extra_data } => {
                    let quote = self.tpm.quote(&extra_data, &self.selection);
                    self.agent.handle_quote(endpoint, now, request, quote);
                }
                other => return Some(other),
            }
        }
        None
    }
}

/// A game server on one UDP socket, driven by [`Server::next`].
#[derive(Debug)]
pub struct Server {
    io: SmolEndpoint,
    gs_id: u64,
    vs: Option<Box<Attested>>,
}

impl Server {
    /// Binds `addr` and serves game server id `gs_id` (the audience join tickets must name)
    /// with identity `identity`; the tick scheduler starts now. The endpoint's secret values
    /// (Retry-token and reset keys, connection ids, nonces) derive from `secrets`: fresh from
    /// the OS (`tickwire_udp::os_secrets()`) for anything facing a real network. Register
    /// ticket issuer keys with [`tickets_mut`](Self::tickets_mut) before clients join.
    ///
    /// # Errors
    /// [`BindError`].
    pub fn bind(
        addr: SocketAddr,
        config: Config,
        secrets: Secrets,
        identity: SigningKey,
        gs_id: u64,
        wall: WallClock,
    ) -> Result<Self, BindError> {
        let endpoint = Endpoint::builder(config, secrets, identity, wall).server(gs_id, Instant::now())?;
        Ok(Self {
            io: SmolEndpoint::new(UdpSocket::bind(addr)?, endpoint)?,
            gs_id,
            vs: None,
        })
    }

    /// Attests this game server to a verification server (`PROTOCOL.md` §8): connects to it,
    /// answers its challenges and re-attestations with quotes from `attestation.tpm`, pauses
    /// admissions (`NOT_AUTHORISED`) until the first play ticket and from then on presents
    /// the current one to clients, closes sessions when starved of tickets, applies
    /// revocations. [`next`](Self::next) drives it and reports what it does as
    /// [`ServerOutput::Vs`]. To receipt transcripts, chain each applied input with
    /// [`vs_agent`](Self::vs_agent)`.record_input`.
    ///
    /// # Errors
    /// The TPM cannot give its attestation key.
    pub fn attest(&mut self, attestation: Attestation) -> Result<(), TpmError> {
        let Attestation {
            secrets,
            vs_addr,
            vs_keys,
            vs_identity,
            config,
            software_sha256,
            config_sha256,
            mut tpm,
        } = attestation;
        let endpoint = self.io.endpoint();
        let identity = GsIdentity {
            gs_key: endpoint.identity_key(),
            software_hash: software_sha256,
            config_hash: config_sha256,
            ak_public: tpm.ak_public()?,
        };
        let config = GsConfig {
            gs_id: self.gs_id,
            ..config
        };
        let mut agent = GsAgent::new(
            config,
            secrets,
            identity,
            vs_addr,
            vs_keys,
            vs_identity,
            endpoint.wall_clock(),
        );
        agent.start(endpoint, Instant::now());
        self.vs = Some(Box::new(Attested {
            agent,
            tpm,
            selection: PcrSelection::sha256(&[MEASUREMENT_PCR]).expect("PCR 23 exists"),
        }));
        self.io.flush();
        Ok(())
    }

    /// The verification-server agent, once [`attest`](Self::attest)ed: its status, held
    /// ticket, and `record_input` / `end_session` for transcripts.
    pub fn vs_agent(&mut self) -> Option<&mut GsAgent> {
        self.vs.as_mut().map(|vs| &mut vs.agent)
    }

    /// The next event or due tick, driving the socket and timers until there is one. Events
    /// come before ticks, as in the core's drive loop; commands issued through
    /// [`io`](Self::io) are flushed here.
    ///
    /// # Errors
    /// The socket failed; the server cannot continue on it.
    pub async fn next(&mut self) -> io::Result<ServerOutput> {
        loop {
            self.io.flush();
            let now = Instant::now();
            if let Some(vs) = &mut self.vs {
                if vs.agent.poll_timeout().is_some_and(|t| t <= now) {
                    vs.agent.handle_timeout(self.io.endpoint(), now);
                }
                if let Some(event) = vs.next_event(self.io.endpoint(), now) {
                    self.io.flush();
                    return Ok(ServerOutput::Vs(event));
                }
            }
            if let Some(event) = self.io.endpoint().poll_event() {
                if let Some(vs) = &mut self.vs {
                    if vs.agent.handle_endpoint_event(self.io.endpoint(), now, &event) {
                        continue; // the VS session's own
                    }
                }
                return Ok(ServerOutput::Event(event));
            }
            if let Some(tick) = self.io.endpoint().poll_tick(now) {
                // Revalidation at a tick may have closed sessions.
                self.io.flush();
                return Ok(ServerOutput::Tick(tick));
            }
            let agent_deadline = self.vs.as_ref().and_then(|vs| vs.agent.poll_timeout());
            self.io.drive(agent_deadline).await?;
        }
    }

    /// Queues `payload` to `conn` on `channel` and sends what the socket takes now.
    ///
    /// # Errors
    /// [`SendError`]; nothing is sent on error.
    pub fn send(
        &mut self,
        conn: ConnHandle,
        channel: ChannelId,
        payload: impl Into<Bytes>,
    ) -> Result<(), SendError> {
        self.io
            .endpoint()
            .send(Instant::now(), conn, channel, payload.into())?;
        self.io.flush();
        Ok(())
    }

    /// Closes `conn` with `reason` (e.g. `KICKED`) and `detail`; reported by
    /// [`next`](Self::next) as a local [`Event::Disconnected`]. Unknown handles are ignored.
    pub fn close(&mut self, conn: ConnHandle, reason: ReasonCode, detail: &str) {
        self.io.endpoint().close(Instant::now(), conn, reason, detail);
        self.io.flush();
    }

    /// Closes every session with `SERVER_SHUTDOWN` and `detail`, refuses new ones, and
    /// drives the socket until every connection has finished closing (QUIC's closing
    /// period, three probe timeouts), so that a lost close is repeated. Ticks due meanwhile
    /// are skipped; the `Disconnected` events stay queued for [`next`](Self::next).
    ///
    /// # Errors
    /// The socket failed; the remaining connections are abandoned.
    pub async fn shutdown(&mut self, detail: &str) -> io::Result<()> {
        if let Some(mut server) = self.io.endpoint().server_mut() {
            server.shutdown(Instant::now(), detail, None);
        }
        self.io.flush_all().await?;
        while self.io.endpoint_ref().connection_count() > 0 {
            while self.io.endpoint().poll_tick(Instant::now()).is_some() {}
            self.io.drive(None).await?;
        }
        Ok(())
    }

    /// The ticket verifier: add issuer keys, revoke tickets, clients or keys.
    pub fn tickets_mut(&mut self) -> &mut TicketVerifier {
        self.io
            .endpoint()
            .server_mut()
            .expect("a Server wraps a server endpoint")
            .tickets()
    }

    /// The socket's local address.
    ///
    /// # Errors
    /// As [`UdpSocket::local_addr`].
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.local_addr()
    }

    /// The endpoint underneath: statistics, sessions, revalidation and other commands.
    pub fn io(&mut self) -> &mut SmolEndpoint {
        &mut self.io
    }
}
