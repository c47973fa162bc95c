//! The state shared with the server loop, and the HTTP thread that serves it.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::thread::JoinHandle;

use tiny_http::{Header, Method, Request, Response, Server};

use crate::commands::{CommandRequest, Commands, Submitted, MIN_TOKEN_LEN, REPLY_TIMEOUT};
use crate::metrics::{render_owned, Extras, Format};
use crate::{Readiness, ServerKind, Snapshot};

/// Shared between the server loop and the admin thread: the latest [`Snapshot`] (behind a
/// `Mutex`, held only to swap or copy it) and the readiness flags (atomics).
///
/// Commands (`publish`, `set_ready`, `start_draining`) come from the server loop; getters
/// (`snapshot`, `readiness`, `is_ready`, `is_draining`) from anywhere.
#[derive(Debug)]
pub struct AdminState {
    snapshot: Mutex<Snapshot>,
    ready: AtomicBool,
    draining: AtomicBool,
    commands: OnceLock<Commands>,
    /// `notAfter` of the WebTransport certificate in Unix milliseconds; 0: none.
    certificate_not_after_ms: AtomicU64,
}

impl AdminState {
    /// A fresh state: serving, not ready, a snapshot of an idle endpoint of `kind`
    /// ([`Snapshot::idle`]).
    pub fn new(kind: ServerKind) -> Arc<Self> {
        Arc::new(Self {
            snapshot: Mutex::new(Snapshot::idle(kind)),
            ready: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            commands: OnceLock::new(),
            certificate_not_after_ms: AtomicU64::new(0),
        })
    }

    /// Replaces the snapshot `/metrics` renders.
    pub fn publish(&self, snapshot: Snapshot) {
        let old = std::mem::replace(&mut *self.lock(), snapshot);
        // Freed outside the lock.
        drop(old);
    }

    /// Sets whether the server admits players (`/ready` answers 200 while true and not
    /// draining).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// Marks the process as draining: `/health` and `/ready` answer 503 from now on. There is
    /// no way back.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Sets the `notAfter` (Unix milliseconds) of the certificate browsers pin over
    /// WebTransport; `/metrics` then shows `tickwire_webtransport_certificate_expiry_seconds`,
    /// the time left until it at each scrape (by the system clock). `None` removes the metric.
    pub fn set_webtransport_certificate_not_after(&self, not_after_unix_ms: Option<u64>) {
        self.certificate_not_after_ms
            .store(not_after_unix_ms.map_or(0, |ms| ms.max(1)), Ordering::Relaxed);
    }

    /// What [`AdminState::set_webtransport_certificate_not_after`] last set.
    pub fn webtransport_certificate_not_after(&self) -> Option<u64> {
        match self.certificate_not_after_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(ms),
        }
    }

    /// What a scrape shows besides the snapshot, measured now.
    fn extras(&self) -> Extras {
        Extras {
            certificate_expiry_seconds: self.webtransport_certificate_not_after().map(|not_after| {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default();
                (not_after as f64 / 1000.0) - now.as_secs_f64()
            }),
        }
    }

    /// Accepts operator commands under `/v1/` from requests bearing `token` (see
    /// [`CommandRequest`]); the loop takes them with [`AdminState::poll_command`]. Once only.
    ///
    /// # Errors
    /// The token is shorter than [`MIN_TOKEN_LEN`], or commands were already enabled.
    pub fn enable_commands(&self, token: &str) -> Result<(), String> {
        let token = token.trim();
        if token.len() < MIN_TOKEN_LEN {
            return Err(format!(
                "the admin token must be at least {MIN_TOKEN_LEN} characters"
            ));
        }
        self.commands
            .set(Commands::new(token.to_owned()))
            .map_err(|_| "commands are already enabled".to_owned())
    }

    /// The next operator command for the loop to answer, if any.
    pub fn poll_command(&self) -> Option<CommandRequest> {
        self.commands.get()?.poll()
    }

    /// A copy of the latest snapshot.
    pub fn snapshot(&self) -> Snapshot {
        self.lock().clone()
    }

    /// Whether the server said it admits players (whether or not it is draining).
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Whether [`AdminState::start_draining`] was called.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Readiness as the endpoints show it: draining wins over ready.
    pub fn readiness(&self) -> Readiness {
        if self.is_draining() {
            Readiness::Draining
        } else if self.is_ready() {
            Readiness::Ready
        } else {
            Readiness::NotReady
        }
    }

    /// The snapshot, even if a thread panicked while holding the lock: the snapshot is only
    /// ever replaced whole, so it is never half-written.
    fn lock(&self) -> std::sync::MutexGuard<'_, Snapshot> {
        self.snapshot.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The admin HTTP server: `/metrics`, `/health` and `/ready` (see the crate docs), answered
/// one request at a time on a thread of its own. Dropping it, or [`AdminServer::shutdown`],
/// stops the thread and waits for it (after the request in hand, if any).
pub struct AdminServer {
    addr: SocketAddr,
    server: Arc<Server>,
    stopping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for AdminServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminServer")
            .field("addr", &self.addr)
            .field("running", &self.thread.is_some())
            .finish_non_exhaustive()
    }
}

impl AdminServer {
    /// Binds `addr` (port 0 picks a free port) and serves `state` on a thread of its own,
    /// named `tickwire-admin`.
    ///
    /// # Errors
    /// The address cannot be bound (in use, not local, no permission), or the thread cannot
    /// be spawned.
    pub fn start(addr: SocketAddr, state: Arc<AdminState>) -> io::Result<Self> {
        let server = Server::http(addr).map_err(|e| match e.downcast::<io::Error>() {
            Ok(e) => *e,
            Err(e) => io::Error::other(e),
        })?;
        let addr = server
            .server_addr()
            .to_ip()
            .expect("a server bound to a SocketAddr listens on an IP address");
        let server = Arc::new(server);
        let stopping = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new().name("tickwire-admin".into()).spawn({
            let server = Arc::clone(&server);
            let stopping = Arc::clone(&stopping);
            move || serve(&server, &state, &stopping)
        })?;
        tracing::debug!(%addr, "admin endpoint listening");
        Ok(Self {
            addr,
            server,
            stopping,
            thread: Some(thread),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving: the thread finishes the requests already received, then exits, and
    /// this waits for it. The same as dropping the server.
    pub fn shutdown(self) {
        drop(self);
    }

    fn stop(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        self.stopping.store(true, Ordering::Relaxed);
        self.server.unblock();
        if thread.join().is_err() {
            tracing::warn!(addr = %self.addr, "admin thread panicked");
        }
    }
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The admin thread: answers requests until [`AdminServer::stop`] unblocks it.
fn serve(server: &Server, state: &AdminState, stopping: &AtomicBool) {
    loop {
        match server.recv() {
            Ok(request) => answer(request, state),
            // `unblock` makes `recv` fail; so does a failed `accept`, after which the server
            // accepts no more connections: keep answering what is queued until stopped.
            Err(_) if stopping.load(Ordering::Relaxed) => break,
            Err(e) => tracing::warn!(error = %e, "admin endpoint stopped accepting connections"),
        }
    }
    tracing::debug!("admin endpoint stopped");
}

/// A response before it is written.
#[derive(Debug, PartialEq, Eq)]
struct Reply {
    status: u16,
    content_type: &'static str,
    body: String,
}

const PLAIN_TEXT: &str = "text/plain; charset=utf-8";

impl Reply {
    fn text(status: u16, body: &str) -> Self {
        Self {
            status,
            content_type: PLAIN_TEXT,
            body: format!("{body}\n"),
        }
    }
}

fn answer(request: Request, state: &AdminState) {
    let accept = request
        .headers()
        .iter()
        .find(|h| h.field.equiv("Accept"))
        .map(|h| h.value.as_str().to_owned());
    let authorization = request
        .headers()
        .iter()
        .find(|h| h.field.equiv("Authorization"))
        .map(|h| h.value.as_str().to_owned());
    let reply = if request.url().starts_with("/v1/") {
        command(request.method(), request.url(), authorization.as_deref(), state)
    } else {
        route(request.method(), request.url(), accept.as_deref(), state)
    };
    tracing::debug!(
        method = %request.method(),
        url = ?request.url(),
        peer = ?request.remote_addr(),
        status = reply.status,
        bytes = reply.body.len(),
        "admin request"
    );
    let mut response = Response::from_string(reply.body)
        .with_status_code(reply.status)
        .with_header(header("Content-Type", reply.content_type))
        .with_header(header("Cache-Control", "no-store"));
    if reply.status == 405 {
        response.add_header(header("Allow", "GET, HEAD"));
    }
    if reply.status == 401 {
        response.add_header(header("WWW-Authenticate", "Bearer"));
    }
    if let Err(e) = request.respond(response) {
        tracing::warn!(error = %e, "admin response not delivered");
    }
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name, value).expect("header names and values here are ASCII constants")
}

const JSON: &str = "application/json";

/// An operator command: queued for the loop, answered when it is (see [`CommandRequest`]).
fn command(method: &Method, url: &str, authorization: Option<&str>, state: &AdminState) -> Reply {
    let json = |status, body: String| Reply {
        status,
        content_type: JSON,
        body,
    };
    let Some(commands) = state.commands.get() else {
        return Reply::text(404, "not found (operator commands are not enabled)");
    };
    if !matches!(method, Method::Get | Method::Post) {
        return json(405, "{\"error\":\"method not allowed\"}".into());
    }
    match commands.submit(&method.to_string(), url, authorization) {
        Submitted::Answered(status, body) => json(status, body.into()),
        Submitted::Queued(answer) => match answer.recv_timeout(REPLY_TIMEOUT) {
            Ok((status, body)) => json(status, body),
            Err(_) => json(504, "{\"error\":\"the server loop did not answer\"}".into()),
        },
    }
}

/// What to answer `method url` with `Accept: accept`.
fn route(method: &Method, url: &str, accept: Option<&str>, state: &AdminState) -> Reply {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    if !matches!(path, "/metrics" | "/health" | "/ready") {
        return Reply::text(404, "not found");
    }
    if !matches!(method, Method::Get | Method::Head) {
        return Reply::text(405, "method not allowed");
    }
    let readiness = state.readiness();
    match (path, readiness) {
        ("/metrics", _) => {
            let format = Format::negotiate(accept);
            Reply {
                status: 200,
                content_type: format.content_type(),
                body: render_owned(state.snapshot(), readiness, state.extras(), format),
            }
        }
        ("/health", Readiness::Draining) | ("/ready", Readiness::Draining) => Reply::text(503, "draining"),
        ("/health", _) => Reply::text(200, "ok"),
        (_, Readiness::Ready) => Reply::text(200, "ready"),
        (_, _) => Reply::text(503, "not ready"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(state: &AdminState, method: Method, url: &str) -> (u16, String) {
        let reply = route(&method, url, None, state);
        (reply.status, reply.body)
    }

    #[test]
    fn readiness_follows_the_flags_and_draining_is_final() {
        let state = AdminState::new(ServerKind::GameServer);
        assert_eq!(state.readiness(), Readiness::NotReady);
        assert_eq!(status(&state, Method::Get, "/ready"), (503, "not ready\n".into()));
        assert_eq!(status(&state, Method::Get, "/health"), (200, "ok\n".into()));
        state.set_ready(true);
        assert_eq!(
            status(&state, Method::Head, "/ready?verbose=1"),
            (200, "ready\n".into())
        );
        state.start_draining();
        state.set_ready(true);
        assert_eq!(state.readiness(), Readiness::Draining);
        assert!(state.is_ready() && state.is_draining());
        assert_eq!(status(&state, Method::Get, "/ready"), (503, "draining\n".into()));
        assert_eq!(status(&state, Method::Get, "/health"), (503, "draining\n".into()));
    }

    #[test]
    fn unknown_paths_and_methods_are_refused() {
        let state = AdminState::new(ServerKind::VerificationServer);
        assert_eq!(status(&state, Method::Get, "/").0, 404);
        assert_eq!(status(&state, Method::Get, "/metricsx").0, 404);
        assert_eq!(status(&state, Method::Post, "/metrics").0, 405);
        assert_eq!(status(&state, Method::Delete, "/health").0, 405);
    }

    #[test]
    fn metrics_negotiate_the_format() {
        let state = AdminState::new(ServerKind::GameServer);
        let scrape = |accept| route(&Method::Get, "/metrics", accept, &state);
        let prometheus = "application/openmetrics-text;version=1.0.0,\
                          application/openmetrics-text;version=0.0.1;q=0.75,\
                          text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        let om = scrape(Some(prometheus));
        assert_eq!(om.content_type, Format::OpenMetrics.content_type());
        assert!(om.body.ends_with("# EOF\n"));
        for accept in [
            None,
            Some("*/*"),
            Some("text/plain; version=0.0.4"),
            Some("Application/OpenMetrics-Text; q=0, text/plain"),
        ] {
            let text = scrape(accept);
            assert_eq!(
                text.content_type,
                Format::PrometheusText.content_type(),
                "{accept:?}"
            );
            assert!(!text.body.contains("# EOF"));
        }
        let om = scrape(Some("text/plain;q=0.5, APPLICATION/openmetrics-text ; q=0.9"));
        assert_eq!(om.content_type, Format::OpenMetrics.content_type());
    }
    #[test]
    fn certificate_expiry_is_shown_once_set() {
        let state = AdminState::new(ServerKind::GameServer);
        let name = "tickwire_webtransport_certificate_expiry_seconds";
        assert!(!status(&state, Method::Get, "/metrics").1.contains(name));
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        state.set_webtransport_certificate_not_after(Some(now_ms + 86_400_000));
        let body = status(&state, Method::Get, "/metrics").1;
        assert!(body.contains(&format!("# TYPE {name} gauge")), "{body}");
        let value: f64 = body
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{name} ")))
            .unwrap()
            .parse()
            .unwrap();
        // The scrape happens after `now_ms`, within the test's patience.
        assert!((86_400.0 - 600.0..=86_400.0).contains(&value), "{value}");
        let om = route(
            &Method::Get,
            "/metrics",
            Some("application/openmetrics-text"),
            &state,
        );
        assert!(om
            .body
            .contains("# UNIT tickwire_webtransport_certificate_expiry_seconds seconds"));
        state.set_webtransport_certificate_not_after(None);
        assert!(!status(&state, Method::Get, "/metrics").1.contains(name));
    }
}
