//! `tw_config`: the settings a C program fills, their defaults, the layouts of earlier headers
//! (the struct grows at its end and carries its size), and their translation into a [`Config`].

use std::ffi::{c_char, c_void};
use std::net::SocketAddr;
use std::time::Duration;

use super::broker::tw_connection_callback;
use super::{c_str, fail, guard, tw_status};
use crate::Config;

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
pub(super) fn config_layouts() -> [(usize, usize); 3] {
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
pub(super) fn config_fields(size: usize) -> Result<usize, String> {
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
pub(super) fn default_config() -> tw_config {
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

/// The broker's configuration a `tw_config` asks for (checked later, by `Broker::start_with`).
///
/// # Safety
/// The string fields of `c` are NULL or valid NUL-terminated strings for the call.
pub(super) unsafe fn config_of(c: &tw_config) -> Result<Config, tw_status> {
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
