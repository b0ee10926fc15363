//! The local listener: publishing over HTTP (single and all-or-nothing NDJSON batches) and
//! WebSocket, the operations endpoints, the bearer token, and every error with its status.

mod util;
use std::time::Duration;
use util::broker as b;

use serde_json::{json, Value};
use tickwire::PublishError;

fn post(broker: &tickwire::Broker, target: &str, body: &str) -> (u16, Value) {
    let (status, _, body) = b::http(b::local(broker), "POST", target, &[], body.as_bytes());
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

#[test]
fn single_publish_reaches_subscribers_and_errors_have_statuses() {
    let broker = b::start(|c| c.max_payload = 100);
    let mut sub = b::Sub::connect(&broker, "");
    sub.subscribe(&["quotes/AAPL"]);
    assert_eq!(
        post(&broker, "/publish?topic=quotes/AAPL", r#"{"bid":1}"#),
        (202, json!({"seq": 1}))
    );
    assert_eq!(sub.next()["data"], json!({"bid": 1}));
    let (status, body) = post(&broker, "/publish?topic=quotes//AAPL", "1");
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_topic"))
    );
    assert!(body["error"]
        .as_str()
        .is_some_and(|e| e.contains("quotes//AAPL")));
    let (status, body) = post(&broker, "/publish?topic=quotes/AAPL", "{oops");
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_payload"))
    );
    let big = format!("\"{}\"", "x".repeat(200));
    let (status, body) = post(&broker, "/publish?topic=quotes/AAPL", &big);
    assert_eq!(
        (status, body["code"].as_str()),
        (413, Some("payload_too_large"))
    );
    // Nothing of the refused ones arrived.
    sub.expect_nothing_before_sentinel(&broker, "quotes/AAPL");
    assert!(
        b::metric(
            &broker,
            "tickwire_publish_rejected_total{reason=\"invalid_topic\"}"
        ) >= 1
    );
    assert!(b::metric(&broker, "tickwire_http_errors_total{status=\"413\"}") >= 1);
}

#[test]
fn a_batch_is_all_or_nothing() {
    let broker = b::start(|_| {});
    let mut sub = b::Sub::connect(&broker, "");
    sub.subscribe(&["batch/#"]);
    let bad = "{\"topic\":\"batch/a\",\"data\":1}\n{\"topic\":\"batch/b\",\"data\":2}\n{\"topic\":\"batch//c\",\"data\":3}\n";
    let (status, body) = post(&broker, "/publish", bad);
    assert_eq!(
        (status, body["line"].as_u64(), body["code"].as_str()),
        (400, Some(3), Some("invalid_topic"))
    );
    let bad_json = "{\"topic\":\"batch/a\",\"data\":1}\n{\"topic\":\"batch/b\",\"data\":}\n";
    assert_eq!(post(&broker, "/publish", bad_json).1["line"], 2);
    let (_, _, topics) = b::http(b::local(&broker), "GET", "/topics", &[], b"");
    assert_eq!(
        serde_json::from_str::<Value>(&topics).expect("json"),
        json!({"topics": [], "truncated": false}),
        "nothing of a refused batch"
    );

    let good = "{\"topic\":\"batch/a\",\"data\":1}\n\n{\"topic\":\"batch/b\",\"data\":{\"x\":2}}\n";
    assert_eq!(
        post(&broker, "/publish", good),
        (202, json!({"published": 2}))
    );
    assert_eq!(sub.next()["topic"], "batch/a");
    assert_eq!(sub.next()["data"], json!({"x": 2}));
    // Refused lines are counted like any other refused publication.
    assert_eq!(
        b::metric(
            &broker,
            "tickwire_publish_rejected_total{reason=\"invalid_topic\"}"
        ),
        1
    );
    assert_eq!(
        b::metric(
            &broker,
            "tickwire_publish_rejected_total{reason=\"invalid_payload\"}"
        ),
        1
    );
}

#[test]
fn operations_endpoints_and_routing() {
    let broker = b::start(|_| {});
    let local = b::local(&broker);
    let mut sub = b::Sub::connect(&broker, "");
    sub.subscribe(&["quotes/+", "quotes/AAPL"]);
    b::publish(&broker, "quotes/AAPL", "1");
    b::publish(&broker, "quotes/AAPL", "2");
    b::publish(&broker, "trades/X", "3");
    let (status, _, body) = b::http(local, "GET", "/topics", &[], b"");
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).expect("json"),
        json!({"topics": [
            {"topic": "quotes/AAPL", "seq": 2, "subscribers": 2},
            {"topic": "trades/X", "seq": 1, "subscribers": 0},
        ], "truncated": false})
    );
    assert_eq!(b::http(local, "GET", "/healthz", &[], b"").0, 200);
    assert_eq!(b::metric(&broker, "tickwire_published_total"), 3);
    assert_eq!(b::metric(&broker, "tickwire_subscriptions"), 2);
    assert_eq!(b::http(local, "GET", "/nope", &[], b"").0, 404);
    assert_eq!(b::http(local, "DELETE", "/publish", &[], b"").0, 405);
    assert_eq!(b::http(local, "POST", "/metrics", &[], b"").0, 405);
    let public = broker.public_addr();
    let (status, head, page) = b::http(public, "GET", "/", &[], b"");
    assert!(status == 200 && head.contains("text/html") && page.contains("<html"));
    assert_eq!(
        b::http(public, "GET", "/publish", &[], b"").0,
        404,
        "nothing publishes publicly"
    );
    assert_eq!(b::http(public, "POST", "/ws", &[], b"").0, 405);
}

#[test]
fn streaming_publisher_over_websocket() {
    let broker = b::start(|_| {});
    let mut sub = b::Sub::connect(&broker, "");
    sub.subscribe(&["quotes/+"]);
    let mut publisher = b::Sub::connect_to(b::local(&broker), "/publish");
    publisher.send(json!({"topic": "quotes/AAPL", "data": {"bid": 1}, "id": 1}));
    assert_eq!(
        publisher.next(),
        json!({"type": "published", "seq": 1, "id": 1})
    );
    publisher.send(json!({"topic": "quotes/AAPL", "data": {"bid": 2}}));
    publisher.send(json!({"topic": "quotes//AAPL", "data": 3, "id": 2}));
    let err = publisher.next();
    assert_eq!(
        (
            err["type"].as_str(),
            err["code"].as_str(),
            err["id"].as_u64()
        ),
        (Some("error"), Some("invalid_topic"), Some(2))
    );
    publisher.send(json!({"nope": 1}));
    assert_eq!(publisher.next()["code"], "bad_request");
    publisher.send(json!({"topic": "quotes/MSFT", "data": 4, "id": 3}));
    assert_eq!(publisher.next()["seq"], 1);
    let got: Vec<(Value, Value)> = (0..3)
        .map(|_| sub.next())
        .map(|m| (m["topic"].clone(), m["data"].clone()))
        .collect();
    assert_eq!(
        got,
        [
            (json!("quotes/AAPL"), json!({"bid": 1})),
            (json!("quotes/AAPL"), json!({"bid": 2})),
            (json!("quotes/MSFT"), json!(4)),
        ]
    );
}

#[test]
fn the_token_guards_every_local_request() {
    let broker = b::start(|c| c.publish_token = Some("s3cret".into()));
    let local = b::local(&broker);
    let (status, head, _) = b::http(local, "POST", "/publish?topic=a", &[], b"1");
    assert_eq!(status, 401);
    assert!(head.contains("WWW-Authenticate: Bearer"));
    let wrong = [("Authorization", "Bearer nope")];
    assert_eq!(
        b::http(local, "POST", "/publish?topic=a", &wrong, b"1").0,
        401
    );
    assert_eq!(b::http(local, "GET", "/metrics", &wrong, b"").0, 401);
    let right = [("Authorization", "Bearer s3cret")];
    assert_eq!(
        b::http(local, "POST", "/publish?topic=a", &right, b"1").0,
        202
    );
    let (_, _, metrics) = b::http(local, "GET", "/metrics", &right, b"");
    assert!(
        metrics.contains("tickwire_http_errors_total{status=\"401\"} 3"),
        "{metrics}"
    );
}

#[test]
fn a_non_loopback_local_listener_needs_a_token() {
    let err = tickwire::Broker::builder()
        .listen("127.0.0.1:0".parse().expect("addr"))
        .local_listen(Some("0.0.0.0:0".parse().expect("addr")))
        .start()
        .err()
        .expect("refused");
    assert!(err.to_string().contains("publish_token"), "{err}");
}

#[test]
fn a_full_queue_refuses_and_loses_nothing_accepted() {
    let broker = b::start(|c| {
        c.workers = 1;
        c.publish_queue = 4;
    });
    let mut sub = b::Sub::connect(&broker, "");
    sub.subscribe(&["q/x"]);
    let publisher = broker.publisher();
    // A burst faster than one worker drains: some are refused, the rest all arrive, in order.
    let mut accepted = Vec::new();
    let mut refused = 0;
    for i in 0..20_000u32 {
        match publisher.publish("q/x", i.to_string().as_bytes()) {
            Ok(seq) => accepted.push((seq, i)),
            Err(PublishError::QueueFull) => refused += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(refused > 0, "a queue of 4 must fill under a burst of 20000");
    for (seq, i) in &accepted {
        let m = sub.next();
        assert_eq!(
            (m["seq"].as_u64(), m["data"].as_u64()),
            (Some(*seq), Some(u64::from(*i)))
        );
    }
    assert_eq!(broker.stats().publish_rejected, refused);
    // Over HTTP a full queue is a 503 with its code: a batch of five never fits a queue of four.
    let batch: String = (0..5)
        .map(|i| format!("{{\"topic\":\"q/x\",\"data\":{i}}}\n"))
        .collect();
    let (status, body) = post(&broker, "/publish", &batch);
    assert_eq!((status, body["code"].as_str()), (503, Some("queue_full")));
    // With the queue drained, the sentinel comes right after what was accepted: no item of the
    // refused batch arrived.
    b::eventually(Duration::from_secs(10), "the queue drains", || {
        b::metric(&broker, "tickwire_publish_queue_depth") == 0
    });
    sub.expect_nothing_before_sentinel(&broker, "q/x");
}
