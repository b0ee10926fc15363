//! A Redis that hangs (issue 11): a real `redis-server` stopped with SIGSTOP while publications
//! are in flight (HTTP single, NDJSON batch, streaming), on a node with one worker, so that
//! everything shares the worker that waits for nothing.
//!
//! - While Redis is stopped, the worker keeps serving: a subscriber's ping, a new client's
//!   subscribe with its snapshots, the page at `/`, `/healthz` and `/metrics` are each answered
//!   within 100 ms, measured again and again (the figures are printed). A streaming publisher
//!   that sends more than its window of 1024 frames is paused at exactly 1024.
//! - Stopped for less than the node's 2 s command timeout, then resumed: everything in flight is
//!   answered in order and delivered (202s, acks in frame order with increasing seqs, every
//!   message at the subscriber in seq order).
//! - Stopped past the answer timeout (set to 1 s with `--redis-answer-timeout`), and past the
//!   2 s command timeout with the default answer timeout: what is in flight is answered 503
//!   `unavailable` (the stream's errors in frame order), the link goes down, new publications
//!   are refused at once, the idle worker does not spin on the late answers, and once Redis
//!   resumes nothing is delivered twice.
//!
//! The scenarios run one at a time (a lock), each with its own Redis and node. Needs
//! `/usr/bin/redis-server`. Redis is always resumed (SIGCONT) by a Drop guard.
#![cfg(feature = "redis")]

mod util;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use util::broker::{as_msg, collect, http, metric_in, Msg, StreamPublisher, Sub};
use util::child::Tickwire;
use util::eventually;
use util::redis::{free_port, RedisServer, Scratch, WAIT};

/// What the issue requires of every answer from the worker while Redis is stopped.
const BOUND: Duration = Duration::from_millis(100);
/// How long the short stall lasts: under the 2 s after which the node takes a silent Redis as
/// down (its command timeout, and its subscription's ping timeout), so that Redis itself
/// answers everything in flight when it resumes.
const SHORT_STALL: Duration = Duration::from_millis(1300);
/// A streaming publisher's frames in flight before its reading is paused (`STREAM_WINDOW`).
const WINDOW: u64 = 1024;
/// The node's command timeout: a Redis silent this long is taken as down.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

/// One scenario at a time: the 100 ms bounds are measured on a shared 2-core machine.
static SERIAL: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A `tickwire` process with one worker, connected to Redis.
struct Node {
    process: Tickwire,
}

impl Node {
    fn start(name: &str, redis: &RedisServer, extra: &[&str]) -> Node {
        let url = redis.url();
        let mut args = vec!["--workers", "1", "--redis", &url];
        args.extend_from_slice(extra);
        let node = Node {
            process: Tickwire::start(name, &args),
        };
        eventually(WAIT, &format!("{name} is healthy"), || {
            node.healthz() == 200
        });
        node
    }

    fn public(&self) -> SocketAddr {
        self.process.public
    }

    fn local(&self) -> SocketAddr {
        self.process.local
    }

    fn healthz(&self) -> u16 {
        http(self.local(), "GET", "/healthz", &[], b"").0
    }

    fn publish(&self, topic: &str, data: &Value) -> (u16, Value) {
        let target = format!("/publish?topic={topic}");
        let (status, _, body) = http(
            self.local(),
            "POST",
            &target,
            &[],
            data.to_string().as_bytes(),
        );
        (status, serde_json::from_str(&body).unwrap_or(Value::Null))
    }

    fn metric(&self, name: &str) -> u64 {
        let (status, _, text) = http(self.local(), "GET", "/metrics", &[], b"");
        assert_eq!(status, 200, "/metrics");
        metric_in(&text, name)
    }

    fn subscriber(&self, topics: &[&str]) -> Sub {
        let mut sub = Sub::connect_to(self.public(), "/ws");
        sub.subscribe(topics);
        sub
    }

    /// CPU time the process has used so far (user and system), from /proc.
    fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.process.pid()))
            .expect("/proc stat");
        // Fields after the command name (which may hold spaces): utime and stime are the 12th
        // and 13th, in clock ticks (USER_HZ, 100 on Linux).
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .expect("stat format")
            .1
            .split_whitespace()
            .collect();
        let ticks: u64 =
            fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
        Duration::from_millis(ticks * 10)
    }
}

/// An HTTP answer: status, body, and when it came.
type Answer = (u16, Value, Instant);

/// `POST` on a connection and a thread of their own, so that it can wait for Redis.
fn post_in_background(local: SocketAddr, target: &str, body: String) -> JoinHandle<Answer> {
    let target = target.to_owned();
    thread::spawn(move || {
        let (status, _, body) = http(local, "POST", &target, &[], body.as_bytes());
        let body = serde_json::from_str(&body).unwrap_or(Value::Null);
        (status, body, Instant::now())
    })
}

/// An NDJSON batch of `n` publications to `topic`, each data marked with `batch` and its line.
fn ndjson(topic: &str, batch: u64, n: u64) -> String {
    (0..n)
        .map(|line| json!({"topic": topic, "data": {"batch": batch, "line": line}}).to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The seqs of `topic` among `got`, in the order they came.
fn seqs_of(got: &[Msg], topic: &str) -> Vec<u64> {
    got.iter().filter(|m| m.0 == topic).map(|m| m.1).collect()
}

/// How long each kind of request took, every time.
#[derive(Default)]
struct Latencies(BTreeMap<&'static str, Vec<Duration>>);

impl Latencies {
    fn time<T>(&mut self, what: &'static str, f: impl FnOnce() -> T) -> T {
        let start = Instant::now();
        let out = f();
        self.0.entry(what).or_default().push(start.elapsed());
        out
    }

    fn print(&self, scenario: &str) {
        for (what, all) in &self.0 {
            let mut sorted = all.clone();
            sorted.sort();
            let worst = sorted[sorted.len() - 1];
            let round = all.iter().position(|d| *d == worst).unwrap_or(0) + 1;
            eprintln!(
                "{scenario}: {what:<28} n={:<3} min {:>9.3?}  median {:>9.3?}  max {:>9.3?} \
                 (round {round})",
                sorted.len(),
                sorted[0],
                sorted[sorted.len() / 2],
                worst
            );
        }
    }

    fn check(&self, scenario: &str) {
        for (what, all) in &self.0 {
            let worst = all.iter().max().copied().unwrap_or_default();
            assert!(
                worst < BOUND,
                "{scenario}: {what} took {worst:?} (bound {BOUND:?}); all: {all:?}"
            );
        }
    }
}

/// One round of what the worker must keep doing while Redis is stopped, each timed: a
/// subscriber's ping, a new client's connection, subscribe and snapshots, the page, and the
/// local API's `/healthz` and `/metrics`. Returns the publications awaiting Redis's answer.
fn probe(node: &Node, sub: &mut Sub, topics: &[&str], lat: &mut Latencies, round: u64) -> u64 {
    lat.time("subscriber ping", || {
        sub.send(json!({"op": "ping", "id": round}));
        let m = sub.next();
        assert_eq!(m, json!({"type": "pong", "id": round}), "round {round}");
    });
    lat.time("new client: subscribe+snaps", || {
        let mut client = Sub::connect_to(node.public(), "/ws");
        client.subscribe(topics);
        for _ in topics {
            let m = client.next();
            assert_eq!(m["snapshot"], true, "a snapshot: {m}");
        }
    });
    lat.time("GET / (public)", || {
        let (status, _, body) = http(node.public(), "GET", "/", &[], b"");
        assert_eq!(status, 200, "the page");
        assert!(!body.is_empty(), "the page");
    });
    lat.time("GET /healthz", || {
        let status = node.healthz();
        assert!(status == 200 || status == 503, "/healthz: {status}");
    });
    lat.time("GET /metrics", || {
        node.metric("tickwire_publish_awaiting_answer")
    })
}

#[test]
fn a_stalled_redis_stalls_no_worker_and_what_was_in_flight_lands_when_it_resumes() {
    let _alone = one_at_a_time();
    let scratch = Scratch::new("stall-short");
    let redis = RedisServer::start(free_port(), &scratch.0);
    let node = Node::start("stall-short", &redis, &[]);
    let topics = ["stall/http", "stall/batch", "stall/stream"];
    for t in topics {
        assert_eq!(node.publish(t, &json!({"seed": t})).0, 202, "seed {t}");
    }
    let mut watcher = node.subscriber(&topics);
    let seeds = collect(&mut watcher, topics.len());
    assert!(seeds.iter().all(|m| m.1 == 1), "{seeds:?}");
    let mut publisher = StreamPublisher::connect(node.local());
    publisher.send_with_id("stall/warmup", &json!(0), 0);
    assert_eq!(publisher.answer()["type"], "published");

    const FRAMES: u64 = WINDOW + 476;
    let mut frozen = redis.freeze();
    let singles: Vec<_> = (0..3)
        .map(|i| {
            let body = json!({"single": i}).to_string();
            post_in_background(node.local(), "/publish?topic=stall/http", body)
        })
        .collect();
    let batches: Vec<_> = (0..2)
        .map(|b| post_in_background(node.local(), "/publish", ndjson("stall/batch", b, 3)))
        .collect();
    // Every 128th frame is refused at once (a wildcard is no topic to publish to); its error
    // waits behind the frames before it, and takes a place in the window too: the 1024th frame,
    // refused, fills the window.
    let refused = |i: u64| i % 128 == 0;
    for i in 1..=FRAMES {
        let topic = if refused(i) {
            "stall/#"
        } else {
            "stall/stream"
        };
        publisher.send_with_id(topic, &json!({"frame": i}), i);
    }
    let handed_to_redis = 3 + 2 + (1..=WINDOW).filter(|&i| !refused(i)).count() as u64;

    let mut lat = Latencies::default();
    let mut awaiting = Vec::new();
    let mut round = 0;
    while frozen.since.elapsed() < SHORT_STALL {
        round += 1;
        awaiting.push(probe(&node, &mut watcher, &topics, &mut lat, round));
        thread::sleep(Duration::from_millis(20));
    }
    // Nothing was answered while Redis was stopped (so all of it was in flight)...
    assert!(
        singles.iter().chain(&batches).all(|h| !h.is_finished()),
        "an HTTP publication was answered while Redis was stopped"
    );
    assert_eq!(publisher.answer_within(Duration::from_millis(10)), None);
    // ...and the streaming publisher was paused at its window: its first 1024 frames taken (all
    // but the refused ones handed to Redis, with the 5 HTTP publications), the others left
    // unread, and it stayed so.
    let n = awaiting.len();
    assert!(n >= 3, "only {n} probe rounds in {SHORT_STALL:?}");
    assert_eq!(
        awaiting[n - 2..],
        [handed_to_redis, handed_to_redis],
        "awaiting Redis, per round: {awaiting:?}"
    );
    let resumed = frozen.resume();
    let stalled = resumed - frozen.since;
    eprintln!("short stall: Redis stopped for {stalled:?}, {round} probe rounds");
    lat.print("short stall");

    let mut http_seqs = Vec::new();
    for h in singles {
        let (status, body, at) = h.join().expect("HTTP thread");
        assert_eq!(status, 202, "{body}");
        assert!(at >= resumed, "answered before Redis resumed: {body}");
        http_seqs.push(body["seq"].as_u64().expect("seq"));
    }
    for h in batches {
        let (status, body, _) = h.join().expect("HTTP thread");
        assert_eq!((status, body), (202, json!({"published": 3})));
    }
    // Answers in frame order; the publisher is alone on its topic, so its seqs follow the
    // seed's, one by one.
    let mut frame_of_seq = HashMap::new();
    let mut seq = 1;
    for i in 1..=FRAMES {
        let answer = publisher.answer();
        if refused(i) {
            assert_eq!(
                (&answer["type"], &answer["code"], &answer["id"]),
                (&json!("error"), &json!("invalid_topic"), &json!(i)),
                "{answer}"
            );
            continue;
        }
        seq += 1;
        let expected = json!({"type": "published", "seq": seq, "id": i});
        assert_eq!(answer, expected, "frame {i}");
        frame_of_seq.insert(seq, i);
    }
    let published = FRAMES - (1..=FRAMES).filter(|&i| refused(i)).count() as u64;
    // Every publication reached the subscriber, each topic in seq order.
    let got = collect(&mut watcher, 3 + 2 * 3 + published as usize);
    for (topic, n) in [
        ("stall/http", 3),
        ("stall/batch", 6),
        ("stall/stream", published),
    ] {
        let every: Vec<u64> = (2..=n + 1).collect();
        assert_eq!(
            seqs_of(&got, topic),
            every,
            "every seq of {topic}, in order"
        );
    }
    http_seqs.sort();
    assert_eq!(
        http_seqs,
        [2, 3, 4],
        "the seqs the HTTP publishers were told"
    );
    for (topic, seq, data) in &got {
        if topic == "stall/stream" {
            assert_eq!(data, &json!({"frame": frame_of_seq[seq]}), "seq {seq}");
        }
    }
    assert_eq!(
        node.metric("tickwire_redis_disconnects_total"),
        0,
        "the link went down: Redis was stopped for {stalled:?}, which must stay under the node's \
         {COMMAND_TIMEOUT:?} command timeout"
    );
    assert_eq!(node.metric("tickwire_publish_awaiting_answer"), 0);
    lat.check("short stall");
}

#[test]
fn past_the_answer_timeout_what_was_in_flight_is_refused_and_never_delivered_twice() {
    stays_stopped(
        "stall-answer-timeout",
        &["--redis-answer-timeout", "1"],
        Duration::from_secs(1),
        true,
    );
}

#[test]
fn past_the_command_timeout_what_was_in_flight_is_refused_and_never_delivered_twice() {
    // The default answer timeout (5 s) is longer than the command timeout (2 s): the node gives
    // up on Redis first, and answers what is in flight then.
    // Only the publications already sent to Redis may or may not have reached it (and their
    // errors say so); those still queued behind them are refused as never sent.
    stays_stopped("stall-command-timeout", &[], COMMAND_TIMEOUT, false);
}

/// Redis stays stopped until the node gives up (`gives_up_after`, from the first publication
/// in flight): the in-flight publications are answered 503 `unavailable` (each saying that it
/// may or may not have been published, if `all_unknown`), the link goes down, and after Redis
/// resumes each publication is delivered at most once.
fn stays_stopped(name: &str, extra: &[&str], gives_up_after: Duration, all_unknown: bool) {
    let unknown = |message: &Value| {
        let said = message.as_str().unwrap_or("").contains("may or may not");
        !all_unknown || said
    };
    let _alone = one_at_a_time();
    let scratch = Scratch::new(name);
    let redis = RedisServer::start(free_port(), &scratch.0);
    let node = Node::start(name, &redis, extra);
    let topics = ["gone/http", "gone/batch", "gone/stream"];
    for t in topics {
        assert_eq!(node.publish(t, &json!({"seed": t})).0, 202, "seed {t}");
    }
    let mut watcher = node.subscriber(&topics);
    collect(&mut watcher, topics.len());
    let mut publisher = StreamPublisher::connect(node.local());
    publisher.send_with_id("gone/warmup", &json!(0), 0);
    assert_eq!(publisher.answer()["type"], "published");

    const FRAMES: u64 = 20;
    let mut frozen = redis.freeze();
    let singles: Vec<_> = (0..2)
        .map(|i| {
            let body = json!({"single": i}).to_string();
            post_in_background(node.local(), "/publish?topic=gone/http", body)
        })
        .collect();
    let batch = post_in_background(node.local(), "/publish", ndjson("gone/batch", 0, 3));
    for i in 1..=FRAMES {
        publisher.send_with_id("gone/stream", &json!({"frame": i}), i);
    }

    // The worker keeps serving until the node gives up on Redis, and after.
    let mut lat = Latencies::default();
    let mut round = 0;
    let limit = gives_up_after + Duration::from_secs(3);
    let all = |hs: &[&JoinHandle<Answer>]| hs.iter().all(|h| h.is_finished());
    while !all(&[&singles[0], &singles[1], &batch]) && frozen.since.elapsed() < limit {
        round += 1;
        probe(&node, &mut watcher, &topics, &mut lat, round);
        thread::sleep(Duration::from_millis(20));
    }
    for h in singles.into_iter().chain([batch]) {
        let (status, body, at) = h.join().expect("HTTP thread");
        let after = at - frozen.since;
        eprintln!("{name}: HTTP publication answered {status} after {after:?}");
        assert_eq!(
            (status, &body["code"]),
            (503, &json!("unavailable")),
            "{body}"
        );
        assert!(after >= gives_up_after, "answered after {after:?}: {body}");
        assert!(unknown(&body["error"]), "{body}");
    }
    // The stream's errors, in frame order.
    for i in 1..=FRAMES {
        let e = publisher.answer();
        assert_eq!(
            (&e["type"], &e["code"], &e["id"]),
            (&json!("error"), &json!("unavailable"), &json!(i)),
            "{e}"
        );
        assert!(unknown(&e["message"]), "{e}");
    }

    // Silent for the command timeout: the link goes down. The late answers to what was given up
    // on come back to the idle worker meanwhile; it must not spin on them.
    eventually(WAIT, "the link is down", || node.healthz() == 503);
    thread::sleep(Duration::from_millis(200));
    let cpu = node.cpu_time();
    thread::sleep(Duration::from_secs(1));
    let used = node.cpu_time() - cpu;
    eprintln!("{name}: CPU used over 1 s with the link down: {used:?}");
    assert!(
        used < Duration::from_millis(300),
        "the idle node used {used:?} of CPU in 1 s (spinning?)"
    );
    // Refused at once now, with the worker still serving.
    round += 1;
    probe(&node, &mut watcher, &topics, &mut lat, round);
    let (status, body) = lat.time("refused publish (HTTP)", || {
        node.publish("gone/http", &json!({"refused": "http"}))
    });
    assert_eq!(
        (status, &body["code"]),
        (503, &json!("unavailable")),
        "{body}"
    );
    lat.time("refused publish (stream)", || {
        publisher.send_with_id("gone/stream", &json!({"refused": "stream"}), FRAMES + 1);
        let e = publisher.answer();
        assert_eq!(
            (&e["code"], &e["id"]),
            (&json!("unavailable"), &json!(FRAMES + 1))
        );
    });

    let resumed = frozen.resume();
    eprintln!(
        "{name}: Redis stopped for {:?}, {round} probe rounds",
        resumed - frozen.since
    );
    lat.print(name);
    eventually(WAIT, "the link is back", || node.healthz() == 200);
    eprintln!("{name}: link back {:?} after SIGCONT", resumed.elapsed());

    // A sentinel per topic, then everything the subscriber got: each topic in strictly
    // increasing seqs (no seq twice), each publication at most once, the sentinel last.
    let mut sentinels = HashMap::new();
    for t in topics {
        let (status, body) = node.publish(t, &json!({"sentinel": t}));
        assert_eq!(status, 202, "{body}");
        sentinels.insert(t, body["seq"].as_u64().expect("seq"));
    }
    let mut got = Vec::new();
    let mut seen = 0;
    while seen < topics.len() {
        let m = as_msg(&watcher.next());
        if m.2.get("sentinel").is_some() {
            assert_eq!(Some(&m.1), sentinels.get(m.0.as_str()), "{m:?}");
            seen += 1;
        }
        got.push(m);
    }
    let mut times: HashMap<String, usize> = HashMap::new();
    for (_, _, data) in &got {
        *times.entry(data.to_string()).or_default() += 1;
    }
    for (data, n) in &times {
        assert_eq!(*n, 1, "{data} delivered {n} times");
    }
    for t in topics {
        let seqs = seqs_of(&got, t);
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "{t}: seqs not strictly increasing: {seqs:?}"
        );
    }
    eprintln!(
        "{name}: of the publications answered 503, {} reached the subscriber after Redis resumed",
        got.len() - topics.len()
    );
    assert_eq!(node.metric("tickwire_publish_awaiting_answer"), 0);
    lat.check(name);
}
