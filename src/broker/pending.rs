//! Publications a worker handed to the upstream (Redis, `--redis`) and whose answers it owes its
//! clients. The worker never waits for them: each answer comes back on a channel and wakes the
//! worker, which then answers the HTTP request or the streaming publisher's frame. An answer
//! that does not come within the upstream's answer timeout is given up on: the client hears
//! `unavailable` (the publication may or may not have been published), and the late answer is
//! dropped, so nothing is answered twice.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};

use super::hub::Hub;
use super::publisher::{BatchError, PublishError, Publisher};
use crate::server::ConnId;

/// Who is owed an answer.
#[derive(Debug)]
pub(crate) struct Waiter {
    pub conn: ConnId,
    /// The connection's serial: an answer for an earlier connection with the same id is dropped.
    pub serial: u64,
    pub kind: WaitKind,
}

#[derive(Debug)]
pub(crate) enum WaitKind {
    /// `POST /publish`: an HTTP response; for a batch, the NDJSON line of each item.
    Http { lines: Option<Vec<usize>> },
    /// A streaming publisher's frame: its place in the publisher's order, and its `id`.
    Stream { ticket: u64, id: Option<String> },
}

/// The upstream's answer to one submission.
#[derive(Debug)]
struct Answer {
    key: u64,
    result: Result<Vec<u64>, PublishError>,
}

/// The result a waiter is answered with.
pub(crate) type Outcome = Result<Vec<u64>, PublishError>;

#[derive(Debug)]
pub(crate) struct Pending {
    tx: Sender<Answer>,
    rx: Receiver<Answer>,
    /// By submission key. Bounded by what the clients may have in flight: one request per
    /// HTTP connection, a window of frames per streaming publisher.
    waiting: HashMap<u64, Waiter>,
    /// When each submission is given up on, in submission order (so in deadline order: the
    /// timeout is the same for all). Keys already answered are skipped when they come up.
    deadlines: VecDeque<(Instant, u64)>,
    next_key: u64,
}

impl Default for Pending {
    fn default() -> Self {
        let (tx, rx) = crossbeam_channel::unbounded();
        Pending {
            tx,
            rx,
            waiting: HashMap::new(),
            deadlines: VecDeque::new(),
            next_key: 0,
        }
    }
}

impl Pending {
    /// Hands `items` to the upstream through `publisher`, all or nothing; `waiter` is answered
    /// when the upstream answers (or when it is given up on). `Err` is a refusal at once:
    /// nothing is waited for.
    pub fn submit(
        &mut self,
        publisher: &Publisher,
        worker: usize,
        items: &[(&str, &[u8])],
        waiter: Waiter,
        now: Instant,
    ) -> Result<(), BatchError> {
        let hub = publisher.hub.clone();
        let Some(timeout) = hub.upstream().map(|up| up.answer_timeout()) else {
            return publisher.submit(items, Box::new(|_| {}));
        };
        self.next_key += 1;
        let key = self.next_key;
        let tx = self.tx.clone();
        publisher.submit(
            items,
            Box::new(move |result| {
                // The worker is gone only at shutdown; then nobody is left to answer.
                if tx.send(Answer { key, result }).is_ok() {
                    hub.wake_worker(worker);
                }
            }),
        )?;
        self.waiting.insert(key, waiter);
        self.deadlines.push_back((now + timeout, key));
        publisher
            .hub
            .metrics
            .awaiting_answer
            .fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Whether [`Pending::resolved`] has anything to do: something is owed, or answers came
    /// back. Late answers (to what was given up on) count: left in the channel, they would keep
    /// [`Pending::has_answers`] true, and the worker's loop polling without sleep, forever.
    pub fn has_work(&self) -> bool {
        !self.waiting.is_empty() || self.has_answers()
    }

    /// Whether answers have arrived.
    pub fn has_answers(&self) -> bool {
        !self.rx.is_empty()
    }

    /// When the oldest submission is given up on.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.front().map(|(d, _)| *d)
    }

    /// Every waiter answered since the last call, in the order answers came, then those given
    /// up on at `now`.
    pub fn resolved(&mut self, now: Instant, hub: &Hub) -> Vec<(Waiter, Outcome)> {
        let mut done = Vec::new();
        while let Ok(a) = self.rx.try_recv() {
            // Absent: given up on already.
            if let Some(w) = self.waiting.remove(&a.key) {
                hub.metrics.awaiting_answer.fetch_sub(1, Ordering::Relaxed);
                done.push((w, a.result));
            }
        }
        while let Some(&(deadline, key)) = self.deadlines.front() {
            if !self.waiting.contains_key(&key) {
                self.deadlines.pop_front();
                continue;
            }
            if deadline > now {
                break;
            }
            self.deadlines.pop_front();
            if let Some(w) = self.waiting.remove(&key) {
                hub.metrics.answer_timeouts.fetch_add(1, Ordering::Relaxed);
                hub.metrics.awaiting_answer.fetch_sub(1, Ordering::Relaxed);
                let timeout = hub
                    .upstream()
                    .map(|up| up.answer_timeout())
                    .unwrap_or_default();
                done.push((
                    w,
                    Err(PublishError::Unavailable(format!(
                        "redis: no answer within {timeout:?} (the publication may or may not \
                         have reached Redis; it was not retried)"
                    ))),
                ));
            }
        }
        done
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use parking_lot::Mutex;

    use super::*;
    use crate::broker::hub::HubLimits;
    use crate::broker::publisher::{Done, Upstream};

    const TIMEOUT: Duration = Duration::from_secs(1);

    /// An upstream that answers only when told to.
    #[derive(Default)]
    struct Silent {
        owed: Mutex<Vec<Done>>,
    }

    impl std::fmt::Debug for Silent {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("Silent")
        }
    }

    impl Upstream for Silent {
        fn publish(&self, _: &[(&str, &[u8])]) -> Result<Vec<u64>, PublishError> {
            Err(PublishError::Unavailable("silent".into()))
        }
        fn submit(&self, _: &[(&str, &[u8])], done: Done) -> Result<(), PublishError> {
            self.owed.lock().push(done);
            Ok(())
        }
        fn answer_timeout(&self) -> Duration {
            TIMEOUT
        }
        fn health(&self) -> Result<(), String> {
            Ok(())
        }
        fn render_metrics(&self, _: &mut String) {}
        fn stop(&self) {}
    }

    fn waiter() -> Waiter {
        Waiter {
            conn: ConnId(0),
            serial: 1,
            kind: WaitKind::Http { lines: None },
        }
    }

    #[test]
    fn an_answer_after_the_timeout_is_dropped_and_leaves_no_work_behind() {
        let upstream = Arc::new(Silent::default());
        let (hub, _rx) = Hub::new(1, 16, HubLimits::default(), Some(upstream.clone()));
        let publisher = Publisher { hub: Arc::new(hub) };
        let hub = &publisher.hub;
        let mut pending = Pending::default();
        let start = Instant::now();
        let items: &[(&str, &[u8])] = &[("t", b"1")];
        pending
            .submit(&publisher, 0, items, waiter(), start)
            .expect("submitted");
        assert!(pending.has_work());
        assert_eq!(pending.next_deadline(), Some(start + TIMEOUT));
        assert!(pending.resolved(start, hub).is_empty(), "not due yet");

        let given_up = pending.resolved(start + TIMEOUT, hub);
        assert!(matches!(
            given_up.as_slice(),
            [(_, Err(PublishError::Unavailable(m)))] if m.contains("may or may not")
        ));
        assert!(!pending.has_work());
        assert_eq!(pending.next_deadline(), None);

        // Redis answers after all: the worker must drain it (or it would never sleep again),
        // and answer nobody.
        for done in upstream.owed.lock().drain(..) {
            done(Ok(vec![7]));
        }
        assert!(pending.has_work(), "a late answer is work");
        assert!(pending.resolved(start + TIMEOUT * 2, hub).is_empty());
        assert!(!pending.has_work());
        let metrics = &hub.metrics;
        assert_eq!(metrics.answer_timeouts.load(Ordering::Relaxed), 1);
        assert_eq!(metrics.awaiting_answer.load(Ordering::Relaxed), 0);
    }
}
