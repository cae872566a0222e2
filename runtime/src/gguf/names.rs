//! The GGUF metadata keys and tensor names of sail-edge's two files, in one place: the converter writes
//! them, the runtime reads them, and neither spells one out itself. Language-model names follow llama.cpp
//! (`qwen3` / `qwen3moe`); the vision file follows llama.cpp's `clip` conventions with our `sailvl2.*` keys.

/// `general.*` keys.
pub mod general {
    pub const ARCHITECTURE: &str = "general.architecture";
    pub const TYPE: &str = "general.type";
    pub const NAME: &str = "general.name";
    pub const FILE_TYPE: &str = "general.file_type";
    pub const QUANTIZATION_VERSION: &str = "general.quantization_version";
    pub const ALIGNMENT: &str = "general.alignment";
}

/// Values of `general.architecture` (and `clip.projector_type`).
pub mod arch {
    pub const QWEN3: &str = "qwen3";
    pub const QWEN3MOE: &str = "qwen3moe";
    pub const CLIP: &str = "clip";
    /// `clip.projector_type` of a SAIL-VL2 vision file.
    pub const SAILVL2_PROJECTOR: &str = "sailvl2";
}

/// Language-model keys, each under the architecture's prefix: [`llm::key`]`(arch, llm::BLOCK_COUNT)` is
/// `qwen3.block_count`.
pub mod llm {
    pub const BLOCK_COUNT: &str = "block_count";
    pub const CONTEXT_LENGTH: &str = "context_length";
    pub const EMBEDDING_LENGTH: &str = "embedding_length";
    pub const FEED_FORWARD_LENGTH: &str = "feed_forward_length";
    pub const HEAD_COUNT: &str = "attention.head_count";
    pub const HEAD_COUNT_KV: &str = "attention.head_count_kv";
    pub const ROPE_FREQ_BASE: &str = "rope.freq_base";
    pub const RMS_NORM_EPS: &str = "attention.layer_norm_rms_epsilon";
    pub const KEY_LENGTH: &str = "attention.key_length";
    pub const VALUE_LENGTH: &str = "attention.value_length";
    pub const EXPERT_COUNT: &str = "expert_count";
    pub const EXPERT_USED_COUNT: &str = "expert_used_count";
    pub const EXPERT_FEED_FORWARD_LENGTH: &str = "expert_feed_forward_length";
    pub const EXPERT_WEIGHTS_NORM: &str = "expert_weights_norm";

    /// `{arch}.{key}`.
    pub fn key(arch: &str, key: &str) -> String {
        format!("{arch}.{key}")
    }
}

/// The vision file's `clip.*` keys.
pub mod clip {
    pub const PROJECTOR_TYPE: &str = "clip.projector_type";
    pub const HAS_VISION_ENCODER: &str = "clip.has_vision_encoder";
    pub const IMAGE_SIZE: &str = "clip.vision.image_size";
    pub const PATCH_SIZE: &str = "clip.vision.patch_size";
    pub const EMBEDDING_LENGTH: &str = "clip.vision.embedding_length";
    pub const FEED_FORWARD_LENGTH: &str = "clip.vision.feed_forward_length";
    pub const BLOCK_COUNT: &str = "clip.vision.block_count";
    pub const HEAD_COUNT: &str = "clip.vision.attention.head_count";
    pub const LAYER_NORM_EPS: &str = "clip.vision.attention.layer_norm_epsilon";
    pub const PROJECTION_DIM: &str = "clip.vision.projection_dim";
    pub const IMAGE_MEAN: &str = "clip.vision.image_mean";
    pub const IMAGE_STD: &str = "clip.vision.image_std";
    pub const SCALE_FACTOR: &str = "clip.vision.projector.scale_factor";
    pub const PREPROC_MIN_TILES: &str = "clip.vision.preproc_min_tiles";
    pub const PREPROC_MAX_TILES: &str = "clip.vision.preproc_max_tiles";
}

/// The vision file's `sailvl2.*` keys (what llama.cpp's `clip` keys cannot say).
pub mod sailvl2 {
    pub const NUM_CHANNELS: &str = "sailvl2.vision.num_channels";
    pub const QKV_BIAS: &str = "sailvl2.vision.qkv_bias";
    pub const USE_BIAS: &str = "sailvl2.vision.use_bias";
    pub const SELECT_LAYER: &str = "sailvl2.vision.select_layer";
    pub const USE_THUMBNAIL: &str = "sailvl2.use_thumbnail";
    pub const USE_MSAC: &str = "sailvl2.use_msac";
    pub const MAX_DYNAMIC_PATCH_CONFIG: &str = "sailvl2.max_dynamic_patch_config";
    pub const DOWNSAMPLE_RATIO: &str = "sailvl2.downsample_ratio";
    pub const PS_VERSION: &str = "sailvl2.ps_version";
    pub const PROJECTOR_INPUT_DIM: &str = "sailvl2.projector.input_dim";
    pub const PROJECTOR_EPS: &str = "sailvl2.projector.layer_norm_epsilon";
    pub const TOKENS_PER_TILE: &str = "sailvl2.tokens_per_tile";
    pub const IMAGE_CONTEXT_TOKEN_ID: &str = "sailvl2.image_context_token_id";
    pub const IMAGE_START_TOKEN_ID: &str = "sailvl2.image_start_token_id";
    pub const IMAGE_END_TOKEN_ID: &str = "sailvl2.image_end_token_id";
    pub const TEMPLATE: &str = "sailvl2.template";
    pub const SYSTEM_PROMPT: &str = "sailvl2.system_prompt";
    pub const THINK_SUFFIX: &str = "sailvl2.think_suffix";
    pub const STOP_TOKEN_ID: &str = "sailvl2.stop_token_id";
}

/// `tokenizer.ggml.*` keys.
pub mod tokenizer {
    pub const MODEL: &str = "tokenizer.ggml.model";
    pub const PRE: &str = "tokenizer.ggml.pre";
    pub const TOKENS: &str = "tokenizer.ggml.tokens";
    pub const TOKEN_TYPE: &str = "tokenizer.ggml.token_type";
    pub const MERGES: &str = "tokenizer.ggml.merges";
    pub const BOS_ID: &str = "tokenizer.ggml.bos_token_id";
    pub const EOS_ID: &str = "tokenizer.ggml.eos_token_id";
    pub const UNKNOWN_ID: &str = "tokenizer.ggml.unknown_token_id";
    /// llama.cpp spells it so.
    pub const SEPARATOR_ID: &str = "tokenizer.ggml.seperator_token_id";
    pub const PADDING_ID: &str = "tokenizer.ggml.padding_token_id";
    pub const MASK_ID: &str = "tokenizer.ggml.mask_token_id";
    pub const ADD_BOS: &str = "tokenizer.ggml.add_bos_token";
    pub const ADD_SEP: &str = "tokenizer.ggml.add_sep_token";
}

/// Tensor names. Per-layer names are completed by [`tensor::blk`] / [`tensor::v_blk`].
pub mod tensor {
    pub const TOKEN_EMBD: &str = "token_embd.weight";
    pub const OUTPUT_NORM: &str = "output_norm.weight";
    pub const OUTPUT: &str = "output.weight";

    /// `blk.{layer}.{name}` (a decoder layer's tensor).
    pub fn blk(layer: usize, name: &str) -> String {
        format!("blk.{layer}.{name}")
    }
    pub const ATTN_NORM: &str = "attn_norm.weight";
    pub const ATTN_Q: &str = "attn_q.weight";
    pub const ATTN_K: &str = "attn_k.weight";
    pub const ATTN_V: &str = "attn_v.weight";
    pub const ATTN_Q_NORM: &str = "attn_q_norm.weight";
    pub const ATTN_K_NORM: &str = "attn_k_norm.weight";
    pub const ATTN_OUTPUT: &str = "attn_output.weight";
    pub const FFN_NORM: &str = "ffn_norm.weight";
    pub const FFN_GATE: &str = "ffn_gate.weight";
    pub const FFN_UP: &str = "ffn_up.weight";
    pub const FFN_DOWN: &str = "ffn_down.weight";
    pub const FFN_GATE_INP: &str = "ffn_gate_inp.weight";
    pub const FFN_GATE_EXPS: &str = "ffn_gate_exps.weight";
    pub const FFN_UP_EXPS: &str = "ffn_up_exps.weight";
    pub const FFN_DOWN_EXPS: &str = "ffn_down_exps.weight";

    pub const V_PATCH_EMBD: &str = "v.patch_embd.weight";
    pub const V_PATCH_EMBD_BIAS: &str = "v.patch_embd.bias";
    pub const V_PATCH_NORM: &str = "v.patch_norm.weight";
    pub const V_POSITION_EMBD: &str = "v.position_embd.weight";
    pub const V_POST_LN: &str = "v.post_ln.weight";

    /// `v.blk.{layer}.{name}` (a ViT block's tensor).
    pub fn v_blk(layer: usize, name: &str) -> String {
        format!("v.blk.{layer}.{name}")
    }
    pub const V_LN1: &str = "ln1.weight";
    pub const V_ATTN_QKV: &str = "attn_qkv.weight";
    pub const V_ATTN_QKV_BIAS: &str = "attn_qkv.bias";
    pub const V_ATTN_OUT: &str = "attn_out.weight";
    pub const V_ATTN_OUT_BIAS: &str = "attn_out.bias";
    pub const V_LN2: &str = "ln2.weight";
    pub const V_FFN_GATE: &str = "ffn_gate.weight";
    pub const V_FFN_GATE_BIAS: &str = "ffn_gate.bias";
    pub const V_FFN_UP: &str = "ffn_up.weight";
    pub const V_FFN_UP_BIAS: &str = "ffn_up.bias";
    pub const V_FFN_DOWN: &str = "ffn_down.weight";
    pub const V_FFN_DOWN_BIAS: &str = "ffn_down.bias";

    /// The projector `mlp1`: LayerNorm (`mm.0`), Linear (`mm.1`), GELU, Linear (`mm.3`).
    pub const MM_NORM: &str = "mm.0.weight";
    pub const MM_NORM_BIAS: &str = "mm.0.bias";
    pub const MM_FC1: &str = "mm.1.weight";
    pub const MM_FC1_BIAS: &str = "mm.1.bias";
    pub const MM_FC2: &str = "mm.3.weight";
    pub const MM_FC2_BIAS: &str = "mm.3.bias";
}
