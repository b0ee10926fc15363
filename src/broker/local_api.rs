//! The local listener (loopback by default): publishing over HTTP and WebSocket, `/metrics`,
//! `/healthz` and `/topics`. With `--publish-token`, every request needs the bearer token.
//!
//! `POST /publish` answers at once, except with `--redis`, where the publication goes to Redis
//! and the answer is sent when Redis has answered ([`crate::server::Route::Later`]): the worker
//! never waits.

use serde_json::json;

use super::index::SubscriptionIndex;
use super::pending::{Outcome, WaitKind, Waiter};
use super::protocol::{self, ErrorCode};
use super::publisher::PublishError;
use super::tree::Budget;
use super::{topic, BrokerShared, BrokerWorker, Client};
use crate::metrics::Rejection;
use crate::server::{ConnId, Limits, Request, Response, Route};

/// Room around a payload in a streaming publisher's frame (`{"topic":...,"data":...}`).
const ENVELOPE_BYTES: usize = 1024;
/// Topics `/topics` lists unless `?limit=` says otherwise, and at most.
const TOPICS_DEFAULT_LIMIT: usize = 10_000;
const TOPICS_MAX_LIMIT: usize = 100_000;

impl BrokerWorker {
    pub(super) fn local_route(&mut self, conn: ConnId, req: &Request<'_>, body: &[u8]) -> Route {
        let shared = self.shared.clone();
        let metrics = &shared.hub.metrics;
        let answer = |resp: Response| {
            if resp.status >= 400 {
                metrics.http_error(resp.status);
            }
            Route::Http(resp)
        };
        if let Some(refusal) = check_token(&shared, req) {
            return answer(refusal);
        }
        match (req.method, req.path()) {
            ("POST", "/publish") => match self.publish(conn, req, body) {
                Some(resp) => answer(resp),
                None => Route::Later,
            },
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
                answer(Response::new(200, "text/plain; version=0.0.4", text))
            }
            ("GET", "/healthz") => answer(healthz(&shared)),
            ("GET", "/topics") => answer(topics(&shared, req)),
            (_, "/publish") => answer(
                Response::text(405, "use POST to publish, or GET with a WebSocket upgrade")
                    .with_header("Allow", "GET, POST"),
            ),
            (_, "/metrics" | "/healthz" | "/topics") => {
                answer(Response::text(405, "only GET is allowed here").with_header("Allow", "GET"))
            }
            (_, path) => answer(Response::text(
                404,
                &format!("no such path '{path}': try /publish, /metrics, /healthz or /topics"),
            )),
        }
    }

    /// `POST /publish?topic=T` with one JSON payload, or an NDJSON batch without `topic`.
    /// `None`: handed to Redis, answered later.
    fn publish(&mut self, conn: ConnId, req: &Request<'_>, body: &[u8]) -> Option<Response> {
        let publisher = self.shared.publisher();
        let upstream = self.shared.hub.upstream().is_some();
        if let Some(topic) = req.query_param("topic") {
            if upstream {
                return self.submit(conn, &[(&topic, body)], None);
            }
            return Some(match publisher.publish(&topic, body) {
                Ok(seq) => Response::json(202, format!("{{\"seq\":{seq}}}\n")),
                Err(e) => publish_error(&e, None),
            });
        }
        // A batch: every line is checked before anything is published.
        let rejected = |code: ErrorCode, message: &str, line: Option<usize>| {
            let why = match code {
                ErrorCode::InvalidTopic => Rejection::InvalidTopic,
                ErrorCode::BadJson | ErrorCode::InvalidPayload => Rejection::InvalidPayload,
                _ => Rejection::BadRequest,
            };
            self.shared.hub.metrics.rejected(why);
            Some(Response::json(400, error_json(code, message, line)))
        };
        let Ok(text) = std::str::from_utf8(body) else {
            return rejected(ErrorCode::InvalidPayload, "body is not UTF-8", None);
        };
        let items = match protocol::parse_batch(text) {
            Ok(items) => items,
            Err(e) => return rejected(e.code, &e.message, Some(e.line)),
        };
        if items.is_empty() {
            return rejected(
                ErrorCode::BadRequest,
                "nothing to publish: give ?topic= with a JSON body, or NDJSON lines of \
                 {\"topic\":...,\"data\":...}",
                None,
            );
        }
        let batch: Vec<(&str, &[u8])> = items
            .iter()
            .map(|(_, p)| (p.topic.as_str(), p.data.get().as_bytes()))
            .collect();
        let lines: Vec<usize> = items.iter().map(|(line, _)| *line).collect();
        if upstream {
            return self.submit(conn, &batch, Some(lines));
        }
        Some(match publisher.publish_batch(&batch) {
            Ok(n) => Response::json(202, format!("{{\"published\":{n}}}\n")),
            Err(e) => publish_error(&e.error, item_line(&e.error, e.index, Some(&lines))),
        })
    }

    /// Hands a publication or batch to Redis; `None` once it is on its way (the answer follows
    /// through `pending`), or the refusal.
    fn submit(
        &mut self,
        conn: ConnId,
        items: &[(&str, &[u8])],
        lines: Option<Vec<usize>>,
    ) -> Option<Response> {
        let serial = self.serial();
        let waiter = Waiter {
            conn,
            serial,
            kind: WaitKind::Http {
                lines: lines.clone(),
            },
        };
        let now = std::time::Instant::now();
        let publisher = self.shared.publisher();
        match self
            .pending
            .submit(&publisher, self.worker, items, waiter, now)
        {
            Ok(()) => {
                self.set_client(conn, Some(Client::Http { serial }));
                None
            }
            Err(e) => Some(publish_error(
                &e.error,
                item_line(&e.error, e.index, lines.as_deref()),
            )),
        }
    }
}

/// The HTTP answer to a publication or batch Redis has answered.
pub(super) fn publish_answer(result: Outcome, lines: Option<&[usize]>) -> Response {
    match (result, lines) {
        (Ok(seqs), None) => Response::json(
            202,
            format!("{{\"seq\":{}}}\n", seqs.first().copied().unwrap_or(0)),
        ),
        (Ok(seqs), Some(_)) => Response::json(202, format!("{{\"published\":{}}}\n", seqs.len())),
        (Err(e), _) => publish_error(&e, None),
    }
}

/// The NDJSON line to name in an error about batch item `index`, when the item is at fault.
fn item_line(e: &PublishError, index: usize, lines: Option<&[usize]>) -> Option<usize> {
    let items_fault = matches!(
        e,
        PublishError::InvalidTopic(_)
            | PublishError::InvalidPayload(_)
            | PublishError::PayloadTooLarge { .. }
    );
    lines.filter(|_| items_fault)?.get(index).copied()
}

/// 200 while the node can do its whole job; 503 with the reason while it cannot (with `--redis`,
/// while Redis is out of reach: the node still serves its subscribers, but refuses publications
/// and misses other nodes' ones, so a load balancer should send new clients elsewhere).
fn healthz(shared: &BrokerShared) -> Response {
    match shared.hub.upstream().map_or(Ok(()), |up| up.health()) {
        Ok(()) => Response::json(200, "{\"status\":\"ok\"}\n"),
        Err(reason) => Response::json(
            503,
            format!(
                "{{\"status\":\"unhealthy\",\"reason\":{}}}\n",
                json!(reason)
            ),
        ),
    }
}

/// `Authorization: Bearer <token>` when a token is configured.
fn check_token(shared: &BrokerShared, req: &Request<'_>) -> Option<Response> {
    let expected = shared.config.publish_token.as_deref()?;
    let given = req
        .header("authorization")
        .and_then(|v| v.trim().strip_prefix("Bearer "))
        .map(str::trim);
    let message = match given {
        Some(t) if constant_time_eq(t.as_bytes(), expected.as_bytes()) => return None,
        Some(_) => "wrong bearer token",
        None => "missing Authorization: Bearer <token>",
    };
    Some(
        Response::json(401, error_json_str("unauthorized", message, None))
            .with_header("WWW-Authenticate", "Bearer"),
    )
}

/// Compares without stopping at the first difference, so timing does not leak the token.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn error_json(code: ErrorCode, message: &str, line: Option<usize>) -> String {
    error_json_str(code.as_str(), message, line)
}

fn error_json_str(code: &str, message: &str, line: Option<usize>) -> String {
    let mut v = json!({ "error": message, "code": code });
    if let Some(line) = line {
        v["line"] = json!(line);
    }
    format!("{v}\n")
}

fn publish_error(e: &PublishError, line: Option<usize>) -> Response {
    Response::json(
        e.http_status(),
        error_json(e.rejection().code(), &e.to_string(), line),
    )
}

/// `{"topics":[{"topic":..,"seq":..,"subscribers":..}],"truncated":false}`: topics with a last
/// value matching `?pattern=` (default `#`), at most `?limit=` of them (default 10,000), and how
/// many subscriptions (exact or wildcard, over all connections) match each.
fn topics(shared: &BrokerShared, req: &Request<'_>) -> Response {
    let pattern = req.query_param("pattern").unwrap_or_else(|| "#".to_owned());
    if let Err(m) = topic::validate_pattern(&pattern) {
        return Response::json(400, error_json(ErrorCode::InvalidTopic, &m, None));
    }
    let limit = match req.query_param("limit").map(|l| l.parse::<usize>()) {
        None => TOPICS_DEFAULT_LIMIT,
        Some(Ok(n)) if (1..=TOPICS_MAX_LIMIT).contains(&n) => n,
        Some(_) => {
            let m = format!("limit must be a number from 1 to {TOPICS_MAX_LIMIT}");
            return Response::json(400, error_json(ErrorCode::BadRequest, &m, None));
        }
    };
    let mut names = Vec::new();
    if topic::is_wildcard(&pattern) {
        // One more than asked, to know whether the list is cut.
        shared
            .hub
            .cache
            .matching(&pattern, Budget::for_matches(limit + 1), |(t, _)| {
                names.push(t.clone());
                true
            });
    } else if shared.hub.cache.contains(&pattern) {
        names.push(pattern.as_str().into());
    }
    let truncated = names.len() > limit;
    names.truncate(limit);
    // The subscriptions in a trie of their own: each listed topic costs a walk, not a pass over
    // every pattern.
    let counts: Vec<(Box<str>, usize)> = shared
        .subscription_counts
        .lock()
        .iter()
        .map(|(p, n)| (p.clone(), *n))
        .collect();
    let mut index = SubscriptionIndex::default();
    for (i, (p, _)) in counts.iter().enumerate() {
        index.insert(p, ConnId(i));
    }
    let list: Vec<serde_json::Value> = names
        .iter()
        .filter_map(|t| shared.hub.cache.get(t))
        .map(|e| {
            let mut subscribers = 0;
            index.for_each_match(&e.topic, |ConnId(i)| subscribers += counts[i].1);
            json!({ "topic": &*e.topic, "seq": e.seq, "subscribers": subscribers })
        })
        .collect();
    Response::json(
        200,
        format!("{}\n", json!({ "topics": list, "truncated": truncated })),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }

    #[test]
    fn batch_errors_name_the_line_only_when_the_item_is_at_fault() {
        let lines = [3, 5];
        let bad = PublishError::InvalidTopic("x".into());
        assert_eq!(item_line(&bad, 1, Some(&lines)), Some(5));
        assert_eq!(item_line(&PublishError::QueueFull, 1, Some(&lines)), None);
        assert_eq!(item_line(&bad, 0, None), None);
    }
}
