//! The broker's settings, their defaults, and the checks done before anything starts.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

/// Everything a broker can be told. Every field has a default ([`Config::default`]); the
/// `tickwire` binary fills it from flags and a TOML file with the same names.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Config {
    /// Public listener: the quote board page at `/` and WebSocket subscribers at `/ws`.
    pub listen: SocketAddr,
    /// Local listener: publishing, metrics, health, topics. `None` disables it.
    pub local_listen: Option<SocketAddr>,
    /// Worker threads; 0 means one per available core.
    pub workers: usize,
    /// Open connections per listener.
    pub max_connections: usize,
    #[serde(with = "secs")]
    pub handshake_timeout: Duration,
    #[serde(with = "secs")]
    pub ping_interval: Duration,
    #[serde(with = "secs")]
    pub pong_timeout: Duration,
    /// Largest message a subscriber may send (its requests are small).
    pub max_client_message: usize,
    /// Largest published payload.
    pub max_payload: usize,
    /// Subscriptions one connection may hold.
    pub max_subscriptions: usize,
    /// Snapshots one subscribe request's wildcard patterns send together, at most.
    pub max_snapshot_topics: usize,
    /// Topics with a last value, at most; a publication to a new topic past it is refused
    /// (`too_many_topics`, 503), nothing published.
    pub max_topics: usize,
    /// How deep JSON may nest in a published payload or a client request.
    pub max_json_depth: usize,
    /// Largest HTTP request body (an NDJSON batch), in bytes; 413 past it.
    pub max_request_body: usize,
    /// How long a keep-alive HTTP connection may sit idle between requests.
    #[serde(with = "secs")]
    pub http_idle_timeout: Duration,
    /// Requests one HTTP connection may carry before it is closed.
    pub http_max_requests: u32,
    /// Bytes waiting for a subscriber past which its updates are conflated.
    pub outbound_soft_limit: usize,
    /// Bytes waiting for a subscriber past which it is closed with 1008.
    pub outbound_hard_limit: usize,
    /// How long a subscriber's output may wait with nothing read before it is closed with 1008.
    #[serde(with = "secs")]
    pub slow_consumer_timeout: Duration,
    /// Publications waiting per worker before publishing answers "queue full".
    pub publish_queue: usize,
    /// Bearer token required by the local listener, if set.
    pub publish_token: Option<String>,
    /// Origins allowed to open WebSockets on the public listener; empty allows any.
    pub allowed_origins: Vec<String>,
    /// Requests (subscribe, unsubscribe, ping) a subscriber may send per second; past it they
    /// are refused with a `rate_limited` error, and at twice the rate it is closed with 1008.
    pub max_requests_per_sec: u32,
    /// WebSocket pings a client may send per second; past it they are not answered, and at
    /// twice the rate it is closed with 1008.
    pub max_pings_per_sec: u32,
    /// Redis URL (`redis://[:password@]host:port[/db]`) through which several nodes share one
    /// feed; `None` (the default) keeps everything in this process. Needs the `redis` feature.
    pub redis: Option<String>,
    /// Names this feed in Redis: channels `<prefix>:<topic>`, hashes `<prefix>:seq` and
    /// `<prefix>:last`. Nodes with the same prefix share a feed. ASCII letters, digits, `_`,
    /// `-` and `.`, at most 64 bytes.
    pub redis_prefix: String,
    /// How long a publication handed to Redis may wait for its answer before the publisher is
    /// answered `unavailable` (it may or may not have been published; it is not retried). A
    /// worker never waits meanwhile: it serves its other connections. Sooner than this, a Redis
    /// that does not answer a command within 2 s is taken as down, which answers every
    /// publication in flight the same way.
    #[serde(with = "secs")]
    pub redis_answer_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            local_listen: Some(SocketAddr::from(([127, 0, 0, 1], 8081))),
            workers: 0,
            max_connections: 100_000,
            handshake_timeout: Duration::from_secs(10),
            ping_interval: Duration::from_secs(30),
            pong_timeout: Duration::from_secs(60),
            max_client_message: 64 * 1024,
            max_payload: 64 * 1024,
            max_subscriptions: 1000,
            max_snapshot_topics: 1000,
            max_topics: 1_000_000,
            max_json_depth: crate::broker::payload::DEFAULT_MAX_DEPTH,
            max_request_body: 8 * 1024 * 1024,
            http_idle_timeout: Duration::from_secs(60),
            http_max_requests: 10_000,
            outbound_soft_limit: 256 * 1024,
            outbound_hard_limit: 4 * 1024 * 1024,
            slow_consumer_timeout: Duration::from_secs(30),
            publish_queue: 65536,
            publish_token: None,
            allowed_origins: Vec::new(),
            max_requests_per_sec: 100,
            max_pings_per_sec: 20,
            redis: None,
            redis_prefix: "tickwire".to_owned(),
            redis_answer_timeout: Duration::from_secs(5),
        }
    }
}

impl Config {
    /// Refuses settings that cannot work, with a message naming the setting.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(local) = self.local_listen {
            if !local.ip().is_loopback() && self.publish_token.as_deref().unwrap_or("").is_empty() {
                return Err(format!(
                    "local_listen {local} is not a loopback address: set publish_token so that \
                     only holders of the token can publish"
                ));
            }
        }
        let positive = [
            ("max_connections", self.max_connections),
            ("max_client_message", self.max_client_message),
            ("max_payload", self.max_payload),
            ("max_subscriptions", self.max_subscriptions),
            ("publish_queue", self.publish_queue),
            ("outbound_hard_limit", self.outbound_hard_limit),
            ("max_requests_per_sec", self.max_requests_per_sec as usize),
            ("max_pings_per_sec", self.max_pings_per_sec as usize),
            ("max_topics", self.max_topics),
            ("max_json_depth", self.max_json_depth),
            ("max_request_body", self.max_request_body),
            ("http_max_requests", self.http_max_requests as usize),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(format!("{name} must be at least 1"));
            }
        }
        if self.outbound_soft_limit >= self.outbound_hard_limit {
            return Err(format!(
                "outbound_soft_limit ({}) must be below outbound_hard_limit ({})",
                self.outbound_soft_limit, self.outbound_hard_limit
            ));
        }
        if self.pong_timeout <= self.ping_interval {
            return Err("pong_timeout must be longer than ping_interval".to_owned());
        }
        self.validate_redis()
    }

    fn validate_redis(&self) -> Result<(), String> {
        let p = &self.redis_prefix;
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
        // The prefix goes into a PSUBSCRIBE glob, so glob characters (and `:`, the separator)
        // are kept out rather than escaped.
        if p.is_empty() || p.len() > 64 || !p.chars().all(allowed) {
            return Err(format!(
                "redis_prefix '{p}' must be 1 to 64 ASCII letters, digits, '_', '-' or '.'"
            ));
        }
        if self.redis_answer_timeout.is_zero() {
            return Err("redis_answer_timeout must be longer than 0 s".to_owned());
        }
        match &self.redis {
            Some(url) if !cfg!(feature = "redis") => Err(format!(
                "redis is set ({}) but this tickwire was built without the `redis` feature",
                redact_url(url)
            )),
            Some(url) if url.trim().is_empty() => Err("redis is set to an empty URL".to_owned()),
            _ => Ok(()),
        }
    }

    /// Worker threads to start.
    pub fn worker_count(&self) -> usize {
        if self.workers == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            self.workers
        }
    }
}

/// `url` with any password replaced by `***`, for logs and errors.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            let user = rest[..at].split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{}", &rest[at + 1..])
        }
        None => url.to_owned(),
    }
}

/// Durations in config files are whole or fractional seconds.
mod secs {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = f64::deserialize(d)?;
        Duration::try_from_secs_f64(s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_match_the_design() {
        let c = Config::default();
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.max_payload, 65536);
        assert_eq!(c.publish_queue, 65536);
    }

    #[test]
    fn a_public_local_listener_needs_a_token() {
        let mut c = Config {
            local_listen: Some("0.0.0.0:8081".parse().unwrap()),
            ..Config::default()
        };
        assert!(c.validate().unwrap_err().contains("publish_token"));
        c.publish_token = Some("secret".into());
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn the_redis_prefix_cannot_hold_glob_characters() {
        for bad in ["", "a*", "a:b", "a b", "[x]", &"x".repeat(65)] {
            let c = Config {
                redis_prefix: bad.to_owned(),
                ..Config::default()
            };
            assert!(c.validate().unwrap_err().contains("redis_prefix"), "{bad}");
        }
        let c = Config {
            redis_prefix: "feed-1.eu_west".to_owned(),
            ..Config::default()
        };
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    #[cfg(not(feature = "redis"))]
    fn redis_without_the_feature_is_refused_at_start() {
        let c = Config {
            redis: Some("redis://:pw@db:6379".to_owned()),
            ..Config::default()
        };
        let err = c.validate().unwrap_err();
        assert!(err.contains("without the `redis` feature"), "{err}");
        assert!(!err.contains("pw"), "{err}");
    }

    #[test]
    fn passwords_are_redacted_from_redis_urls() {
        assert_eq!(
            redact_url("redis://:s3cret@db:6379/0"),
            "redis://:***@db:6379/0"
        );
        assert_eq!(
            redact_url("redis://user:pw@db:6379"),
            "redis://user:***@db:6379"
        );
        assert_eq!(redact_url("redis://db:6379"), "redis://db:6379");
        assert_eq!(redact_url("unix:/tmp/r.sock"), "unix:/tmp/r.sock");
    }
}
