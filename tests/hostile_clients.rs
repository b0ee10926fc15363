//! Hostile clients over real sockets. After each attack the broker still serves a fresh client,
//! the connection gauge and this process's file descriptors are back to their baseline, and
//! memory is back near it.

mod util;
use util::broker as b;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use tickwire::ws::frame::{encode_client_frame, OpCode};
use tickwire::Broker;

const KEY: [u8; 4] = [9, 9, 9, 9];

fn fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count()
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .expect("status")
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .expect("VmRSS")
}

/// Runs `attack`, then checks the broker recovered fully.
fn survives(broker: &Broker, name: &str, attack: impl FnOnce(SocketAddr)) {
    let (conns, files, rss) = (broker.stats().connections, fds(), rss_kib());
    attack(broker.public_addr());
    b::eventually(
        Duration::from_secs(15),
        &format!("{name}: connections back to {conns}"),
        || broker.stats().connections <= conns,
    );
    b::eventually(
        Duration::from_secs(5),
        &format!("{name}: fds back to {files}"),
        || fds() <= files,
    );
    let mut sub = b::Sub::connect(broker, "");
    sub.subscribe(&["h/x"]);
    b::publish(broker, "h/x", "1");
    assert_eq!(
        sub.next()["type"],
        "msg",
        "{name}: a fresh client is served"
    );
    drop(sub);
    let grown = rss_kib().saturating_sub(rss);
    assert!(grown < 32 * 1024, "{name}: RSS grew by {grown} KiB");
}

fn hostile_broker() -> Broker {
    b::start(|c| {
        c.handshake_timeout = Duration::from_millis(500);
        c.ping_interval = Duration::from_millis(500);
        c.pong_timeout = Duration::from_millis(1500);
        c.slow_consumer_timeout = Duration::from_secs(1);
        c.outbound_soft_limit = 64 * 1024;
        c.outbound_hard_limit = 512 * 1024;
        c.max_connections = 200;
    })
}

fn open_ws(addr: SocketAddr) -> TcpStream {
    util::raw_websocket(addr, "/ws")
}

#[test]
fn slowloris_handshake_is_timed_out() {
    let broker = hostile_broker();
    survives(&broker, "slowloris", |addr| {
        let mut s = util::raw(addr);
        // One byte at a time, slower than the handshake timeout allows.
        for byte in b"GET /ws HTTP/1.1\r\nHost: x\r\n" {
            if s.write_all(&[*byte]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut resp = Vec::new();
        let _ = s.read_to_end(&mut resp);
        assert!(
            resp.starts_with(b"HTTP/1.1 408 "),
            "{}",
            String::from_utf8_lossy(&resp)
        );
    });
}

#[test]
fn a_handshake_flood_past_max_connections_is_refused_then_drains() {
    let broker = hostile_broker();
    survives(&broker, "flood", |addr| {
        let held: Vec<TcpStream> = (0..250)
            .filter_map(|_| TcpStream::connect(addr).ok())
            .collect();
        b::eventually(Duration::from_secs(5), "refusals counted", || {
            b::metric(&broker, "tickwire_connections_refused_total") > 0
        });
        drop(held);
    });
}

#[test]
fn garbage_before_and_after_the_handshake() {
    let broker = hostile_broker();
    survives(&broker, "garbage", |addr| {
        let mut s = util::raw(addr);
        s.write_all(&[0u8, 255, 13, 10, 13, 10, 7, 7])
            .expect("write");
        let mut resp = Vec::new();
        let _ = s.read_to_end(&mut resp);
        assert!(resp.starts_with(b"HTTP/1.1 400 "));
        let mut s = open_ws(addr);
        s.write_all(b"GET / HTTP/1.1\r\n\r\n not a frame at all")
            .expect("write");
        let (op, payload) = util::read_frame(&mut s);
        assert_eq!((op, util::close_code(&payload)), (8, 1002));
    });
}

#[test]
fn oversized_headers_get_431() {
    let broker = hostile_broker();
    survives(&broker, "oversized headers", |addr| {
        let mut s = util::raw(addr);
        let _ = s
            .write_all(format!("GET /ws HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(20_000)).as_bytes());
        let mut resp = Vec::new();
        let _ = s.read_to_end(&mut resp);
        assert!(resp.starts_with(b"HTTP/1.1 431 "));
    });
}

#[test]
fn frames_whose_lengths_lie_and_clients_that_vanish_or_reset() {
    let broker = hostile_broker();
    survives(&broker, "lying lengths", |addr| {
        // Claims 60 KB, sends 10 bytes, then goes quiet: the pong timeout ends it.
        let mut s = open_ws(addr);
        let mut frame = encode_client_frame(true, OpCode::Text, &[b'a'; 60_000], KEY);
        frame.truncate(24);
        s.write_all(&frame).expect("write");
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        // Claims 2^40 bytes: over the limit at once.
        let mut s = open_ws(addr);
        s.write_all(&[0x82, 0xff, 0, 0, 1, 0, 0, 0, 0, 0, 1, 2, 3, 4])
            .expect("write");
        let (op, payload) = util::read_frame(&mut s);
        assert_eq!((op, util::close_code(&payload)), (8, 1009));
    });
    survives(&broker, "vanish mid-frame", |addr| {
        for _ in 0..20 {
            let mut s = open_ws(addr);
            let frame = encode_client_frame(
                true,
                OpCode::Text,
                b"{\"op\":\"subscribe\",\"topics\":[\"a\"]}",
                KEY,
            );
            s.write_all(&frame[..frame.len() / 2]).expect("write");
        }
    });
    survives(&broker, "reset", |addr| {
        for _ in 0..20 {
            let s = open_ws(addr);
            let sock = socket2::Socket::from(s);
            sock.set_linger(Some(Duration::ZERO)).expect("linger 0");
            drop(sock); // RST
        }
    });
}

#[test]
fn clients_that_never_read_are_dropped() {
    let broker = hostile_broker();
    survives(&broker, "never read", |addr| {
        let readers: Vec<TcpStream> = (0..5)
            .map(|_| {
                let mut s = util::raw(addr);
                s.write_all(util::upgrade_request("/ws?subscribe=n/%23").as_bytes())
                    .expect("write");
                s
            })
            .collect();
        let payload = format!("\"{}\"", "z".repeat(8000));
        let publisher = broker.publisher();
        for i in 0..2000 {
            let _ = publisher.publish(&format!("n/{}", i % 50), payload.as_bytes());
        }
        b::eventually(Duration::from_secs(10), "never-readers closed", || {
            broker.stats().slow_consumers_closed >= 5
        });
        drop(readers);
    });
}

#[test]
fn ping_and_subscribe_floods_are_closed() {
    let broker = hostile_broker();
    survives(&broker, "ping flood", |addr| {
        let mut s = open_ws(addr);
        let flood: Vec<u8> = (0..200)
            .flat_map(|_| encode_client_frame(true, OpCode::Ping, b"", KEY))
            .collect();
        let _ = s.write_all(&flood);
        loop {
            let (op, payload) = util::read_frame(&mut s);
            if op == 8 {
                assert_eq!(util::close_code(&payload), 1008);
                break;
            }
        }
    });
    survives(&broker, "subscribe flood", |addr| {
        let mut s = open_ws(addr);
        let one = encode_client_frame(
            true,
            OpCode::Text,
            br#"{"op":"subscribe","topics":["f/+"]}"#,
            KEY,
        );
        let flood: Vec<u8> = (0..500).flat_map(|_| one.clone()).collect();
        let _ = s.write_all(&flood);
        loop {
            let (op, payload) = util::read_frame(&mut s);
            if op == 8 {
                assert_eq!(util::close_code(&payload), 1008);
                break;
            }
        }
    });
}

#[test]
fn invalid_utf8_everywhere() {
    let broker = hostile_broker();
    survives(&broker, "invalid UTF-8", |addr| {
        // In the request target and a header: refused or ignored, never a crash.
        for req in [
            b"GET /ws?subscribe=\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            b"GET /ws HTTP/1.1\r\nHost: \xc3\x28\r\nUpgrade: websocket\r\n\r\n".to_vec(),
        ] {
            let mut s = util::raw(addr);
            s.write_all(&req).expect("write");
            let mut resp = Vec::new();
            let _ = s.read_to_end(&mut resp);
            assert!(
                resp.starts_with(b"HTTP/1.1 4"),
                "{}",
                String::from_utf8_lossy(&resp)
            );
        }
        // In a text frame, in a close reason, in a fragment boundary.
        for frames in [
            encode_client_frame(true, OpCode::Text, b"{\"op\":\"\xff\"}", KEY),
            encode_client_frame(true, OpCode::Close, b"\x03\xe8\xc3\x28", KEY),
            [
                encode_client_frame(false, OpCode::Text, b"\xe2\x82", KEY),
                encode_client_frame(true, OpCode::Continuation, b"x", KEY),
            ]
            .concat(),
        ] {
            let mut s = open_ws(addr);
            s.write_all(&frames).expect("write");
            let (op, payload) = util::read_frame(&mut s);
            assert_eq!((op, util::close_code(&payload)), (8, 1007));
        }
        // Through the local API: a body that is not UTF-8, a topic that is not.
        let local = b::local(&broker);
        assert_eq!(b::http(local, "POST", "/publish", &[], b"\xff\xfe").0, 400);
        assert_eq!(
            b::http(local, "POST", "/publish?topic=%ff", &[], b"1").0,
            400
        );
    });
}
