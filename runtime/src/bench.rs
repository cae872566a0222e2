//! Throughput measurements with llama-bench's semantics, for `sail-edge bench` and anyone embedding the
//! runtime: prompt processing (`pp`: one forward pass over `p` random token ids into an empty cache, logits
//! of the last position only), text generation (`tg`: `n` single-token passes from an empty cache, each fed
//! a random id, logits every step, no sampling), and for vision models the image encode time of one tile
//! and the time to first token of one synthetic tile plus a short question, built like a real request.
//!
//! Every repetition starts from a cleared cache; results keep every sample. Nothing here is global: the
//! functions take the loaded [`Decoder`] or [`Vlm`] and run on the caller's rayon pool.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value as Json};

use crate::gguf::names;
use crate::gguf::{GgufFile, Value};
use crate::image::{preprocess, RgbImage};
use crate::model::decoder::{Decoder, KvCache, Logits};
use crate::model::ModelError;
use crate::pipeline::{PipelineError, Vlm};

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    #[error(transparent)]
    Engine(#[from] crate::engine::EngineError),
}

/// One test's result: every sample, their mean and sample standard deviation.
#[derive(Debug, Clone, PartialEq)]
pub struct TestResult {
    /// `pp512`, `tg128`, `image_encode`, `ttft`.
    pub name: String,
    /// `t/s` or `ms`.
    pub unit: String,
    pub samples: Vec<f64>,
    pub mean: f64,
    pub sd: f64,
    /// Test-specific facts (`n_tokens`, `prompt_tokens`, `tiles`, `tile_size`), for the JSON report.
    pub info: BTreeMap<String, u64>,
}

impl TestResult {
    pub fn new(name: impl Into<String>, unit: impl Into<String>, samples: Vec<f64>) -> TestResult {
        let (mean, sd) = mean_sd(&samples);
        TestResult { name: name.into(), unit: unit.into(), samples, mean, sd, info: BTreeMap::new() }
    }

    fn with(mut self, key: &str, value: u64) -> TestResult {
        self.info.insert(key.to_string(), value);
        self
    }

    /// `mean ± sd` with `decimals` digits, as llama-bench prints it.
    pub fn display(&self, decimals: usize) -> String {
        format!("{:.*} ± {:.*}", decimals, self.mean, decimals, self.sd)
    }

    pub fn to_json(&self) -> Json {
        let mut o = json!({
            "name": self.name,
            "unit": self.unit,
            "mean": self.mean,
            "sd": self.sd,
            "samples": self.samples,
        });
        for (k, v) in &self.info {
            o[k] = json!(v);
        }
        o
    }
}

/// Mean and sample standard deviation (n − 1 in the denominator, as llama-bench; 0 for fewer than 2
/// samples; NaN mean for none).
pub fn mean_sd(samples: &[f64]) -> (f64, f64) {
    let n = samples.len();
    if n == 0 {
        return (f64::NAN, 0.0);
    }
    let mean = samples.iter().sum::<f64>() / n as f64;
    if n < 2 {
        return (mean, 0.0);
    }
    let var = samples.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1) as f64;
    (mean, var.sqrt())
}

/// What to measure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BenchConfig {
    /// Prompt tokens of the `pp` test (0 skips it).
    pub n_prompt: usize,
    /// Generated tokens of the `tg` test (0 skips it).
    pub n_gen: usize,
    /// Repetitions of each test (at least 1).
    pub repetitions: usize,
    /// Seed of the random token ids.
    pub seed: u64,
    /// One untimed run of each test first.
    pub warmup: bool,
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig { n_prompt: 512, n_gen: 128, repetitions: 5, seed: 1234, warmup: true }
    }
}

impl BenchConfig {
    /// Refuse settings that cannot run on `decoder`, naming the flag.
    pub fn validate(&self, decoder: &Decoder<'_>) -> Result<(), BenchError> {
        if self.repetitions == 0 {
            return Err(BenchError::Config("-r/--repetitions must be at least 1".into()));
        }
        let ctx = decoder.config.context_length;
        if self.n_prompt + self.n_gen > ctx {
            return Err(BenchError::Config(format!(
                "-p {} + -n {} = {} tokens exceed the model's context length {ctx}",
                self.n_prompt,
                self.n_gen,
                self.n_prompt + self.n_gen
            )));
        }
        if decoder.config.vocab == 0 {
            return Err(BenchError::Config("the model has an empty vocabulary".into()));
        }
        Ok(())
    }
}

/// Progress callback: (test name, repetitions done, repetitions in all).
pub type Progress<'p> = &'p mut dyn FnMut(&str, usize, usize);

fn random_ids(rng: &mut SmallRng, n: usize, vocab: usize) -> Vec<u32> {
    (0..n).map(|_| rng.gen_range(0..vocab as u32)).collect()
}

/// One `pp` run: `ids` in one forward pass into `cache` (cleared first), last-position logits.
fn prompt_pass(decoder: &Decoder<'_>, ids: &[u32], cache: &mut KvCache) -> Result<(), BenchError> {
    cache.clear();
    let x = decoder.embed(ids)?;
    std::hint::black_box(decoder.forward(x, cache, Logits::Last)?);
    Ok(())
}

/// One `tg` run: `ids.len()` single-token passes from a cleared cache.
fn gen_passes(decoder: &Decoder<'_>, ids: &[u32], cache: &mut KvCache) -> Result<(), BenchError> {
    cache.clear();
    for &id in ids {
        let x = decoder.embed(&[id])?;
        std::hint::black_box(decoder.forward(x, cache, Logits::Last)?);
    }
    Ok(())
}

/// The warm-up llama-bench does: one `pp` run (when `n_prompt > 0`) and a 1-token `tg` (when `n_gen > 0`).
pub fn warmup(decoder: &Decoder<'_>, config: &BenchConfig) -> Result<(), BenchError> {
    let mut rng = SmallRng::seed_from_u64(config.seed ^ 0x5741_524d);
    let vocab = decoder.config.vocab;
    let mut cache = decoder.new_cache();
    if config.n_prompt > 0 {
        prompt_pass(decoder, &random_ids(&mut rng, config.n_prompt, vocab), &mut cache)?;
    }
    if config.n_gen > 0 {
        gen_passes(decoder, &random_ids(&mut rng, 1, vocab), &mut cache)?;
    }
    Ok(())
}

/// `pp<n_prompt>`: prompt tokens per second of each repetition.
pub fn bench_prompt(decoder: &Decoder<'_>, config: &BenchConfig, progress: Progress) -> Result<TestResult, BenchError> {
    config.validate(decoder)?;
    let name = format!("pp{}", config.n_prompt);
    let mut rng = SmallRng::seed_from_u64(config.seed);
    let mut cache = decoder.new_cache();
    let mut samples = Vec::with_capacity(config.repetitions);
    for r in 0..config.repetitions {
        progress(&name, r, config.repetitions);
        let ids = random_ids(&mut rng, config.n_prompt, decoder.config.vocab);
        let t = Instant::now();
        prompt_pass(decoder, &ids, &mut cache)?;
        samples.push(config.n_prompt as f64 / t.elapsed().as_secs_f64().max(1e-12));
    }
    progress(&name, config.repetitions, config.repetitions);
    Ok(TestResult::new(name, "t/s", samples).with("n_tokens", config.n_prompt as u64))
}

/// `tg<n_gen>`: generated tokens per second of each repetition.
pub fn bench_generation(
    decoder: &Decoder<'_>,
    config: &BenchConfig,
    progress: Progress,
) -> Result<TestResult, BenchError> {
    config.validate(decoder)?;
    let name = format!("tg{}", config.n_gen);
    let mut rng = SmallRng::seed_from_u64(config.seed.wrapping_add(1));
    let mut cache = decoder.new_cache();
    let mut samples = Vec::with_capacity(config.repetitions);
    for r in 0..config.repetitions {
        progress(&name, r, config.repetitions);
        let ids = random_ids(&mut rng, config.n_gen, decoder.config.vocab);
        let t = Instant::now();
        gen_passes(decoder, &ids, &mut cache)?;
        samples.push(config.n_gen as f64 / t.elapsed().as_secs_f64().max(1e-12));
    }
    progress(&name, config.repetitions, config.repetitions);
    Ok(TestResult::new(name, "t/s", samples).with("n_tokens", config.n_gen as u64))
}

/// Tokens in the vision test's question.
pub const QUESTION_TOKENS: usize = 20;

const QUESTION_WORDS: &str = "What is shown in this picture? Describe the main objects, their colors, their \
shapes and where each of them is placed in the scene, then say what the scene is about, in one short answer.";

/// A question of `tokens` tokens (or the closest above) from a fixed English sentence, and its token count.
pub fn question_of_tokens(vlm: &Vlm<'_>, tokens: usize) -> Result<(String, usize), BenchError> {
    let mut q = String::new();
    let mut count = 0;
    for word in QUESTION_WORDS.split(' ') {
        if count >= tokens {
            break;
        }
        if !q.is_empty() {
            q.push(' ');
        }
        q.push_str(word);
        count = vlm.tokenizer.encode(&q).map_err(PipelineError::from)?.len();
    }
    Ok((q, count))
}

/// A deterministic `side`×`side` RGB test image (gradients and a checker pattern, so resizing has work to do).
pub fn synthetic_image(side: u32) -> RgbImage {
    RgbImage::from_fn(side, side, |x, y| {
        let s = side.max(2) - 1;
        let check = if ((x / 16) + (y / 16)) % 2 == 0 { 40 } else { 215 };
        ::image::Rgb([(x * 255 / s) as u8, (y * 255 / s) as u8, check])
    })
}

/// The vision tests' results.
#[derive(Debug, Clone)]
pub struct ImageBench {
    /// Encode time per tile (ms): ViT + projector.
    pub encode: TestResult,
    /// Time to first token (ms): preprocessing, encoding, prompt ids, prefill and the first greedy token.
    pub ttft: TestResult,
}

/// Image encode time per tile and time to first token for one synthetic tile-sized image (one tile) with a
/// [`QUESTION_TOKENS`]-token question, through the real preprocessing, prompt and prefill.
pub fn bench_image(vlm: &Vlm<'_>, config: &BenchConfig, progress: Progress) -> Result<ImageBench, BenchError> {
    if config.repetitions == 0 {
        return Err(BenchError::Config("-r/--repetitions must be at least 1".into()));
    }
    let vision = vlm.vision.as_ref().ok_or_else(|| {
        BenchError::Config(
            "the image tests need the vision file: pass --mmproj (or put mmproj-*.gguf next to the model)".into(),
        )
    })?;
    let side = vision.preprocess.image_size;
    let image = synthetic_image(side);
    let (question, question_tokens) = question_of_tokens(vlm, QUESTION_TOKENS)?;
    let params = vision.preprocess.clone();
    let run = || -> Result<(f64, f64, usize, usize), BenchError> {
        let start = Instant::now();
        let tiles = preprocess(&image, &params).map_err(PipelineError::from)?;
        let features = vlm.encode_tiles(&tiles)?;
        let prompt = vlm.prompt_text(&question, 1, None, false);
        let ids = vlm.prompt_ids(&prompt, &[tiles.num_tiles])?;
        let (logits, _cache) = vlm.prefill(&ids, &features.embeddings, Logits::Last)?;
        let first = argmax(&logits);
        let ttft = start.elapsed().as_secs_f64() * 1e3;
        std::hint::black_box(first);
        let encode: f64 = features.per_tile.iter().map(|d| d.as_secs_f64() * 1e3).sum();
        Ok((encode / tiles.num_tiles.max(1) as f64, ttft, tiles.num_tiles, ids.len()))
    };
    if config.warmup {
        progress("image warm-up", 0, 1);
        run()?;
    }
    let (mut encode, mut ttft) = (Vec::new(), Vec::new());
    let (mut tiles, mut prompt_tokens) = (0, 0);
    for r in 0..config.repetitions {
        progress("image", r, config.repetitions);
        let (e, t, n, p) = run()?;
        encode.push(e);
        ttft.push(t);
        (tiles, prompt_tokens) = (n, p);
    }
    progress("image", config.repetitions, config.repetitions);
    let encode =
        TestResult::new("image_encode", "ms", encode).with("tile_size", side as u64).with("tiles", tiles as u64);
    let ttft = TestResult::new("ttft", "ms", ttft)
        .with("tiles", tiles as u64)
        .with("question_tokens", question_tokens as u64)
        .with("prompt_tokens", prompt_tokens as u64);
    Ok(ImageBench { encode, ttft })
}

fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

/// A GGUF file as the report describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSummary {
    pub path: String,
    pub file_size: u64,
    /// Weights (elements) of all tensors.
    pub params: u64,
    pub arch: String,
    /// `general.file_type` as llama.cpp names it (`Q4_K - Medium`), or the most common matrix type.
    pub type_label: String,
    /// Per tensor type: (tensors, bytes).
    pub type_mix: BTreeMap<String, (usize, u64)>,
    /// Weight bytes one generated token reads: every tensor except `token_embd` (one row), unless it is also
    /// the output matrix (tied), and for MoE experts only the routed `expert_used_count / expert_count`.
    pub bytes_per_token: u64,
}

/// llama.cpp's name for a `general.file_type` (`llama_model_ftype_name`).
pub fn file_type_name(id: u64) -> Option<&'static str> {
    Some(match id {
        0 => "all F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K - Medium",
        11 => "Q3_K - Small",
        12 => "Q3_K - Medium",
        13 => "Q3_K - Large",
        14 => "Q4_K - Small",
        15 => "Q4_K - Medium",
        16 => "Q5_K - Small",
        17 => "Q5_K - Medium",
        18 => "Q6_K",
        32 => "BF16",
        _ => return None,
    })
}

impl ModelSummary {
    pub fn of(file: &GgufFile) -> ModelSummary {
        let h = file.header();
        let arch = h.architecture().unwrap_or("unknown").to_string();
        let mut type_mix: BTreeMap<String, (usize, u64)> = BTreeMap::new();
        let mut params = 0;
        for t in &h.tensors {
            let e = type_mix.entry(t.ty.name().to_string()).or_default();
            e.0 += 1;
            e.1 += t.size;
            params += t.n_elements();
        }
        let type_label = file
            .get(names::general::FILE_TYPE)
            .and_then(Value::as_u64)
            .and_then(file_type_name)
            .map(str::to_string)
            .or_else(|| {
                let most = h.tensors.iter().filter(|t| t.dims.len() >= 2).fold(BTreeMap::new(), |mut m, t| {
                    *m.entry(t.ty.name()).or_insert(0u64) += t.size;
                    m
                });
                most.into_iter().max_by_key(|(_, b)| *b).map(|(n, _)| n.to_string())
            })
            .unwrap_or_default();
        let tied = h.tensor(names::tensor::OUTPUT).is_none();
        let used = file.get(&format!("{arch}.expert_used_count")).and_then(Value::as_u64);
        let total = file.get(&format!("{arch}.expert_count")).and_then(Value::as_u64);
        let bytes_per_token = h
            .tensors
            .iter()
            .map(|t| {
                if t.name == names::tensor::TOKEN_EMBD && !tied {
                    t.size / t.n_rows().max(1)
                } else if t.name.contains("_exps.") {
                    match (used, total) {
                        (Some(u), Some(n)) if n > 0 => t.size * u.min(n) / n,
                        _ => t.size,
                    }
                } else {
                    t.size
                }
            })
            .sum();
        ModelSummary {
            path: file.path().display().to_string(),
            file_size: file.file_size(),
            params,
            arch,
            type_label,
            type_mix,
            bytes_per_token,
        }
    }

    /// `qwen3 Q4_K - Medium`, as llama-bench's model column.
    pub fn label(&self) -> String {
        format!("{} {}", self.arch, self.type_label).trim().to_string()
    }

    pub fn to_json(&self) -> Json {
        let mix: serde_json::Map<String, Json> =
            self.type_mix.iter().map(|(k, (n, b))| (k.clone(), json!({ "tensors": n, "bytes": b }))).collect();
        json!({
            "path": self.path,
            "file_size": self.file_size,
            "params": self.params,
            "arch": self.arch,
            "type": self.type_label,
            "type_mix": mix,
            "weight_bytes_per_token": self.bytes_per_token,
        })
    }
}

/// Everything one `bench` run measured, with the context needed to compare it.
#[derive(Debug, Clone)]
pub struct BenchReport {
    pub model: ModelSummary,
    pub mmproj: Option<ModelSummary>,
    pub threads: usize,
    /// The kernel path in use (`kernels::isa()`).
    pub isa: String,
    /// The repack cache the decoder reads its Q4_0 weights from, if any (see [`crate::repack`]).
    pub repack: Option<String>,
    /// Where the linear layers ran (`--backend`).
    pub placement: crate::backend::PlacementReport,
    pub config: BenchConfig,
    pub tests: Vec<TestResult>,
}

impl BenchReport {
    pub fn to_json(&self) -> Json {
        json!({
            "model": self.model.to_json(),
            // A vision file's weights are not read per generated token.
            "mmproj": self.mmproj.as_ref().map(|m| {
                let mut j = m.to_json();
                if let Some(o) = j.as_object_mut() {
                    o.remove("weight_bytes_per_token");
                }
                j
            }),
            "threads": self.threads,
            "isa": self.isa,
            "repack": self.repack,
            "backend": if self.placement.device.is_some() { "vulkan" } else { "cpu" },
            "placement": self.placement,
            "n_prompt": self.config.n_prompt,
            "n_gen": self.config.n_gen,
            "repetitions": self.config.repetitions,
            "seed": self.config.seed,
            "warmup": self.config.warmup,
            "tests": self.tests.iter().map(TestResult::to_json).collect::<Vec<_>>(),
        })
    }
}

/// Physical cores: the distinct (core_id, physical_package_id) pairs under
/// `/sys/devices/system/cpu/cpu*/topology`, at most the CPUs this process may use; falls back to
/// `available_parallelism` where the topology cannot be read.
pub fn physical_cores() -> usize {
    let available = std::thread::available_parallelism().map_or(1, |n| n.get());
    match physical_cores_in(Path::new("/sys/devices/system/cpu")) {
        Some(n) if n > 0 => n.min(available),
        _ => available,
    }
}

/// Distinct (core, package) pairs under a sysfs-style cpu folder.
pub fn physical_cores_in(dir: &Path) -> Option<usize> {
    let mut pairs = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_cpu = name.strip_prefix("cpu").is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if !is_cpu {
            continue;
        }
        let read = |f: &str| std::fs::read_to_string(entry.path().join("topology").join(f)).ok();
        if let (Some(core), Some(pkg)) = (read("core_id"), read("physical_package_id")) {
            pairs.insert((core.trim().to_string(), pkg.trim().to_string()));
        }
    }
    Some(pairs.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_sample_sd() {
        let (m, s) = mean_sd(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]);
        assert_eq!(m, 5.0);
        // Population sd is 2; the sample sd (n − 1) is sqrt(32 / 7).
        assert!((s - (32.0f64 / 7.0).sqrt()).abs() < 1e-12, "{s}");
        assert_eq!(mean_sd(&[3.5]), (3.5, 0.0));
        assert_eq!(mean_sd(&[1.0, 1.0, 1.0]), (1.0, 0.0));
        let (m, s) = mean_sd(&[]);
        assert!(m.is_nan() && s == 0.0);
        let t = TestResult::new("pp8", "t/s", vec![10.0, 12.0]);
        assert_eq!((t.mean, t.display(2)), (11.0, "11.00 ± 1.41".to_string()));
    }

    #[test]
    fn topology_counts_core_package_pairs() {
        let dir = tempfile::tempdir().unwrap();
        // 2 packages × 2 cores × 2 hyperthreads = 8 CPUs, 4 physical cores; cpufreq is not a CPU.
        for cpu in 0..8 {
            let topo = dir.path().join(format!("cpu{cpu}/topology"));
            std::fs::create_dir_all(&topo).unwrap();
            std::fs::write(topo.join("core_id"), format!("{}\n", cpu % 2)).unwrap();
            std::fs::write(topo.join("physical_package_id"), format!("{}\n", (cpu / 2) % 2)).unwrap();
        }
        std::fs::create_dir_all(dir.path().join("cpufreq")).unwrap();
        assert_eq!(physical_cores_in(dir.path()), Some(4));
        assert!(physical_cores() >= 1);
    }

    #[test]
    fn synthetic_image_is_deterministic() {
        let a = synthetic_image(448);
        assert_eq!((a.width(), a.height()), (448, 448));
        assert_eq!(a, synthetic_image(448));
        assert_eq!(a.get_pixel(447, 0).0[0], 255);
    }
}

/// The session tests' results (see [`bench_sessions`]).
#[derive(Debug, Clone)]
pub struct SessionBench {
    /// Time to first token of a first question on a new image (1 tile + the question), ms.
    pub ttft_first: TestResult,
    /// Time to first token of a second question on the same image in the same session, ms.
    pub ttft_followup: TestResult,
    /// A new session's time to first token with the engine's shared system prefix (image features cached), ms.
    pub ttft_shared_prefix: TestResult,
    /// The same without the shared prefix (the system head prefilled by the session), ms.
    pub ttft_no_shared_prefix: TestResult,
    /// Resident bytes of the language model's mapping with `sessions` sessions open (from `/proc/self/smaps`).
    pub weights_rss: TestResult,
    /// One session's own bytes at 4,096 positions of the engine's KV type.
    pub session_bytes_4096: TestResult,
}

/// A [`synthetic_image`] made different for each `variant` (so the feature cache cannot answer for it).
pub fn synthetic_image_variant(side: u32, variant: u32) -> RgbImage {
    let mut img = synthetic_image(side);
    for (i, p) in img.pixels_mut().enumerate() {
        p.0[2] ^= ((i as u32).wrapping_mul(2654435761).wrapping_add(variant.wrapping_mul(40503)) >> 24) as u8 & 7;
    }
    img
}

/// `(mappings, Rss bytes)` of `path` in `/proc/self/smaps` (`None` where there is no such file).
pub fn mapped_rss(path: &Path) -> Option<(usize, u64)> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
    let want = std::fs::canonicalize(path).ok()?;
    let (mut maps, mut rss, mut inside) = (0, 0, false);
    for line in smaps.lines() {
        let mut f = line.split_whitespace();
        let first = f.next().unwrap_or("");
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            // A mapping's header: address range, perms, offset, dev, inode, path.
            let path = line.split_whitespace().nth(5).map(std::path::PathBuf::from);
            inside = path.as_deref() == Some(want.as_path());
            maps += inside as usize;
        } else if inside && first == "Rss:" {
            rss += f.next().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0) * 1024;
        }
    }
    Some((maps, rss))
}

/// Reuse through sessions, on one engine: (a) a follow-up question's time to first token against the first
/// question's, (b) a new session's with and without the engine's shared system prefix, (c) the weights'
/// resident bytes with `sessions` sessions open and one session's own bytes at 4,096 positions.
pub fn bench_sessions(
    engine: &std::sync::Arc<crate::engine::Engine>,
    config: &BenchConfig,
    sessions: usize,
    progress: Progress,
) -> Result<SessionBench, BenchError> {
    use crate::engine::AskOptions;
    let vision = engine
        .vlm()
        .vision
        .as_ref()
        .ok_or_else(|| BenchError::Config("the session tests need a vision file".into()))?;
    let side = vision.preprocess.image_size;
    let (question, question_tokens) = question_of_tokens(engine.vlm(), QUESTION_TOKENS)?;
    let (followup, _) = question_of_tokens(engine.vlm(), QUESTION_TOKENS / 2)?;
    let once = AskOptions { max_tokens: 1, ..AskOptions::default() };
    let ttft = |s: &mut crate::engine::Session, q: &str| -> Result<f64, BenchError> {
        let t = Instant::now();
        s.ask_with(q, &once, |_| true)?;
        Ok(t.elapsed().as_secs_f64() * 1e3)
    };
    if config.warmup {
        progress("session warm-up", 0, 1);
        let mut s = engine.session();
        s.add_image_rgb(&synthetic_image(side))?;
        ttft(&mut s, &question)?;
    }
    let reps = config.repetitions;
    let (mut first, mut second, mut shared, mut unshared) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for r in 0..reps {
        progress("sessions", r, reps);
        // (a) A new image each time: the first question encodes it.
        let mut s = engine.session();
        s.add_image_rgb(&synthetic_image_variant(side, 1000 + r as u32))?;
        first.push(ttft(&mut s, &question)?);
        second.push(ttft(&mut s, &followup)?);
        // (b) The warm-up's image, so its features come from the cache in both arms.
        for (use_shared, out) in [(true, &mut shared), (false, &mut unshared)] {
            let mut s = engine.session();
            s.set_shared_prefix(use_shared);
            s.add_image_rgb(&synthetic_image(side))?;
            out.push(ttft(&mut s, &question)?);
        }
    }
    progress("sessions", reps, reps);
    // (c) `sessions` sessions with an image and a question each.
    let mut open = Vec::new();
    for k in 0..sessions.max(1) {
        let mut s = engine.session();
        s.add_image_rgb(&synthetic_image_variant(side, k as u32))?;
        s.ask_with(&question, &once, |_| true)?;
        open.push(s);
    }
    let (maps, rss) = mapped_rss(engine.files().lm.path()).unwrap_or((0, 0));
    let s = &open[0];
    let per_position = s.kv_bytes() as f64 / s.cached_tokens().max(1) as f64;
    // The KV rows plus the conversation's ids (u32) and their marks' ids (u64).
    let at_4096 = (per_position + 12.0) * 4096.0;
    let n = |v: Vec<f64>, name: &str| {
        TestResult::new(name, "ms", v).with("tiles", 1).with("question_tokens", question_tokens as u64)
    };
    Ok(SessionBench {
        ttft_first: n(first, "ttft_first"),
        ttft_followup: n(second, "ttft_followup"),
        ttft_shared_prefix: n(shared, "ttft_shared_prefix"),
        ttft_no_shared_prefix: n(unshared, "ttft_no_shared_prefix"),
        weights_rss: TestResult::new("weights_rss", "bytes", vec![rss as f64])
            .with("sessions", open.len() as u64)
            .with("mappings", maps as u64),
        session_bytes_4096: TestResult::new("session_bytes_4096", "bytes", vec![at_4096])
            .with("kv_bytes_per_position", per_position as u64),
    })
}
