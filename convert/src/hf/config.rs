//! Typed view of a SAIL-VL2 `config.json` (spec §1.2, §7).
//!
//! The file is read as untyped JSON and every field is pulled out by hand, so that an error names
//! the exact key (`config.json: llm_config.hidden_size is missing`) instead of a serde position.
//! Both the transformers-4.x spelling (`rope_theta`, `torch_dtype`, `num_experts`) and the 5.x
//! spelling (`rope_parameters`, `dtype`, `num_local_experts`) are accepted.
//!
//! Always read the values from the file: `SAILVLConfig`'s class defaults differ from the released
//! config (spec §1.2 note), so the fields that shape the graph have no defaults here.

use std::fmt;
use std::path::Path;

use serde_json::{Map, Value};

/// What went wrong while reading a JSON config file. `file` is the path as given.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: invalid JSON: {source}")]
    Json {
        file: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{file}: {key} is missing")]
    Missing { file: String, key: String },
    #[error("{file}: {key} has the wrong type: expected {expected}, found {found}")]
    WrongType { file: String, key: String, expected: &'static str, found: String },
    #[error("{file}: {key} = {value} is invalid: {reason}")]
    Invalid { file: String, key: String, value: String, reason: String },
    #[error("{file}: {key} = {value} is unsupported: {reason}")]
    Unsupported { file: String, key: String, value: String, reason: String },
}

/// `ps_version`: the pixel-shuffle channel order used before `mlp1` (spec §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelShuffleVersion {
    V1,
    V2,
}

impl fmt::Display for PixelShuffleVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PixelShuffleVersion::V1 => "v1",
            PixelShuffleVersion::V2 => "v2",
        })
    }
}

/// The whole SAIL-VL2 `config.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct SailVlConfig {
    /// Token merge of the projector; 0.5 = 2x2 patches per LLM token.
    pub downsample_ratio: f64,
    /// Tile side in pixels (448).
    pub force_image_size: u32,
    /// Tile budget from config.json (12 for 2B). The processor uses preprocessor_config's value.
    pub max_dynamic_patch: u32,
    pub min_dynamic_patch: u32,
    pub use_thumbnail: bool,
    pub ps_version: PixelShuffleVersion,
    /// -1 = `post_trunk_norm` output; other values index the block outputs (spec §9.6).
    pub select_layer: i32,
    /// Conversation template name (`univl-chat`), if present.
    pub template: Option<String>,
    /// Storage dtype as written (`torch_dtype` in 4.x, `dtype` in 5.x), e.g. `bfloat16`.
    pub dtype: Option<String>,
    pub vision: VisionConfig,
    pub llm: LlmConfig,
}

/// `vision_config`: SAIL-ViT (spec §1.1).
#[derive(Debug, Clone, PartialEq)]
pub struct VisionConfig {
    pub hidden_size: u32,
    pub intermediate_size: u32,
    pub num_hidden_layers: u32,
    pub num_attention_heads: u32,
    pub patch_size: u32,
    pub image_size: u32,
    /// Defaults to 3 when absent.
    pub num_channels: u32,
    pub rms_norm_eps: f64,
    /// Defaults to false when absent (the released checkpoints have no qkv bias).
    pub qkv_bias: bool,
    /// Defaults to false when absent (no bias on proj/MLP in the released checkpoints).
    pub use_bias: bool,
}

/// Which decoder the LLM half is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LlmArch {
    /// `Qwen3ForCausalLM` / `qwen3`
    Qwen3,
    /// `Qwen3MoeForCausalLM` / `qwen3_moe`
    Qwen3Moe,
}

/// A special-token id in config.json: an integer, or (some generation configs) a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenIds {
    One(u32),
    Many(Vec<u32>),
}

impl TokenIds {
    /// The id when it was written as a single integer. llama.cpp's `SpecialVocab` ignores lists.
    pub fn single(&self) -> Option<u32> {
        match self {
            TokenIds::One(id) => Some(*id),
            TokenIds::Many(_) => None,
        }
    }

    /// Every id, whichever way it was written.
    pub fn all(&self) -> &[u32] {
        match self {
            TokenIds::One(id) => std::slice::from_ref(id),
            TokenIds::Many(ids) => ids,
        }
    }
}

/// The `{bos,eos,unk,sep,pad,cls,mask}_token_id` entries of `llm_config`, in `SpecialVocab` order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpecialTokenIds {
    pub bos: Option<TokenIds>,
    pub eos: Option<TokenIds>,
    pub unk: Option<TokenIds>,
    pub sep: Option<TokenIds>,
    pub pad: Option<TokenIds>,
    pub cls: Option<TokenIds>,
    pub mask: Option<TokenIds>,
}

impl SpecialTokenIds {
    /// Look up by the `SpecialVocab` type name (`bos`, `eos`, ...).
    pub fn get(&self, typ: &str) -> Option<&TokenIds> {
        match typ {
            "bos" => self.bos.as_ref(),
            "eos" => self.eos.as_ref(),
            "unk" => self.unk.as_ref(),
            "sep" => self.sep.as_ref(),
            "pad" => self.pad.as_ref(),
            "cls" => self.cls.as_ref(),
            "mask" => self.mask.as_ref(),
            _ => None,
        }
    }
}

/// Qwen3-MoE router/expert settings (spec §7.2). Only `decoder_sparse_step == 1` and an empty
/// `mlp_only_layers` are supported, so every layer is sparse and those keys are not kept.
#[derive(Debug, Clone, PartialEq)]
pub struct MoeConfig {
    pub num_experts: u32,
    pub num_experts_per_tok: u32,
    pub moe_intermediate_size: u32,
    /// Renormalise the top-k router weights. Defaults to false (the HF class default) when absent.
    pub norm_topk_prob: bool,
}

/// `llm_config`: the Qwen3 / Qwen3-MoE decoder.
#[derive(Debug, Clone, PartialEq)]
pub struct LlmConfig {
    pub arch: LlmArch,
    pub hidden_size: u32,
    /// Dense MLP width (for MoE: the width of dense layers, unused when every layer is sparse).
    pub intermediate_size: u32,
    pub num_hidden_layers: u32,
    pub num_attention_heads: u32,
    /// Defaults to `num_attention_heads` (no GQA) when absent, like transformers.
    pub num_key_value_heads: u32,
    /// Defaults to `hidden_size / num_attention_heads` when absent.
    pub head_dim: u32,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub max_position_embeddings: u32,
    /// Defaults to false (Qwen3Config default) when absent.
    pub tie_word_embeddings: bool,
    pub vocab_size: u32,
    pub special_token_ids: SpecialTokenIds,
    /// Present exactly when `arch == Qwen3Moe`.
    pub moe: Option<MoeConfig>,
}

impl SailVlConfig {
    /// Read and check `config.json` (a file path, not a folder).
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io { file: file.clone(), source })?;
        Self::from_json_str(&text, &file)
    }

    /// Parse config.json text; `file` labels the errors.
    pub fn from_json_str(text: &str, file: &str) -> Result<Self, ConfigError> {
        let root: Value =
            serde_json::from_str(text).map_err(|source| ConfigError::Json { file: file.to_string(), source })?;
        let top = Obj::root(file, &root)?;

        let downsample_ratio = top.f64("downsample_ratio")?;
        if !(downsample_ratio > 0.0 && downsample_ratio <= 1.0) {
            return Err(top.invalid("downsample_ratio", downsample_ratio, "must be in (0, 1]"));
        }
        let ps_text = top.str("ps_version")?;
        let ps_version = match ps_text {
            "v1" => PixelShuffleVersion::V1,
            "v2" => PixelShuffleVersion::V2,
            other => return Err(top.unsupported("ps_version", format!("{other:?}"), "only v1 and v2 exist")),
        };
        let select_layer = top.i64("select_layer")?;
        let select_layer =
            i32::try_from(select_layer).map_err(|_| top.invalid("select_layer", select_layer, "out of range"))?;
        let min_dynamic_patch = top.u32("min_dynamic_patch")?;
        let max_dynamic_patch = top.u32("max_dynamic_patch")?;
        if min_dynamic_patch == 0 || min_dynamic_patch > max_dynamic_patch {
            return Err(top.invalid(
                "min_dynamic_patch",
                min_dynamic_patch,
                format!("must be in 1..=max_dynamic_patch ({max_dynamic_patch})"),
            ));
        }
        let config = SailVlConfig {
            downsample_ratio,
            force_image_size: top.positive_u32("force_image_size")?,
            max_dynamic_patch,
            min_dynamic_patch,
            use_thumbnail: top.bool("use_thumbnail")?,
            ps_version,
            select_layer,
            template: top.opt_str("template")?.map(str::to_string),
            dtype: dtype_of(&top)?,
            vision: parse_vision(&top.child("vision_config")?)?,
            llm: parse_llm(&top.child("llm_config")?)?,
        };
        Ok(config)
    }
}

/// `dtype` (5.x) wins over `torch_dtype` (4.x); 5.x files may keep both.
fn dtype_of(obj: &Obj<'_>) -> Result<Option<String>, ConfigError> {
    Ok(match obj.opt_str("dtype")? {
        Some(d) => Some(d.to_string()),
        None => obj.opt_str("torch_dtype")?.map(str::to_string),
    })
}

fn parse_vision(v: &Obj<'_>) -> Result<VisionConfig, ConfigError> {
    let hidden_size = v.positive_u32("hidden_size")?;
    let num_attention_heads = v.positive_u32("num_attention_heads")?;
    if hidden_size % num_attention_heads != 0 {
        return Err(v.invalid(
            "hidden_size",
            hidden_size,
            format!("not divisible by num_attention_heads ({num_attention_heads})"),
        ));
    }
    let patch_size = v.positive_u32("patch_size")?;
    let image_size = v.positive_u32("image_size")?;
    if image_size % patch_size != 0 {
        return Err(v.invalid("image_size", image_size, format!("not a multiple of patch_size ({patch_size})")));
    }
    Ok(VisionConfig {
        hidden_size,
        intermediate_size: v.positive_u32("intermediate_size")?,
        num_hidden_layers: v.positive_u32("num_hidden_layers")?,
        num_attention_heads,
        patch_size,
        image_size,
        num_channels: v.opt_u32("num_channels")?.unwrap_or(3),
        rms_norm_eps: v.positive_f64("rms_norm_eps")?,
        qkv_bias: v.opt_bool("qkv_bias")?.unwrap_or(false),
        use_bias: v.opt_bool("use_bias")?.unwrap_or(false),
    })
}

fn arch_from_name(name: &str) -> Option<LlmArch> {
    match name {
        "Qwen3ForCausalLM" | "qwen3" => Some(LlmArch::Qwen3),
        "Qwen3MoeForCausalLM" | "qwen3_moe" => Some(LlmArch::Qwen3Moe),
        _ => None,
    }
}

fn parse_llm_arch(l: &Obj<'_>) -> Result<LlmArch, ConfigError> {
    let from_archs = match l.get("architectures") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => match items.first() {
            Some(Value::String(name)) => Some(arch_from_name(name).ok_or_else(|| {
                l.unsupported("architectures", format!("{name:?}"), "only Qwen3ForCausalLM and Qwen3MoeForCausalLM")
            })?),
            Some(other) => return Err(l.wrong_type("architectures[0]", "string", other)),
            None => None,
        },
        Some(other) => return Err(l.wrong_type("architectures", "array of strings", other)),
    };
    let from_type = match l.opt_str("model_type")? {
        Some(mt) => Some(
            arch_from_name(mt)
                .ok_or_else(|| l.unsupported("model_type", format!("{mt:?}"), "only qwen3 and qwen3_moe"))?,
        ),
        None => None,
    };
    match (from_archs, from_type) {
        (Some(a), Some(t)) if a != t => Err(l.invalid(
            "model_type",
            format!("{:?}", l.opt_str("model_type")?.unwrap_or_default()),
            "disagrees with architectures",
        )),
        (Some(a), _) => Ok(a),
        (None, Some(t)) => Ok(t),
        (None, None) => Err(l.missing("model_type")),
    }
}

/// RoPE base from either spelling; anything but plain RoPE is rejected.
fn parse_rope_theta(l: &Obj<'_>) -> Result<f64, ConfigError> {
    match l.get("rope_scaling") {
        None | Some(Value::Null) => {}
        Some(v) => return Err(l.unsupported("rope_scaling", v, "only plain RoPE (rope_scaling null) is supported")),
    }
    let legacy = l.opt_f64("rope_theta")?;
    let params = match l.get("rope_parameters") {
        None | Some(Value::Null) => None,
        Some(_) => Some(l.child("rope_parameters")?),
    };
    let from_params = match &params {
        Some(p) => {
            if let Some(rt) = p.opt_str("rope_type")? {
                if rt != "default" {
                    return Err(p.unsupported("rope_type", format!("{rt:?}"), "only \"default\" RoPE is supported"));
                }
            }
            for key in p.map.keys() {
                if key != "rope_theta" && key != "rope_type" {
                    return Err(p.unsupported(key, &p.map[key], "RoPE scaling parameters are not supported"));
                }
            }
            p.opt_f64("rope_theta")?
        }
        None => None,
    };
    let theta = match (from_params, legacy) {
        (Some(a), Some(b)) if a != b => {
            return Err(l.invalid("rope_theta", b, format!("disagrees with rope_parameters.rope_theta ({a})")))
        }
        (Some(a), _) | (None, Some(a)) => a,
        (None, None) => return Err(l.missing("rope_theta")),
    };
    if !(theta.is_finite() && theta > 0.0) {
        return Err(l.invalid("rope_theta", theta, "must be positive"));
    }
    Ok(theta)
}

/// Sliding-window attention is not implemented; refuse any config that turns it on.
fn reject_sliding_window(l: &Obj<'_>) -> Result<(), ConfigError> {
    if l.opt_bool("use_sliding_window")? == Some(true) {
        return Err(l.unsupported("use_sliding_window", true, "sliding-window attention is not supported"));
    }
    if let Some(Value::Array(types)) = l.get("layer_types") {
        if let Some(t) = types.iter().find(|t| t.as_str() != Some("full_attention")) {
            return Err(l.unsupported("layer_types", t, "only full_attention layers are supported"));
        }
    }
    Ok(())
}

fn parse_special_ids(l: &Obj<'_>) -> Result<SpecialTokenIds, ConfigError> {
    Ok(SpecialTokenIds {
        bos: l.opt_token_ids("bos_token_id")?,
        eos: l.opt_token_ids("eos_token_id")?,
        unk: l.opt_token_ids("unk_token_id")?,
        sep: l.opt_token_ids("sep_token_id")?,
        pad: l.opt_token_ids("pad_token_id")?,
        cls: l.opt_token_ids("cls_token_id")?,
        mask: l.opt_token_ids("mask_token_id")?,
    })
}

fn parse_moe(l: &Obj<'_>) -> Result<MoeConfig, ConfigError> {
    // 5.x renames num_experts to num_local_experts; take whichever is there.
    let num_experts = match l.opt_u32("num_local_experts")? {
        Some(n) => n,
        None => match l.opt_u32("num_experts")? {
            Some(n) => n,
            None => return Err(l.missing("num_experts")),
        },
    };
    if num_experts == 0 {
        return Err(l.invalid("num_experts", 0, "must be positive"));
    }
    let num_experts_per_tok = l.positive_u32("num_experts_per_tok")?;
    if num_experts_per_tok > num_experts {
        return Err(l.invalid(
            "num_experts_per_tok",
            num_experts_per_tok,
            format!("exceeds num_experts ({num_experts})"),
        ));
    }
    if let Some(step) = l.opt_u32("decoder_sparse_step")? {
        if step != 1 {
            return Err(l.unsupported("decoder_sparse_step", step, "only 1 (every layer sparse) is supported"));
        }
    }
    match l.get("mlp_only_layers") {
        None | Some(Value::Null) => {}
        Some(Value::Array(a)) if a.is_empty() => {}
        Some(Value::Array(a)) => {
            return Err(l.unsupported(
                "mlp_only_layers",
                Value::Array(a.clone()),
                "dense layers inside a MoE model are not supported",
            ))
        }
        Some(other) => return Err(l.wrong_type("mlp_only_layers", "array", other)),
    }
    if let Some(n) = l.opt_u32("shared_expert_intermediate_size")? {
        if n != 0 {
            return Err(l.unsupported("shared_expert_intermediate_size", n, "shared experts are not supported"));
        }
    }
    Ok(MoeConfig {
        num_experts,
        num_experts_per_tok,
        moe_intermediate_size: l.positive_u32("moe_intermediate_size")?,
        norm_topk_prob: l.opt_bool("norm_topk_prob")?.unwrap_or(false),
    })
}

fn parse_llm(l: &Obj<'_>) -> Result<LlmConfig, ConfigError> {
    let arch = parse_llm_arch(l)?;
    reject_sliding_window(l)?;
    if l.opt_bool("attention_bias")? == Some(true) {
        return Err(l.unsupported("attention_bias", true, "Qwen3 attention has no bias"));
    }
    if let Some(act) = l.opt_str("hidden_act")? {
        if act != "silu" {
            return Err(l.unsupported("hidden_act", format!("{act:?}"), "only silu is supported"));
        }
    }
    let hidden_size = l.positive_u32("hidden_size")?;
    let num_attention_heads = l.positive_u32("num_attention_heads")?;
    let num_key_value_heads = l.opt_u32("num_key_value_heads")?.unwrap_or(num_attention_heads);
    if num_key_value_heads == 0 || num_attention_heads % num_key_value_heads != 0 {
        return Err(l.invalid(
            "num_key_value_heads",
            num_key_value_heads,
            format!("must divide num_attention_heads ({num_attention_heads})"),
        ));
    }
    let head_dim = match l.opt_u32("head_dim")? {
        Some(d) => d,
        None => {
            if hidden_size % num_attention_heads != 0 {
                return Err(l.missing("head_dim"));
            }
            hidden_size / num_attention_heads
        }
    };
    if head_dim == 0 || head_dim % 2 != 0 {
        return Err(l.invalid("head_dim", head_dim, "RoPE needs a positive even head_dim"));
    }
    let moe = match arch {
        LlmArch::Qwen3 => None,
        LlmArch::Qwen3Moe => Some(parse_moe(l)?),
    };
    Ok(LlmConfig {
        arch,
        hidden_size,
        intermediate_size: l.positive_u32("intermediate_size")?,
        num_hidden_layers: l.positive_u32("num_hidden_layers")?,
        num_attention_heads,
        num_key_value_heads,
        head_dim,
        rms_norm_eps: l.positive_f64("rms_norm_eps")?,
        rope_theta: parse_rope_theta(l)?,
        max_position_embeddings: l.positive_u32("max_position_embeddings")?,
        tie_word_embeddings: l.opt_bool("tie_word_embeddings")?.unwrap_or(false),
        vocab_size: l.positive_u32("vocab_size")?,
        special_token_ids: parse_special_ids(l)?,
        moe,
    })
}

/// A JSON object plus where it sits (`file`, dotted `prefix`), for error messages.
pub(crate) struct Obj<'a> {
    pub(crate) file: &'a str,
    pub(crate) prefix: String,
    pub(crate) map: &'a Map<String, Value>,
}

/// Short JSON kind name for "found ..." in errors.
pub(crate) fn kind(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("bool {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) => format!("string {s:?}"),
        Value::Array(_) => "array".into(),
        Value::Object(_) => "object".into(),
    }
}

impl<'a> Obj<'a> {
    pub(crate) fn root(file: &'a str, v: &'a Value) -> Result<Self, ConfigError> {
        match v {
            Value::Object(map) => Ok(Obj { file, prefix: String::new(), map }),
            other => Err(ConfigError::WrongType {
                file: file.to_string(),
                key: "(top level)".into(),
                expected: "object",
                found: kind(other),
            }),
        }
    }

    pub(crate) fn key(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.prefix)
        }
    }

    pub(crate) fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key)
    }

    pub(crate) fn missing(&self, key: &str) -> ConfigError {
        ConfigError::Missing { file: self.file.to_string(), key: self.key(key) }
    }

    pub(crate) fn wrong_type(&self, key: &str, expected: &'static str, found: &Value) -> ConfigError {
        ConfigError::WrongType { file: self.file.to_string(), key: self.key(key), expected, found: kind(found) }
    }

    pub(crate) fn invalid(&self, key: &str, value: impl fmt::Display, reason: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.to_string(),
            key: self.key(key),
            value: value.to_string(),
            reason: reason.into(),
        }
    }

    pub(crate) fn unsupported(&self, key: &str, value: impl fmt::Display, reason: impl Into<String>) -> ConfigError {
        ConfigError::Unsupported {
            file: self.file.to_string(),
            key: self.key(key),
            value: value.to_string(),
            reason: reason.into(),
        }
    }

    /// A nested object; missing or null is an error naming the key.
    pub(crate) fn child(&self, key: &str) -> Result<Obj<'a>, ConfigError> {
        match self.get(key) {
            None | Some(Value::Null) => Err(self.missing(key)),
            Some(Value::Object(map)) => Ok(Obj { file: self.file, prefix: self.key(key), map }),
            Some(other) => Err(self.wrong_type(key, "object", other)),
        }
    }

    /// Present and not null.
    fn present(&self, key: &str) -> Option<&'a Value> {
        self.get(key).filter(|v| !v.is_null())
    }

    pub(crate) fn opt_u64(&self, key: &str) -> Result<Option<u64>, ConfigError> {
        match self.present(key) {
            None => Ok(None),
            Some(v) => match v.as_u64() {
                Some(n) => Ok(Some(n)),
                // Some writers emit 448.0 for integers; accept exact integral floats.
                None => match v.as_f64() {
                    Some(f) if f >= 0.0 && f.fract() == 0.0 && f <= u64::MAX as f64 => Ok(Some(f as u64)),
                    _ => Err(self.wrong_type(key, "unsigned integer", v)),
                },
            },
        }
    }

    pub(crate) fn opt_u32(&self, key: &str) -> Result<Option<u32>, ConfigError> {
        match self.opt_u64(key)? {
            None => Ok(None),
            Some(n) => u32::try_from(n).map(Some).map_err(|_| self.invalid(key, n, "does not fit in u32")),
        }
    }

    pub(crate) fn u32(&self, key: &str) -> Result<u32, ConfigError> {
        self.opt_u32(key)?.ok_or_else(|| self.missing(key))
    }

    pub(crate) fn positive_u32(&self, key: &str) -> Result<u32, ConfigError> {
        let n = self.u32(key)?;
        if n == 0 {
            return Err(self.invalid(key, n, "must be positive"));
        }
        Ok(n)
    }

    pub(crate) fn i64(&self, key: &str) -> Result<i64, ConfigError> {
        match self.present(key) {
            None => Err(self.missing(key)),
            Some(v) => v.as_i64().ok_or_else(|| self.wrong_type(key, "integer", v)),
        }
    }

    pub(crate) fn opt_f64(&self, key: &str) -> Result<Option<f64>, ConfigError> {
        match self.present(key) {
            None => Ok(None),
            Some(v) => v.as_f64().map(Some).ok_or_else(|| self.wrong_type(key, "number", v)),
        }
    }

    pub(crate) fn f64(&self, key: &str) -> Result<f64, ConfigError> {
        self.opt_f64(key)?.ok_or_else(|| self.missing(key))
    }

    pub(crate) fn positive_f64(&self, key: &str) -> Result<f64, ConfigError> {
        let x = self.f64(key)?;
        if !(x.is_finite() && x > 0.0) {
            return Err(self.invalid(key, x, "must be positive"));
        }
        Ok(x)
    }

    pub(crate) fn opt_bool(&self, key: &str) -> Result<Option<bool>, ConfigError> {
        match self.present(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(self.wrong_type(key, "bool", v)),
        }
    }

    pub(crate) fn bool(&self, key: &str) -> Result<bool, ConfigError> {
        self.opt_bool(key)?.ok_or_else(|| self.missing(key))
    }

    pub(crate) fn opt_str(&self, key: &str) -> Result<Option<&'a str>, ConfigError> {
        match self.present(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(self.wrong_type(key, "string", v)),
        }
    }

    pub(crate) fn str(&self, key: &str) -> Result<&'a str, ConfigError> {
        self.opt_str(key)?.ok_or_else(|| self.missing(key))
    }

    /// An id that may be an integer or a list of integers.
    fn opt_token_ids(&self, key: &str) -> Result<Option<TokenIds>, ConfigError> {
        let id = |v: &Value| -> Result<u32, ConfigError> {
            v.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| self.wrong_type(key, "token id (u32) or list of ids", v))
        };
        match self.present(key) {
            None => Ok(None),
            Some(Value::Array(items)) => Ok(Some(TokenIds::Many(items.iter().map(id).collect::<Result<Vec<_>, _>>()?))),
            Some(v) => Ok(Some(TokenIds::One(id(v)?))),
        }
    }
}
