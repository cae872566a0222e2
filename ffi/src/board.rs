//! `sail_engine_params.board`: defaults from a board profile (`boards/*.toml`), under the caller's fields,
//! and the cores the engine's workers are pinned to.

use runtime::boards::{BoardError, Explicit, Profile};
use runtime::engine::EngineOptions;
use runtime::host::HostInfo;

use crate::guard::Failure;
use crate::types::*;

/// Apply the profile `board` names (`"auto"`: the one matching this machine) to `options`, leaving what
/// the caller set. Returns the cores to pin the engine's workers to (empty: no pinning).
pub(crate) fn apply(board: &str, options: &mut EngineOptions, explicit: Explicit) -> Result<Vec<usize>, Failure> {
    let profile = if board == "auto" {
        match Profile::auto(&HostInfo::detect()) {
            Some(profile) => profile,
            None => {
                tracing::info!("board auto: no profile matches this machine; using the built-in defaults");
                return Ok(Vec::new());
            }
        }
    } else {
        Profile::by_name(board).map_err(|e| {
            let status = match &e {
                // Read as text: bytes that are not UTF-8 are a format error, not an I/O one.
                BoardError::Read { error, .. } if error.kind() == std::io::ErrorKind::InvalidData => SAIL_ERR_FORMAT,
                BoardError::Read { .. } => SAIL_ERR_IO,
                BoardError::Unknown { .. } => SAIL_ERR_ARG,
                _ => SAIL_ERR_FORMAT,
            };
            Failure { status, message: format!("sail_engine_params.board: {e}") }
        })?
    };
    let set = profile.apply(options, explicit);
    tracing::info!("board {}: {}", profile.name, set.join(", "));
    let cores = profile.runtime.pin_cores.clone();
    // More workers than cores to pin to would only take turns.
    if !cores.is_empty() && !explicit.threads && options.threads > cores.len() {
        options.threads = cores.len();
    }
    Ok(cores)
}

/// Run `open` on a new thread pinned to `cores` (the engine's workers, started there, inherit the mask), so
/// that the caller's own thread (an app's) keeps its affinity.
pub(crate) fn pinned<R: Send>(cores: &[usize], open: impl FnOnce() -> R + Send) -> R {
    if cores.is_empty() {
        return open();
    }
    std::thread::scope(|scope| {
        let opener = scope.spawn(|| {
            match runtime::host::pin_threads(cores) {
                Ok(pinned) => tracing::info!("engine workers pinned to cores {pinned:?}"),
                Err(e) => tracing::warn!("engine workers not pinned: {e}"),
            }
            open()
        });
        opener.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}
