//! A malformed or refused handshake gets an HTTP error with a body and the connection closed;
//! the server goes on serving everyone else.

mod util;

use std::io::Write;
use std::net::SocketAddr;

use tungstenite::Message;

/// Sends `request` and returns the whole response (the server closes after it).
fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = util::raw(addr);
    s.write_all(request).expect("write");
    String::from_utf8_lossy(&util::read_to_close(&mut s)).into_owned()
}

fn status_and_body(resp: &str) -> (u16, &str) {
    let status = resp
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {resp:?}"));
    let body = resp.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body)
}

fn still_serves(addr: SocketAddr) {
    let mut ws = util::connect(addr, "/");
    ws.send(Message::Text("still here".into())).expect("send");
    assert_eq!(ws.read().expect("echo"), Message::Text("still here".into()));
}

#[test]
fn broken_handshakes_get_their_status_and_a_body() {
    let server = util::start_echo(|_| {});
    let addr = server.local_addrs()[0];
    let good = util::upgrade_request("/");
    let cases: Vec<(String, u16, &str)> = vec![
        (
            good.replace("Connection: Upgrade", "Connection: keep-alive"),
            400,
            "Connection: Upgrade",
        ),
        (good.replace("Host: localhost\r\n", ""), 400, "Host"),
        (
            good.replace("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8"),
            426,
            "13",
        ),
        (
            good.replace("dGhlIHNhbXBsZSBub25jZQ==", "c2hvcnQ="),
            400,
            "16 bytes",
        ),
        (good.replace("GET /", "POST /"), 405, "GET"),
        (good.replace("HTTP/1.1", "HTTP/1.0"), 400, "HTTP/1.1"),
        (
            "\u{16}\u{3}\u{1}garbage that is not HTTP\r\n\r\n".to_string(),
            400,
            "malformed",
        ),
        (
            format!(
                "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
                "a".repeat(9000)
            ),
            431,
            "too large",
        ),
        // A plain GET is not an upgrade: the echo endpoint says how to talk to it.
        (
            "GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_string(),
            426,
            "WebSocket",
        ),
    ];
    for (request, status, body_has) in &cases {
        let resp = exchange(addr, request.as_bytes());
        let (got, body) = status_and_body(&resp);
        assert_eq!(got, *status, "request {request:?} got {resp:?}");
        assert!(
            body.contains(body_has),
            "body {body:?} should mention {body_has:?}"
        );
        if *status == 426 && request.contains("Version: 8") {
            assert!(resp.contains("Sec-WebSocket-Version: 13\r\n"), "{resp}");
        }
    }
    assert!(server.stats().handshake_errors >= 8);
    still_serves(addr);
}

#[test]
fn a_client_that_never_finishes_its_handshake_is_timed_out() {
    let server = util::start_echo(|c| c.handshake_timeout = std::time::Duration::from_millis(300));
    let addr = server.local_addrs()[0];
    let mut s = util::raw(addr);
    s.write_all(b"GET / HTTP/1.1\r\nHost: slow").expect("write");
    let resp = String::from_utf8_lossy(&util::read_to_close(&mut s)).into_owned();
    assert!(resp.starts_with("HTTP/1.1 408 "), "{resp}");
    assert_eq!(server.stats().handshake_timeouts, 1);
    still_serves(addr);
}
