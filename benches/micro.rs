//! Micro-benchmarks of the hot pieces: frame headers, masking, UTF-8 validation, the handshake,
//! topic matching in the subscription trie, the publish path (validate, sequence, encode,
//! queue to every worker), publish-to-queued fan-out per subscriber count, finding a wildcard
//! subscription's snapshots against the number of topics cached, permessage-deflate (flate2 on
//! zlib-rs against libdeflater on a quote), and what TLS adds to writing a connection's gathered
//! frames (encryption into records, against the plain copy the gather makes anyway; no system
//! call in either).
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
                handshake::response_101(&accept, Some("tickwire.v1"), None)
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

/// A quote as the broker sends it, about 500 bytes of JSON.
fn quote_json() -> String {
    let q = r#"{"type":"msg","topic":"quotes/AAPL","seq":1234567,"data":{"symbol":"AAPL","name":"Apple Inc.","exchange":"XNAS","currency":"USD","bid":189.12,"ask":189.14,"bidSize":300,"askSize":500,"last":189.13,"lastSize":100,"volume":51234567,"open":188.50,"high":190.02,"low":187.90,"prevClose":188.30,"change":0.83,"changePct":0.4408,"vwap":189.0132,"turnover":9683412345.12,"trades":412345,"halted":false,"session":"regular","ts":"2026-12-02T14:31:07.123456Z","bids":[[189.12,300],[189.11,800],[189.10,1200]],"asks":[[189.14,500],[189.15,700],[189.16,900]]}}"#;
    q.to_owned()
}

/// The calling thread's CPU time: what the benchmarks in [`deflate`] are measured in, because on
/// a machine shared with other work wall time counts the time other processes had the core.
struct ThreadCpu;

fn thread_cpu_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

impl criterion::measurement::Measurement for ThreadCpu {
    type Intermediate = u64;
    type Value = u64;

    fn start(&self) -> u64 {
        thread_cpu_ns()
    }

    fn end(&self, start: u64) -> u64 {
        thread_cpu_ns().saturating_sub(start)
    }

    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }

    fn zero(&self) -> u64 {
        0
    }

    fn to_f64(&self, v: &u64) -> f64 {
        *v as f64
    }

    fn formatter(&self) -> &dyn criterion::measurement::ValueFormatter {
        &CpuFormatter
    }
}

struct CpuFormatter;

impl criterion::measurement::ValueFormatter for CpuFormatter {
    fn scale_values(&self, typical: f64, values: &mut [f64]) -> &'static str {
        let (div, unit) = match typical {
            t if t < 1e3 => (1.0, "ns cpu"),
            t if t < 1e6 => (1e3, "µs cpu"),
            _ => (1e6, "ms cpu"),
        };
        values.iter_mut().for_each(|v| *v /= div);
        unit
    }

    fn scale_throughputs(&self, _: f64, _: &Throughput, values: &mut [f64]) -> &'static str {
        values.iter_mut().for_each(|v| *v = 1e9 / *v);
        "/s cpu"
    }

    fn scale_for_machines(&self, _: &mut [f64]) -> &'static str {
        "ns"
    }
}

/// permessage-deflate, "which deflate": one ~550-byte quote compressed for a whole frame (what
/// the broker does once per publication and worker) with tickwire's `compressed_frame` (flate2 on
/// zlib-rs, level 2, a reset compressor), then zlib-rs at levels 1, 2 and 6 with a new and a
/// reset compressor, against libdeflater at levels 1 and 6 with a new and a reused one; and the
/// quote inflated as a client's message is. The compressed sizes are printed once. In CPU time.
fn deflate(c: &mut Criterion<ThreadCpu>) {
    use flate2::{Compress, Compression, FlushCompress};
    use tickwire::ws::deflate::{compress, compressed_frame, Inflater};
    let quote = quote_json();
    let data = quote.as_bytes();
    let mut g = c.benchmark_group("permessage_deflate");
    eprintln!(
        "permessage_deflate: the quote is {} bytes; compressed_frame payload {} bytes",
        data.len(),
        compress(data, 15).len()
    );
    g.bench_function("compressed_frame", |b| {
        b.iter(|| compressed_frame(OpCode::Text, black_box(data), 15))
    });
    fn zrs(c: &mut Compress, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(data.len() + 64);
        c.compress_vec(data, &mut out, FlushCompress::Sync)
            .expect("deflate");
        out.truncate(out.len() - 4);
        out
    }
    for level in [1u32, 2, 6] {
        let new = || Compress::new_with_window_bits(Compression::new(level), false, 15);
        eprintln!(
            "permessage_deflate: zlib-rs level {level}: {} bytes",
            zrs(&mut new(), data).len()
        );
        g.bench_function(BenchmarkId::new("zlib_rs_new", level), |b| {
            b.iter(|| zrs(&mut new(), black_box(data)))
        });
        g.bench_function(BenchmarkId::new("zlib_rs_reset", level), |b| {
            let mut c = new();
            b.iter(|| {
                c.reset();
                zrs(&mut c, black_box(data))
            })
        });
    }
    for level in [1i32, 6] {
        let lvl = libdeflater::CompressionLvl::new(level).expect("level");
        let run = |c: &mut libdeflater::Compressor, data: &[u8]| {
            let mut out = vec![0u8; c.deflate_compress_bound(data.len())];
            let n = c.deflate_compress(data, &mut out).expect("deflate");
            out.truncate(n);
            out
        };
        eprintln!(
            "permessage_deflate: libdeflate level {level}: {} bytes (a final block, and no \
             window bits)",
            run(&mut libdeflater::Compressor::new(lvl), data).len()
        );
        g.bench_function(BenchmarkId::new("libdeflate_new", level), |b| {
            b.iter(|| run(&mut libdeflater::Compressor::new(lvl), black_box(data)))
        });
        g.bench_function(BenchmarkId::new("libdeflate_reused", level), |b| {
            let mut c = libdeflater::Compressor::new(lvl);
            b.iter(|| run(&mut c, black_box(data)))
        });
    }
    // A snapshot-sized message: 30 quotes of different symbols and prices, ~16 KB.
    let big: String = (0..30)
        .map(|i| {
            quote
                .replace("1234567", &(1_234_567 + i * 7919).to_string())
                .replace("AAPL", &format!("SYM{i}"))
                .replace("189.1", &format!("{}.{}", 100 + i * 37 % 90, i % 10))
                .replace("51234567", &(51_234_567 - i * 104_729).to_string())
        })
        .collect::<Vec<_>>()
        .join(",");
    let big = big.as_bytes();
    let mut zc = Compress::new_with_window_bits(Compression::new(2), false, 15);
    let mut ld = libdeflater::Compressor::new(libdeflater::CompressionLvl::new(1).expect("level"));
    let mut ld_out = vec![0u8; ld.deflate_compress_bound(big.len())];
    eprintln!(
        "permessage_deflate: {} bytes: zlib-rs level 2 {} bytes, libdeflate level 1 {} bytes",
        big.len(),
        zrs(&mut zc, big).len(),
        ld.deflate_compress(big, &mut ld_out).expect("deflate")
    );
    g.bench_function(BenchmarkId::new("zlib_rs_reset/2", big.len()), |b| {
        b.iter(|| {
            zc.reset();
            zrs(&mut zc, black_box(big))
        })
    });
    g.bench_function(BenchmarkId::new("libdeflate_reused/1", big.len()), |b| {
        b.iter(|| ld.deflate_compress(black_box(big), &mut ld_out))
    });
    let z = compress(data, 15);
    g.bench_function("inflate", |b| {
        b.iter(|| {
            let mut i = Inflater::new(15, &[]).expect("inflater");
            let mut out = Vec::new();
            i.inflate(black_box(&z), &mut out, 1 << 16)
                .expect("inflate");
            i.finish(&mut out, 1 << 16).expect("finish");
            out
        })
    });
    g.finish();
}

criterion_group! {
    name = cpu_benches;
    config = Criterion::default().with_measurement(ThreadCpu);
    targets = deflate
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
criterion_main!(benches, cpu_benches);
