//! What a published payload (and a client request) must be before it goes anywhere: UTF-8 —
//! subscribers get it in text frames, and a browser closes with 1007 on invalid UTF-8 — and
//! JSON, nested at most a configured depth, since browsers' `JSON.parse` and many client
//! libraries recurse per level and give up (or crash) on deep nesting.

/// The nesting depth allowed by default (arrays and objects inside each other).
pub const DEFAULT_MAX_DEPTH: usize = 128;

/// Checks `bytes`: UTF-8, JSON, nested at most `max_depth` deep. The message says what is wrong.
pub fn check(bytes: &[u8], max_depth: usize) -> Result<(), String> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        format!(
            "not UTF-8: invalid byte at offset {} (payloads go to browsers in text frames)",
            e.valid_up_to()
        )
    })?;
    check_depth(text, max_depth)?;
    serde_json::from_str::<serde::de::IgnoredAny>(text)
        .map(|_| ())
        .map_err(|e| format!("not JSON: {e}"))
}

/// Fails on the first bracket that nests deeper than `max_depth`. A linear scan that knows
/// strings (brackets inside them do not count); malformed JSON is left to the parser.
pub fn check_depth(text: &str, max_depth: usize) -> Result<(), String> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (i, b) in text.bytes().enumerate() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max_depth {
                    return Err(format!(
                        "JSON nested deeper than {max_depth} levels (at offset {i})"
                    ));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_must_be_utf8_json() {
        assert_eq!(check("{\"bid\":1.5,\"s\":\"é\"}".as_bytes(), 128), Ok(()));
        assert!(check(b"\"\xff\xfe\"", 128).unwrap_err().contains("UTF-8"));
        assert!(check(b"{\"a\":\"\xc3\"}", 128)
            .unwrap_err()
            .contains("UTF-8"));
        assert!(check(b"{nope", 128).is_err());
        // JSON by the grammar, whatever serde_json's `Value` makes of this key (found by the
        // `payload` fuzz target, whose oracle was `Value`).
        let raw_value_key = br#"{"$serde_json::private::RawValue":"\u00eask"}"#;
        assert_eq!(check(raw_value_key, 128), Ok(()));
        // A lone surrogate escape is JSON by the grammar too (browsers' JSON.parse keeps it).
        assert_eq!(check(br#"{"s":"\uda00n"}"#, 128), Ok(()));
        assert!(
            check(br#"{"s":"\ud8"}"#, 128).is_err(),
            "four hex digits or nothing"
        );
        assert!(check(b"", 128).is_err());
    }

    #[test]
    fn nesting_is_limited_and_strings_do_not_count() {
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert_eq!(check(deep(128).as_bytes(), 128), Ok(()));
        assert!(check(deep(129).as_bytes(), 128)
            .unwrap_err()
            .contains("deeper than 128"));
        assert!(check(deep(32_000).as_bytes(), 128).is_err());
        let in_string = format!("[\"{}\"]", "[{".repeat(500));
        assert_eq!(check(in_string.as_bytes(), 2), Ok(()));
        assert_eq!(check(br#"["\"[[[["]"#, 1), Ok(()));
        assert_eq!(check(br#"{"a":{"b":[1]}}"#, 3), Ok(()));
        assert!(check(br#"{"a":{"b":[1]}}"#, 2).is_err());
    }
}
