//! `max_rate`: a subscriber asking for at most R updates per topic per second gets at most that
//! many, and the latest value always arrives; `--max-update-rate` caps everyone, asking or not.

mod util;
use util::broker as b;

use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Publishes `topic` every `every` for `how_long`, numbering the payloads; returns the last.
fn feed(broker: &tickwire::Broker, topic: &str, every: Duration, how_long: Duration) -> u64 {
    let publisher = broker.publisher();
    let until = Instant::now() + how_long;
    let mut n = 0u64;
    while Instant::now() < until {
        n += 1;
        publisher
            .publish(topic, json!({ "n": n }).to_string().as_bytes())
            .expect("published");
        thread::sleep(every);
    }
    n
}

/// Reads `sub` on a thread of its own (so arrival times are real) until a message of `topic`
/// carries `{"n": last}`, `last` being sent through the channel once known; returns the
/// messages with when each came.
fn receive_in_background(
    mut sub: b::Sub,
    topic: &'static str,
) -> (
    std::sync::mpsc::Sender<u64>,
    thread::JoinHandle<Vec<(Instant, Value)>>,
) {
    let (tx, rx) = std::sync::mpsc::channel::<u64>();
    let reader = thread::spawn(move || {
        let mut got = Vec::new();
        let mut last = None;
        let mut highest = 0;
        loop {
            if last.is_none() {
                last = rx.try_recv().ok();
            }
            if last.is_some_and(|l| highest >= l) {
                return got;
            }
            let Some(m) = sub.next_within(Duration::from_millis(100)) else {
                continue;
            };
            if m["type"] != "msg" || m["topic"] != topic {
                continue;
            }
            highest = highest.max(m["data"]["n"].as_u64().expect("n"));
            got.push((Instant::now(), m));
        }
    });
    (tx, reader)
}

/// The most messages in any one-second window (sliding over the arrival times).
fn most_in_a_second(times: &[Instant]) -> usize {
    let mut most = 0;
    for (i, t) in times.iter().enumerate() {
        let n = times[i..]
            .iter()
            .take_while(|u| u.duration_since(*t) < Duration::from_secs(1))
            .count();
        most = most.max(n);
    }
    most
}

#[test]
fn at_most_r_per_second_and_the_last_value_arrives() {
    let broker = b::start(|_| {});
    let mut slow = b::Sub::connect(&broker, "");
    slow.send(json!({"op": "subscribe", "topics": ["r/+"], "max_rate": 4, "id": 1}));
    assert_eq!(slow.next()["type"], "subscribed");
    let mut full = b::Sub::connect(&broker, "");
    full.subscribe(&["r/+"]);
    let (slow_last, slow_reader) = receive_in_background(slow, "r/x");
    let (full_last, full_reader) = receive_in_background(full, "r/x");
    // 200 updates a second for 3 s.
    let last = feed(
        &broker,
        "r/x",
        Duration::from_millis(5),
        Duration::from_secs(3),
    );
    slow_last.send(last).expect("reader");
    full_last.send(last).expect("reader");
    let got = slow_reader.join().expect("slow reader");
    let everything = full_reader.join().expect("full reader");
    let times: Vec<Instant> = got.iter().map(|(t, _)| *t).collect();
    let most = most_in_a_second(&times);
    eprintln!(
        "max_rate 4: {} of {last} updates in ~3 s, at most {most} in any second",
        got.len()
    );
    // The window may straddle two slots' edges: one more than R at most.
    assert!(most <= 5, "{most} in one second");
    assert!(
        got.len() >= 8,
        "about 4 a second got through: {}",
        got.len()
    );
    // Seqs strictly increase; the gaps show the merging; the last value came.
    let seqs: Vec<u64> = got
        .iter()
        .map(|(_, m)| m["seq"].as_u64().expect("seq"))
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert_eq!(*seqs.last().expect("some"), last);
    assert_eq!(
        everything.len() as u64,
        last,
        "a subscriber without max_rate gets all"
    );
    assert!(b::metric(&broker, "tickwire_rate_merged_total") > 0);
}

#[test]
fn the_latest_value_is_never_held_back_more_than_one_interval() {
    let broker = b::start(|_| {});
    let mut sub = b::Sub::connect(&broker, "");
    sub.send(json!({"op": "subscribe", "topics": ["q/x"], "max_rate": 2, "id": 1}));
    assert_eq!(sub.next()["type"], "subscribed");
    let publisher = broker.publisher();
    // A burst, then quiet: the first goes at once, the burst's last one half a second later.
    let started = Instant::now();
    for n in 1..=20u64 {
        publisher
            .publish("q/x", n.to_string().as_bytes())
            .expect("published");
    }
    let first = sub.next();
    assert_eq!(first["data"], 1);
    let second = sub.next();
    let waited = started.elapsed();
    assert_eq!(second["data"], 20, "the latest, merged: {second}");
    assert!(
        waited < Duration::from_millis(1500),
        "held back {waited:?}, more than one interval (500 ms) and slack"
    );
    // And nothing more of the burst after it.
    sub.subscribe(&["sentinel"]);
    sub.expect_nothing_before_sentinel(&broker, "sentinel");
}

#[test]
fn a_later_subscribe_replaces_the_rate_and_unsubscribe_drops_what_waits() {
    let broker = b::start(|_| {});
    let mut sub = b::Sub::connect(&broker, "");
    sub.send(json!({"op": "subscribe", "topics": ["w/x"], "max_rate": 1, "id": 1}));
    assert_eq!(sub.next()["type"], "subscribed");
    let publisher = broker.publisher();
    publisher.publish("w/x", b"1").expect("published");
    assert_eq!(sub.next()["data"], 1);
    // Held: the slot opens in a second.
    publisher.publish("w/x", b"2").expect("published");
    sub.send(json!({"op": "unsubscribe", "topics": ["w/x"], "id": 2}));
    assert_eq!(sub.next()["type"], "unsubscribed");
    // Nothing of w/x comes after the unsubscribe, even when its slot opens.
    sub.subscribe(&["sentinel"]);
    thread::sleep(Duration::from_millis(1200));
    sub.expect_nothing_before_sentinel(&broker, "sentinel");
    // Subscribing again without max_rate: no limit any more.
    sub.send(json!({"op": "subscribe", "topics": ["w/x"], "id": 3}));
    let ack = sub.next();
    assert_eq!(ack["type"], "subscribed");
    assert_eq!(sub.next()["data"], 2, "the snapshot");
    for n in 3..=10u64 {
        publisher
            .publish("w/x", n.to_string().as_bytes())
            .expect("published");
    }
    for n in 3..=10u64 {
        assert_eq!(sub.next()["data"], n);
    }
}

#[test]
fn the_server_cap_applies_to_clients_that_ask_nothing() {
    let broker = b::start(|c| c.max_update_rate = 5.0);
    let mut sub = b::Sub::connect(&broker, "?subscribe=c/%23");
    assert_eq!(sub.next()["type"], "subscribed");
    let mut greedy = b::Sub::connect(&broker, "");
    greedy.send(json!({"op": "subscribe", "topics": ["c/#"], "max_rate": 1000, "id": 1}));
    assert_eq!(greedy.next()["type"], "subscribed");
    let readers = [
        receive_in_background(sub, "c/x"),
        receive_in_background(greedy, "c/x"),
    ];
    let last = feed(
        &broker,
        "c/x",
        Duration::from_millis(5),
        Duration::from_secs(2),
    );
    for (tx, reader) in readers {
        tx.send(last).expect("reader");
        let got = reader.join().expect("reader");
        let times: Vec<Instant> = got.iter().map(|(t, _)| *t).collect();
        let most = most_in_a_second(&times);
        assert!(most <= 6, "capped at 5 a second: {most}");
    }
    assert!(b::metric(&broker, "tickwire_rate_merged_total") > 0);
}
