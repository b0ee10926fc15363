//! The engine's counters: kept with relaxed atomics by the workers, read from any thread.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::Shared;

/// Counters kept by the engine, for metrics.
#[derive(Debug, Default)]
pub(crate) struct EngineCounters {
    pub connections_accepted: AtomicU64,
    pub connections_refused: AtomicU64,
    pub handshake_errors: AtomicU64,
    pub handshake_timeouts: AtomicU64,
    pub http_requests: AtomicU64,
    pub protocol_errors: AtomicU64,
    pub slow_consumers_closed: AtomicU64,
    pub pong_timeouts: AtomicU64,
    pub frames_conflated: AtomicU64,
    pub abuse_closed: AtomicU64,
    pub tls_errors: AtomicU64,
    pub writes_deferred: AtomicU64,
}

impl EngineCounters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// A snapshot of the engine's counters (all since start).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct EngineStats {
    /// Connections open right now.
    pub connections: usize,
    pub connections_accepted: u64,
    /// Refused because the listener's connection limit was reached.
    pub connections_refused: u64,
    /// Requests the engine refused: malformed heads, bad upgrades, bodies it would not read
    /// (400, 405, 411, 413, 426, 431). Not the application's own error answers.
    pub handshake_errors: u64,
    /// Requests not received within the handshake timeout (408).
    pub handshake_timeouts: u64,
    /// HTTP requests handed to the application (not upgrades).
    pub http_requests: u64,
    /// Connections failed for breaking RFC 6455 (1002, 1007, 1009).
    pub protocol_errors: u64,
    /// Closed with 1008 for not reading their output.
    pub slow_consumers_closed: u64,
    /// Dropped for not answering pings.
    pub pong_timeouts: u64,
    /// Keyed frames replaced by a newer one before they were written.
    pub frames_conflated: u64,
    /// Closed with 1008 for flooding (pings, requests).
    pub abuse_closed: u64,
    /// TLS connections ended by a TLS error: not TLS at all, a failed handshake (an old
    /// protocol version, no shared cipher), a bad record.
    pub tls_errors: u64,
    /// Connection writes left for the next turn because the end-of-turn flush had used its
    /// time budget (the worker had more to write than it writes in one slice: it is loaded).
    pub writes_deferred: u64,
}

/// Reads the engine's counters; cheap to clone, usable from any thread.
#[derive(Debug, Clone)]
pub struct StatsSource(pub(crate) Arc<Shared>);

impl StatsSource {
    pub fn stats(&self) -> EngineStats {
        let c = &self.0.stats;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        EngineStats {
            connections: self.0.open_connections(),
            connections_accepted: get(&c.connections_accepted),
            connections_refused: get(&c.connections_refused),
            handshake_errors: get(&c.handshake_errors),
            handshake_timeouts: get(&c.handshake_timeouts),
            http_requests: get(&c.http_requests),
            protocol_errors: get(&c.protocol_errors),
            slow_consumers_closed: get(&c.slow_consumers_closed),
            pong_timeouts: get(&c.pong_timeouts),
            frames_conflated: get(&c.frames_conflated),
            abuse_closed: get(&c.abuse_closed),
            tls_errors: get(&c.tls_errors),
            writes_deferred: get(&c.writes_deferred),
        }
    }
}
