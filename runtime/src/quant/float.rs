//! Scalar float conversions with ggml's exact rounding and NaN rules.

use half::f16;

/// f32 → f16 bits, round-to-nearest-even (overflow → ±inf, subnormals kept), as ggml's
/// `GGML_FP32_TO_FP16`. Every NaN becomes the canonical quiet NaN `0x7E00` with its sign, which is
/// what ggml's portable conversion emits (the `half` crate would keep payload bits instead).
#[inline]
pub fn f32_to_f16_bits(x: f32) -> u16 {
    if x.is_nan() {
        let sign = ((x.to_bits() >> 16) & 0x8000) as u16;
        return sign | 0x7E00;
    }
    f16::from_f32(x).to_bits()
}

/// f16 bits → f32 (exact), as `GGML_FP16_TO_FP32`.
#[inline]
pub fn f16_bits_to_f32(h: u16) -> f32 {
    f16::from_bits(h).to_f32()
}

/// f16 bits → f32, bit-identical to [`f16_bits_to_f32`] for every input (tested exhaustively) but branch-free,
/// so loops over it vectorize: the exponent and mantissa bits shifted into an f32 and scaled by 2¹¹² (exact,
/// also for subnormals), with infinities and NaNs (made quiet, payload kept) patched in.
#[inline(always)]
pub fn f16_to_f32_vectorizable(h: u16) -> f32 {
    let h = h as u32;
    let sign = (h & 0x8000) << 16;
    let em = h & 0x7fff;
    let scaled = (f32::from_bits(em << 13) * f32::from_bits(0x7780_0000)).to_bits();
    // Exponent 31 scaled to 2¹⁶·1.m: set all exponent bits, and the quiet bit for NaNs.
    let inf_nan = if em >= 0x7c00 { 0x7f80_0000 } else { 0 };
    let quiet = if em > 0x7c00 { 0x0040_0000 } else { 0 };
    f32::from_bits(sign | scaled | inf_nan | quiet)
}

/// f32 → bf16 bits, `ggml_compute_fp32_to_bf16`: round-to-nearest-even on the upper 16 bits; a NaN
/// keeps its top payload bits and is forced quiet.
#[inline]
pub fn f32_to_bf16_bits(x: f32) -> u16 {
    let u = x.to_bits();
    if (u & 0x7fff_ffff) > 0x7f80_0000 {
        return ((u >> 16) | 64) as u16;
    }
    (u.wrapping_add(0x7fff + ((u >> 16) & 1)) >> 16) as u16
}

/// bf16 bits → f32 (exact): the bits become the upper half of an f32.
#[inline]
pub fn bf16_bits_to_f32(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_known_values() {
        assert_eq!(f32_to_f16_bits(1.0), 0x3C00);
        assert_eq!(f32_to_f16_bits(-2.0), 0xC000);
        assert_eq!(f32_to_f16_bits(65504.0), 0x7BFF);
        // 65520 is the midpoint between 65504 and 65536 (=inf in f16): ties to even → inf.
        assert_eq!(f32_to_f16_bits(65520.0), 0x7C00);
        assert_eq!(f32_to_f16_bits(65519.99), 0x7BFF);
        assert_eq!(f32_to_f16_bits(f32::INFINITY), 0x7C00);
        assert_eq!(f32_to_f16_bits(f32::NEG_INFINITY), 0xFC00);
        assert_eq!(f32_to_f16_bits(-0.0), 0x8000);
        // Subnormals: 2^-24 is the smallest; 2^-25 ties to even (0); 3*2^-25 ties up to 2.
        assert_eq!(f32_to_f16_bits(2f32.powi(-24)), 0x0001);
        assert_eq!(f32_to_f16_bits(2f32.powi(-25)), 0x0000);
        assert_eq!(f32_to_f16_bits(3.0 * 2f32.powi(-25)), 0x0002);
        assert_eq!(f32_to_f16_bits(1.0 + 2f32.powi(-11)), 0x3C00); // tie → even
        assert_eq!(f32_to_f16_bits(1.0 + 3.0 * 2f32.powi(-11)), 0x3C02); // tie → even (up)
        assert_eq!(f32_to_f16_bits(f32::NAN), 0x7E00);
        assert_eq!(f32_to_f16_bits(-f32::NAN), 0xFE00);
        assert_eq!(f32_to_f16_bits(f32::from_bits(0x7F80_0001)), 0x7E00);
    }

    #[test]
    fn f16_round_trip_is_exact_for_every_non_nan() {
        for h in 0..=u16::MAX {
            let f = f16_bits_to_f32(h);
            if f.is_nan() {
                assert_eq!(h & 0x7C00, 0x7C00);
                continue;
            }
            assert_eq!(f32_to_f16_bits(f), h, "f16 {h:#06x} → {f:e}");
        }
        assert_eq!(f16_bits_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_bits_to_f32(0x7C00), f32::INFINITY);
        assert!(f16_bits_to_f32(0x7E00).is_nan());
    }

    #[test]
    fn bf16_known_values_and_round_trip() {
        assert_eq!(f32_to_bf16_bits(1.0), 0x3F80);
        assert_eq!(f32_to_bf16_bits(f32::from_bits(0x3F80_8000)), 0x3F80); // tie → even (down)
        assert_eq!(f32_to_bf16_bits(f32::from_bits(0x3F81_8000)), 0x3F82); // tie → even (up)
        assert_eq!(f32_to_bf16_bits(f32::from_bits(0x3F80_8001)), 0x3F81);
        assert_eq!(f32_to_bf16_bits(f32::MAX), 0x7F80); // rounds up to inf
        assert_eq!(f32_to_bf16_bits(f32::INFINITY), 0x7F80);
        assert_eq!(f32_to_bf16_bits(f32::NEG_INFINITY), 0xFF80);
        // Signalling NaN is quieted, payload top bits kept.
        assert_eq!(f32_to_bf16_bits(f32::from_bits(0x7F81_0000)), 0x7FC1);
        assert_eq!(f32_to_bf16_bits(f32::from_bits(0xFFC0_0000)), 0xFFC0);
        // Subnormal f32 survive in bf16 (same exponent range).
        assert_eq!(f32_to_bf16_bits(f32::from_bits(0x0001_0000)), 0x0001);
        for h in 0..=u16::MAX {
            let f = bf16_bits_to_f32(h);
            if f.is_nan() {
                assert_eq!(f32_to_bf16_bits(f), h | 0x0040);
            } else {
                assert_eq!(f32_to_bf16_bits(f), h);
            }
        }
    }
}
