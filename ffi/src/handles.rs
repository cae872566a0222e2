//! The registry of live handles. A handle C holds is an id, not an address: ids are drawn from one
//! process-wide sequence that starts at a random base and never repeats, so a freed handle stays dead even
//! when a new object takes its memory, an engine handle is never a live session, and a made-up value is
//! almost surely no handle at all. Each call takes its own reference (`Arc`) to the object under the
//! registry's lock, so freeing a handle while another thread is inside a call on it (a cancel racing a
//! free) only drops the object once that call is done.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use crate::guard::Failure;

/// Handle ids step by 16 (pointer-aligned values, as a C programmer expects of a pointer).
const STEP: usize = 16;

fn next_id() -> usize {
    static BASE: OnceLock<usize> = OnceLock::new();
    static COUNT: AtomicUsize = AtomicUsize::new(1);
    let base = *BASE.get_or_init(|| {
        // A random start: a value that was never handed out is not a handle in any run.
        let random = std::collections::hash_map::RandomState::new().build_hasher().finish() as usize;
        (random >> 8) & !(STEP - 1)
    });
    base.wrapping_add(COUNT.fetch_add(1, Ordering::Relaxed).wrapping_mul(STEP)).max(STEP)
}

pub(crate) struct Registry<T> {
    kind: &'static str,
    live: Mutex<BTreeMap<usize, Arc<T>>>,
}

impl<T> Registry<T> {
    pub const fn new(kind: &'static str) -> Registry<T> {
        Registry { kind, live: Mutex::new(BTreeMap::new()) }
    }

    fn live(&self) -> std::sync::MutexGuard<'_, BTreeMap<usize, Arc<T>>> {
        // The map is changed in single inserts and removes, so a panic elsewhere cannot leave it torn.
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn not_live(&self, handle: *const T) -> Failure {
        Failure::arg(format!("{handle:p} is not a live {} (already freed, or not one)", self.kind))
    }

    /// Hand `value` to C as a new handle.
    pub fn register(&self, value: T) -> *mut T {
        let id = next_id();
        self.live().insert(id, Arc::new(value));
        id as *mut T
    }

    /// The object behind a live handle.
    pub fn get(&self, handle: *const T) -> Result<Arc<T>, Failure> {
        if handle.is_null() {
            return Err(Failure::arg(format!("the {} is NULL", self.kind)));
        }
        self.live().get(&(handle as usize)).cloned().ok_or_else(|| self.not_live(handle))
    }

    /// Retire a handle (NULL: `Ok(None)`); the object goes when the calls still using it end.
    pub fn take(&self, handle: *mut T) -> Result<Option<Arc<T>>, Failure> {
        if handle.is_null() {
            return Ok(None);
        }
        self.live().remove(&(handle as usize)).map(Some).ok_or_else(|| self.not_live(handle))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_live_handles_are_objects() {
        static R: Registry<u64> = Registry::new("thing");
        let p = R.register(41u64);
        assert_eq!(*R.get(p).unwrap(), 41);
        assert!(R.get(0x1000 as *const u64).unwrap_err().message.contains("is not a live thing"));
        assert!(R.get(std::ptr::null::<u64>()).unwrap_err().message.contains("NULL"));
        let held = R.get(p).unwrap();
        assert_eq!(*R.take(p).unwrap().unwrap(), 41);
        // A call that took the object before the free still has it.
        assert_eq!(*held, 41);
        // Double free and use after free are argument errors, even when a new object comes next.
        let q = R.register(42u64);
        assert_ne!(p, q, "ids never repeat");
        assert!(R.take(p).is_err());
        assert!(R.get(p).is_err());
        assert!(R.take(std::ptr::null_mut::<u64>()).unwrap().is_none());
        assert_eq!(*R.take(q).unwrap().unwrap(), 42);
    }
}
