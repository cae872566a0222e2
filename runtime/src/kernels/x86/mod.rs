//! AVX2 twins of the scalar dot products. The integer block dots compute each block's integer sum exactly
//! and then apply the scales in the scalar order, so they are bit-identical to [`super::scalar`]; the f32
//! dot reorders its sum (four 8-lane FMA accumulators) and agrees within float rounding.

pub mod attention;
pub mod elementwise;
pub mod interleaved;
pub mod tiles;

pub mod kquants;

use std::arch::x86_64::*;

pub use kquants::{dot_f16, dot_q4_k, dot_q5_k, dot_q6_k};

use super::scalar::Q8Block;
use crate::quant::f16_bits_to_f32;

/// Whether this CPU runs the AVX2 + FMA paths (F16C too, for the f16-weight dot: every AVX2 CPU has it).
pub fn available() -> bool {
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c")
}

/// Whether this CPU also has a VNNI integer step on 256-bit vectors (see [`Step`]).
pub fn vnni_available() -> bool {
    Step::vnni().is_some()
}

/// The integer step of the x86 block kernels (tiles, one-row and one-token dots). Every step computes the
/// same exact i32 sums, so the kernels are bit-identical whichever runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// `maddubs` + `madd` (AVX2).
    Avx2,
    /// `vpdpbusd` on 256-bit vectors in its EVEX form: AVX-512 VNNI with VL (Ice Lake, Zen 4, Sapphire
    /// Rapids and later).
    Avx512Vnni,
    /// The same instruction in its VEX form: AVX-VNNI, on CPUs without AVX-512 (Alder Lake and the N-series
    /// kiosk chips, Arrow Lake, Sierra Forest; Zen 5 and Sapphire Rapids have it too).
    AvxVnni,
}

impl Step {
    /// Every step, in the order the tests compare them.
    pub const ALL: [Step; 3] = [Step::Avx2, Step::Avx512Vnni, Step::AvxVnni];

    /// Whether this CPU has the step.
    pub fn available(self) -> bool {
        available()
            && match self {
                Step::Avx2 => true,
                Step::Avx512Vnni => is_x86_feature_detected!("avx512vnni") && is_x86_feature_detected!("avx512vl"),
                Step::AvxVnni => is_x86_feature_detected!("avxvnni"),
            }
    }

    /// The VNNI step this CPU has, if any: the EVEX form where both are present (same instruction, same
    /// throughput on 256-bit vectors), else the VEX form.
    pub fn vnni() -> Option<Step> {
        static VNNI: std::sync::OnceLock<Option<Step>> = std::sync::OnceLock::new();
        *VNNI.get_or_init(|| [Step::Avx512Vnni, Step::AvxVnni].into_iter().find(|s| s.available()))
    }

    /// The step the x86 kernels take on path `isa` (`Avx2Vnni`: the VNNI form this CPU has).
    pub fn for_isa(isa: super::Isa) -> Step {
        match (isa, Step::vnni()) {
            (super::Isa::Avx2Vnni, Some(v)) => v,
            _ => Step::Avx2,
        }
    }

    /// The name the tests and `SAIL_EDGE_EXPECT_ISA` use for it (the CPU flag's name).
    pub fn name(self) -> &'static str {
        match self {
            Step::Avx2 => "avx2",
            Step::Avx512Vnni => "avx512vnni",
            Step::AvxVnni => "avxvnni",
        }
    }

    /// Whether `dpbusd` is the step (the kernels then feed it unsigned weights).
    pub fn is_vnni(self) -> bool {
        self != Step::Avx2
    }
}

#[inline]
fn block_scale(bytes: &[u8]) -> f32 {
    f16_bits_to_f32(u16::from_le_bytes([bytes[0], bytes[1]]))
}

/// Sum of the 8 i32 lanes.
#[inline]
#[target_feature(enable = "avx2")]
fn hsum_i32(v: __m256i) -> i32 {
    let lo = _mm256_castsi256_si128(v);
    let hi = _mm256_extracti128_si256::<1>(v);
    let s = _mm_add_epi32(lo, hi);
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
    _mm_cvtsi128_si32(s)
}

/// Σ a·b over 32 signed bytes, exact: ggml's sign trick makes `a` unsigned for `maddubs`.
#[inline]
#[target_feature(enable = "avx2")]
fn isum_i8x32(a: __m256i, b: __m256i) -> i32 {
    let ax = _mm256_sign_epi8(a, a);
    let sy = _mm256_sign_epi8(b, a);
    let dot16 = _mm256_maddubs_epi16(ax, sy);
    let dot32 = _mm256_madd_epi16(dot16, _mm256_set1_epi16(1));
    hsum_i32(dot32)
}

/// Q8_0 weight row · Q8_0 activation row (bit-identical to the scalar twin).
pub fn dot_q8_0(w: &[u8], x: &[Q8Block]) -> f32 {
    assert!(available());
    // SAFETY: AVX2 presence was checked just above.
    unsafe { dot_q8_0_avx2(w, x) }
}

#[target_feature(enable = "avx2")]
unsafe fn dot_q8_0_avx2(w: &[u8], x: &[Q8Block]) -> f32 {
    let mut sum = 0f32;
    for (wb, xb) in w.chunks_exact(34).zip(x) {
        // SAFETY: wb[2..34] and xb.qs are 32 readable bytes each; unaligned loads.
        let (a, b) = unsafe {
            (
                _mm256_loadu_si256(wb[2..].as_ptr() as *const __m256i),
                _mm256_loadu_si256(xb.qs.as_ptr() as *const __m256i),
            )
        };
        let isum = isum_i8x32(a, b);
        sum += isum as f32 * (block_scale(wb) * xb.d);
    }
    sum
}

/// Q4_0 weight row · Q8_0 activation row (bit-identical to the scalar twin).
pub fn dot_q4_0(w: &[u8], x: &[Q8Block]) -> f32 {
    assert!(available());
    // SAFETY: AVX2 presence was checked just above.
    unsafe { dot_q4_0_avx2(w, x) }
}

#[target_feature(enable = "avx2")]
unsafe fn dot_q4_0_avx2(w: &[u8], x: &[Q8Block]) -> f32 {
    let mask = _mm_set1_epi8(0x0F);
    let eight = _mm256_set1_epi8(8);
    let mut sum = 0f32;
    for (wb, xb) in w.chunks_exact(18).zip(x) {
        // SAFETY: wb[2..18] is 16 readable bytes and xb.qs 32; unaligned loads.
        let (packed, b) = unsafe {
            (_mm_loadu_si128(wb[2..].as_ptr() as *const __m128i), _mm256_loadu_si256(xb.qs.as_ptr() as *const __m256i))
        };
        // Low nibbles are elements 0..16, high nibbles 16..32, each offset by 8.
        let lo = _mm_and_si128(packed, mask);
        let hi = _mm_and_si128(_mm_srli_epi16::<4>(packed), mask);
        let a = _mm256_sub_epi8(_mm256_set_m128i(hi, lo), eight);
        let isum = isum_i8x32(a, b);
        sum += isum as f32 * (block_scale(wb) * xb.d);
    }
    sum
}

/// f32 dot product with FMA (reassociated: agrees with the scalar twin within float rounding).
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    assert!(available() && a.len() == b.len());
    // SAFETY: AVX2/FMA presence was checked just above; lengths are equal.
    unsafe { dot_f32_avx2(a, b) }
}

#[target_feature(enable = "avx2,fma")]
unsafe fn dot_f32_avx2(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len();
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i + 32 <= n {
        for (l, acc) in acc.iter_mut().enumerate() {
            // SAFETY: i + 8l + 8 <= n for both slices.
            unsafe {
                let x = _mm256_loadu_ps(a.as_ptr().add(i + 8 * l));
                let y = _mm256_loadu_ps(b.as_ptr().add(i + 8 * l));
                *acc = _mm256_fmadd_ps(x, y, *acc);
            }
        }
        i += 32;
    }
    while i + 8 <= n {
        // SAFETY: i + 8 <= n for both slices.
        unsafe {
            let x = _mm256_loadu_ps(a.as_ptr().add(i));
            let y = _mm256_loadu_ps(b.as_ptr().add(i));
            acc[0] = _mm256_fmadd_ps(x, y, acc[0]);
        }
        i += 8;
    }
    let s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let mut lanes = [0f32; 8];
    // SAFETY: `lanes` holds 8 f32.
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), s) };
    let mut total = ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5])) + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]));
    for j in i..n {
        total += a[j] * b[j];
    }
    total
}
