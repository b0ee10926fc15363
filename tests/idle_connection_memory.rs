//! An idle subscriber costs the broker a bounded, small amount of memory (issue 16): the
//! `tickwire` binary as a child process holds a few thousand subscribed, silent WebSocket
//! connections, and its resident memory per connection, read from /proc, stays under a bound.
//!
//! What is measured is what S4 in `benches/fanout.rs` measures (the connections are the same:
//! `GET /ws?subscribe=topic`, then nothing), at a smaller count. BENCHMARKS.md, "Memory per idle
//! connection (issue 16)", has where each byte goes.

mod util;
use util::broker as b;
use util::child::Tickwire;

use std::net::TcpStream;
use std::time::Duration;

/// Connections opened before the first reading, so that what every process pays once (the
/// worker's first slab, index and allocator arenas) is not counted per connection.
const WARM_UP: usize = 500;
/// Connections measured; fewer if the open-file limit does not allow them.
const MEASURED: usize = 4_000;

/// The bound, in bytes of RSS per idle connection. Measured here: 356-372 B (debug build; the
/// struct layouts and allocations are those of a release build). This smaller count shows a
/// little more than S4 at 19,500 connections: the worker's slab and the broker's per-connection
/// vectors grow by doubling, and the copies they leave behind may stay resident. 448 B leaves a
/// fifth of margin over the highest reading seen, and fails the broker as it was before issue
/// 16 (620 B in this test, 636 B in S4), an outbound ring kept by every idle connection (+112 B:
/// 470-480 B here), any larger buffer (a read buffer, a TLS record buffer), and a connection
/// struct or subscriber grown back by 80 bytes. RSS is counted in pages by the kernel, and
/// nothing here waits for anything but answers, so the reading does not depend on timing.
const MAX_BYTES_PER_CONNECTION: u64 = 448;

/// Opens `n` subscribed WebSocket connections that then say nothing.
fn open_idle(t: &Tickwire, n: usize, into: &mut Vec<TcpStream>) {
    for _ in 0..n {
        into.push(util::raw_websocket(t.public, "/ws?subscribe=idle/quotes"));
    }
}

#[test]
fn an_idle_subscriber_costs_the_broker_a_bounded_amount_of_memory() {
    // Every connection is one descriptor here and one in the broker.
    util::child::raise_fd_limit((WARM_UP + MEASURED + 512) as u64);
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(u64::MAX);
    let measured = MEASURED.min((limit as usize).saturating_sub(WARM_UP + 256));
    assert!(
        measured >= 1_000,
        "open-file limit {limit} too low to measure memory per connection"
    );

    // One worker, as in S4; the defaults otherwise (no pings for 30 s: nothing to read).
    let t = Tickwire::start("idle-memory", &["--workers", "1", "--log-level", "warn"]);
    let mut conns = Vec::with_capacity(WARM_UP + measured);
    open_idle(&t, WARM_UP, &mut conns);
    let before = t.rss_kib();
    open_idle(&t, measured, &mut conns);
    // Each upgrade was answered, so each connection is in the broker; the metrics request is
    // one more.
    b::eventually(Duration::from_secs(30), "every connection counted", || {
        b::metric_at(t.local, "tickwire_connections") > (WARM_UP + measured) as u64
    });
    // Read at once, as S4 does: an idle connection's outbound ring (the smallest, after the
    // handshake answer and the `subscribed` acknowledgement) was given back when it emptied.
    let after = t.rss_kib();
    let per_connection = after.saturating_sub(before) * 1024 / measured as u64;
    eprintln!(
        "{measured} idle connections: RSS {before} KiB -> {after} KiB, {per_connection} B each"
    );
    assert!(
        per_connection <= MAX_BYTES_PER_CONNECTION,
        "an idle connection costs {per_connection} B of RSS, over the bound of \
         {MAX_BYTES_PER_CONNECTION} B ({measured} connections: {before} KiB -> {after} KiB)"
    );
    // Everything this test started goes with it: the sockets here, then the broker (Drop).
    drop(conns);
}
