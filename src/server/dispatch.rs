//! Bytes read from a connection, handed on: HTTP requests (one after another on a keep-alive
//! connection, pipelined ones in order), the WebSocket upgrade, and then frames, as whole
//! messages for the handler and control frames answered here.

use super::conn::Phase;
use super::connections::Connections;
use super::{ConnId, Handler, Message, Outbox, Response, Route};
use crate::http::{self, HttpError};
use crate::ws::frame::{encode_server_frame, OpCode};
use crate::ws::handshake;
use crate::ws::Incoming;

/// The interim answer to `Expect: 100-continue`: go on, send the body.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Hands freshly read bytes (or none, to retry what is buffered) to the connection's current
/// phase, keeping what it could not take yet for later.
pub(crate) fn consume<H: Handler>(
    conns: &mut Connections,
    handler: &mut H,
    id: usize,
    data: &[u8],
) {
    let Some(c) = conns.conns.get_mut(id) else {
        return;
    };
    if c.inbuf.is_empty() {
        let used = process(conns, handler, id, data);
        if used < data.len() {
            conns.with_conn(id, |c| c.inbuf.extend_from_slice(&data[used..]));
        }
    } else {
        let mut buf = c.inbuf.take();
        buf.extend_from_slice(data);
        let used = process(conns, handler, id, &buf);
        buf.drain(..used);
        if !buf.is_empty() {
            conns.with_conn(id, |c| c.inbuf.set(buf));
        }
    }
}

/// Returns how many bytes of `data` were used.
fn process<H: Handler>(conns: &mut Connections, handler: &mut H, id: usize, data: &[u8]) -> usize {
    match conns.conns.get(id).map(|c| &c.phase) {
        Some(Phase::Http(_)) => process_http(conns, handler, id, data),
        Some(Phase::Open(_) | Phase::Closing { .. }) => process_frames(conns, handler, id, data),
        // Draining or lingering: whatever comes now is discarded.
        _ => data.len(),
    }
}

/// Requests, one after another, until one is incomplete, deferred by the handler, or ends the
/// connection (an upgrade moves on to frames).
fn process_http<H: Handler>(
    conns: &mut Connections,
    handler: &mut H,
    id: usize,
    data: &[u8],
) -> usize {
    let max_body = conns.config.max_request_body;
    let handshake_timeout = conns.config.handshake_timeout;
    let now = conns.now;
    let mut pos = 0;
    loop {
        let Some(c) = conns.conns.get_mut(id) else {
            return data.len();
        };
        if !c.may_dispatch() {
            return pos;
        }
        // Every pipelined request adds an answer to the output: while the client is not reading
        // those, leave its next requests unread in the input (at most one read's worth), or a
        // few KiB of `GET /` would queue megabytes of pages.
        if c.paused_by_output && matches!(c.phase, Phase::Http(_)) {
            return pos;
        }
        let Phase::Http(h) = &mut c.phase else {
            // Upgraded while handling the previous request: the rest is frames.
            return pos + process_frames(conns, handler, id, &data[pos..]);
        };
        let input = &data[pos..];
        if input.is_empty() {
            return pos;
        }
        if h.idle {
            // The first byte of the next request: it has the handshake timeout to arrive whole.
            h.idle = false;
            h.deadline = now + handshake_timeout;
        }
        if h.expect.is_some_and(|n| input.len() < n) {
            return pos; // the body is still arriving; its head was checked already
        }
        let listener = usize::from(c.listener);
        let (req, head_len) = match http::parse(input) {
            Ok(http::Status::Partial) => return pos,
            Ok(http::Status::Complete(req, n)) => (req, n),
            Err(e) => {
                conns.refuse(id, &e.response());
                return data.len();
            }
        };
        if req.wants_websocket() {
            return pos + upgrade(conns, handler, id, listener, &req, head_len, input);
        }
        let body_len = match req.body_length() {
            Ok(n) if n > max_body => Err(HttpError::BodyTooLarge {
                size: n,
                max: max_body,
            }),
            other => other,
        };
        let body_len = match body_len {
            Ok(n) => n,
            Err(e) => {
                conns.refuse(id, &e.response());
                return data.len();
            }
        };
        let total = head_len + body_len;
        if input.len() < total {
            if input.len() == head_len && req.expects_continue() {
                // curl waits a second for this before sending a body over 1 KiB (an NDJSON
                // batch); sent once, as `expect` keeps the head from being parsed again.
                conns.push_owned(id, CONTINUE.to_vec());
            }
            conns.with_conn(id, |c| {
                if let Phase::Http(h) = &mut c.phase {
                    h.expect = Some(total);
                }
            });
            return pos;
        }
        conns.count(|s| &s.http_requests);
        let keep_alive = req.keep_alive();
        let route = handler.on_request(ConnId(id), listener, &req, &input[head_len..total]);
        pos += total;
        match route {
            Route::Http(resp) => {
                if !conns.answer(id, &resp, keep_alive) {
                    return data.len();
                }
            }
            Route::Later => {
                conns.with_conn(id, |c| {
                    c.known = true;
                    if let Phase::Http(h) = &mut c.phase {
                        h.waiting = true;
                        h.keep_alive = keep_alive;
                        h.expect = None;
                    }
                });
                return pos;
            }
            Route::WebSocket { .. } => {
                let resp = Response::text(
                    426,
                    "this endpoint speaks WebSocket: send an upgrade request",
                )
                .with_header("Upgrade", "websocket")
                .with_header("Sec-WebSocket-Version", "13");
                conns.count(|s| &s.handshake_errors);
                conns.answer(id, &resp, false);
                return data.len();
            }
        }
    }
}

/// An upgrade request: checked here, then routed by the handler. Returns the bytes used.
fn upgrade<H: Handler>(
    conns: &mut Connections,
    handler: &mut H,
    id: usize,
    listener: usize,
    req: &http::Request<'_>,
    head_len: usize,
    input: &[u8],
) -> usize {
    let accept = match handshake::validate_upgrade(req) {
        Ok(a) => a,
        Err(e) => {
            conns.refuse(id, &e.response());
            return input.len();
        }
    };
    match handler.on_request(ConnId(id), listener, req, &[]) {
        Route::Http(resp) => {
            conns.answer(id, &resp, false);
            input.len()
        }
        Route::Later => {
            let resp = Response::text(500, "the server cannot defer a WebSocket upgrade");
            conns.answer(id, &resp, false);
            input.len()
        }
        Route::WebSocket { protocol, limits } => {
            // Only a protocol the client offered may be answered.
            let protocol = protocol.filter(|p| handshake::offered_protocols(req).any(|o| o == p));
            let limits = limits.unwrap_or(conns.config.limits);
            // permessage-deflate, if the server allows it and the client offers it acceptably.
            let deflate = conns
                .config
                .compression
                .then(|| handshake::negotiate_deflate(req))
                .flatten();
            let extensions = deflate.map(|d| d.response());
            let now = conns.now;
            conns.with_conn(id, |c| {
                c.open(crate::ws::WsContext::new(limits).with_deflate(deflate), now);
                c.out.push_owned(handshake::response_101(
                    &accept,
                    protocol.as_deref(),
                    extensions.as_deref(),
                ));
            });
            conns.touch(id);
            handler.on_open(ConnId(id), listener, req, &mut Outbox { conns });
            // A client may send frames right behind its handshake.
            head_len + process_frames(conns, handler, id, &input[head_len..])
        }
    }
}

/// Frames, until the input ends in the middle of a header, the handler pauses the connection,
/// or the connection stops reading frames.
fn process_frames<H: Handler>(
    conns: &mut Connections,
    handler: &mut H,
    id: usize,
    data: &[u8],
) -> usize {
    let mut pos = 0;
    loop {
        let Some(c) = conns.conns.get_mut(id) else {
            return data.len();
        };
        if c.paused_by_handler {
            return pos;
        }
        let Some(ws) = c.ws_mut() else {
            return data.len();
        };
        match ws.read(&data[pos..]) {
            Err(e) => {
                conns.fail(id, e);
                return data.len();
            }
            Ok((n, None)) => return pos + n,
            Ok((n, Some(event))) => {
                pos += n;
                on_event(conns, handler, id, event);
            }
        }
    }
}

fn on_event<H: Handler>(conns: &mut Connections, handler: &mut H, id: usize, event: Incoming) {
    let open = conns.is_open(id);
    match event {
        // While closing, data is discarded: we already said goodbye.
        Incoming::Text(s) if open => {
            handler.on_message(ConnId(id), Message::Text(s), &mut Outbox { conns })
        }
        Incoming::Binary(b) if open => {
            handler.on_message(ConnId(id), Message::Binary(b), &mut Outbox { conns })
        }
        // "Upon receipt of a Ping frame, an endpoint MUST send a Pong frame in response ... with
        // identical Application data".
        Incoming::Ping(payload) if open => {
            let limit = conns.config.max_pings_per_sec;
            let now = conns.now;
            let count = conns.conns.get_mut(id).map_or(0, |c| c.count_ping(now));
            if count <= limit {
                conns.push_owned(id, encode_server_frame(OpCode::Pong, &payload));
            } else if count > limit.saturating_mul(2) {
                conns.count(|s| &s.abuse_closed);
                conns.close(id, crate::ws::CloseCode::POLICY, "ping flood");
            }
        }
        Incoming::Close(close) => conns.on_peer_close(id, close),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::server::{Request, ServerConfig, Shared};

    /// Answers every request with a 10 KB page, counting them.
    struct Pages(usize);

    impl Handler for Pages {
        fn on_request(&mut self, _: ConnId, _: usize, _: &Request<'_>, _: &[u8]) -> Route {
            self.0 += 1;
            Route::Http(Response::new(200, "text/html", vec![b'x'; 10_000]))
        }

        fn on_message(&mut self, _: ConnId, _: Message, _: &mut Outbox<'_>) {}
    }

    /// A worker's connections holding one server-side socket of a loopback pair (the client end
    /// is returned so it stays open).
    fn one_connection(config: ServerConfig) -> (Connections, usize, std::net::TcpStream) {
        let mut conns = Connections::new(config, Arc::new(Shared::default()));
        let (id, client) = crate::server::connections::test_connection(&mut conns);
        (conns, id, client)
    }

    #[test]
    fn pipelined_requests_wait_while_their_answers_are_unwritten() {
        let config = ServerConfig {
            read_pause_bytes: 32 * 1024,
            ..ServerConfig::default()
        };
        let (mut conns, id, _client) = one_connection(config);
        let mut pages = Pages(0);
        let request = b"GET / HTTP/1.1\r\n\r\n";
        consume(&mut conns, &mut pages, id, &request.repeat(100));
        // Four 10 KB answers pass 32 KiB: the other 96 requests stay unread in the input
        // rather than becoming a megabyte of output.
        assert_eq!(pages.0, 4);
        let c = &conns.conns[id];
        assert!(c.paused_by_output && !c.may_read());
        assert_eq!(c.inbuf.len(), 96 * request.len());
        assert!(c.out.len_bytes() < 32 * 1024 + 10_200);
        // Answered at once, so no extra read is asked for: the dispatcher went on by itself.
        assert!(conns.resume.is_empty());
    }
}
