//! Soak: the real `tickwire` binary under churn. Thousands of connections come and go
//! (connect, subscribe, receive, disconnect) while a publisher streams; long-lived subscribers
//! must see every update; the server's RSS and file descriptors stay flat; nothing panics; and
//! SIGTERM ends it cleanly with 1001 to the clients still connected.
//!
//! `TICKWIRE_SOAK_SECS` sets the length (default 120 in the test command; run an hour with
//! `TICKWIRE_SOAK_SECS=3600 cargo test --release --test soak -- --nocapture`).

mod util;
use util::broker as b;
use util::child::Tickwire;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;
use tungstenite::Message;

const TOPICS: usize = 20;

fn topic(i: usize) -> String {
    format!("soak/{}", i % TOPICS)
}

#[test]
fn churn_under_publishing_stays_flat_and_loses_nothing() {
    let secs: u64 = std::env::var("TICKWIRE_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120);
    util::child::raise_fd_limit(8192);
    let mut server = Tickwire::start(
        "tickwire",
        &[
            "--workers",
            "2",
            "--log-level",
            "warn",
            "--slow-consumer-timeout",
            "5",
        ],
    );
    let (public, local) = (server.public, server.local);
    let fds_at_start = server.fds();
    let stop = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + Duration::from_secs(secs);

    // A steady publisher over the streaming WebSocket API, about 1000 updates a second.
    let published = Arc::new(AtomicU64::new(0));
    let feeder = {
        let (stop, published) = (stop.clone(), published.clone());
        thread::spawn(move || {
            let mut p = b::Sub::connect_to(local, "/publish");
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..10 {
                    p.ws.write(Message::Text(
                        json!({"topic": topic(n as usize), "data": {"n": n}}).to_string(),
                    ))
                    .expect("publish");
                    n += 1;
                }
                p.ws.flush().expect("flush");
                thread::sleep(Duration::from_millis(10));
            }
            published.store(n, Ordering::Relaxed);
        })
    };

    // Long-lived subscribers, one topic each: every update, in order, for the whole soak.
    let long_lived: Vec<_> = (0..2)
        .map(|g| {
            let stop = stop.clone();
            thread::spawn(move || {
                let mut subs: Vec<(usize, b::Sub, u64)> = (0..40)
                    .map(|i| {
                        let k = g * 40 + i;
                        let mut s =
                            b::Sub::connect_to(public, &format!("/ws?subscribe={}", topic(k)));
                        assert_eq!(s.next()["type"], "subscribed");
                        (k, s, 0)
                    })
                    .collect();
                let mut received = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    for (k, s, last) in subs.iter_mut() {
                        let Some(m) = s.next_within(Duration::from_millis(1)) else {
                            continue;
                        };
                        assert_eq!(m["topic"], topic(*k));
                        let seq = m["seq"].as_u64().expect("seq");
                        assert!(
                            *last == 0 || seq == *last + 1,
                            "{}: seq {seq} after {last}",
                            topic(*k)
                        );
                        *last = seq;
                        received += 1;
                    }
                }
                (subs, received)
            })
        })
        .collect();

    // Churners: connect, subscribe, receive a few, leave (cleanly or by dropping the socket).
    let churned = Arc::new(AtomicU64::new(0));
    let churners: Vec<_> = (0..4)
        .map(|c| {
            let churned = churned.clone();
            thread::spawn(move || {
                let mut round = 0usize;
                while Instant::now() < deadline {
                    let mut subs: Vec<b::Sub> = (0..25)
                        .map(|i| {
                            b::Sub::connect_to(
                                public,
                                &format!("/ws?subscribe={}", topic(c + i + round)),
                            )
                        })
                        .collect();
                    for s in subs.iter_mut() {
                        assert_eq!(s.next()["type"], "subscribed");
                        let first = s.next()["seq"].as_u64().expect("seq");
                        let second = s.next()["seq"].as_u64().expect("seq");
                        assert_eq!(second, first + 1, "a churner saw a gap");
                    }
                    for (i, mut s) in subs.into_iter().enumerate() {
                        if i % 2 == 0 {
                            let _ = s.ws.close(None);
                            let _ = s.ws.flush();
                        }
                    }
                    churned.fetch_add(25, Ordering::Relaxed);
                    round += 1;
                    // About a hundred new connections a second in all: a churn rate a real
                    // broker sees, without exhausting loopback ports with TIME_WAIT sockets.
                    thread::sleep(Duration::from_millis(800));
                }
            })
        })
        .collect();

    // RSS after the first fifth (warm), and at the end: flat.
    thread::sleep(Duration::from_secs(secs / 5));
    let warm_rss = server.rss_kib();
    for h in churners {
        h.join().expect("churner");
    }
    let end_rss = server.rss_kib();
    // The churned sockets are all gone: 80 long-lived subscribers and the publisher remain.
    b::eventually(
        Duration::from_secs(10),
        "server fds back to baseline",
        || server.fds() <= fds_at_start + 81,
    );
    stop.store(true, Ordering::Relaxed);
    feeder.join().expect("feeder");
    let lived: Vec<_> = long_lived
        .into_iter()
        .map(|h| h.join().expect("long-lived"))
        .collect();
    let received: u64 = lived.iter().map(|(_, r)| r).sum();
    let churned = churned.load(Ordering::Relaxed);
    eprintln!(
        "soak {secs}s: {churned} churned connections, {} published, {received} received by 80 long-lived \
         subscribers, RSS warm {warm_rss} KiB end {end_rss} KiB, fds at start {fds_at_start}",
        published.load(Ordering::Relaxed)
    );
    assert!(
        churned >= secs * 50,
        "thousands of connections churned: {churned}"
    );
    assert!(
        end_rss < warm_rss + 32 * 1024,
        "RSS grew from {warm_rss} to {end_rss} KiB"
    );

    // SIGTERM: the long-lived clients get 1001, the process exits by itself, quickly.
    let stopped_at = Instant::now();
    server.terminate();
    let mut going_away = 0;
    for (subs, _) in lived {
        for (_, mut s, _) in subs {
            loop {
                match s.ws.read() {
                    Ok(Message::Close(Some(f))) => {
                        going_away += usize::from(u16::from(f.code) == 1001);
                        break;
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        }
    }
    let exit = server
        .wait_exit(Duration::from_secs(10))
        .expect("an exit within 10 s of SIGTERM");
    eprintln!("exited {:?} after SIGTERM", stopped_at.elapsed());
    assert!(exit.success(), "exit status {exit}");
    assert_eq!(going_away, 80, "every long-lived client got 1001");
    let log = server.log_text();
    assert!(!log.contains("panicked"), "panic in the log:\n{log}");
}
