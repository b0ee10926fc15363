//! One worker thread: a `mio::Poll`, its listeners, a `Slab` of connections indexed by `Token`,
//! and the handler it drives. Reads until `WouldBlock`, dispatches, then flushes every connection
//! written to during the turn once.

use std::io::{self, Read};
use std::mem;
use std::net::Shutdown;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use super::conn::{Conn, Phase};
use super::outbound::{Frame, FrameTable};
use super::{ConnId, Handler, HttpResponse, Message, Notifier, Route, ServerConfig, Shared};
use crate::ws::close::build_payload;
use crate::ws::frame::{encode_server_frame, OpCode};
use crate::ws::handshake::{self, Head};
use crate::ws::{CloseCode, Incoming, ProtocolError, WsContext};

/// The waker's token; listeners count down from just below it, connections up from 0.
pub(crate) const WAKER: Token = Token(usize::MAX);

fn listener_token(index: usize) -> Token {
    Token(usize::MAX - 1 - index)
}

/// Bytes read from a socket per `read` call; one buffer per worker, shared by its connections.
const SCRATCH_BYTES: usize = 64 * 1024;
/// Reads per connection per turn before the others get their go (fairness under floods).
const READS_PER_TURN: usize = 16;
/// Connections a worker accepts per turn: the workers share each listening socket, so taking a
/// few at a time spreads a burst of new connections over all of them.
const ACCEPTS_PER_TURN: usize = 32;

/// The state the handler can reach through an [`Outbox`]: connections and their queues.
struct Core {
    conns: Slab<Conn>,
    config: ServerConfig,
    shared: Arc<Shared>,
    /// Connections written to this turn, flushed once at its end.
    touched: Vec<usize>,
    /// Connections to read again next turn (stopped early, or unpaused).
    resume: Vec<usize>,
    /// Connections that left the open state; the handler hears `on_close` for each.
    closed: Vec<usize>,
    /// The shared frames the connections' queues point at.
    frames: FrameTable,
    now: Instant,
}

/// The handler's way to write: queue frames on connections of this worker, or close them.
/// Everything queued during a turn is written at the end of the turn.
pub struct Outbox<'a> {
    core: &'a mut Core,
}

impl Outbox<'_> {
    /// Queues a text message. Returns false if the connection is not open (gone or closing).
    pub fn send_text(&mut self, conn: ConnId, text: &str) -> bool {
        self.send_owned(conn, encode_server_frame(OpCode::Text, text.as_bytes()))
    }

    /// Queues a binary message. Returns false if the connection is not open.
    pub fn send_binary(&mut self, conn: ConnId, bytes: &[u8]) -> bool {
        self.send_owned(conn, encode_server_frame(OpCode::Binary, bytes))
    }

    /// Queues an already encoded frame (see [`crate::ws::frame::encode_server_frame`]), shared
    /// by refcount with every other connection it goes to.
    pub fn send_frame(&mut self, conn: ConnId, frame: &Frame) -> bool {
        if !self.core.is_open(conn.0) {
            return false;
        }
        let core = &mut *self.core;
        if let Some(c) = core.conns.get_mut(conn.0) {
            c.out.push_shared(frame, &mut core.frames);
        }
        self.core.after_push(conn.0);
        true
    }

    /// Queues a shared frame that a newer frame with the same key makes obsolete (the latest
    /// quote of a topic). While the connection keeps up this is [`Outbox::send_frame`]; once more
    /// than `conflate_above_bytes` wait, only the latest frame per key is kept until it drains.
    pub fn send_keyed(&mut self, conn: ConnId, key: u64, frame: &Frame) -> bool {
        // The fan-out hot path: one slab lookup here and one in `after_push`.
        let core = &mut *self.core;
        let Some(c) = core.conns.get_mut(conn.0).filter(|c| c.is_open()) else {
            return false;
        };
        if c.conflated.is_none() && c.out.len_bytes() <= core.config.conflate_above_bytes {
            if c.out.len_bytes() == 0 {
                c.last_progress = core.now;
            }
            c.out.push_shared(frame, &mut core.frames);
        } else {
            let held = c.conflated.get_or_insert_with(Default::default);
            held.bytes += frame.len();
            if let Some(old) = held.frames.insert(key, frame.clone()) {
                held.bytes -= old.len();
                core.shared
                    .stats
                    .frames_conflated
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
        core.after_push(conn.0);
        true
    }

    fn send_owned(&mut self, conn: ConnId, bytes: Vec<u8>) -> bool {
        if !self.core.is_open(conn.0) {
            return false;
        }
        self.core.push_owned(conn.0, bytes);
        true
    }

    /// Starts the closing handshake with this code and reason. The handler hears `on_close`.
    pub fn close(&mut self, conn: ConnId, code: CloseCode, reason: &str) {
        self.core.close(conn.0, code, reason);
    }

    /// Closes a client that floods the server with 1008, counted as abuse.
    pub fn close_abusive(&mut self, conn: ConnId, reason: &str) {
        if self.core.is_open(conn.0) {
            self.core
                .shared
                .stats
                .abuse_closed
                .fetch_add(1, Ordering::Relaxed);
            self.core.close(conn.0, CloseCode::POLICY, reason);
        }
    }

    /// Bytes queued on the connection and not yet written, or `None` if it is gone.
    pub fn queued_bytes(&self, conn: ConnId) -> Option<usize> {
        self.core.conns.get(conn.0).map(|c| c.out.len_bytes())
    }

    pub fn is_open(&self, conn: ConnId) -> bool {
        self.core.is_open(conn.0)
    }
}

impl Core {
    fn is_open(&self, id: usize) -> bool {
        self.conns.get(id).is_some_and(Conn::is_open)
    }

    fn with_conn(&mut self, id: usize, f: impl FnOnce(&mut Conn)) {
        if let Some(c) = self.conns.get_mut(id) {
            f(c);
        }
    }

    fn touch(&mut self, id: usize) {
        if let Some(c) = self.conns.get_mut(id) {
            if !c.touched {
                c.touched = true;
                self.touched.push(id);
            }
        }
    }

    fn push_owned(&mut self, id: usize, bytes: Vec<u8>) {
        let now = self.now;
        self.with_conn(id, |c| {
            if c.out.len_bytes() == 0 {
                c.last_progress = now;
            }
            c.out.push_owned(bytes)
        });
        self.after_push(id);
    }

    /// Enforces the outbound limits after something was queued.
    fn after_push(&mut self, id: usize) {
        let Some(c) = self.conns.get_mut(id) else {
            return;
        };
        if !c.touched {
            c.touched = true;
            self.touched.push(id);
        }
        if c.pending_bytes() > self.config.max_outbound_bytes && c.is_open() {
            self.close_slow(id, "slow consumer: too much unread output");
        } else if c.out.len_bytes() > self.config.read_pause_bytes {
            c.read_paused = true;
        }
    }

    /// Closes a connection that does not read its output with 1008. What waits will never be
    /// wanted: keep the stream valid (a half-written frame), drop the rest, and say why.
    fn close_slow(&mut self, id: usize, reason: &str) {
        if let Some(c) = self.conns.get_mut(id) {
            c.out.discard_unstarted(&mut self.frames);
            c.conflated = None;
        }
        self.shared
            .stats
            .slow_consumers_closed
            .fetch_add(1, Ordering::Relaxed);
        self.close(id, CloseCode::POLICY, reason);
    }

    /// The handler must no longer use this connection.
    fn end_open(&mut self, id: usize) {
        if let Some(c) = self.conns.get_mut(id) {
            if c.opened {
                c.opened = false;
                self.closed.push(id);
            }
        }
    }

    /// Server-initiated close: send a close frame, wait for the peer's.
    fn close(&mut self, id: usize, code: CloseCode, reason: &str) {
        if !self.is_open(id) {
            return;
        }
        self.end_open(id);
        let frame = encode_server_frame(OpCode::Close, &build_payload(code, reason));
        let deadline = self.now + self.config.close_timeout;
        self.with_conn(id, |c| {
            c.out.push_owned(frame);
            c.phase = Phase::Closing;
            c.deadline = Some(deadline);
        });
        self.touch(id);
    }

    /// _Fail the WebSocket Connection_ (RFC 6455 7.1.7): send the close code, then close the
    /// TCP connection without waiting for the peer's close frame.
    fn fail(&mut self, id: usize, err: ProtocolError) {
        self.shared
            .stats
            .protocol_errors
            .fetch_add(1, Ordering::Relaxed);
        let was_open = self.is_open(id);
        self.end_open(id);
        let frame = was_open
            .then(|| encode_server_frame(OpCode::Close, &build_payload(err.code, err.reason)));
        self.drain_with(id, frame);
    }

    /// The peer's close frame arrived: answer it (echoing its code) unless we started.
    fn on_peer_close(&mut self, id: usize, close: Option<(CloseCode, String)>) {
        let was_open = self.is_open(id);
        self.end_open(id);
        let reply = was_open.then(|| {
            let payload = close
                .map(|(code, _)| build_payload(code, ""))
                .unwrap_or_default();
            encode_server_frame(OpCode::Close, &payload)
        });
        self.drain_with(id, reply);
    }

    /// Refuses a malformed request or upgrade with its HTTP error, counted.
    fn refuse(&mut self, id: usize, e: &handshake::HandshakeError) {
        self.shared
            .stats
            .handshake_errors
            .fetch_add(1, Ordering::Relaxed);
        self.respond(id, e.response());
    }

    /// Answers an HTTP request (or refuses a handshake) and ends the connection.
    fn respond(&mut self, id: usize, response: Vec<u8>) {
        self.drain_with(id, Some(response));
    }

    /// Queues the last bytes for this connection; once written, our side is shut down.
    fn drain_with(&mut self, id: usize, last: Option<Vec<u8>>) {
        let deadline = self.now + self.config.close_timeout;
        self.with_conn(id, |c| {
            if let Some(bytes) = last {
                c.out.push_owned(bytes);
            }
            c.phase = Phase::Draining;
            c.deadline = Some(deadline);
            c.read_paused = false;
        });
        self.touch(id);
    }

    /// Drops the connection at once (the socket closes with it).
    fn remove(&mut self, id: usize) {
        self.end_open(id);
        if let Some(mut c) = self.conns.try_remove(id) {
            c.out.release_all(&mut self.frames);
            self.shared.connections[c.listener].fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Writes what is queued. Called at the end of a turn and on writable events.
    fn flush(&mut self, id: usize) {
        let pause_below = self.config.read_pause_bytes;
        let release_below = self.config.conflate_above_bytes / 2;
        let Some(c) = self.conns.get_mut(id) else {
            return;
        };
        let before = c.out.len_bytes();
        let mut result = c.out.write_to(&mut c.socket, &mut self.frames);
        if c.out.len_bytes() < before {
            c.last_progress = self.now;
        }
        // Caught up enough: the held-back latest frames go out now.
        if result.is_ok() && c.out.len_bytes() <= release_below {
            if let Some(held) = c.conflated.take() {
                for frame in held.frames.into_values() {
                    c.out.push_shared(&frame, &mut self.frames);
                }
                result = c.out.write_to(&mut c.socket, &mut self.frames);
            }
        }
        match result {
            Ok(done) => {
                if done && matches!(c.phase, Phase::Draining) {
                    let _ = c.socket.shutdown(Shutdown::Write);
                    c.phase = Phase::Lingering;
                    c.deadline = Some(self.now + self.config.close_timeout);
                    // Input may have been waiting while we drained: no new edge will tell us.
                    self.resume.push(id);
                }
                if c.read_paused && c.out.len_bytes() <= pause_below {
                    c.read_paused = false;
                    self.resume.push(id);
                }
            }
            Err(_) => self.remove(id),
        }
    }

    fn flush_touched(&mut self) {
        let mut list = mem::take(&mut self.touched);
        for &id in &list {
            if let Some(c) = self.conns.get_mut(id) {
                c.touched = false;
                self.flush(id);
            }
        }
        list.clear();
        self.touched = list;
    }
}

pub(crate) struct Worker<H> {
    poll: Poll,
    listeners: Vec<TcpListener>,
    handler: H,
    core: Core,
    scratch: Box<[u8]>,
    notifier: Arc<Notifier>,
    /// An accept failed (out of file descriptors): try again at the next tick.
    retry_accept: bool,
    /// The accept budget ran out with connections maybe still waiting: accept again next turn.
    accept_again: bool,
}

impl<H: Handler> Worker<H> {
    pub fn new(
        poll: Poll,
        listeners: Vec<std::net::TcpListener>,
        config: ServerConfig,
        handler: H,
        notifier: Arc<Notifier>,
        shared: Arc<Shared>,
    ) -> io::Result<Self> {
        let mut mio_listeners = Vec::with_capacity(listeners.len());
        for (i, l) in listeners.into_iter().enumerate() {
            let mut l = TcpListener::from_std(l);
            poll.registry()
                .register(&mut l, listener_token(i), Interest::READABLE)?;
            mio_listeners.push(l);
        }
        Ok(Worker {
            poll,
            listeners: mio_listeners,
            handler,
            core: Core {
                conns: Slab::new(),
                config,
                shared,
                touched: Vec::new(),
                resume: Vec::new(),
                closed: Vec::new(),
                frames: FrameTable::default(),
                now: Instant::now(),
            },
            scratch: vec![0u8; SCRATCH_BYTES].into_boxed_slice(),
            notifier,
            retry_accept: false,
            accept_again: false,
        })
    }

    /// How often timeouts are checked: often enough for the shortest one configured.
    fn tick(&self) -> Duration {
        let c = &self.core.config;
        let shortest = c
            .handshake_timeout
            .min(c.ping_interval)
            .min(c.pong_timeout)
            .min(c.close_timeout);
        (shortest / 4).clamp(Duration::from_millis(5), Duration::from_secs(1))
    }

    pub fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let tick = self.tick();
        let mut next_tick = Instant::now() + tick;
        let mut shutdown_deadline: Option<Instant> = None;
        loop {
            let mut timeout = next_tick.saturating_duration_since(Instant::now());
            // Announce sleep, then look once more for work queued before the announcement.
            self.notifier.sleeping.store(true, Ordering::SeqCst);
            std::sync::atomic::fence(Ordering::SeqCst);
            if !self.core.resume.is_empty()
                || self.accept_again
                || self.handler.has_pending_work()
                || (shutdown_deadline.is_none() && self.core.shared.shutdown.load(Ordering::SeqCst))
            {
                timeout = Duration::ZERO;
            }
            let polled = self.poll.poll(&mut events, Some(timeout));
            self.notifier.sleeping.store(false, Ordering::SeqCst);
            if let Err(e) = polled {
                if e.kind() != io::ErrorKind::Interrupted {
                    eprintln!("tickwire: worker poll failed, stopping this worker: {e}");
                    break;
                }
            }
            self.core.now = Instant::now();

            for event in events.iter() {
                match event.token() {
                    WAKER => {}
                    Token(t) if t >= usize::MAX - self.listeners.len() => {
                        self.accept(usize::MAX - 1 - t);
                    }
                    Token(id) => {
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            self.on_readable(id);
                        }
                        if event.is_writable() {
                            self.core.flush(id);
                        }
                    }
                }
            }
            if mem::take(&mut self.accept_again) {
                for i in 0..self.listeners.len() {
                    self.accept(i);
                }
            }
            for id in mem::take(&mut self.core.resume) {
                self.on_readable(id);
            }
            self.handler.on_turn(&mut Outbox {
                core: &mut self.core,
            });
            self.notify_closed();

            if self.core.now >= next_tick {
                self.sweep();
                next_tick = self.core.now + tick;
            }
            if shutdown_deadline.is_none() && self.core.shared.shutdown.load(Ordering::SeqCst) {
                self.begin_shutdown();
                shutdown_deadline = Some(self.core.now + self.core.config.close_timeout);
            }
            self.core.flush_touched();
            self.notify_closed();
            if let Some(deadline) = shutdown_deadline {
                // Lingering connections have finished their closing handshake: they need not
                // hold up the exit.
                let all_done = self
                    .core
                    .conns
                    .iter()
                    .all(|(_, c)| matches!(c.phase, Phase::Lingering));
                if all_done || self.core.now >= deadline {
                    break;
                }
            }
        }
        let ids: Vec<usize> = self.core.conns.iter().map(|(id, _)| id).collect();
        for id in ids {
            self.core.remove(id);
        }
        self.notify_closed();
    }

    /// Tells the handler about every connection that stopped being open.
    fn notify_closed(&mut self) {
        while let Some(id) = self.core.closed.pop() {
            self.handler.on_close(ConnId(id));
        }
    }

    fn accept(&mut self, index: usize) {
        // Ids of closed connections must not be reused before the handler heard of it.
        self.notify_closed();
        let shared = self.core.shared.clone();
        for _ in 0..ACCEPTS_PER_TURN {
            let Some(listener) = self.listeners.get(index) else {
                return;
            };
            match listener.accept() {
                Ok((socket, _)) => {
                    if shared.connections[index].load(Ordering::Relaxed)
                        >= self.core.config.max_connections
                    {
                        shared
                            .stats
                            .connections_refused
                            .fetch_add(1, Ordering::Relaxed);
                        refuse(socket);
                        continue;
                    }
                    self.add_connection(socket, index);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    // EMFILE and friends: the connection stays in the backlog; retry later.
                    self.retry_accept = true;
                    return;
                }
            }
        }
        // The budget ran out before WouldBlock: more may wait, and no new edge will say so.
        self.accept_again = true;
    }

    fn add_connection(&mut self, mut socket: TcpStream, listener: usize) {
        let _ = socket.set_nodelay(true);
        let entry = self.core.conns.vacant_entry();
        let id = entry.key();
        if self
            .poll
            .registry()
            .register(
                &mut socket,
                Token(id),
                Interest::READABLE | Interest::WRITABLE,
            )
            .is_err()
        {
            return;
        }
        let now = self.core.now;
        entry.insert(Conn::new(
            socket,
            listener,
            now,
            now + self.core.config.handshake_timeout,
        ));
        let shared = &self.core.shared;
        shared.connections[listener].fetch_add(1, Ordering::Relaxed);
        shared
            .stats
            .connections_accepted
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Reads until `WouldBlock` (or the per-turn budget), handing each chunk to [`consume`].
    fn on_readable(&mut self, id: usize) {
        for _ in 0..READS_PER_TURN {
            let Some(c) = self.core.conns.get_mut(id) else {
                return;
            };
            if c.read_paused || matches!(c.phase, Phase::Draining) {
                return;
            }
            match c.socket.read(&mut self.scratch) {
                Ok(0) => {
                    // The peer closed its side. Whatever phase we were in, nothing more will
                    // come; a peer that vanished without a close frame is simply gone.
                    self.core.remove(id);
                    return;
                }
                Ok(n) => {
                    c.last_heard = self.core.now;
                    c.ping_sent = false;
                    consume(&mut self.core, &mut self.handler, id, &self.scratch[..n]);
                    self.notify_closed();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.core.remove(id);
                    return;
                }
            }
        }
        self.core.resume.push(id);
    }

    /// Timeouts: handshakes, closes, lingering, and pings for quiet connections.
    fn sweep(&mut self) {
        if mem::take(&mut self.retry_accept) {
            for i in 0..self.listeners.len() {
                self.accept(i);
            }
        }
        let now = self.core.now;
        let (ping_after, dead_after) = (
            self.core.config.ping_interval,
            self.core.config.pong_timeout,
        );
        let max_stall = self.core.config.max_stall;
        let mut too_slow = Vec::new();
        let mut dead = Vec::new();
        let mut to_ping = Vec::new();
        let mut stalled = Vec::new();
        for (id, c) in self.core.conns.iter() {
            let expired = c.deadline.is_some_and(|d| now >= d);
            match c.phase {
                Phase::Request if expired => too_slow.push(id),
                Phase::Open => {
                    let quiet = now.saturating_duration_since(c.last_heard);
                    let waiting = c.pending_bytes() > 0;
                    if waiting && now.saturating_duration_since(c.last_progress) >= max_stall {
                        stalled.push(id);
                    } else if quiet >= dead_after {
                        dead.push(id);
                    } else if quiet >= ping_after && !c.ping_sent {
                        to_ping.push(id);
                    }
                }
                Phase::Closing | Phase::Draining | Phase::Lingering if expired => dead.push(id),
                _ => {}
            }
        }
        let shared = self.core.shared.clone();
        let stats = &shared.stats;
        stats
            .handshake_timeouts
            .fetch_add(too_slow.len() as u64, Ordering::Relaxed);
        for id in too_slow {
            let resp = HttpResponse::text(408, "request head not received in time").encode();
            self.core.respond(id, resp);
        }
        for id in dead {
            if self.core.is_open(id) {
                stats.pong_timeouts.fetch_add(1, Ordering::Relaxed);
            }
            self.core.remove(id);
        }
        for id in stalled {
            self.core
                .close_slow(id, "slow consumer: output not read in time");
        }
        for id in to_ping {
            self.core.with_conn(id, |c| c.ping_sent = true);
            self.core
                .push_owned(id, encode_server_frame(OpCode::Ping, b""));
        }
    }

    /// Stops accepting and starts closing every connection with 1001.
    fn begin_shutdown(&mut self) {
        for mut l in self.listeners.drain(..) {
            let _ = self.poll.registry().deregister(&mut l);
        }
        let ids: Vec<usize> = self.core.conns.iter().map(|(id, _)| id).collect();
        for id in ids {
            match self.core.conns.get(id).map(|c| &c.phase) {
                Some(Phase::Request) => self.core.remove(id),
                Some(Phase::Open) => {
                    self.core
                        .close(id, CloseCode::GOING_AWAY, "server shutting down")
                }
                _ => {}
            }
        }
    }
}

/// Refuses a connection over the limit with a best-effort 503 (the socket is new, so the
/// response fits its buffer) and closes it.
fn refuse(mut socket: TcpStream) {
    use std::io::Write;
    let resp = HttpResponse::text(503, "too many connections").encode();
    let _ = socket.write(&resp);
    let _ = socket.shutdown(Shutdown::Both);
}

/// Hands freshly read bytes to the connection's current phase, keeping what it could not take
/// yet (a partial head or frame header) for the next read.
fn consume<H: Handler>(core: &mut Core, handler: &mut H, id: usize, data: &[u8]) {
    let Some(c) = core.conns.get_mut(id) else {
        return;
    };
    if c.inbuf.is_empty() {
        let used = process(core, handler, id, data);
        if used < data.len() {
            core.with_conn(id, |c| c.inbuf.extend_from_slice(&data[used..]));
        }
    } else {
        let mut buf = mem::take(&mut c.inbuf);
        buf.extend_from_slice(data);
        let used = process(core, handler, id, &buf);
        buf.drain(..used);
        if !buf.is_empty() {
            core.with_conn(id, |c| c.inbuf = buf);
        }
    }
}

/// Returns how many bytes of `data` were used.
fn process<H: Handler>(core: &mut Core, handler: &mut H, id: usize, data: &[u8]) -> usize {
    match core.conns.get(id).map(|c| &c.phase) {
        Some(Phase::Request) => process_request(core, handler, id, data),
        Some(Phase::Open | Phase::Closing) => process_frames(core, handler, id, data),
        _ => data.len(),
    }
}

fn process_request<H: Handler>(core: &mut Core, handler: &mut H, id: usize, data: &[u8]) -> usize {
    let listener = match core.conns.get(id) {
        Some(c) => c.listener,
        None => return data.len(),
    };
    let (req, head_len) = match handshake::parse_request(data) {
        Ok(Head::Partial) => return 0,
        Ok(Head::Complete(req, n)) => (req, n),
        Err(e) => {
            core.refuse(id, &e);
            return data.len();
        }
    };
    if req.wants_websocket() {
        let accept = match handshake::validate_upgrade(&req) {
            Ok(a) => a,
            Err(e) => {
                core.refuse(id, &e);
                return data.len();
            }
        };
        match handler.on_request(listener, &req, &[]) {
            Route::Http(resp) => {
                core.respond(id, resp.encode());
                data.len()
            }
            Route::WebSocket { protocol, limits } => {
                // Only a protocol the client offered may be answered.
                let protocol = protocol.filter(|p| req.offered_protocols().any(|o| o == p));
                let limits = limits.unwrap_or(core.config.limits);
                core.with_conn(id, |c| {
                    c.phase = Phase::Open;
                    c.deadline = None;
                    c.ws = WsContext::new(limits);
                    c.opened = true;
                    c.out
                        .push_owned(handshake::response_101(&accept, protocol.as_deref()));
                });
                core.touch(id);
                handler.on_open(ConnId(id), listener, &req, &mut Outbox { core });
                // A client may send frames right behind its handshake.
                head_len + process_frames(core, handler, id, &data[head_len..])
            }
        }
    } else {
        match plain_http(core, handler, listener, &req, &data[head_len..]) {
            Some(resp) => {
                if matches!(resp.status, 400 | 411 | 413 | 426) {
                    core.shared
                        .stats
                        .handshake_errors
                        .fetch_add(1, Ordering::Relaxed);
                }
                core.respond(id, resp.encode());
                data.len()
            }
            None => 0,
        }
    }
}

/// A request that is not an upgrade: wait for its body, then ask the handler. `None` means the
/// body is not all here yet.
fn plain_http<H: Handler>(
    core: &mut Core,
    handler: &mut H,
    listener: usize,
    req: &handshake::Request,
    after_head: &[u8],
) -> Option<HttpResponse> {
    if req.header("transfer-encoding").is_some() {
        return Some(HttpResponse::text(
            411,
            "chunked request bodies are not supported: send Content-Length",
        ));
    }
    let body_len = match req.content_length() {
        Ok(n) => n,
        Err(e) => return Some(HttpResponse::text(e.status(), e.message())),
    };
    let max = core.config.max_request_body;
    if body_len > max {
        return Some(HttpResponse::text(
            413,
            &format!("request body of {body_len} bytes is over the limit of {max} bytes"),
        ));
    }
    if after_head.len() < body_len {
        return None;
    }
    Some(
        match handler.on_request(listener, req, &after_head[..body_len]) {
            Route::Http(resp) => resp,
            Route::WebSocket { .. } => HttpResponse::text(
                426,
                "this endpoint speaks WebSocket: send an upgrade request",
            )
            .with_header("Upgrade", "websocket")
            .with_header("Sec-WebSocket-Version", "13"),
        },
    )
}

fn process_frames<H: Handler>(core: &mut Core, handler: &mut H, id: usize, data: &[u8]) -> usize {
    let mut pos = 0;
    loop {
        let Some(c) = core.conns.get_mut(id) else {
            return data.len();
        };
        if !matches!(c.phase, Phase::Open | Phase::Closing) {
            return data.len();
        }
        match c.ws.read(&data[pos..]) {
            Err(e) => {
                core.fail(id, e);
                return data.len();
            }
            Ok((n, None)) => return pos + n,
            Ok((n, Some(event))) => {
                pos += n;
                dispatch(core, handler, id, event);
            }
        }
    }
}

fn dispatch<H: Handler>(core: &mut Core, handler: &mut H, id: usize, event: Incoming) {
    let open = core.is_open(id);
    match event {
        // While closing, data is discarded: we already said goodbye.
        Incoming::Text(s) if open => {
            handler.on_message(ConnId(id), Message::Text(s), &mut Outbox { core })
        }
        Incoming::Binary(b) if open => {
            handler.on_message(ConnId(id), Message::Binary(b), &mut Outbox { core })
        }
        // "Upon receipt of a Ping frame, an endpoint MUST send a Pong frame in response ... with
        // identical Application data".
        Incoming::Ping(payload) if open => {
            let limit = core.config.max_pings_per_sec;
            let now = core.now;
            let mut count = 0;
            core.with_conn(id, |c| {
                if now.saturating_duration_since(c.ping_window) >= Duration::from_secs(1) {
                    c.ping_window = now;
                    c.pings_in_window = 0;
                }
                c.pings_in_window += 1;
                count = c.pings_in_window;
            });
            if count <= limit {
                core.push_owned(id, encode_server_frame(OpCode::Pong, &payload));
            } else if count > limit.saturating_mul(2) {
                core.shared
                    .stats
                    .abuse_closed
                    .fetch_add(1, Ordering::Relaxed);
                core.close(id, CloseCode::POLICY, "ping flood");
            }
        }
        Incoming::Close(close) => core.on_peer_close(id, close),
        _ => {}
    }
}
