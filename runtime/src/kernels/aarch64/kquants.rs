//! NEON and dotprod twins of the K-quant dots in [`crate::kernels::kquants`] (Q4_K, Q5_K, Q6_K weights ·
//! Q8_K activations).
//!
//! The weights are unpacked to signed bytes (Q4_K/Q5_K levels 0..31, Q6_K levels minus 32), and each
//! 16-element group's products are summed into i32 lanes exactly: widening `smull` + `sadalp` on NEON, `sdot`
//! with dotprod. The lanes are multiplied by the group's scale and accumulated (`mla`, wrapping i32, whose
//! final horizontal sum equals the exact `isum` because that fits i32: see the scalar module's ranges). The
//! mins term is the scalar helper's, and the float steps are the scalar reference's, in its order: every path
//! is bit-identical to the scalar twins. (The f16-weight dot has no aarch64 twin yet; Rust's f16 NEON
//! intrinsics are unstable.)

use std::arch::aarch64::*;

use super::{dotprod_available, load_i8x16, neon_available, sdot};
use crate::kernels::kquants::{
    check_lengths, f16_at, mins_sum, scale_min_block, scales_mins_k4, Q8KBlock, Q4_K_BYTES, Q5_K_BYTES, Q6_K_BYTES,
};

/// `acc.s[i] += Σ_{k<4} a.b[4i+k]·b.b[4i+k]`-style NEON step: the 16 products summed exactly into four i32
/// lanes (which product lands in which lane differs from `sdot`; only the lanes' total matters here).
#[inline]
#[target_feature(enable = "neon")]
fn dot16_neon(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    let acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(a), vget_low_s8(b)));
    vpadalq_s16(acc, vmull_high_s8(a, b))
}

/// 16 activation quants from `q[at..at + 16]`.
#[inline]
#[target_feature(enable = "neon")]
fn load_q(q: &[i8], at: usize) -> int8x16_t {
    assert!(at + 16 <= q.len());
    // SAFETY: q[at..at + 16] is in bounds (checked above); `ld1` has no alignment requirement.
    unsafe { vld1q_s8(q.as_ptr().add(at)) }
}

#[inline]
#[target_feature(enable = "neon")]
fn load_u8(b: &[u8], at: usize) -> uint8x16_t {
    vreinterpretq_u8_s8(load_i8x16(&b[at..]))
}

/// The three kernels over one 16-element step `$dot(acc, weights, activations)`, compiled with `$feat`.
macro_rules! k_quant_kernels {
    ($feat:literal, $dot:ident, $q4:ident, $q5:ident, $q6:ident) => {
        #[target_feature(enable = $feat)]
        fn $q4(w: &[u8], x: &[Q8KBlock]) -> f32 {
            let (m4, zero) = (vdupq_n_u8(0x0F), vdupq_n_s32(0));
            let mut sum = 0f32;
            for (wb, xb) in w.chunks_exact(Q4_K_BYTES).zip(x) {
                let (sc, m) = scales_mins_k4(&wb[4..16]);
                let mut acc = zero;
                for c in 0..4 {
                    // Byte l of chunk c: element 64c + l (low nibble) and 64c + 32 + l (high nibble).
                    let (q0, q1) = (load_u8(wb, 16 + 32 * c), load_u8(wb, 32 + 32 * c));
                    let y = 64 * c;
                    let lo = $dot(zero, vreinterpretq_s8_u8(vandq_u8(q0, m4)), load_q(&xb.qs, y));
                    let lo = $dot(lo, vreinterpretq_s8_u8(vandq_u8(q1, m4)), load_q(&xb.qs, y + 16));
                    let hi = $dot(zero, vreinterpretq_s8_u8(vshrq_n_u8::<4>(q0)), load_q(&xb.qs, y + 32));
                    let hi = $dot(hi, vreinterpretq_s8_u8(vshrq_n_u8::<4>(q1)), load_q(&xb.qs, y + 48));
                    acc = vmlaq_n_s32(acc, lo, sc[2 * c] as i32);
                    acc = vmlaq_n_s32(acc, hi, sc[2 * c + 1] as i32);
                }
                let isum = vaddvq_s32(acc);
                sum += scale_min_block(f16_at(wb, 0), f16_at(wb, 2), xb.d, isum, mins_sum(&m, &xb.bsums));
            }
            sum
        }

        #[target_feature(enable = $feat)]
        fn $q5(w: &[u8], x: &[Q8KBlock]) -> f32 {
            let (m4, sixteen, zero) = (vdupq_n_u8(0x0F), vdupq_n_u8(16), vdupq_n_s32(0));
            let mut sum = 0f32;
            for (wb, xb) in w.chunks_exact(Q5_K_BYTES).zip(x) {
                let (sc, m) = scales_mins_k4(&wb[4..16]);
                let (qh0, qh1) = (load_u8(wb, 16), load_u8(wb, 32));
                let mut acc = zero;
                for c in 0..4 {
                    let (q0, q1) = (load_u8(wb, 48 + 32 * c), load_u8(wb, 64 + 32 * c));
                    // Fifth bits: 16 where bit 2c (low nibbles) or 2c + 1 (high nibbles) of qh[l] is set.
                    let (b_lo, b_hi) = (vdupq_n_u8(1 << (2 * c)), vdupq_n_u8(2 << (2 * c)));
                    let level = |q: uint8x16_t, qh: uint8x16_t, bit: uint8x16_t| {
                        vreinterpretq_s8_u8(vorrq_u8(q, vandq_u8(vtstq_u8(qh, bit), sixteen)))
                    };
                    let y = 64 * c;
                    let lo = $dot(zero, level(vandq_u8(q0, m4), qh0, b_lo), load_q(&xb.qs, y));
                    let lo = $dot(lo, level(vandq_u8(q1, m4), qh1, b_lo), load_q(&xb.qs, y + 16));
                    let hi = $dot(zero, level(vshrq_n_u8::<4>(q0), qh0, b_hi), load_q(&xb.qs, y + 32));
                    let hi = $dot(hi, level(vshrq_n_u8::<4>(q1), qh1, b_hi), load_q(&xb.qs, y + 48));
                    acc = vmlaq_n_s32(acc, lo, sc[2 * c] as i32);
                    acc = vmlaq_n_s32(acc, hi, sc[2 * c + 1] as i32);
                }
                let isum = vaddvq_s32(acc);
                sum += scale_min_block(f16_at(wb, 0), f16_at(wb, 2), xb.d, isum, mins_sum(&m, &xb.bsums));
            }
            sum
        }

        #[target_feature(enable = $feat)]
        fn $q6(w: &[u8], x: &[Q8KBlock]) -> f32 {
            let (m4, m3, m30, zero) = (vdupq_n_u8(0x0F), vdupq_n_u8(0x03), vdupq_n_u8(0x30), vdupq_n_s32(0));
            let thirty_two = vdupq_n_s8(32);
            let mut sum = 0f32;
            for (wb, xb) in w.chunks_exact(Q6_K_BYTES).zip(x) {
                let scales = &wb[192..208];
                let mut acc = zero;
                for h in 0..2 {
                    // Sixteen elements l = o..o + 16 of each quarter k of half h (element 128h + 32k + l).
                    for (half, o) in [0usize, 16].into_iter().enumerate() {
                        let (l0, l1, hb) =
                            (load_u8(wb, 64 * h + o), load_u8(wb, 64 * h + 32 + o), load_u8(wb, 128 + 32 * h + o));
                        // Low nibble from ql[l] (k even) or ql[32 + l] (k odd), shifted by 4(k >> 1); high bits
                        // (qh[l] >> 2k) & 3, placed at bits 4..6.
                        let q = [
                            vorrq_u8(vandq_u8(l0, m4), vshlq_n_u8::<4>(vandq_u8(hb, m3))),
                            vorrq_u8(vandq_u8(l1, m4), vandq_u8(vshlq_n_u8::<2>(hb), m30)),
                            vorrq_u8(vshrq_n_u8::<4>(l0), vandq_u8(hb, m30)),
                            vorrq_u8(vshrq_n_u8::<4>(l1), vandq_u8(vshrq_n_u8::<2>(hb), m30)),
                        ];
                        for (k, q) in q.into_iter().enumerate() {
                            let v = vsubq_s8(vreinterpretq_s8_u8(q), thirty_two);
                            let lanes = $dot(zero, v, load_q(&xb.qs, 128 * h + 32 * k + o));
                            acc = vmlaq_n_s32(acc, lanes, scales[8 * h + 2 * k + half] as i8 as i32);
                        }
                    }
                }
                let isum = vaddvq_s32(acc);
                let d = f16_at(wb, 208) * xb.d;
                sum += d * isum as f32;
            }
            sum
        }
    };
}

k_quant_kernels!("neon", dot16_neon, dot_q4_k_neon, dot_q5_k_neon, dot_q6_k_neon);
k_quant_kernels!("neon,dotprod", sdot, dot_q4_k_sdot, dot_q5_k_sdot, dot_q6_k_sdot);

/// Q4_K weight row · Q8_K activation row on NEON (bit-identical to the scalar twin).
pub fn dot_q4_k(w: &[u8], x: &[Q8KBlock]) -> f32 {
    check_lengths("Q4_K dot", w, Q4_K_BYTES, x);
    assert!(neon_available());
    // SAFETY: NEON presence was checked just above.
    unsafe { dot_q4_k_neon(w, x) }
}

/// Q5_K weight row · Q8_K activation row on NEON (bit-identical to the scalar twin).
pub fn dot_q5_k(w: &[u8], x: &[Q8KBlock]) -> f32 {
    check_lengths("Q5_K dot", w, Q5_K_BYTES, x);
    assert!(neon_available());
    // SAFETY: NEON presence was checked just above.
    unsafe { dot_q5_k_neon(w, x) }
}

/// Q6_K weight row · Q8_K activation row on NEON (bit-identical to the scalar twin).
pub fn dot_q6_k(w: &[u8], x: &[Q8KBlock]) -> f32 {
    check_lengths("Q6_K dot", w, Q6_K_BYTES, x);
    assert!(neon_available());
    // SAFETY: NEON presence was checked just above.
    unsafe { dot_q6_k_neon(w, x) }
}

/// Q4_K weight row · Q8_K activation row with `sdot` (bit-identical to the scalar twin).
pub fn dot_q4_k_dotprod(w: &[u8], x: &[Q8KBlock]) -> f32 {
    check_lengths("Q4_K dot", w, Q4_K_BYTES, x);
    assert!(dotprod_available());
    // SAFETY: NEON and dotprod presence was checked just above.
    unsafe { dot_q4_k_sdot(w, x) }
}

/// Q5_K weight row · Q8_K activation row with `sdot` (bit-identical to the scalar twin).
pub fn dot_q5_k_dotprod(w: &[u8], x: &[Q8KBlock]) -> f32 {
    check_lengths("Q5_K dot", w, Q5_K_BYTES, x);
    assert!(dotprod_available());
    // SAFETY: NEON and dotprod presence was checked just above.
    unsafe { dot_q5_k_sdot(w, x) }
}

/// Q6_K weight row · Q8_K activation row with `sdot` (bit-identical to the scalar twin).
pub fn dot_q6_k_dotprod(w: &[u8], x: &[Q8KBlock]) -> f32 {
    check_lengths("Q6_K dot", w, Q6_K_BYTES, x);
    assert!(dotprod_available());
    // SAFETY: NEON and dotprod presence was checked just above.
    unsafe { dot_q6_k_sdot(w, x) }
}

#[cfg(test)]
mod tests {
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::kernels::kquants::tests::{quantize_row, random_row};
    use crate::kernels::kquants::{self as scalar, quantize_q8_k_activations};
    use crate::quant::f32_to_f16_bits;
    use crate::GgmlType;

    type KDot = fn(&[u8], &[Q8KBlock]) -> f32;

    /// (name, Q4_K, Q5_K, Q6_K) for every path this CPU runs, scalar first.
    fn paths() -> Vec<(&'static str, [KDot; 3])> {
        let mut p: Vec<(&'static str, [KDot; 3])> = vec![
            ("scalar", [scalar::dot_q4_k, scalar::dot_q5_k, scalar::dot_q6_k]),
            ("neon", [dot_q4_k, dot_q5_k, dot_q6_k]),
        ];
        if dotprod_available() {
            p.push(("dotprod", [dot_q4_k_dotprod, dot_q5_k_dotprod, dot_q6_k_dotprod]));
        } else {
            eprintln!("no dotprod on this CPU: sdot K-quant paths not compared");
        }
        p
    }

    const TYPES: [GgmlType; 3] = [GgmlType::Q4K, GgmlType::Q5K, GgmlType::Q6K];

    fn compare_all(paths: &[(&str, [KDot; 3])], t: usize, w: &[u8], x: &[Q8KBlock], what: &str) {
        let s = paths[0].1[t](w, x);
        for (name, f) in &paths[1..] {
            let v = f[t](w, x);
            assert_eq!(s.to_bits(), v.to_bits(), "{} {what}: scalar {s} vs {name} {v}", TYPES[t]);
        }
    }

    #[test]
    fn k_quant_dots_are_bit_identical_to_scalar() {
        let paths = paths();
        let mut rng = SmallRng::seed_from_u64(42);
        for &n in &[256usize, 512, 2048, 6144] {
            for it in 0..8 {
                let wv = random_row(&mut rng, n, it % 2 == 0);
                let xq = quantize_q8_k_activations(&random_row(&mut rng, n, it % 3 == 0));
                for (t, ty) in TYPES.into_iter().enumerate() {
                    compare_all(&paths, t, &quantize_row(ty, &wv), &xq, &format!("n={n}"));
                }
            }
        }
        let names: Vec<_> = paths[1..].iter().map(|p| p.0).collect();
        eprintln!("aarch64 K-quant dots compared bit-exactly with scalar: {names:?}");
    }

    /// Random bytes: every level, scale, min and sign combination (extreme 6-bit scales, Q6_K's negative
    /// scales) that the quantizer would rarely emit; scales are finite f16 values.
    #[test]
    fn k_quant_dots_match_scalar_on_random_bytes() {
        let paths = paths();
        let mut rng = SmallRng::seed_from_u64(43);
        let n = 2048;
        for _ in 0..20 {
            let xq = quantize_q8_k_activations(&random_row(&mut rng, n, false));
            for (t, (bytes, f16s)) in
                [(Q4_K_BYTES, [0, 2]), (Q5_K_BYTES, [0, 2]), (Q6_K_BYTES, [208, 208])].into_iter().enumerate()
            {
                let mut w: Vec<u8> = (0..bytes * n / 256).map(|_| rng.gen()).collect();
                for b in w.chunks_exact_mut(bytes) {
                    for at in f16s {
                        let v = f32_to_f16_bits(rng.gen_range(-0.01f32..0.01)).to_le_bytes();
                        b[at..at + 2].copy_from_slice(&v);
                    }
                }
                compare_all(&paths, t, &w, &xq, "random bytes");
            }
        }
        let names: Vec<_> = paths[1..].iter().map(|p| p.0).collect();
        eprintln!("aarch64 K-quant dots compared bit-exactly with scalar on random bytes: {names:?}");
    }
}
