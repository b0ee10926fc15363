//! Subscribers: WebSocket clients of the public listener. Their requests (subscribe,
//! unsubscribe, ping) within a per-second limit, the snapshots a subscribe sends, and the
//! fan-out of each publication to the subscribers whose patterns match it, once per connection.
//!
//! The work of one request is bounded by what it asks for: its patterns are deduplicated before
//! anything else, and its wildcard snapshots come from one walk budget for the whole request
//! (see `tree`), never from a pass over every topic. The snapshots themselves are sent a slice
//! per loop turn ([`SNAPSHOTS_PER_TURN`] on a worker), so a subscribe of a thousand topics never
//! holds up the other connections of its worker for long.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::protocol::{self, ClientError, ErrorCode};
use super::publisher::Delivery;
use super::topic;
use super::tree::Budget;
use super::{BrokerWorker, Client};
use crate::server::{ConnId, Outbox, Request};

/// Snapshots a worker sends per loop turn, over all its subscribers.
pub(crate) const SNAPSHOTS_PER_TURN: usize = 256;

#[derive(Debug)]
pub(crate) struct Subscriber {
    /// Requests in the current one-second window, and when it began.
    requests_in_window: u32,
    window: Instant,
    pub patterns: HashSet<Box<str>>,
    /// Bumped by every unsubscribe: snapshots owed from before must check they are still wanted.
    patterns_changed: u64,
    /// Per topic id, the seq of the snapshot sent: queued live updates up to it are stale.
    floors: HashMap<u64, u64>,
    /// Snapshots still to send, `None` (no memory) when there are none.
    backlog: Option<Box<Backlog>>,
    /// The last publication (worker-local number) delivered, to deliver once per connection.
    stamp: u64,
}

/// Snapshots a subscribe asked for and the worker has not sent yet.
#[derive(Debug, Default)]
struct Backlog {
    /// (topic id, topic, `patterns_changed` when it was asked for), in order.
    queue: VecDeque<(u64, Arc<str>, u64)>,
    /// The ids in `queue` still owed: a live update of the topic sent meanwhile makes its
    /// snapshot obsolete (the subscriber has something newer).
    owed: HashSet<u64>,
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
        self.set_client(
            conn,
            Some(Client::Subscriber(Subscriber {
                requests_in_window: 0,
                window: out.now(),
                patterns: HashSet::new(),
                patterns_changed: 0,
                floors: HashMap::new(),
                backlog: None,
                stamp: 0,
            })),
        );
        let Some(topics) = req.query_param("subscribe") else {
            return;
        };
        if self.admit_request(conn, None, out).is_err() {
            return;
        }
        let patterns: Vec<String> = topics
            .split(',')
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect();
        if let Err(e) = self.subscribe(conn, patterns, None, out) {
            self.send_error(conn, &e, out);
        }
    }

    fn subscriber(&mut self, conn: ConnId) -> Option<&mut Subscriber> {
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
            protocol::Request::Subscribe(s) => self.subscribe(conn, s.topics, s.id, out),
            protocol::Request::Unsubscribe { topics, id } => {
                self.unsubscribe(conn, topics, id, out)
            }
            protocol::Request::Ping { id } => {
                out.send_text(conn, &protocol::pong(id.as_deref()));
                Ok(())
            }
            protocol::Request::Auth { token, id } => self.authenticate(conn, &token, id, out),
        });
        if let Err(e) = result {
            self.send_error(conn, &e, out);
        }
    }

    /// Subscribes to every pattern or none, answers `subscribed`, then sends the snapshots.
    fn subscribe(
        &mut self,
        conn: ConnId,
        patterns: Vec<String>,
        id: Option<String>,
        out: &mut Outbox<'_>,
    ) -> Result<(), ClientError> {
        let patterns = dedup(patterns);
        let id = check_patterns(&patterns, id)?;
        // Entitlements (`--jwt-key`, entitlements.rs): every pattern granted, or none subscribed.
        let id = self.check_entitled(conn, &patterns, id)?;
        let max = self.shared.config.max_subscriptions;
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
        for p in &new {
            self.index.insert(p, conn);
            self.shared.count_subscription(p, 1);
        }
        out.send_text(conn, &protocol::ack("subscribed", &patterns, id.as_deref()));
        self.send_snapshots(conn, &patterns, out);
        Ok(())
    }

    /// Owes the subscriber the last value of every topic the patterns match, each once: every
    /// exact topic's, and for the wildcards together at most `max_snapshot_topics`, found within
    /// one walk budget. Sends what this turn's share allows; the rest follows turn by turn.
    fn send_snapshots(&mut self, conn: ConnId, patterns: &[String], out: &mut Outbox<'_>) {
        let hub = self.shared.hub.clone();
        let mut budget = Budget::for_matches(self.shared.config.max_snapshot_topics);
        let mut topics: Vec<(Arc<str>, u64)> = Vec::new();
        for p in patterns {
            if !topic::is_wildcard(p) {
                if let Some(id) = hub.cache.id_of(p) {
                    topics.push((p.as_str().into(), id));
                }
            } else if budget.matches > 0 && budget.visits > 0 {
                let walked = hub.cache.matching(p, budget, |named| {
                    topics.push(named.clone());
                    true
                });
                budget.matches -= walked.given;
                budget.visits = budget.visits.saturating_sub(walked.visited);
            }
        }
        let Some(sub) = self.subscriber(conn) else {
            return;
        };
        let generation = sub.patterns_changed;
        let backlog = sub.backlog.get_or_insert_with(Default::default);
        for (name, id) in topics {
            if backlog.owed.insert(id) {
                backlog.queue.push_back((id, name, generation));
            }
        }
        if backlog.queue.is_empty() {
            sub.backlog = None;
            return;
        }
        if !self.snapshot_turns.contains(&conn) {
            self.snapshot_turns.push_back(conn);
        }
        self.send_owed_snapshots(out);
    }

    /// Sends owed snapshots, round-robin over the subscribers that are owed some, until this
    /// turn's share is spent.
    pub(super) fn send_owed_snapshots(&mut self, out: &mut Outbox<'_>) {
        let hub = self.shared.hub.clone();
        let mut left = SNAPSHOTS_PER_TURN.saturating_sub(self.snapshots_this_turn);
        let mut sent = 0;
        while left > 0 {
            let Some(conn) = self.snapshot_turns.pop_front() else {
                break;
            };
            let Some(sub) = self.subscriber(conn) else {
                continue;
            };
            // A slice per subscriber per round, so one large subscribe does not starve others.
            let slice = left.min(64);
            let mut done = 0;
            while done < slice {
                let Some(backlog) = sub.backlog.as_mut() else {
                    break;
                };
                let Some((id, name, generation)) = backlog.queue.pop_front() else {
                    break;
                };
                if !backlog.owed.remove(&id) {
                    continue; // a live update came first
                }
                if generation != sub.patterns_changed
                    && !sub.patterns.iter().any(|p| topic::matches(p, &name))
                {
                    continue; // unsubscribed since
                }
                let Some(snap) = hub.cache.snapshot(&name) else {
                    continue;
                };
                sub.floors.insert(snap.id, snap.seq);
                out.send_keyed(conn, snap.id, &snap.frame);
                done += 1;
            }
            left -= done;
            sent += done;
            match &sub.backlog {
                Some(b) if !b.queue.is_empty() => self.snapshot_turns.push_back(conn),
                _ => sub.backlog = None,
            }
        }
        self.snapshots_this_turn += sent;
        hub.metrics
            .snapshots
            .fetch_add(sent as u64, Ordering::Relaxed);
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
        self.remove_patterns(conn, &patterns);
        out.send_text(
            conn,
            &protocol::ack("unsubscribed", &patterns, id.as_deref()),
        );
        Ok(())
    }

    /// Ends the connection's subscriptions to `patterns` (those it has): an unsubscribe, or a
    /// refreshed token that no longer grants them. Snapshots still owed for them are not sent.
    pub(super) fn remove_patterns(&mut self, conn: ConnId, patterns: &[String]) {
        let Some(sub) = self.subscriber(conn) else {
            return;
        };
        sub.patterns_changed += 1;
        let removed: Vec<&String> = patterns
            .iter()
            .filter(|p| sub.patterns.remove(p.as_str()))
            .collect();
        for p in removed {
            self.index.remove(p, conn);
            self.shared.count_subscription(p, -1);
        }
    }

    /// Queues one publication on every matching connection, once each.
    pub(super) fn fan_out(&mut self, d: &Delivery, out: &mut Outbox<'_>) -> u64 {
        self.stamp += 1;
        let stamp = self.stamp;
        let clients = &mut self.clients;
        let mut delivered = 0;
        self.index.for_each_match(&d.topic, |conn| {
            let Some(Some(Client::Subscriber(sub))) = clients.get_mut(conn.0) else {
                return;
            };
            if sub.stamp == stamp {
                return;
            }
            sub.stamp = stamp;
            if let Some(backlog) = &mut sub.backlog {
                // Something newer than the snapshot it was owed.
                backlog.owed.remove(&d.topic_id);
            }
            if !sub.floors.is_empty() {
                if let Some(&floor) = sub.floors.get(&d.topic_id) {
                    if d.seq <= floor {
                        return; // already sent as the snapshot
                    }
                    sub.floors.remove(&d.topic_id);
                }
            }
            if out.send_keyed(conn, d.topic_id, &d.frame) {
                delivered += 1;
            }
        });
        delivered
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
