//! SAIL-ViT (spec §2): patch conv with bias → RMSNorm → + learned position embedding → pre-norm blocks
//! (fused qkv, plain softmax attention, SwiGLU with fc1 = gate, fc3 = up, fc2 = down) → post-trunk RMSNorm.

use crate::backend::Linear;
use crate::gguf::names::{self, tensor};
use crate::gguf::GgufFile;
use crate::kernels;
use crate::model::{Meta, ModelError};
use crate::tensor::{matrix, vector, Matrix};

#[cfg(feature = "vulkan")]
#[path = "vision_device.rs"]
mod device;

/// Shape of the vision tower, read from the mmproj file.
#[derive(Debug, Clone, PartialEq)]
pub struct VisionConfig {
    pub image_size: usize,
    pub patch_size: usize,
    pub channels: usize,
    pub width: usize,
    pub ffn: usize,
    pub layers: usize,
    pub heads: usize,
    pub eps: f32,
    /// -1: the post-trunk-norm output; otherwise an index into the per-block outputs (no embedding entry,
    /// no final norm — spec §2.6).
    pub select_layer: i32,
}

impl VisionConfig {
    pub fn grid(&self) -> usize {
        self.image_size / self.patch_size
    }

    pub fn tokens(&self) -> usize {
        self.grid() * self.grid()
    }

    /// How many blocks run, and whether the final norm applies, for `select_layer`.
    fn depth(&self) -> Result<(usize, bool), ModelError> {
        if self.select_layer == -1 {
            return Ok((self.layers, true));
        }
        let l = self.layers as i32;
        let idx = if self.select_layer < 0 { l + self.select_layer } else { self.select_layer };
        if !(0..l).contains(&idx) {
            return Err(ModelError::Input(format!("select_layer {} outside 0..{l}", self.select_layer)));
        }
        Ok((idx as usize + 1, false))
    }
}

struct Block<'a> {
    ln1: Vec<f32>,
    qkv: Matrix<'a>,
    qkv_bias: Option<Vec<f32>>,
    out: Matrix<'a>,
    out_bias: Option<Vec<f32>>,
    ln2: Vec<f32>,
    gate: Matrix<'a>,
    up: Matrix<'a>,
    down: Matrix<'a>,
    gate_bias: Option<Vec<f32>>,
    up_bias: Option<Vec<f32>>,
    down_bias: Option<Vec<f32>>,
}

/// The vision tower over a mapped mmproj file.
pub struct VisionEncoder<'a> {
    pub config: VisionConfig,
    patch: Matrix<'a>,
    patch_bias: Vec<f32>,
    patch_norm: Vec<f32>,
    position: Vec<f32>,
    blocks: Vec<Block<'a>>,
    post_norm: Vec<f32>,
    /// Where the linear layers run (the CPU unless [`VisionEncoder::set_linear`] says otherwise).
    linear: Linear,
    /// The blocks as one device program, where the device holds every block weight in a form it can feed.
    #[cfg(feature = "vulkan")]
    device: Option<device::DeviceVit>,
}

impl<'a> VisionEncoder<'a> {
    pub fn load(file: &'a GgufFile) -> Result<VisionEncoder<'a>, ModelError> {
        let m = Meta { file };
        let config = VisionConfig {
            image_size: m.u32(names::clip::IMAGE_SIZE)? as usize,
            patch_size: m.u32(names::clip::PATCH_SIZE)? as usize,
            channels: m.u32_or(names::sailvl2::NUM_CHANNELS, 3)? as usize,
            width: m.u32(names::clip::EMBEDDING_LENGTH)? as usize,
            ffn: m.u32(names::clip::FEED_FORWARD_LENGTH)? as usize,
            layers: m.u32(names::clip::BLOCK_COUNT)? as usize,
            heads: m.u32(names::clip::HEAD_COUNT)? as usize,
            eps: m.f32(names::clip::LAYER_NORM_EPS)?,
            select_layer: m.i32_or(names::sailvl2::SELECT_LAYER, -1)?,
        };
        let (c, ff, p, ch) = (config.width, config.ffn, config.patch_size, config.channels);
        if c % config.heads != 0 || !config.image_size.is_multiple_of(p) {
            return Err(ModelError::Unsupported {
                file: file.path().display().to_string(),
                message: format!("vision width {c} / {} heads, image {} / patch {p}", config.heads, config.image_size),
            });
        }
        let has = |n: &str| file.header().tensor(n).is_some();
        let opt_vec = |n: String, len| if has(&n) { vector(file, &n, len).map(Some) } else { Ok(None) };
        let info = file.tensor_info(names::tensor::V_PATCH_EMBD)?;
        let patch = Matrix::from_info(file, info)?.reshaped(ch * p * p)?.expect(ch * p * p, c)?;
        let mut blocks = Vec::with_capacity(config.layers);
        for i in 0..config.layers {
            let n = |s: &str| tensor::v_blk(i, s);
            blocks.push(Block {
                ln1: vector(file, &n(tensor::V_LN1), c)?,
                qkv: matrix(file, &n(tensor::V_ATTN_QKV), c, 3 * c)?,
                qkv_bias: opt_vec(n(tensor::V_ATTN_QKV_BIAS), 3 * c)?,
                out: matrix(file, &n(tensor::V_ATTN_OUT), c, c)?,
                out_bias: opt_vec(n(tensor::V_ATTN_OUT_BIAS), c)?,
                ln2: vector(file, &n(tensor::V_LN2), c)?,
                gate: matrix(file, &n(tensor::V_FFN_GATE), c, ff)?,
                up: matrix(file, &n(tensor::V_FFN_UP), c, ff)?,
                down: matrix(file, &n(tensor::V_FFN_DOWN), ff, c)?,
                gate_bias: opt_vec(n(tensor::V_FFN_GATE_BIAS), ff)?,
                up_bias: opt_vec(n(tensor::V_FFN_UP_BIAS), ff)?,
                down_bias: opt_vec(n(tensor::V_FFN_DOWN_BIAS), c)?,
            });
        }
        Ok(VisionEncoder {
            patch,
            patch_bias: vector(file, names::tensor::V_PATCH_EMBD_BIAS, c)?,
            patch_norm: vector(file, names::tensor::V_PATCH_NORM, c)?,
            position: vector(file, names::tensor::V_POSITION_EMBD, config.tokens() * c)?,
            post_norm: vector(file, names::tensor::V_POST_LN, c)?,
            blocks,
            config,
            linear: Linear::cpu(),
            #[cfg(feature = "vulkan")]
            device: None,
        })
    }

    /// Run the linear layers through `linear` (see [`crate::backend`]). Where its device holds every block
    /// weight, the blocks run there as one program per tile (see `vision_device.rs`); otherwise the returned
    /// note says why they run layer by layer.
    pub fn set_linear(&mut self, linear: Linear) -> Option<String> {
        self.linear = linear;
        #[cfg(feature = "vulkan")]
        let note = {
            let (program, note) = self.linear.program(|dev| device::DeviceVit::build(self, dev));
            self.device = program;
            note
        };
        #[cfg(not(feature = "vulkan"))]
        let note = None;
        note
    }

    /// Whether the blocks run on a device as one program per tile.
    pub fn whole_on_device(&self) -> bool {
        #[cfg(feature = "vulkan")]
        if self.device.is_some() {
            return self.linear.on_device();
        }
        false
    }

    /// Every linear weight (the patch embedding, then each block's), for placing them on a device.
    pub fn weights(&self) -> Vec<&Matrix<'a>> {
        let mut ws = vec![&self.patch];
        for b in &self.blocks {
            ws.extend([&b.qkv, &b.out, &b.gate, &b.up, &b.down]);
        }
        ws
    }

    /// Encode one tile (`[3, image_size, image_size]`, normalized) into `[tokens, width]` features.
    pub fn encode_tile(&self, pixels: &[f32]) -> Result<Vec<f32>, ModelError> {
        self.encode_tile_cancellable(pixels, &|| false)
    }

    /// [`VisionEncoder::encode_tile`], asking `cancelled` before every block ([`ModelError::Cancelled`]).
    pub fn encode_tile_cancellable(
        &self,
        pixels: &[f32],
        cancelled: &dyn Fn() -> bool,
    ) -> Result<Vec<f32>, ModelError> {
        let cfg = &self.config;
        let (c, p, g, n, ch) = (cfg.width, cfg.patch_size, cfg.grid(), cfg.tokens(), cfg.channels);
        let side = cfg.image_size;
        if pixels.len() != ch * side * side {
            return Err(ModelError::Input(format!("tile has {} values, expected {}", pixels.len(), ch * side * side)));
        }
        // Patch embedding as a matmul: each patch flattened in the kernel's (channel, ky, kx) order.
        let k = ch * p * p;
        let mut patches = vec![0f32; n * k];
        for (t, patch) in patches.chunks_mut(k).enumerate() {
            let (py, px) = (t / g, t % g);
            for c_in in 0..ch {
                for ky in 0..p {
                    let src = c_in * side * side + (py * p + ky) * side + px * p;
                    patch[(c_in * p + ky) * p..(c_in * p + ky + 1) * p].copy_from_slice(&pixels[src..src + p]);
                }
            }
        }
        let mut x = vec![0f32; n * c];
        self.linear.matmul(&patches, n, &self.patch, &mut x)?;
        kernels::add_bias(&mut x, &self.patch_bias);
        let mut normed = vec![0f32; n * c];
        kernels::rms_norm(&x, &self.patch_norm, cfg.eps, &mut normed);
        x = normed;
        kernels::add_in_place(&mut x, &self.position);

        let (depth, final_norm) = cfg.depth()?;
        #[cfg(feature = "vulkan")]
        if let Some(program) = &self.device {
            if cancelled() {
                return Err(ModelError::Cancelled);
            }
            // On failure `x` is untouched and the CPU takes over (the device is not used again).
            if self.linear.run_program(|dev| program.run(self, dev, &mut x, depth, final_norm)).is_some() {
                return Ok(x);
            }
        }
        for block in &self.blocks[..depth] {
            if cancelled() {
                return Err(ModelError::Cancelled);
            }
            self.block(block, &mut x)?;
        }
        if final_norm {
            let mut out = vec![0f32; n * c];
            kernels::rms_norm(&x, &self.post_norm, cfg.eps, &mut out);
            return Ok(out);
        }
        Ok(x)
    }

    fn block(&self, b: &Block<'_>, x: &mut [f32]) -> Result<(), ModelError> {
        let cfg = &self.config;
        let (c, n, heads, ff) = (cfg.width, cfg.tokens(), cfg.heads, cfg.ffn);
        let d = c / heads;
        let mut h = vec![0f32; n * c];
        kernels::rms_norm(x, &b.ln1, cfg.eps, &mut h);
        let mut qkv = vec![0f32; n * 3 * c];
        self.linear.matmul(&h, n, &b.qkv, &mut qkv)?;
        if let Some(bias) = &b.qkv_bias {
            kernels::add_bias(&mut qkv, bias);
        }
        // Rows are [q | k | v], each `heads × d`: split into three [n, heads, d] arrays.
        let (mut q, mut k, mut v) = (vec![0f32; n * c], vec![0f32; n * c], vec![0f32; n * c]);
        for i in 0..n {
            let row = &qkv[i * 3 * c..(i + 1) * 3 * c];
            q[i * c..(i + 1) * c].copy_from_slice(&row[..c]);
            k[i * c..(i + 1) * c].copy_from_slice(&row[c..2 * c]);
            v[i * c..(i + 1) * c].copy_from_slice(&row[2 * c..]);
        }
        let mut attn = vec![0f32; n * c];
        kernels::attention(&q, &k, &v, n, n, heads, heads, d, None, &mut attn);
        let mut o = vec![0f32; n * c];
        self.linear.matmul(&attn, n, &b.out, &mut o)?;
        if let Some(bias) = &b.out_bias {
            kernels::add_bias(&mut o, bias);
        }
        kernels::add_in_place(x, &o);

        kernels::rms_norm(x, &b.ln2, cfg.eps, &mut h);
        let (mut gate, mut up) = (vec![0f32; n * ff], vec![0f32; n * ff]);
        self.linear.matmul_shared(&h, n, &[&b.gate, &b.up], &mut [&mut gate, &mut up])?;
        if let Some(bias) = &b.gate_bias {
            kernels::add_bias(&mut gate, bias);
        }
        if let Some(bias) = &b.up_bias {
            kernels::add_bias(&mut up, bias);
        }
        kernels::silu_mul(&mut gate, &up);
        self.linear.matmul(&gate, n, &b.down, &mut o)?;
        if let Some(bias) = &b.down_bias {
            kernels::add_bias(&mut o, bias);
        }
        kernels::add_in_place(x, &o);
        Ok(())
    }
}
