//! The connector (spec §3): pixel shuffle merges each 2×2 patch neighbourhood into one token, then `mlp1`
//! (LayerNorm with bias → Linear → exact GELU → Linear) maps it to the language model's width.

use crate::backend::Linear;
use crate::gguf::names;
use crate::gguf::GgufFile;
use crate::kernels;
use crate::model::{Meta, ModelError};
use crate::tensor::{matrix, vector, Matrix};

#[cfg(feature = "vulkan")]
#[path = "projector_device.rs"]
mod device;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelShuffle {
    /// SAIL-VL2's `ps_version "v2"`: output tokens row-major over the merged grid.
    V2,
    /// `"v1"`: the same merge without the final transpose (merged grid transposed).
    V1,
}

/// Merge `scale × scale` neighbourhoods of a `grid × grid` feature map `[grid², c]`.
///
/// v2: `out[a·(g/s) + b][(j·s + k)·c + ch] = vit[(s·a + j)·g + (s·b + k)][ch]` (spec §3's index map),
/// v1 swaps the roles of a and b.
pub fn pixel_shuffle(vit: &[f32], grid: usize, c: usize, scale: usize, version: PixelShuffle) -> Vec<f32> {
    let g2 = grid / scale;
    let width = c * scale * scale;
    let mut out = vec![0f32; g2 * g2 * width];
    for a in 0..g2 {
        for b in 0..g2 {
            let token = match version {
                PixelShuffle::V2 => a * g2 + b,
                PixelShuffle::V1 => b * g2 + a,
            };
            for j in 0..scale {
                for k in 0..scale {
                    let src = (scale * a + j) * grid + (scale * b + k);
                    let dst = token * width + (j * scale + k) * c;
                    out[dst..dst + c].copy_from_slice(&vit[src * c..(src + 1) * c]);
                }
            }
        }
    }
    out
}

pub struct Projector<'a> {
    pub version: PixelShuffle,
    pub scale: usize,
    norm_w: Vec<f32>,
    norm_b: Vec<f32>,
    eps: f32,
    fc1: Matrix<'a>,
    fc1_b: Vec<f32>,
    fc2: Matrix<'a>,
    fc2_b: Vec<f32>,
    /// Language-model width.
    pub out_dim: usize,
    /// Where the linear layers run (the CPU unless [`Projector::set_linear`] says otherwise).
    linear: Linear,
    /// The whole projector as one device program, where the device holds fc1 and fc2.
    #[cfg(feature = "vulkan")]
    device: Option<device::DeviceProjector>,
}

impl<'a> Projector<'a> {
    pub fn load(file: &'a GgufFile, vit_width: usize) -> Result<Projector<'a>, ModelError> {
        let m = Meta { file };
        let scale = m.u32_or(names::clip::SCALE_FACTOR, 2)? as usize;
        let version = match m.str_or(names::sailvl2::PS_VERSION, "v2")? {
            "v2" => PixelShuffle::V2,
            "v1" => PixelShuffle::V1,
            other => {
                return Err(ModelError::Unsupported {
                    file: file.path().display().to_string(),
                    message: format!("pixel shuffle version '{other}'"),
                })
            }
        };
        let h = m.u32(names::clip::PROJECTION_DIM)? as usize;
        let merged = vit_width * scale * scale;
        Ok(Projector {
            version,
            scale,
            norm_w: vector(file, names::tensor::MM_NORM, merged)?,
            norm_b: vector(file, names::tensor::MM_NORM_BIAS, merged)?,
            eps: m.f32_or(names::sailvl2::PROJECTOR_EPS, 1e-5)?,
            fc1: matrix(file, names::tensor::MM_FC1, merged, h)?,
            fc1_b: vector(file, names::tensor::MM_FC1_BIAS, h)?,
            fc2: matrix(file, names::tensor::MM_FC2, h, h)?,
            fc2_b: vector(file, names::tensor::MM_FC2_BIAS, h)?,
            out_dim: h,
            linear: Linear::cpu(),
            #[cfg(feature = "vulkan")]
            device: None,
        })
    }

    /// Run the linear layers through `linear` (see [`crate::backend`]). Where its device holds fc1 and fc2
    /// the whole projector runs there as one program per tile (see `projector_device.rs`); otherwise the
    /// returned note says why not.
    pub fn set_linear(&mut self, linear: Linear) -> Option<String> {
        self.linear = linear;
        #[cfg(feature = "vulkan")]
        let note = {
            let (program, note) = self.linear.program(|dev| device::DeviceProjector::build(self, dev));
            self.device = program;
            note
        };
        #[cfg(not(feature = "vulkan"))]
        let note = None;
        note
    }

    /// Whether the projector runs on a device as one program per tile.
    pub fn whole_on_device(&self) -> bool {
        #[cfg(feature = "vulkan")]
        if self.device.is_some() {
            return self.linear.on_device();
        }
        false
    }

    /// The two linear weights, for placing them on a device.
    pub fn weights(&self) -> Vec<&Matrix<'a>> {
        vec![&self.fc1, &self.fc2]
    }

    /// `[grid², vit_width]` ViT features of one tile → `[(grid/scale)², out_dim]` language-model embeddings.
    pub fn project(&self, vit: &[f32], grid: usize, vit_width: usize) -> Result<Vec<f32>, ModelError> {
        #[cfg(feature = "vulkan")]
        if let Some(program) = &self.device {
            // On failure the CPU takes over (the device is not used again).
            if let Some(out) = self.linear.run_program(|dev| program.run(self, dev, vit, grid, vit_width)) {
                return Ok(out);
            }
        }
        let x = pixel_shuffle(vit, grid, vit_width, self.scale, self.version);
        let n = x.len() / self.norm_w.len();
        let mut normed = vec![0f32; x.len()];
        kernels::layer_norm(&x, &self.norm_w, &self.norm_b, self.eps, &mut normed);
        let mut h = vec![0f32; n * self.out_dim];
        self.linear.matmul(&normed, n, &self.fc1, &mut h)?;
        kernels::add_bias(&mut h, &self.fc1_b);
        kernels::gelu_erf(&mut h);
        let mut out = vec![0f32; n * self.out_dim];
        self.linear.matmul(&h, n, &self.fc2, &mut out)?;
        kernels::add_bias(&mut out, &self.fc2_b);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Spec §3: out[a*16 + b][j*2C + k*C + c] = vit[(2a + j)*32 + (2b + k)][c].
    #[test]
    fn v2_index_map_matches_the_spec() {
        let (g, c) = (32, 3);
        let vit: Vec<f32> = (0..g * g * c).map(|i| i as f32).collect();
        let out = pixel_shuffle(&vit, g, c, 2, PixelShuffle::V2);
        for (a, b, j, k, ch) in [(0, 0, 0, 0, 0), (3, 7, 1, 0, 2), (15, 15, 1, 1, 1), (5, 2, 0, 1, 0)] {
            let got = out[(a * 16 + b) * 4 * c + j * 2 * c + k * c + ch];
            let want = vit[((2 * a + j) * g + (2 * b + k)) * c + ch];
            assert_eq!(got, want, "a={a} b={b} j={j} k={k}");
        }
    }
}
