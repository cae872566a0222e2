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
                *q = (v * id).round_ties_even() as i8;
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

/// RMSNorm over rows of `weight.len()`: `x · rsqrt(mean(x²) + eps) · weight`, in f32 like the reference.
pub fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let d = weight.len();
    out.par_chunks_mut(d).zip(x.par_chunks(d)).for_each(|(o, row)| {
        let ms = dot(row, row) / d as f32;
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
        let ms = dot(row, row) / d as f32;
        let scale = 1.0 / (ms + eps).sqrt();
        for (v, w) in row.iter_mut().zip(weight) {
            *v = w * (*v * scale);
        }
    }
}

/// LayerNorm with weight and bias over rows of `weight.len()` (biased variance, like PyTorch).
pub fn layer_norm(x: &[f32], weight: &[f32], bias: &[f32], eps: f32, out: &mut [f32]) {
    let d = weight.len();
    out.par_chunks_mut(d).zip(x.par_chunks(d)).for_each(|(o, row)| {
        let mean = row.iter().sum::<f32>() / d as f32;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / d as f32;
        let inv = 1.0 / (var + eps).sqrt();
        for i in 0..d {
            o[i] = (row[i] - mean) * inv * weight[i] + bias[i];
        }
    });
}

/// Exact (erf) GELU, PyTorch's default.
pub fn gelu_erf(x: &mut [f32]) {
    x.par_iter_mut().for_each(|v| {
        let f = *v as f64;
        *v = (0.5 * f * (1.0 + libm::erf(f / std::f64::consts::SQRT_2))) as f32;
    });
}

/// `gate ← silu(gate) · up` (SwiGLU).
pub fn silu_mul(gate: &mut [f32], up: &[f32]) {
    gate.par_iter_mut().zip(up.par_iter()).for_each(|(g, u)| {
        let s = *g / (1.0 + (-*g).exp());
        *g = s * u;
    });
}

/// Numerically stable softmax in place.
pub fn softmax_in_place(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f32;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    let inv = 1.0 / sum;
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

/// Scaled dot-product attention for `nq` query rows against `nk` cached keys.
///
/// `q`: [nq, n_heads, d]; `k`, `v`: [nk, n_kv_heads, d]; `out`: [nq, n_heads, d]. Query head h uses kv head
/// `h / (n_heads / n_kv_heads)` (GQA). With `causal`, query i (at absolute position `first_pos + i`) sees
/// keys 0..=first_pos + i.
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
    debug_assert_eq!(out.len(), nq * n_heads * d);
    let group = n_heads / n_kv_heads;
    let scale = 1.0 / (d as f32).sqrt();
    out.par_chunks_mut(d).enumerate().for_each(|(idx, o)| {
        let (i, h) = (idx / n_heads, idx % n_heads);
        let kvh = h / group;
        let qv = &q[(i * n_heads + h) * d..(i * n_heads + h + 1) * d];
        let visible = match causal {
            Some(first_pos) => (first_pos + i + 1).min(nk),
            None => nk,
        };
        let mut scores: Vec<f32> = (0..visible)
            .map(|j| dot(qv, &k[(j * n_kv_heads + kvh) * d..(j * n_kv_heads + kvh + 1) * d]) * scale)
            .collect();
        softmax_in_place(&mut scores);
        o.fill(0.0);
        for (j, p) in scores.iter().enumerate() {
            let vv = &v[(j * n_kv_heads + kvh) * d..(j * n_kv_heads + kvh + 1) * d];
            for (ov, x) in o.iter_mut().zip(vv) {
                *ov += p * x;
            }
        }
    });
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
    fn softmax_sums_to_one_and_survives_large_inputs() {
        let mut x = vec![1000.0, 1001.0, 999.0];
        softmax_in_place(&mut x);
        assert!((x.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(x[1] > x[0] && x[0] > x[2]);
    }

    #[test]
    fn rope_at_position_zero_is_identity() {
        let mut x = vec![1.0, 2.0, 3.0, 4.0];
        rope_half_split(&mut x, 4, &[1.0, 1.0], &[0.0, 0.0]);
        assert_eq!(x, [1.0, 2.0, 3.0, 4.0]);
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
}
