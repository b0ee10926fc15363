//! One client connection as the event loop sees it: the socket, where it is in its life (each
//! phase holding what only it needs), the bytes it still owes us and the bytes we still owe it.

use std::time::{Duration, Instant};

use super::held::Held;
use super::outbound::OutQueue;
use super::transport::Transport;
use crate::ws::WsContext;

/// Where a connection is in its life.
///
/// ```text
/// Http --101--> Open --close sent--> Closing --close received--> Draining --> Lingering --> gone
///  | ^ keep-alive  \--close received / protocol error------------> Draining
///  |_|
///  \--response with Connection: close, or a refused request ----> Draining
/// ```
#[derive(Debug)]
pub(crate) enum Phase {
    /// HTTP/1.1: reading a request, waiting for the handler's answer, or idle between requests
    /// of a keep-alive connection.
    Http(HttpState),
    /// A WebSocket: messages flow both ways.
    Open(OpenState),
    /// We sent a close frame and read only until the peer's arrives.
    Closing { ws: WsContext, deadline: Instant },
    /// Our last bytes are queued; once written, we shut down our side.
    Draining { deadline: Instant },
    /// Our side is shut; we read and discard until the peer closes too, so that unread input does
    /// not turn our close into a reset that could destroy the frames we just sent.
    Lingering { deadline: Instant },
}

#[derive(Debug)]
pub(crate) struct HttpState {
    /// When the request being read must be complete (the handshake timeout) or, while idle
    /// between requests, when the connection is closed (the idle timeout).
    pub deadline: Instant,
    /// No byte of the next request has arrived: the deadline is the idle timeout.
    pub idle: bool,
    /// The handler answers later ([`super::Route::Later`]); nothing more is read meanwhile, so
    /// pipelined requests are answered in order.
    pub waiting: bool,
    /// Whether the request being answered allows the connection to stay open after it.
    pub keep_alive: bool,
    /// Requests answered on this connection.
    pub served: u32,
    /// Bytes the request at the start of the input needs (head and body), once its head has
    /// been parsed: the head is not parsed again for every piece of a large body.
    pub expect: Option<usize>,
}

#[derive(Debug)]
pub(crate) struct OpenState {
    /// The WebSocket read state.
    pub ws: WsContext,
    /// The last time the peer sent anything, for pings and the pong timeout.
    pub last_heard: Instant,
    pub ping_sent: bool,
    /// Pings received in the current one-second window, and when it began; `None` (no memory)
    /// until the peer's first ping.
    pub pings: Option<Box<PingWindow>>,
}

#[derive(Debug)]
pub(crate) struct PingWindow {
    pub count: u32,
    pub since: Instant,
}

impl Phase {
    /// When this phase ends by itself, if it does.
    pub fn deadline(&self) -> Option<Instant> {
        match self {
            Phase::Http(h) if !h.waiting => Some(h.deadline),
            Phase::Closing { deadline, .. }
            | Phase::Draining { deadline }
            | Phase::Lingering { deadline } => Some(*deadline),
            Phase::Http(_) | Phase::Open(_) => None,
        }
    }
}

#[derive(Debug)]
pub(crate) struct Conn {
    /// Plain TCP, or TLS over it: plaintext either way.
    pub socket: Transport,
    /// Which listener accepted it (index into the server's list, which has a handful).
    pub listener: u16,
    pub phase: Phase,
    /// Bytes read but not yet consumed: an incomplete request head or body, pipelined requests
    /// waiting for an earlier answer, an incomplete frame header, or frames the handler paused.
    /// Empty (and unallocated) most of the time; reads go to the worker's scratch buffer. Boxed
    /// so that an idle connection carries a null pointer rather than a `Vec`.
    pub inbuf: InBuf,
    pub out: OutQueue,
    /// Keyed frames held back while the connection is behind: the latest per key. `None` (no
    /// memory) while the connection keeps up.
    pub held: Option<Box<Held>>,
    /// The last time output made progress (or the queue was empty), for the stall timeout.
    pub last_progress: Instant,
    /// Reading stopped because too much output is waiting (backpressure).
    pub paused_by_output: bool,
    /// Reading (and dispatching what was read) stopped because the handler asked.
    pub paused_by_handler: bool,
    /// The handler holds this connection's id (an open WebSocket, or a request it answers
    /// later) and must hear `on_close` before the id is reused.
    pub known: bool,
    /// Already in this turn's flush list.
    pub touched: bool,
}

/// A connection's input buffer: nothing (a null pointer) while no bytes wait, which is nearly
/// always; a `Vec` on the heap while an incomplete request or frame does.
/// (The extra allocation is the point: 8 bytes in every connection instead of a `Vec`'s 24.)
#[derive(Debug, Default)]
#[allow(clippy::box_collection)]
pub(crate) struct InBuf(Option<Box<Vec<u8>>>);

impl InBuf {
    pub fn is_empty(&self) -> bool {
        self.0.as_ref().is_none_or(|v| v.is_empty())
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |v| v.len())
    }

    pub fn extend_from_slice(&mut self, bytes: &[u8]) {
        if !bytes.is_empty() {
            self.0
                .get_or_insert_with(Default::default)
                .extend_from_slice(bytes);
        }
    }

    /// The bytes waiting, leaving nothing behind (the buffer goes with them).
    pub fn take(&mut self) -> Vec<u8> {
        self.0.take().map(|b| *b).unwrap_or_default()
    }

    /// Keeps `bytes` (or nothing, if empty) as what waits.
    pub fn set(&mut self, bytes: Vec<u8>) {
        self.0 = (!bytes.is_empty()).then(|| Box::new(bytes));
    }
}

impl Conn {
    pub fn new(socket: Transport, listener: usize, now: Instant, timeout: Duration) -> Self {
        Conn {
            socket,
            listener: u16::try_from(listener).expect("at most 65,535 listeners"),
            phase: Phase::Http(HttpState {
                deadline: now + timeout,
                idle: false,
                waiting: false,
                keep_alive: false,
                served: 0,
                expect: None,
            }),
            inbuf: InBuf::default(),
            out: OutQueue::default(),
            held: None,
            last_progress: now,
            paused_by_output: false,
            paused_by_handler: false,
            known: false,
            touched: false,
        }
    }

    /// Bytes waiting to be written, not counting frames held back by conflation (those are
    /// bounded by the number of keys, and their bytes are shared).
    pub fn queued_bytes(&self) -> usize {
        self.out.len_bytes()
    }

    /// Whether the handler may still send to it.
    pub fn is_open(&self) -> bool {
        matches!(self.phase, Phase::Open(_))
    }

    /// Whether the socket should be read now.
    pub fn may_read(&self) -> bool {
        !self.paused_by_output
            && !self.paused_by_handler
            && match &self.phase {
                Phase::Http(h) => !h.waiting,
                Phase::Draining { .. } => false,
                Phase::Open(_) | Phase::Closing { .. } | Phase::Lingering { .. } => true,
            }
    }

    /// Whether bytes already read may be handed on (the handler has not paused it, and no
    /// earlier request is waiting for its answer).
    pub fn may_dispatch(&self) -> bool {
        !self.paused_by_handler && !matches!(&self.phase, Phase::Http(h) if h.waiting)
    }

    /// The WebSocket read state, in the phases that read frames.
    pub fn ws_mut(&mut self) -> Option<&mut WsContext> {
        match &mut self.phase {
            Phase::Open(o) => Some(&mut o.ws),
            Phase::Closing { ws, .. } => Some(ws),
            _ => None,
        }
    }

    /// The peer sent something: it is alive.
    pub fn heard(&mut self, now: Instant) {
        if let Phase::Open(o) = &mut self.phase {
            o.last_heard = now;
            o.ping_sent = false;
        }
    }

    /// The upgrade is done: frames flow from now on.
    pub fn open(&mut self, ws: WsContext, now: Instant) {
        self.phase = Phase::Open(OpenState {
            ws,
            last_heard: now,
            ping_sent: false,
            pings: None,
        });
        self.known = true;
    }

    /// We sent our close frame: keep reading frames until the peer's close, until `deadline`.
    pub fn begin_closing(&mut self, deadline: Instant) {
        let phase = std::mem::replace(&mut self.phase, Phase::Draining { deadline });
        if let Phase::Open(o) = phase {
            self.phase = Phase::Closing { ws: o.ws, deadline };
        }
    }

    /// Nothing more will be read or handed on: write what is queued, then shut down.
    pub fn drain(&mut self, deadline: Instant) {
        self.phase = Phase::Draining { deadline };
        self.paused_by_output = false;
        self.paused_by_handler = false;
    }

    /// Counts a ping in the current one-second window; returns how many came in it.
    pub fn count_ping(&mut self, now: Instant) -> u32 {
        let Phase::Open(o) = &mut self.phase else {
            return 0;
        };
        let w = o.pings.get_or_insert_with(|| {
            Box::new(PingWindow {
                count: 0,
                since: now,
            })
        });
        if now.saturating_duration_since(w.since) >= Duration::from_secs(1) {
            w.since = now;
            w.count = 0;
        }
        w.count += 1;
        w.count
    }
}

#[cfg(test)]
mod tests {
    use std::mem::size_of;

    /// The slab's entry: `slab::Entry<Conn>` is private, so the same enum, which has the same
    /// layout rules.
    #[allow(dead_code)]
    enum SlabEntry<T> {
        Vacant(usize),
        Occupied(T),
    }

    #[test]
    fn an_idle_connection_is_small() {
        // What an idle connection costs the server (issue 16: at most 400 B per idle
        // connection in all, broker included; BENCHMARKS.md has the whole breakdown). Idle, it
        // holds no buffers, so its slab entry is all of it. Run with --nocapture for the parts.
        let parts = [
            ("slab entry (Conn)", size_of::<SlabEntry<super::Conn>>()),
            ("  socket (Transport)", size_of::<super::Transport>()),
            ("  phase (Phase: OpenState)", size_of::<super::Phase>()),
            ("    ws (WsContext)", size_of::<crate::ws::WsContext>()),
            ("  out (OutQueue)", size_of::<super::OutQueue>()),
            ("  inbuf (InBuf)", size_of::<super::InBuf>()),
            ("  held", size_of::<Option<Box<super::Held>>>()),
            ("  last_progress (Instant)", size_of::<std::time::Instant>()),
        ];
        for (what, bytes) in parts {
            eprintln!("{what:<30} {bytes:>4} B");
        }
        let size = size_of::<SlabEntry<super::Conn>>();
        assert!(
            size <= 216,
            "a slab entry is {size} bytes (was 288 before issue 16)"
        );
    }
}
