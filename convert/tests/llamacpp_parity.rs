//! The language-model GGUF we write must equal llama.cpp's own conversion of the same checkpoint: tensor
//! names, shapes, types and bytes, and the tokenizer metadata. The references in
//! `shared/fixtures/llamacpp/` were written by llama.cpp's `convert_hf_to_gguf.py` (see its README); the
//! mmproj half has no llama.cpp counterpart and is checked for completeness and exact values.

use std::path::{Path, PathBuf};

use ::convert::hf::checkpoint::Checkpoint;
use ::convert::metadata::UNIVL_SYSTEM_PROMPT;
use ::convert::{convert as run_conversion, ConvertOptions};
use indicatif::ProgressBar;
use quantize::Mix;
use runtime::gguf::{GgufFile, Value};
use runtime::{quant, GgmlType};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures")
}

fn convert_fixture(name: &str, mix: Mix, out: &Path) -> (PathBuf, PathBuf) {
    let mut opts = ConvertOptions::defaults(&fixtures().join(name), out, mix, None);
    opts.name = Some(name.into());
    run_conversion(&fixtures().join(name), &opts, &ProgressBar::hidden()).expect("conversion succeeds");
    (opts.lm_out, opts.mmproj_out)
}

/// Tensors equal llama.cpp's file: same set, same shape, type and bytes; with `same_order`, also the same
/// order (llama.cpp's converter keeps checkpoint order; llama-quantize sorts by name).
fn assert_same_tensors(ours: &GgufFile, theirs: &GgufFile, same_order: bool) {
    let names = |f: &GgufFile| {
        let mut n = f.tensors().iter().map(|t| t.name.clone()).collect::<Vec<_>>();
        if !same_order {
            n.sort();
        }
        n
    };
    assert_eq!(names(ours), names(theirs), "tensor names");
    for t in theirs.tensors() {
        let o = ours.tensor_info(&t.name).unwrap();
        assert_eq!((&o.dims, o.ty), (&t.dims, t.ty), "{}: shape and type", t.name);
        assert!(ours.data(o) == theirs.data(t), "{}: tensor bytes differ", t.name);
    }
}

/// Every key llama.cpp wrote has the same value in ours, except the name (llama.cpp derives a display name
/// from `_name_or_path`), its size label, and the chat template: llama.cpp took the Kimi-VL leftover from
/// tokenizer_config.json, we take `chat_template.jinja`, the template SAIL-VL2 actually uses (spec §5.2).
fn assert_same_metadata(ours: &GgufFile, theirs: &GgufFile) {
    let skip = ["general.name", "general.size_label", "tokenizer.chat_template"];
    for (k, v) in theirs.metadata() {
        if skip.contains(&k.as_str()) {
            continue;
        }
        let mine = ours.get(k).unwrap_or_else(|| panic!("key {k} missing"));
        assert!(mine == v, "key {k}: ours {mine} vs llama.cpp {v}");
    }
    let template = ours.get("tokenizer.chat_template").and_then(Value::as_str).unwrap();
    assert!(template.contains("<|im_start|>system\\n你是由抖音内容理解组开发的多模态大模型"));
}

fn check(fixture: &str, mix: Mix, reference: &str, same_order: bool) {
    let dir = tempfile::tempdir().unwrap();
    let (lm, _) = convert_fixture(fixture, mix, dir.path());
    let ours = GgufFile::open(&lm).unwrap();
    let theirs = GgufFile::open(fixtures().join("llamacpp").join(reference)).unwrap();
    assert_same_tensors(&ours, &theirs, same_order);
    assert_same_metadata(&ours, &theirs);
}

#[test]
fn dense_f32_equals_llama_cpp() {
    check("sailvl2-tiny", Mix::F32, "qwen3-dense.f32.gguf", true);
}

#[test]
fn dense_q8_0_equals_llama_cpp() {
    check("sailvl2-tiny", Mix::Q8_0, "qwen3-dense.q8_0.gguf", true);
}

#[test]
fn moe_q8_0_equals_llama_cpp() {
    check("sailvl2-moe-tiny", Mix::Q8_0, "qwen3-moe.q8_0.gguf", true);
}

/// The q4_0 reference came from `llama-quantize` on the f32 file: our converter applies the same recipe in
/// one step. The recipe (Q8_0 fallback for the tied output, Q4_0 elsewhere) and the bytes must match.
#[test]
fn dense_q4_0_equals_llama_quantize() {
    check("sailvl2-tiny", Mix::Q4_0, "qwen3-dense.q4_0.gguf", false);
}

/// Quantizing our f32 file with `sail-edge quantize` gives the same bytes as llama-quantize did.
#[test]
fn requantize_f32_to_q4_0_equals_llama_quantize() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("q4_0.gguf");
    let src = fixtures().join("llamacpp/qwen3-dense.f32.gguf");
    quantize::quantize_file(&src, &out, &quantize::QuantizeOptions::new(Mix::Q4_0), &ProgressBar::hidden()).unwrap();
    let ours = GgufFile::open(&out).unwrap();
    let theirs = GgufFile::open(fixtures().join("llamacpp/qwen3-dense.q4_0.gguf")).unwrap();
    assert_same_tensors(&ours, &theirs, false);
    assert_eq!(ours.get("general.file_type"), theirs.get("general.file_type"));
}

/// The mmproj file holds every vision and projector tensor, with exact f32 values and the parameters the
/// runtime needs.
#[test]
fn mmproj_holds_the_vision_tower_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (_, mmproj) = convert_fixture("sailvl2-tiny", Mix::F32, dir.path());
    let f = GgufFile::open(&mmproj).unwrap();
    let ckpt = Checkpoint::open(&fixtures().join("sailvl2-tiny")).unwrap();
    let pairs = [
        ("v.patch_embd.weight", "vision_model.preprocessor.patchifier.proj.weight", vec![14, 14, 3, 64]),
        ("v.position_embd.weight", "vision_model.preprocessor.pos_embed", vec![64, 1024]),
        ("v.blk.1.attn_qkv.weight", "vision_model.trunk.blocks.1.attn.qkv.weight", vec![64, 192]),
        ("v.blk.0.ffn_gate.weight", "vision_model.trunk.blocks.0.mlp.fc1.weight", vec![64, 128]),
        ("v.blk.0.ffn_up.weight", "vision_model.trunk.blocks.0.mlp.fc3.weight", vec![64, 128]),
        ("v.blk.0.ffn_down.weight", "vision_model.trunk.blocks.0.mlp.fc2.weight", vec![128, 64]),
        ("v.post_ln.weight", "vision_model.trunk.post_trunk_norm.weight", vec![64]),
        ("mm.0.bias", "mlp1.0.bias", vec![256]),
        ("mm.1.weight", "mlp1.1.weight", vec![256, 32]),
        ("mm.3.bias", "mlp1.3.bias", vec![32]),
    ];
    for (gguf, hf, dims) in pairs {
        let info = f.tensor_info(gguf).unwrap();
        assert_eq!(info.dims, dims, "{gguf} dims");
        assert_eq!(info.ty, GgmlType::F32);
        let mut ours = vec![0f32; info.n_elements() as usize];
        quant::dequantize(GgmlType::F32, f.data(info), &mut ours).unwrap();
        // bf16 → f32 widening is exact, so the values must be bit-identical.
        let want = ckpt.read_f32(hf).unwrap();
        assert!(ours.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()), "{gguf} values");
    }
    assert_eq!(f.tensors().len(), 4 + 2 * 7 + 1 + 6);
    let u = |k: &str| f.get(k).and_then(Value::as_u64).unwrap_or_else(|| panic!("{k}"));
    assert_eq!(u("clip.vision.projection_dim"), 32);
    assert_eq!(u("clip.vision.preproc_max_tiles"), 10, "the processor's max_dynamic_patch, not config.json's 12");
    assert_eq!(u("sailvl2.image_context_token_id"), 151671);
    assert_eq!(u("sailvl2.tokens_per_tile"), 256);
    assert_eq!(f.get("sailvl2.vision.select_layer").and_then(Value::as_i64), Some(-1));
    assert_eq!(f.get("sailvl2.ps_version").and_then(Value::as_str), Some("v2"));
    assert!(f.get("sailvl2.use_thumbnail").and_then(Value::as_bool).unwrap());
    let mean = f.get("clip.vision.image_mean").and_then(Value::as_array).unwrap();
    assert_eq!(mean, [Value::F32(0.485), Value::F32(0.456), Value::F32(0.406)]);
    assert_eq!(f.get("sailvl2.system_prompt").and_then(Value::as_str), Some(UNIVL_SYSTEM_PROMPT));
}

/// Under a 4-bit LM mix the vision linears stay Q8_0 unless `--vision-type` says otherwise.
#[test]
fn quantized_mixes_keep_vision_weights_at_q8_0() {
    let dir = tempfile::tempdir().unwrap();
    let (lm, mmproj) = convert_fixture("sailvl2-tiny", Mix::Q4KM, dir.path());
    let f = GgufFile::open(&mmproj).unwrap();
    assert_eq!(f.tensor_info("v.blk.0.attn_qkv.weight").unwrap().ty, GgmlType::Q8_0);
    assert_eq!(f.tensor_info("v.patch_embd.weight").unwrap().ty, GgmlType::F16);
    assert_eq!(f.tensor_info("v.position_embd.weight").unwrap().ty, GgmlType::F32);
    assert_eq!(f.get("general.file_type").and_then(Value::as_u64), Some(7), "labelled by its Q8_0 matrices");
    // hidden 32 fits no 256-block: Q4_K falls back to Q5_0, Q6_K to Q8_0 (llama.cpp's table).
    let l = GgufFile::open(&lm).unwrap();
    assert_eq!(l.tensor_info("blk.1.attn_q.weight").unwrap().ty, GgmlType::Q5_0);
    assert_eq!(l.tensor_info("token_embd.weight").unwrap().ty, GgmlType::Q8_0);
    assert_eq!(l.get("general.file_type").and_then(Value::as_u64), Some(15));

    let mut opts =
        ConvertOptions::defaults(&fixtures().join("sailvl2-tiny"), dir.path(), Mix::Q4_0, Some(GgmlType::Q4_0));
    opts.mmproj_out = dir.path().join("mmproj-q4.gguf");
    run_conversion(&fixtures().join("sailvl2-tiny"), &opts, &ProgressBar::hidden()).unwrap();
    let f = GgufFile::open(&opts.mmproj_out).unwrap();
    assert_eq!(f.tensor_info("mm.1.weight").unwrap().ty, GgmlType::Q4_0);
}
