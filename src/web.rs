//! What the public listener serves besides WebSockets, embedded into the binary: the quote board
//! page at `GET /` and the JavaScript client it is built on at `GET /tickwire.js`.

use std::sync::LazyLock;

/// `web/index.html`: plain HTML, CSS and JavaScript, no build step.
pub const INDEX_HTML: &str = include_str!("../web/index.html");

/// `clients/js/tickwire.js`, the JavaScript client, so that any page served next to the broker
/// imports the client that speaks this broker's protocol (`import { connect } from "/tickwire.js"`).
pub const TICKWIRE_JS: &str = include_str!("../clients/js/tickwire.js");

/// The `ETag` of [`TICKWIRE_JS`]: the crate version and a hash of the content, so a new build
/// with a changed client is fetched again even while the cached copy is still fresh elsewhere.
pub static TICKWIRE_JS_ETAG: LazyLock<String> = LazyLock::new(|| {
    format!(
        "\"{}-{:016x}\"",
        env!("CARGO_PKG_VERSION"),
        fnv1a(TICKWIRE_JS.as_bytes())
    )
});

/// How long a browser may use its copy before asking again (with `If-None-Match`): short
/// enough that a broker upgrade reaches pages within the hour.
pub const TICKWIRE_JS_CACHE_CONTROL: &str = "public, max-age=3600";

/// Whether an `If-None-Match` value names `etag`: `*`, or a comma-separated list of tags, weak
/// (`W/"..."`) ones included, since the comparison for a GET is the weak one (RFC 9110 13.1.2).
pub fn etag_matches(if_none_match: &str, etag: &str) -> bool {
    if_none_match
        .split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

/// 64-bit FNV-1a: a content fingerprint for the ETag, not a security measure.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_etag_names_the_version_and_changes_with_the_content() {
        assert!(TICKWIRE_JS_ETAG.starts_with(&format!("\"{}-", env!("CARGO_PKG_VERSION"))));
        assert_ne!(fnv1a(b"a"), fnv1a(b"b"));
    }

    #[test]
    fn if_none_match_lists_and_weak_tags_match() {
        let tag = "\"0.1.0-00ff\"";
        assert!(etag_matches(tag, tag));
        assert!(etag_matches("\"x\", W/\"0.1.0-00ff\"", tag));
        assert!(etag_matches("*", tag));
        assert!(!etag_matches("\"0.1.0-00fe\"", tag));
        assert!(!etag_matches("", tag));
    }
}
