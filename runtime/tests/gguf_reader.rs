//! The GGUF reader against llama.cpp's own files (`../shared/fixtures/llamacpp`, see its README) and
//! against hand-built malformed files: every malformation must give its specific [`FormatError`], naming
//! the key or tensor and the offset, never a panic.
//!
//! The malformed files are assembled byte by byte with [`Bytes`] below, not with our writer, so that a
//! writer bug cannot hide a reader bug.

use std::collections::BTreeMap;
use std::path::PathBuf;

use runtime::gguf::{FormatError, GgufError, GgufFile, GgufHeader, Value, ValueType};
use runtime::GgmlType;

// ---------------------------------------------------------------------------------------------------------
// llama.cpp fixtures
// ---------------------------------------------------------------------------------------------------------

fn fixture_dir() -> PathBuf {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/fixtures/llamacpp"));
    assert!(dir.is_dir(), "fixture directory {} is missing", dir.display());
    dir
}

fn fixture(name: &str) -> PathBuf {
    fixture_dir().join(name)
}

/// What llama.cpp's gguf-py 0.19.0 (`gguf.GGUFReader`) reports for each fixture; see the README's tables.
struct Expected {
    file: &'static str,
    arch: &'static str,
    n_tensors: usize,
    /// KV pairs in the file (gguf-py's `GGUF.kv_count`).
    n_kv: usize,
    file_type: u32,
    /// Tensors per type (README "Tensor types in each file").
    types: &'static [(GgmlType, usize)],
    token_embd_ty: GgmlType,
    /// Absolute offset of the data section (gguf-py `GGUFReader.data_offset`).
    data_offset: u64,
    /// `token_embd.weight` offset relative to the data section (gguf-py `data_offset - reader.data_offset`).
    token_embd_offset: u64,
}

const EXPECTED: [Expected; 4] = [
    Expected {
        file: "qwen3-dense.f32.gguf",
        arch: "qwen3",
        n_tensors: 35,
        n_kv: 27,
        file_type: 0,
        types: &[(GgmlType::F32, 35)],
        token_embd_ty: GgmlType::F32,
        data_offset: 5931648,
        token_embd_offset: 0,
    },
    Expected {
        file: "qwen3-dense.q8_0.gguf",
        arch: "qwen3",
        n_tensors: 35,
        n_kv: 27,
        file_type: 7,
        types: &[(GgmlType::F32, 13), (GgmlType::Q8_0, 22)],
        token_embd_ty: GgmlType::Q8_0,
        data_offset: 5931648,
        token_embd_offset: 0,
    },
    Expected {
        file: "qwen3-dense.q4_0.gguf",
        arch: "qwen3",
        n_tensors: 35,
        n_kv: 27,
        file_type: 2,
        types: &[(GgmlType::F32, 13), (GgmlType::Q4_0, 21), (GgmlType::Q8_0, 1)],
        token_embd_ty: GgmlType::Q8_0,
        data_offset: 5931648,
        // llama-quantize writes output_norm.weight (128 bytes) first.
        token_embd_offset: 128,
    },
    Expected {
        file: "qwen3-moe.q8_0.gguf",
        arch: "qwen3moe",
        n_tensors: 38,
        n_kv: 30,
        file_type: 7,
        types: &[(GgmlType::F32, 16), (GgmlType::Q8_0, 22)],
        token_embd_ty: GgmlType::Q8_0,
        data_offset: 5932128,
        token_embd_offset: 0,
    },
];

fn u32_of(f: &GgufFile, key: &str) -> u32 {
    match f.get(key) {
        Some(Value::U32(v)) => *v,
        other => panic!("{}: {key} is {other:?}, expected UINT32", f.path().display()),
    }
}

fn f32_of(f: &GgufFile, key: &str) -> f32 {
    match f.get(key) {
        Some(Value::F32(v)) => *v,
        other => panic!("{}: {key} is {other:?}, expected FLOAT32", f.path().display()),
    }
}

fn str_of<'a>(f: &'a GgufFile, key: &str) -> &'a str {
    match f.get(key) {
        Some(Value::String(s)) => s,
        other => panic!("{}: {key} is {other:?}, expected STRING", f.path().display()),
    }
}

fn array_of<'a>(f: &'a GgufFile, key: &str, elem: ValueType) -> &'a [Value] {
    match f.get(key) {
        Some(Value::Array(t, items)) if *t == elem => items,
        other => panic!(
            "{}: {key} is {:?}, expected an array of {elem:?}",
            f.path().display(),
            other.map(|v| v.value_type())
        ),
    }
}

#[test]
fn every_fixture_gguf_is_covered() {
    let mut found: Vec<String> = std::fs::read_dir(fixture_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".gguf"))
        .collect();
    found.sort();
    let mut expected: Vec<String> = EXPECTED.iter().map(|e| e.file.to_string()).collect();
    expected.sort();
    assert_eq!(found, expected, "a fixture GGUF was added or removed: update EXPECTED");
}

#[test]
fn reads_llamacpp_fixtures() {
    for e in &EXPECTED {
        let path = fixture(e.file);
        let f = GgufFile::open(&path).unwrap_or_else(|err| panic!("{err}"));
        let h = f.header();
        let ctx = e.file;

        assert_eq!(h.version, 3, "{ctx}");
        assert_eq!(f.header().architecture(), Some(e.arch), "{ctx}");
        assert_eq!(f.tensors().len(), e.n_tensors, "{ctx}");
        assert_eq!(f.metadata().len(), e.n_kv, "{ctx}");
        assert_eq!(h.alignment, 32, "{ctx}");
        assert!(f.get("general.alignment").is_none(), "{ctx}: llama.cpp relies on the default alignment");
        assert_eq!(h.data_offset, e.data_offset, "{ctx}");
        assert_eq!(f.file_size(), std::fs::metadata(&path).unwrap().len(), "{ctx}");

        // Tensor types per file, as gguf-py counts them.
        let mut counts: BTreeMap<GgmlType, usize> = BTreeMap::new();
        for t in f.tensors() {
            *counts.entry(t.ty).or_default() += 1;
        }
        let want: BTreeMap<GgmlType, usize> = e.types.iter().copied().collect();
        assert_eq!(counts, want, "{ctx}");

        // token_embd.weight: ggml order [n_embd, n_vocab]; no output tensor (tied embeddings).
        let te = f.tensor_info("token_embd.weight").unwrap();
        assert_eq!(te.dims, vec![32, 151936], "{ctx}");
        assert_eq!(te.ty, e.token_embd_ty, "{ctx}");
        assert_eq!(te.offset, e.token_embd_offset, "{ctx}");
        assert_eq!(te.row_len(), 32);
        assert_eq!(te.n_rows(), 151936);
        assert_eq!(te.n_elements(), 32 * 151936);
        assert!(f.header().tensor("output.weight").is_none(), "{ctx}");
        assert!(matches!(f.tensor_info("output.weight"), Err(GgufError::MissingTensor { .. })), "{ctx}");

        // Every data slice has the size its type and shape say, lies inside the file, is aligned, and
        // tensors do not overlap (llama.cpp writes them back to back, each padded to the alignment).
        let mut spans = Vec::new();
        for t in f.tensors() {
            let row = t.ty.row_size(t.row_len() as usize).unwrap() as u64;
            assert_eq!(t.size, row * t.n_rows(), "{ctx}: {}", t.name);
            assert_eq!(f.data(t).len() as u64, t.size, "{ctx}: {}", t.name);
            assert_eq!(f.tensor_data(&t.name).unwrap().len() as u64, t.size, "{ctx}: {}", t.name);
            assert_eq!((h.data_offset + t.offset) % 32, 0, "{ctx}: {}", t.name);
            assert!(h.data_offset + t.offset + t.size <= f.file_size(), "{ctx}: {}", t.name);
            spans.push((t.offset, t.offset + t.size));
        }
        spans.sort();
        for w in spans.windows(2) {
            assert!(w[0].1 <= w[1].0, "{ctx}: overlapping tensors");
        }
        let last_end = spans.last().unwrap().1;
        assert_eq!(h.data_offset + last_end, f.file_size(), "{ctx}: data runs to the end of the file");

        // Metadata, values from llama.cpp's file as gguf-py reads them.
        let a = e.arch;
        assert_eq!(u32_of(&f, &format!("{a}.block_count")), 3, "{ctx}");
        assert_eq!(u32_of(&f, &format!("{a}.context_length")), 40960, "{ctx}");
        assert_eq!(u32_of(&f, &format!("{a}.embedding_length")), 32, "{ctx}");
        assert_eq!(u32_of(&f, &format!("{a}.feed_forward_length")), 64, "{ctx}");
        assert_eq!(u32_of(&f, &format!("{a}.attention.head_count")), 4, "{ctx}");
        assert_eq!(u32_of(&f, &format!("{a}.attention.head_count_kv")), 2, "{ctx}");
        assert_eq!(u32_of(&f, &format!("{a}.attention.key_length")), 16, "{ctx}");
        assert_eq!(u32_of(&f, &format!("{a}.attention.value_length")), 16, "{ctx}");
        assert_eq!(f32_of(&f, &format!("{a}.rope.freq_base")), 1_000_000.0, "{ctx}");
        // gguf-py: 9.999999974752427e-07, bits 0x358637bd.
        assert_eq!(f32_of(&f, &format!("{a}.attention.layer_norm_rms_epsilon")).to_bits(), 0x3586_37bd, "{ctx}");
        assert_eq!(u32_of(&f, "general.file_type"), e.file_type, "{ctx}");
        assert_eq!(u32_of(&f, "general.quantization_version"), 2, "{ctx}");
        assert_eq!(str_of(&f, "general.type"), "model", "{ctx}");
        assert_eq!(str_of(&f, "tokenizer.ggml.model"), "gpt2", "{ctx}");
        assert_eq!(str_of(&f, "tokenizer.ggml.pre"), "qwen2", "{ctx}");
        assert_eq!(u32_of(&f, "tokenizer.ggml.eos_token_id"), 151645, "{ctx}");
        assert_eq!(u32_of(&f, "tokenizer.ggml.padding_token_id"), 151643, "{ctx}");
        assert_eq!(u32_of(&f, "tokenizer.ggml.bos_token_id"), 151643, "{ctx}");
        assert_eq!(f.get("tokenizer.ggml.add_bos_token"), Some(&Value::Bool(false)), "{ctx}");
        assert_eq!(f.get("tokenizer.ggml.add_eos_token"), Some(&Value::Bool(false)), "{ctx}");
        let template = str_of(&f, "tokenizer.chat_template");
        assert_eq!(template.len(), 907, "{ctx}");
        assert!(template.starts_with("{%- for message in messages -%}{%- if loop.first and message"), "{ctx}");

        // Tokenizer arrays: gguf-py reports 151936 tokens / token types and 151387 merges.
        let tokens = array_of(&f, "tokenizer.ggml.tokens", ValueType::String);
        assert_eq!(tokens.len(), 151936, "{ctx}");
        assert_eq!(tokens[0].as_str(), Some("!"), "{ctx}");
        assert_eq!(tokens[151643].as_str(), Some("<|endoftext|>"), "{ctx}");
        assert_eq!(tokens[151645].as_str(), Some("<|im_end|>"), "{ctx}");
        assert_eq!(tokens[151935].as_str(), Some("[PAD151935]"), "{ctx}");
        let token_type = array_of(&f, "tokenizer.ggml.token_type", ValueType::I32);
        assert_eq!(token_type.len(), 151936, "{ctx}");
        assert_eq!(token_type[0], Value::I32(1), "{ctx}: normal");
        assert_eq!(token_type[151643], Value::I32(3), "{ctx}: control");
        assert_eq!(token_type[151935], Value::I32(5), "{ctx}: unused");
        let merges = array_of(&f, "tokenizer.ggml.merges", ValueType::String);
        assert_eq!(merges.len(), 151387, "{ctx}");
        assert_eq!(merges[0].as_str(), Some("Ġ Ġ"), "{ctx}");
        assert_eq!(merges[1].as_str(), Some("ĠĠ ĠĠ"), "{ctx}");
        assert_eq!(merges[151386].as_str(), Some("â½ Ĺ"), "{ctx}");
    }
}

#[test]
fn fixture_specific_values() {
    // qwen3-dense.f32.gguf: general.name and a few tensor bytes as gguf-py returns them.
    let f = GgufFile::open(fixture("qwen3-dense.f32.gguf")).unwrap();
    assert_eq!(str_of(&f, "general.name"), "Sailvl2 Tiny (Random Weights, Test Fixture)");
    assert_eq!(str_of(&f, "general.size_label"), "4.9M");
    let norm = f.tensor_info("output_norm.weight").unwrap();
    assert_eq!(norm.dims, vec![32]);
    assert_eq!(norm.offset, 19596416);
    let data = f.data(norm);
    let first: Vec<u32> = data[..16].chunks(4).map(|c| u32::from_le_bytes(c.try_into().unwrap())).collect();
    // gguf-py: output_norm.weight[:4] = [1.0859375, 1.09375, 1.015625, 0.93359375].
    assert_eq!(first, [1066074112, 1066139648, 1065484288, 1064239104]);
    let te = f.tensor_data("token_embd.weight").unwrap();
    // gguf-py: token_embd.weight[0, :2] = [-0.0634765625, 0.1904296875], bits 0xbd820000, 0x3e430000.
    assert_eq!(u32::from_le_bytes(te[0..4].try_into().unwrap()), 0xbd82_0000);
    assert_eq!(u32::from_le_bytes(te[4..8].try_into().unwrap()), 0x3e43_0000);

    // qwen3-dense.q8_0.gguf: first bytes of the first Q8_0 block of token_embd.weight (gguf-py raw uint8).
    let f = GgufFile::open(fixture("qwen3-dense.q8_0.gguf")).unwrap();
    let te = f.tensor_info("token_embd.weight").unwrap();
    assert_eq!(te.size, 5165824);
    assert_eq!(&f.data(te)[..8], &[0x85, 0x16, 0xd8, 0x78, 0xff, 0xb9, 0xf3, 0x31]);
    let down = f.tensor_info("blk.0.ffn_down.weight").unwrap();
    assert_eq!((down.dims.clone(), down.ty, down.offset, down.size), (vec![64, 32], GgmlType::Q8_0, 5165952, 2176));

    // qwen3-moe.q8_0.gguf: expert tensors are 3-D, plus the router.
    let f = GgufFile::open(fixture("qwen3-moe.q8_0.gguf")).unwrap();
    assert_eq!(str_of(&f, "general.name"), "Sailvl2 Moe Tiny (Random Weights, Test Fixture; Qwen3 MoE LM)");
    assert_eq!(u32_of(&f, "qwen3moe.expert_count"), 8);
    assert_eq!(u32_of(&f, "qwen3moe.expert_used_count"), 2);
    assert_eq!(u32_of(&f, "qwen3moe.expert_feed_forward_length"), 32);
    let exps = f.tensor_info("blk.1.ffn_up_exps.weight").unwrap();
    assert_eq!((exps.dims.clone(), exps.ty, exps.offset, exps.size), (vec![32, 32, 8], GgmlType::Q8_0, 5217408, 8704));
    let router = f.tensor_info("blk.2.ffn_gate_inp.weight").unwrap();
    assert_eq!(
        (router.dims.clone(), router.ty, router.offset, router.size),
        (vec![32, 8], GgmlType::F32, 5260160, 1024)
    );
}

#[test]
fn parse_of_bytes_matches_open() {
    let path = fixture("qwen3-dense.q4_0.gguf");
    let bytes = std::fs::read(&path).unwrap();
    let h = GgufHeader::parse(&bytes).unwrap();
    let f = GgufFile::open(&path).unwrap();
    assert_eq!(h.tensors, f.tensors());
    assert_eq!(h.metadata, f.metadata());
    assert_eq!(h.data_offset, f.header().data_offset);
}

// ---------------------------------------------------------------------------------------------------------
// Truncated copies of a real fixture
// ---------------------------------------------------------------------------------------------------------

/// Offsets in `qwen3-dense.q8_0.gguf`, from gguf-py (`ReaderField.offset`, `ReaderTensor.field.offset`).
mod q8 {
    pub const FILE: &str = "qwen3-dense.q8_0.gguf";
    pub const LEN: u64 = 11137920;
    /// Key `tokenizer.ggml.tokens` (21 bytes): type at +29, element type at +33, count at +37.
    pub const TOKENS_KV: u64 = 798;
    /// Key `tokenizer.ggml.eos_token_id` (27 bytes): type at +35, value at +39.
    pub const EOS_KV: u64 = 5928437;
    /// Key `tokenizer.chat_template` (23 bytes): value length at +35, 907 bytes of text at +43.
    pub const TEMPLATE_KV: u64 = 5928652;
    /// First tensor info (`token_embd.weight`, 17 bytes): n_dims at +25.
    pub const FIRST_INFO: u64 = 5929602;
    /// Last tensor info (`output_norm.weight`, 18 bytes, 1 dim): type at +38, offset at +42.
    pub const LAST_INFO: u64 = 5931582;
    pub const DATA: u64 = 5931648;
}

fn cut(bytes: &[u8], at: u64) -> FormatError {
    match GgufHeader::parse(&bytes[..at as usize]) {
        Ok(_) => panic!("file cut at {at} bytes was accepted"),
        Err(e) => e,
    }
}

fn assert_names(e: &FormatError, parts: &[&str]) {
    let msg = e.to_string();
    for p in parts {
        assert!(msg.contains(p), "message {msg:?} does not contain {p:?}");
    }
}

fn q8_bytes() -> Vec<u8> {
    let bytes = std::fs::read(fixture(q8::FILE)).unwrap();
    assert_eq!(bytes.len() as u64, q8::LEN);
    bytes
}

#[test]
fn truncated_inside_header() {
    let b = q8_bytes();
    let e = cut(&b, 2);
    assert_eq!(e, FormatError::Truncated { what: "magic".into(), offset: 0, need: 4, len: 2 });
    assert_names(&e, &["magic", "offset 0", "byte 2"]);
    let e = cut(&b, 6);
    assert_eq!(e, FormatError::Truncated { what: "version".into(), offset: 4, need: 4, len: 6 });
    assert_names(&e, &["version", "offset 4"]);
    let e = cut(&b, 12);
    assert_eq!(e, FormatError::Truncated { what: "tensor count".into(), offset: 8, need: 8, len: 12 });
    assert_names(&e, &["tensor count", "offset 8"]);
    let e = cut(&b, 20);
    assert_eq!(e, FormatError::Truncated { what: "metadata KV count".into(), offset: 16, need: 8, len: 20 });
    assert_names(&e, &["metadata KV count", "offset 16"]);
    // Right after the counts: 27 KV pairs cannot fit in what is left.
    let e = cut(&b, 300);
    assert_eq!(e, FormatError::AbsurdCount { what: "metadata KV", count: 27, offset: 16, remaining: 276 });
    assert_names(&e, &["metadata KV count 27", "offset 16"]);
}

#[test]
fn truncated_inside_metadata() {
    let b = q8_bytes();
    // Inside the tokens array: 151936 strings of at least 8 bytes each cannot fit.
    let count_at = q8::TOKENS_KV + 37;
    let e = cut(&b, 100_000);
    assert_eq!(
        e,
        FormatError::LengthPastEnd {
            what: "array 'tokenizer.ggml.tokens'".into(),
            offset: count_at,
            len: 151936,
            remaining: 100_000 - (count_at + 8),
        }
    );
    assert_names(&e, &["tokenizer.ggml.tokens", &format!("offset {count_at}")]);

    // Inside the key string of tokenizer.ggml.eos_token_id.
    let e = cut(&b, q8::EOS_KV + 8 + 10);
    assert_eq!(
        e,
        FormatError::LengthPastEnd { what: "metadata key".into(), offset: q8::EOS_KV, len: 27, remaining: 10 }
    );
    assert_names(&e, &["metadata key", &format!("offset {}", q8::EOS_KV)]);

    // Inside its value type id.
    let e = cut(&b, q8::EOS_KV + 35 + 2);
    assert_eq!(
        e,
        FormatError::Truncated { what: "value type".into(), offset: q8::EOS_KV + 35, need: 4, len: q8::EOS_KV + 37 }
    );
    assert_names(&e, &[&format!("offset {}", q8::EOS_KV + 35)]);

    // Inside its UINT32 value.
    let e = cut(&b, q8::EOS_KV + 39 + 3);
    assert_eq!(
        e,
        FormatError::Truncated {
            what: "value of 'tokenizer.ggml.eos_token_id'".into(),
            offset: q8::EOS_KV + 39,
            need: 4,
            len: q8::EOS_KV + 42,
        }
    );
    assert_names(&e, &["tokenizer.ggml.eos_token_id", &format!("offset {}", q8::EOS_KV + 39)]);

    // Inside the chat template text.
    let e = cut(&b, q8::TEMPLATE_KV + 43 + 305);
    assert_eq!(
        e,
        FormatError::LengthPastEnd {
            what: "value of 'tokenizer.chat_template'".into(),
            offset: q8::TEMPLATE_KV + 35,
            len: 907,
            remaining: 305,
        }
    );
    assert_names(&e, &["tokenizer.chat_template", &format!("offset {}", q8::TEMPLATE_KV + 35)]);
}

#[test]
fn truncated_inside_tensor_infos() {
    let b = q8_bytes();
    // Inside the first tensor's name.
    let e = cut(&b, q8::FIRST_INFO + 8 + 5);
    assert_eq!(
        e,
        FormatError::LengthPastEnd { what: "tensor name".into(), offset: q8::FIRST_INFO, len: 17, remaining: 5 }
    );
    assert_names(&e, &["tensor name", &format!("offset {}", q8::FIRST_INFO)]);
    // Inside its n_dims.
    let e = cut(&b, q8::FIRST_INFO + 25 + 2);
    assert_eq!(
        e,
        FormatError::Truncated {
            what: "tensor n_dims".into(),
            offset: q8::FIRST_INFO + 25,
            need: 4,
            len: q8::FIRST_INFO + 27,
        }
    );
    assert_names(&e, &["n_dims", &format!("offset {}", q8::FIRST_INFO + 25)]);
    // Inside the last tensor's data offset.
    let e = cut(&b, q8::LAST_INFO + 42 + 4);
    assert_eq!(
        e,
        FormatError::Truncated {
            what: "tensor data offset".into(),
            offset: q8::LAST_INFO + 42,
            need: 8,
            len: q8::LAST_INFO + 46,
        }
    );
    assert_names(&e, &["tensor data offset", &format!("offset {}", q8::LAST_INFO + 42)]);
}

#[test]
fn truncated_inside_data() {
    let b = q8_bytes();
    let embd_end = q8::DATA + 5165824;
    // In the padding before the data section, inside the first tensor, and one byte short of the end.
    for at in [q8::DATA - 8, q8::DATA, q8::DATA + 100, embd_end - 1] {
        let e = cut(&b, at);
        assert_eq!(
            e,
            FormatError::DataOutOfBounds {
                tensor: "token_embd.weight".into(),
                start: q8::DATA,
                end: embd_end,
                len: at
            }
        );
        assert_names(&e, &["token_embd.weight", &q8::DATA.to_string(), &format!("{at} bytes")]);
    }
    let e = cut(&b, q8::LEN - 1);
    let norm_start = q8::DATA + 5206144;
    assert_eq!(
        e,
        FormatError::DataOutOfBounds {
            tensor: "output_norm.weight".into(),
            start: norm_start,
            end: q8::LEN,
            len: q8::LEN - 1
        }
    );
    assert_names(&e, &["output_norm.weight", &norm_start.to_string()]);
}

#[test]
fn truncated_anywhere_is_an_error_never_a_panic() {
    let b = q8_bytes();
    let len = b.len() as u64;
    // A spread of cut points through header, metadata, tensor infos and data.
    let mut points: Vec<u64> = (0..24).collect();
    points.extend((1..40).map(|i| i * len / 40));
    points.extend([q8::FIRST_INFO - 1, q8::FIRST_INFO, q8::FIRST_INFO + 1, q8::LAST_INFO + 49, q8::LAST_INFO + 50]);
    for at in points {
        assert!(GgufHeader::parse(&b[..at as usize]).is_err(), "cut at {at} accepted");
    }
    assert!(GgufHeader::parse(&b).is_ok());
}

// ---------------------------------------------------------------------------------------------------------
// Hand-built malformed files
// ---------------------------------------------------------------------------------------------------------

/// A little-endian byte builder for GGUF images.
#[derive(Default, Clone)]
struct Bytes(Vec<u8>);

impl Bytes {
    /// Magic, version, tensor count and KV count.
    fn header(version: u32, n_tensors: u64, n_kv: u64) -> Bytes {
        let mut b = Bytes::default();
        b.raw(b"GGUF").u32(version).u64(n_tensors).u64(n_kv);
        b
    }

    fn pos(&self) -> u64 {
        self.0.len() as u64
    }

    fn raw(&mut self, bytes: &[u8]) -> &mut Self {
        self.0.extend_from_slice(bytes);
        self
    }

    fn u8(&mut self, v: u8) -> &mut Self {
        self.raw(&[v])
    }

    fn u32(&mut self, v: u32) -> &mut Self {
        self.raw(&v.to_le_bytes())
    }

    fn u64(&mut self, v: u64) -> &mut Self {
        self.raw(&v.to_le_bytes())
    }

    fn string(&mut self, s: &str) -> &mut Self {
        self.u64(s.len() as u64).raw(s.as_bytes())
    }

    /// Key and type id (the value follows).
    fn key(&mut self, key: &str, ty: u32) -> &mut Self {
        self.string(key).u32(ty)
    }

    fn kv_u32(&mut self, key: &str, v: u32) -> &mut Self {
        self.key(key, 4).u32(v)
    }

    fn kv_str(&mut self, key: &str, v: &str) -> &mut Self {
        self.key(key, 8).string(v)
    }

    fn tensor(&mut self, name: &str, dims: &[u64], ty: u32, offset: u64) -> &mut Self {
        self.string(name).u32(dims.len() as u32);
        for &d in dims {
            self.u64(d);
        }
        self.u32(ty).u64(offset)
    }

    /// Zero padding up to a multiple of `align`.
    fn pad(&mut self, align: u64) -> &mut Self {
        while !self.pos().is_multiple_of(align) {
            self.u8(0);
        }
        self
    }

    fn zeros(&mut self, n: usize) -> &mut Self {
        self.0.resize(self.0.len() + n, 0);
        self
    }

    fn bytes(&self) -> Vec<u8> {
        self.0.clone()
    }
}

const F32: u32 = 0;
const Q8_0: u32 = 8;

fn parse_err(b: &Bytes) -> FormatError {
    match GgufHeader::parse(&b.bytes()) {
        Ok(h) => panic!("malformed file accepted: {} tensors, {} KVs", h.tensors.len(), h.metadata.len()),
        Err(e) => e,
    }
}

/// A valid file: one KV and the given tensors (already described), with `data` bytes of data.
fn with_tensors(tensors: &[(&str, &[u64], u32, u64)], data: usize) -> Bytes {
    let mut b = Bytes::header(3, tensors.len() as u64, 1);
    b.kv_str("general.architecture", "test");
    for (name, dims, ty, off) in tensors {
        b.tensor(name, dims, *ty, *off);
    }
    b.pad(32).zeros(data);
    b
}

#[test]
fn hand_built_valid_file_parses() {
    // The builder itself is right: a well-formed file with two tensors is accepted.
    let b = with_tensors(&[("a", &[32, 2], F32, 0), ("b", &[64], Q8_0, 256)], 256 + 68);
    let h = GgufHeader::parse(&b.bytes()).unwrap();
    assert_eq!(h.version, 3);
    assert_eq!(h.architecture(), Some("test"));
    assert_eq!(h.tensors.len(), 2);
    assert_eq!(h.tensor("b").unwrap().size, 68);
    assert_eq!(h.data_offset % 32, 0);
    // Version 2 is accepted too.
    let mut v2 = b.clone();
    v2.0[4..8].copy_from_slice(&2u32.to_le_bytes());
    assert_eq!(GgufHeader::parse(&v2.bytes()).unwrap().version, 2);
    // A 63-byte name is the longest ggml allows.
    let name = "n".repeat(63);
    let b = with_tensors(&[(&name, &[32], F32, 0)], 128);
    assert!(GgufHeader::parse(&b.bytes()).is_ok());
}

#[test]
fn empty_input_is_truncated() {
    assert_eq!(
        GgufHeader::parse(&[]).unwrap_err(),
        FormatError::Truncated { what: "magic".into(), offset: 0, need: 4, len: 0 }
    );
}

#[test]
fn wrong_magic() {
    let mut b = Bytes::default();
    b.raw(b"GGML").u32(3).u64(0).u64(0);
    let e = parse_err(&b);
    assert_eq!(e, FormatError::BadMagic { found: b"GGML".to_vec() });
    assert_names(&e, &["47, 47, 4d, 4c"]);
}

#[test]
fn version_1_is_unsupported() {
    let e = parse_err(&Bytes::header(1, 0, 0));
    assert_eq!(e, FormatError::UnsupportedVersion(1));
    assert_names(&e, &["version 1"]);
    assert_eq!(parse_err(&Bytes::header(4, 0, 0)), FormatError::UnsupportedVersion(4));
    assert_eq!(parse_err(&Bytes::header(0, 0, 0)), FormatError::UnsupportedVersion(0));
}

#[test]
fn big_endian_version() {
    let mut b = Bytes::default();
    b.raw(b"GGUF").raw(&3u32.to_be_bytes()).raw(&0u64.to_be_bytes()).raw(&0u64.to_be_bytes());
    let e = parse_err(&b);
    assert_eq!(e, FormatError::BigEndian);
    assert_names(&e, &["big-endian"]);
}

#[test]
fn absurd_tensor_count() {
    let mut b = Bytes::header(3, u64::MAX, 0);
    b.zeros(1000);
    let e = parse_err(&b);
    assert_eq!(e, FormatError::AbsurdCount { what: "tensor", count: u64::MAX, offset: 8, remaining: 1000 });
    assert_names(&e, &["tensor count 18446744073709551615", "offset 8"]);
    // Not absurd, but still more than 1000 bytes can hold (at least 33 bytes each).
    let mut b = Bytes::header(3, 1000 / 33 + 1, 0);
    b.zeros(1000);
    assert!(matches!(parse_err(&b), FormatError::AbsurdCount { what: "tensor", .. }));
}

#[test]
fn absurd_kv_count() {
    let mut b = Bytes::header(3, 0, u64::MAX);
    b.zeros(1000);
    let e = parse_err(&b);
    assert_eq!(e, FormatError::AbsurdCount { what: "metadata KV", count: u64::MAX, offset: 16, remaining: 1000 });
    assert_names(&e, &["metadata KV count 18446744073709551615", "offset 16"]);
}

#[test]
fn key_length_past_end_of_file() {
    let mut b = Bytes::header(3, 0, 1);
    b.u64(1000).raw(b"general.name");
    b.zeros(10);
    let e = parse_err(&b);
    assert_eq!(e, FormatError::LengthPastEnd { what: "metadata key".into(), offset: 24, len: 1000, remaining: 22 });
    assert_names(&e, &["metadata key", "offset 24", "length 1000"]);
}

#[test]
fn string_value_length_past_end_of_file() {
    let mut b = Bytes::header(3, 0, 1);
    b.key("general.name", 8);
    let at = b.pos();
    b.u64(u64::MAX / 2).raw(b"abc");
    let e = parse_err(&b);
    assert!(
        matches!(&e, FormatError::LengthOverLimit { what, offset, .. } if what == "value of 'general.name'" && *offset == at),
        "{e:?}"
    );
    let mut b = Bytes::header(3, 0, 1);
    b.key("general.name", 8).u64(100).raw(b"abc");
    let e = parse_err(&b);
    assert_eq!(
        e,
        FormatError::LengthPastEnd { what: "value of 'general.name'".into(), offset: at, len: 100, remaining: 3 }
    );
    assert_names(&e, &["general.name", &format!("offset {at}")]);
}

#[test]
fn string_over_1_gib_limit() {
    let limit = 1u64 << 30;
    let mut b = Bytes::header(3, 0, 1);
    b.u64(limit + 1);
    b.zeros(64);
    let e = parse_err(&b);
    assert_eq!(e, FormatError::LengthOverLimit { what: "metadata key".into(), offset: 24, len: limit + 1, limit });
    assert_names(&e, &["metadata key", "offset 24", "1073741824"]);

    // An array of more than 1 GiB elements, too.
    let mut b = Bytes::header(3, 0, 1);
    b.key("tokenizer.ggml.scores", 9).u32(6);
    let at = b.pos();
    b.u64(limit + 1).zeros(64);
    let e = parse_err(&b);
    assert_eq!(
        e,
        FormatError::LengthOverLimit {
            what: "array 'tokenizer.ggml.scores'".into(),
            offset: at,
            len: limit + 1,
            limit
        }
    );
    assert_names(&e, &["tokenizer.ggml.scores", &format!("offset {at}")]);
}

#[test]
fn array_count_past_end_of_file() {
    let mut b = Bytes::header(3, 0, 1);
    b.key("tokenizer.ggml.token_type", 9).u32(5);
    let at = b.pos();
    // 100 INT32s need 400 bytes; 40 are left.
    b.u64(100).zeros(40);
    let e = parse_err(&b);
    assert_eq!(
        e,
        FormatError::LengthPastEnd {
            what: "array 'tokenizer.ggml.token_type'".into(),
            offset: at,
            len: 100,
            remaining: 40
        }
    );
    assert_names(&e, &["tokenizer.ggml.token_type", &format!("offset {at}")]);
}

#[test]
fn invalid_utf8_key() {
    let mut b = Bytes::header(3, 0, 1);
    b.u64(2).raw(&[0xff, 0xfe]).u32(4).u32(0);
    let e = parse_err(&b);
    assert_eq!(e, FormatError::InvalidUtf8 { what: "metadata key".into(), offset: 24 });
    assert_names(&e, &["metadata key", "offset 24", "UTF-8"]);
}

#[test]
fn unknown_value_type() {
    let mut b = Bytes::header(3, 0, 1);
    b.string("general.weird");
    let at = b.pos();
    b.u32(13).zeros(16);
    let e = parse_err(&b);
    assert_eq!(e, FormatError::UnknownValueType { key: "general.weird".into(), id: 13, offset: at });
    assert_names(&e, &["general.weird", "13", &format!("offset {at}")]);

    // Unknown element type of an array.
    let mut b = Bytes::header(3, 0, 1);
    b.key("general.weird", 9);
    let at = b.pos();
    b.u32(0xdead_beef).u64(1).zeros(16);
    let e = parse_err(&b);
    assert_eq!(e, FormatError::UnknownValueType { key: "general.weird".into(), id: 0xdead_beef, offset: at });
}

#[test]
fn nested_array() {
    let mut b = Bytes::header(3, 0, 1);
    b.key("general.nested", 9);
    let at = b.pos();
    b.u32(9).u64(1).u32(4).u64(1).u32(7);
    let e = parse_err(&b);
    assert_eq!(e, FormatError::NestedArray { key: "general.nested".into(), offset: at });
    assert_names(&e, &["general.nested", &format!("offset {at}")]);
}

#[test]
fn duplicate_key() {
    let mut b = Bytes::header(3, 0, 3);
    b.kv_str("general.name", "a").kv_u32("general.file_type", 1);
    let at = b.pos();
    b.kv_str("general.name", "b");
    let e = parse_err(&b);
    assert_eq!(e, FormatError::DuplicateKey { key: "general.name".into(), offset: at });
    assert_names(&e, &["general.name", &format!("offset {at}")]);
}

#[test]
fn bad_alignment_not_power_of_two() {
    for a in [0u32, 3, 48, u32::MAX] {
        let mut b = Bytes::header(3, 0, 1);
        b.kv_u32("general.alignment", a);
        let e = parse_err(&b);
        assert!(matches!(&e, FormatError::BadAlignment { reason } if reason.contains(&a.to_string())), "{e:?}");
        assert_names(&e, &["general.alignment", &a.to_string()]);
    }
}

#[test]
fn bad_alignment_wrong_type() {
    // UINT64 32 and a string: ggml requires UINT32.
    let mut b = Bytes::header(3, 0, 1);
    b.key("general.alignment", 10).u64(32);
    let e = parse_err(&b);
    assert!(matches!(&e, FormatError::BadAlignment { reason } if reason.contains("U64")), "{e:?}");
    assert_names(&e, &["general.alignment", "UINT32"]);
    let mut b = Bytes::header(3, 0, 1);
    b.kv_str("general.alignment", "32");
    assert!(matches!(parse_err(&b), FormatError::BadAlignment { .. }));
}

#[test]
fn custom_alignment_is_used() {
    let mut b = Bytes::header(3, 2, 1);
    b.kv_u32("general.alignment", 64);
    b.tensor("a", &[4], F32, 0).tensor("b", &[4], F32, 64);
    b.pad(64).zeros(80);
    let h = GgufHeader::parse(&b.bytes()).unwrap();
    assert_eq!(h.alignment, 64);
    assert_eq!(h.data_offset % 64, 0);

    // Offset 32 is fine for the default alignment but not for 64.
    let mut b = Bytes::header(3, 2, 1);
    b.kv_u32("general.alignment", 64);
    b.tensor("a", &[4], F32, 0).tensor("b", &[4], F32, 32);
    b.pad(64).zeros(128);
    let e = parse_err(&b);
    assert_eq!(e, FormatError::Misaligned { tensor: "b".into(), offset: 32, alignment: 64 });
}

#[test]
fn tensor_offset_past_end_of_file() {
    let b = with_tensors(&[("a", &[32], F32, 0), ("b", &[32], F32, 4096)], 128);
    let data = b.pos() - 128;
    let e = parse_err(&b);
    assert_eq!(
        e,
        FormatError::DataOutOfBounds { tensor: "b".into(), start: data + 4096, end: data + 4096 + 128, len: b.pos() }
    );
    assert_names(&e, &["'b'", &(data + 4096).to_string()]);

    // Offsets near u64::MAX do not wrap around.
    let huge: u64 = !31; // u64::MAX rounded down to the alignment
    let b = with_tensors(&[("far", &[32], F32, huge)], 128);
    let e = parse_err(&b);
    assert_eq!(e, FormatError::DataOutOfBounds { tensor: "far".into(), start: u64::MAX, end: u64::MAX, len: b.pos() });
}

#[test]
fn overlapping_tensors() {
    // a = [0, 256), b = [128, 256): b starts inside a.
    let b = with_tensors(&[("a", &[64], F32, 0), ("b", &[32], F32, 128)], 256);
    let data = b.pos() - 256;
    let e = parse_err(&b);
    assert_eq!(e, FormatError::Overlap { tensor: "b".into(), other: "a".into(), start: data + 128, end: data + 256 });
    assert_names(&e, &["'a'", "'b'", &(data + 128).to_string()]);

    // Same offset, declared in the other order.
    let b = with_tensors(&[("big", &[64], F32, 0), ("small", &[8], F32, 0)], 256);
    assert!(matches!(parse_err(&b), FormatError::Overlap { .. }));
}

/// Reader regression: a zero-size tensor placed between two overlapping ones must not hide the overlap
/// (the check once compared offset-order neighbours including zero-size tensors).
#[test]
fn overlap_hidden_by_zero_size_tensor() {
    // a = [0, 256), z = [64, 64) (no data), b = [128, 192): b overlaps a.
    let b = with_tensors(&[("a", &[64], F32, 0), ("z", &[0], F32, 64), ("b", &[16], F32, 128)], 256);
    assert!(matches!(parse_err(&b), FormatError::Overlap { .. }));
}

#[test]
fn misaligned_tensor_offset() {
    let b = with_tensors(&[("a", &[4], F32, 0), ("b", &[4], F32, 16)], 64);
    let e = parse_err(&b);
    assert_eq!(e, FormatError::Misaligned { tensor: "b".into(), offset: 16, alignment: 32 });
    assert_names(&e, &["'b'", "offset 16", "alignment 32"]);
}

#[test]
fn unknown_ggml_type() {
    // 4 was Q4_2 (removed from ggml); 16 is IQ2_XXS, which this build does not know; 1000 was never a type.
    for id in [4u32, 16, 1000] {
        let mut b = Bytes::header(3, 1, 1);
        b.kv_str("general.architecture", "test");
        let info = b.pos();
        b.tensor("blk.0.attn_q.weight", &[256, 2], id, 0);
        b.pad(32).zeros(1024);
        let e = parse_err(&b);
        let type_at = info + 8 + 19 + 4 + 16;
        assert_eq!(e, FormatError::UnknownType { tensor: "blk.0.attn_q.weight".into(), id, offset: type_at });
        assert_names(&e, &["blk.0.attn_q.weight", &format!("offset {type_at}"), &format!("id {id}")]);
    }
}

#[test]
fn duplicate_tensor_names() {
    let mut b = Bytes::header(3, 2, 1);
    b.kv_str("general.architecture", "test");
    b.tensor("t", &[8], F32, 0);
    let at = b.pos();
    b.tensor("t", &[8], F32, 32);
    b.pad(32).zeros(64);
    let e = parse_err(&b);
    assert_eq!(e, FormatError::DuplicateTensor { tensor: "t".into(), offset: at });
    assert_names(&e, &["'t'", &format!("offset {at}")]);
}

#[test]
fn five_dimensions() {
    let mut b = Bytes::header(3, 1, 1);
    b.kv_str("general.architecture", "test");
    let info = b.pos();
    b.tensor("t5", &[1, 1, 1, 1, 1], F32, 0);
    b.pad(32).zeros(64);
    let e = parse_err(&b);
    assert_eq!(e, FormatError::BadDimCount { tensor: "t5".into(), n_dims: 5, offset: info + 10 });
    assert_names(&e, &["'t5'", "5 dimensions", &format!("offset {}", info + 10)]);
}

#[test]
fn zero_dimensions() {
    let mut b = Bytes::header(3, 1, 1);
    b.kv_str("general.architecture", "test");
    let info = b.pos();
    b.tensor("t0", &[], F32, 0);
    b.pad(32).zeros(64);
    let e = parse_err(&b);
    assert_eq!(e, FormatError::BadDimCount { tensor: "t0".into(), n_dims: 0, offset: info + 10 });
    assert_names(&e, &["'t0'", "0 dimensions"]);
}

#[test]
fn ne0_not_a_multiple_of_the_block_size() {
    let b = with_tensors(&[("q", &[33, 2], Q8_0, 0)], 256);
    let e = parse_err(&b);
    assert_eq!(e, FormatError::NotBlockMultiple { tensor: "q".into(), ne0: 33, ty: "q8_0".into(), block: 32 });
    assert_names(&e, &["'q'", "33", "q8_0", "32"]);
    // K-quants need multiples of 256.
    let b = with_tensors(&[("k", &[128], 12, 0)], 256);
    assert!(matches!(parse_err(&b), FormatError::NotBlockMultiple { block: 256, .. }));
}

#[test]
fn name_of_64_bytes() {
    let name = "x".repeat(64);
    let mut b = Bytes::header(3, 1, 1);
    b.kv_str("general.architecture", "test");
    let info = b.pos();
    b.tensor(&name, &[32], F32, 0);
    b.pad(32).zeros(128);
    let e = parse_err(&b);
    assert_eq!(e, FormatError::NameTooLong { tensor: name.clone(), len: 64, offset: info });
    assert_names(&e, &[&name, "64 bytes", &format!("offset {info}")]);
}

#[test]
fn element_count_overflow() {
    for dims in [&[1u64 << 32, 1 << 32][..], &[1 << 62, 2], &[u64::MAX], &[2, 3, 5, u64::MAX / 16]] {
        let mut b = Bytes::header(3, 1, 1);
        b.kv_str("general.architecture", "test");
        let info = b.pos();
        b.tensor("huge", dims, F32, 0);
        b.pad(32).zeros(128);
        let e = parse_err(&b);
        assert_eq!(e, FormatError::ShapeOverflow { tensor: "huge".into(), dims: dims.to_vec(), offset: info });
        assert_names(&e, &["'huge'", &format!("offset {info}")]);
    }
    // Elements fit in int64 but the byte size does not (F64: 8 bytes each).
    let dims = [1u64 << 62];
    let b = with_tensors(&[("wide", &dims, 28, 0)], 128);
    assert!(matches!(parse_err(&b), FormatError::ShapeOverflow { .. }));
}

// ---------------------------------------------------------------------------------------------------------
// GgufFile::open on the file system
// ---------------------------------------------------------------------------------------------------------

#[test]
fn open_missing_path_is_io_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no-such-model.gguf");
    let err = GgufFile::open(&path).unwrap_err();
    match &err {
        GgufError::Io { path: p, source } => {
            assert_eq!(p, &path);
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("expected Io, got {other:?}"),
    }
    assert!(err.to_string().contains("no-such-model.gguf"), "{err}");
}

#[test]
fn open_empty_file_is_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.gguf");
    std::fs::write(&path, b"").unwrap();
    match GgufFile::open(&path).unwrap_err() {
        GgufError::Format { path: p, source } => {
            assert_eq!(p, path);
            assert_eq!(source, FormatError::Truncated { what: "magic".into(), offset: 0, need: 4, len: 0 });
        }
        other => panic!("expected a Format error, got {other:?}"),
    }
}

#[test]
fn open_malformed_file_names_path_and_problem() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("overlap.gguf");
    std::fs::write(&path, with_tensors(&[("a", &[64], F32, 0), ("b", &[32], F32, 128)], 256).bytes()).unwrap();
    let err = GgufFile::open(&path).unwrap_err();
    assert!(matches!(&err, GgufError::Format { source: FormatError::Overlap { .. }, .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("overlap.gguf") && msg.contains("'b'"), "{msg}");
}

// ---------------------------------------------------------------------------------------------------------
// Regressions found by fuzzing (fuzz/README.md)
// ---------------------------------------------------------------------------------------------------------

/// `fuzz/artifacts/gguf_parse/crash-515b511f…`, minimized by libFuzzer to 128 bytes: tensor '' with dims
/// [0x400000005d5d5d01, 0, 0], F32. The zero dims made the element count 0, so the shape was accepted although
/// its row size (ne0 × 4 bytes) overflows: `GgmlType::row_size(row_len)` returned None for an accepted tensor.
const FUZZ_ROW_SIZE_OVERFLOW: [u8; 128] = [
    0x47, 0x47, 0x55, 0x46, 0x03, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x67, 0x65, 0x66, 0x65, 0x72, 0x61,
    0x6c, 0x2e, 0x61, 0x72, 0x63, 0x68, 0x69, 0x74, 0x27, 0x63, 0x74, 0x75, 0x72, 0x65, 0x08, 0x00, 0x00, 0x00, 0x05,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x71, 0x7f, 0x65, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x03, 0x00, 0x00, 0x00, 0x01, 0x5d, 0x5d, 0x5d, 0x00, 0x00, 0x00, 0x40, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x5d, 0x5d, 0x5d, 0x5d, 0x5d, 0x5d, 0x00,
];

#[test]
fn fuzz_regression_row_size_overflow_hidden_by_zero_dims() {
    let e = GgufHeader::parse(&FUZZ_ROW_SIZE_OVERFLOW).unwrap_err();
    assert_eq!(
        e,
        FormatError::ShapeOverflow { tensor: String::new(), dims: vec![0x4000_0000_5d5d_5d01, 0, 0], offset: 69 }
    );
}

#[test]
fn zero_dims_do_not_hide_overflowing_rows_or_strides() {
    // Any shape accepted with an element count of 0 must still have a representable row size and row count:
    // `TensorInfo::n_rows()` multiplied [2^40, 2^40] (overflow panic in debug builds) for [0, 2^40, 2^40].
    for (dims, ty) in [
        (&[0u64, 1 << 40, 1 << 40][..], F32),
        (&[1 << 62, 0], F32),
        (&[1 << 61, 0, 3], 28),
        (&[32, 1 << 62, 0, 4], Q8_0),
    ] {
        let b = with_tensors(&[("z", dims, ty, 0)], 64);
        assert!(matches!(parse_err(&b), FormatError::ShapeOverflow { .. }), "{dims:?} accepted");
    }
    // Zero-size tensors with sane shapes are still fine, and every derived count is computable.
    for dims in [&[0u64][..], &[0, 1 << 20], &[32, 0, 1 << 20, 7]] {
        let b = with_tensors(&[("z", dims, F32, 0)], 64);
        let h = GgufHeader::parse(&b.bytes()).unwrap();
        let t = &h.tensors[0];
        assert_eq!((t.size, t.n_elements()), (0, 0));
        let _ = t.n_rows();
        assert!(t.ty.row_size(t.row_len() as usize).is_some());
    }
}
