//! A private software TPM 2.0 ([`swtpm`](https://github.com/stefanberger/swtpm)) for tests.
//!
//! [`Swtpm::start`] launches `swtpm socket --tpm2 --tpmstate dir=<fresh dir>
//! --server type=tcp,port=<P> --ctrl type=tcp,port=<P+1> --flags not-need-init,startup-clear`
//! on two free adjacent loopback ports (the swtpm TCTI of tpm2-tss reaches the control channel
//! on the command port plus one), waits until the TPM port accepts connections, and hands out
//! the TCTI string to open it with (`HardwareTpm::open(&swtpm.tcti())` with the `tpm`
//! feature). The TPM is already started
//! (`TPM2_Startup(CLEAR)`), its PCRs are reset, and its state lives only as long as the
//! [`Swtpm`]: dropping it kills the process and deletes the state directory.
//!
//! swtpm has no resource manager: one client (one ESAPI context) at a time, and every transient
//! object must be flushed by the client that loaded it.

use std::fs;
use std::io::{self, Read};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How many times [`Swtpm::start`] picks fresh ports and relaunches when swtpm exits during
/// start-up (another process took a port between our probe and swtpm's bind).
const START_ATTEMPTS: usize = 5;

/// How many ephemeral ports [`free_port_pair`] tries before giving up on finding a free
/// neighbour.
const PORT_PAIR_ATTEMPTS: usize = 64;

/// How many times one start-up polls the TPM port before giving up; with
/// [`CONNECT_POLL_INTERVAL`], a bound of 10 s on a slow, loaded machine (swtpm is usually ready
/// in a few milliseconds).
const CONNECT_POLLS: usize = 500;

/// Pause between two probes of the TPM port while swtpm starts (process start-up, not a timing
/// assertion).
const CONNECT_POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Timeout of one TCP connect probe to the TPM port.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(200);

/// Largest part of swtpm's log quoted in a start-up error, in bytes.
const MAX_LOG_IN_ERROR_BYTES: u64 = 4096;

/// Distinguishes the state directories of the [`Swtpm`]s of one process.
static NEXT_DIR: AtomicU64 = AtomicU64::new(0);

/// A running `swtpm socket` process with its own state directory, killed and cleaned up on drop.
///
/// ```no_run
/// let swtpm = tickwire_tpm::swtpm::Swtpm::start()?;
/// println!("TCTI: {}", swtpm.tcti()); // swtpm:host=127.0.0.1,port=…
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct Swtpm {
    child: Child,
    server_port: u16,
    ctrl_port: u16,
    state_dir: PathBuf,
}

impl Swtpm {
    /// Starts swtpm (the `swtpm` binary on `PATH`) on two free adjacent 127.0.0.1 TCP ports with a
    /// fresh state directory under [`std::env::temp_dir`], and returns once its TPM port accepts TCP
    /// connections. Retries with new ports up to 5 times if swtpm exits while starting.
    ///
    /// # Errors
    /// [`io::ErrorKind::NotFound`] when `swtpm` is not installed (the message says how to install
    /// it); otherwise the I/O error of creating the directory, binding the probe ports or
    /// spawning, or an error quoting swtpm's log when it never became ready.
    pub fn start() -> io::Result<Swtpm> {
        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            match Self::start_once()? {
                Ok(swtpm) => return Ok(swtpm),
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.unwrap_or_else(|| io::Error::other("swtpm did not start")))
    }

    /// One launch. The outer error is fatal (no retry helps); the inner one is worth a retry on
    /// other ports.
    fn start_once() -> io::Result<io::Result<Swtpm>> {
        let state_dir = create_state_dir()?;
        let (server_port, ctrl_port) = match free_port_pair() {
            Ok(ports) => ports,
            Err(error) => {
                let _ = fs::remove_dir_all(&state_dir);
                return Err(error);
            }
        };
        let log = state_dir.join("swtpm.log");
        let spawned = Command::new("swtpm")
            .arg("socket")
            .arg("--tpm2")
            .arg("--tpmstate")
            .arg(format!("dir={}", state_dir.display()))
            .arg("--server")
            .arg(format!("type=tcp,port={server_port},bindaddr=127.0.0.1"))
            .arg("--ctrl")
            .arg(format!("type=tcp,port={ctrl_port},bindaddr=127.0.0.1"))
            .arg("--flags")
            .arg("not-need-init,startup-clear")
            .arg("--log")
            .arg(format!("file={},level=1", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(error) => {
                let _ = fs::remove_dir_all(&state_dir);
                if error.kind() == io::ErrorKind::NotFound {
                    return Err(io::Error::new(
                        io::ErrorKind::NotFound,
                        "the `swtpm` binary is not on PATH: install swtpm (Debian: `apt-get install swtpm \
                         swtpm-tools`; scripts/test does it)",
                    ));
                }
                return Err(error);
            }
        };
        // From here on, dropping `swtpm` kills the process and removes the directory.
        let mut swtpm = Swtpm {
            child,
            server_port,
            ctrl_port,
            state_dir,
        };
        Ok(swtpm.wait_ready().map(|()| swtpm))
    }

    /// Polls the TPM port until it accepts a connection, or swtpm exits, or the poll budget runs
    /// out.
    fn wait_ready(&mut self) -> io::Result<()> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.server_port));
        for _ in 0..CONNECT_POLLS {
            if let Some(status) = self.child.try_wait()? {
                return Err(io::Error::other(format!(
                    "swtpm exited during start-up ({status}); log: {}",
                    read_log(&self.state_dir.join("swtpm.log"))
                )));
            }
            if TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).is_ok() {
                return Ok(());
            }
            std::thread::sleep(CONNECT_POLL_INTERVAL);
        }
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "swtpm did not accept connections on {addr}; log: {}",
                read_log(&self.state_dir.join("swtpm.log"))
            ),
        ))
    }

    /// The TCTI string for this TPM, `swtpm:host=127.0.0.1,port=<P>`, for
    /// `HardwareTpm::open` (feature `tpm`) or tpm2-tools' `--tcti`.
    pub fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.server_port)
    }

    /// The TCP port of the TPM command channel on 127.0.0.1.
    pub fn server_port(&self) -> u16 {
        self.server_port
    }

    /// The TCP port of swtpm's control channel on 127.0.0.1, always
    /// [`server_port`](Self::server_port) + 1 (power, reset, shutdown; see `swtpm_ioctl`).
    pub fn ctrl_port(&self) -> u16 {
        self.ctrl_port
    }

    /// The directory holding the TPM's persistent state and swtpm's log (`swtpm.log`), removed on
    /// drop.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.state_dir);
    }
}

/// Creates `<temp>/tickwire-swtpm-<pid>-<n>`, skipping names left behind by earlier processes.
fn create_state_dir() -> io::Result<PathBuf> {
    let base = std::env::temp_dir();
    let pid = std::process::id();
    loop {
        let n = NEXT_DIR.fetch_add(1, Ordering::Relaxed);
        let dir = base.join(format!("tickwire-swtpm-{pid}-{n}"));
        match fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(error) => return Err(error),
        }
    }
}

/// Two adjacent TCP ports `(P, P + 1)` free on 127.0.0.1 right now: tpm2-tss's swtpm (and
/// mssim) TCTI takes only the command port and reaches the control channel on the next one.
/// Both are held while probing so the pair is really free, then released for swtpm to bind.
fn free_port_pair() -> io::Result<(u16, u16)> {
    let mut last_error = None;
    for _ in 0..PORT_PAIR_ATTEMPTS {
        let server = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let port = server.local_addr()?.port();
        let Some(next) = port.checked_add(1) else { continue };
        match TcpListener::bind((Ipv4Addr::LOCALHOST, next)) {
            Ok(_ctrl) => return Ok((port, next)),
            Err(error) => last_error = Some(error),
        }
    }
    Err(last_error.unwrap_or_else(|| io::Error::other("no free pair of adjacent loopback ports")))
}

/// The start of swtpm's log, for error messages.
fn read_log(path: &Path) -> String {
    let mut text = String::new();
    match fs::File::open(path) {
        Ok(file) => match file.take(MAX_LOG_IN_ERROR_BYTES).read_to_string(&mut text) {
            Ok(_) if text.trim().is_empty() => "(empty)".to_owned(),
            Ok(_) => text.trim().to_owned(),
            Err(error) => format!("(unreadable: {error})"),
        },
        Err(error) => format!("(none: {error})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_dirs_are_distinct() {
        let a = create_state_dir().unwrap();
        let b = create_state_dir().unwrap();
        assert_ne!(a, b);
        fs::remove_dir(&a).unwrap();
        fs::remove_dir(&b).unwrap();
    }

    #[test]
    fn port_pair_is_two_ports() {
        let (server, ctrl) = free_port_pair().unwrap();
        assert_eq!(ctrl, server + 1);
    }
}
