//! The GGUF-built tokenizer against the Python `tokenizers` goldens (`shared/fixtures/tokenizer_cases.json`)
//! and the SAIL-VL2 prompt goldens (`sailvl2-tiny/golden/*`), plus metadata error handling.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Instant;

use runtime::gguf::{GgufFile, GgufWriter, Value, ValueType};
use runtime::tokenizer::{TokenType, Tokenizer, TokenizerError};

const IMG_CONTEXT: u32 = 151671;
const THINK: u32 = 151667;
const IM_END: u32 = 151645;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures")
}

/// One tokenizer for all tests (151k tokens + 151k merges: build it once).
fn tok() -> &'static Tokenizer {
    static TOK: OnceLock<Tokenizer> = OnceLock::new();
    TOK.get_or_init(|| {
        let path = fixtures().join("llamacpp/qwen3-dense.q8_0.gguf");
        let t0 = Instant::now();
        let file = GgufFile::open(&path).expect("open GGUF fixture");
        let t1 = Instant::now();
        let tok = Tokenizer::from_gguf(&file).expect("tokenizer from GGUF");
        eprintln!(
            "GgufFile::open {:.1} ms, Tokenizer::from_gguf {:.1} ms",
            (t1 - t0).as_secs_f64() * 1e3,
            t1.elapsed().as_secs_f64() * 1e3
        );
        tok
    })
}

fn golden() -> serde_json::Value {
    let text = std::fs::read_to_string(fixtures().join("tokenizer_cases.json")).expect("read tokenizer_cases.json");
    serde_json::from_str(&text).expect("parse tokenizer_cases.json")
}

fn stream_all(tok: &Tokenizer, ids: &[u32], skip_special: bool) -> (String, Vec<String>) {
    let mut s = tok.stream(skip_special);
    let mut chunks = Vec::new();
    for &id in ids {
        chunks.push(s.push(id).expect("push"));
    }
    chunks.push(s.finish());
    (chunks.concat(), chunks)
}

#[test]
fn tokenizer_is_send_sync() {
    fn check<T: Send + Sync>() {}
    check::<Tokenizer>();
}

#[test]
fn golden_cases() {
    let tok = tok();
    let g = golden();
    let cases = g["cases"].as_array().expect("cases");
    assert_eq!(cases.len(), 41);
    let mut failures = Vec::new();
    let mut passed = 0;
    for (i, case) in cases.iter().enumerate() {
        let text = case["text"].as_str().unwrap();
        let ids: Vec<u32> = case["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        let tokens: Vec<&str> = case["tokens"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        let decoded = case["decoded"].as_str().unwrap();
        let decoded_skip = case["decoded_skip_special"].as_str().unwrap();
        let mut bad = Vec::new();

        let got = tok.encode(text).unwrap();
        if got != ids {
            bad.push(format!("encode: got {got:?}, want {ids:?}"));
        }
        let got_tokens: Vec<&str> = ids.iter().map(|&id| tok.id_to_token(id).unwrap_or("<none>")).collect();
        if got_tokens != tokens {
            bad.push(format!("tokens: got {got_tokens:?}, want {tokens:?}"));
        }
        for &id in &ids {
            if tok.token_to_id(tok.id_to_token(id).unwrap()) != Some(id) {
                bad.push(format!("token_to_id(id_to_token({id})) != {id}"));
            }
        }
        let d = tok.decode(&ids, false).unwrap();
        if d != decoded {
            bad.push(format!("decode: got {d:?}, want {decoded:?}"));
        }
        let d = tok.decode(&ids, true).unwrap();
        if d != decoded_skip {
            bad.push(format!("decode skip_special: got {d:?}, want {decoded_skip:?}"));
        }
        let (s, chunks) = stream_all(tok, &ids, false);
        if s != decoded {
            bad.push(format!("stream: got {s:?}, want {decoded:?}"));
        }
        if chunks.iter().any(|c| c.contains('\u{FFFD}')) && !decoded.contains('\u{FFFD}') {
            bad.push(format!("stream produced a replacement char: {chunks:?}"));
        }
        let (s, _) = stream_all(tok, &ids, true);
        if s != decoded_skip {
            bad.push(format!("stream skip_special: got {s:?}, want {decoded_skip:?}"));
        }
        if case["roundtrip"].as_bool().unwrap() && decoded != text {
            bad.push("golden says roundtrip but decoded != text".into());
        }
        if bad.is_empty() {
            passed += 1;
        } else {
            failures.push(format!("case {i} {text:?}:\n  {}", bad.join("\n  ")));
        }
    }
    eprintln!("tokenizer golden cases: {passed}/{} passed", cases.len());
    assert!(failures.is_empty(), "{} case(s) failed:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn special_ids_match_golden() {
    let tok = tok();
    let g = golden();
    for (content, id) in g["special_ids"].as_object().unwrap() {
        let id = id.as_u64().unwrap() as u32;
        assert_eq!(tok.token_to_id(content), Some(id), "{content}");
        assert_eq!(tok.id_to_token(id), Some(content.as_str()));
        assert_eq!(tok.encode(content).unwrap(), vec![id], "{content} must be atomic");
        // <think>/</think> are added but not special; everything else in this list is special.
        let special = !matches!(content.as_str(), "<think>" | "</think>");
        assert_eq!(tok.is_special(id), special, "{content}");
    }
    assert_eq!(tok.eos_id(), Some(IM_END));
    assert_eq!(tok.pad_id(), Some(151643));
    assert_eq!(tok.vocab_size(), 151936);
    assert_eq!(g["vocab_size_with_added"].as_u64(), Some(151678));
    assert_eq!(tok.token_type(151677), Some(TokenType::Control));
    assert_eq!(tok.token_type(151678), Some(TokenType::Unused));
    assert_eq!(tok.token_type(151936), None);
}

/// Documented divergence from HF: llama.cpp types `<|fim_*|>`, `<|repo_name|>`, `<|file_sep|>` as control
/// (HF: added, not special). They are atomic either way; only `skip_special` decoding differs.
#[test]
fn fim_tokens_follow_gguf_types() {
    let tok = tok();
    for (content, id) in [("<|fim_prefix|>", 151659), ("<|file_sep|>", 151664)] {
        assert_eq!(tok.encode(content).unwrap(), vec![id]);
        assert_eq!(tok.token_type(id), Some(TokenType::Control));
        assert!(tok.is_special(id));
        assert_eq!(tok.decode(&[id], true).unwrap(), "");
    }
    for (content, id) in [("<tool_call>", 151657), ("</tool_response>", 151666)] {
        assert_eq!(tok.token_type(id), Some(TokenType::UserDefined), "{content}");
        assert_eq!(tok.decode(&[id], true).unwrap(), content);
    }
}

#[test]
fn img_context_is_atomic() {
    let tok = tok();
    assert_eq!(tok.encode("<IMG_CONTEXT>").unwrap(), vec![IMG_CONTEXT]);
    assert_eq!(tok.encode("<IMG_CONTEXT><IMG_CONTEXT>").unwrap(), vec![IMG_CONTEXT; 2]);
    // Glued to text on both sides, it is still one token and the text around it is BPE'd on its own.
    let ids = tok.encode("a<IMG_CONTEXT>b").unwrap();
    assert_eq!(ids, vec![tok.encode("a").unwrap()[0], IMG_CONTEXT, tok.encode("b").unwrap()[0]]);
    // A broken tag is plain text.
    assert!(!tok.encode("<IMG_CONTEXT").unwrap().contains(&IMG_CONTEXT));
    assert!(!tok.encode("<img_context>").unwrap().contains(&IMG_CONTEXT));
}

#[test]
fn think_is_atomic_and_not_special() {
    let tok = tok();
    assert_eq!(tok.encode("<think>").unwrap(), vec![THINK]);
    let ids = tok.encode("x<think>y</think>z<|im_end|>").unwrap();
    assert!(ids.contains(&THINK) && ids.contains(&(THINK + 1)) && ids.contains(&IM_END), "{ids:?}");
    assert_eq!(tok.decode(&ids, false).unwrap(), "x<think>y</think>z<|im_end|>");
    assert_eq!(tok.decode(&ids, true).unwrap(), "x<think>y</think>z");
    assert!(!tok.is_special(THINK));
    assert!(tok.is_special(IM_END));
    assert_eq!(tok.token_type(THINK), Some(TokenType::UserDefined));
}

/// Single characters of 3-4 UTF-8 bytes; rare ones are split over several byte-level tokens.
const SINGLE_CHARS: [&str; 12] = ["😀", "🎉", "🦩", "🧿", "🪐", "ﬁ", "㊗", "龘", "𠀀", "鬱", "𝔸", "🀄"];

/// A single character that encodes to 2+ tokens.
fn split_char(tok: &Tokenizer) -> (&'static str, Vec<u32>) {
    SINGLE_CHARS
        .iter()
        .map(|c| (*c, tok.encode(c).unwrap()))
        .find(|(_, ids)| ids.len() >= 2)
        .expect("some character is split over several tokens")
}

#[test]
fn multibyte_char_split_across_tokens_streams_cleanly() {
    let tok = tok();
    // Find characters whose UTF-8 bytes are split over several byte-level tokens.
    let mut found = 0;
    for text in SINGLE_CHARS {
        let ids = tok.encode(text).unwrap();
        if ids.len() < 2 {
            continue;
        }
        found += 1;
        let mut s = tok.stream(false);
        let mut chunks = Vec::new();
        for &id in &ids {
            chunks.push(s.push(id).unwrap());
        }
        assert!(s.pending_bytes().is_empty(), "{text}: bytes left pending");
        chunks.push(s.finish());
        assert!(chunks.iter().all(|c| !c.contains('\u{FFFD}')), "{text}: {chunks:?}");
        assert_eq!(chunks.concat(), text);
        eprintln!("{text} -> {ids:?}");
        assert_eq!(chunks[0], "", "{text}: the first piece is an incomplete UTF-8 sequence and must be held back");
    }
    assert!(found >= 3, "expected several multi-token characters, found {found}");

    // A CJK sentence streamed token by token never shows a replacement char.
    let text = "混合 mixed 文本 text 🚀! 你是由抖音内容理解组开发的多模态大模型";
    let ids = tok.encode(text).unwrap();
    let (s, chunks) = stream_all(tok, &ids, false);
    assert_eq!(s, text);
    assert!(chunks.iter().all(|c| !c.contains('\u{FFFD}')), "{chunks:?}");
}

#[test]
fn stream_handles_truncated_and_invalid_utf8_like_decode() {
    let tok = tok();
    let (ch, emoji) = split_char(tok);
    // A sequence cut off at the end: decode gives one U+FFFD, and so does stream (at finish).
    let cut = &emoji[..emoji.len() - 1];
    let d = tok.decode(cut, false).unwrap();
    assert_eq!(d, "\u{FFFD}");
    let (s, chunks) = stream_all(tok, cut, false);
    assert_eq!(s, d);
    assert_eq!(chunks.last().unwrap(), "\u{FFFD}");
    // The cut sequence followed by text: the invalid bytes are replaced as soon as the text arrives.
    let mut ids = cut.to_vec();
    ids.extend(tok.encode("ok").unwrap());
    ids.extend_from_slice(&emoji);
    let d = tok.decode(&ids, false).unwrap();
    assert_eq!(d, format!("\u{FFFD}ok{ch}"));
    assert_eq!(stream_all(tok, &ids, false).0, d);
    // A skipped special token in the middle of a split character does not break it (bytes are joined).
    let mut ids = vec![emoji[0], IM_END];
    ids.extend_from_slice(&emoji[1..]);
    assert_eq!(tok.decode(&ids, true).unwrap(), ch);
    assert_eq!(stream_all(tok, &ids, true).0, ch);
}

#[test]
fn pad_tokens_are_not_matched_and_decode_to_nothing() {
    let tok = tok();
    for text in ["[PAD151678]", "x [PAD151935] y", "[PAD151700][PAD151701]"] {
        let ids = tok.encode(text).unwrap();
        assert!(ids.iter().all(|&id| id < 151643), "{text}: {ids:?}");
        assert_eq!(tok.decode(&ids, false).unwrap(), text);
    }
    assert_eq!(tok.id_to_token(151678), Some("[PAD151678]"));
    assert_eq!(tok.token_to_id("[PAD151678]"), Some(151678));
    assert_eq!(tok.decode(&[151678, 151935], false).unwrap(), "");
    assert_eq!(tok.decode(&[9707, 151935, 1879], true).unwrap(), "Hello world");
    assert!(!tok.is_special(151700));
}

#[test]
fn out_of_range_ids_are_errors() {
    let tok = tok();
    let e = tok.decode(&[9707, 151936], false).unwrap_err();
    assert_eq!(e, TokenizerError::IdOutOfRange { id: 151936, vocab_size: 151936 });
    assert!(e.to_string().contains("151936"));
    assert!(tok.decode(&[u32::MAX], true).is_err());
    assert_eq!(tok.id_to_token(151936), None);
    assert!(!tok.is_special(u32::MAX));
    let mut s = tok.stream(false);
    assert_eq!(s.push(9707).unwrap(), "Hello");
    assert!(s.push(200_000).is_err());
    assert_eq!(s.push(1879).unwrap(), " world");
    assert_eq!(s.finish(), "");
}

fn read_i64_tensor(path: &std::path::Path, name: &str) -> Vec<i64> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let t = st.tensor(name).unwrap();
    assert_eq!(t.dtype(), safetensors::Dtype::I64);
    t.data().chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect()
}

/// The full SAIL-VL2 prompts (univl-chat template, `<image>` expanded to 256·T `<IMG_CONTEXT>`) encode to the
/// exact `input_ids` of the reference goldens, and the greedy continuations decode to `gen_text`.
#[test]
fn sailvl2_prompts_match_reference_input_ids() {
    let tok = tok();
    let dir = fixtures().join("sailvl2-tiny/golden");
    for case in ["text_only", "astronaut", "page", "video3"] {
        let meta: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join(format!("{case}.json"))).unwrap()).unwrap();
        let prompt = meta["prompt"].as_str().unwrap();
        let tiles: Vec<usize> =
            meta["num_tiles"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
        let pieces: Vec<&str> = prompt.split("<image>").collect();
        assert_eq!(pieces.len(), tiles.len() + 1, "{case}");
        let mut expanded = pieces[0].to_string();
        for (t, rest) in tiles.iter().zip(&pieces[1..]) {
            expanded.push_str("<img>");
            expanded.push_str(&"<IMG_CONTEXT>".repeat(256 * t));
            expanded.push_str("</img>");
            expanded.push_str(rest);
        }
        let want: Vec<u32> =
            read_i64_tensor(&dir.join(format!("{case}.safetensors")), "input_ids").iter().map(|&v| v as u32).collect();
        let got = tok.encode(&expanded).unwrap();
        assert_eq!(got.len(), meta["L"].as_u64().unwrap() as usize, "{case}");
        assert_eq!(got, want, "{case}");
        let n_ctx = got.iter().filter(|&&id| id == IMG_CONTEXT).count();
        assert_eq!(n_ctx as u64, meta["n_img_context"].as_u64().unwrap(), "{case}");
        assert_eq!(tok.decode(&got, false).unwrap(), expanded, "{case}");

        let gen: Vec<u32> = meta["gen_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        let gen_text = meta["gen_text"].as_str().unwrap();
        assert_eq!(tok.decode(&gen, true).unwrap(), gen_text, "{case}");
        assert_eq!(stream_all(tok, &gen, true).0, gen_text, "{case}");
    }
}

#[test]
fn long_prompt_with_many_img_context() {
    let tok = tok();
    let n = 256 * 10 + 256; // max_num 10 tiles + thumbnail
    let text = format!("Image-1: <img>{}</img>\nDescribe.<|im_end|>", "<IMG_CONTEXT>".repeat(n));
    let t0 = Instant::now();
    let ids = tok.encode(&text).unwrap();
    eprintln!("encode of {} IMG_CONTEXT: {:.2} ms", n, t0.elapsed().as_secs_f64() * 1e3);
    let head = tok.encode("Image-1: ").unwrap();
    let tail = tok.encode("\nDescribe.").unwrap();
    let mut want = head.clone();
    want.push(151669);
    want.extend(std::iter::repeat_n(IMG_CONTEXT, n));
    want.push(151670);
    want.extend(&tail);
    want.push(IM_END);
    assert_eq!(ids, want);
    assert_eq!(tok.decode(&ids, false).unwrap(), text);
    assert_eq!(tok.decode(&ids, true).unwrap(), "Image-1: \nDescribe.");
}

#[test]
fn llamacpp_input_ids_match() {
    // The ids llama.cpp was fed for the `text_only` prompt (same as the HF reference).
    let tok = tok();
    let path = fixtures().join("llamacpp/qwen3-dense.input_ids.npy");
    let bytes = std::fs::read(path).unwrap();
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    let want: Vec<u32> = npy.into_vec::<i64>().unwrap().into_iter().map(|v| v as u32).collect();
    let prompt = "<|im_start|>system\n你是由抖音内容理解组开发的多模态大模型，英文名叫UniVL, 是一个有用无害的人工智能助手。<|im_end|><|im_start|>user\nHello! Count from one to five.<|im_end|><|im_start|>assistant\n";
    assert_eq!(tok.encode(prompt).unwrap(), want);
}

// ---------------------------------------------------------------------------------------------------------
// Metadata errors, on a toy vocabulary.

/// A toy byte-level vocabulary: "a", "b", "Ġ", "ab", "Ġab", one control, one user-defined, one unused token.
fn toy_metadata() -> HashMap<&'static str, Value> {
    let mut m = HashMap::new();
    m.insert("tokenizer.ggml.model", Value::String("gpt2".into()));
    m.insert("tokenizer.ggml.pre", Value::String("qwen2".into()));
    m.insert("tokenizer.ggml.tokens", Value::strings(["a", "b", "Ġ", "ab", "Ġab", "<|end|>", "<think>", "[PAD8]"]));
    m.insert("tokenizer.ggml.token_type", Value::i32s([1, 1, 1, 1, 1, 3, 4, 5]));
    m.insert("tokenizer.ggml.merges", Value::strings(["a b", "Ġ ab"]));
    m.insert("tokenizer.ggml.eos_token_id", Value::U32(5));
    m.insert("tokenizer.ggml.add_bos_token", Value::Bool(false));
    m
}

fn build(m: &HashMap<&'static str, Value>) -> Result<Tokenizer, TokenizerError> {
    Tokenizer::from_metadata(|k| m.get(k))
}

#[test]
fn toy_metadata_builds_and_encodes() {
    let m = toy_metadata();
    let tok = build(&m).unwrap();
    assert_eq!(tok.vocab_size(), 8);
    assert_eq!(tok.encode("ab ab<|end|><think>ba").unwrap(), vec![3, 4, 5, 6, 1, 0]);
    assert_eq!(tok.decode(&[3, 4, 5, 6, 1, 0, 7], false).unwrap(), "ab ab<|end|><think>ba");
    assert_eq!(tok.decode(&[3, 4, 5, 6, 1, 0, 7], true).unwrap(), "ab ab<think>ba");
    assert_eq!(tok.eos_id(), Some(5));
    assert!(tok.is_special(5) && !tok.is_special(6) && !tok.is_special(7));
    // Unknown characters have no token (no unk, no byte fallback): they are dropped, like HF does.
    assert_eq!(tok.encode("c").unwrap(), Vec::<u32>::new());
}

#[test]
fn toy_add_bos_token_is_respected() {
    let mut m = toy_metadata();
    m.insert("tokenizer.ggml.add_bos_token", Value::Bool(true));
    m.insert("tokenizer.ggml.bos_token_id", Value::U32(5));
    let tok = build(&m).unwrap();
    assert_eq!(tok.encode("ab").unwrap(), vec![5, 3]);
    m.remove("tokenizer.ggml.bos_token_id");
    assert_eq!(build(&m).unwrap_err(), TokenizerError::MissingKey { key: "tokenizer.ggml.bos_token_id" });
}

#[test]
fn metadata_errors_name_the_key() {
    let check = |edit: &dyn Fn(&mut HashMap<&'static str, Value>), want: &dyn Fn(&TokenizerError) -> bool| {
        let mut m = toy_metadata();
        edit(&mut m);
        let e = build(&m).unwrap_err();
        assert!(want(&e), "unexpected error: {e:?}");
        e.to_string()
    };

    for key in ["tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.tokens", "tokenizer.ggml.token_type"] {
        let msg = check(
            &|m| {
                m.remove(key);
            },
            &|e| *e == TokenizerError::MissingKey { key },
        );
        assert!(msg.contains(key), "{msg}");
    }
    let msg = check(
        &|m| {
            m.remove("tokenizer.ggml.merges");
        },
        &|e| *e == TokenizerError::MissingKey { key: "tokenizer.ggml.merges" },
    );
    assert!(msg.contains("tokenizer.ggml.merges"));

    let msg = check(
        &|m| {
            m.insert("tokenizer.ggml.model", Value::String("llama".into()));
        },
        &|e| *e == TokenizerError::UnsupportedModel("llama".into()),
    );
    assert!(msg.contains("llama") && msg.contains("tokenizer.ggml.model"), "{msg}");
    let msg = check(
        &|m| {
            m.insert("tokenizer.ggml.pre", Value::String("llama-bpe".into()));
        },
        &|e| *e == TokenizerError::UnsupportedPre("llama-bpe".into()),
    );
    assert!(msg.contains("llama-bpe") && msg.contains("tokenizer.ggml.pre"), "{msg}");

    let msg = check(
        &|m| {
            m.insert("tokenizer.ggml.model", Value::U32(2));
        },
        &|e| matches!(e, TokenizerError::WrongType { key: "tokenizer.ggml.model", .. }),
    );
    assert!(msg.contains("tokenizer.ggml.model"), "{msg}");
    check(
        &|m| {
            m.insert("tokenizer.ggml.tokens", Value::String("a".into()));
        },
        &|e| matches!(e, TokenizerError::WrongType { key: "tokenizer.ggml.tokens", .. }),
    );
    check(
        &|m| {
            m.insert("tokenizer.ggml.tokens", Value::Array(ValueType::U32, vec![Value::U32(1); 8]));
        },
        &|e| matches!(e, TokenizerError::WrongElementType { key: "tokenizer.ggml.tokens", index: 0, .. }),
    );
    check(
        &|m| {
            m.insert("tokenizer.ggml.token_type", Value::strings(["1"; 8]));
        },
        &|e| matches!(e, TokenizerError::WrongElementType { key: "tokenizer.ggml.token_type", index: 0, .. }),
    );
    check(
        &|m| {
            m.insert("tokenizer.ggml.token_type", Value::i32s([1, 1, 1, 1, 1, 3, 4, 9]));
        },
        &|e| *e == TokenizerError::BadTokenType { index: 7, value: 9 },
    );
    let msg = check(
        &|m| {
            m.insert("tokenizer.ggml.token_type", Value::i32s([1, 1, 1]));
        },
        &|e| *e == TokenizerError::LengthMismatch { tokens: 8, types: 3 },
    );
    assert!(msg.contains("tokenizer.ggml.tokens") && msg.contains("tokenizer.ggml.token_type"), "{msg}");
    check(
        &|m| {
            m.insert("tokenizer.ggml.tokens", Value::strings(Vec::<String>::new()));
            m.insert("tokenizer.ggml.token_type", Value::i32s([]));
        },
        &|e| *e == TokenizerError::EmptyVocab,
    );
    check(
        &|m| {
            m.insert("tokenizer.ggml.merges", Value::strings(["a b", "Ġab"]));
        },
        &|e| matches!(e, TokenizerError::BadMerge { index: 1, .. }),
    );
    let msg = check(
        &|m| {
            m.insert("tokenizer.ggml.merges", Value::strings(["a b", "b a"]));
        },
        &|e| matches!(e, TokenizerError::BadMerge { index: 1, .. }),
    );
    assert!(msg.contains("tokenizer.ggml.merges") && msg.contains("ba"), "{msg}");
    // A merge longer than every token (tokenizers' BpeBuilder would panic on it): a clean error.
    let msg = check(
        &|m| {
            m.insert("tokenizer.ggml.merges", Value::strings(["a b", "Ġab Ġab"]));
        },
        &|e| matches!(e, TokenizerError::BadMerge { index: 1, .. }),
    );
    assert!(msg.contains("ĠabĠab"), "{msg}");
    check(
        &|m| {
            m.insert("tokenizer.ggml.merges", Value::strings(["a c"]));
        },
        &|e| matches!(e, TokenizerError::BadMerge { index: 0, .. }),
    );
    let msg = check(
        &|m| {
            m.insert("tokenizer.ggml.eos_token_id", Value::U32(8));
        },
        &|e| *e == TokenizerError::BadSpecialId { key: "tokenizer.ggml.eos_token_id", id: 8, vocab_size: 8 },
    );
    assert!(msg.contains("tokenizer.ggml.eos_token_id"), "{msg}");
    check(
        &|m| {
            m.insert("tokenizer.ggml.eos_token_id", Value::I32(-1));
        },
        &|e| matches!(e, TokenizerError::WrongType { key: "tokenizer.ggml.eos_token_id", .. }),
    );
    check(
        &|m| {
            m.insert("tokenizer.ggml.add_bos_token", Value::U8(1));
        },
        &|e| matches!(e, TokenizerError::WrongType { key: "tokenizer.ggml.add_bos_token", .. }),
    );
}

#[test]
fn tiny_gguf_file_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let mut meta: Vec<(String, Value)> =
        toy_metadata().into_iter().map(|(k, v)| (k.to_string(), v)).collect::<Vec<_>>();
    meta.sort_by(|a, b| a.0.cmp(&b.0));
    meta.insert(0, ("general.architecture".into(), Value::String("qwen3".into())));

    let ok = dir.path().join("ok.gguf");
    GgufWriter::create(&ok, &meta, vec![]).unwrap().finish().unwrap();
    let tok = Tokenizer::from_gguf(&GgufFile::open(&ok).unwrap()).unwrap();
    assert_eq!(tok.encode("ab<think>").unwrap(), vec![3, 6]);

    // The same file without its merges.
    let bad = dir.path().join("no_merges.gguf");
    let without: Vec<(String, Value)> = meta.iter().filter(|(k, _)| k != "tokenizer.ggml.merges").cloned().collect();
    GgufWriter::create(&bad, &without, vec![]).unwrap().finish().unwrap();
    let e = Tokenizer::from_gguf(&GgufFile::open(&bad).unwrap()).unwrap_err();
    assert_eq!(e, TokenizerError::MissingKey { key: "tokenizer.ggml.merges" });
}
