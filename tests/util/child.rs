//! The `tickwire` binary as a child process: started on free ports, its addresses read from its
//! start-up banner, its file descriptors and memory read from /proc, signalled, and killed when
//! dropped (a failing test must not leave it running). Its log is kept in a file and printed if
//! the test fails.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub struct Tickwire {
    pub name: String,
    pub child: Child,
    pub public: SocketAddr,
    pub local: SocketAddr,
    pub log: PathBuf,
}

impl Tickwire {
    /// Starts `tickwire` on free loopback ports with `args` after them (later flags win), and
    /// waits for its banner.
    pub fn start(name: &str, args: &[&str]) -> Tickwire {
        Self::start_program(env!("CARGO_BIN_EXE_tickwire").as_ref(), name, args)
    }

    /// [`Tickwire::start`] through `program`, a wrapper that runs the binary (with `prlimit`,
    /// say) and passes the arguments on.
    pub fn start_program(program: &std::path::Path, name: &str, args: &[&str]) -> Tickwire {
        let log = std::env::temp_dir().join(format!(
            "tickwire-test-{}-{name}-{}.log",
            std::process::id(),
            fastrand::u32(..)
        ));
        let mut child = Command::new(program)
            .args(["--listen", "127.0.0.1:0", "--local-listen", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("tickwire starts");
        let stdout = child.stdout.take().expect("stdout");
        let (public, local) = banner_addrs(stdout, name);
        Tickwire {
            name: name.to_owned(),
            child,
            public,
            local,
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A field of /proc/PID/status in KiB (`VmRSS:`).
    pub fn status_kib(&self, field: &str) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("/proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc status"))
    }

    pub fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS:")
    }

    /// Open file descriptors (sockets included).
    pub fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .expect("/proc fd")
            .count()
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// Waits for the process to exit, at most `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// What the process logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Tickwire {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- {} log ---\n{}", self.name, self.log_text());
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

/// The subscribe and publish addresses from a `tickwire` process's start-up banner. The rest of
/// its stdout is read and dropped on a thread of its own, so it never writes to a full pipe.
pub fn banner_addrs(stdout: ChildStdout, name: &str) -> (SocketAddr, SocketAddr) {
    let mut lines = BufReader::new(stdout).lines();
    let mut find = |prefix: &str| -> SocketAddr {
        loop {
            let line = lines
                .next()
                .unwrap_or_else(|| panic!("{name}: banner ended before '{prefix}'"))
                .expect("utf-8");
            if let Some(rest) = line.trim().strip_prefix(prefix) {
                let addr = rest.trim().split('/').nth(2).expect("url host");
                return addr.parse().expect("address");
            }
        }
    };
    let public = find("subscribe:");
    let local = find("publish:");
    std::thread::spawn(move || lines.for_each(drop));
    (public, local)
}

/// Raises this process's open-file limit toward `want` (tests that open thousands of sockets).
pub fn raise_fd_limit(want: u64) {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let now = getrlimit(Resource::Nofile);
    let target = now.maximum.map_or(want, |max| want.min(max));
    if now.current.unwrap_or(u64::MAX) < target {
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(target),
                maximum: now.maximum,
            },
        );
    }
}
