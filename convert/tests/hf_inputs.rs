//! Reading Hugging Face inputs: config.json / preprocessor_config.json, safetensors checkpoints
//! and the tokenizer → GGUF metadata, against the fixtures in /work/shared/fixtures.
//!
//! The tokenizer expectations are copied from the llama.cpp-written
//! `llamacpp/qwen3-dense.q8_0.gguf` (read with gguf-py while writing this test).

use std::path::{Path, PathBuf};

use convert::hf::checkpoint::{CheckpointError, HeaderError};
use convert::hf::config::ConfigError;
use convert::hf::tokenizer::TokenizerError;
use convert::hf::{
    parse_safetensors_header, ChatTemplateSource, Checkpoint, Dtype, HfTokenizer, LlmArch, PixelShuffleVersion,
    PreprocessConfig, SailVlConfig, TokenIds, TokenType,
};
use rand::{Rng, SeedableRng};
use runtime::gguf::value::Value;
use serde_json::json;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures")
}

fn dense_dir() -> PathBuf {
    fixtures().join("sailvl2-tiny")
}

fn moe_dir() -> PathBuf {
    fixtures().join("sailvl2-moe-tiny")
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Write `config` as `dir/config.json` and parse it.
fn parse_edited(config: &serde_json::Value) -> (tempfile::TempDir, Result<SailVlConfig, ConfigError>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    std::fs::write(&path, serde_json::to_string_pretty(config).unwrap()).unwrap();
    let parsed = SailVlConfig::from_file(&path);
    (dir, parsed)
}

fn edited_err(edit: impl FnOnce(&mut serde_json::Value)) -> String {
    let mut cfg = read_json(&moe_dir().join("config.json"));
    edit(&mut cfg);
    let (_dir, parsed) = parse_edited(&cfg);
    parsed.expect_err("edited config should be rejected").to_string()
}

// ---------------------------------------------------------------- config.json

#[test]
fn dense_config_parses() {
    let c = SailVlConfig::from_file(&dense_dir().join("config.json")).unwrap();
    assert_eq!(c.downsample_ratio, 0.5);
    assert_eq!(c.force_image_size, 448);
    assert_eq!((c.min_dynamic_patch, c.max_dynamic_patch), (1, 12));
    assert!(c.use_thumbnail);
    assert_eq!(c.ps_version, PixelShuffleVersion::V2);
    assert_eq!(c.select_layer, -1);
    assert_eq!(c.template.as_deref(), Some("univl-chat"));
    assert_eq!(c.dtype.as_deref(), Some("bfloat16"));

    let v = &c.vision;
    assert_eq!((v.hidden_size, v.intermediate_size, v.num_hidden_layers, v.num_attention_heads), (64, 128, 2, 4));
    assert_eq!((v.patch_size, v.image_size, v.num_channels), (14, 448, 3));
    assert_eq!(v.rms_norm_eps, 1e-5);
    assert!(!v.qkv_bias && !v.use_bias);

    let l = &c.llm;
    assert_eq!(l.arch, LlmArch::Qwen3);
    assert_eq!((l.hidden_size, l.intermediate_size, l.num_hidden_layers), (32, 64, 3));
    assert_eq!((l.num_attention_heads, l.num_key_value_heads, l.head_dim), (4, 2, 16));
    assert_eq!(l.rms_norm_eps, 1e-6);
    assert_eq!(l.rope_theta, 1e6);
    assert_eq!(l.max_position_embeddings, 40960);
    assert!(l.tie_word_embeddings);
    assert_eq!(l.vocab_size, 151936);
    assert_eq!(l.special_token_ids.bos, Some(TokenIds::One(151643)));
    assert_eq!(l.special_token_ids.eos, Some(TokenIds::One(151645)));
    assert_eq!(l.special_token_ids.pad, Some(TokenIds::One(151643)));
    assert!(l.moe.is_none());
}

#[test]
fn moe_config_parses() {
    let c = SailVlConfig::from_file(&moe_dir().join("config.json")).unwrap();
    assert_eq!(c.llm.arch, LlmArch::Qwen3Moe);
    let moe = c.llm.moe.as_ref().unwrap();
    assert_eq!((moe.num_experts, moe.num_experts_per_tok, moe.moe_intermediate_size), (8, 2, 32));
    assert!(moe.norm_topk_prob);
    assert_eq!(c.llm.head_dim, 16);
}

#[test]
fn transformers5_spelling_matches_4x() {
    let original = read_json(&moe_dir().join("config.json"));
    let mut cfg = original.clone();
    {
        let top = cfg.as_object_mut().unwrap();
        top.remove("torch_dtype");
        top.insert("dtype".into(), json!("bfloat16"));
        let llm = top["llm_config"].as_object_mut().unwrap();
        llm.remove("rope_theta");
        llm.remove("rope_scaling");
        llm.remove("torch_dtype");
        llm.insert("rope_parameters".into(), json!({"rope_theta": 1000000.0, "rope_type": "default"}));
        let n = llm.remove("num_experts").unwrap();
        llm.insert("num_local_experts".into(), n);
        llm.insert("dtype".into(), json!("bfloat16"));
    }
    let (_d1, v5) = parse_edited(&cfg);
    let (_d2, v4) = parse_edited(&original);
    assert_eq!(v5.unwrap(), v4.unwrap());
}

#[test]
fn head_dim_and_kv_heads_default() {
    let mut cfg = read_json(&dense_dir().join("config.json"));
    let llm = cfg["llm_config"].as_object_mut().unwrap();
    llm.remove("head_dim");
    llm.remove("num_key_value_heads");
    let (_d, c) = parse_edited(&cfg);
    let c = c.unwrap();
    assert_eq!(c.llm.head_dim, 32 / 4);
    assert_eq!(c.llm.num_key_value_heads, 4);
}

#[test]
fn missing_fields_are_named() {
    let msg = edited_err(|c| {
        c["llm_config"].as_object_mut().unwrap().remove("hidden_size");
    });
    assert!(msg.ends_with("config.json: llm_config.hidden_size is missing"), "{msg}");

    let msg = edited_err(|c| {
        c["vision_config"].as_object_mut().unwrap().remove("patch_size");
    });
    assert!(msg.ends_with("config.json: vision_config.patch_size is missing"), "{msg}");

    let msg = edited_err(|c| {
        c.as_object_mut().unwrap().remove("select_layer");
    });
    assert!(msg.ends_with("config.json: select_layer is missing"), "{msg}");

    let msg = edited_err(|c| {
        c["llm_config"].as_object_mut().unwrap().remove("rope_theta");
    });
    assert!(msg.contains("llm_config.rope_theta is missing"), "{msg}");

    let msg = edited_err(|c| {
        c["llm_config"].as_object_mut().unwrap().remove("num_experts");
    });
    assert!(msg.contains("llm_config.num_experts is missing"), "{msg}");

    let msg = edited_err(|c| {
        c.as_object_mut().unwrap().remove("llm_config");
    });
    assert!(msg.ends_with("config.json: llm_config is missing"), "{msg}");
}

#[test]
fn wrong_types_are_named() {
    let msg = edited_err(|c| c["llm_config"]["num_hidden_layers"] = json!("three"));
    assert!(msg.contains("llm_config.num_hidden_layers has the wrong type"), "{msg}");
    let msg = edited_err(|c| c["use_thumbnail"] = json!(1));
    assert!(msg.contains("use_thumbnail has the wrong type"), "{msg}");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    std::fs::write(&path, "{ not json").unwrap();
    let err = SailVlConfig::from_file(&path).unwrap_err();
    assert!(matches!(err, ConfigError::Json { .. }), "{err}");
}

/// An in-place edit of a config.json value.
type ConfigEdit = dyn FnOnce(&mut serde_json::Value);

#[test]
fn unsupported_settings_are_refused() {
    let cases: Vec<(Box<ConfigEdit>, &str)> = vec![
        (Box::new(|c| c["llm_config"]["rope_scaling"] = json!({"rope_type": "yarn", "factor": 4.0})), "rope_scaling"),
        (
            Box::new(|c| {
                c["llm_config"]["rope_parameters"] = json!({"rope_theta": 1e6, "rope_type": "yarn", "factor": 4.0})
            }),
            "rope_type",
        ),
        (Box::new(|c| c["llm_config"]["use_sliding_window"] = json!(true)), "use_sliding_window"),
        (Box::new(|c| c["ps_version"] = json!("v3")), "ps_version"),
        (Box::new(|c| c["llm_config"]["decoder_sparse_step"] = json!(2)), "decoder_sparse_step"),
        (Box::new(|c| c["llm_config"]["mlp_only_layers"] = json!([1])), "mlp_only_layers"),
        (Box::new(|c| c["llm_config"]["architectures"] = json!(["LlamaForCausalLM"])), "architectures"),
        (Box::new(|c| c["llm_config"]["model_type"] = json!("qwen2")), "model_type"),
    ];
    for (edit, key) in cases {
        let msg = edited_err(edit);
        assert!(msg.contains(key) && msg.contains("unsupported"), "{key}: {msg}");
    }
    let msg = edited_err(|c| c["llm_config"]["rope_parameters"] = json!({"rope_theta": 1e4}));
    assert!(msg.contains("disagrees"), "{msg}");
}

// ---------------------------------------------------------------- preprocessor_config.json

#[test]
fn preprocessor_config_overrides_config() {
    let c = SailVlConfig::from_file(&dense_dir().join("config.json")).unwrap();
    let p = PreprocessConfig::load(&dense_dir(), &c).unwrap();
    assert!(p.from_file);
    assert_eq!((p.image_size, p.patch_size, p.max_dynamic_patch, p.min_dynamic_patch), (448, 14, 10, 1));
    assert!(!p.use_msac && p.use_thumbnail);
    assert_eq!(p.image_mean, [0.485, 0.456, 0.406]);
    assert_eq!(p.image_std, [0.229, 0.224, 0.225]);

    // Absent file: config.json values and ImageNet constants.
    let empty = tempfile::tempdir().unwrap();
    let p = PreprocessConfig::load(empty.path(), &c).unwrap();
    assert!(!p.from_file);
    assert_eq!((p.image_size, p.patch_size, p.max_dynamic_patch), (448, 14, 12));
    assert_eq!(p.image_mean, [0.485, 0.456, 0.406]);

    let bad = r#"{"image_mean": [0.5, 0.5], "image_size": 448, "patch_size": 14}"#;
    let err = PreprocessConfig::from_json_str(bad, "preprocessor_config.json", &c).unwrap_err();
    assert!(err.to_string().contains("image_mean"), "{err}");
}

// ---------------------------------------------------------------- checkpoints

#[test]
fn fixture_checkpoints_open() {
    let ck = Checkpoint::open(&dense_dir()).unwrap();
    assert_eq!(ck.len(), 61);
    assert_eq!(
        ck.shard_names().collect::<Vec<_>>(),
        ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    );
    let embed = ck.get("language_model.model.embed_tokens.weight").unwrap();
    assert_eq!((embed.dtype, embed.shape.as_slice()), (Dtype::BF16, &[151936, 32][..]));
    assert_eq!(ck.shard_of("language_model.model.embed_tokens.weight"), Some("model-00001-of-00002.safetensors"));
    assert_eq!(ck.shard_of("language_model.lm_head.weight"), Some("model-00002-of-00002.safetensors"));
    assert_eq!(ck.get("vision_model.preprocessor.patchifier.proj.weight").unwrap().shape, [64, 3, 14, 14]);
    assert!(ck.tensors().all(|(_, m)| m.dtype == Dtype::BF16));

    // The fixture stores lm_head bit-identical to embed_tokens (tied).
    let (_, e) = ck.raw("language_model.model.embed_tokens.weight").unwrap();
    let (_, h) = ck.raw("language_model.lm_head.weight").unwrap();
    assert_eq!(e, h);

    let moe = Checkpoint::open(&moe_dir()).unwrap();
    assert_eq!(moe.len(), 127);
    assert_eq!(moe.get("language_model.model.layers.2.mlp.experts.7.down_proj.weight").unwrap().shape, [32, 32]);
    assert_eq!(moe.get("language_model.model.layers.0.mlp.gate.weight").unwrap().shape, [8, 32]);

    // Releasing pages is only a hint: the bytes read back the same afterwards.
    let before = ck.read_f32("language_model.model.embed_tokens.weight").unwrap();
    ck.release("language_model.model.embed_tokens.weight", 0, usize::MAX);
    ck.release("language_model.model.embed_tokens.weight", 1 << 40, 10);
    ck.release("no.such.tensor", 0, 1);
    assert_eq!(ck.read_f32("language_model.model.embed_tokens.weight").unwrap(), before);

    let err = ck.read_f32("no.such.tensor").unwrap_err();
    assert!(matches!(err, CheckpointError::UnknownTensor(_)), "{err}");
}

#[test]
fn read_f32_widens_bf16_exactly() {
    let ck = Checkpoint::open(&dense_dir()).unwrap();
    for name in ["language_model.model.embed_tokens.weight", "vision_model.preprocessor.pos_embed", "mlp1.1.weight"] {
        let (dtype, raw) = ck.raw(name).unwrap();
        assert_eq!(dtype, Dtype::BF16);
        let widened = ck.read_f32(name).unwrap();
        assert_eq!(widened.len(), ck.get(name).unwrap().n_elements());
        assert_eq!(widened.len() * 2, raw.len());
        for (w, b) in widened.iter().zip(raw.chunks_exact(2)) {
            let expect = half::bf16::from_le_bytes([b[0], b[1]]).to_f32();
            assert_eq!(w.to_bits(), expect.to_bits());
        }
    }
}

/// A safetensors file: 8-byte little-endian header length, header JSON, data.
fn st_bytes(header: &serde_json::Value, data: &[u8]) -> Vec<u8> {
    let h = serde_json::to_vec(header).unwrap();
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
    out
}

fn write_single(bytes: &[u8]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("model.safetensors"), bytes).unwrap();
    dir
}

#[test]
fn f16_and_f32_tensors_read_exactly() {
    let f16s =
        [half::f16::from_f32(1.5), half::f16::from_f32(-0.000061035156), half::f16::MAX, half::f16::NEG_INFINITY];
    let f32s = [0.1f32, -3.25, f32::MIN_POSITIVE, 7.0];
    let mut data: Vec<u8> = f16s.iter().flat_map(|x| x.to_le_bytes()).collect();
    data.extend(f32s.iter().flat_map(|x| x.to_le_bytes()));
    let header = json!({
        "__metadata__": {"format": "pt"},
        "a": {"dtype": "F16", "shape": [2, 2], "data_offsets": [0, 8]},
        "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]},
    });
    let dir = write_single(&st_bytes(&header, &data));
    let ck = Checkpoint::open(dir.path()).unwrap();
    assert_eq!(ck.len(), 2);
    let a = ck.read_f32("a").unwrap();
    assert_eq!(a, f16s.iter().map(|x| x.to_f32()).collect::<Vec<_>>());
    assert_eq!(ck.read_f32("b").unwrap(), f32s);
    let mut short = [0.0f32; 3];
    assert!(matches!(ck.read_f32_into("b", &mut short), Err(CheckpointError::OutputLength { .. })));
}

#[test]
fn unsupported_dtype_is_named() {
    let header = json!({"ids": {"dtype": "I64", "shape": [2], "data_offsets": [0, 16]}});
    let dir = write_single(&st_bytes(&header, &[0u8; 16]));
    let err = Checkpoint::open(dir.path()).unwrap_err();
    assert!(matches!(err, CheckpointError::UnsupportedDtype { .. }), "{err}");
    assert!(err.to_string().contains("\"ids\""), "{err}");
}

#[test]
fn bad_header_json_is_reported() {
    let mut bytes = b"{\"a\": {\"dtype\": \"F32\",".to_vec();
    let mut file = (bytes.len() as u64).to_le_bytes().to_vec();
    file.append(&mut bytes);
    assert!(matches!(parse_safetensors_header(&file), Err(HeaderError::Json { .. })));
    let dir = write_single(&file);
    let err = Checkpoint::open(dir.path()).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, CheckpointError::Header { source: HeaderError::Json { .. }, .. }), "{msg}");
    assert!(msg.contains("model.safetensors") && msg.contains("not valid JSON"), "{msg}");
}

#[test]
fn lying_offsets_name_shard_and_tensor() {
    // Offsets say 400 bytes, the file holds 16.
    let header = json!({
        "ok": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
        "liar": {"dtype": "F32", "shape": [100], "data_offsets": [8, 408]},
    });
    let file = st_bytes(&header, &[0u8; 16]);
    let err = parse_safetensors_header(&file).unwrap_err();
    assert!(matches!(&err, HeaderError::OffsetsPastEnd { tensor, .. } if tensor == "liar"), "{err}");
    let dir = write_single(&file);
    let msg = Checkpoint::open(dir.path()).unwrap_err().to_string();
    assert!(msg.contains("model.safetensors") && msg.contains("\"liar\"") && msg.contains("past the end"), "{msg}");

    // Offsets inside the file but not matching dtype x shape.
    let header = json!({"t": {"dtype": "BF16", "shape": [3], "data_offsets": [0, 8]}});
    let err = parse_safetensors_header(&st_bytes(&header, &[0u8; 8])).unwrap_err();
    assert!(matches!(&err, HeaderError::SizeMismatch { tensor, expected: 6, .. } if tensor == "t"), "{err}");

    // A gap between tensors.
    let header = json!({
        "a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
        "b": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]},
    });
    let err = parse_safetensors_header(&st_bytes(&header, &[0u8; 12])).unwrap_err();
    assert!(matches!(&err, HeaderError::NotPacked { tensor, .. } if tensor == "b"), "{err}");

    // Bytes after the last tensor.
    let header = json!({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}});
    let err = parse_safetensors_header(&st_bytes(&header, &[0u8; 10])).unwrap_err();
    assert!(matches!(err, HeaderError::TrailingBytes { extra: 6 }), "{err}");

    // Header length beyond the file; file shorter than the length prefix.
    let mut file = st_bytes(&header, &[0u8; 4]);
    file[..8].copy_from_slice(&10_000u64.to_le_bytes());
    assert!(matches!(parse_safetensors_header(&file), Err(HeaderError::PastEnd { .. })));
    assert!(matches!(parse_safetensors_header(&[1, 2, 3]), Err(HeaderError::TooShort { len: 3 })));
}

#[test]
fn header_parser_survives_garbage() {
    let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
    let valid = st_bytes(
        &json!({
            "a": {"dtype": "BF16", "shape": [2, 3], "data_offsets": [0, 12]},
            "b": {"dtype": "F32", "shape": [1], "data_offsets": [12, 16]},
        }),
        &[0u8; 16],
    );
    parse_safetensors_header(&valid).unwrap();
    for _ in 0..3000 {
        let mut bytes = valid.clone();
        for _ in 0..rng.gen_range(1..6) {
            let i = rng.gen_range(0..bytes.len());
            bytes[i] = rng.gen();
        }
        bytes.truncate(rng.gen_range(0..=bytes.len()));
        let _ = parse_safetensors_header(&bytes);
    }
    for len in 0..64 {
        let junk: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        let _ = parse_safetensors_header(&junk);
    }
}

/// Two small shards + index in a temp dir; `edit` may rewrite the weight_map.
fn sharded(edit: impl FnOnce(&mut serde_json::Value)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let s1 = st_bytes(&json!({"x": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}), &1.0f32.to_le_bytes());
    let s2 = st_bytes(&json!({"y": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}), &2.0f32.to_le_bytes());
    std::fs::write(dir.path().join("model-00001-of-00002.safetensors"), s1).unwrap();
    std::fs::write(dir.path().join("model-00002-of-00002.safetensors"), s2).unwrap();
    let mut index = json!({
        "metadata": {"total_size": 8},
        "weight_map": {"x": "model-00001-of-00002.safetensors", "y": "model-00002-of-00002.safetensors"},
    });
    edit(&mut index);
    std::fs::write(dir.path().join("model.safetensors.index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    dir
}

#[test]
fn sharded_index_is_checked() {
    let dir = sharded(|_| {});
    let ck = Checkpoint::open(dir.path()).unwrap();
    assert_eq!(ck.read_f32("y").unwrap(), [2.0]);

    let dir = sharded(|i| i["weight_map"]["y"] = json!("model-00003-of-00003.safetensors"));
    let err = Checkpoint::open(dir.path()).unwrap_err();
    assert!(
        matches!(&err, CheckpointError::ShardMissing { shard, .. } if shard == "model-00003-of-00003.safetensors"),
        "{err}"
    );
    assert!(err.to_string().contains("model-00003-of-00003.safetensors"));

    let dir = sharded(|i| i["weight_map"]["z"] = json!("model-00001-of-00002.safetensors"));
    let err = Checkpoint::open(dir.path()).unwrap_err();
    assert!(matches!(&err, CheckpointError::TensorNotInShard { tensor, .. } if tensor == "z"), "{err}");

    let dir = sharded(|i| i["weight_map"]["y"] = json!("../model-00002-of-00002.safetensors"));
    assert!(matches!(Checkpoint::open(dir.path()), Err(CheckpointError::BadIndex { .. })));

    let empty = tempfile::tempdir().unwrap();
    assert!(matches!(Checkpoint::open(empty.path()), Err(CheckpointError::NoWeights { .. })));
}

// ---------------------------------------------------------------- tokenizer

fn fnv1a(items: impl IntoIterator<Item = impl AsRef<[u8]>>) -> u64 {
    let mut h = 0xcbf29ce484222325u64;
    for it in items {
        for &b in it.as_ref().iter().chain(&[0u8]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x100000001b3);
        }
    }
    h
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect()
}

#[test]
fn tokenizer_metadata_matches_llamacpp() {
    let cfg = SailVlConfig::from_file(&dense_dir().join("config.json")).unwrap();
    let tok = HfTokenizer::load(&dense_dir()).unwrap();
    let kv = tok.gguf_metadata(&cfg.llm, ChatTemplateSource::LlamaCpp).unwrap();
    let keys: Vec<&str> = kv.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "tokenizer.ggml.model",
            "tokenizer.ggml.pre",
            "tokenizer.ggml.tokens",
            "tokenizer.ggml.token_type",
            "tokenizer.ggml.merges",
            "tokenizer.ggml.eos_token_id",
            "tokenizer.ggml.padding_token_id",
            "tokenizer.ggml.bos_token_id",
            "tokenizer.ggml.add_bos_token",
            "tokenizer.ggml.add_eos_token",
            "tokenizer.chat_template",
        ]
    );
    let get = |k: &str| &kv.iter().find(|(key, _)| key == k).unwrap().1;
    assert_eq!(get("tokenizer.ggml.model"), &Value::String("gpt2".into()));
    assert_eq!(get("tokenizer.ggml.pre"), &Value::String("qwen2".into()));
    assert_eq!(get("tokenizer.ggml.eos_token_id"), &Value::U32(151645));
    assert_eq!(get("tokenizer.ggml.padding_token_id"), &Value::U32(151643));
    assert_eq!(get("tokenizer.ggml.bos_token_id"), &Value::U32(151643));
    assert_eq!(get("tokenizer.ggml.add_bos_token"), &Value::Bool(false));
    assert_eq!(get("tokenizer.ggml.add_eos_token"), &Value::Bool(false));

    let tokens = strings(get("tokenizer.ggml.tokens"));
    assert_eq!(tokens.len(), 151936);
    for (id, text) in [
        (0, "!"),
        (1, "\""),
        (255, "Ń"),
        (256, "ĠĠ"),
        (1000, "atus"),
        (100000, "ä¹Łæĺ¯"),
        (151642, "â½Ĺ"),
        (151643, "<|endoftext|>"),
        (151671, "<IMG_CONTEXT>"),
        (151677, "</box>"),
        (151678, "[PAD151678]"),
        (151935, "[PAD151935]"),
    ] {
        assert_eq!(tokens[id], text, "token {id}");
    }
    // FNV-1a over every token (NUL-separated), computed from the llama.cpp GGUF.
    assert_eq!(fnv1a(&tokens), 0x8e96d85680e25161);

    let Value::Array(_, types) = get("tokenizer.ggml.token_type") else { panic!("token_type is not an array") };
    let types: Vec<i32> = types
        .iter()
        .map(|v| match v {
            Value::I32(t) => *t,
            other => panic!("token_type element {other:?} is not i32"),
        })
        .collect();
    assert_eq!(types.len(), 151936);
    let ids_of = |t: i32| (0..types.len()).filter(|&i| types[i] == t).collect::<Vec<_>>();
    // As llama.cpp has them: special=true or <|...|> → 3; <tool_call>, <tool_response>, <think> → 4.
    let control: Vec<usize> = (151643..=151656).chain(151659..=151664).chain(151669..=151677).collect();
    assert_eq!(ids_of(3), control);
    assert_eq!(ids_of(4), [151657, 151658, 151665, 151666, 151667, 151668]);
    assert_eq!(ids_of(5), (151678..151936).collect::<Vec<_>>());
    assert_eq!(ids_of(1), (0..151643).collect::<Vec<_>>());

    let merges = strings(get("tokenizer.ggml.merges"));
    assert_eq!(merges.len(), 151387);
    assert_eq!(merges[0], "Ġ Ġ");
    assert_eq!(merges[1], "ĠĠ ĠĠ");
    assert_eq!(merges[1000], "ect or");
    assert_eq!(merges[100000], "äº ¡");
    assert_eq!(merges[151386], "â½ Ĺ");
    assert_eq!(fnv1a(&merges), 0xa0f048fb085bbcb4);

    // llama.cpp (gguf-py) takes tokenizer_config's leftover Kimi-VL template over chat_template.jinja.
    let Value::String(template) = get("tokenizer.chat_template") else { panic!("template is not a string") };
    assert_eq!(template.len(), 907);
    assert_eq!(fnv1a([template.as_bytes()]), 0x182eb117024cc6bc);
    assert!(template.contains("<|im_system|>"));
}

#[test]
fn default_chat_template_is_the_jinja_file() {
    let cfg = SailVlConfig::from_file(&dense_dir().join("config.json")).unwrap();
    let tok = HfTokenizer::load(&dense_dir()).unwrap();
    let kv = tok.gguf_metadata(&cfg.llm, ChatTemplateSource::default()).unwrap();
    let jinja = std::fs::read_to_string(dense_dir().join("chat_template.jinja")).unwrap();
    let (key, template) = kv.last().unwrap();
    assert_eq!(key, "tokenizer.chat_template");
    assert_eq!(template, &Value::String(jinja));
}

#[test]
fn image_token_ids_come_from_added_tokens() {
    let tok = HfTokenizer::load(&moe_dir()).unwrap();
    let ids = tok.image_token_ids().unwrap();
    assert_eq!((ids.context, ids.start, ids.end), (151671, 151669, 151670));
}

/// A minimal Qwen2-style tokenizer.json for rule checks.
fn mini_tokenizer(added: serde_json::Value, merges: serde_json::Value) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let tj = json!({
        "version": "1.0",
        "added_tokens": added,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": convert::hf::tokenizer::QWEN2_PRETOKENIZER_REGEX}, "behavior": "Isolated", "invert": false},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false}
        ]},
        "post_processor": {"type": "ByteLevel"},
        "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, "a b": 3}, "merges": merges},
    });
    std::fs::write(dir.path().join("tokenizer.json"), serde_json::to_vec(&tj).unwrap()).unwrap();
    std::fs::write(
        dir.path().join("tokenizer_config.json"),
        serde_json::to_vec(&json!({"eos_token": {"content": "<|end|>"}, "add_eos_token": true})).unwrap(),
    )
    .unwrap();
    dir
}

#[test]
fn token_type_and_merge_rules() {
    let added = json!([
        {"id": 5, "content": "<|end|>", "special": false, "normalized": false},
        {"id": 6, "content": "<tag>", "special": false, "normalized": false},
        {"id": 7, "content": "<ctl>", "special": true, "normalized": false},
        {"id": 8, "content": "▁word", "special": false, "normalized": true},
        {"id": 9, "content": "<unused3>", "special": false, "normalized": false},
    ]);
    let dir = mini_tokenizer(added, json!([["a", "b"], ["a b", "c"]]));
    let tok = HfTokenizer::load(dir.path()).unwrap();
    assert_eq!(tok.merges(), ["a b", "a\u{120}b c"]);
    let (tokens, types) = tok.tokens_and_types(11).unwrap();
    assert_eq!(tokens, ["a", "b", "ab", "a b", "[PAD4]", "<|end|>", "<tag>", "<ctl>", " word", "<unused3>", "[PAD10]"]);
    use TokenType::*;
    assert_eq!(
        types,
        [Normal, Normal, Normal, Normal, Unused, Control, UserDefined, Control, UserDefined, Control, Unused]
    );
    assert!(matches!(tok.tokens_and_types(9), Err(TokenizerError::IdOutOfRange { id: 9, .. })));

    let mut cfg = SailVlConfig::from_file(&dense_dir().join("config.json")).unwrap();
    cfg.llm.vocab_size = 11;
    cfg.llm.special_token_ids.bos = Some(TokenIds::One(0));
    cfg.llm.special_token_ids.eos = Some(TokenIds::One(1)); // loses to tokenizer_config's <|end|>
    cfg.llm.special_token_ids.pad = Some(TokenIds::Many(vec![2, 3])); // lists are ignored, as in gguf-py
    let kv = tok.gguf_metadata(&cfg.llm, ChatTemplateSource::LlamaCpp).unwrap();
    let find = |k: &str| kv.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    assert_eq!(find("tokenizer.ggml.eos_token_id"), Some(Value::U32(5)));
    assert_eq!(find("tokenizer.ggml.bos_token_id"), Some(Value::U32(0)));
    assert_eq!(find("tokenizer.ggml.padding_token_id"), None);
    assert_eq!(find("tokenizer.ggml.add_eos_token"), Some(Value::Bool(true)));
    assert_eq!(find("tokenizer.chat_template"), None);

    let err = tok.image_token_ids().unwrap_err();
    assert!(err.to_string().contains("<IMG_CONTEXT>"), "{err}");

    // Old-style string merges pass through unchanged.
    let dir = mini_tokenizer(json!([]), json!(["a b"]));
    assert_eq!(HfTokenizer::load(dir.path()).unwrap().merges(), ["a b"]);
}

#[test]
fn foreign_pre_tokenizer_is_refused() {
    let dir = mini_tokenizer(json!([]), json!(["a b"]));
    let path = dir.path().join("tokenizer.json");
    let mut tj = read_json(&path);
    tj["pre_tokenizer"] = json!({"type": "Metaspace", "replacement": "▁"});
    std::fs::write(&path, serde_json::to_vec(&tj).unwrap()).unwrap();
    let err = HfTokenizer::load(dir.path()).unwrap_err();
    assert!(matches!(err, TokenizerError::UnsupportedPreTokenizer { .. }), "{err}");
}
