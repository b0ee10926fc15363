//! What the broker sends subscribers: `subscribed`/`unsubscribed` acks, pongs, errors, and the
//! `msg` frames of publications, encoded once into a whole WebSocket frame.

use super::{ClientError, ErrorCode};
use crate::ws::frame::{encode_server_header, OpCode, MAX_SERVER_HEADER};

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

/// `{"type":"authenticated","sub":...,"exp":...,"id":...}`: the answer to a good `auth` op
/// (`sub` is `null` when the token has none; `exp` in Unix seconds).
pub fn authenticated(sub: Option<&str>, exp: u64, id: Option<&str>) -> String {
    let sub = serde_json::to_string(&sub).unwrap_or_else(|_| "null".to_owned());
    with_id(
        format!("{{\"type\":\"authenticated\",\"sub\":{sub},\"exp\":{exp}"),
        id,
    )
}

/// `{"type":"unsubscribed","topics":[...],"reason":...}`: subscriptions the server ended itself
/// (no `id`: it answers no request).
pub fn ended(topics: &[String], reason: ErrorCode) -> String {
    let topics = serde_json::to_string(topics).unwrap_or_else(|_| "[]".to_owned());
    format!("{{\"type\":\"unsubscribed\",\"topics\":{topics},\"reason\":\"{reason}\"}}")
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

#[cfg(test)]
mod tests {
    use super::*;
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
    fn entitlement_replies_are_json() {
        assert_eq!(
            authenticated(Some("al\"ice"), 1700000000, Some("3")),
            r#"{"type":"authenticated","sub":"al\"ice","exp":1700000000,"id":3}"#
        );
        assert_eq!(
            authenticated(None, 5, None),
            r#"{"type":"authenticated","sub":null,"exp":5}"#
        );
        assert_eq!(
            ended(&["quotes/#".to_owned()], ErrorCode::Forbidden),
            r#"{"type":"unsubscribed","topics":["quotes/#"],"reason":"forbidden"}"#
        );
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
}
