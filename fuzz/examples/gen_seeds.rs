//! Writes the seed corpora for the fuzz targets (small, valid inputs; libFuzzer mutates from there):
//!
//! - `corpus/gguf_parse/`: GGUF files written by our writer (every value type, several tensor types,
//!   alignment 32 and 64, empty files) and two shrunken copies of llama.cpp's fixtures (same metadata
//!   keys and types with the tokenizer arrays cut to a few entries, same tensor names and types with
//!   small shapes, bytes taken from the real tensors).
//! - `corpus/safetensors_header/`: small hand-built safetensors files.
//!
//! Run from `fuzz/`: `cargo run --release --no-default-features --example gen_seeds`.

use std::path::{Path, PathBuf};

use runtime::gguf::{GgufFile, GgufWriter, TensorSpec, Value, ValueType};
use runtime::GgmlType;

fn kv(k: &str, v: Value) -> (String, Value) {
    (k.to_string(), v)
}

/// Writes a GGUF with the given metadata and tensors; tensor bytes are a simple pattern unless given.
fn write_gguf(path: &Path, md: &[(String, Value)], tensors: Vec<(TensorSpec, Option<Vec<u8>>)>) {
    let specs: Vec<TensorSpec> = tensors.iter().map(|(s, _)| s.clone()).collect();
    let mut w = GgufWriter::create(path, md, specs).unwrap();
    for (spec, bytes) in tensors {
        let size = spec.size().unwrap() as usize;
        let bytes = bytes.unwrap_or_else(|| (0..size).map(|i| (i * 7 + 3) as u8).collect());
        w.write_tensor(&spec.name, &bytes[..size]).unwrap();
    }
    let n = w.finish().unwrap();
    println!("{} ({n} bytes)", path.display());
}

/// A small version of a llama.cpp fixture: every key with its type, arrays cut to 4 entries; every tensor
/// with its name and type, shape cut down to one block row (and at most 2 rows), data from the real file.
fn shrink_fixture(src: &Path, dst: &Path) {
    let f = GgufFile::open(src).unwrap();
    let md: Vec<(String, Value)> = f
        .metadata()
        .iter()
        .map(|(k, v)| match v {
            Value::Array(t, items) => (k.clone(), Value::Array(*t, items.iter().take(4).cloned().collect())),
            Value::String(s) => (k.clone(), Value::String(s.chars().take(80).collect())),
            _ => (k.clone(), v.clone()),
        })
        .collect();
    let tensors = f
        .tensors()
        .iter()
        .map(|t| {
            let block = t.ty.block_size() as u64;
            let mut dims = t.dims.clone();
            dims[0] = dims[0].min(block.max(8));
            for d in dims.iter_mut().skip(1) {
                *d = (*d).min(2);
            }
            let spec = TensorSpec::new(t.name.clone(), dims, t.ty);
            let size = spec.size().unwrap() as usize;
            // Bytes from the start of the real tensor (rows differ in length, the values do not matter).
            let bytes = f.data(t)[..size].to_vec();
            (spec, Some(bytes))
        })
        .collect();
    write_gguf(dst, &md, tensors);
}

fn safetensors(path: &Path, json: &str, data_len: usize) {
    let mut b = (json.len() as u64).to_le_bytes().to_vec();
    b.extend_from_slice(json.as_bytes());
    b.extend((0..data_len).map(|i| i as u8));
    std::fs::write(path, &b).unwrap();
    println!("{} ({} bytes)", path.display(), b.len());
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let gguf = root.join("corpus/gguf_parse");
    let st = root.join("corpus/safetensors_header");
    std::fs::create_dir_all(&gguf).unwrap();
    std::fs::create_dir_all(&st).unwrap();

    // --- GGUF ---
    write_gguf(&gguf.join("empty.gguf"), &[], vec![]);
    write_gguf(
        &gguf.join("one_tensor.gguf"),
        &[kv("general.architecture", Value::String("qwen3".into()))],
        vec![(TensorSpec::new("token_embd.weight", vec![32, 2], GgmlType::Q8_0), None)],
    );
    let all_types = vec![
        kv("general.architecture", Value::String("qwen3".into())),
        kv("u8", Value::U8(1)),
        kv("i8", Value::I8(-1)),
        kv("u16", Value::U16(2)),
        kv("i16", Value::I16(-2)),
        kv("u32", Value::U32(3)),
        kv("i32", Value::I32(-3)),
        kv("f32", Value::F32(0.5)),
        kv("bool", Value::Bool(true)),
        kv("string", Value::String("héllo".into())),
        kv("u64", Value::U64(4)),
        kv("i64", Value::I64(-4)),
        kv("f64", Value::F64(0.25)),
        kv("tokenizer.ggml.tokens", Value::strings(["!", "\"", "<|im_end|>"])),
        kv("tokenizer.ggml.token_type", Value::i32s([1, 1, 3])),
        kv("tokenizer.ggml.scores", Value::f32s([0.0, -1.0, -2.0])),
        kv("empty", Value::Array(ValueType::U8, vec![])),
        kv("bools", Value::Array(ValueType::Bool, vec![Value::Bool(false)])),
    ];
    let mixed = || {
        vec![
            (TensorSpec::new("a", vec![7], GgmlType::F32), None),
            (TensorSpec::new("b", vec![32, 2], GgmlType::Q4_0), None),
            (TensorSpec::new("c", vec![256], GgmlType::Q6K), None),
            (TensorSpec::new("d", vec![4, 1, 1, 2], GgmlType::F16), None),
            (TensorSpec::new("e", vec![0], GgmlType::BF16), None),
        ]
    };
    write_gguf(&gguf.join("all_value_types.gguf"), &all_types, mixed());
    let mut aligned = all_types.clone();
    aligned.push(kv("general.alignment", Value::U32(64)));
    write_gguf(&gguf.join("alignment_64.gguf"), &aligned, mixed());

    let fixtures = root.join("../../shared/fixtures/llamacpp");
    for (src, dst) in
        [("qwen3-dense.q4_0.gguf", "fixture_dense_q4_0.gguf"), ("qwen3-moe.q8_0.gguf", "fixture_moe_q8_0.gguf")]
    {
        let src = fixtures.join(src);
        if src.exists() {
            shrink_fixture(&src, &gguf.join(dst));
        } else {
            eprintln!("skipping {} (not found)", src.display());
        }
    }

    // --- safetensors ---
    safetensors(&st.join("empty.safetensors"), "{}", 0);
    safetensors(
        &st.join("two_tensors.safetensors"),
        r#"{"__metadata__":{"format":"pt"},"model.norm.weight":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"model.embed_tokens.weight":{"dtype":"BF16","shape":[2,3],"data_offsets":[16,28]}}"#,
        28,
    );
    safetensors(
        &st.join("f16_padded_json.safetensors"),
        r#"{"w":{"dtype":"F16","shape":[2,2],"data_offsets":[0,8]}}       "#,
        8,
    );
    safetensors(
        &st.join("scalar_and_empty.safetensors"),
        r#"{"s":{"dtype":"F32","shape":[],"data_offsets":[0,4]},"z":{"dtype":"BF16","shape":[0,5],"data_offsets":[4,4]}}"#,
        4,
    );
}
