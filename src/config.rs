//! The broker's settings, their defaults, and the checks done before anything starts.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Everything a broker can be told. Every field has a default ([`Config::default`]); the
/// `tickwire` binary fills it from flags and a TOML file whose keys are the flags' names in
/// snake_case (`--max-payload` is `max_payload`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Config {
    /// Public listener: the quote board page at `/` and WebSocket subscribers at `/ws`.
    /// `IP:PORT` or `HOST:PORT` in a config file.
    #[serde(with = "addr")]
    pub listen: SocketAddr,
    /// Local listener: publishing, metrics, health, topics. `None` ("off") disables it.
    #[serde(with = "optional_addr")]
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
    /// Publications kept per topic for recovery after a reconnect (`since`); 0 turns it off.
    pub history: usize,
    /// Bytes all topics' histories may hold together; past it the busiest topics keep fewer.
    pub history_memory: usize,
    /// Messages per topic per second a subscriber gets at most, whatever it asks (`max_rate`);
    /// 0: no cap.
    pub max_update_rate: f64,
    /// Bytes waiting for a subscriber past which its updates are conflated.
    pub outbound_soft_limit: usize,
    /// Bytes waiting for a subscriber past which it is closed with 1008.
    pub outbound_hard_limit: usize,
    /// How long a subscriber's output may wait with the socket taking none of it before it is
    /// closed with 1008 (a subscriber that reads, however slowly, is not closed).
    #[serde(with = "secs")]
    pub slow_consumer_timeout: Duration,
    /// Publications waiting per worker before publishing answers "queue full".
    pub publish_queue: usize,
    /// Bearer token required by the local listener, if set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publish_token: Option<String>,
    /// Origins allowed to open WebSockets on the public listener; empty allows any. With a
    /// list, a request without an `Origin` header is refused too (browsers always send one).
    #[serde(rename = "allowed_origin", alias = "allowed_origins")]
    pub allowed_origins: Vec<String>,
    /// Requests (subscribe, unsubscribe, ping) a subscriber may send per second; past it they
    /// are refused with a `rate_limited` error, and past twice the rate it is closed with 1008.
    pub max_requests_per_sec: u32,
    /// WebSocket pings a client may send per second; past it they are not answered, and past
    /// twice the rate it is closed with 1008.
    pub max_pings_per_sec: u32,
    /// Redis URL (`redis://[:password@]host:port[/db]`) through which several nodes share one
    /// feed; `None` (the default) keeps everything in this process. Needs the `redis` feature.
    #[serde(skip_serializing_if = "Option::is_none")]
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
    /// permessage-deflate (RFC 7692) with the clients that offer it: `"on"` (the default) or
    /// `"off"` (`true`/`false` too). The server never uses context takeover, so each message is
    /// compressed once for all the clients it goes to.
    #[serde(with = "on_off")]
    pub compression: bool,
    /// Messages of at least this many bytes are compressed for the clients that negotiated
    /// permessage-deflate; shorter ones are sent plain.
    pub compress_min: usize,
    /// File with the key subscribers' tokens (JWTs) are checked with: a PEM RSA public key
    /// (RS256), a PEM P-256 public key (ES256), or else an HS256 secret (the file's bytes, a
    /// trailing newline dropped, at least 32 bytes). With it, subscribing needs a token whose
    /// `topics` claim grants the patterns. `None` (the default): no entitlements.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt_key: Option<String>,
    /// The audience tokens must name in `aud`. Without it, a token with an `aud` is refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt_audience: Option<String>,
    /// The issuer tokens must name in `iss`, if set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt_issuer: Option<String>,
    /// Clock skew allowed around a token's `exp` and `nbf`, in seconds (whole seconds count);
    /// a connection is closed this long after its token's `exp`.
    #[serde(with = "secs")]
    pub jwt_leeway: Duration,
    /// PEM certificate chain (leaf first) for TLS on the public listener: wss:// and https://.
    /// Set with `tls_key`; both are read again on SIGHUP ([`crate::Broker::reload`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<String>,
    /// PEM private key of `tls_cert` (PKCS#8, PKCS#1 or SEC1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<String>,
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
            history: 100,
            history_memory: 256 * 1024 * 1024,
            max_update_rate: 0.0,
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
            compression: true,
            compress_min: 256,
            jwt_key: None,
            jwt_audience: None,
            jwt_issuer: None,
            jwt_leeway: Duration::from_secs(5),
            tls_cert: None,
            tls_key: None,
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
        self.check_bounds()?;
        if self.outbound_soft_limit >= self.outbound_hard_limit {
            return Err(format!(
                "outbound_soft_limit ({}) must be below outbound_hard_limit ({})",
                self.outbound_soft_limit, self.outbound_hard_limit
            ));
        }
        if self.pong_timeout <= self.ping_interval {
            return Err(format!(
                "pong_timeout ({:?}) must be longer than ping_interval ({:?})",
                self.pong_timeout, self.ping_interval
            ));
        }
        if !(self.max_update_rate.is_finite() && (0.0..=100_000.0).contains(&self.max_update_rate))
        {
            return Err(format!(
                "max_update_rate is {}: it must be from 0 (no cap) to 100000 per second",
                self.max_update_rate
            ));
        }
        if self.max_payload > self.max_request_body {
            return Err(format!(
                "max_payload ({}) must be at most max_request_body ({}): a payload is published \
                 as a request body",
                self.max_payload, self.max_request_body
            ));
        }
        self.validate_redis()?;
        self.validate_security()
    }

    /// Entitlements and TLS: settings that only mean something together.
    fn validate_security(&self) -> Result<(), String> {
        let set = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.trim().is_empty());
        for (name, value) in [
            ("jwt_key", &self.jwt_key),
            ("jwt_audience", &self.jwt_audience),
            ("jwt_issuer", &self.jwt_issuer),
            ("tls_cert", &self.tls_cert),
            ("tls_key", &self.tls_key),
        ] {
            if value.is_some() && !set(value) {
                return Err(format!("{name} is set to an empty string"));
            }
        }
        if self.jwt_key.is_none() {
            for (name, value) in [
                ("jwt_audience", &self.jwt_audience),
                ("jwt_issuer", &self.jwt_issuer),
            ] {
                if value.is_some() {
                    return Err(format!(
                        "{name} is set but jwt_key is not: tokens are only checked with a key"
                    ));
                }
            }
        }
        let max = crate::broker::auth::MAX_LEEWAY_SECS;
        if self.jwt_leeway > Duration::from_secs(max) {
            return Err(format!(
                "jwt_leeway is {} s: it must be from 0 s to {max} s (clock skew, not a grace period)",
                self.jwt_leeway.as_secs_f64()
            ));
        }
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => Err("tls_cert is set but tls_key is not: TLS needs both".to_owned()),
            (None, Some(_)) => Err("tls_key is set but tls_cert is not: TLS needs both".to_owned()),
            _ => Ok(()),
        }
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
        match &self.redis {
            Some(url) if !cfg!(feature = "redis") => Err(format!(
                "redis is set ({}) but this tickwire was built without the `redis` feature",
                redact_url(url)
            )),
            Some(url) if url.trim().is_empty() => Err("redis is set to an empty URL".to_owned()),
            _ => Ok(()),
        }
    }

    /// Every number within its bounds, each with the reason for it.
    fn check_bounds(&self) -> Result<(), String> {
        const KIB: u64 = 1024;
        const MIB: u64 = 1024 * KIB;
        const GIB: u64 = 1024 * MIB;
        let n = |v: usize| v as u64;
        let counts = [
            ("workers", n(self.workers), 0, n(max_workers()), "4 per core: more only adds threads competing for the same cores; 0 is one per core"),
            ("max_connections", n(self.max_connections), 1, 10_000_000, "each is a file descriptor and some memory"),
            ("max_client_message", n(self.max_client_message), 125, 64 * MIB, "subscribers send small requests; 125 bytes fits a control frame"),
            ("max_payload", n(self.max_payload), 1, 64 * MIB, "every subscriber's frame holds one"),
            ("max_subscriptions", n(self.max_subscriptions), 1, 1_000_000, "per connection"),
            ("max_snapshot_topics", n(self.max_snapshot_topics), 0, 1_000_000, "per subscribe request; 0 sends no wildcard snapshots"),
            ("max_topics", n(self.max_topics), 1, 1_000_000_000, "each keeps its last value in memory"),
            ("max_json_depth", n(self.max_json_depth), 1, 512, "browsers and JSON libraries recurse per level"),
            ("max_request_body", n(self.max_request_body), KIB, GIB, "a body is held in memory until it is complete"),
            ("http_max_requests", u64::from(self.http_max_requests), 1, u64::from(u32::MAX), "per connection"),
            ("outbound_soft_limit", n(self.outbound_soft_limit), KIB, GIB, "bytes queued per connection"),
            ("outbound_hard_limit", n(self.outbound_hard_limit), 2 * KIB, 4 * GIB, "bytes queued per connection"),
            ("publish_queue", n(self.publish_queue), 1, 16 * MIB, "publications held per worker"),
            ("max_requests_per_sec", u64::from(self.max_requests_per_sec), 1, 1_000_000, "per connection"),
            ("max_pings_per_sec", u64::from(self.max_pings_per_sec), 1, 1_000_000, "per connection"),
            ("history", n(self.history), 0, 100_000, "publications kept per topic, in memory"),
            ("history_memory", n(self.history_memory), MIB, 1024 * GIB, "bytes of history over all topics"),
            ("compress_min", n(self.compress_min), 0, 64 * MIB, "bytes; 0 compresses every message"),
        ];
        for (name, value, min, max, why) in counts {
            if value < min || value > max {
                return Err(format!(
                    "{name} is {value}: it must be from {min} to {max} ({why})"
                ));
            }
        }
        let ms = Duration::from_millis;
        let hour = Duration::from_secs(3600);
        let durations = [
            ("handshake_timeout", self.handshake_timeout, ms(10), hour),
            (
                "http_idle_timeout",
                self.http_idle_timeout,
                ms(10),
                24 * hour,
            ),
            ("ping_interval", self.ping_interval, ms(10), 24 * hour),
            ("pong_timeout", self.pong_timeout, ms(20), 48 * hour),
            (
                "slow_consumer_timeout",
                self.slow_consumer_timeout,
                ms(10),
                24 * hour,
            ),
        ];
        for (name, value, min, max) in durations {
            if value < min || value > max {
                return Err(format!(
                    "{name} is {} s: it must be from {} s to {} s",
                    value.as_secs_f64(),
                    min.as_secs_f64(),
                    max.as_secs_f64()
                ));
            }
        }
        Ok(())
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

/// The most workers allowed: 4 per core (at least 4).
pub fn max_workers() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .saturating_mul(4)
        .max(4)
}

/// Resolves `IP:PORT` or `HOST:PORT` (the first address the name resolves to).
pub fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    if let Ok(a) = text.parse() {
        return Ok(a);
    }
    let expected = "expected IP:PORT or HOST:PORT, e.g. 127.0.0.1:8080 or localhost:8080";
    if !text.contains(':') {
        return Err(format!("'{text}' has no port: {expected}"));
    }
    match text.to_socket_addrs() {
        Ok(mut addrs) => addrs
            .next()
            .ok_or_else(|| format!("'{text}' resolves to no address: {expected}")),
        Err(e) => Err(format!("'{text}': {e}: {expected}")),
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
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = f64::deserialize(d)?;
        Duration::try_from_secs_f64(s)
            .map_err(|_| serde::de::Error::custom(format!("{s} is not a number of seconds from 0")))
    }

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}

/// Addresses in config files are `IP:PORT` or `HOST:PORT`.
mod addr {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::net::SocketAddr;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_addr(&text).map_err(serde::de::Error::custom)
    }

    pub fn serialize<S: Serializer>(a: &SocketAddr, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(a)
    }
}

/// A switch: `"on"`/`"off"` (what flags give and what is written out), or a TOML boolean.
mod on_off {
    use serde::{Deserialize, Deserializer, Serializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Switch {
        Bool(bool),
        Text(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
        match Switch::deserialize(d)? {
            Switch::Bool(b) => Ok(b),
            Switch::Text(t) => match t.trim().to_ascii_lowercase().as_str() {
                "on" | "true" => Ok(true),
                "off" | "false" => Ok(false),
                _ => Err(serde::de::Error::custom(format!(
                    "'{t}': expected \"on\" or \"off\""
                ))),
            },
        }
    }

    pub fn serialize<S: Serializer>(on: &bool, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(if *on { "on" } else { "off" })
    }
}

/// An address, or `"off"` for none.
mod optional_addr {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::net::SocketAddr;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
        let text = String::deserialize(d)?;
        match text.as_str() {
            "off" | "none" => Ok(None),
            _ => super::parse_addr(&text)
                .map(Some)
                .map_err(serde::de::Error::custom),
        }
    }

    pub fn serialize<S: Serializer>(a: &Option<SocketAddr>, s: S) -> Result<S::Ok, S::Error> {
        match a {
            Some(a) => s.collect_str(a),
            None => s.serialize_str("off"),
        }
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
    fn numbers_out_of_bounds_are_refused_naming_the_setting() {
        type Change = fn(&mut Config);
        let cases: [(&str, Change); 6] = [
            ("workers", |c| c.workers = 100_000),
            ("max_connections", |c| c.max_connections = 0),
            ("max_payload", |c| c.max_payload = 0),
            ("handshake_timeout", |c| {
                c.handshake_timeout = Duration::ZERO
            }),
            ("max_json_depth", |c| c.max_json_depth = 100_000),
            ("outbound_hard_limit", |c| {
                c.outbound_hard_limit = usize::MAX
            }),
        ];
        for (name, change) in cases {
            let mut c = Config::default();
            change(&mut c);
            let err = c.validate().unwrap_err();
            assert!(err.starts_with(name), "{name}: {err}");
        }
        let c = Config {
            workers: max_workers(),
            ..Config::default()
        };
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn compression_is_on_or_off_as_text_or_a_boolean() {
        let read = |text: &str| toml::from_str::<Config>(text).map(|c| c.compression);
        assert_eq!(read(""), Ok(true));
        assert_eq!(read("compression = \"off\""), Ok(false));
        assert_eq!(read("compression = \"On\""), Ok(true));
        assert_eq!(read("compression = false"), Ok(false));
        assert_eq!(read("compression = true"), Ok(true));
        let err = read("compression = \"maybe\"").unwrap_err().to_string();
        assert!(err.contains("expected \"on\" or \"off\""), "{err}");
        let written = toml::to_string(&Config {
            compression: false,
            ..Config::default()
        })
        .unwrap();
        assert!(written.contains("compression = \"off\""), "{written}");
        let c = Config {
            compress_min: 65 * 1024 * 1024,
            ..Config::default()
        };
        assert!(c.validate().unwrap_err().starts_with("compress_min"));
    }

    #[test]
    fn security_settings_come_in_pairs() {
        let err = |f: fn(&mut Config)| {
            let mut c = Config::default();
            f(&mut c);
            c.validate().unwrap_err()
        };
        assert!(err(|c| c.tls_cert = Some("c.pem".into())).contains("tls_key is not"));
        assert!(err(|c| c.tls_key = Some("k.pem".into())).contains("tls_cert is not"));
        assert!(err(|c| c.jwt_audience = Some("a".into())).contains("jwt_key is not"));
        assert!(err(|c| c.jwt_key = Some(" ".into())).contains("empty"));
        assert!(err(|c| c.jwt_leeway = Duration::from_secs(60)).starts_with("jwt_leeway"));
        let c = Config {
            jwt_key: Some("k".into()),
            jwt_issuer: Some("i".into()),
            tls_cert: Some("c".into()),
            tls_key: Some("k".into()),
            ..Config::default()
        };
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn addresses_may_be_host_names() {
        assert_eq!(
            parse_addr("127.0.0.1:80").unwrap(),
            "127.0.0.1:80".parse::<SocketAddr>().unwrap()
        );
        assert!(parse_addr("localhost:8090").unwrap().ip().is_loopback());
        let err = parse_addr("localhost").unwrap_err();
        assert!(err.contains("IP:PORT or HOST:PORT"), "{err}");
        let err = parse_addr("no such host.invalid:80").unwrap_err();
        assert!(err.contains("IP:PORT or HOST:PORT"), "{err}");
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
