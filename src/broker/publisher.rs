//! The publish API: [`Publisher`] checks a publication (or a batch, all or nothing) and hands
//! it to the [`Hub`], which sequences it, encodes its frame once and queues one refcounted copy
//! per worker; or, with an [`Upstream`] (Redis, `--redis`), sends it there to be sequenced.
//! [`PublishError`] says why one was refused; nothing of a refused publication is published.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::hub::Hub;
use crate::metrics::Rejection;

/// Why a publication was refused. Nothing of it was published.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PublishError {
    /// The topic is not a valid topic (the message says why).
    InvalidTopic(String),
    /// The payload is not JSON (the message says where).
    InvalidPayload(String),
    /// The payload is over the configured limit.
    PayloadTooLarge { size: usize, max: usize },
    /// The publication would add a topic past `--max-topics`; existing topics still publish.
    TooManyTopics { max: usize },
    /// A worker's publish queue is full: the subscribers are behind. Try again later.
    QueueFull,
    /// The broker is shutting down.
    ShuttingDown,
    /// The node cannot deliver it now: with `--redis`, the connection to Redis is down (the
    /// message says why), or Redis refused the publication: nothing was published; try again.
    /// Or Redis did not answer in time, or the connection dropped while it was on its way: it
    /// may or may not have been published (the message says so), and it was not retried.
    Unavailable(String),
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
            PublishError::QueueFull
            | PublishError::ShuttingDown
            | PublishError::Unavailable(_)
            | PublishError::TooManyTopics { .. } => 503,
        }
    }

    pub(crate) fn rejection(&self) -> Rejection {
        match self {
            PublishError::InvalidTopic(_) => Rejection::InvalidTopic,
            PublishError::InvalidPayload(_) => Rejection::InvalidPayload,
            PublishError::PayloadTooLarge { .. } => Rejection::PayloadTooLarge,
            PublishError::TooManyTopics { .. } => Rejection::TooManyTopics,
            PublishError::QueueFull => Rejection::QueueFull,
            PublishError::ShuttingDown => Rejection::ShuttingDown,
            PublishError::Unavailable(_) => Rejection::Unavailable,
        }
    }
}

impl std::fmt::Display for PublishError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PublishError::InvalidTopic(m) => write!(f, "invalid topic: {m}"),
            PublishError::InvalidPayload(m) => write!(f, "invalid payload: {m}"),
            PublishError::TooManyTopics { max } => write!(
                f,
                "the broker holds its limit of {max} topics: publish to an existing topic, or \
                 raise --max-topics"
            ),
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
            PublishError::Unavailable(m) => write!(f, "cannot publish now: {m}"),
        }
    }
}

impl std::error::Error for PublishError {}

/// A batch was refused because of item `index` (from 0). Nothing of the batch was published.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
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

/// Where publications are sequenced when this broker is one node of several (`--redis`): the
/// hub hands every publication to it instead of queueing it, and what the upstream sends back
/// (from every node) arrives through [`Hub::deliver_sequenced`].
pub(crate) trait Upstream: Send + Sync + std::fmt::Debug {
    /// Sequences `items` as one all-or-nothing unit; returns their sequence numbers, in order.
    /// Returns only once the upstream has them, so a success is a promise of delivery.
    fn publish(&self, items: &[(&str, &[u8])]) -> Result<Vec<u64>, PublishError>;
    /// Like `publish`, without waiting: `done` runs later, on another thread, with the seqs or
    /// why the items were refused. On `Err` (refused at once) `done` never runs; on `Ok` it runs
    /// exactly once.
    fn submit(&self, items: &[(&str, &[u8])], done: Done) -> Result<(), PublishError>;
    /// How long an answer may take before a waiting publisher gives up on it.
    fn answer_timeout(&self) -> std::time::Duration;
    /// `Err(reason)` while publications cannot be delivered (for `/healthz`).
    fn health(&self) -> Result<(), String>;
    /// Appends the upstream's own metrics in the Prometheus text format.
    fn render_metrics(&self, out: &mut String);
    /// Delivers what this node already had accepted, then disconnects. Called once, at shutdown.
    fn stop(&self);
}

/// What runs when an upstream has answered a [`Upstream::submit`]: quick, it runs on the
/// upstream's thread.
pub(crate) type Done = Box<dyn FnOnce(Result<Vec<u64>, PublishError>) + Send>;

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
        if let Some(up) = &hub.upstream {
            return self
                .publish_upstream(up.as_ref(), &[(topic, payload)])
                .map(|seqs| seqs.first().copied().unwrap_or(0))
                .or_else(|e| hub.reject(e));
        }
        let topics = match hub.reserve_new_topics(std::iter::once(topic)) {
            Ok(n) => n,
            Err(e) => return hub.reject(e),
        };
        if !hub.reserve(1) {
            hub.cache.unreserve_topics(topics);
            return hub.reject(PublishError::QueueFull);
        }
        let (seq, created) = hub.push(topic, payload);
        hub.cache.unreserve_topics(topics - usize::from(created));
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
        if let Some(up) = &hub.upstream {
            return match self.publish_upstream(up.as_ref(), items) {
                Ok(_) => Ok(items.len()),
                Err(e) => fail(0, e),
            };
        }
        let topics = match hub.reserve_new_topics(items.iter().map(|(t, _)| *t)) {
            Ok(n) => n,
            Err(e) => return fail(0, e),
        };
        if !hub.reserve(items.len()) {
            hub.cache.unreserve_topics(topics);
            return fail(0, PublishError::QueueFull);
        }
        let mut created = 0;
        for (topic, payload) in items {
            created += usize::from(hub.push(topic, payload).1);
        }
        hub.cache.unreserve_topics(topics - created);
        hub.metrics
            .published
            .fetch_add(items.len() as u64, Ordering::Relaxed);
        hub.wake_workers();
        Ok(items.len())
    }

    /// With an upstream: checks the publications and sends them there (all or nothing) without
    /// waiting; `done` runs (on the upstream's thread, so it must be quick) with their seqs or
    /// why they were refused, unless this returns `Err` (refused at once: the index of the item
    /// at fault, and why). Without an upstream, use [`Publisher::publish`] and
    /// [`Publisher::publish_batch`]: they do not wait.
    pub(crate) fn submit(&self, items: &[(&str, &[u8])], done: Done) -> Result<(), BatchError> {
        let hub = &*self.hub;
        let fail = |index: usize, error: PublishError| {
            hub.metrics.rejected(error.rejection());
            Err(BatchError { index, error })
        };
        let Some(up) = &hub.upstream else {
            return fail(
                0,
                PublishError::Unavailable("no upstream to submit to".to_owned()),
            );
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
        if let Err(e) = hub.check_topic_room(items) {
            return fail(0, e);
        }
        if !hub.has_room(items.len()) {
            return fail(0, PublishError::QueueFull);
        }
        let counted = self.hub.clone();
        let n = items.len() as u64;
        let done: Done = Box::new(move |result| {
            match &result {
                Ok(_) => {
                    counted.metrics.published.fetch_add(n, Ordering::Relaxed);
                }
                Err(e) => counted.metrics.rejected(e.rejection()),
            }
            done(result);
        });
        up.submit(items, done).or_else(|e| fail(0, e))
    }

    /// Sends checked publications to the upstream; they reach this node's subscribers when they
    /// come back from it, in the upstream's order (never straight from here, which could put
    /// them before an older publication still on its way back).
    fn publish_upstream(
        &self,
        up: &dyn Upstream,
        items: &[(&str, &[u8])],
    ) -> Result<Vec<u64>, PublishError> {
        let hub = &*self.hub;
        // The local queues' room is not reserved (every node's publications take it when they
        // come back), but subscribers here being behind is still a reason to say no.
        if !hub.has_room(items.len()) {
            return Err(PublishError::QueueFull);
        }
        hub.check_topic_room(items)?;
        let seqs = up.publish(items)?;
        hub.metrics
            .published
            .fetch_add(items.len() as u64, Ordering::Relaxed);
        Ok(seqs)
    }
}
