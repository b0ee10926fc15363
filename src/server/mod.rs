//! The event loop that owns the sockets: mio workers, connections, outbound queues, HTTP routes.
//!
//! [`Server::start`] binds the listeners and starts one worker thread per core. Each worker has
//! its own `mio::Poll` watching a copy of every listening socket (whichever worker is free
//! accepts), its own `Slab` of connections and its own [`Handler`]. The worker reads
//! until `WouldBlock`, hands whole requests and messages to the handler, and flushes each
//! connection the handler wrote to once per loop turn, many frames per write (small frames
//! gathered into one buffer: see `outbound`).
//!
//! The engine speaks HTTP/1.1 just enough to route a request and upgrade it, and RFC 6455 fully
//! (through [`crate::ws`]). It answers pings, runs the closing handshake both ways, enforces the
//! handshake timeout, pings idle peers and drops the ones that stop answering. It knows nothing of
//! topics: the handler decides what a request or a message means.

mod conn;
pub mod echo;
mod outbound;
mod worker;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

pub use crate::ws::handshake::Request;
pub use crate::ws::{CloseCode, Limits};
pub use outbound::Frame;
pub use worker::Outbox;

/// Engine settings, shared by every listener.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Worker threads (each with its own event loop). Default: available parallelism.
    pub workers: usize,
    /// Open connections per listener, across all workers; past it new ones are refused at once
    /// (503). Per listener, so that a flood on one cannot lock operators out of another.
    pub max_connections: usize,
    /// Time a client has to send a whole request head (and body).
    pub handshake_timeout: Duration,
    /// Silence after which the server sends a ping.
    pub ping_interval: Duration,
    /// Silence after which a connection is dropped (no frame, not even a pong).
    pub pong_timeout: Duration,
    /// Time the peer has to answer our close frame before the socket is dropped.
    pub close_timeout: Duration,
    /// Frame and message size limits for what clients send (1009 past them).
    pub limits: Limits,
    /// Largest HTTP request body (413 past it).
    pub max_request_body: usize,
    /// Bytes a connection may have waiting to be written before the engine stops reading from it
    /// (backpressure: a client that does not read cannot make the server buffer its echoes).
    pub read_pause_bytes: usize,
    /// Bytes waiting past which frames sent with a key ([`Outbox::send_keyed`]) are conflated:
    /// a newer frame with the same key replaces the older one still waiting.
    pub conflate_above_bytes: usize,
    /// Bytes a connection may have waiting; past it the connection is closed with 1008.
    pub max_outbound_bytes: usize,
    /// How long output may wait with no byte written before the connection is closed with 1008.
    pub max_stall: Duration,
    /// Pings a client may send per second; pings past it are not answered, and a client that
    /// sends twice as many is closed with 1008.
    pub max_pings_per_sec: u32,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            max_connections: 100_000,
            handshake_timeout: Duration::from_secs(10),
            ping_interval: Duration::from_secs(30),
            pong_timeout: Duration::from_secs(60),
            close_timeout: Duration::from_secs(5),
            limits: Limits::default(),
            max_request_body: 8 * 1024 * 1024,
            read_pause_bytes: 256 * 1024,
            conflate_above_bytes: 256 * 1024,
            max_outbound_bytes: 4 * 1024 * 1024,
            max_stall: Duration::from_secs(30),
            max_pings_per_sec: 20,
        }
    }
}

/// A connection, unique within its worker while it is open. The handler sees `on_close` for a
/// connection before its id can be reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub usize);

/// A whole data message from a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Text(String),
    Binary(Vec<u8>),
}

/// What to do with a request, decided by the handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Upgrade to WebSocket, answering with this subprotocol (one the client offered) if any,
    /// with these size limits for what the client sends (`None`: the server's).
    WebSocket {
        protocol: Option<String>,
        limits: Option<Limits>,
    },
    /// Answer with this response and close the connection.
    Http(HttpResponse),
}

/// A plain HTTP response. Sent with `Content-Length` and `Connection: close`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub content_type: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        HttpResponse {
            status,
            content_type: content_type.to_owned(),
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// A short plain-text body, the way every error is answered.
    pub fn text(status: u16, body: &str) -> Self {
        Self::new(status, "text/plain; charset=utf-8", format!("{body}\n"))
    }

    pub fn json(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Self::new(status, "application/json", body)
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let extra: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        crate::ws::handshake::http_response(self.status, &self.content_type, &extra, &self.body)
    }
}

/// The application the event loop drives: one instance per worker, called only from that
/// worker's thread. Ids are per worker.
pub trait Handler: Send + 'static {
    /// A complete request arrived on listener number `listener` (its index in the list given to
    /// [`Server::start`]). For an upgrade request the engine has already checked the WebSocket
    /// headers; returning [`Route::WebSocket`] for a request that is not an upgrade answers 426.
    /// The default upgrades every request without a subprotocol.
    fn on_request(&mut self, listener: usize, req: &Request, body: &[u8]) -> Route {
        let _ = (listener, req, body);
        Route::WebSocket {
            protocol: None,
            limits: None,
        }
    }

    /// The 101 has been queued: the connection is open.
    fn on_open(&mut self, conn: ConnId, listener: usize, req: &Request, out: &mut Outbox<'_>) {
        let _ = (conn, listener, req, out);
    }

    /// A whole text or binary message arrived.
    fn on_message(&mut self, conn: ConnId, msg: Message, out: &mut Outbox<'_>);

    /// The connection is gone (closing handshake done, error, timeout or reset). Called once for
    /// every connection that was opened, before its id is reused.
    fn on_close(&mut self, conn: ConnId) {
        let _ = conn;
    }

    /// Called once every loop turn, after the socket events: the place to drain cross-thread work
    /// (woken by [`Notifier::notify`]).
    fn on_turn(&mut self, out: &mut Outbox<'_>) {
        let _ = out;
    }

    /// Whether cross-thread work is waiting; checked just before the worker sleeps, so that work
    /// queued while the worker was busy is not left until the next event.
    fn has_pending_work(&self) -> bool {
        false
    }
}

/// Wakes one worker from another thread, and only when it may be asleep.
#[derive(Debug)]
pub struct Notifier {
    waker: mio::Waker,
    /// Set by the worker just before it polls, cleared when it wakes.
    sleeping: AtomicBool,
}

impl Notifier {
    /// Call after queueing work for this worker. Costs a syscall only if the worker may be asleep.
    pub fn notify(&self) {
        // The fence pairs with the worker's: its store of `sleeping` then its look at the queue,
        // against our push to the queue then our look at `sleeping`. Either the worker sees the
        // work, or we see it sleeping (the Dekker pattern).
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::SeqCst) {
            let _ = self.waker.wake();
        }
    }

    fn force(&self) {
        let _ = self.waker.wake();
    }
}

/// State shared by the workers and the handle.
#[derive(Debug, Default)]
struct Shared {
    shutdown: AtomicBool,
    /// Open sockets per listener, across all workers (for `max_connections`).
    connections: Box<[AtomicUsize]>,
    stats: EngineCounters,
}

impl Shared {
    fn open_connections(&self) -> usize {
        self.connections
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }
}

/// Counters kept by the engine, for metrics.
#[derive(Debug, Default)]
struct EngineCounters {
    connections_accepted: AtomicU64,
    connections_refused: AtomicU64,
    handshake_errors: AtomicU64,
    handshake_timeouts: AtomicU64,
    protocol_errors: AtomicU64,
    slow_consumers_closed: AtomicU64,
    pong_timeouts: AtomicU64,
    frames_conflated: AtomicU64,
    abuse_closed: AtomicU64,
}

/// A snapshot of the engine's counters (all since start).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Connections open right now.
    pub connections: usize,
    pub connections_accepted: u64,
    /// Refused because `max_connections` were open.
    pub connections_refused: u64,
    /// Malformed requests, refused upgrades, and bodies refused by the engine (400, 411, 413,
    /// 426, 431).
    pub handshake_errors: u64,
    pub handshake_timeouts: u64,
    /// Connections failed for breaking RFC 6455 (1002, 1007, 1009).
    pub protocol_errors: u64,
    /// Closed with 1008 for not reading their output.
    pub slow_consumers_closed: u64,
    /// Dropped for not answering pings.
    pub pong_timeouts: u64,
    /// Keyed frames replaced by a newer one before they were written.
    pub frames_conflated: u64,
    /// Closed with 1008 for flooding (pings, requests).
    pub abuse_closed: u64,
}

/// The running server: where it listens, how to wake its workers, how to stop it.
pub struct Server {
    local_addrs: Vec<SocketAddr>,
    notifiers: Vec<Arc<Notifier>>,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl Server {
    /// Binds every address in `listeners` (port 0 picks a free port, the same for every worker),
    /// makes one handler per worker with `make_handler(worker_index)`, and starts the workers.
    pub fn start<H, F>(
        config: ServerConfig,
        listeners: &[SocketAddr],
        mut make_handler: F,
    ) -> io::Result<Server>
    where
        H: Handler,
        F: FnMut(usize) -> H,
    {
        let workers = config.workers.max(1);
        let shared = Arc::new(Shared {
            connections: listeners.iter().map(|_| AtomicUsize::new(0)).collect(),
            ..Shared::default()
        });
        // One socket per address, shared by every worker's poll (an accept that loses the race
        // just sees WouldBlock). No SO_REUSEPORT: a second server on the same port must fail
        // to start, not silently take half the connections.
        let mut local_addrs = Vec::with_capacity(listeners.len());
        let mut bound = Vec::with_capacity(listeners.len());
        for addr in listeners {
            let sock = bind(*addr)?;
            local_addrs.push(sock.local_addr()?);
            bound.push(sock);
        }
        let mut per_worker: Vec<Vec<std::net::TcpListener>> = Vec::with_capacity(workers);
        for _ in 0..workers {
            per_worker.push(
                bound
                    .iter()
                    .map(|l| l.try_clone())
                    .collect::<io::Result<_>>()?,
            );
        }
        let mut notifiers = Vec::with_capacity(workers);
        let mut threads = Vec::with_capacity(workers);
        for (index, socks) in per_worker.into_iter().enumerate() {
            let poll = mio::Poll::new()?;
            let notifier = Arc::new(Notifier {
                waker: mio::Waker::new(poll.registry(), worker::WAKER)?,
                sleeping: AtomicBool::new(false),
            });
            let handler = make_handler(index);
            let w = worker::Worker::new(
                poll,
                socks,
                config.clone(),
                handler,
                notifier.clone(),
                shared.clone(),
            )?;
            let thread = std::thread::Builder::new()
                .name(format!("tickwire-worker-{index}"))
                .spawn(move || w.run())?;
            notifiers.push(notifier);
            threads.push(thread);
        }
        Ok(Server {
            local_addrs,
            notifiers,
            shared,
            threads,
        })
    }

    /// The bound addresses, in the order given to [`Server::start`].
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// One notifier per worker, in worker order.
    pub fn notifiers(&self) -> &[Arc<Notifier>] {
        &self.notifiers
    }

    /// Open connections across all workers.
    pub fn connection_count(&self) -> usize {
        self.shared.open_connections()
    }

    /// The engine's counters.
    pub fn stats(&self) -> EngineStats {
        self.stats_source().stats()
    }

    /// A handle that reads the engine's counters from any thread.
    pub fn stats_source(&self) -> StatsSource {
        StatsSource(self.shared.clone())
    }

    /// Stops accepting, sends close 1001 to every open WebSocket, waits up to the close timeout
    /// for the peers to answer, and joins the workers.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        for n in &self.notifiers {
            n.force();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Reads the engine's counters; cheap to clone, usable from any thread.
#[derive(Debug, Clone)]
pub struct StatsSource(Arc<Shared>);

impl StatsSource {
    pub fn stats(&self) -> EngineStats {
        let c = &self.0.stats;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        EngineStats {
            connections: self.0.open_connections(),
            connections_accepted: get(&c.connections_accepted),
            connections_refused: get(&c.connections_refused),
            handshake_errors: get(&c.handshake_errors),
            handshake_timeouts: get(&c.handshake_timeouts),
            protocol_errors: get(&c.protocol_errors),
            slow_consumers_closed: get(&c.slow_consumers_closed),
            pong_timeouts: get(&c.pong_timeouts),
            frames_conflated: get(&c.frames_conflated),
            abuse_closed: get(&c.abuse_closed),
        }
    }
}

/// A non-blocking listener. SO_REUSEADDR lets a restarted server bind while old connections
/// sit in TIME_WAIT; it does not let two servers share the port.
fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}
