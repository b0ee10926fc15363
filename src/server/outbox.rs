//! [`Outbox`]: what the handler may do to the connections of its worker — queue frames, answer
//! a request it deferred, pause and resume reading, close. What is queued during a turn is
//! written at the end of the turn (or, under load, of the next: `Connections::flush_touched`).

use super::connections::Connections;
use super::outbound::Frame;
use super::{CloseCode, ConnId, Response};
use crate::ws::deflate;
use crate::ws::frame::{encode_server_frame, OpCode};

/// The handler's way to write: queue frames on connections of this worker, or close them.
pub struct Outbox<'a> {
    pub(crate) conns: &'a mut Connections,
}

impl Outbox<'_> {
    /// Queues a text message, compressed when the connection negotiated permessage-deflate and
    /// it is at least [`Outbox::compress_min`] bytes. Returns false if the connection is not
    /// open (gone or closing).
    pub fn send_text(&mut self, conn: ConnId, text: &str) -> bool {
        self.send_message(conn, OpCode::Text, text.as_bytes())
    }

    /// Queues a binary message, compressed as [`Outbox::send_text`] is. Returns false if the
    /// connection is not open.
    pub fn send_binary(&mut self, conn: ConnId, bytes: &[u8]) -> bool {
        self.send_message(conn, OpCode::Binary, bytes)
    }

    fn send_message(&mut self, conn: ConnId, opcode: OpCode, payload: &[u8]) -> bool {
        let frame = match self.compression(conn) {
            // Compressed alone (no context takeover), with the client's window.
            Some(bits) if payload.len() >= self.compress_min() => {
                deflate::compressed_frame(opcode, payload, bits)
            }
            _ => encode_server_frame(opcode, payload),
        };
        self.send_owned(conn, frame)
    }

    /// The server window (in bits, 9 to 15) agreed with this connection for permessage-deflate,
    /// or `None` if it did not negotiate it (or is not open). Only a connection with `Some` may
    /// be sent a frame with RSV1 set ([`crate::ws::deflate::compressed_frame`]) through
    /// [`Outbox::send_frame`] or [`Outbox::send_keyed`]; to any other it is a protocol error.
    /// A compression made with [`crate::ws::deflate::window_bits_for`]`(len, bits)` bits serves
    /// it (for most messages that is 15, the same bytes for every such connection).
    pub fn compression(&self, conn: ConnId) -> Option<u8> {
        match &self.conns.conns.get(conn.0)?.phase {
            super::conn::Phase::Open(o) => o.ws.deflate().map(|d| d.server_window_bits()),
            _ => None,
        }
    }

    /// Payloads shorter than this are sent plain even to a connection that negotiated
    /// permessage-deflate (`ServerConfig::compress_min`): compressing a few bytes saves little
    /// and costs a compression each.
    pub fn compress_min(&self) -> usize {
        self.conns.config.compress_min
    }

    /// Queues an already encoded frame (see [`crate::ws::frame::encode_server_frame`]), shared
    /// by refcount with every other connection it goes to.
    pub fn send_frame(&mut self, conn: ConnId, frame: &Frame) -> bool {
        let conns = &mut *self.conns;
        let Some(c) = conns.conns.get_mut(conn.0).filter(|c| c.is_open()) else {
            return false;
        };
        c.out.push_shared(frame, &mut conns.frames);
        conns.after_push(conn.0);
        true
    }

    /// Queues a shared frame that a newer frame with the same key makes obsolete (the latest
    /// quote of a topic). While the connection keeps up this is [`Outbox::send_frame`]; once more
    /// than `conflate_above_bytes` wait, only the latest frame per key is held until it drains.
    pub fn send_keyed(&mut self, conn: ConnId, key: u64, frame: &Frame) -> bool {
        self.conns.push_keyed(conn.0, key, frame)
    }

    /// Whether frames sent with a key would be held now (the connection is behind): such a
    /// frame may be replaced by a newer one before it is written.
    pub fn is_behind(&self, conn: ConnId) -> bool {
        self.conns.conns.get(conn.0).is_some_and(|c| {
            c.held.is_some() || c.out.len_bytes() > self.conns.config.conflate_above_bytes
        })
    }

    /// Drops the frame held back for `key`, if any (the connection no longer wants it).
    pub fn forget_keyed(&mut self, conn: ConnId, key: u64) {
        if let Some(held) = self
            .conns
            .conns
            .get_mut(conn.0)
            .and_then(|c| c.held.as_mut())
        {
            held.forget(key);
        }
    }

    fn send_owned(&mut self, conn: ConnId, bytes: Vec<u8>) -> bool {
        if !self.conns.is_open(conn.0) {
            return false;
        }
        self.conns.push_owned(conn.0, bytes);
        true
    }

    /// Answers a request the handler routed with [`super::Route::Later`]. Returns false if the
    /// connection is gone or was not waiting for an answer.
    pub fn respond(&mut self, conn: ConnId, response: &Response) -> bool {
        let keep_alive = match self.conns.conns.get_mut(conn.0) {
            Some(c) => match &c.phase {
                super::conn::Phase::Http(h) if h.waiting => {
                    c.known = false;
                    h.keep_alive
                }
                _ => return false,
            },
            None => return false,
        };
        self.conns.answer(conn.0, response, keep_alive);
        true
    }

    /// Stops reading from the connection, and handing on what was already read, until
    /// [`Outbox::resume_reading`]: the peer is slowed by TCP, nothing is buffered for it here.
    pub fn pause_reading(&mut self, conn: ConnId) {
        self.conns.with_conn(conn.0, |c| c.paused_by_handler = true);
    }

    /// Undoes [`Outbox::pause_reading`].
    pub fn resume_reading(&mut self, conn: ConnId) {
        let mut resumed = false;
        self.conns.with_conn(conn.0, |c| {
            resumed = std::mem::take(&mut c.paused_by_handler);
        });
        if resumed {
            self.conns.resume.push(conn.0);
        }
    }

    /// Starts the closing handshake with this code and reason. The handler hears `on_close`.
    pub fn close(&mut self, conn: ConnId, code: CloseCode, reason: &str) {
        self.conns.close(conn.0, code, reason);
    }

    /// Closes a client that floods the server with 1008, counted as abuse.
    pub fn close_abusive(&mut self, conn: ConnId, reason: &str) {
        if self.conns.is_open(conn.0) {
            self.conns.count(|s| &s.abuse_closed);
            self.conns.close(conn.0, CloseCode::POLICY, reason);
        }
    }

    /// Bytes queued on the connection and not yet written, or `None` if it is gone.
    pub fn queued_bytes(&self, conn: ConnId) -> Option<usize> {
        self.conns.conns.get(conn.0).map(|c| c.queued_bytes())
    }

    pub fn is_open(&self, conn: ConnId) -> bool {
        self.conns.is_open(conn.0)
    }

    /// The time this turn started (the handler's clock for its own timers).
    pub fn now(&self) -> std::time::Instant {
        self.conns.now
    }
}
