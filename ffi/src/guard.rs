//! Failures across the boundary: the thread's last error message, the panic guard every exported function
//! runs in, and the checked reading of C strings.

use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};
use std::fmt::Display;
use std::panic::{catch_unwind, AssertUnwindSafe};

use runtime::engine::EngineError;

use crate::types::*;

thread_local! {
    /// The message of this thread's last failure (empty before any).
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// A failed call: the status to return and the message `sail_last_error` will give.
#[derive(Debug)]
pub(crate) struct Failure {
    pub status: sail_status,
    pub message: String,
}

impl Failure {
    pub fn arg(message: impl Display) -> Failure {
        Failure { status: SAIL_ERR_ARG, message: message.to_string() }
    }
}

impl From<EngineError> for Failure {
    fn from(e: EngineError) -> Failure {
        Failure { status: sail_status::from_kind(e.kind()), message: e.to_string() }
    }
}

/// C strings cannot hold NUL; a message with one keeps what comes before it.
pub(crate) fn c_string(text: &str) -> CString {
    let end = text.find('\0').unwrap_or(text.len());
    CString::new(&text[..end]).unwrap_or_default()
}

pub(crate) fn set_last_error(message: &str) {
    // During a thread's teardown (a call from a thread-local destructor) the slot may be gone: the message
    // is then dropped rather than panicking.
    let _ = LAST_ERROR.try_with(|e| *e.borrow_mut() = c_string(message));
}

/// Run an exported function's body: its failure or panic becomes a status and this thread's last error.
pub(crate) fn guard(function: &str, body: impl FnOnce() -> Result<sail_status, Failure>) -> sail_status {
    let (status, message, level) = match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(status)) => return status,
        Ok(Err(failure)) => (failure.status, failure.message, tracing::Level::DEBUG),
        Err(panic) => (
            SAIL_ERR_INTERNAL,
            format!("{function}: internal error: {}", panic_message(&*panic)),
            tracing::Level::ERROR,
        ),
    };
    // Reporting runs under its own guard too: nothing may unwind out of an extern "C" function.
    let _ = catch_unwind(AssertUnwindSafe(|| {
        if level == tracing::Level::ERROR {
            tracing::error!("{message}");
        } else {
            tracing::debug!("{function}: {message}");
        }
        set_last_error(&message);
    }));
    status
}

/// [`guard`] for functions that return nothing (free, cancel): a failure is only recorded.
pub(crate) fn guard_void(function: &str, body: impl FnOnce() -> Result<(), Failure>) {
    guard(function, || body().map(|()| SAIL_OK));
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s
    } else {
        "a panic without a message"
    }
}

/// A required C string argument, as UTF-8.
pub(crate) fn str_arg<'a>(p: *const c_char, what: &str) -> Result<&'a str, Failure> {
    opt_str_arg(p, what)?.ok_or_else(|| Failure::arg(format!("{what} is NULL")))
}

/// An optional C string argument (`None` for NULL).
pub(crate) fn opt_str_arg<'a>(p: *const c_char, what: &str) -> Result<Option<&'a str>, Failure> {
    if p.is_null() {
        return Ok(None);
    }
    // SAFETY: the caller passes a NUL-terminated string (the header's contract) that outlives the call.
    let bytes = unsafe { CStr::from_ptr(p) };
    bytes.to_str().map(Some).map_err(|e| Failure::arg(format!("{what} is not UTF-8 ({e})")))
}

/// This thread's last failure: what went wrong in the last call that returned a negative status (or
/// reported one through a void function). Empty before any. The string stays valid until the next failing
/// call on this thread.
#[no_mangle]
pub extern "C" fn sail_last_error() -> *const c_char {
    LAST_ERROR.try_with(|e| e.borrow().as_ptr()).unwrap_or(c"".as_ptr())
}

/// The status's name (`"SAIL_ERR_IO"`), or `"unknown status"`. A static string.
#[no_mangle]
pub extern "C" fn sail_status_name(status: i32) -> *const c_char {
    let name: &'static CStr = match status {
        0 => c"SAIL_OK",
        1 => c"SAIL_DONE",
        2 => c"SAIL_CANCELLED",
        -1 => c"SAIL_ERR_ARG",
        -2 => c"SAIL_ERR_IO",
        -3 => c"SAIL_ERR_FORMAT",
        -4 => c"SAIL_ERR_CONTEXT_FULL",
        -100 => c"SAIL_ERR_INTERNAL",
        _ => c"unknown status",
    };
    name.as_ptr()
}

/// The library's version (`"0.1.0"`). A static string.
#[no_mangle]
pub extern "C" fn sail_version() -> *const c_char {
    const VERSION: &CStr = match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
        Ok(v) => v,
        Err(_) => c"unknown",
    };
    VERSION.as_ptr()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn last() -> String {
        // SAFETY: sail_last_error returns a valid NUL-terminated string.
        unsafe { CStr::from_ptr(sail_last_error()) }.to_str().unwrap().to_string()
    }

    #[test]
    fn a_panic_becomes_internal_with_its_message() {
        let status = guard("sail_test", || panic!("boom {}", 7));
        assert_eq!(status, SAIL_ERR_INTERNAL);
        assert_eq!(last(), "sail_test: internal error: boom 7");
    }

    #[test]
    fn failures_set_the_thread_error_and_nul_cuts_it() {
        let status = guard("f", || Err(Failure::arg("bad\0hidden")));
        assert_eq!(status, SAIL_ERR_ARG);
        assert_eq!(last(), "bad");
        // Another thread's errors are its own.
        std::thread::spawn(|| assert_eq!(last(), "")).join().unwrap();
    }

    #[test]
    fn status_names_and_version() {
        // SAFETY: both return static NUL-terminated strings.
        let name = |s: sail_status| unsafe { CStr::from_ptr(sail_status_name(s as i32)) }.to_str().unwrap();
        assert_eq!(name(SAIL_ERR_CONTEXT_FULL), "SAIL_ERR_CONTEXT_FULL");
        assert_eq!(name(SAIL_DONE), "SAIL_DONE");
        assert_eq!(unsafe { CStr::from_ptr(sail_status_name(42)) }.to_str().unwrap(), "unknown status");
        assert_eq!(unsafe { CStr::from_ptr(sail_version()) }.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
    }
}
