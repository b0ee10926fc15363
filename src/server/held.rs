//! Conflation: while a connection is behind, the frames sent to it with a key (the latest quote
//! of a topic) are held here instead of queued, only the latest per key, and released in the
//! order their keys were first held as the connection catches up.
//!
//! The frames are shared (`Arc`), normally with the last-value cache, so what a connection holds
//! costs about one map entry per key, whatever the size of the quotes.

use std::collections::{HashMap, VecDeque};

use super::outbound::Frame;

/// What one held key costs, for the outbound limit: the map entry and its place in the order.
pub(crate) const ENTRY_COST: usize = 64;

/// The latest frame per key, waiting for the queue to drain.
#[derive(Debug, Default)]
pub(crate) struct Held {
    frames: HashMap<u64, Frame>,
    /// Keys in the order they were first held; each key once.
    order: VecDeque<u64>,
}

impl Held {
    /// Holds `frame` as the latest for `key`; true if it replaced an older one (conflated).
    pub fn hold(&mut self, key: u64, frame: &Frame) -> bool {
        match self.frames.insert(key, frame.clone()) {
            Some(_) => true,
            None => {
                self.order.push_back(key);
                false
            }
        }
    }

    /// Forgets the frame held for `key` (the connection no longer wants it).
    pub fn forget(&mut self, key: u64) {
        if self.frames.remove(&key).is_some() {
            self.order.retain(|&k| k != key);
        }
    }

    /// The frame of the key held longest.
    pub fn pop(&mut self) -> Option<Frame> {
        let key = self.order.pop_front()?;
        self.frames.remove(&key)
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// What this costs against the outbound limit.
    pub fn cost(&self) -> usize {
        self.len() * ENTRY_COST
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn f(s: &str) -> Frame {
        Arc::from(s.as_bytes())
    }

    #[test]
    fn the_latest_per_key_comes_out_in_first_held_order() {
        let mut h = Held::default();
        assert!(!h.hold(1, &f("a1")));
        assert!(!h.hold(2, &f("b1")));
        assert!(h.hold(1, &f("a2")), "a newer frame replaces the older");
        assert!(!h.hold(3, &f("c1")));
        h.forget(3);
        assert_eq!(h.len(), 2);
        assert_eq!(h.cost(), 2 * ENTRY_COST);
        assert_eq!(&*h.pop().unwrap(), b"a2");
        assert_eq!(&*h.pop().unwrap(), b"b1");
        assert!(h.pop().is_none());
        assert!(h.is_empty());
    }
}
