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
    pub fn encode(&self, keep_alive: bool) -> Vec<u8> {
        use std::fmt::Write as _;
        let mut head = String::with_capacity(128);
        let _ = write!(
            head,
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: {}\r\n",
            self.status,
            reason_phrase(self.status),
            self.content_type,
            self.body.len(),
            if keep_alive { "keep-alive" } else { "close" },
        );
        for (name, value) in &self.headers {
            let _ = write!(head, "{name}: {value}\r\n");
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
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
    fn refusals_end_the_connection() {
        assert!(Response::text(400, "x").ends_connection());
        assert!(Response::text(413, "x").ends_connection());
        assert!(!Response::text(404, "x").ends_connection());
        assert!(!Response::text(503, "x").ends_connection());
    }
}
