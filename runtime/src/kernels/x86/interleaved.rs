//! AVX2 and VNNI twins of [`crate::kernels::interleaved::gemv_int8_x8`] and
//! [`crate::kernels::interleaved::gemv_k_x8`]: one token against Q4_0, Q8_0, Q4_K or Q6_K weights repacked
//! 8 rows at a time (layouts there). Bit-identical to the scalar twins, hence to the scalar row dots.

use std::arch::x86_64::*;

use super::tiles::{q4k_finish_parts, q4k_packed_scales, q6_pair, q6k_finish_parts, q6k_packed_scales};
use super::Step;
use crate::kernels::interleaved::{Q4_K_X8_BLOCK_BYTES, Q6_K_X8_BLOCK_BYTES, X8_ROWS};
use crate::kernels::kquants::Q8KBlock;
use crate::kernels::scalar::Q8Block;
use crate::GgmlType;

/// `out[g · 8 + r]` = row `r` of Q4_0 or Q8_0 group `g` · `x` (`xsum[b]` = Σ of activation block `b`'s
/// bytes: the offset of unsigned weights is taken back with it). `step`: the integer step (the CPU must
/// have it).
pub fn gemv_int8_x8(ty: GgmlType, groups: &[u8], x: &[Q8Block], xsum: &[i32], kb: usize, out: &mut [f32], step: Step) {
    assert!(step.available(), "gemv_int8_x8: the CPU lacks {step:?}");
    assert!(matches!(ty, GgmlType::Q4_0 | GgmlType::Q8_0), "gemv_int8_x8: {ty}");
    assert!(x.len() >= kb && xsum.len() >= kb && out.len().is_multiple_of(X8_ROWS));
    let block = X8_ROWS * ty.type_size();
    assert_eq!(groups.len(), out.len() / X8_ROWS * kb * block, "gemv_int8_x8: whole groups of {kb} blocks");
    // SAFETY: the target features were checked above; groups holds out.len() / 8 groups of kb blocks, x
    // and xsum kb entries.
    unsafe {
        match (ty == GgmlType::Q4_0, step) {
            (true, Step::Avx2) => gemv_avx2::<true>(groups, x, xsum, kb, out),
            (false, Step::Avx2) => gemv_avx2::<false>(groups, x, xsum, kb, out),
            (true, Step::Avx512Vnni) => gemv_vnni::<true>(groups, x, xsum, kb, out),
            (false, Step::Avx512Vnni) => gemv_vnni::<false>(groups, x, xsum, kb, out),
            (true, Step::AvxVnni) => gemv_avxvnni::<true>(groups, x, xsum, kb, out),
            (false, Step::AvxVnni) => gemv_avxvnni::<false>(groups, x, xsum, kb, out),
        }
    }
}

/// The 8 rows' exact integer sums of one interleaved block against one activation block, with `maddubs`
/// (Q4_0 without the nibbles' offset). Nibble · byte pairs are at most 2·15·128 = 3840, so a Q4_0 block's
/// eight steps add up exactly in i16 before one `madd` widens them; Q8_0 takes ggml's sign trick (|w|
/// against x with w's signs, pairs ≤ 2·127·127) and widens every step.
macro_rules! isum_maddubs {
    ($dp:ident, $q4:expr, $blk:expr, $q:expr, $mask:expr, $ones:expr) => {{
        let (blk, q): (*const u8, *const i32) = ($blk, $q);
        if $q4 {
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
        } else {
            let mut s32 = _mm256_setzero_si256();
            for c in 0..8 {
                // SAFETY (caller): the interleaved block's 272 bytes and the activation block's 32 are readable.
                let (v, xv) = unsafe {
                    (
                        _mm256_loadu_si256(blk.add(16 + 32 * c) as *const __m256i),
                        _mm256_set1_epi32(q.add(c).read_unaligned()),
                    )
                };
                let p = _mm256_maddubs_epi16(_mm256_sign_epi8(v, v), _mm256_sign_epi8(xv, v));
                s32 = _mm256_add_epi32(s32, _mm256_madd_epi16(p, $ones));
            }
            s32
        }
    }};
}

/// The same sums with `dpbusd` (u8 × i8 by fours straight into i32) on unsigned weights: Q4_0's nibbles
/// (low and high in two chains), or Q8_0's bytes with the sign bit flipped (`w + 128`).
macro_rules! isum_dpbusd {
    ($dp:ident, $q4:expr, $blk:expr, $q:expr, $mask:expr, $ones:expr) => {{
        let (blk, q): (*const u8, *const i32) = ($blk, $q);
        let _ = $ones;
        let (mut a, mut b) = (_mm256_setzero_si256(), _mm256_setzero_si256());
        if $q4 {
            for c in 0..4 {
                // SAFETY (caller): the interleaved block's 144 bytes and the activation block's 32 are readable.
                let (v, xlo, xhi) = unsafe {
                    (
                        _mm256_loadu_si256(blk.add(16 + 32 * c) as *const __m256i),
                        _mm256_set1_epi32(q.add(c).read_unaligned()),
                        _mm256_set1_epi32(q.add(4 + c).read_unaligned()),
                    )
                };
                a = $dp(a, _mm256_and_si256(v, $mask), xlo);
                b = $dp(b, _mm256_and_si256(_mm256_srli_epi16::<4>(v), $mask), xhi);
            }
        } else {
            let flip = _mm256_set1_epi8(-128);
            for c in 0..4 {
                // SAFETY (caller): the interleaved block's 272 bytes and the activation block's 32 are readable.
                let (v0, v1, x0, x1) = unsafe {
                    (
                        _mm256_loadu_si256(blk.add(16 + 64 * c) as *const __m256i),
                        _mm256_loadu_si256(blk.add(48 + 64 * c) as *const __m256i),
                        _mm256_set1_epi32(q.add(2 * c).read_unaligned()),
                        _mm256_set1_epi32(q.add(2 * c + 1).read_unaligned()),
                    )
                };
                a = $dp(a, _mm256_xor_si256(v0, flip), x0);
                b = $dp(b, _mm256_xor_si256(v1, flip), x1);
            }
        }
        _mm256_add_epi32(a, b)
    }};
}

/// The kernel once per integer step (same body, different target features and `dpbusd` form `$dp`).
macro_rules! gemv_kernel {
    ($name:ident, $features:literal, $isum:ident, $dp:ident, $q8_offset:expr) => {
        #[target_feature(enable = $features)]
        unsafe fn $name<const Q4: bool>(groups: &[u8], x: &[Q8Block], xsum: &[i32], kb: usize, out: &mut [f32]) {
            let (mask, ones) = (_mm256_set1_epi8(0x0F), _mm256_set1_epi16(1));
            let block = if Q4 { 144 } else { 272 };
            // What the unsigned weights add per unit of Σx: Q4_0's offset 8, or 128 for flipped Q8_0 bytes.
            let offset: i32 = if Q4 { 8 } else { $q8_offset };
            for (g, o) in groups.chunks_exact(kb * block).zip(out.chunks_exact_mut(X8_ROWS)) {
                let mut acc = _mm256_setzero_ps();
                for (b, xb) in x[..kb].iter().enumerate() {
                    let blk = g[b * block..(b + 1) * block].as_ptr();
                    let mut isum = $isum!($dp, Q4, blk, xb.qs.as_ptr() as *const i32, mask, ones);
                    if offset != 0 {
                        isum = _mm256_sub_epi32(isum, _mm256_set1_epi32(offset * xsum[b]));
                    }
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

gemv_kernel!(gemv_avx2, "avx2,f16c", isum_maddubs, _mm256_dpbusd_epi32, 0);
gemv_kernel!(gemv_vnni, "avx2,f16c,avx512vnni,avx512vl", isum_dpbusd, _mm256_dpbusd_epi32, 128);
gemv_kernel!(gemv_avxvnni, "avx2,f16c,avxvnni", isum_dpbusd, _mm256_dpbusd_avx_epi32, 128);

/// `out[g · 8 + r]` = row `r` of Q4_K or Q6_K group `g` · `x` (one row of `kb` Q8_K blocks). `step`: the
/// integer step (the CPU must have it).
pub fn gemv_k_x8(ty: GgmlType, groups: &[u8], x: &[Q8KBlock], kb: usize, out: &mut [f32], step: Step) {
    assert!(step.available(), "gemv_k_x8: the CPU lacks {step:?}");
    assert!(matches!(ty, GgmlType::Q4K | GgmlType::Q6K), "gemv_k_x8: {ty}");
    assert!(x.len() >= kb && out.len().is_multiple_of(X8_ROWS));
    let block = X8_ROWS * ty.type_size();
    assert_eq!(groups.len(), out.len() / X8_ROWS * kb * block, "gemv_k_x8: whole groups of {kb} super-blocks");
    // SAFETY: the target features were checked above; groups holds out.len() / 8 groups of kb super-blocks
    // and x kb blocks.
    unsafe {
        match (ty == GgmlType::Q4K, step) {
            (true, Step::Avx2) => gemv_k_avx2(groups, x, kb, out),
            (true, Step::Avx512Vnni) => gemv_k_vnni(groups, x, kb, out),
            (true, Step::AvxVnni) => gemv_k_avxvnni(groups, x, kb, out),
            (false, Step::Avx2) => gemv_q6_avx2(groups, x, kb, out),
            (false, Step::Avx512Vnni) => gemv_q6_vnni(groups, x, kb, out),
            (false, Step::AvxVnni) => gemv_q6_avxvnni(groups, x, kb, out),
        }
    }
}

/// The 8 rows' integer sums `Σ_j sc_j · Σ q·x` of one interleaved Q4_K super-block, with `maddubs`: a
/// sub-block's eight nibble · byte steps fit an i16 (≤ 8 · 2·15·128 = 30720), and `madd` against the row's
/// scale as an i16 pair widens and scales them in one step.
macro_rules! k_isum_maddubs {
    ($dp:ident, $blk:expr, $q:expr, $scale:expr, $mask:expr) => {{
        let (blk, q): (*const u8, *const i32) = ($blk, $q);
        let mut isum = _mm256_setzero_si256();
        for c in 0..4 {
            let (mut lo, mut hi) = (_mm256_setzero_si256(), _mm256_setzero_si256());
            for g in 0..8 {
                // SAFETY (caller): the super-block's 1152 bytes and the activation block's 256 are readable.
                let (v, xlo, xhi) = unsafe {
                    (
                        _mm256_loadu_si256(blk.add(128 + 256 * c + 32 * g) as *const __m256i),
                        _mm256_set1_epi32(q.add(16 * c + g).read_unaligned()),
                        _mm256_set1_epi32(q.add(16 * c + 8 + g).read_unaligned()),
                    )
                };
                lo = _mm256_add_epi16(lo, _mm256_maddubs_epi16(_mm256_and_si256(v, $mask), xlo));
                hi =
                    _mm256_add_epi16(hi, _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16::<4>(v), $mask), xhi));
            }
            let (s0, s1) = ($scale[2 * c], $scale[2 * c + 1]);
            // madd wants each row's scale as an i16 pair [sc, sc] (scales are < 64).
            let (p0, p1) =
                (_mm256_or_si256(s0, _mm256_slli_epi32::<16>(s0)), _mm256_or_si256(s1, _mm256_slli_epi32::<16>(s1)));
            isum = _mm256_add_epi32(isum, _mm256_add_epi32(_mm256_madd_epi16(lo, p0), _mm256_madd_epi16(hi, p1)));
        }
        isum
    }};
}

/// The same sums with `dpbusd` (exact i32 per sub-block) and an i32 multiply by the scales.
macro_rules! k_isum_dpbusd {
    ($dp:ident, $blk:expr, $q:expr, $scale:expr, $mask:expr) => {{
        let (blk, q): (*const u8, *const i32) = ($blk, $q);
        let mut isum = _mm256_setzero_si256();
        for c in 0..4 {
            let (mut lo, mut hi) = (_mm256_setzero_si256(), _mm256_setzero_si256());
            for g in 0..8 {
                // SAFETY (caller): the super-block's 1152 bytes and the activation block's 256 are readable.
                let (v, xlo, xhi) = unsafe {
                    (
                        _mm256_loadu_si256(blk.add(128 + 256 * c + 32 * g) as *const __m256i),
                        _mm256_set1_epi32(q.add(16 * c + g).read_unaligned()),
                        _mm256_set1_epi32(q.add(16 * c + 8 + g).read_unaligned()),
                    )
                };
                lo = $dp(lo, _mm256_and_si256(v, $mask), xlo);
                hi = $dp(hi, _mm256_and_si256(_mm256_srli_epi16::<4>(v), $mask), xhi);
            }
            let scaled =
                _mm256_add_epi32(_mm256_mullo_epi32(lo, $scale[2 * c]), _mm256_mullo_epi32(hi, $scale[2 * c + 1]));
            isum = _mm256_add_epi32(isum, scaled);
        }
        isum
    }};
}

/// The Q4_K kernel once per integer step (same body, different target features and `dpbusd` form).
macro_rules! gemv_k_kernel {
    ($name:ident, $features:literal, $isum:ident, $dp:ident) => {
        #[target_feature(enable = $features)]
        unsafe fn $name(groups: &[u8], x: &[Q8KBlock], kb: usize, out: &mut [f32]) {
            let mask = _mm256_set1_epi8(0x0F);
            for (g, o) in groups.chunks_exact(kb * Q4_K_X8_BLOCK_BYTES).zip(out.chunks_exact_mut(X8_ROWS)) {
                let mut acc = _mm256_setzero_ps();
                for (b, xb) in x[..kb].iter().enumerate() {
                    let blk = &g[b * Q4_K_X8_BLOCK_BYTES..(b + 1) * Q4_K_X8_BLOCK_BYTES];
                    let s = q4k_packed_scales(blk);
                    let isum = $isum!($dp, blk.as_ptr(), xb.qs.as_ptr() as *const i32, s.scale, mask);
                    acc = q4k_finish_parts(acc, &s.mins, s.dw, s.dminw, xb, isum);
                }
                // SAFETY: o holds 8 f32.
                unsafe { _mm256_storeu_ps(o.as_mut_ptr(), acc) };
            }
        }
    };
}

gemv_k_kernel!(gemv_k_avx2, "avx2,f16c", k_isum_maddubs, _mm256_dpbusd_epi32);
gemv_k_kernel!(gemv_k_vnni, "avx2,f16c,avx512vnni,avx512vl", k_isum_dpbusd, _mm256_dpbusd_epi32);
gemv_k_kernel!(gemv_k_avxvnni, "avx2,f16c,avxvnni", k_isum_dpbusd, _mm256_dpbusd_avx_epi32);

/// The 6-bit values of group `g` (4 elements of each row) of the four quarters of half `h`, in quarter
/// order, from the unit's three loads.
macro_rules! q6_unit {
    ($blk:expr, $h:expr, $g:expr, $s0:expr, $s2:expr, $m4:expr, $m2:expr) => {{
        let unit = 144 + 96 * (8 * $h + $g);
        // SAFETY (caller): the super-block's 1680 bytes are readable.
        let (l0, l1, high) = unsafe {
            (
                _mm256_loadu_si256($blk.add(unit) as *const __m256i),
                _mm256_loadu_si256($blk.add(unit + 32) as *const __m256i),
                _mm256_loadu_si256($blk.add(unit + 64) as *const __m256i),
            )
        };
        let ((a0, b0), (a1, b1)) = (q6_pair(l0, high, $s0, $m4, $m2), q6_pair(l1, high, $s2, $m4, $m2));
        [a0, a1, b0, b1]
    }};
}

/// The 8 rows' `Σ_s sc_s · Σ q·x` of one interleaved Q6_K super-block with `maddubs`, each step's pairs
/// scaled and widened at once by `madd` with the group's scale as an i16 pair. Quarter `k` of half `h`
/// covers elements `32·(4h + k) ..`: its groups 0..4 have scale `2·(4h + k)`, groups 4..8 the next.
macro_rules! q6_isum_maddubs {
    ($dp:ident, $blk:expr, $q:expr, $scale:expr, $m4:expr, $m2:expr) => {{
        let (blk, q): (*const u8, *const i32) = ($blk, $q);
        let (s0, s2, lo16) = (_mm_cvtsi32_si128(0), _mm_cvtsi32_si128(2), _mm256_set1_epi32(0xFFFF));
        let mut isum = _mm256_setzero_si256();
        for h in 0..2 {
            for half in 0..2 {
                let mut sp = [_mm256_setzero_si256(); 4];
                for (k, v) in sp.iter_mut().enumerate() {
                    let s = $scale[2 * (4 * h + k) + half];
                    *v = _mm256_or_si256(_mm256_and_si256(s, lo16), _mm256_slli_epi32::<16>(s));
                }
                for g in 4 * half..4 * half + 4 {
                    let v = q6_unit!(blk, h, g, s0, s2, $m4, $m2);
                    for k in 0..4 {
                        // SAFETY (caller): the activation block's 256 bytes are readable.
                        let xv = _mm256_set1_epi32(unsafe { q.add(8 * (4 * h + k) + g).read_unaligned() });
                        isum = _mm256_add_epi32(isum, _mm256_madd_epi16(_mm256_maddubs_epi16(v[k], xv), sp[k]));
                    }
                }
            }
        }
        isum
    }};
}

/// The same sums with `dpbusd` (exact i32 per 16-value group) and an i32 multiply by the scales.
macro_rules! q6_isum_dpbusd {
    ($dp:ident, $blk:expr, $q:expr, $scale:expr, $m4:expr, $m2:expr) => {{
        let (blk, q): (*const u8, *const i32) = ($blk, $q);
        let (s0, s2) = (_mm_cvtsi32_si128(0), _mm_cvtsi32_si128(2));
        let mut isum = _mm256_setzero_si256();
        for h in 0..2 {
            for half in 0..2 {
                let mut acc = [_mm256_setzero_si256(); 4];
                for g in 4 * half..4 * half + 4 {
                    let v = q6_unit!(blk, h, g, s0, s2, $m4, $m2);
                    for k in 0..4 {
                        // SAFETY (caller): the activation block's 256 bytes are readable.
                        let xv = _mm256_set1_epi32(unsafe { q.add(8 * (4 * h + k) + g).read_unaligned() });
                        acc[k] = $dp(acc[k], v[k], xv);
                    }
                }
                for (k, a) in acc.iter().enumerate() {
                    isum = _mm256_add_epi32(isum, _mm256_mullo_epi32(*a, $scale[2 * (4 * h + k) + half]));
                }
            }
        }
        isum
    }};
}

/// The Q6_K kernel once per integer step (same body, different target features and `dpbusd` form).
macro_rules! gemv_q6_kernel {
    ($name:ident, $features:literal, $isum:ident, $dp:ident) => {
        #[target_feature(enable = $features)]
        unsafe fn $name(groups: &[u8], x: &[Q8KBlock], kb: usize, out: &mut [f32]) {
            let (m4, m2) = (_mm256_set1_epi8(0x0F), _mm256_set1_epi8(3));
            for (g, o) in groups.chunks_exact(kb * Q6_K_X8_BLOCK_BYTES).zip(out.chunks_exact_mut(X8_ROWS)) {
                let mut acc = _mm256_setzero_ps();
                for (b, xb) in x[..kb].iter().enumerate() {
                    let blk = &g[b * Q6_K_X8_BLOCK_BYTES..(b + 1) * Q6_K_X8_BLOCK_BYTES];
                    let s = q6k_packed_scales(blk);
                    let isum = $isum!($dp, blk.as_ptr(), xb.qs.as_ptr() as *const i32, s.scale, m4, m2);
                    acc = q6k_finish_parts(acc, &s.spair, s.dw, xb, isum);
                }
                // SAFETY: o holds 8 f32.
                unsafe { _mm256_storeu_ps(o.as_mut_ptr(), acc) };
            }
        }
    };
}

gemv_q6_kernel!(gemv_q6_avx2, "avx2,f16c", q6_isum_maddubs, _mm256_dpbusd_epi32);
gemv_q6_kernel!(gemv_q6_vnni, "avx2,f16c,avx512vnni,avx512vl", q6_isum_dpbusd, _mm256_dpbusd_epi32);
gemv_q6_kernel!(gemv_q6_avxvnni, "avx2,f16c,avxvnni", q6_isum_dpbusd, _mm256_dpbusd_avx_epi32);

#[cfg(test)]
mod tests {
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::kernels::interleaved;
    use crate::kernels::scalar::{block_sums, quantize_q8_0_activations};
    use crate::quant;
    use crate::GgmlType;

    #[test]
    fn simd_k_quant_gemv_and_tiles_are_bit_identical_to_the_scalar_twin() {
        use crate::kernels::x86::tiles::{rows8_q4k, rows8_q6k, KSource};
        if !crate::kernels::path_runs(
            "avx2",
            crate::kernels::x86::available(),
            "simd_k_quant_gemv_and_tiles_are_bit_identical_to_the_scalar_twin",
        ) {
            return;
        }
        let mut rng = SmallRng::seed_from_u64(32);
        for ty in [GgmlType::Q4K, GgmlType::Q6K] {
            for kb in [1usize, 2, 8] {
                let (m, k) = (24, kb * 256);
                let big = |rng: &mut SmallRng| if rng.gen_bool(0.02) { 40.0 } else { 1.0 };
                let wf: Vec<f32> = (0..m * k).map(|_| rng.gen_range(-1.0f32..1.0) * big(&mut rng)).collect();
                let mut rows = vec![0u8; ty.row_size(k).unwrap() * m];
                quant::quantize_rows(ty, &wf, k, &mut rows).unwrap();
                let group = 8 * kb * ty.type_size();
                let mut packed = vec![0u8; rows.len()];
                for (src, dst) in rows.chunks(group).zip(packed.chunks_mut(group)) {
                    interleaved::interleave_x8(ty, src, kb, dst);
                }
                for _ in 0..5 {
                    let xf: Vec<f32> = (0..k).map(|_| rng.gen_range(-3.0f32..3.0) * big(&mut rng)).collect();
                    let x = crate::kernels::quantize_q8_k_activations(&xf);
                    let mut want = vec![0f32; m];
                    interleaved::gemv_k_x8(ty, &packed, &x, kb, &mut want);
                    for step in Step::ALL {
                        if step.is_vnni()
                            && !crate::kernels::path_runs(
                                step.name(),
                                step.available(),
                                "simd_k_quant_gemv_and_tiles_are_bit_identical_to_the_scalar_twin",
                            )
                        {
                            continue;
                        }
                        let mut got = vec![0f32; m];
                        gemv_k_x8(ty, &packed, &x, kb, &mut got, step);
                        for r in 0..m {
                            assert_eq!(got[r].to_bits(), want[r].to_bits(), "{ty} kb={kb} step={step:?} row {r}");
                        }
                        // The batch tiles on the same groups: the same bits.
                        let mut tiles = vec![0f32; 8];
                        for (gi, grp) in packed.chunks(group).enumerate() {
                            if ty == GgmlType::Q4K {
                                rows8_q4k(KSource::Packed(grp), &x, kb, &mut tiles, step);
                            } else {
                                rows8_q6k(KSource::Packed(grp), &x, kb, &mut tiles, step);
                            }
                            for r in 0..8 {
                                let w = want[gi * 8 + r];
                                assert_eq!(tiles[r].to_bits(), w.to_bits(), "{ty} tiles kb={kb} step={step:?}");
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn simd_int8_gemv_is_bit_identical_to_the_scalar_twin() {
        if !crate::kernels::path_runs(
            "avx2",
            crate::kernels::x86::available(),
            "simd_int8_gemv_is_bit_identical_to_the_scalar_twin",
        ) {
            return;
        }
        let mut rng = SmallRng::seed_from_u64(31);
        for ty in [GgmlType::Q4_0, GgmlType::Q8_0] {
            for kb in [1usize, 2, 9, 64] {
                let (m, k) = (24, kb * 32);
                // Outliers make some blocks' activations hit ±127 (the i16 bound of the maddubs steps).
                let big = |rng: &mut SmallRng| if rng.gen_bool(0.02) { 40.0 } else { 1.0 };
                let wf: Vec<f32> = (0..m * k).map(|_| rng.gen_range(-1.0f32..1.0) * big(&mut rng)).collect();
                let mut rows = vec![0u8; ty.row_size(k).unwrap() * m];
                quant::quantize_rows(ty, &wf, k, &mut rows).unwrap();
                let group = 8 * kb * ty.type_size();
                let mut packed = vec![0u8; rows.len()];
                for (src, dst) in rows.chunks(group).zip(packed.chunks_mut(group)) {
                    interleaved::interleave_x8(ty, src, kb, dst);
                }
                for _ in 0..5 {
                    let xf: Vec<f32> = (0..k).map(|_| rng.gen_range(-3.0f32..3.0) * big(&mut rng)).collect();
                    let x = quantize_q8_0_activations(&xf);
                    let xsum = block_sums(&x);
                    let mut want = vec![0f32; m];
                    interleaved::gemv_int8_x8(ty, &packed, &x, kb, &mut want);
                    for step in Step::ALL {
                        if step.is_vnni()
                            && !crate::kernels::path_runs(
                                step.name(),
                                step.available(),
                                "simd_int8_gemv_is_bit_identical_to_the_scalar_twin",
                            )
                        {
                            continue;
                        }
                        let mut got = vec![0f32; m];
                        gemv_int8_x8(ty, &packed, &x, &xsum, kb, &mut got, step);
                        for r in 0..m {
                            assert_eq!(got[r].to_bits(), want[r].to_bits(), "{ty} kb={kb} step={step:?} row {r}");
                        }
                    }
                }
            }
        }
    }
}
