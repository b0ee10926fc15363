//! What the broker sends subscribers: `subscribed`/`unsubscribed` acks, pongs, errors, and the
//! `msg` frames of publications, encoded once into a whole WebSocket frame.

use super::{ClientError, ErrorCode};
use crate::ws::frame::{encode_server_header, OpCode, MAX_SERVER_HEADER};

/// `{"type":"subscribed"|"unsubscribed","topics":[...],"id":...}`
pub fn ack(kind: &str, topics: &[String], id: Option<&str>) -> String {
    let topics = serde_json::to_string(topics).unwrap_or_else(|_| "[]".to_owned());
    with_id(format!("{{\"type\":\"{kind}\",\"topics\":{topics}"), id)
}

/// `{"type":"subscribed","topics":[...],"epoch":E[,"recovered":[...]],"id":...}`: every ack of a
/// subscribe carries the feed's epoch; one that asked to recover (`since`) also lists the topics
/// recovered.
pub fn subscribed(
    topics: &[String],
    epoch: &str,
    recovered: Option<&[String]>,
    id: Option<&str>,
) -> String {
    let mut head = format!(
        "{{\"type\":\"subscribed\",\"topics\":{},\"epoch\":{}",
        to_json(topics),
        to_json(epoch)
    );
    if let Some(r) = recovered {
        head.push_str(",\"recovered\":");
        head.push_str(&to_json(r));
    }
    with_id(head, id)
}

/// Strings and lists of strings, which always serialize.
fn to_json<T: serde::Serialize + ?Sized>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".to_owned())
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
    format!(
        "{{\"type\":\"unsubscribed\",\"topics\":{},\"reason\":\"{reason}\"}}",
        to_json(topics)
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
    let member: &[u8] = if snapshot {
        b",\"snapshot\":true,\"data\":"
    } else {
        b",\"data\":"
    };
    encode_msg(out, topic_json, seq, member, payload)
}

/// Encodes the frame of a `msg` carrying a merge patch (`delta: true` subscribers):
/// `{"type":"msg","topic":T,"seq":N,"delta":PATCH}`.
pub fn encode_delta_frame(out: &mut Vec<u8>, topic_json: &str, seq: u64, patch: &[u8]) {
    encode_msg(out, topic_json, seq, b",\"delta\":", patch);
}

/// `{"type":"msg","topic":T,"seq":N<member>VALUE}` as one text frame into `out`; returns where
/// the value sits in it.
fn encode_msg(
    out: &mut Vec<u8>,
    topic_json: &str,
    seq: u64,
    member: &[u8],
    value: &[u8],
) -> std::ops::Range<usize> {
    let mut digits = [0u8; 20];
    let seq_text = decimal(seq, &mut digits);
    let parts: [&[u8]; 5] = [
        b"{\"type\":\"msg\",\"topic\":",
        topic_json.as_bytes(),
        b",\"seq\":",
        seq_text,
        member,
    ];
    let body_len: usize = parts.iter().map(|p| p.len()).sum::<usize>() + value.len() + 1;
    let mut head = [0u8; MAX_SERVER_HEADER];
    let head_len = encode_server_header(true, OpCode::Text, body_len, &mut head);
    out.clear();
    out.reserve(head_len + body_len);
    out.extend_from_slice(&head[..head_len]);
    for p in parts {
        out.extend_from_slice(p);
    }
    let start = out.len();
    out.extend_from_slice(value);
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

    #[test]
    fn subscribed_acks_carry_the_epoch_and_what_was_recovered() {
        let t = vec!["q/+".to_owned()];
        let v: serde_json::Value =
            serde_json::from_str(&subscribed(&t, "k3x9q", None, Some("1"))).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type":"subscribed","topics":["q/+"],"epoch":"k3x9q","id":1})
        );
        let r = vec!["q/A".to_owned()];
        let v: serde_json::Value =
            serde_json::from_str(&subscribed(&t, "e", Some(&r), None)).unwrap();
        assert_eq!(v["recovered"], serde_json::json!(["q/A"]));
    }

    #[test]
    fn delta_frames_carry_the_patch() {
        let mut frame = Vec::new();
        encode_delta_frame(&mut frame, "\"q/A\"", 7, br#"{"bid":2}"#);
        assert_eq!(
            std::str::from_utf8(&frame[2..]).unwrap(),
            r#"{"type":"msg","topic":"q/A","seq":7,"delta":{"bid":2}}"#
        );
        assert_eq!(frame[1] as usize, frame.len() - 2);
    }
}
