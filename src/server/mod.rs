//! The event loop that owns the sockets: mio workers, connections, outbound queues.
//!
//! [`Server::start`] binds the listeners and starts one worker thread per core. Each worker has
//! its own `mio::Poll` watching a copy of every listening socket (whichever worker is free
//! accepts), its own `Slab` of connections and its own [`Handler`]. The worker reads until
//! `WouldBlock`, hands whole requests and messages to the handler, and flushes each connection
//! the handler wrote to once per loop turn, many frames per write.
//!
//! The engine speaks HTTP/1.1 (through [`crate::http`]: keep-alive, pipelining, bodies by
//! `Content-Length`) and RFC 6455 (through [`crate::ws`]). It answers pings, runs the closing
//! handshake both ways, enforces the handshake and idle timeouts, pings quiet peers and drops
//! the ones that stop answering. It knows nothing of topics: the handler decides what a request
//! or a message means.
//!
//! - `worker`: the loop: poll, accept, read, hand on, flush.
//! - `dispatch`: bytes read → HTTP requests, upgrades and WebSocket messages for the handler.
//! - `connections`: the slab of connections and every change of their state; `conn` one
//!   connection and its phases.
//! - [`Outbox`] (`outbox`): what the handler may do to connections.
//! - `outbound`, `held`: a connection's queue of frames to write, and conflation.
//! - `timers`: timeouts and pings. `stats`: counters.
//! - `transport`: a connection's socket, plain TCP or TLS over it; [`tls`]: a listener's
//!   certificate and key, and reloading them.

mod conn;
mod connections;
mod dispatch;
pub mod echo;
mod held;
mod outbound;
mod outbox;
mod stats;
mod timers;
pub mod tls;
mod transport;
mod worker;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use crate::http::{Request, Response};
pub use crate::ws::{CloseCode, Limits};
pub use outbound::Frame;
pub use outbox::Outbox;
pub use stats::{EngineStats, StatsSource};

/// Engine settings, shared by every listener.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Worker threads (each with its own event loop). Default: available parallelism.
    pub workers: usize,
    /// Open connections per listener unless a [`Listen`] says otherwise; past it new ones are
    /// answered 503 at once. Per listener, so that a flood on one cannot lock operators out of
    /// another.
    pub max_connections: usize,
    /// Time a client has to send a whole request (head and body), from its first byte (from
    /// the connection for the first request).
    pub handshake_timeout: Duration,
    /// Time a keep-alive HTTP connection may sit idle between requests.
    pub http_idle_timeout: Duration,
    /// Requests one HTTP connection may carry; the last is answered with `Connection: close`.
    pub http_max_requests: u32,
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
    /// (backpressure: a client that does not read cannot make the server buffer its answers).
    pub read_pause_bytes: usize,
    /// Bytes waiting past which frames sent with a key ([`Outbox::send_keyed`]) are conflated:
    /// a newer frame with the same key replaces the older one still waiting.
    pub conflate_above_bytes: usize,
    /// Bytes a connection may have waiting (held keys counted at a small fixed cost each); past
    /// it the connection is closed with 1008.
    pub max_outbound_bytes: usize,
    /// How long output may wait with the socket taking no byte of it before the connection is
    /// closed with 1008. A client that reads, however slowly, makes progress.
    pub max_stall: Duration,
    /// Pings a client may send per second; pings past it are not answered, and a client that
    /// sends more than twice as many is closed with 1008.
    pub max_pings_per_sec: u32,
    /// Whether permessage-deflate (RFC 7692) is negotiated with clients that offer it.
    pub compression: bool,
    /// Messages of at least this many bytes sent with [`Outbox::send_text`] or
    /// [`Outbox::send_binary`] to a client that negotiated permessage-deflate are compressed;
    /// shorter ones go plain. 0 compresses every message.
    pub compress_min: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            max_connections: 100_000,
            handshake_timeout: Duration::from_secs(10),
            http_idle_timeout: Duration::from_secs(60),
            http_max_requests: 10_000,
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
            compression: true,
            compress_min: 256,
        }
    }
}

/// A listening address, how many connections it may have open (`None`: the config's), and
/// whether it speaks TLS.
#[derive(Debug, Clone)]
pub struct Listen {
    pub addr: SocketAddr,
    pub max_connections: Option<usize>,
    /// TLS for every connection of this listener (its certificate can be reloaded through
    /// this handle), or `None` for plain TCP.
    pub tls: Option<Arc<tls::TlsAcceptor>>,
}

impl From<SocketAddr> for Listen {
    fn from(addr: SocketAddr) -> Self {
        Listen {
            addr,
            max_connections: None,
            tls: None,
        }
    }
}

/// A connection, unique within its worker while the handler may use it. The handler hears
/// [`Handler::on_close`] for every connection it was given (an opened WebSocket, or a request
/// answered with [`Route::Later`]) before its id can be reused.
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
    /// Answer with this response. The connection stays open for the next request when the
    /// client allows it (keep-alive) and the response is not a refusal.
    Http(Response),
    /// The handler answers later with [`Outbox::respond`] (after a round trip it must not wait
    /// for on the worker). Nothing more is read from the connection until then; the handler
    /// hears `on_close` if the connection goes away first, and must answer every `Later`.
    /// For an upgrade request this is answered 500.
    Later,
}

/// The application the event loop drives: one instance per worker, called only from that
/// worker's thread. Ids are per worker.
pub trait Handler: Send + 'static {
    /// A complete request arrived on listener number `listener` (its index in the list given to
    /// [`Server::start`]), as connection `conn`. For an upgrade request the engine has already
    /// checked the WebSocket headers; returning [`Route::WebSocket`] for a request that is not
    /// an upgrade answers 426. The default upgrades every request without a subprotocol.
    fn on_request(
        &mut self,
        conn: ConnId,
        listener: usize,
        req: &Request<'_>,
        body: &[u8],
    ) -> Route {
        let _ = (conn, listener, req, body);
        Route::WebSocket {
            protocol: None,
            limits: None,
        }
    }

    /// The 101 has been queued: the connection is open.
    fn on_open(&mut self, conn: ConnId, listener: usize, req: &Request<'_>, out: &mut Outbox<'_>) {
        let _ = (conn, listener, req, out);
    }

    /// A whole text or binary message arrived.
    fn on_message(&mut self, conn: ConnId, msg: Message, out: &mut Outbox<'_>);

    /// The connection is gone (closing handshake done, error, timeout or reset). Called once for
    /// every connection the handler was given, before its id is reused.
    fn on_close(&mut self, conn: ConnId) {
        let _ = conn;
    }

    /// Called once every loop turn, after the socket events: the place to drain cross-thread work
    /// (woken by [`Notifier::notify`]) and to run the handler's own timers.
    fn on_turn(&mut self, out: &mut Outbox<'_>) {
        let _ = out;
    }

    /// Whether cross-thread work is waiting; checked just before the worker sleeps, so that work
    /// queued while the worker was busy is not left until the next event.
    fn has_pending_work(&self) -> bool {
        false
    }

    /// The next time the handler needs `on_turn` even if nothing happens (a timer of its own).
    fn next_deadline(&self) -> Option<Instant> {
        None
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
pub(crate) struct Shared {
    /// When set, the workers close everything and stop by this time.
    shutdown: parking_lot::Mutex<Option<Instant>>,
    shutting_down: AtomicBool,
    /// Open sockets per listener, across all workers, and each listener's limit.
    connections: Box<[AtomicUsize]>,
    limits: Box<[usize]>,
    stats: stats::EngineCounters,
}

impl Shared {
    fn open_connections(&self) -> usize {
        self.connections
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    /// The time by which the workers must have stopped, once shutdown has begun.
    fn shutdown_deadline(&self) -> Option<Instant> {
        if self.shutting_down.load(Ordering::Acquire) {
            *self.shutdown.lock()
        } else {
            None
        }
    }
}

/// Why a server could not start: which address, and what the system said.
#[derive(Debug)]
pub struct BindError {
    pub addr: SocketAddr,
    pub source: io::Error,
}

impl std::fmt::Display for BindError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot listen on {}: {}", self.addr, self.source)
    }
}

impl std::error::Error for BindError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// The running server: where it listens, how to wake its workers, how to stop it.
pub struct Server {
    local_addrs: Vec<SocketAddr>,
    notifiers: Vec<Arc<Notifier>>,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    close_timeout: Duration,
}

impl Server {
    /// Binds every listener (port 0 picks a free port, the same for every worker), makes one
    /// handler per worker with `make_handler(worker_index)`, and starts the workers.
    pub fn start<H, F>(
        config: ServerConfig,
        listeners: &[Listen],
        mut make_handler: F,
    ) -> Result<Server, BindError>
    where
        H: Handler,
        F: FnMut(usize) -> H,
    {
        let workers = config.workers.max(1);
        let shared = Arc::new(Shared {
            connections: listeners.iter().map(|_| AtomicUsize::new(0)).collect(),
            limits: listeners
                .iter()
                .map(|l| l.max_connections.unwrap_or(config.max_connections))
                .collect(),
            ..Shared::default()
        });
        // One socket per address, shared by every worker's poll (an accept that loses the race
        // just sees WouldBlock). No SO_REUSEPORT: a second server on the same port must fail
        // to start, not silently take half the connections.
        let mut local_addrs = Vec::with_capacity(listeners.len());
        let mut bound = Vec::with_capacity(listeners.len());
        for l in listeners {
            let fail = |source| BindError {
                addr: l.addr,
                source,
            };
            let sock = bind(l.addr).map_err(fail)?;
            local_addrs.push(sock.local_addr().map_err(fail)?);
            bound.push(sock);
        }
        let internal = |source| BindError {
            addr: listeners
                .first()
                .map_or(([0, 0, 0, 0], 0).into(), |l| l.addr),
            source,
        };
        let mut notifiers = Vec::with_capacity(workers);
        let mut threads = Vec::with_capacity(workers);
        for index in 0..workers {
            let socks = bound
                .iter()
                .map(|l| l.try_clone())
                .collect::<io::Result<Vec<_>>>()
                .map_err(internal)?;
            let poll = mio::Poll::new().map_err(internal)?;
            let notifier = Arc::new(Notifier {
                waker: mio::Waker::new(poll.registry(), worker::WAKER).map_err(internal)?,
                sleeping: AtomicBool::new(false),
            });
            let handler = make_handler(index);
            let w = worker::Worker::new(
                poll,
                socks,
                listeners.iter().map(|l| l.tls.clone()).collect(),
                config.clone(),
                handler,
                notifier.clone(),
                shared.clone(),
            )
            .map_err(internal)?;
            let thread = std::thread::Builder::new()
                .name(format!("tickwire-worker-{index}"))
                .spawn(move || w.run())
                .map_err(internal)?;
            notifiers.push(notifier);
            threads.push(thread);
        }
        Ok(Server {
            local_addrs,
            notifiers,
            shared,
            threads,
            close_timeout: config.close_timeout,
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

    /// Whether the calling thread is one of this server's workers (a handler, or a callback it
    /// runs): stopping from there cannot wait for the workers.
    pub fn is_worker_thread(&self) -> bool {
        let me = std::thread::current().id();
        self.threads.iter().any(|t| t.thread().id() == me)
    }

    /// The workers' thread ids.
    pub fn worker_threads(&self) -> Vec<std::thread::ThreadId> {
        self.threads.iter().map(|t| t.thread().id()).collect()
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

    /// Stops accepting, sends close 1001 to every open WebSocket, answers the requests already
    /// read, waits for the peers to answer our close frames until the close timeout, and joins
    /// the workers.
    pub fn shutdown(self) {
        let deadline = Instant::now() + self.close_timeout;
        self.shutdown_by(deadline);
    }

    /// [`Server::shutdown`], with everything done by `deadline`: whatever is still open then is
    /// dropped.
    ///
    /// Called on one of the workers (from a handler or a callback it runs), it cannot wait for
    /// them (one of them is waiting for it): it starts the stop and returns at once, and the
    /// workers finish on their own by `deadline`, the calling one when it gets back to its loop.
    pub fn shutdown_by(mut self, deadline: Instant) {
        self.stop(deadline);
    }

    fn stop(&mut self, deadline: Instant) {
        *self.shared.shutdown.lock() = Some(deadline);
        self.shared.shutting_down.store(true, Ordering::Release);
        for n in &self.notifiers {
            n.force();
        }
        if self.is_worker_thread() {
            // Joining ourselves would never return (std panics on it, at best).
            log::warn!(
                "stop called on one of the server's own worker threads: the workers stop on \
                 their own, without being waited for"
            );
            self.threads.clear();
            return;
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            let deadline = Instant::now() + self.close_timeout;
            self.stop(deadline);
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
