//! Micro-benchmarks of the hot pieces: frame headers, masking, UTF-8 validation, the handshake,
//! topic matching in the subscription trie, the publish path (validate, sequence, encode,
//! queue to every worker), publish-to-queued fan-out per subscriber count, finding a
//! wildcard subscription's snapshots against the number of topics cached, and what TLS adds to
//! writing a connection's gathered frames (encryption into records, against the plain copy the
//! gather makes anyway; no system call in either).
//!
//! `cargo bench --bench micro`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tickwire::broker::index::SubscriptionIndex;
use tickwire::broker::tree::{Budget, TopicTree};
use tickwire::server::ConnId;
use tickwire::ws::frame::{
    encode_client_frame, encode_server_header, parse_client_header, OpCode, MAX_SERVER_HEADER,
};
use tickwire::ws::handshake;
use tickwire::ws::mask::apply_mask;
use tickwire::ws::utf8::Utf8Validator;

fn frames(c: &mut Criterion) {
    let mut g = c.benchmark_group("frame_header");
    for len in [100usize, 1000, 70_000] {
        let frame = encode_client_frame(true, OpCode::Text, &vec![b'a'; len], [1, 2, 3, 4]);
        g.bench_with_input(BenchmarkId::new("parse", len), &frame, |b, f| {
            b.iter(|| parse_client_header(black_box(f), 1 << 20))
        });
        g.bench_with_input(BenchmarkId::new("encode", len), &len, |b, &len| {
            let mut head = [0u8; MAX_SERVER_HEADER];
            b.iter(|| encode_server_header(true, OpCode::Text, black_box(len), &mut head))
        });
    }
    g.finish();
}

fn masking(c: &mut Criterion) {
    let mut g = c.benchmark_group("mask");
    for len in [120usize, 4096, 65536] {
        let mut data = vec![0x5au8; len];
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_function(BenchmarkId::from_parameter(len), |b| {
            b.iter(|| apply_mask(black_box(&mut data), [0x37, 0xfa, 0x21, 0x3d], 1))
        });
    }
    g.finish();
}

fn utf8(c: &mut Criterion) {
    let mut g = c.benchmark_group("utf8_validate");
    let ascii = r#"{"type":"msg","topic":"quotes/AAPL","seq":42,"data":{"bid":189.1,"ask":189.2}}"#
        .repeat(50);
    let mixed = "κόσμε 𝄞 €uro ascii ".repeat(200);
    for (name, text) in [("json_ascii", ascii), ("multibyte", mixed)] {
        g.throughput(Throughput::Bytes(text.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut v = Utf8Validator::new();
                // In 1 KiB pieces, as a fragmented message arrives.
                for piece in black_box(text.as_bytes()).chunks(1024) {
                    v.feed(piece).expect("valid");
                }
                v.is_complete()
            })
        });
    }
    g.finish();
}

fn handshake_bench(c: &mut Criterion) {
    let req = b"GET /ws?subscribe=quotes/AAPL HTTP/1.1\r\nHost: localhost:8080\r\nUpgrade: websocket\r\n\
        Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
        Sec-WebSocket-Protocol: tickwire.v1\r\nUser-Agent: bench\r\n\r\n";
    c.bench_function("handshake_parse_validate_respond", |b| {
        b.iter(|| match tickwire::http::parse(black_box(req)) {
            Ok(tickwire::http::Status::Complete(r, _)) => {
                let accept = handshake::validate_upgrade(&r).expect("valid");
                handshake::response_101(&accept, Some("tickwire.v1"))
            }
            _ => unreachable!("a complete request"),
        })
    });
}

fn topic_matching(c: &mut Criterion) {
    let mut g = c.benchmark_group("match_topic");
    for subscribers in [100usize, 10_000] {
        let mut index = SubscriptionIndex::default();
        for i in 0..subscribers {
            // A realistic mix: mostly exact symbols, some wildcards.
            let pattern = match i % 10 {
                0 => "quotes/+".to_owned(),
                1 => "quotes/#".to_owned(),
                _ => format!("quotes/S{}", i % 500),
            };
            index.insert(&pattern, ConnId(i));
        }
        g.bench_function(BenchmarkId::from_parameter(subscribers), |b| {
            b.iter(|| {
                let mut n = 0usize;
                index.for_each_match(black_box("quotes/S42"), |_| n += 1);
                n
            })
        });
    }
    g.finish();
}

fn publish_path(c: &mut Criterion) {
    // Publish -> validated, sequenced, encoded once, queued to every worker. No subscriber is
    // connected, so this is the publisher's share of the cost; fan-out is per worker.
    let broker = tickwire::Broker::builder()
        .listen("127.0.0.1:0".parse().expect("addr"))
        .local_listen(None)
        .workers(2)
        .start()
        .expect("broker");
    let publisher = broker.publisher();
    let payload = br#"{"symbol":"AAPL","bid":189.12,"ask":189.14,"last":189.13,"open":187.5,"volume":1200450,"ts":1764000000000}"#;
    let mut g = c.benchmark_group("publish");
    g.throughput(Throughput::Elements(1));
    g.bench_function("quote_120_bytes", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i += 1;
            let topic = if i % 2 == 0 {
                "quotes/AAPL"
            } else {
                "quotes/MSFT"
            };
            loop {
                match publisher.publish(topic, payload) {
                    Ok(seq) => break seq,
                    Err(tickwire::PublishError::QueueFull) => std::thread::yield_now(),
                    Err(e) => panic!("{e}"),
                }
            }
        })
    });
    g.finish();
    broker.shutdown();
}

/// Publish -> every subscriber's frame queued, with 1, 100 and 1,000 real subscribers on one
/// worker (a thread reads their sockets so none of them is conflated). Measured from the
/// `publish` call until the broker's delivery counter shows all of them queued; one publication
/// at a time, so each iteration also carries the worker's wake-up and its write of the previous
/// frame to every subscriber (one `writev` each): the unbatched, low-rate cost.
fn publish_fanout(c: &mut Criterion) {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let payload = br#"{"symbol":"AAPL","bid":189.12,"ask":189.14,"last":189.13,"open":187.5,"volume":1200450,"ts":1764000000000}"#;
    let mut g = c.benchmark_group("publish_to_queued");
    for subscribers in [1usize, 100, 1_000] {
        let broker = tickwire::Broker::builder()
            .listen("127.0.0.1:0".parse().expect("addr"))
            .local_listen(None)
            .workers(1)
            .start()
            .expect("broker");
        let addr = broker.public_addr();
        let mut socks = Vec::with_capacity(subscribers);
        for _ in 0..subscribers {
            let mut s = TcpStream::connect(addr).expect("connect");
            s.write_all(
                b"GET /ws?subscribe=quotes/AAPL HTTP/1.1\r\nHost: b\r\nUpgrade: websocket\r\n\
                  Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                  Sec-WebSocket-Version: 13\r\n\r\n",
            )
            .expect("upgrade");
            // The 101 and the `subscribed` reply.
            let mut seen = Vec::new();
            let mut buf = [0u8; 1024];
            while !seen.windows(10).any(|w| w == b"subscribed") {
                let n = s.read(&mut buf).expect("reply");
                assert!(n > 0, "broker closed the subscriber");
                seen.extend_from_slice(&buf[..n]);
            }
            s.set_nonblocking(true).expect("nonblocking");
            socks.push(s);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                // Sleeps in epoll between reads: the worker needs the CPU more than this does.
                let mut poll = mio::Poll::new().expect("poll");
                let mut socks: Vec<mio::net::TcpStream> = socks
                    .into_iter()
                    .map(mio::net::TcpStream::from_std)
                    .collect();
                for (i, s) in socks.iter_mut().enumerate() {
                    poll.registry()
                        .register(s, mio::Token(i), mio::Interest::READABLE)
                        .expect("register");
                }
                let mut events = mio::Events::with_capacity(1024);
                let mut buf = vec![0u8; 64 * 1024];
                while !stop.load(Ordering::Relaxed) {
                    let _ = poll.poll(&mut events, Some(std::time::Duration::from_millis(10)));
                    for ev in events.iter() {
                        let s = &mut socks[ev.token().0];
                        while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
                    }
                }
            })
        };
        let publisher = broker.publisher();
        g.throughput(Throughput::Elements(subscribers as u64));
        g.bench_function(BenchmarkId::from_parameter(subscribers), |b| {
            b.iter(|| {
                let target = broker.stats().deliveries + subscribers as u64;
                loop {
                    match publisher.publish("quotes/AAPL", payload) {
                        Ok(_) => break,
                        Err(tickwire::PublishError::QueueFull) => std::thread::yield_now(),
                        Err(e) => panic!("{e}"),
                    }
                }
                while broker.stats().deliveries < target {
                    std::thread::yield_now();
                }
            })
        });
        stop.store(true, Ordering::Relaxed);
        let _ = reader.join();
        broker.shutdown();
    }
    g.finish();
}

/// Finding the snapshots of `#` and of `+/+/x` (a pattern that matches almost nothing) with the
/// snapshot limit of 1000, against the topics cached: flat once there are more topics than the
/// limit, where it used to collect and sort every topic.
fn wildcard_snapshots(c: &mut Criterion) {
    let mut g = c.benchmark_group("wildcard_snapshots");
    g.sample_size(20);
    for topics in [1_000usize, 10_000, 100_000, 1_000_000] {
        let mut tree = TopicTree::default();
        for i in 0..topics {
            let name = format!("quotes/{}/{}", i / 1000, i % 1000);
            tree.insert(name.as_str().into(), i as u64);
        }
        for pattern in ["#", "+/+/x"] {
            g.bench_with_input(BenchmarkId::new(pattern, topics), &tree, |b, tree| {
                b.iter(|| {
                    let mut found = 0;
                    tree.matching(black_box(pattern), Budget::for_matches(1000), |_| {
                        found += 1;
                        true
                    });
                    found
                })
            });
        }
    }
    g.finish();
}

/// A server TLS session after a handshake with a client, both in memory (rustls, ring, the
/// cipher suite a rustls client and server agree on by default).
fn tls_session() -> rustls::ServerConnection {
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
    use std::sync::Arc;
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .expect("params")
        .self_signed(&key)
        .expect("cert");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server_config = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .expect("server config");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der().clone()).expect("root");
    let client_config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from("localhost").expect("name");
    let mut client = rustls::ClientConnection::new(Arc::new(client_config), name).expect("client");
    let mut server = rustls::ServerConnection::new(Arc::new(server_config)).expect("server");
    let mut wire = Vec::new();
    while client.is_handshaking() || server.is_handshaking() {
        while client.wants_write() {
            client.write_tls(&mut wire).expect("write");
        }
        server.read_tls(&mut &wire[..]).expect("read");
        server.process_new_packets().expect("server handshake");
        wire.clear();
        while server.wants_write() {
            server.write_tls(&mut wire).expect("write");
        }
        client.read_tls(&mut &wire[..]).expect("read");
        client.process_new_packets().expect("client handshake");
        wire.clear();
    }
    server
}

fn tls_write(c: &mut Criterion) {
    use std::io::Write;
    let mut server = tls_session();
    // A quote frame as fan-out sends it: ~150 bytes.
    let frame = {
        let mut f = Vec::new();
        let payload = br#"{"symbol":"AAPL","bid":189.12,"ask":189.14,"last":189.13,"volume":1234567,"t":1764400000123}"#;
        tickwire::broker::protocol::encode_msg_frame(&mut f, "\"quotes/AAPL\"", 42, false, payload);
        f
    };
    let mut g = c.benchmark_group("tls_write");
    // One frame per write (a subscriber that keeps up at a modest rate), a few dozen, and a full
    // 64 KiB gather (a subscriber of a busy feed).
    for frames in [1usize, 16, 400] {
        let gathered: Vec<u8> = frame.repeat(frames);
        g.throughput(Throughput::Elements(frames as u64));
        let mut sink = Vec::with_capacity(128 * 1024);
        g.bench_with_input(
            BenchmarkId::new("plain_copy", frames),
            &gathered,
            |b, bytes| {
                b.iter(|| {
                    sink.clear();
                    sink.extend_from_slice(black_box(bytes));
                    black_box(sink.len())
                })
            },
        );
        g.bench_with_input(
            BenchmarkId::new("tls_encrypt", frames),
            &gathered,
            |b, bytes| {
                b.iter(|| {
                    sink.clear();
                    let mut left = &bytes[..];
                    while !left.is_empty() {
                        let n = server.writer().write(left).expect("plaintext in");
                        left = &left[n..];
                        while server.wants_write() {
                            server.write_tls(&mut sink).expect("records out");
                        }
                    }
                    black_box(sink.len())
                })
            },
        );
    }
    g.finish();
}

criterion_group!(
    benches,
    tls_write,
    frames,
    masking,
    utf8,
    handshake_bench,
    topic_matching,
    publish_path,
    publish_fanout,
    wildcard_snapshots
);
criterion_main!(benches);
