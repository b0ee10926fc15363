//! HTTP/1.1 without sockets: request heads parsed in place, body framing, responses, query
//! strings. Everything here works on byte slices, so every edge case is a unit test.
//!
//! - [`request`]: [`parse`] a head with httparse into a borrowed [`Request`]; its headers,
//!   keep-alive and `Content-Length` (strict, RFC 9112).
//! - [`response`]: [`Response`] and its encoding.
//! - [`query`]: percent-decoding of query parameters.
//!
//! The WebSocket upgrade (what RFC 6455 adds to a request) lives in [`crate::ws::handshake`].

pub mod query;
pub mod request;
pub mod response;

pub use request::{parse, Request, Status, MAX_HEAD, MAX_HEADERS};
pub use response::Response;

/// A request the HTTP layer refuses, each with the status it is answered with. The connection
/// ends after the answer: the stream may not be where the client thinks it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HttpError {
    /// 400: a malformed head or an ambiguous `Content-Length` (the message says which).
    BadRequest(&'static str),
    /// 411: a body sent with `Transfer-Encoding` (chunked) rather than `Content-Length`.
    LengthRequired,
    /// 413: a body over the limit.
    BodyTooLarge { size: usize, max: usize },
    /// 431: a head over [`MAX_HEAD`] bytes or with more than [`MAX_HEADERS`] headers.
    HeadTooLarge,
}

impl HttpError {
    pub fn status(&self) -> u16 {
        match self {
            HttpError::BadRequest(_) => 400,
            HttpError::LengthRequired => 411,
            HttpError::BodyTooLarge { .. } => 413,
            HttpError::HeadTooLarge => 431,
        }
    }

    /// The plain-text answer.
    pub fn response(&self) -> Response {
        Response::text(self.status(), &self.to_string())
    }
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpError::BadRequest(m) => f.write_str(m),
            HttpError::LengthRequired => {
                f.write_str("chunked request bodies are not supported: send Content-Length")
            }
            HttpError::BodyTooLarge { size, max } => write!(
                f,
                "request body of {size} bytes is over the limit of {max} bytes"
            ),
            HttpError::HeadTooLarge => write!(
                f,
                "request head too large (at most {MAX_HEAD} bytes and {MAX_HEADERS} headers)"
            ),
        }
    }
}

impl std::error::Error for HttpError {}
