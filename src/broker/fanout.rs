//! Fan-out: each publication a worker takes from its queue goes to every matching connection of
//! that worker, once per connection, as one shared frame; and the `max_rate` slots that open
//! later send the latest value held in them.

use std::cmp::Reverse;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::cache::Sent;
use super::delivery::Deflated;
use super::hub::Delivery;
use super::rate::Admit;
use super::snapshots::send_replay;
use super::{BrokerWorker, Client};
use crate::server::{ConnId, Outbox};

/// A `max_rate` slot to open: when, whose (connection and its serial), which topic.
pub(crate) type RateTimer = Reverse<(Instant, usize, u64, u64)>;

/// What fanning out one publication did.
pub(super) struct Fanned {
    /// Connections that got it now (held ones count when their slot opens).
    pub delivered: u64,
    /// Matching connections looked at: the work it cost.
    pub visits: u64,
}

impl BrokerWorker {
    /// Queues one publication on every matching connection, once each.
    pub(super) fn fan_out(&mut self, d: &Delivery, out: &mut Outbox<'_>) -> Fanned {
        self.stamp += 1;
        let stamp = self.stamp;
        let now = out.now();
        let clients = &mut self.clients;
        let timers = &mut self.rate_timers;
        let metrics = &self.shared.hub.metrics;
        let sent = Sent {
            seq: d.seq,
            full: d.frame.clone(),
            delta: d.delta.clone(),
        };
        // Compressed once per form and window, for all the connections that take it.
        let mut deflated = Deflated::default();
        let min = self.shared.config.compress_min;
        let mut delivered = 0;
        let mut visits = 0;
        self.index.for_each_match(&d.topic, |conn| {
            visits += 1;
            let Some(Some(Client::Subscriber(sub))) = clients.get_mut(conn.0) else {
                return;
            };
            if sub.stamp == stamp {
                return;
            }
            sub.stamp = stamp;
            if let Some(floor) = sub.floor(d.topic_id) {
                if d.seq <= floor {
                    return; // already sent as the snapshot, or in the replay
                }
                sub.clear_floor(d.topic_id);
            }
            if let Some(backlog) = sub.extra.backlog_mut() {
                // Something newer than the snapshot it was owed; or the replay it was owed
                // must come first.
                if let Some(replay) = backlog.overtaken(d.topic_id) {
                    let n = send_replay(sub, conn, d.topic_id, &d.topic, &replay, min, out);
                    metrics.replayed.fetch_add(n as u64, Ordering::Relaxed);
                }
            }
            if let Some(rate) = sub.extra.rate_mut().filter(|r| r.limits_anything()) {
                let patterns = sub.patterns.iter();
                match rate.admit(d.topic_id, &d.topic, &sent, now, patterns) {
                    Admit::Send => {}
                    Admit::HoldUntil(at) => {
                        timers.push(Reverse((at, conn.0, sub.serial, d.topic_id)));
                        return;
                    }
                    Admit::Merged => {
                        metrics.rate_merged.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                }
            }
            let frame = match sub.extra.deltas_mut() {
                Some(deltas) => deltas.choose(d.topic_id, &d.topic, &sent, out.is_behind(conn)),
                None => &sent.full,
            };
            let frame = deflated.form(frame, sub.deflate, min);
            if out.send_keyed(conn, d.topic_id, frame) {
                delivered += 1;
            }
        });
        Fanned { delivered, visits }
    }

    /// Opens the `max_rate` slots that are due: the latest value held in each goes out.
    pub(super) fn open_rate_slots(&mut self, out: &mut Outbox<'_>) -> u64 {
        let now = out.now();
        let mut delivered = 0;
        while let Some(Reverse((at, conn, serial, topic))) = self.rate_timers.peek().copied() {
            if at > now {
                break;
            }
            self.rate_timers.pop();
            let Some(sub) = self.subscriber(ConnId(conn)).filter(|s| s.serial == serial) else {
                continue; // gone since
            };
            let Some((name, sent)) = sub.extra.rate_mut().and_then(|r| r.open(topic, now)) else {
                continue;
            };
            let conn = ConnId(conn);
            let frame = match sub.extra.deltas_mut() {
                Some(deltas) => deltas.choose(topic, &name, &sent, out.is_behind(conn)),
                None => &sent.full,
            };
            let mut deflated = Deflated::default();
            let frame = deflated.form(frame, sub.deflate, self.shared.config.compress_min);
            if out.send_keyed(conn, topic, frame) {
                delivered += 1;
            }
        }
        delivered
    }

    /// When the next `max_rate` slot opens.
    pub(super) fn next_rate_slot(&self) -> Option<Instant> {
        self.rate_timers.peek().map(|Reverse((at, ..))| *at)
    }
}
