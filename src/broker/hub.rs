//! The hub every publisher and worker shares: the last-value cache, the workers' bounded
//! publish queues and their wakers, the metrics, and the sequencing of a publication.
//!
//! Order: a topic's next `seq` is taken and its frame pushed to every worker while its cache
//! shard is locked, so every worker sees a topic's publications in `seq` order. Capacity: each
//! worker queue is reserved (an atomic count) before anything is pushed, so a full queue refuses
//! the whole publication (or batch) and never drops part of it.
//!
//! With an [`Upstream`] (several nodes sharing one feed through Redis, `--redis`), publications
//! are sequenced there instead; what comes back from it, from this node and every other, enters
//! through [`Hub::deliver_sequenced`], which keeps the upstream's `seq` and drops what is not
//! newer than what this node already has.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use crossbeam_channel::{Receiver, Sender};

#[cfg(test)]
use super::cache::NotRecovered;
use super::cache::{Cache, Sent, TopicEntry};
use super::protocol::{encode_delta_frame, encode_msg_frame};
use super::publisher::{PublishError, Upstream};
use super::topic::validate_topic;
use crate::metrics::Metrics;
use crate::server::{Frame, Notifier};

/// One publication on its way to a worker.
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    pub topic: Arc<str>,
    pub topic_id: u64,
    pub seq: u64,
    pub frame: Frame,
    /// The same publication as a merge patch from the previous one, when there is one (see
    /// `delta`), for subscribers that had seq - 1.
    pub delta: Option<Frame>,
}

/// What [`Hub::deliver_sequenced`] did with a publication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(feature = "redis"), allow(dead_code))] // the only upstream is Redis
pub(crate) enum Sequenced {
    /// Cached and queued to every worker.
    Delivered,
    /// Not newer than the topic's last `seq` here (a duplicate after a resubscribe, or an old
    /// value): dropped, so a subscriber never sees a topic go back in time.
    Stale,
    /// A worker queue is full: nothing was done; the caller waits and tries again.
    NoRoom,
}

/// What a hub refuses publications over.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HubLimits {
    pub max_payload: usize,
    pub max_depth: usize,
    pub max_topics: usize,
    pub history: usize,
    pub history_memory: usize,
}

impl HubLimits {
    pub fn of(config: &crate::Config) -> Self {
        HubLimits {
            max_payload: config.max_payload,
            max_depth: config.max_json_depth,
            max_topics: config.max_topics,
            history: config.history,
            history_memory: config.history_memory,
        }
    }
}

#[cfg(test)]
impl Default for HubLimits {
    fn default() -> Self {
        HubLimits {
            max_payload: 1024,
            max_depth: 128,
            max_topics: 1_000_000,
            history: 4,
            history_memory: usize::MAX,
        }
    }
}

/// A new epoch: eight characters from a random 40-bit number, base 36.
pub(crate) fn new_epoch() -> String {
    let mut n = fastrand::u64(..1 << 40);
    let mut s = String::with_capacity(8);
    for _ in 0..8 {
        let d = (n % 36) as u32;
        s.push(char::from_digit(d, 36).unwrap_or('0'));
        n /= 36;
    }
    s
}

/// A worker's incoming publications.
#[derive(Debug)]
pub(crate) struct WorkerQueue {
    tx: Sender<Delivery>,
    /// Publications reserved or queued and not yet taken by the worker.
    pending: AtomicUsize,
    notifier: OnceLock<Arc<Notifier>>,
}

/// What publishers and workers share.
#[derive(Debug)]
pub(crate) struct Hub {
    pub cache: Cache,
    pub metrics: Metrics,
    pub max_payload: usize,
    /// How deep a payload's JSON may nest.
    pub max_depth: usize,
    /// Publications kept per topic for recovery, and bytes kept over all topics.
    history: usize,
    history_memory: usize,
    /// Delta subscriptions across the workers: while none, no patch is computed.
    delta_wanted: AtomicUsize,
    epoch: parking_lot::RwLock<Arc<str>>,
    queues: Box<[WorkerQueue]>,
    capacity: usize,
    shutting_down: AtomicBool,
    /// Publishes under way, so shutdown can wait for them to land in the queues.
    in_flight: AtomicUsize,
    /// Set when publications are sequenced elsewhere (Redis); `None` keeps the local path.
    pub(super) upstream: Option<Arc<dyn Upstream>>,
}

impl Hub {
    /// A hub for `workers` workers, and the receiving end of each worker's queue.
    pub fn new(
        workers: usize,
        capacity: usize,
        limits: HubLimits,
        upstream: Option<Arc<dyn Upstream>>,
    ) -> (Hub, Vec<Receiver<Delivery>>) {
        let mut queues = Vec::with_capacity(workers);
        let mut receivers = Vec::with_capacity(workers);
        for _ in 0..workers {
            let (tx, rx) = crossbeam_channel::bounded(capacity);
            queues.push(WorkerQueue {
                tx,
                pending: AtomicUsize::new(0),
                notifier: OnceLock::new(),
            });
            receivers.push(rx);
        }
        let hub = Hub {
            cache: Cache::new(limits.max_topics),
            metrics: Metrics::default(),
            max_payload: limits.max_payload,
            max_depth: limits.max_depth,
            history: limits.history,
            history_memory: limits.history_memory,
            delta_wanted: AtomicUsize::new(0),
            epoch: parking_lot::RwLock::new(new_epoch().into()),
            queues: queues.into(),
            capacity,
            shutting_down: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            upstream,
        };
        (hub, receivers)
    }

    /// Connects each queue to its worker's waker once the workers exist.
    pub fn set_notifiers(&self, notifiers: &[Arc<Notifier>]) {
        for (q, n) in self.queues.iter().zip(notifiers) {
            let _ = q.notifier.set(n.clone());
        }
    }

    /// A worker took `n` publications off its queue.
    pub fn taken(&self, worker: usize, n: usize) {
        if n > 0 {
            self.queues[worker].pending.fetch_sub(n, Ordering::AcqRel);
        }
    }

    /// Publications waiting for each worker, summed.
    pub fn queued(&self) -> usize {
        self.queues
            .iter()
            .map(|q| q.pending.load(Ordering::Relaxed))
            .sum()
    }

    pub fn upstream(&self) -> Option<&dyn Upstream> {
        self.upstream.as_deref()
    }

    /// Refuses new publications and waits for the ones under way to be queued (or, with an
    /// upstream, to be answered by it; then lets the upstream deliver them and disconnect).
    pub fn stop_publishing(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        while self.in_flight.load(Ordering::SeqCst) > 0 {
            std::thread::yield_now();
        }
        if let Some(up) = &self.upstream {
            up.stop();
        }
    }

    /// Whether every worker queue has room for `n` more publications right now (nothing is
    /// reserved: with an upstream the room is taken when the publication comes back).
    pub(super) fn has_room(&self, n: usize) -> bool {
        self.queues
            .iter()
            .all(|q| q.pending.load(Ordering::Acquire) + n <= self.capacity)
    }

    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(super) fn unreserve(&self, n: usize) {
        for q in self.queues.iter() {
            q.pending.fetch_sub(n, Ordering::AcqRel);
        }
    }

    /// Reserves room for `n` publications in every worker queue, or none.
    pub(super) fn reserve(&self, n: usize) -> bool {
        for (i, q) in self.queues.iter().enumerate() {
            let before = q.pending.fetch_add(n, Ordering::AcqRel);
            if before + n > self.capacity {
                q.pending.fetch_sub(n, Ordering::AcqRel);
                for q in &self.queues[..i] {
                    q.pending.fetch_sub(n, Ordering::AcqRel);
                }
                return false;
            }
        }
        true
    }

    /// Checks a publication: valid topic, at most the payload limit, UTF-8 JSON not nested too
    /// deep.
    pub(crate) fn check(&self, topic: &str, payload: &[u8]) -> Result<(), PublishError> {
        validate_topic(topic).map_err(PublishError::InvalidTopic)?;
        if payload.len() > self.max_payload {
            return Err(PublishError::PayloadTooLarge {
                size: payload.len(),
                max: self.max_payload,
            });
        }
        super::payload::check(payload, self.max_depth).map_err(PublishError::InvalidPayload)
    }

    /// Reserves room under `--max-topics` for the topics among `topics` that do not exist yet;
    /// returns how many were reserved (give back what pushing did not use).
    pub(super) fn reserve_new_topics<'t>(
        &self,
        topics: impl Iterator<Item = &'t str>,
    ) -> Result<usize, PublishError> {
        let mut new = std::collections::HashSet::new();
        for t in topics {
            if !self.cache.contains(t) {
                new.insert(t);
            }
        }
        if self.cache.reserve_topics(new.len()) {
            Ok(new.len())
        } else {
            Err(PublishError::TooManyTopics {
                max: self.cache.max_topics(),
            })
        }
    }

    /// For publications sequenced upstream: refuses one that would add a topic past the limit
    /// here (its room is taken when it comes back).
    pub(super) fn check_topic_room(&self, topics: &[(&str, &[u8])]) -> Result<(), PublishError> {
        let new = topics
            .iter()
            .filter(|(t, _)| !self.cache.contains(t))
            .count();
        if self.cache.reserve_topics(new) {
            self.cache.unreserve_topics(new);
            Ok(())
        } else {
            Err(PublishError::TooManyTopics {
                max: self.cache.max_topics(),
            })
        }
    }

    /// Sequences, caches and queues one checked publication whose queue room (and topic room,
    /// if the topic is new) is reserved. Returns its seq and whether it created the topic.
    pub(super) fn push(&self, topic: &str, payload: &[u8]) -> (u64, bool) {
        self.sequence_and_queue(topic, payload, true, |last| Some(last + 1))
            .unwrap_or((0, false))
    }

    /// Caches and queues a publication whose `seq` (at least 1) was assigned upstream, if it is
    /// newer than the topic's last one here. The topic and payload must have passed
    /// [`Hub::check`]. Per topic, callers must come in the upstream's order for subscribers to
    /// see every `seq`.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn deliver_sequenced(&self, topic: &str, seq: u64, payload: &[u8]) -> Sequenced {
        if !self.reserve(1) {
            return Sequenced::NoRoom;
        }
        match self.sequence_and_queue(topic, payload, false, |last| (seq > last).then_some(seq)) {
            Some(_) => {
                self.wake_workers();
                Sequenced::Delivered
            }
            None => {
                self.unreserve(1);
                Sequenced::Stale
            }
        }
    }

    /// Under the topic's shard lock (that is what keeps a topic in order): asks `next` for the
    /// seq that follows the topic's last one (0 if new), and unless it says `None`, stores the
    /// publication with it, encodes its frame once and hands it to every worker. The caller has
    /// reserved the queue room, and the topic room if `topic_reserved`. Returns the seq and
    /// whether the topic was created.
    fn sequence_and_queue(
        &self,
        topic: &str,
        payload: &[u8],
        topic_reserved: bool,
        next: impl FnOnce(u64) -> Option<u64>,
    ) -> Option<(u64, bool)> {
        thread_local! {
            // The frame is built here and copied once into its shared allocation.
            static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
        }
        let mut shard = self.cache.lock(topic);
        let mut created = false;
        let delivery = SCRATCH.with(|scratch| {
            let mut buf = scratch.borrow_mut();
            let (entry, seq) = match shard.get_mut(topic) {
                Some(e) => {
                    let seq = next(e.seq)?;
                    (e, seq)
                }
                None => {
                    // Asked before the entry exists: a refused publication leaves no trace.
                    let seq = next(0)?;
                    let topic: Arc<str> = topic.into();
                    let id = self.cache.new_id();
                    let entry = TopicEntry {
                        topic: topic.clone(),
                        id,
                        topic_json: serde_json::to_string(&*topic)
                            .unwrap_or_else(|_| "\"\"".to_owned())
                            .into(),
                        seq: 0,
                        frame: Arc::from(&[][..]),
                        payload: 0..0,
                        snapshot: None,
                        snapshot_deflated: None,
                        history: VecDeque::new(),
                    };
                    created = true;
                    self.cache.added(topic.clone(), id, topic_reserved);
                    (shard.entry(topic).or_insert(entry), seq)
                }
            };
            let delta = self.delta_frame(entry, seq, payload, &mut buf);
            entry.seq = seq;
            entry.payload = encode_msg_frame(&mut buf, &entry.topic_json, seq, false, payload);
            entry.frame = Arc::from(&buf[..]);
            entry.snapshot = None;
            entry.snapshot_deflated = None;
            let sent = Sent {
                seq,
                full: entry.frame.clone(),
                delta: delta.clone(),
            };
            self.remember(&mut entry.history, sent);
            Some(Delivery {
                topic: entry.topic.clone(),
                topic_id: entry.id,
                seq,
                frame: entry.frame.clone(),
                delta,
            })
        })?;
        for q in self.queues.iter() {
            // Room was reserved, so this cannot fail; if it somehow did, count it loudly.
            if q.tx.try_send(delivery.clone()).is_err() {
                self.metrics.internal_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        drop(shard);
        Some((delivery.seq, created))
    }

    /// The delta frame of publication `seq` of `entry` (whose value is still the previous
    /// one), when some subscriber wants deltas, the previous value is seq - 1, and a merge patch
    /// can say the change in fewer bytes. Computed once per publication.
    fn delta_frame(
        &self,
        entry: &TopicEntry,
        seq: u64,
        payload: &[u8],
        buf: &mut Vec<u8>,
    ) -> Option<Frame> {
        if self.delta_wanted.load(Ordering::Relaxed) == 0 || entry.seq + 1 != seq {
            return None;
        }
        let patch = super::delta::patch_between(entry.payload(), payload)?;
        encode_delta_frame(buf, &entry.topic_json, seq, patch.as_bytes());
        Some(Arc::from(&buf[..]))
    }

    /// A subscriber's delta patterns came or went: deltas are computed while any exist.
    pub(crate) fn want_deltas(&self, delta: isize) {
        if delta >= 0 {
            self.delta_wanted
                .fetch_add(delta.unsigned_abs(), Ordering::Relaxed);
        } else {
            self.delta_wanted
                .fetch_sub(delta.unsigned_abs(), Ordering::Relaxed);
        }
    }

    /// Keeps a publication in a topic's history: the last `history` publications, with no seq
    /// missing (a jump, after a reload from Redis, starts the history afresh). While all the
    /// histories together hold more than `history_memory` bytes, the topic being published
    /// keeps fewer (down to its latest): the busiest topics give up their oldest first.
    fn remember(&self, history: &mut VecDeque<Sent>, sent: Sent) {
        if self.history == 0 {
            return;
        }
        let mut freed = 0;
        if history.back().is_some_and(|last| last.seq + 1 != sent.seq) {
            freed += history.drain(..).map(|s| s.bytes()).sum::<usize>();
        }
        let added = sent.bytes();
        history.push_back(sent);
        while history.len() > self.history {
            freed += history.pop_front().map_or(0, |s| s.bytes());
        }
        let total = self.metrics.history_bytes_add(added, freed);
        let mut over = total.saturating_sub(self.history_memory);
        let mut trimmed = 0;
        while over > 0 && history.len() > 1 {
            let bytes = history.pop_front().map_or(0, |s| s.bytes());
            trimmed += bytes;
            over = over.saturating_sub(bytes);
        }
        if trimmed > 0 {
            self.metrics.history_bytes_add(0, trimmed);
        }
    }

    /// The feed's epoch: it changes only when seqs or history may have restarted.
    pub fn epoch(&self) -> Arc<str> {
        self.epoch.read().clone()
    }

    /// With Redis, the epoch lives there: the link sets it.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn set_epoch(&self, epoch: &str) {
        let mut e = self.epoch.write();
        if &**e != epoch {
            log::info!("the feed's epoch is now {epoch} (was {e})");
            *e = epoch.into();
        }
    }

    /// Wakes one worker (that has work besides its publish queue).
    pub(crate) fn wake_worker(&self, worker: usize) {
        if let Some(n) = self.queues.get(worker).and_then(|q| q.notifier.get()) {
            n.notify();
        }
    }

    pub(super) fn wake_workers(&self) {
        for q in self.queues.iter() {
            if let Some(n) = q.notifier.get() {
                n.notify();
            }
        }
    }

    pub(super) fn begin(&self) -> Result<InFlight<'_>, PublishError> {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let guard = InFlight(self);
        if self.shutting_down.load(Ordering::SeqCst) {
            return Err(PublishError::ShuttingDown);
        }
        Ok(guard)
    }

    pub(super) fn reject<T>(&self, e: PublishError) -> Result<T, PublishError> {
        self.metrics.rejected(e.rejection());
        Err(e)
    }
}

/// Counts a publish as under way until dropped.
pub(crate) struct InFlight<'a>(&'a Hub);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivered(rx: &Receiver<Delivery>) -> Vec<(String, u64)> {
        rx.try_iter()
            .map(|d| (d.topic.to_string(), d.seq))
            .collect()
    }

    #[test]
    fn upstream_seqs_are_kept_and_what_is_not_newer_is_dropped() {
        let (hub, rx) = Hub::new(1, 16, HubLimits::default(), None);
        assert_eq!(hub.deliver_sequenced("t", 5, b"1"), Sequenced::Delivered);
        assert_eq!(hub.deliver_sequenced("t", 5, b"2"), Sequenced::Stale);
        assert_eq!(hub.deliver_sequenced("t", 3, b"3"), Sequenced::Stale);
        // A gap (a reload after a reconnection) is delivered: it is newer.
        assert_eq!(hub.deliver_sequenced("t", 9, b"4"), Sequenced::Delivered);
        // Per topic.
        assert_eq!(hub.deliver_sequenced("u", 1, b"5"), Sequenced::Delivered);
        assert_eq!(
            delivered(&rx[0]),
            [("t".into(), 5), ("t".into(), 9), ("u".into(), 1)]
        );
        let t = hub.cache.get("t").expect("cached");
        assert_eq!((t.seq, t.payload()), (9, &b"4"[..]));
        // The stale ones gave their room back.
        assert_eq!(hub.queued(), 3);
    }

    #[test]
    fn a_full_queue_takes_nothing_and_says_so() {
        let (hub, rx) = Hub::new(1, 1, HubLimits::default(), None);
        assert_eq!(hub.deliver_sequenced("t", 1, b"1"), Sequenced::Delivered);
        assert_eq!(hub.deliver_sequenced("t", 2, b"2"), Sequenced::NoRoom);
        assert_eq!(hub.cache.get("t").map(|e| e.seq), Some(1));
        assert_eq!(delivered(&rx[0]).len(), 1);
        hub.taken(0, 1);
        assert_eq!(hub.deliver_sequenced("t", 2, b"2"), Sequenced::Delivered);
    }

    #[test]
    fn a_stale_first_sight_leaves_no_topic_behind() {
        let (hub, _rx) = Hub::new(1, 4, HubLimits::default(), None);
        assert_eq!(hub.sequence_and_queue("t", b"1", false, |_| None), None);
        assert!(hub.cache.get("t").is_none());
        assert_eq!(hub.cache.len(), 0);
    }

    #[test]
    fn the_history_keeps_the_last_publications_without_a_gap() {
        let (hub, _rx) = Hub::new(1, 64, HubLimits::default(), None);
        for n in 1..=6u64 {
            hub.sequence_and_queue("h", n.to_string().as_bytes(), false, |last| Some(last + 1));
        }
        let seqs = |after| {
            hub.cache
                .replay_after("h", after)
                .map(|r| (r.latest, r.sent.len()))
        };
        // History 4: seqs 3 to 6.
        assert_eq!(
            seqs(6),
            Ok((6, 0)),
            "up to date: recovered, nothing to replay"
        );
        assert_eq!(seqs(2), Ok((6, 4)));
        assert_eq!(seqs(1), Err(NotRecovered::HistoryTooShort));
        assert_eq!(seqs(7), Err(NotRecovered::Future));
        assert_eq!(
            hub.cache.replay_after("other", 0).map(|r| r.latest),
            Err(NotRecovered::Unknown)
        );
        // A jump (a reload from Redis) starts afresh: nothing before it can be replayed.
        assert_eq!(hub.deliver_sequenced("h", 9, b"9"), Sequenced::Delivered);
        assert_eq!(seqs(8), Ok((9, 1)));
        assert_eq!(seqs(6), Err(NotRecovered::HistoryTooShort));
    }

    #[test]
    fn epochs_are_short_and_differ() {
        let (a, b) = (new_epoch(), new_epoch());
        assert_eq!(a.len(), 8);
        assert_ne!(a, b);
    }

    #[test]
    fn all_histories_together_stay_under_their_memory() {
        let limits = HubLimits {
            history: 100,
            history_memory: 2000,
            ..HubLimits::default()
        };
        let (hub, _rx) = Hub::new(1, 10_000, limits, None);
        for n in 1..=50u64 {
            for t in ["a", "b"] {
                hub.sequence_and_queue(t, n.to_string().as_bytes(), false, |last| Some(last + 1));
            }
        }
        let held = hub.metrics.history_bytes_add(0, 0);
        assert!(held <= 2000 + 200, "{held} bytes held");
        // Each topic still has at least its latest, so an up-to-date client recovers.
        assert_eq!(hub.cache.replay_after("a", 50).map(|r| r.latest), Ok(50));
        assert!(hub.cache.replay_after("b", 49).is_ok());
    }
}
