//! aarch64 kernels over Q4_0 and Q8_0 weights repacked 8 rows at a time (the `q4_0x8` and `q8_0x8`
//! layouts of [`crate::kernels::interleaved`]): one token ([`gemv_int8_x8`], the twin of
//! [`crate::kernels::interleaved::gemv_int8_x8`]) and 8-row batch tiles ([`packed8`], the twin of x86's
//! `tiles::packed8`), in three tiers ([`Tier`]):
//!
//! * **NEON** (armv8.0): each 16-byte weight vector holds 4 consecutive elements of 4 rows; the 4 matching
//!   activation bytes are broadcast to every lane, multiplied exactly into i16 (`smull`/`smull2`) and
//!   pairwise widened into i32 (`sadalp`), and one `addp` per 4 rows leaves each row's sum in its own lane.
//! * **dotprod**: `sdot v.4s, w.16b, x.4b[lane]` (by element) does the same in one instruction: lane `i`
//!   gets row `i`'s 4 products, the activation bytes come straight from lane `lane` of the loaded block.
//! * **i8mm**: batches take `smmla` (2×8 by 8×2 → 2×2): `zip1`/`zip2` of two 4-element chunks of a weight
//!   vector (32-bit lanes) give two rows' 8 consecutive-in-k bytes, and the 64-bit zip of two activation
//!   rows gives the same 8 elements of two inputs. One token has no second input to pair, so the i8mm tier
//!   runs the dotprod gemv for it (every i8mm CPU has `sdot`), as the row kernels' `Isa::I8mm` path does
//!   for single rows; an odd last input row of a batch likewise goes through the `sdot` step.
//!
//! Q4_0's nibbles are unpacked to `nibble - 8` (−8..7) before the integer step, so every tier multiplies
//! signed bytes; all products and sums are exact (|q_w·q_x| ≤ 2¹⁴, a block's sum ≤ 2¹⁹), including bytes of
//! −128 in weights (Q8_0 files may hold them) and activations. Then each row's lane takes the scalar dot's
//! float steps block after block — `sum += isum as f32 * (d_w * d_x)`, a separate multiply and add (no FMA)
//! — so every output is bit-identical to [`crate::kernels::scalar::dot_q4_0`] / `dot_q8_0` of its row.
//!
//! Stable Rust has no `sdot`/`smmla` intrinsics: they are inline `asm!` in functions compiled with the
//! matching `#[target_feature]`, which the public entry points only call after checking the CPU has it.

use std::arch::aarch64::*;
use std::arch::asm;

pub use super::Tier;
use super::{load_q8, neon_available, smmla, zip_rows};
use crate::kernels::interleaved::{Q4_0_X8_BLOCK_BYTES, Q8_0_X8_BLOCK_BYTES, X8_ROWS};
use crate::kernels::scalar::Q8Block;
use crate::GgmlType;

/// Bytes of one interleaved block of `ty` (Q4_0 or Q8_0), and whether it is Q4_0.
fn block_bytes(ty: GgmlType, what: &str) -> (usize, bool) {
    match ty {
        GgmlType::Q4_0 => (Q4_0_X8_BLOCK_BYTES, true),
        GgmlType::Q8_0 => (Q8_0_X8_BLOCK_BYTES, false),
        _ => panic!("{what}: {ty} is not Q4_0 or Q8_0"),
    }
}

/// `out[g · 8 + r]` = row `r` of Q4_0 or Q8_0 group `g` · `x`, for `groups` (whole groups of `kb` blocks)
/// against one activation row of `kb` Q8_0 blocks; bit-identical to
/// [`crate::kernels::interleaved::gemv_int8_x8`]. [`Tier::I8mm`] runs the dotprod kernel (`smmla` needs two
/// inputs to pair; the CPU has `sdot`).
///
/// # Panics
/// If the CPU lacks `tier`, `ty` is not Q4_0 or Q8_0, `x` holds fewer than `kb` blocks, or `groups` is not
/// `out.len() / 8` groups of `kb` blocks.
pub fn gemv_int8_x8(ty: GgmlType, groups: &[u8], x: &[Q8Block], kb: usize, out: &mut [f32], tier: Tier) {
    assert!(tier.available(), "gemv_int8_x8: this CPU lacks {}", tier.name());
    let (block, q4) = block_bytes(ty, "gemv_int8_x8");
    assert!(x.len() >= kb && out.len().is_multiple_of(X8_ROWS), "gemv_int8_x8: {kb} blocks, whole groups");
    assert_eq!(groups.len(), out.len() / X8_ROWS * kb * block, "gemv_int8_x8: whole groups of {kb} blocks");
    let x = &x[..kb];
    // SAFETY: the tier's target features were checked above (I8mm implies dotprod).
    unsafe {
        match (tier, q4) {
            (Tier::Neon, true) => gemv_neon::<true>(groups, x, kb, out),
            (Tier::Neon, false) => gemv_neon::<false>(groups, x, kb, out),
            (Tier::Dotprod | Tier::I8mm, true) => gemv_sdot::<true>(groups, x, kb, out),
            (Tier::Dotprod | Tier::I8mm, false) => gemv_sdot::<false>(groups, x, kb, out),
        }
    }
}

/// One group of 8 Q4_0 or Q8_0 rows (`group`: `kb` interleaved blocks) against `n = out.len() / 8`
/// activation rows (`x[c · kb .. (c + 1) · kb]` is row `c`): `out[c · 8 + r]` = row `r` · input `c`, the
/// output layout of x86's `tiles::packed8`. Bit-identical to the scalar row dots. [`Tier::I8mm`] multiplies
/// two inputs at a time with `smmla` (an odd last input takes the `sdot` step).
///
/// # Panics
/// If the CPU lacks `tier`, `ty` is not Q4_0 or Q8_0, `group` is not one group of `kb` blocks, or `x` holds
/// fewer than `n · kb` blocks.
pub fn packed8(ty: GgmlType, group: &[u8], x: &[Q8Block], kb: usize, out: &mut [f32], tier: Tier) {
    assert!(tier.available(), "packed8: this CPU lacks {}", tier.name());
    let (block, q4) = block_bytes(ty, "packed8");
    let n = out.len() / X8_ROWS;
    assert!(out.len() == n * X8_ROWS && x.len() >= n * kb, "packed8: {n} inputs of {kb} blocks");
    assert_eq!(group.len(), kb * block, "packed8: one group of {kb} blocks");
    let x = &x[..n * kb];
    // SAFETY: the tier's target features were checked above (I8mm implies dotprod).
    unsafe {
        match (tier, q4) {
            (Tier::Neon, true) => packed8_neon::<true>(group, x, kb, out),
            (Tier::Neon, false) => packed8_neon::<false>(group, x, kb, out),
            (Tier::Dotprod, true) => packed8_sdot::<true>(group, x, kb, out),
            (Tier::Dotprod, false) => packed8_sdot::<false>(group, x, kb, out),
            (Tier::I8mm, true) => packed8_smmla::<true>(group, x, &pair_inputs(x, kb), kb, out),
            (Tier::I8mm, false) => packed8_smmla::<false>(group, x, &pair_inputs(x, kb), kb, out),
        }
    }
}

/// One block of two activation rows in `smmla`'s operand order: `q[16s .. 16s + 16]` holds elements
/// `8s .. 8s + 8` of the first input then of the second, `d` their scales as [d₀, d₁, d₀, d₁] (the lane order
/// of `smmla`'s 2 × 2 sums). Built once per batch ([`pair_inputs`]) and read by every group of rows.
#[derive(Clone, Copy)]
#[repr(C, align(16))]
pub struct PairBlock {
    q: [i8; 64],
    d: [f32; 4],
}

/// Inputs `2q` and `2q + 1` of `x` (`n` rows of `kb` blocks) paired block by block: block `b` of pair `q` is
/// `[q · kb + b]`; an odd last input is left out (the tile takes it with `sdot`).
pub fn pair_inputs(x: &[Q8Block], kb: usize) -> Vec<PairBlock> {
    assert!(neon_available(), "pair_inputs: this CPU lacks neon");
    // SAFETY: NEON was checked above.
    unsafe { pair_inputs_neon(x, kb) }
}

#[target_feature(enable = "neon")]
fn pair_inputs_neon(x: &[Q8Block], kb: usize) -> Vec<PairBlock> {
    let mut out = Vec::with_capacity(x.len() / (2 * kb.max(1)) * kb);
    for xp in x.chunks_exact(2 * kb) {
        let (xa, xc) = xp.split_at(kb);
        for (a, c) in xa.iter().zip(xc) {
            let ((a0, a1), (c0, c1)) = (load_q8(a), load_q8(c));
            let (x0, x1) = zip_rows(a0, c0);
            let (x2, x3) = zip_rows(a1, c1);
            let mut pb = PairBlock { q: [0; 64], d: [a.d, c.d, a.d, c.d] };
            let p = pb.q.as_mut_ptr();
            // SAFETY: `pb.q` holds 64 writable bytes, 4 vectors; `st1` has no alignment requirement.
            unsafe {
                for (i, v) in [x0, x1, x2, x3].into_iter().enumerate() {
                    vst1q_s8(p.add(16 * i), v);
                }
            }
            out.push(pb);
        }
    }
    out
}

/// [`packed8`] on [`Tier::I8mm`] with the batch's inputs already paired (`pairs` = [`pair_inputs`]`(x, kb)`),
/// so that the pairing is done once for all groups of rows. Bit-identical to the scalar row dots.
///
/// # Panics
/// If the CPU lacks i8mm, `ty` is not Q4_0 or Q8_0, `group` is not one group of `kb` blocks, `x` holds fewer
/// than `n · kb` blocks or `pairs` is not `n / 2` pairs of `kb` blocks.
pub fn packed8_paired(ty: GgmlType, group: &[u8], x: &[Q8Block], pairs: &[PairBlock], kb: usize, out: &mut [f32]) {
    assert!(Tier::I8mm.available(), "packed8_paired: this CPU lacks i8mm");
    let (block, q4) = block_bytes(ty, "packed8_paired");
    let n = out.len() / X8_ROWS;
    assert!(out.len() == n * X8_ROWS && x.len() >= n * kb, "packed8_paired: {n} inputs of {kb} blocks");
    assert_eq!(group.len(), kb * block, "packed8_paired: one group of {kb} blocks");
    let x = &x[..n * kb];
    // SAFETY: i8mm (and so dotprod) was checked above.
    unsafe {
        if q4 {
            packed8_smmla::<true>(group, x, pairs, kb, out)
        } else {
            packed8_smmla::<false>(group, x, pairs, kb, out)
        }
    }
}

/// One interleaved block's weights as signed bytes: `w[2e + h]` holds elements `4e .. 4e + 4` of rows
/// `4h .. 4h + 4` (4 bytes a row, row `4h` first). Q8_0's chunk `c` is `e = c`; Q4_0's chunk `c` gives its
/// low nibbles (`e = c`) and high nibbles (`e = 4 + c`), each minus 8.
type Unpacked = [int8x16_t; 16];

#[inline]
#[target_feature(enable = "neon")]
fn unpack<const Q4: bool>(blk: &[u8]) -> Unpacked {
    assert!(blk.len() >= if Q4 { Q4_0_X8_BLOCK_BYTES } else { Q8_0_X8_BLOCK_BYTES });
    let p = blk.as_ptr();
    // SAFETY: the block's bytes 16 .. 16 + 32 · chunks are readable (asserted); `ld1` has no alignment
    // requirement.
    let load = |off: usize| unsafe { vld1q_s8(p.add(off) as *const i8) };
    if Q4 {
        let (mask, eight) = (vdupq_n_u8(0x0F), vdupq_n_s8(8));
        let mut w = [vdupq_n_s8(0); 16];
        for c in 0..4 {
            for h in 0..2 {
                let v = vreinterpretq_u8_s8(load(16 + 32 * c + 16 * h));
                w[2 * c + h] = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(v, mask)), eight);
                w[2 * (4 + c) + h] = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8::<4>(v)), eight);
            }
        }
        w
    } else {
        std::array::from_fn(|i| load(16 + 16 * i))
    }
}

/// The 8 rows' fp16 scales (the block's first 16 bytes) as f32, rows 0..4 and 4..8, by `fcvtl`/`fcvtl2`
/// (three instructions with the load): exact, and bit-identical to [`crate::quant::f16_bits_to_f32`] for
/// every half, NaNs included (the f16 module's tests compare all 65,536).
#[inline]
#[target_feature(enable = "neon")]
fn scales8(blk: &[u8]) -> (float32x4_t, float32x4_t) {
    assert!(blk.len() >= 16);
    // SAFETY: 16 readable bytes (asserted); NEON is enabled for this function.
    unsafe { super::f16::load8_f16(blk.as_ptr()) }
}

/// `acc + isum as f32 * (dw * dx)` lane by lane: the scalar dot's step, a separate multiply and add.
#[inline]
#[target_feature(enable = "neon")]
fn step(acc: float32x4_t, isum: int32x4_t, dw: float32x4_t, dx: float32x4_t) -> float32x4_t {
    vaddq_f32(acc, vmulq_f32(vcvtq_f32_s32(isum), vmulq_f32(dw, dx)))
}

/// [`step`] on the 8 outputs `o[0..8]` (rows 0..4 and 4..8 of one input) in memory.
#[inline]
#[target_feature(enable = "neon")]
fn step_out(o: &mut [f32], isum: (int32x4_t, int32x4_t), dw: (float32x4_t, float32x4_t), dx: f32) {
    assert!(o.len() >= X8_ROWS);
    let (p, dx) = (o.as_mut_ptr(), vdupq_n_f32(dx));
    // SAFETY: 8 readable and writable f32 (asserted); `ld1`/`st1` have no alignment requirement.
    unsafe {
        vst1q_f32(p, step(vld1q_f32(p), isum.0, dw.0, dx));
        vst1q_f32(p.add(4), step(vld1q_f32(p.add(4)), isum.1, dw.1, dx));
    }
}

/// The 8 rows' exact integer sums (rows 0..4, 4..8) of one unpacked block against one activation block, with
/// armv8.0 NEON: the activation's 4 bytes of chunk `e` broadcast to every lane, products into i16 (exact:
/// |p| ≤ 2¹⁴) and pairs into i32.
#[inline]
#[target_feature(enable = "neon")]
fn isum8_neon(w: &Unpacked, x: &Q8Block) -> (int32x4_t, int32x4_t) {
    // acc[2h + half]: rows 4h + 2·half, 4h + 2·half + 1, two partial sums each.
    let mut acc = [vdupq_n_s32(0); 4];
    for e in 0..8 {
        // SAFETY: `x.qs` has 32 readable bytes, so 4e + 4 ≤ 32; read unaligned.
        let four = unsafe { (x.qs.as_ptr().add(4 * e) as *const i32).read_unaligned() };
        let xb = vreinterpretq_s8_s32(vdupq_n_s32(four));
        for h in 0..2 {
            let v = w[2 * e + h];
            acc[2 * h] = vpadalq_s16(acc[2 * h], vmull_s8(vget_low_s8(v), vget_low_s8(xb)));
            acc[2 * h + 1] = vpadalq_s16(acc[2 * h + 1], vmull_high_s8(v, xb));
        }
    }
    (vpaddq_s32(acc[0], acc[1]), vpaddq_s32(acc[2], acc[3]))
}

/// `acc.s[i] += Σ_{t<4} w.b[4i + t] · x.b[4·LANE + t]` (signed; `sdot` by element, LANE a literal 0..3).
macro_rules! sdot_lane {
    ($acc:expr, $w:expr, $x:expr, $lane:literal) => {{
        let mut acc: int32x4_t = $acc;
        let (w, x): (int8x16_t, int8x16_t) = ($w, $x);
        // SAFETY: `sdot` only reads and writes the named vector registers; the macro is only used in
        // functions compiled with `dotprod`, which run only after `dotprod_available` was checked.
        unsafe {
            asm!(
                concat!("sdot {acc:v}.4s, {w:v}.16b, {x:v}.4b[", $lane, "]"),
                acc = inout(vreg) acc,
                w = in(vreg) w,
                x = in(vreg) x,
                options(pure, nomem, nostack, preserves_flags),
            );
        }
        acc
    }};
}

/// [`isum8_neon`]'s sums with `sdot` by element: chunk `e` of the weights against lane `e % 4` of the
/// activation's vector `e / 4`, one chain per half of the rows (exact integer sums in any order).
#[inline]
#[target_feature(enable = "neon,dotprod")]
fn isum8_sdot(w: &Unpacked, x: &Q8Block) -> (int32x4_t, int32x4_t) {
    let (x0, x1) = load_q8(x);
    let mut lo = vdupq_n_s32(0);
    let mut hi = vdupq_n_s32(0);
    lo = sdot_lane!(lo, w[0], x0, 0);
    hi = sdot_lane!(hi, w[1], x0, 0);
    lo = sdot_lane!(lo, w[2], x0, 1);
    hi = sdot_lane!(hi, w[3], x0, 1);
    lo = sdot_lane!(lo, w[4], x0, 2);
    hi = sdot_lane!(hi, w[5], x0, 2);
    lo = sdot_lane!(lo, w[6], x0, 3);
    hi = sdot_lane!(hi, w[7], x0, 3);
    lo = sdot_lane!(lo, w[8], x1, 0);
    hi = sdot_lane!(hi, w[9], x1, 0);
    lo = sdot_lane!(lo, w[10], x1, 1);
    hi = sdot_lane!(hi, w[11], x1, 1);
    lo = sdot_lane!(lo, w[12], x1, 2);
    hi = sdot_lane!(hi, w[13], x1, 2);
    lo = sdot_lane!(lo, w[14], x1, 3);
    hi = sdot_lane!(hi, w[15], x1, 3);
    (lo, hi)
}

/// The one-token kernel and the batch tile once per integer step (same bodies, different target features,
/// so that the step inlines).
macro_rules! row_kernels {
    ($gemv:ident, $packed:ident, $features:literal, $isum:ident) => {
        #[target_feature(enable = $features)]
        fn $gemv<const Q4: bool>(groups: &[u8], x: &[Q8Block], kb: usize, out: &mut [f32]) {
            let block = if Q4 { Q4_0_X8_BLOCK_BYTES } else { Q8_0_X8_BLOCK_BYTES };
            for (g, o) in groups.chunks_exact(kb * block).zip(out.chunks_exact_mut(X8_ROWS)) {
                let (mut lo, mut hi) = (vdupq_n_f32(0.0), vdupq_n_f32(0.0));
                for (blk, xb) in g.chunks_exact(block).zip(x) {
                    let (s_lo, s_hi) = $isum(&unpack::<Q4>(blk), xb);
                    let (d_lo, d_hi) = scales8(blk);
                    let dx = vdupq_n_f32(xb.d);
                    lo = step(lo, s_lo, d_lo, dx);
                    hi = step(hi, s_hi, d_hi, dx);
                }
                assert!(o.len() == X8_ROWS);
                // SAFETY: `o` holds 8 f32 (asserted); `st1` has no alignment requirement.
                unsafe {
                    vst1q_f32(o.as_mut_ptr(), lo);
                    vst1q_f32(o.as_mut_ptr().add(4), hi);
                }
            }
        }

        /// Blocks outermost: each block is unpacked once for all inputs, and every (row, input) lane still
        /// takes its blocks in order.
        #[target_feature(enable = $features)]
        fn $packed<const Q4: bool>(group: &[u8], x: &[Q8Block], kb: usize, out: &mut [f32]) {
            let block = if Q4 { Q4_0_X8_BLOCK_BYTES } else { Q8_0_X8_BLOCK_BYTES };
            out.fill(0.0);
            if out.is_empty() {
                return;
            }
            for (b, blk) in group.chunks_exact(block).enumerate() {
                let w = unpack::<Q4>(blk);
                let dw = scales8(blk);
                for (o, xr) in out.chunks_exact_mut(X8_ROWS).zip(x.chunks_exact(kb)) {
                    let xb = &xr[b];
                    step_out(o, $isum(&w, xb), dw, xb.d);
                }
            }
        }
    };
}

row_kernels!(gemv_neon, packed8_neon, "neon", isum8_neon);
row_kernels!(gemv_sdot, packed8_sdot, "neon,dotprod", isum8_sdot);

/// The batch tile with `smmla`: per block, the weights zipped once into 2-row × 8-element operands
/// (`m[s][p]`: rows `2p, 2p + 1`, elements `8s .. 8s + 8`), then for each pair of inputs 16 `smmla` give the
/// 8 × 2 exact sums. The float steps run in `smmla`'s layout (lane order [row 2p · c, row 2p · (c+1),
/// row 2p+1 · c, row 2p+1 · (c+1)], with the matching scale products), each pair's 16 sums kept in that
/// pair's own 16 outputs until the last block, when `uzp1`/`uzp2` put them into each input's row order.
#[target_feature(enable = "neon,dotprod,i8mm")]
fn packed8_smmla<const Q4: bool>(group: &[u8], x: &[Q8Block], paired_x: &[PairBlock], kb: usize, out: &mut [f32]) {
    let block = if Q4 { Q4_0_X8_BLOCK_BYTES } else { Q8_0_X8_BLOCK_BYTES };
    let n = out.len() / X8_ROWS;
    let pairs = n / 2;
    assert_eq!(paired_x.len(), pairs * kb, "packed8: {pairs} pairs of {kb} blocks");
    out.fill(0.0);
    if n == 0 {
        return;
    }
    let (paired, last) = out.split_at_mut(pairs * 2 * X8_ROWS);
    for (b, blk) in group.chunks_exact(block).enumerate() {
        let w = unpack::<Q4>(blk);
        let dw = scales8(blk);
        // dwp[p] = [d_2p, d_2p, d_2p+1, d_2p+1]: the weight scales in smmla's lane order.
        let dwp = [vzip1q_f32(dw.0, dw.0), vzip2q_f32(dw.0, dw.0), vzip1q_f32(dw.1, dw.1), vzip2q_f32(dw.1, dw.1)];
        // Chunks 2s and 2s + 1 (elements 8s .. 8s + 8) of rows 4h .. 4h + 4: zip1 pairs rows 4h, 4h + 1 and
        // zip2 rows 4h + 2, 4h + 3, each row's 8 elements consecutive.
        let m: [[int8x16_t; 4]; 4] = std::array::from_fn(|s| {
            std::array::from_fn(|p| {
                let h = p / 2;
                let (a, c) = (vreinterpretq_u32_s8(w[4 * s + h]), vreinterpretq_u32_s8(w[4 * s + 2 + h]));
                vreinterpretq_s8_u32(if p % 2 == 0 { vzip1q_u32(a, c) } else { vzip2q_u32(a, c) })
            })
        });
        // Pair q: inputs 2q and 2q + 1, already zipped, their block b at paired_x[q · kb + b].
        for (o, xp) in paired.chunks_exact_mut(2 * X8_ROWS).zip(paired_x.chunks_exact(kb)) {
            let pb = &xp[b];
            let (q, d) = (pb.q.as_ptr(), pb.d.as_ptr());
            // SAFETY: `pb.q` holds 64 readable bytes (4 vectors), `pb.d` 4 f32; `ld1` needs no alignment.
            let (xv, dx): ([int8x16_t; 4], _) =
                unsafe { (std::array::from_fn(|s| vld1q_s8(q.add(16 * s))), vld1q_f32(d)) };
            let mut isum = [vdupq_n_s32(0); 4];
            for (s, xv) in xv.into_iter().enumerate() {
                for (p, a) in isum.iter_mut().enumerate() {
                    *a = smmla(*a, m[s][p], xv);
                }
            }
            assert!(o.len() == 2 * X8_ROWS);
            let p = o.as_mut_ptr();
            // SAFETY: `o` holds 16 f32 (asserted), 4 vectors; `ld1`/`st1` have no alignment requirement.
            unsafe {
                for (i, &s) in isum.iter().enumerate() {
                    vst1q_f32(p.add(4 * i), step(vld1q_f32(p.add(4 * i)), s, dwp[i], dx));
                }
            }
        }
        if n % 2 == 1 {
            let xb = &x[(n - 1) * kb + b];
            step_out(last, isum8_sdot(&w, xb), dw, xb.d);
        }
    }
    for o in paired.chunks_exact_mut(2 * X8_ROWS) {
        assert!(o.len() == 2 * X8_ROWS);
        let p = o.as_mut_ptr();
        // SAFETY: `o` holds 16 f32 (asserted), 4 vectors; `ld1`/`st1` have no alignment requirement.
        unsafe {
            let a: [float32x4_t; 4] = std::array::from_fn(|i| vld1q_f32(p.add(4 * i)));
            vst1q_f32(p, vuzp1q_f32(a[0], a[1]));
            vst1q_f32(p.add(4), vuzp1q_f32(a[2], a[3]));
            vst1q_f32(p.add(8), vuzp2q_f32(a[0], a[1]));
            vst1q_f32(p.add(12), vuzp2q_f32(a[2], a[3]));
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::kernels::scalar::{self, quantize_q8_0_activations};
    use crate::quant::{self, f32_to_f16_bits};

    /// 8·`groups` rows of `kb` blocks of `ty`: quantized random rows, raw random bytes (every quant value,
    /// -128 included) or extremes (all -128 / 127 / 0x00 / 0xff, or alternating), with finite random fp16 scales.
    fn rows(rng: &mut SmallRng, ty: GgmlType, groups: usize, kb: usize, kind: usize) -> Vec<u8> {
        let (n, bb) = (X8_ROWS * groups, ty.type_size());
        let mut w = vec![0u8; n * kb * bb];
        if kind == 0 {
            let k = kb * 32;
            let wf: Vec<f32> = (0..n * k).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
            quant::quantize_rows(ty, &wf, k, &mut w).unwrap();
            return w;
        }
        for b in w.chunks_exact_mut(bb) {
            b[..2].copy_from_slice(&f32_to_f16_bits(rng.gen_range(-0.1f32..0.1)).to_le_bytes());
            match kind {
                1 => rng.fill(&mut b[2..]),
                _ => {
                    // Q8_0: -128, 127; Q4_0: nibbles (0, 8), (15, 7), (0, 0), (15, 15) — all offsets.
                    let pick = rng.gen_range(0..5);
                    for (i, v) in b[2..].iter_mut().enumerate() {
                        *v = match pick {
                            0 => 0x80,
                            1 => 0x7f,
                            2 => 0x00,
                            3 => 0xff,
                            _ if i % 2 == 0 => 0x80,
                            _ => 0x7f,
                        };
                    }
                }
            }
        }
        w
    }

    /// `n` activation rows of `kb` blocks: quantized (−127..127), raw bytes or extremes (−128 / 127).
    fn activations(rng: &mut SmallRng, n: usize, kb: usize, kind: usize) -> Vec<Q8Block> {
        if kind == 0 {
            let xf: Vec<f32> = (0..n * kb * 32).map(|_| rng.gen_range(-2.0f32..2.0)).collect();
            return xf.chunks(kb * 32).flat_map(quantize_q8_0_activations).collect();
        }
        (0..n * kb)
            .map(|_| {
                let mut qs = [0i8; 32];
                match kind {
                    1 => rng.fill(&mut qs[..]),
                    _ => qs.iter_mut().for_each(|q| *q = if rng.gen_bool(0.5) { -128 } else { 127 }),
                }
                Q8Block { d: rng.gen_range(-0.1f32..0.1), qs }
            })
            .collect()
    }

    fn scalar_dot(ty: GgmlType) -> fn(&[u8], &[Q8Block]) -> f32 {
        if ty == GgmlType::Q4_0 {
            scalar::dot_q4_0
        } else {
            scalar::dot_q8_0
        }
    }

    const KBS: [usize; 7] = [1, 2, 3, 5, 8, 9, 64];

    #[test]
    fn gemv_tiers_are_bit_identical_to_the_scalar_twin() {
        let run = Tier::tested("x8 gemv");
        let mut rng = SmallRng::seed_from_u64(80);
        let mut compared = 0usize;
        for ty in [GgmlType::Q4_0, GgmlType::Q8_0] {
            for kb in KBS {
                for kind in 0..3 {
                    let groups = 1 + kind % 2;
                    let (w, x) = (rows(&mut rng, ty, groups, kb, kind), activations(&mut rng, 1, kb, kind));
                    let packed = super::super::pack_x8(ty, &w, kb);
                    let mut want = vec![0f32; groups * X8_ROWS];
                    crate::kernels::interleaved::gemv_int8_x8(ty, &packed, &x, kb, &mut want);
                    let dot = scalar_dot(ty);
                    let rb = kb * ty.type_size();
                    for (r, v) in want.iter().enumerate() {
                        let d = dot(&w[r * rb..(r + 1) * rb], &x);
                        assert_eq!(v.to_bits(), d.to_bits(), "scalar twin vs row dot: {ty} kb={kb} row {r}");
                    }
                    for &tier in &run {
                        let mut got = vec![f32::NAN; groups * X8_ROWS];
                        gemv_int8_x8(ty, &packed, &x, kb, &mut got, tier);
                        for r in 0..got.len() {
                            assert_eq!(
                                got[r].to_bits(),
                                want[r].to_bits(),
                                "{} {ty} kb={kb} kind={kind} row {r}: {} vs scalar {}",
                                tier.name(),
                                got[r],
                                want[r]
                            );
                        }
                        compared += got.len();
                    }
                }
            }
        }
        let names: Vec<_> = run.iter().map(|t| t.name()).collect();
        eprintln!("aarch64 x8 gemv compared bit-exactly with the scalar twin: {names:?} ({compared} outputs)");
    }

    #[test]
    fn batch_tiles_are_bit_identical_to_the_scalar_dots() {
        let run = Tier::tested("x8 batch tiles");
        let mut rng = SmallRng::seed_from_u64(81);
        let mut compared = 0usize;
        for ty in [GgmlType::Q4_0, GgmlType::Q8_0] {
            for kb in KBS {
                for n in (1..=9).chain([16, 17, 33]) {
                    let kind = (n + kb) % 3;
                    let (w, x) = (rows(&mut rng, ty, 1, kb, kind), activations(&mut rng, n, kb, kind));
                    let packed = super::super::pack_x8(ty, &w, kb);
                    let (dot, rb) = (scalar_dot(ty), kb * ty.type_size());
                    let want: Vec<f32> = (0..n * X8_ROWS)
                        .map(|i| dot(&w[(i % 8) * rb..(i % 8 + 1) * rb], &x[(i / 8) * kb..(i / 8 + 1) * kb]))
                        .collect();
                    for &tier in &run {
                        let mut got = vec![f32::NAN; n * X8_ROWS];
                        packed8(ty, &packed, &x, kb, &mut got, tier);
                        for i in 0..got.len() {
                            assert_eq!(
                                got[i].to_bits(),
                                want[i].to_bits(),
                                "{} {ty} kb={kb} n={n} kind={kind} input {} row {}: {} vs scalar {}",
                                tier.name(),
                                i / 8,
                                i % 8,
                                got[i],
                                want[i]
                            );
                        }
                        compared += got.len();
                    }
                }
            }
        }
        let names: Vec<_> = run.iter().map(|t| t.name()).collect();
        eprintln!("aarch64 x8 batch tiles compared bit-exactly with the scalar dots: {names:?} ({compared} outputs)");
    }

    /// `matmul` on repacked Q4_0/Q8_0 weights (the process's path, see `SAIL_EDGE_ISA`) gives the scalar row
    /// dots bit for bit, one input row and batches of odd and even sizes.
    #[test]
    fn matmul_on_repacked_int8_weights_equals_scalar_dots() {
        use crate::kernels::{isa, matmul, x8_native};
        use crate::tensor::Matrix;
        let path = isa();
        let tier = Tier::of(path);
        eprintln!("matmul with repacked Q4_0/Q8_0 weights on the {} path (x8 tier {:?})", path.name(), tier);
        assert_eq!(x8_native(), tier.is_some(), "the x8 kernels run on every aarch64 path but scalar");
        let mut rng = SmallRng::seed_from_u64(82);
        for ty in [GgmlType::Q4_0, GgmlType::Q8_0] {
            let (m, kb) = (72usize, 9usize);
            let k = kb * 32;
            let w = rows(&mut rng, ty, m / X8_ROWS, kb, 0);
            let packed = super::super::pack_x8(ty, &w, kb);
            let mat = Matrix::from_bytes("w", ty, m, k, &w).unwrap().with_repacked(&packed).unwrap();
            for n in [1usize, 2, 3, 5, 8, 9, 67] {
                let x: Vec<f32> = (0..n * k).map(|_| rng.gen_range(-2.0f32..2.0)).collect();
                let mut out = vec![0f32; n * m];
                matmul(&x, n, &mat, &mut out).unwrap();
                let rb = kb * ty.type_size();
                for i in 0..n {
                    let xq = quantize_q8_0_activations(&x[i * k..(i + 1) * k]);
                    for r in 0..m {
                        let want = scalar_dot(ty)(&w[r * rb..(r + 1) * rb], &xq);
                        let got = out[i * m + r];
                        assert_eq!(got.to_bits(), want.to_bits(), "{ty} n={n} input {i} row {r}: {got} vs {want}");
                    }
                }
            }
        }
    }
    /// Instruction-count probe (run under qemu with a counting plugin): `matmul` of a 6144 × 2048 repacked
    /// Q4_0 or Q8_0 weight (`SAIL_PROBE_TYPE=q8_0` for Q8_0) on 64 input rows, `SAIL_PROBE_REPS` times.
    #[test]
    #[ignore]
    fn probe_prefill_matmul() {
        use crate::kernels::matmul;
        use crate::tensor::Matrix;
        let ty =
            if std::env::var("SAIL_PROBE_TYPE").as_deref() == Ok("q8_0") { GgmlType::Q8_0 } else { GgmlType::Q4_0 };
        let reps: usize = std::env::var("SAIL_PROBE_REPS").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
        let (m, k, n) = (6144usize, 2048usize, 64usize);
        let kb = k / 32;
        let mut rng = SmallRng::seed_from_u64(7);
        let w = rows(&mut rng, ty, m / X8_ROWS, kb, 1);
        let packed = super::super::pack_x8(ty, &w, kb);
        let mat = Matrix::from_bytes("w", ty, m, k, &w).unwrap().with_repacked(&packed).unwrap();
        let x: Vec<f32> = (0..n * k).map(|_| rng.gen_range(-2.0f32..2.0)).collect();
        let mut out = vec![0f32; n * m];
        for _ in 0..reps {
            matmul(&x, n, &mat, &mut out).unwrap();
        }
        eprintln!("probe {ty} reps={reps} out[7]={}", out[7]);
    }
}
