//! The subscriber JSON protocol and the publication envelope, on any text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tickwire::broker::protocol;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match protocol::parse_request(text, 128) {
        Ok(_) => {}
        Err(e) => {
            // Every error renders as valid JSON.
            let rendered = protocol::error(&e);
            assert!(
                serde_json::from_str::<serde_json::Value>(&rendered).is_ok(),
                "{rendered}"
            );
        }
    }
    let _ = protocol::parse_publication(text);
});
