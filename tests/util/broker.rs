//! Helpers for broker tests: a broker on free ports, subscriber clients that speak JSON, and a
//! tiny HTTP client for the local API.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::{json, Value};
use tickwire::{Broker, Config};
use tungstenite::Message;

/// A broker on 127.0.0.1 free ports for both listeners, two workers, adjusted by `f`.
pub fn start(f: impl FnOnce(&mut Config)) -> Broker {
    Broker::builder()
        .listen("127.0.0.1:0".parse().expect("addr"))
        .local_listen(Some("127.0.0.1:0".parse().expect("addr")))
        .workers(2)
        .configure(f)
        .start()
        .expect("broker starts")
}

pub fn local(broker: &Broker) -> SocketAddr {
    broker.local_addr().expect("local listener")
}

/// A subscriber connection.
pub struct Sub {
    pub ws: tungstenite::WebSocket<TcpStream>,
}

impl Sub {
    pub fn connect(broker: &Broker, query: &str) -> Sub {
        Self::connect_to(broker.public_addr(), &format!("/ws{query}"))
    }

    pub fn connect_to(addr: SocketAddr, path: &str) -> Sub {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let (ws, _) = tungstenite::client(format!("ws://{addr}{path}"), stream).expect("handshake");
        Sub { ws }
    }

    pub fn send(&mut self, v: Value) {
        self.ws.send(Message::Text(v.to_string())).expect("send");
    }

    /// The next JSON text message (pings skipped).
    pub fn next(&mut self) -> Value {
        next_json(&mut self.ws)
    }

    /// The next message, or `None` if nothing arrives within `wait`.
    pub fn next_within(&mut self, wait: Duration) -> Option<Value> {
        self.ws
            .get_ref()
            .set_read_timeout(Some(wait))
            .expect("timeout");
        let got = loop {
            match self.ws.read() {
                Ok(Message::Text(t)) => break Some(serde_json::from_str(&t).expect("JSON")),
                Ok(Message::Ping(_) | Message::Pong(_)) => continue,
                Ok(other) => panic!("unexpected {other:?}"),
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break None
                }
                Err(e) => panic!("read: {e}"),
            }
        };
        self.ws
            .get_ref()
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        got
    }

    /// Subscribes and checks the `subscribed` answer; returns the feed's epoch from it.
    pub fn subscribe(&mut self, topics: &[&str]) -> String {
        self.send(json!({"op": "subscribe", "topics": topics, "id": 1}));
        let ack = self.next();
        let epoch = ack["epoch"]
            .as_str()
            .expect("the ack carries the epoch")
            .to_owned();
        assert_eq!(
            ack,
            json!({"type": "subscribed", "topics": topics, "epoch": epoch, "id": 1})
        );
        epoch
    }

    /// Proves that nothing was delivered before now: publishes a sentinel to `topic` (which this
    /// subscriber must be subscribed to, its snapshot if any already read) and asserts it is the
    /// next message. Publications reach a worker in the order they were published, so anything
    /// published earlier and wrongly delivered would come first.
    pub fn expect_nothing_before_sentinel(&mut self, broker: &Broker, topic: &str) {
        let marker = fastrand::u64(..);
        let (status, _) = publish(broker, topic, &format!("{{\"sentinel\":{marker}}}"));
        assert_eq!(status, 202, "sentinel published");
        let m = self.next();
        assert_eq!(
            (m["topic"].as_str(), &m["data"]),
            (Some(topic), &json!({ "sentinel": marker })),
            "expected nothing but the sentinel, got {m}"
        );
    }

    /// A ping round trip: everything sent before it has been handled.
    pub fn sync(&mut self) {
        self.send(json!({"op": "ping", "id": "sync"}));
        loop {
            let m = self.next();
            if m["type"] == "pong" {
                return;
            }
        }
    }
}

/// A streaming publisher (`ws://LOCAL/publish`): one `{"topic":..,"data":..}` per text frame.
pub struct StreamPublisher {
    client: Sub,
    next_id: u64,
}

impl StreamPublisher {
    pub fn connect(local: SocketAddr) -> StreamPublisher {
        StreamPublisher {
            client: Sub::connect_to(local, "/publish"),
            next_id: 0,
        }
    }

    /// Sends without an `id`: no answer unless it is refused.
    pub fn send(&mut self, topic: &str, data: &Value) {
        self.client.send(json!({"topic": topic, "data": data}));
    }

    /// Sends with `id`, without waiting for its answer.
    pub fn send_with_id(&mut self, topic: &str, data: &Value, id: u64) {
        self.client
            .send(json!({"topic": topic, "data": data, "id": id}));
    }

    /// The answer to one publication: `published` (with its seq) or `error`.
    pub fn publish(&mut self, topic: &str, data: &Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        self.send_with_id(topic, data, id);
        let answer = self.answer();
        assert_eq!(answer["id"], json!(id), "answers come in order: {answer}");
        answer
    }

    /// The next answer (an ack or an error).
    pub fn answer(&mut self) -> Value {
        self.client.next()
    }

    /// The next answer, or `None` if none comes within `wait`.
    pub fn answer_within(&mut self, wait: Duration) -> Option<Value> {
        self.client.next_within(wait)
    }
}

/// A `msg` as a subscriber got it: (topic, seq, data).
pub type Msg = (String, u64, Value);

pub fn as_msg(m: &Value) -> Msg {
    assert_eq!(m["type"], "msg", "only messages expected here: {m}");
    (
        m["topic"].as_str().expect("topic").to_owned(),
        m["seq"].as_u64().expect("seq"),
        m["data"].clone(),
    )
}

/// Reads `msg`s until `count` have arrived.
pub fn collect(sub: &mut Sub, count: usize) -> Vec<Msg> {
    (0..count).map(|_| as_msg(&sub.next())).collect()
}

/// A metric's value in a `/metrics` answer (`name` with labels, exactly as printed).
pub fn metric_in(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no metric {name}"))
        .trim()
        .parse()
        .expect("a number")
}

/// A `subscribed` ack without its `epoch` (checked to be a string), to compare with the rest.
pub fn sans_epoch(mut ack: Value) -> Value {
    if ack["type"] == "subscribed" {
        let epoch = ack
            .as_object_mut()
            .and_then(|o| o.remove("epoch"))
            .expect("a subscribed ack carries the epoch");
        assert!(epoch.is_string(), "epoch {epoch}");
    }
    ack
}

/// One HTTP/1.1 request on a connection of its own (`Connection: close`, so the answer ends
/// where the connection does); returns (status, headers, body).
pub fn http(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut req = format!(
        "{method} {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).expect("write head");
    s.write_all(body).expect("write body");
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).expect("read response");
    let resp = String::from_utf8_lossy(&resp).into_owned();
    let (head, body) = resp.split_once("\r\n\r\n").expect("a response head");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    (status, head.to_owned(), body.to_owned())
}

pub fn publish(broker: &Broker, topic: &str, body: &str) -> (u16, Value) {
    publish_at(local(broker), topic, body)
}

/// `POST /publish?topic=` to the local API at `local`; (status, JSON answer).
pub fn publish_at(local: SocketAddr, topic: &str, body: &str) -> (u16, Value) {
    let (status, _, body) = http(
        local,
        "POST",
        &format!("/publish?topic={topic}"),
        &[],
        body.as_bytes(),
    );
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// The value of a metric line (`name` with labels, exactly as printed).
pub fn metric(broker: &Broker, name: &str) -> u64 {
    metric_at(local(broker), name)
}

/// [`metric`] from the local API at `local`.
pub fn metric_at(local: SocketAddr, name: &str) -> u64 {
    let (status, _, text) = http(local, "GET", "/metrics", &[], b"");
    assert_eq!(status, 200);
    metric_in(&text, name)
}

#[allow(unused_imports)] // not every test crate waits
pub use super::eventually;

/// The next JSON text message on any client socket, plain or TLS (pings and pongs skipped).
pub fn next_json<S: std::io::Read + std::io::Write>(ws: &mut tungstenite::WebSocket<S>) -> Value {
    loop {
        match ws.read().expect("read a message") {
            Message::Text(t) => return serde_json::from_str(&t).expect("server sends JSON"),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}
