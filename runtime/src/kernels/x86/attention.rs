//! AVX2 twins of the attention score and value loops ([`crate::kernels::attention::key_scores_scalar`],
//! [`crate::kernels::attention::mix_rows_scalar`]): the same multiply and add per element, in the same
//! order (no FMA), so the results are bit-identical; eight 8-lane accumulators stay in registers across
//! the whole loop instead of a load and store (or a horizontal sum) per row.

use std::arch::x86_64::*;

use super::available;

/// `out[e] += Σ_j p[j] · rows[j·d + e]`, rows in order.
pub fn mix_rows(p: &[f32], rows: &[f32], d: usize, out: &mut [f32]) {
    assert!(available());
    assert!(rows.len() >= p.len() * d && out.len() == d);
    // SAFETY: AVX2 was checked above; every row read is within `rows` (asserted) and `out` has d elements.
    unsafe { mix_rows_avx2(p, rows, d, out) }
}

/// The body of the value mixes: `out[e] += Σ_j p[j] · row_j[e]`, rows in order, 64 columns at a time (8
/// registers), then 8, then one by one; `|j, e| load8` gives row j's values e..e + 8 as f32 lanes (inside
/// an `unsafe` block) and `|j, e| load1` value e. The loads are substituted as expressions, not closures:
/// closures would not inherit the caller's target features.
macro_rules! mix_body {
    ($p:expr, $d:expr, $out:expr, |$j8:ident, $e8:ident| $load8:expr, |$j1:ident, $e1:ident| $load1:expr) => {{
        let (p, d, out): (&[f32], usize, &mut [f32]) = ($p, $d, $out);
        let mut e0 = 0;
        while e0 + 64 <= d {
            // SAFETY: e0 + 64 <= d: inside `out` (and, by the callers' asserts, inside every row).
            unsafe {
                let mut acc = [_mm256_setzero_ps(); 8];
                for (l, a) in acc.iter_mut().enumerate() {
                    *a = _mm256_loadu_ps(out.as_ptr().add(e0 + 8 * l));
                }
                for (j, &pj) in p.iter().enumerate() {
                    let pv = _mm256_set1_ps(pj);
                    for (l, a) in acc.iter_mut().enumerate() {
                        let ($j8, $e8) = (j, e0 + 8 * l);
                        *a = _mm256_add_ps(*a, _mm256_mul_ps(pv, $load8));
                    }
                }
                for (l, a) in acc.iter().enumerate() {
                    _mm256_storeu_ps(out.as_mut_ptr().add(e0 + 8 * l), *a);
                }
            }
            e0 += 64;
        }
        while e0 + 8 <= d {
            // SAFETY: e0 + 8 <= d: inside `out` and every row.
            unsafe {
                let mut a = _mm256_loadu_ps(out.as_ptr().add(e0));
                for (j, &pj) in p.iter().enumerate() {
                    let ($j8, $e8) = (j, e0);
                    a = _mm256_add_ps(a, _mm256_mul_ps(_mm256_set1_ps(pj), $load8));
                }
                _mm256_storeu_ps(out.as_mut_ptr().add(e0), a);
            }
            e0 += 8;
        }
        for e in e0..d {
            for (j, &pj) in p.iter().enumerate() {
                let ($j1, $e1) = (j, e);
                out[e] += pj * $load1;
            }
        }
    }};
}

#[target_feature(enable = "avx2")]
unsafe fn mix_rows_avx2(p: &[f32], rows: &[f32], d: usize, out: &mut [f32]) {
    mix_body!(
        p,
        d,
        out,
        // SAFETY (mix_body's unsafe block): e + 8 <= d, and rows holds p.len() · d values.
        |j, e| _mm256_loadu_ps(rows.as_ptr().add(j * d + e)),
        |j, e| rows[j * d + e]
    )
}

/// `out[j] = Σ_e q[e] · kt[e·w + j]` for `j < w`: one query against `w` keys stored transposed (`kt` is
/// `[d][w]`), e in order.
pub fn key_scores(q: &[f32], kt: &[f32], w: usize, out: &mut [f32]) {
    assert!(available());
    assert!(kt.len() >= q.len() * w && out.len() >= w);
    // SAFETY: AVX2 was checked above; every read of kt is below d · w and out has w elements (asserted).
    unsafe { key_scores_avx2(q, kt, w, out) }
}

#[target_feature(enable = "avx2")]
unsafe fn key_scores_avx2(q: &[f32], kt: &[f32], w: usize, out: &mut [f32]) {
    let mut j0 = 0;
    // 64 keys at a time (8 registers), then 8, then the scalar tail.
    while j0 + 64 <= w {
        // SAFETY: j0 + 64 <= w: inside every row of kt and inside out.
        unsafe {
            let mut acc = [_mm256_setzero_ps(); 8];
            for (e, &qe) in q.iter().enumerate() {
                let (qv, row) = (_mm256_set1_ps(qe), kt.as_ptr().add(e * w + j0));
                for (l, a) in acc.iter_mut().enumerate() {
                    *a = _mm256_add_ps(*a, _mm256_mul_ps(qv, _mm256_loadu_ps(row.add(8 * l))));
                }
            }
            for (l, a) in acc.iter().enumerate() {
                _mm256_storeu_ps(out.as_mut_ptr().add(j0 + 8 * l), *a);
            }
        }
        j0 += 64;
    }
    while j0 + 8 <= w {
        // SAFETY: j0 + 8 <= w: inside every row of kt and inside out.
        unsafe {
            let mut a = _mm256_setzero_ps();
            for (e, &qe) in q.iter().enumerate() {
                a = _mm256_add_ps(a, _mm256_mul_ps(_mm256_set1_ps(qe), _mm256_loadu_ps(kt.as_ptr().add(e * w + j0))));
            }
            _mm256_storeu_ps(out.as_mut_ptr().add(j0), a);
        }
        j0 += 8;
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
/// are converted in registers (F16C, exact), then the same multiply and add as [`mix_rows`].
pub fn mix_rows_f16(p: &[f32], rows: &[u8], d: usize, out: &mut [f32]) {
    assert!(available());
    assert!(rows.len() >= p.len() * d * 2 && out.len() == d);
    // SAFETY: AVX2/F16C were checked above; every row read is within `rows` (asserted), `out` has d elements.
    unsafe { mix_rows_f16_avx2(p, rows, d, out) }
}

#[target_feature(enable = "avx2,f16c")]
unsafe fn mix_rows_f16_avx2(p: &[f32], rows: &[u8], d: usize, out: &mut [f32]) {
    mix_body!(
        p,
        d,
        out,
        // SAFETY (mix_body's unsafe block): e + 8 <= d, and rows holds p.len() · d f16 values.
        |j, e| _mm256_cvtph_ps(_mm_loadu_si128(rows.as_ptr().add(2 * (j * d + e)) as *const __m128i)),
        |j, e| crate::quant::f16_bits_to_f32(u16::from_le_bytes([rows[2 * (j * d + e)], rows[2 * (j * d + e) + 1]]))
    )
}
