//! What the demo binaries (`tickwire-gs`, `tickwire-vs`, `tickwire-client`, `tickwire-demo`)
//! share: argument parsers that refuse nonsense, key and settings files, and the one way they
//! fail on bad operator input — one line on stderr, `<binary>: <what is wrong and what to
//! do>`, and exit code 2 (as clap's own parse errors).
//!
//! Keys are Ed25519 in PKCS#8 PEM files (`tickwire-vs keygen PATH` writes one, `openssl genpkey
//! -algorithm ed25519` too). The only other source of an issuer key is
//! `--insecure-demo-issuer-seed N`: a key anyone can recompute from `N`, for throwaway demos.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

/// Exit code of every operator error (as clap's parse errors).
pub const EXIT_USAGE: u8 = 2;

/// The longest run any binary accepts for `--seconds`: one year, in seconds.
pub const MAX_SECONDS: f64 = 31_536_000.0;

/// What an operator got wrong, and what to do about it: one line, without the binary's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(String);

impl UsageError {
    /// An error with this message (newlines are folded into `; `).
    pub fn new(message: impl fmt::Display) -> Self {
        Self(one_line(&message.to_string()))
    }
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Prints `<bin>: <error>` as one line on stderr and returns exit code 2.
pub fn fail(bin: &str, error: impl fmt::Display) -> ExitCode {
    eprintln!("{bin}: {}", one_line(&error.to_string()));
    ExitCode::from(EXIT_USAGE)
}

/// `text` on one line: lines trimmed, empty ones dropped, the rest joined with `; `.
fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// clap value parser for `--seconds`: a finite number of seconds in `(0, MAX_SECONDS]`.
///
/// # Errors
/// Not a number, not finite (`inf`, `nan`), zero or negative, or more than a year.
pub fn parse_seconds(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds"))?;
    if !seconds.is_finite() || seconds <= 0.0 || seconds > MAX_SECONDS {
        return Err(format!(
            "`{text}` is out of range: give a finite number of seconds above 0 and at most \
             {MAX_SECONDS} (a year)"
        ));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// An issuer key derived from a public seed: SHA-256 of a label and `seed` (big-endian).
/// Anyone who knows `seed` can sign tickets with it.
fn insecure_demo_key(seed: u64) -> SigningKey {
    let mut hasher = Sha256::new();
    hasher.update(b"tickwire-demo/insecure-issuer/v1");
    hasher.update(seed.to_be_bytes());
    SigningKey::from_bytes(&hasher.finalize().into())
}

/// Where an issuer key comes from: `--issuer-key PATH`, or the insecure demo seed.
#[derive(Debug, Clone, Copy)]
pub struct IssuerSource<'a> {
    /// The binary's name, for the warning.
    pub bin: &'a str,
    /// `--issuer-key`.
    pub path: Option<&'a Path>,
    /// `--insecure-demo-issuer-seed`.
    pub insecure_seed: Option<u64>,
}

impl IssuerSource<'_> {
    /// The issuer's private key (a VS signing tickets, demo clients minting their own).
    /// Warns on stderr when it comes from the insecure seed.
    ///
    /// # Errors
    /// Neither source was given, or the file cannot be read or holds no private key.
    pub fn signing_key(&self) -> Result<SigningKey, UsageError> {
        match (self.path, self.insecure_seed) {
            (Some(path), _) => tickwire_udp::os::load_signing_key(path).map_err(|e| {
                UsageError::new(format!(
                    "cannot load --issuer-key: {e} (this needs the private key file; \
                     `tickwire-vs keygen PATH` writes one)"
                ))
            }),
            (None, Some(seed)) => {
                self.warn();
                Ok(insecure_demo_key(seed))
            }
            (None, None) => Err(self.missing("--issuer-key PATH (the issuer's private key)")),
        }
    }

    /// The issuer's public key (a game server trusting it); a private key file works too.
    /// Warns on stderr when it comes from the insecure seed.
    ///
    /// # Errors
    /// Neither source was given, or the file cannot be read or holds no key.
    pub fn verifying_key(&self) -> Result<VerifyingKey, UsageError> {
        match (self.path, self.insecure_seed) {
            (Some(path), _) => tickwire_udp::os::load_verifying_key(path)
                .map_err(|e| UsageError::new(format!("cannot load --issuer-key: {e}"))),
            (None, Some(seed)) => {
                self.warn();
                Ok(insecure_demo_key(seed).verifying_key())
            }
            (None, None) => Err(self.missing(
                "--issuer-key PATH (the issuer's public key, PATH.pub of `tickwire-vs keygen PATH`)",
            )),
        }
    }

    fn warn(&self) {
        eprintln!(
            "{}: warning: insecure demo issuer key derived from a public seed; \
             use --issuer-key for anything real",
            self.bin
        );
    }

    fn missing(&self, what: &str) -> UsageError {
        UsageError::new(format!(
            "no ticket issuer key: pass {what}, or --insecure-demo-issuer-seed N for a throwaway demo"
        ))
    }
}

/// The identity key from `--identity-key PATH`, or a fresh one from the operating system
/// (`true`: ephemeral, so peers cannot pin or enrol it across restarts).
///
/// # Errors
/// The file cannot be read or holds no private key, or the OS has no randomness.
pub fn identity_key(path: Option<&Path>) -> Result<(SigningKey, bool), UsageError> {
    match path {
        Some(path) => tickwire_udp::os::load_signing_key(path)
            .map(|key| (key, false))
            .map_err(|e| UsageError::new(format!("cannot load --identity-key: {e}"))),
        None => tickwire_udp::os_signing_key()
            .map(|key| (key, true))
            .map_err(|e| UsageError::new(format!("cannot draw an identity key: {e}"))),
    }
}

/// Checks that `addr` (the value of `flag`) is an address a peer can be reached at: a port
/// other than 0, and a unicast IP that is not unspecified (`0.0.0.0`, `::`).
///
/// # Errors
/// It is not.
pub fn check_peer(flag: &str, addr: SocketAddr) -> Result<(), UsageError> {
    let ip = addr.ip();
    let broadcast = matches!(ip, IpAddr::V4(v4) if v4.is_broadcast());
    if addr.port() == 0 || ip.is_unspecified() || ip.is_multicast() || broadcast {
        return Err(UsageError::new(format!(
            "{flag} {addr}: not an address a peer can be reached at; give its unicast IP and port"
        )));
    }
    Ok(())
}

/// Prints the identity's public key (hex) on stdout, and whether it is ephemeral.
pub fn announce_identity(identity: &SigningKey, ephemeral: bool) {
    let public: String = identity
        .verifying_key()
        .to_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if ephemeral {
        println!(
            "identity {public}: ephemeral, fresh from the OS (pass --identity-key PATH for a stable one)"
        );
    } else {
        println!("identity {public}");
    }
}

/// Reads `path` as TOML into `T` (whose serde settings refuse unknown fields), then checks it
/// with `validate`. Errors name the file, and for syntax the line and column.
///
/// # Errors
/// The file cannot be read, is not valid TOML for `T`, or fails `validate`.
pub fn load_toml<T: DeserializeOwned, E: fmt::Display>(
    flag: &str,
    path: &Path,
    validate: impl FnOnce(&T) -> Result<(), E>,
) -> Result<T, UsageError> {
    let shown = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| UsageError::new(format!("{flag} {shown}: {e}")))?;
    let value: T = toml::from_str(&text).map_err(|e| {
        let at = e.span().map_or_else(String::new, |span| {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!(" line {line}, column {column}:")
        });
        UsageError::new(format!("{flag} {shown}:{at} {}", e.message()))
    })?;
    validate(&value).map_err(|e| UsageError::new(format!("{flag} {shown}: {e}")))?;
    Ok(value)
}

/// Checks, before a run, that a report can be written to `path` at its end: its directory
/// exists.
///
/// # Errors
/// The directory does not exist or is not a directory.
pub fn check_output(flag: &str, path: &Path) -> Result<(), UsageError> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if dir.is_dir() {
        Ok(())
    } else {
        Err(UsageError::new(format!(
            "{flag} {}: directory {} does not exist",
            path.display(),
            dir.display()
        )))
    }
}

/// An error a server met before serving (binding `--listen`, opening the TPM), with what to
/// do about it where the cause is clear.
pub fn setup_error(error: &io::Error) -> String {
    let hint = match error.kind() {
        io::ErrorKind::AddrInUse => "; stop what holds that port or choose another --listen",
        io::ErrorKind::AddrNotAvailable => "; --listen must be an address of this machine",
        io::ErrorKind::PermissionDenied => "; ports below 1024 need privileges, choose another --listen",
        _ => "",
    };
    format!("{error}{hint}")
}

/// Writes a new key pair for `keygen PATH`: the private key at `path` (PKCS#8 PEM, mode 0600)
/// and the public key at `path.pub`; prints both paths.
///
/// # Errors
/// Either file exists already, or cannot be written.
pub fn keygen(path: &Path) -> Result<(), UsageError> {
    tickwire_udp::os::generate_key_file(path).map_err(|e| {
        let hint = if e.kind() == io::ErrorKind::AlreadyExists {
            " (keys are never overwritten: choose another path)"
        } else {
            ""
        };
        UsageError::new(format!("keygen: {e}{hint}"))
    })?;
    println!("private key: {} (mode 0600)", path.display());
    println!(
        "public key:  {}",
        tickwire_udp::os::public_key_path(path).display()
    );
    Ok(())
}

/// Replaces `setting` with `flag` when the flag was given.
pub fn overlay<T>(setting: &mut T, flag: Option<T>) {
    if let Some(value) = flag {
        *setting = value;
    }
}

/// Replaces an optional `setting` with `flag` when the flag was given.
pub fn overlay_some<T>(setting: &mut Option<T>, flag: Option<T>) {
    if flag.is_some() {
        *setting = flag;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_must_be_finite_positive_and_at_most_a_year() {
        assert_eq!(parse_seconds("1.5"), Ok(Duration::from_millis(1_500)));
        assert_eq!(parse_seconds("31536000"), Ok(Duration::from_secs(31_536_000)));
        for bad in [
            "inf", "-inf", "nan", "NaN", "0", "-1", "31536001", "1e300", "", "ten",
        ] {
            assert!(parse_seconds(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn errors_are_one_line() {
        assert_eq!(UsageError::new("a\n  b\n\nc").to_string(), "a; b; c");
    }

    #[test]
    fn the_insecure_key_is_a_function_of_the_seed() {
        assert_eq!(insecure_demo_key(1), insecure_demo_key(1));
        assert_ne!(insecure_demo_key(1), insecure_demo_key(2));
    }
}
