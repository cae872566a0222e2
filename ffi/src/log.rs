//! The log callback: the runtime's `tracing` events, formatted, handed to the app (Android's logcat, os_log).

use std::ffi::{c_char, c_void};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{OnceLock, RwLock};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

use crate::guard::{c_string, guard_void, Failure};
use crate::types::*;

/// Called with each log message at or above the level asked for: from any thread (the engine's workers
/// too), so it must be thread-safe; `message` is valid during the call. Do not call back into a session
/// that is running.
pub type sail_log_callback =
    Option<unsafe extern "C" fn(level: sail_log_level, message: *const c_char, user_data: *mut c_void)>;

#[derive(Clone, Copy)]
struct Sink {
    callback: unsafe extern "C" fn(sail_log_level, *const c_char, *mut c_void),
    /// The caller's pointer, passed back untouched (kept as an integer so the sink is `Send`).
    user_data: usize,
}

static SINK: RwLock<Option<Sink>> = RwLock::new(None);
/// The most verbose level delivered (0: none), read on every event without a lock.
static MAX_LEVEL: AtomicI32 = AtomicI32::new(0);
/// Whether our subscriber became the process's (it cannot if the host program installed its own).
static INSTALLED: OnceLock<bool> = OnceLock::new();

fn level_of(level: &Level) -> sail_log_level {
    match *level {
        Level::ERROR => sail_log_level::SAIL_LOG_ERROR,
        Level::WARN => sail_log_level::SAIL_LOG_WARN,
        Level::INFO => sail_log_level::SAIL_LOG_INFO,
        Level::DEBUG => sail_log_level::SAIL_LOG_DEBUG,
        _ => sail_log_level::SAIL_LOG_TRACE,
    }
}

struct CallbackLayer;

/// `message` first, then `name=value` for the other fields, as one line.
#[derive(Default)]
struct Line(String);

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let fields = std::mem::take(&mut self.0);
            let _ = write!(self.0, "{value:?}");
            self.0.push_str(&fields);
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.insert_str(0, value);
        } else {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }
}

impl<S: Subscriber> Layer<S> for CallbackLayer {
    fn enabled(&self, metadata: &Metadata<'_>, _: Context<'_, S>) -> bool {
        level_of(metadata.level()) as i32 <= MAX_LEVEL.load(Ordering::Relaxed)
    }

    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let level = level_of(event.metadata().level());
        if level as i32 > MAX_LEVEL.load(Ordering::Relaxed) {
            return;
        }
        let Some(sink) = *SINK.read().unwrap_or_else(|e| e.into_inner()) else { return };
        let mut line = Line::default();
        event.record(&mut line);
        let message = c_string(&format!("{}: {}", event.metadata().target(), line.0));
        // SAFETY: the caller's function pointer and user_data, with a string that lives through the call.
        unsafe { (sink.callback)(level, message.as_ptr(), sink.user_data as *mut c_void) };
    }
}

/// Send the library's log messages up to `max_level` (`SAIL_LOG_ERROR` … `SAIL_LOG_TRACE`) to `callback`;
/// NULL stops them. Process-wide; call it from any thread, but not from inside the callback. Calls already
/// in flight on other threads may still reach the old callback with the old `user_data` after this
/// returns: keep `user_data` alive for the process, or until those threads are done. If the program already
/// installed its own `tracing` subscriber (a Rust host), the messages go there instead and this reports
/// `SAIL_ERR_ARG` through `sail_last_error`.
#[no_mangle]
pub extern "C" fn sail_set_log_callback(
    callback: sail_log_callback,
    max_level: sail_log_level_raw,
    user_data: *mut c_void,
) {
    guard_void("sail_set_log_callback", || {
        if callback.is_some() && !(1..=5).contains(&max_level) {
            return Err(Failure::arg(format!("max_level {max_level} is not a sail_log_level (1 to 5)")));
        }
        let installed = *INSTALLED.get_or_init(|| {
            tracing::subscriber::set_global_default(tracing_subscriber::registry().with(CallbackLayer)).is_ok()
        });
        *SINK.write().unwrap_or_else(|e| e.into_inner()) =
            callback.map(|callback| Sink { callback, user_data: user_data as usize });
        MAX_LEVEL.store(if callback.is_some() { max_level } else { 0 }, Ordering::Relaxed);
        // Callsites cache whether they are enabled; the level changed.
        tracing::callsite::rebuild_interest_cache();
        if !installed {
            return Err(Failure::arg("the program has its own tracing subscriber; log messages go there"));
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;
    use std::sync::Mutex;

    static SEEN: Mutex<Vec<(i32, String, usize)>> = Mutex::new(Vec::new());

    unsafe extern "C" fn record(level: sail_log_level, message: *const c_char, user_data: *mut c_void) {
        // SAFETY: the library passes a valid string.
        let message = unsafe { CStr::from_ptr(message) }.to_string_lossy().into_owned();
        SEEN.lock().unwrap().push((level as i32, message, user_data as usize));
    }

    #[test]
    fn events_reach_the_callback_up_to_the_level() {
        sail_set_log_callback(Some(record), sail_log_level::SAIL_LOG_INFO as i32, 7 as *mut c_void);
        tracing::warn!(frame = 3, "camera stalled");
        tracing::debug!("too verbose");
        sail_set_log_callback(None, 0, std::ptr::null_mut());
        tracing::error!("after the callback was removed");
        let seen = SEEN.lock().unwrap().clone();
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert_eq!(seen[0].0, sail_log_level::SAIL_LOG_WARN as i32);
        assert!(seen[0].1.ends_with("camera stalled frame=3"), "{}", seen[0].1);
        assert_eq!(seen[0].2, 7);
    }
}
