//! Per-topic order with gap-free `seq` for a fast client across thousands of updates, and fan-out
//! to more than a thousand concurrent subscribers, each getting exactly what it subscribed to.

mod util;
use std::collections::HashMap;
use std::thread;
use util::broker as b;

use serde_json::{json, Value};

#[test]
fn a_fast_client_sees_every_seq_in_order() {
    let broker = b::start(|_| {});
    let mut sub = b::Sub::connect(&broker, "");
    sub.subscribe(&["fx/EURUSD", "fx/USDJPY"]);
    let publisher = broker.publisher();
    const N: u64 = 5000;
    let feeder = thread::spawn(move || {
        for i in 0..N {
            for t in ["fx/EURUSD", "fx/USDJPY"] {
                // Retry a full queue: the test is about order, not about the queue.
                while publisher
                    .publish(t, format!("{{\"i\":{i}}}").as_bytes())
                    .is_err()
                {
                    thread::yield_now();
                }
            }
        }
    });
    let mut last: HashMap<String, u64> = HashMap::new();
    for _ in 0..2 * N {
        let m = sub.next();
        let topic = m["topic"].as_str().expect("topic").to_owned();
        let seq = m["seq"].as_u64().expect("seq");
        let prev = last.insert(topic.clone(), seq).unwrap_or(0);
        assert_eq!(seq, prev + 1, "{topic}: seq {seq} after {prev}");
        assert_eq!(m["data"], json!({"i": seq - 1}));
    }
    feeder.join().expect("feeder");
    assert_eq!(last["fx/EURUSD"], N);
    assert_eq!(last["fx/USDJPY"], N);
}

#[test]
fn more_than_a_thousand_subscribers_get_exactly_their_topics() {
    // Each client is two sockets in this process (ours and the broker's).
    util::child::raise_fd_limit(8192);
    let broker = b::start(|_| {});
    const CLIENTS: usize = 1200;
    const TOPICS: usize = 10;
    const PER_TOPIC: u64 = 20;
    let wants = |i: usize| {
        [
            format!("t/{}", i % TOPICS),
            format!("t/{}", (i * 7 + 3) % TOPICS),
        ]
    };
    let addr = broker.public_addr();
    // Connect and subscribe from 4 threads; keep the clients.
    let groups: Vec<Vec<(usize, b::Sub)>> = (0..4)
        .map(|g| {
            thread::spawn(move || {
                (g..CLIENTS)
                    .step_by(4)
                    .map(|i| {
                        let mut sub = b::Sub::connect_to(addr, "/ws");
                        let w = wants(i);
                        let topics: Vec<&str> = w.iter().map(String::as_str).collect();
                        sub.send(json!({"op": "subscribe", "topics": topics}));
                        assert_eq!(sub.next()["type"], "subscribed");
                        (i, sub)
                    })
                    .collect()
            })
        })
        .map(|h| h.join().expect("connect thread"))
        .collect();
    assert!(broker.stats().connections >= CLIENTS);
    let publisher = broker.publisher();
    for n in 1..=PER_TOPIC {
        for t in 0..TOPICS {
            publisher
                .publish(&format!("t/{t}"), format!("{n}").as_bytes())
                .expect("publish");
        }
    }
    let checkers: Vec<_> = groups
        .into_iter()
        .map(|group| {
            thread::spawn(move || {
                for (i, mut sub) in group {
                    let w = wants(i);
                    let distinct = if w[0] == w[1] { 1 } else { 2 };
                    let mut seen: HashMap<String, u64> = HashMap::new();
                    for _ in 0..PER_TOPIC * distinct {
                        let m: Value = sub.next();
                        let topic = m["topic"].as_str().expect("topic").to_owned();
                        assert!(w.contains(&topic), "client {i} got {topic}, wants {w:?}");
                        let seq = m["seq"].as_u64().expect("seq");
                        let prev = seen.insert(topic, seq).unwrap_or(0);
                        assert_eq!(seq, prev + 1, "client {i}");
                    }
                    sub.sync(); // nothing else was queued for it
                    assert!(seen.values().all(|&s| s == PER_TOPIC));
                }
            })
        })
        .collect();
    for c in checkers {
        c.join().expect("checker");
    }
}
