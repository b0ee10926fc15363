//! What a published payload must be (UTF-8 JSON, nested at most a depth), on any bytes: the
//! check agrees with serde_json about what is JSON within the depth, and never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tickwire::broker::payload;

/// serde_json's strict parse, except that a number too large for an f64 (`2e909`) is still JSON
/// by the grammar (browsers read it as Infinity): the check accepts it, `Value` does not.
fn is_json(text: &str) -> bool {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(_) => true,
        Err(e) => e.to_string().contains("number out of range"),
    }
}

fuzz_target!(|data: &[u8]| {
    let checked = payload::check(data, 16);
    if checked.is_ok() {
        let text = std::str::from_utf8(data).expect("accepted payloads are UTF-8");
        assert!(is_json(text), "{text:?}");
    }
    if let Ok(text) = std::str::from_utf8(data) {
        // serde_json's own limit is 128 levels: within 16, the two agree on what is JSON.
        if payload::check_depth(text, 16).is_ok() && serde_json::from_str::<serde_json::Value>(text).is_ok() {
            assert!(checked.is_ok(), "{text:?}");
        }
    }
});
