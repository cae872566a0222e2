//! Which ggml type each tensor gets, for every file type ("mix") we write.
//!
//! The language-model rules are llama.cpp's `llama_tensor_get_type` for the mixes it defines (so a file we
//! quantize is laid out like one `llama-quantize` would make), restricted to the types we implement:
//!
//! | mix | default | deviations |
//! |---|---|---|
//! | `f32`, `f16`, `bf16`, `q8_0` | that type | none (the converter's own `--outtype` semantics) |
//! | `q4_0`, `q4_1`, `q5_0`, `q5_1` | that type | output (or tied `token_embd`) → Q6_K |
//! | `q4_k_s` | Q4_K | output → Q6_K; `attn_v` of layers 0–3 and `ffn_down` of the first 1/8 of layers → Q5_K |
//! | `q4_k_m` | Q4_K | output → Q6_K; `attn_v` and `ffn_down` → Q6_K on the "more bits" layers (first and last 1/8, and every third in between) |
//! | `q5_k_s` | Q5_K | output → Q6_K |
//! | `q5_k_m` | Q5_K | output → Q6_K; `attn_v` and `ffn_down` → Q6_K on the "more bits" layers |
//! | `q6_k` | Q6_K | none |
//!
//! For 8-expert MoE models llama.cpp also raises `attn_k`/`attn_v` to Q8_0 and, for `q4_k_*`, `attn_output`
//! to Q5_K; we do the same. A K-quant on a row length that is not a multiple of 256 falls back as llama.cpp
//! does (Q4_K→Q5_0, Q5_K→Q5_1, Q6_K→Q8_0, then F16 if even that does not divide). Norms, biases, router
//! (`ffn_gate_inp`) and position embeddings are never quantized.
//!
//! Vision (mmproj) tensors follow one rule: 2-D linear weights take the vision type (Q8_0 by default, since
//! 4-bit ViTs drift), the patch-embedding convolution is F16 (its 14-wide rows fit no block), everything
//! else stays F32.

use std::fmt;
use std::str::FromStr;

use runtime::GgmlType;

/// A whole-file quantization recipe, named as llama.cpp names its file types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mix {
    F32,
    F16,
    BF16,
    Q8_0,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q4KS,
    Q4KM,
    Q5KS,
    Q5KM,
    Q6K,
}

impl Mix {
    pub const ALL: [Mix; 13] = [
        Mix::F32,
        Mix::F16,
        Mix::BF16,
        Mix::Q8_0,
        Mix::Q4_0,
        Mix::Q4_1,
        Mix::Q5_0,
        Mix::Q5_1,
        Mix::Q4KS,
        Mix::Q4KM,
        Mix::Q5KS,
        Mix::Q5KM,
        Mix::Q6K,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Mix::F32 => "f32",
            Mix::F16 => "f16",
            Mix::BF16 => "bf16",
            Mix::Q8_0 => "q8_0",
            Mix::Q4_0 => "q4_0",
            Mix::Q4_1 => "q4_1",
            Mix::Q5_0 => "q5_0",
            Mix::Q5_1 => "q5_1",
            Mix::Q4KS => "q4_k_s",
            Mix::Q4KM => "q4_k_m",
            Mix::Q5KS => "q5_k_s",
            Mix::Q5KM => "q5_k_m",
            Mix::Q6K => "q6_k",
        }
    }

    /// The type most tensors get.
    pub fn default_type(self) -> GgmlType {
        match self {
            Mix::F32 => GgmlType::F32,
            Mix::F16 => GgmlType::F16,
            Mix::BF16 => GgmlType::BF16,
            Mix::Q8_0 => GgmlType::Q8_0,
            Mix::Q4_0 => GgmlType::Q4_0,
            Mix::Q4_1 => GgmlType::Q4_1,
            Mix::Q5_0 => GgmlType::Q5_0,
            Mix::Q5_1 => GgmlType::Q5_1,
            Mix::Q4KS | Mix::Q4KM => GgmlType::Q4K,
            Mix::Q5KS | Mix::Q5KM => GgmlType::Q5K,
            Mix::Q6K => GgmlType::Q6K,
        }
    }

    /// `general.file_type` (llama.cpp's `llama_ftype`).
    pub fn file_type_id(self) -> u32 {
        match self {
            Mix::F32 => 0,
            Mix::F16 => 1,
            Mix::Q4_0 => 2,
            Mix::Q4_1 => 3,
            Mix::Q8_0 => 7,
            Mix::Q5_0 => 8,
            Mix::Q5_1 => 9,
            Mix::Q4KS => 14,
            Mix::Q4KM => 15,
            Mix::Q5KS => 16,
            Mix::Q5KM => 17,
            Mix::Q6K => 18,
            Mix::BF16 => 32,
        }
    }

    /// Mixes at or below 8 bits whose outputs are llama-quantize style (not plain converter output).
    fn is_llama_quantize_mix(self) -> bool {
        !matches!(self, Mix::F32 | Mix::F16 | Mix::BF16 | Mix::Q8_0)
    }

    /// The mix that stores (nearly) everything in `ty`, for labelling a file whose matrices all have one
    /// type (an mmproj file's `general.file_type`).
    pub fn for_uniform_type(ty: GgmlType) -> Option<Mix> {
        Some(match ty {
            GgmlType::F32 => Mix::F32,
            GgmlType::F16 => Mix::F16,
            GgmlType::BF16 => Mix::BF16,
            GgmlType::Q8_0 => Mix::Q8_0,
            GgmlType::Q4_0 => Mix::Q4_0,
            GgmlType::Q4_1 => Mix::Q4_1,
            GgmlType::Q5_0 => Mix::Q5_0,
            GgmlType::Q5_1 => Mix::Q5_1,
            GgmlType::Q6K => Mix::Q6K,
            _ => return None,
        })
    }

    /// The vision type used by default under this mix: float mixes keep their float type, every quantized
    /// mix uses Q8_0.
    pub fn default_vision_type(self) -> GgmlType {
        match self {
            Mix::F32 => GgmlType::F32,
            Mix::F16 => GgmlType::F16,
            Mix::BF16 => GgmlType::BF16,
            _ => GgmlType::Q8_0,
        }
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Mix {
    type Err = String;
    fn from_str(s: &str) -> Result<Mix, String> {
        let lower = s.to_ascii_lowercase();
        Mix::ALL.into_iter().find(|m| m.name() == lower).ok_or_else(|| {
            let names: Vec<&str> = Mix::ALL.iter().map(|m| m.name()).collect();
            format!("unknown type '{s}' (expected one of: {})", names.join(", "))
        })
    }
}

/// What the recipe needs to know about the model as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelShape {
    pub n_layers: u32,
    /// Whether a separate `output.weight` exists (otherwise `token_embd` doubles as the output).
    pub has_output: bool,
    pub n_experts: u32,
}

/// Whether a tensor holds matrix weights worth quantizing (llama-quantize's predicate).
pub fn is_quantizable(name: &str, dims: &[u64]) -> bool {
    name.ends_with("weight")
        && dims.len() >= 2
        && !name.contains("_norm.weight")
        && !name.contains("ffn_gate_inp.weight")
        && !name.contains("position_embd")
        && !name.contains("patch_embd")
}

/// llama.cpp's layer heuristic for spending more bits: first and last eighth, and every third layer between.
pub fn use_more_bits(i_layer: i64, n_layers: i64) -> bool {
    i_layer < n_layers / 8 || i_layer >= 7 * n_layers / 8 || (i_layer - n_layers / 8) % 3 == 2
}

fn layer_of(name: &str) -> Option<i64> {
    name.strip_prefix("blk.")?.split('.').next()?.parse().ok()
}

/// The type for a language-model tensor. `keep` is returned for tensors that are never quantized (the
/// converter passes F32; re-quantizing passes the type already stored).
pub fn lm_tensor_type(mix: Mix, name: &str, dims: &[u64], model: &ModelShape, keep: GgmlType) -> GgmlType {
    if !is_quantizable(name, dims) {
        return keep;
    }
    let ne0 = dims[0];
    if !mix.is_llama_quantize_mix() {
        // The converter's rule: the requested type, or F16 where the row length fits no block.
        let t = mix.default_type();
        return if ne0.is_multiple_of(t.block_size() as u64) { t } else { GgmlType::F16 };
    }
    let mut t = mix.default_type();
    let layer = layer_of(name);
    let n_layers = model.n_layers as i64;
    let more_bits = |i: Option<i64>| i.is_some_and(|i| use_more_bits(i, n_layers));
    let is_output = name == "output.weight" || (!model.has_output && name == "token_embd.weight");
    if is_output {
        t = if !ne0.is_multiple_of(t.block_size() as u64) {
            GgmlType::Q8_0
        } else if t != GgmlType::Q8_0 {
            GgmlType::Q6K
        } else {
            t
        };
    } else if name.contains("attn_v.weight") {
        match mix {
            Mix::Q4KM | Mix::Q5KM if more_bits(layer) => t = GgmlType::Q6K,
            Mix::Q4KS if layer.is_some_and(|i| i < 4) => t = GgmlType::Q5K,
            _ => {}
        }
        if model.n_experts == 8 {
            t = GgmlType::Q8_0;
        }
    } else if name.contains("attn_k.weight") {
        if model.n_experts == 8 {
            t = GgmlType::Q8_0;
        }
    } else if name.contains("ffn_down") {
        match mix {
            Mix::Q4KM | Mix::Q5KM if more_bits(layer) => t = GgmlType::Q6K,
            Mix::Q4KS if layer.is_some_and(|i| i < n_layers / 8) => t = GgmlType::Q5K,
            _ => {}
        }
    } else if name.contains("attn_output.weight") && model.n_experts == 8 && matches!(mix, Mix::Q4KS | Mix::Q4KM) {
        t = GgmlType::Q5K;
    }
    fallback(t, ne0)
}

/// llama.cpp's substitute when `ne0` is not a whole number of `t` blocks.
pub fn fallback(t: GgmlType, ne0: u64) -> GgmlType {
    if ne0.is_multiple_of(t.block_size() as u64) {
        return t;
    }
    let f = match t {
        GgmlType::Q4K => GgmlType::Q5_0,
        GgmlType::Q5K => GgmlType::Q5_1,
        GgmlType::Q6K => GgmlType::Q8_0,
        _ => GgmlType::F16,
    };
    if ne0.is_multiple_of(f.block_size() as u64) {
        f
    } else {
        GgmlType::F16
    }
}

/// The type for a vision-tower or projector tensor (mmproj file).
pub fn vision_tensor_type(vision: GgmlType, name: &str, dims: &[u64], keep: GgmlType) -> GgmlType {
    if name.contains("patch_embd") && dims.len() == 4 {
        return if vision == GgmlType::F32 { GgmlType::F32 } else { GgmlType::F16 };
    }
    if !is_quantizable(name, dims) {
        return keep;
    }
    fallback(vision, dims[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    const QWEN3_1_7B: ModelShape = ModelShape { n_layers: 28, has_output: false, n_experts: 0 };

    #[test]
    fn more_bits_layers_match_llama_cpp_heuristic() {
        let picked: Vec<i64> = (0..28).filter(|&i| use_more_bits(i, 28)).collect();
        // n/8 = 3: layers 0-2, 7n/8 = 24: 24-27, and (i-3) % 3 == 2: 5, 8, ..., 23.
        assert_eq!(picked, vec![0, 1, 2, 5, 8, 11, 14, 17, 20, 23, 24, 25, 26, 27]);
    }

    #[test]
    fn q4_k_m_on_a_qwen3_1_7b_shape() {
        let m = &QWEN3_1_7B;
        let k = GgmlType::F32;
        assert_eq!(lm_tensor_type(Mix::Q4KM, "token_embd.weight", &[2048, 151936], m, k), GgmlType::Q6K);
        assert_eq!(lm_tensor_type(Mix::Q4KM, "blk.0.attn_v.weight", &[2048, 1024], m, k), GgmlType::Q6K);
        assert_eq!(lm_tensor_type(Mix::Q4KM, "blk.3.attn_v.weight", &[2048, 1024], m, k), GgmlType::Q4K);
        assert_eq!(lm_tensor_type(Mix::Q4KM, "blk.5.ffn_down.weight", &[6144, 2048], m, k), GgmlType::Q6K);
        assert_eq!(lm_tensor_type(Mix::Q4KM, "blk.4.ffn_down.weight", &[6144, 2048], m, k), GgmlType::Q4K);
        assert_eq!(lm_tensor_type(Mix::Q4KM, "blk.4.attn_q.weight", &[2048, 2048], m, k), GgmlType::Q4K);
        assert_eq!(lm_tensor_type(Mix::Q4KM, "blk.4.attn_norm.weight", &[2048], m, k), GgmlType::F32);
        assert_eq!(lm_tensor_type(Mix::Q4KM, "blk.4.attn_q_norm.weight", &[128], m, k), GgmlType::F32);
        let tied_out = ModelShape { has_output: true, ..QWEN3_1_7B };
        assert_eq!(lm_tensor_type(Mix::Q4KM, "token_embd.weight", &[2048, 151936], &tied_out, k), GgmlType::Q4K);
        assert_eq!(lm_tensor_type(Mix::Q4KM, "output.weight", &[2048, 151936], &tied_out, k), GgmlType::Q6K);
    }

    #[test]
    fn small_rows_fall_back_like_llama_quantize() {
        // The tiny fixture: hidden 32. llama-quantize Q4_0 made token_embd Q8_0 (Q6_K does not fit 32).
        let m = ModelShape { n_layers: 3, has_output: false, n_experts: 0 };
        assert_eq!(lm_tensor_type(Mix::Q4_0, "token_embd.weight", &[32, 151936], &m, GgmlType::F32), GgmlType::Q8_0);
        assert_eq!(lm_tensor_type(Mix::Q4_0, "blk.0.attn_q.weight", &[32, 64], &m, GgmlType::F32), GgmlType::Q4_0);
        assert_eq!(lm_tensor_type(Mix::Q4KM, "blk.1.attn_q.weight", &[32, 64], &m, GgmlType::F32), GgmlType::Q5_0);
        assert_eq!(lm_tensor_type(Mix::Q5KM, "blk.1.attn_q.weight", &[32, 64], &m, GgmlType::F32), GgmlType::Q5_1);
        assert_eq!(fallback(GgmlType::Q4K, 14), GgmlType::F16);
    }

    #[test]
    fn eight_expert_models_keep_attention_k_v_at_q8_0() {
        let m = ModelShape { n_layers: 3, has_output: false, n_experts: 8 };
        let k = GgmlType::F32;
        assert_eq!(lm_tensor_type(Mix::Q4KM, "blk.0.attn_k.weight", &[256, 256], &m, k), GgmlType::Q8_0);
        assert_eq!(lm_tensor_type(Mix::Q4KM, "blk.1.attn_v.weight", &[256, 256], &m, k), GgmlType::Q8_0);
        assert_eq!(lm_tensor_type(Mix::Q4KM, "blk.1.attn_output.weight", &[256, 256], &m, k), GgmlType::Q5K);
        assert_eq!(lm_tensor_type(Mix::Q4KM, "blk.1.ffn_gate_inp.weight", &[256, 8], &m, k), GgmlType::F32);
    }

    #[test]
    fn converter_mixes_quantize_every_matrix() {
        let m = ModelShape { n_layers: 3, has_output: false, n_experts: 0 };
        assert_eq!(lm_tensor_type(Mix::Q8_0, "token_embd.weight", &[32, 151936], &m, GgmlType::F32), GgmlType::Q8_0);
        assert_eq!(lm_tensor_type(Mix::F16, "blk.0.ffn_up.weight", &[32, 64], &m, GgmlType::F32), GgmlType::F16);
        assert_eq!(lm_tensor_type(Mix::Q8_0, "blk.0.x.weight", &[14, 64], &m, GgmlType::F32), GgmlType::F16);
    }

    #[test]
    fn vision_rules() {
        let q8 = GgmlType::Q8_0;
        let k = GgmlType::F32;
        assert_eq!(vision_tensor_type(q8, "v.patch_embd.weight", &[14, 14, 3, 1536], k), GgmlType::F16);
        assert_eq!(vision_tensor_type(GgmlType::F32, "v.patch_embd.weight", &[14, 14, 3, 1536], k), GgmlType::F32);
        assert_eq!(vision_tensor_type(q8, "v.position_embd.weight", &[1536, 1024], k), GgmlType::F32);
        assert_eq!(vision_tensor_type(q8, "v.blk.0.attn_qkv.weight", &[1536, 4608], k), q8);
        assert_eq!(vision_tensor_type(q8, "mm.1.weight", &[6144, 2048], k), q8);
        assert_eq!(vision_tensor_type(q8, "mm.1.bias", &[2048], k), GgmlType::F32);
        assert_eq!("Q4_K_M".parse::<Mix>().unwrap(), Mix::Q4KM);
        assert!("q3_k".parse::<Mix>().is_err());
    }
}
