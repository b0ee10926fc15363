//! `delta: true`: after the first whole message of a topic, a subscriber gets merge patches
//! instead of whole objects, only when it had the previous seq, never when the patch cannot say
//! the change or saves nothing; applying them gives exactly what was published.

mod util;
use util::broker as b;

use serde_json::{json, Value};
use tickwire::broker::delta::apply;

/// A quote of twenty fields, two of which change with `n`.
fn quote(n: u64) -> Value {
    let mut q = serde_json::Map::new();
    for i in 0..18 {
        q.insert(format!("field{i:02}"), json!(format!("constant value {i}")));
    }
    q.insert("bid".into(), json!(100.0 + n as f64 / 100.0));
    q.insert("n".into(), json!(n));
    Value::Object(q)
}

/// Reads the next `msg` and keeps `state` (the client's copy of the topic) up to date; returns
/// whether it came as a delta.
fn next_applied(sub: &mut b::Sub, state: &mut Value) -> (u64, bool) {
    let m = sub.next();
    assert_eq!(m["type"], "msg", "{m}");
    let seq = m["seq"].as_u64().expect("seq");
    match (m.get("data"), m.get("delta")) {
        (Some(data), None) => {
            *state = data.clone();
            (seq, false)
        }
        (None, Some(patch)) => {
            apply(state, patch);
            (seq, true)
        }
        _ => panic!("a msg has data or delta: {m}"),
    }
}

#[test]
fn deltas_after_the_first_whole_message_and_they_apply_exactly() {
    let broker = b::start(|_| {});
    b::publish(&broker, "d/x", &quote(0).to_string());
    let mut sub = b::Sub::connect(&broker, "");
    sub.send(json!({"op": "subscribe", "topics": ["d/+"], "delta": true, "id": 1}));
    assert_eq!(sub.next()["type"], "subscribed");
    let mut plain = b::Sub::connect(&broker, "");
    plain.subscribe(&["d/+"]);
    let mut state = Value::Null;
    assert_eq!(
        next_applied(&mut sub, &mut state),
        (1, false),
        "the snapshot is whole"
    );
    assert_eq!(plain.next()["seq"], 1);
    for n in 1..=20u64 {
        b::publish(&broker, "d/x", &quote(n).to_string());
        let (seq, as_delta) = next_applied(&mut sub, &mut state);
        assert_eq!(seq, n + 1);
        assert!(as_delta, "seq {seq} came whole");
        assert_eq!(
            state,
            quote(n),
            "the patch applied gives what was published"
        );
        let m = plain.next();
        assert_eq!(
            m["data"],
            quote(n),
            "a subscriber without delta gets whole values"
        );
    }
    // A new topic's first message is whole, even live.
    b::publish(&broker, "d/new", &quote(1).to_string());
    let mut fresh = Value::Null;
    assert!(!next_applied(&mut sub, &mut fresh).1);
}

#[test]
fn no_delta_for_a_null_a_non_object_or_no_saving() {
    let broker = b::start(|_| {});
    let mut sub = b::Sub::connect(&broker, "");
    sub.send(json!({"op": "subscribe", "topics": ["n/x"], "delta": true, "id": 1}));
    assert_eq!(sub.next()["type"], "subscribed");
    let mut state = Value::Null;
    let cases = [
        (quote(1), false, "the first"),
        (quote(2), true, "two fields changed"),
        (
            {
                let mut q = quote(3);
                q["bid"] = Value::Null;
                q
            },
            false,
            "a null cannot be said by a patch",
        ),
        (quote(4), true, "after a whole one"),
        (json!([1, 2, 3]), false, "not an object"),
        (json!({"a": 1}), false, "after a non-object"),
        (json!({"b": 2}), false, "the patch is not smaller"),
    ];
    for (n, (value, as_delta, why)) in cases.into_iter().enumerate() {
        b::publish(&broker, "n/x", &value.to_string());
        let (seq, got_delta) = next_applied(&mut sub, &mut state);
        assert_eq!(seq, n as u64 + 1);
        assert_eq!(got_delta, as_delta, "{why}");
        assert_eq!(state, value, "{why}");
    }
}

#[test]
fn a_gap_from_merging_gets_a_whole_value() {
    let broker = b::start(|_| {});
    let mut sub = b::Sub::connect(&broker, "");
    sub.send(json!({"op": "subscribe", "topics": ["g/x"], "delta": true, "max_rate": 2, "id": 1}));
    assert_eq!(sub.next()["type"], "subscribed");
    let mut state = Value::Null;
    for n in 1..=5u64 {
        b::publish(&broker, "g/x", &quote(n).to_string());
    }
    assert_eq!(next_applied(&mut sub, &mut state), (1, false));
    // 2, 3 and 4 were merged away: 5 comes whole (the subscriber never had 4).
    assert_eq!(next_applied(&mut sub, &mut state), (5, false));
    assert_eq!(state, quote(5));
    std::thread::sleep(std::time::Duration::from_millis(600));
    b::publish(&broker, "g/x", &quote(6).to_string());
    assert_eq!(
        next_applied(&mut sub, &mut state),
        (6, true),
        "consecutive again"
    );
    assert_eq!(state, quote(6));
}

#[test]
fn a_replay_starts_whole_then_goes_on_in_deltas() {
    let broker = b::start(|c| c.history = 50);
    // Patches are computed while some subscriber wants them: this one stays through the outage.
    let mut other = b::Sub::connect(&broker, "");
    other.send(json!({"op": "subscribe", "topics": ["rp/#"], "delta": true, "id": 1}));
    assert_eq!(other.next()["type"], "subscribed");
    let mut sub = b::Sub::connect(&broker, "");
    sub.send(json!({"op": "subscribe", "topics": ["rp/x"], "delta": true, "id": 1}));
    let epoch = sub.next()["epoch"].as_str().expect("epoch").to_owned();
    let mut state = Value::Null;
    b::publish(&broker, "rp/x", &quote(1).to_string());
    assert_eq!(next_applied(&mut sub, &mut state), (1, false));
    drop(sub);
    for n in 2..=6u64 {
        b::publish(&broker, "rp/x", &quote(n).to_string());
    }
    let mut back = b::Sub::connect(&broker, "");
    back.send(json!({"op": "subscribe", "topics": ["rp/x"], "delta": true,
                     "since": {"rp/x": 1}, "epoch": epoch, "id": 2}));
    assert_eq!(back.next()["recovered"], json!(["rp/x"]));
    let mut state = Value::Null;
    let got: Vec<(u64, bool)> = (0..5)
        .map(|_| next_applied(&mut back, &mut state))
        .collect();
    assert_eq!(
        got,
        [(2, false), (3, true), (4, true), (5, true), (6, true)]
    );
    assert_eq!(state, quote(6));
}
