//! aarch64 kernels over the `q4_kx8` and `q6_kx8` layouts of [`crate::kernels::interleaved`] (Q4_K and
//! Q6_K weights repacked 8 rows at a time) against Q8_K activations: one token ([`gemv_k_x8`], the twin of
//! [`crate::kernels::interleaved::gemv_k_x8`]) and 8-row batch tiles ([`rows8_q4k`], [`rows8_q6k`], the
//! twins of x86's `tiles::rows8_q4k`/`rows8_q6k`, taking the 8 rows packed or as plain model rows).
//!
//! Three tiers ([`Tier`]):
//! * **NEON** (armv8.0): `sdot` emulated exactly — `smull` of 4-byte groups against a broadcast activation
//!   group, `sadalp` into i32 pairs, one `addp` per sub-block to leave each row's sum in its own lane.
//! * **dotprod**: `sdot v.4s, w.16b, x.4b[lane]`: 16 bytes hold 4 consecutive weights of 4 rows, the lane
//!   picks the 4 matching activations, and each row's sum lands in its own lane.
//! * **i8mm**: the batch tiles take two activation rows per pass with `smmla` (2×8 by 8×2 → 2×2 i32):
//!   `zip1/zip2` of two 4-byte groups give each row 8 consecutive weights, matched by 8 consecutive
//!   activations of each of the two rows. One token has no second activation row to pair, so its gemv is
//!   the dotprod one (every i8mm CPU has dotprod).
//!
//! Every output is bit-identical to [`crate::kernels::kquants::dot_q4_k`]/[`dot_q6_k`] of its row: the
//! integer sums are exact (Q4_K levels 0..15 against the activations, scaled per sub-block, mins from the
//! activations' `bsums`; Q6_K levels minus 32, scaled per 16 values), and each row's lane then takes the
//! scalar code's float steps in its order, block after block from 0 (Q4_K: `d = d_w·d_x`,
//! `dmin = dmin_w·d_x`, `sum += d·isum − dmin·msum`; Q6_K: `sum += (d_w·d_x)·isum`), with separate
//! multiplies and adds (no fused multiply-add). Integer ranges are the scalar module's (all below 2³¹).
//!
//! [`dot_q6_k`]: crate::kernels::kquants::dot_q6_k

use std::arch::aarch64::*;
use std::arch::asm;

use super::f16::load8_f16;
use super::smmla;
pub use super::Tier;
use crate::kernels::interleaved::{Q4_K_X8_BLOCK_BYTES, Q6_K_X8_BLOCK_BYTES, X8_ROWS};
use crate::kernels::kquants::{Q8KBlock, Q4_K_BYTES, Q6_K_BYTES};
use crate::GgmlType;

/// Where the 8 rows of [`rows8_q4k`] and [`rows8_q6k`] come from.
pub enum KSource<'a> {
    /// Rows of the model (at least `kb` super-blocks each).
    Rows([&'a [u8]; 8]),
    /// One group in the type's layout of [`crate::kernels::interleaved`].
    Packed(&'a [u8]),
}

/// `out[g · 8 + r]` = row `r` of Q4_K or Q6_K group `g` · `x` (one row of `kb` Q8_K blocks), on `tier`
/// (which the CPU must support). Bit-identical to [`crate::kernels::interleaved::gemv_k_x8`].
pub fn gemv_k_x8(ty: GgmlType, groups: &[u8], x: &[Q8KBlock], kb: usize, out: &mut [f32], tier: Tier) {
    assert!(tier.available(), "gemv_k_x8: {tier:?} is not available on this CPU");
    assert!(matches!(ty, GgmlType::Q4K | GgmlType::Q6K), "gemv_k_x8: {ty}");
    assert!(x.len() >= kb && out.len().is_multiple_of(X8_ROWS));
    let block = X8_ROWS * ty.type_size();
    assert_eq!(groups.len(), out.len() / X8_ROWS * kb * block, "gemv_k_x8: whole groups of {kb} super-blocks");
    let x = &x[..kb];
    // SAFETY: the tier's target features were checked above (i8mm implies dotprod).
    unsafe {
        match (ty == GgmlType::Q4K, tier) {
            (true, Tier::Neon) => gemv_q4k_neon(groups, x, kb, out),
            (true, _) => gemv_q4k_sdot(groups, x, kb, out),
            (false, Tier::Neon) => gemv_q6k_neon(groups, x, kb, out),
            (false, _) => gemv_q6k_sdot(groups, x, kb, out),
        }
    }
}

/// `out[c · 8 + r]` = row `r` of 8 Q4_K rows · activation row `c` (`x`: `out.len() / 8` rows of `kb` Q8_K
/// blocks), on `tier` (which the CPU must support). Each output is bit-identical to
/// [`crate::kernels::kquants::dot_q4_k`] of its pair.
pub fn rows8_q4k(w: KSource<'_>, x: &[Q8KBlock], kb: usize, out: &mut [f32], tier: Tier) {
    check_tile(&w, Q4_K_BYTES, x, kb, out, tier);
    // SAFETY: the tier's target features were checked in `check_tile`, and the shapes.
    unsafe {
        match tier {
            Tier::Neon => tiles_q4k_neon(&w, x, kb, out),
            Tier::Dotprod => tiles_q4k_sdot(&w, x, kb, out),
            Tier::I8mm => tiles_q4k_smmla(&w, x, kb, out),
        }
    }
}

/// `out[c · 8 + r]` = row `r` of 8 Q6_K rows · activation row `c`, like [`rows8_q4k`]; each output is
/// bit-identical to [`crate::kernels::kquants::dot_q6_k`] of its pair.
pub fn rows8_q6k(w: KSource<'_>, x: &[Q8KBlock], kb: usize, out: &mut [f32], tier: Tier) {
    check_tile(&w, Q6_K_BYTES, x, kb, out, tier);
    // SAFETY: the tier's target features were checked in `check_tile`, and the shapes.
    unsafe {
        match tier {
            Tier::Neon => tiles_q6k_neon(&w, x, kb, out),
            Tier::Dotprod => tiles_q6k_sdot(&w, x, kb, out),
            Tier::I8mm => tiles_q6k_smmla(&w, x, kb, out),
        }
    }
}

fn check_tile(w: &KSource<'_>, bytes: usize, x: &[Q8KBlock], kb: usize, out: &[f32], tier: Tier) {
    assert!(tier.available(), "8-row K-quant tile: {tier:?} is not available on this CPU");
    let ncols = out.len() / X8_ROWS;
    assert!(out.len() == ncols * X8_ROWS && x.len() >= ncols * kb, "8-row K-quant tile: {ncols} activation rows");
    match w {
        KSource::Rows(rows) => assert!(rows.iter().all(|r| r.len() >= kb * bytes), "8 rows of {kb} super-blocks"),
        KSource::Packed(group) => assert_eq!(group.len(), kb * X8_ROWS * bytes, "one group of {kb} super-blocks"),
    }
}

// ---------------------------------------------------------------------------------------------------------
// Shared pieces

/// 16 bytes of `b` from `at`.
#[inline]
#[target_feature(enable = "neon")]
fn ld(b: &[u8], at: usize) -> uint8x16_t {
    assert!(at + 16 <= b.len());
    // SAFETY: b[at..at + 16] is in bounds (checked above); `ld1` has no alignment requirement.
    unsafe { vld1q_u8(b.as_ptr().add(at)) }
}

/// 16 activation quants from `q[at..]`.
#[inline]
#[target_feature(enable = "neon")]
fn ldx(q: &[i8; 256], at: usize) -> int8x16_t {
    assert!(at + 16 <= q.len());
    // SAFETY: q[at..at + 16] is in bounds (checked above).
    unsafe { vld1q_s8(q.as_ptr().add(at)) }
}

/// 8 activation quants of `a` and 8 of `b` from `at`: the two rows of an `smmla` right operand.
#[inline]
#[target_feature(enable = "neon")]
fn ldx_pair(a: &[i8; 256], b: &[i8; 256], at: usize) -> int8x16_t {
    assert!(at + 8 <= a.len());
    // SAFETY: a[at..at + 8] and b[at..at + 8] are in bounds (checked above; both are 256 long).
    unsafe { vcombine_s8(vld1_s8(a.as_ptr().add(at)), vld1_s8(b.as_ptr().add(at))) }
}

/// Rows 0..4 and 4..8 of 8 fp16 values at `at` (little-endian, row 0 first) as f32, converted as the
/// scalar code converts them.
#[inline]
#[target_feature(enable = "neon")]
fn f16x8(blk: &[u8], at: usize) -> [float32x4_t; 2] {
    assert!(at + 16 <= blk.len());
    // SAFETY: blk[at..at + 16] is in bounds (checked above) and NEON is enabled; `fcvtl` converts exactly
    // like the scalar code (NaNs included, see `super::f16`).
    let (lo, hi) = unsafe { load8_f16(blk.as_ptr().add(at)) };
    [lo, hi]
}

/// u8 lanes (rows 0..8) widened to two i32x4 (rows 0..4, 4..8).
#[inline]
#[target_feature(enable = "neon")]
fn widen_u8(v: uint8x8_t) -> [int32x4_t; 2] {
    let w = vmovl_u8(v);
    [vreinterpretq_s32_u32(vmovl_u16(vget_low_u16(w))), vreinterpretq_s32_u32(vmovl_high_u16(w))]
}

/// i8 lanes (rows 0..8) widened to two i32x4.
#[inline]
#[target_feature(enable = "neon")]
fn widen_s8(v: int8x8_t) -> [int32x4_t; 2] {
    let w = vmovl_s8(v);
    [vmovl_s16(vget_low_s16(w)), vmovl_high_s16(w)]
}

/// `[v₀, v₀, v₁, v₁]` and `[v₂, v₂, v₃, v₃]`: per-row values laid out like `smmla`'s 2×2 results (row-major,
/// two activation rows per weight row).
#[inline]
#[target_feature(enable = "neon")]
fn pairs(v: int32x4_t) -> [int32x4_t; 2] {
    [vzip1q_s32(v, v), vzip2q_s32(v, v)]
}

/// One super-block's float steps for the 8 rows (scalar order, see the module doc); `acc` (rows 0..4,
/// 4..8) is read from and written back to `out[0..8]`.
#[inline]
#[target_feature(enable = "neon")]
fn add_q4k(out: &mut [f32], s: &Q4kScales, xb: &Q8KBlock, isum: [int32x4_t; 2]) {
    assert!(out.len() >= 8);
    // Lane j % 4 of p[j / 4]: bsums[2j] + bsums[2j + 1], widened to i32 (`saddlp`, exact).
    // SAFETY: bsums holds 16 i16: both loads stay inside it.
    let p = unsafe { [vpaddlq_s16(vld1q_s16(xb.bsums.as_ptr())), vpaddlq_s16(vld1q_s16(xb.bsums.as_ptr().add(8)))] };
    let mut msum = [vdupq_n_s32(0); 2];
    for j in 0..8 {
        // Exact in i32 for any bsums: |m| < 64, |p| < 2¹⁶, eight terms.
        for (m, mins) in msum.iter_mut().zip(s.mins[j]) {
            *m = mla_lane(*m, mins, p[j / 4], j % 4);
        }
    }
    let dx = vdupq_n_f32(xb.d);
    for h in 0..2 {
        let d = vmulq_f32(s.dw[h], dx);
        let dmin = vmulq_f32(s.dminw[h], dx);
        let t = vsubq_f32(vmulq_f32(d, vcvtq_f32_s32(isum[h])), vmulq_f32(dmin, vcvtq_f32_s32(msum[h])));
        // SAFETY: out[4h..4h + 4] is in bounds (asserted above).
        unsafe {
            let p = out.as_mut_ptr().add(4 * h);
            vst1q_f32(p, vaddq_f32(vld1q_f32(p), t));
        }
    }
}

/// `acc + a · v[lane]` (lane < 4; a constant after inlining).
#[inline]
#[target_feature(enable = "neon")]
fn mla_lane(acc: int32x4_t, a: int32x4_t, v: int32x4_t, lane: usize) -> int32x4_t {
    match lane {
        0 => vmlaq_laneq_s32::<0>(acc, a, v),
        1 => vmlaq_laneq_s32::<1>(acc, a, v),
        2 => vmlaq_laneq_s32::<2>(acc, a, v),
        _ => vmlaq_laneq_s32::<3>(acc, a, v),
    }
}

/// Q6_K's float steps (`sum += (d_w·d_x)·isum`) for the 8 rows, in `out[0..8]`.
#[inline]
#[target_feature(enable = "neon")]
fn add_q6k(out: &mut [f32], dw: &[float32x4_t; 2], xb: &Q8KBlock, isum: [int32x4_t; 2]) {
    assert!(out.len() >= 8);
    let dx = vdupq_n_f32(xb.d);
    for (h, (dw, isum)) in dw.iter().zip(isum).enumerate() {
        let t = vmulq_f32(vmulq_f32(*dw, dx), vcvtq_f32_s32(isum));
        // SAFETY: out[4h..4h + 4] is in bounds (asserted above).
        unsafe {
            let p = out.as_mut_ptr().add(4 * h);
            vst1q_f32(p, vaddq_f32(vld1q_f32(p), t));
        }
    }
}

/// −32 · `bsums[j]` for the 16 sub-blocks of an activation block (exact: |bsum| < 2¹⁵).
#[inline]
#[target_feature(enable = "neon")]
fn neg32_bsums(xb: &Q8KBlock) -> [i32; 16] {
    let mut c = [0i32; 16];
    // SAFETY: bsums holds 16 i16 and c 16 i32: the loads and stores stay inside them.
    unsafe {
        let (b0, b1) = (vld1q_s16(xb.bsums.as_ptr()), vld1q_s16(xb.bsums.as_ptr().add(8)));
        let m = vdupq_n_s32(-32);
        let p = c.as_mut_ptr();
        vst1q_s32(p, vmulq_s32(vmovl_s16(vget_low_s16(b0)), m));
        vst1q_s32(p.add(4), vmulq_s32(vmovl_high_s16(b0), m));
        vst1q_s32(p.add(8), vmulq_s32(vmovl_s16(vget_low_s16(b1)), m));
        vst1q_s32(p.add(12), vmulq_s32(vmovl_high_s16(b1), m));
    }
    c
}

/// The scales of one `q4_kx8` super-block: sub-block scales and mins per row as i32 lanes (rows 0..4,
/// 4..8), the same scales laid out for `smmla` results, and the fp16 `d`, `dmin` as f32.
struct Q4kScales {
    sc: [[int32x4_t; 2]; 8],
    sc2: [[int32x4_t; 4]; 8],
    mins: [[int32x4_t; 2]; 8],
    dw: [float32x4_t; 2],
    dminw: [float32x4_t; 2],
}

/// Unpack the scales of one interleaved Q4_K super-block, 8 rows per operation: byte `k` of the rows' 12
/// scale bytes sits in 8 consecutive bytes (ggml's `get_scale_min_k4`, vectorised across rows).
#[inline]
#[target_feature(enable = "neon")]
fn q4k_scales(blk: &[u8]) -> Q4kScales {
    assert!(blk.len() >= Q4_K_X8_BLOCK_BYTES);
    let mut b = [vdup_n_u8(0); 12];
    for (k, v) in b.iter_mut().enumerate() {
        // SAFETY: byte k of the 8 rows is at 32 + 8k .. 40 + 8k, inside the block (asserted).
        *v = unsafe { vld1_u8(blk.as_ptr().add(32 + 8 * k)) };
    }
    let (m63, m15) = (vdup_n_u8(63), vdup_n_u8(15));
    let (mut sc, mut mins) = ([[vdupq_n_s32(0); 2]; 8], [[vdupq_n_s32(0); 2]; 8]);
    for j in 0..4 {
        sc[j] = widen_u8(vand_u8(b[j], m63));
        mins[j] = widen_u8(vand_u8(b[j + 4], m63));
        sc[j + 4] = widen_u8(vorr_u8(vand_u8(b[j + 8], m15), vshl_n_u8::<4>(vshr_n_u8::<6>(b[j]))));
        mins[j + 4] = widen_u8(vorr_u8(vshr_n_u8::<4>(b[j + 8]), vshl_n_u8::<4>(vshr_n_u8::<6>(b[j + 4]))));
    }
    let mut sc2 = [[vdupq_n_s32(0); 4]; 8];
    for (s2, s) in sc2.iter_mut().zip(&sc) {
        let ([a, b], [c, d]) = (pairs(s[0]), pairs(s[1]));
        *s2 = [a, b, c, d];
    }
    Q4kScales { sc, sc2, mins, dw: f16x8(blk, 0), dminw: f16x8(blk, 16) }
}

/// The scales of one `q6_kx8` super-block: the 16 signed group scales per row as i32 lanes, the same for
/// `smmla` results, and the fp16 `d` as f32.
struct Q6kScales {
    sc: [[int32x4_t; 2]; 16],
    sc2: [[int32x4_t; 4]; 16],
    dw: [float32x4_t; 2],
}

/// Scale `k` (< 16) of the 8 rows of a `q6_kx8` super-block as i32 lanes (rows 0..4, 4..8).
#[inline]
#[target_feature(enable = "neon")]
fn q6k_scale(blk: &[u8], k: usize) -> [int32x4_t; 2] {
    assert!(blk.len() >= Q6_K_X8_BLOCK_BYTES && k < 16);
    // SAFETY: scale k of the 8 rows is at 16 + 8k .. 24 + 8k, inside the block (asserted).
    widen_s8(unsafe { vld1_s8(blk.as_ptr().add(16 + 8 * k) as *const i8) })
}

#[inline]
#[target_feature(enable = "neon")]
fn q6k_scales(blk: &[u8]) -> Q6kScales {
    assert!(blk.len() >= Q6_K_X8_BLOCK_BYTES);
    let mut sc = [[vdupq_n_s32(0); 2]; 16];
    let mut sc2 = [[vdupq_n_s32(0); 4]; 16];
    for k in 0..16 {
        sc[k] = q6k_scale(blk, k);
        let ([a, b], [c, d]) = (pairs(sc[k][0]), pairs(sc[k][1]));
        sc2[k] = [a, b, c, d];
    }
    Q6kScales { sc, sc2, dw: f16x8(blk, 0) }
}

/// The 6-bit levels minus 32 of the four quarters of one `q6_kx8` unit (`at`: its first byte), for rows
/// 0..4 (`half` 0) or 4..8: quarter `k` from the low (`k` < 2) or high nibble of run `k & 1` and bits
/// `2k, 2k + 1` of run 2, exactly as the scalar dot assembles them.
#[inline]
#[target_feature(enable = "neon")]
fn q6_unit(blk: &[u8], at: usize, half: usize) -> [int8x16_t; 4] {
    let off = vdupq_n_s8(32);
    q6_unit_raw(blk, at, half).map(|v| vsubq_s8(v, off))
}

/// [`q6_unit`] without the −32: the levels 0..63 (the gemv subtracts 32 · the activations' `bsums`).
#[inline]
#[target_feature(enable = "neon")]
fn q6_unit_raw(blk: &[u8], at: usize, half: usize) -> [int8x16_t; 4] {
    let (l0, l1, hb) = (ld(blk, at + 16 * half), ld(blk, at + 32 + 16 * half), ld(blk, at + 64 + 16 * half));
    // The 2-bit pieces for quarters 0, 2 (`a`) and 1, 3 (`b`) at bits 0, 1 and 4, 5, the other bits 0.
    let m33 = vdupq_n_u8(0x33);
    let (a, b) = (vandq_u8(hb, m33), vandq_u8(vshrq_n_u8::<2>(hb), m33));
    // `sli` keeps the run's low nibble and puts bits 0..4 of the piece above it (bits 2, 3 are 0, so the
    // level has 6 bits); `sri` keeps bits 4..8 of the piece (4, 5) and puts the run's high nibble below.
    let q = [vsliq_n_u8::<4>(l0, a), vsliq_n_u8::<4>(l1, b), vsriq_n_u8::<4>(a, l0), vsriq_n_u8::<4>(b, l1)];
    q.map(|v| vreinterpretq_s8_u8(v))
}

/// The low- and high-nibble levels of group `g` of chunk `c` of one `q4_kx8` super-block, rows 0..4
/// (`half` 0) or 4..8: elements `64c + 4g ..` and `64c + 32 + 4g ..` of each row.
#[inline]
#[target_feature(enable = "neon")]
fn q4k_level(blk: &[u8], c: usize, g: usize, half: usize) -> [int8x16_t; 2] {
    let v = ld(blk, 128 + 256 * c + 32 * g + 16 * half);
    [vreinterpretq_s8_u8(vandq_u8(v, vdupq_n_u8(0x0F))), vreinterpretq_s8_u8(vshrq_n_u8::<4>(v))]
}

/// Every [`q4k_level`] of a super-block (`[8c + g][half]`), unpacked once for all the activation rows of a
/// tile.
type Q4kLevels = [[[int8x16_t; 2]; 2]; 32];

#[inline]
#[target_feature(enable = "neon")]
fn q4k_levels(blk: &[u8]) -> Q4kLevels {
    let mut lv = [[[vdupq_n_s8(0); 2]; 2]; 32];
    for (i, l) in lv.iter_mut().enumerate() {
        *l = [q4k_level(blk, i / 8, i % 8, 0), q4k_level(blk, i / 8, i % 8, 1)];
    }
    lv
}

/// Every [`q6_unit`] of a super-block (`[8hh + g][half]`), unpacked once for a tile.
type Q6kLevels = [[[int8x16_t; 4]; 2]; 16];

#[inline]
#[target_feature(enable = "neon")]
fn q6k_levels(blk: &[u8]) -> Q6kLevels {
    let mut lv = [[[vdupq_n_s8(0); 4]; 2]; 16];
    for (u, l) in lv.iter_mut().enumerate() {
        *l = [q6_unit(blk, 144 + 96 * u, 0), q6_unit(blk, 144 + 96 * u, 1)];
    }
    lv
}

/// One 8-row super-block of plain rows put in the interleaved layout (only the super-block's bytes move,
/// in 4-byte runs), so the packed kernels serve [`KSource::Rows`] too.
fn pack_q4k(rows: &[&[u8]; 8], b: usize, out: &mut [u8; Q4_K_X8_BLOCK_BYTES]) {
    for (r, row) in rows.iter().enumerate() {
        let src = &row[b * Q4_K_BYTES..(b + 1) * Q4_K_BYTES];
        out[2 * r..2 * r + 2].copy_from_slice(&src[0..2]);
        out[16 + 2 * r..18 + 2 * r].copy_from_slice(&src[2..4]);
        for k in 0..12 {
            out[32 + 8 * k + r] = src[4 + k];
        }
        for (q, run) in src[16..].chunks_exact(4).enumerate() {
            out[128 + 32 * q + 4 * r..132 + 32 * q + 4 * r].copy_from_slice(run);
        }
    }
}

/// [`pack_q4k`] for Q6_K.
fn pack_q6k(rows: &[&[u8]; 8], b: usize, out: &mut [u8; Q6_K_X8_BLOCK_BYTES]) {
    for (r, row) in rows.iter().enumerate() {
        let src = &row[b * Q6_K_BYTES..(b + 1) * Q6_K_BYTES];
        for (group, run) in src[..128].chunks_exact(4).enumerate() {
            // ql group 16h + 8kk + g is run kk of unit 8h + g.
            let (h, kk, g) = (group / 16, (group % 16) / 8, group % 8);
            let at = 144 + 96 * (8 * h + g) + 32 * kk + 4 * r;
            out[at..at + 4].copy_from_slice(run);
        }
        for (group, run) in src[128..192].chunks_exact(4).enumerate() {
            let at = 144 + 96 * group + 64 + 4 * r;
            out[at..at + 4].copy_from_slice(run);
        }
        for k in 0..16 {
            out[16 + 8 * k + r] = src[192 + k];
        }
        out[2 * r..2 * r + 2].copy_from_slice(&src[208..210]);
    }
}

/// Super-block `b` of the 8 rows in the packed layout: a slice of the group, or the rows packed into `buf`.
fn q4k_block<'a>(w: &'a KSource<'_>, b: usize, buf: &'a mut [u8; Q4_K_X8_BLOCK_BYTES]) -> &'a [u8] {
    match w {
        KSource::Packed(group) => &group[b * Q4_K_X8_BLOCK_BYTES..(b + 1) * Q4_K_X8_BLOCK_BYTES],
        KSource::Rows(rows) => {
            pack_q4k(rows, b, buf);
            &buf[..]
        }
    }
}

fn q6k_block<'a>(w: &'a KSource<'_>, b: usize, buf: &'a mut [u8; Q6_K_X8_BLOCK_BYTES]) -> &'a [u8] {
    match w {
        KSource::Packed(group) => &group[b * Q6_K_X8_BLOCK_BYTES..(b + 1) * Q6_K_X8_BLOCK_BYTES],
        KSource::Rows(rows) => {
            pack_q6k(rows, b, buf);
            &buf[..]
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// The 4-row step: `acc` lane r (row r of 4) += Σ_t w[4r + t] · x[4·L + t], exact.

/// dotprod: one `sdot` by element.
#[inline]
#[target_feature(enable = "neon,dotprod")]
fn step_sdot<const L: i32>(mut acc: int32x4_t, w: int8x16_t, x: int8x16_t) -> int32x4_t {
    // SAFETY: `sdot` only reads and writes the named vector registers; the enclosing function is compiled
    // with `dotprod`, so it only runs where the instruction exists (callers check `dotprod_available`).
    unsafe {
        asm!(
            "sdot {acc:v}.4s, {w:v}.16b, {x:v}.4b[{l}]",
            acc = inout(vreg) acc,
            w = in(vreg) w,
            x = in(vreg) x,
            l = const L,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    acc
}

#[inline]
#[target_feature(enable = "neon,dotprod")]
fn zero_sdot() -> int32x4_t {
    vdupq_n_s32(0)
}

/// An accumulator whose reduced sum starts at `c` (the same in every lane).
#[inline]
#[target_feature(enable = "neon,dotprod")]
fn start_sdot(c: int32x4_t) -> int32x4_t {
    c
}

#[inline]
#[target_feature(enable = "neon,dotprod")]
fn reduce_sdot(acc: int32x4_t) -> int32x4_t {
    acc
}

/// NEON: the 16 products widened exactly (`smull`, |p| ≤ 2¹⁴) and summed in pairs into i32: rows 0, 1 in
/// lanes (0, 1), (2, 3) of the first accumulator, rows 2, 3 in the second; [`reduce_neon`] adds the pairs.
#[inline]
#[target_feature(enable = "neon")]
fn step_neon<const L: i32>(acc: (int32x4_t, int32x4_t), w: int8x16_t, x: int8x16_t) -> (int32x4_t, int32x4_t) {
    let xd = vreinterpretq_s8_s32(vdupq_laneq_s32::<L>(vreinterpretq_s32_s8(x)));
    (vpadalq_s16(acc.0, vmull_s8(vget_low_s8(w), vget_low_s8(xd))), vpadalq_s16(acc.1, vmull_high_s8(w, xd)))
}

#[inline]
#[target_feature(enable = "neon")]
fn zero_neon() -> (int32x4_t, int32x4_t) {
    (vdupq_n_s32(0), vdupq_n_s32(0))
}

/// An accumulator whose reduced sum starts at `c` (the same in every lane): `c` in the even lanes, which
/// [`reduce_neon`] adds to the odd ones.
#[inline]
#[target_feature(enable = "neon")]
fn start_neon(c: int32x4_t) -> (int32x4_t, int32x4_t) {
    let even = vreinterpretq_s32_u64(vdupq_n_u64(0xFFFF_FFFF));
    let c = vandq_s32(c, even);
    (c, c)
}

#[inline]
#[target_feature(enable = "neon")]
fn reduce_neon(acc: (int32x4_t, int32x4_t)) -> int32x4_t {
    vpaddq_s32(acc.0, acc.1)
}

/// `$body!(g, L)` for the 8 groups `g = 4·$q + L` of the activation vector `$q` (lane `L` a literal).
macro_rules! lanes {
    ($q:expr, $body:ident) => {
        $body!(4 * $q, 0);
        $body!(4 * $q + 1, 1);
        $body!(4 * $q + 2, 2);
        $body!(4 * $q + 3, 3);
    };
}

/// The integer sums of one packed super-block against one activation row, and the gemv and tile drivers
/// around them, for one 4-row step (`$step`, its accumulator's `$zero` and `$reduce`) compiled with `$feat`.
macro_rules! step_kernels {
    ($feat:literal, $step:ident, $zero:ident, $start:ident, $reduce:ident,
     $q4isum:ident, $q6isum:ident, $gemv4:ident, $gemv6:ident, $tiles4:ident, $tiles6:ident) => {
        /// Rows 0..4 and 4..8's `Σ_j sc_j · Σ_{i∈j} q_i x_i` of one `q4_kx8` super-block (`lv(c, g, half)`:
        /// its [`q4k_level`]s).
        #[inline]
        #[target_feature(enable = $feat)]
        fn $q4isum(lv: impl Fn(usize, usize, usize) -> [int8x16_t; 2], q: &[i8; 256], s: &Q4kScales) -> [int32x4_t; 2] {
            let mut isum = [vdupq_n_s32(0); 2];
            for c in 0..4 {
                // Sub-blocks 2c (low nibbles, elements 64c + 4g + t) and 2c + 1 (high, 64c + 32 + 4g + t).
                let (mut lo, mut hi) = ([$zero(); 2], [$zero(); 2]);
                for xq in 0..2 {
                    let (xl, xh) = (ldx(q, 64 * c + 16 * xq), ldx(q, 64 * c + 32 + 16 * xq));
                    macro_rules! group {
                        ($g:expr, $l:literal) => {
                            for h in 0..2 {
                                let [wl, wh] = lv(c, $g, h);
                                lo[h] = $step::<$l>(lo[h], wl, xl);
                                hi[h] = $step::<$l>(hi[h], wh, xh);
                            }
                        };
                    }
                    lanes!(xq, group);
                }
                for h in 0..2 {
                    isum[h] = vmlaq_s32(isum[h], $reduce(lo[h]), s.sc[2 * c][h]);
                    isum[h] = vmlaq_s32(isum[h], $reduce(hi[h]), s.sc[2 * c + 1][h]);
                }
            }
            isum
        }

        /// Rows 0..4 and 4..8's `Σ_s sc_s · (start(s) + Σ_{i∈s} l_i x_i)` of one `q6_kx8` super-block
        /// (`lv(u, half)`: the levels `l` of unit `u`, [`q6_unit`] (`start` 0) or [`q6_unit_raw`] with
        /// `start(s)` = −32 · Σ_{i∈s} x_i, both `Σ_{i∈s} (q_i − 32) x_i`, exactly).
        #[inline]
        #[target_feature(enable = $feat)]
        fn $q6isum(
            lv: impl Fn(usize, usize) -> [int8x16_t; 4],
            start: impl Fn(usize) -> int32x4_t,
            q: &[i8; 256],
            sc: impl Fn(usize) -> [int32x4_t; 2],
        ) -> [int32x4_t; 2] {
            let mut isum = [vdupq_n_s32(0); 2];
            for hh in 0..2 {
                // Groups 4·gh .. 4·gh + 4 of quarter k: elements 128hh + 32k + 16gh .., scale 8hh + 2k + gh.
                for gh in 0..2 {
                    let xv: [int8x16_t; 4] = [
                        ldx(q, 128 * hh + 16 * gh),
                        ldx(q, 128 * hh + 32 + 16 * gh),
                        ldx(q, 128 * hh + 64 + 16 * gh),
                        ldx(q, 128 * hh + 96 + 16 * gh),
                    ];
                    let mut acc: [[_; 2]; 4] = std::array::from_fn(|k| {
                        let a = $start(start(8 * hh + 2 * k + gh));
                        [a, a]
                    });
                    macro_rules! group {
                        ($g:expr, $l:literal) => {
                            for h in 0..2 {
                                let v = lv(8 * hh + $g, h);
                                for k in 0..4 {
                                    acc[k][h] = $step::<$l>(acc[k][h], v[k], xv[k]);
                                }
                            }
                        };
                    }
                    lanes!(gh, group);
                    for (k, a) in acc.iter().enumerate() {
                        let sc = sc(8 * hh + 2 * k + gh);
                        for h in 0..2 {
                            isum[h] = vmlaq_s32(isum[h], $reduce(a[h]), sc[h]);
                        }
                    }
                }
            }
            isum
        }

        #[target_feature(enable = $feat)]
        fn $gemv4(groups: &[u8], x: &[Q8KBlock], kb: usize, out: &mut [f32]) {
            for (g, o) in groups.chunks_exact(kb * Q4_K_X8_BLOCK_BYTES).zip(out.chunks_exact_mut(X8_ROWS)) {
                o.fill(0.0);
                for (blk, xb) in g.chunks_exact(Q4_K_X8_BLOCK_BYTES).zip(x) {
                    let blk: &[u8; Q4_K_X8_BLOCK_BYTES] = blk.try_into().unwrap();
                    let s = q4k_scales(blk);
                    add_q4k(o, &s, xb, $q4isum(|c, g, h| q4k_level(blk, c, g, h), &xb.qs, &s));
                }
            }
        }

        #[target_feature(enable = $feat)]
        fn $gemv6(groups: &[u8], x: &[Q8KBlock], kb: usize, out: &mut [f32]) {
            for (g, o) in groups.chunks_exact(kb * Q6_K_X8_BLOCK_BYTES).zip(out.chunks_exact_mut(X8_ROWS)) {
                o.fill(0.0);
                for (blk, xb) in g.chunks_exact(Q6_K_X8_BLOCK_BYTES).zip(x) {
                    // Each scale is loaded where it is used (fewer registers live than all 16 at once).
                    let blk: &[u8; Q6_K_X8_BLOCK_BYTES] = blk.try_into().unwrap();
                    let c = neg32_bsums(xb);
                    let start = |j: usize| {
                        // SAFETY: j < 16 (the sub-blocks of a super-block).
                        unsafe { vld1q_dup_s32(c.as_ptr().add(j)) }
                    };
                    let isum = $q6isum(|u, h| q6_unit_raw(blk, 144 + 96 * u, h), start, &xb.qs, |k| q6k_scale(blk, k));
                    add_q6k(o, &f16x8(blk, 0), xb, isum);
                }
            }
        }

        /// Super-block after super-block (each unpacked once), every activation row in turn.
        #[target_feature(enable = $feat)]
        fn $tiles4(w: &KSource<'_>, x: &[Q8KBlock], kb: usize, out: &mut [f32]) {
            out.fill(0.0);
            let mut buf = [0u8; Q4_K_X8_BLOCK_BYTES];
            for b in 0..kb {
                let blk = q4k_block(w, b, &mut buf);
                let (s, lv) = (q4k_scales(blk), q4k_levels(blk));
                for (c, o) in out.chunks_exact_mut(X8_ROWS).enumerate() {
                    let xb = &x[c * kb + b];
                    add_q4k(o, &s, xb, $q4isum(|c, g, h| lv[8 * c + g][h], &xb.qs, &s));
                }
            }
        }

        #[target_feature(enable = $feat)]
        fn $tiles6(w: &KSource<'_>, x: &[Q8KBlock], kb: usize, out: &mut [f32]) {
            out.fill(0.0);
            let mut buf = [0u8; Q6_K_X8_BLOCK_BYTES];
            for b in 0..kb {
                let blk = q6k_block(w, b, &mut buf);
                let (s, lv) = (q6k_scales(blk), q6k_levels(blk));
                for (c, o) in out.chunks_exact_mut(X8_ROWS).enumerate() {
                    let xb = &x[c * kb + b];
                    add_q6k(o, &s.dw, xb, $q6isum(|u, h| lv[u][h], |_| vdupq_n_s32(0), &xb.qs, |k| s.sc[k]));
                }
            }
        }
    };
}

step_kernels!(
    "neon",
    step_neon,
    zero_neon,
    start_neon,
    reduce_neon,
    q4k_isum_neon,
    q6k_isum_neon,
    gemv_q4k_neon,
    gemv_q6k_neon,
    tiles_q4k_neon,
    tiles_q6k_neon
);
step_kernels!(
    "neon,dotprod",
    step_sdot,
    zero_sdot,
    start_sdot,
    reduce_sdot,
    q4k_isum_sdot,
    q6k_isum_sdot,
    gemv_q4k_sdot,
    gemv_q6k_sdot,
    tiles_q4k_sdot,
    tiles_q6k_sdot
);

// ---------------------------------------------------------------------------------------------------------
// i8mm: two activation rows per pass

/// Per-row sums of two activation rows `a`, `b` from `smmla` accumulators over row pairs (01, 23, 45, 67;
/// lanes `[r·a, r·b, (r+1)·a, (r+1)·b]`): rows 0..4 and 4..8 against `a`, then against `b`.
#[inline]
#[target_feature(enable = "neon")]
fn unpair(acc: &[int32x4_t; 4]) -> ([int32x4_t; 2], [int32x4_t; 2]) {
    ([vuzp1q_s32(acc[0], acc[1]), vuzp1q_s32(acc[2], acc[3])], [vuzp2q_s32(acc[0], acc[1]), vuzp2q_s32(acc[2], acc[3])])
}

/// The 8-byte rows of `smmla` left operands from two 4-byte groups of 4 rows (`p`: group g, `q`: group
/// g + 1): rows (0, 1) and rows (2, 3), each row's 8 consecutive weights.
#[inline]
#[target_feature(enable = "neon")]
fn zip_groups(p: int8x16_t, q: int8x16_t) -> [int8x16_t; 2] {
    let (p, q) = (vreinterpretq_u32_s8(p), vreinterpretq_u32_s8(q));
    [vreinterpretq_s8_u32(vzip1q_u32(p, q)), vreinterpretq_s8_u32(vzip2q_u32(p, q))]
}

/// The four `smmla` left operands (rows 01, 23, 45, 67) of groups g (`p`: rows 0..4, 4..8) and g + 1 (`q`).
#[inline]
#[target_feature(enable = "neon")]
fn zip8(p: [int8x16_t; 2], q: [int8x16_t; 2]) -> [int8x16_t; 4] {
    let ([a, b], [c, d]) = (zip_groups(p[0], q[0]), zip_groups(p[1], q[1]));
    [a, b, c, d]
}

/// `acc[i] += rows (2i, 2i + 1) · [a; b]` (`w`: the operands of [`zip8`]).
#[inline]
#[target_feature(enable = "neon,i8mm")]
fn mma8(acc: &mut [int32x4_t; 4], w: &[int8x16_t; 4], x: int8x16_t) {
    for (a, w) in acc.iter_mut().zip(w) {
        *a = smmla(*a, *w, x);
    }
}

/// The `smmla` operands of one `q4_kx8` super-block, zipped once for a tile: `[4c + p][low/high]` for
/// groups 2p and 2p + 1 of chunk `c`.
type Q4kPairs = [[[int8x16_t; 4]; 2]; 16];

#[inline]
#[target_feature(enable = "neon")]
fn q4k_pairs(blk: &[u8]) -> Q4kPairs {
    let mut z = [[[vdupq_n_s8(0); 4]; 2]; 16];
    for (i, z) in z.iter_mut().enumerate() {
        let (c, g) = (i / 4, 2 * (i % 4));
        let (p0, p1) = (q4k_level(blk, c, g, 0), q4k_level(blk, c, g, 1));
        let (q0, q1) = (q4k_level(blk, c, g + 1, 0), q4k_level(blk, c, g + 1, 1));
        for (lh, z) in z.iter_mut().enumerate() {
            *z = zip8([p0[lh], p1[lh]], [q0[lh], q1[lh]]);
        }
    }
    z
}

/// [`q4k_isum_sdot`] for activation rows `a` and `b` at once (`z`: the super-block's [`q4k_pairs`]).
#[inline]
#[target_feature(enable = "neon,i8mm")]
fn q4k_isum_smmla(z: &Q4kPairs, a: &[i8; 256], b: &[i8; 256], s: &Q4kScales) -> ([int32x4_t; 2], [int32x4_t; 2]) {
    let mut isum = [vdupq_n_s32(0); 4];
    for c in 0..4 {
        let (mut lo, mut hi) = ([vdupq_n_s32(0); 4], [vdupq_n_s32(0); 4]);
        for p in 0..4 {
            // Groups 2p and 2p + 1: elements 64c + 8p .. + 8 (low nibbles) and 64c + 32 + 8p .. (high).
            mma8(&mut lo, &z[4 * c + p][0], ldx_pair(a, b, 64 * c + 8 * p));
            mma8(&mut hi, &z[4 * c + p][1], ldx_pair(a, b, 64 * c + 32 + 8 * p));
        }
        for i in 0..4 {
            isum[i] = vmlaq_s32(isum[i], lo[i], s.sc2[2 * c][i]);
            isum[i] = vmlaq_s32(isum[i], hi[i], s.sc2[2 * c + 1][i]);
        }
    }
    unpair(&isum)
}

/// The `smmla` operands of one `q6_kx8` super-block, zipped once for a tile: `[i][k]` for quarter `k` of
/// units 2i and 2i + 1 (groups g, g + 1 of half i / 4, g = 2·(i mod 4)).
type Q6kPairs = [[[int8x16_t; 4]; 4]; 8];

#[inline]
#[target_feature(enable = "neon")]
fn q6k_pairs(blk: &[u8]) -> Q6kPairs {
    let mut z = [[[vdupq_n_s8(0); 4]; 4]; 8];
    for (i, z) in z.iter_mut().enumerate() {
        let (p, q) = (144 + 96 * (2 * i), 144 + 96 * (2 * i + 1));
        let (p0, p1) = (q6_unit(blk, p, 0), q6_unit(blk, p, 1));
        let (q0, q1) = (q6_unit(blk, q, 0), q6_unit(blk, q, 1));
        for (k, z) in z.iter_mut().enumerate() {
            *z = zip8([p0[k], p1[k]], [q0[k], q1[k]]);
        }
    }
    z
}

/// [`q6k_isum_sdot`] for activation rows `a` and `b` at once (`z`: the super-block's [`q6k_pairs`]).
#[inline]
#[target_feature(enable = "neon,i8mm")]
fn q6k_isum_smmla(z: &Q6kPairs, a: &[i8; 256], b: &[i8; 256], s: &Q6kScales) -> ([int32x4_t; 2], [int32x4_t; 2]) {
    let mut isum = [vdupq_n_s32(0); 4];
    for hh in 0..2 {
        for gh in 0..2 {
            let mut acc = [[vdupq_n_s32(0); 4]; 4];
            for pp in 0..2 {
                // Groups g and g + 1 of the four quarters: elements 128hh + 32k + 4g .. + 8.
                let g = 4 * gh + 2 * pp;
                for (k, acc) in acc.iter_mut().enumerate() {
                    mma8(acc, &z[(8 * hh + g) / 2][k], ldx_pair(a, b, 128 * hh + 32 * k + 4 * g));
                }
            }
            for (k, acc) in acc.iter().enumerate() {
                for i in 0..4 {
                    isum[i] = vmlaq_s32(isum[i], acc[i], s.sc2[8 * hh + 2 * k + gh][i]);
                }
            }
        }
    }
    unpair(&isum)
}

/// Activation rows in pairs (an odd last row paired with itself, its second result dropped).
#[target_feature(enable = "neon,i8mm")]
fn tiles_q4k_smmla(w: &KSource<'_>, x: &[Q8KBlock], kb: usize, out: &mut [f32]) {
    out.fill(0.0);
    let ncols = out.len() / X8_ROWS;
    let mut buf = [0u8; Q4_K_X8_BLOCK_BYTES];
    for b in 0..kb {
        let blk = q4k_block(w, b, &mut buf);
        let (s, z) = (q4k_scales(blk), q4k_pairs(blk));
        for c in (0..ncols).step_by(2) {
            let d = (c + 1).min(ncols - 1);
            let (xa, xd) = (&x[c * kb + b], &x[d * kb + b]);
            let (ia, id) = q4k_isum_smmla(&z, &xa.qs, &xd.qs, &s);
            add_q4k(&mut out[c * X8_ROWS..], &s, xa, ia);
            if d != c {
                add_q4k(&mut out[d * X8_ROWS..], &s, xd, id);
            }
        }
    }
}

#[target_feature(enable = "neon,i8mm")]
fn tiles_q6k_smmla(w: &KSource<'_>, x: &[Q8KBlock], kb: usize, out: &mut [f32]) {
    out.fill(0.0);
    let ncols = out.len() / X8_ROWS;
    let mut buf = [0u8; Q6_K_X8_BLOCK_BYTES];
    for b in 0..kb {
        let blk = q6k_block(w, b, &mut buf);
        let (s, z) = (q6k_scales(blk), q6k_pairs(blk));
        for c in (0..ncols).step_by(2) {
            let d = (c + 1).min(ncols - 1);
            let (xa, xd) = (&x[c * kb + b], &x[d * kb + b]);
            let (ia, id) = q6k_isum_smmla(&z, &xa.qs, &xd.qs, &s);
            add_q6k(&mut out[c * X8_ROWS..], &s.dw, xa, ia);
            if d != c {
                add_q6k(&mut out[d * X8_ROWS..], &s.dw, xd, id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::kernels::interleaved;
    use crate::kernels::kquants::{self, quantize_q8_k_activations};
    use crate::kernels::matmul::{matmul, matmul_shared};
    use crate::quant::{self, f32_to_f16_bits};
    use crate::tensor::Matrix;

    const TYPES: [GgmlType; 2] = [GgmlType::Q4K, GgmlType::Q6K];

    fn scalar_dot(ty: GgmlType, w: &[u8], x: &[Q8KBlock]) -> f32 {
        if ty == GgmlType::Q4K {
            kquants::dot_q4_k(w, x)
        } else {
            kquants::dot_q6_k(w, x)
        }
    }

    /// How the test weights are made: quantized floats (with outliers), arbitrary bytes with finite fp16
    /// scales, or the extremes (every level and scale at its largest magnitude, or levels at 0).
    #[derive(Debug, Clone, Copy)]
    enum Kind {
        Quantized,
        RandomBytes,
        Extreme,
    }

    /// `m` rows of `kb` super-blocks of `ty`.
    fn weight_rows(rng: &mut SmallRng, ty: GgmlType, m: usize, kb: usize, kind: Kind) -> Vec<u8> {
        let (bb, k) = (ty.type_size(), kb * 256);
        let mut w = vec![0u8; m * kb * bb];
        match kind {
            Kind::Quantized => {
                let big = |rng: &mut SmallRng| if rng.gen_bool(0.02) { 40.0 } else { 1.0 };
                let wf: Vec<f32> = (0..m * k).map(|_| rng.gen_range(-1.0f32..1.0) * big(rng)).collect();
                quant::quantize_rows(ty, &wf, k, &mut w).unwrap();
                return w;
            }
            Kind::RandomBytes => rng.fill(&mut w[..]),
            Kind::Extreme => {
                for b in w.chunks_exact_mut(bb) {
                    b.fill(if rng.gen_bool(0.5) { 0xFF } else { 0x00 });
                    if ty == GgmlType::Q6K {
                        // Scales of −128 or 127, levels all 63 (+31) or all 0 (−32).
                        b[192..208].fill(if rng.gen_bool(0.5) { 0x80 } else { 0x7F });
                    } else {
                        b[4..16].fill(0xFF); // scales and mins 63
                    }
                }
            }
        }
        let f16s: &[usize] = if ty == GgmlType::Q4K { &[0, 2] } else { &[208] };
        for b in w.chunks_exact_mut(bb) {
            for &at in f16s {
                b[at..at + 2].copy_from_slice(&f32_to_f16_bits(rng.gen_range(-0.01f32..0.01)).to_le_bytes());
            }
        }
        w
    }

    /// `n` activation rows of `kb` blocks: quantized floats (with outliers and an all-zero block), or raw
    /// quants (−128 included) with matching `bsums`, or all quants at −128 / 127.
    fn activations(rng: &mut SmallRng, n: usize, kb: usize, kind: Kind) -> Vec<Q8KBlock> {
        if let Kind::Quantized = kind {
            let mut xf: Vec<f32> = (0..n * kb * 256)
                .map(|_| rng.gen_range(-3.0f32..3.0) * if rng.gen_bool(0.02) { 40.0 } else { 1.0 })
                .collect();
            let z = rng.gen_range(0..n * kb);
            xf[z * 256..(z + 1) * 256].fill(0.0);
            return quantize_q8_k_activations(&xf);
        }
        (0..n * kb)
            .map(|_| {
                let mut qs = [0i8; 256];
                match kind {
                    Kind::Extreme => qs.fill(if rng.gen_bool(0.5) { -128 } else { 127 }),
                    _ => rng.fill(&mut qs[..]),
                }
                let mut bsums = [0i16; 16];
                for (s, q) in bsums.iter_mut().zip(qs.chunks_exact(16)) {
                    *s = q.iter().map(|&v| v as i16).sum();
                }
                Q8KBlock { d: rng.gen_range(-0.05f32..0.05), qs, bsums }
            })
            .collect()
    }

    #[test]
    fn packing_plain_rows_matches_the_layouts() {
        let mut rng = SmallRng::seed_from_u64(70);
        for ty in TYPES {
            let kb = 3;
            let rows = weight_rows(&mut rng, ty, 8, kb, Kind::RandomBytes);
            let packed = super::super::pack_x8(ty, &rows, kb);
            let rb = kb * ty.type_size();
            let wr: [&[u8]; 8] = std::array::from_fn(|r| &rows[r * rb..(r + 1) * rb]);
            for b in 0..kb {
                let got: Vec<u8> = if ty == GgmlType::Q4K {
                    let mut buf = [0u8; Q4_K_X8_BLOCK_BYTES];
                    pack_q4k(&wr, b, &mut buf);
                    buf.to_vec()
                } else {
                    let mut buf = [0u8; Q6_K_X8_BLOCK_BYTES];
                    pack_q6k(&wr, b, &mut buf);
                    buf.to_vec()
                };
                let bytes = X8_ROWS * ty.type_size();
                assert_eq!(got, &packed[b * bytes..(b + 1) * bytes], "{ty} super-block {b}");
            }
        }
    }

    /// One token: every tier's gemv against the scalar twin and the scalar row dots, bit for bit.
    #[test]
    fn gemv_equals_scalar_dots_bit_for_bit() {
        let tiers = Tier::tested("K-quant x8 gemv");
        let mut rng = SmallRng::seed_from_u64(71);
        let mut compared = 0usize;
        for ty in TYPES {
            for kb in [1usize, 2, 3] {
                for kind in [Kind::Quantized, Kind::RandomBytes, Kind::Extreme] {
                    let m = 24;
                    let rows = weight_rows(&mut rng, ty, m, kb, kind);
                    let packed = super::super::pack_x8(ty, &rows, kb);
                    let rb = kb * ty.type_size();
                    for _ in 0..3 {
                        let x = activations(&mut rng, 1, kb, kind);
                        let mut twin = vec![0f32; m];
                        interleaved::gemv_k_x8(ty, &packed, &x, kb, &mut twin);
                        for &tier in &tiers {
                            let mut got = vec![f32::NAN; m];
                            gemv_k_x8(ty, &packed, &x, kb, &mut got, tier);
                            for r in 0..m {
                                let want = scalar_dot(ty, &rows[r * rb..(r + 1) * rb], &x);
                                let msg = format!("{ty} {kind:?} kb={kb} {tier:?} row {r}: {} vs {want}", got[r]);
                                assert_eq!(got[r].to_bits(), want.to_bits(), "{msg}");
                                assert_eq!(twin[r].to_bits(), want.to_bits(), "scalar twin: {msg}");
                                compared += 1;
                            }
                        }
                    }
                }
            }
        }
        eprintln!("K-quant x8 gemv: {compared} outputs equal to the scalar dots");
    }

    /// Batches: every tier's 8-row tiles, from the packed group and from plain rows, N = 1..9 activation
    /// rows (odd N included), bit for bit with the scalar row dots.
    #[test]
    fn tiles_equal_scalar_dots_bit_for_bit() {
        let tiers = Tier::tested("K-quant 8-row tiles");
        let mut rng = SmallRng::seed_from_u64(72);
        let mut compared = 0usize;
        for ty in TYPES {
            for kb in [1usize, 2, 3] {
                for kind in [Kind::Quantized, Kind::RandomBytes, Kind::Extreme] {
                    let rows = weight_rows(&mut rng, ty, 8, kb, kind);
                    let packed = super::super::pack_x8(ty, &rows, kb);
                    let rb = kb * ty.type_size();
                    let wr: [&[u8]; 8] = std::array::from_fn(|r| &rows[r * rb..(r + 1) * rb]);
                    for n in 1..=9usize {
                        let x = activations(&mut rng, n, kb, kind);
                        for &tier in &tiers {
                            for packed_source in [true, false] {
                                let src = if packed_source { KSource::Packed(&packed) } else { KSource::Rows(wr) };
                                let mut got = vec![f32::NAN; n * 8];
                                if ty == GgmlType::Q4K {
                                    rows8_q4k(src, &x, kb, &mut got, tier);
                                } else {
                                    rows8_q6k(src, &x, kb, &mut got, tier);
                                }
                                for c in 0..n {
                                    for r in 0..8 {
                                        let want = scalar_dot(ty, wr[r], &x[c * kb..(c + 1) * kb]);
                                        let v = got[c * 8 + r];
                                        assert_eq!(
                                            v.to_bits(),
                                            want.to_bits(),
                                            "{ty} {kind:?} kb={kb} n={n} {tier:?} packed={packed_source} row {r} input {c}: {v} vs {want}"
                                        );
                                        compared += 1;
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        eprintln!("K-quant 8-row tiles: {compared} outputs equal to the scalar dots");
    }

    /// `matmul` and `matmul_shared` on Q4_K/Q6_K weights, with and without repacked rows, one input row and
    /// batches: every output equals the scalar dot of its pair bit for bit on this CPU's path.
    #[test]
    fn matmul_on_this_path_equals_scalar_dots_bit_for_bit() {
        eprintln!(
            "K-quant matmul on aarch64: kernel path {:?} (QEMU_CPU or SAIL_EDGE_ISA picks it)",
            crate::kernels::isa()
        );
        let mut rng = SmallRng::seed_from_u64(73);
        for ty in TYPES {
            let (m, kb) = (80usize, 3usize);
            let k = kb * 256;
            let rows = weight_rows(&mut rng, ty, m, kb, Kind::Quantized);
            let packed = super::super::pack_x8(ty, &rows, kb);
            let plain = Matrix::from_bytes("w", ty, m, k, &rows).unwrap();
            let repacked = Matrix::from_bytes("w", ty, m, k, &rows).unwrap().with_repacked(&packed).unwrap();
            for (name, w) in [("plain", &plain), ("repacked", &repacked)] {
                for n in [1usize, 2, 3, 9] {
                    let x: Vec<f32> = (0..n * k).map(|_| rng.gen_range(-2.0f32..2.0)).collect();
                    let mut out = vec![0f32; n * m];
                    matmul(&x, n, w, &mut out).unwrap();
                    let mut shared = vec![0f32; n * m];
                    matmul_shared(&x, n, &[w], &mut [&mut shared]).unwrap();
                    for i in 0..n {
                        let xq = quantize_q8_k_activations(&x[i * k..(i + 1) * k]);
                        for r in 0..m {
                            let want = scalar_dot(ty, plain.rows_bytes(r, r + 1), &xq);
                            let (got, sh) = (out[i * m + r], shared[i * m + r]);
                            assert_eq!(got.to_bits(), want.to_bits(), "{ty} {name} n={n} row {r} input {i}");
                            assert_eq!(sh.to_bits(), want.to_bits(), "{ty} {name} shared n={n} row {r} input {i}");
                        }
                    }
                }
            }
        }
    }

    /// Instruction-count probe (count it with a TCG plugin, difference of two `iters`):
    /// `SAIL_EDGE_PROBE="q4k|q6k neon|dotprod iters"` runs the gemv of 64 rows × 2048 `iters` times.
    #[test]
    #[ignore]
    fn probe_gemv() {
        let Ok(spec) = std::env::var("SAIL_EDGE_PROBE") else { return };
        let v: Vec<&str> = spec.split_whitespace().collect();
        let ty = if v[0] == "q4k" { GgmlType::Q4K } else { GgmlType::Q6K };
        let tier = if v[1] == "neon" { Tier::Neon } else { Tier::Dotprod };
        let iters: usize = v[2].parse().unwrap();
        let (m, kb) = (64usize, 8usize);
        let mut rng = SmallRng::seed_from_u64(74);
        let rows = weight_rows(&mut rng, ty, m, kb, Kind::Quantized);
        let packed = super::super::pack_x8(ty, &rows, kb);
        let x = activations(&mut rng, 1, kb, Kind::Quantized);
        let mut out = vec![0f32; m];
        for _ in 0..iters {
            gemv_k_x8(ty, std::hint::black_box(&packed), &x, kb, &mut out, tier);
            std::hint::black_box(&mut out);
        }
        eprintln!("probe {spec}: out[0] = {}", out[0]);
    }
}
