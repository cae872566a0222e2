//! Hugging Face SAIL-VL2 tensor names → GGUF names, and the expected shape of every tensor.
//!
//! The language model uses llama.cpp's names (`token_embd`, `blk.N.attn_q`, ..., stacked
//! `blk.N.ffn_*_exps` for MoE), so llama.cpp reads our LM file unchanged. The vision half uses names in the
//! style of llama.cpp's `clip` files (`v.blk.N.*`, `mm.N.*`).

use crate::hf::config::{LlmArch, SailVlConfig};
use runtime::gguf::names::{self, tensor};

/// One GGUF tensor to write: its name, its HF shape (row-major, outermost first) and where its rows come from.
#[derive(Debug, Clone, PartialEq)]
pub struct MappedTensor {
    pub gguf_name: String,
    /// Shape in PyTorch order; the GGUF dims are this reversed (ggml puts the contiguous dim first).
    pub hf_shape: Vec<usize>,
    /// Source tensors whose rows are concatenated (one, or one per expert).
    pub sources: Vec<String>,
}

impl MappedTensor {
    fn one(gguf_name: impl Into<String>, hf_name: impl Into<String>, hf_shape: Vec<usize>) -> MappedTensor {
        MappedTensor { gguf_name: gguf_name.into(), hf_shape, sources: vec![hf_name.into()] }
    }

    /// ggml dims: the PyTorch shape reversed, dropping leading 1s of 3-D+ shapes (`pos_embed` [1, N, C]).
    pub fn gguf_dims(&self) -> Vec<u64> {
        let mut shape: &[usize] = &self.hf_shape;
        while shape.len() > 2 && shape[0] == 1 {
            shape = &shape[1..];
        }
        shape.iter().rev().map(|&d| d as u64).collect()
    }
}

pub const LM_PREFIX: &str = "language_model.";
pub const LM_HEAD: &str = "language_model.lm_head.weight";
pub const EMBED_TOKENS: &str = "language_model.model.embed_tokens.weight";

/// Every language-model tensor the checkpoint must hold, in file order, excluding `lm_head` (decided by the
/// tie check). Experts of a MoE layer become one stacked tensor.
pub fn lm_tensors(cfg: &SailVlConfig) -> Vec<MappedTensor> {
    let l = &cfg.llm;
    let (h, hd) = (l.hidden_size as usize, l.head_dim as usize);
    let (nq, nkv) = (l.num_attention_heads as usize, l.num_key_value_heads as usize);
    let mut out = vec![MappedTensor::one(names::tensor::TOKEN_EMBD, EMBED_TOKENS, vec![l.vocab_size as usize, h])];
    for i in 0..l.num_hidden_layers as usize {
        let hf = |s: &str| format!("language_model.model.layers.{i}.{s}");
        let gg = |s: &str| tensor::blk(i, s);
        // Within a layer, the order of the HF names sorted, as llama.cpp's converter emits them.
        out.push(MappedTensor::one(gg(tensor::ATTN_NORM), hf("input_layernorm.weight"), vec![h]));
        match (&l.arch, &l.moe) {
            (LlmArch::Qwen3Moe, Some(moe)) => {
                let (e, f) = (moe.num_experts as usize, moe.moe_intermediate_size as usize);
                let experts =
                    |p: &str| (0..e).map(|x| hf(&format!("mlp.experts.{x}.{p}_proj.weight"))).collect::<Vec<_>>();
                out.push(MappedTensor {
                    gguf_name: gg(tensor::FFN_DOWN_EXPS),
                    hf_shape: vec![e, h, f],
                    sources: experts("down"),
                });
                out.push(MappedTensor {
                    gguf_name: gg(tensor::FFN_GATE_EXPS),
                    hf_shape: vec![e, f, h],
                    sources: experts("gate"),
                });
                out.push(MappedTensor {
                    gguf_name: gg(tensor::FFN_UP_EXPS),
                    hf_shape: vec![e, f, h],
                    sources: experts("up"),
                });
                out.push(MappedTensor::one(gg(tensor::FFN_GATE_INP), hf("mlp.gate.weight"), vec![e, h]));
            }
            _ => {
                let f = l.intermediate_size as usize;
                out.push(MappedTensor::one(gg(tensor::FFN_DOWN), hf("mlp.down_proj.weight"), vec![h, f]));
                out.push(MappedTensor::one(gg(tensor::FFN_GATE), hf("mlp.gate_proj.weight"), vec![f, h]));
                out.push(MappedTensor::one(gg(tensor::FFN_UP), hf("mlp.up_proj.weight"), vec![f, h]));
            }
        }
        out.push(MappedTensor::one(gg(tensor::FFN_NORM), hf("post_attention_layernorm.weight"), vec![h]));
        out.push(MappedTensor::one(gg(tensor::ATTN_K_NORM), hf("self_attn.k_norm.weight"), vec![hd]));
        out.push(MappedTensor::one(gg(tensor::ATTN_K), hf("self_attn.k_proj.weight"), vec![nkv * hd, h]));
        out.push(MappedTensor::one(gg(tensor::ATTN_OUTPUT), hf("self_attn.o_proj.weight"), vec![h, nq * hd]));
        out.push(MappedTensor::one(gg(tensor::ATTN_Q_NORM), hf("self_attn.q_norm.weight"), vec![hd]));
        out.push(MappedTensor::one(gg(tensor::ATTN_Q), hf("self_attn.q_proj.weight"), vec![nq * hd, h]));
        out.push(MappedTensor::one(gg(tensor::ATTN_V), hf("self_attn.v_proj.weight"), vec![nkv * hd, h]));
    }
    out.push(MappedTensor::one(names::tensor::OUTPUT_NORM, "language_model.model.norm.weight", vec![h]));
    out
}

/// The separate output projection, when `lm_head` is kept.
pub fn lm_output(cfg: &SailVlConfig) -> MappedTensor {
    MappedTensor::one(names::tensor::OUTPUT, LM_HEAD, vec![cfg.llm.vocab_size as usize, cfg.llm.hidden_size as usize])
}

/// Every vision-tower and projector tensor, in file order.
pub fn vision_tensors(cfg: &SailVlConfig) -> Vec<MappedTensor> {
    let v = &cfg.vision;
    let (c, ff, p, ch) =
        (v.hidden_size as usize, v.intermediate_size as usize, v.patch_size as usize, v.num_channels as usize);
    let grid = (v.image_size / v.patch_size) as usize;
    let pre = "vision_model.preprocessor";
    let mut out = vec![
        MappedTensor::one(names::tensor::V_PATCH_EMBD, format!("{pre}.patchifier.proj.weight"), vec![c, ch, p, p]),
        MappedTensor::one(names::tensor::V_PATCH_EMBD_BIAS, format!("{pre}.patchifier.proj.bias"), vec![c]),
        MappedTensor::one(names::tensor::V_PATCH_NORM, format!("{pre}.patchifier.norm.weight"), vec![c]),
        MappedTensor::one(names::tensor::V_POSITION_EMBD, format!("{pre}.pos_embed"), vec![1, grid * grid, c]),
    ];
    for i in 0..v.num_hidden_layers as usize {
        let hf = |s: &str| format!("vision_model.trunk.blocks.{i}.{s}");
        let gg = |s: &str| tensor::v_blk(i, s);
        out.push(MappedTensor::one(gg(tensor::V_LN1), hf("norm_1.weight"), vec![c]));
        out.push(MappedTensor::one(gg(tensor::V_ATTN_QKV), hf("attn.qkv.weight"), vec![3 * c, c]));
        if v.qkv_bias {
            out.push(MappedTensor::one(gg(tensor::V_ATTN_QKV_BIAS), hf("attn.qkv.bias"), vec![3 * c]));
        }
        out.push(MappedTensor::one(gg(tensor::V_ATTN_OUT), hf("attn.proj.weight"), vec![c, c]));
        out.push(MappedTensor::one(gg(tensor::V_LN2), hf("norm_2.weight"), vec![c]));
        out.push(MappedTensor::one(gg(tensor::V_FFN_GATE), hf("mlp.fc1.weight"), vec![ff, c]));
        out.push(MappedTensor::one(gg(tensor::V_FFN_UP), hf("mlp.fc3.weight"), vec![ff, c]));
        out.push(MappedTensor::one(gg(tensor::V_FFN_DOWN), hf("mlp.fc2.weight"), vec![c, ff]));
        if v.use_bias {
            out.push(MappedTensor::one(gg(tensor::V_ATTN_OUT_BIAS), hf("attn.proj.bias"), vec![c]));
            out.push(MappedTensor::one(gg(tensor::V_FFN_GATE_BIAS), hf("mlp.fc1.bias"), vec![ff]));
            out.push(MappedTensor::one(gg(tensor::V_FFN_UP_BIAS), hf("mlp.fc3.bias"), vec![ff]));
            out.push(MappedTensor::one(gg(tensor::V_FFN_DOWN_BIAS), hf("mlp.fc2.bias"), vec![c]));
        }
    }
    out.push(MappedTensor::one(names::tensor::V_POST_LN, "vision_model.trunk.post_trunk_norm.weight", vec![c]));
    let merged = merged_width(cfg);
    let h = cfg.llm.hidden_size as usize;
    out.push(MappedTensor::one(names::tensor::MM_NORM, "mlp1.0.weight", vec![merged]));
    out.push(MappedTensor::one(names::tensor::MM_NORM_BIAS, "mlp1.0.bias", vec![merged]));
    out.push(MappedTensor::one(names::tensor::MM_FC1, "mlp1.1.weight", vec![h, merged]));
    out.push(MappedTensor::one(names::tensor::MM_FC1_BIAS, "mlp1.1.bias", vec![h]));
    out.push(MappedTensor::one(names::tensor::MM_FC2, "mlp1.3.weight", vec![h, h]));
    out.push(MappedTensor::one(names::tensor::MM_FC2_BIAS, "mlp1.3.bias", vec![h]));
    out
}

/// Channels after pixel shuffle: ViT width × (1 / downsample_ratio)².
pub fn merged_width(cfg: &SailVlConfig) -> usize {
    let s = scale_factor(cfg) as usize;
    cfg.vision.hidden_size as usize * s * s
}

/// 1 / downsample_ratio (2 for the released models).
pub fn scale_factor(cfg: &SailVlConfig) -> u32 {
    (1.0 / cfg.downsample_ratio).round() as u32
}
