//! Q4_0 weights repacked 8 rows at a time (`q4_0x8`), the layout of the optional repack cache (see
//! [`crate::repack`]).
//!
//! Decoding reads each weight once per token, so its speed is the rate at which a core turns weight bytes
//! into dot products. Row by row, a Q4_0 block costs a scale gather and a horizontal reduction on top of
//! its one integer dot; with 8 rows interleaved, one vector holds 4 consecutive weights of each of the 8
//! rows, so the integer step leaves each row's sum in its own lane, the 8 scales arrive in one load, and
//! nothing is reduced across lanes. The weights are still read front to back as one stream.
//!
//! Layout of a group of 8 rows of `kb` Q4_0 blocks: `kb` interleaved blocks of [`X8_BLOCK_BYTES`] = 144
//! bytes (the 8 rows' 8 × 18 bytes, reordered). Interleaved block `b`:
//! - bytes `0..16`: the 8 rows' fp16 scales `d`, row 0 first (little-endian, as in Q4_0);
//! - bytes `16 + 32c + 4r + t` (`c` < 4, `r` < 8, `t` < 4): byte `4c + t` of row `r`'s 16 packed nibble
//!   bytes, i.e. element `4c + t` in the low nibble and element `16 + 4c + t` in the high nibble.
//!
//! Every output is bit-identical to [`super::scalar::dot_q4_0`] of its row: the integer sums are exact and
//! each row's lane adds `isum · (d_w · d_x)` block after block, as the scalar dot does.

use super::scalar::Q8Block;

/// Rows per interleaved group.
pub const X8_ROWS: usize = 8;
/// Bytes of one Q4_0 block.
const Q4_0_BYTES: usize = 18;
/// Bytes of one interleaved block (8 Q4_0 blocks).
pub const X8_BLOCK_BYTES: usize = X8_ROWS * Q4_0_BYTES;

/// Repack 8 consecutive Q4_0 rows of `kb` blocks (`rows`: `8 · kb · 18` bytes, row-major as in the GGUF
/// file) into one interleaved group (`out`: the same number of bytes).
pub fn interleave_q4_0x8(rows: &[u8], kb: usize, out: &mut [u8]) {
    let row_bytes = kb * Q4_0_BYTES;
    assert_eq!(rows.len(), X8_ROWS * row_bytes, "interleave: 8 rows of {kb} Q4_0 blocks");
    assert_eq!(out.len(), rows.len(), "interleave: output size");
    for (b, dst) in out.chunks_exact_mut(X8_BLOCK_BYTES).enumerate() {
        for r in 0..X8_ROWS {
            let src = &rows[r * row_bytes + b * Q4_0_BYTES..r * row_bytes + (b + 1) * Q4_0_BYTES];
            dst[2 * r..2 * r + 2].copy_from_slice(&src[..2]);
            for c in 0..4 {
                let at = 16 + 32 * c + 4 * r;
                dst[at..at + 4].copy_from_slice(&src[2 + 4 * c..2 + 4 * c + 4]);
            }
        }
    }
}

/// The inverse of [`interleave_q4_0x8`]: 8 Q4_0 rows back from one group (batches reuse the row kernels).
pub fn deinterleave_q4_0x8(group: &[u8], kb: usize, out: &mut [u8]) {
    let row_bytes = kb * Q4_0_BYTES;
    assert_eq!(group.len(), X8_ROWS * row_bytes, "deinterleave: one group of {kb} blocks");
    assert_eq!(out.len(), group.len(), "deinterleave: output size");
    for (b, src) in group.chunks_exact(X8_BLOCK_BYTES).enumerate() {
        for r in 0..X8_ROWS {
            let dst = &mut out[r * row_bytes + b * Q4_0_BYTES..r * row_bytes + (b + 1) * Q4_0_BYTES];
            dst[..2].copy_from_slice(&src[2 * r..2 * r + 2]);
            for c in 0..4 {
                let at = 16 + 32 * c + 4 * r;
                dst[2 + 4 * c..2 + 4 * c + 4].copy_from_slice(&src[at..at + 4]);
            }
        }
    }
}

/// `out[g · 8 + r]` = row `r` of group `g` · `x`, for `groups` (whole groups of `kb` blocks) against one
/// activation row of `kb` Q8_0 blocks. The scalar twin of the SIMD kernels.
pub fn gemv_q4_0x8(groups: &[u8], x: &[Q8Block], kb: usize, out: &mut [f32]) {
    let group_bytes = kb * X8_BLOCK_BYTES;
    assert!(x.len() >= kb && groups.len() == out.len() / X8_ROWS * group_bytes && out.len().is_multiple_of(X8_ROWS));
    for (g, o) in groups.chunks_exact(group_bytes).zip(out.chunks_exact_mut(X8_ROWS)) {
        let mut sum = [0f32; X8_ROWS];
        for (blk, xb) in g.chunks_exact(X8_BLOCK_BYTES).zip(x) {
            for (r, s) in sum.iter_mut().enumerate() {
                let mut isum = 0i32;
                for c in 0..4 {
                    for t in 0..4 {
                        let byte = blk[16 + 32 * c + 4 * r + t];
                        isum += ((byte & 0x0F) as i32 - 8) * xb.qs[4 * c + t] as i32;
                        isum += ((byte >> 4) as i32 - 8) * xb.qs[16 + 4 * c + t] as i32;
                    }
                }
                let d = crate::quant::f16_bits_to_f32(u16::from_le_bytes([blk[2 * r], blk[2 * r + 1]]));
                *s += isum as f32 * (d * xb.d);
            }
        }
        o.copy_from_slice(&sum);
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::kernels::scalar::{self, quantize_q8_0_activations};
    use crate::quant;
    use crate::GgmlType;

    fn q4_0_rows(rng: &mut SmallRng, m: usize, k: usize) -> Vec<u8> {
        let wf: Vec<f32> = (0..m * k).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
        let mut bytes = vec![0u8; GgmlType::Q4_0.row_size(k).unwrap() * m];
        quant::quantize_rows(GgmlType::Q4_0, &wf, k, &mut bytes).unwrap();
        bytes
    }

    #[test]
    fn interleaving_round_trips_and_the_scalar_kernel_equals_the_row_dots() {
        let mut rng = SmallRng::seed_from_u64(21);
        for kb in [1usize, 3, 64] {
            let k = kb * 32;
            let rows = q4_0_rows(&mut rng, 16, k);
            let mut packed = vec![0u8; rows.len()];
            for (src, dst) in rows.chunks(8 * kb * 18).zip(packed.chunks_mut(8 * kb * 18)) {
                interleave_q4_0x8(src, kb, dst);
            }
            assert_ne!(packed, rows, "kb={kb}: the layout differs from the rows");
            let mut back = vec![0u8; rows.len()];
            for (src, dst) in packed.chunks(8 * kb * 18).zip(back.chunks_mut(8 * kb * 18)) {
                deinterleave_q4_0x8(src, kb, dst);
            }
            assert_eq!(back, rows, "kb={kb}: deinterleave ∘ interleave");
            let xf: Vec<f32> = (0..k).map(|_| rng.gen_range(-2.0f32..2.0)).collect();
            let x = quantize_q8_0_activations(&xf);
            let mut out = vec![0f32; 16];
            gemv_q4_0x8(&packed, &x, kb, &mut out);
            for (r, o) in out.iter().enumerate() {
                let want = scalar::dot_q4_0(&rows[r * kb * 18..(r + 1) * kb * 18], &x);
                assert_eq!(o.to_bits(), want.to_bits(), "kb={kb} row {r}: {o} vs {want}");
            }
        }
    }
}
