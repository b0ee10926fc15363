//! Graceful shutdown of the broker, and the limits of the public and local listeners.

mod util;
use std::io::{Read, Write};
use util::broker as b;

use tickwire::PublishError;
use tungstenite::Message;

#[test]
fn shutdown_delivers_what_was_accepted_then_closes_with_1001() {
    let broker = b::start(|_| {});
    let mut sub = b::Sub::connect(&broker, "");
    sub.subscribe(&["s/#"]);
    let publisher = broker.publisher();
    for i in 1..=500u64 {
        assert_eq!(publisher.publish("s/x", i.to_string().as_bytes()), Ok(i));
    }
    let stopper = std::thread::spawn(move || broker.shutdown());
    for i in 1..=500u64 {
        assert_eq!(
            sub.next()["seq"],
            i,
            "accepted publications are delivered before the close"
        );
    }
    loop {
        match sub.ws.read() {
            Ok(Message::Close(Some(f))) => {
                assert_eq!(u16::from(f.code), 1001);
                break;
            }
            Ok(Message::Ping(_)) => {}
            other => panic!("expected close 1001, got {other:?}"),
        }
    }
    let _ = sub.ws.flush();
    stopper.join().expect("shutdown returns");
    assert_eq!(
        publisher.publish("s/x", b"1"),
        Err(PublishError::ShuttingDown)
    );
}

#[test]
fn forbidden_origins_get_403() {
    let broker = b::start(|c| c.allowed_origins = vec!["https://board.example".into()]);
    let addr = broker.public_addr();
    let upgrade = |origin: &str| {
        let mut s = std::net::TcpStream::connect(addr).expect("connect");
        let req = format!(
            "GET /ws HTTP/1.1\r\nHost: x\r\nOrigin: {origin}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        s.write_all(req.as_bytes()).expect("write");
        let mut head = [0u8; 12];
        s.read_exact(&mut head).expect("status line");
        String::from_utf8_lossy(&head[9..12]).into_owned()
    };
    assert_eq!(upgrade("https://evil.example"), "403");
    assert_eq!(upgrade("https://board.example"), "101");
    assert!(b::metric(&broker, "tickwire_http_errors_total{status=\"403\"}") >= 1);
}

#[test]
fn a_body_over_8_mib_is_refused_before_it_is_read() {
    let broker = b::start(|_| {});
    let mut s = std::net::TcpStream::connect(b::local(&broker)).expect("connect");
    s.write_all(b"POST /publish?topic=a HTTP/1.1\r\nHost: x\r\nContent-Length: 9000000\r\n\r\n")
        .expect("write");
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("response");
    assert!(resp.starts_with("HTTP/1.1 413 "), "{resp}");
    assert!(resp.contains("over the limit"), "{resp}");
    assert_eq!(b::metric(&broker, "tickwire_handshake_errors_total"), 1);
}

#[test]
fn a_second_broker_on_the_same_port_fails_to_start() {
    let first = b::start(|_| {});
    let taken = first.public_addr();
    let second = tickwire::Broker::builder()
        .listen(taken)
        .local_listen(None)
        .start();
    let err = second.err().expect("the port is taken");
    assert!(err.to_string().contains("cannot listen"), "{err}");
}
