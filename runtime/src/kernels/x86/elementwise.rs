//! AVX2 twins of the elementwise kernels in [`crate::kernels::scalar`]: GELU (erf), SiLU·mul, softmax,
//! RMSNorm, LayerNorm and half-split RoPE. Each evaluates the scalar twin's operations in the same order
//! (no fused multiply-adds; reductions in eight lanes combined like [`scalar::reduce8`], tails in order),
//! so every result is bit-identical to the scalar path, which the tests check.

use std::arch::x86_64::*;

use rayon::prelude::*;

use crate::kernels::scalar::{
    self, reduce8, ERFC_NR, ERF_TAYLOR, EXP_C1, EXP_C2, EXP_HI, EXP_LO, EXP_P, GELU_CLAMP, GELU_TAYLOR_HI,
    GELU_TAYLOR_LO, LOG2E, PAR_CHUNK, ROUND_MAGIC,
};

/// `scalar::clamp_keep_nan`: NaN passes through (`minps`/`maxps` return the second operand on NaN).
#[inline]
#[target_feature(enable = "avx2,fma")]
fn clamp_keep_nan(x: __m256, lo: f32, hi: f32) -> __m256 {
    _mm256_max_ps(_mm256_set1_ps(lo), _mm256_min_ps(_mm256_set1_ps(hi), x))
}

/// `scalar::round_magic`.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn round_magic(v: __m256) -> (__m256, __m256i) {
    let m = _mm256_set1_ps(ROUND_MAGIC);
    let t = _mm256_add_ps(v, m);
    (_mm256_sub_ps(t, m), _mm256_sub_epi32(_mm256_castps_si256(t), _mm256_set1_epi32(ROUND_MAGIC.to_bits() as i32)))
}

/// Horner evaluation, highest coefficient first, as in the scalar loops.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn horner(coeffs: &[f32], x: __m256) -> __m256 {
    let mut p = _mm256_set1_ps(coeffs[0]);
    for &c in &coeffs[1..] {
        p = _mm256_add_ps(_mm256_mul_ps(p, x), _mm256_set1_ps(c));
    }
    p
}

/// `scalar::exp_finish`.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn exp_finish(n: __m256i, r: __m256) -> __m256 {
    let p = horner(&EXP_P, r);
    let y = _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(p, _mm256_mul_ps(r, r)), r), _mm256_set1_ps(1.0));
    let n1 = _mm256_srai_epi32::<1>(n);
    let n2 = _mm256_sub_epi32(n, n1);
    let bias = _mm256_set1_epi32(127);
    let s1 = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(n1, bias)));
    let s2 = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(n2, bias)));
    _mm256_mul_ps(_mm256_mul_ps(y, s1), s2)
}

/// `scalar::exp_f32` on 8 lanes.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn exp8(x: __m256) -> __m256 {
    let x = clamp_keep_nan(x, EXP_LO, EXP_HI);
    let (nf, n) = round_magic(_mm256_mul_ps(x, _mm256_set1_ps(LOG2E)));
    let r = _mm256_sub_ps(
        _mm256_sub_ps(x, _mm256_mul_ps(nf, _mm256_set1_ps(EXP_C1))),
        _mm256_mul_ps(nf, _mm256_set1_ps(EXP_C2)),
    );
    exp_finish(n, r)
}

/// `scalar::exp_sum` on 8 lanes.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn exp_sum8(a: __m256, b: __m256) -> __m256 {
    let s = _mm256_add_ps(a, b);
    let sc = clamp_keep_nan(s, EXP_LO, EXP_HI);
    let (nf, n) = round_magic(_mm256_mul_ps(sc, _mm256_set1_ps(LOG2E)));
    let r = _mm256_add_ps(
        _mm256_sub_ps(
            _mm256_sub_ps(a, _mm256_mul_ps(nf, _mm256_set1_ps(EXP_C1))),
            _mm256_mul_ps(nf, _mm256_set1_ps(EXP_C2)),
        ),
        b,
    );
    let y = exp_finish(n, r);
    let underflow = _mm256_cmp_ps::<_CMP_LT_OQ>(s, _mm256_set1_ps(EXP_LO));
    _mm256_andnot_ps(underflow, y)
}

/// `scalar::gelu_f32` on 8 lanes. Each lane takes the same branch as the scalar twin; a branch no lane takes
/// is skipped.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn gelu8(x: __m256) -> __m256 {
    let half = _mm256_set1_ps(0.5);
    let one = _mm256_set1_ps(1.0);
    let xc = clamp_keep_nan(x, -GELU_CLAMP, GELU_CLAMP);
    let z = _mm256_mul_ps(xc, _mm256_set1_ps(std::f32::consts::FRAC_1_SQRT_2));
    let small = _mm256_and_ps(
        _mm256_cmp_ps::<_CMP_LT_OQ>(z, _mm256_set1_ps(GELU_TAYLOR_HI)),
        _mm256_cmp_ps::<_CMP_GT_OQ>(z, _mm256_set1_ps(GELU_TAYLOR_LO)),
    );
    let lanes_small = _mm256_movemask_ps(small);
    if lanes_small == 0xFF {
        return _mm256_mul_ps(x, phi_taylor(z));
    }
    // erfc branch.
    let az = _mm256_and_ps(z, _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFF_FFFF)));
    let t = _mm256_div_ps(one, _mm256_add_ps(one, _mm256_mul_ps(half, az)));
    let q = horner(&ERFC_NR, t);
    let xh = _mm256_and_ps(xc, _mm256_castsi256_ps(_mm256_set1_epi32(0xFFFF_F000u32 as i32)));
    let xl = _mm256_sub_ps(xc, xh);
    let neg_half = _mm256_set1_ps(-0.5);
    let a = _mm256_mul_ps(neg_half, _mm256_mul_ps(xh, xh));
    let b = _mm256_add_ps(_mm256_mul_ps(neg_half, _mm256_mul_ps(xl, _mm256_add_ps(xh, xc))), q);
    let half_erfc = _mm256_mul_ps(_mm256_mul_ps(half, t), exp_sum8(a, b));
    let negative = _mm256_cmp_ps::<_CMP_LT_OQ>(xc, _mm256_setzero_ps());
    let phi_large = _mm256_blendv_ps(_mm256_sub_ps(one, half_erfc), half_erfc, negative);
    if lanes_small == 0 {
        return _mm256_mul_ps(x, phi_large);
    }
    _mm256_mul_ps(x, _mm256_blendv_ps(phi_large, phi_taylor(z), small))
}

/// GELU's Taylor branch: Φ = ½ + ½·z·P(z²).
#[inline]
#[target_feature(enable = "avx2,fma")]
fn phi_taylor(z: __m256) -> __m256 {
    let half = _mm256_set1_ps(0.5);
    let p = horner(&ERF_TAYLOR, _mm256_mul_ps(z, z));
    _mm256_add_ps(half, _mm256_mul_ps(half, _mm256_mul_ps(z, p)))
}

/// `scalar::silu_f32` on 8 lanes.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn silu8(g: __m256) -> __m256 {
    let neg = _mm256_xor_ps(g, _mm256_set1_ps(-0.0));
    _mm256_div_ps(g, _mm256_add_ps(_mm256_set1_ps(1.0), exp8(neg)))
}

/// The eight lanes of `v`, combined like [`scalar::reduce8`].
#[inline]
#[target_feature(enable = "avx2,fma")]
fn reduce_lanes(v: __m256) -> f32 {
    let mut lanes = [0f32; 8];
    // SAFETY: `lanes` holds 8 f32; unaligned store.
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), v) };
    reduce8(lanes)
}

#[target_feature(enable = "avx2,fma")]
fn gelu_avx2(x: &mut [f32]) {
    let mut chunks = x.chunks_exact_mut(8);
    for c in &mut chunks {
        // SAFETY: `c` is 8 contiguous f32; unaligned load and store.
        unsafe { _mm256_storeu_ps(c.as_mut_ptr(), gelu8(_mm256_loadu_ps(c.as_ptr()))) };
    }
    for v in chunks.into_remainder() {
        *v = scalar::gelu_f32(*v);
    }
}

/// Exact (erf) GELU in place (bit-identical to [`scalar::gelu_erf`]).
pub fn gelu_erf(x: &mut [f32]) {
    assert!(super::available());
    x.par_chunks_mut(PAR_CHUNK).for_each(|c| {
        // SAFETY: AVX2/FMA presence was checked above.
        unsafe { gelu_avx2(c) }
    });
}

#[target_feature(enable = "avx2,fma")]
fn silu_mul_avx2(gate: &mut [f32], up: &[f32]) {
    let n = gate.len().min(up.len());
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: i + 8 <= n <= both lengths; unaligned loads and store.
        unsafe {
            let g = _mm256_loadu_ps(gate.as_ptr().add(i));
            let u = _mm256_loadu_ps(up.as_ptr().add(i));
            _mm256_storeu_ps(gate.as_mut_ptr().add(i), _mm256_mul_ps(silu8(g), u));
        }
        i += 8;
    }
    for j in i..n {
        gate[j] = scalar::silu_f32(gate[j]) * up[j];
    }
}

/// `gate ← silu(gate) · up` (bit-identical to [`scalar::silu_mul`]).
pub fn silu_mul(gate: &mut [f32], up: &[f32]) {
    assert!(super::available());
    gate.par_chunks_mut(PAR_CHUNK).zip(up.par_chunks(PAR_CHUNK)).for_each(|(g, u)| {
        // SAFETY: AVX2/FMA presence was checked above.
        unsafe { silu_mul_avx2(g, u) }
    });
}

#[target_feature(enable = "avx2,fma")]
fn softmax_avx2(x: &mut [f32]) {
    let mut vmax = _mm256_set1_ps(f32::NEG_INFINITY);
    let mut chunks = x.chunks_exact(8);
    for c in &mut chunks {
        // SAFETY: `c` is 8 contiguous f32. `maxps(v, m)` keeps `m` when `v` is NaN, like `f32::max`.
        vmax = _mm256_max_ps(unsafe { _mm256_loadu_ps(c.as_ptr()) }, vmax);
    }
    let mut lanes = [0f32; 8];
    // SAFETY: `lanes` holds 8 f32.
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), vmax) };
    // Max is exact, so the order of comparisons does not change it.
    let max = chunks.remainder().iter().copied().fold(lanes.into_iter().fold(f32::NEG_INFINITY, f32::max), f32::max);
    let vm = _mm256_set1_ps(max);
    let mut acc = _mm256_setzero_ps();
    let mut chunks = x.chunks_exact_mut(8);
    for c in &mut chunks {
        // SAFETY: `c` is 8 contiguous f32; unaligned load and store.
        unsafe {
            let e = exp8(_mm256_sub_ps(_mm256_loadu_ps(c.as_ptr()), vm));
            _mm256_storeu_ps(c.as_mut_ptr(), e);
            acc = _mm256_add_ps(acc, e);
        }
    }
    let mut tail = 0f32;
    for v in chunks.into_remainder() {
        *v = scalar::exp_f32(*v - max);
        tail += *v;
    }
    let inv = 1.0 / (reduce_lanes(acc) + tail);
    let vinv = _mm256_set1_ps(inv);
    let mut chunks = x.chunks_exact_mut(8);
    for c in &mut chunks {
        // SAFETY: `c` is 8 contiguous f32; unaligned load and store.
        unsafe { _mm256_storeu_ps(c.as_mut_ptr(), _mm256_mul_ps(_mm256_loadu_ps(c.as_ptr()), vinv)) };
    }
    for v in chunks.into_remainder() {
        *v *= inv;
    }
}

/// Numerically stable softmax in place (bit-identical to [`scalar::softmax_in_place`]).
pub fn softmax_in_place(x: &mut [f32]) {
    assert!(super::available());
    // SAFETY: AVX2/FMA presence was checked above.
    unsafe { softmax_avx2(x) }
}

/// Σ v² in eight lanes, as `scalar::sum_squares`.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn sum_squares(x: &[f32]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let mut chunks = x.chunks_exact(8);
    for c in &mut chunks {
        // SAFETY: `c` is 8 contiguous f32.
        let v = unsafe { _mm256_loadu_ps(c.as_ptr()) };
        acc = _mm256_add_ps(acc, _mm256_mul_ps(v, v));
    }
    let tail = chunks.remainder().iter().fold(0f32, |s, v| s + v * v);
    reduce_lanes(acc) + tail
}

/// `o = w · (x · scale)` over a row.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn scale_weight(x: &[f32], w: &[f32], scale: f32, o: &mut [f32]) {
    let n = o.len().min(x.len()).min(w.len());
    let vs = _mm256_set1_ps(scale);
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: i + 8 <= n <= every length; unaligned loads and store.
        unsafe {
            let v = _mm256_loadu_ps(x.as_ptr().add(i));
            let wv = _mm256_loadu_ps(w.as_ptr().add(i));
            _mm256_storeu_ps(o.as_mut_ptr().add(i), _mm256_mul_ps(wv, _mm256_mul_ps(v, vs)));
        }
        i += 8;
    }
    for j in i..n {
        o[j] = w[j] * (x[j] * scale);
    }
}

#[target_feature(enable = "avx2,fma")]
fn rms_norm_row(row: &[f32], weight: &[f32], eps: f32, o: &mut [f32]) {
    let ms = sum_squares(row) / weight.len() as f32;
    let scale = 1.0 / (ms + eps).sqrt();
    scale_weight(row, weight, scale, o);
}

/// RMSNorm over rows of `weight.len()` (bit-identical to [`scalar::rms_norm`]).
pub fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    assert!(super::available());
    let d = weight.len();
    out.par_chunks_mut(d).zip(x.par_chunks(d)).for_each(|(o, row)| {
        // SAFETY: AVX2/FMA presence was checked above.
        unsafe { rms_norm_row(row, weight, eps, o) }
    });
}

#[target_feature(enable = "avx2,fma")]
fn rms_norm_heads_avx2(x: &mut [f32], weight: &[f32], eps: f32) {
    let d = weight.len();
    for row in x.chunks_mut(d) {
        let ms = sum_squares(row) / d as f32;
        let scale = 1.0 / (ms + eps).sqrt();
        let vs = _mm256_set1_ps(scale);
        let n = row.len().min(d);
        let mut i = 0;
        while i + 8 <= n {
            // SAFETY: i + 8 <= n <= both lengths; unaligned loads and store.
            unsafe {
                let v = _mm256_loadu_ps(row.as_ptr().add(i));
                let wv = _mm256_loadu_ps(weight.as_ptr().add(i));
                _mm256_storeu_ps(row.as_mut_ptr().add(i), _mm256_mul_ps(wv, _mm256_mul_ps(v, vs)));
            }
            i += 8;
        }
        for j in i..n {
            row[j] = weight[j] * (row[j] * scale);
        }
    }
}

/// RMSNorm of every `weight.len()`-long head vector in place (bit-identical to [`scalar::rms_norm_heads`]).
pub fn rms_norm_heads(x: &mut [f32], weight: &[f32], eps: f32) {
    assert!(super::available());
    // SAFETY: AVX2/FMA presence was checked above.
    unsafe { rms_norm_heads_avx2(x, weight, eps) }
}

#[target_feature(enable = "avx2,fma")]
fn layer_norm_row(row: &[f32], weight: &[f32], bias: &[f32], eps: f32, o: &mut [f32]) {
    let d = weight.len();
    let mut acc = _mm256_setzero_ps();
    let mut chunks = row.chunks_exact(8);
    for c in &mut chunks {
        // SAFETY: `c` is 8 contiguous f32.
        acc = _mm256_add_ps(acc, unsafe { _mm256_loadu_ps(c.as_ptr()) });
    }
    let tail = chunks.remainder().iter().fold(0f32, |s, v| s + v);
    let mean = (reduce_lanes(acc) + tail) / d as f32;
    let vm = _mm256_set1_ps(mean);
    let mut acc = _mm256_setzero_ps();
    let mut chunks = row.chunks_exact(8);
    for c in &mut chunks {
        // SAFETY: `c` is 8 contiguous f32.
        let dv = _mm256_sub_ps(unsafe { _mm256_loadu_ps(c.as_ptr()) }, vm);
        acc = _mm256_add_ps(acc, _mm256_mul_ps(dv, dv));
    }
    let tail = chunks.remainder().iter().fold(0f32, |s, v| s + (v - mean) * (v - mean));
    let var = (reduce_lanes(acc) + tail) / d as f32;
    let inv = 1.0 / (var + eps).sqrt();
    let vinv = _mm256_set1_ps(inv);
    let n = o.len().min(row.len()).min(d).min(bias.len());
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: i + 8 <= n <= every length; unaligned loads and store.
        unsafe {
            let v = _mm256_loadu_ps(row.as_ptr().add(i));
            let w = _mm256_loadu_ps(weight.as_ptr().add(i));
            let b = _mm256_loadu_ps(bias.as_ptr().add(i));
            let y = _mm256_add_ps(_mm256_mul_ps(_mm256_mul_ps(_mm256_sub_ps(v, vm), vinv), w), b);
            _mm256_storeu_ps(o.as_mut_ptr().add(i), y);
        }
        i += 8;
    }
    for j in i..n {
        o[j] = (row[j] - mean) * inv * weight[j] + bias[j];
    }
}

/// LayerNorm with weight and bias over rows of `weight.len()` (bit-identical to [`scalar::layer_norm`]).
pub fn layer_norm(x: &[f32], weight: &[f32], bias: &[f32], eps: f32, out: &mut [f32]) {
    assert!(super::available());
    let d = weight.len();
    out.par_chunks_mut(d).zip(x.par_chunks(d)).for_each(|(o, row)| {
        // SAFETY: AVX2/FMA presence was checked above.
        unsafe { layer_norm_row(row, weight, bias, eps, o) }
    });
}

#[target_feature(enable = "avx2,fma")]
fn rope_avx2(x: &mut [f32], head_dim: usize, cos: &[f32], sin: &[f32]) {
    let half = head_dim / 2;
    assert!(cos.len() >= half && sin.len() >= half);
    for head in x.chunks_mut(head_dim) {
        if head.len() < 2 * half {
            // A partial head: the scalar twin indexes it and panics the same way.
            scalar::rope_half_split(head, head_dim, cos, sin);
            continue;
        }
        let (lo, hi) = head.split_at_mut(half);
        let mut i = 0;
        while i + 8 <= half {
            // SAFETY: i + 8 <= half <= the lengths of `lo`, `hi`, `cos` and `sin`; unaligned loads and stores.
            unsafe {
                let a = _mm256_loadu_ps(lo.as_ptr().add(i));
                let b = _mm256_loadu_ps(hi.as_ptr().add(i));
                let c = _mm256_loadu_ps(cos.as_ptr().add(i));
                let s = _mm256_loadu_ps(sin.as_ptr().add(i));
                _mm256_storeu_ps(lo.as_mut_ptr().add(i), _mm256_sub_ps(_mm256_mul_ps(a, c), _mm256_mul_ps(b, s)));
                _mm256_storeu_ps(hi.as_mut_ptr().add(i), _mm256_add_ps(_mm256_mul_ps(b, c), _mm256_mul_ps(a, s)));
            }
            i += 8;
        }
        for j in i..half {
            let (a, b) = (lo[j], hi[j]);
            lo[j] = a * cos[j] - b * sin[j];
            hi[j] = b * cos[j] + a * sin[j];
        }
    }
}

/// Half-split rotary embedding of every head vector of one position (bit-identical to
/// [`scalar::rope_half_split`]).
pub fn rope_half_split(x: &mut [f32], head_dim: usize, cos: &[f32], sin: &[f32]) {
    assert!(super::available());
    // SAFETY: AVX2/FMA presence was checked above.
    unsafe { rope_avx2(x, head_dim, cos, sin) }
}

#[cfg(test)]
mod tests {
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    const LENS: [usize; 8] = [1, 7, 8, 31, 64, 1024, 1536, 4097];

    fn same(a: f32, b: f32) -> bool {
        a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
    }

    fn assert_same(what: &str, s: &[f32], v: &[f32]) {
        assert_eq!(s.len(), v.len());
        for (i, (a, b)) in s.iter().zip(v).enumerate() {
            assert!(same(*a, *b), "{what}[{i}]: scalar {a:e} ({:#x}) vs avx2 {b:e} ({:#x})", a.to_bits(), b.to_bits());
        }
    }

    /// Mostly N(0, spread)-like values, with occasional outliers and (if `specials`) ±0, ±∞, NaN, huge and
    /// subnormal values.
    fn random_row(rng: &mut SmallRng, n: usize, spread: f32, specials: bool) -> Vec<f32> {
        const SPECIAL: [f32; 13] = [
            0.0,
            -0.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            1e30,
            -1e30,
            1e-40,
            -1e-40,
            88.72,
            -103.9,
            std::f32::consts::SQRT_2,
            -std::f32::consts::FRAC_1_SQRT_2,
        ];
        (0..n)
            .map(|_| {
                if specials && rng.gen_bool(0.05) {
                    SPECIAL[rng.gen_range(0..SPECIAL.len())]
                } else {
                    rng.gen_range(-spread..spread) * if rng.gen_bool(0.02) { 8.0 } else { 1.0 }
                }
            })
            .collect()
    }

    fn skip() -> bool {
        if !crate::kernels::path_runs("avx2", crate::kernels::x86::available(), "elementwise twins") {
            return true;
        }
        false
    }

    #[test]
    fn exp_and_gelu_lanes_match_scalar_bits() {
        if skip() {
            return;
        }
        let mut rng = SmallRng::seed_from_u64(1);
        let mut xs: Vec<f32> = (0..200_000).map(|_| f32::from_bits(rng.gen::<u32>())).collect();
        xs.extend((0..200_000).map(|i| -120.0 + 220.0 * i as f32 / 200_000.0));
        xs.extend([0.0, -0.0, f32::INFINITY, f32::NEG_INFINITY, f32::NAN, 88.72, 88.73, -104.0, -103.97]);
        while !xs.len().is_multiple_of(8) {
            xs.push(1.0);
        }
        for c in xs.chunks_exact(8) {
            let mut e = [0f32; 8];
            let mut g = [0f32; 8];
            // SAFETY: AVX2/FMA presence was checked above; `c`, `e` and `g` hold 8 f32 each.
            unsafe {
                let v = _mm256_loadu_ps(c.as_ptr());
                _mm256_storeu_ps(e.as_mut_ptr(), exp8(v));
                _mm256_storeu_ps(g.as_mut_ptr(), gelu8(v));
            }
            for l in 0..8 {
                assert!(
                    same(e[l], scalar::exp_f32(c[l])),
                    "exp({:e}): {:e} vs {:e}",
                    c[l],
                    e[l],
                    scalar::exp_f32(c[l])
                );
                assert!(
                    same(g[l], scalar::gelu_f32(c[l])),
                    "gelu({:e}): {:e} vs {:e}",
                    c[l],
                    g[l],
                    scalar::gelu_f32(c[l])
                );
            }
        }
    }

    #[test]
    fn gelu_silu_softmax_are_bit_identical_to_scalar() {
        if skip() {
            return;
        }
        let mut rng = SmallRng::seed_from_u64(2);
        for &n in &LENS {
            let x = random_row(&mut rng, n, 6.0, true);
            let (mut s, mut v) = (x.clone(), x.clone());
            scalar::gelu_erf(&mut s);
            gelu_erf(&mut v);
            assert_same(&format!("gelu n={n}"), &s, &v);

            let up = random_row(&mut rng, n, 3.0, true);
            let (mut s, mut v) = (x.clone(), x.clone());
            scalar::silu_mul(&mut s, &up);
            silu_mul(&mut v, &up);
            assert_same(&format!("silu_mul n={n}"), &s, &v);

            // Softmax: finite logits (one special would make the whole row NaN or one-hot), then a row with
            // specials too.
            for specials in [false, true] {
                let x = random_row(&mut rng, n, 20.0, specials);
                let (mut s, mut v) = (x.clone(), x.clone());
                scalar::softmax_in_place(&mut s);
                softmax_in_place(&mut v);
                assert_same(&format!("softmax n={n} specials={specials}"), &s, &v);
            }
        }
    }

    #[test]
    fn norms_and_rope_are_bit_identical_to_scalar() {
        if skip() {
            return;
        }
        let mut rng = SmallRng::seed_from_u64(3);
        for &d in &LENS {
            let rows = 3;
            let x = random_row(&mut rng, rows * d, 4.0, false);
            let w = random_row(&mut rng, d, 2.0, false);
            let b = random_row(&mut rng, d, 1.0, false);
            let (mut s, mut v) = (vec![0f32; rows * d], vec![0f32; rows * d]);
            scalar::rms_norm(&x, &w, 1e-6, &mut s);
            rms_norm(&x, &w, 1e-6, &mut v);
            assert_same(&format!("rms_norm d={d}"), &s, &v);

            let (mut s, mut v) = (x.clone(), x.clone());
            scalar::rms_norm_heads(&mut s, &w, 1e-6);
            rms_norm_heads(&mut v, &w, 1e-6);
            assert_same(&format!("rms_norm_heads d={d}"), &s, &v);

            let (mut s, mut v) = (vec![0f32; rows * d], vec![0f32; rows * d]);
            scalar::layer_norm(&x, &w, &b, 1e-5, &mut s);
            layer_norm(&x, &w, &b, 1e-5, &mut v);
            assert_same(&format!("layer_norm d={d}"), &s, &v);

            // RoPE with half = d (head_dim 2d), three heads.
            let head_dim = 2 * d;
            let x = random_row(&mut rng, rows * head_dim, 4.0, false);
            let theta: Vec<f32> = (0..d).map(|_| rng.gen_range(-100.0f32..100.0)).collect();
            let (cos, sin): (Vec<f32>, Vec<f32>) = theta.iter().map(|t| (t.cos(), t.sin())).unzip();
            let (mut s, mut v) = (x.clone(), x.clone());
            scalar::rope_half_split(&mut s, head_dim, &cos, &sin);
            rope_half_split(&mut v, head_dim, &cos, &sin);
            assert_same(&format!("rope half={d}"), &s, &v);
        }
    }

    /// Timing comparison, not a test: `cargo test --release -p runtime --lib elementwise::tests::bench --
    /// --ignored --nocapture`. One thread, so the ratios are per core.
    #[test]
    #[ignore]
    fn bench_gelu_and_silu_mul() {
        use std::time::Instant;
        let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        let mut rng = SmallRng::seed_from_u64(4);
        let time = |f: &mut dyn FnMut()| {
            f();
            let reps = 5;
            let t = Instant::now();
            for _ in 0..reps {
                f();
            }
            t.elapsed().as_secs_f64() * 1e3 / reps as f64
        };
        pool.install(|| {
            let x = random_row(&mut rng, 1024 * 4304, 4.0, false);
            let mut buf = x.clone();
            let copy = time(&mut || buf.copy_from_slice(&x));
            let old = time(&mut || {
                buf.copy_from_slice(&x);
                buf.par_iter_mut().for_each(|v| {
                    let f = *v as f64;
                    *v = (0.5 * f * (1.0 + libm::erf(f / std::f64::consts::SQRT_2))) as f32;
                });
            });
            let new = time(&mut || {
                buf.copy_from_slice(&x);
                scalar::gelu_erf(&mut buf);
            });
            let simd = time(&mut || {
                buf.copy_from_slice(&x);
                gelu_erf(&mut buf);
            });
            // Each timing includes refilling the buffer: take that out.
            let (old, new, simd) = (old - copy, new - copy, simd - copy);
            eprintln!(
                "gelu 1024×4304: libm f64 {old:.1} ms, scalar f32 {new:.1} ms ({:.1}×), avx2 {simd:.1} ms ({:.1}× old, {:.1}× scalar)",
                old / new,
                old / simd,
                new / simd
            );

            let g = random_row(&mut rng, 512 * 6144, 4.0, false);
            let up = random_row(&mut rng, 512 * 6144, 4.0, false);
            let mut buf = g.clone();
            let copy = time(&mut || buf.copy_from_slice(&g));
            let old = time(&mut || {
                buf.copy_from_slice(&g);
                buf.par_iter_mut().zip(up.par_iter()).for_each(|(g, u)| {
                    let s = *g / (1.0 + (-*g).exp());
                    *g = s * u;
                });
            });
            let new = time(&mut || {
                buf.copy_from_slice(&g);
                scalar::silu_mul(&mut buf, &up);
            });
            let simd = time(&mut || {
                buf.copy_from_slice(&g);
                silu_mul(&mut buf, &up);
            });
            let (old, new, simd) = (old - copy, new - copy, simd - copy);
            eprintln!(
                "silu_mul 512×6144: std exp {old:.1} ms, scalar f32 {new:.1} ms ({:.1}×), avx2 {simd:.1} ms ({:.1}× old, {:.1}× scalar)",
                old / new,
                old / simd,
                new / simd
            );
        });
    }
}
