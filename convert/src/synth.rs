//! Synthetic full-size SAIL-VL2 checkpoints: the real tensor names, shapes and config files with
//! deterministic random weights, for measuring the converter (time, peak memory, file sizes) at real scale
//! without downloading anything.
//!
//! Two outputs:
//! * a Hugging Face folder like the released repos ([`write_safetensors`]): `config.json`,
//!   `preprocessor_config.json`, sharded BF16 `model-0000K-of-0000N.safetensors` + index, and the tokenizer
//!   files copied from another folder;
//! * the GGUF pair directly ([`write_gguf`]), through the converter's own plan and streaming writer, for
//!   models whose BF16 checkpoint would not fit on disk (the 30B-A3B MoE is 61 GB).
//!
//! Every value is a pure function of (seed, tensor name, element index), so any row range can be produced on
//! demand, in any chunking, and both outputs hold the same numbers: converting the safetensors folder gives
//! byte-identical GGUF files to writing them directly. Values are BF16-rounded: uniform in ±0.035 for
//! matrices (std ≈ 0.02, like `initializer_range`), 1 ± 0.05 for norm weights, ±0.01 for biases.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use quantize::{SourceError, TensorSource};
use rayon::prelude::*;
use runtime::gguf::GgufWriter;
use runtime::GgmlType;
use serde_json::{json, Map, Value};

use crate::convert::{build_plan, ConvertOptions, FileSummary, ModelDescription};
use crate::hf::checkpoint::INDEX_FILE;
use crate::hf::config::SailVlConfig;
use crate::hf::preprocess::{PreprocessConfig, PREPROCESSOR_CONFIG};
use crate::hf::tokenizer::TokenizerMetadata;
use crate::mapping::{self, EMBED_TOKENS, LM_HEAD};
use crate::ConvertError;

/// Tensor-data bytes of the released SAIL-VL2-2B (`metadata.total_size`, spec §6).
pub const SAILVL2_2B_TOTAL_SIZE: u64 = 5_461_130_240;

/// Files copied from the tokenizer folder (the first two are required).
pub const TOKENIZER_FILES: [&str; 8] = [
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "generation_config.json",
];

/// HF's default `max_shard_size` ("5GB", decimal).
pub const DEFAULT_SHARD_BYTES: u64 = 5_000_000_000;

#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Convert(#[from] ConvertError),
    #[error(transparent)]
    Write(#[from] quantize::Error),
    #[error("{0}")]
    Invalid(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SynthError + '_ {
    move |source| SynthError::Io { path: path.to_path_buf(), source }
}

/// The released (or expected) model sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// SAIL-VL2-2B: SAIL-ViT-Huge + Qwen3-1.7B, tied embeddings with `lm_head` stored bit-identical.
    B2,
    /// SAIL-VL2-8B: SAIL-ViT-Huge + Qwen3-8B (spec §1.3), separate `lm_head`.
    B8,
    /// SAIL-VL2-30B-A3B: SAIL-ViT-Huge + Qwen3-30B-A3B MoE (spec §7.2), separate `lm_head`.
    A3B,
    /// The dims of the `sailvl2-tiny` test fixture (for tests).
    Tiny,
    /// The dims of the `sailvl2-moe-tiny` test fixture (for tests).
    TinyMoe,
}

impl Preset {
    pub const ALL: [Preset; 5] = [Preset::B2, Preset::B8, Preset::A3B, Preset::Tiny, Preset::TinyMoe];

    pub fn name(self) -> &'static str {
        match self {
            Preset::B2 => "2b",
            Preset::B8 => "8b",
            Preset::A3B => "a3b",
            Preset::Tiny => "tiny",
            Preset::TinyMoe => "tiny-moe",
        }
    }
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Preset {
    type Err = String;
    fn from_str(s: &str) -> Result<Preset, String> {
        let lower = s.to_ascii_lowercase();
        Preset::ALL.into_iter().find(|p| p.name() == lower).ok_or_else(|| {
            let names: Vec<&str> = Preset::ALL.iter().map(|p| p.name()).collect();
            format!("unknown preset '{s}' (expected one of: {})", names.join(", "))
        })
    }
}

/// How `language_model.lm_head.weight` is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LmHead {
    /// Stored, bit-identical to `embed_tokens` (the released 2B: tied, yet saved twice).
    SameAsEmbed,
    /// Stored with its own values (untied models).
    Distinct,
}

/// Mixture-of-experts dims of the LLM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MoeDims {
    pub num_experts: usize,
    pub num_experts_per_tok: usize,
    pub moe_intermediate_size: usize,
    pub norm_topk_prob: bool,
}

/// Everything that decides the generated model.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthSpec {
    pub preset: Preset,
    pub seed: u64,
    // Vision tower (SAIL-ViT).
    pub vision_hidden: usize,
    pub vision_intermediate: usize,
    pub vision_layers: usize,
    pub vision_heads: usize,
    pub patch_size: usize,
    pub image_size: usize,
    // Language model (Qwen3 / Qwen3-MoE).
    pub hidden: usize,
    /// Dense MLP width (kept in config.json for MoE models, where it is unused).
    pub intermediate: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub vocab: usize,
    pub tie_word_embeddings: bool,
    pub lm_head: LmHead,
    pub moe: Option<MoeDims>,
    /// Largest shard of the safetensors output (ignored by presets with a fixed layout, i.e. 2B).
    pub shard_bytes: u64,
}

impl SynthSpec {
    pub fn preset(preset: Preset, seed: u64) -> SynthSpec {
        let vit_huge = |s: SynthSpec| SynthSpec {
            vision_hidden: 1536,
            vision_intermediate: 4096,
            vision_layers: 24,
            vision_heads: 12,
            ..s
        };
        let base = SynthSpec {
            preset,
            seed,
            vision_hidden: 64,
            vision_intermediate: 128,
            vision_layers: 2,
            vision_heads: 4,
            patch_size: 14,
            image_size: 448,
            hidden: 32,
            intermediate: 64,
            layers: 3,
            heads: 4,
            kv_heads: 2,
            head_dim: 16,
            vocab: 151936,
            tie_word_embeddings: true,
            lm_head: LmHead::SameAsEmbed,
            moe: None,
            shard_bytes: DEFAULT_SHARD_BYTES,
        };
        match preset {
            Preset::Tiny => base,
            Preset::TinyMoe => SynthSpec {
                moe: Some(MoeDims {
                    num_experts: 8,
                    num_experts_per_tok: 2,
                    moe_intermediate_size: 32,
                    norm_topk_prob: true,
                }),
                ..base
            },
            Preset::B2 => vit_huge(SynthSpec {
                hidden: 2048,
                intermediate: 6144,
                layers: 28,
                heads: 16,
                kv_heads: 8,
                head_dim: 128,
                ..base
            }),
            Preset::B8 => vit_huge(SynthSpec {
                hidden: 4096,
                intermediate: 12288,
                layers: 36,
                heads: 32,
                kv_heads: 8,
                head_dim: 128,
                tie_word_embeddings: false,
                lm_head: LmHead::Distinct,
                ..base
            }),
            Preset::A3B => vit_huge(SynthSpec {
                hidden: 2048,
                intermediate: 6144,
                layers: 48,
                heads: 32,
                kv_heads: 4,
                head_dim: 128,
                tie_word_embeddings: false,
                lm_head: LmHead::Distinct,
                moe: Some(MoeDims {
                    num_experts: 128,
                    num_experts_per_tok: 8,
                    moe_intermediate_size: 768,
                    norm_topk_prob: true,
                }),
                ..base
            }),
        }
    }

    /// Whether the converter will find `lm_head` bit-identical to `embed_tokens` (so no `output.weight`).
    pub fn tied_output(&self) -> bool {
        self.lm_head == LmHead::SameAsEmbed
    }

    /// Width after the 2×2 pixel shuffle (input of `mlp1`).
    fn merged(&self) -> usize {
        self.vision_hidden * 4
    }

    /// Every tensor of the checkpoint, in the order the model registers them (vision, LLM, projector).
    pub fn tensors(&self) -> Vec<SynthTensor> {
        let mut out = Vec::new();
        let mut push = |name: String, shape: Vec<usize>, init: Init| {
            let key_name =
                if name == LM_HEAD && self.lm_head == LmHead::SameAsEmbed { EMBED_TOKENS } else { name.as_str() };
            let key = splitmix(self.seed ^ fnv1a(key_name.as_bytes()));
            out.push(SynthTensor { name, shape, init, key });
        };
        let (c, ff, p) = (self.vision_hidden, self.vision_intermediate, self.patch_size);
        let grid = self.image_size / p;
        let pre = "vision_model.preprocessor";
        push(format!("{pre}.patchifier.proj.weight"), vec![c, 3, p, p], Init::Weight);
        push(format!("{pre}.patchifier.proj.bias"), vec![c], Init::Bias);
        push(format!("{pre}.patchifier.norm.weight"), vec![c], Init::Norm);
        push(format!("{pre}.pos_embed"), vec![1, grid * grid, c], Init::Weight);
        for i in 0..self.vision_layers {
            let b = |s: &str| format!("vision_model.trunk.blocks.{i}.{s}");
            push(b("norm_1.weight"), vec![c], Init::Norm);
            push(b("attn.qkv.weight"), vec![3 * c, c], Init::Weight);
            push(b("attn.proj.weight"), vec![c, c], Init::Weight);
            push(b("norm_2.weight"), vec![c], Init::Norm);
            push(b("mlp.fc1.weight"), vec![ff, c], Init::Weight);
            push(b("mlp.fc2.weight"), vec![c, ff], Init::Weight);
            push(b("mlp.fc3.weight"), vec![ff, c], Init::Weight);
        }
        push("vision_model.trunk.post_trunk_norm.weight".into(), vec![c], Init::Norm);

        let (h, hd, v) = (self.hidden, self.head_dim, self.vocab);
        push(EMBED_TOKENS.into(), vec![v, h], Init::Weight);
        for i in 0..self.layers {
            let l = |s: &str| format!("language_model.model.layers.{i}.{s}");
            push(l("self_attn.q_proj.weight"), vec![self.heads * hd, h], Init::Weight);
            push(l("self_attn.k_proj.weight"), vec![self.kv_heads * hd, h], Init::Weight);
            push(l("self_attn.v_proj.weight"), vec![self.kv_heads * hd, h], Init::Weight);
            push(l("self_attn.o_proj.weight"), vec![h, self.heads * hd], Init::Weight);
            push(l("self_attn.q_norm.weight"), vec![hd], Init::Norm);
            push(l("self_attn.k_norm.weight"), vec![hd], Init::Norm);
            match &self.moe {
                Some(m) => {
                    push(l("mlp.gate.weight"), vec![m.num_experts, h], Init::Weight);
                    let f = m.moe_intermediate_size;
                    for e in 0..m.num_experts {
                        push(l(&format!("mlp.experts.{e}.gate_proj.weight")), vec![f, h], Init::Weight);
                        push(l(&format!("mlp.experts.{e}.up_proj.weight")), vec![f, h], Init::Weight);
                        push(l(&format!("mlp.experts.{e}.down_proj.weight")), vec![h, f], Init::Weight);
                    }
                }
                None => {
                    let f = self.intermediate;
                    push(l("mlp.gate_proj.weight"), vec![f, h], Init::Weight);
                    push(l("mlp.up_proj.weight"), vec![f, h], Init::Weight);
                    push(l("mlp.down_proj.weight"), vec![h, f], Init::Weight);
                }
            }
            push(l("input_layernorm.weight"), vec![h], Init::Norm);
            push(l("post_attention_layernorm.weight"), vec![h], Init::Norm);
        }
        push("language_model.model.norm.weight".into(), vec![h], Init::Norm);
        push(LM_HEAD.into(), vec![v, h], Init::Weight);

        let m = self.merged();
        push("mlp1.0.weight".into(), vec![m], Init::Norm);
        push("mlp1.0.bias".into(), vec![m], Init::Bias);
        push("mlp1.1.weight".into(), vec![h, m], Init::Weight);
        push("mlp1.1.bias".into(), vec![h], Init::Bias);
        push("mlp1.3.weight".into(), vec![h, h], Init::Weight);
        push("mlp1.3.bias".into(), vec![h], Init::Bias);
        out
    }

    /// Tensors grouped into shard files, each group sorted by name (the order of header and data).
    /// 2B-style models (a tied `lm_head` stored anyway) use the released layout: `lm_head` and the projector
    /// in shard 2, everything else in shard 1; others fill shards greedily up to `shard_bytes`.
    pub fn shards(&self) -> Vec<Vec<SynthTensor>> {
        let tensors = self.tensors();
        let mut shards: Vec<Vec<SynthTensor>> = Vec::new();
        if self.lm_head == LmHead::SameAsEmbed {
            let (tail, head): (Vec<_>, Vec<_>) =
                tensors.into_iter().partition(|t| t.name == LM_HEAD || t.name.starts_with("mlp1."));
            shards.push(head);
            shards.push(tail);
        } else {
            let mut size = 0;
            for t in tensors {
                if shards.is_empty() || (size > 0 && size + t.bytes() > self.shard_bytes) {
                    shards.push(Vec::new());
                    size = 0;
                }
                size += t.bytes();
                shards.last_mut().expect("pushed above").push(t);
            }
        }
        for s in &mut shards {
            s.sort_by(|a, b| a.name.cmp(&b.name));
        }
        shards
    }

    /// `config.json` text in the released repos' style (transformers 4.x spelling, sorted keys, indent 2).
    pub fn config_json(&self) -> String {
        let mut llm = pretrained_boilerplate();
        let (arch, model_type) =
            if self.moe.is_some() { ("Qwen3MoeForCausalLM", "qwen3_moe") } else { ("Qwen3ForCausalLM", "qwen3") };
        let name = match self.preset {
            Preset::B2 => "Qwen/Qwen3-1.7B",
            Preset::B8 => "Qwen/Qwen3-8B",
            Preset::A3B => "Qwen/Qwen3-30B-A3B",
            Preset::Tiny | Preset::TinyMoe => "sailvl2-tiny",
        };
        extend(
            &mut llm,
            json!({
                "_name_or_path": format!("{name} (synthetic random weights, sail-edge synth --preset {})", self.preset),
                "architectures": [arch],
                "attn_implementation": "sdpa",
                "attention_bias": false,
                "attention_dropout": 0.0,
                "bos_token_id": 151643,
                "eos_token_id": 151645,
                "head_dim": self.head_dim,
                "hidden_act": "silu",
                "hidden_size": self.hidden,
                "initializer_range": 0.02,
                "intermediate_size": self.intermediate,
                "max_position_embeddings": 40960,
                "max_window_layers": self.layers,
                "model_type": model_type,
                "num_attention_heads": self.heads,
                "num_hidden_layers": self.layers,
                "num_key_value_heads": self.kv_heads,
                "pad_token_id": 151643,
                "rms_norm_eps": 1e-06,
                "rope_scaling": null,
                "rope_theta": 1000000,
                "sliding_window": null,
                "tie_word_embeddings": self.tie_word_embeddings,
                "torch_dtype": "bfloat16",
                "use_cache": true,
                "use_sliding_window": false,
                "vocab_size": self.vocab,
            }),
        );
        if let Some(m) = &self.moe {
            extend(
                &mut llm,
                json!({
                    "decoder_sparse_step": 1,
                    "mlp_only_layers": [],
                    "moe_intermediate_size": m.moe_intermediate_size,
                    "norm_topk_prob": m.norm_topk_prob,
                    "num_experts": m.num_experts,
                    "num_experts_per_tok": m.num_experts_per_tok,
                    "output_router_logits": false,
                    "router_aux_loss_coef": 0.001,
                }),
            );
        }
        let mut vision = pretrained_boilerplate();
        extend(
            &mut vision,
            json!({
                "_name_or_path": "",
                "architectures": ["SAILViTModel"],
                "attention_dropout": 0.0,
                "auto_map": {
                    "AutoConfig": "configuration_sailvit.SAILViTConfig",
                    "AutoModel": "modeling_sailvit.SAILViTModel"
                },
                "hidden_size": self.vision_hidden,
                "image_size": self.image_size,
                "intermediate_size": self.vision_intermediate,
                "model_type": "sailvit",
                "num_attention_heads": self.vision_heads,
                "num_channels": 3,
                "num_hidden_layers": self.vision_layers,
                "patch_size": self.patch_size,
                "projection_dropout": 0.0,
                "qkv_bias": false,
                "rms_norm_eps": 1e-05,
                "torch_dtype": "bfloat16",
                "use_bias": false,
            }),
        );
        let root = json!({
            "_commit_hash": null,
            "architectures": ["SAILVLModel"],
            "auto_map": {
                "AutoConfig": "configuration_sailvl.SAILVLConfig",
                "AutoModel": "modeling_sailvl.SAILVLModel",
                "AutoModelForCausalLM": "modeling_sailvl.SAILVLModel"
            },
            "downsample_ratio": 0.5,
            "dynamic_image_size": true,
            "force_image_size": self.image_size,
            "llm_config": Value::Object(llm),
            "max_dynamic_patch": 12,
            "min_dynamic_patch": 1,
            "model_type": "sailvl",
            "pad2square": false,
            "ps_version": "v2",
            "select_layer": -1,
            "template": "univl-chat",
            "torch_dtype": "bfloat16",
            "transformers_version": null,
            "use_backbone_lora": 0,
            "use_llm_lora": 0,
            "use_thumbnail": true,
            "vision_config": Value::Object(vision),
        });
        serde_json::to_string_pretty(&root).expect("JSON values serialize") + "\n"
    }

    /// `preprocessor_config.json` text, as in the released 2B.
    pub fn preprocessor_json(&self) -> String {
        let v = json!({
            "auto_map": {
                "AutoImageProcessor": "image_processing_sailvl.SAILVLImageProcessor",
                "AutoProcessor": "processing_sailvl.SAILVLProcessor"
            },
            "max_dynamic_patch": 10,
            "patch_size": self.patch_size,
            "image_size": self.image_size,
            "use_msac": false,
            "image_mean": [0.485, 0.456, 0.406],
            "image_std": [0.229, 0.224, 0.225],
            "pad_input": true
        });
        serde_json::to_string_pretty(&v).expect("JSON values serialize") + "\n"
    }
}

/// The `PretrainedConfig` keys transformers 4.x writes into every sub-config.
fn pretrained_boilerplate() -> Map<String, Value> {
    let v = json!({
        "add_cross_attention": false,
        "bad_words_ids": null,
        "begin_suppress_tokens": null,
        "bos_token_id": null,
        "chunk_size_feed_forward": 0,
        "cross_attention_hidden_size": null,
        "decoder_start_token_id": null,
        "diversity_penalty": 0.0,
        "do_sample": false,
        "early_stopping": false,
        "encoder_no_repeat_ngram_size": 0,
        "eos_token_id": null,
        "exponential_decay_length_penalty": null,
        "finetuning_task": null,
        "forced_bos_token_id": null,
        "forced_eos_token_id": null,
        "id2label": {"0": "LABEL_0", "1": "LABEL_1"},
        "is_decoder": false,
        "is_encoder_decoder": false,
        "label2id": {"LABEL_0": 0, "LABEL_1": 1},
        "length_penalty": 1.0,
    });
    let mut m = match v {
        Value::Object(m) => m,
        _ => unreachable!("json! object literal"),
    };
    extend(
        &mut m,
        json!({
        "max_length": 20,
        "min_length": 0,
        "no_repeat_ngram_size": 0,
        "num_beam_groups": 1,
        "num_beams": 1,
        "num_return_sequences": 1,
        "output_attentions": false,
        "output_hidden_states": false,
        "output_scores": false,
        "pad_token_id": null,
        "prefix": null,
        "problem_type": null,
        "pruned_heads": {},
        "remove_invalid_values": false,
        "repetition_penalty": 1.0,
        "return_dict": true,
        "return_dict_in_generate": false,
        "sep_token_id": null,
        "suppress_tokens": null,
        "task_specific_params": null,
        "temperature": 1.0,
        "tf_legacy_loss": false,
        "tie_encoder_decoder": false,
        "tie_word_embeddings": true,
        "tokenizer_class": null,
        "top_k": 50,
        "top_p": 1.0,
        "torchscript": false,
        "transformers_version": "4.51.0",
        "typical_p": 1.0,
        "use_bfloat16": false,
        }),
    );
    m
}

fn extend(map: &mut Map<String, Value>, v: Value) {
    if let Value::Object(m) = v {
        map.extend(m);
    }
}

/// How a tensor's values are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Init {
    /// Matrices, embeddings, convolution, position embeddings: uniform in ±0.035.
    Weight,
    /// RMSNorm / LayerNorm weights: 1 ± 0.05.
    Norm,
    /// Biases: uniform in ±0.01.
    Bias,
}

/// One generated tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub init: Init,
    /// Stream key: seed ⊕ hash(name) (of `embed_tokens` for a tied `lm_head`).
    key: u64,
}

/// Elements per parallel task when generating.
const PAR_CHUNK: usize = 1 << 16;

impl SynthTensor {
    pub fn n_elements(&self) -> u64 {
        self.shape.iter().map(|&d| d as u64).product()
    }

    /// BF16 bytes.
    pub fn bytes(&self) -> u64 {
        self.n_elements() * 2
    }

    /// Length of the innermost dimension (a "row" for the GGUF writer).
    pub fn row_len(&self) -> usize {
        *self.shape.last().unwrap_or(&1)
    }

    /// BF16 bits of elements `[start, start + out.len())`.
    fn fill_bits(&self, start: u64, out: &mut [u16]) {
        let (offset, scale) = match self.init {
            Init::Weight => (0.0f32, 0.07f32),
            Init::Norm => (1.0, 0.1),
            Init::Bias => (0.0, 0.02),
        };
        let scale = scale / 65536.0;
        let mut group = u64::MAX;
        let mut h = 0u64;
        for (k, o) in out.iter_mut().enumerate() {
            let i = start + k as u64;
            if i >> 2 != group {
                group = i >> 2;
                h = mix64(self.key.wrapping_add(group.wrapping_mul(GAMMA)));
            }
            let lane = (h >> ((i & 3) * 16)) as u16;
            let x = offset + (lane as f32 - 32768.0) * scale;
            *o = bf16_bits(x);
        }
    }

    /// Elements `[start, start + out.len())` as little-endian BF16 bytes (`out.len()` even), in parallel.
    pub fn fill_bf16_bytes(&self, start: u64, out: &mut [u8]) {
        out.par_chunks_mut(PAR_CHUNK * 2).enumerate().for_each(|(c, dst)| {
            let mut bits = [0u16; 4096];
            let base = start + (c * PAR_CHUNK) as u64;
            for (j, d) in dst.chunks_mut(bits.len() * 2).enumerate() {
                let n = d.len() / 2;
                self.fill_bits(base + (j * bits.len()) as u64, &mut bits[..n]);
                for (b, v) in d.chunks_exact_mut(2).zip(&bits[..n]) {
                    b.copy_from_slice(&v.to_le_bytes());
                }
            }
        });
    }

    /// Elements `[start, start + out.len())` widened to f32 (exactly what a reader of the BF16 file sees).
    pub fn fill_f32(&self, start: u64, out: &mut [f32]) {
        out.par_chunks_mut(PAR_CHUNK).enumerate().for_each(|(c, dst)| {
            let mut bits = [0u16; 4096];
            let base = start + (c * PAR_CHUNK) as u64;
            for (j, d) in dst.chunks_mut(bits.len()).enumerate() {
                self.fill_bits(base + (j * bits.len()) as u64, &mut bits[..d.len()]);
                for (x, v) in d.iter_mut().zip(&bits) {
                    *x = f32::from_bits(u32::from(*v) << 16);
                }
            }
        });
    }
}

const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's output function.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn splitmix(x: u64) -> u64 {
    mix64(x.wrapping_add(GAMMA))
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3))
}

/// f32 → BF16 bits, round to nearest even (finite inputs).
fn bf16_bits(x: f32) -> u16 {
    let b = x.to_bits();
    ((b + 0x7FFF + ((b >> 16) & 1)) >> 16) as u16
}

/// Shard file name in the Hugging Face convention.
pub fn shard_name(k: usize, n: usize) -> String {
    format!("model-{k:05}-of-{n:05}.safetensors")
}

/// What [`write_safetensors`] wrote.
#[derive(Debug, Clone)]
pub struct SafetensorsSummary {
    pub dir: PathBuf,
    pub shards: Vec<(String, usize, u64)>,
    pub tensors: usize,
    pub params: u64,
    /// `metadata.total_size`: tensor-data bytes over all shards.
    pub total_size: u64,
    /// Bytes on disk of the shard files (data + headers).
    pub file_bytes: u64,
    pub elapsed: Duration,
}

/// Write `path` through a temporary `.<name>.partial` file renamed into place when complete.
fn write_atomically(
    path: &Path,
    f: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
) -> Result<(), SynthError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.partial"));
    let result = (|| {
        let mut w = BufWriter::with_capacity(1 << 20, File::create(&tmp)?);
        f(&mut w)?;
        w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io_err(path))
}

/// The JSON header of a shard holding `tensors` (BF16, packed in this order), padded to 8 bytes.
fn safetensors_header(tensors: &[SynthTensor]) -> Vec<u8> {
    let mut map = Map::new();
    map.insert("__metadata__".into(), json!({"format": "pt"}));
    let mut offset = 0u64;
    for t in tensors {
        let end = offset + t.bytes();
        map.insert(t.name.clone(), json!({"dtype": "BF16", "shape": t.shape, "data_offsets": [offset, end]}));
        offset = end;
    }
    let mut header = serde_json::to_vec(&Value::Object(map)).expect("JSON values serialize");
    while !header.len().is_multiple_of(8) {
        header.push(b' ');
    }
    header
}

/// Elements generated and written per step: 16 MiB of BF16.
const WRITE_CHUNK: u64 = 8 << 20;

fn write_shard(path: &Path, tensors: &[SynthTensor], progress: &ProgressBar) -> Result<u64, SynthError> {
    let header = safetensors_header(tensors);
    let mut file_bytes = 0;
    write_atomically(path, |w| {
        w.write_all(&(header.len() as u64).to_le_bytes())?;
        w.write_all(&header)?;
        let mut buf = Vec::new();
        for t in tensors {
            let n = t.n_elements();
            let mut done = 0;
            while done < n {
                let m = WRITE_CHUNK.min(n - done);
                buf.resize(m as usize * 2, 0);
                t.fill_bf16_bytes(done, &mut buf);
                w.write_all(&buf)?;
                progress.inc(m * 2);
                done += m;
            }
        }
        file_bytes = 8 + header.len() as u64 + tensors.iter().map(SynthTensor::bytes).sum::<u64>();
        Ok(())
    })?;
    Ok(file_bytes)
}

/// Copy the tokenizer and chat files; `tokenizer.json` and `tokenizer_config.json` must exist.
pub fn copy_tokenizer_files(from: &Path, to: &Path) -> Result<Vec<&'static str>, SynthError> {
    let mut copied = Vec::new();
    for (i, name) in TOKENIZER_FILES.iter().enumerate() {
        let src = from.join(name);
        if !src.is_file() {
            if i < 2 {
                return Err(SynthError::Invalid(format!("{}: missing (needed for the tokenizer)", src.display())));
            }
            continue;
        }
        // Read + write rather than fs::copy: the copy must not inherit a read-only mode from the source.
        let bytes = std::fs::read(&src).map_err(io_err(&src))?;
        write_atomically(&to.join(name), |w| w.write_all(&bytes))?;
        copied.push(*name);
    }
    Ok(copied)
}

/// Write a Hugging Face checkpoint folder: config files, BF16 shards, index, tokenizer files. Stale
/// `model-*-of-*.safetensors` files from an earlier run with another shard count are removed.
pub fn write_safetensors(
    spec: &SynthSpec,
    dir: &Path,
    tokenizer_dir: &Path,
    progress: &ProgressBar,
) -> Result<SafetensorsSummary, SynthError> {
    let start = Instant::now();
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    // Check the config parses as the converter will read it before writing gigabytes.
    let config_text = spec.config_json();
    SailVlConfig::from_json_str(&config_text, "config.json (synthetic)").map_err(ConvertError::from)?;
    copy_tokenizer_files(tokenizer_dir, dir)?;
    write_atomically(&dir.join("config.json"), |w| w.write_all(config_text.as_bytes()))?;
    write_atomically(&dir.join(PREPROCESSOR_CONFIG), |w| w.write_all(spec.preprocessor_json().as_bytes()))?;

    let shards = spec.shards();
    let n = shards.len();
    let names: Vec<String> = (1..=n).map(|k| shard_name(k, n)).collect();
    remove_stale_shards(dir, &names)?;
    let _ = std::fs::remove_file(dir.join("model.safetensors"));

    let total_size: u64 = shards.iter().flatten().map(SynthTensor::bytes).sum();
    progress.set_length(total_size);
    let mut weight_map = BTreeMap::new();
    let mut summary_shards = Vec::new();
    let mut file_bytes = 0;
    for (tensors, name) in shards.iter().zip(&names) {
        let bytes = write_shard(&dir.join(name), tensors, progress)?;
        file_bytes += bytes;
        summary_shards.push((name.clone(), tensors.len(), bytes));
        for t in tensors {
            weight_map.insert(t.name.clone(), name.clone());
        }
    }
    let index = json!({"metadata": {"total_size": total_size}, "weight_map": weight_map});
    let index_text = serde_json::to_string_pretty(&index).expect("JSON values serialize") + "\n";
    write_atomically(&dir.join(INDEX_FILE), |w| w.write_all(index_text.as_bytes()))?;
    Ok(SafetensorsSummary {
        dir: dir.to_path_buf(),
        shards: summary_shards,
        tensors: shards.iter().map(Vec::len).sum(),
        params: shards.iter().flatten().map(SynthTensor::n_elements).sum(),
        total_size,
        file_bytes,
        elapsed: start.elapsed(),
    })
}

fn remove_stale_shards(dir: &Path, keep: &[String]) -> Result<(), SynthError> {
    let is_shard = |n: &str| {
        n.len() == "model-00001-of-00001.safetensors".len()
            && n.starts_with("model-")
            && n.ends_with(".safetensors")
            && &n[11..15] == "-of-"
            && n[6..11].bytes().chain(n[15..20].bytes()).all(|b| b.is_ascii_digit())
    };
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_shard(&name) && !keep.contains(&name) {
            std::fs::remove_file(entry.path()).map_err(io_err(&entry.path()))?;
        }
    }
    Ok(())
}

/// The generated tensors as a source for the converter's streaming writer: rows are made on demand.
pub struct SynthSource {
    tensors: HashMap<String, SynthTensor>,
}

impl SynthSource {
    pub fn new(spec: &SynthSpec) -> SynthSource {
        SynthSource { tensors: spec.tensors().into_iter().map(|t| (t.name.clone(), t)).collect() }
    }

    pub fn get(&self, name: &str) -> Option<&SynthTensor> {
        self.tensors.get(name)
    }

    fn tensor(&self, name: &str) -> Result<&SynthTensor, SourceError> {
        self.tensors.get(name).ok_or_else(|| format!("tensor '{name}' is not generated").into())
    }
}

impl TensorSource for SynthSource {
    fn stored_type(&self, name: &str) -> Result<Option<GgmlType>, SourceError> {
        self.tensor(name)?;
        Ok(None)
    }

    fn raw_rows(&self, name: &str, _row0: u64, _n: u64) -> Result<Cow<'_, [u8]>, SourceError> {
        Err(format!("tensor '{name}': a synthetic source has no stored bytes").into())
    }

    fn rows_f32(&self, name: &str, row0: u64, n: u64, out: &mut Vec<f32>) -> Result<(), SourceError> {
        let t = self.tensor(name)?;
        let row_len = t.row_len() as u64;
        if (row0 + n) * row_len > t.n_elements() {
            return Err(format!("rows {row0}..{} of {}", row0 + n, t.n_elements() / row_len.max(1)).into());
        }
        out.resize((n * row_len) as usize, 0.0);
        t.fill_f32(row0 * row_len, out);
        Ok(())
    }
}

/// What [`write_gguf`] wrote.
#[derive(Debug, Clone)]
pub struct GgufSummary {
    pub lm: FileSummary,
    pub mmproj: FileSummary,
    pub tied_output: bool,
    /// Parameters of the generated checkpoint (what the BF16 folder would hold).
    pub source_params: u64,
    pub elapsed: Duration,
}

/// Write the GGUF pair the converter would make from [`write_safetensors`]'s folder, without the folder:
/// the converter's plan, type recipe, metadata and streaming writer over a [`SynthSource`]. `general.name`
/// is `opts.name`, else the name of the folder `opts.lm_out` is in. The tokenizer comes from
/// `tokenizer_dir`.
pub fn write_gguf(
    spec: &SynthSpec,
    tokenizer_dir: &Path,
    opts: &ConvertOptions,
    progress: &ProgressBar,
) -> Result<GgufSummary, SynthError> {
    let start = Instant::now();
    let config =
        SailVlConfig::from_json_str(&spec.config_json(), "config.json (synthetic)").map_err(ConvertError::from)?;
    let preprocess =
        PreprocessConfig::from_json_str(&spec.preprocessor_json(), "preprocessor_config.json (synthetic)", &config)
            .map_err(ConvertError::from)?;
    let tokenizer = TokenizerMetadata::load(tokenizer_dir, &config).map_err(ConvertError::from)?;
    let out_dir = match opts.lm_out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = opts.name.clone().unwrap_or_else(|| {
        out_dir
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "model".into())
    });
    let desc = ModelDescription { config, preprocess, tokenizer, name };

    // Same checks as converting the folder: every planned source exists with its shape, and every generated
    // tensor is used.
    let source = SynthSource::new(spec);
    let lookup = |n: &str| source.get(n).map(|t| t.shape.clone());
    let plan = build_plan(&desc, opts, spec.tied_output(), Some(&lookup), &out_dir)?;
    let (lm, vision) = (mapping::lm_tensors(&desc.config), mapping::vision_tensors(&desc.config));
    let mut used: HashSet<&str> = HashSet::new();
    for t in lm.iter().chain(&vision) {
        used.extend(t.sources.iter().map(String::as_str));
    }
    used.insert(LM_HEAD);
    if let Some(unused) = source.tensors.keys().find(|n| !used.contains(n.as_str())) {
        return Err(SynthError::Invalid(format!("generated tensor '{unused}' is not mapped by the converter")));
    }

    let total: u64 = plan.lm_tensors.iter().chain(&plan.mmproj_tensors).map(|t| t.spec.n_elements()).sum();
    progress.set_length(total);
    let write = |path: &Path,
                 meta: &[(String, runtime::gguf::Value)],
                 tensors: &[quantize::PlannedTensor]|
     -> Result<FileSummary, SynthError> {
        let mut w = GgufWriter::create(path, meta, tensors.iter().map(|t| t.spec.clone()).collect())
            .map_err(quantize::Error::from)?;
        if let Some(c) = &opts.cancel {
            w = w.with_cancel_flag(c.clone());
        }
        quantize::write_tensors(&mut w, tensors, &source, progress)?;
        let pending = w.finish_pending().map_err(quantize::Error::from)?;
        let file_bytes = pending.bytes;
        pending.persist().map_err(quantize::Error::from)?;
        Ok(crate::convert::file_summary(path, tensors, file_bytes))
    };
    let lm = write(&opts.lm_out, &plan.lm_metadata, &plan.lm_tensors)?;
    let mmproj = write(&opts.mmproj_out, &plan.mmproj_metadata, &plan.mmproj_tensors)?;
    Ok(GgufSummary {
        lm,
        mmproj,
        tied_output: plan.tied_output,
        source_params: source.tensors.values().map(SynthTensor::n_elements).sum(),
        elapsed: start.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hf::checkpoint::Checkpoint;

    fn fixture_tokenizer() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/sailvl2-tiny")
    }

    #[test]
    fn the_2b_preset_matches_the_released_index() {
        let spec = SynthSpec::preset(Preset::B2, 0);
        let tensors = spec.tensors();
        assert_eq!(tensors.len(), 490);
        assert_eq!(tensors.iter().map(SynthTensor::bytes).sum::<u64>(), SAILVL2_2B_TOTAL_SIZE);
        assert_eq!(tensors.iter().map(SynthTensor::n_elements).sum::<u64>(), 2_730_565_120);
        let shards = spec.shards();
        assert_eq!(shards.len(), 2);
        assert!(shards[1].iter().any(|t| t.name == LM_HEAD));
        let cfg = SailVlConfig::from_json_str(&spec.config_json(), "config.json").unwrap();
        assert_eq!(cfg.llm.num_hidden_layers, 28);
        assert!(cfg.llm.tie_word_embeddings);
        assert_eq!(mapping::merged_width(&cfg), 6144);
    }

    #[test]
    fn other_presets_parse_and_shard_under_the_limit() {
        for p in [Preset::B8, Preset::A3B] {
            let spec = SynthSpec::preset(p, 0);
            let cfg = SailVlConfig::from_json_str(&spec.config_json(), "config.json").unwrap();
            assert!(!cfg.llm.tie_word_embeddings);
            assert_eq!(cfg.llm.moe.is_some(), p == Preset::A3B);
            for s in spec.shards() {
                assert!(s.iter().map(SynthTensor::bytes).sum::<u64>() <= DEFAULT_SHARD_BYTES);
            }
        }
        let spec = SynthSpec::preset(Preset::B8, 0);
        assert_eq!(spec.shards().len(), 4);
    }

    #[test]
    fn values_do_not_depend_on_chunking() {
        let spec = SynthSpec::preset(Preset::Tiny, 7);
        let t = spec.tensors().into_iter().find(|t| t.name == EMBED_TOKENS).unwrap();
        let mut whole = vec![0.0f32; 300_001];
        t.fill_f32(13, &mut whole);
        let mut parts = vec![0.0f32; 300_001];
        let (a, b) = parts.split_at_mut(70_003);
        t.fill_f32(13, a);
        t.fill_f32(13 + 70_003, b);
        assert_eq!(whole, parts);
        let mut bytes = vec![0u8; 2 * 300_001];
        t.fill_bf16_bytes(13, &mut bytes);
        let widened: Vec<f32> =
            bytes.chunks_exact(2).map(|b| f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16)).collect();
        assert_eq!(whole, widened);
        assert!(whole.iter().all(|x| x.abs() <= 0.0351));
        let mean = whole.iter().map(|&x| x as f64).sum::<f64>() / whole.len() as f64;
        assert!(mean.abs() < 1e-3);
        // A tied lm_head repeats embed_tokens; another seed changes everything.
        let head = spec.tensors().into_iter().find(|t| t.name == LM_HEAD).unwrap();
        let mut h = vec![0.0f32; 1000];
        head.fill_f32(13, &mut h);
        assert_eq!(h, whole[..1000]);
        let other = SynthSpec::preset(Preset::Tiny, 8).tensors().into_iter().find(|t| t.name == EMBED_TOKENS).unwrap();
        other.fill_f32(13, &mut h);
        assert_ne!(h, whole[..1000]);
    }

    /// Converting the generated folder and writing the GGUF pair directly give the same bytes.
    fn roundtrip(preset: Preset, mix: quantize::Mix) {
        let tok = fixture_tokenizer();
        let tmp = tempfile::tempdir().unwrap();
        let ckpt_dir = tmp.path().join("synth");
        let spec = SynthSpec::preset(preset, 3);
        let bar = ProgressBar::hidden();
        let st = write_safetensors(&spec, &ckpt_dir, &tok, &bar).unwrap();
        let ckpt = Checkpoint::open(&ckpt_dir).unwrap();
        assert_eq!(ckpt.len(), st.tensors);

        let a_dir = tmp.path().join("a");
        let b_dir = tmp.path().join("b");
        std::fs::create_dir_all(&a_dir).unwrap();
        std::fs::create_dir_all(&b_dir).unwrap();
        let mut a = ConvertOptions::defaults(&ckpt_dir, &a_dir, mix, None);
        a.name = Some("synth".into());
        let converted = crate::convert(&ckpt_dir, &a, &bar).unwrap();
        let mut b = ConvertOptions::defaults(&ckpt_dir, &b_dir, mix, None);
        b.name = Some("synth".into());
        let direct = write_gguf(&spec, &tok, &b, &bar).unwrap();
        assert_eq!(converted.tied_output, direct.tied_output);
        for (x, y) in [(&a.lm_out, &b.lm_out), (&a.mmproj_out, &b.mmproj_out)] {
            assert!(std::fs::read(x).unwrap() == std::fs::read(y).unwrap(), "{} differs", x.display());
        }
    }

    #[test]
    fn direct_gguf_equals_converting_the_folder() {
        roundtrip(Preset::Tiny, quantize::Mix::F16);
        roundtrip(Preset::TinyMoe, quantize::Mix::Q4KM);
    }
}
