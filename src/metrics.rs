//! The broker's counters and their Prometheus text rendering (`GET /metrics`).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use crate::broker::auth::Refusal;
use crate::broker::cache::NotRecovered;
use crate::broker::protocol::ErrorCode;
use crate::server::EngineStats;

/// Why a publication was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rejection {
    InvalidTopic,
    InvalidPayload,
    PayloadTooLarge,
    QueueFull,
    ShuttingDown,
    /// `--redis` and the connection is down, or Redis refused it.
    Unavailable,
    /// A new topic past `--max-topics`.
    TooManyTopics,
    /// A request that is not a publication at all (an NDJSON line or a streaming frame that is
    /// not JSON, or lacks `topic` or `data`).
    BadRequest,
}

impl Rejection {
    const ALL: [Rejection; 8] = [
        Rejection::InvalidTopic,
        Rejection::InvalidPayload,
        Rejection::PayloadTooLarge,
        Rejection::QueueFull,
        Rejection::ShuttingDown,
        Rejection::Unavailable,
        Rejection::TooManyTopics,
        Rejection::BadRequest,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Rejection::InvalidTopic => "invalid_topic",
            Rejection::InvalidPayload => "invalid_payload",
            Rejection::PayloadTooLarge => "payload_too_large",
            Rejection::QueueFull => "queue_full",
            Rejection::ShuttingDown => "shutting_down",
            Rejection::Unavailable => "unavailable",
            Rejection::TooManyTopics => "too_many_topics",
            Rejection::BadRequest => "bad_request",
        }
    }

    /// The error code a subscriber or streaming publisher is answered with.
    pub fn code(self) -> ErrorCode {
        match self {
            Rejection::InvalidTopic => ErrorCode::InvalidTopic,
            Rejection::InvalidPayload => ErrorCode::InvalidPayload,
            Rejection::PayloadTooLarge => ErrorCode::PayloadTooLarge,
            Rejection::QueueFull => ErrorCode::QueueFull,
            Rejection::ShuttingDown => ErrorCode::ShuttingDown,
            Rejection::Unavailable => ErrorCode::Unavailable,
            Rejection::TooManyTopics => ErrorCode::TooManyTopics,
            Rejection::BadRequest => ErrorCode::BadRequest,
        }
    }
}

/// HTTP statuses the local and public listeners answer with errors (the application's answers;
/// what the engine refuses is in `handshake_errors_total`).
const HTTP_ERROR_STATUSES: [u16; 7] = [400, 401, 403, 404, 405, 413, 503];

#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub published: AtomicU64,
    rejected: [AtomicU64; Rejection::ALL.len()],
    /// Live frames queued to subscribers.
    pub deliveries: AtomicU64,
    pub snapshots: AtomicU64,
    pub subscriptions: AtomicI64,
    client_errors: [AtomicU64; ErrorCode::ALL.len()],
    http_errors: [AtomicU64; HTTP_ERROR_STATUSES.len()],
    /// Things that should never happen, counted instead of crashing.
    pub internal_errors: AtomicU64,
    /// Publications handed to Redis and answered 503 because Redis did not answer in time.
    pub answer_timeouts: AtomicU64,
    /// Bytes of frames held in the topics' histories.
    history_bytes: AtomicI64,
    /// Messages sent again to reconnecting subscribers (recovery).
    pub replayed: AtomicU64,
    /// Topics recovered after a reconnect (replayed, or up to date).
    pub recovered: AtomicU64,
    /// Topics in `since` that got a snapshot instead, by reason.
    not_recovered: [AtomicU64; NotRecovered::ALL.len()],
    /// Live updates merged away by a subscriber's `max_rate` (a newer one replaced them).
    pub rate_merged: AtomicU64,
    /// Publications (a batch counts once) handed to Redis whose answer a worker still owes its
    /// client: neither answered by Redis nor given up on yet.
    pub awaiting_answer: AtomicU64,
    /// Tokens accepted and refused, connections closed at expiry (`--jwt-key`).
    pub auth: AuthMetrics,
}

impl Metrics {
    pub fn rejected(&self, r: Rejection) {
        let i = Rejection::ALL.iter().position(|&x| x == r).unwrap_or(0);
        self.rejected[i].fetch_add(1, Ordering::Relaxed);
    }

    pub fn rejected_total(&self) -> u64 {
        self.rejected
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .sum()
    }

    pub fn client_error(&self, code: ErrorCode) {
        if let Some(i) = ErrorCode::ALL.iter().position(|&c| c == code) {
            self.client_errors[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Returns the bytes held after the change.
    pub fn history_bytes_add(&self, added: usize, freed: usize) -> usize {
        let change = added as i64 - freed as i64;
        let before = self.history_bytes.fetch_add(change, Ordering::Relaxed);
        (before + change).max(0) as usize
    }

    pub fn not_recovered(&self, why: NotRecovered) {
        if let Some(i) = NotRecovered::ALL.iter().position(|&r| r == why) {
            self.not_recovered[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn http_error(&self, status: u16) {
        if let Some(i) = HTTP_ERROR_STATUSES.iter().position(|&s| s == status) {
            self.http_errors[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Renders everything in the Prometheus text exposition format (version 0.0.4).
    pub fn render(&self, engine: &EngineStats, topics: usize, queued: usize) -> String {
        let mut out = String::with_capacity(4096);
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut one = |name: &str, kind: &str, help: &str, value: u64| {
            write_one(&mut out, name, kind, help, value);
        };
        one(
            "connections",
            "gauge",
            "Open connections (subscribers, publishers, HTTP).",
            engine.connections as u64,
        );
        one(
            "connections_accepted_total",
            "counter",
            "Connections accepted.",
            engine.connections_accepted,
        );
        one(
            "connections_refused_total",
            "counter",
            "Connections refused at max_connections.",
            engine.connections_refused,
        );
        one(
            "handshake_errors_total",
            "counter",
            "Requests the engine refused: malformed heads, bad upgrades, bodies it would not read.",
            engine.handshake_errors,
        );
        one(
            "handshake_timeouts_total",
            "counter",
            "Requests not received within the handshake timeout.",
            engine.handshake_timeouts,
        );
        one(
            "protocol_errors_total",
            "counter",
            "Connections failed for breaking RFC 6455 (1002, 1007, 1009).",
            engine.protocol_errors,
        );
        one(
            "slow_consumers_closed_total",
            "counter",
            "Subscribers closed with 1008 for not reading.",
            engine.slow_consumers_closed,
        );
        one(
            "conflated_total",
            "counter",
            "Updates replaced by a newer one before a slow subscriber read them.",
            engine.frames_conflated,
        );
        one(
            "abuse_closed_total",
            "counter",
            "Connections closed with 1008 for flooding (requests, pings).",
            engine.abuse_closed,
        );
        one(
            "tls_errors_total",
            "counter",
            "TLS connections ended by a TLS error (not TLS, a failed handshake, a bad record).",
            engine.tls_errors,
        );
        one(
            "writes_deferred_total",
            "counter",
            "Connection writes left for the next turn: the end-of-turn flush had used its 2 ms.",
            engine.writes_deferred,
        );
        one(
            "http_requests_total",
            "counter",
            "HTTP requests served (not upgrades), keep-alive ones included.",
            engine.http_requests,
        );
        one(
            "pong_timeouts_total",
            "counter",
            "Connections dropped for not answering pings.",
            engine.pong_timeouts,
        );
        one(
            "published_total",
            "counter",
            "Publications accepted.",
            get(&self.published),
        );
        one(
            "deliveries_total",
            "counter",
            "Live updates queued to subscribers.",
            get(&self.deliveries),
        );
        one(
            "snapshots_total",
            "counter",
            "Snapshots sent on subscribe.",
            get(&self.snapshots),
        );
        one(
            "topics",
            "gauge",
            "Topics with a last value.",
            topics as u64,
        );
        one(
            "subscriptions",
            "gauge",
            "Subscriptions held by connected clients.",
            self.subscriptions.load(Ordering::Relaxed).max(0) as u64,
        );
        one(
            "publish_queue_depth",
            "gauge",
            "Publications waiting in worker queues, summed.",
            queued as u64,
        );
        one(
            "publish_answer_timeouts_total",
            "counter",
            "Publications answered 503 because Redis did not answer in time (they may still have been published).",
            get(&self.answer_timeouts),
        );
        one(
            "publish_awaiting_answer",
            "gauge",
            "Publications (a batch counts once) handed to Redis whose answer is still owed to their publisher.",
            get(&self.awaiting_answer),
        );
        one(
            "history_bytes",
            "gauge",
            "Bytes of frames kept in the topics' histories for recovery (--history).",
            self.history_bytes.load(Ordering::Relaxed).max(0) as u64,
        );
        one(
            "replayed_total",
            "counter",
            "Messages replayed to reconnecting subscribers.",
            get(&self.replayed),
        );
        one(
            "recovered_total",
            "counter",
            "Topics recovered after a reconnect without a snapshot.",
            get(&self.recovered),
        );
        one(
            "rate_merged_total",
            "counter",
            "Live updates replaced by a newer one within a subscriber's max_rate slot.",
            get(&self.rate_merged),
        );
        one(
            "internal_errors_total",
            "counter",
            "Internal errors (should stay 0).",
            get(&self.internal_errors),
        );

        write_family(
            &mut out,
            "publish_rejected_total",
            "Publications refused, by reason.",
            "reason",
            Rejection::ALL
                .iter()
                .zip(&self.rejected)
                .map(|(r, a)| (r.label(), get(a))),
        );
        write_family(
            &mut out,
            "recovery_refused_total",
            "Topics in a subscribe's since that got a snapshot instead, by reason.",
            "reason",
            NotRecovered::ALL
                .iter()
                .zip(&self.not_recovered)
                .map(|(w, a)| (w.label(), get(a))),
        );
        write_family(
            &mut out,
            "client_errors_total",
            "Error messages sent to WebSocket clients, by code.",
            "code",
            ErrorCode::ALL
                .iter()
                .zip(&self.client_errors)
                .map(|(c, a)| (c, get(a))),
        );
        write_family(
            &mut out,
            "http_errors_total",
            "HTTP error responses, by status.",
            "status",
            HTTP_ERROR_STATUSES
                .iter()
                .zip(&self.http_errors)
                .map(|(s, a)| (s, get(a))),
        );
        self.auth.render(&mut out);
        out
    }
}

/// Counters of authentications, for `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct AuthMetrics {
    pub accepted: AtomicU64,
    refused: [AtomicU64; Refusal::ALL.len()],
    /// Connections closed with 1008 "token expired".
    pub expired_closed: AtomicU64,
    /// Connections closed with 1008 "no token": none sent within the handshake timeout.
    pub no_token_closed: AtomicU64,
    /// Subscriptions ended by a refresh whose grants no longer covered them.
    pub narrowed: AtomicU64,
}

impl AuthMetrics {
    pub fn refused(&self, r: Refusal) {
        if let Some(i) = Refusal::ALL.iter().position(|&x| x == r) {
            self.refused[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Appends the auth metrics in the Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        write_one(
            out,
            "auth_accepted_total",
            "counter",
            "Tokens accepted (upgrade URL or header, and auth ops).",
            get(&self.accepted),
        );
        write_family(
            out,
            "auth_refused_total",
            "Tokens refused, by reason.",
            "reason",
            Refusal::ALL
                .iter()
                .zip(&self.refused)
                .map(|(r, a)| (r.label(), get(a))),
        );
        write_one(
            out,
            "token_expired_closed_total",
            "counter",
            "Connections closed with 1008 when their token expired.",
            get(&self.expired_closed),
        );
        write_one(
            out,
            "no_token_closed_total",
            "counter",
            "Connections closed with 1008 for sending no token within the handshake timeout.",
            get(&self.no_token_closed),
        );
        write_one(
            out,
            "subscriptions_forbidden_total",
            "counter",
            "Subscriptions ended because a refreshed token no longer granted them.",
            get(&self.narrowed),
        );
    }
}

/// One metric, `tickwire_` + `name`, with its HELP and TYPE lines.
fn write_one(out: &mut String, name: &str, kind: &str, help: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP tickwire_{name} {help}\n# TYPE tickwire_{name} {kind}\ntickwire_{name} {value}"
    );
}

/// A counter with one label: its HELP and TYPE lines, then a line per value of the label.
fn write_family<L: std::fmt::Display>(
    out: &mut String,
    name: &str,
    help: &str,
    label: &str,
    values: impl IntoIterator<Item = (L, u64)>,
) {
    let _ = writeln!(
        out,
        "# HELP tickwire_{name} {help}\n# TYPE tickwire_{name} counter"
    );
    for (l, value) in values {
        let _ = writeln!(out, "tickwire_{name}{{{label}=\"{l}\"}} {value}");
    }
}
