//! The registry of live handles. A pointer from C is only dereferenced once it is found here, so a NULL, a
//! freed handle (double free, use after free) or a made-up address is an argument error, not a crash.
//! Freeing a handle while another thread is inside a call on it remains the caller's error (as in C).

use std::collections::BTreeSet;
use std::sync::Mutex;

use crate::guard::Failure;

pub(crate) struct Registry {
    kind: &'static str,
    live: Mutex<BTreeSet<usize>>,
}

impl Registry {
    pub const fn new(kind: &'static str) -> Registry {
        Registry { kind, live: Mutex::new(BTreeSet::new()) }
    }

    fn live(&self) -> std::sync::MutexGuard<'_, BTreeSet<usize>> {
        // The set is updated in single inserts and removes, so a panic elsewhere cannot leave it torn.
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hand `value` to C: boxed, registered, as a raw pointer.
    pub fn register<T>(&self, value: T) -> *mut T {
        let ptr = Box::into_raw(Box::new(value));
        self.live().insert(ptr as usize);
        ptr
    }

    /// The value behind a live handle.
    pub fn get<'a, T>(&self, ptr: *const T) -> Result<&'a T, Failure> {
        if ptr.is_null() {
            return Err(Failure::arg(format!("the {} is NULL", self.kind)));
        }
        if !self.live().contains(&(ptr as usize)) {
            return Err(Failure::arg(format!("{ptr:p} is not a live {} (already freed, or not one)", self.kind)));
        }
        // SAFETY: registered pointers come from Box::into_raw in `register` and stay valid until `take`
        // unregisters them; the caller does not free a handle while using it (the header's contract).
        Ok(unsafe { &*ptr })
    }

    /// Unregister a handle and take its value back (NULL: `Ok(None)`).
    pub fn take<T>(&self, ptr: *mut T) -> Result<Option<Box<T>>, Failure> {
        if ptr.is_null() {
            return Ok(None);
        }
        if !self.live().remove(&(ptr as usize)) {
            return Err(Failure::arg(format!("{ptr:p} is not a live {} (already freed, or not one)", self.kind)));
        }
        // SAFETY: the pointer was registered by `register` (from Box::into_raw) and is now unregistered, so
        // this is the only owner.
        Ok(Some(unsafe { Box::from_raw(ptr) }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_registered_pointers_are_read() {
        static R: Registry = Registry::new("thing");
        let p = R.register(41u64);
        assert_eq!(*R.get(p).unwrap(), 41);
        let made_up = 0x1000 as *const u64;
        assert!(R.get(made_up).unwrap_err().message.contains("is not a live thing"));
        assert!(R.get(std::ptr::null::<u64>()).unwrap_err().message.contains("NULL"));
        assert_eq!(*R.take(p).unwrap().unwrap(), 41);
        // Double free and use after free are argument errors.
        assert!(R.take(p).is_err());
        assert!(R.get(p).is_err());
        assert!(R.take(std::ptr::null_mut::<u64>()).unwrap().is_none());
    }
}
