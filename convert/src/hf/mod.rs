//! Reading a Hugging Face SAIL-VL2 checkpoint folder: config, preprocessing settings, tensors
//! and tokenizer, each validated with errors that name the file, key or tensor at fault.

pub mod checkpoint;
pub mod config;
pub mod preprocess;
pub mod tokenizer;

pub use checkpoint::{
    parse_safetensors_header, Checkpoint, CheckpointError, Dtype, HeaderError, SafetensorsHeader, TensorMeta,
};
pub use config::{
    ConfigError, LlmArch, LlmConfig, MoeConfig, PixelShuffleVersion, SailVlConfig, SpecialTokenIds, TokenIds,
    VisionConfig,
};
pub use preprocess::PreprocessConfig;
pub use tokenizer::{ChatTemplateSource, HfTokenizer, ImageTokenIds, TokenType, TokenizerError, TokenizerMetadata};

/// Name of the model config inside a checkpoint folder.
pub const CONFIG_JSON: &str = "config.json";
