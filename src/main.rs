//! The `tickwire` command: settings from flags and a TOML file, logging, signals, the `--demo`
//! feed, a graceful stop on SIGINT/SIGTERM, and on SIGHUP a reload of the TLS certificate and
//! key and of the token key from their files.
//!
//! Every flag but `--config` is also a key of the config file, with the same name in
//! snake_case (`--max-payload` is `max_payload`), and every key is a flag: the flags are turned
//! into keys and laid over the file, then the whole is read as one [`Config`]. A unit test
//! checks that the two lists match.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use tickwire::{Broker, Config};

/// A WebSocket pub/sub broker for live market data.
///
/// Flags override the config file; the config file overrides the defaults shown here. Every
/// flag but --config is also a config file key, in snake_case (durations in seconds).
#[derive(Debug, Parser)]
#[command(
    name = "tickwire",
    version,
    allow_negative_numbers = true,
    args_override_self = true
)]
struct Cli {
    /// TOML file with any of the settings below, as `snake_case_name = value`.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Public listener, IP:PORT or HOST:PORT: the quote board at / and subscribers at /ws
    /// [default: 127.0.0.1:8080]
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Local listener for publishing, /metrics, /healthz, /topics; "off" to disable
    /// [default: 127.0.0.1:8081]
    #[arg(long, value_name = "ADDR|off")]
    local_listen: Option<String>,
    /// Worker threads; 0 is one per core; at most 4 per core [default: 0]
    #[arg(long, value_name = "N")]
    workers: Option<String>,
    /// Open connections per listener (the public one also stays under the open-file limit,
    /// keeping 1024 descriptors for the local API and Redis) [default: 100000]
    #[arg(long, value_name = "N")]
    max_connections: Option<String>,
    /// Token the local listener requires as `Authorization: Bearer TOKEN` (required when it is
    /// not on a loopback address)
    #[arg(
        long,
        value_name = "TOKEN",
        env = "TICKWIRE_PUBLISH_TOKEN",
        hide_env_values = true
    )]
    publish_token: Option<String>,
    /// Origin allowed to open WebSockets (repeatable; with any, a request without Origin is
    /// refused too) [default: any]
    #[arg(long, value_name = "ORIGIN")]
    allowed_origin: Vec<String>,
    /// Largest published payload, in bytes [default: 65536]
    #[arg(long, value_name = "BYTES")]
    max_payload: Option<String>,
    /// Largest message a subscriber may send, in bytes [default: 65536]
    #[arg(long, value_name = "BYTES")]
    max_client_message: Option<String>,
    /// Subscriptions per connection [default: 1000]
    #[arg(long, value_name = "N")]
    max_subscriptions: Option<String>,
    /// Snapshots one subscribe request's wildcard patterns send together [default: 1000]
    #[arg(long, value_name = "N")]
    max_snapshot_topics: Option<String>,
    /// Topics with a last value; publishing to a new topic past it is refused [default: 1000000]
    #[arg(long, value_name = "N")]
    max_topics: Option<String>,
    /// How deep JSON may nest in payloads and client requests [default: 128]
    #[arg(long, value_name = "N")]
    max_json_depth: Option<String>,
    /// Largest HTTP request body (an NDJSON batch), in bytes [default: 8388608]
    #[arg(long, value_name = "BYTES")]
    max_request_body: Option<String>,
    /// Seconds a keep-alive HTTP connection may sit idle [default: 60]
    #[arg(long, value_name = "SECS")]
    http_idle_timeout: Option<String>,
    /// Requests one HTTP connection may carry [default: 10000]
    #[arg(long, value_name = "N")]
    http_max_requests: Option<String>,
    /// Publications kept per topic, so a reconnecting subscriber gets what it missed; 0 turns
    /// recovery off [default: 100]
    #[arg(long, value_name = "N")]
    history: Option<String>,
    /// Bytes all topics' histories may hold together; past it the busiest topics keep fewer
    /// [default: 268435456]
    #[arg(long, value_name = "BYTES")]
    history_memory: Option<String>,
    /// Messages per topic per second any subscriber gets at most (the latest value always
    /// arrives); 0 for no cap [default: 0]
    #[arg(long, value_name = "PER_SEC")]
    max_update_rate: Option<String>,
    /// Publications waiting per worker before publishing is refused [default: 65536]
    #[arg(long, value_name = "N")]
    publish_queue: Option<String>,
    /// Bytes waiting for a subscriber before its updates are conflated [default: 262144]
    #[arg(long, value_name = "BYTES")]
    outbound_soft_limit: Option<String>,
    /// Bytes waiting for a subscriber before it is closed with 1008 [default: 4194304]
    #[arg(long, value_name = "BYTES")]
    outbound_hard_limit: Option<String>,
    /// Seconds a subscriber's output may wait with the socket taking none of it before it is
    /// closed with 1008 [default: 30]
    #[arg(long, value_name = "SECS")]
    slow_consumer_timeout: Option<String>,
    /// Requests a subscriber may send per second (refused past it, closed past twice) [default: 100]
    #[arg(long, value_name = "N")]
    max_requests_per_sec: Option<String>,
    /// WebSocket pings a client may send per second (closed past twice) [default: 20]
    #[arg(long, value_name = "N")]
    max_pings_per_sec: Option<String>,
    /// Seconds a client has to send a whole request [default: 10]
    #[arg(long, value_name = "SECS")]
    handshake_timeout: Option<String>,
    /// Seconds of silence before the server pings [default: 30]
    #[arg(long, value_name = "SECS")]
    ping_interval: Option<String>,
    /// Seconds of silence before a connection is dropped [default: 60]
    #[arg(long, value_name = "SECS")]
    pong_timeout: Option<String>,
    /// Share one feed with other tickwire nodes through this Redis (redis://[:PASSWORD@]HOST:PORT[/DB]):
    /// publications made on any node reach the subscribers of all, with the same seqs
    /// [default: off]
    #[arg(
        long,
        value_name = "URL",
        env = "TICKWIRE_REDIS",
        hide_env_values = true
    )]
    redis: Option<String>,
    /// Names the feed in Redis: channels PREFIX:<topic>, hashes PREFIX:seq and PREFIX:last;
    /// nodes with the same prefix share a feed [default: tickwire]
    #[arg(long, value_name = "PREFIX")]
    redis_prefix: Option<String>,
    /// Seconds a publication may wait for Redis's answer before it is answered `unavailable`
    /// (it may or may not have been published) [default: 5]
    #[arg(long, value_name = "SECS")]
    redis_answer_timeout: Option<String>,
    /// Subscribers need a JWT (?token=, Authorization: Bearer, or the auth op) checked with the
    /// key in FILE: a PEM RSA public key (RS256), a PEM P-256 public key (ES256), or else an
    /// HS256 secret (at least 32 bytes); its "topics" claim lists the patterns granted. Reread
    /// on SIGHUP [default: off]
    #[arg(long, value_name = "FILE")]
    jwt_key: Option<String>,
    /// The audience tokens must name in "aud" (without it, tokens with an "aud" are refused)
    #[arg(long, value_name = "AUD")]
    jwt_audience: Option<String>,
    /// The issuer tokens must name in "iss"
    #[arg(long, value_name = "ISS")]
    jwt_issuer: Option<String>,
    /// Seconds of clock skew allowed around a token's exp and nbf, at most 30 [default: 5]
    #[arg(long, value_name = "SECS")]
    jwt_leeway: Option<String>,
    /// PEM certificate chain (leaf first): the public listener speaks TLS 1.2/1.3 (wss://,
    /// https://); with --tls-key; both reread on SIGHUP [default: off]
    #[arg(long, value_name = "FILE")]
    tls_cert: Option<String>,
    /// PEM private key of --tls-cert
    #[arg(long, value_name = "FILE")]
    tls_key: Option<String>,
    /// Publish a synthetic feed: 50 symbols on quotes/<SYMBOL>, a few updates a second each
    #[arg(long)]
    demo: bool,
    /// error, warn, info, debug or trace [default: info]
    #[arg(long, value_name = "LEVEL")]
    log_level: Option<String>,
    /// permessage-deflate with the clients that offer it: on or off; each message is
    /// compressed once for all the clients it goes to [default: on]
    #[arg(long, value_name = "on|off")]
    compression: Option<String>,
    /// Messages of at least this many bytes are compressed for clients that negotiated
    /// permessage-deflate [default: 256]
    #[arg(long, value_name = "BYTES")]
    compress_min: Option<String>,
}

/// What the command runs with: the broker's config and the command's own settings.
#[derive(Debug)]
struct Settings {
    config: Config,
    demo: bool,
    log_level: log::LevelFilter,
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let settings = match Cli::from_arg_matches(&matches)
        .map_err(|e| e.to_string())
        .and_then(|cli| settings(&cli, &matches))
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tickwire: {e}");
            return ExitCode::from(2);
        }
    };
    env_logger::Builder::new()
        .filter_level(settings.log_level)
        .format_target(false)
        .init();

    // The first SIGINT or SIGTERM stops gracefully; a second one while stopping exits at once.
    let stopping = Arc::new(AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM] {
        let _ = signal_hook::flag::register_conditional_shutdown(signal, 1, stopping.clone());
        let _ = signal_hook::flag::register(signal, stopping.clone());
    }
    let mut signals = match signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tickwire: cannot handle signals: {e}");
            return ExitCode::FAILURE;
        }
    };

    let broker = match Broker::start(settings.config) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("tickwire: {e}");
            return ExitCode::FAILURE;
        }
    };
    print_banner(&broker, settings.demo);

    let demo_stop = Arc::new(AtomicBool::new(false));
    let demo = if settings.demo {
        match tickwire::demo::spawn(broker.publisher(), demo_stop.clone()) {
            Ok(h) => Some(h),
            Err(e) => {
                eprintln!("tickwire: cannot start the demo feed: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };

    // Sleeps until a signal comes: no polling. SIGHUP reloads; the others stop.
    let mut signal = None;
    for s in signals.forever() {
        if s != SIGHUP {
            signal = Some(s);
            break;
        }
        if let Err(e) = broker.reload() {
            log::error!("SIGHUP: reload failed: {e}");
        }
    }
    log::info!(
        "stopping on signal {}: closing connections with 1001",
        signal.unwrap_or(0)
    );
    demo_stop.store(true, Ordering::Relaxed);
    if let Some(h) = demo {
        let _ = h.join();
    }
    let stats = broker.stats();
    broker.shutdown();
    log::info!(
        "stopped after {} publications and {} deliveries",
        stats.published,
        stats.deliveries
    );
    ExitCode::SUCCESS
}

/// Defaults, then the config file, then the flags.
fn settings(cli: &Cli, matches: &ArgMatches) -> Result<Settings, String> {
    let mut table = match &cli.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
            text.parse::<toml::Table>()
                .map_err(|e| format!("config file {}: {e}", path.display()))?
        }
        None => toml::Table::new(),
    };
    let from = cli.config.as_ref().map_or_else(
        || "flags".to_owned(),
        |p| format!("config file {} and flags", p.display()),
    );
    for (key, value) in flag_overrides(matches)? {
        table.insert(key, value);
    }
    let demo = match table.remove("demo") {
        Some(toml::Value::Boolean(b)) => b,
        Some(other) => return Err(format!("demo must be true or false, not {other}")),
        None => false,
    };
    let log_level = match table.remove("log_level") {
        Some(toml::Value::String(s)) => s
            .parse()
            .map_err(|_| format!("log_level '{s}': expected error, warn, info, debug or trace"))?,
        Some(other) => return Err(format!("log_level must be a string, not {other}")),
        None => log::LevelFilter::Info,
    };
    let config: Config = table
        .try_into()
        .map_err(|e: toml::de::Error| format!("{from}: {}", e.message().trim_end()))?;
    config.validate()?;
    Ok(Settings {
        config,
        demo,
        log_level,
    })
}

/// The flags given on the command line (or through their environment variables), as config
/// keys with values of the key's type (the type of its default).
fn flag_overrides(matches: &ArgMatches) -> Result<Vec<(String, toml::Value)>, String> {
    let defaults = toml::Table::try_from(Config::default()).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for arg in Cli::command().get_arguments() {
        let id = arg.get_id().as_str();
        if id == "config" || !given(matches, id) {
            continue;
        }
        let key = id.to_owned();
        let flag = format!("--{}", id.replace('_', "-"));
        let value = if id == "demo" {
            toml::Value::Boolean(matches.get_flag(id))
        } else {
            let raw: Vec<&String> = matches
                .get_many::<String>(id)
                .map(|v| v.collect())
                .unwrap_or_default();
            typed(&flag, &raw, defaults.get(id))?
        };
        out.push((key, value));
    }
    Ok(out)
}

fn given(matches: &ArgMatches, id: &str) -> bool {
    use clap::parser::ValueSource;
    matches!(
        matches.value_source(id),
        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
    )
}

/// A flag's text as a value of the same type as the key's default.
fn typed(
    flag: &str,
    raw: &[&String],
    default: Option<&toml::Value>,
) -> Result<toml::Value, String> {
    use toml::Value;
    let one = raw.last().map_or("", |s| s.as_str());
    Ok(match default {
        Some(Value::Integer(_)) => {
            let n: u64 = one
                .trim()
                .parse()
                .map_err(|_| format!("{flag} '{one}': expected a whole number (0 or more)"))?;
            Value::Integer(i64::try_from(n).map_err(|_| format!("{flag} '{one}': too large"))?)
        }
        Some(Value::Float(_)) => {
            let secs: f64 = one
                .trim()
                .parse()
                .ok()
                .filter(|s: &f64| s.is_finite() && *s >= 0.0)
                .ok_or_else(|| format!("{flag} '{one}': expected a number (0 or more)"))?;
            Value::Float(secs)
        }
        Some(Value::Boolean(_)) => Value::Boolean(
            one.parse()
                .map_err(|_| format!("{flag} '{one}': expected true or false"))?,
        ),
        Some(Value::Array(_)) => {
            Value::Array(raw.iter().map(|s| Value::String(s.to_string())).collect())
        }
        _ => Value::String(one.to_owned()),
    })
}

fn print_banner(broker: &Broker, demo: bool) {
    use std::io::Write;
    let public = broker.public_addr();
    let (http, ws) = if broker.is_tls() {
        ("https", "wss")
    } else {
        ("http", "ws")
    };
    let mut text = format!(
        "tickwire {} is running\n  quote board:  {http}://{public}/\n  subscribe:    {ws}://{public}/ws\n",
        env!("CARGO_PKG_VERSION")
    );
    match broker.local_addr() {
        Some(local) => text.push_str(&format!(
            "  publish:      http://{local}/publish  (or ws://{local}/publish)\n  \
             operations:   http://{local}/metrics  /healthz  /topics\n"
        )),
        None => text.push_str("  local API:    off\n"),
    }
    if let Some(url) = &broker.config().redis {
        let state = match broker.health() {
            Ok(()) => "connected".to_owned(),
            Err(reason) => format!("not connected yet: {reason}"),
        };
        text.push_str(&format!(
            "  redis:        {} (prefix {}), {state}\n",
            tickwire::config::redact_url(url),
            broker.config().redis_prefix
        ));
    }
    if let Some(key) = &broker.config().jwt_key {
        text.push_str(&format!(
            "  tokens:       required to subscribe, checked with {key}\n"
        ));
    }
    if demo {
        text.push_str(&format!(
            "  demo feed:    {} symbols on quotes/<SYMBOL>\n",
            tickwire::demo::SYMBOLS.len()
        ));
    }
    text.push_str("Press Ctrl-C to stop.\n");
    // Whoever started us may have stopped reading stdout: that must not stop the broker.
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys of the command's own, beside the broker's config.
    const COMMAND_KEYS: [&str; 2] = ["demo", "log_level"];

    /// The config's keys, read from what serde expects.
    fn config_keys() -> Vec<String> {
        // Every field is serialized except unset options; set them to see their names.
        let mut c = Config::default();
        c.publish_token = Some("t".into());
        c.redis = Some("redis://x".into());
        c.jwt_key = Some("k".into());
        c.jwt_audience = Some("a".into());
        c.jwt_issuer = Some("i".into());
        c.tls_cert = Some("c".into());
        c.tls_key = Some("k".into());
        let table = toml::Table::try_from(c).expect("serializes");
        table.keys().cloned().collect()
    }

    fn parse(args: &[&str]) -> Result<Settings, String> {
        let mut argv = vec!["tickwire"];
        argv.extend_from_slice(args);
        let matches = Cli::command()
            .try_get_matches_from(argv)
            .map_err(|e| e.to_string())?;
        let cli = Cli::from_arg_matches(&matches).map_err(|e| e.to_string())?;
        settings(&cli, &matches)
    }

    #[test]
    fn every_flag_is_a_key_and_every_key_a_flag() {
        let mut flags: Vec<String> = Cli::command()
            .get_arguments()
            .map(|a| a.get_id().as_str().to_owned())
            .filter(|id| !matches!(id.as_str(), "config" | "help" | "version"))
            .collect();
        let mut keys = config_keys();
        keys.extend(COMMAND_KEYS.iter().map(|k| k.to_string()));
        flags.sort();
        keys.sort();
        assert_eq!(flags, keys);
    }

    #[test]
    fn flags_override_the_file_and_are_typed_by_their_key() {
        let dir = std::env::temp_dir().join(format!("tickwire-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(
            &file,
            "workers = 2\nmax_payload = 100\nallowed_origin = [\"https://a\"]\n\
             log_level = \"debug\"\nmax_snapshot_topics = 7\nhandshake_timeout = 2.5\n",
        )
        .unwrap();
        let path = file.to_str().unwrap();
        let s = parse(&["--config", path, "--max-payload", "200", "--demo"]).unwrap();
        assert_eq!(s.config.workers, 2);
        assert_eq!(s.config.max_payload, 200);
        assert_eq!(s.config.max_snapshot_topics, 7);
        assert_eq!(s.config.allowed_origins, ["https://a"]);
        assert_eq!(s.config.handshake_timeout.as_millis(), 2500);
        assert_eq!(s.log_level, log::LevelFilter::Debug);
        assert!(s.demo);
        // The plural key of earlier versions is still read.
        std::fs::write(&file, "allowed_origins = [\"https://b\"]\n").unwrap();
        assert_eq!(
            parse(&["--config", path]).unwrap().config.allowed_origins,
            ["https://b"]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_values_say_what_is_expected() {
        let err = |args: &[&str]| parse(args).unwrap_err();
        assert!(err(&["--workers", "-1"]).contains("--workers '-1': expected a whole number"));
        assert!(err(&["--workers", "100000"]).starts_with("workers is 100000"));
        assert!(err(&["--ping-interval", "soon"]).contains("expected a number"));
        assert!(err(&["--listen", "nonsense"]).contains("IP:PORT or HOST:PORT"));
        assert!(err(&["--log-level", "loud"]).contains("expected error, warn"));
        let s = parse(&["--listen", "localhost:0", "--local-listen", "off"]).unwrap();
        assert!(s.config.listen.ip().is_loopback());
        assert_eq!(s.config.local_listen, None);
        assert!(err(&["--compression", "maybe"]).contains("expected \"on\" or \"off\""));
        assert!(err(&["--compress-min", "-1"]).contains("expected a whole number"));
    }

    #[test]
    fn compression_flags() {
        let s = parse(&[]).unwrap();
        assert!(s.config.compression);
        assert_eq!(s.config.compress_min, 256);
        let s = parse(&["--compression", "off", "--compress-min", "1024"]).unwrap();
        assert!(!s.config.compression);
        assert_eq!(s.config.compress_min, 1024);
        assert!(parse(&["--compression", "on"]).unwrap().config.compression);
    }
}
