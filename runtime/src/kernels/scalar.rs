//! Portable f32 kernels: the reference every optimized kernel is tested against. Reductions use eight
//! partial sums so the compiler can vectorize them.

use rayon::prelude::*;

use crate::quant::{f16_bits_to_f32, f32_to_f16_bits};

/// Dot product with eight independent accumulators (vectorizable, and more accurate than one running sum).
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [0f32; 8];
    let chunks = a.len() / 8;
    for i in 0..chunks {
        for l in 0..8 {
            acc[l] += a[i * 8 + l] * b[i * 8 + l];
        }
    }
    let mut tail = 0f32;
    for i in chunks * 8..a.len() {
        tail += a[i] * b[i];
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// One activation block quantized to Q8_0: the scale as the dot product reads it back (fp16-rounded) and
/// 32 signed bytes.
#[derive(Debug, Clone, Copy)]
pub struct Q8Block {
    pub d: f32,
    pub qs: [i8; 32],
}

/// `x.round_ties_even()` for |x| < 2²², without a libm call on CPUs lacking SSE4.1's `roundps`: adding
/// 1.5·2²³ lands in a binade whose spacing is 1, so the FPU's round-to-nearest-even does the rounding.
#[inline]
fn round_ties_even_small(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0;
    (x + MAGIC) - MAGIC
}

/// Quantize a row of activations to Q8_0 blocks as ggml's x86 path does (`quantize_row_q8_0`):
/// `d = amax/127`, `q = round-half-even(x · 127/amax)`, `d` stored as fp16.
pub fn quantize_q8_0_activations(row: &[f32]) -> Vec<Q8Block> {
    row.chunks(32)
        .map(|b| {
            let amax = b.iter().fold(0f32, |m, v| m.max(v.abs()));
            let d = amax / 127.0;
            let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
            let mut qs = [0i8; 32];
            for (q, v) in qs.iter_mut().zip(b) {
                *q = round_ties_even_small(v * id) as i8;
            }
            Q8Block { d: f16_bits_to_f32(f32_to_f16_bits(d)), qs }
        })
        .collect()
}

fn block_scale(bytes: &[u8]) -> f32 {
    f16_bits_to_f32(u16::from_le_bytes([bytes[0], bytes[1]]))
}

/// Q8_0 weight row · Q8_0 activation row.
pub fn dot_q8_0(w: &[u8], x: &[Q8Block]) -> f32 {
    let mut sum = 0f32;
    for (wb, xb) in w.chunks_exact(34).zip(x) {
        let isum: i32 = wb[2..].iter().zip(&xb.qs).map(|(&a, &b)| a as i8 as i32 * b as i32).sum();
        sum += isum as f32 * (block_scale(wb) * xb.d);
    }
    sum
}

/// Σ of each activation block's quants: kernels that multiply unsigned weights (Q4_0's nibbles, Q8_0 bytes
/// with the sign bit flipped) take the offset back as `offset · Σ x`.
pub fn block_sums(x: &[Q8Block]) -> Vec<i32> {
    x.iter().map(|b| b.qs.iter().map(|&q| q as i32).sum()).collect()
}

/// Q4_0 weight row · Q8_0 activation row (nibbles: low = elements 0..16, high = 16..32, offset 8).
pub fn dot_q4_0(w: &[u8], x: &[Q8Block]) -> f32 {
    let mut sum = 0f32;
    for (wb, xb) in w.chunks_exact(18).zip(x) {
        let mut isum = 0i32;
        for (j, &byte) in wb[2..].iter().enumerate() {
            isum += ((byte & 0x0F) as i32 - 8) * xb.qs[j] as i32;
            isum += ((byte >> 4) as i32 - 8) * xb.qs[j + 16] as i32;
        }
        sum += isum as f32 * (block_scale(wb) * xb.d);
    }
    sum
}

/// `Σ_b |isum_b · (d_w · d_x)|` of a Q8_0 (`q4` false) or Q4_0 row against Q8_0 activations: what bounds
/// the difference between two summation orders of the same block products (tests of reordered kernels).
#[cfg(test)]
pub(crate) fn dot_magnitude(w: &[u8], x: &[Q8Block], q4: bool) -> f64 {
    let bb = if q4 { 18 } else { 34 };
    let mut mag = 0f64;
    for (wb, xb) in w.chunks_exact(bb).zip(x) {
        let xb = std::slice::from_ref(xb);
        let p = if q4 { dot_q4_0(wb, xb) } else { dot_q8_0(wb, xb) };
        mag += p.abs() as f64;
    }
    mag
}

/// `x[i] += bias` for every row of `x`.
pub fn add_bias(x: &mut [f32], bias: &[f32]) {
    for row in x.chunks_mut(bias.len()) {
        for (v, b) in row.iter_mut().zip(bias) {
            *v += b;
        }
    }
}

pub fn add_in_place(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

// ---- Elementwise kernels. ----
//
// The transcendental functions below are f32 approximations written with plain adds, multiplies, one
// division and bit operations, in a fixed order and without fused multiply-adds: the AVX2 twins in
// `x86/elementwise.rs` evaluate the same operations in the same order, so both paths give identical bits.
// Reductions use eight partial sums (lane l takes elements ≡ l mod 8, combined as
// `((a0+a4)+(a1+a5))+((a2+a6)+(a3+a7))`, then the tail in order), which is exactly what an 8-lane vector
// accumulator computes.

/// Below this `exp` returns 0 (e⁻¹⁰⁴ < 2⁻¹⁵⁰, half the least subnormal) and above [`EXP_HI`] +inf.
pub(crate) const EXP_LO: f32 = -104.0;
pub(crate) const EXP_HI: f32 = 89.0;
pub(crate) const LOG2E: f32 = std::f32::consts::LOG2_E;
/// 1.5·2²³: `(v + M) - M` rounds `v` to the nearest integer (ties to even) for |v| < 2²², and the low
/// mantissa bits of `v + M` then hold that integer.
pub(crate) const ROUND_MAGIC: f32 = 12_582_912.0;
/// ln 2 = EXP_C1 + EXP_C2 (Cody–Waite: EXP_C1 has 9 significant bits, so `n·EXP_C1` is exact for |n| ≤ 2¹⁵).
pub(crate) const EXP_C1: f32 = 355.0 / 512.0;
#[allow(clippy::excessive_precision)]
pub(crate) const EXP_C2: f32 = -2.121_944_400_546_905_8e-4;
/// Cephes `expf` polynomial, highest power first: e^r ≈ 1 + r + r²·P(r) for |r| ≤ ln2/2.
#[allow(clippy::excessive_precision)]
pub(crate) const EXP_P: [f32; 6] = [
    1.987_569_150_0e-4,
    1.398_199_950_7e-3,
    8.333_451_907_3e-3,
    4.166_579_589_4e-2,
    1.666_666_545_9e-1,
    5.000_000_120_1e-1,
];
/// Taylor coefficients of erf(z)/z in z², highest first: (2/√π)·(−1)ᵏ/(k!·(2k+1)), k = 9…0. For |z| < 1 the
/// series alternates with falling terms, so the truncation error is below the first omitted term,
/// (2/√π)/(10!·21) < 1.5e-8.
#[allow(clippy::excessive_precision)]
pub(crate) const ERF_TAYLOR: [f32; 10] = [
    -1.636_584_469_123_492_4e-7,
    1.646_211_436_588_924_6e-6,
    -1.492_565_035_840_625e-5,
    1.205_533_298_178_966_4e-4,
    -8.548_327_023_450_852e-4,
    5.223_977_625_442_188e-3,
    -2.686_617_064_513_125_2e-2,
    1.128_379_167_095_512_6e-1,
    -3.761_263_890_318_375_4e-1,
    std::f32::consts::FRAC_2_SQRT_PI,
];
/// Numerical Recipes' `erfcc` (Chebyshev fit, fractional error below 1.2e-7 for all z ≥ 0):
/// erfc(z) = t·exp(−z² + Q(t)), t = 1/(1 + z/2); Q's coefficients, highest power first.
#[allow(clippy::excessive_precision)]
pub(crate) const ERFC_NR: [f32; 10] = [
    0.170_872_77,
    -0.822_152_23,
    1.488_515_87,
    -1.135_203_98,
    0.278_868_07,
    -0.186_288_06,
    0.096_784_18,
    0.374_091_96,
    1.000_023_68,
    -1.265_512_23,
];
/// GELU takes the Taylor branch for GELU_TAYLOR_LO < x/√2 < GELU_TAYLOR_HI and the erfc branch elsewhere:
/// for x < 0, ½ + ½·erf(z) cancels (Φ(−√2) ≈ 0.08), and ½erfc(|z|) is the more accurate of the two sooner.
pub(crate) const GELU_TAYLOR_LO: f32 = -0.5;
pub(crate) const GELU_TAYLOR_HI: f32 = 1.0;
/// GELU clamps its input to ±this for the erf/erfc evaluation: beyond it Φ(x) is 1 or below 2⁻¹⁵⁰.
pub(crate) const GELU_CLAMP: f32 = 20.0;

/// `min(max(x, lo), hi)` that lets NaN through (the operand order of `_mm256_min_ps(hi, x)` /
/// `_mm256_max_ps(lo, x)`).
#[inline(always)]
pub(crate) fn clamp_keep_nan(x: f32, lo: f32, hi: f32) -> f32 {
    let x = if hi < x { hi } else { x };
    if lo > x {
        lo
    } else {
        x
    }
}

/// Round to the nearest integer (ties to even) for |v| < 2²²: the rounded value and the integer.
#[inline(always)]
fn round_magic(v: f32) -> (f32, i32) {
    let t = v + ROUND_MAGIC;
    (t - ROUND_MAGIC, (t.to_bits() as i32).wrapping_sub(ROUND_MAGIC.to_bits() as i32))
}

/// e^r · 2ⁿ for |r| ≲ ln2/2 and −150 ≤ n ≤ 128; 2ⁿ is applied as two normal powers 2^⌊n/2⌋·2^⌈n/2⌉, so
/// results that are subnormal or just below f32::MAX come out right.
#[inline(always)]
fn exp_finish(n: i32, r: f32) -> f32 {
    let mut p = EXP_P[0];
    for c in &EXP_P[1..] {
        p = p * r + c;
    }
    let y = p * (r * r) + r + 1.0;
    let n1 = n >> 1;
    let n2 = n.wrapping_sub(n1);
    let s1 = f32::from_bits((n1.wrapping_add(127) as u32) << 23);
    let s2 = f32::from_bits((n2.wrapping_add(127) as u32) << 23);
    y * s1 * s2
}

/// e^x in f32: Cody–Waite reduction x = n·ln2 + r, |r| ≤ ln2/2, Cephes' polynomial, scaling by 2ⁿ. Within
/// 2 ulp of the exact value on the normal range (measured in the tests); 0 below −104 (and for −inf), +inf
/// above ≈ 88.72, NaN for NaN.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    let x = clamp_keep_nan(x, EXP_LO, EXP_HI);
    let (nf, n) = round_magic(x * LOG2E);
    let r = (x - nf * EXP_C1) - nf * EXP_C2;
    exp_finish(n, r)
}

/// e^(a + b) for `a` ≤ 0 exact and `b` small (|b| ≲ 2): the reduction `a − n·C1` is exact (Sterbenz) once
/// |a| ≳ 4, so `b` is added to the reduced argument at full precision instead of being rounded into a
/// large `a + b`. 0 where a + b < −104.
#[inline(always)]
fn exp_sum(a: f32, b: f32) -> f32 {
    let s = a + b;
    let sc = clamp_keep_nan(s, EXP_LO, EXP_HI);
    let (nf, n) = round_magic(sc * LOG2E);
    let r = ((a - nf * EXP_C1) - nf * EXP_C2) + b;
    let y = exp_finish(n, r);
    if s < EXP_LO {
        0.0
    } else {
        y
    }
}

/// GELU(x) = x·Φ(x), Φ(x) = ½(1 + erf(x/√2)), in f32.
///
/// −0.5 < x/√2 < 1: erf from its Taylor series. Otherwise Φ from erfc(|x|/√2) (Numerical Recipes' fit) as ½erfc
/// for x < 0 and 1 − ½erfc for x > 0, so the negative tail keeps its relative precision; the exponent
/// −x²/2 is split into an exact head (x with 12 significand bits, squared) and a small tail. Measured
/// against the f64 `libm::erf` formula in the tests (see `gelu_matches_f64_erf_reference`).
#[inline(always)]
pub fn gelu_f32(x: f32) -> f32 {
    let xc = clamp_keep_nan(x, -GELU_CLAMP, GELU_CLAMP);
    let z = xc * std::f32::consts::FRAC_1_SQRT_2;
    let az = f32::from_bits(z.to_bits() & 0x7FFF_FFFF);
    // Taylor branch.
    let u = z * z;
    let mut p = ERF_TAYLOR[0];
    for c in &ERF_TAYLOR[1..] {
        p = p * u + c;
    }
    let phi_small = 0.5 + 0.5 * (z * p);
    // erfc branch.
    let t = 1.0 / (1.0 + 0.5 * az);
    let mut q = ERFC_NR[0];
    for c in &ERFC_NR[1..] {
        q = q * t + c;
    }
    let xh = f32::from_bits(xc.to_bits() & 0xFFFF_F000);
    let xl = xc - xh;
    // −x²/2 = −xh²/2 (exact: 12 × 12 bits) − xl·(2xh + xl)/2.
    let a = -0.5 * (xh * xh);
    let b = -0.5 * (xl * (xh + xc)) + q;
    let half_erfc = 0.5 * t * exp_sum(a, b);
    let phi_large = if xc < 0.0 { half_erfc } else { 1.0 - half_erfc };
    let phi = if z < GELU_TAYLOR_HI && z > GELU_TAYLOR_LO { phi_small } else { phi_large };
    x * phi
}

/// silu(g) = g / (1 + e^(−g)).
#[inline(always)]
pub fn silu_f32(g: f32) -> f32 {
    g / (1.0 + exp_f32(-g))
}

/// The fixed combination of eight lane sums (see the section comment).
#[inline(always)]
pub(crate) fn reduce8(acc: [f32; 8]) -> f32 {
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]))
}

/// Σ x² with eight partial sums (the same arithmetic as [`dot`]`(x, x)`).
fn sum_squares(x: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let mut chunks = x.chunks_exact(8);
    for c in &mut chunks {
        for l in 0..8 {
            acc[l] += c[l] * c[l];
        }
    }
    let tail = chunks.remainder().iter().fold(0f32, |s, v| s + v * v);
    reduce8(acc) + tail
}

/// Σ x with eight partial sums.
fn sum8(x: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let mut chunks = x.chunks_exact(8);
    for c in &mut chunks {
        for l in 0..8 {
            acc[l] += c[l];
        }
    }
    let tail = chunks.remainder().iter().fold(0f32, |s, v| s + v);
    reduce8(acc) + tail
}

/// Σ (x − m)² with eight partial sums.
fn sum_sq_dev8(x: &[f32], m: f32) -> f32 {
    let mut acc = [0f32; 8];
    let mut chunks = x.chunks_exact(8);
    for c in &mut chunks {
        for l in 0..8 {
            let d = c[l] - m;
            acc[l] += d * d;
        }
    }
    let tail = chunks.remainder().iter().fold(0f32, |s, v| s + (v - m) * (v - m));
    reduce8(acc) + tail
}

/// Elements per rayon task in the elementwise maps.
pub(crate) const PAR_CHUNK: usize = 4096;

/// RMSNorm over rows of `weight.len()`: `x · rsqrt(mean(x²) + eps) · weight`, in f32 like the reference.
pub fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let d = weight.len();
    out.par_chunks_mut(d).zip(x.par_chunks(d)).for_each(|(o, row)| {
        let ms = sum_squares(row) / d as f32;
        let scale = 1.0 / (ms + eps).sqrt();
        for ((o, v), w) in o.iter_mut().zip(row).zip(weight) {
            *o = w * (v * scale);
        }
    });
}

/// RMSNorm of every `weight.len()`-long head vector in place (Qwen3's q/k norms).
pub fn rms_norm_heads(x: &mut [f32], weight: &[f32], eps: f32) {
    let d = weight.len();
    for row in x.chunks_mut(d) {
        let ms = sum_squares(row) / d as f32;
        let scale = 1.0 / (ms + eps).sqrt();
        for (v, w) in row.iter_mut().zip(weight) {
            *v = w * (*v * scale);
        }
    }
}

/// LayerNorm with weight and bias over rows of `weight.len()` (biased variance, like PyTorch; two passes:
/// mean, then mean of squared deviations).
pub fn layer_norm(x: &[f32], weight: &[f32], bias: &[f32], eps: f32, out: &mut [f32]) {
    let d = weight.len();
    out.par_chunks_mut(d).zip(x.par_chunks(d)).for_each(|(o, row)| {
        let mean = sum8(row) / d as f32;
        let var = sum_sq_dev8(row, mean) / d as f32;
        let inv = 1.0 / (var + eps).sqrt();
        for (((o, v), w), b) in o.iter_mut().zip(row).zip(weight).zip(bias) {
            *o = (v - mean) * inv * w + b;
        }
    });
}

/// Exact (erf) GELU, PyTorch's default, through [`gelu_f32`].
pub fn gelu_erf(x: &mut [f32]) {
    x.par_chunks_mut(PAR_CHUNK).for_each(|c| {
        for v in c {
            *v = gelu_f32(*v);
        }
    });
}

/// `gate ← silu(gate) · up` (SwiGLU).
pub fn silu_mul(gate: &mut [f32], up: &[f32]) {
    gate.par_chunks_mut(PAR_CHUNK).zip(up.par_chunks(PAR_CHUNK)).for_each(|(g, u)| {
        for (g, u) in g.iter_mut().zip(u) {
            *g = silu_f32(*g) * u;
        }
    });
}

/// Numerically stable softmax in place.
pub fn softmax_in_place(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut acc = [0f32; 8];
    let mut chunks = x.chunks_exact_mut(8);
    for c in &mut chunks {
        for l in 0..8 {
            c[l] = exp_f32(c[l] - max);
            acc[l] += c[l];
        }
    }
    let mut tail = 0f32;
    for v in chunks.into_remainder() {
        *v = exp_f32(*v - max);
        tail += *v;
    }
    let inv = 1.0 / (reduce8(acc) + tail);
    for v in x.iter_mut() {
        *v *= inv;
    }
}

/// Half-split rotary embedding (`rotate_half`: pairs (i, i + d/2)) of every head vector of one position,
/// with `cos`/`sin` tables of d/2 entries for that position.
pub fn rope_half_split(x: &mut [f32], head_dim: usize, cos: &[f32], sin: &[f32]) {
    let half = head_dim / 2;
    for head in x.chunks_mut(head_dim) {
        for i in 0..half {
            let (a, b) = (head[i], head[i + half]);
            head[i] = a * cos[i] - b * sin[i];
            head[i + half] = b * cos[i] + a * sin[i];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_matches_naive_sum() {
        let a: Vec<f32> = (0..37).map(|i| i as f32 * 0.5).collect();
        let b: Vec<f32> = (0..37).map(|i| 1.0 - i as f32 * 0.25).collect();
        let naive: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
        assert!((dot(&a, &b) as f64 - naive).abs() < 1e-3);
    }

    #[test]
    fn small_rounding_is_ties_to_even() {
        for i in -300_000..300_000 {
            let x = i as f32 / 1000.0;
            assert_eq!(round_ties_even_small(x), x.round_ties_even(), "{x}");
        }
        for x in [0.5f32, 1.5, 2.5, -0.5, -1.5, -2.5, 126.5, 127.49999, -127.5] {
            assert_eq!(round_ties_even_small(x), x.round_ties_even(), "{x}");
        }
    }

    #[test]
    fn softmax_sums_to_one_and_survives_large_inputs() {
        let mut x = vec![1000.0, 1001.0, 999.0];
        softmax_in_place(&mut x);
        assert!((x.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(x[1] > x[0] && x[0] > x[2]);
    }

    /// The f64 formula `gelu_erf` used before the f32 approximation, rounded to f32. It loses the negative
    /// tail (1 + erf(x/√2) cancels to 0 in f64 below x ≈ −8.3, where the true GELU is still about −1e-15).
    pub(crate) fn gelu_f64(x: f32) -> f32 {
        let f = x as f64;
        (0.5 * f * (1.0 + libm::erf(f / std::f64::consts::SQRT_2))) as f32
    }

    /// GELU in f64 through erfc, accurate in both tails: x·½·erfc(−x/√2). The accuracy oracle.
    fn gelu_exact(x: f32) -> f64 {
        let f = x as f64;
        0.5 * f * libm::erfc(-f / std::f64::consts::SQRT_2)
    }

    /// Distance in units of the last place of `exact` (f64), at the f32 spacing of normal numbers.
    fn ulps(got: f32, exact: f64) -> f64 {
        let e = exact.abs().max(f32::MIN_POSITIVE as f64);
        let ulp = 2f64.powi(e.log2().floor() as i32 - 23);
        (got as f64 - exact).abs() / ulp
    }

    #[test]
    fn exp_is_within_two_ulp_and_handles_the_ends() {
        let mut worst = (0f64, 0f32);
        let n = 2_000_000;
        for i in 0..=n {
            let x = -87.0 + (88.7 + 87.0) * i as f32 / n as f32;
            let u = ulps(exp_f32(x), (x as f64).exp());
            if u > worst.0 {
                worst = (u, x);
            }
        }
        eprintln!("exp_f32: max {:.3} ulp at x = {}", worst.0, worst.1);
        assert!(worst.0 <= 2.0, "exp_f32: {:.3} ulp at {}", worst.0, worst.1);
        // Subnormal results: within one step of the least subnormal (2⁻¹⁴⁹).
        for i in 0..=10_000 {
            let x = -103.9 + 16.0 * i as f32 / 10_000.0;
            let err = (exp_f32(x) as f64 - (x as f64).exp()).abs();
            assert!(err <= 2f64.powi(-149), "exp_f32({x}) = {} vs {}", exp_f32(x), (x as f64).exp());
        }
        assert_eq!(exp_f32(0.0), 1.0);
        assert_eq!(exp_f32(-104.0), 0.0);
        assert_eq!(exp_f32(-1e30), 0.0);
        assert_eq!(exp_f32(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_f32(88.8), f32::INFINITY);
        assert_eq!(exp_f32(f32::INFINITY), f32::INFINITY);
        assert!(exp_f32(88.72).is_finite());
        assert!(exp_f32(f32::NAN).is_nan());
    }

    #[test]
    fn gelu_matches_f64_erf_reference() {
        // Relative error against the f64 value (through erfc) wherever that is a normal f32; where it is
        // subnormal or zero (x < −13.2) the absolute error counts. Also the largest difference from the old
        // f64-erf formula relative to max(|x|, 1), over [−10, 10]. The measured maxima are printed.
        // `worst`: over |x| ≤ 10; `worst_tail`: beyond (toward the subnormal results, exp's result loses bits).
        let mut worst = (0f64, 0f32);
        let mut worst_tail = (0f64, 0f32);
        let mut worst_ulp = (0f64, 0f32);
        let mut worst_old = (0f64, 0f32);
        let mut check = |x: f32| {
            let (got, exact) = (gelu_f32(x), gelu_exact(x));
            if exact.abs() >= f32::MIN_POSITIVE as f64 {
                let rel = ((got as f64 - exact) / exact).abs();
                let w = if x.abs() <= 10.0 { &mut worst } else { &mut worst_tail };
                if rel > w.0 {
                    *w = (rel, x);
                }
                let u = ulps(got, exact);
                if u > worst_ulp.0 && x.abs() <= 10.0 {
                    worst_ulp = (u, x);
                }
            } else {
                // Subnormal results (−14.3 < x < −13.2): exp's result is on the subnormal grid (error ≤ ½ unit
                // of 2⁻¹⁴⁹), ·½t ≤ ½ adds another ½ unit, ·|x| ≤ 14.3 scales the ¾ unit and adds ½ more:
                // below 12 units.
                assert!((got as f64 - exact).abs() <= 12.0 * 2f64.powi(-149), "gelu({x}) = {got:e} vs {exact:e}");
            }
        };
        let n = 1_000_000;
        for i in 0..=n {
            let x = -10.0 + 20.0 * i as f32 / n as f32;
            check(x);
            let old = ((gelu_f32(x) - gelu_f64(x)).abs() / x.abs().max(1.0)) as f64;
            if old > worst_old.0 {
                worst_old = (old, x);
            }
        }
        // The branch boundaries x = √2 and −1/√2, tiny and huge inputs, the far tails, every binade of small inputs.
        let (r2, h) = (std::f32::consts::SQRT_2, -std::f32::consts::FRAC_1_SQRT_2);
        for x in
            [r2, r2.next_up(), r2.next_down(), h, h.next_up(), h.next_down(), 1e-30, -1e-30, 1e-3, -1e-3, 0.0, -0.0]
        {
            check(x);
        }
        for i in 0..=20_000 {
            check(-20.0 + 40.0 * i as f32 / 20_000.0);
            check(f32::from_bits(0x3000_0000 + i * 0x2000)); // 4.7e-10 … 2.3
            check(-f32::from_bits(0x3000_0000 + i * 0x2000));
        }
        for x in [30.0f32, 1e6, 1e30, f32::MAX, -30.0, -1e6, -1e30, -f32::MAX] {
            check(x);
        }
        eprintln!(
            "gelu_f32: |x| ≤ 10: max relative error {:.3e} (x = {}), max {:.2} ulp (x = {}); |x| > 10: max \
             relative error {:.3e} (x = {}); vs the old f64-erf formula: max |Δ|/max(|x|,1) {:.3e} (x = {})",
            worst.0, worst.1, worst_ulp.0, worst_ulp.1, worst_tail.0, worst_tail.1, worst_old.0, worst_old.1
        );
        assert!(worst.0 <= 5e-7, "gelu_f32: relative error {:.3e} at x = {}", worst.0, worst.1);
        assert!(worst_tail.0 <= 1e-6, "gelu_f32: relative error {:.3e} at x = {}", worst_tail.0, worst_tail.1);
        assert!(worst_old.0 <= 1e-6, "gelu_f32 vs old formula: {:.3e} at x = {}", worst_old.0, worst_old.1);
        assert_eq!(gelu_f32(f32::INFINITY), f32::INFINITY);
        assert!(gelu_f32(f32::NAN).is_nan());
        // −∞·Φ(−∞) = −∞·0 is NaN in the old formula too.
        assert!(gelu_f32(f32::NEG_INFINITY).is_nan() && gelu_f64(f32::NEG_INFINITY).is_nan());
    }

    #[test]
    fn silu_matches_f64_within_a_few_ulp() {
        let mut worst = (0f64, 0f32);
        let n = 1_000_000;
        for i in 0..=n {
            let g = -80.0 + 160.0 * i as f32 / n as f32;
            let f = g as f64;
            let exact = f / (1.0 + (-f).exp());
            if exact.abs() >= f32::MIN_POSITIVE as f64 {
                let u = ulps(silu_f32(g), exact);
                if u > worst.0 {
                    worst = (u, g);
                }
            }
        }
        eprintln!("silu_f32: max {:.3} ulp at g = {}", worst.0, worst.1);
        // exp within 2 ulp, then 1 + e (½ ulp) and the division (½ ulp): the quotient is within 3 ulp.
        assert!(worst.0 <= 3.0, "silu_f32: {:.3} ulp at {}", worst.0, worst.1);
        assert_eq!(silu_f32(0.0), 0.0);
        assert_eq!(silu_f32(-200.0), -0.0);
        assert_eq!(silu_f32(200.0), 200.0);
        assert!(silu_f32(f32::NAN).is_nan());
    }

    #[test]
    fn layer_norm_matches_f64() {
        let d = 37;
        let x: Vec<f32> = (0..2 * d).map(|i| ((i * 7919) % 101) as f32 * 0.37 - 15.0).collect();
        let w: Vec<f32> = (0..d).map(|i| 0.5 + i as f32 * 0.01).collect();
        let b: Vec<f32> = (0..d).map(|i| i as f32 * -0.02).collect();
        let mut out = vec![0f32; 2 * d];
        layer_norm(&x, &w, &b, 1e-5, &mut out);
        for (row, o) in x.chunks(d).zip(out.chunks(d)) {
            let mean = row.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
            let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / d as f64;
            for i in 0..d {
                let want = (row[i] as f64 - mean) / (var + 1e-5).sqrt() * w[i] as f64 + b[i] as f64;
                assert!((o[i] as f64 - want).abs() < 1e-5, "{} vs {want}", o[i]);
            }
        }
    }

    #[test]
    fn rope_at_position_zero_is_identity() {
        let mut x = vec![1.0, 2.0, 3.0, 4.0];
        rope_half_split(&mut x, 4, &[1.0, 1.0], &[0.0, 0.0]);
        assert_eq!(x, [1.0, 2.0, 3.0, 4.0]);
    }
}
