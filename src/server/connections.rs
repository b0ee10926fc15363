//! A worker's connections: the `Slab` they live in, and every change of their state that the
//! loop, the dispatcher, the timers and the handler (through [`super::Outbox`]) can ask for:
//! queueing bytes, answering requests, closing, failing, draining, writing, removing.

use std::mem;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use slab::Slab;

use super::conn::{Conn, Phase};
use super::outbound::{Frame, FrameTable};
use super::stats::EngineCounters;
use super::{Response, ServerConfig, Shared};
use crate::ws::close::build_payload;
use crate::ws::frame::{encode_server_frame, OpCode};
use crate::ws::{CloseCode, ProtocolError};

/// How long the end-of-turn flush may write before connections with little queued wait for the
/// next turn. A write costs the kernel about the same for 100 bytes as for 4 KiB, so when there
/// are more connections to write than fit in this time (fan-out under load), the ones not
/// reached gather the next turn's frames too and go first then. Each write then carries more,
/// while the worker keeps reading its publishers between slices; a frame waits at most until
/// every connection before it has been written once, as in one long flush. Below this load
/// every touched connection is written every turn.
const FLUSH_BUDGET: Duration = Duration::from_millis(2);
/// A connection with this much queued is written even past the budget: larger writes gain
/// little, and the queue must stay far below where frames are conflated.
const DEFER_BELOW_BYTES: usize = 16 * 1024;

pub(crate) struct Connections {
    pub conns: Slab<Conn>,
    pub config: ServerConfig,
    pub shared: Arc<Shared>,
    /// Connections written to since they were last flushed, oldest first: flushed at the end
    /// of the turn, within [`FLUSH_BUDGET`].
    touched: Vec<usize>,
    /// The list being flushed (kept for its allocation).
    flush_list: Vec<usize>,
    /// Connections to read (or hand on what they have read) again next turn: stopped early by
    /// the read budget, unpaused, or answered.
    pub resume: Vec<usize>,
    /// Connections the handler knew that are gone for it; it hears `on_close` for each.
    pub closed: Vec<usize>,
    /// The shared frames the connections' queues point at.
    pub frames: FrameTable,
    pub now: Instant,
    /// Shutdown has begun: answers end their connection.
    pub stopping: bool,
}

impl Connections {
    pub fn new(config: ServerConfig, shared: Arc<Shared>) -> Self {
        Connections {
            conns: Slab::new(),
            config,
            shared,
            touched: Vec::new(),
            flush_list: Vec::new(),
            resume: Vec::new(),
            closed: Vec::new(),
            frames: FrameTable::default(),
            now: Instant::now(),
            stopping: false,
        }
    }

    pub fn count(&self, counter: impl Fn(&EngineCounters) -> &AtomicU64) {
        EngineCounters::add(counter(&self.shared.stats), 1);
    }

    pub fn is_open(&self, id: usize) -> bool {
        self.conns.get(id).is_some_and(Conn::is_open)
    }

    pub fn with_conn(&mut self, id: usize, f: impl FnOnce(&mut Conn)) {
        if let Some(c) = self.conns.get_mut(id) {
            f(c);
        }
    }

    /// Puts the connection on this turn's flush list.
    pub fn touch(&mut self, id: usize) {
        if let Some(c) = self.conns.get_mut(id) {
            if !c.touched {
                c.touched = true;
                self.touched.push(id);
            }
        }
    }

    pub fn push_owned(&mut self, id: usize, bytes: Vec<u8>) {
        let now = self.now;
        self.with_conn(id, |c| {
            if c.out.len_bytes() == 0 {
                c.last_progress = now;
            }
            c.out.push_owned(bytes)
        });
        self.after_push(id);
    }

    /// Queues a shared frame, or holds it (latest per key) while the connection is behind.
    pub fn push_keyed(&mut self, id: usize, key: u64, frame: &Frame) -> bool {
        let Some(c) = self.conns.get_mut(id).filter(|c| c.is_open()) else {
            return false;
        };
        if c.held.is_none() && c.out.len_bytes() <= self.config.conflate_above_bytes {
            if c.out.len_bytes() == 0 {
                c.last_progress = self.now;
            }
            c.out.push_shared(frame, &mut self.frames);
        } else if c.held.get_or_insert_with(Default::default).hold(key, frame) {
            self.count(|s| &s.frames_conflated);
        }
        self.after_push(id);
        true
    }

    /// Enforces the outbound limits after something was queued.
    pub fn after_push(&mut self, id: usize) {
        let Some(c) = self.conns.get_mut(id) else {
            return;
        };
        if !c.touched {
            c.touched = true;
            self.touched.push(id);
        }
        let pending = c.queued_bytes() + c.held.as_ref().map_or(0, |h| h.cost());
        if pending > self.config.max_outbound_bytes && c.is_open() {
            self.close_slow(id, "slow consumer: too much unread output");
        } else if c.out.len_bytes() > self.config.read_pause_bytes {
            c.paused_by_output = true;
        }
    }

    /// Closes a connection that does not read its output with 1008. What waits will never be
    /// wanted: keep the stream valid (a half-written frame), drop the rest, and say why.
    pub fn close_slow(&mut self, id: usize, reason: &str) {
        if let Some(c) = self.conns.get_mut(id) {
            c.out.discard_unstarted(&mut self.frames);
            c.held = None;
        }
        self.count(|s| &s.slow_consumers_closed);
        self.close(id, CloseCode::POLICY, reason);
    }

    /// The handler must no longer use this connection.
    fn forget(&mut self, id: usize) {
        if let Some(c) = self.conns.get_mut(id) {
            if mem::take(&mut c.known) {
                self.closed.push(id);
            }
        }
    }

    /// Server-initiated close: send a close frame, wait for the peer's.
    pub fn close(&mut self, id: usize, code: CloseCode, reason: &str) {
        if !self.is_open(id) {
            return;
        }
        self.forget(id);
        let frame = encode_server_frame(OpCode::Close, &build_payload(code, reason));
        let deadline = self.now + self.config.close_timeout;
        self.with_conn(id, |c| {
            c.out.push_owned(frame);
            c.begin_closing(deadline);
        });
        self.touch(id);
    }

    /// _Fail the WebSocket Connection_ (RFC 6455 7.1.7): send the close code, then close the
    /// TCP connection without waiting for the peer's close frame.
    pub fn fail(&mut self, id: usize, err: ProtocolError) {
        self.count(|s| &s.protocol_errors);
        let was_open = self.is_open(id);
        self.forget(id);
        let frame = was_open
            .then(|| encode_server_frame(OpCode::Close, &build_payload(err.code, err.reason())));
        self.drain_with(id, frame);
    }

    /// The peer's close frame arrived: answer it (echoing its code) unless we started.
    pub fn on_peer_close(&mut self, id: usize, close: Option<(CloseCode, String)>) {
        let was_open = self.is_open(id);
        self.forget(id);
        let reply = was_open.then(|| {
            let payload = close
                .map(|(code, _)| build_payload(code, ""))
                .unwrap_or_default();
            encode_server_frame(OpCode::Close, &payload)
        });
        self.drain_with(id, reply);
    }

    /// Answers an HTTP request. Unless `keep_alive` (and the response and the connection's
    /// request count allow it), the connection ends after the answer. Returns whether it stays.
    pub fn answer(&mut self, id: usize, response: &Response, keep_alive: bool) -> bool {
        let (max, idle, stopping) = (
            self.config.http_max_requests,
            self.config.http_idle_timeout,
            self.stopping,
        );
        let now = self.now;
        let Some(c) = self.conns.get_mut(id) else {
            return false;
        };
        let Phase::Http(h) = &mut c.phase else {
            return false;
        };
        h.served += 1;
        let keep = keep_alive && !stopping && !response.ends_connection() && h.served < max;
        let bytes = response.encode(keep);
        // A request answered at once is followed by the dispatcher, which goes on with the
        // input; one answered later left reading stopped until now.
        let answered_later = h.waiting;
        if keep {
            h.waiting = false;
            h.expect = None;
            h.idle = true;
            h.deadline = now + idle;
            if c.out.len_bytes() == 0 {
                c.last_progress = now;
            }
            c.out.push_owned(bytes);
            // Pipelined requests may be waiting in the input, and no readable event will say
            // so. Only then: a read per answer that finds nothing is a syscall per request.
            if answered_later {
                self.resume.push(id);
            }
            self.after_push(id);
        } else {
            self.drain_with(id, Some(bytes));
        }
        keep
    }

    /// Refuses a request the engine will not hand on, counted, and ends the connection.
    pub fn refuse(&mut self, id: usize, response: &Response) {
        self.count(|s| &s.handshake_errors);
        self.drain_with(id, Some(response.encode(false)));
    }

    /// Queues the last bytes for this connection; once written, our side is shut down.
    pub fn drain_with(&mut self, id: usize, last: Option<Vec<u8>>) {
        self.forget(id);
        let deadline = self.now + self.config.close_timeout;
        self.with_conn(id, |c| {
            if let Some(bytes) = last {
                c.out.push_owned(bytes);
            }
            c.held = None;
            c.drain(deadline);
        });
        self.touch(id);
    }

    /// Drops the connection at once (the socket closes with it).
    pub fn remove(&mut self, id: usize) {
        self.forget(id);
        if let Some(mut c) = self.conns.try_remove(id) {
            c.out.release_all(&mut self.frames);
            if let Some(n) = self.shared.connections.get(usize::from(c.listener)) {
                n.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }

    /// Writes what is queued, then what conflation held back as room frees up. Called at the
    /// end of a turn, on writable events, and by the stall check.
    pub fn flush(&mut self, id: usize) {
        let pause_below = self.config.read_pause_bytes;
        let refill_below = self.config.conflate_above_bytes / 2;
        let refill_to = self.config.conflate_above_bytes;
        let Some(c) = self.conns.get_mut(id) else {
            return;
        };
        let before = c.out.len_bytes();
        let mut result = c.out.write_to(&mut c.socket, &mut self.frames);
        if c.out.len_bytes() < before {
            c.last_progress = self.now;
        }
        // With TLS the queue can be empty while records still wait for the socket.
        if let Ok(true) = result {
            result = c.socket.flush_pending();
        }
        // Caught up enough: the held-back latest frames go out, a queue's worth at a time.
        while result.is_ok() && c.out.len_bytes() <= refill_below {
            let Some(held) = c.held.as_mut() else { break };
            while c.out.len_bytes() < refill_to {
                match held.pop() {
                    Some(frame) => c.out.push_shared(&frame, &mut self.frames),
                    None => break,
                }
            }
            if held.is_empty() {
                c.held = None;
            }
            let before = c.out.len_bytes();
            result = c.out.write_to(&mut c.socket, &mut self.frames);
            if c.out.len_bytes() < before {
                c.last_progress = self.now;
            } else {
                break;
            }
        }
        match result {
            Ok(done) => {
                if done && matches!(c.phase, Phase::Draining { .. }) {
                    c.socket.shutdown_write();
                    c.phase = Phase::Lingering {
                        deadline: self.now + self.config.close_timeout,
                    };
                    // Input may have been waiting while we drained: no new edge will tell us.
                    self.resume.push(id);
                }
                if c.paused_by_output && c.out.len_bytes() <= pause_below {
                    c.paused_by_output = false;
                    self.resume.push(id);
                }
            }
            Err(_) => self.remove(id),
        }
    }

    /// Writes the connections written to since their last flush, oldest first, for
    /// [`FLUSH_BUDGET`]; past it, an open WebSocket with less than [`DEFER_BELOW_BYTES`] queued
    /// stays in line for the next turn.
    pub fn flush_touched(&mut self) {
        self.flush_touched_within(FLUSH_BUDGET);
    }

    fn flush_touched_within(&mut self, budget: Duration) {
        let list = mem::replace(&mut self.touched, mem::take(&mut self.flush_list));
        let started = Instant::now();
        let mut out_of_time = false;
        let mut deferred = 0;
        for (i, &id) in list.iter().enumerate() {
            let Some(c) = self.conns.get_mut(id) else {
                continue;
            };
            // The clock is read every few writes: a write costs microseconds, a clock read tens of
            // nanoseconds.
            if !out_of_time && i % 16 == 15 {
                out_of_time = started.elapsed() >= budget;
            }
            if out_of_time && c.is_open() && c.queued_bytes() < DEFER_BELOW_BYTES {
                self.touched.push(id);
                deferred += 1;
                continue;
            }
            c.touched = false;
            self.flush(id);
        }
        if deferred > 0 {
            EngineCounters::add(&self.shared.stats.writes_deferred, deferred);
        }
        self.flush_list = list;
        self.flush_list.clear();
    }

    /// Whether connections are waiting to be flushed (the budget ran out last turn).
    pub fn flush_waiting(&self) -> bool {
        !self.touched.is_empty()
    }
}

/// A server-side socket of a loopback pair, as a connection in `conns` (the client end is
/// returned so that it stays open).
#[cfg(test)]
pub(crate) fn test_connection(conns: &mut Connections) -> (usize, std::net::TcpStream) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let client =
        std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
    let (server, _) = listener.accept().expect("accept");
    server.set_nonblocking(true).expect("nonblocking");
    let socket = mio::net::TcpStream::from_std(server);
    let id = conns.conns.insert(Conn::new(
        super::transport::Transport::Plain(socket),
        0,
        Instant::now(),
        Duration::from_secs(10),
    ));
    (id, client)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::WsContext;

    #[test]
    fn past_the_budget_small_queues_wait_for_the_next_turn_and_go_first() {
        let mut conns = Connections::new(ServerConfig::default(), Arc::new(Shared::default()));
        let limits = conns.config.limits;
        let mut ids = Vec::new();
        let mut clients = Vec::new();
        for _ in 0..40 {
            let (id, client) = test_connection(&mut conns);
            conns.conns[id].open(WsContext::new(limits), conns.now);
            ids.push(id);
            clients.push(client);
        }
        for (i, &id) in ids.iter().enumerate() {
            // One large queue and one closing connection among the small ones.
            let bytes = if i == 30 { DEFER_BELOW_BYTES } else { 100 };
            conns.push_owned(id, vec![b'x'; bytes]);
        }
        conns.close(ids[35], CloseCode::NORMAL, "bye");
        // A budget spent at once: the clock is first read at the 16th connection.
        conns.flush_touched_within(Duration::ZERO);
        let queued = |conns: &Connections, i: usize| conns.conns[ids[i]].queued_bytes();
        for i in 0..40 {
            let written = i < 15 || i == 30 || i == 35;
            assert_eq!(queued(&conns, i) == 0, written, "connection {i}");
        }
        assert!(conns.flush_waiting());
        let stats = conns
            .shared
            .stats
            .writes_deferred
            .load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(stats, 23, "counted for metrics");
        let waiting: Vec<usize> = (15..40).filter(|&i| i != 30 && i != 35).collect();
        let expected: Vec<usize> = waiting.iter().map(|&i| ids[i]).collect();
        assert_eq!(conns.touched, expected, "in line, oldest first");
        // More for a waiting connection and a written one: the waiting one keeps its place.
        conns.push_owned(ids[20], vec![b'y'; 100]);
        conns.push_owned(ids[0], vec![b'y'; 100]);
        assert_eq!(conns.touched.first(), Some(&ids[15]));
        assert_eq!(conns.touched.last(), Some(&ids[0]));
        assert_eq!(queued(&conns, 20), 200);
        conns.flush_touched_within(Duration::MAX);
        assert!((0..40).all(|i| queued(&conns, i) == 0));
        assert!(!conns.flush_waiting());
    }
}
