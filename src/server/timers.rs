//! Timeouts, checked a few times per shortest timeout: requests not received in time (408),
//! idle keep-alive connections, closing handshakes the peer never finishes, quiet WebSockets
//! (a ping, then a drop), and subscribers whose output makes no progress (1008).

use std::time::Instant;

use super::conn::Phase;
use super::connections::Connections;
use super::Response;
use crate::ws::frame::{encode_server_frame, OpCode};

/// What a sweep found to do; collected first, done after, so the slab is not borrowed twice.
#[derive(Default)]
struct Due {
    /// TLS handshakes not finished in time: there is no channel to say 408 on.
    tls_unfinished: Vec<usize>,
    too_slow: Vec<usize>,
    idle: Vec<usize>,
    /// Idle past the timeout while answers are still being written.
    idle_writing: Vec<usize>,
    dead: Vec<usize>,
    to_ping: Vec<usize>,
    stalled: Vec<usize>,
}

/// One pass over the worker's connections.
pub(crate) fn sweep(conns: &mut Connections) {
    let now = conns.now;
    let (ping_after, dead_after) = (conns.config.ping_interval, conns.config.pong_timeout);
    let max_stall = conns.config.max_stall;
    let mut due = Due::default();
    for (id, c) in conns.conns.iter_mut() {
        // Idle connections hold no buffers: a ring left by the last burst goes back now.
        c.out.release_buffer();
        let expired = c.phase.deadline().is_some_and(|d| now >= d);
        match &c.phase {
            Phase::Http(_) if expired && c.socket.is_handshaking() => due.tls_unfinished.push(id),
            Phase::Http(h) if expired && h.idle && c.out.len_bytes() == 0 => due.idle.push(id),
            Phase::Http(h) if expired && h.idle => due.idle_writing.push(id),
            Phase::Http(_) if expired => due.too_slow.push(id),
            Phase::Open(o) => {
                let quiet = now.saturating_duration_since(o.last_heard);
                let waiting = c.queued_bytes() > 0 || c.held.is_some();
                if waiting && now.saturating_duration_since(c.last_progress) >= max_stall {
                    due.stalled.push(id);
                } else if quiet >= dead_after {
                    due.dead.push(id);
                } else if quiet >= ping_after && !o.ping_sent {
                    due.to_ping.push(id);
                }
            }
            Phase::Closing { .. } | Phase::Draining { .. } | Phase::Lingering { .. } if expired => {
                due.dead.push(id)
            }
            _ => {}
        }
    }
    for id in due.tls_unfinished {
        conns.count(|s| &s.handshake_timeouts);
        conns.remove(id);
    }
    for id in due.too_slow {
        conns.count(|s| &s.handshake_timeouts);
        let resp = Response::text(408, "request not received in time");
        conns.drain_with(id, Some(resp.encode(false)));
    }
    for id in due.idle {
        conns.remove(id);
    }
    // No request is late, so no 408 (it would read as the answer to a request never sent):
    // finish writing the answers, then close, within the close timeout.
    for id in due.idle_writing {
        conns.drain_with(id, None);
    }
    for id in due.dead {
        if conns.is_open(id) {
            conns.count(|s| &s.pong_timeouts);
        }
        conns.remove(id);
    }
    for id in due.stalled {
        stalled(conns, id, now);
    }
    for id in due.to_ping {
        conns.with_conn(id, |c| {
            if let Phase::Open(o) = &mut c.phase {
                o.ping_sent = true;
            }
        });
        conns.push_owned(id, encode_server_frame(OpCode::Ping, b""));
    }
}

/// Output has waited `max_stall` with no write making progress. Writable events only come when
/// the kernel has a good share of its buffer free, so a client reading slowly may be draining it
/// without the server hearing: try a write first, and close only if the socket takes nothing.
fn stalled(conns: &mut Connections, id: usize, now: Instant) {
    conns.flush(id);
    let moved = conns
        .conns
        .get(id)
        .is_some_and(|c| c.last_progress >= now || (c.queued_bytes() == 0 && c.held.is_none()));
    if !moved {
        conns.close_slow(id, "slow consumer: output not read in time");
    }
}
