//! NEON twins of the attention score and value loops ([`crate::kernels::attention::key_scores_scalar`],
//! [`crate::kernels::attention::mix_rows_scalar`], and the f16-row value mix): the same multiply and add per
//! element, in the same order (`fmul` then `fadd`, never `fmla`), so the results are bit-identical, as the
//! AVX2 twins are; sixteen 4-lane accumulators stay in registers across the whole loop instead of a load
//! and store per row.

use std::arch::aarch64::*;

use super::f16::load4_f16;
use super::neon_available;
use crate::quant::f16_bits_to_f32;

/// `out[e] += Σ_j p[j] · rows[j·d + e]`, rows in order.
pub fn mix_rows(p: &[f32], rows: &[f32], d: usize, out: &mut [f32]) {
    assert!(neon_available());
    assert!(rows.len() >= p.len() * d && out.len() == d);
    // SAFETY: NEON was checked above; every row read is within `rows` (asserted) and `out` has d elements.
    unsafe { mix_rows_neon(p, rows, d, out) }
}

/// The body of the value mixes: `out[e] += Σ_j p[j] · row_j[e]`, rows in order, 64 columns at a time (16
/// registers), then 4, then one by one; `|j, e| load4` gives row j's values e..e + 4 as f32 lanes (inside an
/// `unsafe` block) and `|j, e| load1` value e. The loads are substituted as expressions, not closures:
/// closures would not inherit the caller's target features.
macro_rules! mix_body {
    ($p:expr, $d:expr, $out:expr, |$j4:ident, $e4:ident| $load4:expr, |$j1:ident, $e1:ident| $load1:expr) => {{
        let (p, d, out): (&[f32], usize, &mut [f32]) = ($p, $d, $out);
        let mut e0 = 0;
        while e0 + 64 <= d {
            // SAFETY: e0 + 64 <= d: inside `out` (and, by the callers' asserts, inside every row).
            unsafe {
                let mut acc = [vdupq_n_f32(0.0); 16];
                for (l, a) in acc.iter_mut().enumerate() {
                    *a = vld1q_f32(out.as_ptr().add(e0 + 4 * l));
                }
                for (j, &pj) in p.iter().enumerate() {
                    let pv = vdupq_n_f32(pj);
                    for (l, a) in acc.iter_mut().enumerate() {
                        let ($j4, $e4) = (j, e0 + 4 * l);
                        *a = vaddq_f32(*a, vmulq_f32(pv, $load4));
                    }
                }
                for (l, a) in acc.iter().enumerate() {
                    vst1q_f32(out.as_mut_ptr().add(e0 + 4 * l), *a);
                }
            }
            e0 += 64;
        }
        while e0 + 4 <= d {
            // SAFETY: e0 + 4 <= d: inside `out` and every row.
            unsafe {
                let mut a = vld1q_f32(out.as_ptr().add(e0));
                for (j, &pj) in p.iter().enumerate() {
                    let ($j4, $e4) = (j, e0);
                    a = vaddq_f32(a, vmulq_f32(vdupq_n_f32(pj), $load4));
                }
                vst1q_f32(out.as_mut_ptr().add(e0), a);
            }
            e0 += 4;
        }
        for e in e0..d {
            for (j, &pj) in p.iter().enumerate() {
                let ($j1, $e1) = (j, e);
                out[e] += pj * $load1;
            }
        }
    }};
}

#[target_feature(enable = "neon")]
unsafe fn mix_rows_neon(p: &[f32], rows: &[f32], d: usize, out: &mut [f32]) {
    mix_body!(
        p,
        d,
        out,
        // SAFETY (mix_body's unsafe block): e + 4 <= d, and rows holds p.len() · d values.
        |j, e| vld1q_f32(rows.as_ptr().add(j * d + e)),
        |j, e| rows[j * d + e]
    )
}

/// `out[j] = Σ_e q[e] · kt[e·w + j]` for `j < w`: one query against `w` keys stored transposed (`kt` is
/// `[d][w]`), e in order.
pub fn key_scores(q: &[f32], kt: &[f32], w: usize, out: &mut [f32]) {
    assert!(neon_available());
    assert!(kt.len() >= q.len() * w && out.len() >= w);
    // SAFETY: NEON was checked above; every read of kt is below d · w and out has w elements (asserted).
    unsafe { key_scores_neon(q, kt, w, out) }
}

#[target_feature(enable = "neon")]
unsafe fn key_scores_neon(q: &[f32], kt: &[f32], w: usize, out: &mut [f32]) {
    let mut j0 = 0;
    // 64 keys at a time (16 registers), then 4, then the scalar tail.
    while j0 + 64 <= w {
        // SAFETY: j0 + 64 <= w: inside every row of kt and inside out.
        unsafe {
            let mut acc = [vdupq_n_f32(0.0); 16];
            for (e, &qe) in q.iter().enumerate() {
                let (qv, row) = (vdupq_n_f32(qe), kt.as_ptr().add(e * w + j0));
                for (l, a) in acc.iter_mut().enumerate() {
                    *a = vaddq_f32(*a, vmulq_f32(qv, vld1q_f32(row.add(4 * l))));
                }
            }
            for (l, a) in acc.iter().enumerate() {
                vst1q_f32(out.as_mut_ptr().add(j0 + 4 * l), *a);
            }
        }
        j0 += 64;
    }
    while j0 + 4 <= w {
        // SAFETY: j0 + 4 <= w: inside every row of kt and inside out.
        unsafe {
            let mut a = vdupq_n_f32(0.0);
            for (e, &qe) in q.iter().enumerate() {
                a = vaddq_f32(a, vmulq_f32(vdupq_n_f32(qe), vld1q_f32(kt.as_ptr().add(e * w + j0))));
            }
            vst1q_f32(out.as_mut_ptr().add(j0), a);
        }
        j0 += 4;
    }
    for (j, o) in out.iter_mut().enumerate().take(w).skip(j0) {
        let mut a = 0f32;
        for (e, &qe) in q.iter().enumerate() {
            a += qe * kt[e * w + j];
        }
        *o = a;
    }
}

/// `out[e] += Σ_j p[j] · f16(rows[j][e])` for f16 rows (little-endian bytes), rows in order: the values
/// are converted in registers (`fcvtl`, exact), then the same multiply and add as [`mix_rows`].
pub fn mix_rows_f16(p: &[f32], rows: &[u8], d: usize, out: &mut [f32]) {
    assert!(neon_available());
    assert!(rows.len() >= p.len() * d * 2 && out.len() == d);
    // SAFETY: NEON was checked above; every row read is within `rows` (asserted), `out` has d elements.
    unsafe { mix_rows_f16_neon(p, rows, d, out) }
}

#[target_feature(enable = "neon")]
unsafe fn mix_rows_f16_neon(p: &[f32], rows: &[u8], d: usize, out: &mut [f32]) {
    mix_body!(
        p,
        d,
        out,
        // SAFETY (mix_body's unsafe block): e + 4 <= d, and rows holds p.len() · d f16 values.
        |j, e| load4_f16(rows.as_ptr().add(2 * (j * d + e))),
        |j, e| f16_bits_to_f32(u16::from_le_bytes([rows[2 * (j * d + e)], rows[2 * (j * d + e) + 1]]))
    )
}

#[cfg(test)]
mod tests {
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::kernels::attention::{key_scores_scalar, mix_rows_scalar};
    use crate::quant;
    use crate::GgmlType;

    fn assert_bits(what: &str, a: &[f32], b: &[f32]) {
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()),
                "{what} [{i}]: scalar {x:e} vs neon {y:e}"
            );
        }
    }

    /// Uniform values in ±spread, with a few large, tiny and zero ones.
    fn values(rng: &mut SmallRng, n: usize, spread: f32) -> Vec<f32> {
        (0..n)
            .map(|_| match rng.gen_range(0..50) {
                0 => 0.0,
                1 => rng.gen_range(-1e-30f32..1e-30),
                2 => rng.gen_range(-1e4f32..1e4),
                _ => rng.gen_range(-spread..spread),
            })
            .collect()
    }

    // Widths and head sizes crossing the 64-, 4- and 1-wide parts: 1, 3, 4, 7, 8, 9, 31, 64 and beyond.
    const SHAPES: [(usize, usize); 12] = [
        (1, 1),
        (3, 7),
        (4, 4),
        (7, 3),
        (8, 9),
        (9, 31),
        (31, 64),
        (64, 64),
        (64, 128),
        (71, 80),
        (130, 64),
        (5, 1029),
    ];

    #[test]
    fn neon_key_scores_are_bit_identical_to_scalar() {
        let mut rng = SmallRng::seed_from_u64(14);
        for &(w, d) in &SHAPES {
            let q = values(&mut rng, d, 4.0);
            let kt = values(&mut rng, d * w, 4.0);
            let (mut a, mut b) = (vec![0f32; w], vec![1f32; w]);
            key_scores_scalar(&q, &kt, w, &mut a);
            key_scores(&q, &kt, w, &mut b);
            assert_bits(&format!("key_scores w={w} d={d}"), &a, &b);
        }
        eprintln!("neon key_scores compared bit-exactly with scalar");
    }

    #[test]
    fn neon_value_mixes_are_bit_identical_to_scalar() {
        let mut rng = SmallRng::seed_from_u64(8);
        for &(nrows, d) in &SHAPES {
            let p: Vec<f32> = (0..nrows).map(|_| rng.gen_range(0.0..1.0)).collect();
            let rows = values(&mut rng, nrows * d, 4.0);
            let start = values(&mut rng, d, 1.0);
            let (mut a, mut b) = (start.clone(), start.clone());
            mix_rows_scalar(&p, &rows, d, &mut a);
            mix_rows(&p, &rows, d, &mut b);
            assert_bits(&format!("mix_rows rows={nrows} d={d}"), &a, &b);

            // f16 rows: quantized values, and raw halves (subnormals, ±inf, NaN) against converting first.
            for raw in [false, true] {
                let bytes: Vec<u8> = if raw {
                    (0..nrows * d).flat_map(|_| rng.gen::<u16>().to_le_bytes()).collect()
                } else {
                    let mut b = vec![0u8; nrows * d * 2];
                    quant::quantize(GgmlType::F16, &rows, &mut b).unwrap();
                    b
                };
                let mut exact = vec![0f32; nrows * d];
                for (y, h) in exact.iter_mut().zip(bytes.chunks_exact(2)) {
                    *y = quant::f16_to_f32_vectorizable(u16::from_le_bytes([h[0], h[1]]));
                }
                let (mut a, mut b) = (start.clone(), start.clone());
                mix_rows_scalar(&p, &exact, d, &mut a);
                mix_rows_f16(&p, &bytes, d, &mut b);
                assert_bits(&format!("mix_rows_f16 rows={nrows} d={d} raw={raw}"), &a, &b);
            }
        }
        eprintln!("neon mix_rows and mix_rows_f16 compared bit-exactly with scalar");
    }
}
