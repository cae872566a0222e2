//! Compute kernels behind one boundary, so that SIMD paths and other backends (Vulkan) can slot in under
//! the same calls. `scalar` is the portable reference; every SIMD twin is tested against it on random
//! inputs. The instruction set is chosen once per process from the CPU (`SAIL_EDGE_ISA=scalar|avx2|avx2vnni`
//! on x86-64, `SAIL_EDGE_ISA=scalar|neon|dotprod|i8mm` on aarch64, forces a path, for tests and comparisons).

#[cfg(target_arch = "aarch64")]
pub mod aarch64;
pub mod attention;
pub mod interleaved;
pub mod kquants;
pub mod matmul;
pub mod scalar;
#[cfg(target_arch = "x86_64")]
pub mod x86;

use std::sync::OnceLock;

pub use attention::{attention, attention_rows, kv_type_supported, HeadRows};
pub use kquants::{quantize_q8_k_activations, Q8KBlock};
pub use matmul::{matmul, matmul_shared};
pub use scalar::{add_bias, add_in_place, Q8Block};

/// The instruction-set paths this build has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    Scalar,
    /// x86-64 AVX2 + FMA + F16C.
    Avx2,
    /// The same plus `vpdpbusd` on 256-bit vectors for the integer step: AVX-512 VNNI with VL, or else
    /// AVX-VNNI (its VEX form; see [`x86::Step`]).
    Avx2Vnni,
    /// aarch64 Advanced SIMD (armv8.0 NEON).
    Neon,
    /// aarch64 NEON + dot product (`sdot`).
    Dotprod,
    /// aarch64 NEON + dot product + int8 matrix multiply (`smmla` 2×2 tiles; `sdot` for single rows).
    I8mm,
}

impl Isa {
    /// The best path this CPU supports.
    pub fn detect() -> Isa {
        #[cfg(target_arch = "x86_64")]
        if x86::vnni_available() {
            return Isa::Avx2Vnni;
        }
        #[cfg(target_arch = "x86_64")]
        if x86::available() {
            return Isa::Avx2;
        }
        #[cfg(target_arch = "aarch64")]
        if aarch64::neon_available() {
            return aarch64::detect();
        }
        Isa::Scalar
    }

    /// Whether this CPU can run `self`.
    pub fn supported(self) -> bool {
        match self {
            Isa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => x86::available(),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Vnni => x86::vnni_available(),
            #[cfg(not(target_arch = "x86_64"))]
            Isa::Avx2 | Isa::Avx2Vnni => false,
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => aarch64::neon_available(),
            #[cfg(target_arch = "aarch64")]
            Isa::Dotprod => aarch64::dotprod_available(),
            #[cfg(target_arch = "aarch64")]
            Isa::I8mm => aarch64::i8mm_available(),
            #[cfg(not(target_arch = "aarch64"))]
            Isa::Neon | Isa::Dotprod | Isa::I8mm => false,
        }
    }

    /// The path's name, as `SAIL_EDGE_ISA` takes it and `doctor --json` reports it (`kernel_path`).
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx2Vnni => "avx2vnni",
            Isa::Neon => "neon",
            Isa::Dotprod => "dotprod",
            Isa::I8mm => "i8mm",
        }
    }

    /// Parse `SAIL_EDGE_ISA` values.
    pub fn parse(s: &str) -> Option<Isa> {
        match s.to_ascii_lowercase().as_str() {
            "scalar" => Some(Isa::Scalar),
            "avx2" => Some(Isa::Avx2),
            "avx2vnni" | "vnni" => Some(Isa::Avx2Vnni),
            "neon" => Some(Isa::Neon),
            "dotprod" => Some(Isa::Dotprod),
            "i8mm" => Some(Isa::I8mm),
            _ => None,
        }
    }
}

/// The path in use: detected once, or forced by `SAIL_EDGE_ISA` when the CPU supports it.
pub fn isa() -> Isa {
    static ISA: OnceLock<Isa> = OnceLock::new();
    *ISA.get_or_init(|| match std::env::var("SAIL_EDGE_ISA") {
        Ok(v) => match Isa::parse(&v) {
            Some(isa) if isa.supported() => isa,
            _ => {
                let fallback = Isa::detect();
                tracing::warn!("SAIL_EDGE_ISA={v} is not available here; using {fallback:?}");
                fallback
            }
        },
        Err(_) => Isa::detect(),
    })
}

/// f32 dot product on the selected path.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    match isa() {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 | Isa::Avx2Vnni => x86::dot_f32(a, b),
        #[cfg(target_arch = "aarch64")]
        Isa::Neon | Isa::Dotprod | Isa::I8mm => aarch64::dot_f32(a, b),
        _ => scalar::dot(a, b),
    }
}

/// Q8_0 weight row · Q8_0 activations on the selected path (bit-identical across paths; the x86 decode
/// kernel in `matmul` reorders the float sum, this dot does not).
#[inline]
pub fn dot_q8_0(w: &[u8], x: &[Q8Block]) -> f32 {
    match isa() {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 | Isa::Avx2Vnni => x86::dot_q8_0(w, x),
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => aarch64::dot_q8_0(w, x),
        #[cfg(target_arch = "aarch64")]
        Isa::Dotprod | Isa::I8mm => aarch64::dot_q8_0_dotprod(w, x),
        _ => scalar::dot_q8_0(w, x),
    }
}

/// Q4_0 weight row · Q8_0 activations on the selected path (bit-identical across paths).
#[inline]
pub fn dot_q4_0(w: &[u8], x: &[Q8Block]) -> f32 {
    match isa() {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 | Isa::Avx2Vnni => x86::dot_q4_0(w, x),
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => aarch64::dot_q4_0(w, x),
        #[cfg(target_arch = "aarch64")]
        Isa::Dotprod | Isa::I8mm => aarch64::dot_q4_0_dotprod(w, x),
        _ => scalar::dot_q4_0(w, x),
    }
}

/// Q4_K weight row · Q8_K activations on the selected path (bit-identical across paths).
#[inline]
pub fn dot_q4_k(w: &[u8], x: &[Q8KBlock]) -> f32 {
    match isa() {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 | Isa::Avx2Vnni => x86::dot_q4_k(w, x),
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => aarch64::kquants::dot_q4_k(w, x),
        #[cfg(target_arch = "aarch64")]
        Isa::Dotprod | Isa::I8mm => aarch64::kquants::dot_q4_k_dotprod(w, x),
        _ => kquants::dot_q4_k(w, x),
    }
}

/// Q5_K weight row · Q8_K activations on the selected path (bit-identical across paths).
#[inline]
pub fn dot_q5_k(w: &[u8], x: &[Q8KBlock]) -> f32 {
    match isa() {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 | Isa::Avx2Vnni => x86::dot_q5_k(w, x),
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => aarch64::kquants::dot_q5_k(w, x),
        #[cfg(target_arch = "aarch64")]
        Isa::Dotprod | Isa::I8mm => aarch64::kquants::dot_q5_k_dotprod(w, x),
        _ => kquants::dot_q5_k(w, x),
    }
}

/// Q6_K weight row · Q8_K activations on the selected path (bit-identical across paths).
#[inline]
pub fn dot_q6_k(w: &[u8], x: &[Q8KBlock]) -> f32 {
    match isa() {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 | Isa::Avx2Vnni => x86::dot_q6_k(w, x),
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => aarch64::kquants::dot_q6_k(w, x),
        #[cfg(target_arch = "aarch64")]
        Isa::Dotprod | Isa::I8mm => aarch64::kquants::dot_q6_k_dotprod(w, x),
        _ => kquants::dot_q6_k(w, x),
    }
}

/// f16 weight row (little-endian bytes) · f32 activations on the selected path (agree within float rounding).
#[inline]
pub fn dot_f16(w: &[u8], x: &[f32]) -> f32 {
    match isa() {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 | Isa::Avx2Vnni => x86::dot_f16(w, x),
        #[cfg(target_arch = "aarch64")]
        Isa::Neon | Isa::Dotprod | Isa::I8mm => aarch64::f16::dot_f16(w, x),
        _ => kquants::dot_f16(w, x),
    }
}

/// Whether this path has SIMD kernels for weights repacked 8 rows at a time ([`interleaved`]); where it has
/// not, the repack cache is not used (the scalar twins would be slower than the row kernels).
pub fn x8_native() -> bool {
    match isa() {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 | Isa::Avx2Vnni => true,
        #[cfg(target_arch = "aarch64")]
        Isa::Neon | Isa::Dotprod | Isa::I8mm => true,
        _ => false,
    }
}

/// Whether [`dot_f16`] converts in registers (F16C, NEON `fcvtl`) on this path, i.e. beats converting rows
/// to f32 first.
#[inline]
pub(crate) fn f16_dot_in_registers() -> bool {
    match isa() {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 | Isa::Avx2Vnni => true,
        #[cfg(target_arch = "aarch64")]
        Isa::Neon | Isa::Dotprod | Isa::I8mm => true,
        _ => false,
    }
}

/// Whether the elementwise kernels take their AVX2 twins: on x86-64, every path but `Scalar` (the twins are
/// bit-identical to the scalar kernels, so this only changes speed).
#[cfg(target_arch = "x86_64")]
#[inline]
fn elementwise_avx2() -> bool {
    isa() != Isa::Scalar && x86::available()
}

/// Whether the float kernels (elementwise, attention scores and mixes, f16 row conversions) take their NEON
/// twins: on aarch64, every path but `Scalar` (the twins are bit-identical to the scalar kernels, so this
/// only changes speed).
#[cfg(target_arch = "aarch64")]
#[inline]
pub(crate) fn float_neon() -> bool {
    isa() != Isa::Scalar && aarch64::neon_available()
}

/// Exact (erf) GELU in place on the selected path (bit-identical across paths).
pub fn gelu_erf(x: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if elementwise_avx2() {
        return x86::elementwise::gelu_erf(x);
    }
    #[cfg(target_arch = "aarch64")]
    if float_neon() {
        return aarch64::elementwise::gelu_erf(x);
    }
    scalar::gelu_erf(x)
}

/// `gate ← silu(gate) · up` (SwiGLU) on the selected path (bit-identical across paths).
pub fn silu_mul(gate: &mut [f32], up: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if elementwise_avx2() {
        return x86::elementwise::silu_mul(gate, up);
    }
    #[cfg(target_arch = "aarch64")]
    if float_neon() {
        return aarch64::elementwise::silu_mul(gate, up);
    }
    scalar::silu_mul(gate, up)
}

/// Numerically stable softmax in place on the selected path (bit-identical across paths).
pub fn softmax_in_place(x: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if elementwise_avx2() {
        return x86::elementwise::softmax_in_place(x);
    }
    #[cfg(target_arch = "aarch64")]
    if float_neon() {
        return aarch64::elementwise::softmax_in_place(x);
    }
    scalar::softmax_in_place(x)
}

/// RMSNorm over rows of `weight.len()` on the selected path (bit-identical across paths).
pub fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if elementwise_avx2() {
        return x86::elementwise::rms_norm(x, weight, eps, out);
    }
    #[cfg(target_arch = "aarch64")]
    if float_neon() {
        return aarch64::elementwise::rms_norm(x, weight, eps, out);
    }
    scalar::rms_norm(x, weight, eps, out)
}

/// RMSNorm of every `weight.len()`-long head vector in place on the selected path (bit-identical across
/// paths).
pub fn rms_norm_heads(x: &mut [f32], weight: &[f32], eps: f32) {
    #[cfg(target_arch = "x86_64")]
    if elementwise_avx2() {
        return x86::elementwise::rms_norm_heads(x, weight, eps);
    }
    #[cfg(target_arch = "aarch64")]
    if float_neon() {
        return aarch64::elementwise::rms_norm_heads(x, weight, eps);
    }
    scalar::rms_norm_heads(x, weight, eps)
}

/// LayerNorm with weight and bias on the selected path (bit-identical across paths).
pub fn layer_norm(x: &[f32], weight: &[f32], bias: &[f32], eps: f32, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if elementwise_avx2() {
        return x86::elementwise::layer_norm(x, weight, bias, eps, out);
    }
    #[cfg(target_arch = "aarch64")]
    if float_neon() {
        return aarch64::elementwise::layer_norm(x, weight, bias, eps, out);
    }
    scalar::layer_norm(x, weight, bias, eps, out)
}

/// Half-split rotary embedding on the selected path (bit-identical across paths).
pub fn rope_half_split(x: &mut [f32], head_dim: usize, cos: &[f32], sin: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if elementwise_avx2() {
        return x86::elementwise::rope_half_split(x, head_dim, cos, sin);
    }
    #[cfg(target_arch = "aarch64")]
    if float_neon() {
        return aarch64::elementwise::rope_half_split(x, head_dim, cos, sin);
    }
    scalar::rope_half_split(x, head_dim, cos, sin)
}

/// Test support: whether the twin tests of kernel path `path` (`avx2`, `avx512vnni` on x86-64; `neon`,
/// `dotprod`, `i8mm` on aarch64) can run here (`available`). It says which on stderr, once per (test, path),
/// so every run lists what it compared and what it could not; a path that `SAIL_EDGE_EXPECT_ISA` names (CI
/// sets it from the CPU's flags) but that is not available fails the test instead of being skipped.
#[cfg(test)]
pub(crate) fn path_runs(path: &str, available: bool, test: &str) -> bool {
    use std::collections::HashSet;
    use std::sync::Mutex;
    static SAID: Mutex<Option<HashSet<(String, String)>>> = Mutex::new(None);
    let expected =
        std::env::var("SAIL_EDGE_EXPECT_ISA").map(|e| e.split(',').any(|f| f.trim() == path)).unwrap_or(false);
    assert!(available || !expected, "{test}: SAIL_EDGE_EXPECT_ISA names {path}, but this CPU cannot run it");
    let mut said = SAID.lock().unwrap_or_else(|e| e.into_inner());
    if said.get_or_insert_with(HashSet::new).insert((test.to_string(), path.to_string())) {
        if available {
            eprintln!("{test}: {path} path compared");
        } else {
            eprintln!("{test}: {path} path NOT compared: this CPU lacks it");
        }
    }
    available
}

#[cfg(all(test, target_arch = "x86_64"))]
mod twin_tests {
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    use super::scalar::{self, quantize_q8_0_activations};
    use super::x86;
    use crate::quant;
    use crate::GgmlType;

    fn random_row(rng: &mut SmallRng, n: usize) -> Vec<f32> {
        (0..n).map(|_| rng.gen_range(-3.0f32..3.0) * if rng.gen_bool(0.02) { 40.0 } else { 1.0 }).collect()
    }

    #[test]
    fn avx2_integer_dots_are_bit_identical_to_scalar() {
        if !super::path_runs("avx2", x86::available(), "integer row dots") {
            return;
        }
        let mut rng = SmallRng::seed_from_u64(42);
        for &n in &[32usize, 64, 256, 2048, 6144] {
            for _ in 0..20 {
                let wv = random_row(&mut rng, n);
                let xq = quantize_q8_0_activations(&random_row(&mut rng, n));
                for ty in [GgmlType::Q8_0, GgmlType::Q4_0] {
                    let mut w = vec![0u8; ty.row_size(n).unwrap()];
                    quant::quantize(ty, &wv, &mut w).unwrap();
                    let (s, v) = match ty {
                        GgmlType::Q8_0 => (scalar::dot_q8_0(&w, &xq), x86::dot_q8_0(&w, &xq)),
                        _ => (scalar::dot_q4_0(&w, &xq), x86::dot_q4_0(&w, &xq)),
                    };
                    assert_eq!(s.to_bits(), v.to_bits(), "{ty} n={n}: scalar {s} vs avx2 {v}");
                }
            }
        }
    }

    #[test]
    fn avx2_f32_dot_matches_scalar_within_rounding() {
        if !super::path_runs("avx2", x86::available(), "f32 dot") {
            return;
        }
        let mut rng = SmallRng::seed_from_u64(7);
        for &n in &[1usize, 7, 8, 31, 32, 33, 100, 1536, 4097] {
            let a = random_row(&mut rng, n);
            let b = random_row(&mut rng, n);
            let (s, v) = (scalar::dot(&a, &b), x86::dot_f32(&a, &b));
            // Both are f32 sums of n products in different orders: each differs from the exact sum by at most
            // about n·ε·Σ|aᵢbᵢ| (ε = 2⁻²⁴), so they differ from each other by at most twice that.
            let mag: f32 = a.iter().zip(&b).map(|(x, y)| (x * y).abs()).sum();
            let bound = 2.0 * n as f32 * f32::EPSILON / 2.0 * mag + f32::MIN_POSITIVE;
            assert!((s - v).abs() <= bound, "n={n}: scalar {s} vs avx2 {v} (bound {bound})");
        }
    }
}

/// With `SAIL_EDGE_EXPECT_ISA=avx2`, `avx2,avx512vnni`, `avx2,avxvnni` or all three (CI derives it from
/// `/proc/cpuinfo`), the x86 integer steps this process detects must be exactly those and `Isa::detect`
/// must pick the matching path: a CPU with AVX-512 VNNI or AVX-VNNI then runs those twin tests, which are
/// gated on the same detection.
#[cfg(all(test, target_arch = "x86_64"))]
#[test]
fn x86_detected_features_are_the_expected_ones() {
    let mut detected: Vec<&str> = x86::Step::ALL.iter().filter(|s| s.available()).map(|s| s.name()).collect();
    let isa = Isa::detect();
    eprintln!("x86-64 kernel features: {detected:?}; Isa::detect() = {isa:?}");
    let Ok(expect) = std::env::var("SAIL_EDGE_EXPECT_ISA") else {
        eprintln!("SAIL_EDGE_EXPECT_ISA not set: nothing to assert");
        return;
    };
    let mut want: Vec<&str> = expect.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
    for w in &want {
        assert!(
            x86::Step::ALL.iter().any(|s| s.name() == *w),
            "SAIL_EDGE_EXPECT_ISA: unknown x86 feature {w:?} in {expect:?}"
        );
    }
    want.sort_unstable();
    detected.sort_unstable();
    assert_eq!(detected, want, "SAIL_EDGE_EXPECT_ISA={expect}");
    let want_isa = if want.contains(&"avx512vnni") || want.contains(&"avxvnni") {
        Isa::Avx2Vnni
    } else if want.contains(&"avx2") {
        Isa::Avx2
    } else {
        Isa::Scalar
    };
    assert_eq!(isa, want_isa);
}

#[cfg(test)]
mod isa_names {
    use super::Isa;

    #[test]
    fn names_parse_back() {
        let all = [Isa::Scalar, Isa::Avx2, Isa::Avx2Vnni, Isa::Neon, Isa::Dotprod, Isa::I8mm];
        let names: Vec<&str> = all.iter().map(|i| i.name()).collect();
        assert_eq!(names, ["scalar", "avx2", "avx2vnni", "neon", "dotprod", "i8mm"]);
        for isa in all {
            assert_eq!(Isa::parse(isa.name()), Some(isa));
        }
    }
}
