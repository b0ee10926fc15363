//! A worker's subscription index: which of its connections want a topic.
//!
//! Exact topics are one hash lookup. Wildcard patterns live in a trie keyed by level, so matching
//! a topic walks at most two branches per level (`literal` and `+`) and collects `#` subscribers
//! on the way, instead of testing every pattern on every publish.

use std::collections::HashMap;

use super::topic::is_wildcard;
use crate::server::ConnId;

#[derive(Debug, Default)]
pub struct SubscriptionIndex {
    exact: HashMap<Box<str>, Vec<ConnId>>,
    patterns: Node,
    pattern_count: usize,
}

#[derive(Debug, Default)]
struct Node {
    children: HashMap<Box<str>, Node>,
    plus: Option<Box<Node>>,
    /// Subscribers of the pattern that ends at this node.
    here: Vec<ConnId>,
    /// Subscribers of this node's pattern followed by `/#` (or `#` alone at the root).
    rest: Vec<ConnId>,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.children.is_empty()
            && self.plus.is_none()
            && self.here.is_empty()
            && self.rest.is_empty()
    }
}

impl SubscriptionIndex {
    /// Adds a subscription. The caller makes sure a connection subscribes to a pattern once.
    pub fn insert(&mut self, pattern: &str, conn: ConnId) {
        if !is_wildcard(pattern) {
            self.exact.entry(pattern.into()).or_default().push(conn);
            return;
        }
        self.pattern_count += 1;
        let mut node = &mut self.patterns;
        for level in pattern.split('/') {
            node = match level {
                "#" => {
                    node.rest.push(conn);
                    return;
                }
                "+" => node.plus.get_or_insert_with(Default::default),
                _ => node.children.entry(level.into()).or_default(),
            };
        }
        node.here.push(conn);
    }

    /// Removes a subscription, pruning what it leaves empty.
    pub fn remove(&mut self, pattern: &str, conn: ConnId) {
        if !is_wildcard(pattern) {
            if let Some(list) = self.exact.get_mut(pattern) {
                remove_from(list, conn);
                if list.is_empty() {
                    self.exact.remove(pattern);
                }
            }
            return;
        }
        let levels: Vec<&str> = pattern.split('/').collect();
        if remove_pattern(&mut self.patterns, &levels, conn) {
            self.pattern_count -= 1;
        }
    }

    /// Calls `f` for every connection with a subscription matching `topic`. A connection with
    /// several matching subscriptions is seen once per subscription: the caller dedups.
    pub fn for_each_match(&self, topic: &str, mut f: impl FnMut(ConnId)) {
        if let Some(list) = self.exact.get(topic) {
            list.iter().copied().for_each(&mut f);
        }
        if self.pattern_count > 0 {
            walk(&self.patterns, topic.split('/'), &mut f);
        }
    }

    /// Whether a topic could match more than one subscription of one connection.
    pub fn has_patterns(&self) -> bool {
        self.pattern_count > 0
    }
}

fn walk<'a>(node: &Node, mut levels: std::str::Split<'a, char>, f: &mut impl FnMut(ConnId)) {
    // `a/#` matches `a` itself and everything below it.
    node.rest.iter().copied().for_each(&mut *f);
    let Some(level) = levels.next() else {
        node.here.iter().copied().for_each(&mut *f);
        return;
    };
    if let Some(child) = node.children.get(level) {
        walk(child, levels.clone(), f);
    }
    if let Some(plus) = &node.plus {
        walk(plus, levels, f);
    }
}

/// Returns whether the subscription was found.
fn remove_pattern(node: &mut Node, levels: &[&str], conn: ConnId) -> bool {
    let Some((&level, rest)) = levels.split_first() else {
        return remove_from(&mut node.here, conn);
    };
    match level {
        "#" => remove_from(&mut node.rest, conn),
        "+" => {
            let Some(plus) = node.plus.as_mut() else {
                return false;
            };
            let found = remove_pattern(plus, rest, conn);
            if plus.is_empty() {
                node.plus = None;
            }
            found
        }
        _ => {
            let Some(child) = node.children.get_mut(level) else {
                return false;
            };
            let found = remove_pattern(child, rest, conn);
            if child.is_empty() {
                node.children.remove(level);
            }
            found
        }
    }
}

fn remove_from(list: &mut Vec<ConnId>, conn: ConnId) -> bool {
    match list.iter().position(|&c| c == conn) {
        Some(i) => {
            list.swap_remove(i);
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::topic::matches;

    fn matched(index: &SubscriptionIndex, topic: &str) -> Vec<usize> {
        let mut v = Vec::new();
        index.for_each_match(topic, |c| v.push(c.0));
        v.sort_unstable();
        v
    }

    #[test]
    fn agrees_with_the_reference_matcher() {
        let patterns = [
            "quotes/AAPL",
            "quotes/+",
            "quotes/#",
            "#",
            "+",
            "+/AAPL",
            "+/+",
            "trades/#",
            "quotes/AAPL/x",
            "+/+/#",
            "quotes/+/x",
        ];
        let topics = [
            "quotes",
            "quotes/AAPL",
            "quotes/MSFT",
            "trades/AAPL",
            "quotes/AAPL/x",
            "a/b/c/d",
            "x",
        ];
        let mut index = SubscriptionIndex::default();
        for (i, p) in patterns.iter().enumerate() {
            index.insert(p, ConnId(i));
        }
        for t in topics {
            let expect: Vec<usize> = (0..patterns.len())
                .filter(|&i| matches(patterns[i], t))
                .collect();
            assert_eq!(matched(&index, t), expect, "topic {t}");
        }
    }

    #[test]
    fn removal_cleans_up_fully() {
        let mut index = SubscriptionIndex::default();
        index.insert("quotes/+", ConnId(1));
        index.insert("quotes/#", ConnId(1));
        index.insert("quotes/AAPL", ConnId(2));
        index.insert("a/+/b/#", ConnId(3));
        assert_eq!(matched(&index, "quotes/AAPL"), vec![1, 1, 2]);
        index.remove("quotes/+", ConnId(1));
        index.remove("quotes/#", ConnId(1));
        index.remove("quotes/AAPL", ConnId(2));
        index.remove("a/+/b/#", ConnId(3));
        index.remove("never/+", ConnId(9));
        assert!(matched(&index, "quotes/AAPL").is_empty());
        assert!(index.exact.is_empty());
        assert!(index.patterns.is_empty());
        assert!(!index.has_patterns());
    }
}
