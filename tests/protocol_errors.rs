//! Protocol violations after the handshake close the connection with the RFC 6455 code, and
//! the control frames work: ping gets pong, close gets close.

mod util;

use std::io::Write;
use std::time::Duration;

use tickwire::server::Limits;
use tickwire::ws::frame::{encode_client_frame, OpCode};
use tungstenite::Message;

const KEY: [u8; 4] = [1, 2, 3, 4];

fn server() -> tickwire::server::Server {
    util::start_echo(|c| {
        c.limits = Limits {
            max_frame: 1000,
            max_message: 1000,
        }
    })
}

/// Sends `bytes` after the handshake and returns the close code the server answers with; the
/// server must then close the TCP connection.
fn close_code_for(addr: std::net::SocketAddr, bytes: &[u8]) -> u16 {
    let mut s = util::raw_websocket(addr, "/");
    s.write_all(bytes).expect("write");
    let (op, payload) = util::read_frame(&mut s);
    assert_eq!(op, 0x8, "expected a close frame");
    assert!(
        util::read_to_close(&mut s).is_empty(),
        "nothing after the close frame"
    );
    util::close_code(&payload)
}

#[test]
fn violations_close_with_their_codes() {
    let server = server();
    let addr = server.local_addrs()[0];
    let mut unmasked = encode_client_frame(true, OpCode::Text, b"hi", KEY);
    unmasked[1] &= 0x7f;
    let unmasked: Vec<u8> = [&unmasked[..2], &unmasked[6..]].concat();
    let mut rsv = encode_client_frame(true, OpCode::Text, b"hi", KEY);
    rsv[0] |= 0x40;
    let mut reserved_op = encode_client_frame(true, OpCode::Text, b"hi", KEY);
    reserved_op[0] = 0x83;
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("unmasked frame", unmasked, 1002),
        ("reserved bit", rsv, 1002),
        ("reserved opcode", reserved_op, 1002),
        (
            "fragmented ping",
            encode_client_frame(false, OpCode::Ping, b"", KEY),
            1002,
        ),
        (
            "continuation first",
            encode_client_frame(true, OpCode::Continuation, b"x", KEY),
            1002,
        ),
        (
            "invalid UTF-8",
            encode_client_frame(true, OpCode::Text, &[0x68, 0xff], KEY),
            1007,
        ),
        (
            "frame over the limit",
            encode_client_frame(true, OpCode::Binary, &[0; 1001], KEY),
            1009,
        ),
        (
            "message over the limit",
            [
                encode_client_frame(false, OpCode::Binary, &[0; 600], KEY),
                encode_client_frame(true, OpCode::Continuation, &[0; 600], KEY),
            ]
            .concat(),
            1009,
        ),
        (
            "bad close code",
            encode_client_frame(true, OpCode::Close, &[0x03, 0xed], KEY),
            1002,
        ),
    ];
    for (what, bytes, code) in cases {
        assert_eq!(close_code_for(addr, &bytes), code, "{what}");
    }
    assert_eq!(server.stats().protocol_errors, 9);
    // Everyone else is unaffected.
    let mut ws = util::connect(addr, "/");
    ws.send(Message::Text("ok".into())).expect("send");
    assert_eq!(ws.read().expect("echo"), Message::Text("ok".into()));
}

#[test]
fn ping_gets_a_pong_with_the_same_payload() {
    let server = server();
    let mut s = util::raw_websocket(server.local_addrs()[0], "/");
    s.write_all(&encode_client_frame(
        true,
        OpCode::Ping,
        b"are you there",
        KEY,
    ))
    .expect("write");
    assert_eq!(util::read_frame(&mut s), (0xA, b"are you there".to_vec()));
}

#[test]
fn close_is_answered_with_the_same_code_then_the_socket_closes() {
    let server = server();
    let mut s = util::raw_websocket(server.local_addrs()[0], "/");
    s.write_all(&encode_client_frame(
        true,
        OpCode::Close,
        &[0x03, 0xe8, b'o', b'k'],
        KEY,
    ))
    .expect("write");
    let (op, payload) = util::read_frame(&mut s);
    assert_eq!((op, util::close_code(&payload)), (0x8, 1000));
    assert!(util::read_to_close(&mut s).is_empty());
    drop(s);
    util::eventually(Duration::from_secs(2), "connection gone", || {
        server.connection_count() == 0
    });
}

#[test]
fn a_silent_client_is_pinged_then_dropped() {
    let server = util::start_echo(|c| {
        c.ping_interval = Duration::from_millis(200);
        c.pong_timeout = Duration::from_millis(600);
    });
    let mut s = util::raw_websocket(server.local_addrs()[0], "/");
    let (op, _) = util::read_frame(&mut s);
    assert_eq!(op, 0x9, "the server pings a quiet client");
    // We never answer: the server gives up on us.
    assert!(util::read_to_close(&mut s).is_empty());
    assert_eq!(server.stats().pong_timeouts, 1);
}

#[test]
fn a_ping_flood_is_closed_with_1008() {
    let server = util::start_echo(|c| c.max_pings_per_sec = 5);
    let mut s = util::raw_websocket(server.local_addrs()[0], "/");
    let flood: Vec<u8> = (0..20)
        .flat_map(|_| encode_client_frame(true, OpCode::Ping, b"x", KEY))
        .collect();
    s.write_all(&flood).expect("write");
    let mut pongs = 0;
    loop {
        let (op, payload) = util::read_frame(&mut s);
        if op == 0xA {
            pongs += 1;
            continue;
        }
        assert_eq!((op, util::close_code(&payload)), (0x8, 1008));
        break;
    }
    assert_eq!(pongs, 5, "pings past the limit are not answered");
    assert_eq!(server.stats().abuse_closed, 1);
}
