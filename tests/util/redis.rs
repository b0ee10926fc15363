//! A real `redis-server` for tests: on a free loopback port, saving nothing, killed on drop;
//! and a raw RESP client for poking at it. Needs Debian's `redis-server` (`tests/run_all.sh`
//! installs it); a test that uses it fails, saying so, when it is missing.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

const REDIS_SERVER: &str = "redis-server";
/// The longest any test waits for something to happen.
pub const WAIT: Duration = Duration::from_secs(20);

/// A directory for logs, removed at the end (dropped last: declare it first).
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(test: &str) -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("tickwire-redis-{}-{test}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A `redis-server` on a loopback port, with nothing saved to disk.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    pub dir: PathBuf,
}

impl RedisServer {
    pub fn start(port: u16, dir: &Path) -> RedisServer {
        let mut server = RedisServer {
            child: None,
            port,
            dir: dir.to_owned(),
        };
        server.restart();
        server
    }

    /// Starts it (again, on the same port) and waits until it answers.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "redis-server is already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("redis.log"))
            .expect("redis log");
        let child = Command::new(REDIS_SERVER)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {REDIS_SERVER}: {e}. This test needs Debian's redis-server \
                     (apt-get install redis-server; tests/run_all.sh installs it)"
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + WAIT;
        while !resp(self.port, &[b"PING"]).is_ok_and(|r| r == b"+PONG\r\n") {
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} does not answer PING",
                self.port
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGSTOP: Redis hangs the way an overloaded or swapping host does. Its connections stay
    /// open and take what is sent (the kernel buffers it), but nothing is answered until the
    /// returned guard resumes it (SIGCONT), explicitly or when dropped.
    pub fn freeze(&self) -> Frozen {
        let pid = self.pid().expect("redis-server is running");
        assert!(signal(pid, "-STOP"), "kill -STOP {pid} failed");
        Frozen {
            pid,
            since: Instant::now(),
            resumed: false,
        }
    }

    /// SIGKILL: Redis vanishes the way a crashed host does.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // A stopped process dies of SIGKILL too, but leave nothing stopped on any path.
            signal(child.id(), "-CONT");
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        if thread::panicking() {
            if let Ok(log) = std::fs::read_to_string(self.dir.join("redis.log")) {
                eprintln!("--- redis-server log ---\n{log}");
            }
        }
    }
}

/// A frozen (SIGSTOPped) redis-server; resumed with SIGCONT when dropped, so that a failing
/// test never leaves it stopped.
pub struct Frozen {
    pid: u32,
    /// When it was stopped.
    pub since: Instant,
    resumed: bool,
}

impl Frozen {
    /// SIGCONT; returns the moment just before it was sent.
    pub fn resume(&mut self) -> Instant {
        let at = Instant::now();
        if !std::mem::replace(&mut self.resumed, true) {
            assert!(signal(self.pid, "-CONT"), "kill -CONT {} failed", self.pid);
        }
        at
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        // Maybe while a failed assertion unwinds: no second panic here.
        if !self.resumed {
            signal(self.pid, "-CONT");
        }
    }
}

/// `kill -SIG pid`; whether it was delivered.
fn signal(pid: u32, sig: &str) -> bool {
    Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success())
}

/// A port that was free a moment ago (the kernel's pick for port 0).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    l.local_addr().expect("addr").port()
}

/// One Redis command over raw RESP; its whole reply, raw (simple replies and bulk strings).
pub fn resp(port: u16, args: &[&[u8]]) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut req = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        req.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        req.extend_from_slice(a);
        req.extend_from_slice(b"\r\n");
    }
    s.write_all(&req)?;
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    while !complete(&reply) {
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        reply.extend_from_slice(&buf[..n]);
    }
    Ok(reply)
}

/// Whether `reply` is one whole simple reply or bulk string.
fn complete(reply: &[u8]) -> bool {
    let Some(end) = reply.windows(2).position(|w| w == b"\r\n") else {
        return false;
    };
    if reply.first() != Some(&b'$') {
        return true;
    }
    match std::str::from_utf8(&reply[1..end])
        .ok()
        .and_then(|n| n.parse::<i64>().ok())
    {
        Some(len) if len >= 0 => reply.len() >= end + 2 + len as usize + 2,
        _ => true, // $-1: nil
    }
}

/// The text of a bulk-string reply (`$3\r\n123\r\n` -> `123`).
pub fn bulk(reply: &[u8]) -> String {
    let text = String::from_utf8_lossy(reply);
    text.split("\r\n").nth(1).unwrap_or("").to_owned()
}
