//! `#[repr(C)]` mirrors of ggml's `block_*` structs (`ggml-common.h`), so kernels can view GGUF tensor
//! data zero-copy with `bytemuck`. Every struct is `Pod` with no padding; the size asserts pin the on-disk
//! layout. Scales are stored as raw `f16` exactly as ggml stores `ggml_half`.

use bytemuck::{Pod, Zeroable};
use half::f16;
use std::mem::{align_of, size_of};

use crate::QK_K;

/// Elements per legacy (non-K) block.
pub const QK: usize = 32;

/// `block_q4_0`: 32 weights as `d * (q - 8)`, q in 0..16.
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ4_0 {
    pub d: f16,
    /// Low nibble: element `j`; high nibble: element `j + 16`.
    pub qs: [u8; QK / 2],
}

/// `block_q4_1`: 32 weights as `d * q + m`, q in 0..16.
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ4_1 {
    pub d: f16,
    pub m: f16,
    pub qs: [u8; QK / 2],
}

/// `block_q5_0`: 32 weights as `d * (q - 16)`, q in 0..32; the fifth bits live in `qh`.
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ5_0 {
    pub d: f16,
    /// Bit `j` of the little-endian u32: fifth bit of element `j`.
    pub qh: [u8; 4],
    pub qs: [u8; QK / 2],
}

/// `block_q5_1`: 32 weights as `d * q + m`, q in 0..32.
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ5_1 {
    pub d: f16,
    pub m: f16,
    pub qh: [u8; 4],
    pub qs: [u8; QK / 2],
}

/// `block_q8_0`: 32 weights as `d * q`, q signed 8-bit.
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ8_0 {
    pub d: f16,
    pub qs: [i8; QK],
}

/// Bytes of packed 6-bit scales and mins in a Q4_K/Q5_K super-block.
pub const K_SCALE_SIZE: usize = 12;

/// `block_q4_K`: 8 sub-blocks of 32; weight = `d * sc * q - dmin * m`, with 6-bit `sc`/`m`.
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ4K {
    pub d: f16,
    pub dmin: f16,
    pub scales: [u8; K_SCALE_SIZE],
    pub qs: [u8; QK_K / 2],
}

/// `block_q5_K`: like Q4_K plus a fifth bit per weight in `qh`.
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ5K {
    pub d: f16,
    pub dmin: f16,
    pub scales: [u8; K_SCALE_SIZE],
    pub qh: [u8; QK_K / 8],
    pub qs: [u8; QK_K / 2],
}

/// `block_q6_K`: 16 sub-blocks of 16; weight = `d * scales[i] * (q - 32)`, q 6-bit (low 4 in `ql`,
/// high 2 in `qh`). `d` comes last in ggml's layout.
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ6K {
    pub ql: [u8; QK_K / 2],
    pub qh: [u8; QK_K / 4],
    pub scales: [i8; QK_K / 16],
    pub d: f16,
}

// Byte layouts must equal `sizeof(block_*)` in ggml-common.h (and `GgmlType::type_size`).
const _: () = assert!(size_of::<BlockQ4_0>() == 18);
const _: () = assert!(size_of::<BlockQ4_1>() == 20);
const _: () = assert!(size_of::<BlockQ5_0>() == 22);
const _: () = assert!(size_of::<BlockQ5_1>() == 24);
const _: () = assert!(size_of::<BlockQ8_0>() == 34);
const _: () = assert!(size_of::<BlockQ4K>() == 144);
const _: () = assert!(size_of::<BlockQ5K>() == 176);
const _: () = assert!(size_of::<BlockQ6K>() == 210);
// 2-byte alignment (from `f16`): GGUF's 32-byte tensor alignment is always enough for a direct cast.
const _: () = assert!(align_of::<BlockQ4K>() == 2 && align_of::<BlockQ6K>() == 2);
