//! GGUF metadata of the two output files.

use runtime::gguf::names::{self, llm};
use runtime::gguf::Value;

use crate::hf::config::{LlmArch, SailVlConfig};
use crate::hf::preprocess::PreprocessConfig;
use crate::mapping::{merged_width, scale_factor};

/// The `univl-chat` default system message and the Thinking suffix, as the runtime knows them.
pub use runtime::pipeline::{DEFAULT_SYSTEM_PROMPT as UNIVL_SYSTEM_PROMPT, DEFAULT_THINK_SUFFIX as THINK_SUFFIX};

pub fn arch_name(cfg: &SailVlConfig) -> &'static str {
    match cfg.llm.arch {
        LlmArch::Qwen3 => names::arch::QWEN3,
        LlmArch::Qwen3Moe => names::arch::QWEN3MOE,
    }
}

fn kv(k: impl Into<String>, v: Value) -> (String, Value) {
    (k.into(), v)
}

/// Language-model keys, in the order llama.cpp's converter writes them.
pub fn lm_metadata(cfg: &SailVlConfig, name: &str, file_type: u32) -> Vec<(String, Value)> {
    let a = arch_name(cfg);
    let l = &cfg.llm;
    let mut m = vec![
        kv(names::general::ARCHITECTURE, Value::String(a.into())),
        kv(names::general::TYPE, Value::String("model".into())),
        kv(names::general::NAME, Value::String(name.into())),
        kv(llm::key(a, llm::BLOCK_COUNT), Value::U32(l.num_hidden_layers)),
        kv(llm::key(a, llm::CONTEXT_LENGTH), Value::U32(l.max_position_embeddings)),
        kv(llm::key(a, llm::EMBEDDING_LENGTH), Value::U32(l.hidden_size)),
        kv(llm::key(a, llm::FEED_FORWARD_LENGTH), Value::U32(l.intermediate_size)),
        kv(llm::key(a, llm::HEAD_COUNT), Value::U32(l.num_attention_heads)),
        kv(llm::key(a, llm::HEAD_COUNT_KV), Value::U32(l.num_key_value_heads)),
        kv(llm::key(a, llm::ROPE_FREQ_BASE), Value::F32(l.rope_theta as f32)),
        kv(llm::key(a, llm::RMS_NORM_EPS), Value::F32(l.rms_norm_eps as f32)),
    ];
    if let Some(moe) = &l.moe {
        m.push(kv(llm::key(a, llm::EXPERT_COUNT), Value::U32(moe.num_experts)));
        m.push(kv(llm::key(a, llm::EXPERT_USED_COUNT), Value::U32(moe.num_experts_per_tok)));
    }
    m.push(kv(llm::key(a, llm::KEY_LENGTH), Value::U32(l.head_dim)));
    m.push(kv(llm::key(a, llm::VALUE_LENGTH), Value::U32(l.head_dim)));
    m.push(kv(names::general::FILE_TYPE, Value::U32(file_type)));
    if let Some(moe) = &l.moe {
        m.push(kv(llm::key(a, llm::EXPERT_FEED_FORWARD_LENGTH), Value::U32(moe.moe_intermediate_size)));
        // llama.cpp's qwen3moe graph always renormalises; the flag is kept so a reader can honour `false`.
        m.push(kv(llm::key(a, llm::EXPERT_WEIGHTS_NORM), Value::Bool(moe.norm_topk_prob)));
    }
    // llama.cpp's converter writes the version whatever the type, f32 included.
    m.push(kv(names::general::QUANTIZATION_VERSION, Value::U32(quantize::requant::QUANTIZATION_VERSION)));
    m
}

/// Everything the runtime needs besides the weights to see like the reference: preprocessing, pixel
/// shuffle, feature layer, prompt template and the image token ids.
pub struct MmprojMeta<'a> {
    pub cfg: &'a SailVlConfig,
    pub pre: &'a PreprocessConfig,
    pub name: &'a str,
    pub file_type: u32,
    pub quantized: bool,
    pub system_prompt: &'a str,
    pub image_context_id: u32,
    pub image_start_id: u32,
    pub image_end_id: u32,
    pub eos_id: Option<u32>,
}

impl MmprojMeta<'_> {
    pub fn to_metadata(&self) -> Vec<(String, Value)> {
        let (cfg, pre, v) = (self.cfg, self.pre, &self.cfg.vision);
        let grid = v.image_size / v.patch_size;
        let s = scale_factor(cfg);
        let tokens_per_tile = (grid / s) * (grid / s);
        let mut m = vec![
            kv(names::general::ARCHITECTURE, Value::String(names::arch::CLIP.into())),
            kv(names::general::TYPE, Value::String("mmproj".into())),
            kv(names::general::NAME, Value::String(self.name.into())),
            kv(names::general::FILE_TYPE, Value::U32(self.file_type)),
            kv(names::clip::PROJECTOR_TYPE, Value::String(names::arch::SAILVL2_PROJECTOR.into())),
            kv(names::clip::HAS_VISION_ENCODER, Value::Bool(true)),
            kv(names::clip::IMAGE_SIZE, Value::U32(pre.image_size)),
            kv(names::clip::PATCH_SIZE, Value::U32(pre.patch_size)),
            kv(names::clip::EMBEDDING_LENGTH, Value::U32(v.hidden_size)),
            kv(names::clip::FEED_FORWARD_LENGTH, Value::U32(v.intermediate_size)),
            kv(names::clip::BLOCK_COUNT, Value::U32(v.num_hidden_layers)),
            kv(names::clip::HEAD_COUNT, Value::U32(v.num_attention_heads)),
            kv(names::clip::LAYER_NORM_EPS, Value::F32(v.rms_norm_eps as f32)),
            kv(names::clip::PROJECTION_DIM, Value::U32(cfg.llm.hidden_size)),
            kv(names::clip::IMAGE_MEAN, Value::f32s(pre.image_mean.iter().map(|&x| x as f32))),
            kv(names::clip::IMAGE_STD, Value::f32s(pre.image_std.iter().map(|&x| x as f32))),
            kv(names::clip::SCALE_FACTOR, Value::U32(s)),
            kv(names::clip::PREPROC_MIN_TILES, Value::U32(pre.min_dynamic_patch)),
            kv(names::clip::PREPROC_MAX_TILES, Value::U32(pre.max_dynamic_patch)),
            kv(names::sailvl2::NUM_CHANNELS, Value::U32(v.num_channels)),
            kv(names::sailvl2::QKV_BIAS, Value::Bool(v.qkv_bias)),
            kv(names::sailvl2::USE_BIAS, Value::Bool(v.use_bias)),
            kv(names::sailvl2::SELECT_LAYER, Value::I32(cfg.select_layer)),
            kv(names::sailvl2::USE_THUMBNAIL, Value::Bool(pre.use_thumbnail)),
            kv(names::sailvl2::USE_MSAC, Value::Bool(pre.use_msac)),
            kv(names::sailvl2::MAX_DYNAMIC_PATCH_CONFIG, Value::U32(cfg.max_dynamic_patch)),
            kv(names::sailvl2::DOWNSAMPLE_RATIO, Value::F32(cfg.downsample_ratio as f32)),
            kv(names::sailvl2::PS_VERSION, Value::String(cfg.ps_version.to_string())),
            kv(names::sailvl2::PROJECTOR_INPUT_DIM, Value::U32(merged_width(cfg) as u32)),
            kv(names::sailvl2::PROJECTOR_EPS, Value::F32(1e-5)),
            kv(names::sailvl2::TOKENS_PER_TILE, Value::U32(tokens_per_tile)),
            kv(names::sailvl2::IMAGE_CONTEXT_TOKEN_ID, Value::U32(self.image_context_id)),
            kv(names::sailvl2::IMAGE_START_TOKEN_ID, Value::U32(self.image_start_id)),
            kv(names::sailvl2::IMAGE_END_TOKEN_ID, Value::U32(self.image_end_id)),
            kv(names::sailvl2::TEMPLATE, Value::String(cfg.template.clone().unwrap_or_else(|| "univl-chat".into()))),
            kv(names::sailvl2::SYSTEM_PROMPT, Value::String(self.system_prompt.into())),
            kv(names::sailvl2::THINK_SUFFIX, Value::String(THINK_SUFFIX.into())),
        ];
        if let Some(eos) = self.eos_id {
            m.push(kv(names::sailvl2::STOP_TOKEN_ID, Value::U32(eos)));
        }
        if self.quantized {
            m.push(kv(names::general::QUANTIZATION_VERSION, Value::U32(quantize::requant::QUANTIZATION_VERSION)));
        }
        m
    }
}

/// The default system message carried by a `univl-chat` chat template: the text between
/// `<|im_start|>system\n` and the next `<|im_end|>`.
pub fn system_prompt_from_template(template: &str) -> Option<String> {
    let start = template
        .find("<|im_start|>system\\n")
        .map(|i| i + "<|im_start|>system\\n".len())
        .or_else(|| template.find("<|im_start|>system\n").map(|i| i + "<|im_start|>system\n".len()))?;
    let rest = &template[start..];
    let end = rest.find("<|im_end|>")?;
    Some(rest[..end].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_prompt_is_read_from_the_jinja_template() {
        let t = "{{'<|im_start|>system\\n你是由抖音内容理解组开发的多模态大模型，英文名叫UniVL, 是一个有用无害的人工智能助手。<|im_end|>'}}";
        assert_eq!(system_prompt_from_template(t).as_deref(), Some(UNIVL_SYSTEM_PROMPT));
        assert_eq!(system_prompt_from_template("{{ messages }}"), None);
    }
}
