//! `sail_engine`: a loaded model with its worker threads and shared caches.

use std::ffi::c_char;
use std::sync::Arc;

use runtime::engine::{Engine, EngineOptions};

use crate::guard::{guard, guard_void, opt_str_arg, str_arg, Failure};
use crate::handles::Registry;
use crate::types::*;

/// An opened model (opaque). Thread-safe: any number of sessions on any threads may share it.
pub struct sail_engine {
    pub(crate) engine: Arc<Engine>,
}

pub(crate) static ENGINES: Registry<sail_engine> = Registry::new("engine");

/// How to open an engine. Call `sail_engine_params_init` first: it sets the defaults and `struct_size`
/// (later versions append fields; the size tells them apart).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct sail_engine_params {
    /// `sizeof(sail_engine_params)`, set by `sail_engine_params_init`.
    pub struct_size: u32,
    /// The language-model GGUF (UTF-8 path). Required.
    pub model_path: *const c_char,
    /// The vision GGUF; NULL: the `mmproj-*.gguf` beside the model, if there is one.
    pub mmproj_path: *const c_char,
    /// Worker threads; 0 = default (the board profile's, else the number of physical cores).
    pub n_threads: i32,
    /// Most positions a session may hold; 0 = default (the profile's, else the model's).
    pub context_length: i32,
    /// Tiles per still image; 0 = default (the profile's, else the mmproj file's).
    pub max_tiles: i32,
    /// KV cache rows; `SAIL_KV_DEFAULT` = the profile's, else F16.
    pub kv_type: sail_kv_type_raw,
    /// Bytes of tile embeddings kept for reuse across sessions; -1 = default (64 MiB), 0 = none.
    pub feature_cache_bytes: i64,
    /// Most bytes of MoE expert weights kept in memory; 0 = default (the profile's, else no bound).
    pub max_expert_memory: i64,
    /// A board profile to take defaults from: NULL = none, `"auto"` = the one matching this machine, a
    /// name (`"rpi5"`) or a path to a profile file. Fields set above win over the profile.
    pub board: *const c_char,
}

/// Fill `params` with the defaults (every field "default", no paths) and set `struct_size`. NULL is a
/// no-op. The struct is the caller's; this library keeps no pointer into it.
#[no_mangle]
pub extern "C" fn sail_engine_params_init(params: *mut sail_engine_params) {
    if params.is_null() {
        return;
    }
    let defaults = sail_engine_params {
        struct_size: size_of::<sail_engine_params>() as u32,
        model_path: std::ptr::null(),
        mmproj_path: std::ptr::null(),
        n_threads: 0,
        context_length: 0,
        max_tiles: 0,
        kv_type: sail_kv_type::SAIL_KV_DEFAULT as i32,
        feature_cache_bytes: -1,
        max_expert_memory: 0,
        board: std::ptr::null(),
    };
    // SAFETY: non-NULL, and the caller passes a writable sail_engine_params.
    unsafe { params.write(defaults) };
}

/// Check `struct_size` before the rest of the struct is read: a caller built against another version may
/// have passed fewer bytes.
fn check_size(params: *const sail_engine_params) -> Result<(), Failure> {
    // SAFETY: non-NULL (checked by the caller); struct_size is the first field of every version.
    let size = unsafe { std::ptr::addr_of!((*params).struct_size).read() };
    let expected = size_of::<sail_engine_params>() as u32;
    if size != expected {
        return Err(Failure::arg(format!(
            "sail_engine_params.struct_size is {size}, this library's is {expected} (call sail_engine_params_init first)"
        )));
    }
    Ok(())
}

/// Read and check `params` into engine options and the cores to pin the workers to.
fn options(params: &sail_engine_params) -> Result<(EngineOptions, Vec<usize>), Failure> {
    check_size(params)?;
    let model = str_arg(params.model_path, "sail_engine_params.model_path")?;
    let mut options = EngineOptions::new(model);
    options.mmproj = opt_str_arg(params.mmproj_path, "sail_engine_params.mmproj_path")?.map(Into::into);
    let non_negative = |value: i64, field: &str| {
        u64::try_from(value).map_err(|_| Failure::arg(format!("sail_engine_params.{field} is {value}, below 0")))
    };
    let mut explicit = runtime::boards::Explicit::default();
    if params.n_threads != 0 {
        options.threads = non_negative(params.n_threads.into(), "n_threads")? as usize;
        explicit.threads = true;
    }
    if params.context_length != 0 {
        options.context_length = Some(non_negative(params.context_length.into(), "context_length")? as usize);
        explicit.context_length = true;
    }
    if params.max_tiles != 0 {
        options.max_tiles = Some(non_negative(params.max_tiles.into(), "max_tiles")? as u32);
        explicit.max_tiles = true;
    }
    match kv_type(params.kv_type) {
        Ok(Some(kv)) => {
            options.kv_type = kv;
            explicit.kv_type = true;
        }
        Ok(None) => {}
        Err(()) => {
            return Err(Failure::arg(format!("sail_engine_params.kv_type is {}, not a sail_kv_type", params.kv_type)))
        }
    }
    if params.feature_cache_bytes != -1 {
        options.feature_cache_bytes = non_negative(params.feature_cache_bytes, "feature_cache_bytes")? as usize;
    }
    if params.max_expert_memory != 0 {
        options.max_expert_memory = Some(non_negative(params.max_expert_memory, "max_expert_memory")?);
        explicit.max_expert_memory = true;
    }
    let pin = match opt_str_arg(params.board, "sail_engine_params.board")? {
        Some(board) => crate::board::apply(board, &mut options, explicit)?,
        None => Vec::new(),
    };
    Ok((options, pin))
}

/// Open the model described by `params` and store the engine in `*out` (NULL on failure). Loading maps the
/// files and starts the worker threads; it takes a while on a phone: call it off the UI thread. Strings in
/// `params` are read during the call only. Profile file errors are `SAIL_ERR_IO` / `SAIL_ERR_FORMAT`.
///
/// Ownership: the engine is the caller's; free it with `sail_engine_free`. Sessions keep it alive.
#[no_mangle]
pub extern "C" fn sail_engine_open(params: *const sail_engine_params, out: *mut *mut sail_engine) -> sail_status {
    guard("sail_engine_open", || {
        if out.is_null() {
            return Err(Failure::arg("out (the engine pointer to fill) is NULL"));
        }
        // SAFETY: non-NULL, and the caller passes a writable pointer.
        unsafe { out.write(std::ptr::null_mut()) };
        if params.is_null() {
            return Err(Failure::arg("params is NULL"));
        }
        check_size(params)?;
        // SAFETY: non-NULL, and its struct_size says it is a whole sail_engine_params of this version.
        let params = unsafe { &*params };
        let (options, pin) = options(params)?;
        let engine = crate::board::pinned(&pin, || Engine::open(options))?;
        let handle = ENGINES.register(sail_engine { engine: Arc::new(engine) });
        // SAFETY: checked non-NULL above.
        unsafe { out.write(handle) };
        Ok(SAIL_OK)
    })
}

/// Release the caller's reference to the engine: the handle is dead from now on (other calls with it give
/// `SAIL_ERR_ARG`). Sessions still open, and calls still running on other threads, keep the engine itself
/// alive until they end. NULL is a no-op; a handle that is not live is reported through `sail_last_error`
/// and otherwise ignored.
#[no_mangle]
pub extern "C" fn sail_engine_free(engine: *mut sail_engine) {
    guard_void("sail_engine_free", || {
        drop(ENGINES.take(engine)?);
        Ok(())
    })
}

/// The most positions a session on this engine may hold (0 if `engine` is not a live engine).
#[no_mangle]
pub extern "C" fn sail_engine_context_length(engine: *const sail_engine) -> i32 {
    let mut length = 0;
    guard("sail_engine_context_length", || {
        length = i32::try_from(ENGINES.get(engine)?.engine.context_length()).unwrap_or(i32::MAX);
        Ok(SAIL_OK)
    });
    length
}

/// The worker threads of this engine (0 if `engine` is not a live engine).
#[no_mangle]
pub extern "C" fn sail_engine_threads(engine: *const sail_engine) -> i32 {
    let mut threads = 0;
    guard("sail_engine_threads", || {
        threads = i32::try_from(ENGINES.get(engine)?.engine.threads()).unwrap_or(i32::MAX);
        Ok(SAIL_OK)
    });
    threads
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> sail_engine_params {
        let mut p = std::mem::MaybeUninit::<sail_engine_params>::uninit();
        sail_engine_params_init(p.as_mut_ptr());
        // SAFETY: sail_engine_params_init wrote every field.
        unsafe { p.assume_init() }
    }

    #[test]
    fn options_are_checked_field_by_field() {
        let mut p = params();
        assert!(options(&p).unwrap_err().message.contains("model_path is NULL"));
        p.model_path = c"/nonexistent/model.gguf".as_ptr();
        let (o, pin) = options(&p).unwrap();
        assert!(pin.is_empty());
        assert_eq!((o.threads, o.max_tiles, o.context_length), (0, None, None));
        assert_eq!(o.feature_cache_bytes, EngineOptions::new("x").feature_cache_bytes);
        p.kv_type = 9;
        assert!(options(&p).unwrap_err().message.contains("kv_type is 9"));
        p.kv_type = sail_kv_type::SAIL_KV_Q8_0 as i32;
        p.n_threads = -2;
        assert!(options(&p).unwrap_err().message.contains("n_threads is -2"));
        p.n_threads = 3;
        p.board = c"rpi5".as_ptr();
        let (o, pin) = options(&p).unwrap();
        assert_eq!(o.threads, 3, "the caller's threads win over the profile's");
        assert_eq!(o.kv_type, runtime::GgmlType::Q8_0, "and the caller's KV type");
        assert!(!pin.is_empty(), "the Pi 5 profile pins its cores");
        p.board = c"no-such-board".as_ptr();
        assert!(options(&p).unwrap_err().message.contains("no-such-board"));
        p.struct_size = 8;
        assert!(options(&p).unwrap_err().message.contains("struct_size is 8"));
    }

    #[test]
    fn open_reports_a_missing_file_as_io() {
        let mut p = params();
        p.model_path = c"/nonexistent/model.gguf".as_ptr();
        let mut engine = std::ptr::dangling_mut::<sail_engine>();
        assert_eq!(sail_engine_open(&p, &mut engine), SAIL_ERR_IO);
        assert!(engine.is_null(), "out is cleared on failure");
    }
}
