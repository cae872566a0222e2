//! The `sail-edge` binary end to end: clear errors on bad input, no partial outputs, and the commands'
//! output on the fixtures.

mod common;

use common::{fixtures, sail_edge, stderr};

use std::fs;
use std::path::Path;

/// Names of the files in `dir` (to prove nothing partial was left behind).
fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

/// A copy of the dense fixture whose big files are symlinks, so single files can be edited or removed.
fn fixture_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for e in fs::read_dir(fixtures().join("sailvl2-tiny")).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::os::unix::fs::symlink(e.path(), dir.path().join(e.file_name())).unwrap();
        }
    }
    dir
}

#[test]
fn convert_to_an_unwritable_path_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("not-a-dir");
    fs::write(&blocker, b"x").unwrap();
    let out = blocker.join("model.gguf");
    let o = sail_edge(&["convert", fixtures().join("sailvl2-tiny").to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("not-a-dir/model.gguf"), "error names the output path: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(listing(dir.path()), ["not-a-dir"], "nothing else written");
}

#[test]
fn convert_with_missing_config_field_names_it() {
    let ck = fixture_copy();
    let cfg = ck.path().join("config.json");
    let mut json: serde_json::Value = serde_json::from_str(&fs::read_to_string(&cfg).unwrap()).unwrap();
    json["llm_config"].as_object_mut().unwrap().remove("num_hidden_layers");
    fs::remove_file(&cfg).unwrap();
    fs::write(&cfg, serde_json::to_string(&json).unwrap()).unwrap();
    let out = tempfile::tempdir().unwrap();
    let o = sail_edge(&["convert", ck.path().to_str().unwrap(), "-o", out.path().join("m.gguf").to_str().unwrap()]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("config.json") && err.contains("num_hidden_layers"), "{err}");
    assert!(listing(out.path()).is_empty());
}

#[test]
fn convert_with_a_missing_shard_names_it() {
    let ck = fixture_copy();
    fs::remove_file(ck.path().join("model-00002-of-00002.safetensors")).unwrap();
    let out = tempfile::tempdir().unwrap();
    let o = sail_edge(&["convert", ck.path().to_str().unwrap(), "-o", out.path().join("m.gguf").to_str().unwrap()]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("model-00002-of-00002.safetensors"), "{err}");
    assert!(listing(out.path()).is_empty());
}

#[test]
fn convert_of_a_non_folder_is_refused() {
    let o = sail_edge(&["convert", "/nonexistent/checkpoint"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("/nonexistent/checkpoint"));
}

#[test]
fn convert_then_quantize_then_info() {
    let dir = tempfile::tempdir().unwrap();
    let lm = dir.path().join("tiny-f32.gguf");
    let mm = dir.path().join("mmproj-tiny-f32.gguf");
    let o = sail_edge(&[
        "convert",
        fixtures().join("sailvl2-tiny").to_str().unwrap(),
        "--type",
        "f32",
        "-o",
        lm.to_str().unwrap(),
        "--mmproj",
        mm.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let summary = String::from_utf8_lossy(&o.stdout);
    assert!(summary.contains("35 tensors") && summary.contains("bits/weight") && summary.contains("tied"), "{summary}");

    let q4 = dir.path().join("tiny-q4.gguf");
    let o = sail_edge(&["quantize", lm.to_str().unwrap(), q4.to_str().unwrap(), "--q4"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mmq = dir.path().join("mmproj-q8.gguf");
    let o = sail_edge(&["quantize", mm.to_str().unwrap(), mmq.to_str().unwrap(), "--q8"]);
    assert!(o.status.success(), "{}", stderr(&o));

    let o = sail_edge(&["info", q4.to_str().unwrap()]);
    assert!(o.status.success());
    let text = String::from_utf8_lossy(&o.stdout);
    // hidden 32: Q4_K → Q5_0 fallback, tied output Q6_K → Q8_0; norms f32.
    assert!(text.contains("general.file_type = 15"), "{text}");
    assert!(text.contains("q5_0") && text.contains("q8_0") && text.contains("bits/weight"), "{text}");
    let o = sail_edge(&["info", "--no-tensors", mmq.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("clip.projector_type") && text.contains("q8_0"), "{text}");

    // Quantizing an already-quantized file again needs the explicit flag, and leaves nothing on refusal.
    let again = dir.path().join("again.gguf");
    let o = sail_edge(&["quantize", q4.to_str().unwrap(), again.to_str().unwrap(), "--type", "q4_0"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--allow-requantize"), "{}", stderr(&o));
    assert!(!again.exists());
    let o =
        sail_edge(&["quantize", q4.to_str().unwrap(), again.to_str().unwrap(), "--type", "q4_0", "--allow-requantize"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn quantize_needs_a_target_and_a_valid_input() {
    let dir = tempfile::tempdir().unwrap();
    let src = fixtures().join("llamacpp/qwen3-dense.f32.gguf");
    let out = dir.path().join("o.gguf");
    let o = sail_edge(&["quantize", src.to_str().unwrap(), out.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--q4"));
    let o = sail_edge(&["quantize", src.to_str().unwrap(), out.to_str().unwrap(), "--type", "q3_k"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("q3_k"));

    let bad = dir.path().join("bad.gguf");
    fs::write(&bad, b"GGUF\x01\x00\x00\x00").unwrap();
    let o = sail_edge(&["quantize", bad.to_str().unwrap(), out.to_str().unwrap(), "--q8"]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("bad.gguf") && err.contains("version 1"), "{err}");
    assert_eq!(listing(dir.path()), ["bad.gguf"]);
}

#[test]
fn info_reports_a_truncated_file_with_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = fs::read(fixtures().join("llamacpp/qwen3-dense.q8_0.gguf")).unwrap();
    let cut = dir.path().join("cut.gguf");
    fs::write(&cut, &bytes[..4096]).unwrap();
    let o = sail_edge(&["info", cut.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("cut.gguf") && err.contains("offset"), "{err}");
    assert!(!err.contains("panicked"));
}
