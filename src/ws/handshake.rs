//! The opening handshake (RFC 6455 section 4): what WebSocket adds to an HTTP request. The head
//! itself is parsed by [`crate::http`]; [`validate_upgrade`] checks its upgrade headers and
//! returns the `Sec-WebSocket-Accept` key, [`negotiate_deflate`] picks the client's
//! permessage-deflate offer if any, [`response_101`] builds the answer.

use base64::Engine as _;
use sha1::{Digest, Sha1};

use super::deflate::{self, DeflateParams};
use crate::http::{Request, Response};

/// The GUID appended to the client's key (RFC 6455 1.3).
const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Why an upgrade was refused, each with the HTTP status it is answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandshakeError {
    /// 400: a missing or broken upgrade header (the message says which).
    BadRequest(&'static str),
    /// 405: an upgrade with a method other than GET.
    MethodNotAllowed,
    /// 426: a `Sec-WebSocket-Version` other than 13.
    UnsupportedVersion,
}

impl HandshakeError {
    pub fn status(&self) -> u16 {
        match self {
            HandshakeError::BadRequest(_) => 400,
            HandshakeError::MethodNotAllowed => 405,
            HandshakeError::UnsupportedVersion => 426,
        }
    }

    pub fn message(&self) -> &'static str {
        match self {
            HandshakeError::BadRequest(m) => m,
            HandshakeError::MethodNotAllowed => "a WebSocket upgrade must use GET",
            HandshakeError::UnsupportedVersion => "only Sec-WebSocket-Version: 13 is supported",
        }
    }

    /// The HTTP answer to this refusal.
    pub fn response(&self) -> Response {
        let r = Response::text(self.status(), self.message());
        match self {
            HandshakeError::UnsupportedVersion => r.with_header("Sec-WebSocket-Version", "13"),
            HandshakeError::MethodNotAllowed => r.with_header("Allow", "GET"),
            HandshakeError::BadRequest(_) => r,
        }
    }
}

impl std::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status(), self.message())
    }
}

impl std::error::Error for HandshakeError {}

/// Checks an upgrade request (RFC 6455 4.2.1) and returns the `Sec-WebSocket-Accept` value.
pub fn validate_upgrade(req: &Request<'_>) -> Result<String, HandshakeError> {
    // "The method of the request MUST be GET, and the HTTP version MUST be at least 1.1."
    if req.method != "GET" {
        return Err(HandshakeError::MethodNotAllowed);
    }
    if req.minor_version < 1 {
        return Err(HandshakeError::BadRequest(
            "a WebSocket upgrade needs HTTP/1.1",
        ));
    }
    // "A |Host| header field containing the server's authority."
    if req.header("host").is_none_or(|h| h.trim().is_empty()) {
        return Err(HandshakeError::BadRequest("missing Host header"));
    }
    if !req.wants_websocket() {
        return Err(HandshakeError::BadRequest("missing Upgrade: websocket"));
    }
    // "A |Connection| header field that includes the token "Upgrade"", case-insensitively.
    if !req.has_token("connection", "upgrade") {
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

/// The subprotocols the client offered, in its order of preference.
pub fn offered_protocols<'a, 'b>(req: &'a Request<'b>) -> impl Iterator<Item = &'b str> + 'a {
    req.header_all("sec-websocket-protocol")
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
}

/// The permessage-deflate offer to accept among the request's `Sec-WebSocket-Extensions`
/// headers (all of them, in order), if any is acceptable.
pub fn negotiate_deflate(req: &Request<'_>) -> Option<DeflateParams> {
    deflate::negotiate(req.header_all("sec-websocket-extensions"))
}

/// `base64(sha1(key + GUID))` (RFC 6455 4.2.2).
pub fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(ACCEPT_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// The `101 Switching Protocols` response, with the chosen subprotocol and the accepted
/// extensions (a `Sec-WebSocket-Extensions` value such as [`DeflateParams::response`]) if any.
pub fn response_101(accept: &str, protocol: Option<&str>, extensions: Option<&str>) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n"
    );
    if let Some(p) = protocol {
        out.push_str("Sec-WebSocket-Protocol: ");
        out.push_str(p);
        out.push_str("\r\n");
    }
    if let Some(e) = extensions {
        out.push_str("Sec-WebSocket-Extensions: ");
        out.push_str(e);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{parse, Status};

    const GOOD: &str =
        "GET /ws?subscribe=a HTTP/1.1\r\nHost: example.com\r\nUpgrade: WebSocket\r\n\
        Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: chat, tickwire.v1\r\n\r\n";

    fn check(text: &str) -> Result<String, HandshakeError> {
        match parse(text.as_bytes()).expect("parses") {
            Status::Complete(req, _) => validate_upgrade(&req),
            Status::Partial => panic!("partial"),
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
    fn a_good_request_validates() {
        assert_eq!(check(GOOD).unwrap(), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        let Ok(Status::Complete(req, _)) = parse(GOOD.as_bytes()) else {
            panic!("parses")
        };
        assert_eq!(
            offered_protocols(&req).collect::<Vec<_>>(),
            ["chat", "tickwire.v1"]
        );
        let resp = String::from_utf8(response_101("abc", Some("tickwire.v1"), None)).unwrap();
        assert!(resp.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
        assert!(resp.contains("Sec-WebSocket-Accept: abc\r\n"));
        assert!(resp.contains("Sec-WebSocket-Protocol: tickwire.v1\r\n"));
        assert!(!resp.contains("Extensions"));
        assert!(resp.ends_with("\r\n\r\n"));
        // No extension offered, none accepted.
        assert_eq!(negotiate_deflate(&req), None);
    }

    #[test]
    fn deflate_offers_over_several_headers() {
        let text = GOOD.replace(
            "Sec-WebSocket-Version: 13\r\n",
            "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: x-webkit-deflate-frame, \
             permessage-deflate; server_max_window_bits=8\r\nX-Other: 1\r\n\
             sec-websocket-extensions: permessage-deflate; client_max_window_bits; \
             server_max_window_bits=11\r\n",
        );
        let Ok(Status::Complete(req, _)) = parse(text.as_bytes()) else {
            panic!("parses")
        };
        let params = negotiate_deflate(&req).expect("the second header's offer");
        assert_eq!(params.server_window_bits(), 11);
        let resp = String::from_utf8(response_101("abc", None, Some(&params.response()))).unwrap();
        assert!(
            resp.contains(
                "\r\nSec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; \
                 server_max_window_bits=11\r\n"
            ),
            "{resp}"
        );
    }

    #[test]
    fn each_broken_header_is_refused_with_its_status() {
        let cases: &[(&str, &str, u16)] = &[
            ("GET /ws", "POST /ws", 405),
            ("HTTP/1.1", "HTTP/1.0", 400),
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
            let err = check(&GOOD.replace(from, to)).expect_err(to);
            assert_eq!(err.status(), *status, "{from} -> {to}");
        }
        let resp =
            String::from_utf8(HandshakeError::UnsupportedVersion.response().encode(false)).unwrap();
        assert!(resp.starts_with("HTTP/1.1 426 "));
        assert!(resp.contains("Sec-WebSocket-Version: 13\r\n"));
    }
}
