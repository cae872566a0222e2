//! sail-edge quantization: per-tensor type recipes and the GGUF → GGUF re-quantizer.

pub mod pipeline;
pub mod recipe;
pub mod requant;

pub use pipeline::{write_tensors, Part, PlannedTensor, SourceError, TensorSource};
pub use recipe::{Mix, ModelShape};
pub use requant::{quantize_file, QuantizeOptions, QuantizeSummary};

use runtime::gguf::GgufError;
use runtime::quant::QuantError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error("tensor '{tensor}': {source}")]
    Source { tensor: String, source: SourceError },
    #[error("tensor '{tensor}': {source}")]
    Quant { tensor: String, source: QuantError },
    #[error("tensor '{tensor}': {message}")]
    Plan { tensor: String, message: String },
    #[error("{path}: {message}")]
    Input { path: std::path::PathBuf, message: String },
}
