//! Query strings: `name=value` pairs separated by `&`, percent-decoded (RFC 3986 2.1).
//!
//! `+` stays a plus: in tickwire it is a topic wildcard (`quotes/+`), never a space (the
//! `application/x-www-form-urlencoded` rule does not apply to request targets).

use percent_encoding::percent_decode_str;

/// The decoded value of the first parameter called `name`; `None` when it is absent, or when
/// its name or value has a broken escape (`%zz`, a `%` at the end) or decodes to something that
/// is not UTF-8. A parameter without `=` has the empty value.
pub fn param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        is_named(k, name).then(|| decode(v)).flatten()
    })
}

/// Whether a parameter's (still encoded) name decodes to `name`; without a `%` it is compared
/// as it is, with no string made for it.
fn is_named(encoded: &str, name: &str) -> bool {
    if encoded.contains('%') {
        decode(encoded).is_some_and(|d| d == name)
    } else {
        encoded == name
    }
}

/// Percent-decodes one component strictly: every `%` must start a two-digit hex escape.
pub fn decode(s: &str) -> Option<String> {
    if !s.contains('%') {
        // Nothing escaped (the usual topic): the text is the value, UTF-8 already.
        return Some(s.to_owned());
    }
    let bytes = s.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
        }
    }
    percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_percent_decoded_and_plus_stays() {
        assert_eq!(
            param("topic=quotes%2FAAPL", "topic").as_deref(),
            Some("quotes/AAPL")
        );
        assert_eq!(
            param("a=1&subscribe=quotes/+,quotes/%23", "subscribe").as_deref(),
            Some("quotes/+,quotes/#")
        );
        assert_eq!(param("flag&x=1", "flag").as_deref(), Some(""));
        assert_eq!(param("t%6Fpic=a", "topic").as_deref(), Some("a"));
        assert_eq!(param("x=1", "topic"), None);
    }

    #[test]
    fn broken_escapes_and_bad_utf8_are_refused() {
        for bad in ["topic=%zz", "topic=%4", "topic=%", "topic=%ff%fe"] {
            assert_eq!(param(bad, "topic"), None, "{bad}");
        }
        assert_eq!(decode("%C3%A9").as_deref(), Some("é"));
    }
}
