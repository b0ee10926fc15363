//! The C API: opaque handles with the `tw_` prefix, numbered status codes, and a panic boundary
//! on every function. The header `include/tickwire.h` is generated from this file by cbindgen
//! (`cbindgen.toml`); `tests/c_header.rs` fails when it is stale.
//!
//! Conventions, for every function:
//! - Strings are UTF-8 and NUL-terminated; a NULL or non-UTF-8 argument is answered with a status
//!   code, never a crash.
//! - Errors return a negative [`tw_status`] (or NULL) and leave a message for
//!   [`tw_last_error`] on the calling thread.
//! - No Rust panic crosses the boundary: it becomes `TW_ERR_INTERNAL`.
//! - Nothing returned must be freed with anything but a `tw_*_free` function.
//!
//! `tw_config` grows at its end only, and carries its own size: `tw_config_init(&cfg, sizeof cfg)`
//! records the size the program was compiled with, and `tw_broker_start` reads only the fields
//! that size holds, using the defaults for the rest. A program built against an older header
//! keeps working with a newer library. To add fields: append them to `tw_config`, give them
//! defaults in `default_config`, read them in `start`, and add the layout before them to
//! `config_layouts`.
#![allow(non_camel_case_types)]
// The C boundary is the one place raw pointers come in: the crate denies unsafe code elsewhere.
#![allow(unsafe_code)]
#![deny(clippy::undocumented_unsafe_blocks)]

use std::cell::RefCell;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};

use crate::{Broker, Config, ConnectionEvent, Hooks, PublishError, Publisher};

/// Every result of the C API. `TW_OK` is 0; errors are negative and stable.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum tw_status {
    /// Success.
    TW_OK = 0,
    /// A required pointer argument was NULL.
    TW_ERR_NULL_ARGUMENT = -1,
    /// A string argument was not valid UTF-8.
    TW_ERR_INVALID_UTF8 = -2,
    /// The topic is not a valid topic (see `tw_last_error()` for why).
    TW_ERR_INVALID_TOPIC = -3,
    /// The payload is not valid JSON.
    TW_ERR_INVALID_PAYLOAD = -4,
    /// The payload is over the configured `max_payload`.
    TW_ERR_PAYLOAD_TOO_LARGE = -5,
    /// A publish queue is full: subscribers are behind. Nothing was published; retry later.
    TW_ERR_QUEUE_FULL = -6,
    /// The broker was stopped.
    TW_ERR_STOPPED = -7,
    /// A configuration value cannot work (the message names it).
    TW_ERR_CONFIG = -8,
    /// A listener could not be bound, or a thread could not start.
    TW_ERR_IO = -9,
    /// A bug: a Rust panic was caught at the boundary.
    TW_ERR_INTERNAL = -10,
    /// The caller's buffer is too small for the answer.
    TW_ERR_BUFFER_TOO_SMALL = -11,
    /// The broker cannot deliver it now: with `redis` set, the connection to Redis is down or
    /// Redis refused the publication (`tw_last_error()` says which): nothing was published;
    /// retry later. Or Redis did not answer in time, or the connection dropped while it was
    /// being published: it may or may not have been published (`tw_last_error()` says so).
    TW_ERR_UNAVAILABLE = -12,
    /// The publication would add a topic past the broker's topic limit (`max_topics`). Nothing
    /// was published; existing topics still publish.
    TW_ERR_TOO_MANY_TOPICS = -13,
    /// Called on one of the broker's own worker threads (from the `on_connection` callback),
    /// where it would wait for that very thread: `tw_broker_stop`, `tw_broker_shutdown` and
    /// `tw_broker_free` refuse, and nothing changes. Call them from another thread.
    TW_ERR_WRONG_THREAD = -14,
}

/// Settings for [`tw_broker_start`]. Fill with `tw_config_init(&cfg, sizeof cfg)`, then change
/// what you need. String fields are borrowed only during `tw_broker_start` (they are copied).
/// New fields are only ever added at the end; `size` tells the library which of them a program
/// knows.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct tw_config {
    /// `sizeof(tw_config)` as the program was compiled: set by `tw_config_init`, checked by
    /// `tw_broker_start`. Do not change it.
    pub size: usize,
    /// Public listener, "host:port" (subscribers at ws://host:port/ws). Default "127.0.0.1:8080";
    /// port 0 picks a free port (see `tw_broker_public_addr`).
    pub listen: *const c_char,
    /// Local publish/metrics listener, "host:port", or NULL to disable it. Default "127.0.0.1:8081".
    pub local_listen: *const c_char,
    /// Worker threads; 0 means one per core. Default 0.
    pub workers: u32,
    /// Open connections per listener. Default 100000.
    pub max_connections: u32,
    /// Largest published payload in bytes. Default 65536.
    pub max_payload: u32,
    /// Subscriptions per connection. Default 1000.
    pub max_subscriptions: u32,
    /// Publications waiting per worker before publishing answers TW_ERR_QUEUE_FULL. Default 65536.
    pub publish_queue: u32,
    /// Bytes waiting for a subscriber before its updates are conflated. Default 262144.
    pub outbound_soft_limit: u32,
    /// Bytes waiting for a subscriber before it is closed with 1008. Default 4194304.
    pub outbound_hard_limit: u32,
    /// Bearer token the local listener requires, or NULL for none. Default NULL.
    pub publish_token: *const c_char,
    /// Called when a WebSocket client connects or disconnects, or NULL. It runs on the broker's
    /// worker thread that owns the connection, so it must be thread-safe and quick. It must not
    /// stop or free the broker: that would wait for the very thread it runs on, so
    /// `tw_broker_stop`, `tw_broker_shutdown` and `tw_broker_free` refuse there with
    /// TW_ERR_WRONG_THREAD (signal another thread to do it). With `redis` set, do not publish
    /// from it: `tw_publish` then waits for Redis's answer, and so would every other connection
    /// of that worker.
    pub on_connection: tw_connection_callback,
    /// Passed back to `on_connection` as is.
    pub on_connection_user: *mut c_void,
    /// Redis URL ("redis://host:6379") through which several brokers share one feed, or NULL
    /// (the default) to keep everything in this process. Needs a library built with the `redis`
    /// feature (the default); otherwise `tw_broker_start` fails with TW_ERR_CONFIG.
    pub redis: *const c_char,
    /// Names the feed in Redis (brokers with the same prefix share it), or NULL for "tickwire".
    pub redis_prefix: *const c_char,
    /// Path of the key subscribers' tokens (JWTs) are checked with, or NULL (the default) for no
    /// entitlements: a PEM RSA public key (RS256), a PEM P-256 public key (ES256), or else an
    /// HS256 secret (the file's bytes, a trailing newline dropped, at least 32 bytes). With it,
    /// subscribing needs a token whose `topics` claim grants the patterns.
    pub jwt_key: *const c_char,
    /// The audience tokens must name in `aud`, or NULL (then tokens with an `aud` are refused).
    pub jwt_audience: *const c_char,
    /// The issuer tokens must name in `iss`, or NULL for any.
    pub jwt_issuer: *const c_char,
    /// Path of a PEM certificate chain (leaf first) for TLS on the public listener (wss://,
    /// https://), or NULL (the default) for plain TCP. Set with `tls_key`.
    pub tls_cert: *const c_char,
    /// Path of the PEM private key of `tls_cert`, or NULL.
    pub tls_key: *const c_char,
    /// Clock skew allowed around a token's `exp` and `nbf`, in seconds, at most 30. Default 5.
    pub jwt_leeway_secs: u32,
    /// Publications kept per topic so a reconnecting subscriber can recover what it missed
    /// (`since` in subscribe); 0 turns recovery off. Default 100.
    pub history: u32,
    /// Bytes all topics' histories may hold together; past it the busiest topics keep fewer.
    /// Default 268435456 (256 MiB).
    pub history_memory: u64,
    /// Updates per topic per second a subscriber gets at most, whatever `max_rate` it asks
    /// for; 0 for no cap. Default 0.
    pub max_update_rate: f64,
    /// Topics with a last value, at most; publishing to a new topic past it answers
    /// TW_ERR_TOO_MANY_TOPICS. Default 1000000.
    pub max_topics: u32,
    /// How deep JSON may nest in a published payload or a client request. Default 64.
    pub max_json_depth: u32,
    /// permessage-deflate with the WebSocket clients that offer it. Default true.
    pub compression: bool,
    /// Messages of at least this many bytes are sent compressed to those clients; 0 compresses
    /// every message. Default 256.
    pub compress_min: u32,
}

/// Each layout of `tw_config` a program may have been compiled with, oldest first: (its
/// `sizeof`, the bytes its fields take, trailing padding excluded). Only those bytes are read
/// from a program's struct; what lies past them keeps its default.
fn config_layouts() -> [(usize, usize); 3] {
    use std::mem::{align_of, offset_of, size_of};
    let padded = |n: usize| n.next_multiple_of(align_of::<tw_config>());
    let fields_before = |first_new: usize| (padded(first_new), first_new);
    [
        // Without the entitlement and TLS fields and those after them.
        fields_before(offset_of!(tw_config, jwt_key)),
        // Without the delivery settings (`jwt_leeway_secs` on).
        fields_before(offset_of!(tw_config, jwt_leeway_secs)),
        // This header's.
        (size_of::<tw_config>(), size_of::<tw_config>()),
    ]
}

/// The bytes of fields in a `tw_config` of `size` bytes, or why it is not a known layout.
fn config_fields(size: usize) -> Result<usize, String> {
    let layouts = config_layouts();
    if let Some(&(_, fields)) = layouts.iter().find(|(s, _)| *s == size) {
        return Ok(fields);
    }
    let sizes: Vec<String> = layouts.iter().map(|(s, _)| s.to_string()).collect();
    Err(format!(
        "tw_config size {size} is not one this library knows ({}): fill the config with \
         tw_config_init(&cfg, sizeof cfg), with a tickwire.h no newer than the library",
        sizes.join(", ")
    ))
}

/// The defaults, in this library's layout.
fn default_config() -> tw_config {
    let d = Config::default();
    let clamp = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
    tw_config {
        size: std::mem::size_of::<tw_config>(),
        listen: c"127.0.0.1:8080".as_ptr(),
        local_listen: c"127.0.0.1:8081".as_ptr(),
        workers: 0,
        max_connections: clamp(d.max_connections),
        max_payload: clamp(d.max_payload),
        max_subscriptions: clamp(d.max_subscriptions),
        publish_queue: clamp(d.publish_queue),
        outbound_soft_limit: clamp(d.outbound_soft_limit),
        outbound_hard_limit: clamp(d.outbound_hard_limit),
        publish_token: std::ptr::null(),
        on_connection: None,
        on_connection_user: std::ptr::null_mut(),
        redis: std::ptr::null(),
        redis_prefix: std::ptr::null(),
        jwt_key: std::ptr::null(),
        jwt_audience: std::ptr::null(),
        jwt_issuer: std::ptr::null(),
        tls_cert: std::ptr::null(),
        tls_key: std::ptr::null(),
        jwt_leeway_secs: clamp(d.jwt_leeway.as_secs() as usize),
        history: clamp(d.history),
        history_memory: d.history_memory as u64,
        max_update_rate: d.max_update_rate,
        max_topics: clamp(d.max_topics),
        max_json_depth: clamp(d.max_json_depth),
        compression: d.compression,
        compress_min: clamp(d.compress_min),
    }
}

/// What happened to a WebSocket client connection.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum tw_connection_event {
    /// A client finished the WebSocket handshake (public or local listener).
    TW_CONNECTION_OPENED = 1,
    /// A client that had opened is gone: closed by either side, timed out, or closed by
    /// `tw_broker_shutdown` (which reports every open client before it returns).
    TW_CONNECTION_CLOSED = 2,
}

/// Called with `event`, the number of WebSocket clients open after it, and the
/// `on_connection_user` pointer. NULL means no callback.
pub type tw_connection_callback =
    Option<extern "C" fn(event: tw_connection_event, open_clients: usize, user: *mut c_void)>;

/// Log level for [`tw_set_log_callback`]: errors only.
pub const TW_LOG_ERROR: c_int = 1;
/// Log level: warnings and errors.
pub const TW_LOG_WARN: c_int = 2;
/// Log level: information (start, stop), warnings and errors.
pub const TW_LOG_INFO: c_int = 3;
/// Log level: debugging detail.
pub const TW_LOG_DEBUG: c_int = 4;
/// Log level: everything.
pub const TW_LOG_TRACE: c_int = 5;

/// Called with a log line's level (`TW_LOG_*`), its NUL-terminated message (valid only during
/// the call), and the user pointer given to `tw_set_log_callback`. NULL means no callback.
pub type tw_log_callback =
    Option<extern "C" fn(level: c_int, message: *const c_char, user: *mut c_void)>;

/// One publication of a batch.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct tw_message {
    /// NUL-terminated UTF-8 topic.
    pub topic: *const c_char,
    /// JSON payload bytes (need not be NUL-terminated).
    pub payload: *const u8,
    /// Payload length in bytes.
    pub len: usize,
}

/// Counters since start, filled by [`tw_broker_stats`].
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct tw_stats {
    /// Open connections.
    pub connections: u64,
    /// Publications accepted.
    pub published: u64,
    /// Publications refused (invalid, too large, queue full, stopped).
    pub publish_rejected: u64,
    /// Live updates queued to subscribers.
    pub deliveries: u64,
    /// Topics with a last value.
    pub topics: u64,
    /// Subscriptions held by connected clients.
    pub subscriptions: u64,
    /// Updates replaced by a newer one before a slow subscriber read them.
    pub conflated: u64,
    /// Subscribers closed for not reading.
    pub slow_consumers_closed: u64,
}

/// A running broker. Opaque: create with [`tw_broker_start`], end with [`tw_broker_stop`].
pub struct tw_broker {
    /// `None` once shut down; the publisher keeps answering (TW_ERR_STOPPED).
    broker: Mutex<Option<Broker>>,
    /// The broker's worker threads, where stopping it must be refused (read without the lock,
    /// which a stop in progress on another thread may hold).
    workers: Vec<std::thread::ThreadId>,
    publisher: Publisher,
    public_addr: CString,
    local_addr: Option<CString>,
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_error(message: impl Into<String>) {
    let text = message.into().replace('\0', " ");
    LAST_ERROR.with(|e| *e.borrow_mut() = CString::new(text).unwrap_or_default());
}

fn fail(status: tw_status, message: impl Into<String>) -> tw_status {
    set_error(message);
    status
}

/// Runs `f` inside the panic boundary.
fn guard<T>(on_panic: T, f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(_) => {
            set_error("internal error: a panic was caught at the C API boundary (a tickwire bug)");
            on_panic
        }
    }
}

/// Reads a C string argument.
///
/// # Safety
/// `ptr` is NULL or points to a NUL-terminated string valid for the call.
unsafe fn c_str<'a>(ptr: *const c_char, what: &str) -> Result<&'a str, tw_status> {
    if ptr.is_null() {
        return Err(fail(
            tw_status::TW_ERR_NULL_ARGUMENT,
            format!("{what} is NULL"),
        ));
    }
    // SAFETY: non-null, and the caller promises a NUL-terminated string alive for the call.
    let s = unsafe { CStr::from_ptr(ptr) };
    s.to_str().map_err(|e| {
        fail(
            tw_status::TW_ERR_INVALID_UTF8,
            format!("{what} is not UTF-8: {e}"),
        )
    })
}

/// Fills `cfg`, a `tw_config` of `size` bytes (pass `sizeof cfg`), with the defaults, and
/// records `size` in it. Returns TW_ERR_NULL_ARGUMENT if `cfg` is NULL, TW_ERR_CONFIG if `size`
/// is not the size of any `tw_config` this library knows (a header newer than the library, or a
/// wrong argument). Any thread. The string fields point to static strings owned by the library.
///
/// # Safety
/// `cfg` is NULL or points to `size` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn tw_config_init(cfg: *mut tw_config, size: usize) -> tw_status {
    guard(tw_status::TW_ERR_INTERNAL, || {
        if cfg.is_null() {
            return fail(tw_status::TW_ERR_NULL_ARGUMENT, "cfg is NULL");
        }
        let fields = match config_fields(size) {
            Ok(n) => n,
            Err(m) => return fail(tw_status::TW_ERR_CONFIG, m),
        };
        let mut value = default_config();
        value.size = size;
        // SAFETY: `cfg` has `size >= fields` writable bytes (caller's promise); the source is a
        // whole tw_config of at least `fields` bytes; the copy is untyped, padding included.
        unsafe {
            std::ptr::copy_nonoverlapping(
                (&value as *const tw_config).cast::<u8>(),
                cfg.cast::<u8>(),
                fields,
            )
        };
        tw_status::TW_OK
    })
}

/// The C side's callback and pointer, carried into the broker's threads. The caller promised
/// (in `tw_config.on_connection`'s contract) that both may be used from any thread.
struct ConnectionHook {
    callback: extern "C" fn(tw_connection_event, usize, *mut c_void),
    user: *mut c_void,
}

impl ConnectionHook {
    fn call(&self, event: tw_connection_event, open: usize) {
        (self.callback)(event, open, self.user);
    }
}

// SAFETY: the pointer is only passed back to the C callback, whose contract requires it to be
// usable from the broker's threads.
unsafe impl Send for ConnectionHook {}
// SAFETY: as above; we never dereference `user`.
unsafe impl Sync for ConnectionHook {}

/// Starts a broker: binds its listeners and starts its workers. Returns the handle, which the
/// caller owns and must end with `tw_broker_stop` (or `tw_broker_shutdown` then
/// `tw_broker_free`), or NULL on error with the reason in `tw_last_error()`. Any thread.
///
/// # Safety
/// `cfg` is NULL or points to a `tw_config` filled by `tw_config_init` (of the size recorded in
/// it), whose string fields are NULL or valid NUL-terminated strings for the duration of the
/// call.
#[no_mangle]
pub unsafe extern "C" fn tw_broker_start(cfg: *const tw_config) -> *mut tw_broker {
    guard(std::ptr::null_mut(), || {
        if cfg.is_null() {
            set_error("cfg is NULL: fill one with tw_config_init");
            return std::ptr::null_mut();
        }
        // SAFETY: non-null, and every layout of tw_config begins with its size.
        let size = unsafe { cfg.cast::<usize>().read_unaligned() };
        let fields = match config_fields(size) {
            Ok(n) => n,
            Err(m) => {
                set_error(format!("invalid configuration: {m}"));
                return std::ptr::null_mut();
            }
        };
        // The program's fields over this library's defaults: fields its header did not have
        // keep their defaults.
        let mut c = default_config();
        // SAFETY: the caller's struct has `size >= fields` readable bytes; `c` is a whole
        // tw_config; the bytes are whole fields of the same repr(C) layout, valid values.
        unsafe {
            std::ptr::copy_nonoverlapping(
                cfg.cast::<u8>(),
                (&mut c as *mut tw_config).cast::<u8>(),
                fields,
            )
        };
        // SAFETY: the caller promises valid strings in the config.
        match unsafe { start(&c) } {
            Ok(b) => Box::into_raw(Box::new(b)),
            Err(_) => std::ptr::null_mut(),
        }
    })
}

/// The broker's configuration a `tw_config` asks for (checked later, by `Broker::start_with`).
///
/// # Safety
/// The string fields of `c` are NULL or valid NUL-terminated strings for the call.
unsafe fn config_of(c: &tw_config) -> Result<Config, tw_status> {
    let addr = |ptr: *const c_char, what: &str| -> Result<SocketAddr, tw_status> {
        // SAFETY: forwarded from the caller's promise.
        let text = unsafe { c_str(ptr, what) }?;
        crate::config::parse_addr(text)
            .map_err(|e| fail(tw_status::TW_ERR_CONFIG, format!("{what} {e}")))
    };
    let optional = |ptr: *const c_char, what: &str| -> Result<Option<String>, tw_status> {
        if ptr.is_null() {
            return Ok(None);
        }
        // SAFETY: forwarded from the caller's promise.
        unsafe { c_str(ptr, what) }.map(|s| Some(s.to_owned()))
    };
    let d = Config::default();
    Ok(Config {
        listen: addr(c.listen, "listen")?,
        local_listen: if c.local_listen.is_null() {
            None
        } else {
            Some(addr(c.local_listen, "local_listen")?)
        },
        workers: c.workers as usize,
        max_connections: c.max_connections as usize,
        max_payload: c.max_payload as usize,
        max_subscriptions: c.max_subscriptions as usize,
        publish_queue: c.publish_queue as usize,
        outbound_soft_limit: c.outbound_soft_limit as usize,
        outbound_hard_limit: c.outbound_hard_limit as usize,
        publish_token: optional(c.publish_token, "publish_token")?,
        redis: optional(c.redis, "redis")?,
        redis_prefix: optional(c.redis_prefix, "redis_prefix")?.unwrap_or(d.redis_prefix.clone()),
        jwt_key: optional(c.jwt_key, "jwt_key")?,
        jwt_audience: optional(c.jwt_audience, "jwt_audience")?,
        jwt_issuer: optional(c.jwt_issuer, "jwt_issuer")?,
        tls_cert: optional(c.tls_cert, "tls_cert")?,
        tls_key: optional(c.tls_key, "tls_key")?,
        jwt_leeway: Duration::from_secs(c.jwt_leeway_secs.into()),
        history: c.history as usize,
        history_memory: usize::try_from(c.history_memory).unwrap_or(usize::MAX),
        max_update_rate: c.max_update_rate,
        max_topics: c.max_topics as usize,
        max_json_depth: c.max_json_depth as usize,
        compression: c.compression,
        compress_min: c.compress_min as usize,
        ..d
    })
}

/// # Safety
/// As for [`tw_broker_start`].
unsafe fn start(c: &tw_config) -> Result<tw_broker, tw_status> {
    // SAFETY: forwarded from the caller's promise.
    let config = unsafe { config_of(c) }?;
    let mut hooks = Hooks::default();
    if let Some(callback) = c.on_connection {
        let hook = ConnectionHook {
            callback,
            user: c.on_connection_user,
        };
        hooks.on_connection = Some(Arc::new(move |event, open| {
            let event = match event {
                ConnectionEvent::Opened => tw_connection_event::TW_CONNECTION_OPENED,
                ConnectionEvent::Closed => tw_connection_event::TW_CONNECTION_CLOSED,
            };
            hook.call(event, open);
        }));
    }
    let broker = Broker::start_with(config, hooks).map_err(|e| match e {
        crate::Error::Config(m) => fail(
            tw_status::TW_ERR_CONFIG,
            format!("invalid configuration: {m}"),
        ),
        e @ crate::Error::Io { .. } => fail(tw_status::TW_ERR_IO, e.to_string()),
    })?;
    let text = |a: SocketAddr| CString::new(a.to_string()).unwrap_or_default();
    Ok(tw_broker {
        workers: broker.worker_threads(),
        publisher: broker.publisher(),
        public_addr: text(broker.public_addr()),
        local_addr: broker.local_addr().map(text),
        broker: Mutex::new(Some(broker)),
    })
}

fn publish_status(e: &PublishError) -> tw_status {
    match e {
        PublishError::InvalidTopic(_) => tw_status::TW_ERR_INVALID_TOPIC,
        PublishError::InvalidPayload(_) => tw_status::TW_ERR_INVALID_PAYLOAD,
        PublishError::PayloadTooLarge { .. } => tw_status::TW_ERR_PAYLOAD_TOO_LARGE,
        PublishError::QueueFull => tw_status::TW_ERR_QUEUE_FULL,
        PublishError::ShuttingDown => tw_status::TW_ERR_STOPPED,
        PublishError::Unavailable(_) => tw_status::TW_ERR_UNAVAILABLE,
        PublishError::TooManyTopics { .. } => tw_status::TW_ERR_TOO_MANY_TOPICS,
    }
}

/// Publishes `len` bytes of JSON at `payload` to `topic`. On success writes the topic's sequence
/// number to `seq_out` (if not NULL). The payload is copied once; the caller keeps ownership of
/// its buffers. Any thread, concurrently with other publishes; no lock is held across a syscall.
///
/// # Safety
/// `b` is NULL or a handle from `tw_broker_start` not yet freed; `topic` is NULL or a
/// NUL-terminated string; `payload` is NULL or points to `len` readable bytes; `seq_out` is NULL
/// or writable.
#[no_mangle]
pub unsafe extern "C" fn tw_publish(
    b: *const tw_broker,
    topic: *const c_char,
    payload: *const u8,
    len: usize,
    seq_out: *mut u64,
) -> tw_status {
    guard(tw_status::TW_ERR_INTERNAL, || {
        if b.is_null() {
            return fail(tw_status::TW_ERR_NULL_ARGUMENT, "broker handle is NULL");
        }
        // SAFETY: non-null handle from tw_broker_start, not freed (caller's promise).
        let broker = unsafe { &*b };
        // SAFETY: caller's promise on `topic`.
        let topic = match unsafe { c_str(topic, "topic") } {
            Ok(t) => t,
            Err(s) => return s,
        };
        if payload.is_null() {
            return fail(tw_status::TW_ERR_NULL_ARGUMENT, "payload is NULL");
        }
        // SAFETY: non-null, and the caller promises `len` readable bytes.
        let bytes = unsafe { std::slice::from_raw_parts(payload, len) };
        match broker.publisher.publish(topic, bytes) {
            Ok(seq) => {
                if !seq_out.is_null() {
                    // SAFETY: non-null and writable (caller's promise).
                    unsafe { seq_out.write(seq) };
                }
                tw_status::TW_OK
            }
            Err(e) => fail(publish_status(&e), e.to_string()),
        }
    })
}

/// Publishes `count` messages, all or none: every message is checked and queue room reserved
/// before the first is published. On success writes `count` to `published_out` (if not NULL);
/// on failure nothing was published and `tw_last_error()` names the message by index. Any thread.
///
/// # Safety
/// `b` as for `tw_publish`; `messages` points to `count` readable `tw_message`s whose fields
/// follow `tw_publish`'s rules; `published_out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn tw_publish_batch(
    b: *const tw_broker,
    messages: *const tw_message,
    count: usize,
    published_out: *mut usize,
) -> tw_status {
    guard(tw_status::TW_ERR_INTERNAL, || {
        if b.is_null() {
            return fail(tw_status::TW_ERR_NULL_ARGUMENT, "broker handle is NULL");
        }
        if messages.is_null() && count > 0 {
            return fail(tw_status::TW_ERR_NULL_ARGUMENT, "messages is NULL");
        }
        // SAFETY: non-null handle, not freed (caller's promise).
        let broker = unsafe { &*b };
        let list: &[tw_message] = if count == 0 {
            &[]
        } else {
            // SAFETY: non-null and `count` readable messages (caller's promise).
            unsafe { std::slice::from_raw_parts(messages, count) }
        };
        let mut items = Vec::with_capacity(count);
        for (i, m) in list.iter().enumerate() {
            // SAFETY: caller's promise on each message's topic.
            let topic = match unsafe { c_str(m.topic, &format!("messages[{i}].topic")) } {
                Ok(t) => t,
                Err(s) => return s,
            };
            if m.payload.is_null() {
                return fail(
                    tw_status::TW_ERR_NULL_ARGUMENT,
                    format!("messages[{i}].payload is NULL"),
                );
            }
            // SAFETY: non-null with `len` readable bytes (caller's promise).
            let payload = unsafe { std::slice::from_raw_parts(m.payload, m.len) };
            items.push((topic, payload));
        }
        match broker.publisher.publish_batch(&items) {
            Ok(n) => {
                if !published_out.is_null() {
                    // SAFETY: non-null and writable (caller's promise).
                    unsafe { published_out.write(n) };
                }
                tw_status::TW_OK
            }
            Err(e) => fail(
                publish_status(&e.error),
                format!("messages[{}]: {}; nothing was published", e.index, e.error),
            ),
        }
    })
}

/// Fills `out` with the broker's counters. Returns TW_ERR_STOPPED after `tw_broker_shutdown`
/// (read the final counters before it). Any thread.
///
/// # Safety
/// `b` as for `tw_publish`; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn tw_broker_stats(b: *const tw_broker, out: *mut tw_stats) -> tw_status {
    guard(tw_status::TW_ERR_INTERNAL, || {
        if b.is_null() || out.is_null() {
            return fail(
                tw_status::TW_ERR_NULL_ARGUMENT,
                "broker handle or out is NULL",
            );
        }
        // SAFETY: non-null handle, not freed (caller's promise).
        let broker = unsafe { &*b };
        let stats = match broker.broker.lock().as_ref() {
            Some(br) => br.stats(),
            None => return fail(tw_status::TW_ERR_STOPPED, "the broker was stopped"),
        };
        let value = tw_stats {
            connections: stats.connections as u64,
            published: stats.published,
            publish_rejected: stats.publish_rejected,
            deliveries: stats.deliveries,
            topics: stats.topics as u64,
            subscriptions: stats.subscriptions,
            conflated: stats.conflated,
            slow_consumers_closed: stats.slow_consumers_closed,
        };
        // SAFETY: non-null and writable (caller's promise).
        unsafe { out.write(value) };
        tw_status::TW_OK
    })
}

/// Copies an address ("host:port", NUL-terminated) into `buf` of `len` bytes.
///
/// # Safety
/// `buf` is NULL or has `len` writable bytes.
unsafe fn copy_out(text: &CStr, buf: *mut c_char, len: usize) -> tw_status {
    if buf.is_null() {
        return fail(tw_status::TW_ERR_NULL_ARGUMENT, "buf is NULL");
    }
    let bytes = text.to_bytes_with_nul();
    if bytes.len() > len {
        return fail(
            tw_status::TW_ERR_BUFFER_TOO_SMALL,
            format!("buffer of {len} bytes; {} needed", bytes.len()),
        );
    }
    // SAFETY: `buf` has `len >= bytes.len()` writable bytes; the regions cannot overlap.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr().cast(), buf, bytes.len()) };
    tw_status::TW_OK
}

/// Writes the public listener's bound address ("127.0.0.1:PORT") into `buf` (`len` bytes, 64 is
/// always enough). Any thread.
///
/// # Safety
/// `b` as for `tw_publish`; `buf` is NULL or has `len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn tw_broker_public_addr(
    b: *const tw_broker,
    buf: *mut c_char,
    len: usize,
) -> tw_status {
    guard(tw_status::TW_ERR_INTERNAL, || {
        if b.is_null() {
            return fail(tw_status::TW_ERR_NULL_ARGUMENT, "broker handle is NULL");
        }
        // SAFETY: non-null handle, not freed; `buf` per the caller's promise.
        unsafe { copy_out(&(*b).public_addr, buf, len) }
    })
}

/// Writes the local listener's bound address into `buf`, or returns TW_ERR_CONFIG if it is
/// disabled. Any thread.
///
/// # Safety
/// As for [`tw_broker_public_addr`].
#[no_mangle]
pub unsafe extern "C" fn tw_broker_local_addr(
    b: *const tw_broker,
    buf: *mut c_char,
    len: usize,
) -> tw_status {
    guard(tw_status::TW_ERR_INTERNAL, || {
        if b.is_null() {
            return fail(tw_status::TW_ERR_NULL_ARGUMENT, "broker handle is NULL");
        }
        // SAFETY: non-null handle, not freed (caller's promise).
        match unsafe { &(*b).local_addr } {
            // SAFETY: `buf` per the caller's promise.
            Some(addr) => unsafe { copy_out(addr, buf, len) },
            None => fail(tw_status::TW_ERR_CONFIG, "the local listener is disabled"),
        }
    })
}

/// TW_ERR_WRONG_THREAD when called on one of `b`'s worker threads.
fn refuse_on_worker(b: &tw_broker, what: &str) -> Result<(), tw_status> {
    if b.workers.contains(&std::thread::current().id()) {
        return Err(fail(
            tw_status::TW_ERR_WRONG_THREAD,
            format!(
                "{what} called on one of the broker's worker threads (from the on_connection \
                 callback): it would wait for this very thread; call it from another thread"
            ),
        ));
    }
    Ok(())
}

/// Stops gracefully: refuses new publications (they return TW_ERR_STOPPED), delivers those
/// already accepted, sends close 1001 to every client and joins the worker threads (within 5 s).
/// The handle stays valid until `tw_broker_free`. Calling it twice is harmless. Any thread but
/// the broker's own workers (the `on_connection` callback), where it returns
/// TW_ERR_WRONG_THREAD and changes nothing; it blocks until the workers have stopped.
///
/// # Safety
/// `b` as for `tw_publish`.
#[no_mangle]
pub unsafe extern "C" fn tw_broker_shutdown(b: *const tw_broker) -> tw_status {
    guard(tw_status::TW_ERR_INTERNAL, || {
        if b.is_null() {
            return fail(tw_status::TW_ERR_NULL_ARGUMENT, "broker handle is NULL");
        }
        // SAFETY: non-null handle, not freed (caller's promise).
        if let Err(s) = refuse_on_worker(unsafe { &*b }, "tw_broker_shutdown") {
            return s;
        }
        // SAFETY: non-null handle, not freed (caller's promise).
        let taken = unsafe { (*b).broker.lock().take() };
        if let Some(broker) = taken {
            broker.shutdown();
        }
        tw_status::TW_OK
    })
}

/// Frees the handle, shutting the broker down first if needed. NULL is ignored. No other call may
/// use the handle during or after this one. On one of the broker's own worker threads (the
/// `on_connection` callback) it frees nothing and sets `tw_last_error()` (TW_ERR_WRONG_THREAD's
/// case): use `tw_broker_stop` from another thread.
///
/// # Safety
/// `b` is NULL or a handle from `tw_broker_start` not yet freed.
#[no_mangle]
pub unsafe extern "C" fn tw_broker_free(b: *mut tw_broker) {
    guard((), || {
        if b.is_null() {
            return;
        }
        // SAFETY: non-null handle, not freed (caller's promise).
        if refuse_on_worker(unsafe { &*b }, "tw_broker_free").is_err() {
            return;
        }
        // SAFETY: a handle from Box::into_raw in tw_broker_start, freed only here, once.
        drop(unsafe { Box::from_raw(b) });
    })
}

/// `tw_broker_shutdown` then `tw_broker_free`: the usual way to end. NULL is ignored (TW_OK).
/// On one of the broker's own worker threads (the `on_connection` callback) it does nothing and
/// returns TW_ERR_WRONG_THREAD: the handle stays valid.
///
/// # Safety
/// As for [`tw_broker_free`].
#[no_mangle]
pub unsafe extern "C" fn tw_broker_stop(b: *mut tw_broker) -> tw_status {
    if b.is_null() {
        return tw_status::TW_OK;
    }
    let refused = guard(Err(tw_status::TW_ERR_INTERNAL), || {
        // SAFETY: non-null handle, not freed (caller's promise).
        let handle = unsafe { &*b };
        refuse_on_worker(handle, "tw_broker_stop")
    });
    if let Err(status) = refused {
        return status;
    }
    // SAFETY: forwarded from the caller's promise.
    let status = unsafe { tw_broker_shutdown(b) };
    // SAFETY: forwarded from the caller's promise.
    unsafe { tw_broker_free(b) };
    status
}

/// Reads again the files `tls_cert`, `tls_key` and `jwt_key` named: new TLS handshakes use the
/// new certificate (established connections continue), new tokens are checked with the new key.
/// On error (TW_ERR_CONFIG, `tw_last_error()` says which file and why) what failed to load stays
/// as it was. Returns TW_ERR_STOPPED after `tw_broker_shutdown`. Any thread.
///
/// # Safety
/// `b` as for `tw_publish`.
#[no_mangle]
pub unsafe extern "C" fn tw_broker_reload(b: *const tw_broker) -> tw_status {
    guard(tw_status::TW_ERR_INTERNAL, || {
        if b.is_null() {
            return fail(tw_status::TW_ERR_NULL_ARGUMENT, "broker handle is NULL");
        }
        // SAFETY: non-null handle, not freed (caller's promise).
        let guard = unsafe { (*b).broker.lock() };
        match guard.as_ref().map(Broker::reload) {
            Some(Ok(())) => tw_status::TW_OK,
            Some(Err(e)) => fail(tw_status::TW_ERR_CONFIG, e.to_string()),
            None => fail(tw_status::TW_ERR_STOPPED, "the broker was stopped"),
        }
    })
}

/// The message of the last error on this thread, or "" if none. The string belongs to the
/// library and is valid until the next `tw_*` call on the same thread. Never NULL.
#[no_mangle]
pub extern "C" fn tw_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// The name of a status code ("TW_ERR_QUEUE_FULL"), static; "TW_UNKNOWN_STATUS" for a value
/// that is no `tw_status`. It takes an `int` so that any value the C side holds is safe to pass.
/// Never NULL. Any thread.
#[no_mangle]
pub extern "C" fn tw_status_str(status: c_int) -> *const c_char {
    use tw_status::*;
    const ALL: [tw_status; 15] = [
        TW_OK,
        TW_ERR_NULL_ARGUMENT,
        TW_ERR_INVALID_UTF8,
        TW_ERR_INVALID_TOPIC,
        TW_ERR_INVALID_PAYLOAD,
        TW_ERR_PAYLOAD_TOO_LARGE,
        TW_ERR_QUEUE_FULL,
        TW_ERR_STOPPED,
        TW_ERR_CONFIG,
        TW_ERR_IO,
        TW_ERR_INTERNAL,
        TW_ERR_BUFFER_TOO_SMALL,
        TW_ERR_UNAVAILABLE,
        TW_ERR_TOO_MANY_TOPICS,
        TW_ERR_WRONG_THREAD,
    ];
    let name: &'static CStr = match ALL.into_iter().find(|s| *s as c_int == status) {
        Some(TW_OK) => c"TW_OK",
        Some(TW_ERR_NULL_ARGUMENT) => c"TW_ERR_NULL_ARGUMENT",
        Some(TW_ERR_INVALID_UTF8) => c"TW_ERR_INVALID_UTF8",
        Some(TW_ERR_INVALID_TOPIC) => c"TW_ERR_INVALID_TOPIC",
        Some(TW_ERR_INVALID_PAYLOAD) => c"TW_ERR_INVALID_PAYLOAD",
        Some(TW_ERR_PAYLOAD_TOO_LARGE) => c"TW_ERR_PAYLOAD_TOO_LARGE",
        Some(TW_ERR_QUEUE_FULL) => c"TW_ERR_QUEUE_FULL",
        Some(TW_ERR_STOPPED) => c"TW_ERR_STOPPED",
        Some(TW_ERR_CONFIG) => c"TW_ERR_CONFIG",
        Some(TW_ERR_IO) => c"TW_ERR_IO",
        Some(TW_ERR_INTERNAL) => c"TW_ERR_INTERNAL",
        Some(TW_ERR_BUFFER_TOO_SMALL) => c"TW_ERR_BUFFER_TOO_SMALL",
        Some(TW_ERR_UNAVAILABLE) => c"TW_ERR_UNAVAILABLE",
        Some(TW_ERR_TOO_MANY_TOPICS) => c"TW_ERR_TOO_MANY_TOPICS",
        Some(TW_ERR_WRONG_THREAD) => c"TW_ERR_WRONG_THREAD",
        None => c"TW_UNKNOWN_STATUS",
    };
    name.as_ptr()
}

/// The library version ("0.1.0"), static. Never NULL.
#[no_mangle]
pub extern "C" fn tw_version() -> *const c_char {
    const VERSION: &CStr =
        match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
            Ok(v) => v,
            Err(_) => c"unknown",
        };
    VERSION.as_ptr()
}

/// The C logger and its pointer.
struct LogSink {
    callback: extern "C" fn(c_int, *const c_char, *mut c_void),
    user: *mut c_void,
}

// SAFETY: `tw_set_log_callback`'s contract requires the callback and pointer to be usable from
// any thread; we never dereference `user`.
unsafe impl Send for LogSink {}
// SAFETY: as above.
unsafe impl Sync for LogSink {}

static LOG_SINK: RwLock<Option<LogSink>> = RwLock::new(None);

struct CLogger;

impl log::Log for CLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        // Held across the call so that `tw_set_log_callback` can promise the old callback is no
        // longer running when it returns; recursive, so a callback that logs cannot deadlock.
        if let Some(sink) = LOG_SINK.read_recursive().as_ref() {
            let text = format!("{}", record.args()).replace('\0', " ");
            let message = CString::new(text).unwrap_or_default();
            let level = match record.level() {
                log::Level::Error => TW_LOG_ERROR,
                log::Level::Warn => TW_LOG_WARN,
                log::Level::Info => TW_LOG_INFO,
                log::Level::Debug => TW_LOG_DEBUG,
                log::Level::Trace => TW_LOG_TRACE,
            };
            (sink.callback)(level, message.as_ptr(), sink.user);
        }
    }

    fn flush(&self) {}
}

static C_LOGGER: CLogger = CLogger;

/// Sends the library's log lines up to `max_level` (`TW_LOG_ERROR` .. `TW_LOG_TRACE`) to
/// `callback`, or stops logging when `callback` is NULL. Process-wide: one callback for every
/// broker. The callback runs on whichever thread logs (a broker's worker threads, or the thread
/// calling a `tw_*` function, e.g. `tw_broker_start` logs the bound addresses at TW_LOG_INFO),
/// possibly on several at once, so it and `user` must be thread-safe; it must not call
/// `tw_set_log_callback` (that would deadlock). When this function returns, no call to the
/// previous callback is under way, so the previous `user` may be freed. Returns TW_ERR_CONFIG if
/// the process already installed another Rust logger. Any thread.
#[no_mangle]
pub extern "C" fn tw_set_log_callback(
    callback: tw_log_callback,
    user: *mut c_void,
    max_level: c_int,
) -> tw_status {
    guard(tw_status::TW_ERR_INTERNAL, || {
        let level = match max_level {
            i32::MIN..=0 => log::LevelFilter::Off,
            TW_LOG_ERROR => log::LevelFilter::Error,
            TW_LOG_WARN => log::LevelFilter::Warn,
            TW_LOG_INFO => log::LevelFilter::Info,
            TW_LOG_DEBUG => log::LevelFilter::Debug,
            _ => log::LevelFilter::Trace,
        };
        *LOG_SINK.write() = callback.map(|callback| LogSink { callback, user });
        // Installing twice is fine (ours); another logger is not ours to replace.
        let _ = log::set_logger(&C_LOGGER);
        if !std::ptr::addr_eq(log::logger(), &C_LOGGER) {
            return fail(
                tw_status::TW_ERR_CONFIG,
                "another logger is already installed in this process",
            );
        }
        log::set_max_level(if callback.is_some() {
            level
        } else {
            log::LevelFilter::Off
        });
        tw_status::TW_OK
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(ptr: *const c_char) -> String {
        // SAFETY: every pointer passed here is a NUL-terminated string from this module.
        unsafe { CStr::from_ptr(ptr) }
            .to_str()
            .expect("UTF-8")
            .to_owned()
    }

    #[test]
    fn the_c_defaults_are_the_brokers_and_every_field_reaches_it() {
        // SAFETY: the defaults hold static strings or NULL.
        let config = unsafe { config_of(&default_config()) }.expect("defaults");
        assert_eq!(config, Config::default());
        let c = tw_config {
            jwt_leeway_secs: 2,
            history: 7,
            history_memory: 1 << 20,
            max_update_rate: 2.5,
            max_topics: 9,
            max_json_depth: 3,
            compression: false,
            compress_min: 0,
            redis_prefix: c"feed".as_ptr(),
            ..default_config()
        };
        // SAFETY: as above.
        let config = unsafe { config_of(&c) }.expect("config");
        assert_eq!(
            config,
            Config {
                jwt_leeway: Duration::from_secs(2),
                history: 7,
                history_memory: 1 << 20,
                max_update_rate: 2.5,
                max_topics: 9,
                max_json_depth: 3,
                compression: false,
                compress_min: 0,
                redis_prefix: "feed".to_owned(),
                ..Config::default()
            }
        );
    }

    #[test]
    fn a_panic_becomes_internal_with_a_message() {
        let status = guard(tw_status::TW_ERR_INTERNAL, || -> tw_status {
            panic!("a bug");
        });
        assert_eq!(status, tw_status::TW_ERR_INTERNAL);
        assert!(text(tw_last_error()).contains("panic was caught"));
    }

    #[test]
    fn every_status_has_its_name_and_others_are_unknown() {
        use tw_status::*;
        for (status, name) in [
            (TW_OK, "TW_OK"),
            (TW_ERR_NULL_ARGUMENT, "TW_ERR_NULL_ARGUMENT"),
            (TW_ERR_QUEUE_FULL, "TW_ERR_QUEUE_FULL"),
            (TW_ERR_BUFFER_TOO_SMALL, "TW_ERR_BUFFER_TOO_SMALL"),
            (TW_ERR_UNAVAILABLE, "TW_ERR_UNAVAILABLE"),
            (TW_ERR_TOO_MANY_TOPICS, "TW_ERR_TOO_MANY_TOPICS"),
            (TW_ERR_WRONG_THREAD, "TW_ERR_WRONG_THREAD"),
        ] {
            assert_eq!(text(tw_status_str(status as c_int)), name);
        }
        for code in -14..=0 {
            assert_ne!(text(tw_status_str(code)), "TW_UNKNOWN_STATUS", "{code}");
        }
        for code in [1, -15, c_int::MIN, c_int::MAX] {
            assert_eq!(text(tw_status_str(code)), "TW_UNKNOWN_STATUS");
        }
    }

    #[test]
    fn an_older_config_is_filled_and_read_only_as_far_as_it_goes() {
        let (old_size, old_fields) = config_layouts()[0];
        assert_eq!(old_size % std::mem::align_of::<tw_config>(), 0);
        assert!(old_fields <= old_size && old_size < std::mem::size_of::<tw_config>());
        // An old program's struct, with bytes of ours after it that must stay untouched.
        let mut buf = vec![0xA5u8; std::mem::size_of::<tw_config>() + 8];
        let cfg = buf.as_mut_ptr().cast::<tw_config>();
        // SAFETY: `buf` has more than `old_size` writable bytes.
        assert_eq!(unsafe { tw_config_init(cfg, old_size) }, tw_status::TW_OK);
        assert!(
            buf[old_fields..].iter().all(|&b| b == 0xA5),
            "wrote past the old fields"
        );
        // SAFETY: the first field is the size, just written.
        assert_eq!(unsafe { cfg.cast::<usize>().read_unaligned() }, old_size);
        for bad in [0, 3, old_size + 8, std::mem::size_of::<tw_config>() + 8] {
            // SAFETY: `buf` has room for any of these sizes but the last, which is refused
            // before anything is written.
            let status = unsafe { tw_config_init(cfg, bad) };
            assert_eq!(status, tw_status::TW_ERR_CONFIG, "{bad}");
            assert!(text(tw_last_error()).contains("not one this library knows"));
        }
    }

    #[test]
    fn the_last_error_is_per_thread() {
        // SAFETY: NULL is allowed.
        let status = unsafe { tw_config_init(std::ptr::null_mut(), 0) };
        assert_eq!(status, tw_status::TW_ERR_NULL_ARGUMENT);
        assert_eq!(text(tw_last_error()), "cfg is NULL");
        let other = std::thread::spawn(|| text(tw_last_error()))
            .join()
            .expect("thread");
        assert_eq!(other, "");
    }
}
