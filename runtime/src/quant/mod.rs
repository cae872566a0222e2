//! Block formats: ggml-exact dequantization and reference quantization.
//!
//! [`dequantize`] is bit-exact with ggml's `to_float`; [`quantize`] is byte-identical with
//! `ggml_quantize_chunk(.., imatrix = NULL)` (the `quantize_row_*_ref` quantizers), so files we
//! write match llama.cpp's. Inputs are raw little-endian bytes of any alignment; lengths are checked
//! and reported as [`QuantError`], never by panicking.

mod blocks;
mod float;
mod kquants;
mod legacy;

pub use blocks::{
    BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ5K, BlockQ5_0, BlockQ5_1, BlockQ6K, BlockQ8_0, K_SCALE_SIZE, QK,
};
pub use float::{bf16_bits_to_f32, f16_bits_to_f32, f16_to_f32_vectorizable, f32_to_bf16_bits, f32_to_f16_bits};

use bytemuck::Pod;
use rayon::prelude::*;
use std::mem::size_of;

use crate::GgmlType;

#[derive(Debug, thiserror::Error)]
pub enum QuantError {
    #[error("tensor type {0} has no block format in this build")]
    Unsupported(GgmlType),
    #[error("{what}: {len} is not a whole number of {ty} blocks ({block} elements / {bytes} bytes each)")]
    Misaligned { ty: GgmlType, what: &'static str, len: usize, block: usize, bytes: usize },
    #[error("{ty}: {elements} elements need {expected} bytes, got {got}")]
    Size { ty: GgmlType, elements: usize, expected: usize, got: usize },
}

/// One ggml block type: how 32 or 256 floats become one `Pod` block and back.
pub(crate) trait BlockCodec: Pod {
    /// Elements per block.
    const ELEMS: usize;
    /// `x.len() == ELEMS`.
    fn quantize_block(x: &[f32]) -> Self;
    /// `y.len() == ELEMS`.
    fn dequantize_block(&self, y: &mut [f32]);
}

/// Dequantize `dst.len()` elements from the raw bytes `src` (exactly row_size bytes).
pub fn dequantize(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> Result<(), QuantError> {
    check(ty, "dst", dst.len(), src.len())?;
    dequantize_unchecked(ty, src, dst);
    Ok(())
}

/// Quantize `src` (a whole number of blocks) into `dst` (exactly row_size bytes).
pub fn quantize(ty: GgmlType, src: &[f32], dst: &mut [u8]) -> Result<(), QuantError> {
    check(ty, "src", src.len(), dst.len())?;
    quantize_unchecked(ty, src, dst);
    Ok(())
}

/// Same, many rows of `row_len` elements each, parallel over rows (rayon).
pub fn quantize_rows(ty: GgmlType, src: &[f32], row_len: usize, dst: &mut [u8]) -> Result<(), QuantError> {
    let row_bytes = check_rows(ty, row_len, "src", src.len())?;
    check(ty, "src", src.len(), dst.len())?;
    if row_len == 0 {
        return Ok(());
    }
    src.par_chunks(row_len).zip(dst.par_chunks_mut(row_bytes)).for_each(|(x, y)| quantize_unchecked(ty, x, y));
    Ok(())
}

/// Dequantize many rows of `row_len` elements each (`dst.len() / row_len` rows), parallel over rows.
pub fn dequantize_rows(ty: GgmlType, src: &[u8], row_len: usize, dst: &mut [f32]) -> Result<(), QuantError> {
    let row_bytes = check_rows(ty, row_len, "dst", dst.len())?;
    check(ty, "dst", dst.len(), src.len())?;
    if row_len == 0 {
        return Ok(());
    }
    src.par_chunks(row_bytes).zip(dst.par_chunks_mut(row_len)).for_each(|(x, y)| dequantize_unchecked(ty, x, y));
    Ok(())
}

/// Validate `elements` floats against `bytes` raw bytes for `ty`.
fn check(ty: GgmlType, what: &'static str, elements: usize, bytes: usize) -> Result<(), QuantError> {
    if !ty.is_supported_block_format() {
        return Err(QuantError::Unsupported(ty));
    }
    let expected = ty.row_size(elements).ok_or(QuantError::Misaligned {
        ty,
        what,
        len: elements,
        block: ty.block_size(),
        bytes: ty.type_size(),
    })?;
    if expected != bytes {
        return Err(QuantError::Size { ty, elements, expected, got: bytes });
    }
    Ok(())
}

/// Validate the row length and that `elements` is whole rows; returns the bytes per row.
fn check_rows(ty: GgmlType, row_len: usize, what: &'static str, elements: usize) -> Result<usize, QuantError> {
    if !ty.is_supported_block_format() {
        return Err(QuantError::Unsupported(ty));
    }
    let row_bytes = ty.row_size(row_len).ok_or(QuantError::Misaligned {
        ty,
        what: "row_len",
        len: row_len,
        block: ty.block_size(),
        bytes: ty.type_size(),
    })?;
    let whole_rows = if row_len == 0 { elements == 0 } else { elements.is_multiple_of(row_len) };
    if !whole_rows {
        // Reported in units of rows: `block`/`bytes` are one row's elements and bytes.
        return Err(QuantError::Misaligned {
            ty,
            what: if what == "src" { "src (whole rows)" } else { "dst (whole rows)" },
            len: elements,
            block: row_len,
            bytes: row_bytes,
        });
    }
    Ok(row_bytes)
}

/// Lengths already validated by [`check`].
fn dequantize_unchecked(ty: GgmlType, src: &[u8], dst: &mut [f32]) {
    use GgmlType::*;
    match ty {
        F32 => {
            for (y, b) in dst.iter_mut().zip(src.chunks_exact(4)) {
                *y = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        F16 => {
            #[cfg(target_arch = "aarch64")]
            if crate::kernels::float_neon() {
                // `fcvtl`: the same bits as below (tested for every half).
                return crate::kernels::aarch64::f16::f16_to_f32_row(src, dst);
            }
            // Branch-free, so this loop vectorizes (KV cache tiles, f16 weights): same bits as f16_bits_to_f32.
            for (y, b) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *y = f16_to_f32_vectorizable(u16::from_le_bytes([b[0], b[1]]));
            }
        }
        BF16 => {
            for (y, b) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *y = bf16_bits_to_f32(u16::from_le_bytes([b[0], b[1]]));
            }
        }
        Q4_0 => dequantize_blocks::<BlockQ4_0>(src, dst),
        Q4_1 => dequantize_blocks::<BlockQ4_1>(src, dst),
        Q5_0 => dequantize_blocks::<BlockQ5_0>(src, dst),
        Q5_1 => dequantize_blocks::<BlockQ5_1>(src, dst),
        Q8_0 => dequantize_blocks::<BlockQ8_0>(src, dst),
        Q4K => dequantize_blocks::<BlockQ4K>(src, dst),
        Q5K => dequantize_blocks::<BlockQ5K>(src, dst),
        Q6K => dequantize_blocks::<BlockQ6K>(src, dst),
        // Rejected by `check`.
        Q8_1 | Q2K | Q3K | Q8K | I8 | I16 | I32 | I64 | F64 => {}
    }
}

/// Lengths already validated by [`check`].
fn quantize_unchecked(ty: GgmlType, src: &[f32], dst: &mut [u8]) {
    use GgmlType::*;
    match ty {
        F32 => {
            for (b, x) in dst.chunks_exact_mut(4).zip(src) {
                b.copy_from_slice(&x.to_le_bytes());
            }
        }
        F16 => {
            #[cfg(target_arch = "aarch64")]
            if crate::kernels::float_neon() {
                // `fcvtn` with NaNs made canonical: the same bits as below (tested).
                return crate::kernels::aarch64::f16::f32_to_f16_row(src, dst);
            }
            for (b, &x) in dst.chunks_exact_mut(2).zip(src) {
                b.copy_from_slice(&f32_to_f16_bits(x).to_le_bytes());
            }
        }
        BF16 => {
            for (b, &x) in dst.chunks_exact_mut(2).zip(src) {
                b.copy_from_slice(&f32_to_bf16_bits(x).to_le_bytes());
            }
        }
        Q4_0 => quantize_blocks::<BlockQ4_0>(src, dst),
        Q4_1 => quantize_blocks::<BlockQ4_1>(src, dst),
        Q5_0 => quantize_blocks::<BlockQ5_0>(src, dst),
        Q5_1 => quantize_blocks::<BlockQ5_1>(src, dst),
        Q8_0 => quantize_blocks::<BlockQ8_0>(src, dst),
        Q4K => quantize_blocks::<BlockQ4K>(src, dst),
        Q5K => quantize_blocks::<BlockQ5K>(src, dst),
        Q6K => quantize_blocks::<BlockQ6K>(src, dst),
        Q8_1 | Q2K | Q3K | Q8K | I8 | I16 | I32 | I64 | F64 => {}
    }
}

fn dequantize_blocks<B: BlockCodec>(src: &[u8], dst: &mut [f32]) {
    let out = dst.chunks_exact_mut(B::ELEMS);
    // Zero-copy when the bytes happen to be 2-byte aligned (always, for GGUF tensor data);
    // otherwise read each block out unaligned.
    match bytemuck::try_cast_slice::<u8, B>(src) {
        Ok(blocks) => blocks.iter().zip(out).for_each(|(b, y)| b.dequantize_block(y)),
        Err(_) => src
            .chunks_exact(size_of::<B>())
            .zip(out)
            .for_each(|(raw, y)| bytemuck::pod_read_unaligned::<B>(raw).dequantize_block(y)),
    }
}

fn quantize_blocks<B: BlockCodec>(src: &[f32], dst: &mut [u8]) {
    for (x, out) in src.chunks_exact(B::ELEMS).zip(dst.chunks_exact_mut(size_of::<B>())) {
        out.copy_from_slice(bytemuck::bytes_of(&B::quantize_block(x)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUPPORTED: [GgmlType; 11] = [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::BF16,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::Q4K,
        GgmlType::Q5K,
        GgmlType::Q6K,
    ];

    #[test]
    fn supported_set_matches_ggml_type() {
        for ty in GgmlType::ALL {
            assert_eq!(SUPPORTED.contains(&ty), ty.is_supported_block_format(), "{ty}");
        }
    }

    #[test]
    fn block_sizes_match_type_sizes() {
        assert_eq!(size_of::<BlockQ4_0>(), GgmlType::Q4_0.type_size());
        assert_eq!(size_of::<BlockQ4_1>(), GgmlType::Q4_1.type_size());
        assert_eq!(size_of::<BlockQ5_0>(), GgmlType::Q5_0.type_size());
        assert_eq!(size_of::<BlockQ5_1>(), GgmlType::Q5_1.type_size());
        assert_eq!(size_of::<BlockQ8_0>(), GgmlType::Q8_0.type_size());
        assert_eq!(size_of::<BlockQ4K>(), GgmlType::Q4K.type_size());
        assert_eq!(size_of::<BlockQ5K>(), GgmlType::Q5K.type_size());
        assert_eq!(size_of::<BlockQ6K>(), GgmlType::Q6K.type_size());
    }

    #[test]
    fn unsupported_types_are_rejected() {
        for ty in GgmlType::ALL.into_iter().filter(|t| !SUPPORTED.contains(t)) {
            let n = ty.block_size();
            let mut bytes = vec![0u8; ty.type_size()];
            let mut floats = vec![0f32; n];
            assert!(matches!(
                quantize(ty, &floats, &mut bytes),
                Err(QuantError::Unsupported(t)) if t == ty
            ));
            assert!(matches!(
                dequantize(ty, &bytes, &mut floats),
                Err(QuantError::Unsupported(t)) if t == ty
            ));
            assert!(matches!(quantize_rows(ty, &floats, n, &mut bytes), Err(QuantError::Unsupported(_))));
            assert!(matches!(dequantize_rows(ty, &bytes, n, &mut floats), Err(QuantError::Unsupported(_))));
        }
    }

    #[test]
    fn misaligned_lengths_are_errors() {
        let src = vec![0f32; 33];
        let mut dst = vec![0u8; 18];
        let err = quantize(GgmlType::Q4_0, &src, &mut dst).unwrap_err();
        assert!(matches!(err, QuantError::Misaligned { what: "src", len: 33, block: 32, bytes: 18, .. }), "{err:?}");
        assert_eq!(err.to_string(), "src: 33 is not a whole number of q4_0 blocks (32 elements / 18 bytes each)");

        let mut out = vec![0f32; 100];
        let err = dequantize(GgmlType::Q4K, &[0u8; 144], &mut out).unwrap_err();
        assert!(matches!(err, QuantError::Misaligned { what: "dst", len: 100, .. }), "{err:?}");

        let err = quantize_rows(GgmlType::Q6K, &[0f32; 512], 100, &mut [0u8; 420]).unwrap_err();
        assert!(matches!(err, QuantError::Misaligned { what: "row_len", len: 100, .. }), "{err:?}");

        let err = quantize_rows(GgmlType::Q8_0, &[0f32; 96], 64, &mut [0u8; 102]).unwrap_err();
        assert!(matches!(err, QuantError::Misaligned { len: 96, block: 64, .. }), "{err:?}");

        let err = dequantize_rows(GgmlType::F16, &[0u8; 6], 2, &mut [0f32; 3]).unwrap_err();
        assert!(matches!(err, QuantError::Misaligned { len: 3, block: 2, .. }), "{err:?}");

        let err = dequantize_rows(GgmlType::F32, &[0u8; 4], 0, &mut [0f32; 1]).unwrap_err();
        assert!(matches!(err, QuantError::Misaligned { .. }), "{err:?}");
        dequantize_rows(GgmlType::F32, &[], 0, &mut []).unwrap();
    }

    #[test]
    fn wrong_buffer_sizes_are_errors() {
        let src = vec![0f32; 64];
        let err = quantize(GgmlType::Q4_0, &src, &mut [0u8; 35]).unwrap_err();
        assert!(matches!(err, QuantError::Size { elements: 64, expected: 36, got: 35, .. }), "{err:?}");
        assert_eq!(err.to_string(), "q4_0: 64 elements need 36 bytes, got 35");

        let err = dequantize(GgmlType::Q6K, &[0u8; 211], &mut [0f32; 256]).unwrap_err();
        assert!(matches!(err, QuantError::Size { expected: 210, got: 211, .. }), "{err:?}");

        let err = quantize_rows(GgmlType::BF16, &[0f32; 8], 4, &mut [0u8; 15]).unwrap_err();
        assert!(matches!(err, QuantError::Size { expected: 16, got: 15, .. }), "{err:?}");

        let err = dequantize_rows(GgmlType::Q5K, &[0u8; 176], 256, &mut [0f32; 512]).unwrap_err();
        assert!(matches!(err, QuantError::Size { expected: 352, got: 176, .. }), "{err:?}");
    }

    #[test]
    fn float_types_round_trip() {
        let specials = [
            0.0f32,
            -0.0,
            1.0,
            -65504.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            2f32.powi(-24),
            -3.0 * 2f32.powi(-20),
            f32::MIN_POSITIVE / 4.0,
            f32::NAN,
        ];
        let mut bytes = vec![0u8; 4 * specials.len()];
        let mut back = vec![0f32; specials.len()];
        quantize(GgmlType::F32, &specials, &mut bytes).unwrap();
        dequantize(GgmlType::F32, &bytes, &mut back).unwrap();
        for (a, b) in specials.iter().zip(&back) {
            assert_eq!(a.to_bits(), b.to_bits());
        }

        let mut half_bytes = vec![0u8; 2 * specials.len()];
        quantize(GgmlType::F16, &specials, &mut half_bytes).unwrap();
        dequantize(GgmlType::F16, &half_bytes, &mut back).unwrap();
        for (i, (&a, &b)) in specials.iter().zip(&back).enumerate() {
            match i {
                8 => assert_eq!(b.to_bits(), 0), // f32 subnormal underflows f16
                9 => assert!(b.is_nan()),
                _ => assert_eq!(a.to_bits(), b.to_bits(), "{a:e}"),
            }
        }

        quantize(GgmlType::BF16, &specials, &mut half_bytes).unwrap();
        dequantize(GgmlType::BF16, &half_bytes, &mut back).unwrap();
        for (i, (&a, &b)) in specials.iter().zip(&back).enumerate() {
            match i {
                // -65504 needs 11 significant bits; bf16 keeps 8 and rounds up to -65536.
                3 => assert_eq!(b, -65536.0),
                9 => assert!(b.is_nan()),
                _ => assert_eq!(a.to_bits(), b.to_bits(), "{a:e}"),
            }
        }
    }

    #[test]
    fn unaligned_input_decodes_like_aligned() {
        let x: Vec<f32> = (0..512).map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0).collect();
        for ty in [GgmlType::Q4_0, GgmlType::Q8_0, GgmlType::Q4K, GgmlType::Q6K] {
            let n = ty.row_size(x.len()).unwrap();
            let mut storage = vec![0u8; n + 1];
            quantize(ty, &x, &mut storage[1..]).unwrap();
            let mut a = vec![0f32; x.len()];
            dequantize(ty, &storage[1..], &mut a).unwrap();
            let aligned = storage[1..].to_vec();
            let mut b = vec![0f32; x.len()];
            dequantize(ty, &aligned, &mut b).unwrap();
            assert_eq!(a, b, "{ty}");
        }
    }
}
