//! Responses: a status, a content type, extra headers and a body, encoded with
//! `Content-Length` and a `Connection` header saying whether the connection stays open.

/// A complete HTTP/1.1 response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        Response {
            status,
            content_type: content_type.to_owned(),
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// A short plain-text body, the way every error is answered.
    pub fn text(status: u16, body: &str) -> Self {
        Self::new(status, "text/plain; charset=utf-8", format!("{body}\n"))
    }

    pub fn json(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Self::new(status, "application/json", body)
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Whether answering with this response should end the connection whatever the client
    /// asked: after a malformed request or a refused body, the stream may not be where the
    /// client thinks it is.
    pub fn ends_connection(&self) -> bool {
        matches!(self.status, 400 | 408 | 411 | 413 | 431 | 501)
    }

    /// The bytes on the wire. `keep_alive` says whether the connection stays open after it.
    ///
    /// Written piece by piece into one buffer of the right size rather than with `write!`: for a
    /// small publication over keep-alive, `core::fmt` was a tenth of the server's user time.
    pub fn encode(&self, keep_alive: bool) -> Vec<u8> {
        let extra: usize = self
            .headers
            .iter()
            .map(|(n, v)| n.len() + v.len() + 4)
            .sum();
        let mut out =
            Vec::with_capacity(HEAD_BYTES + self.content_type.len() + extra + self.body.len());
        out.extend_from_slice(b"HTTP/1.1 ");
        push_number(&mut out, u64::from(self.status));
        out.push(b' ');
        out.extend_from_slice(reason_phrase(self.status).as_bytes());
        out.extend_from_slice(b"\r\nContent-Type: ");
        out.extend_from_slice(self.content_type.as_bytes());
        // A 304 has no body whatever its headers say, and a Content-Length on it would have to
        // be the length of the 200's body (RFC 9110 8.6): none at all is simplest.
        if self.status != 304 {
            out.extend_from_slice(b"\r\nContent-Length: ");
            push_number(&mut out, self.body.len() as u64);
        }
        out.extend_from_slice(if keep_alive {
            b"\r\nConnection: keep-alive\r\n"
        } else {
            b"\r\nConnection: close\r\n"
        });
        for (name, value) in &self.headers {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out
    }
}

/// The fixed part of a head, with room for the longest reason phrase and numbers.
const HEAD_BYTES: usize = 128;

/// Appends the decimal digits of `n`.
fn push_number(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

/// The reason phrase of the statuses tickwire answers with.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        202 => "Accepted",
        204 => "No Content",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_says_whether_the_connection_stays() {
        let r = Response::json(202, "{\"seq\":1}\n").with_header("X-A", "b");
        let text = String::from_utf8(r.encode(true)).unwrap();
        assert!(text.starts_with("HTTP/1.1 202 Accepted\r\n"), "{text}");
        assert!(text.contains("\r\nContent-Length: 10\r\n"));
        assert!(text.contains("\r\nConnection: keep-alive\r\n"));
        assert!(text.contains("\r\nX-A: b\r\n"));
        assert!(text.ends_with("\r\n\r\n{\"seq\":1}\n"));
        let closing = String::from_utf8(r.encode(false)).unwrap();
        assert!(closing.contains("\r\nConnection: close\r\n"));
    }

    #[test]
    fn a_not_modified_answer_has_no_body_and_no_length() {
        let text =
            String::from_utf8(Response::new(304, "text/javascript", "").encode(true)).unwrap();
        assert!(text.starts_with("HTTP/1.1 304 Not Modified\r\n"), "{text}");
        assert!(!text.contains("Content-Length"), "{text}");
        assert!(text.ends_with("\r\n\r\n"));
    }

    #[test]
    fn the_head_is_exact() {
        let r = Response::text(404, "no").with_header("Allow", "GET");
        assert_eq!(
            String::from_utf8(r.encode(false)).unwrap(),
            "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Length: 3\r\nConnection: close\r\nAllow: GET\r\n\r\nno\n"
        );
        for n in [0, 7, 10, 99, 1000, u64::MAX] {
            let mut out = Vec::new();
            push_number(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
    }

    #[test]
    fn refusals_end_the_connection() {
        assert!(Response::text(400, "x").ends_connection());
        assert!(Response::text(413, "x").ends_connection());
        assert!(!Response::text(404, "x").ends_connection());
        assert!(!Response::text(503, "x").ends_connection());
    }
}
