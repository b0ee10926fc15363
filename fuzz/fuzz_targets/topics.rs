//! Topic and pattern validation, and the trie index against the reference matcher.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tickwire::broker::index::SubscriptionIndex;
use tickwire::broker::topic;
use tickwire::server::ConnId;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // "pattern\ntopic"
    let (pattern, name) = text.split_once('\n').unwrap_or((text, ""));
    let pattern_ok = topic::validate_pattern(pattern).is_ok();
    let topic_ok = topic::validate_topic(name).is_ok();
    if topic_ok {
        assert!(
            topic::validate_pattern(name).is_ok(),
            "a topic is also a pattern"
        );
    }
    if pattern_ok && topic_ok {
        let mut index = SubscriptionIndex::default();
        index.insert(pattern, ConnId(7));
        let mut hits = 0;
        index.for_each_match(name, |_| hits += 1);
        assert_eq!(
            hits == 1,
            topic::matches(pattern, name),
            "{pattern:?} vs {name:?}"
        );
        index.remove(pattern, ConnId(7));
        index.for_each_match(name, |_| panic!("removed"));
    }
});
