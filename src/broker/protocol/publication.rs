//! What publishers send: a streaming publisher's frame `{"topic":..,"data":..,"id":..}`, and an
//! NDJSON batch of such lines, every line checked before anything is published.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{is_object, present, ErrorCode};

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
        crate::broker::topic::validate_topic(&p.topic)
            .map_err(|m| fail(ErrorCode::InvalidTopic, m))?;
        items.push((i + 1, p));
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

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
