//! The fan-out benchmark: a load generator holding thousands of WebSocket subscribers on one
//! mio thread against a server process, measuring deliveries per second, publish-to-receive
//! latency, connection set-up rate, server RSS per connection, and the server's CPU time per
//! delivery (from /proc/PID/stat). It checks per-topic order and counts losses, so a fast wrong
//! answer cannot win.
//!
//! Servers: `tickwire` (the release binary, one worker) and the ceiling: a plain mio TCP server
//! in this same executable (`--ceiling-server`) that writes the same pre-encoded frames without
//! any WebSocket work. Peers (tokio-tungstenite, Node `ws`) are not wired in yet.
//!
//! `cargo bench --bench fanout -- --quick` (seconds per scenario, small counts) or without
//! `--quick` for the full sizes. `--only S1` runs one scenario.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream as StdStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use tickwire::ws::frame::{encode_client_frame, encode_server_frame, OpCode};

// ---------------------------------------------------------------------------------------------
// Scenarios

#[derive(Clone, Copy, Debug)]
struct Scenario {
    name: &'static str,
    subscribers: usize,
    topics: usize,
    topics_per_subscriber: usize,
    /// Publications per second, or `None` for as fast as the server accepts.
    rate: Option<u64>,
    seconds: u64,
    /// Idle connections only (memory per connection).
    idle: bool,
}

fn scenarios(quick: bool) -> Vec<Scenario> {
    let (big, mid, idle, secs) = if quick {
        (2_000, 500, 5_000, 3)
    } else {
        (10_000, 1_000, 19_000, 10)
    };
    vec![
        Scenario {
            name: "S1",
            subscribers: big,
            topics: 100,
            topics_per_subscriber: 10,
            rate: None,
            seconds: secs,
            idle: false,
        },
        Scenario {
            name: "S2",
            subscribers: big,
            topics: 1,
            topics_per_subscriber: 1,
            rate: None,
            seconds: secs,
            idle: false,
        },
        Scenario {
            name: "S3",
            subscribers: mid,
            topics: 10,
            topics_per_subscriber: 1,
            rate: Some(1000),
            seconds: secs,
            idle: false,
        },
        Scenario {
            name: "S4",
            subscribers: idle,
            topics: 1,
            topics_per_subscriber: 1,
            rate: None,
            seconds: 0,
            idle: true,
        },
    ]
}

// ---------------------------------------------------------------------------------------------
// Servers under test

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Tickwire,
    /// tokio-tungstenite on a current-thread runtime: what a Rust user would write.
    Tokio,
    Ceiling,
}

struct Server {
    kind: Kind,
    child: Child,
    /// Where subscribers connect, and where the publisher connects.
    subscribe_addr: SocketAddr,
    publish_addr: SocketAddr,
}

impl Server {
    fn start(kind: Kind) -> Server {
        let mut cmd = match kind {
            Kind::Tickwire => {
                let mut c = Command::new(env!("CARGO_BIN_EXE_tickwire"));
                c.args([
                    "--listen",
                    "127.0.0.1:0",
                    "--local-listen",
                    "127.0.0.1:0",
                    "--workers",
                    "1",
                ]);
                c.args(["--log-level", "error", "--publish-queue", "65536"]);
                c
            }
            Kind::Ceiling => {
                let mut c = Command::new(std::env::current_exe().expect("own path"));
                c.arg("--ceiling-server");
                c
            }
            Kind::Tokio => {
                let mut c = Command::new(std::env::current_exe().expect("own path"));
                c.arg("--tokio-server");
                c
            }
        };
        pin(&mut cmd, 0);
        let mut child = cmd.stdout(Stdio::piped()).spawn().expect("server starts");
        let mut out = child.stdout.take().expect("stdout");
        let mut text = String::new();
        let mut buf = [0u8; 1024];
        let find = |text: &str, key: &str| -> Option<SocketAddr> {
            let rest = &text[text.find(key)? + key.len()..];
            let rest = rest
                .trim_start()
                .trim_start_matches("ws://")
                .trim_start_matches("http://");
            rest.split(['/', ' ', '\n']).next()?.parse().ok()
        };
        let (sub, publ) = loop {
            let n = out.read(&mut buf).expect("read banner");
            assert!(n > 0, "server exited: {text}");
            text.push_str(&String::from_utf8_lossy(&buf[..n]));
            let keys = match kind {
                Kind::Tickwire => ("subscribe:", "publish:"),
                Kind::Ceiling | Kind::Tokio => ("subscribe", "publish"),
            };
            if let (Some(s), Some(p)) = (find(&text, keys.0), find(&text, keys.1)) {
                break (s, p);
            }
        };
        Server {
            kind,
            child,
            subscribe_addr: sub,
            publish_addr: publ,
        }
    }

    /// (user + system CPU seconds, RSS KiB) of the server process.
    fn usage(&self) -> (f64, u64) {
        proc_usage(self.child.id())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn proc_usage(pid: u32) -> (f64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, r)| r)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // After the command name: state is field 0, utime 11, stime 12 (clock ticks, 100 Hz here).
    let cpu = (ticks(11) + ticks(12)) / 100.0;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0);
    (cpu, rss)
}

/// Pins a child process to one core (with `taskset`, when present), so the server and the
/// generator do not share a core.
fn pin(cmd: &mut Command, core: usize) {
    if Command::new("taskset").arg("-V").output().is_ok() {
        let program = cmd.get_program().to_owned();
        let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
        *cmd = Command::new("taskset");
        cmd.arg("-c").arg(core.to_string()).arg(program).args(args);
    }
}

// ---------------------------------------------------------------------------------------------
// The ceiling: plain TCP, the same bytes, no WebSocket

/// Subscribers send `SUB t1,t2\n`; the publisher sends lines `topic payload\n` (after `PUB\n`).
/// Each publication is encoded once (the same JSON text frame tickwire sends) and appended to
/// every subscriber's buffer; buffers are written once per loop turn.
fn ceiling_server() {
    let std_listener = StdListener::bind("127.0.0.1:0").expect("bind");
    let addr = std_listener.local_addr().expect("addr");
    println!("subscribe {addr}\npublish {addr}");
    io::stdout().flush().ok();
    std_listener.set_nonblocking(true).expect("nonblocking");
    let mut listener = TcpListener::from_std(std_listener);
    let mut poll = Poll::new().expect("poll");
    poll.registry()
        .register(&mut listener, Token(usize::MAX), Interest::READABLE)
        .expect("register");
    struct Conn {
        s: TcpStream,
        inbuf: Vec<u8>,
        out: Vec<u8>,
        /// In this turn's write list.
        queued: bool,
    }
    let mut conns: slab::Slab<Conn> = slab::Slab::new();
    let mut by_topic: HashMap<String, Vec<usize>> = HashMap::new();
    let mut seqs: HashMap<String, u64> = HashMap::new();
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 64 * 1024];
    let mut touched: Vec<usize> = Vec::new();
    // Connections stopped before WouldBlock (the publisher, under load): read again next turn.
    let mut again: Vec<usize> = Vec::new();
    loop {
        let timeout = if again.is_empty() {
            None
        } else {
            Some(Duration::ZERO)
        };
        poll.poll(&mut events, timeout).expect("poll");
        let mut ready: Vec<(usize, bool)> = std::mem::take(&mut again)
            .into_iter()
            .map(|id| (id, false))
            .collect();
        for ev in events.iter() {
            if ev.token() != Token(usize::MAX) {
                ready.push((ev.token().0, ev.is_writable()));
                continue;
            }
            {
                while let Ok((mut s, _)) = listener.accept() {
                    let _ = s.set_nodelay(true);
                    let e = conns.vacant_entry();
                    poll.registry()
                        .register(
                            &mut s,
                            Token(e.key()),
                            Interest::READABLE | Interest::WRITABLE,
                        )
                        .expect("reg");
                    e.insert(Conn {
                        s,
                        inbuf: Vec::new(),
                        out: Vec::new(),
                        queued: false,
                    });
                }
                continue;
            }
        }
        for (id, writable) in ready {
            let mut reads = 0;
            while let Some(c) = conns.get_mut(id) {
                if reads == 16 {
                    again.push(id);
                    break;
                }
                reads += 1;
                match c.s.read(&mut buf) {
                    Ok(0) => {
                        conns.remove(id);
                        break;
                    }
                    Ok(n) => c.inbuf.extend_from_slice(&buf[..n]),
                    Err(_) => break,
                }
            }
            let Some(c) = conns.get_mut(id) else { continue };
            let mut inbuf = std::mem::take(&mut c.inbuf);
            let mut used = 0;
            while let Some(nl) = inbuf[used..].iter().position(|&b| b == b'\n') {
                let line = String::from_utf8_lossy(&inbuf[used..used + nl]).into_owned();
                used += nl + 1;
                if let Some(topics) = line.strip_prefix("SUB ") {
                    for t in topics.split(',') {
                        by_topic.entry(t.to_owned()).or_default().push(id);
                    }
                } else if let Some((topic, payload)) = line.split_once(' ') {
                    let seq = seqs.entry(topic.to_owned()).or_insert(0);
                    *seq += 1;
                    let json = format!("{{\"type\":\"msg\",\"topic\":\"{topic}\",\"seq\":{seq},\"data\":{payload}}}");
                    let frame = encode_server_frame(OpCode::Text, json.as_bytes());
                    for &sub in by_topic.get(topic).map(Vec::as_slice).unwrap_or(&[]) {
                        if let Some(sc) = conns.get_mut(sub) {
                            if !sc.queued {
                                sc.queued = true;
                                touched.push(sub);
                            }
                            sc.out.extend_from_slice(&frame);
                        }
                    }
                }
            }
            inbuf.drain(..used);
            if let Some(c) = conns.get_mut(id) {
                c.inbuf = inbuf;
            }
            if let Some(c) = conns.get_mut(id) {
                if writable && !c.queued && !c.out.is_empty() {
                    c.queued = true;
                    touched.push(id);
                }
            }
        }
        for id in touched.drain(..) {
            if let Some(c) = conns.get_mut(id) {
                c.queued = false;
                while !c.out.is_empty() {
                    match c.s.write(&c.out) {
                        Ok(n) => {
                            c.out.drain(..n);
                        }
                        Err(_) => break,
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The tokio-tungstenite peer

/// The same protocol as tickwire (`/ws?subscribe=a,b` and a streaming publisher at `/publish`),
/// written the way a Rust user would with tokio-tungstenite: a task per connection, an unbounded
/// channel per subscriber, one current-thread runtime (one core, like tickwire's one worker).
// tungstenite's handshake callback fixes its error type (an HTTP response); not ours to shrink.
#[allow(clippy::result_large_err)]
mod tokio_peer {
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::rc::Rc;

    use futures_util::{SinkExt, StreamExt};
    use tokio::net::TcpListener;
    use tokio::sync::mpsc;
    use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
    use tokio_tungstenite::tungstenite::Message;

    type Subscribers = Rc<RefCell<HashMap<String, Vec<mpsc::UnboundedSender<Message>>>>>;

    pub fn serve() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let local = tokio::task::LocalSet::new();
        local.block_on(&rt, async {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("addr");
            println!("subscribe {addr}\npublish {addr}");
            let subs: Subscribers = Rc::default();
            let seqs: Rc<RefCell<HashMap<String, u64>>> = Rc::default();
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let _ = stream.set_nodelay(true);
                let (subs, seqs) = (subs.clone(), seqs.clone());
                tokio::task::spawn_local(async move {
                    let mut path = String::new();
                    let ws = tokio_tungstenite::accept_hdr_async(stream, |req: &Request, resp: Response| {
                        path = req.uri().to_string();
                        Ok(resp)
                    })
                    .await;
                    let Ok(ws) = ws else { return };
                    let (mut sink, mut stream) = ws.split();
                    if path.starts_with("/publish") {
                        while let Some(Ok(Message::Text(text))) = stream.next().await {
                            let v: serde_json::Value = match serde_json::from_str(&text) {
                                Ok(v) => v,
                                Err(_) => continue,
                            };
                            let topic = v["topic"].as_str().unwrap_or("").to_owned();
                            let seq = {
                                let mut s = seqs.borrow_mut();
                                let n = s.entry(topic.clone()).or_insert(0);
                                *n += 1;
                                *n
                            };
                            let msg = Message::text(format!(
                                "{{\"type\":\"msg\",\"topic\":\"{topic}\",\"seq\":{seq},\"data\":{}}}",
                                v["data"]
                            ));
                            if let Some(list) = subs.borrow_mut().get_mut(&topic) {
                                list.retain(|tx| tx.send(msg.clone()).is_ok());
                            }
                        }
                        return;
                    }
                    let topics = path.split_once("subscribe=").map_or("", |(_, t)| t).to_owned();
                    let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
                    for t in topics.split(',').filter(|t| !t.is_empty()) {
                        subs.borrow_mut().entry(t.to_owned()).or_default().push(tx.clone());
                    }
                    drop(tx);
                    tokio::task::spawn_local(async move { while stream.next().await.is_some() {} });
                    // Feed what is queued, flush once the queue is empty.
                    while let Some(msg) = rx.recv().await {
                        if sink.feed(msg).await.is_err() {
                            return;
                        }
                        while let Ok(more) = rx.try_recv() {
                            if sink.feed(more).await.is_err() {
                                return;
                            }
                        }
                        if sink.flush().await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
    }
}

// ---------------------------------------------------------------------------------------------
// The load generator

struct Sub {
    s: TcpStream,
    /// Handshake done (101 read).
    ready: bool,
    inbuf: Vec<u8>,
    /// Last seq per topic index.
    last: Vec<u64>,
}

#[derive(Default, Debug)]
struct Tally {
    deliveries: u64,
    losses: u64,
    order_violations: u64,
    latencies_us: Vec<u32>,
}

fn topic_name(i: usize) -> String {
    format!("b/{i}")
}

fn connect_all(server: &Server, sc: &Scenario, poll: &Poll) -> (slab::Slab<Sub>, Duration) {
    let started = Instant::now();
    let mut subs = slab::Slab::with_capacity(sc.subscribers);
    for i in 0..sc.subscribers {
        let topics: Vec<usize> = (0..sc.topics_per_subscriber)
            .map(|k| (i + k * 7) % sc.topics)
            .collect();
        let names: Vec<String> = topics.iter().map(|&t| topic_name(t)).collect();
        let std = StdStream::connect(server.subscribe_addr).expect("connect");
        std.set_nodelay(true).ok();
        let mut std = std;
        let hello = match server.kind {
            Kind::Tickwire | Kind::Tokio => format!(
                "GET /ws?subscribe={} HTTP/1.1\r\nHost: b\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
                names.join(",")
            ),
            Kind::Ceiling => format!("SUB {}\n", names.join(",")),
        };
        std.write_all(hello.as_bytes()).expect("hello");
        std.set_nonblocking(true).expect("nonblocking");
        let mut s = TcpStream::from_std(std);
        let e = subs.vacant_entry();
        poll.registry()
            .register(&mut s, Token(e.key()), Interest::READABLE)
            .expect("register");
        e.insert(Sub {
            s,
            ready: server.kind == Kind::Ceiling,
            inbuf: Vec::new(),
            last: vec![0; sc.topics],
        });
    }
    (subs, started.elapsed())
}

/// Reads and checks everything that arrived on `sub`.
fn drain(sub: &mut Sub, buf: &mut [u8], tally: &mut Tally, epoch: Instant) {
    loop {
        match sub.s.read(buf) {
            Ok(0) => return,
            Ok(n) => sub.inbuf.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    let mut pos = 0;
    if !sub.ready {
        let Some(end) = sub.inbuf.windows(4).position(|w| w == b"\r\n\r\n") else {
            return;
        };
        pos = end + 4;
        sub.ready = true;
    }
    let now_us = epoch.elapsed().as_micros() as u64;
    while sub.inbuf.len() - pos >= 2 {
        let b = &sub.inbuf[pos..];
        let (len, head) = match b[1] & 0x7f {
            126 if b.len() >= 4 => (u16::from_be_bytes([b[2], b[3]]) as usize, 4),
            127 if b.len() >= 10 => (
                u64::from_be_bytes(b[2..10].try_into().unwrap_or([0; 8])) as usize,
                10,
            ),
            126 | 127 => break,
            n => (n as usize, 2),
        };
        if b.len() < head + len {
            break;
        }
        if b[0] & 0x0f == 1 {
            let text = &b[head..head + len];
            if let (Some(topic), Some(seq), Some(t)) = (
                field(text, b"\"topic\":\"b/"),
                field(text, b"\"seq\":"),
                field(text, b"\"t\":"),
            ) {
                let topic = topic as usize;
                let last = sub.last[topic];
                if last != 0 && seq <= last {
                    tally.order_violations += 1;
                } else if last != 0 && seq > last + 1 {
                    tally.losses += seq - last - 1;
                }
                sub.last[topic] = seq;
                tally.deliveries += 1;
                tally
                    .latencies_us
                    .push(now_us.saturating_sub(t).min(u32::MAX as u64) as u32);
            }
        }
        pos += head + len;
    }
    sub.inbuf.drain(..pos);
}

/// The decimal number right after `key` in `text`.
fn field(text: &[u8], key: &[u8]) -> Option<u64> {
    let at = text.windows(key.len()).position(|w| w == key)? + key.len();
    let digits = text[at..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .fold(0u64, |n, &d| n * 10 + u64::from(d - b'0'));
    Some(digits)
}

/// The publisher: connects to the server's publish endpoint and sends `{"t":..,"pad":..}`
/// quotes round-robin over the topics, at `rate` per second or as fast as the socket takes.
fn publisher(
    server_kind: Kind,
    addr: SocketAddr,
    sc: Scenario,
    epoch: Instant,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
) {
    let mut s = StdStream::connect(addr).expect("publisher connects");
    s.set_nodelay(true).ok();
    match server_kind {
        Kind::Tickwire | Kind::Tokio => {
            s.write_all(b"GET /publish HTTP/1.1\r\nHost: b\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").expect("upgrade");
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                s.read_exact(&mut byte).expect("101");
                head.push(byte[0]);
            }
        }
        Kind::Ceiling => s.write_all(b"PUB\n").expect("pub"),
    }
    // Drain whatever the server sends back (errors) so it never blocks on us.
    let mut reader = s.try_clone().expect("clone");
    thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while matches!(reader.read(&mut buf), Ok(n) if n > 0) {}
    });
    let pad = "x".repeat(60); // about 120 bytes of payload with the rest
    let mut n: u64 = 0;
    let start = Instant::now();
    let mut batch = Vec::with_capacity(64 * 1024);
    while !stop.load(Ordering::Relaxed) {
        let burst = match sc.rate {
            Some(rate) => {
                let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
                if due <= n {
                    thread::sleep(Duration::from_micros(200));
                    continue;
                }
                due - n
            }
            None => 64,
        };
        batch.clear();
        for _ in 0..burst {
            let topic = topic_name((n as usize) % sc.topics);
            let t = epoch.elapsed().as_micros();
            let payload = format!("{{\"t\":{t},\"pad\":\"{pad}\"}}");
            match server_kind {
                Kind::Tickwire | Kind::Tokio => {
                    let msg = format!("{{\"topic\":\"{topic}\",\"data\":{payload}}}");
                    batch.extend(encode_client_frame(
                        true,
                        OpCode::Text,
                        msg.as_bytes(),
                        [1, 2, 3, 4],
                    ));
                }
                Kind::Ceiling => batch.extend(format!("{topic} {payload}\n").as_bytes()),
            }
            n += 1;
        }
        if s.write_all(&batch).is_err() {
            break;
        }
    }
    sent.store(n, Ordering::Relaxed);
}

struct Row {
    scenario: &'static str,
    server: Kind,
    subscribers: usize,
    setup_per_sec: f64,
    deliveries_per_sec: f64,
    published: u64,
    server_cpu: f64,
    generator_cpu: f64,
    ns_per_delivery: f64,
    p50: u32,
    p99: u32,
    p999: u32,
    max: u32,
    losses: u64,
    order_violations: u64,
    rss_per_conn: f64,
}

fn run(kind: Kind, sc: Scenario) -> Row {
    let server = Server::start(kind);
    let mut poll = Poll::new().expect("poll");
    thread::sleep(Duration::from_millis(200));
    let (rss_before, epoch) = (server.usage().1, Instant::now());
    let (mut subs, setup) = connect_all(&server, &sc, &poll);
    let mut events = Events::with_capacity(4096);
    let mut buf = vec![0u8; 256 * 1024];
    let mut tally = Tally::default();
    // Wait until every handshake is answered.
    let deadline = Instant::now() + Duration::from_secs(60);
    while subs.iter().any(|(_, s)| !s.ready) && Instant::now() < deadline {
        poll.poll(&mut events, Some(Duration::from_millis(50)))
            .expect("poll");
        for ev in events.iter() {
            if let Some(s) = subs.get_mut(ev.token().0) {
                drain(s, &mut buf, &mut tally, epoch);
            }
        }
    }
    let setup_per_sec = sc.subscribers as f64 / setup.as_secs_f64();
    thread::sleep(Duration::from_millis(300));
    let rss_after = server.usage().1;
    let rss_per_conn =
        (rss_after.saturating_sub(rss_before) as f64 * 1024.0) / sc.subscribers as f64;
    if sc.idle {
        return Row {
            scenario: sc.name,
            server: kind,
            subscribers: sc.subscribers,
            setup_per_sec,
            deliveries_per_sec: 0.0,
            published: 0,
            server_cpu: 0.0,
            generator_cpu: 0.0,
            ns_per_delivery: 0.0,
            p50: 0,
            p99: 0,
            p999: 0,
            max: 0,
            losses: 0,
            order_violations: 0,
            rss_per_conn,
        };
    }
    tally = Tally::default();
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let feeder = {
        let (stop, sent) = (stop.clone(), sent.clone());
        let addr = server.publish_addr;
        thread::spawn(move || publisher(kind, addr, sc, epoch, stop, sent))
    };
    let (cpu0, _) = server.usage();
    let (gen0, _) = proc_usage(std::process::id());
    let window = Instant::now();
    while window.elapsed() < Duration::from_secs(sc.seconds) {
        poll.poll(&mut events, Some(Duration::from_millis(20)))
            .expect("poll");
        for ev in events.iter() {
            if let Some(s) = subs.get_mut(ev.token().0) {
                drain(s, &mut buf, &mut tally, epoch);
            }
        }
    }
    let wall = window.elapsed().as_secs_f64();
    let (cpu1, _) = server.usage();
    let (gen1, _) = proc_usage(std::process::id());
    stop.store(true, Ordering::Relaxed);
    let _ = feeder.join();
    let mut lat = std::mem::take(&mut tally.latencies_us);
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    Row {
        scenario: sc.name,
        server: kind,
        subscribers: sc.subscribers,
        setup_per_sec,
        deliveries_per_sec: tally.deliveries as f64 / wall,
        published: sent.load(Ordering::Relaxed),
        server_cpu: (cpu1 - cpu0) / wall * 100.0,
        generator_cpu: (gen1 - gen0) / wall * 100.0,
        ns_per_delivery: if tally.deliveries > 0 {
            (cpu1 - cpu0) * 1e9 / tally.deliveries as f64
        } else {
            0.0
        },
        p50: pct(0.5),
        p99: pct(0.99),
        p999: pct(0.999),
        max: lat.last().copied().unwrap_or(0),
        losses: tally.losses,
        order_violations: tally.order_violations,
        rss_per_conn,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--ceiling-server") {
        ceiling_server();
        return;
    }
    if args.iter().any(|a| a == "--tokio-server") {
        tokio_peer::serve();
        return;
    }
    if !args.iter().any(|a| a == "--bench") {
        // `cargo test --all-targets` runs bench binaries without `--bench`: a load run is not a
        // test, so say how to run it and stop.
        println!("fanout: a benchmark; run it with `cargo bench --bench fanout -- --quick`");
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let _ = rlimit::increase_nofile_limit(65536);
    let mut rows = Vec::new();
    for sc in scenarios(quick) {
        if only.as_deref().is_some_and(|o| o != sc.name) {
            continue;
        }
        println!(
            "{}: {} subscribers, {} topics, {} each, rate {}, {} s{}",
            sc.name,
            sc.subscribers,
            sc.topics,
            sc.topics_per_subscriber,
            sc.rate.map_or("max".to_owned(), |r| format!("{r}/s")),
            sc.seconds,
            if sc.idle {
                " (idle: memory per connection)"
            } else {
                ""
            }
        );
        for kind in [Kind::Tickwire, Kind::Tokio, Kind::Ceiling] {
            rows.push(run(kind, sc));
        }
    }
    println!(
        "\n{:<3} {:<9} {:>6} {:>9} {:>11} {:>9} {:>6} {:>6} {:>9} {:>7} {:>7} {:>7} {:>8} {:>7} {:>5} {:>9}",
        "sc", "server", "subs", "setup/s", "deliv/s", "published", "srv%", "gen%", "ns/deliv",
        "p50us", "p99us", "p999us", "maxus", "losses", "order", "rss/conn"
    );
    for r in &rows {
        println!(
            "{:<3} {:<9} {:>6} {:>9.0} {:>11.0} {:>9} {:>6.0} {:>6.0} {:>9.0} {:>7} {:>7} {:>7} {:>8} {:>7} {:>5} {:>9.0}",
            r.scenario, format!("{:?}", r.server).to_lowercase(), r.subscribers, r.setup_per_sec,
            r.deliveries_per_sec, r.published, r.server_cpu, r.generator_cpu, r.ns_per_delivery, r.p50,
            r.p99, r.p999, r.max, r.losses, r.order_violations, r.rss_per_conn
        );
    }
}
