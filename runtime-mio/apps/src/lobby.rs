//! `tickwire-demo web`: a tiny HTTP/1.1 lobby for browser clients of the demo game.
//!
//! It serves the demo page's files (`web/demo/dist`) and one endpoint that hands a browser
//! what it needs to join the game server over WebTransport (`PROTOCOL.md` §12):
//!
//! ```text
//! GET /session?key=<64 hex digits: the client's Ed25519 public key>[&expired=1]
//! 200 application/json
//! {"url":"https://127.0.0.1:4433/tickwire",
//!  "certificateHashes":[{"algorithm":"sha-256","value":"<base64>"}],
//!  "joinTicket":"<hex of the postcard JoinTicket, §4.6.1>",
//!  "schemaHash":"<hex of the SHA-256 of the demo schema>"}
//! ```
//!
//! The certificate hashes are read, on every request, from the JSON document `tickwire-gs
//! --webtransport-cert-json PATH` keeps up to date ([`crate::webtransport`]); the join ticket
//! is minted with [`demo_ticket`](crate::demo::demo_ticket) for the key given, standing in for
//! a lobby that asks its verification server. `expired=1` mints one whose validity ended ten
//! minutes ago, which the game server refuses with `TICKET_EXPIRED` (for rejection tests).
//!
//! It is deliberately small: `std::net` only, `GET` only (anything else is 405), one request
//! per connection (`Connection: close`), a request head of at most [`MAX_REQUEST_BYTES`],
//! [`IO_TIMEOUT`] on every read and write, at most [`MAX_CONNECTIONS`] connections handled at
//! once (more get 503), static files up to [`MAX_STATIC_FILE_BYTES`] whose path segments are
//! plain names (no `..`, no hidden files). It listens on loopback unless told otherwise.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::Serialize;
use tickwire_core::webtransport::{CertificateHash, CertificateHashesDocument};

use crate::demo::demo_ticket_valid_from;
use crate::webtransport::unix_ms_now;

/// Largest request head (request line and headers, up to the blank line) read, in bytes;
/// longer ones get 431.
pub const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// Connections handled at once; more are answered 503 and closed.
pub const MAX_CONNECTIONS: usize = 32;
/// Timeout of every read and write on a connection.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest static file served, in bytes (the demo bundle is well under 1 MiB).
pub const MAX_STATIC_FILE_BYTES: u64 = 16 * 1024 * 1024;
/// Largest certificate-hash document read, in bytes.
const MAX_CERT_JSON_BYTES: u64 = 64 * 1024;
/// How long before now an `expired=1` ticket's validity started: its two minutes, plus the
/// game server's 30 s skew allowance, are long over.
const EXPIRED_TICKET_AGE_MS: u64 = 10 * 60 * 1000;
/// Player ids handed to browser clients start here, apart from native demo clients' (0..).
const FIRST_CLIENT_ID: u64 = 1_000;

/// What the lobby serves and how it mints tickets.
#[derive(Debug, Clone)]
pub struct LobbyOptions {
    /// HTTP address to listen on; loopback (`127.0.0.1:8080`) in the demo.
    pub listen: SocketAddr,
    /// Directory of the page's files (`web/demo/dist`); `/` is its `index.html`.
    pub static_dir: PathBuf,
    /// The game server's UDP address, which the session URL names.
    pub game_server: SocketAddr,
    /// The game server's WebTransport path (default `/tickwire`, `PROTOCOL.md` §12.3).
    pub path: String,
    /// The certificate-hash document the game server writes (`--webtransport-cert-json`).
    pub cert_json: PathBuf,
    /// The join-ticket issuer's key (under [`DEMO_KEY_ID`](crate::demo::DEMO_KEY_ID)).
    pub issuer: SigningKey,
    /// Game server id tickets name.
    pub gs_id: u64,
    /// SHA-256 of the game's schema, which the client puts in its Hello.
    pub schema_hash: [u8; 32],
}

/// The body of `GET /session`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionResponse {
    /// `https://<game server>/<path>`: the WebTransport session URL.
    pub url: String,
    /// To pass as `serverCertificateHashes`, current first.
    pub certificate_hashes: Vec<CertificateHash>,
    /// Lowercase hex of the postcard `JoinTicket` (`PROTOCOL.md` §4.6.1).
    pub join_ticket: String,
    /// Lowercase hex of the schema hash.
    pub schema_hash: String,
}

/// An HTTP response: status, content type, body, and any extra headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Body.
    pub body: Vec<u8>,
    /// Extra headers (name, value).
    pub headers: Vec<(&'static str, String)>,
}

impl Response {
    fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status,
            content_type,
            body: body.into(),
            headers: Vec::new(),
        }
    }

    fn text(status: u16, message: impl std::fmt::Display) -> Self {
        Self::new(status, "text/plain; charset=utf-8", format!("{message}\n"))
    }

    fn reason(&self) -> &'static str {
        match self.status {
            200 => "OK",
            400 => "Bad Request",
            404 => "Not Found",
            405 => "Method Not Allowed",
            413 => "Content Too Large",
            431 => "Request Header Fields Too Large",
            500 => "Internal Server Error",
            503 => "Service Unavailable",
            505 => "HTTP Version Not Supported",
            _ => "",
        }
    }

    /// Writes the status line, headers and body.
    ///
    /// # Errors
    /// The connection failed or timed out.
    pub fn write_to(&self, out: &mut impl Write) -> io::Result<()> {
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n\
             X-Content-Type-Options: nosniff\r\nConnection: close\r\n",
            self.status,
            self.reason(),
            self.content_type,
            self.body.len()
        );
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        out.write_all(head.as_bytes())?;
        out.write_all(&self.body)?;
        out.flush()
    }
}

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method, e.g. `GET`.
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query string (after `?`), possibly empty.
    pub query: String,
}

/// Reads and parses one request head from `input`, at most [`MAX_REQUEST_BYTES`]; the body,
/// if any, is not read (`GET` has none, and the connection closes after the response).
///
/// # Errors
/// A response to send instead: 431 for a head over the limit, 400 for a malformed one or a
/// connection that ended first, 505 for a version other than HTTP/1.x.
pub fn read_request(input: &mut impl Read) -> Result<Request, Response> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let end = loop {
        if let Some(end) = find_head_end(&buf) {
            break end;
        }
        if buf.len() >= MAX_REQUEST_BYTES {
            return Err(Response::text(
                431,
                format!("request head exceeds {MAX_REQUEST_BYTES} bytes"),
            ));
        }
        let room = (MAX_REQUEST_BYTES + 4 - buf.len()).min(chunk.len());
        match input.read(&mut chunk[..room]) {
            Ok(0) => {
                return Err(Response::text(
                    400,
                    "connection closed before the end of the request head",
                ))
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Response::text(400, format!("cannot read the request: {e}"))),
        }
    };
    if end > MAX_REQUEST_BYTES {
        return Err(Response::text(
            431,
            format!("request head exceeds {MAX_REQUEST_BYTES} bytes"),
        ));
    }
    let head =
        std::str::from_utf8(&buf[..end]).map_err(|_| Response::text(400, "request head is not UTF-8"))?;
    let line = head.split("\r\n").next().unwrap_or_default();
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Response::text(400, "malformed request line"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(Response::text(505, "only HTTP/1.x is served"));
    }
    if !target.starts_with('/') {
        return Err(Response::text(400, "the request target must be a path"));
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    Ok(Request {
        method: method.to_owned(),
        path: path.to_owned(),
        query: query.to_owned(),
    })
}

/// The index just past the blank line that ends a request head (`\r\n\r\n`).
fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// The lobby: a bound listener and what its handlers share.
#[derive(Debug)]
pub struct Lobby {
    listener: TcpListener,
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    options: LobbyOptions,
    next_client_id: AtomicU64,
    connections: AtomicUsize,
}

impl Lobby {
    /// Binds `options.listen`.
    ///
    /// # Errors
    /// The address cannot be bound.
    pub fn bind(options: LobbyOptions) -> io::Result<Self> {
        let listener = TcpListener::bind(options.listen)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {}: {e}", options.listen)))?;
        listener.set_nonblocking(true)?;
        Ok(Self {
            listener,
            shared: Arc::new(Shared {
                options,
                next_client_id: AtomicU64::new(FIRST_CLIENT_ID),
                connections: AtomicUsize::new(0),
            }),
        })
    }

    /// The bound address (the port chosen for port 0).
    ///
    /// # Errors
    /// The socket has no local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `stop` is set or `deadline` passes, each connection on its own thread
    /// (at most [`MAX_CONNECTIONS`] at once). Checks `stop` every 50 ms.
    ///
    /// # Errors
    /// Accepting failed for another reason than a connection reset by its peer.
    pub fn serve(&self, stop: &AtomicBool, deadline: Option<Instant>) -> io::Result<()> {
        while !stop.load(Ordering::Relaxed) && deadline.is_none_or(|d| Instant::now() < d) {
            let stream = match self.listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionAborted
                            | io::ErrorKind::ConnectionReset
                            | io::ErrorKind::Interrupted
                    ) =>
                {
                    continue
                }
                Err(e) => return Err(e),
            };
            let shared = self.shared.clone();
            if shared.connections.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
                shared.connections.fetch_sub(1, Ordering::AcqRel);
                let mut stream = stream;
                let _ = stream.set_nonblocking(false);
                let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
                let _ = Response::text(503, "too many connections").write_to(&mut stream);
                continue;
            }
            let spawned = std::thread::Builder::new()
                .name("lobby-conn".into())
                .spawn(move || {
                    handle_connection(&shared, stream);
                    shared.connections.fetch_sub(1, Ordering::AcqRel);
                });
            if let Err(e) = spawned {
                self.shared.connections.fetch_sub(1, Ordering::AcqRel);
                tracing::warn!(error = %e, "lobby: cannot start a connection thread");
            }
        }
        Ok(())
    }

    /// The response to `request` (what a connection gets, without the socket).
    pub fn respond(&self, request: &Request) -> Response {
        respond(&self.shared, request)
    }
}

fn handle_connection(shared: &Shared, mut stream: TcpStream) {
    if stream.set_nonblocking(false).is_err()
        || stream.set_read_timeout(Some(IO_TIMEOUT)).is_err()
        || stream.set_write_timeout(Some(IO_TIMEOUT)).is_err()
    {
        return;
    }
    let response = match read_request(&mut stream) {
        Ok(request) => respond(shared, &request),
        Err(response) => response,
    };
    let _ = response.write_to(&mut stream);
}

fn respond(shared: &Shared, request: &Request) -> Response {
    if request.method != "GET" {
        let mut response = Response::text(405, "only GET is served");
        response.headers.push(("Allow", "GET".into()));
        return response;
    }
    if request.path == "/session" {
        return match session(&shared.options, &shared.next_client_id, &request.query) {
            Ok(response) => response,
            Err(response) => response,
        };
    }
    static_file(&shared.options.static_dir, &request.path)
}

/// `GET /session?key=…[&expired=1]`.
fn session(options: &LobbyOptions, next_client_id: &AtomicU64, query: &str) -> Result<Response, Response> {
    let mut key = None;
    let mut expired = false;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=').unwrap_or((pair, "")) {
            ("key", value) => key = Some(value),
            ("expired", "1") => expired = true,
            ("expired", "0") => expired = false,
            ("expired", _) => return Err(Response::text(400, "expired must be 0 or 1")),
            _ => {}
        }
    }
    let key = key
        .and_then(parse_key)
        .ok_or_else(|| Response::text(400, "key must be 64 hex digits: the client's Ed25519 public key"))?;
    let document = read_certificate_document(&options.cert_json).map_err(|e| {
        Response::text(
            503,
            format!(
                "the game server's certificate hashes are not available ({}): {e}",
                options.cert_json.display()
            ),
        )
    })?;
    let now = unix_ms_now();
    let valid_from = if expired {
        now.saturating_sub(EXPIRED_TICKET_AGE_MS)
    } else {
        now
    };
    let client_id = next_client_id.fetch_add(1, Ordering::Relaxed);
    let ticket = demo_ticket_valid_from(&options.issuer, options.gs_id, client_id, &key, valid_from)
        .map_err(|e| Response::text(500, format!("cannot mint a join ticket: {e}")))?;
    let body = SessionResponse {
        url: session_url(options.game_server, &options.path),
        certificate_hashes: document.server_certificate_hashes,
        join_ticket: hex(&ticket.to_bytes()),
        schema_hash: hex(&options.schema_hash),
    };
    let json = serde_json::to_vec(&body).map_err(|e| Response::text(500, e))?;
    Ok(Response::new(200, "application/json", json))
}

/// `https://<addr><path>`, with IPv6 addresses in brackets.
pub fn session_url(game_server: SocketAddr, path: &str) -> String {
    let path = if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    };
    format!("https://{game_server}{path}")
}

fn parse_key(text: &str) -> Option<VerifyingKey> {
    if text.len() != 64 {
        return None;
    }
    let mut bytes = [0u8; 32];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    VerifyingKey::from_bytes(&bytes).ok()
}

fn read_certificate_document(path: &Path) -> io::Result<CertificateHashesDocument> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_CERT_JSON_BYTES + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_CERT_JSON_BYTES {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "document too large"));
    }
    let document: CertificateHashesDocument = serde_json::from_slice(&bytes).map_err(io::Error::other)?;
    if document.server_certificate_hashes.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "no certificate hash in the document",
        ));
    }
    Ok(document)
}

/// Lowercase hex.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Serves `path` from `dir`: `/` is `index.html`; every segment must be a plain name
/// (ASCII letters, digits, `.`, `_`, `-`, not starting with `.`).
fn static_file(dir: &Path, path: &str) -> Response {
    let relative = if path == "/" { "index.html" } else { &path[1..] };
    let plain = |segment: &str| {
        !segment.is_empty()
            && !segment.starts_with('.')
            && segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    };
    if !relative.split('/').all(plain) {
        return Response::text(404, "not found");
    }
    let file = dir.join(relative);
    let Ok(meta) = std::fs::metadata(&file) else {
        return Response::text(404, "not found");
    };
    if !meta.is_file() {
        return Response::text(404, "not found");
    }
    if meta.len() > MAX_STATIC_FILE_BYTES {
        return Response::text(413, "file too large to serve");
    }
    match std::fs::read(&file) {
        Ok(body) => Response::new(200, content_type(&file), body),
        Err(e) => Response::text(500, format!("cannot read {relative}: {e}")),
    }
}

fn content_type(file: &Path) -> &'static str {
    match file.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json" | "map") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("wasm") => "application/wasm",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webtransport::CertificateJson;
    use tickwire_core::webtransport::RotationPolicy;
    use tickwire_core::JoinTicket;

    fn lobby(dir: &Path) -> Lobby {
        std::fs::create_dir_all(dir.join("static")).unwrap();
        std::fs::write(dir.join("static/index.html"), "<!doctype html>").unwrap();
        std::fs::write(dir.join("static/.secret"), "no").unwrap();
        CertificateJson::start_with(
            &dir.join("cert.json"),
            RotationPolicy::default(),
            unix_ms_now(),
            &[7; 32],
        )
        .unwrap();
        Lobby::bind(LobbyOptions {
            listen: "127.0.0.1:0".parse().unwrap(),
            static_dir: dir.join("static"),
            game_server: "127.0.0.1:4433".parse().unwrap(),
            path: "/tickwire".into(),
            cert_json: dir.join("cert.json"),
            issuer: SigningKey::from_bytes(&[9; 32]),
            gs_id: 42,
            schema_hash: [8; 32],
        })
        .unwrap()
    }

    fn get(target: &str) -> Request {
        read_request(&mut format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).unwrap()
    }

    #[test]
    fn session_hands_out_a_ticket_for_the_key_and_the_pinned_hashes() {
        let dir = std::env::temp_dir().join(format!("tickwire-lobby-unit-{}", std::process::id()));
        let lobby = lobby(&dir);
        let client = SigningKey::from_bytes(&[1; 32]).verifying_key();
        for (expired, fresh) in [("", true), ("&expired=1", false)] {
            let response = lobby.respond(&get(&format!("/session?key={}{expired}", hex(client.as_bytes()))));
            assert_eq!(
                response.status,
                200,
                "{}",
                String::from_utf8_lossy(&response.body)
            );
            let json: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
            assert_eq!(json["url"], "https://127.0.0.1:4433/tickwire");
            assert_eq!(json["certificateHashes"][0]["algorithm"], "sha-256");
            assert_eq!(json["certificateHashes"][0]["value"].as_str().unwrap().len(), 44);
            assert_eq!(json["schemaHash"], hex(&[8; 32]));
            let ticket_hex = json["joinTicket"].as_str().unwrap();
            let bytes: Vec<u8> = (0..ticket_hex.len() / 2)
                .map(|i| u8::from_str_radix(&ticket_hex[2 * i..2 * i + 2], 16).unwrap())
                .collect();
            let claims = JoinTicket::from_bytes(&bytes).unwrap().claims().unwrap();
            assert_eq!(claims.client_key, client.to_bytes());
            assert_eq!(claims.gs_id, 42);
            assert_eq!(claims.expires_at_ms > unix_ms_now(), fresh);
        }
        for bad in [
            "/session",
            "/session?key=zz",
            "/session?key=00&expired=1",
            "/session?key=x&expired=2",
        ] {
            assert_eq!(lobby.respond(&get(bad)).status, 400, "{bad}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn static_files_get_only_and_bounded_heads() {
        let dir = std::env::temp_dir().join(format!("tickwire-lobby-static-{}", std::process::id()));
        let lobby = lobby(&dir);
        let index = lobby.respond(&get("/"));
        assert_eq!(
            (index.status, index.content_type),
            (200, "text/html; charset=utf-8")
        );
        for hidden in ["/.secret", "/../cert.json", "/a//b", "/missing.js"] {
            assert_eq!(lobby.respond(&get(hidden)).status, 404, "{hidden}");
        }
        let post = read_request(&mut &b"POST / HTTP/1.1\r\n\r\n"[..]).unwrap();
        assert_eq!(lobby.respond(&post).status, 405);
        let huge = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(MAX_REQUEST_BYTES));
        assert_eq!(read_request(&mut huge.as_bytes()).unwrap_err().status, 431);
        assert_eq!(
            read_request(&mut &b"GET / SPDY/3\r\n\r\n"[..])
                .unwrap_err()
                .status,
            505
        );
        assert_eq!(read_request(&mut &b"GET /"[..]).unwrap_err().status, 400);
        // Over a socket, end to end.
        let addr = lobby.local_addr().unwrap();
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                lobby
                    .serve(&stop, Some(Instant::now() + Duration::from_secs(10)))
                    .unwrap()
            });
            let mut conn = TcpStream::connect(addr).unwrap();
            conn.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            let mut reply = String::new();
            conn.read_to_string(&mut reply).unwrap();
            assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
            assert!(reply.ends_with("<!doctype html>"));
            stop.store(true, Ordering::Relaxed);
        });
        let _ = std::fs::remove_dir_all(&dir);
    }
}
