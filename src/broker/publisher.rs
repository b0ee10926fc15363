//! The publish path: [`Publisher`] validates, sequences, encodes the outgoing frame once, and
//! hands one refcounted copy to every worker's bounded queue.
//!
//! Order: a topic's next `seq` is taken and its frame pushed to every worker while its cache
//! shard is locked, so every worker sees a topic's publications in `seq` order. Capacity: each
//! worker queue is reserved (an atomic count) before anything is pushed, so a full queue refuses
//! the whole publication (or batch) and never drops part of it.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use crossbeam_channel::{Receiver, Sender};

use super::cache::{Cache, TopicEntry};
use super::protocol::encode_msg_frame;
use super::topic::validate_topic;
use crate::metrics::{Metrics, Rejection};
use crate::server::{Frame, Notifier};

/// One publication on its way to a worker.
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    pub topic: Arc<str>,
    pub topic_id: u64,
    pub seq: u64,
    pub frame: Frame,
}

/// Why a publication was refused. Nothing of it was published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishError {
    /// The topic is not a valid topic (the message says why).
    InvalidTopic(String),
    /// The payload is not JSON (the message says where).
    InvalidPayload(String),
    /// The payload is over the configured limit.
    PayloadTooLarge { size: usize, max: usize },
    /// A worker's publish queue is full: the subscribers are behind. Try again later.
    QueueFull,
    /// The broker is shutting down.
    ShuttingDown,
}

impl PublishError {
    /// The machine-readable code used in JSON errors and metrics.
    pub fn code(&self) -> &'static str {
        self.rejection().label()
    }

    /// The HTTP status the local API answers with.
    pub fn http_status(&self) -> u16 {
        match self {
            PublishError::InvalidTopic(_) | PublishError::InvalidPayload(_) => 400,
            PublishError::PayloadTooLarge { .. } => 413,
            PublishError::QueueFull | PublishError::ShuttingDown => 503,
        }
    }

    pub(crate) fn rejection(&self) -> Rejection {
        match self {
            PublishError::InvalidTopic(_) => Rejection::InvalidTopic,
            PublishError::InvalidPayload(_) => Rejection::InvalidPayload,
            PublishError::PayloadTooLarge { .. } => Rejection::PayloadTooLarge,
            PublishError::QueueFull => Rejection::QueueFull,
            PublishError::ShuttingDown => Rejection::ShuttingDown,
        }
    }
}

impl std::fmt::Display for PublishError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PublishError::InvalidTopic(m) => write!(f, "invalid topic: {m}"),
            PublishError::InvalidPayload(m) => write!(f, "payload is not JSON: {m}"),
            PublishError::PayloadTooLarge { size, max } => {
                write!(
                    f,
                    "payload of {size} bytes is over the limit of {max} bytes"
                )
            }
            PublishError::QueueFull => {
                write!(
                    f,
                    "publish queue full: subscribers are behind, try again later"
                )
            }
            PublishError::ShuttingDown => write!(f, "the broker is shutting down"),
        }
    }
}

impl std::error::Error for PublishError {}

/// A batch was refused because of item `index` (from 0). Nothing of the batch was published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchError {
    pub index: usize,
    pub error: PublishError,
}

impl std::fmt::Display for BatchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "item {}: {}", self.index + 1, self.error)
    }
}

impl std::error::Error for BatchError {}

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
    queues: Box<[WorkerQueue]>,
    capacity: usize,
    shutting_down: AtomicBool,
    /// Publishes under way, so shutdown can wait for them to land in the queues.
    in_flight: AtomicUsize,
}

impl Hub {
    /// A hub for `workers` workers, and the receiving end of each worker's queue.
    pub fn new(
        workers: usize,
        capacity: usize,
        max_payload: usize,
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
            cache: Cache::default(),
            metrics: Metrics::default(),
            max_payload,
            queues: queues.into(),
            capacity,
            shutting_down: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
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

    /// Refuses new publications and waits for the ones under way to be queued.
    pub fn stop_publishing(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        while self.in_flight.load(Ordering::SeqCst) > 0 {
            std::thread::yield_now();
        }
    }

    /// Reserves room for `n` publications in every worker queue, or none.
    fn reserve(&self, n: usize) -> bool {
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

    fn check(&self, topic: &str, payload: &[u8]) -> Result<(), PublishError> {
        validate_topic(topic).map_err(PublishError::InvalidTopic)?;
        if payload.len() > self.max_payload {
            return Err(PublishError::PayloadTooLarge {
                size: payload.len(),
                max: self.max_payload,
            });
        }
        serde_json::from_slice::<serde::de::IgnoredAny>(payload)
            .map(|_| ())
            .map_err(|e| PublishError::InvalidPayload(e.to_string()))
    }

    /// Sequences, caches and queues one checked publication whose room is reserved.
    fn push(&self, topic: &str, payload: &[u8]) -> u64 {
        thread_local! {
            // The frame is built here and copied once into its shared allocation.
            static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
        }
        let mut shard = self.cache.lock(topic);
        let delivery = SCRATCH.with(|scratch| {
            let mut buf = scratch.borrow_mut();
            let entry = match shard.get_mut(topic) {
                Some(e) => e,
                None => {
                    let topic: Arc<str> = topic.into();
                    let entry = TopicEntry {
                        topic: topic.clone(),
                        id: self.cache.new_id(),
                        topic_json: serde_json::to_string(&*topic)
                            .unwrap_or_else(|_| "\"\"".to_owned())
                            .into(),
                        seq: 0,
                        frame: Arc::from(&[][..]),
                        payload: 0..0,
                    };
                    shard.entry(topic).or_insert(entry)
                }
            };
            entry.seq += 1;
            entry.payload =
                encode_msg_frame(&mut buf, &entry.topic_json, entry.seq, false, payload);
            entry.frame = Arc::from(&buf[..]);
            Delivery {
                topic: entry.topic.clone(),
                topic_id: entry.id,
                seq: entry.seq,
                frame: entry.frame.clone(),
            }
        });
        let seq = delivery.seq;
        for q in self.queues.iter() {
            // Room was reserved, so this cannot fail; if it somehow did, count it loudly.
            if q.tx.try_send(delivery.clone()).is_err() {
                self.metrics.internal_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        drop(shard);
        seq
    }

    fn wake_workers(&self) {
        for q in self.queues.iter() {
            if let Some(n) = q.notifier.get() {
                n.notify();
            }
        }
    }

    fn begin(&self) -> Result<InFlight<'_>, PublishError> {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let guard = InFlight(self);
        if self.shutting_down.load(Ordering::SeqCst) {
            return Err(PublishError::ShuttingDown);
        }
        Ok(guard)
    }

    fn reject<T>(&self, e: PublishError) -> Result<T, PublishError> {
        self.metrics.rejected(e.rejection());
        Err(e)
    }
}

/// Counts a publish as under way until dropped.
struct InFlight<'a>(&'a Hub);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Publishes to the broker's subscribers, from any thread. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Publisher {
    pub(crate) hub: Arc<Hub>,
}

impl Publisher {
    /// Publishes one JSON `payload` to `topic`; returns its sequence number.
    ///
    /// The payload is checked once here (valid topic, at most the payload limit, valid JSON)
    /// and copied once, into the frame every subscriber gets.
    pub fn publish(&self, topic: &str, payload: &[u8]) -> Result<u64, PublishError> {
        let hub = &*self.hub;
        let _guard = match hub.begin() {
            Ok(g) => g,
            Err(e) => return hub.reject(e),
        };
        if let Err(e) = hub.check(topic, payload) {
            return hub.reject(e);
        }
        if !hub.reserve(1) {
            return hub.reject(PublishError::QueueFull);
        }
        let seq = hub.push(topic, payload);
        hub.metrics.published.fetch_add(1, Ordering::Relaxed);
        hub.wake_workers();
        Ok(seq)
    }

    /// Publishes every `(topic, payload)` or none: all items are checked and queue room for all
    /// of them is reserved before the first is published. Returns how many were published.
    pub fn publish_batch(&self, items: &[(&str, &[u8])]) -> Result<usize, BatchError> {
        let hub = &*self.hub;
        let fail = |index: usize, error: PublishError| {
            hub.metrics.rejected(error.rejection());
            Err(BatchError { index, error })
        };
        let _guard = match hub.begin() {
            Ok(g) => g,
            Err(e) => return fail(0, e),
        };
        for (i, (topic, payload)) in items.iter().enumerate() {
            if let Err(e) = hub.check(topic, payload) {
                return fail(i, e);
            }
        }
        if items.is_empty() {
            return Ok(0);
        }
        if !hub.reserve(items.len()) {
            return fail(0, PublishError::QueueFull);
        }
        for (topic, payload) in items {
            hub.push(topic, payload);
        }
        hub.metrics
            .published
            .fetch_add(items.len() as u64, Ordering::Relaxed);
        hub.wake_workers();
        Ok(items.len())
    }
}
