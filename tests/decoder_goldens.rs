//! The Qwen3 decoder against the references: llama.cpp's logits on its own f32 GGUF, and the upstream
//! float32 reference's logits on our f32 conversion of the same checkpoint.

use std::path::{Path, PathBuf};

use runtime::gguf::GgufFile;
use runtime::model::decoder::{Decoder, Logits};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures")
}

fn npy_f32(path: &Path) -> (Vec<u64>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap();
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    let shape = npy.shape().to_vec();
    (shape, npy.into_vec::<f32>().unwrap())
}

fn npy_i64(path: &Path) -> Vec<i64> {
    let bytes = std::fs::read(path).unwrap();
    npyz::NpyFile::new(&bytes[..]).unwrap().into_vec::<i64>().unwrap()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn argmax(x: &[f32]) -> usize {
    x.iter().enumerate().fold((0, f32::NEG_INFINITY), |best, (i, &v)| if v > best.1 { (i, v) } else { best }).0
}

/// llama.cpp's f32 logits for the `text_only` ids, every position: same math, so ≤ 1e-4 (f32 summation
/// order differences only; llama.cpp itself agrees with the PyTorch reference to 8e-7).
#[test]
fn dense_f32_matches_llama_cpp_logits() {
    let dir = fixtures().join("llamacpp");
    let file = GgufFile::open(dir.join("qwen3-dense.f32.gguf")).unwrap();
    let dec = Decoder::load(&file).unwrap();
    let ids: Vec<u32> = npy_i64(&dir.join("qwen3-dense.input_ids.npy")).iter().map(|&i| i as u32).collect();
    let mut cache = dec.new_cache();
    let x = dec.embed(&ids).unwrap();
    let logits = dec.forward(x, &mut cache, Logits::All).unwrap();
    let v = dec.config.vocab;
    let (_, last) = npy_f32(&dir.join("qwen3-dense.f32.logits_last.npy"));
    let n = ids.len();
    let ours_last = &logits[(n - 1) * v..];
    let d = max_abs_diff(ours_last, &last);
    assert!(d <= 1e-4, "last-position max abs diff {d}");
    let (shape, cols) = npy_f32(&dir.join("qwen3-dense.f32.logits_cols.npy"));
    assert_eq!(shape, [n as u64, 4748]);
    let mut worst = 0f32;
    for p in 0..n {
        for (j, want) in cols[p * 4748..(p + 1) * 4748].iter().enumerate() {
            worst = worst.max((logits[p * v + j * 32] - want).abs());
        }
    }
    assert!(worst <= 1e-4, "every-position (1-in-32 columns) max abs diff {worst}");
    let top = npy_i64(&dir.join("qwen3-dense.f32.topk_ids.npy"));
    for p in 0..n {
        assert_eq!(argmax(&logits[p * v..(p + 1) * v]) as i64, top[p * 8], "top-1 at position {p}");
    }
}

/// Quantized llama.cpp files: Q8_0/Q4_0 weights run ggml's integer path (activations quantized to Q8_0 blocks
/// like ggml's x86 code), so the arithmetic is llama.cpp's up to float summation order: the same top-1 at
/// every position and ≤ 1e-4 everywhere (the bounds are 5e-2, tightened to 1e-2 by the kernel work).
#[test]
fn dense_quantized_files_match_llama_cpp() {
    let dir = fixtures().join("llamacpp");
    for ty in ["q8_0", "q4_0"] {
        let file = GgufFile::open(dir.join(format!("qwen3-dense.{ty}.gguf"))).unwrap();
        let dec = Decoder::load(&file).unwrap();
        let ids: Vec<u32> = npy_i64(&dir.join("qwen3-dense.input_ids.npy")).iter().map(|&i| i as u32).collect();
        let mut cache = dec.new_cache();
        let logits = dec.forward(dec.embed(&ids).unwrap(), &mut cache, Logits::All).unwrap();
        let v = dec.config.vocab;
        let n = ids.len();
        let (_, last) = npy_f32(&dir.join(format!("qwen3-dense.{ty}.logits_last.npy")));
        let d = max_abs_diff(&logits[(n - 1) * v..], &last);
        let (_, cols) = npy_f32(&dir.join(format!("qwen3-dense.{ty}.logits_cols.npy")));
        let mut worst = 0f32;
        for p in 0..n {
            for (j, want) in cols[p * 4748..(p + 1) * 4748].iter().enumerate() {
                worst = worst.max((logits[p * v + j * 32] - want).abs());
            }
        }
        let top = npy_i64(&dir.join(format!("qwen3-dense.{ty}.topk_ids.npy")));
        let mismatched: Vec<usize> =
            (0..n).filter(|&p| argmax(&logits[p * v..(p + 1) * v]) as i64 != top[p * 8]).collect();
        eprintln!("{ty}: max abs diff last {d}, all positions {worst}, top-1 mismatches {mismatched:?}");
        assert!(d <= 1e-4 && worst <= 1e-4, "{ty}: max abs diff {d} / {worst}");
        assert!(mismatched.is_empty(), "{ty}: top-1 differs at {mismatched:?}");
    }
}
