//! Weights repacked 8 rows at a time, the layouts of the optional repack cache (see [`crate::repack`]):
//! `q4_0x8` for Q4_0, `q8_0x8` for Q8_0, `q4_kx8` for Q4_K and `q6_kx8` for Q6_K.
//!
//! Decoding reads each weight once per token, so its speed is the rate at which a core turns weight bytes
//! into dot products. Row by row, every block costs scale gathers (and for Q4_K the unpacking of 6-bit
//! scales) and a horizontal reduction on top of its integer dot; with 8 rows interleaved, one vector holds
//! 4 consecutive weights of each of the 8 rows, so the integer step leaves each row's sum in its own lane,
//! the 8 rows' scales arrive in a few loads, and nothing is reduced across lanes. The weights are still
//! read front to back as one stream, and a group of 8 rows takes exactly the bytes of those rows, so row
//! ranges of whole groups sit at the same offsets as in the model.
//!
//! `q4_0x8`, a group of 8 rows of `kb` Q4_0 blocks: `kb` interleaved blocks of [`Q4_0_X8_BLOCK_BYTES`] =
//! 144 bytes (the 8 rows' 8 × 18 bytes, reordered). Interleaved block `b`:
//! - bytes `0..16`: the 8 rows' fp16 scales `d`, row 0 first (little-endian, as in Q4_0);
//! - bytes `16 + 32c + 4r + t` (`c` < 4, `r` < 8, `t` < 4): byte `4c + t` of row `r`'s 16 packed nibble
//!   bytes, i.e. element `4c + t` in the low nibble and element `16 + 4c + t` in the high nibble.
//!
//! `q8_0x8`: the same with Q8_0's 32 bytes ([`Q8_0_X8_BLOCK_BYTES`] = 272): bytes `0..16` the scales,
//! bytes `16 + 32c + 4r + t` (`c` < 8) element `4c + t` of row `r`.
//!
//! `q4_kx8`, a group of 8 rows of `kb` Q4_K super-blocks: `kb` interleaved super-blocks of
//! [`Q4_K_X8_BLOCK_BYTES`] = 1152 bytes (8 × 144). Interleaved super-block `b`:
//! - bytes `0..16`: the 8 rows' fp16 `d`; `16..32`: their fp16 `dmin`;
//! - bytes `32 + 8k + r` (`k` < 12): byte `k` of row `r`'s 12 bytes of packed 6-bit scales and mins;
//! - bytes `128 + 256c + 32g + 4r + t` (`c` < 4, `g` < 8, `t` < 4): byte `32c + 4g + t` of row `r`'s 128
//!   nibble bytes: element `4g + t` of sub-block `2c` (low nibble) and of sub-block `2c + 1` (high).
//!
//! `q6_kx8`, a group of 8 rows of `kb` Q6_K super-blocks: `kb` interleaved super-blocks of
//! [`Q6_K_X8_BLOCK_BYTES`] = 1680 bytes (8 × 210). Interleaved super-block `b`:
//! - bytes `0..16`: the 8 rows' fp16 `d`;
//! - bytes `16 + 8k + r` (`k` < 16): row `r`'s signed 8-bit scale `k`;
//! - bytes `144 + 96u ..` (`u = 8h + g`, `h` < 2, `g` < 8): three 32-byte runs, each 4 bytes of the 8
//!   rows (`+ 4r + t`): `ql` bytes `64h + 4g + t`, `ql` bytes `64h + 32 + 4g + t` and `qh` bytes
//!   `32h + 4g + t` — group `g` of all four quarters of half `h`, so decoding reads the block front to back.
//!
//! Every output is bit-identical to the scalar row dot of its row ([`super::scalar::dot_q4_0`],
//! [`super::scalar::dot_q8_0`], [`super::kquants::dot_q4_k`], [`super::kquants::dot_q6_k`]): the integer
//! sums are exact and each row's lane takes the scalar dot's float steps block after block.

use super::kquants::{Q8KBlock, Q4_K_BYTES, Q6_K_BYTES};
use super::scalar::Q8Block;
use crate::GgmlType;

/// Rows per interleaved group.
pub const X8_ROWS: usize = 8;
/// Bytes of one interleaved Q4_0 block (8 Q4_0 blocks of 18 bytes).
pub const Q4_0_X8_BLOCK_BYTES: usize = X8_ROWS * 18;
/// Bytes of one interleaved Q8_0 block (8 Q8_0 blocks of 34 bytes).
pub const Q8_0_X8_BLOCK_BYTES: usize = X8_ROWS * 34;
/// Bytes of one interleaved Q4_K super-block (8 Q4_K super-blocks).
pub const Q4_K_X8_BLOCK_BYTES: usize = X8_ROWS * Q4_K_BYTES;
/// Bytes of one interleaved Q6_K super-block (8 Q6_K super-blocks).
pub const Q6_K_X8_BLOCK_BYTES: usize = X8_ROWS * Q6_K_BYTES;

/// Whether `ty` has an 8-row interleaved layout.
pub fn has_x8_layout(ty: GgmlType) -> bool {
    matches!(ty, GgmlType::Q4_0 | GgmlType::Q8_0 | GgmlType::Q4K | GgmlType::Q6K)
}

/// Where byte `i` of row `r`'s block goes in the interleaved block (the layouts above).
fn position(ty: GgmlType, r: usize, i: usize) -> usize {
    match ty {
        // Q4_0's 16 nibble bytes and Q8_0's 32 bytes alike, in runs of 4 bytes of the 8 rows.
        GgmlType::Q4_0 | GgmlType::Q8_0 => match i {
            0..2 => 2 * r + i,
            _ => {
                let q = i - 2;
                16 + 32 * (q / 4) + 4 * r + q % 4
            }
        },
        GgmlType::Q4K => match i {
            0..2 => 2 * r + i,
            2..4 => 16 + 2 * r + (i - 2),
            4..16 => 32 + 8 * (i - 4) + r,
            _ => {
                let q = i - 16;
                128 + 32 * (q / 4) + 4 * r + q % 4
            }
        },
        GgmlType::Q6K => match i {
            0..128 => {
                // ql group G = 16h + 8kk + g sits in run kk of unit 8h + g.
                let (group, t) = (i / 4, i % 4);
                let (h, kk, g) = (group / 16, (group % 16) / 8, group % 8);
                144 + 96 * (8 * h + g) + 32 * kk + 4 * r + t
            }
            128..192 => {
                // qh group H = 8h + g is run 2 of unit H.
                let (group, t) = ((i - 128) / 4, (i - 128) % 4);
                144 + 96 * group + 64 + 4 * r + t
            }
            192..208 => 16 + 8 * (i - 192) + r,
            _ => 2 * r + (i - 208),
        },
        _ => unreachable!("{ty} has no interleaved layout"),
    }
}

/// Repack 8 consecutive rows of `kb` blocks of `ty` (`rows`: row-major as in the GGUF file) into one
/// interleaved group (`out`: the same number of bytes).
pub fn interleave_x8(ty: GgmlType, rows: &[u8], kb: usize, out: &mut [u8]) {
    assert!(has_x8_layout(ty), "{ty} has no interleaved layout");
    let (bb, row_bytes) = (ty.type_size(), kb * ty.type_size());
    assert_eq!(rows.len(), X8_ROWS * row_bytes, "interleave: 8 rows of {kb} {ty} blocks");
    assert_eq!(out.len(), rows.len(), "interleave: output size");
    for (b, dst) in out.chunks_exact_mut(X8_ROWS * bb).enumerate() {
        for r in 0..X8_ROWS {
            for (i, &v) in rows[r * row_bytes + b * bb..r * row_bytes + (b + 1) * bb].iter().enumerate() {
                dst[position(ty, r, i)] = v;
            }
        }
    }
}

/// The inverse of [`interleave_x8`]: 8 rows back from one group (for kernels that read rows).
pub fn deinterleave_x8(ty: GgmlType, group: &[u8], kb: usize, out: &mut [u8]) {
    assert!(has_x8_layout(ty), "{ty} has no interleaved layout");
    let (bb, row_bytes) = (ty.type_size(), kb * ty.type_size());
    assert_eq!(group.len(), X8_ROWS * row_bytes, "deinterleave: one group of {kb} {ty} blocks");
    assert_eq!(out.len(), group.len(), "deinterleave: output size");
    for (b, src) in group.chunks_exact(X8_ROWS * bb).enumerate() {
        for r in 0..X8_ROWS {
            for (i, v) in out[r * row_bytes + b * bb..r * row_bytes + (b + 1) * bb].iter_mut().enumerate() {
                *v = src[position(ty, r, i)];
            }
        }
    }
}

/// `out[g · 8 + r]` = row `r` of Q4_0 or Q8_0 group `g` · `x`, for `groups` (whole groups of `kb` blocks)
/// against one activation row of `kb` Q8_0 blocks. The scalar twin of the SIMD kernels.
pub fn gemv_int8_x8(ty: GgmlType, groups: &[u8], x: &[Q8Block], kb: usize, out: &mut [f32]) {
    let dot = match ty {
        GgmlType::Q4_0 => super::scalar::dot_q4_0,
        GgmlType::Q8_0 => super::scalar::dot_q8_0,
        _ => panic!("gemv_int8_x8: {ty} is not Q4_0 or Q8_0"),
    };
    gemv_by_blocks(ty, groups, x, kb, out, dot)
}

/// `out[g · 8 + r]` = row `r` of Q4_K or Q6_K group `g` · `x` (one activation row of `kb` Q8_K blocks).
/// The scalar twin of the SIMD kernels.
pub fn gemv_k_x8(ty: GgmlType, groups: &[u8], x: &[Q8KBlock], kb: usize, out: &mut [f32]) {
    let dot = match ty {
        GgmlType::Q4K => super::kquants::dot_q4_k,
        GgmlType::Q6K => super::kquants::dot_q6_k,
        _ => panic!("gemv_k_x8: {ty} is not Q4_K or Q6_K"),
    };
    gemv_by_blocks(ty, groups, x, kb, out, dot)
}

/// The scalar twins' loop: each block's term is the scalar row dot's (a one-block dot starts from 0, so it
/// is that term exactly), added block after block as the row dot adds them.
fn gemv_by_blocks<X>(ty: GgmlType, groups: &[u8], x: &[X], kb: usize, out: &mut [f32], dot: fn(&[u8], &[X]) -> f32) {
    let bb = ty.type_size();
    let group_bytes = kb * X8_ROWS * bb;
    assert!(x.len() >= kb && groups.len() == out.len() / X8_ROWS * group_bytes && out.len().is_multiple_of(X8_ROWS));
    let mut rows = vec![0u8; X8_ROWS * bb];
    for (g, o) in groups.chunks_exact(group_bytes).zip(out.chunks_exact_mut(X8_ROWS)) {
        let mut sum = [0f32; X8_ROWS];
        for (blk, xb) in g.chunks_exact(X8_ROWS * bb).zip(x) {
            deinterleave_x8(ty, blk, 1, &mut rows);
            for (r, s) in sum.iter_mut().enumerate() {
                *s += dot(&rows[r * bb..(r + 1) * bb], std::slice::from_ref(xb));
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
    use crate::kernels::{kquants, quantize_q8_k_activations};
    use crate::quant;

    /// Each layout puts every byte of the 8 rows in its own place, interleaving round-trips, and the
    /// scalar kernels on the groups equal the scalar row dots bit for bit.
    #[test]
    fn layouts_round_trip_and_the_scalar_kernels_equal_the_row_dots() {
        let mut rng = SmallRng::seed_from_u64(21);
        for ty in [GgmlType::Q4_0, GgmlType::Q8_0, GgmlType::Q4K, GgmlType::Q6K] {
            let bb = ty.type_size();
            let places: std::collections::HashSet<usize> =
                (0..X8_ROWS).flat_map(|r| (0..bb).map(move |i| position(ty, r, i))).collect();
            assert_eq!(places.len(), X8_ROWS * bb, "{ty}: every byte has its own place");
            assert!(places.iter().all(|&p| p < X8_ROWS * bb), "{ty}: inside the block");
            for kb in [1usize, 3] {
                let k = kb * ty.block_size();
                let wf: Vec<f32> = (0..16 * k).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
                let mut rows = vec![0u8; ty.row_size(k).unwrap() * 16];
                quant::quantize_rows(ty, &wf, k, &mut rows).unwrap();
                let group = X8_ROWS * kb * bb;
                let mut packed = vec![0u8; rows.len()];
                for (src, dst) in rows.chunks(group).zip(packed.chunks_mut(group)) {
                    interleave_x8(ty, src, kb, dst);
                }
                assert_ne!(packed, rows, "{ty} kb={kb}: the layout differs from the rows");
                let mut back = vec![0u8; rows.len()];
                for (src, dst) in packed.chunks(group).zip(back.chunks_mut(group)) {
                    deinterleave_x8(ty, src, kb, dst);
                }
                assert_eq!(back, rows, "{ty} kb={kb}: deinterleave ∘ interleave");
                let xf: Vec<f32> = (0..k).map(|_| rng.gen_range(-2.0f32..2.0)).collect();
                let mut out = vec![0f32; 16];
                let row = |r: usize| &rows[r * kb * bb..(r + 1) * kb * bb];
                let want: Vec<f32> = if ty.block_size() == 32 {
                    let x = quantize_q8_0_activations(&xf);
                    gemv_int8_x8(ty, &packed, &x, kb, &mut out);
                    let dot = if ty == GgmlType::Q4_0 { scalar::dot_q4_0 } else { scalar::dot_q8_0 };
                    (0..16).map(|r| dot(row(r), &x)).collect()
                } else {
                    let x = quantize_q8_k_activations(&xf);
                    gemv_k_x8(ty, &packed, &x, kb, &mut out);
                    let dot = if ty == GgmlType::Q4K { kquants::dot_q4_k } else { kquants::dot_q6_k };
                    (0..16).map(|r| dot(row(r), &x)).collect()
                };
                for r in 0..16 {
                    assert_eq!(out[r].to_bits(), want[r].to_bits(), "{ty} kb={kb} row {r}: {} vs {}", out[r], want[r]);
                }
            }
        }
    }
}
