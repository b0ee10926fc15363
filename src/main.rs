//! The `tickwire` command: flags and a TOML config file into a [`Config`], logging, signals,
//! the `--demo` feed, and a graceful stop on SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use tickwire::{Broker, Config};

/// A WebSocket pub/sub broker for live market data.
///
/// Flags override the config file; the config file overrides the defaults shown here.
#[derive(Debug, Parser)]
#[command(name = "tickwire", version)]
struct Cli {
    /// TOML file with any of the settings below (snake_case names, durations in seconds).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Public listener: the quote board at / and subscribers at /ws [default: 127.0.0.1:8080]
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Local listener for publishing, /metrics, /healthz, /topics; "off" to disable
    /// [default: 127.0.0.1:8081]
    #[arg(long, value_name = "ADDR|off")]
    local_listen: Option<String>,
    /// Worker threads [default: one per core]
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
    /// Open connections at most [default: 100000]
    #[arg(long, value_name = "N")]
    max_connections: Option<usize>,
    /// Token the local listener requires as `Authorization: Bearer TOKEN` (required when it is
    /// not on a loopback address)
    #[arg(
        long,
        value_name = "TOKEN",
        env = "TICKWIRE_PUBLISH_TOKEN",
        hide_env_values = true
    )]
    publish_token: Option<String>,
    /// Origin allowed to open WebSockets (repeatable) [default: any]
    #[arg(long = "allowed-origin", value_name = "ORIGIN")]
    allowed_origins: Vec<String>,
    /// Largest published payload, in bytes [default: 65536]
    #[arg(long, value_name = "BYTES")]
    max_payload: Option<usize>,
    /// Largest message a subscriber may send, in bytes [default: 65536]
    #[arg(long, value_name = "BYTES")]
    max_client_message: Option<usize>,
    /// Subscriptions per connection [default: 1000]
    #[arg(long, value_name = "N")]
    max_subscriptions: Option<usize>,
    /// Publications waiting per worker before publishing is refused [default: 65536]
    #[arg(long, value_name = "N")]
    publish_queue: Option<usize>,
    /// Bytes waiting for a subscriber before its updates are conflated [default: 262144]
    #[arg(long, value_name = "BYTES")]
    outbound_soft_limit: Option<usize>,
    /// Bytes waiting for a subscriber before it is closed with 1008 [default: 4194304]
    #[arg(long, value_name = "BYTES")]
    outbound_hard_limit: Option<usize>,
    /// Seconds a subscriber may leave its output unread before it is closed with 1008 [default: 30]
    #[arg(long, value_name = "SECS")]
    slow_consumer_timeout: Option<f64>,
    /// Requests a subscriber may send per second (refused past it, closed at twice) [default: 100]
    #[arg(long, value_name = "N")]
    max_requests_per_sec: Option<u32>,
    /// WebSocket pings a client may send per second (closed at twice) [default: 20]
    #[arg(long, value_name = "N")]
    max_pings_per_sec: Option<u32>,
    /// Seconds a client has to complete its handshake [default: 10]
    #[arg(long, value_name = "SECS")]
    handshake_timeout: Option<f64>,
    /// Seconds a keep-alive HTTP connection may sit idle between requests [default: 60]
    #[arg(long, value_name = "SECS")]
    http_idle_timeout: Option<f64>,
    /// Requests one HTTP connection may carry; the last is answered with `Connection: close`
    /// [default: 10000]
    #[arg(long, value_name = "N")]
    http_max_requests: Option<u32>,
    /// Seconds of silence before the server pings [default: 30]
    #[arg(long, value_name = "SECS")]
    ping_interval: Option<f64>,
    /// Seconds of silence before a connection is dropped [default: 60]
    #[arg(long, value_name = "SECS")]
    pong_timeout: Option<f64>,
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
    /// Publish a synthetic feed: 50 symbols on quotes/<SYMBOL>, a few updates a second each
    #[arg(long)]
    demo: bool,
    /// error, warn, info, debug or trace [default: info]
    #[arg(long, value_name = "LEVEL", default_value = "info")]
    log_level: log::LevelFilter,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    env_logger::Builder::new()
        .filter_level(cli.log_level)
        .format_target(false)
        .init();
    let config = match build_config(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tickwire: {e}");
            return ExitCode::from(2);
        }
    };
    raise_fd_limit(config.max_connections);

    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // A second signal while stopping exits at once.
        let _ = signal_hook::flag::register_conditional_shutdown(signal, 1, stop.clone());
        if let Err(e) = signal_hook::flag::register(signal, stop.clone()) {
            eprintln!("tickwire: cannot handle signal {signal}: {e}");
            return ExitCode::FAILURE;
        }
    }

    let broker = match Broker::start(config) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("tickwire: {e}");
            return ExitCode::FAILURE;
        }
    };
    print_banner(&broker, cli.demo);

    let demo_stop = Arc::new(AtomicBool::new(false));
    let demo = if cli.demo {
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

    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
    }
    log::info!("stopping: closing connections with 1001");
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
fn build_config(cli: &Cli) -> Result<Config, String> {
    let mut c = match &cli.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
            toml::from_str(&text).map_err(|e| format!("config file {}: {e}", path.display()))?
        }
        None => Config::default(),
    };
    let secs =
        |name: &str, v: f64| Duration::try_from_secs_f64(v).map_err(|e| format!("--{name}: {e}"));
    if let Some(a) = cli.listen {
        c.listen = a;
    }
    if let Some(l) = &cli.local_listen {
        c.local_listen = match l.as_str() {
            "off" | "none" => None,
            addr => Some(
                addr.parse()
                    .map_err(|e| format!("--local-listen '{addr}': {e}"))?,
            ),
        };
    }
    macro_rules! set {
        ($($field:ident),*) => { $( if let Some(v) = cli.$field { c.$field = v; } )* };
    }
    set!(
        workers,
        max_connections,
        max_payload,
        max_client_message,
        max_subscriptions,
        publish_queue,
        outbound_soft_limit,
        outbound_hard_limit,
        max_requests_per_sec,
        max_pings_per_sec,
        http_max_requests
    );
    if let Some(v) = cli.slow_consumer_timeout {
        c.slow_consumer_timeout = secs("slow-consumer-timeout", v)?;
    }
    if let Some(v) = cli.handshake_timeout {
        c.handshake_timeout = secs("handshake-timeout", v)?;
    }
    if let Some(v) = cli.http_idle_timeout {
        c.http_idle_timeout = secs("http-idle-timeout", v)?;
    }
    if let Some(v) = cli.ping_interval {
        c.ping_interval = secs("ping-interval", v)?;
    }
    if let Some(v) = cli.pong_timeout {
        c.pong_timeout = secs("pong-timeout", v)?;
    }
    if cli.publish_token.is_some() {
        c.publish_token = cli.publish_token.clone();
    }
    if !cli.allowed_origins.is_empty() {
        c.allowed_origins = cli.allowed_origins.clone();
    }
    if let Some(url) = &cli.redis {
        c.redis = Some(url.clone());
    }
    if let Some(prefix) = &cli.redis_prefix {
        c.redis_prefix = prefix.clone();
    }
    c.validate()?;
    Ok(c)
}

fn print_banner(broker: &Broker, demo: bool) {
    use std::io::Write;
    let public = broker.public_addr();
    let mut text = format!(
        "tickwire {} is running\n  quote board:  http://{public}/\n  subscribe:    ws://{public}/ws\n",
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

/// Each connection is a file descriptor: raise the soft limit toward `max_connections`.
fn raise_fd_limit(max_connections: usize) {
    let want = max_connections as u64 + 64;
    match rlimit::increase_nofile_limit(want) {
        Ok(got) if got >= want => log::debug!("open-file limit is {got}"),
        Ok(got) => log::info!(
            "open-file limit is {got} (the hard limit): fewer than max_connections={max_connections} \
             connections fit; raise the hard limit (ulimit -Hn) to allow more"
        ),
        Err(e) => log::warn!("cannot raise the open-file limit: {e}"),
    }
}
