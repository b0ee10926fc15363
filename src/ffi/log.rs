//! The library's log lines handed to a C callback (`tw_set_log_callback`).

use std::ffi::{c_char, c_int, c_void, CString};

use parking_lot::RwLock;

use super::{fail, guard, tw_status};

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
