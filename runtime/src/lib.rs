//! sail-edge runtime: GGUF files mapped in place, tensor views and ggml block formats.

pub mod ggml_type;
pub mod gguf;
pub mod mmap;
pub mod quant;

pub use ggml_type::{GgmlType, QK_K};
