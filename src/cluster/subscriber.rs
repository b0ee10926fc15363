//! The subscriber thread: owns the link's life. It connects, pattern-subscribes to the feed,
//! gives Redis back what it lost (see [`wire::RECONCILE_SCRIPT`]), reloads the last values, then
//! declares the link up and feeds every message into the local publish queues, in Redis's
//! order. When anything fails it declares the link down, waits (100 ms doubling to 5 s), and
//! starts over.
//!
//! Subscribing comes before reloading so that nothing published in between is missed: what
//! arrives twice (in the reload and on the channel) is dropped by its seq.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::link::{describe, Backoff, Link};
use super::wire::{self, Keys};
use crate::broker::hub::{Hub, Sequenced};

/// Time to open a TCP connection to Redis.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Time Redis has to answer a command.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// How often a waiting reader looks whether it should stop or start over.
const TICK: Duration = Duration::from_millis(100);
/// Silence on the subscription after which Redis is pinged, so a Redis that hangs is noticed
/// by a node that does not publish.
const PING_AFTER: Duration = Duration::from_secs(1);
/// Topics per reconcile call, and last values per reload step.
const CHUNK: usize = 500;

/// What the thread needs.
pub struct Context {
    pub client: redis::Client,
    /// The URL without its password, for logs.
    pub url: String,
    pub keys: Keys,
    pub link: Arc<Link>,
    pub hub: Arc<Hub>,
    /// This node's barrier token (see `Redis::stop`).
    pub node_id: u64,
}

pub fn run(ctx: Context) {
    let mut backoff = Backoff::default();
    while !ctx.link.stopping() {
        match session(&ctx, &mut backoff) {
            Ok(_) if ctx.link.stopping() => break,
            Ok(why_it_ended) => {
                ctx.link.set_down(why_it_ended);
                ctx.link.set_ended_while_up();
                *ctx.link.conn.lock() = None;
                pause(&ctx.link, backoff.step());
            }
            Err(why_it_failed) => {
                *ctx.link.conn.lock() = None;
                let wait = backoff.step();
                if !ctx.link.stopping() {
                    ctx.link.attempt_failed(why_it_failed, wait);
                }
                pause(&ctx.link, wait);
            }
        }
    }
    ctx.link.set_stopped();
    *ctx.link.conn.lock() = None;
}

/// Sleeps `wait`, or less if the node stops.
fn pause(link: &Link, wait: Duration) {
    let until = Instant::now() + wait;
    while !link.stopping() {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(TICK));
    }
}

/// One connection's life: `Err` if it never came up, else `Ok` with why it ended.
fn session(ctx: &Context, backoff: &mut Backoff) -> Result<String, String> {
    let mut cmd = connect(ctx)?;
    let sha: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(wire::PUBLISH_SCRIPT)
        .query(&mut cmd)
        .map_err(|e| describe(&e))?;
    if sha != wire::script_sha(wire::PUBLISH_SCRIPT) {
        return Err(format!(
            "redis: SCRIPT LOAD answered {sha}, not the script's SHA1 (is this Redis?)"
        ));
    }
    let mut sub = connect(ctx)?;
    let mut pubsub = sub.as_pubsub();
    pubsub
        .psubscribe(&ctx.keys.pattern)
        .map_err(|e| describe(&e))?;
    let raised = reconcile(ctx, &mut cmd)?;
    let epoch = sync_epoch(ctx, &mut cmd)?;
    let reloaded = reload(ctx, &mut cmd)?;
    pubsub
        .set_read_timeout(Some(TICK))
        .map_err(|e| describe(&e))?;
    *ctx.link.conn.lock() = Some(cmd);
    backoff.reset();
    ctx.link.set_up(&format!(
        "{}, subscribed to {}, {reloaded} last values reloaded, {raised} restored to Redis, \
         epoch {epoch}",
        ctx.url, ctx.keys.pattern
    ));
    Ok(listen(ctx, &mut pubsub))
}

/// The feed's epoch lives in Redis, so every node answers subscribers with the same one. A node
/// adopts the one Redis has. When Redis has none (a new feed, or Redis restarted without its
/// data), the first node to reconnect sets it: its own epoch if it can vouch that it had every
/// publication up to the loss (it has values, and it was connected until its link went down,
/// so after reconciling Redis's seqs are where they were), a new one otherwise (seqs may have
/// been lost, so clients must not trust their `since`). The window this cannot see: a
/// publication Redis ran but had not yet delivered to this node when it went away.
fn sync_epoch(ctx: &Context, cmd: &mut redis::Connection) -> Result<String, String> {
    let vouch = ctx.link.ended_while_up() && ctx.hub.cache.len() > 0;
    let candidate = if vouch {
        ctx.hub.epoch().to_string()
    } else {
        crate::broker::hub::new_epoch()
    };
    let _: Option<String> = redis::cmd("SET")
        .arg(&ctx.keys.epoch)
        .arg(&candidate)
        .arg("NX")
        .query(cmd)
        .map_err(|e| describe(&e))?;
    let epoch: Option<String> = redis::cmd("GET")
        .arg(&ctx.keys.epoch)
        .query(cmd)
        .map_err(|e| describe(&e))?;
    let epoch = epoch.unwrap_or(candidate);
    ctx.hub.set_epoch(&epoch);
    Ok(epoch)
}

fn connect(ctx: &Context) -> Result<redis::Connection, String> {
    let conn = ctx
        .client
        .get_connection_with_timeout(CONNECT_TIMEOUT)
        .map_err(|e| describe(&e))?;
    conn.set_read_timeout(Some(COMMAND_TIMEOUT))
        .and_then(|()| conn.set_write_timeout(Some(COMMAND_TIMEOUT)))
        .map_err(|e| describe(&e))?;
    Ok(conn)
}

/// Raises Redis's seqs and last values to this node's where Redis has less. Returns how many.
fn reconcile(ctx: &Context, conn: &mut redis::Connection) -> Result<u64, String> {
    let entries = ctx.hub.cache.all();
    let mut raised = 0;
    for chunk in entries.chunks(CHUNK) {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(wire::RECONCILE_SCRIPT)
            .arg(2)
            .arg(&ctx.keys.seq)
            .arg(&ctx.keys.last);
        for e in chunk {
            cmd.arg(&*e.topic)
                .arg(e.seq)
                .arg(wire::encode(&e.topic, e.seq, e.payload()));
        }
        let n: u64 = cmd.query(conn).map_err(|e| describe(&e))?;
        raised += n;
    }
    if raised > 0 {
        log::warn!(
            "redis: it had lost the seq of {raised} topic(s) (restarted without persistence?); \
             restored them from this node"
        );
        ctx.link
            .counters
            .reconciled
            .fetch_add(raised, Ordering::Relaxed);
    }
    Ok(raised)
}

/// Reads every last value from Redis into the local cache (and to subscribers, where newer).
fn reload(ctx: &Context, conn: &mut redis::Connection) -> Result<u64, String> {
    let mut cursor = 0u64;
    let mut n = 0;
    loop {
        let (next, flat): (u64, Vec<Vec<u8>>) = redis::cmd("HSCAN")
            .arg(&ctx.keys.last)
            .arg(cursor)
            .arg("COUNT")
            .arg(CHUNK)
            .query(conn)
            .map_err(|e| describe(&e))?;
        for pair in flat.chunks_exact(2) {
            let field = String::from_utf8_lossy(&pair[0]);
            accept(ctx, &field, &pair[1], "the last-value hash");
            n += 1;
        }
        if next == 0 || ctx.link.stopping() {
            break;
        }
        cursor = next;
    }
    ctx.link.counters.reloaded.fetch_add(n, Ordering::Relaxed);
    Ok(n)
}

/// Feeds messages into the local queues until the connection fails or the node stops; returns
/// why it ended.
fn listen(ctx: &Context, pubsub: &mut redis::PubSub<'_>) -> String {
    let mut heard = Instant::now();
    loop {
        if ctx.link.stopping() {
            return "redis: the node is stopping".to_owned();
        }
        if ctx.link.take_broken() {
            return ctx
                .link
                .health()
                .err()
                .unwrap_or_else(|| "redis: the command connection failed".to_owned());
        }
        match pubsub.get_message() {
            Ok(msg) => {
                heard = Instant::now();
                on_message(ctx, msg.get_channel_name(), msg.get_payload_bytes());
            }
            Err(e) if e.is_timeout() => {
                if heard.elapsed() >= PING_AFTER {
                    if let Err(e) = ping(pubsub) {
                        return describe(&e);
                    }
                    heard = Instant::now();
                }
            }
            Err(e) => return describe(&e),
        }
    }
}

fn ping(pubsub: &mut redis::PubSub<'_>) -> redis::RedisResult<()> {
    pubsub.set_read_timeout(Some(COMMAND_TIMEOUT))?;
    pubsub.ping::<()>()?;
    pubsub.set_read_timeout(Some(TICK))
}

fn on_message(ctx: &Context, channel: &str, payload: &[u8]) {
    ctx.link.counters.received.fetch_add(1, Ordering::Relaxed);
    if channel == ctx.keys.barrier {
        if std::str::from_utf8(payload)
            .ok()
            .and_then(|t| t.parse().ok())
            == Some(ctx.node_id)
        {
            ctx.link.barrier_seen.store(true, Ordering::Release);
        }
        return;
    }
    match ctx.keys.topic_of(channel) {
        Some(topic) => accept(ctx, topic, payload, "its channel"),
        // The pattern only matches our channels; count it rather than trust that.
        None => bad_message(ctx, channel, "not one of the feed's channels"),
    }
}

/// Checks one publication from Redis, expected to be on `topic`, and delivers it here.
fn accept(ctx: &Context, topic: &str, bytes: &[u8], from: &str) {
    let checked = wire::decode(bytes).and_then(|m| {
        if m.topic != topic {
            return Err(format!("its topic '{}' is not {from}'s '{topic}'", m.topic));
        }
        ctx.hub
            .check(m.topic, m.payload)
            .map_err(|e| e.to_string())?;
        Ok(m)
    });
    let m = match checked {
        Ok(m) => m,
        Err(e) => return bad_message(ctx, topic, &e),
    };
    loop {
        match ctx.hub.deliver_sequenced(m.topic, m.seq, m.payload) {
            Sequenced::Delivered => return,
            Sequenced::Stale => {
                ctx.link.counters.stale.fetch_add(1, Ordering::Relaxed);
                return;
            }
            // Subscribers here are behind: wait for room rather than drop it. Redis keeps what
            // arrives meanwhile (up to its pubsub output limit, past which it disconnects us
            // and the reload brings us up to date).
            Sequenced::NoRoom if ctx.link.stopping() => return,
            Sequenced::NoRoom => std::thread::sleep(Duration::from_millis(1)),
        }
    }
}

fn bad_message(ctx: &Context, channel: &str, why: &str) {
    let n = ctx
        .link
        .counters
        .bad_messages
        .fetch_add(1, Ordering::Relaxed)
        + 1;
    // Anyone who can write to Redis can flood us: log the first ones, then fewer and fewer.
    if n <= 10 || n.is_power_of_two() {
        log::warn!("redis: ignored a message on '{channel}' ({n} so far): {why}");
    }
}
