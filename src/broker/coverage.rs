//! Entitlement coverage: whether the patterns a token grants allow a subscribe pattern, with
//! exact MQTT semantics. A pattern is allowed only if every topic it can match is matched by
//! some grant; when it is not, the answer is a topic that shows it (matched by the pattern, by no
//! grant), for the error message.
//!
//! # How
//!
//! A subscribe pattern is `p1/../pm` (each level a literal or `+`), maybe followed by `/#`.
//! Topic levels are strings from an unbounded alphabet, so at a `+` the topic may hold a
//! *fresh* level: one equal to no literal of any grant. Only grants with `+` (or `#`) there
//! match a fresh level, and the grants that match it are a subset of those that match any other
//! level there. Coverage is monotone in the set of grants (more grants cover more), so if the
//! topics with a fresh level at that position are covered, so are all the others. One generic
//! topic per length therefore decides everything: the pattern's literals, fresh levels at its
//! `+`s, and, after a `#`, k more fresh levels for every k >= 0 (k >= 1 for `#` alone: a topic
//! has at least one level). No grant matches a fresh topic longer than itself unless it ends in
//! `#`, so the lengths need only be tried up to the longest grant, and the whole check costs
//! at most (pattern levels + longest grant) x grants comparisons, with no search and no
//! allocation past one list of grant indices.
//!
//! Topic length limits are ignored (a topic past 256 bytes that only such a topic would
//! uncover still counts as uncovered): the check can refuse a contrived pattern a long topic
//! limit would allow, never the other way round.
//!
//! The union matters: `a` with `a/+/#` covers `a/#` though neither does alone, and `+/#`
//! covers `#` (both match every topic).

use super::topic;

/// Granted patterns, each split into its levels once (when the token is accepted).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    patterns: Vec<Box<[Box<str>]>>,
}

impl Grants {
    /// Grants from patterns, each checked with [`topic::validate_pattern`]; the first invalid
    /// one is named in the error.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Grants, String> {
        let mut split = Vec::with_capacity(patterns.len());
        for p in patterns {
            let p = p.as_ref();
            topic::validate_pattern(p).map_err(|e| format!("granted pattern '{p}': {e}"))?;
            split.push(p.split('/').map(Box::from).collect());
        }
        Ok(Grants { patterns: split })
    }

    pub fn len(&self) -> usize {
        self.patterns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// `None` if every topic `pattern` (valid) can match is matched by some grant; otherwise a
    /// topic that `pattern` matches and no grant does. Levels standing for "any other name" are
    /// written as a name no grant uses (`x`, or `x` repeated until unused).
    pub fn uncovered(&self, pattern: &str) -> Option<String> {
        let levels: Vec<&str> = pattern.split('/').collect();
        let (prefix, hash) = match levels.split_last() {
            Some((&"#", rest)) => (rest, true),
            _ => (&levels[..], false),
        };
        // The generic topic so far: `Some(level)` a literal, `None` a fresh level.
        let mut topic: Vec<Option<&str>> = Vec::with_capacity(prefix.len() + 1);
        let mut alive: Vec<&[Box<str>]> = self.patterns.iter().map(|g| &g[..]).collect();
        for (depth, &level) in prefix.iter().enumerate() {
            if alive.iter().any(|g| at(g, depth) == Some("#")) {
                return None; // a grant takes every continuation from here
            }
            let fresh = level == "+";
            alive.retain(|g| match at(g, depth) {
                Some("+") => true,
                Some(l) => !fresh && l == level,
                None => false,
            });
            topic.push((!fresh).then_some(level));
        }
        let mut depth = prefix.len();
        if !hash {
            // The topic ends here: a grant must end here too, or continue with `#` (which
            // matches its parent level as well).
            let ends = alive
                .iter()
                .any(|g| g.len() == depth || at(g, depth) == Some("#"));
            return (!ends).then(|| self.name(&topic));
        }
        // `#`: the topic may end here or go on with any number of levels; try each length
        // until a grant takes all the rest, or none is left.
        loop {
            if alive.iter().any(|g| at(g, depth) == Some("#")) {
                return None;
            }
            if depth > 0 && !alive.iter().any(|g| g.len() == depth) {
                return Some(self.name(&topic));
            }
            alive.retain(|g| at(g, depth) == Some("+"));
            topic.push(None);
            depth += 1;
        }
    }

    /// Whether `pattern` (valid) is entirely granted.
    pub fn covers(&self, pattern: &str) -> bool {
        self.uncovered(pattern).is_none()
    }

    /// The generic topic as text, fresh levels written as a name no grant holds at any level.
    fn name(&self, topic: &[Option<&str>]) -> String {
        let used = |candidate: &str| {
            self.patterns
                .iter()
                .any(|g| g.iter().any(|l| &**l == candidate))
        };
        let mut fresh = String::from("x");
        while used(&fresh) {
            fresh.push('x');
        }
        topic
            .iter()
            .map(|l| l.unwrap_or(&fresh))
            .collect::<Vec<_>>()
            .join("/")
    }
}

fn at(grant: &[Box<str>], depth: usize) -> Option<&str> {
    grant.get(depth).map(|l| &**l)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grants(list: &[&str]) -> Grants {
        Grants::new(list).expect("valid grants")
    }

    #[test]
    fn the_documented_cases() {
        let quotes = grants(&["quotes/#"]);
        for p in [
            "quotes/+",
            "quotes/AAPL",
            "quotes/+/bid",
            "quotes",
            "quotes/#",
        ] {
            assert!(quotes.covers(p), "quotes/# covers {p}");
        }
        for p in ["#", "+", "+/AAPL", "trades/AAPL", "+/#"] {
            assert!(!quotes.covers(p), "quotes/# does not cover {p}");
        }
        let plus = grants(&["quotes/+"]);
        assert!(plus.covers("quotes/AAPL"));
        assert!(plus.covers("quotes/+"));
        assert_eq!(plus.uncovered("quotes/#").as_deref(), Some("quotes"));
        assert!(!plus.covers("quotes/+/bid"));
        assert!(!plus.covers("quotes"));
        // Only what matches every topic covers `#`.
        assert!(grants(&["#"]).covers("#"));
        assert!(grants(&["+/#"]).covers("#"), "+/# matches every topic too");
        for g in ["+", "+/+", "quotes/#", "+/+/#"] {
            assert!(!grants(&[g]).covers("#"), "{g} does not cover #");
        }
        assert!(grants(&[]).uncovered("a").is_some());
    }

    #[test]
    fn a_union_of_grants_covers_what_none_does_alone() {
        let g = grants(&["a", "a/+/#"]);
        assert!(g.covers("a/#"));
        assert!(!grants(&["a/+/#"]).covers("a/#"));
        assert!(!grants(&["a"]).covers("a/#"));
        let g = grants(&["+", "+/+", "+/+/+/#"]);
        assert!(g.covers("#"));
        assert_eq!(
            grants(&["+", "+/+/+/#"]).uncovered("#").as_deref(),
            Some("x/x")
        );
        // Literals do not add up to a wildcard: the level could be any other name.
        let g = grants(&["q/A", "q/B"]);
        assert_eq!(g.uncovered("q/+").as_deref(), Some("q/x"));
        assert!(g.covers("q/A"));
    }

    #[test]
    fn the_example_topic_avoids_the_grants_names() {
        let g = grants(&["q/x", "q/xx", "q/xxx/#"]);
        assert_eq!(g.uncovered("q/+").as_deref(), Some("q/xxxx"));
        assert_eq!(g.uncovered("+/x").as_deref(), Some("xxxx/x"));
    }

    #[test]
    fn invalid_grants_are_refused_by_name() {
        let err = Grants::new(&["quotes/#", "quo#tes"]).unwrap_err();
        assert!(err.contains("'quo#tes'"), "{err}");
        assert!(Grants::new(&[""]).is_err());
        assert!(Grants::new(&["a/#/b"]).is_err());
    }

    #[test]
    fn the_cost_is_bounded_by_levels_times_grants() {
        // 256 grants of 100 levels against a 127-level pattern: well under a millisecond.
        let deep: Vec<String> = (0..256)
            .map(|i| format!("{}/{i}", vec!["+"; 99].join("/")))
            .collect();
        let g = Grants::new(&deep).unwrap();
        let pattern = format!("{}/#", vec!["+"; 126].join("/"));
        let started = std::time::Instant::now();
        assert!(g.uncovered(&pattern).is_some());
        assert!(started.elapsed() < std::time::Duration::from_millis(50));
    }
}
