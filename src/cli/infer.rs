//! What `describe`, `chat` and `trace` share: model flags, sampling flags, image and video inputs, threads.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::builder::TypedValueParser;
use clap::Args;
use runtime::backend::{BackendChoice, Placement};
use runtime::boards::{Explicit, Profile};
use runtime::engine::{Engine, EngineOptions, Session};
use runtime::host::HostInfo;
use runtime::model::sampler::SamplerConfig;
use runtime::pipeline::{ModelFiles, Vlm};
use runtime::repack::RepackMode;
use runtime::GgmlType;

/// What `-m` names: a GGUF file, or a Hugging Face model id (`owner/name[@revision][:mix]`) that is
/// downloaded, converted once into the cache and reused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelRef {
    /// A language-model GGUF (an existing path, or anything that is not shaped like a model id).
    File(PathBuf),
    /// A model id: `owner/name`, optionally `@revision` (default `main`) and `:mix` (default `q4_k_m`).
    Hub(String),
}

impl ModelRef {
    /// An existing path is a path; otherwise `owner/name[@revision][:mix]` is a model id; anything else is a
    /// path (that does not exist: opening it says so).
    pub fn classify(arg: PathBuf) -> ModelRef {
        if arg.exists() {
            return ModelRef::File(arg);
        }
        match arg.to_str() {
            Some(s) if id_shaped(s) => ModelRef::Hub(s.to_string()),
            _ => ModelRef::File(arg),
        }
    }
}

/// `owner/name…`: one `/` before any `@`, no `.gguf` ending, not starting like a path (`/`, `.`, `~`).
fn id_shaped(s: &str) -> bool {
    let repo = s.split(['@', ':']).next().unwrap_or("");
    !s.to_ascii_lowercase().ends_with(".gguf")
        && !s.starts_with(['/', '.', '~'])
        && !s.contains('\\')
        && repo.matches('/').count() == 1
        && !repo.ends_with('/')
}

#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// Language-model GGUF, or a Hugging Face model id `owner/name[@revision][:mix]` (default revision
    /// main, mix q4_k_m): downloaded and converted once into the cache ($SAIL_EDGE_CACHE, else
    /// $XDG_CACHE_HOME/sail-edge, else ~/.cache/sail-edge); HF_ENDPOINT and HF_TOKEN are honoured.
    #[arg(short = 'm', long = "model", value_parser = clap::builder::PathBufValueParser::new().map(ModelRef::classify))]
    pub model: ModelRef,
    /// Vision GGUF [default: the mmproj-*.gguf next to the model].
    #[arg(long)]
    pub mmproj: Option<PathBuf>,
    /// Worker threads [default: the number of physical CPU cores].
    #[arg(short = 't', long)]
    pub threads: Option<usize>,
    /// With a model id: keep the downloaded checkpoint in the cache after converting it (default: delete it,
    /// keeping only the GGUF pair).
    #[arg(long)]
    pub keep_checkpoint: bool,
    /// Most memory for MoE expert weights (e.g. 8G, 4096M, 512K, or bytes; K/M/G are binary): least
    /// recently used experts are released beyond it. Dense weights always stay mapped. `-v` reports hits.
    #[arg(long = "max-memory", value_name = "SIZE", value_parser = parse_size)]
    pub max_memory: Option<u64>,
    /// KV cache row type: f16 (default, like llama.cpp), q8_0 (half the memory again; head size must be a
    /// multiple of 32) or f32 (reference-exact).
    #[arg(long = "kv-type", value_name = "TYPE", value_parser = parse_kv_type)]
    pub kv_type: Option<GgmlType>,
    /// Write MODEL.gguf.repack beside the model (its Q4_0 weights interleaved 8 rows at a time for faster
    /// decoding; rewritten when the model changed), then use it. Without this flag a matching cache that is
    /// already there is used; nothing is written.
    #[arg(long, conflicts_with = "no_repack")]
    pub repack: bool,
    /// Ignore the repack cache even when it is there.
    #[arg(long)]
    pub no_repack: bool,
    /// Most positions a conversation may hold [default: the model's context length]; bounds the KV
    /// cache's memory.
    #[arg(short = 'c', long = "ctx-size", value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub ctx_size: Option<u64>,
    /// Board profile: a name (rpi4, rpi5, jetson-orin-nano, jetson-agx-orin, snapdragon-8-gen2,
    /// snapdragon-8-gen3, apple-a-m, x86-64), a profile .toml file, or auto (what `sail-edge doctor` matches).
    /// It sets threads, the cores to pin to, KV type, context, tiles and expert memory; flags given win.
    #[arg(long, value_name = "NAME|auto")]
    pub board: Option<String>,
    /// Where the linear layers run: cpu (default), vulkan (the Vulkan device, whatever it is) or auto
    /// (Vulkan on discrete GPUs and NVIDIA Jetson, the CPU on V3D, Mali, Adreno and CPU implementations).
    /// Without a usable device everything runs on the CPU, with a warning.
    #[arg(long, value_name = "cpu|vulkan|auto", value_parser = parse_backend)]
    pub backend: Option<BackendChoice>,
    /// Decoder layers on the device, counted from the last one (like llama.cpp's -ngl); more than the
    /// model has also puts the output head there [default: all of them and the head].
    #[arg(long = "gpu-layers", value_name = "N")]
    pub gpu_layers: Option<usize>,
    /// Where the vision tower and projector run [default: as --backend]; `--vision-backend vulkan` alone
    /// puts only them on the GPU.
    #[arg(long = "vision-backend", value_name = "cpu|vulkan|auto", value_parser = parse_backend)]
    pub vision_backend: Option<BackendChoice>,
    /// The Vulkan device to use, by its index in `sail-edge doctor`'s list [default: 0].
    #[arg(long = "vulkan-device", value_name = "INDEX")]
    pub vulkan_device: Option<usize>,
}

fn parse_backend(s: &str) -> Result<BackendChoice, String> {
    s.parse()
}

/// Whether a language-model GGUF has experts (an unreadable one counts as MoE: opening it will say why).
fn is_moe(path: &Path) -> bool {
    runtime::gguf::GgufFile::open(path)
        .map(|f| f.metadata().iter().any(|(k, _)| k.ends_with(".expert_count")))
        .unwrap_or(true)
}

fn parse_kv_type(s: &str) -> Result<GgmlType, String> {
    match s.to_ascii_lowercase().as_str() {
        "f16" => Ok(GgmlType::F16),
        "q8_0" => Ok(GgmlType::Q8_0),
        "f32" => Ok(GgmlType::F32),
        _ => Err(format!("'{s}': the KV cache holds f16, q8_0 or f32 rows")),
    }
}

/// `8G`, `4096M`, `512K`, `1T`, or plain bytes; an optional `B`/`iB` after the unit; units are powers of
/// 1024, any case.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    let body = lower.strip_suffix("ib").or_else(|| lower.strip_suffix('b')).unwrap_or(&lower);
    let (digits, shift) = match body.chars().last() {
        Some('k') => (&body[..body.len() - 1], 10),
        Some('m') => (&body[..body.len() - 1], 20),
        Some('g') => (&body[..body.len() - 1], 30),
        Some('t') => (&body[..body.len() - 1], 40),
        _ if lower.ends_with("ib") => return Err(format!("'{s}': a size like 8G, 4096M, 512K or 1000000")),
        _ => (body, 0),
    };
    let bad = || format!("'{s}': a size like 8G, 4096M, 512K or 1000000");
    let digits = digits.trim();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: u64 = digits.parse().map_err(|_| bad())?;
    n.checked_mul(1u64 << shift).ok_or_else(|| format!("'{s}' is too large"))
}

/// `-v`: the MoE expert residency counters on stderr (nothing for dense models).
pub fn report_expert_stats(vlm: &Vlm<'_>, verbose: u8) {
    if verbose == 0 {
        return;
    }
    let Some(s) = vlm.expert_stats() else { return };
    let hb = super::human_bytes;
    let mut resident =
        format!("{} of {} experts resident ({}", s.resident_experts, s.total_experts, hb(s.resident_bytes));
    if let Some(b) = s.budget {
        resident += &format!(", budget {}", hb(b));
    }
    if let Some(m) = s.measured_resident_bytes {
        resident += &format!(", mincore {}", hb(m));
    }
    eprintln!(
        "experts: hit rate {:.1}% ({} hits, {} misses), {} read, {resident}), {} evictions, {} prefetched, {} \
         prefetch hits",
        100.0 * s.hit_rate(),
        s.hits,
        s.misses,
        hb(s.bytes_read),
        s.evictions,
        s.prefetched,
        s.prefetch_hits
    );
}

impl ModelArgs {
    /// What to do about the repack cache, from `--repack` / `--no-repack`.
    pub fn repack_mode(&self) -> RepackMode {
        match (self.repack, self.no_repack) {
            (true, _) => RepackMode::Build,
            (_, true) => RepackMode::Off,
            _ => RepackMode::Auto,
        }
    }

    /// The files `-m` and `--mmproj` name (a model id is downloaded and converted first).
    pub fn paths(&self) -> Result<(PathBuf, Option<PathBuf>)> {
        match &self.model {
            ModelRef::File(path) => {
                if !path.exists() {
                    bail!("{}: no such file (nor a model id of the form owner/name)", path.display());
                }
                Ok((path.clone(), self.mmproj.clone()))
            }
            ModelRef::Hub(id) => self.resolve_hub(id),
        }
    }

    pub fn open(&self) -> Result<ModelFiles> {
        let (model, mmproj) = self.paths()?;
        ModelFiles::open_with(&model, mmproj.as_deref(), self.repack_mode())
            .with_context(|| format!("loading {}", model.display()))
    }

    /// The KV row type given, else f16.
    pub fn kv_type_or_default(&self) -> GgmlType {
        self.kv_type.unwrap_or(GgmlType::F16)
    }

    /// The `--board` profile: `None` without the flag, or with `auto` on a machine no profile fits.
    pub fn profile(&self) -> Result<Option<Profile>> {
        match self.board.as_deref() {
            None => Ok(None),
            Some("auto") => {
                let host = HostInfo::detect();
                let found = Profile::auto(&host);
                match &found {
                    Some(p) => tracing::info!("--board auto: {} ({})", p.name, p.title),
                    None => tracing::warn!(
                        "--board auto: no profile fits this machine ({}, {}); using the defaults",
                        host.cpu_model,
                        host.arch
                    ),
                }
                Ok(found)
            }
            Some(name) => Ok(Some(Profile::by_name(name)?)),
        }
    }

    /// Where the linear layers go, from `--backend`, `--gpu-layers`, `--vision-backend`, `--vulkan-device`.
    pub fn placement(&self) -> Placement {
        let backend = self.backend.unwrap_or_default();
        if backend == BackendChoice::Cpu && self.gpu_layers.is_some() {
            tracing::warn!("--gpu-layers has no effect without --backend vulkan or auto");
        }
        Placement {
            backend,
            gpu_layers: self.gpu_layers,
            vision: self.vision_backend,
            device: self.vulkan_device.unwrap_or(0),
        }
    }

    /// The settings these flags leave to a board profile.
    fn explicit(&self, max_tiles: Option<u32>) -> Explicit {
        Explicit {
            threads: self.threads.is_some(),
            kv_type: self.kv_type.is_some(),
            max_expert_memory: self.max_memory.is_some(),
            max_tiles: max_tiles.is_some(),
            context_length: self.ctx_size.is_some(),
        }
    }

    /// Engine options from the flags (and `max_tiles`, the per-image tile budget), then the profile.
    pub fn engine_options_with(&self, max_tiles: Option<u32>, profile: Option<&Profile>) -> Result<EngineOptions> {
        let (model, mmproj) = self.paths_with(profile)?;
        let mut options = EngineOptions { mmproj, repack: self.repack_mode(), ..EngineOptions::new(model) };
        self.fill_options(&mut options, max_tiles, profile)?;
        Ok(options)
    }

    /// Put the flags' engine settings into `options`, then what `profile` sets that the flags did not, and
    /// pin this thread (and so the engine's workers, started after it) to the profile's cores.
    pub fn fill_options(
        &self,
        options: &mut EngineOptions,
        max_tiles: Option<u32>,
        profile: Option<&Profile>,
    ) -> Result<()> {
        if self.threads == Some(0) {
            bail!("-t/--threads must be at least 1");
        }
        if max_tiles == Some(0) {
            bail!("--max-tiles must be at least 1");
        }
        options.threads = self.threads.unwrap_or(0);
        options.kv_type = self.kv_type_or_default();
        options.max_expert_memory = self.max_memory;
        options.max_tiles = max_tiles;
        options.context_length = self.ctx_size.map(|c| c as usize);
        options.placement = self.placement();
        let Some(p) = profile else { return Ok(()) };
        let explicit = self.explicit(max_tiles);
        let mut set = p.apply(options, explicit);
        // The budget only means something for MoE models; a dense one would only warn about it.
        if !explicit.max_expert_memory && options.max_expert_memory.is_some() && !is_moe(&options.model) {
            options.max_expert_memory = None;
            set.retain(|s| !s.starts_with("max_expert_memory="));
        }
        tracing::info!(
            "board {}: {}",
            p.name,
            if set.is_empty() { "nothing (flags given)".into() } else { set.join(", ") }
        );
        if !p.runtime.pin_cores.is_empty() {
            match runtime::host::pin_threads(&p.runtime.pin_cores) {
                Ok(cores) => {
                    tracing::info!("board {}: pinned to cores {cores:?}", p.name);
                    // More workers than cores left to pin to would only take turns.
                    if !explicit.threads && options.threads > cores.len() {
                        tracing::warn!(
                            "board {}: {} of its cores exist here; {} threads instead of {}",
                            p.name,
                            cores.len(),
                            cores.len(),
                            options.threads
                        );
                        options.threads = cores.len();
                    }
                }
                Err(e) => tracing::warn!("board {}: not pinned: {e}", p.name),
            }
        }
        Ok(())
    }

    /// [`ModelArgs::paths`], with the profile's quant mix for a model id that names none.
    fn paths_with(&self, profile: Option<&Profile>) -> Result<(PathBuf, Option<PathBuf>)> {
        match (&self.model, profile) {
            (ModelRef::Hub(id), Some(p)) if !id.contains(':') => {
                let id = format!("{id}:{}", p.runtime.quant_mix);
                tracing::info!("board {}: model {id}", p.name);
                self.resolve_hub(&id)
            }
            _ => self.paths(),
        }
    }

    /// Open the engine the flags describe, timing it on stderr (`load: N ms`).
    pub fn open_engine(&self, max_tiles: Option<u32>) -> Result<Arc<Engine>> {
        let profile = self.profile()?;
        self.open_engine_with(max_tiles, profile.as_ref())
    }

    /// [`ModelArgs::open_engine`] with the profile already resolved.
    pub fn open_engine_with(&self, max_tiles: Option<u32>, profile: Option<&Profile>) -> Result<Arc<Engine>> {
        let options = self.engine_options_with(max_tiles, profile)?;
        let start = std::time::Instant::now();
        let path = options.model.clone();
        let wants_device = options.placement.wants_device();
        let engine = Engine::open(options).with_context(|| format!("loading {}", path.display()))?;
        eprintln!("load: {:.0} ms", start.elapsed().as_secs_f64() * 1e3);
        if wants_device {
            eprintln!("backend: {}", engine.placement().summary());
        }
        Ok(Arc::new(engine))
    }

    #[cfg(feature = "hub")]
    fn resolve_hub(&self, id: &str) -> Result<(PathBuf, Option<PathBuf>)> {
        use convert::hub::{Hub, HubConfig, ModelId};
        let model_id = ModelId::parse(id)?;
        let mut config = HubConfig::from_env()?;
        config.keep_checkpoint = self.keep_checkpoint;
        config.show_progress = true;
        let resolved = Hub::new(config)?.resolve(&model_id)?;
        tracing::info!("{id}: {} + {}", resolved.model.display(), resolved.mmproj.display());
        Ok((resolved.model, Some(self.mmproj.clone().unwrap_or(resolved.mmproj))))
    }

    #[cfg(not(feature = "hub"))]
    fn resolve_hub(&self, id: &str) -> Result<(PathBuf, Option<PathBuf>)> {
        bail!("{id}: no such file (model ids like owner/name need a build with the `hub` feature)")
    }
}

#[derive(Args, Debug, Clone)]
pub struct SamplingArgs {
    /// Temperature; 0 = greedy (the reference's default).
    #[arg(long = "temp", default_value_t = 0.0)]
    pub temperature: f32,
    /// Keep only the k most likely tokens (0 = off).
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    /// Nucleus sampling threshold (1 = off).
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    /// Drop tokens below min-p × the top probability (0 = off).
    #[arg(long, default_value_t = 0.0)]
    pub min_p: f32,
    /// Repetition penalty (1 = off).
    #[arg(long = "repeat-penalty", default_value_t = 1.0)]
    pub repetition_penalty: f32,
    /// Random seed for sampling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl SamplingArgs {
    pub fn config(&self) -> Result<SamplerConfig> {
        let valid_temp = self.temperature.is_finite() && self.temperature >= 0.0;
        if !valid_temp || !(0.0..=1.0).contains(&self.top_p) || !(0.0..=1.0).contains(&self.min_p) {
            bail!("--temp must be ≥ 0, --top-p and --min-p within [0, 1]");
        }
        if !self.repetition_penalty.is_finite() || self.repetition_penalty <= 0.0 {
            bail!("--repeat-penalty must be > 0");
        }
        Ok(SamplerConfig {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repetition_penalty: self.repetition_penalty,
            seed: self.seed,
        })
    }
}

#[derive(Args, Debug, Clone)]
pub struct InputArgs {
    /// An image (PNG or JPEG); repeat for several.
    #[arg(long = "image")]
    pub images: Vec<PathBuf>,
    /// Video frames: a folder of images or a comma-separated list; up to 16 are sampled uniformly, one tile
    /// each.
    #[arg(long)]
    pub video_frames: Option<String>,
    /// Tile budget per still image [default: from the mmproj file].
    #[arg(long)]
    pub max_tiles: Option<u32>,
    /// The question.
    #[arg(short = 'p', long = "prompt")]
    pub prompt: Option<String>,
    /// Read the question from a UTF-8 file.
    #[arg(long, conflicts_with = "prompt")]
    pub prompt_file: Option<PathBuf>,
    /// Replace the default system prompt.
    #[arg(long)]
    pub system: Option<String>,
    /// Ask for reasoning in <think> tags (the Thinking variants' suffix).
    #[arg(long)]
    pub think: bool,
}

/// Frames sampled from a video.
pub const MAX_VIDEO_FRAMES: usize = 16;

impl InputArgs {
    pub fn question(&self, default: &str) -> Result<String> {
        if let Some(p) = &self.prompt {
            return Ok(p.clone());
        }
        if let Some(f) = &self.prompt_file {
            let bytes = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
            return String::from_utf8(bytes).map_err(|e| {
                anyhow::anyhow!("{}: not UTF-8 (invalid byte at offset {})", f.display(), e.utf8_error().valid_up_to())
            });
        }
        Ok(default.to_string())
    }

    /// The image files or sampled video frames given, and whether they are frames.
    fn image_paths(&self) -> Result<(Vec<PathBuf>, bool)> {
        let frames = match &self.video_frames {
            Some(spec) => video_frames(spec)?,
            None => Vec::new(),
        };
        if !frames.is_empty() && !self.images.is_empty() {
            bail!("give either --image or --video-frames, not both");
        }
        Ok(if frames.is_empty() { (self.images.clone(), false) } else { (frames, true) })
    }

    /// Add the images or frames to `session` (the session labels them as the reference does: `Image-i:` for
    /// several images, `Frame-i:` for video frames) and return the question.
    pub fn load_into(&self, session: &mut Session) -> Result<String> {
        let (paths, frames) = self.image_paths()?;
        let default_q = if frames { "Describe this video." } else { "Describe this image." };
        let question = self.question(if paths.is_empty() { "" } else { default_q })?;
        if question.trim().is_empty() {
            bail!("nothing to ask: give -p/--prompt, --prompt-file, or an image");
        }
        session.set_system(self.system.clone())?;
        for p in &paths {
            if frames {
                session.add_video_frame_path(p)?;
            } else {
                session.add_image_path(p)?;
            }
        }
        Ok(question)
    }
}

/// The frames named by `--video-frames`: a folder (its PNG/JPEG files by name) or a comma-separated list,
/// sampled uniformly down to [`MAX_VIDEO_FRAMES`] (frame i of k at the middle of its 1/k of the clip).
pub fn video_frames(spec: &str) -> Result<Vec<PathBuf>> {
    let path = Path::new(spec);
    let all: Vec<PathBuf> = if path.is_dir() {
        let mut v: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("reading {}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| live::source::folder::is_image_name(p))
            .collect();
        v.sort();
        if v.is_empty() {
            bail!("{}: no PNG or JPEG frames in this folder", path.display());
        }
        v
    } else {
        spec.split(',').map(str::trim).filter(|s| !s.is_empty()).map(PathBuf::from).collect()
    };
    if all.is_empty() {
        bail!("--video-frames: no frames given");
    }
    Ok(sample_uniform(&all, MAX_VIDEO_FRAMES))
}

/// At most `k` items spread evenly: item `floor((i + ½) · n / k)` for i < k.
pub fn sample_uniform<T: Clone>(items: &[T], k: usize) -> Vec<T> {
    let n = items.len();
    if n <= k {
        return items.to_vec();
    }
    (0..k).map(|i| items[((2 * i + 1) * n) / (2 * k)].clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_ids_and_paths_are_told_apart() {
        let here = env!("CARGO_MANIFEST_DIR");
        let hub = |s: &str| ModelRef::Hub(s.to_string());
        let file = |s: &str| ModelRef::File(PathBuf::from(s));
        // An existing path is a path, even when shaped like an id.
        assert_eq!(ModelRef::classify(PathBuf::from(here)), file(here));
        assert_eq!(ModelRef::classify("src/cli".into()), file("src/cli"));
        for id in ["owner/name", "BytedanceDouyinContent/SAIL-VL2-2B@main:q8_0", "a/b@refs/pr/1", "a/b:q3"] {
            assert_eq!(ModelRef::classify(id.into()), hub(id), "{id}");
        }
        for path in ["model.gguf", "models/tiny.gguf", "./a/b", "/a/b", "~/a/b", "a/b/c", "a", "a\\b/c"] {
            assert_eq!(ModelRef::classify(path.into()), file(path), "{path}");
        }
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("8G"), Ok(8 << 30));
        assert_eq!(parse_size("4096M"), Ok(4096 << 20));
        assert_eq!(parse_size("512K"), Ok(512 << 10));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("2gb"), Ok(2 << 30));
        assert_eq!(parse_size("1000000"), Ok(1_000_000));
        assert_eq!(parse_size("100B"), Ok(100));
        assert_eq!(parse_size("0"), Ok(0));
        for bad in ["", "G", "-1G", "1.5G", "8X", "8 G G", "1iB", "99999999999T"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn uniform_sampling_spreads_frames() {
        let v: Vec<usize> = (0..32).collect();
        assert_eq!(sample_uniform(&v, 16), (0..16).map(|i| 2 * i + 1).collect::<Vec<_>>());
        assert_eq!(sample_uniform(&v[..3], 16), vec![0, 1, 2]);
        assert_eq!(sample_uniform(&(0..100).collect::<Vec<_>>(), 4), vec![12, 37, 62, 87]);
    }
}
