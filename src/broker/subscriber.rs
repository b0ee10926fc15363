//! Subscribers: WebSocket clients of the public listener, and their requests (subscribe with its
//! options, unsubscribe, ping) within a per-second limit.
//!
//! The work of one request is bounded by what it asks for: its patterns are deduplicated before
//! anything else, its `since` is bounded by the subscription limit, and what it is owed
//! (snapshots, replays) goes out a slice per loop turn (see `snapshots`).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use super::delivery::Deltas;
use super::protocol::{self, ClientError, ErrorCode, Subscribe};
use super::rate::RateLimiter;
use super::snapshots::Backlog;
use super::topic;
use super::{BrokerWorker, Client};
use crate::server::{ConnId, Outbox, Request};

#[derive(Debug)]
pub(crate) struct Subscriber {
    /// Tells this connection from a later one that reuses its `ConnId` (for timers).
    pub serial: u64,
    /// Requests in the current one-second window, and when it began.
    requests_in_window: u32,
    window: Instant,
    pub patterns: HashSet<Box<str>>,
    /// Bumped by every unsubscribe: what was owed from before must check it is still wanted.
    pub patterns_changed: u64,
    /// Per topic id, the seq of the snapshot or replay sent: queued live updates up to it are
    /// stale.
    pub floors: HashMap<u64, u64>,
    /// Snapshots and replays still to send, `None` (no memory) when there are none.
    pub backlog: Option<Box<Backlog>>,
    /// `max_rate` slots, `None` when nothing limits this subscriber.
    pub rate: Option<Box<RateLimiter>>,
    /// What was last sent per topic, for `delta: true`; `None` when never asked.
    pub deltas: Option<Box<Deltas>>,
    /// The last publication (worker-local number) delivered, to deliver once per connection.
    pub stamp: u64,
}

impl BrokerWorker {
    /// A subscriber connected; `?subscribe=a,b` is answered as if sent as the first frame (and
    /// counts against the request limit like one).
    pub(super) fn open_subscriber(
        &mut self,
        conn: ConnId,
        req: &Request<'_>,
        out: &mut Outbox<'_>,
    ) {
        let cap = self.shared.config.max_update_rate;
        let serial = self.serial();
        self.set_client(
            conn,
            Some(Client::Subscriber(Subscriber {
                serial,
                requests_in_window: 0,
                window: out.now(),
                patterns: HashSet::new(),
                patterns_changed: 0,
                floors: HashMap::new(),
                backlog: None,
                rate: (cap > 0.0).then(|| Box::new(RateLimiter::new(cap))),
                deltas: None,
                stamp: 0,
            })),
        );
        let Some(topics) = req.query_param("subscribe") else {
            return;
        };
        if self.admit_request(conn, None, out).is_err() {
            return;
        }
        let request = Subscribe {
            topics: topics
                .split(',')
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .collect(),
            ..Subscribe::default()
        };
        if let Err(e) = self.subscribe(conn, request, out) {
            self.send_error(conn, &e, out);
        }
    }

    pub(super) fn subscriber(&mut self, conn: ConnId) -> Option<&mut Subscriber> {
        match self.clients.get_mut(conn.0) {
            Some(Some(Client::Subscriber(s))) => Some(s),
            _ => None,
        }
    }

    /// Counts a request against the per-second limit: `Ok` to serve it, `Err` to refuse it
    /// (with a `rate_limited` error carrying `id`, or, past twice the limit, by closing).
    fn admit_request(
        &mut self,
        conn: ConnId,
        id: Option<String>,
        out: &mut Outbox<'_>,
    ) -> Result<(), ()> {
        let limit = self.shared.config.max_requests_per_sec;
        let now = out.now();
        let Some(sub) = self.subscriber(conn) else {
            return Ok(());
        };
        if now.saturating_duration_since(sub.window) >= Duration::from_secs(1) {
            sub.window = now;
            sub.requests_in_window = 0;
        }
        sub.requests_in_window += 1;
        let n = sub.requests_in_window;
        if n <= limit {
            return Ok(());
        }
        if n > limit.saturating_mul(2) {
            out.close_abusive(conn, "request flood");
        } else {
            let e = ClientError::new(
                ErrorCode::RateLimited,
                format!("over {limit} requests per second: slow down"),
                id,
            );
            self.send_error(conn, &e, out);
        }
        Err(())
    }

    pub(super) fn on_subscriber_message(&mut self, conn: ConnId, text: &str, out: &mut Outbox<'_>) {
        let parsed = protocol::parse_request(text, self.shared.config.max_json_depth);
        let id = match &parsed {
            Ok(r) => r.id().map(str::to_owned),
            Err(e) => e.id.clone(),
        };
        if self.admit_request(conn, id, out).is_err() {
            return;
        }
        let result = parsed.and_then(|req| match req {
            protocol::Request::Subscribe(s) => self.subscribe(conn, s, out),
            protocol::Request::Unsubscribe { topics, id } => {
                self.unsubscribe(conn, topics, id, out)
            }
            protocol::Request::Ping { id } => {
                out.send_text(conn, &protocol::pong(id.as_deref()));
                Ok(())
            }
            protocol::Request::Auth { id, .. } => Err(ClientError::new(
                ErrorCode::BadRequest,
                "tokens are not configured on this server: subscribe without one",
                id,
            )),
        });
        if let Err(e) = result {
            self.send_error(conn, &e, out);
        }
    }

    /// Subscribes to every pattern or none, answers `subscribed` (with the epoch, and what was
    /// recovered), then sends what the subscriber is owed: replays for the topics it can
    /// recover, snapshots for the rest.
    fn subscribe(
        &mut self,
        conn: ConnId,
        request: Subscribe,
        out: &mut Outbox<'_>,
    ) -> Result<(), ClientError> {
        let patterns = dedup(request.topics);
        let id = check_patterns(&patterns, request.id)?;
        let max = self.shared.config.max_subscriptions;
        if request.since.len() > max {
            return Err(ClientError::new(
                ErrorCode::BadRequest,
                format!(
                    "\"since\" lists {} topics; at most {max} (the subscription limit)",
                    request.since.len()
                ),
                id,
            ));
        }
        let cap = self.shared.config.max_update_rate;
        let Some(sub) = self.subscriber(conn) else {
            return Ok(());
        };
        let new: Vec<&String> = patterns
            .iter()
            .filter(|p| !sub.patterns.contains(p.as_str()))
            .collect();
        if sub.patterns.len() + new.len() > max {
            return Err(ClientError::new(
                ErrorCode::TooManySubscriptions,
                format!(
                    "this would make {} subscriptions; the limit per connection is {max}",
                    sub.patterns.len() + new.len()
                ),
                id,
            ));
        }
        for p in &new {
            sub.patterns.insert(p.as_str().into());
        }
        if request.max_rate.is_some() || sub.rate.is_some() {
            sub.rate
                .get_or_insert_with(|| Box::new(RateLimiter::new(cap)))
                .set(&patterns, request.max_rate);
        }
        let mut delta_change = 0;
        if request.delta || sub.deltas.is_some() {
            delta_change = sub
                .deltas
                .get_or_insert_with(Default::default)
                .set(&patterns, request.delta);
        }
        for p in &new {
            self.index.insert(p, conn);
            self.shared.count_subscription(p, 1);
        }
        self.shared.hub.want_deltas(delta_change);
        let epoch = self.shared.hub.epoch();
        let since = !request.since.is_empty() || request.epoch.is_some();
        let recovered = if since {
            let same_epoch = request.epoch.as_deref() == Some(&*epoch);
            self.owe_replays(conn, &patterns, request.since, same_epoch)
        } else {
            Vec::new()
        };
        out.send_text(
            conn,
            &protocol::reply::subscribed(
                &patterns,
                &epoch,
                since.then_some(recovered.as_slice()),
                id.as_deref(),
            ),
        );
        self.owe_snapshots(conn, &patterns, out);
        Ok(())
    }

    fn unsubscribe(
        &mut self,
        conn: ConnId,
        patterns: Vec<String>,
        id: Option<String>,
        out: &mut Outbox<'_>,
    ) -> Result<(), ClientError> {
        let patterns = dedup(patterns);
        let id = check_patterns(&patterns, id)?;
        if let Some(sub) = self.subscriber(conn) {
            sub.patterns_changed += 1;
            let removed: Vec<&String> = patterns
                .iter()
                .filter(|p| sub.patterns.remove(p.as_str()))
                .collect();
            if let Some(rate) = &mut sub.rate {
                let remaining = &sub.patterns;
                rate.unsubscribed(&removed, || remaining.iter().map(|p| &**p).collect());
            }
            let delta_change = sub.deltas.as_mut().map_or(0, |d| d.unsubscribed(&removed));
            self.shared.hub.want_deltas(delta_change);
            for p in removed {
                self.index.remove(p, conn);
                self.shared.count_subscription(p, -1);
            }
        }
        out.send_text(
            conn,
            &protocol::ack("unsubscribed", &patterns, id.as_deref()),
        );
        Ok(())
    }
}

/// The patterns in the order given, each once.
fn dedup(patterns: Vec<String>) -> Vec<String> {
    let mut seen = HashSet::with_capacity(patterns.len());
    patterns
        .into_iter()
        .filter(|p| seen.insert(p.clone()))
        .collect()
}

/// Every pattern valid, or an `invalid_topic` error naming the first bad one.
fn check_patterns(patterns: &[String], id: Option<String>) -> Result<Option<String>, ClientError> {
    match patterns
        .iter()
        .find_map(|p| topic::validate_pattern(p).err())
    {
        Some(msg) => Err(ClientError::new(ErrorCode::InvalidTopic, msg, id)),
        None => Ok(id),
    }
}
