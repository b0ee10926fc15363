//! Topic names and subscription patterns: validation with messages that say what is wrong, and
//! MQTT-style matching (`+` one level, `#` any number of trailing levels).

/// The longest topic or pattern, in bytes.
pub const MAX_TOPIC_BYTES: usize = 256;

/// Checks a topic a message is published to: 1 to 256 bytes of UTF-8, levels separated by `/`,
/// no empty level, no whitespace or control characters, no wildcard.
pub fn validate_topic(topic: &str) -> Result<(), String> {
    validate_common(topic)?;
    if topic.contains(['+', '#']) {
        return Err(format!(
            "wildcards '+' and '#' are not allowed in a published topic: '{}'",
            shown(topic)
        ));
    }
    Ok(())
}

/// Checks a subscription pattern: a topic where a level may be exactly `+`, and the last level
/// may be exactly `#`.
pub fn validate_pattern(pattern: &str) -> Result<(), String> {
    validate_common(pattern)?;
    let levels: Vec<&str> = pattern.split('/').collect();
    for (i, level) in levels.iter().enumerate() {
        if level.len() > 1 && level.contains(['+', '#']) {
            return Err(format!(
                "a wildcard must be a whole level ('+' or '#'), not part of '{}': '{}'",
                shown(level),
                shown(pattern)
            ));
        }
        if *level == "#" && i + 1 != levels.len() {
            return Err(format!("'#' must be the last level: '{}'", shown(pattern)));
        }
    }
    Ok(())
}

/// Whether a pattern contains wildcards (otherwise it names exactly one topic).
pub fn is_wildcard(pattern: &str) -> bool {
    pattern.contains(['+', '#'])
}

/// The reference matcher: does `pattern` (valid) match `topic` (valid)? MQTT semantics:
/// `quotes/#` matches `quotes` too; `+` matches exactly one (non-empty) level.
pub fn matches(pattern: &str, topic: &str) -> bool {
    let mut p = pattern.split('/');
    let mut t = topic.split('/');
    loop {
        match (p.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(pl), Some(tl)) if pl == tl => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

fn validate_common(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("topic is empty".to_owned());
    }
    if name.len() > MAX_TOPIC_BYTES {
        return Err(format!(
            "topic is {} bytes, over the limit of {MAX_TOPIC_BYTES}",
            name.len()
        ));
    }
    if let Some(c) = name.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "topic contains whitespace or a control character (U+{:04X}): '{}'",
            c as u32,
            shown(name)
        ));
    }
    if name.split('/').any(str::is_empty) {
        return Err(format!("topic level is empty: '{}'", shown(name)));
    }
    Ok(())
}

/// A name made safe to quote in an error message (control characters escaped).
fn shown(name: &str) -> String {
    name.chars()
        .flat_map(char::escape_debug)
        .collect::<String>()
        .replace("\\'", "'")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_topics() {
        for t in [
            "quotes/AAPL",
            "trades/BRK.B",
            "quotes/7203.T",
            "a",
            "x/y/z",
            "ünï/cödé",
        ] {
            assert_eq!(validate_topic(t), Ok(()), "{t}");
            assert_eq!(validate_pattern(t), Ok(()), "{t}");
        }
    }

    #[test]
    fn bad_topics_say_what_is_wrong() {
        let cases = [
            ("", "empty"),
            ("quotes//AAPL", "level is empty: 'quotes//AAPL'"),
            ("/quotes", "level is empty"),
            ("quotes/", "level is empty"),
            ("quotes/AA PL", "whitespace"),
            ("quotes/\u{7}", "control character (U+0007)"),
            ("quotes/+", "wildcards"),
            ("quotes/#", "wildcards"),
        ];
        for (t, msg) in cases {
            let err = validate_topic(t).expect_err(t);
            assert!(err.contains(msg), "{t:?}: {err}");
        }
        let long = "a".repeat(257);
        assert!(validate_topic(&long).unwrap_err().contains("257 bytes"));
        assert_eq!(validate_topic(&"a".repeat(256)), Ok(()));
    }

    #[test]
    fn patterns() {
        for p in ["quotes/+", "quotes/#", "#", "+", "+/AAPL", "+/+/#"] {
            assert_eq!(validate_pattern(p), Ok(()), "{p}");
        }
        for p in ["quotes/#/x", "quotes/A+", "quotes/#x", "quo#tes", "##"] {
            assert!(validate_pattern(p).is_err(), "{p}");
        }
    }

    #[test]
    fn matching_follows_mqtt() {
        let yes = [
            ("quotes/+", "quotes/AAPL"),
            ("quotes/#", "quotes/AAPL"),
            ("quotes/#", "quotes"),
            ("quotes/#", "quotes/a/b/c"),
            ("#", "anything/at/all"),
            ("+/AAPL", "quotes/AAPL"),
            ("quotes/AAPL", "quotes/AAPL"),
            ("+", "quotes"),
        ];
        for (p, t) in yes {
            assert!(matches(p, t), "{p} should match {t}");
        }
        let no = [
            ("quotes/+", "quotes"),
            ("quotes/+", "quotes/a/b"),
            ("quotes/AAPL", "quotes/MSFT"),
            ("quotes/#", "trades/AAPL"),
            ("+", "a/b"),
            ("quotes/AAPL", "quotes/AAPL/x"),
        ];
        for (p, t) in no {
            assert!(!matches(p, t), "{p} should not match {t}");
        }
    }
}
