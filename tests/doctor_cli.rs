//! `sail-edge doctor` and `--board` end to end: the JSON report's fields, a profile filling in what the flags
//! leave out (and never what they give), pinning on a machine with fewer cores than the profile names, and
//! bad board names or files failing cleanly.

mod common;

use common::{sail_edge, stderr};

use std::path::PathBuf;
use std::process::Output;
use std::sync::OnceLock;

use serde_json::Value;

fn model() -> &'static (PathBuf, PathBuf) {
    static MODEL: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    MODEL.get_or_init(|| common::convert_tiny("q8_0"))
}

fn json(o: &Output) -> Value {
    assert!(o.status.success(), "{}", stderr(o));
    let out = String::from_utf8_lossy(&o.stdout);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

#[test]
fn doctor_json_has_the_fields() {
    let r = json(&sail_edge(&["doctor", "--json"]));
    for key in ["cpu_model", "arch", "features", "clusters", "memory_bytes", "cameras", "serial_ports", "kernel_path"] {
        assert!(r.get(key).is_some(), "no {key}: {r:#}");
    }
    assert!(r.get("profile").is_some(), "{r:#}");
    assert_eq!(r["arch"], std::env::consts::ARCH);
    let features = r["features"].as_object().unwrap();
    for f in ["avx2", "avx512-vnni", "avx-vnni", "neon", "dotprod", "i8mm", "sve"] {
        assert!(features[f].is_boolean(), "features.{f}: {r:#}");
    }
    // The kernel path is the one the kernels picked, by the name SAIL_EDGE_ISA takes.
    assert_eq!(r["kernel_path"], runtime::kernels::isa().name());
    let cores: usize = r["clusters"].as_array().unwrap().iter().map(|c| c["cores"].as_array().unwrap().len()).sum();
    assert_eq!(cores as u64, r["cpus"].as_u64().unwrap());
    if cfg!(target_os = "linux") {
        assert!(r["memory_bytes"]["total"].as_u64().unwrap() > 0, "{r:#}");
    }
    if cfg!(target_arch = "x86_64") {
        assert_eq!(r["profile"], "x86-64");
    }
}

#[test]
fn doctor_forced_kernel_path_is_reported() {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_sail-edge"))
        .args(["doctor", "--json"])
        .env("SAIL_EDGE_ISA", "scalar")
        .output()
        .unwrap();
    let r = json(&o);
    assert_eq!(r["kernel_path"], "scalar");
    assert_eq!(r["kernel_path_forced"], "scalar");
}

#[test]
fn doctor_text_names_the_profile() {
    let o = sail_edge(&["doctor"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("kernels:") && out.contains("profile:") && out.contains("features:"), "{out}");
}

/// `bench --json` on the tiny model with `--board rpi5` and extra flags: the report's thread count and the
/// `-v` log line that says what the board set.
fn bench_with_board(extra: &[&str]) -> (Value, String) {
    let (_, lm) = model();
    let mut args = vec!["-v", "bench", "-m", lm.to_str().unwrap(), "--board", "rpi5"];
    // The tiny model's head size (16) has no q8_0 KV rows, which the Pi profile asks for.
    args.extend_from_slice(&[
        "--kv-type",
        "f32",
        "-p",
        "8",
        "-n",
        "2",
        "-r",
        "1",
        "--no-warmup",
        "--no-image",
        "--json",
    ]);
    args.extend_from_slice(extra);
    let o = sail_edge(&args);
    (json(&o), stderr(&o))
}

fn board_line(err: &str) -> String {
    err.lines().find(|l| l.contains("board rpi5: ") && !l.contains("pinned")).unwrap_or_default().to_string()
}

#[test]
fn explicit_flags_win_over_the_board() {
    let (r, err) = bench_with_board(&["-t", "1"]);
    assert_eq!(r["threads"], 1, "{err}");
    let line = board_line(&err);
    assert!(line.contains("context_length=4096") && line.contains("max_tiles=4"), "{err}");
    assert!(!line.contains("threads=") && !line.contains("kv_type="), "flags given must not be overridden: {err}");
    // A dense model gets no expert budget from the profile (it would only warn).
    assert!(!line.contains("max_expert_memory") && !err.contains("only applies to the experts"), "{err}");
}

#[cfg(target_os = "linux")]
#[test]
fn the_board_sets_threads_and_pins_to_the_cores_that_exist() {
    let (r, err) = bench_with_board(&[]);
    assert!(board_line(&err).contains("threads=4"), "{err}");
    // rpi5 pins to cores 0-3; those this machine lacks are skipped and the threads follow the cores left.
    let allowed = runtime::host::allowed_cores().unwrap();
    let usable: Vec<usize> = (0..4).filter(|c| allowed.contains(c)).collect();
    if usable.is_empty() {
        assert!(err.contains("not pinned"), "{err}");
        return;
    }
    assert!(err.contains(&format!("pinned to cores {usable:?}")), "{err}");
    assert_eq!(r["threads"].as_u64().unwrap() as usize, usable.len().min(4), "{err}");
    if usable.len() < 4 {
        assert!(err.contains("do not exist here"), "{err}");
    }
}

#[test]
fn bad_boards_fail_cleanly() {
    let (_, lm) = model();
    let lm = lm.to_str().unwrap();
    let o = sail_edge(&["describe", "-m", lm, "--board", "rpi9", "-p", "hi"]);
    let err = stderr(&o);
    assert!(!o.status.success() && err.contains("unknown board 'rpi9'") && err.contains("rpi5"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("myboard.toml");
    let text = include_str!("../boards/rpi5.toml").replace("kv_type = \"q8_0\"", "kv_type = \"q3\"");
    std::fs::write(&bad, text).unwrap();
    let o = sail_edge(&["describe", "-m", lm, "--board", bad.to_str().unwrap(), "-p", "hi"]);
    let err = stderr(&o);
    assert!(!o.status.success() && err.contains("myboard.toml") && err.contains("runtime.kv_type"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn auto_picks_what_doctor_reports() {
    let doctor = json(&sail_edge(&["doctor", "--json"]));
    let (_, lm) = model();
    let o = sail_edge(&[
        "-v",
        "describe",
        "-m",
        lm.to_str().unwrap(),
        "--board",
        "auto",
        "-t",
        "1",
        "--kv-type",
        "f32",
        "-n",
        "2",
        "-p",
        "hi",
    ]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    match doctor["profile"].as_str() {
        Some(name) => assert!(err.contains(&format!("--board auto: {name}")), "{err}"),
        None => assert!(err.contains("no profile fits"), "{err}"),
    }
}

/// Vulkan devices in `doctor --json`: with the `vulkan` feature and a driver (CI: lavapipe, named by
/// `SAIL_EDGE_EXPECT_TOOLS=vulkan`) at least one described device; without the feature the reason.
#[test]
fn doctor_lists_vulkan_devices() {
    let r = json(&sail_edge(&["doctor", "--json"]));
    let devices = r["vulkan_devices"].as_array().unwrap_or_else(|| panic!("no vulkan_devices: {r:#}"));
    let error = r["vulkan_error"].as_str();
    if !cfg!(feature = "vulkan") {
        assert!(devices.is_empty() && error.is_some_and(|e| e.contains("`vulkan` feature")), "{r:#}");
        eprintln!("doctor_lists_vulkan_devices: this build has no `vulkan` feature; its reason was checked");
        return;
    }
    let expected = std::env::var("SAIL_EDGE_EXPECT_TOOLS").unwrap_or_default().split(',').any(|t| t == "vulkan");
    if devices.is_empty() {
        assert!(!expected, "SAIL_EDGE_EXPECT_TOOLS names vulkan, but doctor lists no device: {r:#}");
        eprintln!("doctor_lists_vulkan_devices: no Vulkan device here ({error:?})");
        return;
    }
    for d in devices {
        for key in ["index", "name", "kind", "api_version", "max_shared_memory_bytes", "subgroup_size", "shader_int8"] {
            assert!(d.get(key).is_some(), "no {key}: {d:#}");
        }
        // `--backend auto` takes discrete GPUs and NVIDIA's integrated ones only (a CPU implementation never).
        let auto = d["kind"] == "discrete" || (d["kind"] == "integrated" && d["vendor_id"] == 0x10de);
        assert_eq!(d["backend_auto"].as_bool(), Some(auto), "{d:#}");
    }
    let text = sail_edge(&["doctor"]);
    let out = String::from_utf8_lossy(&text.stdout);
    let first = devices[0]["name"].as_str().unwrap();
    assert!(out.lines().any(|l| l.starts_with("vulkan:") && l.contains(first)), "{out}");
    assert!(out.contains("--backend auto: "), "{out}");
}
