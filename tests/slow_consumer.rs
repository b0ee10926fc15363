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
