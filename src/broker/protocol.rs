//! The client JSON protocol (README, "Client protocol"): parsing what subscribers send and
//! encoding what the broker sends back. Pure functions over strings and bytes.

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::ws::frame::{encode_server_header, OpCode, MAX_SERVER_HEADER};

/// A request from a subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Subscribe {
        topics: Vec<String>,
        id: Option<String>,
    },
    Unsubscribe {
        topics: Vec<String>,
        id: Option<String>,
    },
    Ping {
        id: Option<String>,
    },
}

impl Request {
    /// The request's `id`, as raw JSON.
    pub fn id(&self) -> Option<&str> {
        match self {
            Request::Subscribe { id, .. }
            | Request::Unsubscribe { id, .. }
            | Request::Ping { id } => id.as_deref(),
        }
    }
}

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
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 12] = [
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
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default, deserialize_with = "present")]
    op: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    topics: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    id: Option<&'a RawValue>,
}

/// Parses one text message from a subscriber. Requests nested deeper than `max_depth` are
/// refused before they are parsed.
pub fn parse_request(text: &str, max_depth: usize) -> Result<Request, ClientError> {
    if let Err(m) = super::payload::check_depth(text, max_depth) {
        return Err(ClientError::new(ErrorCode::BadRequest, m, None));
    }
    if !is_object(text) {
        let code = match serde_json::from_str::<serde::de::IgnoredAny>(text) {
            Ok(_) => ErrorCode::BadRequest,
            Err(_) => ErrorCode::BadJson,
        };
        return Err(ClientError::new(
            code,
            "a request is a JSON object with \"op\"",
            None,
        ));
    }
    let env: Envelope = match serde_json::from_str(text) {
        Ok(e) => e,
        Err(e) if e.is_data() => {
            // Valid JSON of the wrong shape: say which part.
            return Err(ClientError::new(
                ErrorCode::BadRequest,
                format!("request must be an object with \"op\": {e}"),
                None,
            ));
        }
        Err(e) => {
            return Err(ClientError::new(
                ErrorCode::BadJson,
                format!("invalid JSON: {e}"),
                None,
            ))
        }
    };
    let id = env.id.map(|raw| raw.get().to_owned());
    let bad = |message: String, id: Option<String>| {
        Err::<Request, _>(ClientError::new(ErrorCode::BadRequest, message, id))
    };
    let op = match env.op.map(|raw| serde_json::from_str::<String>(raw.get())) {
        Some(Ok(op)) => op,
        Some(Err(_)) => return bad("\"op\" must be a string".to_owned(), id),
        None => return bad("missing \"op\"".to_owned(), id),
    };
    let topics = |id: Option<String>| {
        let bad = |message: String, id| Err(ClientError::new(ErrorCode::BadRequest, message, id));
        let Some(raw) = env.topics else {
            return bad(
                format!("\"{op}\" needs \"topics\": an array of strings"),
                id,
            );
        };
        match serde_json::from_str::<Vec<String>>(raw.get()) {
            Ok(t) if !t.is_empty() => Ok((t, id)),
            Ok(_) => bad("\"topics\" is empty".to_owned(), id),
            Err(_) => bad("\"topics\" must be an array of strings".to_owned(), id),
        }
    };
    match op.as_str() {
        "subscribe" => topics(id).map(|(topics, id)| Request::Subscribe { topics, id }),
        "unsubscribe" => topics(id).map(|(topics, id)| Request::Unsubscribe { topics, id }),
        "ping" => Ok(Request::Ping { id }),
        other => Err(ClientError::new(
            ErrorCode::UnknownOp,
            format!("unknown op '{other}': expected subscribe, unsubscribe or ping"),
            id,
        )),
    }
}

/// Whether the text can only be a JSON object (serde would also read a struct from an array).
fn is_object(text: &str) -> bool {
    text.trim_start().starts_with('{')
}

/// The request's `id` as raw JSON, if the text is a JSON object with one; for errors found
/// before the request is parsed (a rate limit).
pub fn request_id(text: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct IdOnly<'a> {
        #[serde(borrow, default, deserialize_with = "present")]
        id: Option<&'a RawValue>,
    }
    if !is_object(text) {
        return None;
    }
    serde_json::from_str::<IdOnly>(text)
        .ok()
        .and_then(|v| v.id)
        .map(|raw| raw.get().to_owned())
}

/// `{"type":"subscribed"|"unsubscribed","topics":[...],"id":...}`
pub fn ack(kind: &str, topics: &[String], id: Option<&str>) -> String {
    let topics = serde_json::to_string(topics).unwrap_or_else(|_| "[]".to_owned());
    with_id(format!("{{\"type\":\"{kind}\",\"topics\":{topics}"), id)
}

/// `{"type":"pong","id":...}`
pub fn pong(id: Option<&str>) -> String {
    with_id("{\"type\":\"pong\"".to_owned(), id)
}

/// `{"type":"error","code":...,"message":...,"id":...}`
pub fn error(e: &ClientError) -> String {
    let message = serde_json::to_string(&e.message).unwrap_or_else(|_| "\"\"".to_owned());
    with_id(
        format!(
            "{{\"type\":\"error\",\"code\":\"{}\",\"message\":{message}",
            e.code.as_str()
        ),
        e.id.as_deref(),
    )
}

fn with_id(mut head: String, id: Option<&str>) -> String {
    if let Some(id) = id {
        head.push_str(",\"id\":");
        head.push_str(id);
    }
    head.push('}');
    head
}

/// Encodes the WebSocket text frame of a `msg` into `out` (cleared first), in one buffer:
/// `{"type":"msg","topic":T,"seq":N[,"snapshot":true],"data":PAYLOAD}`. Returns where the payload
/// sits in it.
pub fn encode_msg_frame(
    out: &mut Vec<u8>,
    topic_json: &str,
    seq: u64,
    snapshot: bool,
    payload: &[u8],
) -> std::ops::Range<usize> {
    let mut digits = [0u8; 20];
    let seq_text = decimal(seq, &mut digits);
    let parts: [&[u8]; 6] = [
        b"{\"type\":\"msg\",\"topic\":",
        topic_json.as_bytes(),
        b",\"seq\":",
        seq_text,
        if snapshot {
            b",\"snapshot\":true,\"data\":"
        } else {
            b",\"data\":"
        },
        payload,
    ];
    let body_len: usize = parts.iter().map(|p| p.len()).sum::<usize>() + 1;
    let mut head = [0u8; MAX_SERVER_HEADER];
    let head_len = encode_server_header(true, OpCode::Text, body_len, &mut head);
    out.clear();
    out.reserve(head_len + body_len);
    out.extend_from_slice(&head[..head_len]);
    for p in &parts[..5] {
        out.extend_from_slice(p);
    }
    let start = out.len();
    out.extend_from_slice(payload);
    let range = start..out.len();
    out.push(b'}');
    range
}

/// Writes `n` in decimal into `digits` (no allocation on the publish path).
fn decimal(mut n: u64, digits: &mut [u8; 20]) -> &[u8] {
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &digits[i..]
}

/// A publication sent by a streaming publisher: `{"topic":...,"data":...,"id":...}`.
#[derive(Debug)]
pub struct Publication<'a> {
    pub topic: String,
    pub data: &'a RawValue,
    pub id: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct PublicationWire<'a> {
    topic: Option<String>,
    #[serde(borrow, default, deserialize_with = "present")]
    data: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    id: Option<&'a RawValue>,
}

/// Parses `{"topic":"...","data":<any JSON>}` (one NDJSON line, or one streaming frame).
pub fn parse_publication(text: &str) -> Result<Publication<'_>, (ErrorCode, String)> {
    if !is_object(text) {
        return Err(match serde_json::from_str::<serde::de::IgnoredAny>(text) {
            Ok(_) => (
                ErrorCode::BadRequest,
                "expected {\"topic\":...,\"data\":...}".to_owned(),
            ),
            Err(e) => (ErrorCode::BadJson, format!("invalid JSON: {e}")),
        });
    }
    let wire: PublicationWire = serde_json::from_str(text).map_err(|e| {
        if e.is_data() {
            (
                ErrorCode::BadRequest,
                format!("expected {{\"topic\":...,\"data\":...}}: {e}"),
            )
        } else {
            (ErrorCode::BadJson, format!("invalid JSON: {e}"))
        }
    })?;
    let topic = wire
        .topic
        .ok_or((ErrorCode::BadRequest, "missing \"topic\"".to_owned()))?;
    let data = wire
        .data
        .ok_or((ErrorCode::BadRequest, "missing \"data\"".to_owned()))?;
    Ok(Publication {
        topic,
        data,
        id: wire.id,
    })
}

/// A line of an NDJSON batch that cannot be published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchLineError {
    /// Counted from 1.
    pub line: usize,
    pub code: ErrorCode,
    pub message: String,
}

/// Parses an NDJSON batch: one `{"topic":...,"data":...}` per line, blank lines skipped. Every
/// line is checked (JSON shape and topic) before any is returned, so a batch is all or nothing.
/// Returns the publications with the line each came from.
pub fn parse_batch(text: &str) -> Result<Vec<(usize, Publication<'_>)>, BatchLineError> {
    let mut items = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let fail = |code, message| BatchLineError {
            line: i + 1,
            code,
            message,
        };
        let p = parse_publication(line).map_err(|(code, message)| fail(code, message))?;
        super::topic::validate_topic(&p.topic).map_err(|m| fail(ErrorCode::InvalidTopic, m))?;
        items.push((i + 1, p));
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse() {
        assert_eq!(
            parse_request(
                r#"{"op":"subscribe","topics":["quotes/AAPL","quotes/+"],"id":1}"#,
                128
            ),
            Ok(Request::Subscribe {
                topics: vec!["quotes/AAPL".into(), "quotes/+".into()],
                id: Some("1".into())
            })
        );
        assert_eq!(
            parse_request(r#"{"op":"unsubscribe","topics":["a"],"id":"x"}"#, 128),
            Ok(Request::Unsubscribe {
                topics: vec!["a".into()],
                id: Some("\"x\"".into())
            })
        );
        assert_eq!(
            parse_request(r#"{"op":"ping"}"#, 128),
            Ok(Request::Ping { id: None })
        );
    }

    #[test]
    fn bad_requests_get_codes_and_keep_the_id() {
        let code = |text: &str| parse_request(text, 128).unwrap_err().code;
        assert_eq!(code("{nope"), ErrorCode::BadJson);
        assert_eq!(code("[1,2]"), ErrorCode::BadRequest);
        let e = parse_request(r#"{"op":"dance","id":7}"#, 128).unwrap_err();
        assert_eq!((e.code, e.id.as_deref()), (ErrorCode::UnknownOp, Some("7")));
        assert!(e.message.contains("dance"));
        for bad in [
            r#"{"op":"subscribe","id":2}"#,
            r#"{"op":"subscribe","topics":[]}"#,
            r#"{"op":"subscribe","topics":[1]}"#,
            r#"{"id":1}"#,
        ] {
            assert_eq!(code(bad), ErrorCode::BadRequest, "{bad}");
        }
        // The id is echoed whenever it can be read, even when the rest is the wrong shape, and
        // `null` is an id like any other.
        let e = parse_request(r#"{"op":"subscribe","topics":"zz/A","id":8}"#, 128).unwrap_err();
        assert_eq!(
            (e.code, e.id.as_deref()),
            (ErrorCode::BadRequest, Some("8"))
        );
        assert_eq!(
            parse_request(r#"{"op":"ping","id":null}"#, 128),
            Ok(Request::Ping {
                id: Some("null".into())
            })
        );
        assert_eq!(
            request_id(r#"{"op":"x","id":{"a":1}}"#).as_deref(),
            Some(r#"{"a":1}"#)
        );
        assert_eq!(request_id("[1]"), None);
    }

    #[test]
    fn deep_requests_are_refused_before_parsing() {
        let deep = format!(
            r#"{{"op":"ping","x":{}{}}}"#,
            "[".repeat(200),
            "]".repeat(200)
        );
        let e = parse_request(&deep, 128).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest);
        assert!(e.message.contains("deeper"), "{}", e.message);
    }

    #[test]
    fn replies_are_json() {
        let topics = vec!["quotes/AAPL".to_owned()];
        assert_eq!(
            ack("subscribed", &topics, Some("1")),
            r#"{"type":"subscribed","topics":["quotes/AAPL"],"id":1}"#
        );
        assert_eq!(pong(None), r#"{"type":"pong"}"#);
        let e = ClientError::new(
            ErrorCode::InvalidTopic,
            "topic level is empty: 'quotes//AAPL'",
            Some("1".into()),
        );
        let v: serde_json::Value = serde_json::from_str(&error(&e)).unwrap();
        assert_eq!(v["code"], "invalid_topic");
        assert_eq!(v["message"], "topic level is empty: 'quotes//AAPL'");
        assert_eq!(v["id"], 1);
    }

    #[test]
    fn msg_frame_is_a_text_frame_of_the_documented_json() {
        let mut frame = Vec::new();
        let range = encode_msg_frame(&mut frame, "\"quotes/AAPL\"", 43, false, br#"{"bid":1}"#);
        assert_eq!(frame[0], 0x81);
        let body = &frame[2..];
        assert_eq!(frame[1] as usize, body.len());
        assert_eq!(
            std::str::from_utf8(body).unwrap(),
            r#"{"type":"msg","topic":"quotes/AAPL","seq":43,"data":{"bid":1}}"#
        );
        assert_eq!(&frame[range], br#"{"bid":1}"#);
        let mut snap = vec![9; 3];
        encode_msg_frame(&mut snap, "\"t\"", 1, true, b"2");
        assert!(std::str::from_utf8(&snap[2..])
            .unwrap()
            .contains(r#""seq":1,"snapshot":true,"data":2}"#));
    }

    #[test]
    fn batches_report_the_first_bad_line() {
        let ok = "{\"topic\":\"a/b\",\"data\":1}\n\n{\"topic\":\"a/c\",\"data\":[2]}\n";
        let items = parse_batch(ok).unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!((items[0].0, items[1].0), (1, 3));
        let bad = "{\"topic\":\"a/b\",\"data\":1}\n{\"topic\":\"a//c\",\"data\":1}\n{oops";
        let e = parse_batch(bad).unwrap_err();
        assert_eq!((e.line, e.code), (2, ErrorCode::InvalidTopic));
        assert_eq!(parse_batch("x").unwrap_err().code, ErrorCode::BadJson);
    }

    #[test]
    fn publications_parse() {
        let p = parse_publication(r#"{"topic":"quotes/A","data":{"x":[1,2]}}"#).unwrap();
        assert_eq!(p.topic, "quotes/A");
        assert_eq!(p.data.get(), r#"{"x":[1,2]}"#);
        assert_eq!(
            parse_publication(r#"{"topic":"a"}"#).unwrap_err().0,
            ErrorCode::BadRequest
        );
        assert_eq!(
            parse_publication(r#"{"topic":"a","data":}"#).unwrap_err().0,
            ErrorCode::BadJson
        );
    }
}
