//! The form a message takes for one subscriber: whole or a delta, plain or compressed.
//!
//! Compressed (permessage-deflate, negotiated by the engine): a frame of at least
//! `compress_min` bytes goes compressed to a connection that agreed it, built once per frame
//! and window ([`Deflated`]) and shared by every such connection — the server never uses
//! context takeover, so the bytes do not depend on the connection.
//!
//! Deltas: a subscriber that asked for `delta: true` gets a
//! topic's merge patch instead of its whole value when, and only when, the last message of that
//! topic it was sent is the publication just before (so it can apply the patch): never for its
//! first message of a topic (a snapshot, the start of a replay), never after a gap (merged by
//! `max_rate`, conflated while behind), and never while it is behind, since a held frame can be
//! replaced by a newer one before it goes out.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::cache::Sent;
use super::topic;
use crate::server::Frame;
use crate::ws::deflate::{compressed_frame, window_bits_for};
use crate::ws::frame::server_frame_parts;

/// Compressed forms of frames, each made once per window and shared by every connection that
/// takes it; one of these lives for the fan-out of one publication.
#[derive(Debug, Default)]
pub struct Deflated {
    /// (the frame's address, the window, the compressed frame).
    made: Vec<(usize, u8, Frame)>,
}

impl Deflated {
    /// `frame` in the form a connection with server window `bits` takes it (`None`: it did not
    /// agree permessage-deflate): compressed when its payload is at least `min` bytes.
    pub fn form<'a>(&'a mut self, frame: &'a Frame, bits: Option<u8>, min: usize) -> &'a Frame {
        let Some(bits) = bits else {
            return frame;
        };
        let Some((opcode, payload)) = server_frame_parts(frame) else {
            return frame;
        };
        if payload.len() < min {
            return frame;
        }
        let window = window_bits_for(payload.len(), bits);
        let key = Arc::as_ptr(frame).cast::<u8>() as usize;
        let found = self
            .made
            .iter()
            .position(|(k, w, _)| *k == key && *w == window);
        let i = match found {
            Some(i) => i,
            None => {
                let compressed = compressed_frame(opcode, payload, window);
                self.made.push((key, window, Arc::from(compressed)));
                self.made.len() - 1
            }
        };
        &self.made[i].2
    }
}

/// What a subscriber with delta patterns was last sent, per topic.
#[derive(Debug, Default)]
pub struct Deltas {
    /// Patterns subscribed with `delta: true`.
    patterns: HashSet<Box<str>>,
    topics: HashMap<u64, Track>,
    /// Bumped when `patterns` changes: whether a topic wants deltas is worked out again.
    generation: u64,
}

#[derive(Debug)]
struct Track {
    /// The seq of the last message of the topic sent to this subscriber.
    last: u64,
    wants: bool,
    generation: u64,
}

impl Deltas {
    /// The patterns of a subscribe request, with its `delta` option. Returns the change in the
    /// number of delta patterns (for the hub's count).
    pub fn set(&mut self, patterns: &[String], on: bool) -> isize {
        let before = self.patterns.len() as isize;
        for p in patterns {
            if on {
                self.patterns.insert(p.as_str().into());
            } else {
                self.patterns.remove(p.as_str());
            }
        }
        self.generation += 1;
        self.patterns.len() as isize - before
    }

    /// Unsubscribed patterns. Returns the change in the number of delta patterns.
    ///
    /// What was sent of every topic is forgotten too, so the next message of each is whole: a
    /// client drops its copy of a topic it no longer subscribes to (and what was still on the way
    /// for the old subscription), and a subscription made again later, whose snapshot a live
    /// update overtakes, must not get a patch on data the client let go. Unsubscribing is rare;
    /// one whole message per topic after it is cheap.
    pub fn unsubscribed(&mut self, removed: &[&String]) -> isize {
        let before = self.patterns.len() as isize;
        for p in removed {
            self.patterns.remove(p.as_str());
        }
        if !removed.is_empty() {
            self.topics.clear();
        }
        self.generation += 1;
        self.patterns.len() as isize - before
    }

    /// Delta patterns held (all given back when the subscriber goes).
    pub fn count(&self) -> usize {
        self.patterns.len()
    }

    /// The frame to send for publication `sent` of topic `id`, and records that it was sent.
    /// `behind`: the connection is conflating (its frames may be replaced before they go).
    pub fn choose<'s>(&mut self, id: u64, name: &str, sent: &'s Sent, behind: bool) -> &'s Frame {
        let generation = self.generation;
        let patterns = &self.patterns;
        let track = self.topics.entry(id).or_insert_with(|| Track {
            last: 0,
            wants: false,
            generation: generation.wrapping_sub(1),
        });
        if track.generation != generation {
            track.wants = patterns.iter().any(|p| topic::matches(p, name));
            track.generation = generation;
        }
        let previous = std::mem::replace(&mut track.last, sent.seq);
        match &sent.delta {
            Some(delta) if track.wants && !behind && previous + 1 == sent.seq => delta,
            _ => &sent.full,
        }
    }

    /// A whole value of topic `id` with seq `seq` was sent (a snapshot).
    pub fn sent_full(&mut self, id: u64, seq: u64) {
        if let Some(track) = self.topics.get_mut(&id) {
            track.last = seq;
        } else if !self.patterns.is_empty() {
            self.topics.insert(
                id,
                Track {
                    last: seq,
                    wants: false,
                    generation: self.generation.wrapping_sub(1),
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn sent(seq: u64) -> Sent {
        Sent {
            seq,
            full: Arc::from(format!("full {seq}").as_bytes()),
            delta: Some(Arc::from(format!("delta {seq}").as_bytes())),
        }
    }

    fn text(f: &Frame) -> &str {
        std::str::from_utf8(f).unwrap()
    }

    #[test]
    fn a_delta_only_after_the_previous_seq_was_sent() {
        let mut d = Deltas::default();
        assert_eq!(d.set(&["q/+".to_owned()], true), 1);
        // The first message of a topic is whole.
        assert_eq!(text(d.choose(1, "q/A", &sent(5), false)), "full 5");
        assert_eq!(text(d.choose(1, "q/A", &sent(6), false)), "delta 6");
        // A gap (merged or conflated away): whole again, then deltas.
        assert_eq!(text(d.choose(1, "q/A", &sent(8), false)), "full 8");
        assert_eq!(text(d.choose(1, "q/A", &sent(9), false)), "delta 9");
        // Behind: whole, since a held frame may be replaced.
        assert_eq!(text(d.choose(1, "q/A", &sent(10), true)), "full 10");
        // A snapshot is whole and counts as sent.
        d.sent_full(1, 20);
        assert_eq!(text(d.choose(1, "q/A", &sent(21), false)), "delta 21");
        // Topics no delta pattern matches stay whole.
        assert_eq!(text(d.choose(2, "x/B", &sent(1), false)), "full 1");
        assert_eq!(text(d.choose(2, "x/B", &sent(2), false)), "full 2");
        // A later subscribe without delta turns it off.
        assert_eq!(d.set(&["q/+".to_owned()], false), -1);
        assert_eq!(text(d.choose(1, "q/A", &sent(22), false)), "full 22");
    }

    #[test]
    fn after_an_unsubscribe_the_next_message_of_a_topic_is_whole() {
        let mut d = Deltas::default();
        let (a, b) = ("q/A".to_owned(), "q/B".to_owned());
        d.set(std::slice::from_ref(&a), true);
        d.set(std::slice::from_ref(&b), true);
        assert_eq!(text(d.choose(1, "q/A", &sent(5), false)), "full 5");
        assert_eq!(text(d.choose(1, "q/A", &sent(6), false)), "delta 6");
        // q/A unsubscribed and subscribed again: the client forgot seq 6.
        assert_eq!(d.unsubscribed(&[&a]), -1);
        d.set(std::slice::from_ref(&a), true);
        assert_eq!(text(d.choose(1, "q/A", &sent(7), false)), "full 7");
        assert_eq!(text(d.choose(1, "q/A", &sent(8), false)), "delta 8");
        // Unsubscribing something that was not subscribed changes nothing.
        assert_eq!(d.unsubscribed(&[]), 0);
        assert_eq!(text(d.choose(1, "q/A", &sent(9), false)), "delta 9");
    }

    #[test]
    fn a_frame_is_compressed_once_per_window_and_only_when_large_enough() {
        use crate::ws::frame::{encode_server_frame, OpCode};
        let big: Frame = Arc::from(encode_server_frame(OpCode::Text, &[b'a'; 600]));
        let small: Frame = Arc::from(encode_server_frame(OpCode::Text, b"tiny"));
        let mut d = Deflated::default();
        assert!(
            Arc::ptr_eq(d.form(&big, None, 256), &big),
            "no deflate: as it is"
        );
        assert!(
            Arc::ptr_eq(d.form(&small, Some(15), 256), &small),
            "too small: plain"
        );
        let first = d.form(&big, Some(15), 256).clone();
        assert_eq!(first[0] & 0x40, 0x40, "RSV1 set");
        assert!(first.len() < big.len());
        // Any window the message fits shares the window-15 bytes; a smaller one gets its own.
        assert!(Arc::ptr_eq(d.form(&big, Some(12), 256), &first));
        let nine = d.form(&big, Some(9), 256).clone();
        assert!(!Arc::ptr_eq(&nine, &first));
        assert_eq!(d.made.len(), 2);
    }
}
