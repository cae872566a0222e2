//! Image(s) + question → text, as the reference `chat()` does it: the `univl-chat` prompt, `<image>`
//! placeholders expanded to `<img>` + 256·T `<IMG_CONTEXT>` + `</img>`, image embeddings replacing the
//! `<IMG_CONTEXT>` rows, then greedy or sampled decoding with streaming output.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::backend::{self, BackendChoice, Linear, Part, Placement, PlacementReport};
use crate::gguf::names;
use crate::gguf::{GgufError, GgufFile, Value};
use crate::image::{ImageError, PreprocessParams, Tiles};
use crate::model::decoder::{Decoder, KvCache, Logits};
pub use crate::model::experts::{ExpertStats, LoadOptions};
use crate::model::projector::Projector;
use crate::model::sampler::Sampler;
use crate::model::vision::VisionEncoder;
use crate::model::{Meta, ModelError};
use crate::repack::{RepackError, RepackMode};
use crate::tensor::Matrix;
use crate::tokenizer::{Tokenizer, TokenizerError};

/// The default `univl-chat` system message (spec §5.2), used when the mmproj file carries none.
pub const DEFAULT_SYSTEM_PROMPT: &str =
    "你是由抖音内容理解组开发的多模态大模型，英文名叫UniVL, 是一个有用无害的人工智能助手。";
/// The Thinking variants' chain-of-thought suffix (spec §5.4).
pub const DEFAULT_THINK_SUFFIX: &str = "You FIRST think about the reasoning process as an internal monologue and \
then provide the final answer. The reasoning process MUST BE enclosed within <think> </think> tags. The final \
answer MUST BE put in \\boxed{}.";

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Repack(#[from] RepackError),
    #[error("{0}")]
    Mmproj(String),
    #[error("the prompt is {tokens} tokens, the model's context is {context}{hint}")]
    ContextOverflow { tokens: usize, context: usize, hint: String },
    #[error("{0}")]
    Prompt(String),
}

/// The files of a model, mapped: the language model, the vision file, and the language model's repack
/// cache when one is used (see [`crate::repack`]).
pub struct ModelFiles {
    pub lm: GgufFile,
    pub mmproj: Option<GgufFile>,
    pub repack: Option<GgufFile>,
}

impl ModelFiles {
    /// Map the language model and, if given or found next to it as `mmproj-*.gguf`, the vision file; a
    /// matching repack cache beside the model is used.
    pub fn open(model: &Path, mmproj: Option<&Path>) -> Result<ModelFiles, PipelineError> {
        ModelFiles::open_with(model, mmproj, RepackMode::Auto)
    }

    /// [`ModelFiles::open`] with a choice about the repack cache (`Build` writes it when missing or stale).
    pub fn open_with(model: &Path, mmproj: Option<&Path>, repack: RepackMode) -> Result<ModelFiles, PipelineError> {
        let lm = GgufFile::open(model)?;
        let mmproj_path = match mmproj {
            Some(p) => Some(p.to_path_buf()),
            None => find_mmproj(model)?,
        };
        let mmproj = mmproj_path.map(GgufFile::open).transpose()?;
        let repack = crate::repack::open_cache(&lm, repack)?;
        Ok(ModelFiles { lm, mmproj, repack })
    }

    /// The language model alone (no vision file), with a choice about the repack cache.
    pub fn open_lm(model: &Path, repack: RepackMode) -> Result<ModelFiles, PipelineError> {
        let lm = GgufFile::open(model)?;
        let repack = crate::repack::open_cache(&lm, repack)?;
        Ok(ModelFiles { lm, mmproj: None, repack })
    }
}

/// `mmproj-*.gguf` beside the model; with several, the one whose name contains the model's stem.
pub fn find_mmproj(model: &Path) -> Result<Option<PathBuf>, PipelineError> {
    let dir = match model.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let Ok(entries) = std::fs::read_dir(dir) else { return Ok(None) };
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            name.starts_with("mmproj-") && name.ends_with(".gguf")
        })
        .collect();
    found.sort();
    if found.len() <= 1 {
        return Ok(found.pop());
    }
    let stem = model.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let base = stem.rsplit_once('-').map(|(b, _)| b.to_string()).unwrap_or(stem.clone());
    let matching: Vec<&PathBuf> = found.iter().filter(|p| p.to_string_lossy().contains(&base)).collect();
    match matching.as_slice() {
        [one] => Ok(Some((*one).clone())),
        _ => Err(PipelineError::Mmproj(format!(
            "several mmproj files next to {}: {}; choose one with --mmproj",
            model.display(),
            found.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// Vision side of the model: encoder, projector and how images are prepared and announced in the prompt.
pub struct Vision<'a> {
    pub encoder: VisionEncoder<'a>,
    pub projector: Projector<'a>,
    pub preprocess: PreprocessParams,
    pub image_context_id: u32,
    pub image_start_id: u32,
    pub image_end_id: u32,
    /// Tokens per tile after the merge (256).
    pub tokens_per_tile: usize,
}

/// A loaded vision-language model.
pub struct Vlm<'a> {
    pub decoder: Decoder<'a>,
    pub tokenizer: Tokenizer,
    pub vision: Option<Vision<'a>>,
    pub system_prompt: String,
    pub think_suffix: String,
    pub stop_id: Option<u32>,
}

impl<'a> Vlm<'a> {
    pub fn load(files: &'a ModelFiles) -> Result<Vlm<'a>, PipelineError> {
        Vlm::load_with(files, &LoadOptions::default())
    }

    /// Load with options: the expert memory budget and prefetch of MoE models (see [`LoadOptions`]).
    pub fn load_with(files: &'a ModelFiles, options: &LoadOptions) -> Result<Vlm<'a>, PipelineError> {
        let decoder = Decoder::load_repacked(&files.lm, files.repack.as_ref(), options)?;
        let tokenizer = Tokenizer::from_gguf(&files.lm)?;
        let mut system_prompt = DEFAULT_SYSTEM_PROMPT.to_string();
        let mut think_suffix = DEFAULT_THINK_SUFFIX.to_string();
        let mut stop_id = tokenizer.eos_id();
        let vision = match &files.mmproj {
            None => None,
            Some(mm) => {
                let path = mm.path().display().to_string();
                if mm.header().architecture() != Some(names::arch::CLIP)
                    || mm.get(names::clip::PROJECTOR_TYPE).and_then(Value::as_str)
                        != Some(names::arch::SAILVL2_PROJECTOR)
                {
                    return Err(PipelineError::Mmproj(format!(
                        "{path} is not a SAIL-VL2 mmproj file (general.architecture must be 'clip' and \
                         clip.projector_type 'sailvl2')"
                    )));
                }
                let encoder = VisionEncoder::load(mm)?;
                let projector = Projector::load(mm, encoder.config.width)?;
                if projector.out_dim != decoder.config.hidden {
                    return Err(PipelineError::Mmproj(format!(
                        "{path} projects images to width {} but the language model {} is {} wide: \
                         the two files are from different models",
                        projector.out_dim,
                        files.lm.path().display(),
                        decoder.config.hidden
                    )));
                }
                let m = Meta { file: mm };
                let id = |key: &str, token: &str| -> Result<u32, PipelineError> {
                    m.u32_opt(key)?.or_else(|| tokenizer.token_to_id(token)).ok_or_else(|| {
                        PipelineError::Mmproj(format!("{path}: no '{key}' and the vocabulary has no {token}"))
                    })
                };
                let image_context_id = id(names::sailvl2::IMAGE_CONTEXT_TOKEN_ID, "<IMG_CONTEXT>")?;
                if tokenizer.id_to_token(image_context_id) != Some("<IMG_CONTEXT>") {
                    return Err(PipelineError::Mmproj(format!(
                        "{path}: image token id {image_context_id} is not <IMG_CONTEXT> in the language model's \
                         vocabulary: the two files are from different models"
                    )));
                }
                let defaults = PreprocessParams::default();
                let preprocess = PreprocessParams {
                    image_size: encoder.config.image_size as u32,
                    mean: m.f32x3_or(names::clip::IMAGE_MEAN, defaults.mean)?,
                    std: m.f32x3_or(names::clip::IMAGE_STD, defaults.std)?,
                    min_tiles: m.u32_or(names::clip::PREPROC_MIN_TILES, defaults.min_tiles)?,
                    max_tiles: m.u32_or(names::clip::PREPROC_MAX_TILES, defaults.max_tiles)?,
                    use_thumbnail: m.bool_or(names::sailvl2::USE_THUMBNAIL, true)?,
                };
                if let Some(s) = m.str_opt(names::sailvl2::SYSTEM_PROMPT)? {
                    system_prompt = s.to_string();
                }
                if let Some(s) = m.str_opt(names::sailvl2::THINK_SUFFIX)? {
                    think_suffix = s.to_string();
                }
                if let Some(s) = m.u32_opt(names::sailvl2::STOP_TOKEN_ID)? {
                    stop_id = Some(s);
                }
                let grid = encoder.config.grid() / projector.scale;
                Some(Vision {
                    image_context_id,
                    image_start_id: id(names::sailvl2::IMAGE_START_TOKEN_ID, "<img>")?,
                    image_end_id: id(names::sailvl2::IMAGE_END_TOKEN_ID, "</img>")?,
                    tokens_per_tile: grid * grid,
                    encoder,
                    projector,
                    preprocess,
                })
            }
        };
        Ok(Vlm { decoder, tokenizer, vision, system_prompt, think_suffix, stop_id })
    }

    /// Put the linear layers where `placement` says (see [`crate::backend`]): the decoder layers it names,
    /// the output head, the vision tower and projector, each on the device or the CPU. Never fails: whatever
    /// cannot go to a device stays on the CPU, and the report's notes say why (also logged as warnings).
    pub fn place(&mut self, placement: &Placement) -> PlacementReport {
        let layers = self.decoder.config.layers;
        let (on_device, head) = backend::device_layers(placement.gpu_layers, layers);
        let lm = placement.backend;
        let vision_choice = placement.vision.unwrap_or(lm);
        let layer_weights = self.decoder.layer_weights();
        let mut decoder_matrices: Vec<&Matrix<'a>> = Vec::new();
        for (i, ws) in layer_weights.iter().enumerate() {
            if on_device.contains(&i) {
                decoder_matrices.extend(ws.iter().copied());
            }
        }
        let mut head_matrices = Vec::new();
        if head {
            head_matrices.push(self.decoder.output_weight());
        }
        let mut vision_matrices = Vec::new();
        if let Some(v) = &self.vision {
            vision_matrices.extend(v.encoder.weights());
            vision_matrices.extend(v.projector.weights());
        }
        // An empty part asks for nothing: no device is opened for it.
        let choose = |matrices: &[&Matrix<'a>], choice| if matrices.is_empty() { BackendChoice::Cpu } else { choice };
        let parts = [
            Part { choice: choose(&decoder_matrices, lm), matrices: decoder_matrices },
            Part { choice: choose(&head_matrices, lm), matrices: head_matrices },
            Part { choice: choose(&vision_matrices, vision_choice), matrices: vision_matrices },
        ];
        let mut notes = Vec::new();
        let placed = backend::place_parts(placement, &parts, &mut notes);
        for note in &notes {
            tracing::warn!("{note}");
        }
        let [decoder_linear, head_linear, vision_linear]: [Linear; 3] =
            placed.linears.try_into().expect("one linear per part");
        // The layers and the head share the decoder's Linear: it holds whichever of them went up.
        let decoder_linear = if decoder_linear.on_device() { decoder_linear } else { head_linear };
        // Layers whose every linear weight went up (a type without a shader keeps a layer partly on the CPU).
        let layers_on_device = layer_weights.iter().filter(|ws| ws.iter().all(|w| decoder_linear.holds(w))).count();
        let output_on_device = head && decoder_linear.holds(self.decoder.output_weight());
        if let Some(note) = self.decoder.set_linear(decoder_linear) {
            tracing::info!("{note}");
            notes.push(note);
        }
        let decoder_whole = self.decoder.whole_on_device().is_some();
        let mut vision_whole = false;
        if let Some(v) = &mut self.vision {
            if let Some(note) = v.encoder.set_linear(vision_linear.clone()) {
                tracing::info!("{note}");
                notes.push(note);
            }
            if let Some(note) = v.projector.set_linear(vision_linear) {
                tracing::info!("{note}");
                notes.push(note);
            }
            vision_whole = v.encoder.whole_on_device() && v.projector.whole_on_device();
        }
        let report = PlacementReport {
            device: placed.device,
            decoder_layers_on_device: layers_on_device,
            decoder_layers: layers,
            output_on_device,
            vision_on_device: self.vision.is_some() && placed.complete[2],
            vision_one_submission: vision_whole,
            decoder_one_submission: decoder_whole,
            device_weight_bytes: placed.bytes,
            notes,
        };
        tracing::info!("placement: {}", report.summary());
        report
    }

    /// Expert residency counters of a MoE language model (`None` for a dense one).
    pub fn expert_stats(&self) -> Option<ExpertStats> {
        self.decoder.expert_stats()
    }

    fn vision(&self) -> Result<&Vision<'a>, PipelineError> {
        self.vision.as_ref().ok_or_else(|| {
            PipelineError::Mmproj(
                "images need the vision file: no mmproj-*.gguf next to the model; pass --mmproj".to_string(),
            )
        })
    }

    /// ViT features `[T, tokens, width]` and projected embeddings `[T, tokens_per_tile, hidden]` of tiles.
    pub fn encode_tiles(&self, tiles: &Tiles) -> Result<ImageFeatures, PipelineError> {
        let v = self.vision()?;
        let grid = v.encoder.config.grid();
        let mut vit = Vec::new();
        let mut embeddings = Vec::new();
        let mut per_tile = Vec::new();
        for t in 0..tiles.num_tiles {
            let start = Instant::now();
            let features = v.encoder.encode_tile(tiles.tile(t))?;
            embeddings.extend(v.projector.project(&features, grid, v.encoder.config.width)?);
            vit.extend(features);
            per_tile.push(start.elapsed());
        }
        Ok(ImageFeatures { vit, embeddings, per_tile })
    }

    /// The `univl-chat` prompt text (before `<image>` expansion), as the reference builds it: `<image>\n` is
    /// prepended when there are images and the question has no placeholder.
    pub fn prompt_text(&self, question: &str, n_images: usize, system: Option<&str>, think: bool) -> String {
        let mut q = question.to_string();
        if n_images > 0 && !q.contains("<image>") {
            q = format!("<image>\n{q}");
        }
        if think {
            q.push_str(&self.think_suffix);
        }
        let system = system.unwrap_or(&self.system_prompt);
        format!("<|im_start|>system\n{system}<|im_end|><|im_start|>user\n{q}<|im_end|><|im_start|>assistant\n")
    }

    /// Token ids of a prompt, each `<image>` expanded for the tile count of the matching image.
    pub fn prompt_ids(&self, prompt: &str, tiles_per_image: &[usize]) -> Result<Vec<u32>, PipelineError> {
        let pieces: Vec<&str> = prompt.split("<image>").collect();
        if pieces.len() - 1 != tiles_per_image.len() {
            return Err(PipelineError::Prompt(format!(
                "the prompt has {} <image> placeholders for {} images",
                pieces.len() - 1,
                tiles_per_image.len()
            )));
        }
        let mut ids = Vec::new();
        for (i, piece) in pieces.iter().enumerate() {
            ids.extend(self.tokenizer.encode(piece)?);
            if let Some(&t) = tiles_per_image.get(i) {
                let v = self.vision()?;
                ids.push(v.image_start_id);
                ids.extend(std::iter::repeat_n(v.image_context_id, v.tokens_per_tile * t));
                ids.push(v.image_end_id);
            }
        }
        Ok(ids)
    }

    /// Input embeddings of `ids` with the `<IMG_CONTEXT>` rows replaced, in order, by `image_embeddings`.
    pub fn input_embeddings(&self, ids: &[u32], image_embeddings: &[f32]) -> Result<Vec<f32>, PipelineError> {
        let h = self.decoder.config.hidden;
        let mut x = self.decoder.embed(ids)?;
        let ctx = self.vision.as_ref().map(|v| v.image_context_id);
        let slots: Vec<usize> = ids.iter().enumerate().filter(|(_, &id)| Some(id) == ctx).map(|(i, _)| i).collect();
        if slots.len() * h != image_embeddings.len() {
            return Err(PipelineError::Prompt(format!(
                "{} <IMG_CONTEXT> tokens for {} image embeddings",
                slots.len(),
                image_embeddings.len() / h
            )));
        }
        for (k, &i) in slots.iter().enumerate() {
            x[i * h..(i + 1) * h].copy_from_slice(&image_embeddings[k * h..(k + 1) * h]);
        }
        Ok(x)
    }

    fn check_context(&self, tokens: usize) -> Result<(), PipelineError> {
        let context = self.decoder.config.context_length;
        if tokens > context {
            return Err(PipelineError::ContextOverflow {
                tokens,
                context,
                hint: " (fewer images, fewer tiles with --max-tiles, or a shorter question)".into(),
            });
        }
        Ok(())
    }

    /// Run the prompt; returns the logits (`Last` or `All` positions) and the filled cache.
    pub fn prefill(
        &self,
        ids: &[u32],
        image_embeddings: &[f32],
        logits: Logits,
    ) -> Result<(Vec<f32>, KvCache), PipelineError> {
        let mut cache = self.decoder.new_cache();
        let out = self.extend(ids, image_embeddings, &mut cache, logits)?;
        Ok((out, cache))
    }

    /// Append `ids` (with their images) to a conversation already in `cache` (chat turns).
    pub fn extend(
        &self,
        ids: &[u32],
        image_embeddings: &[f32],
        cache: &mut KvCache,
        logits: Logits,
    ) -> Result<Vec<f32>, PipelineError> {
        self.check_context(cache.len() + ids.len())?;
        if ids.is_empty() {
            return Err(PipelineError::Prompt("empty prompt".into()));
        }
        let x = self.input_embeddings(ids, image_embeddings)?;
        Ok(self.decoder.forward(x, cache, logits)?)
    }

    /// Generate up to `max_tokens` after a prefilled prompt, calling `on_text` with each complete piece of
    /// text (return `false` to stop). Stops at the stop token (not emitted) or the context end.
    pub fn generate(
        &self,
        prompt_ids: &[u32],
        mut last_logits: Vec<f32>,
        cache: &mut KvCache,
        sampler: &mut Sampler,
        max_tokens: usize,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Generation, PipelineError> {
        let start = Instant::now();
        let mut history = prompt_ids.to_vec();
        let mut ids = Vec::new();
        let mut stream = self.tokenizer.stream(true);
        let mut stopped_by = StopReason::Budget;
        for _ in 0..max_tokens {
            let id = sampler.sample(&mut last_logits, &history);
            if Some(id) == self.stop_id {
                stopped_by = StopReason::EndOfText;
                break;
            }
            ids.push(id);
            history.push(id);
            let piece = stream.push(id)?;
            if !piece.is_empty() && !on_text(&piece) {
                stopped_by = StopReason::Caller;
                break;
            }
            if cache.len() + 1 > self.decoder.config.context_length {
                stopped_by = StopReason::Context;
                break;
            }
            let x = self.decoder.embed(&[id])?;
            last_logits = self.decoder.forward(x, cache, Logits::Last)?;
        }
        let rest = stream.finish();
        if !rest.is_empty() {
            on_text(&rest);
        }
        Ok(Generation { ids, stopped_by, elapsed: start.elapsed() })
    }
}

/// Image features of a batch of tiles.
pub struct ImageFeatures {
    pub vit: Vec<f32>,
    pub embeddings: Vec<f32>,
    pub per_tile: Vec<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    EndOfText,
    Budget,
    Context,
    Caller,
}

#[derive(Debug, Clone)]
pub struct Generation {
    pub ids: Vec<u32>,
    pub stopped_by: StopReason,
    pub elapsed: Duration,
}
