//! The broker: topics, subscriptions, the last-value cache, fan-out and the local publish API.
//! It is one [`Handler`] per worker; it knows connections only as [`ConnId`]s and never touches
//! a socket.
//!
//! - [`topic`]: topic and pattern validation, MQTT matching.
//! - [`index`]: a worker's subscriptions (hash for exact topics, trie for patterns).
//! - `cache`, `tree`: last value and sequence number per topic, sharded; every topic by level,
//!   for wildcard snapshots.
//! - `publisher`: the publish API and its errors; `hub`: what publishers and workers share (the
//!   cache, the bounded queues) and the sequencing of a publication; `payload`: what a payload
//!   must be.
//! - [`protocol`]: the client JSON protocol.
//! - `public`: the public listener's routes; `subscriber`: a subscriber's requests and the
//!   fan-out to subscribers; `stream`: streaming publishers; `local_api`: `POST /publish`,
//!   `/metrics`, `/healthz`, `/topics` on the local listener.
//! - `pending`: publications handed to Redis whose answers the worker owes its clients; it never
//!   waits for them.
//! - [`auth`]: JWT verification (`--jwt-key`); [`coverage`]: whether granted patterns cover a
//!   subscribe pattern; `entitlements`: a worker's tokens, their checks and their expiry.

pub mod auth;
pub(crate) mod cache;
pub mod coverage;
mod delivery;
pub mod delta;
mod entitlements;
mod fanout;
pub(crate) mod hub;
pub mod index;
pub(crate) mod local_api;
pub mod payload;
mod pending;
pub mod protocol;
mod public;
pub(crate) mod publisher;
pub(crate) mod rate;
mod snapshots;
mod stream;
mod subscriber;
pub mod topic;
pub mod tree;

use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use crossbeam_channel::Receiver;
use parking_lot::Mutex;

use crate::config::Config;
use crate::server::{ConnId, Handler, Message, Outbox, Request, Route, StatsSource};
use hub::{Delivery, Hub};
use index::SubscriptionIndex;
use pending::Pending;
use protocol::{ClientError, ErrorCode};
use publisher::Publisher;
use stream::StreamPublisher;
use subscriber::Subscriber;

/// The subprotocol a client may ask for.
pub const SUBPROTOCOL: &str = "tickwire.v1";
/// Listener numbers, in the order given to the engine.
pub(crate) const PUBLIC: usize = 0;
pub(crate) const LOCAL: usize = 1;
/// Publications a worker fans out per loop turn before it looks at its sockets again.
const DELIVERIES_PER_TURN: usize = 8192;
/// Connections a worker visits in fan-out per loop turn (a publication costs one visit per
/// matching connection, delivered, held for `max_rate` or merged) before it looks at its
/// sockets and `max_rate` slots again. Counting publications alone let one turn of 8,192
/// publications to 1,000 subscribers each take seconds, so pings, HTTP answers and rate slots
/// waited that long. At ~150-300 ns a visit this is at most ~0.3 s of fan-out per turn, and
/// still ~100 publications per turn (so ~100 frames per write) to 10,000 subscribers of one
/// topic.
const VISITS_PER_TURN: u64 = 1 << 20;

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
    /// Checks subscribers' tokens (`--jwt-key`); replaced by a reload.
    pub verifier: parking_lot::RwLock<Option<Arc<auth::Verifier>>>,
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
    /// it short, it delays that worker's other connections. With Redis, do not publish from it:
    /// [`Publisher::publish`] then blocks for Redis's answer, and that worker with it.
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
    /// An HTTP request whose answer waits for Redis (see `pending`).
    Http {
        serial: u64,
    },
}

/// The broker's handler on one worker.
pub(crate) struct BrokerWorker {
    shared: Arc<BrokerShared>,
    worker: usize,
    rx: Receiver<Delivery>,
    index: SubscriptionIndex,
    /// Indexed by `ConnId`.
    clients: Vec<Option<Client>>,
    /// Publications fanned out so far (worker-local), to deliver once per connection.
    stamp: u64,
    /// Publications handed to Redis whose answers are due.
    pending: Pending,
    /// Tells a connection from a later one that reuses its `ConnId`.
    next_serial: u64,
    /// Subscribers owed snapshots, in turn.
    snapshot_turns: VecDeque<ConnId>,
    /// Snapshots and replayed messages sent this loop turn (bounded by
    /// `snapshots::SNAPSHOTS_PER_TURN`).
    snapshots_this_turn: usize,
    /// `max_rate` slots with a value waiting, by when they open.
    rate_timers: BinaryHeap<fanout::RateTimer>,
    /// When the worker started: subscribers count their request windows from it.
    started: std::time::Instant,
    /// Tokens held by this worker's connections (`--jwt-key`).
    auth: entitlements::WorkerAuth,
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
            pending: Pending::default(),
            next_serial: 0,
            snapshot_turns: VecDeque::new(),
            snapshots_this_turn: 0,
            rate_timers: BinaryHeap::new(),
            started: std::time::Instant::now(),
            auth: Default::default(),
        }
    }

    fn set_client(&mut self, conn: ConnId, client: Option<Client>) {
        if self.clients.len() <= conn.0 {
            self.clients.resize_with(conn.0 + 1, || None);
        }
        self.clients[conn.0] = client;
    }

    fn serial(&mut self) -> u64 {
        self.next_serial += 1;
        self.next_serial
    }

    /// An `error` message, counted.
    fn error_text(&self, err: &ClientError) -> String {
        self.shared.hub.metrics.client_error(err.code);
        protocol::error(err)
    }

    fn send_error(&self, conn: ConnId, err: &ClientError, out: &mut Outbox<'_>) {
        out.send_text(conn, &self.error_text(err));
    }

    /// Answers whatever Redis answered (or did not answer in time) since the last turn.
    fn answer_pending(&mut self, out: &mut Outbox<'_>) {
        for (waiter, result) in self.pending.resolved(out.now(), &self.shared.hub) {
            match waiter.kind {
                pending::WaitKind::Http { lines } => {
                    match self.clients.get(waiter.conn.0) {
                        Some(Some(Client::Http { serial })) if *serial == waiter.serial => {}
                        _ => continue, // the client is gone
                    }
                    let response = local_api::publish_answer(result, lines.as_deref());
                    self.set_client(waiter.conn, None);
                    out.respond(waiter.conn, &response);
                }
                pending::WaitKind::Stream { ticket, id } => {
                    self.on_stream_answer(waiter.conn, waiter.serial, ticket, id, result, out)
                }
            }
        }
    }
}

impl Handler for BrokerWorker {
    fn on_request(
        &mut self,
        conn: ConnId,
        listener: usize,
        req: &Request<'_>,
        body: &[u8],
    ) -> Route {
        if listener == PUBLIC {
            self.public_route(conn, req)
        } else {
            self.local_route(conn, req, body)
        }
    }

    fn on_open(&mut self, conn: ConnId, listener: usize, req: &Request<'_>, out: &mut Outbox<'_>) {
        self.shared.connection_event(ConnectionEvent::Opened);
        if listener == LOCAL {
            let serial = self.serial();
            self.set_client(conn, Some(Client::Publisher(StreamPublisher::new(serial))));
            return;
        }
        self.adopt_upgrade_token(conn, out.now());
        self.open_subscriber(conn, req, out);
    }

    fn on_message(&mut self, conn: ConnId, msg: Message, out: &mut Outbox<'_>) {
        let is_publisher = matches!(self.clients.get(conn.0), Some(Some(Client::Publisher(_))));
        match msg {
            Message::Text(text) if is_publisher => self.on_publisher_message(conn, &text, out),
            Message::Text(text) => self.on_subscriber_message(conn, &text, out),
            Message::Binary(_) => {
                let e = ClientError::new(
                    ErrorCode::BadRequest,
                    "send JSON in text frames, not binary",
                    None,
                );
                let text = self.error_text(&e);
                // A publisher's answers keep the order of its frames.
                self.answer_publisher(conn, Some(text), out);
            }
        }
    }

    fn on_close(&mut self, conn: ConnId) {
        self.auth.forget(conn);
        let client = self.clients.get_mut(conn.0).and_then(Option::take);
        match client {
            Some(Client::Subscriber(sub)) => {
                self.shared.connection_event(ConnectionEvent::Closed);
                if let Some(d) = sub.extra.deltas() {
                    self.shared.hub.want_deltas(-(d.count() as isize));
                }
                for p in sub.patterns.iter() {
                    self.index.remove(p, conn);
                    self.shared.count_subscription(p, -1);
                }
            }
            Some(Client::Publisher(_)) => self.shared.connection_event(ConnectionEvent::Closed),
            Some(Client::Http { .. }) | None => {}
        }
    }

    fn on_turn(&mut self, out: &mut Outbox<'_>) {
        self.expire_tokens(out);
        if self.pending.has_work() {
            self.answer_pending(out);
        }
        // What subscribes owe from earlier turns, then this turn's share starts afresh.
        if !self.snapshot_turns.is_empty() {
            self.send_owed(out);
        }
        self.snapshots_this_turn = 0;
        let mut taken = 0;
        let mut visits = 0;
        let mut delivered = self.open_rate_slots(out);
        while taken < DELIVERIES_PER_TURN && visits < VISITS_PER_TURN {
            let Ok(d) = self.rx.try_recv() else {
                break;
            };
            taken += 1;
            let fanned = self.fan_out(&d, out);
            delivered += fanned.delivered;
            visits += fanned.visits;
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
        !self.rx.is_empty() || self.pending.has_answers() || !self.snapshot_turns.is_empty()
    }

    fn next_deadline(&self) -> Option<std::time::Instant> {
        [
            self.pending.next_deadline(),
            self.next_rate_slot(),
            self.auth.next_expiry(),
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

#[cfg(test)]
mod size_tests {
    #[test]
    fn an_idle_subscriber_is_small() {
        // One entry of `clients` per connection (issue 16; BENCHMARKS.md has the breakdown).
        // What only some subscribers need sits behind `Subscriber::extra`.
        let size = std::mem::size_of::<Option<super::Client>>();
        eprintln!(
            "clients entry (Option<Client>) {size} B, Subscriber {} B, StreamPublisher {} B",
            std::mem::size_of::<super::subscriber::Subscriber>(),
            std::mem::size_of::<super::stream::StreamPublisher>(),
        );
        assert!(
            size <= 64,
            "a clients entry is {size} bytes (was 96 before issue 16)"
        );
    }
}
