//! SAIL-VL2, component by component, as the spec writes it: SAIL-ViT encoder, pixel-shuffle projector,
//! Qwen3 decoder.

pub mod decoder;
pub mod experts;
pub mod moe;
pub mod projector;
pub mod sampler;
pub mod vision;

use crate::gguf::{GgufFile, Value};
use crate::tensor::WeightError;

pub use experts::{ExpertStats, ExpertUsage, LoadOptions};

/// Errors loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Weight(#[from] WeightError),
    #[error(transparent)]
    Gguf(#[from] crate::gguf::GgufError),
    #[error("{file}: metadata '{key}' is missing or has the wrong type")]
    Metadata { file: String, key: String },
    #[error("{file}: {message}")]
    Unsupported { file: String, message: String },
    #[error("{0}")]
    Input(String),
    /// A cancellation check (see [`crate::engine::CancelToken`]) said stop; whatever the call appended was
    /// taken back.
    #[error("cancelled")]
    Cancelled,
}

/// Typed access to a file's metadata, with errors naming file and key.
pub(crate) struct Meta<'a> {
    pub file: &'a GgufFile,
}

impl Meta<'_> {
    fn err(&self, key: &str) -> ModelError {
        ModelError::Metadata { file: self.file.path().display().to_string(), key: key.to_string() }
    }

    pub fn u32(&self, key: &str) -> Result<u32, ModelError> {
        self.file.get(key).and_then(Value::as_u64).and_then(|v| u32::try_from(v).ok()).ok_or_else(|| self.err(key))
    }

    pub fn u32_or(&self, key: &str, default: u32) -> Result<u32, ModelError> {
        if self.file.get(key).is_none() {
            return Ok(default);
        }
        self.u32(key)
    }

    pub fn i32_or(&self, key: &str, default: i32) -> Result<i32, ModelError> {
        match self.file.get(key) {
            None => Ok(default),
            Some(v) => v.as_i64().and_then(|v| i32::try_from(v).ok()).ok_or_else(|| self.err(key)),
        }
    }

    pub fn f32(&self, key: &str) -> Result<f32, ModelError> {
        self.file.get(key).and_then(Value::as_f32).ok_or_else(|| self.err(key))
    }

    pub fn f32_or(&self, key: &str, default: f32) -> Result<f32, ModelError> {
        if self.file.get(key).is_none() {
            return Ok(default);
        }
        self.f32(key)
    }

    pub fn str(&self, key: &str) -> Result<&str, ModelError> {
        self.file.get(key).and_then(Value::as_str).ok_or_else(|| self.err(key))
    }
}
