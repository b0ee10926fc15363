//! The publish benchmark (issue 18): how fast a publisher can push updates into one worker, and
//! what each publication costs the server in CPU, over every publish path tickwire has, beside
//! the peers a user would compare it with, all in the same run.
//!
//! Servers, each started as its own process for each row:
//! - `tickwire`: the release binary, `--workers 1`;
//! - `nchan`: nginx with Nchan (Debian's `libnginx-mod-nchan`, installed with apt-get when
//!   missing and allowed; skipped with a message when it cannot be), one worker, in a temporary
//!   prefix directory with its own config on a free port: `nchan_publisher` on `/publish` with
//!   the channel from `$arg_topic`, WebSocket subscribers on `/sub`;
//! - `node`: a plain Node.js `http` server that parses the JSON body
//!   (`benches/peers/http-node/server.js`, no npm packages).
//!
//! Paths, each a row:
//! - `http`: `POST /publish?topic=T`, one JSON payload per request, driven by `wrk` (16
//!   connections, keep-alive; a Lua script makes the POST);
//! - `http-close`: the same with `Connection: close` on every request (what tickwire did before
//!   keep-alive);
//! - `batch`: `POST /publish` with an NDJSON body of 100 publications, by `wrk`;
//! - `ws`: the streaming publisher, `ws://local/publish`, one `{"topic":..,"data":..,"id":..}`
//!   text frame per publication, each answered, at most 1,024 unanswered (without ids nothing
//!   slows a publisher down but `queue_full` errors), by a generator in this executable.
//!
//! Each path runs with no subscriber and with 100 WebSocket subscribers on the topic (read by
//! one thread here that counts the frames they get). The server runs on core 0, the load (wrk,
//! the generator, the subscribers) on core 1, with taskset. Publications per second are what the
//! server accepted (tickwire's `published_total`; wrk's 2xx answers for the peers); CPU is the
//! server's user + system time from /proc/PID/stat (nginx: master and worker).
//!
//! `cargo bench --bench publish -- --quick` (3 s a row, once: about 45 s) or without `--quick`
//! (10 s a row, three rounds, medians: about 6 minutes); `--repeat N` sets the rounds, `--only
//! PATH` runs one path, `--subscribers N` changes the 100.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

mod common;

use common::{have_taskset, pin, pin_self, proc_cpu};
use tickwire::ws::frame::{encode_client_frame, OpCode};

const TOPIC: &str = "quotes/AAPL";
const PAYLOAD: &str = r#"{"bid":187.23,"ask":187.25,"size":300,"ts":1718000000123}"#;
const BATCH: usize = 100;
const WRK_CONNECTIONS: usize = 16;

// ---------------------------------------------------------------------------------------------
// Servers

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Tickwire,
    Nchan,
    Node,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Tickwire => "tickwire",
            Kind::Nchan => "nchan",
            Kind::Node => "node",
        }
    }
}

/// A server process (and what it leaves on disk), stopped when dropped.
struct Server {
    kind: Kind,
    child: Child,
    /// Where publishers connect.
    publish: SocketAddr,
    /// Where WebSocket subscribers connect, and the path with the topic.
    subscribe: Option<(SocketAddr, String)>,
    /// nginx's prefix directory, removed at the end.
    dir: Option<PathBuf>,
}

impl Drop for Server {
    fn drop(&mut self) {
        // nginx's worker outlives a killed master: ask the master to stop (it stops its worker
        // first), and kill what is left after a few seconds.
        if self.kind == Kind::Nchan {
            let workers = children_of(self.child.id());
            signal(self.child.id(), "TERM");
            let deadline = Instant::now() + Duration::from_secs(5);
            while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(20));
            }
            for pid in workers {
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                if String::from_utf8_lossy(&cmdline).contains("nginx") {
                    signal(pid, "KILL");
                }
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

impl Server {
    /// CPU seconds used so far by the server's processes (nginx: the master and its worker).
    fn cpu(&self) -> f64 {
        let pid = self.child.id();
        let mut total = proc_cpu(pid);
        if self.kind == Kind::Nchan {
            total += children_of(pid).into_iter().map(proc_cpu).sum::<f64>();
        }
        total
    }
}

fn start(kind: Kind) -> Result<Server, String> {
    match kind {
        Kind::Tickwire => Ok(start_tickwire()),
        Kind::Nchan => start_nchan(),
        Kind::Node => start_node(),
    }
}

fn start_tickwire() -> Server {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tickwire"));
    cmd.args(["--listen", "127.0.0.1:0", "--local-listen", "127.0.0.1:0"]);
    cmd.args(["--workers", "1", "--log-level", "error"]);
    pin(&mut cmd, 0);
    let mut child = cmd.stdout(Stdio::piped()).spawn().expect("tickwire starts");
    let mut out = child.stdout.take().expect("stdout");
    let found = read_banner(&mut out, &["subscribe:", "publish:"]);
    // The rest of stdout is read and dropped, so the process never blocks on a full pipe.
    thread::spawn(move || io::copy(&mut out, &mut io::sink()));
    match found {
        Ok(addrs) => Server {
            kind: Kind::Tickwire,
            child,
            publish: addrs[1],
            subscribe: Some((addrs[0], "/ws".to_owned())),
            dir: None,
        },
        Err(text) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("tickwire did not say where it listens: {text}");
        }
    }
}

fn start_node() -> Result<Server, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/peers/http-node/server.js");
    let mut cmd = Command::new("node");
    cmd.arg(script);
    pin(&mut cmd, 0);
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("node could not start: {e}"))?;
    let mut out = child.stdout.take().expect("stdout");
    match read_banner(&mut out, &["publish"]) {
        Ok(addrs) => Ok(Server {
            kind: Kind::Node,
            child,
            publish: addrs[0],
            subscribe: None,
            dir: None,
        }),
        Err(text) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(format!("node exited before listening: {text}"))
        }
    }
}

const NCHAN_MODULE: &str = "/usr/lib/nginx/modules/ngx_nchan_module.so";

/// Installs nginx with Nchan from Debian when it is missing and this process may (root with
/// apt-get). `Err` says why Nchan cannot run here.
fn prepare_nchan() -> Result<(), String> {
    if Path::new(NCHAN_MODULE).exists() && Path::new("/usr/sbin/nginx").exists() {
        return Ok(());
    }
    if !rustix::process::geteuid().is_root() {
        return Err("libnginx-mod-nchan is not installed (apt-get needs root)".into());
    }
    println!("installing libnginx-mod-nchan with apt-get ...");
    // Bounded like the rest of the run: a registry that does not answer is a skip, not a hang.
    let install = || {
        Command::new("timeout")
            .args([
                "300",
                "apt-get",
                "install",
                "-y",
                "-q",
                "libnginx-mod-nchan",
            ])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .status()
    };
    let ok = install().is_ok_and(|s| s.success())
        || (Command::new("timeout")
            .args(["300", "apt-get", "update", "-q"])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
            && install().is_ok_and(|s| s.success()));
    if ok && Path::new(NCHAN_MODULE).exists() {
        Ok(())
    } else {
        Err("apt-get could not install libnginx-mod-nchan".into())
    }
}

/// nginx in a prefix directory of its own, one worker, on a free port.
fn start_nchan() -> Result<Server, String> {
    let dir = std::env::temp_dir().join(format!(
        "tickwire-bench-nchan-{}-{}",
        std::process::id(),
        fastrand::u32(..)
    ));
    std::fs::create_dir_all(dir.join("logs")).map_err(|e| e.to_string())?;
    let port = free_port();
    let d = dir.display();
    let conf = format!(
        "load_module {NCHAN_MODULE};
user root;
worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/logs/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    keepalive_requests 10000;
    server {{
        listen 127.0.0.1:{port};
        location = /publish {{
            nchan_publisher;
            nchan_channel_id $arg_topic;
        }}
        location = /sub {{
            nchan_subscriber websocket;
            nchan_channel_id $arg_topic;
        }}
    }}
}}
"
    );
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf).map_err(|e| e.to_string())?;
    let mut cmd = Command::new("/usr/sbin/nginx");
    cmd.arg("-p").arg(&dir).arg("-c").arg(&conf_path);
    pin(&mut cmd, 0);
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("nginx could not start: {e}"))?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut server = Server {
        kind: Kind::Nchan,
        child,
        publish: addr,
        subscribe: Some((addr, format!("/sub?topic={TOPIC}"))),
        dir: Some(dir.clone()),
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).is_err() {
        if Instant::now() > deadline || server.child.try_wait().ok().flatten().is_some() {
            let log = std::fs::read_to_string(dir.join("logs/error.log")).unwrap_or_default();
            return Err(format!("nginx did not listen: {log}"));
        }
        thread::sleep(Duration::from_millis(20));
    }
    Ok(server)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The addresses after each key in what the server prints first.
fn read_banner(out: &mut impl Read, keys: &[&str]) -> Result<Vec<SocketAddr>, String> {
    let find = |text: &str, key: &str| -> Option<SocketAddr> {
        let rest = &text[text.find(key)? + key.len()..];
        let rest = rest
            .trim_start()
            .trim_start_matches("ws://")
            .trim_start_matches("http://");
        rest.split(['/', ' ', '\n']).next()?.parse().ok()
    };
    let mut text = String::new();
    let mut buf = [0u8; 1024];
    loop {
        match out.read(&mut buf) {
            Ok(n) if n > 0 => text.push_str(&String::from_utf8_lossy(&buf[..n])),
            _ => return Err(text),
        }
        let found: Option<Vec<SocketAddr>> = keys.iter().map(|k| find(&text, k)).collect();
        if let Some(addrs) = found {
            return Ok(addrs);
        }
    }
}

/// The processes whose parent is `pid` (nginx's worker).
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
            // After the command name: state, then the parent's pid.
            stat.rsplit_once(')')
                .and_then(|(_, r)| r.split_whitespace().nth(1)?.parse::<u32>().ok())
                == Some(pid)
        })
        .collect()
}

/// Sends a signal (`TERM`, `KILL`) to a process.
fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

/// tickwire's `published_total`, from /metrics.
fn published_total(addr: SocketAddr) -> u64 {
    let mut s = TcpStream::connect(addr).expect("connect for /metrics");
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        .expect("write");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("read /metrics");
    text.lines()
        .find_map(|l| l.strip_prefix("tickwire_published_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("tickwire_published_total")
}

// ---------------------------------------------------------------------------------------------
// Subscribers: WebSocket connections read by one thread that counts data frames

/// Counts whole data frames in a server's byte stream, skipping payloads without reading them.
#[derive(Default)]
struct FrameCounter {
    header: [u8; 10],
    have: usize,
    need: usize,
    skip: u64,
}

impl FrameCounter {
    fn feed(&mut self, mut data: &[u8]) -> u64 {
        let mut frames = 0;
        while !data.is_empty() {
            if self.skip > 0 {
                let n = data
                    .len()
                    .min(usize::try_from(self.skip).unwrap_or(usize::MAX));
                self.skip -= n as u64;
                data = &data[n..];
                continue;
            }
            self.header[self.have] = data[0];
            self.have += 1;
            data = &data[1..];
            if self.have == 2 {
                self.need = 2 + match self.header[1] & 0x7f {
                    126 => 2,
                    127 => 8,
                    _ => 0,
                };
            }
            if self.have >= 2 && self.have == self.need {
                let len = match self.header[1] & 0x7f {
                    126 => u64::from(u16::from_be_bytes([self.header[2], self.header[3]])),
                    127 => {
                        let mut b = [0u8; 8];
                        b.copy_from_slice(&self.header[2..10]);
                        u64::from_be_bytes(b)
                    }
                    n => u64::from(n),
                };
                if matches!(self.header[0] & 0x0f, 1 | 2) {
                    frames += 1;
                }
                self.skip = len;
                self.have = 0;
                self.need = 0;
            }
        }
        frames
    }
}

/// A WebSocket connection after its 101, and the bytes read past the response head.
fn ws_connect(addr: SocketAddr, path: &str) -> io::Result<(TcpStream, Vec<u8>)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_nodelay(true)?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )?;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let end = loop {
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Err(io::Error::other("closed during the handshake"));
        }
        got.extend_from_slice(&buf[..n]);
    };
    if !got.starts_with(b"HTTP/1.1 101") {
        let head = String::from_utf8_lossy(&got[..end]).into_owned();
        return Err(io::Error::other(format!("no upgrade: {head}")));
    }
    Ok((s, got.split_off(end)))
}

/// `n` subscribers on the topic, read by one thread until `stop`; `frames` counts what they got.
struct Subscribers {
    stop: Arc<AtomicBool>,
    frames: Arc<AtomicU64>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Subscribers {
    fn start(server: &Server, n: usize) -> Result<Subscribers, String> {
        let Some((addr, path)) = server.subscribe.clone() else {
            return Err("no subscriber endpoint".into());
        };
        let mut streams = Vec::with_capacity(n);
        for _ in 0..n {
            let (mut s, rest) = ws_connect(addr, &path).map_err(|e| e.to_string())?;
            if server.kind == Kind::Tickwire {
                subscribe_tickwire(&mut s, rest).map_err(|e| e.to_string())?;
            }
            s.set_nonblocking(true).map_err(|e| e.to_string())?;
            streams.push(mio::net::TcpStream::from_std(s));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let frames = Arc::new(AtomicU64::new(0));
        let (stop2, frames2) = (stop.clone(), frames.clone());
        let thread = thread::spawn(move || read_all(streams, &stop2, &frames2));
        Ok(Subscribers {
            stop,
            frames,
            thread: Some(thread),
        })
    }

    fn frames(&self) -> u64 {
        self.frames.load(Ordering::Relaxed)
    }
}

impl Drop for Subscribers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Sends tickwire's subscribe request and waits for its answer (the first data frame).
fn subscribe_tickwire(s: &mut TcpStream, mut rest: Vec<u8>) -> io::Result<()> {
    let req = format!(r#"{{"op":"subscribe","topics":["{TOPIC}"],"id":1}}"#);
    s.write_all(&encode_client_frame(
        true,
        OpCode::Text,
        req.as_bytes(),
        [1, 2, 3, 4],
    ))?;
    let mut counter = FrameCounter::default();
    let mut buf = [0u8; 4096];
    while counter.feed(&rest) == 0 {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Err(io::Error::other("closed before the subscribe answer"));
        }
        rest = buf[..n].to_vec();
    }
    Ok(())
}

fn read_all(mut streams: Vec<mio::net::TcpStream>, stop: &AtomicBool, frames: &AtomicU64) {
    let mut poll = mio::Poll::new().expect("poll");
    for (i, s) in streams.iter_mut().enumerate() {
        poll.registry()
            .register(s, mio::Token(i), mio::Interest::READABLE)
            .expect("register");
    }
    let mut counters: Vec<FrameCounter> = streams.iter().map(|_| FrameCounter::default()).collect();
    let mut events = mio::Events::with_capacity(256);
    let mut buf = vec![0u8; 256 * 1024];
    while !stop.load(Ordering::Relaxed) {
        if poll
            .poll(&mut events, Some(Duration::from_millis(50)))
            .is_err()
        {
            continue;
        }
        for ev in events.iter() {
            let i = ev.token().0;
            // A read shorter than the buffer took all there was: stop there rather than spend
            // a second syscall to hear WouldBlock (the load core is the scarce one); new data
            // brings a new edge.
            loop {
                match streams[i].read(&mut buf) {
                    Ok(n) if n > 0 => {
                        frames.fetch_add(counters[i].feed(&buf[..n]), Ordering::Relaxed);
                        if n < buf.len() {
                            break;
                        }
                    }
                    _ => break,
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Load

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Via {
    Http,
    HttpClose,
    Batch,
    Ws,
}

impl Via {
    fn name(self) -> &'static str {
        match self {
            Via::Http => "http",
            Via::HttpClose => "http-close",
            Via::Batch => "batch",
            Via::Ws => "ws",
        }
    }

    /// Publications per request.
    fn per_request(self) -> u64 {
        if self == Via::Batch {
            BATCH as u64
        } else {
            1
        }
    }
}

/// What a load run saw.
#[derive(Default)]
struct Load {
    /// Requests answered 2xx (wrk) or frames written (ws).
    ok: u64,
    /// Requests answered otherwise, socket errors, or error messages on the streaming publisher.
    errors: u64,
    /// wrk's mean latency, as it prints it.
    latency: String,
}

/// wrk's Lua script for one path.
fn wrk_script(path: Via, dir: &Path) -> PathBuf {
    let body = match path {
        Via::Batch => (0..BATCH)
            .map(|_| format!("{{\"topic\":\"{TOPIC}\",\"data\":{PAYLOAD}}}\n"))
            .collect::<String>(),
        _ => PAYLOAD.to_owned(),
    };
    let mut lua = format!(
        "wrk.method = \"POST\"\nwrk.body = [[{body}]]\nwrk.headers[\"Content-Type\"] = \"application/json\"\n"
    );
    if path == Via::HttpClose {
        lua.push_str("wrk.headers[\"Connection\"] = \"close\"\n");
    }
    let file = dir.join(format!("wrk-{}.lua", path.name()));
    std::fs::write(&file, lua).expect("write the wrk script");
    file
}

fn run_wrk(url: &str, script: &Path, secs: u64) -> Load {
    let out = Command::new("wrk")
        .args([
            "-t1",
            &format!("-c{WRK_CONNECTIONS}"),
            &format!("-d{secs}s"),
        ])
        .args(["--timeout", "5s", "-s"])
        .arg(script)
        .arg(url)
        .output()
        .expect("wrk runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let number_before = |key: &str| -> u64 {
        text.lines()
            .find(|l| l.contains(key))
            .and_then(|l| l.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    let requests = number_before(" requests in ");
    let non_2xx = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Non-2xx or 3xx responses:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let socket_errors: u64 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Socket errors:"))
        .map_or(0, |rest| {
            rest.split(',')
                .filter_map(|p| p.split_whitespace().last()?.parse::<u64>().ok())
                .sum()
        });
    let latency = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Latency"))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or("?")
        .to_owned();
    if requests == 0 {
        println!(
            "    wrk said: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Load {
        ok: requests.saturating_sub(non_2xx),
        errors: non_2xx + socket_errors,
        latency,
    }
}

/// Publications the streaming publisher may have sent and not had answered.
const WS_WINDOW: u64 = 1024;

/// The streaming publisher as a careful client runs it: each frame with an id, so each is
/// answered (`published`, or an error such as `queue_full`), at most [`WS_WINDOW`] unanswered,
/// 64 frames per write, for `secs`. A second thread reads and counts the answers.
fn run_ws(addr: SocketAddr, secs: u64) -> Load {
    let (mut s, rest) = ws_connect(addr, "/publish").expect("streaming publisher connects");
    let text = format!("{{\"topic\":\"{TOPIC}\",\"data\":{PAYLOAD},\"id\":1}}");
    let frame = encode_client_frame(true, OpCode::Text, text.as_bytes(), [7, 9, 11, 13]);
    let burst = frame.repeat(64);
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let mut reader = s.try_clone().expect("clone");
    reader
        .set_read_timeout(Some(Duration::from_millis(100)))
        .ok();
    let writer = thread::current();
    let (stop2, answered2, errors2) = (stop.clone(), answered.clone(), errors.clone());
    let reading = thread::spawn(move || {
        let mut counter = FrameCounter::default();
        let mut buf = vec![0u8; 64 * 1024];
        let mut chunk = rest;
        loop {
            let frames = counter.feed(&chunk);
            // Answers are `{"type":"published",...}` or `{"type":"error",...}`.
            let bad = chunk
                .windows(14)
                .filter(|w| w == b"\"type\":\"error\"")
                .count();
            errors2.fetch_add(bad as u64, Ordering::Relaxed);
            answered2.fetch_add(frames, Ordering::Relaxed);
            writer.unpark();
            if stop2.load(Ordering::Relaxed) {
                return;
            }
            match reader.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => chunk = buf[..n].to_vec(),
                Err(_) => chunk.clear(),
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut sent = 0;
    while Instant::now() < deadline {
        if sent - answered.load(Ordering::Relaxed) + 64 > WS_WINDOW {
            thread::park_timeout(Duration::from_millis(5));
            continue;
        }
        if s.write_all(&burst).is_err() {
            break;
        }
        sent += 64;
    }
    stop.store(true, Ordering::Relaxed);
    let _ = reading.join();
    Load {
        ok: sent,
        errors: errors.load(Ordering::Relaxed),
        latency: "-".into(),
    }
}

// ---------------------------------------------------------------------------------------------
// Rows

struct Row {
    server: Kind,
    path: Via,
    subscribers: usize,
    publishes_per_sec: f64,
    server_cpu: f64,
    us_per_publish: f64,
    deliveries_per_sec: f64,
    latency: String,
    errors: u64,
}

fn run(kind: Kind, path: Via, subscribers: usize, secs: u64, dir: &Path) -> Result<Row, String> {
    let server = start(kind)?;
    let subs = if subscribers > 0 {
        Some(Subscribers::start(&server, subscribers)?)
    } else {
        None
    };
    let tickwire = kind == Kind::Tickwire;
    let url = format!("http://{}/publish", server.publish);
    let url = match path {
        Via::Batch => url,
        _ => format!("{url}?topic={TOPIC}"),
    };
    let script = wrk_script(path, dir);
    let frames0 = subs.as_ref().map_or(0, Subscribers::frames);
    let published0 = if tickwire {
        published_total(server.publish)
    } else {
        0
    };
    let cpu0 = server.cpu();
    let t0 = Instant::now();
    let load = match path {
        Via::Ws => run_ws(server.publish, secs),
        _ => run_wrk(&url, &script, secs),
    };
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu = server.cpu() - cpu0;
    let frames = subs.as_ref().map_or(0, Subscribers::frames) - frames0;
    // What the server accepted: its own count where it has one.
    let published = if tickwire {
        published_total(server.publish) - published0
    } else {
        load.ok * path.per_request()
    };
    drop(subs);
    Ok(Row {
        server: kind,
        path,
        subscribers,
        publishes_per_sec: published as f64 / elapsed,
        server_cpu: cpu / elapsed * 100.0,
        us_per_publish: if published > 0 {
            cpu * 1e6 / published as f64
        } else {
            0.0
        },
        deliveries_per_sec: frames as f64 / elapsed,
        latency: load.latency,
        errors: load.errors,
    })
}

/// The median of each figure over a row's runs (the latency of the median-throughput run).
fn median(mut runs: Vec<Row>) -> Option<Row> {
    fn mid(runs: &[Row], f: fn(&Row) -> f64) -> f64 {
        let mut v: Vec<f64> = runs.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    }
    if runs.is_empty() {
        return None;
    }
    let server_cpu = mid(&runs, |r| r.server_cpu);
    let us_per_publish = mid(&runs, |r| r.us_per_publish);
    let deliveries_per_sec = mid(&runs, |r| r.deliveries_per_sec);
    let errors = runs.iter().map(|r| r.errors).sum();
    runs.sort_by(|a, b| a.publishes_per_sec.total_cmp(&b.publishes_per_sec));
    let middle = runs.len() / 2;
    let row = runs.swap_remove(middle);
    Some(Row {
        server_cpu,
        us_per_publish,
        deliveries_per_sec,
        errors,
        ..row
    })
}

fn print_row(r: &Row) {
    println!(
        "  {:<9} {:<10} {:>4} subs {:>10.0} publishes/s  server {:>3.0}% CPU  {:>6.2} us CPU/publish  {:>10.0} deliveries/s  latency {:>8}  {} errors",
        r.server.name(),
        r.path.name(),
        r.subscribers,
        r.publishes_per_sec,
        r.server_cpu,
        r.us_per_publish,
        r.deliveries_per_sec,
        r.latency,
        r.errors
    );
}

fn print_table(rows: &[Row]) {
    let reference = |kind: Kind, subscribers: usize| {
        rows.iter()
            .find(|r| r.server == kind && r.path == Via::Http && r.subscribers == subscribers)
    };
    println!("\n| server | path | subscribers | publishes/s | server CPU | CPU µs/publish | deliveries/s | wrk mean latency | × Nchan publishes/s | × Nchan CPU/publish | × Node publishes/s |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let ratio = |kind: Kind, f: fn(&Row) -> f64| {
            reference(kind, r.subscribers)
                .filter(|p| f(p) > 0.0)
                .map_or("-".to_owned(), |p| format!("{:.2}", f(r) / f(p)))
        };
        println!(
            "| {} | {} | {} | {:.0} | {:.0}% | {:.2} | {:.0} | {} | {} | {} | {} |",
            r.server.name(),
            r.path.name(),
            r.subscribers,
            r.publishes_per_sec,
            r.server_cpu,
            r.us_per_publish,
            r.deliveries_per_sec,
            r.latency,
            ratio(Kind::Nchan, |r| r.publishes_per_sec),
            ratio(Kind::Nchan, |r| r.us_per_publish),
            ratio(Kind::Node, |r| r.publishes_per_sec),
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if !common::is_bench_run(&args, "publish") {
        return;
    }
    let flag = |name: &str| common::flag(&args, name);
    let value = |name: &str| common::value(&args, name);
    let quick = flag("--quick");
    let secs = if quick { 3 } else { 10 };
    let repeat: usize = value("--repeat").map_or(if quick { 1 } else { 3 }, |v| {
        v.parse().expect("--repeat takes a number")
    });
    let only = value("--only");
    let subscribers: usize = value("--subscribers").map_or(100, |v| v.parse().expect("a number"));
    let ncores = thread::available_parallelism().map_or(1, |n| n.get());
    pin_self(1);
    if Command::new("wrk").arg("-v").output().is_err() {
        println!("publish: wrk is missing (Debian package wrk): apt-get install wrk");
        return;
    }
    let mut kinds = vec![Kind::Tickwire];
    match prepare_nchan() {
        Ok(()) => kinds.push(Kind::Nchan),
        Err(why) => println!("nchan skipped: {why}"),
    }
    match Command::new("node").arg("--version").output() {
        Ok(_) => kinds.push(Kind::Node),
        Err(_) => println!("node skipped: node is not installed"),
    }
    println!(
        "publish: {} ({secs} s a row) on {ncores} cores; {}; load average {}",
        if quick { "quick run" } else { "full run" },
        if have_taskset() {
            "server pinned to core 0, load to core 1"
        } else {
            "taskset missing: nothing pinned"
        },
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let dir = std::env::temp_dir().join(format!("tickwire-bench-publish-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut counts = vec![0, subscribers];
    counts.dedup();
    let plan: Vec<(Kind, Via, usize)> = counts
        .into_iter()
        .flat_map(|subs| {
            let mut list = vec![(Kind::Tickwire, Via::Http, subs)];
            list.extend([Kind::Nchan, Kind::Node].map(|k| (k, Via::Http, subs)));
            list.extend([Via::Batch, Via::Ws].map(|p| (Kind::Tickwire, p, subs)));
            if subs == 0 {
                list.push((Kind::Tickwire, Via::HttpClose, 0));
            }
            list
        })
        .filter(|(k, _, subs)| kinds.contains(k) && (*k != Kind::Node || *subs == 0))
        .filter(|(_, p, _)| only.as_deref().is_none_or(|o| o == p.name()))
        .collect();
    // Every row once per round, rounds one after another: noise from other work on the machine
    // falls on every server alike, and the table takes the median.
    let mut runs: Vec<Vec<Row>> = plan.iter().map(|_| Vec::new()).collect();
    for round in 1..=repeat {
        if repeat > 1 {
            println!("round {round} of {repeat}");
        }
        for (i, &(kind, path, subs)) in plan.iter().enumerate() {
            match run(kind, path, subs, secs, &dir) {
                Ok(row) => {
                    print_row(&row);
                    runs[i].push(row);
                }
                Err(why) => println!("  {} {} skipped: {why}", kind.name(), path.name()),
            }
        }
    }
    let rows: Vec<Row> = runs.into_iter().filter_map(median).collect();
    if repeat > 1 {
        println!("\nmedians of {repeat} rounds:");
    }
    let _ = std::fs::remove_dir_all(&dir);
    print_table(&rows);
}
