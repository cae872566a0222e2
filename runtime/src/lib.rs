//! sail-edge runtime: GGUF files mapped in place, tensor views and ggml block formats.

pub mod backend;
pub mod bench;
pub mod boards;
pub mod engine;
pub mod ggml_type;
pub mod gguf;
pub mod host;
pub mod image;
pub mod kernels;
pub mod mmap;
pub mod model;
pub mod pipeline;
pub mod quant;
pub mod repack;
pub mod tensor;
pub mod tokenizer;
#[cfg(feature = "vulkan")]
pub mod vulkan;

pub use ggml_type::{GgmlType, QK_K};
