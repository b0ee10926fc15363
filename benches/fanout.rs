//! The fan-out benchmark: a load generator holding thousands of WebSocket subscribers on one
//! mio thread against a server process, measuring deliveries per second, publish-to-receive
//! latency, connection set-up rate, server RSS per connection, and the server's CPU time per
//! delivery (from /proc/PID/stat). It checks per-topic order and counts losses, so a fast wrong
//! answer cannot win.
//!
//! Servers, each started as its own process by this same run:
//! - `tickwire`: the release binary (one worker; two with `--both-cores`);
//! - `tokio`: a tokio-tungstenite broadcast server in this executable (`--tokio-server`), the
//!   peer a Rust user would write;
//! - `node`: a Node.js `ws` server (`benches/peers/node/server.js`, installed with `npm ci` on
//!   first use; skipped with a message when node or npm is missing);
//! - `uws`: a uWebSockets.js server on Node (`benches/peers/uws/server.js`, the npm package
//!   `@trufflesuite/uws-js-unofficial` 20.30.0-unofficial.0 pinned in its package-lock and
//!   installed with `npm ci` on first use; skipped with a message when node or npm is missing or
//!   its native addon does not load): one `app.publish(topic, text)` per publication, as a user
//!   writes it;
//! - `uws-defer`: the same server publishing each read's publications from `setImmediate`, outside
//!   uWS's data handler (`--defer`): the variant that explains the broadcast figure
//!   (BENCHMARKS.md, "uWebSockets.js"); `uws-cork` (each publish in the publisher's `ws.cork()`,
//!   which changes nothing) runs only when named with `--servers`;
//! - `ceiling`: a plain mio TCP server in this executable (`--ceiling-server`) writing the same
//!   pre-encoded frames with no WebSocket work: the most any broker could reach here;
//! - with `--redis` instead of the peers, `tw-redis`: two tickwire nodes sharing one feed
//!   through a redis-server started for the run, subscribers spread over both (CPU and RSS are
//!   the sum of the three processes);
//! - with `--tls` instead of the peers, `tickwire-tls`: the same binary with `--tls-cert` and
//!   `--tls-key` (a P-256 certificate made for the run with rcgen), the subscribers speaking
//!   wss:// through a rustls client on the generator's mio thread (the publisher stays on the
//!   plain local listener), against plain `tickwire`: the cost of TLS per delivery.
//!
//! By default the server runs on core 0 and the generator on core 1 (taskset), so each has a
//! core of its own; `--both-cores` leaves both unpinned (tickwire then runs two workers).
//!
//! `cargo bench --bench fanout -- --quick` (a few seconds per scenario, smaller counts) or
//! without `--quick` for the full sizes; `--only S1` runs one scenario; `--sweep` runs the
//! broadcast at growing subscriber counts (the plot in BENCHMARKS.md); `--redis` compares one
//! node with two through Redis; `--servers tickwire,uws` runs only the servers named;
//! `--window N` lets at most N publications (default 200) be on their way at max rate;
//! `--syscalls` counts the server's write system calls over the publishing window with `perf
//! stat` tracepoints (the `wr/deliv` column: write calls per delivery); `--csv FILE` writes
//! every row as CSV too. `TICKWIRE_BIN=path` runs that tickwire binary instead of this build's
//! (an A/B comparison of two builds with the same generator).
//!
//! The delivery features, each against plain tickwire in the same run (BENCHMARKS.md,
//! "Delivery features"), with a 20-field quote of which two fields change per update, `--rounds
//! N` times (the rows of a round rotated one place each round; medians and per-round ratios):
//! - `--rate` (issue 13): 100 topics at 100 updates/s each to subscribers of 10 topics, with no
//!   rate and with `max_rate` 2: server CPU per second and wire bytes per second;
//! - `--recovery` (issue 13): clients coming back with `since` and 100 messages replayed from
//!   history, against the same clients subscribing plain (one snapshot): server CPU and bytes
//!   per client;
//! - `--deltas` (issue 14): the spread and the broadcast at 200,000 deliveries/s, plain,
//!   permessage-deflate, `delta`, both, and the Node `ws` peer plain and with perMessageDeflate:
//!   bytes and server CPU per delivery;
//! - `--features` (issue 16): one scenario, one row per feature (TLS, compression, deltas,
//!   `max_rate`, JWT), with the server's CPU per connection set up (handshake cost).
//!
//! For these the generator also counts the bytes it reads from its sockets (wire bytes, TLS
//! records included), offers permessage-deflate and inflates what comes compressed (one
//! inflater reset per message where the server says `server_no_context_takeover`, one per
//! connection where it keeps its context), checks that every merge patch follows the seq before
//! it, and reads short phases' CPU from the scheduler (`/proc/PID/task/*/schedstat`).

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream as StdStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use rustls::{ClientConfig, ClientConnection};
mod common;

use common::{have_taskset, pin, pin_self, proc_usage};
use tickwire::ws::frame::{encode_client_frame, encode_server_frame, OpCode};

// ---------------------------------------------------------------------------------------------
// Scenarios

#[derive(Clone, Copy, Debug)]
struct Scenario {
    name: &'static str,
    subscribers: usize,
    topics: usize,
    topics_per_subscriber: usize,
    /// Publications per second, or `None` for as fast as the whole system delivers (at most
    /// `WINDOW` publications on their way, so no server can build an unbounded backlog).
    rate: Option<u64>,
    seconds: u64,
    /// Idle connections only (memory per connection).
    idle: bool,
    /// At max rate, publications on their way at most (`WINDOW` unless `--window N`).
    window: u64,
    /// What the subscribers ask for beyond a plain subscription, and what the feed publishes.
    opts: Opts,
}

/// The delivery features a run may turn on (issues 13, 14 and 16: `--rate`, `--deltas`,
/// `--features`). The default is the plain subscription every other row uses.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Opts {
    /// The row's name in the feature tables ("plain", "deflate", "delta", ...).
    label: &'static str,
    /// Offer permessage-deflate on the upgrade; the generator inflates what comes compressed.
    deflate: bool,
    /// Subscribe with `"delta":true`; the generator parses the merge patches.
    delta: bool,
    /// Subscribe with this `max_rate` (updates per topic per second).
    max_rate: Option<f64>,
    /// Publish a 20-field quote of which two fields change per update (`quote_payload`) instead
    /// of `{"t":..,"pad":"x…"}`.
    quote: bool,
    /// The server checks tokens (`--jwt-key`) and every subscriber presents one (`?token=`).
    jwt: bool,
    /// Do not subscribe at connect: the caller sends the subscribe requests itself (recovery).
    defer_subscribe: bool,
}

impl Opts {
    /// Whether subscribing needs a `subscribe` op after the upgrade (its options cannot go in
    /// the upgrade URL's `?subscribe=`).
    fn subscribe_op(&self) -> bool {
        self.delta || self.max_rate.is_some()
    }
}

/// At max rate, how many publications may be published and not yet received everywhere.
const WINDOW: u64 = 200;

fn scenarios(quick: bool) -> Vec<Scenario> {
    let (big, mid, idle, secs) = if quick {
        (2_000, 1_000, 5_000, 3)
    } else {
        (10_000, 1_000, 20_000, 10)
    };
    // The generator holds one descriptor per connection: stay under its limit (20,000 on the
    // machines here, so S4 holds 19,500 there).
    let idle = idle.min(fd_limit().saturating_sub(500));
    let sc = |name, subscribers, topics, topics_per_subscriber, rate| Scenario {
        name,
        subscribers,
        topics,
        topics_per_subscriber,
        rate,
        seconds: secs,
        idle: false,
        window: WINDOW,
        opts: Opts::default(),
    };
    // The fixed rates are what every server here sustains: the same work for each, so CPU per
    // delivery compares like with like (S1f: 100 deliveries per publication per 1,000
    // subscribers; S2f: one per subscriber).
    let per_k = (big / 1_000) as u64;
    vec![
        sc("S1", big, 100, 10, None),
        sc("S1f", big, 100, 10, Some(2_000 / per_k)),
        sc("S2", big, 1, 1, None),
        sc("S2f", big, 1, 1, Some(200 / per_k)),
        sc("S3", mid, 10, 1, Some(1_000)),
        Scenario {
            name: "S4",
            subscribers: idle,
            topics: 1,
            topics_per_subscriber: 1,
            rate: None,
            seconds: 0,
            idle: true,
            window: WINDOW,
            opts: Opts::default(),
        },
    ]
}

/// Issue 13, delivery controls: a feed of 100 topics at 100 updates per second each (10,000
/// publications/s of the 20-field quote) to subscribers taking 10 topics each, once with no rate
/// and once with `max_rate` 2. Without a rate that is 1,000 deliveries per subscriber per second
/// (10 million/s at 10,000 subscribers): more than one worker delivers, so the server conflates and
/// the generator counts the gaps; with `max_rate` 2 it is 20 per subscriber per second.
fn rate_scenarios(quick: bool) -> Vec<Scenario> {
    let (subscribers, seconds) = if quick { (2_000, 3) } else { (10_000, 10) };
    let sc = |label, max_rate| Scenario {
        name: "R",
        subscribers,
        topics: 100,
        topics_per_subscriber: 10,
        rate: Some(10_000),
        seconds,
        idle: false,
        window: WINDOW,
        opts: Opts {
            label,
            max_rate,
            quote: true,
            ..Opts::default()
        },
    };
    vec![sc("no rate", None), sc("max_rate 2", Some(2.0))]
}

/// Issue 14, deltas and compression: the spread (S1q, like S1f) and the broadcast (S2q, like
/// S2f) at a fixed 200,000 deliveries/s, publishing the 20-field quote, with subscribers plain,
/// compressed, with deltas, and with both; the Node `ws` peer plain and with its
/// perMessageDeflate. A fixed rate gives every row the same work (at max rate, what the generator
/// spends inflating would decide how much each row delivers).
fn delta_plan(quick: bool) -> Vec<(Kind, Scenario)> {
    let (big, seconds) = if quick { (2_000, 3) } else { (10_000, 10) };
    let per_k = (big / 1_000) as u64;
    let mut plan = Vec::new();
    for (name, topics, each, rate) in [("S1q", 100, 10, 2_000 / per_k), ("S2q", 1, 1, 200 / per_k)]
    {
        let sc = |label, deflate, delta| Scenario {
            name,
            subscribers: big,
            topics,
            topics_per_subscriber: each,
            rate: Some(rate),
            seconds,
            idle: false,
            window: WINDOW,
            opts: Opts {
                label,
                deflate,
                delta,
                quote: true,
                ..Opts::default()
            },
        };
        plan.push((Kind::Tickwire, sc("plain", false, false)));
        plan.push((Kind::Tickwire, sc("deflate", true, false)));
        plan.push((Kind::Tickwire, sc("delta", false, true)));
        plan.push((Kind::Tickwire, sc("delta+deflate", true, true)));
        plan.push((Kind::Node, sc("plain", false, false)));
        plan.push((Kind::Node, sc("deflate", true, false)));
    }
    plan
}

/// Issue 16, one table of feature costs: the spread scenario at a fixed 200,000 deliveries/s
/// with the quote (quick: 2,000 subscribers, 10 updates per topic per second; full: 10,000 and 2
/// per second), once per feature, each beside plain from the same run. `max_rate` is set to half
/// the topics' update rate, so it has something to merge. The set-up columns give the handshake
/// cost per connection (TLS, JWT).
fn feature_plan(quick: bool) -> Vec<(Kind, Scenario)> {
    let (big, seconds) = if quick { (2_000, 3) } else { (10_000, 10) };
    let rate = 2_000_000 / big as u64;
    let per_topic = rate as f64 / 100.0;
    let sc = |label, opts: Opts| Scenario {
        name: "F",
        subscribers: big,
        topics: 100,
        topics_per_subscriber: 10,
        rate: Some(rate),
        seconds,
        idle: false,
        window: WINDOW,
        opts: Opts {
            label,
            quote: true,
            ..opts
        },
    };
    let d = Opts::default();
    vec![
        (Kind::Tickwire, sc("plain", d)),
        (Kind::TickwireTls, sc("tls", d)),
        (Kind::Tickwire, sc("deflate", Opts { deflate: true, ..d })),
        (Kind::Tickwire, sc("delta", Opts { delta: true, ..d })),
        (
            Kind::Tickwire,
            sc(
                "delta+deflate",
                Opts {
                    delta: true,
                    deflate: true,
                    ..d
                },
            ),
        ),
        (
            Kind::Tickwire,
            sc(
                "max_rate",
                Opts {
                    max_rate: Some(per_topic / 2.0),
                    ..d
                },
            ),
        ),
        (Kind::Tickwire, sc("jwt", Opts { jwt: true, ..d })),
    ]
}

/// The broadcast (S2) at growing subscriber counts, for the plot: at max rate (throughput), and
/// at a fixed 100,000 deliveries per second (latency: each publication is one burst to all).
fn sweep(quick: bool) -> Vec<Scenario> {
    let counts: &[usize] = if quick {
        &[250, 1_000, 4_000]
    } else {
        &[250, 500, 1_000, 2_000, 5_000, 10_000]
    };
    let mut list = Vec::new();
    for &subscribers in counts {
        for (name, rate) in [
            ("sweep-max", None),
            ("sweep-100k", Some((100_000 / subscribers) as u64)),
        ] {
            list.push(Scenario {
                name,
                subscribers,
                topics: 1,
                topics_per_subscriber: 1,
                rate,
                seconds: if quick { 2 } else { 5 },
                idle: false,
                window: WINDOW,
                opts: Opts::default(),
            });
        }
    }
    list
}

// ---------------------------------------------------------------------------------------------
// Servers under test

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Tickwire,
    /// tokio-tungstenite on a current-thread runtime: what a Rust user would write.
    Tokio,
    /// Node.js with the `ws` package.
    Node,
    /// uWebSockets.js (native addon on Node), `app.publish` per publication.
    Uws,
    /// The same, publishing from `setImmediate` instead of inside the publisher's data handler.
    UwsDefer,
    /// The same with each `app.publish` inside the publisher's `ws.cork()` (only with `--servers`).
    UwsCork,
    Ceiling,
    /// Two tickwire nodes sharing one feed through redis-server (`--redis`).
    Cluster,
    /// tickwire with TLS on the public listener, subscribers over wss:// (`--tls`).
    TickwireTls,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Tickwire => "tickwire",
            Kind::Tokio => "tokio",
            Kind::Node => "node",
            Kind::Uws => "uws",
            Kind::UwsDefer => "uws-defer",
            Kind::UwsCork => "uws-cork",
            Kind::Ceiling => "ceiling",
            Kind::Cluster => "tw-redis",
            Kind::TickwireTls => "tickwire-tls",
        }
    }

    /// Whether it speaks WebSocket (all but the ceiling).
    fn websocket(self) -> bool {
        self != Kind::Ceiling
    }
}

/// How the run places processes on cores.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Cores {
    /// Server on core 0, generator on core 1.
    Pinned,
    /// Both unpinned; tickwire runs two workers.
    Both,
}

struct Server {
    kind: Kind,
    /// Its processes: one, or for `Kind::Cluster` redis-server and two tickwire nodes.
    children: Vec<Child>,
    /// Where subscribers connect (spread evenly), and where the publisher connects.
    subscribe_addrs: Vec<SocketAddr>,
    publish_addr: SocketAddr,
    /// The client side of TLS, when subscribers speak wss://.
    tls: Option<Arc<ClientConfig>>,
    /// The token subscribers present on the upgrade, when the server checks them (`Opts::jwt`).
    token: Option<String>,
}

impl Server {
    fn start(kind: Kind, cores: Cores, opts: Opts) -> Server {
        let own = || Command::new(std::env::current_exe().expect("own path"));
        let cmd = match kind {
            Kind::Tickwire if opts.jwt => {
                let mut c = tickwire_cmd(cores);
                c.args(["--jwt-key", &bench_jwt().key]);
                c
            }
            Kind::Tickwire => tickwire_cmd(cores),
            Kind::TickwireTls => {
                let mut c = tickwire_cmd(cores);
                let pki = bench_tls();
                c.args(["--tls-cert", &pki.cert, "--tls-key", &pki.key]);
                c
            }
            Kind::Cluster => return start_cluster(cores),
            Kind::Ceiling => {
                let mut c = own();
                c.arg("--ceiling-server");
                c
            }
            Kind::Tokio => {
                let mut c = own();
                c.arg("--tokio-server");
                c
            }
            Kind::Node => {
                let mut c = Command::new("node");
                c.arg(node_peer_dir().join("server.js"));
                if opts.deflate {
                    c.arg("--deflate");
                }
                c
            }
            Kind::Uws | Kind::UwsDefer | Kind::UwsCork => {
                let mut c = Command::new("node");
                c.arg(peer_dir("uws").join("server.js"));
                match kind {
                    Kind::UwsDefer => c.arg("--defer"),
                    Kind::UwsCork => c.arg("--cork"),
                    _ => &mut c,
                };
                c
            }
        };
        let (child, sub, publish_addr) = spawn_server(cmd, kind, cores);
        Server {
            kind,
            children: vec![child],
            subscribe_addrs: vec![sub],
            publish_addr,
            tls: (kind == Kind::TickwireTls).then(|| bench_tls().client.clone()),
            token: opts.jwt.then(|| bench_jwt().token.clone()),
        }
    }

    /// (user + system CPU seconds, RSS KiB) of the server's processes, summed.
    fn usage(&self) -> (f64, u64) {
        self.children
            .iter()
            .map(|c| proc_usage(c.id()))
            .fold((0.0, 0), |(c, r), (c1, r1)| (c + c1, r + r1))
    }
}

fn tickwire_cmd(cores: Cores) -> Command {
    let bin = std::env::var_os("TICKWIRE_BIN");
    let mut c = Command::new(
        bin.as_deref()
            .unwrap_or(env!("CARGO_BIN_EXE_tickwire").as_ref()),
    );
    let workers = if cores == Cores::Both { "2" } else { "1" };
    c.args(["--listen", "127.0.0.1:0", "--local-listen", "127.0.0.1:0"]);
    c.args(["--workers", workers, "--log-level", "error"]);
    c.args(["--publish-queue", "65536"]);
    c
}

/// Starts one server process and reads where it listens from its banner.
fn spawn_server(mut cmd: Command, kind: Kind, cores: Cores) -> (Child, SocketAddr, SocketAddr) {
    if cores == Cores::Pinned {
        pin(&mut cmd, 0);
    }
    let mut child = cmd.stdout(Stdio::piped()).spawn().expect("server starts");
    let mut out = child.stdout.take().expect("stdout");
    // tickwire's banner says "subscribe:    ws://..."; the peers print "subscribe ADDR".
    let keys = match kind {
        Kind::Tickwire | Kind::TickwireTls | Kind::Cluster => ("subscribe:", "publish:"),
        _ => ("subscribe", "publish"),
    };
    match read_banner(&mut out, keys) {
        Ok((sub, publ)) => (child, sub, publ),
        Err(text) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{} exited before saying where it listens: {text}",
                kind.name()
            );
        }
    }
}

/// The two addresses after `keys` in what the server prints, or what it printed before it
/// stopped.
fn read_banner(
    out: &mut impl Read,
    keys: (&str, &str),
) -> Result<(SocketAddr, SocketAddr), String> {
    let find = |text: &str, key: &str| -> Option<SocketAddr> {
        let rest = &text[text.find(key)? + key.len()..];
        let rest = rest
            .trim_start()
            .trim_start_matches("wss://")
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
        if let (Some(s), Some(p)) = (find(&text, keys.0), find(&text, keys.1)) {
            return Ok((s, p));
        }
    }
}

/// redis-server on a free loopback port and two tickwire nodes sharing their feed through it;
/// subscribers are spread over both nodes, the publisher talks to the first.
fn start_cluster(cores: Cores) -> Server {
    let port = StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut redis = Command::new("redis-server");
    redis.args(["--port", &port.to_string(), "--bind", "127.0.0.1"]);
    redis.args(["--save", "", "--appendonly", "no"]);
    if cores == Cores::Pinned {
        pin(&mut redis, 0);
    }
    let redis = redis
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server starts");
    let deadline = Instant::now() + Duration::from_secs(10);
    while StdStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not listen");
        thread::sleep(Duration::from_millis(20));
    }
    let url = format!("redis://127.0.0.1:{port}");
    let mut children = vec![redis];
    let mut subscribe_addrs = Vec::new();
    let mut publish_addr = None;
    for _ in 0..2 {
        let mut cmd = tickwire_cmd(cores);
        cmd.args(["--redis", &url, "--redis-prefix", "bench"]);
        let (child, sub, publ) = spawn_server(cmd, Kind::Cluster, cores);
        children.push(child);
        subscribe_addrs.push(sub);
        publish_addr.get_or_insert(publ);
    }
    // Let both nodes finish their Redis subscription before anything is published.
    thread::sleep(Duration::from_millis(500));
    Server {
        kind: Kind::Cluster,
        children,
        subscribe_addrs,
        publish_addr: publish_addr.expect("two nodes"),
        tls: None,
        token: None,
    }
}

/// The run's TLS material: a CA, a P-256 certificate for `localhost` signed by it (files for the
/// server), and a rustls client configuration trusting the CA (for the generator).
struct BenchTls {
    cert: String,
    key: String,
    client: Arc<ClientConfig>,
}

fn bench_tls() -> &'static BenchTls {
    static TLS: std::sync::OnceLock<BenchTls> = std::sync::OnceLock::new();
    TLS.get_or_init(|| {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
        let dir = std::env::temp_dir().join(format!("tickwire-bench-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().expect("key")).expect("CA");
        let key = KeyPair::generate().expect("key");
        let leaf = CertificateParams::new(vec!["localhost".to_owned()])
            .expect("params")
            .signed_by(&key, &ca)
            .expect("certificate");
        let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert_path, leaf.pem()).expect("write cert");
        std::fs::write(&key_path, key.serialize_pem()).expect("write key");
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.der().clone()).expect("root");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        BenchTls {
            cert: cert_path.to_string_lossy().into_owned(),
            key: key_path.to_string_lossy().into_owned(),
            client: Arc::new(client),
        }
    })
}

/// The run's entitlements: an HS256 secret file for `--jwt-key` and one token granting `b/#`
/// for an hour, minted here with jsonwebtoken (as `examples/mint_token.rs` does). Every
/// subscriber presents the same token; the server verifies each upgrade's token anew (it keeps
/// no cache), so one token costs what distinct ones would.
struct BenchJwt {
    key: String,
    token: String,
}

fn bench_jwt() -> &'static BenchJwt {
    static JWT: std::sync::OnceLock<BenchJwt> = std::sync::OnceLock::new();
    JWT.get_or_init(|| {
        use jsonwebtoken::{encode, EncodingKey, Header};
        let dir = std::env::temp_dir().join(format!("tickwire-bench-jwt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let secret = b"tickwire-bench-secret-0123456789-abcdefghijklmnop";
        let path = dir.join("jwt.secret");
        std::fs::write(&path, secret).expect("write secret");
        let exp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs()
            + 3600;
        let claims = serde_json::json!({"sub": "bench", "exp": exp, "topics": ["b/#"]});
        let token = encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(secret),
        )
        .expect("token");
        BenchJwt {
            key: path.to_string_lossy().into_owned(),
            token,
        }
    })
}

/// CPU time of every thread of process `pid`, in nanoseconds, from
/// `/proc/PID/task/*/schedstat` (the scheduler's own count, so short phases such as a round of
/// handshakes are not rounded to the 10 ms ticks of `/proc/PID/stat`).
fn proc_cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

impl Drop for Server {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// This process's limit on open files (after `main` raised it as far as allowed).
fn fd_limit() -> usize {
    rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft as usize)
}

fn node_peer_dir() -> std::path::PathBuf {
    peer_dir("node")
}

fn peer_dir(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("benches/peers")
        .join(name)
}

/// Installs the uWebSockets.js peer's package (pinned in package-lock.json) on first use and
/// checks that its native addon loads (the package would otherwise fall back to an emulation on
/// top of `ws`, which is not what this row claims to measure). `Err` says why it cannot run.
fn prepare_uws_peer() -> Result<(), String> {
    let dir = peer_dir("uws");
    if Command::new("node").arg("--version").output().is_err() {
        return Err("node is not installed".into());
    }
    if !dir
        .join("node_modules/@trufflesuite/uws-js-unofficial")
        .is_dir()
    {
        // The native addon ships inside the package: no install scripts, and the optional
        // dependencies only serve the `ws` fallback this peer refuses to use.
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--silent"])
            .args(["--omit=optional", "--ignore-scripts"])
            .current_dir(&dir)
            .status()
            .map_err(|e| format!("npm could not run: {e}"))?;
        if !status.success() {
            return Err(format!("npm ci failed in {}: {status}", dir.display()));
        }
    }
    let out = Command::new("node")
        .arg(dir.join("server.js"))
        .arg("--check")
        .output()
        .map_err(|e| format!("node could not run: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// Installs the Node peer's `ws` package (pinned in package-lock.json) on first use. `Err`
/// says why the Node peer cannot run here.
fn prepare_node_peer() -> Result<(), String> {
    let dir = node_peer_dir();
    if Command::new("node").arg("--version").output().is_err() {
        return Err("node is not installed".into());
    }
    if dir.join("node_modules/ws").is_dir() {
        return Ok(());
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--silent"])
        .current_dir(&dir)
        .status()
        .map_err(|e| format!("npm could not run: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("npm ci failed in {}: {status}", dir.display()))
    }
}

// ---------------------------------------------------------------------------------------------
// The ceiling: plain TCP, the same bytes, no WebSocket

/// Subscribers send `SUB t1,t2\n` (answered `OK\r\n\r\n`); the publisher sends lines `topic payload\n` (after `PUB\n`).
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
                    // The generator waits for this as it waits for a WebSocket 101.
                    if let Some(c) = conns.get_mut(id) {
                        c.out.extend_from_slice(b"OK\r\n\r\n");
                        if !c.queued {
                            c.queued = true;
                            touched.push(id);
                        }
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
    /// The TLS session over `s`, for wss://.
    tls: Option<Box<ClientConnection>>,
    /// Handshake done (101 read).
    ready: bool,
    /// The server closed it (before the handshake: refused at its connection limit).
    closed: bool,
    inbuf: Vec<u8>,
    /// What the frames are checked against.
    rx: Rx,
    /// Bytes read from the socket (TLS records included): the wire bytes.
    wire: u64,
    /// A subscribe request (a masked frame) to send once the upgrade is answered.
    subscribe: Option<Vec<u8>>,
}

/// A subscriber's receiving state: the last seq per topic index and how its frames are inflated.
struct Rx {
    last: Vec<u64>,
    inflate: Inflate,
}

/// permessage-deflate on one connection, as the server's 101 agreed it.
enum Inflate {
    /// Not negotiated: every frame is plain.
    Off,
    /// `server_no_context_takeover` (tickwire): every message stands alone, so one inflater,
    /// reset before each message, serves every connection.
    Reset,
    /// Context takeover (Node `ws` by default): each message continues the connection's own
    /// stream, so the connection keeps its inflater (and its 32 KiB window).
    Own(Box<flate2::Decompress>),
}

/// What arrived on `sub`, as plaintext: TLS records are decrypted here, and whatever the session
/// wants to send (its handshake, the upgrade request it held until then) is sent.
fn read_plain(sub: &mut Sub, buf: &mut [u8]) -> io::Result<usize> {
    let Some(tls) = sub.tls.as_mut() else {
        let n = sub.s.read(buf)?;
        sub.wire += n as u64;
        return Ok(n);
    };
    loop {
        match tls.reader().read(buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            other => return other,
        }
        let n = tls.read_tls(&mut sub.s)?;
        sub.wire += n as u64;
        if n == 0 {
            return Ok(0);
        }
        tls.process_new_packets()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        while tls.wants_write() && tls.write_tls(&mut sub.s).is_ok() {}
    }
}

/// Sends `bytes` to the server on `sub` (through its TLS session for wss://).
fn send_on(sub: &mut Sub, bytes: &[u8]) -> io::Result<()> {
    match sub.tls.as_mut() {
        Some(tls) => {
            tls.writer().write_all(bytes)?;
            while tls.wants_write() {
                tls.write_tls(&mut sub.s)?;
            }
            Ok(())
        }
        None => sub.s.write_all(bytes),
    }
}

#[derive(Default)]
struct Tally {
    deliveries: u64,
    /// Seq gaps: losses, or with `max_rate` the updates the server merged.
    losses: u64,
    order_violations: u64,
    latencies_us: Vec<u32>,
    /// Deliveries that came as a merge patch (`delta`), and those of them whose seq did not
    /// follow the last one received on the topic (a patch the client could not apply).
    deltas: u64,
    bad_deltas: u64,
    /// Frames that came compressed, and those that did not inflate.
    compressed: u64,
    inflate_errors: u64,
    /// `subscribed` acks that listed recovered topics.
    recovered: u64,
    /// The inflater shared by `Inflate::Reset` connections, and the inflated text.
    inflater: Option<Box<flate2::Decompress>>,
    scratch: Vec<u8>,
}

/// What the generator has seen, for the publisher's window at max rate: deliveries plus
/// detected gaps, so a gap never stalls the publisher.
type Accounted = Arc<AtomicU64>;

fn topic_name(i: usize) -> String {
    format!("b/{i}")
}

/// At most this many handshakes under way at once while connecting, so the set-up rate measures
/// the server's handshakes rather than its listen backlog overflowing (SYN retries take 1 s).
const CONNECTING: usize = 128;

/// Opens every subscriber and waits until each handshake is answered (or the connection is
/// closed first: refused at the server's connection limit). Returns the subscribers, how many
/// subscribe to each topic, the set-up time, and how many were refused.
fn connect_all(
    server: &Server,
    sc: &Scenario,
    poll: &mut Poll,
    epoch: Instant,
) -> (slab::Slab<Sub>, Vec<u64>, Duration, usize) {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(120);
    let mut subs = slab::Slab::with_capacity(sc.subscribers);
    let mut per_topic = vec![0u64; sc.topics];
    let mut events = Events::with_capacity(4096);
    let mut buf = vec![0u8; 64 * 1024];
    let mut ignored = Tally::default();
    let mut waiting = 0;
    let mut opened = 0;
    let mut refused = 0;
    while opened < sc.subscribers || waiting > 0 {
        assert!(
            Instant::now() < deadline,
            "{} of {} connected after 120 s",
            opened - waiting,
            sc.subscribers
        );
        while opened < sc.subscribers && waiting < CONNECTING {
            let topics: Vec<usize> = (0..sc.topics_per_subscriber)
                .map(|k| (opened + k * 7) % sc.topics)
                .collect();
            for &t in &topics {
                per_topic[t] += 1;
            }
            let names: Vec<String> = topics.iter().map(|&t| topic_name(t)).collect();
            let op = sc.opts.subscribe_op() || sc.opts.defer_subscribe;
            let mut std =
                StdStream::connect(server.subscribe_addrs[opened % server.subscribe_addrs.len()])
                    .expect("connect");
            std.set_nodelay(true).ok();
            waiting += 1;
            let hello = if server.kind.websocket() {
                let mut query = Vec::new();
                if let Some(token) = &server.token {
                    query.push(format!("token={token}"));
                }
                if !op {
                    query.push(format!("subscribe={}", names.join(",")));
                }
                let extensions = if sc.opts.deflate {
                    // What browsers offer.
                    "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
                } else {
                    ""
                };
                format!(
                    "GET /ws{}{} HTTP/1.1\r\nHost: b\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                     Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extensions}\r\n",
                    if query.is_empty() { "" } else { "?" },
                    query.join("&")
                )
            } else {
                format!("SUB {}\n", names.join(","))
            };
            let tls = server.tls.as_ref().map(|config| {
                let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
                let mut tls = ClientConnection::new(config.clone(), name).expect("TLS session");
                // Held by rustls until the handshake is done, then sent.
                tls.writer().write_all(hello.as_bytes()).expect("hello");
                while tls.wants_write() {
                    tls.write_tls(&mut std).expect("ClientHello");
                }
                Box::new(tls)
            });
            if tls.is_none() {
                std.write_all(hello.as_bytes()).expect("hello");
            }
            std.set_nonblocking(true).expect("nonblocking");
            let mut s = TcpStream::from_std(std);
            let e = subs.vacant_entry();
            poll.registry()
                .register(&mut s, Token(e.key()), Interest::READABLE)
                .expect("register");
            let subscribe = (sc.opts.subscribe_op() && !sc.opts.defer_subscribe)
                .then(|| subscribe_frame(&names, &sc.opts, None));
            e.insert(Sub {
                s,
                tls,
                ready: false,
                closed: false,
                inbuf: Vec::new(),
                rx: Rx {
                    last: vec![0; sc.topics],
                    inflate: Inflate::Off,
                },
                wire: 0,
                subscribe,
            });
            opened += 1;
        }
        poll.poll(&mut events, Some(Duration::from_millis(50)))
            .expect("poll");
        for ev in events.iter() {
            if let Some(s) = subs.get_mut(ev.token().0) {
                let (was, was_closed) = (s.ready, s.closed);
                drain(s, &mut buf, &mut ignored, epoch);
                if s.ready && !was {
                    waiting -= 1;
                } else if s.closed && !was_closed && !s.ready {
                    waiting -= 1;
                    refused += 1;
                }
            }
        }
    }
    (subs, per_topic, started.elapsed(), refused)
}

/// Reads and checks everything that arrived on `sub`. Frames are parsed straight from the read
/// buffer; only a trailing partial frame is copied into the connection's own buffer.
fn drain(sub: &mut Sub, buf: &mut [u8], tally: &mut Tally, epoch: Instant) {
    let now_us = epoch.elapsed().as_micros() as u64;
    loop {
        let n = match read_plain(sub, buf) {
            Ok(0) => {
                sub.closed = true;
                return;
            }
            Ok(n) => n,
            Err(e) => {
                sub.closed |= e.kind() != io::ErrorKind::WouldBlock;
                return;
            }
        };
        if sub.ready && sub.inbuf.is_empty() {
            let used = check_frames(&buf[..n], &mut sub.rx, tally, now_us);
            sub.inbuf.extend_from_slice(&buf[used..n]);
            continue;
        }
        sub.inbuf.extend_from_slice(&buf[..n]);
        if !sub.ready {
            let Some(end) = sub.inbuf.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            let head = String::from_utf8_lossy(&sub.inbuf[..end]).to_ascii_lowercase();
            sub.rx.inflate = inflate_agreed(&head);
            sub.inbuf.drain(..end + 4);
            sub.ready = true;
            if let Some(op) = sub.subscribe.take() {
                if send_on(sub, &op).is_err() {
                    sub.closed = true;
                    return;
                }
            }
        }
        let used = check_frames(&sub.inbuf, &mut sub.rx, tally, now_us);
        sub.inbuf.drain(..used);
    }
}

/// How the server's 101 (`head`, lower case) says its frames are compressed.
fn inflate_agreed(head: &str) -> Inflate {
    let Some(ext) = head
        .lines()
        .find_map(|l| l.strip_prefix("sec-websocket-extensions:"))
    else {
        return Inflate::Off;
    };
    if !ext.contains("permessage-deflate") {
        Inflate::Off
    } else if ext.contains("server_no_context_takeover") {
        Inflate::Reset
    } else {
        Inflate::Own(Box::new(flate2::Decompress::new(false)))
    }
}

/// The masked text frame of `{"op":"subscribe","topics":[..]}` with the options of `opts`, and
/// with `since` (each topic's last seq, with the feed's epoch) for a recovery.
fn subscribe_frame(topics: &[String], opts: &Opts, since: Option<(u64, &str)>) -> Vec<u8> {
    let mut req = serde_json::json!({"op": "subscribe", "topics": topics});
    if opts.delta {
        req["delta"] = true.into();
    }
    if let Some(rate) = opts.max_rate {
        req["max_rate"] = rate.into();
    }
    if let Some((seq, epoch)) = since {
        let since: serde_json::Map<String, serde_json::Value> =
            topics.iter().map(|t| (t.clone(), seq.into())).collect();
        req["since"] = since.into();
        req["epoch"] = epoch.into();
    }
    encode_client_frame(true, OpCode::Text, req.to_string().as_bytes(), [1, 2, 3, 4])
}

/// The permessage-deflate tail a sender removes and the receiver puts back (RFC 7692 7.2.2).
const DEFLATE_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Inflates one message's `data` into `out`; false if it is not valid deflate data.
fn inflate_message(d: &mut flate2::Decompress, data: &[u8], out: &mut Vec<u8>) -> bool {
    out.clear();
    for part in [data, &DEFLATE_TAIL[..]] {
        let mut used = 0;
        loop {
            if out.capacity() - out.len() < 1024 {
                out.reserve(16 * 1024);
            }
            let before = d.total_in();
            if d.decompress_vec(&part[used..], out, flate2::FlushDecompress::Sync)
                .is_err()
            {
                return false;
            }
            used += (d.total_in() - before) as usize;
            // All input taken and room left over: everything it gives is out.
            if used >= part.len() && out.len() < out.capacity() {
                break;
            }
        }
    }
    true
}

/// Checks the whole frames at the start of `bytes` (order, gaps, latency; compressed frames
/// are inflated first, merge patches parsed); returns the bytes they take.
fn check_frames(bytes: &[u8], rx: &mut Rx, tally: &mut Tally, now_us: u64) -> usize {
    let mut pos = 0;
    while bytes.len() - pos >= 2 {
        let b = &bytes[pos..];
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
            let payload = &b[head..head + len];
            // RSV1: a compressed message.
            let mut text = std::mem::take(&mut tally.scratch);
            let msg = if b[0] & 0x40 != 0 {
                tally.compressed += 1;
                let ok = match &mut rx.inflate {
                    Inflate::Own(d) => inflate_message(d, payload, &mut text),
                    _ => {
                        let d = tally
                            .inflater
                            .get_or_insert_with(|| Box::new(flate2::Decompress::new(false)));
                        d.reset(false);
                        inflate_message(d, payload, &mut text)
                    }
                };
                tally.inflate_errors += u64::from(!ok);
                if ok {
                    &text[..]
                } else {
                    &[][..]
                }
            } else {
                payload
            };
            if let Some((topic, seq, t, delta)) = parse_msg(msg) {
                let prev = rx.last[topic];
                if prev != 0 && seq <= prev {
                    tally.order_violations += 1;
                } else if prev != 0 && seq > prev + 1 {
                    tally.losses += seq - prev - 1;
                }
                if delta {
                    // A patch applies only to the seq right before it.
                    tally.deltas += 1;
                    tally.bad_deltas += u64::from(prev == 0 || seq != prev + 1);
                }
                rx.last[topic] = seq;
                tally.deliveries += 1;
                tally
                    .latencies_us
                    .push(now_us.saturating_sub(t).min(u32::MAX as u64) as u32);
            } else if msg.starts_with(b"{\"type\":\"subscribed\"") {
                tally.recovered += u64::from(msg.windows(14).any(|w| w == b"\"recovered\":[\""));
            }
            tally.scratch = text;
        }
        pos += head + len;
    }
    pos
}

/// (topic index, seq, publish time, whether a merge patch) of
/// `{"type":"msg","topic":"b/N","seq":S,"data":{"t":T,..}}` or of tickwire's
/// `{"type":"msg","topic":"b/N","seq":S,"delta":{"t":T,..}}` (`t` changes with every update, so
/// every patch has it): every server here writes the fields in this order, so each search starts
/// where the last one ended.
fn parse_msg(text: &[u8]) -> Option<(usize, u64, u64, bool)> {
    let (topic, at) = number_after(text, 0, b"\"topic\":\"b/")?;
    let (seq, at) = number_after(text, at, b"\"seq\":")?;
    let delta = text.get(at..)?.starts_with(b",\"delta\":");
    let (t, _) = number_after(text, at, b"\"t\":")?;
    Some((topic as usize, seq, t, delta))
}

/// A quote of 20 fields (~330 bytes) of which two change with each update: `t` (the publish
/// time, which the generator reads back for latency) and `last`, which walks with `n`.
fn quote_payload(t: u128, n: u64, topic: usize) -> String {
    let last = 187.0 + (n % 97) as f64 / 100.0;
    format!(
        "{{\"t\":{t},\"sym\":\"B{topic:04}\",\"exch\":\"XNAS\",\"cur\":\"USD\",\"status\":\"open\",\
         \"bid\":186.95,\"ask\":187.05,\"bid_size\":300,\"ask_size\":500,\"last\":{last:.2},\
         \"last_size\":100,\"open\":185.20,\"high\":188.10,\"low\":184.90,\"prev_close\":185.00,\
         \"vwap\":186.71,\"volume\":18236411,\"trades\":104233,\"halted\":false,\"venue_time\":\"14:32:07.118\"}}"
    )
}

/// The decimal number right after the first `key` at or after `from`, and where it ends.
fn number_after(text: &[u8], from: usize, key: &[u8]) -> Option<(u64, usize)> {
    let mut at = from
        + text
            .get(from..)?
            .windows(key.len())
            .position(|w| w == key)?
        + key.len();
    let mut n = 0u64;
    while let Some(d) = text.get(at).filter(|d| d.is_ascii_digit()) {
        n = n * 10 + u64::from(d - b'0');
        at += 1;
    }
    Some((n, at))
}

/// The publisher: connects to the server's publish endpoint and sends `{"t":..,"pad":..}`
/// quotes round-robin over the topics, at the scenario's rate, or at max rate with at most
/// `WINDOW` publications not yet accounted for by the generator.
struct Feed {
    kind: Kind,
    addr: SocketAddr,
    sc: Scenario,
    /// Subscribers per topic: the deliveries each publication owes.
    per_topic: Vec<u64>,
    epoch: Instant,
    stop: Arc<AtomicBool>,
    accounted: Accounted,
}

impl Feed {
    /// Runs until `stop`; returns how many publications it sent.
    fn run(self) -> u64 {
        let mut s = StdStream::connect(self.addr).expect("publisher connects");
        s.set_nodelay(true).ok();
        if self.kind.websocket() {
            s.write_all(b"GET /publish HTTP/1.1\r\nHost: b\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
                .expect("upgrade");
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                s.read_exact(&mut byte).expect("101");
                head.push(byte[0]);
            }
        } else {
            s.write_all(b"PUB\n").expect("pub");
        }
        // Drain whatever the server sends back (errors) so it never blocks on us.
        let mut reader = s.try_clone().expect("clone");
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while matches!(reader.read(&mut buf), Ok(n) if n > 0) {}
        });
        let sc = self.sc;
        let window: u64 = sc.window * self.per_topic.iter().sum::<u64>() / sc.topics.max(1) as u64;
        let pad = "x".repeat(60); // about 120 bytes of payload with the rest
        let mut n: u64 = 0;
        let mut owed: u64 = 0;
        let start = Instant::now();
        let mut batch = Vec::with_capacity(64 * 1024);
        while !self.stop.load(Ordering::Relaxed) {
            let burst = match sc.rate {
                Some(rate) => {
                    let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
                    if due <= n {
                        thread::sleep(Duration::from_micros(200));
                        continue;
                    }
                    due - n
                }
                None => {
                    if owed.saturating_sub(self.accounted.load(Ordering::Relaxed)) > window {
                        thread::sleep(Duration::from_micros(50));
                        continue;
                    }
                    16
                }
            };
            batch.clear();
            for _ in 0..burst {
                let topic_index = (n as usize) % sc.topics;
                owed += self.per_topic[topic_index];
                let topic = topic_name(topic_index);
                let t = self.epoch.elapsed().as_micros();
                let payload = if sc.opts.quote {
                    quote_payload(t, n / sc.topics as u64, topic_index)
                } else {
                    format!("{{\"t\":{t},\"pad\":\"{pad}\"}}")
                };
                if self.kind.websocket() {
                    let msg = format!("{{\"topic\":\"{topic}\",\"data\":{payload}}}");
                    batch.extend(encode_client_frame(
                        true,
                        OpCode::Text,
                        msg.as_bytes(),
                        [1, 2, 3, 4],
                    ));
                } else {
                    batch.extend(format!("{topic} {payload}\n").as_bytes());
                }
                n += 1;
            }
            if s.write_all(&batch).is_err() {
                break;
            }
        }
        n
    }
}

struct Row {
    scenario: &'static str,
    server: Kind,
    subscribers: usize,
    rate: Option<u64>,
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
    /// With `--syscalls`: the server's write, writev, sendto and sendmsg calls over the publishing
    /// window, per delivery.
    writes_per_delivery: Option<f64>,
    /// Connections the server closed before their handshake (its connection limit).
    refused: usize,
    /// The feature row's name (`Opts::label`), empty for the ordinary rows.
    variant: &'static str,
    /// Server CPU per connection set up (handshake and subscribe), from schedstat, in µs.
    setup_cpu_us: f64,
    /// Bytes the generator read from its subscribers' sockets over the window (TLS records
    /// included), per second and per delivery.
    wire_bytes_per_sec: f64,
    bytes_per_delivery: f64,
    /// Deliveries counted over the window.
    delivered: u64,
    /// Deliveries that came as merge patches, patches not following the previous seq, frames
    /// that came compressed, frames that did not inflate.
    deltas: u64,
    bad_deltas: u64,
    compressed: u64,
    inflate_errors: u64,
}

/// The system calls that put bytes on a socket (every server here uses one of them).
const WRITE_CALLS: [&str; 4] = ["write", "writev", "sendto", "sendmsg"];

/// `perf stat` counting the write system calls of `pids` until it is stopped with SIGINT.
fn start_syscall_count(pids: &[u32]) -> Option<Child> {
    let events: Vec<String> = WRITE_CALLS
        .iter()
        .map(|c| format!("syscalls:sys_enter_{c}"))
        .collect();
    let pids: Vec<String> = pids.iter().map(|p| p.to_string()).collect();
    let child = Command::new("perf")
        .args([
            "stat",
            "-x",
            ",",
            "-e",
            &events.join(","),
            "-p",
            &pids.join(","),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    // Let it attach before the window starts.
    thread::sleep(Duration::from_millis(300));
    Some(child)
}

/// Stops the `perf stat` started above and adds up what it counted (None if it could not).
fn stop_syscall_count(mut child: Child) -> Option<u64> {
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let mut text = String::new();
    child.stderr.take()?.read_to_string(&mut text).ok()?;
    let _ = child.wait();
    let mut total = 0;
    let mut seen = 0;
    for line in text.lines() {
        let fields: Vec<&str> = line.split(',').collect();
        if fields.len() > 2 && fields[2].starts_with("syscalls:sys_enter_") {
            total += fields[0].parse::<u64>().ok()?;
            seen += 1;
        }
    }
    (seen == WRITE_CALLS.len()).then_some(total)
}

/// Server CPU of all the server's processes, in nanoseconds (schedstat).
fn server_cpu_ns(server: &Server) -> u64 {
    server.children.iter().map(|c| proc_cpu_ns(c.id())).sum()
}

fn run(kind: Kind, sc: Scenario, cores: Cores, syscalls: bool) -> Row {
    let server = Server::start(kind, cores, sc.opts);
    let mut poll = Poll::new().expect("poll");
    thread::sleep(Duration::from_millis(200));
    let (rss_before, epoch) = (server.usage().1, Instant::now());
    let setup_cpu0 = server_cpu_ns(&server);
    let (mut subs, per_topic, setup, refused) = connect_all(&server, &sc, &mut poll, epoch);
    // The subscribe requests sent after the upgrade (options) are served in the next moments.
    if sc.opts.subscribe_op() {
        thread::sleep(Duration::from_millis(300));
    }
    let setup_cpu_us = (server_cpu_ns(&server) - setup_cpu0) as f64
        / 1e3
        / (sc.subscribers - refused).max(1) as f64;
    let setup_per_sec = sc.subscribers as f64 / setup.as_secs_f64();
    thread::sleep(Duration::from_millis(300));
    let rss_after = server.usage().1;
    let mut row = Row {
        scenario: sc.name,
        server: kind,
        subscribers: sc.subscribers,
        rate: sc.rate,
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
        rss_per_conn: (rss_after.saturating_sub(rss_before) as f64 * 1024.0)
            / (sc.subscribers - refused).max(1) as f64,
        refused,
        writes_per_delivery: None,
        variant: sc.opts.label,
        delivered: 0,
        setup_cpu_us,
        wire_bytes_per_sec: 0.0,
        bytes_per_delivery: 0.0,
        deltas: 0,
        bad_deltas: 0,
        compressed: 0,
        inflate_errors: 0,
    };
    if sc.idle {
        return row;
    }
    // Attached before anything is published, so it counts every write of the window.
    let counter = if syscalls {
        let pids: Vec<u32> = server.children.iter().map(|c| c.id()).collect();
        let counter = start_syscall_count(&pids);
        if counter.is_none() {
            println!("  --syscalls: perf could not start; no write counts");
        }
        counter
    } else {
        None
    };
    let mut tally = Tally::default();
    let stop = Arc::new(AtomicBool::new(false));
    let accounted = Accounted::default();
    let feeder = {
        let feed = Feed {
            kind,
            addr: server.publish_addr,
            sc,
            per_topic,
            epoch,
            stop: stop.clone(),
            accounted: accounted.clone(),
        };
        thread::spawn(move || feed.run())
    };
    let mut events = Events::with_capacity(4096);
    let mut buf = vec![0u8; 256 * 1024];
    let (cpu0, _) = server.usage();
    let (gen0, _) = proc_usage(std::process::id());
    let wire0: u64 = subs.iter().map(|(_, s)| s.wire).sum();
    let window = Instant::now();
    while window.elapsed() < Duration::from_secs(sc.seconds) {
        poll.poll(&mut events, Some(Duration::from_millis(20)))
            .expect("poll");
        for ev in events.iter() {
            if let Some(s) = subs.get_mut(ev.token().0) {
                drain(s, &mut buf, &mut tally, epoch);
            }
        }
        accounted.store(tally.deliveries + tally.losses, Ordering::Relaxed);
    }
    let wall = window.elapsed().as_secs_f64();
    let (cpu1, _) = server.usage();
    let (gen1, _) = proc_usage(std::process::id());
    let wire = subs.iter().map(|(_, s)| s.wire).sum::<u64>() - wire0;
    row.wire_bytes_per_sec = wire as f64 / wall;
    if tally.deliveries > 0 {
        row.bytes_per_delivery = wire as f64 / tally.deliveries as f64;
    }
    row.delivered = tally.deliveries;
    (row.deltas, row.bad_deltas) = (tally.deltas, tally.bad_deltas);
    (row.compressed, row.inflate_errors) = (tally.compressed, tally.inflate_errors);
    // Deliveries counted over the same window as the writes (the counter starts a little
    // before and stops a little after it: a few more writes than deliveries in the window).
    if let Some(writes) = counter.and_then(stop_syscall_count) {
        if tally.deliveries > 0 {
            row.writes_per_delivery = Some(writes as f64 / tally.deliveries as f64);
        }
    }
    stop.store(true, Ordering::Relaxed);
    row.published = feeder.join().unwrap_or(0);
    let mut lat = std::mem::take(&mut tally.latencies_us);
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    row.deliveries_per_sec = tally.deliveries as f64 / wall;
    row.server_cpu = (cpu1 - cpu0) / wall * 100.0;
    row.generator_cpu = (gen1 - gen0) / wall * 100.0;
    if tally.deliveries > 0 {
        row.ns_per_delivery = (cpu1 - cpu0) * 1e9 / tally.deliveries as f64;
    }
    (row.p50, row.p99, row.p999) = (pct(0.5), pct(0.99), pct(0.999));
    row.max = lat.last().copied().unwrap_or(0);
    row.losses = tally.losses;
    row.order_violations = tally.order_violations;
    row
}

// ---------------------------------------------------------------------------------------------
// Reporting

fn print_table(rows: &[Row]) {
    println!(
        "\n{:<5} {:<10} {:>6} {:>7} {:>8} {:>10} {:>9} {:>5} {:>5} {:>8} {:>6} {:>6} {:>7} {:>7} {:>6} {:>5} {:>8} {:>8}",
        "sc", "server", "subs", "rate", "setup/s", "deliv/s", "published", "srv%", "gen%",
        "ns/deliv", "p50us", "p99us", "p999us", "maxus", "losses", "order", "rss/conn", "wr/deliv"
    );
    for r in rows {
        println!(
            "{:<5} {:<10} {:>6} {:>7} {:>8.0} {:>10.0} {:>9} {:>5.0} {:>5.0} {:>8.0} {:>6} {:>6} {:>7} {:>7} {:>6} {:>5} {:>8.0} {:>8}",
            r.scenario, r.server.name(), r.subscribers, r.rate.map_or("max".into(), |r| r.to_string()),
            r.setup_per_sec, r.deliveries_per_sec, r.published, r.server_cpu, r.generator_cpu,
            r.ns_per_delivery, r.p50, r.p99, r.p999, r.max, r.losses, r.order_violations,
            r.rss_per_conn, r.writes_per_delivery.map_or("-".into(), |w| format!("{w:.3}"))
        );
    }
}

/// tickwire's figure over each peer's, per scenario: below 1 means tickwire uses less.
fn print_ratios(rows: &[Row]) {
    println!("\nratios, tickwire / peer (CPU per delivery; RSS per connection for S4; below 1: tickwire uses less)");
    let mut scenarios: Vec<(&str, usize)> =
        rows.iter().map(|r| (r.scenario, r.subscribers)).collect();
    scenarios.dedup();
    for (sc, subs) in scenarios {
        let of = |k: Kind| {
            rows.iter()
                .find(|r| r.scenario == sc && r.subscribers == subs && r.server == k)
        };
        let Some(tw) = of(Kind::Tickwire) else {
            continue;
        };
        let mut line = format!("{sc:<5} {subs:>6} subs:");
        for peer in [
            Kind::Tokio,
            Kind::Node,
            Kind::Uws,
            Kind::UwsDefer,
            Kind::UwsCork,
            Kind::Ceiling,
            Kind::Cluster,
            Kind::TickwireTls,
        ] {
            let Some(p) = of(peer) else { continue };
            let (a, b) = if sc == "S4" {
                (tw.rss_per_conn, p.rss_per_conn)
            } else {
                (tw.ns_per_delivery, p.ns_per_delivery)
            };
            if b > 0.0 {
                let r = a / b;
                let digits = if r < 0.1 { 3 } else { 2 };
                line.push_str(&format!("  vs {}: {r:.digits$}x", peer.name()));
            }
        }
        println!("{line}");
    }
}

fn write_csv(path: &str, rows: &[Row]) -> io::Result<()> {
    let mut out = String::from(
        "scenario,server,subscribers,rate,setup_per_sec,deliveries_per_sec,published,server_cpu_pct,\
         generator_cpu_pct,ns_per_delivery,p50_us,p99_us,p999_us,max_us,losses,order_violations,rss_per_conn_bytes,writes_per_delivery,\
         variant,setup_cpu_us_per_conn,wire_bytes_per_sec,bytes_per_delivery,deliveries,deltas,bad_deltas,compressed,inflate_errors\n",
    );
    for r in rows {
        out.push_str(&format!(
            "{},{},{},{},{:.0},{:.0},{},{:.1},{:.1},{:.1},{},{},{},{},{},{},{:.0},{},{},{:.2},{:.0},{:.1},{},{},{},{},{}\n",
            r.scenario,
            r.server.name(),
            r.subscribers,
            r.rate.map_or("max".into(), |r| r.to_string()),
            r.setup_per_sec,
            r.deliveries_per_sec,
            r.published,
            r.server_cpu,
            r.generator_cpu,
            r.ns_per_delivery,
            r.p50,
            r.p99,
            r.p999,
            r.max,
            r.losses,
            r.order_violations,
            r.rss_per_conn,
            r.writes_per_delivery
                .map_or(String::new(), |w| format!("{w:.4}")),
            r.variant,
            r.setup_cpu_us,
            r.wire_bytes_per_sec,
            r.bytes_per_delivery,
            r.delivered,
            r.deltas,
            r.bad_deltas,
            r.compressed,
            r.inflate_errors
        ));
    }
    if let Some(dir) = Path::new(path).parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, out)
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
    if !common::is_bench_run(&args, "fanout") {
        return;
    }
    let flag = |name: &str| common::flag(&args, name);
    let value = |name: &str| common::value(&args, name);
    let quick = flag("--quick");
    let syscalls = flag("--syscalls");
    let only = value("--only");
    // Read before pinning, which narrows what this process sees.
    let ncores = thread::available_parallelism().map_or(1, |n| n.get());
    let cores = if flag("--both-cores") {
        Cores::Both
    } else {
        pin_self(1);
        Cores::Pinned
    };
    let _ = rlimit::increase_nofile_limit(65536);
    // The feature costs: each its own plan of rows, run `--rounds N` times (default 1).
    let rounds: usize = value("--rounds")
        .and_then(|r| r.parse().ok())
        .unwrap_or(1)
        .max(1);
    let size = if quick { "quick sizes" } else { "full sizes" };
    if flag("--recovery") {
        let clients = if quick { 2_000 } else { 10_000 };
        println!("recovery: {clients} clients, one topic each of 100, {RECOVER} messages replayed against one snapshot; {size}, {rounds} round(s)");
        let mut rows = Vec::new();
        for round in 1..=rounds {
            for recover in [false, true] {
                rows.push(recovery_round(recover, round, clients, cores));
            }
        }
        print_recovery(&rows);
        return;
    }
    let plan = if flag("--rate") {
        Some(
            rate_scenarios(quick)
                .into_iter()
                .map(|sc| (Kind::Tickwire, sc))
                .collect::<Vec<_>>(),
        )
    } else if flag("--deltas") {
        Some(delta_plan(quick))
    } else if flag("--features") {
        Some(feature_plan(quick))
    } else {
        None
    };
    if let Some(mut plan) = plan {
        // `--servers tickwire,node`: only those servers' rows (by the names in the tables).
        if let Some(list) = value("--servers") {
            plan.retain(|(k, _)| list.split(',').any(|n| n == k.name()));
        }
        if plan.iter().any(|(k, _)| *k == Kind::Node) {
            if let Err(why) = prepare_node_peer() {
                println!("node peer skipped: {why}");
                plan.retain(|(k, _)| *k != Kind::Node);
            }
        }
        let list: Vec<String> = plan
            .iter()
            .map(|(k, sc)| {
                format!(
                    "{} {} {} ({} subscribers, {}/s)",
                    sc.name,
                    k.name(),
                    sc.opts.label,
                    sc.subscribers,
                    sc.rate.unwrap_or(0)
                )
            })
            .collect();
        println!(
            "fanout features: {size}, {rounds} round(s), {}: {}",
            if cores == Cores::Pinned {
                "server on core 0, generator on core 1"
            } else {
                "unpinned"
            },
            list.join("; ")
        );
        let rows = run_plan(&plan, rounds, cores);
        print_features(&rows);
        if let Some(path) = value("--csv") {
            let rows: Vec<Row> = rows.into_iter().map(|(_, r)| r).collect();
            write_csv_or_say(&path, &rows);
        }
        return;
    }
    let kinds = if flag("--tls") {
        // Plain against TLS on the public listener: the cost of TLS per delivery.
        vec![Kind::Tickwire, Kind::TickwireTls]
    } else if flag("--redis") {
        // One node against two nodes sharing the feed through Redis.
        if Command::new("redis-server")
            .arg("--version")
            .output()
            .is_err()
        {
            println!("--redis needs redis-server (Debian package redis-server)");
            return;
        }
        vec![Kind::Tickwire, Kind::Cluster]
    } else {
        // `--servers tickwire,uws`: only those (by the names in the tables); without it, every
        // server but `uws-cork` (a control that only shows `ws.cork` changes nothing). A Node
        // peer not asked for is not installed either.
        let servers = value("--servers");
        let wanted = |k: Kind| {
            servers.as_deref().map_or(k != Kind::UwsCork, |list| {
                list.split(',').any(|n| n == k.name())
            })
        };
        let mut kinds = vec![Kind::Tickwire, Kind::Tokio];
        if wanted(Kind::Node) {
            match prepare_node_peer() {
                Ok(()) => kinds.push(Kind::Node),
                Err(why) => println!("node peer skipped: {why}"),
            }
        }
        let uws = [Kind::Uws, Kind::UwsDefer, Kind::UwsCork];
        if uws.iter().any(|&k| wanted(k)) {
            match prepare_uws_peer() {
                Ok(()) => kinds.extend(uws),
                Err(why) => println!("uws peer skipped: {why}"),
            }
        }
        kinds.push(Kind::Ceiling);
        kinds.retain(|&k| wanted(k));
        kinds
    };
    println!(
        "fanout: {} on {} cores; {}",
        if quick { "quick run" } else { "full run" },
        ncores,
        match (cores, have_taskset()) {
            (Cores::Pinned, true) => "server pinned to core 0, generator to core 1",
            (Cores::Pinned, false) => "taskset missing: nothing pinned",
            (Cores::Both, _) => "both cores, unpinned (tickwire: 2 workers)",
        }
    );
    let list = if flag("--sweep") {
        sweep(quick)
    } else {
        scenarios(quick)
    };
    let mut rows = Vec::new();
    for mut sc in list {
        if let Some(w) = value("--window").and_then(|w| w.parse().ok()) {
            sc.window = w;
        }
        if only.as_deref().is_some_and(|o| o != sc.name) {
            continue;
        }
        println!(
            "{}: {} subscribers, {} topics, {} each, rate {}, {} s{}",
            sc.name,
            sc.subscribers,
            sc.topics,
            sc.topics_per_subscriber,
            sc.rate
                .map_or(format!("max (window {})", sc.window), |r| format!("{r}/s")),
            sc.seconds,
            if sc.idle {
                " (idle: memory per connection)"
            } else {
                ""
            }
        );
        for &kind in &kinds {
            // The variants differ from `uws` only in how they publish: nothing to see when idle.
            if sc.idle && matches!(kind, Kind::UwsDefer | Kind::UwsCork) {
                continue;
            }
            let row = run(kind, sc, cores, syscalls);
            if sc.idle {
                println!(
                    "  {:<10} {:>6.0} connections/s set up, {:.0} B RSS/conn{}",
                    kind.name(),
                    row.setup_per_sec,
                    row.rss_per_conn,
                    if row.refused > 0 {
                        format!(
                            " ({} refused at the server's connection limit)",
                            row.refused
                        )
                    } else {
                        String::new()
                    }
                );
                rows.push(row);
                continue;
            }
            println!(
                "  {:<10} {:>9.0} deliveries/s, {:>5.0} ns/delivery, p99 {} us, server {:.0}% / generator {:.0}% CPU, {:.0} B RSS/conn, {} losses, {} order",
                kind.name(), row.deliveries_per_sec, row.ns_per_delivery, row.p99, row.server_cpu,
                row.generator_cpu, row.rss_per_conn, row.losses, row.order_violations
            );
            if let Some(w) = row.writes_per_delivery {
                println!(
                    "  {:<10} {w:.3} write calls per delivery ({:.1} deliveries per write)",
                    kind.name(),
                    1.0 / w
                );
            }
            rows.push(row);
        }
    }
    print_table(&rows);
    print_ratios(&rows);
    if let Some(path) = value("--csv") {
        write_csv_or_say(&path, &rows);
    }
}

fn write_csv_or_say(path: &str, rows: &[Row]) {
    match write_csv(path, rows) {
        Ok(()) => println!("\nrows written to {path}"),
        Err(e) => println!("\ncould not write {path}: {e}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Feature costs: `--rate` (issue 13), `--deltas` (issue 14), `--features` (issue 16)

/// Runs every row of `plan` once per round, the rounds one after the other (so each feature
/// row and its plain row are measured minutes apart at most, under the same load), printing
/// each row as it ends. Each round starts one row further into the plan, so no row is always
/// the one run first (or right after the same neighbour).
fn run_plan(plan: &[(Kind, Scenario)], rounds: usize, cores: Cores) -> Vec<(usize, Row)> {
    let mut rows = Vec::new();
    for round in 1..=rounds {
        let mut order = plan.to_vec();
        order.rotate_left((round - 1) % plan.len().max(1));
        for (kind, sc) in order {
            let row = run(kind, sc, cores, false);
            println!(
                "  round {round} {:<4} {:<12} {:<14} {:>8.0} deliveries/s, {:>5.0} ns/delivery, {:>6.1} B/delivery, {:>6.1} MB/s, server {:.0}% / generator {:.0}%, set-up {:.1} us/conn, {} gaps, {} order, {} deltas ({} bad), {} compressed ({} bad)",
                sc.name, kind.name(), sc.opts.label, row.deliveries_per_sec, row.ns_per_delivery,
                row.bytes_per_delivery, row.wire_bytes_per_sec / 1e6, row.server_cpu,
                row.generator_cpu, row.setup_cpu_us, row.losses, row.order_violations,
                row.deltas, row.bad_deltas, row.compressed, row.inflate_errors
            );
            rows.push((round, row));
        }
    }
    rows
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The plain row a feature row is compared with: the same scenario and round, plain, on the
/// same server (tickwire for `tickwire-tls`).
fn plain_of<'a>(rows: &'a [(usize, Row)], round: usize, r: &Row) -> Option<&'a Row> {
    let base = match r.server {
        Kind::TickwireTls => Kind::Tickwire,
        k => k,
    };
    rows.iter()
        .find(|(n, p)| {
            *n == round && p.scenario == r.scenario && p.server == base && p.variant == "plain"
        })
        .map(|(_, p)| p)
}

/// The medians over the rounds of each feature row, and its ratios to plain: CPU per delivery,
/// bytes per delivery, server CPU and wire bytes per second, CPU per connection set up (the
/// ratio is of medians; the per-round ratios of CPU per delivery show the noise).
fn print_features(rows: &[(usize, Row)]) {
    println!(
        "\n{:<4} {:<12} {:<14} {:>10} {:>5} {:>5} {:>8} {:>8} {:>9} {:>8} {:>7} {:>7} {:>8} {:>9} {:>10}  per round: ns/deliv vs plain",
        "sc", "server", "variant", "deliv/s", "srv%", "gen%", "ns/deliv", "B/deliv", "wire MB/s",
        "setup us", "deltas%", "compr%", "gaps", "x ns", "x bytes"
    );
    let mut seen: Vec<(&str, Kind, &str)> = Vec::new();
    for (_, r) in rows {
        let key = (r.scenario, r.server, r.variant);
        if seen.contains(&key) {
            continue;
        }
        seen.push(key);
        let same: Vec<&(usize, Row)> = rows
            .iter()
            .filter(|(_, x)| (x.scenario, x.server, x.variant) == key)
            .collect();
        let med = |f: &dyn Fn(&Row) -> f64| median(same.iter().map(|(_, x)| f(x)).collect());
        let plain: Vec<(&Row, &Row)> = same
            .iter()
            .filter_map(|(n, x)| Some((x, plain_of(rows, *n, x)?)))
            .collect();
        let pmed = |f: &dyn Fn(&Row) -> f64| median(plain.iter().map(|(_, p)| f(p)).collect());
        let ratio = |f: &dyn Fn(&Row) -> f64| {
            let b = pmed(f);
            if b > 0.0 {
                format!("{:.2}x", med(f) / b)
            } else {
                "-".into()
            }
        };
        let rounds: Vec<String> = plain
            .iter()
            .map(|(x, p)| format!("{:.2}", x.ns_per_delivery / p.ns_per_delivery.max(1.0)))
            .collect();
        let d = med(&|x| x.deliveries_per_sec);
        let share = |f: &dyn Fn(&Row) -> u64| {
            100.0 * same.iter().map(|(_, x)| f(x)).sum::<u64>() as f64
                / same.iter().map(|(_, x)| x.delivered).sum::<u64>().max(1) as f64
        };
        println!(
            "{:<4} {:<12} {:<14} {:>10.0} {:>5.0} {:>5.0} {:>8.0} {:>8.1} {:>9.2} {:>8.1} {:>7.1} {:>7.1} {:>8.0} {:>9} {:>10}  {}",
            r.scenario,
            r.server.name(),
            r.variant,
            d,
            med(&|x| x.server_cpu),
            med(&|x| x.generator_cpu),
            med(&|x| x.ns_per_delivery),
            med(&|x| x.bytes_per_delivery),
            med(&|x| x.wire_bytes_per_sec) / 1e6,
            med(&|x| x.setup_cpu_us),
            share(&|x| x.deltas),
            share(&|x| x.compressed),
            med(&|x| x.losses as f64),
            ratio(&|x| x.ns_per_delivery),
            ratio(&|x| x.bytes_per_delivery),
            rounds.join(" ")
        );
    }
    let bad: u64 = rows
        .iter()
        .map(|(_, r)| r.order_violations + r.bad_deltas + r.inflate_errors)
        .sum();
    println!("order violations, unappliable patches and inflate errors over every row: {bad}");
}

// ---------------------------------------------------------------------------------------------
// Recovery (issue 13, `--recovery`)

/// Publications each topic has when the clients come back: the recovering ones ask for the last
/// `RECOVER` of them (the broker keeps 100 per topic by default, `--history`).
const RECOVER: u64 = 100;

/// One round of the recovery measurement.
struct RecoveryRow {
    mode: &'static str,
    round: usize,
    clients: usize,
    /// Server CPU from the first subscribe request sent to the last message received, per
    /// client (schedstat).
    cpu_us_per_client: f64,
    /// Wire bytes per client over the same span (the ack and the messages).
    bytes_per_client: f64,
    /// Messages per client (snapshots or replayed updates).
    msgs_per_client: f64,
    /// Acks that listed the topic as recovered.
    recovered: u64,
    seconds: f64,
    gaps: u64,
    order: u64,
}

/// What a subscriber coming back with `since` costs against one subscribing plain. A fresh
/// server gets `RECOVER + 1` quotes on each of 100 topics; `clients` connections are opened
/// without subscribing; then each sends one subscribe of one topic, either plain (it gets the
/// topic's snapshot: one message) or with `since` = 1 and the feed's epoch (the broker replays
/// seqs 2 to `RECOVER + 1` from its history: `RECOVER` messages), and the server's CPU is read
/// from the first request to the last message. Handshakes are outside the span; nothing is
/// published during it.
fn recovery_round(recover: bool, round: usize, clients: usize, cores: Cores) -> RecoveryRow {
    let opts = Opts {
        label: if recover { "since" } else { "snapshot" },
        quote: true,
        defer_subscribe: true,
        ..Opts::default()
    };
    let sc = Scenario {
        name: "REC",
        subscribers: clients,
        topics: 100,
        topics_per_subscriber: 1,
        rate: None,
        seconds: 0,
        idle: false,
        window: WINDOW,
        opts,
    };
    let server = Server::start(Kind::Tickwire, cores, opts);
    thread::sleep(Duration::from_millis(200));
    preload(server.publish_addr, sc.topics, RECOVER + 1);
    let feed_epoch = feed_epoch(server.subscribe_addrs[0]);
    let mut poll = Poll::new().expect("poll");
    let epoch = Instant::now();
    let (mut subs, _, _, refused) = connect_all(&server, &sc, &mut poll, epoch);
    assert_eq!(refused, 0, "connections refused");
    thread::sleep(Duration::from_millis(300));
    let mut tally = Tally::default();
    let want = clients as u64 * if recover { RECOVER } else { 1 };
    let wire0: u64 = subs.iter().map(|(_, s)| s.wire).sum();
    let cpu0 = server_cpu_ns(&server);
    let started = Instant::now();
    for (i, sub) in subs.iter_mut() {
        let topic = [topic_name(i % sc.topics)];
        let since = recover.then_some((1, feed_epoch.as_str()));
        send_on(sub, &subscribe_frame(&topic, &opts, since)).expect("subscribe");
    }
    let mut events = Events::with_capacity(4096);
    let mut buf = vec![0u8; 256 * 1024];
    while tally.deliveries < want && started.elapsed() < Duration::from_secs(60) {
        poll.poll(&mut events, Some(Duration::from_millis(20)))
            .expect("poll");
        for ev in events.iter() {
            if let Some(s) = subs.get_mut(ev.token().0) {
                drain(s, &mut buf, &mut tally, epoch);
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu = server_cpu_ns(&server) - cpu0;
    let wire = subs.iter().map(|(_, s)| s.wire).sum::<u64>() - wire0;
    RecoveryRow {
        mode: opts.label,
        round,
        clients,
        cpu_us_per_client: cpu as f64 / 1e3 / clients as f64,
        bytes_per_client: wire as f64 / clients as f64,
        msgs_per_client: tally.deliveries as f64 / clients as f64,
        recovered: tally.recovered,
        seconds,
        gaps: tally.losses,
        order: tally.order_violations,
    }
}

/// Publishes `per_topic` quotes on each of `topics` topics through the streaming publisher and
/// waits until the broker has sequenced the last one (its `published` ack).
fn preload(addr: SocketAddr, topics: usize, per_topic: u64) {
    let mut s = StdStream::connect(addr).expect("publisher connects");
    s.write_all(
        b"GET /publish HTTP/1.1\r\nHost: b\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .expect("upgrade");
    let mut batch = Vec::new();
    let total = per_topic * topics as u64;
    for n in 0..total {
        let topic = (n % topics as u64) as usize;
        let payload = quote_payload(0, n / topics as u64, topic);
        let id = if n + 1 == total { ",\"id\":1" } else { "" };
        let msg = format!(
            "{{\"topic\":\"{}\",\"data\":{payload}{id}}}",
            topic_name(topic)
        );
        batch.extend(encode_client_frame(
            true,
            OpCode::Text,
            msg.as_bytes(),
            [1, 2, 3, 4],
        ));
    }
    s.write_all(&batch).expect("publish");
    read_until(&mut s, b"\"type\":\"published\"");
}

/// The feed's epoch, from the `subscribed` ack of a connection opened for it.
fn feed_epoch(addr: SocketAddr) -> String {
    let mut s = StdStream::connect(addr).expect("connect");
    s.write_all(b"GET /ws?subscribe=b/0 HTTP/1.1\r\nHost: b\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        .expect("upgrade");
    let text = read_until(&mut s, b"\"epoch\":\"");
    let text = String::from_utf8_lossy(&text);
    let at = text.find("\"epoch\":\"").expect("epoch") + 9;
    let mut rest = text[at..].to_owned();
    while !rest.contains('"') {
        let mut more = [0u8; 256];
        let n = s.read(&mut more).expect("read");
        assert!(n > 0, "closed before the epoch ended");
        rest.push_str(&String::from_utf8_lossy(&more[..n]));
    }
    rest[..rest.find('"').unwrap_or(0)].to_owned()
}

/// Reads from `s` until what was read contains `needle` (10 s at most); returns all of it.
fn read_until(s: &mut StdStream, needle: &[u8]) -> Vec<u8> {
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(needle.len()).any(|w| w == needle) {
        let n = s.read(&mut buf).expect("the server answers");
        assert!(n > 0, "the server closed the connection");
        got.extend_from_slice(&buf[..n]);
    }
    got
}

fn print_recovery(rows: &[RecoveryRow]) {
    println!(
        "\n{:<9} {:>5} {:>7} {:>12} {:>12} {:>9} {:>9} {:>8} {:>5} {:>5}",
        "mode",
        "round",
        "clients",
        "cpu us/cl",
        "bytes/cl",
        "msgs/cl",
        "recovered",
        "seconds",
        "gaps",
        "order"
    );
    for r in rows {
        println!(
            "{:<9} {:>5} {:>7} {:>12.1} {:>12.0} {:>9.1} {:>9} {:>8.3} {:>5} {:>5}",
            r.mode,
            r.round,
            r.clients,
            r.cpu_us_per_client,
            r.bytes_per_client,
            r.msgs_per_client,
            r.recovered,
            r.seconds,
            r.gaps,
            r.order
        );
    }
    let med = |mode: &str, f: &dyn Fn(&RecoveryRow) -> f64| {
        median(rows.iter().filter(|r| r.mode == mode).map(f).collect())
    };
    let (cs, cr) = (
        med("snapshot", &|r| r.cpu_us_per_client),
        med("since", &|r| r.cpu_us_per_client),
    );
    let (bs, br) = (
        med("snapshot", &|r| r.bytes_per_client),
        med("since", &|r| r.bytes_per_client),
    );
    println!(
        "medians: snapshot {cs:.1} us and {bs:.0} B per client; recovery of {RECOVER} messages {cr:.1} us and {br:.0} B ({:.1}x, {:.1}x the snapshot; {:.2} us per replayed message beyond the first)",
        cr / cs.max(1e-9),
        br / bs.max(1e-9),
        (cr - cs) / (RECOVER - 1) as f64
    );
}
