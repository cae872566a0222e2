//! The optional repack cache: a model's Q4_0, Q8_0, Q4_K and Q6_K decoder weights in the 8-row interleaved
//! layouts of [`crate::kernels::interleaved`], in a file beside the model (`MODEL.gguf.repack`).
//!
//! Decoding single tokens over such rows spends as much on per-block scale gathers (and the K-quants'
//! scale unpacking) and horizontal reductions as on the dot products; the interleaved layouts remove
//! both. Weights stay zero-copy: the cache is written once (`--repack`), then mapped like the model, and
//! only its bytes are read for those weights (batches take their 8-row tiles from the same groups), so
//! memory holds one copy, not two, and nothing is repacked at start-up.
//!
//! The cache is a GGUF file: one `I8` tensor per repacked weight, under the weight's name, shaped
//! `[row bytes, rows]` (its layout follows from the weight's type in the model), and metadata naming the
//! layout, the architecture it was written for (`std::env::consts::ARCH`: a cache is only read by the
//! kernels of the architecture that wrote it, so x86-64 and aarch64 never take each other's, even where
//! the layouts coincide today) and fingerprinting the model it came from (its size, header and the first
//! and last 4 KiB of every repacked tensor, SHA-256). A cache that does not match its model or this
//! architecture is ignored with a warning saying why (or rewritten with `--repack`), never used.

use std::path::{Path, PathBuf};

use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::gguf::names;
use crate::gguf::{GgufError, GgufFile, GgufWriter, TensorInfo, TensorSpec, Value};
use crate::kernels::interleaved::{has_x8_layout, interleave_x8, X8_ROWS};
use crate::GgmlType;

/// What the runtime does about the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RepackMode {
    /// Use the cache beside the model when it is there and matches; never write one.
    #[default]
    Auto,
    /// Write the cache (or rewrite it when it no longer matches the model), then use it.
    Build,
    /// Neither read nor write it.
    Off,
}

#[derive(Debug, thiserror::Error)]
pub enum RepackError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
}

const KEY_LAYOUT: &str = "sail_edge.repack.layout";
const KEY_VERSION: &str = "sail_edge.repack.version";
const KEY_ARCH: &str = "sail_edge.repack.arch";
const KEY_SOURCE_SIZE: &str = "sail_edge.repack.source_size";
const KEY_FINGERPRINT: &str = "sail_edge.repack.source_fingerprint";
/// `q4_0x8`, `q8_0x8`, `q4_kx8` and `q6_kx8`, by the weight's type in the model.
const LAYOUT: &str = "x8";
/// 2: the architecture key.
const VERSION: u32 = 2;
/// The architecture whose kernels read the cache this process writes.
const ARCH: &str = std::env::consts::ARCH;
/// Bytes of each repacked tensor's start and end that enter the fingerprint.
const SAMPLE: usize = 4096;

/// Where the cache of `model` lives: beside it, `MODEL.gguf.repack`.
pub fn cache_path(model: &Path) -> PathBuf {
    let mut name = model.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".repack");
    model.with_file_name(name)
}

/// Whether this process's kernel path decodes from the repacked layouts (elsewhere a cache is not used).
pub fn supported() -> bool {
    crate::kernels::x8_native()
}

/// The weights worth repacking: 2-D Q4_0, Q8_0, Q4_K and Q6_K decoder matrices (attention, dense FFN, output
/// head) with whole groups of 8 rows. MoE experts are paged per expert and are not repacked. Token embeddings
/// are looked up by row, but where the model ties its output head to them (no `output.weight`: Qwen3-1.7B,
/// the 2B's decoder) every decoded token reads the whole table as the head — the largest matrix of a small
/// model — so the cache holds a repacked copy for the head while lookups keep reading the model's rows.
pub fn eligible(model: &GgufFile) -> Vec<&TensorInfo> {
    use names::tensor::{ATTN_K, ATTN_OUTPUT, ATTN_Q, ATTN_V, FFN_DOWN, FFN_GATE, FFN_UP};
    const LINEAR: [&str; 7] = [ATTN_Q, ATTN_K, ATTN_V, ATTN_OUTPUT, FFN_GATE, FFN_UP, FFN_DOWN];
    let tied = model.header().tensor(names::tensor::OUTPUT).is_none();
    let decoder_linear = |name: &str| {
        name == names::tensor::OUTPUT
            || (tied && name == names::tensor::TOKEN_EMBD)
            || name
                .strip_prefix("blk.")
                .and_then(|rest| rest.split_once('.'))
                .is_some_and(|(layer, weight)| layer.bytes().all(|b| b.is_ascii_digit()) && LINEAR.contains(&weight))
    };
    model
        .tensors()
        .iter()
        .filter(|t| {
            has_x8_layout(t.ty)
                && t.dims.len() == 2
                && t.n_rows().is_multiple_of(X8_ROWS as u64)
                && decoder_linear(&t.name)
        })
        .collect()
}

/// SHA-256 (hex) of what identifies the model's repacked weights: file size, header, and the first and
/// last [`SAMPLE`] bytes of each tensor in `tensors`.
fn fingerprint(model: &GgufFile, tensors: &[&TensorInfo]) -> String {
    let mut h = Sha256::new();
    h.update(model.file_size().to_le_bytes());
    h.update(model.header_bytes());
    for t in tensors {
        let data = model.data(t);
        h.update(t.name.as_bytes());
        h.update(&data[..data.len().min(SAMPLE)]);
        h.update(&data[data.len().saturating_sub(SAMPLE)..]);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// What a cache write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepackSummary {
    pub path: PathBuf,
    pub tensors: usize,
    pub bytes: u64,
}

/// Groups interleaved per write: bounds the memory a cache write needs (the output head alone is
/// hundreds of MiB).
const WRITE_CHUNK: usize = 8 << 20;

/// Write the cache of `model` to `path` (a temporary file renamed into place: never half-written).
pub fn write_cache(model: &GgufFile, path: &Path) -> Result<RepackSummary, RepackError> {
    write_cache_for(model, path, ARCH)
}

/// [`write_cache`] recording `arch` as the architecture it is for (tests forge other architectures' caches).
fn write_cache_for(model: &GgufFile, path: &Path, arch: &str) -> Result<RepackSummary, RepackError> {
    let tensors = eligible(model);
    let total: u64 = tensors.iter().map(|t| t.size).sum();
    tracing::info!("repacking {} tensors ({} MiB) into {}", tensors.len(), total >> 20, path.display());
    let metadata = vec![
        (KEY_LAYOUT.to_string(), Value::String(LAYOUT.into())),
        (KEY_VERSION.to_string(), Value::U32(VERSION)),
        (KEY_ARCH.to_string(), Value::String(arch.into())),
        (KEY_SOURCE_SIZE.to_string(), Value::U64(model.file_size())),
        (KEY_FINGERPRINT.to_string(), Value::String(fingerprint(model, &tensors))),
    ];
    let specs = tensors.iter().map(|t| TensorSpec::new(t.name.clone(), cache_dims(t), GgmlType::I8)).collect();
    let mut w = GgufWriter::create(path, &metadata, specs)?;
    for t in &tensors {
        let rows = model.data(t);
        let kb = (t.dims[0] / t.ty.block_size() as u64) as usize;
        let group = X8_ROWS * kb * t.ty.type_size();
        let step = (WRITE_CHUNK / group).max(1) * group;
        let mut packed = vec![0u8; step.min(rows.len())];
        for part in rows.chunks(step) {
            let out = &mut packed[..part.len()];
            out.par_chunks_mut(group)
                .zip(part.par_chunks(group))
                .for_each(|(dst, src)| interleave_x8(t.ty, src, kb, dst));
            w.write(out)?;
        }
    }
    let bytes = w.finish()?;
    Ok(RepackSummary { path: path.to_path_buf(), tensors: tensors.len(), bytes })
}

/// The cache's shape of a source tensor: its bytes as `[row bytes, rows]`.
fn cache_dims(t: &TensorInfo) -> Vec<u64> {
    vec![t.size / t.n_rows(), t.n_rows()]
}

/// Why an existing cache does not fit `model`, or `None` when it does.
fn mismatch(model: &GgufFile, cache: &GgufFile) -> Option<String> {
    let str_of = |k: &str| cache.get(k).and_then(Value::as_str);
    if str_of(KEY_LAYOUT) != Some(LAYOUT) || !matches!(cache.get(KEY_VERSION), Some(Value::U32(VERSION))) {
        return Some(format!("not a repack cache of layout {LAYOUT}, version {VERSION}"));
    }
    if str_of(KEY_ARCH) != Some(ARCH) {
        let theirs = str_of(KEY_ARCH).unwrap_or("an unnamed architecture");
        return Some(format!("written for {theirs}, this process runs on {ARCH}"));
    }
    if !matches!(cache.get(KEY_SOURCE_SIZE), Some(Value::U64(s)) if *s == model.file_size()) {
        return Some("made for a model of another size".into());
    }
    let tensors = eligible(model);
    if str_of(KEY_FINGERPRINT) != Some(fingerprint(model, &tensors).as_str()) {
        return Some("it no longer matches the model (the model, or what this version repacks, changed)".into());
    }
    for t in &tensors {
        match cache.header().tensor(&t.name) {
            Some(c) if c.ty == GgmlType::I8 && c.dims == cache_dims(t) => {}
            _ => return Some(format!("tensor '{}' is missing or has another shape", t.name)),
        }
    }
    None
}

/// The cache to use with `model` under `mode`: `None` when off, unsupported on this kernel path, absent,
/// stale (all with a log line saying why), or when the model has nothing to repack. `Build` writes it first
/// where it is missing or stale.
pub fn open_cache(model: &GgufFile, mode: RepackMode) -> Result<Option<GgufFile>, RepackError> {
    if mode == RepackMode::Off {
        return Ok(None);
    }
    let path = cache_path(model.path());
    if !supported() {
        let msg = format!(
            "the repacked layouts have no kernel on this CPU path ({:?}): {} not used",
            crate::kernels::isa(),
            path.display()
        );
        if mode == RepackMode::Build {
            tracing::warn!("{msg}");
        } else if path.exists() {
            tracing::info!("{msg}");
        }
        return Ok(None);
    }
    if eligible(model).is_empty() {
        if mode == RepackMode::Build {
            tracing::warn!(
                "{}: no Q4_0, Q8_0, Q4_K or Q6_K decoder weights to repack; no cache written",
                model.path().display()
            );
        }
        return Ok(None);
    }
    if path.exists() {
        let why = match GgufFile::open(&path) {
            Ok(cache) => match mismatch(model, &cache) {
                None => {
                    tracing::info!("using the repacked weights in {}", path.display());
                    return Ok(Some(cache));
                }
                Some(why) => why,
            },
            Err(e) => e.to_string(),
        };
        if mode == RepackMode::Auto {
            tracing::warn!("{}: ignored ({why}); --repack rewrites it", path.display());
            return Ok(None);
        }
        tracing::info!("{}: rewriting ({why})", path.display());
    } else if mode == RepackMode::Auto {
        return Ok(None);
    }
    let t = std::time::Instant::now();
    let s = write_cache(model, &path)?;
    tracing::info!("repacked {} tensors into {} ({} bytes) in {:.1?}", s.tensors, path.display(), s.bytes, t.elapsed());
    let cache = GgufFile::open(&path)?;
    if let Some(why) = mismatch(model, &cache) {
        // Only a concurrent writer could cause this; refuse rather than run on it.
        return Err(RepackError::Gguf(GgufError::Write { path, message: format!("just written, yet {why}") }));
    }
    Ok(Some(cache))
}

/// `m` with its repacked rows from `cache` attached, when the cache has them.
pub fn attach<'a>(
    m: crate::tensor::Matrix<'a>,
    cache: Option<&'a GgufFile>,
) -> Result<crate::tensor::Matrix<'a>, crate::tensor::WeightError> {
    match cache.and_then(|c| c.header().tensor(m.name).map(|info| c.data(info))) {
        Some(packed) => m.with_repacked(packed),
        None => Ok(m),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-tensor model with something to repack: `blk.0.attn_q.weight`, 8 Q8_0 rows of 64.
    fn tiny_model(dir: &Path) -> GgufFile {
        let path = dir.join("tiny.gguf");
        let specs = vec![TensorSpec::new("blk.0.attn_q.weight", vec![64, 8], GgmlType::Q8_0)];
        let mut w = GgufWriter::create(&path, &[], specs).unwrap();
        let bytes: Vec<u8> = (0..8 * 2 * 34).map(|i| (i * 37 % 251) as u8).collect();
        w.write(&bytes).unwrap();
        w.finish().unwrap();
        GgufFile::open(&path).unwrap()
    }

    /// A cache written for this architecture fits; the same cache written for another (x86-64 on aarch64,
    /// aarch64 elsewhere) is refused, saying why.
    #[test]
    fn a_cache_of_another_architecture_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let model = tiny_model(dir.path());
        assert_eq!(eligible(&model).len(), 1);
        let path = cache_path(model.path());
        write_cache(&model, &path).unwrap();
        assert_eq!(mismatch(&model, &GgufFile::open(&path).unwrap()), None, "this architecture's cache fits");
        let other = if ARCH == "x86_64" { "aarch64" } else { "x86_64" };
        write_cache_for(&model, &path, other).unwrap();
        let why = mismatch(&model, &GgufFile::open(&path).unwrap()).expect("another architecture's cache");
        assert!(why.contains(other) && why.contains(ARCH), "{why}");
        // What open_cache does with it: ignored under Auto (logged), rewritten under Build where this path
        // reads caches at all.
        if supported() {
            assert!(open_cache(&model, RepackMode::Auto).unwrap().is_none(), "another architecture's cache used");
            let cache = open_cache(&model, RepackMode::Build).unwrap().expect("rewritten");
            assert_eq!(cache.get(KEY_ARCH).and_then(Value::as_str), Some(ARCH));
        }
    }

    #[test]
    fn the_cache_sits_beside_the_model() {
        assert_eq!(cache_path(Path::new("/m/a.q4_0.gguf")), PathBuf::from("/m/a.q4_0.gguf.repack"));
        assert_eq!(cache_path(Path::new("a.gguf")), PathBuf::from("a.gguf.repack"));
    }
}
