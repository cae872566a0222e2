//! AVX2 integer tiles for Q8_0/Q4_0 weights × Q8_0 activations: several weight rows against several
//! activation rows per pass, so each unpacked weight block and each activation block is reused from
//! registers instead of being reloaded for every dot product.
//!
//! Batches interleave 8 weight rows so each lane of an accumulator is one row ([`rows8`], and the K-quant
//! [`rows8_q4k`], [`rows8_q6k`]); every output of those is bit-identical to the scalar dot of its (row,
//! column) pair: a block's integer sum is exact whatever the summation order, and each lane adds
//! `isum as f32 * (d_w * d_x)` block after block, exactly as [`crate::kernels::scalar::dot_q8_0`] does.
//! Single-token decoding streams one row at a time, eight blocks per step ([`row1`]), with the same block
//! products added in another order (see there).

use std::arch::x86_64::*;

use super::Step;
use crate::kernels::interleaved::{Q4_0_X8_BLOCK_BYTES, Q4_K_X8_BLOCK_BYTES, Q6_K_X8_BLOCK_BYTES, Q8_0_X8_BLOCK_BYTES};
use crate::kernels::kquants::{scales_mins_k4, Q8KBlock, Q4_K_BYTES, Q6_K_BYTES};
use crate::kernels::scalar::Q8Block;

/// The weight formats these tiles read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntWeights {
    /// 34-byte blocks: fp16 scale, 32 signed bytes.
    Q8_0,
    /// 18-byte blocks: fp16 scale, 16 bytes of nibbles (low = elements 0..16, high = 16..32), offset 8.
    Q4_0,
}

impl IntWeights {
    pub fn block_bytes(self) -> usize {
        match self {
            IntWeights::Q8_0 => 34,
            IntWeights::Q4_0 => 18,
        }
    }
}

/// `out[c * 8 + r] = dot(w[r], x column c)` for 8 weight rows and `ncols` activation rows of `kb` blocks.
///
/// The 8 rows are interleaved on the fly, a few blocks at a time, so that one vector holds 4 consecutive
/// weights of each row: `maddubs` against 4 activation bytes broadcast to every lane then leaves each
/// row's partial sum in its own lane, and a block's 8 steps add up to the 8 rows' exact integer sums with
/// no horizontal reduction. Each lane then adds `isum · (d_w · d_x)` block by block, like the scalar dot.
///
/// With a VNNI `step` (the CPU must have it, see [`Step`]) the integer step is `dpbusd` instead of `maddubs` +
/// `madd`: the same exact sums, so the same bits.
pub fn rows8(ty: IntWeights, w: [&[u8]; 8], x: &[Q8Block], xsum: &[i32], kb: usize, out: &mut [f32], step: Step) {
    assert!(step.available(), "rows8: the CPU lacks {step:?}");
    let ncols = out.len() / 8;
    assert!(out.len() == ncols * 8 && x.len() >= ncols * kb && xsum.len() >= ncols * kb);
    for r in &w {
        assert!(r.len() >= kb * ty.block_bytes());
    }
    column_passes(out, |c0, cn, o| {
        // SAFETY: AVX2/F16C (and VNNI when used) were checked above; rows hold kb blocks, x and xsum
        // ncols · kb entries.
        unsafe {
            match (ty, step) {
                (IntWeights::Q8_0, Step::Avx2) => rows8_avx2::<false>(w, x, xsum, kb, c0, cn, o),
                (IntWeights::Q4_0, Step::Avx2) => rows8_avx2::<true>(w, x, xsum, kb, c0, cn, o),
                (IntWeights::Q8_0, Step::Avx512Vnni) => rows8_vnni::<false>(w, x, xsum, kb, c0, cn, o),
                (IntWeights::Q4_0, Step::Avx512Vnni) => rows8_vnni::<true>(w, x, xsum, kb, c0, cn, o),
                (IntWeights::Q8_0, Step::AvxVnni) => rows8_avxvnni::<false>(w, x, xsum, kb, c0, cn, o),
                (IntWeights::Q4_0, Step::AvxVnni) => rows8_avxvnni::<true>(w, x, xsum, kb, c0, cn, o),
            }
        }
    });
}

/// [`rows8`] for Q4_0 or Q8_0 rows repacked 8 at a time (`group`: one group of `kb` blocks in the layout
/// of [`crate::kernels::interleaved`]): the same products without the unpacking and transposing, so the
/// same bits.
pub fn packed8(ty: IntWeights, group: &[u8], x: &[Q8Block], xsum: &[i32], kb: usize, out: &mut [f32], step: Step) {
    assert!(step.available(), "packed8: the CPU lacks {step:?}");
    let ncols = out.len() / 8;
    assert!(out.len() == ncols * 8 && x.len() >= ncols * kb && xsum.len() >= ncols * kb);
    assert_eq!(group.len(), kb * 8 * ty.block_bytes(), "packed8: one group of {kb} blocks");
    column_passes(out, |c0, cn, o| {
        // SAFETY: AVX2/F16C (and VNNI when used) were checked above; the group holds kb blocks, x and xsum
        // ncols · kb entries.
        unsafe {
            match (ty, step) {
                (IntWeights::Q4_0, Step::Avx2) => packed8_avx2::<true>(group, x, xsum, kb, c0, cn, o),
                (IntWeights::Q8_0, Step::Avx2) => packed8_avx2::<false>(group, x, xsum, kb, c0, cn, o),
                (IntWeights::Q4_0, Step::Avx512Vnni) => packed8_vnni::<true>(group, x, xsum, kb, c0, cn, o),
                (IntWeights::Q8_0, Step::Avx512Vnni) => packed8_vnni::<false>(group, x, xsum, kb, c0, cn, o),
                (IntWeights::Q4_0, Step::AvxVnni) => packed8_avxvnni::<true>(group, x, xsum, kb, c0, cn, o),
                (IntWeights::Q8_0, Step::AvxVnni) => packed8_avxvnni::<false>(group, x, xsum, kb, c0, cn, o),
            }
        }
    });
}

/// Columns per pass of the 8-row tiles (their accumulators live on the stack).
const MAX_COLS: usize = 64;

/// Run `pass(c0, cn, out[c0 · 8 .. (c0 + cn) · 8])` over the columns of `out` (8 rows each), at most
/// [`MAX_COLS`] at a time.
fn column_passes(out: &mut [f32], mut pass: impl FnMut(usize, usize, &mut [f32])) {
    for (p, o) in out.chunks_mut(MAX_COLS * 8).enumerate() {
        pass(p * MAX_COLS, o.len() / 8, o);
    }
}

/// Transpose 8 rows of 8 four-byte groups: `t[g]` lane `r` = group `g` of row `r`.
#[inline]
#[target_feature(enable = "avx2")]
fn transpose8(r: [__m256i; 8]) -> [__m256i; 8] {
    let t0 = _mm256_unpacklo_epi32(r[0], r[1]);
    let t1 = _mm256_unpackhi_epi32(r[0], r[1]);
    let t2 = _mm256_unpacklo_epi32(r[2], r[3]);
    let t3 = _mm256_unpackhi_epi32(r[2], r[3]);
    let t4 = _mm256_unpacklo_epi32(r[4], r[5]);
    let t5 = _mm256_unpackhi_epi32(r[4], r[5]);
    let t6 = _mm256_unpacklo_epi32(r[6], r[7]);
    let t7 = _mm256_unpackhi_epi32(r[6], r[7]);
    let u0 = _mm256_unpacklo_epi64(t0, t2);
    let u1 = _mm256_unpackhi_epi64(t0, t2);
    let u2 = _mm256_unpacklo_epi64(t1, t3);
    let u3 = _mm256_unpackhi_epi64(t1, t3);
    let u4 = _mm256_unpacklo_epi64(t4, t6);
    let u5 = _mm256_unpackhi_epi64(t4, t6);
    let u6 = _mm256_unpacklo_epi64(t5, t7);
    let u7 = _mm256_unpackhi_epi64(t5, t7);
    [
        _mm256_permute2x128_si256::<0x20>(u0, u4),
        _mm256_permute2x128_si256::<0x20>(u1, u5),
        _mm256_permute2x128_si256::<0x20>(u2, u6),
        _mm256_permute2x128_si256::<0x20>(u3, u7),
        _mm256_permute2x128_si256::<0x31>(u0, u4),
        _mm256_permute2x128_si256::<0x31>(u1, u5),
        _mm256_permute2x128_si256::<0x31>(u2, u6),
        _mm256_permute2x128_si256::<0x31>(u3, u7),
    ]
}

/// The exact integer sums of one interleaved block against two columns with AVX2 `maddubs` + `madd`.
macro_rules! isum_maddubs {
    ($dp:ident, $q4:expr, $mag:expr, $sgn:expr, $qa:expr, $qb:expr, $sa:expr, $sb:expr, $ones:expr) => {{
        let (qa, qb, ones) = ($qa, $qb, $ones);
        if $q4 {
            // Nibble · byte pairs are at most 2·15·127 = 3810: eight of them fit an i16 exactly.
            let (mut ta, mut tb) = (_mm256_setzero_si256(), _mm256_setzero_si256());
            for (g, m) in $mag.iter().enumerate() {
                // SAFETY: group g is 4 of the block's 32 bytes.
                let (ya, yb) = unsafe {
                    (_mm256_set1_epi32(qa.add(g).read_unaligned()), _mm256_set1_epi32(qb.add(g).read_unaligned()))
                };
                ta = _mm256_add_epi16(ta, _mm256_maddubs_epi16(*m, ya));
                tb = _mm256_add_epi16(tb, _mm256_maddubs_epi16(*m, yb));
            }
            (
                _mm256_sub_epi32(_mm256_madd_epi16(ta, ones), _mm256_set1_epi32(8 * $sa)),
                _mm256_sub_epi32(_mm256_madd_epi16(tb, ones), _mm256_set1_epi32(8 * $sb)),
            )
        } else {
            let (mut ta, mut tb) = (_mm256_setzero_si256(), _mm256_setzero_si256());
            for g in 0..8 {
                // SAFETY: group g is 4 of the block's 32 bytes.
                let (ya, yb) = unsafe {
                    (_mm256_set1_epi32(qa.add(g).read_unaligned()), _mm256_set1_epi32(qb.add(g).read_unaligned()))
                };
                let (m, sg) = ($mag[g], $sgn[g]);
                let pa = _mm256_maddubs_epi16(m, _mm256_sign_epi8(ya, sg));
                let pb = _mm256_maddubs_epi16(m, _mm256_sign_epi8(yb, sg));
                ta = _mm256_add_epi32(ta, _mm256_madd_epi16(pa, ones));
                tb = _mm256_add_epi32(tb, _mm256_madd_epi16(pb, ones));
            }
            (ta, tb)
        }
    }};
}

/// The same sums with VNNI's `dpbusd` (u8 × i8 products summed by fours straight into i32: no i16 step),
/// two partial accumulators per column to shorten the dependency chains.
macro_rules! isum_dpbusd {
    ($dp:ident, $q4:expr, $mag:expr, $sgn:expr, $qa:expr, $qb:expr, $sa:expr, $sb:expr, $ones:expr) => {{
        let (qa, qb, _) = ($qa, $qb, $ones);
        let z = _mm256_setzero_si256();
        let (mut a0, mut a1, mut b0, mut b1) = (z, z, z, z);
        for g in (0..8).step_by(2) {
            // SAFETY: groups g and g + 1 are 8 of the block's 32 bytes.
            let (ya0, ya1, yb0, yb1) = unsafe {
                (
                    _mm256_set1_epi32(qa.add(g).read_unaligned()),
                    _mm256_set1_epi32(qa.add(g + 1).read_unaligned()),
                    _mm256_set1_epi32(qb.add(g).read_unaligned()),
                    _mm256_set1_epi32(qb.add(g + 1).read_unaligned()),
                )
            };
            // Unsigned weights either way: Q4_0's nibbles, or Q8_0's w + 128 (see rows8_kernel).
            let (m0, m1) = ($mag[g], $mag[g + 1]);
            a0 = $dp(a0, m0, ya0);
            a1 = $dp(a1, m1, ya1);
            b0 = $dp(b0, m0, yb0);
            b1 = $dp(b1, m1, yb1);
        }
        let _ = &$sgn;
        let (ta, tb) = (_mm256_add_epi32(a0, a1), _mm256_add_epi32(b0, b1));
        // The offset the unsigned weights carry: 8 per Q4_0 nibble, 128 per flipped Q8_0 byte.
        let offset = if $q4 { 8 } else { 128 };
        (_mm256_sub_epi32(ta, _mm256_set1_epi32(offset * $sa)), _mm256_sub_epi32(tb, _mm256_set1_epi32(offset * $sb)))
    }};
}

/// Unpack and interleave block `$b` of 8 rows of Q4_0 (`$q4`) or Q8_0 weights into `$mag` (and `$sgn`,
/// `$dw`) for [`rows8_kernel`]; with `$flip_`, Q8_0 bytes become unsigned (`w + 128`) for `dpbusd`.
macro_rules! fill_rows {
    ($w:expr, $b:expr, $q4:expr, $flip_:expr, $mag:expr, $sgn:expr, $dw:expr) => {{
        let w: [&[u8]; 8] = $w;
        let bb = if $q4 { 18 } else { 34 };
        let (o0, o1) = ($b * bb, $b * bb + bb);
        let blk: [&[u8]; 8] = [
            &w[0][o0..o1],
            &w[1][o0..o1],
            &w[2][o0..o1],
            &w[3][o0..o1],
            &w[4][o0..o1],
            &w[5][o0..o1],
            &w[6][o0..o1],
            &w[7][o0..o1],
        ];
        // SAFETY: each slice is one whole block.
        let u = unsafe {
            [
                unpack::<{ $q4 }>(blk[0].as_ptr()),
                unpack::<{ $q4 }>(blk[1].as_ptr()),
                unpack::<{ $q4 }>(blk[2].as_ptr()),
                unpack::<{ $q4 }>(blk[3].as_ptr()),
                unpack::<{ $q4 }>(blk[4].as_ptr()),
                unpack::<{ $q4 }>(blk[5].as_ptr()),
                unpack::<{ $q4 }>(blk[6].as_ptr()),
                unpack::<{ $q4 }>(blk[7].as_ptr()),
            ]
        };
        $mag = transpose8([u[0].mag, u[1].mag, u[2].mag, u[3].mag, u[4].mag, u[5].mag, u[6].mag, u[7].mag]);
        if !$q4 {
            $sgn = transpose8([u[0].sign, u[1].sign, u[2].sign, u[3].sign, u[4].sign, u[5].sign, u[6].sign, u[7].sign]);
            if $flip_ {
                // dpbusd takes unsigned weights: w + 128 (the sign bit flipped), once per chunk
                // rather than a sign operation per column; 128 · Σx is taken back per column.
                for (m, v) in $mag.iter_mut().zip(&$sgn) {
                    *m = _mm256_xor_si256(*v, _mm256_set1_epi8(-128));
                }
            }
        }
        let h = [
            scale_bits(blk[0]),
            scale_bits(blk[1]),
            scale_bits(blk[2]),
            scale_bits(blk[3]),
            scale_bits(blk[4]),
            scale_bits(blk[5]),
            scale_bits(blk[6]),
            scale_bits(blk[7]),
        ];
        $dw = _mm256_cvtph_ps(_mm_setr_epi16(h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]));
    }};
}

/// Block `$b` of a group of 8 Q4_0 or Q8_0 rows repacked as in [`crate::kernels::interleaved`]: the
/// weights are already interleaved (Q4_0: low nibbles are groups 0..4, high ones 4..8) and the 8 scales
/// side by side. Q8_0 gives magnitudes and signs like [`fill_rows`] (or flipped bytes with `$flip_`).
macro_rules! fill_packed {
    ($w:expr, $b:expr, $q4:expr, $flip_:expr, $mag:expr, $sgn:expr, $dw:expr) => {{
        let (g, m4): (&[u8], __m256i) = ($w, _mm256_set1_epi8(0x0F));
        let block = if $q4 { Q4_0_X8_BLOCK_BYTES } else { Q8_0_X8_BLOCK_BYTES };
        let blk = g[$b * block..($b + 1) * block].as_ptr();
        if $q4 {
            for c in 0..4 {
                // SAFETY: the interleaved block's 144 bytes are readable.
                let v = unsafe { _mm256_loadu_si256(blk.add(16 + 32 * c) as *const __m256i) };
                $mag[c] = _mm256_and_si256(v, m4);
                $mag[c + 4] = _mm256_and_si256(_mm256_srli_epi16::<4>(v), m4);
            }
        } else {
            for c in 0..8 {
                // SAFETY: the interleaved block's 272 bytes are readable.
                let v = unsafe { _mm256_loadu_si256(blk.add(16 + 32 * c) as *const __m256i) };
                $sgn[c] = v;
                $mag[c] = if $flip_ { _mm256_xor_si256(v, _mm256_set1_epi8(-128)) } else { _mm256_sign_epi8(v, v) };
            }
        }
        // SAFETY: the block's first 16 bytes are the 8 rows' fp16 scales.
        $dw = _mm256_cvtph_ps(unsafe { _mm_loadu_si128(blk as *const __m128i) });
    }};
}

/// The 8-row interleaved kernel, once per integer step and weight source (the body is shared; the target
/// features, the `dpbusd` form `$dp` and the way blocks are unpacked differ).
macro_rules! rows8_kernel {
    ($name:ident, $features:literal, $isum:ident, $dp:ident, $flip:expr, $fill:ident, $wty:ty) => {
        #[target_feature(enable = $features)]
        unsafe fn $name<const Q4: bool>(
            w: $wty,
            x: &[Q8Block],
            xsum: &[i32],
            kb: usize,
            c0: usize,
            cn: usize,
            out: &mut [f32],
        ) {
            let ones = _mm256_set1_epi16(1);
            let mut acc = [_mm256_setzero_ps(); MAX_COLS];
            // Interleaved weights of CHUNK blocks: magnitudes (Q4: the nibbles) and, for Q8_0, the signed values.
            let mut mag = [[_mm256_setzero_si256(); 8]; CHUNK];
            let mut sgn = [[_mm256_setzero_si256(); 8]; CHUNK];
            let mut dw = [_mm256_setzero_ps(); CHUNK];
            for b0 in (0..kb).step_by(CHUNK) {
                let bn = CHUNK.min(kb - b0);
                for i in 0..bn {
                    $fill!(w, b0 + i, Q4, $flip, mag[i], sgn[i], dw[i]);
                }
                // Two columns per pass: each interleaved weight vector is loaded once for both, and the two
                // accumulator chains run side by side. An odd last column is paired with itself.
                for c in (0..cn).step_by(2) {
                    let cb = if c + 1 < cn { c + 1 } else { c };
                    let (ca_col, cb_col) = (c0 + c, c0 + cb);
                    let xa = &x[ca_col * kb + b0..ca_col * kb + b0 + bn];
                    let xb = &x[cb_col * kb + b0..cb_col * kb + b0 + bn];
                    let sa = &xsum[ca_col * kb + b0..ca_col * kb + b0 + bn];
                    let sb = &xsum[cb_col * kb + b0..cb_col * kb + b0 + bn];
                    let (mut av, mut bv) = (acc[c], acc[cb]);
                    for i in 0..bn {
                        let (qa, qb) = (xa[i].qs.as_ptr() as *const i32, xb[i].qs.as_ptr() as *const i32);
                        let (isa, isb) = $isum!($dp, Q4, mag[i], sgn[i], qa, qb, sa[i], sb[i], ones);
                        // Separate multiply and add (no FMA): the scalar dot's two roundings, block by block.
                        let pa = _mm256_mul_ps(_mm256_cvtepi32_ps(isa), _mm256_mul_ps(dw[i], _mm256_set1_ps(xa[i].d)));
                        let pb = _mm256_mul_ps(_mm256_cvtepi32_ps(isb), _mm256_mul_ps(dw[i], _mm256_set1_ps(xb[i].d)));
                        av = _mm256_add_ps(av, pa);
                        bv = _mm256_add_ps(bv, pb);
                    }
                    acc[c] = av;
                    acc[cb] = bv;
                }
            }
            for (c, a) in acc.iter().enumerate().take(cn) {
                // SAFETY: out holds cn · 8 f32.
                unsafe { _mm256_storeu_ps(out[c * 8..].as_mut_ptr(), *a) };
            }
        }
    };
}

rows8_kernel!(rows8_avx2, "avx2,f16c", isum_maddubs, _mm256_dpbusd_epi32, false, fill_rows, [&[u8]; 8]);
rows8_kernel!(
    rows8_vnni,
    "avx2,f16c,avx512vnni,avx512vl",
    isum_dpbusd,
    _mm256_dpbusd_epi32,
    true,
    fill_rows,
    [&[u8]; 8]
);
rows8_kernel!(rows8_avxvnni, "avx2,f16c,avxvnni", isum_dpbusd, _mm256_dpbusd_avx_epi32, true, fill_rows, [&[u8]; 8]);
rows8_kernel!(packed8_avx2, "avx2,f16c", isum_maddubs, _mm256_dpbusd_epi32, false, fill_packed, &[u8]);
rows8_kernel!(
    packed8_vnni,
    "avx2,f16c,avx512vnni,avx512vl",
    isum_dpbusd,
    _mm256_dpbusd_epi32,
    true,
    fill_packed,
    &[u8]
);
rows8_kernel!(packed8_avxvnni, "avx2,f16c,avxvnni", isum_dpbusd, _mm256_dpbusd_avx_epi32, true, fill_packed, &[u8]);

/// `out[c * 8 + r] = dot(w[r], x column c)` for 8 Q4_K weight rows and `ncols` Q8_K activation rows of
/// `kb` super-blocks, interleaved like [`rows8`]: each lane is one row, each 32-element sub-block's nibble
/// sums are scaled by the row's 6-bit scale inside `madd`, the mins term comes from the activations'
/// `bsums`, and each lane runs the scalar twin's float steps (`d·isum − dmin·msum`, added block by block),
/// so every output is bit-identical to [`crate::kernels::kquants::dot_q4_k`].
///
/// With a VNNI `step` each sub-block's nibble sums come from `dpbusd` (exact i32, two columns per pass
/// sharing each interleaved weight vector) and are scaled with an i32 multiply: the same integers, so the
/// same bits.
///
/// The 8 rows come either as rows of the model or as one group repacked by
/// [`crate::kernels::interleaved::interleave_x8`] (then nothing is transposed: the same bits, sooner).
pub fn rows8_q4k(w: KSource<'_>, x: &[Q8KBlock], kb: usize, out: &mut [f32], step: Step) {
    assert!(step.available(), "rows8_q4k: the CPU lacks {step:?}");
    let ncols = out.len() / 8;
    assert!(out.len() == ncols * 8 && x.len() >= ncols * kb);
    match &w {
        KSource::Rows(rows) => {
            for r in rows {
                assert!(r.len() >= kb * Q4_K_BYTES);
            }
        }
        KSource::Packed(group) => assert_eq!(group.len(), kb * Q4_K_X8_BLOCK_BYTES, "one group of {kb} super-blocks"),
    }
    column_passes(out, |c0, cn, o| {
        // SAFETY: AVX2/F16C (and VNNI when used) were checked above; rows hold kb super-blocks, x ncols · kb.
        unsafe {
            match step {
                Step::Avx2 => rows8_q4k_avx2(&w, x, kb, c0, cn, o),
                Step::Avx512Vnni => rows8_q4k_vnni(&w, x, kb, c0, cn, o),
                Step::AvxVnni => rows8_q4k_avxvnni(&w, x, kb, c0, cn, o),
            }
        }
    });
}

/// Where the 8 K-quant rows of [`rows8_q4k`] and [`rows8_q6k`] come from.
pub enum KSource<'a> {
    /// Rows of the model (at least `kb` super-blocks each).
    Rows([&'a [u8]; 8]),
    /// One group in the type's layout of [`crate::kernels::interleaved`].
    Packed(&'a [u8]),
}

/// Super-block `b` of the 8 rows, unpacked.
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn q4k_block(w: &KSource<'_>, b: usize) -> Q4kRows8 {
    match w {
        KSource::Rows(rows) => q4k_rows8(rows, b),
        KSource::Packed(group) => {
            let blk = &group[b * Q4_K_X8_BLOCK_BYTES..(b + 1) * Q4_K_X8_BLOCK_BYTES];
            let m4 = _mm256_set1_epi8(0x0F);
            let mut nib = [[_mm256_setzero_si256(); 8]; 8];
            for c in 0..4 {
                for g in 0..8 {
                    // SAFETY: bytes 128 + 256c + 32g .. + 32 are inside the 1152-byte super-block.
                    let v = unsafe { _mm256_loadu_si256(blk[128 + 256 * c + 32 * g..].as_ptr() as *const __m256i) };
                    nib[2 * c][g] = _mm256_and_si256(v, m4);
                    nib[2 * c + 1][g] = _mm256_and_si256(_mm256_srli_epi16::<4>(v), m4);
                }
            }
            let s = q4k_packed_scales(blk);
            Q4kRows8 { nib, scale: s.scale, mins: s.mins, dw: s.dw, dminw: s.dminw }
        }
    }
}

/// The scales of one `q4_kx8` super-block: each row's 6-bit sub-block scales as i32 lanes, its mins as i16
/// pairs (`madd` operands against pairs of `bsums` sums), and the fp16 `d` and `dmin` as f32.
pub(super) struct Q4kScales8 {
    pub scale: [__m256i; 8],
    pub mins: [__m256i; 4],
    pub dw: __m256,
    pub dminw: __m256,
}

/// Unpack the scales of one interleaved super-block (`blk`: its 1152 bytes), all 8 rows at once: byte `k`
/// of the 8 rows' 12 scale bytes sits in 8 consecutive bytes, so each 6-bit field is a few vector ops.
#[inline]
#[target_feature(enable = "avx2,f16c")]
pub(super) fn q4k_packed_scales(blk: &[u8]) -> Q4kScales8 {
    assert!(blk.len() >= Q4_K_X8_BLOCK_BYTES);
    let mut b = [_mm256_setzero_si256(); 12];
    for (k, v) in b.iter_mut().enumerate() {
        // SAFETY: byte k of the 8 rows is at 32 + 8k .. 40 + 8k, inside the block (asserted).
        *v = _mm256_cvtepu8_epi32(unsafe { _mm_loadl_epi64(blk[32 + 8 * k..].as_ptr() as *const __m128i) });
    }
    let (m63, m15) = (_mm256_set1_epi32(63), _mm256_set1_epi32(15));
    let mut scale = [_mm256_setzero_si256(); 8];
    let mut min = [_mm256_setzero_si256(); 8];
    for j in 0..4 {
        // The layout of ggml's get_scale_min_k4, 8 rows per operation.
        scale[j] = _mm256_and_si256(b[j], m63);
        min[j] = _mm256_and_si256(b[j + 4], m63);
        scale[j + 4] =
            _mm256_or_si256(_mm256_and_si256(b[j + 8], m15), _mm256_slli_epi32::<4>(_mm256_srli_epi32::<6>(b[j])));
        min[j + 4] =
            _mm256_or_si256(_mm256_srli_epi32::<4>(b[j + 8]), _mm256_slli_epi32::<4>(_mm256_srli_epi32::<6>(b[j + 4])));
    }
    let mut mins = [_mm256_setzero_si256(); 4];
    for (i, m) in mins.iter_mut().enumerate() {
        *m = _mm256_or_si256(min[2 * i], _mm256_slli_epi32::<16>(min[2 * i + 1]));
    }
    // SAFETY: the first 32 bytes are the 8 d and the 8 dmin.
    let (d, dmin) = unsafe {
        (_mm_loadu_si128(blk.as_ptr() as *const __m128i), _mm_loadu_si128(blk[16..].as_ptr() as *const __m128i))
    };
    Q4kScales8 { scale, mins, dw: _mm256_cvtph_ps(d), dminw: _mm256_cvtph_ps(dmin) }
}

#[target_feature(enable = "avx2,f16c")]
unsafe fn rows8_q4k_avx2(w: &KSource<'_>, x: &[Q8KBlock], kb: usize, c0: usize, cn: usize, out: &mut [f32]) {
    let mut acc = [_mm256_setzero_ps(); MAX_COLS];
    for b in 0..kb {
        let t = q4k_block(w, b);
        // madd wants each row's sub-block scale as an i16 pair [sc_r, sc_r] per lane.
        let scale16: [__m256i; 8] = std::array::from_fn(|j| i16_pairs(t.scale[j]));
        for (c, a) in acc.iter_mut().enumerate().take(cn) {
            let xb = &x[(c0 + c) * kb + b];
            let q = xb.qs.as_ptr() as *const i32;
            let mut isum = _mm256_setzero_si256();
            for (j, sc) in scale16.iter().enumerate() {
                // Nibble · byte pairs are at most 2·15·128 = 3840: eight of them fit an i16 exactly.
                let mut s16 = _mm256_setzero_si256();
                for (g, nv) in t.nib[j].iter().enumerate() {
                    // SAFETY: group g of sub-block j is 4 of the block's 256 bytes.
                    let xv = _mm256_set1_epi32(unsafe { q.add(8 * j + g).read_unaligned() });
                    s16 = _mm256_add_epi16(s16, _mm256_maddubs_epi16(*nv, xv));
                }
                // madd with [sc_r, sc_r]: sc_r · (both halves) per row lane, exact in i32.
                isum = _mm256_add_epi32(isum, _mm256_madd_epi16(s16, *sc));
            }
            *a = q4k_finish(*a, &t, xb, isum);
        }
    }
    for (c, a) in acc.iter().enumerate().take(cn) {
        // SAFETY: out holds cn · 8 f32.
        unsafe { _mm256_storeu_ps(out[c * 8..].as_mut_ptr(), *a) };
    }
}

/// Lanes of small i32 values (|v| < 2¹⁵) as i16 pairs `[v, v]`, the form `madd` scales both halves with.
#[inline]
#[target_feature(enable = "avx2")]
fn i16_pairs(v: __m256i) -> __m256i {
    _mm256_or_si256(_mm256_and_si256(v, _mm256_set1_epi32(0xFFFF)), _mm256_slli_epi32::<16>(v))
}

/// The interleaved nibbles, scales (as i32 lanes), mins and fp16 scales of one Q4_K super-block of 8 rows.
pub(super) struct Q4kRows8 {
    nib: [[__m256i; 8]; 8],
    scale: [__m256i; 8],
    mins: [__m256i; 4],
    dw: __m256,
    dminw: __m256,
}

/// Unpack super-block `b` of the 8 rows (both Q4_K tiles).
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn q4k_rows8(w: &[&[u8]; 8], b: usize) -> Q4kRows8 {
    let m4 = _mm256_set1_epi8(0x0F);
    let mut sc = [[0u8; 8]; 8];
    let mut mn = [[0u8; 8]; 8];
    let mut d = [0i16; 8];
    let mut dmin = [0i16; 8];
    for r in 0..8 {
        let blk = &w[r][b * Q4_K_BYTES..(b + 1) * Q4_K_BYTES];
        (sc[r], mn[r]) = scales_mins_k4(&blk[4..16]);
        d[r] = i16::from_le_bytes([blk[0], blk[1]]);
        dmin[r] = i16::from_le_bytes([blk[2], blk[3]]);
    }
    let mut nib = [[_mm256_setzero_si256(); 8]; 8];
    for c in 0..4 {
        let mut lo = [_mm256_setzero_si256(); 8];
        let mut hi = [_mm256_setzero_si256(); 8];
        for r in 0..8 {
            let blk = &w[r][b * Q4_K_BYTES + 16 + 32 * c..b * Q4_K_BYTES + 48 + 32 * c];
            // SAFETY: blk is 32 bytes of the super-block's nibbles.
            let v = unsafe { _mm256_loadu_si256(blk.as_ptr() as *const __m256i) };
            lo[r] = _mm256_and_si256(v, m4);
            hi[r] = _mm256_and_si256(_mm256_srli_epi16::<4>(v), m4);
        }
        nib[2 * c] = transpose8(lo);
        nib[2 * c + 1] = transpose8(hi);
    }
    let mut scale = [_mm256_setzero_si256(); 8];
    for (j, s) in scale.iter_mut().enumerate() {
        *s = _mm256_setr_epi32(
            sc[0][j] as i32,
            sc[1][j] as i32,
            sc[2][j] as i32,
            sc[3][j] as i32,
            sc[4][j] as i32,
            sc[5][j] as i32,
            sc[6][j] as i32,
            sc[7][j] as i32,
        );
    }
    let mut mins = [_mm256_setzero_si256(); 4];
    for (i, m) in mins.iter_mut().enumerate() {
        let v: [[i16; 2]; 8] = std::array::from_fn(|r| [mn[r][2 * i] as i16, mn[r][2 * i + 1] as i16]);
        *m = _mm256_setr_epi16(
            v[0][0], v[0][1], v[1][0], v[1][1], v[2][0], v[2][1], v[3][0], v[3][1], v[4][0], v[4][1], v[5][0], v[5][1],
            v[6][0], v[6][1], v[7][0], v[7][1],
        );
    }
    let dw = _mm256_cvtph_ps(_mm_setr_epi16(d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]));
    let dminw = _mm256_cvtph_ps(_mm_setr_epi16(dmin[0], dmin[1], dmin[2], dmin[3], dmin[4], dmin[5], dmin[6], dmin[7]));
    Q4kRows8 { nib, scale, mins, dw, dminw }
}

/// Lane r += `d_r·d_x·isum_r − dmin_r·d_x·msum_r` for one activation super-block: the scalar twin's steps.
#[inline]
#[target_feature(enable = "avx2")]
fn q4k_finish(acc: __m256, t: &Q4kRows8, xb: &Q8KBlock, isum: __m256i) -> __m256 {
    q4k_finish_parts(acc, &t.mins, t.dw, t.dminw, xb, isum)
}

/// [`q4k_finish`] from the mins (i16 pairs) and the fp16 scales as f32.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn q4k_finish_parts(
    acc: __m256,
    mins: &[__m256i; 4],
    dw: __m256,
    dminw: __m256,
    xb: &Q8KBlock,
    isum: __m256i,
) -> __m256 {
    // msum lane r = Σ_i (m_r,2i · (bsums[4i] + bsums[4i+1]) + m_r,2i+1 · (bsums[4i+2] + bsums[4i+3])).
    let bs = &xb.bsums;
    let mut msum = _mm256_setzero_si256();
    for (i, m) in mins.iter().enumerate() {
        let (p0, p1) = (bs[4 * i] as i32 + bs[4 * i + 1] as i32, bs[4 * i + 2] as i32 + bs[4 * i + 3] as i32);
        let pair = _mm256_set1_epi32((p0 as u16 as i32) | ((p1 as u16 as i32) << 16));
        msum = _mm256_add_epi32(msum, _mm256_madd_epi16(*m, pair));
    }
    let dx = _mm256_set1_ps(xb.d);
    let (dd, dm) = (_mm256_mul_ps(dw, dx), _mm256_mul_ps(dminw, dx));
    let v = _mm256_sub_ps(_mm256_mul_ps(dd, _mm256_cvtepi32_ps(isum)), _mm256_mul_ps(dm, _mm256_cvtepi32_ps(msum)));
    _mm256_add_ps(acc, v)
}

/// The Q4_K tile with a `dpbusd` step, once per form of the instruction (`$dp`; the body is shared).
macro_rules! rows8_q4k_dpbusd {
    ($name:ident, $features:literal, $dp:ident) => {
        #[target_feature(enable = $features)]
        unsafe fn $name(w: &KSource<'_>, x: &[Q8KBlock], kb: usize, c0: usize, cn: usize, out: &mut [f32]) {
            let mut acc = [_mm256_setzero_ps(); MAX_COLS];
            for b in 0..kb {
                let t = q4k_block(w, b);
                // Two columns per pass: each interleaved weight vector is loaded once for both. An odd last column
                // is paired with itself.
                for c in (0..cn).step_by(2) {
                    let cb = if c + 1 < cn { c + 1 } else { c };
                    let (xa, xb) = (&x[(c0 + c) * kb + b], &x[(c0 + cb) * kb + b]);
                    let (qa, qb) = (xa.qs.as_ptr() as *const i32, xb.qs.as_ptr() as *const i32);
                    let (mut ia, mut ib) = (_mm256_setzero_si256(), _mm256_setzero_si256());
                    for j in 0..8 {
                        let (mut sa, mut sb) = (_mm256_setzero_si256(), _mm256_setzero_si256());
                        for (g, nv) in t.nib[j].iter().enumerate() {
                            // SAFETY: group g of sub-block j is 4 of the block's 256 bytes.
                            let (ya, yb) =
                                unsafe { (qa.add(8 * j + g).read_unaligned(), qb.add(8 * j + g).read_unaligned()) };
                            sa = $dp(sa, *nv, _mm256_set1_epi32(ya));
                            sb = $dp(sb, *nv, _mm256_set1_epi32(yb));
                        }
                        ia = _mm256_add_epi32(ia, _mm256_mullo_epi32(sa, t.scale[j]));
                        ib = _mm256_add_epi32(ib, _mm256_mullo_epi32(sb, t.scale[j]));
                    }
                    let (av, bv) = (q4k_finish(acc[c], &t, xa, ia), q4k_finish(acc[cb], &t, xb, ib));
                    acc[c] = av;
                    acc[cb] = bv;
                }
            }
            for (c, a) in acc.iter().enumerate().take(cn) {
                // SAFETY: out holds cn · 8 f32.
                unsafe { _mm256_storeu_ps(out[c * 8..].as_mut_ptr(), *a) };
            }
        }
    };
}

rows8_q4k_dpbusd!(rows8_q4k_vnni, "avx2,f16c,avx512vnni,avx512vl", _mm256_dpbusd_epi32);
rows8_q4k_dpbusd!(rows8_q4k_avxvnni, "avx2,f16c,avxvnni", _mm256_dpbusd_avx_epi32);

/// `out[c * 8 + r] = dot(w[r], x column c)` for 8 Q6_K weight rows and `ncols` Q8_K activation rows of
/// `kb` super-blocks, interleaved like [`rows8`]: the 6-bit values (0..63) meet the activations in `maddubs`,
/// each 16-element group's sums are scaled by its signed 8-bit scale inside `madd`, the offset of 32 comes
/// back as `32 · Σ scale · bsum`, and each lane adds `(d_w · d_x) · isum` block by block like
/// [`crate::kernels::kquants::dot_q6_k`], so every output is bit-identical to it.
///
/// With a VNNI `step` each 16-value group's sums come from `dpbusd` (two columns per pass) and are scaled
/// with an i32 multiply: the same integers, so the same bits.
///
/// The 8 rows come as rows of the model or as one group repacked by
/// [`crate::kernels::interleaved::interleave_x8`] (nothing to transpose then: the same bits, sooner).
pub fn rows8_q6k(w: KSource<'_>, x: &[Q8KBlock], kb: usize, out: &mut [f32], step: Step) {
    assert!(step.available(), "rows8_q6k: the CPU lacks {step:?}");
    let ncols = out.len() / 8;
    assert!(out.len() == ncols * 8 && x.len() >= ncols * kb);
    match &w {
        KSource::Rows(rows) => {
            for r in rows {
                assert!(r.len() >= kb * Q6_K_BYTES);
            }
        }
        KSource::Packed(group) => assert_eq!(group.len(), kb * Q6_K_X8_BLOCK_BYTES, "one group of {kb} super-blocks"),
    }
    column_passes(out, |c0, cn, o| {
        // SAFETY: AVX2/F16C (and VNNI when used) were checked above; rows hold kb super-blocks, x ncols · kb.
        unsafe {
            match step {
                Step::Avx2 => rows8_q6k_avx2(&w, x, kb, c0, cn, o),
                Step::Avx512Vnni => rows8_q6k_vnni(&w, x, kb, c0, cn, o),
                Step::AvxVnni => rows8_q6k_avxvnni(&w, x, kb, c0, cn, o),
            }
        }
    });
}

#[target_feature(enable = "avx2,f16c")]
unsafe fn rows8_q6k_avx2(w: &KSource<'_>, x: &[Q8KBlock], kb: usize, c0: usize, cn: usize, out: &mut [f32]) {
    let mut acc = [_mm256_setzero_ps(); MAX_COLS];
    for b in 0..kb {
        let t = q6k_block(w, b);
        // madd wants each row's 16-value group scale as an i16 pair [sc_r, sc_r] per lane.
        let scale16: [__m256i; 16] = std::array::from_fn(|s| i16_pairs(t.scale[s]));
        for (c, a) in acc.iter_mut().enumerate().take(cn) {
            let xb = &x[(c0 + c) * kb + b];
            let q = xb.qs.as_ptr() as *const i32;
            let mut isum = _mm256_setzero_si256();
            for (k, chunk) in t.q6.iter().enumerate() {
                // No closures: they would not inherit this function's target features.
                let mut xv = [_mm256_setzero_si256(); 8];
                for (g, v) in xv.iter_mut().enumerate() {
                    // SAFETY: group g of chunk k is 4 of the block's 256 bytes.
                    *v = _mm256_set1_epi32(unsafe { q.add(8 * k + g).read_unaligned() });
                }
                // Pairs of 6-bit · byte products are at most 2·63·128 = 16128: two of them fit an i16.
                let mut p = [_mm256_setzero_si256(); 4];
                for (i, v) in p.iter_mut().enumerate() {
                    *v = _mm256_add_epi16(
                        _mm256_maddubs_epi16(chunk[2 * i], xv[2 * i]),
                        _mm256_maddubs_epi16(chunk[2 * i + 1], xv[2 * i + 1]),
                    );
                }
                let (slo, shi) = (scale16[2 * k], scale16[2 * k + 1]);
                let lo = _mm256_add_epi32(_mm256_madd_epi16(p[0], slo), _mm256_madd_epi16(p[1], slo));
                let hi = _mm256_add_epi32(_mm256_madd_epi16(p[2], shi), _mm256_madd_epi16(p[3], shi));
                isum = _mm256_add_epi32(isum, _mm256_add_epi32(lo, hi));
            }
            *a = q6k_finish(*a, &t, xb, isum);
        }
    }
    for (c, a) in acc.iter().enumerate().take(cn) {
        // SAFETY: out holds cn · 8 f32.
        unsafe { _mm256_storeu_ps(out[c * 8..].as_mut_ptr(), *a) };
    }
}

/// The interleaved 6-bit values, group scales (as i32 lanes), scale pairs and fp16 scales of one Q6_K
/// super-block of 8 rows.
struct Q6kRows8 {
    q6: [[__m256i; 8]; 8],
    scale: [__m256i; 16],
    spair: [__m256i; 8],
    dw: __m256,
}

/// Unpack super-block `b` of the 8 rows (both Q6_K tiles).
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn q6k_rows8(w: &[&[u8]; 8], b: usize) -> Q6kRows8 {
    let (m4, m2) = (_mm256_set1_epi8(0x0F), _mm256_set1_epi8(3));
    let mut sc = [[0i16; 16]; 8];
    let mut d = [0i16; 8];
    for r in 0..8 {
        let blk = &w[r][b * Q6_K_BYTES..(b + 1) * Q6_K_BYTES];
        for (s, v) in sc[r].iter_mut().enumerate() {
            *v = blk[192 + s] as i8 as i16;
        }
        d[r] = i16::from_le_bytes([blk[208], blk[209]]);
    }
    let mut q6 = [[_mm256_setzero_si256(); 8]; 8];
    for h in 0..2 {
        let mut ql = [[_mm256_setzero_si256(); 2]; 8];
        let mut qh = [_mm256_setzero_si256(); 8];
        for r in 0..8 {
            let blk = &w[r][b * Q6_K_BYTES..(b + 1) * Q6_K_BYTES];
            // SAFETY: ql[64h..64h + 64] and qh[32h..32h + 32] lie within the 210-byte block.
            unsafe {
                ql[r][0] = _mm256_loadu_si256(blk[64 * h..].as_ptr() as *const __m256i);
                ql[r][1] = _mm256_loadu_si256(blk[64 * h + 32..].as_ptr() as *const __m256i);
                qh[r] = _mm256_loadu_si256(blk[128 + 32 * h..].as_ptr() as *const __m256i);
            }
        }
        for k in 0..4 {
            let mut rows = [_mm256_setzero_si256(); 8];
            for r in 0..8 {
                rows[r] = q6_assemble(ql[r][k & 1], qh[r], k, m4, m2);
            }
            q6[4 * h + k] = transpose8(rows);
        }
    }
    let mut scale = [_mm256_setzero_si256(); 16];
    for (s, v) in scale.iter_mut().enumerate() {
        *v = _mm256_setr_epi32(
            sc[0][s] as i32,
            sc[1][s] as i32,
            sc[2][s] as i32,
            sc[3][s] as i32,
            sc[4][s] as i32,
            sc[5][s] as i32,
            sc[6][s] as i32,
            sc[7][s] as i32,
        );
    }
    let mut spair = [_mm256_setzero_si256(); 8];
    for (i, v) in spair.iter_mut().enumerate() {
        let c: [[i16; 2]; 8] = std::array::from_fn(|r| [sc[r][2 * i], sc[r][2 * i + 1]]);
        *v = _mm256_setr_epi16(
            c[0][0], c[0][1], c[1][0], c[1][1], c[2][0], c[2][1], c[3][0], c[3][1], c[4][0], c[4][1], c[5][0], c[5][1],
            c[6][0], c[6][1], c[7][0], c[7][1],
        );
    }
    let dw = _mm256_cvtph_ps(_mm_setr_epi16(d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]));
    Q6kRows8 { q6, scale, spair, dw }
}

/// Super-block `b` of the 8 Q6_K rows, unpacked.
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn q6k_block(w: &KSource<'_>, b: usize) -> Q6kRows8 {
    match w {
        KSource::Rows(rows) => q6k_rows8(rows, b),
        KSource::Packed(group) => {
            let blk = &group[b * Q6_K_X8_BLOCK_BYTES..(b + 1) * Q6_K_X8_BLOCK_BYTES];
            let (m4, m2) = (_mm256_set1_epi8(0x0F), _mm256_set1_epi8(3));
            let mut q6 = [[_mm256_setzero_si256(); 8]; 8];
            let (s0, s2) = (_mm_cvtsi32_si128(0), _mm_cvtsi32_si128(2));
            for h in 0..2 {
                #[allow(clippy::needless_range_loop)] // g indexes the layout and the four quarters alike
                for g in 0..8 {
                    let unit = 144 + 96 * (8 * h + g);
                    // SAFETY: the unit's three 32-byte runs lie inside the 1680-byte super-block.
                    let (l0, l1, high) = unsafe {
                        (
                            _mm256_loadu_si256(blk[unit..].as_ptr() as *const __m256i),
                            _mm256_loadu_si256(blk[unit + 32..].as_ptr() as *const __m256i),
                            _mm256_loadu_si256(blk[unit + 64..].as_ptr() as *const __m256i),
                        )
                    };
                    let ((a0, b0), (a1, b1)) = (q6_pair(l0, high, s0, m4, m2), q6_pair(l1, high, s2, m4, m2));
                    q6[4 * h][g] = a0;
                    q6[4 * h + 2][g] = b0;
                    q6[4 * h + 1][g] = a1;
                    q6[4 * h + 3][g] = b1;
                }
            }
            let s = q6k_packed_scales(blk);
            Q6kRows8 { q6, scale: s.scale, spair: s.spair, dw: s.dw }
        }
    }
}

/// The 6-bit values (0..63) of quarter `k` of a Q6_K half from its `ql` and `qh` bytes: the low nibble
/// (`k` < 2) or high nibble of `ql` and bits `2k, 2k + 1` of `qh` as bits 4 and 5.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn q6_assemble(low: __m256i, high: __m256i, k: usize, m4: __m256i, m2: __m256i) -> __m256i {
    let low = if k >> 1 == 0 { low } else { _mm256_srli_epi16::<4>(low) };
    let high = match k {
        0 => high,
        1 => _mm256_srli_epi16::<2>(high),
        2 => _mm256_srli_epi16::<4>(high),
        _ => _mm256_srli_epi16::<6>(high),
    };
    _mm256_or_si256(_mm256_and_si256(low, m4), _mm256_slli_epi16::<4>(_mm256_and_si256(high, m2)))
}

/// The 6-bit values of quarters `kk` and `kk + 2` of a Q6_K half from the same `ql` and `qh` bytes (`shift`
/// = `2·kk`): low and high nibbles of `ql`, bits `2kk, 2kk + 1` and `2kk + 4, 2kk + 5` of `qh` as bits 4, 5.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn q6_pair(low: __m256i, high: __m256i, shift: __m128i, m4: __m256i, m2: __m256i) -> (__m256i, __m256i) {
    let h = _mm256_srl_epi16(high, shift);
    let a = _mm256_or_si256(_mm256_and_si256(low, m4), _mm256_slli_epi16::<4>(_mm256_and_si256(h, m2)));
    let b = _mm256_or_si256(
        _mm256_and_si256(_mm256_srli_epi16::<4>(low), m4),
        _mm256_slli_epi16::<4>(_mm256_and_si256(_mm256_srli_epi16::<4>(h), m2)),
    );
    (a, b)
}

/// The scales of one `q6_kx8` super-block: each row's 16 signed group scales as i32 lanes and as i16 pairs
/// `[sc_2i, sc_2i+1]` (`madd` operands against pairs of `bsums`), and its fp16 `d` as f32.
pub(super) struct Q6kScales8 {
    pub scale: [__m256i; 16],
    pub spair: [__m256i; 8],
    pub dw: __m256,
}

/// Unpack the scales of one interleaved Q6_K super-block (`blk`: its 1680 bytes), 8 rows per operation.
#[inline]
#[target_feature(enable = "avx2,f16c")]
pub(super) fn q6k_packed_scales(blk: &[u8]) -> Q6kScales8 {
    assert!(blk.len() >= Q6_K_X8_BLOCK_BYTES);
    let mut scale = [_mm256_setzero_si256(); 16];
    for (k, v) in scale.iter_mut().enumerate() {
        // SAFETY: scale k of the 8 rows is at 16 + 8k .. 24 + 8k, inside the block (asserted).
        *v = _mm256_cvtepi8_epi32(unsafe { _mm_loadl_epi64(blk[16 + 8 * k..].as_ptr() as *const __m128i) });
    }
    let mut spair = [_mm256_setzero_si256(); 8];
    for (i, v) in spair.iter_mut().enumerate() {
        let lo = _mm256_and_si256(scale[2 * i], _mm256_set1_epi32(0xFFFF));
        *v = _mm256_or_si256(lo, _mm256_slli_epi32::<16>(scale[2 * i + 1]));
    }
    // SAFETY: the first 16 bytes are the 8 rows' d.
    let dw = _mm256_cvtph_ps(unsafe { _mm_loadu_si128(blk.as_ptr() as *const __m128i) });
    Q6kScales8 { scale, spair, dw }
}

/// Lane r += `d_r·d_x·(isum_r − 32·Σ_s sc_rs·bsums_s)` for one activation super-block: the scalar twin's steps.
#[inline]
#[target_feature(enable = "avx2")]
fn q6k_finish(acc: __m256, t: &Q6kRows8, xb: &Q8KBlock, isum: __m256i) -> __m256 {
    q6k_finish_parts(acc, &t.spair, t.dw, xb, isum)
}

/// [`q6k_finish`] from the scale pairs and the fp16 scales as f32.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn q6k_finish_parts(acc: __m256, spair: &[__m256i; 8], dw: __m256, xb: &Q8KBlock, isum: __m256i) -> __m256 {
    let bs = &xb.bsums;
    let mut off = _mm256_setzero_si256();
    for (i, sp) in spair.iter().enumerate() {
        let pair = _mm256_set1_epi32((bs[2 * i] as u16 as i32) | ((bs[2 * i + 1] as u16 as i32) << 16));
        off = _mm256_add_epi32(off, _mm256_madd_epi16(*sp, pair));
    }
    let isum = _mm256_sub_epi32(isum, _mm256_slli_epi32::<5>(off));
    let dd = _mm256_mul_ps(dw, _mm256_set1_ps(xb.d));
    _mm256_add_ps(acc, _mm256_mul_ps(dd, _mm256_cvtepi32_ps(isum)))
}

/// The Q6_K tile with a `dpbusd` step, once per form of the instruction (`$dp`; the body is shared).
macro_rules! rows8_q6k_dpbusd {
    ($name:ident, $features:literal, $dp:ident) => {
        #[target_feature(enable = $features)]
        unsafe fn $name(w: &KSource<'_>, x: &[Q8KBlock], kb: usize, c0: usize, cn: usize, out: &mut [f32]) {
            let mut acc = [_mm256_setzero_ps(); MAX_COLS];
            for b in 0..kb {
                let t = q6k_block(w, b);
                // Two columns per pass (an odd last one paired with itself), sharing each weight vector.
                for c in (0..cn).step_by(2) {
                    let cb = if c + 1 < cn { c + 1 } else { c };
                    let (xa, xb) = (&x[(c0 + c) * kb + b], &x[(c0 + cb) * kb + b]);
                    let (qa, qb) = (xa.qs.as_ptr() as *const i32, xb.qs.as_ptr() as *const i32);
                    let (mut ia, mut ib) = (_mm256_setzero_si256(), _mm256_setzero_si256());
                    // 16 groups of 16 values: chunk t (32 values) holds groups 2t (its groups 0..4) and 2t + 1.
                    for s in 0..16 {
                        let (mut sa, mut sb) = (_mm256_setzero_si256(), _mm256_setzero_si256());
                        for g in 0..4 {
                            let (t8, gg) = (s / 2, 4 * (s % 2) + g);
                            let nv = t.q6[t8][gg];
                            // SAFETY: group gg of chunk t8 is 4 of the block's 256 bytes.
                            let (ya, yb) =
                                unsafe { (qa.add(8 * t8 + gg).read_unaligned(), qb.add(8 * t8 + gg).read_unaligned()) };
                            sa = $dp(sa, nv, _mm256_set1_epi32(ya));
                            sb = $dp(sb, nv, _mm256_set1_epi32(yb));
                        }
                        ia = _mm256_add_epi32(ia, _mm256_mullo_epi32(sa, t.scale[s]));
                        ib = _mm256_add_epi32(ib, _mm256_mullo_epi32(sb, t.scale[s]));
                    }
                    let (av, bv) = (q6k_finish(acc[c], &t, xa, ia), q6k_finish(acc[cb], &t, xb, ib));
                    acc[c] = av;
                    acc[cb] = bv;
                }
            }
            for (c, a) in acc.iter().enumerate().take(cn) {
                // SAFETY: out holds cn · 8 f32.
                unsafe { _mm256_storeu_ps(out[c * 8..].as_mut_ptr(), *a) };
            }
        }
    };
}

rows8_q6k_dpbusd!(rows8_q6k_vnni, "avx2,f16c,avx512vnni,avx512vl", _mm256_dpbusd_epi32);
rows8_q6k_dpbusd!(rows8_q6k_avxvnni, "avx2,f16c,avxvnni", _mm256_dpbusd_avx_epi32);

/// `dot(w, x)` for one weight row of `kb` blocks, reading the row front to back (one memory stream, which
/// the hardware prefetchers follow), eight blocks per step: their integer sums come out of one transpose,
/// exact, and block `b`'s product `isum · (d_w · d_x)` (rounded as the scalar twin rounds it) is added to
/// lane `b mod 8` of a vector; the 8 lanes are summed at the end. Only that order of the float additions
/// differs from the scalar dot (which adds the products one by one): a serial chain of scalar adds was
/// what limited decoding, not the integer work.
///
/// `xd` holds the activation blocks' scales side by side (one load per step instead of eight). With a VNNI
/// `step` (see [`Step`]) the integer step is one `dpbusd` per block: Q8_0 weights are moved to
/// unsigned bytes by flipping their sign bit and the `128 · Σx` that adds is taken back, so the sums are
/// the same.
pub fn row1(ty: IntWeights, w: &[u8], x: &[Q8Block], xd: &[f32], xsum: &[i32], kb: usize, step: Step) -> f32 {
    assert!(step.available(), "row1: the CPU lacks {step:?}");
    assert!(w.len() >= kb * ty.block_bytes() && x.len() >= kb && xd.len() >= kb && xsum.len() >= kb);
    // SAFETY: the target features were checked above; the row holds kb blocks, x, xd and xsum kb entries.
    unsafe {
        match (ty, step) {
            (IntWeights::Q8_0, Step::Avx2) => row1_avx2::<false>(w, x, xd, xsum, kb),
            (IntWeights::Q4_0, Step::Avx2) => row1_avx2::<true>(w, x, xd, xsum, kb),
            (IntWeights::Q8_0, Step::Avx512Vnni) => row1_vnni::<false>(w, x, xd, xsum, kb),
            (IntWeights::Q4_0, Step::Avx512Vnni) => row1_vnni::<true>(w, x, xd, xsum, kb),
            (IntWeights::Q8_0, Step::AvxVnni) => row1_avxvnni::<false>(w, x, xd, xsum, kb),
            (IntWeights::Q4_0, Step::AvxVnni) => row1_avxvnni::<true>(w, x, xd, xsum, kb),
        }
    }
}

/// The 8 lane partial sums of one block pair for [`row1`] (elements 4l..4l+4 in lane l), without the
/// offset correction (Q4_0: `8 · Σx`; Q8_0 with VNNI: `128 · Σx`).
macro_rules! row1_block {
    (maddubs, $dp:ident, $q4:expr, $blk:expr, $xv:expr, $shifts:expr, $mask:expr, $ones:expr) => {{
        let (blk, xv): (*const u8, __m256i) = ($blk, $xv);
        if $q4 {
            // The 16 packed bytes in both halves, shifted by 0 (low nibbles: elements 0..16) and by 4 (high
            // nibbles: 16..32): one broadcast load and two operations.
            // SAFETY (caller): the block's 18 bytes are readable.
            let packed = _mm256_broadcastsi128_si256(unsafe { _mm_loadu_si128(blk.add(2) as *const __m128i) });
            let nib = _mm256_and_si256(_mm256_srlv_epi32(packed, $shifts), $mask);
            _mm256_madd_epi16(_mm256_maddubs_epi16(nib, xv), $ones)
        } else {
            // SAFETY (caller): the block's 34 bytes are readable.
            let wv = unsafe { _mm256_loadu_si256(blk.add(2) as *const __m256i) };
            _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(wv, wv), _mm256_sign_epi8(xv, wv)), $ones)
        }
    }};
    (dpbusd, $dp:ident, $q4:expr, $blk:expr, $xv:expr, $shifts:expr, $mask:expr, $ones:expr) => {{
        let (blk, xv): (*const u8, __m256i) = ($blk, $xv);
        let _ = $ones;
        let unsigned = if $q4 {
            // SAFETY (caller): the block's 18 bytes are readable.
            let packed = _mm256_broadcastsi128_si256(unsafe { _mm_loadu_si128(blk.add(2) as *const __m128i) });
            _mm256_and_si256(_mm256_srlv_epi32(packed, $shifts), $mask)
        } else {
            // SAFETY (caller): the block's 34 bytes are readable.
            let wv = unsafe { _mm256_loadu_si256(blk.add(2) as *const __m256i) };
            _mm256_xor_si256(wv, _mm256_set1_epi8(-128))
        };
        $dp(_mm256_setzero_si256(), unsigned, xv)
    }};
}

/// The single-row kernel, once per integer step (the body is shared; the target features and the `dpbusd`
/// form `$dp` differ).
macro_rules! row1_kernel {
    ($name:ident, $features:literal, $step:ident, $dp:ident, $q8_offset:expr) => {
        #[target_feature(enable = $features)]
        unsafe fn $name<const Q4: bool>(w: &[u8], x: &[Q8Block], xd: &[f32], xsum: &[i32], kb: usize) -> f32 {
            let bb = if Q4 { 18 } else { 34 };
            let (shifts, mask, ones) =
                (_mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4), _mm256_set1_epi8(0x0F), _mm256_set1_epi16(1));
            // What the unsigned weights add per unit of Σx: Q4_0's offset 8, or 128 for flipped Q8_0 bytes.
            let offset: i32 = if Q4 { 8 } else { $q8_offset };
            let mut lanes = _mm256_setzero_ps();
            let full = kb / 8 * 8;
            for b0 in (0..full).step_by(8) {
                let base = w[b0 * bb..(b0 + 8) * bb].as_ptr();
                let mut parts = [_mm256_setzero_si256(); 8];
                let mut h = [0i16; 8];
                for j in 0..8 {
                    // SAFETY: a Q8Block holds 32 readable bytes; block j of the 8 is inside the row.
                    let xv = unsafe { _mm256_loadu_si256(x[b0 + j].qs.as_ptr() as *const __m256i) };
                    let blk = unsafe { base.add(j * bb) };
                    parts[j] = row1_block!($step, $dp, Q4, blk, xv, shifts, mask, ones);
                    // SAFETY: the block's first two bytes are its scale (little-endian, as x86 reads it).
                    h[j] = unsafe { (blk as *const i16).read_unaligned() };
                }
                let mut isum = reduce8(parts);
                if offset != 0 {
                    // SAFETY: xsum[b0..b0 + 8] is in bounds (asserted by the caller).
                    let s = unsafe { _mm256_loadu_si256(xsum[b0..b0 + 8].as_ptr() as *const __m256i) };
                    isum = _mm256_sub_epi32(isum, _mm256_mullo_epi32(s, _mm256_set1_epi32(offset)));
                }
                let dw = _mm256_cvtph_ps(_mm_setr_epi16(h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]));
                // SAFETY: xd[b0..b0 + 8] is in bounds (asserted by the caller).
                let dx = unsafe { _mm256_loadu_ps(xd[b0..b0 + 8].as_ptr()) };
                lanes = _mm256_add_ps(lanes, _mm256_mul_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(dw, dx)));
            }
            let mut p = [0f32; 8];
            // SAFETY: p holds 8 f32.
            unsafe { _mm256_storeu_ps(p.as_mut_ptr(), lanes) };
            let mut sum = 0f32;
            for v in p {
                sum += v;
            }
            for b in full..kb {
                let blk = &w[b * bb..(b + 1) * bb];
                // SAFETY: blk is one whole block; a Q8Block holds 32 readable bytes.
                let v = unsafe { _mm256_loadu_si256(x[b].qs.as_ptr() as *const __m256i) };
                let m = row1_block!($step, $dp, Q4, blk.as_ptr(), v, shifts, mask, ones);
                let isum = _mm256_extract_epi32::<0>(reduce8([m, m, m, m, m, m, m, m])) - offset * xsum[b];
                let d = crate::quant::f16_bits_to_f32(scale_bits(blk) as u16);
                sum += isum as f32 * (d * xd[b]);
            }
            sum
        }
    };
}

row1_kernel!(row1_avx2, "avx2,f16c", maddubs, _mm256_dpbusd_epi32, 0);
row1_kernel!(row1_vnni, "avx2,f16c,avx512vnni,avx512vl", dpbusd, _mm256_dpbusd_epi32, 128);
row1_kernel!(row1_avxvnni, "avx2,f16c,avxvnni", dpbusd, _mm256_dpbusd_avx_epi32, 128);

/// A weight block ready for `maddubs`: unsigned magnitudes and the signs to move onto the activations.
#[derive(Clone, Copy)]
struct Unpacked {
    /// Q8_0: |w|; Q4_0: the nibbles 0..15.
    mag: __m256i,
    /// Q8_0: w (its signs are applied to x); unused for Q4_0.
    sign: __m256i,
}

/// Unpack the weight block at `block` (a Q4_0 block when `Q4`, else Q8_0).
///
/// # Safety
/// The block's bytes (18 or 34) must be readable.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn unpack<const Q4: bool>(block: *const u8) -> Unpacked {
    if Q4 {
        // SAFETY (caller): the block has 18 readable bytes.
        let packed = unsafe { _mm_loadu_si128(block.add(2) as *const __m128i) };
        let mask = _mm_set1_epi8(0x0F);
        let lo = _mm_and_si128(packed, mask);
        let hi = _mm_and_si128(_mm_srli_epi16::<4>(packed), mask);
        let mag = _mm256_set_m128i(hi, lo);
        Unpacked { mag, sign: mag }
    } else {
        // SAFETY (caller): the block has 34 readable bytes.
        let w = unsafe { _mm256_loadu_si256(block.add(2) as *const __m256i) };
        Unpacked { mag: _mm256_sign_epi8(w, w), sign: w }
    }
}

/// Lane-wise totals of 8 vectors: `[Σa, Σb, …, Σh]` (integer, so exact in any order).
#[inline]
#[target_feature(enable = "avx2")]
fn reduce8(v: [__m256i; 8]) -> __m256i {
    let t0 = _mm256_hadd_epi32(v[0], v[1]);
    let t1 = _mm256_hadd_epi32(v[2], v[3]);
    let t2 = _mm256_hadd_epi32(v[4], v[5]);
    let t3 = _mm256_hadd_epi32(v[6], v[7]);
    let u0 = _mm256_hadd_epi32(t0, t1);
    let u1 = _mm256_hadd_epi32(t2, t3);
    _mm256_add_epi32(_mm256_permute2x128_si256::<0x20>(u0, u1), _mm256_permute2x128_si256::<0x31>(u0, u1))
}

#[inline]
fn scale_bits(block: &[u8]) -> i16 {
    i16::from_le_bytes([block[0], block[1]])
}

/// Blocks interleaved at a time: their weights (and scales) stay in L1 while every column visits them.
const CHUNK: usize = 16;

#[cfg(test)]
mod tests {
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::kernels::scalar::{self, block_sums, quantize_q8_0_activations};
    use crate::quant;
    use crate::GgmlType;

    fn random_row(rng: &mut SmallRng, n: usize) -> Vec<f32> {
        (0..n).map(|_| rng.gen_range(-3.0f32..3.0) * if rng.gen_bool(0.02) { 40.0 } else { 1.0 }).collect()
    }

    fn scalar_dot(ty: IntWeights, w: &[u8], x: &[Q8Block]) -> f32 {
        match ty {
            IntWeights::Q8_0 => scalar::dot_q8_0(w, x),
            IntWeights::Q4_0 => scalar::dot_q4_0(w, x),
        }
    }

    #[test]
    fn k_quant_tiles_are_bit_identical_to_scalar_dots() {
        if !crate::kernels::path_runs(
            "avx2",
            crate::kernels::x86::available(),
            "k_quant_tiles_are_bit_identical_to_scalar_dots",
        ) {
            return;
        }
        let mut rng = SmallRng::seed_from_u64(12);
        for (ty, &k) in [GgmlType::Q4K, GgmlType::Q6K].iter().flat_map(|t| [(*t, &256usize), (*t, &768)]) {
            let kb = k / 256;
            let rows: Vec<Vec<u8>> = (0..8)
                .map(|_| {
                    let mut w = vec![0u8; ty.row_size(k).unwrap()];
                    quant::quantize(ty, &random_row(&mut rng, k), &mut w).unwrap();
                    w
                })
                .collect();
            for ncols in [1usize, 3, 70] {
                let x: Vec<Q8KBlock> = (0..ncols)
                    .flat_map(|_| crate::kernels::quantize_q8_k_activations(&random_row(&mut rng, k)))
                    .collect();
                let mut out = vec![0f32; ncols * 8];
                let wr: [&[u8]; 8] = std::array::from_fn(|r| rows[r].as_slice());
                for step in Step::ALL {
                    if ty == GgmlType::Q4K {
                        if step.is_vnni()
                            && !crate::kernels::path_runs(
                                step.name(),
                                step.available(),
                                "k_quant_tiles_are_bit_identical_to_scalar_dots",
                            )
                        {
                            continue;
                        }
                        rows8_q4k(KSource::Rows(wr), &x, kb, &mut out, step);
                    } else {
                        if step.is_vnni()
                            && !crate::kernels::path_runs(
                                step.name(),
                                step.available(),
                                "k_quant_tiles_are_bit_identical_to_scalar_dots",
                            )
                        {
                            continue;
                        }
                        rows8_q6k(KSource::Rows(wr), &x, kb, &mut out, step);
                    }
                    for c in 0..ncols {
                        for r in 0..8 {
                            let xs = &x[c * kb..(c + 1) * kb];
                            let s = if ty == GgmlType::Q4K {
                                crate::kernels::kquants::dot_q4_k(&rows[r], xs)
                            } else {
                                crate::kernels::kquants::dot_q6_k(&rows[r], xs)
                            };
                            let v = out[c * 8 + r];
                            assert_eq!(
                                s.to_bits(),
                                v.to_bits(),
                                "{ty} step={step:?} k={k} ncols={ncols} r={r} c={c}: {s} vs {v}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn tiles_are_bit_identical_to_scalar_dots() {
        if !crate::kernels::path_runs(
            "avx2",
            crate::kernels::x86::available(),
            "tiles_are_bit_identical_to_scalar_dots",
        ) {
            return;
        }
        let mut rng = SmallRng::seed_from_u64(11);
        for (ty, gty) in [(IntWeights::Q8_0, GgmlType::Q8_0), (IntWeights::Q4_0, GgmlType::Q4_0)] {
            for &k in &[32usize, 96, 1024, 2080] {
                let kb = k / 32;
                let rows: Vec<Vec<u8>> = (0..8)
                    .map(|_| {
                        let mut w = vec![0u8; gty.row_size(k).unwrap()];
                        quant::quantize(gty, &random_row(&mut rng, k), &mut w).unwrap();
                        w
                    })
                    .collect();
                for ncols in [1usize, 2, 3, 8, 9, 17, 70] {
                    let x: Vec<Q8Block> =
                        (0..ncols).flat_map(|_| quantize_q8_0_activations(&random_row(&mut rng, k))).collect();
                    let xsum = block_sums(&x);
                    let xd: Vec<f32> = x.iter().map(|b| b.d).collect();
                    let mut out8 = vec![0f32; ncols * 8];
                    let w8: [&[u8]; 8] = std::array::from_fn(|r| rows[r].as_slice());
                    for step in Step::ALL {
                        if step.is_vnni()
                            && !crate::kernels::path_runs(
                                step.name(),
                                step.available(),
                                "tiles_are_bit_identical_to_scalar_dots",
                            )
                        {
                            continue;
                        }
                        rows8(ty, w8, &x, &xsum, kb, &mut out8, step);
                        for c in 0..ncols {
                            for r in 0..8 {
                                let s = scalar_dot(ty, &rows[r], &x[c * kb..(c + 1) * kb]);
                                let v = out8[c * 8 + r];
                                assert_eq!(
                                    s.to_bits(),
                                    v.to_bits(),
                                    "{ty:?} rows8 step={step:?} k={k} n={ncols} r={r} c={c}"
                                );
                            }
                        }
                        {
                            // The same rows repacked: the same bits.
                            let mut group = vec![0u8; 8 * kb * ty.block_bytes()];
                            crate::kernels::interleaved::interleave_x8(gty, &rows.concat(), kb, &mut group);
                            let mut packed_out = vec![0f32; ncols * 8];
                            packed8(ty, &group, &x, &xsum, kb, &mut packed_out, step);
                            for (i, (a, b)) in out8.iter().zip(&packed_out).enumerate() {
                                assert_eq!(a.to_bits(), b.to_bits(), "packed8 step={step:?} k={k} n={ncols} at {i}");
                            }
                        }
                    }
                    // row1 adds the same block products in another order (8 lanes, then the lanes): each
                    // of the two sums of kb terms is within (kb − 1)·2⁻²⁴·Σ|p_b| of the exact one.
                    for (r, wr) in rows.iter().enumerate() {
                        let s = scalar_dot(ty, wr, &x[..kb]);
                        let mag = scalar::dot_magnitude(wr, &x[..kb], ty == IntWeights::Q4_0);
                        let bound = 2.0 * kb as f64 * 2f64.powi(-24) * mag;
                        for step in Step::ALL {
                            if step.is_vnni()
                                && !crate::kernels::path_runs(
                                    step.name(),
                                    step.available(),
                                    "tiles_are_bit_identical_to_scalar_dots",
                                )
                            {
                                continue;
                            }
                            let v = row1(ty, wr, &x[..kb], &xd[..kb], &xsum[..kb], kb, step);
                            let diff = (s as f64 - v as f64).abs();
                            assert!(diff <= bound, "{ty:?} row1 step={step:?} k={k} r={r}: {s} vs {v} (bound {bound})");
                            if kb < 8 {
                                // No full step of 8 blocks: the products are added one by one, like the scalar.
                                assert_eq!(s.to_bits(), v.to_bits(), "{ty:?} row1 step={step:?} k={k} r={r}");
                            }
                        }
                    }
                }
            }
        }
    }
}
