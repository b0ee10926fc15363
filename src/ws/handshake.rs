//! The opening handshake (RFC 6455 section 4): an HTTP/1.1 request head in, a 101 or an error
//! response out.
//!
//! [`parse_request`] is incremental: it answers [`Head::Partial`] until the blank line that ends
//! the head has arrived, and refuses heads over [`MAX_HEAD`] bytes. [`validate_upgrade`] checks
//! the upgrade headers of a parsed request; [`response_101`] and [`error_response`] build replies.

use base64::Engine as _;
use sha1::{Digest, Sha1};

/// The largest request head accepted (request line and headers).
pub const MAX_HEAD: usize = 8 * 1024;
/// The most headers a request may have.
pub const MAX_HEADERS: usize = 64;

/// The GUID appended to the client's key (RFC 6455 1.3).
const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// A parsed HTTP request head, owned so it can outlive the read buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The request target as sent: path and query.
    pub target: String,
    /// (name, value) in the order sent; names as sent (compare case-insensitively).
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Request {
    /// The first header with this name (case-insensitive), as text if it is UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// Every value of a header, for headers that may repeat (`Sec-WebSocket-Protocol`).
    pub fn header_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .filter_map(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// The path without the query string.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// The raw query string (after `?`), if any.
    pub fn query(&self) -> Option<&str> {
        self.target.split_once('?').map(|(_, q)| q)
    }

    /// Whether the client asks for a WebSocket upgrade at all (an `Upgrade: websocket` header).
    /// A request that does is held to every rule in [`validate_upgrade`].
    pub fn wants_websocket(&self) -> bool {
        self.header_all("upgrade").any(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("websocket"))
        })
    }

    /// The subprotocols the client offered, in its order of preference.
    pub fn offered_protocols(&self) -> impl Iterator<Item = &str> {
        self.header_all("sec-websocket-protocol")
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|p| !p.is_empty())
    }

    /// The `Content-Length` of the body, `Ok(0)` when absent.
    pub fn content_length(&self) -> Result<usize, HandshakeError> {
        let mut lengths = self.header_all("content-length");
        let Some(first) = lengths.next() else {
            return Ok(0);
        };
        if lengths.next().is_some() {
            return Err(HandshakeError::BadRequest("more than one Content-Length"));
        }
        first
            .trim()
            .parse()
            .map_err(|_| HandshakeError::BadRequest("Content-Length is not a number"))
    }
}

/// The outcome of feeding bytes to [`parse_request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Head {
    /// The head is not complete yet.
    Partial,
    /// A whole head, and how many bytes of the input it took (a body may follow).
    Complete(Request, usize),
}

/// Why a handshake was refused, each with the HTTP status it is answered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeError {
    /// 400: malformed HTTP or a broken upgrade header.
    BadRequest(&'static str),
    /// 405: an upgrade with a method other than GET.
    MethodNotAllowed,
    /// 426: a `Sec-WebSocket-Version` other than 13.
    UnsupportedVersion,
    /// 431: a request head over [`MAX_HEAD`] bytes or with too many headers.
    HeadTooLarge,
}

impl HandshakeError {
    pub fn status(&self) -> u16 {
        match self {
            HandshakeError::BadRequest(_) => 400,
            HandshakeError::MethodNotAllowed => 405,
            HandshakeError::UnsupportedVersion => 426,
            HandshakeError::HeadTooLarge => 431,
        }
    }

    pub fn message(&self) -> &'static str {
        match self {
            HandshakeError::BadRequest(m) => m,
            HandshakeError::MethodNotAllowed => "a WebSocket upgrade must use GET",
            HandshakeError::UnsupportedVersion => "only Sec-WebSocket-Version: 13 is supported",
            HandshakeError::HeadTooLarge => "request head too large",
        }
    }

    /// The full HTTP response for this error.
    pub fn response(&self) -> Vec<u8> {
        let extra: &[(&str, &str)] = match self {
            HandshakeError::UnsupportedVersion => &[("Sec-WebSocket-Version", "13")],
            HandshakeError::MethodNotAllowed => &[("Allow", "GET")],
            _ => &[],
        };
        error_response(self.status(), extra, self.message())
    }
}

impl std::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status(), self.message())
    }
}

impl std::error::Error for HandshakeError {}

/// Parses a request head from the start of `buf`.
pub fn parse_request(buf: &[u8]) -> Result<Head, HandshakeError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Partial) => {
            if buf.len() >= MAX_HEAD {
                Err(HandshakeError::HeadTooLarge)
            } else {
                Ok(Head::Partial)
            }
        }
        Ok(httparse::Status::Complete(n)) => {
            if n > MAX_HEAD {
                return Err(HandshakeError::HeadTooLarge);
            }
            if req.version != Some(1) {
                return Err(HandshakeError::BadRequest("HTTP/1.1 is required"));
            }
            let request = Request {
                method: req.method.unwrap_or_default().to_owned(),
                target: req.path.unwrap_or_default().to_owned(),
                headers: req
                    .headers
                    .iter()
                    .map(|h| (h.name.to_owned(), h.value.to_vec()))
                    .collect(),
            };
            Ok(Head::Complete(request, n))
        }
        Err(httparse::Error::TooManyHeaders) => Err(HandshakeError::HeadTooLarge),
        Err(_) => Err(HandshakeError::BadRequest("malformed HTTP request")),
    }
}

/// Checks an upgrade request (RFC 6455 4.2.1) and returns the `Sec-WebSocket-Accept` value.
pub fn validate_upgrade(req: &Request) -> Result<String, HandshakeError> {
    if req.method != "GET" {
        return Err(HandshakeError::MethodNotAllowed);
    }
    // "A |Host| header field containing the server's authority."
    if req.header("host").is_none_or(|h| h.trim().is_empty()) {
        return Err(HandshakeError::BadRequest("missing Host header"));
    }
    if !req.wants_websocket() {
        return Err(HandshakeError::BadRequest("missing Upgrade: websocket"));
    }
    // "A |Connection| header field that includes the token "Upgrade"", case-insensitively.
    let connection_upgrade = req
        .header_all("connection")
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    if !connection_upgrade {
        return Err(HandshakeError::BadRequest("missing Connection: Upgrade"));
    }
    match req.header("sec-websocket-version").map(str::trim) {
        Some("13") => {}
        Some(_) => return Err(HandshakeError::UnsupportedVersion),
        None => return Err(HandshakeError::BadRequest("missing Sec-WebSocket-Version")),
    }
    // "The value of this header field MUST be a nonce consisting of a randomly selected 16-byte
    // value that has been base64-encoded."
    let key = req
        .header("sec-websocket-key")
        .map(str::trim)
        .ok_or(HandshakeError::BadRequest("missing Sec-WebSocket-Key"))?;
    match base64::engine::general_purpose::STANDARD.decode(key) {
        Ok(bytes) if bytes.len() == 16 => Ok(accept_key(key)),
        _ => Err(HandshakeError::BadRequest(
            "Sec-WebSocket-Key is not 16 bytes of base64",
        )),
    }
}

/// `base64(sha1(key + GUID))` (RFC 6455 4.2.2).
pub fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(ACCEPT_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// The `101 Switching Protocols` response, with the chosen subprotocol if any.
pub fn response_101(accept: &str, protocol: Option<&str>) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n"
    );
    if let Some(p) = protocol {
        out.push_str("Sec-WebSocket-Protocol: ");
        out.push_str(p);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    out.into_bytes()
}

/// A plain-text error response that closes the connection.
pub fn error_response(status: u16, extra_headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    http_response(
        status,
        "text/plain; charset=utf-8",
        extra_headers,
        format!("{body}\n").as_bytes(),
    )
}

/// A complete HTTP/1.1 response with `Connection: close`.
pub fn http_response(
    status: u16,
    content_type: &str,
    extra_headers: &[(&str, &str)],
    body: &[u8],
) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n",
        reason_phrase(status),
        body.len()
    );
    for (name, value) in extra_headers {
        out.push_str(name);
        out.push_str(": ");
        out.push_str(value);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Payload Too Large",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str =
        "GET /ws?subscribe=a HTTP/1.1\r\nHost: example.com\r\nUpgrade: WebSocket\r\n\
        Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: chat, tickwire.v1\r\n\r\n";

    fn parse_all(text: &str) -> Request {
        match parse_request(text.as_bytes()).unwrap() {
            Head::Complete(r, n) => {
                assert_eq!(n, text.len());
                r
            }
            Head::Partial => panic!("partial"),
        }
    }

    #[test]
    fn rfc_accept_key_example() {
        // RFC 6455 1.3.
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn a_good_request_parses_and_validates() {
        let req = parse_all(GOOD);
        assert_eq!(req.path(), "/ws");
        assert_eq!(req.query(), Some("subscribe=a"));
        assert!(req.wants_websocket());
        assert_eq!(
            req.offered_protocols().collect::<Vec<_>>(),
            vec!["chat", "tickwire.v1"]
        );
        assert_eq!(
            validate_upgrade(&req).unwrap(),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        let resp = String::from_utf8(response_101("abc", Some("tickwire.v1"))).unwrap();
        assert!(resp.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
        assert!(resp.contains("Sec-WebSocket-Accept: abc\r\n"));
        assert!(resp.contains("Sec-WebSocket-Protocol: tickwire.v1\r\n"));
        assert!(resp.ends_with("\r\n\r\n"));
    }

    #[test]
    fn every_prefix_is_partial() {
        for i in 0..GOOD.len() {
            assert_eq!(
                parse_request(&GOOD.as_bytes()[..i]),
                Ok(Head::Partial),
                "at {i}"
            );
        }
    }

    fn with(replace: &str, by: &str) -> Request {
        parse_all(&GOOD.replace(replace, by))
    }

    #[test]
    fn each_broken_header_is_refused_with_its_status() {
        let cases: &[(&str, &str, u16)] = &[
            ("GET /ws", "POST /ws", 405),
            ("Host: example.com\r\n", "", 400),
            ("Upgrade: WebSocket", "Upgrade: h2c", 400),
            ("keep-alive, Upgrade", "keep-alive", 400),
            ("Version: 13", "Version: 8", 426),
            ("Sec-WebSocket-Version: 13\r\n", "", 400),
            ("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZQ==", 400),
            ("dGhlIHNhbXBsZSBub25jZQ==", "not base64!", 400),
            ("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "", 400),
        ];
        for (from, to, status) in cases {
            let err = validate_upgrade(&with(from, to)).expect_err(to);
            assert_eq!(err.status(), *status, "{from} -> {to}");
        }
        let resp = String::from_utf8(HandshakeError::UnsupportedVersion.response()).unwrap();
        assert!(resp.starts_with("HTTP/1.1 426 "));
        assert!(resp.contains("Sec-WebSocket-Version: 13\r\n"));
    }

    #[test]
    fn http_1_0_and_garbage_are_bad_requests() {
        let old = GOOD.replace("HTTP/1.1", "HTTP/1.0");
        assert_eq!(parse_request(old.as_bytes()).unwrap_err().status(), 400);
        assert_eq!(
            parse_request(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n")
                .unwrap_err()
                .status(),
            400
        );
    }

    #[test]
    fn heads_over_8_kib_are_refused() {
        let big = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n", "a".repeat(MAX_HEAD));
        assert_eq!(
            parse_request(big.as_bytes()),
            Err(HandshakeError::HeadTooLarge)
        );
        let many: String = (0..MAX_HEADERS + 1)
            .map(|i| format!("X-{i}: v\r\n"))
            .collect();
        let req = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert_eq!(
            parse_request(req.as_bytes()),
            Err(HandshakeError::HeadTooLarge)
        );
    }
}
