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
//! keeps working with a newer library. To add fields (all in `config.rs`): append them to
//! `tw_config`, give them defaults in `default_config`, read them in `config_of`, and add the
//! layout before them to `config_layouts`.
//!
//! The files: this one (conventions, status codes, the per-thread error, the panic guard),
//! `config.rs` (`tw_config`), `broker.rs` (the handle: start, publish, stats, stop), `log.rs`
//! (the log callback).
#![allow(non_camel_case_types)]
// The C boundary is the one place raw pointers come in: the crate denies unsafe code elsewhere.
#![allow(unsafe_code)]
#![deny(clippy::undocumented_unsafe_blocks)]

mod broker;
mod config;
mod log;

pub use broker::*;
pub use config::*;
pub use log::*;

use std::cell::RefCell;
use std::ffi::{c_char, c_int, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

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

#[cfg(test)]
mod tests {
    use super::config::{config_of, default_config};
    use super::*;
    use crate::Config;
    use std::time::Duration;

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
