//! The C library as C and C++ programs use it: the examples in ffi-examples/ are built with
//! `make` against libtickwire.a and libtickwire.so, run, and read by a real WebSocket client
//! (topic, order and payload checked); the bad-argument program checks every status code and
//! message; the C programs run under valgrind and the C++ one under valgrind and under
//! AddressSanitizer/UBSan, each with a subscriber connected; the README's C example compiles.
//!
//! Every program is started with a time limit and killed if it outlives it.

mod util;
#[cfg(feature = "redis")]
use util::redis as redis_server;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Once;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;
use tungstenite::Message;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Where cargo put this test binary's profile: `target/debug` (or `target/release`, ...).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/c_library-HASH
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .to_owned()
}

/// Builds libtickwire.a and .so for this test's profile, then the examples, once per test
/// binary; returns the examples' directory. Running cargo from a test is safe: `cargo test`
/// released the build lock before running us. `--test c_header` is there so that cargo resolves
/// features as `cargo test` does (with the dev-dependencies): the library it built for this run
/// is then fresh and only copied out, not rebuilt with other features.
fn examples() -> PathBuf {
    static BUILD: Once = Once::new();
    let libdir = profile_dir();
    let out = libdir.join("ffi-examples");
    BUILD.call_once(|| {
        let profile = match libdir.file_name().and_then(|n| n.to_str()) {
            Some("debug") => "dev".to_owned(),
            Some(name) => name.to_owned(),
            None => panic!("no profile directory in {}", libdir.display()),
        };
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args([
                "build",
                "--quiet",
                "--lib",
                "--test",
                "c_header",
                "--profile",
            ])
            .arg(&profile)
            .current_dir(root())
            .stdin(Stdio::null())
            .status()
            .expect("cargo runs");
        assert!(status.success(), "cargo build --lib failed");
        let status = Command::new("make")
            .args(["--silent", "-C", "ffi-examples"])
            .arg(format!("LIBDIR={}", libdir.display()))
            .arg(format!("OUT={}", out.display()))
            .current_dir(root())
            .stdin(Stdio::null())
            .status()
            .expect("make runs (tests/run_all.sh installs make, gcc and g++)");
        assert!(status.success(), "make in ffi-examples failed");
    });
    out
}

/// A running example program: its stdout line by line, its stderr collected, and a deadline
/// after which it is killed. Dropping it kills it if it is still running.
struct Program {
    name: String,
    child: Child,
    deadline: Instant,
    lines: Receiver<String>,
    stderr: Option<JoinHandle<String>>,
}

/// How a program ended.
struct Ended {
    status: ExitStatus,
    /// The stdout lines not yet read with [`Program::line`].
    stdout: String,
    stderr: String,
}

impl Program {
    /// Starts `command` (stdin closed, stdout and stderr captured) with `limit` to live.
    fn start(name: &str, mut command: Command, limit: Duration) -> Program {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{name}: cannot start: {e}"));
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut stderr = child.stderr.take().expect("stderr");
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        Program {
            name: name.to_owned(),
            child,
            deadline: Instant::now() + limit,
            lines,
            stderr: Some(stderr),
        }
    }

    /// An example built by `examples()`: `dir/variant args...`.
    fn example(dir: &Path, variant: &str, args: &[&str], limit: Duration) -> Program {
        let mut command = Command::new(dir.join(variant));
        command.args(args);
        Program::start(variant, command, limit)
    }

    /// The next stdout line; panics if the program ends or the deadline passes first.
    fn line(&mut self) -> String {
        let left = self.deadline.saturating_duration_since(Instant::now());
        match self.lines.recv_timeout(left) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => {
                let _ = self.child.kill();
                panic!("{}: no output line within its time limit", self.name)
            }
            Err(RecvTimeoutError::Disconnected) => {
                let ended = self.wait();
                panic!(
                    "{}: ended ({}) before printing a line; stderr:\n{}",
                    self.name, ended.status, ended.stderr
                )
            }
        }
    }

    /// Reads the first line, `listening on ws://ADDR/ws`, and returns ADDR.
    fn listening_addr(&mut self) -> std::net::SocketAddr {
        let line = self.line();
        line.strip_prefix("listening on ws://")
            .and_then(|rest| rest.strip_suffix("/ws"))
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| panic!("{}: unexpected first line {line:?}", self.name))
    }

    /// Waits for the program to end (killing it at the deadline) and collects its output.
    fn wait(&mut self) -> Ended {
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            if Instant::now() >= self.deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("{}: still running at its time limit: killed", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let stdout: Vec<String> = self.lines.iter().collect();
        let stderr = self
            .stderr
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        Ended {
            status,
            stdout: stdout.join("\n"),
            stderr,
        }
    }

    /// Waits for the program and asserts it exited with 0.
    fn succeeds(mut self) -> Ended {
        let ended = self.wait();
        assert!(
            ended.status.success(),
            "{} exited with {}\nstdout:\n{}\nstderr:\n{}",
            self.name,
            ended.status,
            ended.stdout,
            ended.stderr
        );
        ended
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Subscribes to `pattern` and reads `count` messages: per topic, seq must go up by one and
/// `check` must accept each (topic, seq, data). Returns each topic's last seq.
fn receive(
    addr: std::net::SocketAddr,
    pattern: &str,
    count: usize,
    check: impl Fn(&str, u64, &Value),
) -> HashMap<String, u64> {
    let mut ws = util::connect(addr, &format!("/ws?subscribe={pattern}"));
    let mut last: HashMap<String, u64> = HashMap::new();
    let mut got = 0;
    while got < count {
        let text = match ws.read().expect("a message within 10 s") {
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
    let _ = ws.close(None);
    let _ = ws.flush();
    last
}

/// A quote from publisher.c: on quotes/<symbol>, with bid below ask.
fn check_quote(topic: &str, _seq: u64, data: &Value) {
    let symbol = data["symbol"].as_str().expect("symbol");
    assert_eq!(topic, format!("quotes/{symbol}"));
    assert!(data["bid"].as_f64() < data["ask"].as_f64(), "{data}");
}

/// A message from threads.cpp: thread t publishes n = 0, 1, 2, ... on quotes/T<t>, so n is
/// exactly seq - 1: nothing lost, nothing reordered.
fn check_thread_message(topic: &str, seq: u64, data: &Value) {
    let t = data["thread"].as_u64().expect("thread");
    assert_eq!(topic, format!("quotes/T{t}"));
    assert_eq!(data["n"].as_u64(), Some(seq - 1), "{topic}");
}

const LIMIT: Duration = Duration::from_secs(30);

#[test]
fn the_c_publisher_feeds_a_websocket_subscriber() {
    let dir = examples();
    for variant in ["publisher-static", "publisher-shared"] {
        let mut program = Program::example(&dir, variant, &["2", "127.0.0.1:0"], LIMIT);
        let addr = program.listening_addr();
        // This one stays connected until tw_broker_stop closes it.
        let mut stays = util::connect(addr, "/ws?subscribe=quotes/AAPL");
        let last = receive(addr, "quotes/%2B", 300, check_quote);
        assert_eq!(last.len(), 4, "{variant}: all four symbols: {last:?}");
        let close = loop {
            match stays.read().expect("messages, then the close frame") {
                Message::Close(frame) => break frame,
                _ => continue,
            }
        };
        assert_eq!(
            close.map(|f| u16::from(f.code)),
            Some(1001),
            "{variant}: tw_broker_stop closes with 1001"
        );
        // Completes the closing handshake (tungstenite sends its reply on the next call), so
        // the broker need not wait for its close timeout.
        let _ = stays.flush();
        drop(stays);
        let ended = program.succeeds();
        // The connection callback saw both clients come and go, the one closed by the stop
        // included; the log callback got the library's lines.
        assert!(
            ended.stdout.contains("clients opened 2, closed 2"),
            "{variant}: {}",
            ended.stdout
        );
        let started = format!("subscribers at ws://{addr}/ws");
        assert!(
            ended.stderr.contains("tickwire INFO: broker started")
                && ended.stderr.contains(&started),
            "{variant}: {}",
            ended.stderr
        );
        assert!(
            ended.stderr.contains("tickwire INFO: broker stopped"),
            "{variant}: {}",
            ended.stderr
        );
    }
}

/// With a Redis URL, `tw_publish` goes through Redis: the C program's own subscribers get its
/// quotes back from Redis (with Redis's seqs), and Redis holds their seqs and last values.
#[cfg(feature = "redis")]
#[test]
fn the_c_publisher_publishes_through_redis() {
    use redis_server::{bulk, free_port, resp, RedisServer, Scratch};
    let scratch = Scratch::new("c-publisher");
    let redis = RedisServer::start(free_port(), &scratch.0);
    let dir = examples();
    let url = redis.url();
    let mut program =
        Program::example(&dir, "publisher-static", &["2", "127.0.0.1:0", &url], LIMIT);
    let addr = program.listening_addr();
    let last = receive(addr, "quotes/%2B", 200, check_quote);
    assert_eq!(last.len(), 4, "all four symbols: {last:?}");
    let ended = program.succeeds();
    assert!(
        ended.stderr.contains("redis: connected"),
        "the library logs its Redis link: {}",
        ended.stderr
    );
    let topics = resp(redis.port, &[b"HLEN", b"tickwire:last"]).expect("HLEN");
    assert_eq!(topics, b":4\r\n", "a last value per symbol in Redis");
    for (topic, seen) in &last {
        let seq: u64 =
            bulk(&resp(redis.port, &[b"HGET", b"tickwire:seq", topic.as_bytes()]).expect("HGET"))
                .parse()
                .expect("a seq in Redis");
        assert!(
            seq >= *seen,
            "{topic}: Redis at {seq}, subscriber saw {seen}"
        );
    }
}

#[test]
fn the_cpp_program_publishes_from_several_threads() {
    let dir = examples();
    for variant in ["threads-static", "threads-shared"] {
        let mut program = Program::example(&dir, variant, &["2", "127.0.0.1:0"], LIMIT);
        let addr = program.listening_addr();
        let last = receive(addr, "quotes/%23", 400, check_thread_message);
        assert_eq!(last.len(), 4, "{variant}: four threads' topics: {last:?}");
        let ended = program.succeeds();
        assert!(
            ended
                .stdout
                .contains("invalid topic refused: TW_ERR_INVALID_TOPIC: invalid topic"),
            "{variant}: the wrapper throws tickwire::Error: {}",
            ended.stdout
        );
    }
}

#[test]
fn bad_arguments_get_status_codes_and_messages() {
    let dir = examples();
    for variant in ["bad_arguments-static", "bad_arguments-shared"] {
        let ended = Program::example(&dir, variant, &[], LIMIT).succeeds();
        assert!(ended.stdout.contains("0 failure(s)"), "{}", ended.stdout);
        assert!(!ended.stdout.contains("FAIL"), "{}", ended.stdout);
        // The cases the issue names, each with its status and message.
        for expected in [
            "publish on a NULL handle: TW_ERR_NULL_ARGUMENT: broker handle is NULL",
            "NULL topic: TW_ERR_NULL_ARGUMENT: topic is NULL",
            "empty level: TW_ERR_INVALID_TOPIC: invalid topic: topic level is empty",
            "invalid UTF-8 topic: TW_ERR_INVALID_UTF8: topic is not UTF-8",
            "payload over the limit: TW_ERR_PAYLOAD_TOO_LARGE: payload of 100 bytes is over the \
             limit of 64 bytes",
            "publish after stop: TW_ERR_STOPPED: the broker is shutting down",
            // tw_config's size (evolvable config), and stopping from the callback.
            "a config size no header has: TW_ERR_CONFIG: tw_config size 3 is not one this \
             library knows",
            "a config of an unknown size: NULL: invalid configuration: tw_config size 12345",
            "stop from the callback: TW_ERR_WRONG_THREAD: tw_broker_stop called on one of the \
             broker's worker threads",
            "stop from the main thread: TW_OK",
        ] {
            assert!(
                ended.stdout.contains(expected),
                "{variant}: missing {expected:?} in\n{}",
                ended.stdout
            );
        }
    }
}

#[test]
fn a_program_built_against_an_older_header_still_works() {
    let dir = examples();
    for variant in ["old_header-static", "old_header-shared"] {
        let ended = Program::example(&dir, variant, &[], LIMIT).succeeds();
        assert!(
            ended.stdout.contains("from an older header"),
            "{variant}: {}",
            ended.stdout
        );
    }
}

/// valgrind's verdict is its exit status: 99 for any error (invalid read or write, use of
/// uninitialised memory, a definite or indirect leak). "Still reachable" blocks (Rust's std keeps
/// some thread-locals and the logger until exit) are not errors; no suppressions are needed.
fn under_valgrind(dir: &Path, variant: &str, args: &[&str]) -> Program {
    let found = Command::new("valgrind")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        found,
        "valgrind is not installed: this test needs it (tests/run_all.sh installs it with apt-get)"
    );
    let mut command = Command::new("valgrind");
    command
        .args([
            "--error-exitcode=99",
            "--leak-check=full",
            "--errors-for-leak-kinds=definite,indirect",
            "-q",
        ])
        .arg(dir.join(variant))
        .args(args);
    Program::start(
        &format!("valgrind {variant}"),
        command,
        Duration::from_secs(90),
    )
}

#[test]
fn the_c_programs_are_clean_under_valgrind() {
    let dir = examples();
    let mut publisher = under_valgrind(&dir, "publisher-static", &["3", "127.0.0.1:0"]);
    let addr = publisher.listening_addr();
    let last = receive(addr, "quotes/%2B", 100, check_quote);
    assert_eq!(last.len(), 4, "{last:?}");
    let ended = publisher.succeeds();
    assert!(
        ended.stdout.contains("clients opened 1, closed 1"),
        "{}",
        ended.stdout
    );

    let ended = under_valgrind(&dir, "bad_arguments-shared", &[]).succeeds();
    assert!(ended.stdout.contains("0 failure(s)"), "{}", ended.stdout);
    let ended = under_valgrind(&dir, "old_header-shared", &[]).succeeds();
    assert!(
        ended.stdout.contains("from an older header"),
        "{}",
        ended.stdout
    );
}

#[test]
fn the_cpp_program_is_clean_under_valgrind() {
    let dir = examples();
    let mut program = under_valgrind(&dir, "threads-shared", &["3", "127.0.0.1:0"]);
    let addr = program.listening_addr();
    let last = receive(addr, "quotes/%23", 100, check_thread_message);
    assert_eq!(last.len(), 4, "{last:?}");
    program.succeeds();
}

#[test]
fn the_cpp_program_is_clean_under_address_sanitizer() {
    let dir = examples();
    let mut command = Command::new(dir.join("threads-asan"));
    command
        .args(["2", "127.0.0.1:0"])
        // Any finding (including a leak) fails the run with its report on stderr.
        .env(
            "ASAN_OPTIONS",
            "detect_leaks=1:abort_on_error=0:exitcode=98",
        )
        .env("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1");
    let mut program = Program::start("threads-asan", command, LIMIT);
    let addr = program.listening_addr();
    let last = receive(addr, "quotes/%23", 300, check_thread_message);
    assert_eq!(last.len(), 4, "{last:?}");
    let ended = program.succeeds();
    assert!(
        !ended.stderr.contains("Sanitizer"),
        "sanitizer report:\n{}",
        ended.stderr
    );
}

/// The README's C example, as printed, compiles and links without a warning, and runs (on a free
/// port, so a broker already running on the default ports does not get in its way), saying
/// where subscribers connect and what it published.
#[test]
fn the_readme_c_example_compiles_and_runs() {
    let dir = examples();
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    let section = readme
        .split("\n## C library")
        .nth(1)
        .expect("README has a '## C library' section");
    let example = section
        .split("```c\n")
        .nth(1)
        .and_then(|rest| rest.split("\n```").next())
        .expect("the C library section has a ```c block");
    let source = dir.join("readme_example.c");
    std::fs::write(&source, example).expect("write the example");
    let output = Command::new("cc")
        .args(["-std=c11", "-Wall", "-Wextra", "-Wpedantic", "-Werror"])
        .arg(format!("-I{}", root().join("include").display()))
        .arg(&source)
        .arg(profile_dir().join("libtickwire.a"))
        .args(["-lpthread", "-ldl", "-lm", "-o"])
        .arg(dir.join("readme_example"))
        .stdin(Stdio::null())
        .output()
        .expect("cc runs");
    assert!(
        output.status.success(),
        "the README's C example does not compile:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let run = Command::new(dir.join("readme_example"))
        .stdin(Stdio::null())
        .output()
        .expect("the example runs");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        stdout.contains("subscribers connect to ws://127.0.0.1:"),
        "{stdout}"
    );
    assert!(stdout.contains("published quotes/AAPL seq 1"), "{stdout}");
}
