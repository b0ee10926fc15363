//! A connection's outbound queue: encoded frames waiting for the socket, many per `write`.
//!
//! Frames published to many connections are shared: a publication reaches a worker as one
//! [`Frame`] (an `Arc`), which the worker keeps once in its [`FrameTable`] with a plain count of
//! the queues that hold it, so fan-out to thousands of connections costs a counter increment per
//! connection rather than an atomic one. Frames for one connection (echoes, pongs, HTTP
//! responses) are owned. An empty queue gives its ring back: the smallest at once, a larger one at
//! the next timer sweep ([`OutQueue::release_buffer`]); an idle connection costs nothing here
//! but the struct.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::Arc;

use slab::Slab;

/// An encoded frame, shared by every connection it is queued on.
pub type Frame = Arc<[u8]>;

/// The capacity a ring gets on its first push (the standard library's smallest for a chunk's
/// size): a ring no larger is given back as soon as it is empty.
const SMALLEST_RING: usize = 4;

/// At most this many bytes are gathered into one `write`.
const GATHER_BYTES: usize = 64 * 1024;

/// The shared frames queued on one worker's connections, each with the number of queue
/// entries that point at it. Worker-local, so the counts need no atomics.
#[derive(Debug, Default)]
pub(crate) struct FrameTable {
    entries: Slab<(Frame, usize)>,
    /// The entry the last `acquire` took: fan-out queues one frame on many connections in a row.
    last: Option<usize>,
}

impl FrameTable {
    fn acquire(&mut self, frame: &Frame) -> usize {
        if let Some(key) = self.last {
            if let Some((f, refs)) = self.entries.get_mut(key) {
                if Arc::ptr_eq(f, frame) {
                    *refs += 1;
                    return key;
                }
            }
        }
        let key = self.entries.insert((frame.clone(), 1));
        self.last = Some(key);
        key
    }

    fn bytes(&self, key: usize) -> &[u8] {
        self.entries.get(key).map_or(&[], |(f, _)| f)
    }

    fn release(&mut self, key: usize) {
        if let Some((_, refs)) = self.entries.get_mut(key) {
            *refs -= 1;
            if *refs == 0 {
                self.entries.remove(key);
                if self.last == Some(key) {
                    self.last = None;
                }
            }
        }
    }

    /// Frames held (for tests: everything released means nothing held).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

/// One queued frame. Fan-out queues dozens of frames per turn on each of thousands of
/// connections, and those pushes and the gathering `write` walk the ring of chunks, so its size
/// is cache misses: an owned frame is boxed, keeping a chunk at 16 bytes where a `Vec` inline
/// made every chunk 32 (BENCHMARKS.md, "Below the ceiling": S1's user time per delivery).
#[derive(Debug)]
enum Chunk {
    /// A key into the worker's [`FrameTable`].
    Shared(usize),
    /// A frame for this connection only (a pong, an HTTP response, an acknowledgement). The
    /// extra allocation is the point: a thin pointer keeps the chunk at two words.
    #[allow(clippy::box_collection)]
    Owned(Box<Vec<u8>>),
}

impl Chunk {
    fn bytes<'a>(&'a self, table: &'a FrameTable) -> &'a [u8] {
        match self {
            Chunk::Shared(key) => table.bytes(*key),
            Chunk::Owned(v) => v,
        }
    }

    fn release(self, table: &mut FrameTable) {
        if let Chunk::Shared(key) = self {
            table.release(key);
        }
    }
}

/// Bytes waiting to be written to one socket, in order.
#[derive(Debug, Default)]
pub(crate) struct OutQueue {
    chunks: VecDeque<Chunk>,
    /// How much of the front chunk has already been written.
    head_written: usize,
    /// Bytes waiting, over all chunks, minus `head_written`.
    bytes: usize,
}

impl OutQueue {
    pub fn push_shared(&mut self, frame: &Frame, table: &mut FrameTable) {
        self.bytes += frame.len();
        self.chunks.push_back(Chunk::Shared(table.acquire(frame)));
    }

    pub fn push_owned(&mut self, bytes: Vec<u8>) {
        self.bytes += bytes.len();
        self.chunks.push_back(Chunk::Owned(Box::new(bytes)));
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// Bytes still waiting to be written.
    pub fn len_bytes(&self) -> usize {
        self.bytes
    }

    /// Gives the ring back to the allocator if nothing waits in it. Called for every connection
    /// by the timer sweep: a ring larger than the smallest is not given back whenever the queue
    /// empties (a connection being fanned out to empties its queue every turn, and would
    /// allocate and regrow its ring every turn), but an idle connection must not keep it.
    pub fn release_buffer(&mut self) {
        if self.chunks.is_empty() && self.chunks.capacity() > 0 {
            self.chunks = VecDeque::new();
        }
    }

    /// Drops everything not yet started, keeping a half-written frame so the stream stays valid.
    pub fn discard_unstarted(&mut self, table: &mut FrameTable) {
        let keep = usize::from(self.head_written > 0);
        while self.chunks.len() > keep {
            if let Some(c) = self.chunks.pop_back() {
                self.bytes -= c.bytes(table).len();
                c.release(table);
            }
        }
    }

    /// Gives back every shared frame; the queue is empty after. Call before dropping it.
    pub fn release_all(&mut self, table: &mut FrameTable) {
        for c in self.chunks.drain(..) {
            c.release(table);
        }
        self.bytes = 0;
        self.head_written = 0;
    }

    /// Writes as much as the socket takes. Returns `Ok(true)` when the queue is empty,
    /// `Ok(false)` when the socket would block first.
    ///
    /// Quotes are small (~150 bytes), and the kernel's per-iovec cost outweighs one memcpy of
    /// such a frame, so small chunks are gathered into one buffer and written with one `write`;
    /// a chunk of `GATHER_BYTES` or more is written straight from where it is.
    pub fn write_to<W: Write>(&mut self, w: &mut W, table: &mut FrameTable) -> io::Result<bool> {
        thread_local! {
            static GATHER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
        }
        while let Some(front) = self.chunks.front() {
            let head = &front.bytes(table)[self.head_written..];
            let result = if head.len() >= GATHER_BYTES {
                w.write(head)
            } else {
                GATHER.with(|gather| {
                    let mut gather = gather.borrow_mut();
                    gather.clear();
                    gather.extend_from_slice(head);
                    for chunk in self.chunks.iter().skip(1) {
                        let bytes = chunk.bytes(table);
                        if gather.len() + bytes.len() > GATHER_BYTES {
                            break;
                        }
                        gather.extend_from_slice(bytes);
                    }
                    w.write(&gather)
                })
            };
            match result {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => self.advance(written, table),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        let ring = self.chunks.capacity();
        if ring > 32 || ring <= SMALLEST_RING {
            // Give back the ring a burst left behind, and the smallest one at once: that is
            // all a connection that gets a message now and then (a handshake answer, an
            // acknowledgement, a ping) ever uses, and making it again is one small allocation.
            // Rings in between stay until the timer sweep ([`Self::release_buffer`]), so a
            // connection under steady fan-out does not allocate and regrow its ring every turn.
            self.chunks = VecDeque::new();
        }
        Ok(true)
    }

    fn advance(&mut self, mut written: usize, table: &mut FrameTable) {
        self.bytes -= written;
        while written > 0 {
            let Some(front) = self.chunks.front() else {
                return;
            };
            let left = front.bytes(table).len() - self.head_written;
            if written >= left {
                written -= left;
                self.head_written = 0;
                if let Some(done) = self.chunks.pop_front() {
                    done.release(table);
                }
            } else {
                self.head_written += written;
                written = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::IoSlice;

    /// A writer that takes at most `cap` bytes per call, then blocks after `calls` calls.
    struct Trickle {
        out: Vec<u8>,
        cap: usize,
        calls: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(buf)])
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            if self.calls == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.calls -= 1;
            let mut taken = 0;
            for b in bufs {
                let n = b.len().min(self.cap - taken);
                self.out.extend_from_slice(&b[..n]);
                taken += n;
            }
            Ok(taken)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_chunk_is_two_words() {
        assert_eq!(std::mem::size_of::<Chunk>(), 16);
    }

    #[test]
    fn partial_writes_resume_where_they_stopped() {
        let mut q = OutQueue::default();
        let mut t = FrameTable::default();
        let shared: Frame = Arc::from(&b"shared-frame"[..]);
        q.push_owned(b"hello ".to_vec());
        q.push_shared(&shared, &mut t);
        q.push_owned(b" end".to_vec());
        assert_eq!(q.len_bytes(), 22);
        let mut w = Trickle {
            out: Vec::new(),
            cap: 5,
            calls: 2,
        };
        assert!(!q.write_to(&mut w, &mut t).unwrap());
        assert_eq!(q.len_bytes(), 12);
        w.calls = 100;
        assert!(q.write_to(&mut w, &mut t).unwrap());
        assert_eq!(w.out, b"hello shared-frame end");
        assert_eq!(q.len_bytes(), 0);
        assert!(q.is_empty());
        assert_eq!(t.len(), 0, "a written frame is released");
    }

    #[test]
    fn large_chunks_between_small_ones_keep_their_order() {
        let mut q = OutQueue::default();
        let mut t = FrameTable::default();
        let big: Vec<u8> = (0..GATHER_BYTES + 1000).map(|i| i as u8).collect();
        q.push_owned(b"small-1 ".to_vec());
        q.push_shared(&Arc::from(&big[..]), &mut t);
        q.push_owned(b"small-2 ".to_vec());
        q.push_shared(&Arc::from(&big[..]), &mut t);
        let mut w = Trickle {
            out: Vec::new(),
            cap: 30_000,
            calls: 1000,
        };
        assert!(q.write_to(&mut w, &mut t).unwrap());
        let mut expected = b"small-1 ".to_vec();
        expected.extend_from_slice(&big);
        expected.extend_from_slice(b"small-2 ");
        expected.extend_from_slice(&big);
        assert_eq!(w.out, expected);
        assert_eq!(q.len_bytes(), 0);
    }

    #[test]
    fn discard_keeps_the_half_written_frame() {
        let mut q = OutQueue::default();
        let mut t = FrameTable::default();
        q.push_owned(vec![1; 10]);
        q.push_owned(vec![2; 10]);
        let mut w = Trickle {
            out: Vec::new(),
            cap: 4,
            calls: 1,
        };
        assert!(!q.write_to(&mut w, &mut t).unwrap());
        q.discard_unstarted(&mut t);
        assert_eq!(q.len_bytes(), 6);
        w.calls = 10;
        assert!(q.write_to(&mut w, &mut t).unwrap());
        assert_eq!(w.out, vec![1; 10]);
    }

    #[test]
    fn an_emptied_queue_keeps_no_ring_once_idle() {
        let mut t = FrameTable::default();
        let mut w = Trickle {
            out: Vec::new(),
            cap: usize::MAX,
            calls: 100,
        };
        // A handshake answer and an acknowledgement: the smallest ring, given back at once.
        let mut q = OutQueue::default();
        q.push_owned(b"HTTP/1.1 101".to_vec());
        q.push_owned(b"ack".to_vec());
        assert!(q.write_to(&mut w, &mut t).unwrap());
        assert_eq!(q.chunks.capacity(), 0);
        // A burst: the ring stays for the next turn's burst, until the sweep finds it idle.
        let frame: Frame = Arc::from(&b"quote"[..]);
        for _ in 0..10 {
            q.push_shared(&frame, &mut t);
        }
        assert!(q.write_to(&mut w, &mut t).unwrap());
        assert!(q.chunks.capacity() > SMALLEST_RING);
        q.release_buffer();
        assert_eq!(q.chunks.capacity(), 0);
        // A queue with something waiting keeps its ring.
        q.push_owned(b"x".to_vec());
        q.release_buffer();
        assert_eq!(q.len_bytes(), 1);
    }

    #[test]
    fn one_frame_on_many_queues_is_held_once_until_the_last_lets_go() {
        let mut t = FrameTable::default();
        let frame: Frame = Arc::from(&b"quote"[..]);
        let mut queues: Vec<OutQueue> = (0..3).map(|_| OutQueue::default()).collect();
        for q in &mut queues {
            q.push_shared(&frame, &mut t);
        }
        assert_eq!(t.len(), 1);
        assert_eq!(
            Arc::strong_count(&frame),
            2,
            "one count for the table, not one per queue"
        );
        let mut w = Trickle {
            out: Vec::new(),
            cap: 100,
            calls: 10,
        };
        assert!(queues[0].write_to(&mut w, &mut t).unwrap());
        queues[1].release_all(&mut t);
        assert_eq!(t.len(), 1, "the third queue still holds it");
        queues[2].discard_unstarted(&mut t);
        assert_eq!(t.len(), 0);
        assert_eq!(Arc::strong_count(&frame), 1);
        // A new frame after the old one is gone gets an entry of its own.
        let next: Frame = Arc::from(&b"quote 2"[..]);
        queues[0].push_shared(&next, &mut t);
        queues[0].push_shared(&frame, &mut t);
        assert_eq!(t.len(), 2);
        assert!(queues[0].write_to(&mut w, &mut t).unwrap());
        assert_eq!(w.out, b"quotequote 2quote");
        assert_eq!(t.len(), 0);
    }
}
