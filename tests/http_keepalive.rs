//! HTTP/1.1 persistent connections over real sockets (issue 18): many requests per connection
//! on the local and the public listener, pipelining in order, HTTP/1.0, `Connection: close`,
//! the idle timeout and the request limit, bodies by `Content-Length` however they are split,
//! refusals that close, an upgrade after a plain request, and the bounds a kept connection
//! stays within.

mod util;
use std::time::Duration;

use serde_json::{json, Value};
use util::broker as b;
use util::http::{publish_request, request, KeepAlive};

use util::broker::metric_in;

#[test]
fn three_publishes_and_the_metrics_on_one_connection() {
    let broker = b::start(|c| c.workers = 1);
    let mut sub = b::Sub::connect(&broker, "");
    sub.subscribe(&["ka/a"]);
    let accepted_before = b::metric(&broker, "tickwire_connections_accepted_total");
    let mut c = KeepAlive::connect(b::local(&broker));
    let port = c.local_port();
    for i in 1..=3 {
        let r = c.call(
            "POST",
            "/publish?topic=ka/a",
            &[],
            format!("{i}").as_bytes(),
        );
        assert_eq!((r.status, r.json()), (202, json!({ "seq": i })));
        assert!(r.keeps(), "{:?}", r.headers);
        assert_eq!(sub.next()["data"], json!(i));
    }
    // The fourth request on the same socket: the server accepted this one connection for all.
    let r = c.call("GET", "/metrics", &[], b"");
    assert_eq!((r.status, c.local_port()), (200, port));
    let text = r.text();
    assert_eq!(
        metric_in(&text, "tickwire_connections_accepted_total"),
        accepted_before + 1
    );
    assert!(metric_in(&text, "tickwire_http_requests_total") >= 4);
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let broker = b::start(|_| {});
    let mut c = KeepAlive::connect(b::local(&broker));
    let mut burst = Vec::new();
    for i in 1..=5 {
        burst.extend(publish_request("pipe/x", &format!("{{\"n\":{i}}}")));
    }
    burst.extend(request("GET", "/healthz", &[], b""));
    burst.extend(request("GET", "/nowhere", &[], b""));
    burst.extend(publish_request("pipe/x", "6"));
    c.send(&burst);
    for seq in 1..=5 {
        let r = c.read_response();
        assert_eq!((r.status, r.json()), (202, json!({ "seq": seq })));
    }
    assert_eq!(c.read_response().json(), json!({"status": "ok"}));
    let r = c.read_response();
    assert!(r.status == 404 && r.keeps(), "a 404 keeps the connection");
    assert_eq!(c.read_response().json(), json!({"seq": 6}));
    // And the connection is still good for more.
    assert_eq!(c.call("GET", "/healthz", &[], b"").status, 200);
}

#[test]
fn http_1_0_closes_unless_it_asks_for_keep_alive() {
    let broker = b::start(|_| {});
    let mut c = KeepAlive::connect(b::local(&broker));
    c.send(b"GET /healthz HTTP/1.0\r\n\r\n");
    let r = c.read_response();
    assert!(r.status == 200 && r.closes(), "{:?}", r.headers);
    c.expect_closed();

    let mut c = KeepAlive::connect(b::local(&broker));
    c.send(b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let r = c.read_response();
    assert!(r.status == 200 && r.keeps(), "{:?}", r.headers);
    c.send(b"POST /publish?topic=old/x HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n7");
    let r = c.read_response();
    assert!(r.status == 202 && r.keeps(), "{:?}", r.headers);
    // Without the header again, this one is the last.
    c.send(b"GET /healthz HTTP/1.0\r\n\r\n");
    assert!(c.read_response().closes());
    c.expect_closed();
}

#[test]
fn connection_close_is_the_last_request() {
    let broker = b::start(|_| {});
    let mut c = KeepAlive::connect(b::local(&broker));
    assert!(c.call("GET", "/healthz", &[], b"").keeps());
    // Whatever follows `Connection: close` in the same write is not answered.
    let mut burst = request("GET", "/healthz", &[("Connection", "close")], b"");
    burst.extend(request("GET", "/healthz", &[], b""));
    c.send(&burst);
    let r = c.read_response();
    assert!(r.status == 200 && r.closes(), "{:?}", r.headers);
    c.expect_closed();
}

#[test]
fn a_client_that_half_closes_is_answered_then_closed() {
    // The default idle timeout is a minute: an end of stream the server missed would leave
    // these waiting past the client's read timeout.
    let broker = b::start(|_| {});
    // The request and the end of stream together.
    let mut c = KeepAlive::connect(b::local(&broker));
    c.send(&request("GET", "/healthz", &[], b""));
    c.stream
        .shutdown(std::net::Shutdown::Write)
        .expect("half-close");
    assert_eq!(c.read_response().status, 200);
    c.expect_closed();
    // The end of stream alone, on a kept connection that was answered before.
    let mut c = KeepAlive::connect(b::local(&broker));
    assert!(c.call("GET", "/healthz", &[], b"").keeps());
    c.stream
        .shutdown(std::net::Shutdown::Write)
        .expect("half-close");
    c.expect_closed();
}

#[test]
fn an_idle_connection_is_closed_after_the_idle_timeout() {
    let broker = b::start(|c| c.http_idle_timeout = Duration::from_millis(300));
    let mut c = KeepAlive::connect(b::local(&broker));
    assert!(c.call("GET", "/healthz", &[], b"").keeps());
    // Silent close, no 408: no request was late.
    c.expect_closed();
}

#[test]
fn a_request_begun_on_a_kept_connection_has_the_handshake_timeout() {
    // A client that starts its next request and stalls (slowloris) is not given the long idle
    // timeout: 408 and close.
    let broker = b::start(|c| {
        c.handshake_timeout = Duration::from_millis(300);
        c.http_idle_timeout = Duration::from_secs(60);
    });
    let mut c = KeepAlive::connect(b::local(&broker));
    assert!(c.call("GET", "/healthz", &[], b"").keeps());
    c.send(b"POST /publish?topic=slow HTTP/1.1\r\nContent-Length: 10\r\n\r\n12");
    let r = c.read_response();
    assert!(
        r.status == 408 && r.closes(),
        "{} {:?}",
        r.status,
        r.headers
    );
    c.expect_closed();
}

#[test]
fn the_last_request_allowed_is_answered_with_connection_close() {
    let broker = b::start(|c| c.http_max_requests = 3);
    let mut c = KeepAlive::connect(b::local(&broker));
    assert!(c.call("GET", "/healthz", &[], b"").keeps());
    assert!(c.call("GET", "/healthz", &[], b"").keeps());
    let r = c.call("GET", "/healthz", &[], b"");
    assert!(r.status == 200 && r.closes(), "{:?}", r.headers);
    c.expect_closed();
}

#[test]
fn a_body_split_over_many_writes_is_read_whole() {
    let broker = b::start(|_| {});
    let mut sub = b::Sub::connect(&broker, "");
    sub.subscribe(&["split/x"]);
    let mut c = KeepAlive::connect(b::local(&broker));
    let body = format!("{{\"text\":\"{}\"}}", "y".repeat(3000));
    let req = publish_request("split/x", &body);
    // Head and body in small pieces, the boundary between them inside one piece.
    for piece in req.chunks(7) {
        c.send(piece);
    }
    let r = c.read_response();
    assert_eq!((r.status, r.keeps()), (202, true));
    assert_eq!(
        sub.next()["data"]["text"].as_str().map(str::len),
        Some(3000)
    );
    // A second request after a split one starts clean.
    assert_eq!(c.call("GET", "/healthz", &[], b"").status, 200);
}

#[test]
fn curl_is_told_to_continue_before_it_sends_a_body() {
    let broker = b::start(|_| {});
    let mut c = KeepAlive::connect(b::local(&broker));
    c.send(
        b"POST /publish?topic=cont/x HTTP/1.1\r\nContent-Length: 9\r\nExpect: 100-continue\r\n\r\n",
    );
    assert_eq!(c.read_response().status, 100);
    c.send(b"{\"a\":1.5}");
    let r = c.read_response();
    assert_eq!((r.status, r.keeps()), (202, true));
}

#[test]
fn an_oversize_body_is_refused_while_it_is_still_arriving() {
    // The default limit, 8 MiB: the answer comes as soon as the head says the body is over it.
    let broker = b::start(|_| {});
    let mut c = KeepAlive::connect(b::local(&broker));
    assert!(c.call("GET", "/healthz", &[], b"").keeps());
    let size = 8 * 1024 * 1024 + 1;
    c.send(format!("POST /publish HTTP/1.1\r\nContent-Length: {size}\r\n\r\n").as_bytes());
    c.send(&vec![b' '; 256 * 1024]);
    let r = c.read_response();
    assert!(
        r.status == 413 && r.closes(),
        "{} {:?}",
        r.status,
        r.headers
    );
    assert!(r.text().contains("8388608"), "{}", r.text());
    // The rest of the body is read and dropped, not answered with a reset.
    c.send(&vec![b' '; 256 * 1024]);
    c.expect_closed();

    let broker = b::start(|c| {
        c.max_request_body = 2000;
        c.max_payload = 2000;
    });
    let mut c = KeepAlive::connect(b::local(&broker));
    let at_limit = format!("\"{}\"", "z".repeat(1998));
    assert_eq!(
        c.call("POST", "/publish?topic=big/x", &[], at_limit.as_bytes())
            .status,
        202
    );
    let over = format!("\"{}\"", "z".repeat(1999));
    let r = c.call("POST", "/publish?topic=big/x", &[], over.as_bytes());
    assert!(r.status == 413 && r.closes());
    c.expect_closed();
}

#[test]
fn ambiguous_lengths_chunked_bodies_and_garbage_close_the_connection() {
    let broker = b::start(|_| {});
    let cases: [(&[u8], u16, &str); 4] = [
        (
            b"POST /publish?topic=a HTTP/1.1\r\nContent-Length: +1\r\n\r\n1",
            400,
            "Content-Length must be decimal digits only",
        ),
        (
            b"POST /publish?topic=a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n1\r\n0\r\n\r\n",
            411,
            "chunked request bodies are not supported: send Content-Length",
        ),
        (
            b"POST /publish?topic=a HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n12",
            400,
            "conflicting Content-Length headers",
        ),
        (b"\x16\x03\x01 hello\r\n\r\n", 400, "malformed HTTP request"),
    ];
    for (bytes, status, message) in cases {
        // After a good request, so the refusal ends a kept connection.
        let mut c = KeepAlive::connect(b::local(&broker));
        assert!(c.call("GET", "/healthz", &[], b"").keeps());
        c.send(bytes);
        let r = c.read_response();
        assert_eq!((r.status, r.text().trim()), (status, message));
        assert!(r.closes(), "{:?}", r.headers);
        c.expect_closed();
    }
    // A head over 8 KiB: 431.
    let mut c = KeepAlive::connect(b::local(&broker));
    let big = "a".repeat(9 * 1024);
    c.send(format!("GET /healthz HTTP/1.1\r\nX-Big: {big}\r\n\r\n").as_bytes());
    let r = c.read_response();
    assert!(r.status == 431 && r.closes());
    c.expect_closed();
}

#[test]
fn a_plain_request_then_the_streaming_publisher_upgrade_on_one_connection() {
    let broker = b::start(|_| {});
    let mut sub = b::Sub::connect(&broker, "");
    sub.subscribe(&["up/+"]);
    let mut c = KeepAlive::connect(b::local(&broker));
    let r = c.call("POST", "/publish?topic=up/a", &[], b"1");
    assert_eq!((r.status, r.keeps()), (202, true));
    let addr = b::local(&broker);
    let (ws, resp) = tungstenite::client(format!("ws://{addr}/publish"), c.into_stream())
        .expect("the upgrade on the kept connection");
    assert_eq!(resp.status(), 101);
    let mut publisher = b::Sub { ws };
    publisher.send(json!({"topic": "up/b", "data": 2, "id": 1}));
    assert_eq!(
        publisher.next(),
        json!({"type": "published", "seq": 1, "id": 1})
    );
    let got: Vec<Value> = (0..2).map(|_| sub.next()["data"].clone()).collect();
    assert_eq!(got, [json!(1), json!(2)]);
}

#[test]
fn the_public_page_twice_on_one_connection() {
    let broker = b::start(|_| {});
    let mut c = KeepAlive::connect(broker.public_addr());
    let first = c.call("GET", "/", &[], b"");
    let second = c.call("GET", "/", &[], b"");
    for r in [&first, &second] {
        assert_eq!(r.status, 200);
        assert!(r.keeps());
        assert!(r
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/html")));
    }
    assert_eq!(first.body, second.body);
    assert!(first.text().contains("</html>"));
}

#[test]
fn idle_kept_connections_count_against_max_connections() {
    let broker = b::start(|c| {
        c.max_connections = 2;
        c.workers = 1;
    });
    let mut kept: Vec<KeepAlive> = (0..2)
        .map(|_| {
            let mut c = KeepAlive::connect(b::local(&broker));
            assert!(c.call("GET", "/healthz", &[], b"").keeps());
            c
        })
        .collect();
    let mut third = KeepAlive::connect(b::local(&broker));
    let r = third.call("GET", "/healthz", &[], b"");
    assert_eq!(r.status, 503, "{}", r.text());
    // One kept connection goes: a new one is served again.
    kept.pop();
    b::eventually(Duration::from_secs(10), "a free connection slot", || {
        let mut c = KeepAlive::connect(b::local(&broker));
        c.call("GET", "/healthz", &[], b"").status == 200
    });
    drop(kept);
}

#[test]
fn a_client_that_pipelines_without_reading_holds_bounded_memory() {
    // 6,000 requests for the 10 KiB page in one write are 60 MiB of answers; the server writes
    // them as the client reads, holding only about `outbound_soft_limit` at a time.
    let tw = util::child::Tickwire::start("pipeline-unread", &["--workers", "1"]);
    let before = tw.status_kib("VmHWM:");
    let mut c = KeepAlive::connect(tw.public);
    let count = 6_000;
    let mut burst = Vec::new();
    for _ in 0..count {
        burst.extend(request("GET", "/", &[], b""));
    }
    // Written from a thread: the server stops reading while its answers wait, so a write this
    // size may block until this thread reads.
    let mut writer = c.stream.try_clone().expect("clone");
    let sending = std::thread::spawn(move || {
        use std::io::Write;
        writer.write_all(&burst).expect("write the burst");
    });
    let mut bytes = 0;
    for _ in 0..count {
        let r = c.read_response();
        assert_eq!(r.status, 200);
        bytes += r.body.len();
    }
    sending.join().expect("writer");
    assert!(bytes > 50 * 1024 * 1024);
    let grew = tw.status_kib("VmHWM:").saturating_sub(before);
    assert!(grew < 8 * 1024, "peak RSS grew by {grew} KiB");
}

#[test]
fn pipelined_publishes_answered_later_through_redis_stay_in_order() {
    // With --redis every publish is answered when Redis has answered (Route::Later): the next
    // pipelined request waits in the input until then, and is read again after.
    let scratch = util::redis::Scratch::new("keepalive");
    let redis = util::redis::RedisServer::start(util::redis::free_port(), &scratch.0);
    let url = redis.url();
    let tw = util::child::Tickwire::start("keepalive-redis", &["--workers", "1", "--redis", &url]);
    b::eventually(util::redis::WAIT, "the node is healthy", || {
        KeepAlive::connect(tw.local)
            .call("GET", "/healthz", &[], b"")
            .status
            == 200
    });
    let mut c = KeepAlive::connect(tw.local);
    let mut burst = Vec::new();
    for i in 1..=20 {
        burst.extend(publish_request("later/x", &i.to_string()));
    }
    burst.extend(request(
        "POST",
        "/publish",
        &[],
        b"{\"topic\":\"later/y\",\"data\":1}\n",
    ));
    burst.extend(request("GET", "/healthz", &[], b""));
    c.send(&burst);
    for seq in 1..=20 {
        let r = c.read_response();
        assert_eq!(
            (r.status, r.json(), r.keeps()),
            (202, json!({ "seq": seq }), true)
        );
    }
    assert_eq!(c.read_response().json(), json!({"published": 1}));
    assert_eq!(c.read_response().json(), json!({"status": "ok"}));
    let r = c.call(
        "POST",
        "/publish?topic=later/x",
        &[("Connection", "close")],
        b"21",
    );
    assert!(r.status == 202 && r.closes(), "{:?}", r.headers);
    assert_eq!(r.json(), json!({"seq": 21}));
    c.expect_closed();
}
