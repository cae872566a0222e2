//! GGUF v2/v3 files: a validating zero-copy reader and a streaming, atomic writer.
//!
//! Layout (ggml `docs/gguf.md`): magic, version, tensor count, KV count, KV pairs, tensor infos, padding to
//! `general.alignment`, then the tensor data, each tensor padded to the alignment.

pub mod names;
pub mod reader;
pub mod value;
pub mod writer;

use std::path::PathBuf;

pub use reader::{GgufFile, GgufHeader, TensorInfo};
pub use value::{Value, ValueType};
pub use writer::{GgufWriter, PendingFile, TensorSpec};

pub const MAGIC: [u8; 4] = *b"GGUF";
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml's `GGML_MAX_DIMS`.
pub const MAX_DIMS: usize = 4;
/// ggml's `GGML_MAX_NAME`: names must be shorter than this.
pub const MAX_NAME: usize = 64;
/// ggml's `GGUF_MAX_STRING_LENGTH` / `GGUF_MAX_ARRAY_ELEMENTS` caps (1 GiB).
pub const MAX_STRING_LEN: u64 = 1 << 30;
pub const MAX_ARRAY_LEN: u64 = 1 << 30;
pub const KEY_ALIGNMENT: &str = "general.alignment";

/// What is wrong with the bytes of a GGUF file. Offsets are absolute file offsets.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FormatError {
    #[error("file ends at byte {len} while reading {what} at offset {offset} ({need} bytes needed)")]
    Truncated { what: String, offset: u64, need: u64, len: u64 },
    #[error("not a GGUF file: magic is {found:02x?}, expected \"GGUF\"")]
    BadMagic { found: Vec<u8> },
    #[error("GGUF version {0} is not supported (only versions 2 and 3)")]
    UnsupportedVersion(u32),
    #[error("big-endian GGUF files are not supported")]
    BigEndian,
    #[error("{what} count {count} at offset {offset} cannot fit in the {remaining} bytes left in the file")]
    AbsurdCount { what: &'static str, count: u64, offset: u64, remaining: u64 },
    #[error("{what} at offset {offset}: length {len} runs past the end of the file ({remaining} bytes left)")]
    LengthPastEnd { what: String, offset: u64, len: u64, remaining: u64 },
    #[error("{what} at offset {offset}: length {len} exceeds ggml's limit of {limit}")]
    LengthOverLimit { what: String, offset: u64, len: u64, limit: u64 },
    #[error("{what} at offset {offset} is not valid UTF-8")]
    InvalidUtf8 { what: String, offset: u64 },
    #[error("key '{key}' at offset {offset}: unknown value type id {id}")]
    UnknownValueType { key: String, id: u32, offset: u64 },
    #[error("key '{key}' at offset {offset}: arrays of arrays are not supported")]
    NestedArray { key: String, offset: u64 },
    #[error("duplicate key '{key}' at offset {offset}")]
    DuplicateKey { key: String, offset: u64 },
    #[error("key 'general.alignment': {reason}")]
    BadAlignment { reason: String },
    #[error("tensor '{tensor}' at offset {offset}: {n_dims} dimensions (ggml allows 1 to 4)")]
    BadDimCount { tensor: String, n_dims: u32, offset: u64 },
    #[error("tensor '{tensor}' at offset {offset}: name is {len} bytes (ggml allows at most 63)")]
    NameTooLong { tensor: String, len: usize, offset: u64 },
    #[error("tensor '{tensor}' at offset {offset}: shape {dims:?} has too many elements")]
    ShapeOverflow { tensor: String, dims: Vec<u64>, offset: u64 },
    #[error("duplicate tensor name '{tensor}' at offset {offset}")]
    DuplicateTensor { tensor: String, offset: u64 },
    #[error("tensor '{tensor}' at offset {offset}: unknown ggml type id {id}")]
    UnknownType { tensor: String, id: u32, offset: u64 },
    #[error("tensor '{tensor}': first dimension {ne0} is not a multiple of the {ty} block size {block}")]
    NotBlockMultiple { tensor: String, ne0: u64, ty: String, block: u64 },
    #[error("tensor '{tensor}': data offset {offset} is not a multiple of the alignment {alignment}")]
    Misaligned { tensor: String, offset: u64, alignment: u64 },
    #[error("tensor '{tensor}': data [{start}, {end}) lies outside the file ({len} bytes)")]
    DataOutOfBounds { tensor: String, start: u64, end: u64, len: u64 },
    #[error("tensor '{tensor}': data [{start}, {end}) overlaps tensor '{other}'")]
    Overlap { tensor: String, other: String, start: u64, end: u64 },
}

/// Errors of the GGUF reader and writer, with the file they concern.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    Format { path: PathBuf, source: FormatError },
    #[error("{path}: {message}")]
    Write { path: PathBuf, message: String },
    #[error("{path}: tensor '{tensor}' not found")]
    MissingTensor { path: PathBuf, tensor: String },
    #[error("{path}: cancelled; no output was written")]
    Cancelled { path: PathBuf },
}

/// `o` rounded up to a multiple of `align` (a power of two).
pub fn align_up(o: u64, align: u64) -> u64 {
    o.div_ceil(align) * align
}
