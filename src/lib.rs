//! tickwire: a WebSocket pub/sub broker for live market data, also shipped as a C library.
//!
//! ```no_run
//! let broker = tickwire::Broker::builder()
//!     .listen("127.0.0.1:0".parse().unwrap())
//!     .local_listen(None)
//!     .start()
//!     .expect("broker starts");
//! let publisher = broker.publisher();
//! let seq = publisher
//!     .publish("quotes/AAPL", br#"{"bid":189.1,"ask":189.2}"#)
//!     .expect("published");
//! assert_eq!(seq, 1);
//! println!("subscribers connect to ws://{}/ws", broker.public_addr());
//! broker.shutdown();
//! ```
//!
//! # Layout
//!
//! `docs/ARCHITECTURE.md` in the repository draws the layers, the threads, what owns what and the
//! path of one publication; this is the map of the modules.
//!
//! - [`http`]: HTTP/1.1 without sockets: request heads parsed in place, body framing, responses,
//!   query strings.
//! - [`ws`]: RFC 6455 without sockets: the upgrade handshake, the frame codec, message assembly,
//!   UTF-8 validation and close codes, all pure functions and state machines over byte slices.
//! - [`server`]: the mio event loop workers that own the sockets: accepting, reading, HTTP
//!   keep-alive and upgrades, writing many frames per call, conflation, the closing handshake,
//!   timeouts and pings, and TLS under any of it. It calls an application through the
//!   [`server::Handler`] trait and knows nothing of topics.
//! - [`broker`]: topics, subscriptions, the last-value cache, the publish queue, fan-out, the
//!   local publish API and entitlements (tokens, grants, expiry): the application the server
//!   runs.
//! - `cluster` (feature `redis`): several nodes sharing one feed through Redis (`--redis URL`):
//!   publications sequenced by a Lua script in Redis, a pattern subscription feeding the local
//!   queues, last values kept in Redis, reconnection with backoff.
//! - [`config`]: settings and their defaults.
//! - `metrics`: counters and their Prometheus rendering.
//! - `fdlimit`: the open-file limit, and the descriptors kept out of the public listener's reach.
//! - [`demo`]: the synthetic feed behind `--demo`.
//! - [`ffi`]: the C API (`include/tickwire.h`).
//! - `web`: the quote board page.

pub mod broker;
#[cfg(feature = "redis")]
mod cluster;
pub mod config;
pub mod demo;
mod fdlimit;
pub mod ffi;
pub mod http;
mod metrics;
pub mod server;
mod web;
pub mod ws;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

pub use broker::publisher::{BatchError, PublishError, Publisher};
pub use broker::{ConnectionCallback, ConnectionEvent, Hooks};
pub use config::Config;

#[cfg(feature = "redis")]
use broker::publisher::Upstream as _;
use broker::{BrokerShared, BrokerWorker};

use server::{Listen, Server, ServerConfig};

/// How long starting waits for the Redis link before going on without it.
#[cfg(feature = "redis")]
const REDIS_START_WAIT: Duration = Duration::from_secs(2);
/// The whole of a graceful stop: refusing publications, delivering the accepted ones, close
/// 1001, waiting for the clients' close frames, joining the threads.
pub const SHUTDOWN_WITHIN: Duration = Duration::from_secs(5);

/// Why a broker could not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A setting that cannot work (the message names it).
    Config(String),
    /// A listener could not be bound, or a worker could not start.
    Io {
        what: String,
        source: std::io::Error,
    },
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Config(m) => write!(f, "invalid configuration: {m}"),
            Error::Io { what, source } => write!(f, "{what}: {source}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            Error::Config(_) => None,
        }
    }
}

/// A snapshot of the broker's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Open connections.
    pub connections: usize,
    /// Publications accepted.
    pub published: u64,
    /// Publications refused (invalid, too large, queue full, shutting down).
    pub publish_rejected: u64,
    /// Live updates queued to subscribers.
    pub deliveries: u64,
    /// Topics with a last value.
    pub topics: usize,
    /// Subscriptions held by connected clients.
    pub subscriptions: u64,
    /// Updates replaced by newer ones before a slow subscriber read them.
    pub conflated: u64,
    /// Subscribers closed with 1008 for not reading.
    pub slow_consumers_closed: u64,
}

/// A running broker: its listeners, workers and publish queues.
pub struct Broker {
    server: Option<Server>,
    shared: Arc<BrokerShared>,
    /// The public listener's TLS settings, for [`Broker::reload`].
    tls: Option<Arc<server::tls::TlsAcceptor>>,
}

/// Builds a [`Config`] step by step; see [`Broker::builder`].
#[derive(Debug, Clone, Default)]
pub struct BrokerBuilder {
    config: Config,
    hooks: Hooks,
}

impl BrokerBuilder {
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.config.listen = addr;
        self
    }
    pub fn local_listen(mut self, addr: Option<SocketAddr>) -> Self {
        self.config.local_listen = addr;
        self
    }
    pub fn workers(mut self, n: usize) -> Self {
        self.config.workers = n;
        self
    }
    pub fn publish_token(mut self, token: impl Into<String>) -> Self {
        self.config.publish_token = Some(token.into());
        self
    }
    /// Entitlements: subscribers need a JWT checked with the key in this file (see
    /// [`Config::jwt_key`]).
    pub fn jwt_key(mut self, path: impl Into<String>) -> Self {
        self.config.jwt_key = Some(path.into());
        self
    }
    /// TLS on the public listener (wss:// and https://) with this PEM certificate chain and
    /// private key (see [`Config::tls_cert`]).
    pub fn tls(mut self, cert_path: impl Into<String>, key_path: impl Into<String>) -> Self {
        self.config.tls_cert = Some(cert_path.into());
        self.config.tls_key = Some(key_path.into());
        self
    }
    /// Any other setting.
    pub fn configure(mut self, f: impl FnOnce(&mut Config)) -> Self {
        f(&mut self.config);
        self
    }
    /// Runs `f` on every WebSocket client open and close (see [`Hooks::on_connection`]).
    pub fn on_connection(
        mut self,
        f: impl Fn(ConnectionEvent, usize) + Send + Sync + 'static,
    ) -> Self {
        self.hooks.on_connection = Some(Arc::new(f));
        self
    }
    pub fn start(self) -> Result<Broker, Error> {
        Broker::start_with(self.config, self.hooks)
    }
}

impl Broker {
    /// A builder starting from the defaults (public `127.0.0.1:8080`, local `127.0.0.1:8081`).
    pub fn builder() -> BrokerBuilder {
        BrokerBuilder::default()
    }

    /// Checks the config, binds the listeners and starts the workers.
    pub fn start(config: Config) -> Result<Broker, Error> {
        Self::start_with(config, Hooks::default())
    }

    /// [`Broker::start`] with callbacks.
    ///
    /// With [`Config::redis`] set, it also connects to Redis, waiting up to 2 s for the link to
    /// come up; if Redis is not there yet, the broker starts anyway, unhealthy and refusing
    /// publications until the link is up (see [`Broker::health`]).
    pub fn start_with(config: Config, hooks: Hooks) -> Result<Broker, Error> {
        config.validate().map_err(Error::Config)?;
        let verifier = load_verifier(&config).map_err(Error::Config)?;
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(Arc::new(
                server::tls::TlsAcceptor::from_files(cert, key).map_err(Error::Config)?,
            )),
            _ => None,
        };
        let workers = config.worker_count();
        #[cfg(feature = "redis")]
        let redis = match &config.redis {
            Some(url) => Some(
                cluster::Redis::new(url, &config.redis_prefix, config.redis_answer_timeout)
                    .map_err(Error::Config)?,
            ),
            None => None,
        };
        #[cfg(feature = "redis")]
        let upstream = redis
            .clone()
            .map(|r| r as Arc<dyn broker::publisher::Upstream>);
        #[cfg(not(feature = "redis"))]
        let upstream = None;
        let (hub, receivers) = broker::hub::Hub::new(
            workers,
            config.publish_queue,
            broker::hub::HubLimits::of(&config),
            upstream,
        );
        let shared = Arc::new(BrokerShared {
            hub: Arc::new(hub),
            config: config.clone(),
            subscription_counts: Default::default(),
            engine: Default::default(),
            clients_open: Default::default(),
            hooks,
            verifier: parking_lot::RwLock::new(verifier),
        });
        let engine_config = engine_config(&config, workers);
        let limits = fdlimit::connection_limits(config.max_connections);
        let mut listeners = vec![Listen {
            addr: config.listen,
            max_connections: Some(limits.public),
            tls: tls.clone(),
        }];
        listeners.extend(config.local_listen.map(|addr| Listen {
            addr,
            max_connections: Some(limits.local),
            tls: None,
        }));
        let mut receivers: Vec<_> = receivers.into_iter().map(Some).collect();
        let server = Server::start(engine_config, &listeners, |i| {
            let rx = receivers[i].take().unwrap_or_else(crossbeam_channel::never);
            BrokerWorker::new(shared.clone(), i, rx)
        })
        .map_err(|e| {
            let which = if e.addr == config.listen {
                "the public listener: choose another with --listen"
            } else {
                "the local API: choose another with --local-listen, or turn it off"
            };
            Error::Io {
                what: format!("cannot listen on {} ({which})", e.addr),
                source: e.source,
            }
        })?;
        shared.hub.set_notifiers(server.notifiers());
        log::info!(
            "broker started with {workers} worker(s): subscribers at {}://{}/ws, local API {}{}{}",
            if tls.is_some() { "wss" } else { "ws" },
            server.local_addrs()[0],
            server
                .local_addrs()
                .get(1)
                .map_or_else(|| "off".to_owned(), |a| format!("at http://{a}")),
            if config.jwt_key.is_some() {
                ", tokens required to subscribe"
            } else {
                ""
            },
            if tls.is_some() { ", TLS on" } else { "" },
        );
        let _ = shared.engine.set(server.stats_source());
        fdlimit::warn_if_short(&limits, config.max_connections);
        #[cfg(feature = "redis")]
        if let Some(redis) = &redis {
            redis
                .start(shared.hub.clone())
                .map_err(|source| Error::Io {
                    what: "cannot start the redis threads".to_owned(),
                    source,
                })?;
            if !redis.wait_up(REDIS_START_WAIT) {
                log::warn!(
                    "redis at {} is not reachable yet ({}): serving subscribers, refusing \
                     publications and answering /healthz with 503 until it is; retrying",
                    redis.url(),
                    redis.health().err().unwrap_or_default()
                );
            }
        }
        Ok(Broker {
            server: Some(server),
            shared,
            tls,
        })
    }

    /// Reads again, from the same files, what [`Config::tls_cert`], [`Config::tls_key`] and
    /// [`Config::jwt_key`] name (the command does this on SIGHUP). New TLS handshakes get the
    /// new certificate and established connections keep going; new tokens are checked with
    /// the new key and connections keep the grants they hold until their tokens expire. What
    /// fails to load is left as it was, and the error says what and why.
    pub fn reload(&self) -> Result<(), Error> {
        if self.tls.is_none() && self.shared.config.jwt_key.is_none() {
            log::info!("reload: no TLS certificate and no token key configured: nothing to read");
            return Ok(());
        }
        let mut errors = Vec::new();
        if let Some(tls) = &self.tls {
            match tls.reload() {
                Ok(()) => log::info!("reloaded the TLS certificate and key"),
                Err(e) => errors.push(format!("{e}; the previous certificate stays in use")),
            }
        }
        match load_verifier(&self.shared.config) {
            Ok(Some(v)) => {
                *self.shared.verifier.write() = Some(v);
                log::info!("reloaded the token key (jwt_key)");
            }
            Ok(None) => {}
            Err(e) => errors.push(format!("{e}; the previous key stays in use")),
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Error::Config(errors.join("; ")))
        }
    }

    /// Whether this public listener speaks TLS (wss:// and https://).
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// A handle to publish with, from any thread.
    pub fn publisher(&self) -> Publisher {
        self.shared.publisher()
    }

    /// Where subscribers connect (`ws://ADDR/ws`) and the page is served.
    pub fn public_addr(&self) -> SocketAddr {
        self.server
            .as_ref()
            .map_or(self.shared.config.listen, |s| s.local_addrs()[0])
    }

    /// Where the local publish API listens, if enabled.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        let server = self.server.as_ref()?;
        server.local_addrs().get(1).copied()
    }

    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// `Ok` while the broker can do its whole job; with `--redis`, `Err(reason)` while Redis is
    /// out of reach (publications are refused then). `/healthz` answers the same.
    pub fn health(&self) -> Result<(), String> {
        self.shared.hub.upstream().map_or(Ok(()), |up| up.health())
    }

    pub fn stats(&self) -> Stats {
        let engine = self.server.as_ref().map(|s| s.stats()).unwrap_or_default();
        let m = &self.shared.hub.metrics;
        Stats {
            connections: engine.connections,
            published: m.published.load(Ordering::Relaxed),
            publish_rejected: m.rejected_total(),
            deliveries: m.deliveries.load(Ordering::Relaxed),
            topics: self.shared.hub.cache.len(),
            subscriptions: m.subscriptions.load(Ordering::Relaxed).max(0) as u64,
            conflated: engine.frames_conflated,
            slow_consumers_closed: engine.slow_consumers_closed,
        }
    }

    /// Stops gracefully, all within [`SHUTDOWN_WITHIN`]: refuses new publications, delivers the
    /// ones already accepted, answers the HTTP requests already read, sends close 1001 to every
    /// client and waits for their close frames, and joins the worker threads.
    ///
    /// Called on one of the broker's own worker threads (from an `on_connection` hook), it cannot
    /// wait for the workers, since it runs on one of them: it starts the same stop and returns
    /// at once, and the workers finish on their own within [`SHUTDOWN_WITHIN`] (the calling one
    /// once the hook returns). It never deadlocks. Dropping the broker there does the same.
    pub fn shutdown(mut self) {
        self.stop();
    }

    /// Whether the calling thread is one of this broker's workers (where hooks run).
    pub fn is_worker_thread(&self) -> bool {
        self.server.as_ref().is_some_and(Server::is_worker_thread)
    }

    /// The workers' thread ids (empty once stopped).
    pub(crate) fn worker_threads(&self) -> Vec<std::thread::ThreadId> {
        self.server
            .as_ref()
            .map(Server::worker_threads)
            .unwrap_or_default()
    }

    fn stop(&mut self) {
        let Some(server) = self.server.take() else {
            return;
        };
        // Closing waits at most until a second before the bound, so that joining the threads
        // and exiting fit inside it on a busy machine too.
        let deadline = std::time::Instant::now() + SHUTDOWN_WITHIN - Duration::from_secs(1);
        self.shared.hub.stop_publishing();
        let on_worker = server.is_worker_thread();
        server.shutdown_by(deadline);
        if on_worker {
            log::info!("broker stopping (its workers finish on their own)");
        } else {
            log::info!("broker stopped");
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The token verifier for `--jwt-key`, read from its file.
fn load_verifier(config: &Config) -> Result<Option<Arc<broker::auth::Verifier>>, String> {
    let Some(path) = &config.jwt_key else {
        return Ok(None);
    };
    let v = broker::auth::Verifier::from_file(
        path,
        config.jwt_audience.as_deref(),
        config.jwt_issuer.as_deref(),
        config.jwt_leeway.as_secs(),
    )?;
    Ok(Some(Arc::new(v)))
}

/// The engine's settings for a broker's config.
fn engine_config(config: &Config, workers: usize) -> ServerConfig {
    ServerConfig {
        workers,
        max_connections: config.max_connections,
        handshake_timeout: config.handshake_timeout,
        http_idle_timeout: config.http_idle_timeout,
        http_max_requests: config.http_max_requests,
        ping_interval: config.ping_interval,
        pong_timeout: config.pong_timeout,
        close_timeout: SHUTDOWN_WITHIN,
        limits: server::Limits {
            max_frame: config.max_client_message as u64,
            max_message: config.max_client_message,
        },
        max_request_body: config.max_request_body,
        read_pause_bytes: config.outbound_soft_limit,
        conflate_above_bytes: config.outbound_soft_limit,
        max_outbound_bytes: config.outbound_hard_limit,
        max_stall: config.slow_consumer_timeout,
        max_pings_per_sec: config.max_pings_per_sec,
        compression: config.compression,
        compress_min: config.compress_min,
    }
}
