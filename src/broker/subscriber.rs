//! Subscribers: WebSocket clients of the public listener, and their requests (subscribe with its
//! options, unsubscribe, ping) within a per-second limit.
//!
//! The work of one request is bounded by what it asks for: its patterns are deduplicated before
//! anything else, its `since` is bounded by the subscription limit, and what it is owed
//! (snapshots, replays) goes out a slice per loop turn (see `snapshots`).

use std::collections::{HashMap, HashSet};

use super::delivery::Deltas;
use super::protocol::{self, ClientError, ErrorCode, Subscribe};
use super::rate::RateLimiter;
use super::snapshots::Backlog;
use super::topic;
use super::{BrokerWorker, Client};
use crate::server::{ConnId, Outbox, Request};

/// One subscriber. Kept small: an idle connection holds one of these, so what is rarely
/// needed sits behind a pointer that is null while unused.
#[derive(Debug)]
pub(crate) struct Subscriber {
    /// Tells this connection from a later one that reuses its `ConnId` (for timers).
    pub serial: u64,
    /// Requests in the current one-second window, and when it began (whole seconds since the
    /// worker started).
    requests_in_window: u32,
    window: u32,
    pub patterns: PatternSet,
    /// Bumped by every unsubscribe: what was owed from before must check it is still wanted.
    pub patterns_changed: u64,
    /// Floors, snapshots owed, rate slots, deltas: null for a subscriber that has none.
    pub extra: Extra,
    /// The server window agreed for permessage-deflate, `None` when not.
    pub deflate: Option<u8>,
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
                window: 0,
                patterns: PatternSet::default(),
                patterns_changed: 0,
                extra: Extra::with_cap(cap),
                deflate: out.compression(conn),
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
        let second = out.now().saturating_duration_since(self.started).as_secs() as u32;
        let Some(sub) = self.subscriber(conn) else {
            return Ok(());
        };
        if second != sub.window {
            sub.window = second;
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
            protocol::Request::Auth { token, id } => self.authenticate(conn, &token, id, out),
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
        // Entitlements (`--jwt-key`, entitlements.rs): every pattern granted, or none subscribed.
        let id = self.check_entitled(conn, &patterns, id)?;
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
            sub.patterns.insert(p);
        }
        if request.max_rate.is_some() || sub.extra.rate().is_some() {
            sub.extra
                .or_default()
                .rate
                .get_or_insert_with(|| Box::new(RateLimiter::new(cap)))
                .set(&patterns, request.max_rate);
        }
        let mut delta_change = 0;
        if request.delta || sub.extra.deltas().is_some() {
            delta_change = sub
                .extra
                .or_default()
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
        self.remove_patterns(conn, &patterns);
        out.send_text(
            conn,
            &protocol::ack("unsubscribed", &patterns, id.as_deref()),
        );
        Ok(())
    }

    /// Ends the connection's subscriptions to `patterns` (those it has): an unsubscribe, or a
    /// refreshed token that no longer grants them. What is still owed or held back for them
    /// (snapshots, rate slots) is not sent.
    pub(super) fn remove_patterns(&mut self, conn: ConnId, patterns: &[String]) {
        let Some(sub) = self.subscriber(conn) else {
            return;
        };
        sub.patterns_changed += 1;
        let removed: Vec<&String> = patterns
            .iter()
            .filter(|p| sub.patterns.remove(p.as_str()))
            .collect();
        if let Some(rate) = sub.extra.rate_mut() {
            let remaining = &sub.patterns;
            rate.unsubscribed(&removed, || remaining.iter().collect());
        }
        let delta_change = sub
            .extra
            .deltas_mut()
            .map_or(0, |d| d.unsubscribed(&removed));
        self.shared.hub.want_deltas(delta_change);
        for p in removed {
            self.index.remove(p, conn);
            self.shared.count_subscription(p, -1);
        }
    }
}

impl Subscriber {
    /// The floor of topic `id`, if one is set.
    pub fn floor(&self, id: u64) -> Option<u64> {
        self.extra.0.as_ref()?.floors.as_ref()?.get(&id).copied()
    }

    pub fn set_floor(&mut self, id: u64, seq: u64) {
        self.extra
            .or_default()
            .floors
            .get_or_insert_with(Default::default)
            .insert(id, seq);
    }

    /// The first live update past the floor came: it is no longer needed (nor, when it was the
    /// last, the map).
    pub fn clear_floor(&mut self, id: u64) {
        let Some(x) = self.extra.0.as_deref_mut() else {
            return;
        };
        if let Some(f) = &mut x.floors {
            f.remove(&id);
            if f.is_empty() {
                x.floors = None;
                self.extra.tidy();
            }
        }
    }
}

/// What only some subscribers need, behind one pointer that is null for the others: an idle
/// subscriber carries 8 bytes for all of it instead of 8 for each.
#[derive(Debug, Default)]
pub(crate) struct Extra(Option<Box<ExtraState>>);

#[derive(Debug, Default)]
pub(crate) struct ExtraState {
    /// Per topic id, the seq of the snapshot or replay sent: queued live updates up to it are
    /// stale. `None` (no memory) when there are none.
    #[allow(clippy::box_collection)]
    pub floors: Option<Box<HashMap<u64, u64>>>,
    /// Snapshots and replays still to send, `None` (no memory) when there are none.
    pub backlog: Option<Box<Backlog>>,
    /// `max_rate` slots, `None` when nothing limits this subscriber.
    pub rate: Option<Box<RateLimiter>>,
    /// What was last sent per topic, for `delta: true`; `None` when never asked.
    pub deltas: Option<Box<Deltas>>,
}

impl Extra {
    /// With the server's `max_rate` cap (`cap > 0`) every subscriber has rate slots from the
    /// start.
    pub fn with_cap(cap: f64) -> Extra {
        Extra((cap > 0.0).then(|| {
            Box::new(ExtraState {
                rate: Some(Box::new(RateLimiter::new(cap))),
                ..Default::default()
            })
        }))
    }

    /// The state, made if there was none.
    pub fn or_default(&mut self) -> &mut ExtraState {
        self.0.get_or_insert_with(Default::default)
    }

    /// Gives the memory back once nothing is left in it.
    pub fn tidy(&mut self) {
        if self.0.as_ref().is_some_and(|x| {
            x.floors.is_none() && x.backlog.is_none() && x.rate.is_none() && x.deltas.is_none()
        }) {
            self.0 = None;
        }
    }

    pub fn backlog_mut(&mut self) -> Option<&mut Backlog> {
        self.0.as_deref_mut()?.backlog.as_deref_mut()
    }

    /// Drops the backlog (nothing more is owed).
    pub fn end_backlog(&mut self) {
        if let Some(x) = self.0.as_deref_mut() {
            x.backlog = None;
            self.tidy();
        }
    }

    pub fn rate(&self) -> Option<&RateLimiter> {
        self.0.as_deref()?.rate.as_deref()
    }

    pub fn rate_mut(&mut self) -> Option<&mut RateLimiter> {
        self.0.as_deref_mut()?.rate.as_deref_mut()
    }

    pub fn deltas(&self) -> Option<&Deltas> {
        self.0.as_deref()?.deltas.as_deref()
    }

    pub fn deltas_mut(&mut self) -> Option<&mut Deltas> {
        self.0.as_deref_mut()?.deltas.as_deref_mut()
    }
}

/// A connection's patterns: a sorted list, which for the usual handful costs far less than a
/// hash set, and looks up in log time for the thousand allowed. A boxed slice of exactly the
/// patterns held (16 bytes inline, one allocation of 16 bytes per pattern): a `Vec` would keep
/// room for four after the first insert, and every idle subscriber would carry that slack.
/// Inserting copies the list, which is bounded by the subscription limit and rare.
#[derive(Debug, Default)]
pub(crate) struct PatternSet(Box<[Box<str>]>);

impl PatternSet {
    pub fn contains(&self, p: &str) -> bool {
        self.0.binary_search_by(|q| (**q).cmp(p)).is_ok()
    }

    pub fn insert(&mut self, p: &str) -> bool {
        match self.0.binary_search_by(|q| (**q).cmp(p)) {
            Ok(_) => false,
            Err(at) => {
                let mut list = Vec::with_capacity(self.0.len() + 1);
                list.extend(std::mem::take(&mut self.0));
                list.insert(at, p.into());
                self.0 = list.into_boxed_slice();
                true
            }
        }
    }

    pub fn remove(&mut self, p: &str) -> bool {
        match self.0.binary_search_by(|q| (**q).cmp(p)) {
            Ok(at) => {
                let mut list = Vec::from(std::mem::take(&mut self.0));
                list.remove(at);
                self.0 = list.into_boxed_slice();
                true
            }
            Err(_) => false,
        }
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|p| &**p)
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
