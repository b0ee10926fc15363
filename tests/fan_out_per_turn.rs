//! A worker's turn does a bounded amount of fan-out, so a long backlog never holds up its
//! sockets (pings, requests, new connections) or its `max_rate` slots until all of it is done.
//! In a file of its own: it loads the worker for a few seconds, and the latency test of
//! `bounded_work.rs` must not share the machine with it.

mod util;
use util::broker as b;

use std::io::Write;

use serde_json::json;
use tickwire::ws::frame::{encode_client_frame, OpCode};

const KEY: [u8; 4] = [1, 2, 3, 4];

/// One turn of the worker does a bounded amount of fan-out, counted in connections visited, not
/// only in publications: a backlog of 8,192 publications that each visit 1,024 subscriptions
/// (8 million visits) is spread over several turns, and the sockets are read between them. Seen
/// from one connection, in the order of its own frames (no clock involved): a ping sent once the
/// first publication has arrived is answered before the last publication, where a single turn
/// for the whole backlog would put the pong after all of it.
#[test]
fn a_long_fan_out_is_cut_into_turns_and_a_ping_is_answered_in_between() {
    let broker = b::start(|c| {
        c.workers = 1;
        c.max_subscriptions = 2048;
        // Room for the whole backlog without conflation, so a missing seq is a real loss.
        c.outbound_soft_limit = 8 << 20;
        c.outbound_hard_limit = 16 << 20;
    });
    // 1,024 distinct patterns that all match one ten-level topic: each publication of it costs
    // 1,024 visits of the subscription index.
    let levels = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"];
    let topic = levels.join("/");
    let patterns: Vec<String> = (0..1024u32)
        .map(|mask| {
            let parts: Vec<&str> = levels
                .iter()
                .enumerate()
                .map(|(i, l)| if mask & (1 << i) != 0 { "+" } else { *l })
                .collect();
            parts.join("/")
        })
        .collect();
    let mut s = util::raw_websocket(broker.public_addr(), "/ws");
    let request = json!({"op": "subscribe", "topics": patterns, "id": 1}).to_string();
    s.write_all(&encode_client_frame(
        true,
        OpCode::Text,
        request.as_bytes(),
        KEY,
    ))
    .expect("write");
    let (_, ack) = util::read_frame(&mut s);
    assert!(ack.starts_with(br#"{"type":"subscribed""#), "{ack:?}");

    const BACKLOG: u64 = 8192;
    let payloads: Vec<String> = (1..=BACKLOG).map(|i| i.to_string()).collect();
    let items: Vec<(&str, &[u8])> = payloads
        .iter()
        .map(|p| (topic.as_str(), p.as_bytes()))
        .collect();
    broker.publisher().publish_batch(&items).expect("queued");

    // The first publication: the worker has started on the backlog. Now ping.
    let seq_of = |payload: &[u8]| -> u64 {
        let v: serde_json::Value = serde_json::from_slice(payload)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(payload)));
        v["seq"].as_u64().expect("a msg with a seq")
    };
    let (_, first) = util::read_frame(&mut s);
    let mut last_seen = seq_of(&first);
    s.write_all(&encode_client_frame(true, OpCode::Ping, b"between", KEY))
        .expect("write ping");
    loop {
        let (opcode, payload) = util::read_frame(&mut s);
        if OpCode::from_u8(opcode) == Some(OpCode::Pong) {
            assert_eq!(payload, b"between");
            break;
        }
        let seq = seq_of(&payload);
        assert_eq!(seq, last_seen + 1, "in order, none missing");
        last_seen = seq;
    }
    eprintln!("the pong came after publication {last_seen} of {BACKLOG}");
    assert!(
        last_seen < BACKLOG,
        "the pong waited for the whole backlog: one turn did all of its fan-out"
    );
    // The rest still arrives, in order.
    while last_seen < BACKLOG {
        let (_, payload) = util::read_frame(&mut s);
        let seq = seq_of(&payload);
        assert_eq!(seq, last_seen + 1, "in order, none missing");
        last_seen = seq;
    }
}
