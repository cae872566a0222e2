//! The compute shaders (runtime/shaders/*.comp, compiled by build.rs) and the operations that record them
//! into a [`Batch`], each checking its buffers' sizes first.

use super::{Batch, Buffer, Kernel, VulkanError};

/// One compute shader: its SPIR-V and the interface its kernel is created with.
pub struct Shader {
    pub name: &'static str,
    pub spirv: &'static [u8],
    /// Storage buffers at bindings 0..n, in the order the operation passes them.
    pub bindings: u32,
    pub push_bytes: u32,
}

macro_rules! shader {
    ($name:literal, $bindings:expr, $push:expr) => {
        Shader {
            name: $name,
            spirv: include_bytes!(concat!(env!("OUT_DIR"), "/", $name, ".spv")),
            bindings: $bindings,
            push_bytes: $push,
        }
    };
}

/// RMSNorm over rows (x, weight, out; push: d, eps).
pub const RMS_NORM: Shader = shader!("rms_norm", 3, 8);
/// Q8_0 weight rows · Q8_0 activation rows (weights, activation quants, activation scales, out; push:
/// blocks per row, rows, first row, first input row, the buffer's first row). Every `mat_vec` shader is
/// matrix × vector over a grid of (weight row, input row) workgroups: with several input rows it is matrix ×
/// matrix.
pub const MAT_VEC_Q8_0: Shader = shader!("mat_vec_q8_0", 4, 20);

/// Q4_0 weight rows · Q8_0 activation rows (the same interface as [`MAT_VEC_Q8_0`]).
pub const MAT_VEC_Q4_0: Shader = shader!("mat_vec_q4_0", 4, 20);
/// Q4_K weight rows · Q8_K activation rows (weights, activation quants, scales, sums of 16, out; push:
/// super-blocks per row, rows, first row, first input row, the buffer's first row).
pub const MAT_VEC_Q4_K: Shader = shader!("mat_vec_q4_k", 5, 20);
/// Q6_K weight rows · Q8_K activation rows (weights, activation quants, scales, out; push: super-blocks
/// per row, rows, first row, first input row, the buffer's first row).
pub const MAT_VEC_Q6_K: Shader = shader!("mat_vec_q6_k", 4, 20);
/// `out = a + b`, b repeating every nb elements (a, b, out; push: n, nb).
pub const ADD: Shader = shader!("add", 3, 8);
/// Rotary embedding of tokens' heads in place (x, cos, sin; push: heads, head_dim, rows).
pub const ROPE: Shader = shader!("rope", 3, 12);

/// `gate = silu(gate) · up` in place (gate, up; push: n).
pub const SILU_MUL: Shader = shader!("silu_mul", 2, 4);

/// F16 weight rows · f32 input rows (weights, x, out; push: columns, rows, first row, first input row, the buffer's first
/// row).
pub const MAT_VEC_F16: Shader = shader!("mat_vec_f16", 3, 20);
/// F32 weight rows · f32 input rows (the interface of [`MAT_VEC_F16`]).
pub const MAT_VEC_F32: Shader = shader!("mat_vec_f32", 3, 20);
/// LayerNorm with weight and bias over rows (x, weight, bias, out; push: d, eps).
pub const LAYER_NORM: Shader = shader!("layer_norm", 4, 8);
/// Softmax of each row in place (x; push: n, rows per head, first position or u32::MAX).
pub const SOFTMAX: Shader = shader!("softmax", 1, 12);

/// GELU (erf form) in place, the CPU's algorithm (x, the CPU's constants from [`gelu_constants`]; push: n).
pub const GELU: Shader = shader!("gelu", 2, 4);

/// f32 rows → Q8_0 activation blocks, the CPU's quants and scales (x, quants, scales; push: blocks).
pub const QUANTIZE_Q8_0: Shader = shader!("quantize_q8_0", 3, 4);
/// f32 rows → Q8_K activation super-blocks, the CPU's quants, scales and sums (x, quants, scales, sums of
/// 16; push: super-blocks).
pub const QUANTIZE_Q8_K: Shader = shader!("quantize_q8_k", 4, 4);
/// Attention scores of f32 queries over f32 or f16 keys (q, k, scores; push: nq, nk, heads, kv_heads, d, q
/// offset, q stride, k offset, k stride, k head stride, f16, first position or u32::MAX, scale).
pub const ATTENTION_SCORES: Shader = shader!("attention_scores", 3, 52);
/// The softmax-weighted sum of f32 or f16 values (probabilities, v, out; push: nq, nk, heads, kv_heads, d,
/// v offset, v stride, v head stride, f16, first position or u32::MAX).
pub const ATTENTION_MIX: Shader = shader!("attention_mix", 3, 40);
/// Append keys or values to a KV cache on the device, as f32 or f16 (src, cache; push: n, kv_heads, d,
/// capacity, first, f16).
pub const KV_STORE: Shader = shader!("kv_store", 2, 24);
/// The projector's pixel shuffle (ViT features, out; push: grid, c, scale, v1).
pub const PIXEL_SHUFFLE: Shader = shader!("pixel_shuffle", 2, 16);

/// [`MAT_VEC_Q8_0`] with its block sums from integer dot-product instructions (OpSDot): only on devices
/// that report `shaderIntegerDotProduct` ([`super::DeviceInfo::integer_dot_product`]); the same bits.
pub const MAT_VEC_Q8_0_IDOT: Shader = shader!("mat_vec_q8_0_idot", 4, 20);
/// [`MAT_VEC_Q4_0`] with its block sums from OpSUDot/OpSDot, on the same devices; the same bits.
pub const MAT_VEC_Q4_0_IDOT: Shader = shader!("mat_vec_q4_0_idot", 4, 20);

/// [`MAT_VEC_Q4_K`] with its integer sums from OpSUDot, on the same devices; the same bits.
pub const MAT_VEC_Q4_K_IDOT: Shader = shader!("mat_vec_q4_k_idot", 5, 20);
/// [`MAT_VEC_Q6_K`] with its integer sums from OpSUDot, on the same devices; the same bits.
pub const MAT_VEC_Q6_K_IDOT: Shader = shader!("mat_vec_q6_k_idot", 4, 20);

/// The shaders that need `shaderIntegerDotProduct`.
pub const INTEGER_DOT: [&Shader; 4] = [&MAT_VEC_Q8_0_IDOT, &MAT_VEC_Q4_0_IDOT, &MAT_VEC_Q4_K_IDOT, &MAT_VEC_Q6_K_IDOT];

/// Every shader any Vulkan 1.1 device runs, for tests and for building all kernels at once.
pub const ALL: [&Shader; 19] = [
    &RMS_NORM,
    &LAYER_NORM,
    &SOFTMAX,
    &MAT_VEC_Q8_0,
    &MAT_VEC_Q4_0,
    &MAT_VEC_Q4_K,
    &MAT_VEC_Q6_K,
    &MAT_VEC_F16,
    &MAT_VEC_F32,
    &ADD,
    &ROPE,
    &SILU_MUL,
    &GELU,
    &QUANTIZE_Q8_0,
    &ATTENTION_SCORES,
    &ATTENTION_MIX,
    &PIXEL_SHUFFLE,
    &KV_STORE,
    &QUANTIZE_Q8_K,
];

/// Where build.rs took the SPIR-V from: `glslc (…)` or `committed`.
pub const SPIRV_FROM: &str = env!("SAIL_EDGE_SPIRV_FROM");

fn check_kernel(kernel: &Kernel, shader: &Shader) -> Result<(), VulkanError> {
    if kernel.name() != shader.name {
        return Err(VulkanError::Usage(format!("kernel {} given where {} is needed", kernel.name(), shader.name)));
    }
    Ok(())
}

fn check_size(buffer: &Buffer, bytes: u64, what: &str) -> Result<(), VulkanError> {
    if buffer.bytes() < bytes {
        return Err(VulkanError::Usage(format!("{what}: {} bytes, {bytes} needed", buffer.bytes())));
    }
    Ok(())
}

/// Which rows of a weight a `mat_vec` call computes: `held`, the rows its weight buffer holds (a weight
/// larger than one storage buffer is split by rows over several), of a weight of `rows` rows (the output's
/// row stride).
#[derive(Debug, Clone)]
pub struct Rows {
    pub rows: u32,
    pub held: std::ops::Range<u32>,
}

impl Rows {
    /// All `rows` rows, in one buffer.
    pub fn all(rows: u32) -> Rows {
        Rows { rows, held: 0..rows }
    }

    /// The number of held rows, or an error when they are not rows of the weight.
    fn check(&self, what: &str) -> Result<u64, VulkanError> {
        if self.held.start > self.held.end || self.held.end > self.rows {
            return Err(VulkanError::Usage(format!("{what}: rows {:?} of a {}-row weight", self.held, self.rows)));
        }
        Ok((self.held.end - self.held.start) as u64)
    }
}

/// Record a `mat_vec` kernel over the held weight rows × `n` input rows, in as many dispatches as the
/// device's workgroup-count limits need; `per_row` (blocks or columns per row) leads the push constants.
fn dispatch_grid(
    batch: &mut Batch,
    kernel: &Kernel,
    buffers: &[&Buffer],
    per_row: u32,
    rows: &Rows,
    n: u32,
) -> Result<(), VulkanError> {
    let most = batch.gpu().info().max_workgroup_count;
    let (row_step, col_step) = (most[0].max(1), most[1].max(1));
    let first = rows.held.start;
    for row0 in rows.held.clone().step_by(row_step as usize) {
        for col0 in (0..n).step_by(col_step as usize) {
            let mut push = Vec::with_capacity(20);
            for v in [per_row, rows.rows, row0, col0, first] {
                push.extend_from_slice(&v.to_le_bytes());
            }
            let groups = [(rows.held.end - row0).min(row_step), (n - col0).min(col_step), 1];
            batch.dispatch(kernel, buffers, &push, groups)?;
        }
    }
    Ok(())
}

/// `out[r] = weight · x[r] / sqrt(mean(x[r]²) + eps)` for `rows` rows of `d` f32 (kernels::rms_norm).
#[allow(clippy::too_many_arguments)]
pub fn rms_norm(
    batch: &mut Batch,
    kernel: &Kernel,
    x: &Buffer,
    weight: &Buffer,
    out: &Buffer,
    rows: u32,
    d: u32,
    eps: f32,
) -> Result<(), VulkanError> {
    check_kernel(kernel, &RMS_NORM)?;
    let n = rows as u64 * d as u64 * 4;
    check_size(x, n, "rms_norm input")?;
    check_size(weight, d as u64 * 4, "rms_norm weight")?;
    check_size(out, n, "rms_norm output")?;
    let mut push = Vec::with_capacity(8);
    push.extend_from_slice(&d.to_le_bytes());
    push.extend_from_slice(&eps.to_le_bytes());
    batch.dispatch(kernel, &[x, weight, out], &push, [rows, 1, 1])
}

/// `out[r] = (x[r] − mean) / sqrt(var + eps) · weight + bias` for `rows` rows of `d` f32
/// ([`crate::kernels::scalar::layer_norm`]).
#[allow(clippy::too_many_arguments)]
pub fn layer_norm(
    batch: &mut Batch,
    kernel: &Kernel,
    x: &Buffer,
    weight: &Buffer,
    bias: &Buffer,
    out: &Buffer,
    rows: u32,
    d: u32,
    eps: f32,
) -> Result<(), VulkanError> {
    check_kernel(kernel, &LAYER_NORM)?;
    let n = rows as u64 * d as u64 * 4;
    check_size(x, n, "layer_norm input")?;
    check_size(weight, d as u64 * 4, "layer_norm weight")?;
    check_size(bias, d as u64 * 4, "layer_norm bias")?;
    check_size(out, n, "layer_norm output")?;
    let mut push = Vec::with_capacity(8);
    push.extend_from_slice(&d.to_le_bytes());
    push.extend_from_slice(&eps.to_le_bytes());
    batch.dispatch(kernel, &[x, weight, bias, out], &push, [rows, 1, 1])
}

/// Softmax of each of `rows` rows of `n` f32 in place ([`crate::kernels::scalar::softmax_in_place`]).
pub fn softmax(batch: &mut Batch, kernel: &Kernel, x: &Buffer, rows: u32, n: u32) -> Result<(), VulkanError> {
    softmax_masked(batch, kernel, x, rows, n, rows, None)
}

/// [`softmax`] over `rows` rows of `n`, the row r being query r mod `nq`; with `causal = Some(first)` query
/// i sees only its first min(first + i + 1, n) entries (the rest are left as they are).
fn softmax_masked(
    batch: &mut Batch,
    kernel: &Kernel,
    x: &Buffer,
    rows: u32,
    n: u32,
    nq: u32,
    causal: Option<u32>,
) -> Result<(), VulkanError> {
    check_kernel(kernel, &SOFTMAX)?;
    check_size(x, rows as u64 * n as u64 * 4, "softmax rows")?;
    let mut push = Vec::with_capacity(12);
    for v in [n, nq.max(1), causal.unwrap_or(u32::MAX)] {
        push.extend_from_slice(&v.to_le_bytes());
    }
    batch.dispatch(kernel, &[x], &push, [rows, 1, 1])
}

/// `out[c·rows + r] = Σ_b isum_b · (d_w · d_x)` for the held rows `r` of a Q8_0 (`kernel` from
/// [`MAT_VEC_Q8_0`], 34-byte blocks) or Q4_0 ([`MAT_VEC_Q4_0`], 18-byte blocks) weight of `blocks` blocks
/// per row (back to back in `weights` from the first held row), against `n` activation rows quantized to
/// Q8_0: `xq` their 32 bytes per block, `xd` their scales.
#[allow(clippy::too_many_arguments)]
pub fn mat_vec_q8_0(
    batch: &mut Batch,
    kernel: &Kernel,
    weights: &Buffer,
    xq: &Buffer,
    xd: &Buffer,
    out: &Buffer,
    rows: &Rows,
    blocks: u32,
    n: u32,
) -> Result<(), VulkanError> {
    let (name, block_bytes) = match kernel.name() {
        "mat_vec_q8_0" => ("mat_vec_q8_0", 34),
        "mat_vec_q4_0" => ("mat_vec_q4_0", 18),
        "mat_vec_q8_0_idot" => ("mat_vec_q8_0_idot", 34),
        "mat_vec_q4_0_idot" => ("mat_vec_q4_0_idot", 18),
        other => {
            return Err(VulkanError::Usage(format!(
                "kernel {other} given where mat_vec_q8_0 or mat_vec_q4_0 is needed"
            )))
        }
    };
    check_size(weights, rows.check(name)? * blocks as u64 * block_bytes, &format!("{name} weights"))?;
    let inputs = n as u64 * blocks as u64;
    check_size(xq, inputs * 32, &format!("{name} activation quants"))?;
    check_size(xd, inputs * 4, &format!("{name} activation scales"))?;
    check_size(out, n as u64 * rows.rows as u64 * 4, &format!("{name} output"))?;
    dispatch_grid(batch, kernel, &[weights, xq, xd, out], blocks, rows, n)
}

/// `out[c·rows + r]` = held Q4_K weight row `r` (`blocks` 144-byte super-blocks, rows back to back) · activation
/// row `c` of `n` quantized to Q8_K: `xq` their 256 bytes per super-block, `xd` their scales, `xs` their sums
/// of 16 (as i32).
#[allow(clippy::too_many_arguments)]
pub fn mat_vec_q4_k(
    batch: &mut Batch,
    kernel: &Kernel,
    weights: &Buffer,
    xq: &Buffer,
    xd: &Buffer,
    xs: &Buffer,
    out: &Buffer,
    rows: &Rows,
    blocks: u32,
    n: u32,
) -> Result<(), VulkanError> {
    if kernel.name() != MAT_VEC_Q4_K_IDOT.name {
        check_kernel(kernel, &MAT_VEC_Q4_K)?;
    }
    check_size(weights, rows.check("mat_vec_q4_k")? * blocks as u64 * 144, "mat_vec_q4_k weights")?;
    let inputs = n as u64 * blocks as u64;
    check_size(xq, inputs * 256, "mat_vec_q4_k activation quants")?;
    check_size(xd, inputs * 4, "mat_vec_q4_k activation scales")?;
    check_size(xs, inputs * 64, "mat_vec_q4_k activation sums")?;
    check_size(out, n as u64 * rows.rows as u64 * 4, "mat_vec_q4_k output")?;
    dispatch_grid(batch, kernel, &[weights, xq, xd, xs, out], blocks, rows, n)
}

/// `out[c·rows + r]` = held Q6_K weight row `r` (`blocks` 210-byte super-blocks, rows back to back) · activation
/// row `c` of `n` quantized to Q8_K: `xq` their 256 bytes per super-block, `xd` their scales.
#[allow(clippy::too_many_arguments)]
pub fn mat_vec_q6_k(
    batch: &mut Batch,
    kernel: &Kernel,
    weights: &Buffer,
    xq: &Buffer,
    xd: &Buffer,
    out: &Buffer,
    rows: &Rows,
    blocks: u32,
    n: u32,
) -> Result<(), VulkanError> {
    if kernel.name() != MAT_VEC_Q6_K_IDOT.name {
        check_kernel(kernel, &MAT_VEC_Q6_K)?;
    }
    check_size(weights, rows.check("mat_vec_q6_k")? * blocks as u64 * 210, "mat_vec_q6_k weights")?;
    let inputs = n as u64 * blocks as u64;
    check_size(xq, inputs * 256, "mat_vec_q6_k activation quants")?;
    check_size(xd, inputs * 4, "mat_vec_q6_k activation scales")?;
    check_size(out, n as u64 * rows.rows as u64 * 4, "mat_vec_q6_k output")?;
    dispatch_grid(batch, kernel, &[weights, xq, xd, out], blocks, rows, n)
}

/// Rotate `heads` heads of `head_dim` f32 in `x` in place with one position's `cos`/`sin` tables
/// (`head_dim / 2` each), as [`crate::kernels::scalar::rope_half_split`].
pub fn rope(
    batch: &mut Batch,
    kernel: &Kernel,
    x: &Buffer,
    cos: &Buffer,
    sin: &Buffer,
    heads: u32,
    head_dim: u32,
) -> Result<(), VulkanError> {
    rope_rows(batch, kernel, x, cos, sin, 1, heads, head_dim)
}

/// [`rope`] for `rows` tokens (`x`: `[rows, heads, head_dim]`), token r with row r of the `[rows, head_dim
/// / 2]` tables.
#[allow(clippy::too_many_arguments)]
pub fn rope_rows(
    batch: &mut Batch,
    kernel: &Kernel,
    x: &Buffer,
    cos: &Buffer,
    sin: &Buffer,
    rows: u32,
    heads: u32,
    head_dim: u32,
) -> Result<(), VulkanError> {
    check_kernel(kernel, &ROPE)?;
    if head_dim == 0 || !head_dim.is_multiple_of(2) {
        return Err(VulkanError::Usage(format!("rope: head_dim {head_dim} is not a positive even number")));
    }
    check_size(x, rows as u64 * heads as u64 * head_dim as u64 * 4, "rope input")?;
    check_size(cos, rows as u64 * head_dim as u64 / 2 * 4, "rope cos table")?;
    check_size(sin, rows as u64 * head_dim as u64 / 2 * 4, "rope sin table")?;
    let mut push = Vec::with_capacity(12);
    for v in [heads, head_dim, rows] {
        push.extend_from_slice(&v.to_le_bytes());
    }
    let pairs = rows * heads * (head_dim / 2);
    batch.dispatch(kernel, &[x, cos, sin], &push, [pairs.div_ceil(256).max(1), 1, 1])
}

/// Append `n` tokens' keys or values (`src`: `[n, kv_heads, d]` f32) to `cache` at positions first…, laid
/// out per KV head in rows of `capacity` positions (the CPU's KvCache layout), as f32 or as f16 (rounded to
/// nearest even, the CPU's bits).
#[allow(clippy::too_many_arguments)]
pub fn kv_store(
    batch: &mut Batch,
    kernel: &Kernel,
    src: &Buffer,
    cache: &Buffer,
    n: u32,
    kv_heads: u32,
    d: u32,
    capacity: u32,
    first: u32,
    f16: bool,
) -> Result<(), VulkanError> {
    check_kernel(kernel, &KV_STORE)?;
    if first as u64 + n as u64 > capacity as u64 || (f16 && !d.is_multiple_of(2)) {
        return Err(VulkanError::Usage(format!(
            "kv_store: positions {first}..{} of {capacity}, d {d}",
            first as u64 + n as u64
        )));
    }
    let element = if f16 { 2 } else { 4 };
    check_size(src, n as u64 * kv_heads as u64 * d as u64 * 4, "kv_store input")?;
    check_size(cache, kv_heads as u64 * capacity as u64 * d as u64 * element, "kv_store cache")?;
    let mut push = Vec::with_capacity(24);
    for v in [n, kv_heads, d, capacity, first, f16 as u32] {
        push.extend_from_slice(&v.to_le_bytes());
    }
    let words = n * kv_heads * d / if f16 { 2 } else { 1 };
    batch.dispatch(kernel, &[src, cache], &push, [words.div_ceil(256).max(1), 1, 1])
}

/// `out[c·rows + r]` = F16 (`kernel` from [`MAT_VEC_F16`], little-endian halves) or F32 ([`MAT_VEC_F32`])
/// held weight row `r` (`cols` elements, rows back to back) · f32 input row `c` of `n` in `x`.
#[allow(clippy::too_many_arguments)]
pub fn mat_vec_f16(
    batch: &mut Batch,
    kernel: &Kernel,
    weights: &Buffer,
    x: &Buffer,
    out: &Buffer,
    rows: &Rows,
    cols: u32,
    n: u32,
) -> Result<(), VulkanError> {
    let (name, element_bytes) = match kernel.name() {
        "mat_vec_f16" => ("mat_vec_f16", 2),
        "mat_vec_f32" => ("mat_vec_f32", 4),
        other => {
            return Err(VulkanError::Usage(format!("kernel {other} given where mat_vec_f16 or mat_vec_f32 is needed")))
        }
    };
    check_size(weights, rows.check(name)? * cols as u64 * element_bytes, &format!("{name} weights"))?;
    check_size(x, n as u64 * cols as u64 * 4, &format!("{name} input"))?;
    check_size(out, n as u64 * rows.rows as u64 * 4, &format!("{name} output"))?;
    dispatch_grid(batch, kernel, &[weights, x, out], cols, rows, n)
}

/// `gate = silu(gate) · up` over `n` f32, in place ([`crate::kernels::scalar::silu_mul`]).
pub fn silu_mul(batch: &mut Batch, kernel: &Kernel, gate: &Buffer, up: &Buffer, n: u32) -> Result<(), VulkanError> {
    check_kernel(kernel, &SILU_MUL)?;
    check_size(gate, n as u64 * 4, "silu_mul gate")?;
    check_size(up, n as u64 * 4, "silu_mul up")?;
    batch.dispatch(kernel, &[gate, up], &n.to_le_bytes(), [n.div_ceil(256).max(1), 1, 1])
}

/// The constants [`gelu`] reads, the CPU's own (kernels::scalar): ERF_TAYLOR, ERFC_NR, GELU_CLAMP,
/// GELU_TAYLOR_LO, GELU_TAYLOR_HI, 1/√2 (the exp constants are exact.glsl's, by their bits). Made once per
/// program, read by every dispatch.
pub fn gelu_constants(gpu: &super::Gpu) -> Result<Buffer, VulkanError> {
    use crate::kernels::scalar as k;
    let mut consts: Vec<f32> = Vec::with_capacity(GELU_CONSTANTS);
    consts.extend_from_slice(&k::ERF_TAYLOR);
    consts.extend_from_slice(&k::ERFC_NR);
    consts.extend_from_slice(&[k::GELU_CLAMP, k::GELU_TAYLOR_LO, k::GELU_TAYLOR_HI, std::f32::consts::FRAC_1_SQRT_2]);
    debug_assert_eq!(consts.len(), GELU_CONSTANTS);
    Buffer::with_floats(gpu, &consts, super::MemoryKind::Device, "gelu constants")
}

const GELU_CONSTANTS: usize = 24;

/// `x = gelu(x)` over `n` f32 in place ([`crate::kernels::scalar::gelu_f32`]), with the table of
/// [`gelu_constants`].
pub fn gelu(batch: &mut Batch, kernel: &Kernel, x: &Buffer, constants: &Buffer, n: u32) -> Result<(), VulkanError> {
    check_kernel(kernel, &GELU)?;
    check_size(x, n as u64 * 4, "gelu input")?;
    check_size(constants, GELU_CONSTANTS as u64 * 4, "gelu constants")?;
    batch.dispatch(kernel, &[x, constants], &n.to_le_bytes(), [n.div_ceil(256).max(1), 1, 1])
}

/// `out = a + b` over `n` f32 (`out` may be `a`).
pub fn add(
    batch: &mut Batch,
    kernel: &Kernel,
    a: &Buffer,
    b: &Buffer,
    out: &Buffer,
    n: u32,
) -> Result<(), VulkanError> {
    add_repeating(batch, kernel, a, b, out, n, n)
}

/// `out[i] = a[i] + bias[i mod width]` over `n` f32: a bias added to every row (`out` may be `a`).
pub fn add_bias(
    batch: &mut Batch,
    kernel: &Kernel,
    a: &Buffer,
    bias: &Buffer,
    out: &Buffer,
    n: u32,
    width: u32,
) -> Result<(), VulkanError> {
    if width == 0 || !n.is_multiple_of(width) {
        return Err(VulkanError::Usage(format!("add_bias: {n} values are not rows of {width}")));
    }
    add_repeating(batch, kernel, a, bias, out, n, width)
}

fn add_repeating(
    batch: &mut Batch,
    kernel: &Kernel,
    a: &Buffer,
    b: &Buffer,
    out: &Buffer,
    n: u32,
    nb: u32,
) -> Result<(), VulkanError> {
    check_kernel(kernel, &ADD)?;
    for (buf, len, what) in [(a, n, "add input a"), (b, nb, "add input b"), (out, n, "add output")] {
        check_size(buf, len as u64 * 4, what)?;
    }
    let mut push = n.to_le_bytes().to_vec();
    push.extend_from_slice(&nb.max(1).to_le_bytes());
    batch.dispatch(kernel, &[a, b, out], &push, [n.div_ceil(256).max(1), 1, 1])
}

/// Quantize `blocks` blocks of 32 f32 in `x` to Q8_0 activation blocks (`xq`: 32 signed bytes each, `xd`:
/// the f16-rounded scale as f32), the bits of [`crate::kernels::scalar::quantize_q8_0_activations`].
pub fn quantize_q8_0(
    batch: &mut Batch,
    kernel: &Kernel,
    x: &Buffer,
    xq: &Buffer,
    xd: &Buffer,
    blocks: u32,
) -> Result<(), VulkanError> {
    check_kernel(kernel, &QUANTIZE_Q8_0)?;
    check_size(x, blocks as u64 * 128, "quantize_q8_0 input")?;
    check_size(xq, blocks as u64 * 32, "quantize_q8_0 quants")?;
    check_size(xd, blocks as u64 * 4, "quantize_q8_0 scales")?;
    batch.dispatch(kernel, &[x, xq, xd], &blocks.to_le_bytes(), [blocks.div_ceil(64).max(1), 1, 1])
}

/// Quantize `blocks` super-blocks of 256 f32 in `x` to Q8_K activation blocks (`xq`: 256 signed bytes
/// each, `xd`: the scale, `xs`: the sums of each 16 quants as i32), the bits of
/// [`crate::kernels::kquants::quantize_q8_k_activations`].
pub fn quantize_q8_k(
    batch: &mut Batch,
    kernel: &Kernel,
    x: &Buffer,
    xq: &Buffer,
    xd: &Buffer,
    xs: &Buffer,
    blocks: u32,
) -> Result<(), VulkanError> {
    check_kernel(kernel, &QUANTIZE_Q8_K)?;
    check_size(x, blocks as u64 * 1024, "quantize_q8_k input")?;
    check_size(xq, blocks as u64 * 256, "quantize_q8_k quants")?;
    check_size(xd, blocks as u64 * 4, "quantize_q8_k scales")?;
    check_size(xs, blocks as u64 * 64, "quantize_q8_k sums")?;
    batch.dispatch(kernel, &[x, xq, xd, xs], &blocks.to_le_bytes(), [blocks.div_ceil(64).max(1), 1, 1])
}

/// Rows of heads in a buffer: head g of row i starts at `offset + i · stride + g · head_stride` elements
/// (so q, k and v can be read in place from a fused `[n, 3c]` projection, or from a KV cache laid out per
/// head).
#[derive(Clone, Copy)]
pub struct Strided<'b> {
    pub buffer: &'b Buffer,
    pub offset: u32,
    pub stride: u32,
    pub head_stride: u32,
}

/// The shape of an attention over f32 queries, keys and values.
#[derive(Debug, Clone, Copy)]
pub struct AttentionShape {
    pub nq: u32,
    pub nk: u32,
    pub heads: u32,
    pub kv_heads: u32,
    pub d: u32,
    /// `Some(first)`: query i sits at position first + i and sees positions 0..=first + i.
    pub causal: Option<u32>,
    /// Keys and values are f16 (a KV cache), not f32.
    pub kv_f16: bool,
}

/// The three kernels of [`attention`]: [`ATTENTION_SCORES`], [`SOFTMAX`], [`ATTENTION_MIX`].
pub struct AttentionKernels {
    pub scores: Kernel,
    pub softmax: Kernel,
    pub mix: Kernel,
}

impl AttentionKernels {
    pub fn new(gpu: &super::Gpu) -> Result<AttentionKernels, VulkanError> {
        Ok(AttentionKernels {
            scores: gpu.kernel(&ATTENTION_SCORES)?,
            softmax: gpu.kernel(&SOFTMAX)?,
            mix: gpu.kernel(&ATTENTION_MIX)?,
        })
    }
}

/// Scaled dot-product attention of f32 query rows over f32 or f16 key and value rows, the arithmetic of
/// [`crate::kernels::attention_rows`]' tiled path (its bits for f32 keys and for prompts; within the
/// reordered-sum bound of its SIMD dot for a few f16 rows): for each query row i (`q`: heads × d values
/// per row) and head h, scores against the keys of KV head h / (heads / kv_heads), softmax, mix of the
/// values; `scores` is scratch of heads × nq × nk f32; `out` gets `[nq, heads, d]`.
#[allow(clippy::too_many_arguments)]
pub fn attention(
    batch: &mut Batch,
    kernels: &AttentionKernels,
    shape: &AttentionShape,
    q: Strided<'_>,
    k: Strided<'_>,
    v: Strided<'_>,
    scores: &Buffer,
    out: &Buffer,
) -> Result<(), VulkanError> {
    check_kernel(&kernels.scores, &ATTENTION_SCORES)?;
    check_kernel(&kernels.mix, &ATTENTION_MIX)?;
    let AttentionShape { nq, nk, heads, kv_heads, d, causal, kv_f16 } = *shape;
    if kv_heads == 0 || heads == 0 || !heads.is_multiple_of(kv_heads) || d == 0 || nq == 0 || nk == 0 {
        return Err(VulkanError::Usage(format!(
            "attention: {heads} heads over {kv_heads} KV heads, d {d}, {nq} queries, {nk} keys"
        )));
    }
    // One past the last element read.
    let rows_end = |s: &Strided<'_>, rows: u32, width: u32| {
        s.offset as u64 + (rows as u64 - 1) * s.stride as u64 + (width as u64 - 1) * s.head_stride as u64 + d as u64
    };
    if q.head_stride != d {
        return Err(VulkanError::Usage(format!("attention: query heads {} apart, not d = {d}", q.head_stride)));
    }
    let kv_bytes = if kv_f16 { 2 } else { 4 };
    check_size(q.buffer, rows_end(&q, nq, heads) * 4, "attention queries")?;
    check_size(k.buffer, rows_end(&k, nk, kv_heads) * kv_bytes, "attention keys")?;
    check_size(v.buffer, rows_end(&v, nk, kv_heads) * kv_bytes, "attention values")?;
    check_size(scores, heads as u64 * nq as u64 * nk as u64 * 4, "attention scores")?;
    check_size(out, nq as u64 * heads as u64 * d as u64 * 4, "attention output")?;
    let first = causal.unwrap_or(u32::MAX);
    let scale = 1.0 / (d as f32).sqrt();
    let mut push = Vec::with_capacity(52);
    for x in [nq, nk, heads, kv_heads, d, q.offset, q.stride, k.offset, k.stride, k.head_stride, kv_f16 as u32, first] {
        push.extend_from_slice(&x.to_le_bytes());
    }
    push.extend_from_slice(&scale.to_le_bytes());
    batch.dispatch(&kernels.scores, &[q.buffer, k.buffer, scores], &push, [nk.div_ceil(64), nq, heads])?;
    softmax_masked(batch, &kernels.softmax, scores, heads * nq, nk, nq, causal)?;
    let mut push = Vec::with_capacity(40);
    for x in [nq, nk, heads, kv_heads, d, v.offset, v.stride, v.head_stride, kv_f16 as u32, first] {
        push.extend_from_slice(&x.to_le_bytes());
    }
    batch.dispatch(&kernels.mix, &[scores, v.buffer, out], &push, [d.div_ceil(64), nq, heads])
}

/// The projector's pixel shuffle of a `grid × grid` map of `c`-wide features (`vit`) into `out`
/// ([`crate::model::projector::pixel_shuffle`]).
#[allow(clippy::too_many_arguments)]
pub fn pixel_shuffle(
    batch: &mut Batch,
    kernel: &Kernel,
    vit: &Buffer,
    out: &Buffer,
    grid: u32,
    c: u32,
    scale: u32,
    v1: bool,
) -> Result<(), VulkanError> {
    check_kernel(kernel, &PIXEL_SHUFFLE)?;
    if scale == 0 || !grid.is_multiple_of(scale) {
        return Err(VulkanError::Usage(format!("pixel_shuffle: grid {grid} is not a multiple of {scale}")));
    }
    let n = grid as u64 * grid as u64 * c as u64;
    check_size(vit, n * 4, "pixel_shuffle input")?;
    check_size(out, n * 4, "pixel_shuffle output")?;
    let mut push = Vec::with_capacity(16);
    for x in [grid, c, scale, v1 as u32] {
        push.extend_from_slice(&x.to_le_bytes());
    }
    batch.dispatch(kernel, &[vit, out], &push, [(n as u32).div_ceil(256).max(1), 1, 1])
}

#[cfg(test)]
mod tests {
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::kernels::kquants::Q8KBlock;
    use crate::kernels::scalar::{self, Q8Block};
    use crate::vulkan::test_support::{expected, gpu};
    use crate::vulkan::{Gpu, MemoryKind, Vulkan};
    use crate::GgmlType;

    /// Unit roundoff of f32.
    const U: f64 = 1.0 / (1u64 << 24) as f64;

    #[test]
    fn the_spirv_is_the_committed_spirv() {
        if !SPIRV_FROM.starts_with("glslc") {
            assert!(!expected("glslc"), "SAIL_EDGE_EXPECT_TOOLS names glslc, but build.rs used {SPIRV_FROM}");
            eprintln!("the SPIR-V was copied from the committed files (no glslc): nothing to compare");
            return;
        }
        for shader in ALL.iter().chain(&INTEGER_DOT) {
            let path = format!("{}/shaders/{}.spv", env!("CARGO_MANIFEST_DIR"), shader.name);
            let committed = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            assert!(
                committed == shader.spirv,
                "{path} is not what {SPIRV_FROM} makes of {}.comp: run `glslc --target-env=vulkan1.1 -O -o {path} \
                 runtime/shaders/{}.comp`",
                shader.name,
                shader.name
            );
        }
        eprintln!("{} shaders: {SPIRV_FROM} output = the committed .spv", ALL.len() + INTEGER_DOT.len());
    }

    #[test]
    fn devices_are_described() {
        let vk = match Vulkan::load() {
            Ok(vk) => vk,
            Err(e) => {
                assert!(!expected("vulkan"), "SAIL_EDGE_EXPECT_TOOLS names vulkan, but: {e}");
                eprintln!("devices_are_described: NOT run: {e}");
                return;
            }
        };
        let devices = vk.devices().unwrap();
        assert!(!devices.is_empty() || !expected("vulkan"), "no Vulkan device");
        for d in &devices {
            eprintln!("{d:?}");
            assert!(!d.name.is_empty());
            assert!(d.max_workgroup_invocations >= 128, "Vulkan guarantees 128 invocations: {d:?}");
            assert!(d.max_shared_memory_bytes >= 16384, "Vulkan guarantees 16 KiB of shared memory: {d:?}");
        }
        // The shaders run 256-wide workgroups with 1 KiB of shared memory.
        if let Some(g) = gpu("devices_are_described") {
            assert!(g.info().max_workgroup_size[0] >= 256 && g.info().max_workgroup_invocations >= 256);
            for shader in ALL {
                g.kernel(shader).unwrap_or_else(|e| panic!("{}: {e}", shader.name));
            }
        }
    }

    /// The inputs' values are normal and so are the results (Vulkan may flush subnormals): every step is
    /// then a correctly rounded add or multiply in the CPU's order, or exact.glsl's exact division and root.
    fn assert_bits(want: &[f32], got: &[f32], what: &str) {
        assert_eq!(want.len(), got.len(), "{what}");
        for (i, (a, b)) in want.iter().zip(got).enumerate() {
            assert!(a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()), "{what} at {i}: cpu {a} gpu {b}");
        }
    }

    #[test]
    fn rms_norm_equals_the_cpu_bit_for_bit() {
        let Some(g) = gpu("rms_norm_equals_the_cpu_bit_for_bit") else { return };
        let kernel = g.kernel(&RMS_NORM).unwrap();
        let mut rng = SmallRng::seed_from_u64(41);
        // d = 1 over many rows of widely spread magnitudes: each row's 1/√(x² + eps) exercises the exact
        // division and root on a different significand and exponent.
        for &(rows, d) in &[(20_000usize, 1usize), (3, 7), (3, 256), (3, 1000), (3, 2048), (2, 1029)] {
            let x: Vec<f32> =
                (0..rows * d).map(|_| rng.gen_range(-4.0f32..4.0) * 2f32.powi(rng.gen_range(-30..30))).collect();
            let w: Vec<f32> = (0..d).map(|_| rng.gen_range(-2.0f32..2.0)).collect();
            let eps = 1e-6;
            let mut want = vec![0f32; rows * d];
            crate::kernels::rms_norm(&x, &w, eps, &mut want);
            let xb = Buffer::with_floats(&g, &x, MemoryKind::Host, "x").unwrap();
            let wb = Buffer::with_floats(&g, &w, MemoryKind::Device, "weight").unwrap();
            let ob = Buffer::new(&g, (rows * d * 4) as u64, MemoryKind::Host, "out").unwrap();
            let mut batch = g.batch().unwrap();
            rms_norm(&mut batch, &kernel, &xb, &wb, &ob, rows as u32, d as u32, eps).unwrap();
            batch.run("rms_norm").unwrap();
            assert_bits(&want, &ob.read_f32(rows * d).unwrap(), &format!("rms_norm d={d}"));
        }
    }

    #[test]
    fn layer_norm_equals_the_cpu_bit_for_bit() {
        let Some(g) = gpu("layer_norm_equals_the_cpu_bit_for_bit") else { return };
        let kernel = g.kernel(&LAYER_NORM).unwrap();
        let mut rng = SmallRng::seed_from_u64(50);
        for &(rows, d) in &[(5000usize, 2usize), (3, 7), (3, 256), (3, 1000), (3, 1536), (2, 4099)] {
            // An offset mean, as activations have: the deviations then cancel part of each value.
            let x: Vec<f32> = (0..rows * d)
                .map(|_| (1.5 + rng.gen_range(-4.0f32..4.0)) * 2f32.powi(rng.gen_range(-20..20)))
                .collect();
            let w: Vec<f32> = (0..d).map(|_| rng.gen_range(-2.0f32..2.0)).collect();
            let b: Vec<f32> = (0..d).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
            let eps = 1e-6;
            let mut want = vec![0f32; rows * d];
            crate::kernels::layer_norm(&x, &w, &b, eps, &mut want);
            let xb = Buffer::with_floats(&g, &x, MemoryKind::Host, "x").unwrap();
            let wb = Buffer::with_floats(&g, &w, MemoryKind::Device, "weight").unwrap();
            let bb = Buffer::with_floats(&g, &b, MemoryKind::Device, "bias").unwrap();
            let ob = Buffer::new(&g, (rows * d * 4) as u64, MemoryKind::Host, "out").unwrap();
            let mut batch = g.batch().unwrap();
            layer_norm(&mut batch, &kernel, &xb, &wb, &bb, &ob, rows as u32, d as u32, eps).unwrap();
            batch.run("layer_norm").unwrap();
            assert_bits(&want, &ob.read_f32(rows * d).unwrap(), &format!("layer_norm d={d}"));
        }
    }

    #[test]
    fn softmax_equals_the_cpu_bit_for_bit() {
        let Some(g) = gpu("softmax_equals_the_cpu_bit_for_bit") else { return };
        let kernel = g.kernel(&SOFTMAX).unwrap();
        let mut rng = SmallRng::seed_from_u64(51);
        for &n in &[1usize, 5, 256, 1000, 4096, 4099] {
            let rows = 3;
            // Scores down to −24 below the maximum: e^−24 ≈ 4e-11, normal, as every result here is.
            let x: Vec<f32> = (0..rows * n).map(|_| rng.gen_range(-12.0f32..12.0)).collect();
            let xb = Buffer::with_floats(&g, &x, MemoryKind::Host, "scores").unwrap();
            let mut batch = g.batch().unwrap();
            softmax(&mut batch, &kernel, &xb, rows as u32, n as u32).unwrap();
            batch.run("softmax").unwrap();
            let mut want = x.clone();
            for row in want.chunks_mut(n) {
                crate::kernels::softmax_in_place(row);
            }
            assert_bits(&want, &xb.read_f32(rows * n).unwrap(), &format!("softmax n={n}"));
        }
    }

    #[test]
    fn mat_vec_q8_0_and_q4_0_equal_the_cpu_bit_for_bit() {
        let Some(g) = gpu("mat_vec_q8_0_and_q4_0_equal_the_cpu_bit_for_bit") else { return };
        let mut rng = SmallRng::seed_from_u64(42);
        for (ty, shader) in [(GgmlType::Q8_0, &MAT_VEC_Q8_0), (GgmlType::Q4_0, &MAT_VEC_Q4_0)] {
            let kernel = g.kernel(shader).unwrap();
            mat_vec_case(&g, &kernel, ty, &mut rng);
        }
        // The integer-dot variants, where the device has the instructions (lavapipe does: CI runs them).
        if !g.info().integer_dot_product {
            eprintln!("mat_vec_*_idot NOT run: {} lacks shaderIntegerDotProduct", g.info().name);
            return;
        }
        for (ty, shader) in [(GgmlType::Q8_0, &MAT_VEC_Q8_0_IDOT), (GgmlType::Q4_0, &MAT_VEC_Q4_0_IDOT)] {
            let kernel = g.kernel(shader).unwrap();
            mat_vec_case(&g, &kernel, ty, &mut rng);
        }
        eprintln!("mat_vec_q8_0_idot and mat_vec_q4_0_idot: bit for bit");
    }

    /// `rows` random weight rows of `k` values quantized to `ty` (2% of the values 40× larger, as outliers
    /// are) and `n` random activation rows of `k`: the weights' bytes, the activations, the weights uploaded
    /// and an output buffer of `n × rows` f32.
    fn random_mat_vec(
        g: &Gpu,
        ty: GgmlType,
        k: usize,
        rows: usize,
        n: usize,
        rng: &mut SmallRng,
    ) -> (Vec<u8>, Vec<f32>, Buffer, Buffer) {
        let big = |rng: &mut SmallRng| if rng.gen_bool(0.02) { 40.0 } else { 1.0 };
        let wf: Vec<f32> = (0..rows * k).map(|_| rng.gen_range(-1.0f32..1.0) * big(rng)).collect();
        let mut w = vec![0u8; ty.row_size(k).unwrap() * rows];
        crate::quant::quantize_rows(ty, &wf, k, &mut w).unwrap();
        let xf: Vec<f32> = (0..n * k).map(|_| rng.gen_range(-3.0f32..3.0) * big(rng)).collect();
        let wb = Buffer::with_data(g, &w, MemoryKind::Device, "weights").unwrap();
        let ob = Buffer::new(g, (n * rows * 4) as u64, MemoryKind::Host, "out").unwrap();
        (w, xf, wb, ob)
    }

    /// Input counts each matrix test runs: one row (matrix × vector) and a few (matrix × matrix).
    const INPUT_ROWS: [usize; 2] = [1, 3];

    /// Q8_K activation rows uploaded: its quants, its scales and its sums of 16 (as i32).
    fn q8_k_buffers(g: &Gpu, x: &[crate::kernels::kquants::Q8KBlock]) -> (Buffer, Buffer, Buffer) {
        let xq: Vec<u8> = x.iter().flat_map(|b| b.qs.iter().map(|q| *q as u8)).collect();
        let xd: Vec<f32> = x.iter().map(|b| b.d).collect();
        let xs: Vec<u8> = x.iter().flat_map(|b| b.bsums.iter().flat_map(|s| (*s as i32).to_le_bytes())).collect();
        (
            Buffer::with_data(g, &xq, MemoryKind::Host, "xq").unwrap(),
            Buffer::with_floats(g, &xd, MemoryKind::Host, "xd").unwrap(),
            Buffer::with_data(g, &xs, MemoryKind::Host, "xs").unwrap(),
        )
    }

    fn mat_vec_case(g: &Gpu, kernel: &Kernel, ty: GgmlType, rng: &mut SmallRng) {
        // The last case has more weight rows than one dispatch may have workgroups on most devices (65,535
        // is Vulkan's minimum limit): the rows are split over several dispatches.
        let cases = INPUT_ROWS.iter().flat_map(|&n| [32usize, 96, 1024, 2080].map(|k| (k, 5usize, n)));
        for (k, rows, n) in cases.chain([(32, 65_537, 2)]) {
            let blocks = k / 32;
            let (w, xf, wb, ob) = random_mat_vec(g, ty, k, rows, n, rng);
            let x: Vec<Q8Block> = xf.chunks(k).flat_map(scalar::quantize_q8_0_activations).collect();
            let xq: Vec<u8> = x.iter().flat_map(|b| b.qs.iter().map(|q| *q as u8)).collect();
            let xd: Vec<f32> = x.iter().map(|b| b.d).collect();
            let xqb = Buffer::with_data(g, &xq, MemoryKind::Host, "xq").unwrap();
            let xdb = Buffer::with_floats(g, &xd, MemoryKind::Host, "xd").unwrap();
            let mut batch = g.batch().unwrap();
            mat_vec_q8_0(&mut batch, kernel, &wb, &xqb, &xdb, &ob, &Rows::all(rows as u32), blocks as u32, n as u32)
                .unwrap();
            batch.run(kernel.name()).unwrap();
            let got = ob.read_f32(n * rows).unwrap();
            let q4 = ty == GgmlType::Q4_0;
            let row_bytes = ty.row_size(k).unwrap();
            for (c, r) in (0..n).flat_map(|c| (0..rows).map(move |r| (c, r))) {
                let wr = &w[r * row_bytes..(r + 1) * row_bytes];
                let x = &x[c * blocks..(c + 1) * blocks];
                let want = if q4 { scalar::dot_q4_0(wr, x) } else { scalar::dot_q8_0(wr, x) };
                // The block sums are exact integers, each block's product isum · (d_w · d_x) is rounded alike
                // (`precise`: no fused multiply-add) and the products are added in block order on both: the
                // same bits.
                let got = got[c * rows + r];
                assert_eq!(got.to_bits(), want.to_bits(), "{ty} k={k} input {c} row {r}: cpu {want} gpu {got}");
            }
        }
    }

    /// Q4_K and Q6_K weights against Q8_K activations: each super-block's term (d·isum − dmin·msum for Q4_K,
    /// (d_w·d_x)·isum for Q6_K) is computed with the same roundings on both (`precise`: no fused
    /// multiply-add) and the terms are added in super-block order: the same bits.
    #[test]
    fn mat_vec_k_quants_equal_the_cpu_bit_for_bit() {
        let Some(g) = gpu("mat_vec_k_quants_equal_the_cpu_bit_for_bit") else { return };
        let mut rng = SmallRng::seed_from_u64(43);
        let mut kernels = vec![(GgmlType::Q4K, &MAT_VEC_Q4_K), (GgmlType::Q6K, &MAT_VEC_Q6_K)];
        // The integer-dot variants, where the device has the instructions (lavapipe does: CI runs them).
        if g.info().integer_dot_product {
            kernels.extend([(GgmlType::Q4K, &MAT_VEC_Q4_K_IDOT), (GgmlType::Q6K, &MAT_VEC_Q6_K_IDOT)]);
        } else {
            eprintln!(
                "mat_vec_q4_k_idot and mat_vec_q6_k_idot NOT run: {} lacks shaderIntegerDotProduct",
                g.info().name
            );
        }
        for (ty, shader) in kernels {
            let kernel = g.kernel(shader).unwrap();
            for (n, k) in INPUT_ROWS.iter().flat_map(|&n| [256usize, 768, 2048].map(|k| (n, k))) {
                let (rows, blocks) = (5usize, k / 256);
                let (w, xf, wb, ob) = random_mat_vec(&g, ty, k, rows, n, &mut rng);
                let x: Vec<Q8KBlock> = xf.chunks(k).flat_map(crate::kernels::quantize_q8_k_activations).collect();
                let (xqb, xdb, xsb) = q8_k_buffers(&g, &x);
                let mut batch = g.batch().unwrap();
                let (held, b32, n32) = (Rows::all(rows as u32), blocks as u32, n as u32);
                match ty {
                    GgmlType::Q4K => mat_vec_q4_k(&mut batch, &kernel, &wb, &xqb, &xdb, &xsb, &ob, &held, b32, n32),
                    _ => mat_vec_q6_k(&mut batch, &kernel, &wb, &xqb, &xdb, &ob, &held, b32, n32),
                }
                .unwrap();
                batch.run(shader.name).unwrap();
                let got = ob.read_f32(n * rows).unwrap();
                let row_bytes = ty.row_size(k).unwrap();
                for (c, r) in (0..n).flat_map(|c| (0..rows).map(move |r| (c, r))) {
                    let wr = &w[r * row_bytes..(r + 1) * row_bytes];
                    let x = &x[c * blocks..(c + 1) * blocks];
                    let want = match ty {
                        GgmlType::Q4K => crate::kernels::kquants::dot_q4_k(wr, x),
                        _ => crate::kernels::kquants::dot_q6_k(wr, x),
                    };
                    let got = got[c * rows + r];
                    assert_eq!(got.to_bits(), want.to_bits(), "{ty} k={k} input {c} row {r}: cpu {want} gpu {got}");
                }
            }
        }
    }

    #[test]
    fn rope_is_bit_identical() {
        let Some(g) = gpu("rope_is_bit_identical") else { return };
        let kernel = g.kernel(&ROPE).unwrap();
        let mut rng = SmallRng::seed_from_u64(46);
        // (tokens, heads, head_dim): each token rotated with its own row of the tables.
        for &(rows, heads, head_dim) in &[(1usize, 1usize, 2usize), (1, 16, 128), (5, 8, 64), (3, 3, 6)] {
            let mut x: Vec<f32> = (0..rows * heads * head_dim).map(|_| rng.gen_range(-8.0f32..8.0)).collect();
            let angles: Vec<f32> = (0..rows * head_dim / 2).map(|_| rng.gen_range(-100.0f32..100.0)).collect();
            let (cos, sin): (Vec<f32>, Vec<f32>) = angles.iter().map(|a| (a.cos(), a.sin())).unzip();
            let xb = Buffer::with_floats(&g, &x, MemoryKind::Host, "x").unwrap();
            let cb = Buffer::with_floats(&g, &cos, MemoryKind::Device, "cos").unwrap();
            let sb = Buffer::with_floats(&g, &sin, MemoryKind::Device, "sin").unwrap();
            let mut batch = g.batch().unwrap();
            rope_rows(&mut batch, &kernel, &xb, &cb, &sb, rows as u32, heads as u32, head_dim as u32).unwrap();
            batch.run("rope").unwrap();
            let got = xb.read_f32(rows * heads * head_dim).unwrap();
            let half = head_dim / 2;
            for (r, token) in x.chunks_mut(heads * head_dim).enumerate() {
                scalar::rope_half_split(
                    token,
                    head_dim,
                    &cos[r * half..(r + 1) * half],
                    &sin[r * half..(r + 1) * half],
                );
            }
            // Four products and two sums per pair, each correctly rounded on both (Vulkan's OpFMul/OpFAdd;
            // the shader's `precise` forbids fusing them): the same bits. (Vulkan may flush subnormal results
            // to zero; with these magnitudes none occurs.)
            for (i, (a, b)) in x.iter().zip(&got).enumerate() {
                assert_eq!(a.to_bits(), b.to_bits(), "{rows} × {heads} × {head_dim} at {i}: cpu {a} gpu {b}");
            }
        }
        let mut batch = g.batch().unwrap();
        let tiny = Buffer::new(&g, 64, MemoryKind::Host, "tiny").unwrap();
        let e = rope(&mut batch, &kernel, &tiny, &tiny, &tiny, 1, 3).unwrap_err().to_string();
        assert!(e.contains("not a positive even number"), "{e}");
    }

    #[test]
    fn silu_mul_equals_the_cpu_bit_for_bit() {
        let Some(g) = gpu("silu_mul_equals_the_cpu_bit_for_bit") else { return };
        let kernel = g.kernel(&SILU_MUL).unwrap();
        let mut rng = SmallRng::seed_from_u64(47);
        let n = 50_000;
        // Down to −60: silu(−60) ≈ −5e-25, normal, and so are its products with up.
        let mut gate: Vec<f32> = (0..n).map(|_| rng.gen_range(-60.0f32..30.0)).collect();
        let up: Vec<f32> = (0..n).map(|_| rng.gen_range(-4.0f32..4.0)).collect();
        let gb = Buffer::with_floats(&g, &gate, MemoryKind::Host, "gate").unwrap();
        let ub = Buffer::with_floats(&g, &up, MemoryKind::Host, "up").unwrap();
        let mut batch = g.batch().unwrap();
        silu_mul(&mut batch, &kernel, &gb, &ub, n as u32).unwrap();
        batch.run("silu_mul").unwrap();
        crate::kernels::silu_mul(&mut gate, &up);
        assert_bits(&gate, &gb.read_f32(n).unwrap(), "silu_mul");
    }

    #[test]
    fn mat_vec_f16_and_f32_match_the_cpu() {
        let Some(g) = gpu("mat_vec_f16_and_f32_match_the_cpu") else { return };
        let mut rng = SmallRng::seed_from_u64(48);
        for (ty, shader) in [(GgmlType::F16, &MAT_VEC_F16), (GgmlType::F32, &MAT_VEC_F32)] {
            let kernel = g.kernel(shader).unwrap();
            for (n, cols) in INPUT_ROWS.iter().flat_map(|&n| [1usize, 7, 64, 1000, 2048].map(|c| (n, c))) {
                let rows = 5;
                // Normal halves only (|w| ≥ 2⁻¹⁰ ≫ the smallest normal half 2⁻¹⁴): Vulkan may flush
                // subnormals. The f32 weights are the same values.
                let w: Vec<f32> = (0..rows * cols)
                    .map(|_| {
                        let v = rng.gen_range(1e-3f32..2.0) * if rng.gen_bool(0.5) { -1.0 } else { 1.0 };
                        crate::quant::f16_bits_to_f32(crate::quant::f32_to_f16_bits(v))
                    })
                    .collect();
                let wbytes: Vec<u8> = match ty {
                    GgmlType::F16 => w.iter().flat_map(|v| crate::quant::f32_to_f16_bits(*v).to_le_bytes()).collect(),
                    _ => w.iter().flat_map(|v| v.to_le_bytes()).collect(),
                };
                let x: Vec<f32> = (0..n * cols).map(|_| rng.gen_range(-3.0f32..3.0)).collect();
                let wb = Buffer::with_data(&g, &wbytes, MemoryKind::Device, "weights").unwrap();
                let xb = Buffer::with_floats(&g, &x, MemoryKind::Host, "x").unwrap();
                let ob = Buffer::new(&g, (n * rows * 4) as u64, MemoryKind::Host, "out").unwrap();
                let mut batch = g.batch().unwrap();
                mat_vec_f16(&mut batch, &kernel, &wb, &xb, &ob, &Rows::all(rows as u32), cols as u32, n as u32)
                    .unwrap();
                batch.run(shader.name).unwrap();
                let got = ob.read_f32(n * rows).unwrap();
                let m = crate::tensor::Matrix::from_bytes("w", ty, rows, cols, &wbytes).unwrap();
                let mut want = vec![0f32; n * rows];
                crate::kernels::matmul(&x, n, &m, &mut want).unwrap();
                for (c, r) in (0..n).flat_map(|c| (0..rows).map(move |r| (c, r))) {
                    let (wr, xc) = (&w[r * cols..(r + 1) * cols], &x[c * cols..(c + 1) * cols]);
                    // The widened weights are exact; each product is rounded alike on both (or fused into a
                    // running sum, on either side: u·|p|), and the two orders of summing n products are each
                    // within (n − 1)·u·Σ|p| of the exact sum: |cpu − gpu| ≤ 2n·u·Σ|w·x|.
                    let mag: f64 = wr.iter().zip(xc).map(|(w, v)| (*w as f64 * *v as f64).abs()).sum();
                    let bound = 2.0 * cols as f64 * U * mag;
                    let (want, got) = (want[c * rows + r], got[c * rows + r]);
                    let diff = (want as f64 - got as f64).abs();
                    assert!(
                        diff <= bound,
                        "{ty} cols={cols} input {c} row {r}: cpu {want} gpu {got} (bound {bound:e})"
                    );
                }
            }
        }
    }

    #[test]
    fn gelu_equals_the_cpu_bit_for_bit() {
        let Some(g) = gpu("gelu_equals_the_cpu_bit_for_bit") else { return };
        let kernel = g.kernel(&GELU).unwrap();
        let mut rng = SmallRng::seed_from_u64(52);
        let (r2, h) = (std::f32::consts::SQRT_2, -std::f32::consts::FRAC_1_SQRT_2);
        // Above −12.5, Φ(x) ≥ 4e-36 stays normal (Vulkan may flush subnormals); below −14.1 (and past the
        // clamp at ±20) the CPU's result is exactly 0 or x, which any device gives.
        let mut x: Vec<f32> = (0..50_000).map(|_| rng.gen_range(-12.5f32..14.0)).collect();
        x.extend([r2, r2.next_up(), r2.next_down(), h, h.next_up(), h.next_down(), 0.0, -0.0, 1e-30, -1e-30]);
        x.extend([30.0, -30.0, 1e6, -1e6, f32::MAX]);
        let n = x.len();
        let xb = Buffer::with_floats(&g, &x, MemoryKind::Host, "x").unwrap();
        let mut batch = g.batch().unwrap();
        gelu(&mut batch, &kernel, &xb, &gelu_constants(&g).unwrap(), n as u32).unwrap();
        batch.run("gelu").unwrap();
        let want: Vec<f32> = x.iter().map(|&v| scalar::gelu_f32(v)).collect();
        let erfc_branch = x.iter().filter(|&&v| v * std::f32::consts::FRAC_1_SQRT_2 >= scalar::GELU_TAYLOR_HI).count();
        assert!(erfc_branch > 10_000, "both branches are exercised");
        assert_bits(&want, &xb.read_f32(n).unwrap(), "gelu");
    }

    /// Several dependent operations in one batch (one submission; each dispatch reads what the one before
    /// it wrote, through the batch's barriers): c = a + b, e = c + d, RoPE on e, all exact, so the chain
    /// equals the CPU's bit for bit.
    #[test]
    fn a_batch_chains_dependent_operations() {
        let Some(g) = gpu("a_batch_chains_dependent_operations") else { return };
        let (add_k, rope_k) = (g.kernel(&ADD).unwrap(), g.kernel(&ROPE).unwrap());
        let mut rng = SmallRng::seed_from_u64(49);
        let (heads, head_dim) = (8usize, 64usize);
        let n = heads * head_dim;
        let mut v = || -> Vec<f32> { (0..n).map(|_| rng.gen_range(-4.0f32..4.0)).collect() };
        let (a, b, d) = (v(), v(), v());
        let angles: Vec<f32> = (0..head_dim / 2).map(|i| 0.37 * i as f32).collect();
        let (cos, sin): (Vec<f32>, Vec<f32>) = angles.iter().map(|x| (x.cos(), x.sin())).unzip();
        let buf = |v: &[f32], what: &str| Buffer::with_floats(&g, v, MemoryKind::Device, what).unwrap();
        let (ab, bb, db, cb, sb) = (buf(&a, "a"), buf(&b, "b"), buf(&d, "d"), buf(&cos, "cos"), buf(&sin, "sin"));
        let c = Buffer::new(&g, (n * 4) as u64, MemoryKind::Device, "c").unwrap();
        let e = Buffer::new(&g, (n * 4) as u64, MemoryKind::Host, "e").unwrap();
        let mut batch = g.batch().unwrap();
        add(&mut batch, &add_k, &ab, &bb, &c, n as u32).unwrap();
        add(&mut batch, &add_k, &c, &db, &e, n as u32).unwrap();
        rope(&mut batch, &rope_k, &e, &cb, &sb, heads as u32, head_dim as u32).unwrap();
        batch.run("the chain").unwrap();
        let got = e.read_f32(n).unwrap();
        let mut want: Vec<f32> = (0..n).map(|i| (a[i] + b[i]) + d[i]).collect();
        scalar::rope_half_split(&mut want, head_dim, &cos, &sin);
        for i in 0..n {
            assert_eq!(want[i].to_bits(), got[i].to_bits(), "at {i}: cpu {} gpu {}", want[i], got[i]);
        }
    }

    #[test]
    fn add_is_bit_identical() {
        let Some(g) = gpu("add_is_bit_identical") else { return };
        let kernel = g.kernel(&ADD).unwrap();
        let mut rng = SmallRng::seed_from_u64(44);
        for &n in &[1usize, 255, 256, 257, 10_000] {
            let a: Vec<f32> = (0..n).map(|_| rng.gen_range(-1e3f32..1e3)).collect();
            let b: Vec<f32> = (0..n).map(|_| rng.gen_range(-1e3f32..1e3)).collect();
            let (ab, bb) = (
                Buffer::with_floats(&g, &a, MemoryKind::Host, "a").unwrap(),
                Buffer::with_floats(&g, &b, MemoryKind::Host, "b").unwrap(),
            );
            let ob = Buffer::new(&g, (n * 4) as u64, MemoryKind::Host, "out").unwrap();
            let mut batch = g.batch().unwrap();
            add(&mut batch, &kernel, &ab, &bb, &ob, n as u32).unwrap();
            batch.run("add").unwrap();
            let got = ob.read_f32(n).unwrap();
            // One IEEE addition each (Vulkan requires OpFAdd to be correctly rounded): the same bits.
            for i in 0..n {
                assert_eq!((a[i] + b[i]).to_bits(), got[i].to_bits(), "n={n} at {i}");
            }
        }
    }

    #[test]
    fn add_bias_is_bit_identical() {
        let Some(g) = gpu("add_bias_is_bit_identical") else { return };
        let kernel = g.kernel(&ADD).unwrap();
        let mut rng = SmallRng::seed_from_u64(53);
        let (rows, width) = (7usize, 300usize);
        let x: Vec<f32> = (0..rows * width).map(|_| rng.gen_range(-1e3f32..1e3)).collect();
        let bias: Vec<f32> = (0..width).map(|_| rng.gen_range(-1e3f32..1e3)).collect();
        let xb = Buffer::with_floats(&g, &x, MemoryKind::Host, "x").unwrap();
        let bb = Buffer::with_floats(&g, &bias, MemoryKind::Host, "bias").unwrap();
        let mut batch = g.batch().unwrap();
        // In place, as the models use it.
        add_bias(&mut batch, &kernel, &xb, &bb, &xb, (rows * width) as u32, width as u32).unwrap();
        batch.run("add_bias").unwrap();
        let mut want = x.clone();
        crate::kernels::add_bias(&mut want, &bias);
        assert_bits(&want, &xb.read_f32(rows * width).unwrap(), "add_bias");
        let mut batch = g.batch().unwrap();
        let e = add_bias(&mut batch, &kernel, &xb, &bb, &xb, 301, width as u32).unwrap_err().to_string();
        assert!(e.contains("not rows of 300"), "{e}");
    }

    #[test]
    fn quantize_q8_0_equals_the_cpu_bit_for_bit() {
        let Some(g) = gpu("quantize_q8_0_equals_the_cpu_bit_for_bit") else { return };
        let kernel = g.kernel(&QUANTIZE_Q8_0).unwrap();
        let mut rng = SmallRng::seed_from_u64(54);
        // Blocks of every magnitude: scales from f16-subnormal (amax below 127 · 2⁻¹⁴ ≈ 7.8e-3) to large,
        // an all-zero block, and halfway cases (x · 127/amax = k + ½ exactly: amax 127, x = 2.5).
        let blocks = 4096;
        let mut x: Vec<f32> = (0..blocks * 32)
            .map(|i| {
                let scale = 2f32.powi((i / 32 % 40) as i32 - 30);
                rng.gen_range(-1.0f32..1.0) * scale
            })
            .collect();
        x[32..64].fill(0.0);
        x[64] = 127.0;
        for (k, v) in x[65..96].iter_mut().enumerate() {
            *v = k as f32 + 0.5 - 16.0;
        }
        let want = scalar::quantize_q8_0_activations(&x);
        let xb = Buffer::with_floats(&g, &x, MemoryKind::Host, "x").unwrap();
        let qb = Buffer::new(&g, (blocks * 32) as u64, MemoryKind::Host, "quants").unwrap();
        let db = Buffer::new(&g, (blocks * 4) as u64, MemoryKind::Host, "scales").unwrap();
        let mut batch = g.batch().unwrap();
        quantize_q8_0(&mut batch, &kernel, &xb, &qb, &db, blocks as u32).unwrap();
        batch.run("quantize_q8_0").unwrap();
        let mut quants = vec![0u8; blocks * 32];
        qb.read(0, &mut quants).unwrap();
        let scales = db.read_f32(blocks).unwrap();
        for (b, block) in want.iter().enumerate() {
            assert_eq!(block.d.to_bits(), scales[b].to_bits(), "block {b}: cpu scale {} gpu {}", block.d, scales[b]);
            let got: Vec<i8> = quants[b * 32..(b + 1) * 32].iter().map(|&q| q as i8).collect();
            assert_eq!(&block.qs[..], &got[..], "block {b} quants");
        }
    }

    #[test]
    fn quantize_q8_k_equals_the_cpu_bit_for_bit() {
        let Some(g) = gpu("quantize_q8_k_equals_the_cpu_bit_for_bit") else { return };
        let kernel = g.kernel(&QUANTIZE_Q8_K).unwrap();
        let mut rng = SmallRng::seed_from_u64(57);
        // Super-blocks of every magnitude, an all-zero one, one whose largest element is negative, and one
        // with a tie for the largest magnitude (the first wins, its sign kept).
        let blocks = 300;
        let mut x: Vec<f32> =
            (0..blocks * 256).map(|i| rng.gen_range(-1.0f32..1.0) * 2f32.powi((i / 256 % 40) as i32 - 20)).collect();
        x[256..512].fill(0.0);
        x[600] = -50.0;
        x[768 + 3] = 9.0;
        x[768 + 7] = -9.0;
        let want = crate::kernels::kquants::quantize_q8_k_activations(&x);
        let xb = Buffer::with_floats(&g, &x, MemoryKind::Host, "x").unwrap();
        let qb = Buffer::new(&g, (blocks * 256) as u64, MemoryKind::Host, "quants").unwrap();
        let db = Buffer::new(&g, (blocks * 4) as u64, MemoryKind::Host, "scales").unwrap();
        let sb = Buffer::new(&g, (blocks * 64) as u64, MemoryKind::Host, "sums").unwrap();
        let mut batch = g.batch().unwrap();
        quantize_q8_k(&mut batch, &kernel, &xb, &qb, &db, &sb, blocks as u32).unwrap();
        batch.run("quantize_q8_k").unwrap();
        let mut quants = vec![0u8; blocks * 256];
        qb.read(0, &mut quants).unwrap();
        let scales = db.read_f32(blocks).unwrap();
        let mut sums = vec![0u8; blocks * 64];
        sb.read(0, &mut sums).unwrap();
        for (b, block) in want.iter().enumerate() {
            assert_eq!(block.d.to_bits(), scales[b].to_bits(), "block {b}: cpu scale {} gpu {}", block.d, scales[b]);
            let got: Vec<i8> = quants[b * 256..(b + 1) * 256].iter().map(|&q| q as i8).collect();
            assert_eq!(&block.qs[..], &got[..], "block {b} quants");
            for (j, s) in block.bsums.iter().enumerate() {
                let at = b * 64 + j * 4;
                let got = i32::from_le_bytes([sums[at], sums[at + 1], sums[at + 2], sums[at + 3]]);
                assert_eq!(*s as i32, got, "block {b} sum {j}");
            }
        }
    }

    /// The ViT's attention (queries, keys and values read in place from one fused [n, 3c] projection, no
    /// mask) and a causal GQA prompt after a cached prefix, against the CPU's kernels::attention: scores, the
    /// CPU's softmax and the value mix in the CPU's order, so the same bits.
    #[test]
    fn attention_equals_the_cpu_bit_for_bit() {
        let Some(g) = gpu("attention_equals_the_cpu_bit_for_bit") else { return };
        let kernels = AttentionKernels::new(&g).unwrap();
        let mut rng = SmallRng::seed_from_u64(55);
        for &(n, heads, d) in &[(70usize, 4usize, 16usize), (9, 2, 64)] {
            let c = heads * d;
            let qkv: Vec<f32> = (0..n * 3 * c).map(|_| rng.gen_range(-2.0f32..2.0)).collect();
            let part = |p: usize| -> Vec<f32> {
                (0..n).flat_map(|i| qkv[i * 3 * c + p * c..i * 3 * c + (p + 1) * c].to_vec()).collect()
            };
            let mut want = vec![0f32; n * c];
            crate::kernels::attention(&part(0), &part(1), &part(2), n, n, heads, heads, d, None, &mut want);
            let qb = Buffer::with_floats(&g, &qkv, MemoryKind::Host, "qkv").unwrap();
            let sb = Buffer::new(&g, (heads * n * n * 4) as u64, MemoryKind::Device, "scores").unwrap();
            let ob = Buffer::new(&g, (n * c * 4) as u64, MemoryKind::Host, "out").unwrap();
            let at =
                |offset| Strided { buffer: &qb, offset: offset as u32, stride: (3 * c) as u32, head_stride: d as u32 };
            let shape = AttentionShape {
                nq: n as u32,
                nk: n as u32,
                heads: heads as u32,
                kv_heads: heads as u32,
                d: d as u32,
                causal: None,
                kv_f16: false,
            };
            let mut batch = g.batch().unwrap();
            attention(&mut batch, &kernels, &shape, at(0), at(c), at(2 * c), &sb, &ob).unwrap();
            batch.run("attention").unwrap();
            assert_bits(&want, &ob.read_f32(n * c).unwrap(), &format!("vit attention n={n} d={d}"));
        }
        // Causal, GQA 8/2, 11 new queries after 29 cached positions.
        let (nq, first, heads, kv_heads, d) = (11usize, 29usize, 8usize, 2usize, 32usize);
        let nk = first + nq;
        let q: Vec<f32> = (0..nq * heads * d).map(|_| rng.gen_range(-2.0f32..2.0)).collect();
        let k: Vec<f32> = (0..nk * kv_heads * d).map(|_| rng.gen_range(-2.0f32..2.0)).collect();
        let v: Vec<f32> = (0..nk * kv_heads * d).map(|_| rng.gen_range(-2.0f32..2.0)).collect();
        let mut want = vec![0f32; nq * heads * d];
        crate::kernels::attention(&q, &k, &v, nq, nk, heads, kv_heads, d, Some(first), &mut want);
        let buf = |x: &[f32], what| Buffer::with_floats(&g, x, MemoryKind::Host, what).unwrap();
        let (qb, kb, vb) = (buf(&q, "q"), buf(&k, "k"), buf(&v, "v"));
        let sb = Buffer::new(&g, (heads * nq * nk * 4) as u64, MemoryKind::Device, "scores").unwrap();
        let ob = Buffer::new(&g, (nq * heads * d * 4) as u64, MemoryKind::Host, "out").unwrap();
        let rows =
            |buffer, width: usize| Strided { buffer, offset: 0, stride: (width * d) as u32, head_stride: d as u32 };
        let shape = AttentionShape {
            nq: nq as u32,
            nk: nk as u32,
            heads: heads as u32,
            kv_heads: kv_heads as u32,
            d: d as u32,
            causal: Some(first as u32),
            kv_f16: false,
        };
        let mut batch = g.batch().unwrap();
        attention(&mut batch, &kernels, &shape, rows(&qb, heads), rows(&kb, kv_heads), rows(&vb, kv_heads), &sb, &ob)
            .unwrap();
        batch.run("causal attention").unwrap();
        assert_bits(&want, &ob.read_f32(nq * heads * d).unwrap(), "causal GQA attention");
        // A buffer too small for the rows it is said to hold is refused before anything is recorded.
        let mut batch = g.batch().unwrap();
        let short = Strided { buffer: &qb, offset: 1, stride: (heads * d) as u32, head_stride: d as u32 };
        let e = attention(&mut batch, &kernels, &shape, short, rows(&kb, kv_heads), rows(&vb, kv_heads), &sb, &ob)
            .unwrap_err()
            .to_string();
        assert!(e.contains("attention queries"), "{e}");
    }

    /// Attention over an f16 KV cache laid out as on the CPU (per KV head, `capacity` rows): a prompt (a
    /// block of at least 8 score rows: the CPU's tiled path, so its bits) and single decoding steps (the
    /// CPU's SIMD dot over f16 keys: another order of the same products, so within the bound derived below).
    #[test]
    fn attention_over_an_f16_cache_matches_the_cpu() {
        use crate::kernels::HeadRows;
        let Some(g) = gpu("attention_over_an_f16_cache_matches_the_cpu") else { return };
        let kernels = AttentionKernels::new(&g).unwrap();
        let mut rng = SmallRng::seed_from_u64(56);
        // (heads, kv_heads, d, new queries, cached positions before them)
        for &(heads, kv_heads, d, nq, first) in
            &[(8usize, 2usize, 64usize, 20usize, 13usize), (4, 2, 16, 1, 0), (16, 8, 128, 1, 36), (8, 2, 64, 1, 299)]
        {
            let nk = first + nq;
            let capacity = nk + 3;
            let q: Vec<f32> = (0..nq * heads * d).map(|_| rng.gen_range(-2.0f32..2.0)).collect();
            let half = |rng: &mut SmallRng| crate::quant::f32_to_f16_bits(rng.gen_range(-2.0f32..2.0));
            let kbits: Vec<u16> = (0..kv_heads * capacity * d).map(|_| half(&mut rng)).collect();
            let vbits: Vec<u16> = (0..kv_heads * capacity * d).map(|_| half(&mut rng)).collect();
            let bytes = |b: &[u16]| -> Vec<u8> { b.iter().flat_map(|h| h.to_le_bytes()).collect() };
            let (kb, vb) = (bytes(&kbits), bytes(&vbits));
            // The CPU reads each head's first nk rows.
            let rows = |b: &[u8]| -> Vec<Vec<u8>> {
                (0..kv_heads).map(|h| b[h * capacity * d * 2..(h * capacity + nk) * d * 2].to_vec()).collect()
            };
            let (kr, vr) = (rows(&kb), rows(&vb));
            let keys: Vec<HeadRows<'_>> = kr.iter().map(|data| HeadRows { ty: GgmlType::F16, data }).collect();
            let values: Vec<HeadRows<'_>> = vr.iter().map(|data| HeadRows { ty: GgmlType::F16, data }).collect();
            let mut want = vec![0f32; nq * heads * d];
            crate::kernels::attention_rows(&q, nq, heads, d, &keys, &values, nk, Some(first), &mut want);
            let qb = Buffer::with_floats(&g, &q, MemoryKind::Host, "q").unwrap();
            let kbuf = Buffer::with_data(&g, &kb, MemoryKind::Device, "keys").unwrap();
            let vbuf = Buffer::with_data(&g, &vb, MemoryKind::Device, "values").unwrap();
            let sb = Buffer::new(&g, (heads * nq * nk * 4) as u64, MemoryKind::Device, "scores").unwrap();
            let ob = Buffer::new(&g, (nq * heads * d * 4) as u64, MemoryKind::Host, "out").unwrap();
            let shape = AttentionShape {
                nq: nq as u32,
                nk: nk as u32,
                heads: heads as u32,
                kv_heads: kv_heads as u32,
                d: d as u32,
                causal: Some(first as u32),
                kv_f16: true,
            };
            let cache = |buffer| Strided { buffer, offset: 0, stride: d as u32, head_stride: (capacity * d) as u32 };
            let qs = Strided { buffer: &qb, offset: 0, stride: (heads * d) as u32, head_stride: d as u32 };
            let mut batch = g.batch().unwrap();
            attention(&mut batch, &kernels, &shape, qs, cache(&kbuf), cache(&vbuf), &sb, &ob).unwrap();
            batch.run("attention over f16").unwrap();
            let got = ob.read_f32(nq * heads * d).unwrap();
            if nq * (heads / kv_heads) >= 8 {
                assert_bits(&want, &got, &format!("f16 prompt attention {heads}/{kv_heads} d {d}"));
                continue;
            }
            let f = |b: u16| crate::quant::f16_bits_to_f32(b) as f64;
            let scale = 1.0 / (d as f64).sqrt();
            for h in 0..heads {
                let kvh = h / (heads / kv_heads);
                let qh = &q[h * d..(h + 1) * d];
                let key = |j: usize, e: usize| f(kbits[(kvh * capacity + j) * d + e]);
                let val = |j: usize, e: usize| f(vbits[(kvh * capacity + j) * d + e]);
                // Exact scores, and how far the two sides' may be apart: each order of the d products (fused
                // or not) and the scale's product is within (d + 1)·u·Σ|q·k|·scale of the exact value.
                let s: Vec<f64> =
                    (0..nk).map(|j| (0..d).map(|e| qh[e] as f64 * key(j, e)).sum::<f64>() * scale).collect();
                let sig: Vec<f64> = (0..nk)
                    .map(|j| {
                        2.0 * (d as f64 + 1.0)
                            * U
                            * scale
                            * (0..d).map(|e| (qh[e] as f64 * key(j, e)).abs()).sum::<f64>()
                    })
                    .collect();
                let m = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let w: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
                let total: f64 = w.iter().sum();
                // Each weight e^(s − max): the scores' difference σ_j and the max's (≤ max σ), the
                // subtraction's rounding on each side (2u·|a|), and the same exp algorithm (2 ULP = 4u of the
                // exact value each) on the two different arguments.
                let max_sig = sig.iter().copied().fold(0.0, f64::max);
                let eps: Vec<f64> = (0..nk).map(|j| sig[j] + max_sig + 2.0 * U * (s[j] - m).abs() + 8.0 * U).collect();
                // Normalised: the sum's relative error is the weights' average error plus 2(n − 1)u for the two
                // sums; the reciprocal and the product: 4u.
                let avg: f64 = w.iter().zip(&eps).map(|(w, e)| w * e).sum::<f64>() / total;
                for e in 0..d {
                    let p_err: f64 = (0..nk)
                        .map(|j| w[j] / total * (eps[j] + avg + 2.0 * nk as f64 * U + 4.0 * U) * val(j, e).abs())
                        .sum();
                    // The value mix, in the same order on both sides over weights that differ by p_err: each
                    // within (n + 1)·u·Σ p·|v| of its exact sum.
                    let mix: f64 = (0..nk).map(|j| w[j] / total * val(j, e).abs()).sum::<f64>();
                    let bound = p_err + 2.0 * (nk as f64 + 1.0) * U * mix + f32::MIN_POSITIVE as f64;
                    let (a, b) = (want[h * d + e] as f64, got[h * d + e] as f64);
                    assert!(
                        (a - b).abs() <= bound,
                        "{heads}/{kv_heads} heads, d {d}, {nk} positions, head {h} [{e}]: cpu {a} gpu {b} (bound {bound:e})"
                    );
                }
            }
        }
    }

    #[test]
    fn pixel_shuffle_is_the_cpus() {
        let Some(g) = gpu("pixel_shuffle_is_the_cpus") else { return };
        let kernel = g.kernel(&PIXEL_SHUFFLE).unwrap();
        let (grid, c) = (8usize, 5usize);
        let vit: Vec<f32> = (0..grid * grid * c).map(|i| i as f32).collect();
        let vb = Buffer::with_floats(&g, &vit, MemoryKind::Host, "vit").unwrap();
        let ob = Buffer::new(&g, (vit.len() * 4) as u64, MemoryKind::Host, "out").unwrap();
        for (version, v1) in
            [(crate::model::projector::PixelShuffle::V2, false), (crate::model::projector::PixelShuffle::V1, true)]
        {
            let mut batch = g.batch().unwrap();
            pixel_shuffle(&mut batch, &kernel, &vb, &ob, grid as u32, c as u32, 2, v1).unwrap();
            batch.run("pixel_shuffle").unwrap();
            let want = crate::model::projector::pixel_shuffle(&vit, grid, c, 2, version);
            assert_bits(&want, &ob.read_f32(vit.len()).unwrap(), &format!("{version:?}"));
        }
    }

    #[test]
    fn misuse_is_an_error_not_a_crash() {
        let Some(g) = gpu("misuse_is_an_error_not_a_crash") else { return };
        let kernel = g.kernel(&RMS_NORM).unwrap();
        let other = g.kernel(&MAT_VEC_Q8_0).unwrap();
        let small = Buffer::new(&g, 16, MemoryKind::Host, "small").unwrap();
        let mut batch = g.batch().unwrap();
        let e = rms_norm(&mut batch, &kernel, &small, &small, &small, 2, 8, 1e-6).unwrap_err().to_string();
        assert!(e.contains("rms_norm input") && e.contains("64 needed"), "{e}");
        let e = rms_norm(&mut batch, &other, &small, &small, &small, 1, 4, 1e-6).unwrap_err().to_string();
        assert!(e.contains("mat_vec_q8_0 given where rms_norm"), "{e}");
        let e = batch.dispatch(&kernel, &[&small], &[0; 8], [1, 1, 1]).unwrap_err().to_string();
        assert!(e.contains("1 buffers") && e.contains("takes 3"), "{e}");
        let e = batch.dispatch(&kernel, &[&small, &small, &small], &[0; 8], [0, 1, 1]).unwrap_err().to_string();
        assert!(e.contains("workgroups"), "{e}");
        let e = small.write(12, &[0; 8]).unwrap_err().to_string();
        assert!(e.contains("outside small"), "{e}");
        // Nothing was recorded; an empty batch runs.
        batch.run("nothing").unwrap();
        // More memory than the device has: an error naming the buffer, and the device stays usable.
        let e = Buffer::new(&g, 1 << 50, MemoryKind::Device, "a huge buffer").err().expect("too big").to_string();
        assert!(e.contains("out of device memory") && e.contains("a huge buffer"), "{e}");
        Buffer::new(&g, 16, MemoryKind::Device, "after").unwrap();
    }

    #[test]
    fn a_batch_past_its_timeout_retires_the_device() {
        let Some(g) = gpu("a_batch_past_its_timeout_retires_the_device") else { return };
        let kernel = g.kernel(&MAT_VEC_Q8_0).unwrap();
        // Work that takes lavapipe milliseconds, against a timeout of zero: the wait gives up at once. (A
        // device fast enough to finish before the wait would pass the batch; then the work grows.)
        g.set_timeout(std::time::Duration::ZERO);
        let mut rows = 1024u32;
        let blocks = 64u32;
        let e = loop {
            let w = Buffer::new(&g, rows as u64 * blocks as u64 * 34, MemoryKind::Device, "weights").unwrap();
            let xq = Buffer::new(&g, blocks as u64 * 32, MemoryKind::Host, "xq").unwrap();
            let xd = Buffer::new(&g, blocks as u64 * 4, MemoryKind::Host, "xd").unwrap();
            let o = Buffer::new(&g, rows as u64 * 4, MemoryKind::Host, "out").unwrap();
            let mut batch = g.batch().unwrap();
            for _ in 0..8 {
                mat_vec_q8_0(&mut batch, &kernel, &w, &xq, &xd, &o, &Rows::all(rows), blocks, 1).unwrap();
            }
            match batch.run("the timed-out work") {
                Err(e) => break e.to_string(),
                Ok(()) => {
                    assert!(rows < 65535, "a zero timeout never expired");
                    rows = (rows * 4).min(65535);
                }
            }
        };
        assert!(e.contains("did not finish the timed-out work within 0 s"), "{e}");
        // The device is not used again: every later call says why.
        let later = g.batch().err().expect("the device was retired").to_string();
        assert!(later.contains("failed earlier") && later.contains("did not finish"), "{later}");
        let later = Buffer::new(&g, 16, MemoryKind::Host, "after").err().expect("retired").to_string();
        assert!(later.contains("failed earlier"), "{later}");
    }

    #[test]
    fn a_missing_loader_is_a_clear_error() {
        // Another process's environment: the variable is read once per Vulkan::load, so a child process
        // keeps this test from racing the others.
        if std::env::var_os("SAIL_EDGE_VULKAN_LOADER_TEST").is_some() {
            let e = Vulkan::load().err().expect("no library at that path").to_string();
            assert!(e.contains("no Vulkan loader") && e.contains("/nonexistent/libvulkan.so.1"), "{e}");
            return;
        }
        let exe = std::env::current_exe().unwrap();
        let out = std::process::Command::new(exe)
            .args(["--exact", "vulkan::shaders::tests::a_missing_loader_is_a_clear_error", "--nocapture"])
            .env("SAIL_EDGE_VULKAN_LOADER_TEST", "1")
            .env("SAIL_EDGE_VULKAN_LOADER", "/nonexistent/libvulkan.so.1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && text.contains("1 passed"), "{text}");
    }
}
