//! The engine: one loaded model that any number of [`Session`]s on any threads share for hours.
//!
//! # Ownership
//! The model code borrows its weights straight from the memory maps (`Matrix<'a>` is a view into a mapped
//! file, `Vlm<'a>` a set of such views), which is what keeps loading free of copies. An [`Engine`] owns both
//! halves in one heap cell built with the `self_cell` crate: the [`ModelFiles`] (the mapped LM, mmproj and
//! repack cache) as the owner, and the [`Vlm`] that borrows them as the dependent. The cell is never moved
//! out of, the maps never change while mapped (see [`crate::mmap`]), and the borrow never escapes except as
//! `&Vlm` tied to `&Engine`, so no lifetime reaches the user: an `Engine` is `Send + Sync` and is shared as
//! `Arc<Engine>`. We chose this over rewriting every weight view as an `Arc` plus offsets because the
//! kernels then keep taking plain slices (no reference counting on the hot path) and the borrowing API
//! stays available to tests and tools.
//!
//! # Threads
//! The engine owns its rayon pool: every computation a session asks for runs inside it, whichever thread
//! the session lives on, so several sessions share the cores instead of each starting threads.
//!
//! # What the engine shares between sessions
//! - the KV cache of the system prompt (`<|im_start|>system …<|im_end|><|im_start|>user`), computed once
//!   per system text and copied into each new session (a few dozen positions);
//! - a bounded (bytes, least recently used) cache of projected tile embeddings keyed by the SHA-256 of the
//!   preprocessed pixels ([`features`]).
//!
//! Both give the same bits as computing afresh (f32 KV), which `tests/session.rs` checks.

pub mod cancel;
pub mod features;
pub mod frame;
pub mod session;
pub mod template;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

pub use cancel::CancelToken;
pub use features::FeatureCacheStats;
pub use frame::{Frame, FrameError, PixelFormat, YuvEncoding};
pub use session::{AskOptions, Mark, Reply, Session, StopReason, TurnTimings};
pub use template::ImageKind;

use crate::backend::{Placement, PlacementReport};
use crate::image::{ImageError, PreprocessParams, Tiles};
use crate::model::decoder::{KvCache, Logits};
use crate::model::experts::LoadOptions;
use crate::model::ModelError;
use crate::pipeline::{ModelFiles, PipelineError, Vlm};
use crate::repack::RepackMode;
use crate::GgmlType;
use features::{FeatureCache, TileEmbeddings};

self_cell::self_cell!(
    /// The mapped files and the model that borrows them (see the module doc).
    struct Loaded {
        owner: ModelFiles,
        #[covariant]
        dependent: Vlm,
    }
);

/// How to open an engine. [`EngineOptions::new`] gives the defaults for a model path.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// The language-model GGUF.
    pub model: PathBuf,
    /// The vision GGUF; `None`: the `mmproj-*.gguf` beside the model, if there is one.
    pub mmproj: Option<PathBuf>,
    /// Worker threads; 0: the number of physical cores.
    pub threads: usize,
    /// KV cache rows: F16 (default), Q8_0 or F32 (reference-exact).
    pub kv_type: GgmlType,
    /// The repack cache beside the model (see [`crate::repack`]).
    pub repack: RepackMode,
    /// Most bytes of MoE expert weights kept resident; `None`: no bound.
    pub max_expert_memory: Option<u64>,
    /// Tile budget per still image; `None`: the mmproj file's.
    pub max_tiles: Option<u32>,
    /// Bytes of projected tile embeddings kept for reuse (0: no cache). A 2B tile takes 2 MiB.
    pub feature_cache_bytes: usize,
    /// Compute the system prompt's KV once and start every session from a copy.
    pub share_system_prefix: bool,
    /// Most positions per prefill batch (0: the whole prompt at once). Results do not depend on it; it
    /// bounds the activations' memory.
    pub prefill_chunk: usize,
    /// Most positions a session may hold (`None`: the model's context length; larger values are cut to
    /// it). A board with little memory caps its KV cache here.
    pub context_length: Option<usize>,
    /// Where the linear layers run (`--backend`, `--gpu-layers`, `--vision-backend`): the CPU by default.
    pub placement: Placement,
}

impl EngineOptions {
    pub fn new(model: impl Into<PathBuf>) -> EngineOptions {
        EngineOptions {
            model: model.into(),
            mmproj: None,
            threads: 0,
            kv_type: GgmlType::F16,
            repack: RepackMode::Auto,
            max_expert_memory: None,
            max_tiles: None,
            feature_cache_bytes: 64 << 20,
            share_system_prefix: true,
            prefill_chunk: 512,
            context_length: None,
            placement: Placement::cpu(),
        }
    }
}

/// Broad classes of failure, for callers that map them (the C API's status codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A bad argument: empty question, bad frame, stale mark, misplaced placeholder…
    Argument,
    /// A file could not be read.
    Io,
    /// A file's content is not what it should be (model, image).
    Format,
    /// The conversation would not fit in the model's context.
    ContextFull,
    /// The request was cancelled.
    Cancelled,
    /// Anything else (a bug, a failed thread pool).
    Internal,
}

/// What can go wrong opening an engine or running a session.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{}: no such file", path.display())]
    NoSuchFile { path: PathBuf },
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    #[error(transparent)]
    Model(ModelError),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("starting {threads} worker threads: {reason}")]
    Threads { threads: usize, reason: String },
    #[error("images need the vision file: no mmproj-*.gguf next to {model}; pass one (--mmproj)")]
    NoVision { model: String },
    #[error("{0}")]
    Argument(String),
    #[error("the conversation would be {tokens} tokens, the model's context is {context}{hint}")]
    ContextFull { tokens: usize, context: usize, hint: &'static str },
    #[error("this mark does not belong to the session's current conversation (it was rolled back past, reset, or taken on another session)")]
    StaleMark,
    #[error("cancelled")]
    Cancelled,
}

impl From<ModelError> for EngineError {
    fn from(e: ModelError) -> EngineError {
        match e {
            ModelError::Cancelled => EngineError::Cancelled,
            e => EngineError::Model(e),
        }
    }
}

impl EngineError {
    pub fn kind(&self) -> ErrorKind {
        use crate::gguf::GgufError;
        match self {
            EngineError::NoSuchFile { .. } => ErrorKind::Io,
            EngineError::Image(ImageError::Read { .. }) => ErrorKind::Io,
            EngineError::Image(_) => ErrorKind::Format,
            EngineError::Pipeline(PipelineError::Gguf(GgufError::Io { .. })) => ErrorKind::Io,
            EngineError::Pipeline(PipelineError::ContextOverflow { .. }) => ErrorKind::ContextFull,
            EngineError::Pipeline(PipelineError::Image(ImageError::Read { .. })) => ErrorKind::Io,
            EngineError::Pipeline(PipelineError::Prompt(_)) => ErrorKind::Argument,
            EngineError::Pipeline(_) | EngineError::Model(_) => ErrorKind::Format,
            EngineError::Frame(_) | EngineError::Argument(_) | EngineError::StaleMark => ErrorKind::Argument,
            EngineError::NoVision { .. } => ErrorKind::Argument,
            EngineError::ContextFull { .. } => ErrorKind::ContextFull,
            EngineError::Cancelled => ErrorKind::Cancelled,
            EngineError::Threads { .. } => ErrorKind::Internal,
        }
    }
}

/// The KV of a system prompt's head, computed once and copied into new sessions.
pub(crate) struct SharedPrefix {
    pub system: String,
    pub ids: Vec<u32>,
    pub kv: KvCache,
}

/// System heads kept at once (the default one and a few custom ones).
const PREFIXES_KEPT: usize = 4;

/// A loaded model with its threads and shared caches. See the module doc.
pub struct Engine {
    loaded: Loaded,
    pool: rayon::ThreadPool,
    options: EngineOptions,
    threads: usize,
    features: Mutex<FeatureCache>,
    prefixes: Mutex<Vec<Arc<SharedPrefix>>>,
    /// Where the linear layers went.
    placement: PlacementReport,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("options", &self.options).field("threads", &self.threads).finish()
    }
}

impl Engine {
    /// Map the files and load the model (weights stay in the maps), start the worker threads.
    pub fn open(options: EngineOptions) -> Result<Engine, EngineError> {
        if !options.model.exists() {
            return Err(EngineError::NoSuchFile { path: options.model.clone() });
        }
        if let Some(p) = options.mmproj.as_ref().filter(|p| !p.exists()) {
            return Err(EngineError::NoSuchFile { path: p.clone() });
        }
        if options.max_tiles == Some(0) {
            return Err(EngineError::Argument("the tile budget (max tiles) must be at least 1".into()));
        }
        if options.context_length == Some(0) {
            return Err(EngineError::Argument("the context length must be at least 1".into()));
        }
        let files = ModelFiles::open_with(&options.model, options.mmproj.as_deref(), options.repack)?;
        Engine::from_files(files, options)
    }

    /// An engine over files already mapped (`options.model` / `mmproj` / `repack` are then only recorded).
    pub fn from_files(files: ModelFiles, options: EngineOptions) -> Result<Engine, EngineError> {
        let threads = if options.threads == 0 { crate::bench::physical_cores() } else { options.threads };
        // The path every kernel call of this process takes (`-v` shows it; scripts/ci/aarch64-e2e.sh greps it).
        tracing::info!("kernel path: {}", crate::kernels::isa().name());
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("sail-edge-{i}"))
            .build()
            .map_err(|e| EngineError::Threads { threads, reason: e.to_string() })?;
        let load = LoadOptions {
            max_expert_memory: options.max_expert_memory,
            kv_type: options.kv_type,
            ..LoadOptions::default()
        };
        // Loading reads norms and small tensors: do it on the engine's threads too.
        let mut placement = PlacementReport::default();
        let loaded = pool.install(|| {
            Loaded::try_new(files, |files| {
                let mut vlm = Vlm::load_with(files, &load)?;
                if options.placement.wants_device() {
                    placement = vlm.place(&options.placement);
                }
                Ok::<_, PipelineError>(vlm)
            })
        })?;
        let features = Mutex::new(FeatureCache::new(options.feature_cache_bytes));
        Ok(Engine { loaded, pool, options, threads, features, prefixes: Mutex::new(Vec::new()), placement })
    }

    /// Where the linear layers run (what [`EngineOptions::placement`] asked for, as it could be done).
    pub fn placement(&self) -> &PlacementReport {
        &self.placement
    }

    /// The model, borrowed from the engine (for tools that work below sessions: `trace`, benchmarks).
    pub fn vlm(&self) -> &Vlm<'_> {
        self.loaded.borrow_dependent()
    }

    /// The mapped files.
    pub fn files(&self) -> &ModelFiles {
        self.loaded.borrow_owner()
    }

    pub fn options(&self) -> &EngineOptions {
        &self.options
    }

    /// Worker threads.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Run `f` on the engine's threads (rayon work inside it uses them).
    pub fn install<R: Send>(&self, f: impl FnOnce(&Vlm<'_>) -> R + Send) -> R {
        let vlm = self.vlm();
        self.pool.install(|| f(vlm))
    }

    /// Positions a session can hold: the model's context length, or the smaller cap of the options.
    pub fn context_length(&self) -> usize {
        let model = self.vlm().decoder.config.context_length;
        self.options.context_length.map_or(model, |c| c.min(model))
    }

    /// Whether images can be added (a vision file is loaded).
    pub fn has_vision(&self) -> bool {
        self.vlm().vision.is_some()
    }

    /// How images are tiled: the mmproj file's parameters with the engine's tile budget.
    pub fn preprocess_params(&self) -> Result<PreprocessParams, EngineError> {
        let v = self.vlm().vision.as_ref().ok_or_else(|| self.no_vision())?;
        let mut p = v.preprocess.clone();
        if let Some(m) = self.options.max_tiles {
            p.max_tiles = m;
        }
        Ok(p)
    }

    /// The error for vision work on an engine opened without a vision file.
    pub fn no_vision(&self) -> EngineError {
        EngineError::NoVision { model: self.files().lm.path().display().to_string() }
    }

    fn features(&self) -> std::sync::MutexGuard<'_, FeatureCache> {
        // A holder that panicked leaves a valid map behind (at worst a stale byte count), so go on with it.
        self.features.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The feature cache's counters.
    pub fn feature_cache_stats(&self) -> FeatureCacheStats {
        self.features().stats()
    }

    /// Bytes one tile's projected embeddings take in the feature cache (`None` without a vision file).
    pub fn tile_embedding_bytes(&self) -> Option<usize> {
        let vlm = self.vlm();
        let v = vlm.vision.as_ref()?;
        Some(v.tokens_per_tile * vlm.decoder.config.hidden * std::mem::size_of::<f32>())
    }

    /// Change the feature cache's budget (bytes), dropping least recently used tiles beyond it: a loop that
    /// only ever reuses the last few frames keeps just those (0 turns the cache off for new tiles).
    pub fn set_feature_cache_bytes(&self, bytes: usize) {
        self.features().set_budget(bytes);
    }

    /// Projected embeddings (`[tokens_per_tile, hidden]` each) of every tile, from the cache where they are
    /// there; returns them with how many came from the cache. Checks `cancel` between tiles and ViT blocks.
    pub fn encode_tiles(
        &self,
        tiles: &Tiles,
        cancel: &CancelToken,
    ) -> Result<(Vec<TileEmbeddings>, usize), EngineError> {
        self.encode_tiles_with(tiles, cancel, true)
    }

    /// [`Engine::encode_tiles`], with the feature cache consulted and filled only when `reuse` is set (a
    /// session measuring what reuse saves turns it off).
    pub fn encode_tiles_with(
        &self,
        tiles: &Tiles,
        cancel: &CancelToken,
        reuse: bool,
    ) -> Result<(Vec<TileEmbeddings>, usize), EngineError> {
        let vlm = self.vlm();
        let v = vlm.vision.as_ref().ok_or_else(|| self.no_vision())?;
        let grid = v.encoder.config.grid();
        let mut out = Vec::with_capacity(tiles.num_tiles);
        let mut cached = 0;
        for t in 0..tiles.num_tiles {
            if cancel.is_cancelled() {
                return Err(EngineError::Cancelled);
            }
            let pixels = tiles.tile(t);
            let use_cache = reuse && self.options.feature_cache_bytes > 0;
            let key = use_cache.then(|| features::tile_key(pixels));
            if let Some(hit) = key.as_ref().and_then(|k| self.features().get(k)) {
                out.push(hit);
                cached += 1;
                continue;
            }
            let embeddings = self.pool.install(|| -> Result<Vec<f32>, EngineError> {
                let vit = v.encoder.encode_tile_cancellable(pixels, &|| cancel.is_cancelled())?;
                Ok(v.projector.project(&vit, grid, v.encoder.config.width)?)
            })?;
            let embeddings = Arc::new(embeddings);
            if let Some(k) = key {
                self.features().insert(k, embeddings.clone());
            }
            out.push(embeddings);
        }
        Ok((out, cached))
    }

    /// ViT features (`[T, patches, width]`) and projected embeddings (`[T, tokens_per_tile, hidden]`) of
    /// every tile, always computed (for `trace`); the embeddings go into the feature cache, so a session
    /// given the same image afterwards finds them there.
    pub fn encode_tiles_traced(&self, tiles: &Tiles) -> Result<(Vec<f32>, Vec<f32>), EngineError> {
        let vlm = self.vlm();
        let features = self.pool.install(|| vlm.encode_tiles(tiles))?;
        if self.options.feature_cache_bytes > 0 && tiles.num_tiles > 0 {
            let per_tile = features.embeddings.len() / tiles.num_tiles;
            let mut cache = self.features();
            for (t, rows) in features.embeddings.chunks(per_tile).enumerate() {
                cache.insert(features::tile_key(tiles.tile(t)), Arc::new(rows.to_vec()));
            }
        }
        Ok((features.vit, features.embeddings))
    }

    /// The shared KV of `system`'s head and whether it was computed by this call (it is computed on first
    /// use); `None` when sharing is off.
    pub(crate) fn system_prefix(
        &self,
        system: &str,
        cancel: &CancelToken,
    ) -> Result<Option<(Arc<SharedPrefix>, bool)>, EngineError> {
        if !self.options.share_system_prefix {
            return Ok(None);
        }
        {
            let mut kept = self.prefixes.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(i) = kept.iter().position(|p| p.system == system) {
                let p = kept.remove(i);
                kept.push(p.clone());
                return Ok(Some((p, false)));
            }
        }
        // Computed outside the lock: two sessions starting at once may both compute it (same bits).
        let vlm = self.vlm();
        let ids = vlm.tokenizer.encode(&template::system_head(system)).map_err(PipelineError::from)?;
        if ids.len() > self.context_length() {
            return Err(EngineError::ContextFull {
                tokens: ids.len(),
                context: self.context_length(),
                hint: " (the system prompt alone)",
            });
        }
        let mut kv = vlm.decoder.new_cache();
        self.prefill(&ids, &[], &mut kv, cancel)?;
        let prefix = Arc::new(SharedPrefix { system: system.to_string(), ids, kv });
        let mut kept = self.prefixes.lock().unwrap_or_else(|p| p.into_inner());
        if kept.len() >= PREFIXES_KEPT {
            kept.remove(0);
        }
        kept.push(prefix.clone());
        Ok(Some((prefix, true)))
    }

    /// Append `ids` to `kv` in batches of at most [`EngineOptions::prefill_chunk`], with the rows of
    /// `images` (`(position in ids, embeddings)`, one block of `tokens_per_tile` rows each, in order) in
    /// place of their `<IMG_CONTEXT>` embeddings; returns the last position's logits. On cancellation or
    /// failure `kv` is cut back to where it was.
    pub(crate) fn prefill(
        &self,
        ids: &[u32],
        images: &[(usize, TileEmbeddings)],
        kv: &mut KvCache,
        cancel: &CancelToken,
    ) -> Result<Vec<f32>, EngineError> {
        let vlm = self.vlm();
        let start = kv.len();
        if ids.is_empty() {
            return Err(EngineError::Argument("nothing to prefill (an empty batch)".into()));
        }
        let total = start + ids.len();
        if total > self.context_length() {
            let hint = " (fewer images or tiles, or a shorter question)";
            return Err(EngineError::ContextFull { tokens: total, context: self.context_length(), hint });
        }
        let h = vlm.decoder.config.hidden;
        let chunk = if self.options.prefill_chunk == 0 { ids.len() } else { self.options.prefill_chunk };
        let result = self.pool.install(|| -> Result<Vec<f32>, EngineError> {
            let mut logits = Vec::new();
            for c0 in (0..ids.len()).step_by(chunk) {
                if cancel.is_cancelled() {
                    return Err(EngineError::Cancelled);
                }
                let c1 = (c0 + chunk).min(ids.len());
                let mut x = vlm.decoder.embed(&ids[c0..c1])?;
                for (at, rows) in images {
                    let n = rows.len() / h;
                    // The overlap of this image block [at, at + n) with the chunk [c0, c1).
                    let (lo, hi) = ((*at).max(c0), (at + n).min(c1));
                    if lo < hi {
                        x[(lo - c0) * h..(hi - c0) * h].copy_from_slice(&rows[(lo - at) * h..(hi - at) * h]);
                    }
                }
                logits = vlm.decoder.forward_cancellable(x, kv, Logits::Last, &|| cancel.is_cancelled())?;
            }
            Ok(logits)
        });
        if result.is_err() {
            kv.truncate(start);
        }
        result
    }

    /// A new session on this engine.
    pub fn session(self: &Arc<Self>) -> Session {
        Session::new(self.clone())
    }
}
