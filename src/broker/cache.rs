//! The last-value cache: per topic, the latest publication and its sequence number, in shards
//! behind `parking_lot` mutexes so publishers on different topics rarely meet; beside them, the
//! [`TopicTree`] that wildcard snapshots are found in, and the count behind `--max-topics`.
//!
//! A shard's lock is also what orders publications of one topic: the publisher assigns the next
//! `seq` and hands the frame to every worker while holding it, so every worker receives a topic's
//! publications in `seq` order. Lock order: a shard, then the tree; never the other way.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard, RwLock};

use super::protocol::encode_msg_frame;
use super::tree::{Budget, TopicTree};
use crate::server::Frame;

const SHARDS: usize = 64;

/// What the cache keeps for a topic.
#[derive(Debug, Clone)]
pub struct TopicEntry {
    pub topic: Arc<str>,
    /// A small number naming the topic inside this process (the conflation key).
    pub id: u64,
    /// The topic as a JSON string literal, quotes included, escaped once.
    pub topic_json: Arc<str>,
    /// The latest sequence number, from 1.
    pub seq: u64,
    /// The latest live frame; the payload is `frame[payload]`.
    pub frame: Frame,
    pub payload: Range<usize>,
    /// The latest value as a snapshot frame, made when a subscriber first needs it and shared
    /// by every subscriber after it; `None` again after each publication. Beside it, the same
    /// compressed (permessage-deflate, window 15), likewise made once.
    pub snapshot: Option<Frame>,
    pub snapshot_deflated: Option<Frame>,
    /// The last publications (the latest included), with no seq missing between them: what a
    /// reconnecting subscriber can be replayed (`--history`).
    pub history: VecDeque<Sent>,
}

/// A publication as it went out: its seq, its live frame, and its delta frame if it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub seq: u64,
    pub full: Frame,
    pub delta: Option<Frame>,
}

impl Sent {
    /// What keeping it costs, roughly: the frames and the entry.
    pub fn bytes(&self) -> usize {
        self.full.len() + self.delta.as_ref().map_or(0, |d| d.len()) + 48
    }
}

/// Why a topic in `since` could not be recovered (it gets a snapshot instead).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotRecovered {
    /// The client's seqs are from another epoch (the feed restarted, or the seqs may have).
    Epoch,
    /// The topic has no value here.
    Unknown,
    /// The client claims a seq this topic has not reached.
    Future,
    /// The history no longer holds every publication after the client's seq.
    HistoryTooShort,
}

impl NotRecovered {
    pub const ALL: [NotRecovered; 4] = [
        NotRecovered::Epoch,
        NotRecovered::Unknown,
        NotRecovered::Future,
        NotRecovered::HistoryTooShort,
    ];

    pub fn label(self) -> &'static str {
        match self {
            NotRecovered::Epoch => "epoch",
            NotRecovered::Unknown => "unknown_topic",
            NotRecovered::Future => "future_seq",
            NotRecovered::HistoryTooShort => "history_too_short",
        }
    }
}

/// What a reconnecting subscriber that had a topic up to some seq gets.
#[derive(Debug, Clone)]
pub struct Replay {
    pub id: u64,
    /// The topic's latest seq: live updates up to it are covered by the replay.
    pub latest: u64,
    /// Every publication after the client's seq, in order.
    pub sent: Vec<Sent>,
}

impl TopicEntry {
    pub fn payload(&self) -> &[u8] {
        &self.frame[self.payload.clone()]
    }
}

/// A topic's snapshot, ready to send.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub id: u64,
    pub seq: u64,
    pub frame: Frame,
}

pub type Shard = HashMap<Arc<str>, TopicEntry>;

#[derive(Debug)]
pub struct Cache {
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
    next_id: AtomicU64,
    tree: RwLock<TopicTree>,
    /// Topics, plus room reserved by publishes under way (see [`Cache::reserve_topics`]).
    counted: AtomicUsize,
    max_topics: usize,
}

impl Cache {
    pub fn new(max_topics: usize) -> Self {
        Cache {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            next_id: AtomicU64::new(1),
            tree: RwLock::new(TopicTree::default()),
            counted: AtomicUsize::new(0),
            max_topics,
        }
    }

    /// Locks the shard that holds `topic`.
    pub fn lock(&self, topic: &str) -> MutexGuard<'_, Shard> {
        let i = (self.hasher.hash_one(topic) as usize) % SHARDS;
        self.shards[i].lock()
    }

    pub fn new_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Records a topic that just got its first value (called under its shard's lock, with
    /// room reserved by [`Cache::reserve_topics`] unless `reserved` is false).
    pub fn added(&self, topic: Arc<str>, id: u64, reserved: bool) {
        if !reserved {
            self.counted.fetch_add(1, Ordering::AcqRel);
        }
        self.tree.write().insert(topic, id);
    }

    /// Reserves room for `n` new topics under `--max-topics`; false (nothing reserved) if they
    /// do not fit. Give back what was not used with [`Cache::unreserve_topics`].
    pub fn reserve_topics(&self, n: usize) -> bool {
        if n == 0 {
            return true;
        }
        let before = self.counted.fetch_add(n, Ordering::AcqRel);
        if before + n > self.max_topics {
            self.counted.fetch_sub(n, Ordering::AcqRel);
            return false;
        }
        true
    }

    pub fn unreserve_topics(&self, n: usize) {
        if n > 0 {
            self.counted.fetch_sub(n, Ordering::AcqRel);
        }
    }

    pub fn max_topics(&self) -> usize {
        self.max_topics
    }

    pub fn contains(&self, topic: &str) -> bool {
        self.lock(topic).contains_key(topic)
    }

    /// The topic's id, if it has a value.
    pub fn id_of(&self, topic: &str) -> Option<u64> {
        self.lock(topic).get(topic).map(|e| e.id)
    }

    pub fn get(&self, topic: &str) -> Option<TopicEntry> {
        self.lock(topic).get(topic).cloned()
    }

    /// The topic's latest value as a shared snapshot frame, made once per publication; for a
    /// connection with server window `bits` and the compression threshold `min`
    /// (`deflate: Some((bits, min))`), compressed when it should be, also made once per
    /// publication when the window-15 bytes serve it (see `ws::deflate::window_bits_for`).
    pub fn snapshot(&self, topic: &str, deflate: Option<(u8, usize)>) -> Option<Snapshot> {
        let mut shard = self.lock(topic);
        let e = shard.get_mut(topic)?;
        let frame = match &e.snapshot {
            Some(f) => f.clone(),
            None => {
                let mut buf = Vec::new();
                encode_msg_frame(&mut buf, &e.topic_json, e.seq, true, e.payload());
                let f: Frame = Arc::from(buf);
                e.snapshot = Some(f.clone());
                f
            }
        };
        let frame = match deflate {
            Some((bits, min)) => match crate::ws::frame::server_frame_parts(&frame) {
                Some((op, payload)) if payload.len() >= min => {
                    let window = crate::ws::deflate::window_bits_for(payload.len(), bits);
                    if window == 15 {
                        e.snapshot_deflated
                            .get_or_insert_with(|| {
                                Arc::from(crate::ws::deflate::compressed_frame(op, payload, 15))
                            })
                            .clone()
                    } else {
                        Arc::from(crate::ws::deflate::compressed_frame(op, payload, window))
                    }
                }
                _ => frame,
            },
            None => frame,
        };
        Some(Snapshot {
            id: e.id,
            seq: e.seq,
            frame,
        })
    }

    /// Every publication of `topic` after seq `after`, if the history still holds them all.
    pub fn replay_after(&self, topic: &str, after: u64) -> Result<Replay, NotRecovered> {
        let shard = self.lock(topic);
        let e = shard.get(topic).ok_or(NotRecovered::Unknown)?;
        if after > e.seq {
            return Err(NotRecovered::Future);
        }
        let oldest = e.history.front().map_or(e.seq + 1, |s| s.seq);
        if after + 1 < oldest && after < e.seq {
            return Err(NotRecovered::HistoryTooShort);
        }
        let sent = e
            .history
            .iter()
            .filter(|s| s.seq > after)
            .cloned()
            .collect();
        Ok(Replay {
            id: e.id,
            latest: e.seq,
            sent,
        })
    }

    /// Calls `found` with topics matching `pattern` (valid, with wildcards), within `budget`,
    /// until it returns false. The tree is locked for reading meanwhile: `found` must not
    /// publish.
    pub fn matching(
        &self,
        pattern: &str,
        budget: Budget,
        found: impl FnMut(&super::tree::Named) -> bool,
    ) -> super::tree::Walked {
        self.tree.read().matching(pattern, budget, found)
    }

    /// Every entry, unordered. Costs a pass over every topic: not for worker threads.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))] // the Redis link reconciles with it
    pub fn all(&self) -> Vec<TopicEntry> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            out.extend(shard.lock().values().cloned());
        }
        out
    }

    /// Topics with a value.
    pub fn len(&self) -> usize {
        self.tree.read().len()
    }
}
