//! Request heads: [`parse`] runs httparse over the bytes read so far and answers
//! [`Status::Partial`] until the blank line that ends the head has arrived. The [`Request`] it
//! returns borrows the method, target and every header from those bytes; nothing is copied.

use super::HttpError;

/// The largest request head accepted (request line and headers), in bytes.
pub const MAX_HEAD: usize = 8 * 1024;
/// The most headers a request may have.
pub const MAX_HEADERS: usize = 64;

/// A parsed request head, borrowing from the buffer it was parsed from.
#[derive(Debug, Clone, Copy)]
pub struct Request<'b> {
    pub method: &'b str,
    /// The request target as sent: path and query.
    pub target: &'b str,
    /// The minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    headers: [httparse::Header<'b>; MAX_HEADERS],
    header_count: usize,
}

/// The outcome of feeding bytes to [`parse`].
// The request (with room for every header) lives on the stack for one call; boxing it would
// allocate for every request.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Copy)]
pub enum Status<'b> {
    /// The head is not complete yet: read more.
    Partial,
    /// A whole head, and how many bytes of the input it took (a body may follow).
    Complete(Request<'b>, usize),
}

/// Parses a request head from the start of `buf`.
///
/// RFC 9112 2.2: "A recipient that receives whitespace between the start-line and the first
/// header field MUST either reject the message as invalid or ..." — httparse rejects it, as it
/// rejects every other malformed head; we answer 400.
pub fn parse(buf: &[u8]) -> Result<Status<'_>, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let (method, target, version, count, head_len) = {
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(buf) {
            Ok(httparse::Status::Partial) => {
                return if buf.len() >= MAX_HEAD {
                    Err(HttpError::HeadTooLarge)
                } else {
                    Ok(Status::Partial)
                };
            }
            Ok(httparse::Status::Complete(n)) => (
                req.method.unwrap_or_default(),
                req.path.unwrap_or_default(),
                req.version.unwrap_or_default(),
                req.headers.len(),
                n,
            ),
            Err(httparse::Error::TooManyHeaders) => return Err(HttpError::HeadTooLarge),
            Err(_) => return Err(HttpError::BadRequest("malformed HTTP request")),
        }
    };
    if head_len > MAX_HEAD {
        return Err(HttpError::HeadTooLarge);
    }
    Ok(Status::Complete(
        Request {
            method,
            target,
            minor_version: version,
            headers,
            header_count: count,
        },
        head_len,
    ))
}

impl<'b> Request<'b> {
    /// Every header, in the order sent; names as sent (compare case-insensitively).
    pub fn headers(&self) -> impl Iterator<Item = (&'b str, &'b [u8])> + '_ {
        self.headers[..self.header_count]
            .iter()
            .map(|h| (h.name, h.value))
    }

    /// The first header with this name (case-insensitive), as text if it is UTF-8.
    pub fn header(&self, name: &str) -> Option<&'b str> {
        self.header_all(name).next()
    }

    /// Every value of a header, for headers that may repeat (`Sec-WebSocket-Protocol`).
    pub fn header_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'b str> + 'a {
        self.headers()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .filter_map(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// Whether a comma-separated header (`Connection`, `Upgrade`) holds `token`, in any case.
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.header_all(name)
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// The path without the query string.
    pub fn path(&self) -> &'b str {
        self.target.split('?').next().unwrap_or("")
    }

    /// The raw query string (after `?`), if any.
    pub fn query(&self) -> Option<&'b str> {
        self.target.split_once('?').map(|(_, q)| q)
    }

    /// The percent-decoded value of a query parameter (see [`super::query::param`]).
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query().and_then(|q| super::query::param(q, name))
    }

    /// Whether the client asks for a WebSocket upgrade at all (an `Upgrade: websocket` header).
    pub fn wants_websocket(&self) -> bool {
        self.has_token("upgrade", "websocket")
    }

    /// Whether the connection may carry another request after this one (RFC 9112 9.3): HTTP/1.1
    /// unless the client sent `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`.
    pub fn keep_alive(&self) -> bool {
        if self.has_token("connection", "close") {
            return false;
        }
        self.minor_version >= 1 || self.has_token("connection", "keep-alive")
    }

    /// Whether the client waits for `100 Continue` before sending its body (RFC 9110 10.1.1).
    /// An HTTP/1.0 client cannot understand an interim answer, so it is never sent one.
    pub fn expects_continue(&self) -> bool {
        self.minor_version >= 1
            && self
                .header("expect")
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("100-continue"))
    }

    /// The length of the body that follows the head.
    ///
    /// RFC 9112 6.3: `Content-Length = 1*DIGIT`; several different values, or one that is not
    /// all digits (`+1`, `-1`, `1,2`, ` `), make the framing ambiguous behind a proxy (request
    /// smuggling), so they are refused. `Transfer-Encoding` (chunked bodies) is not supported:
    /// 411, asking for a `Content-Length`.
    pub fn body_length(&self) -> Result<usize, HttpError> {
        if self.header("transfer-encoding").is_some() {
            return Err(HttpError::LengthRequired);
        }
        let mut length = None;
        for value in self.header_all("content-length") {
            let value = value.trim_matches([' ', '\t']);
            if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                return Err(HttpError::BadRequest(
                    "Content-Length must be decimal digits only",
                ));
            }
            let n: usize = value
                .parse()
                .map_err(|_| HttpError::BadRequest("Content-Length is too large"))?;
            if length.is_some_and(|l| l != n) {
                return Err(HttpError::BadRequest("conflicting Content-Length headers"));
            }
            length = Some(n);
        }
        Ok(length.unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn parse_all(text: &str) -> Request<'_> {
        match parse(text.as_bytes()).expect("parses") {
            Status::Complete(r, n) => {
                assert_eq!(n, text.len());
                r
            }
            Status::Partial => panic!("partial"),
        }
    }

    const GET: &str = "GET /ws?subscribe=a HTTP/1.1\r\nHost: example.com\r\n\
        Connection: keep-alive, Upgrade\r\nX-Two: 1\r\nx-two: 2\r\n\r\n";

    #[test]
    fn a_head_borrows_its_parts() {
        let req = parse_all(GET);
        assert_eq!(
            (req.method, req.path(), req.query()),
            ("GET", "/ws", Some("subscribe=a"))
        );
        assert_eq!(req.header("HOST"), Some("example.com"));
        assert_eq!(req.header_all("x-two").collect::<Vec<_>>(), ["1", "2"]);
        assert!(req.has_token("connection", "upgrade"));
        assert_eq!(req.query_param("subscribe").as_deref(), Some("a"));
        assert_eq!(req.headers().count(), 4);
    }

    #[test]
    fn every_prefix_is_partial() {
        for i in 0..GET.len() {
            assert!(
                matches!(parse(&GET.as_bytes()[..i]), Ok(Status::Partial)),
                "at {i}"
            );
        }
    }

    #[test]
    fn keep_alive_follows_the_version_and_connection_header() {
        let cases = [
            ("GET / HTTP/1.1\r\n\r\n", true),
            ("GET / HTTP/1.1\r\nConnection: close\r\n\r\n", false),
            (
                "GET / HTTP/1.1\r\nConnection: Upgrade, Close\r\n\r\n",
                false,
            ),
            ("GET / HTTP/1.0\r\n\r\n", false),
            ("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true),
        ];
        for (text, keep) in cases {
            assert_eq!(parse_all(text).keep_alive(), keep, "{text:?}");
        }
    }

    #[test]
    fn content_length_is_digits_only_and_unambiguous() {
        let len = |headers: &str| {
            let text = format!("POST / HTTP/1.1\r\n{headers}\r\n");
            let req = parse_all(&text);
            req.body_length().map_err(|e| e.status())
        };
        assert_eq!(len(""), Ok(0));
        assert_eq!(len("Content-Length: 12\r\n"), Ok(12));
        assert_eq!(len("Content-Length: 5\r\nContent-Length: 5\r\n"), Ok(5));
        for bad in [
            "+1",
            "-1",
            "1,2",
            "0x10",
            "1 2",
            "",
            "99999999999999999999999",
        ] {
            assert_eq!(
                len(&format!("Content-Length: {bad}\r\n")),
                Err(400),
                "{bad}"
            );
        }
        assert_eq!(len("Content-Length: 1\r\nContent-Length: 2\r\n"), Err(400));
        assert_eq!(len("Transfer-Encoding: chunked\r\n"), Err(411));
    }

    #[test]
    fn oversized_heads_and_garbage_are_refused() {
        let big = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n", "a".repeat(MAX_HEAD));
        assert!(matches!(
            parse(big.as_bytes()),
            Err(HttpError::HeadTooLarge)
        ));
        let many: String = (0..MAX_HEADERS + 1)
            .map(|i| format!("X-{i}: v\r\n"))
            .collect();
        let req = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert!(matches!(
            parse(req.as_bytes()),
            Err(HttpError::HeadTooLarge)
        ));
        let tls = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n";
        assert_eq!(parse(tls).map(|_| ()).unwrap_err().status(), 400);
    }

    #[test]
    fn only_http_1_1_clients_are_told_to_continue() {
        let expect = "Expect: 100-Continue\r\nContent-Length: 5\r\n\r\n";
        assert!(parse_all(&format!("POST / HTTP/1.1\r\n{expect}")).expects_continue());
        assert!(!parse_all(&format!("POST / HTTP/1.0\r\n{expect}")).expects_continue());
        assert!(!parse_all("POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n").expects_continue());
    }

    #[test]
    fn http_1_0_parses() {
        assert_eq!(parse_all("GET / HTTP/1.0\r\n\r\n").minor_version, 0);
    }
}
