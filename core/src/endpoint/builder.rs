//! [`EndpointBuilder`]: what every endpoint needs up front, options with defaults, and one
//! finishing call per role.

use std::sync::Arc;
use std::time::Instant;

use ed25519_dalek::{SigningKey, VerifyingKey};

use super::server::WebTransportServer;
use super::{transport_config, Endpoint, EndpointError, ServerState};
use crate::clock::WallClock;
use crate::config::Config;
use crate::limits::AddressLimiter;
use crate::secrets::Secrets;
use crate::tick::TickScheduler;
use crate::ticket::TicketVerifier;
use crate::tls::{self, AnchoredTime, CertResolver, CryptoOptions};
use crate::webtransport::{ServerCertificate, WebTransportConfig};

/// Builds an [`Endpoint`]; start with [`Endpoint::builder`], finish with
/// [`EndpointBuilder::client`] or [`EndpointBuilder::server`].
///
/// ```
/// use std::time::Instant;
/// use ed25519_dalek::SigningKey;
/// use tickwire_core::{Config, Endpoint, EndpointError, Secrets, TicketIssuer, WallClock};
///
/// /// A game server (id 42) trusting the lobby's ticket key, its tick schedule starting at `now`.
/// fn game_server(now: Instant, wall: WallClock, secrets: Secrets, identity: SigningKey, lobby: &TicketIssuer)
///     -> Result<Endpoint, EndpointError>
/// {
///     Endpoint::builder(Config::default(), secrets, identity, wall)
///         .trust_issuer(1, lobby.verifying_key())
///         .server(42, now)
/// }
/// ```
#[derive(Debug)]
#[must_use = "an EndpointBuilder does nothing until `client()` or `server()`"]
pub struct EndpointBuilder {
    config: Config,
    secrets: Secrets,
    identity: SigningKey,
    wall: WallClock,
    crypto: CryptoOptions,
    issuers: Vec<(u32, VerifyingKey)>,
    webtransport: Option<(WebTransportConfig, ServerCertificate)>,
}

impl EndpointBuilder {
    pub(super) fn new(config: Config, secrets: Secrets, identity: SigningKey, wall: WallClock) -> Self {
        Self {
            config,
            secrets,
            identity,
            wall,
            crypto: CryptoOptions::default(),
            issuers: Vec::new(),
            webtransport: None,
        }
    }

    /// Cryptography hooks: a seeded provider for reproducible simulations, a TLS key log.
    pub fn crypto(mut self, crypto: CryptoOptions) -> Self {
        self.crypto = crypto;
        self
    }

    /// (Server) accepts join tickets signed by `key` under `key_id` (`PROTOCOL.md` §4.6); more
    /// keys, and revocations, later through [`ServerMut::tickets`](super::ServerMut::tickets).
    /// Ignored by [`EndpointBuilder::client`].
    pub fn trust_issuer(mut self, key_id: u32, key: VerifyingKey) -> Self {
        self.issuers.push((key_id, key));
        self
    }

    /// (Server) also accepts WebTransport sessions from browsers on the same socket
    /// (`PROTOCOL.md` §12): ALPN `h3`, CONNECTs checked against `config`, TLS presenting
    /// `certificate` (rotate it with [`ServerMut::set_webtransport_certificate`](super::ServerMut::set_webtransport_certificate)).
    /// Ignored by [`EndpointBuilder::client`].
    pub fn webtransport(mut self, config: WebTransportConfig, certificate: ServerCertificate) -> Self {
        self.webtransport = Some((config, certificate));
        self
    }

    /// A client endpoint: it opens sessions with [`Endpoint::connect`].
    ///
    /// # Errors
    /// [`EndpointError`] if the config is invalid or TLS cannot be set up.
    pub fn client(self) -> Result<Endpoint, EndpointError> {
        self.config.validate()?;
        Endpoint::new(
            self.config,
            &self.secrets,
            self.identity,
            self.wall,
            &self.crypto,
            Arc::new(AnchoredTime::default()),
            None,
        )
    }

    /// A game-server endpoint for game server id `gs_id` (the audience join tickets must name),
    /// whose tick scheduler starts at `now`. It accepts sessions, and may also open them (a
    /// game server's session to its verification server).
    ///
    /// # Errors
    /// [`EndpointError`] if the config is invalid or TLS cannot be set up.
    pub fn server(self, gs_id: u64, now: Instant) -> Result<Endpoint, EndpointError> {
        let Self {
            config,
            secrets,
            identity,
            wall,
            crypto,
            issuers,
            webtransport,
        } = self;
        config.validate()?;
        let time_source = Arc::new(AnchoredTime::default());
        let webtransport = match webtransport {
            Some((config, certificate)) => {
                let provider = crypto.provider();
                let certs = Arc::new(CertResolver::default());
                certs.set_webtransport(&provider, &certificate)?;
                Some(WebTransportServer {
                    config,
                    certs,
                    provider,
                })
            }
            None => None,
        };
        let mut server_config = quinn_proto::ServerConfig::new(
            tls::server_crypto(
                &identity,
                &crypto,
                time_source.clone(),
                webtransport.as_ref().map(|wt| wt.certs.clone()),
            )?,
            tls::token_key(secrets.derive("quic/token-key")),
        );
        server_config
            .transport_config(transport_config(&config, true))
            .time_source(time_source.clone());
        let mut tickets = TicketVerifier::new(gs_id, config.tickets.clone());
        for (key_id, key) in issuers {
            tickets.add_key(key_id, key);
        }
        let server = ServerState {
            tickets,
            addresses: AddressLimiter::new(&config.limits),
            scheduler: TickScheduler::new(now, config.tick.clone()),
            ticks_since_revalidation: 0,
            shutdown: None,
            paused: None,
            play_ticket: None,
            recorders: Default::default(),
            webtransport,
        };
        let mut endpoint = Endpoint::new(
            config,
            &secrets,
            identity,
            wall,
            &crypto,
            time_source,
            Some(Arc::new(server_config)),
        )?;
        endpoint.server = Some(server);
        Ok(endpoint)
    }
}
