//! Legacy 32-element blocks: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0.
//!
//! Quantizers follow ggml's `quantize_row_*_ref` expression by expression (`x * id` with
//! `id = 1/d`, truncating casts after `+ 8.5` / `+ 0.5`, `roundf` for Q8_0) so the bytes match
//! ggml's; dequantizers evaluate `q * d (+ m)` unfused, as ggml-base is compiled without FMA.

use half::f16;

use super::blocks::{BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0, QK};
use super::float::f32_to_f16_bits;
use super::BlockCodec;

const HALF: usize = QK / 2;

#[inline]
fn to_f16(x: f32) -> f16 {
    f16::from_bits(f32_to_f16_bits(x))
}

/// The element with the largest magnitude, sign kept (first one wins ties), as ggml's
/// `if (amax < fabsf(v)) { amax = fabsf(v); max = v; }`.
#[inline]
fn signed_absmax(x: &[f32]) -> f32 {
    let mut amax = 0.0f32;
    let mut max = 0.0f32;
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    max
}

/// Minimum and maximum as ggml's `if (v < min) ...; if (v > max) ...` from ±FLT_MAX.
#[inline]
fn min_max(x: &[f32]) -> (f32, f32) {
    let mut min = f32::MAX;
    let mut max = -f32::MAX;
    for &v in x {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
    (min, max)
}

#[inline]
fn inverse(d: f32) -> f32 {
    // C's `d ? 1.0f/d : 0.0f`: NaN is truthy, only ±0 maps to 0.
    if d != 0.0 {
        1.0 / d
    } else {
        0.0
    }
}

impl BlockCodec for BlockQ4_0 {
    const ELEMS: usize = QK;

    fn quantize_block(x: &[f32]) -> Self {
        let d = signed_absmax(x) / -8.0;
        let id = inverse(d);
        let mut qs = [0u8; HALF];
        for (j, q) in qs.iter_mut().enumerate() {
            let x0 = x[j] * id;
            let x1 = x[HALF + j] * id;
            // `(int8_t)(x + 8.5f)` truncates toward zero; Rust's `as` does too (saturating).
            let xi0 = ((x0 + 8.5) as i8).min(15) as u8;
            let xi1 = ((x1 + 8.5) as i8).min(15) as u8;
            *q = xi0 | (xi1 << 4);
        }
        BlockQ4_0 { d: to_f16(d), qs }
    }

    fn dequantize_block(&self, y: &mut [f32]) {
        let d = self.d.to_f32();
        for (j, &q) in self.qs.iter().enumerate() {
            y[j] = ((q & 0x0F) as i32 - 8) as f32 * d;
            y[j + HALF] = ((q >> 4) as i32 - 8) as f32 * d;
        }
    }
}

impl BlockCodec for BlockQ4_1 {
    const ELEMS: usize = QK;

    fn quantize_block(x: &[f32]) -> Self {
        let (min, max) = min_max(x);
        let d = (max - min) / 15.0;
        let id = inverse(d);
        let mut qs = [0u8; HALF];
        for (j, q) in qs.iter_mut().enumerate() {
            let x0 = (x[j] - min) * id;
            let x1 = (x[HALF + j] - min) * id;
            let xi0 = ((x0 + 0.5) as i8).min(15) as u8;
            let xi1 = ((x1 + 0.5) as i8).min(15) as u8;
            *q = xi0 | (xi1 << 4);
        }
        BlockQ4_1 { d: to_f16(d), m: to_f16(min), qs }
    }

    fn dequantize_block(&self, y: &mut [f32]) {
        let d = self.d.to_f32();
        let m = self.m.to_f32();
        for (j, &q) in self.qs.iter().enumerate() {
            y[j] = (q & 0x0F) as f32 * d + m;
            y[j + HALF] = (q >> 4) as f32 * d + m;
        }
    }
}

impl BlockCodec for BlockQ5_0 {
    const ELEMS: usize = QK;

    fn quantize_block(x: &[f32]) -> Self {
        let d = signed_absmax(x) / -16.0;
        let id = inverse(d);
        let mut qs = [0u8; HALF];
        let mut qh = 0u32;
        for (j, q) in qs.iter_mut().enumerate() {
            let x0 = x[j] * id;
            let x1 = x[HALF + j] * id;
            let xi0 = ((x0 + 16.5) as i8).min(31) as u8;
            let xi1 = ((x1 + 16.5) as i8).min(31) as u8;
            *q = (xi0 & 0x0F) | ((xi1 & 0x0F) << 4);
            qh |= (((xi0 & 0x10) >> 4) as u32) << j;
            qh |= (((xi1 & 0x10) >> 4) as u32) << (j + HALF);
        }
        BlockQ5_0 { d: to_f16(d), qh: qh.to_le_bytes(), qs }
    }

    fn dequantize_block(&self, y: &mut [f32]) {
        let d = self.d.to_f32();
        let qh = u32::from_le_bytes(self.qh);
        for (j, &q) in self.qs.iter().enumerate() {
            let xh0 = ((qh >> j) << 4) as u8 & 0x10;
            let xh1 = (qh >> (j + 12)) as u8 & 0x10;
            y[j] = (((q & 0x0F) | xh0) as i32 - 16) as f32 * d;
            y[j + HALF] = (((q >> 4) | xh1) as i32 - 16) as f32 * d;
        }
    }
}

impl BlockCodec for BlockQ5_1 {
    const ELEMS: usize = QK;

    fn quantize_block(x: &[f32]) -> Self {
        let (min, max) = min_max(x);
        let d = (max - min) / 31.0;
        let id = inverse(d);
        let mut qs = [0u8; HALF];
        let mut qh = 0u32;
        for (j, q) in qs.iter_mut().enumerate() {
            let x0 = (x[j] - min) * id;
            let x1 = (x[HALF + j] - min) * id;
            // ggml has no clamp here: `(uint8_t)(x + 0.5f)`.
            let xi0 = (x0 + 0.5) as u8;
            let xi1 = (x1 + 0.5) as u8;
            *q = (xi0 & 0x0F) | ((xi1 & 0x0F) << 4);
            qh |= (((xi0 & 0x10) >> 4) as u32) << j;
            qh |= (((xi1 & 0x10) >> 4) as u32) << (j + HALF);
        }
        BlockQ5_1 { d: to_f16(d), m: to_f16(min), qh: qh.to_le_bytes(), qs }
    }

    fn dequantize_block(&self, y: &mut [f32]) {
        let d = self.d.to_f32();
        let m = self.m.to_f32();
        let qh = u32::from_le_bytes(self.qh);
        for (j, &q) in self.qs.iter().enumerate() {
            let xh0 = ((qh >> j) << 4) as u8 & 0x10;
            let xh1 = (qh >> (j + 12)) as u8 & 0x10;
            y[j] = ((q & 0x0F) | xh0) as f32 * d + m;
            y[j + HALF] = ((q >> 4) | xh1) as f32 * d + m;
        }
    }
}

impl BlockCodec for BlockQ8_0 {
    const ELEMS: usize = QK;

    fn quantize_block(x: &[f32]) -> Self {
        // `amax = MAX(amax, fabsf(v))` with MAX(a, b) = a > b ? a : b.
        let amax = x.iter().fold(0.0f32, |a, &v| if a > v.abs() { a } else { v.abs() });
        let d = amax / 127.0;
        let id = inverse(d);
        let mut qs = [0i8; QK];
        for (q, &v) in qs.iter_mut().zip(x) {
            // `roundf`: half away from zero, like `f32::round`.
            *q = (v * id).round() as i8;
        }
        BlockQ8_0 { d: to_f16(d), qs }
    }

    fn dequantize_block(&self, y: &mut [f32]) {
        let d = self.d.to_f32();
        for (out, &q) in y.iter_mut().zip(&self.qs) {
            *out = q as f32 * d;
        }
    }
}
