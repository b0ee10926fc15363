//! Every topic with a last value, by level: what a wildcard subscription's snapshots are
//! found in. A walk goes down only the branches the pattern allows (`quotes/+` looks at the
//! children of `quotes`, not at every topic) and stops once it has found what it may return or
//! visited its budget of nodes, so one request costs in proportion to what it gets back, never
//! to the number of topics.

use std::collections::BTreeMap;
use std::sync::Arc;

/// A topic and its id.
pub type Named = (Arc<str>, u64);

#[derive(Debug, Default)]
pub struct TopicTree {
    root: Node,
    len: usize,
}

#[derive(Debug, Default)]
struct Node {
    /// Children by level, in order, so walks are deterministic.
    children: BTreeMap<Box<str>, Node>,
    /// The topic that ends here, if it has a value, and its id in the cache.
    topic: Option<Named>,
}

/// What a walk did: topics passed on, nodes looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Walked {
    pub given: usize,
    pub visited: usize,
}

/// A walk's limits.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// Topics to return at most.
    pub matches: usize,
    /// Nodes to look at at most (a pattern like `+/+/x` may look at many and match few).
    pub visits: usize,
}

impl Budget {
    /// The budget for returning up to `matches` topics: a fixed allowance of misses on top.
    pub fn for_matches(matches: usize) -> Budget {
        Budget {
            matches,
            visits: matches.saturating_mul(4).saturating_add(4096),
        }
    }
}

impl TopicTree {
    /// Adds a topic (a valid, published one) with its id. Adding it twice is harmless.
    pub fn insert(&mut self, topic: Arc<str>, id: u64) {
        let mut node = &mut self.root;
        for level in topic.split('/') {
            node = node.children.entry(level.into()).or_default();
        }
        if node.topic.is_none() {
            node.topic = Some((topic, id));
            self.len += 1;
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Calls `found` for topics matching the valid pattern `pattern` (MQTT semantics), in
    /// level order, until it returns false or the budget runs out.
    pub fn matching(
        &self,
        pattern: &str,
        budget: Budget,
        mut found: impl FnMut(&Named) -> bool,
    ) -> Walked {
        let levels: Vec<&str> = pattern.split('/').collect();
        let mut walk = Walk {
            budget,
            given: 0,
            found: &mut found,
        };
        walk.pattern(&self.root, &levels, true);
        Walked {
            given: walk.given,
            visited: budget.visits - walk.budget.visits,
        }
    }
}

struct Walk<'f, F> {
    budget: Budget,
    given: usize,
    found: &'f mut F,
}

impl<F: FnMut(&Named) -> bool> Walk<'_, F> {
    /// Counts a visit; false once the walk must stop.
    fn visit(&mut self) -> bool {
        if self.budget.visits == 0 || self.given >= self.budget.matches {
            return false;
        }
        self.budget.visits -= 1;
        true
    }

    fn give(&mut self, topic: &Option<Named>) -> bool {
        if let Some(t) = topic {
            if self.given >= self.budget.matches {
                return false;
            }
            self.given += 1;
            if !(self.found)(t) {
                self.budget.visits = 0;
                return false;
            }
        }
        true
    }

    /// Walks `node` against the remaining pattern `levels`. Returns false to stop.
    fn pattern(&mut self, node: &Node, levels: &[&str], at_root: bool) -> bool {
        if !self.visit() {
            return false;
        }
        let Some((&level, rest)) = levels.split_first() else {
            return self.give(&node.topic);
        };
        match level {
            // `a/#` matches `a` itself and everything below it; `#` alone matches everything.
            "#" => (at_root || self.give(&node.topic)) && self.everything_below(node),
            "+" => node
                .children
                .values()
                .all(|child| self.pattern(child, rest, false)),
            _ => node
                .children
                .get(level)
                .is_none_or(|child| self.pattern(child, rest, false)),
        }
    }

    fn everything_below(&mut self, node: &Node) -> bool {
        node.children
            .values()
            .all(|child| self.visit() && self.give(&child.topic) && self.everything_below(child))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::topic::matches;

    fn tree(topics: &[&str]) -> TopicTree {
        let mut t = TopicTree::default();
        for (id, topic) in topics.iter().enumerate() {
            t.insert(Arc::from(*topic), id as u64);
        }
        t
    }

    fn all(t: &TopicTree, pattern: &str) -> Vec<String> {
        let mut out = Vec::new();
        t.matching(pattern, Budget::for_matches(usize::MAX), |(m, _)| {
            out.push(m.to_string());
            true
        });
        out
    }

    const TOPICS: &[&str] = &[
        "quotes",
        "quotes/AAPL",
        "quotes/AAPL/bid",
        "quotes/MSFT",
        "fx/EUR.USD",
        "trades/AAPL",
    ];

    #[test]
    fn walks_follow_mqtt_matching() {
        let t = tree(TOPICS);
        for pattern in [
            "#",
            "quotes/#",
            "quotes/+",
            "+/AAPL",
            "+/+/bid",
            "quotes",
            "quotes/AAPL/#",
            "nothing/#",
            "+",
            "+/#",
        ] {
            let mut expected: Vec<String> = TOPICS
                .iter()
                .filter(|topic| matches(pattern, topic))
                .map(|s| s.to_string())
                .collect();
            let mut got = all(&t, pattern);
            expected.sort();
            got.sort();
            assert_eq!(got, expected, "{pattern}");
        }
        assert_eq!(t.len(), TOPICS.len());
    }

    #[test]
    fn a_walk_stops_at_its_budget() {
        let topics: Vec<String> = (0..10_000).map(|i| format!("t/{i}")).collect();
        let mut t = TopicTree::default();
        for (id, topic) in topics.iter().enumerate() {
            t.insert(Arc::from(topic.as_str()), id as u64);
        }
        let mut seen = 0;
        let walked = t.matching("t/+", Budget::for_matches(10), |_| {
            seen += 1;
            true
        });
        assert_eq!((walked.given, seen), (10, 10));
        assert!(walked.visited <= 12, "{walked:?}");
        // A pattern that matches nothing stops after its visits, not after every topic.
        let budget = Budget {
            matches: 10,
            visits: 100,
        };
        let walked = t.matching("t/+/x", budget, |_| true);
        assert_eq!(
            walked,
            Walked {
                given: 0,
                visited: 100
            }
        );
        // `found` saying no stops the walk.
        let walked = t.matching("#", Budget::for_matches(100), |_| false);
        assert_eq!(walked.given, 1);
    }
}
