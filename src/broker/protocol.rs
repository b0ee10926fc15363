//! The client JSON protocol (DESIGN.md, "Client protocol"): parsing what subscribers send and
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

/// An error answered with an `error` message; the connection stays open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientError {
    /// Machine-readable: `bad_json`, `bad_request`, `unknown_op`, `invalid_topic`,
    /// `too_many_subscriptions`, `queue_full`, `payload_too_large`, `invalid_payload`,
    /// `unavailable`.
    pub code: &'static str,
    pub message: String,
    /// The request's `id`, as raw JSON, when it could be read.
    pub id: Option<String>,
}

impl ClientError {
    pub fn new(code: &'static str, message: impl Into<String>, id: Option<String>) -> Self {
        ClientError {
            code,
            message: message.into(),
            id,
        }
    }
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    op: Option<&'a RawValue>,
    topics: Option<Vec<String>>,
    #[serde(borrow)]
    id: Option<&'a RawValue>,
}

/// Parses one text message from a subscriber.
pub fn parse_request(text: &str) -> Result<Request, ClientError> {
    let env: Envelope = match serde_json::from_str(text) {
        Ok(e) => e,
        Err(e) if e.is_data() => {
            // Valid JSON of the wrong shape: say which part.
            return Err(ClientError::new(
                "bad_request",
                format!("request must be an object with \"op\": {e}"),
                None,
            ));
        }
        Err(e) => {
            return Err(ClientError::new(
                "bad_json",
                format!("invalid JSON: {e}"),
                None,
            ))
        }
    };
    let id = env.id.map(|raw| raw.get().to_owned());
    let op = match env.op.map(|raw| serde_json::from_str::<String>(raw.get())) {
        Some(Ok(op)) => op,
        Some(Err(_)) => {
            return Err(ClientError::new(
                "bad_request",
                "\"op\" must be a string",
                id,
            ))
        }
        None => return Err(ClientError::new("bad_request", "missing \"op\"", id)),
    };
    let topics = |id: Option<String>| match env.topics.clone() {
        Some(t) if !t.is_empty() => Ok((t, id)),
        Some(_) => Err(ClientError::new("bad_request", "\"topics\" is empty", id)),
        None => Err(ClientError::new(
            "bad_request",
            format!("\"{op}\" needs \"topics\": an array of strings"),
            id,
        )),
    };
    match op.as_str() {
        "subscribe" => topics(id).map(|(topics, id)| Request::Subscribe { topics, id }),
        "unsubscribe" => topics(id).map(|(topics, id)| Request::Unsubscribe { topics, id }),
        "ping" => Ok(Request::Ping { id }),
        other => Err(ClientError::new(
            "unknown_op",
            format!("unknown op '{other}': expected subscribe, unsubscribe or ping"),
            id,
        )),
    }
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
            e.code
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
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    #[serde(borrow)]
    id: Option<&'a RawValue>,
}

/// Parses `{"topic":"...","data":<any JSON>}` (one NDJSON line, or one streaming frame).
pub fn parse_publication(text: &str) -> Result<Publication<'_>, (&'static str, String)> {
    let wire: PublicationWire = serde_json::from_str(text).map_err(|e| {
        if e.is_data() {
            (
                "bad_request",
                format!("expected {{\"topic\":...,\"data\":...}}: {e}"),
            )
        } else {
            ("bad_json", format!("invalid JSON: {e}"))
        }
    })?;
    let topic = wire
        .topic
        .ok_or(("bad_request", "missing \"topic\"".to_owned()))?;
    let data = wire
        .data
        .ok_or(("bad_request", "missing \"data\"".to_owned()))?;
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
    pub code: &'static str,
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
        super::topic::validate_topic(&p.topic).map_err(|m| fail("invalid_topic", m))?;
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
            parse_request(r#"{"op":"subscribe","topics":["quotes/AAPL","quotes/+"],"id":1}"#),
            Ok(Request::Subscribe {
                topics: vec!["quotes/AAPL".into(), "quotes/+".into()],
                id: Some("1".into())
            })
        );
        assert_eq!(
            parse_request(r#"{"op":"unsubscribe","topics":["a"],"id":"x"}"#),
            Ok(Request::Unsubscribe {
                topics: vec!["a".into()],
                id: Some("\"x\"".into())
            })
        );
        assert_eq!(
            parse_request(r#"{"op":"ping"}"#),
            Ok(Request::Ping { id: None })
        );
    }

    #[test]
    fn bad_requests_get_codes_and_keep_the_id() {
        assert_eq!(parse_request("{nope").unwrap_err().code, "bad_json");
        assert_eq!(parse_request("[1,2]").unwrap_err().code, "bad_request");
        let e = parse_request(r#"{"op":"dance","id":7}"#).unwrap_err();
        assert_eq!((e.code, e.id.as_deref()), ("unknown_op", Some("7")));
        assert!(e.message.contains("dance"));
        assert_eq!(
            parse_request(r#"{"op":"subscribe","id":2}"#)
                .unwrap_err()
                .code,
            "bad_request"
        );
        assert_eq!(
            parse_request(r#"{"op":"subscribe","topics":[]}"#)
                .unwrap_err()
                .code,
            "bad_request"
        );
        assert_eq!(
            parse_request(r#"{"op":"subscribe","topics":[1]}"#)
                .unwrap_err()
                .code,
            "bad_request"
        );
        assert_eq!(
            parse_request(r#"{"id":1}"#).unwrap_err().code,
            "bad_request"
        );
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
            "invalid_topic",
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
        assert_eq!((e.line, e.code), (2, "invalid_topic"));
        assert_eq!(parse_batch("x").unwrap_err().code, "bad_json");
    }

    #[test]
    fn publications_parse() {
        let p = parse_publication(r#"{"topic":"quotes/A","data":{"x":[1,2]}}"#).unwrap();
        assert_eq!(p.topic, "quotes/A");
        assert_eq!(p.data.get(), r#"{"x":[1,2]}"#);
        assert_eq!(
            parse_publication(r#"{"topic":"a"}"#).unwrap_err().0,
            "bad_request"
        );
        assert_eq!(
            parse_publication(r#"{"topic":"a","data":}"#).unwrap_err().0,
            "bad_json"
        );
    }
}
