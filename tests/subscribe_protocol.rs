//! The subscriber protocol: round trips with `id` echo, subscribe at connect, the subprotocol,
//! and every bad request answered with its documented error while the connection stays open.

mod util;
use serde_json::json;
use tungstenite::Message;
use util::broker as b;

#[test]
fn subscribe_unsubscribe_ping_echo_the_id() {
    let broker = b::start(|_| {});
    let mut sub = b::Sub::connect(&broker, "");
    sub.send(json!({"op": "subscribe", "topics": ["quotes/AAPL", "quotes/+"], "id": 7}));
    assert_eq!(
        b::sans_epoch(sub.next()),
        json!({"type": "subscribed", "topics": ["quotes/AAPL", "quotes/+"], "id": 7})
    );
    sub.send(json!({"op": "unsubscribe", "topics": ["quotes/AAPL"], "id": "u-1"}));
    assert_eq!(
        sub.next(),
        json!({"type": "unsubscribed", "topics": ["quotes/AAPL"], "id": "u-1"})
    );
    sub.send(json!({"op": "ping", "id": {"n": 3}}));
    assert_eq!(sub.next(), json!({"type": "pong", "id": {"n": 3}}));
    sub.send(json!({"op": "ping"}));
    assert_eq!(sub.next(), json!({"type": "pong"}));
}

#[test]
fn subscribe_at_connect_is_one_subscribed_message() {
    let broker = b::start(|_| {});
    let mut sub = b::Sub::connect(&broker, "?subscribe=quotes/AAPL,quotes/%2B");
    assert_eq!(
        b::sans_epoch(sub.next()),
        json!({"type": "subscribed", "topics": ["quotes/AAPL", "quotes/+"]})
    );
    b::publish(&broker, "quotes/MSFT", "{\"bid\":1}");
    let m = sub.next();
    assert_eq!(
        (m["topic"].as_str(), m["seq"].as_u64()),
        (Some("quotes/MSFT"), Some(1))
    );
}

#[test]
fn the_tickwire_subprotocol_is_answered_only_when_offered() {
    use std::io::{Read, Write};
    let broker = b::start(|_| {});
    for (offer, answer) in [("chat, tickwire.v1", true), ("chat", false)] {
        let mut s = std::net::TcpStream::connect(broker.public_addr()).expect("connect");
        s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .expect("timeout");
        let req = format!(
            "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Protocol: {offer}\r\n\r\n"
        );
        s.write_all(req.as_bytes()).expect("write");
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut byte).expect("response");
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head);
        assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
        assert_eq!(
            head.contains("Sec-WebSocket-Protocol: tickwire.v1\r\n"),
            answer,
            "{head}"
        );
        assert!(!head.contains("chat"), "{head}");
    }
}

#[test]
fn bad_requests_get_errors_and_the_connection_stays_open() {
    let broker = b::start(|c| c.max_subscriptions = 3);
    let mut sub = b::Sub::connect(&broker, "");
    let cases = [
        ("{not json".to_owned(), "bad_json", None),
        (
            r#"{"op":"dance","id":5}"#.to_owned(),
            "unknown_op",
            Some(json!(5)),
        ),
        (
            r#"{"op":"subscribe","topics":["quotes//AAPL"],"id":1}"#.to_owned(),
            "invalid_topic",
            Some(json!(1)),
        ),
        (
            r#"{"op":"subscribe","id":2}"#.to_owned(),
            "bad_request",
            Some(json!(2)),
        ),
        (
            r#"{"op":"subscribe","topics":["a","b","c","d"],"id":3}"#.to_owned(),
            "too_many_subscriptions",
            Some(json!(3)),
        ),
    ];
    for (text, code, id) in &cases {
        sub.ws.send(Message::Text(text.clone())).expect("send");
        let m = sub.next();
        assert_eq!(m["type"], "error", "{text}");
        assert_eq!(m["code"], *code, "{text}: {m}");
        assert!(m["message"].as_str().is_some_and(|s| !s.is_empty()));
        assert_eq!(m.get("id").cloned(), id.clone(), "{text}");
        sub.sync();
    }
    let m = {
        sub.send(json!({"op":"subscribe","topics":["quotes//AAPL"]}));
        sub.next()
    };
    assert_eq!(m["message"], "topic level is empty: 'quotes//AAPL'");
    sub.ws.send(Message::Binary(vec![1, 2, 3])).expect("send");
    assert_eq!(sub.next()["code"], "bad_request");
    sub.sync();
    // A too-many request subscribed to nothing: three fit afterwards.
    sub.subscribe(&["a", "b", "c"]);
    for (code, at_least) in [
        ("bad_json", 1),
        ("unknown_op", 1),
        ("invalid_topic", 2),
        ("bad_request", 2),
        ("too_many_subscriptions", 1),
    ] {
        let n = b::metric(
            &broker,
            &format!("tickwire_client_errors_total{{code=\"{code}\"}}"),
        );
        assert!(n >= at_least, "{code}: {n}");
    }
}

#[test]
fn a_message_over_the_client_limit_closes_with_1009() {
    let broker = b::start(|c| c.max_client_message = 1024);
    let mut sub = b::Sub::connect(&broker, "");
    sub.ws.send(Message::Text("x".repeat(2000))).expect("send");
    loop {
        match sub.ws.read() {
            Ok(Message::Close(Some(f))) => {
                assert_eq!(u16::from(f.code), 1009);
                break;
            }
            Ok(_) => {}
            Err(e) => panic!("expected close 1009, got {e}"),
        }
    }
}

#[test]
fn a_request_flood_is_refused_then_closed() {
    let broker = b::start(|c| c.max_requests_per_sec = 5);
    let mut sub = b::Sub::connect(&broker, "");
    for _ in 0..20 {
        sub.ws
            .write(Message::Text(r#"{"op":"ping"}"#.into()))
            .expect("queue");
    }
    sub.ws.flush().expect("flush");
    let (mut pongs, mut limited) = (0, 0);
    let code = loop {
        match sub.ws.read() {
            Ok(Message::Text(t)) => {
                let m: serde_json::Value = serde_json::from_str(&t).expect("json");
                match m["type"].as_str() {
                    Some("pong") => pongs += 1,
                    Some("error") if m["code"] == "rate_limited" => limited += 1,
                    _ => panic!("{m}"),
                }
            }
            Ok(Message::Close(Some(f))) => break u16::from(f.code),
            Ok(_) => {}
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!((pongs, limited, code), (5, 5, 1008));
}
