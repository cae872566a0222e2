//! The watch loop: frames in, answers out, one session kept across frames.
//!
//! The session's KV cache holds the system prompt and the frames of the window, appended as they arrive
//! (`Frame-1: <image>`, `Frame-2: <image>`, … as the reference announces video frames, one 448 tile each).
//! After each answer the question and the answer are rolled back to the mark after the frames, so a new frame
//! costs its tile's encode, its ~256 + |question| prefill positions and the answer. When the window is full it
//! slides: the conversation restarts from the engine's shared system prefix and the frames still in the
//! window are put in again, their embeddings from the feature cache (reported as `reprefill`; their positions
//! change, so their KV cannot be kept). With `reuse` off, every update encodes and prefills everything, for
//! measuring what the reuse saves.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ::image::RgbImage;
use runtime::engine::{AskOptions, CancelToken, Engine, EngineError, Session, StopReason, TurnTimings};
use runtime::model::sampler::SamplerConfig;

use crate::capture::{Capture, CaptureStats};
use crate::gate::{GateConfig, GateReason, SceneGate};
use crate::luma::Thumbnail;
use crate::source::{CapturedFrame, SourceError};
use crate::update::{ms, open_fds, rss_bytes, StageMs, Update};

/// Most frames in the window: the reference's limit for a video.
pub const MAX_WINDOW: usize = 16;

/// What the loop does.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// The question asked about the window after each accepted frame.
    pub question: String,
    /// Where the question came from, re-read when the file changes (the next frame is then answered).
    pub prompt_file: Option<PathBuf>,
    /// Replace the model's system prompt.
    pub system: Option<String>,
    /// Frames in the prompt (1 = the current scene; at most [`MAX_WINDOW`]).
    pub window: usize,
    pub gate: GateConfig,
    pub ask: AskOptions,
    pub sampling: SamplerConfig,
    /// End after this many updates / frames taken from the source.
    pub max_updates: Option<u64>,
    pub max_frames: Option<u64>,
    /// Keep the window's KV and take repeated tiles from the feature cache (off: everything recomputed).
    pub reuse: bool,
}

impl WatchOptions {
    pub fn new(question: impl Into<String>) -> WatchOptions {
        WatchOptions {
            question: question.into(),
            prompt_file: None,
            system: None,
            window: 1,
            gate: GateConfig::default(),
            ask: AskOptions { max_tokens: 64, ..AskOptions::default() },
            sampling: SamplerConfig::default(),
            max_updates: None,
            max_frames: None,
            reuse: true,
        }
    }
}

/// Why the loop stopped early.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("{}: {reason}", path.display())]
    Prompt { path: PathBuf, reason: String },
    #[error("{0}")]
    Options(String),
}

/// How a run went.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub updates: u64,
    /// Frames taken from the source (considered by the gate or found bad).
    pub frames: u64,
    pub capture: CaptureStats,
    /// Frames the gate passed over.
    pub skipped: u64,
    /// Frames that did not decode in the loop (beyond those the source itself reported).
    pub undecodable: u64,
    pub elapsed: Duration,
    /// Time spent producing updates (from taking the frame to the answer), summed.
    pub busy: Duration,
    /// Why the run ended: `end of stream`, `--max-updates`, `--max-frames`, `interrupted`.
    pub ended_by: String,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let per = if self.updates > 0 { self.busy.as_secs_f64() / self.updates as f64 } else { 0.0 };
        let c = &self.capture;
        write!(
            f,
            "watch: {} updates from {} frames in {:.1} s ({per:.2} s per update); captured {}, dropped {}, bad {}, \
             skipped by the gate {}, reconnects {}; ended by {}",
            self.updates,
            self.frames,
            self.elapsed.as_secs_f64(),
            c.captured,
            c.dropped,
            c.bad + self.undecodable,
            self.skipped,
            c.reconnects,
            self.ended_by
        )
    }
}

/// A frame kept in the window.
struct WindowFrame {
    index: u64,
    rgb: RgbImage,
}

/// The loop's state: the session, the window, the gate.
pub struct Watcher {
    options: WatchOptions,
    session: Session,
    cancel: CancelToken,
    window: VecDeque<WindowFrame>,
    /// Frames of the window whose blocks are in the session (the rest must be put in again).
    in_session: usize,
    gate: SceneGate,
    question: String,
    prompt_stamp: Option<(SystemTime, u64)>,
    last_text: Option<String>,
    skipped_since: u64,
    undecodable_since: u64,
    summary: Summary,
}

impl Watcher {
    pub fn new(engine: Arc<Engine>, options: WatchOptions) -> Result<Watcher, WatchError> {
        if options.window == 0 || options.window > MAX_WINDOW {
            return Err(WatchError::Options(format!(
                "--window must be between 1 and {MAX_WINDOW} (got {})",
                options.window
            )));
        }
        if !engine.has_vision() {
            return Err(engine.no_vision().into());
        }
        if options.question.trim().is_empty() {
            return Err(WatchError::Options("the question is empty (give -p or --prompt-file)".into()));
        }
        let mut session = engine.session();
        session.set_sampling(options.sampling.clone());
        session.set_system(options.system.clone())?;
        session.set_shared_prefix(options.reuse);
        session.set_feature_reuse(options.reuse);
        let prompt_stamp = options.prompt_file.as_ref().and_then(|p| stamp(p));
        Ok(Watcher {
            cancel: session.cancel_token(),
            session,
            window: VecDeque::with_capacity(options.window + 1),
            in_session: 0,
            gate: SceneGate::new(options.gate),
            question: options.question.clone(),
            prompt_stamp,
            last_text: None,
            skipped_since: 0,
            undecodable_since: 0,
            summary: Summary::default(),
            options,
        })
    }

    /// A handle that stops the answer being generated (Ctrl-C).
    pub fn cancel_token(&self) -> CancelToken {
        self.cancel.clone()
    }

    /// The question now asked.
    pub fn question(&self) -> &str {
        &self.question
    }

    /// Re-read the prompt file if it changed; `true` when the question changed.
    fn reload_prompt(&mut self) -> bool {
        let Some(path) = self.options.prompt_file.clone() else { return false };
        let now = stamp(&path);
        if now.is_none() || now == self.prompt_stamp {
            return false;
        }
        self.prompt_stamp = now;
        match std::fs::read(&path).map(String::from_utf8) {
            Ok(Ok(q)) if !q.trim().is_empty() && q != self.question => {
                tracing::info!("{}: new question: {}", path.display(), q.trim());
                self.question = q;
                true
            }
            Ok(Ok(_)) => false,
            Ok(Err(_)) => {
                tracing::warn!("{}: not UTF-8; keeping the previous question", path.display());
                false
            }
            Err(e) => {
                tracing::warn!("{}: {e}; keeping the previous question", path.display());
                false
            }
        }
    }

    /// Consider one frame: the gate decides, and an accepted frame is answered (`Ok(Some)`, with `dropped`
    /// left at 0: the capture knows it). `Ok(None)`: the gate passed over it, or it did not decode (counted;
    /// the loop goes on). A cancelled answer is `Err(WatchError::Engine(EngineError::Cancelled))`.
    pub fn offer(&mut self, frame: &CapturedFrame, source: &str) -> Result<Option<Update>, WatchError> {
        self.step(frame, source, None)
    }

    /// [`Watcher::offer`], giving up before each expensive stage once `stop` is set (a cancel that lands
    /// between turns would be cleared by the next turn's start).
    fn step(
        &mut self,
        frame: &CapturedFrame,
        source: &str,
        stop: Option<&AtomicBool>,
    ) -> Result<Option<Update>, WatchError> {
        let start = Instant::now();
        let rgb = match frame.to_rgb(source) {
            Ok(rgb) => rgb,
            Err(e) => {
                tracing::warn!("{e}");
                self.undecodable_since += 1;
                self.summary.undecodable += 1;
                return Ok(None);
            }
        };
        let capture = start.elapsed();
        let prompt_changed = self.reload_prompt();
        let thumb = Thumbnail::of(&rgb);
        let reason = match self.gate.consider(&thumb, frame.timestamp) {
            Some(r) => r,
            None if prompt_changed => GateReason::Prompt,
            None => {
                self.skipped_since += 1;
                self.summary.skipped += 1;
                return Ok(None);
            }
        };
        let (reply, timings, reprefill) = self.answer(frame.index, rgb, stop)?;
        if reply.stop == StopReason::Cancelled {
            return Err(EngineError::Cancelled.into());
        }
        self.gate.answered(thumb, frame.timestamp);
        self.summary.updates += 1;
        let total = start.elapsed();
        self.summary.busy += total;
        let changed = self.last_text.as_deref() != Some(reply.text.as_str());
        self.last_text = Some(reply.text.clone());
        let update = Update {
            t: SystemTime::now(),
            frames: self.window.iter().map(|f| f.index).collect(),
            text: reply.text,
            changed,
            ms: StageMs {
                capture: ms(capture),
                preprocess: ms(timings.preprocess),
                vit: ms(timings.encode),
                prefill: ms(timings.prefill),
                decode: ms(timings.decode),
                total: ms(total),
            },
            dropped: 0,
            reprefill,
            reason,
            update: self.summary.updates,
            bad: std::mem::take(&mut self.undecodable_since),
            skipped: std::mem::take(&mut self.skipped_since),
            tiles: timings.tiles,
            tiles_cached: timings.tiles_cached,
            prompt_tokens: timings.prompt_tokens,
            prefilled_tokens: timings.prefilled_tokens,
            ids: reply.ids,
            stop: match reply.stop {
                StopReason::EndOfTurn => "end_of_turn",
                StopReason::MaxTokens => "max_tokens",
                StopReason::ContextFull => "context_full",
                StopReason::Cancelled => "cancelled",
                StopReason::Caller => "caller",
            },
            rss_bytes: rss_bytes(),
            open_fds: open_fds(),
        };
        Ok(Some(update))
    }

    /// Put the new frame into the window and the session, ask, roll the question back. Returns the reply,
    /// the update's timings (frames and question together) and whether older frames were prefilled again.
    fn answer(
        &mut self,
        index: u64,
        rgb: RgbImage,
        stop: Option<&AtomicBool>,
    ) -> Result<(runtime::engine::Reply, TurnTimings, bool), WatchError> {
        let stopped = || -> Result<(), WatchError> {
            match stop {
                Some(s) if s.load(Ordering::SeqCst) => Err(EngineError::Cancelled.into()),
                _ => Ok(()),
            }
        };
        stopped()?;
        self.window.push_back(WindowFrame { index, rgb });
        let slid = self.window.len() > self.options.window;
        if slid {
            self.window.pop_front();
        }
        let question = self.question.clone();
        let ask = self.options.ask.clone();
        if !self.options.reuse {
            self.session.reset();
            for f in &self.window {
                self.session.add_video_frame_rgb(&f.rgb)?;
            }
            stopped()?;
            let reply = self.session.ask_with(&question, &ask, |_| true)?;
            let timings = reply.timings;
            return Ok((reply, timings, self.window.len() > 1));
        }
        let mut reprefill = false;
        if slid || self.in_session != self.window.len() - 1 {
            // The window slid (or an earlier update failed half-way): start again from the system prefix.
            self.session.reset();
            self.in_session = 0;
            reprefill = self.window.len() > 1;
        }
        for f in self.window.iter().skip(self.in_session) {
            self.session.add_video_frame_rgb(&f.rgb)?;
        }
        stopped()?;
        let mark = match self.session.checkpoint() {
            Ok(m) => m,
            Err(e) => {
                self.in_session = usize::MAX;
                return Err(e.into());
            }
        };
        self.in_session = self.window.len();
        let frames = self.session.last_timings();
        stopped()?;
        let reply = self.session.ask_with(&question, &ask, |_| true)?;
        self.session.rollback(&mark)?;
        let t = reply.timings;
        let timings = TurnTimings {
            preprocess: frames.preprocess + t.preprocess,
            encode: frames.encode + t.encode,
            tiles: frames.tiles + t.tiles,
            tiles_cached: frames.tiles_cached + t.tiles_cached,
            prefill: frames.prefill + t.prefill,
            prompt_tokens: t.prompt_tokens,
            prefilled_tokens: frames.prefilled_tokens + t.prefilled_tokens,
            decode: t.decode,
            generated: t.generated,
        };
        Ok((reply, timings, reprefill))
    }

    /// Run until the source ends, a limit is reached or `stop` is set (then the answer being generated is
    /// cancelled too): each update goes to `on_update`, with the frames the live slot dropped since the last.
    pub fn run(
        &mut self,
        capture: &Capture,
        stop: &AtomicBool,
        mut on_update: impl FnMut(&Update),
    ) -> Result<Summary, WatchError> {
        let started = Instant::now();
        let source = capture.name();
        let (mut dropped_before, mut bad_before) = (0, 0);
        let ended_by = loop {
            if stop.load(Ordering::SeqCst) {
                break "interrupted";
            }
            if self.options.max_updates.is_some_and(|m| self.summary.updates >= m) {
                break "--max-updates";
            }
            if self.options.max_frames.is_some_and(|m| self.summary.frames >= m) {
                break "--max-frames";
            }
            let frame = match capture.next(Duration::from_millis(100)) {
                Ok(Some(Some(frame))) => frame,
                Ok(Some(None)) => break "end of stream",
                Ok(None) => continue,
                Err(e) => {
                    self.finish(capture, started, "source error");
                    return Err(e.into());
                }
            };
            self.summary.frames += 1;
            match self.step(&frame, &source, Some(stop)) {
                Ok(Some(mut update)) => {
                    let stats = capture.stats();
                    update.dropped = stats.dropped - dropped_before;
                    update.bad += stats.bad - bad_before;
                    (dropped_before, bad_before) = (stats.dropped, stats.bad);
                    on_update(&update);
                }
                Ok(None) => {}
                Err(WatchError::Engine(EngineError::Cancelled)) if stop.load(Ordering::SeqCst) => break "interrupted",
                Err(e) => {
                    self.finish(capture, started, "error");
                    return Err(e);
                }
            }
        };
        Ok(self.finish(capture, started, ended_by))
    }

    fn finish(&mut self, capture: &Capture, started: Instant, ended_by: &str) -> Summary {
        self.summary.capture = capture.stats();
        self.summary.elapsed = started.elapsed();
        self.summary.ended_by = ended_by.to_string();
        self.summary.clone()
    }
}

/// Size the engine's feature cache for a window of `window` frames: the tiles a sliding window puts in again
/// (its frames and the one arriving), and no more. A camera's frames never repeat byte for byte, so a larger
/// cache would only hold memory (64 MiB by default; 2 MiB a tile on the 2B model).
pub fn fit_feature_cache(engine: &Engine, window: usize) {
    if let Some(tile) = engine.tile_embedding_bytes() {
        engine.set_feature_cache_bytes(window.min(MAX_WINDOW).saturating_add(1).saturating_mul(tile));
    }
}

/// A file's modification time and length, to notice edits.
fn stamp(path: &std::path::Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}
