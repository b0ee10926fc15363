//! The local listener (loopback by default): publishing over HTTP and WebSocket, `/metrics`,
//! `/healthz` and `/topics` (DESIGN.md, "Local listener").

use serde_json::json;

use super::publisher::PublishError;
use super::{protocol, topic, BrokerShared};
use crate::server::{HttpResponse, Limits, Request, Route};

/// Room around a payload in a streaming publisher's frame (`{"topic":...,"data":...}`).
const ENVELOPE_BYTES: usize = 1024;

pub(crate) fn route(shared: &BrokerShared, req: &Request, body: &[u8]) -> Route {
    let metrics = &shared.hub.metrics;
    let answer = |resp: HttpResponse| {
        if resp.status >= 400 {
            metrics.http_error(resp.status);
        }
        Route::Http(resp)
    };
    if let Some(refusal) = check_token(shared, req) {
        return answer(refusal);
    }
    match (req.method.as_str(), req.path()) {
        ("POST", "/publish") => answer(publish(shared, req, body)),
        ("GET", "/publish") if req.wants_websocket() => {
            let max = shared.config.max_payload + ENVELOPE_BYTES;
            Route::WebSocket {
                protocol: None,
                limits: Some(Limits {
                    max_frame: max as u64,
                    max_message: max,
                }),
            }
        }
        ("GET", "/metrics") => {
            let engine = shared.engine.get().map(|s| s.stats()).unwrap_or_default();
            let mut text = metrics.render(&engine, shared.hub.cache.len(), shared.hub.queued());
            if let Some(up) = shared.hub.upstream() {
                up.render_metrics(&mut text);
            }
            answer(HttpResponse::new(200, "text/plain; version=0.0.4", text))
        }
        ("GET", "/healthz") => answer(healthz(shared)),
        ("GET", "/topics") => answer(topics(shared)),
        (_, "/publish") => answer(
            HttpResponse::text(405, "use POST to publish, or GET with a WebSocket upgrade")
                .with_header("Allow", "GET, POST"),
        ),
        (_, "/metrics" | "/healthz" | "/topics") => {
            answer(HttpResponse::text(405, "only GET is allowed here").with_header("Allow", "GET"))
        }
        (_, path) => answer(HttpResponse::text(
            404,
            &format!("no such path '{path}': try /publish, /metrics, /healthz or /topics"),
        )),
    }
}

/// 200 while the node can do its whole job; 503 with the reason while it cannot (with `--redis`,
/// while Redis is out of reach: the node still serves its subscribers, but refuses publications
/// and misses other nodes' ones, so a load balancer should send new clients elsewhere).
fn healthz(shared: &BrokerShared) -> HttpResponse {
    match shared.hub.upstream().map_or(Ok(()), |up| up.health()) {
        Ok(()) => HttpResponse::json(200, "{\"status\":\"ok\"}\n"),
        Err(reason) => HttpResponse::json(
            503,
            format!(
                "{{\"status\":\"unhealthy\",\"reason\":{}}}\n",
                json!(reason)
            ),
        ),
    }
}

/// `Authorization: Bearer <token>` when a token is configured.
fn check_token(shared: &BrokerShared, req: &Request) -> Option<HttpResponse> {
    let expected = shared.config.publish_token.as_deref()?;
    let given = req
        .header("authorization")
        .and_then(|v| v.trim().strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        Some(t) if constant_time_eq(t.as_bytes(), expected.as_bytes()) => None,
        Some(_) => Some(
            HttpResponse::json(401, error_json("unauthorized", "wrong bearer token", None))
                .with_header("WWW-Authenticate", "Bearer"),
        ),
        None => Some(
            HttpResponse::json(
                401,
                error_json(
                    "unauthorized",
                    "missing Authorization: Bearer <token>",
                    None,
                ),
            )
            .with_header("WWW-Authenticate", "Bearer"),
        ),
    }
}

/// Compares without stopping at the first difference, so timing does not leak the token.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn error_json(code: &str, message: &str, line: Option<usize>) -> String {
    let mut v = json!({ "error": message, "code": code });
    if let Some(line) = line {
        v["line"] = json!(line);
    }
    format!("{v}\n")
}

fn publish_error(e: &PublishError, line: Option<usize>) -> HttpResponse {
    HttpResponse::json(e.http_status(), error_json(e.code(), &e.to_string(), line))
}

/// `POST /publish?topic=T` with one JSON payload, or an NDJSON batch without `topic`.
fn publish(shared: &BrokerShared, req: &Request, body: &[u8]) -> HttpResponse {
    let publisher = shared.publisher();
    if let Some(topic) = req.query().and_then(|q| query_param(q, "topic")) {
        return match publisher.publish(&topic, body) {
            Ok(seq) => HttpResponse::json(202, format!("{{\"seq\":{seq}}}\n")),
            Err(e) => publish_error(&e, None),
        };
    }
    // A batch: every line is checked before anything is published.
    let Ok(text) = std::str::from_utf8(body) else {
        return HttpResponse::json(400, error_json("bad_request", "body is not UTF-8", None));
    };
    let items = match protocol::parse_batch(text) {
        Ok(items) => items,
        Err(e) => return HttpResponse::json(400, error_json(e.code, &e.message, Some(e.line))),
    };
    if items.is_empty() {
        return HttpResponse::json(
            400,
            error_json(
                "bad_request",
                "nothing to publish: give ?topic= with a JSON body, or NDJSON lines of {\"topic\":...,\"data\":...}",
                None,
            ),
        );
    }
    let batch: Vec<(&str, &[u8])> = items
        .iter()
        .map(|(_, p)| (p.topic.as_str(), p.data.get().as_bytes()))
        .collect();
    match publisher.publish_batch(&batch) {
        Ok(n) => HttpResponse::json(202, format!("{{\"published\":{n}}}\n")),
        Err(e) => {
            let line = matches!(
                e.error,
                PublishError::InvalidTopic(_)
                    | PublishError::InvalidPayload(_)
                    | PublishError::PayloadTooLarge { .. }
            )
            .then(|| items[e.index].0);
            publish_error(&e.error, line)
        }
    }
}

/// `{"topics":[{"topic":..,"seq":..,"subscribers":..}]}`: every topic with a last value, and how
/// many subscriptions (exact or wildcard, over all connections) match it.
fn topics(shared: &BrokerShared) -> HttpResponse {
    let entries = shared.hub.cache.collect(|_| true, usize::MAX);
    let counts = shared.subscription_counts.lock().clone();
    let list: Vec<serde_json::Value> = entries
        .iter()
        .map(|e| {
            let subscribers: usize = counts
                .iter()
                .filter(|(p, _)| topic::matches(p, &e.topic))
                .map(|(_, n)| n)
                .sum();
            json!({ "topic": &*e.topic, "seq": e.seq, "subscribers": subscribers })
        })
        .collect();
    HttpResponse::json(200, format!("{}\n", json!({ "topics": list })))
}

/// The percent-decoded value of `name` in a query string. `+` stays a plus: it is a wildcard
/// here, never a space.
pub(crate) fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k)? == name)
            .then(|| percent_decode(v))
            .flatten()
    })
}

/// Decodes `%XX` escapes; `None` if an escape is broken or the result is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_decoded_and_plus_stays() {
        assert_eq!(
            query_param("topic=quotes%2FAAPL", "topic").as_deref(),
            Some("quotes/AAPL")
        );
        assert_eq!(
            query_param("a=1&subscribe=quotes/+,quotes/%23", "subscribe").as_deref(),
            Some("quotes/+,quotes/#")
        );
        assert_eq!(query_param("topic=%zz", "topic"), None);
        assert_eq!(query_param("x=1", "topic"), None);
    }

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
