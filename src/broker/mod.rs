//! The broker: topics, subscriptions, the last-value cache, fan-out and the local publish API.
//! It is one [`Handler`] per worker; it knows connections only as [`ConnId`]s and never touches
//! a socket.
//!
//! - [`topic`]: topic and pattern validation, MQTT matching.
//! - [`index`]: a worker's subscriptions (hash for exact topics, trie for patterns).
//! - `cache`: last value and sequence number per topic, sharded.
//! - `publisher`: the publish path into the workers' bounded queues.
//! - [`protocol`]: the client JSON protocol.
//! - `local_api`: `POST /publish`, `/metrics`, `/healthz`, `/topics` on the local listener.

pub(crate) mod cache;
pub mod index;
pub(crate) mod local_api;
pub mod protocol;
pub(crate) mod publisher;
pub mod topic;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;

use crate::config::Config;
use crate::server::{
    ConnId, Handler, HttpResponse, Limits, Message, Outbox, Request, Route, StatsSource,
};
use index::SubscriptionIndex;
use protocol::ClientError;
use publisher::{Delivery, Hub, PublishError, Publisher};

/// The subprotocol a client may ask for.
pub const SUBPROTOCOL: &str = "tickwire.v1";
/// Listener numbers, in the order given to the engine.
pub(crate) const PUBLIC: usize = 0;
pub(crate) const LOCAL: usize = 1;
/// Publications a worker fans out per loop turn before it looks at its sockets again.
const DELIVERIES_PER_TURN: usize = 8192;
/// With `--redis`, publications a streaming publisher may have waiting for Redis's answer; past
/// it the worker waits for answers before it reads the next one (so a fast publisher is slowed
/// by TCP, not buffered without end).
const STREAM_WINDOW: usize = 1024;
/// How long the worker waits for room in that window before refusing the publication.
const STREAM_WAIT: Duration = Duration::from_secs(10);

/// What every worker of one broker shares, besides the publish hub.
#[derive(Debug)]
pub(crate) struct BrokerShared {
    pub hub: Arc<Hub>,
    pub config: Config,
    /// Subscriptions per pattern across all connections, for `/topics`.
    pub subscription_counts: Mutex<HashMap<Box<str>, usize>>,
    /// The engine's counters, set once the engine runs.
    pub engine: OnceLock<StatsSource>,
    /// WebSocket clients (subscribers and streaming publishers) open now.
    pub clients_open: AtomicUsize,
    pub hooks: Hooks,
}

/// What happened to a WebSocket client connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionEvent {
    Opened,
    Closed,
}

/// Called with each event and the number of WebSocket clients open after it.
pub type ConnectionCallback = Arc<dyn Fn(ConnectionEvent, usize) + Send + Sync>;

/// Code the embedding application wants run on broker events.
#[derive(Clone, Default)]
pub struct Hooks {
    /// Runs on the worker thread that owns the connection, right after it opened or closed: keep
    /// it short, it delays that worker's other connections.
    pub on_connection: Option<ConnectionCallback>,
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks")
            .field("on_connection", &self.on_connection.is_some())
            .finish()
    }
}

impl BrokerShared {
    pub fn publisher(&self) -> Publisher {
        Publisher {
            hub: self.hub.clone(),
        }
    }

    fn connection_event(&self, event: ConnectionEvent) {
        let open = match event {
            ConnectionEvent::Opened => self.clients_open.fetch_add(1, Ordering::Relaxed) + 1,
            ConnectionEvent::Closed => self.clients_open.fetch_sub(1, Ordering::Relaxed) - 1,
        };
        if let Some(f) = &self.hooks.on_connection {
            f(event, open);
        }
    }

    fn count_subscription(&self, pattern: &str, delta: isize) {
        let mut counts = self.subscription_counts.lock();
        let n = counts.entry(pattern.into()).or_insert(0);
        *n = n.saturating_add_signed(delta);
        if *n == 0 {
            counts.remove(pattern);
        }
        drop(counts);
        self.hub
            .metrics
            .subscriptions
            .fetch_add(delta as i64, Ordering::Relaxed);
    }
}

/// One connection as the broker sees it.
#[derive(Debug)]
enum Client {
    Subscriber(Subscriber),
    /// A streaming publisher on the local listener.
    Publisher(StreamPublisher),
}

/// A streaming publisher's answers in the order of its frames. With `--redis` a publication is
/// answered when Redis has answered, later, while the frames after it are being read; the
/// answers still go out in frame order.
#[derive(Debug, Default)]
struct StreamPublisher {
    /// Tells this connection from a later one that reuses its `ConnId`.
    serial: u64,
    /// One per frame not yet answered, oldest first: `None` while waiting for Redis, then the
    /// answer to send (itself `None` for a success without an `id`, which gets no answer).
    pending: VecDeque<Option<Option<String>>>,
    /// The ticket of the next frame sent to Redis; `pending[0]` is `next_ticket - pending.len()`.
    next_ticket: u64,
}

/// Redis's answer to a streaming publisher's frame, on its way back to the worker.
#[derive(Debug)]
struct StreamAnswer {
    conn: ConnId,
    serial: u64,
    ticket: u64,
    id: Option<String>,
    result: Result<u64, PublishError>,
}

#[derive(Debug)]
struct Subscriber {
    /// Requests in the current one-second window, and when it began.
    requests_in_window: u32,
    window: Instant,
    patterns: HashSet<Box<str>>,
    /// Per topic id, the seq of the snapshot sent: queued live updates up to it are stale.
    floors: HashMap<u64, u64>,
    /// The last publication (worker-local number) delivered, to deliver once per connection.
    stamp: u64,
}

/// The broker's handler on one worker.
pub(crate) struct BrokerWorker {
    shared: Arc<BrokerShared>,
    worker: usize,
    rx: Receiver<Delivery>,
    index: SubscriptionIndex,
    /// Indexed by `ConnId`.
    clients: Vec<Option<Client>>,
    stamp: u64,
    /// Answers for this worker's streaming publishers (`--redis`), sent by the Redis writer.
    /// Bounded by `STREAM_WINDOW` per publisher.
    answers: (Sender<StreamAnswer>, Receiver<StreamAnswer>),
    next_serial: u64,
}

impl BrokerWorker {
    pub fn new(shared: Arc<BrokerShared>, worker: usize, rx: Receiver<Delivery>) -> Self {
        BrokerWorker {
            shared,
            worker,
            rx,
            index: SubscriptionIndex::default(),
            clients: Vec::new(),
            stamp: 0,
            answers: crossbeam_channel::unbounded(),
            next_serial: 0,
        }
    }

    fn client_limits(&self) -> Limits {
        let max = self.shared.config.max_client_message;
        Limits {
            max_frame: max as u64,
            max_message: max,
        }
    }

    fn public_route(&self, req: &Request) -> Route {
        let metrics = &self.shared.hub.metrics;
        let answer = |resp: HttpResponse| {
            metrics.http_error(resp.status);
            Route::Http(resp)
        };
        match (req.method.as_str(), req.path()) {
            ("GET", "/") => Route::Http(HttpResponse::new(
                200,
                "text/html; charset=utf-8",
                crate::web::INDEX_HTML,
            )),
            ("GET", "/ws") => {
                let allowed = &self.shared.config.allowed_origins;
                if !allowed.is_empty() {
                    let origin = req.header("origin").unwrap_or("");
                    if !allowed.iter().any(|a| a == origin) {
                        return answer(HttpResponse::text(
                            403,
                            &format!("origin '{origin}' is not allowed"),
                        ));
                    }
                }
                let protocol = req
                    .offered_protocols()
                    .any(|p| p == SUBPROTOCOL)
                    .then(|| SUBPROTOCOL.to_owned());
                Route::WebSocket {
                    protocol,
                    limits: Some(self.client_limits()),
                }
            }
            (_, "/" | "/ws") => answer(
                HttpResponse::text(405, "only GET is allowed here").with_header("Allow", "GET"),
            ),
            (_, path) => answer(HttpResponse::text(
                404,
                &format!("no such path '{path}': the page is at / and WebSockets at /ws"),
            )),
        }
    }

    fn set_client(&mut self, conn: ConnId, client: Option<Client>) {
        if self.clients.len() <= conn.0 {
            self.clients.resize_with(conn.0 + 1, || None);
        }
        self.clients[conn.0] = client;
    }

    fn send_error(&self, conn: ConnId, err: &ClientError, out: &mut Outbox<'_>) {
        self.shared.hub.metrics.client_error(err.code);
        out.send_text(conn, &protocol::error(err));
    }

    /// Counts a request against the per-second limit: `Ok` to serve it, `Err` to refuse it
    /// (with an error, or by closing a client that keeps flooding).
    fn admit_request(&mut self, conn: ConnId, out: &mut Outbox<'_>) -> Result<(), ()> {
        let limit = self.shared.config.max_requests_per_sec;
        let Some(Some(Client::Subscriber(sub))) = self.clients.get_mut(conn.0) else {
            return Ok(());
        };
        let now = Instant::now();
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
                "rate_limited",
                format!("over {limit} requests per second: slow down"),
                None,
            );
            self.send_error(conn, &e, out);
        }
        Err(())
    }

    fn on_subscriber_message(&mut self, conn: ConnId, text: &str, out: &mut Outbox<'_>) {
        if self.admit_request(conn, out).is_err() {
            return;
        }
        let result = protocol::parse_request(text).and_then(|req| match req {
            protocol::Request::Subscribe { topics, id } => self.subscribe(conn, topics, id, out),
            protocol::Request::Unsubscribe { topics, id } => {
                self.unsubscribe(conn, topics, id, out)
            }
            protocol::Request::Ping { id } => {
                out.send_text(conn, &protocol::pong(id.as_deref()));
                Ok(())
            }
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
        let id = check_patterns(&patterns, id)?;
        let max = self.shared.config.max_subscriptions;
        let Some(Some(Client::Subscriber(sub))) = self.clients.get_mut(conn.0) else {
            return Ok(());
        };
        let new: HashSet<&str> = patterns
            .iter()
            .map(String::as_str)
            .filter(|p| !sub.patterns.contains(*p))
            .collect();
        if sub.patterns.len() + new.len() > max {
            return Err(ClientError::new(
                "too_many_subscriptions",
                format!(
                    "this would make {} subscriptions; the limit per connection is {max}",
                    sub.patterns.len() + new.len()
                ),
                id,
            ));
        }
        for p in &new {
            sub.patterns.insert((*p).into());
            self.index.insert(p, conn);
            self.shared.count_subscription(p, 1);
        }
        out.send_text(conn, &protocol::ack("subscribed", &patterns, id.as_deref()));
        self.send_snapshots(conn, &patterns, out);
        Ok(())
    }

    /// The last value of every topic the patterns match (bounded for wildcards), each once.
    fn send_snapshots(&mut self, conn: ConnId, patterns: &[String], out: &mut Outbox<'_>) {
        let hub = &self.shared.hub;
        let limit = self.shared.config.max_snapshot_topics;
        let mut entries = Vec::new();
        for p in patterns {
            if topic::is_wildcard(p) {
                entries.extend(hub.cache.collect(|t| topic::matches(p, t), limit));
            } else if let Some(e) = hub.cache.get(p) {
                entries.push(e);
            }
        }
        let Some(Some(Client::Subscriber(sub))) = self.clients.get_mut(conn.0) else {
            return;
        };
        let mut seen = HashSet::new();
        let mut buf = Vec::new();
        for e in entries {
            if !seen.insert(e.id) {
                continue;
            }
            protocol::encode_msg_frame(&mut buf, &e.topic_json, e.seq, true, e.payload());
            sub.floors.insert(e.id, e.seq);
            out.send_keyed(conn, e.id, &Arc::from(&buf[..]));
            hub.metrics.snapshots.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn unsubscribe(
        &mut self,
        conn: ConnId,
        patterns: Vec<String>,
        id: Option<String>,
        out: &mut Outbox<'_>,
    ) -> Result<(), ClientError> {
        let id = check_patterns(&patterns, id)?;
        if let Some(Some(Client::Subscriber(sub))) = self.clients.get_mut(conn.0) {
            for p in &patterns {
                if sub.patterns.remove(p.as_str()) {
                    self.index.remove(p, conn);
                    self.shared.count_subscription(p, -1);
                }
            }
        }
        out.send_text(
            conn,
            &protocol::ack("unsubscribed", &patterns, id.as_deref()),
        );
        Ok(())
    }

    /// Queues one publication on every matching connection, once each.
    fn fan_out(&mut self, d: &Delivery, out: &mut Outbox<'_>) -> u64 {
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

    fn on_publisher_message(&mut self, conn: ConnId, text: &str, out: &mut Outbox<'_>) {
        let publication = match protocol::parse_publication(text) {
            Ok(p) => p,
            Err((code, message)) => {
                let e = ClientError::new(code, message, None);
                return self.answer_publisher(conn, Some(self.error_text(&e)), out);
            }
        };
        let id = publication.id.map(|r| r.get().to_owned());
        let (topic, payload) = (&publication.topic, publication.data.get().as_bytes());
        if self.shared.hub.upstream().is_some() {
            return self.submit_publication(conn, topic, payload, id, out);
        }
        let answer = match self.shared.publisher().publish(topic, payload) {
            Ok(seq) => id.map(|id| published(seq, &id)),
            Err(e) => Some(self.error_text(&ClientError::new(e.code(), e.to_string(), id))),
        };
        self.answer_publisher(conn, answer, out);
    }

    /// With `--redis`: sends the publication to Redis without waiting; its answer comes back
    /// through `answers` (see [`BrokerWorker::on_answer`]).
    fn submit_publication(
        &mut self,
        conn: ConnId,
        topic: &str,
        payload: &[u8],
        id: Option<String>,
        out: &mut Outbox<'_>,
    ) {
        if !self.wait_for_window(conn, out) {
            let e = ClientError::new(
                "unavailable",
                format!("redis: no answers for {STREAM_WAIT:?} to earlier publications"),
                id,
            );
            return self.answer_publisher(conn, Some(self.error_text(&e)), out);
        }
        let Some(Some(Client::Publisher(p))) = self.clients.get(conn.0) else {
            return;
        };
        let (serial, ticket) = (p.serial, p.next_ticket);
        let answers = self.answers.0.clone();
        let hub = self.shared.hub.clone();
        let worker = self.worker;
        let answer_id = id.clone();
        let done = Box::new(move |result| {
            let answer = StreamAnswer {
                conn,
                serial,
                ticket,
                id: answer_id,
                result,
            };
            // The worker is gone only at shutdown; then nobody is left to answer.
            if answers.send(answer).is_ok() {
                hub.wake_worker(worker);
            }
        });
        match self.shared.publisher().submit(topic, payload, done) {
            Ok(()) => {
                if let Some(Some(Client::Publisher(p))) = self.clients.get_mut(conn.0) {
                    p.pending.push_back(None);
                    p.next_ticket += 1;
                }
            }
            Err(e) => {
                let e = ClientError::new(e.code(), e.to_string(), id);
                self.answer_publisher(conn, Some(self.error_text(&e)), out);
            }
        }
    }

    /// Handles answers until `conn` has room in its window; false if none came in time.
    fn wait_for_window(&mut self, conn: ConnId, out: &mut Outbox<'_>) -> bool {
        let deadline = Instant::now() + STREAM_WAIT;
        loop {
            match self.clients.get(conn.0) {
                Some(Some(Client::Publisher(p))) if p.pending.len() >= STREAM_WINDOW => {}
                _ => return true,
            }
            match self.answers.1.recv_deadline(deadline) {
                Ok(a) => self.on_answer(a, out),
                Err(_) => return false,
            }
        }
    }

    /// Redis answered one of a streaming publisher's frames: record it, then send every answer
    /// now due, in frame order.
    fn on_answer(&mut self, a: StreamAnswer, out: &mut Outbox<'_>) {
        let slot = match self.clients.get(a.conn.0) {
            Some(Some(Client::Publisher(p))) if p.serial == a.serial => {
                let first = p.next_ticket - p.pending.len() as u64;
                a.ticket.checked_sub(first)
            }
            _ => None, // for a connection that closed meanwhile
        };
        let Some(slot) = slot else { return };
        let text = match a.result {
            Ok(seq) => a.id.as_deref().map(|id| published(seq, id)),
            Err(e) => Some(self.error_text(&ClientError::new(e.code(), e.to_string(), a.id))),
        };
        let Some(Some(Client::Publisher(p))) = self.clients.get_mut(a.conn.0) else {
            return;
        };
        if let Some(waiting) = p.pending.get_mut(slot as usize) {
            *waiting = Some(text);
        }
        while let Some(Some(_)) = p.pending.front() {
            if let Some(Some(Some(text))) = p.pending.pop_front() {
                out.send_text(a.conn, &text);
            }
        }
    }

    /// Sends a streaming publisher an answer (`None`: nothing to send), after the answers
    /// still waiting for Redis.
    fn answer_publisher(&mut self, conn: ConnId, answer: Option<String>, out: &mut Outbox<'_>) {
        match self.clients.get_mut(conn.0) {
            Some(Some(Client::Publisher(p))) if !p.pending.is_empty() => {
                p.pending.push_back(Some(answer));
                p.next_ticket += 1;
            }
            _ => {
                if let Some(text) = answer {
                    out.send_text(conn, &text);
                }
            }
        }
    }

    /// An `error` message, counted.
    fn error_text(&self, err: &ClientError) -> String {
        self.shared.hub.metrics.client_error(err.code);
        protocol::error(err)
    }
}

/// `{"type":"published","seq":N,"id":ID}`
fn published(seq: u64, id: &str) -> String {
    format!("{{\"type\":\"published\",\"seq\":{seq},\"id\":{id}}}")
}

/// Every pattern valid, or an `invalid_topic` error naming the first bad one.
fn check_patterns(patterns: &[String], id: Option<String>) -> Result<Option<String>, ClientError> {
    match patterns
        .iter()
        .find_map(|p| topic::validate_pattern(p).err())
    {
        Some(msg) => Err(ClientError::new("invalid_topic", msg, id)),
        None => Ok(id),
    }
}

impl Handler for BrokerWorker {
    fn on_request(&mut self, listener: usize, req: &Request, body: &[u8]) -> Route {
        if listener == PUBLIC {
            self.public_route(req)
        } else {
            local_api::route(&self.shared, req, body)
        }
    }

    fn on_open(&mut self, conn: ConnId, listener: usize, req: &Request, out: &mut Outbox<'_>) {
        self.shared.connection_event(ConnectionEvent::Opened);
        if listener == LOCAL {
            self.next_serial += 1;
            let publisher = StreamPublisher {
                serial: self.next_serial,
                ..StreamPublisher::default()
            };
            self.set_client(conn, Some(Client::Publisher(publisher)));
            return;
        }
        self.set_client(
            conn,
            Some(Client::Subscriber(Subscriber {
                requests_in_window: 0,
                window: Instant::now(),
                patterns: HashSet::new(),
                floors: HashMap::new(),
                stamp: 0,
            })),
        );
        // `?subscribe=a,b` is answered as if sent as the first frame.
        if let Some(topics) = req
            .query()
            .and_then(|q| local_api::query_param(q, "subscribe"))
        {
            let patterns: Vec<String> = topics
                .split(',')
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .collect();
            if let Err(e) = self.subscribe(conn, patterns, None, out) {
                self.send_error(conn, &e, out);
            }
        }
    }

    fn on_message(&mut self, conn: ConnId, msg: Message, out: &mut Outbox<'_>) {
        let is_publisher = matches!(self.clients.get(conn.0), Some(Some(Client::Publisher(_))));
        match msg {
            Message::Text(text) if is_publisher => self.on_publisher_message(conn, &text, out),
            Message::Text(text) => self.on_subscriber_message(conn, &text, out),
            Message::Binary(_) => {
                let e =
                    ClientError::new("bad_request", "send JSON in text frames, not binary", None);
                let text = self.error_text(&e);
                // A publisher's answers keep the order of its frames.
                self.answer_publisher(conn, Some(text), out);
            }
        }
    }

    fn on_close(&mut self, conn: ConnId) {
        let client = self.clients.get_mut(conn.0).and_then(Option::take);
        if client.is_some() {
            self.shared.connection_event(ConnectionEvent::Closed);
        }
        if let Some(Client::Subscriber(sub)) = client {
            for p in &sub.patterns {
                self.index.remove(p, conn);
                self.shared.count_subscription(p, -1);
            }
        }
    }

    fn on_turn(&mut self, out: &mut Outbox<'_>) {
        while let Ok(a) = self.answers.1.try_recv() {
            self.on_answer(a, out);
        }
        let mut taken = 0;
        let mut delivered = 0;
        while taken < DELIVERIES_PER_TURN {
            let Ok(d) = self.rx.try_recv() else {
                break;
            };
            taken += 1;
            delivered += self.fan_out(&d, out);
        }
        let hub = &self.shared.hub;
        hub.taken(self.worker, taken);
        if delivered > 0 {
            hub.metrics
                .deliveries
                .fetch_add(delivered, Ordering::Relaxed);
        }
    }

    fn has_pending_work(&self) -> bool {
        !self.rx.is_empty() || !self.answers.1.is_empty()
    }
}
