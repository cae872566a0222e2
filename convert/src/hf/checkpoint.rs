//! A Hugging Face safetensors checkpoint (single `model.safetensors` or a sharded
//! `model.safetensors.index.json`), memory-mapped and validated up front.
//!
//! Shards are mapped, never read into RAM, so converting a multi-GB model keeps the resident set
//! to what the caller touches. Every header is checked before any tensor is handed out: a bad
//! offset is reported with the shard and tensor it belongs to, instead of surfacing later as a
//! short read or a panic.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use runtime::mmap::MappedFile;
use safetensors::SafeTensors;
use serde_json::Value;

/// Single-file checkpoint name.
pub const SINGLE_FILE: &str = "model.safetensors";
/// Sharded checkpoint index name.
pub const INDEX_FILE: &str = "model.safetensors.index.json";

/// Same limit as the safetensors crate: a header over 100 MB is refused.
const MAX_HEADER_LEN: u64 = 100_000_000;

/// Tensor element types a SAIL-VL2 checkpoint may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dtype {
    BF16,
    F16,
    F32,
}

impl Dtype {
    pub fn size_in_bytes(self) -> usize {
        match self {
            Dtype::BF16 | Dtype::F16 => 2,
            Dtype::F32 => 4,
        }
    }

    fn from_safetensors(d: safetensors::Dtype) -> Option<Dtype> {
        match d {
            safetensors::Dtype::BF16 => Some(Dtype::BF16),
            safetensors::Dtype::F16 => Some(Dtype::F16),
            safetensors::Dtype::F32 => Some(Dtype::F32),
            _ => None,
        }
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dtype::BF16 => "BF16",
            Dtype::F16 => "F16",
            Dtype::F32 => "F32",
        })
    }
}

/// Why a safetensors header (the 8-byte length + JSON + data layout) was rejected.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    #[error("file is {len} bytes, too short for the 8-byte header length")]
    TooShort { len: usize },
    #[error("header length {header_len} exceeds the 100 MB limit")]
    TooLarge { header_len: u64 },
    #[error("header length {header_len} reaches past the end of the file ({file_len} bytes)")]
    PastEnd { header_len: u64, file_len: usize },
    #[error("header is not UTF-8 (byte {valid_up_to} of the header)")]
    NotUtf8 { valid_up_to: usize },
    #[error("header is not valid JSON: {source}")]
    Json {
        #[source]
        source: serde_json::Error,
    },
    #[error("header is not a JSON object")]
    NotObject,
    #[error("__metadata__ must be an object of strings")]
    BadMetadata,
    #[error("tensor {tensor:?}: {reason}")]
    BadEntry { tensor: String, reason: String },
    #[error(
        "tensor {tensor:?}: data_offsets [{start}, {end}] reach past the end of the data section \
         ({data_len} bytes after the header, file is {file_len} bytes)"
    )]
    OffsetsPastEnd { tensor: String, start: u64, end: u64, data_len: usize, file_len: usize },
    #[error(
        "tensor {tensor:?}: data_offsets [{start}, {end}] hold {got} bytes, but dtype {dtype:?} x shape \
         {shape:?} needs {expected}"
    )]
    SizeMismatch {
        tensor: String,
        start: u64,
        end: u64,
        got: u64,
        expected: u64,
        dtype: safetensors::Dtype,
        shape: Vec<usize>,
    },
    #[error("tensor {tensor:?}: data_offsets start at {start}, expected {expected} (tensors must be packed with no gap or overlap)")]
    NotPacked { tensor: String, start: u64, expected: u64 },
    #[error("the data section has {extra} bytes after the last tensor")]
    TrailingBytes { extra: u64 },
    #[error("rejected by the safetensors crate: {0}")]
    Crate(String),
}

/// One tensor entry of a parsed safetensors header.
#[derive(Debug, Clone, PartialEq)]
pub struct HeaderTensor {
    pub name: String,
    pub dtype: safetensors::Dtype,
    pub shape: Vec<usize>,
    /// Byte range inside the data section (after the header).
    pub data_offsets: (usize, usize),
}

/// A validated safetensors header. Every tensor's range lies inside the data section and matches
/// dtype x shape; tensors are packed with no gaps and no trailing bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct SafetensorsHeader {
    /// Absolute file offset of the data section (8 + JSON length).
    pub data_start: usize,
    /// Tensors sorted by data offset.
    pub tensors: Vec<HeaderTensor>,
    /// The free-form `__metadata__` map, if any.
    pub metadata: BTreeMap<String, String>,
}

/// Parse and validate the header of a whole safetensors file held in `bytes`.
///
/// Never panics on arbitrary input (fuzz target). The checks mirror the safetensors crate's, done
/// first by hand so that each failure names its tensor; the crate's own `read_metadata` then runs
/// as a final cross-check.
pub fn parse_safetensors_header(bytes: &[u8]) -> Result<SafetensorsHeader, HeaderError> {
    let file_len = bytes.len();
    let len_bytes: [u8; 8] = match bytes.get(..8).and_then(|b| b.try_into().ok()) {
        Some(b) => b,
        None => return Err(HeaderError::TooShort { len: file_len }),
    };
    let header_len = u64::from_le_bytes(len_bytes);
    if header_len > MAX_HEADER_LEN {
        return Err(HeaderError::TooLarge { header_len });
    }
    // header_len <= 1e8, so this fits in usize on every supported target.
    let data_start = 8usize.saturating_add(header_len as usize);
    let header_bytes = bytes.get(8..data_start).ok_or(HeaderError::PastEnd { header_len, file_len })?;
    let text = std::str::from_utf8(header_bytes).map_err(|e| HeaderError::NotUtf8 { valid_up_to: e.valid_up_to() })?;
    let root: Value = serde_json::from_str(text).map_err(|source| HeaderError::Json { source })?;
    let Value::Object(entries) = root else {
        return Err(HeaderError::NotObject);
    };

    let mut metadata = BTreeMap::new();
    let mut tensors = Vec::with_capacity(entries.len());
    for (name, entry) in entries {
        if name == "__metadata__" {
            match entry {
                Value::Null => {}
                Value::Object(map) => {
                    for (k, v) in map {
                        let Value::String(s) = v else {
                            return Err(HeaderError::BadMetadata);
                        };
                        metadata.insert(k, s);
                    }
                }
                _ => return Err(HeaderError::BadMetadata),
            }
            continue;
        }
        tensors.push(parse_entry(name, &entry)?);
    }

    let data_len = file_len - data_start;
    for t in &tensors {
        let (start, end) = (t.data_offsets.0 as u64, t.data_offsets.1 as u64);
        if end < start {
            return Err(HeaderError::BadEntry {
                tensor: t.name.clone(),
                reason: format!("data_offsets [{start}, {end}] end before they start"),
            });
        }
        if end > data_len as u64 {
            return Err(HeaderError::OffsetsPastEnd { tensor: t.name.clone(), start, end, data_len, file_len });
        }
        let expected = byte_size(t)?;
        if end - start != expected {
            return Err(HeaderError::SizeMismatch {
                tensor: t.name.clone(),
                start,
                end,
                got: end - start,
                expected,
                dtype: t.dtype,
                shape: t.shape.clone(),
            });
        }
    }
    tensors.sort_by(|a, b| a.data_offsets.cmp(&b.data_offsets).then_with(|| a.name.cmp(&b.name)));
    let mut expected_start = 0u64;
    for t in &tensors {
        let start = t.data_offsets.0 as u64;
        if start != expected_start {
            return Err(HeaderError::NotPacked { tensor: t.name.clone(), start, expected: expected_start });
        }
        expected_start = t.data_offsets.1 as u64;
    }
    if expected_start != data_len as u64 {
        return Err(HeaderError::TrailingBytes { extra: data_len as u64 - expected_start });
    }

    // Cross-check with the reference implementation; it should agree with everything above.
    SafeTensors::read_metadata(bytes).map_err(|e| HeaderError::Crate(e.to_string()))?;
    Ok(SafetensorsHeader { data_start, tensors, metadata })
}

fn parse_entry(name: String, entry: &Value) -> Result<HeaderTensor, HeaderError> {
    let bad = |reason: String| HeaderError::BadEntry { tensor: name.clone(), reason };
    let Value::Object(fields) = entry else {
        return Err(bad("entry is not a JSON object".into()));
    };
    let dtype = match fields.get("dtype") {
        Some(Value::String(s)) => serde_json::from_value::<safetensors::Dtype>(Value::String(s.clone()))
            .map_err(|_| bad(format!("unknown dtype {s:?}")))?,
        Some(_) => return Err(bad("dtype is not a string".into())),
        None => return Err(bad("dtype is missing".into())),
    };
    let shape = match fields.get("shape") {
        Some(Value::Array(dims)) => dims
            .iter()
            .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
            .collect::<Option<Vec<usize>>>()
            .ok_or_else(|| bad("shape must be a list of non-negative integers".into()))?,
        Some(_) => return Err(bad("shape is not a list".into())),
        None => return Err(bad("shape is missing".into())),
    };
    let data_offsets = match fields.get("data_offsets") {
        Some(Value::Array(pair)) if pair.len() == 2 => {
            let off = |v: &Value| v.as_u64().and_then(|x| usize::try_from(x).ok());
            match (off(&pair[0]), off(&pair[1])) {
                (Some(s), Some(e)) => (s, e),
                _ => return Err(bad("data_offsets must be two non-negative integers".into())),
            }
        }
        Some(_) => return Err(bad("data_offsets must be a list of two integers".into())),
        None => return Err(bad("data_offsets is missing".into())),
    };
    Ok(HeaderTensor { name, dtype, shape, data_offsets })
}

/// Bytes that dtype x shape occupy; overflow or a partial byte is a header error.
fn byte_size(t: &HeaderTensor) -> Result<u64, HeaderError> {
    let overflow =
        || HeaderError::BadEntry { tensor: t.name.clone(), reason: format!("shape {:?} overflows", t.shape) };
    let elements = t.shape.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d as u64)).ok_or_else(overflow)?;
    let bits = elements.checked_mul(t.dtype.bitsize() as u64).ok_or_else(overflow)?;
    if bits % 8 != 0 {
        return Err(HeaderError::BadEntry {
            tensor: t.name.clone(),
            reason: format!("dtype {:?} x shape {:?} is not a whole number of bytes", t.dtype, t.shape),
        });
    }
    Ok(bits / 8)
}

/// Why a checkpoint could not be opened or read.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{dir}: no {SINGLE_FILE} and no {INDEX_FILE}")]
    NoWeights { dir: String },
    #[error("{index}: {reason}")]
    BadIndex { index: String, reason: String },
    #[error("{index}: shard {shard:?} is named in weight_map but does not exist")]
    ShardMissing { index: String, shard: String },
    #[error("{shard}: {source}")]
    Header {
        shard: String,
        #[source]
        source: HeaderError,
    },
    #[error("{shard}: tensor {tensor:?} has dtype {dtype:?}; only BF16, F16 and F32 are supported")]
    UnsupportedDtype { shard: String, tensor: String, dtype: safetensors::Dtype },
    #[error("{index}: tensor {tensor:?} is mapped to shard {shard:?}, which does not contain it")]
    TensorNotInShard { index: String, tensor: String, shard: String },
    #[error("no tensor named {0:?} in the checkpoint")]
    UnknownTensor(String),
    #[error("tensor {tensor:?} has {expected} elements, output buffer has {got}")]
    OutputLength { tensor: String, expected: usize, got: usize },
}

/// What the checkpoint says about one tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorMeta {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    /// Index into the shard list.
    shard: usize,
    /// Absolute byte range inside the shard file.
    range: (usize, usize),
}

impl TensorMeta {
    pub fn n_elements(&self) -> usize {
        // Validated against the data range at open time, so this cannot overflow.
        self.shape.iter().product()
    }
}

struct Shard {
    name: String,
    map: MappedFile,
}

/// An opened, validated checkpoint folder.
pub struct Checkpoint {
    dir: PathBuf,
    shards: Vec<Shard>,
    tensors: BTreeMap<String, TensorMeta>,
}

impl fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Checkpoint")
            .field("dir", &self.dir)
            .field("shards", &self.shards.iter().map(|s| &s.name).collect::<Vec<_>>())
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

/// Map a shard read-only (the runtime's mmap module holds the `unsafe`).
fn map_file(path: &Path) -> Result<MappedFile, CheckpointError> {
    MappedFile::open(path).map_err(|source| CheckpointError::Io { path: path.display().to_string(), source })
}

/// Shard names come from a JSON file: refuse anything that could escape the folder.
fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\']) && !name.contains('\0')
}

impl Checkpoint {
    /// Open `dir`: `model.safetensors` if present, else `model.safetensors.index.json` + shards.
    pub fn open(dir: &Path) -> Result<Checkpoint, CheckpointError> {
        let single = dir.join(SINGLE_FILE);
        let index = dir.join(INDEX_FILE);
        if single.is_file() {
            Self::open_single(dir, &single)
        } else if index.is_file() {
            Self::open_sharded(dir, &index)
        } else {
            Err(CheckpointError::NoWeights { dir: dir.display().to_string() })
        }
    }

    fn open_single(dir: &Path, path: &Path) -> Result<Checkpoint, CheckpointError> {
        let (shard, header) = load_shard(path, SINGLE_FILE)?;
        let mut tensors = BTreeMap::new();
        for t in header.tensors {
            let meta = tensor_meta(&t, 0, header.data_start, SINGLE_FILE)?;
            tensors.insert(t.name, meta);
        }
        Ok(Checkpoint { dir: dir.to_path_buf(), shards: vec![shard], tensors })
    }

    fn open_sharded(dir: &Path, index_path: &Path) -> Result<Checkpoint, CheckpointError> {
        let index = index_path.display().to_string();
        let bad = |reason: String| CheckpointError::BadIndex { index: index.clone(), reason };
        let text = std::fs::read_to_string(index_path)
            .map_err(|source| CheckpointError::Io { path: index.clone(), source })?;
        let root: Value = serde_json::from_str(&text).map_err(|e| bad(format!("invalid JSON: {e}")))?;
        let weight_map = match root.get("weight_map") {
            Some(Value::Object(m)) => m,
            Some(_) => return Err(bad("weight_map is not an object".into())),
            None => return Err(bad("weight_map is missing".into())),
        };
        let mut wanted: BTreeMap<&str, &str> = BTreeMap::new();
        for (tensor, shard) in weight_map {
            let Value::String(shard) = shard else {
                return Err(bad(format!("weight_map[{tensor:?}] is not a file name")));
            };
            if !is_plain_file_name(shard) {
                return Err(bad(format!("weight_map[{tensor:?}] = {shard:?} is not a plain file name")));
            }
            wanted.insert(tensor, shard);
        }
        if wanted.is_empty() {
            return Err(bad("weight_map is empty".into()));
        }

        let shard_names: BTreeSet<&str> = wanted.values().copied().collect();
        let mut shards = Vec::with_capacity(shard_names.len());
        let mut headers = Vec::with_capacity(shard_names.len());
        for name in &shard_names {
            let path = dir.join(name);
            if !path.is_file() {
                return Err(CheckpointError::ShardMissing { index: index.clone(), shard: name.to_string() });
            }
            let (shard, header) = load_shard(&path, name)?;
            shards.push(shard);
            headers.push(header);
        }

        let mut tensors = BTreeMap::new();
        for (shard_idx, (name, header)) in shard_names.iter().zip(&headers).enumerate() {
            for t in &header.tensors {
                match wanted.get(t.name.as_str()) {
                    Some(&s) if s == *name => {
                        tensors.insert(t.name.clone(), tensor_meta(t, shard_idx, header.data_start, name)?);
                    }
                    // Stored here but the index points elsewhere (or nowhere): HF loads by the
                    // index, so this copy is dead weight.
                    _ => {
                        tracing::warn!(shard = %name, tensor = %t.name, "tensor not mapped to this shard by the index; ignored")
                    }
                }
            }
        }
        for (tensor, shard) in &wanted {
            if !tensors.contains_key(*tensor) {
                return Err(CheckpointError::TensorNotInShard {
                    index: index.clone(),
                    tensor: tensor.to_string(),
                    shard: shard.to_string(),
                });
            }
        }
        Ok(Checkpoint { dir: dir.to_path_buf(), shards, tensors })
    }

    /// The folder this was opened from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Shard file names in load order (one entry for a single-file checkpoint).
    pub fn shard_names(&self) -> impl Iterator<Item = &str> {
        self.shards.iter().map(|s| s.name.as_str())
    }

    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// All tensors, sorted by name.
    pub fn tensors(&self) -> impl Iterator<Item = (&str, &TensorMeta)> {
        self.tensors.iter().map(|(n, m)| (n.as_str(), m))
    }

    pub fn get(&self, name: &str) -> Option<&TensorMeta> {
        self.tensors.get(name)
    }

    /// The shard file that holds `name`.
    pub fn shard_of(&self, name: &str) -> Option<&str> {
        self.tensors.get(name).map(|m| self.shards[m.shard].name.as_str())
    }

    fn meta(&self, name: &str) -> Result<&TensorMeta, CheckpointError> {
        self.tensors.get(name).ok_or_else(|| CheckpointError::UnknownTensor(name.to_string()))
    }

    /// The tensor's bytes as stored (little-endian), borrowed from the mapping.
    pub fn raw(&self, name: &str) -> Result<(Dtype, &[u8]), CheckpointError> {
        let m = self.meta(name)?;
        // Ranges were validated against the file length when the shard was opened.
        Ok((m.dtype, &self.shards[m.shard].map[m.range.0..m.range.1]))
    }

    /// Hint that bytes `[start, start + len)` of tensor `name` will not be read again soon, so their
    /// pages can leave the resident set (touching them again re-reads the file). Best effort: an
    /// unknown name, an out-of-range span or a refused hint is ignored.
    pub fn release(&self, name: &str, start: usize, len: usize) {
        let Some(m) = self.tensors.get(name) else {
            return;
        };
        let tensor_len = m.range.1 - m.range.0;
        if len == 0 || start >= tensor_len {
            return;
        }
        self.shards[m.shard].map.release(m.range.0 + start, len.min(tensor_len - start));
    }

    /// The tensor widened to f32 (exact for BF16 and F16).
    pub fn read_f32(&self, name: &str) -> Result<Vec<f32>, CheckpointError> {
        let n = self.meta(name)?.n_elements();
        let mut out = vec![0.0f32; n];
        self.read_f32_into(name, &mut out)?;
        Ok(out)
    }

    /// Like [`Checkpoint::read_f32`] into a caller-owned buffer of exactly `n_elements`.
    pub fn read_f32_into(&self, name: &str, out: &mut [f32]) -> Result<(), CheckpointError> {
        let (dtype, bytes) = self.raw(name)?;
        let expected = bytes.len() / dtype.size_in_bytes();
        if out.len() != expected {
            return Err(CheckpointError::OutputLength { tensor: name.to_string(), expected, got: out.len() });
        }
        widen_to_f32(dtype, bytes, out);
        Ok(())
    }
}

/// Elements per rayon task: big enough to amortise scheduling, small enough to spread the
/// embedding table over all cores.
const CHUNK: usize = 1 << 16;

/// Decode little-endian `bytes` of `dtype` into `out` (same element count).
pub fn widen_to_f32(dtype: Dtype, bytes: &[u8], out: &mut [f32]) {
    let width = dtype.size_in_bytes();
    out.par_chunks_mut(CHUNK).zip(bytes.par_chunks(CHUNK * width)).for_each(|(dst, src)| match dtype {
        Dtype::BF16 => {
            for (d, s) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *d = f32::from_bits(u32::from(u16::from_le_bytes([s[0], s[1]])) << 16);
            }
        }
        Dtype::F16 => {
            for (d, s) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *d = half::f16::from_bits(u16::from_le_bytes([s[0], s[1]])).to_f32();
            }
        }
        Dtype::F32 => {
            for (d, s) in dst.iter_mut().zip(src.chunks_exact(4)) {
                *d = f32::from_le_bytes([s[0], s[1], s[2], s[3]]);
            }
        }
    });
}

fn load_shard(path: &Path, name: &str) -> Result<(Shard, SafetensorsHeader), CheckpointError> {
    let map = map_file(path)?;
    let header = parse_safetensors_header(&map)
        .map_err(|source| CheckpointError::Header { shard: path.display().to_string(), source })?;
    Ok((Shard { name: name.to_string(), map }, header))
}

fn tensor_meta(
    t: &HeaderTensor,
    shard: usize,
    data_start: usize,
    shard_name: &str,
) -> Result<TensorMeta, CheckpointError> {
    let dtype = Dtype::from_safetensors(t.dtype).ok_or_else(|| CheckpointError::UnsupportedDtype {
        shard: shard_name.to_string(),
        tensor: t.name.clone(),
        dtype: t.dtype,
    })?;
    // Both ends are inside the file (validated by parse_safetensors_header).
    let range = (data_start + t.data_offsets.0, data_start + t.data_offsets.1);
    Ok(TensorMeta { dtype, shape: t.shape.clone(), shard, range })
}
