//! A subscriber that never reads is conflated, then closed with 1008, while a fast subscriber on
//! the same topics loses nothing; the process's memory stays bounded throughout.

mod util;
use util::broker as b;

use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use tickwire::PublishError;

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .expect("VmRSS")
}

/// A subscriber with a tiny receive buffer that subscribes and then never reads again.
fn never_reading_subscriber(addr: std::net::SocketAddr, topics: &str) -> TcpStream {
    let sock =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    sock.set_recv_buffer_size(4096).expect("rcvbuf");
    sock.connect(&addr.into()).expect("connect");
    let mut s: TcpStream = sock.into();
    s.write_all(util::upgrade_request(&format!("/ws?subscribe={topics}")).as_bytes())
        .expect("handshake");
    s
}

#[test]
fn a_slow_consumer_is_conflated_then_closed_and_fast_ones_lose_nothing() {
    const TOPICS: usize = 8;
    /// At least this many rounds (one publication per topic each); more until the slow one is
    /// closed, since how much its socket absorbs first is up to the kernel.
    const MIN_ROUNDS: u64 = 600;
    /// The publisher stays at most this many rounds ahead of the fast reader (8 KiB each, well
    /// under the soft limit), so the fast one keeps up however the machine schedules threads.
    const AHEAD: u64 = 4;
    let broker = b::start(|c| {
        c.outbound_soft_limit = 64 * 1024;
        c.outbound_hard_limit = 1024 * 1024;
        c.slow_consumer_timeout = Duration::from_secs(2);
    });
    let topic_list: Vec<String> = (0..TOPICS).map(|t| format!("q/{t}")).collect();
    let joined = topic_list.join(",");
    let rss_before = rss_kib();

    let mut fast = b::Sub::connect(&broker, &format!("?subscribe={joined}"));
    assert_eq!(fast.next()["type"], "subscribed");
    let slow = never_reading_subscriber(broker.public_addr(), &joined);
    b::eventually(Duration::from_secs(5), "both subscribed", || {
        broker.stats().subscriptions == 2 * TOPICS as u64
    });

    // Rounds the fast reader has seen in full, and (once known) how many were published.
    let seen = Arc::new(AtomicU64::new(0));
    let total = Arc::new(AtomicU64::new(u64::MAX));
    let reader = {
        let (seen, total) = (seen.clone(), total.clone());
        thread::spawn(move || {
            let mut last = vec![0u64; TOPICS];
            let mut quiet_since = Instant::now();
            while last.iter().any(|&s| s < total.load(Ordering::SeqCst)) {
                // Short waits, so that a `total` stored after the last message arrived is seen.
                let Some(m) = fast.next_within(Duration::from_millis(100)) else {
                    assert!(
                        quiet_since.elapsed() < Duration::from_secs(10),
                        "the fast client got nothing for 10 s: {last:?}"
                    );
                    continue;
                };
                quiet_since = Instant::now();
                let t: usize = m["topic"]
                    .as_str()
                    .and_then(|s| s[2..].parse().ok())
                    .expect("topic");
                let seq = m["seq"].as_u64().expect("seq");
                assert_eq!(seq, last[t] + 1, "the fast client saw a gap on q/{t}");
                last[t] = seq;
                seen.store(last.iter().copied().min().unwrap_or(0), Ordering::SeqCst);
            }
            last
        })
    };
    let payload = format!("{{\"pad\":\"{}\"}}", "x".repeat(1000));
    let publisher = broker.publisher();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut rounds = 0;
    while rounds < MIN_ROUNDS || broker.stats().slow_consumers_closed == 0 {
        assert!(
            Instant::now() < deadline,
            "after {rounds} rounds the slow consumer is still open: {:?}",
            broker.stats()
        );
        while rounds >= seen.load(Ordering::SeqCst) + AHEAD {
            assert!(
                Instant::now() < deadline,
                "the fast reader stopped at round {}",
                seen.load(Ordering::SeqCst)
            );
            thread::sleep(Duration::from_micros(200));
        }
        for t in &topic_list {
            loop {
                match publisher.publish(t, payload.as_bytes()) {
                    Ok(_) => break,
                    Err(PublishError::QueueFull) => thread::sleep(Duration::from_millis(1)),
                    Err(e) => panic!("{e}"),
                }
            }
        }
        rounds += 1;
    }
    total.store(rounds, Ordering::SeqCst);
    let last = reader.join().expect("fast reader");
    assert!(
        last.iter().all(|&s| s == rounds),
        "fast client finished every topic: {last:?} of {rounds}"
    );
    let stats = broker.stats();
    assert_eq!(stats.slow_consumers_closed, 1, "{stats:?}");
    assert!(
        stats.conflated > 0,
        "updates for the slow client were conflated: {stats:?}"
    );
    drop(slow);
    b::eventually(Duration::from_secs(10), "only the fast client left", || {
        broker.stats().connections <= 1
    });
    // Megabytes went to the slow client's topics; what it held was bounded by the hard limit.
    let grown = rss_kib().saturating_sub(rss_before);
    assert!(grown < 64 * 1024, "RSS grew by {grown} KiB");
    eprintln!("slow consumer: {stats:?} after {rounds} rounds, RSS grew {grown} KiB");
}

/// Reads a WebSocket through a small receive buffer, at most `chunk` bytes per `pause`: a
/// subscriber on a slow link. Returns the topics seen with their latest seq, and whether a
/// close frame came.
fn read_slowly(
    mut s: TcpStream,
    chunk: usize,
    pause: Duration,
    until: impl Fn(&std::collections::HashMap<String, u64>) -> bool,
    limit: Duration,
) -> (std::collections::HashMap<String, u64>, Option<u16>) {
    use std::io::Read;
    let mut seen = std::collections::HashMap::new();
    let mut buf: Vec<u8> = Vec::new();
    let mut piece = vec![0u8; chunk];
    let deadline = Instant::now() + limit;
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    // Skip the 101.
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut piece).expect("101");
        buf.extend_from_slice(&piece[..n]);
    }
    let head = buf.windows(4).position(|w| w == b"\r\n\r\n").expect("head") + 4;
    buf.drain(..head);
    while Instant::now() < deadline && !until(&seen) {
        match s.read(&mut piece) {
            Ok(0) => return (seen, Some(1006)),
            Ok(n) => buf.extend_from_slice(&piece[..n]),
            Err(_) => {}
        }
        // Whole frames: 2-byte header, 16- or 64-bit lengths, unmasked.
        loop {
            if buf.len() < 2 {
                break;
            }
            let (op, short) = (buf[0] & 0x0f, (buf[1] & 0x7f) as usize);
            let (len, at) = match short {
                126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
                127 if buf.len() >= 10 => {
                    let mut b8 = [0u8; 8];
                    b8.copy_from_slice(&buf[2..10]);
                    (u64::from_be_bytes(b8) as usize, 10)
                }
                126 | 127 => break,
                n => (n, 2),
            };
            if buf.len() < at + len {
                break;
            }
            let payload: Vec<u8> = buf.drain(..at + len).skip(at).collect();
            if op == 8 {
                return (seen, Some(util::close_code(&payload)));
            }
            if op == 1 {
                let m: serde_json::Value = serde_json::from_slice(&payload).expect("json");
                if m["type"] == "msg" {
                    let topic = m["topic"].as_str().expect("topic").to_owned();
                    seen.insert(topic, m["seq"].as_u64().expect("seq"));
                }
            }
        }
        thread::sleep(pause);
    }
    (seen, None)
}

/// A socket with a small receive buffer, upgraded to a subscriber of `query`.
fn small_buffer_subscriber(addr: std::net::SocketAddr, query: &str) -> TcpStream {
    let sock =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    sock.set_recv_buffer_size(16 * 1024).expect("rcvbuf");
    sock.connect(&addr.into()).expect("connect");
    let mut s: TcpStream = sock.into();
    s.write_all(util::upgrade_request(&format!("/ws{query}")).as_bytes())
        .expect("handshake");
    s
}

/// The slow-consumer timeout measures progress, not emptiness: a subscriber reading 64 KiB every
/// 0.1 s after a 2 MB burst (twice the hard limit) is never closed with a 1 s timeout, and gets
/// the latest value of every topic. (Before: writable events only come once a third of the
/// kernel's buffer is free, so a slow reader looked stalled and was closed.)
#[test]
fn a_slow_but_reading_subscriber_is_not_closed_by_a_burst() {
    let broker = b::start(|c| {
        c.workers = 1;
        c.outbound_soft_limit = 64 * 1024;
        c.outbound_hard_limit = 1024 * 1024;
        c.slow_consumer_timeout = Duration::from_secs(1);
    });
    let s = small_buffer_subscriber(broker.public_addr(), "?subscribe=burst/%23");
    b::eventually(Duration::from_secs(5), "subscribed", || {
        broker.stats().subscriptions == 1
    });
    let pad = "x".repeat(8 * 1024);
    let publisher = broker.publisher();
    for i in 0..250 {
        let payload = format!("{{\"pad\":\"{pad}\",\"i\":{i}}}");
        publisher
            .publish(&format!("burst/{i}"), payload.as_bytes())
            .expect("published");
    }
    let (seen, closed) = read_slowly(
        s,
        64 * 1024,
        Duration::from_millis(100),
        |seen| seen.len() == 250,
        Duration::from_secs(20),
    );
    assert_eq!(
        closed,
        None,
        "closed while reading, after {} topics",
        seen.len()
    );
    assert_eq!(seen.len(), 250, "the latest of every topic arrived");
    assert_eq!(broker.stats().slow_consumers_closed, 0);
}

/// One NDJSON batch bigger than the hard limit does not close an actively reading `#`
/// subscriber: what does not fit is conflated, and every topic's latest value arrives.
#[test]
fn one_large_batch_conflates_a_reading_subscriber_instead_of_closing_it() {
    let broker = b::start(|c| {
        c.workers = 1;
        c.outbound_soft_limit = 64 * 1024;
        c.outbound_hard_limit = 512 * 1024;
    });
    let mut sub = b::Sub::connect(&broker, "?subscribe=%23");
    assert_eq!(sub.next()["type"], "subscribed");
    let pad = "y".repeat(1024);
    let batch: String = (0..300)
        .flat_map(|round| {
            let pad = pad.clone();
            (0..10).map(move |t| {
                format!(
                    "{{\"topic\":\"big/{t}\",\"data\":{{\"round\":{round},\"pad\":\"{pad}\"}}}}\n"
                )
            })
        })
        .collect();
    assert!(
        batch.len() > 2 * 512 * 1024,
        "the batch is over the hard limit"
    );
    let (status, _, body) = b::http(b::local(&broker), "POST", "/publish", &[], batch.as_bytes());
    assert_eq!(status, 202, "{body}");
    let mut latest = [0u64; 10];
    while latest.iter().any(|&r| r < 299) {
        let m = sub.next();
        assert_eq!(m["type"], "msg", "{m}");
        let t: usize = m["topic"].as_str().expect("topic")[4..].parse().expect("n");
        let round = m["data"]["round"].as_u64().expect("round");
        assert!(round >= latest[t], "big/{t} went back in time");
        latest[t] = round;
    }
    let stats = broker.stats();
    assert_eq!(stats.slow_consumers_closed, 0, "{stats:?}");
    eprintln!("large batch: {stats:?}");
}
