//! A session: one conversation on an [`Engine`]. It holds its KV cache, sampler, turns and the reason the
//! last answer stopped; images and video frames are added in the domain's terms and questions asked, the
//! answer streamed as an iterator ([`Session::ask`]) or through a callback ([`Session::ask_with`]).
//!
//! The conversation is a list of token ids; the KV cache holds a prefix of it (all of it but, after an
//! answer, the last generated token, which is fed with the next turn). Marks ([`Session::checkpoint`]) are
//! positions in that list, so [`Session::rollback`] is a truncation of the list and of the cache: answer,
//! roll back to the images, ask something else, and only the new question is computed.
//!
//! Every turn is all or nothing: an error or a cancellation puts the session back where it was before the
//! turn (cache, conversation, pending images, sampler), so it stays usable.

use std::ops::DerefMut;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ::image::RgbImage;

use super::features::TileEmbeddings;
use super::template::{self, ImageKind, CARRY, CONTINUE_HEAD, IMAGE_PLACEHOLDER};
use super::{CancelToken, Engine, EngineError, Frame};
use crate::image::{decode_rgb, load_rgb, preprocess, Tiles};
use crate::model::decoder::KvCache;
use crate::model::sampler::{Sampler, SamplerConfig};
use crate::pipeline::PipelineError;
use crate::tokenizer::StreamState;

/// Image blocks put into the conversation and not yet prefilled: (position of the first `<IMG_CONTEXT>`,
/// its tile's embeddings), one per tile.
type ImageBlocks = Vec<(usize, TileEmbeddings)>;

/// Why the last answer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StopReason {
    /// The model ended its turn (the stop token).
    EndOfTurn,
    /// The token budget of the question ran out.
    MaxTokens,
    /// The context is full.
    ContextFull,
    /// A [`CancelToken`] stopped the turn; the session is as it was before it.
    Cancelled,
    /// The caller stopped reading (the callback said stop, or the answer iterator was dropped); the answer
    /// so far stays in the conversation.
    Caller,
}

/// Per-question options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AskOptions {
    /// Most tokens to generate.
    pub max_tokens: usize,
    /// Ask for reasoning in `<think>` tags (the Thinking variants' suffix).
    pub think: bool,
    /// Go on past the stop token (benchmarks, the goldens' fixed-length generations).
    pub ignore_end_of_turn: bool,
}

impl Default for AskOptions {
    fn default() -> AskOptions {
        AskOptions { max_tokens: 512, think: false, ignore_end_of_turn: false }
    }
}

/// Where the time of the last turn went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TurnTimings {
    /// Decoding, converting and tiling the turn's images (in the `add_*` calls).
    pub preprocess: Duration,
    /// ViT and projector over the tiles not found in the feature cache.
    pub encode: Duration,
    /// Tiles of the turn's images, and how many of them came from the feature cache.
    pub tiles: usize,
    pub tiles_cached: usize,
    /// Computing the KV of the turn's new positions.
    pub prefill: Duration,
    /// Positions in the conversation once the question is in (what the answer attends to).
    pub prompt_tokens: usize,
    /// Positions computed for this turn (the rest came from the shared system prefix or earlier turns).
    pub prefilled_tokens: usize,
    /// Generating the answer.
    pub decode: Duration,
    pub generated: usize,
}

/// A finished answer (the callback form's result).
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub text: String,
    pub ids: Vec<u32>,
    pub stop: StopReason,
    pub timings: TurnTimings,
}

/// One question and its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Turn {
    pub question: String,
    pub answer: String,
    pub stop: StopReason,
}

/// An image waiting to be put into the conversation, preprocessed.
#[derive(Debug)]
struct PendingImage {
    tiles: Tiles,
    kind: ImageKind,
}

/// Where the conversation stands between pieces.
#[derive(Debug, Clone)]
enum Phase {
    /// Nothing yet.
    Empty,
    /// Inside a user turn, after its head; `images` were put in (from position `images_at`, where the text
    /// carried was [`CARRY`]).
    User { images: Vec<Arc<PendingImage>>, images_at: usize },
    /// After an answer.
    Answered,
}

/// A position in a session's conversation, from [`Session::checkpoint`].
#[derive(Debug, Clone)]
pub struct Mark {
    session: u64,
    len: usize,
    /// Id of the token at `len - 1`: a conversation cut below the mark and regrown no longer matches.
    uid: u64,
    phase: Phase,
    carry: String,
    pending: Vec<Arc<PendingImage>>,
    turns: usize,
}

impl Mark {
    /// Tokens in the conversation at the mark.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Everything a failed or cancelled turn puts back.
struct Snapshot {
    mark: Mark,
    sampler: Sampler,
    last_stop: Option<StopReason>,
}

static NEXT_SESSION: AtomicU64 = AtomicU64::new(1);

/// One conversation on an engine; see the module doc. Used by one thread at a time (it is `Send`).
pub struct Session {
    engine: Arc<Engine>,
    id: u64,
    kv: KvCache,
    /// The conversation's tokens; `kv` holds `ids[..kv.len()]`.
    ids: Vec<u32>,
    uids: Vec<u64>,
    next_uid: u64,
    phase: Phase,
    /// Text after the last cut, tokenized with the next text (see [`template`]).
    carry: String,
    pending: Vec<Arc<PendingImage>>,
    system: Option<String>,
    max_tiles: Option<u32>,
    /// Start from the engine's shared system prefix (when the engine shares one).
    shared_prefix: bool,
    /// Take tiles' embeddings from the engine's feature cache (and put new ones there).
    reuse_features: bool,
    sampler: Sampler,
    cancel: CancelToken,
    turns: Vec<Turn>,
    last_stop: Option<StopReason>,
    timings: TurnTimings,
    /// Preprocessing time of the images added since the last turn.
    preprocess: Duration,
    /// The cache and conversation before a relabelling cut them below where the running turn started (see
    /// `put_images`), so that a failed or cancelled turn can still be undone; dropped when the turn ends.
    relabel_backup: Option<(KvCache, Vec<u32>, Vec<u64>)>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("tokens", &self.ids.len())
            .field("cached", &self.kv.len())
            .field("pending_images", &self.pending.len())
            .field("turns", &self.turns.len())
            .finish()
    }
}

impl Session {
    /// A new, empty conversation (greedy decoding, the model's system prompt).
    pub fn new(engine: Arc<Engine>) -> Session {
        let kv = engine.vlm().decoder.new_cache();
        Session {
            id: NEXT_SESSION.fetch_add(1, Ordering::Relaxed),
            kv,
            ids: Vec::new(),
            uids: Vec::new(),
            next_uid: 1,
            phase: Phase::Empty,
            carry: String::new(),
            pending: Vec::new(),
            system: None,
            max_tiles: None,
            shared_prefix: true,
            reuse_features: true,
            sampler: Sampler::new(SamplerConfig::default()),
            cancel: CancelToken::new(),
            turns: Vec::new(),
            last_stop: None,
            timings: TurnTimings::default(),
            preprocess: Duration::ZERO,
            relabel_backup: None,
            engine,
        }
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// A handle that stops this session's running turn from any thread (see [`CancelToken`]).
    pub fn cancel_token(&self) -> CancelToken {
        self.cancel.clone()
    }

    /// Sampling for the next answers (the generator restarts from the config's seed).
    pub fn set_sampling(&mut self, config: SamplerConfig) {
        self.sampler = Sampler::new(config);
    }

    /// Replace the system prompt (`None`: the model's). Only before the first turn.
    pub fn set_system(&mut self, system: Option<String>) -> Result<(), EngineError> {
        if !self.ids.is_empty() || !matches!(self.phase, Phase::Empty) {
            return Err(EngineError::Argument(
                "the system prompt can only change before the conversation starts (reset the session first)".into(),
            ));
        }
        self.system = system;
        Ok(())
    }

    /// Whether a new conversation starts from the engine's shared system prefix (default: yes, when the
    /// engine shares one) or prefills its system head itself (the same bits; for measuring the difference).
    pub fn set_shared_prefix(&mut self, on: bool) {
        self.shared_prefix = on;
    }

    /// Whether tiles' embeddings come from the engine's feature cache when they are there (default: yes);
    /// off, every tile is encoded (for measuring what the cache saves).
    pub fn set_feature_reuse(&mut self, on: bool) {
        self.reuse_features = on;
    }

    /// Tile budget for still images added from now on (`None`: the engine's).
    pub fn set_max_tiles(&mut self, max_tiles: Option<u32>) -> Result<(), EngineError> {
        if max_tiles == Some(0) {
            return Err(EngineError::Argument("the tile budget (max tiles) must be at least 1".into()));
        }
        self.max_tiles = max_tiles;
        Ok(())
    }

    /// The conversation's token ids so far (prompt pieces and answers).
    pub fn tokens(&self) -> &[u32] {
        &self.ids
    }

    /// Positions held in the KV cache, and its bytes.
    pub fn cached_tokens(&self) -> usize {
        self.kv.len()
    }

    pub fn kv_bytes(&self) -> usize {
        self.kv.bytes()
    }

    /// Images added and not yet in the conversation.
    pub fn pending_images(&self) -> usize {
        self.pending.len()
    }

    /// Tiles of the pending images.
    pub fn pending_tiles(&self) -> usize {
        self.pending_image_tiles().map(|t| t.num_tiles).sum()
    }

    /// The pending images, preprocessed, in the order they will be put in (for tools that trace them).
    pub fn pending_image_tiles(&self) -> impl Iterator<Item = &Tiles> {
        self.pending.iter().map(|i| &i.tiles)
    }

    /// Questions and answers so far.
    pub fn turns(&self) -> &[Turn] {
        &self.turns
    }

    /// Why the last answer ended (`None` before the first, and after a reset or a failed turn).
    pub fn last_stop(&self) -> Option<StopReason> {
        self.last_stop
    }

    /// Where the time of the last turn went.
    pub fn last_timings(&self) -> TurnTimings {
        self.timings
    }

    /// Add a still image (tiled up to the tile budget, with a thumbnail) to the next question.
    pub fn add_image_path(&mut self, path: impl AsRef<Path>) -> Result<(), EngineError> {
        let path = path.as_ref();
        self.add(ImageKind::Still, || Ok(load_rgb(path)?))
    }

    /// A still image from PNG or JPEG bytes.
    pub fn add_image_bytes(&mut self, bytes: &[u8]) -> Result<(), EngineError> {
        self.add(ImageKind::Still, || Ok(decode_rgb(bytes)?))
    }

    /// A still image from an in-memory frame (camera or phone buffer).
    pub fn add_image_frame(&mut self, frame: &Frame<'_>) -> Result<(), EngineError> {
        self.add(ImageKind::Still, || Ok(frame.to_rgb()?))
    }

    /// A still image already decoded.
    pub fn add_image_rgb(&mut self, image: &RgbImage) -> Result<(), EngineError> {
        self.add(ImageKind::Still, || Ok(image.clone()))
    }

    /// A video frame from a file: one tile of the whole frame, announced as `Frame-i:`.
    pub fn add_video_frame_path(&mut self, path: impl AsRef<Path>) -> Result<(), EngineError> {
        let path = path.as_ref();
        self.add(ImageKind::VideoFrame, || Ok(load_rgb(path)?))
    }

    /// A video frame from PNG or JPEG bytes.
    pub fn add_video_frame_bytes(&mut self, bytes: &[u8]) -> Result<(), EngineError> {
        self.add(ImageKind::VideoFrame, || Ok(decode_rgb(bytes)?))
    }

    /// A video frame from memory (a camera buffer).
    pub fn add_video_frame(&mut self, frame: &Frame<'_>) -> Result<(), EngineError> {
        self.add(ImageKind::VideoFrame, || Ok(frame.to_rgb()?))
    }

    /// A video frame already decoded.
    pub fn add_video_frame_rgb(&mut self, image: &RgbImage) -> Result<(), EngineError> {
        self.add(ImageKind::VideoFrame, || Ok(image.clone()))
    }

    fn add(
        &mut self,
        kind: ImageKind,
        image: impl FnOnce() -> Result<RgbImage, EngineError>,
    ) -> Result<(), EngineError> {
        let mut params = self.engine.preprocess_params()?;
        let turn_kind = match &self.phase {
            Phase::User { images, .. } => images.first().map(|i| i.kind),
            _ => None,
        };
        if let Some(other) = turn_kind.or(self.pending.first().map(|i| i.kind)).filter(|k| *k != kind) {
            return Err(EngineError::Argument(format!(
                "a question takes still images or video frames, not both (this one already has {})",
                if other == ImageKind::Still { "still images" } else { "video frames" }
            )));
        }
        let start = Instant::now();
        let image = image()?;
        if let Some(m) = self.max_tiles {
            params.max_tiles = m;
        }
        if kind == ImageKind::VideoFrame {
            params = params.for_frame();
        }
        let tiles = preprocess(&image, &params)?;
        self.preprocess += start.elapsed();
        self.pending.push(Arc::new(PendingImage { tiles, kind }));
        Ok(())
    }

    /// Put the pending images into the conversation (encoded, prefilled) and return a mark there: a later
    /// [`Session::rollback`] to it drops what came after (questions, answers) and keeps the images.
    pub fn checkpoint(&mut self) -> Result<Mark, EngineError> {
        if !self.pending.is_empty() {
            self.cancel.reset();
            let before = self.snapshot();
            let result = self.timed_turn_start().and_then(|()| {
                let mut blocks = ImageBlocks::new();
                let images = std::mem::take(&mut self.pending);
                self.put_images(images, &mut blocks)?;
                self.prefill_unfed(&blocks).map(|_| ())
            });
            if let Err(e) = result {
                self.restore(before);
                return Err(e);
            }
            self.relabel_backup = None;
        }
        Ok(self.mark())
    }

    /// Go back to `mark`: the conversation, cache, pending images and turns are as they were there.
    pub fn rollback(&mut self, mark: &Mark) -> Result<(), EngineError> {
        let valid = mark.session == self.id
            && mark.len <= self.ids.len()
            && (mark.len == 0 || self.uids[mark.len - 1] == mark.uid);
        if !valid {
            return Err(EngineError::StaleMark);
        }
        self.ids.truncate(mark.len);
        self.uids.truncate(mark.len);
        self.kv.truncate(mark.len);
        self.phase = mark.phase.clone();
        self.carry = mark.carry.clone();
        self.pending = mark.pending.clone();
        self.turns.truncate(mark.turns);
        Ok(())
    }

    /// Start over: an empty conversation (the system prompt and the sampler stay: its generator goes on
    /// rather than restarting, so a seeded run does not repeat itself after a reset; `set_sampling` reseeds).
    pub fn reset(&mut self) {
        self.relabel_backup = None;
        self.ids.clear();
        self.uids.clear();
        self.kv.clear();
        self.phase = Phase::Empty;
        self.carry.clear();
        self.pending.clear();
        self.turns.clear();
        self.last_stop = None;
        self.timings = TurnTimings::default();
        self.preprocess = Duration::ZERO;
    }

    /// Ask `question` about the images added so far (and the conversation before): the prompt is computed
    /// here, the answer comes from the returned iterator, one piece of text at a time. `<image>` in the
    /// question places the pending images itself (one placeholder each).
    pub fn ask(&mut self, question: &str, options: &AskOptions) -> Result<Answer<&mut Session>, EngineError> {
        Answer::begin(self, question, options).map_err(|(e, _)| e)
    }

    /// [`Session::ask`] with the pieces handed to `on_piece` (return `false` to stop reading); returns the
    /// whole answer.
    pub fn ask_with(
        &mut self,
        question: &str,
        options: &AskOptions,
        mut on_piece: impl FnMut(&str) -> bool,
    ) -> Result<Reply, EngineError> {
        let mut answer = self.ask(question, options)?;
        let mut reading = true;
        while let Some(piece) = answer.next() {
            let piece = piece?;
            if reading && !on_piece(&piece) {
                reading = false;
                answer.stop_reading();
            } else if !reading {
                // The held-back end of the text, after the caller stopped: still theirs.
                on_piece(&piece);
            }
        }
        let (text, ids) = (std::mem::take(&mut answer.text), std::mem::take(&mut answer.generated));
        let stop = answer.stop.unwrap_or(StopReason::Caller);
        drop(answer);
        Ok(Reply { text, ids, stop, timings: self.timings })
    }

    fn mark(&self) -> Mark {
        Mark {
            session: self.id,
            len: self.ids.len(),
            uid: self.uids.last().copied().unwrap_or(0),
            phase: self.phase.clone(),
            carry: self.carry.clone(),
            pending: self.pending.clone(),
            turns: self.turns.len(),
        }
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot { mark: self.mark(), sampler: self.sampler.clone(), last_stop: self.last_stop }
    }

    fn restore(&mut self, s: Snapshot) {
        if let Some((kv, ids, uids)) = self.relabel_backup.take() {
            (self.kv, self.ids, self.uids) = (kv, ids, uids);
        }
        // A turn only appends to the conversation (a relabelling's cut was undone above), so the snapshot's
        // mark is a prefix of it and the rollback holds.
        let rolled_back = self.rollback(&s.mark);
        debug_assert!(rolled_back.is_ok(), "a turn's snapshot is always a prefix");
        self.sampler = s.sampler;
        self.last_stop = s.last_stop;
    }

    fn push_ids(&mut self, ids: &[u32]) {
        for &id in ids {
            self.ids.push(id);
            self.uids.push(self.next_uid);
            self.next_uid += 1;
        }
    }

    fn push_text(&mut self, text: &str) -> Result<(), EngineError> {
        if text.is_empty() {
            return Ok(());
        }
        let ids = self.engine.vlm().tokenizer.encode(text).map_err(PipelineError::from)?;
        self.push_ids(&ids);
        Ok(())
    }

    /// Reset the turn's timings and open a user turn if none is open.
    fn timed_turn_start(&mut self) -> Result<(), EngineError> {
        self.timings = TurnTimings { preprocess: self.preprocess, ..TurnTimings::default() };
        self.preprocess = Duration::ZERO;
        self.open_user_turn()
    }

    /// Make sure the conversation is inside a user turn (after its head).
    fn open_user_turn(&mut self) -> Result<(), EngineError> {
        match self.phase {
            Phase::User { .. } => return Ok(()),
            Phase::Empty => {
                let system = self.system.clone().unwrap_or_else(|| self.engine.vlm().system_prompt.clone());
                let t = Instant::now();
                let shared = if self.shared_prefix { self.engine.system_prefix(&system, &self.cancel)? } else { None };
                match shared {
                    Some((prefix, computed)) if self.ids.is_empty() => {
                        self.kv = prefix.kv.clone();
                        self.push_ids(&prefix.ids);
                        self.timings.prefill += t.elapsed();
                        if computed {
                            self.timings.prefilled_tokens += prefix.ids.len();
                        }
                    }
                    _ => self.push_text(&template::system_head(&system))?,
                }
            }
            Phase::Answered => {
                let carry = std::mem::take(&mut self.carry);
                self.push_text(&(carry + CONTINUE_HEAD))?;
            }
        }
        self.carry = CARRY.to_string();
        self.phase = Phase::User { images: Vec::new(), images_at: self.ids.len() };
        Ok(())
    }

    /// Append image blocks for `new` images after those of the turn, labelled as the reference labels them
    /// for the turn's total; when a lone still image (unlabelled) gains company, the turn's images are put in
    /// again with labels. Each block's embeddings go to `blocks` for the prefill.
    fn put_images(&mut self, new: Vec<Arc<PendingImage>>, blocks: &mut ImageBlocks) -> Result<(), EngineError> {
        let Phase::User { images, images_at } = &self.phase else { unreachable!("a user turn is open") };
        let (mut images, images_at) = (images.clone(), *images_at);
        let relabel = images.len() == 1 && images[0].kind == ImageKind::Still && !new.is_empty();
        let todo: Vec<Arc<PendingImage>> = if relabel {
            if self.relabel_backup.is_none() {
                self.relabel_backup = Some((self.kv.clone(), self.ids.clone(), self.uids.clone()));
            }
            self.ids.truncate(images_at);
            self.uids.truncate(images_at);
            self.kv.truncate(images_at);
            blocks.retain(|(at, _)| *at < images_at);
            self.carry = CARRY.to_string();
            let all: Vec<_> = images.drain(..).chain(new).collect();
            all
        } else {
            new
        };
        let count = images.len() + todo.len();
        for image in todo {
            let index = images.len() + 1;
            let label = template::image_label(image.kind, index, count);
            let carry = std::mem::take(&mut self.carry);
            self.push_text(&(carry + &label))?;
            self.put_image_block(&image, blocks)?;
            self.carry = CARRY.to_string();
            images.push(image);
        }
        self.phase = Phase::User { images, images_at };
        Ok(())
    }

    /// `<img>`, the image's `<IMG_CONTEXT>` positions (embeddings from the feature cache or the encoder),
    /// `</img>`.
    fn put_image_block(&mut self, image: &PendingImage, blocks: &mut ImageBlocks) -> Result<(), EngineError> {
        let engine = self.engine.clone();
        let v = engine.vlm().vision.as_ref().ok_or_else(|| engine.no_vision())?;
        let t = Instant::now();
        let (tiles, cached) = engine.encode_tiles_with(&image.tiles, &self.cancel, self.reuse_features)?;
        self.timings.encode += t.elapsed();
        self.timings.tiles += tiles.len();
        self.timings.tiles_cached += cached;
        self.push_ids(&[v.image_start_id]);
        for rows in tiles {
            blocks.push((self.ids.len(), rows));
            self.push_ids(&vec![v.image_context_id; v.tokens_per_tile]);
        }
        self.push_ids(&[v.image_end_id]);
        Ok(())
    }

    /// Compute the KV of every position not in the cache yet; the last one's logits.
    fn prefill_unfed(&mut self, blocks: &[(usize, TileEmbeddings)]) -> Result<Vec<f32>, EngineError> {
        let from = self.kv.len();
        let rel: ImageBlocks = blocks.iter().map(|(at, r)| (at - from, r.clone())).collect();
        let t = Instant::now();
        let ids = self.ids[from..].to_vec();
        let logits = self.engine.prefill(&ids, &rel, &mut self.kv, &self.cancel)?;
        self.timings.prefill += t.elapsed();
        self.timings.prefilled_tokens += ids.len();
        Ok(logits)
    }

    /// The turn up to the answer: images, question, prefill. Returns the logits of the first answer token.
    fn prepare(&mut self, question: &str, options: &AskOptions) -> Result<Vec<f32>, EngineError> {
        if question.trim().is_empty() {
            return Err(EngineError::Argument("the question is empty".into()));
        }
        let placeholders = question.matches(IMAGE_PLACEHOLDER).count();
        self.timed_turn_start()?;
        let mut blocks = ImageBlocks::new();
        let pending = std::mem::take(&mut self.pending);
        let think = if options.think { Some(self.engine.vlm().think_suffix.clone()) } else { None };
        if placeholders == 0 {
            self.put_images(pending, &mut blocks)?;
            let carry = std::mem::take(&mut self.carry);
            self.push_text(&(carry + &template::question_tail(question, think.as_deref())))?;
        } else {
            let in_turn = matches!(&self.phase, Phase::User { images, .. } if !images.is_empty());
            if in_turn || placeholders != pending.len() {
                return Err(EngineError::Argument(format!(
                    "the question has {placeholders} <image> placeholders for {} images{}",
                    pending.len(),
                    if in_turn { " (and images already put in by a checkpoint)" } else { "" }
                )));
            }
            let pieces: Vec<&str> = question.split(IMAGE_PLACEHOLDER).collect();
            for (piece, image) in pieces.iter().zip(&pending) {
                let carry = std::mem::take(&mut self.carry);
                self.push_text(&(carry + piece))?;
                self.put_image_block(image, &mut blocks)?;
            }
            let last = pieces.last().expect("split yields at least one piece");
            self.push_text(&template::question_tail(last, think.as_deref()))?;
            if let Phase::User { images, .. } = &mut self.phase {
                images.extend(pending);
            }
        }
        self.timings.prompt_tokens = self.ids.len();
        self.prefill_unfed(&blocks)
    }
}

/// [`Answer`] holds its session until [`Answer::into_session`], which consumes it.
const HELD: &str = "an answer holds its session until into_session consumes it";

/// An answer being generated: an iterator over pieces of text (each a complete UTF-8 string). Dropping it
/// early ends the answer there ([`StopReason::Caller`]).
///
/// `S` is how the answer holds its session: `&mut Session` from [`Session::ask`], or an owning handle
/// (`Box<Session>`) from [`Answer::begin`] for callers that keep the answer across calls (the C API);
/// [`Answer::into_session`] gives it back.
pub struct Answer<S: DerefMut<Target = Session>> {
    /// Always `Some` until [`Answer::into_session`] takes it.
    session: Option<S>,
    /// The session before the turn, for a cancellation or a failure.
    before: Option<Snapshot>,
    question: String,
    prompt_len: usize,
    logits: Vec<f32>,
    stream: StreamState,
    max_tokens: usize,
    ignore_stop: bool,
    generated: Vec<u32>,
    text: String,
    stop: Option<StopReason>,
    /// The held-back end of the text, handed out once the answer has stopped.
    tail: Option<String>,
    decode: Duration,
}

impl<S: DerefMut<Target = Session>> Answer<S> {
    /// Start answering `question` on `session` (see [`Session::ask`]); a failure hands the session back,
    /// as it was before.
    pub fn begin(mut session: S, question: &str, options: &AskOptions) -> Result<Answer<S>, (EngineError, S)> {
        let s = &mut *session;
        s.cancel.reset();
        let before = s.snapshot();
        match s.prepare(question, options) {
            Ok(logits) => Ok(Answer {
                prompt_len: s.ids.len(),
                session: Some(session),
                before: Some(before),
                question: question.to_string(),
                logits,
                stream: StreamState::new(true),
                max_tokens: options.max_tokens,
                ignore_stop: options.ignore_end_of_turn,
                generated: Vec::new(),
                text: String::new(),
                stop: None,
                tail: None,
                decode: Duration::ZERO,
            }),
            Err(EngineError::Cancelled) => {
                s.restore(before);
                s.last_stop = Some(StopReason::Cancelled);
                Ok(Answer::cancelled(session, question))
            }
            Err(e) => {
                s.restore(before);
                Err((e, session))
            }
        }
    }

    fn cancelled(session: S, question: &str) -> Answer<S> {
        let prompt_len = session.ids.len();
        Answer {
            session: Some(session),
            before: None,
            question: question.to_string(),
            prompt_len,
            logits: Vec::new(),
            stream: StreamState::new(true),
            max_tokens: 0,
            ignore_stop: false,
            generated: Vec::new(),
            text: String::new(),
            stop: Some(StopReason::Cancelled),
            tail: None,
            decode: Duration::ZERO,
        }
    }

    /// The session (read-only while the answer runs).
    pub fn session(&self) -> &Session {
        self.session.as_deref().expect(HELD)
    }

    fn session_mut(&mut self) -> &mut Session {
        self.session.as_deref_mut().expect(HELD)
    }

    /// End the answer where it is (as dropping it would) and give the session back.
    pub fn into_session(mut self) -> S {
        if self.stop.is_none() {
            self.finish(StopReason::Caller);
        }
        self.session.take().expect(HELD)
    }

    /// The conversation's ids up to the answer (the prompt the answer attends to).
    pub fn prompt(&self) -> &[u32] {
        let ids = &self.session().ids;
        &ids[..self.prompt_len.min(ids.len())]
    }

    /// The logits the next token will be drawn from (before the sampler touches them).
    pub fn logits(&self) -> &[f32] {
        &self.logits
    }

    /// Why the answer ended, once it has.
    pub fn stop_reason(&self) -> Option<StopReason> {
        self.stop
    }

    /// The ids generated so far.
    pub fn ids(&self) -> &[u32] {
        &self.generated
    }

    /// The text generated so far.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// End the answer here, keeping what was generated ([`StopReason::Caller`]).
    pub fn stop_reading(&mut self) {
        if self.stop.is_none() {
            self.finish(StopReason::Caller);
        }
    }

    fn finish(&mut self, reason: StopReason) {
        self.stop = Some(reason);
        let tail = std::mem::take(&mut self.stream).finish();
        let s = self.session.as_deref_mut().expect(HELD);
        s.timings.decode = self.decode;
        s.timings.generated = self.generated.len();
        if reason == StopReason::Cancelled {
            if let Some(before) = self.before.take() {
                s.restore(before);
            }
            s.last_stop = Some(reason);
            return;
        }
        if !tail.is_empty() {
            self.text.push_str(&tail);
            self.tail = Some(tail);
        }
        s.relabel_backup = None;
        s.phase = Phase::Answered;
        s.carry.clear();
        s.turns.push(Turn { question: std::mem::take(&mut self.question), answer: self.text.clone(), stop: reason });
        s.last_stop = Some(reason);
        self.before = None;
    }

    /// One generation step: `Ok(Some(piece))` (possibly empty) or `Ok(None)` at the end.
    fn step(&mut self) -> Result<Option<String>, EngineError> {
        if self.generated.len() >= self.max_tokens {
            self.finish(StopReason::MaxTokens);
            return Ok(None);
        }
        if self.session().cancel.is_cancelled() {
            self.finish(StopReason::Cancelled);
            return Ok(None);
        }
        let t = Instant::now();
        let engine = self.session().engine.clone();
        let vlm = engine.vlm();
        let s = self.session.as_deref_mut().expect(HELD);
        let id = s.sampler.sample(&mut self.logits, &s.ids);
        if Some(id) == vlm.stop_id && !self.ignore_stop {
            self.decode += t.elapsed();
            self.finish(StopReason::EndOfTurn);
            return Ok(None);
        }
        let piece = self.stream.push(&vlm.tokenizer, id).map_err(PipelineError::from)?;
        s.push_ids(&[id]);
        self.generated.push(id);
        self.text.push_str(&piece);
        if self.generated.len() < self.max_tokens {
            if s.kv.len() + 1 > engine.context_length() {
                self.decode += t.elapsed();
                self.finish(StopReason::ContextFull);
                return Ok(Some(piece));
            }
            let unfed = s.ids[s.kv.len()..].to_vec();
            match engine.prefill(&unfed, &[], &mut s.kv, &s.cancel) {
                Ok(logits) => self.logits = logits,
                Err(EngineError::Cancelled) => {
                    self.finish(StopReason::Cancelled);
                    return Ok(None);
                }
                Err(e) => return Err(e),
            }
        }
        self.decode += t.elapsed();
        Ok(Some(piece))
    }
}

impl<S: DerefMut<Target = Session>> Iterator for Answer<S> {
    type Item = Result<String, EngineError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.stop.is_some() {
                return self.tail.take().map(Ok);
            }
            match self.step() {
                Ok(Some(piece)) if !piece.is_empty() => return Some(Ok(piece)),
                Ok(_) => continue,
                Err(e) => {
                    // A failed step: the session goes back to before the turn; the answer is over.
                    if let Some(before) = self.before.take() {
                        self.session_mut().restore(before);
                    }
                    self.stop = Some(StopReason::Caller);
                    self.tail = None;
                    return Some(Err(e));
                }
            }
        }
    }
}

impl<S: DerefMut<Target = Session>> Drop for Answer<S> {
    fn drop(&mut self) {
        if self.stop.is_none() && self.session.is_some() {
            self.finish(StopReason::Caller);
        }
    }
}
