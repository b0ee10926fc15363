//! The last-value cache: per topic, the latest publication and its sequence number, in shards
//! behind `parking_lot` mutexes so publishers on different topics rarely meet.
//!
//! A shard's lock is also what orders publications of one topic: the publisher assigns the next
//! `seq` and hands the frame to every worker while holding it, so every worker receives a topic's
//! publications in `seq` order.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};

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
}

impl TopicEntry {
    pub fn payload(&self) -> &[u8] {
        &self.frame[self.payload.clone()]
    }
}

pub type Shard = HashMap<Arc<str>, TopicEntry>;

#[derive(Debug)]
pub struct Cache {
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
    next_id: AtomicU64,
}

impl Default for Cache {
    fn default() -> Self {
        Cache {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            next_id: AtomicU64::new(1),
        }
    }
}

impl Cache {
    /// Locks the shard that holds `topic`.
    pub fn lock(&self, topic: &str) -> MutexGuard<'_, Shard> {
        let i = (self.hasher.hash_one(topic) as usize) % SHARDS;
        self.shards[i].lock()
    }

    pub fn new_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    pub fn get(&self, topic: &str) -> Option<TopicEntry> {
        self.lock(topic).get(topic).cloned()
    }

    /// Every entry whose topic satisfies `keep`, at most `limit`, sorted by topic.
    pub fn collect(&self, mut keep: impl FnMut(&str) -> bool, limit: usize) -> Vec<TopicEntry> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            for (topic, entry) in shard.lock().iter() {
                if keep(topic) {
                    out.push(entry.clone());
                }
            }
        }
        out.sort_by(|a, b| a.topic.cmp(&b.topic));
        out.truncate(limit);
        out
    }

    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }
}
