//! `sail-edge bench` end to end on the tiny fixture: the markdown rows, the JSON report and its sample
//! counts, skipped tests, and clear errors for bad flags and files. No timing is asserted.

mod common;

use common::{sail_edge, stderr};

use std::fs;
use std::path::PathBuf;
use std::process::Output;
use std::sync::OnceLock;

use serde_json::Value;

/// The tiny fixture converted once (q8_0 language model + mmproj beside it): (folder, model path).
fn model() -> &'static (PathBuf, PathBuf) {
    static MODEL: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    MODEL.get_or_init(|| common::convert_tiny("q8_0"))
}

fn bench(extra: &[&str]) -> Output {
    let (_, lm) = model();
    let mut args = vec!["bench", "-m", lm.to_str().unwrap(), "-t", "1"];
    args.extend_from_slice(extra);
    sail_edge(&args)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn json(o: &Output) -> Value {
    assert!(o.status.success(), "{}", stderr(o));
    serde_json::from_str(&stdout(o)).unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(o)))
}

fn assert_clean_failure(o: &Output, needles: &[&str]) {
    let err = stderr(o);
    assert!(!o.status.success(), "should fail: {err}");
    assert!(!err.contains("panicked"), "{err}");
    for n in needles {
        assert!(err.contains(n), "error should mention {n:?}: {err}");
    }
}

fn test<'a>(report: &'a Value, name: &str) -> Option<&'a Value> {
    report["tests"].as_array().unwrap().iter().find(|t| t["name"] == name)
}

#[test]
fn markdown_rows_like_llama_bench() {
    let o = bench(&["-p", "16", "-n", "4", "-r", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("| model | size | params | isa | threads | test | t/s |"), "{out}");
    let row = |test: &str| out.lines().find(|l| l.contains(&format!("| {test} |"))).map(str::to_string);
    for test in ["pp16", "tg4"] {
        let line = row(test).unwrap_or_else(|| panic!("no {test} row: {out}"));
        assert!(line.starts_with("| qwen3 Q8_0 |") && line.contains(" ± ") && line.contains("| 1 |"), "{line}");
    }
    // The mmproj beside the model is found: image encode and time to first token, in ms.
    assert!(out.contains("| test | ms |"), "{out}");
    assert!(out.contains("| image encode (448×448 tile) |"), "{out}");
    assert!(out.contains("| ttft (1 tile + 20-token question,"), "{out}");
}

#[test]
fn json_report_has_every_field_and_all_samples() {
    let r = json(&bench(&["-p", "8", "-n", "3", "-r", "3", "--json"]));
    let (_, lm) = model();
    assert_eq!(r["model"]["path"], lm.to_str().unwrap());
    assert_eq!(r["model"]["file_size"].as_u64(), Some(fs::metadata(lm).unwrap().len()));
    assert!(r["model"]["params"].as_u64().unwrap() > 0);
    assert_eq!(r["model"]["arch"], "qwen3");
    assert_eq!(r["model"]["type"], "Q8_0");
    assert!(r["model"]["type_mix"]["q8_0"]["tensors"].as_u64().unwrap() > 0);
    assert!(r["model"]["weight_bytes_per_token"].as_u64().unwrap() > 0);
    assert_eq!(r["mmproj"]["arch"], "clip");
    assert_eq!(r["threads"], 1);
    // Same CPU and environment as the binary, so the same detected path.
    assert_eq!(r["isa"], format!("{:?}", runtime::kernels::isa()).to_ascii_lowercase());
    assert_eq!(r["repetitions"], 3);
    for (name, unit) in [("pp8", "t/s"), ("tg3", "t/s"), ("image_encode", "ms"), ("ttft", "ms")] {
        let t = test(&r, name).unwrap_or_else(|| panic!("no {name}: {r}"));
        assert_eq!(t["unit"], unit, "{t}");
        let samples = t["samples"].as_array().unwrap();
        assert_eq!(samples.len(), 3, "{t}");
        assert!(samples.iter().all(|s| s.as_f64().unwrap() > 0.0), "{t}");
        let mean = samples.iter().map(|s| s.as_f64().unwrap()).sum::<f64>() / 3.0;
        assert!((t["mean"].as_f64().unwrap() - mean).abs() <= 1e-9 * mean, "{t}");
        assert!(t["sd"].as_f64().unwrap() >= 0.0, "{t}");
    }
    assert_eq!(test(&r, "pp8").unwrap()["n_tokens"], 8);
    let ttft = test(&r, "ttft").unwrap();
    assert_eq!((ttft["tiles"].as_u64(), ttft["question_tokens"].as_u64()), (Some(1), Some(20)), "{ttft}");
    assert!(ttft["prompt_tokens"].as_u64().unwrap() > 256, "{ttft}");
    // The session tests: follow-up and shared-prefix times to first token (one sample per repetition, with
    // their baselines from the same run), and the memory of 4 sessions on one engine.
    for name in ["ttft_first", "ttft_followup", "ttft_shared_prefix", "ttft_no_shared_prefix"] {
        let t = test(&r, name).unwrap_or_else(|| panic!("no {name}: {r}"));
        assert_eq!((t["unit"].as_str(), t["samples"].as_array().unwrap().len()), (Some("ms"), 3), "{t}");
    }
    let rss = test(&r, "weights_rss").unwrap();
    // One mapping of the model file however many sessions are open: the weights are held once.
    assert_eq!((rss["sessions"].as_u64(), rss["mappings"].as_u64()), (Some(4), Some(1)), "{rss}");
    assert!(rss["mean"].as_f64().unwrap() > 0.0, "{rss}");
    let per = test(&r, "session_bytes_4096").unwrap();
    assert!(per["kv_bytes_per_position"].as_u64().unwrap() > 0, "{per}");
}

#[test]
fn zero_skips_a_test() {
    let r = json(&bench(&["-p", "0", "-n", "2", "-r", "1", "--json", "--no-image"]));
    let names: Vec<&str> = r["tests"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["tg2"]);

    let o = bench(&["-p", "4", "-n", "0", "-r", "1", "--no-image"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("| pp4 |") && !stdout(&o).contains("| tg"), "{}", stdout(&o));

    // Nothing left to measure is an error, not an empty table.
    assert_clean_failure(&bench(&["-p", "0", "-n", "0", "--no-image"]), &["nothing to measure"]);
}

#[test]
fn a_model_without_a_vision_file_has_no_image_rows() {
    let (_, lm) = model();
    let alone = tempfile::tempdir().unwrap();
    let copy = alone.path().join("lm-only.gguf");
    fs::copy(lm, &copy).unwrap();
    let o = sail_edge(&["bench", "-m", copy.to_str().unwrap(), "-p", "4", "-n", "2", "-r", "1", "--json"]);
    let r = json(&o);
    assert!(r["mmproj"].is_null(), "{r}");
    assert_eq!(r["tests"].as_array().unwrap().len(), 2, "{r}");
}

#[test]
fn bad_input_is_named() {
    assert_clean_failure(&bench(&["-r", "0"]), &["-r/--repetitions"]);
    // The tiny model's context is 40960 tokens.
    assert_clean_failure(&bench(&["-p", "40000", "-n", "1000", "-r", "1"]), &["-p 40000", "-n 1000", "context length"]);
    assert_clean_failure(&bench(&["-p", "abc"]), &["-p"]);
    let (_, lm) = model();
    let o = sail_edge(&["bench", "-m", lm.to_str().unwrap(), "-t", "0", "-r", "1"]);
    assert_clean_failure(&o, &["-t/--threads"]);

    let o = sail_edge(&["bench", "-m", "/nonexistent/model.gguf"]);
    assert_clean_failure(&o, &["/nonexistent/model.gguf", "no such file"]);

    // A vision file is not a language model.
    let (dir, _) = model();
    let mmproj = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("mmproj-"))
        .unwrap();
    let o = sail_edge(&["bench", "-m", mmproj.to_str().unwrap(), "-r", "1"]);
    assert_clean_failure(&o, &[mmproj.file_name().unwrap().to_str().unwrap(), "architecture 'clip'"]);

    // Not a GGUF file at all.
    let junk = tempfile::tempdir().unwrap();
    let txt = junk.path().join("notes.gguf");
    fs::write(&txt, b"hello, not a model").unwrap();
    assert_clean_failure(&sail_edge(&["bench", "-m", txt.to_str().unwrap()]), &["notes.gguf"]);
}

#[test]
fn no_image_leaves_the_vision_files_alone() {
    let (_, lm) = model();
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("tiny-q8_0.gguf");
    fs::copy(lm, &copy).unwrap();
    // Two unrelated vision files beside the model: ambiguous for the image tests, irrelevant without them.
    for name in ["mmproj-a.gguf", "mmproj-b.gguf"] {
        fs::write(dir.path().join(name), b"not read").unwrap();
    }
    let m = copy.to_str().unwrap();
    assert_clean_failure(&sail_edge(&["bench", "-m", m, "-p", "2", "-n", "1", "-r", "1"]), &["several mmproj"]);
    let r = json(&sail_edge(&["bench", "-m", m, "-p", "2", "-n", "1", "-r", "1", "--json", "--no-image"]));
    assert!(r["mmproj"].is_null(), "{r}");
}
