//! The NDJSON batch parser: any text either parses into valid publications or names a line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tickwire::broker::{protocol, topic};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match protocol::parse_batch(text) {
        Ok(items) => {
            for (line, p) in items {
                assert!(line >= 1 && line <= text.lines().count());
                assert!(topic::validate_topic(&p.topic).is_ok());
            }
        }
        Err(e) => assert!(e.line >= 1 && e.line <= text.lines().count().max(1)),
    }
});
