//! Graceful shutdown of the broker, and the limits of the public and local listeners.

mod util;
use util::broker as b;
use util::child::Tickwire;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

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
    // Browsers always send Origin: with an allowlist, a request without one is refused too.
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.write_all(util::upgrade_request("/ws").as_bytes())
        .expect("write");
    let resp = String::from_utf8_lossy(&util::read_to_close(&mut s)).into_owned();
    assert!(resp.starts_with("HTTP/1.1 403 "), "{resp}");
    assert!(resp.contains("Origin header is required"), "{resp}");
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
    let err = second.err().expect("the port is taken").to_string();
    // The one port that failed, and the flag that moves it.
    assert!(
        err.contains(&format!(
            "cannot listen on {taken} (the public listener: choose another with --listen)"
        )),
        "{err}"
    );
    let local_taken = b::local(&first);
    let third = tickwire::Broker::builder()
        .listen("127.0.0.1:0".parse().expect("addr"))
        .local_listen(Some(local_taken))
        .start();
    let err = third.err().expect("the local port is taken").to_string();
    assert!(
        err.contains(&format!("cannot listen on {local_taken} (the local API")),
        "{err}"
    );
    assert!(err.contains("--local-listen"), "{err}");
}

/// SIGTERM with a client that never reads and never answers the close handshake: the whole stop
/// (refusing publications, close 1001, waiting for close replies, joining) fits in 5 s.
#[test]
fn sigterm_exits_within_5_s_even_with_a_client_that_never_answers() {
    let mut t = Tickwire::start("stopping", &["--workers", "2"]);
    // A raw upgrade that never reads again, and a subscriber with a backlog it will not read.
    let mut raw = util::raw(t.public);
    raw.write_all(util::upgrade_request("/ws?subscribe=q/%23").as_bytes())
        .expect("upgrade");
    b::eventually(Duration::from_secs(5), "subscribed", || {
        b::metric_at(t.local, "tickwire_subscriptions") == 1
    });
    for i in 0..50 {
        b::publish_at(
            t.local,
            &format!("q/{i}"),
            &format!("\"{}\"", "p".repeat(4000)),
        );
    }
    let started = Instant::now();
    t.terminate();
    let status = t
        .wait_exit(Duration::from_secs(10))
        .expect("an exit after SIGTERM");
    let took = started.elapsed();
    eprintln!("stopped in {took:?} with a client that never answers");
    assert!(status.success(), "{status}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    drop(raw);
}

/// A publish request already being read when SIGTERM comes is answered (503 "shutting down",
/// `Connection: close`), not cut off.
#[test]
fn a_request_in_flight_at_shutdown_is_answered() {
    let mut t = Tickwire::start("in-flight", &["--workers", "1"]);
    let mut s = util::raw(t.local);
    s.write_all(
        b"POST /publish?topic=late/x HTTP/1.1\r\nHost: x\r\nContent-Length: 7\r\n\r\n{\"a\"",
    )
    .expect("head");
    // Make sure the worker has read the first part.
    b::eventually(Duration::from_secs(5), "the request is being read", || {
        b::metric_at(t.local, "tickwire_connections") >= 2
    });
    t.terminate();
    std::thread::sleep(Duration::from_millis(200));
    s.write_all(b":1}").expect("the rest of the body");
    let resp = String::from_utf8_lossy(&util::read_to_close(&mut s)).into_owned();
    assert!(resp.starts_with("HTTP/1.1 503 "), "{resp}");
    assert!(resp.contains("shutting down"), "{resp}");
    assert!(resp.contains("Connection: close"), "{resp}");
    assert!(t.wait_exit(Duration::from_secs(10)).is_some());
}
