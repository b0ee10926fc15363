//! The state of a node's link to Redis, shared by its two threads and its publishers: up or down
//! (and why), the command connection the writer uses, the retry backoff, and the counters behind
//! `tickwire_redis_*` in `/metrics`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

/// First wait before reconnecting; it doubles on each failure up to [`BACKOFF_MAX`].
pub const BACKOFF_MIN: Duration = Duration::from_millis(100);
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);

#[derive(Debug, Default)]
pub struct Counters {
    /// Up to down.
    pub disconnects: AtomicU64,
    /// Down to up again (not the first connection).
    pub reconnects: AtomicU64,
    /// Attempts to connect (or to resubscribe and reload) that failed.
    pub connect_failures: AtomicU64,
    /// Publications refused because of Redis (down, or it answered an error).
    pub publish_errors: AtomicU64,
    /// Messages received on the feed's channels.
    pub received: AtomicU64,
    /// Received or reloaded publications dropped as not newer than the topic's last here.
    pub stale: AtomicU64,
    /// Messages that were not a valid publication.
    pub bad_messages: AtomicU64,
    /// Last values read from Redis at (re)connection.
    pub reloaded: AtomicU64,
    /// Topics whose seq or last value in Redis this node raised at (re)connection.
    pub reconciled: AtomicU64,
}

/// Up or down, and why.
pub struct Link {
    up: AtomicBool,
    /// Why the link is down (meaningless while up).
    reason: Mutex<String>,
    /// Whether the link was ever up, to tell a reconnection from the first connection.
    was_up: AtomicBool,
    /// The last session was up until it ended (rather than never coming up): this node had
    /// every publication until then (see `subscriber::sync_epoch`).
    ended_up: AtomicBool,
    /// The writer found the command connection broken: the subscriber thread must start over.
    broken: AtomicBool,
    pub stop: AtomicBool,
    /// The command connection, made by the subscriber thread, used by the writer.
    pub conn: Mutex<Option<redis::Connection>>,
    /// This node's shutdown barrier came back on the subscription (see `Redis::stop`).
    pub barrier_seen: AtomicBool,
    pub counters: Counters,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("up", &self.is_up())
            .field("reason", &*self.reason.lock())
            .finish_non_exhaustive()
    }
}

impl Link {
    pub fn new(initial_reason: String) -> Link {
        Link {
            up: AtomicBool::new(false),
            reason: Mutex::new(initial_reason),
            was_up: AtomicBool::new(false),
            ended_up: AtomicBool::new(false),
            broken: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            conn: Mutex::new(None),
            barrier_seen: AtomicBool::new(false),
            counters: Counters::default(),
        }
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// `Err(reason)` while down.
    pub fn health(&self) -> Result<(), String> {
        if self.is_up() {
            Ok(())
        } else {
            Err(self.reason.lock().clone())
        }
    }

    pub fn set_ended_while_up(&self) {
        self.ended_up.store(true, Ordering::Release);
    }

    pub fn ended_while_up(&self) -> bool {
        self.ended_up.load(Ordering::Acquire)
    }

    /// Subscribed, reloaded, and the command connection installed: publishing may start.
    pub fn set_up(&self, what: &str) {
        self.broken.store(false, Ordering::Release);
        let again = self.was_up.swap(true, Ordering::AcqRel);
        if again {
            self.counters.reconnects.fetch_add(1, Ordering::Relaxed);
            log::info!("redis: connection is back ({what})");
        } else {
            log::info!("redis: connected ({what})");
        }
        self.up.store(true, Ordering::Release);
    }

    /// Something failed: refuse publications from now on and say why.
    pub fn set_down(&self, reason: String) {
        *self.reason.lock() = reason.clone();
        if self.up.swap(false, Ordering::AcqRel) {
            self.counters.disconnects.fetch_add(1, Ordering::Relaxed);
            log::warn!(
                "{reason}: refusing publications until the connection is back, retrying from \
                 {BACKOFF_MIN:?} up to every {BACKOFF_MAX:?}"
            );
        }
    }

    /// The node is stopping: down, quietly.
    pub fn set_stopped(&self) {
        *self.reason.lock() = "redis: the node is stopping".to_owned();
        self.up.store(false, Ordering::Release);
    }

    /// A connection attempt failed; `next` is the wait before the next one.
    pub fn attempt_failed(&self, reason: String, next: Duration) {
        let n = self
            .counters
            .connect_failures
            .fetch_add(1, Ordering::Relaxed)
            + 1;
        log::warn!("{reason} (attempt {n} failed; next in {next:?})");
        self.set_down(reason);
    }

    /// The writer's connection failed: go down now and have the subscriber thread reconnect.
    pub fn break_command_connection(&self, reason: String) {
        self.set_down(reason);
        self.broken.store(true, Ordering::Release);
    }

    pub fn take_broken(&self) -> bool {
        self.broken.swap(false, Ordering::AcqRel)
    }

    /// Appends the `tickwire_redis_*` metrics.
    pub fn render(&self, out: &mut String) {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let metrics: [(&str, &str, &str, u64); 10] = [
            (
                "redis_up",
                "gauge",
                "1 while connected to Redis, subscribed and reloaded; 0 while publishing is refused.",
                u64::from(self.is_up()),
            ),
            (
                "redis_disconnects_total",
                "counter",
                "Times the Redis link went down.",
                get(&c.disconnects),
            ),
            (
                "redis_reconnects_total",
                "counter",
                "Times the Redis link came back after going down.",
                get(&c.reconnects),
            ),
            (
                "redis_connect_failures_total",
                "counter",
                "Failed attempts to connect, resubscribe or reload (each retry).",
                get(&c.connect_failures),
            ),
            (
                "redis_publish_errors_total",
                "counter",
                "Publications refused because Redis was down or answered an error.",
                get(&c.publish_errors),
            ),
            (
                "redis_received_total",
                "counter",
                "Messages received on the feed's Redis channels.",
                get(&c.received),
            ),
            (
                "redis_stale_total",
                "counter",
                "Publications from Redis dropped as not newer than the topic's last (duplicates).",
                get(&c.stale),
            ),
            (
                "redis_bad_messages_total",
                "counter",
                "Messages on the feed's channels that were not valid publications.",
                get(&c.bad_messages),
            ),
            (
                "redis_reloaded_total",
                "counter",
                "Last values read from Redis on (re)connection.",
                get(&c.reloaded),
            ),
            (
                "redis_reconciled_total",
                "counter",
                "Topics whose seq in Redis this node raised on (re)connection (Redis had lost them).",
                get(&c.reconciled),
            ),
        ];
        for (name, kind, help, value) in metrics {
            let _ = writeln!(
                out,
                "# HELP tickwire_{name} {help}\n# TYPE tickwire_{name} {kind}\ntickwire_{name} {value}"
            );
        }
    }
}

/// The wait before each reconnection attempt: [`BACKOFF_MIN`], doubling up to [`BACKOFF_MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { next: BACKOFF_MIN }
    }
}

impl Backoff {
    /// The wait to use now; the next one is twice as long, up to the cap.
    pub fn step(&mut self) -> Duration {
        let now = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        now
    }

    pub fn reset(&mut self) {
        self.next = BACKOFF_MIN;
    }
}

/// A Redis error as an operator reads it: `redis: connection refused`.
pub fn describe(e: &redis::RedisError) -> String {
    let what = if e.is_connection_refusal() {
        "connection refused".to_owned()
    } else if e.is_timeout() {
        "no answer in time".to_owned()
    } else if e.is_connection_dropped() {
        "connection lost".to_owned()
    } else {
        e.to_string()
    };
    format!("redis: {what}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_and_resets() {
        let mut b = Backoff::default();
        let waits: Vec<u64> = (0..9).map(|_| b.step().as_millis() as u64).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
        b.reset();
        assert_eq!(b.step(), BACKOFF_MIN);
    }

    #[test]
    fn going_down_and_up_is_counted() {
        let link = Link::new("redis: not connected yet".to_owned());
        assert_eq!(link.health(), Err("redis: not connected yet".to_owned()));
        link.set_up("first");
        assert_eq!(link.health(), Ok(()));
        link.break_command_connection("redis: connection reset".to_owned());
        assert_eq!(link.health(), Err("redis: connection reset".to_owned()));
        assert!(link.take_broken());
        assert!(!link.take_broken());
        link.attempt_failed("redis: connection refused".to_owned(), BACKOFF_MIN);
        link.set_up("again");
        let c = &link.counters;
        assert_eq!(c.disconnects.load(Ordering::Relaxed), 1);
        assert_eq!(c.reconnects.load(Ordering::Relaxed), 1);
        assert_eq!(c.connect_failures.load(Ordering::Relaxed), 1);
        let mut text = String::new();
        link.render(&mut text);
        assert!(text.contains("\ntickwire_redis_up 1\n"), "{text}");
        assert!(
            text.contains("\ntickwire_redis_reconnects_total 1\n"),
            "{text}"
        );
    }

    #[test]
    fn errors_read_like_an_operator_expects() {
        let refused =
            redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(describe(&refused), "redis: connection refused");
    }
}
