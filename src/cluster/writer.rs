//! The writer thread: carries publications to Redis, many per round trip.
//!
//! Publishers pack their script call on their own thread and queue it here: worker threads
//! (local API, streaming publishers) with a callback that hands the reply back to the worker,
//! without waiting; Rust and C callers with a channel they block on. This thread takes
//! everything waiting, sends it as one pipeline on the command connection, and hands each caller
//! the reply to its own call: a hundred publishers at once wait about one round trip, not a
//! hundred.
//!
//! Only this thread does I/O on the command connection while the link is up, holding its lock
//! meanwhile; publishers never take that lock. A Redis that does not answer within the command
//! timeout (2 s) fails the whole pipeline and takes the link down.

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use redis::{ConnectionLike, Value};

use super::link::{describe, Link};
use super::wire;

/// Requests sent in one pipeline at most, and about how many bytes.
const MAX_BATCH: usize = 1024;
const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;
/// How often an idle writer looks whether it should stop.
const TICK: Duration = Duration::from_millis(100);

/// One packed command and where its reply goes: the reply (which may be a Redis error), or why
/// there is none.
pub struct Request {
    pub cmd: Vec<u8>,
    pub reply: Reply,
}

/// Where a reply goes. Every request is answered exactly once.
pub enum Reply {
    /// To a caller blocked on the other end.
    Wait(Sender<Result<Value, String>>),
    /// To a callback, run on this thread: it must be quick (hand the answer on, wake someone).
    Then(Box<dyn FnOnce(Result<Value, String>) + Send>),
}

impl Reply {
    pub fn send(self, answer: Result<Value, String>) {
        match self {
            // The caller may have given up waiting; nobody is left to tell.
            Reply::Wait(tx) => drop(tx.send(answer)),
            Reply::Then(f) => f(answer),
        }
    }
}

pub fn run(link: Arc<Link>, requests: Receiver<Request>) {
    let mut batch = Vec::new();
    loop {
        match requests.recv_timeout(TICK) {
            Ok(r) => batch.push(r),
            Err(RecvTimeoutError::Timeout) if link.stopping() => break,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => break,
        }
        let mut bytes = batch[0].cmd.len();
        while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
            match requests.try_recv() {
                Ok(r) => {
                    bytes += r.cmd.len();
                    batch.push(r);
                }
                Err(_) => break,
            }
        }
        execute(&link, &mut batch);
    }
    for r in requests.try_iter() {
        r.reply.send(Err("redis: the node is stopping".to_owned()));
    }
}

/// Sends `batch` (emptied) as one pipeline and answers each request.
fn execute(link: &Link, batch: &mut Vec<Request>) {
    let mut slot = link.conn.lock();
    let conn = match slot.as_mut() {
        Some(conn) if link.is_up() => conn,
        _ => {
            let reason = link
                .health()
                .err()
                .unwrap_or_else(|| "redis: not connected".into());
            refuse_all(batch, &reason);
            return;
        }
    };
    let mut packed = Vec::with_capacity(batch.iter().map(|r| r.cmd.len()).sum());
    for r in batch.iter() {
        packed.extend_from_slice(&r.cmd);
    }
    let replies = match pipeline(conn, &packed, batch.len()) {
        Ok(replies) => replies,
        Err(e) => return fail(link, &mut slot, batch, describe(&e)),
    };
    // NOSCRIPT: someone flushed Redis's script cache (the script did not run). Load it again
    // and send those once more.
    let mut again = Vec::new();
    for (r, reply) in batch.drain(..).zip(replies) {
        if is_noscript(&reply) {
            again.push(r);
        } else {
            r.reply.send(Ok(reply));
        }
    }
    if again.is_empty() {
        return;
    }
    log::warn!("redis: the publish script was gone from Redis's cache; loading it again");
    if let Err(e) = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(wire::PUBLISH_SCRIPT)
        .query::<String>(conn)
    {
        return fail(link, &mut slot, &mut again, describe(&e));
    }
    for r in again {
        let reply = conn.req_packed_command(&r.cmd);
        match reply {
            Ok(v) => r.reply.send(Ok(v)),
            Err(e) => return fail(link, &mut slot, &mut vec![r], describe(&e)),
        }
    }
}

/// Writes `count` packed commands at once and reads their replies, giving up at the first
/// failure. (redis-rs's `req_packed_commands` reads on after a timed-out reply, waiting the
/// command timeout once more for every command left: a Redis that hangs would keep this thread,
/// and the command connection's lock, for `count` times 2 s.)
fn pipeline(
    conn: &mut redis::Connection,
    packed: &[u8],
    count: usize,
) -> redis::RedisResult<Vec<Value>> {
    conn.send_packed_command(packed)?;
    let mut replies = Vec::with_capacity(count);
    while replies.len() < count {
        match conn.recv_response()? {
            // Out-of-band data (RESP3 only; this connection speaks RESP2): not a reply.
            Value::Push { .. } => continue,
            reply => replies.push(reply),
        }
    }
    Ok(replies)
}

fn is_noscript(v: &Value) -> bool {
    matches!(v, Value::ServerError(e) if e.code() == "NOSCRIPT")
}

/// The command connection failed mid-pipeline: drop it, take the link down, and tell each
/// caller that its publication's fate is unknown (Redis may have run it before the failure).
fn fail(
    link: &Link,
    slot: &mut Option<redis::Connection>,
    batch: &mut Vec<Request>,
    reason: String,
) {
    *slot = None;
    link.break_command_connection(reason.clone());
    refuse_all(
        batch,
        &format!("{reason} (while publishing: the publication may or may not have reached Redis)"),
    );
}

fn refuse_all(batch: &mut Vec<Request>, reason: &str) {
    for r in batch.drain(..) {
        r.reply.send(Err(reason.to_owned()));
    }
}
