//! Cancellation: a flag shared between the thread running a turn and whoever wants it stopped.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A cloneable, `Send + Sync` stop request. The engine asks it between ViT blocks (so between tiles too),
/// between decoder layers of every prefill chunk and between generated tokens; a turn that sees it set
/// stops there and leaves its session as it was before the turn. [`CancelToken::reset`] re-arms it (a
/// session does so at the start of every turn, so a cancel aimed at one turn does not kill the next).
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    pub fn new() -> CancelToken {
        CancelToken::default()
    }

    /// Ask the running (or next) turn to stop. Callable from any thread, any number of times.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// Clear the request.
    pub fn reset(&self) {
        self.0.store(false, Ordering::SeqCst);
    }
}
