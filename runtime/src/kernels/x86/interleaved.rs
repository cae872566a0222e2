//! AVX2 and VNNI twins of [`crate::kernels::interleaved::gemv_q4_0x8`]: one token against Q4_0 weights
//! repacked 8 rows at a time (layout there). Bit-identical to the scalar twin, hence to the scalar row dots.

use std::arch::x86_64::*;

use super::{available, vnni_available};
use crate::kernels::interleaved::{X8_BLOCK_BYTES, X8_ROWS};
use crate::kernels::scalar::Q8Block;

/// `out[g · 8 + r]` = row `r` of group `g` · `x` (`xsum[b]` = Σ of activation block `b`'s bytes, the
/// nibbles' offset 8 is taken back with it). `vnni`: `dpbusd` for the integer step (the CPU must have it).
pub fn gemv_q4_0x8(groups: &[u8], x: &[Q8Block], xsum: &[i32], kb: usize, out: &mut [f32], vnni: bool) {
    assert!(available() && (!vnni || vnni_available()));
    assert!(x.len() >= kb && xsum.len() >= kb && out.len().is_multiple_of(X8_ROWS));
    assert_eq!(groups.len(), out.len() / X8_ROWS * kb * X8_BLOCK_BYTES, "gemv_q4_0x8: whole groups of {kb} blocks");
    // SAFETY: the target features were checked above; groups holds out.len() / 8 groups of kb blocks, x
    // and xsum kb entries.
    unsafe {
        if vnni {
            gemv_vnni(groups, x, xsum, kb, out)
        } else {
            gemv_avx2(groups, x, xsum, kb, out)
        }
    }
}

/// The 8 rows' exact integer sums of one interleaved block against one activation block (without the
/// offset), with `maddubs`: nibble · byte pairs are at most 2·15·128 = 3840, so the block's eight steps
/// add up exactly in i16 before one `madd` widens them.
macro_rules! isum_maddubs {
    ($blk:expr, $q:expr, $mask:expr, $ones:expr) => {{
        let (blk, q): (*const u8, *const i32) = ($blk, $q);
        let mut s16 = _mm256_setzero_si256();
        for c in 0..4 {
            // SAFETY (caller): the interleaved block's 144 bytes and the activation block's 32 are readable.
            let (v, xlo, xhi) = unsafe {
                (
                    _mm256_loadu_si256(blk.add(16 + 32 * c) as *const __m256i),
                    _mm256_set1_epi32(q.add(c).read_unaligned()),
                    _mm256_set1_epi32(q.add(4 + c).read_unaligned()),
                )
            };
            let lo = _mm256_and_si256(v, $mask);
            let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(v), $mask);
            s16 = _mm256_add_epi16(s16, _mm256_maddubs_epi16(lo, xlo));
            s16 = _mm256_add_epi16(s16, _mm256_maddubs_epi16(hi, xhi));
        }
        _mm256_madd_epi16(s16, $ones)
    }};
}

/// The same sums with `dpbusd` (u8 × i8 by fours straight into i32), low and high nibbles in two chains.
macro_rules! isum_dpbusd {
    ($blk:expr, $q:expr, $mask:expr, $ones:expr) => {{
        let (blk, q): (*const u8, *const i32) = ($blk, $q);
        let _ = $ones;
        let (mut a, mut b) = (_mm256_setzero_si256(), _mm256_setzero_si256());
        for c in 0..4 {
            // SAFETY (caller): the interleaved block's 144 bytes and the activation block's 32 are readable.
            let (v, xlo, xhi) = unsafe {
                (
                    _mm256_loadu_si256(blk.add(16 + 32 * c) as *const __m256i),
                    _mm256_set1_epi32(q.add(c).read_unaligned()),
                    _mm256_set1_epi32(q.add(4 + c).read_unaligned()),
                )
            };
            a = _mm256_dpbusd_epi32(a, _mm256_and_si256(v, $mask), xlo);
            b = _mm256_dpbusd_epi32(b, _mm256_and_si256(_mm256_srli_epi16::<4>(v), $mask), xhi);
        }
        _mm256_add_epi32(a, b)
    }};
}

/// The kernel once per integer step (same body, different target features).
macro_rules! gemv_kernel {
    ($name:ident, $features:literal, $isum:ident) => {
        #[target_feature(enable = $features)]
        unsafe fn $name(groups: &[u8], x: &[Q8Block], xsum: &[i32], kb: usize, out: &mut [f32]) {
            let (mask, ones) = (_mm256_set1_epi8(0x0F), _mm256_set1_epi16(1));
            for (g, o) in groups.chunks_exact(kb * X8_BLOCK_BYTES).zip(out.chunks_exact_mut(X8_ROWS)) {
                let mut acc = _mm256_setzero_ps();
                for (b, xb) in x[..kb].iter().enumerate() {
                    let blk = g[b * X8_BLOCK_BYTES..(b + 1) * X8_BLOCK_BYTES].as_ptr();
                    let isum = $isum!(blk, xb.qs.as_ptr() as *const i32, mask, ones);
                    let isum = _mm256_sub_epi32(isum, _mm256_set1_epi32(8 * xsum[b]));
                    // SAFETY: the block's first 16 bytes are the 8 rows' fp16 scales.
                    let dw = _mm256_cvtph_ps(unsafe { _mm_loadu_si128(blk as *const __m128i) });
                    // Separate multiply and add (no FMA): the scalar dot's two roundings, block by block.
                    let p = _mm256_mul_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(dw, _mm256_set1_ps(xb.d)));
                    acc = _mm256_add_ps(acc, p);
                }
                // SAFETY: o holds 8 f32.
                unsafe { _mm256_storeu_ps(o.as_mut_ptr(), acc) };
            }
        }
    };
}

gemv_kernel!(gemv_avx2, "avx2,f16c", isum_maddubs);
gemv_kernel!(gemv_vnni, "avx2,f16c,avx512vnni,avx512vl", isum_dpbusd);

#[cfg(test)]
mod tests {
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::kernels::interleaved::{self, interleave_q4_0x8};
    use crate::kernels::scalar::{block_sums, quantize_q8_0_activations};
    use crate::quant;
    use crate::GgmlType;

    #[test]
    fn simd_gemv_is_bit_identical_to_the_scalar_twin() {
        if !available() {
            eprintln!("no AVX2 on this CPU: nothing to compare");
            return;
        }
        let mut rng = SmallRng::seed_from_u64(31);
        for kb in [1usize, 2, 9, 64] {
            let (m, k) = (24, kb * 32);
            // Outliers make some blocks' activations hit ±127 (the i16 bound of the maddubs step).
            let big = |rng: &mut SmallRng| if rng.gen_bool(0.02) { 40.0 } else { 1.0 };
            let wf: Vec<f32> = (0..m * k).map(|_| rng.gen_range(-1.0f32..1.0) * big(&mut rng)).collect();
            let mut rows = vec![0u8; GgmlType::Q4_0.row_size(k).unwrap() * m];
            quant::quantize_rows(GgmlType::Q4_0, &wf, k, &mut rows).unwrap();
            let mut packed = vec![0u8; rows.len()];
            for (src, dst) in rows.chunks(8 * kb * 18).zip(packed.chunks_mut(8 * kb * 18)) {
                interleave_q4_0x8(src, kb, dst);
            }
            for _ in 0..5 {
                let xf: Vec<f32> = (0..k).map(|_| rng.gen_range(-3.0f32..3.0) * big(&mut rng)).collect();
                let x = quantize_q8_0_activations(&xf);
                let xsum = block_sums(&x);
                let mut want = vec![0f32; m];
                interleaved::gemv_q4_0x8(&packed, &x, kb, &mut want);
                for vnni in [false, true] {
                    if vnni && !vnni_available() {
                        eprintln!("no AVX-512 VNNI on this CPU: dpbusd kernel not compared");
                        continue;
                    }
                    let mut got = vec![0f32; m];
                    gemv_q4_0x8(&packed, &x, &xsum, kb, &mut got, vnni);
                    for r in 0..m {
                        assert_eq!(got[r].to_bits(), want[r].to_bits(), "kb={kb} vnni={vnni} row {r}");
                    }
                }
            }
        }
    }
}
