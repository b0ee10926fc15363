//! The C library as C and C++ programs use it: the examples in ffi-examples/ are built with
//! `make` against libtickwire.a and libtickwire.so, run, and read by a real WebSocket client
//! (topic, order and payload checked); the bad-argument program checks every status code; and
//! valgrind finds no leak or invalid access in the C and C++ programs.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Once;
use std::time::Duration;

use serde_json::Value;
use tungstenite::Message;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Builds the library (debug, as the tests are) and the examples, once per test binary.
fn examples() -> PathBuf {
    static BUILD: Once = Once::new();
    let out = root().join("target/ffi-examples");
    BUILD.call_once(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--lib", "--quiet"])
            .current_dir(root())
            .status()
            .expect("cargo runs");
        assert!(status.success(), "cargo build --lib failed");
        let status = Command::new("make")
            .args(["--silent", "-C", "ffi-examples", "LIBDIR=../target/debug"])
            .arg(format!("OUT={}", out.display()))
            .current_dir(root())
            .status()
            .expect("make runs (install make and a C/C++ compiler)");
        assert!(status.success(), "make in ffi-examples failed");
    });
    out
}

/// Starts a program that prints `listening on ws://ADDR/ws` first; returns it and ADDR.
fn start(program: &Path, args: &[&str]) -> (Child, String) {
    let mut child = Command::new(program)
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().expect("stdout"))
        .read_line(&mut line)
        .expect("first line");
    let addr = line
        .trim()
        .strip_prefix("listening on ws://")
        .and_then(|rest| rest.strip_suffix("/ws"))
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    (child, addr)
}

/// Subscribes to `pattern` and reads `count` messages: per topic, seq must go up by one and
/// `check` must accept each (topic, seq, data).
fn receive(
    addr: &str,
    pattern: &str,
    count: usize,
    check: impl Fn(&str, u64, &Value),
) -> HashMap<String, u64> {
    let stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let url = format!("ws://{addr}/ws?subscribe={pattern}");
    let (mut ws, _) = tungstenite::client(url, stream).expect("handshake");
    let mut last: HashMap<String, u64> = HashMap::new();
    let mut got = 0;
    while got < count {
        let text = match ws.read().expect("a message") {
            Message::Text(t) => t,
            _ => continue,
        };
        let m: Value = serde_json::from_str(&text).expect("JSON");
        if m["type"] != "msg" {
            continue;
        }
        let topic = m["topic"].as_str().expect("topic").to_owned();
        let seq = m["seq"].as_u64().expect("seq");
        if let Some(prev) = last.get(&topic) {
            assert_eq!(seq, prev + 1, "{topic}: seq {seq} after {prev}");
        }
        check(&topic, seq, &m["data"]);
        last.insert(topic, seq);
        got += 1;
    }
    last
}

fn finish(mut child: Child, what: &str) {
    let status = child.wait().expect("wait");
    assert!(status.success(), "{what} exited with {status}");
}

#[test]
fn the_c_publisher_feeds_a_websocket_subscriber() {
    let dir = examples();
    for variant in ["publisher-static", "publisher-shared"] {
        let (child, addr) = start(&dir.join(variant), &["2", "127.0.0.1:0"]);
        let last = receive(&addr, "quotes/%2B", 300, |topic, _, data| {
            let symbol = data["symbol"].as_str().expect("symbol");
            assert_eq!(topic, format!("quotes/{symbol}"));
            assert!(data["bid"].as_f64() < data["ask"].as_f64(), "{data}");
        });
        assert_eq!(last.len(), 4, "{variant}: all four symbols: {last:?}");
        finish(child, variant);
    }
}

#[test]
fn the_cpp_program_publishes_from_several_threads() {
    let dir = examples();
    for variant in ["threads-static", "threads-shared"] {
        let (child, addr) = start(&dir.join(variant), &["2", "127.0.0.1:0"]);
        let last = receive(&addr, "quotes/%23", 400, |topic, seq, data| {
            let t = data["thread"].as_u64().expect("thread");
            assert_eq!(topic, format!("quotes/T{t}"));
            // Each thread publishes n = 0, 1, 2, ... on its own topic: n is seq - 1 exactly.
            assert_eq!(data["n"].as_u64(), Some(seq - 1), "{topic}");
        });
        assert_eq!(last.len(), 4, "{variant}: four threads' topics: {last:?}");
        finish(child, variant);
    }
}

#[test]
fn bad_arguments_get_status_codes_and_messages() {
    let dir = examples();
    for variant in ["bad_arguments-static", "bad_arguments-shared"] {
        let out = Command::new(dir.join(variant)).output().expect("runs");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{variant}:\n{text}");
        assert!(text.contains("0 failure(s)"), "{text}");
    }
}

fn valgrind(program: &Path, args: &[&str]) {
    let out = Command::new("valgrind")
        .args([
            "--error-exitcode=99",
            "--leak-check=full",
            "--errors-for-leak-kinds=definite,indirect",
            "-q",
        ])
        .arg(program)
        .args(args)
        .output()
        .expect("valgrind is installed (tests/run_all.sh installs it)");
    assert!(
        out.status.success(),
        "valgrind {}: {}\n{}",
        program.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_c_and_cpp_programs_are_clean_under_valgrind() {
    let dir = examples();
    valgrind(&dir.join("publisher-shared"), &["1", "127.0.0.1:0"]);
    valgrind(&dir.join("bad_arguments-static"), &[]);
    valgrind(&dir.join("threads-static"), &["1", "127.0.0.1:0"]);
}
