//! One worker thread, in the shape of mio's own example: a `Poll`, its listeners, a `Slab` of
//! connections indexed by `Token`, and the handler it drives. Each turn: poll, accept, read
//! until `WouldBlock` (within a budget), hand on, let the handler do its cross-thread work, then
//! flush the connections written to, each once (within a time budget: see
//! `Connections::flush_touched`).

use std::io::{self, Read};
use std::mem;
use std::net::Shutdown;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

use super::conn::{Conn, Phase};
use super::connections::Connections;
use super::dispatch::consume;
use super::tls::TlsAcceptor;
use super::transport::Transport;
use super::{timers, ConnId, Handler, Notifier, Outbox, Response, ServerConfig, Shared};
use crate::ws::CloseCode;

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

pub(crate) struct Worker<H> {
    poll: Poll,
    listeners: Vec<TcpListener>,
    /// Per listener, its TLS settings (`None`: plain TCP).
    tls: Vec<Option<Arc<TlsAcceptor>>>,
    handler: H,
    conns: Connections,
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
        tls: Vec<Option<Arc<TlsAcceptor>>>,
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
            tls,
            handler,
            conns: Connections::new(config, shared),
            scratch: vec![0u8; SCRATCH_BYTES].into_boxed_slice(),
            notifier,
            retry_accept: false,
            accept_again: false,
        })
    }

    /// How often timeouts are checked: often enough for the shortest one configured.
    fn tick(&self) -> Duration {
        let c = &self.conns.config;
        let shortest = c
            .handshake_timeout
            .min(c.http_idle_timeout)
            .min(c.ping_interval)
            .min(c.pong_timeout)
            .min(c.close_timeout);
        (shortest / 4).clamp(Duration::from_millis(5), Duration::from_secs(1))
    }

    pub fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let tick = self.tick();
        let mut next_tick = Instant::now() + tick;
        let mut stop_by: Option<Instant> = None;
        loop {
            let mut wake_at = next_tick;
            for t in [self.handler.next_deadline(), stop_by]
                .into_iter()
                .flatten()
            {
                wake_at = wake_at.min(t);
            }
            let mut timeout = wake_at.saturating_duration_since(Instant::now());
            // Announce sleep, then look once more for work queued before the announcement.
            self.notifier.sleeping.store(true, Ordering::SeqCst);
            std::sync::atomic::fence(Ordering::SeqCst);
            if !self.conns.resume.is_empty()
                || self.conns.flush_waiting()
                || self.accept_again
                || self.handler.has_pending_work()
                || (stop_by.is_none() && self.conns.shared.shutdown_deadline().is_some())
            {
                timeout = Duration::ZERO;
            }
            let polled = self.poll.poll(&mut events, Some(timeout));
            self.notifier.sleeping.store(false, Ordering::SeqCst);
            if let Err(e) = polled {
                if e.kind() != io::ErrorKind::Interrupted {
                    log::error!("worker poll failed, stopping this worker: {e}");
                    break;
                }
            }
            self.conns.now = Instant::now();

            for event in events.iter() {
                match event.token() {
                    WAKER => {}
                    Token(t) if t >= usize::MAX - self.listeners.len() => {
                        self.accept(usize::MAX - 1 - t);
                    }
                    Token(id) => {
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            // Only a plain readable edge may stop at a short read: an end of
                            // stream or an error brings no further edge.
                            let edge = !event.is_read_closed() && !event.is_error();
                            self.on_readable(id, edge);
                        }
                        if event.is_writable() {
                            self.conns.flush(id);
                        }
                    }
                }
            }
            if mem::take(&mut self.accept_again) {
                for i in 0..self.listeners.len() {
                    self.accept(i);
                }
            }
            for id in mem::take(&mut self.conns.resume) {
                self.on_readable(id, false);
            }
            self.handler.on_turn(&mut Outbox {
                conns: &mut self.conns,
            });
            self.notify_closed();

            if self.conns.now >= next_tick {
                if mem::take(&mut self.retry_accept) {
                    for i in 0..self.listeners.len() {
                        self.accept(i);
                    }
                }
                timers::sweep(&mut self.conns);
                next_tick = self.conns.now + tick;
            }
            if stop_by.is_none() {
                if let Some(deadline) = self.conns.shared.shutdown_deadline() {
                    self.begin_shutdown();
                    stop_by = Some(deadline);
                }
            }
            self.conns.flush_touched();
            self.notify_closed();
            if let Some(deadline) = stop_by {
                // Lingering connections have finished their closing handshake: they need not
                // hold up the exit.
                let all_done = self
                    .conns
                    .conns
                    .iter()
                    .all(|(_, c)| matches!(c.phase, Phase::Lingering { .. }));
                if all_done || self.conns.now >= deadline {
                    break;
                }
            }
        }
        let ids: Vec<usize> = self.conns.conns.iter().map(|(id, _)| id).collect();
        for id in ids {
            self.conns.remove(id);
        }
        self.notify_closed();
    }

    /// Tells the handler about every connection that stopped being its to use.
    fn notify_closed(&mut self) {
        while let Some(id) = self.conns.closed.pop() {
            self.handler.on_close(ConnId(id));
        }
    }

    fn accept(&mut self, index: usize) {
        // Ids of closed connections must not be reused before the handler heard of it.
        self.notify_closed();
        let shared = self.conns.shared.clone();
        let limit = shared.limits.get(index).copied().unwrap_or(0);
        for _ in 0..ACCEPTS_PER_TURN {
            let Some(listener) = self.listeners.get(index) else {
                return;
            };
            match listener.accept() {
                Ok((socket, _)) => {
                    if shared.connections[index].load(Ordering::Relaxed) >= limit {
                        self.conns.count(|s| &s.connections_refused);
                        refuse(socket, self.tls.get(index).is_some_and(Option::is_some));
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
        let session = match self.tls.get(listener) {
            Some(Some(acceptor)) => match acceptor.session() {
                Ok(s) => Some(s),
                Err(e) => {
                    log::error!("cannot start a TLS session: {e}");
                    return;
                }
            },
            _ => None,
        };
        let entry = self.conns.conns.vacant_entry();
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
        let now = self.conns.now;
        let socket = match session {
            Some(s) => Transport::tls(socket, s),
            None => Transport::Plain(socket),
        };
        entry.insert(Conn::new(
            socket,
            listener,
            now,
            self.conns.config.handshake_timeout,
        ));
        let shared = &self.conns.shared;
        shared.connections[listener].fetch_add(1, Ordering::Relaxed);
        self.conns.count(|s| &s.connections_accepted);
    }

    /// Hands on what is buffered, then reads until `WouldBlock` (or the per-turn budget),
    /// handing each chunk to [`consume`]. TLS may have records to send after reading (its
    /// handshake): the connection is then flushed at the end of the turn.
    ///
    /// `edge`: called for a readable event. Then a read that does not fill the buffer took all
    /// the socket had (epoll signals every arrival after it, as tokio relies on too), and the
    /// read that would only say `WouldBlock` is skipped: on a keep-alive connection that is one
    /// syscall of three per request. Resumed connections read until `WouldBlock`: their data or
    /// end of stream may have arrived while they were paused, and no edge will come again.
    fn on_readable(&mut self, id: usize, edge: bool) {
        self.read_some(id, edge);
        if self
            .conns
            .conns
            .get(id)
            .is_some_and(|c| c.socket.wants_write())
        {
            self.conns.touch(id);
        }
    }

    fn read_some(&mut self, id: usize, edge: bool) {
        let retry = self
            .conns
            .conns
            .get(id)
            .is_some_and(|c| !c.inbuf.is_empty() && c.may_dispatch());
        if retry {
            consume(&mut self.conns, &mut self.handler, id, &[]);
            self.notify_closed();
        }
        for _ in 0..READS_PER_TURN {
            let Some(c) = self.conns.conns.get_mut(id) else {
                return;
            };
            if !c.may_read() {
                return;
            }
            let c_is_tls = c.socket.is_tls();
            match c.socket.read(&mut self.scratch) {
                Ok(0) => {
                    self.on_peer_eof(id);
                    return;
                }
                Ok(n) => {
                    c.heard(self.conns.now);
                    consume(&mut self.conns, &mut self.handler, id, &self.scratch[..n]);
                    self.notify_closed();
                    // Over TLS a short read of plaintext says nothing of the socket: records
                    // may still wait in it, so read on until `WouldBlock`.
                    if edge && n < self.scratch.len() && !c_is_tls {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    if e.kind() == io::ErrorKind::InvalidData && c.socket.is_tls() {
                        self.conns.count(|s| &s.tls_errors);
                    }
                    self.conns.remove(id);
                    return;
                }
            }
        }
        self.conns.resume.push(id);
    }

    /// The peer closed its side: nothing more will come. An HTTP client that half-closed after
    /// its request still gets the answers already queued; anything else is simply gone.
    fn on_peer_eof(&mut self, id: usize) {
        let answers_due = self
            .conns
            .conns
            .get(id)
            .is_some_and(|c| matches!(c.phase, Phase::Http(_)) && c.out.len_bytes() > 0);
        if answers_due {
            self.conns.drain_with(id, None);
        } else {
            self.conns.remove(id);
        }
    }

    /// Stops accepting and starts closing everything: WebSockets with 1001, idle HTTP
    /// connections at once; a request being read is still answered, with `Connection: close`.
    fn begin_shutdown(&mut self) {
        self.conns.stopping = true;
        for mut l in self.listeners.drain(..) {
            let _ = self.poll.registry().deregister(&mut l);
        }
        let ids: Vec<usize> = self.conns.conns.iter().map(|(id, _)| id).collect();
        for id in ids {
            let Some(c) = self.conns.conns.get(id) else {
                continue;
            };
            match &c.phase {
                Phase::Http(h) if h.idle && c.inbuf.is_empty() && c.out.len_bytes() == 0 => {
                    self.conns.remove(id)
                }
                // Kept open after an answer still being written: finish it, then close. Left
                // as it was, it would wait for a next request and hold the exit until the
                // deadline.
                Phase::Http(h) if h.idle && c.inbuf.is_empty() => self.conns.drain_with(id, None),
                Phase::Open(_) => {
                    self.conns
                        .close(id, CloseCode::GOING_AWAY, "server shutting down")
                }
                _ => {}
            }
        }
    }
}

/// Refuses a connection over the limit with a best-effort 503 (the socket is new, so the
/// response fits its buffer) and closes it. A TLS client could not read a plaintext answer:
/// it just sees the connection close.
fn refuse(mut socket: TcpStream, tls: bool) {
    use std::io::Write;
    if !tls {
        let resp = Response::text(503, "too many connections").encode(false);
        let _ = socket.write(&resp);
    }
    let _ = socket.shutdown(Shutdown::Both);
}
