//! The one configuration file of `tickwire-gs` and `tickwire-vs` (`--config PATH`, TOML):
//! every setting the binary has, each also a command-line flag that overrides it. Unknown
//! fields are errors; `--print-config` prints the effective settings (defaults filled in) in
//! the same format and exits.
//!
//! ```toml
//! # tickwire-gs
//! listen = "0.0.0.0:4433"
//! admin = "127.0.0.1:9433"
//! issuer_key = "/etc/tickwire/issuer.pem.pub"
//! identity_key = "/etc/tickwire/gs.pem"
//! token_key_file = "/var/lib/tickwire/gs-token.key"
//! vs = "10.0.0.5:4500"
//! log_format = "json"
//! record = "/var/lib/tickwire/recordings"
//! webtransport_cert_json = "/var/lib/tickwire/webtransport-cert.json"
//!
//! [drain]
//! timeout_ms = 10000
//! retry_after_ms = 3000
//!
//! [endpoint]          # tickwire_core::Config
//! tick_rate_hz = 60
//!
//! [gs]                # tickwire_core::vs::GsConfig (with `vs`); its hash is measured
//! first_ticket_timeout_ms = 30000
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tickwire_core::vs::{GsConfig, VsConfig};
use tickwire_core::Config;

use crate::cli::{load_toml, overlay, overlay_some, UsageError};
use crate::demo::{demo_config, DEMO_GS_ID};
use crate::operator::{DrainSettings, LogFormat};
use crate::vs::vs_endpoint_config;

/// Everything `tickwire-gs` can be told.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GsSettings {
    /// UDP address to listen on. Default `127.0.0.1:4433`.
    pub listen: SocketAddr,
    /// Address of the admin HTTP endpoint (`/metrics`, `/health`, `/ready`); none by default.
    pub admin: Option<SocketAddr>,
    /// Seconds to run before shutting down gracefully; unset: until SIGTERM or SIGINT.
    pub seconds: Option<f64>,
    /// The game server's Ed25519 identity key (PKCS#8 PEM); unset: fresh from the OS.
    pub identity_key: Option<PathBuf>,
    /// The key of the endpoint's QUIC Retry and stateless-reset tokens (64 hex digits),
    /// created if missing: the same file at every start lets peers still sending to the last
    /// run's connections learn of the restart at their next packet; unset: fresh each start.
    pub token_key_file: Option<PathBuf>,
    /// The ticket issuer's (and verification server's) public key.
    pub issuer_key: Option<PathBuf>,
    /// INSECURE, demos only: an issuer key derived from this public number.
    pub insecure_demo_issuer_seed: Option<u64>,
    /// Game server id join tickets must name. Default 42.
    pub gs_id: u64,
    /// Write the run's report as JSON here at the end.
    pub json: Option<PathBuf>,
    /// Verification server to attest to; unset: admit on join tickets alone.
    pub vs: Option<SocketAddr>,
    /// Further verification servers to fail over to, in order (with `vs`).
    pub vs_failover: Vec<SocketAddr>,
    /// TPM for attestation: `simulated` (default with `vs`), `swtpm:host=H,port=P`,
    /// `device:/dev/tpmrm0`.
    pub tpm: Option<String>,
    /// SQLite file keeping consumed join-ticket ids across restarts; unset: memory only.
    pub store: Option<PathBuf>,
    /// Record every client session into this directory, one file per session
    /// (`PROTOCOL.md` §11); unset: no recording. The buffer per session is
    /// `endpoint.recording_buffer_bytes`.
    pub record: Option<PathBuf>,
    /// Keep a self-signed certificate for browser clients (WebTransport
    /// `serverCertificateHashes`) and write its hashes here as JSON, rewritten on each
    /// rotation; unset: none.
    pub webtransport_cert_json: Option<PathBuf>,
    /// Log format on stderr (`human` or `json`); levels from `RUST_LOG` (default `info`).
    pub log_format: LogFormat,
    /// How a SIGTERM or SIGINT drains.
    pub drain: DrainSettings,
    /// The endpoint's settings (`tickwire_core::Config`).
    pub endpoint: Config,
    /// Settings towards the verification server (`tickwire_core::vs::GsConfig`; with `vs`
    /// only). Their SHA-256 is part of the measured software.
    pub gs: Option<GsConfig>,
}

impl Default for GsSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 4433)),
            admin: None,
            seconds: None,
            identity_key: None,
            token_key_file: None,
            issuer_key: None,
            insecure_demo_issuer_seed: None,
            gs_id: DEMO_GS_ID,
            json: None,
            vs: None,
            vs_failover: Vec::new(),
            tpm: None,
            store: None,
            record: None,
            webtransport_cert_json: None,
            log_format: LogFormat::default(),
            drain: DrainSettings::default(),
            endpoint: demo_config(),
            gs: None,
        }
    }
}

/// Everything `tickwire-vs` can be told.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VsSettings {
    /// UDP address to listen on. Default `127.0.0.1:4500`.
    pub listen: SocketAddr,
    /// Address of the admin HTTP endpoint (`/metrics`, `/health`, `/ready`); none by default.
    pub admin: Option<SocketAddr>,
    /// Seconds to run before shutting down gracefully; unset: until SIGTERM or SIGINT.
    pub seconds: Option<f64>,
    /// The endpoint's Ed25519 identity key (PKCS#8 PEM); unset: fresh from the OS.
    pub identity_key: Option<PathBuf>,
    /// The key of the endpoint's QUIC Retry and stateless-reset tokens (64 hex digits),
    /// created if missing: the same file at every start lets game servers still sending to
    /// the last run's connections learn of the restart at their next packet; unset: fresh
    /// each start.
    pub token_key_file: Option<PathBuf>,
    /// The VS signing key (PKCS#8 PEM private key): play tickets, receipts, join tickets.
    pub issuer_key: Option<PathBuf>,
    /// INSECURE, demos only: a signing key derived from this public number.
    pub insecure_demo_issuer_seed: Option<u64>,
    /// Game-server binaries whose measurement (with the default GS settings) is allowed.
    pub allow_gs_binary: Vec<PathBuf>,
    /// Write the run's report as JSON here at the end.
    pub json: Option<PathBuf>,
    /// File holding the bearer token for operator commands on the admin endpoint; unset:
    /// no commands.
    pub admin_token_file: Option<PathBuf>,
    /// SQLite file, or `postgres://` URL (shared by several instances), keeping the verifier's
    /// promises across restarts; unset: memory only.
    pub store: Option<PathBuf>,
    /// Log format on stderr (`human` or `json`); levels from `RUST_LOG` (default `info`).
    pub log_format: LogFormat,
    /// How a SIGTERM or SIGINT drains.
    pub drain: DrainSettings,
    /// The endpoint's settings (`tickwire_core::Config`; `accept_game_servers` on).
    pub endpoint: Config,
    /// The verifier's settings (`tickwire_core::vs::VsConfig`); unset: the defaults, admitting
    /// unenrolled game servers.
    pub verifier: Option<VsConfig>,
}

impl Default for VsSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 4500)),
            admin: None,
            seconds: None,
            identity_key: None,
            token_key_file: None,
            issuer_key: None,
            insecure_demo_issuer_seed: None,
            allow_gs_binary: Vec::new(),
            json: None,
            admin_token_file: None,
            store: None,
            log_format: LogFormat::default(),
            drain: DrainSettings::default(),
            endpoint: vs_endpoint_config(),
            verifier: None,
        }
    }
}

/// The command-line options both servers share (each also a setting of the `--config` file,
/// which the option overrides).
#[derive(Debug, clap::Args)]
pub struct ServerArgs {
    /// The configuration file (TOML): every setting, as the options are named (`_` for `-`),
    /// plus `[endpoint]` (`tickwire_core::Config`), `[drain]` and the server's own table
    /// (`[gs]`, `[verifier]`).
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Print the effective configuration (file, options and defaults) as TOML and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Serve `/metrics`, `/health` and `/ready` over HTTP on this address.
    #[arg(long, value_name = "ADDR")]
    pub admin: Option<SocketAddr>,
    /// Seconds to run before shutting down gracefully (finite, above 0, at most a year);
    /// without it, until SIGTERM or SIGINT.
    #[arg(long, value_parser = crate::cli::parse_seconds, allow_negative_numbers = true)]
    pub seconds: Option<std::time::Duration>,
    /// The server's Ed25519 identity key (PKCS#8 PEM, from `keygen`). Without it, a fresh one
    /// from the OS each run (a game server enrolled at its VS needs a stable one).
    #[arg(long, value_name = "PATH")]
    pub identity_key: Option<PathBuf>,
    /// Keep the key of the QUIC Retry and stateless-reset tokens in this file (64 hex digits,
    /// created with mode 0600 if missing), so that peers still sending to the connections of
    /// the run before a restart are reset at once and reconnect, instead of waiting out their
    /// heartbeat timeout. Without it, a fresh key each run. Give each server its own file.
    #[arg(long, value_name = "PATH")]
    pub token_key_file: Option<PathBuf>,
    /// Write the run's report as JSON here at the end.
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
    /// Log format on stderr; levels from `RUST_LOG` (default `info`) [default: human].
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
    /// Longest wait for peers to leave after SIGTERM or SIGINT, in milliseconds
    /// [default: 5000].
    #[arg(long, value_name = "MS")]
    pub drain_timeout_ms: Option<u64>,
}

/// The settings both servers share, borrowed from [`GsSettings`] or [`VsSettings`].
#[derive(Debug)]
pub struct CommonSettings<'a> {
    admin: &'a mut Option<SocketAddr>,
    seconds: &'a mut Option<f64>,
    identity_key: &'a mut Option<PathBuf>,
    token_key_file: &'a mut Option<PathBuf>,
    json: &'a mut Option<PathBuf>,
    log_format: &'a mut LogFormat,
    drain: &'a mut DrainSettings,
}

impl ServerArgs {
    /// Overrides `settings` with the options given.
    pub fn overlay(&self, settings: CommonSettings<'_>) {
        overlay_some(settings.admin, self.admin);
        overlay_some(settings.seconds, self.seconds.map(|d| d.as_secs_f64()));
        overlay_some(settings.identity_key, self.identity_key.clone());
        overlay_some(settings.token_key_file, self.token_key_file.clone());
        overlay_some(settings.json, self.json.clone());
        overlay(settings.log_format, self.log_format);
        overlay(&mut settings.drain.timeout_ms, self.drain_timeout_ms);
    }
}

impl GsSettings {
    /// The settings it shares with the verification server's.
    pub fn common(&mut self) -> CommonSettings<'_> {
        CommonSettings {
            admin: &mut self.admin,
            seconds: &mut self.seconds,
            identity_key: &mut self.identity_key,
            token_key_file: &mut self.token_key_file,
            json: &mut self.json,
            log_format: &mut self.log_format,
            drain: &mut self.drain,
        }
    }
}

impl VsSettings {
    /// The settings it shares with the game server's.
    pub fn common(&mut self) -> CommonSettings<'_> {
        CommonSettings {
            admin: &mut self.admin,
            seconds: &mut self.seconds,
            identity_key: &mut self.identity_key,
            token_key_file: &mut self.token_key_file,
            json: &mut self.json,
            log_format: &mut self.log_format,
            drain: &mut self.drain,
        }
    }
}

/// The settings in `path` (`--config`), or the defaults without one; the endpoint settings
/// are validated.
///
/// # Errors
/// The file cannot be read, is not TOML, has unknown fields, or fails validation.
pub fn load_settings<T>(path: Option<&Path>, endpoint: impl Fn(&T) -> &Config) -> Result<T, UsageError>
where
    T: Default + serde::de::DeserializeOwned,
{
    match path {
        Some(path) => load_toml("--config", path, |settings: &T| {
            endpoint(settings)
                .validate()
                .map_err(|e| format!("[endpoint]: {e}"))
        }),
        None => Ok(T::default()),
    }
}

/// `settings` as TOML, for `--print-config`.
pub fn to_toml(settings: &impl Serialize) -> String {
    toml::to_string_pretty(settings).unwrap_or_else(|e| format!("# cannot render the settings: {e}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printed_settings_read_back_as_the_same() {
        let gs = GsSettings {
            admin: Some("127.0.0.1:9433".parse().unwrap()),
            vs: Some("127.0.0.1:4500".parse().unwrap()),
            gs: Some(GsConfig::default()),
            ..GsSettings::default()
        };
        assert_eq!(toml::from_str::<GsSettings>(&to_toml(&gs)).unwrap(), gs);
        let vs = VsSettings {
            verifier: Some(VsConfig::default()),
            ..VsSettings::default()
        };
        assert_eq!(toml::from_str::<VsSettings>(&to_toml(&vs)).unwrap(), vs);
    }

    #[test]
    fn unknown_fields_are_errors_at_every_level() {
        for text in ["colour = 1", "[drain]\ncolour = 1", "[endpoint]\ncolour = 1"] {
            assert!(toml::from_str::<GsSettings>(text).is_err(), "{text}");
            assert!(toml::from_str::<VsSettings>(text).is_err(), "{text}");
        }
    }
}
