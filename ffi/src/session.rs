//! `sail_session`: one conversation on an engine, its answers pulled piece by piece (`sail_session_ask` +
//! `sail_session_next`) or pushed to a callback (`sail_session_ask_callback`).

use std::ffi::{c_char, c_void, CString};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};

use runtime::engine::session::Answer;
use runtime::engine::{AskOptions, CancelToken, Frame, FrameError, Session, StopReason};
use runtime::model::sampler::SamplerConfig;

use crate::engine::{sail_engine, ENGINES};
use crate::guard::{c_string, guard, guard_void, opt_str_arg, str_arg, Failure};
use crate::handles::Registry;
use crate::types::*;

/// A conversation (opaque). Used by one thread at a time, except `sail_session_cancel`, which may come from
/// any thread.
pub struct sail_session {
    /// Shared with the session, so cancelling takes no lock while an answer runs.
    cancel: CancelToken,
    inner: Mutex<Inner>,
}

struct Inner {
    state: State,
    /// The last piece handed out by `sail_session_next` (valid until the next call).
    piece: CString,
    /// How the last answer ended, repeated by `sail_session_next` until the next question.
    ended: Option<sail_status>,
}

enum State {
    Idle(Box<Session>),
    /// Boxed: an answer holds its logits and stream state, the idle form only a pointer.
    Answering(Box<Answer<Box<Session>>>),
    /// Only between taking the session out and putting it back; seen after a panic there.
    Lost,
}

pub(crate) static SESSIONS: Registry<sail_session> = Registry::new("session");

/// The default `max_tokens` (0).
const DEFAULT_MAX_TOKENS: usize = 512;

impl sail_session {
    /// The session's state, or an argument error when another call holds it: a second thread (sessions are
    /// one thread at a time) or the session's own piece callback calling back in. Failing beats waiting on a
    /// lock the caller itself holds.
    fn lock(&self) -> Result<MutexGuard<'_, Inner>, Failure> {
        match self.inner.try_lock() {
            Ok(inner) => Ok(inner),
            // A panic inside a call may have left the conversation half-changed (ids ahead of the cache):
            // the session is given up, and says so from now on.
            Err(TryLockError::Poisoned(e)) => {
                let mut inner = e.into_inner();
                inner.state = State::Lost;
                self.inner.clear_poison();
                Ok(inner)
            }
            Err(TryLockError::WouldBlock) => Err(Failure::arg(
                "the session is busy in another call (another thread, or its own piece callback); \
                 only sail_session_cancel may overlap",
            )),
        }
    }
}

impl Inner {
    /// The session for calls that change what the next question sees: refused while an answer runs (read
    /// it to the end, cancel it, or ask again), so that it is never cut short as a side effect.
    fn quiet(&mut self) -> Result<&mut Session, Failure> {
        if matches!(self.state, State::Answering(_)) {
            return Err(Failure::arg(
                "an answer is running: read it to SAIL_DONE, cancel it, reset, or ask the next question first",
            ));
        }
        self.idle()
    }

    /// The session, ending a running answer where it is first (as the header documents).
    fn idle(&mut self) -> Result<&mut Session, Failure> {
        if matches!(self.state, State::Answering(_)) {
            if let State::Answering(answer) = std::mem::replace(&mut self.state, State::Lost) {
                self.state = State::Idle(answer.into_session());
            }
        }
        match &mut self.state {
            State::Idle(session) => Ok(session),
            _ => Err(Failure {
                status: SAIL_ERR_INTERNAL,
                message: "the session was lost in an earlier internal error; free it and start a new one".into(),
            }),
        }
    }

    fn take_idle(&mut self) -> Result<Box<Session>, Failure> {
        self.idle()?;
        match std::mem::replace(&mut self.state, State::Lost) {
            State::Idle(session) => Ok(session),
            _ => unreachable!("idle() returned Ok, so the state is Idle"),
        }
    }
}

fn session(s: *const sail_session) -> Result<Arc<sail_session>, Failure> {
    SESSIONS.get(s)
}

fn max_tokens(max_tokens: i32) -> Result<usize, Failure> {
    match max_tokens {
        0 => Ok(DEFAULT_MAX_TOKENS),
        n if n > 0 => Ok(n as usize),
        n => Err(Failure::arg(format!("max_tokens is {n}; give a positive budget, or 0 for the default"))),
    }
}

fn stop_status(stop: Option<StopReason>) -> sail_status {
    match stop {
        Some(StopReason::Cancelled) => SAIL_CANCELLED,
        _ => SAIL_DONE,
    }
}

/// Start a conversation on `engine` and store it in `*out` (NULL on failure). Greedy decoding and the
/// model's system prompt until changed. Any thread may create sessions on one engine at the same time.
///
/// Ownership: the session is the caller's; free it with `sail_session_free`. It holds a reference to the
/// engine, so the engine may be freed first.
#[no_mangle]
pub extern "C" fn sail_session_new(engine: *mut sail_engine, out: *mut *mut sail_session) -> sail_status {
    guard("sail_session_new", || {
        if out.is_null() {
            return Err(Failure::arg("out (the session pointer to fill) is NULL"));
        }
        // SAFETY: non-NULL, and the caller passes a writable pointer.
        unsafe { out.write(std::ptr::null_mut()) };
        let engine = ENGINES.get(engine)?.engine.clone();
        let session = Box::new(Session::new(engine));
        let handle = SESSIONS.register(sail_session {
            cancel: session.cancel_token(),
            inner: Mutex::new(Inner { state: State::Idle(session), piece: CString::default(), ended: None }),
        });
        // SAFETY: checked non-NULL above.
        unsafe { out.write(handle) };
        Ok(SAIL_OK)
    })
}

/// Free the session (ending a running answer). NULL is a no-op; a handle that is not live, or a session
/// whose piece callback is running (a call from inside it), is reported through `sail_last_error` and not
/// freed. No other thread may be using the session.
#[no_mangle]
pub extern "C" fn sail_session_free(session: *mut sail_session) {
    guard_void("sail_session_free", || {
        if !session.is_null() {
            // Not from inside the session's own callback (that call still uses it).
            drop(self::session(session)?.lock()?);
        }
        drop(SESSIONS.take(session)?);
        Ok(())
    })
}

/// Add a still image file (PNG or JPEG; UTF-8 path, read during the call) to the next question, tiled up to
/// the tile budget. Like the other add and set calls, refused (`SAIL_ERR_ARG`) while an answer is running.
#[no_mangle]
pub extern "C" fn sail_session_add_image_file(session: *mut sail_session, path: *const c_char) -> sail_status {
    guard("sail_session_add_image_file", || {
        let s = self::session(session)?;
        let path = str_arg(path, "path")?;
        s.lock()?.quiet()?.add_image_path(path)?;
        Ok(SAIL_OK)
    })
}

/// Add a still image from encoded PNG or JPEG bytes (`data`, `len` bytes; copied before the call returns).
#[no_mangle]
pub extern "C" fn sail_session_add_image_bytes(session: *mut sail_session, data: *const u8, len: usize) -> sail_status {
    guard("sail_session_add_image_bytes", || {
        let s = self::session(session)?;
        if data.is_null() {
            return Err(Failure::arg("data is NULL"));
        }
        if len == 0 || len > isize::MAX as usize {
            return Err(Failure::arg(format!("len is {len}: not an image's size")));
        }
        // SAFETY: non-NULL, and the caller passes `len` readable bytes.
        let bytes = unsafe { std::slice::from_raw_parts(data, len) };
        s.lock()?.quiet()?.add_image_bytes(bytes)?;
        Ok(SAIL_OK)
    })
}

/// Add a camera or phone frame as a still image. `data` holds `height` rows of `stride` bytes (0 = packed),
/// the last row included, in `format` (for NV12/NV21 the interleaved chroma rows follow, for I420/I422/I444
/// the chroma planes); it is converted before the call returns, so the buffer may be reused at once. Sizes
/// and stride are checked before any byte is read.
#[no_mangle]
pub extern "C" fn sail_session_add_frame(
    session: *mut sail_session,
    data: *const u8,
    width: u32,
    height: u32,
    stride: u32,
    format: sail_pixel_format_raw,
) -> sail_status {
    guard("sail_session_add_frame", || {
        let s = self::session(session)?;
        let format =
            pixel_format(format).ok_or_else(|| Failure::arg(format!("format {format} is not a sail_pixel_format")))?;
        if data.is_null() {
            return Err(Failure::arg("data is NULL"));
        }
        // The runtime's checks of the geometry (sizes within its limits, even sizes for subsampled chroma, the
        // stride) run on an empty frame first, so that the length below is only computed for a sane frame
        // (no overflow) and no byte is read before it is known.
        let len = match Frame::new(&[], width, height, stride, format).validate() {
            Err(FrameError::ShortData { needed, .. }) => needed,
            Err(e) => return Err(Failure::arg(e)),
            Ok(()) => unreachable!("an empty frame cannot hold a frame of at least one pixel"),
        };
        let len = usize::try_from(len).ok().filter(|&l| l <= isize::MAX as usize).ok_or_else(|| {
            Failure::arg(format!("a {width}x{height} frame with stride {stride} would be {len} bytes"))
        })?;
        // SAFETY: non-NULL, and the caller passes the frame's `height` rows of `stride` bytes (the last one
        // too) plus the chroma the format has, which is `len`.
        let bytes = unsafe { std::slice::from_raw_parts(data, len) };
        s.lock()?.quiet()?.add_image_frame(&Frame::new(bytes, width, height, stride, format))?;
        Ok(SAIL_OK)
    })
}

/// Use `system` as the system prompt of the next conversation (NULL: the model's). Takes effect on an empty
/// session or after `sail_session_reset`.
#[no_mangle]
pub extern "C" fn sail_session_set_system(session: *mut sail_session, system: *const c_char) -> sail_status {
    guard("sail_session_set_system", || {
        let s = self::session(session)?;
        let system = opt_str_arg(system, "system")?.map(str::to_string);
        s.lock()?.quiet()?.set_system(system)?;
        Ok(SAIL_OK)
    })
}

/// Ask `question` (UTF-8) about the images added since the last question and the conversation so far, with
/// at most `max_tokens` tokens of answer (0: 512). The prompt is computed here (the slow part with images);
/// then pull the answer with `sail_session_next`. Greedy decoding unless `sail_session_set_sampling` said
/// otherwise. An answer still running is ended where it is (what it said so far stays in the conversation).
///
/// Returns `SAIL_OK` (pull the answer), `SAIL_CANCELLED` (cancelled while the prompt was computed; the
/// session is as before the question) or a failure (the session is as before the question).
#[no_mangle]
pub extern "C" fn sail_session_ask(
    session: *mut sail_session,
    question: *const c_char,
    max_tokens: i32,
) -> sail_status {
    guard("sail_session_ask", || {
        let s = self::session(session)?;
        let question = str_arg(question, "question")?;
        let options = AskOptions { max_tokens: self::max_tokens(max_tokens)?, ..AskOptions::default() };
        let mut inner = s.lock()?;
        inner.ended = None;
        let idle = inner.take_idle()?;
        match Answer::begin(idle, question, &options) {
            Ok(answer) if answer.stop_reason() == Some(StopReason::Cancelled) => {
                inner.state = State::Idle(answer.into_session());
                inner.ended = Some(SAIL_CANCELLED);
                Ok(SAIL_CANCELLED)
            }
            Ok(answer) => {
                inner.state = State::Answering(Box::new(answer));
                Ok(SAIL_OK)
            }
            Err((e, idle)) => {
                inner.state = State::Idle(idle);
                Err(e.into())
            }
        }
    })
}

/// The next piece of the answer: `SAIL_OK` with `*piece` a UTF-8 string (one or more whole characters),
/// valid until the next call on this session; `SAIL_DONE` at the end (`*piece` NULL; the answer is in the
/// conversation); `SAIL_CANCELLED` if `sail_session_cancel` stopped it (the session is as before the
/// question). After the end, the same status again until the next question. A failure ends the answer and
/// puts the session back as before the question.
#[no_mangle]
pub extern "C" fn sail_session_next(session: *mut sail_session, piece: *mut *const c_char) -> sail_status {
    guard("sail_session_next", || {
        let s = self::session(session)?;
        if piece.is_null() {
            return Err(Failure::arg("piece (the string pointer to fill) is NULL"));
        }
        // SAFETY: non-NULL, and the caller passes a writable pointer.
        unsafe { piece.write(std::ptr::null()) };
        let mut inner = s.lock()?;
        let inner = &mut *inner;
        let State::Answering(answer) = &mut inner.state else {
            return match inner.ended {
                Some(status) => Ok(status),
                None => Err(Failure::arg("no answer is running: call sail_session_ask first")),
            };
        };
        match answer.next() {
            Some(Ok(text)) => {
                inner.piece = c_string(&text);
                // SAFETY: checked non-NULL above; the string lives in the session until the next call.
                unsafe { piece.write(inner.piece.as_ptr()) };
                Ok(SAIL_OK)
            }
            None => {
                let status = stop_status(answer.stop_reason());
                inner.idle()?;
                inner.ended = Some(status);
                Ok(status)
            }
            Some(Err(e)) => {
                // The answer is over and the session is back as before the question: no answer is running.
                inner.idle()?;
                inner.ended = None;
                Err(e.into())
            }
        }
    })
}

/// Called with each piece of the answer (a UTF-8 string valid during the call), on the thread that asked.
/// Return 0 to go on, anything else to stop there (the answer so far stays in the conversation; no further
/// call comes). Other calls on the same session from inside it fail with `SAIL_ERR_ARG` (busy), except
/// `sail_session_cancel`. It must return normally (no longjmp, no C++ exception through the library).
pub type sail_piece_callback = Option<unsafe extern "C" fn(piece: *const c_char, user_data: *mut c_void) -> i32>;

/// Ask and answer in one call, handing each piece to `on_piece` on this thread (the push form of
/// `sail_session_ask` + `sail_session_next`). Returns `SAIL_DONE` when the answer ended (or the callback
/// stopped it), `SAIL_CANCELLED` when `sail_session_cancel` did, or a failure.
#[no_mangle]
pub extern "C" fn sail_session_ask_callback(
    session: *mut sail_session,
    question: *const c_char,
    max_tokens: i32,
    on_piece: sail_piece_callback,
    user_data: *mut c_void,
) -> sail_status {
    guard("sail_session_ask_callback", || {
        let s = self::session(session)?;
        let question = str_arg(question, "question")?;
        let on_piece = on_piece.ok_or_else(|| Failure::arg("on_piece is NULL"))?;
        let options = AskOptions { max_tokens: self::max_tokens(max_tokens)?, ..AskOptions::default() };
        let mut inner = s.lock()?;
        inner.ended = None;
        let mut stopped = false;
        let reply = inner.idle()?.ask_with(question, &options, |text| {
            // After the callback said stop it is not called again (the runtime offers the held-back end of
            // the text; it stays in the conversation).
            if stopped {
                return false;
            }
            let text = c_string(text);
            // SAFETY: a C function pointer from the caller, given a NUL-terminated string that lives through
            // the call and the caller's own user_data.
            stopped = unsafe { on_piece(text.as_ptr(), user_data) } != 0;
            !stopped
        })?;
        let status = stop_status(Some(reply.stop));
        inner.ended = Some(status);
        Ok(status)
    })
}

/// Stop the session's running question (prompt or answer) as soon as possible. May be called from any
/// thread while another uses the session; the session stays usable and is as it was before the question.
/// A cancel that comes before `sail_session_ask` is cleared by it. NULL or a handle that is not live: no-op
/// (reported through `sail_last_error`).
#[no_mangle]
pub extern "C" fn sail_session_cancel(session: *mut sail_session) {
    guard_void("sail_session_cancel", || {
        self::session(session)?.cancel.cancel();
        Ok(())
    })
}

/// Forget the conversation (turns, images, cache), ending a running answer; sampling and system prompt stay.
#[no_mangle]
pub extern "C" fn sail_session_reset(session: *mut sail_session) -> sail_status {
    guard("sail_session_reset", || {
        let s = self::session(session)?;
        let mut inner = s.lock()?;
        inner.idle()?.reset();
        inner.ended = None;
        Ok(SAIL_OK)
    })
}

/// Sampling for the next answers. Call `sail_sampling_params_init` first (greedy).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct sail_sampling_params {
    /// `sizeof(sail_sampling_params)`, set by `sail_sampling_params_init`.
    pub struct_size: u32,
    /// 0 = greedy (argmax).
    pub temperature: f32,
    /// Keep the k most likely tokens (0 = off).
    pub top_k: i32,
    /// Keep the smallest set whose probability reaches p (1 = off).
    pub top_p: f32,
    /// Drop tokens below min_p times the top probability (0 = off).
    pub min_p: f32,
    /// Above 1 discourages tokens already in the conversation (1 = off).
    pub repetition_penalty: f32,
    /// The generator's seed: the same seed and question give the same answer.
    pub seed: u64,
}

/// Fill `params` with greedy decoding and set `struct_size`. NULL is a no-op.
#[no_mangle]
pub extern "C" fn sail_sampling_params_init(params: *mut sail_sampling_params) {
    if params.is_null() {
        return;
    }
    let d = SamplerConfig::default();
    let defaults = sail_sampling_params {
        struct_size: size_of::<sail_sampling_params>() as u32,
        temperature: d.temperature,
        top_k: d.top_k as i32,
        top_p: d.top_p,
        min_p: d.min_p,
        repetition_penalty: d.repetition_penalty,
        seed: d.seed,
    };
    // SAFETY: non-NULL, and the caller passes a writable sail_sampling_params.
    unsafe { params.write(defaults) };
}

/// A caller's struct of another version (or none) is refused before its other fields are read.
fn check_struct_size(name: &str, size: u32, expected: usize) -> Result<(), Failure> {
    if size as usize != expected {
        return Err(Failure::arg(format!(
            "{name}.struct_size is {size}, this library's is {expected} (call {name}_init first)"
        )));
    }
    Ok(())
}

fn sampler_config(p: &sail_sampling_params) -> Result<SamplerConfig, Failure> {
    let bad = |field: &str, value: f32, want: &str| {
        Failure::arg(format!("sail_sampling_params.{field} is {value}; it must be {want}"))
    };
    if !(p.temperature.is_finite() && p.temperature >= 0.0) {
        return Err(bad("temperature", p.temperature, "finite and at least 0"));
    }
    if !(p.top_p > 0.0 && p.top_p <= 1.0) {
        return Err(bad("top_p", p.top_p, "in (0, 1]"));
    }
    if !(0.0..=1.0).contains(&p.min_p) {
        return Err(bad("min_p", p.min_p, "in [0, 1]"));
    }
    if !(p.repetition_penalty.is_finite() && p.repetition_penalty > 0.0) {
        return Err(bad("repetition_penalty", p.repetition_penalty, "finite and above 0"));
    }
    let top_k = usize::try_from(p.top_k)
        .map_err(|_| Failure::arg(format!("sail_sampling_params.top_k is {}; it must be at least 0", p.top_k)))?;
    Ok(SamplerConfig {
        temperature: p.temperature,
        top_k,
        top_p: p.top_p,
        min_p: p.min_p,
        repetition_penalty: p.repetition_penalty,
        seed: p.seed,
    })
}

/// Sample the next answers with `params` (read during the call; the generator restarts from its seed).
/// NULL params: greedy.
#[no_mangle]
pub extern "C" fn sail_session_set_sampling(
    session: *mut sail_session,
    params: *const sail_sampling_params,
) -> sail_status {
    guard("sail_session_set_sampling", || {
        let s = self::session(session)?;
        let config = if params.is_null() {
            SamplerConfig::default()
        } else {
            // SAFETY: non-NULL; struct_size is the first field of every version.
            let size = unsafe { std::ptr::addr_of!((*params).struct_size).read() };
            check_struct_size("sail_sampling_params", size, size_of::<sail_sampling_params>())?;
            // SAFETY: non-NULL, and its struct_size says it is a whole sail_sampling_params of this version.
            sampler_config(unsafe { &*params })?
        };
        s.lock()?.quiet()?.set_sampling(config);
        Ok(SAIL_OK)
    })
}

/// Where the time of the last answer went. Call `sail_timings_init` first.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct sail_timings {
    /// `sizeof(sail_timings)`, set by `sail_timings_init`.
    pub struct_size: u32,
    /// Decoding, converting and tiling the question's images (in the add calls).
    pub preprocess_ms: f64,
    /// The vision encoder and projector over the tiles not found in the engine's feature cache.
    pub encode_ms: f64,
    /// Computing the prompt's new positions.
    pub prefill_ms: f64,
    /// Generating the answer.
    pub decode_ms: f64,
    /// The question's image tiles, and how many came from the feature cache.
    pub tiles: i32,
    pub tiles_cached: i32,
    /// Positions in the conversation once the question was in, and how many were computed for it.
    pub prompt_tokens: i32,
    pub prefilled_tokens: i32,
    /// Tokens of answer.
    pub generated_tokens: i32,
}

/// Zero `timings` and set `struct_size`. NULL is a no-op.
#[no_mangle]
pub extern "C" fn sail_timings_init(timings: *mut sail_timings) {
    if timings.is_null() {
        return;
    }
    let zero = sail_timings { struct_size: size_of::<sail_timings>() as u32, ..sail_timings::default() };
    // SAFETY: non-NULL, and the caller passes a writable sail_timings.
    unsafe { timings.write(zero) };
}

/// The last answer's timings, written to the caller's `out`. While an answer runs, its prompt figures are
/// there and the decode figures still those of nothing (they are filled when it ends).
#[no_mangle]
pub extern "C" fn sail_session_timings(session: *const sail_session, out: *mut sail_timings) -> sail_status {
    guard("sail_session_timings", || {
        let s = self::session(session)?;
        if out.is_null() {
            return Err(Failure::arg("out (the timings to fill) is NULL"));
        }
        // SAFETY: non-NULL; struct_size is the first field of every version.
        let size = unsafe { std::ptr::addr_of!((*out).struct_size).read() };
        check_struct_size("sail_timings", size, size_of::<sail_timings>())?;
        let expected = size;
        let inner = s.lock()?;
        let t = match &inner.state {
            State::Idle(session) => session.last_timings(),
            State::Answering(answer) => answer.session().last_timings(),
            State::Lost => return Err(Failure { status: SAIL_ERR_INTERNAL, message: "the session was lost".into() }),
        };
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
        let count = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
        let timings = sail_timings {
            struct_size: expected,
            preprocess_ms: ms(t.preprocess),
            encode_ms: ms(t.encode),
            prefill_ms: ms(t.prefill),
            decode_ms: ms(t.decode),
            tiles: count(t.tiles),
            tiles_cached: count(t.tiles_cached),
            prompt_tokens: count(t.prompt_tokens),
            prefilled_tokens: count(t.prefilled_tokens),
            generated_tokens: count(t.generated),
        };
        // SAFETY: non-NULL, and its struct_size says it is a whole, writable sail_timings of this version.
        unsafe { out.write(timings) };
        Ok(SAIL_OK)
    })
}

/// Positions the conversation holds so far (0 if `session` is not a live session, or busy in another
/// call); with `sail_engine_context_length`, how much room is left.
#[no_mangle]
pub extern "C" fn sail_session_context_used(session: *const sail_session) -> i32 {
    let mut used = 0;
    guard("sail_session_context_used", || {
        let s = self::session(session)?;
        let inner = s.lock()?;
        let tokens = match &inner.state {
            State::Idle(session) => session.tokens().len(),
            State::Answering(answer) => answer.session().tokens().len(),
            State::Lost => 0,
        };
        used = i32::try_from(tokens).unwrap_or(i32::MAX);
        Ok(SAIL_OK)
    });
    used
}
