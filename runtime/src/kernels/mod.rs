//! Compute kernels behind one boundary, so that SIMD paths and other backends (Vulkan) can slot in under
//! the same calls. This module holds the portable scalar reference; every faster path must match it.

pub mod scalar;

pub use scalar::{
    add_bias, add_in_place, attention, gelu_erf, layer_norm, matmul, rms_norm, rms_norm_heads, rope_half_split,
    silu_mul, softmax_in_place,
};
