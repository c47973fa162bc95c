//! The admin endpoint over real HTTP on 127.0.0.1: status codes, bodies, content types,
//! shutdown.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use tickwire_admin::{AdminServer, AdminState, ServerKind, Snapshot};

/// A broken server fails the test after this long instead of hanging it.
const TIMEOUT: Duration = Duration::from_secs(10);

/// A parsed HTTP response.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `method path` as HTTP/1.0 (the server closes the connection after answering) and
/// reads the whole response.
fn request(addr: SocketAddr, method: &str, path: &str, extra_headers: &str) -> Reply {
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT).expect("connect to the admin endpoint");
    stream
        .set_read_timeout(Some(TIMEOUT))
        .expect("set a read timeout");
    stream
        .set_write_timeout(Some(TIMEOUT))
        .expect("set a write timeout");
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: test\r\n{extra_headers}\r\n"
    )
    .expect("send the request");
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .expect("read the response before the timeout");
    let raw = String::from_utf8(raw).expect("a UTF-8 response");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a header block");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("a status line");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("a status code in {status_line:?}"));
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_owned(),
    }
}

fn get(addr: SocketAddr, path: &str) -> Reply {
    request(addr, "GET", path, "")
}

fn start(kind: ServerKind) -> (Arc<AdminState>, AdminServer, SocketAddr) {
    let state = AdminState::new(kind);
    let server = AdminServer::start("127.0.0.1:0".parse().unwrap(), Arc::clone(&state))
        .expect("bind a free port on 127.0.0.1");
    let addr = server.local_addr();
    assert_ne!(addr.port(), 0, "local_addr is the bound port");
    (state, server, addr)
}

#[test]
fn health_and_ready_follow_the_state() {
    let (state, _server, addr) = start(ServerKind::GameServer);

    let health = get(addr, "/health");
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));
    let ready = get(addr, "/ready");
    assert_eq!((ready.status, ready.body.as_str()), (503, "not ready\n"));

    state.set_ready(true);
    let ready = get(addr, "/ready");
    assert_eq!((ready.status, ready.body.as_str()), (200, "ready\n"));
    state.set_ready(false);
    assert_eq!(get(addr, "/ready").status, 503);
    state.set_ready(true);

    state.start_draining();
    let health = get(addr, "/health");
    assert_eq!((health.status, health.body.as_str()), (503, "draining\n"));
    let ready = get(addr, "/ready");
    assert_eq!((ready.status, ready.body.as_str()), (503, "draining\n"));
}

#[test]
fn metrics_render_the_latest_snapshot() {
    let (state, server, addr) = start(ServerKind::GameServer);

    // Prometheus asks for OpenMetrics.
    let openmetrics = "Accept: application/openmetrics-text;version=1.0.0,text/plain;q=0.5\r\n";
    let metrics = request(addr, "GET", "/metrics", openmetrics);
    assert_eq!(metrics.status, 200);
    assert_eq!(
        metrics.header("Content-Type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    assert!(
        metrics.body.contains("tickwire_info{kind=\"game_server\"} 1\n"),
        "{}",
        metrics.body
    );
    assert!(metrics.body.contains("tickwire_ready 0\n"));
    assert!(metrics.body.ends_with("# EOF\n"));

    let mut snapshot = Snapshot::idle(ServerKind::GameServer);
    snapshot.endpoint.ticks = 1234;
    state.publish(snapshot);
    state.set_ready(true);
    let metrics = request(addr, "GET", "/metrics?fresh=1", openmetrics);
    assert!(
        metrics.body.contains("tickwire_ticks_total 1234\n"),
        "{}",
        metrics.body
    );
    assert!(metrics.body.contains("tickwire_ready 1\n"));

    // Anyone else (curl, promtool) gets the Prometheus text format.
    let text = get(addr, "/metrics");
    assert_eq!(text.status, 200);
    assert_eq!(
        text.header("Content-Type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert!(text.body.contains("tickwire_info{kind=\"game_server\"} 1\n"));
    assert!(text.body.contains("# TYPE tickwire_ticks_total counter\n"));

    let head = request(addr, "HEAD", "/metrics", "");
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty(), "HEAD has no body");

    server.shutdown();
}

#[test]
fn other_paths_and_methods_are_refused() {
    let (_state, _server, addr) = start(ServerKind::VerificationServer);
    assert_eq!(get(addr, "/nope").status, 404);
    assert_eq!(get(addr, "/").status, 404);
    let post = request(addr, "POST", "/metrics", "Content-Length: 0\r\n");
    assert_eq!(post.status, 405);
    assert_eq!(post.header("Allow"), Some("GET, HEAD"));
}

#[test]
fn dropping_the_server_stops_it() {
    let (_state, server, addr) = start(ServerKind::GameServer);
    assert_eq!(get(addr, "/health").status, 200);
    drop(server);
    // The listener is closed once the thread is joined and the server dropped: a new
    // connection is refused, or (if it raced the close) gets no answer.
    match TcpStream::connect_timeout(&addr, TIMEOUT) {
        Err(_) => {}
        Ok(mut stream) => {
            stream.set_read_timeout(Some(TIMEOUT)).unwrap();
            let _ = stream.write_all(b"GET /health HTTP/1.0\r\n\r\n");
            let mut raw = Vec::new();
            let _ = stream.read_to_end(&mut raw);
            assert!(
                raw.is_empty(),
                "answered after shutdown: {}",
                String::from_utf8_lossy(&raw)
            );
        }
    }
}
