//! `tickwire-sim proxy`: forward real UDP between `--listen` and `--upstream` through a link
//! model, in both directions (the event loop is [`udp::Proxy`], the flows and links
//! [`tickwire_sim::proxy`]).

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tickwire_sim::link::{LinkSpec, LinkSpecError};
use tickwire_sim::proxy::ProxyConfig;

mod udp;

use udp::{BindError, Proxy};

/// `tickwire-sim proxy`: forward real UDP between `--listen` and `--upstream` through a link
/// model, in both directions.
#[derive(Debug, clap::Args)]
pub struct ProxyArgs {
    /// Address clients send to, e.g. 127.0.0.1:5000 (port 0: any free port, printed).
    #[arg(long)]
    pub listen: SocketAddr,
    /// Address of the server datagrams are forwarded to.
    #[arg(long)]
    pub upstream: SocketAddr,
    /// A built-in link preset applied in both directions (see `tickwire-sim list`).
    #[arg(long, required_unless_present = "link", conflicts_with = "link")]
    pub preset: Option<String>,
    /// A TOML file holding one link spec (the fields of a scenario's `[links.NAME]` table),
    /// applied in both directions; instead of `--preset`.
    #[arg(long)]
    pub link: Option<PathBuf>,
    /// Seed of the link models' random streams.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Stop after this many seconds (default: run until killed).
    #[arg(long)]
    pub duration_s: Option<f64>,
    /// Print per-direction statistics every this many seconds.
    #[arg(long, default_value_t = 5.0)]
    pub stats_every_s: f64,
    /// Most client flows at once.
    #[arg(long, default_value_t = ProxyConfig::default().max_flows)]
    pub max_flows: usize,
    /// Close a flow after this many seconds without traffic in either direction.
    #[arg(long, default_value_t = ProxyConfig::default().idle_timeout_ms / 1000)]
    pub idle_timeout_s: u64,
}

/// Why `tickwire-sim proxy` stopped.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The proxy could not be set up (address in use, descriptor limit, an invalid spec).
    #[error(transparent)]
    Bind(#[from] BindError),
    /// A socket or poller operation failed while forwarding.
    #[error("forwarding: {0}")]
    Forwarding(io::Error),
    /// `--preset` names no built-in preset; pick one of [`LinkSpec::PRESETS`].
    #[error("unknown link preset {0:?} (known: {known})", known = LinkSpec::PRESETS.join(", "))]
    UnknownPreset(String),
    /// The `--link` file could not be read or parsed as a [`LinkSpec`]; fix the file.
    #[error("link spec {path}: {message}")]
    LinkFile {
        /// The file.
        path: PathBuf,
        /// Why it was not usable.
        message: String,
    },
    /// A link spec failed [`LinkSpec::validate`]; fix the field named.
    #[error("invalid link spec: {0}")]
    Spec(#[from] LinkSpecError),
    /// A command-line value is out of range; fix it.
    #[error("{0}")]
    Argument(String),
}

/// The link spec `args` name: a built-in preset, or a TOML file.
fn load_spec(args: &ProxyArgs) -> Result<(String, LinkSpec), ProxyError> {
    if let Some(path) = &args.link {
        let link_file = |message: String| ProxyError::LinkFile {
            path: path.clone(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| link_file(e.to_string()))?;
        let spec: LinkSpec = toml::from_str(&text).map_err(|e| link_file(e.to_string()))?;
        spec.validate()?;
        return Ok((path.display().to_string(), spec));
    }
    let name = args.preset.clone().unwrap_or_default();
    let spec = LinkSpec::preset(&name).ok_or_else(|| ProxyError::UnknownPreset(name.clone()))?;
    Ok((name, spec))
}

fn seconds(flag: &str, value: f64) -> Result<Duration, ProxyError> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            ProxyError::Argument(format!(
                "--{flag} must be a positive number of seconds, not {value}"
            ))
        })
}

/// Runs `tickwire-sim proxy`: binds, prints the listen address, then forwards until
/// `--duration-s` has passed (or until killed), printing the proxy's statistics every
/// `--stats-every-s` and at the end.
///
/// # Errors
/// A bad preset, link file or argument, or a socket error ([`ProxyError`]).
pub fn run(args: ProxyArgs) -> Result<(), ProxyError> {
    let (name, spec) = load_spec(&args)?;
    let every = seconds("stats-every-s", args.stats_every_s)?;
    let duration = args.duration_s.map(|s| seconds("duration-s", s)).transpose()?;
    if args.max_flows == 0 {
        return Err(ProxyError::Argument("--max-flows must be at least 1".into()));
    }
    let config = ProxyConfig {
        max_flows: args.max_flows,
        idle_timeout_ms: args.idle_timeout_s.saturating_mul(1000),
        ..ProxyConfig::default()
    };
    let mut proxy = Proxy::bind(args.listen, args.upstream, &spec, &spec, args.seed, config)?;
    println!(
        "tickwire-sim proxy: listening on {}, forwarding to {} through link {name} (seed {}), \
         both directions",
        proxy.local_addr(),
        args.upstream,
        args.seed
    );
    let end = duration.map(|d| Instant::now() + d);
    loop {
        let mut until = Instant::now() + every;
        if let Some(end) = end {
            until = until.min(end);
        }
        proxy.run_until(until).map_err(ProxyError::Forwarding)?;
        println!("{}", proxy.stats());
        if end.is_some_and(|end| Instant::now() >= end) {
            return Ok(());
        }
    }
}
