//! `sail-edge describe` end to end on the tiny fixture, and every bad input the issue lists: each gives a
//! clear error naming the culprit, never a panic.

mod common;

use common::{fixtures, sail_edge, stderr};

use std::fs;
use std::path::PathBuf;
use std::process::Output;
use std::sync::OnceLock;

use runtime::gguf::{GgufFile, GgufWriter, TensorSpec, Value};

/// The tiny fixture converted once (f32), shared by the tests: (folder, model path).
fn model() -> &'static (PathBuf, PathBuf) {
    static MODEL: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    MODEL.get_or_init(|| common::convert_tiny("f32"))
}

fn describe(extra: &[&str]) -> Output {
    let (_, lm) = model();
    let mut args = vec!["describe", "-m", lm.to_str().unwrap(), "-n", "4", "-t", "1"];
    args.extend_from_slice(extra);
    sail_edge(&args)
}

fn assert_clean_failure(o: &Output, needles: &[&str]) {
    let err = stderr(o);
    assert!(!o.status.success(), "should fail: {err}");
    assert!(!err.contains("panicked"), "{err}");
    for n in needles {
        assert!(err.contains(n), "error should mention {n:?}: {err}");
    }
}

#[test]
fn describes_an_image_and_reports_timings() {
    let page = fixtures().join("images/page.png");
    let o = describe(&["--image", page.to_str().unwrap(), "-p", "What does the text say?"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("image encode: 3 tiles") && err.contains("ms per tile"), "{err}");
    assert!(err.contains("prompt: 817 tokens") && err.contains("generation:"), "{err}");
}

#[test]
fn video_frames_make_one_tile_each() {
    let imgs = fixtures().join("images");
    let list =
        ["chelsea.png", "coffee.png", "rocket.jpg"].map(|f| imgs.join(f).to_string_lossy().into_owned()).join(",");
    let o = describe(&["--video-frames", &list, "-p", "What happens in this video?"]);
    assert!(o.status.success(), "{}", stderr(&o));
    // 3 frames × (256 + 2) image tokens + the Frame-i prefixes: the golden video3 prompt is 838 tokens.
    assert!(stderr(&o).contains("prompt: 838 tokens"), "{}", stderr(&o));
}

#[test]
fn corrupt_and_truncated_images_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.png");
    fs::write(&garbage, b"\x89PNG\r\n\x1a\nthis is not a png").unwrap();
    assert_clean_failure(&describe(&["--image", garbage.to_str().unwrap()]), &["garbage.png"]);

    let bytes = fs::read(fixtures().join("images/page.png")).unwrap();
    let cut = dir.path().join("cut.png");
    fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    assert_clean_failure(&describe(&["--image", cut.to_str().unwrap()]), &["cut.png"]);

    let missing = dir.path().join("nope.jpg");
    assert_clean_failure(&describe(&["--image", missing.to_str().unwrap()]), &["nope.jpg"]);
}

#[test]
fn unsupported_image_formats_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let gif = dir.path().join("anim.gif");
    fs::write(&gif, b"GIF89a\x01\x00\x01\x00\x00\x00\x00;").unwrap();
    assert_clean_failure(&describe(&["--image", gif.to_str().unwrap()]), &["anim.gif", "unsupported image format"]);
}

#[test]
fn degenerate_image_sizes() {
    let dir = tempfile::tempdir().unwrap();
    // 1×100000: the reference tiles it 1×10 plus a thumbnail; so do we.
    let thin = dir.path().join("thin.png");
    image::RgbImage::from_pixel(1, 100_000, image::Rgb([200, 10, 10])).save(&thin).unwrap();
    let o = describe(&["--image", thin.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("image encode: 11 tiles"), "{}", stderr(&o));

    // 0×0: a PNG header that declares zero width.
    let zero = dir.path().join("zero.png");
    let mut png = Vec::new();
    png.extend_from_slice(b"\x89PNG\r\n\x1a\n");
    let ihdr = [0u8, 0, 0, 0, 0, 0, 0, 0, 8, 2, 0, 0, 0];
    png.extend_from_slice(&(ihdr.len() as u32).to_be_bytes());
    png.extend_from_slice(b"IHDR");
    png.extend_from_slice(&ihdr);
    png.extend_from_slice(&crc32(b"IHDR", &ihdr).to_be_bytes());
    fs::write(&zero, &png).unwrap();
    assert_clean_failure(&describe(&["--image", zero.to_str().unwrap()]), &["zero.png"]);
}

/// PNG chunk CRC (ISO 3309), enough to build a header by hand.
fn crc32(kind: &[u8], data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in kind.iter().chain(data) {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 { 0xEDB8_8320 ^ (crc >> 1) } else { crc >> 1 };
        }
    }
    !crc
}

#[test]
fn an_image_without_a_vision_file_is_explained() {
    let (_, lm) = model();
    let alone = tempfile::tempdir().unwrap();
    let copy = alone.path().join("lm-only.gguf");
    fs::copy(lm, &copy).unwrap();
    let page = fixtures().join("images/page.png");
    let o = sail_edge(&["describe", "-m", copy.to_str().unwrap(), "--image", page.to_str().unwrap()]);
    assert_clean_failure(&o, &["mmproj"]);
    // Text alone works without it.
    let o = sail_edge(&["describe", "-m", copy.to_str().unwrap(), "-p", "Hello", "-n", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn a_mismatched_vision_file_is_refused() {
    let (dir, lm) = model();
    // Not a vision file at all.
    let o = sail_edge(&["describe", "-m", lm.to_str().unwrap(), "--mmproj", lm.to_str().unwrap(), "-p", "hi"]);
    assert_clean_failure(&o, &["not a SAIL-VL2 mmproj file"]);

    // A vision file whose projector targets a 64-wide language model.
    let mmproj = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("mmproj-"));
    let src = GgufFile::open(mmproj.unwrap()).unwrap();
    let wide = tempfile::tempdir().unwrap();
    let out = wide.path().join("mmproj-wide.gguf");
    let resized = |name: &str, dims: &[u64]| -> Vec<u64> {
        match name {
            "mm.1.weight" => vec![dims[0], 64],
            "mm.1.bias" | "mm.3.bias" => vec![64],
            "mm.3.weight" => vec![64, 64],
            _ => dims.to_vec(),
        }
    };
    let specs: Vec<TensorSpec> =
        src.tensors().iter().map(|t| TensorSpec::new(t.name.clone(), resized(&t.name, &t.dims), t.ty)).collect();
    let meta: Vec<(String, Value)> = src
        .metadata()
        .iter()
        .map(|(k, v)| (k.clone(), if k == "clip.vision.projection_dim" { Value::U32(64) } else { v.clone() }))
        .collect();
    let mut w = GgufWriter::create(&out, &meta, specs.clone()).unwrap();
    for (t, spec) in src.tensors().iter().zip(&specs) {
        let bytes = if spec.dims == t.dims { src.data(t).to_vec() } else { vec![0u8; spec.size().unwrap() as usize] };
        w.write_tensor(&t.name, &bytes).unwrap();
    }
    w.finish().unwrap();
    let o = sail_edge(&["describe", "-m", lm.to_str().unwrap(), "--mmproj", out.to_str().unwrap(), "-p", "hi"]);
    assert_clean_failure(&o, &["different models"]);
}

#[test]
fn a_prompt_longer_than_the_context_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let long = dir.path().join("long.txt");
    // " a" is one token: 41,000 of them exceed the 40,960-token context.
    fs::write(&long, " a".repeat(41_000)).unwrap();
    let o = describe(&["--prompt-file", long.to_str().unwrap()]);
    assert_clean_failure(&o, &["context is 40960"]);
    // A cap below the model's context: the 817-token page prompt no longer fits; 0 is refused.
    let page = fixtures().join("images/page.png");
    assert_clean_failure(&describe(&["--image", page.to_str().unwrap(), "-c", "800"]), &["context is 800"]);
    assert_clean_failure(&describe(&["-p", "hi", "-c", "0"]), &["--ctx-size"]);
}

#[test]
fn a_non_utf8_prompt_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("latin1.txt");
    fs::write(&bad, b"caf\xe9 au lait").unwrap();
    let o = describe(&["--prompt-file", bad.to_str().unwrap()]);
    assert_clean_failure(&o, &["latin1.txt", "not UTF-8", "offset 3"]);
}

#[test]
fn trace_writes_the_stages_as_numpy_files() {
    let (_, lm) = model();
    let out = tempfile::tempdir().unwrap();
    let page = fixtures().join("images/page.png");
    let o = sail_edge(&[
        "trace",
        "-m",
        lm.to_str().unwrap(),
        "--image",
        page.to_str().unwrap(),
        "-p",
        "What does the text say?",
        "--out",
        out.path().to_str().unwrap(),
        "-n",
        "4",
        "--layer",
        "1",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let shape = |name: &str| {
        let bytes = fs::read(out.path().join(format!("{name}.npy"))).unwrap();
        npyz::NpyFile::new(&bytes[..]).unwrap().shape().to_vec()
    };
    assert_eq!(shape("pixel_values"), [3, 3, 448, 448]);
    assert_eq!(shape("vit_out"), [3, 1024, 64]);
    assert_eq!(shape("mlp1_out"), [3, 256, 32]);
    assert_eq!(shape("input_ids"), [817]);
    assert_eq!(shape("logits_last"), [151936]);
    assert_eq!(shape("gen_ids"), [4]);
    // Layer 1's named intermediates over the 817 prompt positions (hidden 32, 4 q heads and 2 kv heads of 16).
    for (name, width) in [
        ("attn_norm", 32),
        ("Qcur", 64),
        ("Kcur", 32),
        ("Vcur", 32),
        ("kqv_out", 64),
        ("attn_out", 32),
        ("ffn_inp", 32),
        ("ffn_norm", 32),
        ("ffn_out", 32),
        ("l_out", 32),
    ] {
        assert_eq!(shape(&format!("{name}-1")), [817, width], "{name}");
    }
    // They are the layer's own values: the output is the FFN input plus the FFN's output, element by
    // element (one f32 addition, so exactly).
    let values = |name: &str| -> Vec<f32> {
        let bytes = fs::read(out.path().join(format!("{name}-1.npy"))).unwrap();
        npyz::NpyFile::new(&bytes[..]).unwrap().into_vec().unwrap()
    };
    let (inp, ffn, l_out) = (values("ffn_inp"), values("ffn_out"), values("l_out"));
    assert!(inp.iter().zip(&ffn).zip(&l_out).all(|((a, b), c)| (a + b).to_bits() == c.to_bits()));
    assert!(ffn.iter().any(|v| *v != 0.0));
    // A layer the model does not have is refused before any work.
    let o = sail_edge(&[
        "trace",
        "-m",
        lm.to_str().unwrap(),
        "-p",
        "hi",
        "--out",
        out.path().to_str().unwrap(),
        "--layer",
        "3",
    ]);
    assert_clean_failure(&o, &["--layer 3", "3 layers"]);
}
