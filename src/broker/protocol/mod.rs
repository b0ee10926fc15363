//! The client JSON protocol (README, "Client protocol"): what subscribers and streaming
//! publishers send, parsed, and what the broker sends back, encoded. Pure functions over strings
//! and bytes.
//!
//! - [`request`]: a subscriber's requests (`subscribe` with its options, `unsubscribe`, `ping`,
//!   `auth`).
//! - [`reply`]: acks, pongs, errors, and the `msg` frames fanned out to subscribers.
//! - [`publication`]: a streaming publisher's frame and an NDJSON batch.

pub mod publication;
pub mod reply;
pub mod request;

use serde::Deserialize;
use serde_json::value::RawValue;

pub use publication::{parse_batch, parse_publication, BatchLineError, Publication};
pub use reply::{ack, authenticated, encode_delta_frame, encode_msg_frame, ended, error, pong};
pub use request::{parse_request, request_id, Request, Subscribe};

/// The machine-readable code of an `error` message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// The frame is not JSON.
    BadJson,
    /// JSON of the wrong shape, or a request that cannot be served as asked.
    BadRequest,
    /// An `op` the server does not know.
    UnknownOp,
    /// A topic or pattern that is not valid.
    InvalidTopic,
    /// Past the subscriptions allowed per connection.
    TooManySubscriptions,
    /// A published payload that is not UTF-8 JSON, or is nested too deep.
    InvalidPayload,
    /// A published payload over the limit.
    PayloadTooLarge,
    /// A publish queue is full: subscribers are behind.
    QueueFull,
    /// The broker is shutting down.
    ShuttingDown,
    /// Past the requests allowed per second.
    RateLimited,
    /// Publishing is not possible now (Redis out of reach).
    Unavailable,
    /// A publication would add a topic past `--max-topics`.
    TooManyTopics,
    /// With `--jwt-key`: a subscribe before any valid token, or a token refused by `auth`.
    Unauthorized,
    /// With `--jwt-key`: a pattern the token's grants do not cover (the whole request refused),
    /// or, as an `unsubscribed` reason, one a refreshed token no longer covers.
    Forbidden,
    /// With `--jwt-key`: the token is past its `exp`.
    TokenExpired,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 15] = [
        ErrorCode::BadJson,
        ErrorCode::BadRequest,
        ErrorCode::UnknownOp,
        ErrorCode::InvalidTopic,
        ErrorCode::TooManySubscriptions,
        ErrorCode::InvalidPayload,
        ErrorCode::PayloadTooLarge,
        ErrorCode::QueueFull,
        ErrorCode::ShuttingDown,
        ErrorCode::RateLimited,
        ErrorCode::Unavailable,
        ErrorCode::TooManyTopics,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::TokenExpired,
    ];

    /// As written on the wire and in metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadJson => "bad_json",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::UnknownOp => "unknown_op",
            ErrorCode::InvalidTopic => "invalid_topic",
            ErrorCode::TooManySubscriptions => "too_many_subscriptions",
            ErrorCode::InvalidPayload => "invalid_payload",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::QueueFull => "queue_full",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::TooManyTopics => "too_many_topics",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::TokenExpired => "token_expired",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error answered with an `error` message; the connection stays open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientError {
    pub code: ErrorCode,
    pub message: String,
    /// The request's `id`, as raw JSON, when it could be read (`null` included).
    pub id: Option<String>,
}

impl ClientError {
    pub fn new(code: ErrorCode, message: impl Into<String>, id: Option<String>) -> Self {
        ClientError {
            code,
            message: message.into(),
            id,
        }
    }
}

/// Reads a member that is present as raw JSON, `null` included (serde's `Option` would turn
/// `"id":null` into "absent", and the id must be echoed as sent).
pub(crate) fn present<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// Whether the text can only be a JSON object (serde would also read a struct from an array).
fn is_object(text: &str) -> bool {
    text.trim_start().starts_with('{')
}
