//! `max_rate`: at most R messages per topic per second to one subscriber, the latest value
//! always arriving. Between slots only the latest frame per topic is held (one slot per topic the
//! connection gets), and it goes out when the slot opens; the worker learns when from
//! [`Admit::HoldUntil`] and keeps a deadline queue, so its work is in proportion to the topics
//! that actually have a value waiting, never a scan of every connection.
//!
//! A topic's rate is the most generous of the connection's patterns that match it (a pattern
//! without `max_rate` means no limit), then capped by the server's `--max-update-rate`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::cache::Sent;
use super::topic;

/// What to do with a live frame for one topic.
#[derive(Debug, PartialEq, Eq)]
pub enum Admit {
    /// Send it now.
    Send,
    /// Held as the topic's latest; the slot opens at this time (schedule a wake-up).
    HoldUntil(Instant),
    /// Held, replacing an older frame that was waiting (merged); a wake-up is already set.
    Merged,
}

#[derive(Debug)]
struct Slot {
    topic: Arc<str>,
    /// `None`: this topic is not limited for this connection.
    interval: Option<Duration>,
    /// When the next frame may go.
    next: Instant,
    /// The latest publication waiting for the slot.
    waiting: Option<Sent>,
    /// The rates changed since `interval` was worked out.
    generation: u64,
}

/// One subscriber's rates and slots.
#[derive(Debug, Default)]
pub struct RateLimiter {
    /// The patterns subscribed with a `max_rate`, and that rate.
    rates: HashMap<Box<str>, f64>,
    /// The server's cap, 0 for none.
    cap: f64,
    slots: HashMap<u64, Slot>,
    /// Bumped when the patterns or their rates change: intervals are worked out again.
    generation: u64,
}

impl RateLimiter {
    pub fn new(cap: f64) -> Self {
        RateLimiter {
            cap,
            ..RateLimiter::default()
        }
    }

    /// Whether this limiter can hold anything back at all.
    pub fn limits_anything(&self) -> bool {
        self.cap > 0.0 || !self.rates.is_empty()
    }

    /// The patterns of a subscribe request, with its `max_rate` (`None`: no limit asked). A
    /// later subscribe of the same pattern replaces its rate.
    pub fn set(&mut self, patterns: &[String], rate: Option<f64>) {
        for p in patterns {
            match rate {
                Some(r) => self.rates.insert(p.as_str().into(), r),
                None => self.rates.remove(p.as_str()),
            };
        }
        self.generation += 1;
    }

    /// Unsubscribed patterns: their rates go, and so do the slots (and frames waiting in them)
    /// of topics no remaining pattern matches.
    pub fn unsubscribed<'p>(&mut self, removed: &[&String], remaining: impl Fn() -> Vec<&'p str>) {
        for p in removed {
            self.rates.remove(p.as_str());
        }
        self.generation += 1;
        let remaining = remaining();
        self.slots
            .retain(|_, s| remaining.iter().any(|p| topic::matches(p, &s.topic)));
    }

    /// A live publication of `topic` (`id`) at `now`; `patterns` are all the connection's.
    pub fn admit<'p>(
        &mut self,
        id: u64,
        topic: &Arc<str>,
        sent: &Sent,
        now: Instant,
        patterns: impl Iterator<Item = &'p str>,
    ) -> Admit {
        let generation = self.generation;
        if !self.slots.contains_key(&id) {
            let interval = self.interval(topic, patterns);
            self.slots.insert(
                id,
                Slot {
                    topic: topic.clone(),
                    interval,
                    next: now,
                    waiting: None,
                    generation,
                },
            );
        } else if self
            .slots
            .get(&id)
            .is_some_and(|s| s.generation != generation)
        {
            let interval = self.interval(topic, patterns);
            if let Some(s) = self.slots.get_mut(&id) {
                s.interval = interval;
                s.generation = generation;
            }
        }
        let Some(slot) = self.slots.get_mut(&id) else {
            return Admit::Send;
        };
        let Some(interval) = slot.interval else {
            return Admit::Send;
        };
        if slot.waiting.is_none() && now >= slot.next {
            slot.next = now + interval;
            return Admit::Send;
        }
        match slot.waiting.replace(sent.clone()) {
            Some(_) => Admit::Merged,
            None => Admit::HoldUntil(slot.next),
        }
    }

    /// The slot of topic `id` opened at `now`: the publication waiting in it, if any, to send
    /// now, with its topic.
    pub fn open(&mut self, id: u64, now: Instant) -> Option<(Arc<str>, Sent)> {
        let slot = self.slots.get_mut(&id)?;
        let waiting = slot.waiting.take()?;
        slot.next = now + slot.interval.unwrap_or_default();
        Some((slot.topic.clone(), waiting))
    }

    /// The interval between messages of `topic`: 1/R of the most generous matching pattern,
    /// none if a matching pattern has no rate, then capped.
    fn interval<'p>(
        &self,
        topic: &str,
        patterns: impl Iterator<Item = &'p str>,
    ) -> Option<Duration> {
        let mut best: Option<f64> = None;
        let mut unlimited = false;
        for p in patterns.filter(|p| topic::matches(p, topic)) {
            match self.rates.get(p) {
                Some(&r) => best = Some(best.map_or(r, |b: f64| b.max(r))),
                None => unlimited = true,
            }
        }
        let rate = match (unlimited, best) {
            (true, _) | (false, None) => None,
            (false, Some(r)) => Some(r),
        };
        let rate = match (rate, self.cap > 0.0) {
            (Some(r), true) => Some(r.min(self.cap)),
            (None, true) => Some(self.cap),
            (r, false) => r,
        };
        rate.map(|r| Duration::from_secs_f64(1.0 / r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn f(s: &str) -> Sent {
        Sent {
            seq: s.parse().unwrap_or(0),
            full: Arc::from(s.as_bytes()),
            delta: None,
        }
    }

    const PATTERNS: [&str; 2] = ["q/+", "q/A"];

    #[test]
    fn between_slots_only_the_latest_is_held_and_goes_when_the_slot_opens() {
        let mut r = RateLimiter::new(0.0);
        r.set(&["q/+".to_owned()], Some(2.0));
        let t0 = Instant::now();
        let ps = || ["q/+"].into_iter();
        let b: Arc<str> = "q/B".into();
        assert_eq!(r.admit(1, &b, &f("1"), t0, ps()), Admit::Send);
        let opens = t0 + Duration::from_millis(500);
        assert_eq!(r.admit(1, &b, &f("2"), t0, ps()), Admit::HoldUntil(opens));
        assert_eq!(r.admit(1, &b, &f("3"), t0, ps()), Admit::Merged);
        assert_eq!(r.open(1, opens).map(|(_, s)| s.seq), Some(3));
        assert_eq!(r.open(1, opens), None, "nothing waits after it went");
        // The next slot is one interval after the one that opened.
        let later = opens + Duration::from_millis(100);
        assert_eq!(
            r.admit(1, &b, &f("4"), later, ps()),
            Admit::HoldUntil(opens + Duration::from_millis(500))
        );
        let much_later = opens + Duration::from_secs(2);
        assert_eq!(r.open(1, much_later).map(|(_, s)| s.seq), Some(4));
        assert_eq!(
            r.admit(1, &b, &f("5"), much_later + Duration::from_secs(1), ps()),
            Admit::Send
        );
    }

    #[test]
    fn the_most_generous_matching_pattern_wins_then_the_cap() {
        let mut r = RateLimiter::new(0.0);
        r.set(&["q/+".to_owned()], Some(1.0));
        r.set(&["q/A".to_owned()], Some(10.0));
        let iv = |r: &RateLimiter, t: &str| r.interval(t, PATTERNS.into_iter());
        assert_eq!(iv(&r, "q/A"), Some(Duration::from_millis(100)));
        assert_eq!(iv(&r, "q/B"), Some(Duration::from_secs(1)));
        // A pattern without a rate means no limit for the topics it matches.
        r.set(&["q/A".to_owned()], None);
        assert_eq!(iv(&r, "q/A"), None);
        // The server's cap applies to everyone, limited or not.
        let mut capped = RateLimiter::new(4.0);
        assert!(capped.limits_anything());
        assert_eq!(iv(&capped, "q/A"), Some(Duration::from_millis(250)));
        capped.set(&["q/+".to_owned()], Some(100.0));
        assert_eq!(iv(&capped, "q/B"), Some(Duration::from_millis(250)));
    }

    #[test]
    fn unsubscribing_drops_what_waits() {
        let mut r = RateLimiter::new(0.0);
        let q = "q/+".to_owned();
        r.set(std::slice::from_ref(&q), Some(1.0));
        let t0 = Instant::now();
        let b: Arc<str> = "q/B".into();
        assert_eq!(
            r.admit(7, &b, &f("1"), t0, ["q/+"].into_iter()),
            Admit::Send
        );
        assert!(matches!(
            r.admit(7, &b, &f("2"), t0, ["q/+"].into_iter()),
            Admit::HoldUntil(_)
        ));
        // Still matched by another pattern: what waits stays.
        r.unsubscribed(&[&q], || vec!["q/B"]);
        assert!(r.open(7, t0 + Duration::from_secs(1)).is_some());
        assert!(matches!(
            r.admit(7, &b, &f("3"), t0, ["q/B"].into_iter()),
            Admit::Send | Admit::HoldUntil(_)
        ));
        r.unsubscribed(&[&"q/B".to_owned()], Vec::new);
        assert_eq!(r.open(7, t0 + Duration::from_secs(9)), None);
        assert!(!r.limits_anything());
    }
}
