//! What the benchmark programs share about the processes they measure: CPU time and RSS read
//! from `/proc`, and pinning a process to one core with `taskset` (so the server and the load
//! generator each have a core of their own). Only Linux is measured.

#![allow(dead_code)] // each benchmark uses a different part

use std::process::{Command, Stdio};

/// utime + stime of a process in seconds, and its RSS in KiB (0 and 0 once it is gone).
pub fn proc_usage(pid: u32) -> (f64, u64) {
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

/// utime + stime of a process, in seconds.
pub fn proc_cpu(pid: u32) -> f64 {
    proc_usage(pid).0
}

pub fn have_taskset() -> bool {
    Command::new("taskset").arg("-V").output().is_ok()
}

/// Pins a child process to one core (with `taskset`, when present).
pub fn pin(cmd: &mut Command, core: usize) {
    if have_taskset() {
        let program = cmd.get_program().to_owned();
        let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
        *cmd = Command::new("taskset");
        cmd.arg("-c").arg(core.to_string()).arg(program).args(args);
    }
}

/// Pins this process to one core; threads (and children) started later inherit it.
pub fn pin_self(core: usize) {
    if have_taskset() {
        let pid = std::process::id().to_string();
        let _ = Command::new("taskset")
            .args(["-p", "-c", &core.to_string(), &pid])
            .stdout(Stdio::null())
            .status();
    }
}

/// Whether `name` (`--quick`) is among the arguments.
pub fn flag(args: &[String], name: &str) -> bool {
    args.iter().any(|a| a == name)
}

/// The argument after `name` (`--only S1`), if any.
pub fn value(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

/// `cargo test --all-targets` runs bench binaries without `--bench`: a load run is not a test,
/// so this says how to run the benchmark and returns false.
pub fn is_bench_run(args: &[String], bench: &str) -> bool {
    if flag(args, "--bench") {
        return true;
    }
    println!("{bench}: a benchmark; run it with `cargo bench --bench {bench} -- --quick`");
    false
}
