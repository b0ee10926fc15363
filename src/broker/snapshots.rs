//! What a subscribe owes the subscriber before live updates: for each topic it can recover
//! (`since` + `epoch`), the publications it missed, replayed in order; for every other topic
//! its patterns match, the last value (a snapshot). Each once.
//!
//! Replays are decided and captured when the request is served (the frames are shared, so this
//! costs pointers), which is what the `recovered` list of the ack promises. Snapshots are looked
//! up when they are sent. Both go out a slice per loop turn ([`SNAPSHOTS_PER_TURN`] messages on
//! a worker, round-robin over the subscribers owed some), so a large subscribe never holds up
//! the worker's other connections. A live update of a topic whose snapshot is still owed makes
//! the snapshot unnecessary; one whose replay is still owed sends the replay first.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::cache::Sent;
use super::delivery::Deflated;
use super::subscriber::Subscriber;
use super::tree::Budget;
use super::{topic, BrokerWorker};
use crate::server::{ConnId, Outbox};

/// Messages (snapshots and replayed ones) a worker sends per loop turn, over all subscribers.
pub(crate) const SNAPSHOTS_PER_TURN: usize = 128;

/// What a subscriber is owed and has not been sent yet.
#[derive(Debug, Default)]
pub(crate) struct Backlog {
    /// (topic id, topic, `patterns_changed` when it was owed), in order.
    queue: VecDeque<(u64, Arc<str>, u64)>,
    /// The ids in `queue` still owed: `None` a snapshot, `Some` the publications of a replay.
    owed: HashMap<u64, Option<Vec<Sent>>>,
}

impl Backlog {
    fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// A live update of topic `id` is about to go out: a snapshot owed for it is no longer
    /// needed; a replay owed for it must go first. Returns the replay's frames, if any.
    pub fn overtaken(&mut self, id: u64) -> Option<Vec<Sent>> {
        self.owed.remove(&id).flatten()
    }
}

impl BrokerWorker {
    /// Decides, for each topic in `since` that the request's patterns match, whether it can be
    /// recovered; owes the replays of those that can. Returns them, for the ack.
    pub(super) fn owe_replays(
        &mut self,
        conn: ConnId,
        patterns: &[String],
        since: Vec<(String, u64)>,
        same_epoch: bool,
    ) -> Vec<String> {
        let hub = self.shared.hub.clone();
        let mut recovered = Vec::new();
        let mut owed = Vec::new();
        for (name, after) in since {
            let wanted = topic::validate_topic(&name).is_ok()
                && patterns.iter().any(|p| topic::matches(p, &name));
            if !wanted {
                continue;
            }
            if !same_epoch {
                hub.metrics.not_recovered(super::cache::NotRecovered::Epoch);
                continue;
            }
            match hub.cache.replay_after(&name, after) {
                Ok(replay) => {
                    let name: Arc<str> = name.as_str().into();
                    owed.push((replay.id, name.clone(), replay.latest, replay.sent));
                    recovered.push(name.to_string());
                }
                Err(why) => hub.metrics.not_recovered(why),
            }
        }
        hub.metrics
            .recovered
            .fetch_add(recovered.len() as u64, Ordering::Relaxed);
        let Some(sub) = self.subscriber(conn) else {
            return recovered;
        };
        let generation = sub.patterns_changed;
        for (id, name, latest, frames) in owed {
            // Live updates up to `latest` are in the replay (or were had already).
            sub.set_floor(id, latest);
            let backlog = sub
                .extra
                .or_default()
                .backlog
                .get_or_insert_with(Default::default);
            if backlog.owed.insert(id, Some(frames)).is_none() {
                backlog.queue.push_back((id, name, generation));
            }
        }
        recovered
    }

    /// Owes the last value of every topic the patterns match that is not owed already: every
    /// exact topic's, and for the wildcards together at most `max_snapshot_topics`, found
    /// within one walk budget. Sends what this turn's share allows.
    pub(super) fn owe_snapshots(
        &mut self,
        conn: ConnId,
        patterns: &[String],
        out: &mut Outbox<'_>,
    ) {
        let hub = self.shared.hub.clone();
        let mut budget = Budget::for_matches(self.shared.config.max_snapshot_topics);
        let mut topics: Vec<(Arc<str>, u64)> = Vec::new();
        for p in patterns {
            if !topic::is_wildcard(p) {
                if let Some(id) = hub.cache.id_of(p) {
                    topics.push((p.as_str().into(), id));
                }
            } else if budget.matches > 0 && budget.visits > 0 {
                let walked = hub.cache.matching(p, budget, |named| {
                    topics.push(named.clone());
                    true
                });
                budget.matches -= walked.given;
                budget.visits = budget.visits.saturating_sub(walked.visited);
            }
        }
        let Some(sub) = self.subscriber(conn) else {
            return;
        };
        let generation = sub.patterns_changed;
        let backlog = sub
            .extra
            .or_default()
            .backlog
            .get_or_insert_with(Default::default);
        for (name, id) in topics {
            if let std::collections::hash_map::Entry::Vacant(slot) = backlog.owed.entry(id) {
                slot.insert(None);
                backlog.queue.push_back((id, name, generation));
            }
        }
        if backlog.is_empty() {
            sub.extra.end_backlog();
            return;
        }
        if !self.snapshot_turns.contains(&conn) {
            self.snapshot_turns.push_back(conn);
        }
        self.send_owed(out);
    }

    /// Sends what subscribers are owed, round-robin, until this turn's share is spent.
    pub(super) fn send_owed(&mut self, out: &mut Outbox<'_>) {
        let hub = self.shared.hub.clone();
        let min = self.shared.config.compress_min;
        let mut left = SNAPSHOTS_PER_TURN.saturating_sub(self.snapshots_this_turn);
        let (mut snapshots, mut replayed) = (0, 0);
        while left > 0 {
            let Some(conn) = self.snapshot_turns.pop_front() else {
                break;
            };
            let Some(sub) = self.subscriber(conn) else {
                continue;
            };
            // A slice per subscriber per round, so one large subscribe does not starve others.
            let slice = left.min(64);
            let mut done = 0;
            while done < slice {
                let Some(backlog) = sub.extra.backlog_mut() else {
                    break;
                };
                let Some((id, name, generation)) = backlog.queue.pop_front() else {
                    break;
                };
                let Some(owed) = backlog.owed.remove(&id) else {
                    continue; // a live update came first
                };
                if generation != sub.patterns_changed
                    && !sub.patterns.iter().any(|p| topic::matches(p, &name))
                {
                    continue; // unsubscribed since
                }
                match owed {
                    Some(replay) => {
                        replayed += send_replay(sub, conn, id, &name, &replay, min, out);
                        done += replay.len().max(1);
                    }
                    None => {
                        let deflate = sub.deflate.map(|bits| (bits, min));
                        let Some(snap) = hub.cache.snapshot(&name, deflate) else {
                            continue;
                        };
                        sub.set_floor(snap.id, snap.seq);
                        if let Some(d) = sub.extra.deltas_mut() {
                            d.sent_full(snap.id, snap.seq);
                        }
                        out.send_keyed(conn, snap.id, &snap.frame);
                        done += 1;
                        snapshots += 1;
                    }
                }
            }
            left = left.saturating_sub(done);
            match sub.extra.backlog_mut() {
                Some(b) if !b.is_empty() => self.snapshot_turns.push_back(conn),
                _ => sub.extra.end_backlog(),
            }
        }
        self.snapshots_this_turn += snapshots + replayed;
        hub.metrics
            .snapshots
            .fetch_add(snapshots as u64, Ordering::Relaxed);
        hub.metrics
            .replayed
            .fetch_add(replayed as u64, Ordering::Relaxed);
    }
}

/// Sends a replay: the first message whole, the rest as deltas where the subscriber wants them
/// and can apply them. Returns how many were sent.
pub(super) fn send_replay(
    sub: &mut Subscriber,
    conn: ConnId,
    id: u64,
    name: &str,
    replay: &[Sent],
    compress_min: usize,
    out: &mut Outbox<'_>,
) -> usize {
    let mut deflated = Deflated::default();
    for (i, sent) in replay.iter().enumerate() {
        let frame = match sub.extra.deltas_mut() {
            Some(d) if i > 0 => d.choose(id, name, sent, out.is_behind(conn)),
            Some(d) => {
                d.sent_full(id, sent.seq);
                &sent.full
            }
            None => &sent.full,
        };
        let frame = deflated.form(frame, sub.deflate, compress_min);
        out.send_keyed(conn, id, frame);
    }
    replay.len()
}
