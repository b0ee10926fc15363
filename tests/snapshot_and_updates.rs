//! Subscribing gives the last value first (a snapshot), then every update in `seq` order; wildcards
//! match by MQTT rules; nothing arrives for topics not subscribed; each update arrives once.

mod util;
use util::broker as b;

use serde_json::{json, Value};

fn msg(m: &Value) -> (String, u64, bool, Value) {
    assert_eq!(m["type"], "msg", "{m}");
    (
        m["topic"].as_str().expect("topic").to_owned(),
        m["seq"].as_u64().expect("seq"),
        m.get("snapshot") == Some(&json!(true)),
        m["data"].clone(),
    )
}

#[test]
fn snapshot_then_live_updates_in_order() {
    let broker = b::start(|_| {});
    for i in 1..=3 {
        assert_eq!(
            b::publish(&broker, "quotes/AAPL", &format!("{{\"bid\":{i}}}")),
            (202, json!({"seq": i}))
        );
    }
    let mut sub = b::Sub::connect(&broker, "");
    sub.subscribe(&["quotes/AAPL"]);
    assert_eq!(
        msg(&sub.next()),
        ("quotes/AAPL".into(), 3, true, json!({"bid": 3}))
    );
    for i in 4..=6 {
        b::publish(&broker, "quotes/AAPL", &format!("{{\"bid\":{i}}}"));
    }
    for i in 4..=6 {
        assert_eq!(
            msg(&sub.next()),
            ("quotes/AAPL".into(), i, false, json!({"bid": i}))
        );
    }
}

#[test]
fn a_topic_with_no_value_yet_has_no_snapshot() {
    let broker = b::start(|_| {});
    let mut sub = b::Sub::connect(&broker, "");
    sub.subscribe(&["quotes/NEW"]);
    // No snapshot came before the first live message.
    b::publish(&broker, "quotes/NEW", "1");
    assert_eq!(msg(&sub.next()), ("quotes/NEW".into(), 1, false, json!(1)));
}

#[test]
fn wildcards_follow_mqtt_and_get_snapshots_of_matching_topics() {
    let broker = b::start(|_| {});
    for t in [
        "quotes",
        "quotes/AAPL",
        "quotes/MSFT",
        "quotes/AAPL/depth",
        "trades/AAPL",
    ] {
        b::publish(&broker, t, "0");
    }
    let mut plus = b::Sub::connect(&broker, "");
    plus.subscribe(&["quotes/+"]);
    let mut snaps: Vec<String> = (0..2).map(|_| msg(&plus.next()).0).collect();
    snaps.sort();
    assert_eq!(snaps, ["quotes/AAPL", "quotes/MSFT"]);
    // `+` is one level only: no snapshot of quotes, quotes/AAPL/depth or trades/AAPL came
    // before the next live message (checked below).

    let mut hash = b::Sub::connect(&broker, "");
    hash.subscribe(&["quotes/#"]);
    let mut snaps: Vec<String> = (0..4).map(|_| msg(&hash.next()).0).collect();
    snaps.sort();
    assert_eq!(
        snaps,
        ["quotes", "quotes/AAPL", "quotes/AAPL/depth", "quotes/MSFT"]
    );

    // Live: each goes where it matches, and nowhere else.
    for t in ["trades/AAPL", "quotes/AAPL/depth", "quotes", "quotes/MSFT"] {
        b::publish(&broker, t, "1");
    }
    let (t, seq, snap, _) = msg(&plus.next());
    assert_eq!((t.as_str(), seq, snap), ("quotes/MSFT", 2, false));
    let live: Vec<String> = (0..3).map(|_| msg(&hash.next()).0).collect();
    assert_eq!(live, ["quotes/AAPL/depth", "quotes", "quotes/MSFT"]);
    plus.sync();
    hash.sync();
}

#[test]
fn overlapping_subscriptions_deliver_once() {
    let broker = b::start(|_| {});
    let mut sub = b::Sub::connect(&broker, "");
    sub.subscribe(&["quotes/+", "quotes/AAPL", "quotes/#", "#"]);
    b::publish(&broker, "quotes/AAPL", "1");
    b::publish(&broker, "quotes/MSFT", "2");
    assert_eq!(msg(&sub.next()).0, "quotes/AAPL");
    assert_eq!(msg(&sub.next()).0, "quotes/MSFT");
    sub.sync(); // a duplicate would have arrived before the pong
}

#[test]
fn unsubscribed_and_unrelated_topics_send_nothing() {
    let broker = b::start(|_| {});
    let mut sub = b::Sub::connect(&broker, "");
    sub.subscribe(&["quotes/AAPL", "quotes/+", "sentinel"]);
    b::publish(&broker, "trades/AAPL", "1");
    sub.send(json!({"op": "unsubscribe", "topics": ["quotes/AAPL", "quotes/+"]}));
    assert_eq!(sub.next()["type"], "unsubscribed");
    b::publish(&broker, "quotes/AAPL", "2");
    sub.expect_nothing_before_sentinel(&broker, "sentinel");
}
