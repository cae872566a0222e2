//! The ViT's blocks and final norm as one program on a Vulkan device (cargo feature `vulkan`): every
//! operation of every block (RMSNorm, the quantization of the activations, fused qkv, attention, the
//! output projection, the residual adds, SwiGLU) recorded into one command buffer, one submission per tile,
//! the activations staying on the device from the first block to the last.
//!
//! Each shader is the CPU kernel's arithmetic in the CPU's order (exact division, square root and exp,
//! runtime/shaders/exact.glsl), activations are quantized on the device as the CPU quantizes them (Q8_0
//! or Q8_K blocks), and the quantized matrix shaders give the CPU's bits: with quantized weights the tile's
//! features are the CPU path's bits. F16/F32 weights sum in another order (within the reordered-sum bound).

use std::sync::Mutex;

use super::{Block, VisionEncoder};
use crate::tensor::Matrix;
use crate::vulkan::linear::{DeviceLinear, InputQuantizer};
use crate::vulkan::shaders::{self, AttentionKernels, AttentionShape, Strided};
use crate::vulkan::{u32_of, Buffer, Kernel, MemoryKind, VulkanError};

/// A block's vectors on the device (the matrices are the [`DeviceLinear`]'s).
struct BlockVectors {
    ln1: Buffer,
    ln2: Buffer,
    qkv_bias: Option<Buffer>,
    out_bias: Option<Buffer>,
    gate_bias: Option<Buffer>,
    up_bias: Option<Buffer>,
    down_bias: Option<Buffer>,
}

/// The activations of one tile, allocated at the first tile and reused (their sizes are the model's).
struct Activations {
    /// The residual stream `[n, c]` (host-visible: the tile's input is written and the output read here).
    x: Buffer,
    /// The normed stream `[n, c]` (host-visible: the post-trunk norm's output is read here).
    h: Buffer,
    qkv: Buffer,
    attn: Buffer,
    o: Buffer,
    gate: Buffer,
    up: Buffer,
    scores: Buffer,
    /// Quantizes whichever activation a quantized weight reads next (sized for the widest, `ff`).
    quantizer: InputQuantizer,
}

struct Kernels {
    rms_norm: Kernel,
    add: Kernel,
    silu_mul: Kernel,
    attention: AttentionKernels,
}

/// The tower's blocks as a device program (see the module comment).
pub(super) struct DeviceVit {
    blocks: Vec<BlockVectors>,
    post_norm: Buffer,
    kernels: Kernels,
    activations: Mutex<Option<Activations>>,
}

impl DeviceVit {
    /// The program for `vit`'s blocks, or why it cannot run whole on `dev` (a weight not held there).
    pub(super) fn build(vit: &VisionEncoder<'_>, dev: &DeviceLinear) -> Result<DeviceVit, String> {
        for b in &vit.blocks {
            for w in [&b.qkv, &b.out, &b.gate, &b.up, &b.down] {
                if !dev.holds(w) {
                    return Err(format!("{} is not on the device: the vision tower runs layer by layer", w.name));
                }
            }
        }
        let built = || -> Result<DeviceVit, VulkanError> {
            let g = dev.gpu();
            let opt = |v: &Option<Vec<f32>>, what: &str| {
                v.as_ref().map(|v| Buffer::with_floats(g, v, MemoryKind::Device, what)).transpose()
            };
            let mut blocks = Vec::with_capacity(vit.blocks.len());
            for b in &vit.blocks {
                blocks.push(BlockVectors {
                    ln1: Buffer::with_floats(g, &b.ln1, MemoryKind::Device, "vision ln1")?,
                    ln2: Buffer::with_floats(g, &b.ln2, MemoryKind::Device, "vision ln2")?,
                    qkv_bias: opt(&b.qkv_bias, "vision qkv bias")?,
                    out_bias: opt(&b.out_bias, "vision out bias")?,
                    gate_bias: opt(&b.gate_bias, "vision gate bias")?,
                    up_bias: opt(&b.up_bias, "vision up bias")?,
                    down_bias: opt(&b.down_bias, "vision down bias")?,
                });
            }
            Ok(DeviceVit {
                blocks,
                post_norm: Buffer::with_floats(g, &vit.post_norm, MemoryKind::Device, "vision post norm")?,
                kernels: Kernels {
                    rms_norm: g.kernel(&shaders::RMS_NORM)?,
                    add: g.kernel(&shaders::ADD)?,
                    silu_mul: g.kernel(&shaders::SILU_MUL)?,
                    attention: AttentionKernels::new(g)?,
                },
                activations: Mutex::new(None),
            })
        };
        built().map_err(|e| format!("the vision tower's device program: {e}"))
    }

    /// Blocks `0..depth` (then the post-trunk norm when `final_norm`) over the embedded patches `x: [n, c]`,
    /// in one submission; `x` is replaced by the output.
    pub(super) fn run(
        &self,
        vit: &VisionEncoder<'_>,
        dev: &DeviceLinear,
        x: &mut [f32],
        depth: usize,
        final_norm: bool,
    ) -> Result<(), VulkanError> {
        let cfg = &vit.config;
        let (c, n, heads, ff) = (cfg.width, cfg.tokens(), cfg.heads, cfg.ffn);
        let u = |v: usize| u32_of(v, "vision shape");
        let mut guard = self
            .activations
            .lock()
            .map_err(|_| VulkanError::Usage("the vision activations lock was poisoned".into()))?;
        if guard.is_none() {
            let g = dev.gpu();
            let f = |len: usize, kind, what: &str| Buffer::new(g, (len * 4) as u64, kind, what);
            *guard = Some(Activations {
                x: f(n * c, MemoryKind::Host, "vision residual stream")?,
                h: f(n * c, MemoryKind::Host, "vision normed stream")?,
                qkv: f(n * 3 * c, MemoryKind::Device, "vision qkv")?,
                attn: f(n * c, MemoryKind::Device, "vision attention")?,
                o: f(n * c, MemoryKind::Device, "vision projection")?,
                gate: f(n * ff, MemoryKind::Device, "vision gate")?,
                up: f(n * ff, MemoryKind::Device, "vision up")?,
                scores: f(heads * n * n, MemoryKind::Device, "vision attention scores")?,
                quantizer: InputQuantizer::new(dev, n * ff.max(c))?,
            });
        }
        let a = guard.as_ref().expect("allocated above");
        a.x.write_f32(x)?;

        let k = &self.kernels;
        let (n32, c32, ff32) = (u(n)?, u(c)?, u(ff)?);
        let mut batch = dev.gpu().batch()?;
        let linear = |batch: &mut crate::vulkan::Batch, input: &Buffer, width: usize, ws: &[(&Matrix<'_>, &Buffer)]| {
            a.quantizer.linear(dev, batch, input, n, width, ws)
        };
        let bias = |batch: &mut crate::vulkan::Batch, y: &Buffer, b: &Option<Buffer>, width: usize| match b {
            Some(b) => shaders::add_bias(batch, &k.add, y, b, y, u(n * width)?, u(width)?),
            None => Ok(()),
        };
        let shape = AttentionShape {
            nq: n32,
            nk: n32,
            heads: u(heads)?,
            kv_heads: u(heads)?,
            d: u(c / heads)?,
            causal: None,
            kv_f16: false,
        };
        let at = |offset: usize| Strided {
            buffer: &a.qkv,
            offset: offset as u32,
            stride: 3 * c32,
            head_stride: u32::try_from(c / heads).unwrap_or(0),
        };
        for (b, v) in vit.blocks[..depth].iter().zip(&self.blocks) {
            let b: &Block<'_> = b;
            shaders::rms_norm(&mut batch, &k.rms_norm, &a.x, &v.ln1, &a.h, n32, c32, cfg.eps)?;
            linear(&mut batch, &a.h, c, &[(&b.qkv, &a.qkv)])?;
            bias(&mut batch, &a.qkv, &v.qkv_bias, 3 * c)?;
            shaders::attention(&mut batch, &k.attention, &shape, at(0), at(c), at(2 * c), &a.scores, &a.attn)?;
            linear(&mut batch, &a.attn, c, &[(&b.out, &a.o)])?;
            bias(&mut batch, &a.o, &v.out_bias, c)?;
            shaders::add(&mut batch, &k.add, &a.x, &a.o, &a.x, n32 * c32)?;

            shaders::rms_norm(&mut batch, &k.rms_norm, &a.x, &v.ln2, &a.h, n32, c32, cfg.eps)?;
            linear(&mut batch, &a.h, c, &[(&b.gate, &a.gate), (&b.up, &a.up)])?;
            bias(&mut batch, &a.gate, &v.gate_bias, ff)?;
            bias(&mut batch, &a.up, &v.up_bias, ff)?;
            shaders::silu_mul(&mut batch, &k.silu_mul, &a.gate, &a.up, n32 * ff32)?;
            linear(&mut batch, &a.gate, ff, &[(&b.down, &a.o)])?;
            bias(&mut batch, &a.o, &v.down_bias, c)?;
            shaders::add(&mut batch, &k.add, &a.x, &a.o, &a.x, n32 * c32)?;
        }
        let result = if final_norm {
            shaders::rms_norm(&mut batch, &k.rms_norm, &a.x, &self.post_norm, &a.h, n32, c32, cfg.eps)?;
            &a.h
        } else {
            &a.x
        };
        batch.run("the vision tower")?;
        let out = result.read_f32(x.len())?;
        x.copy_from_slice(&out);
        Ok(())
    }
}
