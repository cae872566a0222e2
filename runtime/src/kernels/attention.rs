//! Scaled dot-product attention over keys and values stored per KV head as rows of f32, f16 or Q8_0
//! (the KV cache's compact forms), in tiles of positions: a tile of keys is converted to f32 once and
//! reused by every query row and every query head of its GQA group.

use rayon::prelude::*;

use crate::quant;
use crate::GgmlType;

/// Positions converted per tile.
const KEY_TILE: usize = 64;
/// Query rows per work item (they share every converted tile, and its transposition).
const QUERY_BLOCK: usize = 64;
/// Fewer score rows (queries × GQA group) per work item than this take one dot per key instead of
/// transposing each tile (decoding: the transposition would cost as much as the scores).
const TRANSPOSE_MIN_ROWS: usize = 8;

/// The key or value rows of one KV head: `len` rows of `d` elements, contiguous, of type `ty` (F32, F16
/// or Q8_0).
#[derive(Debug, Clone, Copy)]
pub struct HeadRows<'a> {
    pub ty: GgmlType,
    pub data: &'a [u8],
}

impl HeadRows<'_> {
    /// Rows `[j0, j1)` as f32 into `out`.
    fn tile_f32(&self, d: usize, j0: usize, j1: usize, out: &mut Vec<f32>) {
        let rb = self.ty.row_size(d).expect("KV rows are whole blocks");
        out.resize((j1 - j0) * d, 0.0);
        quant::dequantize(self.ty, &self.data[j0 * rb..j1 * rb], out).expect("KV rows are whole blocks");
    }
}

/// The row types a KV store may use.
pub fn kv_type_supported(ty: GgmlType, d: usize) -> bool {
    matches!(ty, GgmlType::F32 | GgmlType::F16 | GgmlType::Q8_0) && ty.row_size(d).is_some()
}

/// Attention of `nq` query rows `q: [nq, n_heads, d]` against `nk` positions of `keys`/`values` (one
/// [`HeadRows`] per KV head); query head h reads KV head `h / (n_heads / n_kv_heads)` (GQA). With `causal =
/// Some(first)`, query i sits at position `first + i` and sees positions `0..=first + i`. Writes
/// `out: [nq, n_heads, d]`. Scores and softmax are f32, as the reference computes them.
#[allow(clippy::too_many_arguments)]
pub fn attention_rows(
    q: &[f32],
    nq: usize,
    n_heads: usize,
    d: usize,
    keys: &[HeadRows<'_>],
    values: &[HeadRows<'_>],
    nk: usize,
    causal: Option<usize>,
    out: &mut [f32],
) {
    let n_kv = keys.len();
    assert!(n_kv > 0 && n_heads.is_multiple_of(n_kv) && values.len() == n_kv);
    assert_eq!(q.len(), nq * n_heads * d);
    assert_eq!(out.len(), nq * n_heads * d);
    let group = n_heads / n_kv;
    let scale = 1.0 / (d as f32).sqrt();
    let qblocks = nq.div_ceil(QUERY_BLOCK);
    // Work items: (KV head, block of query rows); each returns its [rows, group, d] outputs.
    let results: Vec<(usize, usize, Vec<f32>)> = (0..n_kv * qblocks)
        .into_par_iter()
        .map(|t| {
            let (g, b) = (t / qblocks, t % qblocks);
            let (i0, i1) = (b * QUERY_BLOCK, ((b + 1) * QUERY_BLOCK).min(nq));
            let visible = |i: usize| match causal {
                Some(first) => (first + i + 1).min(nk),
                None => nk,
            };
            let span = visible(i1 - 1);
            let rows = (i1 - i0) * group;
            // scores[row][j], row = (i - i0) * group + head-in-group.
            let mut scores = vec![0f32; rows * span];
            let (mut tile, mut kt) = (Vec::new(), Vec::new());
            // f32 keys always take the transposed scores, whatever the batch: a query's scores then have
            // the same bits however the prompt was cut into batches (chunked prefill, a cached prefix, a
            // rollback), which is what makes the f32 KV cache reference-exact under reuse. f16 and q8_0
            // keys keep the faster per-key dots for few rows (their results differ from the tiles' in the
            // last bits, within the rounding those caches introduce anyway).
            let transpose = rows >= TRANSPOSE_MIN_ROWS || keys[g].ty == GgmlType::F32;
            // Few rows of f16 keys (decoding): each key is read once or twice, so it is converted in
            // registers by the f16 dot rather than into a tile first.
            let direct = !transpose && keys[g].ty == GgmlType::F16 && super::f16_dot_in_registers();
            let krow = keys[g].ty.row_size(d).expect("KV rows are whole blocks");
            for j0 in (0..span).step_by(KEY_TILE) {
                let j1 = (j0 + KEY_TILE).min(span);
                let w = j1 - j0;
                if !direct {
                    keys[g].tile_f32(d, j0, j1, &mut tile);
                }
                if transpose {
                    // [d][w], so a query's scores against the whole tile accumulate in vector lanes.
                    kt.resize(d * w, 0.0);
                    for (jj, key) in tile.chunks_exact(d).enumerate() {
                        for (e, &x) in key.iter().enumerate() {
                            kt[e * w + jj] = x;
                        }
                    }
                }
                for i in i0..i1 {
                    if visible(i) <= j0 {
                        continue;
                    }
                    for hg in 0..group {
                        let h = g * group + hg;
                        let qv = &q[(i * n_heads + h) * d..(i * n_heads + h + 1) * d];
                        let row = &mut scores[((i - i0) * group + hg) * span..][j0..j1];
                        if transpose {
                            // Positions past visible(i) get scores too; the softmax and the mix never read them.
                            key_scores(qv, &kt, w, row);
                            for s in row.iter_mut() {
                                *s *= scale;
                            }
                        } else if direct {
                            let seen = j1.min(visible(i)) - j0;
                            let bytes = &keys[g].data[j0 * krow..(j0 + seen) * krow];
                            for (s, key) in row[..seen].iter_mut().zip(bytes.chunks_exact(krow)) {
                                *s = super::dot_f16(key, qv) * scale;
                            }
                        } else {
                            let seen = j1.min(visible(i)) - j0;
                            for (s, key) in row[..seen].iter_mut().zip(tile.chunks_exact(d)) {
                                *s = super::dot(qv, key) * scale;
                            }
                        }
                    }
                }
            }
            for (r, row) in scores.chunks_mut(span).enumerate() {
                super::softmax_in_place(&mut row[..visible(i0 + r / group)]);
            }
            let mut acc = vec![0f32; rows * d];
            for j0 in (0..span).step_by(KEY_TILE) {
                let j1 = (j0 + KEY_TILE).min(span);
                if direct && values[g].ty == GgmlType::F16 {
                    // As for the keys: f16 values converted in registers, the same bits as via a tile.
                    let vrow = values[g].ty.row_size(d).expect("KV rows are whole blocks");
                    for (r, o) in acc.chunks_mut(d).enumerate() {
                        let p = &scores[r * span..r * span + visible(i0 + r / group)];
                        if j0 < p.len() {
                            let j1 = j1.min(p.len());
                            mix_rows_f16(&p[j0..j1], &values[g].data[j0 * vrow..j1 * vrow], d, o);
                        }
                    }
                    continue;
                }
                values[g].tile_f32(d, j0, j1, &mut tile);
                for (r, o) in acc.chunks_mut(d).enumerate() {
                    let p = &scores[r * span..r * span + visible(i0 + r / group)];
                    if j0 < p.len() {
                        mix_rows(&p[j0..j1.min(p.len())], &tile, d, o);
                    }
                }
            }
            (g, i0, acc)
        })
        .collect();
    for (g, i0, acc) in results {
        for (r, o) in acc.chunks(d).enumerate() {
            let (i, h) = (i0 + r / group, g * group + r % group);
            out[(i * n_heads + h) * d..(i * n_heads + h + 1) * d].copy_from_slice(o);
        }
    }
}

/// `out[j] = Σ_e q[e] · kt[e·w + j]` (a query's scores against `w` keys stored transposed), on the selected
/// path.
fn key_scores(q: &[f32], kt: &[f32], w: usize, out: &mut [f32]) {
    match super::isa() {
        #[cfg(target_arch = "x86_64")]
        super::Isa::Avx2 | super::Isa::Avx2Vnni => super::x86::attention::key_scores(q, kt, w, out),
        #[cfg(target_arch = "aarch64")]
        super::Isa::Neon | super::Isa::Dotprod | super::Isa::I8mm => {
            super::aarch64::attention::key_scores(q, kt, w, out)
        }
        _ => key_scores_scalar(q, kt, w, out),
    }
}

/// The portable reference of [`key_scores`]: per key, one multiply and one add per element, in order
/// (written element-major, so the inner loop runs over contiguous keys and vectorizes on any target).
pub fn key_scores_scalar(q: &[f32], kt: &[f32], w: usize, out: &mut [f32]) {
    let out = &mut out[..w];
    out.fill(0.0);
    for (e, &qe) in q.iter().enumerate() {
        for (o, &k) in out.iter_mut().zip(&kt[e * w..(e + 1) * w]) {
            *o += qe * k;
        }
    }
}

/// `out[e] += Σ_j p[j] · rows[j·d + e]` (the softmax-weighted values), on the selected path.
fn mix_rows(p: &[f32], rows: &[f32], d: usize, out: &mut [f32]) {
    match super::isa() {
        #[cfg(target_arch = "x86_64")]
        super::Isa::Avx2 | super::Isa::Avx2Vnni => super::x86::attention::mix_rows(p, rows, d, out),
        #[cfg(target_arch = "aarch64")]
        super::Isa::Neon | super::Isa::Dotprod | super::Isa::I8mm => {
            super::aarch64::attention::mix_rows(p, rows, d, out)
        }
        _ => mix_rows_scalar(p, rows, d, out),
    }
}

/// `out[e] += Σ_j p[j] · rows[j][e]` over f16 rows (little-endian bytes, `d` values each), for the paths
/// that convert f16 in registers (x86 F16C, aarch64 NEON; see `direct` in [`attention_rows`]); bit-identical
/// to converting the rows and [`mix_rows_scalar`].
fn mix_rows_f16(p: &[f32], rows: &[u8], d: usize, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if super::f16_dot_in_registers() {
        return super::x86::attention::mix_rows_f16(p, rows, d, out);
    }
    #[cfg(target_arch = "aarch64")]
    if super::f16_dot_in_registers() {
        return super::aarch64::attention::mix_rows_f16(p, rows, d, out);
    }
    let mut f = vec![0f32; p.len() * d];
    quant::dequantize(GgmlType::F16, &rows[..p.len() * d * 2], &mut f).expect("f16 rows");
    mix_rows_scalar(p, &f, d, out);
}

/// The portable reference of [`mix_rows`]: one multiply and one add per element, rows in order.
pub fn mix_rows_scalar(p: &[f32], rows: &[f32], d: usize, out: &mut [f32]) {
    for (j, &pj) in p.iter().enumerate() {
        for (o, x) in out.iter_mut().zip(&rows[j * d..(j + 1) * d]) {
            *o += pj * x;
        }
    }
}

/// Attention over f32 `q: [nq, n_heads, d]`, `k`, `v: [nk, n_kv_heads, d]` (the ViT's fresh keys).
#[allow(clippy::too_many_arguments)]
pub fn attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    nq: usize,
    nk: usize,
    n_heads: usize,
    n_kv_heads: usize,
    d: usize,
    causal: Option<usize>,
    out: &mut [f32],
) {
    // Regroup keys and values head-major so each head's rows are contiguous.
    let split = |x: &[f32]| -> Vec<Vec<u8>> {
        (0..n_kv_heads)
            .map(|g| {
                let mut rows = Vec::with_capacity(nk * d * 4);
                for j in 0..nk {
                    for v in &x[(j * n_kv_heads + g) * d..(j * n_kv_heads + g + 1) * d] {
                        rows.extend_from_slice(&v.to_le_bytes());
                    }
                }
                rows
            })
            .collect()
    };
    let (ks, vs) = (split(k), split(v));
    let kh: Vec<HeadRows<'_>> = ks.iter().map(|data| HeadRows { ty: GgmlType::F32, data }).collect();
    let vh: Vec<HeadRows<'_>> = vs.iter().map(|data| HeadRows { ty: GgmlType::F32, data }).collect();
    attention_rows(q, nq, n_heads, d, &kh, &vh, nk, causal, out);
}

#[cfg(test)]
mod tests {
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    /// Straight from the definition, in f64.
    #[allow(clippy::too_many_arguments)]
    fn naive(
        q: &[f32],
        k: &[f32],
        v: &[f32],
        nq: usize,
        nk: usize,
        nh: usize,
        nkv: usize,
        d: usize,
        causal: Option<usize>,
    ) -> Vec<f64> {
        let mut out = vec![0f64; nq * nh * d];
        for i in 0..nq {
            for h in 0..nh {
                let g = h / (nh / nkv);
                let vis = causal.map_or(nk, |f| (f + i + 1).min(nk));
                let s: Vec<f64> = (0..vis)
                    .map(|j| {
                        (0..d).map(|e| q[(i * nh + h) * d + e] as f64 * k[(j * nkv + g) * d + e] as f64).sum::<f64>()
                            / (d as f64).sqrt()
                    })
                    .collect();
                let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let z: f64 = s.iter().map(|x| (x - m).exp()).sum();
                for (j, sj) in s.iter().enumerate() {
                    let p = (sj - m).exp() / z;
                    for e in 0..d {
                        out[(i * nh + h) * d + e] += p * v[(j * nkv + g) * d + e] as f64;
                    }
                }
            }
        }
        out
    }

    #[test]
    fn causal_attention_first_query_sees_only_first_key() {
        // One head, d = 2: query 0 must return v[0] exactly.
        let q = [1.0, 0.0, 1.0, 0.0];
        let k = [1.0, 0.0, 0.0, 1.0];
        let v = [5.0, 6.0, 7.0, 8.0];
        let mut out = [0.0; 4];
        attention(&q, &k, &v, 2, 2, 1, 1, 2, Some(0), &mut out);
        assert_eq!(&out[..2], &[5.0, 6.0]);
        assert!(out[2] > 5.0 && out[2] < 7.0);
    }

    /// Keys and values stored as f16 or Q8_0 rows against f32 ones. Each stored element is off by at most
    /// 2⁻¹¹ relative (f16) or half a step of amax/127 per 32 values (Q8_0, ≤ 1/254 of |x|max = 1 here).
    /// The output is a convex mix of value rows, so value errors pass through unchanged; key errors shift
    /// scores by ≤ Σ|q|·δ ≤ √d·δ/√d (scaled), i.e. ≤ δ, which moves the softmax weights by ≤ 2δ relative
    /// and the output by ≤ 2δ·max|v|. Total ≤ 3δ.
    #[test]
    fn compact_rows_stay_within_their_rounding() {
        let mut rng = SmallRng::seed_from_u64(5);
        let (nq, nk, nh, nkv, d) = (3usize, 100usize, 4usize, 2usize, 64usize);
        let q: Vec<f32> = (0..nq * nh * d).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let k: Vec<f32> = (0..nk * nkv * d).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let v: Vec<f32> = (0..nk * nkv * d).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let mut exact = vec![0f32; nq * nh * d];
        attention(&q, &k, &v, nq, nk, nh, nkv, d, Some(nk - nq), &mut exact);
        for (ty, delta) in [(GgmlType::F16, 2f32.powi(-11)), (GgmlType::Q8_0, 1.0 / 254.0)] {
            assert!(kv_type_supported(ty, d));
            let store = |x: &[f32]| -> Vec<Vec<u8>> {
                (0..nkv)
                    .map(|g| {
                        let rb = ty.row_size(d).unwrap();
                        let mut rows = vec![0u8; nk * rb];
                        for j in 0..nk {
                            let src = &x[(j * nkv + g) * d..(j * nkv + g + 1) * d];
                            quant::quantize(ty, src, &mut rows[j * rb..(j + 1) * rb]).unwrap();
                        }
                        rows
                    })
                    .collect()
            };
            let (ks, vs) = (store(&k), store(&v));
            let kh: Vec<HeadRows<'_>> = ks.iter().map(|data| HeadRows { ty, data }).collect();
            let vh: Vec<HeadRows<'_>> = vs.iter().map(|data| HeadRows { ty, data }).collect();
            let mut got = vec![0f32; nq * nh * d];
            attention_rows(&q, nq, nh, d, &kh, &vh, nk, Some(nk - nq), &mut got);
            let worst = got.iter().zip(&exact).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(worst <= 3.0 * delta, "{ty}: max error {worst} > {}", 3.0 * delta);
        }
        assert!(!kv_type_supported(GgmlType::Q8_0, 16) && !kv_type_supported(GgmlType::Q4_0, 64));
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_f16_value_mix_is_bit_identical_to_converting_first() {
        if !crate::kernels::path_runs("avx2", crate::kernels::x86::available(), "attention twins") {
            return;
        }
        let mut rng = SmallRng::seed_from_u64(16);
        for &(nrows, d) in &[(1usize, 8usize), (3, 7), (64, 128), (17, 72), (5, 200)] {
            let p: Vec<f32> = (0..nrows).map(|_| rng.gen_range(0.0..1.0)).collect();
            let rows: Vec<f32> = (0..nrows * d).map(|_| rng.gen_range(-4.0..4.0)).collect();
            let mut bytes = vec![0u8; nrows * d * 2];
            quant::quantize(GgmlType::F16, &rows, &mut bytes).unwrap();
            let mut exact = vec![0f32; nrows * d];
            quant::dequantize(GgmlType::F16, &bytes, &mut exact).unwrap();
            let start: Vec<f32> = (0..d).map(|_| rng.gen_range(-1.0..1.0)).collect();
            let (mut a, mut b) = (start.clone(), start);
            mix_rows_scalar(&p, &exact, d, &mut a);
            crate::kernels::x86::attention::mix_rows_f16(&p, &bytes, d, &mut b);
            for (x, y) in a.iter().zip(&b) {
                assert_eq!(x.to_bits(), y.to_bits(), "rows={nrows} d={d}: {x} vs {y}");
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_key_scores_are_bit_identical_to_scalar() {
        if !crate::kernels::path_runs("avx2", crate::kernels::x86::available(), "attention twins") {
            return;
        }
        let mut rng = SmallRng::seed_from_u64(14);
        // Widths that use the 64-key, 8-key and scalar parts; head sizes of the ViT (64) and the LM (128).
        for &(w, d) in &[(1usize, 1usize), (7, 3), (64, 64), (64, 128), (71, 80), (130, 64)] {
            let q: Vec<f32> = (0..d).map(|_| rng.gen_range(-4.0..4.0)).collect();
            let kt: Vec<f32> = (0..d * w).map(|_| rng.gen_range(-4.0..4.0)).collect();
            let (mut a, mut b) = (vec![0f32; w], vec![1f32; w]);
            key_scores_scalar(&q, &kt, w, &mut a);
            crate::kernels::x86::attention::key_scores(&q, &kt, w, &mut b);
            for (x, y) in a.iter().zip(&b) {
                assert_eq!(x.to_bits(), y.to_bits(), "w={w} d={d}: {x} vs {y}");
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_value_mix_is_bit_identical_to_scalar() {
        if !crate::kernels::path_runs("avx2", crate::kernels::x86::available(), "attention twins") {
            return;
        }
        let mut rng = SmallRng::seed_from_u64(8);
        for &(nrows, d) in &[(1usize, 1usize), (3, 7), (64, 128), (17, 72), (5, 200)] {
            let p: Vec<f32> = (0..nrows).map(|_| rng.gen_range(0.0..1.0)).collect();
            let rows: Vec<f32> = (0..nrows * d).map(|_| rng.gen_range(-4.0..4.0)).collect();
            let start: Vec<f32> = (0..d).map(|_| rng.gen_range(-1.0..1.0)).collect();
            let (mut a, mut b) = (start.clone(), start);
            mix_rows_scalar(&p, &rows, d, &mut a);
            crate::kernels::x86::attention::mix_rows(&p, &rows, d, &mut b);
            for (x, y) in a.iter().zip(&b) {
                assert_eq!(x.to_bits(), y.to_bits(), "rows={nrows} d={d}: {x} vs {y}");
            }
        }
    }

    #[test]
    fn tiled_attention_matches_the_definition() {
        let mut rng = SmallRng::seed_from_u64(3);
        // Shapes crossing the tile and query-block edges, GQA groups of 1 and 4, causal and not.
        for &(nq, nk, nh, nkv, d, causal) in &[
            (1usize, 1usize, 2usize, 1usize, 32usize, Some(0usize)),
            (1, 130, 4, 2, 64, Some(129)),
            (37, 37, 4, 1, 32, Some(0)),
            (20, 150, 2, 2, 32, None),
        ] {
            let q: Vec<f32> = (0..nq * nh * d).map(|_| rng.gen_range(-1.0..1.0)).collect();
            let k: Vec<f32> = (0..nk * nkv * d).map(|_| rng.gen_range(-1.0..1.0)).collect();
            let v: Vec<f32> = (0..nk * nkv * d).map(|_| rng.gen_range(-1.0..1.0)).collect();
            let mut out = vec![0f32; nq * nh * d];
            attention(&q, &k, &v, nq, nk, nh, nkv, d, causal, &mut out);
            let want = naive(&q, &k, &v, nq, nk, nh, nkv, d, causal);
            // f32 scores (|s| ≤ √d·1, rounding ~d·2⁻²⁴ relative), f32 exp and sums over ≤ 150 terms of
            // weights in [0, 1] times |v| ≤ 1: errors stay below 1e-5 absolute.
            for (a, b) in out.iter().zip(&want) {
                assert!((*a as f64 - b).abs() < 1e-5, "nq={nq} nk={nk}: {a} vs {b}");
            }
        }
    }
}
