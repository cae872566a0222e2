//! The repack cache (decoder weights interleaved 8 rows at a time, in `MODEL.gguf.repack`) on llama.cpp's
//! own q4_0 and q8_0 files: decoding from it matches llama.cpp's logits, prompts give the same bits as
//! without it, and a cache that no longer fits its model is never used.

mod common;

use common::{check_expected_kernel_path, fixtures, sail_edge, stderr};

use std::path::{Path, PathBuf};

use runtime::gguf::GgufFile;
use runtime::model::decoder::{Decoder, Logits};
use runtime::pipeline::LoadOptions;
use runtime::repack::{self, RepackMode};
use runtime::GgmlType;

fn npy_f32(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap();
    npyz::NpyFile::new(&bytes[..]).unwrap().into_vec::<f32>().unwrap()
}

fn npy_i64(path: &Path) -> Vec<i64> {
    let bytes = std::fs::read(path).unwrap();
    npyz::NpyFile::new(&bytes[..]).unwrap().into_vec::<i64>().unwrap()
}

/// A private copy of one of llama.cpp's files (the cache is written beside its model).
fn model_copy(dir: &Path, ty: &str) -> PathBuf {
    let name = format!("qwen3-dense.{ty}.gguf");
    let path = dir.join(&name);
    std::fs::copy(fixtures().join("llamacpp").join(&name), &path).unwrap();
    path
}

/// Whether this process decodes from the repacked layout; where not, the cache must be neither written nor
/// used.
fn repack_runs_here(model: &GgufFile) -> bool {
    check_expected_kernel_path();
    if repack::supported() {
        return true;
    }
    assert!(
        std::env::var("SAIL_EDGE_EXPECT_PATH").is_err(),
        "CI expects the repacked kernels on this path, but {:?} has none",
        runtime::kernels::isa()
    );
    assert!(repack::open_cache(model, RepackMode::Build).unwrap().is_none());
    assert!(!repack::cache_path(model.path()).exists(), "no cache written for a path without its kernel");
    eprintln!("no repacked-Q4_0 kernel on {:?}: the cache is not used", runtime::kernels::isa());
    false
}

/// On llama.cpp's q4_0 and q8_0 files: the prompt through the repacked weights gives the bits it gives
/// without them (batches take the same 8-row tiles), and the last token decoded alone from the repacked
/// rows matches llama.cpp's logits for that position within 1e-4 — the bound the row kernels meet on these
/// files (same integer arithmetic; only the float summation order differs from ggml's).
#[test]
fn decoding_from_the_cache_matches_llama_cpp() {
    for ty in ["q4_0", "q8_0"] {
        let dir = tempfile::tempdir().unwrap();
        let path = model_copy(dir.path(), ty);
        let file = GgufFile::open(&path).unwrap();
        if !repack_runs_here(&file) {
            return;
        }
        let cache = repack::open_cache(&file, RepackMode::Build).unwrap().expect("a cache for a quantized model");
        assert_eq!(cache.path(), repack::cache_path(&path));
        // 3 layers × 7 linear weights, and the token embeddings, which are the (tied) output head of these
        // files; norms are not repacked.
        assert_eq!(cache.tensors().len(), 22, "{ty}");
        assert!(cache.header().tensor("token_embd.weight").is_some(), "{ty}: the tied output head is repacked");

        let plain = Decoder::load(&file).unwrap();
        let packed = Decoder::load_repacked(&file, Some(&cache), &LoadOptions::default()).unwrap();
        let llama = fixtures().join("llamacpp");
        let ids: Vec<u32> = npy_i64(&llama.join("qwen3-dense.input_ids.npy")).iter().map(|&i| i as u32).collect();
        let n = ids.len();
        let run = |dec: &Decoder<'_>| {
            let mut kv = dec.new_cache_of(GgmlType::F32).unwrap();
            let prompt = dec.forward(dec.embed(&ids[..n - 1]).unwrap(), &mut kv, Logits::All).unwrap();
            let last = dec.forward(dec.embed(&ids[n - 1..]).unwrap(), &mut kv, Logits::Last).unwrap();
            (prompt, last)
        };
        let (prompt_plain, last_plain) = run(&plain);
        let (prompt_packed, last_packed) = run(&packed);
        let same = prompt_plain.iter().zip(&prompt_packed).all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(same, "{ty}: prompt logits");

        let want = npy_f32(&llama.join(format!("qwen3-dense.{ty}.logits_last.npy")));
        let diff = |a: &[f32]| a.iter().zip(&want).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        let (d_packed, d_plain) = (diff(&last_packed), diff(&last_plain));
        eprintln!("{ty}: last-token max abs diff to llama.cpp: repacked {d_packed}, rows {d_plain}");
        assert!(d_packed <= 1e-4, "{ty} repacked: {d_packed}");
    }
}

/// A MoE model: its attention weights are repacked, its experts (paged per expert) are not, and decoding
/// the last token from the cache matches llama.cpp within 1e-4, the MoE decoder's bound on this file.
#[test]
fn a_moe_cache_leaves_the_experts_in_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let name = "qwen3-moe.q8_0.gguf";
    let path = dir.path().join(name);
    std::fs::copy(fixtures().join("llamacpp").join(name), &path).unwrap();
    let file = GgufFile::open(&path).unwrap();
    if !repack_runs_here(&file) {
        return;
    }
    let cache = repack::open_cache(&file, RepackMode::Build).unwrap().expect("the attention weights are q8_0");
    let names: Vec<&str> = cache.tensors().iter().map(|t| t.name.as_str()).collect();
    // The head of this tied model is its token embedding table.
    assert!(names.iter().all(|n| n.contains(".attn_") || *n == "token_embd.weight"), "{names:?}");
    assert!(names.iter().any(|n| n.ends_with("attn_q.weight")), "{names:?}");
    let dec = Decoder::load_repacked(&file, Some(&cache), &LoadOptions::default()).unwrap();
    let llama = fixtures().join("llamacpp");
    let ids: Vec<u32> = npy_i64(&llama.join("qwen3-moe.input_ids.npy")).iter().map(|&i| i as u32).collect();
    let n = ids.len();
    let mut kv = dec.new_cache_of(GgmlType::F32).unwrap();
    dec.forward(dec.embed(&ids[..n - 1]).unwrap(), &mut kv, Logits::Last).unwrap();
    let last = dec.forward(dec.embed(&ids[n - 1..]).unwrap(), &mut kv, Logits::Last).unwrap();
    let want = npy_f32(&llama.join("qwen3-moe.q8_0.logits_last.npy"));
    let d = last.iter().zip(&want).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    assert!(d <= 1e-4, "moe repacked: {d}");
}

/// Auto mode uses a matching cache and ignores a stale or damaged one (never runs on it); Build rewrites
/// it; Off never touches it.
#[test]
fn a_cache_that_does_not_fit_its_model_is_not_used() {
    let dir = tempfile::tempdir().unwrap();
    let path = model_copy(dir.path(), "q4_0");
    let cache_path = repack::cache_path(&path);
    {
        let file = GgufFile::open(&path).unwrap();
        if !repack_runs_here(&file) {
            return;
        }
        assert!(repack::open_cache(&file, RepackMode::Auto).unwrap().is_none(), "Auto writes nothing");
        assert!(!cache_path.exists());
        assert!(repack::open_cache(&file, RepackMode::Build).unwrap().is_some());
        assert!(repack::open_cache(&file, RepackMode::Auto).unwrap().is_some(), "a matching cache is used");
        assert!(repack::open_cache(&file, RepackMode::Off).unwrap().is_none());
    }
    let written = std::fs::read(&cache_path).unwrap();

    // The same model re-quantized in place (same size and header, other weights): one byte of a weight.
    let file = GgufFile::open(&path).unwrap();
    let info = file.tensor_info("blk.1.ffn_up.weight").unwrap();
    let at = (file.header().data_offset + info.offset + 5) as usize;
    drop(file);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[at] ^= 0x11;
    std::fs::write(&path, &bytes).unwrap();
    let file = GgufFile::open(&path).unwrap();
    assert!(repack::open_cache(&file, RepackMode::Auto).unwrap().is_none(), "stale cache used");
    assert_eq!(std::fs::read(&cache_path).unwrap(), written, "Auto leaves the stale cache alone");
    assert!(repack::open_cache(&file, RepackMode::Build).unwrap().is_some(), "Build rewrites it");
    assert_ne!(std::fs::read(&cache_path).unwrap(), written);

    // A damaged cache (cut short): ignored, then rewritten.
    let good = std::fs::read(&cache_path).unwrap();
    std::fs::write(&cache_path, &good[..good.len() / 2]).unwrap();
    assert!(repack::open_cache(&file, RepackMode::Auto).unwrap().is_none(), "truncated cache used");
    assert!(repack::open_cache(&file, RepackMode::Build).unwrap().is_some());
    assert_eq!(std::fs::read(&cache_path).unwrap(), good);
    // Nothing half-written is left beside it.
    let stray: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".partial"))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
}

/// `--repack` on the command line writes the cache and the run uses it; `--no-repack` with it is refused.
#[test]
fn the_repack_flag_writes_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let path = model_copy(dir.path(), "q4_0");
    let p = path.to_str().unwrap();
    let o = sail_edge(&["bench", "-m", p, "--no-image", "-p", "4", "-n", "2", "-r", "1", "-t", "1", "--repack"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(repack::cache_path(&path).exists(), repack::supported(), "{}", stderr(&o));
    // The run that wrote it also decoded from it (the table's isa column says so).
    let table = String::from_utf8_lossy(&o.stdout);
    assert_eq!(table.contains("+repack |"), repack::supported(), "{table}");
    let o = sail_edge(&["bench", "-m", p, "--no-image", "--repack", "--no-repack"]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("--repack") && err.contains("--no-repack") && !err.contains("panicked"), "{err}");
}
