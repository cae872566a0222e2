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

impl<'a> Meta<'a> {
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

    pub fn str(&self, key: &str) -> Result<&'a str, ModelError> {
        self.file.get(key).and_then(Value::as_str).ok_or_else(|| self.err(key))
    }

    /// The value, or `default` when the key is absent; a present key of another type is an error, never a
    /// silent default (so is every `_or` and `_opt` accessor here).
    pub fn str_or(&self, key: &str, default: &'a str) -> Result<&'a str, ModelError> {
        if self.file.get(key).is_none() {
            return Ok(default);
        }
        self.str(key)
    }

    pub fn str_opt(&self, key: &str) -> Result<Option<&'a str>, ModelError> {
        self.file.get(key).map(|_| self.str(key)).transpose()
    }

    pub fn u32_opt(&self, key: &str) -> Result<Option<u32>, ModelError> {
        self.file.get(key).map(|_| self.u32(key)).transpose()
    }

    pub fn bool_or(&self, key: &str, default: bool) -> Result<bool, ModelError> {
        match self.file.get(key) {
            None => Ok(default),
            Some(v) => v.as_bool().ok_or_else(|| self.err(key)),
        }
    }

    /// A 3-element float array (per-channel mean or std), or `default` when absent.
    pub fn f32x3_or(&self, key: &str, default: [f32; 3]) -> Result<[f32; 3], ModelError> {
        let Some(v) = self.file.get(key) else { return Ok(default) };
        let values: Option<Vec<f32>> = v.as_array().and_then(|a| a.iter().map(Value::as_f32).collect());
        values.and_then(|v| <[f32; 3]>::try_from(v).ok()).ok_or_else(|| self.err(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::GgufWriter;

    /// A key of the wrong type is an error naming file and key, never the default; an absent key is the
    /// default.
    #[test]
    fn metadata_of_the_wrong_type_is_an_error_not_a_default() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.gguf");
        let kv = |k: &str, v: Value| (k.to_string(), v);
        let metadata = vec![
            kv("n", Value::U32(7)),
            kv("text", Value::U32(3)),
            kv("flag", Value::String("yes".into())),
            kv("mean", Value::f32s([0.5, 0.25])),
            kv("mean3", Value::f32s([0.5, 0.25, 0.125])),
            kv("s", Value::String("v1".into())),
        ];
        GgufWriter::create(&path, &metadata, vec![]).unwrap().finish().unwrap();
        let file = GgufFile::open(&path).unwrap();
        let m = Meta { file: &file };
        let wrong = |e: ModelError, key: &str| {
            let msg = e.to_string();
            assert!(msg.contains(key) && msg.contains("meta.gguf") && msg.contains("wrong type"), "{msg}");
        };
        assert_eq!(m.u32_or("n", 1).unwrap(), 7);
        assert_eq!(m.u32_or("absent", 1).unwrap(), 1);
        assert_eq!(m.u32_opt("absent").unwrap(), None);
        wrong(m.str_or("text", "v2").unwrap_err(), "text");
        wrong(m.str_opt("text").unwrap_err(), "text");
        assert_eq!(m.str_or("s", "v2").unwrap(), "v1");
        assert_eq!(m.str_or("absent", "v2").unwrap(), "v2");
        wrong(m.bool_or("flag", true).unwrap_err(), "flag");
        assert!(m.bool_or("absent", true).unwrap());
        wrong(m.u32_opt("s").unwrap_err(), "s");
        wrong(m.f32x3_or("mean", [0.0; 3]).unwrap_err(), "mean");
        assert_eq!(m.f32x3_or("mean3", [0.0; 3]).unwrap(), [0.5, 0.25, 0.125]);
        assert_eq!(m.f32x3_or("absent", [1.0; 3]).unwrap(), [1.0; 3]);
    }
}
