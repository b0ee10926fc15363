//! Several tickwire nodes sharing one feed through Redis (`--redis URL`): a publication made on
//! any node reaches the subscribers of every node, with the same `seq` everywhere.
//!
//! - Publishing on a node (local API, streaming publisher, [`crate::Publisher`], `tw_publish`)
//!   runs one Lua script in Redis per publication (or per batch, all or nothing) that assigns
//!   the topic's next seq, stores the publication as the topic's last value and publishes it on
//!   the topic's channel, atomically. The publisher is answered once the script ran, with its
//!   seq: a Rust or C caller's thread blocks for it ([`Upstream::publish`]); a worker thread
//!   never does ([`Upstream::submit`]): it hands the publication over, serves its other
//!   connections, and answers its client when the answer comes back as an event.
//! - Every node pattern-subscribes to the feed's channels and feeds what arrives into its own
//!   publish queues with the seq Redis gave it, dropping what is not newer than what it has. So
//!   every node delivers the same messages with the same seqs in the same per-topic order, and a
//!   node delivers its own publications the same way as everyone else's: when they come back.
//! - Last values live in a Redis hash, reloaded at every (re)connection, so a node that starts
//!   late (or comes back) serves current snapshots.
//! - While Redis is out of reach the node keeps serving its subscribers, answers `/healthz` with
//!   503 and the reason, refuses publications ([`PublishError::Unavailable`]), and reconnects
//!   with backoff; everything is counted in `/metrics` (`tickwire_redis_*`). A Redis that hangs
//!   is out of reach once a command or the subscription's ping goes unanswered for 2 s: what was
//!   in flight is refused then (it may or may not have been published; nothing is retried), and
//!   in any case after the answer timeout (`Config::redis_answer_timeout`).
//!
//! Threads: [`subscriber`] owns the link (connect, subscribe, reload, listen, reconnect);
//! [`writer`] sends publications, pipelined. [`link`] is their shared state, [`wire`] the
//! format of what is kept in Redis.

mod link;
mod subscriber;
mod wire;
mod writer;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use parking_lot::Mutex;
use redis::Value;

use crate::broker::hub::Hub;
use crate::broker::publisher::{Done, PublishError, Upstream};
use crate::config::redact_url;
use link::Link;
use wire::Keys;
use writer::{Reply, Request};

/// Publications waiting for the writer, at most.
const WRITER_QUEUE: usize = 65536;
/// How long stopping waits for this node's last publications to come back from Redis.
const BARRIER_TIMEOUT: Duration = Duration::from_secs(1);

/// A node's connection to the shared feed; the hub's [`Upstream`].
pub(crate) struct Redis {
    client: redis::Client,
    url: String,
    keys: Keys,
    publish_sha: String,
    link: Arc<Link>,
    node_id: u64,
    /// How long a publication's answer may take (`Config::redis_answer_timeout`): a thread
    /// blocked in [`Upstream::publish`] gives up then, and a worker answers its client then
    /// (see `broker::pending`) without ever having waited.
    answer_timeout: Duration,
    requests: Sender<Request>,
    /// Taken by [`Redis::start`].
    writer_rx: Mutex<Option<Receiver<Request>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis")
            .field("url", &self.url)
            .field("keys", &self.keys)
            .field("link", &self.link)
            .finish_non_exhaustive()
    }
}

impl Redis {
    /// Checks the URL; connects nothing yet.
    pub fn new(url: &str, prefix: &str, answer_timeout: Duration) -> Result<Arc<Redis>, String> {
        let shown = redact_url(url);
        let client = redis::Client::open(url).map_err(|e| format!("redis URL '{shown}': {e}"))?;
        let (requests, writer_rx) = crossbeam_channel::bounded(WRITER_QUEUE);
        Ok(Arc::new(Redis {
            client,
            keys: Keys::new(prefix),
            publish_sha: wire::script_sha(wire::PUBLISH_SCRIPT),
            link: Arc::new(Link::new(format!("redis: not connected yet to {shown}"))),
            url: shown,
            node_id: fastrand::u64(1..),
            answer_timeout,
            requests,
            writer_rx: Mutex::new(Some(writer_rx)),
            threads: Mutex::new(Vec::new()),
        }))
    }

    /// Starts the subscriber and writer threads, which deliver into `hub`.
    pub fn start(&self, hub: Arc<Hub>) -> std::io::Result<()> {
        let Some(writer_rx) = self.writer_rx.lock().take() else {
            return Ok(());
        };
        let ctx = subscriber::Context {
            client: self.client.clone(),
            url: self.url.clone(),
            keys: self.keys.clone(),
            link: self.link.clone(),
            hub,
            node_id: self.node_id,
        };
        let link = self.link.clone();
        let mut threads = self.threads.lock();
        threads.push(
            std::thread::Builder::new()
                .name("tickwire-redis-writer".into())
                .spawn(move || writer::run(link, writer_rx))?,
        );
        threads.push(
            std::thread::Builder::new()
                .name("tickwire-redis-subscriber".into())
                .spawn(move || subscriber::run(ctx))?,
        );
        Ok(())
    }

    /// Waits until the link is up, at most `limit`; whether it is.
    pub fn wait_up(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while !self.link.is_up() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        self.link.is_up()
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Queues a packed command for the writer and blocks the calling thread until its reply
    /// comes, at most the answer timeout. Never called on a worker thread: workers use
    /// [`Upstream::submit`].
    fn call(&self, cmd: Vec<u8>) -> Result<Value, PublishError> {
        let (reply, answer) = crossbeam_channel::bounded(1);
        self.queue(cmd, Reply::Wait(reply))?;
        let timeout = self.answer_timeout;
        match answer.recv_timeout(timeout) {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(reason)) => Err(refuse(&self.link, reason)),
            Err(_) => Err(refuse(
                &self.link,
                format!(
                    "redis: no answer within {timeout:?} (the publication may or may not have \
                     reached Redis)"
                ),
            )),
        }
    }

    /// Hands a packed command to the writer; on `Err` the reply will never come.
    fn queue(&self, cmd: Vec<u8>, reply: Reply) -> Result<(), PublishError> {
        match self.requests.try_send(Request { cmd, reply }) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(PublishError::QueueFull),
            Err(TrySendError::Disconnected(_)) => Err(refuse(
                &self.link,
                "redis: the writer has stopped".to_owned(),
            )),
        }
    }

    /// `EVALSHA` of the publish script for `items`, packed.
    fn publish_command(&self, items: &[(&str, &[u8])]) -> Vec<u8> {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(&self.publish_sha)
            .arg(2)
            .arg(&self.keys.seq)
            .arg(&self.keys.last)
            .arg(&self.keys.channel_prefix);
        for (topic, payload) in items {
            cmd.arg(*topic).arg(*payload);
        }
        cmd.get_packed_command()
    }
}

/// Counts a publication refused because of Redis.
fn refuse(link: &Link, reason: String) -> PublishError {
    link.counters.publish_errors.fetch_add(1, Ordering::Relaxed);
    PublishError::Unavailable(reason)
}

impl Upstream for Redis {
    fn publish(&self, items: &[(&str, &[u8])]) -> Result<Vec<u64>, PublishError> {
        if let Err(reason) = self.link.health() {
            return Err(refuse(&self.link, reason));
        }
        let reply = self.call(self.publish_command(items))?;
        seqs(reply, items.len()).map_err(|reason| refuse(&self.link, reason))
    }

    fn submit(&self, items: &[(&str, &[u8])], done: Done) -> Result<(), PublishError> {
        if let Err(reason) = self.link.health() {
            return Err(refuse(&self.link, reason));
        }
        let link = self.link.clone();
        let expected = items.len();
        let then = move |answer: Result<Value, String>| {
            let seqs = answer
                .and_then(|reply| seqs(reply, expected))
                .map_err(|reason| refuse(&link, reason));
            done(seqs);
        };
        self.queue(self.publish_command(items), Reply::Then(Box::new(then)))
    }

    fn answer_timeout(&self) -> Duration {
        self.answer_timeout
    }

    fn health(&self) -> Result<(), String> {
        self.link.health()
    }

    fn render_metrics(&self, out: &mut String) {
        self.link.render(out);
    }

    /// Publishes a barrier on the feed and waits (briefly) for it to come back: Redis delivers
    /// in order, so by then every publication this node had accepted is in the local queues,
    /// to be delivered before the workers close with 1001. Then stops the threads.
    fn stop(&self) {
        if self.link.stop.load(Ordering::Acquire) {
            return;
        }
        if self.link.is_up() {
            let cmd = redis::cmd("PUBLISH")
                .arg(&self.keys.barrier)
                .arg(self.node_id)
                .get_packed_command();
            if self.call(cmd).is_ok() {
                let deadline = Instant::now() + BARRIER_TIMEOUT;
                while !self.link.barrier_seen.load(Ordering::Acquire)
                    && self.link.is_up()
                    && Instant::now() < deadline
                {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
        self.link.stop.store(true, Ordering::Release);
        for t in self.threads.lock().drain(..) {
            let _ = t.join();
        }
        log::info!("redis: disconnected from {}", self.url);
    }
}

/// The seqs in the publish script's reply, one per publication.
fn seqs(reply: Value, expected: usize) -> Result<Vec<u64>, String> {
    let items = match reply {
        Value::Array(items) => items,
        Value::ServerError(e) => {
            return Err(format!(
                "redis refused the publication: {} {}",
                e.code(),
                e.details().unwrap_or("")
            ))
        }
        other => {
            return Err(format!(
                "redis: unexpected reply to the publish script: {other:?}"
            ))
        }
    };
    if items.len() != expected {
        return Err(format!(
            "redis: the publish script returned {} seqs for {expected} publications",
            items.len()
        ));
    }
    items
        .into_iter()
        .map(|v| match v {
            Value::Int(n) if n >= 1 => Ok(n as u64),
            other => Err(format!(
                "redis: a seq that is not a positive integer: {other:?}"
            )),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_reply_is_read_strictly() {
        let ok = Value::Array(vec![Value::Int(7), Value::Int(8)]);
        assert_eq!(seqs(ok.clone(), 2), Ok(vec![7, 8]));
        assert!(seqs(ok, 3).unwrap_err().contains("2 seqs for 3"));
        assert!(seqs(Value::Array(vec![Value::Int(0)]), 1)
            .unwrap_err()
            .contains("positive"));
        assert!(seqs(Value::Okay, 1).unwrap_err().contains("unexpected"));
        let oom = redis::parse_redis_value(
            b"-OOM command not allowed when used memory > 'maxmemory'\r\n",
        )
        .expect("an error reply parses as a value");
        assert!(seqs(oom, 1)
            .unwrap_err()
            .starts_with("redis refused the publication: OOM"));
    }

    #[test]
    fn a_bad_url_is_refused_with_the_password_hidden() {
        let err =
            Redis::new("http://:secret@host", "tickwire", Duration::from_secs(5)).unwrap_err();
        assert!(err.contains("redis URL"), "{err}");
        assert!(!err.contains("secret"), "{err}");
    }
}
