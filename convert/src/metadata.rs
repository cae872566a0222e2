//! GGUF metadata of the two output files.

use runtime::gguf::Value;

use crate::hf::config::{LlmArch, SailVlConfig};
use crate::hf::preprocess::PreprocessConfig;
use crate::mapping::{merged_width, scale_factor};

/// The `univl-chat` default system message and the Thinking suffix, as the runtime knows them.
pub use runtime::pipeline::{DEFAULT_SYSTEM_PROMPT as UNIVL_SYSTEM_PROMPT, DEFAULT_THINK_SUFFIX as THINK_SUFFIX};

pub fn arch_name(cfg: &SailVlConfig) -> &'static str {
    match cfg.llm.arch {
        LlmArch::Qwen3 => "qwen3",
        LlmArch::Qwen3Moe => "qwen3moe",
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
        kv("general.architecture", Value::String(a.into())),
        kv("general.type", Value::String("model".into())),
        kv("general.name", Value::String(name.into())),
        kv(format!("{a}.block_count"), Value::U32(l.num_hidden_layers)),
        kv(format!("{a}.context_length"), Value::U32(l.max_position_embeddings)),
        kv(format!("{a}.embedding_length"), Value::U32(l.hidden_size)),
        kv(format!("{a}.feed_forward_length"), Value::U32(l.intermediate_size)),
        kv(format!("{a}.attention.head_count"), Value::U32(l.num_attention_heads)),
        kv(format!("{a}.attention.head_count_kv"), Value::U32(l.num_key_value_heads)),
        kv(format!("{a}.rope.freq_base"), Value::F32(l.rope_theta as f32)),
        kv(format!("{a}.attention.layer_norm_rms_epsilon"), Value::F32(l.rms_norm_eps as f32)),
    ];
    if let Some(moe) = &l.moe {
        m.push(kv(format!("{a}.expert_count"), Value::U32(moe.num_experts)));
        m.push(kv(format!("{a}.expert_used_count"), Value::U32(moe.num_experts_per_tok)));
    }
    m.push(kv(format!("{a}.attention.key_length"), Value::U32(l.head_dim)));
    m.push(kv(format!("{a}.attention.value_length"), Value::U32(l.head_dim)));
    m.push(kv("general.file_type", Value::U32(file_type)));
    if let Some(moe) = &l.moe {
        m.push(kv(format!("{a}.expert_feed_forward_length"), Value::U32(moe.moe_intermediate_size)));
        // llama.cpp's qwen3moe graph always renormalises; the flag is kept so a reader can honour `false`.
        m.push(kv(format!("{a}.expert_weights_norm"), Value::Bool(moe.norm_topk_prob)));
    }
    // llama.cpp's converter writes the version whatever the type, f32 included.
    m.push(kv("general.quantization_version", Value::U32(quantize::requant::QUANTIZATION_VERSION)));
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
            kv("general.architecture", Value::String("clip".into())),
            kv("general.type", Value::String("mmproj".into())),
            kv("general.name", Value::String(self.name.into())),
            kv("general.file_type", Value::U32(self.file_type)),
            kv("clip.projector_type", Value::String("sailvl2".into())),
            kv("clip.has_vision_encoder", Value::Bool(true)),
            kv("clip.vision.image_size", Value::U32(pre.image_size)),
            kv("clip.vision.patch_size", Value::U32(pre.patch_size)),
            kv("clip.vision.embedding_length", Value::U32(v.hidden_size)),
            kv("clip.vision.feed_forward_length", Value::U32(v.intermediate_size)),
            kv("clip.vision.block_count", Value::U32(v.num_hidden_layers)),
            kv("clip.vision.attention.head_count", Value::U32(v.num_attention_heads)),
            kv("clip.vision.attention.layer_norm_epsilon", Value::F32(v.rms_norm_eps as f32)),
            kv("clip.vision.projection_dim", Value::U32(cfg.llm.hidden_size)),
            kv("clip.vision.image_mean", Value::f32s(pre.image_mean.iter().map(|&x| x as f32))),
            kv("clip.vision.image_std", Value::f32s(pre.image_std.iter().map(|&x| x as f32))),
            kv("clip.vision.projector.scale_factor", Value::U32(s)),
            kv("clip.vision.preproc_min_tiles", Value::U32(pre.min_dynamic_patch)),
            kv("clip.vision.preproc_max_tiles", Value::U32(pre.max_dynamic_patch)),
            kv("sailvl2.vision.num_channels", Value::U32(v.num_channels)),
            kv("sailvl2.vision.qkv_bias", Value::Bool(v.qkv_bias)),
            kv("sailvl2.vision.use_bias", Value::Bool(v.use_bias)),
            kv("sailvl2.vision.select_layer", Value::I32(cfg.select_layer)),
            kv("sailvl2.use_thumbnail", Value::Bool(pre.use_thumbnail)),
            kv("sailvl2.use_msac", Value::Bool(pre.use_msac)),
            kv("sailvl2.max_dynamic_patch_config", Value::U32(cfg.max_dynamic_patch)),
            kv("sailvl2.downsample_ratio", Value::F32(cfg.downsample_ratio as f32)),
            kv("sailvl2.ps_version", Value::String(cfg.ps_version.to_string())),
            kv("sailvl2.projector.input_dim", Value::U32(merged_width(cfg) as u32)),
            kv("sailvl2.projector.layer_norm_epsilon", Value::F32(1e-5)),
            kv("sailvl2.tokens_per_tile", Value::U32(tokens_per_tile)),
            kv("sailvl2.image_context_token_id", Value::U32(self.image_context_id)),
            kv("sailvl2.image_start_token_id", Value::U32(self.image_start_id)),
            kv("sailvl2.image_end_token_id", Value::U32(self.image_end_id)),
            kv("sailvl2.template", Value::String(cfg.template.clone().unwrap_or_else(|| "univl-chat".into()))),
            kv("sailvl2.system_prompt", Value::String(self.system_prompt.into())),
            kv("sailvl2.think_suffix", Value::String(THINK_SUFFIX.into())),
        ];
        if let Some(eos) = self.eos_id {
            m.push(kv("sailvl2.stop_token_id", Value::U32(eos)));
        }
        if self.quantized {
            m.push(kv("general.quantization_version", Value::U32(quantize::requant::QUANTIZATION_VERSION)));
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
