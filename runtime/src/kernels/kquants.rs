//! Integer dot products for K-quant weights (Q4_K, Q5_K, Q6_K) against Q8_K activations, and the f16-weight
//! dot against f32 activations: the portable references for the SIMD twins in `x86::kquants`.
//!
//! Activations are quantized per 256-element super-block exactly like ggml's `quantize_row_q8_K_ref`
//! ([`quantize_q8_k_activations`]). Each weight super-block then contributes
//!
//! ```text
//! Q4_K/Q5_K: (d_w · d_x) · isum − (dmin_w · d_x) · msum    isum = Σ_j sc_j Σ_{i∈j} q_i x_i,  msum = Σ_j m_j Σ_{i∈j} x_i
//! Q6_K:      (d_w · d_x) · isum                            isum = Σ_j sc_j Σ_{i∈j} (q_i − 32) x_i
//! ```
//!
//! where `isum`/`msum` are exact `i32` sums (the sub-block sums of `x` come from the block's `bsums`), as in
//! ggml's `ggml_vec_dot_q{4,5,6}_K_q8_K`. The float steps, in this order and each rounded to f32 (Rust never
//! fuses them): `d = d_w · d_x`, `dmin = dmin_w · d_x`, `t = d · (isum as f32) − dmin · (msum as f32)`, then
//! `sum += t` block by block from `sum = 0`. The AVX2 twins compute the same integers and run the same float
//! steps, so every path is bit-identical. (ggml instead keeps eight f32 lanes per block and fuses the
//! multiply-adds; its results differ from ours by float rounding only.)
//!
//! Integer ranges (no overflow): a Q4_K sub-block sum is at most 32·15·127 = 60 960 in magnitude, times a 6-bit
//! scale and 8 sub-blocks: < 3.1·10⁷; Q5_K: 32·31·127·63·8 < 6.4·10⁷; Q6_K: 16·32·127·127·16 < 1.4·10⁸;
//! msum: 16·127·63·16 < 2.1·10⁶ — all far below 2³¹.

use crate::quant::{f16_bits_to_f32, f16_to_f32_vectorizable};
use crate::QK_K;

/// Bytes of one `block_q4_K`, `block_q5_K`, `block_q6_K`.
pub const Q4_K_BYTES: usize = 144;
pub const Q5_K_BYTES: usize = 176;
pub const Q6_K_BYTES: usize = 210;

/// One activation super-block quantized to Q8_K (`block_q8_K`): `x ≈ d · q`, with the sums of each
/// 16-element group of `q` precomputed for the mins term.
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C)]
pub struct Q8KBlock {
    pub d: f32,
    pub qs: [i8; QK_K],
    pub bsums: [i16; QK_K / 16],
}

/// ggml's `nearest_int`: adding 1.5·2²³ leaves the integer rounded half-to-even in the low mantissa bits
/// (exact for |x| < 2²²; Q8_K only feeds it values of magnitude ≤ 127).
#[inline]
fn nearest_int(x: f32) -> i32 {
    let val = x + 12_582_912.0;
    (val.to_bits() as i32 & 0x007f_ffff) - 0x0040_0000
}

/// Quantize a row of activations (length a multiple of 256) to Q8_K blocks exactly as ggml's
/// `quantize_row_q8_K_ref`: `max` is the element of largest magnitude (the first one on ties, sign kept),
/// `iscale = −127/max`, `q = min(127, nearest_int(iscale · x))`, `d = 1/iscale` kept as f32 (so `d` has the
/// opposite sign of `max`), and `bsums[j] = Σ q[16j..16j+16]`. An all-zero block gets `d = 0`, `q = 0`.
pub fn quantize_q8_k_activations(row: &[f32]) -> Vec<Q8KBlock> {
    assert!(row.len().is_multiple_of(QK_K), "Q8_K activations: {} is not a multiple of {QK_K}", row.len());
    row.chunks_exact(QK_K)
        .map(|x| {
            let mut block = Q8KBlock { d: 0.0, qs: [0; QK_K], bsums: [0; QK_K / 16] };
            let (mut max, mut amax) = (0f32, 0f32);
            for &v in x {
                if v.abs() > amax {
                    amax = v.abs();
                    max = v;
                }
            }
            if amax == 0.0 {
                return block;
            }
            let iscale = -127.0 / max;
            for (q, &v) in block.qs.iter_mut().zip(x) {
                *q = nearest_int(iscale * v).min(127) as i8;
            }
            for (s, q) in block.bsums.iter_mut().zip(block.qs.chunks_exact(16)) {
                *s = q.iter().map(|&v| v as i16).sum();
            }
            block.d = 1.0 / iscale;
            block
        })
        .collect()
}

#[inline]
pub(crate) fn f16_at(bytes: &[u8], at: usize) -> f32 {
    f16_bits_to_f32(u16::from_le_bytes([bytes[at], bytes[at + 1]]))
}

/// The eight 6-bit scales and mins of a Q4_K/Q5_K super-block (ggml's `get_scale_min_k4` for all j).
#[inline]
pub(crate) fn scales_mins_k4(s: &[u8]) -> ([u8; 8], [u8; 8]) {
    let (mut sc, mut m) = ([0u8; 8], [0u8; 8]);
    for j in 0..4 {
        sc[j] = s[j] & 63;
        m[j] = s[j + 4] & 63;
        sc[j + 4] = (s[j + 8] & 0x0F) | ((s[j] >> 6) << 4);
        m[j + 4] = (s[j + 8] >> 4) | ((s[j + 4] >> 6) << 4);
    }
    (sc, m)
}

/// `msum = Σ_j m_j · (bsums[2j] + bsums[2j+1])`: the mins term's integer part.
#[inline]
pub(crate) fn mins_sum(m: &[u8; 8], bsums: &[i16; QK_K / 16]) -> i32 {
    m.iter().zip(bsums.chunks_exact(2)).map(|(&m, b)| m as i32 * (b[0] as i32 + b[1] as i32)).sum()
}

/// One scale+min super-block's float step (the documented order).
#[inline]
pub(crate) fn scale_min_block(d_w: f32, dmin_w: f32, d_x: f32, isum: i32, msum: i32) -> f32 {
    let d = d_w * d_x;
    let dmin = dmin_w * d_x;
    d * isum as f32 - dmin * msum as f32
}

/// Panics (naming the kernel) unless the weight row holds exactly one block per activation block.
pub(crate) fn check_lengths(what: &str, w: &[u8], bytes: usize, x: &[Q8KBlock]) {
    assert!(
        w.len() == x.len() * bytes,
        "{what}: weight row of {} bytes against {} Q8_K blocks ({} bytes each)",
        w.len(),
        x.len(),
        bytes
    );
}

/// Q4_K weight row · Q8_K activation row. Bytes per block: `d`, `dmin` (f16), 12 bytes of packed scales/mins,
/// 128 bytes of nibbles (byte `l` of chunk `c` holds element `64c + l` low and `64c + 32 + l` high).
pub fn dot_q4_k(w: &[u8], x: &[Q8KBlock]) -> f32 {
    check_lengths("Q4_K dot", w, Q4_K_BYTES, x);
    let mut sum = 0f32;
    for (wb, xb) in w.chunks_exact(Q4_K_BYTES).zip(x) {
        let (sc, m) = scales_mins_k4(&wb[4..16]);
        let mut isum = 0i32;
        for (c, (q, y)) in wb[16..].chunks_exact(32).zip(xb.qs.chunks_exact(64)).enumerate() {
            let (mut lo, mut hi) = (0i32, 0i32);
            for l in 0..32 {
                lo += (q[l] & 0x0F) as i32 * y[l] as i32;
                hi += (q[l] >> 4) as i32 * y[l + 32] as i32;
            }
            isum += sc[2 * c] as i32 * lo + sc[2 * c + 1] as i32 * hi;
        }
        sum += scale_min_block(f16_at(wb, 0), f16_at(wb, 2), xb.d, isum, mins_sum(&m, &xb.bsums));
    }
    sum
}

/// Q5_K weight row · Q8_K activation row. Like Q4_K, with 32 bytes of fifth bits before the nibbles: bit `2c`
/// of `qh[l]` is the fifth bit of element `64c + l`, bit `2c + 1` that of element `64c + 32 + l`.
pub fn dot_q5_k(w: &[u8], x: &[Q8KBlock]) -> f32 {
    check_lengths("Q5_K dot", w, Q5_K_BYTES, x);
    let mut sum = 0f32;
    for (wb, xb) in w.chunks_exact(Q5_K_BYTES).zip(x) {
        let (sc, m) = scales_mins_k4(&wb[4..16]);
        let qh = &wb[16..48];
        let mut isum = 0i32;
        for (c, (q, y)) in wb[48..].chunks_exact(32).zip(xb.qs.chunks_exact(64)).enumerate() {
            let (mut lo, mut hi) = (0i32, 0i32);
            for l in 0..32 {
                let h_lo = ((qh[l] >> (2 * c)) & 1) << 4;
                let h_hi = ((qh[l] >> (2 * c + 1)) & 1) << 4;
                lo += ((q[l] & 0x0F) | h_lo) as i32 * y[l] as i32;
                hi += ((q[l] >> 4) | h_hi) as i32 * y[l + 32] as i32;
            }
            isum += sc[2 * c] as i32 * lo + sc[2 * c + 1] as i32 * hi;
        }
        sum += scale_min_block(f16_at(wb, 0), f16_at(wb, 2), xb.d, isum, mins_sum(&m, &xb.bsums));
    }
    sum
}

/// Q6_K weight row · Q8_K activation row. Bytes per block: 128 of low nibbles, 64 of high bit pairs, 16 signed
/// 8-bit scales (one per 16 elements), `d` (f16) last. In half `h`, element `128h + 32k + l` (k = 0..4,
/// l = 0..32) has low nibble `ql[64h + l + 32(k & 1)] >> 4(k >> 1)` and high bits `qh[32h + l] >> 2k`.
pub fn dot_q6_k(w: &[u8], x: &[Q8KBlock]) -> f32 {
    check_lengths("Q6_K dot", w, Q6_K_BYTES, x);
    let mut sum = 0f32;
    for (wb, xb) in w.chunks_exact(Q6_K_BYTES).zip(x) {
        let (ql, qh, scales) = (&wb[..128], &wb[128..192], &wb[192..208]);
        let mut isum = 0i32;
        for h in 0..2 {
            let (ql, qh, y) = (&ql[64 * h..64 * h + 64], &qh[32 * h..32 * h + 32], &xb.qs[128 * h..128 * h + 128]);
            // Quarter k, sixteen g = 2k + l/16 covers elements 16g..16g+16 of this half, with scale scales[8h + g].
            for k in 0..4 {
                let (low, shift, y) = (&ql[32 * (k & 1)..32 * (k & 1) + 32], 4 * (k >> 1), &y[32 * k..32 * k + 32]);
                for half in 0..2 {
                    let mut s = 0i32;
                    for l in 16 * half..16 * half + 16 {
                        let q = ((low[l] >> shift) & 0x0F) | (((qh[l] >> (2 * k)) & 3) << 4);
                        s += (q as i32 - 32) * y[l] as i32;
                    }
                    isum += scales[8 * h + 2 * k + half] as i8 as i32 * s;
                }
            }
        }
        let d = f16_at(wb, 208) * xb.d;
        sum += d * isum as f32;
    }
    sum
}

/// f16 weight row (little-endian bytes) · f32 activations, activations kept in f32 (ggml rounds them to f16
/// first). Eight partial sums like [`super::scalar::dot`]: lane `l` adds `w[8i + l] · x[8i + l]` in order,
/// then `((a0 + a4) + (a1 + a5)) + ((a2 + a6) + (a3 + a7))`, then the tail in order.
pub fn dot_f16(w: &[u8], x: &[f32]) -> f32 {
    assert_eq!(w.len(), 2 * x.len(), "f16 dot: {} weight bytes against {} activations", w.len(), x.len());
    let mut acc = [0f32; 8];
    let chunks = x.len() / 8;
    for (wc, xc) in w.chunks_exact(16).zip(x.chunks_exact(8)) {
        // One 16-byte load instead of byte-wise assembly (which the vectorizer handles poorly).
        let h: [u16; 8] = bytemuck::pod_read_unaligned(wc);
        for l in 0..8 {
            acc[l] += f16_to_f32_vectorizable(u16::from_le(h[l])) * xc[l];
        }
    }
    let mut tail = 0f32;
    for (wb, xv) in w[16 * chunks..].chunks_exact(2).zip(&x[8 * chunks..]) {
        tail += f16_at(wb, 0) * xv;
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

#[cfg(test)]
pub(crate) mod tests {
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::quant;
    use crate::GgmlType;

    /// Random values in ±3 with 2% outliers ×40; with `zero_block`, one 256-block is all zero.
    pub(crate) fn random_row(rng: &mut SmallRng, n: usize, zero_block: bool) -> Vec<f32> {
        let mut v: Vec<f32> =
            (0..n).map(|_| rng.gen_range(-3.0f32..3.0) * if rng.gen_bool(0.02) { 40.0 } else { 1.0 }).collect();
        if zero_block {
            let b = rng.gen_range(0..n / QK_K);
            v[b * QK_K..(b + 1) * QK_K].fill(0.0);
        }
        v
    }

    pub(crate) fn quantize_row(ty: GgmlType, v: &[f32]) -> Vec<u8> {
        let mut w = vec![0u8; ty.row_size(v.len()).unwrap()];
        quant::quantize(ty, v, &mut w).unwrap();
        w
    }

    pub(crate) fn kdot(ty: GgmlType, w: &[u8], x: &[Q8KBlock]) -> f32 {
        match ty {
            GgmlType::Q4K => dot_q4_k(w, x),
            GgmlType::Q5K => dot_q5_k(w, x),
            _ => dot_q6_k(w, x),
        }
    }

    /// The dequantized Q8_K activations `q · d`, exact in f64 (8-bit × 24-bit products).
    fn q8k_values(x: &[Q8KBlock]) -> Vec<f64> {
        x.iter().flat_map(|b| b.qs.iter().map(move |&q| q as f64 * b.d as f64)).collect()
    }

    /// Per weight, the magnitudes of the two parts the kernels multiply separately: |d·sc·q| and |dmin·m|
    /// (Q6_K: |d·sc·(q − 32)| and 0), unpacked naively from the bytes (independent of the kernels' unpacking).
    fn part_magnitudes(ty: GgmlType, w: &[u8]) -> Vec<(f64, f64)> {
        let mut out = Vec::new();
        match ty {
            GgmlType::Q4K | GgmlType::Q5K => {
                let bytes = if ty == GgmlType::Q4K { 144 } else { 176 };
                for b in w.chunks_exact(bytes) {
                    let (d, dmin, s) = (f16_at(b, 0) as f64, f16_at(b, 2) as f64, &b[4..16]);
                    for i in 0..QK_K {
                        let j = i / 32;
                        let (sc, m) = if j < 4 {
                            (s[j] & 63, s[j + 4] & 63)
                        } else {
                            ((s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4), (s[j + 4] >> 4) | ((s[j] >> 6) << 4))
                        };
                        let (c, l, high) = (i / 64, i % 32, (i % 64) >= 32);
                        let qs = if ty == GgmlType::Q4K { &b[16..] } else { &b[48..] };
                        let mut q = if high { qs[32 * c + l] >> 4 } else { qs[32 * c + l] & 0xF } as i32;
                        if ty == GgmlType::Q5K && b[16 + l] & (1 << (2 * c + high as usize)) != 0 {
                            q += 16;
                        }
                        out.push(((d * sc as f64 * q as f64).abs(), dmin * m as f64));
                    }
                }
            }
            _ => {
                let mut y = vec![0f32; QK_K];
                for b in w.chunks_exact(210) {
                    // Q6_K's dequantization (d·sc)·q rounds at most once (relative 2⁻²⁴), so the exact magnitude
                    // is at most |ỹ|·(1 + 2⁻²³).
                    quant::dequantize(ty, b, &mut y).unwrap();
                    out.extend(y.iter().map(|&v| (v.abs() as f64 * (1.0 + 2f64.powi(-23)), 0.0)));
                }
            }
        }
        out
    }

    #[test]
    fn q8_k_hand_computed_block() {
        let mut row = vec![0f32; QK_K];
        row[0] = 2.0;
        row[1] = -1.0;
        row[2] = 0.5;
        row[17] = -2.0; // same magnitude as the first max: the first one wins, sign kept
        let b = &quantize_q8_k_activations(&row)[0];
        // max = 2 → iscale = −63.5: 2 → −127, −1 → 63.5 → 64 (ties to even), 0.5 → −31.75 → −32, −2 → 127.
        assert_eq!(&b.qs[..3], &[-127, 64, -32]);
        assert_eq!(b.qs[17], 127);
        assert!(b.qs[3..17].iter().chain(&b.qs[18..]).all(|&q| q == 0));
        assert_eq!(b.bsums[0], -127 + 64 - 32);
        assert_eq!(b.bsums[1], 127);
        assert!(b.bsums[2..].iter().all(|&s| s == 0));
        assert_eq!(b.d.to_bits(), (1.0f32 / -63.5f32).to_bits());
        assert!(b.d < 0.0);

        let zero = &quantize_q8_k_activations(&[0f32; QK_K])[0];
        assert_eq!(zero.d, 0.0);
        assert!(zero.qs.iter().all(|&q| q == 0) && zero.bsums.iter().all(|&s| s == 0));
    }

    /// A line-by-line transcription of ggml's `quantize_row_q8_K_ref` (C loops and casts).
    #[allow(clippy::needless_range_loop)]
    fn ggml_quantize_row_q8_k_ref(x: &[f32]) -> Vec<(f32, Vec<i8>, Vec<i16>)> {
        let mut out = Vec::new();
        for i in 0..x.len() / QK_K {
            let x = &x[i * QK_K..];
            let mut max = 0f32;
            let mut amax = 0f32;
            for j in 0..QK_K {
                let ax = x[j].abs();
                if ax > amax {
                    amax = ax;
                    max = x[j];
                }
            }
            if amax == 0.0 {
                out.push((0.0, vec![0; QK_K], vec![0; QK_K / 16]));
                continue;
            }
            let iscale = -127.0f32 / max;
            let mut qs = vec![0i8; QK_K];
            for j in 0..QK_K {
                let fval = iscale * x[j];
                let val = fval + 12582912.0f32;
                let v = (val.to_bits() as i32 & 0x007fffff) - 0x00400000;
                qs[j] = std::cmp::min(127, v) as i8;
            }
            let mut bsums = vec![0i16; QK_K / 16];
            for j in 0..QK_K / 16 {
                let mut sum = 0i32;
                for ii in 0..16 {
                    sum += qs[j * 16 + ii] as i32;
                }
                bsums[j] = sum as i16;
            }
            out.push((1.0 / iscale, qs, bsums));
        }
        out
    }

    #[test]
    fn q8_k_matches_ggml_reference_formula() {
        let mut rng = SmallRng::seed_from_u64(3);
        for &n in &[256usize, 512, 2048, 6144] {
            for _ in 0..10 {
                let mut row = random_row(&mut rng, n, true);
                // Ties at ±0.5 after scaling and a negative maximum somewhere.
                row[1] = -1e3;
                row[2] = 1e3 * 0.5 / 127.0;
                let got = quantize_q8_k_activations(&row);
                let want = ggml_quantize_row_q8_k_ref(&row);
                assert_eq!(got.len(), want.len());
                for (g, (d, qs, bsums)) in got.iter().zip(&want) {
                    assert_eq!(g.d.to_bits(), d.to_bits());
                    assert_eq!(&g.qs[..], &qs[..]);
                    assert_eq!(&g.bsums[..], &bsums[..]);
                }
            }
        }
    }

    /// The kernel against an f64 dot of the dequantized weights and dequantized activations.
    ///
    /// Error bound (u = 2⁻²⁴, γₖ = ku/(1 − ku)). Let E be the exact value of the block formula, D_b and M_b
    /// the exact scale and min terms of block b, and S' = Σᵢ (|d·sc·qᵢ| + |dmin·mᵢ|)·|xᵢ| ≥ Σ_b (|D_b| + |M_b|).
    /// - Kernel: `d_w·d_x`, `isum as f32`, their product each round once (same for the min term), the
    ///   subtraction once: |t_b − (D_b − M_b)| ≤ γ₄(|D_b| + |M_b|); the running sum of nb terms adds
    ///   γ_{nb−1} Σ|t_b|. So |K − E| ≤ (γ₄ + γ_{nb−1}(1 + γ₄))·S' ≤ γ_{nb+4}·S'.
    /// - Reference: each dequantized weight is `d·sc·q − dmin·m` rounded once to f32 (the products are exact:
    ///   ≤ 22 significant bits; Q6_K's `(d·sc)·q` also rounds once), so |w̃ᵢ − wᵢ| ≤ u(|d·sc·qᵢ| + |dmin·mᵢ|);
    ///   activations `q·d` are exact in f64; the f64 products and n-term sum add ≤ (n + 1)·2⁻⁵³·S'(1 + u).
    ///
    /// Hence |K − R| ≤ (γ_{nb+4} + u + (n + 1)·2⁻⁵³·1.01)·S'.
    #[test]
    fn k_quant_dots_match_f64_dot_of_dequantized_values() {
        let mut rng = SmallRng::seed_from_u64(11);
        let u = 2f64.powi(-24);
        for ty in [GgmlType::Q4K, GgmlType::Q5K, GgmlType::Q6K] {
            for &n in &[256usize, 512, 2048, 6144] {
                for it in 0..8 {
                    let wv = random_row(&mut rng, n, it % 2 == 0);
                    let xv = random_row(&mut rng, n, it % 3 == 0);
                    let w = quantize_row(ty, &wv);
                    let xq = quantize_q8_k_activations(&xv);
                    let mut wd = vec![0f32; n];
                    quant::dequantize(ty, &w, &mut wd).unwrap();
                    let xd = q8k_values(&xq);
                    let reference: f64 = wd.iter().zip(&xd).map(|(&a, &b)| a as f64 * b).sum();
                    let mag: f64 = part_magnitudes(ty, &w).iter().zip(&xd).map(|(&(a, m), &x)| (a + m) * x.abs()).sum();
                    let nb = (n / QK_K) as f64;
                    let gamma = (nb + 4.0) * u / (1.0 - (nb + 4.0) * u);
                    let bound = (gamma + u + (n as f64 + 1.0) * 2f64.powi(-53) * 1.01) * mag;
                    let got = kdot(ty, &w, &xq) as f64;
                    assert!(
                        (got - reference).abs() <= bound,
                        "{ty} n={n}: kernel {got} vs f64 {reference} (diff {}, bound {bound})",
                        (got - reference).abs()
                    );
                }
            }
        }
    }

    #[test]
    fn all_zero_weights_or_activations_give_zero() {
        let mut rng = SmallRng::seed_from_u64(5);
        let n = 512;
        let xq = quantize_q8_k_activations(&random_row(&mut rng, n, false));
        let zq = quantize_q8_k_activations(&vec![0f32; n]);
        for ty in [GgmlType::Q4K, GgmlType::Q5K, GgmlType::Q6K] {
            let zero_w = quantize_row(ty, &vec![0f32; n]);
            let w = quantize_row(ty, &random_row(&mut rng, n, false));
            assert_eq!(kdot(ty, &zero_w, &xq), 0.0, "{ty}");
            assert_eq!(kdot(ty, &w, &zq), 0.0, "{ty}");
        }
    }

    #[test]
    fn branch_free_f16_conversion_is_exact_for_every_input() {
        for h in 0..=u16::MAX {
            let (got, want) = (f16_to_f32_vectorizable(h), f16_bits_to_f32(h));
            assert_eq!(got.to_bits(), want.to_bits(), "f16 bits {h:#06x}: {got} vs {want}");
        }
    }

    #[test]
    fn f16_dot_matches_f64_dot() {
        let mut rng = SmallRng::seed_from_u64(9);
        for &n in &[1usize, 7, 8, 9, 100, 2048, 6145] {
            let wv = random_row(&mut rng, n.next_multiple_of(QK_K), false);
            let x: Vec<f32> = random_row(&mut rng, n.next_multiple_of(QK_K), false)[..n].to_vec();
            let w: Vec<u8> = wv[..n].iter().flat_map(|&v| quant::f32_to_f16_bits(v).to_le_bytes()).collect();
            let exact: f64 = w.chunks_exact(2).zip(&x).map(|(b, &xv)| f16_at(b, 0) as f64 * xv as f64).sum::<f64>();
            let mag: f64 = w.chunks_exact(2).zip(&x).map(|(b, &xv)| (f16_at(b, 0) as f64 * xv as f64).abs()).sum();
            // f16·f32 products round once (u·|p|); each lane sums ≤ n/8 + 1 terms and the final combination
            // adds 4 more levels: |error| ≤ γ_{n/8+5}·Σ|p|, loosely n·u·Σ|p| for n ≥ 8 (plus 6u for tiny n).
            let bound = (n as f64 + 6.0) * 2f64.powi(-24) * mag;
            let got = dot_f16(&w, &x) as f64;
            assert!((got - exact).abs() <= bound, "n={n}: {got} vs {exact} (bound {bound})");
        }
    }
}
