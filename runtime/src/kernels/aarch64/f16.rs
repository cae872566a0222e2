//! NEON f16 ↔ f32 conversions of rows and the f16-weight dot, twins of [`crate::quant`]'s scalar
//! conversions and of [`crate::kernels::kquants::dot_f16`].
//!
//! `fcvtl`/`fcvtl2` (half → single) and `fcvtn` (single → half) are base armv8.0 Advanced SIMD, but stable
//! Rust's intrinsics for them take `float16x4_t`, which needs the unstable `f16` type: they are inline
//! `asm!` here. Half → single is exact, and with the FPCR as Linux leaves it (no flush-to-zero, no default
//! NaN, IEEE half format) it keeps NaN payloads and makes signaling NaNs quiet, exactly like
//! [`f16_to_f32_vectorizable`](crate::quant::f16_to_f32_vectorizable): conversions are bit-identical to the
//! scalar ones (checked for all 65536 halves). Single → half rounds to nearest even like the `half` crate;
//! NaNs are patched to ggml's canonical `±0x7E00` as [`f32_to_f16_bits`] does. The dot multiplies and adds
//! unfused in the scalar twin's eight lanes (two 4-lane vectors), so it is bit-identical too.

use std::arch::aarch64::*;
use std::arch::asm;

use super::neon_available;
use crate::kernels::scalar::reduce8;
use crate::quant::{f16_bits_to_f32, f32_to_f16_bits};

/// Halves 0..4 of `h` as f32 (`fcvtl`, exact).
#[inline]
#[target_feature(enable = "neon")]
fn cvt_lo(h: uint16x8_t) -> float32x4_t {
    let out: float32x4_t;
    // SAFETY: `fcvtl` only reads and writes the named vector registers; it is armv8.0 NEON, which the
    // enclosing function requires.
    unsafe {
        asm!("fcvtl {o:v}.4s, {h:v}.4h", o = lateout(vreg) out, h = in(vreg) h, options(pure, nomem, nostack, preserves_flags));
    }
    out
}

/// Halves 4..8 of `h` as f32 (`fcvtl2`, exact).
#[inline]
#[target_feature(enable = "neon")]
fn cvt_hi(h: uint16x8_t) -> float32x4_t {
    let out: float32x4_t;
    // SAFETY: as in `cvt_lo`.
    unsafe {
        asm!("fcvtl2 {o:v}.4s, {h:v}.8h", o = lateout(vreg) out, h = in(vreg) h, options(pure, nomem, nostack, preserves_flags));
    }
    out
}

/// 8 little-endian f16 values from `p` (16 bytes, any alignment) as two f32 vectors.
///
/// # Safety
/// `p` must be readable for 16 bytes; NEON must be available.
#[inline]
#[target_feature(enable = "neon")]
pub(crate) unsafe fn load8_f16(p: *const u8) -> (float32x4_t, float32x4_t) {
    // SAFETY: the caller guarantees 16 readable bytes; `ld1` has no alignment requirement (aarch64 Linux is
    // little-endian, so the lanes are the little-endian halves).
    let h = unsafe { vld1q_u16(p as *const u16) };
    (cvt_lo(h), cvt_hi(h))
}

/// 4 little-endian f16 values from `p` (8 bytes, any alignment) as f32.
///
/// # Safety
/// `p` must be readable for 8 bytes; NEON must be available.
#[inline]
#[target_feature(enable = "neon")]
pub(crate) unsafe fn load4_f16(p: *const u8) -> float32x4_t {
    // SAFETY: the caller guarantees 8 readable bytes; `ld1` has no alignment requirement.
    let h = unsafe { vld1_u16(p as *const u16) };
    let out: float32x4_t;
    // SAFETY: as in `cvt_lo` (`fcvtl` reads the 64-bit register `h` as four halves).
    unsafe {
        asm!("fcvtl {o:v}.4s, {h:v}.4h", o = lateout(vreg) out, h = in(vreg) h, options(pure, nomem, nostack, preserves_flags));
    }
    out
}

/// The f16 at `bytes[at..at + 2]` (little-endian) as f32, as the scalar tails read it.
#[inline]
fn f16_at(bytes: &[u8], at: usize) -> f32 {
    f16_bits_to_f32(u16::from_le_bytes([bytes[at], bytes[at + 1]]))
}

/// f16 row (little-endian bytes) → f32: `dst[i] = f16(src[2i..2i + 2])` for `i < dst.len()`; bit-identical
/// to [`f16_to_f32_vectorizable`](crate::quant::f16_to_f32_vectorizable) on every element.
pub fn f16_to_f32_row(src: &[u8], dst: &mut [f32]) {
    assert!(neon_available());
    assert!(src.len() >= 2 * dst.len(), "f16 row: {} bytes for {} values", src.len(), dst.len());
    // SAFETY: NEON presence was checked above; src holds 2 bytes per element of dst (asserted).
    unsafe { f16_to_f32_neon(src, dst) }
}

#[target_feature(enable = "neon")]
fn f16_to_f32_neon(src: &[u8], dst: &mut [f32]) {
    let n = dst.len();
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: i + 8 <= n: 16 bytes of src from 2i and 8 f32 of dst from i are in bounds.
        unsafe {
            let (a, b) = load8_f16(src.as_ptr().add(2 * i));
            vst1q_f32(dst.as_mut_ptr().add(i), a);
            vst1q_f32(dst.as_mut_ptr().add(i + 4), b);
        }
        i += 8;
    }
    for (j, y) in dst.iter_mut().enumerate().skip(i) {
        *y = f16_at(src, 2 * j);
    }
}

/// 4 f32 → f16 bits (`fcvtn`: round to nearest even, overflow to ±inf, subnormal halves kept).
#[inline]
#[target_feature(enable = "neon")]
fn cvt_narrow(x: float32x4_t) -> uint16x4_t {
    let out: uint16x4_t;
    // SAFETY: `fcvtn` only reads and writes the named vector registers; it is armv8.0 NEON, which the
    // enclosing function requires.
    unsafe {
        asm!("fcvtn {o:v}.4h, {x:v}.4s", o = lateout(vreg) out, x = in(vreg) x, options(pure, nomem, nostack, preserves_flags));
    }
    out
}

/// 4 f32 → f16 bits as [`f32_to_f16_bits`]: `fcvtn`, with every NaN replaced by ggml's quiet `0x7E00`
/// under its sign (`fcvtn` would keep the top payload bits).
#[inline]
#[target_feature(enable = "neon")]
fn to_f16x4(x: float32x4_t) -> uint16x4_t {
    let bits = vreinterpretq_u32_f32(x);
    let canonical = vorrq_u32(vandq_u32(vshrq_n_u32::<16>(bits), vdupq_n_u32(0x8000)), vdupq_n_u32(0x7E00));
    let nan = vmvnq_u32(vceqq_f32(x, x));
    vbsl_u16(vmovn_u32(nan), vmovn_u32(canonical), cvt_narrow(x))
}

/// f32 row → f16 row (little-endian bytes): `dst[2i..2i + 2] = f16(src[i])` for `i < src.len()`;
/// bit-identical to [`f32_to_f16_bits`] on every element.
pub fn f32_to_f16_row(src: &[f32], dst: &mut [u8]) {
    assert!(neon_available());
    assert!(dst.len() >= 2 * src.len(), "f16 row: {} bytes for {} values", dst.len(), src.len());
    // SAFETY: NEON presence was checked above; dst holds 2 bytes per element of src (asserted).
    unsafe { f32_to_f16_neon(src, dst) }
}

#[target_feature(enable = "neon")]
fn f32_to_f16_neon(src: &[f32], dst: &mut [u8]) {
    let n = src.len();
    let mut i = 0;
    while i + 4 <= n {
        // SAFETY: i + 4 <= n: 4 f32 of src from i and 8 bytes of dst from 2i are in bounds; unaligned.
        unsafe {
            let h = to_f16x4(vld1q_f32(src.as_ptr().add(i)));
            vst1_u16(dst.as_mut_ptr().add(2 * i) as *mut u16, h);
        }
        i += 4;
    }
    for (j, &x) in src.iter().enumerate().skip(i) {
        dst[2 * j..2 * j + 2].copy_from_slice(&f32_to_f16_bits(x).to_le_bytes());
    }
}

/// f16 weight row (little-endian bytes) · f32 activations (bit-identical to
/// [`crate::kernels::kquants::dot_f16`]: lane l of the scalar eight is lane l % 4 of vector l / 4).
pub fn dot_f16(w: &[u8], x: &[f32]) -> f32 {
    assert!(neon_available());
    assert_eq!(w.len(), 2 * x.len(), "f16 dot: {} weight bytes against {} activations", w.len(), x.len());
    // SAFETY: NEON presence was checked above; w holds 2 bytes per element of x.
    unsafe { dot_f16_neon(w, x) }
}

#[target_feature(enable = "neon")]
fn dot_f16_neon(w: &[u8], x: &[f32]) -> f32 {
    let n = x.len();
    let (mut lo, mut hi) = (vdupq_n_f32(0.0), vdupq_n_f32(0.0));
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: i + 8 <= n: 16 bytes of w from 2i and 8 f32 of x from i are in bounds.
        unsafe {
            let (a, b) = load8_f16(w.as_ptr().add(2 * i));
            lo = vaddq_f32(lo, vmulq_f32(a, vld1q_f32(x.as_ptr().add(i))));
            hi = vaddq_f32(hi, vmulq_f32(b, vld1q_f32(x.as_ptr().add(i + 4))));
        }
        i += 8;
    }
    let mut lanes = [0f32; 8];
    // SAFETY: `lanes` holds 8 f32.
    unsafe {
        vst1q_f32(lanes.as_mut_ptr(), lo);
        vst1q_f32(lanes.as_mut_ptr().add(4), hi);
    }
    let mut tail = 0f32;
    for (wb, xv) in w[2 * i..].chunks_exact(2).zip(&x[i..]) {
        tail += f16_at(wb, 0) * xv;
    }
    reduce8(lanes) + tail
}

#[cfg(test)]
mod tests {
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::kernels::kquants;
    use crate::quant::f16_to_f32_vectorizable;

    fn same(a: f32, b: f32) -> bool {
        a.to_bits() == b.to_bits()
    }

    #[test]
    fn neon_f16_to_f32_rows_are_bit_identical_for_every_half() {
        // All 65536 halves (subnormals, ±0, ±inf, quiet and signaling NaNs with payloads), then every
        // length 0..40 at every byte offset 0..2 (unaligned loads).
        let bytes: Vec<u8> = (0..=u16::MAX).flat_map(|h| h.to_le_bytes()).collect();
        let mut got = vec![0f32; 65536];
        f16_to_f32_row(&bytes, &mut got);
        for (h, g) in (0..=u16::MAX).zip(&got) {
            let want = f16_to_f32_vectorizable(h);
            assert!(same(*g, want), "f16 {h:#06x}: neon {:#010x} vs scalar {:#010x}", g.to_bits(), want.to_bits());
            assert!(same(want, f16_bits_to_f32(h)) || want.is_nan());
        }
        let mut rng = SmallRng::seed_from_u64(21);
        let raw: Vec<u8> = (0..100).map(|_| rng.gen()).collect();
        for off in 0..2 {
            for n in 0..40 {
                let src = &raw[off..off + 2 * n];
                let mut got = vec![0f32; n];
                f16_to_f32_row(src, &mut got);
                for (j, g) in got.iter().enumerate() {
                    let want = f16_to_f32_vectorizable(u16::from_le_bytes([src[2 * j], src[2 * j + 1]]));
                    assert!(same(*g, want), "n={n} off={off} [{j}]");
                }
            }
        }
        eprintln!("neon f16→f32 rows compared bit-exactly with scalar: all 65536 halves");
    }

    #[test]
    fn neon_f32_to_f16_rows_are_bit_identical() {
        let mut rng = SmallRng::seed_from_u64(22);
        // Random bit patterns (every class), values around the f16 range's edges and rounding ties: the
        // largest half 65504, the overflow threshold 65520, the smallest subnormal 2⁻²⁴ and its half.
        let mut xs: Vec<f32> = (0..300_000).map(|_| f32::from_bits(rng.gen())).collect();
        xs.extend((0..100_000).map(|_| rng.gen_range(-70_000.0f32..70_000.0)));
        xs.extend((0..100_000).map(|_| rng.gen_range(-1e-4f32..1e-4)));
        for base in [65504.0f32, 65520.0, 2f32.powi(-24), 2f32.powi(-25), 2f32.powi(-14), 1.0, 1.0 + 2f32.powi(-11)] {
            let mut v = base;
            for _ in 0..40 {
                xs.extend([v, -v]);
                v = v.next_up();
            }
            let mut v = base;
            for _ in 0..40 {
                xs.extend([v, -v]);
                v = v.next_down();
            }
        }
        // Every half's exact value and the midpoints between neighbours (ties to even).
        for h in 0..0x7C00u16 {
            let (a, b) = (f16_bits_to_f32(h) as f64, f16_bits_to_f32(h + 1) as f64);
            xs.extend([a as f32, ((a + b) / 2.0) as f32, -(((a + b) / 2.0) as f32)]);
        }
        xs.extend([0.0, -0.0, f32::INFINITY, f32::NEG_INFINITY, f32::NAN, -f32::NAN, f32::MAX, f32::MIN_POSITIVE]);
        xs.extend([f32::from_bits(0x7F80_0001), f32::from_bits(0xFFBF_FFFF), 1e-45, -1e-45]);
        for n in [xs.len(), 1, 3, 4, 5, 7, 9] {
            let src = &xs[xs.len() - n..];
            let mut got = vec![0u8; 2 * n + 1];
            f32_to_f16_row(src, &mut got[1..]);
            for (j, &x) in src.iter().enumerate() {
                let g = u16::from_le_bytes([got[1 + 2 * j], got[2 + 2 * j]]);
                let want = f32_to_f16_bits(x);
                assert_eq!(g, want, "f32 {x:e} ({:#010x}): neon {g:#06x} vs scalar {want:#06x}", x.to_bits());
            }
        }
        eprintln!("neon f32→f16 rows compared bit-exactly with scalar on {} values", xs.len());
    }

    #[test]
    fn neon_f16_dot_is_bit_identical_to_scalar() {
        let mut rng = SmallRng::seed_from_u64(23);
        let mut compared = 0;
        for &n in &[0usize, 1, 3, 4, 7, 8, 9, 15, 16, 17, 31, 32, 33, 64, 100, 256, 1000, 1536, 4097, 6144] {
            for case in 0..4 {
                let x: Vec<f32> = (0..n).map(|_| rng.gen_range(-3.0f32..3.0)).collect();
                let w: Vec<u8> = match case {
                    // Quantized f32 weights; the same with large activations.
                    0 | 1 => (0..n).flat_map(|_| f32_to_f16_bits(rng.gen_range(-2.0f32..2.0)).to_le_bytes()).collect(),
                    // Raw halves, including subnormals, ±inf and NaNs.
                    2 => (0..n).flat_map(|_| rng.gen::<u16>().to_le_bytes()).collect(),
                    // Finite raw halves only (subnormals and the largest values).
                    _ => (0..n)
                        .flat_map(|_| ((rng.gen::<u16>() % 0x7C00) | (rng.gen::<u16>() & 0x8000)).to_le_bytes())
                        .collect(),
                };
                let x = if case == 1 { x.iter().map(|v| v * 1e4).collect() } else { x };
                let (s, v) = (kquants::dot_f16(&w, &x), dot_f16(&w, &x));
                assert!(same(s, v) || (s.is_nan() && v.is_nan()), "n={n} case={case}: scalar {s:e} vs neon {v:e}");
                compared += 1;
            }
        }
        eprintln!("neon f16 dot compared bit-exactly with scalar ({compared} dots)");
    }
}
