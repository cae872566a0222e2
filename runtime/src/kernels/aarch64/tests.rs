//! Twin tests of the aarch64 kernels against the scalar references (mirroring `twin_tests` in
//! `kernels/mod.rs`). Paths this CPU lacks are skipped with a note on stderr; CI runs these under
//! qemu-user twice (`QEMU_CPU=max` and `QEMU_CPU=cortex-a53`) with `SAIL_EDGE_EXPECT_ISA` set, so
//! [`detected_features_are_the_expected_ones`] proves which paths were really compared.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::super::scalar::{self, quantize_q8_0_activations, Q8Block};
use super::super::Isa;
use crate::quant::{self, f32_to_f16_bits};
use crate::GgmlType;

const LENGTHS: [usize; 6] = [32, 64, 96, 256, 2048, 6144];

fn random_row(rng: &mut SmallRng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.gen_range(-3.0f32..3.0) * if rng.gen_bool(0.02) { 40.0 } else { 1.0 }).collect()
}

fn quantized(ty: GgmlType, v: &[f32]) -> Vec<u8> {
    let mut w = vec![0u8; ty.row_size(v.len()).unwrap()];
    quant::quantize(ty, v, &mut w).unwrap();
    w
}

/// Blocks of arbitrary bytes (every quant value, -128 included) with finite random fp16 scales: inputs the
/// quantizers never produce, to show the integer sums are exact for all of them.
fn raw_row(rng: &mut SmallRng, ty: GgmlType, blocks: usize) -> Vec<u8> {
    let size = if ty == GgmlType::Q8_0 { 34 } else { 18 };
    let mut w = vec![0u8; blocks * size];
    for b in w.chunks_exact_mut(size) {
        b[..2].copy_from_slice(&f32_to_f16_bits(rng.gen_range(-0.1f32..0.1)).to_le_bytes());
        rng.fill(&mut b[2..]);
    }
    w
}

fn raw_activations(rng: &mut SmallRng, blocks: usize) -> Vec<Q8Block> {
    (0..blocks)
        .map(|_| {
            let mut qs = [0i8; 32];
            rng.fill(&mut qs[..]);
            Q8Block { d: rng.gen_range(-0.1f32..0.1), qs }
        })
        .collect()
}

type Dot = fn(&[u8], &[Q8Block]) -> f32;

/// The single-row integer paths this CPU runs: (name, Q8_0 dot, Q4_0 dot).
fn integer_paths() -> Vec<(&'static str, Dot, Dot)> {
    let mut paths: Vec<(&'static str, Dot, Dot)> = vec![("neon", super::dot_q8_0, super::dot_q4_0)];
    if super::dotprod_available() {
        paths.push(("dotprod", super::dot_q8_0_dotprod, super::dot_q4_0_dotprod));
    } else {
        eprintln!("no dotprod on this CPU: sdot paths not compared");
    }
    paths
}

/// (weight rows, activation rows) for one length: quantized random rows, and raw full-range bytes.
fn cases(rng: &mut SmallRng, ty: GgmlType, n: usize) -> Vec<(Vec<u8>, Vec<Q8Block>)> {
    let mut out = Vec::new();
    for _ in 0..8 {
        out.push((quantized(ty, &random_row(rng, n)), quantize_q8_0_activations(&random_row(rng, n))));
    }
    for _ in 0..4 {
        out.push((raw_row(rng, ty, n / 32), raw_activations(rng, n / 32)));
    }
    out
}

#[test]
fn integer_dots_are_bit_identical_to_scalar() {
    let paths = integer_paths();
    let mut rng = SmallRng::seed_from_u64(42);
    let mut compared = 0usize;
    for &n in &LENGTHS {
        for ty in [GgmlType::Q8_0, GgmlType::Q4_0] {
            for (w, x) in cases(&mut rng, ty, n) {
                let s = if ty == GgmlType::Q8_0 { scalar::dot_q8_0(&w, &x) } else { scalar::dot_q4_0(&w, &x) };
                for &(name, q8, q4) in &paths {
                    let v = if ty == GgmlType::Q8_0 { q8(&w, &x) } else { q4(&w, &x) };
                    assert_eq!(s.to_bits(), v.to_bits(), "{ty} n={n}: scalar {s} vs {name} {v}");
                    compared += 1;
                }
            }
        }
    }
    let names: Vec<_> = paths.iter().map(|p| p.0).collect();
    eprintln!("aarch64 integer dots compared bit-exactly with scalar: {names:?} ({compared} dots)");
}

#[test]
fn i8mm_tiles_are_bit_identical_to_scalar_dots() {
    // The portable twin first: it must agree with the scalar dots by construction, on every CPU.
    type Tile = fn(&[u8], &[u8], &[Q8Block], &[Q8Block]) -> [f32; 4];
    let mut tiles: Vec<(&str, Tile, Tile)> = vec![("scalar tile", super::tile_q8_0_scalar, super::tile_q4_0_scalar)];
    if super::i8mm_available() {
        tiles.push(("i8mm", super::tile_q8_0_i8mm, super::tile_q4_0_i8mm));
    } else {
        eprintln!("no i8mm on this CPU: smmla tiles not compared");
    }
    let mut rng = SmallRng::seed_from_u64(1234);
    for &n in &LENGTHS {
        for ty in [GgmlType::Q8_0, GgmlType::Q4_0] {
            let c = cases(&mut rng, ty, n);
            for pair in c.chunks_exact(2) {
                let (w, x) = ([&pair[0].0[..], &pair[1].0[..]], [&pair[0].1[..], &pair[1].1[..]]);
                let dot: Dot = if ty == GgmlType::Q8_0 { scalar::dot_q8_0 } else { scalar::dot_q4_0 };
                let want = [dot(w[0], x[0]), dot(w[0], x[1]), dot(w[1], x[0]), dot(w[1], x[1])];
                for &(name, q8, q4) in &tiles {
                    let tile = if ty == GgmlType::Q8_0 { q8 } else { q4 };
                    let got = tile(w[0], w[1], x[0], x[1]);
                    assert_eq!(
                        want.map(f32::to_bits),
                        got.map(f32::to_bits),
                        "{ty} n={n}: scalar {want:?} vs {name} {got:?}"
                    );
                }
            }
        }
    }
    let names: Vec<_> = tiles.iter().map(|t| t.0).collect();
    eprintln!("aarch64 2×2 tiles compared bit-exactly with scalar dots: {names:?}");
}

#[test]
#[should_panic(expected = "2×2 tile")]
fn tiles_reject_rows_of_different_lengths() {
    let w = vec![0u8; 68];
    let x = vec![Q8Block { d: 1.0, qs: [0; 32] }; 2];
    super::tile_q8_0_scalar(&w, &w[..34], &x, &x);
}

#[test]
fn neon_f32_dot_matches_scalar_within_rounding() {
    let mut rng = SmallRng::seed_from_u64(7);
    for &n in &[1usize, 3, 4, 5, 15, 16, 17, 31, 32, 33, 100, 1536, 4097, 6144] {
        let a = random_row(&mut rng, n);
        let b = random_row(&mut rng, n);
        let (s, v) = (scalar::dot(&a, &b), super::dot_f32(&a, &b));
        // Both are f32 sums of n products in different orders (FMA rounds once less): each differs from the
        // exact sum by at most about n·ε·Σ|aᵢbᵢ| (ε = 2⁻²⁴), so they differ from each other by at most twice
        // that.
        let mag: f32 = a.iter().zip(&b).map(|(x, y)| (x * y).abs()).sum();
        let bound = 2.0 * n as f32 * f32::EPSILON / 2.0 * mag + f32::MIN_POSITIVE;
        assert!((s - v).abs() <= bound, "n={n}: scalar {s} vs neon {v} (bound {bound})");
    }
    eprintln!("aarch64 f32 dot compared with scalar: neon");
}

/// With `SAIL_EDGE_EXPECT_ISA=dotprod,i8mm` (or `neon` for none of them), the optional features this CPU
/// reports must be exactly those, and `Isa::detect` must pick the matching path: CI's proof that
/// `QEMU_CPU=max` ran `sdot`/`smmla` and `QEMU_CPU=cortex-a53` fell back to NEON.
#[test]
fn detected_features_are_the_expected_ones() {
    let mut detected = Vec::new();
    if std::arch::is_aarch64_feature_detected!("dotprod") {
        detected.push("dotprod");
    }
    if std::arch::is_aarch64_feature_detected!("i8mm") {
        detected.push("i8mm");
    }
    let isa = Isa::detect();
    eprintln!("aarch64 optional features: {detected:?}; Isa::detect() = {isa:?}");
    let Ok(expect) = std::env::var("SAIL_EDGE_EXPECT_ISA") else {
        eprintln!("SAIL_EDGE_EXPECT_ISA not set: nothing to assert");
        return;
    };
    let mut want: Vec<&str> = expect.split(',').map(str::trim).filter(|s| !s.is_empty() && *s != "neon").collect();
    for w in &want {
        assert!(["dotprod", "i8mm"].contains(w), "SAIL_EDGE_EXPECT_ISA: unknown feature {w:?} in {expect:?}");
    }
    want.sort_unstable();
    detected.sort_unstable();
    assert_eq!(detected, want, "SAIL_EDGE_EXPECT_ISA={expect}");
    let want_isa = match (detected.contains(&"dotprod"), detected.contains(&"i8mm")) {
        (true, true) => Isa::I8mm,
        (true, false) => Isa::Dotprod,
        _ => Isa::Neon,
    };
    assert_eq!(isa, want_isa);
    assert!(isa.supported());
}
