//! Recovery after a reconnect: a subscriber that comes back with `since` (the last seq it had
//! per topic) and the `epoch` gets exactly what it missed, in order, then live updates with no
//! gap and no duplicate; what cannot be recovered gets the usual snapshot.

mod util;
use util::broker as b;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

fn msg(m: &Value) -> (String, u64, bool, Value) {
    (
        m["topic"].as_str().expect("topic").to_owned(),
        m["seq"].as_u64().expect("seq"),
        m.get("snapshot") == Some(&json!(true)),
        m["data"].clone(),
    )
}

/// Subscribes with `since` and `epoch`; returns the ack.
fn resubscribe(sub: &mut b::Sub, topics: &[&str], since: Value, epoch: &str) -> Value {
    sub.send(json!({"op": "subscribe", "topics": topics, "since": since, "epoch": epoch, "id": 2}));
    let ack = sub.next();
    assert_eq!(ack["type"], "subscribed", "{ack}");
    ack
}

#[test]
fn a_reconnect_gets_exactly_what_it_missed_then_live() {
    let broker = b::start(|c| c.history = 50);
    let mut sub = b::Sub::connect(&broker, "");
    let epoch = sub.subscribe(&["r/x"]);
    for n in 1..=5 {
        b::publish(&broker, "r/x", &n.to_string());
    }
    for n in 1..=5u64 {
        assert_eq!(msg(&sub.next()).1, n);
    }
    drop(sub);
    for n in 6..=12 {
        b::publish(&broker, "r/x", &n.to_string());
    }
    let mut back = b::Sub::connect(&broker, "");
    let ack = resubscribe(&mut back, &["r/x"], json!({"r/x": 5}), &epoch);
    assert_eq!(ack["recovered"], json!(["r/x"]));
    assert_eq!(ack["epoch"], epoch.as_str());
    for n in 6..=12u64 {
        let (topic, seq, snapshot, data) = msg(&back.next());
        assert_eq!(
            (topic.as_str(), seq, snapshot, data),
            ("r/x", n, false, json!(n))
        );
    }
    b::publish(&broker, "r/x", "13");
    assert_eq!(
        msg(&back.next()).1,
        13,
        "then live, with no gap and no duplicate"
    );
    assert_eq!(b::metric(&broker, "tickwire_replayed_total"), 7);
    assert_eq!(b::metric(&broker, "tickwire_recovered_total"), 1);
    // Up to date: recovered with nothing to replay.
    let mut current = b::Sub::connect(&broker, "");
    let ack = resubscribe(&mut current, &["r/x"], json!({"r/x": 13}), &epoch);
    assert_eq!(ack["recovered"], json!(["r/x"]));
    b::publish(&broker, "r/x", "14");
    assert_eq!(msg(&current.next()).1, 14);
}

#[test]
fn wildcards_recover_the_topics_they_match_and_snapshot_the_rest() {
    let broker = b::start(|c| c.history = 10);
    for t in ["w/a", "w/b", "w/c"] {
        b::publish(&broker, t, "1");
    }
    let mut sub = b::Sub::connect(&broker, "");
    let epoch = sub.subscribe(&["w/+"]);
    for _ in 0..3 {
        assert!(msg(&sub.next()).2, "snapshots first");
    }
    drop(sub);
    b::publish(&broker, "w/a", "2");
    b::publish(&broker, "w/b", "2");
    b::publish(&broker, "other/z", "1");
    let mut back = b::Sub::connect(&broker, "");
    // w/a and w/b recover; w/c is not in `since`, so it gets its snapshot; other/z is not matched
    // by the request's patterns, so its entry is ignored.
    let ack = resubscribe(
        &mut back,
        &["w/+"],
        json!({"w/a": 1, "w/b": 1, "other/z": 0}),
        &epoch,
    );
    let mut recovered: Vec<String> = serde_json::from_value(ack["recovered"].clone()).unwrap();
    recovered.sort();
    assert_eq!(recovered, ["w/a", "w/b"]);
    let mut got: Vec<(String, u64, bool)> = (0..3)
        .map(|_| {
            let (t, s, snap, _) = msg(&back.next());
            (t, s, snap)
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("w/a".to_owned(), 2, false),
            ("w/b".to_owned(), 2, false),
            ("w/c".to_owned(), 1, true)
        ]
    );
    back.subscribe(&["sentinel"]);
    back.expect_nothing_before_sentinel(&broker, "sentinel");
}

#[test]
fn what_cannot_be_recovered_gets_a_snapshot_and_is_counted() {
    let broker = b::start(|c| c.history = 3);
    for n in 1..=10 {
        b::publish(&broker, "h/x", &n.to_string());
    }
    b::publish(&broker, "h/y", "1");
    let mut sub = b::Sub::connect(&broker, "");
    let epoch = sub.subscribe(&["sentinel"]);
    let cases = [
        // History holds 8, 9, 10: after 2 is too far back.
        ("h/x", json!({"h/x": 2}), epoch.clone(), "history_too_short"),
        // A seq this topic has not reached.
        ("h/y", json!({"h/y": 99}), epoch.clone(), "future_seq"),
        // Another epoch: these seqs mean nothing here.
        ("h/x", json!({"h/x": 9}), "old-epoch".to_owned(), "epoch"),
        // A topic with no value at all.
        (
            "h/none",
            json!({"h/none": 1}),
            epoch.clone(),
            "unknown_topic",
        ),
    ];
    for (topic, since, epoch, reason) in cases {
        let mut s = b::Sub::connect(&broker, "");
        let ack = resubscribe(&mut s, &[topic], since, &epoch);
        assert_eq!(ack["recovered"], json!([]), "{reason}");
        if topic != "h/none" {
            let (t, _, snapshot, _) = msg(&s.next());
            assert_eq!(
                (t.as_str(), snapshot),
                (topic, true),
                "{reason}: a snapshot"
            );
        }
        assert_eq!(
            b::metric(
                &broker,
                &format!("tickwire_recovery_refused_total{{reason=\"{reason}\"}}")
            ),
            1,
            "{reason}"
        );
    }
    // `since` is bounded by the subscription limit.
    let broker = b::start(|c| c.max_subscriptions = 3);
    let mut s = b::Sub::connect(&broker, "");
    let since: serde_json::Map<String, Value> =
        (0..4).map(|i| (format!("t/{i}"), json!(1))).collect();
    s.send(json!({"op": "subscribe", "topics": ["t/+"], "since": since, "epoch": "e", "id": 3}));
    let e = s.next();
    assert_eq!(
        (e["code"].as_str(), &e["id"]),
        (Some("bad_request"), &json!(3))
    );
}

#[test]
fn a_restarted_broker_has_another_epoch() {
    let first = b::start(|_| {});
    let mut s = b::Sub::connect(&first, "");
    let a = s.subscribe(&["e/x"]);
    drop(s);
    first.shutdown();
    let second = b::start(|_| {});
    let mut s = b::Sub::connect(&second, "");
    let b_epoch = s.subscribe(&["e/x"]);
    assert_ne!(a, b_epoch);
}

/// A publisher races the reconnects: over a few hundred reconnects, every seq is seen exactly
/// once, in order, whether it came in a replay or live.
#[test]
fn a_publisher_racing_the_reconnect_loses_and_repeats_nothing() {
    let broker = b::start(|c| c.history = 10_000);
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = {
        let (p, stop) = (broker.publisher(), stop.clone());
        thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                p.publish("race/x", n.to_string().as_bytes())
                    .expect("published");
                if n % 8 == 0 {
                    thread::sleep(Duration::from_micros(200));
                }
            }
            n
        })
    };
    let mut sub = b::Sub::connect(&broker, "");
    let epoch = sub.subscribe(&["race/x"]);
    let mut last = 0u64;
    // The first message may be a snapshot (the topic may have started before us).
    let (_, seq, _, _) = msg(&sub.next());
    last = last.max(seq);
    let mut reconnects = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while reconnects < 300 && Instant::now() < deadline {
        // Read a few, then drop the connection mid-stream and come back.
        for _ in 0..fastrand::usize(1..20) {
            let (_, seq, snapshot, _) = msg(&sub.next());
            assert!(!snapshot, "no snapshot after a recovery");
            assert_eq!(
                seq,
                last + 1,
                "reconnect {reconnects}: a gap or a duplicate"
            );
            last = seq;
        }
        drop(sub);
        sub = b::Sub::connect(&broker, "");
        let ack = resubscribe(&mut sub, &["race/x"], json!({"race/x": last}), &epoch);
        assert_eq!(
            ack["recovered"],
            json!(["race/x"]),
            "reconnect {reconnects}"
        );
        reconnects += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let published = publisher.join().expect("publisher");
    while last < published {
        let (_, seq, _, _) = msg(&sub.next());
        assert_eq!(seq, last + 1);
        last = seq;
    }
    eprintln!("{reconnects} reconnects racing a publisher: all {published} seqs once, in order");
    assert!(reconnects >= 100, "{reconnects} reconnects");
}
