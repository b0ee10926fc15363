//! A subscriber's requests: `subscribe` (with its delivery options), `unsubscribe`, `ping` and
//! `auth`, parsed from one text frame. Every error names what is wrong and keeps the request's
//! `id` when it can be read.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{is_object, present, ClientError, ErrorCode};

/// The longest `epoch` a client may send back (the server's are a dozen characters).
pub const MAX_EPOCH_BYTES: usize = 64;

/// A request from a subscriber.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Request {
    Subscribe(Subscribe),
    Unsubscribe {
        topics: Vec<String>,
        id: Option<String>,
    },
    Ping {
        id: Option<String>,
    },
    /// A token for entitlements (`{"op":"auth","token":"<JWT>"}`).
    Auth {
        token: String,
        id: Option<String>,
    },
}

/// `{"op":"subscribe","topics":[..],"max_rate":R,"delta":true,"since":{..},"epoch":"..","id":..}`:
/// the options apply to the topics of this request.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct Subscribe {
    pub topics: Vec<String>,
    pub id: Option<String>,
    /// At most this many messages per topic per second (a positive number).
    pub max_rate: Option<f64>,
    /// Send JSON merge patches instead of whole objects where possible.
    pub delta: bool,
    /// Per concrete topic, the last seq the client has: replay what it missed.
    pub since: Vec<(String, u64)>,
    /// The epoch the seqs in `since` are from.
    pub epoch: Option<String>,
}

impl Request {
    /// The request's `id`, as raw JSON.
    pub fn id(&self) -> Option<&str> {
        match self {
            Request::Subscribe(s) => s.id.as_deref(),
            Request::Unsubscribe { id, .. } | Request::Ping { id } | Request::Auth { id, .. } => {
                id.as_deref()
            }
        }
    }
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default, deserialize_with = "present")]
    op: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    topics: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    id: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    max_rate: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    delta: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    since: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    epoch: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    token: Option<&'a RawValue>,
}

/// Parses one text message from a subscriber. Requests nested deeper than `max_depth` are
/// refused before they are parsed.
pub fn parse_request(text: &str, max_depth: usize) -> Result<Request, ClientError> {
    if let Err(m) = crate::broker::payload::check_depth(text, max_depth) {
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
    let bad = |message: String| ClientError::new(ErrorCode::BadRequest, message, id.clone());
    let op: String = match env.op.map(|raw| serde_json::from_str(raw.get())) {
        Some(Ok(op)) => op,
        Some(Err(_)) => return Err(bad("\"op\" must be a string".to_owned())),
        None => return Err(bad("missing \"op\"".to_owned())),
    };
    let topics = || -> Result<Vec<String>, ClientError> {
        let raw = env
            .topics
            .ok_or_else(|| bad(format!("\"{op}\" needs \"topics\": an array of strings")))?;
        match serde_json::from_str::<Vec<String>>(raw.get()) {
            Ok(t) if !t.is_empty() => Ok(t),
            Ok(_) => Err(bad("\"topics\" is empty".to_owned())),
            Err(_) => Err(bad("\"topics\" must be an array of strings".to_owned())),
        }
    };
    match op.as_str() {
        "subscribe" => {
            let mut s = Subscribe {
                topics: topics()?,
                ..Subscribe::default()
            };
            if let Some(raw) = env.max_rate {
                match serde_json::from_str::<f64>(raw.get()) {
                    Ok(r) if r.is_finite() && r > 0.0 => s.max_rate = Some(r),
                    _ => return Err(bad("\"max_rate\" must be a positive number".to_owned())),
                }
            }
            if let Some(raw) = env.delta {
                s.delta = serde_json::from_str(raw.get())
                    .map_err(|_| bad("\"delta\" must be true or false".to_owned()))?;
            }
            if let Some(raw) = env.since {
                s.since = parse_since(raw).map_err(&bad)?;
            }
            if let Some(raw) = env.epoch {
                let epoch: String = serde_json::from_str(raw.get())
                    .map_err(|_| bad("\"epoch\" must be a string".to_owned()))?;
                if epoch.len() > MAX_EPOCH_BYTES {
                    return Err(bad(format!(
                        "\"epoch\" is {} bytes; epochs are at most {MAX_EPOCH_BYTES}",
                        epoch.len()
                    )));
                }
                s.epoch = Some(epoch);
            }
            s.id = id;
            Ok(Request::Subscribe(s))
        }
        "unsubscribe" => Ok(Request::Unsubscribe {
            topics: topics()?,
            id,
        }),
        "ping" => Ok(Request::Ping { id }),
        "auth" => match env
            .token
            .map(|raw| serde_json::from_str::<String>(raw.get()))
        {
            Some(Ok(token)) => Ok(Request::Auth { token, id }),
            _ => Err(bad("\"auth\" needs \"token\": a string".to_owned())),
        },
        other => Err(ClientError::new(
            ErrorCode::UnknownOp,
            format!("unknown op '{other}': expected subscribe, unsubscribe, ping or auth"),
            id,
        )),
    }
}

/// `"since": {"topic": seq, ...}`: seqs are whole numbers from 0.
fn parse_since(raw: &RawValue) -> Result<Vec<(String, u64)>, String> {
    let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(raw.get())
        .map_err(|_| "\"since\" must be an object of topics to seqs".to_owned())?;
    map.into_iter()
        .map(|(topic, seq)| match seq.as_u64() {
            Some(n) => Ok((topic, n)),
            None => Err(format!(
                "\"since\" for '{topic}' must be a whole number from 0, not {seq}"
            )),
        })
        .collect()
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
            Ok(Request::Subscribe(Subscribe {
                topics: vec!["quotes/AAPL".into(), "quotes/+".into()],
                id: Some("1".into()),
                ..Subscribe::default()
            }))
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
    fn subscribe_options_parse_and_bad_ones_say_which() {
        let r = parse_request(
            r#"{"op":"subscribe","topics":["q/+"],"max_rate":2.5,"delta":true,
                "since":{"q/A":41,"q/B":0},"epoch":"k3x9q","id":1}"#,
            128,
        );
        let Ok(Request::Subscribe(s)) = r else {
            panic!("{r:?}")
        };
        assert_eq!(s.max_rate, Some(2.5));
        assert!(s.delta);
        let mut since = s.since.clone();
        since.sort();
        assert_eq!(since, [("q/A".to_owned(), 41), ("q/B".to_owned(), 0)]);
        assert_eq!(s.epoch.as_deref(), Some("k3x9q"));
        for (bad, says) in [
            (r#""max_rate":0"#, "max_rate"),
            (r#""max_rate":-1"#, "max_rate"),
            (r#""max_rate":"fast""#, "max_rate"),
            (r#""delta":1"#, "delta"),
            (r#""since":[1]"#, "since"),
            (r#""since":{"q/A":-1}"#, "'q/A'"),
            (r#""since":{"q/A":1.5}"#, "'q/A'"),
            (r#""epoch":7"#, "epoch"),
        ] {
            let text = format!(r#"{{"op":"subscribe","topics":["q/+"],{bad},"id":9}}"#);
            let e = parse_request(&text, 128).unwrap_err();
            assert_eq!(
                (e.code, e.id.as_deref()),
                (ErrorCode::BadRequest, Some("9")),
                "{bad}"
            );
            assert!(e.message.contains(says), "{bad}: {}", e.message);
        }
        let long = format!(
            r#"{{"op":"subscribe","topics":["q"],"epoch":"{}"}}"#,
            "e".repeat(1000)
        );
        assert!(parse_request(&long, 128)
            .unwrap_err()
            .message
            .contains("at most 64"));
    }

    #[test]
    fn auth_needs_a_token() {
        assert_eq!(
            parse_request(r#"{"op":"auth","token":"abc","id":2}"#, 128),
            Ok(Request::Auth {
                token: "abc".into(),
                id: Some("2".into())
            })
        );
        let e = parse_request(r#"{"op":"auth","token":5,"id":3}"#, 128).unwrap_err();
        assert_eq!(
            (e.code, e.id.as_deref()),
            (ErrorCode::BadRequest, Some("3"))
        );
    }
}
