//! The projector as one program on a Vulkan device (cargo feature `vulkan`): pixel shuffle, LayerNorm,
//! fc1 and its bias, GELU, fc2 and its bias recorded into one command buffer, one submission per tile.
//! Every shader is the CPU kernel's arithmetic in the CPU's order and the activations are quantized on the
//! device as the CPU quantizes them, so with quantized weights the embeddings are the CPU path's bits.

use std::sync::Mutex;

use super::{PixelShuffle, Projector};
use crate::vulkan::linear::{DeviceLinear, InputQuantizer};
use crate::vulkan::shaders;
use crate::vulkan::{u32_of, Buffer, Kernel, MemoryKind, VulkanError};

struct Activations {
    /// Tokens of the tile the buffers were made for.
    tokens: usize,
    /// The ViT features `[grid², c]` (host-visible: written here).
    vit: Buffer,
    merged: Buffer,
    normed: Buffer,
    hidden: Buffer,
    /// The embeddings `[tokens, out_dim]` (host-visible: read here).
    out: Buffer,
    quantizer: InputQuantizer,
}

/// The projector as a device program (see the module comment).
pub(super) struct DeviceProjector {
    norm_w: Buffer,
    norm_b: Buffer,
    fc1_b: Buffer,
    fc2_b: Buffer,
    shuffle: Kernel,
    layer_norm: Kernel,
    add: Kernel,
    gelu: Kernel,
    gelu_constants: Buffer,
    activations: Mutex<Option<Activations>>,
}

impl DeviceProjector {
    /// The program for `p`, or why it cannot run whole on `dev` (a weight not held there).
    pub(super) fn build(p: &Projector<'_>, dev: &DeviceLinear) -> Result<DeviceProjector, String> {
        for w in [&p.fc1, &p.fc2] {
            if !dev.holds(w) {
                return Err(format!("{} is not on the device: the projector runs layer by layer", w.name));
            }
        }
        let built = || -> Result<DeviceProjector, VulkanError> {
            let g = dev.gpu();
            Ok(DeviceProjector {
                norm_w: Buffer::with_floats(g, &p.norm_w, MemoryKind::Device, "mm.input_norm")?,
                norm_b: Buffer::with_floats(g, &p.norm_b, MemoryKind::Device, "mm.input_norm bias")?,
                fc1_b: Buffer::with_floats(g, &p.fc1_b, MemoryKind::Device, "mm.fc1 bias")?,
                fc2_b: Buffer::with_floats(g, &p.fc2_b, MemoryKind::Device, "mm.fc2 bias")?,
                shuffle: g.kernel(&shaders::PIXEL_SHUFFLE)?,
                layer_norm: g.kernel(&shaders::LAYER_NORM)?,
                add: g.kernel(&shaders::ADD)?,
                gelu: g.kernel(&shaders::GELU)?,
                gelu_constants: shaders::gelu_constants(g)?,
                activations: Mutex::new(None),
            })
        };
        built().map_err(|e| format!("the projector's device program: {e}"))
    }

    /// `[grid², vit_width]` ViT features → `[(grid/scale)², out_dim]` embeddings, in one submission.
    pub(super) fn run(
        &self,
        p: &Projector<'_>,
        dev: &DeviceLinear,
        vit: &[f32],
        grid: usize,
        vit_width: usize,
    ) -> Result<Vec<f32>, VulkanError> {
        let merged_width = p.norm_w.len();
        let tokens = vit.len() / merged_width;
        let h = p.out_dim;
        let mut guard =
            self.activations.lock().map_err(|_| VulkanError::Usage("the projector lock was poisoned".into()))?;
        if guard.as_ref().is_none_or(|a| a.tokens != tokens) {
            *guard = None;
            let g = dev.gpu();
            let f = |len: usize, kind, what: &str| Buffer::new(g, (len * 4) as u64, kind, what);
            *guard = Some(Activations {
                tokens,
                vit: f(vit.len(), MemoryKind::Host, "projector input")?,
                merged: f(vit.len(), MemoryKind::Device, "pixel shuffle")?,
                normed: f(vit.len(), MemoryKind::Device, "mm.input_norm out")?,
                hidden: f(tokens * h, MemoryKind::Device, "mm.fc1 out")?,
                out: f(tokens * h, MemoryKind::Host, "mlp1 out")?,
                quantizer: InputQuantizer::new(dev, tokens * merged_width.max(h))?,
            });
        }
        let a = guard.as_ref().expect("allocated above");
        a.vit.write_f32(vit)?;
        let mut batch = dev.gpu().batch()?;
        let v1 = p.version == PixelShuffle::V1;
        let (grid32, c32, s32) = (
            u32_of(grid, "projector shape")?,
            u32_of(vit_width, "projector shape")?,
            u32_of(p.scale, "projector shape")?,
        );
        shaders::pixel_shuffle(&mut batch, &self.shuffle, &a.vit, &a.merged, grid32, c32, s32, v1)?;
        let (t32, m32, h32) = (
            u32_of(tokens, "projector shape")?,
            u32_of(merged_width, "projector shape")?,
            u32_of(h, "projector shape")?,
        );
        shaders::layer_norm(
            &mut batch,
            &self.layer_norm,
            &a.merged,
            &self.norm_w,
            &self.norm_b,
            &a.normed,
            t32,
            m32,
            p.eps,
        )?;
        a.quantizer.linear(dev, &mut batch, &a.normed, tokens, merged_width, &[(&p.fc1, &a.hidden)])?;
        shaders::add_bias(&mut batch, &self.add, &a.hidden, &self.fc1_b, &a.hidden, t32 * h32, h32)?;
        shaders::gelu(&mut batch, &self.gelu, &a.hidden, &self.gelu_constants, t32 * h32)?;
        a.quantizer.linear(dev, &mut batch, &a.hidden, tokens, h, &[(&p.fc2, &a.out)])?;
        shaders::add_bias(&mut batch, &self.add, &a.out, &self.fc2_b, &a.out, t32 * h32, h32)?;
        batch.run("the projector")?;
        a.out.read_f32(tokens * h)
    }
}
