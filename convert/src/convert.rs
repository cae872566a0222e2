//! `sail-edge convert`: a SAIL-VL2 checkpoint folder → language-model GGUF + mmproj GGUF.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use quantize::recipe::{lm_tensor_type, vision_tensor_type};
use quantize::{Mix, ModelShape, Part, PlannedTensor};
use runtime::gguf::{GgufWriter, PendingFile, TensorSpec, Value};
use runtime::GgmlType;

use crate::hf::checkpoint::Checkpoint;
use crate::hf::config::SailVlConfig;
use crate::hf::preprocess::PreprocessConfig;
use crate::hf::tokenizer;
use crate::mapping::{self, MappedTensor, EMBED_TOKENS, LM_HEAD};
use crate::metadata::{self, MmprojMeta};
use crate::source::CheckpointSource;
use crate::ConvertError;

#[derive(Debug, Clone)]
pub struct ConvertOptions {
    pub mix: Mix,
    /// Type of the vision linear weights; default: the mix's float type, or Q8_0 under quantized mixes.
    pub vision_type: Option<GgmlType>,
    pub lm_out: PathBuf,
    pub mmproj_out: PathBuf,
    /// `general.name`; default: the checkpoint folder name.
    pub name: Option<String>,
    pub cancel: Option<Arc<AtomicBool>>,
}

impl ConvertOptions {
    /// Default output names for a checkpoint folder: `<name>-<mix>.gguf` and `mmproj-<name>-<vision>.gguf`
    /// in `out_dir` (the runtime finds `mmproj-*.gguf` next to the model).
    pub fn defaults(checkpoint: &Path, out_dir: &Path, mix: Mix, vision_type: Option<GgmlType>) -> ConvertOptions {
        let name = folder_name(checkpoint);
        let vision = vision_type.unwrap_or(mix.default_vision_type());
        ConvertOptions {
            mix,
            vision_type,
            lm_out: out_dir.join(format!("{name}-{mix}.gguf")),
            mmproj_out: out_dir.join(format!("mmproj-{name}-{}.gguf", vision.name().to_ascii_lowercase())),
            name: None,
            cancel: None,
        }
    }
}

fn folder_name(dir: &Path) -> String {
    dir.canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "model".into())
}

/// What one written file holds.
#[derive(Debug, Clone)]
pub struct FileSummary {
    pub path: PathBuf,
    pub tensors: usize,
    pub elements: u64,
    pub tensor_bytes: u64,
    pub file_bytes: u64,
    pub types: BTreeMap<GgmlType, usize>,
}

impl std::fmt::Display for FileSummary {
    /// `path — N tensors, X G weights, size (bits/weight) [type: count, ...]`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let types: Vec<String> = self.types.iter().map(|(t, n)| format!("{t}: {n}")).collect();
        write!(
            f,
            "{} — {} tensors, {:.3} G weights, {:.2} GiB ({:.2} bits/weight) [{}]",
            self.path.display(),
            self.tensors,
            self.elements as f64 / 1e9,
            self.file_bytes as f64 / (1u64 << 30) as f64,
            self.bits_per_weight(),
            types.join(", ")
        )
    }
}

impl FileSummary {
    pub fn bits_per_weight(&self) -> f64 {
        if self.elements == 0 {
            0.0
        } else {
            self.tensor_bytes as f64 * 8.0 / self.elements as f64
        }
    }
}

#[derive(Debug, Clone)]
pub struct ConvertSummary {
    pub lm: FileSummary,
    pub mmproj: FileSummary,
    /// Whether `lm_head` was found bit-identical to `embed_tokens` (or absent) and so not written.
    pub tied_output: bool,
    pub elapsed: Duration,
}

/// Everything decided before a byte is written: configs, plans, metadata.
pub struct ConversionPlan {
    pub config: SailVlConfig,
    pub lm_metadata: Vec<(String, Value)>,
    pub lm_tensors: Vec<PlannedTensor>,
    pub mmproj_metadata: Vec<(String, Value)>,
    pub mmproj_tensors: Vec<PlannedTensor>,
    pub tied_output: bool,
}

/// What a conversion needs besides tensor bytes: the configs and the tokenizer, read from a folder.
pub struct ModelDescription {
    pub config: SailVlConfig,
    pub preprocess: PreprocessConfig,
    pub tokenizer: tokenizer::TokenizerMetadata,
    /// `general.name`.
    pub name: String,
}

impl ModelDescription {
    /// Read `config.json`, `preprocessor_config.json` and the tokenizer files of a checkpoint folder.
    pub fn load(dir: &Path, name: Option<String>) -> Result<ModelDescription, ConvertError> {
        let config = SailVlConfig::from_file(&dir.join("config.json"))?;
        let preprocess = PreprocessConfig::load(dir, &config)?;
        let tokenizer = tokenizer::TokenizerMetadata::load(dir, &config)?;
        Ok(ModelDescription { config, preprocess, tokenizer, name: name.unwrap_or_else(|| folder_name(dir)) })
    }
}

/// Looks up the shape a source holds for a tensor name.
pub type ShapeLookup<'a> = &'a dyn Fn(&str) -> Option<Vec<usize>>;

/// Read and check the checkpoint folder and decide every output tensor and key.
pub fn plan(dir: &Path, ckpt: &Checkpoint, opts: &ConvertOptions) -> Result<ConversionPlan, ConvertError> {
    let desc = ModelDescription::load(dir, opts.name.clone())?;
    let config = &desc.config;
    let tied_output = match ckpt.get(LM_HEAD) {
        None if config.llm.tie_word_embeddings => true,
        None => return Err(ConvertError::MissingTensor { tensor: LM_HEAD.into(), dir: dir.to_path_buf() }),
        Some(_) => {
            let same = same_bytes(ckpt, LM_HEAD, EMBED_TOKENS)?;
            if !same {
                tracing::warn!(
                    "{LM_HEAD} differs from {EMBED_TOKENS}; keeping a separate output tensor (tie_word_embeddings={})",
                    config.llm.tie_word_embeddings
                );
            }
            same
        }
    };

    // Every checkpoint tensor must be used: a tensor we do not know means a model we do not understand.
    let mut used: HashSet<String> = HashSet::new();
    for t in mapping::lm_tensors(config).iter().chain(&mapping::vision_tensors(config)) {
        used.extend(t.sources.iter().cloned());
    }
    used.insert(LM_HEAD.to_string());
    if let Some((unknown, _)) = ckpt.tensors().find(|(n, _)| !used.contains(*n)) {
        return Err(ConvertError::UnexpectedTensor { tensor: unknown.to_string(), dir: dir.to_path_buf() });
    }

    let lookup = |name: &str| ckpt.get(name).map(|m| m.shape.clone());
    build_plan(&desc, opts, tied_output, Some(&lookup), dir)
}

/// Decide every output tensor and key for a described model. `shape_of` gives the shape the source holds
/// for a tensor name (checked against config.json); `None` trusts the config (synthetic sources).
pub fn build_plan(
    desc: &ModelDescription,
    opts: &ConvertOptions,
    tied_output: bool,
    shape_of: Option<ShapeLookup>,
    dir: &Path,
) -> Result<ConversionPlan, ConvertError> {
    let config = &desc.config;
    let tok = &desc.tokenizer;
    let mut lm = mapping::lm_tensors(config);
    if !tied_output {
        lm.push(mapping::lm_output(config));
    }
    let vision = mapping::vision_tensors(config);
    let shape = ModelShape {
        n_layers: config.llm.num_hidden_layers,
        has_output: !tied_output,
        n_experts: config.llm.moe.as_ref().map_or(0, |m| m.num_experts),
    };
    let lm_tensors = lm
        .iter()
        .map(|t| {
            let dims = t.gguf_dims();
            let ty = lm_tensor_type(opts.mix, &t.gguf_name, &dims, &shape, GgmlType::F32);
            planned(dir, shape_of, t, ty)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let vision_type = opts.vision_type.unwrap_or(opts.mix.default_vision_type());
    let mmproj_tensors = vision
        .iter()
        .map(|t| {
            let dims = t.gguf_dims();
            let ty = vision_tensor_type(vision_type, &t.gguf_name, &dims, GgmlType::F32);
            planned(dir, shape_of, t, ty)
        })
        .collect::<Result<Vec<_>, _>>()?;

    let mut lm_metadata = metadata::lm_metadata(config, &desc.name, opts.mix.file_type_id());
    lm_metadata.extend(tok.entries.iter().cloned());

    let system_prompt = tok
        .chat_template
        .as_deref()
        .and_then(metadata::system_prompt_from_template)
        .unwrap_or_else(|| metadata::UNIVL_SYSTEM_PROMPT.to_string());
    let vision_file_type = Mix::for_uniform_type(vision_type).map_or(opts.mix.file_type_id(), Mix::file_type_id);
    let mmproj_metadata = MmprojMeta {
        cfg: config,
        pre: &desc.preprocess,
        name: &desc.name,
        file_type: vision_file_type,
        quantized: mmproj_tensors.iter().any(|t| t.spec.ty.is_quantized()),
        system_prompt: &system_prompt,
        image_context_id: tok.image_context_id,
        image_start_id: tok.image_start_id,
        image_end_id: tok.image_end_id,
        eos_id: tok.eos_id,
    }
    .to_metadata();

    Ok(ConversionPlan { config: config.clone(), lm_metadata, lm_tensors, mmproj_metadata, mmproj_tensors, tied_output })
}

/// Check a mapped tensor's sources and turn it into a write plan.
fn planned(
    dir: &Path,
    shape_of: Option<ShapeLookup>,
    t: &MappedTensor,
    ty: GgmlType,
) -> Result<PlannedTensor, ConvertError> {
    let part_shape: &[usize] = if t.sources.len() > 1 { &t.hf_shape[1..] } else { &t.hf_shape };
    let row_len = *part_shape.last().unwrap_or(&1);
    let part_rows = (part_shape.iter().product::<usize>() / row_len.max(1)) as u64;
    let mut parts = Vec::with_capacity(t.sources.len());
    for s in &t.sources {
        if let Some(shape_of) = shape_of {
            let found =
                shape_of(s).ok_or_else(|| ConvertError::MissingTensor { tensor: s.clone(), dir: dir.to_path_buf() })?;
            if found != part_shape {
                return Err(ConvertError::ShapeMismatch { tensor: s.clone(), expected: part_shape.to_vec(), found });
            }
        }
        parts.push(Part { source: s.clone(), n_rows: part_rows });
    }
    Ok(PlannedTensor { spec: TensorSpec::new(t.gguf_name.clone(), t.gguf_dims(), ty), parts })
}

/// Compare two tensors byte for byte, in chunks, releasing pages as we go (2 × 622 MB for the 2B).
fn same_bytes(ckpt: &Checkpoint, a: &str, b: &str) -> Result<bool, ConvertError> {
    let (da, ba) = ckpt.raw(a)?;
    let (db, bb) = ckpt.raw(b)?;
    if da != db || ba.len() != bb.len() || ckpt.get(a).map(|m| &m.shape) != ckpt.get(b).map(|m| &m.shape) {
        return Ok(false);
    }
    const CHUNK: usize = 16 << 20;
    let mut start = 0;
    while start < ba.len() {
        let end = (start + CHUNK).min(ba.len());
        let equal = ba[start..end] == bb[start..end];
        ckpt.release(a, start, end - start);
        ckpt.release(b, start, end - start);
        if !equal {
            return Ok(false);
        }
        start = end;
    }
    Ok(true)
}

/// Summarize a written file from its plan.
pub fn file_summary(path: &Path, tensors: &[PlannedTensor], file_bytes: u64) -> FileSummary {
    let mut types = BTreeMap::new();
    for t in tensors {
        *types.entry(t.spec.ty).or_insert(0) += 1;
    }
    FileSummary {
        path: path.to_path_buf(),
        tensors: tensors.len(),
        elements: tensors.iter().map(|t| t.spec.n_elements()).sum(),
        tensor_bytes: tensors.iter().map(|t| t.spec.size().unwrap_or(0)).sum(),
        file_bytes,
        types,
    }
}

/// Convert a checkpoint folder. Both files are written under temporary names and renamed into place only
/// when both are complete.
pub fn convert(dir: &Path, opts: &ConvertOptions, progress: &ProgressBar) -> Result<ConvertSummary, ConvertError> {
    let start = Instant::now();
    let ckpt = Checkpoint::open(dir)?;
    let plan = plan(dir, &ckpt, opts)?;
    let total: u64 = plan.lm_tensors.iter().chain(&plan.mmproj_tensors).map(|t| t.spec.n_elements()).sum();
    progress.set_length(total);
    let source = CheckpointSource(&ckpt);

    let write =
        |path: &Path, meta: &[(String, Value)], tensors: &[PlannedTensor]| -> Result<PendingFile, ConvertError> {
            let mut w = GgufWriter::create(path, meta, tensors.iter().map(|t| t.spec.clone()).collect())
                .map_err(quantize::Error::from)?;
            if let Some(c) = &opts.cancel {
                w = w.with_cancel_flag(c.clone());
            }
            quantize::write_tensors(&mut w, tensors, &source, progress)?;
            Ok(w.finish_pending().map_err(quantize::Error::from)?)
        };
    let lm = write(&opts.lm_out, &plan.lm_metadata, &plan.lm_tensors)?;
    let mmproj = write(&opts.mmproj_out, &plan.mmproj_metadata, &plan.mmproj_tensors)?;
    let (lm_bytes, mmproj_bytes) = (lm.bytes, mmproj.bytes);
    lm.persist().map_err(quantize::Error::from)?;
    mmproj.persist().map_err(quantize::Error::from)?;
    Ok(ConvertSummary {
        lm: file_summary(&opts.lm_out, &plan.lm_tensors, lm_bytes),
        mmproj: file_summary(&opts.mmproj_out, &plan.mmproj_tensors, mmproj_bytes),
        tied_output: plan.tied_output,
        elapsed: start.elapsed(),
    })
}
