//! Streaming publishers: WebSocket clients of the local listener (`GET /publish`) sending one
//! `{"topic":..,"data":..,"id":..}` per text frame. Each frame is published on its own; an
//! error, or a success for a frame with an `id`, is answered in frame order.
//!
//! With `--redis` a frame's answer comes from Redis, later, while the frames after it are read.
//! At most [`STREAM_WINDOW`] frames may wait for their answer (for Redis, or behind one that
//! does); past it the connection is paused (its socket is not read, so TCP slows the publisher
//! down) until answers bring it back under half the window.

use std::collections::VecDeque;

use super::pending::{Outcome, WaitKind, Waiter};
use super::protocol::{self, ClientError};
use super::{BrokerWorker, Client};
use crate::metrics::Rejection;
use crate::server::{ConnId, Outbox};

/// Frames a streaming publisher may have waiting for Redis before its reading is paused.
pub(crate) const STREAM_WINDOW: usize = 1024;

/// A streaming publisher's answers, in the order of its frames.
#[derive(Debug)]
pub(crate) struct StreamPublisher {
    /// Tells this connection from a later one that reuses its `ConnId`.
    serial: u64,
    /// One per frame not yet answered, oldest first: `None` while waiting for Redis, then the
    /// answer to send (itself `None` for a success without an `id`, which gets no answer).
    pending: VecDeque<Option<Option<String>>>,
    /// The ticket of the next frame; `pending[0]` is `next_ticket - pending.len()`.
    next_ticket: u64,
    /// Reading is paused because the window is full.
    paused: bool,
}

impl StreamPublisher {
    pub fn new(serial: u64) -> Self {
        StreamPublisher {
            serial,
            pending: VecDeque::new(),
            next_ticket: 0,
            paused: false,
        }
    }

    /// Takes the next frame's place in the order (`None`: waiting for Redis) and pauses reading
    /// once the window is full. Answers already known count too: queued behind one waiting for
    /// Redis, they would otherwise pile up without bound from a publisher sending bad frames.
    fn queue(&mut self, slot: Option<Option<String>>, conn: ConnId, out: &mut Outbox<'_>) {
        self.pending.push_back(slot);
        self.next_ticket += 1;
        if self.pending.len() >= STREAM_WINDOW && !self.paused {
            self.paused = true;
            out.pause_reading(conn);
        }
    }
}

/// `{"type":"published","seq":N,"id":ID}`
fn published(seq: u64, id: &str) -> String {
    format!("{{\"type\":\"published\",\"seq\":{seq},\"id\":{id}}}")
}

impl BrokerWorker {
    fn stream_publisher(&mut self, conn: ConnId) -> Option<&mut StreamPublisher> {
        match self.clients.get_mut(conn.0) {
            Some(Some(Client::Publisher(p))) => Some(p),
            _ => None,
        }
    }

    pub(super) fn on_publisher_message(&mut self, conn: ConnId, text: &str, out: &mut Outbox<'_>) {
        let publication = match protocol::parse_publication(text) {
            Ok(p) => p,
            Err((code, message)) => {
                self.shared.hub.metrics.rejected(Rejection::BadRequest);
                let e = ClientError::new(code, message, protocol::request_id(text));
                return self.answer_publisher(conn, Some(self.error_text(&e)), out);
            }
        };
        let id = publication.id.map(|r| r.get().to_owned());
        let (topic, payload) = (
            publication.topic.as_str(),
            publication.data.get().as_bytes(),
        );
        if self.shared.hub.upstream().is_some() {
            return self.submit_frame(conn, topic, payload, id, out);
        }
        let answer = match self.shared.publisher().publish(topic, payload) {
            Ok(seq) => id.map(|id| published(seq, &id)),
            Err(e) => {
                Some(self.error_text(&ClientError::new(e.rejection().code(), e.to_string(), id)))
            }
        };
        self.answer_publisher(conn, answer, out);
    }

    /// With `--redis`: hands the frame to Redis; its answer comes back through `pending`.
    fn submit_frame(
        &mut self,
        conn: ConnId,
        topic: &str,
        payload: &[u8],
        id: Option<String>,
        out: &mut Outbox<'_>,
    ) {
        let Some(p) = self.stream_publisher(conn) else {
            return;
        };
        let waiter = Waiter {
            conn,
            serial: p.serial,
            kind: WaitKind::Stream {
                ticket: p.next_ticket,
                id: id.clone(),
            },
        };
        let submitted = self.pending.submit(
            &self.shared.publisher(),
            self.worker,
            &[(topic, payload)],
            waiter,
            out.now(),
        );
        if let Err(e) = submitted {
            let e = ClientError::new(e.error.rejection().code(), e.error.to_string(), id);
            return self.answer_publisher(conn, Some(self.error_text(&e)), out);
        }
        if let Some(p) = self.stream_publisher(conn) {
            p.queue(None, conn, out);
        }
    }

    /// Redis answered one of a streaming publisher's frames (or did not, in time): record it,
    /// send every answer now due in frame order, and resume reading once the window has room.
    pub(super) fn on_stream_answer(
        &mut self,
        conn: ConnId,
        serial: u64,
        ticket: u64,
        id: Option<String>,
        result: Outcome,
        out: &mut Outbox<'_>,
    ) {
        let text = match result {
            Ok(seqs) => id
                .as_deref()
                .map(|id| published(seqs.first().copied().unwrap_or(0), id)),
            Err(e) => {
                Some(self.error_text(&ClientError::new(e.rejection().code(), e.to_string(), id)))
            }
        };
        let Some(p) = self.stream_publisher(conn).filter(|p| p.serial == serial) else {
            return; // for a connection that closed meanwhile
        };
        let first = p.next_ticket - p.pending.len() as u64;
        let Some(slot) = ticket.checked_sub(first) else {
            return;
        };
        if let Some(waiting) = p.pending.get_mut(slot as usize) {
            *waiting = Some(text);
        }
        while let Some(Some(_)) = p.pending.front() {
            if let Some(Some(Some(text))) = p.pending.pop_front() {
                out.send_text(conn, &text);
            }
        }
        if p.paused && p.pending.len() <= STREAM_WINDOW / 2 {
            p.paused = false;
            out.resume_reading(conn);
        }
    }

    /// Sends a streaming publisher an answer (`None`: nothing to send), after the answers
    /// still waiting for Redis.
    pub(super) fn answer_publisher(
        &mut self,
        conn: ConnId,
        answer: Option<String>,
        out: &mut Outbox<'_>,
    ) {
        match self.stream_publisher(conn) {
            Some(p) if !p.pending.is_empty() => p.queue(Some(answer), conn, out),
            _ => {
                if let Some(text) = answer {
                    out.send_text(conn, &text);
                }
            }
        }
    }
}
