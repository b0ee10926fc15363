//! An echo application: every text or binary message goes back as it came (compressed, to a
//! client that negotiated permessage-deflate, when it is at least the server's `compress_min`).
//! It drives the Autobahn conformance suite (`examples/echo_server.rs`) and the engine's own
//! tests.

use super::{ConnId, Handler, Message, Outbox};

/// Echoes every message back to its sender.
#[derive(Debug, Default, Clone, Copy)]
pub struct Echo;

impl Handler for Echo {
    fn on_message(&mut self, conn: ConnId, msg: Message, out: &mut Outbox<'_>) {
        match msg {
            Message::Text(text) => out.send_text(conn, &text),
            Message::Binary(bytes) => out.send_binary(conn, &bytes),
        };
    }
}
