//! NEON twins of the elementwise kernels in [`crate::kernels::scalar`]: GELU (erf), SiLU·mul, softmax,
//! RMSNorm, LayerNorm and half-split RoPE. Like the AVX2 twins, each evaluates the scalar twin's operations
//! in the same order with separate multiplies and adds (never `fmla`), comparisons and selects instead of
//! `fmin`/`fmax` where NaN or signed zeros could tell them apart, and the eight scalar lanes of every
//! reduction held as two 4-lane vectors (lanes 0..4 and 4..8) combined like [`scalar::reduce8`]: every
//! result is bit-identical to the scalar path, which the tests check.

use std::arch::aarch64::*;

use rayon::prelude::*;

use crate::kernels::scalar::{
    self, reduce8, ERFC_NR, ERF_TAYLOR, EXP_C1, EXP_C2, EXP_HI, EXP_LO, EXP_P, GELU_CLAMP, GELU_TAYLOR_HI,
    GELU_TAYLOR_LO, LOG2E, PAR_CHUNK, ROUND_MAGIC,
};

use super::neon_available;

/// `scalar::clamp_keep_nan`: `if hi < x { hi } else { x }`, then `if lo > x { lo } else { x }` as compare
/// and select, so NaN passes through unchanged as in the scalar code.
#[inline]
#[target_feature(enable = "neon")]
fn clamp_keep_nan(x: float32x4_t, lo: f32, hi: f32) -> float32x4_t {
    let (vlo, vhi) = (vdupq_n_f32(lo), vdupq_n_f32(hi));
    let x = vbslq_f32(vcltq_f32(vhi, x), vhi, x);
    vbslq_f32(vcgtq_f32(vlo, x), vlo, x)
}

/// `scalar::round_magic`.
#[inline]
#[target_feature(enable = "neon")]
fn round_magic(v: float32x4_t) -> (float32x4_t, int32x4_t) {
    let m = vdupq_n_f32(ROUND_MAGIC);
    let t = vaddq_f32(v, m);
    (vsubq_f32(t, m), vsubq_s32(vreinterpretq_s32_f32(t), vdupq_n_s32(ROUND_MAGIC.to_bits() as i32)))
}

/// Horner evaluation, highest coefficient first, as in the scalar loops (multiply, then add).
#[inline]
#[target_feature(enable = "neon")]
fn horner(coeffs: &[f32], x: float32x4_t) -> float32x4_t {
    let mut p = vdupq_n_f32(coeffs[0]);
    for &c in &coeffs[1..] {
        p = vaddq_f32(vmulq_f32(p, x), vdupq_n_f32(c));
    }
    p
}

/// `scalar::exp_finish`.
#[inline]
#[target_feature(enable = "neon")]
fn exp_finish(n: int32x4_t, r: float32x4_t) -> float32x4_t {
    let p = horner(&EXP_P, r);
    let y = vaddq_f32(vaddq_f32(vmulq_f32(p, vmulq_f32(r, r)), r), vdupq_n_f32(1.0));
    let n1 = vshrq_n_s32::<1>(n);
    let n2 = vsubq_s32(n, n1);
    let bias = vdupq_n_s32(127);
    let s1 = vreinterpretq_f32_s32(vshlq_n_s32::<23>(vaddq_s32(n1, bias)));
    let s2 = vreinterpretq_f32_s32(vshlq_n_s32::<23>(vaddq_s32(n2, bias)));
    vmulq_f32(vmulq_f32(y, s1), s2)
}

/// `scalar::exp_f32` on 4 lanes.
#[inline]
#[target_feature(enable = "neon")]
fn exp4(x: float32x4_t) -> float32x4_t {
    let x = clamp_keep_nan(x, EXP_LO, EXP_HI);
    let (nf, n) = round_magic(vmulq_f32(x, vdupq_n_f32(LOG2E)));
    let r = vsubq_f32(vsubq_f32(x, vmulq_f32(nf, vdupq_n_f32(EXP_C1))), vmulq_f32(nf, vdupq_n_f32(EXP_C2)));
    exp_finish(n, r)
}

/// `scalar::exp_sum` on 4 lanes.
#[inline]
#[target_feature(enable = "neon")]
fn exp_sum4(a: float32x4_t, b: float32x4_t) -> float32x4_t {
    let s = vaddq_f32(a, b);
    let sc = clamp_keep_nan(s, EXP_LO, EXP_HI);
    let (nf, n) = round_magic(vmulq_f32(sc, vdupq_n_f32(LOG2E)));
    let r =
        vaddq_f32(vsubq_f32(vsubq_f32(a, vmulq_f32(nf, vdupq_n_f32(EXP_C1))), vmulq_f32(nf, vdupq_n_f32(EXP_C2))), b);
    let y = exp_finish(n, r);
    // `if s < EXP_LO { 0.0 } else { y }`: clearing all bits gives +0.0.
    let underflow = vcltq_f32(s, vdupq_n_f32(EXP_LO));
    vreinterpretq_f32_u32(vbicq_u32(vreinterpretq_u32_f32(y), underflow))
}

/// `x` with the bits outside `mask` cleared.
#[inline]
#[target_feature(enable = "neon")]
fn and_bits(x: float32x4_t, mask: u32) -> float32x4_t {
    vreinterpretq_f32_u32(vandq_u32(vreinterpretq_u32_f32(x), vdupq_n_u32(mask)))
}

/// GELU's Taylor branch: Φ = ½ + ½·(z·P(z²)).
#[inline]
#[target_feature(enable = "neon")]
fn phi_taylor(z: float32x4_t) -> float32x4_t {
    let half = vdupq_n_f32(0.5);
    let p = horner(&ERF_TAYLOR, vmulq_f32(z, z));
    vaddq_f32(half, vmulq_f32(half, vmulq_f32(z, p)))
}

/// `scalar::gelu_f32` on 4 lanes. Each lane takes the same branch as the scalar twin; a branch no lane
/// takes is skipped.
#[inline]
#[target_feature(enable = "neon")]
fn gelu4(x: float32x4_t) -> float32x4_t {
    let half = vdupq_n_f32(0.5);
    let one = vdupq_n_f32(1.0);
    let xc = clamp_keep_nan(x, -GELU_CLAMP, GELU_CLAMP);
    let z = vmulq_f32(xc, vdupq_n_f32(std::f32::consts::FRAC_1_SQRT_2));
    let small = vandq_u32(vcltq_f32(z, vdupq_n_f32(GELU_TAYLOR_HI)), vcgtq_f32(z, vdupq_n_f32(GELU_TAYLOR_LO)));
    if vminvq_u32(small) != 0 {
        return vmulq_f32(x, phi_taylor(z));
    }
    // erfc branch.
    let az = and_bits(z, 0x7FFF_FFFF);
    let t = vdivq_f32(one, vaddq_f32(one, vmulq_f32(half, az)));
    let q = horner(&ERFC_NR, t);
    let xh = and_bits(xc, 0xFFFF_F000);
    let xl = vsubq_f32(xc, xh);
    let neg_half = vdupq_n_f32(-0.5);
    let a = vmulq_f32(neg_half, vmulq_f32(xh, xh));
    let b = vaddq_f32(vmulq_f32(neg_half, vmulq_f32(xl, vaddq_f32(xh, xc))), q);
    let half_erfc = vmulq_f32(vmulq_f32(half, t), exp_sum4(a, b));
    let negative = vcltq_f32(xc, vdupq_n_f32(0.0));
    let phi_large = vbslq_f32(negative, half_erfc, vsubq_f32(one, half_erfc));
    if vmaxvq_u32(small) == 0 {
        return vmulq_f32(x, phi_large);
    }
    vmulq_f32(x, vbslq_f32(small, phi_taylor(z), phi_large))
}

/// `scalar::silu_f32` on 4 lanes (`-g` is a sign flip, as in the scalar code).
#[inline]
#[target_feature(enable = "neon")]
fn silu4(g: float32x4_t) -> float32x4_t {
    let neg = vreinterpretq_f32_u32(veorq_u32(vreinterpretq_u32_f32(g), vdupq_n_u32(0x8000_0000)));
    vdivq_f32(g, vaddq_f32(vdupq_n_f32(1.0), exp4(neg)))
}

/// The eight scalar lanes `lo` (0..4) and `hi` (4..8), combined like [`scalar::reduce8`].
#[inline]
#[target_feature(enable = "neon")]
fn reduce_lanes(lo: float32x4_t, hi: float32x4_t) -> f32 {
    let mut lanes = [0f32; 8];
    // SAFETY: `lanes` holds 8 f32; `st1` has no alignment requirement.
    unsafe {
        vst1q_f32(lanes.as_mut_ptr(), lo);
        vst1q_f32(lanes.as_mut_ptr().add(4), hi);
    }
    reduce8(lanes)
}

#[target_feature(enable = "neon")]
fn gelu_neon(x: &mut [f32]) {
    let mut chunks = x.chunks_exact_mut(4);
    for c in &mut chunks {
        // SAFETY: `c` is 4 contiguous f32; unaligned load and store.
        unsafe { vst1q_f32(c.as_mut_ptr(), gelu4(vld1q_f32(c.as_ptr()))) };
    }
    for v in chunks.into_remainder() {
        *v = scalar::gelu_f32(*v);
    }
}

/// Exact (erf) GELU in place (bit-identical to [`scalar::gelu_erf`]).
pub fn gelu_erf(x: &mut [f32]) {
    assert!(neon_available());
    x.par_chunks_mut(PAR_CHUNK).for_each(|c| {
        // SAFETY: NEON presence was checked above.
        unsafe { gelu_neon(c) }
    });
}

#[target_feature(enable = "neon")]
fn silu_mul_neon(gate: &mut [f32], up: &[f32]) {
    let n = gate.len().min(up.len());
    let mut i = 0;
    while i + 4 <= n {
        // SAFETY: i + 4 <= n <= both lengths; unaligned loads and store.
        unsafe {
            let g = vld1q_f32(gate.as_ptr().add(i));
            let u = vld1q_f32(up.as_ptr().add(i));
            vst1q_f32(gate.as_mut_ptr().add(i), vmulq_f32(silu4(g), u));
        }
        i += 4;
    }
    for j in i..n {
        gate[j] = scalar::silu_f32(gate[j]) * up[j];
    }
}

/// `gate ← silu(gate) · up` (bit-identical to [`scalar::silu_mul`]).
pub fn silu_mul(gate: &mut [f32], up: &[f32]) {
    assert!(neon_available());
    gate.par_chunks_mut(PAR_CHUNK).zip(up.par_chunks(PAR_CHUNK)).for_each(|(g, u)| {
        // SAFETY: NEON presence was checked above.
        unsafe { silu_mul_neon(g, u) }
    });
}

/// The maximum of `x` (as the scalar `fold(-inf, f32::max)`), or `None` if `x` holds a NaN: `f32::max`
/// (`fmaxnm`) turns a signaling NaN into a quiet one that later elements replace, so with NaNs the result
/// depends on the order of comparisons; without them, max is exact and any order gives the same value
/// (up to the sign of a zero maximum, which `x - max` and `exp` do not see).
#[inline]
#[target_feature(enable = "neon")]
fn max_without_nan(x: &[f32]) -> Option<f32> {
    let mut vmax = vdupq_n_f32(f32::NEG_INFINITY);
    let mut ordered = vdupq_n_u32(u32::MAX);
    let mut chunks = x.chunks_exact(4);
    for c in &mut chunks {
        // SAFETY: `c` is 4 contiguous f32.
        let v = unsafe { vld1q_f32(c.as_ptr()) };
        ordered = vandq_u32(ordered, vceqq_f32(v, v));
        vmax = vmaxnmq_f32(vmax, v);
    }
    if vminvq_u32(ordered) == 0 || chunks.remainder().iter().any(|v| v.is_nan()) {
        return None;
    }
    Some(chunks.remainder().iter().copied().fold(vmaxvq_f32(vmax), f32::max))
}

#[target_feature(enable = "neon")]
fn softmax_neon(x: &mut [f32]) {
    let Some(max) = max_without_nan(x) else {
        // A NaN makes every output NaN anyway; the scalar kernel gives its exact bits.
        return scalar::softmax_in_place(x);
    };
    let vm = vdupq_n_f32(max);
    let (mut lo, mut hi) = (vdupq_n_f32(0.0), vdupq_n_f32(0.0));
    let mut chunks = x.chunks_exact_mut(8);
    for c in &mut chunks {
        // SAFETY: `c` is 8 contiguous f32; unaligned loads and stores.
        unsafe {
            let e0 = exp4(vsubq_f32(vld1q_f32(c.as_ptr()), vm));
            let e1 = exp4(vsubq_f32(vld1q_f32(c.as_ptr().add(4)), vm));
            vst1q_f32(c.as_mut_ptr(), e0);
            vst1q_f32(c.as_mut_ptr().add(4), e1);
            lo = vaddq_f32(lo, e0);
            hi = vaddq_f32(hi, e1);
        }
    }
    let mut tail = 0f32;
    for v in chunks.into_remainder() {
        *v = scalar::exp_f32(*v - max);
        tail += *v;
    }
    let inv = 1.0 / (reduce_lanes(lo, hi) + tail);
    let vinv = vdupq_n_f32(inv);
    let mut chunks = x.chunks_exact_mut(4);
    for c in &mut chunks {
        // SAFETY: `c` is 4 contiguous f32; unaligned load and store.
        unsafe { vst1q_f32(c.as_mut_ptr(), vmulq_f32(vld1q_f32(c.as_ptr()), vinv)) };
    }
    for v in chunks.into_remainder() {
        *v *= inv;
    }
}

/// Numerically stable softmax in place (bit-identical to [`scalar::softmax_in_place`]).
pub fn softmax_in_place(x: &mut [f32]) {
    assert!(neon_available());
    // SAFETY: NEON presence was checked above.
    unsafe { softmax_neon(x) }
}

/// Σ v² in eight scalar lanes, as `scalar::sum_squares`.
#[inline]
#[target_feature(enable = "neon")]
fn sum_squares(x: &[f32]) -> f32 {
    let (mut lo, mut hi) = (vdupq_n_f32(0.0), vdupq_n_f32(0.0));
    let mut chunks = x.chunks_exact(8);
    for c in &mut chunks {
        // SAFETY: `c` is 8 contiguous f32.
        let (a, b) = unsafe { (vld1q_f32(c.as_ptr()), vld1q_f32(c.as_ptr().add(4))) };
        lo = vaddq_f32(lo, vmulq_f32(a, a));
        hi = vaddq_f32(hi, vmulq_f32(b, b));
    }
    let tail = chunks.remainder().iter().fold(0f32, |s, v| s + v * v);
    reduce_lanes(lo, hi) + tail
}

/// `o = w · (x · scale)` over a row (`o` may be `x`'s storage: element i is read before it is written).
///
/// # Safety
/// NEON must be available; `x` and `w` must be readable and `o` writable for `n` f32 each.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn scale_weight(x: *const f32, w: *const f32, scale: f32, o: *mut f32, n: usize) {
    let vs = vdupq_n_f32(scale);
    let mut i = 0;
    while i + 4 <= n {
        // SAFETY: i + 4 <= n (the caller's contract); unaligned loads and store.
        unsafe {
            let v = vld1q_f32(x.add(i));
            let wv = vld1q_f32(w.add(i));
            vst1q_f32(o.add(i), vmulq_f32(wv, vmulq_f32(v, vs)));
        }
        i += 4;
    }
    for j in i..n {
        // SAFETY: j < n (the caller's contract).
        unsafe { *o.add(j) = *w.add(j) * (*x.add(j) * scale) };
    }
}

#[target_feature(enable = "neon")]
fn rms_norm_row(row: &[f32], weight: &[f32], eps: f32, o: &mut [f32]) {
    let ms = sum_squares(row) / weight.len() as f32;
    let scale = 1.0 / (ms + eps).sqrt();
    let n = o.len().min(row.len()).min(weight.len());
    // SAFETY: NEON is enabled here; n is at most every slice's length.
    unsafe { scale_weight(row.as_ptr(), weight.as_ptr(), scale, o.as_mut_ptr(), n) }
}

/// RMSNorm over rows of `weight.len()` (bit-identical to [`scalar::rms_norm`]).
pub fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    assert!(neon_available());
    let d = weight.len();
    out.par_chunks_mut(d).zip(x.par_chunks(d)).for_each(|(o, row)| {
        // SAFETY: NEON presence was checked above.
        unsafe { rms_norm_row(row, weight, eps, o) }
    });
}

#[target_feature(enable = "neon")]
fn rms_norm_heads_neon(x: &mut [f32], weight: &[f32], eps: f32) {
    let d = weight.len();
    for row in x.chunks_mut(d) {
        let ms = sum_squares(row) / d as f32;
        let scale = 1.0 / (ms + eps).sqrt();
        let n = row.len().min(d);
        let p = row.as_mut_ptr();
        // SAFETY: NEON is enabled here; n is at most both lengths; in place, each element is read before
        // it is written.
        unsafe { scale_weight(p, weight.as_ptr(), scale, p, n) }
    }
}

/// RMSNorm of every `weight.len()`-long head vector in place (bit-identical to [`scalar::rms_norm_heads`]).
pub fn rms_norm_heads(x: &mut [f32], weight: &[f32], eps: f32) {
    assert!(neon_available());
    // SAFETY: NEON presence was checked above.
    unsafe { rms_norm_heads_neon(x, weight, eps) }
}

#[target_feature(enable = "neon")]
fn layer_norm_row(row: &[f32], weight: &[f32], bias: &[f32], eps: f32, o: &mut [f32]) {
    let d = weight.len();
    let (mut lo, mut hi) = (vdupq_n_f32(0.0), vdupq_n_f32(0.0));
    let mut chunks = row.chunks_exact(8);
    for c in &mut chunks {
        // SAFETY: `c` is 8 contiguous f32.
        unsafe {
            lo = vaddq_f32(lo, vld1q_f32(c.as_ptr()));
            hi = vaddq_f32(hi, vld1q_f32(c.as_ptr().add(4)));
        }
    }
    let tail = chunks.remainder().iter().fold(0f32, |s, v| s + v);
    let mean = (reduce_lanes(lo, hi) + tail) / d as f32;
    let vm = vdupq_n_f32(mean);
    let (mut lo, mut hi) = (vdupq_n_f32(0.0), vdupq_n_f32(0.0));
    let mut chunks = row.chunks_exact(8);
    for c in &mut chunks {
        // SAFETY: `c` is 8 contiguous f32.
        let (a, b) = unsafe { (vsubq_f32(vld1q_f32(c.as_ptr()), vm), vsubq_f32(vld1q_f32(c.as_ptr().add(4)), vm)) };
        lo = vaddq_f32(lo, vmulq_f32(a, a));
        hi = vaddq_f32(hi, vmulq_f32(b, b));
    }
    let tail = chunks.remainder().iter().fold(0f32, |s, v| s + (v - mean) * (v - mean));
    let var = (reduce_lanes(lo, hi) + tail) / d as f32;
    let inv = 1.0 / (var + eps).sqrt();
    let vinv = vdupq_n_f32(inv);
    let n = o.len().min(row.len()).min(d).min(bias.len());
    let mut i = 0;
    while i + 4 <= n {
        // SAFETY: i + 4 <= n <= every length; unaligned loads and store.
        unsafe {
            let v = vld1q_f32(row.as_ptr().add(i));
            let w = vld1q_f32(weight.as_ptr().add(i));
            let b = vld1q_f32(bias.as_ptr().add(i));
            let y = vaddq_f32(vmulq_f32(vmulq_f32(vsubq_f32(v, vm), vinv), w), b);
            vst1q_f32(o.as_mut_ptr().add(i), y);
        }
        i += 4;
    }
    for j in i..n {
        o[j] = (row[j] - mean) * inv * weight[j] + bias[j];
    }
}

/// LayerNorm with weight and bias over rows of `weight.len()` (bit-identical to [`scalar::layer_norm`]).
pub fn layer_norm(x: &[f32], weight: &[f32], bias: &[f32], eps: f32, out: &mut [f32]) {
    assert!(neon_available());
    let d = weight.len();
    out.par_chunks_mut(d).zip(x.par_chunks(d)).for_each(|(o, row)| {
        // SAFETY: NEON presence was checked above.
        unsafe { layer_norm_row(row, weight, bias, eps, o) }
    });
}

#[target_feature(enable = "neon")]
fn rope_neon(x: &mut [f32], head_dim: usize, cos: &[f32], sin: &[f32]) {
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
        while i + 4 <= half {
            // SAFETY: i + 4 <= half <= the lengths of `lo`, `hi`, `cos` and `sin`; unaligned loads and stores.
            unsafe {
                let a = vld1q_f32(lo.as_ptr().add(i));
                let b = vld1q_f32(hi.as_ptr().add(i));
                let c = vld1q_f32(cos.as_ptr().add(i));
                let s = vld1q_f32(sin.as_ptr().add(i));
                vst1q_f32(lo.as_mut_ptr().add(i), vsubq_f32(vmulq_f32(a, c), vmulq_f32(b, s)));
                vst1q_f32(hi.as_mut_ptr().add(i), vaddq_f32(vmulq_f32(b, c), vmulq_f32(a, s)));
            }
            i += 4;
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
    assert!(neon_available());
    // SAFETY: NEON presence was checked above.
    unsafe { rope_neon(x, head_dim, cos, sin) }
}

#[cfg(test)]
mod tests {
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    const LENS: [usize; 13] = [1, 3, 4, 5, 7, 8, 9, 31, 64, 1000, 1024, 1536, 4097];

    fn same(a: f32, b: f32) -> bool {
        a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
    }

    fn assert_same(what: &str, s: &[f32], v: &[f32]) {
        assert_eq!(s.len(), v.len());
        for (i, (a, b)) in s.iter().zip(v).enumerate() {
            assert!(same(*a, *b), "{what}[{i}]: scalar {a:e} ({:#x}) vs neon {b:e} ({:#x})", a.to_bits(), b.to_bits());
        }
    }

    /// Mostly uniform values in ±spread, with occasional outliers and (if `specials`) ±0, ±∞, NaN, huge,
    /// tiny and subnormal values and the kernels' branch points.
    fn random_row(rng: &mut SmallRng, n: usize, spread: f32, specials: bool) -> Vec<f32> {
        const SPECIAL: [f32; 17] = [
            0.0,
            -0.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            1e30,
            -1e30,
            f32::MAX,
            -f32::MAX,
            1e-40,
            -1e-40,
            1e-30,
            88.72,
            -103.9,
            -104.0,
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

    #[test]
    fn neon_exp_gelu_silu_lanes_match_scalar_bits() {
        let mut rng = SmallRng::seed_from_u64(1);
        // Every kind of f32 bit pattern (NaNs with payloads, signaling NaNs, subnormals), a dense sweep
        // over exp's and GELU's working range, and the ends.
        let mut xs: Vec<f32> = (0..200_000).map(|_| f32::from_bits(rng.gen::<u32>())).collect();
        xs.extend((0..200_000).map(|i| -120.0 + 220.0 * i as f32 / 200_000.0));
        xs.extend([0.0, -0.0, f32::INFINITY, f32::NEG_INFINITY, f32::NAN, 88.72, 88.73, -104.0, -103.97]);
        xs.extend([f32::from_bits(0x7F80_0001), f32::from_bits(0xFFC0_1234), f32::MIN_POSITIVE, 1e-45, -1e-45]);
        while !xs.len().is_multiple_of(4) {
            xs.push(1.0);
        }
        for c in xs.chunks_exact(4) {
            let (mut e, mut g, mut s) = ([0f32; 4], [0f32; 4], [0f32; 4]);
            // SAFETY: NEON is part of every aarch64 target these tests build for; `c`, `e`, `g` and `s`
            // hold 4 f32 each.
            unsafe {
                let v = vld1q_f32(c.as_ptr());
                vst1q_f32(e.as_mut_ptr(), exp4(v));
                vst1q_f32(g.as_mut_ptr(), gelu4(v));
                vst1q_f32(s.as_mut_ptr(), silu4(v));
            }
            for l in 0..4 {
                let x = c[l];
                assert!(same(e[l], scalar::exp_f32(x)), "exp({x:e}): {:e} vs {:e}", e[l], scalar::exp_f32(x));
                assert!(same(g[l], scalar::gelu_f32(x)), "gelu({x:e}): {:e} vs {:e}", g[l], scalar::gelu_f32(x));
                assert!(same(s[l], scalar::silu_f32(x)), "silu({x:e}): {:e} vs {:e}", s[l], scalar::silu_f32(x));
            }
        }
        eprintln!("neon exp/gelu/silu lanes compared bit-exactly with scalar on {} inputs", xs.len());
    }

    #[test]
    fn neon_gelu_silu_softmax_are_bit_identical_to_scalar() {
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

            // Softmax: finite logits (one special would make the whole row NaN or one-hot), then rows with
            // specials, then large logits, an all-equal row and an all-(-inf) row.
            for (spread, specials) in [(20.0, false), (20.0, true), (1e4, false)] {
                let x = random_row(&mut rng, n, spread, specials);
                let (mut s, mut v) = (x.clone(), x.clone());
                scalar::softmax_in_place(&mut s);
                softmax_in_place(&mut v);
                assert_same(&format!("softmax n={n} spread={spread} specials={specials}"), &s, &v);
            }
            for fill in [0.0, -0.0, 7.5, f32::NEG_INFINITY, f32::NAN] {
                let (mut s, mut v) = (vec![fill; n], vec![fill; n]);
                scalar::softmax_in_place(&mut s);
                softmax_in_place(&mut v);
                assert_same(&format!("softmax n={n} all {fill}"), &s, &v);
            }
        }
        let (mut s, mut v) = (Vec::<f32>::new(), Vec::<f32>::new());
        scalar::softmax_in_place(&mut s);
        softmax_in_place(&mut v);
        assert!(s.is_empty() && v.is_empty());
        eprintln!("neon gelu/silu_mul/softmax compared bit-exactly with scalar, lengths {LENS:?}");
    }

    #[test]
    fn neon_norms_and_rope_are_bit_identical_to_scalar() {
        let mut rng = SmallRng::seed_from_u64(3);
        for &d in &LENS {
            let rows = 3;
            for (spread, specials) in [(4.0, false), (1e18, false), (1e-19, false), (4.0, true)] {
                let x = random_row(&mut rng, rows * d, spread, specials);
                let w = random_row(&mut rng, d, 2.0, false);
                let b = random_row(&mut rng, d, 1.0, false);
                let what = format!("d={d} spread={spread:e} specials={specials}");
                let (mut s, mut v) = (vec![0f32; rows * d], vec![0f32; rows * d]);
                scalar::rms_norm(&x, &w, 1e-6, &mut s);
                rms_norm(&x, &w, 1e-6, &mut v);
                assert_same(&format!("rms_norm {what}"), &s, &v);

                let (mut s, mut v) = (x.clone(), x.clone());
                scalar::rms_norm_heads(&mut s, &w, 1e-6);
                rms_norm_heads(&mut v, &w, 1e-6);
                assert_same(&format!("rms_norm_heads {what}"), &s, &v);

                let (mut s, mut v) = (vec![0f32; rows * d], vec![0f32; rows * d]);
                scalar::layer_norm(&x, &w, &b, 1e-5, &mut s);
                layer_norm(&x, &w, &b, 1e-5, &mut v);
                assert_same(&format!("layer_norm {what}"), &s, &v);

                // RoPE with half = d (head_dim 2d), three heads.
                let head_dim = 2 * d;
                let x = random_row(&mut rng, rows * head_dim, spread, specials);
                let theta: Vec<f32> = (0..d).map(|_| rng.gen_range(-100.0f32..100.0)).collect();
                let (cos, sin): (Vec<f32>, Vec<f32>) = theta.iter().map(|t| (t.cos(), t.sin())).unzip();
                let (mut s, mut v) = (x.clone(), x.clone());
                scalar::rope_half_split(&mut s, head_dim, &cos, &sin);
                rope_half_split(&mut v, head_dim, &cos, &sin);
                assert_same(&format!("rope half={d} {what}"), &s, &v);
            }
        }
        // RMSNorm heads: a partial last row, and rows where Σx² overflows or is zero.
        let w = random_row(&mut rng, 9, 2.0, false);
        for x in [random_row(&mut rng, 22, 4.0, false), vec![1e30; 18], vec![0.0; 18]] {
            let (mut s, mut v) = (x.clone(), x.clone());
            scalar::rms_norm_heads(&mut s, &w, 1e-6);
            rms_norm_heads(&mut v, &w, 1e-6);
            assert_same("rms_norm_heads edge rows", &s, &v);
        }
        eprintln!("neon rms_norm/rms_norm_heads/layer_norm/rope compared bit-exactly with scalar, lengths {LENS:?}");
    }

    /// The dispatchers in `kernels` take these twins on every aarch64 path but `Scalar`.
    #[test]
    fn dispatch_runs_the_selected_path() {
        let isa = crate::kernels::isa();
        let mut rng = SmallRng::seed_from_u64(4);
        let x = random_row(&mut rng, 1001, 6.0, true);
        let (mut s, mut v) = (x.clone(), x.clone());
        scalar::gelu_erf(&mut s);
        crate::kernels::gelu_erf(&mut v);
        assert_same("kernels::gelu_erf", &s, &v);
        eprintln!(
            "kernels::isa() = {isa:?}: elementwise kernels run {}",
            if isa == crate::kernels::Isa::Scalar { "scalar" } else { "neon" }
        );
    }
}
