//! What a published payload must be (UTF-8 JSON, nested at most a depth), on any bytes: the
//! check agrees with serde_json about what is JSON within the depth, and never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use tickwire::broker::payload;

/// Any JSON value, parsed in full by serde_json (every number read as a number, every key as a
/// string) and kept as nothing: the oracle. Not `serde_json::Value`: with the `raw_value`
/// feature, on in this build through tickwire, `Value` reads an object keyed
/// `$serde_json::private::RawValue` as a raw value and refuses JSON such as
/// `{"$serde_json::private::RawValue":"\u00eask"}`.
struct Json;

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Json, E> {
        Ok(Json)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Json, E> {
        Ok(Json)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Json, E> {
        Ok(Json)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Json, E> {
        Ok(Json)
    }
    fn visit_str<E>(self, _: &str) -> Result<Json, E> {
        Ok(Json)
    }
    fn visit_unit<E>(self) -> Result<Json, E> {
        Ok(Json)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        while seq.next_element::<Json>()?.is_some() {}
        Ok(Json)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        while map.next_entry::<String, Json>()?.is_some() {}
        Ok(Json)
    }
}

/// `text` with every surrogate escape (`\uD800` to `\uDFFF`) made `\u0041`: an escape of the
/// same shape, so the grammar sees no difference. The JSON grammar allows a lone surrogate escape
/// (RFC 8259 8.2 only says what a reader makes of it is unpredictable; browsers' `JSON.parse`
/// keeps it), but serde_json's string parsing refuses it.
fn without_surrogate_escapes(text: &str) -> String {
    let mut bytes = text.as_bytes().to_vec();
    let mut i = 0;
    while i + 6 <= bytes.len() {
        let surrogate = bytes[i] == b'\\'
            && bytes[i + 1] == b'u'
            && matches!(bytes[i + 2], b'd' | b'D')
            && matches!(bytes[i + 3], b'8'..=b'9' | b'a'..=b'f' | b'A'..=b'F')
            && bytes[i + 4].is_ascii_hexdigit()
            && bytes[i + 5].is_ascii_hexdigit();
        if surrogate {
            bytes[i + 2..i + 6].copy_from_slice(b"0041");
            i += 6;
        } else {
            i += 1;
        }
    }
    // Only ASCII bytes were replaced by ASCII bytes.
    String::from_utf8(bytes).expect("still UTF-8")
}

/// serde_json's strict parse, except that a number too large for an f64 (`2e909`) is still JSON
/// by the grammar (browsers read it as Infinity): the check accepts it, the full parse does not.
/// Surrogate escapes are made plain first (see `without_surrogate_escapes`).
fn is_json(text: &str) -> bool {
    match serde_json::from_str::<Json>(&without_surrogate_escapes(text)) {
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
        let strict = serde_json::from_str::<Json>(&without_surrogate_escapes(text)).is_ok();
        if payload::check_depth(text, 16).is_ok() && strict {
            assert!(checked.is_ok(), "{text:?}");
        }
    }
});
