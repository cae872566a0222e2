//! AVX2 twins of the K-quant and f16 dots in [`crate::kernels::kquants`].
//!
//! The K-quant dots follow ggml's `ggml_vec_dot_q{4,5,6}_K_q8_K` AVX2 paths for the integer work (`maddubs` of
//! unsigned weight levels with signed activations, `madd` with the sub-block scales, the mins term from the
//! activation `bsums`), reduce each super-block's two integer sums to scalars, and then run the scalar
//! reference's float steps in the same order: the results are bit-identical to the scalar twins. (ggml keeps
//! f32 lanes and fuses across blocks instead; one horizontal reduction per 256 weights costs little.)
//!
//! The f16 dot converts with F16C and accumulates with FMA in four 8-lane accumulators: it agrees with the
//! scalar twin within float rounding (see its test).

use std::arch::x86_64::*;

use super::available;
use crate::kernels::kquants::{
    check_lengths, scale_min_block, scales_mins_k4, Q8KBlock, Q4_K_BYTES, Q5_K_BYTES, Q6_K_BYTES,
};

/// The f16 at `bytes[at..at + 2]` as f32 with one F16C conversion, inline (exact, so the same value as the
/// scalar twin's `f16_at`).
#[inline]
#[target_feature(enable = "f16c")]
fn f16_at(bytes: &[u8], at: usize) -> f32 {
    let h = u16::from_le_bytes([bytes[at], bytes[at + 1]]);
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h as i32)))
}

/// `(Σ lanes of a, Σ lanes of b)`, exact in wrapping i32 arithmetic (no sum here overflows: see the scalar
/// module's integer ranges).
#[inline]
#[target_feature(enable = "avx2")]
fn hsum2_i32(a: __m256i, b: __m128i) -> (i32, i32) {
    let a = _mm_add_epi32(_mm256_castsi256_si128(a), _mm256_extracti128_si256::<1>(a));
    let h = _mm_hadd_epi32(a, b); // [a0+a1, a2+a3, b0+b1, b2+b3]
    let h = _mm_hadd_epi32(h, h); // [A, B, A, B]
    (_mm_cvtsi128_si32(h), _mm_extract_epi32::<1>(h))
}

/// `Σ_j m_j · (bsums[2j] + bsums[2j+1])` as four i32 lanes.
#[inline]
#[target_feature(enable = "avx2")]
fn mins_lanes(m: &[u8; 8], xb: &Q8KBlock) -> __m128i {
    // SAFETY: `bsums` is 16 i16 = 32 readable bytes; unaligned load.
    let bsums = unsafe { _mm256_loadu_si256(xb.bsums.as_ptr() as *const __m256i) };
    // Pairwise sums (|·| ≤ 2·16·127, no wrap): one per 32-element sub-block.
    let pairs = _mm_hadd_epi16(_mm256_castsi256_si128(bsums), _mm256_extracti128_si256::<1>(bsums));
    let mins = _mm_cvtepu8_epi16(_mm_set_epi64x(0, i64::from_le_bytes(*m)));
    _mm_madd_epi16(mins, pairs)
}

/// Q4_K weight row · Q8_K activation row (bit-identical to the scalar twin).
pub fn dot_q4_k(w: &[u8], x: &[Q8KBlock]) -> f32 {
    assert!(available());
    check_lengths("Q4_K dot", w, Q4_K_BYTES, x);
    // SAFETY: AVX2 presence was checked just above; lengths match.
    unsafe { dot_q4_k_avx2(w, x) }
}

#[target_feature(enable = "avx2,f16c")]
unsafe fn dot_q4_k_avx2(w: &[u8], x: &[Q8KBlock]) -> f32 {
    let m4 = _mm256_set1_epi8(0x0F);
    let mut sum = 0f32;
    for (wb, xb) in w.chunks_exact(Q4_K_BYTES).zip(x) {
        let (sc, m) = scales_mins_k4(&wb[4..16]);
        let mut acc = _mm256_setzero_si256();
        for c in 0..4 {
            // SAFETY: wb[16 + 32c..][..32] lies within the 144-byte block; xb.qs[64c..][..64] within its 256
            // bytes; unaligned loads.
            let (q4, y_lo, y_hi) = unsafe {
                (
                    _mm256_loadu_si256(wb.as_ptr().add(16 + 32 * c) as *const __m256i),
                    _mm256_loadu_si256(xb.qs.as_ptr().add(64 * c) as *const __m256i),
                    _mm256_loadu_si256(xb.qs.as_ptr().add(64 * c + 32) as *const __m256i),
                )
            };
            let lo = _mm256_and_si256(q4, m4);
            let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(q4), m4);
            // maddubs: pairs of (0..15)·(−127..127) stay within ±3810, no saturation.
            let p_lo = _mm256_madd_epi16(_mm256_set1_epi16(sc[2 * c] as i16), _mm256_maddubs_epi16(lo, y_lo));
            let p_hi = _mm256_madd_epi16(_mm256_set1_epi16(sc[2 * c + 1] as i16), _mm256_maddubs_epi16(hi, y_hi));
            acc = _mm256_add_epi32(acc, _mm256_add_epi32(p_lo, p_hi));
        }
        let (isum, msum) = hsum2_i32(acc, mins_lanes(&m, xb));
        sum += scale_min_block(f16_at(wb, 0), f16_at(wb, 2), xb.d, isum, msum);
    }
    sum
}

/// Q5_K weight row · Q8_K activation row (bit-identical to the scalar twin).
pub fn dot_q5_k(w: &[u8], x: &[Q8KBlock]) -> f32 {
    assert!(available());
    check_lengths("Q5_K dot", w, Q5_K_BYTES, x);
    // SAFETY: AVX2 presence was checked just above; lengths match.
    unsafe { dot_q5_k_avx2(w, x) }
}

#[target_feature(enable = "avx2,f16c")]
unsafe fn dot_q5_k_avx2(w: &[u8], x: &[Q8KBlock]) -> f32 {
    let m4 = _mm256_set1_epi8(0x0F);
    let sixteen = _mm256_set1_epi8(16);
    let mut sum = 0f32;
    for (wb, xb) in w.chunks_exact(Q5_K_BYTES).zip(x) {
        let (sc, m) = scales_mins_k4(&wb[4..16]);
        // SAFETY: wb[16..48] is the block's 32 bytes of fifth bits; unaligned load.
        let qh = unsafe { _mm256_loadu_si256(wb.as_ptr().add(16) as *const __m256i) };
        let mut acc = _mm256_setzero_si256();
        for c in 0..4 {
            // SAFETY: wb[48 + 32c..][..32] lies within the 176-byte block; xb.qs[64c..][..64] within its 256
            // bytes; unaligned loads.
            let (q5, y_lo, y_hi) = unsafe {
                (
                    _mm256_loadu_si256(wb.as_ptr().add(48 + 32 * c) as *const __m256i),
                    _mm256_loadu_si256(xb.qs.as_ptr().add(64 * c) as *const __m256i),
                    _mm256_loadu_si256(xb.qs.as_ptr().add(64 * c + 32) as *const __m256i),
                )
            };
            // Fifth bits: 16 where bit 2c (low nibbles) or 2c + 1 (high nibbles) of qh is set.
            let (b_lo, b_hi) = (_mm256_set1_epi8((1u8 << (2 * c)) as i8), _mm256_set1_epi8((2u8 << (2 * c)) as i8));
            let h_lo = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(qh, b_lo), b_lo), sixteen);
            let h_hi = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(qh, b_hi), b_hi), sixteen);
            let lo = _mm256_or_si256(_mm256_and_si256(q5, m4), h_lo);
            let hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(q5), m4), h_hi);
            // maddubs: pairs of (0..31)·(−127..127) stay within ±7874, no saturation.
            let p_lo = _mm256_madd_epi16(_mm256_set1_epi16(sc[2 * c] as i16), _mm256_maddubs_epi16(lo, y_lo));
            let p_hi = _mm256_madd_epi16(_mm256_set1_epi16(sc[2 * c + 1] as i16), _mm256_maddubs_epi16(hi, y_hi));
            acc = _mm256_add_epi32(acc, _mm256_add_epi32(p_lo, p_hi));
        }
        let (isum, msum) = hsum2_i32(acc, mins_lanes(&m, xb));
        sum += scale_min_block(f16_at(wb, 0), f16_at(wb, 2), xb.d, isum, msum);
    }
    sum
}

/// Q6_K weight row · Q8_K activation row (bit-identical to the scalar twin).
pub fn dot_q6_k(w: &[u8], x: &[Q8KBlock]) -> f32 {
    assert!(available());
    check_lengths("Q6_K dot", w, Q6_K_BYTES, x);
    // SAFETY: AVX2 presence was checked just above; lengths match.
    unsafe { dot_q6_k_avx2(w, x) }
}

#[target_feature(enable = "avx2,f16c")]
unsafe fn dot_q6_k_avx2(w: &[u8], x: &[Q8KBlock]) -> f32 {
    let m4 = _mm256_set1_epi8(0x0F);
    let m3 = _mm256_set1_epi8(0x03);
    let m30 = _mm256_set1_epi8(0x30);
    let mut sum = 0f32;
    for (wb, xb) in w.chunks_exact(Q6_K_BYTES).zip(x) {
        // SAFETY: wb[192..208] are the block's 16 scale bytes, xb.bsums 32 bytes; unaligned loads.
        let (scales, bsums) = unsafe {
            (
                _mm_loadu_si128(wb.as_ptr().add(192) as *const __m128i),
                _mm256_loadu_si256(xb.bsums.as_ptr() as *const __m256i),
            )
        };
        // Levels are kept unsigned (0..63); the −32 offset is applied once per block through the bsums:
        // Σ_g sc_g Σ (q − 32)·y = Σ_g sc_g Σ q·y − 32 · Σ_g sc_g · bsum_g.
        let offset = _mm256_slli_epi32::<5>(_mm256_madd_epi16(_mm256_cvtepi8_epi16(scales), bsums));
        let mut acc = _mm256_setzero_si256();
        for h in 0..2 {
            // SAFETY: wb[64h..][..64] (low nibbles) and wb[128 + 32h..][..32] (high bits) lie within the
            // 210-byte block; unaligned loads.
            let (ql0, ql1, qh) = unsafe {
                (
                    _mm256_loadu_si256(wb.as_ptr().add(64 * h) as *const __m256i),
                    _mm256_loadu_si256(wb.as_ptr().add(64 * h + 32) as *const __m256i),
                    _mm256_loadu_si256(wb.as_ptr().add(128 + 32 * h) as *const __m256i),
                )
            };
            // The four 32-element quarters of this half (16-bit shifts are masked back into their bytes).
            let q = [
                _mm256_or_si256(_mm256_and_si256(ql0, m4), _mm256_slli_epi16::<4>(_mm256_and_si256(qh, m3))),
                _mm256_or_si256(
                    _mm256_and_si256(ql1, m4),
                    _mm256_slli_epi16::<4>(_mm256_and_si256(_mm256_srli_epi16::<2>(qh), m3)),
                ),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(ql0), m4), _mm256_and_si256(qh, m30)),
                _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16::<4>(ql1), m4),
                    _mm256_and_si256(_mm256_srli_epi16::<2>(qh), m30),
                ),
            ];
            for (k, q) in q.iter().enumerate() {
                let g = 8 * h + 2 * k;
                // SAFETY: xb.qs[128h + 32k..][..32] lies within its 256 bytes; unaligned load.
                let y = unsafe { _mm256_loadu_si256(xb.qs.as_ptr().add(128 * h + 32 * k) as *const __m256i) };
                // Scales g (elements 0..16 of the quarter: the low 8 i16 lanes) and g + 1 (the high 8 lanes).
                let pick = _mm_set_epi64x((0x0101_0101_0101_0101 * (g + 1)) as i64, (0x0101_0101_0101_0101 * g) as i64);
                let sc = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(scales, pick));
                // maddubs: pairs of (0..63)·(−127..127) stay within ±16 002, no saturation.
                acc = _mm256_add_epi32(acc, _mm256_madd_epi16(sc, _mm256_maddubs_epi16(*q, y)));
            }
        }
        let (isum, _) = hsum2_i32(_mm256_sub_epi32(acc, offset), _mm_setzero_si128());
        let d = f16_at(wb, 208) * xb.d;
        sum += d * isum as f32;
    }
    sum
}

/// f16 weight row (little-endian) · f32 activations with F16C and FMA (reassociated: agrees with the scalar
/// twin within float rounding).
pub fn dot_f16(w: &[u8], x: &[f32]) -> f32 {
    assert!(available());
    assert_eq!(w.len(), 2 * x.len(), "f16 dot: {} weight bytes against {} activations", w.len(), x.len());
    // SAFETY: AVX2/FMA/F16C presence was checked just above; w holds 2 bytes per element of x.
    unsafe { dot_f16_avx2(w, x) }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_f16_avx2(w: &[u8], x: &[f32]) -> f32 {
    let n = x.len();
    let (wp, xp) = (w.as_ptr(), x.as_ptr());
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i + 32 <= n {
        for (l, acc) in acc.iter_mut().enumerate() {
            // SAFETY: i + 8l + 8 <= n: 16 bytes of w from byte 2(i + 8l) and 8 f32 of x from i + 8l are in bounds.
            unsafe {
                let a = _mm256_cvtph_ps(_mm_loadu_si128(wp.add(2 * (i + 8 * l)) as *const __m128i));
                let b = _mm256_loadu_ps(xp.add(i + 8 * l));
                *acc = _mm256_fmadd_ps(a, b, *acc);
            }
        }
        i += 32;
    }
    while i + 8 <= n {
        // SAFETY: i + 8 <= n, as above.
        unsafe {
            let a = _mm256_cvtph_ps(_mm_loadu_si128(wp.add(2 * i) as *const __m128i));
            let b = _mm256_loadu_ps(xp.add(i));
            acc[0] = _mm256_fmadd_ps(a, b, acc[0]);
        }
        i += 8;
    }
    let s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let mut lanes = [0f32; 8];
    // SAFETY: `lanes` holds 8 f32.
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), s) };
    let mut total = ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5])) + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]));
    for (wb, xv) in w[2 * i..].chunks_exact(2).zip(&x[i..]) {
        total += f16_at(wb, 0) * xv;
    }
    total
}

#[cfg(test)]
mod tests {
    use rand::rngs::SmallRng;
    use rand::SeedableRng;

    use super::*;
    use crate::kernels::kquants::tests::{quantize_row, random_row};
    use crate::kernels::kquants::{self as scalar, quantize_q8_k_activations};
    use crate::quant::f32_to_f16_bits;
    use crate::GgmlType;

    #[test]
    fn avx2_k_quant_dots_are_bit_identical_to_scalar() {
        if !crate::kernels::path_runs(
            "avx2",
            crate::kernels::x86::available(),
            "avx2_k_quant_dots_are_bit_identical_to_scalar",
        ) {
            return;
        }
        let mut rng = SmallRng::seed_from_u64(42);
        for &n in &[256usize, 512, 2048, 6144] {
            for it in 0..12 {
                let wv = random_row(&mut rng, n, it % 2 == 0);
                let xq = quantize_q8_k_activations(&random_row(&mut rng, n, it % 3 == 0));
                for ty in [GgmlType::Q4K, GgmlType::Q5K, GgmlType::Q6K] {
                    let w = quantize_row(ty, &wv);
                    let (s, v) = match ty {
                        GgmlType::Q4K => (scalar::dot_q4_k(&w, &xq), dot_q4_k(&w, &xq)),
                        GgmlType::Q5K => (scalar::dot_q5_k(&w, &xq), dot_q5_k(&w, &xq)),
                        _ => (scalar::dot_q6_k(&w, &xq), dot_q6_k(&w, &xq)),
                    };
                    assert_eq!(s.to_bits(), v.to_bits(), "{ty} n={n}: scalar {s} vs avx2 {v}");
                }
            }
        }
    }

    /// Random bytes exercise every level, scale, min and sign combination (including the extreme 6-bit scales
    /// and Q6_K's negative scales) that the quantizer would rarely emit; scales are finite f16 values.
    #[test]
    fn avx2_k_quant_dots_match_scalar_on_random_bytes() {
        use rand::Rng;
        if !crate::kernels::path_runs(
            "avx2",
            crate::kernels::x86::available(),
            "avx2_k_quant_dots_match_scalar_on_random_bytes",
        ) {
            return;
        }
        let mut rng = SmallRng::seed_from_u64(43);
        let n = 2048;
        for _ in 0..50 {
            let xq = quantize_q8_k_activations(&random_row(&mut rng, n, false));
            for (ty, bytes, f16s) in [
                (GgmlType::Q4K, Q4_K_BYTES, [0, 2]),
                (GgmlType::Q5K, Q5_K_BYTES, [0, 2]),
                (GgmlType::Q6K, Q6_K_BYTES, [208, 208]),
            ] {
                let mut w: Vec<u8> = (0..bytes * n / 256).map(|_| rng.gen()).collect();
                for b in w.chunks_exact_mut(bytes) {
                    for at in f16s {
                        let v = f32_to_f16_bits(rng.gen_range(-0.01f32..0.01)).to_le_bytes();
                        b[at..at + 2].copy_from_slice(&v);
                    }
                }
                let (s, v) = match ty {
                    GgmlType::Q4K => (scalar::dot_q4_k(&w, &xq), dot_q4_k(&w, &xq)),
                    GgmlType::Q5K => (scalar::dot_q5_k(&w, &xq), dot_q5_k(&w, &xq)),
                    _ => (scalar::dot_q6_k(&w, &xq), dot_q6_k(&w, &xq)),
                };
                assert_eq!(s.to_bits(), v.to_bits(), "{ty}: scalar {s} vs avx2 {v}");
            }
        }
    }

    #[test]
    fn avx2_f16_dot_matches_scalar_within_rounding() {
        if !crate::kernels::path_runs(
            "avx2",
            crate::kernels::x86::available(),
            "avx2_f16_dot_matches_scalar_within_rounding",
        ) {
            return;
        }
        let mut rng = SmallRng::seed_from_u64(8);
        for &n in &[1usize, 7, 8, 31, 32, 33, 100, 256, 1536, 2048, 4097, 6144] {
            let wv = random_row(&mut rng, n.next_multiple_of(256), false);
            let x = random_row(&mut rng, n.next_multiple_of(256), false)[..n].to_vec();
            let w: Vec<u8> = wv[..n].iter().flat_map(|&v| f32_to_f16_bits(v).to_le_bytes()).collect();
            let (s, v) = (scalar::dot_f16(&w, &x), dot_f16(&w, &x));
            // Both sum the same n products (f16 → f32 is exact) in different orders, the scalar path rounding
            // each product and the FMA path not: each is within about n·u·Σ|wᵢxᵢ| of the exact sum (u = 2⁻²⁴),
            // so they differ by at most twice that.
            let mag: f32 =
                w.chunks_exact(2).zip(&x).map(|(b, xv)| (crate::kernels::kquants::f16_at(b, 0) * xv).abs()).sum();
            let bound = 2.0 * n as f32 * f32::EPSILON / 2.0 * mag + f32::MIN_POSITIVE;
            assert!((s - v).abs() <= bound, "n={n}: scalar {s} vs avx2 {v} (bound {bound})");
        }
    }

    /// Timing note, not a test: `cargo test --release -p runtime q4_k_matvec_timing -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn q4_k_matvec_timing() {
        use std::time::Instant;
        if !crate::kernels::path_runs("avx2", crate::kernels::x86::available(), "q4_k_matvec_timing") {
            return;
        }
        let (k, m) = (2048usize, 6144usize);
        let mut rng = SmallRng::seed_from_u64(1);
        let xq = quantize_q8_k_activations(&random_row(&mut rng, k, false));
        let xf = random_row(&mut rng, k, false);
        for ty in [GgmlType::Q4K, GgmlType::Q5K, GgmlType::Q6K, GgmlType::F16] {
            let rows: Vec<Vec<u8>> = (0..m)
                .map(|r| {
                    let v = random_row(&mut SmallRng::seed_from_u64(r as u64), k, false);
                    match ty {
                        GgmlType::F16 => v.iter().flat_map(|&f| f32_to_f16_bits(f).to_le_bytes()).collect(),
                        _ => quantize_row(ty, &v),
                    }
                })
                .collect();
            let time = |f: &dyn Fn(&[u8]) -> f32| {
                let mut best = f64::MAX;
                let mut sink = 0f32;
                for _ in 0..5 {
                    let t = Instant::now();
                    for r in &rows {
                        sink += f(r);
                    }
                    best = best.min(t.elapsed().as_secs_f64());
                }
                (best, sink)
            };
            let (ts, a) = match ty {
                GgmlType::Q4K => time(&|r| scalar::dot_q4_k(r, &xq)),
                GgmlType::Q5K => time(&|r| scalar::dot_q5_k(r, &xq)),
                GgmlType::Q6K => time(&|r| scalar::dot_q6_k(r, &xq)),
                _ => time(&|r| scalar::dot_f16(r, &xf)),
            };
            let (tv, b) = match ty {
                GgmlType::Q4K => time(&|r| dot_q4_k(r, &xq)),
                GgmlType::Q5K => time(&|r| dot_q5_k(r, &xq)),
                GgmlType::Q6K => time(&|r| dot_q6_k(r, &xq)),
                _ => time(&|r| dot_f16(r, &xf)),
            };
            eprintln!(
                "{ty} {m}x{k} matvec, one thread: scalar {:.2} ms, avx2 {:.2} ms, ratio {:.1}x ({a} {b})",
                ts * 1e3,
                tv * 1e3,
                ts / tv
            );
        }
    }
}
