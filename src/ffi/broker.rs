//! A running broker seen from C: `tw_broker_start` and the handle, publishing (one message or a
//! batch), counters, bound addresses, the connection callback, and the ways to stop.

use std::ffi::{c_char, c_void, CStr, CString};
use std::net::SocketAddr;
use std::sync::Arc;

use parking_lot::Mutex;

use super::config::{config_fields, config_of, default_config, tw_config};
use super::{c_str, fail, guard, set_error, tw_status};
use crate::{Broker, ConnectionEvent, Hooks, PublishError, Publisher};

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
