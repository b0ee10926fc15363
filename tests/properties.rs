//! Properties of the sans-IO layers, checked on generated inputs: a frame stream decodes to the
//! same messages however it is chunked (with permessage-deflate too), encode/decode
//! round-trips, the subscription trie agrees with the naive matcher, and entitlement coverage
//! is exact (what it allows is all granted; what it refuses has a topic to show for it).

use proptest::prelude::*;
use tickwire::broker::coverage::Grants;
use tickwire::broker::index::SubscriptionIndex;
use tickwire::broker::topic;
use tickwire::server::ConnId;
use tickwire::ws::deflate::DeflateParams;
use tickwire::ws::frame::{encode_client_frame, parse_client_header, OpCode, Parsed};
use tickwire::ws::{Incoming, Limits, WsContext};

/// A message as a client might send it: text or binary, split into fragments, with pings between.
#[derive(Debug, Clone)]
struct Msg {
    text: bool,
    bytes: Vec<u8>,
    cuts: Vec<usize>,
    ping_after_first: bool,
}

fn msg() -> impl Strategy<Value = Msg> {
    (
        any::<bool>(),
        "\\PC{0,40}",
        prop::collection::vec(any::<u8>(), 0..300),
        prop::collection::vec(0usize..300, 0..4),
        any::<bool>(),
    )
        .prop_map(|(text, s, bin, mut cuts, ping)| {
            let bytes = if text { s.into_bytes() } else { bin };
            cuts.retain(|&c| c <= bytes.len());
            cuts.sort_unstable();
            Msg {
                text,
                bytes,
                cuts,
                ping_after_first: ping,
            }
        })
}

fn encode(msgs: &[Msg], key: [u8; 4]) -> (Vec<u8>, Vec<Incoming>) {
    encode_with(msgs, key, None)
}

/// The same messages from a client that negotiated permessage-deflate: those marked in
/// `compress` are compressed by one compressor across them all (context takeover), and their
/// compressed bytes cut into fragments at the message's cut points (those that still fit).
fn encode_with(msgs: &[Msg], key: [u8; 4], compress: Option<&[bool]>) -> (Vec<u8>, Vec<Incoming>) {
    use flate2::{Compress, Compression, FlushCompress};
    let mut deflater = Compress::new_with_window_bits(Compression::default(), false, 15);
    let mut wire = Vec::new();
    let mut expect = Vec::new();
    for (n, m) in msgs.iter().enumerate() {
        let compressed = compress.is_some_and(|c| c.get(n).copied().unwrap_or(false));
        let data = if compressed {
            let mut out = Vec::with_capacity(m.bytes.len() + 1024);
            deflater
                .compress_vec(&m.bytes, &mut out, FlushCompress::Sync)
                .expect("deflate");
            // zlib flushes nothing at all for an empty message right after a flush: the
            // compressed message is then empty (it inflates, tail appended, to nothing).
            if out.ends_with(&[0, 0, 0xff, 0xff]) {
                out.truncate(out.len() - 4);
            }
            out
        } else {
            m.bytes.clone()
        };
        let mut bounds = vec![0];
        bounds.extend(m.cuts.iter().filter(|&&c| c <= data.len()));
        bounds.push(data.len());
        let pieces: Vec<&[u8]> = bounds.windows(2).map(|w| &data[w[0]..w[1]]).collect();
        for (i, piece) in pieces.iter().enumerate() {
            let op = match (i, m.text) {
                (0, true) => OpCode::Text,
                (0, false) => OpCode::Binary,
                _ => OpCode::Continuation,
            };
            let mut frame = encode_client_frame(i + 1 == pieces.len(), op, piece, key);
            if compressed && i == 0 {
                frame[0] |= 0x40;
            }
            wire.extend(frame);
            if i == 0 && m.ping_after_first && pieces.len() > 1 {
                wire.extend(encode_client_frame(true, OpCode::Ping, b"p", key));
                expect.push(Incoming::Ping(b"p".to_vec()));
            }
        }
        expect.push(if m.text {
            Incoming::Text(String::from_utf8(m.bytes.clone()).expect("generated as a string"))
        } else {
            Incoming::Binary(m.bytes.clone())
        });
    }
    (wire, expect)
}

fn decode(chunks: &[&[u8]]) -> Vec<Incoming> {
    decode_with(chunks, None)
}

fn decode_with(chunks: &[&[u8]], deflate: Option<DeflateParams>) -> Vec<Incoming> {
    let mut ctx = WsContext::new(Limits {
        max_frame: 1 << 20,
        max_message: 1 << 20,
    })
    .with_deflate(deflate);
    let mut events = Vec::new();
    let mut pending = Vec::new();
    for chunk in chunks {
        pending.extend_from_slice(chunk);
        let mut pos = 0;
        loop {
            let (n, ev) = ctx.read(&pending[pos..]).expect("valid stream");
            pos += n;
            match ev {
                Some(ev) => events.push(ev),
                None => break,
            }
        }
        pending.drain(..pos);
    }
    assert!(pending.is_empty(), "a whole stream leaves nothing behind");
    events
}

/// `wire` cut at the given points (in any order, repeats allowed): every byte in exactly one chunk.
fn cut_at<'a>(wire: &'a [u8], cuts: &[prop::sample::Index]) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c.index(wire.len() + 1)).collect();
    points.sort_unstable();
    let mut chunks = Vec::new();
    let mut prev = 0;
    for p in points.into_iter().chain(std::iter::once(wire.len())) {
        chunks.push(&wire[prev..p]);
        prev = p;
    }
    chunks
}

proptest! {
    #[test]
    fn any_chunking_gives_the_same_messages(
        msgs in prop::collection::vec(msg(), 1..5),
        key in any::<[u8; 4]>(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let (wire, expect) = encode(&msgs, key);
        let chunks = cut_at(&wire, &cuts);
        prop_assert_eq!(decode(&chunks), expect);
    }

    #[test]
    fn compressed_messages_decode_the_same_under_any_chunking(
        msgs in prop::collection::vec(msg(), 1..5),
        compress in prop::collection::vec(any::<bool>(), 5),
        key in any::<[u8; 4]>(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let (wire, expect) = encode_with(&msgs, key, Some(&compress));
        let chunks = cut_at(&wire, &cuts);
        let agreed = DeflateParams {
            server_max_window_bits: None,
            client_max_window_bits: None,
            client_no_context_takeover: false,
        };
        prop_assert_eq!(decode_with(&chunks, Some(agreed)), expect);
    }

    #[test]
    fn server_compression_round_trips(
        data in prop::collection::vec(any::<u8>(), 0..3000),
        repeat in 1usize..4,
        bits in 9u8..=15,
    ) {
        use tickwire::ws::deflate::{compress, Inflater};
        let data = data.repeat(repeat);
        let z = compress(&data, bits);
        let mut i = Inflater::new(bits, &[]).expect("inflater");
        let mut out = Vec::new();
        i.inflate(&z, &mut out, data.len()).expect("inflates");
        i.finish(&mut out, data.len()).expect("finishes");
        prop_assert_eq!(out, data);
    }

    #[test]
    fn header_encode_decode_round_trip(
        fin in any::<bool>(),
        op in prop::sample::select(vec![OpCode::Text, OpCode::Binary, OpCode::Continuation]),
        len in prop_oneof![0usize..130, 65530usize..65540, 70000usize..70010],
        key in any::<[u8; 4]>(),
    ) {
        let payload = vec![0x5a; len];
        let frame = encode_client_frame(fin, op, &payload, key);
        match parse_client_header(&frame, u64::MAX >> 1) {
            Ok(Parsed::Complete(h, n)) => {
                prop_assert_eq!(h.fin, fin);
                prop_assert_eq!(h.opcode, op);
                prop_assert_eq!(h.payload_len, len as u64);
                prop_assert_eq!(h.mask, Some(key));
                prop_assert_eq!(n + len, frame.len());
            }
            other => prop_assert!(false, "unexpected {:?}", other),
        }
    }

    #[test]
    fn the_trie_agrees_with_the_naive_matcher(
        patterns in prop::collection::vec("(a|b|\\+)(/(a|b|c|\\+))*(/#)?|#", 1..12),
        topics in prop::collection::vec("(a|b|c)(/(a|b|c)){0,3}", 1..12),
    ) {
        let mut index = SubscriptionIndex::default();
        for (i, p) in patterns.iter().enumerate() {
            prop_assert!(topic::validate_pattern(p).is_ok(), "{}", p);
            index.insert(p, ConnId(i));
        }
        for t in &topics {
            let mut got = Vec::new();
            index.for_each_match(t, |c| got.push(c.0));
            got.sort_unstable();
            let want: Vec<usize> = (0..patterns.len()).filter(|&i| topic::matches(&patterns[i], t)).collect();
            prop_assert_eq!(got, want, "topic {}", t);
        }
        for (i, p) in patterns.iter().enumerate() {
            index.remove(p, ConnId(i));
        }
        for t in &topics {
            index.for_each_match(t, |c| panic!("{c:?} still matches {t} after removal"));
        }
    }
}

/// Every topic of 1 to `max` levels over `alphabet`.
fn all_topics(alphabet: &[&str], max: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut layer: Vec<String> = alphabet.iter().map(|s| s.to_string()).collect();
    for _ in 0..max {
        out.extend(layer.iter().cloned());
        layer = layer
            .iter()
            .flat_map(|t| alphabet.iter().map(move |l| format!("{t}/{l}")))
            .collect();
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Grants and patterns over the literals `a` and `b`; topics over `a`, `b` and `c` (a level
    /// no grant names, standing for every other). Covered means every matching topic is granted
    /// (checked on every topic up to 6 levels, past any grant's length); not covered means the
    /// example topic given matches the pattern and no grant.
    #[test]
    fn coverage_is_exact(
        grants in prop::collection::vec("(a|b|\\+)(/(a|b|\\+)){0,3}(/#)?|#", 0..5),
        pattern in "(a|b|\\+)(/(a|b|\\+)){0,3}(/#)?|#",
    ) {
        let g = Grants::new(&grants).expect("generated grants are valid");
        match g.uncovered(&pattern) {
            None => {
                for t in all_topics(&["a", "b", "c"], 6) {
                    if topic::matches(&pattern, &t) {
                        prop_assert!(
                            grants.iter().any(|g| topic::matches(g, &t)),
                            "{pattern} called covered by {grants:?}, but {t} is not granted"
                        );
                    }
                }
            }
            Some(example) => {
                prop_assert!(topic::validate_topic(&example).is_ok(), "{example}");
                prop_assert!(topic::matches(&pattern, &example), "{example} vs {pattern}");
                prop_assert!(
                    !grants.iter().any(|g| topic::matches(g, &example)),
                    "{example} is granted by {grants:?}"
                );
            }
        }
    }

    /// Random topics matching a covered pattern are granted, with longer names too.
    #[test]
    fn covered_patterns_only_reach_granted_topics(
        grants in prop::collection::vec("([a-c]{1,2}|\\+)(/([a-c]{1,2}|\\+)){0,4}(/#)?|#", 1..6),
        pattern in "([a-c]{1,2}|\\+)(/([a-c]{1,2}|\\+)){0,4}(/#)?|#",
        topics in prop::collection::vec("[a-d]{1,3}(/[a-d]{1,3}){0,6}", 1..40),
    ) {
        let g = Grants::new(&grants).expect("valid");
        if g.covers(&pattern) {
            for t in topics.iter().filter(|t| topic::matches(&pattern, t)) {
                prop_assert!(grants.iter().any(|g| topic::matches(g, t)), "{t}");
            }
        }
    }
}
