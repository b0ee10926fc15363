//! Hostile clients over real sockets, against the `tickwire` binary as a child process. After
//! each attack the broker still serves a fresh client, its connection gauge and its file
//! descriptors are back to their baseline, and its memory is back near it.
//!
//! The red-team cases: duplicate patterns in one subscribe, the same through the upgrade URL,
//! invalid UTF-8 published, descriptor exhaustion under a low open-file limit, deeply nested
//! JSON, and a signed `Content-Length`.

mod util;
use util::broker as b;
use util::child::Tickwire;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;
use tickwire::ws::frame::{encode_client_frame, OpCode};

const KEY: [u8; 4] = [9, 9, 9, 9];

/// A broker with short timeouts and small limits, so attacks hit them quickly.
fn hostile_broker(extra: &[&str]) -> Tickwire {
    let mut args = vec![
        "--workers",
        "2",
        "--handshake-timeout",
        "0.5",
        "--ping-interval",
        "0.5",
        "--pong-timeout",
        "1.5",
        "--slow-consumer-timeout",
        "1",
        "--outbound-soft-limit",
        "65536",
        "--outbound-hard-limit",
        "524288",
        "--max-connections",
        "200",
        "--log-level",
        "warn",
    ];
    args.extend_from_slice(extra);
    Tickwire::start("hostile", &args)
}

fn connections(t: &Tickwire) -> u64 {
    // The metrics request is itself a connection, before and after alike.
    b::metric_at(t.local, "tickwire_connections")
}

/// Runs `attack`, then checks the broker recovered fully.
fn survives(t: &Tickwire, name: &str, attack: impl FnOnce(SocketAddr)) {
    let (conns, files, rss) = (connections(t), t.fds(), t.rss_kib());
    attack(t.public);
    b::eventually(
        Duration::from_secs(15),
        &format!("{name}: connections back to {conns}"),
        || connections(t) <= conns,
    );
    b::eventually(
        Duration::from_secs(5),
        &format!("{name}: fds back to {files}"),
        || t.fds() <= files,
    );
    let mut sub = b::Sub::connect_to(t.public, "/ws");
    sub.subscribe(&["h/x"]);
    b::publish_at(t.local, "h/x", "1");
    assert_eq!(
        sub.next()["type"],
        "msg",
        "{name}: a fresh client is served"
    );
    drop(sub);
    let grown = t.rss_kib().saturating_sub(rss);
    assert!(grown < 32 * 1024, "{name}: RSS grew by {grown} KiB");
}

fn open_ws(addr: SocketAddr) -> TcpStream {
    util::raw_websocket(addr, "/ws")
}

/// Reads frames until a close frame; returns its code.
fn close_code_of(s: &mut TcpStream) -> u16 {
    loop {
        let (op, payload) = util::read_frame(s);
        if op == 8 {
            return util::close_code(&payload);
        }
    }
}

#[test]
fn slowloris_handshake_is_timed_out() {
    let t = hostile_broker(&[]);
    survives(&t, "slowloris", |addr| {
        let mut s = util::raw(addr);
        // One byte at a time, slower than the handshake timeout allows.
        for byte in b"GET /ws HTTP/1.1\r\nHost: x\r\n" {
            if s.write_all(&[*byte]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut resp = Vec::new();
        let _ = s.read_to_end(&mut resp);
        assert!(
            resp.starts_with(b"HTTP/1.1 408 "),
            "{}",
            String::from_utf8_lossy(&resp)
        );
    });
}

#[test]
fn a_handshake_flood_past_max_connections_is_refused_then_drains() {
    let t = hostile_broker(&[]);
    survives(&t, "flood", |addr| {
        let held: Vec<TcpStream> = (0..250)
            .filter_map(|_| TcpStream::connect(addr).ok())
            .collect();
        b::eventually(Duration::from_secs(5), "refusals counted", || {
            b::metric_at(t.local, "tickwire_connections_refused_total") > 0
        });
        drop(held);
    });
}

#[test]
fn garbage_before_and_after_the_handshake() {
    let t = hostile_broker(&[]);
    survives(&t, "garbage", |addr| {
        let mut s = util::raw(addr);
        s.write_all(&[0u8, 255, 13, 10, 13, 10, 7, 7])
            .expect("write");
        let mut resp = Vec::new();
        let _ = s.read_to_end(&mut resp);
        assert!(resp.starts_with(b"HTTP/1.1 400 "));
        let mut s = open_ws(addr);
        s.write_all(b"GET / HTTP/1.1\r\n\r\n not a frame at all")
            .expect("write");
        let (op, payload) = util::read_frame(&mut s);
        assert_eq!((op, util::close_code(&payload)), (8, 1002));
    });
}

#[test]
fn oversized_headers_get_431() {
    let t = hostile_broker(&[]);
    survives(&t, "oversized headers", |addr| {
        let mut s = util::raw(addr);
        let _ = s
            .write_all(format!("GET /ws HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(20_000)).as_bytes());
        let mut resp = Vec::new();
        let _ = s.read_to_end(&mut resp);
        assert!(resp.starts_with(b"HTTP/1.1 431 "));
    });
}

#[test]
fn frames_whose_lengths_lie_and_clients_that_vanish_or_reset() {
    let t = hostile_broker(&[]);
    survives(&t, "lying lengths", |addr| {
        // Claims 60 KB, sends 10 bytes, then goes quiet: the pong timeout ends it.
        let mut s = open_ws(addr);
        let mut frame = encode_client_frame(true, OpCode::Text, &[b'a'; 60_000], KEY);
        frame.truncate(24);
        s.write_all(&frame).expect("write");
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        // Claims 2^40 bytes: over the limit at once.
        let mut s = open_ws(addr);
        s.write_all(&[0x82, 0xff, 0, 0, 1, 0, 0, 0, 0, 0, 1, 2, 3, 4])
            .expect("write");
        let (op, payload) = util::read_frame(&mut s);
        assert_eq!((op, util::close_code(&payload)), (8, 1009));
    });
    survives(&t, "vanish mid-frame", |addr| {
        for _ in 0..20 {
            let mut s = open_ws(addr);
            let frame = encode_client_frame(
                true,
                OpCode::Text,
                b"{\"op\":\"subscribe\",\"topics\":[\"a\"]}",
                KEY,
            );
            s.write_all(&frame[..frame.len() / 2]).expect("write");
        }
    });
    survives(&t, "reset", |addr| {
        for _ in 0..20 {
            let s = open_ws(addr);
            let sock = socket2::Socket::from(s);
            sock.set_linger(Some(Duration::ZERO)).expect("linger 0");
            drop(sock); // RST
        }
    });
}

#[test]
fn clients_that_never_read_are_dropped() {
    let t = hostile_broker(&[]);
    survives(&t, "never read", |addr| {
        let readers: Vec<TcpStream> = (0..5)
            .map(|_| {
                let mut s = util::raw(addr);
                s.write_all(util::upgrade_request("/ws?subscribe=n/%23").as_bytes())
                    .expect("write");
                s
            })
            .collect();
        b::eventually(Duration::from_secs(5), "never-readers subscribed", || {
            b::metric_at(t.local, "tickwire_subscriptions") >= 5
        });
        let pad = "z".repeat(8000);
        let batch: String = (0..2000)
            .map(|i| {
                format!(
                    "{}\n",
                    json!({"topic": format!("n/{}", i % 50), "data": pad})
                )
            })
            .collect();
        for chunk in batch.lines().collect::<Vec<_>>().chunks(200) {
            let body = chunk.join("\n");
            let (status, _, _) = b::http(t.local, "POST", "/publish", &[], body.as_bytes());
            assert_eq!(status, 202);
        }
        // Conflated, they hold at most the soft limit and one frame per topic here; the kernel
        // buffers what it can; then they are closed for output not read in time, or dropped
        // for not answering pings, whichever comes first.
        b::eventually(Duration::from_secs(10), "never-readers closed", || {
            b::metric_at(t.local, "tickwire_slow_consumers_closed_total")
                + b::metric_at(t.local, "tickwire_pong_timeouts_total")
                >= 5
        });
        drop(readers);
    });
}

#[test]
fn ping_and_subscribe_floods_are_closed_and_counted() {
    let t = hostile_broker(&[]);
    survives(&t, "ping flood", |addr| {
        let mut s = open_ws(addr);
        let flood: Vec<u8> = (0..200)
            .flat_map(|_| encode_client_frame(true, OpCode::Ping, b"", KEY))
            .collect();
        let _ = s.write_all(&flood);
        assert_eq!(close_code_of(&mut s), 1008);
    });
    survives(&t, "subscribe flood", |addr| {
        let mut s = open_ws(addr);
        let one = encode_client_frame(
            true,
            OpCode::Text,
            br#"{"op":"subscribe","topics":["f/+"]}"#,
            KEY,
        );
        let flood: Vec<u8> = (0..500).flat_map(|_| one.clone()).collect();
        let _ = s.write_all(&flood);
        assert_eq!(close_code_of(&mut s), 1008);
    });
    // SECURITY.md's alert metric counts both.
    assert_eq!(b::metric_at(t.local, "tickwire_abuse_closed_total"), 2);
}

#[test]
fn invalid_utf8_everywhere() {
    let t = hostile_broker(&[]);
    survives(&t, "invalid UTF-8", |addr| {
        // In the request target and a header: refused or ignored, never a crash.
        for req in [
            b"GET /ws?subscribe=\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            b"GET /ws HTTP/1.1\r\nHost: \xc3\x28\r\nUpgrade: websocket\r\n\r\n".to_vec(),
        ] {
            let mut s = util::raw(addr);
            s.write_all(&req).expect("write");
            let mut resp = Vec::new();
            let _ = s.read_to_end(&mut resp);
            assert!(
                resp.starts_with(b"HTTP/1.1 4"),
                "{}",
                String::from_utf8_lossy(&resp)
            );
        }
        // In a text frame, in a close reason, in a fragment boundary.
        for frames in [
            encode_client_frame(true, OpCode::Text, b"{\"op\":\"\xff\"}", KEY),
            encode_client_frame(true, OpCode::Close, b"\x03\xe8\xc3\x28", KEY),
            [
                encode_client_frame(false, OpCode::Text, b"\xe2\x82", KEY),
                encode_client_frame(true, OpCode::Continuation, b"x", KEY),
            ]
            .concat(),
        ] {
            let mut s = open_ws(addr);
            s.write_all(&frames).expect("write");
            let (op, payload) = util::read_frame(&mut s);
            assert_eq!((op, util::close_code(&payload)), (8, 1007));
        }
        // Published: a body that is not UTF-8 (as a whole, or inside a JSON string), a topic
        // that is not. Nothing of it may reach a subscriber, who would have to close with 1007.
        let mut sub = b::Sub::connect_to(addr, "/ws?subscribe=a/u");
        assert_eq!(sub.next()["type"], "subscribed");
        let local = t.local;
        for body in [&b"\xff\xfe"[..], b"\"\xff\xfe\"", b"{\"k\":\"\xc3\x28\"}"] {
            let (status, _, answer) = b::http(local, "POST", "/publish?topic=a/u", &[], body);
            assert_eq!(status, 400, "{answer}");
            assert!(answer.contains("invalid_payload"), "{answer}");
        }
        assert_eq!(b::http(local, "POST", "/publish", &[], b"\xff\xfe").0, 400);
        assert_eq!(
            b::http(local, "POST", "/publish?topic=%ff", &[], b"1").0,
            400
        );
        let (status, _) = b::publish_at(local, "a/u", "\"fine\"");
        assert_eq!(status, 202);
        assert_eq!(sub.next()["data"], "fine", "nothing invalid came first");
    });
}

/// One subscribe frame listing `#` 16,000 times, with 10,000 topics cached: the duplicates
/// count once, the snapshots stop at the limit, and a subscriber on the same worker is not held
/// up. (Before: the snapshot work ran once per listed pattern, ~20 s of CPU and 1.2 GiB.)
#[test]
fn duplicate_patterns_cost_what_one_pattern_costs() {
    let t = hostile_broker(&["--workers", "1"]);
    let batch: String = (0..10_000)
        .map(|i| format!("{}\n", json!({"topic": format!("dup/{i}"), "data": i})))
        .collect();
    assert_eq!(
        b::http(t.local, "POST", "/publish", &[], batch.as_bytes()).0,
        202
    );
    let mut other = b::Sub::connect_to(t.public, "/ws");
    other.subscribe(&["elsewhere"]);
    survives(&t, "duplicate patterns", |addr| {
        let mut s = open_ws(addr);
        let topics: Vec<&str> = vec!["#"; 16_000];
        let request = json!({"op": "subscribe", "topics": topics, "id": 1}).to_string();
        assert!(request.len() < 64 * 1024);
        s.write_all(&encode_client_frame(
            true,
            OpCode::Text,
            request.as_bytes(),
            KEY,
        ))
        .expect("write");
        let started = Instant::now();
        other.sync();
        let rtt = started.elapsed();
        eprintln!("a ping on the same worker took {rtt:?} during the 16,000-pattern subscribe");
        assert!(
            rtt < Duration::from_secs(2),
            "the worker stalled for {rtt:?}"
        );
        let (_, ack) = util::read_frame(&mut s);
        let ack: serde_json::Value = serde_json::from_slice(&ack).expect("json");
        assert_eq!(
            b::sans_epoch(ack),
            json!({"type": "subscribed", "topics": ["#"], "id": 1})
        );
        let mut snapshots = 0;
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        while snapshots < 1000 {
            let (op, _) = util::read_frame(&mut s);
            assert_eq!(op, 1);
            snapshots += 1;
        }
    });
    assert_eq!(b::metric_at(t.local, "tickwire_snapshots_total"), 1000);
}

/// `?subscribe=` with the same pattern 1,950 times is one subscription, and it counts against
/// the request limit like a subscribe frame.
#[test]
fn the_upgrade_url_is_held_to_the_same_limits() {
    let t = hostile_broker(&["--max-requests-per-sec", "2"]);
    survives(&t, "URL amplification", |addr| {
        // About 8 KiB of URL: what fits the request head limit.
        let query = vec!["%23"; 1950].join(",");
        let mut sub = b::Sub::connect_to(addr, &format!("/ws?subscribe={query}"));
        assert_eq!(
            b::sans_epoch(sub.next()),
            json!({"type": "subscribed", "topics": ["#"]})
        );
        // The URL's subscribe was request 1 of 2 this second: the second ping is over.
        sub.send(json!({"op": "ping", "id": "a"}));
        sub.send(json!({"op": "ping", "id": "b"}));
        assert_eq!(sub.next(), json!({"type": "pong", "id": "a"}));
        let refused = sub.next();
        assert_eq!(
            (refused["code"].as_str(), &refused["id"]),
            (Some("rate_limited"), &json!("b")),
            "{refused}"
        );
    });
}

/// With the open-file limit taken by public connections, the local API still answers: the
/// public listener stops short of the limit, keeping a reserve, and says so once at WARN.
#[test]
fn a_public_flood_cannot_lock_operators_out() {
    let prlimit = Command::new("prlimit").arg("--version").output();
    assert!(
        prlimit.is_ok_and(|o| o.status.success()),
        "this test needs prlimit (util-linux)"
    );
    let t = start_with_fd_limit(256);
    let flood: Vec<TcpStream> = (0..400)
        .filter_map(|_| TcpStream::connect(t.public).ok())
        .collect();
    b::eventually(Duration::from_secs(5), "public refusals", || {
        b::metric_at(t.local, "tickwire_connections_refused_total") > 0
    });
    assert_eq!(b::http(t.local, "GET", "/healthz", &[], b"").0, 200);
    assert_eq!(b::publish_at(t.local, "ops/x", "1").0, 202);
    let log = t.log_text();
    let warnings = log.matches("open-file limit is 256").count();
    assert_eq!(warnings, 1, "{log}");
    assert!(
        log.contains("at most 192 connections, not max_connections=100000"),
        "{log}"
    );
    drop(flood);
}

/// A `tickwire` whose open-file limit is `n` from the start (`prlimit` around the command).
fn start_with_fd_limit(n: u32) -> Tickwire {
    let wrapper = std::env::temp_dir().join(format!("tickwire-prlimit-{}", std::process::id()));
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec prlimit --nofile={n}:{n} {} \"$@\"\n",
            env!("CARGO_BIN_EXE_tickwire")
        ),
    )
    .expect("wrapper");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let t = Tickwire::start_program(
        &wrapper,
        "low-fd",
        &["--workers", "1", "--max-connections", "100000"],
    );
    let _ = std::fs::remove_file(&wrapper);
    t
}

#[test]
fn deeply_nested_json_is_refused() {
    let t = hostile_broker(&[]);
    survives(&t, "deep JSON", |addr| {
        let deep = format!("{}{}", "[".repeat(32_000), "]".repeat(32_000));
        let (status, _, answer) = b::http(
            t.local,
            "POST",
            "/publish?topic=deep/x",
            &[],
            deep.as_bytes(),
        );
        assert_eq!(status, 400, "{answer}");
        assert!(answer.contains("deeper than 128"), "{answer}");
        let line = format!("{{\"topic\":\"deep/y\",\"data\":{deep}}}\n");
        assert_eq!(
            b::http(t.local, "POST", "/publish", &[], line.as_bytes()).0,
            400
        );
        // A client request nested too deep is an error; the connection stays open.
        let mut sub = b::Sub::connect_to(addr, "/ws");
        let nested = format!(
            r#"{{"op":"ping","id":1,"x":{}{}}}"#,
            "[".repeat(200),
            "]".repeat(200)
        );
        sub.ws
            .send(tungstenite::Message::Text(nested))
            .expect("send");
        assert_eq!(sub.next()["code"], "bad_request");
        sub.sync();
    });
}

#[test]
fn a_signed_content_length_is_refused() {
    let t = hostile_broker(&[]);
    survives(&t, "signed Content-Length", |_| {
        for length in ["+1", "-1", "1, 1", "0x1"] {
            let mut s = util::raw(t.local);
            let req = format!(
                "POST /publish?topic=cl/x HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n1"
            );
            s.write_all(req.as_bytes()).expect("write");
            let resp = String::from_utf8_lossy(&util::read_to_close(&mut s)).into_owned();
            assert!(resp.starts_with("HTTP/1.1 400 "), "{length}: {resp}");
            assert!(resp.contains("Connection: close"), "{resp}");
        }
    });
}
