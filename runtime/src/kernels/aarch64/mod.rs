//! aarch64 twins of the scalar dot products, in three tiers:
//!
//! * **NEON** (armv8.0 Advanced SIMD, every aarch64 CPU): [`dot_f32`], [`dot_q8_0`], [`dot_q4_0`]. The
//!   integer products are widened exactly (`smull` to i16, `sadalp` to i32).
//! * **dotprod** (`sdot`, optional from armv8.2, mandatory from armv8.4): [`dot_q8_0_dotprod`],
//!   [`dot_q4_0_dotprod`].
//! * **i8mm** (`smmla`, optional from armv8.2, mandatory from armv8.6): [`tile_q8_0_i8mm`],
//!   [`tile_q4_0_i8mm`] multiply two weight rows by two activation rows at once (for prefill matmuls);
//!   [`tile_q8_0_scalar`] / [`tile_q4_0_scalar`] are their portable twins with the same signature.
//!
//! [`interleaved`] has the same three tiers over weights repacked 8 rows at a time (the repack cache).
//!
//! Stable Rust has no intrinsics for `sdot`/`smmla`, so those two instructions are inline `asm!` inside
//! functions compiled with `#[target_feature(enable = "dotprod")]` / `"i8mm"` (which also lets the
//! assembler accept them); everything else is `std::arch::aarch64`.
//!
//! Every integer kernel computes each block's integer sum exactly and then applies the scales in the scalar
//! order (`sum += isum as f32 * (d_w * d_x)`, block by block), so it is bit-identical to [`super::scalar`]
//! for every input, including bytes of -128. The f32 dot reorders its sum (four 4-lane FMA accumulators)
//! and agrees within float rounding.

use std::arch::aarch64::*;
use std::arch::asm;

use super::scalar::{self, Q8Block};
use crate::quant::f16_bits_to_f32;

pub mod attention;
pub mod elementwise;
pub mod f16;
pub mod interleaved;
pub mod kquants;
pub mod ktiles;
#[cfg(test)]
mod tests;

/// Whether this CPU runs the NEON paths (always true on the usual aarch64 targets, where NEON is part of the
/// ABI; checked anyway so that the safety argument does not rest on the build target).
pub fn neon_available() -> bool {
    std::arch::is_aarch64_feature_detected!("neon")
}

/// Whether this CPU runs the dotprod (`sdot`) paths.
pub fn dotprod_available() -> bool {
    neon_available() && std::arch::is_aarch64_feature_detected!("dotprod")
}

/// Whether this CPU runs the i8mm (`smmla`) tiles and, with them, the dotprod paths (every armv8.6 CPU has
/// both; the `Isa::I8mm` path uses `sdot` for single rows).
pub fn i8mm_available() -> bool {
    dotprod_available() && std::arch::is_aarch64_feature_detected!("i8mm")
}

/// The best aarch64 path of this CPU (assumes [`neon_available`]).
pub fn detect() -> super::Isa {
    if i8mm_available() {
        super::Isa::I8mm
    } else if dotprod_available() {
        super::Isa::Dotprod
    } else {
        super::Isa::Neon
    }
}

/// The aarch64 kernel tiers of the interleaved (repacked) kernels and the K-quant tiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// armv8.0 Advanced SIMD: `smull` + `sadalp`.
    Neon,
    /// `sdot` by element.
    Dotprod,
    /// `smmla` for batches, `sdot` for single rows.
    I8mm,
}

impl Tier {
    /// Every tier, slowest first.
    pub const ALL: [Tier; 3] = [Tier::Neon, Tier::Dotprod, Tier::I8mm];

    /// The tier of an instruction-set path (`None` for paths that are not aarch64's).
    pub fn of(isa: super::Isa) -> Option<Tier> {
        match isa {
            super::Isa::Neon => Some(Tier::Neon),
            super::Isa::Dotprod => Some(Tier::Dotprod),
            super::Isa::I8mm => Some(Tier::I8mm),
            _ => None,
        }
    }

    /// Whether this CPU runs the tier.
    pub fn available(self) -> bool {
        match self {
            Tier::Neon => neon_available(),
            Tier::Dotprod => dotprod_available(),
            Tier::I8mm => i8mm_available(),
        }
    }

    /// The tier's name, as `SAIL_EDGE_ISA` and `SAIL_EDGE_EXPECT_ISA` spell it.
    pub fn name(self) -> &'static str {
        match self {
            Tier::Neon => "neon",
            Tier::Dotprod => "dotprod",
            Tier::I8mm => "i8mm",
        }
    }
}

impl Tier {
    /// Test support: the tiers this CPU runs, each named on stderr with the ones it lacks; a tier that
    /// `SAIL_EDGE_EXPECT_ISA` names but the CPU lacks fails the test ([`super::path_runs`]).
    #[cfg(test)]
    pub(crate) fn tested(what: &str) -> Vec<Tier> {
        Tier::ALL.into_iter().filter(|t| super::path_runs(t.name(), t.available(), what)).collect()
    }
}

/// Test support: `rows` (whole groups of 8 rows of `kb` blocks of `ty`) in the x8 layout.
#[cfg(test)]
pub(crate) fn pack_x8(ty: crate::GgmlType, rows: &[u8], kb: usize) -> Vec<u8> {
    use super::interleaved::{interleave_x8, X8_ROWS};
    let group = X8_ROWS * kb * ty.type_size();
    let mut packed = vec![0u8; rows.len()];
    for (src, dst) in rows.chunks(group).zip(packed.chunks_mut(group)) {
        interleave_x8(ty, src, kb, dst);
    }
    packed
}

#[inline]
fn block_scale(bytes: &[u8]) -> f32 {
    f16_bits_to_f32(u16::from_le_bytes([bytes[0], bytes[1]]))
}

/// Loads 16 bytes from the start of `b` as signed bytes.
#[inline]
#[target_feature(enable = "neon")]
fn load_i8x16(b: &[u8]) -> int8x16_t {
    assert!(b.len() >= 16);
    // SAFETY: `b` has at least 16 readable bytes (checked above); `ld1` has no alignment requirement.
    unsafe { vld1q_s8(b.as_ptr() as *const i8) }
}

/// Loads the 32 quants of an activation block as two vectors.
#[inline]
#[target_feature(enable = "neon")]
fn load_q8(x: &Q8Block) -> (int8x16_t, int8x16_t) {
    // SAFETY: `x.qs` is 32 readable bytes; `ld1` has no alignment requirement.
    unsafe { (vld1q_s8(x.qs.as_ptr()), vld1q_s8(x.qs.as_ptr().add(16))) }
}

/// The 32 weights of a Q4_0 block (`qs` = its 16 packed bytes) as two vectors of signed bytes: elements
/// 0..16 (low nibbles) and 16..32 (high nibbles), each minus 8.
#[inline]
#[target_feature(enable = "neon")]
fn unpack_q4_0(qs: &[u8]) -> (int8x16_t, int8x16_t) {
    let packed = vreinterpretq_u8_s8(load_i8x16(qs));
    let lo = vreinterpretq_s8_u8(vandq_u8(packed, vdupq_n_u8(0x0F)));
    let hi = vreinterpretq_s8_u8(vshrq_n_u8::<4>(packed));
    let eight = vdupq_n_s8(8);
    (vsubq_s8(lo, eight), vsubq_s8(hi, eight))
}

// ---------------------------------------------------------------------------------------------------------
// NEON baseline

/// Σ a·b over 32 signed bytes, exact: every product fits i16 (|p| ≤ 2¹⁴), pairs are summed into i32.
#[inline]
#[target_feature(enable = "neon")]
fn isum_neon(a0: int8x16_t, a1: int8x16_t, b0: int8x16_t, b1: int8x16_t) -> i32 {
    let acc = vpaddlq_s16(vmull_s8(vget_low_s8(a0), vget_low_s8(b0)));
    let acc = vpadalq_s16(acc, vmull_high_s8(a0, b0));
    let acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(a1), vget_low_s8(b1)));
    let acc = vpadalq_s16(acc, vmull_high_s8(a1, b1));
    vaddvq_s32(acc)
}

/// Q8_0 weight row · Q8_0 activation row on NEON (bit-identical to the scalar twin).
pub fn dot_q8_0(w: &[u8], x: &[Q8Block]) -> f32 {
    assert!(neon_available());
    // SAFETY: NEON presence was checked just above.
    unsafe { dot_q8_0_neon(w, x) }
}

#[target_feature(enable = "neon")]
fn dot_q8_0_neon(w: &[u8], x: &[Q8Block]) -> f32 {
    let mut sum = 0f32;
    for (wb, xb) in w.chunks_exact(34).zip(x) {
        let (b0, b1) = load_q8(xb);
        let isum = isum_neon(load_i8x16(&wb[2..18]), load_i8x16(&wb[18..34]), b0, b1);
        sum += isum as f32 * (block_scale(wb) * xb.d);
    }
    sum
}

/// Q4_0 weight row · Q8_0 activation row on NEON (bit-identical to the scalar twin).
pub fn dot_q4_0(w: &[u8], x: &[Q8Block]) -> f32 {
    assert!(neon_available());
    // SAFETY: NEON presence was checked just above.
    unsafe { dot_q4_0_neon(w, x) }
}

#[target_feature(enable = "neon")]
fn dot_q4_0_neon(w: &[u8], x: &[Q8Block]) -> f32 {
    let mut sum = 0f32;
    for (wb, xb) in w.chunks_exact(18).zip(x) {
        let (a0, a1) = unpack_q4_0(&wb[2..18]);
        let (b0, b1) = load_q8(xb);
        let isum = isum_neon(a0, a1, b0, b1);
        sum += isum as f32 * (block_scale(wb) * xb.d);
    }
    sum
}

/// f32 dot product with NEON FMA (reassociated: agrees with the scalar twin within float rounding).
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    assert!(neon_available() && a.len() == b.len());
    // SAFETY: NEON presence was checked just above; lengths are equal.
    unsafe { dot_f32_neon(a, b) }
}

#[target_feature(enable = "neon")]
fn dot_f32_neon(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let mut acc = [vdupq_n_f32(0.0); 4];
    let mut i = 0;
    while i + 16 <= n {
        for (l, acc) in acc.iter_mut().enumerate() {
            // SAFETY: i + 4l + 4 <= n for both slices.
            let (x, y) = unsafe { (vld1q_f32(a.as_ptr().add(i + 4 * l)), vld1q_f32(b.as_ptr().add(i + 4 * l))) };
            *acc = vfmaq_f32(*acc, x, y);
        }
        i += 16;
    }
    while i + 4 <= n {
        // SAFETY: i + 4 <= n for both slices.
        let (x, y) = unsafe { (vld1q_f32(a.as_ptr().add(i)), vld1q_f32(b.as_ptr().add(i))) };
        acc[0] = vfmaq_f32(acc[0], x, y);
        i += 4;
    }
    let mut total = vaddvq_f32(vaddq_f32(vaddq_f32(acc[0], acc[1]), vaddq_f32(acc[2], acc[3])));
    for j in i..n {
        total += a[j] * b[j];
    }
    total
}

// ---------------------------------------------------------------------------------------------------------
// dotprod (sdot)

/// `acc.s[i] += Σ_{k<4} a.b[4i+k]·b.b[4i+k]` (signed; exact: |Σ| ≤ 2¹⁶ per call).
#[inline]
#[target_feature(enable = "neon,dotprod")]
fn sdot(mut acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    // SAFETY: `sdot` only reads and writes the named vector registers; the enclosing function is compiled
    // with `dotprod`, so it only runs where the instruction exists (callers check `dotprod_available`).
    unsafe {
        asm!(
            "sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b",
            acc = inout(vreg) acc,
            a = in(vreg) a,
            b = in(vreg) b,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    acc
}

#[inline]
#[target_feature(enable = "neon,dotprod")]
fn isum_dotprod(a0: int8x16_t, a1: int8x16_t, b0: int8x16_t, b1: int8x16_t) -> i32 {
    vaddvq_s32(sdot(sdot(vdupq_n_s32(0), a0, b0), a1, b1))
}

/// Q8_0 weight row · Q8_0 activation row with `sdot` (bit-identical to the scalar twin).
pub fn dot_q8_0_dotprod(w: &[u8], x: &[Q8Block]) -> f32 {
    assert!(dotprod_available());
    // SAFETY: NEON and dotprod presence was checked just above.
    unsafe { dot_q8_0_sdot(w, x) }
}

#[target_feature(enable = "neon,dotprod")]
fn dot_q8_0_sdot(w: &[u8], x: &[Q8Block]) -> f32 {
    let mut sum = 0f32;
    for (wb, xb) in w.chunks_exact(34).zip(x) {
        let (b0, b1) = load_q8(xb);
        let isum = isum_dotprod(load_i8x16(&wb[2..18]), load_i8x16(&wb[18..34]), b0, b1);
        sum += isum as f32 * (block_scale(wb) * xb.d);
    }
    sum
}

/// Q4_0 weight row · Q8_0 activation row with `sdot` (bit-identical to the scalar twin).
pub fn dot_q4_0_dotprod(w: &[u8], x: &[Q8Block]) -> f32 {
    assert!(dotprod_available());
    // SAFETY: NEON and dotprod presence was checked just above.
    unsafe { dot_q4_0_sdot(w, x) }
}

#[target_feature(enable = "neon,dotprod")]
fn dot_q4_0_sdot(w: &[u8], x: &[Q8Block]) -> f32 {
    let mut sum = 0f32;
    for (wb, xb) in w.chunks_exact(18).zip(x) {
        let (a0, a1) = unpack_q4_0(&wb[2..18]);
        let (b0, b1) = load_q8(xb);
        let isum = isum_dotprod(a0, a1, b0, b1);
        sum += isum as f32 * (block_scale(wb) * xb.d);
    }
    sum
}

// ---------------------------------------------------------------------------------------------------------
// i8mm (smmla): 2×2 tiles

/// `acc += A·Bᵀ` for A = the two 8-byte rows of `a`, B = the two 8-byte rows of `b` (signed); lanes are the
/// row-major 2×2 result: [a₀·b₀, a₀·b₁, a₁·b₀, a₁·b₁]. Exact (|Σ| ≤ 2¹⁷ per call).
#[inline]
#[target_feature(enable = "neon,i8mm")]
fn smmla(mut acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    // SAFETY: `smmla` only reads and writes the named vector registers; the enclosing function is compiled
    // with `i8mm`, so it only runs where the instruction exists (callers check `i8mm_available`).
    unsafe {
        asm!(
            "smmla {acc:v}.4s, {a:v}.16b, {b:v}.16b",
            acc = inout(vreg) acc,
            a = in(vreg) a,
            b = in(vreg) b,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    acc
}

/// [p[0..8], q[0..8]] and [p[8..16], q[8..16]]: the 8-byte row pairs `smmla` multiplies.
#[inline]
#[target_feature(enable = "neon")]
fn zip_rows(p: int8x16_t, q: int8x16_t) -> (int8x16_t, int8x16_t) {
    let (p, q) = (vreinterpretq_s64_s8(p), vreinterpretq_s64_s8(q));
    (vreinterpretq_s8_s64(vzip1q_s64(p, q)), vreinterpretq_s8_s64(vzip2q_s64(p, q)))
}

/// The four exact block sums [w₀·x₀, w₀·x₁, w₁·x₀, w₁·x₁] of two 32-element weight blocks (`w0`, `w1`, as
/// pairs of vectors) and two activation blocks.
#[inline]
#[target_feature(enable = "neon,i8mm")]
fn isum_2x2(w0: (int8x16_t, int8x16_t), w1: (int8x16_t, int8x16_t), x0: &Q8Block, x1: &Q8Block) -> [i32; 4] {
    let (x00, x01) = load_q8(x0);
    let (x10, x11) = load_q8(x1);
    let (wa, wb) = zip_rows(w0.0, w1.0);
    let (xa, xb) = zip_rows(x00, x10);
    let acc = smmla(smmla(vdupq_n_s32(0), wa, xa), wb, xb);
    let (wa, wb) = zip_rows(w0.1, w1.1);
    let (xa, xb) = zip_rows(x01, x11);
    let acc = smmla(smmla(acc, wa, xa), wb, xb);
    [vgetq_lane_s32::<0>(acc), vgetq_lane_s32::<1>(acc), vgetq_lane_s32::<2>(acc), vgetq_lane_s32::<3>(acc)]
}

/// Applies one block's four integer sums in the scalar order (`sum += isum as f32 * (d_w * d_x)`).
#[inline]
fn accumulate_2x2(sum: &mut [f32; 4], isum: [i32; 4], dw: [f32; 2], dx: [f32; 2]) {
    sum[0] += isum[0] as f32 * (dw[0] * dx[0]);
    sum[1] += isum[1] as f32 * (dw[0] * dx[1]);
    sum[2] += isum[2] as f32 * (dw[1] * dx[0]);
    sum[3] += isum[3] as f32 * (dw[1] * dx[1]);
}

fn check_tile_shapes(block_bytes: usize, w0: &[u8], w1: &[u8], x0: &[Q8Block], x1: &[Q8Block]) {
    assert!(
        w0.len() == x0.len() * block_bytes && w1.len() == w0.len() && x1.len() == x0.len(),
        "2×2 tile: weight rows of {} and {} bytes, activation rows of {} and {} blocks ({block_bytes} bytes a block)",
        w0.len(),
        w1.len(),
        x0.len(),
        x1.len()
    );
}

/// 2×2 tile of Q8_0 weight rows `w0`, `w1` times Q8_0 activation rows `x0`, `x1` with `smmla`.
///
/// Returns `[w0·x0, w0·x1, w1·x0, w1·x1]` (row-major: weight row, then activation row); each entry is
/// bit-identical to `scalar::dot_q8_0` of that pair (and to every other path's single dot). Twice the work
/// of `dot_q8_0_dotprod` per instruction: meant for prefill matmuls, where several activation rows share the
/// weights. Requires [`i8mm_available`] (i.e. `isa() == Isa::I8mm`); [`tile_q8_0_scalar`] is the portable
/// twin.
///
/// # Panics
/// If the rows do not all hold the same number of blocks (`w0.len() == w1.len() == 34 · x0.len()`,
/// `x1.len() == x0.len()`), or if the CPU lacks i8mm.
pub fn tile_q8_0_i8mm(w0: &[u8], w1: &[u8], x0: &[Q8Block], x1: &[Q8Block]) -> [f32; 4] {
    check_tile_shapes(34, w0, w1, x0, x1);
    assert!(i8mm_available());
    // SAFETY: NEON, dotprod and i8mm presence was checked just above.
    unsafe { tile_q8_0_smmla(w0, w1, x0, x1) }
}

#[target_feature(enable = "neon,i8mm")]
fn tile_q8_0_smmla(w0: &[u8], w1: &[u8], x0: &[Q8Block], x1: &[Q8Block]) -> [f32; 4] {
    let mut sum = [0f32; 4];
    let rows = w0.chunks_exact(34).zip(w1.chunks_exact(34));
    for ((a, b), (c, d)) in rows.zip(x0.iter().zip(x1)) {
        let wa = (load_i8x16(&a[2..18]), load_i8x16(&a[18..34]));
        let wb = (load_i8x16(&b[2..18]), load_i8x16(&b[18..34]));
        accumulate_2x2(&mut sum, isum_2x2(wa, wb, c, d), [block_scale(a), block_scale(b)], [c.d, d.d]);
    }
    sum
}

/// 2×2 tile of Q4_0 weight rows `w0`, `w1` times Q8_0 activation rows `x0`, `x1` with `smmla`.
///
/// Returns `[w0·x0, w0·x1, w1·x0, w1·x1]` (row-major: weight row, then activation row); each entry is
/// bit-identical to `scalar::dot_q4_0` of that pair. Requires [`i8mm_available`] (i.e. `isa() ==
/// Isa::I8mm`); [`tile_q4_0_scalar`] is the portable twin.
///
/// # Panics
/// If the rows do not all hold the same number of blocks (`w0.len() == w1.len() == 18 · x0.len()`,
/// `x1.len() == x0.len()`), or if the CPU lacks i8mm.
pub fn tile_q4_0_i8mm(w0: &[u8], w1: &[u8], x0: &[Q8Block], x1: &[Q8Block]) -> [f32; 4] {
    check_tile_shapes(18, w0, w1, x0, x1);
    assert!(i8mm_available());
    // SAFETY: NEON, dotprod and i8mm presence was checked just above.
    unsafe { tile_q4_0_smmla(w0, w1, x0, x1) }
}

#[target_feature(enable = "neon,i8mm")]
fn tile_q4_0_smmla(w0: &[u8], w1: &[u8], x0: &[Q8Block], x1: &[Q8Block]) -> [f32; 4] {
    let mut sum = [0f32; 4];
    let rows = w0.chunks_exact(18).zip(w1.chunks_exact(18));
    for ((a, b), (c, d)) in rows.zip(x0.iter().zip(x1)) {
        let isum = isum_2x2(unpack_q4_0(&a[2..18]), unpack_q4_0(&b[2..18]), c, d);
        accumulate_2x2(&mut sum, isum, [block_scale(a), block_scale(b)], [c.d, d.d]);
    }
    sum
}

/// Portable twin of [`tile_q8_0_i8mm`]: the same shapes and panics, `[w0·x0, w0·x1, w1·x0, w1·x1]` from
/// four `scalar::dot_q8_0` calls.
pub fn tile_q8_0_scalar(w0: &[u8], w1: &[u8], x0: &[Q8Block], x1: &[Q8Block]) -> [f32; 4] {
    check_tile_shapes(34, w0, w1, x0, x1);
    [scalar::dot_q8_0(w0, x0), scalar::dot_q8_0(w0, x1), scalar::dot_q8_0(w1, x0), scalar::dot_q8_0(w1, x1)]
}

/// Portable twin of [`tile_q4_0_i8mm`]: the same shapes and panics, `[w0·x0, w0·x1, w1·x0, w1·x1]` from
/// four `scalar::dot_q4_0` calls.
pub fn tile_q4_0_scalar(w0: &[u8], w1: &[u8], x0: &[Q8Block], x1: &[Q8Block]) -> [f32; 4] {
    check_tile_shapes(18, w0, w1, x0, x1);
    [scalar::dot_q4_0(w0, x0), scalar::dot_q4_0(w0, x1), scalar::dot_q4_0(w1, x0), scalar::dot_q4_0(w1, x1)]
}
