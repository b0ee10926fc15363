//! One client connection as the event loop sees it: the socket, where it is in its life, the
//! bytes it still owes us and the bytes we still owe it.

use std::collections::HashMap;
use std::time::Instant;

use mio::net::TcpStream;

use super::outbound::{Frame, OutQueue};
use crate::ws::WsContext;

/// Where a connection is in its life.
///
/// ```text
/// Request --101--> Open --close sent--> Closing --close received--> Draining --> Lingering --> gone
///    |               \--close received / protocol error------------> Draining
///    \--HTTP response or handshake error----------------------------> Draining
/// ```
#[derive(Debug)]
pub(crate) enum Phase {
    /// Reading the HTTP request head (and body), before the handshake timeout.
    Request,
    /// A WebSocket: messages flow both ways.
    Open,
    /// We sent a close frame and wait for the peer's (until the close timeout).
    Closing,
    /// Our last bytes are queued; once written, we shut down our side.
    Draining,
    /// Our side is shut; we read and discard until the peer closes too, so that unread input does
    /// not turn our close into a reset that could destroy the frames we just sent.
    Lingering,
}

#[derive(Debug)]
pub(crate) struct Conn {
    pub socket: TcpStream,
    /// Which listener accepted it (index into the server's list).
    pub listener: usize,
    pub phase: Phase,
    /// Bytes read but not yet consumed: an incomplete request head or body, or an incomplete
    /// frame header. Empty (and unallocated) most of the time.
    pub inbuf: Vec<u8>,
    /// The WebSocket read state; default (and heap-free) until the upgrade.
    pub ws: WsContext,
    pub out: OutQueue,
    /// Keyed frames held back while the connection is behind: the latest per key. `None` (no
    /// memory) while the connection keeps up.
    pub conflated: Option<Box<Conflated>>,
    /// The last time output made progress (or the queue was empty), for the stall timeout.
    pub last_progress: Instant,
    /// When the current phase must end: handshake, close or linger timeout.
    pub deadline: Option<Instant>,
    /// The last time the peer sent anything, for pings and the pong timeout.
    pub last_heard: Instant,
    pub ping_sent: bool,
    /// Pings received in the current one-second window, and when the window began.
    pub pings_in_window: u32,
    pub ping_window: Instant,
    /// The handler saw `on_open` and has not yet seen `on_close`.
    pub opened: bool,
    /// Reading is paused because too much output is waiting.
    pub read_paused: bool,
    /// Already in this turn's flush list.
    pub touched: bool,
}

impl Conn {
    pub fn new(socket: TcpStream, listener: usize, now: Instant, deadline: Instant) -> Self {
        Conn {
            socket,
            listener,
            phase: Phase::Request,
            inbuf: Vec::new(),
            ws: WsContext::default(),
            out: OutQueue::default(),
            conflated: None,
            last_progress: now,
            deadline: Some(deadline),
            last_heard: now,
            ping_sent: false,
            pings_in_window: 0,
            ping_window: now,
            opened: false,
            read_paused: false,
            touched: false,
        }
    }

    /// Bytes waiting to be written, held back ones included.
    pub fn pending_bytes(&self) -> usize {
        self.out.len_bytes() + self.conflated.as_ref().map_or(0, |c| c.bytes)
    }

    /// Whether the handler may still send to it.
    pub fn is_open(&self) -> bool {
        matches!(self.phase, Phase::Open)
    }
}

/// The latest frame per key, waiting for the queue to drain.
#[derive(Debug, Default)]
pub(crate) struct Conflated {
    pub frames: HashMap<u64, Frame>,
    pub bytes: usize,
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_idle_connection_is_small() {
        // Issue 7 asks for at most 1 KiB of server memory per idle connection; the struct is
        // most of it (an idle connection holds no buffers).
        let size = std::mem::size_of::<super::Conn>();
        assert!(size <= 512, "Conn is {size} bytes");
    }
}
