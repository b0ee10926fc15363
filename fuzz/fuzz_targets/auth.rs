//! Token verification and entitlement coverage on any input: never a panic, and every answer
//! consistent. The first line is taken as a token (checked against a fixed HS256 key: shape,
//! size, header, base64 and JSON handling before any signature), the rest as
//! "grant,grant,...\npattern\ntopic": when the grants and pattern are valid, coverage must agree
//! with the reference matcher on the example it gives and on the topic.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tickwire::broker::auth::Verifier;
use tickwire::broker::coverage::Grants;
use tickwire::broker::topic;

fn verifier() -> &'static Verifier {
    static V: OnceLock<Verifier> = OnceLock::new();
    V.get_or_init(|| {
        Verifier::from_key(b"fuzzing-secret-fuzzing-secret-fuzzing-secret", None, None, 5)
            .expect("a good key")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.splitn(4, '\n');
    let token = lines.next().unwrap_or("");
    if let Err(e) = verifier().verify(token, 1_700_000_000) {
        assert!(!e.message.is_empty());
        if token.len() > 64 {
            assert!(!e.message.contains(token), "the token is echoed");
        }
    }
    let grants: Vec<&str> = lines.next().unwrap_or("").split(',').collect();
    let pattern = lines.next().unwrap_or("");
    let name = lines.next().unwrap_or("");
    let Ok(g) = Grants::new(&grants) else {
        return;
    };
    if topic::validate_pattern(pattern).is_err() {
        return;
    }
    match g.uncovered(pattern) {
        Some(example) => {
            assert!(topic::matches(pattern, &example), "{example} vs {pattern}");
            assert!(!grants.iter().any(|g| topic::matches(g, &example)));
        }
        None => {
            if topic::validate_topic(name).is_ok() && topic::matches(pattern, name) {
                assert!(grants.iter().any(|g| topic::matches(g, name)), "{name}");
            }
        }
    }
});
