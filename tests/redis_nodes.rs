//! Several `tickwire` nodes sharing one feed through a real `redis-server` (issue 8).
//!
//! Three nodes, subscribers on each, publishers on two of them at once (HTTP, NDJSON batch,
//! streaming WebSocket): every subscriber gets every message of its topics, in order, with the
//! same seq and payload as everyone else and as the publisher was told. A node started late
//! serves the current snapshots. Then Redis is killed: every node answers `/healthz` with 503
//! and the reason, refuses publications with 503 `unavailable`, and keeps answering its
//! subscribers. Redis comes back empty on the same port: the nodes reconnect, give it back the
//! seqs it lost, and a new publication reaches every node with the next seq.
//!
//! Needs `/usr/bin/redis-server` (Debian's `redis-server`; `tests/run_all.sh` installs it).
//! Everything runs on loopback and is stopped by Drop guards.
#![cfg(feature = "redis")]

mod util;
use util::broker as b;
use util::child::Tickwire;
use util::redis as redis_server;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::thread;

use b::{collect, eventually, http, Msg, StreamPublisher, Sub};
use redis_server::{free_port, resp, RedisServer, Scratch, WAIT};
use serde_json::{json, Value};
use tickwire::PublishError;

/// A `tickwire` process connected to Redis.
struct Node {
    name: &'static str,
    /// Killed (and its log shown if the test failed) when the node is dropped.
    _process: Tickwire,
    public: SocketAddr,
    local: SocketAddr,
}

impl Node {
    fn start(name: &'static str, redis: &RedisServer) -> Node {
        let url = redis.url();
        let process = Tickwire::start(name, &["--workers", "2", "--redis", &url]);
        let node = Node {
            name,
            public: process.public,
            local: process.local,
            _process: process,
        };
        eventually(WAIT, &format!("{name} is healthy"), || {
            node.healthz().0 == 200
        });
        node
    }

    fn healthz(&self) -> (u16, Value) {
        let (status, _, body) = http(self.local, "GET", "/healthz", &[], b"");
        (status, serde_json::from_str(&body).unwrap_or(Value::Null))
    }

    fn publish(&self, topic: &str, data: &Value) -> (u16, Value) {
        let (status, _, body) = http(
            self.local,
            "POST",
            &format!("/publish?topic={topic}"),
            &[],
            data.to_string().as_bytes(),
        );
        (status, serde_json::from_str(&body).unwrap_or(Value::Null))
    }

    fn metric(&self, name: &str) -> u64 {
        let (status, _, text) = http(self.local, "GET", "/metrics", &[], b"");
        assert_eq!(status, 200, "{}: /metrics", self.name);
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("{}: no metric {name}", self.name))
            .trim()
            .parse()
            .expect("a number")
    }

    fn subscriber(&self, topics: &[&str]) -> Sub {
        let mut sub = Sub::connect_to(self.public, "/ws");
        sub.subscribe(topics);
        sub
    }

    fn topics(&self) -> HashMap<String, u64> {
        let (status, _, body) = http(self.local, "GET", "/topics", &[], b"");
        assert_eq!(status, 200);
        let v: Value = serde_json::from_str(&body).expect("JSON");
        v["topics"]
            .as_array()
            .expect("topics")
            .iter()
            .map(|t| {
                (
                    t["topic"].as_str().expect("topic").to_owned(),
                    t["seq"].as_u64().expect("seq"),
                )
            })
            .collect()
    }
}

/// A ping is answered next, with nothing before it.
fn answers_ping(sub: &mut Sub, what: &str) {
    sub.send(json!({"op": "ping", "id": what}));
    let m = sub.next();
    assert_eq!(m, json!({"type": "pong", "id": what}), "{what}");
}

#[test]
fn nodes_share_one_feed_through_redis_and_ride_out_its_restart() {
    let scratch = Scratch::new("nodes");
    let port = free_port();
    let mut redis = RedisServer::start(port, &scratch.0);
    let a = Node::start("node-a", &redis);
    let bn = Node::start("node-b", &redis);

    // Subscribers on both nodes, exact and wildcard, before anything is published.
    let mut subs: Vec<(&str, Sub, Vec<&str>)> = vec![
        (
            "a1",
            a.subscriber(&["quotes/AAPL", "quotes/MSFT"]),
            vec!["quotes/AAPL", "quotes/MSFT"],
        ),
        ("a2", a.subscriber(&["fx/+"]), vec!["fx/EURUSD"]),
        (
            "b1",
            bn.subscriber(&["quotes/#"]),
            vec!["quotes/AAPL", "quotes/MSFT"],
        ),
        (
            "b2",
            bn.subscriber(&["quotes/AAPL", "fx/EURUSD"]),
            vec!["quotes/AAPL", "fx/EURUSD"],
        ),
    ];

    // Two publishers at once on two nodes, both on quotes/AAPL: Redis decides the order.
    const N: u64 = 100;
    let a_local = a.local;
    let over_http = thread::spawn(move || {
        let mut told = Vec::new();
        for i in 0..N {
            for topic in ["quotes/AAPL", "fx/EURUSD"] {
                let data = json!({"from": "a", "i": i, "topic": topic});
                let (status, _, body) = http(
                    a_local,
                    "POST",
                    &format!("/publish?topic={topic}"),
                    &[],
                    data.to_string().as_bytes(),
                );
                assert_eq!(status, 202, "{body}");
                let seq = serde_json::from_str::<Value>(&body).expect("JSON")["seq"]
                    .as_u64()
                    .expect("seq");
                told.push((topic.to_owned(), seq, data));
            }
        }
        // All or nothing, through one script call.
        let batch = [
            json!({"topic": "fx/EURUSD", "data": {"batch": 1}}),
            json!({"topic": "quotes/MSFT", "data": {"batch": 2}}),
            json!({"topic": "fx/EURUSD", "data": {"batch": 3}}),
            json!({"topic": "quotes/MSFT", "data": {"batch": 4}}),
        ]
        .map(|v| v.to_string())
        .join("\n");
        let (status, _, body) = http(
            a_local,
            "POST",
            "/publish",
            &[("Content-Type", "application/x-ndjson")],
            batch.as_bytes(),
        );
        assert_eq!((status, body.trim()), (202, r#"{"published":4}"#));
        told
    });
    let mut streaming = StreamPublisher::connect(bn.local);
    let mut told = Vec::new();
    for i in 0..N {
        for topic in ["quotes/AAPL", "quotes/MSFT"] {
            let data = json!({"from": "b", "i": i, "topic": topic});
            let ack = streaming.publish(topic, &data);
            assert_eq!(ack["type"], "published", "{ack}");
            told.push((topic.to_owned(), ack["seq"].as_u64().expect("seq"), data));
        }
    }
    told.extend(over_http.join().expect("HTTP publisher"));

    let totals: HashMap<&str, u64> = [
        ("quotes/AAPL", 2 * N),
        ("quotes/MSFT", N + 2),
        ("fx/EURUSD", N + 2),
    ]
    .into();
    // What every subscriber must agree on: (topic, seq) -> data.
    let mut agreed: HashMap<(String, u64), Value> = HashMap::new();
    for (topic, seq, data) in &told {
        let before = agreed.insert((topic.clone(), *seq), data.clone());
        assert!(
            before.is_none(),
            "two publications told seq {seq} on {topic}"
        );
    }
    for (name, sub, topics) in &mut subs {
        let expected: u64 = topics.iter().map(|t| totals[t]).sum();
        let got = collect(sub, expected as usize);
        for topic in topics.iter() {
            let seqs: Vec<u64> = got.iter().filter(|m| m.0 == *topic).map(|m| m.1).collect();
            let every: Vec<u64> = (1..=totals[topic]).collect();
            assert_eq!(seqs, every, "{name}: every seq of {topic}, in order");
        }
        for (topic, seq, data) in got {
            let key = (topic.clone(), seq);
            match agreed.get(&key) {
                Some(d) => assert_eq!(&data, d, "{name}: {topic} seq {seq}"),
                None => {
                    agreed.insert(key, data);
                }
            }
        }
    }

    // A node started now serves the current snapshots, and lists the same seqs.
    let c = Node::start("node-c", &redis);
    let mut c1 = Sub::connect_to(c.public, "/ws");
    c1.subscribe(&["quotes/AAPL", "fx/EURUSD"]);
    for (topic, seq, data) in collect(&mut c1, 2) {
        assert_eq!(seq, totals[topic.as_str()], "snapshot seq of {topic}");
        assert_eq!(Some(&data), agreed.get(&(topic.clone(), seq)), "{topic}");
    }
    let want: HashMap<String, u64> = totals.iter().map(|(t, n)| (t.to_string(), *n)).collect();
    for node in [&a, &bn, &c] {
        eventually(WAIT, &format!("{} lists every topic", node.name), || {
            node.topics() == want
        });
    }

    // Bytes on our channels that are not a publication are counted and go nowhere.
    let published = resp(
        port,
        &[
            b"PUBLISH",
            b"tickwire:quotes/AAPL",
            b"not a tickwire message",
        ],
    )
    .expect("PUBLISH");
    assert_eq!(published, b":3\r\n", "three nodes are subscribed");
    for node in [&a, &bn, &c] {
        eventually(
            WAIT,
            &format!("{} counts the bad message", node.name),
            || node.metric("tickwire_redis_bad_messages_total") == 1,
        );
    }

    // Redis goes away.
    redis.kill();
    for node in [&a, &bn, &c] {
        eventually(WAIT, &format!("{} reports unhealthy", node.name), || {
            node.healthz().0 == 503
        });
        let (_, body) = node.healthz();
        assert_eq!(body["status"], "unhealthy", "{}: {body}", node.name);
        let reason = body["reason"].as_str().expect("a reason");
        assert!(reason.starts_with("redis: "), "{}: {reason}", node.name);
        assert_eq!(node.metric("tickwire_redis_up"), 0);
    }
    let (status, body) = a.publish("quotes/AAPL", &json!({"while": "down"}));
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["code"], "unavailable", "{body}");
    assert!(
        body["error"].as_str().expect("error").contains("redis"),
        "{body}"
    );
    let answer = streaming.publish("quotes/AAPL", &json!({"while": "down"}));
    assert_eq!(
        (answer["type"].as_str(), answer["code"].as_str()),
        (Some("error"), Some("unavailable")),
        "{answer}"
    );
    assert!(a.metric("tickwire_publish_rejected_total{reason=\"unavailable\"}") >= 1);
    assert!(a.metric("tickwire_redis_publish_errors_total") >= 1);
    // Every subscriber is still served, and got nothing of the refused publications.
    for (name, sub, _) in &mut subs {
        answers_ping(sub, name);
    }
    answers_ping(&mut c1, "c1");

    // Every node answers with the feed's one epoch.
    let epoch = Sub::connect_to(a.public, "/ws").subscribe(&["epoch/x"]);
    for node in [&bn, &c] {
        assert_eq!(
            Sub::connect_to(node.public, "/ws").subscribe(&["epoch/x"]),
            epoch
        );
    }

    // Redis comes back on the same port, empty (nothing was saved).
    redis.restart();
    for node in [&a, &bn, &c] {
        eventually(WAIT, &format!("{} is healthy again", node.name), || {
            node.healthz().0 == 200
        });
        assert!(node.metric("tickwire_redis_reconnects_total") >= 1);
        assert_eq!(node.metric("tickwire_redis_up"), 1);
    }
    // The nodes gave Redis back the seqs it lost (the first one to reconnect did all three).
    let restored: u64 = [&a, &bn, &c]
        .iter()
        .map(|n| n.metric("tickwire_redis_reconciled_total"))
        .sum();
    assert_eq!(restored, 3);

    // Delivery resumes everywhere, with the seq after the last one before the restart.
    let data = json!({"after": "restart"});
    let ack = streaming.publish("quotes/AAPL", &data);
    let seq = 2 * N + 1;
    assert_eq!(ack["seq"], json!(seq), "{ack}");
    for (name, sub, topics) in &mut subs {
        if topics.contains(&"quotes/AAPL") {
            let got = collect(sub, 1);
            assert_eq!(
                got,
                [("quotes/AAPL".to_owned(), seq, data.clone())],
                "{name}"
            );
        }
    }
    assert_eq!(
        collect(&mut c1, 1),
        [("quotes/AAPL".to_owned(), seq, data.clone())]
    );

    // The nodes were connected until Redis went away and gave it back every seq: no seq was
    // lost, so the epoch stays, on every node.
    for node in [&a, &bn, &c] {
        assert_eq!(
            Sub::connect_to(node.public, "/ws").subscribe(&["epoch/x"]),
            epoch,
            "{}",
            node.name
        );
    }

    // A node started after the restart still gets the snapshots of topics not published since.
    let d = Node::start("node-d", &redis);
    let mut d1 = Sub::connect_to(d.public, "/ws");
    d1.subscribe(&["quotes/MSFT"]);
    let snapshot = collect(&mut d1, 1);
    let msft = totals["quotes/MSFT"];
    assert_eq!(
        snapshot,
        [(
            "quotes/MSFT".to_owned(),
            msft,
            agreed[&("quotes/MSFT".to_owned(), msft)].clone()
        )]
    );

    // Nothing was dropped as stale that should not have been: each node saw each publication
    // once on the channel (duplicates only come from reloads).
    for node in [&a, &bn, &c, &d] {
        assert_eq!(
            node.metric("tickwire_internal_errors_total"),
            0,
            "{}",
            node.name
        );
    }
}

/// A subscriber of one node reconnects to another: the epoch is Redis's, the same on both, and
/// every node kept the same history, so it recovers there.
#[test]
fn a_subscriber_recovers_on_another_node() {
    let _scratch = Scratch::new("recover-across");
    let redis = RedisServer::start(free_port(), &_scratch.0);
    let a = Node::start("node-a", &redis);
    let bn = Node::start("node-b", &redis);
    let mut sub = Sub::connect_to(a.public, "/ws");
    let epoch = sub.subscribe(&["across/x"]);
    for n in 1..=5 {
        assert_eq!(a.publish("across/x", &json!(n)).0, 202);
    }
    let got = collect(&mut sub, 5);
    assert_eq!(got.last().map(|m| m.1), Some(5));
    drop(sub);
    for n in 6..=9 {
        assert_eq!(a.publish("across/x", &json!(n)).0, 202);
    }
    // Node b has seen every publication too (it delivers what comes back from Redis).
    eventually(WAIT, "node b has seq 9", || {
        bn.topics().get("across/x") == Some(&9)
    });
    let mut back = Sub::connect_to(bn.public, "/ws");
    back.send(json!({"op": "subscribe", "topics": ["across/x"],
                     "since": {"across/x": 5}, "epoch": epoch, "id": 2}));
    let ack = back.next();
    assert_eq!(ack["epoch"], json!(epoch), "{ack}");
    assert_eq!(ack["recovered"], json!(["across/x"]), "{ack}");
    let replayed = collect(&mut back, 4);
    let seqs: Vec<u64> = replayed.iter().map(|m| m.1).collect();
    assert_eq!(seqs, [6, 7, 8, 9]);
    assert_eq!(bn.publish("across/x", &json!(10)).0, 202);
    assert_eq!(collect(&mut back, 1)[0].1, 10);
}

#[test]
fn an_in_process_broker_publishes_through_redis_and_waits_for_it() {
    let scratch = Scratch::new("in-process");
    let port = free_port();
    // Started before Redis: it comes up anyway, unhealthy, refusing publications.
    let broker = b::start(|c| c.redis = Some(format!("redis://127.0.0.1:{port}")));
    let publisher = broker.publisher();
    assert_eq!(
        broker.health(),
        Err("redis: connection refused".to_owned()),
        "before Redis starts"
    );
    assert!(matches!(
        publisher.publish("rust/a", b"{}"),
        Err(PublishError::Unavailable(m)) if m == "redis: connection refused"
    ));
    let mut redis = RedisServer::start(port, &scratch.0);
    eventually(WAIT, "the broker connects", || broker.health().is_ok());

    let node = Node::start("node", &redis);
    let mut remote = node.subscriber(&["rust/+"]);
    // The broker's own subscribers get its publications back through Redis, like everyone's.
    let mut own = Sub::connect(&broker, "?subscribe=rust/a,rust/b");
    assert_eq!(own.next()["type"], "subscribed");

    assert_eq!(publisher.publish("rust/a", br#"{"n":1}"#), Ok(1));
    let batch: [(&str, &[u8]); 2] = [("rust/a", br#"{"n":2}"#), ("rust/b", br#"{"n":3}"#)];
    assert_eq!(publisher.publish_batch(&batch), Ok(2));
    // One bad item: refused before Redis sees any of it.
    let bad: [(&str, &[u8]); 2] = [("rust/a", b"{}"), ("rust/+", b"{}")];
    let err = publisher.publish_batch(&bad).expect_err("refused");
    assert_eq!(err.index, 1);
    assert!(matches!(err.error, PublishError::InvalidTopic(_)));
    let expected = vec![
        ("rust/a".to_owned(), 1, json!({"n": 1})),
        ("rust/a".to_owned(), 2, json!({"n": 2})),
        ("rust/b".to_owned(), 1, json!({"n": 3})),
    ];
    assert_eq!(collect(&mut remote, 3), expected, "on the other node");
    assert_eq!(collect(&mut own, 3), expected, "on the publishing broker");

    // A batch stays all or nothing in Redis too: one topic whose seq someone overwrote with
    // garbage stops the whole batch before anything of it is written.
    resp(port, &[b"HSET", b"tickwire:seq", b"rust/corrupt", b"abc"]).expect("HSET");
    let corrupt: [(&str, &[u8]); 2] = [("rust/a", b"{}"), ("rust/corrupt", b"{}")];
    let refused = publisher.publish_batch(&corrupt).expect_err("refused");
    assert!(
        matches!(&refused.error, PublishError::Unavailable(m) if m.contains("not a whole number")),
        "{refused:?}"
    );
    let seq_a = resp(port, &[b"HGET", b"tickwire:seq", b"rust/a"]).expect("HGET");
    assert_eq!(
        redis_server::bulk(&seq_a),
        "2",
        "nothing of the batch was published"
    );
    resp(port, &[b"HDEL", b"tickwire:seq", b"rust/corrupt"]).expect("HDEL");

    // A streaming publisher that does not wait: many publications in flight to Redis at once
    // (more than a worker lets one publisher have), answered in order, delivered in order.
    let mut streaming = StreamPublisher::connect(b::local(&broker));
    const BURST: u64 = 3000;
    for i in 0..BURST {
        streaming.send("rust/burst", &json!({"i": i}));
    }
    let last = streaming.publish("rust/burst", &json!({"i": BURST}));
    assert_eq!(
        last,
        json!({"type": "published", "seq": BURST + 1, "id": 1})
    );
    let burst: Vec<Msg> = (0..=BURST)
        .map(|i| ("rust/burst".to_owned(), i + 1, json!({"i": i})))
        .collect();
    assert_eq!(
        collect(&mut remote, burst.len()),
        burst,
        "the burst, on the other node"
    );

    redis.kill();
    eventually(WAIT, "the broker notices", || broker.health().is_err());
    let refused = publisher.publish("rust/a", b"{}");
    assert!(
        matches!(&refused, Err(PublishError::Unavailable(m)) if m.starts_with("redis: ")),
        "{refused:?}"
    );
    let refused = publisher.publish_batch(&batch).expect_err("refused");
    assert!(matches!(refused.error, PublishError::Unavailable(_)));
    assert_eq!(refused.error.http_status(), 503);
    let refused = streaming.publish("rust/burst", &json!({}));
    assert_eq!(
        (refused["type"].as_str(), refused["code"].as_str()),
        (Some("error"), Some("unavailable")),
        "{refused}"
    );
    answers_ping(&mut own, "own");

    redis.restart();
    eventually(WAIT, "the broker reconnects", || broker.health().is_ok());
    eventually(WAIT, "the node reconnects", || node.healthz().0 == 200);
    assert_eq!(publisher.publish("rust/a", br#"{"n":4}"#), Ok(3));
    let after = vec![("rust/a".to_owned(), 3, json!({"n": 4}))];
    assert_eq!(collect(&mut remote, 1), after);
    assert_eq!(collect(&mut own, 1), after);
    // Gone before the shutdown, which would otherwise wait for them to answer the close.
    drop((own, streaming));
    broker.shutdown();
}
