//! sail-edge converter: a Hugging Face SAIL-VL2 checkpoint folder → a language-model GGUF in llama.cpp's
//! naming plus an mmproj GGUF with the vision tower, projector and preprocessing parameters.

pub mod convert;
pub mod hf;
#[cfg(feature = "hub")]
pub mod hub;
pub mod mapping;
pub mod metadata;
pub mod source;
pub mod synth;

use std::path::PathBuf;

pub use convert::{convert, ConvertOptions, ConvertSummary, FileSummary};

#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error(transparent)]
    Config(#[from] hf::config::ConfigError),
    #[error(transparent)]
    Checkpoint(#[from] hf::checkpoint::CheckpointError),
    #[error(transparent)]
    Tokenizer(#[from] hf::tokenizer::TokenizerError),
    #[error("{dir}: tensor '{tensor}' is missing from the checkpoint")]
    MissingTensor { tensor: String, dir: PathBuf },
    #[error("tensor '{tensor}': shape {found:?} does not match config.json (expected {expected:?})")]
    ShapeMismatch { tensor: String, expected: Vec<usize>, found: Vec<usize> },
    #[error("{dir}: tensor '{tensor}' is not part of a SAIL-VL2 checkpoint as this converter knows it")]
    UnexpectedTensor { tensor: String, dir: PathBuf },
    #[error(transparent)]
    Write(#[from] quantize::Error),
}
